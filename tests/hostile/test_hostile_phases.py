"""Hostile phase specs: fractions, counts, names, NaN/inf, wrong lengths, dicts, 'all'.

Property: a phase spec either splits N rows by the documented rule (``storegate.phases``:
contiguous non-empty pieces in train, valid, test order, sizes summing to N, multiml's cut
points, the same answer every time) or raises ``InvalidPhaseError`` (``UnknownPhaseError`` for
a string that is not a phase name). Through ``add_data`` / ``create_empty`` the same holds and a
refused spec leaves the store unchanged.
"""

from __future__ import annotations

import functools
import itertools
import math
import numbers
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("hypothesis")

from hostile_helpers import (
    close_quietly,
    event,
    note,
    open_gate,
    require_backend,
)
from hypothesis import given
from hypothesis import strategies as st

from storegate import StoreGate
from storegate.errors import InvalidPhaseError, UnknownPhaseError
from storegate.phases import PHASES, split

TOL = 1e-6  # documented: fractions sum to 1 within 1e-6
COMPILED = {"train": 5, "valid": 0, "test": 3}  # sizes of the data_id that 'all' splits by


# ---------------------------------------------------------------------------- the rule
def _is_int(x: Any) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool | np.bool_)


def _is_real(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool | np.bool_)


def _cut(n: int, c0: int, c1: int) -> list[tuple[str, int, int]]:
    bounds = [("train", 0, c0), ("valid", c0, c1), ("test", c1, n)]
    return [(p, a, b) for p, a, b in bounds if b > a]


def expected_split(spec: Any, n: int, compiled: dict[str, int] | None) -> Any:
    """The documented rule: a list of pieces, or the error class that must be raised."""
    if isinstance(spec, str):
        if spec in PHASES:
            return [(spec, 0, n)] if n else []
        if spec in ("all", "auto"):
            if compiled is None:
                return InvalidPhaseError
            sizes = [compiled.get(p, 0) for p in PHASES]
            if sum(sizes) != n:
                return InvalidPhaseError
            return _cut(n, sizes[0], sizes[0] + sizes[1])
        return UnknownPhaseError
    if isinstance(spec, np.ndarray):
        spec = spec.tolist()
    if not isinstance(spec, list | tuple) or len(spec) not in (2, 3):
        return InvalidPhaseError
    if all(_is_int(v) for v in spec):
        counts = [int(v) for v in spec]
        if min(counts) < 0 or sum(counts) != n:
            return InvalidPhaseError
        return _cut(n, counts[0], counts[0] + counts[1])
    if all(_is_real(v) for v in spec):
        fr = [float(v) for v in spec]
        if any(not (math.isfinite(f) and 0 <= f <= 1) for f in fr):
            return InvalidPhaseError
        if abs(math.fsum(fr) - 1.0) > TOL:
            return InvalidPhaseError
        c0 = min(int(n * fr[0]), n)
        c1 = min(int(n * fr[0] + n * fr[1]), n)
        return _cut(n, c0, c1)
    return InvalidPhaseError


def assert_valid_pieces(pieces: Any, n: int) -> None:
    """Contiguous, non-empty, in phase order, covering exactly [0, n)."""
    assert isinstance(pieces, list)
    pos = 0
    names = []
    for name, a, b in pieces:
        assert name in PHASES and a == pos and b > a, pieces
        names.append(name)
        pos = b
    assert pos == n, f"pieces cover {pos} rows, not {n}: {pieces}"
    assert names == sorted(names, key=PHASES.index) and len(set(names)) == len(names)


# ---------------------------------------------------------------------------- strategies
NP_INTS = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]
NP_FLOATS = [np.float16, np.float32, np.float64]
EPS = [0.0] * 6 + [1e-12, -1e-12, 5e-7, -5e-7, 2e-6, -2e-6, 1e-3]
ODD_FLOATS = [math.nan, math.inf, -math.inf, -0.0, -0.1, 1.0000001, 1.5, 5e-324, 1e300]


@st.composite
def fraction_specs(draw: st.DrawFn) -> Any:
    k = draw(st.sampled_from([2, 3, 3, 3, 3, 1, 4, 0]))
    fr: list[float] = []
    for _ in range(max(k - 1, 0)):  # mostly fractions that leave room for the last one
        fr.append(draw(st.floats(0, 1) if draw(st.integers(0, 4)) == 0
                       else st.floats(0, max(0.0, 1.0 - math.fsum(fr)))))
    if k:
        last = 1.0 - math.fsum(fr) + draw(st.sampled_from(EPS))
        fr.append(last)
    if fr and draw(st.integers(0, 6)) == 0:  # one hostile value
        fr[draw(st.integers(0, len(fr) - 1))] = draw(st.sampled_from(ODD_FLOATS))
    kind = draw(st.sampled_from(["tuple", "list", "np", "array", "float32"]))
    if kind == "np":
        with np.errstate(over="ignore"):  # 1e300 becomes inf, which must be refused
            return tuple(draw(st.sampled_from(NP_FLOATS))(f) for f in fr)
    if kind == "array":
        return np.array(fr)
    if kind == "float32":
        with np.errstate(over="ignore"):  # 1e300 becomes inf, which must be refused
            return tuple(np.float32(f) for f in fr)
    return list(fr) if kind == "list" else tuple(fr)


