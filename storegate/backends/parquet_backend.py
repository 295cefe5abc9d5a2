"""The parquet backend: vars as columns of plain Parquet files, one directory per data_id/phase.

Layout::

    <output_dir>/_storegate_parquet.json                 marks the store (format, version)
    <output_dir>/<data_id>/_storegate_attrs.json         the data_id's attributes; its existence
                                                         is the record that the data_id exists
    <output_dir>/<data_id>/<phase>/_storegate_manifest.json
    <output_dir>/<data_id>/<phase>/part-000000-1a2b3c4d.parquet   data files

The **manifest** of a phase is the source of truth: the var order, each var's dtype, row shape
and ragged flag, and for each var the files that hold its rows in order (with each file's row
count, row-group sizes and the column that holds the var). It is JSON, written to a temporary
file and ``os.replace``\\ d into place, and always written *after* the data files it points at,
so a writer killed at any moment leaves the previous manifest pointing at complete files. Data
files are never modified: appends add files, in-place writes write replacements and then swap
the manifest. Files the manifest does not list (left by a killed writer, or replaced) are
ignored, and removed the next time the store is opened for writing.

Each var is one column: scalars as primitive columns, fixed-shape rows ``(k1, k2, ...)`` as
(nested) fixed-size lists, ragged rows ``(n_i, *k)`` as large lists, complex numbers as
fixed-size lists of two floats (the numpy dtype is recorded in the manifest and in the field
metadata). All fields are non-nullable. Vars of a phase whose buffered rows cover the same row
range when they are flushed are written into the same files, so ``add_data('x', X);
add_data('y', y); compile()`` produces files that ``pyarrow.dataset.dataset(phase_dir)`` and
``pandas.read_parquet(phase_dir)`` read as one table with columns ``x`` and ``y`` (those readers
ignore the ``_``-prefixed manifest).

Random gathers of regular vars are served from a decoded :class:`~storegate.backends.arena.Arena`
per var (filled row group by row group on first touch, within ``cache_bytes``); other reads
decode only the row groups and the column they need, through a small LRU cache of decoded row
groups (``rowgroup_cache_bytes``). See ``docs/backends/parquet.md``.

A directory (or single file) of Parquet files that storegate did not write opens read-only
(``mode='r'``): its supported columns appear as the vars of one data_id, all rows in phase
``'train'``.

``output_dir`` may also be an fsspec URL (``s3://bucket/store.parquet``, ``gs://...``,
``memory://...``; options such as the endpoint and credentials in ``storage_options`` or the
usual environment variables). Such a *remote* store has the same layout and the same commit
order (data files first, then the manifest; each object is written in one atomic PUT, so a
reader never sees a manifest naming a missing file) but no writer lock and no undo journal:
one writer at a time is up to the user, and a failed multi-step change is not rolled back.
Reads of remote files fetch only the byte ranges of the column chunks they need, all the
ranges of one read concurrently, after reading each file's footer once.

Examples
--------
>>> import tempfile, numpy as np
>>> from storegate import StoreGate
>>> path = tempfile.mkdtemp() + "/store.parquet"
>>> sg = StoreGate("parquet", {"output_dir": path}, data_id="jets")
>>> sg.add_data("pt", np.arange(10.0), phase=(0.8, 0.1, 0.1))
>>> sg.add_data("label", np.arange(10) % 2, phase=(0.8, 0.1, 0.1))
>>> sg.compile()
>>> StoreGate("parquet", {"output_dir": path, "mode": "r"}, data_id="jets")["train"]["pt"][[0, 7]]
array([0., 7.])
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import logging
import os
import secrets
import shutil
import tempfile
import threading
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..arrays import cast_for_write, check_row_shape, check_storable_dtype
from ..errors import (
    BackendImportError,
    CorruptStoreError,
    DataIdNotFoundError,
    DtypeError,
    InvalidArgumentError,
    MissingDependencyError,
    ReadOnlyError,
    ShapeMismatchError,
    StoregateError,
    StoreNotFoundError,
    VarExistsError,
    VarNotFoundError,
)
from ..indexing import Index
from ..names import check_name
from ..phases import PHASES, check_phase
from ..ragged import RaggedArray, kind_mismatch, rows_of
from .arena import Arena, ArenaCache, default_cache_bytes
from .base import TEMP_PREFIX, Backend, VarInfo
from .journal import JOURNAL_DIR, DirJournal, Transactions, Writer, recover_abandoned
from .lifecycle import flush_at_exit, remove_own_tmpdir
from .locking import LOCK_NAME, ObjectLease, WriterLock, pid_alive

__all__ = ["ParquetBackend"]

logger = logging.getLogger(__name__)

_MODES = ("r", "r+", "a", "w", "w-")
ROOT_MARKER = "_storegate_parquet.json"
ATTRS_FILE = "_storegate_attrs.json"
MANIFEST = "_storegate_manifest.json"
FORMAT_NAME = "storegate-parquet"
FORMAT_VERSION = 1
_DTYPE_KEY = b"storegate.dtype"
_SHAPE_KEY = b"storegate.shape"
_RAGGED_KEY = b"storegate.ragged"
_PART_PREFIX = "part-"
_TMP_PREFIX = ".tmp-"
_DELETED_PREFIX = ".sg-deleted-"
_LOCK_FILE = LOCK_NAME
_PRIVATE = (_LOCK_FILE, JOURNAL_DIR)

DEFAULT_ROW_GROUP_BYTES = 8 << 20
DEFAULT_FILE_BYTES = 128 << 20
DEFAULT_ROWGROUP_CACHE_BYTES = 64 << 20
_MAX_ROW_GROUP_ROWS = 1 << 20  # pyarrow's own cap per row group
_MAX_HANDLES = 64
_MAX_REMOTE_HANDLES = 512  # remote handles: a footer (small files: whole), no OS resource
_WINDOW_FILES = 128  # remote files whose chunks one batch of a read prefetches
_TAIL_BYTES = 64 << 10  # first read of a remote file's end (its footer, usually whole)
_MERGE_GAP = 64 << 10  # remote ranges this close are fetched as one request ...
_MERGE_MAX = 4 << 20  # ... while the request stays this small (large ones run in parallel)
_OPEN_THREADS = 16  # remote footers read at once
_PREFETCH_BYTES = 256 << 20  # remote column chunks held at once by one read
_GROUPS_PER_TASK = 2  # row groups decoded per task of a parallel fill
_FILL_THREADS = max(1, min(4, os.cpu_count() or 1))
_PARALLEL_FILL_BYTES = 32 << 20  # fills smaller than this decode in the calling thread
_COMPRESSIONS = ("none", "snappy", "lz4", "zstd", "gzip", "brotli")
#: Limits of what a manifest may claim (larger numbers are damage, not data): rows and row
#: groups per file, dimensions, value counts; and the bytes of one row of a var.
_MAX_MANIFEST_COUNT = 1 << 48
_MAX_ROW_BYTES = 1 << 40
_PARQUET_SUFFIXES = (".parquet", ".parq", ".pq")


# ---------------------------------------------------------------------------------- pyarrow
def _arrow() -> tuple[Any, Any]:
    """``(pyarrow, pyarrow.parquet)``, imported on first use (``import storegate`` never does)."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as err:  # pragma: no cover - pyarrow is installed where tests run
        raise BackendImportError(
            f"the parquet backend needs pyarrow ({err}); install it with "
            "pip install 'storegate[parquet]'."
        ) from None
    return pa, pq


def _default_buffer_bytes() -> int:
    """An eighth of physical memory, at least 256 MiB: the default append buffer."""
    return max(256 << 20, default_cache_bytes() // 2)


# ---------------------------------------------------------------------------------- encoding
def _zero_size(shape: Sequence[int]) -> bool:
    return any(int(s) == 0 for s in shape)


def _leaf_type(dtype: np.dtype) -> Any:
    """The Arrow type of one scalar of ``dtype`` (complex: a fixed-size list of two floats)."""
    pa, _ = _arrow()
    kind, size = dtype.kind, dtype.itemsize
    if kind == "b":
        return pa.bool_()
    if kind in "iu" and size in (1, 2, 4, 8):
        return pa.from_numpy_dtype(dtype.newbyteorder("="))
    if kind == "f" and size in (2, 4, 8):
        return pa.from_numpy_dtype(dtype.newbyteorder("="))
    if kind == "c" and size in (8, 16):
        part = pa.from_numpy_dtype(np.dtype(f"f{size // 2}"))
        return pa.list_(pa.field("element", part, nullable=False), 2)
    raise DtypeError(
        f"dtype {dtype} has no Parquet representation in storegate; use bool, int8..int64, "
        "uint8..uint64, float16/32/64 or complex64/128 (e.g. data.astype('float64'))."
    )


def _item_type(dtype: np.dtype, shape: Sequence[int]) -> Any:
    """The Arrow type of one item of shape ``shape`` (nested fixed-size lists)."""
    pa, _ = _arrow()
    if _zero_size(shape):
        return pa.null()
    t = _leaf_type(dtype)
    for k in reversed(tuple(shape)):
        t = pa.list_(pa.field("element", t, nullable=False), int(k))
    return t


def _column_type(dtype: np.dtype, shape: Sequence[int], ragged: bool) -> Any:
    pa, _ = _arrow()
    item = _item_type(dtype, shape)
    if ragged:
        return pa.large_list(pa.field("element", item, nullable=pa.types.is_null(item)))
    return item


def _to_arrow(values: np.ndarray, dtype: np.dtype, shape: Sequence[int]) -> Any:
    """Rows ``(n, *shape)`` of ``dtype`` as an Arrow array of nested fixed-size lists (no loop:
    one flat buffer, wrapped level by level)."""
    pa, _ = _arrow()
    n = int(values.shape[0])
    if _zero_size(shape):
        return pa.nulls(n)
    flat = np.ascontiguousarray(values)
    if not flat.dtype.isnative:
        flat = flat.astype(flat.dtype.newbyteorder("="))
    if dtype.kind == "c":
        flat = flat.view(np.dtype(f"f{dtype.itemsize // 2}"))
    arr = _flat_array(flat.reshape(-1))
    types = []
    t = _item_type(dtype, shape)
    while pa.types.is_fixed_size_list(t):
        types.append(t)
        t = t.value_type
    for t in reversed(types):
        arr = pa.FixedSizeListArray.from_arrays(arr, type=t)
    return arr


def _flat_array(flat: np.ndarray) -> Any:
    """A 1-D native numpy array as an Arrow array over the same memory (bools are bit-packed).

    Built from buffers rather than with ``pyarrow.array``, which imports pandas on first use
    and so cannot run while the interpreter shuts down (when buffered rows are written)."""
    pa, _ = _arrow()
    n = int(flat.shape[0])
    if flat.dtype.kind == "b":
        bits = np.packbits(flat.view(np.uint8), bitorder="little")
        return pa.Array.from_buffers(pa.bool_(), n, [None, pa.py_buffer(bits)])
    typ = pa.from_numpy_dtype(flat.dtype)
    return pa.Array.from_buffers(typ, n, [None, pa.py_buffer(np.ascontiguousarray(flat))])


def _ragged_to_arrow(data: RaggedArray, dtype: np.dtype, shape: Sequence[int]) -> Any:
    pa, _ = _arrow()
    items = _to_arrow(data.values, dtype, shape)
    typ = _column_type(dtype, shape, ragged=True)
    offsets = _flat_array(np.ascontiguousarray(data.offsets, dtype=np.int64))
    return pa.LargeListArray.from_arrays(offsets, items, type=typ)


def _check_nulls(arr: Any, what: str) -> None:
    if arr.null_count:
        raise DtypeError(
            f"{what} holds {arr.null_count} missing values (nulls), which numpy arrays cannot "
            "represent; fill them (e.g. pandas fillna) and write the file again."
        )


def _from_arrow(arr: Any, spec: _Spec, what: str) -> np.ndarray:
    """One Arrow array (not chunked) of a regular var as numpy ``(n, *shape)``. The result may
    be a read-only view of Arrow memory: callers copy it."""
    pa, _ = _arrow()
    n = len(arr)
    if _zero_size(spec.shape):
        return np.zeros((n, *spec.shape), dtype=spec.dtype)
    if isinstance(arr, pa.ExtensionArray):
        arr = arr.storage
    _check_nulls(arr, what)
    flat = arr
    for _ in range(spec.depth):
        if not (pa.types.is_fixed_size_list(flat.type) or pa.types.is_list(flat.type)
                or pa.types.is_large_list(flat.type)):
            raise _mismatch(what, spec, flat.type)
        flat = flat.flatten()
        _check_nulls(flat, what)
    leaf = (np.dtype(f"f{spec.dtype.itemsize // 2}") if spec.dtype.kind == "c"
            else spec.dtype.newbyteorder("="))
    items = n * int(np.prod(spec.shape, dtype=np.int64)) * (2 if spec.dtype.kind == "c" else 1)
    try:
        same = flat.type == pa.from_numpy_dtype(leaf)
    except (pa.ArrowException, TypeError, NotImplementedError):
        same = False
    if not same:
        raise _mismatch(what, spec, flat.type)
    if len(flat) != items:
        raise _mismatch(what, spec, flat.type, len(flat), items)
    out = _numpy_of(flat)
    if spec.dtype.kind == "c":
        out = np.ascontiguousarray(out).view(spec.dtype.newbyteorder("="))
    out = out.reshape((n, *spec.shape))
    if out.dtype != spec.dtype:
        out = out.astype(spec.dtype)
    return out


def _mismatch(what: str, spec: _Spec, typ: Any, got: int | None = None,
              want: int | None = None) -> CorruptStoreError:
    """The data of a column do not have the type or size its var's description says."""
    count = "" if got is None else f", {got} values where {want} are needed"
    return CorruptStoreError(
        f"{what} does not hold what the var's description says (items of shape "
        f"{spec.shape} of {spec.dtype}; found {typ}{count}); the data file or the manifest "
        "was modified outside storegate. Run `storegate check` on the store.")


def _numpy_of(arr: Any) -> np.ndarray:
    """A primitive Arrow array without nulls as numpy, viewing its buffer (no copy).

    Reads the buffers directly: ``Array.to_numpy`` imports pandas on first use (0.3-0.5 s)."""
    pa, _ = _arrow()
    n, offset = len(arr), arr.offset
    buf = arr.buffers()[1]
    if pa.types.is_boolean(arr.type):
        if buf is None or n == 0:
            return np.zeros(n, dtype=bool)
        bits = np.unpackbits(np.frombuffer(buf, dtype=np.uint8), bitorder="little")
        return bits[offset : offset + n].view(bool)
    try:
        dtype = np.dtype(arr.type.to_pandas_dtype())
    except (NotImplementedError, TypeError):  # pragma: no cover - non-numeric types
        return np.asarray(arr.to_numpy(zero_copy_only=False))
    if buf is None or n == 0:
        return np.zeros(n, dtype=dtype)
    return np.frombuffer(buf, dtype=dtype, count=n, offset=offset * dtype.itemsize)


def _ragged_from_arrow(arr: Any, spec: _Spec, what: str) -> RaggedArray:
    """One Arrow list array as a :class:`RaggedArray` (values may view Arrow memory)."""
    _check_nulls(arr, what)
    offsets = _numpy_of(arr.offsets).astype(np.int64)
    start, stop = int(offsets[0]), int(offsets[-1])
    items = arr.values.slice(start, stop - start)
    values = _from_arrow(items, spec, what)
    return RaggedArray(values, offsets - start, validate=False)


def _chunks(chunked: Any) -> list[Any]:
    return list(chunked.chunks) if hasattr(chunked, "chunks") else [chunked]


@dataclass(frozen=True)
class _Spec:
    """How to decode a column: numpy dtype, item shape, and how many list levels to flatten."""

    dtype: np.dtype
    shape: tuple[int, ...]
    depth: int


# ---------------------------------------------------------------------------------- manifest
@dataclass
class _FileMeta:
    """One data file: rows, row-group sizes, var -> column, and (ragged vars) values per group."""

    rows: int
    row_groups: list[int]
    columns: dict[str, str]
    values: dict[str, list[int]] = field(default_factory=dict)

    def clone(self) -> _FileMeta:
        return _FileMeta(self.rows, list(self.row_groups), dict(self.columns),
                         {k: list(v) for k, v in self.values.items()})

    def to_json(self) -> dict[str, Any]:
        return {"rows": self.rows, "row_groups": self.row_groups, "columns": self.columns,
                "values": self.values}


@dataclass
class _VarMeta:
    """One var: dtype, row (ragged: item) shape, ragged flag and its files in row order."""

    dtype: np.dtype
    shape: tuple[int, ...]
    ragged: bool
    files: list[str]
    depth: int | None = None  # list levels to flatten; None: derived from dtype and shape

    @property
    def spec(self) -> _Spec:
        depth = self.depth
        if depth is None:
            depth = len(self.shape) + (1 if self.dtype.kind == "c" else 0)
        return _Spec(self.dtype, self.shape, depth)

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    def clone(self) -> _VarMeta:
        return _VarMeta(self.dtype, self.shape, self.ragged, list(self.files), self.depth)

    def to_json(self) -> dict[str, Any]:
        return {"dtype": self.dtype.str, "shape": list(self.shape), "ragged": self.ragged,
                "files": self.files}


@dataclass
class _Manifest:
    """The committed description of a phase (see the module docstring)."""

    order: list[str] = field(default_factory=list)
    vars: dict[str, _VarMeta] = field(default_factory=dict)
    files: dict[str, _FileMeta] = field(default_factory=dict)
    next_file: int = 0

    def clone(self) -> _Manifest:
        return _Manifest(list(self.order), {k: v.clone() for k, v in self.vars.items()},
                         {k: f.clone() for k, f in self.files.items()}, self.next_file)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "next_file": self.next_file,
            "var_order": self.order,
            "vars": {k: v.to_json() for k, v in self.vars.items()},
            "files": {k: f.to_json() for k, f in self.files.items()},
        }

    @classmethod
    def from_json(cls, text: str, where: str) -> _Manifest:
        """Parse and check a manifest; any inconsistency is a ``CorruptStoreError``."""

        def bad(why: str) -> CorruptStoreError:
            return CorruptStoreError(
                f"the manifest {where!r} is damaged ({why}); the store was modified outside "
                "storegate or the file was truncated. Restore it from a backup, or delete the "
                "phase directory to drop that phase's data."
            )

        def count(x: Any, what: str) -> int:
            # exact JSON integers only: int() would take 1000.5, True or "7"
            if type(x) is not int or not 0 <= x <= _MAX_MANIFEST_COUNT:
                raise ValueError(f"{what} is {x!r}, not a count from 0 to {_MAX_MANIFEST_COUNT}")
            return x

        try:
            raw = json.loads(text)
        except (ValueError, UnicodeDecodeError, RecursionError) as err:
            # ValueError: also numbers of more than 4,300 digits; RecursionError: deep nesting
            raise bad(f"not JSON: {type(err).__name__}: {err}") from None
        if not isinstance(raw, dict) or raw.get("format") != FORMAT_NAME:
            raise bad("not a storegate parquet manifest")
        version = raw.get("version", 0)
        if type(version) is not int:
            raise bad(f"version {version!r} is not an integer")
        if version > FORMAT_VERSION:
            raise CorruptStoreError(
                f"the manifest {where!r} has format version {raw.get('version')}, newer than "
                f"this storegate understands ({FORMAT_VERSION}); upgrade storegate."
            )
        try:
            files: dict[str, _FileMeta] = {}
            for name, f in dict(raw["files"]).items():
                fm = _FileMeta(count(f["rows"], f"rows of {name!r}"),
                               [count(r, f"a row group of {name!r}") for r in f["row_groups"]],
                               {str(k): str(c) for k, c in dict(f["columns"]).items()},
                               {str(k): [count(x, f"a value count of {name!r}") for x in v]
                                for k, v in dict(f.get("values", {})).items()})
                if sum(fm.row_groups) != fm.rows or any(r < 0 for r in fm.row_groups):
                    raise ValueError(f"row groups of {name!r} do not add up to its rows")
                if any(len(v) != len(fm.row_groups) for v in fm.values.values()):
                    raise ValueError(f"value counts of {name!r} do not match its row groups")
                if (not isinstance(name, str) or not name or "/" in name or "\\" in name
                        or "\x00" in name or name.startswith(".") or name == MANIFEST):
                    raise ValueError(f"bad file name {name!r}")
                files[str(name)] = fm
            variables: dict[str, _VarMeta] = {}
            for name, v in dict(raw["vars"]).items():
                dtype = check_storable_dtype(np.dtype(str(v["dtype"])), f"var {name!r}")
                shape = tuple(count(s, f"a dimension of var {name!r}") for s in v["shape"])
                if int(np.prod(shape, dtype=object)) * dtype.itemsize > _MAX_ROW_BYTES:
                    raise ValueError(f"var {name!r} claims rows of shape {shape} of {dtype}, "
                                     f"more than {_MAX_ROW_BYTES} bytes each")
                if type(v["ragged"]) is not bool:
                    raise ValueError(f"the ragged flag of var {name!r} is {v['ragged']!r}")
                vm = _VarMeta(dtype, shape, v["ragged"], [str(f) for f in v["files"]])
                for f in vm.files:
                    if f not in files or name not in files[f].columns:
                        raise ValueError(f"var {name!r} lists file {f!r}, which does not hold it")
                    if vm.ragged and name not in files[f].values:
                        raise ValueError(f"ragged var {name!r} has no value counts in {f!r}")
                variables[str(name)] = vm
            order = [str(v) for v in raw["var_order"]]
            if sorted(order) != sorted(variables) or len(set(order)) != len(order):
                raise ValueError("var_order does not list each var once")
            next_file = count(raw.get("next_file", 0), "next_file")
        except CorruptStoreError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as err:
            raise bad(f"{type(err).__name__}: {err}") from None
        return cls(order, variables, files, next_file)


