"""Parquet files to and from a StoreGate: :func:`import_parquet` and :func:`export_parquet`.

**Import.** A generic Parquet *table* becomes one var per column (the var is named after the
column): a column of numbers or bools is a var of shape ``(N,)``, a fixed-size list column
(nested to any depth) a regular var ``(N, k1, k2, ...)``, and a variable-length list column
(``list``/``large_list``, items optionally fixed-size lists) a **ragged** var whose rows have
shape ``(n_i, *k)``. Variable-length lists *inside* an item must have one length over the whole
file and become regular axes. A column of phase labels (``phase_column=``) says where each row
goes. The file is streamed record batch by record batch, so memory stays bounded. kinoml's
awkward-written files (one tuple record per item, the last field the label) are recognised and
imported as :func:`~storegate.convert.import_kinoml_parquet` does.

**Export.** One data_id, one phase or all three, to one Parquet file: a column per var (the
reverse of the import; ragged vars as ``large_list`` columns) plus, for ``phase='all'``, a string
column with each row's phase. The file carries its exact dtypes and shapes in its schema
metadata (key ``b"storegate"``), so :func:`import_parquet` restores the store exactly.
``layout='kinoml'`` writes kinoml's tuple layout instead. The file is written row group by row
group next to the destination and renamed into place at the end.

Examples
--------
>>> import os, tempfile
>>> import numpy as np
>>> from storegate import StoreGate
>>> from storegate.convert.parquet import export_parquet, import_parquet
>>> sg = StoreGate("numpy", data_id="mols")
>>> sg.add_data("atoms", [np.ones((n, 3), "f4") for n in (2, 5, 1, 4)], phase=(2, 1, 1))
>>> sg.add_data("energy", np.arange(4.0), phase=(2, 1, 1))
>>> path = os.path.join(tempfile.mkdtemp(), "mols.parquet")
>>> res = export_parquet(sg, path)
>>> res.sizes
{'train': 2, 'valid': 1, 'test': 1}
>>> import pyarrow.parquet as pq
>>> for t in pq.read_schema(path).types:
...     print(t)
large_list<element: fixed_size_list<element: float>[3]>
double
string
>>> back = StoreGate("numpy")
>>> imp = import_parquet(path, back)          # phases come back from the phase column
>>> imp.data_id, imp.sizes
('mols', {'train': 2, 'valid': 1, 'test': 1})
>>> back.get_var_shapes("atoms"), back.get_data("atoms", "valid", 0).shape
((None, 3), (1, 3))
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import (
    DataIdNotFoundError,
    DtypeError,
    InconsistentLengthError,
    InvalidArgumentError,
    InvalidNameError,
    ShapeMismatchError,
    VarNotFoundError,
)
from ..names import check_name
from ..phases import PHASES, check_phase
from ..progress import Progress, ProgressBar, progress_bar
from ..ragged import RaggedArray
from .errors import (
    MissingDependencyError,
    SourceFormatError,
    SourceNotFoundError,
    UnsupportedFieldError,
)
from .phase_plan import PhasePlan, phase_codes, plan_phases
from .results import ExportResult, ImportedVar, ImportResult
from .staging import staged
from .target import ImportTarget, float_cast

__all__ = ["META_KEY", "export_parquet", "import_parquet"]

logger = logging.getLogger(__name__)

#: Decoded bytes per record batch (import) or row group (export) when no row count is given.
BATCH_BYTES = 32 * 2**20
#: Read buffer of the Parquet reader (pages are read through it instead of whole column chunks).
_READ_BUFFER = 4 * 2**20
#: Schema metadata key under which :func:`export_parquet` records dtypes, shapes and phases.
META_KEY = b"storegate"
_META_FORMAT = 1
_LAYOUTS = ("auto", "table", "kinoml")
_KINOML_OPTIONS = ("label_name", "transpose")
_COMPRESSIONS = ("none", "uncompressed", "snappy", "gzip", "brotli", "lz4", "zstd")


# ======================================================================== the import engine
# Shared by the table layout here and the kinoml layout (storegate.convert.kinoml).
@dataclass
class _Field:
    """A source field: where it is read from, its list levels and leaf dtype, and (after the
    shape pass) how it is stored."""

    name: str
    column: str  # column path for ParquetFile.iter_batches
    levels: list[int | None]  # one entry per list level: None = variable length, k = fixed
    leaf: np.dtype
    var: str = ""
    # filled by the shape pass: lengths seen at each variable level
    first_lengths: set[int] = field(default_factory=set)
    inner: dict[int, int] = field(default_factory=dict)
    ragged: bool = False
    shape: tuple[int, ...] = ()  # dense: row shape; ragged: trailing item shape k
    # True once the first axis is known to vary (in one batch, or by a shape pass)
    sure: bool = False
    # items (k, n_i) stored as rows (n_i, k): all shape logic sees the transposed item
    transposed: bool = False
    # table layout: a variable-length first level is ragged even when its lengths agree
    force_ragged: bool = False
    # from storegate's metadata: complex numbers are stored as pairs of floats (a last
    # fixed-size level of 2), and items with a zero-size axis as a column of nulls
    complex: np.dtype | None = None
    null_shape: tuple[int, ...] | None = None
    what: str = "field"  # how messages call it: a kinoml "field", a table "column"

    @property
    def needs_scan(self) -> bool:
        if self.null_shape is not None:
            return False
        levels = self.levels[1:] if self.force_ragged else self.levels
        return self.transposed or any(level is None for level in levels)

    @property
    def dtype(self) -> np.dtype:
        """The dtype of the var before any ``dtype=`` cast."""
        return self.complex if self.complex is not None else self.leaf

    def reset(self) -> None:
        self.first_lengths = set()
        self.inner = {}


def _pyarrow() -> tuple[Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as err:
        raise MissingDependencyError(
            f"reading and writing Parquet files needs pyarrow ({err}); install it with "
            "`pip install 'storegate[parquet]'` (or `pip install pyarrow`)."
        ) from None
    return pa, pq


def _source_files(path: Any) -> list[str]:
    """The Parquet files of ``path``: a file, a directory (its ``*.parquet`` files, sorted by
    name) or a sequence of files."""
    if isinstance(path, str | os.PathLike):
        p = os.fspath(path)
        if os.path.isdir(p):
            files = sorted(
                os.path.join(p, f) for f in os.listdir(p)
                if f.endswith((".parquet", ".parq", ".pq")) and not f.startswith((".", "_"))
            )
            if not files:
                raise SourceNotFoundError(
                    f"directory {p!r} holds no Parquet files (*.parquet); give the path of a "
                    ".parquet file or of a directory that holds them.", p)
            return files
        if not os.path.exists(p):
            raise SourceNotFoundError(
                f"no such file: {p!r}; give the path of a .parquet file or of a directory of "
                "them.", p)
        return [p]
    if isinstance(path, Sequence) and not isinstance(path, bytes) and path:
        out: list[str] = []
        for p in path:
            if not isinstance(p, str | os.PathLike):
                raise InvalidArgumentError(
                    f"path must be a file, a directory or a list of files, got an entry "
                    f"{p!r} ({type(p).__name__}).")
            out.extend(_source_files(p))
        return out
    raise InvalidArgumentError(
        f"path must be a str or os.PathLike (a .parquet file or a directory) or a non-empty "
        f"list of them, got {path!r}.")


def _open(pq: Any, pa: Any, path: str, hint: str = "") -> Any:
    try:
        return pq.ParquetFile(path, pre_buffer=False, buffer_size=_READ_BUFFER)
    except (pa.ArrowException, OSError) as err:
        raise SourceFormatError(
            f"{path!r} is not a readable Parquet file ({err}){hint}.", path) from None


def _open_all(pa: Any, pq: Any, files: list[str], hint: str = "") -> list[tuple[str, Any]]:
    handles = [(f, _open(pq, pa, f, hint)) for f in files]
    first_path, first = handles[0]
    for p, pf in handles[1:]:
        if not pf.schema_arrow.equals(first.schema_arrow, check_metadata=False):
            raise SourceFormatError(
                f"{p!r} has other columns than {first_path!r} ({_describe_layout(pf)} vs "
                f"{_describe_layout(first)}); files imported together must share one layout.",
                p)
    return handles


def _describe_layout(pf: Any) -> str:
    return ", ".join(f"{f.name!r}: {f.type}" for f in pf.schema_arrow) or "no columns"


def _leaf_dtype(pa: Any, t: Any) -> np.dtype | None:
    # by bit width, not DataType.to_pandas_dtype (which imports pandas)
    if pa.types.is_boolean(t):
        return np.dtype(bool)
    kind = ("i" if pa.types.is_signed_integer(t) else "u" if pa.types.is_unsigned_integer(t)
            else "f" if pa.types.is_floating(t) else None)
    return None if kind is None else np.dtype(f"{kind}{t.bit_width // 8}")


def _is_var_list(pa: Any, t: Any) -> bool:
    return bool(pa.types.is_list(t) or pa.types.is_large_list(t) or (
        hasattr(pa.types, "is_list_view") and (pa.types.is_list_view(t)
                                               or pa.types.is_large_list_view(t))))


def _type_levels(pa: Any, typ: Any) -> tuple[list[int | None], Any]:
    """The list levels of an Arrow type (None: variable length) and its leaf type."""
    levels: list[int | None] = []
    t = typ
    while True:
        if isinstance(t, pa.ExtensionType):
            t = t.storage_type
        if _is_var_list(pa, t):
            levels.append(None)
            t = t.value_type
        elif pa.types.is_fixed_size_list(t):
            levels.append(int(t.list_size))
            t = t.value_type
        else:
            return levels, t


def _analyze(pa: Any, name: str, column: str, typ: Any, path: str, what: str = "field",
             advice: str = "") -> _Field:
    levels, t = _type_levels(pa, typ)
    leaf = _leaf_dtype(pa, t)
    if leaf is None:
        kind = ("nested records" if pa.types.is_struct(t) else
                "a union of types" if pa.types.is_union(t) else
                "strings" if pa.types.is_string(t) or pa.types.is_large_string(t) or (
                    pa.types.is_dictionary(t) and (pa.types.is_string(t.value_type)
                                                   or pa.types.is_large_string(t.value_type)))
                else "no values at all (Arrow type null: every value is missing or every "
                "list is empty, so the type is unknown)" if pa.types.is_null(t)
                else f"values of Arrow type {t}")
        raise UnsupportedFieldError(
            f"{what} {name!r} of {path!r} has type {typ} and holds {kind}; a var needs numbers "
            f"or bools (nested lists of them are fine). {advice or _advice(pa, t, what)}",
            path)
    return _Field(name, column, levels, leaf)


def _advice(pa: Any, t: Any, what: str) -> str:
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_dictionary(t):
        return (f"If the {what} holds each row's phase, pass phase_column=; otherwise encode "
                f"it as integer ids or drop the {what} before writing the file.")
    if pa.types.is_temporal(t):
        return "Store times as integers (e.g. nanoseconds since the epoch) or drop the column."
    if pa.types.is_decimal(t):
        return "Cast it to float64 (or scale it to integers) before writing the file."
    return f"Convert or drop that {what} before writing the file."


def _phase_source(pa: Any, name: str, column: str, typ: Any, path: str,
                  arg: str = "phase_field") -> _Field:
    t = typ.value_type if pa.types.is_dictionary(typ) else typ
    if not (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_integer(t)):
        raise UnsupportedFieldError(
            f"{arg} {name!r} of {path!r} has type {typ}; it must hold one label per row: "
            "a string ('train', 'valid'/'val', 'test') or an integer 0, 1, 2.", path)
    return _Field(name, column, [], np.dtype(object))


# ------------------------------------------------------------------------------- reading
def _batches(pa: Any, handles: list[tuple[str, Any]], columns: list[str],
             batch_rows: int) -> Iterator[tuple[str, int, Any]]:
    """``(file, first global row, record batch)`` over all files, pyarrow errors wrapped."""
    start = 0
    for path, pf in handles:
        it = pf.iter_batches(batch_size=batch_rows, columns=columns, use_threads=True)
        while True:
            try:
                batch = next(it)
            except StopIteration:
                break
            except (pa.ArrowException, OSError) as err:
                raise SourceFormatError(
                    f"reading {path!r} failed near row {start} ({err}); the file is damaged "
                    "or truncated.", path) from None
            if batch.num_rows:
                yield path, start, batch
                start += batch.num_rows


def _column(batch: Any, f: _Field, struct: bool) -> Any:
    if struct:
        return batch.column(0).field(f.name)
    return batch.column(f.name)


def _no_nulls(arr: Any, f: _Field, path: str) -> None:
    if arr.null_count:
        raise UnsupportedFieldError(
            f"{f.what} {f.name!r} of {path!r} holds {arr.null_count} missing values (None); "
            "numpy arrays cannot represent them. Fill or drop them before writing the file.",
            path)


def _walk(arr: Any, f: _Field, path: str) -> tuple[list[np.ndarray | None], Any]:
    """Offsets (normalised to start at 0) of every list level (None for fixed levels) and the
    flat leaf array."""
    offsets: list[np.ndarray | None] = []
    cur = arr
    for level in f.levels:
        _no_nulls(cur, f, path)
        if level is None:
            o = np.asarray(cur.offsets.to_numpy(zero_copy_only=False), dtype=np.int64)
            offsets.append(o - o[0] if not offsets else o)  # only lengths of inner levels
        elif f.transposed:
            offsets.append(np.arange(len(cur) + 1, dtype=np.int64) * level)
        else:
            offsets.append(None)
        cur = cur.flatten()
    if f.null_shape is None:  # a column of nulls stands for zero-size items
        _no_nulls(cur, f, path)
    if f.transposed:
        return _transposed_offsets(f, offsets, path), cur
    return offsets, cur


def _transposed_offsets(f: _Field, offsets: list[np.ndarray | None],
                        path: str) -> list[np.ndarray | None]:
    """Offsets of 2-D items ``(k_i, m_i)`` seen as ``(m_i, k_i)``, plus (appended) the
    per-item ``k`` and ``m`` that :func:`_transpose_values` needs."""
    o0, o1 = offsets
    assert o0 is not None and o1 is not None
    k = np.diff(o0)                      # lists per item: the axis that becomes trailing
    lengths = np.diff(o1)                # length of every list
    m = np.zeros(k.shape[0], dtype=np.int64)
    has = k > 0
    m[has] = lengths[o0[:-1][has]]
    if lengths.shape[0] and (lengths != np.repeat(m, k)).any():
        bad = int(np.repeat(np.arange(k.shape[0]), k)[np.argmax(lengths != np.repeat(m, k))])
        raise UnsupportedFieldError(
            f"item {bad} (of its batch) of field {f.name!r} in {path!r} is not a 2-D array: "
            "its lists have different lengths, so it cannot be transposed.", path)
    new0 = np.zeros(k.shape[0] + 1, dtype=np.int64)
    np.cumsum(m, out=new0[1:])
    rows = np.repeat(k, m)
    new1 = np.zeros(rows.shape[0] + 1, dtype=np.int64)
    np.cumsum(rows, out=new1[1:])
    return [new0, new1, k, m]


def _transpose_values(values: np.ndarray, k: np.ndarray, m: np.ndarray) -> np.ndarray:
    """The flat values of items ``(k_i, m_i)`` (row-major) rearranged as items ``(m_i, k_i)``,
    vectorised over the whole batch."""
    sizes = k * m
    total = int(sizes.sum())
    starts = np.zeros(sizes.shape[0], dtype=np.int64)
    np.cumsum(sizes[:-1], out=starts[1:])
    base = np.repeat(starts, sizes)
    k_e = np.repeat(k, sizes)
    local = np.arange(total, dtype=np.int64) - base
    r, c = np.divmod(local, np.maximum(k_e, 1))
    return values[base + c * np.repeat(m, sizes) + r]


def _scan(f: _Field, arr: Any, path: str, g0: int) -> None:
    """Shape pass: record the lengths of ``f``'s items in one batch, and check that only the
    first axis varies."""
    offsets, _ = _walk(arr, f, path)
    for depth, o in enumerate(offsets[: len(f.levels)]):
        if o is None:
            continue
        lengths = np.diff(o)
        if lengths.size == 0:
            continue
        lo, hi = int(lengths.min()), int(lengths.max())
        if depth == 0:
            f.first_lengths.update({lo, hi})
            continue
        seen = f.inner.setdefault(depth, lo)
        if lo != seen or hi != seen:
            other = hi if lo == seen else lo
            hint = (f" For items of shape (k, n_i) (kinoml's one-hot (53, L), an edge index "
                    f"(2, E)), pass transpose=[{f.name!r}] to store rows of shape (n_i, k)."
                    if len(f.levels) == 2 and not f.transposed and not f.force_ragged else "")
            raise UnsupportedFieldError(
                f"items of {f.what} {f.name!r} in {path!r} vary along axis {depth} (lengths "
                f"{seen} and {other}, near row {g0}); only the first axis of an item may vary "
                "(a ragged var holds rows of shape (n_i, *k) with a fixed k)." + hint, path)


def _known(f: _Field) -> bool:
    """Whether the lengths scanned so far fix every variable level of ``f`` (at least one
    item, and one element at every inner level)."""
    return (bool(f.first_lengths) or f.force_ragged) and all(
        depth in f.inner for depth, level in enumerate(f.levels)
        if depth and (level is None or f.transposed))


def _finish_shape(f: _Field) -> None:
    """Decide ragged or regular and the shapes, from the schema and the lengths scanned."""
    if f.null_shape is not None:
        f.ragged = bool(f.levels)
        f.shape = f.null_shape
        f.sure = True
        return
    dims: list[int] = []
    for depth, level in enumerate(f.levels):
        if level is not None and not f.transposed:
            dims.append(level)
        elif depth == 0:
            dims.append(next(iter(f.first_lengths))
                        if len(f.first_lengths) == 1 and not f.force_ragged else -1)
        else:
            dims.append(f.inner.get(depth, 0))  # no items reach this level: length 0
    f.ragged = bool(dims) and dims[0] == -1
    f.sure = f.sure or f.ragged
    f.shape = tuple(dims[1:]) if f.ragged else tuple(dims)
    if f.complex is not None:
        f.shape = f.shape[:-1]  # the last axis holds (real, imag)


class _Restart(Exception):
    """A field taken as regular from the first batch turned out ragged later on."""


def _decode(f: _Field, arr: Any, path: str, g0: int,
            dtype: np.dtype | None) -> np.ndarray | RaggedArray:
    """One batch of a field as a regular array ``(b, *shape)`` or a :class:`RaggedArray`.

    Raises :class:`_Restart` when a field guessed regular from the first batch has items of
    another length here."""
    n = len(arr)
    offsets, leaf = _walk(arr, f, path)
    out_dtype = dtype if dtype is not None and f.leaf.kind == "f" and f.complex is None \
        else f.leaf
    if f.null_shape is not None:
        o0 = offsets[0] if f.ragged else None
        zeros = np.zeros((n if o0 is None else int(o0[-1]), *f.shape), dtype=out_dtype)
        return zeros if o0 is None else RaggedArray(zeros, o0, validate=False)
    values = leaf.to_numpy(zero_copy_only=False)
    if f.transposed:
        k, m = offsets[2], offsets[3]
        assert k is not None and m is not None
        values = _transpose_values(values, k, m)
        offsets = offsets[:2]
    for depth, o in enumerate(offsets):
        if o is None:
            continue
        lengths = np.diff(o)
        want = -1 if f.ragged and depth == 0 else (f.shape[depth - 1] if f.ragged
                                                   else f.shape[depth])
        if want >= 0 and lengths.size and (lengths != want).any():
            if depth == 0 and not f.sure:
                raise _Restart(f.name)
            if depth > 0:
                _scan(f, arr, path, g0)  # raises, naming the axis and the lengths
            raise UnsupportedFieldError(
                f"items of {f.what} {f.name!r} in {path!r} changed shape while reading (axis "
                f"{depth} should be {want} long); the file changed during the import.", path)
    if values.dtype != out_dtype and f.complex is None:
        values = values.astype(out_dtype)
    o0 = offsets[0] if f.ragged else None
    count = n if o0 is None else int(o0[-1])
    if f.complex is not None:
        pairs = np.ascontiguousarray(values.reshape((count, *f.shape, 2)))
        values = pairs.view(f.complex).reshape((count, *f.shape))
    else:
        values = values.reshape((count, *f.shape))
    if o0 is not None:
        return RaggedArray(values, o0, validate=False)
    return values


def _rows(data: np.ndarray | RaggedArray, sel: slice | np.ndarray) -> np.ndarray | RaggedArray:
    if isinstance(data, RaggedArray):
        if isinstance(sel, slice):
            if sel.start == 0 and sel.stop == len(data):
                return data
            a, b = int(data.offsets[sel.start]), int(data.offsets[sel.stop])
            return RaggedArray(data.values[a:b], data.offsets[sel.start:sel.stop + 1] - a,
                               validate=False)
        return data.take(sel)
    return data[sel]


def _checked(batches: Iterator[tuple[str, int, Any]], f: _Field,
             struct: bool) -> Iterator[tuple[str, int, Any]]:
    for p, g0, batch in batches:
        _no_nulls(_column(batch, f, struct), f, p)
        yield p, g0, batch


def _shape_pass(pa: Any, handles: list[tuple[str, Any]], fields: list[_Field], struct: bool,
                batch_rows: int) -> None:
    """Scan the lengths of ``fields`` over the whole source (their columns only)."""
    for f in fields:
        f.reset()
    if not fields:
        return
    for p, g0, batch in _batches(pa, handles, [f.column for f in fields], batch_rows):
        for f in fields:
            _scan(f, _column(batch, f, struct), p, g0)


def _label_codes(pa: Any, arr: Any, what: str) -> np.ndarray:
    """One batch of phase labels (strings, dictionary-encoded strings or 0/1/2) as int8 codes,
    decoding each distinct label once."""
    n = len(arr)
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        arr = arr.dictionary_encode()
    if pa.types.is_dictionary(arr.type):
        idx = np.asarray(arr.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
        used = np.unique(idx)
        labels = arr.dictionary.take(pa.array(used)).to_numpy(zero_copy_only=False)
        table = np.full(len(arr.dictionary), -1, dtype=np.int8)
        table[used] = phase_codes(labels, used.shape[0], what)
        return table[idx]
    return phase_codes(arr.to_numpy(zero_copy_only=False), n, what)


def _phase_plan(pa: Any, handles: list[tuple[str, Any]], src: _Field, struct: bool,
                batch_rows: int, what: str) -> PhasePlan:
    """Read the (small) phase column first: one int8 code per row."""
    codes = [
        _label_codes(pa, _column(batch, src, struct), f"{what} of {p!r}")
        for p, _, batch in _checked(_batches(pa, handles, [src.column], batch_rows), src, struct)
    ]
    return PhasePlan(codes=np.concatenate(codes) if codes else np.zeros(0, dtype=np.int8))


def _check_batch_rows(batch_rows: Any) -> None:
    if batch_rows is not None and (
        not isinstance(batch_rows, int | np.integer) or isinstance(batch_rows, bool)
        or batch_rows < 1
    ):
        raise InvalidArgumentError(f"batch_rows must be a positive int or None, got "
                                   f"{batch_rows!r}.")


def _default_batch_rows(handles: list[tuple[str, Any]], n: int) -> int:
    nbytes = sum(pf.metadata.row_group(g).total_byte_size
                 for _, pf in handles for g in range(pf.metadata.num_row_groups))
    return int(np.clip(BATCH_BYTES // max(1, nbytes // max(n, 1)), 256, 1 << 20))


def _run_import(target: ImportTarget, storegate: Any, pa: Any, handles: list[tuple[str, Any]],
                fields: list[_Field], struct: bool, batch_rows: int, plan: PhasePlan,
                cast: np.dtype | None, do_compile: bool, bar: ProgressBar) -> None:
    """Settle the shapes, then write every batch (undone if anything fails).

    Fixed-size lists are known from the schema; a field of variable-length lists is taken as
    ragged when its first axis varies within the first batch (or always, ``force_ragged``),
    else (tentatively) as regular. If a later batch contradicts that, the vars written so far
    are deleted, one shape pass over the file settles every field, and the import starts
    again."""
    scan = [f for f in fields if f.needs_scan]
    columns = [f.column for f in fields]
    if scan:  # the first batch
        for p, g0, batch in _batches(pa, handles, [f.column for f in scan], batch_rows):
            for f in scan:
                _scan(f, _column(batch, f, struct), p, g0)
            break
    pending = [f for f in scan if not _known(f)]
    _shape_pass(pa, handles, pending, struct, batch_rows)
    for f in fields:
        _finish_shape(f)
        f.sure = f.sure or f in pending or not f.needs_scan

    with target:
        done = 0
        while True:
            try:
                for p, g0, batch in _batches(pa, handles, columns, batch_rows):
                    pieces = list(plan.pieces(g0, g0 + batch.num_rows))
                    if pieces:
                        decoded = [_decode(f, _column(batch, f, struct), p, g0, cast)
                                   for f in fields]
                        for f, data in zip(fields, decoded, strict=True):
                            for ph, sel in pieces:
                                target.add(f.var, _rows(data, sel), ph)
                    bar.update(batch.num_rows)
                    done += batch.num_rows
                break
            except _Restart:
                target.undo()
                bar.update(-done)
                done = 0
                _shape_pass(pa, handles, scan, struct, batch_rows)
                for f in fields:
                    _finish_shape(f)
                    f.sure = True
        if do_compile:
            storegate.compile()


def _imported(fields: list[_Field], cast: np.dtype | None) -> tuple[ImportedVar, ...]:
    return tuple(
        ImportedVar(
            name=f.var, field=f.name, ragged=f.ragged,
            shape=(None, *f.shape) if f.ragged else f.shape,
            dtype=cast if cast is not None and f.dtype.kind == "f" else f.dtype,
            source_dtype=f.dtype, transposed=f.transposed,
        )
        for f in fields
    )


# ======================================================================== table layout
@dataclass(frozen=True)
class _MetaVar:
    name: str
    dtype: np.dtype
    shape: tuple[int, ...]  # per-row shape; for a ragged var the item shape k
    ragged: bool


@dataclass(frozen=True)
class _Meta:
    """storegate's schema metadata (written by :func:`export_parquet`)."""

    data_id: str | None
    phase_column: str | None
    vars: dict[str, _MetaVar]


