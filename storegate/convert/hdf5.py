"""Import HDF5 files into a StoreGate, and export a data_id to an HDF5 file.

Layout conventions
------------------
Every **dataset** of the chosen group (``group=``, default the root ``/``) is one var, named
after the dataset; axis 0 is the row axis, so a dataset of shape ``(N, *k)`` becomes a var of
``N`` rows of shape ``k``, with the dataset's dtype kept exactly (``float16``, ``int8``, ``bool``,
``uint64``, complex, big-endian ... ). Elements of an HDF5 *array type* become trailing axes.

**Phases.** If the group holds subgroups named ``train``, ``valid`` (or ``val``,
``validation``) and/or ``test``, they are the phases and each one's datasets are that phase's
vars (other members of the group are ignored, with a warning). Otherwise the group's datasets
are the vars, and ``phase=`` places their rows (``None``: all to ``train``; a phase name;
fractions; counts; one label per row; a mapping of row indices — see
:mod:`storegate.convert.phase_plan`).

**Ragged vars** (rows whose first axis varies) are stored as a subgroup named after the var
holding two datasets, ``values`` of shape ``(n_values, *k)`` and ``offsets`` of shape ``(N + 1,)``
(int64, starting at 0, non-decreasing, ending at ``n_values``): row ``i`` is
``values[offsets[i]:offsets[i + 1]]`` — the Arrow/awkward layout (:mod:`storegate.ragged`). The
exporter marks such groups with the attribute ``storegate_ragged = True``; the importer accepts
any subgroup holding exactly those two datasets. One-dimensional **variable-length** datasets
of numbers (``h5py.vlen_dtype``) are imported as ragged vars with items of shape ``()``.

**Refused** (before anything is written): external links, virtual datasets and datasets whose
raw data live in external files (they read outside the file), soft links that lead nowhere,
strings, compound, enum, reference and opaque dtypes (nothing that would need pickle),
scalar datasets, subgroups that are not ragged vars, and datasets of one phase whose lengths
differ. Unselected members (see ``var_names=``) are never looked at.

The exporter writes the same layout: with ``phase='all'`` the groups ``/train``, ``/valid`` and
``/test`` (all three, even empty ones, so the file round-trips), with one phase name that
phase's vars at the root. The root carries the attributes ``storegate_data_id`` and
``storegate_format = 1``. Datasets are chunked by about 1 MiB of rows; ``compression=`` is passed
to h5py (``'gzip'``, ``'lzf'`` or ``None``). Groups track creation order, so vars keep the store's
order.

Both directions stream blocks of about 16 MiB of rows (:data:`BLOCK_BYTES`), so memory stays
bounded whatever the file size; ragged offsets are read whole (8 bytes per row). A failed import
removes what it wrote (:class:`~storegate.convert.target.ImportTarget`); a failed export leaves
no file at the destination (:func:`~storegate.convert.staging.staged`).

h5py is imported only when a function here is called (``pip install 'storegate[hdf5]'``).

Examples
--------
>>> import os, tempfile
>>> import h5py, numpy as np
>>> from storegate import StoreGate
>>> from storegate.convert.hdf5 import export_hdf5, import_hdf5
>>> src = os.path.join(tempfile.mkdtemp(), "jets.h5")
>>> with h5py.File(src, "w", track_order=True) as f:     # keep creation order
...     f["pt"] = np.arange(10, dtype="float32")
...     f["label"] = np.arange(10) % 2
>>> sg = StoreGate("numpy")
>>> res = import_hdf5(src, sg, data_id="jets", phase=(0.8, 0.2, 0.0))
>>> res.var_names, res.sizes
(['pt', 'label'], {'train': 8, 'valid': 2, 'test': 0})
>>> out = export_hdf5(sg, os.path.join(os.path.dirname(src), "copy.h5"))
>>> with h5py.File(out.path) as f:
...     list(f), f["valid/pt"][:].tolist()
(['train', 'valid', 'test'], [8.0, 9.0])
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from .. import indexing
from ..errors import (
    DataIdNotFoundError,
    InconsistentLengthError,
    InvalidArgumentError,
    InvalidNameError,
    InvalidPhaseError,
    UnsupportedOperationError,
    VarNotFoundError,
)
from ..names import check_name
from ..phases import ALL, PHASES, check_phase
from ..progress import Progress, ProgressBar, progress_bar
from ..ragged import RaggedArray
from .errors import (
    MissingDependencyError,
    SourceFormatError,
    SourceNotFoundError,
    UnsupportedFieldError,
)
from .phase_plan import PhasePlan, plan_phases, select_rows
from .results import ExportResult, ImportedVar, ImportResult
from .staging import staged
from .target import ImportTarget, float_cast

__all__ = ["export_hdf5", "import_hdf5"]

logger = logging.getLogger(__name__)

#: Bytes of rows read (and written) at a time, for both import and export.
BLOCK_BYTES = 16 * 2**20
#: Bytes of one HDF5 chunk written by the exporter.
CHUNK_BYTES = 2**20
#: Rows of a variable-length dataset read at a time (their size is unknown before reading).
VLEN_BLOCK_ROWS = 65536
#: Version of the layout written by :func:`export_hdf5` (root attribute ``storegate_format``).
FORMAT_VERSION = 1
#: Attribute marking a group as one ragged var (``values`` + ``offsets``).
RAGGED_ATTR = "storegate_ragged"

#: Subgroup names that hold a phase.
PHASE_GROUPS = {"train": "train", "valid": "valid", "val": "valid", "validation": "valid",
                "test": "test"}
_COMPRESSIONS = (None, "gzip", "lzf")
_MAX_LINK_DEPTH = 16


def _h5py() -> Any:
    try:
        import h5py
    except ImportError as err:
        raise MissingDependencyError(
            f"reading and writing HDF5 files needs h5py ({err}); install it with "
            "`pip install 'storegate[hdf5]'` (or `pip install h5py`).") from None
    return h5py


# ---------------------------------------------------------------------------------- sources
@dataclass
class _Source:
    """One var as found in the file, checked and ready to copy."""

    name: str  # link name in its group: the default var name
    where: str  # HDF5 path, for messages and ImportedVar.field
    kind: str  # "dense", "ragged" (values + offsets group) or "vlen"
    dtype: np.dtype  # element dtype in the file
    row_shape: tuple[int, ...]  # dense: shape of a row; ragged/vlen: shape of an item
    length: int  # rows
    data: Any  # the dataset (dense, vlen) or the values dataset (ragged)
    offsets: np.ndarray | None = None  # ragged: read whole (8 bytes per row)
    var: str = ""

    @property
    def ragged(self) -> bool:
        return self.kind != "dense"

    @property
    def native(self) -> np.dtype:
        """The dtype stored: the file's, in the machine's byte order."""
        return self.dtype if self.dtype.isnative else self.dtype.newbyteorder("=")

    def describe(self) -> str:
        shape = (None, *self.row_shape) if self.ragged else self.row_shape
        return f"{'ragged ' if self.ragged else ''}{self.dtype} rows of shape {shape}"


def _join(parent: str, name: str) -> str:
    return f"{parent.rstrip('/')}/{name}"


def _names(grp: Any) -> list[str]:
    """Link names of a group, in its order, without following any link."""
    return list(grp)


def _format_error(file: str, message: str) -> SourceFormatError:
    return SourceFormatError(f"{file!r}: {message}", file)


def _read(obj: Any, sel: Any, file: str, where: str) -> np.ndarray:
    """``obj[sel]``, with h5py's read errors (damaged file, missing filter) as
    :class:`SourceFormatError`."""
    try:
        return np.asarray(obj[sel])
    except (OSError, RuntimeError) as err:
        raise _format_error(
            file, f"reading {where!r} failed ({err}); the file is damaged or truncated, or it "
            "needs an HDF5 filter plugin that is not installed (e.g. `pip install hdf5plugin` "
            "and `import hdf5plugin`).") from None


def _member(h5py: Any, grp: Any, name: str, file: str, depth: int = 0) -> Any:
    """The object linked as ``name`` in ``grp``, refusing links that leave the file (external
    links, also behind soft links) and soft links that lead nowhere."""
    where = _join(grp.name, name)
    if depth > _MAX_LINK_DEPTH:
        raise _format_error(file, f"soft links around {where!r} form a loop.")
    try:
        link = grp.get(name, getlink=True)
    except (OSError, RuntimeError, KeyError) as err:
        raise _format_error(file, f"cannot read the link {where!r} ({err}).") from None
    if link is None:
        raise _format_error(file, f"{where!r} does not exist.")
    if isinstance(link, h5py.ExternalLink):
        raise _format_error(
            file, f"{where!r} is an external link to {link.filename!r}:{link.path!r}; storegate "
            "never follows links out of the file. Copy the data into the file, or leave that "
            "member out (group=, var_names=).")
    if isinstance(link, h5py.SoftLink):
        target = link.path
        cur = grp.file if target.startswith("/") else grp
        for part in (p for p in target.split("/") if p not in ("", ".")):
            if not isinstance(cur, h5py.Group) or part not in _names(cur):
                raise _format_error(
                    file, f"{where!r} is a soft link to {target!r}, which does not exist "
                    "(a dangling link). Fix or remove the link, or leave that member out "
                    "(group=, var_names=).")
            cur = _member(h5py, cur, part, file, depth + 1)
        return cur
    try:
        return grp[name]
    except (OSError, RuntimeError, KeyError) as err:
        raise _format_error(file, f"cannot open {where!r} ({err}); the file is damaged.") \
            from None


def _open_group(h5py: Any, f: Any, group: str, file: str) -> Any:
    """The group at path ``group``, following only links inside the file."""
    if not isinstance(group, str):
        raise InvalidArgumentError(f"group must be a str path like '/' or '/data', got "
                                   f"{group!r}.")
    cur = f
    for part in (p for p in group.split("/") if p not in ("", ".")):
        if not isinstance(cur, h5py.Group) or part not in _names(cur):
            members = _names(cur)[:20] if isinstance(cur, h5py.Group) else []
            raise _format_error(
                file, f"has no group {group!r}; pick an existing group with group= "
                f"({cur.name!r} holds {members}).")
        cur = _member(h5py, cur, part, file)
    if not isinstance(cur, h5py.Group):
        raise _format_error(file, f"{group!r} is a dataset, not a group; pass the group that "
                                  "holds it as group= (and select it with var_names=).")
    return cur


def _element_dtype(h5py: Any, dt: np.dtype, where: str, file: str) -> np.dtype:
    """The numeric dtype a dataset's elements can be stored as, or raise."""
    what = None
    if h5py.check_string_dtype(dt) is not None or dt.kind in "SU":
        what = "strings"
    elif h5py.check_ref_dtype(dt) is not None:
        what = "object references"
    elif h5py.check_enum_dtype(dt) is not None:
        what = "an enum type (write its integer codes as a plain integer dataset)"
    elif dt.fields is not None:
        what = f"a compound type {dt}"
    elif dt.subdtype is not None:
        return _element_dtype(h5py, dt.base, where, file)
    elif dt.kind not in "biufc":
        what = f"values of dtype {dt} (opaque, object or time types)"
    if what is not None:
        raise UnsupportedFieldError(
            f"{file!r}: dataset {where!r} holds {what}; a var holds numbers or bools only. "
            "Convert it in the file, or leave it out with var_names=[...].", file)
    return dt


