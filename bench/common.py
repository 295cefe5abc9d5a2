"""Helpers shared by the benchmarks: timing, page-cache eviction, machine description."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np


def timed(fn: Callable[[], object]) -> float:
    """Seconds taken by ``fn()``."""
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def median_ms(fn: Callable[[np.ndarray], object], batches: Iterable[np.ndarray],
              before: Callable[[], object] | None = None) -> float:
    """Median milliseconds of ``fn(batch)`` over ``batches`` (``before()`` untimed each time)."""
    times = []
    for idx in batches:
        if before is not None:
            before()
        t = time.perf_counter()
        fn(idx)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def files_under(*paths: str | os.PathLike[str]) -> list[str]:
    """Every regular file at or under ``paths``."""
    out: list[str] = []
    for p in map(Path, paths):
        if p.is_file():
            out.append(str(p))
        elif p.is_dir():
            out.extend(str(f) for f in p.rglob("*") if f.is_file())
    return out


def evict(*paths: str | os.PathLike[str]) -> None:
    """Drop the page-cache pages of every file at or under ``paths`` (``fsync`` first, then
    ``posix_fadvise(POSIX_FADV_DONTNEED)``), so the next read comes from the disk."""
    for f in files_under(*paths):
        fd = os.open(f, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def read_bytes() -> int:
    """Bytes this process has made the block layer read (``/proc/self/io``), or 0."""
    try:
        with open("/proc/self/io") as f:
            for line in f:
                if line.startswith("read_bytes:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_bytes() -> int:
    """Resident set size of this process now."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def machine() -> str:
    """CPU, cores, RAM, Python and numpy versions."""
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
    return (f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, Python "
            f"{platform.python_version()}, numpy {np.__version__}")


def versions(*modules: str) -> str:
    """``name version`` of each importable module."""
    import importlib

    out = []
    for name in modules:
        try:
            out.append(f"{name} {importlib.import_module(name).__version__}")
        except Exception:
            continue
    return ", ".join(out)


def fmt_ms(ms: float) -> str:
    """A duration for a table: µs, ms or s."""
    if ms < 1:
        return f"{ms * 1e3:.0f} µs"
    if ms < 1000:
        return f"{ms:.3g} ms" if ms < 100 else f"{ms:.0f} ms"
    return f"{ms / 1e3:.2f} s"


def zarr_python_arrays(path: Path, X: np.ndarray, y: np.ndarray) -> tuple[object, object]:
    """X and y written with zarr-python alone into ``path/x``, ``path/y``: uncompressed, the
    chunks storegate's zarr backend picks for them (8,192 rows of X, 524,288 labels)."""
    import shutil

    import zarr

    shutil.rmtree(path, ignore_errors=True)
    zx = zarr.create_array(str(path / "x"), shape=X.shape, chunks=(8192, *X.shape[1:]),
                           dtype=X.dtype, compressors=None)
    zx[:] = X
    zy = zarr.create_array(str(path / "y"), shape=y.shape, chunks=(524288,), dtype=y.dtype,
                           compressors=None)
    zy[:] = y
    return zx, zy
