"""The hybrid backend through the facade: one view over a memory tier and a storage tier.

Covers multiml's hybrid workflow compared step by step with a plain numpy StoreGate, the
transactional behaviour of ``to_memory``/``to_storage`` (every failure leaves both tiers and the
mode as they were), ``set_mode`` validation, ``memory_limit`` eviction, ``shuffle`` across
tiers, delete semantics and reopening. See ``docs/backends/hybrid.md``.
"""

from __future__ import annotations

import io
import logging
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from storegate import StoreGate
from storegate.errors import (
    DtypeError,
    InconsistentLengthError,
    InvalidArgumentError,
    ReadOnlyError,
    ShapeMismatchError,
    UnsupportedOperationError,
    VarNotFoundError,
)
from storegate.phases import PHASES

DID = "test_storegate"
SPLIT = (0.8, 0.1, 0.1)
V01 = ("var0", "var1")
V23 = ("var2", "var3")
DATA01 = np.stack([np.linspace(0, 9, 10), np.linspace(10, 19, 10)], axis=1)
DATA23 = np.stack([np.linspace(20, 29, 10), np.linspace(30, 39, 10)], axis=1)

HybridFactory = Callable[..., StoreGate]


@pytest.fixture
def make_hybrid(tmp_path: Path) -> Iterator[HybridFactory]:
    """``make_hybrid(store='h.zarr', data_id=DID, **backend_args)`` -> a hybrid StoreGate."""
    made: list[StoreGate] = []

    def make(store: str = "h.zarr", data_id: str | None = DID, **args: Any) -> StoreGate:
        sg = StoreGate("hybrid", {"output_dir": str(tmp_path / store), **args}, data_id=data_id)
        made.append(sg)
        return sg

    yield make
    for sg in made:
        sg.close()


# ---------------------------------------------------------------------------------- helpers
def tiers(sg: StoreGate) -> dict[str, Any]:
    """Per tier: data_ids, var names (in order), dtype, shape and bytes of every var; and the
    mode. What a failed tier operation must leave unchanged."""
    out: dict[str, Any] = {"mode": sg.db.mode}
    for name in ("numpy", "zarr"):
        be = sg.db.tier(name)
        out[name] = {"data_ids": be.data_ids()}
        for d in be.data_ids():
            for p in PHASES:
                cols = []
                for v in be.var_names(d, p):
                    n = be.info(d, p, v).length
                    a = be.read(d, p, v, slice(0, n, 1))
                    cols.append((v, a.dtype.str, a.shape, a.tobytes()))
                out[name][d, p] = cols
    return out


def assert_copies_identical(sg: StoreGate) -> None:
    """Every var held by both tiers has the same dtype, shape and content in each."""
    mem, disk = sg.db.tier("numpy"), sg.db.tier("zarr")
    data_id = sg.data_id
    for p in PHASES:
        for v in sg.db.var_names(data_id, p):
            if sg.db.tiers_of(data_id, p, v) == ["numpy", "zarr"]:
                n = mem.info(data_id, p, v).length
                a = mem.read(data_id, p, v, slice(0, n, 1))
                b = disk.read(data_id, p, v, slice(0, disk.info(data_id, p, v).length, 1))
                assert a.dtype == b.dtype and a.shape == b.shape, (p, v, a.dtype, b.dtype)
                np.testing.assert_array_equal(a, b, err_msg=f"{p}/{v}: tier copies differ")


def assert_same_view(sg: StoreGate, oracle: StoreGate) -> None:
    """get_var_names, len, in and get_data agree with the oracle in every phase and 'all'."""
    for p in (*PHASES, "all"):
        names = sg.get_var_names(p)
        assert names == oracle.get_var_names(p), p
        assert len(sg[p]) == len(oracle[p]), p
        assert "nope" not in sg[p]
        reads: list[Any] = [*names, tuple(names)] if names else []
        for v in names:
            assert v in sg[p], (p, v)
        for v in reads:
            try:
                exp = oracle.get_data(v, p)
            except Exception as err:  # e.g. vars of different row shapes read as a tuple
                with pytest.raises(type(err)):
                    sg.get_data(v, p)
                continue
            got = sg.get_data(v, p)
            assert got.dtype == exp.dtype and got.shape == exp.shape, (p, v)
            np.testing.assert_array_equal(got, exp)
    assert sg.get_metadata() == oracle.get_metadata()
    assert_copies_identical(sg)


def where(sg: StoreGate, var: str, phase: str = "train") -> list[str]:
    return sg.db.tiers_of(sg.data_id, phase, var)


