"""Random gathers from the parquet backend beside raw numpy and pyarrow.

Dataset (DESIGN §7): X = N x 128 float32 (N = 2,000,000 by default, 1 GB) plus int64 labels y,
written by ``StoreGate(backend='parquet')`` with its defaults (no compression, 8 MiB row groups,
128 MiB files, x and y in the same files). The files are in the page cache when gathers run.

Cases
-----
* ingest: ``add_data('x'); add_data('y'); compile()``, beside ``pyarrow.parquet.write_table``
  of the same columns;
* random batch: 1,024 unique random rows of X (and of X and y), as numpy arrays:
  raw numpy in memory; storegate parquet (first touch fills the decoded arena, then steady
  state); storegate parquet without arena (``cache_bytes=0``: decodes the touched row groups
  per batch); pyarrow ``ParquetFile.read_row_groups(needed row groups)`` + ``take`` on a file
  with the same row groups; ``pyarrow.dataset.dataset(phase_dir).take`` on storegate's files;
* scan: the whole phase in 1,024-row batches.

Every figure is a median over repetitions; ratios are to raw numpy measured in the same run.

Usage::

    python bench/parquet.py                 # full size (needs ~5 GB RAM, ~2.2 GB disk)
    python bench/parquet.py --rows 200000   # smaller
    python bench/parquet.py --quick         # a smoke run (seconds)
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gather import machine, median_ms, timed

from storegate import StoreGate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--batches", type=int, default=200, help="random batches to time")
    parser.add_argument("--slow-batches", type=int, default=5,
                        help="batches for the cases that decode whole row groups per batch")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for CI")
    parser.add_argument("--dir", default=None, help="scratch directory (default: a temp dir)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.batches, args.slow_batches = 50_000, 20, 3

    import pyarrow as pa
    import pyarrow.dataset as pds
    import pyarrow.parquet as pq

    n, dim, bs = args.rows, 128, 1024
    scratch = Path(args.dir or tempfile.mkdtemp(prefix="storegate-bench-pq-"))
    scratch.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, dim), dtype=np.float32)
    y = rng.integers(0, 10, n).astype(np.int64)
    batches = [rng.choice(n, bs, replace=False) for _ in range(args.batches)]
    slow = batches[: max(1, args.slow_batches)]
    rows: list[tuple[str, str, float, str]] = []

    def add(case: str, who: str, ms: float, note: str = "") -> None:
        rows.append((case, who, ms, note))
        print(f"  {case:<16} {who:<44} {ms:10.3f} ms  {note}", flush=True)

    print(f"# machine: {machine()}, pyarrow {pa.__version__}\n"
          f"# X = {n:,} x {dim} float32 + int64 y; batch {bs}")

    # ---------------------------------------------------------------- ingest
    store = scratch / "store.parquet"
    shutil.rmtree(store, ignore_errors=True)
    sg = StoreGate("parquet", {"output_dir": str(store), "mode": "w"}, data_id="bench")
    t_ingest = timed(lambda: (sg.add_data("x", X), sg.add_data("y", y), sg.compile()))
    add("ingest", "storegate parquet add_data x, y + compile", t_ingest * 1e3,
        f"{(X.nbytes + y.nbytes) / t_ingest / 1e9:.2f} GB/s")
    sg.close()
    phase_dir = store / "bench" / "train"
    layout = StoreGate("parquet", {"output_dir": str(store), "mode": "r"},
                       data_id="bench").db.chunk_layout("bench", "train", "x")
    rg_rows = int(layout["chunk_rows"])
    table = pa.table({"x": pa.FixedSizeListArray.from_arrays(pa.array(X.reshape(-1)), dim),
                      "y": pa.array(y)})
    ref_file = scratch / "pyarrow.parquet"
    t0 = time.perf_counter()
    pq.write_table(table, ref_file, row_group_size=rg_rows, compression="none")
    t_pa = time.perf_counter() - t0
    add("ingest", f"pyarrow write_table ({rg_rows}-row groups)", t_pa * 1e3,
        f"{(X.nbytes + y.nbytes) / t_pa / 1e9:.2f} GB/s")
    del table

    # ---------------------------------------------------------------- random gathers
    add("random batch", "raw numpy X[idx]", median_ms(lambda i: X[i], batches))
    add("random batch", "raw numpy X[idx], y[idx]", median_ms(lambda i: (X[i], y[i]), batches))

    sg = StoreGate("parquet", {"output_dir": str(store), "mode": "r"}, data_id="bench")
    be = sg.db
    first = timed(lambda: be.read("bench", "train", "x", np.sort(batches[0])))
    add("random batch", "storegate parquet X, first touch", first * 1e3,
        "decodes every row group once (fills the arena)")
    add("random batch", "storegate parquet backend.read X",
        median_ms(lambda i: be.read("bench", "train", "x", i), batches))
    add("random batch", "storegate parquet sg['train']['x'][idx]",
        median_ms(lambda i: sg["train"]["x"][i], batches))
    be.read("bench", "train", "y", batches[0])
    add("random batch", "storegate parquet get_data([x, y])",
        median_ms(lambda i: sg.get_data(["x", "y"], "train", i), batches))

    nocache = StoreGate("parquet", {"output_dir": str(store), "mode": "r", "cache_bytes": 0},
                        data_id="bench").db
    add("random batch", "storegate parquet X, cache_bytes=0",
        median_ms(lambda i: nocache.read("bench", "train", "x", i), slow),
        f"median of {len(slow)}; decodes the touched row groups")

    pf = pq.ParquetFile(ref_file, memory_map=True)
    starts = np.zeros(pf.num_row_groups + 1, dtype=np.int64)
    np.cumsum([pf.metadata.row_group(g).num_rows for g in range(pf.num_row_groups)],
              out=starts[1:])

    def pyarrow_take(idx: np.ndarray) -> np.ndarray:
        groups = np.unique(np.searchsorted(starts, idx, side="right") - 1)
        t = pf.read_row_groups(groups.tolist(), columns=["x"])
        # positions of idx inside the concatenation of the groups read
        sizes = starts[groups + 1] - starts[groups]
        base = np.zeros(groups.shape[0] + 1, dtype=np.int64)
        np.cumsum(sizes, out=base[1:])
        g = np.searchsorted(starts, idx, side="right") - 1
        local = idx - starts[g] + base[np.searchsorted(groups, g)]
        col = t.column("x").take(pa.array(local)).combine_chunks()
        return col.flatten().to_numpy().reshape(-1, dim)

    add("random batch", "pyarrow read_row_groups(needed) + take", median_ms(pyarrow_take, slow),
        f"median of {len(slow)}")
    dset = pds.dataset(str(phase_dir))
    add("random batch", "pyarrow.dataset(phase dir).take",
        median_ms(lambda i: dset.take(pa.array(i), columns=["x"]), slow),
        f"median of {len(slow)}; storegate's files")

    # ---------------------------------------------------------------- scan
    def scan(read: Callable[[int, int], object]) -> float:
        return min(timed(lambda: [read(a, min(n, a + bs)) for a in range(0, n, bs)])
                   for _ in range(2)) * 1e3

    add("scan", "raw numpy (copy out)", scan(lambda a, b: X[a:b].copy()))
    fresh = StoreGate("parquet", {"output_dir": str(store), "mode": "r", "cache_bytes": 0},
                      data_id="bench")
    add("scan", "storegate parquet X, no arena", scan(lambda a, b: fresh["train"]["x"][a:b]),
        "row-group cache")
    add("scan", "pyarrow iter_batches(1024) -> numpy", scan_pyarrow(pf, dim, bs),
        "one epoch")

    # ---------------------------------------------------------------- table
    ref_names = {"random batch": "raw numpy X[idx]", "scan": "raw numpy (copy out)"}
    ref = {case: ms for case, who, ms, _ in rows if ref_names.get(case) == who}
    print("\n| case | implementation | median | x raw numpy |")
    print("|---|---|---:|---:|")
    for case, who, ms, note in rows:
        base = ref.get(case)
        ratio = f"{ms / base:,.2f}x" if base else ""
        unit = f"{ms:.3f} ms" if ms < 100 else f"{ms / 1e3:.2f} s"
        print(f"| {case} | {who}{' (' + note + ')' if note else ''} | {unit} | {ratio} |")
    if not args.dir:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


def scan_pyarrow(pf: object, dim: int, bs: int) -> float:
    t = time.perf_counter()
    for batch in pf.iter_batches(batch_size=bs, columns=["x"]):  # type: ignore[attr-defined]
        batch.column(0).flatten().to_numpy().reshape(-1, dim)
    return (time.perf_counter() - t) * 1e3


if __name__ == "__main__":
    raise SystemExit(main())
