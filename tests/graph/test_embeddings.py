"""EmbeddingTable: gather / put / scatter_add / optimizer steps on every backend, crash-safe
flush, reopen, and bad input."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sg_helpers import run_until_killed

from storegate import StoreGate
from storegate.errors import (
    DtypeError,
    IndexOutOfRangeError,
    InvalidArgumentError,
    InvalidIndexError,
    InvalidNameError,
    ReadOnlyError,
    ShapeMismatchError,
    StoregateError,
    VarNotFoundError,
)
from storegate.graph.embeddings import EmbeddingTable, coalesce, sparse_step

BACKENDS = ["numpy", "zarr", "hybrid", "parquet", "hdf5"]


def open_store(kind: str, where: Path, mode: str | None = None) -> StoreGate:
    extra = {"mode": mode} if mode else {}
    if kind == "numpy":
        return StoreGate("numpy")
    if kind == "hdf5":
        if importlib.util.find_spec("storegate_hdf5") is None:
            pytest.skip("the storegate-hdf5 plugin is not installed")
        return StoreGate("hdf5", {"path": str(where / "t.h5"), **extra})
    return StoreGate(kind, {"output_dir": str(where / f"t.{kind}"), **extra})


@pytest.fixture(params=BACKENDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Oracle:
    """The same updates on a plain numpy array (the in-memory reference)."""

    def __init__(self, w: np.ndarray) -> None:
        self.w = w.astype(np.float64)
        self.s = np.zeros_like(self.w)

    def scatter_add(self, ids: np.ndarray, d: np.ndarray) -> None:
        np.add.at(self.w, ids, d)

    def adagrad(self, ids: np.ndarray, g: np.ndarray, lr: float, eps: float) -> None:
        acc = np.zeros_like(self.w)
        np.add.at(acc, ids, g)
        u = np.unique(ids)
        self.s[u] += acc[u] ** 2
        self.w[u] -= lr * acc[u] / (np.sqrt(self.s[u]) + eps)


def test_ops_on_every_backend(kind: str, tmp_path: Path) -> None:
    sg = open_store(kind, tmp_path)
    t = EmbeddingTable(sg, "nodes", "emb", 300, 8, optimizer="adagrad", lr=0.3, seed=3)
    w0 = t.to_numpy()
    assert w0.shape == (300, 8) and w0.dtype == np.float32 and w0.std() > 0
    ref = Oracle(w0)
    rng = np.random.default_rng(0)
    for _ in range(6):
        ids = rng.integers(0, 300, 50)  # with repeats
        d = rng.standard_normal((50, 8)).astype(np.float32)
        t.scatter_add(ids, d)
        ref.scatter_add(ids, d)
        g = rng.standard_normal((50, 8)).astype(np.float32)
        t.apply_gradients(ids, g)
        ref.adagrad(ids, g, 0.3, 1e-10)
    np.testing.assert_allclose(t.to_numpy(), ref.w, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(t.to_numpy(state=True), ref.s, rtol=1e-4, atol=1e-5)
    t.put([7, 7, 9], np.array([[1] * 8, [2] * 8, [3] * 8], np.float32))
    assert t.gather([7, 9]).tolist() == [[2.0] * 8, [3.0] * 8]  # last value wins
    expected = t.to_numpy()
    t.flush()
    assert t.pending_rows == 0
    assert sg.db.var_names("nodes", "train") == ["emb", "emb_state"]  # no working copy listed
    np.testing.assert_array_equal(t.to_numpy(), expected)
    if kind != "numpy":
        sg.close()
        sg = open_store(kind, tmp_path)
        again = EmbeddingTable(sg, "nodes", "emb", optimizer="adagrad")
        np.testing.assert_array_equal(again.to_numpy(), expected)
        np.testing.assert_allclose(again.to_numpy(state=True), ref.s, rtol=1e-4, atol=1e-5)
        # the store reads like any other: the table is a var
        sg.set_data_id("nodes")
        np.testing.assert_array_equal(sg["train"]["emb"][:], expected)
    sg.close()


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_float_dtypes(dtype: str, tmp_path: Path) -> None:
    sg = open_store("zarr", tmp_path)
    t = EmbeddingTable(sg, "n", "w", 50, 4, dtype=dtype, optimizer="sgd", lr=0.5,
                       init="uniform", init_scale=0.1)
    assert t.dtype == np.dtype(dtype)
    w0 = t.to_numpy().astype(np.float64)
    assert np.abs(w0).max() <= 0.1
    ids = np.array([1, 1, 2])
    t.apply_gradients(ids, np.ones((3, 4), dtype))
    got = t.to_numpy()
    assert got.dtype == np.dtype(dtype)
    tol = 1e-3 if dtype == "float16" else 1e-7
    np.testing.assert_allclose(got[1], w0[1] - 1.0, atol=tol)
    np.testing.assert_allclose(got[2], w0[2] - 0.5, atol=tol)
    np.testing.assert_array_equal(got[3:], w0[3:].astype(dtype))
    t.flush()
    sg.close()


def test_same_seed_same_table_on_every_backend(tmp_path: Path) -> None:
    tables = [EmbeddingTable(open_store(k, tmp_path / k if k != "numpy" else tmp_path),
                             "n", "w", 70_000, 3, seed=5).to_numpy()
              for k in ("numpy", "zarr", "parquet")]
    for other in tables[1:]:
        np.testing.assert_array_equal(tables[0], other)


def test_flush_is_the_commit_point(tmp_path: Path) -> None:
    sg = open_store("zarr", tmp_path)
    t = EmbeddingTable(sg, "n", "w", 40, 2, init="zeros", optimizer="adagrad", lr=1.0)
    t.apply_gradients([1, 2], np.ones((2, 2)))
    t.flush()
    committed = (t.to_numpy(), t.to_numpy(state=True))
    t.apply_gradients([2, 3], np.ones((2, 2)))
    assert t.pending_rows == 2
    # a reader of the store sees the committed table, not the pending rows
    reader = StoreGate("zarr", {"output_dir": str(tmp_path / "t.zarr"), "mode": "r"})
    np.testing.assert_array_equal(reader.db.read("n", "train", "w", slice(0, 40, 1)),
                                  committed[0])
    reader.close()
    t.discard()
    np.testing.assert_array_equal(t.to_numpy(), committed[0])
    np.testing.assert_array_equal(t.to_numpy(state=True), committed[1])
    t.flush()  # nothing pending: a no-op
    sg.close()


_KILLED = """
import os, signal, sys
import numpy as np
from storegate import StoreGate
from storegate.graph.embeddings import EmbeddingTable
sg = StoreGate("zarr", {"output_dir": sys.argv[1]})
t = EmbeddingTable(sg, "n", "w", 20_000, 16, optimizer="adagrad", lr=0.1, seed=1)
rng = np.random.default_rng(0)
for step in range(40):
    ids = rng.integers(0, 20_000, 4_000)
    t.apply_gradients(ids, rng.standard_normal((ids.size, 16)).astype(np.float32))
    if step == 9:
        t.flush()
        np.save(sys.argv[2], t.to_numpy())
        np.save(sys.argv[3], t.to_numpy(state=True))
        print("flushed", flush=True)
    if step == int(sys.argv[4]):
        os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("kill_at", [10, 25])
