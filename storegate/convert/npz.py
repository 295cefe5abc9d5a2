"""Import NPZ files into a StoreGate and export a data_id back to NPZ.

Two layouts are understood:

**kinoml** (``DatasetProvider.to_dict_of_arrays`` then ``np.savez``):

* ``X`` — every item has the same shape: one dense var ``X`` of shape ``(N, ...)``;
* ``X_s{i}_`` — one member per item ``i`` (shapes differ): one **ragged** var ``X``;
* ``X_s{i}_a{j}_`` — item ``i``'s array ``j``: one var ``X_a{j}`` per ``j``, dense when all
  items' arrays ``j`` have the same shape, ragged otherwise (the trailing ``_`` is optional,
  any letters may stand for ``s``/``a``, items are numbered ``0..N-1``);
* ``y`` — the label, a var ``y``; any other per-row member becomes a var of its name;
* ``idx_train``, ``idx_test``, ``idx_val`` — row numbers of the phases (``val`` is storegate's
  ``valid``); rows keep file order inside a phase, rows in no index are skipped.

**plain** — one var per member (all with the same number of rows); ``idx_*`` members are
phases as above, and a member pair ``<v>.values`` + ``<v>.offsets`` (flat values and int64
row offsets, how :func:`export_npz` writes a ragged var in this layout) is a ragged var ``v``.

Reading is streamed: the zip directory and every member's ``.npy`` header are parsed once
(:class:`~storegate.convert.npzfile.NpzReader`; never ``NpzFile[key]``, whose per-key lookup
costs ~45 us per member), shapes are planned before anything is written, then rows are copied
batch by batch (about 32 MiB at a time) in item order, so memory stays bounded whatever the
file size. Each member's CRC-32 is checked. Pickled object arrays are refused from their header
and never unpickled.

Examples
--------
>>> import os, tempfile, numpy as np
>>> from storegate import StoreGate
>>> from storegate.convert import import_npz, export_npz
>>> rng = np.random.default_rng(0)
>>> d = tempfile.mkdtemp()
>>> items = {f"X_s{i}_a0_": rng.standard_normal((n, 4)).astype("f4")
...          for i, n in enumerate((3, 5, 2, 4))}
>>> items |= {f"X_s{i}_a1_": np.full(8, i, "i8") for i in range(4)}
>>> np.savez(os.path.join(d, "kinase.npz"), **items, y=np.arange(4, dtype="f4"),
...          idx_train=[0, 1], idx_val=[2], idx_test=[3])
>>> sg = StoreGate("numpy")
>>> res = import_npz(os.path.join(d, "kinase.npz"), sg, data_id="kinase")
>>> [(v.name, v.ragged, v.shape) for v in res.vars]
[('X_a0', True, (None, 4)), ('X_a1', False, (8,)), ('y', False, ())]
>>> res.sizes
{'train': 2, 'valid': 1, 'test': 1}
>>> sg.get_data("X_a0", "train", 1, ragged_as="list").shape
(5, 4)
>>> out = export_npz(sg, os.path.join(d, "again.npz"))      # kinoml layout again
>>> sorted(np.load(out.path).keys())[:3]
['X_s0_a0_', 'X_s0_a1_', 'X_s1_a0_']
"""

from __future__ import annotations

import logging
import os
import re
import zipfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import (
    InconsistentLengthError,
    IndexOutOfRangeError,
    InvalidArgumentError,
    InvalidPhaseError,
    VarNotFoundError,
)
from ..phases import PHASES, check_phase
from ..progress import Progress, progress_bar
from ..ragged import RaggedArray
from .errors import SourceFormatError, UnsupportedFieldError
from .npzfile import Member, NpzReader
from .phase_plan import plan_phases, select_rows
from .results import ExportResult, ImportedVar, ImportResult
from .staging import staged
from .target import ImportTarget, float_cast

__all__ = ["export_npz", "import_npz"]

logger = logging.getLogger(__name__)

#: Source bytes copied per batch.
BATCH_BYTES = 32 * 2**20
#: Key of the data_id attribute recording where the data came from.
SOURCE_ATTR = "source"

_ITEM_KEY = re.compile(r"^X_([A-Za-z])(\d+)(?:_([A-Za-z])(\d+))?(_?)$")
_IDX = {"idx_train": "train", "idx_val": "valid", "idx_valid": "valid", "idx_test": "test"}
_LAYOUTS = ("auto", "kinoml", "plain")


