"""storegate's pure-PyTorch neighbour sampler and the NeighborLoader / LinkNeighborLoader built on
it: sampled edges exist, per-node counts follow ``num_neighbors`` (``-1``, ``replace``), batches
carry the graph's rows for ``n_id``, heterogeneous graphs with per-edge-type counts, link
sampling with binary and triplet negatives, worker processes, disjoint / bidirectional /
induced subgraphs, determinism, and the same over PyG's test stores and storegate's stores.
No pyg-lib or torch-sparse is needed (nor used: the tests check which sampler runs)."""

from __future__ import annotations

import pickle
from collections import Counter
from typing import Any

import pytest
import torch
import torch_geometric.typing
from torch_geometric.data import Data, HeteroData
from torch_geometric.sampler import (
    EdgeSamplerInput,
    NegativeSampling,
    NodeSamplerInput,
    SamplerOutput,
)
from torch_geometric.sampler import NeighborSampler as PygNeighborSampler
from torch_geometric.testing import MyFeatureStore, MyGraphStore

from storegate.errors import (
    InvalidArgumentError,
    MissingDependencyError,
    UnsupportedOperationError,
)
from storegate.pyg.loaders import LinkNeighborLoader, NeighborLoader, make_neighbor_sampler
from storegate.pyg.sampler import StoreGateNeighborSampler, sample_neighbors

N = 240  # nodes of the homogeneous test graph
WRITES = ("author", "writes", "paper")
REV = ("paper", "rev_writes", "author")
CITES = ("paper", "cites", "paper")


# ----------------------------------------------------------------------------- graphs
def make_graph(seed: int = 0) -> Data:
    """Random multigraph with a hub (node 0: 150 in-edges), low-degree and isolated nodes."""
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(N, (1500,), generator=g)
    dst = torch.randint(20, N - 20, (1500,), generator=g)  # 0..19 and the last 20: no in-edges
    hub_src = torch.randint(N, (150,), generator=g)
    src = torch.cat([src, hub_src, torch.tensor([5, 6])])
    dst = torch.cat([dst, torch.zeros(150, dtype=torch.long), torch.tensor([1, 1])])
    return Data(x=torch.randn(N, 6, generator=g), y=torch.randint(5, (N,), generator=g),
                edge_index=torch.stack([src, dst]))


def make_hetero(seed: int = 0) -> HeteroData:
    g = torch.Generator().manual_seed(seed)
    data = HeteroData()
    data["paper"].x = torch.randn(120, 5, generator=g)
    data["paper"].y = torch.randint(3, (120,), generator=g)
    data["author"].x = torch.randn(80, 3, generator=g)
    w = torch.stack([torch.randint(80, (400,), generator=g),
                     torch.randint(120, (400,), generator=g)])
    data[WRITES].edge_index = w
    data[REV].edge_index = w.flip(0)
    data[CITES].edge_index = torch.stack([torch.randint(120, (500,), generator=g),
                                          torch.randint(100, (500,), generator=g)])
    return data


def in_degree(edge_index: torch.Tensor, n: int) -> torch.Tensor:
    return torch.bincount(edge_index[1], minlength=n)


def edge_keys(edge_index: torch.Tensor, n: int) -> torch.Tensor:
    return edge_index[0] * n + edge_index[1]


# ----------------------------------------------------------------------------- checks
def expected_count(k: int, deg: torch.Tensor, replace: bool) -> torch.Tensor:
    if k < 0:
        return deg
    if replace:
        return (deg > 0).long() * k
    return deg.clamp(max=k)