def _read_meta(schema: Any, path: str) -> _Meta | None:
    raw = (schema.metadata or {}).get(META_KEY)
    if raw is None:
        return None
    try:
        doc = json.loads(raw)
        fmt = doc["format"]
        if fmt != _META_FORMAT:
            logger.warning("%s: storegate metadata format %r is not %d (written by another "
                           "version); importing from the Arrow types alone", path, fmt,
                           _META_FORMAT)
            return None
        pc = doc.get("phase_column")
        did = doc.get("data_id")
        mvars = {}
        for v in doc["vars"]:
            shape = tuple(int(k) for k in v["shape"] if k is not None)
            mvars[str(v["name"])] = _MetaVar(str(v["name"]), np.dtype(v["dtype"]), shape,
                                            bool(v["ragged"]))
        return _Meta(str(did) if did is not None else None,
                     str(pc) if pc is not None else None, mvars)
    except (ValueError, TypeError, KeyError, AttributeError) as err:
        logger.warning("%s: unreadable storegate metadata (%s); importing from the Arrow "
                       "types alone", path, err)
        return None


def _fits(pa: Any, typ: Any, mv: _MetaVar) -> bool:
    """Whether an Arrow column type is what :func:`export_parquet` writes for ``mv``."""
    levels, leaf = _type_levels(pa, typ)
    if mv.ragged:
        if not levels or levels[0] is not None:
            return False
        levels = levels[1:]
    if any(k == 0 for k in mv.shape):
        return bool(pa.types.is_null(leaf)) and not levels
    want: list[int | None] = list(mv.shape)
    dt = _leaf_dtype(pa, leaf)
    if mv.dtype.kind == "c":
        want.append(2)
        return dt is not None and dt.kind == "f" and dt.itemsize * 2 == mv.dtype.itemsize \
            and levels == want
    return dt == mv.dtype and levels == want