# ---------------------------------------------------------------------------------- plan
@dataclass
class _Var:
    """One var to import and where its rows come from.

    ``kind`` is ``'items'`` (one member per row), ``'column'`` (one member, rows along axis
    0) or ``'csr'`` (a values member plus offsets)."""

    name: str
    src: str
    kind: str
    dtype: np.dtype
    ragged: bool = False
    shape: tuple[int, ...] = ()  # regular: row shape; ragged: item shape k
    members: list[Member] = field(default_factory=list)
    offsets: np.ndarray | None = None
    transposed: bool = False

    @property
    def rows(self) -> int:
        if self.kind == "items":
            return len(self.members)
        if self.kind == "csr":
            assert self.offsets is not None
            return len(self.offsets) - 1
        return self.members[0].shape[0]

    @property
    def nbytes(self) -> int:
        return sum(m.nbytes for m in self.members)


def _common_dtype(reader: NpzReader, name: str, members: Sequence[Member]) -> np.dtype:
    dtypes = {m.dtype for m in members}
    if len(dtypes) == 1:
        return dtypes.pop()
    common = np.result_type(*dtypes)
    if not all(np.can_cast(d, common, "safe") for d in dtypes):
        a, b = sorted(dtypes, key=str)[:2]
        raise UnsupportedFieldError(
            f"{reader.path!r}: the members of var {name!r} have dtypes {a} and {b}, which do "
            "not convert into one another without loss; re-save them with one dtype.",
            reader.path)
    return np.dtype(common)


def _item_var(reader: NpzReader, name: str, pattern: str, members: list[Member],
              always_ragged: bool, transposed: bool) -> _Var:
    """Plan a var from one member per item: dense if every item has one shape (unless
    ``always_ragged``), else ragged along the items' first axis."""
    dtype = _common_dtype(reader, name, members)
    shapes = {m.shape for m in members}
    if transposed:
        bad = [s for s in shapes if len(s) != 2]
        if bad:
            raise UnsupportedFieldError(
                f"{reader.path!r}: var {name!r} is to be stored transposed, but it has items "
                f"of shape {bad[0]}; transpose= takes 2-D items (k, n_i) only.", reader.path)
        shapes = {s[::-1] for s in shapes}
    if len(shapes) == 1 and not (always_ragged and len(next(iter(shapes))) >= 1):
        return _Var(name, pattern, "items", dtype, False, next(iter(shapes)), members,
                    transposed=transposed)
    trailing = {s[1:] for s in shapes}
    if any(len(s) == 0 for s in shapes) or len(trailing) != 1:
        examples: dict[tuple[int, tuple[int, ...]], tuple[str, tuple[int, ...]]] = {}
        for m in members:
            s = m.shape[::-1] if transposed else m.shape
            examples.setdefault((len(s), s[1:]), (m.key, m.shape))
        (k1, s1), (k2, s2) = list(examples.values())[:2]
        hint = ""
        if not transposed and all(len(s) == 2 for s in shapes) and \
                len({s[0] for s in shapes}) == 1:
            hint = (f" Its items vary along their last axis; pass transpose=[{name!r}] to "
                    "store them as rows (n_i, k).")
        raise UnsupportedFieldError(
            f"{reader.path!r}: var {name!r} cannot be stored: member {k1!r} has shape {s1} "
            f"and member {k2!r} has shape {s2}. A ragged var lets items differ in their "
            f"first axis only.{hint}", reader.path)
    return _Var(name, pattern, "items", dtype, True, next(iter(trailing)), members,
                transposed=transposed)


def _column_var(reader: NpzReader, name: str, m: Member) -> _Var:
    if not m.shape:
        raise UnsupportedFieldError(
            f"{reader.path!r}: member {m.key!r} is a scalar (shape ()); a var needs one row "
            "per item. Leave it out with var_names=, or re-save it with a row axis.",
            reader.path)
    return _Var(name, m.key, "column", m.dtype, False, m.shape[1:], [m])


def _csr_var(reader: NpzReader, name: str, values: Member, offsets: Member) -> _Var:
    off = reader.read(offsets)
    if (off.ndim != 1 or off.dtype.kind not in "iu" or off.size == 0 or off[0] != 0
            or (off.size > 1 and bool((np.diff(off) < 0).any()))
            or not values.shape or int(off[-1]) != values.shape[0]):
        raise SourceFormatError(
            f"{reader.path!r}: members {values.key!r} and {offsets.key!r} do not form a ragged "
            "var: the offsets must be 1-D integers starting at 0, non-decreasing, and end at "
            f"the number of values ({values.shape[0] if values.shape else 0}).", reader.path)
    return _Var(name, values.key.removesuffix(".values"), "csr", values.dtype, True,
                values.shape[1:], [values], off.astype(np.int64))


