"""Checks on what callers hand an index: vectors, ids and ``k``.

Introduced in ``casestudies/recommender/04_retrieval_index.ipynb``.
faiss reads raw float32
memory: handed float64 it raises a terse SWIG error, handed a transposed view
it reads the wrong numbers, handed NaN it returns nonsense. These checks refuse
each case with a message that says what to pass instead, once, before faiss
sees the array. They never copy a valid array, so a search pays a few
microseconds for them.
"""

from __future__ import annotations

import numpy as np

from mlsd_lib.errors import MlsdError

_FIX = "pass np.ascontiguousarray(x, dtype=np.float32)"


class VectorInputError(MlsdError, ValueError):
    """Vectors of the wrong shape, dimension or dtype, or not finite."""


class IdInputError(MlsdError, ValueError):
    """Ids that are not one non-negative, distinct int64 per vector."""


class KOutOfRange(MlsdError, ValueError):
    """A number of neighbours the index cannot return."""


def check_vectors(x: object, d: int, what: str = "vectors") -> np.ndarray:
    """``x`` itself if it is an ``(n, d)`` float32 C-contiguous finite array."""
    if not isinstance(x, np.ndarray):
        raise VectorInputError(
            f"{what} must be a numpy array of shape (n, {d}), got "
            f"{type(x).__name__}: {_FIX}"
        )
    if x.ndim == 1 and x.shape[0] == d:
        raise VectorInputError(
            f"{what} have shape {x.shape}, one vector without a batch axis: "
            "pass x[None, :] for shape (1, d)"
        )
    if x.ndim != 2 or x.shape[1] != d:
        raise VectorInputError(
            f"{what} have shape {x.shape}, but this index holds {d}-dimensional "
            f"vectors: pass an array of shape (n, {d})"
        )
    if x.shape[0] == 0:
        raise VectorInputError(f"{what} are empty (shape {x.shape}): pass at least one")
    if x.dtype != np.float32:
        raise VectorInputError(
            f"{what} have dtype {x.dtype}, but faiss reads float32: {_FIX}"
        )
    if not x.flags.c_contiguous:
        raise VectorInputError(
            f"{what} are not C-contiguous (a transposed or strided view?), and "
            f"faiss reads raw memory row by row: {_FIX}"
        )
    finite = np.isfinite(x).all(axis=1)
    if not finite.all():
        rows = np.flatnonzero(~finite)
        raise VectorInputError(
            f"{what} hold NaN or infinity in {rows.size} row(s), first "
            f"{rows[:5].tolist()}: fix the embedding upstream; an index cannot "
            "rank them"
        )
    return x


def check_ids(ids: object, n: int) -> np.ndarray:
    """``ids`` as a C-contiguous int64 array: one distinct, non-negative id each."""
    array = np.asarray(ids)
    if array.dtype.kind not in "iu":
        raise IdInputError(
            f"ids have dtype {array.dtype}: pass integers (int64), one per vector"
        )
    if array.shape != (n,):
        raise IdInputError(
            f"ids have shape {array.shape}, but there are {n} vectors: pass one "
            f"id per vector, shape ({n},)"
        )
    array = np.ascontiguousarray(array, dtype=np.int64)
    if n and array.min() < 0:
        raise IdInputError(
            f"ids hold negative values (smallest {int(array.min())}): faiss "
            "answers -1 for 'no result', so ids must be >= 0"
        )
    values, counts = np.unique(array, return_counts=True)
    if values.size != n:
        repeated = values[counts > 1][:5].tolist()
        raise IdInputError(
            f"ids repeat within the batch (e.g. {repeated}): each vector needs "
            "its own id"
        )
    return array


def check_k(k: object, ntotal: int) -> int:
    """``k`` if ``1 <= k <= ntotal``."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer):
        raise KOutOfRange(f"k={k!r} is not an integer: pass 1 to {ntotal}")
    if not 1 <= k <= ntotal:
        raise KOutOfRange(
            f"k={k} is out of range: the index holds {ntotal} vectors, so ask "
            f"for 1 to {ntotal} neighbours"
        )
    return int(k)