@st.composite
def count_specs(draw: st.DrawFn, n: int) -> Any:
    k = draw(st.sampled_from([2, 3, 3, 3, 1, 4]))
    counts = [draw(st.integers(0, n)) for _ in range(k - 1)]
    counts.append(n - sum(counts) + draw(st.sampled_from([0, 0, 0, 0, 0, 1, -1, n])))
    if draw(st.integers(0, 7)) == 0:
        counts[draw(st.integers(0, k - 1))] = draw(st.sampled_from([-1, -(2**63), 2**64, True]))
    kind = draw(st.sampled_from(["tuple", "list", "np", "array", "mixed"]))
    if kind == "np":
        out = []
        for c in counts:
            t = draw(st.sampled_from(NP_INTS))
            info = np.iinfo(t)
            out.append(t(c) if info.min <= c <= info.max else c)
        return tuple(out)
    if kind == "array":
        return np.array(counts) if all(-(2**63) <= c < 2**63 for c in counts) else counts
    if kind == "mixed":  # ints and a float: taken as fractions
        return (*counts[:-1], float(counts[-1]))
    return list(counts) if kind == "list" else tuple(counts)


def name_specs() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.sampled_from(["train", "valid", "test", "all", "auto", "Train", "TRAIN", " train",
                         "train ", "", "tra", "all\x00", "None", "validation", "testing"]),
        st.text(max_size=6),
    )


def junk_specs() -> st.SearchStrategy[Any]:
    return st.sampled_from([
        None, 0.5, 1, 0, -1, True, b"train", bytearray(b"train"), {"train": 1.0},
        {"train": 0.8, "valid": 0.1, "test": 0.1}, {0.8, 0.2}, frozenset(), object(),
        (), [], ("train", "valid"), [0.5, "0.5"], [[0.5], [0.5]], (0.5, None), (1, 2.0, None),
        np.array(0.5), np.array([[0.8, 0.2]]), (True, False), [np.bool_(True), 0],
        range(2), range(0, 10, 5), bytearray(b"\x05\x05"), memoryview(b"\x02\x01"),
        "0.8,0.1,0.1", (0.8, 0.1, 0.1, 0.0), (1.0,), (0.5, 0.5, 0.0, 0.0),
    ])


@functools.cache  # built once per n: building strategies per example is slow
def specs(n: int) -> st.SearchStrategy[Any]:
    return st.one_of(fraction_specs(), fraction_specs(), count_specs(n), count_specs(n),
                     name_specs(), junk_specs())


# ---------------------------------------------------------------------------- properties
def check_split(spec: Any, n: int, compiled: dict[str, int] | None) -> Any:
    want = expected_split(spec, n, compiled)
    note(f"spec={spec!r} n={n} compiled={compiled} expected={want}")
    if isinstance(want, type):
        event(f"raises {want.__name__}")
        with pytest.raises(want) as info:
            split(spec, n, compiled)
        if want is InvalidPhaseError:
            # a malformed spec is not an unknown phase name (that is for strings only)
            assert not isinstance(info.value, UnknownPhaseError) or isinstance(spec, str), spec
        assert str(info.value), "the error has no message"
        return want
    event("splits")
    got = split(spec, n, compiled)
    assert got == want, f"split({spec!r}, {n}) = {got}, documented rule gives {want}"
    assert_valid_pieces(got, n)
    assert split(spec, n, compiled) == got  # deterministic
    return got


@given(data=st.data(), n=st.integers(0, 60), with_compiled=st.booleans())
def test_split_follows_documented_rule(data: Any, n: int, with_compiled: bool) -> None:
    spec = data.draw(specs(n), label="spec")
    check_split(spec, n, COMPILED if with_compiled else None)