def info_text(sg: StoreGate) -> str:
    buf = io.StringIO()
    sg.show_info(file=buf)
    return buf.getvalue()


# ---------------------------------------------------------------------------------- (1) workflow
def test_multiml_workflow_agrees_with_numpy_after_every_step(make_hybrid: HybridFactory) -> None:
    """multiml's hybrid test, checked against a numpy StoreGate given the same non-tier
    operations after every step (tier moves are invisible in one view)."""
    sg = make_hybrid(mode="w")
    oracle = StoreGate("numpy", data_id=DID)

    def both(fn: Callable[[StoreGate], Any]) -> None:
        fn(sg)
        fn(oracle)
        assert_same_view(sg, oracle)

    assert sg.db.mode == "zarr"
    both(lambda g: g.add_data(V01, DATA01, phase=SPLIT))
    both(lambda g: g.add_data(V23, DATA23, phase=SPLIT))
    assert sg.get_data_ids() == [DID]
    both(lambda g: g.compile())
    assert all(where(sg, v, p) == ["zarr"] for v in (*V01, *V23) for p in PHASES)

    # the "move" idiom: copy to memory, delete the storage copy; nothing changes in the view
    sg.to_memory(var_names=V23, phase="all")
    assert all(where(sg, v, p) == ["numpy", "zarr"] for v in V23 for p in PHASES)
    assert_same_view(sg, oracle)
    sg.delete_data(var_names=V23, phase="all")
    assert all(where(sg, v, p) == ["numpy"] for v in V23 for p in PHASES)
    assert all(where(sg, v, p) == ["zarr"] for v in V01 for p in PHASES)
    assert_same_view(sg, oracle)
    assert "numpy" in info_text(sg) and "zarr" in info_text(sg)

    # write back
    sg.set_mode("numpy")
    assert_same_view(sg, oracle)
    sg.to_storage(var_names=V23, phase="all")
    assert sg.db.mode == "numpy"
    assert all(where(sg, v, p) == ["numpy", "zarr"] for v in V23 for p in PHASES)
    assert_same_view(sg, oracle)
    assert "numpy,zarr" in info_text(sg)

    # in-place updates reach both copies (other values first, then the originals again)
    both(lambda g: g.update_data(var_names=V23, data=DATA23 + 100, phase=SPLIT))
    assert sg["train"]["var2"][0] == 120
    both(lambda g: g.update_data(var_names=V23, data=DATA23, phase=SPLIT))
    both(lambda g: g.compile())
    both(lambda g: g.update_data(var_names=V23, data=DATA23 * 2, phase="all"))

    def setitem(g: StoreGate) -> None:
        g["all"][V23][:] = DATA23

    both(setitem)
    both(lambda g: g.compile())
    assert all(where(sg, v, p) == ["numpy", "zarr"] for v in V23 for p in PHASES)

    # multiml's read-back assertions
    assert sg.get_data(var_names=V23, phase="train", index=0).tolist() == [20.0, 30.0]
    np.testing.assert_array_equal(sg.get_data(var_names=V23, phase="all"), DATA23)
    np.testing.assert_array_equal(sg["all"][V23][:], DATA23)
    assert [len(sg[p]) for p in PHASES] == [8, 1, 1]
    assert sg["train"][V23][:].shape == (8, 2)
    assert sg["train"][V23][0].shape == (2,)
    assert sg["train"]["var2"][:].shape == (8,)
    assert sg["train"]["var2"][0] == 20

    # the one divergence from multiml: deleting in mode 'numpy' removes the memory copy only,
    # and var2's storage copy stays visible in the one view
    sg.delete_data(var_names="var2", phase="train")
    assert where(sg, "var2") == ["zarr"]
    assert "var2" in sg["train"]

    def delitem(g: StoreGate) -> None:
        del g["train"][list(V01)]

    both(delitem)
    assert sg.get_var_names("train") == ["var2", "var3"]
    sg.delete_data(var_names="var2", phase="train")  # the storage copy goes too
    oracle.delete_data(var_names="var2", phase="train")
    assert sg.get_var_names(phase="train") == ["var3"]
    assert_same_view(sg, oracle)

    # whole-var transforms run in every tier holding a copy and give the values back
    both(lambda g: g.astype(var_names="var3", dtype="i8"))
    assert sg["train"]["var3"][:].dtype == np.int64
    both(lambda g: g.onehot(var_names="var3", num_classes=40))
    assert sg["train"]["var3"][:].shape == (8, 40)
    both(lambda g: g.argmax(var_names="var3", axis=1))
    assert sg["train"]["var3"][0] == 30
    np.testing.assert_array_equal(sg["train"]["var3"][:], np.arange(30, 38))
    assert where(sg, "var3") == ["numpy", "zarr"]


