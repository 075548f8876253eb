"""Every error the library defines has one root, and keeps its built-in base."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import mlsd_lib
from mlsd_lib.errors import MlsdError
from mlsd_lib.serving.inprocess import UnknownModel
from mlsd_lib.serving.tensors import MalformedRequest


def library_exceptions() -> list[type[BaseException]]:
    """Exception classes defined (not imported) in any module of mlsd_lib."""
    found = []
    for info in pkgutil.walk_packages(mlsd_lib.__path__, "mlsd_lib."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__ == info.name:
                found.append(obj)
    return found


def test_every_library_error_derives_from_the_root_and_a_builtin():
    errors = library_exceptions()
    assert len(errors) >= 36  # the walk found them (a broken walk finds none)
    unrooted = [e.__qualname__ for e in errors if not issubclass(e, MlsdError)]
    assert unrooted == [], f"give these MlsdError as a base: {unrooted}"
    no_builtin = [
        e.__qualname__
        for e in errors
        if e is not MlsdError
        and not any(
            base.__module__ == "builtins" and base not in (Exception, BaseException)
            for base in e.__mro__
        )
    ]
    assert no_builtin == [], f"name the built-in error each is a kind of: {no_builtin}"


def test_one_except_catches_any_of_ours_and_builtins_still_work():
    with pytest.raises(MlsdError):
        raise MalformedRequest("bad dtype")
    with pytest.raises(ValueError):
        raise MalformedRequest("bad dtype")
    with pytest.raises(KeyError):
        raise UnknownModel("no model 'x'")
    assert str(UnknownModel("no model 'x'")) == "no model 'x'"
