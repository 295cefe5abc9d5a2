"""Random gathers, sequential scans and appends: storegate beside raw numpy and zarr-python.

Dataset (DESIGN §7): X = N x 128 float32 (N = 2,000,000 by default, 1 GB) plus int64 labels y.

Cases
-----
* random batch: 1,024 unique random rows of X and y;
* sequential scan: the whole phase in 1,024-row batches;
* appends: 1,000 appends of 1,000 rows of X (520 MB), against writing the same bytes to a raw
  file, to numpy (list + concatenate) and to zarr-python (resize + write per batch).

Every figure is a median over repetitions; ratios are to raw numpy in memory measured in the
same run (the machine is shared and noisy, so compare ratios, not absolute times).

Usage::

    python bench/gather.py                 # full size (needs ~4 GB RAM, ~3 GB disk)
    python bench/gather.py --rows 200000   # smaller
    python bench/gather.py --quick         # a smoke run for CI (seconds)
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine, median_ms, timed, zarr_python_arrays
from storegate import StoreGate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--batches", type=int, default=200, help="random batches to time")
    parser.add_argument("--appends", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for CI")
    parser.add_argument("--dir", default=None, help="scratch directory (default: a temp dir)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.batches, args.appends = 50_000, 20, 20

    import zarr

    n, dim, bs = args.rows, 128, 1024
    scratch = Path(args.dir or tempfile.mkdtemp(prefix="storegate-bench-"))
    scratch.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, dim), dtype=np.float32)
    y = rng.integers(0, 10, n).astype(np.int64)
    batches = [rng.choice(n, bs, replace=False) for _ in range(args.batches)]
    rows: list[tuple[str, str, float, str]] = []

    def add(case: str, who: str, ms: float, note: str = "") -> None:
        rows.append((case, who, ms, note))
        print(f"  {case:<16} {who:<34} {ms:10.3f} ms  {note}", flush=True)

    print(f"# machine: {machine()}\n# X = {n:,} x {dim} float32 + int64 y; batch {bs}")

    # ---------------------------------------------------------------- random gathers
    add("random batch", "raw numpy X[idx], y[idx]", median_ms(lambda i: (X[i], y[i]), batches))

    sg_np = StoreGate("numpy", data_id="bench")
    sg_np.add_data("x", X)
    sg_np.add_data("y", y)
    sg_np.compile()
    add("random batch", "storegate numpy get_data([x, y])",
        median_ms(lambda i: sg_np.get_data(["x", "y"], "train", i), batches))
    add("random batch", "storegate numpy sg['train']['x'][i]",
        median_ms(lambda i: (sg_np["train"]["x"][i], sg_np["train"]["y"][i]), batches))

    zdir = scratch / "storegate.zarr"
    shutil.rmtree(zdir, ignore_errors=True)
    sg_z = StoreGate("zarr", {"output_dir": str(zdir), "mode": "w"}, data_id="bench")
    t_ingest = timed(lambda: (sg_z.add_data("x", X), sg_z.add_data("y", y), sg_z.compile()))
    add("ingest", "storegate zarr add_data x, y", t_ingest * 1e3,
        f"{X.nbytes / t_ingest / 1e9:.2f} GB/s")
    sg_z.close()
    sg_z = StoreGate("zarr", {"output_dir": str(zdir), "mode": "r"}, data_id="bench")
    first = timed(lambda: sg_z.get_data(["x", "y"], "train", batches[0]))
    add("random batch", "storegate zarr, first touch", first * 1e3,
        "fills the decoded arena (once per process)")
    add("random batch", "storegate zarr get_data([x, y])",
        median_ms(lambda i: sg_z.get_data(["x", "y"], "train", i), batches))

    from storegate import list_backends

    if "hdf5" in list_backends():  # the plugin: pip install ./backends/storegate-hdf5
        import h5py

        h5 = scratch / "storegate.h5"
        h5.unlink(missing_ok=True)
        sg_h = StoreGate("hdf5", {"path": str(h5), "mode": "w"}, data_id="bench")
        t_h = timed(lambda: (sg_h.add_data("x", X), sg_h.add_data("y", y), sg_h.compile()))
        add("ingest", "storegate hdf5 (plugin) add_data x, y", t_h * 1e3,
            f"{X.nbytes / t_h / 1e9:.2f} GB/s")
        sg_h.close()
        sg_h = StoreGate("hdf5", {"path": str(h5), "mode": "r"}, data_id="bench")
        first = timed(lambda: sg_h.get_data(["x", "y"], "train", batches[0]))
        add("random batch", "storegate hdf5 (plugin), first touch", first * 1e3,
            "fills the decoded arena (once per process)")
        add("random batch", "storegate hdf5 (plugin) get_data([x, y])",
            median_ms(lambda i: sg_h.get_data(["x", "y"], "train", i), batches))
        with h5py.File(scratch / "h5py.h5", "w") as f:
            f.create_dataset("x", data=X, chunks=(min(n, 8192), dim))
            f.create_dataset("y", data=y, chunks=(min(n, 65536),))
        hf = h5py.File(scratch / "h5py.h5", "r")
        hx, hy = hf["x"], hf["y"]
        few_h = batches[: max(3, min(20, len(batches)))]
        add("random batch", "h5py fancy indexing (sorted), same chunks",
            median_ms(lambda i: (hx[np.sort(i)], hy[np.sort(i)]), few_h),
            f"median of {len(few_h)}")
        hf.close()

    zx, zy = zarr_python_arrays(scratch / "zarr-python.zarr", X, y)
    few = batches[: max(3, min(10, len(batches)))]
    add("random batch", "zarr-python oindex, same chunks",
        median_ms(lambda i: (zx.oindex[np.sort(i)], zy.oindex[np.sort(i)]), few),
        f"median of {len(few)}")
    zd = scratch / "zarr-default.zarr"
    shutil.rmtree(zd, ignore_errors=True)
    zdx = zarr.create_array(str(zd / "x"), shape=X.shape, chunks=(1024, dim), dtype="f4")
    zdx[:] = X
    add("random batch", "zarr-python oindex, 1024-row zstd", median_ms(
        lambda i: zdx.oindex[np.sort(i)], few[:3]), "X only, median of 3")

    # ---------------------------------------------------------------- sequential scan
    def scan(read: Callable[[int, int], object]) -> float:
        # the better of two whole epochs: on this VM the first epoch of any loop that allocates
        # 0.5 MB arrays pays page faults until the allocator settles (up to 20x slower)
        return min(timed(lambda: [read(a, min(n, a + bs)) for a in range(0, n, bs)])
                   for _ in range(2)) * 1e3

    add("scan", "raw numpy (copy out)", scan(lambda a, b: (X[a:b].copy(), y[a:b].copy())))
    npy = scratch / "x.npy"
    np.save(npy, X)
    mm = np.load(npy, mmap_mode="r")
    add("scan", "raw .npy memory map", scan(lambda a, b: np.array(mm[a:b])))
    add("scan", "storegate numpy", scan(
        lambda a, b: sg_np.get_data(["x", "y"], "train", (a, b))))
    sg_fresh = StoreGate("zarr", {"output_dir": str(zdir), "mode": "r"}, data_id="bench")
    add("scan", "storegate zarr, freshly opened", timed(lambda: [
        sg_fresh.get_data(["x", "y"], "train", (a, min(n, a + bs))) for a in range(0, n, bs)
    ]) * 1e3, "includes reading every chunk file once")
    add("scan", "storegate zarr, second epoch", scan(
        lambda a, b: sg_fresh.get_data(["x", "y"], "train", (a, b))))
    add("scan", "zarr-python, same chunks", scan(lambda a, b: (zx[a:b], zy[a:b])))

    # ---------------------------------------------------------------- appends
    m = args.appends
    block = X[:1000] if n >= 1000 else X
    raw_path = scratch / "raw.bin"

    def raw_append() -> None:  # like the stores below: into the page cache, no fsync
        with open(raw_path, "wb") as f:
            for _ in range(m):
                f.write(block.tobytes())

    raw_append()  # warm-up (file creation, allocator)
    t_raw = timed(raw_append)
    add("1000 appends", "raw file write", t_raw * 1e3)
    np.concatenate([block.copy() for _ in range(m)])  # warm-up
    t_list = timed(lambda: np.concatenate([block.copy() for _ in range(m)]))
    add("1000 appends", "numpy list + concatenate", t_list * 1e3)

    def sg_append(backend: str, args_: dict[str, object]) -> float:
        sg = StoreGate(backend, args_, data_id="app")

        def run() -> None:
            for _ in range(m):
                sg.add_data("x", block)
            sg.compile()
            sg.close()

        return timed(run)

    add("1000 appends", "storegate numpy", sg_append("numpy", {}) * 1e3)
    shutil.rmtree(scratch / "app.zarr", ignore_errors=True)
    t_sgz = sg_append("zarr", {"output_dir": str(scratch / "app.zarr")})
    add("1000 appends", "storegate zarr", t_sgz * 1e3, f"{t_sgz / t_raw:.2f}x raw file")
    shutil.rmtree(scratch / "app-zp.zarr", ignore_errors=True)
    za = zarr.create_array(str(scratch / "app-zp.zarr"), shape=(0, dim), chunks=(8192, dim),
                           dtype="f4", compressors=None)
    zp_m = min(m, 200)

    def zp_append() -> None:
        for _ in range(zp_m):
            za.append(block)

    t_zp = timed(zp_append) * m / zp_m
    add("1000 appends", "zarr-python Array.append", t_zp * 1e3,
        f"extrapolated from {zp_m}" if zp_m < m else "")

    # ---------------------------------------------------------------- table
    # the reference of each case: in-memory numpy for gathers and scans, a raw file for appends
    ref_names = {"random batch": "raw numpy X[idx], y[idx]", "scan": "raw numpy (copy out)",
                 "1000 appends": "raw file write"}
    ref = {case: ms for case, who, ms, _ in rows if ref_names.get(case) == who}
    print("\n| case | implementation | median | x reference |")
    print("|---|---|---:|---:|")
    for case, who, ms, note in rows:
        base = ref.get(case)
        ratio = f"{ms / base:.2f}x" if base else ""
        unit = f"{ms:.3f} ms" if ms < 100 else f"{ms / 1e3:.2f} s"
        print(f"| {case} | {who}{' (' + note + ')' if note else ''} | {unit} | {ratio} |")
    if not args.dir:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
