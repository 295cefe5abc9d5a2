"""Unit tests of ``storegate.phases``: names, fractions, counts and how N rows are split."""

from __future__ import annotations

import numpy as np
import pytest

from storegate.errors import InvalidPhaseError, UnknownPhaseError
from storegate.phases import ALL, FRACTION_TOLERANCE, PHASES, check_phase, phase_list, split


def sizes_of(pieces, n):
    """Phase sizes from split() pieces, checking they tile [0, n) in phase order."""
    out = dict.fromkeys(PHASES, 0)
    pos = 0
    order = []
    for name, a, b in pieces:
        assert a == pos and b > a, pieces
        out[name] = b - a
        order.append(name)
        pos = b
    assert pos == n
    assert order == [p for p in PHASES if p in order]
    return [out[p] for p in PHASES]


def multiml_sizes(n, fractions):
    i0 = int(n * fractions[0])
    i1 = int(n * fractions[0] + n * fractions[1])
    return [i0, i1 - i0, n - i1]


def test_constants():
    assert PHASES == ("train", "valid", "test")
    assert ALL == "all"
    assert 0 < FRACTION_TOLERANCE <= 1e-6


def test_check_phase():
    for p in PHASES:
        assert check_phase(p) == p
        assert check_phase(p, allow_all=False) == p
    assert check_phase("all") == "all"
    assert check_phase("auto") == "all"
    assert check_phase(None) == "all"
    for bad in ("bogus", "Train", "", 0, ("train",)):
        with pytest.raises(UnknownPhaseError, match="unknown phase"):
            check_phase(bad)
    with pytest.raises(UnknownPhaseError) as info:
        check_phase("all", allow_all=False)
    assert "'all'" in str(info.value).split(";")[0]
    assert "'all'" not in str(info.value).split(";")[1]


def test_phase_list():
    assert phase_list("all") == ["train", "valid", "test"]
    assert phase_list("valid") == ["valid"]
    assert phase_list(None) == ["train", "valid", "test"]


@pytest.mark.parametrize(
    ("n", "fractions", "expected"),
    [
        (100, (0.29, 0.21, 0.5), [28, 22, 50]),
        (10, (0.7, 0.15, 0.15), [7, 1, 2]),
        (5, (0.8, 0.1, 0.1), [4, 0, 1]),
        (10, (0.8, 0.1, 0.1), [8, 1, 1]),
        (10, (0.6, 0.2, 0.2), [6, 2, 2]),
        (10, (0.9, 0.05, 0.05), [9, 0, 1]),
        (10, (0.7, 0.2, 0.1), [7, 2, 1]),
        (3, (0.5, 0.25, 0.25), [1, 1, 1]),
        (7, (1.0, 0.0, 0.0), [7, 0, 0]),
        (7, (0.0, 0.0, 1.0), [0, 0, 7]),
        (0, (0.8, 0.1, 0.1), [0, 0, 0]),
        (1, (0.8, 0.1, 0.1), [0, 0, 1]),
    ],
)
def test_fraction_arithmetic_is_multiml(n, fractions, expected):
    assert sizes_of(split(fractions, n), n) == expected
    assert multiml_sizes(n, fractions) == expected
    assert sizes_of(split(list(fractions), n), n) == expected


def test_fraction_cuts_match_multiml_formula_broadly():
    rng = np.random.default_rng(0)
    for _ in range(500):
        f = rng.dirichlet([1, 1, 1])
        f[2] = 1.0 - f[0] - f[1]
        n = int(rng.integers(0, 5000))
        fractions = tuple(float(x) for x in f)
        assert sizes_of(split(fractions, n), n) == multiml_sizes(n, fractions), (n, fractions)


def test_two_entry_specs():
    assert sizes_of(split((0.5, 0.5), 4), 4) == [2, 2, 0]
    assert sizes_of(split((0.25, 0.75), 4), 4) == [1, 3, 0]
    assert sizes_of(split((5, 5), 10), 10) == [5, 5, 0]
    assert sizes_of(split([3, 0], 3), 3) == [3, 0, 0]


def test_counts():
    assert split((5, 3, 2), 10) == [("train", 0, 5), ("valid", 5, 8), ("test", 8, 10)]
    assert sizes_of(split((0, 10, 0), 10), 10) == [0, 10, 0]
    assert split((0, 0, 0), 0) == []
    counts = (np.int64(6), np.int32(2), np.uint8(2))
    assert sizes_of(split(counts, 10), 10) == [6, 2, 2]
    assert sizes_of(split(np.array([1, 2, 3]), 6), 6) == [1, 2, 3]
    assert sizes_of(split([np.int64(4), 1, 0], 5), 5) == [4, 1, 0]


def test_fractions_with_numpy_floats():
    assert sizes_of(split(tuple(np.array([0.6, 0.2, 0.2])), 10), 10) == [6, 2, 2]
    assert sizes_of(split(np.array([0.5, 0.5]), 10), 10) == [5, 5, 0]


@pytest.mark.parametrize("spec", [(0.7, 0.2, 0.1), (0.6, 0.3, 0.1), (0.1, 0.2, 0.7),
                                  (1 / 3, 1 / 3, 1 / 3), (0.7, 0.2, 0.1 + 5e-7)])
def test_tolerant_sum(spec):
    split(spec, 10)


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ((0.5, 0.2, 0.2), "sum to 0.9"),
        ([0.5, 0.2, 0.2], "sum to 0.9"),
        ((0.7, 0.2, 0.1 + 2e-6), "must sum to 1.0"),
        ((0.6, 0.6), "sum to 1.2"),
        ((1.5, -0.5, 0.0), "[0, 1]"),
        ((float("nan"), 0.5, 0.5), "[0, 1]"),
        ((5, 2, 2), "sum to 9"),
        ((5, 6), "sum to 11"),
        ((11, -1, 0), "negative"),
        ((1, 2, 3, 4), "4 entries"),
        ((1.0,), "1 entries"),
        ((), "0 entries"),
        ((0.5, "a", 0.5), "mixes types"),
        ((True, False, False), "mixes types"),
        ({"train": 1.0}, "unsupported phase spec"),
        (0.8, "unsupported phase spec"),
        (10, "unsupported phase spec"),
        (b"train", "unsupported phase spec"),
        (None, "phase=None"),
    ],
)
def test_invalid_specs(spec, fragment):
    with pytest.raises(InvalidPhaseError) as info:
        split(spec, 10)
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError)


def test_unknown_phase_name():
    with pytest.raises(UnknownPhaseError, match="'bogus'"):
        split("bogus", 3)


def test_phase_names():
    assert split("train", 4) == [("train", 0, 4)]
    assert split("valid", 4) == [("valid", 0, 4)]
    assert split("test", 4) == [("test", 0, 4)]
    assert split("train", 0) == []


def test_all_with_compiled_sizes():
    sizes = {"train": 3, "valid": 0, "test": 2, "all": 5}
    assert split("all", 5, sizes) == [("train", 0, 3), ("test", 3, 5)]
    assert split("auto", 5, sizes) == [("train", 0, 3), ("test", 3, 5)]
    assert split("all", 0, {"train": 0, "valid": 0, "test": 0}) == []
    with pytest.raises(InvalidPhaseError, match=r"needs exactly 5 rows .* got 4"):
        split("all", 4, sizes)
    with pytest.raises(InvalidPhaseError, match="compiled phase sizes"):
        split("all", 5)
