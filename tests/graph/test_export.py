"""export_pyg: a partitioned store in PyG's distributed layout, loaded by PyG's own
LocalFeatureStore / LocalGraphStore and compared with the unpartitioned graph."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch
from torch_geometric.data import Data
from torch_geometric.distributed import LocalFeatureStore, LocalGraphStore

from storegate import StoreGate
from storegate.errors import DataIdNotFoundError, InvalidArgumentError
from storegate.graph import partition
from storegate.graph.export import export_pyg
from storegate.graph.plan import load_plan
from storegate.pyg import from_data


def graph(n: int = 50, e: int = 220, seed: int = 0) -> Data:
    g = torch.Generator().manual_seed(seed)
    ei = torch.randint(0, n - 4, (2, e), generator=g)  # 4 isolated nodes
    ei[1, :5] = ei[0, :5]  # self loops
    ei = torch.cat([ei, ei[:, :7]], dim=1)  # duplicates
    return Data(x=torch.randn(n, 3, generator=g), y=torch.randint(0, 5, (n,), generator=g),
                train_mask=torch.rand(n, generator=g) > 0.3, edge_index=ei,
                edge_attr=torch.randn(ei.shape[1], 2, generator=g), num_nodes=n)


def store(tmp_path: Path, backend: str, data: Data) -> StoreGate:
    sg = (StoreGate("numpy") if backend == "numpy"
          else StoreGate("zarr", {"output_dir": str(tmp_path / "g.zarr")}))
    from_data(data, sg, renumber="bfs")
    return sg


@pytest.mark.parametrize(("backend", "num_parts"), [("numpy", 1), ("zarr", 3), ("zarr", 50)])
def test_export_loads_in_pyg_and_matches_the_source_graph(tmp_path: Path, backend: str,
                                                           num_parts: int) -> None:
    data = graph()
    sg = store(tmp_path, backend, data)
    plan = partition(sg, num_parts, method="random", seed=4)
    root = export_pyg(sg, tmp_path / "pyg")
    meta = json.loads((root / "META.json").read_text())
    assert meta["num_parts"] == num_parts and meta["is_hetero"] is False
    node_map = torch.load(root / "node_map.pt")
    edge_map = torch.load(root / "edge_map.pt")
    assert node_map.shape == (50,) and edge_map.shape == (data.num_edges,)
    labels = torch.load(root / "label.pt")
    orig: torch.Tensor | None = None
    seen_nodes, seen_edges = [], Counter()
    for pid in range(num_parts):
        fs = LocalFeatureStore.from_partition(str(root), pid)
        gs = LocalGraphStore.from_partition(str(root), pid)
        gid = fs.get_global_id(None)
        start, stop = plan.node_range(pid)
        assert torch.equal(gid, torch.arange(start, stop))
        assert bool((node_map[gid] == pid).all())
        o = fs.get_tensor(None, "orig_id", index=None)
        x = fs.get_tensor(None, "x", index=None)
        assert torch.equal(x, data.x[o])
        assert torch.equal(fs.get_tensor(None, "y", index=None), data.y[o])
        assert torch.equal(fs.get_tensor(None, "train_mask", index=None), data.train_mask[o])
        assert torch.equal(labels[gid], data.y[o])
        seen_nodes.append(o)
        orig = o if orig is None else torch.cat([orig, o])
        (attr,) = gs.get_all_edge_attrs()
        assert attr.size == (50, 50)
        row, col = gs.get_edge_index(attr)
        eid = gs.get_edge_id(attr)
        assert bool((node_map[col] == pid).all()) and bool((edge_map[eid] == pid).all())
        assert bool((col[1:] >= col[:-1]).all())  # sorted by destination
        efs = fs.get_global_id((None, None))
        if eid.numel() == 0:  # no edges into this partition: nothing to load
            assert efs is None
            continue
        assert torch.equal(efs, eid)
        ea = fs.get_tensor((None, None), "edge_attr", index=None)
        seen_edges.update((int(r), int(c), tuple(a.tolist()))
                          for r, c, a in zip(row, col, ea, strict=True))
    assert orig is not None and torch.equal(torch.sort(orig).values, torch.arange(50))
    # edges of all parts, through the node map, are the source graph's edges with their attrs
    back = torch.empty(50, dtype=torch.long)
    back[torch.arange(50)] = orig  # global row -> source node (parts are consecutive rows)
    got = Counter({(int(back[r]), int(back[c]), a): k for (r, c, a), k in seen_edges.items()})
    want = Counter((int(s), int(d), tuple(a.tolist()))
                   for s, d, a in zip(*data.edge_index, data.edge_attr, strict=True))
    assert got == want


def test_export_needs_a_partitioned_store(tmp_path: Path) -> None:
    sg = store(tmp_path, "numpy", graph())
    with pytest.raises(DataIdNotFoundError, match=r"storegate\.graph\.partition\(sg"):
        export_pyg(sg, tmp_path / "out")
    with pytest.raises(InvalidArgumentError, match="PartitionPlan"):
        export_pyg(sg, tmp_path / "out", plan={"num_parts": 1})  # type: ignore[arg-type]
    partition(sg, 2, method="bfs")
    assert export_pyg(sg, tmp_path / "out", plan=load_plan(sg)) == tmp_path / "out"
