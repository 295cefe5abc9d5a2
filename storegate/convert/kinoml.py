"""Import kinoml's Parquet datasets into a StoreGate.

kinoml (``DatasetProvider.to_awkward`` in its featurization notebooks) writes one Parquet file
per dataset with awkward: ``ak.to_parquet(ak.zip([*X, y], depth_limit=1), path)``. That is one
*record per item* (system) with positional fields ``"0" .. "n"``; the **last field is the
label** ``y`` (float32, one number per item) and every other field is one feature "column".
Because the features went through ``ak.from_iter``, each has type ``var * var * float64``: no
dimension is marked regular and float32 features were upcast to float64. In the file, the
tuple record is a single struct column named ``""``; records with named fields (``ak.zip`` of
a dict) are plain top-level columns. Split indices are not stored.

:func:`import_kinoml_parquet` turns each feature field into a var: a **ragged** var (flat
values plus offsets, see :mod:`storegate.ragged`) when the items' first axis varies, a regular
``(N, *k)`` var when every item has the same shape. Only the first axis of an item may vary;
all deeper axes must be constant over the file. Items of shape ``(k, n_i)`` that vary along
their last axis (kinoml's unpadded one-hot ``(53, L)``, an edge index ``(2, E)``) are stored
transposed, as rows ``(n_i, k)``, when their field is named in ``transpose=``. The label
becomes a var too.

Reading streams record batches of ``batch_rows`` rows (Parquet pages are decoded batch by
batch, so memory stays bounded even for kinoml's files, which are one big row group), and all
work inside a batch is vectorised over the list offsets: there is no Python loop per item.
The file is read once: a field of variable-length lists whose first axis varies within the
first batch is ragged; one whose first batch is uniform is taken as regular, and if a later
batch contradicts that, the import deletes what it wrote, scans the shapes and starts again.
A file that cannot be imported leaves the store as it was.

Examples
--------
>>> import os, tempfile
>>> import awkward as ak, numpy as np
>>> from storegate import StoreGate
>>> from storegate.convert import import_kinoml_parquet
>>> rng = np.random.default_rng(0)
>>> systems = [rng.standard_normal((n, 16)) for n in (12, 40, 25, 33)]   # ragged feature
>>> fingerprints = [rng.integers(0, 2, 8) for _ in range(4)]              # same shape each
>>> y = np.array([6.1, 7.3, 5.0, 8.2], dtype="float32")
>>> path = os.path.join(tempfile.mkdtemp(), "kinoml.parquet")
>>> X = [ak.from_iter(systems), ak.from_iter(fingerprints)]               # as kinoml does
>>> _ = ak.to_parquet(ak.zip([*X, ak.from_numpy(y)], depth_limit=1), path)
>>> sg = StoreGate("numpy")
>>> result = import_kinoml_parquet(path, sg, data_id="kinase", phase=(2, 1, 1),
...                                dtype="float32")
>>> [(v.name, v.ragged, v.shape, str(v.dtype)) for v in result.vars]
[('X_a0', True, (None, 16), 'float32'), ('X_a1', False, (8,), 'int64'), ('y', False, (), 'float32')]
>>> result.sizes
{'train': 2, 'valid': 1, 'test': 1}
>>> sg.get_data("X_a0", "train", 1, ragged_as="list").shape     # one item: (n_i, 16)
(40, 16)
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import (
    InvalidArgumentError,
    InvalidNameError,
)
from ..names import check_name
from ..ragged import RaggedArray
from .errors import (
    MissingDependencyError,
    SourceFormatError,
    SourceNotFoundError,
    UnsupportedFieldError,
)
from .phase_plan import PhasePlan, phase_codes, plan_phases
from .results import ImportedVar, ImportResult
from .target import ImportTarget, float_cast

__all__ = ["ImportedVar", "KinomlImport", "import_kinoml_parquet"]

#: Decoded bytes per record batch when ``batch_rows`` is not given.
BATCH_BYTES = 32 * 2**20
#: Read buffer of the Parquet reader (pages are read through it instead of whole column chunks).
_READ_BUFFER = 4 * 2**20


# ---------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class KinomlImport(ImportResult):
    """What :func:`import_kinoml_parquet` did: an :class:`~storegate.convert.ImportResult`
    whose vars are the features in field order, then the label."""

    @property
    def feature_names(self) -> list[str]:
        """Names of the feature vars (every var but the label), in field order."""
        return [v.name for v in self.vars[:-1]]

    @property
    def label_name(self) -> str:
        """Name of the label var."""
        return self.vars[-1].name


# ---------------------------------------------------------------------------------- schema
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

    @property
    def needs_scan(self) -> bool:
        return self.transposed or any(level is None for level in self.levels)

    def reset(self) -> None:
        self.first_lengths = set()
        self.inner = {}


def _pyarrow() -> tuple[Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as err:
        raise MissingDependencyError(
            f"importing Parquet files needs pyarrow ({err}); install it with "
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
                    "kinoml .parquet file or of a directory that holds them.", p)
            return files
        if not os.path.exists(p):
            raise SourceNotFoundError(
                f"no such file: {p!r}; give the path of a kinoml .parquet file (written with "
                "ak.to_parquet) or of a directory of them.", p)
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


def _open(pq: Any, pa: Any, path: str) -> Any:
    try:
        return pq.ParquetFile(path, pre_buffer=False, buffer_size=_READ_BUFFER)
    except (pa.ArrowException, OSError) as err:
        raise SourceFormatError(
            f"{path!r} is not a readable Parquet file ({err}); kinoml datasets are written with "
            "ak.to_parquet(ak.zip([*X, y], depth_limit=1), path).", path) from None


def _leaf_dtype(pa: Any, t: Any) -> np.dtype | None:
    # by bit width, not DataType.to_pandas_dtype (which imports pandas)
    if pa.types.is_boolean(t):
        return np.dtype(bool)
    kind = ("i" if pa.types.is_signed_integer(t) else "u" if pa.types.is_unsigned_integer(t)
            else "f" if pa.types.is_floating(t) else None)
    return None if kind is None else np.dtype(f"{kind}{t.bit_width // 8}")


def _analyze(pa: Any, name: str, column: str, typ: Any, path: str) -> _Field:
    levels: list[int | None] = []
    t = typ
    while True:
        if isinstance(t, pa.ExtensionType):
            t = t.storage_type
        if pa.types.is_list(t) or pa.types.is_large_list(t) or (
            hasattr(pa.types, "is_list_view") and (pa.types.is_list_view(t)
                                                   or pa.types.is_large_list_view(t))):
            levels.append(None)
            t = t.value_type
        elif pa.types.is_fixed_size_list(t):
            levels.append(int(t.list_size))
            t = t.value_type
        else:
            break
    leaf = _leaf_dtype(pa, t)
    if leaf is None:
        what = ("nested records" if pa.types.is_struct(t) else
                "a union of types" if pa.types.is_union(t) else
                "strings" if pa.types.is_string(t) or pa.types.is_large_string(t) else
                "no values at all (every list is empty, so the type is unknown)"
                if pa.types.is_null(t) else f"values of Arrow type {t}")
        raise UnsupportedFieldError(
            f"field {name!r} of {path!r} has type {typ} and holds {what}; a var needs numbers "
            "or bools (nested lists of them are fine). Convert or drop that field before "
            "writing the file (kinoml: featurize to numeric arrays).", path)
    return _Field(name, column, levels, leaf)


def _phase_source(pa: Any, name: str, column: str, typ: Any, path: str) -> _Field:
    t = typ.value_type if pa.types.is_dictionary(typ) else typ
    if not (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_integer(t)):
        raise UnsupportedFieldError(
            f"phase_field {name!r} of {path!r} has type {typ}; it must hold one label per row: "
            "a string ('train', 'valid'/'val', 'test') or an integer 0, 1, 2.", path)
    return _Field(name, column, [], np.dtype(object))


def _fields(pa: Any, pf: Any, path: str, phase_field: str | None) -> list[_Field]:
    schema = pf.schema_arrow
    if len(schema) == 1 and pa.types.is_struct(schema.field(0).type):
        # awkward writes a record (tuple) array as one struct column, named "" for tuples
        top = schema.field(0)
        children = [top.type.field(i) for i in range(top.type.num_fields)]
        entries = [(c.name, f"{top.name}.{c.name}", c.type) for c in children]
    else:
        entries = [(f.name, f.name, f.type) for f in schema]
    return [(_phase_source if name == phase_field else _analyze)(pa, name, column, typ, path)
            for name, column, typ in entries]


def _describe_layout(pf: Any) -> str:
    return ", ".join(f"{f.name!r}: {f.type}" for f in pf.schema_arrow) or "no columns"


# ---------------------------------------------------------------------------------- phases
# ---------------------------------------------------------------------------------- reading
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
            f"field {f.name!r} of {path!r} holds {arr.null_count} missing values (None); "
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
                    if len(f.levels) == 2 and not f.transposed else "")
            raise UnsupportedFieldError(
                f"items of field {f.name!r} in {path!r} vary along axis {depth} (lengths "
                f"{seen} and {other}, near row {g0}); only the first axis of an item may vary "
                "(a ragged var holds rows of shape (n_i, *k) with a fixed k)." + hint, path)


def _known(f: _Field) -> bool:
    """Whether the lengths scanned so far fix every variable level of ``f`` (at least one
    item, and one element at every inner level)."""
    return bool(f.first_lengths) and all(
        depth in f.inner for depth, level in enumerate(f.levels)
        if depth and (level is None or f.transposed))


def _finish_shape(f: _Field) -> None:
    """Decide ragged or regular and the shapes, from the schema and the lengths scanned."""
    dims: list[int] = []
    for depth, level in enumerate(f.levels):
        if level is not None and not f.transposed:
            dims.append(level)
        elif depth == 0:
            dims.append(next(iter(f.first_lengths)) if len(f.first_lengths) == 1 else -1)
        else:
            dims.append(f.inner.get(depth, 0))  # no items reach this level: length 0
    f.ragged = bool(dims) and dims[0] == -1
    f.sure = f.sure or f.ragged
    f.shape = tuple(dims[1:]) if f.ragged else tuple(dims)


class _Restart(Exception):
    """A field taken as regular from the first batch turned out ragged later on."""


def _decode(f: _Field, arr: Any, path: str, g0: int,
            dtype: np.dtype | None) -> np.ndarray | RaggedArray:
    """One batch of a field as a regular array ``(b, *shape)`` or a :class:`RaggedArray`.

    Raises :class:`_Restart` when a field guessed regular from the first batch has items of
    another length here."""
    n = len(arr)
    offsets, leaf = _walk(arr, f, path)
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
                f"items of field {f.name!r} in {path!r} changed shape while reading (axis "
                f"{depth} should be {want} long); the file changed during the import.", path)
    if dtype is not None and values.dtype.kind == "f" and values.dtype != dtype:
        values = values.astype(dtype)
    if f.ragged:
        o0 = offsets[0]
        assert o0 is not None
        return RaggedArray(values.reshape((int(o0[-1]), *f.shape)), o0, validate=False)
    return values.reshape((n, *f.shape))


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


# ---------------------------------------------------------------------------------- names
def _var_names(fields: list[_Field], var_names: Any, label_name: str, tuple_layout: bool,
               path: str) -> None:
    features = fields[:-1]
    if var_names is None:
        names = [f"X_a{i}" if tuple_layout else f.name for i, f in enumerate(features)]
    elif isinstance(var_names, Mapping):
        unknown = [k for k in var_names if k not in {f.name for f in features}]
        if unknown:
            raise InvalidArgumentError(
                f"var_names maps fields {unknown} that are not feature fields of {path!r}; "
                f"its feature fields are {[f.name for f in features]} (the last field, "
                f"{fields[-1].name!r}, is the label: name it with label_name).")
        names = [str(var_names.get(f.name, f"X_a{i}" if tuple_layout else f.name))
                 for i, f in enumerate(features)]
    elif isinstance(var_names, Sequence) and not isinstance(var_names, str | bytes):
        names = list(var_names)
        if len(names) != len(features):
            raise InvalidArgumentError(
                f"var_names has {len(names)} names but {path!r} has {len(features)} feature "
                f"fields ({[f.name for f in features]}; the last field is the label).")
    else:
        raise InvalidArgumentError(
            f"var_names must be None, a list with one name per feature field or a mapping "
            f"{{field: name}}, got {var_names!r}.")
    names.append(label_name)
    for f, name in zip(fields, names, strict=True):
        f.var = check_name(name)
    seen: set[str] = set()
    for f in fields:
        if f.var in seen:
            raise InvalidNameError(
                f"var name {f.var!r} is used twice (fields and label need distinct names); "
                "pass var_names or label_name.")
        seen.add(f.var)


def _mark_transposed(fields: list[_Field], transpose: Any, path: str) -> None:
    if isinstance(transpose, str) or not isinstance(transpose, Collection):
        raise InvalidArgumentError(
            f"transpose must be a collection of field or var names, e.g. ['0'], got "
            f"{transpose!r}.")
    features = fields[:-1]
    for name in transpose:
        match = [f for f in features if name in (f.name, f.var)]
        if not match:
            raise InvalidArgumentError(
                f"transpose names {name!r}, which is not a feature field of {path!r}; its "
                f"feature fields are {[f.name for f in features]} (vars "
                f"{[f.var for f in features]}).")
        f = match[0]
        if len(f.levels) != 2:
            raise UnsupportedFieldError(
                f"transpose=[{name!r}]: the items of field {f.name!r} in {path!r} have "
                f"{len(f.levels)} axes; only 2-D items (k, n_i) can be transposed.", path)
        f.transposed = True


# ---------------------------------------------------------------------------------- main
def import_kinoml_parquet(
    path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    storegate: Any,
    data_id: str | None = None,
    var_names: Sequence[str] | Mapping[str, str] | None = None,
    label_name: str = "y",
    phase: Any = None,
    dtype: Any = None,
    batch_rows: int | None = None,
    *,
    phase_field: str | None = None,
    transpose: Collection[str] = (),
    do_compile: bool = True,
) -> KinomlImport:
    """Import a kinoml Parquet dataset (one record per item, the last field the label).

    Each feature field becomes a var named ``X_a0``, ``X_a1``, ... (the names of kinoml's NPZ
    ``X_s{i}_a{j}_`` members; records with named fields keep their names): a ragged var when
    the items' first axis varies over the file, a regular var when every item has the same
    shape. The label becomes the var ``label_name``. Rows keep the file order.

    Parameters
    ----------
    path
        A ``.parquet`` file written by kinoml (``ak.to_parquet``), a directory of such files
        (read in name order, as one dataset) or a list of files.
    storegate
        The :class:`~storegate.StoreGate` to write into (any backend).
    data_id
        The data_id to write to; it becomes the gate's current data_id (created if needed).
        ``None``: the gate's current data_id.
    var_names
        Names of the feature vars: a list with one name per feature field, or a mapping
        ``{field name: var name}`` (unmapped fields keep their default names).
    label_name
        Name of the label var (the last field). Default ``'y'``.
    phase
        Where rows go. ``None``: all to ``'train'``. A phase name: all there. Fractions
        ``(0.8, 0.1, 0.1)`` or counts ``(800, 100, 100)``: consecutive rows, cut as
        ``add_data`` cuts them. A numpy array (or list of str) with one label per row
        (``'train'``, ``'valid'``/``'val'``, ``'test'`` or 0, 1, 2). A mapping of row indices or
        bool masks ``{'train': idx, 'valid': idx, 'test': idx}`` (kinoml's ``idx_train``,
        ``idx_val``, ``idx_test``; rows in none of them are skipped); rows keep file order.
    dtype
        Cast every floating-point field (features and label) to this float dtype, e.g.
        ``'float32'`` to undo kinoml's float64 upcast. ``None`` keeps the file's dtypes.
    batch_rows
        Rows decoded at a time (bounds memory). ``None``: about 32 MiB of data per batch,
        estimated from the file's metadata.
    phase_field
        Name of a field of the file that holds each row's phase label (strings or 0/1/2).
        That field is not imported as a var. Give either ``phase`` or ``phase_field``.
    transpose
        Feature fields (by field or var name) whose items are 2-D arrays ``(k, n_i)`` varying
        along their *last* axis, such as kinoml's unpadded one-hot features ``(53, L)`` or an
        edge index ``(2, E)``: they are stored transposed, as rows of shape ``(n_i, k)``.
    do_compile
        Compile the data_id afterwards (checks that every phase's vars have equal lengths).

    Returns
    -------
    KinomlImport
        The data_id, the files, each var written (name, ragged, per-row shape, dtype) and the
        rows per phase.

    Raises
    ------
    SourceNotFoundError
        ``path`` does not exist (a ``FileNotFoundError``).
    SourceFormatError
        Not a Parquet file, fewer than two fields (features and a label), no rows, a damaged
        file, or several files whose columns disagree (a ``ValueError``).
    UnsupportedFieldError
        A field of strings, unions or nested records, with missing values, or whose items vary
        beyond their first axis (without ``transpose=``), or a transposed field whose items
        are not 2-D arrays (a ``TypeError`` and ``ValueError``).
    VarExistsError
        A target var already exists in the data_id; delete it first or choose other names.
    InvalidPhaseError, InvalidArgumentError, InvalidNameError, MissingDependencyError
        Bad ``phase``/``phase_field``, bad arguments or names, pyarrow not installed.

    Notes
    -----
    A failed import leaves the store as it was. The schema, the arguments, the phase spec and
    the target (no existing var of the same name, matching phase lengths) are checked before
    anything is written. Problems found while reading the data (missing values, an item deep
    in the file whose inner axis differs, a damaged page) and failures of the writes themselves
    (a full disk, an interrupt) delete the vars the import created before the error
    propagates (and the data_id too if the import created it and the gate had another data_id
    before).

    The source is decoded once, batch by batch, with no Python loop per item; only when a field
    taken as regular from the first batch turns out ragged later is the import restarted after
    one shape pass over the variable-length columns.

    Examples
    --------
    >>> import os, tempfile
    >>> import awkward as ak, numpy as np
    >>> from storegate import StoreGate
    >>> path = os.path.join(tempfile.mkdtemp(), "d.parquet")
    >>> X0 = ak.from_iter([np.ones((3, 2)), np.zeros((1, 2)), np.ones((2, 2))])
    >>> y = ak.from_numpy(np.array([0.5, 1.5, 2.5], dtype="float32"))
    >>> _ = ak.to_parquet(ak.zip([X0, y], depth_limit=1), path)
    >>> sg = StoreGate("numpy", data_id="d")
    >>> res = import_kinoml_parquet(path, sg, phase=np.array(["train", "test", "train"]))
    >>> res.sizes, res.feature_names, res.label_name
    ({'train': 2, 'valid': 0, 'test': 1}, ['X_a0'], 'y')
    >>> sg.get_data("y", "train")
    array([0.5, 2.5], dtype=float32)
    >>> [item.shape for item in sg.get_data("X_a0", "train", ragged_as="list")]
    [(3, 2), (2, 2)]
    """
    target = ImportTarget(storegate, data_id)
    if not isinstance(label_name, str):
        raise InvalidNameError(f"label_name must be a str, got {label_name!r}.")
    cast = float_cast(dtype)
    if batch_rows is not None and (
        not isinstance(batch_rows, int | np.integer) or isinstance(batch_rows, bool)
        or batch_rows < 1
    ):
        raise InvalidArgumentError(f"batch_rows must be a positive int or None, got "
                                   f"{batch_rows!r}.")
    if phase_field is not None and phase is not None:
        raise InvalidArgumentError(
            "give either phase= or phase_field=, not both (phase_field reads each row's phase "
            "from the file).")

    files = _source_files(path)
    pa, pq = _pyarrow()
    handles = [(f, _open(pq, pa, f)) for f in files]
    first_path, first = handles[0]
    fields = _fields(pa, first, first_path, phase_field)
    struct = len(first.schema_arrow) == 1 and pa.types.is_struct(first.schema_arrow.field(0).type)
    for p, pf in handles[1:]:
        if not pf.schema_arrow.equals(first.schema_arrow, check_metadata=False):
            raise SourceFormatError(
                f"{p!r} has other columns than {first_path!r} ({_describe_layout(pf)} vs "
                f"{_describe_layout(first)}); files imported together must share one layout.",
                p)

    phase_src: _Field | None = None
    if phase_field is not None:
        matches = [f for f in fields if f.name == phase_field]
        if not matches:
            raise InvalidArgumentError(
                f"phase_field {phase_field!r} is not a field of {first_path!r}; its fields "
                f"are {[f.name for f in fields]}.")
        phase_src = matches[0]
        fields.remove(phase_src)
    if len(fields) < 2:
        raise SourceFormatError(
            f"{first_path!r} is not in kinoml's layout: it has {len(fields)} field(s) "
            f"({_describe_layout(first)}), but a kinoml dataset has one record per item with "
            "fields '0'..'n': at least one feature and the label (last).", first_path)
    tuple_layout = struct and all(f.name == str(i) for i, f in enumerate(fields))
    _var_names(fields, var_names, label_name, tuple_layout, first_path)
    _mark_transposed(fields, transpose, first_path)

    n = sum(pf.metadata.num_rows for _, pf in handles)
    if n == 0:
        raise SourceFormatError(f"{first_path!r} holds no rows; there is nothing to import.",
                                first_path)
    plan = plan_phases(phase, n) if phase_src is None else None
    if batch_rows is None:
        nbytes = sum(pf.metadata.row_group(g).total_byte_size
                     for _, pf in handles for g in range(pf.metadata.num_row_groups))
        batch_rows = int(np.clip(BATCH_BYTES // max(1, nbytes // n), 256, 1 << 20))

    # phases from a field of the file: read that (small) column first
    if phase_src is not None:
        codes = [
            phase_codes(_column(batch, phase_src, struct).to_numpy(zero_copy_only=False),
                         batch.num_rows, f"phase_field {phase_field!r} of {p!r}")
            for p, _, batch in _checked(_batches(pa, handles, [phase_src.column],
                                                 int(batch_rows)), phase_src, struct)
        ]
        plan = PhasePlan(codes=np.concatenate(codes))
    assert plan is not None
    sizes = plan.sizes()
    skipped = n - sum(sizes.values())

    # nothing may be overwritten or appended to: the import creates its vars
    target.check_new([f.var for f in fields], sizes)

    # Shapes: fixed-size lists are known from the schema; a field of variable-length lists
    # is taken as ragged when its first axis varies within the first batch, else (tentatively)
    # as regular. If a later batch contradicts that, the vars written so far are deleted, one
    # shape pass over the file settles every field, and the import starts again.
    scan = [f for f in fields if f.needs_scan]
    columns = [f.column for f in fields]
    for p, g0, batch in _batches(pa, handles, columns, int(batch_rows)):
        for f in scan:
            _scan(f, _column(batch, f, struct), p, g0)
        break
    pending = [f for f in scan if not _known(f)]
    _shape_pass(pa, handles, pending, struct, int(batch_rows))
    for f in fields:
        _finish_shape(f)
        f.sure = f.sure or f in pending or not f.needs_scan

    with target:
        while True:
            try:
                _write(target, pa, handles, fields, struct, int(batch_rows), plan, cast)
                break
            except _Restart:
                target.undo()
                _shape_pass(pa, handles, scan, struct, int(batch_rows))
                for f in fields:
                    _finish_shape(f)
                    f.sure = True
        if do_compile:
            storegate.compile()

    out_vars = tuple(
        ImportedVar(
            name=f.var, field=f.name, ragged=f.ragged,
            shape=(None, *f.shape) if f.ragged else f.shape,
            dtype=cast if cast is not None and f.leaf.kind == "f" else f.leaf,
            source_dtype=f.leaf, transposed=f.transposed,
        )
        for f in fields
    )
    return KinomlImport(target.data_id, tuple(files), out_vars, sizes, skipped)


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


def _write(target: ImportTarget, pa: Any, handles: list[tuple[str, Any]], fields: list[_Field],
           struct: bool, batch_rows: int, plan: PhasePlan, cast: np.dtype | None) -> None:
    """The import proper: decode batch by batch, append each phase's rows."""
    for p, g0, batch in _batches(pa, handles, [f.column for f in fields], batch_rows):
        pieces = list(plan.pieces(g0, g0 + batch.num_rows))
        if not pieces:
            continue
        decoded = [_decode(f, _column(batch, f, struct), p, g0, cast) for f in fields]
        for f, data in zip(fields, decoded, strict=True):
            for ph, sel in pieces:
                target.add(f.var, _rows(data, sel), ph)
