"""Hostile indexes, checked against numpy's own indexing on every backend.

Property: for every index a user can throw at ``get_data`` / ``sg[phase][var][idx]``, storegate
returns exactly what the documented contract says (values, dtype, shape; the contract is
numpy's ``arr[idx]`` along the row axis plus the differences listed in
``storegate.indexing``'s docstring), or raises ``InvalidIndexError`` /
``IndexOutOfRangeError``. Never a raw numpy/zarr/pyarrow/h5py error, never a different answer.

``oracle`` below restates the contract independently of ``storegate.indexing``; where it
accepts an index it is also checked against numpy itself, and where it refuses an index that
numpy accepts it must name the documented difference that applies.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import numbers
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("hypothesis")

from hostile_helpers import (
    ALL_BACKENDS,
    PERSISTENT_BACKENDS,
    SMALL_CHUNKS,
    assert_same_result,
    close_quietly,
    event,
    note,
    open_gate,
    require_backend,
)
from hypothesis import example, given
from hypothesis import strategies as st

from storegate import StoreGate
from storegate.errors import IndexOutOfRangeError, InvalidIndexError
from storegate.indexing import normalize

_torch_spec = importlib.util.find_spec("torch")
torch: Any = None
if _torch_spec is not None and _torch_spec.origin is not None:  # not tests/torch (a namespace)
    import torch

# ---------------------------------------------------------------------------- the stored data
COUNTS = (11, 0, 5)  # train, valid (empty: 'all' skips it), test
N = sum(COUNTS)
_rng = np.random.default_rng(20240611)
DATA: dict[str, np.ndarray] = {
    "f32": _rng.standard_normal(N).astype("f4"),
    "i16x3": _rng.integers(-30000, 30000, (N, 3)).astype("i2"),
    "u64x2x2": _rng.integers(0, 2**64 - 1, (N, 2, 2), dtype="u8", endpoint=True),
    "b": _rng.random(N) > 0.5,
    "c64": (_rng.standard_normal(N) + 1j * _rng.standard_normal(N)).astype("c8"),
    "f16x3": _rng.standard_normal((N, 3)).astype("f2"),
    "be_f8": _rng.standard_normal(N).astype(">f8"),  # stored in native order (documented)
}
TUPLE = ("f16x3", "i16x3")  # same row shape, read bound into (n, 2, 3)
LIST = ["f32", "u64x2x2"]
PHASE_ROWS = {"train": slice(0, COUNTS[0]), "all": slice(0, N)}


def expected_var(var: str, phase: str) -> np.ndarray:
    arr = DATA[var][PHASE_ROWS[phase]]
    return arr.astype(arr.dtype.newbyteorder("="))


STORES = [(b, "reopened") for b in ALL_BACKENDS] + [
    (b, "live") for b in ("zarr", "parquet", "hdf5")]


@pytest.fixture(scope="module", params=STORES, ids=[f"{b}-{v}" for b, v in STORES])
def index_store(request: pytest.FixtureRequest,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoreGate]:
    """One store per backend with every var of DATA, in tiny chunks.

    ``reopened``: written in one call per var, closed and reopened read-only (persistent
    backends). ``live``: appended in pieces and read from the open writable gate, so reads
    cross buffered tails, several files and partly filled chunks.
    """
    backend, variant = request.param
    require_backend(backend)
    root: Path = tmp_path_factory.mktemp(f"index-{backend}-{variant}")
    sg = open_gate(backend, root, "hostile", **SMALL_CHUNKS[backend])
    gates = [sg]
    try:
        for name, arr in DATA.items():
            if variant == "live":
                sg.add_data(name, arr[:4], phase="train")
                sg.add_data(name, arr[4:COUNTS[0]], phase="train")
                sg.add_data(name, arr[COUNTS[0]:], phase="test")
            else:
                sg.add_data(name, arr, phase=COUNTS)
        sg.compile()
        if variant == "reopened" and backend in PERSISTENT_BACKENDS:
            sg.close()
            sg = open_gate(backend, root, "hostile", mode="r")
            gates.append(sg)
        if backend == "hybrid":
            sg.to_memory(["f32", "i16x3"], phase="all")  # reads mix the two tiers
        yield sg
    finally:
        for g in gates:
            close_quietly(g)


# ---------------------------------------------------------------------------- the contract
@dataclass
class Expect:
    kind: str  # "rows" (a read), "invalid" (InvalidIndexError), "range" (IndexOutOfRangeError)
    rows: Any = None  # an int (one row, axis dropped) or a 1-D int64 array of rows
    deviation: str | None = None  # the documented difference from numpy, if one applies


def _is_int(x: Any) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool | np.bool_)


def _values(vals: list[int], n: int, deviation: str | None = None) -> Expect:
    if any(not -n <= v < n for v in vals):
        # numpy converts uint64 >= 2**63 (and Python ints beyond int64 in some paths) to
        # negative intp rows; storegate refuses them
        wraps = any(v >= 2**63 or v < -(2**63) for v in vals)
        return Expect("range", deviation="uint-wrap" if wraps else deviation)
    return Expect("rows", np.array([v + n if v < 0 else v for v in vals], dtype=np.int64),
                  deviation=deviation)


def _array_oracle(arr: np.ndarray, n: int) -> Expect:
    if arr.ndim != 1:
        return Expect("invalid", deviation="ndim")
    if arr.size == 0 and arr.dtype.kind in "biuf":
        return Expect("rows", np.empty(0, np.int64),
                      deviation=None if arr.dtype.kind in "iub" else "empty-float")
    if arr.dtype == np.bool_:
        if arr.shape[0] != n:
            return Expect("invalid")
        return Expect("rows", np.flatnonzero(arr).astype(np.int64))
    if arr.dtype.kind in "iu":
        return _values([int(v) for v in arr.tolist()], n)
    return Expect("invalid")


def oracle(idx: Any, n: int) -> Expect:
    """What storegate documents for ``idx`` over ``n`` rows (see storegate.indexing)."""
    if torch is not None and isinstance(idx, torch.Tensor):
        return oracle(idx.numpy(), n)  # a CPU tensor is its numpy array
    if isinstance(idx, bool | np.bool_):
        return Expect("invalid", deviation="bool-scalar")
    if idx is None:
        return Expect("invalid", deviation="none-newaxis")
    if _is_int(idx):
        i = int(idx)
        if i == -1:
            return Expect("rows", np.arange(n, dtype=np.int64), deviation="minus-one-is-all")
        if -n <= i < n:
            return Expect("rows", i + n if i < 0 else i)
        return Expect("range")
    if isinstance(idx, slice):
        parts = (idx.start, idx.stop, idx.step)
        if any(p is not None and not isinstance(p, numbers.Integral) for p in parts):
            return Expect("invalid", deviation="slice-bound")
        if idx.step == 0:
            return Expect("invalid")
        return Expect("rows", np.arange(*idx.indices(n), dtype=np.int64))
    if idx is Ellipsis:
        return Expect("rows", np.arange(n, dtype=np.int64))
    if isinstance(idx, np.ndarray):
        if idx.ndim == 0:
            inner = oracle(idx.item(), n)
            return inner
        return _array_oracle(idx, n)
    if isinstance(idx, tuple):
        if len(idx) == 2 and all(_is_int(x) for x in idx):
            start, stop = int(idx[0]), int(idx[1])
            return Expect("rows", np.arange(*slice(start, stop).indices(n), dtype=np.int64),
                          deviation="start-stop-pair")
        return Expect("invalid", deviation="tuple")
    if isinstance(idx, list | range | bytearray | memoryview):
        items = list(idx)
        if not items:
            return Expect("rows", np.empty(0, np.int64))
        if all(isinstance(x, bool | np.bool_) for x in items):
            return _array_oracle(np.array(items, dtype=bool), n)
        if all(_is_int(x) for x in items):
            try:
                kind = np.asarray(items).dtype.kind
            except OverflowError:
                kind = "O"
            # numpy promotes [1, np.uint64(2)] to float64 and refuses it
            return _values([int(x) for x in items], n,
                           None if kind in "iu" else "list-int-promotion")
        return Expect("invalid", deviation="mixed-list")
    return Expect("invalid")


def numpy_answer(arr: np.ndarray, idx: Any) -> tuple[bool, Any]:
    """``(accepted, arr[idx])`` as numpy itself answers."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return True, arr[idx]
    except Exception:
        return False, None