def _pandas_index(schema: Any) -> list[str]:
    raw = (schema.metadata or {}).get(b"pandas")
    if raw is None:
        return []
    try:
        cols = json.loads(raw).get("index_columns", [])
    except (ValueError, AttributeError):
        return []
    return [c for c in cols if isinstance(c, str)]


def _table_fields(pa: Any, schema: Any, path: str, phase_column: str | None,
                  meta: _Meta | None) -> tuple[list[_Field], _Field | None]:
    names = list(schema.names)
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise SourceFormatError(
            f"{path!r} has several columns named {dups[0]!r}; column names must be unique to "
            "become var names.", path)
    if phase_column is not None and phase_column not in names:
        raise InvalidArgumentError(
            f"phase_column {phase_column!r} is not a column of {path!r}; its columns are "
            f"{names}.")
    index = set(_pandas_index(schema))
    skip_phase = meta.phase_column if meta is not None else None
    fields: list[_Field] = []
    phase_src: _Field | None = None
    for fld in schema:
        if fld.name == phase_column:
            phase_src = _phase_source(pa, fld.name, fld.name, fld.type, path, "phase_column")
            continue
        if fld.name == skip_phase:
            continue
        if fld.name in index:
            logger.info("%s: skipping column %r (the pandas index)", path, fld.name)
            continue
        mv = meta.vars.get(fld.name) if meta is not None else None
        levels, _ = _type_levels(pa, fld.type)
        if mv is not None and any(k == 0 for k in mv.shape):
            f = _Field(fld.name, fld.name, levels, mv.dtype, null_shape=mv.shape)
        else:
            f = _analyze(pa, fld.name, fld.name, fld.type, path, "column")
            if mv is not None and mv.dtype.kind == "c":
                f.complex = mv.dtype
        f.force_ragged = bool(levels) and levels[0] is None
        f.what = "column"
        fields.append(f)
    return fields, phase_src


