"""A zarr store on S3: one writer holding the lease, a reader in another process, unlock.

Without options the script starts storegate's local S3 server (moto, on 127.0.0.1) and works
in a fresh bucket there; with ``--url s3://bucket/prefix/jets.zarr`` it uses real S3 (or any
S3-compatible store with ``--endpoint https://minio.internal:9000``), with credentials from
the environment (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, ...).

1. This process writes the store (``add_data``, ``compile``): its first write takes the
   store's lease, the object ``<store>/.sg-lock``.
2. A second process opens the store with ``mode='r'`` while the writer still holds the lease
   (readers take no lock and write nothing), scans it and reads random batches: throughput.
3. A second writer is refused (``StoreLockedError``) until the first one closes.
4. A writer killed with SIGKILL leaves its lease behind; ``storegate unlock URL`` removes it
   (on the same host the next writer would also take it over, seeing the pid dead; from
   another host only ``unlock`` frees it, once you know that writer is gone).

Run: ``python examples/s3_store.py [--rows N] [--url s3://bucket/path/jets.zarr]
[--endpoint URL]`` (needs ``pip install 'storegate[s3]'``; the local server also needs
``moto[server]``, which ``pip install 'storegate[test]'`` brings). Everything at ``--url`` is
replaced.
"""

from __future__ import annotations

import argparse
import importlib
import multiprocessing as mp
import os
import subprocess
import sys
import time
from typing import Any

import numpy as np

from storegate import StoreGate, StoreLockedError
from storegate.testing.s3 import s3_environment

COLS = 32
BATCH = 1024


def read_store(url: str, queue: Any) -> None:
    """In another process: open read-only (credentials and endpoint from the environment),
    scan the train phase, then read random batches."""
    t = time.perf_counter()
    sg = StoreGate.open(url, data_id="jets")  # mode 'r': no lease, no writes
    t_open = time.perf_counter() - t
    train = sg["train"]
    n = len(train)
    t = time.perf_counter()
    step = 65_536
    total = 0
    for start in range(0, n, step):
        total += train["x"][start:start + step].nbytes
    t_scan = time.perf_counter() - t
    rng = np.random.default_rng(0)
    times = []
    for _ in range(20):
        idx = rng.choice(n, min(BATCH, n), replace=False)
        t = time.perf_counter()
        x, y = train["x"][idx], train["label"][idx]
        times.append(time.perf_counter() - t)
    queue.put({"pid": os.getpid(), "readonly": sg.db.readonly, "rows": n, "open": t_open,
               "bytes": total, "scan": t_scan, "batch": float(np.median(times)),
               "shape": x.shape, "labels": y.shape})
    sg.close()


def write_then_hang(url: str, ready: Any) -> None:
    """In another process: write (taking the lease), then wait to be killed."""
    sg = StoreGate("zarr", {"output_dir": url, "mode": "a"}, data_id="jets")
    sg.add_data("note", np.arange(10.0), phase="test")  # the first write takes the lease
    ready.set()
    time.sleep(600)


def result_of(proc: Any, queue: Any, timeout: float = 300) -> Any:
    """What ``proc`` puts on ``queue``; an error as soon as it dies without an answer."""
    import queue as queue_module

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got = queue.get(timeout=0.5)
        except queue_module.Empty:
            if not proc.is_alive():
                raise RuntimeError(f"the reader process failed (exit code {proc.exitcode}); "
                                   "its traceback is above") from None
            continue
        proc.join(60)
        return got
    proc.kill()
    raise RuntimeError(f"the reader process gave no answer in {timeout:.0f} s")


def lease_holder(url: str, options: dict[str, Any]) -> str:
    """Who holds the store's lease, read from the ``.sg-lock`` object."""
    import json

    from fsspec.core import url_to_fs

    fs, root = url_to_fs(url, **options)
    fs.invalidate_cache()
    path = f"{root}/.sg-lock"
    if not fs.exists(path):
        return "nobody"
    info = json.loads(fs.cat_file(path))
    return f"process {info['pid']} on {info['host']}"


