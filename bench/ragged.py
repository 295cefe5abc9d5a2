"""Random gathers of a ragged var: storegate beside NPZ members, awkward and a CSR gather.

Dataset (kinoml-like, see ``/work/shared/reference/perf-baselines.md`` §6): N = 100,000 items,
item i of shape ``(n_i, 16)`` float32 with n_i uniform in 10..60 (about 224 MB of values).

Cases (each a median over many random 128-item batches, data in the page cache):

* **CSR gather in memory** (the reference): flat values + int64 offsets in RAM, one
  vectorised gather (``np.repeat`` of the row starts + ``np.take``);
* **awkward in memory**: ``ak_array[idx]`` (lazy: it only carries the index), and the same
  materialised to flat numpy (``ak.flatten`` + ``ak.num``);
* **NPZ members**, kinoml's ``MultiXTorchDataset`` layout: one ``X_s{i}_a0_`` member per item,
  ``np.load`` once, then ``npz[key]`` per item;
* **storegate** on the numpy, zarr and parquet backends:
  ``sg.get_data("x", "train", idx, ragged_as="raw")`` (a ``RaggedArray``: values + offsets) and
  the default (an ``awkward.Array``); the zarr/parquet stores are reopened read-only and the
  first batch (which fills the decoded buffers) is reported on its own line;
* **ingest**: ``add_data`` of the whole ragged var, and ``import_kinoml_parquet`` of the same
  items written the way kinoml writes them (awkward records, ``var * var * float64``) with
  ``dtype='float32'``.

Target: <= 1.5 ms per 128-item batch on zarr and parquet (``ragged_as='raw'``).

Usage::

    python bench/ragged.py                 # full size (about 3 GB RAM, 1.5 GB disk)
    python bench/ragged.py --rows 20000    # smaller
    python bench/ragged.py --quick         # a smoke run for CI (seconds)
"""

from __future__ import annotations

import argparse
import gc
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gather import machine  # bench/ is on sys.path when run as a script

from storegate import StoreGate
from storegate.ragged import RaggedArray

BATCH = 128
TARGET_MS = 1.5


def median_ms(fn: Callable[[np.ndarray], object], batches: list[np.ndarray],
              budget_s: float = 20.0) -> tuple[float, int]:
    """Median time (ms) of ``fn(idx)`` over the batches (after 3 untimed warm-up calls), and
    how many ran: stops early (after at least 5) once ``budget_s`` seconds are spent, so a slow
    case cannot stall the run."""
    for idx in batches[:3]:  # warm-up: allocator, caches, lazy imports
        fn(idx)
    times: list[float] = []
    start = time.perf_counter()
    for idx in batches:
        t = time.perf_counter()
        fn(idx)
        times.append(time.perf_counter() - t)
        if len(times) >= 5 and time.perf_counter() - start > budget_s:
            break
    return statistics.median(times) * 1e3, len(times)