def _check_null_stats(handles: list[tuple[str, Any]], fields: list[_Field]) -> None:
    """Refuse missing values that the row groups' statistics reveal, before any data is read
    (flat columns only; nested ones are checked batch by batch)."""
    flat = {f.column: f for f in fields if not f.levels and f.null_shape is None}
    if not flat:
        return
    for path, pf in handles:
        md = pf.metadata
        for g in range(md.num_row_groups):
            rg = md.row_group(g)
            for j in range(rg.num_columns):
                col = rg.column(j)
                f = flat.get(col.path_in_schema)
                stats = col.statistics
                if f is None or stats is None or not stats.has_null_count:
                    continue
                if stats.null_count:
                    raise UnsupportedFieldError(
                        f"column {f.name!r} of {path!r} holds {stats.null_count} missing "
                        f"values (None/NaN-as-null) in row group {g}; numpy arrays cannot "
                        "represent them. Fill or drop them before writing the file (pandas: "
                        "df.fillna / df.dropna).", path)


def _table_var_names(fields: list[_Field], var_names: Any, path: str) -> None:
    columns = [f.name for f in fields]
    if var_names is None:
        names = list(columns)
    elif isinstance(var_names, Mapping):
        unknown = [k for k in var_names if k not in columns]
        if unknown:
            raise InvalidArgumentError(
                f"var_names maps columns {unknown} that are not imported columns of {path!r}; "
                f"its columns are {columns}.")
        names = [var_names.get(c, c) for c in columns]
    elif isinstance(var_names, Sequence) and not isinstance(var_names, str | bytes):
        names = list(var_names)
        if len(names) != len(columns):
            raise InvalidArgumentError(
                f"var_names has {len(names)} names but {path!r} has {len(columns)} columns to "
                f"import ({columns}); give one name per column or a mapping {{column: name}}.")
    else:
        raise InvalidArgumentError(
            f"var_names must be None, a list with one name per column or a mapping "
            f"{{column: name}}, got {var_names!r}.")
    seen: set[str] = set()
    for f, name in zip(fields, names, strict=True):
        if not isinstance(name, str):
            raise InvalidNameError(f"var name for column {f.name!r} must be a str, got "
                                   f"{name!r}.")
        try:
            f.var = check_name(name)
        except InvalidNameError as err:
            raise InvalidNameError(
                f"column {f.name!r} of {path!r} cannot be a var name ({err}); rename it with "
                f"var_names={{{f.name!r}: 'new_name'}}.") from None
        if f.var in seen:
            raise InvalidNameError(
                f"var name {f.var!r} is used twice; give every column its own name with "
                "var_names.")
        seen.add(f.var)