def _dataset(h5py: Any, ds: Any, name: str, where: str, file: str) -> _Source:
    """A dataset as a dense or variable-length (ragged) source."""
    if ds.is_virtual:
        raise _format_error(
            file, f"dataset {where!r} is a virtual dataset (it maps data of other files or "
            "datasets); storegate does not read those. Copy the data into a plain dataset, or "
            "leave it out with var_names=.")
    if ds.external:
        raise _format_error(
            file, f"dataset {where!r} keeps its data in external files {ds.external}; "
            "storegate reads only the file itself. Copy the data into a plain dataset, or leave "
            "it out with var_names=.")
    if ds.shape is None or len(ds.shape) == 0:
        raise UnsupportedFieldError(
            f"{file!r}: dataset {where!r} is a scalar (no row axis); a var needs rows "
            "(shape (N, ...)). Store it as an attribute, or leave it out with var_names=.", file)
    base = h5py.check_vlen_dtype(ds.dtype)
    if base is not None:
        if base in (str, bytes):
            _element_dtype(h5py, ds.dtype, where, file)  # raises: strings
        elem = _element_dtype(h5py, np.dtype(base), where, file)
        if len(ds.shape) != 1:
            raise UnsupportedFieldError(
                f"{file!r}: dataset {where!r} is a {len(ds.shape)}-D variable-length dataset; "
                "only 1-D ones (one list of numbers per row) become ragged vars.", file)
        return _Source(name, where, "vlen", elem, (), int(ds.shape[0]), ds)
    dt = ds.dtype
    elem = _element_dtype(h5py, dt, where, file)
    row_shape = tuple(int(s) for s in ds.shape[1:]) + tuple(dt.shape)
    return _Source(name, where, "dense", elem, row_shape, int(ds.shape[0]), ds)


