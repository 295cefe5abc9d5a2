"""Phase specs: names, fractions, counts, and how N rows are split over them.

The phases are fixed to ``('train', 'valid', 'test')``, as in multiml; ``'all'`` means the
three concatenated in that order. A *phase spec* given to ``add_data``/``update_data``/
``create_empty`` is one of:

* a phase name: every row goes to that phase;
* ``'all'`` (or multiml's alias ``'auto'``): rows are split by the compiled sizes of the
  data_id, and N must equal their sum;
* fractions ``(f_train, f_valid[, f_test])`` (tuple or list) summing to 1 within ``1e-6``;
  the cut points are multiml's: ``int(n*f0)`` and ``int(n*f0 + n*f1)``; test gets the rest;
* counts ``(n_train, n_valid[, n_test])`` of Python or numpy integers summing to N.

Pieces that come out empty are skipped, so no empty var is created.

Examples
--------
>>> from storegate.phases import split
>>> split((0.8, 0.1, 0.1), 10)
[('train', 0, 8), ('valid', 8, 9), ('test', 9, 10)]
>>> split((0.7, 0.2, 0.1), 10)   # multiml rejects this sum (0.9999999999999999)
[('train', 0, 7), ('valid', 7, 9), ('test', 9, 10)]
>>> split("valid", 4)
[('valid', 0, 4)]
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np

from .errors import InvalidPhaseError, UnknownPhaseError

__all__ = ["ALL", "FRACTION_TOLERANCE", "PHASES", "check_phase", "phase_list", "split"]

PHASES: tuple[str, str, str] = ("train", "valid", "test")
ALL = "all"
_ALL_ALIASES = ("all", "auto")
FRACTION_TOLERANCE = 1e-6

Piece = tuple[str, int, int]


def check_phase(phase: Any, *, allow_all: bool = True) -> str:
    """Return the canonical phase name for ``phase`` or raise ``UnknownPhaseError``.

    Parameters
    ----------
    phase
        ``'train'``, ``'valid'``, ``'test'`` or (if ``allow_all``) ``'all'``/``'auto'``/``None``.
    allow_all
        Whether ``'all'`` is acceptable here.

    Returns
    -------
    str
        One of ``'train'``, ``'valid'``, ``'test'``, ``'all'``.

    Examples
    --------
    >>> check_phase("auto")
    'all'
    """
    if isinstance(phase, str) and phase in PHASES:
        return phase
    if allow_all and (phase is None or (isinstance(phase, str) and phase in _ALL_ALIASES)):
        return ALL
    choices = ", ".join(repr(p) for p in (*PHASES, *((ALL,) if allow_all else ())))
    raise UnknownPhaseError(f"unknown phase {phase!r}; choose one of {choices}.")


def phase_list(phase: Any) -> list[str]:
    """The phases a name stands for: ``'all'`` gives all three, a name gives itself.

    Examples
    --------
    >>> phase_list("all")
    ['train', 'valid', 'test']
    """
    name = check_phase(phase)
    return list(PHASES) if name == ALL else [name]


def _is_int(x: Any) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool | np.bool_)


def _is_real(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool | np.bool_)


def _pieces(n: int, cut0: int, cut1: int) -> list[Piece]:
    bounds = [(PHASES[0], 0, cut0), (PHASES[1], cut0, cut1), (PHASES[2], cut1, n)]
    return [(name, a, b) for name, a, b in bounds if b > a]


def split(
    phase: Any, n: int, compiled_sizes: Mapping[str, int] | None = None
) -> list[Piece]:
    """Split ``n`` rows according to a phase spec.

    Parameters
    ----------
    phase
        A phase spec (see the module docstring).
    n
        Number of rows to split.
    compiled_sizes
        Sizes per phase of the compiled data_id; needed for ``'all'``.

    Returns
    -------
    list of (phase, start, stop)
        Non-empty row ranges, in train, valid, test order.

    Raises
    ------
    InvalidPhaseError
        For malformed specs, fractions not summing to 1, counts not summing to ``n``.
    UnknownPhaseError
        For a string that is not a phase name.

    Examples
    --------
    >>> split((5, 3, 2), 10)
    [('train', 0, 5), ('valid', 5, 8), ('test', 8, 10)]
    >>> split([0.5, 0.5], 3)
    [('train', 0, 1), ('valid', 1, 3)]
    """
    if isinstance(phase, str) or phase is None:
        if phase is None:
            raise InvalidPhaseError(
                "phase=None is not a phase spec for writing; use 'train', 'valid', 'test', "
                "'all', fractions like (0.8, 0.1, 0.1) or counts like (800, 100, 100)."
            )
        name = check_phase(phase)
        if name != ALL:
            return [(name, 0, n)] if n > 0 else []
        if compiled_sizes is None:
            raise InvalidPhaseError(
                "phase='all' splits rows by the compiled phase sizes, but this data_id has none "
                "yet; add data with an explicit phase first, or call compile()."
            )
        sizes = [int(compiled_sizes.get(p, 0)) for p in PHASES]
        if sum(sizes) != n:
            raise InvalidPhaseError(
                f"phase='all' needs exactly {sum(sizes)} rows (train {sizes[0]}, valid "
                f"{sizes[1]}, test {sizes[2]}), got {n}: provided events are not consistent "
                "with metadata. Pass data for every row, or write one phase at a time."
            )
        return _pieces(n, sizes[0], sizes[0] + sizes[1])

    if isinstance(phase, np.ndarray):
        phase = phase.tolist()
    if not isinstance(phase, list | tuple):  # as documented; not a range, bytes, dict, ...
        raise InvalidPhaseError(
            f"unsupported phase spec {phase!r} ({type(phase).__name__}); use a phase name, "
            "'all', fractions like (0.8, 0.1, 0.1) or counts like (800, 100, 100)."
        )
    values = list(phase)
    if len(values) not in (2, 3):
        raise InvalidPhaseError(
            f"phase spec {phase!r} has {len(values)} entries; give 2 or 3 (train, valid[, test])."
        )
    if all(_is_int(v) for v in values):
        counts = [int(v) for v in values]
        if any(c < 0 for c in counts):
            raise InvalidPhaseError(f"phase counts {phase!r} contain a negative count.")
        if sum(counts) != n:
            raise InvalidPhaseError(
                f"provided phases {phase!r} sum to {sum(counts)}, which is not consistent with "
                f"the total # of data {n}; make the counts add up to {n}."
            )
        return _pieces(n, counts[0], counts[0] + counts[1])
    if all(_is_real(v) for v in values):
        fracs = [float(v) for v in values]
        if any(not math.isfinite(f) or f < 0 or f > 1 for f in fracs):
            raise InvalidPhaseError(
                f"phase fractions {phase!r} must each lie in [0, 1]."
            )
        total = math.fsum(fracs)
        if abs(total - 1.0) > FRACTION_TOLERANCE:
            raise InvalidPhaseError(
                f"phase fractions {phase!r} sum to {total:.6g}; they must sum to 1.0 (within "
                f"{FRACTION_TOLERANCE:g}). For counts of rows use integers, e.g. "
                f"({int(n * fracs[0])}, {int(n * fracs[1])}, ...)."
            )
        cut0 = n * fracs[0]
        cut1 = cut0 + n * fracs[1]
        return _pieces(n, min(int(cut0), n), min(int(cut1), n))
    raise InvalidPhaseError(
        f"phase spec {phase!r} mixes types; use all floats (fractions) or all ints (counts)."
    )
