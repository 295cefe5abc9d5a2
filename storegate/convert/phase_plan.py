"""Where imported rows go: the ``phase=`` argument every importer takes.

``phase`` may be ``None`` (every row to ``'train'``), a phase name, fractions
``(0.8, 0.1, 0.1)`` or counts ``(800, 100, 100)`` (consecutive rows, cut as ``add_data`` cuts
them), one label per row (``'train'``, ``'valid'``/``'val'``, ``'test'`` or 0, 1, 2), or a
mapping of row indices or bool masks ``{'train': idx, 'valid': idx, 'test': idx}`` (kinoml's
``idx_train``, ``idx_val``, ``idx_test``; rows in none of them are skipped). Rows always keep
the source order inside a phase.

Examples
--------
>>> import numpy as np
>>> plan = plan_phases({"idx_train": [0, 3], "idx_val": [1]}, 4)
>>> plan.sizes()
{'train': 2, 'valid': 1, 'test': 0}
>>> [(ph, sel.tolist()) for ph, sel in plan.pieces(0, 4)]
[('train', [0, 3]), ('valid', [1])]
>>> plan_phases((0.5, 0.25, 0.25), 4).sizes()
{'train': 2, 'valid': 1, 'test': 1}
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import IndexOutOfRangeError, InvalidPhaseError
from ..phases import PHASES, split
from ..ragged import RaggedArray

__all__ = ["LABELS", "PhasePlan", "mapping_codes", "phase_codes", "plan_phases", "select_rows"]

#: Phase labels accepted in label arrays, mappings and phase fields (kinoml names the
#: validation split "val").
LABELS = {"train": 0, "valid": 1, "val": 1, "validation": 1, "test": 2}


def phase_codes(labels: Any, n: int, what: str) -> np.ndarray:
    """Phase labels (``'train'``/``'valid'``/``'val'``/``'test'`` or 0/1/2) as int8 codes."""
    arr = np.asarray(labels)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise InvalidPhaseError(
            f"{what} must hold one phase label per row ({n} rows), got shape {arr.shape}.")
    if arr.dtype.kind == "O" and all(isinstance(v, str) for v in arr[:1]):
        arr = arr.astype(str)  # strings read from Arrow
    if arr.dtype.kind in "US":
        text = arr.astype(str)
        uniq, inverse = np.unique(text, return_inverse=True)
        bad = [u for u in uniq if u not in LABELS]
        if bad:
            raise InvalidPhaseError(
                f"{what} holds unknown phase labels {bad[:5]}; use 'train', 'valid' (or "
                "'val') and 'test', or the integers 0, 1, 2.")
        table = np.array([LABELS[u] for u in uniq], dtype=np.int8)
        return table[inverse.reshape(-1)]
    if arr.dtype.kind in "iu":
        if n and (arr.min() < 0 or arr.max() > 2):
            raise InvalidPhaseError(
                f"{what} holds integer labels outside 0..2 (range {arr.min()}..{arr.max()}); "
                "0 = train, 1 = valid, 2 = test.")
        return arr.astype(np.int8)
    raise InvalidPhaseError(
        f"{what} has dtype {arr.dtype}; phase labels are strings ('train', 'valid', 'test') "
        "or integers 0, 1, 2.")


def mapping_codes(spec: Mapping[Any, Any], n: int) -> np.ndarray:
    """``{'train': idx, 'valid': idx, 'test': idx}`` (kinoml's ``idx_*``) as int8 codes;
    rows in no index get -1 (skipped)."""
    codes = np.full(n, -1, dtype=np.int8)
    for key, rows in spec.items():
        name = str(key).removeprefix("idx_")
        if name not in LABELS:
            raise InvalidPhaseError(
                f"phase mapping key {key!r} is not a phase; use 'train', 'valid' (or 'val', "
                "'idx_val') and 'test'.")
        idx = np.asarray(rows)
        if idx.dtype.kind == "b":
            if idx.shape != (n,):
                raise InvalidPhaseError(
                    f"phase mask for {key!r} has shape {idx.shape}; a mask needs one entry per "
                    f"row ({n}).")
            idx = np.flatnonzero(idx)
        if idx.size and idx.dtype.kind not in "iu":
            raise InvalidPhaseError(
                f"phase indices for {key!r} have dtype {idx.dtype}; give row numbers (ints) or "
                "a bool mask.")
        idx = idx.astype(np.int64).reshape(-1)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexOutOfRangeError(
                f"phase indices for {key!r} reach row {idx.max() if idx.max() >= n else idx.min()}"
                f", but the file has {n} rows.")
        idx = idx % n if n else idx
        if (codes[idx] != -1).any() or np.unique(idx).size != idx.size:
            taken = idx[codes[idx] != -1]
            row = int(taken[0]) if taken.size else int(idx[np.argmax(np.bincount(idx))])
            raise InvalidPhaseError(
                f"row {row} is listed twice in the phase mapping (e.g. in two phases); "
                "every row may belong to one phase only.")
        codes[idx] = LABELS[name]
    return codes


@dataclass
class PhasePlan:
    """Row ranges per phase, or one int8 code per row (-1 = skip)."""

    ranges: list[tuple[str, int, int]] | None = None
    codes: np.ndarray | None = None

    def pieces(self, g0: int, g1: int) -> Iterator[tuple[str, slice | np.ndarray]]:
        """The rows of global batch ``[g0, g1)`` each phase takes, local to the batch."""
        if self.ranges is not None:
            for ph, a, b in self.ranges:
                lo, hi = max(a, g0), min(b, g1)
                if lo < hi:
                    yield ph, slice(lo - g0, hi - g0)
            return
        assert self.codes is not None
        codes = self.codes[g0:g1]
        for i, ph in enumerate(PHASES):
            rows = np.flatnonzero(codes == i)
            if rows.size == g1 - g0:
                yield ph, slice(0, g1 - g0)
            elif rows.size:
                yield ph, rows

    def sizes(self) -> dict[str, int]:
        if self.ranges is not None:
            out = dict.fromkeys(PHASES, 0)
            for ph, a, b in self.ranges:
                out[ph] += b - a
            return out
        assert self.codes is not None
        counts = np.bincount(self.codes[self.codes >= 0].astype(np.int64), minlength=3)
        return {ph: int(counts[i]) for i, ph in enumerate(PHASES)}


def plan_phases(phase: Any, n: int) -> PhasePlan:
    if phase is None:
        return PhasePlan(ranges=[("train", 0, n)] if n else [])
    if isinstance(phase, str):
        name = {"val": "valid", "validation": "valid"}.get(phase, phase)
        if name == "all" or name not in PHASES:
            raise InvalidPhaseError(
                f"phase {phase!r} is not a phase to import into; use None (all rows to "
                "'train'), 'train', 'valid' or 'test', fractions like (0.8, 0.1, 0.1), counts, "
                "one label per row, or a mapping {'train': idx, 'valid': idx, 'test': idx}.")
        return PhasePlan(ranges=[(name, 0, n)] if n else [])
    if isinstance(phase, Mapping):
        return PhasePlan(codes=mapping_codes(phase, n))
    if isinstance(phase, np.ndarray) or (
        isinstance(phase, Sequence) and len(phase) > 0
        and all(isinstance(p, str) for p in phase)
    ):
        return PhasePlan(codes=phase_codes(phase, n, "phase labels"))
    return PhasePlan(ranges=split(phase, n))


def select_rows(data: np.ndarray | RaggedArray,
                sel: slice | np.ndarray) -> np.ndarray | RaggedArray:
    """The rows ``sel`` (a piece from :meth:`PhasePlan.pieces`) of a decoded batch.

    >>> select_rows(np.arange(5), slice(1, 3)).tolist()
    [1, 2]
    """
    if isinstance(data, RaggedArray):
        if isinstance(sel, slice):
            start, stop, _ = sel.indices(len(data))
            if start == 0 and stop == len(data):
                return data
            a, b = int(data.offsets[start]), int(data.offsets[stop])  # a view, no copy
            return RaggedArray(data.values[a:b], data.offsets[start:stop + 1] - a,
                               validate=False)
        return data.take(sel)
    return data[sel]