def expected_read(var: str, phase: str, exp: Expect) -> Any:
    return expected_var(var, phase)[exp.rows]


# ---------------------------------------------------------------------------- index strategies
INT_DTYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"]
HUGE = [2**31, -(2**31) - 1, 2**63 - 1, -(2**63), 2**63, 2**64 - 1, 2**64, 2**70, -(2**70)]


def row_ints(n: int) -> st.SearchStrategy[int]:
    return st.one_of(st.integers(-n - 3, n + 2), st.integers(-n - 3, n + 2),
                     st.sampled_from(HUGE))


@st.composite
def np_int_scalars(draw: st.DrawFn, n: int) -> Any:
    dt = np.dtype(draw(st.sampled_from(INT_DTYPES)))
    info = np.iinfo(dt)
    value = draw(st.one_of(st.integers(max(int(info.min), -n - 3), min(int(info.max), n + 2)),
                           st.sampled_from([int(info.min), int(info.max)])))
    return dt.type(value)


def any_int(n: int) -> st.SearchStrategy[Any]:
    return st.one_of(row_ints(n), np_int_scalars(n))


@st.composite
def int_arrays(draw: st.DrawFn, n: int) -> np.ndarray:
    dt = np.dtype(draw(st.sampled_from(INT_DTYPES)))
    info = np.iinfo(dt)
    if n and draw(st.booleans()):  # rows in range (negative ones where the dtype has them)
        elements = st.integers(max(int(info.min), -n), min(int(info.max), n - 1))
    else:  # anything, dtype extremes too
        elements = st.one_of(st.integers(max(int(info.min), -n - 2), min(int(info.max), n + 1)),
                             st.sampled_from([int(info.min), int(info.max)]))
    return np.array(draw(st.lists(elements, max_size=12)), dtype=dt)