def _ragged_group(h5py: Any, g: Any, name: str, where: str, file: str) -> _Source:
    """A subgroup holding ``values`` and ``offsets`` as a ragged source (offsets checked)."""
    members = sorted(_names(g))
    marked = bool(g.attrs.get(RAGGED_ATTR, False))
    if members != ["offsets", "values"]:
        if marked:
            raise _format_error(
                file, f"group {where!r} is marked as a ragged var ({RAGGED_ATTR}) but holds "
                f"{members} instead of exactly 'values' and 'offsets'; it is damaged.")
        raise UnsupportedFieldError(
            f"{file!r}: {where!r} is a group (members {members[:8]}), not a dataset or a ragged "
            "var (a group of exactly 'values' and 'offsets'). Pick the group that holds the "
            "datasets with group=, or select datasets with var_names=.", file)
    values = _member(h5py, g, "values", file)
    offsets = _member(h5py, g, "offsets", file)
    if not isinstance(values, h5py.Dataset) or not isinstance(offsets, h5py.Dataset):
        raise UnsupportedFieldError(
            f"{file!r}: ragged var {where!r} needs 'values' and 'offsets' to be datasets.", file)
    vals = _dataset(h5py, values, name, _join(where, "values"), file)
    offs = _dataset(h5py, offsets, name, _join(where, "offsets"), file)
    if vals.kind != "dense" or offs.kind != "dense" or len(offsets.shape) != 1 \
            or offs.dtype.kind not in "iu" or offs.length < 1:
        raise _format_error(
            file, f"ragged var {where!r} needs 'offsets' to be a non-empty 1-D integer dataset "
            f"and 'values' a numeric dataset; got offsets {offsets.dtype} {offsets.shape}, values "
            f"{values.dtype} {values.shape}.")
    o = _read(offsets, slice(None), file, _join(where, "offsets"))
    if o.dtype.kind == "u" and o.size and int(o.max()) > np.iinfo(np.int64).max:
        raise _format_error(file, f"ragged offsets of {where!r} exceed int64.")
    o = o.astype(np.int64, copy=False)
    n_values = int(values.shape[0])
    if int(o[0]) != 0 or int(o[-1]) != n_values or (o.shape[0] > 1 and (np.diff(o) < 0).any()):
        raise _format_error(
            file, f"ragged var {where!r} has invalid offsets (first {int(o[0])}, last "
            f"{int(o[-1])}, {n_values} values): they must start at 0, never decrease and end at "
            "the number of values.")
    return _Source(name, where, "ragged", vals.dtype, vals.row_shape, int(o.shape[0]) - 1,
                   values, offsets=o)


def _probe(src: _Source, file: str) -> None:
    """Read one row, so a missing filter or a damaged first chunk shows before any write."""
    if src.kind == "ragged":
        if src.data.shape[0]:
            _read(src.data, slice(0, 1), file, _join(src.where, "values"))
    elif src.length:
        _read(src.data, slice(0, 1), file, src.where)


def _collect(h5py: Any, grp: Any, file: str, wanted: list[str] | None) -> list[_Source]:
    """The vars of one group (in the group's order, or ``wanted``'s), checked."""
    names = _names(grp)
    chosen = names if wanted is None else [n for n in wanted if n in names]
    out: list[_Source] = []
    for name in chosen:
        where = _join(grp.name, name)
        obj = _member(h5py, grp, name, file)
        if isinstance(obj, h5py.Group):
            src = _ragged_group(h5py, obj, name, where, file)
        elif isinstance(obj, h5py.Dataset):
            src = _dataset(h5py, obj, name, where, file)
        else:
            logger.info("%s: skipping %s, a named datatype (no data)", file, where)
            continue
        _probe(src, file)
        out.append(src)
    return out


