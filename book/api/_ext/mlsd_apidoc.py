"""The book's API reference: one page per package of ``mlsd_lib``, every module on it.

A page holds one directive, ``.. mlsd-package:: mlsd_lib.serving``, which renders
the package's docstring and then, for each of its modules in name order, a
section with the module's docstring (the design note) and its public members.
The modules are found on disk when the book is built, so a module added to a
package appears on that package's page without anyone listing it; a subpackage
gets a page of its own. When the build finishes reading, every module of
``mlsd_lib`` must have been rendered by some page: one that was not (a new
package nobody gave a page) is a warning, which ``make book`` turns into an
error that says which page to add.

Autodoc renders each member once, at the module that defines it
(``:ignore-module-all:``): a name a package re-exports is documented where it
lives, and a package's page links to it from the package's docstring.
"""

from __future__ import annotations

import sys
from pathlib import Path

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.ext import autodoc
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

#: The options every module is rendered with: public members defined in the module,
#: documented or not (never re-exports), in source order, with their bases.
AUTOMODULE_OPTIONS = (
    ":members:",
    ":undoc-members:",
    ":ignore-module-all:",
    ":show-inheritance:",
)
#: Docstrings from this package's modules are the library's own.
OWN_PACKAGE = "mlsd_lib"


def package_dir(package: str, root: Path) -> Path:
    """The folder of a dotted package name under the folder that holds it."""
    return root.joinpath(*package.split("."))


def modules_of(package: str, root: Path) -> list[str]:
    """The dotted names of a package's modules (not its subpackages), sorted."""
    folder = package_dir(package, root)
    names = sorted(p.stem for p in folder.glob("*.py") if p.stem != "__init__")
    return [f"{package}.{name}" for name in names]


def subpackages_of(package: str, root: Path) -> list[str]:
    """The dotted names of a package's direct subpackages, sorted.

    A subpackage is a folder that holds Python files, with or without an
    ``__init__.py`` (a namespace package still imports, and must be rendered).
    """
    folder = package_dir(package, root)
    names = sorted(
        d.name
        for d in folder.iterdir()
        if d.is_dir() and d.name.isidentifier() and any(d.rglob("*.py"))
    )
    return [f"{package}.{name}" for name in names]


def every_module(package: str, root: Path) -> set[str]:
    """Every package and module under ``package``, itself included."""
    found = {package, *modules_of(package, root)}
    for sub in subpackages_of(package, root):
        found |= every_module(sub, root)
    return found


def source_root(package: str) -> Path:
    """The folder that holds a top-level package's folder (found by importing it)."""
    top = __import__(package.split(".")[0])
    return Path(top.__file__).resolve().parents[1]


class PackageDirective(SphinxDirective):
    """``.. mlsd-package:: mlsd_lib.x``: the package, then each of its modules."""

    required_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        package = self.arguments[0]
        root = source_root(package)
        if not package_dir(package, root).is_dir():
            raise self.error(
                f"mlsd-package: {package!r} is not a package under {root}: "
                "name a folder that holds Python modules"
            )
        documented = self.env.mlsd_api_documented  # type: ignore[attr-defined]
        documented[package] = self.env.docname
        result: list[nodes.Node] = self.automodule(package)
        for module in modules_of(package, root):
            documented[module] = self.env.docname
            # titled by the name within the package (the page names the
            # package), so the page's table of contents stays narrow
            title = module.removeprefix(f"{package}.")
            section = nodes.section(ids=[nodes.make_id(module)], names=[module])
            section += nodes.title("", "", nodes.literal(title, title))
            section.extend(self.automodule(module))
            result.append(section)
        return result

    def automodule(self, module: str) -> list[nodes.Node]:
        lines = [f".. automodule:: {module}"]
        lines += [f"   {option}" for option in AUTOMODULE_OPTIONS]
        content = StringList(lines, source=f"<mlsd-package {module}>")
        holder = nodes.container()
        self.state.nested_parse(content, self.content_offset, holder)
        return holder.children


def defining_class(method: object) -> type | None:
    """The class a method is defined in, found by its qualified name."""
    owner = sys.modules.get(getattr(method, "__module__", None) or "")
    path = getattr(method, "__qualname__", "").split(".")[:-1]
    for name in path:
        owner = getattr(owner, name, None)
    return owner if isinstance(owner, type) else None