@st.composite
def bool_masks(draw: st.DrawFn, n: int) -> Any:
    length = draw(st.sampled_from([n, n, n, max(n - 1, 0), n + 1, 0, 1]))
    vals = draw(st.lists(st.booleans(), min_size=length, max_size=length))
    kind = draw(st.sampled_from(["list", "array", "np_bools"]))
    if kind == "array":
        return np.array(vals, dtype=bool)
    if kind == "np_bools":
        return [np.bool_(v) for v in vals]
    return vals


def slices(n: int) -> st.SearchStrategy[slice]:
    """Slices numpy takes: int bounds of every kind (huge too), any non-zero step."""
    bound = st.one_of(st.none(), st.integers(-n - 3, n + 3), any_int(n))
    step = st.one_of(st.none(), st.integers(-n - 2, n + 2).filter(bool),
                     st.integers(-3, 3).filter(bool), st.sampled_from(HUGE),
                     np_int_scalars(n).filter(bool))
    return st.builds(slice, bound, bound, step)


def odd_slices(n: int) -> st.SearchStrategy[slice]:
    """Slices with a zero step, or bounds that are bools, floats, strings or arrays."""
    odd = st.sampled_from([True, False, 1.0, 2.5, np.float64(1), "1", np.array(2), None, 0])
    return st.one_of(
        st.builds(slice, odd, odd, st.sampled_from([None, 1, 0, 1.0, np.int8(0), True])),
        st.builds(slice, st.none() | st.integers(-n, n), st.none() | st.integers(-n, n),
                  st.just(0)),
    )


