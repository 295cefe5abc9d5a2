"""Lazy dask views of vars, and parallel, chunk-aligned writes of dask arrays into a store.

:func:`to_dask` turns vars of a :class:`~storegate.StoreGate` into lazy ``dask.array`` arrays
(or an ``xarray.Dataset``) whose blocks are the store's own chunks, so each task reads whole
stored chunks through the backend's public :meth:`~storegate.backends.Backend.read`; building
the array reads metadata only. :func:`from_dask` writes a dask array into a store as a new var
(or appends it, or replaces a var): on a backend with a
:meth:`~storegate.backends.Backend.region_writer` (zarr, local or ``s3://``) the workers of a
dask cluster write their blocks straight into storage, one stored chunk never shared by two
tasks, so arrays larger than the client's memory are converted in parallel; other backends
receive the blocks in order from the client, one window of blocks in memory at a time.

``import storegate.dask`` does not import dask; the functions do, on first use.

Examples
--------
>>> import numpy as np
>>> from storegate import StoreGate
>>> from storegate.dask import from_dask, to_dask
>>> sg = StoreGate("numpy", data_id="d")
>>> sg.add_data("x", np.arange(10.0), phase=(0.8, 0.2, 0.0))
>>> x = to_dask(sg, "x", "all")             # lazy: nothing read yet
>>> float(x.sum().compute())
45.0
>>> from_dask(sg, "y", 2 * x, phase="all")  # split like the compiled phases
>>> sg.get_data("y", "valid").tolist()
[16.0, 18.0]
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .arrays import cast_for_write, check_storable_dtype, native_dtype
from .backends.base import TEMP_PREFIX, Backend, RegionWriter, VarInfo
from .errors import (
    DataIdNotFoundError,
    DtypeError,
    InvalidArgumentError,
    MissingDependencyError,
    NoDataIdError,
    ShapeMismatchError,
    StoreChangedError,
    UnsupportedOperationError,
    VarExistsError,
    VarNotFoundError,
)
from .names import check_name
from .phases import ALL, check_phase, split

__all__ = ["from_dask", "to_dask"]

logger = logging.getLogger(__name__)

#: Rows per dask block of a var whose backend reports no chunking (numpy), in bytes.
DEFAULT_BLOCK_BYTES = 16 << 20
#: Bytes of blocks the client holds at once when it writes blocks itself (no region writer).
WINDOW_BYTES = 64 << 20
_MODES = ("create", "append", "overwrite")


# ---------------------------------------------------------------------------- helpers
def _dask_array() -> Any:
    try:
        import dask.array as da
    except ImportError as err:
        raise MissingDependencyError(
            f"storegate.dask needs dask ({err}); install it: pip install 'storegate[dask]'."
        ) from None
    return da


def _gate(storegate: Any) -> tuple[Any, str]:
    """The gate and its current data_id, or a clear error."""
    from .gate import StoreGate

    if not isinstance(storegate, StoreGate):
        raise InvalidArgumentError(
            f"expected a storegate.StoreGate, got {type(storegate).__name__}; pass the gate, "
            "e.g. to_dask(StoreGate('zarr', {'output_dir': ...}, data_id='d'), 'x')."
        )
    data_id = storegate.data_id
    if data_id is None:
        raise NoDataIdError(
            "the StoreGate has no data_id; set one first: StoreGate(..., data_id='name') or "
            "sg.set_data_id('name')."
        )
    return storegate, data_id


def _info(db: Backend, data_id: str, phase: str, var: str) -> VarInfo:
    if not db.has_var(data_id, phase, var):
        raise VarNotFoundError(
            f"var_name {var!r} does not exist in {data_id!r}, phase {phase!r}; vars there: "
            f"{db.var_names(data_id, phase)}."
        )
    return db.info(data_id, phase, var)


def _row_bytes(row_shape: tuple[int, ...], dtype: np.dtype) -> int:
    return max(1, int(np.prod(row_shape, dtype=np.int64)) * dtype.itemsize)


def _check_rows(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise InvalidArgumentError(f"{what} must be a positive number of rows, got {value!r}.")
    return int(value)


def _round_up(rows: int, unit: int) -> int:
    return max(1, math.ceil(rows / unit)) * unit


# ---------------------------------------------------------------------------- to_dask
class _Where:
    """Which var a read task reads (one opaque argument, so that no name can be mistaken for a
    key of the dask graph)."""

    __slots__ = ("data_id", "dtype", "phase", "row_shape", "var")

    def __init__(self, data_id: str, phase: str, var: str, row_shape: tuple[int, ...],
                 dtype: np.dtype) -> None:
        self.data_id, self.phase, self.var = data_id, phase, var
        self.row_shape, self.dtype = row_shape, dtype

    def __getstate__(self) -> tuple[Any, ...]:
        return (self.data_id, self.phase, self.var, self.row_shape, self.dtype.str)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.data_id, self.phase, self.var, self.row_shape, dt = state
        self.dtype = np.dtype(dt)


def _read_block(db: Backend, where: _Where, start: int, stop: int) -> np.ndarray:
    """The task of :func:`to_dask`: rows ``start:stop`` of a var, read through ``db.read``."""
    try:
        info = db.info(where.data_id, where.phase, where.var)
    except (VarNotFoundError, DataIdNotFoundError):
        info = None
    out: np.ndarray | None = None
    if info is not None and info.length >= stop and not info.ragged:
        out = np.asarray(db.read(where.data_id, where.phase, where.var, slice(start, stop, 1)))
    if out is None or out.shape != (stop - start, *where.row_shape) or out.dtype != where.dtype:
        got = "is gone" if info is None else (
            f"has shape {info.shape} and dtype {info.dtype}" + (" (ragged)" if info.ragged
                                                                  else ""))
        raise StoreChangedError(
            f"var {where.var!r} of {where.data_id!r}, phase {where.phase!r} changed after "
            f"to_dask() was called: it {got}, but rows {start}:{stop} of shape "
            f"{(stop - start, *where.row_shape)} and dtype {where.dtype} were expected. Call "
            "to_dask() again."
        )
    return out


@dataclass
class _Reader:
    """Builds the lazy arrays of one :func:`to_dask` call (they share one backend key)."""

    gate: Any
    data_id: str
    phase: str
    block_rows: int | None
    backend_key: str = ""

    def __post_init__(self) -> None:
        self.da = _dask_array()
        self.backend_key = f"storegate-backend-{uuid.uuid4().hex}"

    def phase_array(self, phase: str, var: str) -> Any:
        from dask.highlevelgraph import HighLevelGraph

        db: Backend = self.gate.db
        info = _info(db, self.data_id, phase, var)
        if info.ragged:
            raise UnsupportedOperationError(
                f"var {var!r} in phase {phase!r} is ragged (its rows differ in length), which a "
                "dask array cannot hold; read it with sg.get_data(..., ragged_as='awkward') or "
                "'raw' (values + offsets), in slices if it is large."
            )
        n, row_shape, dtype = info.length, info.row_shape, np.dtype(info.dtype)
        stored = int(info.chunks[0]) if info.chunks and int(info.chunks[0]) > 0 else None
        if self.block_rows is not None:
            rows = _round_up(self.block_rows, stored) if stored else self.block_rows
        else:
            rows = stored or max(1, DEFAULT_BLOCK_BYTES // _row_bytes(row_shape, dtype))
        starts = list(range(0, n, rows)) or [0]
        sizes = tuple(min(rows, n - s) for s in starts)
        name = f"storegate-{var}-{phase}-{uuid.uuid4().hex}"
        where = _Where(self.data_id, phase, var, row_shape, dtype)
        tail = (0,) * len(row_shape)
        layer: dict[Any, Any] = {
            (name, i, *tail): (_read_block, self.backend_key, where, s, s + size)
            for i, (s, size) in enumerate(zip(starts, sizes, strict=True))}
        graph = HighLevelGraph(
            {self.backend_key: {self.backend_key: db}, name: layer},
            {self.backend_key: set(), name: {self.backend_key}},
        )
        chunks = (sizes, *((s,) for s in row_shape))
        return self.da.Array(graph, name, chunks, dtype=dtype)

    def var_array(self, var: str) -> Any:
        if not isinstance(var, str):
            raise InvalidArgumentError(
                f"var names must be str, got {type(var).__name__} {var!r}."
            )
        if self.phase != ALL:
            return self.phase_array(self.phase, var)
        valid = self.gate.get_metadata()["valid_phases"]
        if not valid:
            raise VarNotFoundError(
                f"data_id {self.data_id!r} has no data in any phase; add data before reading "
                "'all'."
            )
        parts = [self.phase_array(p, var) for p in valid]
        return parts[0] if len(parts) == 1 else self.da.concatenate(parts, axis=0)

    def build(self, var_names: Any) -> Any:
        if isinstance(var_names, list):
            return [self.build(v) for v in var_names]
        if isinstance(var_names, str):
            return self.var_array(var_names)
        if isinstance(var_names, tuple):
            if not var_names:
                raise InvalidArgumentError(
                    "var_names is an empty tuple; give at least one var name, e.g. ('x',)."
                )
            arrays = [self.var_array(v) for v in var_names]
            shapes = {a.shape[1:] for a in arrays}
            if len(shapes) > 1:
                desc = ", ".join(f"{v}: {a.shape[1:]}" for v, a in zip(var_names, arrays,
                                                                        strict=True))
                raise ShapeMismatchError(
                    f"vars read together as a tuple must have the same row shape, got {desc}; "
                    "read them as a list (['a', 'b']) to get one array per var."
                )
            dtype = np.result_type(*[a.dtype for a in arrays])
            return self.da.stack([a.astype(dtype, copy=False) for a in arrays], axis=1)
        raise InvalidArgumentError(
            f"{type(var_names)} is not supported for var_names ({var_names!r}); give a str, a "
            "tuple of str or a list."
        )


def _flat(var_names: Any) -> list[str]:
    if isinstance(var_names, str):
        return [var_names]
    if isinstance(var_names, tuple | list):
        out: list[str] = []
        for v in var_names:
            out.extend(n for n in _flat(v) if n not in out)
        return out
    raise InvalidArgumentError(
        f"{type(var_names)} is not supported for var_names ({var_names!r}); give a str, a "
        "tuple of str or a list."
    )


def to_dask(
    storegate: Any,
    var_names: Any,
    phase: str | None = "train",
    *,
    as_xarray: bool = False,
    block_rows: int | None = None,
) -> Any:
    """Vars of a store as lazy ``dask.array`` arrays whose blocks are the store's chunks.

    Building the arrays reads only metadata (and compiles the data_id if it is stale, as
    :meth:`~storegate.StoreGate.get_data` does). Each task reads whole stored chunks with the
    backend's :meth:`~storegate.backends.Backend.read`, so the arrays work on every backend,
    third-party ones included, and on a ``dask.distributed`` cluster with process workers: the
    backend is one key of the graph, pickled once and sent to each worker that needs it (a
    persistent backend pickles as its location and reopens the store there; a memory backend
    is copied whole, so use a persistent one on a cluster).

    Parameters
    ----------
    storegate
        A :class:`~storegate.StoreGate` with a data_id set.
    var_names
        As in :meth:`~storegate.StoreGate.get_data`: a str gives one array ``(N, *k)``; a tuple
        of M names gives one array ``(N, M, *k)`` (the vars stacked along axis 1, which must
        have the same row shape; dtype: numpy's common type); a list gives a list with one
        result per item.
    phase
        ``'train'``, ``'valid'``, ``'test'``, or ``'all'``/``None``: the non-empty phases
        concatenated in that order (each phase keeps its own chunk boundaries).
    as_xarray
        Return an ``xarray.Dataset`` instead (needs xarray): one data variable per var named in
        ``var_names`` (tuples and lists are flattened), with dims ``('row', '<var>_dim_1',
        ...)`` and attributes ``data_id``, ``phase`` and ``backend``; lazy as well.
    block_rows
        Rows per dask block, rounded up to a multiple of the var's chunk rows (so that blocks
        still hold whole chunks). Default: the chunk rows themselves; for a backend without
        chunks (numpy), about 16 MiB of rows.

    Returns
    -------
    dask.array.Array, list or xarray.Dataset

    Raises
    ------
    VarNotFoundError
        A var is missing in the phase (with ``'all'``: in one of the non-empty phases).
    UnsupportedOperationError
        A var is ragged: a dask array cannot hold rows of different lengths; read it with
        ``get_data`` (awkward or raw) instead.
    MissingDependencyError
        dask (or, for ``as_xarray``, xarray) is not installed.

    Examples
    --------
    >>> import numpy as np
    >>> from storegate import StoreGate
    >>> sg = StoreGate("numpy", data_id="d")
    >>> sg.add_data(("a", "b"), np.arange(12.0).reshape(6, 2), phase=(4, 2, 0))
    >>> a = to_dask(sg, "a", "all", block_rows=3)
    >>> a.chunks                                  # train: 3 + 1 rows, valid: 2 rows
    ((3, 1, 2),)
    >>> a.compute().tolist()
    [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
    >>> to_dask(sg, ("a", "b")).shape, [x.shape for x in to_dask(sg, ["a", "b"])]
    ((4, 2), [(4,), (4,)])
    >>> ds = to_dask(sg, ["a", "b"], "valid", as_xarray=True)
    >>> ds["b"].dims, float(ds["b"].sum())
    (('row',), 20.0)
    """
    gate, data_id = _gate(storegate)
    ph = check_phase(phase)
    reader = _Reader(gate, data_id, ph, _check_rows(block_rows, "block_rows"))
    gate.get_metadata()  # compiles a stale store (and raises if a phase is inconsistent)
    if not as_xarray:
        return reader.build(var_names)
    names = _flat(var_names)
    try:
        import xarray as xr
    except ImportError as err:
        raise MissingDependencyError(
            f"to_dask(..., as_xarray=True) needs xarray ({err}); install it (pip install "
            "xarray) or leave as_xarray=False for dask arrays."
        ) from None
    data_vars = {}
    for v in names:
        arr = reader.var_array(v)
        dims = ("row", *(f"{v}_dim_{i}" for i in range(1, arr.ndim)))
        data_vars[v] = (dims, arr)
    return xr.Dataset(data_vars, attrs={"data_id": data_id, "phase": ph,
                                        "backend": gate.backend})


# ---------------------------------------------------------------------------- from_dask
def _write_block(writer: RegionWriter, start: int, n: int, rows: Any, row_shape: tuple[int, ...],
                 dtype: np.dtype, var: str) -> int:
    """The task of a parallel :func:`from_dask`: one aligned block, written by a worker."""
    writer.write(start, _checked_block(rows, n, row_shape, dtype, var))
    return n


def _checked_block(rows: Any, n: int, row_shape: tuple[int, ...], dtype: np.dtype,
                   var: str) -> np.ndarray:
    rows = np.asarray(rows)
    if rows.shape != (n, *row_shape):
        raise ShapeMismatchError(
            f"a block of the dask array written to var {var!r} has shape {rows.shape}, but the "
            f"array's chunks promise {(n, *row_shape)}; a map_blocks function must return "
            "blocks of the declared shape (give chunks= to map_blocks)."
        )
    return cast_for_write(rows, dtype, var)


@dataclass
class _Piece:
    """One phase's share of the rows: written to the temporary var ``tmp``, then swapped or
    appended in."""

    phase: str
    start: int
    stop: int
    dtype: np.dtype
    append: bool  # append to the existing var (else rename tmp over / into it)
    tmp: str
    writer: RegionWriter | None = None

    @property
    def rows(self) -> int:
        return self.stop - self.start


def _as_dask(array: Any, da: Any) -> Any:
    if isinstance(array, da.Array):
        return array
    if isinstance(array, np.ndarray):
        if array.ndim == 0:
            raise ShapeMismatchError(
                "from_dask got a 0-d array; data need a leading row axis, e.g. [value]."
            )
        return da.from_array(array, chunks=("auto", *array.shape[1:]))
    raise InvalidArgumentError(
        f"from_dask writes a dask.array.Array (or a numpy array), got "
        f"{type(array).__name__}; wrap it, e.g. dask.array.asarray(data, chunks=...)."
    )


def _aligned(arr: Any, chunk_rows: int, block_rows: int | None) -> Any:
    """``arr`` with blocks that start at multiples of ``chunk_rows`` and whole rows."""
    whole = {i: -1 for i in range(1, arr.ndim)}
    sizes = arr.chunks[0]
    if block_rows is not None:
        return arr.rechunk({0: _round_up(block_rows, chunk_rows), **whole})
    bounds = np.cumsum(sizes)[:-1]
    if all(int(b) % chunk_rows == 0 for b in bounds):
        if all(len(c) == 1 for c in arr.chunks[1:]):
            return arr
        return arr.rechunk(whole)
    typical = float(np.median([s for s in sizes if s])) if any(sizes) else chunk_rows
    return arr.rechunk({0: max(1, round(typical / chunk_rows)) * chunk_rows, **whole})


def _blocks(arr: Any) -> list[tuple[int, int, Any]]:
    """``(start, rows, delayed block)`` of each block along axis 0 (one block across)."""
    delayed = arr.to_delayed().reshape(-1)
    starts = np.concatenate([[0], np.cumsum(arr.chunks[0])[:-1]]).astype(int)
    return [(int(s), int(n), d) for s, n, d in zip(starts, arr.chunks[0], delayed, strict=True)]


def from_dask(
    storegate: Any,
    var_name: str,
    array: Any,
    phase: Any = "train",
    *,
    mode: str = "create",
    do_compile: bool = False,
    block_rows: int | None = None,
    scheduler: Any = None,
) -> None:
    """Write a dask array ``(N, *k)`` into the current data_id as a var, in parallel where the
    backend allows.

    The rows are written under a temporary var name (``.sg-tmp-...``, never listed) and made
    visible in one step at the end, so readers see all of the new var or none of it:

    * **parallel** (backends with a :meth:`~storegate.backends.Backend.region_writer`: zarr,
      local or fsspec URLs such as ``s3://``): the array is rechunked along axis 0 so that each
      block starts at a multiple of the store's chunk rows (blocks already aligned are kept),
      and each task writes its block straight into the store from the process that computed
      it, e.g. a worker of a ``dask.distributed`` cluster. No two tasks touch the same stored
      chunk. The client only creates the var, waits and renames it: it never holds the data.
      Every worker must reach the store at the same path (a shared file system) or URL.
    * **from the client** (other backends: numpy, hybrid, parquet, hdf5): blocks are computed
      (by whichever scheduler is active) a window of about 64 MiB at a time and appended in
      order; memory stays bounded by that window.

    Parameters
    ----------
    storegate
        A :class:`~storegate.StoreGate` with a data_id set, writable.
    var_name
        The var to write.
    array
        A ``dask.array.Array`` of a numeric or bool dtype with known chunk sizes (a numpy array
        is accepted too and wrapped with ``dask.array.from_array``).
    phase
        A phase name, ``'all'`` (split by the compiled sizes), fractions ``(0.8, 0.1, 0.1)`` or
        counts, as in :meth:`~storegate.StoreGate.add_data`; every phase's rows are written.
    mode
        ``'create'`` (default): the var must not exist in those phases. ``'overwrite'``:
        replace it if it exists (shape and dtype may change), once the new rows are complete.
        ``'append'``: append to it if it exists (row shape must match, values are cast to its
        dtype as ``add_data`` does), else create it; the rows are first written in parallel to
        the temporary var, then copied onto the var by the client in one transaction.
    do_compile
        Compile afterwards.
    block_rows
        Rows per write task, rounded up to a multiple of the store's chunk rows. Default: the
        array's own blocks when they are aligned, else the aligned size nearest to them.
    scheduler
        Passed to ``dask.compute``; ``None`` uses dask's default (the active
        ``distributed.Client`` if there is one, else threads).

    Raises
    ------
    VarExistsError
        ``mode='create'`` and the var exists in a target phase.
    ShapeMismatchError, DtypeError
        Unknown chunk sizes, a 0-d array, a row shape or dtype that does not fit the var being
        appended to, an object/string dtype, a block whose shape its chunks do not promise.

    Notes
    -----
    If a task fails or the cluster dies, the temporary var is deleted, the store is as before
    and the error is raised again with a note saying so. If the client process itself dies, the
    temporary var stays behind, invisible, and is removed the next time the phase is opened for
    writing. On zarr the client holds the store's writer lock throughout; the workers write
    the chunk files of the temporary var without it (nobody else can see or write that var).

    Examples
    --------
    >>> import tempfile, numpy as np, dask.array as da
    >>> from storegate import StoreGate
    >>> sg = StoreGate("zarr", {"output_dir": tempfile.mkdtemp() + "/s.zarr", "chunk": 4},
    ...                data_id="d")
    >>> x = da.arange(30, chunks=7).reshape(10, 3)   # blocks of 7 rows: realigned to 4
    >>> from_dask(sg, "x", x, phase=(0.8, 0.2, 0.0))
    >>> sg.get_data("x", "valid").tolist()
    [[24, 25, 26], [27, 28, 29]]
    >>> from_dask(sg, "x", x[:2], mode="append")
    >>> sg.get_data("x", "train", -1)[-3:, 0].tolist()
    [21, 0, 3]
    """
    gate, data_id = _gate(storegate)
    var = check_name(var_name)
    if mode not in _MODES:
        raise InvalidArgumentError(
            f"mode {mode!r} is not one of {', '.join(map(repr, _MODES))}."
        )
    rows_opt = _check_rows(block_rows, "block_rows")
    da = _dask_array()
    arr = _as_dask(array, da)
    if arr.ndim == 0:
        raise ShapeMismatchError(
            "from_dask got a 0-d array; data need a leading row axis, e.g. [value]."
        )
    if any(math.isnan(s) for s in arr.shape):
        raise ShapeMismatchError(
            f"the dask array written to var {var!r} has unknown chunk sizes (shape "
            f"{arr.shape}); call array.compute_chunk_sizes() first."
        )
    dtype = native_dtype(check_storable_dtype(arr.dtype, f"data for var {var!r}"))
    n, row_shape = int(arr.shape[0]), tuple(int(s) for s in arr.shape[1:])
    sizes = gate.get_metadata()["sizes"] if (
        isinstance(phase, str) and check_phase(phase) == ALL) else None
    db: Backend = gate.db
    db._check_writable()  # read-only or locked: fail before anything is computed
    pieces: list[_Piece] = []
    for ph, a, b in split(phase, n, sizes):
        exists = db.has_var(data_id, ph, var)
        if exists and mode == "create":
            raise VarExistsError(
                f"from_dask: var {var!r} already exists in {data_id!r}, phase {ph!r}; pass "
                "mode='overwrite' to replace it or mode='append' to add rows, or delete it "
                f"first (sg.delete_data({var!r}, phase={ph!r}))."
            )
        target = dtype
        if exists and mode == "append":
            info = db.info(data_id, ph, var)
            if info.ragged:
                raise UnsupportedOperationError(
                    f"from_dask cannot append to ragged var {var!r} in phase {ph!r}; use "
                    "add_data with ragged rows."
                )
            if info.row_shape != row_shape:
                raise ShapeMismatchError(
                    f"var {var!r} in phase {ph!r} has rows of shape {info.row_shape}, but the "
                    f"dask array has rows of shape {row_shape}; reshape the array."
                )
            if not np.can_cast(dtype, info.dtype, casting="same_kind"):
                raise DtypeError(
                    f"cannot append {dtype} data to var {var!r} of dtype {info.dtype} in phase "
                    f"{ph!r} without losing values; cast the array (array.astype"
                    f"('{info.dtype}')) or convert the var (sg.astype({var!r}, '{dtype}'))."
                )
            target = np.dtype(info.dtype)
        pieces.append(_Piece(ph, a, b, target, exists and mode == "append", _client_tmp(var)))
    if not pieces:
        logger.info("from_dask: no rows for var %r; nothing written", var)
        if do_compile:
            gate.compile()
        return
    try:
        _stage(db, data_id, var, arr, pieces, rows_opt, scheduler)
        with db.transaction():  # the swap: every phase, or none of them
            gate._invalidate(data_id)
            for p in pieces:
                if p.writer is not None:
                    db.end_region_writes(data_id, p.phase, p.tmp)
                if p.append:
                    _copy_rows(db, data_id, p.phase, p.tmp, var)
                    db.delete(data_id, p.phase, p.tmp)
                else:
                    db.rename(data_id, p.phase, p.tmp, var)
            db.flush()
    except BaseException as err:
        _remove_temporaries(db, data_id, pieces)
        if isinstance(err, Exception):
            err.add_note(
                f"storegate.dask.from_dask: writing var {var!r} of data_id {data_id!r} failed; "
                "the store is unchanged (the partly written temporary copy was removed)."
            )
        raise
    if do_compile:
        gate.compile()


def _client_tmp(var: str) -> str:
    """The temporary var the client writes ``var``'s rows to: always the same for a var (so a
    leftover of a killed process is found and replaced) and short (a var name may be 255
    bytes, a file name no longer)."""
    import hashlib

    return f"{TEMP_PREFIX}client-{hashlib.sha256(var.encode()).hexdigest()[:24]}"


def _compute_all(tasks: list[Any], scheduler: Any) -> tuple[Any, ...]:
    """``dask.compute(*tasks)``; on a distributed ``Client``, every task has finished (or
    failed) before this returns or raises, so no write is still running on a worker when the
    caller cleans up after a failure."""
    import dask

    if hasattr(scheduler, "compute") and hasattr(scheduler, "gather"):
        futures = scheduler.compute(tasks)
        for future in futures:  # all done or failed (through the client that ran them)
            future.exception()
        return tuple(scheduler.gather(futures))  # raises the first error
    return tuple(dask.compute(*tasks, scheduler=scheduler))


def _stage(db: Backend, data_id: str, var: str, arr: Any, pieces: Sequence[_Piece],
           block_rows: int | None, scheduler: Any) -> None:
    """Write every piece's rows into its temporary var.

    Parallel writes go to a temporary of a name of their own (``.sg-tmp-dask-<hex>``): after a
    failure, tasks that were already running on the workers may still write a block, and must
    not write into the temporary of a later call. Rows the client writes itself go to a name
    derived from the var's (:func:`_client_tmp`).
    """
    import dask

    with db.transaction():
        for p in pieces:
            if db.has_var(data_id, p.phase, p.tmp):  # left by a process that died
                db.delete(data_id, p.phase, p.tmp)
    if type(db).region_writer is not Backend.region_writer:
        own = f"{TEMP_PREFIX}dask-{uuid.uuid4().hex[:16]}"
        with db.transaction():
            for p in pieces:
                p.tmp = own
                db.create(data_id, p.phase, p.tmp, (p.rows, *arr.shape[1:]), p.dtype)
        for p in pieces:
            p.writer = db.region_writer(data_id, p.phase, p.tmp)
            if p.writer is None:
                with db.transaction():
                    db.delete(data_id, p.phase, p.tmp)
                p.tmp = _client_tmp(var)
                if db.has_var(data_id, p.phase, p.tmp):
                    with db.transaction():
                        db.delete(data_id, p.phase, p.tmp)
    row_shape = tuple(int(s) for s in arr.shape[1:])
    tasks: list[Any] = []
    write = dask.delayed(_write_block, pure=False)
    for p in pieces:
        if p.writer is None:
            continue
        part = _aligned(arr[p.start:p.stop], p.writer.chunk_rows, block_rows)
        tasks.extend(write(p.writer, start, n, block, row_shape, p.dtype, var)
                     for start, n, block in _blocks(part) if n)
    if tasks:
        logger.info("from_dask: %d parallel write tasks for var %r", len(tasks), var)
        done = _compute_all(tasks, scheduler)
        expected = sum(p.rows for p in pieces if p.writer is not None)
        if sum(done) != expected:  # pragma: no cover - a scheduler that skipped tasks
            raise StoreChangedError(
                f"from_dask wrote {sum(done)} rows of var {var!r}, expected {expected}."
            )
    for p in pieces:
        if p.writer is None:
            _stream(db, data_id, p, arr[p.start:p.stop], block_rows, scheduler, var)


def _stream(db: Backend, data_id: str, p: _Piece, arr: Any, block_rows: int | None,
            scheduler: Any, var: str) -> None:
    """Compute blocks a window at a time and append them to the piece's temporary var in order
    (the client writes: backends without a region writer)."""
    import dask

    row_shape = tuple(int(s) for s in arr.shape[1:])
    row_bytes = _row_bytes(row_shape, p.dtype)
    rows = block_rows or max(1, DEFAULT_BLOCK_BYTES // row_bytes)
    blocks = [b for b in _blocks(arr.rechunk({0: rows, **{i: -1 for i in
                                                         range(1, arr.ndim)}})) if b[1]]
    window = max(1, WINDOW_BYTES // (rows * row_bytes))
    with db.transaction():
        for i in range(0, len(blocks), window):
            part = blocks[i:i + window]
            values = dask.compute(*[d for _, _, d in part], scheduler=scheduler)
            for (_, n, _), value in zip(part, values, strict=True):
                db.append(data_id, p.phase, p.tmp, _checked_block(value, n, row_shape,
                                                                  p.dtype, var))
        db.flush()


def _copy_rows(db: Backend, data_id: str, phase: str, src: str, dst: str) -> None:
    """Append every row of var ``src`` to var ``dst`` (same phase), block by block."""
    info = db.info(data_id, phase, src)
    dst_info = db.info(data_id, phase, dst)
    step = max(1, DEFAULT_BLOCK_BYTES // _row_bytes(info.row_shape, info.dtype))
    if dst_info.chunks and int(dst_info.chunks[0]) > 0:
        step = _round_up(step, int(dst_info.chunks[0]))
    for start in range(0, info.length, step):
        stop = min(info.length, start + step)
        db.append(data_id, phase, dst, db.read(data_id, phase, src, slice(start, stop, 1)))


def _remove_temporaries(db: Backend, data_id: str, pieces: Sequence[_Piece]) -> None:
    for p in pieces:
        try:
            with db.transaction():
                if db.has_var(data_id, p.phase, p.tmp):
                    db.delete(data_id, p.phase, p.tmp)
        except Exception as err:  # the original error matters more; the next open cleans up
            logger.warning("from_dask: could not remove temporary var %r in phase %r (%s); it "
                           "is removed the next time the phase is opened for writing",
                           p.tmp, p.phase, err)
