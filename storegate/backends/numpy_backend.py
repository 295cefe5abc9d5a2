"""The in-memory backend: one growable numpy buffer per var.

* Input is always copied (multiml's numpy backend stored the caller's array, so later edits of
  that array changed the store, and vars cut from one array aliased each other).
* Appends are amortised: each var keeps a buffer with spare capacity that doubles when full,
  so N appends cost O(total rows), not O(N * rows).
* Reads return new arrays (``np.take`` for gathers, copies for slices and rows).

Examples
--------
>>> import numpy as np
>>> from storegate import StoreGate
>>> sg = StoreGate("numpy", data_id="d")
>>> x = np.arange(6.0).reshape(3, 2)
>>> sg.add_data("x", x, phase="train")
>>> x[0, 0] = 99.0                      # the store holds a copy
>>> float(sg["train"]["x"][0][0])
0.0
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import numpy as np

from ..arrays import cast_for_write, check_row_shape
from ..errors import DataIdNotFoundError, ShapeMismatchError, VarNotFoundError
from ..indexing import Index
from ..phases import PHASES, check_phase
from ..ragged import RaggedArray, kind_mismatch, rows_of
from .base import Backend, VarInfo

__all__ = ["NumpyBackend"]


class _Column:
    """A var: a buffer with spare capacity along axis 0 and the number of rows in use."""

    __slots__ = ("buf", "n")

    def __init__(self, data: np.ndarray, *, owned: bool = False) -> None:
        # ``owned``: ``data`` is a fresh C-contiguous array nobody else holds (no copy needed)
        self.buf = data if owned else np.array(data, copy=True, order="C")
        self.n = data.shape[0]

    @property
    def view(self) -> np.ndarray:
        return self.buf[: self.n]

    def append(self, data: np.ndarray) -> None:
        need = self.n + data.shape[0]
        if need > self.buf.shape[0]:
            cap = max(need, 2 * self.buf.shape[0], 16)
            new = np.empty((cap, *self.buf.shape[1:]), dtype=self.buf.dtype)
            new[: self.n] = self.buf[: self.n]
            self.buf = new
        self.buf[self.n : need] = data
        self.n = need

    def __getstate__(self) -> tuple[np.ndarray, int]:
        return (self.buf[: self.n].copy(), self.n)

    def __setstate__(self, state: tuple[np.ndarray, int]) -> None:
        self.buf, self.n = state


class _RaggedColumn:
    """A ragged var: a growable values buffer and a growable offsets buffer (n + 1 entries)."""

    __slots__ = ("offsets", "values")

    def __init__(self, data: RaggedArray) -> None:
        self.values = _Column(data.values)
        self.offsets = _Column(data.offsets)

    @property
    def n(self) -> int:
        return self.offsets.n - 1

    def array(self) -> RaggedArray:
        return RaggedArray(self.values.view, self.offsets.view, validate=False)

    def append(self, data: RaggedArray) -> None:
        base = self.offsets.view[-1]
        self.values.append(data.values)
        self.offsets.append(data.offsets[1:] + base)

    def replace(self, data: RaggedArray) -> None:
        self.values = _Column(data.values)
        self.offsets = _Column(data.offsets)


class NumpyBackend(Backend):
    """Vars held in memory as numpy arrays.

    Parameters
    ----------
    **kwargs
        Accepted and ignored, so ``backend_args`` meant for other backends (multiml passed them
        along unchanged) do not break construction.

    Examples
    --------
    >>> be = NumpyBackend()
    >>> be.create_data_id("d")
    >>> be.append("d", "train", "y", np.array([1, 2, 3]))
    >>> be.info("d", "train", "y").shape
    (3,)
    """

    name: ClassVar[str] = "numpy"
    persistent: ClassVar[bool] = False
    supports_ragged: ClassVar[bool] = True

    def __init__(self, **kwargs: Any) -> None:
        self._store: dict[str, dict[str, dict[str, _Column | _RaggedColumn]]] = {}
        self._attrs: dict[str, dict[str, Any]] = {}

    def describe(self) -> str:
        return "numpy (in memory)"

    # ------------------------------------------------------------------ data_ids
    def data_ids(self) -> list[str]:
        return list(self._store)

    def create_data_id(self, data_id: str) -> None:
        if data_id not in self._store:
            self._store[data_id] = {p: {} for p in PHASES}
            self._attrs[data_id] = {}

    def delete_data_id(self, data_id: str) -> None:
        self._phases(data_id)
        del self._store[data_id]
        self._attrs.pop(data_id, None)

    def get_attrs(self, data_id: str) -> dict[str, Any]:
        self._phases(data_id)
        return copy.deepcopy(self._attrs.get(data_id, {}))

    def set_attrs(self, data_id: str, attrs: dict[str, Any]) -> None:
        self._phases(data_id)
        self._attrs[data_id] = copy.deepcopy(attrs)

    # ------------------------------------------------------------------ helpers
    def _phases(self, data_id: str) -> dict[str, dict[str, _Column | _RaggedColumn]]:
        try:
            return self._store[data_id]
        except KeyError:
            raise DataIdNotFoundError(
                f"data_id {data_id!r} does not exist in the numpy backend; existing: "
                f"{sorted(self._store)}."
            ) from None

    def _vars(self, data_id: str, phase: str) -> dict[str, _Column | _RaggedColumn]:
        return self._phases(data_id)[check_phase(phase, allow_all=False)]

    def _column(self, data_id: str, phase: str, var: str) -> _Column | _RaggedColumn:
        cols = self._vars(data_id, phase)
        try:
            return cols[var]
        except KeyError:
            raise VarNotFoundError(
                f"var {var!r} does not exist in data_id {data_id!r}, phase {phase!r}; "
                f"vars there: {list(cols)}."
            ) from None

    # ------------------------------------------------------------------ vars
    def var_names(self, data_id: str, phase: str) -> list[str]:
        # names starting with "." are storegate's temporaries, never listed
        return [v for v in self._vars(data_id, phase) if not v.startswith(".")]

    def has_var(self, data_id: str, phase: str, var: str) -> bool:
        return var in self._vars(data_id, phase)

    def info(self, data_id: str, phase: str, var: str) -> VarInfo:
        col = self._column(data_id, phase, var)
        if isinstance(col, _RaggedColumn):
            vals = col.values.buf
            return VarInfo(var, (col.n, *vals.shape[1:]), vals.dtype, ragged=True,
                           extra={"n_values": col.values.n})
        return VarInfo(var, (col.n, *col.buf.shape[1:]), col.buf.dtype)

    def read(self, data_id: str, phase: str, var: str, index: Index) -> Any:
        col = self._column(data_id, phase, var)
        if isinstance(col, _RaggedColumn):
            ragged = col.array()
            if isinstance(index, np.ndarray):
                return ragged.take(index)
            if isinstance(index, int):
                return ragged.row(index)
            return ragged.slice(index.start, index.stop, index.step)
        view = col.view
        if isinstance(index, np.ndarray):
            return np.take(view, index, axis=0)
        if isinstance(index, int):
            return np.array(view[index], copy=True)
        return view[index].copy()

    def append(self, data_id: str, phase: str, var: str, data: Any) -> None:
        cols = self._vars(data_id, phase)
        col = cols.get(var)
        if col is None:
            cols[var] = _RaggedColumn(data) if isinstance(data, RaggedArray) else _Column(data)
            return
        if isinstance(col, _RaggedColumn) != isinstance(data, RaggedArray):
            raise kind_mismatch(var, ragged_var=isinstance(col, _RaggedColumn))
        if isinstance(col, _RaggedColumn):
            check_row_shape(data.values, col.values.buf.shape[1:], var)
            col.append(RaggedArray(cast_for_write(data.values, col.values.buf.dtype, var),
                                   data.offsets, validate=False))
            return
        assert isinstance(data, np.ndarray)
        check_row_shape(data, col.buf.shape[1:], var)
        col.append(cast_for_write(data, col.buf.dtype, var))

    def write(self, data_id: str, phase: str, var: str, index: Index, data: Any) -> None:
        col = self._column(data_id, phase, var)
        if isinstance(col, _RaggedColumn) != isinstance(data, RaggedArray):
            raise kind_mismatch(var, ragged_var=isinstance(col, _RaggedColumn))
        if isinstance(col, _RaggedColumn):
            check_row_shape(data.values, col.values.buf.shape[1:], var)
            data = RaggedArray(cast_for_write(data.values, col.values.buf.dtype, var),
                               data.offsets, validate=False)
            col.replace(col.array().replace_rows(rows_of(index), data))
            return
        try:
            col.view[index] = data
        except ValueError as err:
            raise ShapeMismatchError(
                f"cannot write data of shape {np.shape(data)} into var {var!r} at {index!r}: "
                f"{err}."
            ) from None

    def create(
        self, data_id: str, phase: str, var: str, shape: tuple[int, ...], dtype: np.dtype
    ) -> None:
        cols = self._vars(data_id, phase)
        cols[var] = _Column(np.zeros(shape, dtype=dtype), owned=True)

    def delete(self, data_id: str, phase: str, var: str) -> None:
        self._column(data_id, phase, var)
        del self._vars(data_id, phase)[var]

    def rename(self, data_id: str, phase: str, src: str, dst: str) -> None:
        cols = self._vars(data_id, phase)
        col = self._column(data_id, phase, src)
        if dst == src:
            return
        if dst in cols:
            cols[dst] = col
            del cols[src]
            return
        # dst takes src's place in the order
        items = [(dst if k == src else k, v) for k, v in cols.items()]
        cols.clear()
        cols.update(items)
        del col
