"""The tested library behind *ML System Design, Runnable*.

Introduced in ``book/intro.md``.

Notebooks show the key lines; the code that survives lives here, with unit tests.
Start with :mod:`mlsd_lib.config` (where the real components are) and
:func:`mlsd_lib.redis_backend.get_redis` (the online store every chapter uses).
"""

__version__ = "0.1.0"
