"""Reads from an S3 object store beside the local disk: storegate, zarr-python, s3fs, numpy.

Dataset: X = N x 128 float32 (N = 200,000 by default, 102 MB), written by storegate's zarr
backend (uncompressed) once to a local directory and once per chunk size to a local S3 server.

The server is moto's S3 server on 127.0.0.1, by default **in a separate process** (a
``multiprocessing`` child running moto's WSGI app in werkzeug's threaded server, as
``moto_server`` and ``ThreadedMotoServer`` do), so it does not compete for the benchmark's GIL;
the child counts the requests and response bytes it serves and can delay every request by a
fixed time. ``--server thread`` runs it in a thread of this process instead
(:class:`storegate.testing.s3.LocalS3`; no counts, no delay). There is no network between
client and server: a request costs moto's own handling (a few ms of the server's CPU) but none
of the 10-30 ms of first-byte latency of real S3, so the S3 cases run twice for some chunk
sizes: as they are, and with ``--latency-ms`` (20 by default) added to every request.

Cases (each on the in-memory array, the local disk and the S3 server)
-----------------------------------------------------------------------
* **random**: batches of 1,024 unique random rows (``sg["train"]["x"][idx]``), median per
  batch and rows/s. storegate serves them from its decoded arena, filled by the first batch
  (see *first batch*); ``cache_bytes=0`` turns the arena off (as for a var larger than the
  budget), so every batch reads from the store. Beside them: numpy ``X[idx]`` (the in-memory
  limit), zarr-python ``oindex[sorted idx]`` on the same array, a ``.npy`` memory map (local)
  and s3fs ``cat_ranges`` of the exact bytes of each row (one ranged GET per row; S3).
  *Cold* (local): the files' pages evicted before every batch (and the memory map reopened).
* **sequential**: the whole var in slices of 8,192 contiguous rows, MB/s, on a freshly opened
  store (every pass). Locally slices are read straight from the chunk files; on S3 they go
  through the arena, which reads ahead (several chunk requests in flight); ``cache_bytes=0``
  shows a var without an arena (larger than the budget): one chunk request at a time. Beside:
  numpy copies, zarr-python slices, a memory map, and s3fs ``cat`` of every chunk object at
  once (all requests in flight: what the server delivers).
* **epoch**: one epoch through ``StoreGateDataset`` + ``DataLoader`` with the chunk-aware
  ``ChunkShuffleSampler`` (batches of 1,024; store opened in the epoch), rows/s; beside the
  same sampler over the array in memory. Skipped without torch.
* **first batch**: open the store (new S3 clients) and read one random batch.
* s3fs's ``max_concurrency``: storegate passes 1 for ``s3://`` stores by default (one GET per
  chunk); rows marked ``max_concurrency=10`` (s3fs's own default, a HEAD before every GET) with
  ``cache_bytes=0`` reproduce storegate's reads before that default and the arena read-ahead.
  zarr-python runs with s3fs's default, as its users get it, and once with
  ``max_concurrency=1`` for a like-for-like comparison.

Ratios: ``x memory`` divides by the in-memory figure of the same case, ``x zarr-python`` by
zarr-python on the same store (same place, same chunks). The machine is shared and noisy:
compare ratios of one run.

Usage::

    python bench/remote.py                  # full size: a few minutes, ~2 GB RAM
    python bench/remote.py --rows 50000     # smaller
    python bench/remote.py --quick          # a smoke run (CI), well under a minute
    python bench/remote.py --server thread  # moto in a thread of this process (GIL shared)
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import evict, fmt_ms, machine, median_ms, timed, versions
from storegate import StoreGate
from storegate.testing.s3 import CREDENTIALS, LocalS3

DIM = 128
BATCH = 1024
SCAN = 8192
MiB = 1 << 20
QUIET = ("werkzeug", "moto", "botocore", "aiobotocore", "s3fs", "asyncio")


# ---------------------------------------------------------------------------- the server
def _serve(conn: Any, latency: Any, requests: Any, sent: Any) -> None:
    """The child process: moto's S3 app in werkzeug's threaded server on 127.0.0.1 (a free
    port, sent back through ``conn``); every request is delayed by ``latency.value`` ms and
    counted in ``requests`` (and its response bytes in ``sent``)."""
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def counted(environ: dict[str, Any], start_response: Any) -> Any:
        ms = latency.value
        if ms > 0:
            time.sleep(ms / 1e3)
        body = app(environ, start_response)
        size = 0
        for part in body:
            size += len(part)
            yield part
        with lock:
            requests.value += 1
            sent.value += size

    parent = os.getppid()

    def orphaned() -> None:  # the benchmark was killed: do not serve forever
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(0)

    threading.Thread(target=orphaned, daemon=True).start()
    server = make_server("127.0.0.1", 0, counted, threaded=True)
    conn.send(server.server_port)
    conn.close()
    server.serve_forever()


class S3Server:
    """moto's S3 server on 127.0.0.1: in a child process (``'process'``) or in a thread of
    this process (``'thread'``, :class:`~storegate.testing.s3.LocalS3`: no counts, no delay)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.endpoint_url = ""
        self.latency_ms = 0.0
        self._proc: Any = None
        self._shared: tuple[Any, Any, Any] | None = None  # latency, requests, bytes sent
        self._local: LocalS3 | None = None

    def start(self) -> S3Server:
        for k, v in CREDENTIALS.items():
            os.environ.setdefault(k, v)
        if self.mode == "thread":
            self._local = LocalS3().start()
            self.endpoint_url = self._local.endpoint_url
            return self
        ctx = mp.get_context("spawn")
        self._shared = (ctx.Value("d", 0.0, lock=False), ctx.Value("q", 0, lock=False),
                        ctx.Value("q", 0, lock=False))
        mine, theirs = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(theirs, *self._shared), daemon=True,
                                 name="moto-s3")
        self._proc.start()
        theirs.close()
        if not mine.poll(120):
            self.stop()
            raise RuntimeError("the moto S3 server process did not start within 120 s")
        self.endpoint_url = f"http://127.0.0.1:{mine.recv()}"
        mine.close()
        return self

    @property
    def counts(self) -> bool:
        """Whether the server counts requests and can delay them."""
        return self._shared is not None

    def set_latency(self, ms: float) -> None:
        """Delay every request from now on by ``ms`` milliseconds (process mode only)."""
        if self._shared is not None:
            self._shared[0].value = float(ms)
            self.latency_ms = float(ms)

    def served(self) -> tuple[int, int]:
        """Requests and response bytes served so far (0, 0 when not counted)."""
        if self._shared is None:
            return 0, 0
        return int(self._shared[1].value), int(self._shared[2].value)

    @property
    def storage_options(self) -> dict[str, Any]:
        return {"endpoint_url": self.endpoint_url, "key": CREDENTIALS["AWS_ACCESS_KEY_ID"],
                "secret": CREDENTIALS["AWS_SECRET_ACCESS_KEY"]}

    def stop(self) -> None:
        with contextlib.suppress(ImportError):
            import s3fs

            s3fs.S3FileSystem.clear_instance_cache()
        if self._local is not None:
            self._local.stop()
            self._local = None
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.terminate()
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join(10)