class _Layout:
    """Where a var's rows are: cumulative rows per file and per row group (no I/O)."""

    __slots__ = ("chunk_rows", "columns", "file_starts", "files", "group_starts", "length",
                 "n_values", "rg_file", "rg_local", "rg_starts")

    def __init__(self, vm: _VarMeta, files: dict[str, _FileMeta], var: str) -> None:
        self.files = list(vm.files)
        self.columns = [files[f].columns[var] for f in self.files]
        self.group_starts = []
        for f in self.files:
            starts = np.zeros(len(files[f].row_groups) + 1, dtype=np.int64)
            np.cumsum(files[f].row_groups, out=starts[1:])
            self.group_starts.append(starts)
        rows = [files[f].rows for f in self.files]
        self.file_starts = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(rows, out=self.file_starts[1:])
        groups = [files[f].row_groups for f in self.files]
        sizes = np.array([r for g in groups for r in g], dtype=np.int64)
        self.rg_starts = np.zeros(sizes.shape[0] + 1, dtype=np.int64)
        np.cumsum(sizes, out=self.rg_starts[1:])
        self.rg_file = np.repeat(np.arange(len(groups), dtype=np.int64),
                                 [len(g) for g in groups])
        self.rg_local = np.concatenate(
            [np.arange(len(g), dtype=np.int64) for g in groups]) if groups else np.zeros(
            0, dtype=np.int64)
        self.length = int(self.file_starts[-1])
        self.chunk_rows = int(sizes.max()) if sizes.size else 1
        self.n_values = sum(sum(files[f].values.get(var, [])) for f in self.files)


# ---------------------------------------------------------------------------------- state
@dataclass(frozen=True)
class _Settings:
    location: str
    compression: str
    compression_level: int | None
    row_group_rows: int | None
    row_group_bytes: int
    file_rows: int | None
    file_bytes: int
    cache_bytes: int
    rowgroup_cache_bytes: int
    buffer_bytes: int
    fsync: bool
    foreign_data_id: str | None
    url: bool = False  # an fsspec URL (a remote store), not a local directory
    storage_options: dict[str, Any] | None = None


class _Pending:
    """Rows appended to a var and not yet written (always copies owned by the backend)."""

    __slots__ = ("nbytes", "parts", "rows", "values")

    def __init__(self) -> None:
        self.parts: list[Any] = []
        self.rows = 0
        self.values = 0
        self.nbytes = 0

    def add(self, part: Any) -> None:
        self.parts.append(part)
        self.rows += len(part)
        if isinstance(part, RaggedArray):
            self.values += int(part.values.shape[0])
        self.nbytes += int(part.nbytes)

    def block(self) -> Any:
        """All pending rows as one array (consolidated in place)."""
        if len(self.parts) > 1:
            if isinstance(self.parts[0], RaggedArray):
                self.parts = [RaggedArray.concatenate(self.parts)]
            else:
                self.parts = [np.concatenate(self.parts)]
        return self.parts[0]


@dataclass
class _Phase:
    data_id: str
    name: str
    path: str
    manifest: _Manifest
    pending: dict[str, _Pending] = field(default_factory=dict)
    dirty: bool = False
    layouts: dict[str, tuple[tuple[str, ...], _Layout]] = field(default_factory=dict)

    def layout(self, var: str) -> _Layout:
        vm = self.manifest.vars[var]
        key = tuple(vm.files)
        hit = self.layouts.get(var)
        if hit is not None and hit[0] == key:
            return hit[1]
        lay = _Layout(vm, self.manifest.files, var)
        self.layouts[var] = (key, lay)
        return lay


class _Handle:
    """An open Parquet file (footer parsed once) and a lock serialising reads through it."""

    __slots__ = ("closed", "file", "lock")

    def __init__(self, file: Any) -> None:
        self.file = file
        self.lock = threading.Lock()
        self.closed = False

    def close(self) -> None:
        """Close the file once no read is using it (a reader holds :attr:`lock`); a reader that
        got this handle before it was closed sees :attr:`closed` and opens the file again."""
        with self.lock:
            self.closed = True
            with contextlib.suppress(Exception):
                self.file.close()


class _RowGroupCache:
    """Decoded row groups ``(path, row group, column) -> array``, least recently used dropped
    first, within a byte budget."""

    def __init__(self, limit: int) -> None:
        self.limit = int(limit)
        self.used = 0
        self._items: OrderedDict[tuple[str, int, str], tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, int, str]) -> Any:
        with self._lock:
            hit = self._items.get(key)
            if hit is None:
                return None
            self._items.move_to_end(key)
            return hit[0]

    def put(self, key: tuple[str, int, str], value: Any, nbytes: int) -> None:
        if nbytes > self.limit:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.used -= old[1]
            while self._items and self.used + nbytes > self.limit:
                _, (_, size) = self._items.popitem(last=False)
                self.used -= size
            self._items[key] = (value, nbytes)
            self.used += nbytes

    def drop_files(self, paths: Iterable[str]) -> None:
        gone = set(paths)
        with self._lock:
            for key in [k for k in self._items if k[0] in gone]:
                self.used -= self._items.pop(key)[1]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.used = 0

    def reset_lock(self) -> None:
        self._lock = threading.Lock()


class _RaggedWhole:
    """A ragged var decoded whole, held in the arena cache (which only needs ``nbytes``)."""

    __slots__ = ("data",)

    def __init__(self, data: RaggedArray) -> None:
        self.data = data

    def after_fork(self) -> None:
        """Nothing to reset: the data are read-only."""

    @property
    def nbytes(self) -> int:
        return self.data.nbytes


class _State:
    """Everything one process holds for a backend (rebuilt after a fork, never pickled)."""

    def __init__(self, settings: _Settings, mode: str, cleanup: bool) -> None:
        self.settings = settings
        self.mode = mode
        self.pid = os.getpid()
        self.cleanup = cleanup
        self.opened = False
        self.root = ""
        self.foreign: dict[str, _Phase] | None = None  # phase name -> phase, foreign stores
        self.foreign_id = ""
        self.phases: dict[tuple[str, str], _Phase] = {}
        self.attrs: dict[str, dict[str, Any]] = {}
        self.known_ids: set[str] = set()  # remote data_ids seen to exist (saves requests)
        self.handles: OrderedDict[str, _Handle] = OrderedDict()
        self.arenas = ArenaCache(settings.cache_bytes)
        self.arena_tokens: dict[tuple[str, str, str], tuple[str, ...]] = {}
        self.rgcache = _RowGroupCache(settings.rowgroup_cache_bytes)
        self.pending_bytes = 0
        self.lock = threading.RLock()
        # guards ``handles`` alone, so a read that fills an arena (holding the arena's lock)
        # never waits for ``lock``, which a write holds while it updates that arena
        self.handle_lock = threading.RLock()
        # the file system of a store at a URL (no writer lock, no journal there), else None
        self.remote = (_Remote(settings.location, settings.storage_options) if settings.url
                       else None)
        self.writer = Writer()
        writer, phases = self.writer, self.phases
        self.tx = Transactions(lambda: writer.journal,
                               lambda: any(ph.pending for ph in phases.values()),
                               functools.partial(_discard, self))

    @property
    def writable(self) -> bool:
        return self.mode != "r" and self.foreign is None


def _flush_state(st: _State) -> None:
    """Write the buffered rows of every phase and commit (on collection, at exit; best
    effort)."""
    if os.getpid() != st.pid or not st.opened or not st.writable:
        return
    with st.lock:
        failed = False
        for ph in list(st.phases.values()):
            if ph.pending or ph.dirty:
                try:
                    _flush_phase(st, ph)
                except Exception:  # pragma: no cover - best effort at exit
                    failed = True
                    logger.exception("storegate: could not write the buffered rows of %s/%s",
                                     ph.data_id, ph.name)
        if not failed:
            try:
                st.tx.commit()
            except Exception:  # pragma: no cover - best effort at exit
                logger.exception("storegate: could not commit at exit")


def _discard(st: _State) -> None:
    """Forget everything the process knows of the store (after a rollback: reload it)."""
    with st.handle_lock:
        paths = list(st.handles)
    _forget_files(st, paths)
    st.rgcache.clear()
    st.arenas.clear()
    st.arena_tokens.clear()
    st.phases.clear()
    st.attrs.clear()
    st.known_ids.clear()
    st.pending_bytes = 0