@st.composite
def other_arrays(draw: st.DrawFn, n: int) -> np.ndarray:
    kind = draw(st.sampled_from(["0d", "2d", "empty", "float", "object", "complex", "str"]))
    if kind == "0d":
        value = draw(st.one_of(any_int(n), st.booleans(), st.floats(-3, 3)))
        return np.array(value) if not isinstance(value, int) or -(2**63) <= value < 2**64 \
            else np.array(0)
    if kind == "2d":
        rows = draw(st.integers(0, 3))
        cols = draw(st.integers(0, 3))
        dt = draw(st.sampled_from(["int64", "bool", "uint8"]))
        return np.zeros((rows, cols), dtype=dt) + (0 if dt == "bool" else min(1, n - 1))
    if kind == "empty":
        return np.empty(0, dtype=draw(st.sampled_from(
            ["int64", "uint8", "float64", "float32", "bool", "U1", "S1", "O", "c8"])))
    if kind == "float":
        return np.array(draw(st.lists(st.floats(allow_nan=True), min_size=1, max_size=4)))
    if kind == "object":
        return np.array(draw(st.lists(st.integers(0, max(n - 1, 0)), min_size=1, max_size=4)),
                        dtype=object)
    if kind == "complex":
        return np.array([1 + 0j, 0j])
    return np.array(draw(st.lists(st.sampled_from(["0", "f32", "train"]), min_size=1,
                                  max_size=3)))


def tuples(n: int) -> st.SearchStrategy[tuple[Any, ...]]:
    pair_part = st.one_of(st.integers(-n - 3, n + 3), np_int_scalars(n))
    return st.one_of(
        st.tuples(pair_part, pair_part),
        st.tuples(any_int(n), any_int(n)),
        st.tuples(any_int(n), any_int(n), any_int(n)),
        st.tuples(st.sampled_from([1.0, True, None, Ellipsis, slice(0, 2), [0]]), any_int(n)),
        st.tuples(any_int(n), st.sampled_from([2.0, False, None, Ellipsis])),
        st.just(()),
        st.tuples(st.just(Ellipsis)),
        st.tuples(any_int(n)),
    )


def int_lists(n: int) -> st.SearchStrategy[Any]:
    in_range = st.integers(-n, max(n - 1, 0))
    return st.one_of(
        st.lists(in_range, max_size=12),
        st.lists(st.one_of(in_range, np_int_scalars(n)), max_size=12),
        st.lists(st.one_of(in_range, row_ints(n), np_int_scalars(n)), max_size=12),
    )


def odd_lists(n: int) -> st.SearchStrategy[Any]:
    junk = st.sampled_from([1.5, "1", None, [0], True, np.float32(0), b"0", Ellipsis])
    return st.one_of(
        st.lists(st.one_of(any_int(n), junk), min_size=1, max_size=5),
        st.builds(range, st.integers(-n, n), st.integers(-n, n),
                  st.integers(1, 3) | st.integers(-3, -1)),
    )


def scalars_and_junk() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.booleans(),
        st.sampled_from([np.True_, np.False_, None, Ellipsis, "0", "train", "f32", b"1",
                         bytearray(b"\x01\x00"), 1 + 0j, {0, 1}, {0: 1}, object(),
                         np.float32(1), np.float64(0.0), np.nan, float("inf"), -1.0,
                         np.str_("1"), frozenset([1])]),
        st.floats(),
    )


@st.composite
def torch_tensors(draw: st.DrawFn, n: int) -> Any:
    kind = draw(st.sampled_from(["int", "bool", "float", "0d"]))
    if kind == "int":
        dt = draw(st.sampled_from([torch.int64, torch.int32, torch.int16, torch.uint8]))
        lo = 0 if dt == torch.uint8 else -n - 1
        vals = draw(st.lists(st.integers(lo, n + 1), max_size=8))
        return torch.tensor(vals, dtype=dt)
    if kind == "bool":
        length = draw(st.sampled_from([n, n, n + 1]))
        return torch.tensor(draw(st.lists(st.booleans(), min_size=length, max_size=length)),
                            dtype=torch.bool)
    if kind == "float":
        return torch.tensor([0.0, 1.0])
    return torch.tensor(draw(st.integers(-n - 1, n + 1)))