@dataclass
class _Plan:
    layout: str
    vars: list[_Var]
    phases: dict[str, np.ndarray]
    x_layout: str = ""
    underscore: bool = True
    letters: tuple[str, str] = ("s", "a")


def _plan(reader: NpzReader, layout: str, transpose: Sequence[str]) -> _Plan:
    members = reader.members
    items: dict[int | None, dict[int, Member]] = {}  # j (None for X_s{i}) -> i -> member
    keys = {m.key: m for m in members}
    underscores: set[bool] = set()
    letters: set[tuple[str, str]] = set()
    rest: list[Member] = []
    phases: dict[str, np.ndarray] = {}
    for m in members:
        if m.key in _IDX:
            idx = reader.read(m)
            if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iub"):
                raise SourceFormatError(
                    f"{reader.path!r}: member {m.key!r} should hold row numbers (1-D "
                    f"integers), but it is {idx.dtype} {idx.shape}.", reader.path)
            phases[m.key] = idx
            continue
        hit = _ITEM_KEY.match(m.key) if layout != "plain" else None
        if hit is None:
            rest.append(m)
            continue
        j = None if hit.group(4) is None else int(hit.group(4))
        i = int(hit.group(2))
        underscores.add(hit.group(5) == "_")
        letters.add((hit.group(1), hit.group(3) or "a"))
        if i in items.setdefault(j, {}):
            raise SourceFormatError(
                f"{reader.path!r}: item {i} appears twice for array {j} (members "
                f"{items[j][i].key!r} and {m.key!r}).", reader.path)
        items[j][i] = m
    is_kinoml = bool(items) or ("X" in keys and layout != "plain")
    if layout == "kinoml" and not is_kinoml:
        raise SourceFormatError(
            f"{reader.path!r} is not in kinoml's layout (no member X, X_s{{i}}_ or "
            f"X_s{{i}}_a{{j}}_; it has {reader.keys()[:5]}...); use layout='plain'.",
            reader.path)
    plan = _Plan("kinoml" if is_kinoml else "plain", [], phases,
                 underscore=all(underscores) if underscores else True,
                 letters=next(iter(letters)) if len(letters) == 1 else ("s", "a"))
    if items:
        if None in items and len(items) > 1:
            raise SourceFormatError(
                f"{reader.path!r} mixes X_s{{i}}_ members with X_s{{i}}_a{{j}}_ members; "
                "kinoml writes one of the two layouts.", reader.path)
        if "X" in keys:
            raise SourceFormatError(
                f"{reader.path!r} has a member X as well as per-item X_s... members; kinoml "
                "writes one of the layouts.", reader.path)
        n = max(len(by_i) for by_i in items.values())
        for j in sorted(items, key=lambda j: -1 if j is None else j):
            by_i = items[j]
            if len(by_i) != n or min(by_i) != 0 or max(by_i) != n - 1:
                missing = sorted(set(range(n)) - set(by_i))[:3]
                raise SourceFormatError(
                    f"{reader.path!r}: items must be numbered 0..{n - 1} for every array, but "
                    f"array {'X_s' if j is None else f'a{j}'} lacks items {missing} (or has "
                    "numbers beyond).", reader.path)
            name = "X" if j is None else f"X_a{j}"
            ordered = [by_i[i] for i in range(n)]
            plan.vars.append(_item_var(reader, name, "X_s{i}" if j is None else
                                       f"X_s{{i}}_a{j}", ordered, j is None,
                                       name in transpose))
        plan.x_layout = "X_s" if None in items else "X_s_a"
    elif plan.layout == "kinoml":
        plan.x_layout = "X"
    pairs = {m.key.removesuffix(".values") for m in rest if m.key.endswith(".values")
             and m.key.removesuffix(".values") + ".offsets" in keys}
    for m in rest:
        base = m.key.rsplit(".", 1)[0]
        if base in pairs and m.key in (base + ".values", base + ".offsets"):
            if m.key.endswith(".values"):
                plan.vars.append(_csr_var(reader, base, m, keys[base + ".offsets"]))
            continue
        plan.vars.append(_column_var(reader, m.key, m))
    if not plan.vars:
        raise SourceFormatError(f"{reader.path!r} holds no arrays to import.", reader.path)
    return plan


def _check_rows(plan: _Plan, path: str) -> None:
    """Every var to import has the same number of rows (checked after ``var_names=``)."""
    lengths = {v.name: v.rows for v in plan.vars}
    if len(set(lengths.values())) > 1:
        raise SourceFormatError(
            f"{path!r}: the arrays have different numbers of rows ({lengths}); every "
            "var of a dataset needs one row per item. Select members with var_names=.", path)