def test_sigkill_leaves_the_table_at_the_last_flush(tmp_path: Path, kill_at: int) -> None:
    store = tmp_path / "t.zarr"
    proc = run_until_killed(_KILLED, [store, tmp_path / "w.npy", tmp_path / "s.npy", kill_at],
                            tmp_path)
    assert "flushed" in proc.stdout
    sg = StoreGate("zarr", {"output_dir": str(store)})
    t = EmbeddingTable(sg, "n", "w", optimizer="adagrad")
    np.testing.assert_array_equal(t.to_numpy(), np.load(tmp_path / "w.npy"))
    np.testing.assert_array_equal(t.to_numpy(state=True), np.load(tmp_path / "s.npy"))
    assert sg.db.var_names("n", "train") == ["w", "w_state"]
    assert not any(name.startswith(".sg-tmp") for name in os.listdir(store / "n" / "train"))
    t.apply_gradients([0], np.ones((1, 16)))  # trains on after the crash
    t.flush()
    sg.close()


def test_table_beside_node_vars(tmp_path: Path) -> None:
    sg = open_store("zarr", tmp_path)
    sg.set_data_id("nodes")
    sg.add_data("x", np.arange(20.0).reshape(10, 2), phase="train")
    sg.compile()
    t = EmbeddingTable(sg, "nodes", "emb", 10, 4)
    assert sg.get_var_names("train") == ["x", "emb"]
    sg.compile()
    assert sg["train"]["emb"][[0, 9]].shape == (2, 4)
    np.testing.assert_array_equal(sg["train"]["emb"][:], t.to_numpy())
    with pytest.raises(ShapeMismatchError, match="every var of a phase has one length"):
        EmbeddingTable(sg, "nodes", "other", 11, 4)
    sg.close()