def _is_kinoml_schema(pa: Any, schema: Any) -> bool:
    """One struct column named "" whose fields are "0", "1", ... (ak.zip of a list)."""
    if len(schema) != 1:
        return False
    top = schema.field(0)
    if top.name != "" or not pa.types.is_struct(top.type) or top.type.num_fields < 1:
        return False
    return all(top.type.field(i).name == str(i) for i in range(top.type.num_fields))


def import_parquet(
    path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    storegate: Any,
    data_id: str | None = None,
    *,
    layout: str = "auto",
    var_names: Sequence[str] | Mapping[str, str] | None = None,
    phase: Any = None,
    phase_column: str | None = None,
    dtype: Any = None,
    batch_rows: int | None = None,
    do_compile: bool = True,
    progress: Progress = None,
    **kinoml_options: Any,
) -> ImportResult:
    """Import a Parquet file (or several) into a StoreGate, one var per column.

    Parameters
    ----------
    path
        A ``.parquet`` file, a directory of them (read in name order, as one dataset) or a
        list of files. Files read together must have the same columns.
    storegate
        The :class:`~storegate.StoreGate` to write into (any backend).
    data_id
        The data_id to write to; it becomes the gate's current data_id (created if needed).
        ``None``: the gate's current data_id; if the gate has none, the data_id recorded by
        :func:`export_parquet` in the file.
    layout
        ``'table'``: a var per column. ``'kinoml'``: kinoml's tuple records, as
        :func:`~storegate.convert.import_kinoml_parquet` (then ``var_names``, ``phase``,
        ``dtype``, ``batch_rows`` and ``do_compile`` mean what they mean there,
        ``phase_column`` is its ``phase_field``, and ``label_name=`` / ``transpose=`` may be
        given). ``'auto'`` (default): ``'table'`` for files written by :func:`export_parquet`,
        ``'kinoml'`` for a single struct column named ``""`` with fields ``"0".."n"``,
        ``'table'`` otherwise.
    var_names
        Var names: a list with one name per imported column, or a mapping
        ``{column: var name}`` (unmapped columns keep their names). Default: the column names.
    phase
        Where rows go: ``None`` (all to ``'train'``), a phase name, fractions
        ``(0.8, 0.1, 0.1)`` or counts (consecutive rows, cut as ``add_data`` cuts them), one
        label per row, or a mapping ``{'train': idx, 'valid': idx, 'test': idx}`` of row
        indices or masks (rows in none are skipped). Rows keep the file order.
    phase_column
        A column holding each row's phase: strings ``'train'``, ``'valid'``/``'val'``,
        ``'test'`` (plain or dictionary-encoded) or integers 0, 1, 2. It is not imported as a
        var. Give ``phase`` or ``phase_column``, not both. Files written by
        :func:`export_parquet` name their phase column in their metadata; it is used when
        neither is given.
    dtype
        Cast every floating-point column to this float dtype (e.g. ``'float32'``); integer,
        bool and complex vars keep theirs. ``None`` keeps the file's dtypes.
    batch_rows
        Rows decoded at a time (bounds memory). ``None``: about 32 MiB of data per batch,
        estimated from the file's metadata.
    do_compile
        Compile the data_id afterwards.
    progress
        ``None``/``False``, ``True`` (a tqdm bar) or a tqdm-like factory; counts rows read.
    **kinoml_options
        ``label_name`` and ``transpose`` of :func:`~storegate.convert.import_kinoml_parquet`;
        only with the kinoml layout.

    Returns
    -------
    ImportResult
        The data_id, the files, each var written (name, source column, ragged, per-row
        shape, dtype) and the rows per phase (a
        :class:`~storegate.convert.KinomlImport` for the kinoml layout).

    Raises
    ------
    SourceNotFoundError
        ``path`` does not exist (a ``FileNotFoundError``).
    SourceFormatError
        Not a Parquet file, a damaged or truncated file, no rows, duplicate column names,
        or files whose columns disagree (a ``ValueError``).
    UnsupportedFieldError
        A column of strings, binary, timestamps, decimals, records (other than kinoml's
        tuple), maps or unions, with missing values, or whose items vary beyond their first
        axis (a ``TypeError`` and ``ValueError``).
    VarExistsError, InconsistentLengthError
        A var of the same name exists in the data_id, or a phase there holds another number
        of rows.
    InvalidPhaseError, InvalidArgumentError, InvalidNameError, MissingDependencyError
        Bad ``phase``/``phase_column`` or labels, bad arguments, a column name that is not a
        valid var name (rename it with ``var_names``), pyarrow not installed.

    Notes
    -----
    Column types: numbers and bools (``bool``, ``int8``..``uint64``, ``float16/32/64``) keep
    their dtype. ``fixed_size_list`` columns become regular axes. A ``list``/``large_list``
    column is always ragged (even if every row has the same length); lists nested *inside* it
    must have one length over the file and become regular axes. The pandas index column
    (``__index_level_0__`` or a named index recorded in pandas' metadata) is skipped.

    The schema (types, names, the phase column) and missing values recorded in the row-group
    statistics of flat columns are checked before anything is written; problems found while
    reading (missing values in nested columns, an inner axis whose length changes, a damaged
    page) and failed writes delete what the import wrote, so the store is left as it was.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np, pyarrow as pa, pyarrow.parquet as pq
    >>> from storegate import StoreGate
    >>> path = os.path.join(tempfile.mkdtemp(), "table.parquet")
    >>> pq.write_table(pa.table({
    ...     "hits": pa.array([[1.0, 2.0], [3.0], [4.0, 5.0, 6.0]]),     # ragged
    ...     "xy": pa.array([[0, 1], [2, 3], [4, 5]], pa.list_(pa.int32(), 2)),
    ...     "split": ["train", "test", "train"],
    ... }), path)
    >>> sg = StoreGate("numpy", data_id="d")
    >>> res = import_parquet(path, sg, phase_column="split")
    >>> [(v.name, v.ragged, v.shape, str(v.dtype)) for v in res.vars]
    [('hits', True, (None,), 'float64'), ('xy', False, (2,), 'int32')]
    >>> res.sizes
    {'train': 2, 'valid': 0, 'test': 1}
    >>> sg.get_data("xy", "train")
    array([[0, 1],
           [4, 5]], dtype=int32)
    """
    if layout not in _LAYOUTS:
        raise InvalidArgumentError(
            f"layout={layout!r} is not one of {list(_LAYOUTS)}; 'table' imports a var per "
            "column, 'kinoml' kinoml's tuple records, 'auto' picks one from the file.")
    unknown = sorted(set(kinoml_options) - set(_KINOML_OPTIONS))
    if unknown:
        raise InvalidArgumentError(
            f"import_parquet got unexpected keyword arguments {unknown}; the kinoml layout "
            f"also takes {list(_KINOML_OPTIONS)}.")
    if kinoml_options and layout == "table":
        raise InvalidArgumentError(
            f"{sorted(kinoml_options)} only apply to layout='kinoml' (kinoml's tuple records); "
            "the table layout imports every column as a var and has no label.")
    cast = float_cast(dtype)
    _check_batch_rows(batch_rows)
    if phase_column is not None and phase is not None:
        raise InvalidArgumentError(
            "give either phase= or phase_column=, not both (phase_column reads each row's "
            "phase from the file).")
    if phase_column is not None and not isinstance(phase_column, str):
        raise InvalidArgumentError(f"phase_column must be a column name (str) or None, got "
                                   f"{phase_column!r}.")

    files = _source_files(path)
    pa, pq = _pyarrow()
    handles = _open_all(pa, pq, files)
    first_path, first = handles[0]
    schema = first.schema_arrow
    meta = _read_meta(schema, first_path)
    if layout == "auto":
        layout = "kinoml" if meta is None and _is_kinoml_schema(pa, schema) else "table"
        logger.debug("%s: importing with layout=%r", first_path, layout)
    if layout == "kinoml":
        from .kinoml import _import_kinoml

        return _import_kinoml(
            files, storegate, data_id, var_names=var_names, phase=phase, dtype=dtype,
            batch_rows=batch_rows, phase_field=phase_column, do_compile=do_compile,
            progress=progress, handles=handles, **kinoml_options)
    if kinoml_options:
        raise InvalidArgumentError(
            f"{sorted(kinoml_options)} only apply to kinoml's tuple records, but {first_path!r} "
            "is a table (a var per column, no label); drop them or pass layout='kinoml'.")
    if meta is None and _is_kinoml_schema(pa, schema):
        raise UnsupportedFieldError(
            f"{first_path!r} holds kinoml's tuple records (one struct column \"\" with fields "
            f"'0'..'n'), not a table; import it with layout='kinoml' (or 'auto').", first_path)

    if meta is not None:
        bad = [f.name for f in schema if f.name in meta.vars
               and not _fits(pa, f.type, meta.vars[f.name])]
        if meta.phase_column is not None and meta.phase_column not in schema.names:
            bad.append(meta.phase_column)
        if bad:
            logger.warning("%s: columns %s do not match the storegate metadata (the file was "
                           "changed after export?); importing from the Arrow types alone",
                           first_path, bad)
            meta = None
    if meta is not None and phase is None and phase_column is None:
        phase_column = meta.phase_column
    dest = data_id
    if dest is None and meta is not None and getattr(storegate, "data_id", 0) is None:
        dest = meta.data_id
    target = ImportTarget(storegate, dest)

    fields, phase_src = _table_fields(pa, schema, first_path, phase_column, meta)
    if not fields:
        raise SourceFormatError(
            f"{first_path!r} has no columns to import ({_describe_layout(first)}).", first_path)
    _table_var_names(fields, var_names, first_path)
    n = sum(pf.metadata.num_rows for _, pf in handles)
    if n == 0:
        raise SourceFormatError(f"{first_path!r} holds no rows; there is nothing to import.",
                                first_path)
    _check_null_stats(handles, fields)
    rows = int(batch_rows) if batch_rows is not None else _default_batch_rows(handles, n)
    if phase_src is not None:
        plan = _phase_plan(pa, handles, phase_src, False, rows,
                           f"phase_column {phase_column!r}")
    else:
        plan = plan_phases(phase, n)
    sizes = plan.sizes()
    target.check_new([f.var for f in fields], sizes)

    with progress_bar(progress, total=n, unit="rows",
                      desc=f"import {os.path.basename(first_path)}") as bar:
        _run_import(target, storegate, pa, handles, fields, False, rows, plan, cast,
                    do_compile, bar)
    logger.info("imported %d rows of %d columns from %s into data_id %r", sum(sizes.values()),
                len(fields), first_path, target.data_id)
    return ImportResult(target.data_id, tuple(files), _imported(fields, cast), sizes,
                        n - sum(sizes.values()))


