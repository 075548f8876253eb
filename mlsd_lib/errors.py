"""One root for every error the library raises on purpose: :class:`MlsdError`.

Introduced in ``notebooks/00_environment.ipynb`` (the first error a reader meets
there, :class:`~mlsd_lib.serving.tensors.MalformedRequest`, is one). Each module
defines the errors of its own concept next to the code that raises them (a
feature store's :class:`~mlsd_lib.features.views.UnknownFeature`, a registry's
:class:`~mlsd_lib.serving.registry.IntegrityError`), and every one of them
derives from :class:`MlsdError` *and* from the built-in error it is a kind of::

    class UnknownModel(MlsdError, KeyError): ...

so a caller that means "any error of ours" catches one class (the gateway's
``POST /admin/reload`` answers 409 for any of them), and a caller that thinks in
built-ins (``except KeyError``) still works. Feast (``FeastError``) and PyTriton
(``PyTritonError``) do the same. A test walks the package and fails on an
exception class that forgets the root.
"""


class MlsdError(Exception):
    """The root of the library's errors. The message says what is wrong and what
    to do about it."""