def check_hops(n_id: dict[Any, torch.Tensor], edge_index: dict[Any, torch.Tensor],
               num_nodes_hop: dict[Any, list[int]], num_edges_hop: dict[Any, list[int]],
               graph_ei: dict[Any, torch.Tensor], sizes: dict[Any, int],
               ks: dict[Any, list[int]], replace: bool) -> None:
    """Hop by hop: the edges of hop h point at the nodes found in hop h-1 (directional), each
    such node has exactly the expected number of sampled in-edges, every sampled edge exists,
    and the nodes found in hop h are exactly the unseen sources of hop h's edges."""
    ends = {e: ((None, None) if e is None else (e[0], e[2])) for e in graph_ei}
    hops = len(next(iter(ks.values())))
    node_ptr = {t: torch.tensor([0, *num_nodes_hop[t]]).cumsum(0) for t in n_id}
    for e, ei in graph_ei.items():
        src, dst = ends[e]
        assert len(num_edges_hop[e]) == hops
        assert sum(num_edges_hop[e]) == edge_index[e].size(1)
        glob = torch.stack([n_id[src][edge_index[e][0]], n_id[dst][edge_index[e][1]]])
        assert torch.isin(edge_keys(glob, sizes[src] + sizes[dst]),
                          edge_keys(ei, sizes[src] + sizes[dst])).all(), f"{e}: no such edge"
    for t in n_id:
        assert len(num_nodes_hop[t]) == hops + 1
        assert sum(num_nodes_hop[t]) == n_id[t].numel()
    for h in range(hops):
        found: dict[Any, list[torch.Tensor]] = {t: [] for t in n_id}
        for e, ei in graph_ei.items():
            src, dst = ends[e]
            lo = sum(num_edges_hop[e][:h])
            part = edge_index[e][:, lo:lo + num_edges_hop[e][h]]
            f_lo, f_hi = int(node_ptr[dst][h]), int(node_ptr[dst][h + 1])
            assert ((part[1] >= f_lo) & (part[1] < f_hi)).all(), f"{e} hop {h}: not directional"
            deg = in_degree(ei, sizes[dst])[n_id[dst][f_lo:f_hi]]
            got = torch.bincount(part[1] - f_lo, minlength=f_hi - f_lo)
            want = expected_count(ks[e][h], deg, replace)
            assert torch.equal(got, want), f"{e} hop {h}: counts {got} != {want}"
            found[src].append(n_id[src][part[0]])
        for t in n_id:
            seen = set(n_id[t][:int(node_ptr[t][h + 1])].tolist())
            new = set(torch.cat(found[t]).tolist()) - seen if found[t] else set()
            got_new = n_id[t][int(node_ptr[t][h + 1]):int(node_ptr[t][h + 2])].tolist()
            assert len(got_new) == len(set(got_new)) and set(got_new) == new, f"{t} hop {h}"


def check_homo_batch(batch: Data, data: Data, ks: list[int], replace: bool = False,
                     e_id: bool = True) -> None:
    assert torch.equal(batch.x, data.x[batch.n_id])
    assert torch.equal(batch.y, data.y[batch.n_id])
    assert batch.n_id.unique().numel() == batch.n_id.numel()
    assert batch.batch is None  # disjoint=False
    check_hops({None: batch.n_id}, {None: batch.edge_index}, {None: batch.num_sampled_nodes},
               {None: batch.num_sampled_edges}, {None: data.edge_index}, {None: data.num_nodes},
               {None: ks}, replace)
    if e_id:  # e_id are the original edge ids of the sampled edges
        assert torch.equal(data.edge_index[:, batch.e_id], batch.n_id[batch.edge_index])
        if not replace:
            assert batch.e_id.unique().numel() == batch.e_id.numel()


def check_hetero_batch(batch: HeteroData, data: HeteroData, ks: dict[Any, list[int]],
                       replace: bool = False) -> None:
    for t in data.node_types:
        for key in data[t]:
            assert torch.equal(batch[t][key], data[t][key][batch[t].n_id]), (t, key)
    check_hops({t: batch[t].n_id for t in data.node_types},
               {e: batch[e].edge_index for e in data.edge_types},
               {t: batch[t].num_sampled_nodes for t in data.node_types},
               {e: batch[e].num_sampled_edges for e in data.edge_types},
               {e: data[e].edge_index for e in data.edge_types},
               {t: data[t].num_nodes for t in data.node_types}, ks, replace)
    for e in data.edge_types:
        s, _, d = e
        glob = torch.stack([batch[s].n_id[batch[e].edge_index[0]],
                            batch[d].n_id[batch[e].edge_index[1]]])
        assert torch.equal(data[e].edge_index[:, batch[e].e_id], glob)


# ----------------------------------------------------------------------------- sample_neighbors
def test_sample_neighbors_counts_ranges_and_distinct() -> None:
    deg = torch.tensor([0, 1, 3, 5, 6, 12, 40, 1000, 7])
    colptr = torch.cat([torch.zeros(1, dtype=torch.long), deg.cumsum(0)])
    nodes = torch.tensor([8, 0, 1, 2, 3, 4, 5, 6, 7, 7, 2])  # duplicates sampled per occurrence
    for k in (-1, 0, 1, 5, 10):
        for replace in (False, True):
            pos, count = sample_neighbors(colptr, nodes, k, replace)
            assert torch.equal(count, expected_count(k, deg[nodes], replace))
            assert pos.numel() == int(count.sum())
            owner = torch.repeat_interleave(nodes, count)
            assert ((pos >= colptr[owner]) & (pos < colptr[owner + 1])).all()
            if not replace:
                for i, part in enumerate(pos.split(count.tolist())):
                    assert part.unique().numel() == part.numel(), (k, i)


