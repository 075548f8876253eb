"""Swap a whole release into a running service: load beside, warm up, switch.

Introduced in ``casestudies/recommender/08_monitoring_and_retraining.ipynb`` (step 7,
"retrain and re-index with a version-consistent swap"); the visual search case
study swaps its embedder and index the same way. A release (a model and the
index its vectors built, or two towers and a ranker) may only go live whole:
a query model from the new run against the old index answers with confident
nonsense. :func:`swap_whole_release` does the order that keeps every request
whole and none failing, for any service whose models are one reference:

1. **load** the new release beside the one serving (the caller's ``load``:
   it reads the index and checks its version stamp before any model loads,
   and loads the models under new names, so the old ones keep answering);
2. **warm up** (the caller's ``warm_up``): every new model answers once, so
   the first user request does not pay for a cold model, and a model that
   fails here is refused before any user sees it;
3. **switch**: the service's ``swap``, one reference assignment. A request
   reads that reference once, at its start, so it runs entirely on the old
   release or entirely on the new one; requests in flight finish on the old.

Nothing changes for the service if loading or warming up raises. The old
release's models stay loaded (a rollback is one more swap); unloading them
after a drain is :mod:`~mlsd_lib.serving.gateway.hotswap`'s pattern.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

__all__ = ["ReleaseSwap", "ServedRelease", "SwappableService", "swap_whole_release"]


class ServedRelease(Protocol):
    """What a release's loaded models say about themselves."""

    release: str

    def versions(self) -> dict[str, str]: ...


#: The models type a service swaps in and out: any :class:`ServedRelease`.
R = TypeVar("R", bound=ServedRelease)


class SwappableService(Protocol[R]):
    """A service that serves one release's models, replaced in one assignment."""

    def swap(self, models: R) -> R: ...


@dataclass(frozen=True)
class ReleaseSwap:
    """What a swap did: the releases before and after, the new one's versions,
    and how long loading and warming up took (ms). ``switched_at`` is the
    :func:`time.perf_counter` moment of the switch."""

    before: str
    after: str
    versions: dict[str, str]
    load_ms: float
    warmup_ms: float
    switched_at: float


def swap_whole_release(
    service: SwappableService[R],
    load: Callable[[], R],
    warm_up: Callable[[R], None],
) -> ReleaseSwap:
    """Load, warm up and switch ``service`` to the release ``load`` returns
    (see the module notes)."""
    start = time.perf_counter()
    models = load()
    loaded = time.perf_counter()
    warm_up(models)
    warmed = time.perf_counter()
    old = service.swap(models)
    switched = time.perf_counter()
    return ReleaseSwap(
        before=old.release,
        after=models.release,
        versions=models.versions(),
        load_ms=(loaded - start) * 1000,
        warmup_ms=(warmed - loaded) * 1000,
        switched_at=switched,
    )
