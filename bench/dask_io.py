"""storegate.dask's from_dask / to_dask beside dask's own zarr I/O, single-process storegate
and numpy in memory.

Dataset: X = N x 32 float64 (N = 819,200 by default: 200 MiB), integers 0-999 drawn by
``dask.array.random.default_rng(1)`` in blocks of 50,000 rows. Every store is a local zarr
directory (a temp dir, data in the page cache) with storegate's default layout: uncompressed
chunks of 4 MiB (16,384 rows of 32 float64); the zarr-python alternatives are written with the
same chunks and no compression, so both sides store the same bytes in the same files.

The cluster is a ``dask.distributed.LocalCluster`` of ``--workers`` processes (2 by default)
with one thread each, started once (its start-up time is a row of the table).

Cases (each the best of ``--repeat`` runs; writes go to a freshly deleted store)
---------------------------------------------------------------------------------
* **write, cluster**: ``from_dask(sg, 'x', src, scheduler=client)``: the workers generate the
  random blocks and write them straight into the store (storegate realigns the 50,000-row
  blocks to whole chunks: 49,152 rows). Beside it: ``src.rechunk(49,152 rows).to_zarr(path)``
  (dask's own writer, the same tasks and chunks) and the generation alone (``src.sum()`` on
  the cluster: the floor).
* **write, threads**: the source computed into a numpy array first; ``from_dask`` of
  ``da.from_array(arr, 65,536-row blocks)`` with the threads scheduler, beside ``to_zarr`` of
  the same dask array, single-process ``sg.add_data('x', arr)``, and ``arr.copy()`` (the
  in-memory limit).
* **read**: ``to_dask(sg, 'x').sum()`` on the cluster and with threads, beside
  ``da.from_zarr(path).sum()`` (the same chunks), single-process ``sg.get_data('x').sum()``
  (a whole-var slice: the chunk files read into a new array, no arena) and
  ``zarr.open_array(path)[:].sum()``, and numpy's ``arr.sum()`` (the in-memory limit).

Every write is checked (the stored var equals the source) and every sum is compared with
numpy's (exact: integer values).

Usage::

    python bench/dask_io.py                 # full size (200 MiB): about 30 s
    python bench/dask_io.py --rows 200000   # smaller
    python bench/dask_io.py --quick         # a smoke run (CI): 20 MiB, well under a minute
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import fmt_ms, machine, timed, versions
from storegate import StoreGate

COLS = 32
SRC_BLOCK = 50_000  # rows per block of the generated dask array
MEM_BLOCK = 65_536  # rows per block of the in-memory array wrapped with da.from_array
MiB = 1 << 20
QUIET = ("distributed", "tornado", "bokeh", "asyncio")


@dataclass
class Row:
    case: str
    who: str
    ms: float
    group: str  # "write" or "read": the in-memory reference of the row
    alt: str = ""  # the key of the row this one is compared with ("x alternative")
    key: str = ""
    note: str = ""


class Bench:
    """The measurements of one run (see the module docstring)."""

    def __init__(self, args: argparse.Namespace, scratch: Path) -> None:
        self.args, self.scratch = args, scratch
        self.n = int(args.rows)
        self.nbytes = self.n * COLS * 8
        self.rows: list[Row] = []
        self.sg_path = str(scratch / "sg.zarr")
        self.zarr_path = str(scratch / "plain.zarr")
        self.client: Any = None
        self.cluster: Any = None
        self.chunk_rows = 0

    # ------------------------------------------------------------------ helpers
    def add(self, case: str, who: str, ms: float, group: str, key: str = "", alt: str = "",
            note: str = "") -> None:
        self.rows.append(Row(case, who, ms, group, alt, key, note))
        rate = f"{self.nbytes / MiB / (ms / 1e3):,.0f} MiB/s" if group else ""
        print(f"  {case:<16} {who:<58} {fmt_ms(ms):>9}  {rate:>14}  {note}", flush=True)

    def best(self, fn: Callable[[], object], before: Callable[[], object] | None = None,
             reps: int | None = None) -> float:
        """The best of ``reps`` (default ``--repeat``) runs of ``fn()``, in ms; ``before()``
        untimed before each."""
        out = float("inf")
        for _ in range(reps or self.args.repeat):
            if before is not None:
                before()
            out = min(out, timed(fn) * 1e3)
        return out

    def fresh(self) -> None:
        """Delete both stores (before a write)."""
        shutil.rmtree(self.sg_path, ignore_errors=True)
        shutil.rmtree(self.zarr_path, ignore_errors=True)

    def check_sg(self, expected: np.ndarray) -> None:
        sg = StoreGate("zarr", {"output_dir": self.sg_path, "mode": "r"}, data_id="d")
        try:
            if not np.array_equal(sg.get_data("x"), expected):
                raise AssertionError("the var storegate wrote differs from the source")
        finally:
            sg.close()

    def check_zarr(self, expected: np.ndarray) -> None:
        import zarr

        z = zarr.open_array(self.zarr_path, mode="r")
        if int(z.chunks[0]) != self.chunk_rows or not np.array_equal(z[:], expected):
            raise AssertionError("the zarr array dask wrote differs from the source")

    # ------------------------------------------------------------------ the run
    def run(self) -> int:
        import dask.array as da
        from dask.distributed import Client, LocalCluster

        from storegate.dask import from_dask, to_dask

        a, n = self.args, self.n
        print(f"# machine: {machine()}; {versions('dask', 'distributed', 'zarr')}\n"
              f"# X = {n:,} x {COLS} float64 ({self.nbytes / MiB:.0f} MiB); LocalCluster of "
              f"{a.workers} processes x 1 thread; best of {a.repeat}", flush=True)
        t0 = time.perf_counter()
        self.cluster = LocalCluster(n_workers=a.workers, processes=True, threads_per_worker=1,
                                    memory_limit="3GiB", dashboard_address=None)
        self.client = client = Client(self.cluster, set_as_default=False)
        client.wait_for_workers(a.workers)
        started = (time.perf_counter() - t0) * 1e3
        print(f"# cluster started in {fmt_ms(started)}", flush=True)
        block = min(SRC_BLOCK, max(1, n // 8))
        src = da.random.default_rng(1).integers(0, 1000, size=(n, COLS),
                                                chunks=(block, COLS)).astype("f8")
        arr = np.asarray(src.compute(scheduler=client))
        expected = float(arr.sum())

        # ---- write, cluster
        def sg_write(data: Any, scheduler: Any) -> None:
            sg = StoreGate("zarr", {"output_dir": self.sg_path}, data_id="d")
            try:
                from_dask(sg, "x", data, scheduler=scheduler)
            finally:
                sg.close()

        sg_write(src, client)  # warm-up: the workers import storegate and zarr once
        self.check_sg(arr)
        sg = StoreGate("zarr", {"output_dir": self.sg_path, "mode": "r"}, data_id="d")
        self.chunk_rows = int(to_dask(sg, "x").chunks[0][0])
        sg.close()
        rows = self.chunk_rows
        label = f"{rows:,}-row chunks"

        def zarr_write(data: Any, scheduler: Any) -> None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # dask's notes about zarr kwargs
                data.to_zarr(self.zarr_path, chunks=(rows, COLS), compressors=None,
                             compute=False).compute(scheduler=scheduler)

        # the blocks from_dask writes (its own realignment: whole chunks, nearest the source's
        # blocks), so both writers run the same tasks and differ only in how they write
        aligned = src.rechunk({0: max(1, round(block / rows)) * rows})
        case = "write, cluster"
        m = self.best(lambda: src.sum().compute(scheduler=client))
        self.add(case, "generate the blocks only (src.sum(), no write: the floor)", m, "write")
        m = self.best(lambda: sg_write(src, client), self.fresh)
        self.add(case, "storegate from_dask(sg, 'x', src)", m, "write", alt="to_zarr cluster",
                 note="workers write the chunks")
        self.check_sg(arr)
        m = self.best(lambda: zarr_write(aligned, client), self.fresh)
        self.add(case, f"dask src.rechunk(...).to_zarr(path), {label}", m, "write",
                 key="to_zarr cluster", note=f"blocks of {aligned.chunks[0][0]:,} rows, as "
                 "from_dask")
        self.check_zarr(arr)

        # ---- write, threads (an in-memory array)
        case = "write, threads"
        mem = da.from_array(arr, chunks=(MEM_BLOCK, COLS))
        m = self.best(lambda: arr.copy())
        self.add(case, "numpy arr.copy() (the in-memory limit)", m, "write", key="copy")
        m = self.best(lambda: sg_write(mem, "threads"), self.fresh)
        self.add(case, "storegate from_dask(sg, 'x', da.from_array(arr))", m, "write",
                 alt="to_zarr threads")
        self.check_sg(arr)
        m = self.best(lambda: zarr_write(mem, "threads"), self.fresh)
        self.add(case, f"dask da.from_array(arr).to_zarr(path), {label}", m, "write",
                 key="to_zarr threads")
        self.check_zarr(arr)

        def add_data() -> None:
            sg = StoreGate("zarr", {"output_dir": self.sg_path}, data_id="d")
            try:
                sg.add_data("x", arr)
            finally:
                sg.close()

        m = self.best(add_data, self.fresh)
        self.add(case, "storegate sg.add_data('x', arr), one process", m, "write",
                 alt="to_zarr threads")
        self.check_sg(arr)

        # ---- read (both stores hold the same data now)
        self.fresh()
        sg_write(mem, "threads")
        zarr_write(mem, "threads")
        sg = StoreGate("zarr", {"output_dir": self.sg_path, "mode": "r"}, data_id="d")
        x = to_dask(sg, "x")
        zx = da.from_zarr(self.zarr_path)
        if x.chunks != zx.chunks:
            raise AssertionError(f"different blocks: {x.chunks[0][:2]} and {zx.chunks[0][:2]}")

        def total(fn: Callable[[], Any]) -> Callable[[], None]:
            def go() -> None:
                got = float(fn())
                if got != expected:
                    raise AssertionError(f"sum {got} != {expected}")
            return go

        case = "read (sum)"
        m = self.best(total(arr.sum))
        self.add(case, "numpy arr.sum() (the in-memory limit)", m, "read")
        m = self.best(total(lambda: x.sum().compute(scheduler=client)))
        self.add(case, "storegate to_dask(sg, 'x').sum(), cluster", m, "read",
                 alt="from_zarr cluster")
        m = self.best(total(lambda: zx.sum().compute(scheduler=client)))
        self.add(case, "dask da.from_zarr(path).sum(), cluster", m, "read",
                 key="from_zarr cluster")
        m = self.best(total(lambda: x.sum().compute(scheduler="threads")))
        self.add(case, "storegate to_dask(sg, 'x').sum(), threads", m, "read",
                 alt="from_zarr threads")
        m = self.best(total(lambda: zx.sum().compute(scheduler="threads")))
        self.add(case, "dask da.from_zarr(path).sum(), threads", m, "read",
                 key="from_zarr threads")
        m = self.best(total(lambda: sg.get_data("x").sum()))
        self.add(case, "storegate sg.get_data('x').sum(), one process", m, "read",
                 alt="zarr whole", note="chunk files read into a new array")
        sg.close()

        def zarr_whole() -> Any:
            import zarr

            return np.asarray(zarr.open_array(self.zarr_path, mode="r")[:]).sum()

        m = self.best(total(zarr_whole))
        self.add(case, "zarr-python open_array(path)[:].sum(), one process", m, "read",
                 key="zarr whole")
        self.add("start-up", f"LocalCluster({a.workers} processes) + Client", started, "",
                 note="once per run, not in the other rows")
        self.table()
        return 0

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    # ------------------------------------------------------------------ the table
    def table(self) -> None:
        a = self.args
        ref = {"write": next(r.ms for r in self.rows if r.key == "copy"),
               "read": next(r.ms for r in self.rows if r.who.startswith("numpy arr.sum"))}
        keyed = {r.key: r.ms for r in self.rows if r.key}
        setup = (f"{machine()}; {versions('dask', 'distributed', 'zarr')}. X = {self.n:,} x "
                 f"{COLS} float64 ({self.nbytes / MiB:.0f} MiB), integers drawn in blocks of "
                 f"{min(SRC_BLOCK, max(1, self.n // 8)):,} rows; local zarr stores (page "
                 f"cache), uncompressed {self.chunk_rows:,}-row (4 MiB) chunks on both sides; "
                 f"LocalCluster of {a.workers} processes x 1 thread; best of {a.repeat} runs. "
                 "x memory: time / numpy's (arr.copy() for writes, arr.sum() for reads); "
                 "x alternative: time / dask's to_zarr or from_zarr on the same scheduler "
                 "(add_data: to_zarr with threads; get_data: zarr-python whole-array read).")
        print("\n| case | implementation | time | MiB/s | x memory | x alternative |")
        print("|---|---|---:|---:|---:|---:|")
        print(f"| setup | {setup} | | | | |")
        for r in self.rows:
            base = ref.get(r.group)
            other = keyed.get(r.alt)
            rate = f"{self.nbytes / MiB / (r.ms / 1e3):,.0f}" if r.group else ""
            who = r.who + (f" ({r.note})" if r.note else "")
            print(f"| {r.case} | {who} | {fmt_ms(r.ms)} | {rate} | "
                  f"{f'{r.ms / base:,.1f}x' if base else ''} | "
                  f"{f'{r.ms / other:.2f}x' if other else ''} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=819_200, help="rows of X (32 float64 each)")
    ap.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes")
    ap.add_argument("--repeat", type=int, default=3, help="runs per case (the best is kept)")
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke run (CI)")
    ap.add_argument("--dir", default=None, help="scratch directory (default: a temp dir)")
    args = ap.parse_args(argv)
    if args.quick:
        args.rows, args.repeat = 81_920, 2
    if args.rows < 1 or args.workers < 1 or args.repeat < 1:
        ap.error("--rows, --workers and --repeat must be positive")
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.ERROR)
    scratch = Path(args.dir or tempfile.mkdtemp(prefix="storegate-bench-dask-"))
    scratch.mkdir(parents=True, exist_ok=True)
    bench = Bench(args, scratch)
    try:
        return bench.run()
    finally:
        bench.close()
        if not args.dir:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