# ======================================================================== export
@dataclass(frozen=True)
class _OutVar:
    name: str
    dtype: np.dtype
    shape: tuple[int, ...]  # per-row shape; for a ragged var the item shape k
    ragged: bool

    @property
    def row_bytes(self) -> int:
        return int(self.dtype.itemsize * int(np.prod(self.shape, dtype=np.int64)))


def _leaf_type(pa: Any, dtype: np.dtype) -> Any:
    if dtype.kind == "b":
        return pa.bool_()
    if dtype.kind in "iuf" and dtype.itemsize in ((1, 2, 4, 8) if dtype.kind != "f"
                                                  else (2, 4, 8)):
        return pa.from_numpy_dtype(dtype.newbyteorder("="))
    if dtype.kind == "c" and dtype.itemsize in (8, 16):
        return pa.list_(pa.from_numpy_dtype(np.dtype(f"f{dtype.itemsize // 2}")), 2)
    raise DtypeError(
        f"dtype {dtype} has no Parquet column type here; vars of bool, int8..int64, "
        "uint8..uint64, float16/32/64 and complex64/128 can be exported.")


def _item_type(pa: Any, dtype: np.dtype, shape: tuple[int, ...]) -> Any:
    if any(k == 0 for k in shape):
        return pa.null()  # zero-size items: no values (shape and dtype are in the metadata)
    t = _leaf_type(pa, dtype)
    for k in reversed(shape):
        t = pa.list_(t, int(k))
    return t


def _column_type(pa: Any, v: _OutVar) -> Any:
    item = _item_type(pa, v.dtype, v.shape)
    return pa.large_list(item) if v.ragged else item


def _flat_arrow(pa: Any, flat: np.ndarray) -> Any:
    """A 1-D native numpy array as an Arrow array over its memory (bools bit-packed); built
    from buffers, because ``pyarrow.array`` imports pandas."""
    n = int(flat.shape[0])
    if flat.dtype.kind == "b":
        bits = np.packbits(flat.view(np.uint8), bitorder="little")
        return pa.Array.from_buffers(pa.bool_(), n, [None, pa.py_buffer(bits)])
    return pa.Array.from_buffers(pa.from_numpy_dtype(flat.dtype), n,
                                 [None, pa.py_buffer(np.ascontiguousarray(flat))])


def _values_arrow(pa: Any, values: np.ndarray, v: _OutVar) -> Any:
    """Items ``(count, *shape)`` as nested fixed-size lists over one flat buffer."""
    count = int(values.shape[0])
    if any(k == 0 for k in v.shape):
        return pa.nulls(count)
    flat = np.ascontiguousarray(values, dtype=v.dtype.newbyteorder("="))
    dims = list(v.shape)
    if v.dtype.kind == "c":
        flat = flat.view(np.dtype(f"f{v.dtype.itemsize // 2}"))
        dims.append(2)
    arr = _flat_arrow(pa, flat.reshape(-1))
    for k in reversed(dims):
        arr = pa.FixedSizeListArray.from_arrays(arr, int(k))
    return arr


def _to_arrow(pa: Any, data: Any, v: _OutVar) -> Any:
    if v.ragged:
        offsets = _flat_arrow(pa, np.ascontiguousarray(data.offsets, dtype=np.int64))
        return pa.LargeListArray.from_arrays(offsets, _values_arrow(pa, data.values, v))
    return _values_arrow(pa, np.asarray(data), v)


def _string_column(pa: Any, text: str, n: int) -> Any:
    """``n`` copies of ``text`` as an Arrow string array (no pandas, no Python loop)."""
    raw = text.encode()
    offsets = np.arange(n + 1, dtype=np.int32) * len(raw)
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets),
                                                  pa.py_buffer(raw * n)])