@pytest.mark.parametrize(("spec", "n"), [
    ((0.7, 0.2, 0.1), 10), ([0.5, 0.2, 0.2], 10), ((np.int64(5), np.int64(5)), 10),
    ((1.0 + 1e-6, 0.0, 0.0), 7), ((1.0 + 2e-6, 0.0, 0.0), 7), ((math.nan, 0.5, 0.5), 4),
    ((0.5, 0.5, -0.0), 3), ((5, 3, 2), 10), ((5, 3, 3), 10), ("all", 8), ("all", 9),
    ({"train": 1.0}, 3), ((0.3333333, 0.3333333, 0.3333334), 3), ((2**64, -(2**64), 3), 3),
    # regression: any Sequence was taken for counts, though only tuples and lists are specs
    (range(0, 2), 1), (range(0, 10, 5), 10), (bytearray(b"\x05\x05"), 10),
], ids=repr)
def test_split_examples(spec: Any, n: int) -> None:
    check_split(spec, n, COMPILED)


# ---------------------------------------------------------------------------- through the facade
FACADE_BACKENDS = ["numpy", "zarr", "parquet"]


@pytest.fixture(scope="module", params=FACADE_BACKENDS)
def phase_store(request: pytest.FixtureRequest,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoreGate]:
    backend = request.param
    require_backend(backend)
    root: Path = tmp_path_factory.mktemp(f"phases-{backend}")
    sg = open_gate(backend, root, "sized")
    sg.add_data("base", np.arange(8), phase=(5, 0, 3))
    sg.compile()
    try:
        yield sg
    finally:
        close_quietly(sg)


_counter = itertools.count()


def data_id_state(sg: StoreGate, data_id: str) -> Any:
    """Everything a refused call must leave unchanged in one data_id."""
    db = sg.db
    state: list[Any] = [sorted(db.data_ids()), db.get_attrs(data_id)]
    for phase in PHASES:
        names = db.var_names(data_id, phase)
        state.append(names)
        for v in names:
            info = db.info(data_id, phase, v)
            arr = db.read(data_id, phase, v, slice(0, info.length, 1))
            state.append((v, str(arr.dtype), arr.shape, arr.tobytes()))
    return state


@given(data=st.data(), n=st.integers(0, 24), how=st.sampled_from(["add", "create", "all"]))
def test_add_data_and_create_empty_split_by_the_rule(phase_store: StoreGate, data: Any, n: int,
                                                     how: str) -> None:
    sg = phase_store
    if how == "all":  # an existing, compiled data_id: 'all' splits by its sizes (5, 0, 3)
        sg.set_data_id("sized")
        compiled: dict[str, int] | None = COMPILED
        n = data.draw(st.sampled_from([8, 8, 8, 7, 9, 0]), label="n for 'all'")
        spec = data.draw(st.sampled_from(["all", "auto"]), label="spec")
    else:
        sg.set_data_id("fresh")  # holds no var between examples (each deletes its own)
        compiled = dict.fromkeys(PHASES, 0)  # a data_id without vars has empty phases
        spec = data.draw(specs(n), label="spec")
    var = f"v{next(_counter)}"
    want = expected_split(spec, n, compiled)
    note(f"{how}: spec={spec!r} n={n} expected={want}")
    x = np.arange(n * 2, dtype="i4").reshape(n, 2)
    before = data_id_state(sg, sg.data_id)

    def call() -> None:
        if how == "create":
            sg.create_empty(var, (n, 2), phase=spec, dtype="i4")
        else:
            sg.add_data(var, x, phase=spec)

    if isinstance(want, type):
        with pytest.raises(want):
            call()
        assert data_id_state(sg, sg.data_id) == before, "a refused phase spec changed the store"
        return
    call()
    sizes = sg.get_metadata()["total_events"]
    lengths = {p: (b - a) for p, a, b in want}
    if how == "all":
        assert sizes == [5, 0, 3]
    else:
        assert sizes == [lengths.get(p, 0) for p in PHASES], (sizes, want)
    for p, a, b in want:
        assert sg.get_var_shapes(var, p) == (2,)
        if how != "create":
            np.testing.assert_array_equal(sg.get_data(var, p), x[a:b])
    for p in PHASES:
        if p not in lengths:
            assert var not in sg.get_var_names(p), f"an empty piece created {var!r} in {p}"
    sg.delete_data(var, "all")


@given(phase=st.one_of(name_specs(), junk_specs()))
def test_read_phase_names(phase_store: StoreGate, phase: Any) -> None:
    """Reads take train/valid/test/all/'auto'/None; anything else is UnknownPhaseError."""
    sg = phase_store
    sg.set_data_id("sized")
    valid = phase is None or (isinstance(phase, str) and phase in (*PHASES, "all", "auto"))
    if not valid:
        with pytest.raises(UnknownPhaseError):
            sg.get_data("base", phase)
        return
    full = np.arange(8)
    rows = {"train": full[:5], "valid": None, "test": full[5:]}.get(phase, full)
    if rows is None:  # 'valid' is empty and holds no var
        with pytest.raises(KeyError):
            sg.get_data("base", phase)
        return
    np.testing.assert_array_equal(sg.get_data("base", phase), rows)
