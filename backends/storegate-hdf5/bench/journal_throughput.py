"""Write throughput of HDF5 with and without storegate-hdf5's rollback journal.

Usage::

    python backends/storegate-hdf5/bench/journal_throughput.py [--dir DIR] [--mib 256]
        [--small 10000] [--repeat 2]

Cases (each the best of ``--repeat`` runs, file in the page cache, no fsync):

* ``big``: append ``--mib`` MiB to a ``(n, 1024) float64`` dataset (1 MiB chunks) in 8 MiB
  blocks (resize + ``write_direct``), then close;
* ``small``: ``--small`` appends of 10 rows to a ``(n, 16) float32`` dataset (64 KiB chunks);
* ``rewrite``: overwrite 64 MiB of an existing dataset in place (the journal saves the old
  bytes first: the one case where it copies data);

each through h5py's native driver (``sec2``; also with ``f.flush()`` after every block, the
same durability points without a journal), h5py's ``fileobj`` driver over a plain file object
(the cost of the driver alone), the journaled file with one commit at the end, and the
journaled file with a commit (``f.flush()`` + journal emptied) after every block, which is
what the backend does for each write call made outside a transaction. The last table runs
the backend itself: each ``append`` its own transaction, or all of them in one.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from storegate_hdf5 import HDF5Backend
from storegate_hdf5.journal import JournaledFile


class PlainFile:
    """The smallest file object h5py's fileobj driver needs (no journal)."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        self.pos = 0

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = offset if whence == 0 else (
            self.pos + offset if whence == 1 else os.fstat(self.fd).st_size + offset)
        return self.pos

    def tell(self) -> int:
        return self.pos

    def read(self, size: int) -> bytes:
        data = os.pread(self.fd, size, self.pos)
        self.pos += len(data)
        return data

    def readinto(self, buf: Any) -> int:
        n = os.preadv(self.fd, [buf], self.pos)
        self.pos += n
        return n

    def write(self, data: Any) -> int:
        n = os.pwrite(self.fd, data, self.pos)
        self.pos += n
        return n

    def truncate(self, size: int) -> int:
        os.ftruncate(self.fd, size)
        return size

    def flush(self) -> None:
        pass

    def close(self) -> None:
        os.close(self.fd)


Opener = Callable[[str], tuple[Any, Callable[[], None], Callable[[], None]]]


def native(path: str) -> tuple[Any, Callable[[], None], Callable[[], None]]:
    f = h5py.File(path, "a")
    return f, f.flush, f.close


def plain(path: str) -> tuple[Any, Callable[[], None], Callable[[], None]]:
    fo = PlainFile(path)
    f = h5py.File(fo, "r+" if os.path.getsize(path) else "w")

    def close() -> None:
        f.close()
        fo.close()

    return f, f.flush, close


def journaled(path: str) -> tuple[Any, Callable[[], None], Callable[[], None]]:
    jf = JournaledFile(path, create=True)
    f = h5py.File(jf, "r+" if jf.original_length else "w")

    def commit() -> None:
        f.flush()
        jf.commit()

    def close() -> None:
        f.close()
        jf.commit()
        jf.close()

    return f, commit, close