def test_bad_input(tmp_path: Path) -> None:
    sg = open_store("zarr", tmp_path)
    t = EmbeddingTable(sg, "n", "w", 10, 3, optimizer="adagrad")
    snapshot = t.to_numpy()
    with pytest.raises(IndexOutOfRangeError, match=r"\[10\]"):
        t.gather([0, 10])
    with pytest.raises(IndexOutOfRangeError):
        t.scatter_add([-1], np.ones((1, 3)))
    with pytest.raises(InvalidIndexError, match="integers"):
        t.gather(np.array([0.0, 1.0]))
    with pytest.raises(InvalidIndexError):
        t.gather(np.array([True, False]))
    with pytest.raises(ShapeMismatchError, match="one row of 3"):
        t.scatter_add([0, 1], np.ones((2, 4)))
    with pytest.raises(ShapeMismatchError):
        t.put([0], np.ones((2, 3)))
    with pytest.raises(DtypeError):
        t.put([0], np.array([["a", "b", "c"]]))
    with pytest.raises(ShapeMismatchError, match="num_embeddings"):
        EmbeddingTable(sg, "n", "w", 11, 3)
    with pytest.raises(ShapeMismatchError, match="dim"):
        EmbeddingTable(sg, "n", "w", 10, 2)
    with pytest.raises(DtypeError):
        EmbeddingTable(sg, "n", "w", dtype="float64")
    with pytest.raises(VarNotFoundError, match="num_embeddings and dim"):
        EmbeddingTable(sg, "n", "missing")
    with pytest.raises(DtypeError, match="float16, float32 or float64"):
        EmbeddingTable(sg, "m", "ints", 4, 2, dtype="int32")
    with pytest.raises(InvalidArgumentError, match="optimizer"):
        EmbeddingTable(sg, "n", "w", optimizer="adam")
    with pytest.raises(InvalidArgumentError, match="init"):
        EmbeddingTable(sg, "m", "x", 4, 2, init="glorot")
    with pytest.raises(InvalidArgumentError):
        EmbeddingTable(sg, "m", "x", -1, 2)
    with pytest.raises(InvalidNameError):
        EmbeddingTable(sg, "m", "a/b", 4, 2)
    with pytest.raises(InvalidNameError, match="too long"):
        EmbeddingTable(sg, "m", "v" * 250, 4, 2)
    with pytest.raises(InvalidArgumentError):
        EmbeddingTable(sg, "m", "x", 4, 2, phase="all")
    with pytest.raises(InvalidArgumentError, match="no optimizer"):
        EmbeddingTable(sg, "n", "w").apply_gradients([0], np.ones((1, 3)))
    with pytest.raises(InvalidArgumentError, match="no optimizer state"):
        EmbeddingTable(sg, "n", "w").gather_state([0])
    with pytest.raises(IndexOutOfRangeError):
        t.read_range(5, 11)
    with pytest.raises(ShapeMismatchError):
        t.write_range(0, np.ones((2, 5)))
    with pytest.raises(ShapeMismatchError):
        EmbeddingTable(sg, "m", "cb", 4, 2, init=lambda rng, shape, dtype: np.zeros((1, 1)))
    np.testing.assert_array_equal(t.to_numpy(), snapshot)  # nothing changed
    assert t.pending_rows == 0
    sg.close()
    ro = open_store("zarr", tmp_path, mode="r")
    t = EmbeddingTable(ro, "n", "w", optimizer="adagrad")
    np.testing.assert_array_equal(t.gather([0, 1]), snapshot[:2])
    with pytest.raises(ReadOnlyError):
        t.apply_gradients([0], np.ones((1, 3)))
    with pytest.raises(StoregateError):
        EmbeddingTable(ro, "n", "new", 10, 3)
    ro.close()