@pytest.mark.parametrize(("deg", "k"), [(7, 3), (40, 3), (12, 10)])
@pytest.mark.parametrize("replace", [False, True])
def test_sample_neighbors_is_uniform(deg: int, k: int, replace: bool) -> None:
    torch.manual_seed(0)
    colptr = torch.tensor([0, deg])
    reps = 20000
    pos, _ = sample_neighbors(colptr, torch.zeros(reps, dtype=torch.long), k, replace)
    freq = torch.bincount(pos, minlength=deg).double() / (reps * k / deg)
    assert (freq - 1).abs().max() < 0.08, freq


def test_sample_neighbors_int32_and_empty() -> None:
    colptr = torch.tensor([0, 2, 2, 5], dtype=torch.int32)
    pos, count = sample_neighbors(colptr, torch.tensor([2, 1, 0]), 2)
    assert pos.dtype == torch.long and count.tolist() == [2, 0, 2]
    pos, count = sample_neighbors(colptr, torch.tensor([], dtype=torch.long), 3)
    assert pos.numel() == 0 and count.numel() == 0


# ----------------------------------------------------------------------------- homogeneous
@pytest.mark.parametrize(("ks", "replace"), [([10, 5], False), ([3, -1], False),
                                             ([4, 2], True), ([-1], False), ([0, 3], False)])
@pytest.mark.parametrize("scratch", [True, False])
def test_neighbor_loader_homogeneous(ks: list[int], replace: bool, scratch: bool,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    if not scratch:  # relabel by sorting, as for node types too large for a scratch array
        monkeypatch.setattr(StoreGateNeighborSampler, "scratch_max_nodes", 0)
    data = make_graph()
    torch.manual_seed(1)
    loader = NeighborLoader(data, num_neighbors=ks, replace=replace, batch_size=64,
                            shuffle=True)
    assert isinstance(loader.node_sampler, StoreGateNeighborSampler)
    seen = []
    for batch in loader:
        check_homo_batch(batch, data, ks, replace)
        assert torch.equal(batch.n_id[:batch.batch_size], batch.input_id)  # input_nodes=None
        seen.append(batch.input_id)
    assert torch.equal(torch.cat(seen).sort().values, torch.arange(N))


def test_seeds_first_in_order_with_duplicates_and_isolated() -> None:
    data = make_graph()
    sampler = StoreGateNeighborSampler(data, [2, 2])
    seeds = torch.tensor([0, 3, 0, 230, 1])  # 0 twice; 3 and 230 have no in-edges
    out = sampler.sample_from_nodes(NodeSamplerInput(None, seeds))
    assert torch.equal(out.node[:5], seeds)
    assert out.num_sampled_nodes[0] == 5
    counts = torch.bincount(out.col[:out.num_sampled_edges[0]], minlength=5)
    assert counts.tolist() == [2, 0, 2, 0, 2]  # each occurrence of 0 gets its own neighbours
    assert out.node[5:].unique().numel() == out.node.numel() - 5
    assert not torch.isin(out.node[5:], seeds).any()
    # nodes without in-edges only: no edges, nothing found
    out = sampler.sample_from_nodes(NodeSamplerInput(None, torch.tensor([3, 230])))
    assert out.num_sampled_nodes == [2, 0, 0] and out.num_sampled_edges == [0, 0]
    assert out.row.numel() == 0 and out.col.numel() == 0


def test_neighbor_loader_input_nodes_mask_and_transform() -> None:
    data = make_graph()
    mask = torch.zeros(N, dtype=torch.bool)
    mask[::7] = True
    loader = NeighborLoader(data, [3, 3], input_nodes=mask, batch_size=10,
                            transform=lambda b: b.update({"tag": 1}) or b)
    batches = list(loader)
    assert torch.equal(torch.cat([b.n_id[:b.batch_size] for b in batches]),
                       mask.nonzero().view(-1))
    for b in batches:
        check_homo_batch(b, data, [3, 3])


def test_deterministic_under_manual_seed() -> None:
    data = make_graph()

    def run() -> list[tuple[torch.Tensor, torch.Tensor]]:
        torch.manual_seed(123)
        loader = NeighborLoader(data, [5, 3], batch_size=50, shuffle=True)
        return [(b.n_id, b.edge_index) for b in loader]

    a, b = run(), run()
    assert all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(a, b,
                                                                                   strict=True))
    torch.manual_seed(124)
    c = [b.n_id for b in NeighborLoader(data, [5, 3], batch_size=50, shuffle=True)]
    assert any(not torch.equal(x[0], y) for x, y in zip(a, c, strict=True))