def _select(plan: _Plan, var_names: Any, path: str) -> None:
    """Apply ``var_names``: a list selecting vars (in that order) or a mapping renaming them."""
    if var_names is None:
        return
    known = [v.name for v in plan.vars]
    by_name = {v.name: v for v in plan.vars}
    if isinstance(var_names, Mapping):
        bad = [k for k in var_names if k not in by_name]
        if bad:
            raise VarNotFoundError(
                f"var_names names {bad} which {path!r} does not provide; its vars are {known}.")
        renamed = [str(var_names.get(k, k)) for k in known]
        if len(set(renamed)) != len(renamed):
            raise InvalidArgumentError(
                f"var_names {dict(var_names)!r} gives two vars of {path!r} the same name "
                f"({renamed}); choose distinct names.")
        for old, new in var_names.items():
            by_name[old].name = str(new)
        return
    if isinstance(var_names, str) or not isinstance(var_names, Sequence):
        raise InvalidArgumentError(
            f"var_names must be a list of vars to import or a mapping {{var: new name}}, got "
            f"{var_names!r}.")
    bad = [k for k in var_names if k not in by_name]
    if bad:
        raise VarNotFoundError(
            f"var_names names {bad} which {path!r} does not provide; its vars are {known}.")
    if len(set(var_names)) != len(var_names):
        raise InvalidArgumentError(
            f"var_names {list(var_names)} names a var twice; list each var of {path!r} once.")
    plan.vars = [by_name[k] for k in var_names]


# ---------------------------------------------------------------------------------- reading
class _Stream:
    """Sequential row blocks of one stored C-ordered member, CRC-checked as they pass."""

    def __init__(self, reader: NpzReader, m: Member) -> None:
        self.reader, self.m = reader, m
        self.whole: np.ndarray | None = None
        self.row = 0
        self.crc = 0
        if m.compressed or (m.fortran and len(m.shape) > 1):
            self.whole = reader.read(m)  # checked by read(); cannot be streamed by rows
        else:
            self.crc = reader.header_crc(m)

    def take(self, start: int, stop: int) -> np.ndarray:
        if self.whole is not None:
            return self.whole[start:stop]
        assert start == self.row, "rows are read in order"
        block = self.reader.read_rows(self.m, start, stop)
        self.crc = zlib.crc32(block.data if block.flags.c_contiguous else block.tobytes(),
                              self.crc)
        self.row = stop
        if stop == self.m.shape[0] and self.crc != self.m.crc:
            raise SourceFormatError(
                f"{self.reader.path!r}: member {self.m.key!r} is damaged (CRC-32 mismatch).",
                self.reader.path)
        return block


