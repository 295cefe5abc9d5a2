"""The performance suite of issue "Performance to the physical limit": every target, one run.

Dataset (DESIGN §7): X = N x 128 float32 (N = 2,000,000, 1 GB) plus int64 labels y; batches of
1,024 random rows. Each case is measured beside the in-memory limit (raw numpy), the physical
limits of this machine measured in the same run (disk sequential bandwidth, 1,024 random 4 KiB
reads with 32 in flight), and the libraries a user would otherwise use (a ``.npy`` memory
map, h5py, zarr-python, pyarrow, an NPZ read key by key).

"Cold" means this dataset's pages were evicted from the page cache (``fsync`` +
``posix_fadvise(DONTNEED)`` on its files) before every repetition.
"""

from __future__ import annotations

import gc
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import evict, median_ms, read_bytes, timed, zarr_python_arrays

DIM = 128
BATCH = 1024


@dataclass
class Row:
    """One measurement: ``case`` (what), ``who`` (implementation), milliseconds, and the
    ``who`` of the row it is compared with (same case)."""

    case: str
    who: str
    ms: float
    ref: str | None = None
    note: str = ""


@dataclass
class Target:
    """A target of the issue and what this run measured."""

    text: str
    measured: str
    value: float
    limit: float
    higher_is_better: bool = False
    reason: str = ""

    @property
    def met(self) -> bool:
        return self.value >= self.limit if self.higher_is_better else self.value <= self.limit


@dataclass
class Results:
    rows: list[Row] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    # plot: implementation -> {batch size: ms}
    curves: dict[str, dict[int, float]] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)

    def add(self, case: str, who: str, ms: float, ref: str | None = None, note: str = "") -> float:
        self.rows.append(Row(case, who, ms, ref, note))
        base = self.get(case, ref) if ref else None
        ratio = f"{ms / base:8.2f}x" if base else " " * 9
        print(f"  {case:<34} {who:<52} {ms:11.3f} ms {ratio}  {note}", flush=True)
        return ms

    def get(self, case: str, who: str | None) -> float | None:
        for r in self.rows:
            if r.case == case and r.who == who:
                return r.ms
        return None

    def ratio(self, case: str, who: str) -> float:
        for r in self.rows:
            if r.case == case and r.who == who:
                base = self.get(case, r.ref)
                return r.ms / base if base else float("nan")
        return float("nan")


# ---------------------------------------------------------------------- helpers
def _wait_arenas(sg: Any, timeout: float = 120.0) -> None:
    """Wait until the background fills of a store's arenas are done (bench only)."""
    db = getattr(sg, "db", None)
    backends = [db, getattr(db, "_disk", None)]
    end = time.time() + timeout
    for be in backends:
        cache = getattr(be, "_cache", None)
        if cache is None:
            continue
        for _, arena in cache.items():
            thread = getattr(arena, "_background", None)
            if thread is not None:
                thread.join(max(0.0, end - time.time()))


def _pread_pool(reads: list[tuple[int, int]], size: int, pool: ThreadPoolExecutor,
                threads: int) -> None:
    """Read ``size`` bytes at each (descriptor, offset) with ``threads`` reads in flight."""
    mv = memoryview(bytearray(size * len(reads)))

    def work(k: int) -> None:
        for j in range(k, len(reads), threads):
            os.preadv(reads[j][0], [mv[j * size:(j + 1) * size]], reads[j][1])

    list(pool.map(work, range(threads)))


def _sequential_read(path: str, block: int = 8 << 20) -> float:
    """Seconds to read a whole file in ``block``-byte reads into one reused buffer."""
    buf = bytearray(block)
    mv = memoryview(buf)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        t = time.perf_counter()
        while os.readv(fd, [mv]) > 0:
            pass
        return time.perf_counter() - t
    finally:
        os.close(fd)


def _interleaved(cases: dict[str, Callable[[np.ndarray], object]], batches: list[np.ndarray],
                 rounds: int = 10) -> dict[str, float]:
    """Median milliseconds per case, the cases taking turns over ``rounds`` slices of the
    batches (each case sees every batch once, after one untimed batch per turn)."""
    times: dict[str, list[float]] = {k: [] for k in cases}
    rounds = max(1, min(rounds, len(batches)))
    for r in range(rounds):
        part = batches[r::rounds]
        for name, fn in cases.items():
            fn(part[-1])  # untimed: the first batch after another case pays for its caches
            for idx in part:
                t = time.perf_counter()
                fn(idx)
                times[name].append(time.perf_counter() - t)
    return {k: statistics.median(v) * 1e3 for k, v in times.items()}