def test_disjoint() -> None:
    data = make_graph()
    loader = NeighborLoader(data, [3, 2], batch_size=16, disjoint=True,
                            input_nodes=torch.arange(20, 80))
    for batch in loader:
        b = batch.batch
        assert b is not None and b.numel() == batch.n_id.numel()
        assert torch.equal(b[:batch.batch_size], torch.arange(batch.batch_size))
        src, dst = batch.edge_index
        assert torch.equal(b[src], b[dst])  # edges stay inside their seed's subgraph
        assert torch.equal(data.edge_index[:, batch.e_id], batch.n_id[batch.edge_index])
        key = b * N + batch.n_id
        assert key.unique().numel() == key.numel()  # a node once per subgraph
        for i in range(batch.batch_size):  # each subgraph alone follows the counts
            nodes = (b == i).nonzero().view(-1)
            first_hop = (dst == i)
            deg = in_degree(data.edge_index, N)[batch.n_id[i]]
            assert int(first_hop.sum()) == min(3, int(deg))
            assert nodes[0] == i


def test_bidirectional_and_induced() -> None:
    data = make_graph()
    torch.manual_seed(0)
    seeds = torch.arange(20, 60)
    for subgraph_type in ("bidirectional", "induced"):
        loader = NeighborLoader(data, [4, 2], batch_size=40, input_nodes=seeds,
                                subgraph_type=subgraph_type)
        batch = next(iter(loader))
        assert torch.equal(batch.x, data.x[batch.n_id])
        glob = batch.n_id[batch.edge_index]
        keys = set(edge_keys(glob, N).tolist())
        if subgraph_type == "bidirectional":
            assert keys == set(edge_keys(glob.flip(0), N).tolist())
            assert torch.isin(edge_keys(glob, N), torch.cat([
                edge_keys(data.edge_index, N), edge_keys(data.edge_index.flip(0), N)])).all()
        else:
            inside = torch.isin(data.edge_index, batch.n_id).all(0)
            want = inside.nonzero().view(-1)
            assert torch.equal(batch.e_id.sort().values, want)
            assert torch.equal(data.edge_index[:, batch.e_id], glob)
    with pytest.warns(DeprecationWarning):
        sampler = StoreGateNeighborSampler(data, [2], directed=False)
    assert sampler.subgraph_type.value == "induced"
    with pytest.raises(InvalidArgumentError):
        StoreGateNeighborSampler(data, [2], subgraph_type="induced", disjoint=True)


def test_is_sorted_and_edge_permutation() -> None:
    data = make_graph()
    perm = data.edge_index[1].argsort(stable=True)
    sorted_data = Data(x=data.x, y=data.y, edge_index=data.edge_index[:, perm])
    sampler = StoreGateNeighborSampler(sorted_data, [3], is_sorted=True)
    assert sampler.edge_permutation is None
    batch = next(iter(NeighborLoader(sorted_data, [3], batch_size=30,
                                     neighbor_sampler=sampler)))
    check_homo_batch(batch, sorted_data, [3])
    assert StoreGateNeighborSampler(data, [3]).edge_permutation is not None


def test_sampler_pickles_and_threads_get_own_scratch() -> None:
    data = make_graph()
    sampler = StoreGateNeighborSampler(data, [3, 3])
    sampler.sample_from_nodes(NodeSamplerInput(None, torch.arange(30, 40)))
    clone = pickle.loads(pickle.dumps(sampler))
    assert clone._scratch == {}
    out = clone.sample_from_nodes(NodeSamplerInput(None, torch.arange(30, 40)))
    assert torch.equal(out.node[:10], torch.arange(30, 40))
    with sampler._lock:  # another thread is sampling: this call must not touch its arrays
        scratch = sampler._scratch[None].clone()
        out = sampler.sample_from_nodes(NodeSamplerInput(None, torch.arange(30, 40)))
        assert torch.equal(sampler._scratch[None], scratch)
    assert (sampler._scratch[None] == -1).all()  # reset after every batch