def test_torch_tensors_and_shapes() -> None:
    torch = pytest.importorskip("torch")
    t = EmbeddingTable(StoreGate("numpy"), "n", "w", 6, 2, init="zeros")
    t.scatter_add(torch.tensor([[1, 2], [2, 5]]), torch.ones(2, 2, 2))
    assert t.gather(torch.tensor([[2], [5]])).shape == (2, 1, 2)
    assert t.gather([2]).tolist() == [[2.0, 2.0]]
    assert t.gather(np.zeros(0, np.int64)).shape == (0, 2)
    t.scatter_add([], np.zeros((0, 2)))
    assert t.pending_rows == 3  # rows 1, 2 and 5


def test_coalesce_and_sparse_step_match_dense() -> None:
    rng = np.random.default_rng(3)
    ids = rng.integers(0, 50, 400)
    vals = rng.standard_normal((400, 3))
    u, s = coalesce(ids, vals)
    dense = np.zeros((50, 3))
    np.add.at(dense, ids, vals)
    assert u.tolist() == np.unique(ids).tolist()
    np.testing.assert_allclose(s, dense[u])
    t = EmbeddingTable(StoreGate("numpy"), "n", "w", 50, 3, init="zeros", dtype="float64")
    with pytest.raises(InvalidArgumentError):
        sparse_step(t, ids, vals, optimizer="rmsprop", lr=0.1)
    sparse_step(t, ids, vals, optimizer="sgd", lr=0.1)
    np.testing.assert_allclose(t.to_numpy(), -0.1 * dense)


@pytest.mark.filterwarnings("ignore:Sparse invariant checks:UserWarning")  # torch's Adagrad
def test_matches_torch_sparse_embedding_with_adagrad_and_sgd(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from storegate.torch.embedding import StoreEmbedding

    for opt_name in ("adagrad", "sgd"):
        sg = open_store("zarr", tmp_path / opt_name)
        t = EmbeddingTable(sg, "n", "w", 500, 8, optimizer=opt_name, lr=0.2, seed=2)
        ref = torch.nn.Embedding(500, 8, sparse=True)
        ref.weight.data[:] = torch.from_numpy(t.to_numpy())
        opt: Any = (torch.optim.Adagrad(ref.parameters(), lr=0.2) if opt_name == "adagrad"
                    else torch.optim.SGD(ref.parameters(), lr=0.2))
        emb = StoreEmbedding(t)
        gen = torch.Generator().manual_seed(0)
        for _ in range(15):
            ids = torch.randint(0, 500, (3, 40), generator=gen)
            target = torch.randn(3, 40, 8, generator=gen)
            ((emb(ids) - target) ** 2).sum().backward()
            opt.zero_grad()
            ((ref(ids) - target) ** 2).sum().backward()
            opt.step()
        np.testing.assert_allclose(t.to_numpy(), ref.weight.detach().numpy(), rtol=1e-5,
                                   atol=1e-6)
        with torch.no_grad():
            assert not emb(torch.tensor([1])).requires_grad
        t.flush()
        sg.close()