def skip_foreign_docstrings(
    app: Sphinx, what: str, name: str, obj: object, skip: bool, options: object
) -> bool | None:
    """Skip a method that only inherits its docstring from outside the library.

    ``forward`` of every ``nn.Module`` would otherwise carry torch's
    "Define the computation performed at every call", which says nothing about
    the model; a method that inherits the docstring of one of the library's own
    interfaces (a model server's ``infer``) keeps it.
    """
    if skip or not callable(obj) or getattr(obj, "__doc__", None):
        return None
    cls = defining_class(obj)
    if cls is None:
        return None
    for base in cls.__mro__[1:]:
        inherited = base.__dict__.get(name)
        if inherited is not None and getattr(inherited, "__doc__", None):
            if base.__module__.startswith(OWN_PACKAGE):
                return None  # the library's own interface: keep it
            return True
    return None


class ClassDocumenter(autodoc.ClassDocumenter):
    """Autodoc's class documenter, without "Bases: object" on every plain class.

    The bases line is worth its space where it says something: an error's
    ``MlsdError, ValueError``, a model's ``nn.Module``.
    """

    def add_directive_header(self, sig: str) -> None:
        plain = getattr(self.object, "__bases__", None) == (object,)
        if plain and self.options.show_inheritance:
            # a copy: the options object is shared with the member documenters
            self.options = self.options.copy()
            self.options["show-inheritance"] = False
        super().add_directive_header(sig)


def init_env(app: Sphinx, env: BuildEnvironment, docnames: list[str]) -> None:
    if not hasattr(env, "mlsd_api_documented"):
        env.mlsd_api_documented = {}  # type: ignore[attr-defined]


def purge(app: Sphinx, env: BuildEnvironment, docname: str) -> None:
    documented = getattr(env, "mlsd_api_documented", {})
    for module in [m for m, doc in documented.items() if doc == docname]:
        del documented[module]


def merge(
    app: Sphinx,
    env: BuildEnvironment,
    docnames: set[str],
    other: BuildEnvironment,
) -> None:
    env.mlsd_api_documented.update(other.mlsd_api_documented)  # type: ignore[attr-defined]


def pages_with_new_modules(
    app: Sphinx,
    env: BuildEnvironment,
    added: set[str],
    changed: set[str],
    removed: set[str],
) -> list[str]:
    """The API pages to read again because their package gained a module.

    Autodoc makes a page depend on the files it rendered, so an edited or a
    deleted module has its page read again; a module added to the folder is a
    file no page depends on yet, and an incremental build would leave it out.
    """
    documented = getattr(env, "mlsd_api_documented", {})
    pages: dict[str, set[str]] = {}
    for module, docname in documented.items():
        pages.setdefault(docname, set()).add(module)
    stale = []
    for docname, modules in sorted(pages.items()):
        package = min(modules, key=len)  # every other name on the page extends it
        if {package, *modules_of(package, source_root(package))} != modules:
            stale.append(docname)
    return stale


def check_coverage(app: Sphinx, env: BuildEnvironment) -> None:
    """Warn about every package of ``mlsd_lib`` that no API page renders."""
    documented = getattr(env, "mlsd_api_documented", {})
    if not documented:
        return  # a build without API pages promises no coverage
    for top in sorted({name.split(".")[0] for name in documented}):
        root = source_root(top)
        missing = every_module(top, root) - set(documented)
        # every module of a rendered package is rendered, so what is missing
        # is whole packages: name each once
        for package in sorted(missing):
            if package_dir(package, root).is_dir():
                logger.warning(
                    "package %s is on no API reference page: add "
                    "book/api/<name>.md holding '.. mlsd-package:: %s' "
                    "(copy a page there) and list it under the API reference "
                    "in _toc.yml",
                    package,
                    package,
                    type="mlsd_api",
                    subtype="coverage",
                )


def setup(app: Sphinx) -> dict[str, object]:
    app.setup_extension("sphinx.ext.autodoc")
    app.add_directive("mlsd-package", PackageDirective)
    app.add_autodocumenter(ClassDocumenter, override=True)
    app.connect("autodoc-skip-member", skip_foreign_docstrings)
    app.connect("env-before-read-docs", init_env)
    app.connect("env-purge-doc", purge)
    app.connect("env-merge-info", merge)
    app.connect("env-get-outdated", pages_with_new_modules)
    app.connect("env-check-consistency", check_coverage)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
