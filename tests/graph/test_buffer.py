"""PartitionBuffer and swap plans: same results as in-memory training, prefetch and
write-back bookkeeping, full_load, crash safety, bad input."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from sg_helpers import run_until_killed

from storegate import StoreGate
from storegate.errors import (
    InvalidArgumentError,
    InvalidIndexError,
    ShapeMismatchError,
    UnsupportedOperationError,
)
from storegate.graph.buffer import PartitionBuffer, equal_offsets
from storegate.graph.embeddings import EmbeddingTable
from storegate.graph.swaps import SwapPlan, beta_plan, node_plan


def disk_store(kind: str, where: Path) -> StoreGate:
    if kind == "hdf5":
        if importlib.util.find_spec("storegate_hdf5") is None:
            pytest.skip("the storegate-hdf5 plugin is not installed")
        return StoreGate("hdf5", {"path": str(where / "t.h5")})
    return StoreGate(kind, {"output_dir": str(where / f"t.{kind}")})


# ----------------------------------------------------------------------------- plans
@pytest.mark.parametrize("p,c", [(1, 1), (2, 2), (3, 2), (4, 2), (8, 2), (8, 3), (9, 4),
                                 (16, 4), (16, 16), (5, 9)])
@pytest.mark.parametrize("assign", ["first", "random"])
def test_beta_plan_meets_every_pair(p: int, c: int, assign: str) -> None:
    for seed in (None, 0, 1):
        plan = beta_plan(p, c, seed=seed, assign=assign)
        assert plan.covers_all_buckets()
        assert all(len(s) <= min(c, p) for s in plan.states)
        assert sorted({q for s in plan.states for q in s}) == list(range(p))
        if c == 2 and p > 2:  # one partition read per step after the first state
            assert plan.num_swaps == plan.num_states - 1


def test_node_plans() -> None:
    seq = node_plan(7, 3)
    assert seq.states == [(0, 1, 2), (3, 4, 5), (6,)] and seq.kind == "sequential"
    disp = node_plan(7, 3, order="dispersed", seed=1)
    assert sorted(q for s in disp.states for q in s) == list(range(7))
    assert disp.states != seq.states
    assert node_plan(7, 3, order="dispersed", seed=1) == disp


def test_plan_errors() -> None:
    with pytest.raises(InvalidArgumentError, match="at least 2"):
        beta_plan(4, 1)
    with pytest.raises(InvalidArgumentError):
        beta_plan(0, 2)
    with pytest.raises(InvalidArgumentError):
        beta_plan("many", 2)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="assign"):
        beta_plan(4, 2, assign="last")
    with pytest.raises(InvalidArgumentError, match="order"):
        node_plan(4, 2, order="random")
    with pytest.raises(InvalidArgumentError):
        node_plan(4, 0)


# ----------------------------------------------------------------------------- training
def _train(rows: object, steps: list[tuple[tuple[int, ...], list[tuple[np.ndarray, np.ndarray]]]],
           buffer: PartitionBuffer | None, plan: SwapPlan) -> None:
    it = iter(buffer.states(plan)) if buffer is not None else iter(plan.states)
    for (state, updates), entered in zip(steps, it, strict=True):
        assert tuple(entered) == state
        for ids, grads in updates:
            rows.apply_gradients(ids, grads)  # type: ignore[attr-defined]


def _steps(plan: SwapPlan, offsets: np.ndarray, dim: int, seed: int
           ) -> list[tuple[tuple[int, ...], list[tuple[np.ndarray, np.ndarray]]]]:
    """Per state, updates whose ids are drawn from the resident partitions (repeats too)."""
    rng = np.random.default_rng(seed)
    out = []
    for state in plan.states:
        pool = np.concatenate([np.arange(offsets[p], offsets[p + 1]) for p in state])
        updates = []
        for _ in range(3):
            ids = rng.choice(pool, 300)
            updates.append((ids, rng.standard_normal((300, dim)).astype(np.float32)))
        out.append((tuple(state), updates))
    return out


@pytest.mark.parametrize("kind", ["zarr", "parquet", "hdf5"])
@pytest.mark.parametrize("prefetch", [True, False])
def test_buffered_training_equals_in_memory_training(tmp_path: Path, kind: str,
                                                     prefetch: bool) -> None:
    n, dim, parts = 4_000, 8, 8
    cap = parts // 4  # the table is 4x the buffer
    sg = disk_store(kind, tmp_path)
    table = EmbeddingTable(sg, "nodes", "emb", n, dim, optimizer="adagrad", lr=0.05, seed=7)
    mem = EmbeddingTable(StoreGate("numpy"), "nodes", "emb", n, dim, optimizer="adagrad",
                         lr=0.05, seed=7)
    np.testing.assert_array_equal(table.to_numpy(), mem.to_numpy())
    offsets = equal_offsets(n, parts)
    with PartitionBuffer(table, parts, capacity=cap, prefetch=prefetch) as buf:
        assert buf.capacity * buf.max_rows * 4 == n
        for epoch in range(2):
            plan = beta_plan(parts, cap, seed=epoch)
            steps = _steps(plan, offsets, dim, seed=epoch)
            _train(buf, steps, buf, plan)
            _train(mem, steps, None, plan)
            buf.flush()
            assert buf.stats.reads > 0 and buf.stats.writes > 0
    np.testing.assert_allclose(table.to_numpy(), mem.to_numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(table.to_numpy(state=True), mem.to_numpy(state=True),
                               rtol=1e-6, atol=1e-7)
    sg.close()
    again = EmbeddingTable(disk_store(kind, tmp_path), "nodes", "emb", optimizer="adagrad")
    np.testing.assert_allclose(again.to_numpy(), mem.to_numpy(), rtol=1e-6, atol=1e-7)
    again.storegate.close()


def test_swap_bookkeeping(tmp_path: Path) -> None:
    sg = disk_store("zarr", tmp_path)
    table = EmbeddingTable(sg, "n", "w", 100, 2, seed=0)
    before = table.to_numpy()
    plan = beta_plan(10, 3, seed=2)
    with PartitionBuffer(table, 10, capacity=3) as buf:
        for state in buf.states(plan):
            assert buf.resident == state
            lo, hi = buf.resident_range(state[0])
            np.testing.assert_array_equal(buf.gather(np.arange(lo, hi)), before[lo:hi])
            outside = next(p for p in range(10) if p not in state)
            with pytest.raises(InvalidIndexError, match="not in the buffer"):
                buf.gather([int(equal_offsets(100, 10)[outside])])
        stats = buf.stats
        # a read-only epoch reads each admitted partition once and writes nothing back
        assert stats.reads == sum(len(a) for a in plan.admits())
        assert stats.writes == 0 and stats.swaps == plan.num_states
        assert 0.0 <= stats.hidden_fraction <= 1.0
        assert table.pending_rows == 0
    np.testing.assert_array_equal(table.to_numpy(), before)
    sg.close()


def test_plan_offsets_and_node_plan(tmp_path: Path) -> None:
    sg = disk_store("zarr", tmp_path)
    table = EmbeddingTable(sg, "n", "w", 10, 1, init="zeros", optimizer="sgd", lr=1.0)
    offsets = [0, 1, 5, 5, 10]  # uneven, with an empty partition
    with PartitionBuffer(table, offsets, capacity=2) as buf:
        assert buf.max_rows == 5 and buf.num_parts == 4
        for state in buf.states(node_plan(4, 2)):
            for p in state:
                lo, hi = buf.resident_range(p)
                buf.apply_gradients(np.arange(lo, hi), -np.full((hi - lo, 1), p + 1.0))
    assert table.to_numpy().ravel().tolist() == [1.0, 2, 2, 2, 2, 4, 4, 4, 4, 4]
    sg.close()


def test_full_load_for_evaluation(tmp_path: Path) -> None:
    sg = disk_store("zarr", tmp_path)
    table = EmbeddingTable(sg, "n", "w", 40, 2, init="zeros", optimizer="adagrad", lr=1.0)
    buf = PartitionBuffer(table, 4, capacity=1)
    buf.swap_to([2])
    buf.apply_gradients([20, 21], np.ones((2, 2)))
    buf.full_load()
    assert buf.gather([20])[0, 0] == pytest.approx(-1.0)  # the resident update is kept
    assert buf.gather(np.arange(40)).shape == (40, 2)
    with pytest.raises(UnsupportedOperationError, match="release"):
        buf.swap_to([0])
    buf.put([0], [[5.0, 5.0]])
    buf.release()
    assert buf.resident == ()
    buf.swap_to([0])
    assert buf.gather([0]).tolist() == [[5.0, 5.0]]
    buf.flush()
    buf.close()
    assert table.gather([0, 20]).tolist() == [[5.0, 5.0], [-1.0, -1.0]]
    with pytest.raises(UnsupportedOperationError, match="closed"):
        buf.swap_to([1])
    sg.close()


def test_exception_in_training_drops_the_uncommitted_updates(tmp_path: Path) -> None:
    sg = disk_store("zarr", tmp_path)
    table = EmbeddingTable(sg, "n", "w", 20, 1, init="zeros", optimizer="sgd", lr=1.0)
    with pytest.raises(RuntimeError), PartitionBuffer(table, 2, capacity=1) as buf:
        buf.swap_to([0])
        buf.apply_gradients([0], [[1.0]])
        buf.flush()
        buf.apply_gradients([1], [[1.0]])
        buf.swap_to([1])  # writes partition 0 back (uncommitted)
        raise RuntimeError("training failed")
    assert table.to_numpy()[:2].ravel().tolist() == [-1.0, 0.0]
    sg.close()


def test_buffer_bad_input() -> None:
    table = EmbeddingTable(StoreGate("numpy"), "n", "w", 10, 2, optimizer="sgd")
    with pytest.raises(InvalidArgumentError):
        PartitionBuffer("table", 2, capacity=1)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="cover"):
        PartitionBuffer(table, [0, 5, 9], capacity=1)
    with pytest.raises(InvalidArgumentError, match="cover"):
        PartitionBuffer(table, [0, 6, 5, 10], capacity=1)
    with pytest.raises(InvalidArgumentError):
        PartitionBuffer(table, 0, capacity=1)
    with pytest.raises(InvalidArgumentError):
        PartitionBuffer(table, 2, capacity=0)
    with PartitionBuffer(table, 5, capacity=2) as buf:
        with pytest.raises(InvalidArgumentError, match="holds 2"):
            buf.swap_to([0, 1, 2])
        with pytest.raises(InvalidArgumentError, match="outside"):
            buf.swap_to([5])
        with pytest.raises(InvalidArgumentError):
            buf.swap_to(["a"])  # type: ignore[list-item]
        with pytest.raises(InvalidArgumentError, match="plan"):
            list(buf.states(beta_plan(4, 2)))
        with pytest.raises(InvalidArgumentError, match="SwapPlan"):
            list(buf.states([(0, 1)]))  # type: ignore[arg-type]
        with pytest.raises(UnsupportedOperationError, match="PartitionPlan"):
            list(buf.edge_buckets(beta_plan(5, 2)))
        buf.swap_to([0, 1])
        with pytest.raises(ShapeMismatchError):
            buf.scatter_add([0], np.ones((1, 3)))
        with pytest.raises(InvalidArgumentError, match="optimizer state"):
            buf.gather_state([0])
        with pytest.raises(InvalidIndexError):
            buf.gather([11])


_KILLED = """
import os, signal, sys
import numpy as np
from storegate import StoreGate
from storegate.graph.buffer import PartitionBuffer
from storegate.graph.embeddings import EmbeddingTable
from storegate.graph.swaps import beta_plan
sg = StoreGate("zarr", {"output_dir": sys.argv[1]})
t = EmbeddingTable(sg, "n", "w", 8_000, 16, optimizer="adagrad", lr=0.1, seed=1)
buf = PartitionBuffer(t, 8, capacity=2)
rng = np.random.default_rng(0)
step = 0
for epoch in range(3):
    plan = beta_plan(8, 2, seed=epoch)
    for state in buf.states(plan):
        pool = np.concatenate([np.arange(*buf.resident_range(p)) for p in state])
        ids = rng.choice(pool, 500)
        buf.apply_gradients(ids, rng.standard_normal((500, 16)).astype(np.float32))
        step += 1
        if step == int(sys.argv[4]):
            os.kill(os.getpid(), signal.SIGKILL)
    buf.flush()
    if epoch == 0:
        np.save(sys.argv[2], t.to_numpy())
        np.save(sys.argv[3], t.to_numpy(state=True))
        print("flushed", flush=True)
