"""Benchmark: DataLoader throughput over StoreGateDataset on the zarr backend.

Data: X = 2,000,000 x 128 float32 (1.02 GB) plus int64 labels in a zarr store; batches of
1,024 random rows. Compared, in one run:

* the in-memory limit: the same numpy arrays gathered with a ``BatchSampler`` over a
  ``RandomSampler`` (what a hand-written loop does);
* torch's usual way: ``DataLoader(TensorDataset(X, y), shuffle=True)`` — one ``__getitem__``
  per row and ``default_collate``;
* ``StoreGateDataset`` over the zarr store with ``shuffle=True`` (one batched read per batch),
  with :class:`~storegate.torch.ChunkShuffleSampler`, and with 2 worker processes;
* ragged: 128-item batches of a ragged var (100,000 items of (10..60, 16) float32) as lists,
  padded and packed.

The first batch of each loader is not timed; the zarr arenas are filled once before (first
touch, timed separately). torch uses 1 intra-op thread (2-core machine).

Run: ``python bench/loader.py [--rows 2000000] [--batches 400] [--dir DIR]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gather import machine

from storegate import StoreGate
from storegate.torch import ChunkShuffleSampler, StoreGateDataset


def rows_per_s(batches: Iterable, count: int) -> float:
    """Rows per second over ``count`` batches after the first (not timed)."""
    it = iter(batches)
    next(it)
    n = 0
    t0 = time.perf_counter()
    for i, batch in enumerate(it):
        label = batch[1] if isinstance(batch, tuple | list) else batch
        n += len(label)
        if i + 1 >= count:
            break
    return n / (time.perf_counter() - t0)


def ms_per_batch(batches: Iterable, count: int) -> float:
    it = iter(batches)
    next(it)
    t0 = time.perf_counter()
    done = 0
    for _ in it:
        done += 1
        if done >= count:
            break
    return (time.perf_counter() - t0) / max(done, 1) * 1e3


class MemoryBatches(torch.utils.data.Dataset):
    """The in-memory limit as a dataset: one numpy gather per batch (``__getitems__``)."""

    def __init__(self, X: np.ndarray, y: np.ndarray) -> None:
        self.X, self.y = X, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitems__(self, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(self.X[idx]), torch.from_numpy(self.y[idx])


def passthrough(batch: object) -> object:
    return batch


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--batches", type=int, default=400)
    ap.add_argument("--items", type=int, default=100_000, help="ragged items")
    ap.add_argument("--dir", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    work = Path(args.dir or tempfile.mkdtemp(prefix="sg-loader-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    n, bsz = args.rows, 1024
    X = rng.standard_normal((n, 128), dtype=np.float32)
    y = rng.integers(0, 10, n)
    store = work / f"loader_{n}.zarr"
    if not store.exists():
        sg = StoreGate("zarr", {"output_dir": str(store)}, data_id="d")
        sg.add_data("x", X)
        sg.add_data("y", y)
        sg.compile()
        sg.close()
    print(f"machine: {machine()}")
    print(f"data: X {n:,} x 128 float32 + int64 y, batch {bsz}, {args.batches} batches timed\n")

    sg = StoreGate.open(str(store))
    ds = StoreGateDataset(sg, "train", ("x", "y"))
    t0 = time.perf_counter()
    ds.__getitems__(np.arange(0, n, 997))
    touch = time.perf_counter() - t0

    def memory() -> Iterable:
        sampler = torch.utils.data.BatchSampler(torch.utils.data.RandomSampler(range(n)), bsz,
                                                False)
        for idx in sampler:
            yield torch.from_numpy(X[idx]), torch.from_numpy(y[idx])

    results: list[tuple[str, float]] = []
    base = rows_per_s(memory(), args.batches)
    results.append(("in memory: numpy X[idx], y[idx] over BatchSampler(RandomSampler)", base))
    tensors = torch.utils.data.TensorDataset(torch.from_numpy(X), torch.from_numpy(y))
    results.append(("torch DataLoader(TensorDataset, shuffle=True) (per-row + collate)",
                    rows_per_s(torch.utils.data.DataLoader(tensors, batch_size=bsz,
                                                           shuffle=True),
                               max(10, args.batches // 10))))
    results.append(("storegate zarr StoreGateDataset, shuffle=True",
                    rows_per_s(ds.as_dataloader(batch_size=bsz, shuffle=True), args.batches)))
    results.append(("storegate zarr StoreGateDataset, ChunkShuffleSampler",
                    rows_per_s(ds.as_dataloader(batch_size=bsz,
                                                sampler=ChunkShuffleSampler(ds)),
                               args.batches)))
    loader = ds.as_dataloader(batch_size=bsz, shuffle=True, num_workers=2,
                              multiprocessing_context="fork", persistent_workers=True)
    rows_per_s(loader, 20)  # workers start and share the parent's filled arena
    results.append(("storegate zarr StoreGateDataset, shuffle=True, 2 workers (fork)",
                    rows_per_s(loader, args.batches)))
    del loader
    loader = torch.utils.data.DataLoader(
        MemoryBatches(X, y), batch_size=bsz, shuffle=True, num_workers=2,
        multiprocessing_context="fork", persistent_workers=True, collate_fn=passthrough)
    rows_per_s(loader, 20)
    results.append(("in memory, one gather per batch, 2 workers (fork): torch's worker IPC",
                    rows_per_s(loader, args.batches)))
    del loader

    print(f"zarr first touch (fills the decoded arenas of x and y once per process): "
          f"{touch:.2f} s\n")
    print("| loader | rows/s | x in-memory limit |")
    print("|---|---:|---:|")
    for name, rate in results:
        print(f"| {name} | {rate / 1e6:.2f} M | {rate / base:.2f} |")

    # ragged batches
    items = args.items
    lengths = rng.integers(10, 61, items)
    offsets = np.zeros(items + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    values = rng.standard_normal((int(offsets[-1]), 16), dtype=np.float32)
    rstore = work / f"ragged_{items}.zarr"
    if not rstore.exists():
        from storegate import RaggedArray

        rsg = StoreGate("zarr", {"output_dir": str(rstore)}, data_id="r")
        rsg.add_data("atoms", RaggedArray(values, offsets))
        rsg.add_data("y", rng.standard_normal(items).astype(np.float32))
        rsg.compile()
        rsg.close()
    rsg = StoreGate.open(str(rstore))
    print(f"\nragged: {items:,} items of (10..60, 16) float32, 128-item random batches")
    print("| loader | ms per batch |")
    print("|---|---:|")
    for mode in ("list", "padded", "packed"):
        rds = StoreGateDataset(rsg, "train", ("atoms", "y"), ragged=mode)
        rds.__getitems__(np.arange(0, items, 97))
        ms = ms_per_batch(rds.as_dataloader(batch_size=128, shuffle=True), args.batches)
        print(f"| storegate zarr StoreGateDataset, ragged='{mode}' | {ms:.3f} |")

    def ragged_memory() -> Iterable:
        sampler = torch.utils.data.BatchSampler(torch.utils.data.RandomSampler(range(items)),
                                                128, False)
        for idx in sampler:
            yield [torch.from_numpy(values[offsets[i]:offsets[i + 1]]) for i in idx]

    print(f"| in memory: list of 128 slices of a CSR array | "
          f"{ms_per_batch(ragged_memory(), args.batches):.3f} |")
    if args.dir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    raise SystemExit(main())