# ---------------------------------------------------------------------------------- files
def _atomic_write(path: str, data: bytes, fsync: bool,
                  journal: DirJournal | None = None, remote: _Remote | None = None) -> None:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace`` (recorded in
    ``journal`` first); on a remote store, one PUT (atomic by itself)."""
    if remote is not None:
        remote.put(path, data)
        return
    if journal is not None:
        journal.before_write(path)
    folder, name = os.path.split(path)
    tmp = os.path.join(folder, f"{_TMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}-{name}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if fsync:
        _fsync_dir(folder)


def _fsync_dir(folder: str) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_json(path: str, obj: Any, fsync: bool, journal: DirJournal | None = None,
                remote: _Remote | None = None) -> None:
    _atomic_write(path, json.dumps(obj, indent=1, allow_nan=True).encode("utf-8"), fsync,
                  journal, remote)


def _makedirs(path: str, journal: DirJournal | None, remote: _Remote | None = None) -> None:
    if remote is not None:
        return  # object stores have no directories: writing an object makes its prefix
    if journal is not None:
        journal.before_mkdir(path)
    os.makedirs(path, exist_ok=True)


def _is_parquet_file(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"PAR1"
    except OSError:
        return False


def _find_parquet(folder: str) -> list[str]:
    """Parquet files in ``folder`` and in its hive-style partition folders (``key=value``),
    as relative sorted paths, skipping ``.``/``_`` names as pyarrow.dataset does."""
    found: list[str] = []
    for base, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")) and "=" in d)
        for name in sorted(files):
            if name.startswith((".", "_")) or not name.lower().endswith(_PARQUET_SUFFIXES):
                continue
            found.append(os.path.relpath(os.path.join(base, name), folder))
    return found


def _select_parquet(root: str, paths: Iterable[str]) -> list[str]:
    """:func:`_find_parquet` over a listing of a remote directory: the Parquet files among
    ``paths`` (full paths below ``root``) as sorted relative paths, in ``root`` or its
    hive-style partition folders, skipping ``.``/``_`` names."""
    prefix = root.rstrip("/") + "/"
    found = []
    for p in paths:
        if not p.startswith(prefix):
            continue
        *dirs, name = p[len(prefix):].split("/")
        if any(d.startswith((".", "_")) or "=" not in d for d in dirs):
            continue
        if name.startswith((".", "_")) or not name.lower().endswith(_PARQUET_SUFFIXES):
            continue
        found.append("/".join([*dirs, name]))
    return sorted(found)


def _footer(st: _State, path: str) -> Any:
    """The Parquet footer (``FileMetaData``) of a data file, local or remote (where it is
    read once and kept with the file's handle)."""
    _, pq = _arrow()
    if st.remote is None:
        return pq.read_metadata(path)
    return _remote_handle(st, path).file.metadata


def _remote_handle(st: _State, path: str) -> _Handle:
    """The cached handle of a remote data file, its footer read (with its neighbours')
    when it is not cached yet."""
    with st.handle_lock:
        h = st.handles.get(path)
    if h is None:
        _remote_handles(st, [path])
        with st.handle_lock:
            h = st.handles.get(path) or _handle(st, path)
    return h


# ---------------------------------------------------------------------------------- remote
def _url_to_fs(url: str, storage_options: dict[str, Any] | None) -> tuple[Any, str]:
    """``(file system, path)`` of an fsspec URL, with errors a user can act on."""
    try:
        from fsspec.core import url_to_fs
    except ImportError as err:
        raise MissingDependencyError(
            f"the parquet backend needs fsspec for URLs such as {url!r} ({err}); install it "
            "with pip install 'storegate[s3]' (fsspec and s3fs)."
        ) from None
    try:
        return url_to_fs(url, **(storage_options or {}))
    except ImportError as err:
        raise MissingDependencyError(
            f"the URL {url!r} needs a library that is not installed ({err}); for s3:// URLs: "
            "pip install 'storegate[s3]'; for other protocols the fsspec implementation the "
            "message names."
        ) from None
    except ValueError as err:
        raise InvalidArgumentError(
            f"cannot use the URL {url!r} for a parquet store ({err}); use a local path or an "
            "fsspec URL whose protocol is installed (s3://, gs://, memory://, ...)."
        ) from None
    except Exception as err:
        raise InvalidArgumentError(
            f"cannot set up the file system of the URL {url!r} ({type(err).__name__}: {err}); "
            "check the URL and the storage_options."
        ) from None


class _Remote:
    """The fsspec file system of a store at a URL, for one process, and the few file
    operations the backend needs there (local stores have none: they use ``os`` directly).

    Listings and existence checks drop fsspec's listing cache first (another process may have
    written since); data files are never overwritten, so their sizes may come from it.
    Byte ranges prefetched by a read (:meth:`prefetch`) are shared by the threads of that read
    and dropped when it ends. A failed request other than a missing object raises a
    :class:`~storegate.errors.StoregateError` naming the URL.
    """

    def __init__(self, url: str, storage_options: dict[str, Any] | None) -> None:
        self.url = url
        self.fs, root = _url_to_fs(url, storage_options)
        self.root = str(root).rstrip("/") or str(root)
        self._lock = threading.Lock()
        # path -> [start, end, bytes] of the prefetched ranges, sorted by start
        self._held: dict[str, list[list[Any]]] = {}

    @contextlib.contextmanager
    def _guard(self, path: str) -> Iterator[None]:
        """Let ``FileNotFoundError`` through (callers decide what a missing object means);
        turn any other failure of the file system into a StoregateError."""
        try:
            yield
        except (FileNotFoundError, StoregateError, _MissingFile):
            raise
        except Exception as err:
            raise _remote_failure(self, path, err) from None

    # -------------------------------------------------------------- objects
    def get(self, path: str) -> bytes:
        """The whole object (``FileNotFoundError`` if it does not exist). Asked for as the
        range ``0-`` (one request; without a range s3fs first asks for the size)."""
        with self._guard(path):
            try:
                return bytes(self.fs.cat_file(path, start=0, end=None))
            except FileNotFoundError:
                raise
            except OSError:  # an empty object has no range "0-"
                return bytes(self.fs.cat_file(path))

    def get_range(self, path: str, start: int, end: int | None) -> bytes:
        """Bytes ``start:end`` of an object (``start < 0, end None``: its last bytes)."""
        with self._guard(path):
            return bytes(self.fs.cat_file(path, start=start, end=end))

    def size(self, path: str) -> int:
        with self._guard(path):
            return int(self.fs.size(path))

    def put(self, path: str, data: bytes) -> None:
        """Write an object in one request (atomic: readers see the old or the new bytes)."""
        try:
            with self._guard(path):
                self.fs.pipe_file(path, data)
        except FileNotFoundError as err:
            raise StoreNotFoundError(
                f"cannot write {self._url(path)!r}: {err}; the bucket (or parent location) "
                "does not exist. Create it first."
            ) from None
        except PermissionError as err:
            raise ReadOnlyError(
                f"cannot write {self._url(path)!r}: access denied ({err}); use credentials "
                "that may write there, or open the store with mode='r'."
            ) from None
        finally:
            self._forget(path)

    def remove(self, paths: Sequence[str]) -> None:
        """Delete objects (missing ones are fine)."""
        if not paths:
            return
        try:
            with self._guard(paths[0]):
                try:
                    self.fs.rm(list(paths))
                except FileNotFoundError:
                    for p in paths:
                        with contextlib.suppress(FileNotFoundError):
                            self.fs.rm_file(p)
        finally:
            for p in paths:
                self._forget(p)

    def files_under(self, path: str) -> list[str]:
        """Every object below ``path`` (full paths; recursive, one listing)."""
        self._forget(path)
        with self._guard(path):
            try:
                return sorted(str(p) for p in self.fs.find(path, detail=False))
            except FileNotFoundError:
                return []

    def names(self, path: str) -> list[str]:
        """Names of the entries directly in ``path`` (files and directories)."""
        self._forget(path, inside=True)
        with self._guard(path):
            try:
                found = self.fs.ls(path, detail=False)
            except (FileNotFoundError, NotADirectoryError):
                return []
        return sorted({str(p).rstrip("/").rsplit("/", 1)[-1] for p in found})

    def kind(self, path: str) -> str | None:
        """``'file'``, ``'directory'`` or ``None`` (nothing there)."""
        self._forget(path, inside=True)
        with self._guard(path):
            try:
                info = self.fs.info(path)
            except FileNotFoundError:
                return None
        return "directory" if info.get("type") == "directory" else "file"

    def exists(self, path: str) -> bool:
        self._forget(path)
        with self._guard(path):
            return bool(self.fs.exists(path))

    def _forget(self, path: str, inside: bool = False) -> None:
        """Drop fsspec's cached listing of ``path``'s directory (and of ``path`` itself when
        ``inside``): it may be stale."""
        with contextlib.suppress(Exception):
            self.fs.invalidate_cache(path.rsplit("/", 1)[0] if "/" in path else path)
            if inside:
                self.fs.invalidate_cache(path)

    def _url(self, path: str) -> str:
        """``path`` of this file system as a URL (for messages)."""
        proto = self.url.split("://", 1)[0]
        return f"{proto}://{path.lstrip('/')}"

    # -------------------------------------------------------------- ranges
    def fetch(self, path: str, spans: Sequence[tuple[int, int]]) -> list[tuple[int, bytes]]:
        """Bytes covering each ``(start, end)`` of ``path``: prefetched ones, the rest fetched
        now, concurrently (as ``(start, data)`` pieces)."""
        pieces: list[tuple[int, bytes]] = []
        missing: list[tuple[str, int, int]] = []
        with self._lock:
            held = self._held.get(path, [])
            for a, b in spans:
                hit = _covering(held, a, b)
                if hit is not None:
                    pieces.append((hit[0], hit[2]))
                else:
                    missing.append((path, a, b))
        merged = _merge(missing)
        for (_, a, _), data in zip(merged, self._cat(merged), strict=True):
            pieces.append((a, data))
        return pieces

    @contextlib.contextmanager
    def prefetch(self, wanted: Sequence[tuple[str, int, int]]) -> Iterator[None]:
        """Fetch the ranges ``(path, start, end)`` concurrently and keep them while the block
        runs, so reads in it (in any thread) decode from memory."""
        with self._lock:
            todo = [w for w in wanted if _covering(self._held.get(w[0], []), w[1], w[2]) is None]
        merged = _merge(todo)
        items = [[a, b, data] for (_, a, b), data in zip(merged, self._cat(merged), strict=True)]
        mine = {id(x) for x in items}
        with self._lock:
            for (path, _, _), item in zip(merged, items, strict=True):
                held = self._held.setdefault(path, [])
                held.append(item)
                held.sort(key=lambda x: x[0])
        try:
            yield
        finally:
            with self._lock:
                for path in {m[0] for m in merged}:
                    held = [x for x in self._held.get(path, []) if id(x) not in mine]
                    if held:
                        self._held[path] = held
                    else:
                        self._held.pop(path, None)

    def _cat(self, ranges: Sequence[tuple[str, int, int]]) -> list[bytes]:
        """The bytes of ``(path, start, end)`` ranges, requested concurrently."""
        if not ranges:
            return []
        if len(ranges) == 1:
            path, a, b = ranges[0]
            try:
                return [self.get_range(path, a, b)]
            except FileNotFoundError:
                raise _MissingFile(path) from None
        with self._guard(ranges[0][0]):
            out = self.fs.cat_ranges([r[0] for r in ranges], [r[1] for r in ranges],
                                     [r[2] for r in ranges], on_error="return")
        result: list[bytes] = []
        for (path, _, _), data in zip(ranges, out, strict=True):
            if isinstance(data, FileNotFoundError):
                raise _MissingFile(path)
            if isinstance(data, Exception):
                raise _remote_failure(self, path, data)
            result.append(bytes(data))
        return result


def _covering(held: list[list[Any]], a: int, b: int) -> list[Any] | None:
    """The held range that contains ``[a, b)``, or ``None``."""
    for item in held:
        if item[0] <= a and b <= item[1]:
            return item
        if item[0] > a:
            break
    return None


def _merge(ranges: Sequence[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    """Ranges sorted and joined where they overlap or lie close (one request instead of many
    tiny ones; large ones stay separate, so they are still fetched concurrently)."""
    out: list[tuple[str, int, int]] = []
    for path, a, b in sorted(set(ranges)):
        if out and out[-1][0] == path and a - out[-1][2] <= _MERGE_GAP and (
                max(b, out[-1][2]) - out[-1][1] <= _MERGE_MAX):
            out[-1] = (path, out[-1][1], max(b, out[-1][2]))
        else:
            out.append((path, a, b))
    return out


class _Ranges:
    """A read-only file object over pieces of a remote file, for ``pyarrow.PythonFile``: reads
    inside a piece are served from memory, any other read is fetched (one request)."""

    def __init__(self, remote: _Remote, path: str, size: int,
                 pieces: Iterable[tuple[int, bytes]]) -> None:
        self._remote = remote
        self._path = path
        self._size = size
        self._pieces = sorted(pieces, key=lambda p: p[0])
        self._pos = 0
        self.closed = False

    def read_buffer(self, n: int = -1) -> memoryview:
        a = self._pos
        b = self._size if n is None or n < 0 else min(self._size, a + n)
        self._pos = b
        for start, data in self._pieces:
            if start <= a and b <= start + len(data):
                return memoryview(data)[a - start : b - start]
            if start > a:
                break
        try:
            return memoryview(self._remote.get_range(self._path, a, b))
        except FileNotFoundError:
            raise _MissingFile(self._path) from None

    def read(self, n: int = -1) -> memoryview:
        return self.read_buffer(n)

    def seek(self, pos: int, whence: int = 0) -> int:
        base = 0 if whence == 0 else self._pos if whence == 1 else self._size
        self._pos = base + pos
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True


class _RemoteFile:
    """A Parquet file of a remote store: its footer, read once (one request for the file's
    last 64 KiB, whose answer is the whole file when it is smaller, plus one for the size
    otherwise), and reads of row groups that fetch only the byte ranges of the column chunks
    they decode (prefetched by the caller, or fetched concurrently here). A small file is
    kept whole. Immutable, so threads share it without a lock."""

    __slots__ = ("_spans", "metadata", "path", "remote", "size", "whole")

    def __init__(self, remote: _Remote, path: str) -> None:
        pa, pq = _arrow()
        self.remote = remote
        self.path = path
        self._spans: dict[str, list[list[tuple[int, int]]]] = {}
        try:
            tail = remote.get_range(path, -_TAIL_BYTES, None)
            if len(tail) < _TAIL_BYTES:  # the whole file
                self.size, start = len(tail), 0
            else:
                self.size = remote.size(path)
                start = self.size - len(tail)
        except FileNotFoundError:
            raise _MissingFile(path) from None
        if len(tail) < 12 or tail[-4:] != b"PAR1":
            raise CorruptStoreError(
                f"the data file {remote._url(path)!r} is not a Parquet file (it does not end "
                "with the Parquet magic bytes); restore it or delete the var.")
        need = int.from_bytes(tail[-8:-4], "little") + 8
        if need > len(tail) and need <= self.size:  # a footer larger than 64 KiB
            start = self.size - need
            try:
                tail = remote.get_range(path, start, self.size)
            except FileNotFoundError:
                raise _MissingFile(path) from None
        self.whole = tail if start == 0 else None
        try:
            source = pa.PythonFile(_Ranges(remote, path, self.size, [(start, tail)]), mode="r")
            self.metadata = pq.ParquetFile(source).metadata
        except pa.ArrowException as err:
            raise CorruptStoreError(
                f"the data file {remote._url(path)!r} is not a readable Parquet file "
                f"({type(err).__name__}: {err}); restore it or delete the var.") from None

    def spans(self, groups: Iterable[int], column: str) -> list[tuple[int, int]]:
        """Byte ranges of ``column``'s chunks (all its leaves) in row groups ``groups`` (none
        to fetch for a file kept whole)."""
        if self.whole is not None:
            return []
        per_group = self._spans.get(column)
        if per_group is None:
            md = self.metadata
            tops = sorted(md.schema.to_arrow_schema().names, key=len, reverse=True)
            per_group = []
            for g in range(md.num_row_groups):
                rg = md.row_group(g)
                found = []
                for c in range(rg.num_columns):
                    chunk = rg.column(c)
                    leaf = chunk.path_in_schema
                    top = next((t for t in tops if leaf == t or leaf.startswith(f"{t}.")), None)
                    if top != column:
                        continue
                    start = int(chunk.data_page_offset)
                    dictionary = chunk.dictionary_page_offset
                    if chunk.has_dictionary_page and dictionary and 0 < dictionary < start:
                        start = int(dictionary)
                    found.append((start, start + int(chunk.total_compressed_size)))
                per_group.append(found)
            self._spans[column] = per_group  # a benign race: threads compute the same list
        return [s for g in groups for s in per_group[g]]

    def read_row_groups(self, groups: list[int], columns: list[str],
                        use_threads: bool = False) -> Any:
        """The row groups of the columns, as ``pyarrow.parquet.ParquetFile.read_row_groups``
        returns them (a Table)."""
        pa, pq = _arrow()
        if self.whole is not None:
            pieces = [(0, self.whole)]
        else:
            spans = [s for c in columns for s in self.spans(groups, c)]
            pieces = self.remote.fetch(self.path, spans)
        source = pa.PythonFile(_Ranges(self.remote, self.path, self.size, pieces), mode="r")
        # pre_buffer off: pyarrow then reads exactly one column chunk at a time (with it, it
        # coalesces neighbouring chunks into reads that would span bytes never fetched)
        file = pq.ParquetFile(source, metadata=self.metadata, pre_buffer=False)
        return file.read_row_groups(groups, columns=columns, use_threads=False)

    def close(self) -> None:
        """Nothing to release (no OS handle)."""


def _remote_handles(st: _State, paths: Iterable[str]) -> None:
    """Open the remote files among ``paths`` that have no handle yet, concurrently (each open
    is two requests), and cache their handles."""
    remote = st.remote
    if remote is None:
        return
    with st.handle_lock:
        todo = list(dict.fromkeys(p for p in paths if p not in st.handles))
    if not todo:
        return
    if len(todo) == 1:
        files = [_RemoteFile(remote, todo[0])]
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(min(_OPEN_THREADS, len(todo)),
                                thread_name_prefix="storegate-parquet-open") as pool:
            files = list(pool.map(lambda p: _RemoteFile(remote, p), todo))
    with st.handle_lock:
        for path, file in zip(todo, files, strict=True):
            if path not in st.handles:
                _keep_handle(st, path, _Handle(file))


@contextlib.contextmanager
def _prefetched(st: _State, wanted: Iterable[tuple[str, Sequence[int], str]]) -> Iterator[None]:
    """Fetch the column chunks ``(path, row groups, column)`` of a remote store concurrently
    (footers first, also concurrently) and keep them for the reads inside the block. Local
    stores: nothing to do."""
    remote = st.remote
    items = [w for w in wanted if len(w[1])]
    if remote is None or not items:
        yield
        return
    _remote_handles(st, [w[0] for w in items])
    spans: list[tuple[str, int, int]] = []
    with st.handle_lock:
        files = {w[0]: st.handles.get(w[0]) for w in items}
    for path, groups, column in items:
        h = files[path]
        if h is None:  # evicted meanwhile: its reads fetch for themselves
            continue
        spans.extend((path, a, b) for a, b in h.file.spans(groups, column))
    with remote.prefetch(spans):
        yield


def _windowed(st: _State, items: Sequence[Any],
              where: Callable[[Any], list[tuple[str, Sequence[int], str]]]) -> Iterator[list[Any]]:
    """``items`` (units of a read) in consecutive batches. On a remote store, the column
    chunks of each batch (``where(item)``: its ``(path, row groups, column)`` reads) are
    fetched concurrently before the batch is yielded (the footers of its files first, also
    concurrently), and held while the caller decodes it; a batch spans at most
    ``_WINDOW_FILES`` files and ``_PREFETCH_BYTES``. Local stores: one batch, nothing fetched.
    """
    remote = st.remote
    if remote is None or len(items) < 2:  # one read fetches its own ranges concurrently
        if len(items):
            yield list(items)
        return
    wanted = [[w for w in where(it) if len(w[1])] for it in items]
    i = 0
    while i < len(items):
        files: set[str] = set()
        j = i
        while j < len(items):
            more = files.union(w[0] for w in wanted[j])
            if files and len(more) > _WINDOW_FILES:
                break
            files = more
            j += 1
        _remote_handles(st, files)
        with st.handle_lock:
            handles = {p: st.handles.get(p) for p in files}
        batch: list[Any] = []
        spans: list[tuple[str, int, int]] = []
        size = 0
        for k in range(i, j):
            mine = [(path, a, b) for path, groups, column in wanted[k]
                    if (h := handles[path]) is not None for a, b in h.file.spans(groups, column)]
            n = sum(b - a for _, a, b in mine)
            if batch and size + n > _PREFETCH_BYTES:
                with remote.prefetch(spans):
                    yield batch
                batch, spans, size = [], [], 0
            batch.append(items[k])
            spans.extend(mine)
            size += n
        if batch:
            with remote.prefetch(spans):
                yield batch
        i = j


def _group_reads(st: _State, ph: _Phase, lay: _Layout, groups: Iterable[int],
                 cached: bool = True) -> list[tuple[str, Sequence[int], str]]:
    """The reads ``(path, local row groups, column)`` that decode the global row groups
    ``groups`` of a var (one per file), leaving out groups in the row-group cache when
    ``cached``."""
    per_file: dict[int, list[int]] = {}
    for g in groups:
        fi, local = int(lay.rg_file[g]), int(lay.rg_local[g])
        if cached and st.rgcache.get(
                (os.path.join(ph.path, lay.files[fi]), local, lay.columns[fi])) is not None:
            continue
        per_file.setdefault(fi, []).append(local)
    return [(os.path.join(ph.path, lay.files[fi]), locals_, lay.columns[fi])
            for fi, locals_ in per_file.items()]


def _each(st: _State, ph: _Phase, lay: _Layout, items: Iterable[Any],
          group_of: Callable[[Any], int] = int) -> Iterator[Any]:
    """``items`` one by one, each standing for the global row group ``group_of(item)`` of a
    var; on a remote store their column chunks are fetched concurrently ahead (a batch at a
    time, see :func:`_windowed`) instead of one request after another."""
    if st.remote is None:
        yield from items
        return
    listed = list(items)
    for batch in _windowed(st, listed, lambda it: _group_reads(st, ph, lay, [group_of(it)])):
        yield from batch


def _column_names(names: Sequence[str]) -> dict[str, str]:
    """Column names for vars written into one file: the var name, except that storegate's
    temporaries (``.sg-tmp-x``) use the name they will be renamed to (``x``) when it is free,
    so whole-var rewrites leave files whose columns carry the final names."""
    cols: dict[str, str] = {}
    taken = {n for n in names if not n.startswith(TEMP_PREFIX)}
    for n in names:
        if n.startswith(TEMP_PREFIX):
            final = n[len(TEMP_PREFIX):]
            if final and final not in taken:
                taken.add(final)
                cols[n] = final
                continue
        cols[n] = n
    return cols


def _plan(n: int, row_bytes: int, s: _Settings) -> list[list[int]]:
    """Split ``n`` rows into files of row groups (sizes in rows)."""
    row_bytes = max(1, row_bytes)
    if s.row_group_rows:
        rg = int(s.row_group_rows)
    else:
        rg = max(1, s.row_group_bytes // row_bytes)
        if rg >= 4096:
            rg -= rg % 1024
    rg = min(rg, _MAX_ROW_GROUP_ROWS)
    if s.file_rows:
        per_file = int(s.file_rows)
    else:
        per_file = max(1, s.file_bytes // row_bytes)
        per_file = max(rg, per_file - per_file % rg)
    plan = []
    for start in range(0, n, per_file):
        m = min(per_file, n - start)
        sizes = [rg] * (m // rg)
        if m % rg:
            sizes.append(m % rg)
        plan.append(sizes)
    return plan


def _fields(names: Sequence[str], cols: dict[str, str], metas: dict[str, _VarMeta]) -> list[Any]:
    pa, _ = _arrow()
    out = []
    for v in names:
        vm = metas[v]
        typ = _column_type(vm.dtype, vm.shape, vm.ragged)
        md = {_DTYPE_KEY: vm.dtype.str.encode(), _SHAPE_KEY: json.dumps(list(vm.shape)).encode()}
        if vm.ragged:
            md[_RAGGED_KEY] = b"1"
        out.append(pa.field(cols[v], typ, nullable=pa.types.is_null(typ), metadata=md))
    return out


def _write_parquet(folder: str, name: str, fields: list[Any], arrays: list[Any],
                   row_groups: list[int], s: _Settings, journal: DirJournal | None = None,
                   remote: _Remote | None = None) -> None:
    """Write one data file (under a hidden temporary name, then renamed into place; on a
    remote store, encoded in memory and written in one PUT)."""
    if journal is not None:
        journal.before_write(os.path.join(folder, name))
    pa, pq = _arrow()
    schema = pa.schema(fields, metadata={b"storegate": json.dumps(
        {"format": FORMAT_NAME, "version": FORMAT_VERSION}).encode()})
    table = pa.Table.from_arrays(arrays, schema=schema)
    scalar = [f.name for f in fields if not pa.types.is_nested(f.type)
              and not pa.types.is_null(f.type)]
    dictionary = [f.name for f in fields if pa.types.is_integer(f.type)
                  or pa.types.is_boolean(f.type)]

    def encode(sink: Any) -> None:
        with pq.ParquetWriter(
            sink, schema, compression=s.compression, compression_level=s.compression_level,
            use_dictionary=dictionary, write_statistics=scalar or False,
        ) as writer:
            pos = 0
            for rows in row_groups:
                writer.write_table(table.slice(pos, rows), row_group_size=max(1, rows))
                pos += rows

    if remote is not None:
        sink = pa.BufferOutputStream()
        encode(sink)
        remote.put(os.path.join(folder, name), sink.getvalue().to_pybytes())
        return
    tmp = os.path.join(folder, f"{_TMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}.parquet")
    try:
        encode(tmp)
        if s.fsync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, os.path.join(folder, name))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _new_file_name(man: _Manifest) -> str:
    name = f"{_PART_PREFIX}{man.next_file:06d}-{secrets.token_hex(4)}.parquet"
    man.next_file += 1
    return name


def _commit(st: _State, ph: _Phase, man: _Manifest) -> None:
    """Make ``man`` the phase's manifest on disk (the single commit point of every change)."""
    _makedirs(ph.path, st.writer.journal, st.remote)
    _write_json(os.path.join(ph.path, MANIFEST), man.to_json(), st.settings.fsync,
                st.writer.journal, st.remote)
    ph.manifest = man
    ph.dirty = False
    ph.layouts.clear()  # layouts in use elsewhere stay valid snapshots


def _remove_files(st: _State, ph: _Phase, names: Iterable[str]) -> None:
    """Delete data files the committed manifest no longer lists."""
    paths = [os.path.join(ph.path, n) for n in names]
    _forget_files(st, paths)
    if st.remote is not None:
        st.remote.remove(paths)
        return
    journal = st.writer.journal
    for p in paths:
        if journal is not None:
            journal.remove(p)  # kept until the commit: a rollback restores it
            continue
        with contextlib.suppress(FileNotFoundError):
            os.unlink(p)


def _forget_files(st: _State, paths: Sequence[str]) -> None:
    st.rgcache.drop_files(paths)
    with st.handle_lock:
        gone = [h for h in (st.handles.pop(p, None) for p in paths) if h is not None]
    for h in gone:
        h.close()


def _dead_files(man: _Manifest) -> list[str]:
    """Files that hold no var any more (removed from ``man``, returned for deletion)."""
    dead = [name for name, f in man.files.items() if not f.columns]
    for name in dead:
        del man.files[name]
    return dead


def _segments(ph: _Phase, man: _Manifest) -> list[tuple[int, int, list[str], dict[str, int]]]:
    """Row ranges ``[a, b)`` to write, each with the vars whose pending rows cover it (in var
    order) and each var's first pending row. Ranges are cut wherever some var's pending rows
    start or end, so vars covering the same rows share files even when their pending ranges
    differ (``x`` pending for rows 10-20 and ``y`` for 15-20: 10-15 holds ``x``, 15-20 both)."""
    spans: dict[str, tuple[int, int]] = {}
    for var in man.order:
        p = ph.pending.get(var)
        if p is not None and p.rows:
            start = sum(man.files[f].rows for f in man.vars[var].files)
            spans[var] = (start, start + p.rows)
    cuts = sorted({x for span in spans.values() for x in span})
    out: list[tuple[int, int, list[str], dict[str, int]]] = []
    for a, b in itertools.pairwise(cuts):
        names = [v for v, (s, e) in spans.items() if s <= a and b <= e]
        if not names:
            continue
        if out and out[-1][1] == a and out[-1][2] == names:
            out[-1] = (out[-1][0], b, names, out[-1][3])  # same vars: one range
        else:
            out.append((a, b, names, {v: spans[v][0] for v in names}))
    return out


def _add_file(st: _State, ph: _Phase, man: _Manifest, written: list[str], names: list[str],
              cols: dict[str, str], fields: Any, arrays: list[Any], sizes: list[int],
              values: dict[str, list[int]]) -> None:
    """Write one data file holding ``names`` and record it in ``man`` (not yet committed);
    its name goes to ``written`` so a failure can remove it (:func:`_unlink_all`)."""
    name = _new_file_name(man)
    _write_parquet(ph.path, name, fields, arrays, sizes, st.settings, st.writer.journal,
                   st.remote)
    written.append(name)
    man.files[name] = _FileMeta(sum(sizes), list(sizes), {v: cols[v] for v in names}, values)
    for v in names:
        man.vars[v].files.append(name)


def _unlink_all(st: _State, ph: _Phase, written: list[str]) -> None:
    """Remove data files an uncommitted write produced (the manifest never named them)."""
    if st.remote is not None:
        with contextlib.suppress(Exception):
            st.remote.remove([os.path.join(ph.path, n) for n in written])
        return
    for name in written:
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(ph.path, name))


def _flush_phase(st: _State, ph: _Phase) -> None:
    """Write a phase's buffered rows, then its manifest.

    Vars whose pending rows cover the same row range are written into the same files (one
    column each), so vars added one after another land in row-aligned files.
    """
    if not ph.pending:
        if ph.dirty:
            _commit(st, ph, ph.manifest.clone())
        return
    man = ph.manifest.clone()
    written: list[str] = []
    try:
        _makedirs(ph.path, st.writer.journal, st.remote)
        for a, b, names, offset in _segments(ph, man):
            blocks = {v: ph.pending[v].block() for v in names}
            cols = _column_names(names)
            n = b - a
            row_bytes = 0
            for v in names:
                blk = blocks[v]
                row_bytes += (blk.nbytes // max(1, len(blk)) if isinstance(blk, RaggedArray)
                              else man.vars[v].row_bytes)
            fields = _fields(names, cols, man.vars)
            pos = 0
            for sizes in _plan(n, row_bytes, st.settings):
                rows = sum(sizes)
                arrays = []
                values: dict[str, list[int]] = {}
                for v in names:
                    vm = man.vars[v]
                    blk = blocks[v]
                    lo = a - offset[v] + pos
                    if vm.ragged:
                        part = blk.slice(lo, lo + rows) if (lo, rows) != (0, len(blk)) else blk
                        arrays.append(_ragged_to_arrow(part, vm.dtype, vm.shape))
                        edges = np.concatenate([[0], np.cumsum(sizes)])
                        values[v] = np.diff(part.offsets[edges]).astype(int).tolist()
                    else:
                        arrays.append(_to_arrow(blk[lo : lo + rows], vm.dtype, vm.shape))
                _add_file(st, ph, man, written, names, cols, fields, arrays, sizes, values)
                pos += rows
        _commit(st, ph, man)
    except BaseException:
        _unlink_all(st, ph, written)
        raise
    for v in list(ph.pending):
        st.pending_bytes -= ph.pending.pop(v).nbytes
    st.pending_bytes = max(0, st.pending_bytes)


# ---------------------------------------------------------------------------------- reading
# Module-level (not methods): arena fill functions hold them, and arenas live in the state,
# which the backend's finaliser keeps alive; a reference back to the backend would leak it.
def _handle(st: _State, path: str) -> _Handle:
    h = st.handles.get(path)
    if h is not None:
        st.handles.move_to_end(path)
        return h
    if st.remote is not None:
        return _keep_handle(st, path, _Handle(_RemoteFile(st.remote, path)))
    pa, pq = _arrow()
    _regular_file(path)
    try:
        file = pq.ParquetFile(path, memory_map=True)
    except FileNotFoundError:
        raise _MissingFile(path) from None
    except (OSError, pa.ArrowException) as err:
        if not os.path.exists(path):
            raise _MissingFile(path) from None
        raise CorruptStoreError(
            f"the data file {path!r} is not a readable Parquet file ({type(err).__name__}: "
            f"{err}); restore it or delete the var."
        ) from None
    return _keep_handle(st, path, _Handle(file))


def _keep_handle(st: _State, path: str, h: _Handle) -> _Handle:
    """Cache a new handle (with ``st.handle_lock`` held), closing the least recently used
    ones beyond the limit."""
    st.handles[path] = h
    limit = _MAX_HANDLES if st.remote is None else _MAX_REMOTE_HANDLES
    while len(st.handles) > limit:
        _, old = st.handles.popitem(last=False)
        old.close()  # waits for a read in flight (unmapping under the decoder would crash)
    return h


def _only_column(table: Any, column: str, path: str) -> Any:
    """The one column read from a data file (pyarrow returns none for a name the file lacks).
    """
    if table.num_columns != 1:
        raise CorruptStoreError(
            f"the data file {path!r} has no column {column!r}, which the manifest says holds the "
            "var; the store was modified outside storegate (run `storegate check`).")
    return table.column(0)


def _regular_file(path: str) -> None:
    """Refuse a data file that is not a regular file (a FIFO behind a symbolic link would
    block the open forever, a device never end)."""
    import stat

    try:
        mode = os.stat(path).st_mode
    except OSError:
        return  # missing: the caller's open reports it
    if not stat.S_ISREG(mode):
        raise CorruptStoreError(
            f"the data file {path!r} is not a regular file (a device, FIFO or directory, "
            "possibly behind a symbolic link); restore it or delete the var.")


def _checked_rows(column: Any, expected: int | None, path: str, groups: list[int]) -> Any:
    """``column`` if it holds the rows the manifest records, else ``CorruptStoreError`` (a
    file that disagrees with the manifest would otherwise leave rows uninitialised)."""
    if expected is not None and len(column) != expected:
        raise CorruptStoreError(
            f"row groups {groups[0]}..{groups[-1]} of {path!r} hold {len(column)} rows, but the "
            f"manifest records {expected}; the store is damaged (run `storegate check`).")
    return column


def _read_groups(st: _State, path: str, groups: list[int], column: str,
                 expected: int | None = None) -> Any:
    """Decode row groups of one column of one file (an Arrow ChunkedArray), checking that
    they hold ``expected`` rows."""
    if st.remote is not None:
        return _read_groups_remote(st, path, groups, column, expected)
    pa, _ = _arrow()
    try:
        while True:
            with st.handle_lock:
                h = _handle(st, path)
            with h.lock:
                if h.closed:  # evicted by another thread between the two locks: reopen
                    continue
                table = h.file.read_row_groups(groups, columns=[column], use_threads=False)
                break
    except (OSError, pa.ArrowException) as err:
        if not os.path.exists(path):
            raise _MissingFile(path) from None
        raise CorruptStoreError(
            f"cannot read column {column!r} of {path!r} ({type(err).__name__}: {err}); the "
            "file is damaged."
        ) from None
    return _checked_rows(_only_column(table, column, path), expected, path, groups)


def _read_groups_remote(st: _State, path: str, groups: list[int], column: str,
                        expected: int | None = None, shared: bool = True) -> Any:
    """:func:`_read_groups` on a remote store: remote handles are immutable, so threads read
    through one at once (no lock held during the requests). Not ``shared`` (a thread of a
    parallel fill): no lock is taken, and a file without a cached handle is opened for this
    read only."""
    pa, _ = _arrow()
    remote = st.remote
    assert remote is not None
    try:
        if not shared:
            h = st.handles.get(path)  # a single dict lookup: safe without a lock
            file = h.file if h is not None else _RemoteFile(remote, path)
        else:
            file = _remote_handle(st, path).file
        table = file.read_row_groups(groups, columns=[column], use_threads=False)
    except (_MissingFile, StoregateError):
        raise
    except FileNotFoundError:
        raise _MissingFile(path) from None
    except pa.ArrowException as err:
        raise CorruptStoreError(
            f"cannot read column {column!r} of {remote._url(path)!r} ({type(err).__name__}: "
            f"{err}); the file is damaged."
        ) from None
    except Exception as err:
        raise _remote_failure(remote, path, err) from None
    return _checked_rows(_only_column(table, column, path), expected, path, groups)


def _remote_failure(remote: _Remote, path: str, err: Exception) -> StoregateError:
    """A request to the remote store failed (unreachable, denied, ...): say what and where."""
    if isinstance(err, PermissionError) or "Credential" in type(err).__name__:
        return StoregateError(
            f"access to {remote._url(path)!r} failed ({type(err).__name__}: {err}); check the "
            "credentials (storage_options key/secret, or the usual environment variables such "
            "as AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY).")
    return StoregateError(
        f"cannot read {remote._url(path)!r} ({type(err).__name__}: {err}); check that the "
        "store is reachable (the URL, the endpoint in storage_options or AWS_ENDPOINT_URL) "
        "and try again.")


def _read_groups_unshared(path: str, groups: list[int], column: str,
                          expected: int | None = None) -> Any:
    """Like :func:`_read_groups` through a handle of its own (for parallel decoding)."""
    pa, pq = _arrow()
    _regular_file(path)
    try:
        file = pq.ParquetFile(path, memory_map=True)
        try:
            table = file.read_row_groups(groups, columns=[column], use_threads=False)
            return _checked_rows(_only_column(table, column, path), expected, path, groups)
        finally:
            file.close()
    except (OSError, pa.ArrowException) as err:
        if not os.path.exists(path):
            raise _MissingFile(path) from None
        raise CorruptStoreError(
            f"cannot read column {column!r} of {path!r} ({type(err).__name__}: {err}); the "
            "file is damaged."
        ) from None


def _empty_ragged(vm: _VarMeta) -> RaggedArray:
    return RaggedArray(np.zeros((0, *vm.shape), dtype=vm.dtype), np.zeros(1, dtype=np.int64),
                       validate=False)


def _decode(chunked: Any, vm: _VarMeta, what: str) -> Any:
    """A decoded column (all chunks): ndarray ``(n, *shape)`` or RaggedArray."""
    spec = vm.spec
    if vm.ragged:
        parts = [_ragged_from_arrow(c, spec, what) for c in _chunks(chunked)]
        return RaggedArray.concatenate(parts) if parts else _empty_ragged(vm)
    arrays = [_from_arrow(c, spec, what) for c in _chunks(chunked)]
    if len(arrays) == 1:
        return arrays[0]
    return np.concatenate(arrays) if arrays else np.zeros((0, *vm.shape), dtype=vm.dtype)


def _decode_group(st: _State, ph: _Phase, vm: _VarMeta, lay: _Layout, var: str, g: int,
                  cache: bool = True) -> Any:
    """Row group ``g`` (global number) of a var, decoded (ndarray or RaggedArray), through the
    row-group cache. The result may view Arrow memory: callers copy what they return."""
    fi = int(lay.rg_file[g])
    local = int(lay.rg_local[g])
    path = os.path.join(ph.path, lay.files[fi])
    column = lay.columns[fi]
    key = (path, local, column)
    hit = st.rgcache.get(key)
    if hit is not None:
        return hit
    starts = lay.group_starts[fi]
    rows = int(starts[local + 1] - starts[local])
    value = _decode(_read_groups(st, path, [local], column, rows), vm,
                    f"column {column!r} of {path!r}")
    if cache:
        st.rgcache.put(key, value, int(value.nbytes))
    return value


def _filler(st: _State, ph: _Phase, var: str) -> Callable[[int, int, np.ndarray], None]:
    """``fill(start, stop, out)`` for an arena (and for direct range reads): decode the row
    groups overlapping the rows, one read per file, over a snapshot of the var's layout."""
    vm = ph.manifest.vars[var]
    lay = ph.layout(var)
    spec = vm.spec
    paths = [os.path.join(ph.path, f) for f in lay.files]
    columns = lay.columns
    starts_of = lay.group_starts
    file_starts = lay.file_starts

    def tasks(start: int, stop: int) -> list[tuple[int, int, int, int, int]]:
        """(file, first group, end group, first row, end row) pieces, file-local rows."""
        out: list[tuple[int, int, int, int, int]] = []
        fi = max(0, int(np.searchsorted(file_starts, start, side="right")) - 1)
        while fi < len(paths) and file_starts[fi] < stop:
            fs = int(file_starts[fi])
            lo, hi = max(start, fs) - fs, min(stop, int(file_starts[fi + 1])) - fs
            if hi > lo:
                starts = starts_of[fi]
                r0 = int(np.searchsorted(starts, lo, side="right")) - 1
                r1 = int(np.searchsorted(starts, hi, side="left"))
                for g in range(r0, r1, _GROUPS_PER_TASK):
                    g1 = min(r1, g + _GROUPS_PER_TASK)
                    out.append((fi, g, g1, max(lo, int(starts[g])), min(hi, int(starts[g1]))))
            fi += 1
        return out

    def run(task: tuple[int, int, int, int, int], start: int, out: np.ndarray,
            own_handle: bool) -> None:
        fi, g0, g1, lo, hi = task
        fs = int(file_starts[fi])
        rows = int(starts_of[fi][g1] - starts_of[fi][g0])
        if own_handle:  # a thread of a parallel fill: a handle of its own, no shared lock
            chunked = (_read_groups_unshared(paths[fi], list(range(g0, g1)), columns[fi], rows)
                       if st.remote is None else _read_groups_remote(
                           st, paths[fi], list(range(g0, g1)), columns[fi], rows, shared=False))
        else:
            chunked = _read_groups(st, paths[fi], list(range(g0, g1)), columns[fi], rows)
        pos = int(starts_of[fi][g0])
        for chunk in _chunks(chunked):
            m = len(chunk)
            a, b = max(pos, lo), min(pos + m, hi)
            if b > a:
                arr = _from_arrow(chunk, spec, f"column {columns[fi]!r} of {paths[fi]!r}")
                out[fs + a - start : fs + b - start] = arr[a - pos : b - pos]
            pos += m

    def fill(start: int, stop: int, out: np.ndarray) -> None:
        if _zero_size(spec.shape):
            out[...] = 0
            return
        todo = tasks(start, stop)
        # remote: the column chunks of the fill fetched concurrently first, batch by batch
        for batch in _windowed(st, todo, lambda t: [(paths[t[0]], range(t[1], t[2]),
                                                     columns[t[0]])]):
            decode(batch, start, stop, out)

    def decode(todo: list[tuple[int, int, int, int, int]], start: int, stop: int,
               out: np.ndarray) -> None:
        threads = min(_FILL_THREADS, len(todo))
        if threads < 2 or (stop - start) * vm.row_bytes < _PARALLEL_FILL_BYTES:
            for task in todo:
                run(task, start, out, False)
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(threads, thread_name_prefix="storegate-parquet") as pool:
            for future in [pool.submit(run, task, start, out, True) for task in todo]:
                future.result()

    return fill


# ---------------------------------------------------------------------------------- backend
class ParquetBackend(Backend):
    """Vars stored as columns of Parquet files, one directory per data_id and phase.

    Parameters
    ----------
    output_dir
        A local directory (``file://`` URLs mean local paths too), or an fsspec URL such as
        ``s3://bucket/store.parquet``, ``gs://...`` or ``memory://...`` (a *remote* store: no
        writer lock and no undo journal, see ``docs/backends/parquet.md``). ``None`` makes a
        temporary directory that is removed when the backend is collected. A Parquet file, or
        a directory of Parquet files that storegate did not write, opens read-only
        (``mode='r'``): see ``foreign_data_id``.
    mode
        ``'r'`` read-only, ``'r+'`` read/write (must exist), ``'a'`` read/write (created if
        missing; default), ``'w'`` wipe the store first, ``'w-'`` create (must not exist).
    compression
        Codec of new files: ``'none'`` (default: the fastest to decode; typical float features
        do not compress), ``'lz4'``, ``'snappy'``, ``'zstd'``, ``'gzip'`` or ``'brotli'``.
    compression_level
        Level for codecs that have one (``zstd``, ``gzip``, ``brotli``); ``None`` = default.
    row_group_rows, row_group_bytes
        Rows per row group, or (default) as many rows as fit ``row_group_bytes`` (8 MiB) of
        all the vars written together, rounded down to a multiple of 1,024 when larger.
    file_rows, file_bytes
        Rows per data file, or (default) as many whole row groups as fit ``file_bytes``
        (128 MiB). Smaller files make in-place writes cheaper (a write rewrites its files).
    cache_bytes
        Budget of the decoded arenas used for random gathers of regular vars (default: a
        quarter of RAM; ``0`` disables them). A var larger than the budget is read row group by
        row group instead.
    rowgroup_cache_bytes
        Budget of the cache of decoded row groups used by reads that do not go through an
        arena (ragged vars, slices, vars larger than ``cache_bytes``); default 64 MiB.
    buffer_bytes
        Appended rows are kept in memory until ``flush`` (``compile``, ``close``, a read of the
        phase, pickling, exit) or until the buffered rows of all phases exceed this many bytes
        (default: an eighth of RAM, at least 256 MiB).
    fsync
        ``fsync`` data files and manifests before they are committed (survives power loss, not
        only killed processes; slower). Default ``False``.
    foreign_data_id
        The data_id under which a foreign Parquet file/directory appears (default: its file or
        directory name without suffix).
    storage_options
        Options of the fsspec file system of a URL (for S3: ``endpoint_url``, ``key``,
        ``secret``, ``anon``, ...). Without them fsspec takes what the usual environment
        variables say (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
        ``AWS_ENDPOINT_URL``, ...). Ignored for local paths.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> be = ParquetBackend(output_dir=tempfile.mkdtemp() + "/s", compression="lz4")
    >>> be.create_data_id("d")
    >>> be.append("d", "train", "x", np.ones((5, 3), "f4"))
    >>> be.info("d", "train", "x").shape
    (5, 3)
    >>> be.read("d", "train", "x", np.array([4, 0]))
    array([[1., 1., 1.],
           [1., 1., 1.]], dtype=float32)
    """

    name: ClassVar[str] = "parquet"
    persistent: ClassVar[bool] = True
    supports_ragged: ClassVar[bool] = True

    def __init__(
        self,
        output_dir: str | os.PathLike[str] | None = None,
        mode: str = "a",
        compression: str | None = "none",
        compression_level: int | None = None,
        row_group_rows: int | None = None,
        row_group_bytes: int = DEFAULT_ROW_GROUP_BYTES,
        file_rows: int | None = None,
        file_bytes: int = DEFAULT_FILE_BYTES,
        cache_bytes: int | None = None,
        rowgroup_cache_bytes: int = DEFAULT_ROWGROUP_CACHE_BYTES,
        buffer_bytes: int | None = None,
        fsync: bool = False,
        foreign_data_id: str | None = None,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        if mode not in _MODES:
            raise InvalidArgumentError(
                f"unknown mode {mode!r} for the parquet backend; use one of {', '.join(_MODES)} "
                "('r' read-only, 'a' read/write creating the store if needed)."
            )
        codec = "none" if compression is None else str(compression).lower()
        if codec == "uncompressed":
            codec = "none"
        if codec not in _COMPRESSIONS:
            raise InvalidArgumentError(
                f"unknown compression {compression!r}; use 'none' (the default, fastest reads), "
                "'lz4', 'snappy', 'zstd', 'gzip' or 'brotli'."
            )
        pa, _ = _arrow()
        if codec != "none":
            if not pa.Codec.is_available(codec):
                raise InvalidArgumentError(
                    f"compression {codec!r} is not available in this pyarrow build; use 'none', "
                    "'lz4' or 'snappy'."
                )
            if compression_level is not None:
                if not pa.Codec.supports_compression_level(codec):
                    raise InvalidArgumentError(
                        f"compression {codec!r} has no levels; drop compression_level or use "
                        "'zstd', 'gzip', 'brotli' or 'lz4'."
                    )
                lo = pa.Codec.minimum_compression_level(codec)
                hi = pa.Codec.maximum_compression_level(codec)
                if isinstance(compression_level, bool) or not isinstance(
                        compression_level, int | np.integer) or not lo <= compression_level <= hi:
                    raise InvalidArgumentError(
                        f"compression_level {compression_level!r} is not valid for {codec!r}: "
                        f"use an int from {lo} to {hi}."
                    )
        elif compression_level is not None:
            raise InvalidArgumentError(
                "compression_level needs a compression that has levels ('zstd', 'gzip', "
                "'brotli'); the compression is 'none'."
            )

        def count(name: str, value: Any, none_ok: bool, zero_ok: bool = False) -> int | None:
            if value is None and none_ok:
                return None
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or (
                value < (0 if zero_ok else 1)
            ):
                least = "a non-negative" if zero_ok else "a positive"
                raise InvalidArgumentError(f"{name} must be {least} int, got {value!r}.")
            return int(value)

        if foreign_data_id is not None:
            check_name(foreign_data_id, "data_id")
        self._tmpdir: str | None = None
        if output_dir is None:
            self._tmpdir = tempfile.mkdtemp(prefix="storegate-")
            output_dir = os.path.join(self._tmpdir, "store.parquet")
            weakref.finalize(self, remove_own_tmpdir, self._tmpdir, os.getpid())
        location = os.fspath(output_dir)
        url = False
        if location.startswith("file://"):
            location = os.path.abspath(location[len("file://"):])
        elif "://" in location:
            url = True
            if storage_options is not None and not isinstance(storage_options, dict):
                raise InvalidArgumentError(
                    f"storage_options must be a dict of fsspec options (e.g. "
                    f"{{'endpoint_url': ..., 'key': ..., 'secret': ...}}), got "
                    f"{type(storage_options).__name__}.")
        else:
            location = os.path.abspath(location)
        self._settings = _Settings(
            location=location,
            compression=codec,
            compression_level=compression_level,
            row_group_rows=count("row_group_rows", row_group_rows, True),
            row_group_bytes=count("row_group_bytes", row_group_bytes, False) or 1,
            file_rows=count("file_rows", file_rows, True),
            file_bytes=count("file_bytes", file_bytes, False) or 1,
            cache_bytes=(default_cache_bytes() if cache_bytes is None
                         else count("cache_bytes", cache_bytes, False, zero_ok=True) or 0),
            rowgroup_cache_bytes=count("rowgroup_cache_bytes", rowgroup_cache_bytes, False,
                                       zero_ok=True) or 0,
            buffer_bytes=(_default_buffer_bytes() if buffer_bytes is None
                          else count("buffer_bytes", buffer_bytes, False, zero_ok=True) or 0),
            fsync=bool(fsync),
            foreign_data_id=foreign_data_id,
            url=url,
            storage_options=dict(storage_options) if url and storage_options else None,
        )
        self._mode = mode
        self._new_state(cleanup=True)
        self._open()  # fail early on a missing or foreign store
        # after the first open, 'w'/'w-' must never wipe or fail again (pickled copies, forks)
        self._mode = "r" if mode == "r" else "a"
        self._st.mode = self._mode

    # ------------------------------------------------------------------ process state
    def _new_state(self, cleanup: bool, old: _State | None = None) -> None:
        st = _State(self._settings, self._mode, cleanup)
        if old is not None:
            # a forked child: keep the decoded arenas and row groups (shared copy-on-write with
            # the parent; their locks are fresh), drop handles and the parent's buffered rows
            for key, arena in old.arenas.items():
                arena.after_fork()
                st.arenas.put(key, arena)
            st.arena_tokens = dict(old.arena_tokens)
            st.rgcache = old.rgcache
            st.rgcache.reset_lock()
        self._st = st
        self._finalizer = weakref.finalize(self, _flush_state, st)
        self._finalizer.atexit = False  # exit is handled by lifecycle.flush_at_exit
        flush_at_exit(self, functools.partial(_flush_state, st))

    def _state(self, open_store: bool = True) -> _State:
        st = self._st
        if os.getpid() != st.pid:
            self._finalizer.detach()
            self._new_state(cleanup=False, old=st)
            st = self._st
        if open_store and not st.opened:
            self._open()
        return st

    def __getstate__(self) -> dict[str, Any]:
        if os.getpid() == self._st.pid:
            self.flush()
        return {"settings": self._settings, "mode": self._mode}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._settings = state["settings"]
        self._mode = state["mode"]
        self._tmpdir = None
        self._new_state(cleanup=False)

    @property
    def readonly(self) -> bool:
        return self._mode == "r"

    @property
    def location(self) -> str:
        """The store's directory or URL (or the foreign Parquet file/directory)."""
        return self._settings.location

    @property
    def remote(self) -> bool:
        """Whether the store is at an fsspec URL (no writer lock, no undo journal there).

        Examples
        --------
        >>> import tempfile
        >>> ParquetBackend(output_dir=tempfile.mkdtemp() + "/s").remote
        False
        """
        return self._settings.url

    @classmethod
    def guess_can_open(cls, location: str,
                       storage_options: dict[str, Any] | None = None) -> bool:
        """A storegate parquet store (its root marker file) at ``location``: a local path, or
        an fsspec URL reachable with ``storage_options`` or the settings of the environment
        (for S3: the ``AWS_*`` variables)."""
        try:
            location = os.fspath(location)
            if location.startswith("file://"):
                location = location[len("file://"):]
            elif "://" in location:
                fs, root = _url_to_fs(location, storage_options)
                marker = f"{str(root).rstrip('/')}/{ROOT_MARKER}"
                with contextlib.suppress(Exception):
                    fs.invalidate_cache(str(root).rstrip("/"))
                return bool(fs.isfile(marker))
            return os.path.isfile(os.path.join(location, ROOT_MARKER))
        except Exception:
            return False

    def describe(self) -> str:
        foreign = " (foreign Parquet data, read-only)" if self._st.foreign is not None else ""
        return f"parquet store {self._settings.location!r}{foreign}"

    # ------------------------------------------------------------------ opening
    def _open(self) -> None:
        st = self._st
        with st.lock:
            if st.opened:
                return
            if st.remote is not None:
                self._open_remote(st, st.remote)
                return
            loc = self._settings.location
            mode = st.mode
            if os.path.isfile(loc):
                if not _is_parquet_file(loc):
                    raise CorruptStoreError(
                        f"{loc!r} is a file but not a Parquet file; pass the directory of a "
                        "storegate parquet store (or a new path to create one)."
                    )
                self._open_foreign(os.path.dirname(loc), [os.path.basename(loc)],
                                   os.path.splitext(os.path.basename(loc))[0])
                return
            marker = os.path.join(loc, ROOT_MARKER)
            if os.path.isdir(loc) and os.path.exists(marker):
                self._check_marker(marker)
                if mode == "w-":
                    raise StoregateError(
                        f"a store already exists at {loc!r} and mode='w-' refuses to overwrite "
                        "it; use mode='a' to open it or mode='w' to replace it."
                    )
                if mode == "w":
                    self._start_writer(st, loc, create=True)
                    with st.tx():
                        self._wipe(loc, st.writer.journal)
                        _write_json(marker, {"format": FORMAT_NAME, "version": FORMAT_VERSION},
                                    self._settings.fsync, st.writer.journal)
                    self._release_if_clean(st)
                elif mode == "r":
                    recover_abandoned(loc, os.path.join(loc, _LOCK_FILE), self.describe())
                elif self._start_writer(st, loc, create=False):
                    if st.cleanup:
                        self._remove_deleted(loc)
                    self._release_if_clean(st)
            elif os.path.isdir(loc) and (found := _find_parquet(loc)):
                name = os.path.basename(os.path.normpath(loc))
                self._open_foreign(loc, found, os.path.splitext(name)[0])
                return
            else:
                if os.path.isdir(loc) and (os.path.exists(os.path.join(loc, ATTRS_FILE))
                                           or os.path.exists(os.path.join(loc, MANIFEST))):
                    raise StoreNotFoundError(
                        f"{loc!r} is a data_id or phase directory inside a storegate parquet "
                        "store, not a store; pass the store's root directory (the one holding "
                        f"{ROOT_MARKER})."
                    )
                if mode in ("r", "r+"):
                    raise StoreNotFoundError(
                        f"no parquet store at {loc!r} (mode={mode!r} opens existing stores "
                        "only); check the path, or open with mode='a' to create one."
                    )
                try:
                    os.makedirs(loc, exist_ok=True)
                    self._start_writer(st, loc, create=True)
                    with st.tx():
                        _write_json(marker, {"format": FORMAT_NAME, "version": FORMAT_VERSION},
                                    self._settings.fsync, st.writer.journal)
                    self._release_if_clean(st)
                except OSError as err:
                    raise StoregateError(
                        f"cannot create a parquet store at {loc!r}: {err}."
                    ) from None
            st.root = loc
            st.opened = True

    # ------------------------------------------------------------------ one writer
    def _start_writer(self, st: _State, loc: str, create: bool) -> bool:
        """Take the writer lock at a writable open (see the zarr backend's method of the same
        name): a new store or ``mode='w'`` must get it; an existing store takes it only if it
        is free, to roll back a killed writer's journal and tidy up, and gives it back unless
        the open wrote. Returns whether the lock is held."""
        w = st.writer
        if w.lock is None:
            w.lock = WriterLock(os.path.join(loc, _LOCK_FILE), self.describe())
        if create:
            w.lock.acquire()
        elif not w.lock.try_acquire():
            return False
        if w.journal is None:
            DirJournal.recover(loc)
            w.journal = DirJournal(loc, fsync=self._settings.fsync)
        return True

    @staticmethod
    def _release_if_clean(st: _State) -> None:
        w = st.writer
        if w.lock is None or (w.journal is not None and w.journal.active) or st.tx.depth:
            return
        if any(ph.pending or ph.dirty for ph in st.phases.values()):
            return
        w.lock.release()
        w.journal = None

    def _check_writable(self) -> None:
        """Refuse writes to a read-only store; take the writer lock at the first write
        (:class:`~storegate.errors.StoreLockedError` if another writer holds it)."""
        super()._check_writable()
        st = self._state()
        w = st.writer
        if st.remote is not None:
            # an object store has no flock: a lease object, taken at the first write
            if w.lock is None:
                w.lock = ObjectLease(st.remote.fs, f"{st.remote.root}/{LOCK_NAME}",
                                     self.describe())
            if not w.lock.held:
                w.lock.acquire()
                # give it back at exit, after the buffered rows (their flush is older)
                flush_at_exit(w.lock, w.lock.release)
                with st.lock:
                    if not any(ph.pending for ph in st.phases.values()):
                        _discard(st)  # another writer may have changed the store
            return
        if st.foreign is not None or (w.lock is not None and w.lock.held
                                      and w.journal is not None):
            return
        with st.lock:
            if not any(ph.pending for ph in st.phases.values()):
                _discard(st)  # another writer may have changed the store since it was read
            self._start_writer(st, st.root, create=True)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """See :meth:`Backend.transaction`: changes are recorded in an undo journal
        (``<store>/.sg-journal``) and committed at the end of the outermost block, or at the
        next :meth:`flush` while appended rows are buffered. Remote stores (fsspec URLs) have
        no journal: each manifest write is atomic, a group of them is not undone."""
        st = self._state()
        with st.tx():
            yield

    @staticmethod
    def _check_marker(marker: str, data: bytes | None = None) -> None:
        """Check the root marker (read from ``marker``, or its bytes ``data``)."""
        try:
            if data is None:
                with open(marker, encoding="utf-8") as f:
                    raw = json.load(f)
            else:
                raw = json.loads(data.decode("utf-8"))
        except (OSError, ValueError) as err:
            raise CorruptStoreError(
                f"{marker!r} is damaged ({err}); it marks a storegate parquet store. Restore "
                f"it, or recreate it with the content {{\"format\": \"{FORMAT_NAME}\", "
                f"\"version\": {FORMAT_VERSION}}}."
            ) from None
        if not isinstance(raw, dict) or raw.get("format") != FORMAT_NAME:
            raise CorruptStoreError(f"{marker!r} does not describe a storegate parquet store.")
        if int(raw.get("version", 0)) > FORMAT_VERSION:
            raise CorruptStoreError(
                f"the store at {os.path.dirname(marker)!r} has format version "
                f"{raw.get('version')}, newer than this storegate understands; upgrade it."
            )

    @staticmethod
    def _wipe(loc: str, journal: DirJournal | None) -> None:
        for name in os.listdir(loc):
            path = os.path.join(loc, name)
            if name in _PRIVATE:
                continue
            if journal is not None:
                journal.remove(path)
            elif os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)

    def _open_remote(self, st: _State, remote: _Remote) -> None:
        """:meth:`_open` for a store at a URL: no writer lock, no journal, no tidying up of
        files left by killed writers (another writer may be adding them right now); a
        read-only open never writes."""
        root = remote.root
        loc = self._settings.location
        mode = st.mode
        marker = os.path.join(root, ROOT_MARKER)
        try:
            text: bytes | None = remote.get(marker)
        except FileNotFoundError:
            text = None
        except StoregateError as err:
            raise StoreNotFoundError(f"cannot open the parquet store at {loc!r}: {err}") from None
        stamp = json.dumps({"format": FORMAT_NAME, "version": FORMAT_VERSION}).encode()
        if text is not None:
            self._check_marker(remote._url(marker), text)
            if mode == "w-":
                raise StoregateError(
                    f"a store already exists at {loc!r} and mode='w-' refuses to overwrite "
                    "it; use mode='a' to open it or mode='w' to replace it."
                )
            if mode == "w":
                remote.remove([p for p in remote.files_under(root) if p != marker])
                remote.put(marker, stamp)
        else:
            kind = remote.kind(root)
            if kind == "file":
                try:
                    head = remote.get_range(root, 0, 4)
                except FileNotFoundError:
                    head = b""
                if head != b"PAR1":
                    raise CorruptStoreError(
                        f"{loc!r} is a file but not a Parquet file; pass the URL of a "
                        "storegate parquet store (or a new one to create it)."
                    )
                parent, name = root.rsplit("/", 1) if "/" in root else ("", root)
                self._open_foreign(parent, [name], os.path.splitext(name)[0])
                return
            if kind == "directory":
                found = _select_parquet(root, remote.files_under(root))
                if found:
                    name = root.rstrip("/").rsplit("/", 1)[-1]
                    self._open_foreign(root, found, os.path.splitext(name)[0])
                    return
                if any(remote.exists(os.path.join(root, n)) for n in (ATTRS_FILE, MANIFEST)):
                    raise StoreNotFoundError(
                        f"{loc!r} is a data_id or phase directory inside a storegate parquet "
                        "store, not a store; pass the store's root URL (the one holding "
                        f"{ROOT_MARKER})."
                    )
            if mode in ("r", "r+"):
                raise StoreNotFoundError(
                    f"no parquet store at {loc!r} (mode={mode!r} opens existing stores only); "
                    "check the URL (and the bucket), or open with mode='a' to create one."
                )
            remote.put(marker, stamp)
        st.root = root
        st.opened = True

    @staticmethod
    def _remove_deleted(loc: str) -> None:
        with contextlib.suppress(OSError):
            for name in os.listdir(loc):
                if name.startswith(_DELETED_PREFIX):
                    shutil.rmtree(os.path.join(loc, name), ignore_errors=True)

    def _open_foreign(self, root: str, files: list[str], default_id: str) -> None:
        """Open Parquet data storegate did not write: read-only, one data_id, phase 'train'."""
        st = self._st
        loc = self._settings.location
        if st.mode != "r":
            raise StoregateError(
                f"{loc!r} holds Parquet data that storegate did not write (there is no "
                f"{ROOT_MARKER}); storegate reads such data in place, read-only: open it with "
                "mode='r', i.e. backend_args={'output_dir': ..., 'mode': 'r'} (its columns "
                "appear as the vars of phase 'train'), or copy it into a new store with add_data."
            )
        pa, _ = _arrow()
        data_id = self._settings.foreign_data_id or default_id
        try:
            check_name(data_id, "data_id")
        except StoregateError:
            data_id = "data"
        man = _Manifest()
        specs: dict[str, tuple[Any, _VarMeta]] = {}
        skipped: dict[str, str] = {}
        if st.remote is not None:  # read the footers concurrently
            with contextlib.suppress(_MissingFile):
                _remote_handles(st, [os.path.join(root, rel) for rel in files])
        for i, rel in enumerate(files):
            path = os.path.join(root, rel)
            try:
                meta = _footer(st, path)
                schema = meta.schema.to_arrow_schema()
            except _MissingFile:
                raise CorruptStoreError(
                    f"{path!r} disappeared while the Parquet data was opened; open it again."
                ) from None
            except (OSError, pa.ArrowException) as err:
                raise CorruptStoreError(
                    f"{path!r} is not a readable Parquet file ({type(err).__name__}: {err})."
                ) from None
            groups = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
            fm = _FileMeta(int(meta.num_rows), groups, {}, {})
            names = set(schema.names)
            for fld in schema:
                if fld.name in skipped:
                    continue
                if i == 0:
                    vm, why = _foreign_var(fld)
                    if vm is None:
                        skipped[fld.name] = why
                        continue
                    specs[fld.name] = (fld.type, vm)
                    man.order.append(fld.name)
                elif fld.name not in specs:
                    continue
                elif not fld.type.equals(specs[fld.name][0]):
                    skipped[fld.name] = "its type differs between files"
                    continue
                fm.columns[fld.name] = fld.name
            for name in list(specs):
                if name not in names and name not in skipped:
                    skipped[name] = f"it is missing from {rel!r}"
            man.files[rel] = fm
        for name in skipped:
            specs.pop(name, None)
            if name in man.order:
                man.order.remove(name)
        for fm in man.files.values():
            fm.columns = {k: c for k, c in fm.columns.items() if k in specs}
        for name, (_, vm) in specs.items():
            vm.files = list(files)
            man.vars[name] = vm
            if vm.ragged:
                for fm in man.files.values():
                    fm.values[name] = [0] * len(fm.row_groups)  # unknown without reading
        if skipped:
            listing = "; ".join(f"{k!r}: {v}" for k, v in skipped.items())
            warnings.warn(
                f"storegate: columns of {loc!r} that cannot be vars were left out ({listing}).",
                UserWarning, stacklevel=4,
            )
        st.foreign_id = data_id
        st.foreign = {p: _Phase(data_id, p, root, man if p == "train" else _Manifest())
                      for p in PHASES}
        st.root = root
        st.opened = True

    # ------------------------------------------------------------------ data_ids
    def _data_dir(self, st: _State, data_id: str) -> str:
        return os.path.join(st.root, data_id)

    def _exists(self, st: _State, data_id: str) -> bool:
        if st.foreign is not None:
            return data_id == st.foreign_id
        if not isinstance(data_id, str) or not data_id or "/" in data_id or "\\" in data_id \
                or data_id.startswith(".") or "\x00" in data_id:
            return False
        if st.remote is not None:  # seen by this process: it exists (one request less)
            if data_id in st.known_ids or data_id in st.attrs:
                return True
            if st.remote.exists(os.path.join(st.root, data_id, ATTRS_FILE)):
                st.known_ids.add(data_id)
                return True
            return False
        return os.path.isfile(os.path.join(st.root, data_id, ATTRS_FILE))

    def _require(self, st: _State, data_id: str) -> None:
        if not self._exists(st, data_id):
            raise DataIdNotFoundError(
                f"data_id {data_id!r} does not exist in {self.describe()}; existing: "
                f"{self.data_ids()}."
            )

    def data_ids(self) -> list[str]:
        st = self._state()
        if st.foreign is not None:
            return [st.foreign_id]
        if st.remote is not None:
            remote = st.remote
            return [n for n in remote.names(st.root) if not n.startswith(".")
                    and remote.exists(os.path.join(st.root, n, ATTRS_FILE))]
        try:
            names = os.listdir(st.root)
        except FileNotFoundError:
            return []
        return sorted(n for n in names if not n.startswith(".")
                      and os.path.isfile(os.path.join(st.root, n, ATTRS_FILE)))

    def create_data_id(self, data_id: str) -> None:
        st = self._state()
        # the transaction first, then the state lock: the order every write takes them in
        with st.tx(), st.lock:
            if self._exists(st, data_id):
                return
            if self.readonly or st.foreign is not None:
                raise DataIdNotFoundError(
                    f"data_id {data_id!r} does not exist in {self.describe()}, which is open "
                    f"read-only; existing data_ids: {self.data_ids()}."
                )
            check_name(data_id, "data_id")
            self._check_writable()
            folder = self._data_dir(st, data_id)
            journal = st.writer.journal
            for phase in PHASES:
                _makedirs(os.path.join(folder, phase), journal, st.remote)
            _write_json(os.path.join(folder, ATTRS_FILE), {}, self._settings.fsync, journal,
                        st.remote)
            st.attrs[data_id] = {}

    def delete_data_id(self, data_id: str) -> None:
        self._check_writable()
        st = self._state()
        with st.lock:
            self._require(st, data_id)
            for key in [k for k in st.phases if k[0] == data_id]:
                ph = st.phases.pop(key)
                for p in ph.pending.values():
                    st.pending_bytes -= p.nbytes
                _forget_files(st, [os.path.join(ph.path, f) for f in ph.manifest.files])
            st.arenas.drop_prefix((data_id,))
            for akey in [k for k in st.arena_tokens if k[0] == data_id]:
                del st.arena_tokens[akey]
            st.attrs.pop(data_id, None)
            st.known_ids.discard(data_id)
            folder = self._data_dir(st, data_id)
            if st.remote is not None:
                # the attributes object is the record that the data_id exists: gone first
                attrs = os.path.join(folder, ATTRS_FILE)
                st.remote.remove([attrs])
                st.remote.remove([p for p in st.remote.files_under(folder) if p != attrs])
                return
            if st.writer.journal is not None:
                st.writer.journal.remove(folder)  # kept until the commit
                return
            trash = os.path.join(st.root, f"{_DELETED_PREFIX}{secrets.token_hex(6)}")
            os.replace(folder, trash)  # atomic: the data_id is gone from here on
            shutil.rmtree(trash, ignore_errors=True)

    def get_attrs(self, data_id: str) -> dict[str, Any]:
        st = self._state()
        with st.lock:
            self._require(st, data_id)
            if st.foreign is not None:
                return {}
            attrs = st.attrs.get(data_id)
            if attrs is None:
                path = os.path.join(self._data_dir(st, data_id), ATTRS_FILE)
                try:
                    if st.remote is not None:
                        attrs = json.loads(st.remote.get(path).decode("utf-8"))
                    else:
                        with open(path, encoding="utf-8") as f:
                            attrs = json.load(f)
                except (OSError, ValueError, RecursionError) as err:
                    raise CorruptStoreError(
                        f"the attributes of data_id {data_id!r} ({path!r}) are damaged ({err}); "
                        "restore the file or write it again with set_attrs."
                    ) from None
                if not isinstance(attrs, dict):
                    raise CorruptStoreError(f"{path!r} does not hold a JSON object.")
                st.attrs[data_id] = attrs
            return json.loads(json.dumps(attrs))

    def set_attrs(self, data_id: str, attrs: dict[str, Any]) -> None:
        self._check_writable()
        st = self._state()
        with st.lock:
            self._require(st, data_id)
            try:
                text = json.dumps(attrs)
            except (TypeError, ValueError) as err:
                raise InvalidArgumentError(
                    f"attributes of data_id {data_id!r} must be JSON-able ({err})."
                ) from None
            path = os.path.join(self._data_dir(st, data_id), ATTRS_FILE)
            _atomic_write(path, text.encode("utf-8"), self._settings.fsync, st.writer.journal,
                          st.remote)
            st.attrs[data_id] = json.loads(text)

    # ------------------------------------------------------------------ phases and vars
    def _phase(self, st: _State, data_id: str, phase: str) -> _Phase:
        key = (data_id, phase)
        ph = st.phases.get(key)
        if ph is not None:
            return ph
        self._require(st, data_id)
        phase = check_phase(phase, allow_all=False)
        if st.foreign is not None:
            ph = st.foreign[phase]
            st.phases[key] = ph
            return ph
        path = os.path.join(self._data_dir(st, data_id), phase)
        mpath = os.path.join(path, MANIFEST)
        try:
            if st.remote is not None:
                data = st.remote.get(mpath)
            else:
                if os.path.lexists(mpath) and not os.path.isfile(mpath):
                    # a FIFO behind a link would block the read, a device never end it
                    raise OSError(f"{mpath!r} is not a regular file")
                with open(mpath, "rb") as f:
                    data = f.read()
        except FileNotFoundError:
            man = _Manifest()
        except OSError as err:
            raise CorruptStoreError(f"cannot read the manifest {mpath!r}: {err}.") from None
        else:
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as err:  # bytes flipped: JSON is always UTF-8
                raise CorruptStoreError(
                    f"the manifest {mpath!r} is damaged (not UTF-8 text: {err}); restore it "
                    "from a backup, or delete the phase directory to drop that phase's data."
                ) from None
            man = _Manifest.from_json(text, mpath)
        ph = _Phase(data_id, phase, path, man)
        lock = st.writer.lock
        if st.cleanup and st.writable and lock is not None and lock.held:
            self._remove_orphans(ph)
        st.phases[key] = ph
        return ph

    @staticmethod
    def _remove_orphans(ph: _Phase) -> None:
        """Delete files of this phase that the manifest does not list: left by a writer that
        was killed, or replaced files whose deletion was interrupted."""
        try:
            names = os.listdir(ph.path)
        except OSError:
            return
        removed = 0
        for name in names:
            if name in ph.manifest.files or name == MANIFEST:
                continue
            if name.startswith(_TMP_PREFIX):
                pid = name[len(_TMP_PREFIX):].split("-", 1)[0]
                if pid.isdigit() and int(pid) != os.getpid() and pid_alive(int(pid)):
                    continue  # another live process is writing it
            elif not (name.startswith(_PART_PREFIX) and name.endswith(".parquet")):
                continue  # not ours: leave it
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(ph.path, name))
                removed += 1
        if removed:
            logger.info("storegate: removed %d orphaned files from %s", removed, ph.path)

    def _meta(self, ph: _Phase, var: str) -> _VarMeta:
        vm = ph.manifest.vars.get(var)
        if vm is None:
            raise VarNotFoundError(
                f"var {var!r} does not exist in data_id {ph.data_id!r}, phase {ph.name!r} of "
                f"{self.describe()}; vars there: {self._visible(ph)}."
            )
        return vm

    @staticmethod
    def _visible(ph: _Phase) -> list[str]:
        return [v for v in ph.manifest.order if not v.startswith(".")]

    def var_names(self, data_id: str, phase: str) -> list[str]:
        st = self._state()
        with st.lock:
            return self._visible(self._phase(st, data_id, phase))

    def has_var(self, data_id: str, phase: str, var: str) -> bool:
        st = self._state()
        with st.lock:
            return var in self._phase(st, data_id, phase).manifest.vars

    def info(self, data_id: str, phase: str, var: str) -> VarInfo:
        st = self._state()
        with st.lock:
            ph = self._phase(st, data_id, phase)
            vm = self._meta(ph, var)
            lay = ph.layout(var)
            p = ph.pending.get(var)
            length = lay.length + (p.rows if p is not None else 0)
            extra: dict[str, Any] = {"files": len(lay.files),
                                     "row_groups": int(lay.rg_starts.shape[0] - 1),
                                     "pending_rows": p.rows if p is not None else 0}
            if vm.ragged:
                known = st.foreign is None
                extra["n_values"] = (lay.n_values + (p.values if p is not None else 0)
                                     if known else None)
            chunks = (lay.chunk_rows, *vm.shape) if lay.files and not vm.ragged else None
            codec = self._settings.compression if st.foreign is None else None
            return VarInfo(var, (int(length), *vm.shape), vm.dtype, ragged=vm.ragged,
                           chunks=chunks, codec=codec, extra=extra)

    def chunk_layout(self, data_id: str, phase: str, var: str) -> dict[str, Any]:
        """Rows per row group and codec of a var (for ``storegate info`` and samplers).

        Examples
        --------
        >>> import tempfile
        >>> be = ParquetBackend(output_dir=tempfile.mkdtemp() + "/s", row_group_rows=4)
        >>> be.create_data_id("d"); be.append("d", "train", "x", np.arange(10)); be.flush()
        >>> be.chunk_layout("d", "train", "x")
        {'chunk_rows': 4, 'codec': 'none'}
        """
        st = self._state()
        with st.lock:
            ph = self._phase(st, data_id, phase)
            self._meta(ph, var)
            lay = ph.layout(var)
            return {"chunk_rows": lay.chunk_rows if lay.files else 0,
                    "codec": self._settings.compression}

    def _arena(self, st: _State, ph: _Phase, var: str) -> Arena | None:
        key = (ph.data_id, ph.name, var)
        vm = ph.manifest.vars[var]
        token = tuple(vm.files)
        arena = st.arenas.get(key)
        if arena is not None:
            if isinstance(arena, Arena) and st.arena_tokens.get(key) == token:
                return arena
            st.arenas.drop(key)
        lay = ph.layout(var)
        if vm.ragged or not st.arenas.admits(lay.length * vm.row_bytes):
            return None
        try:
            arena = Arena((lay.length, *vm.shape), vm.dtype, lay.chunk_rows,
                          _filler(st, ph, var))
        except (MemoryError, ValueError):  # no room for it: read without an arena
            return None
        st.arenas.put(key, arena)
        st.arena_tokens[key] = token
        return arena

    def _ragged_whole(self, st: _State, ph: _Phase, vm: _VarMeta, lay: _Layout,
                      var: str) -> RaggedArray | None:
        """A ragged var decoded whole (values + offsets), kept under the arena budget like a
        regular var's arena, or ``None`` when it does not fit."""
        key = (ph.data_id, ph.name, var)
        token = tuple(vm.files)
        cached = st.arenas.get(key)
        if isinstance(cached, _RaggedWhole) and st.arena_tokens.get(key) == token:
            return cached.data
        item_bytes = int(np.prod(vm.shape, dtype=np.int64)) * vm.dtype.itemsize
        nbytes = int(lay.n_values) * item_bytes + 8 * (lay.length + 1)
        if not st.arenas.admits(max(1, nbytes)):
            return None
        data = self._read_ragged(st, ph, vm, lay, var, slice(0, lay.length, 1))
        st.arenas.put(key, _RaggedWhole(data))  # type: ignore[arg-type]
        st.arena_tokens[key] = token
        return data

    def _drop_arena(self, st: _State, ph: _Phase, var: str) -> None:
        key = (ph.data_id, ph.name, var)
        st.arenas.drop(key)
        st.arena_tokens.pop(key, None)

    # ------------------------------------------------------------------ reads
    def read(self, data_id: str, phase: str, var: str, index: Index) -> Any:
        """Gathers of regular vars go through the var's decoded arena (filled on first touch);
        rows and slices are copied from the arena when it already holds them, else decoded from
        the row groups they need without filling it (so scans keep memory flat). Ragged vars
        and vars larger than ``cache_bytes`` read the touched row groups (cached, LRU)."""
        for attempt in range(2):
            st = self._state()
            with st.lock:
                ph = self._phase(st, data_id, phase)
                vm = self._meta(ph, var)
                if ph.pending:
                    self._flush(st, ph)
                    vm = self._meta(ph, var)
                lay = ph.layout(var)
            try:
                if vm.ragged:
                    return self._read_ragged(st, ph, vm, lay, var, index)
                return self._read_regular(st, ph, vm, lay, var, index)
            except CorruptStoreError as err:
                if f"var {var!r}" in str(err):
                    raise
                # a damaged data file: say which var could not be read, not only which file
                raise CorruptStoreError(
                    f"var {var!r} of {data_id}/{phase} cannot be read: {err}") from None
            except _MissingFile as err:
                # another process replaced files since this one read the manifest: reload once
                with st.lock:
                    if attempt or ph.pending or ph.dirty or st.foreign is not None:
                        raise CorruptStoreError(
                            f"the data file {err.path!r} of var {var!r} is missing; the store "
                            "was modified outside storegate. Restore the file or delete the var."
                        ) from None
                    self._reload(st, ph)
        raise AssertionError("unreachable")  # pragma: no cover

    def _reload(self, st: _State, ph: _Phase) -> None:
        st.phases.pop((ph.data_id, ph.name), None)
        _forget_files(st, [os.path.join(ph.path, f) for f in ph.manifest.files])
        for var in list(ph.manifest.vars):
            self._drop_arena(st, ph, var)

    def _read_regular(self, st: _State, ph: _Phase, vm: _VarMeta, lay: _Layout, var: str,
                      index: Index) -> np.ndarray:
        n, shape, dtype = lay.length, vm.shape, vm.dtype
        if isinstance(index, np.ndarray):
            if index.size == 0 or n == 0:
                return np.empty((index.shape[0], *shape), dtype=dtype)
            with st.lock:
                arena = self._arena(st, ph, var)
            if arena is not None:
                if st.remote is not None and not arena.full:
                    self._preload(st, ph, lay, arena, index)
                return arena.take(index)
            return self._gather(st, ph, vm, lay, var, index)
        if isinstance(index, int):
            start, stop, step = index, index + 1, 1
        else:
            start, stop, step = index.start, index.stop, index.step
        if stop <= start or n == 0:
            return np.empty((0, *shape), dtype=dtype)
        key = (ph.data_id, ph.name, var)
        arena = st.arenas.get(key)
        if arena is not None and st.arena_tokens.get(key) == tuple(vm.files) and arena.covers(
                start, stop):
            out = arena.buf[index]  # an int gives a numpy scalar, always in native order
            return np.array(out, dtype=arena.buf.dtype, copy=True)
        if stop - start <= lay.chunk_rows:
            g0 = int(np.searchsorted(lay.rg_starts, start, side="right")) - 1
            g1 = int(np.searchsorted(lay.rg_starts, stop, side="left"))
            if g1 - g0 <= 2:  # within one or two row groups: through the row-group cache
                parts = []
                for g in _each(st, ph, lay, range(g0, g1)):
                    block = _decode_group(st, ph, vm, lay, var, g)
                    gs = int(lay.rg_starts[g])
                    parts.append(block[max(start, gs) - gs : min(stop, int(
                        lay.rg_starts[g + 1])) - gs])
                out = parts[0].copy() if len(parts) == 1 else np.concatenate(parts)
                if isinstance(index, int):
                    return out.reshape(shape)
                return out if step == 1 else out[::step].copy()
        try:
            out = np.empty((stop - start, *shape), dtype=dtype)
        except (MemoryError, ValueError) as err:
            raise InvalidArgumentError(
                f"reading {stop - start} rows of var {var!r} ({ph.data_id}/{ph.name}) needs "
                f"{(stop - start) * vm.row_bytes} bytes of memory, which cannot be allocated "
                f"({type(err).__name__}: {err}); read it in slices. If the var should not be "
                "this large, the manifest is damaged: run `storegate check`.") from None
        _filler(st, ph, var)(start, stop, out)
        if isinstance(index, int):
            return out.reshape(shape)
        return out if step == 1 else out[::step].copy()

    def _gather(self, st: _State, ph: _Phase, vm: _VarMeta, lay: _Layout, var: str,
                index: np.ndarray) -> np.ndarray:
        """Rows at an index array without an arena: decode each touched row group once."""
        uniq, inverse = np.unique(index, return_inverse=True)
        groups = np.searchsorted(lay.rg_starts, uniq, side="right") - 1
        out = np.empty((uniq.shape[0], *vm.shape), dtype=vm.dtype)
        cuts = np.flatnonzero(np.diff(groups)) + 1
        segments = np.split(np.arange(uniq.shape[0]), cuts)
        for seg in _each(st, ph, lay, segments, lambda seg: int(groups[seg[0]])):
            g = int(groups[seg[0]])
            block = _decode_group(st, ph, vm, lay, var, g)
            out[seg] = block[uniq[seg] - lay.rg_starts[g]]
        return np.take(out, inverse.reshape(-1), axis=0)

    @staticmethod
    def _preload(st: _State, ph: _Phase, lay: _Layout, arena: Arena, index: np.ndarray) -> None:
        """Remote stores: fill the arena chunks a gather touches with their column chunks
        fetched concurrently (the arena would fill them one run of chunks after another)."""
        cr = arena.chunk_rows
        chunks = np.unique(index // cr)
        missing = chunks[~arena.resident[chunks]]
        if missing.size < 2:
            return

        def groups_of(c: int) -> range:
            a, b = c * cr, min(lay.length, (c + 1) * cr)
            return range(int(np.searchsorted(lay.rg_starts, a, side="right")) - 1,
                         int(np.searchsorted(lay.rg_starts, b, side="left")))

        for batch in _windowed(st, [int(c) for c in missing],
                               lambda c: _group_reads(st, ph, lay, groups_of(c), False)):
            arena.ensure_rows(np.asarray(batch, dtype=np.int64) * cr)

    def _read_ragged(self, st: _State, ph: _Phase, vm: _VarMeta, lay: _Layout, var: str,
                     index: Index) -> Any:
        empty = RaggedArray(np.zeros((0, *vm.shape), dtype=vm.dtype), np.zeros(1, np.int64))
        if isinstance(index, int):
            g = int(np.searchsorted(lay.rg_starts, index, side="right")) - 1
            block = _decode_group(st, ph, vm, lay, var, g)
            return block.row(index - int(lay.rg_starts[g]))
        if isinstance(index, slice):
            if index.step != 1:
                index = np.arange(index.start, index.stop, index.step, dtype=np.int64)
            elif index.stop <= index.start:
                return empty
            else:
                start, stop = index.start, index.stop
                g0 = int(np.searchsorted(lay.rg_starts, start, side="right")) - 1
                g1 = int(np.searchsorted(lay.rg_starts, stop, side="left"))
                parts = []
                for g in _each(st, ph, lay, range(g0, g1)):
                    gs, ge = int(lay.rg_starts[g]), int(lay.rg_starts[g + 1])
                    whole = start <= gs and ge <= stop
                    block = _decode_group(st, ph, vm, lay, var, g, cache=not whole)
                    parts.append(block.slice(max(start, gs) - gs, min(stop, ge) - gs))
                return parts[0] if len(parts) == 1 else RaggedArray.concatenate(parts)
        if index.size == 0:
            return empty
        whole = self._ragged_whole(st, ph, vm, lay, var)
        if whole is not None:  # decoded once, then every gather is one vectorised take
            return whole.take(index)
        uniq, inverse = np.unique(index, return_inverse=True)
        groups = np.searchsorted(lay.rg_starts, uniq, side="right") - 1
        cuts = np.flatnonzero(np.diff(groups)) + 1
        parts = []
        segments = np.split(np.arange(uniq.shape[0]), cuts)
        for seg in _each(st, ph, lay, segments, lambda seg: int(groups[seg[0]])):
            g = int(groups[seg[0]])
            block = _decode_group(st, ph, vm, lay, var, g)
            parts.append(block.take(uniq[seg] - lay.rg_starts[g]))
        rows = parts[0] if len(parts) == 1 else RaggedArray.concatenate(parts)
        return rows.take(inverse.reshape(-1).astype(np.int64))

    def read_many(
        self, data_id: str, phase: str, vars: Sequence[str], index: Index
    ) -> list[Any]:
        return [self.read(data_id, phase, v, index) for v in vars]

    # ------------------------------------------------------------------ writes
    def _flush(self, st: _State, ph: _Phase) -> None:
        had = list(ph.pending)
        _flush_phase(st, ph)
        for var in had:
            self._drop_arena(st, ph, var)

    def flush(self) -> None:
        st = self._st
        if os.getpid() != st.pid or not st.opened or not st.writable:
            return
        with st.lock:
            for ph in list(st.phases.values()):
                if ph.pending or ph.dirty:
                    self._flush(st, ph)
            st.tx.commit()

    def append(self, data_id: str, phase: str, var: str, data: Any) -> None:
        self._check_writable()
        st = self._state()
        with st.lock:
            ph = self._phase(st, data_id, phase)
            vm = ph.manifest.vars.get(var)
            ragged = isinstance(data, RaggedArray)
            if vm is None:
                values = data.values if ragged else data
                dtype = check_storable_dtype(values.dtype, f"var {var!r}")
                _leaf_type(dtype)  # DtypeError for dtypes Parquet cannot hold
                ph.manifest.vars[var] = vm = _VarMeta(dtype, tuple(values.shape[1:]), ragged, [])
                ph.manifest.order.append(var)
                ph.dirty = True
            else:
                if vm.ragged != ragged:
                    raise kind_mismatch(var, ragged_var=vm.ragged)
                if ragged:
                    check_row_shape(data.values, vm.shape, var)
                    data = RaggedArray(cast_for_write(data.values, vm.dtype, var), data.offsets,
                                       validate=False)
                else:
                    check_row_shape(data, vm.shape, var)
                    data = cast_for_write(data, vm.dtype, var)
            if len(data) == 0:
                return
            if ragged:
                part: Any = RaggedArray(np.array(data.values, copy=True, order="C"),
                                        np.array(data.offsets, dtype=np.int64, copy=True),
                                        validate=False)
            else:
                part = np.array(data, copy=True, order="C")
            pending = ph.pending.setdefault(var, _Pending())
            pending.add(part)
            st.pending_bytes += int(part.nbytes)
            self._drop_arena(st, ph, var)
            if st.pending_bytes > self._settings.buffer_bytes:
                for other in list(st.phases.values()):
                    if other.pending:
                        self._flush(st, other)

    def create(
        self, data_id: str, phase: str, var: str, shape: tuple[int, ...], dtype: np.dtype
    ) -> None:
        self._check_writable()
        st = self._state()
        with st.lock:
            ph = self._phase(st, data_id, phase)
            if var in ph.manifest.vars:
                raise VarExistsError(
                    f"var {var!r} already exists in {data_id}/{phase}; delete it first."
                )
            dt = check_storable_dtype(dtype, f"var {var!r}")
            _leaf_type(dt)
            ph.manifest.vars[var] = _VarMeta(dt, tuple(int(s) for s in shape[1:]), False, [])
            ph.manifest.order.append(var)
            ph.dirty = True
            if shape[0]:
                zeros = np.zeros(tuple(shape), dtype=dt)  # pages untouched until written
                p = ph.pending.setdefault(var, _Pending())
                p.add(zeros)
                st.pending_bytes += int(zeros.nbytes)

    def write(self, data_id: str, phase: str, var: str, index: Index, data: Any) -> None:
        """In-place writes rewrite only the files holding the written rows (each as a new file,
        then one manifest swap); rows still buffered are changed in memory."""
        self._check_writable()
        st = self._state()
        with st.lock:
            ph = self._phase(st, data_id, phase)
            vm = self._meta(ph, var)
            if vm.ragged != isinstance(data, RaggedArray):
                raise kind_mismatch(var, ragged_var=vm.ragged)
            lay = ph.layout(var)
            pending = ph.pending.get(var)
            n = lay.length + (pending.rows if pending is not None else 0)
            if isinstance(index, int):
                rows = np.array([index], dtype=np.int64)
            elif isinstance(index, slice):
                rows = np.arange(index.start, index.stop, index.step, dtype=np.int64)
            else:
                rows = np.asarray(index, dtype=np.int64)
            if rows.size and (rows.min() < 0 or rows.max() >= n):
                raise ShapeMismatchError(
                    f"cannot write rows {rows.min()}..{rows.max()} of var {var!r}, which has "
                    f"{n} rows."
                )
            if rows.size and rows.min() < lay.length and (ph.pending or ph.dirty):
                # files will be rewritten: commit the buffered rows first, so that the one
                # manifest swap of the rewrite describes everything
                self._flush(st, ph)
                lay = ph.layout(var)
            if vm.ragged:
                check_row_shape(data.values, vm.shape, var)
                data = RaggedArray(np.asarray(data.values).astype(vm.dtype, copy=False),
                                   data.offsets, validate=False)
                if rows.shape[0] != len(data):
                    raise ShapeMismatchError(
                        f"index selects {rows.shape[0]} rows but {len(data)} ragged rows were "
                        "given."
                    )
                if rows.size:
                    self._write_ragged(st, ph, var, lay, rows, data)
                return
            target = (rows.shape[0], *vm.shape)
            try:
                arr = np.asarray(data)
                if isinstance(index, int):
                    arr = np.broadcast_to(arr, vm.shape)[None]
                block = np.broadcast_to(arr, target).astype(vm.dtype, copy=False)
            except ValueError as err:
                raise ShapeMismatchError(
                    f"cannot write data of shape {np.shape(data)} into var {var!r} at "
                    f"{index!r}: {err}."
                ) from None
            if rows.size == 0:
                return
            order = np.argsort(rows, kind="stable")
            sorted_rows = rows[order]
            last = np.ones(sorted_rows.shape[0], dtype=bool)
            last[:-1] = sorted_rows[1:] != sorted_rows[:-1]  # numpy: the last write wins
            rows, block = sorted_rows[last], block[order[last]]
            self._write_regular(st, ph, var, lay, rows, block)

    def _write_regular(self, st: _State, ph: _Phase, var: str, lay: _Layout, rows: np.ndarray,
                       block: np.ndarray) -> None:
        committed = rows < lay.length
        if committed.any():
            crow, cblock = rows[committed], block[committed]
            file_of = np.searchsorted(lay.file_starts, crow, side="right") - 1

            def update(fi: int) -> Callable[[Any], Any]:
                sel = file_of == fi
                local = crow[sel] - lay.file_starts[fi]
                values = cblock[sel]

                def apply(old: np.ndarray) -> np.ndarray:
                    new = np.array(old, copy=True)
                    new[local] = values
                    return new

                return apply

            self._rewrite(st, ph, var, lay, {int(fi): update(int(fi))
                                             for fi in np.unique(file_of)})
            arena = st.arenas.get((ph.data_id, ph.name, var))
            if isinstance(arena, Arena):
                arena.update(crow, cblock)
                arena.set_fill(_filler(st, ph, var))
                st.arena_tokens[(ph.data_id, ph.name, var)] = tuple(ph.manifest.vars[var].files)
        if not committed.all():
            pending = ph.pending[var]
            buf = pending.block()
            buf[rows[~committed] - lay.length] = block[~committed]

    def _write_ragged(self, st: _State, ph: _Phase, var: str, lay: _Layout, rows: np.ndarray,
                      data: RaggedArray) -> None:
        committed = rows < lay.length
        if committed.any():
            pos = np.flatnonzero(committed)
            file_of = np.searchsorted(lay.file_starts, rows[pos], side="right") - 1

            def update(fi: int) -> Callable[[Any], Any]:
                sel = pos[file_of == fi]
                local = rows[sel] - lay.file_starts[fi]
                part = data.take(sel)
                return lambda old: old.replace_rows(rows_of(local), part)

            self._rewrite(st, ph, var, lay, {int(fi): update(int(fi))
                                             for fi in np.unique(file_of)})
        if not committed.all():
            pending = ph.pending[var]
            old = pending.block()
            sel = np.flatnonzero(~committed)
            new = old.replace_rows(rows_of(rows[sel] - lay.length), data.take(sel))
            st.pending_bytes += int(new.nbytes) - pending.nbytes
            pending.parts = [new]
            pending.values = int(new.values.shape[0])
            pending.nbytes = int(new.nbytes)

    def _rewrite(self, st: _State, ph: _Phase, var: str, lay: _Layout,
                 updates: dict[int, Callable[[Any], Any]]) -> None:
        """Replace files of a var: each affected file is written anew (every column it holds,
        with ``var``'s rows updated, same row groups), then one manifest swap, then the old
        files are deleted."""
        assert not ph.pending and not ph.dirty, "flush before rewriting files"
        man = ph.manifest.clone()
        written: list[str] = []
        replaced: list[str] = []
        try:
            for fi, fn in updates.items():
                old_name = lay.files[fi]
                fm = man.files[old_name]
                names = [v for v in man.order if v in fm.columns]
                cols = _column_names(names)
                path = os.path.join(ph.path, old_name)
                arrays = []
                values: dict[str, list[int]] = {}
                edges = np.concatenate([[0], np.cumsum(fm.row_groups)]).astype(np.int64)
                # remote: every column of the file fetched concurrently first
                with _prefetched(st, [(path, range(len(fm.row_groups)), fm.columns[v])
                                      for v in names]):
                    for v in names:
                        vm = man.vars[v]
                        chunked = _read_groups(st, path, list(range(len(fm.row_groups))),
                                               fm.columns[v], int(sum(fm.row_groups)))
                        what = f"column {fm.columns[v]!r} of {path!r}"
                        if v != var:
                            arrays.append(chunked.combine_chunks() if hasattr(
                                chunked, "combine_chunks") else chunked)
                            if vm.ragged:
                                values[v] = list(fm.values[v])
                            continue
                        new = fn(_decode(chunked, vm, what))
                        if vm.ragged:
                            arrays.append(_ragged_to_arrow(new, vm.dtype, vm.shape))
                            values[v] = np.diff(new.offsets[edges]).astype(int).tolist()
                        else:
                            arrays.append(_to_arrow(new, vm.dtype, vm.shape))
                fields = _fields(names, cols, man.vars)
                arrays = [a.cast(f.type) if not a.type.equals(f.type) else a
                          for a, f in zip(arrays, fields, strict=True)]
                new_name = _new_file_name(man)
                _write_parquet(ph.path, new_name, fields, arrays, list(fm.row_groups),
                               st.settings, st.writer.journal, st.remote)
                written.append(new_name)
                replaced.append(old_name)
                man.files[new_name] = _FileMeta(fm.rows, list(fm.row_groups), cols, values)
                del man.files[old_name]
                for v in names:
                    files = man.vars[v].files
                    files[files.index(old_name)] = new_name
            _commit(st, ph, man)
        except BaseException:
            _unlink_all(st, ph, written)
            raise
        _remove_files(st, ph, replaced)
        for v in list(man.vars):
            if v != var and any(f in written for f in man.vars[v].files):
                self._retag_arena(st, ph, v)

    def _retag_arena(self, st: _State, ph: _Phase, var: str) -> None:
        """A var whose files were rewritten with unchanged content keeps its arena."""
        key = (ph.data_id, ph.name, var)
        arena = st.arenas.get(key)
        if arena is not None:
            if isinstance(arena, Arena):
                arena.set_fill(_filler(st, ph, var))
            st.arena_tokens[key] = tuple(ph.manifest.vars[var].files)

    def delete(self, data_id: str, phase: str, var: str) -> None:
        self._check_writable()
        st = self._state()
        with st.lock:
            ph = self._phase(st, data_id, phase)
            self._meta(ph, var)
            p = ph.pending.pop(var, None)
            if p is not None:
                st.pending_bytes -= p.nbytes
            if ph.pending or ph.dirty:
                self._flush(st, ph)
            man = ph.manifest.clone()
            vm = man.vars.pop(var)
            man.order.remove(var)
            for f in vm.files:
                man.files[f].columns.pop(var, None)
                man.files[f].values.pop(var, None)
            dead = _dead_files(man)
            _commit(st, ph, man)
            ph.layouts.pop(var, None)
            self._drop_arena(st, ph, var)
            _remove_files(st, ph, dead)

    def rename(self, data_id: str, phase: str, src: str, dst: str) -> None:
        self.rename_many(data_id, phase, [(src, dst)])

    def rename_many(self, data_id: str, phase: str, pairs: Sequence[tuple[str, str]]) -> None:
        """Rename vars as one unit: a single manifest swap (all or nothing across a crash).

        Files keep their column names; the manifest maps each var to its column. Temporaries
        of whole-var rewrites (``.sg-tmp-x``) are written with the column name ``x`` already,
        so after ``astype``/``shuffle`` the files' columns carry the vars' names.
        """
        self._check_writable()
        st = self._state()
        with st.lock:
            ph = self._phase(st, data_id, phase)
            if ph.pending or ph.dirty:
                self._flush(st, ph)
            man = ph.manifest.clone()
            touched: set[str] = set()
            for src, dst in pairs:
                vm = man.vars.get(src)
                if vm is None:
                    raise VarNotFoundError(
                        f"var {src!r} does not exist in data_id {data_id!r}, phase {phase!r} of "
                        f"{self.describe()}; vars there: {self._visible(ph)}."
                    )
                if src == dst:
                    continue
                touched.update((src, dst))
                old = man.vars.pop(dst, None)
                if old is not None:
                    for f in old.files:
                        man.files[f].columns.pop(dst, None)
                        man.files[f].values.pop(dst, None)
                    man.order.remove(src)
                else:
                    man.order[man.order.index(src)] = dst
                del man.vars[src]
                man.vars[dst] = vm
                for f in vm.files:
                    fm = man.files[f]
                    fm.columns[dst] = fm.columns.pop(src)
                    if src in fm.values:
                        fm.values[dst] = fm.values.pop(src)
            if not touched:
                return
            dead = _dead_files(man)
            _commit(st, ph, man)
            for name in touched:
                ph.layouts.pop(name, None)
                self._drop_arena(st, ph, name)
            _remove_files(st, ph, dead)

    def compact(self, data_id: str | None = None, phase: str | None = None) -> None:
        """Rewrite phases into row-aligned files whose columns carry the vars' names.

        After whole-var rewrites (``astype``, ``shuffle``), renames, deletes or many small
        flushes, a phase may hold vars in separate files or stale columns; this writes every
        group of equally long vars into shared files again (one more write of the phase), so
        ``pyarrow.dataset`` / ``pandas.read_parquet`` read the phase directory as one table.

        Parameters
        ----------
        data_id, phase
            What to compact (default: every data_id, every phase).

        Examples
        --------
        >>> import tempfile
        >>> be = ParquetBackend(output_dir=tempfile.mkdtemp() + "/s")
        >>> be.create_data_id("d")
        >>> be.append("d", "train", "x", np.arange(4)); be.flush()
        >>> be.append("d", "train", "y", np.arange(4.0)); be.flush()
        >>> phase_dir = os.path.join(be.location, "d", "train")
        >>> sorted(f.endswith(".parquet") for f in os.listdir(phase_dir))  # x and y apart
        [False, True, True]
        >>> be.compact("d", "train")
        >>> sorted(f.endswith(".parquet") for f in os.listdir(phase_dir))  # one shared file
        [False, True]
        """
        self._check_writable()
        st = self._state()
        ids = [data_id] if data_id is not None else self.data_ids()
        with st.lock:
            for did in ids:
                for p in [phase] if phase is not None else list(PHASES):
                    self._compact(st, self._phase(st, did, p))

    def _compact(self, st: _State, ph: _Phase) -> None:
        if ph.pending or ph.dirty:
            self._flush(st, ph)
        man = ph.manifest.clone()
        by_length: dict[int, list[str]] = {}
        for v in man.order:
            by_length.setdefault(ph.layout(v).length, []).append(v)
        old_files = list(man.files)
        new_man = _Manifest(list(man.order), {v: vm.clone() for v, vm in man.vars.items()}, {},
                            man.next_file)
        for vm in new_man.vars.values():
            vm.files = []
        written: list[str] = []
        try:
            for n, names in by_length.items():
                if n == 0:
                    continue
                cols = _column_names(names)
                fields = _fields(names, cols, man.vars)
                row_bytes = 0
                for v in names:
                    vm = man.vars[v]
                    lay = ph.layout(v)
                    row_bytes += (max(1, (lay.n_values * vm.row_bytes) // max(1, n)) + 8
                                  if vm.ragged else vm.row_bytes)
                pos = 0
                for sizes in _plan(n, row_bytes, st.settings):
                    rows = sum(sizes)
                    arrays = []
                    values: dict[str, list[int]] = {}
                    edges = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
                    for v in names:
                        vm = man.vars[v]
                        lay = ph.layout(v)
                        if vm.ragged:
                            part = self._read_ragged(st, ph, vm, lay, v, slice(pos, pos + rows, 1))
                            arrays.append(_ragged_to_arrow(part, vm.dtype, vm.shape))
                            values[v] = np.diff(part.offsets[edges]).astype(int).tolist()
                        else:
                            out = np.empty((rows, *vm.shape), dtype=vm.dtype)
                            _filler(st, ph, v)(pos, pos + rows, out)
                            arrays.append(_to_arrow(out, vm.dtype, vm.shape))
                    _add_file(st, ph, new_man, written, names, cols, fields, arrays, sizes,
                              values)
                    pos += rows
            _commit(st, ph, new_man)
        except BaseException:
            _unlink_all(st, ph, written)
            raise
        ph.layouts.clear()
        for v in new_man.order:
            self._drop_arena(st, ph, v)
        _remove_files(st, ph, old_files)

    def close(self) -> None:
        st = self._state(open_store=False)
        self.flush()
        with st.lock:
            _discard(st)  # flushed above: nothing pending is lost
            if os.getpid() == st.pid and not st.tx.depth:
                w = st.writer
                if w.lock is not None:
                    w.lock.release()
                w.journal = None

    # ------------------------------------------------------------------ health check, sizes
    def _var_files(self, data_id: str, phase: str,
                   var: str) -> tuple[str, list[tuple[str, _FileMeta]], _VarMeta]:
        """The phase directory, the var's committed files in row order (``(name, manifest
        entry)``) and its description, from the manifest this process reads by."""
        st = self._state()
        with st.lock:
            ph = self._phase(st, data_id, phase)
            vm = self._meta(ph, var)
            files = [(f, ph.manifest.files[f].clone()) for f in vm.files]
            return ph.path, files, vm.clone()

    @staticmethod
    def _sizes_text(sizes: list[int]) -> str:
        """Row-group sizes for a message (a long list shortened)."""
        if len(sizes) <= 6:
            return str(sizes)
        return f"[{', '.join(map(str, sizes[:3]))}, ... ({len(sizes)} groups)]"

    def check(self, data_id: str, phase: str, var: str) -> list[str]:
        """What reading the var back cannot reveal: data files the manifest lists that are
        missing or have no readable footer, and files whose row count or row groups (from the
        Parquet footer) disagree with the manifest (reads would return unset rows), or that
        lack the var's column or record another dtype for it. Rows still buffered in memory
        are not on disk and not checked.

        Examples
        --------
        >>> import tempfile
        >>> be = ParquetBackend(output_dir=tempfile.mkdtemp() + "/s")
        >>> be.create_data_id("d"); be.append("d", "train", "x", np.arange(10)); be.flush()
        >>> be.check("d", "train", "x")
        []
        >>> for f in os.listdir(os.path.join(be.location, "d", "train")):
        ...     if f.endswith(".parquet"):
        ...         os.remove(os.path.join(be.location, "d", "train", f))
        >>> be.check("d", "train", "x")[0].startswith("data file part-")
        True
        """
        try:
            folder, files, vm = self._var_files(data_id, phase, var)
        except CorruptStoreError as err:  # a damaged manifest: report, never raise
            return [f"the phase's manifest cannot be read ({err})"]
        st = self._state()
        remote = st.remote
        problems: list[str] = []
        start = 0
        footer_rows: int | None = 0
        for name, fm in files:
            rows = f"rows {start}..{start + fm.rows - 1}" if fm.rows else "no rows"
            start += fm.rows
            path = os.path.join(folder, name)
            try:
                exists = os.path.exists(path) if remote is None else remote.exists(path)
            except StoregateError as err:
                problems.append(f"data file {name} cannot be looked up ({err})")
                footer_rows = None
                continue
            if not exists:
                problems.append(f"data file {name} listed in the manifest is missing ({rows} "
                                "cannot be read)")
                footer_rows = None
                continue
            try:
                if remote is None:
                    _regular_file(path)
                    with open(path, "rb") as f:
                        head = f.read(4)
                else:
                    head = remote.get_range(path, 0, 4)
                if head != b"PAR1":  # pyarrow reads the footer only and never looks here
                    problems.append(f"data file {name} does not start with the Parquet magic "
                                    f"bytes ({head!r} instead of b'PAR1'; {rows}): it was "
                                    "overwritten or damaged")
                md = _footer(st, path)
                schema = md.schema.to_arrow_schema()
            except Exception as err:
                problems.append(f"data file {name} has no readable Parquet footer ({rows}; "
                                f"{type(err).__name__}: {err})")
                footer_rows = None
                continue
            groups = [int(md.row_group(g).num_rows) for g in range(md.num_row_groups)]
            if int(md.num_rows) != fm.rows:
                problems.append(
                    f"the manifest records {fm.rows} rows for data file {name} ({rows}) but "
                    f"its Parquet footer holds {int(md.num_rows)}")
            elif groups != fm.row_groups:
                problems.append(
                    f"the manifest's row groups of data file {name} ({rows}) differ from its "
                    f"Parquet footer: {self._sizes_text(fm.row_groups)} vs "
                    f"{self._sizes_text(groups)}")
            if footer_rows is not None:
                footer_rows += int(md.num_rows)
            column = fm.columns.get(var)
            if column is None or column not in schema.names:
                problems.append(f"data file {name} ({rows}) has no column {column!r} for the "
                                "var")
                continue
            raw = (schema.field(column).metadata or {}).get(_DTYPE_KEY)
            try:
                stored = None if raw is None else np.dtype(raw.decode())
            except (TypeError, ValueError, UnicodeDecodeError):
                stored = None
            if stored is not None and stored != vm.dtype:
                problems.append(f"data file {name} ({rows}) stores the var as {stored} but the "
                                f"manifest says {vm.dtype}")
        if footer_rows is not None and footer_rows != start:
            problems.append(f"the manifest gives the var {start} rows in all; its data files "
                            f"hold {footer_rows}")
        return problems

    def stored_bytes(self, data_id: str, phase: str, var: str) -> int | None:
        """Compressed bytes of the var's column chunks over its data files (from the Parquet
        footers), or ``None`` if a file cannot be read. Rows still buffered are not counted.

        Examples
        --------
        >>> import tempfile
        >>> be = ParquetBackend(output_dir=tempfile.mkdtemp() + "/s")
        >>> be.create_data_id("d"); be.append("d", "train", "x", np.arange(1000)); be.flush()
        >>> be.stored_bytes("d", "train", "x") > 0
        True
        """
        folder, files, _ = self._var_files(data_id, phase, var)
        st = self._state()
        total = 0
        for name, fm in files:
            column = fm.columns.get(var)
            try:
                if st.remote is None:
                    _regular_file(os.path.join(folder, name))
                md = _footer(st, os.path.join(folder, name))
            except Exception:
                return None
            for g in range(md.num_row_groups):
                rg = md.row_group(g)
                for c in range(rg.num_columns):
                    chunk = rg.column(c)
                    path = chunk.path_in_schema
                    if path == column or path.startswith(f"{column}."):
                        total += int(chunk.total_compressed_size)
        return total


class _MissingFile(Exception):
    """A data file the manifest lists is gone (internal: triggers one manifest reload)."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


def _foreign_var(fld: Any) -> tuple[_VarMeta | None, str]:
    """A var describing a column of a foreign Parquet file, or ``None`` and the reason."""
    pa, _ = _arrow()
    md = fld.metadata or {}
    try:
        check_name(fld.name, "var")
    except StoregateError:
        return None, "its name is not a valid var name"
    if fld.name.startswith("__index_level_"):
        return None, "it is a pandas index"
    t = fld.type
    if _DTYPE_KEY in md and _SHAPE_KEY in md:  # written by storegate: exact dtype and shape
        try:
            dtype = check_storable_dtype(np.dtype(md[_DTYPE_KEY].decode()))
            item = tuple(json.loads(md[_SHAPE_KEY].decode()))
            if not all(type(s) is int and 0 <= s <= _MAX_MANIFEST_COUNT for s in item) or int(
                    np.prod(item, dtype=object)) * dtype.itemsize > _MAX_ROW_BYTES:
                raise ValueError(item)
        except (ValueError, TypeError, StoregateError, RecursionError):
            return None, "its storegate metadata is damaged"
        return _VarMeta(dtype, item, bool(md.get(_RAGGED_KEY)), []), ""
    ragged = False
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        ragged = True
        t = t.value_type
    shape: list[int] = []
    depth = 0
    if isinstance(t, pa.ExtensionType):
        if t.extension_name != "arrow.fixed_shape_tensor":
            return None, f"extension type {t.extension_name} is not supported"
        perm = t.permutation
        if perm is not None and list(perm) != list(range(len(perm))):
            return None, "permuted tensors are not supported"
        shape = [int(s) for s in t.shape]
        t = t.storage_type.value_type
        depth = 1
    else:
        while pa.types.is_fixed_size_list(t):
            shape.append(int(t.list_size))
            t = t.value_type
            depth += 1
    if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)):
        return None, f"type {fld.type} is not numeric (storegate stores numbers and bools)"
    dtype = np.dtype(t.to_pandas_dtype())
    return _VarMeta(dtype, tuple(shape), ragged, [], depth), ""

