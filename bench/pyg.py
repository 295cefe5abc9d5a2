"""Benchmark: storegate's pure-PyTorch neighbour sampler and PyG loaders over storegate stores.

Graph: N = 1,000,000 nodes, E = 10,000,000 uniform random edges, x = N x 128 float32 (512 MB),
int64 labels y. Loader: ``num_neighbors=[10, 5]``, batches of 1,024 random seed nodes
(``shuffle=True``), about 52k nodes and 53k edges per batch. Timed, in one run:

* (a) ``storegate.pyg.NeighborLoader`` over the in-memory PyG ``Data`` (sampling plus the
  feature gather PyG's ``filter_data`` does), also with 2 worker processes (fork);
* (b) sampling only: ``StoreGateNeighborSampler.sample_from_nodes`` on the same ``Data``;
* (c) ``storegate.pyg.NeighborLoader`` over storegate's ``(FeatureStore, GraphStore)`` on the
  zarr backend (reopened from disk; CSC topology stored, so no sort at start-up), and the same
  on the in-memory numpy backend — when :mod:`storegate.pyg.stores` is available.

PyG's own ``NeighborLoader`` needs pyg-lib or torch-sparse, which are not installed here; the
reference figure for it on this workload (torch-sparse, 1 thread) is about 59 ms per batch.
The first batch of each loader is not timed (zarr: it fills the decoded arenas; timed apart),
nor are the next 20 (warm-up, the same for every case).
torch uses ``--threads`` intra-op threads (default 1; the machine has 2 cores).

Run: ``python bench/pyg.py [--nodes 1000000] [--edges 10000000] [--batches 50] [--dir DIR]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gather import machine

from storegate.pyg.loaders import NeighborLoader
from storegate.pyg.sampler import StoreGateNeighborSampler

NUM_NEIGHBORS = [10, 5]
BATCH = 1024


#: Batches run (untimed) after the first one, before timing: the first batches after an arena
#: fill still pay page faults on fresh buffers.
WARMUP = 20


def ms_per_batch(batches: Iterable[Any], count: int) -> tuple[float, float]:
    """(first batch in s, mean ms per batch over ``count`` batches after a warm-up)."""
    it = iter(batches)
    t0 = time.perf_counter()
    next(it)
    first = time.perf_counter() - t0
    for _ in range(WARMUP):
        next(it, None)
    done = 0
    t0 = time.perf_counter()
    for _ in it:
        done += 1
        if done >= count:
            break
    return first, (time.perf_counter() - t0) / max(done, 1) * 1e3


def median_ms(fn: Callable[[], object], count: int) -> float:
    fn()
    times = []
    for _ in range(count):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def build_store(path: Path, x: torch.Tensor, y: torch.Tensor, row: torch.Tensor,
                colptr: torch.Tensor, backend: str) -> Any:
    """A StoreGate holding x, y and the CSC topology (written through the PyG stores)."""
    from storegate import StoreGate
    from storegate.pyg.stores import FeatureStore, GraphStore

    n = x.size(0)
    sg = StoreGate(backend, {"output_dir": str(path)} if backend == "zarr" else {})
    fs, gs = FeatureStore(sg), GraphStore(sg)
    fs.put_tensor(x, group_name=None, attr_name="x", index=None)
    fs.put_tensor(y, group_name=None, attr_name="y", index=None)
    gs.put_edge_index((row, colptr), edge_type=None, layout="csc", size=(n, n))
    if backend == "zarr":
        sg.close()
        os.sync()  # write-back of the fresh store must not run during the timed batches
        sg = StoreGate.open(str(path))
    return sg


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=1_000_000)
    ap.add_argument("--edges", type=int, default=10_000_000)
    ap.add_argument("--batches", type=int, default=50, help="batches timed per case")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--dir", default=None, help="scratch directory (default: a temp dir)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from torch_geometric.data import Data
    from torch_geometric.sampler import NodeSamplerInput

    n, e = args.nodes, args.edges
    g = torch.Generator().manual_seed(0)
    edge_index = torch.randint(n, (2, e), generator=g)
    x = torch.randn(n, 128, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    data = Data(x=x, y=y, edge_index=edge_index)
    print(f"machine: {machine()}; torch {torch.__version__}, {args.threads} thread(s)")
    print(f"graph: {n:,} nodes, {e:,} uniform random edges, x {n:,} x 128 float32 + int64 y; "
          f"num_neighbors={NUM_NEIGHBORS}, batch {BATCH}, {args.batches} batches timed\n")

    results: list[tuple[str, float, str]] = []
    torch.manual_seed(0)
    loader, init = timed(lambda: NeighborLoader(data, NUM_NEIGHBORS, batch_size=BATCH,
                                                shuffle=True))
    sampler = loader.node_sampler
    assert isinstance(sampler, StoreGateNeighborSampler)
    _, ms = ms_per_batch(loader, args.batches)
    results.append(("(a) storegate.pyg.NeighborLoader, in-memory Data", ms,
                    f"init {init:.1f} s (sort by destination)"))
    sizes = []

    def sample() -> None:
        seeds = torch.randint(n, (BATCH,))
        out = sampler.sample_from_nodes(NodeSamplerInput(None, seeds))
        sizes.append((out.node.numel(), out.row.numel()))

    ms = median_ms(sample, args.batches)
    nodes = statistics.mean(s[0] for s in sizes)
    edges = statistics.mean(s[1] for s in sizes)
    results.append(("(b) StoreGateNeighborSampler.sample_from_nodes only (median)", ms,
                    f"{nodes / 1e3:.1f}k nodes, {edges / 1e3:.1f}k edges per batch"))
    workers = NeighborLoader(data, NUM_NEIGHBORS, batch_size=BATCH, shuffle=True,
                             num_workers=2, multiprocessing_context="fork",
                             persistent_workers=True)
    ms_per_batch(workers, 10)  # start the workers
    _, ms = ms_per_batch(workers, args.batches)
    results.append(("(a) same, 2 worker processes (fork)", ms, "throughput"))
    del workers

    try:
        import storegate.pyg.stores  # noqa: F401
    except ImportError as err:
        print(f"(c) skipped: storegate.pyg.stores is not available ({err})\n")
    else:
        work = Path(args.dir or tempfile.mkdtemp(prefix="sg-pyg-bench-"))
        work.mkdir(parents=True, exist_ok=True)
        row, colptr, _ = sampler._row[None], sampler._colptr[None], None
        for backend in ("zarr", "numpy"):
            path = work / f"pyg_{n}_{e}.zarr"
            if path.exists():
                shutil.rmtree(path)
            sg, build = timed(lambda b=backend, p=path: build_store(p, x, y, row, colptr, b))
            from storegate.pyg.stores import FeatureStore, GraphStore

            pair = (FeatureStore(sg), GraphStore(sg))
            torch.manual_seed(0)
            store_loader, init = timed(lambda p=pair: NeighborLoader(
                p, NUM_NEIGHBORS, batch_size=BATCH, shuffle=True))
            first, ms = ms_per_batch(store_loader, args.batches)
            where = "zarr on local disk, reopened" if backend == "zarr" else "numpy, in memory"
            results.append((f"(c) storegate.pyg.NeighborLoader, storegate stores ({where})",
                            ms, f"write {build:.1f} s, init {init:.1f} s, "
                                f"first batch {first:.2f} s"))
            if backend == "zarr":
                w = NeighborLoader(pair, NUM_NEIGHBORS, batch_size=BATCH, shuffle=True,
                                   num_workers=2, multiprocessing_context="fork",
                                   persistent_workers=True)
                ms_per_batch(w, 10)
                _, ms = ms_per_batch(w, args.batches)
                results.append(("(c) same on zarr, 2 worker processes (fork)", ms,
                                "throughput"))
                del w
            del store_loader, pair, sg
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)

    print("| case | ms per batch | notes |")
    print("|---|---:|---|")
    for name, ms, note in results:
        print(f"| {name} | {ms:.1f} | {note} |")
    print("| PyG NeighborLoader + torch-sparse, in-memory Data (reference notes, 1 thread) "
          "| ~59 | not runnable here: needs pyg-lib or torch-sparse |")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    raise SystemExit(main())