def test_num_neighbors_validation_and_unsupported() -> None:
    data = make_graph()
    with pytest.raises(InvalidArgumentError):
        StoreGateNeighborSampler(data, {("a", "b", "c"): [1]})
    with pytest.raises(UnsupportedOperationError):
        StoreGateNeighborSampler(data, [1], time_attr="time")
    with pytest.raises(UnsupportedOperationError):
        StoreGateNeighborSampler(data, [1], weight_attr="w")
    sampler = StoreGateNeighborSampler(data, [1])
    with pytest.raises(UnsupportedOperationError):
        sampler.sample_from_nodes(NodeSamplerInput(None, torch.arange(3),
                                                   time=torch.zeros(3)))
    sampler.num_neighbors = [2, 2]
    out = sampler.sample_from_nodes(NodeSamplerInput(None, torch.arange(25, 30)))
    assert isinstance(out, SamplerOutput) and len(out.num_sampled_edges) == 2
    assert "num_neighbors=[2, 2]" in repr(sampler)


# ----------------------------------------------------------------------------- backend choice
def test_backend_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    data = make_graph()
    assert not torch_geometric.typing.WITH_PYG_LIB
    assert not torch_geometric.typing.WITH_TORCH_SPARSE
    assert isinstance(make_neighbor_sampler(data, [2]), StoreGateNeighborSampler)
    with pytest.raises(MissingDependencyError):
        make_neighbor_sampler(data, [2], backend="pyg")
    with pytest.raises(InvalidArgumentError):
        make_neighbor_sampler(data, [2], backend="fast")
    monkeypatch.setattr(torch_geometric.typing, "WITH_PYG_LIB", True)
    assert isinstance(make_neighbor_sampler(data, [2]), PygNeighborSampler)
    assert isinstance(make_neighbor_sampler(data, [2], subgraph_type="induced"),
                      StoreGateNeighborSampler)  # pyg-lib has no induced subgraphs
    assert isinstance(make_neighbor_sampler(data, [2], backend="torch"),
                      StoreGateNeighborSampler)
    loader = NeighborLoader(data, [2], batch_size=4, sampler_backend="torch")
    assert isinstance(loader.node_sampler, StoreGateNeighborSampler)


# ----------------------------------------------------------------------------- heterogeneous
HETERO_KS = {WRITES: [4, 2], REV: [3, -1], CITES: [-1, 0]}


@pytest.mark.parametrize("replace", [False, True])
def test_neighbor_loader_heterogeneous_per_edge_type(replace: bool) -> None:
    data = make_hetero()
    torch.manual_seed(0)
    loader = NeighborLoader(data, num_neighbors=HETERO_KS, input_nodes=("paper", None),
                            batch_size=32, shuffle=True, replace=replace)
    assert isinstance(loader.node_sampler, StoreGateNeighborSampler)
    total = 0
    for batch in loader:
        check_hetero_batch(batch, data, HETERO_KS, replace)
        assert batch["paper"].batch_size == batch["paper"].num_sampled_nodes[0]
        assert batch["author"].num_sampled_nodes[0] == 0
        total += batch["paper"].batch_size
    assert total == 120


def test_heterogeneous_list_num_neighbors_and_author_seeds() -> None:
    data = make_hetero()
    ks = [3, 2]
    loader = NeighborLoader(data, num_neighbors=ks, input_nodes=("author", torch.arange(10)),
                            batch_size=5)
    for batch in loader:
        check_hetero_batch(batch, data, dict.fromkeys(data.edge_types, ks))
        assert torch.equal(batch["author"].n_id[:5], batch["author"].input_id)
    with pytest.raises(ValueError, match="edge types"):
        StoreGateNeighborSampler(data, {("paper", "nope", "paper"): [1, 1], **HETERO_KS})


def test_heterogeneous_disjoint_bidirectional_induced() -> None:
    data = make_hetero()
    loader = NeighborLoader(data, num_neighbors=HETERO_KS, input_nodes=("paper", None),
                            batch_size=8, disjoint=True)
    batch = next(iter(loader))
    for e in data.edge_types:
        s, _, d = e
        src, dst = batch[e].edge_index
        assert torch.equal(batch[s].batch[src], batch[d].batch[dst])
    assert torch.equal(batch["paper"].batch[:8], torch.arange(8))
    loader = NeighborLoader(data, num_neighbors=[2, 2], input_nodes=("paper", None),
                            batch_size=8, subgraph_type="bidirectional")
    batch = next(iter(loader))

    def pairs(e: tuple[str, str, str]) -> set[tuple[int, int]]:
        src, dst = batch[e].edge_index
        return set(zip(batch[e[0]].n_id[src].tolist(), batch[e[2]].n_id[dst].tolist(),
                       strict=True))

    assert pairs(CITES) == {(b, a) for a, b in pairs(CITES)}
    assert pairs(WRITES) == {(b, a) for a, b in pairs(REV)}
    loader = NeighborLoader(data, num_neighbors=[2, 2], input_nodes=("paper", None),
                            batch_size=8, subgraph_type="induced")
    batch = next(iter(loader))
    for e in data.edge_types:
        s, _, d = e
        ei = data[e].edge_index
        inside = torch.isin(ei[0], batch[s].n_id) & torch.isin(ei[1], batch[d].n_id)
        assert torch.equal(batch[e].e_id.sort().values, inside.nonzero().view(-1))