def test_one_view_over_both_tiers(make_hybrid: HybridFactory) -> None:
    """Every facade method sees vars of both tiers; a var in memory is read from memory."""
    sg = make_hybrid()
    sg.add_data("s", np.arange(10), phase=SPLIT)  # storage only
    sg.add_data("c", np.arange(10) * 3, phase=SPLIT)
    sg.to_memory("c", phase="all")  # both tiers
    sg.set_mode("numpy")
    sg.add_data("m", np.arange(10.0) * 10, phase=SPLIT)  # memory only
    sg.compile()
    assert (where(sg, "s"), where(sg, "c"), where(sg, "m")) == (
        ["zarr"], ["numpy", "zarr"], ["numpy"])
    for p in (*PHASES, "all"):
        assert sg.get_var_names(p) == ["s", "c", "m"]
        assert all(v in sg[p] for v in ("s", "c", "m"))
    assert [len(sg[p]) for p in (*PHASES, "all")] == [8, 1, 1, 10]
    np.testing.assert_array_equal(sg.get_data(("s", "m"), "all")[:, 1], np.arange(10.0) * 10)
    assert sg.get_data(["s", "c", "m"], "train", 7) == [7, 21, 70.0]
    assert sg.get_var_shapes(["s", "m", "nope"]) == [(), (), None]
    assert sg.get_data_ids() == [DID]
    assert sorted(sg["train"]) == ["c", "m", "s"]
    text = info_text(sg)
    assert "numpy,zarr" in text and " m " in text.replace("numpy ", " ")

    # a var present in memory is read from memory (make the storage copy differ to see it)
    disk = sg.db.tier("zarr")
    disk.write(DID, "train", "c", 0, np.array(-1))
    assert sg["train"]["c"][0] == 0
    disk.write(DID, "train", "c", 0, np.array(0))

    # compile sees both tiers: a memory-only var of another length is caught
    sg.add_data("m", np.arange(2.0), phase="train")
    with pytest.raises(InconsistentLengthError, match="m=10"):
        sg.compile()


def test_where_writes_go(make_hybrid: HybridFactory) -> None:
    """New vars go to the mode's tier; writes to an existing var go to every copy."""
    sg = make_hybrid()
    sg.add_data("z", np.arange(4), phase="train")
    assert where(sg, "z") == ["zarr"]
    sg.set_mode("numpy")
    sg.add_data("n", np.arange(4), phase="train")
    assert where(sg, "n") == ["numpy"]
    sg.add_data(["z", "n"], [np.arange(4, 6), np.arange(4, 6)], phase="train")
    assert where(sg, "z") == ["zarr"]  # appended to the storage-only var in storage
    assert where(sg, "n") == ["numpy"]
    sg.to_memory("z")
    sg.set_mode("zarr")
    sg.add_data("n", np.arange(6, 8), phase="train")  # memory-only var: appended in memory
    assert where(sg, "n") == ["numpy"]
    sg.add_data("z", np.arange(6, 8), phase="train")  # in both: appended to both
    sg.update_data("z", [70, 71], phase="train", index=(6, 8))
    sg.create_empty("e", (8,), phase="train", dtype="i2")
    assert where(sg, "e") == ["zarr"]
    assert where(sg, "z") == ["numpy", "zarr"]
    assert_copies_identical(sg)
    np.testing.assert_array_equal(sg["train"]["z"][:], [0, 1, 2, 3, 4, 5, 70, 71])


def test_var_order_is_kept_across_tiers(make_hybrid: HybridFactory) -> None:
    """Insertion order across tiers; moving a var between tiers does not reorder the view."""
    sg = make_hybrid()
    sg.add_data(("a", "b", "c"), np.arange(30).reshape(10, 3), phase="train")
    sg.set_mode("numpy")
    sg.add_data("m", np.arange(10), phase="train")
    sg.set_mode("zarr")
    sg.add_data("z", np.arange(10), phase="train")
    assert sg.get_var_names("train") == ["a", "b", "c", "m", "z"]
    sg.to_memory("a")
    sg.delete_data("a")  # the move idiom: a is memory-only now
    assert where(sg, "a") == ["numpy"]
    assert sg.get_var_names("train") == ["a", "b", "c", "m", "z"]
    sg.set_mode("numpy")
    sg.to_storage(["a", "m"])
    sg.delete_data(["a", "m"])  # and back: storage-only again
    assert where(sg, "a") == where(sg, "m") == ["zarr"]
    assert sg.get_var_names("train") == ["a", "b", "c", "m", "z"]
    sg.astype("b", "f4")  # transforms keep the place too
    sg.delete_data("c")
    sg.add_data("c", np.arange(10), phase="train")  # a re-added var comes last
    assert sg.get_var_names("train") == ["a", "b", "m", "z", "c"]
    np.testing.assert_array_equal(sg["train"][("a", "m", "c")][:][:, 1], np.arange(10))