def csr_take(values: np.ndarray, offsets: np.ndarray,
             idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``idx`` of a CSR ragged array as (values, offsets): one vectorised gather."""
    starts = offsets[idx]
    lengths = offsets[idx + 1] - starts
    out_off = np.zeros(idx.shape[0] + 1, dtype=np.int64)
    np.cumsum(lengths, out=out_off[1:])
    pos = np.repeat(starts - out_off[:-1], lengths) + np.arange(out_off[-1], dtype=np.int64)
    return np.take(values, pos, axis=0), out_off


def make_data(n: int, seed: int = 0) -> RaggedArray:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(10, 61, n)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    values = rng.standard_normal((int(offsets[-1]), 16), dtype=np.float32)
    return RaggedArray(values, offsets)


def write_kinoml_parquet(path: Path, data: RaggedArray, y: np.ndarray) -> None:
    """The items as kinoml writes them: ``ak.zip([X, y], depth_limit=1)`` of a
    ``var * var * float64`` feature (built with ``ak.unflatten``: the same type as
    kinoml's ``ak.from_iter``, without its Python loop) and a float32 label."""
    import awkward as ak

    flat = ak.from_numpy(data.values.astype(np.float64).reshape(-1))
    inner = ak.unflatten(flat, np.full(data.values.shape[0], 16, dtype=np.int64))
    X = ak.unflatten(inner, data.lengths())
    ak.to_parquet(ak.zip([X, ak.from_numpy(y)], depth_limit=1), str(path))


def parquet_available() -> str | None:
    """None if the parquet backend can be used, else why not."""
    try:
        from storegate.backends import get_backend

        get_backend("parquet")
        import pyarrow  # noqa: F401
    except Exception as err:  # any import problem: report it and skip the backend
        return f"{type(err).__name__}: {err}"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batches", type=int, default=500, help="random batches to time")
    parser.add_argument("--npz-batches", type=int, default=40,
                        help="batches for the (slow) NPZ per-key case")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for CI")
    parser.add_argument("--no-import", action="store_true",
                        help="skip writing and importing the kinoml Parquet file")
    parser.add_argument("--dir", default=None, help="scratch directory (default: a temp dir)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.batches, args.npz_batches = 5_000, 30, 5

    import awkward as ak

    n = args.rows
    scratch = Path(args.dir or tempfile.mkdtemp(prefix="storegate-ragged-"))
    scratch.mkdir(parents=True, exist_ok=True)
    data = make_data(n)
    values, offsets = data.values, data.offsets
    rng = np.random.default_rng(1)
    batches = [rng.choice(n, BATCH, replace=False) for _ in range(args.batches)]
    rows: list[tuple[str, str, float, str]] = []

    def add(case: str, who: str, ms: float, note: str = "") -> None:
        rows.append((case, who, ms, note))
        print(f"  {case:<14} {who:<52} {ms:10.3f} ms  {note}", flush=True)

    def gather(who: str, fn: Callable[[np.ndarray], object],
               use: list[np.ndarray] | None = None) -> float:
        use = batches if use is None else use
        ms, count = median_ms(fn, use)
        add("random batch", who, ms, "" if count == len(batches) else f"median of {count}")
        return ms

    print(f"# machine: {machine()}")
    print(f"# ragged var: {n:,} items of (10..60, 16) float32, {values.nbytes / 1e6:.0f} MB of "
          f"values; batches of {BATCH} random items")

    # ---------------------------------------------------------------- in memory
    gather("CSR gather in memory (values + offsets)", lambda i: csr_take(values, offsets, i))
    ak_array = data.to_awkward()
    gather("awkward in memory, ak_array[idx]", lambda i: ak_array[i])
    gather("awkward in memory, ak_array[idx] -> flat numpy",
           lambda i: (ak.to_numpy(ak.flatten(ak_array[i], axis=1)),
                      ak.to_numpy(ak.num(ak_array[i], axis=1))))
    sg_np = StoreGate("numpy", data_id="bench")
    sg_np.add_data("x", data)
    sg_np.compile()
    gather("storegate numpy, ragged_as='raw'",
           lambda i: sg_np.get_data("x", "train", i, ragged_as="raw"))
    gather("storegate numpy, awkward (default)", lambda i: sg_np.get_data("x", "train", i))
    sg_np.clear_data()

    # ---------------------------------------------------------------- NPZ, kinoml's way
    npz_path = scratch / "multi_diff.npz"
    members: dict[str, Any] = {f"X_s{i}_a0_": values[offsets[i]:offsets[i + 1]]
                               for i in range(n)}
    t0 = time.perf_counter()
    np.savez(npz_path, **members)
    add("ingest", "np.savez, one member per item", (time.perf_counter() - t0) * 1e3)
    members.clear()
    t0 = time.perf_counter()
    npz = np.load(npz_path, allow_pickle=False)
    add("open", "np.load (parses the zip directory)", (time.perf_counter() - t0) * 1e3)
    gather("NPZ per-key reads, npz[f'X_s{i}_a0_']",
           lambda idx: [npz[f"X_s{i}_a0_"] for i in idx], batches[: args.npz_batches])
    npz.close()

    # ---------------------------------------------------------------- storegate on disk
    stores: list[tuple[str, dict[str, Any]]] = [
        ("zarr", {"output_dir": str(scratch / "ragged.zarr")})]
    why = parquet_available()
    if why is None:
        stores.append(("parquet", {"output_dir": str(scratch / "ragged.parquet")}))
    else:
        print(f"# NOTE: the parquet backend is not importable ({why}); skipping it.")
    def run_store(backend: str, bargs: dict[str, Any], read_args: dict[str, Any] | None = None,
                  label: str = "") -> None:
        if read_args is None:  # write the store (else: read the one written before)
            shutil.rmtree(bargs["output_dir"], ignore_errors=True)
            writer = StoreGate(backend, {**bargs, "mode": "a"}, data_id="bench")
            t0 = time.perf_counter()
            writer.add_data("x", data)
            writer.compile()
            writer.close()
            t_in = time.perf_counter() - t0
            add("ingest", f"storegate {backend} add_data(ragged) + compile", t_in * 1e3,
                f"{values.nbytes / t_in / 1e9:.2f} GB/s")
            del writer
            gc.collect()
        who = f"storegate {backend}{label}"
        sg = StoreGate(backend, {**bargs, **(read_args or {}), "mode": "r"}, data_id="bench")
        t0 = time.perf_counter()
        sg.get_data("x", "train", batches[0], ragged_as="raw")
        add("random batch", f"{who}, first batch after open",
            (time.perf_counter() - t0) * 1e3, "fills the decoded buffers")
        gather(f"{who}, ragged_as='raw'", lambda i: sg.get_data("x", "train", i, ragged_as="raw"))
        gather(f"{who}, awkward (default)", lambda i: sg.get_data("x", "train", i))
        # correctness of what was timed
        got = sg.get_data("x", "train", batches[1], ragged_as="raw")
        want = csr_take(values, offsets, batches[1])
        assert np.array_equal(got.values, want[0]) and np.array_equal(got.offsets, want[1])
        sg.close()

    for backend, bargs in stores:
        run_store(backend, bargs)
        gc.collect()
        if backend == "parquet":
            # ragged vars have no arena on parquet; a row-group cache that holds the whole var
            # shows what serving them from decoded memory gives
            run_store(backend, bargs, {"rowgroup_cache_bytes": 2 * values.nbytes + 2**26},
                      ", rowgroup_cache_bytes=2x var")
            gc.collect()

    # ---------------------------------------------------------------- kinoml import
    if not args.no_import:
        from storegate.convert import import_kinoml_parquet

        kpath = scratch / "kinoml.parquet"
        y = np.random.default_rng(2).standard_normal(n).astype(np.float32)
        write_kinoml_parquet(kpath, data, y)
        zpath = scratch / "imported.zarr"
        shutil.rmtree(zpath, ignore_errors=True)
        imp = StoreGate("zarr", {"output_dir": str(zpath)})
        t0 = time.perf_counter()
        import_kinoml_parquet(kpath, imp, data_id="kinoml", dtype="float32")
        imp.close()
        t_imp = time.perf_counter() - t0
        size = kpath.stat().st_size
        add("ingest", "import_kinoml_parquet -> zarr (float64 -> float32)", t_imp * 1e3,
            f"{size / 1e6:.0f} MB zstd file, {n / t_imp / 1e3:.0f} k items/s")
        imp = StoreGate("zarr", {"output_dir": str(zpath), "mode": "r"}, data_id="kinoml")
        got = imp.get_data("X_a0", "train", batches[1], ragged_as="raw")
        want = csr_take(values, offsets, batches[1])
        assert np.array_equal(got.values, want[0]) and np.array_equal(got.offsets, want[1])
        imp.close()

    # ---------------------------------------------------------------- table
    ref = next(ms for case, who, ms, _ in rows if who.startswith("CSR gather"))
    print("\n| case | implementation | median | per item | x CSR |")
    print("|---|---|---:|---:|---:|")
    for case, who, ms, note in rows:
        label = f"{who} ({note})" if note else who
        if case == "random batch":
            print(f"| {case} | {label} | {ms:.3f} ms | {ms * 1e3 / BATCH:.1f} us | "
                  f"{ms / ref:.2f}x |")
        else:
            unit = f"{ms:.1f} ms" if ms < 1000 else f"{ms / 1e3:.2f} s"
            print(f"| {case} | {label} | {unit} | | |")
    print()
    for backend, _ in stores:
        ms = next(m for c, w, m, _ in rows if w == f"storegate {backend}, ragged_as='raw'")
        verdict = "met" if ms <= TARGET_MS else "NOT met"
        print(f"target <= {TARGET_MS} ms per {BATCH}-item batch, {backend}: {ms:.3f} ms "
              f"({verdict})")
    if not args.dir:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