def run(url: str, options: dict[str, Any], endpoint: str | None, credentials: dict[str, str],
        rows: int) -> None:
    ctx = mp.get_context("spawn")  # the children start clean and reach S3 over the network
    rng = np.random.default_rng(0)
    x = rng.standard_normal((rows, COLS), dtype=np.float32)
    label = (x[:, 0] > 0).astype(np.int64)

    # 1. One writer. Options here are explicit; the children below use the environment.
    t = time.perf_counter()
    writer = StoreGate("zarr", {"output_dir": url, "mode": "w", "storage_options": options},
                       data_id="jets")
    writer.add_data("x", x, phase=(0.8, 0.1, 0.1))
    writer.add_data("label", label, phase=(0.8, 0.1, 0.1))
    writer.compile()  # flushes the buffered rows and persists the metadata
    dt = time.perf_counter() - t
    mb = (x.nbytes + label.nbytes) / 1e6
    print(f"writer: {rows:,} rows ({mb:.1f} MB) to {url} in {dt:.2f} s = {mb / dt:.1f} MB/s")
    print(f"lease held by {lease_holder(url, options)} (this process: pid {os.getpid()})")

    with s3_environment(endpoint, credentials):  # for the processes this script starts
        # 2. A reader in another process, while the writer still holds the lease.
        queue = ctx.Queue()
        reader = ctx.Process(target=read_store, args=(url, queue))
        reader.start()
        got = result_of(reader, queue)
        print(f"reader: pid {got['pid']}, read-only {got['readonly']}, opened in "
              f"{got['open'] * 1e3:.0f} ms (imports included), train rows {got['rows']:,}")
        print(f"reader: scan {got['bytes'] / 1e6:.1f} MB in {got['scan']:.2f} s = "
              f"{got['bytes'] / 1e6 / got['scan']:.1f} MB/s; random batch x {got['shape']}, "
              f"label {got['labels']}: median {got['batch'] * 1e3:.2f} ms (decoded cache warm "
              f"after the scan)")

        # 3. A second writer is refused while the first holds the lease.
        args = {"output_dir": url, "mode": "a", "storage_options": options}
        second = StoreGate("zarr", args, data_id="jets")
        try:
            second.add_data("weight", np.ones(rows, dtype=np.float32), phase=(0.8, 0.1, 0.1))
        except StoreLockedError as err:
            print(f"second writer: StoreLockedError: {str(err).split(';')[0]}")
        second.close()
        writer.close()  # ends the lease
        print(f"after close: lease held by {lease_holder(url, options)}")
        second = StoreGate("zarr", args, data_id="jets")  # a new gate: the old one was refused
        second.add_data("weight", np.ones(rows, dtype=np.float32), phase=(0.8, 0.1, 0.1))
        second.compile()
        second.close()
        check = StoreGate.open(url, data_id="jets", backend_args={"storage_options": options})
        print(f"second writer: added 'weight'; train vars now {check.get_var_names('train')}")
        check.close()

        # 4. A writer that is killed leaves its lease; `storegate unlock` removes it.
        ready = ctx.Event()
        victim = ctx.Process(target=write_then_hang, args=(url, ready))
        victim.start()
        if not ready.wait(300):
            victim.kill()
            raise RuntimeError("the writer process did not start")
        victim.kill()  # SIGKILL: no close(), no exit handlers
        victim.join(60)
        print(f"killed writer pid {victim.pid}: lease left, held by "
              f"{lease_holder(url, options)}")
        cli = subprocess.run([sys.executable, "-m", "storegate", "unlock", url],
                             capture_output=True, text=True, check=True)
        print(f"storegate unlock: {cli.stdout.strip()}")
        print(f"after unlock: lease held by {lease_holder(url, options)}")


def importable(module: str) -> bool:
    """Whether ``module`` imports (not merely whether it is on the path)."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000, help="rows to write")
    parser.add_argument("--url", default=None,
                        help="s3://bucket/path/store.zarr on real S3 (replaced if it exists); "
                             "default: a bucket on a local S3 server")
    parser.add_argument("--endpoint", default=None,
                        help="endpoint of an S3-compatible store (default: AWS_ENDPOINT_URL, "
                             "else AWS)")
    args = parser.parse_args(argv)
    if args.url is None and args.endpoint is not None:
        parser.error("--endpoint needs --url s3://bucket/path/store.zarr (a bucket there)")
    needed = {"s3fs": "s3fs"} if args.url is not None else {"s3fs": "s3fs", "moto": "moto[server]"}
    missing = [pip for module, pip in needed.items() if not importable(module)]
    if missing:
        print(f"this example needs {' and '.join(missing)}: pip install 'storegate[test]' "
              "(or, for real S3 with --url s3://..., pip install 'storegate[s3]')",
              file=sys.stderr)
        return 2

    if args.url is not None:  # real S3: credentials from the environment, as s3fs finds them
        endpoint = args.endpoint or os.environ.get("AWS_ENDPOINT_URL")
        options = {"endpoint_url": endpoint} if endpoint else {}
        print(f"using {args.url} (endpoint {endpoint or 'AWS'})")
        run(args.url, options, endpoint, {}, args.rows)
        return 0

    from storegate.testing.s3 import CREDENTIALS, LocalS3

    server = LocalS3().start()
    try:
        url = server.bucket("storegate-example") + "/jets.zarr"
        print(f"local S3 server at {server.endpoint_url}, bucket {url.rsplit('/', 1)[0]}")
        run(url, server.storage_options, server.endpoint_url, dict(CREDENTIALS), args.rows)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
