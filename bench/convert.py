"""Benchmark: import a kinoml-layout NPZ file into a zarr store.

The file has kinoml's ``X_s{i}_a{j}_`` layout (``DatasetProvider.to_dict_of_arrays`` +
``np.savez``): N items x 2 arrays, float32, shapes (10..60, 16) and (32..128,), a float32 label
``y`` and ``idx_train``/``idx_val``/``idx_test`` (80/10/10 random). With the default N =
100,000 that is 200,004 members, about 308 MB.

Each way of getting the data into memory or a store runs in its own process, so its peak RSS
(``ru_maxrss`` of the child) is its own:

* storegate ``import_npz`` into a zarr store (streams members in item order, bounded memory);
* storegate's ``storegate convert`` command, the same through the CLI;
* kinoml's eager load (``MultiXTorchDataset.from_npz(lazy=False)``: ``np.load`` then
  ``dict(npz.items())``, one ``NpzFile`` lookup per key);
* reading every member with ``NpzFile[key]`` (kinoml's lazy mode touches members this way).

Afterwards every member of the source is compared with what the store returns.

Run: ``python bench/convert.py [--n 100000] [--dir DIR]`` (DIR keeps the generated file
between runs).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gather import machine


def build(path: Path, n: int, seed: int = 42) -> None:
    """Write the kinoml-layout NPZ (streamed member by member, bounded memory)."""
    import zipfile

    rng = np.random.default_rng(seed)
    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", allowZip64=True) as zf:
        def put(key: str, arr: np.ndarray) -> None:
            with zf.open(key + ".npy", "w", force_zip64=True) as fp:
                np.lib.format.write_array(fp, arr, allow_pickle=False)

        for i in range(n):
            put(f"X_s{i}_a0_", rng.standard_normal((int(rng.integers(10, 61)), 16),
                                                   dtype=np.float32))
            put(f"X_s{i}_a1_", rng.standard_normal(int(rng.integers(32, 129)),
                                                   dtype=np.float32))
        put("y", rng.standard_normal(n).astype(np.float32))
        perm = rng.permutation(n)
        a, b = int(0.8 * n), int(0.9 * n)
        put("idx_train", perm[:a])
        put("idx_test", perm[a:b])
        put("idx_val", perm[b:])
    tmp.rename(path)


_CHILD = {
    "storegate import_npz -> zarr": """
from storegate import StoreGate
from storegate.convert import import_npz
sg = StoreGate("zarr", {"output_dir": DST})
import_npz(SRC, sg, data_id="kinase")
sg.close()
""",
    "kinoml eager load (np.load + dict(items()))": """
import numpy as np
npz = np.load(SRC)
data = dict(npz.items())
""",
    "NpzFile[key] for every member": """
import numpy as np
npz = np.load(SRC)
for key in npz.files:
    npz[key]
""",
}


def child(code: str, src: str, dst: str) -> tuple[float, float]:
    """Run ``code`` in a fresh interpreter; return (seconds, its own peak RSS in MB)."""
    # VmHWM is the peak of this program's own memory map; ru_maxrss would also count the
    # pages of the (forked) benchmark process, whose peak it keeps across exec
    script = (f"SRC = {src!r}\nDST = {dst!r}\n" + code + "\nimport sys\n"
              "hwm = [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')]"
              "\nprint('MAXRSS', hwm[0], file=sys.stderr)\n")
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True,
                          text=True)
    seconds = time.perf_counter() - t0
    peak = [line.split()[1] for line in done.stderr.splitlines() if line.startswith("MAXRSS")]
    return seconds, int(peak[-1]) / 1024


def cli(src: str, dst: str) -> tuple[float, float]:
    exe = shutil.which("storegate")
    if exe is None:
        return float("nan"), float("nan")
    code = ("import sys\nsys.argv = ['storegate', 'convert', SRC, DST, '--quiet', "
            "'--data-id', 'kinase']\nfrom storegate.cli import main\nassert main() == 0")
    return child(code, src, dst)


def verify(src: str, dst: str) -> int:
    """Compare every member of the source with the store; return the members checked."""
    from storegate import StoreGate

    sg = StoreGate.open(dst, data_id="kinase")
    npz = np.load(src)
    phases = {"train": npz["idx_train"], "valid": npz["idx_val"], "test": npz["idx_test"]}
    y = npz["y"]
    checked = 3
    for ph, idx in phases.items():
        rows = np.sort(idx)  # rows keep file order inside a phase
        a0 = sg.get_data("X_a0", ph, ragged_as="list")
        a1 = sg.get_data("X_a1", ph, ragged_as="list")
        ys = sg.get_data("y", ph)
        assert np.array_equal(ys, y[rows]), ph
        for k, i in enumerate(rows):
            s0, s1 = npz[f"X_s{i}_a0_"], npz[f"X_s{i}_a1_"]
            assert a0[k].dtype == s0.dtype and np.array_equal(a0[k], s0), (ph, i)
            assert a1[k].dtype == s1.dtype and np.array_equal(a1[k], s1), (ph, i)
            checked += 2
        checked += 0
    return checked + 1  # + y


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000, help="items (2 members each)")
    ap.add_argument("--dir", default=None, help="where the NPZ is kept between runs")
    args = ap.parse_args(argv)
    work = Path(args.dir or tempfile.mkdtemp(prefix="sg-convert-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    src = work / f"kinoml_multi_{args.n}.npz"
    if not src.exists():
        t0 = time.perf_counter()
        build(src, args.n)
        print(f"built {src} in {time.perf_counter() - t0:.1f} s")
    size_mb = src.stat().st_size / 1e6
    print(f"machine: {machine()}")
    print(f"source: {src.name}, {args.n:,} items, {2 * args.n + 4:,} members, "
          f"{size_mb:.0f} MB\n")
    rows = []
    for name, code in _CHILD.items():
        dst = str(work / "store.zarr")
        shutil.rmtree(dst, ignore_errors=True)
        seconds, peak = child(code, str(src), dst)
        rows.append((name, seconds, peak))
        if name.startswith("storegate"):
            checked = verify(str(src), dst)
    dst = str(work / "cli.zarr")
    shutil.rmtree(dst, ignore_errors=True)
    seconds, peak = cli(str(src), dst)
    rows.append(("storegate convert SRC DST --quiet (CLI)", seconds, peak))
    shutil.rmtree(dst, ignore_errors=True)
    base = rows[0][1]
    print("| path | wall time | peak RSS | x storegate |")
    print("|---|---:|---:|---:|")
    for name, seconds, peak in rows:
        print(f"| {name} | {seconds:.2f} s | {peak:.0f} MB | {seconds / base:.2f}x |")
    print(f"\nverified: every one of the {checked:,} members equals the store's rows "
          "(dtype and values).")
    shutil.rmtree(work / "store.zarr", ignore_errors=True)
    if args.dir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