# ---------------------------------------------------------------------------- results
@dataclass
class Row:
    case: str
    where: str
    who: str
    ms: float
    rate: str  # rows/s or MB/s
    traffic: str = ""  # requests and MB per batch or pass (S3)
    note: str = ""


def _rows_per_s(rows: int, ms: float) -> str:
    r = rows / (ms / 1e3)
    return f"{r / 1e6:.2f} M rows/s" if r >= 1e6 else f"{r / 1e3:.1f} k rows/s"


def _mb_per_s(nbytes: int, ms: float) -> str:
    return f"{nbytes / (ms / 1e3) / 1e6:,.0f} MB/s"


def _wait_for_fills() -> None:
    """Let background arena fills finish (they would compete with the next measurement)."""
    for t in threading.enumerate():
        if t.name.startswith("storegate_arena_fill"):
            t.join()


def _fresh_clients() -> None:
    """Forget fsspec's cached S3 clients, so the next open makes new connections."""
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()


class _Map:
    """A ``.npy`` memory map that can be reopened after its pages were evicted (pages mapped
    by a live map stay in memory)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.arr: Any = np.load(path, mmap_mode="r")

    def cold(self) -> None:
        self.arr = None
        evict(self.path)
        self.arr = np.load(self.path, mmap_mode="r")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--batches", type=int, default=50,
                    help="random batches timed where a batch is cheap (arena, memory)")
    ap.add_argument("--slow-batches", type=int, default=5,
                    help="random batches timed where each batch reads from the store")
    ap.add_argument("--chunks", default="0.25,1,4,16",
                    help="zarr chunk sizes on S3 in MiB, comma-separated (4 is the default)")
    ap.add_argument("--latency-ms", type=float, default=20.0,
                    help="delay added to every request in a second pass (0: no second pass)")
    ap.add_argument("--latency-chunks", default="1,4,16",
                    help="chunk sizes (MiB) measured again with the added latency")
    ap.add_argument("--server", choices=["process", "thread"], default="process")
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke run (CI)")
    ap.add_argument("--dir", default=None, help="scratch directory (default: a temp dir)")
    args = ap.parse_args(argv)
    if args.quick:
        args.rows, args.batches, args.slow_batches = 20_000, 10, 2
        args.chunks, args.latency_chunks = "1,4", "4"
    for name in QUIET:  # aiohttp reports the sessions of dropped clients at exit otherwise
        logging.getLogger(name).setLevel(logging.CRITICAL)

    scratch = Path(args.dir or tempfile.mkdtemp(prefix="storegate-bench-remote-"))
    scratch.mkdir(parents=True, exist_ok=True)
    server = S3Server(args.server)
    try:
        server.start()
        return Bench(args, server, scratch).run()
    finally:
        server.stop()
        if not args.dir:
            shutil.rmtree(scratch, ignore_errors=True)


class Bench:
    """The measurements of one run (see the module docstring)."""

    def __init__(self, args: argparse.Namespace, server: S3Server, scratch: Path) -> None:
        import s3fs

        self.args, self.server, self.scratch = args, server, scratch
        self.n = n = args.rows
        self.chunk_mib = [float(c) for c in args.chunks.split(",") if c.strip()]
        self.lat_mib = [float(c) for c in args.latency_chunks.split(",") if c.strip()]
        if args.latency_ms <= 0 or not server.counts:
            self.lat_mib = []
        rng = np.random.default_rng(0)
        self.X = rng.standard_normal((n, DIM), dtype=np.float32)
        self.nbytes = self.X.nbytes
        self.batches = [rng.choice(n, BATCH, replace=False) for _ in range(max(args.batches, 1))]
        self.slow = self.batches[: max(1, args.slow_batches)]
        self.so = server.storage_options
        self.fs = s3fs.S3FileSystem(**self.so)
        self.rows: list[Row] = []
        self.local = scratch / "local.zarr"
        self.urls: dict[float, str] = {}
        self.server_text = ("moto S3 server in a separate process" if server.mode == "process"
                            else "moto S3 server in a thread of the benchmark process")

    # ------------------------------------------------------------------ helpers
    def add(self, case: str, where: str, who: str, ms: float, rate: str = "",
            traffic: str = "", note: str = "") -> None:
        self.rows.append(Row(case, where, who, ms, rate, traffic, note))
        print(f"  {case:<11} {where:<24} {who:<46} {fmt_ms(ms):>9}  {rate:>16}  {traffic}"
              f"  {note}", flush=True)

    def counted(self, fn: Callable[[], float], per: int = 1) -> tuple[float, str]:
        """``fn()`` (a time in ms) and the requests / MB it made the server serve, per
        ``per`` operations."""
        r0, b0 = self.server.served()
        ms = fn()
        r1, b1 = self.server.served()
        if not self.server.counts:
            return ms, ""
        return ms, f"{(r1 - r0) / per:,.0f} req, {(b1 - b0) / per / 1e6:,.1f} MB"

    @staticmethod
    def label(mib: float) -> str:
        return f"{mib:g} MiB" if mib >= 1 else f"{mib * 1024:g} KiB"

    def open_sg(self, loc: str, so: dict[str, Any] | None = None, **extra: Any) -> StoreGate:
        ba: dict[str, Any] = {"output_dir": loc, "mode": "r", **extra}
        if loc.startswith("s3://"):
            ba["storage_options"] = {**self.so, **(so or {})}
        return StoreGate("zarr", ba, data_id="bench")

    def zarr_array(self, loc: str, so: dict[str, Any] | None = None) -> Any:
        """zarr-python's array; on S3 with s3fs's own defaults unless ``so`` overrides them."""
        import zarr
        from zarr.storage import FsspecStore

        if loc.startswith("s3://"):
            store = FsspecStore.from_url(f"{loc}/bench/train/x",
                                         storage_options={**self.so, **(so or {})},
                                         read_only=True)
            return zarr.open_array(store=store, mode="r")
        return zarr.open_array(f"{loc}/bench/train/x", mode="r")

    def check(self, got: Any, idx: np.ndarray) -> None:
        if not np.array_equal(np.asarray(got), self.X[idx]):
            raise AssertionError("a benchmarked read returned wrong rows")

    def scan_ms(self, read: Callable[[int, int], object],
                before: Callable[[], object] | None = None, reps: int = 2) -> float:
        """The best of ``reps`` passes over the var in ``SCAN``-row slices."""
        best = float("inf")
        for _ in range(reps):
            if before is not None:
                before()
            t0 = time.perf_counter()
            for a in range(0, self.n, SCAN):
                read(a, min(self.n, a + SCAN))
            best = min(best, time.perf_counter() - t0)
        return best * 1e3

    def first_sg(self, loc: str, before: Callable[[], object] | None = None,
                 so: dict[str, Any] | None = None, **extra: Any) -> float:
        """Open a store and read one random batch, in ms."""
        if before is not None:
            before()
        if loc.startswith("s3://"):
            _fresh_clients()
        idx = self.batches[1 % len(self.batches)]
        t0 = time.perf_counter()
        got = self.open_sg(loc, so, **extra)["train"]["x"][idx]
        ms = (time.perf_counter() - t0) * 1e3
        self.check(got, idx)
        _wait_for_fills()
        return ms

    def first_zarr(self, loc: str, before: Callable[[], object] | None = None,
                   so: dict[str, Any] | None = None) -> float:
        if before is not None:
            before()
        if loc.startswith("s3://"):
            _fresh_clients()
        idx = np.sort(self.batches[1 % len(self.batches)])
        t0 = time.perf_counter()
        got = self.zarr_array(loc, so).oindex[idx]
        ms = (time.perf_counter() - t0) * 1e3
        self.check(got, idx)
        return ms

    # ------------------------------------------------------------------ the run
    def run(self) -> int:
        a = self.args
        print(f"# machine: {machine()}; {versions('zarr', 's3fs', 'moto', 'torch')}\n"
              f"# server: {self.server_text} on {self.server.endpoint_url}\n"
              f"# X = {self.n:,} x {DIM} float32 ({self.nbytes / 1e6:.0f} MB); random batches "
              f"of {BATCH:,}; sequential slices of {SCAN:,} rows; S3 chunks "
              f"{', '.join(map(self.label, self.chunk_mib))}", flush=True)
        self.write()
        self.memory()
        self.disk()
        self.epochs_local()
        for mib in self.chunk_mib:
            self.s3(mib, f"S3, {self.label(mib)} chunks", a.slow_batches, extras=mib == 4)
        if self.lat_mib:
            self.server.set_latency(a.latency_ms)
            try:
                for mib in self.lat_mib:
                    if mib in self.urls:
                        self.s3(mib, f"S3 +{a.latency_ms:g} ms, {self.label(mib)} chunks",
                                max(1, min(a.slow_batches, 3)), extras=mib == 4)
            finally:
                self.server.set_latency(0)
        self.table()
        return 0

    def write(self) -> None:
        def write(loc: str, extra: dict[str, Any]) -> float:
            def go() -> None:
                sg = StoreGate("zarr", {"output_dir": loc, "mode": "w", **extra}, data_id="bench")
                sg.add_data("x", self.X)
                sg.compile()
                sg.close()

            return timed(go) * 1e3

        shutil.rmtree(self.local, ignore_errors=True)
        m = write(str(self.local), {})
        self.add("write", "local disk", "storegate add_data + compile", m,
                 _mb_per_s(self.nbytes, m))
        self.fs.mkdir("storegate-bench")
        for mib in self.chunk_mib:
            url = self.urls[mib] = f"s3://storegate-bench/c{int(mib * 1024)}k.zarr"
            m, traffic = self.counted(lambda url=url, mib=mib: write(  # type: ignore[misc]
                url, {"storage_options": self.so, "chunk_bytes": int(mib * MiB)}))
            self.add("write", f"S3, {self.label(mib)} chunks", "storegate add_data + compile",
                     m, _mb_per_s(self.nbytes, m), traffic.split(",")[0])

    def memory(self) -> None:
        X, nb = self.X, self.nbytes
        m = median_ms(lambda i: X[i], self.batches)
        self.add("random", "memory", "numpy X[idx] (the in-memory limit)", m,
                 _rows_per_s(BATCH, m))
        m = self.scan_ms(lambda a, b: X[a:b].copy(), reps=3)
        self.add("sequential", "memory", "numpy X[a:b].copy()", m, _mb_per_s(nb, m))

    def disk(self) -> None:
        warm, cold, local, nb = "local disk, warm", "local disk, cold", self.local, self.nbytes
        batches, slow = self.batches, self.slow
        npy = self.scratch / "x.npy"
        np.save(npy, self.X)
        mm = _Map(npy)
        sg = self.open_sg(str(local))
        self.check(sg["train"]["x"][batches[0]], batches[0])  # fills the arena (cached pages)
        m = median_ms(lambda i: sg["train"]["x"][i], batches)
        self.add("random", warm, "storegate (arena)", m, _rows_per_s(BATCH, m))
        sg0 = self.open_sg(str(local), cache_bytes=0)
        m = median_ms(lambda i: sg0["train"]["x"][i], batches)
        self.add("random", warm, "storegate cache_bytes=0 (row reads)", m, _rows_per_s(BATCH, m))
        m = median_ms(lambda i: mm.arr[np.sort(i)], batches)
        self.add("random", warm, ".npy memory map", m, _rows_per_s(BATCH, m))
        za = self.zarr_array(str(local))
        m = median_ms(lambda i: za.oindex[np.sort(i)], slow)
        self.add("random", warm, "zarr-python oindex[sorted idx]", m, _rows_per_s(BATCH, m))
        m = median_ms(lambda i: sg0["train"]["x"][i], slow, lambda: evict(local))
        self.add("random", cold, "storegate cache_bytes=0 (row reads)", m, _rows_per_s(BATCH, m))
        m = median_ms(lambda i: mm.arr[np.sort(i)], slow, mm.cold)
        self.add("random", cold, ".npy memory map", m, _rows_per_s(BATCH, m))
        m = median_ms(lambda i: za.oindex[np.sort(i)], slow, lambda: evict(local))
        self.add("random", cold, "zarr-python oindex[sorted idx]", m, _rows_per_s(BATCH, m))

        fresh = self.open_sg(str(local))
        m = self.scan_ms(lambda a, b: fresh["train"]["x"][a:b])
        self.add("sequential", warm, "storegate sg['train']['x'][a:b]", m, _mb_per_s(nb, m))
        m = self.scan_ms(lambda a, b: np.array(mm.arr[a:b]))
        self.add("sequential", warm, ".npy memory map", m, _mb_per_s(nb, m))
        m = self.scan_ms(lambda a, b: za[a:b])
        self.add("sequential", warm, "zarr-python arr[a:b]", m, _mb_per_s(nb, m))
        m = self.scan_ms(lambda a, b: fresh["train"]["x"][a:b], lambda: evict(local))
        self.add("sequential", cold, "storegate sg['train']['x'][a:b]", m, _mb_per_s(nb, m))
        m = self.scan_ms(lambda a, b: np.array(mm.arr[a:b]), mm.cold)
        self.add("sequential", cold, ".npy memory map", m, _mb_per_s(nb, m))
        m = self.scan_ms(lambda a, b: za[a:b], lambda: evict(local))
        self.add("sequential", cold, "zarr-python arr[a:b]", m, _mb_per_s(nb, m))

        self.add("first batch", warm, "storegate open + batch", self.first_sg(str(local)))
        self.add("first batch", warm, "zarr-python open_array + oindex",
                 self.first_zarr(str(local)))
        self.add("first batch", cold, "storegate open + batch",
                 self.first_sg(str(local), lambda: evict(local)), "", "",
                 "rows read directly; the arena fills in the background")
        self.add("first batch", cold, "zarr-python open_array + oindex",
                 self.first_zarr(str(local), lambda: evict(local)))

    # ------------------------------------------------------------------ epochs
    epoch: Callable[[str], float] | None = None

    def epochs_local(self) -> None:
        try:
            import torch

            from storegate.torch import ChunkShuffleSampler, StoreGateDataset
        except ImportError:
            print("# torch is not installed: no epoch case", flush=True)
            return
        torch.set_num_threads(1)
        X, n = self.X, self.n
        chunk_rows = int(self.zarr_array(str(self.local)).chunks[0])  # the sampler's unit

        class Memory(torch.utils.data.Dataset):
            def __len__(self) -> int:
                return n

            def __getitems__(self, idx: list[int]) -> torch.Tensor:
                return torch.from_numpy(X[idx])

        def memory_epoch() -> float:
            loader = torch.utils.data.DataLoader(
                Memory(), batch_size=BATCH, collate_fn=lambda b: b,
                sampler=ChunkShuffleSampler(n, chunk_rows=chunk_rows))
            return timed(lambda: [b.shape for b in loader]) * 1e3

        def store_epoch(loc: str) -> float:
            def go() -> None:
                ds = StoreGateDataset(self.open_sg(loc), "train", "x")
                for _ in ds.as_dataloader(batch_size=BATCH, sampler=ChunkShuffleSampler(ds)):
                    pass

            if loc.startswith("s3://"):
                _fresh_clients()
            ms = timed(go) * 1e3
            _wait_for_fills()
            return ms

        self.epoch = store_epoch
        m = min(memory_epoch() for _ in range(2))
        self.add("epoch", "memory", "DataLoader, ChunkShuffleSampler, numpy", m,
                 _rows_per_s(n, m))
        m = store_epoch(str(self.local))
        self.add("epoch", "local disk, warm", "StoreGateDataset, ChunkShuffleSampler", m,
                 _rows_per_s(n, m), "", "store opened in the epoch")

    # ------------------------------------------------------------------ S3
    def s3(self, mib: float, where: str, reps: int, extras: bool) -> None:
        """Every case on the S3 store with ``mib`` MiB chunks; ``extras``: also s3fs's
        per-row ranged GETs, storegate's old reads (``max_concurrency=10``, no arena) and
        zarr-python with ``max_concurrency=1``."""
        url, n, nb, add, counted = self.urls[mib], self.n, self.nbytes, self.add, self.counted
        few = self.slow[:reps]
        old = {"max_concurrency": 10}  # s3fs's default: storegate's before it passed 1
        one = {"max_concurrency": 1}
        was = "max_concurrency=10 (the old default)"
        m, t = counted(lambda: self.first_sg(url))
        add("first batch", where, "storegate open + batch", m, "", t,
            "fills the arena with every chunk the batch touches")
        m, t = counted(lambda: self.first_sg(url, cache_bytes=0))
        add("first batch", where, "storegate cache_bytes=0 open + batch", m, "", t)
        if extras:
            m, t = counted(lambda: self.first_sg(url, so=old, cache_bytes=0))
            add("first batch", where, f"storegate cache_bytes=0, {was}", m, "", t)
        m, t = counted(lambda: self.first_zarr(url))
        add("first batch", where, "zarr-python open_array + oindex", m, "", t)
        if extras:
            m, t = counted(lambda: self.first_zarr(url, so=one))
            add("first batch", where, "zarr-python, max_concurrency=1", m, "", t)

        sg = self.open_sg(url)
        self.check(sg["train"]["x"][self.batches[0]], self.batches[0])
        _wait_for_fills()
        m, t = counted(lambda: median_ms(lambda i: sg["train"]["x"][i], self.batches),
                       len(self.batches))
        add("random", where, "storegate (arena, after the first batch)", m,
            _rows_per_s(BATCH, m), t)
        sg.close()
        sg0 = self.open_sg(url, cache_bytes=0)
        m, t = counted(lambda: median_ms(lambda i: sg0["train"]["x"][i], few), len(few))
        add("random", where, "storegate cache_bytes=0", m, _rows_per_s(BATCH, m), t,
            "every batch from S3")
        if extras:
            sg1 = self.open_sg(url, so=old, cache_bytes=0)
            m, t = counted(lambda: median_ms(lambda i: sg1["train"]["x"][i], few), len(few))
            add("random", where, f"storegate cache_bytes=0, {was}", m, _rows_per_s(BATCH, m), t)
        za = self.zarr_array(url)
        m, t = counted(lambda: median_ms(lambda i: za.oindex[np.sort(i)], few), len(few))
        add("random", where, "zarr-python oindex[sorted idx]", m, _rows_per_s(BATCH, m), t)
        za1 = self.zarr_array(url, one) if extras else None
        if za1 is not None:
            m, t = counted(lambda: median_ms(lambda i: za1.oindex[np.sort(i)], few), len(few))
            add("random", where, "zarr-python, max_concurrency=1", m, _rows_per_s(BATCH, m), t)
        path = f"{url[len('s3://'):]}/bench/train/x"
        chunk_rows = int(za.chunks[0])
        key = za.metadata.encode_chunk_key
        if extras and self.server.latency_ms == 0 and not self.args.quick:
            fs, row_bytes = self.fs, DIM * 4

            def ranges(idx: np.ndarray) -> list[bytes]:
                idx = np.sort(idx)
                c = idx // chunk_rows
                paths = [f"{path}/{key((int(k), 0))}" for k in c.tolist()]
                starts = ((idx - c * chunk_rows) * row_bytes).tolist()
                return fs.cat_ranges(paths, starts, [s + row_bytes for s in starts])

            got = np.frombuffer(b"".join(ranges(self.batches[0])), np.float32)
            self.check(got.reshape(-1, DIM), np.sort(self.batches[0]))
            m, t = counted(lambda: median_ms(ranges, few[:1]))
            add("random", where, "s3fs cat_ranges, one ranged GET per row", m,
                _rows_per_s(BATCH, m), t, "one batch")

        passes = min(reps, 2)

        def scan(so: dict[str, Any] | None = None, **extra: Any) -> tuple[float, str]:
            """The best of ``passes`` passes over the var, each on a freshly opened store (an
            arena filled by one pass would serve the next from memory); the traffic of one
            pass, without the open."""
            best, traffic = float("inf"), ""
            for _ in range(passes):
                gate = self.open_sg(url, so, **extra)
                x = gate["train"]["x"]
                ms, traffic = counted(lambda x=x: self.scan_ms(  # type: ignore[misc]
                    lambda a, b: x[a:b], reps=1))
                best = min(best, ms)
                gate.close()
            return best, traffic

        m, t = scan()
        add("sequential", where, "storegate sg['train']['x'][a:b]", m, _mb_per_s(nb, m), t,
            "through the arena, reads ahead")
        m, t = scan(cache_bytes=0)
        add("sequential", where, "storegate cache_bytes=0", m, _mb_per_s(nb, m), t,
            "no arena: no read-ahead")
        if extras:
            m, t = scan(old, cache_bytes=0)
            add("sequential", where, f"storegate cache_bytes=0, {was}", m, _mb_per_s(nb, m), t)
        m, t = counted(lambda: self.scan_ms(lambda a, b: za[a:b], reps=passes), passes)
        add("sequential", where, "zarr-python arr[a:b]", m, _mb_per_s(nb, m), t)
        if za1 is not None:
            m, t = counted(lambda: self.scan_ms(lambda a, b: za1[a:b], reps=passes), passes)
            add("sequential", where, "zarr-python, max_concurrency=1", m, _mb_per_s(nb, m), t)
        files = [f"{path}/{key((c, 0))}" for c in range(-(-n // chunk_rows))]
        m, t = counted(lambda: min(timed(lambda: self.fs.cat(files))
                                   for _ in range(passes)) * 1e3, passes)
        add("sequential", where, "s3fs cat(every chunk), all in flight", m, _mb_per_s(nb, m), t)
        if self.epoch is not None:
            m, t = counted(lambda: self.epoch(url))  # type: ignore[misc]
            add("epoch", where, "StoreGateDataset, ChunkShuffleSampler", m, _rows_per_s(n, m),
                t, "store opened in the epoch")

    # ------------------------------------------------------------------ the table
    def table(self) -> None:
        a = self.args
        rows = self.rows
        memory = {r.case: r.ms for r in rows if r.where == "memory"}
        zp = {(r.case, r.where): r.ms for r in rows  # zarr-python as its users run it
              if r.who.startswith("zarr-python") and "max_concurrency" not in r.who}
        counts = (" Traffic: requests and MB the server answered, per batch (random, first "
                  "batch) or per pass (sequential, epoch, write)." if self.server.counts else "")
        setup = (f"{machine()}; {versions('zarr', 's3fs', 'moto', 'torch')}. Server: "
                 f"{self.server_text}, on 127.0.0.1: no network between client and server "
                 "(real S3 adds ~10-30 ms to every request and limits each connection's "
                 "bandwidth)"
                 + (f"; '+{a.latency_ms:g} ms' rows: the server delays every request by that "
                    "much" if self.lat_mib else "")
                 + f". X = {self.n:,} x {DIM} float32 ({self.nbytes / 1e6:.0f} MB), "
                 "uncompressed; local store with storegate's default chunks (4 MiB); S3 chunk "
                 f"sizes {', '.join(map(self.label, self.chunk_mib))}. Random: {BATCH:,} unique "
                 f"rows per batch, median of {a.batches} batches (arena, memory, local warm) or "
                 f"{a.slow_batches} (reads from the store); sequential: {SCAN:,}-row slices, "
                 f"best of 2 passes.{counts}")
        print("\n| case | store | implementation | time | throughput | traffic | x memory "
              "| x zarr-python |")
        print("|---|---|---|---:|---:|---:|---:|---:|")
        print(f"| setup | {setup} | | | | | | |")
        order = {"random": 0, "sequential": 1, "epoch": 2, "first batch": 3, "write": 4}
        for r in sorted(rows, key=lambda r: order[r.case]):  # stable: measured order inside
            base = memory.get(r.case)
            ref = zp.get((r.case, r.where))
            x_mem = f"{r.ms / base:,.1f}x" if base else ""
            x_zp = f"{r.ms / ref:.2f}x" if ref else ""
            who = r.who + (f" ({r.note})" if r.note else "")
            per = " per batch" if r.case == "random" else ""
            print(f"| {r.case} | {r.where} | {who} | {fmt_ms(r.ms)}{per} | {r.rate} | "
                  f"{r.traffic} | {x_mem} | {x_zp} |")


if __name__ == "__main__":
    raise SystemExit(main())