def test_delete_semantics(make_hybrid: HybridFactory) -> None:
    """delete removes the mode's tier copy when there is one, else the copy that exists."""
    sg = make_hybrid()
    sg.add_data(("a", "b", "c", "d"), np.arange(16).reshape(4, 4), phase="train")
    sg.to_memory(["a", "b"])
    sg.delete_data("a")  # mode zarr, both tiers: the storage copy goes, memory keeps it
    assert where(sg, "a") == ["numpy"]
    sg.set_mode("numpy")
    sg.delete_data("b")  # mode numpy, both tiers: the memory copy goes, storage keeps it
    assert where(sg, "b") == ["zarr"]
    sg.delete_data("c")  # only in storage: deleted from storage whatever the mode
    sg.set_mode("zarr")
    sg.delete_data("a")  # only in memory: deleted from memory whatever the mode
    assert sg.get_var_names("train") == ["b", "d"]
    np.testing.assert_array_equal(sg["train"][("b", "d")][:], np.arange(16).reshape(4, 4)[:, 1::2])
    sg.delete_data("nope")  # missing vars are skipped, as in multiml
    assert sg.get_var_names("train") == ["b", "d"]


def test_callback_gets_output_names_in_both_directions(make_hybrid: HybridFactory) -> None:
    """multiml passed the original names to the to_storage callback (bug B8)."""
    sg = make_hybrid()
    sg.add_data(("a", "b"), np.arange(20.0).reshape(10, 2), phase=SPLIT)
    seen: list[Any] = []

    def double(names: Any, data: np.ndarray) -> tuple[Any, np.ndarray]:
        seen.append(names)
        return names, data * 2

    sg.to_memory(("a", "b"), phase="all", output_var_names=("a2", "b2"), callback=double)
    assert seen == [("a2", "b2")] * 3
    np.testing.assert_array_equal(sg["all"]["b2"][:], np.arange(1, 20, 2) * 2.0)
    assert where(sg, "a2") == ["numpy"]
    seen.clear()
    sg.set_mode("numpy")

    def double_list(names: Any, data: list[np.ndarray]) -> tuple[Any, list[np.ndarray]]:
        seen.append(names)
        return names, [d * 2 for d in data]

    sg.to_storage(["a2"], phase="train", output_var_names=["a4"], callback=double_list)
    assert seen == [["a4"]]
    np.testing.assert_array_equal(sg["train"]["a4"][:], np.arange(0, 16, 2) * 4.0)
    assert where(sg, "a4") == ["zarr"]
    with pytest.raises(VarNotFoundError):  # train has a4, the other phases do not
        sg.get_data("a4", "all")
    sg.delete_data("a4")


def test_tier_copy_all_skips_phases_without_the_vars(make_hybrid: HybridFactory) -> None:
    """phase='all' copies the phases that hold the vars (multiml failed half-way, B1)."""
    sg = make_hybrid()
    sg.add_data("x", np.arange(6), phase=(4, 0, 2))
    sg.to_memory("x", phase="all")
    assert [where(sg, "x", p) for p in ("train", "test")] == [["numpy", "zarr"]] * 2
    assert sg.get_var_names("valid") == []
    sg.set_mode("numpy")
    sg.add_data("m", np.arange(4), phase="train")
    sg.to_storage("m", phase="all")
    assert where(sg, "m") == ["numpy", "zarr"]
    assert_copies_identical(sg)


def test_to_memory_from_read_only_storage(make_hybrid: HybridFactory) -> None:
    """A read-only store can still be loaded into memory and worked on there."""
    sg = make_hybrid()
    sg.add_data("x", np.arange(10), phase=SPLIT)
    sg.compile()
    sg.close()
    ro = make_hybrid(mode="r")
    ro.to_memory("x", phase="all")
    assert where(ro, "x") == ["numpy", "zarr"]
    ro.set_mode("numpy")
    ro.add_data("y", np.arange(10) * 2, phase=SPLIT)
    np.testing.assert_array_equal(ro.get_data(("x", "y"), "all")[:, 1], np.arange(10) * 2)
    with pytest.raises(ReadOnlyError):
        ro.update_data("x", np.zeros(8, dtype=np.int64))  # x has a (read-only) storage copy
    np.testing.assert_array_equal(ro["all"]["x"][:], np.arange(10))
    assert_copies_identical(ro)


