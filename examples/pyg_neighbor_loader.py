"""GraphSAGE trained from a zarr store with storegate's NeighborLoader (no pyg-lib needed).

A synthetic graph with community structure (100,000 nodes by default, 8 classes, most edges
inside a class, features = a class centre plus noise) is written into a zarr store with
``storegate.pyg.from_data`` (renumbered by BFS for locality), reopened read-only, and one
epoch of GraphSAGE is trained through ``storegate.pyg.NeighborLoader`` over the store's
``(FeatureStore, GraphStore)``: features and topology are read from disk a batch at a time,
and the neighbours are sampled by storegate's pure-PyTorch sampler.

Run: ``python examples/pyg_neighbor_loader.py [--nodes 100000] [--degree 10] [--dir DIR]``
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch
import torch.nn.functional as F
from torch_geometric.data import Data
from torch_geometric.nn import GraphSAGE

from storegate import StoreGate
from storegate.pyg import FeatureStore, GraphStore, NeighborLoader, from_data


def synthetic_graph(nodes: int, degree: int, classes: int = 8, features: int = 32,
                    seed: int = 0) -> Data:
    """Communities: 80 % of a node's in-edges come from its own class."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (nodes,), generator=g)
    centres = torch.randn(classes, features, generator=g)
    x = centres[y] * 0.15 + torch.randn(nodes, features, generator=g)
    dst = torch.arange(nodes).repeat_interleave(degree)
    by_class = [torch.nonzero(y == c).flatten() for c in range(classes)]
    same = torch.rand(dst.numel(), generator=g) < 0.8
    src = torch.randint(0, nodes, (dst.numel(),), generator=g)
    for c in range(classes):  # rewire the "same class" edges to a random node of the class
        mask = same & (y[dst] == c)
        pick = torch.randint(0, by_class[c].numel(), (int(mask.sum()),), generator=g)
        src[mask] = by_class[c][pick]
    return Data(x=x, y=y, edge_index=torch.stack([src, dst]), num_nodes=nodes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=100_000)
    ap.add_argument("--degree", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--dir", default=None)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    work = args.dir or tempfile.mkdtemp(prefix="storegate-pyg-")
    os.makedirs(work, exist_ok=True)
    path = os.path.join(work, "graph.zarr")

    t0 = time.perf_counter()
    data = synthetic_graph(args.nodes, args.degree)
    sg = StoreGate("zarr", {"output_dir": path, "mode": "w"})
    from_data(data, sg, renumber="bfs")
    sg.close()
    print(f"graph: {args.nodes:,} nodes, {data.num_edges:,} edges, written to {path} "
          f"(renumbered by BFS) in {time.perf_counter() - t0:.1f} s")

    store = StoreGate.open(path)  # read-only
    fs, gs = FeatureStore(store), GraphStore(store)
    loader = NeighborLoader((fs, gs), num_neighbors=[10, 5], batch_size=args.batch_size,
                            input_nodes=torch.arange(args.nodes), shuffle=True,
                            num_workers=args.workers)
    model = GraphSAGE(data.num_features, hidden_channels=64, num_layers=2, out_channels=8)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    losses: list[float] = []
    t0 = time.perf_counter()
    for batch in loader:
        opt.zero_grad()
        out = model(batch.x, batch.edge_index)[:batch.batch_size]
        loss = F.cross_entropy(out, batch.y[:batch.batch_size])
        loss.backward()
        opt.step()
        losses.append(loss.item())
    seconds = time.perf_counter() - t0
    k = max(1, len(losses) // 10)
    first, last = sum(losses[:k]) / k, sum(losses[-k:]) / k
    print(f"one epoch: {len(losses)} batches of {args.batch_size} in {seconds:.1f} s "
          f"({seconds / len(losses) * 1e3:.1f} ms per batch)")
    print(f"loss fell: {first:.3f} -> {last:.3f} (mean of the first and last {k} batches)")
    if not last < first:
        raise SystemExit("the loss did not fall")


if __name__ == "__main__":
    main()