@functools.cache  # built once per length: building strategies per example is slow
def indexes(n: int) -> st.SearchStrategy[Any]:
    options = [any_int(n), slices(n), slices(n), slices(n), odd_slices(n), int_lists(n),
               int_lists(n), odd_lists(n), int_arrays(n), int_arrays(n), bool_masks(n),
               other_arrays(n), tuples(n), scalars_and_junk()]
    if torch is not None:
        options.append(torch_tensors(n))
    return st.one_of(*options)


# ---------------------------------------------------------------------------- the checks
def _expect_error(exp: Expect, read: Any, what: str) -> None:
    err = IndexOutOfRangeError if exp.kind == "range" else InvalidIndexError
    with pytest.raises(err):
        result = read()
        note(f"{what} returned {result!r}")


def _check(read: Any, exp: Expect, expected: Any, what: str) -> None:
    if exp.kind == "rows":
        got = read()
        if isinstance(expected, list):
            assert isinstance(got, list) and len(got) == len(expected), what
            for j, (g, e) in enumerate(zip(got, expected, strict=True)):
                assert_same_result(g, e, f"{what}[{j}]")
        else:
            assert_same_result(got, expected, what)
    else:
        _expect_error(exp, read, what)


def _same_index(before: Any, after: Any) -> bool:
    if isinstance(before, np.ndarray):
        return before.dtype == after.dtype and before.tobytes() == after.tobytes()
    if torch is not None and isinstance(before, torch.Tensor):
        return bool(torch.equal(before, after))
    if isinstance(before, list):
        return len(before) == len(after) and all(_same_index(b, a)
                                                 for b, a in zip(before, after, strict=True))
    return True


def _oracle_matches_numpy(idx: Any, n: int, exp: Expect) -> None:
    """The oracle is numpy's semantics except where it names a documented difference."""
    if torch is not None and isinstance(idx, torch.Tensor):
        return
    accepted, answer = numpy_answer(np.arange(n), idx)
    if exp.kind == "rows" and exp.deviation is None:
        assert accepted, f"numpy refuses {idx!r} but the oracle reads rows {exp.rows!r}"
        assert_same_result(answer, np.arange(n)[exp.rows], f"numpy vs oracle for {idx!r}")
    elif exp.kind != "rows" and accepted:
        assert exp.deviation is not None, (
            f"numpy accepts {idx!r} (giving {answer!r}) but storegate refuses it without a "
            "documented reason")


def check_index(sg: StoreGate, phase: str, idx: Any, view_var: str,
                variables: list[str]) -> None:
    n = N if phase == "all" else COUNTS[0]
    exp = oracle(idx, n)
    note(f"phase={phase!r} n={n} idx={idx!r} expect={exp}")
    event(f"{exp.kind}: {type(idx).__name__}")
    _oracle_matches_numpy(idx, n, exp)
    before = copy.deepcopy(idx) if isinstance(idx, np.ndarray | list) else idx
    if torch is not None and isinstance(idx, torch.Tensor):
        before = idx.clone()

    for var in variables:
        _check(lambda v=var: sg.get_data(v, phase, idx), exp,
               expected_read(var, phase, exp) if exp.kind == "rows" else None,
               f"get_data({var!r}, {phase!r}, {idx!r})")
    if exp.kind == "rows":
        parts = [expected_read(v, phase, exp) for v in TUPLE]
        dtype = np.result_type(*parts)
        bound = np.stack(parts, axis=0 if isinstance(exp.rows, int) else 1).astype(dtype)
        listed = [expected_read(v, phase, exp) for v in LIST]
    else:
        bound = listed = None
    _check(lambda: sg.get_data(TUPLE, phase, idx), exp, bound, f"get_data({TUPLE}, {idx!r})")
    _check(lambda: sg.get_data(LIST, phase, idx), exp, listed, f"get_data({LIST}, {idx!r})")

    # the [] views take every non-str item as an index (a str selects a phase or var names)
    is_names = isinstance(idx, str) or (
        isinstance(idx, list | tuple) and len(idx) > 0 and all(isinstance(x, str) for x in idx))
    if not is_names:
        _check(lambda: sg[phase][view_var][idx], exp,
               expected_read(view_var, phase, exp) if exp.kind == "rows" else None,
               f"sg[{phase!r}][{view_var!r}][{idx!r}]")
        _check(lambda: sg[view_var][phase][idx], exp,
               expected_read(view_var, phase, exp) if exp.kind == "rows" else None,
               f"sg[{view_var!r}][{phase!r}][{idx!r}]")
    assert _same_index(before, idx), f"the index was modified: {before!r} -> {idx!r}"