def test_tier_methods_need_hybrid() -> None:
    sg = StoreGate("numpy", data_id="d")
    sg.add_data("x", np.arange(3))
    for method in (sg.to_memory, sg.to_storage):
        with pytest.raises(UnsupportedOperationError, match="only hybrid"):
            method("x")


# ---------------------------------------------------------------------------------- (2) failures
def _failure_store(make_hybrid: HybridFactory, mode: str) -> StoreGate:
    """var0/var1 in storage, var2 in both tiers, m0 in memory only; 8/1/1 rows."""
    sg = make_hybrid()
    sg.add_data(("var0", "var1", "var2"), np.arange(30.0).reshape(10, 3), phase=SPLIT)
    sg.add_data("t", np.arange(8, dtype=np.int32), phase="train")  # storage, train only
    sg.to_memory("var2", phase="all")
    sg.set_mode("numpy")
    sg.add_data("m0", np.arange(10, dtype=np.int16), phase=SPLIT)
    sg.add_data("m1", np.arange(8, dtype=np.uint8), phase="train")  # memory, train only
    sg.compile()
    sg.set_mode(mode)
    return sg


def _raise(names: Any, data: Any) -> Any:
    raise RuntimeError("callback failed")


FAILURES: dict[str, tuple[Callable[[StoreGate], Any], type[Exception] | tuple[type, ...]]] = {
    "to_memory-bad-name-midway": (
        lambda sg: sg.to_memory(["var0", "nope", "var1"], phase="all"), VarNotFoundError),
    "to_storage-bad-name-midway": (
        lambda sg: sg.to_storage(["m0", "nope", "var2"], phase="all"), VarNotFoundError),
    "to_memory-name-not-a-str": (
        lambda sg: sg.to_memory(["var0", 3], phase="all"), InvalidArgumentError),
    "to_memory-callback-raises": (
        lambda sg: sg.to_memory(("var0", "var1"), phase="all", callback=_raise), RuntimeError),
    "to_storage-callback-raises": (
        lambda sg: sg.to_storage("m0", phase="all", callback=_raise), RuntimeError),
    "to_memory-callback-fewer-rows": (
        lambda sg: sg.to_memory("var0", "all", callback=lambda n, d: (n, d[1:])),
        InconsistentLengthError),
    "to_storage-callback-more-rows": (
        lambda sg: sg.to_storage("m0", "all", callback=lambda n, d: (n, np.r_[d, d])),
        InconsistentLengthError),
    "to_memory-callback-wrong-columns": (
        lambda sg: sg.to_memory(("var0", "var1"), "all",
                                callback=lambda n, d: (n, np.c_[d, d[:, :1]])),
        ShapeMismatchError),
    "to_storage-callback-too-few-arrays": (
        lambda sg: sg.to_storage(["m0", "var2"], "all", callback=lambda n, d: (n, [d[0]])),
        ShapeMismatchError),
    "to_memory-callback-object-dtype": (
        lambda sg: sg.to_memory("var0", "all",
                                callback=lambda n, d: (n, np.array([object()] * len(d)))),
        DtypeError),
    "to_storage-callback-object-dtype": (
        lambda sg: sg.to_storage("m0", "train",
                                 callback=lambda n, d: (n, d.astype(object))),
        DtypeError),
    "to_memory-callback-bad-names": (
        lambda sg: sg.to_memory("var0", "all", callback=lambda n, d: ("bad/name", d)),
        ValueError),
    "to_memory-phase-without-the-var": (
        lambda sg: sg.to_memory("t", phase="valid"), VarNotFoundError),
    "to_memory-all-var-missing-in-a-later-phase": (
        lambda sg: sg.to_memory(["var0", "t"], phase="all"), VarNotFoundError),
    "to_storage-all-var-missing-in-a-later-phase": (
        lambda sg: sg.to_storage(["m0", "m1"], phase="all"), VarNotFoundError),
    "to_storage-var-not-in-memory": (
        lambda sg: sg.to_storage("var0", phase="all"), VarNotFoundError),
    "to_memory-var-not-in-storage": (
        lambda sg: sg.to_memory("m0", phase="train"), VarNotFoundError),
    "to_memory-bad-phase": (
        lambda sg: sg.to_memory("var0", phase="training"), ValueError),
}


