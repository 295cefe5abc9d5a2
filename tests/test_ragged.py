"""Ragged vars through the facade, on every built-in backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import storegate
from storegate import RaggedArray, StoreGate

ak = pytest.importorskip("awkward")
pytest.importorskip("pyarrow")

BACKENDS = ["numpy", "zarr", "hybrid", "parquet"]


@pytest.fixture(params=BACKENDS)
def rsg(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreGate]:
    args = {} if request.param == "numpy" else {"output_dir": str(tmp_path / "store")}
    sg = StoreGate(request.param, args, data_id="d")
    yield sg
    sg.close()


def molecules(n: int = 40, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((int(rng.integers(1, 7)), 3)).astype("f4") for _ in range(n)]


def same_rows(got: list[np.ndarray], want: list[np.ndarray]) -> bool:
    return len(got) == len(want) and all(
        g.shape == w.shape and g.dtype == w.dtype and (g == w).all()
        for g, w in zip(got, want, strict=True)
    )


def test_add_and_read_every_form(rsg: StoreGate) -> None:
    rows = molecules()
    rsg.add_data("atoms", rows, phase=(0.5, 0.25, 0.25), shuffle=3)
    rsg.add_data("y", np.arange(40), phase=(0.5, 0.25, 0.25), shuffle=3)
    rsg.compile()
    assert rsg.get_var_shapes("atoms") == (None, 3)
    assert rsg.get_metadata()["total_events"] == [20, 10, 10]
    # default: an awkward array; rows stay aligned with the label they were added with
    got = rsg["train"]["atoms"][[3, 0]]
    assert isinstance(got, ak.Array) and len(got) == 2
    y = rsg["train"]["y"][[3, 0]]
    assert same_rows([np.asarray(got[i], dtype="f4") for i in range(2)], [rows[i] for i in y])
    # raw and list forms, a slice across phase borders and a gather in 'all'
    raw = rsg.get_data("atoms", "all", slice(15, 25), ragged_as="raw")
    assert isinstance(raw, RaggedArray) and len(raw) == 10
    assert same_rows(raw.to_list(), [rows[i] for i in rsg.get_data("y", "all", slice(15, 25))])
    idx = [39, 0, 25, 25]
    lst = rsg.get_data("atoms", "all", idx, ragged_as="list")
    assert same_rows(lst, [rows[i] for i in rsg.get_data("y", "all", idx)])
    # an int index gives one (n_i, 3) array; an empty index an empty result
    one = rsg["valid"]["atoms"][2]
    assert isinstance(one, np.ndarray) and one.ndim == 2 and one.shape[1] == 3
    assert rsg.get_data("atoms", "train", [], ragged_as="list") == []
    rsg.ragged_as = "list"
    assert isinstance(rsg["test"]["atoms"][:], list)


def test_awkward_and_raggedarray_input(rsg: StoreGate) -> None:
    rsg.add_data("a", ak.Array([[[1.0, 2.0]], [[3.0, 4.0], [5.0, 6.0]], []]))
    rsg.add_data("a", RaggedArray.from_list([np.ones((4, 2))]))
    got = rsg.get_data("a", "train", ragged_as="list")
    assert [g.shape for g in got] == [(1, 2), (2, 2), (0, 2), (4, 2)]
    assert got[1].tolist() == [[3.0, 4.0], [5.0, 6.0]]


def test_updates_and_reopen(rsg: StoreGate) -> None:
    rows = molecules(10, seed=1)
    rsg.add_data("atoms", rows)
    rsg.update_data("atoms", [np.full((5, 3), 7, "f4")], index=2)  # another length
    rsg["train"]["atoms"][4] = np.full(rows[4].shape, 9, "f4")  # the same length
    want = list(rows)
    want[2] = np.full((5, 3), 7, "f4")
    want[4] = np.full(rows[4].shape, 9, "f4")
    assert same_rows(rsg.get_data("atoms", ragged_as="list"), want)
    rsg.close()
    if rsg.backend != "numpy" and rsg.backend != "hybrid":
        args = dict(rsg._backend_args, mode="r")
        again = StoreGate(rsg.backend, args, data_id="d")
        assert same_rows(again.get_data("atoms", ragged_as="list"), want)
        assert again.get_var_shapes("atoms") == (None, 3)


def test_transforms(rsg: StoreGate) -> None:
    rows = [np.arange(i % 4 + 1) for i in range(12)]
    rsg.add_data("r", rows, phase=(6, 3, 3))
    rsg.add_data("y", np.arange(12), phase=(6, 3, 3))
    rsg.astype("r", "i2", phase="all")
    assert rsg.get_data("r", "test", 0).dtype == np.int16
    rsg.onehot("r", 4, phase="all")
    assert rsg.get_data("r", "train", 3).shape == (4, 4)
    assert rsg.get_var_shapes("r") == (None, 4)
    with pytest.raises(storegate.UnsupportedOperationError, match="argmax of ragged var 'r'"):
        rsg.argmax("r", axis=1)
    rsg.shuffle("train", seed=5)
    ys = rsg["train"]["y"][:]
    got = rsg.get_data("r", "train", ragged_as="list")
    assert [g.shape[0] for g in got] == [int(y) % 4 + 1 for y in ys]  # rows still aligned


def test_refusals_change_nothing(rsg: StoreGate) -> None:
    rsg.add_data("r", molecules(6))
    rsg.add_data("x", np.zeros((6, 3), "f4"))
    before = rsg.get_data("r", ragged_as="list")
    with pytest.raises(storegate.ShapeMismatchError, match="tuple"):
        rsg.get_data(("r", "x"), "train", 0)
    with pytest.raises(storegate.ShapeMismatchError, match="create_empty"):
        rsg.create_empty("z", (10, None, 3))
    with pytest.raises(storegate.ShapeMismatchError, match="'x'"):
        rsg.add_data("x", molecules(2))
    with pytest.raises(storegate.ShapeMismatchError):
        rsg.add_data("r", [np.zeros((2, 4), "f4"), np.zeros((1, 4), "f4")])  # item shape
    with pytest.raises(storegate.DtypeError):
        rsg.add_data("r", [np.zeros((2, 3), "c16"), np.zeros((1, 3), "c16")])
    assert same_rows(rsg.get_data("r", ragged_as="list"), before)
    assert rsg.get_var_names() == ["r", "x"]


def test_show_info_marks_ragged(rsg: StoreGate) -> None:
    rsg.add_data("r", molecules(4))
    rsg.compile()
    table = rsg.info_table()
    assert "(ragged)" in table and "(None, 3)" in table


def test_hybrid_moves_ragged_vars(tmp_path: Path) -> None:
    sg = StoreGate("hybrid", {"output_dir": str(tmp_path / "h")}, data_id="d")
    rows = molecules(8)
    sg.add_data("r", rows, phase=(4, 2, 2))
    sg.to_memory("r", phase="all")
    assert sg.db.tiers_of("d", "train", "r") == ["numpy", "zarr"]
    sg.delete_data("r", phase="all")  # mode 'zarr': the storage copy goes, memory keeps it
    sg.set_mode("numpy")
    sg.to_storage("r", phase="all")
    assert sg.db.tiers_of("d", "valid", "r") == ["numpy", "zarr"]
    assert same_rows(sg.get_data("r", "all", ragged_as="list"), rows)
