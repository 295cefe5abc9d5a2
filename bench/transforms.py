"""Whole-var transforms on a zarr var: storegate's streaming ``shuffle`` / ``astype`` beside
loading the var whole with numpy.

Dataset: X = N x 32 float32 (N = 1,000,000 by default, 128 MB) in a zarr store written by
storegate (uncompressed 4 MiB chunks, its default).

Cases, each timed in a fresh process (so that its peak RSS growth can be measured with
``resource.getrusage(RUSAGE_SELF).ru_maxrss`` before and after the operation) on a fresh copy of
the store, data in the page cache:

* ``shuffle``: storegate ``sg.shuffle('train', seed)`` (two passes over scratch files, then an
  atomic swap) against numpy-whole: ``zarr.open_array(...)[:]``, ``a[perm]``, and the result
  written as a new zarr array with the same chunking and no compression;
* ``astype('f8')``: storegate ``sg.astype('x', 'f8')`` (block by block, then an atomic swap)
  against numpy-whole: read the whole var, ``a.astype('f8')``, write it as a new zarr array.

A process's ru_maxrss starts at its parent's peak on Linux, so each measuring process is
started through a small launcher process; the baseline printed is the measuring process's own.

Usage::

    python bench/transforms.py               # full size (1,000,000 x 32 float32)
    python bench/transforms.py --rows 200000
    python bench/transforms.py --quick       # a smoke run for CI (seconds)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gather import machine

from storegate import StoreGate

SEED = 12345

# The measured process: imports everything first, then takes the baseline, then runs one case.
CHILD = r"""
import json, resource, sys, time
import numpy as np
import zarr
from storegate import StoreGate

impl, op, path, seed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])


def rss_kib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def numpy_whole():
    src = zarr.open_array(f"{path}/d/train/x", mode="r")
    a = src[:]  # the whole var in memory
    if op == "shuffle":
        out = a[np.random.default_rng(seed).permutation(a.shape[0])]
    else:
        out = a.astype("f8")
    del a
    rows = max(1, (4 << 20) // (out.itemsize * int(np.prod(out.shape[1:]))))
    dst = zarr.create_array(store=f"{path}/d/train/x-new", shape=out.shape,
                            chunks=(rows, *out.shape[1:]), dtype=out.dtype,
                            compressors=None, fill_value=0, overwrite=True)
    dst[:] = out


def storegate():
    sg = StoreGate("zarr", {"output_dir": path}, data_id="d")
    if op == "shuffle":
        sg.shuffle("train", seed=seed)
    else:
        sg.astype("x", "f8")
    sg.close()


before = rss_kib()
t = time.perf_counter()
(storegate if impl == "storegate" else numpy_whole)()
seconds = time.perf_counter() - t
print(json.dumps({"seconds": seconds, "before_kib": before, "after_kib": rss_kib()}))
"""

LAUNCHER = "import subprocess, sys; sys.exit(subprocess.run(sys.argv[1:]).returncode)"


def make_store(path: Path, rows: int, dim: int) -> np.ndarray:
    """Write X with storegate in 16 MB blocks; return it (to check the results)."""
    sg = StoreGate("zarr", {"output_dir": str(path)}, data_id="d")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((rows, dim), dtype="f4")
    step = max(1, (16 << 20) // (dim * 4))
    for start in range(0, rows, step):
        sg.add_data("x", x[start : start + step])
    sg.compile()
    sg.close()
    return x


def run_case(impl: str, op: str, template: Path, work: Path) -> dict[str, float]:
    path = work / f"{impl}-{op}.zarr"
    shutil.rmtree(path, ignore_errors=True)
    shutil.copytree(template, path)
    env = {**os.environ, "TMPDIR": str(work)}  # storegate's shuffle scratch goes here
    out = subprocess.run(
        [sys.executable, "-c", LAUNCHER, sys.executable, "-c", CHILD, impl, op, str(path),
         str(SEED)], capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{impl} {op} failed:\n{out.stderr}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["growth_mb"] = (res["after_kib"] - res["before_kib"]) / 1024
    res["path"] = str(path)
    return res


def check(res: dict[str, float], impl: str, op: str, x: np.ndarray) -> None:
    """The result is the expected array (storegate: the var itself; numpy: x-new)."""
    import zarr

    if impl == "storegate":
        sg = StoreGate("zarr", {"output_dir": str(res["path"]), "mode": "r"}, data_id="d")
        got = sg.get_data("x")
        sg.close()
    else:
        got = zarr.open_array(f"{res['path']}/d/train/x-new", mode="r")[:]
    want = (x[np.random.default_rng(SEED).permutation(len(x))] if op == "shuffle"
            else x.astype("f8"))
    if got.dtype != want.dtype or not np.array_equal(got, want):
        raise AssertionError(f"{impl} {op}: wrong result")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=3, help="runs per case (median time)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for CI")
    parser.add_argument("--dir", default=None, help="scratch directory (default: a temp dir)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.repeat = 20_000, 1
    base = Path(args.dir or tempfile.mkdtemp(prefix="sg-bench-transforms-"))
    base.mkdir(parents=True, exist_ok=True)
    mb = args.rows * args.dim * 4 / 1e6
    print(f"# machine: {machine()}")
    print(f"# X = {args.rows:,} x {args.dim} float32 ({mb:.0f} MB) in a zarr store; "
          f"median of {args.repeat} run(s), each in a fresh process on a fresh copy")
    try:
        template = base / "template.zarr"
        shutil.rmtree(template, ignore_errors=True)
        x = make_store(template, args.rows, args.dim)
        rows = []
        for op, label in (("shuffle", "shuffle"), ("astype", "astype('f8')")):
            results: dict[str, tuple[float, float]] = {}
            for impl in ("storegate", "numpy"):
                runs = []
                for _ in range(args.repeat):
                    res = run_case(impl, op, template, base)
                    runs.append(res)
                check(runs[-1], impl, op, x)
                results[impl] = (statistics.median(r["seconds"] for r in runs),
                                 max(r["growth_mb"] for r in runs))
                print(f"  {label:<13} {impl:<10} {results[impl][0]:8.2f} s  "
                      f"{results[impl][1]:8.0f} MB", flush=True)
                for r in runs:
                    shutil.rmtree(str(r["path"]), ignore_errors=True)
            ref_s, ref_mb = results["numpy"]
            for impl, name in (("storegate", "storegate (streaming, atomic swap)"),
                               ("numpy", "numpy-whole (zarr-python read, numpy, write)")):
                s, m = results[impl]
                rows.append(f"| {label} | {name} | {s:.2f} | {s / ref_s:.2f}x | {m:.0f} | "
                            f"{m / ref_mb:.2f}x |")
        print()
        print("| operation | implementation | seconds | x numpy-whole | peak RSS growth (MB) "
              "| x numpy-whole |")
        print("|---|---|---:|---:|---:|---:|")
        print("\n".join(rows))
    finally:
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