# ---------------------------------------------------------------------------------- plan
def _selection(var_names: Any) -> tuple[list[str] | None, dict[str, str]]:
    """``var_names`` as (datasets to read in order, or None for all; {dataset: var})."""
    if var_names is None:
        return None, {}
    if isinstance(var_names, str):
        var_names = [var_names]
    if isinstance(var_names, Mapping):
        pairs = [(k, v) for k, v in var_names.items()]
    elif isinstance(var_names, Sequence) and not isinstance(var_names, bytes):
        pairs = [(k, k) for k in var_names]
    else:
        raise InvalidArgumentError(
            f"var_names must be None, a list of dataset names or a mapping {{dataset: var}}, "
            f"got {var_names!r}.")
    for k, v in pairs:
        if not isinstance(k, str) or not isinstance(v, str):
            raise InvalidArgumentError(
                f"var_names entries must be str, got {k!r}: {v!r}.")
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise InvalidArgumentError(f"var_names names a dataset twice: {keys}.")
    return keys, dict(pairs)


def _phase_groups(h5py: Any, grp: Any, file: str) -> dict[str, Any]:
    """The phase subgroups of ``grp`` ({phase: group}), empty if it has none."""
    found: dict[str, tuple[str, Any]] = {}
    for name in _names(grp):
        phase = PHASE_GROUPS.get(name)
        if phase is None:
            continue
        obj = _member(h5py, grp, name, file)
        if not isinstance(obj, h5py.Group) or obj.attrs.get(RAGGED_ATTR, False):
            continue
        if phase in found:
            raise _format_error(
                file, f"group {grp.name!r} holds both {found[phase][0]!r} and {name!r}, two "
                f"groups for phase {phase!r}; rename or remove one.")
        found[phase] = (name, obj)
    if found:
        others = [n for n in _names(grp) if n not in {name for name, _ in found.values()}]
        if others:
            logger.warning("%s: group %s holds the phase groups %s; its other members %s are "
                           "not imported (pick one with group=)", file, grp.name,
                           [name for name, _ in found.values()], others)
    return {ph: found[ph][1] for ph in PHASES if ph in found}


def _common_length(sources: list[_Source], file: str) -> int:
    for src in sources[1:]:
        if src.length != sources[0].length:
            a = sources[0]
            raise InconsistentLengthError(
                f"{file!r}: datasets {a.where!r} ({a.length} rows) and {src.where!r} "
                f"({src.length} rows) differ in length, but the vars of one phase need the same "
                "number of rows. Select datasets of equal length with var_names=, or import "
                "them separately (into another data_id).")
    return sources[0].length if sources else 0