# ----------------------------------------------------------------------------- link sampling
def test_link_loader_binary_negatives() -> None:
    data = make_graph()
    label_index = data.edge_index[:, ::5]
    torch.manual_seed(0)
    loader = LinkNeighborLoader(data, [4, 2], edge_label_index=label_index, batch_size=32,
                                shuffle=True, neg_sampling=NegativeSampling("binary", 2))
    assert isinstance(loader.link_sampler, StoreGateNeighborSampler)
    for batch in loader:
        n_pos = batch.input_id.numel()
        assert torch.equal(batch.x, data.x[batch.n_id])
        assert torch.equal(data.edge_index[:, batch.e_id], batch.n_id[batch.edge_index])
        assert batch.edge_label.tolist() == [1.0] * n_pos + [0.0] * (2 * n_pos)
        pos = batch.n_id[batch.edge_label_index[:, :n_pos]]
        assert torch.equal(pos, label_index[:, batch.input_id])
        assert batch.edge_label_index.size(1) == 3 * n_pos
        seeds = batch.n_id[:batch.num_sampled_nodes[0]]
        assert set(seeds.tolist()) == set(batch.n_id[batch.edge_label_index].view(-1).tolist())
        assert batch.batch is None


def test_link_loader_labels_and_no_negatives() -> None:
    data = make_graph()
    label_index = data.edge_index[:, :100]
    label = torch.randint(3, (100,))
    loader = LinkNeighborLoader(data, [3], edge_label_index=label_index, edge_label=label,
                                batch_size=25, neg_sampling="binary")
    for batch in loader:
        n_pos = batch.input_id.numel()
        assert torch.equal(batch.edge_label[:n_pos], label[batch.input_id] + 1)
        assert (batch.edge_label[n_pos:] == 0).all()
    loader = LinkNeighborLoader(data, [3], edge_label_index=label_index, batch_size=25)
    for batch in loader:
        assert torch.equal(batch.n_id[batch.edge_label_index], label_index[:, batch.input_id])
        assert "edge_label" not in batch  # no labels given, no negatives: none made


def test_link_loader_triplet() -> None:
    data = make_graph()
    loader = LinkNeighborLoader(data, [3, 2], edge_label_index=data.edge_index[:, :90],
                                batch_size=30, neg_sampling=NegativeSampling("triplet", 3))
    for batch in loader:
        assert batch.src_index.shape == (30,) and batch.dst_pos_index.shape == (30,)
        assert batch.dst_neg_index.shape == (30, 3)
        assert torch.equal(batch.n_id[batch.src_index], data.edge_index[0, batch.input_id])
        assert torch.equal(batch.n_id[batch.dst_pos_index], data.edge_index[1, batch.input_id])
        assert (batch.dst_neg_index < batch.num_sampled_nodes[0]).all()  # seeds: sampled from
        assert torch.equal(batch.x, data.x[batch.n_id])
        assert "edge_label_index" not in batch


def test_link_loader_heterogeneous() -> None:
    data = make_hetero()
    loader = LinkNeighborLoader(data, HETERO_KS, edge_label_index=(WRITES, None),
                                batch_size=50, neg_sampling=NegativeSampling("binary", 1))
    batch = next(iter(loader))
    check_hetero_batch(batch, data, HETERO_KS)
    eli = batch[WRITES].edge_label_index
    pos = torch.stack([batch["author"].n_id[eli[0, :50]], batch["paper"].n_id[eli[1, :50]]])
    assert torch.equal(pos, data[WRITES].edge_index[:, batch[WRITES].input_id])
    assert batch[WRITES].edge_label.tolist() == [1.0] * 50 + [0.0] * 50
    loader = LinkNeighborLoader(data, HETERO_KS, edge_label_index=(WRITES, None),
                                batch_size=20, neg_sampling=NegativeSampling("triplet", 2))
    batch = next(iter(loader))
    assert torch.equal(batch["author"].n_id[batch["author"].src_index],
                       data[WRITES].edge_index[0, batch[WRITES].input_id])
    assert batch["paper"].dst_neg_index.shape == (20, 2)


