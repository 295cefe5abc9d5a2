"""Ragged vars: rows whose first axis has its own length, stored as flat values plus offsets.

This is the layout of Arrow list arrays and awkward's ``ListOffsetArray``: row ``i`` is
``values[offsets[i]:offsets[i + 1]]``; ``offsets`` is int64 with ``n + 1`` entries starting at 0,
and every row shares the trailing shape ``values.shape[1:]`` and the dtype. Every operation here
is vectorised over the offsets (no Python loop per row), so gathering 128 random molecules of
(10..60, 16) float32 costs about as much as one numpy fancy index.

Examples
--------
>>> import numpy as np
>>> r = RaggedArray.from_list([np.arange(3), np.arange(1), np.arange(2) + 10])
>>> len(r), r.lengths().tolist()
(3, [3, 1, 2])
>>> [row.tolist() for row in r.take(np.array([2, 0]))]
[[10, 11], [0, 1, 2]]
>>> r.slice(1, 3).offsets.tolist()
[0, 1, 3]
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from .arrays import check_storable_dtype
from .errors import CorruptStoreError, DtypeError, ShapeMismatchError

__all__ = ["RaggedArray", "is_ragged_input", "kind_mismatch", "rows_of"]


class RaggedArray:
    """Rows of varying length along their first axis, as flat ``values`` and ``offsets``.

    Parameters
    ----------
    values
        Array of shape ``(total, *k)``: all rows' items, concatenated.
    offsets
        int64 array of shape ``(n + 1,)``, non-decreasing, ``offsets[0] == 0`` and
        ``offsets[-1] == total``.
    validate
        Check the invariants (``CorruptStoreError`` if they fail). Cheap: one pass over
        ``offsets``.

    Examples
    --------
    >>> r = RaggedArray(np.arange(5.0), np.array([0, 2, 5]))
    >>> r.to_list()
    [array([0., 1.]), array([2., 3., 4.])]
    """

    __slots__ = ("offsets", "values")

    def __init__(self, values: np.ndarray, offsets: np.ndarray, validate: bool = True) -> None:
        self.values = values
        self.offsets = np.asarray(offsets, dtype=np.int64)
        if validate:
            self._validate()

    def _validate(self) -> None:
        o = self.offsets
        if o.ndim != 1 or o.shape[0] < 1:
            raise CorruptStoreError(
                f"ragged offsets must be 1-D with n + 1 entries, got shape {o.shape}."
            )
        if o[0] != 0 or o[-1] != self.values.shape[0]:
            raise CorruptStoreError(
                f"ragged offsets run from {o[0]} to {o[-1]} but there are {self.values.shape[0]} "
                "values; offsets must start at 0 and end at the number of values."
            )
        if o.shape[0] > 1 and (np.diff(o) < 0).any():
            raise CorruptStoreError("ragged offsets decrease somewhere; they must be sorted.")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_list(cls, rows: Sequence[Any], what: str = "data") -> RaggedArray:
        """Build from a sequence of arrays sharing their trailing shape and dtype.

        Examples
        --------
        >>> RaggedArray.from_list([[1, 2], [3]]).values
        array([1, 2, 3])
        """
        arrays = [np.asarray(r) for r in rows]
        if not arrays:
            raise ShapeMismatchError(
                f"{what} is an empty list; a ragged var needs at least one row to fix its dtype."
            )
        for i, a in enumerate(arrays):
            if a.ndim == 0:
                raise ShapeMismatchError(
                    f"row {i} of {what} is a scalar; rows of a ragged var are arrays whose first "
                    "axis varies, e.g. shape (n_i, 16)."
                )
        trailing = {a.shape[1:] for a in arrays}
        if len(trailing) > 1:
            raise ShapeMismatchError(
                f"rows of {what} differ beyond their first axis ({sorted(trailing)}); only the "
                "first axis of a ragged var may vary."
            )
        dtype = np.result_type(*arrays)
        if any(a.dtype != dtype for a in arrays) and any(a.size for a in arrays):
            kinds = sorted({str(a.dtype) for a in arrays})
            if len({a.dtype.kind for a in arrays}) > 1:
                raise DtypeError(
                    f"rows of {what} have different dtypes ({', '.join(kinds)}); give every row "
                    "the same dtype."
                )
        check_storable_dtype(dtype, what)
        lengths = np.fromiter((a.shape[0] for a in arrays), dtype=np.int64, count=len(arrays))
        offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        values = np.concatenate([a.astype(dtype, copy=False) for a in arrays]) if arrays else (
            np.empty((0,), dtype=dtype))
        return cls(values, offsets, validate=False)

    @classmethod
    def from_awkward(cls, array: Any, what: str = "data") -> RaggedArray:
        """Build from an ``awkward.Array`` of lists of numbers (or of regular sub-arrays).

        Examples
        --------
        >>> import awkward as ak
        >>> RaggedArray.from_awkward(ak.Array([[1, 2], [3]])).offsets
        array([0, 2, 3])
        """
        import awkward as ak

        layout = ak.to_layout(array)
        layout = layout.to_ListOffsetArray64(True) if hasattr(layout, "to_ListOffsetArray64") \
            else layout
        if not isinstance(layout, ak.contents.ListOffsetArray):
            raise ShapeMismatchError(
                f"{what} is an awkward array of type {ak.type(array)}; a ragged var needs a list "
                "type (var * ...) of numbers."
            )
        offsets = np.asarray(layout.offsets, dtype=np.int64)
        start = int(offsets[0])
        content = layout.content
        values = ak.to_numpy(content, allow_missing=False)[start : int(offsets[-1])]
        return cls(np.ascontiguousarray(values), offsets - start)

    @classmethod
    def concatenate(cls, parts: Sequence[RaggedArray]) -> RaggedArray:
        """Rows of several ragged arrays, one after another.

        Examples
        --------
        >>> a = RaggedArray.from_list([[1], [2, 3]])
        >>> RaggedArray.concatenate([a, a]).offsets.tolist()
        [0, 1, 3, 4, 6]
        """
        if len(parts) == 1:
            return parts[0]
        values = np.concatenate([p.values for p in parts])
        offsets = [np.zeros(1, dtype=np.int64)]
        base = 0
        for p in parts:
            offsets.append(p.offsets[1:] + base)
            base += int(p.offsets[-1])
        return cls(values, np.concatenate(offsets), validate=False)

    # ------------------------------------------------------------------ properties
    def __len__(self) -> int:
        return int(self.offsets.shape[0] - 1)

    @property
    def dtype(self) -> np.dtype:
        """The dtype of the values."""
        return self.values.dtype

    @property
    def row_shape(self) -> tuple[int, ...]:
        """Shape of every item of a row (the trailing shape)."""
        return tuple(self.values.shape[1:])

    @property
    def nbytes(self) -> int:
        """Bytes of values and offsets."""
        return int(self.values.nbytes + self.offsets.nbytes)

    def lengths(self) -> np.ndarray:
        """Length of each row along its ragged axis."""
        return np.diff(self.offsets)

    def __repr__(self) -> str:
        return (f"RaggedArray({len(self)} rows of (None, {', '.join(map(str, self.row_shape))}) "
                f"{self.dtype})")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RaggedArray):
            return NotImplemented
        return bool(np.array_equal(self.offsets, other.offsets)
                    and self.values.dtype == other.values.dtype
                    and np.array_equal(self.values, other.values, equal_nan=self.values.dtype.kind
                                       in "fc"))

    __hash__ = None  # type: ignore[assignment]

    # ------------------------------------------------------------------ selection
    def row(self, i: int) -> np.ndarray:
        """Row ``i`` as a new array."""
        return self.values[self.offsets[i] : self.offsets[i + 1]].copy()

    def slice(self, start: int, stop: int, step: int = 1) -> RaggedArray:
        """Rows ``start:stop:step`` as a new ragged array (copies the values)."""
        if step != 1:
            return self.take(np.arange(start, stop, step, dtype=np.int64))
        a, b = int(self.offsets[start]), int(self.offsets[stop])
        return RaggedArray(self.values[a:b].copy(), self.offsets[start : stop + 1] - a,
                           validate=False)

    def take(self, index: np.ndarray) -> RaggedArray:
        """Rows at an int64 index array (any order, repeats allowed), vectorised.

        Examples
        --------
        >>> r = RaggedArray.from_list([[0], [1, 1], [2, 2, 2]])
        >>> r.take(np.array([2, 2, 0])).values.tolist()
        [2, 2, 2, 2, 2, 2, 0]
        """
        starts = self.offsets[index]
        lengths = self.offsets[index + 1] - starts
        offsets = np.zeros(index.shape[0] + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        total = int(offsets[-1])
        # position of every output item in values: its row's start + its rank inside the row
        positions = np.repeat(starts - offsets[:-1], lengths) + np.arange(total, dtype=np.int64)
        return RaggedArray(np.take(self.values, positions, axis=0), offsets, validate=False)

    def replace_rows(self, rows: np.ndarray, data: RaggedArray) -> RaggedArray:
        """A copy with the rows at ``rows`` (int64) replaced by the rows of ``data`` (any
        lengths); with repeated rows the last one wins, as in numpy.

        Examples
        --------
        >>> r = RaggedArray.from_list([[0], [1, 1], [2]])
        >>> r.replace_rows(np.array([1]), RaggedArray.from_list([[7, 7, 7]])).to_list()
        [array([0]), array([7, 7, 7]), array([2])]
        """
        if rows.shape[0] != len(data):
            raise ShapeMismatchError(
                f"the index selects {rows.shape[0]} rows but {len(data)} ragged rows were given."
            )
        n = len(self)
        source = np.arange(n, dtype=np.int64)
        source[rows] = n + np.arange(rows.shape[0], dtype=np.int64)
        return RaggedArray.concatenate([self, data]).take(source)

    # ------------------------------------------------------------------ conversion
    def to_list(self) -> list[np.ndarray]:
        """One numpy array per row (copies).

        Examples
        --------
        >>> RaggedArray.from_list([[1], [2, 3]]).take(np.array([], dtype=np.int64)).to_list()
        []
        """
        if len(self) == 0:
            return []
        return [part.copy() for part in np.split(self.values, self.offsets[1:-1])]

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter(self.to_list())

    def to_awkward(self) -> Any:
        """An ``awkward.Array`` of type ``n * var * k * dtype`` sharing nothing with this array.

        Examples
        --------
        >>> RaggedArray.from_list([[1, 2], [3]]).to_awkward().tolist()
        [[1, 2], [3]]
        """
        import awkward as ak

        content: Any = ak.contents.NumpyArray(np.ascontiguousarray(self.values))
        if self.values.ndim > 1:
            content = ak.contents.NumpyArray(np.ascontiguousarray(self.values)).to_RegularArray()
        layout = ak.contents.ListOffsetArray(ak.index.Index64(self.offsets.copy()), content)
        return ak.Array(layout)


def is_ragged_input(data: Any) -> bool:
    """Whether user data describe a ragged var: an awkward array, a :class:`RaggedArray`, or a
    list/tuple of arrays whose first axes differ.

    Examples
    --------
    >>> is_ragged_input([np.zeros(2), np.zeros(3)]), is_ragged_input([np.zeros(2), np.zeros(2)])
    (True, False)
    """
    if isinstance(data, RaggedArray):
        return True
    module = type(data).__module__.partition(".")[0]
    if module == "awkward":
        return True
    if isinstance(data, list | tuple) and len(data) > 0:
        shapes = set()
        for row in data:
            shape = getattr(row, "shape", None)
            if shape is None:
                if not isinstance(row, list | tuple):
                    return False
                shape = (len(row),)
            if len(shape) == 0:
                return False
            shapes.add(tuple(shape))
        return len({s[0] for s in shapes}) > 1
    return False


def rows_of(index: Any) -> np.ndarray:
    """A normalised index (int, slice with step >= 1, int64 array) as an int64 array of rows.

    Examples
    --------
    >>> rows_of(slice(2, 8, 3))
    array([2, 5])
    """
    if isinstance(index, int | np.integer):
        return np.array([int(index)], dtype=np.int64)
    if isinstance(index, slice):
        return np.arange(index.start, index.stop, index.step or 1, dtype=np.int64)
    return np.asarray(index, dtype=np.int64)


def kind_mismatch(var: str, ragged_var: bool) -> ShapeMismatchError:
    """The error for writing regular rows into a ragged var, or ragged rows into a regular one.

    Examples
    --------
    >>> str(kind_mismatch("x", ragged_var=False)).split(";")[0]
    "var 'x' has rows of one fixed shape"
    """
    if ragged_var:
        return ShapeMismatchError(
            f"var {var!r} is ragged; write ragged rows (a list of arrays, an awkward array or a "
            "RaggedArray), not a regular array."
        )
    return ShapeMismatchError(
        f"var {var!r} has rows of one fixed shape; ragged rows cannot be written into it. Use a "
        "new var for ragged data."
    )