def run_big(opener: Opener, path: str, mib: int, commit_each: bool) -> tuple[float, float]:
    block = np.random.default_rng(0).standard_normal((1024, 1024))  # 8 MiB
    f, commit, close = opener(path)
    start = _clock()
    ds = f.create_dataset("x", shape=(0, 1024), maxshape=(None, 1024), dtype="f8",
                          chunks=(128, 1024))
    for _ in range(mib // 8):
        n = ds.shape[0]
        ds.resize(n + 1024, axis=0)
        ds.write_direct(block, dest_sel=np.s_[n:n + 1024])
        if commit_each:
            commit()
    close()
    return _since(start)


def run_small(opener: Opener, path: str, count: int,
              commit_each: bool) -> tuple[float, float]:
    rows = np.random.default_rng(0).standard_normal((10, 16)).astype("f4")
    f, commit, close = opener(path)
    start = _clock()
    ds = f.create_dataset("y", shape=(0, 16), maxshape=(None, 16), dtype="f4",
                          chunks=(1024, 16))
    for _ in range(count):
        n = ds.shape[0]
        ds.resize(n + 10, axis=0)
        ds.write_direct(rows, dest_sel=np.s_[n:n + 10])
        if commit_each:
            commit()
    close()
    return _since(start)


def run_rewrite(opener: Opener, path: str, mib: int,
                commit_each: bool) -> tuple[float, float]:
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.zeros((mib * 128, 1024)), chunks=(128, 1024),
                         maxshape=(None, 1024))
    block = np.ones((1024, 1024))
    f, commit, close = opener(path)
    start = _clock()
    ds = f["x"]
    for i in range(mib // 8):
        ds.write_direct(block, dest_sel=np.s_[i * 1024:(i + 1) * 1024])
        if commit_each:
            commit()
    close()
    return _since(start)


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(start: tuple[float, float]) -> tuple[float, float]:
    return time.perf_counter() - start[0], time.process_time() - start[1]


def best(fn: Callable[[], tuple[float, float]], repeat: int) -> tuple[float, float]:
    """The shortest wall-clock and the shortest CPU time (user + system) of ``repeat`` runs;
    on a busy machine the CPU time is the steadier measure of what the code costs."""
    runs = [fn() for _ in range(repeat)]
    return min(r[0] for r in runs), min(r[1] for r in runs)


def _rate(amount: float, times: tuple[float, float]) -> str:
    return f"{amount / times[0]:>8.0f} {amount / times[1]:>8.0f}"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dir", default=None, help="where to write (default: a temporary dir)")
    p.add_argument("--mib", type=int, default=256)
    p.add_argument("--small", type=int, default=10_000)
    p.add_argument("--repeat", type=int, default=2)
    args = p.parse_args(argv)
    where = tempfile.mkdtemp(dir=args.dir)
    path = os.path.join(where, "b.h5")

    def fresh() -> None:
        for name in os.listdir(where):
            os.unlink(os.path.join(where, name))

    variants: list[tuple[str, Opener, bool]] = [
        ("native (sec2)", native, False),
        ("native, flush per block", native, True),
        ("fileobj, plain file", plain, False),
        ("journal, one commit", journaled, False),
        ("journal, commit per block", journaled, True),
    ]
    try:
        print("rates: wall-clock, then per CPU second (user + system)")
        print(f"{'case':<28} {'big MB/s':>17} {'small appends/s':>17} {'rewrite MB/s':>17}")
        for name, opener, each in variants:
            def big(opener: Opener = opener, each: bool = each) -> tuple[float, float]:
                fresh()
                return run_big(opener, path, args.mib, each)

            def small(opener: Opener = opener, each: bool = each) -> tuple[float, float]:
                fresh()
                return run_small(opener, path, args.small, each)

            def rewrite(opener: Opener = opener, each: bool = each) -> tuple[float, float]:
                fresh()
                return run_rewrite(opener, path, 64, each)

            tb, ts, tr = best(big, args.repeat), best(small, args.repeat), best(rewrite,
                                                                                args.repeat)
            print(f"{name:<28} {_rate(args.mib * 1.048576, tb)} {_rate(args.small, ts)} "
                  f"{_rate(64 * 1.048576, tr)}", flush=True)

        print()
        print(f"{'HDF5Backend.append':<28} {'big MB/s':>17} {'small appends/s':>17}")
        big_block = np.random.default_rng(0).standard_normal((1024, 1024))
        rows = np.random.default_rng(0).standard_normal((10, 16)).astype("f4")
        for name, one_tx in (("a transaction per append", False),
                             ("all in one transaction", True)):
            def backend_big(one_tx: bool = one_tx) -> tuple[float, float]:
                fresh()
                be = HDF5Backend(path=path, chunk_bytes=1 << 20)
                be.create_data_id("d")
                start = _clock()
                with be.transaction() if one_tx else _nothing():
                    for _ in range(args.mib // 8):
                        be.append("d", "train", "x", big_block)
                be.close()
                return _since(start)

            def backend_small(one_tx: bool = one_tx) -> tuple[float, float]:
                fresh()
                be = HDF5Backend(path=path, chunk_bytes=64 << 10)
                be.create_data_id("d")
                start = _clock()
                with be.transaction() if one_tx else _nothing():
                    for _ in range(args.small):
                        be.append("d", "train", "y", rows)
                be.close()
                return _since(start)

            tb, ts = best(backend_big, args.repeat), best(backend_small, args.repeat)
            print(f"{name:<28} {_rate(args.mib * 1.048576, tb)} {_rate(args.small, ts)}",
                  flush=True)
    finally:
        shutil.rmtree(where, ignore_errors=True)


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


if __name__ == "__main__":
    main()