def _export_vars(pa: Any, db: Any, data_id: str, phases: list[str], var_names: Any,
                 all_phases: bool) -> tuple[list[_OutVar], dict[str, int]]:
    """The vars to export (checked to agree over the phases) and the rows of each phase."""
    present = {ph: db.var_names(data_id, ph) for ph in phases}
    sizes: dict[str, int] = {}
    for ph in phases:
        lengths = {v: db.info(data_id, ph, v).length for v in present[ph]}
        sizes[ph] = next(iter(lengths.values())) if lengths else 0
    if isinstance(var_names, str):
        var_names = [var_names]
    relevant = [ph for ph in phases if sizes[ph]] or [ph for ph in phases if present[ph]]
    if var_names is None:
        names: list[str] = []
        for ph in relevant:
            names.extend(v for v in present[ph] if v not in names)
        if not names:
            raise InvalidArgumentError(
                f"data_id {data_id!r} holds no vars in phase(s) {phases}; there is nothing to "
                "export.")
        for v in names:
            missing = [ph for ph in relevant if v not in present[ph]]
            if missing:
                common = [w for w in names if all(w in present[ph] for ph in relevant)]
                raise InvalidArgumentError(
                    f"var {v!r} of data_id {data_id!r} is missing from phase(s) {missing}, so "
                    f"one table cannot hold every phase; pass var_names= with vars every "
                    f"non-empty phase has ({common}), or export one phase at a time "
                    "(phase='train', ...).")
    elif isinstance(var_names, Sequence) and not isinstance(var_names, bytes) and all(
            isinstance(v, str) for v in var_names):
        names = list(var_names)
        if not names:
            raise InvalidArgumentError("var_names is empty; name at least one var.")
        dup = [v for v in names if names.count(v) > 1]
        if dup:
            raise InvalidArgumentError(f"var_names names {dup[0]!r} twice.")
        for v in names:
            missing = [ph for ph in relevant or phases if v not in present[ph]]
            if missing:
                raise VarNotFoundError(
                    f"var {v!r} does not exist in data_id {data_id!r}, phase {missing[0]!r}; "
                    f"vars there: {present[missing[0]]}"
                    + (" (with phase='all' a var must exist in every non-empty phase)."
                       if all_phases else "."))
    else:
        raise InvalidArgumentError(
            f"var_names must be None, a var name or a list of var names, got {var_names!r}.")

    out: list[_OutVar] = []
    for v in names:
        infos = {ph: db.info(data_id, ph, v) for ph in phases if v in present[ph]}
        first_ph, info = next(iter(infos.items()))
        for ph, other in infos.items():
            if other.dtype != info.dtype:
                raise DtypeError(
                    f"var {v!r} has dtype {info.dtype} in phase {first_ph!r} but {other.dtype} "
                    f"in {ph!r}; one column needs one dtype. Cast one (sg.astype) or export "
                    "the phases separately.")
            if other.ragged != info.ragged or other.row_shape != info.row_shape:
                raise ShapeMismatchError(
                    f"var {v!r} has rows of shape {_shape_text(info)} in phase {first_ph!r} "
                    f"but {_shape_text(other)} in {ph!r}; export the phases separately.")
        for ph in phases:
            if v in present[ph] and infos[ph].length != sizes[ph]:
                raise InconsistentLengthError(
                    f"phase {ph!r} of data_id {data_id!r} holds vars of different lengths "
                    f"({present[ph][0]}={sizes[ph]}, {v}={infos[ph].length}); compile or fix "
                    "the store before exporting.")
        _leaf_type(pa, info.dtype)  # refuse dtypes without a column type
        out.append(_OutVar(v, info.dtype.newbyteorder("="), tuple(info.row_shape),
                           bool(info.ragged)))
    return out, sizes


def _shape_text(info: Any) -> str:
    return str((None, *info.row_shape) if info.ragged else tuple(info.row_shape))


def _block_rows(db: Any, data_id: str, phases: list[str], out: list[_OutVar],
                sizes: dict[str, int]) -> int:
    row_bytes = 0
    for v in out:
        if not v.ragged:
            row_bytes += v.row_bytes
            continue
        items, rows = 0, 0
        for ph in phases:
            if sizes[ph]:
                info = db.info(data_id, ph, v.name)
                # a plugin that does not count its items: assume 64 per row
                items += int(info.extra.get("n_values", 64 * info.length))
                rows += info.length
        row_bytes += 8 + v.row_bytes * items // max(rows, 1)
    return int(np.clip(BATCH_BYTES // max(row_bytes, 1), 1, 1 << 20))


def _blocks(phases: list[str], sizes: dict[str, int],
            rows: int) -> Iterator[tuple[str, int, int]]:
    for ph in phases:
        for a in range(0, sizes[ph], rows):
            yield ph, a, min(sizes[ph], a + rows)


def _meta_json(data_id: str, phase_column: str | None, out: list[_OutVar],
               sizes: dict[str, int]) -> bytes:
    doc = {
        "format": _META_FORMAT,
        "data_id": data_id,
        "phase_column": phase_column,
        "vars": [{"name": v.name, "dtype": v.dtype.name,
                  "shape": [None, *v.shape] if v.ragged else list(v.shape),
                  "ragged": v.ragged} for v in out],
        "sizes": sizes,
    }
    return json.dumps(doc).encode()


def _write_table(pa: Any, pq: Any, db: Any, data_id: str, tmp: str, out: list[_OutVar],
                 phases: list[str], sizes: dict[str, int], phase_column: str | None,
                 compression: str | None, rows: int, bar: ProgressBar) -> None:
    fields = [pa.field(v.name, _column_type(pa, v)) for v in out]
    if phase_column is not None:
        fields.append(pa.field(phase_column, pa.string()))
    schema = pa.schema(fields, metadata={META_KEY: _meta_json(data_id, phase_column, out,
                                                               sizes)})
    writer = pq.ParquetWriter(tmp, schema, compression=compression or "none")
    try:
        for ph, a, b in _blocks(phases, sizes, rows):
            data = db.read_many(data_id, ph, [v.name for v in out], slice(a, b, 1))
            arrays = [_to_arrow(pa, d, v) for d, v in zip(data, out, strict=True)]
            if phase_column is not None:
                arrays.append(_string_column(pa, ph, b - a))
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema),
                               row_group_size=b - a)
            bar.update(b - a)
    finally:
        writer.close()


def _awkward() -> Any:
    try:
        import awkward as ak
    except ImportError as err:
        raise MissingDependencyError(
            f"layout='kinoml' writes with awkward ({err}); install it with "
            "`pip install 'storegate[parquet]'` (or `pip install awkward`).") from None
    return ak


def _ak_lists(ak: Any, content: Any, count: int, dims: Sequence[int]) -> Any:
    """Wrap ``content`` (``count * prod(dims)`` items) in one variable-length list level per
    dim, innermost first, as ``ak.from_iter`` nests lists."""
    sizes = [count * int(np.prod(dims[:i], dtype=np.int64)) for i in range(len(dims))]
    for k, outer in zip(reversed(dims), reversed(sizes), strict=True):
        offsets = np.arange(outer + 1, dtype=np.int64) * int(k)
        content = ak.contents.ListOffsetArray(ak.index.Index64(offsets), content)
    return content


def _ak_content(ak: Any, data: Any, v: _OutVar, label: bool) -> Any:
    """One block of a var as kinoml's writer lays it out: features through ``ak.from_iter``
    (every axis a variable-length list), the label through ``ak.from_numpy``."""
    if v.ragged:
        values = np.ascontiguousarray(data.values, dtype=v.dtype)
        leaf = ak.contents.NumpyArray(values.reshape(-1))
        inner = _ak_lists(ak, leaf, int(values.shape[0]), v.shape)
        offsets = np.ascontiguousarray(data.offsets, dtype=np.int64)
        return ak.contents.ListOffsetArray(ak.index.Index64(offsets), inner)
    values = np.ascontiguousarray(data, dtype=v.dtype)
    if label:
        return ak.from_numpy(values, highlevel=False)
    leaf = ak.contents.NumpyArray(values.reshape(-1))
    return _ak_lists(ak, leaf, int(values.shape[0]), v.shape)


def _write_kinoml(pa: Any, db: Any, data_id: str, tmp: str, out: list[_OutVar],
                  phases: list[str], sizes: dict[str, int], compression: str | None,
                  rows: int, bar: ProgressBar) -> None:
    ak = _awkward()
    last = len(out) - 1

    def empty(v: _OutVar) -> Any:
        values = np.zeros((0, *v.shape), dtype=v.dtype)
        return RaggedArray(values, np.zeros(1, dtype=np.int64)) if v.ragged else values

    def arrays() -> Iterator[Any]:
        wrote = False
        for ph, a, b in _blocks(phases, sizes, rows):
            data = db.read_many(data_id, ph, [v.name for v in out], slice(a, b, 1))
            contents = [_ak_content(ak, d, v, i == last)
                        for i, (d, v) in enumerate(zip(data, out, strict=True))]
            yield ak.Array(ak.contents.RecordArray(contents, None, length=b - a))
            wrote = True
            bar.update(b - a)
        if not wrote:
            contents = [_ak_content(ak, empty(v), v, i == last) for i, v in enumerate(out)]
            yield ak.Array(ak.contents.RecordArray(contents, None, length=0))

    ak.to_parquet_row_groups(arrays(), tmp, compression=compression or "none")