# ---------------------------------------------------------------------------- the properties
@given(data=st.data(), phase=st.sampled_from(["train", "all"]),
       view_var=st.sampled_from(sorted(DATA)),
       variables=st.lists(st.sampled_from(sorted(DATA)), min_size=1, max_size=2))
def test_index_forms_match_contract(index_store: StoreGate, data: st.DataObject, phase: str,
                                    view_var: str, variables: list[str]) -> None:
    n = N if phase == "all" else COUNTS[0]
    idx = data.draw(indexes(n), label="index")
    check_index(index_store, phase, idx, view_var, variables)


@given(idx=indexes(COUNTS[0]))
@example(idx=[2**70])  # regression: a Python int beyond int64 in a list raised OverflowError
@example(idx=[np.uint64(2**64 - 1)])  # numpy reads this as row -1; storegate: out of range
@example(idx=slice(None, None, 2**70))  # regression: h5py raised OverflowError on the step
@example(idx=slice(1, None, 2**64))
@example(idx=bytearray(b"\x01"))  # a sequence of ints to numpy and to storegate
def test_normalize_matches_contract(idx: Any) -> None:
    """The normaliser alone (fast, no backend): same oracle, and only canonical forms out."""
    n = COUNTS[0]
    exp = oracle(idx, n)
    _oracle_matches_numpy(idx, n, exp)
    if exp.kind != "rows":
        _expect_error(exp, lambda: normalize(idx, n), f"normalize({idx!r})")
        return
    out = normalize(idx, n)
    if isinstance(out, int):
        assert not isinstance(out, bool) and 0 <= out < n
    elif isinstance(out, slice):
        assert all(isinstance(p, int) for p in (out.start, out.stop, out.step))
        assert 0 <= out.start <= out.stop <= n and 1 <= out.step <= max(n, 1)
    else:
        assert isinstance(out, np.ndarray) and out.ndim == 1 and out.dtype == np.int64
        assert ((out >= 0) & (out < n)).all()
    assert_same_result(np.arange(n)[out], np.arange(n)[exp.rows], f"normalize({idx!r})")


@pytest.mark.parametrize("idx", [[2**70], [np.uint64(2**63)], [-(2**64), 0]], ids=repr)
def test_regression_list_beyond_int64_is_out_of_range(idx: list[Any]) -> None:
    with pytest.raises(IndexOutOfRangeError, match="out of range"):
        normalize(idx, 5)


def test_regression_huge_slice_step_is_clipped(index_store: StoreGate) -> None:
    got = index_store.get_data("i16x3", "train", slice(1, None, 2**70))
    assert_same_result(got, expected_var("i16x3", "train")[1:2])
    assert normalize(slice(None, None, 2**70), 4) == slice(0, 4, 4)


def test_regression_empty_bool_array_selects_no_rows(index_store: StoreGate) -> None:
    """numpy takes an empty bool array as no rows whatever the length; storegate raised."""
    empty = np.array([], dtype=bool)
    assert_same_result(index_store.get_data("i16x3", "train", empty),
                       expected_var("i16x3", "train")[empty])
    assert_same_result(index_store["all"]["f32"][empty], expected_var("f32", "all")[empty])