@pytest.mark.parametrize("mode", ["zarr", "numpy"])
@pytest.mark.parametrize("case", list(FAILURES))
def test_tier_copy_failure_changes_nothing(
    make_hybrid: HybridFactory, case: str, mode: str
) -> None:
    """Every failure of to_memory/to_storage leaves both tiers and the mode unchanged."""
    sg = _failure_store(make_hybrid, mode)
    before = tiers(sg)
    view = {p: (sg.get_var_names(p), len(sg[p])) for p in (*PHASES, "all")}
    call, error = FAILURES[case]
    with pytest.raises(error):
        call(sg)
    assert tiers(sg) == before
    assert sg.db.mode == mode
    assert {p: (sg.get_var_names(p), len(sg[p])) for p in (*PHASES, "all")} == view


@pytest.mark.parametrize("direction", ["to_memory", "to_storage"])
def test_tier_copy_interrupted_while_writing(
    make_hybrid: HybridFactory, direction: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure after some vars were written to the destination removes them again."""
    sg = _failure_store(make_hybrid, "zarr")
    before = tiers(sg)
    dst = sg.db.tier("numpy" if direction == "to_memory" else "zarr")
    calls = {"n": 0}
    real_append = dst.append

    def flaky(*args: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 4:
            raise OSError("disk full")
        real_append(*args)

    monkeypatch.setattr(dst, "append", flaky)
    names = ["var0", "var1"] if direction == "to_memory" else ["m0", "var2"]
    with pytest.raises(OSError, match="disk full"):
        getattr(sg, direction)(names, phase="all")
    monkeypatch.undo()
    assert calls["n"] == 4
    assert tiers(sg) == before


def test_to_storage_into_read_only_storage(make_hybrid: HybridFactory) -> None:
    """The destination tier read-only: ReadOnlyError, nothing changes."""
    sg = make_hybrid()
    sg.add_data("x", np.arange(10), phase=SPLIT)
    sg.compile()
    sg.close()
    ro = make_hybrid(mode="r")
    ro.set_mode("numpy")
    ro.add_data("m", np.arange(10.0), phase=SPLIT)
    ro.to_memory("x", phase="all")
    before = tiers(ro)
    for call in (lambda: ro.to_storage("m", phase="all"),
                 lambda: ro.to_storage("x", phase="train", output_var_names="x2")):
        with pytest.raises(ReadOnlyError):
            call()
        assert tiers(ro) == before
        assert ro.db.mode == "numpy"


def test_transforms_with_read_only_copy_change_nothing(make_hybrid: HybridFactory) -> None:
    """astype/shuffle on a var whose storage copy is read-only fail before either copy
    changes (the memory copy is not converted alone)."""
    sg = make_hybrid()
    sg.add_data("x", np.arange(10), phase=SPLIT)
    sg.compile()
    sg.close()
    ro = make_hybrid(mode="r")
    ro.to_memory("x", phase="all")
    ro.set_mode("numpy")  # writes to memory allowed, the storage copy of x is read-only
    before = tiers(ro)
    for call in (lambda: ro.astype("x", "f4"), lambda: ro.shuffle(seed=1),
                 lambda: ro.onehot("x", 10, phase="valid")):
        with pytest.raises(ReadOnlyError):
            call()
        assert tiers(ro) == before


# ---------------------------------------------------------------------------------- (3) set_mode
@pytest.mark.parametrize("bad", ["bogus", "Numpy", "memory", "hybrid", "", None, 0])
def test_set_mode_rejects_bad_modes(make_hybrid: HybridFactory, bad: Any) -> None:
    sg = make_hybrid()
    sg.add_data("x", np.arange(4), phase="train")
    for mode in ("numpy", "zarr"):
        sg.set_mode(mode)
        before = tiers(sg)
        with pytest.raises(InvalidArgumentError, match=r"'numpy'.*'zarr'") as err:
            sg.set_mode(bad)
        assert isinstance(err.value, ValueError)
        assert sg.db.mode == mode
        assert tiers(sg) == before
    sg.add_data("y", np.arange(4), phase="train")  # still mode 'zarr'
    assert where(sg, "y") == ["zarr"]


def test_set_mode_on_other_backends_only_warns(caplog: pytest.LogCaptureFixture) -> None:
    sg = StoreGate("numpy", data_id="d")
    with caplog.at_level(logging.WARNING, logger="storegate"):
        sg.set_mode("numpy")
        sg.set_mode("bogus")
    assert caplog.text.count("only hybrid") == 2


# ---------------------------------------------------------------------------------- (4) memory
ROW = 8  # bytes per row of the float64 vars below; a var of 10 rows holds 80 bytes


def _limited(make_hybrid: HybridFactory, limit: int) -> StoreGate:
    sg = make_hybrid(memory_limit=limit)
    sg.add_data(("a", "b", "c"), np.arange(30.0).reshape(10, 3), phase="train")
    return sg


def test_memory_limit_evicts_least_recently_read_mirrors(make_hybrid: HybridFactory) -> None:
    sg = _limited(make_hybrid, 2 * 10 * ROW)
    sg.to_memory("a")
    sg.to_memory("b")
    assert sg.db.memory_bytes() == 160
    assert sg["train"]["a"][0] == 0  # a read: b is now the least recently used
    sg.to_memory("c")
    assert (where(sg, "a"), where(sg, "b"), where(sg, "c")) == (
        ["numpy", "zarr"], ["zarr"], ["numpy", "zarr"])
    assert sg.db.memory_bytes() <= 160
    np.testing.assert_array_equal(sg["train"]["b"][:], np.arange(1.0, 30, 3))  # from storage
    sg["train"]["c"][3]
    sg["train"]["a"][3]
    sg.to_memory("b")  # c is now the least recently read
    assert (where(sg, "a"), where(sg, "b"), where(sg, "c")) == (
        ["numpy", "zarr"], ["numpy", "zarr"], ["zarr"])
    np.testing.assert_array_equal(sg["train"][("a", "b", "c")][:],
                                  np.arange(30.0).reshape(10, 3))


def test_memory_limit_never_drops_the_only_copy(make_hybrid: HybridFactory) -> None:
    sg = _limited(make_hybrid, 2 * 10 * ROW)
    sg.to_memory(["a", "b"])
    sg.set_mode("numpy")
    sg.add_data("m", np.arange(10.0), phase="train")  # memory-only: the only copy
    assert where(sg, "m") == ["numpy"]
    assert sum(where(sg, v) == ["numpy", "zarr"] for v in "ab") == 1
    sg.add_data("big", np.arange(100.0), phase="valid")  # far over the limit
    assert (where(sg, "m"), where(sg, "big", "valid")) == (["numpy"], ["numpy"])
    assert where(sg, "a") == where(sg, "b") == ["zarr"]
    assert sg.db.memory_bytes() == 880 > sg.db.memory_limit
    np.testing.assert_array_equal(sg["train"]["m"][:], np.arange(10.0))
    np.testing.assert_array_equal(sg["valid"]["big"][:], np.arange(100.0))
    np.testing.assert_array_equal(sg["train"][("a", "b")][:],
                                  np.arange(30.0).reshape(10, 3)[:, :2])


def test_memory_limit_keeps_transformed_copies(make_hybrid: HybridFactory) -> None:
    """A copy made through a callback is not the storage data: it is never dropped."""
    sg = _limited(make_hybrid, 10 * ROW)
    sg.to_memory("a", callback=lambda n, d: (n, d + 1000))
    sg.to_memory("b")
    sg.to_memory("c")
    assert where(sg, "a") == ["numpy", "zarr"]
    np.testing.assert_array_equal(sg["train"]["a"][:], np.arange(0.0, 30, 3) + 1000)
    assert where(sg, "b") == ["zarr"]


def test_memory_limit_move_idiom_never_loses_data(make_hybrid: HybridFactory) -> None:
    """to_memory + delete in mode 'zarr' keeps the data even when the memory copy was dropped
    in between (it is reloaded first); in mode 'numpy' deleting the dropped copy keeps the
    storage copy, as it would for a kept memory copy."""
    sg = _limited(make_hybrid, 10 * ROW)
    sg.to_memory(["a", "b", "c"])  # 240 bytes for a limit of 80: a and b are dropped
    assert [where(sg, v) for v in "abc"] == [["zarr"], ["zarr"], ["numpy", "zarr"]]
    sg.delete_data(["a", "b", "c"])  # mode zarr: the storage copies go
    assert [where(sg, v) for v in "abc"] == [["numpy"]] * 3
    np.testing.assert_array_equal(sg["train"][("a", "b", "c")][:],
                                  np.arange(30.0).reshape(10, 3))
    assert sg.db.tier("zarr").var_names(DID, "train") == []

    sg.close()  # one writer per store: the second gate writes after the first is closed
    sg2 = _limited(make_hybrid, 10 * ROW)
    sg2.to_memory(["a", "b"])
    assert where(sg2, "a") == ["zarr"]
    sg2.set_mode("numpy")
    sg2.delete_data("a")  # forgets the dropped memory copy; storage keeps a
    assert where(sg2, "a") == ["zarr"]
    np.testing.assert_array_equal(sg2["train"]["a"][:], np.arange(0.0, 30, 3))
    sg2.delete_data("a")
    assert sg2.get_var_names("train") == ["b", "c"]


@pytest.mark.parametrize("bad", [-1, 1.5, "1GB"])
def test_memory_limit_must_be_bytes(make_hybrid: HybridFactory, bad: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="memory_limit"):
        make_hybrid(memory_limit=bad)


# ---------------------------------------------------------------------------------- (5) shuffle
def test_shuffle_aligns_rows_across_tiers(make_hybrid: HybridFactory) -> None:
    sg = make_hybrid()
    oracle = StoreGate("numpy", data_id=DID)
    ids = np.arange(50)
    for g in (sg, oracle):
        g.add_data("s", ids, phase=SPLIT)  # storage only
        g.add_data("b", ids * 100, phase=SPLIT)
    sg.to_memory("b", phase="all")  # both tiers
    sg.set_mode("numpy")
    for g in (sg, oracle):
        g.add_data("m", (ids * 10).astype(np.float32), phase=SPLIT)  # memory only
        g.compile()
    for g in (sg, oracle):
        g.shuffle(phase="all", seed=7)
    for p in PHASES:
        assert (where(sg, "s", p), where(sg, "b", p), where(sg, "m", p)) == (
            ["zarr"], ["numpy", "zarr"], ["numpy"])
        s, b, m = sg.get_data(["s", "b", "m"], p)
        np.testing.assert_array_equal(b, s * 100)
        np.testing.assert_array_equal(m, s * 10)
    train = sg["train"]["s"][:]
    assert sorted(train.tolist()) == list(range(40)) and train.tolist() != list(range(40))
    assert_same_view(sg, oracle)  # the same permutation as the numpy backend, both copies same
    assert_copies_identical(sg)


# ---------------------------------------------------------------------------------- (6) reopen
def test_reopen_sees_the_storage_tier(make_hybrid: HybridFactory, tmp_path: Path) -> None:
    sg = make_hybrid()
    sg.add_data(("a", "b"), np.arange(20).reshape(10, 2), phase=SPLIT)
    sg.to_memory("b", phase="all")
    sg.set_mode("numpy")
    sg.add_data("m", np.arange(10.0), phase=SPLIT)  # memory-only: lost on close
    sg.compile()
    assert sg.get_var_names("train") == ["a", "b", "m"]
    sg.close()

    again = make_hybrid()
    assert again.db.mode == "zarr"
    assert again.get_var_names("train") == ["a", "b"]
    assert [len(again[p]) for p in (*PHASES, "all")] == [8, 1, 1, 10]
    np.testing.assert_array_equal(again["all"][("a", "b")][:], np.arange(20).reshape(10, 2))
    assert all(where(again, v, p) == ["zarr"] for v in "ab" for p in PHASES)

    code = (
        "import sys; from storegate import StoreGate\n"
        "sg = StoreGate('hybrid', {'output_dir': sys.argv[1]}, data_id=sys.argv[2])\n"
        "print(sg.get_var_names('all'), len(sg['all']), sg['all']['b'][:].tolist())\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "h.zarr"), DID],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['a', 'b'] 10 [1, 3, 5, 7, 9, 11, 13, 15, 17, 19]"


def test_reopen_after_moving_whole_phases_to_memory(make_hybrid: HybridFactory) -> None:
    """Compile metadata counted memory-only vars; a reopened store must not trust it."""
    sg = make_hybrid()
    sg.add_data("a", np.arange(10), phase=SPLIT)
    sg.add_data("v", np.arange(2), phase=(0, 1, 1))
    sg.compile()
    sg.to_memory("a", phase="all")
    sg.delete_data("a", phase="all")  # the move idiom: a is memory-only now
    sg.compile()
    assert [len(sg[p]) for p in PHASES] == [8, 1, 1]
    sg.close()
    again = make_hybrid()
    assert again.get_var_names("train") == []
    assert [len(again[p]) for p in (*PHASES, "all")] == [0, 1, 1, 2]
    assert again.get_var_names("all") == ["v"]
    assert again.get_metadata()["valid_phases"] == ["valid", "test"]


def test_reopen_without_memory_only_vars_keeps_compile_state(
    make_hybrid: HybridFactory,
) -> None:
    sg = make_hybrid()
    sg.add_data("a", np.arange(10), phase=SPLIT)
    sg.to_memory("a", phase="all")
    sg.compile()
    sg.close()
    again = make_hybrid()
    assert again.db.get_attrs(DID)["storegate"]["compiled"] is True
    assert len(again["all"]) == 10
