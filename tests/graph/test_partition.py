"""Graph partitioning (storegate.graph.partition / plan / layout): node partitions and edge
buckets, checked against the unpartitioned PyG graph through the node map."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import types
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch_geometric.data import Data, HeteroData

from storegate import StoreGate
from storegate.checks import check_store
from storegate.errors import (
    CorruptStoreError,
    DataIdNotFoundError,
    IndexOutOfRangeError,
    InvalidArgumentError,
    MissingDependencyError,
    ReadOnlyError,
    StoregateError,
    UnsupportedOperationError,
)
from storegate.graph import partition, partition_graph
from storegate.graph.layout import ORIG_EDGE_ID, ORIG_ID, read_edges, stored_layouts
from storegate.graph.plan import INLINE_OFFSETS, PLAN_KEY, PartitionPlan, load_plan
from storegate.pyg import FeatureStore, GraphStore, NeighborLoader, from_data, to_data
from storegate.ragged import RaggedArray
from storegate.testing.faults import read_state

HAS_PYMETIS = __import__("importlib").util.find_spec("pymetis") is not None


# ---------------------------------------------------------------------------------- helpers
def graph(n: int = 40, e: int = 160, seed: int = 0) -> Data:
    """Random directed graph with isolated nodes, self loops and duplicate edges."""
    g = torch.Generator().manual_seed(seed)
    m = n - 5  # the last 5 nodes are isolated
    ei = torch.randint(0, m, (2, e), generator=g)
    ei[1, :8] = ei[0, :8]  # self loops
    ei = torch.cat([ei, ei[:, 10:16]], dim=1)  # duplicates (with their own edge attrs)
    e2 = ei.shape[1]
    return Data(x=torch.randn(n, 3, generator=g), y=torch.randint(0, 4, (n,), generator=g),
                train_mask=torch.rand(n, generator=g) > 0.5, edge_index=ei,
                edge_attr=torch.randn(e2, 2, generator=g),
                rel=torch.randint(0, 3, (e2,), generator=g), num_nodes=n)


def gate(backend: str, path: Path) -> StoreGate:
    if backend == "numpy":
        return StoreGate("numpy")
    return StoreGate("zarr", {"output_dir": str(path)})


def whole(sg: StoreGate, data_id: str, var: str, phase: str = "train") -> np.ndarray:
    n = sg.db.info(data_id, phase, var).length
    return np.asarray(sg.db.read(data_id, phase, var, slice(0, n, 1)))


def edge_multiset(src: np.ndarray, dst: np.ndarray, attrs: list[np.ndarray]) -> Counter:
    cols = [src.tolist(), dst.tolist()] + [a.reshape(len(src), -1).tolist() for a in attrs]
    return Counter(tuple((s, d, *[tuple(c) for c in rest]))
                   for s, d, *rest in zip(*cols, strict=True))


def check_against(sg: StoreGate, data: Data, plan: PartitionPlan) -> None:
    """Every node and edge var of the partitioned store matches ``data`` through orig_id."""
    n = data.num_nodes
    orig = whole(sg, "nodes", ORIG_ID)
    assert np.array_equal(np.sort(orig), np.arange(n))
    for key in ("x", "y", "train_mask"):
        assert np.array_equal(whole(sg, "nodes", key), data[key].numpy()[orig]), key
    for p in ("valid", "test"):
        assert sg.db.var_names("nodes", p) == []
    row, col = whole(sg, "edges.coo", "row"), whole(sg, "edges.coo", "col")
    assert row.shape[0] == data.num_edges == plan.num_edges
    got = edge_multiset(orig[row], orig[col], [whole(sg, "edges", "edge_attr"),
                                               whole(sg, "edges", "rel")])
    ei = data.edge_index.numpy()
    want = edge_multiset(ei[0], ei[1], [data.edge_attr.numpy(), data.rel.numpy()])
    assert got == want
    assert not sg.db.has_var("edges.coo", "train", "perm")
    # buckets: rows of bucket (i, j) go from partition i to partition j
    assert int(plan.bucket_offsets[-1]) == row.shape[0] == int(plan.bucket_sizes().sum())
    for i in range(plan.num_parts):
        for j in range(plan.num_parts):
            a, b = plan.bucket_range(i, j)
            assert (plan.partition_of(row[a:b]) == i).all()
            assert (plan.partition_of(col[a:b]) == j).all()
    assert plan.num_nodes == n
    assert load_plan(sg) == plan


def source(backend: str, tmp_path: Path, layout: str = "csc", renumber: str | None = None,
           data: Data | None = None) -> tuple[StoreGate, Data]:
    data = graph() if data is None else data
    sg = gate(backend, tmp_path / "src.zarr")
    from_data(data, sg, layout=layout, renumber=renumber)
    return sg, data


# ---------------------------------------------------------------------------------- numpy core
@pytest.mark.parametrize("method", ["bfs", "random"])
@pytest.mark.parametrize("num_parts", [1, 3, 7, 40])
def test_partition_graph_buckets_and_balance(method: str, num_parts: int) -> None:
    data = graph()
    src, dst = data.edge_index.numpy()
    perm, offs, order, boffs = partition_graph(src, dst, 40, num_parts, method, seed=3)
    assert np.array_equal(np.sort(perm), np.arange(40))
    assert np.array_equal(np.sort(order), np.arange(src.size))
    sizes = np.diff(offs)
    assert offs[0] == 0 and offs[-1] == 40 and sizes.max() - sizes.min() <= 1
    inv = np.empty(40, np.int64)
    inv[perm] = np.arange(40)
    part = np.searchsorted(offs, np.arange(40), side="right") - 1
    bucket = part[inv[src[order]]] * num_parts + part[inv[dst[order]]]
    assert (np.diff(bucket) >= 0).all() and boffs[-1] == src.size
    for k in range(num_parts * num_parts):  # stable inside a bucket
        inside = order[boffs[k]:boffs[k + 1]]
        assert (bucket[boffs[k]:boffs[k + 1]] == k).all() and (np.diff(inside) > 0).all()


def test_random_is_seeded_and_bfs_keeps_locality() -> None:
    n = 400
    src = np.arange(n - 1)
    dst = src + 1  # a path: BFS parts cut it into P pieces
    a = partition_graph(src, dst, n, 4, "random", seed=1)
    b = partition_graph(src, dst, n, 4, "random", seed=1)
    c = partition_graph(src, dst, n, 4, "random", seed=2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], c[0])
    boffs = partition_graph(src, dst, n, 4, "bfs")[3]
    cross = int(boffs[-1]) - sum(int(boffs[i * 5 + 1] - boffs[i * 5]) for i in range(4))
    assert cross <= 3  # only the cuts cross partitions


def test_partition_graph_empty_and_bad_inputs() -> None:
    perm, offs, order, boffs = partition_graph([], [], 0, 1, "bfs")
    assert perm.size == order.size == 0 and offs.tolist() == [0, 0] and boffs.tolist() == [0, 0]
    e = np.array([0, 1])
    with pytest.raises(InvalidArgumentError, match="method"):
        partition_graph(e, e, 3, 2, "kmeans")
    with pytest.raises(InvalidArgumentError, match=r"1\.\.3"):
        partition_graph(e, e, 3, 4)
    with pytest.raises(InvalidArgumentError, match="num_parts"):
        partition_graph(e, e, 3, 0)
    with pytest.raises(InvalidArgumentError, match=r"\[0, 2\)"):
        partition_graph(e, np.array([0, 2]), 2, 1)
    with pytest.raises(InvalidArgumentError, match="ints"):
        partition_graph(e.astype(float), e.astype(float), 3, 1)
    with pytest.raises(InvalidArgumentError, match="one length"):
        partition_graph(e, e[:1], 3, 1)
    with pytest.raises(InvalidArgumentError, match="MAX_BUCKETS"):
        partition_graph([], [], 10**5, 10**4)
    if not HAS_PYMETIS:
        with pytest.raises(MissingDependencyError, match="pip install pymetis"):
            partition_graph(e, e, 3, 2, "metis")


class _StandInMetis(types.ModuleType):
    """A stand-in for pymetis (not installable here) with its call contract: checks the CSR it
    gets (symmetric, no self loops, no duplicates) and returns contiguous-by-id parts."""

    def __init__(self) -> None:
        super().__init__("pymetis")
        self.calls: list[tuple[int, np.ndarray, np.ndarray]] = []

    def Options(self, seed: int = 0) -> dict[str, int]:
        return {"seed": seed}

    def part_graph(self, nparts: int, xadj: Any, adjncy: Any,
                   options: Any = None) -> tuple[int, list[int]]:
        xadj, adjncy = np.asarray(xadj), np.asarray(adjncy)
        self.calls.append((nparts, xadj, adjncy))
        n = xadj.size - 1
        owner = np.repeat(np.arange(n), np.diff(xadj))
        assert not (owner == adjncy).any(), "self loop passed to METIS"
        pairs = set(zip(owner.tolist(), adjncy.tolist(), strict=True))
        assert len(pairs) == adjncy.size, "duplicate edge passed to METIS"
        assert all((b, a) in pairs for a, b in pairs), "CSR not symmetric"
        return 0, ((np.arange(n) * nparts) // n)[::-1].tolist()  # reversed: a real reorder


def test_metis_path_with_a_stand_in(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = _StandInMetis()
    monkeypatch.setitem(sys.modules, "pymetis", fake)
    data = graph()
    src, dst = data.edge_index.numpy()
    perm, offs, _, _ = partition_graph(src, dst, 40, 4, "auto", seed=5)
    assert len(fake.calls) == 1 and fake.calls[0][0] == 4
    parts = ((np.arange(40) * 4) // 40)[::-1]
    assert np.array_equal(parts[perm], np.sort(parts[perm]))  # parts contiguous in new order
    assert np.array_equal(np.diff(offs), np.bincount(parts, minlength=4))
    sg, _ = source("numpy", tmp_path, data=data)
    plan = partition(sg, 4, method="metis")
    assert plan.method == "metis"
    check_against(sg, data, plan)


# ---------------------------------------------------------------------------------- the store
@pytest.mark.parametrize("backend", ["numpy", "zarr"])
@pytest.mark.parametrize(("layout", "renumber", "num_parts"),
                         [("csc", None, 3), ("coo", "bfs", 1), ("csr", "degree", 40)])
def test_partition_keeps_everything_aligned(backend: str, layout: str, renumber: str | None,
                                            num_parts: int, tmp_path: Path) -> None:
    sg, data = source(backend, tmp_path, layout, renumber)
    src_orig = whole(sg, "nodes", ORIG_ID) if renumber else np.arange(40)
    plan = partition(sg, num_parts, method="bfs", chunk_rows=7)
    check_against(sg, data, plan)
    # orig_id composes with from_data's: it points at the rows of `data`, not of the store
    if renumber:
        assert not np.array_equal(src_orig, np.arange(40))
    # the layout that was stored is rebuilt from the new COO (perm = COO row), COO added
    assert set(stored_layouts(sg)) == {"coo", layout}
    if layout != "coo":
        e = read_edges(sg, layout=layout)
        coo = read_edges(sg, layout="coo")
        assert np.array_equal(coo.src[e.edge_rows], e.src)
        assert np.array_equal(coo.dst[e.edge_rows], e.dst)
    back = to_data(FeatureStore(sg), GraphStore(sg))
    assert torch.equal(back.x, data.x) and torch.equal(back.y, data.y)
    if backend == "zarr":  # reopened from disk
        sg.close()
        again = StoreGate("zarr", {"output_dir": str(tmp_path / "src.zarr"), "mode": "r"})
        check_against(again, data, plan)
        assert check_store(again).ok


def test_neighbor_loader_runs_on_the_partitioned_store(tmp_path: Path) -> None:
    sg, data = source("zarr", tmp_path, "csc", "bfs")
    partition(sg, 4, method="random", seed=2)
    orig = whole(sg, "nodes", ORIG_ID)
    edge_attr = whole(sg, "edges", "edge_attr")
    loader = NeighborLoader((FeatureStore(sg), GraphStore(sg)), num_neighbors=[3, 2],
                            batch_size=8, input_nodes=None)
    seen = 0
    for batch in loader:
        assert torch.equal(batch.x, data.x[orig[batch.n_id.numpy()]])
        assert torch.equal(batch.y, data.y[orig[batch.n_id.numpy()]])
        # every sampled edge is an edge of the source graph with its own attributes
        s = orig[batch.n_id[batch.edge_index[0]].numpy()]
        d = orig[batch.n_id[batch.edge_index[1]].numpy()]
        want = edge_multiset(data.edge_index[0].numpy(), data.edge_index[1].numpy(),
                             [data.edge_attr.numpy()])
        got = edge_multiset(s, d, [edge_attr[batch.e_id.numpy()]])
        assert all(want[k] >= v for k, v in got.items())
        seen += batch.batch_size
    assert seen == 40


def test_repartition_composes_orig_id(tmp_path: Path) -> None:
    sg, data = source("zarr", tmp_path, "coo", "bfs")
    partition(sg, 5, method="random", seed=1)
    plan = partition(sg, 2, method="bfs")
    check_against(sg, data, plan)
    ids = whole(sg, "edges", ORIG_EDGE_ID)  # rows of the edge vars of the from_data store
    assert np.array_equal(np.sort(ids), np.arange(data.num_edges))


def test_out_writes_a_copy_and_leaves_the_source_bit_identical(tmp_path: Path) -> None:
    sg, data = source("zarr", tmp_path, "csc", "bfs")
    sg.close()
    src_dir = tmp_path / "src.zarr"
    before = {p.relative_to(src_dir): p.read_bytes() for p in src_dir.rglob("*") if p.is_file()}
    src = StoreGate("zarr", {"output_dir": str(src_dir), "mode": "r"})  # read-only is enough
    out = StoreGate("zarr", {"output_dir": str(tmp_path / "out.zarr")})
    plan = partition(src, 3, method="bfs", out=out)
    check_against(out, data, plan)
    src.close()
    after = {p.relative_to(src_dir): p.read_bytes() for p in src_dir.rglob("*") if p.is_file()}
    assert after == before
    with pytest.raises(InvalidArgumentError, match="already holds"):
        partition(StoreGate("zarr", {"output_dir": str(src_dir), "mode": "r"}), 2, out=out)


def test_large_plan_keeps_offsets_in_a_var_not_a_node_type(tmp_path: Path) -> None:
    data = graph(n=70, e=200, seed=4)
    sg, _ = source("zarr", tmp_path, data=data)
    plan = partition(sg, 70, method="random")
    assert INLINE_OFFSETS < 71 + 70 * 70 + 1
    assert isinstance(sg.db.get_attrs("nodes")[PLAN_KEY]["bucket_offsets"], dict)
    check_against(sg, data, plan)
    fs = FeatureStore(sg)
    assert {a.group_name for a in fs.get_all_tensor_attrs()} == {None}
    assert torch.equal(to_data(fs, GraphStore(sg)).x, data.x)
    # storing the edges again voids the plan, with a clear message
    gs = GraphStore(sg)
    row, col, _ = gs.coo()
    gs.put_edge_index((row[:-1], col[:-1]), edge_type=None, layout="coo", size=(70, 70))
    with pytest.raises(CorruptStoreError, match="partition"):
        load_plan(sg)


def test_multi_phase_ragged_and_no_edge_vars(tmp_path: Path) -> None:
    sg = gate("zarr", tmp_path / "s.zarr")
    fs, gs = FeatureStore(sg), GraphStore(sg)
    sg.set_data_id("nodes")
    x = np.arange(10.0)
    sg.add_data("x", x, phase=(5, 3, 2))
    sg.add_data("r", [np.arange(k % 4) for k in range(10)], phase=(5, 3, 2))
    gs.put_edge_index((torch.tensor([0, 9, 3]), torch.tensor([9, 5, 3])), edge_type=None,
                      layout="coo", size=(10, 10))
    plan = partition(sg, 3, method="random", seed=0)  # default block size (ragged rows)
    orig = whole(sg, "nodes", ORIG_ID)
    assert np.array_equal(whole(sg, "nodes", "x"), x[orig])
    r = sg.db.read("nodes", "train", "r", slice(0, 10, 1))
    assert isinstance(r, RaggedArray)
    assert [len(row) for row in r.to_list()] == [int(k) % 4 for k in orig]
    assert sg.get_metadata()["total_events"] == [10, 0, 0]  # every phase's rows, in train
    assert sorted(whole(sg, "edges", ORIG_EDGE_ID).tolist()) == [0, 1, 2]
    assert plan.num_edges == 3 and fs.get_tensor_size(None, "x") == (10,)


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(DataIdNotFoundError, match="from_data"):
        partition(StoreGate("numpy"), 2)
    hetero = HeteroData()
    hetero["a"].x = torch.zeros(3, 1)
    hetero["a", "to", "a"].edge_index = torch.tensor([[0], [1]])
    sg = StoreGate("numpy")
    from_data(hetero, sg)
    with pytest.raises(UnsupportedOperationError, match="heterogeneous"):
        partition(sg, 2, edge_id="a")
    sg, data = source("zarr", tmp_path)
    for kwargs in ({"num_parts": 41}, {"num_parts": 0}, {"num_parts": 2, "method": "x"},
                   {"num_parts": 2, "chunk_rows": 0}, {"num_parts": 2, "out": sg},
                   {"num_parts": 2, "out": "dir"}):
        with pytest.raises(InvalidArgumentError):
            partition(sg, **kwargs)
    with pytest.raises(DataIdNotFoundError, match="not partitioned"):
        load_plan(sg)
    sg.close()
    ro = StoreGate("zarr", {"output_dir": str(tmp_path / "src.zarr"), "mode": "r"})
    with pytest.raises(ReadOnlyError):
        partition(ro, 2)
    # edge vars that do not have one row per edge
    bad = StoreGate("numpy")
    from_data(data, bad)
    bad.db.append("edges", "valid", "edge_attr", np.zeros((2, 2), "f4"))
    bad.db.append("edges", "valid", "rel", np.zeros(2, "i8"))
    with pytest.raises(CorruptStoreError, match="one row per edge"):
        partition(bad, 2)
    bad.db.append("edges", "valid", "w", np.zeros(2))  # only in one phase of two with rows
    with pytest.raises(InvalidArgumentError, match="missing in phase"):
        partition(bad, 2)
    assert isinstance(CorruptStoreError("x"), StoregateError)


def test_plan_validation() -> None:
    plan = PartitionPlan(2, [0, 1, 3], [0, 0, 1, 1, 2])
    assert hash(plan) == hash(PartitionPlan.from_attrs(plan.to_attrs()))
    assert not plan.node_offsets.flags.writeable
    with pytest.raises(InvalidArgumentError, match="never decrease"):
        PartitionPlan(2, [0, 2, 1], [0] * 5)
    with pytest.raises(InvalidArgumentError, match="5 ints"):
        PartitionPlan(2, [0, 1, 3], [0, 1])
    with pytest.raises(InvalidArgumentError):
        PartitionPlan.from_attrs({"num_parts": 2, "node_offsets": "x", "bucket_offsets": []})
    with pytest.raises(InvalidArgumentError, match="format"):
        PartitionPlan.from_attrs({**plan.to_attrs(), "format": 9})
    with pytest.raises(IndexOutOfRangeError):
        plan.partition_of([3])
    with pytest.raises(IndexOutOfRangeError):
        plan.node_range(2)
    with pytest.raises(InvalidArgumentError):
        plan.bucket_range(0, 1.0)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------- crash safety
_KILL_SCRIPT = """
import sys
from storegate import StoreGate
from storegate.testing.faults import _install_kill
from storegate.graph import partition
counter = {"n": 0}
at = int(sys.argv[2])
if at > 0:
    _install_kill(("change", at, "before"), counter)
