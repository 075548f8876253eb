"""How many threads faiss uses, set for a block and restored after it.

Introduced in ``casestudies/recommender/04_retrieval_index.ipynb``.
faiss runs batched searches
and builds on OpenMP threads, one process-wide setting. Two reasons to pin it
for a while: a latency measured on one thread is the cost of one query on one
core (a serving process answers many queries at once, one per core), and an
HNSW graph built on one thread is bit-identical from run to run (on several,
the order in which threads insert vectors changes the graph).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import faiss

from mlsd_lib.errors import MlsdError


class ThreadCountError(MlsdError, ValueError):
    """A thread count below one."""


@contextmanager
def faiss_threads(threads: int) -> Iterator[None]:
    """Run the block with faiss on ``threads`` OpenMP threads, then restore."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ThreadCountError(f"threads={threads!r}: pass a positive integer")
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(threads)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)