def _block_rows(src: _Source) -> int:
    row_bytes = src.dtype.itemsize * math.prod(src.row_shape)
    rows = max(1, BLOCK_BYTES // max(1, row_bytes))
    chunks = getattr(src.data, "chunks", None)
    if chunks and rows > chunks[0]:
        rows -= rows % chunks[0]  # whole chunks per block: each chunk is decoded once
    elif chunks and chunks[0] * row_bytes <= 4 * BLOCK_BYTES:
        rows = chunks[0]  # a chunk bigger than a block: read it whole rather than decode it
        # once per block (h5py's chunk cache holds 1 MiB)
    return int(rows)


def _blocks(src: _Source, file: str) -> Iterator[tuple[int, int, Callable[[], Any]]]:
    """``(first row, end row, load)`` over ``src``; ``load()`` reads that block."""
    n = src.length
    if src.kind == "dense":
        step = _block_rows(src)
        for g0 in range(0, n, step):
            g1 = min(n, g0 + step)
            yield g0, g1, partial(_read, src.data, slice(g0, g1), file, src.where)
    elif src.kind == "vlen":
        step = max(1, int(VLEN_BLOCK_ROWS))
        for g0 in range(0, n, step):
            g1 = min(n, g0 + step)
            yield g0, g1, partial(_vlen_rows, src, g0, g1, file)
    else:
        assert src.offsets is not None
        o = src.offsets
        item_bytes = max(1, src.dtype.itemsize * math.prod(src.row_shape))
        per_block = max(1, BLOCK_BYTES // item_bytes)
        max_rows = max(1, BLOCK_BYTES // 8)
        g0 = 0
        while g0 < n:
            g1 = int(np.searchsorted(o, o[g0] + per_block, side="right")) - 1
            g1 = min(n, g0 + max_rows, max(g1, g0 + 1))
            yield g0, g1, partial(_ragged_rows, src, g0, g1, file)
            g0 = g1


def _ragged_rows(src: _Source, g0: int, g1: int, file: str) -> RaggedArray:
    assert src.offsets is not None
    a, b = int(src.offsets[g0]), int(src.offsets[g1])
    values = _read(src.data, slice(a, b), file, _join(src.where, "values"))
    return RaggedArray(values, src.offsets[g0:g1 + 1] - a, validate=False)


def _vlen_rows(src: _Source, g0: int, g1: int, file: str) -> RaggedArray:
    rows = _read(src.data, slice(g0, g1), file, src.where)
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    values = (np.concatenate([np.asarray(r, dtype=src.dtype) for r in rows]) if len(rows)
              else np.empty((0,), dtype=src.dtype))
    return RaggedArray(values.astype(src.dtype, copy=False), offsets, validate=False)


def _store_dtype(src: _Source, cast: np.dtype | None) -> np.dtype:
    """The dtype ``src`` is stored as: ``cast`` for floating vars, else the file's dtype in
    native byte order."""
    if cast is not None and src.dtype.kind == "f":
        return cast
    return src.native


def _as_dtype(data: Any, dtype: np.dtype) -> Any:
    if isinstance(data, RaggedArray):
        if data.dtype != dtype:
            return RaggedArray(data.values.astype(dtype), data.offsets, validate=False)
        return data
    return data if data.dtype == dtype else data.astype(dtype)


def _copy(src: _Source, plan: PhasePlan, target: ImportTarget, cast: np.dtype | None,
          bar: ProgressBar, file: str) -> None:
    """Copy one var block by block, each block's rows to the phases the plan gives them."""
    dtype = _store_dtype(src, cast)
    for g0, g1, load in _blocks(src, file):
        pieces = list(plan.pieces(g0, g1))
        if pieces:
            data = _as_dtype(load(), dtype)
            for ph, sel in pieces:
                target.add(src.var, select_rows(data, sel), ph)
        bar.update(g1 - g0)


def _plan(h5py: Any, grp: Any, file: str, wanted: list[str] | None, renames: dict[str, str],
          phase: Any) -> tuple[list[tuple[PhasePlan, list[_Source]]], dict[str, int], int]:
    """Walk and check the group: ``(parts, rows per phase, rows skipped)``, where each part is
    a phase plan and the sources it places; parts that place no rows are left out."""
    phase_groups = _phase_groups(h5py, grp, file)
    parts: list[tuple[PhasePlan, list[_Source]]] = []
    skipped = 0
    if phase_groups:
        if phase is not None:
            raise InvalidArgumentError(
                f"{file!r}: group {grp.name!r} holds phase groups "
                f"({', '.join(g.name for g in phase_groups.values())}), so the phases come "
                f"from the file; pass phase=None (got {phase!r}), or pick one phase's group "
                "with group= to place its rows with phase=.")
        for ph, g in phase_groups.items():
            sources = _collect(h5py, g, file, wanted)
            n = _common_length(sources, file)
            parts.append((PhasePlan(ranges=[(ph, 0, n)] if n else []), sources))
    else:
        sources = _collect(h5py, grp, file, wanted)
        n = _common_length(sources, file)
        plan = plan_phases(phase, n) if sources and n else PhasePlan(ranges=[])
        skipped = n - sum(plan.sizes().values())
        parts.append((plan, sources))

    everything = [src for _, sources in parts for src in sources]
    if wanted is not None:
        found = {src.name for src in everything}
        missing = [w for w in wanted if w not in found]
        if missing:
            groups = list(phase_groups.values()) or [grp]
            raise InvalidArgumentError(
                f"var_names selects {missing}, which {'is' if len(missing) == 1 else 'are'} "
                f"not in {', '.join(repr(g.name) for g in groups)} of {file!r}; there are "
                f"{sorted({n for g in groups for n in _names(g)})}.")
    if not everything:
        raise _format_error(
            file, f"group {grp.name!r} holds no datasets to import; pick the group that holds "
            "them with group=.")
    for src in everything:
        src.var = _var_name(renames.get(src.name, src.name), src, file)
    _check_phases_agree(parts, file)

    sizes = dict.fromkeys(PHASES, 0)
    for plan, _ in parts:
        for ph, rows in plan.sizes().items():
            sizes[ph] += rows
    if not sum(sizes.values()):
        if phase_groups or not everything[0].length:
            raise _format_error(file, f"group {grp.name!r} holds no rows; there is nothing to "
                                      "import.")
        raise InvalidPhaseError(f"phase={phase!r} selects none of the rows of {file!r}.")
    return [p for p in parts if any(p[0].sizes().values())], sizes, skipped


# ---------------------------------------------------------------------------------- import
def import_hdf5(
    path: str | os.PathLike[str],
    storegate: Any,
    data_id: str | None = None,
    *,
    group: str = "/",
    var_names: Sequence[str] | Mapping[str, str] | None = None,
    phase: Any = None,
    dtype: Any = None,
    do_compile: bool = True,
    progress: Progress = None,
) -> ImportResult:
    """Import the datasets of an HDF5 group as vars (see the module docstring for the layout).

    Parameters
    ----------
    path
        The HDF5 file.
    storegate
        The :class:`~storegate.StoreGate` to write into (any backend).
    data_id
        The data_id to write to; it becomes the gate's current data_id (created if needed).
        ``None``: the gate's current data_id, or, if the gate has none and ``group`` is the
        root, the ``storegate_data_id`` attribute written by :func:`export_hdf5`.
    group
        Path of the group whose datasets (or phase subgroups) are imported. Default ``'/'``.
    var_names
        Which datasets (and ragged subgroups) to import: a list of their names (var order =
        list order), or a mapping ``{dataset name: var name}`` that selects and renames (var
        order = mapping order). ``None``: all, in the group's order (creation order if the file
        tracks it, else alphabetical). Unselected members are never read or checked.
    phase
        Where rows go when the group has no phase subgroups. ``None``: all to ``'train'``. A
        phase name, fractions ``(0.8, 0.1, 0.1)``, counts ``(800, 100, 100)``, one label per row
        (``'train'``/``'valid'``/``'val'``/``'test'`` or 0, 1, 2), or a mapping of row indices
        or bool masks ``{'train': idx, 'valid': idx, 'test': idx}`` (rows in none are skipped).
        Must be ``None`` when the group holds phase subgroups.
    dtype
        Cast floating-point vars (also ragged ones) to this float dtype, e.g. ``'float32'``;
        integer, bool and complex vars keep theirs. ``None`` keeps every dtype exactly.
    do_compile
        Compile the data_id afterwards.
    progress
        ``None``/``False``, ``True`` (tqdm) or a tqdm-like factory; counts rows copied (summed
        over vars).

    Returns
    -------
    ImportResult
        The data_id, the file, the vars written (name, dataset path, ragged, per-row shape,
        dtype) and the rows per phase.

    Raises
    ------
    SourceNotFoundError
        ``path`` does not exist (a ``FileNotFoundError``).
    SourceFormatError
        Not an HDF5 file, damaged or truncated, no such group, external links, virtual or
        externally stored datasets, dangling soft links, bad ragged offsets, no datasets or no
        rows (a ``ValueError``).
    UnsupportedFieldError
        Datasets of strings, compound, enum, reference or opaque types, scalar datasets, or
        subgroups that are not ragged vars (a ``TypeError`` and ``ValueError``).
    InconsistentLengthError
        Datasets of one phase have different lengths.
    VarExistsError
        A target var already exists in the data_id.
    InvalidArgumentError, InvalidPhaseError, InvalidNameError, MissingDependencyError
        Bad arguments (``phase=`` with phase groups), phase spec or names; h5py not
        installed.

    Notes
    -----
    Everything is checked before the first write: links, dtypes, shapes, ragged offsets,
    lengths, the first row of every dataset (a missing compression filter shows here), the
    phase plan and the target. A read error found later (a damaged chunk deep in the file) or
    a failing write removes what the import wrote before the error propagates.

    Examples
    --------
    >>> import os, tempfile
    >>> import h5py, numpy as np
    >>> from storegate import StoreGate
    >>> path = os.path.join(tempfile.mkdtemp(), "d.h5")
    >>> with h5py.File(path, "w") as f:
    ...     f["train/x"] = np.zeros((3, 2), dtype="float16")
    ...     f["test/x"] = np.ones((1, 2), dtype="float16")
    ...     f["train/names"] = np.array([b"a", b"b", b"c"])     # strings: not selected
    >>> sg = StoreGate("numpy")
    >>> res = import_hdf5(path, sg, data_id="d", var_names=["x"])
    >>> res.sizes, [(v.name, v.shape, str(v.dtype)) for v in res.vars]
    ({'train': 3, 'valid': 0, 'test': 1}, [('x', (2,), 'float16')])
    >>> sg.get_data("x", "test")
    array([[1., 1.]], dtype=float16)
    """
    h5py = _h5py()
    if not isinstance(path, str | os.PathLike):
        raise InvalidArgumentError(f"path must be a str or os.PathLike (an HDF5 file), got "
                                   f"{path!r}.")
    file = os.fspath(path)
    cast = float_cast(dtype)
    wanted, renames = _selection(var_names)
    if not os.path.exists(file):
        raise SourceNotFoundError(f"no such file: {file!r}; give the path of an HDF5 file "
                                  "(.h5, .hdf5).", file)
    if os.path.isdir(file):
        raise _format_error(file, "is a directory, not an HDF5 file.")
    try:
        f = h5py.File(file, "r")
    except (OSError, RuntimeError) as err:
        raise _format_error(file, f"is not a readable HDF5 file ({err}).") from None
    with f:
        grp = _open_group(h5py, f, group, file)
        if data_id is None and getattr(storegate, "data_id", True) is None and grp.name == "/":
            stored = f.attrs.get("storegate_data_id")
            if isinstance(stored, bytes):
                stored = stored.decode("utf-8", "replace")
            data_id = stored if isinstance(stored, str) else None
        target = ImportTarget(storegate, data_id)

        parts, sizes, skipped = _plan(h5py, grp, file, wanted, renames, phase)
        # vars in order of first appearance; vars with no rows anywhere are not created
        order: dict[str, _Source] = {}
        for _, sources in parts:
            for src in sources:
                order.setdefault(src.var, src)
        target.check_new(list(order), sizes)
        ragged = [src.var for src in order.values() if src.ragged]
        if ragged and not getattr(storegate.db, "supports_ragged", True):
            raise UnsupportedOperationError(
                f"{file!r} holds ragged vars ({', '.join(ragged)}), but backend "
                f"{storegate.backend!r} cannot store ragged vars; use numpy, zarr, hybrid or "
                "parquet, or leave them out with var_names=.")

        total = sum(src.length for _, sources in parts for src in sources)
        with progress_bar(progress, total=total, unit="rows",
                          desc=f"import {os.path.basename(file)}") as bar, target:
            for plan, sources in parts:
                for src in sources:
                    _copy(src, plan, target, cast, bar, file)
            if do_compile:
                storegate.compile()

    out_vars = tuple(
        ImportedVar(
            name=src.var, field=src.where, ragged=src.ragged,
            shape=(None, *src.row_shape) if src.ragged else src.row_shape,
            dtype=_store_dtype(src, cast), source_dtype=src.dtype,
        )
        for src in order.values()
    )
    logger.info("imported %d vars (%d rows) from %s into data_id %r", len(out_vars),
                sum(sizes.values()), file, target.data_id)
    return ImportResult(target.data_id, (file,), out_vars, sizes, skipped)


def _var_name(name: str, src: _Source, file: str) -> str:
    try:
        return check_name(name)
    except InvalidNameError as err:
        raise InvalidNameError(
            f"{file!r}: {src.where!r} cannot become var {name!r}: {err} Rename it with "
            f"var_names={{{src.name!r}: 'new_name'}}.") from None


def _check_phases_agree(parts: list[tuple[PhasePlan, list[_Source]]], file: str) -> None:
    """A var found in several phase groups must have one kind, dtype and row shape; and no
    two datasets of one group may become the same var."""
    first: dict[str, _Source] = {}
    for _, sources in parts:
        seen: dict[str, _Source] = {}
        for src in sources:
            if src.var in seen:
                raise InvalidNameError(
                    f"var_names maps {seen[src.var].where!r} and {src.where!r} of {file!r} to "
                    f"the same var {src.var!r}; give them distinct names.")
            seen[src.var] = src
            prev = first.setdefault(src.var, src)
            if (prev.ragged, prev.dtype, prev.row_shape) != (src.ragged, src.dtype,
                                                            src.row_shape):
                raise _format_error(
                    file, f"{prev.where!r} holds {prev.describe()} but {src.where!r} holds "
                    f"{src.describe()}; the phases of one var must agree. Import the phases "
                    "separately (group=) under different var names.")


# ---------------------------------------------------------------------------------- export
def _chunk_rows(row_bytes: int, n: int) -> int:
    return int(max(1, min(n, CHUNK_BYTES // max(1, row_bytes))))


def _read_store(db: Any, data_id: str, phase: str, var: str, a: int, b: int, n: int) -> Any:
    return db.read(data_id, phase, var, indexing.normalize(slice(a, b), n))


def _write_dense(grp: Any, db: Any, data_id: str, phase: str, info: Any, compression: Any,
                 bar: ProgressBar) -> None:
    n, k, dt = info.length, tuple(info.row_shape), np.dtype(info.dtype)
    row_bytes = dt.itemsize * math.prod(k)
    if n == 0 or math.prod(k) == 0:  # no elements: nothing to chunk or copy
        grp.create_dataset(info.name, shape=(n, *k), dtype=dt)
        bar.update(n)
        return
    chunk = _chunk_rows(row_bytes, n)
    ds = grp.create_dataset(info.name, shape=(n, *k), dtype=dt, chunks=(chunk, *k),
                            compression=compression)
    step = chunk * max(1, BLOCK_BYTES // (chunk * row_bytes))
    for a in range(0, n, step):
        b = min(n, a + step)
        ds[a:b] = _read_store(db, data_id, phase, info.name, a, b, n)
        bar.update(b - a)


def _write_ragged(grp: Any, db: Any, data_id: str, phase: str, info: Any, compression: Any,
                  bar: ProgressBar) -> None:
    n, k, dt = info.length, tuple(info.row_shape), np.dtype(info.dtype)
    g = grp.create_group(info.name, track_order=True)
    g.attrs[RAGGED_ATTR] = True
    item_bytes = dt.itemsize * math.prod(k)
    if math.prod(k) == 0 or n == 0:  # no value bytes: one read
        whole = _read_store(db, data_id, phase, info.name, 0, n, n)
        g.create_dataset("values", data=whole.values)
        g.create_dataset("offsets", data=np.asarray(whole.offsets, dtype=np.int64))
        bar.update(n)
        return
    extra = info.extra.get("n_values") if isinstance(info.extra, dict) else None
    n_values = int(extra) if isinstance(extra, int | np.integer) else None  # if the backend says
    chunk = (_chunk_rows(item_bytes, n_values) if n_values is not None
             else max(1, CHUNK_BYTES // item_bytes))
    values = g.create_dataset("values", shape=(0, *k), maxshape=(None, *k), dtype=dt,
                              chunks=(chunk, *k), compression=compression)
    offsets = g.create_dataset("offsets", shape=(n + 1,), dtype=np.int64,
                               chunks=(_chunk_rows(8, n + 1),), compression=compression)
    avg = n_values / n if n_values is not None else 16.0
    step = int(max(1, BLOCK_BYTES // max(1.0, avg * item_bytes + 8)))
    pos = 0
    offsets[0] = 0
    for a in range(0, n, step):
        b = min(n, a + step)
        rows = _read_store(db, data_id, phase, info.name, a, b, n)
        if not isinstance(rows, RaggedArray):  # pragma: no cover - backend contract
            raise TypeError(f"backend returned {type(rows).__name__} for ragged var "
                            f"{info.name!r}")
        m = int(rows.values.shape[0])
        values.resize(pos + m, axis=0)
        values[pos:pos + m] = rows.values
        offsets[a + 1:b + 1] = rows.offsets[1:] + pos
        pos += m
        bar.update(b - a)


def _export_vars(db: Any, data_id: str, phases: tuple[str, ...],
                 var_names: Any) -> dict[str, list[Any]]:
    """{phase: [VarInfo of each var to write]}, lengths checked."""
    if var_names is None:
        chosen = {ph: db.var_names(data_id, ph) for ph in phases}
    else:
        names = [var_names] if isinstance(var_names, str) else var_names
        if not isinstance(names, list | tuple) or not all(isinstance(v, str) for v in names):
            raise InvalidArgumentError(
                f"var_names must be None, a var name or a list of var names, got "
                f"{var_names!r}.")
        if len(set(names)) != len(names):
            raise InvalidArgumentError(f"var_names names a var twice: {list(names)}.")
        chosen = {ph: [v for v in names if db.has_var(data_id, ph, v)] for ph in phases}
        missing = [v for v in names if not any(v in chosen[ph] for ph in phases)]
        if missing:
            present = {ph: db.var_names(data_id, ph) for ph in phases}
            raise VarNotFoundError(
                f"var {missing[0]!r} is not in data_id {data_id!r} (phase"
                f"{'s' if len(phases) > 1 else ''} {', '.join(phases)}); vars there: "
                f"{present}.")
    out: dict[str, list[Any]] = {}
    for ph in phases:
        infos = [db.info(data_id, ph, v) for v in chosen[ph]]
        for info in infos[1:]:
            if info.length != infos[0].length:
                raise InconsistentLengthError(
                    f"data_id {data_id!r}, phase {ph!r}: var {infos[0].name!r} has "
                    f"{infos[0].length} rows but {info.name!r} has {info.length}; the phase "
                    "is not consistent. Fix the vars (sg.compile() names the problem), or "
                    "export a selection with var_names=.")
        out[ph] = infos
    return out


def export_hdf5(
    storegate: Any,
    path: str | os.PathLike[str],
    data_id: str | None = None,
    phase: str = "all",
    *,
    var_names: Sequence[str] | None = None,
    overwrite: bool = False,
    compression: str | None = None,
    progress: Progress = None,
) -> ExportResult:
    """Write one data_id (all phases, or one) to an HDF5 file that :func:`import_hdf5` reads
    back exactly.

    Parameters
    ----------
    storegate
        The :class:`~storegate.StoreGate` to read (any backend). Its current data_id is not
        changed.
    path
        The HDF5 file to write (local path). It is written beside, then renamed into place.
    data_id
        The data_id to export. ``None``: the gate's current data_id.
    phase
        ``'all'`` (default): groups ``/train``, ``/valid``, ``/test`` (all three, even empty),
        each holding that phase's vars. A phase name: that phase's vars at the root.
    var_names
        The vars to export (list order). ``None``: every var of the phase(s), in store order.
        With ``phase='all'`` each group gets the listed vars its phase holds.
    overwrite
        Replace an existing file. Without it an existing ``path`` raises
        :class:`~storegate.convert.DestinationExistsError` and is left untouched.
    compression
        ``None`` (default, fastest to read), ``'gzip'`` or ``'lzf'``, passed to h5py.
    progress
        ``None``/``False``, ``True`` (tqdm) or a tqdm-like factory; counts rows written.

    Returns
    -------
    ExportResult
        The file, data_id, phases, var names (store order) and rows per phase.

    Raises
    ------
    DestinationExistsError
        ``path`` exists and ``overwrite`` is false (a ``FileExistsError``).
    DataIdNotFoundError, VarNotFoundError, UnknownPhaseError
        No such data_id, var or phase.
    InconsistentLengthError
        Vars of one exported phase differ in length.
    InvalidArgumentError, MissingDependencyError
        Bad arguments; h5py not installed.

    Notes
    -----
    Regular vars become datasets with the exact dtype and shape, chunked by about 1 MiB of rows;
    ragged vars become groups of ``values`` and ``offsets`` marked ``storegate_ragged = True``.
    The store is read in blocks of about 16 MiB of rows. A failure (or an interrupt) leaves no
    file at ``path`` (and an existing one untouched).

    Examples
    --------
    >>> import os, tempfile
    >>> import h5py, numpy as np
    >>> from storegate import StoreGate
    >>> sg = StoreGate("numpy", data_id="d")
    >>> sg.add_data("x", np.arange(6, dtype="int8").reshape(3, 2))
    >>> sg.add_data("tracks", [np.zeros(2), np.ones(1), np.zeros(4)])
    >>> path = os.path.join(tempfile.mkdtemp(), "d.h5")
    >>> res = export_hdf5(sg, path, phase="train")
    >>> res.var_names, res.sizes
    (('x', 'tracks'), {'train': 3})
    >>> with h5py.File(path) as f:
    ...     f["x"].dtype, f["tracks/offsets"][:].tolist(), int(f.attrs["storegate_format"])
    (dtype('int8'), [0, 2, 3, 7], 1)
    """
    h5py = _h5py()
    from ..gate import StoreGate

    if not isinstance(storegate, StoreGate):
        raise InvalidArgumentError(
            f"storegate must be a StoreGate, got {type(storegate).__name__}.")
    if not isinstance(path, str | os.PathLike):
        raise InvalidArgumentError(f"path must be a str or os.PathLike, got {path!r}.")
    if compression not in _COMPRESSIONS:
        raise InvalidArgumentError(
            f"compression={compression!r} is not one of None, 'gzip', 'lzf'.")
    db = storegate.db
    if data_id is None:
        data_id = storegate.data_id
        if data_id is None:
            raise InvalidArgumentError(
                "the StoreGate has no data_id; pass data_id='name' to export_hdf5.")
    check_name(data_id, "data_id")
    if data_id not in db.data_ids():
        raise DataIdNotFoundError(
            f"data_id {data_id!r} is not in the store; it holds {db.data_ids()}.")
    ph = check_phase(phase)
    phases: tuple[str, ...] = PHASES if ph == ALL else (ph,)
    plan = _export_vars(db, data_id, phases, var_names)
    sizes = {p: (plan[p][0].length if plan[p] else 0) for p in phases}
    order: dict[str, None] = {}
    for p in phases:
        order.update(dict.fromkeys(info.name for info in plan[p]))
    total = sum(info.length for p in phases for info in plan[p])

    dst = os.path.abspath(os.fspath(path))
    with progress_bar(progress, total=total, unit="rows",
                      desc=f"export {os.path.basename(dst)}") as bar, \
            staged(dst, overwrite=overwrite) as tmp, \
            h5py.File(tmp, "w", track_order=True) as f:
        f.attrs["storegate_data_id"] = data_id
        f.attrs["storegate_format"] = FORMAT_VERSION
        f.attrs["storegate_phase"] = ph
        for p in phases:
            grp = f if ph != ALL else f.create_group(p, track_order=True)
            for info in plan[p]:
                write = _write_ragged if info.ragged else _write_dense
                write(grp, db, data_id, p, info, compression, bar)
    logger.info("exported data_id %r (%d vars, %d rows) to %s", data_id, len(order),
                sum(sizes.values()), dst)
    return ExportResult(dst, data_id, phases, tuple(order), sizes)