else:
    _install_kill(("none",), counter)
sg = StoreGate("zarr", {"output_dir": sys.argv[1]})
partition(sg, 3, method="bfs")
sg.close()
print(counter["n"])
"""


def _run_kill(store: Path, at: int) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run([sys.executable, "-c", _KILL_SCRIPT, str(store), str(at)],
                          capture_output=True, text=True, env=env, timeout=120, check=False)


def test_in_place_partition_killed_leaves_old_or_new_graph(tmp_path: Path) -> None:
    sg, data = source("zarr", tmp_path, "csc", "bfs")
    sg.close()
    pristine = tmp_path / "src.zarr"
    old = read_state(StoreGate("zarr", {"output_dir": str(pristine), "mode": "r"}))
    done = tmp_path / "done.zarr"
    shutil.copytree(pristine, done)
    run = _run_kill(done, 0)
    assert run.returncode == 0, run.stderr
    changes = int(run.stdout.split()[-1])
    new_sg = StoreGate("zarr", {"output_dir": str(done), "mode": "r"})
    new = read_state(new_sg)
    new_plan = load_plan(new_sg)
    assert new != old and changes > 10
    outcomes = set()
    # the swap transaction is the last part: kill densely there
    points = {1, changes // 3, changes // 2} | {changes * k // 16 for k in range(10, 17)}
    for at in sorted(points | {changes - 1}):
        trial = tmp_path / f"kill{at}.zarr"
        shutil.copytree(pristine, trial)
        run = _run_kill(trial, at)
        assert run.returncode == -9, (at, run.returncode, run.stderr[-2000:])
        reopened = StoreGate("zarr", {"output_dir": str(trial), "mode": "a"})  # recovers
        state = read_state(reopened)
        assert check_store(reopened).ok
        if state == old:
            outcomes.add("old")
            with pytest.raises(DataIdNotFoundError):
                load_plan(reopened)
        else:
            assert state == new, f"kill at change {at}/{changes} left a mixed store"
            outcomes.add("new")
            assert load_plan(reopened) == new_plan
            check_against(reopened, data, new_plan)
        reopened.close()
    assert outcomes == {"old", "new"}