def _subprocess_seconds(code: str, repeat: int = 5) -> float:
    """Median of the seconds a snippet prints when run in a fresh interpreter."""
    times = []
    for _ in range(repeat):
        out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                             text=True, cwd=Path(__file__).resolve().parents[1])
        times.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(times)


# ---------------------------------------------------------------------- the suite
def run(scratch: Path, rows: int, reps: int, quick: bool) -> Results:
    """Run every case; ``scratch`` holds the files (several GB at full size)."""
    from storegate import StoreGate, list_backends

    res = Results()
    n = rows
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, DIM), dtype=np.float32)
    y = rng.integers(0, 10, n).astype(np.int64)
    batches = [rng.choice(n, BATCH, replace=False) for _ in range(reps)]
    few = batches[: max(3, reps // 20)]
    sizes = [64, 256, 1024, 4096]
    size_batches = {s: [rng.choice(n, s, replace=False) for _ in range(max(5, reps // 4))]
                    for s in sizes}
    size_few = {s: b[:3] for s, b in size_batches.items()}
    res.facts.update(rows=n, dim=DIM, batch=BATCH, reps=reps,
                     x_bytes=X.nbytes, y_bytes=y.nbytes)
    print(f"# X = {n:,} x {DIM} float32 ({X.nbytes / 1e9:.2f} GB) + int64 y; batch {BATCH}; "
          f"{reps} repetitions", flush=True)

    def curve(who: str, fn: Callable[[np.ndarray], object]) -> None:
        for s in sizes:
            res.curves[who] = {**res.curves.get(who, {}), s: median_ms(fn, size_few[s])}

    # ------------------------------------------------------------------ limits
    G = "random gather, warm"
    C = "random gather, cold"
    ref = "raw numpy X[idx], y[idx] (in-memory limit)"
    npy = scratch / "x.npy"
    np.save(npy, X)
    np.save(scratch / "y.npy", y)
    evict(npy)
    seq = [_sequential_read(str(npy)) for _ in range(1)]
    evict(npy)
    seq.append(_sequential_read(str(npy)))
    disk_gbs = X.nbytes / min(seq) / 1e9
    res.facts["disk_gbs"] = disk_gbs
    res.add("physical limits", "disk, sequential 8 MiB reads (GB/s)", disk_gbs,
            note="evicted .npy of X read whole")
    data_start = 128  # .npy header
    floor: list[float] = []
    floor2: list[float] = []
    fd = os.open(npy, os.O_RDONLY)
    yfd = os.open(scratch / "y.npy", os.O_RDONLY)
    for f in (fd, yfd):
        os.posix_fadvise(f, 0, 0, os.POSIX_FADV_RANDOM)

    def pages(f: int, idx: np.ndarray, row: int) -> list[tuple[int, int]]:
        return [(f, o - o % 4096) for o in (data_start + np.sort(idx) * row).tolist()]

    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda k: k, range(64)))  # start the threads
        for idx in batches[:max(5, reps // 10)]:
            xs, ys = pages(fd, idx, DIM * 4), pages(yfd, idx, 8)
            evict(npy)
            floor.append(timed(lambda xs=xs: _pread_pool(xs, 4096, pool, 32)))
            evict(npy, scratch / "y.npy")
            floor2.append(timed(lambda xs=xs, ys=ys: _pread_pool(xs + ys, 4096, pool, 32)))
    os.close(fd)
    os.close(yfd)
    floor_ms = statistics.median(floor) * 1e3
    res.facts["floor_ms"] = floor_ms
    res.add(C, "physical floor: 1,024 random 4 KiB reads, 32 in flight", floor_ms)
    res.add(C, "physical floor: 2,048 random 4 KiB reads (X and y), 32 in flight",
            statistics.median(floor2) * 1e3)

    # ------------------------------------------------------------------ stores
    sg_np = StoreGate("numpy", data_id="bench")
    sg_np.add_data("x", X)
    sg_np.add_data("y", y)
    sg_np.compile()

    zdir = scratch / "storegate.zarr"
    shutil.rmtree(zdir, ignore_errors=True)
    sg_w = StoreGate("zarr", {"output_dir": str(zdir), "mode": "w"}, data_id="bench")
    t_ingest = timed(lambda: (sg_w.add_data("x", X), sg_w.add_data("y", y), sg_w.compile()))
    sg_w.close()
    res.add("ingest (x and y)", "storegate zarr add_data + compile", t_ingest * 1e3,
            note=f"{(X.nbytes + y.nbytes) / t_ingest / 1e9:.2f} GB/s")
    sg_z = StoreGate("zarr", {"output_dir": str(zdir), "mode": "r"}, data_id="bench")
    res.add("first batch, warm page cache", "storegate zarr (fresh open)",
            timed(lambda: sg_z.get_data(["x", "y"], "train", batches[0])) * 1e3,
            note="the pages are cached, so the arenas are filled at once (a copy of 1 GB "
                 "into fresh memory)")
    _wait_arenas(sg_z)

    def opened(backend: str, args: dict[str, Any]) -> Any:
        sg = StoreGate(backend, args, data_id="bench")
        sg.add_data("x", X)
        sg.add_data("y", y)
        sg.compile()
        sg.get_data(["x", "y"], "train", batches[0])  # first touch
        _wait_arenas(sg)
        return sg

    shutil.rmtree(scratch / "storegate-hybrid.zarr", ignore_errors=True)
    shutil.rmtree(scratch / "storegate.parquet", ignore_errors=True)
    others = {
        "storegate hybrid (storage tier)": opened(
            "hybrid", {"output_dir": str(scratch / "storegate-hybrid.zarr")}),
        "storegate parquet": opened("parquet", {"output_dir": str(scratch / "storegate.parquet")}),
    }
    if "hdf5" in list_backends():
        (scratch / "storegate.h5").unlink(missing_ok=True)
        others["storegate hdf5 (plugin)"] = opened(
            "hdf5", {"path": str(scratch / "storegate.h5"), "mode": "w"})
    mm = np.load(npy, mmap_mode="r")
    ym = np.load(scratch / "y.npy", mmap_mode="r")
    np.asarray(mm).sum()  # map every page once: a long-lived mapping

    # ------------------------------------------------------------------ warm gathers
    # the implementations that run at memory speed are timed in interleaved rounds, so drift
    # on this shared machine hits all of them alike
    X2, y2 = X.copy(), y.copy()  # the same data in other memory: how much placement matters
    # raw numpy on the very buffers a backend serves from: the same pages, so the ratio is the
    # cost of the API alone (random gathers over 1 GB depend on where the pages are: huge
    # pages or not, how they are spread; two copies of X differ by up to 2x on this VM)
    nx = sg_np.db._column("bench", "train", "x").view
    ny = sg_np.db._column("bench", "train", "y").view
    zx = sg_z.db._cache.get(("bench", "train", "x")).buf
    zy = sg_z.db._cache.get(("bench", "train", "y")).buf
    hyb = others["storegate hybrid (storage tier)"].db._disk._cache
    hx, hy = hyb.get(("bench", "train", "x")).buf, hyb.get(("bench", "train", "y")).buf
    fast: dict[str, tuple[str, Callable[[np.ndarray], object]]] = {
        ref: ("raw numpy", lambda i: (X[i], y[i])),
        "raw numpy on a copy of X and y (other pages)": ("", lambda i: (X2[i], y2[i])),
        "raw numpy np.take(X, idx, axis=0), same for y": (
            "", lambda i: (np.take(X, i, axis=0), np.take(y, i))),
        ".npy memory map (long-lived)": (".npy memory map", lambda i: (mm[i], ym[i])),
        "raw numpy on the numpy backend's arrays": ("", lambda i: (nx[i], ny[i])),
        "raw numpy on the zarr backend's arenas": ("", lambda i: (zx[i], zy[i])),
        "raw numpy on the hybrid backend's arenas": ("", lambda i: (hx[i], hy[i])),
        "storegate numpy get_data([x, y])": (
            "storegate numpy", lambda i: sg_np.get_data(["x", "y"], "train", i)),
        "storegate numpy sg['train'][['x', 'y']][idx]": (
            "", lambda i: sg_np["train"][["x", "y"]][i]),
        "storegate zarr get_data([x, y])": (
            "storegate zarr", lambda i: sg_z.get_data(["x", "y"], "train", i)),
    }
    for label, sg_o in others.items():
        fast[f"{label} get_data([x, y])"] = (
            label, lambda i, sg_o=sg_o: sg_o.get_data(["x", "y"], "train", i))
    medians = _interleaved({k: fn for k, (_, fn) in fast.items()}, batches)
    same_pages = {"storegate numpy get_data([x, y])": "raw numpy on the numpy backend's arrays",
                  "storegate numpy sg['train'][['x', 'y']][idx]":
                      "raw numpy on the numpy backend's arrays",
                  "storegate zarr get_data([x, y])": "raw numpy on the zarr backend's arenas",
                  "storegate hybrid (storage tier) get_data([x, y])":
                      "raw numpy on the hybrid backend's arenas"}
    for who, ms in medians.items():
        res.add(G, who, ms, None if who == ref else ref)
    for who, base in same_pages.items():
        res.add("random gather, warm, same pages", who, medians[who] / medians[base],
                note=f"ratio to {base}")
    for s in sizes:
        for who, ms in _interleaved({k: fn for k, (c, fn) in fast.items() if c},
                                    size_batches[s]).items():
            res.curves.setdefault(fast[who][0], {})[s] = ms
    for sg_o in others.values():
        sg_o.close()
    others.clear()
    fast.clear()
    X2 = y2 = nx = ny = zx = zy = hx = hy = hyb = None
    gc.collect()

    import h5py

    hfile = scratch / "h5py.h5"
    with h5py.File(hfile, "w") as f:
        f.create_dataset("x", data=X, chunks=(min(n, 8192), DIM))
        f.create_dataset("y", data=y, chunks=(min(n, 65536),))
    hf = h5py.File(hfile, "r")
    hx, hy = hf["x"], hf["y"]

    def h5_take(i: np.ndarray) -> object:
        s = np.sort(i)
        return hx[s], hy[s]

    res.add(G, "h5py fancy indexing (sorted), chunks of 8,192 rows",
            median_ms(h5_take, few), ref, note=f"median of {len(few)}")
    curve("h5py", h5_take)

    import zarr

    zx, zy = zarr_python_arrays(scratch / "zarr-python.zarr", X, y)

    def zp_take(i: np.ndarray) -> object:
        s = np.sort(i)
        return zx.oindex[s], zy.oindex[s]

    res.add(G, "zarr-python oindex, same chunks (uncompressed)", median_ms(zp_take, few[:3]),
            ref, note="median of 3")
    curve("zarr-python", zp_take)
    zd = scratch / "zarr-default.zarr"
    shutil.rmtree(zd, ignore_errors=True)
    zdx = zarr.create_array(str(zd / "x"), shape=X.shape, chunks=(1024, DIM), dtype="f4")
    zdx[:] = X
    res.add(G, "zarr-python oindex, 1,024-row chunks, zarr's default zstd",
            median_ms(lambda i: (zdx.oindex[np.sort(i)], zy.oindex[np.sort(i)]), few[:3]), ref,
            note="median of 3")

    import pyarrow as pa
    import pyarrow.dataset as pds
    import pyarrow.parquet as pq

    pa_path = scratch / "pyarrow.parquet"
    flat = pa.array(X.reshape(-1))
    table = pa.table({"x": pa.FixedSizeListArray.from_arrays(flat, DIM), "y": pa.array(y)})
    pq.write_table(table, pa_path, row_group_size=65536, compression="none")
    del table, flat
    pds_x = pds.dataset(str(pa_path))

    def pa_take(i: np.ndarray) -> object:
        t = pds_x.take(pa.array(np.sort(i)))
        return (t.column("x").combine_chunks().flatten().to_numpy().reshape(-1, DIM),
                t.column("y").to_numpy())

    res.add(G, "pyarrow dataset.take (65,536-row groups, no compression)",
            median_ms(pa_take, few[:3]), ref, note="median of 3")

    npz_items = min(n, 20_000 if quick else 100_000)
    npz_path = scratch / "kinoml-style.npz"
    if not npz_path.exists() or np.load(npz_path).files.__len__() != npz_items:
        np.savez(npz_path, **{f"X_s{i}_": X[i] for i in range(npz_items)})
    npz = np.load(npz_path)
    npz_batches = [rng.choice(npz_items, BATCH, replace=False) for _ in range(3)]
    res.add(G, "NPZ, one key per row (kinoml), open NpzFile",
            median_ms(lambda i: [npz[f"X_s{k}_"] for k in i.tolist()], npz_batches), ref,
            note=f"{npz_items:,} keys; X only")
    npz.close()

    # the in-memory reference again, now that the process has settled: the better of the two
    again = median_ms(lambda i: (X[i], y[i]), batches)
    for r in res.rows:
        if r.case == G and r.who == ref:
            r.ms = min(r.ms, again)

    # ------------------------------------------------------------------ cold gathers
    xdir = zdir / "bench" / "train" / "x"
    budget = max(1 << 20, min(64 << 20, X.nbytes // 4))  # X does not fit, y does
    mm = ym = None  # unmap: a mapped file's pages cannot be evicted
    gc.collect()
    sg_c = StoreGate("zarr", {"output_dir": str(zdir), "mode": "r", "cache_bytes": budget},
                     data_id="bench")
    sg_c.get_data("y", "train", batches[0])  # labels: 16 MB, in the arena from now on
    before = read_bytes()
    cold_ms = median_ms(lambda i: sg_c.get_data(["x", "y"], "train", i),
                        batches[:max(5, reps // 10)], before=lambda: evict(xdir))
    cold_mb = (read_bytes() - before) / max(5, reps // 10) / 1e6
    res.add(C, "storegate zarr, X larger than cache_bytes", cold_ms,
            "physical floor: 1,024 random 4 KiB reads, 32 in flight",
            note=f"cache_bytes {budget >> 20} MiB; {cold_mb:.1f} MB read per batch")
    res.curves["storegate zarr, cold (X larger than cache_bytes)"] = {
        s: median_ms(lambda i: sg_c.get_data(["x", "y"], "train", i), size_few[s],
                     before=lambda: evict(xdir)) for s in sizes}

    def fresh_cold(i: np.ndarray) -> None:
        sg = StoreGate("zarr", {"output_dir": str(zdir), "mode": "r"}, data_id="bench")
        t = time.perf_counter()
        sg.get_data(["x", "y"], "train", i)
        fresh.append(time.perf_counter() - t)
        sg.close()

    fresh: list[float] = []
    for i in few[:3]:
        evict(zdir)
        fresh_cold(i)
    res.add(C, "storegate zarr, fresh open, default settings", statistics.median(fresh) * 1e3,
            "physical floor: 2,048 random 4 KiB reads (X and y), 32 in flight",
            note="first batch, X and y cold, arrays opened; starts the background fill")
    sg_c.close()

    def mmap_cold(i: np.ndarray) -> object:
        import mmap as _mmap

        m = np.load(npy, mmap_mode="r")
        m._mmap.madvise(_mmap.MADV_RANDOM)  # type: ignore[attr-defined]
        return m[np.sort(i)]

    res.add(C, ".npy memory map, MADV_RANDOM, fresh map", median_ms(
        mmap_cold, few[:3], before=lambda: evict(npy)),
        "physical floor: 1,024 random 4 KiB reads, 32 in flight", note="X only, median of 3")
    res.add(C, "h5py fancy indexing (sorted)", median_ms(
        h5_take, few[:3], before=lambda: evict(hfile)),
        "physical floor: 1,024 random 4 KiB reads, 32 in flight", note="median of 3")

    # ------------------------------------------------------------------ chunk-aware sampler
    S = "chunk-aware sampler batch"
    try:
        from storegate.torch.samplers import chunk_shuffle
    except ImportError:  # torch missing
        chunk_shuffle = None
    if chunk_shuffle is not None:
        chunk_rows = int(sg_z.db.chunk_layout("bench", "train", "x")["chunk_rows"])
        order = chunk_shuffle(n, chunk_rows, 8, np.random.default_rng(1))
        sampled = [order[a:a + BATCH] for a in range(0, min(n, 512 * BATCH), BATCH)]
        res.add(S, "raw numpy, same batches",
                median_ms(lambda i: (X[i], y[i]), sampled[:reps]))
        res.add(S, "storegate zarr, warm (arena filled)",
                median_ms(lambda i: sg_z.get_data(["x", "y"], "train", i), sampled[:reps]),
                "raw numpy, same batches")
        evict(zdir)
        sg_s = StoreGate("zarr", {"output_dir": str(zdir), "mode": "r"}, data_id="bench")
        k = min(len(sampled), 512)
        t = timed(lambda: [sg_s.get_data(["x", "y"], "train", i) for i in sampled[:k]])
        res.add(S, "storegate zarr, cold (mean of the first batches)", t / k * 1e3,
                "raw numpy, same batches", note=f"{k} batches from a fresh open, pages evicted")
        sg_s.close()
        # what one window of the sampler costs (it serves 64 batches): reading its 8 chunks
        # (32 MiB) cold, and the first write to the arena's fresh memory that receives them
        window = chunk_rows * 8 * DIM * 4
        files = sorted((xdir / "c").rglob("*"), key=lambda p: p.stat().st_mtime)
        files = [f for f in files if f.is_file()][:8]
        evict(*files)
        t_read = timed(lambda: [_sequential_read(str(f)) for f in files])
        res.add(S, "one window (8 chunks, 32 MiB): cold sequential read", t_read * 1e3,
                note="8 chunk files evicted, read whole")
        t_touch = timed(lambda: np.empty(window, np.uint8)[::4096].fill(1))
        res.add(S, "one window: first write to 32 MiB of fresh memory", t_touch * 1e3,
                note="page faults; what filling a new arena costs beyond the I/O")
        res.add(S, "h5py fancy indexing (sorted), warm", median_ms(h5_take, sampled[:3]),
                "raw numpy, same batches", note="median of 3")
    else:
        print("  (chunk-aware sampler cases skipped: torch is not installed)")
    hf.close()

    # ------------------------------------------------------------------ scans
    Sc = "sequential scan (1,024-row batches)"
    bs = BATCH

    def scan(read: Callable[[int, int], object]) -> float:
        return timed(lambda: [read(a, min(n, a + bs)) for a in range(0, n, bs)]) * 1e3

    mm = np.load(npy, mmap_mode="r")
    ym = np.load(scratch / "y.npy", mmap_mode="r")
    np.asarray(mm).sum()  # a long-lived mapping again
    sg_f = StoreGate("zarr", {"output_dir": str(zdir), "mode": "r"}, data_id="bench")
    npy_ref = ".npy memory map (long-lived), copy out"
    scans: dict[str, Callable[[int, int], object]] = {
        "raw numpy (copy out)": lambda a, b: (X[a:b].copy(), y[a:b].copy()),
        npy_ref: lambda a, b: (np.array(mm[a:b]), np.array(ym[a:b])),
        "storegate numpy get_data((a, b))": lambda a, b: sg_np.get_data(["x", "y"], "train",
                                                                        (a, b)),
        "storegate zarr, warm page cache": lambda a, b: sg_f.get_data(["x", "y"], "train",
                                                                       (a, b)),
    }
    best = {k: float("inf") for k in scans}
    for _ in range(4):  # interleaved epochs, the best of each
        for k, fn in scans.items():
            best[k] = min(best[k], scan(fn))
    for k, ms in best.items():
        res.add(Sc, k, ms, None if k in ("raw numpy (copy out)", npy_ref) else npy_ref,
                note="slices read from the chunk files, no arena" if "zarr" in k else "")
    sg_f.close()
    colds = []
    for _ in range(2):
        evict(zdir)
        sg_f = StoreGate("zarr", {"output_dir": str(zdir), "mode": "r"}, data_id="bench")
        colds.append(scan(lambda a, b, sg_f=sg_f: sg_f.get_data(["x", "y"], "train",
                                                                   (a, b))))
        sg_f.close()
    cold_scan = min(colds)
    res.add(Sc, "storegate zarr, cold (pages evicted)", cold_scan, npy_ref,
            note=f"{(X.nbytes + y.nbytes) / cold_scan / 1e6:.2f} GB/s")
    mm = ym = None
    gc.collect()
    evict(npy, scratch / "y.npy")
    m2, y2 = np.load(npy, mmap_mode="r"), np.load(scratch / "y.npy", mmap_mode="r")
    res.add(Sc, ".npy memory map, cold (fresh map)",
            scan(lambda a, b: (np.array(m2[a:b]), np.array(y2[a:b]))), npy_ref)
    m2 = y2 = None
    res.add(Sc, "zarr-python arr[a:b], same chunks, warm",
            scan(lambda a, b: (zx[a:b], zy[a:b])), npy_ref)
    with h5py.File(hfile, "r") as f:
        fx, fy = f["x"], f["y"]
        res.add(Sc, "h5py ds[a:b], warm", scan(lambda a, b: (fx[a:b], fy[a:b])), npy_ref)
    pf = pq.ParquetFile(pa_path, memory_map=True)

    def pa_scan() -> None:
        for b in pf.iter_batches(batch_size=bs):
            b.column(0).flatten().to_numpy().reshape(-1, DIM)
            b.column(1).to_numpy()

    res.add(Sc, "pyarrow iter_batches(1,024), warm", timed(pa_scan) * 1e3, npy_ref)
    sg_z.close()
    sg_z = None
    gc.collect()

    # ------------------------------------------------------------------ epochs, many vars
    E = "shuffled epoch, 1,000,000 x 32 float32"
    m_rows = min(n, 1_000_000)
    X32 = rng.standard_normal((m_rows, 32), dtype=np.float32)
    perm = rng.permutation(m_rows)
    epoch_batches = [perm[a:a + BATCH] for a in range(0, m_rows, BATCH)]
    res.add(E, "raw numpy X[idx]", timed(lambda: [X32[i] for i in epoch_batches]) * 1e3)
    edir = scratch / "epoch.zarr"
    shutil.rmtree(edir, ignore_errors=True)
    sg_e = StoreGate("zarr", {"output_dir": str(edir)}, data_id="e")
    sg_e.add_data("x", X32)
    sg_e.compile()
    sg_e.close()
    for label, cold in (("page cache warm", False), ("pages evicted", True)):
        if cold:
            evict(edir)
        sg_e = StoreGate("zarr", {"output_dir": str(edir), "mode": "r"}, data_id="e")
        res.add(E, f"storegate zarr get_data, fresh open, {label}",
                timed(lambda sg_e=sg_e: [sg_e.get_data("x", "train", i)
                                         for i in epoch_batches]) * 1e3,
                "raw numpy X[idx]", note="includes filling the arena")
        sg_e.close()

    T = "add 32 vars bound by a tuple (1,000,000 x 32)"
    names = tuple(f"v{i}" for i in range(32))
    tdir = scratch / "tuple.zarr"
    shutil.rmtree(tdir, ignore_errors=True)
    sg_t = StoreGate("zarr", {"output_dir": str(tdir)}, data_id="t")
    res.add(T, "storegate zarr add_data + compile",
            timed(lambda: (sg_t.add_data(names, X32), sg_t.compile())) * 1e3)
    sg_t.close()
    sg_t = StoreGate("numpy", data_id="t")
    res.add(T, "storegate numpy add_data + compile",
            timed(lambda: (sg_t.add_data(names, X32), sg_t.compile())) * 1e3)
    sg_t = X32 = None

    V = "get_data of one var, 100 rows"
    gates = {}
    for nv in (1, 10, 100, 1000):
        vdir = scratch / f"vars{nv}.zarr"
        shutil.rmtree(vdir, ignore_errors=True)
        sg_v = StoreGate("zarr", {"output_dir": str(vdir)}, data_id="v")
        sg_v.add_data(tuple(f"w{i}" for i in range(nv)), np.zeros((10_000, nv), np.float32))
        sg_v.compile()
        gates[nv] = sg_v
    ii = np.arange(0, 10_000, 100)
    per_vars: dict[int, float] = {nv: float("inf") for nv in gates}
    calls = 500
    for _ in range(5):  # interleaved rounds, the best of each: drift hits every store alike
        for nv, sg_v in gates.items():
            t = timed(lambda sg_v=sg_v: [sg_v.get_data("w0", "train", ii) for _ in range(calls)])
            per_vars[nv] = min(per_vars[nv], t / calls * 1e3)
    for nv, sg_v in gates.items():
        res.add(V, f"storegate zarr, phase with {nv:,} vars", per_vars[nv],
                "storegate zarr, phase with 1 vars" if nv > 1 else None)
        sg_v.close()

    U = "start-up"
    imp = _subprocess_seconds(
        "import time; t = time.perf_counter(); import storegate; "
        "print(time.perf_counter() - t)")
    res.add(U, "import storegate", imp * 1e3)
    big = scratch / "vars1000.zarr"
    open_s = _subprocess_seconds(
        "import time, zarr; from storegate import StoreGate; t = time.perf_counter(); "
        f"sg = StoreGate('zarr', {{'output_dir': {str(big)!r}, 'mode': 'r'}}, data_id='v'); "
        "sg.get_var_names('train'); sg.compile(); sg.get_data('w999', 'train', 5); "
        "print(time.perf_counter() - t)", repeat=3)
    res.add(U, "open a zarr store with 1,000 vars (+ names, compile, one read)", open_s * 1e3,
            note="zarr already imported")
    zimp = _subprocess_seconds(
        "import time; t = time.perf_counter(); import zarr; print(time.perf_counter() - t)",
        repeat=3)
    res.add(U, "import zarr (for reference)", zimp * 1e3)

    _targets(res, per_vars)
    return res


def _targets(res: Results, per_vars: dict[int, float]) -> None:
    G, C = "random gather, warm", "random gather, cold"
    S, Sc = "chunk-aware sampler batch", "sequential scan (1,024-row batches)"
    tg = res.targets
    W = "random gather, warm, same pages"
    for who, label, limit in (("storegate numpy get_data([x, y])", "numpy backend", 1.3),
                              ("storegate zarr get_data([x, y])", "zarr backend, page cache "
                               "warm, after first touch,", 2.0),
                              ("storegate hybrid (storage tier) get_data([x, y])",
                               "hybrid backend, page cache warm, after first touch,", 2.0)):
        same = res.get(W, who) or float("nan")
        caller = res.ratio(G, who)
        tg.append(Target(f"{label} random gather <= {limit}x raw numpy",
                         f"{same:.2f}x raw numpy on the same buffers ({caller:.2f}x raw numpy "
                         "on the caller's X)", same, limit))
    ms = res.get(C, "storegate zarr, X larger than cache_bytes") or float("nan")
    tg.append(Target("cold random gather from the zarr backend <= 60 ms",
                     f"{ms:.1f} ms ({ms / res.facts['floor_ms']:.2f}x the floor of "
                     f"{res.facts['floor_ms']:.1f} ms)", ms, 60.0))
    r = res.ratio(S, "storegate zarr, warm (arena filled)")
    if r == r:
        tg.append(Target("chunk-aware sampler <= 15x raw numpy, warm", f"{r:.2f}x", r, 15))
        r = res.ratio(S, "storegate zarr, cold (mean of the first batches)")
        tg.append(Target("chunk-aware sampler <= 30x raw numpy, cold", f"{r:.2f}x", r, 30))
    r = res.ratio(Sc, "storegate zarr, warm page cache")
    tg.append(Target("sequential scan, warm <= 2.5x a .npy memory map", f"{r:.2f}x", r, 2.5))
    cold = res.get(Sc, "storegate zarr, cold (pages evicted)") or float("nan")
    gbs = (res.facts["x_bytes"] + res.facts["y_bytes"]) / cold / 1e6
    share = gbs / res.facts["disk_gbs"]
    tg.append(Target("sequential scan, cold >= 50% of the disk's sequential bandwidth",
                     f"{gbs:.2f} GB/s = {share:.0%} of {res.facts['disk_gbs']:.2f} GB/s",
                     share, 0.5, higher_is_better=True))
    E = "shuffled epoch, 1,000,000 x 32 float32"
    ms = res.get(E, "storegate zarr get_data, fresh open, pages evicted") or float("nan")
    tg.append(Target("shuffled epoch 1M x 32 through get_data on zarr <= 2 s",
                     f"{ms / 1e3:.2f} s (cold)", ms / 1e3, 2.0))
    growth = per_vars[1000] / per_vars[1]
    tg.append(Target("get_data cost independent of the number of vars in the phase",
                     f"{per_vars[1] * 1e3:.0f} µs with 1 var, {per_vars[1000] * 1e3:.0f} µs with "
                     f"1,000 ({growth:.2f}x)", growth, 1.5))
    ms = res.get("add 32 vars bound by a tuple (1,000,000 x 32)",
                 "storegate zarr add_data + compile") or float("nan")
    tg.append(Target("adding 32 vars bound by a tuple <= 1 s", f"{ms / 1e3:.2f} s (zarr)",
                     ms / 1e3, 1.0))
    ms = res.get("start-up", "import storegate") or float("nan")
    tg.append(Target("import storegate <= 150 ms", f"{ms:.0f} ms", ms, 150))
    ms = res.get("start-up", "open a zarr store with 1,000 vars (+ names, compile, one read)")
    ms = ms or float("nan")
    tg.append(Target("opening a store with 1,000 vars <= 200 ms", f"{ms:.0f} ms", ms, 200))


__all__ = ["Results", "Row", "Target", "run"]