def test_sample_from_edges_disjoint() -> None:
    data = make_graph()
    sampler = StoreGateNeighborSampler(data, [2, 2], disjoint=True)
    ei = data.edge_index[:, :10]
    out = sampler.sample_from_edges(EdgeSamplerInput(None, ei[0], ei[1]),
                                    NegativeSampling("binary", 1))
    assert out.batch is not None and int(out.batch.max()) < 10  # batch % num_pos
    assert torch.equal(out.node[out.metadata[1][:, :10]], ei)


# ----------------------------------------------------------------------------- workers
@pytest.mark.timeout(120)
def test_loaders_with_two_workers() -> None:
    data = make_graph()
    loader = NeighborLoader(data, [5, 3], batch_size=40, shuffle=True, num_workers=2,
                            multiprocessing_context="fork")
    n = 0
    for batch in loader:
        check_homo_batch(batch, data, [5, 3])
        n += batch.batch_size
    assert n == N
    loader = LinkNeighborLoader(data, [3], batch_size=200, num_workers=2,
                                multiprocessing_context="fork",
                                neg_sampling=NegativeSampling("binary", 1))
    for batch in loader:
        assert torch.equal(data.edge_index[:, batch.e_id], batch.n_id[batch.edge_index])
        assert torch.equal(batch.x, data.x[batch.n_id])


# ----------------------------------------------------------------------------- other stores
def to_pyg_test_stores(data: Data | HeteroData) -> tuple[MyFeatureStore, MyGraphStore]:
    fs, gs = MyFeatureStore(), MyGraphStore()
    if isinstance(data, HeteroData):
        for t in data.node_types:
            for key in data[t]:
                fs.put_tensor(data[t][key], group_name=t, attr_name=key, index=None)
        for e in data.edge_types:
            s, _, d = e
            gs.put_edge_index(tuple(data[e].edge_index), edge_type=e, layout="coo",
                              size=(data[s].num_nodes, data[d].num_nodes))
    else:
        fs.put_tensor(data.x, group_name=None, attr_name="x", index=None)
        fs.put_tensor(data.y, group_name=None, attr_name="y", index=None)
        gs.put_edge_index(tuple(data.edge_index), edge_type=None, layout="coo",
                          size=(N, N))
    return fs, gs


def test_any_feature_and_graph_store_pair() -> None:
    data = make_graph()
    pair = to_pyg_test_stores(data)
    loader = NeighborLoader(pair, [4, 2], batch_size=60, shuffle=True)  # input_nodes: all
    assert loader.input_data.node.numel() == N
    batch = next(iter(loader))
    check_homo_batch(batch, data, [4, 2])
    loader = LinkNeighborLoader(pair, [3], batch_size=100,  # edge_label_index: all edges
                                neg_sampling=NegativeSampling("binary", 1))
    batch = next(iter(loader))
    assert torch.equal(batch.x, data.x[batch.n_id])
    assert torch.equal(batch.n_id[batch.edge_label_index[:, :100]],
                       data.edge_index[:, batch.input_id])

    hetero = make_hetero()
    pair_h = to_pyg_test_stores(hetero)
    loader = NeighborLoader(pair_h, HETERO_KS, input_nodes=("paper", None), batch_size=40)
    batch = next(iter(loader))
    check_hetero_batch(batch, hetero, HETERO_KS)
    loader = LinkNeighborLoader(pair_h, HETERO_KS, edge_label_index=(WRITES, None),
                                batch_size=30, neg_sampling=NegativeSampling("triplet", 1))
    batch = next(iter(loader))
    assert torch.equal(batch["paper"].n_id[batch["paper"].dst_pos_index],
                       hetero[WRITES].edge_index[1, batch[WRITES].input_id])


def storegate_pair(data: Data | HeteroData, backend: str, tmp_path: Any,
                   csc: bool) -> tuple[Any, Any]:
    stores = pytest.importorskip("storegate.pyg.stores",
                                 reason="storegate.pyg.stores is not written yet")
    from storegate import StoreGate

    args = {"output_dir": str(tmp_path / "g.zarr")} if backend == "zarr" else {}
    sg = StoreGate(backend, args)
    fs, gs = stores.FeatureStore(sg), stores.GraphStore(sg)
    if isinstance(data, HeteroData):
        for t in data.node_types:
            for key in data[t]:
                fs.put_tensor(data[t][key], group_name=t, attr_name=key, index=None)
        for e in data.edge_types:
            s, _, d = e
            gs.put_edge_index(tuple(data[e].edge_index), edge_type=e, layout="coo",
                              size=(data[s].num_nodes, data[d].num_nodes))
            if csc:
                gs.csc([e], store=True)
    else:
        fs.put_tensor(data.x, group_name=None, attr_name="x", index=None)
        fs.put_tensor(data.y, group_name=None, attr_name="y", index=None)
        gs.put_edge_index(tuple(data.edge_index), edge_type=None, layout="coo",
                          size=(N, N))
        if csc:
            gs.csc(store=True)
    return fs, gs