def _batches(plan: _Plan, n: int, batch_bytes: int) -> Iterator[tuple[int, int]]:
    per_row = max(1, sum(v.nbytes for v in plan.vars) // max(n, 1))
    step = int(np.clip(batch_bytes // per_row, 1, 1 << 22))
    for g0 in range(0, n, step):
        yield g0, min(n, g0 + step)


def _decode(reader: NpzReader, plan: _Plan, streams: dict[str, _Stream], g0: int, g1: int,
            cast: np.dtype | None) -> list[np.ndarray | RaggedArray]:
    """Rows ``g0:g1`` of every var (item members of all vars read in one pass)."""
    item_vars = [v for v in plan.vars if v.kind == "items"]
    wanted = [m for v in item_vars for m in v.members[g0:g1]]
    arrays = iter(reader.read_many(wanted))
    decoded: dict[int, np.ndarray | RaggedArray] = {}
    for v in item_vars:
        parts = [next(arrays) for _ in range(g1 - g0)]
        if v.transposed:
            parts = [p.T for p in parts]
        if v.ragged:
            offsets = np.zeros(len(parts) + 1, dtype=np.int64)
            np.cumsum([p.shape[0] for p in parts], out=offsets[1:])
            values = np.concatenate(parts, axis=0, dtype=v.dtype) if parts else \
                np.empty((0, *v.shape), v.dtype)
            decoded[id(v)] = RaggedArray(values, offsets, validate=False)
        else:
            decoded[id(v)] = np.stack(parts).astype(v.dtype, copy=False)
    out: list[np.ndarray | RaggedArray] = []
    for v in plan.vars:
        data: np.ndarray | RaggedArray
        if v.kind == "items":
            data = decoded[id(v)]
        elif v.kind == "column":
            data = streams[v.src].take(g0, g1)
        else:
            assert v.offsets is not None
            a, b = int(v.offsets[g0]), int(v.offsets[g1])
            values = streams[v.src].take(a, b)
            data = RaggedArray(values, v.offsets[g0:g1 + 1] - a, validate=False)
        if cast is not None and v.dtype.kind == "f":
            if isinstance(data, RaggedArray):
                data = RaggedArray(data.values.astype(cast), data.offsets, validate=False)
            else:
                data = data.astype(cast)
        out.append(data)
    return out


# ---------------------------------------------------------------------------------- import
def import_npz(
    path: str | os.PathLike[str],
    storegate: Any,
    data_id: str | None = None,
    *,
    layout: str = "auto",
    var_names: Sequence[str] | Mapping[str, str] | None = None,
    phase: Any = None,
    dtype: Any = None,
    transpose: Sequence[str] = (),
    batch_bytes: int = BATCH_BYTES,
    do_compile: bool = True,
    progress: Progress = None,
) -> ImportResult:
    """Import an NPZ file (kinoml's layouts or one var per member) into a StoreGate.

    Parameters
    ----------
    path
        The ``.npz`` file (``np.savez`` or ``np.savez_compressed``).
    storegate
        The :class:`~storegate.StoreGate` to write into (any backend).
    data_id
        The data_id to write to; it becomes the gate's current data_id. ``None``: the gate's
        current data_id.
    layout
        ``'auto'`` (kinoml when the file has kinoml's ``X``/``X_s...`` members, else plain),
        ``'kinoml'`` or ``'plain'`` (every member a var, ``X_s...`` names included).
    var_names
        A list choosing which vars to import (in that order), or a mapping renaming them
        ``{'X_a0': 'ligand', 'y': 'pIC50'}``. Names are the var names the layout gives
        (``X``, ``X_a0``, ``y``, member keys).
    phase
        Where rows go, as for every importer (see :mod:`storegate.convert.phase_plan`).
        ``None``: the file's ``idx_train``/``idx_val``/``idx_test`` members if it has them,
        else every row to ``'train'``.
    dtype
        Cast floating-point vars to this float dtype (e.g. ``'float32'``).
    transpose
        Vars (layout names) whose per-item arrays are ``(k, n_i)``, varying along their last
        axis (unpadded one-hot ``(53, L)``, an edge index ``(2, E)``); stored as rows
        ``(n_i, k)``.
    batch_bytes
        Source bytes copied per batch (bounds memory).
    do_compile
        Compile the data_id afterwards.
    progress
        ``None``, ``True`` (tqdm) or a tqdm-like factory; counts rows.

    Returns
    -------
    ImportResult
        The data_id, the file, the vars written and the rows per phase.

    Raises
    ------
    SourceNotFoundError
        The file does not exist.
    SourceFormatError
        Not an NPZ file, truncated or damaged (CRC mismatch), members of different row
        counts, a kinoml layout with missing items, bad ``idx_*`` members.
    UnsupportedFieldError
        An object (pickled) array, a dtype storegate cannot store, a scalar member, items
        whose shapes differ beyond their first axis.
    VarExistsError, InconsistentLengthError
        The data_id already holds a var of the same name, or phases of other lengths.

    Notes
    -----
    Everything that can be seen from the headers is checked before the first row is
    written; a failure while copying (a damaged member deep in the file, a full disk)
    deletes what the import wrote, so the store is left as it was. The source layout is
    recorded in the data_id's attributes (``'source'``) so that :func:`export_npz` can write
    the same layout back.

    Examples
    --------
    >>> import os, tempfile, numpy as np
    >>> from storegate import StoreGate
    >>> path = os.path.join(tempfile.mkdtemp(), "plain.npz")
    >>> np.savez(path, pt=np.arange(10.0), label=np.arange(10) % 2)
    >>> sg = StoreGate("numpy")
    >>> res = import_npz(path, sg, data_id="jets", phase=(0.8, 0.1, 0.1))
    >>> res.var_names, res.sizes
    (['pt', 'label'], {'train': 8, 'valid': 1, 'test': 1})
    """
    if layout not in _LAYOUTS:
        raise InvalidArgumentError(f"layout must be one of {_LAYOUTS}, got {layout!r}.")
    if isinstance(transpose, str):
        transpose = [transpose]
    if not isinstance(batch_bytes, int) or isinstance(batch_bytes, bool) or batch_bytes < 1:
        raise InvalidArgumentError(f"batch_bytes must be a positive int, got {batch_bytes!r}.")
    target = ImportTarget(storegate, data_id)
    cast = float_cast(dtype)
    with NpzReader(path) as reader:
        spath = reader.path
        plan = _plan(reader, layout, list(transpose))
        unknown = [t for t in transpose
                   if t not in {v.name for v in plan.vars if v.kind == "items"}]
        if unknown:
            raise InvalidArgumentError(
                f"transpose names {unknown}, which are not per-item vars of {spath!r} "
                f"({[v.name for v in plan.vars if v.kind == 'items']}).")
        _select(plan, var_names, spath)
        _check_rows(plan, spath)
        n = plan.vars[0].rows
        if phase is None and plan.phases:
            spec: Any = {_IDX[k]: v for k, v in plan.phases.items()}
        else:
            if phase is not None and plan.phases:
                logger.info("%s: phase=%r given; the file's idx_* members are ignored", spath,
                            phase)
            spec = phase
        try:
            phase_plan = plan_phases(spec, n)
        except (InvalidPhaseError, IndexOutOfRangeError) as err:
            raise type(err)(f"{spath!r}: {err}") from None
        sizes = phase_plan.sizes()
        target.check_new([v.name for v in plan.vars], sizes)

        streams = {v.src: _Stream(reader, v.members[0])
                   for v in plan.vars if v.kind != "items"}
        with target, progress_bar(progress, total=n, unit="rows",
                                  desc=os.path.basename(spath)) as bar:
            for g0, g1 in _batches(plan, n, batch_bytes):
                pieces = list(phase_plan.pieces(g0, g1))
                decoded = _decode(reader, plan, streams, g0, g1, cast)
                for v, data in zip(plan.vars, decoded, strict=True):
                    for ph, sel in pieces:
                        target.add(v.name, select_rows(data, sel), ph)
                bar.update(g1 - g0)
            _record_source(target, spath, plan)
            if do_compile:
                target.storegate.compile()
    out = tuple(
        ImportedVar(v.name, v.src, v.ragged, (None, *v.shape) if v.ragged else v.shape,
                    cast if cast is not None and v.dtype.kind == "f" else v.dtype, v.dtype,
                    v.transposed)
        for v in plan.vars)
    logger.info("imported %s into data_id %r: %d rows, vars %s", spath, target.data_id, n,
                [v.name for v in out])
    return ImportResult(target.data_id, (spath,), out, sizes, n - sum(sizes.values()))


def _record_source(target: ImportTarget, path: str, plan: _Plan) -> None:
    db = target.db
    attrs = db.get_attrs(target.data_id)
    attrs[SOURCE_ATTR] = {
        "format": "npz", "file": os.path.basename(path), "layout": plan.layout,
        "x_layout": plan.x_layout, "underscore": plan.underscore,
        "letters": list(plan.letters), "indices": bool(plan.phases),
        "transposed": [v.name for v in plan.vars if v.transposed],
    }
    db.set_attrs(target.data_id, attrs)


# ---------------------------------------------------------------------------------- export
def _export_vars(storegate: Any, data_id: str, phases: list[str],
                 var_names: Sequence[str] | None) -> list[str]:
    db = storegate.db
    if var_names is None:
        names: list[str] = []
        for ph in phases:
            names += [v for v in db.var_names(data_id, ph) if v not in names]
        if not names:
            raise VarNotFoundError(
                f"data_id {data_id!r} holds no vars in phase(s) {phases}; nothing to export.")
    else:
        names = [var_names] if isinstance(var_names, str) else list(var_names)
    for ph in phases:
        present = db.var_names(data_id, ph)
        if not present:
            continue
        missing = [v for v in names if v not in present]
        if missing:
            raise VarNotFoundError(
                f"var(s) {missing} are not in phase {ph!r} of data_id {data_id!r} (it has "
                f"{present}); export one phase at a time, or choose var_names present in "
                "every phase.")
        lengths = {v: db.info(data_id, ph, v).length for v in names}
        if len(set(lengths.values())) > 1:
            raise InconsistentLengthError(
                f"phase {ph!r} of data_id {data_id!r} has vars of different lengths "
                f"({lengths}); an exported file needs one row per item. Fix or delete the "
                "vars first (storegate check STORE shows the problems).")
    return names


def _npy_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    import io

    buf = io.BytesIO()
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
              "shape": shape}
    np.lib.format.write_array_header_2_0(buf, header) if _needs_v2(header) else \
        np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue()


def _needs_v2(header: dict[str, Any]) -> bool:
    return len(repr(header)) > 65000


def _member_bytes(arr: np.ndarray) -> list[bytes | memoryview]:
    arr = np.ascontiguousarray(arr)
    return [_npy_header(arr.dtype, arr.shape), arr.reshape(-1).view(np.uint8).data]


class _Writer:
    """Members appended to a zip archive, big ones streamed in blocks."""

    def __init__(self, path: str, compressed: bool) -> None:
        self.method = zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED
        self.zf = zipfile.ZipFile(path, "w", compression=self.method, allowZip64=True)

    def small(self, key: str, arr: np.ndarray) -> None:
        info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
        info.compress_type = self.method
        self.zf.writestr(info, b"".join(_member_bytes(arr)))

    def stream(self, key: str, dtype: np.dtype, shape: tuple[int, ...],
               blocks: Iterator[np.ndarray]) -> None:
        with self.zf.open(key + ".npy", "w", force_zip64=True) as fp:
            fp.write(_npy_header(dtype, shape))
            written = 0
            for block in blocks:
                block = np.ascontiguousarray(block, dtype=dtype)
                fp.write(block.reshape(-1).view(np.uint8).data)
                written += block.shape[0] if block.ndim else 1
            assert written == shape[0], (key, written, shape)

    def close(self) -> None:
        self.zf.close()


def _aligned_blocks(storegate: Any, data_id: str, phases: list[str], names: Sequence[str],
                    block_bytes: int) -> Iterator[list[np.ndarray | RaggedArray]]:
    """The same row blocks of several vars (phase after phase), ~``block_bytes`` each."""
    db = storegate.db
    for ph in phases:
        present = db.var_names(data_id, ph)
        if not present or names[0] not in present:
            continue
        infos = [db.info(data_id, ph, v) for v in names]
        length = infos[0].length
        per_row = max(1, sum(i.nbytes for i in infos) // max(1, length))
        step = int(max(1, block_bytes // per_row))
        for a in range(0, length, step):
            sel = slice(a, min(length, a + step), 1)
            yield [db.read(data_id, ph, v, sel) for v in names]


def export_npz(
    storegate: Any,
    path: str | os.PathLike[str],
    data_id: str | None = None,
    phase: str = "all",
    *,
    var_names: Sequence[str] | None = None,
    layout: str = "auto",
    compressed: bool = False,
    overwrite: bool = False,
    progress: Progress = None,
) -> ExportResult:
    """Export a data_id (one phase or all) to an NPZ file.

    Parameters
    ----------
    storegate
        The :class:`~storegate.StoreGate` to read.
    path
        The ``.npz`` file to write (written beside it under a temporary name, then renamed).
    data_id
        The data_id to export; ``None``: the gate's current one.
    phase
        ``'all'`` (rows of train, valid and test in that order, plus ``idx_train``,
        ``idx_val`` and ``idx_test`` members holding each phase's row numbers, unless every
        row is in train) or one phase (no ``idx_*`` members).
    var_names
        The vars to export (default: all, in store order).
    layout
        ``'plain'``: one member per var, a ragged var as ``<var>.values`` + ``<var>.offsets``.
        ``'kinoml'``: kinoml's layout — var ``X`` (dense as ``X``, ragged as ``X_s{i}_``) or
        vars ``X_a{j}`` as ``X_s{i}_a{j}_``, every other var (``y``) as a member of its name.
        ``'auto'`` (default): the layout the data_id was imported from, else plain.
    compressed
        Deflate the members (like ``np.savez_compressed``).
    overwrite
        Replace an existing file.
    progress
        ``None``, ``True`` (tqdm) or a tqdm-like factory; counts rows.

    Returns
    -------
    ExportResult

    Examples
    --------
    >>> import os, tempfile, numpy as np
    >>> from storegate import StoreGate
    >>> sg = StoreGate("numpy", data_id="jets")
    >>> sg.add_data("pt", np.arange(5.0), phase=(3, 1, 1))
    >>> res = export_npz(sg, os.path.join(tempfile.mkdtemp(), "jets.npz"))
    >>> with np.load(res.path) as f:
    ...     f["pt"].tolist(), f["idx_val"].tolist()
    ([0.0, 1.0, 2.0, 3.0, 4.0], [3])
    """
    from ..gate import StoreGate

    if not isinstance(storegate, StoreGate):
        raise InvalidArgumentError(
            f"storegate must be a StoreGate, got {type(storegate).__name__}.")
    if layout not in _LAYOUTS:
        raise InvalidArgumentError(f"layout must be one of {_LAYOUTS}, got {layout!r}.")
    did = data_id if data_id is not None else storegate.data_id
    if did is None:
        raise InvalidArgumentError("the StoreGate has no data_id; pass data_id='name'.")
    if did not in storegate.get_data_ids():
        from ..errors import DataIdNotFoundError

        raise DataIdNotFoundError(
            f"data_id {did!r} is not in the store; it holds {storegate.get_data_ids()}.")
    phases = list(PHASES) if phase == "all" else [check_phase(phase)]
    names = _export_vars(storegate, did, phases, var_names)
    db = storegate.db
    source = db.get_attrs(did).get(SOURCE_ATTR) or {}
    if layout == "auto":
        layout = "kinoml" if source.get("format") == "npz" and \
            source.get("layout") == "kinoml" else "plain"
    sizes = {ph: (db.info(did, ph, names[0]).length
                  if names[0] in db.var_names(did, ph) else 0) for ph in phases}
    n = sum(sizes.values())
    write_idx = phase == "all" and (bool(source.get("indices")) or sizes["train"] != n)
    infos = {v: next(db.info(did, ph, v) for ph in phases if v in db.var_names(did, ph))
             for v in names}
    block = BATCH_BYTES
    with staged(path, overwrite=overwrite) as tmp, progress_bar(
            progress, total=n * len(names), unit="rows",
            desc=os.path.basename(os.fspath(path))) as bar:
        w = _Writer(tmp, compressed)
        try:
            if layout == "kinoml":
                names = _write_kinoml(w, storegate, did, phases, names, infos, n, source,
                                      block, bar)
            for v in names:
                _write_plain(w, storegate, did, phases, v, infos[v], n, block, bar)
            if write_idx:
                start = 0
                for ph, key in zip(PHASES, ("idx_train", "idx_val", "idx_test"), strict=True):
                    w.small(key, np.arange(start, start + sizes[ph], dtype=np.int64))
                    start += sizes[ph]
        finally:
            w.close()
    return ExportResult(os.path.abspath(os.fspath(path)), did,
                        tuple(ph for ph in phases if sizes[ph] or phase != "all"),
                        tuple(infos), sizes)


def _write_plain(w: _Writer, storegate: Any, did: str, phases: list[str], var: str, info: Any,
                 n: int, block: int, bar: Any) -> None:
    def counted(blocks: Iterator[list[Any]]) -> Iterator[Any]:
        for (b,) in blocks:
            bar.update(len(b))
            yield b

    if not info.ragged:
        w.stream(var, info.dtype, (n, *info.row_shape),
                 counted(_aligned_blocks(storegate, did, phases, [var], block)))
        return
    offsets = [np.zeros(1, dtype=np.int64)]
    total = 0

    def values() -> Iterator[np.ndarray]:
        nonlocal total
        for part in counted(_aligned_blocks(storegate, did, phases, [var], block)):
            offsets.append(part.offsets[1:] + total)
            total += int(part.offsets[-1])
            yield part.values

    n_values = sum(int(storegate.db.info(did, ph, var).extra.get("n_values", 0))
                   for ph in phases if var in storegate.db.var_names(did, ph))
    w.stream(var + ".values", info.dtype, (n_values, *info.row_shape), values())
    w.small(var + ".offsets", np.concatenate(offsets))


def _write_kinoml(w: _Writer, storegate: Any, did: str, phases: list[str], names: list[str],
                  infos: dict[str, Any], n: int, source: dict[str, Any], block: int,
                  bar: Any) -> list[str]:
    """Write the kinoml feature members; return the vars left for plain members."""
    arrays = sorted((v for v in names if re.fullmatch(r"X_a\d+", v)),
                    key=lambda v: int(v[3:]))
    if arrays and "X" in names:
        raise InvalidArgumentError(
            "kinoml's layout holds either a var X or vars X_a0, X_a1, ..., not both; export "
            "with layout='plain' or choose var_names.")
    if not arrays and "X" not in names:
        raise InvalidArgumentError(
            f"kinoml's layout needs a var X or vars X_a0, X_a1, ... (the features); "
            f"data_id {did!r} has {names}. Export with layout='plain', or rename the vars.")
    if not arrays and not infos["X"].ragged:
        return names  # dense X: a plain member "X"
    features = arrays or ["X"]
    u = "_" if source.get("underscore", True) else ""
    s, a = source.get("letters", ["s", "a"])
    transposed = set(source.get("transposed", []))
    numbers = [None if v == "X" else int(v[3:]) for v in features]
    row = 0
    for parts in _aligned_blocks(storegate, did, phases, features, block):
        count = len(parts[0])
        for i in range(count):
            for v, j, p in zip(features, numbers, parts, strict=True):
                item = p.row(i) if isinstance(p, RaggedArray) else p[i]
                if v in transposed:
                    item = item.T
                key = f"X_{s}{row + i}{u}" if j is None else f"X_{s}{row + i}_{a}{j}{u}"
                w.small(key, item)
        row += count
        bar.update(count * len(features))
    return [v for v in names if v not in features]
