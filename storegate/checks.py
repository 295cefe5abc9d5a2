"""Health check of a store: the code behind ``storegate check STORE``.

:func:`check_store` walks every data_id, phase and var of a store and reports what is wrong
instead of raising at the first damaged chunk:

1. **storage** — the backend's own view (:meth:`~storegate.backends.Backend.check`): chunk
   files that are missing (zarr would silently read them as the fill value), chunk files of
   the wrong size, manifests whose row counts disagree with the data files, ragged offsets
   that point past their values;
2. **data** — every var is read back in full, in blocks of about ``block_bytes`` (memory stays
   bounded), and each block is compared with what :meth:`~storegate.backends.Backend.info`
   promises: number of rows, dtype, row shape, and for ragged vars sound offsets and the
   number of values. A block that cannot be read (a truncated chunk, a missing file, a decode
   error) becomes a problem naming its rows;
3. **phases** — all vars of a phase have the same number of rows;
4. **compile metadata** — the sizes that :meth:`StoreGate.compile` persisted (in the
   data_id's attributes under ``"storegate"``) still match the data. A store that was never
   compiled (or was changed since, which marks it not compiled) is fine.

It never prints: problems are returned (and logged at ``INFO``), and a progress bar is drawn
only when ``progress=`` asks for one (see :mod:`storegate.progress`).

Examples
--------
>>> import numpy as np
>>> from storegate import StoreGate
>>> sg = StoreGate(data_id="jets")
>>> sg.add_data("x", np.zeros((10, 3), "f4"), phase=(0.8, 0.1, 0.1))
>>> sg.add_data("y", np.zeros(10, "i8"), phase=(0.8, 0.1, 0.1))
>>> sg.compile()
>>> report = check_store(sg)
>>> report.ok, report.data_ids, report.vars_checked, report.rows_checked
(True, 1, 6, 20)
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .backends.base import Backend, VarInfo
from .errors import DataIdNotFoundError
from .phases import PHASES
from .progress import Progress, progress_bar
from .ragged import RaggedArray

__all__ = ["CheckReport", "Problem", "check_store"]

logger = logging.getLogger(__name__)

#: Where :class:`~storegate.StoreGate` keeps its compile metadata in a data_id's attributes,
#: and the version of that record this module understands (see ``StoreGate._save_meta``).
META_KEY = "storegate"
META_VERSION = 1

#: Read problems reported per var before the rest are summed up in one line.
_MAX_READ_PROBLEMS = 10
#: Failed reads of one var after which the rest of it is not read (a var whose metadata
#: claims 10**14 rows that are not there would otherwise keep the check busy for days).
_MAX_FAILED_READS = 1000
#: Items assumed per ragged row when the backend does not know how many values a var holds.
_UNKNOWN_RAGGED_ROW_ITEMS = 32


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a store.

    Attributes
    ----------
    data_id
        The dataset it concerns.
    phase
        The phase, or ``None`` for a problem of the whole data_id.
    var
        The var, or ``None`` for a problem of the whole phase (or data_id).
    message
        What is wrong, in words (row ranges are inclusive: ``rows 0..1023``).

    Examples
    --------
    >>> print(Problem("jets", "train", "x", "chunk file c/3/0 is missing"))
    jets/train/x: chunk file c/3/0 is missing
    >>> print(Problem("jets", None, None, "stale compile metadata"))
    jets: stale compile metadata
    """

    data_id: str
    phase: str | None
    var: str | None
    message: str

    def __str__(self) -> str:
        where = "/".join(p for p in (self.data_id, self.phase, self.var) if p is not None)
        return f"{where}: {self.message}"


@dataclass
class CheckReport:
    """The result of :func:`check_store`.

    Attributes
    ----------
    problems
        Everything found, in store order (data_id, phase, var).
    data_ids
        Number of data_ids checked.
    vars_checked
        Number of vars checked (a var counts once per phase it is in).
    rows_checked
        Rows read back and verified, summed over all vars.

    Examples
    --------
    >>> CheckReport([], 1, 2, 30).ok
    True
    >>> CheckReport([Problem("d", "train", "x", "broken")], 1, 2, 30).ok
    False
    """

    problems: list[Problem] = field(default_factory=list)
    data_ids: int = 0
    vars_checked: int = 0
    rows_checked: int = 0

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems


def _error(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _rows(a: int, b: int) -> str:
    """Rows ``a`` (inclusive) to ``b`` (exclusive) in words, inclusive at both ends."""
    return f"row {a}" if b - a == 1 else f"rows {a}..{b - 1}"


def _row_bytes(info: VarInfo) -> int:
    """Bytes of one row (a ragged var: on average), at least 1."""
    item = int(np.prod(info.row_shape, dtype=np.int64)) * info.dtype.itemsize
    if not info.ragged:
        return max(1, item)
    n_values = info.extra.get("n_values")
    if isinstance(n_values, int | np.integer) and info.length:
        return max(1, int(n_values) * item // info.length + 8)
    return max(1, item * _UNKNOWN_RAGGED_ROW_ITEMS + 8)


@dataclass
class _Var:
    """A var to check: its info (or the error that prevented getting it)."""

    name: str
    info: VarInfo | None
    error: str | None = None


@dataclass
class _PhasePlan:
    names: list[str] | None  # None: the vars could not be listed
    vars: list[_Var]
    error: str | None = None


class _Checker:
    """One run of :func:`check_store`: accumulates problems and counts."""

    def __init__(self, db: Backend, block_bytes: int) -> None:
        self.db = db
        self.block_bytes = max(1, int(block_bytes))
        self.report = CheckReport()

    def add(self, data_id: str, phase: str | None, var: str | None, message: str) -> None:
        problem = Problem(data_id, phase, var, message)
        logger.info("storegate check: %s", problem)
        self.report.problems.append(problem)

    # -------------------------------------------------------------- planning
    def plan(self, data_id: str) -> dict[str, _PhasePlan]:
        plans: dict[str, _PhasePlan] = {}
        for phase in PHASES:
            try:
                names = list(self.db.var_names(data_id, phase))
            except Exception as err:
                plans[phase] = _PhasePlan(None, [], _error(err))
                continue
            found = []
            for name in names:
                try:
                    found.append(_Var(name, self.db.info(data_id, phase, name)))
                except Exception as err:
                    found.append(_Var(name, None, _error(err)))
            plans[phase] = _PhasePlan(names, found)
        return plans

    def rows_per_block(self, info: VarInfo) -> int:
        return max(1, self.block_bytes // _row_bytes(info))

    # -------------------------------------------------------------- one var
    def check_var(self, data_id: str, phase: str, var: _Var, bar: Any) -> None:
        self.report.vars_checked += 1
        try:
            storage = list(self.db.check(data_id, phase, var.name))
        except Exception as err:
            storage = []
            self.add(data_id, phase, var.name,
                     f"the backend's storage check failed ({_error(err)})")
        for message in storage:
            self.add(data_id, phase, var.name, message)
        if var.info is None:
            self.add(data_id, phase, var.name, f"cannot be described ({var.error}); its data "
                     "were not read")
            return
        if storage:
            # its damage is known; decoding a damaged chunk can even crash a decoder (blosc
            # reads a truncated frame past its end), so the data are not read back
            logger.info("storegate check: %s/%s/%s has storage problems; not reading its data",
                        data_id, phase, var.name)
            bar.update(var.info.length * _row_bytes(var.info))
            return
        self.read_var(data_id, phase, var.info, bar)

    def read_var(self, data_id: str, phase: str, info: VarInfo, bar: Any) -> None:
        """Read a var block by block and compare every block with ``info``.

        A block that fails is read again chunk by chunk (regular vars with known chunks), so
        a problem names the rows of the damaged chunk rather than of the whole block."""
        n = info.length
        step = self.rows_per_block(info)
        per_row = _row_bytes(info)
        chunk = int(info.chunks[0]) if info.chunks and not info.ragged else 0
        failures: list[tuple[int, int, str]] = []  # merged runs of unreadable rows
        reported: set[str] = set()  # kinds of mismatch already reported for this var
        counts = {"rows": 0, "values": 0, "unknown_values": 0, "failed": 0, "stop": -1}

        def mismatch(kind: str, message: str) -> None:
            if kind not in reported:
                reported.add(kind)
                self.add(data_id, phase, info.name, message)

        def failed(a: int, b: int, err: Exception) -> None:
            counts["failed"] += 1
            text = _error(err)
            if failures and failures[-1][1] == a and failures[-1][2] == text:
                failures[-1] = (failures[-1][0], b, text)
            else:
                failures.append((a, b, text))

        def read(a: int, b: int, narrow: bool) -> None:
            try:
                got = self.db.read(data_id, phase, info.name, slice(a, b, 1))
            except Exception as err:
                if narrow and chunk and a // chunk != (b - 1) // chunk:  # several chunks
                    edges = [a, *range((a // chunk + 1) * chunk, b, chunk), b]
                    for lo, hi in itertools.pairwise(edges):
                        if counts["failed"] >= _MAX_FAILED_READS:
                            counts["stop"] = lo  # the rest of the var is not read
                            break
                        read(lo, hi, False)
                else:
                    failed(a, b, err)
                return
            if info.ragged:
                values = self.verify_ragged(info, a, b, got, mismatch)
                if values is None:
                    counts["unknown_values"] += 1
                else:
                    counts["values"] += values
            else:
                self.verify_regular(info, a, b, got, mismatch)
            got_rows = len(got) if isinstance(got, np.ndarray | RaggedArray) else 0
            counts["rows"] += min(got_rows, b - a)

        for a in range(0, n, step):
            if counts["failed"] >= _MAX_FAILED_READS:
                if counts["stop"] < 0:
                    counts["stop"] = a
                bar.update((n - a) * per_row)
                break
            b = min(n, a + step)
            read(a, b, True)
            bar.update((b - a) * per_row)
        for a, b, text in failures[:_MAX_READ_PROBLEMS]:
            self.add(data_id, phase, info.name, f"{_rows(a, b)} cannot be read: {text}")
        if len(failures) > _MAX_READ_PROBLEMS:
            rest = failures[_MAX_READ_PROBLEMS:]
            lost = sum(b - a for a, b, _ in rest)
            self.add(data_id, phase, info.name,
                     f"{len(rest)} further ranges ({lost} rows from row {rest[0][0]} on) "
                     "cannot be read either")
        if counts["stop"] >= 0:
            self.add(data_id, phase, info.name,
                     f"reading stopped after {counts['failed']} failed reads: "
                     f"{_rows(counts['stop'], n)} were not checked")
        n_values = info.extra.get("n_values")
        if (info.ragged and not failures and not counts["unknown_values"]
                and isinstance(n_values, int | np.integer) and int(n_values) != counts["values"]):
            self.add(data_id, phase, info.name, f"the backend reports {int(n_values)} values, "
                     f"but the rows hold {counts['values']}")
        self.report.rows_checked += counts["rows"]

    @staticmethod
    def verify_regular(info: VarInfo, a: int, b: int, got: Any, mismatch: Any) -> None:
        if not isinstance(got, np.ndarray):
            mismatch("type", f"{_rows(a, b)}: the read returned {type(got).__name__}, not an "
                     "array")
            return
        if got.shape[:1] != (b - a,):
            mismatch("rows", f"{_rows(a, b)}: the read returned {len(got) if got.ndim else 0} "
                     f"rows instead of {b - a} (the var should have {info.length} rows)")
        elif tuple(got.shape[1:]) != info.row_shape:
            mismatch("shape", f"{_rows(a, b)}: rows have shape {tuple(got.shape[1:])}, but "
                     f"the var's row shape is {info.row_shape}")
        if got.dtype != info.dtype:
            mismatch("dtype", f"{_rows(a, b)}: read as {got.dtype}, but the var's dtype is "
                     f"{info.dtype}")

    @staticmethod
    def verify_ragged(info: VarInfo, a: int, b: int, got: Any, mismatch: Any) -> int | None:
        """Check ragged rows; returns their number of values (``None`` if unusable)."""
        if not isinstance(got, RaggedArray):
            mismatch("type", f"{_rows(a, b)}: the read returned {type(got).__name__}, not "
                     "ragged rows")
            return None
        if len(got) != b - a:
            mismatch("rows", f"{_rows(a, b)}: the read returned {len(got)} rows instead of "
                     f"{b - a} (the var should have {info.length} rows)")
        o = np.asarray(got.offsets)
        n_values = int(got.values.shape[0]) if got.values.ndim else 0
        if o.ndim != 1 or o.shape[0] < 1:
            mismatch("offsets", f"{_rows(a, b)}: the rows' offsets have shape {o.shape}")
            return None
        if o[0] != 0 or o[-1] != n_values or (np.diff(o) < 0).any():
            mismatch("offsets", f"{_rows(a, b)}: the rows' offsets are inconsistent (they run "
                     f"from {int(o[0])} to {int(o[-1])} over {n_values} values"
                     f"{', and decrease' if (np.diff(o) < 0).any() else ''}); they must start "
                     "at 0, never decrease and end at the number of values")
        if tuple(got.values.shape[1:]) != info.row_shape:
            mismatch("shape", f"{_rows(a, b)}: items have shape {tuple(got.values.shape[1:])}, "
                     f"but the var's item shape is {info.row_shape}")
        if got.values.dtype != info.dtype:
            mismatch("dtype", f"{_rows(a, b)}: read as {got.values.dtype}, but the var's dtype "
                     f"is {info.dtype}")
        return n_values

    # -------------------------------------------------------------- phases, metadata
    def check_phase(self, data_id: str, phase: str, plan: _PhasePlan) -> int | None:
        """Report vars of unequal length; returns the phase's length (``None``: unknown)."""
        if plan.names is None:
            self.add(data_id, phase, None, f"the vars cannot be listed ({plan.error})")
            return None
        lengths = {v.name: v.info.length for v in plan.vars if v.info is not None}
        if len(set(lengths.values())) > 1:
            desc = ", ".join(f"{v}={n}" for v, n in lengths.items())
            self.add(data_id, phase, None, f"the vars have different lengths: {desc}; every "
                     "var of a phase needs the same number of rows")
            return None
        if len(lengths) < len(plan.vars):
            return None  # some var could not be described
        return next(iter(lengths.values()), 0)

    def check_meta(self, data_id: str, plans: dict[str, _PhasePlan],
                   lengths: dict[str, int | None]) -> None:
        """Compare the persisted compile metadata with the data."""
        try:
            attrs = self.db.get_attrs(data_id)
        except Exception as err:
            self.add(data_id, None, None, f"the attributes cannot be read ({_error(err)})")
            return
        raw = attrs.get(META_KEY) if isinstance(attrs, dict) else None
        if not isinstance(raw, dict) or not raw.get("compiled"):
            return  # never compiled, or changed since: compiled again on the next read
        if raw.get("version") != META_VERSION:
            return  # a record StoreGate ignores (it recompiles)
        fix = "run compile() again"
        total = raw.get("total_events")
        valid = raw.get("valid_phases")
        if (not isinstance(total, list) or len(total) != len(PHASES)
                or not all(isinstance(t, int) and not isinstance(t, bool) for t in total)
                or not isinstance(valid, list)):
            self.add(data_id, None, None, f"the compile metadata is malformed "
                     f"(total_events={total!r}, valid_phases={valid!r}); {fix}")
            return
        for phase, recorded in zip(PHASES, total, strict=True):
            plan = plans[phase]
            if plan.names is None:
                continue
            actual = lengths[phase]
            if actual is None:
                if any(v.info is None for v in plan.vars):
                    continue
                self.add(data_id, phase, None, f"the compile metadata records {recorded} rows "
                         f"for this phase, but its vars have different lengths; {fix} (it "
                         "will name them)")
            elif actual != recorded:
                self.add(data_id, phase, None, f"stale compile metadata: it records {recorded} "
                         f"rows, but the vars hold {actual}; {fix}")
        if all(plans[p].names is not None for p in PHASES):
            holding = [p for p in PHASES if plans[p].names]
            if sorted(map(str, valid)) != sorted(holding):
                self.add(data_id, None, None, f"stale compile metadata: it lists the phases "
                         f"{[str(p) for p in valid]} as holding data, but {holding} do; {fix}")
        self.check_meta_vars(data_id, raw.get("vars"), plans, fix)

    def check_meta_vars(self, data_id: str, recorded: Any, plans: dict[str, _PhasePlan],
                        fix: str) -> None:
        """Var lists, shapes and dtypes, when the metadata records them: ``{phase: [name,
        ...]}`` or ``{phase: {name: {"shape": [...], "dtype": "<f4"}}}`` (``shape`` may be the
        row shape or the full shape)."""
        if not isinstance(recorded, dict):
            return
        for phase in PHASES:
            plan = plans[phase]
            entry = recorded.get(phase)
            if plan.names is None or entry is None:
                continue
            names = list(entry) if isinstance(entry, dict | list) else None
            if names is None:
                continue
            if sorted(map(str, names)) != sorted(plan.names):
                self.add(data_id, phase, None, f"stale compile metadata: it lists the vars "
                         f"{[str(n) for n in names]}, but the phase holds {plan.names}; {fix}")
            if not isinstance(entry, dict):
                continue
            for var in plan.vars:
                spec = entry.get(var.name)
                if var.info is None or not isinstance(spec, dict):
                    continue
                shape = spec.get("shape")
                if isinstance(shape, list | tuple) and tuple(shape) not in (
                        var.info.shape, var.info.row_shape):
                    self.add(data_id, phase, var.name, f"stale compile metadata: it records "
                             f"shape {tuple(shape)}, but the var has {var.info.shape}; {fix}")
                dtype = spec.get("dtype")
                try:
                    same = dtype is None or np.dtype(dtype) == var.info.dtype
                except TypeError:
                    same = False
                if not same:
                    self.add(data_id, phase, var.name, f"stale compile metadata: it records "
                             f"dtype {dtype}, but the var is {var.info.dtype}; {fix}")


def _data_ids(db: Backend, data_ids: str | Iterable[str] | None) -> list[str]:
    existing = list(db.data_ids())
    if data_ids is None:
        return existing
    wanted = [data_ids] if isinstance(data_ids, str) else list(data_ids)
    unknown = [d for d in wanted if d not in existing]
    if unknown:
        raise DataIdNotFoundError(
            f"data_id {unknown[0]!r} does not exist in {db.describe()}; existing: {existing}.")
    return wanted


def check_store(storegate: Any, data_ids: str | Iterable[str] | None = None, *,
                progress: Progress = None, block_bytes: int = 16 * 2**20) -> CheckReport:
    """Check a store and report every problem found (see the module docstring).

    Damage never raises: a var that cannot be read, described or checked becomes a
    :class:`Problem`. Reading a store opened for writing writes its buffered rows first (as
    any read does); open it read-only (``StoreGate.open(path)``) to check it as it is on disk.

    Parameters
    ----------
    storegate
        A :class:`~storegate.StoreGate` (its backend, ``storegate.db``, is what is checked),
        or a :class:`~storegate.backends.Backend` itself.
    data_ids
        A data_id or several; ``None`` (default) checks all of them.
    progress
        ``None``/``False`` (silent), ``True`` (a tqdm bar) or a tqdm-like callable; the bar
        counts (uncompressed) bytes read.
    block_bytes
        About how many bytes of a var are read at once (bounds the memory the check uses).

    Returns
    -------
    CheckReport
        The problems and what was checked.

    Raises
    ------
    DataIdNotFoundError
        A data_id in ``data_ids`` is not in the store.

    Examples
    --------
    >>> import numpy as np
    >>> from storegate import StoreGate
    >>> sg = StoreGate(data_id="d")
    >>> sg.add_data("x", np.arange(6), phase="train")
    >>> sg.add_data("y", np.arange(4), phase="train")   # not compiled: lengths differ
    >>> report = check_store(sg)
    >>> report.ok, [(p.data_id, p.phase, p.var) for p in report.problems]
    (False, [('d', 'train', None)])
    >>> print(str(report.problems[0]).split(";")[0])
    d/train: the vars have different lengths: x=6, y=4
    """
    db: Backend = storegate if isinstance(storegate, Backend) else storegate.db
    checker = _Checker(db, block_bytes)
    ids = _data_ids(db, data_ids)
    plans = {d: checker.plan(d) for d in ids}
    total = sum(v.info.length * _row_bytes(v.info) for phases in plans.values()
                for plan in phases.values() for v in plan.vars if v.info is not None)
    with progress_bar(progress, total=total, unit="B", desc="check") as bar:
        for data_id in ids:
            checker.report.data_ids += 1
            lengths: dict[str, int | None] = {}
            for phase in PHASES:
                plan = plans[data_id][phase]
                for var in plan.vars:
                    checker.check_var(data_id, phase, var, bar)
                lengths[phase] = checker.check_phase(data_id, phase, plan)
            checker.check_meta(data_id, plans[data_id], lengths)
    report = checker.report
    logger.info("storegate check of %s: %d data_ids, %d vars, %d rows, %d problems",
                db.describe(), report.data_ids, report.vars_checked, report.rows_checked,
                len(report.problems))
    return report
