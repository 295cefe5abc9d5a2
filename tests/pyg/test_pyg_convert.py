"""from_data / to_data: a PyG graph into a store and back, renumbered or not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch_geometric.data import Data, HeteroData

from storegate import StoreGate
from storegate.errors import InvalidArgumentError
from storegate.pyg import NeighborLoader, from_data, to_data
from storegate.pyg.convert import ORIG_ID


def homogeneous(n: int = 60, e: int = 300, seed: int = 0) -> Data:
    g = torch.Generator().manual_seed(seed)
    ei = torch.randint(0, n, (2, e), generator=g)
    return Data(x=torch.randn(n, 4, generator=g), y=torch.arange(n),
                train_mask=torch.rand(n, generator=g) > 0.5, edge_index=ei,
                edge_attr=torch.randn(e, 2, generator=g))


def heterogeneous(seed: int = 0) -> HeteroData:
    g = torch.Generator().manual_seed(seed)
    data = HeteroData()
    data["user"].x = torch.randn(30, 3, generator=g)
    data["movie"].x = torch.randn(20, 5, generator=g)
    data["movie"].y = torch.randint(0, 4, (20,), generator=g)
    data["user", "rates", "movie"].edge_index = torch.stack(
        [torch.randint(0, 30, (100,), generator=g), torch.randint(0, 20, (100,), generator=g)])
    data["user", "rates", "movie"].edge_attr = torch.randn(100, 1, generator=g)
    data["user", "follows", "user"].edge_index = torch.randint(0, 30, (2, 80), generator=g)
    return data


def gate(backend: str, tmp_path: Path) -> StoreGate:
    if backend == "numpy":
        return StoreGate("numpy")
    return StoreGate("zarr", {"output_dir": str(tmp_path / "g.zarr")})


def edge_set(ei: torch.Tensor, attr: torch.Tensor | None = None) -> list[tuple]:
    rows = ei.t().tolist()
    if attr is not None:
        rows = [(*r, *np.round(a, 5).tolist()) for r, a in zip(rows, attr.tolist(), strict=True)]
    return sorted(map(tuple, rows))


@pytest.mark.parametrize("backend", ["numpy", "zarr"])
@pytest.mark.parametrize("layout", ["csc", "csr", "coo"])
@pytest.mark.parametrize("renumber", [None, "bfs", "degree"])
def test_homogeneous_round_trip(tmp_path: Path, backend: str, layout: str,
                                renumber: str | None) -> None:
    data = homogeneous()
    fs, gs = from_data(data, gate(backend, tmp_path), layout=layout, renumber=renumber)
    back = to_data(fs, gs)
    for key in ("x", "y", "train_mask"):
        assert torch.equal(back[key], data[key]), key
    assert ORIG_ID not in back
    assert edge_set(back.edge_index, back.edge_attr) == edge_set(data.edge_index,
                                                                 data.edge_attr)


@pytest.mark.parametrize("backend", ["numpy", "zarr"])
@pytest.mark.parametrize("renumber", [None, "bfs"])
def test_heterogeneous_round_trip(tmp_path: Path, backend: str, renumber: str | None) -> None:
    data = heterogeneous()
    fs, gs = from_data(data, gate(backend, tmp_path), renumber=renumber)
    back = to_data(fs, gs)
    assert set(back.node_types) == {"user", "movie"}
    assert torch.equal(back["user"].x, data["user"].x)
    assert torch.equal(back["movie"].y, data["movie"].y)
    et = ("user", "rates", "movie")
    assert edge_set(back[et].edge_index, back[et].edge_attr) == edge_set(
        data[et].edge_index, data[et].edge_attr)
    ff = ("user", "follows", "user")
    assert edge_set(back[ff].edge_index) == edge_set(data[ff].edge_index)


def test_renumbered_rows_keep_their_original_ids(tmp_path: Path) -> None:
    data = homogeneous()
    fs, gs = from_data(data, gate("zarr", tmp_path), renumber="bfs")
    orig = fs.get_tensor(None, ORIG_ID, None)
    assert sorted(orig.tolist()) == list(range(data.num_nodes))
    assert torch.equal(fs.get_tensor(None, "x", None), data.x[orig])
    kept = to_data(fs, gs, original_order=False)
    assert torch.equal(kept.x, data.x[orig]) and torch.equal(kept[ORIG_ID], orig)


def test_neighbor_loader_over_a_renumbered_store(tmp_path: Path) -> None:
    data = homogeneous(200, 1500)
    fs, gs = from_data(data, gate("zarr", tmp_path), renumber="bfs")
    loader = NeighborLoader((fs, gs), num_neighbors=[5, 3], batch_size=16,
                            input_nodes=torch.arange(200))
    edges = set(edge_set(data.edge_index))
    for batch in loader:
        orig = batch.orig_id  # the node-level var rides along in every batch
        assert torch.equal(batch.x, data.x[orig])
        assert torch.equal(batch.y, data.y[orig])
        src, dst = orig[batch.edge_index[0]], orig[batch.edge_index[1]]
        assert all((int(a), int(b)) in edges for a, b in zip(src, dst, strict=True))


def test_bad_arguments() -> None:
    with pytest.raises(InvalidArgumentError, match="layout"):
        from_data(homogeneous(), StoreGate("numpy"), layout="dense")
    with pytest.raises(InvalidArgumentError, match="renumber"):
        from_data(homogeneous(), StoreGate("numpy"), renumber="random")