@pytest.mark.parametrize("backend", ["numpy", "zarr"])
@pytest.mark.parametrize("csc", [False, True])
def test_storegate_stores(backend: str, csc: bool, tmp_path: Any) -> None:
    data = make_graph()
    pair = storegate_pair(data, backend, tmp_path, csc)
    torch.manual_seed(0)
    loader = NeighborLoader(pair, [6, 3], batch_size=80, shuffle=True)
    assert isinstance(loader.node_sampler, StoreGateNeighborSampler)
    n = 0
    for batch in loader:
        check_homo_batch(batch, data, [6, 3])
        n += batch.batch_size
    assert n == N
    loader = LinkNeighborLoader(pair, [3, 2], edge_label_index=data.edge_index[:, :64],
                                batch_size=32, neg_sampling=NegativeSampling("binary", 1))
    for batch in loader:
        assert torch.equal(batch.x, data.x[batch.n_id])
        assert torch.equal(batch.n_id[batch.edge_label_index[:, :32]],
                           data.edge_index[:, batch.input_id])
        assert torch.equal(data.edge_index[:, batch.e_id], batch.n_id[batch.edge_index])


@pytest.mark.parametrize("backend", ["numpy", "zarr"])
def test_storegate_stores_heterogeneous(backend: str, tmp_path: Any) -> None:
    data = make_hetero()
    pair = storegate_pair(data, backend, tmp_path, csc=True)
    loader = NeighborLoader(pair, HETERO_KS, input_nodes=("paper", None), batch_size=40)
    n = 0
    for batch in loader:
        check_hetero_batch(batch, data, HETERO_KS)
        n += batch["paper"].batch_size
    assert n == 120
    loader = LinkNeighborLoader(pair, HETERO_KS, edge_label_index=(WRITES, None),
                                batch_size=100, neg_sampling=NegativeSampling("triplet", 2))
    batch = next(iter(loader))
    check_hetero_batch(batch, data, HETERO_KS)
    assert torch.equal(batch["author"].n_id[batch["author"].src_index],
                       data[WRITES].edge_index[0, batch[WRITES].input_id])


@pytest.mark.timeout(120)
def test_storegate_stores_with_two_workers(tmp_path: Any) -> None:
    data = make_graph()
    pair = storegate_pair(data, "zarr", tmp_path, csc=True)
    loader = NeighborLoader(pair, [5, 3], batch_size=60, num_workers=2,
                            multiprocessing_context="fork")
    counts: Counter[int] = Counter()
    for batch in loader:
        check_homo_batch(batch, data, [5, 3])
        counts.update(batch.input_id.tolist())
    assert sorted(counts) == list(range(N)) and set(counts.values()) == {1}
    hetero = make_hetero()
    pair_h = storegate_pair(hetero, "numpy", tmp_path, csc=False)
    loader = NeighborLoader(pair_h, HETERO_KS, input_nodes=("paper", None), batch_size=60,
                            num_workers=2, multiprocessing_context="fork")
    for batch in loader:
        check_hetero_batch(batch, hetero, HETERO_KS)


@pytest.mark.timeout(120)
def test_storegate_link_loader_with_two_workers(tmp_path: Any) -> None:
    data = make_graph()
    pair = storegate_pair(data, "zarr", tmp_path, csc=True)
    loader = LinkNeighborLoader(pair, [3, 2], edge_label_index=data.edge_index[:, :120],
                                batch_size=30, num_workers=2, multiprocessing_context="fork",
                                neg_sampling=NegativeSampling("binary", 1))
    seen: Counter[int] = Counter()
    for batch in loader:
        assert torch.equal(batch.x, data.x[batch.n_id])
        assert torch.equal(batch.y, data.y[batch.n_id])
        assert torch.equal(batch.n_id[batch.edge_label_index[:, :30]],
                           data.edge_index[:, batch.input_id])
        assert torch.equal(data.edge_index[:, batch.e_id], batch.n_id[batch.edge_index])
        seen.update(batch.input_id.tolist())
    assert sorted(seen) == list(range(120)) and set(seen.values()) == {1}