"""


@pytest.mark.parametrize("kill_at", [29, 45])
def test_sigkill_during_buffered_training(tmp_path: Path, kill_at: int) -> None:
    store = tmp_path / "t.zarr"
    proc = run_until_killed(_KILLED, [store, tmp_path / "w.npy", tmp_path / "s.npy", kill_at],
                            tmp_path)
    assert "flushed" in proc.stdout  # epoch 0 has 28 states
    sg = StoreGate("zarr", {"output_dir": str(store)})
    t = EmbeddingTable(sg, "n", "w", optimizer="adagrad")
    np.testing.assert_array_equal(t.to_numpy(), np.load(tmp_path / "w.npy"))
    np.testing.assert_array_equal(t.to_numpy(state=True), np.load(tmp_path / "s.npy"))
    sg.close()


# ----------------------------------------------------------------------------- on a graph
def _kg_store(tmp_path: Path, n: int, e: int) -> StoreGate:
    torch = pytest.importorskip("torch")
    pytest.importorskip("torch_geometric")
    from torch_geometric.data import Data

    from storegate.pyg import from_data

    rng = np.random.default_rng(11)
    src, dst = rng.integers(0, n, e), rng.integers(0, n, e)
    data = Data(edge_index=torch.from_numpy(np.stack([src, dst])),
                rel=torch.from_numpy(rng.integers(0, 3, e)), num_nodes=n)
    sg = StoreGate("zarr", {"output_dir": str(tmp_path / "kg.zarr")})
    from_data(data, sg, layout="csc")
    return sg


def _distmult_epochs(rows: object, buckets_per_epoch: list[object], dim: int) -> np.ndarray:
    """DistMult with tail/head negatives from the resident partitions; the relation table is
    a torch nn.Embedding with Adagrad. Returns the relation weights."""
    import torch
    import torch.nn.functional as F

    from storegate.torch.embedding import StoreEmbedding

    torch.manual_seed(0)
    rng = np.random.default_rng(5)
    ent = StoreEmbedding(rows)
    rel = torch.nn.Embedding(3, dim)
    opt = torch.optim.Adagrad(rel.parameters(), lr=0.1)
    for buckets in buckets_per_epoch:
        for b in buckets:  # type: ignore[attr-defined]
            if b.src.size == 0:
                continue
            pool = np.concatenate([np.arange(*b.ranges[p]) for p in b.state])
            negs = rng.choice(pool, 32)
            k = b.src.size
            e = ent(torch.from_numpy(np.concatenate([b.src, b.dst, negs])))
            h, t, n = e[:k], e[k:2 * k], e[2 * k:]
            r = rel(torch.from_numpy(b.vars["rel"]))
            pos = (h * r * t).sum(-1, keepdim=True)
            loss = F.cross_entropy(torch.cat([pos, (h * r) @ n.T], 1),
                                   torch.zeros(k, dtype=torch.long))
            opt.zero_grad()
            loss.backward()
            opt.step()
    return rel.weight.detach().numpy().copy()


class _Bucket:
    def __init__(self, state: tuple[int, ...], src: np.ndarray, dst: np.ndarray,
                 rel: np.ndarray, ranges: dict[int, tuple[int, int]]) -> None:
        self.state, self.src, self.dst, self.vars, self.ranges = state, src, dst, {"rel": rel}, \
            ranges


def test_graph_training_through_a_quarter_buffer_equals_in_memory(tmp_path: Path) -> None:
    from storegate.graph import load_plan, partition

    n, e, dim, parts = 2_000, 16_000, 8, 8
    sg = _kg_store(tmp_path, n, e)
    plan = partition(sg, parts, method="bfs")
    assert load_plan(sg) == plan
    table = EmbeddingTable(sg, "nodes", "emb", n, dim, optimizer="adagrad", lr=0.1, seed=3)
    buf = PartitionBuffer(table, plan, capacity=parts // 4)
    assert (buf.capacity * buf.max_rows) * 4 == n  # the table is 4x the buffer
    ranges = {p: plan.node_range(p) for p in range(parts)}
    plans = [beta_plan(parts, parts // 4, seed=epoch) for epoch in range(2)]

    def buffered() -> object:
        for sp in plans:
            def gen(sp: SwapPlan = sp) -> object:
                for b in buf.edge_buckets(sp, edge_vars=("rel",)):
                    i, j = b.bucket
                    assert set(b.bucket) <= set(buf.resident) and b.state == buf.resident
                    assert (plan.partition_of(b.src) == i).all()
                    assert (plan.partition_of(b.dst) == j).all()
                    yield _Bucket(b.state, b.src, b.dst, b.vars["rel"], ranges)
                buf.flush()
            yield gen()

    rel_buffered = _distmult_epochs(buf, list(buffered()), dim)
    buf.close()
    stats = buf.stats
    assert stats.reads >= sum(p.num_swaps for p in plans)

    # the same visit order, on an in-memory table, edges read straight from the plan's ranges
    db = sg.db
    mem = EmbeddingTable(StoreGate("numpy"), "nodes", "emb", n, dim, optimizer="adagrad",
                         lr=0.1, seed=3)

    def in_memory() -> object:
        for sp in plans:
            def gen(sp: SwapPlan = sp) -> object:
                for state, buckets in zip(sp.states, sp.buckets, strict=True):
                    for i, j in buckets:
                        sl = slice(*plan.bucket_range(i, j), 1)
                        yield _Bucket(tuple(state), db.read(plan.edge_data_id, "train", "row", sl),
                                      db.read(plan.edge_data_id, "train", "col", sl),
                                      db.read("edges", "train", "rel", sl), ranges)
            yield gen()

    rel_memory = _distmult_epochs(mem, list(in_memory()), dim)
    np.testing.assert_allclose(rel_buffered, rel_memory, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(table.to_numpy(), mem.to_numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(table.to_numpy(state=True), mem.to_numpy(state=True),
                               rtol=1e-5, atol=1e-6)
    assert not np.allclose(table.to_numpy(), EmbeddingTable(
        StoreGate("numpy"), "nodes", "emb", n, dim, seed=3).to_numpy())  # it trained
    sg.close()
