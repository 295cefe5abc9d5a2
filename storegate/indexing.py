"""One index normaliser shared by every layer.

Users may index with Python, numpy or torch integers (negative ones count from the end),
slices (negative and stepped too), lists, integer arrays, CPU torch tensors, boolean masks,
multiml's ``(start, stop)`` tuples, ``Ellipsis`` and ``-1``, which by multiml's convention means
*all rows* (so the last row is ``length - 1`` or ``[-1:]``).

:func:`normalize` turns all of them into one of three forms, the only forms a backend ever sees:

* a non-negative ``int`` (one row; the row axis is dropped from the result),
* a ``slice`` with ``0 <= start <= stop <= length`` and ``step >= 1``,
* a 1-D ``int64`` ndarray of in-range rows (any order, repeats allowed).

Every other index is answered exactly as ``numpy`` answers ``arr[index]`` along the row axis
(values, dtype and shape), except for these deliberate differences:

* ``-1`` (a scalar; also ``np.int64(-1)`` or a 0-d array) means all rows, as in multiml;
  ``[-1]`` and ``[-1:]`` are the last row, as in numpy.
* A 2-tuple of ints is multiml's ``(start, stop)``: the rows ``start:stop``. Any other tuple
  (numpy's multi-axis indexing) raises ``InvalidIndexError``; index the result instead.
* An empty list, or an empty 1-D array of a bool, int or float dtype, selects no rows
  (``np.asarray([])`` is float64; numpy refuses a float index array even when it is empty).
  An empty bool array is no rows whatever the length, as in numpy.
* Refused with ``InvalidIndexError`` although numpy accepts them: ``None`` (``np.newaxis``),
  a bool scalar (numpy adds an axis), index arrays of 2 or more dimensions, slice bounds that
  are not ints (numpy takes anything with ``__index__``).
* Row numbers outside ``[-length, length)`` raise ``IndexOutOfRangeError`` (an
  ``IndexError``), also for ``uint64`` values that numpy wraps around to negative rows.
* A bool mask must have one entry per row (``InvalidIndexError`` otherwise), as in numpy.
  A list mixing bools with ints is refused (numpy would read the bools as rows 0 and 1).
* A list of Python and numpy ints is read as exact integers, also where numpy would promote
  it to float64 and refuse it (``[0, np.uint64(1)]``).

Examples
--------
>>> import numpy as np
>>> from storegate.indexing import normalize
>>> normalize(-1, 10)
slice(0, 10, 1)
>>> normalize(-2, 10)
8
>>> normalize((2, 5), 10)
slice(2, 5, 1)
>>> normalize([True, False, True], 3)
array([0, 2])
>>> normalize(slice(None, None, -3), 10)
array([9, 6, 3, 0])
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import IndexOutOfRangeError, InvalidIndexError

__all__ = ["Index", "count", "is_torch_tensor", "normalize", "split_over", "to_numpy_index"]

Index = int | slice | np.ndarray

_HINT = (
    "use an int, a slice, a (start, stop) tuple, a list or 1-D array of ints, a bool mask "
    "or -1 for all rows"
)


def is_torch_tensor(obj: Any) -> bool:
    """True for a ``torch.Tensor`` without importing torch.

    Examples
    --------
    >>> is_torch_tensor([1, 2])
    False
    """
    return type(obj).__module__.partition(".")[0] == "torch" and hasattr(obj, "detach")


def to_numpy_index(obj: Any) -> Any:
    """Turn a torch tensor into a numpy array (moving it to the CPU); leave others as they are.

    Examples
    --------
    >>> to_numpy_index(3)
    3
    """
    if is_torch_tensor(obj):
        return obj.detach().cpu().numpy()
    return obj


def _check_int(i: int, length: int, index: Any) -> int:
    if i < 0:
        i += length
    if not 0 <= i < length:
        raise IndexOutOfRangeError(
            f"index {index!r} is out of range for {length} rows; valid rows are 0..{length - 1} "
            f"(or -{length}..-2 from the end; -1 means all rows)."
            if length
            else f"index {index!r} is out of range: the selection has no rows."
        )
    return i


def _from_array(arr: np.ndarray, length: int, index: Any) -> np.ndarray:
    if arr.ndim != 1:
        raise InvalidIndexError(
            f"index arrays must be 1-D, got shape {arr.shape}; flatten it or {_HINT}."
        )
    if arr.size == 0 and arr.dtype.kind in "biuf":  # no rows (np.asarray([]) is float64)
        return np.empty(0, dtype=np.int64)
    if arr.dtype == np.bool_:
        if arr.shape[0] != length:
            raise InvalidIndexError(
                f"boolean mask of length {arr.shape[0]} does not match the {length} rows it "
                "selects from; give one bool per row."
            )
        return np.flatnonzero(arr).astype(np.int64, copy=False)
    if arr.dtype.kind not in "iu":
        raise InvalidIndexError(
            f"index array of dtype {arr.dtype} is not allowed (got {_short(index)}); {_HINT}."
        )
    # range-check before the cast: uint64 values >= 2**63 would wrap to negative rows
    lo = int(arr.min())
    hi = int(arr.max())
    if lo < -length or hi >= length:
        bad = lo if lo < -length else hi
        raise IndexOutOfRangeError(
            f"index {bad} in {_short(index)} is out of range for {length} rows; valid rows "
            f"are 0..{length - 1} (negative values count from the end)."
        )
    out = arr.astype(np.int64, copy=False)
    if lo < 0:
        out = np.where(out < 0, out + length, out)
    return out


def _short(index: Any) -> str:
    text = repr(index)
    return text if len(text) <= 60 else text[:57] + "..."


def normalize(index: Any, length: int) -> Index:
    """Normalise a user index against ``length`` rows.

    Parameters
    ----------
    index
        Any accepted index form (see the module docstring).
    length
        Number of rows the index selects from.

    Returns
    -------
    int, slice or numpy.ndarray
        The canonical form.

    Raises
    ------
    InvalidIndexError
        For unsupported types (float, str, None, 2-D arrays, masks of the wrong length).
    IndexOutOfRangeError
        For rows outside ``[-length, length)``.

    Examples
    --------
    >>> normalize(np.int64(3), 5)
    3
    >>> normalize([4, -5, 0], 5)
    array([4, 0, 0])
    """
    if isinstance(index, bool | np.bool_):
        raise InvalidIndexError(
            f"a bool ({index!r}) is not a row index; use a bool mask with one entry per row, "
            f"or {_HINT}."
        )
    if isinstance(index, numbers.Integral):
        i = int(index)
        if i == -1:
            return slice(0, length, 1)
        return _check_int(i, length, index)
    if isinstance(index, slice):
        for part in (index.start, index.stop, index.step):
            if part is not None and not isinstance(part, numbers.Integral):
                raise InvalidIndexError(f"slice {index!r} has a non-integer bound; {_HINT}.")
        if index.step == 0:
            raise InvalidIndexError(f"slice {index!r} has step 0; a step must be non-zero.")
        start, stop, step = index.indices(length)
        if step > 0:
            # a step past the end selects one row at most; clip it so that backends never
            # see a step that does not fit in an int64 (h5py, numpy views)
            return slice(start, max(start, stop), min(step, max(length, 1)))
        return np.arange(start, stop, step, dtype=np.int64)
    if index is Ellipsis:
        return slice(0, length, 1)
    if is_torch_tensor(index):
        index = to_numpy_index(index)
    if isinstance(index, np.ndarray):
        if index.ndim == 0:
            return normalize(index.item(), length)
        return _from_array(index, length, index)
    if isinstance(index, tuple):
        if len(index) == 2 and all(
            isinstance(x, numbers.Integral) and not isinstance(x, bool) for x in index
        ):
            return normalize(slice(int(index[0]), int(index[1])), length)
        raise InvalidIndexError(
            f"tuple index {_short(index)} is not a (start, stop) pair of ints; {_HINT}."
        )
    if isinstance(index, Sequence) and not isinstance(index, str | bytes):
        items = list(index)
        if not items:
            return np.empty(0, dtype=np.int64)
        if all(isinstance(x, bool | np.bool_) for x in items):
            return _from_array(np.asarray(items, dtype=np.bool_), length, index)
        if not all(
            isinstance(x, numbers.Integral) and not isinstance(x, bool | np.bool_) for x in items
        ):
            raise InvalidIndexError(f"list index {_short(index)} must hold only ints; {_HINT}.")
        try:
            arr = np.asarray(items, dtype=np.int64)
        except OverflowError:
            # a value beyond int64 (or a uint64 >= 2**63) is out of range for any length
            bad = max((int(x) for x in items), key=abs)
            raise IndexOutOfRangeError(
                f"index {bad} in {_short(index)} is out of range for {length} rows; valid rows "
                f"are 0..{length - 1} (negative values count from the end)."
            ) from None
        return _from_array(arr, length, index)
    raise InvalidIndexError(
        f"index {_short(index)} of type {type(index).__name__} is not supported; {_HINT}."
    )


def count(index: Index, length: int) -> int:
    """Number of rows a normalised index selects (1 for an int).

    Examples
    --------
    >>> count(slice(0, 10, 3), 10)
    4
    """
    if isinstance(index, int):
        return 1
    if isinstance(index, slice):
        return len(range(*index.indices(length)))
    return int(index.shape[0])


def split_over(
    index: Index, sizes: Sequence[int]
) -> list[tuple[int, Index, np.ndarray | slice | None]]:
    """Split a normalised global index over consecutive parts of the given sizes.

    Used for ``phase='all'``, whose rows are train, valid, test concatenated.

    Parameters
    ----------
    index
        A normalised index over ``sum(sizes)`` rows.
    sizes
        Lengths of the consecutive parts.

    Returns
    -------
    list of (part, local_index, positions)
        For each touched part: its number, the index local to it, and where its rows go in
        the result (``None`` if the result is made of this part alone, in order; a slice for a
        contiguous run; an int64 array otherwise).

    Examples
    --------
    >>> split_over(slice(1, 5, 1), [3, 4])
    [(0, slice(1, 3, 1), slice(0, 2, None)), (1, slice(0, 2, 1), slice(2, 4, None))]
    >>> [(p, i.tolist(), pos) for p, i, pos in split_over(np.array([5, 0]), [3, 4])]
    [(0, [0], array([1])), (1, [2], array([0]))]
    """
    offsets = np.concatenate([[0], np.cumsum(np.asarray(sizes, dtype=np.int64))])
    out: list[tuple[int, Index, np.ndarray | slice | None]] = []
    if isinstance(index, int):
        part = int(np.searchsorted(offsets, index, side="right") - 1)
        return [(part, index - int(offsets[part]), None)]
    if isinstance(index, slice):
        start, stop, step = index.start, index.stop, index.step
        done = 0
        for part in range(len(sizes)):
            lo, hi = int(offsets[part]), int(offsets[part + 1])
            if hi <= lo:
                continue
            # first row >= lo on the slice's grid
            first = start if start >= lo else start + -(-(lo - start) // step) * step
            if first >= min(stop, hi):
                continue
            last_stop = min(stop, hi)
            n = len(range(first, last_stop, step))
            out.append((part, slice(first - lo, last_stop - lo, step), slice(done, done + n)))
            done += n
        if len(out) == 1:
            out[0] = (out[0][0], out[0][1], None)
        return out
    parts = np.searchsorted(offsets, index, side="right") - 1
    for part in range(len(sizes)):
        mask = parts == part
        if not mask.any():
            continue
        positions = np.flatnonzero(mask)
        out.append((part, index[mask] - offsets[part], positions))
    if len(out) == 1:
        out[0] = (out[0][0], out[0][1], None)
    return out