def export_parquet(
    storegate: Any,
    path: str | os.PathLike[str],
    data_id: str | None = None,
    phase: str | None = "all",
    *,
    var_names: str | Sequence[str] | None = None,
    layout: str = "table",
    phase_column: str | None = "phase",
    overwrite: bool = False,
    compression: str | None = "zstd",
    row_group_rows: int | None = None,
    progress: Progress = None,
) -> ExportResult:
    """Write one data_id of a StoreGate to a Parquet file, a column per var.

    Parameters
    ----------
    storegate
        The :class:`~storegate.StoreGate` to read (any backend; it is not changed).
    path
        The ``.parquet`` file to write (its directory is created if missing).
    data_id
        The data_id to export. ``None``: the gate's current data_id.
    phase
        ``'all'`` (default): the rows of ``train``, ``valid`` and ``test``, in that order, plus
        the column ``phase_column`` naming each row's phase. ``'train'``, ``'valid'`` or
        ``'test'``: that phase's rows only (no phase column).
    var_names
        The vars to write, in this column order. ``None``: every var of the phase(s), in store
        order. With ``phase='all'`` each var must exist in every non-empty phase.
    layout
        ``'table'``: a column per var; a regular var ``(N,)`` is a column of numbers,
        ``(N, k1, k2, ...)`` nested ``fixed_size_list``, a ragged var a ``large_list`` of them.
        ``'kinoml'``: kinoml's layout (one struct column ``""`` with fields ``"0".."n"``, the
        last var is the label), written with awkward exactly as kinoml writes its datasets.
    phase_column
        Name of the phase column (strings ``'train'``/``'valid'``/``'test'``) written with
        ``phase='all'``; ``None`` writes none. Ignored for a single phase and for the kinoml
        layout (kinoml's files have no phase field).
    overwrite
        Replace an existing file. Without it an existing ``path`` raises
        :class:`~storegate.convert.DestinationExistsError` before anything is written.
    compression
        Parquet codec: ``'zstd'`` (default), ``'snappy'``, ``'lz4'``, ``'gzip'``, ``'brotli'``
        or ``None``/``'none'``.
    row_group_rows
        Rows per row group, read from the store one block at a time (bounds memory).
        ``None``: about 32 MiB of data per row group.
    progress
        ``None``/``False``, ``True`` (a tqdm bar) or a tqdm-like factory; counts rows written.

    Returns
    -------
    ExportResult
        The path written, the data_id, the phases whose rows were written (file order; a
        single ``phase`` is listed even when empty), the var names (column order) and the rows
        of each requested phase.

    Raises
    ------
    DestinationExistsError
        ``path`` exists and ``overwrite`` is false (a ``FileExistsError``).
    DataIdNotFoundError, VarNotFoundError
        The data_id or a named var does not exist.
    InvalidArgumentError
        Bad arguments, a var missing from some non-empty phase with ``phase='all'``, a phase
        column named like a var, fewer than two vars for the kinoml layout.
    DtypeError, ShapeMismatchError, InconsistentLengthError
        A var whose dtype or row shape differs between phases, a dtype without a Parquet
        type, vars of one phase with different lengths.
    MissingDependencyError
        pyarrow (or, for the kinoml layout, awkward) is not installed.

    Notes
    -----
    The table layout records every var's dtype, per-row shape and raggedness, the data_id and
    the phase column in the schema metadata under ``b"storegate"`` (JSON), so
    :func:`import_parquet` restores them exactly: complex vars (written as pairs of floats,
    a last ``fixed_size_list`` of 2) and vars whose rows have a zero-size axis (written as a
    column of nulls) come back too. Other readers see plain Arrow types.

    The file is written to a temporary file next to ``path`` and renamed at the end: a
    failure leaves no file (and an existing file intact).

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np, pyarrow.parquet as pq
    >>> from storegate import StoreGate
    >>> sg = StoreGate("numpy", data_id="d")
    >>> sg.add_data("x", np.arange(12, dtype="f4").reshape(4, 3), phase=(3, 1, 0))
    >>> sg.add_data("y", np.array([0, 1, 1, 0], dtype="i1"), phase=(3, 1, 0))
    >>> path = os.path.join(tempfile.mkdtemp(), "d.parquet")
    >>> res = export_parquet(sg, path)
    >>> res.phases, res.sizes, res.var_names
    (('train', 'valid'), {'train': 3, 'valid': 1, 'test': 0}, ('x', 'y'))
    >>> table = pq.read_table(path)
    >>> [str(t) for t in table.schema.types]
    ['fixed_size_list<element: float>[3]', 'int8', 'string']
    >>> table.column("phase").to_pylist()
    ['train', 'train', 'train', 'valid']
    >>> export_parquet(sg, path, phase="valid", overwrite=True).sizes
    {'valid': 1}
    """
    from ..gate import StoreGate

    if not isinstance(storegate, StoreGate):
        raise InvalidArgumentError(
            f"storegate must be a StoreGate, got {type(storegate).__name__}.")
    if data_id is None:
        if storegate.data_id is None:
            raise InvalidArgumentError(
                "the StoreGate has no data_id; pass data_id='name' to export_parquet.")
        data_id = str(storegate.data_id)
    check_name(data_id, "data_id")
    db = storegate.db
    if data_id not in db.data_ids():
        raise DataIdNotFoundError(
            f"data_id {data_id!r} does not exist in the store; data_ids there: "
            f"{db.data_ids()}.")
    if layout not in ("table", "kinoml"):
        raise InvalidArgumentError(
            f"layout={layout!r} is not 'table' (a column per var) or 'kinoml' (kinoml's tuple "
            "records).")
    ph = check_phase(phase)
    all_phases = ph == "all"
    phases = list(PHASES) if all_phases else [ph]
    if phase_column is not None and not isinstance(phase_column, str):
        raise InvalidArgumentError(f"phase_column must be a column name (str) or None, got "
                                   f"{phase_column!r}.")
    if phase_column == "":
        raise InvalidArgumentError("phase_column must not be empty; give a name or None.")
    if row_group_rows is not None and (
        not isinstance(row_group_rows, int | np.integer) or isinstance(row_group_rows, bool)
        or row_group_rows < 1
    ):
        raise InvalidArgumentError(
            f"row_group_rows must be a positive int or None, got {row_group_rows!r}.")
    if compression is not None and (not isinstance(compression, str)
                                    or compression.lower() not in _COMPRESSIONS):
        raise InvalidArgumentError(
            f"compression={compression!r} is not one of {list(_COMPRESSIONS)} or None.")
    if not isinstance(overwrite, bool):
        raise InvalidArgumentError(f"overwrite must be a bool, got {overwrite!r}.")
    pa, pq = _pyarrow()

    out, sizes = _export_vars(pa, db, data_id, phases, var_names, all_phases)
    column = phase_column if all_phases and layout == "table" else None
    if column is not None and column in {v.name for v in out}:
        raise InvalidArgumentError(
            f"phase_column {column!r} is also a var name; choose another phase_column (or None "
            "for no phase column).")
    if layout == "kinoml":
        if len(out) < 2:
            raise InvalidArgumentError(
                f"the kinoml layout needs at least two vars (features, then the label), got "
                f"{[v.name for v in out]}; pass var_names=[features..., label].")
        bad = [v.name for v in out if v.dtype.kind == "c"]
        if bad:
            raise DtypeError(f"vars {bad} are complex; the kinoml layout (awkward) holds real "
                             "numbers only. Use layout='table'.")
        if all_phases and sum(1 for p in phases if sizes[p]) > 1:
            logger.info("kinoml files have no phase field: the rows of %s are written one "
                        "after another (sizes %s)", phases, sizes)
    rows = int(row_group_rows) if row_group_rows is not None else _block_rows(
        db, data_id, phases, out, sizes)
    total = sum(sizes.values())
    comp = None if compression is None or compression.lower() in ("none", "uncompressed") \
        else compression.lower()

    with staged(path, overwrite=overwrite) as tmp, progress_bar(
            progress, total=total, unit="rows", desc=f"export {data_id}") as bar:
        if layout == "table":
            _write_table(pa, pq, db, data_id, tmp, out, phases, sizes, column, comp, rows, bar)
        else:
            _write_kinoml(pa, db, data_id, tmp, out, phases, sizes, comp, rows, bar)
    dst = os.path.abspath(os.fspath(path))
    logger.info("exported %d rows of %d vars of data_id %r to %s", total, len(out), data_id,
                dst)
    written = tuple(p for p in phases if sizes[p] or not all_phases)
    return ExportResult(dst, data_id, written, tuple(v.name for v in out), dict(sizes))
