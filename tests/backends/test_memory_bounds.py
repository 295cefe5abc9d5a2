"""Memory stays bounded by ``cache_bytes`` when a store is larger than its cache.

Each case runs in a fresh process (so the resident set measured is the reader's alone): it
opens a store of about 190 MB with a 16 MiB cache, runs a loop of random batches while the
store's pages are evicted from the page cache every few batches (a cold store), and reports
the growth of its resident set. The bound is the cache plus 200 MB. A contrasting run with a
cache large enough for the store shows the measurement does see an arena fill.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from storegate import StoreGate

ROWS, DIM = 360_000, 128  # 184 MB of float32
CACHE = 16 << 20

CHILD = textwrap.dedent("""
    import gc, json, os, sys, time
    import numpy as np
    from storegate import StoreGate

    backend, location, batches = sys.argv[1], sys.argv[2], int(sys.argv[4])
    caches = json.loads(sys.argv[3])

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def evict():
        for root, _, files in os.walk(location):
            for name in files:
                fd = os.open(os.path.join(root, name), os.O_RDONLY)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                os.close(fd)

    sg = StoreGate(backend, {"output_dir": location, "mode": "r", **caches}, data_id="m")
    n = len(sg["train"]["x"])
    rng = np.random.default_rng(0)
    sg.get_data(["x", "y"], "train", np.array([0]))  # imports and handles, not an arena of x
    gc.collect()
    base = peak = rss()
    total = 0.0
    for b in range(batches):
        if b % 5 == 0:
            evict()
        idx = rng.choice(n, 1024, replace=False)
        x, y = sg.get_data(["x", "y"], "train", idx)
        assert x.shape == (1024, 128) and y.shape == (1024,)
        total += float(x[:, 0].sum())
        peak = max(peak, rss())
    threads = [t for t in __import__("threading").enumerate() if "arena" in t.name]
    for t in threads:
        t.join(60)
    peak = max(peak, rss())
    print(json.dumps({"base": base, "peak": peak, "checksum": total}))
""")


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("membound")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((ROWS, DIM), dtype=np.float32)
    y = rng.integers(0, 10, ROWS)
    out = {}
    for backend in ("zarr", "parquet"):
        path = str(root / f"{backend}.store")
        sg = StoreGate(backend, {"output_dir": path}, data_id="m")
        sg.add_data("x", x)
        sg.add_data("y", y)
        sg.compile()
        sg.close()
        out[backend] = path
    return out


def _caches(backend: str, cache: int) -> dict[str, int]:
    """Every memory budget of a backend, set to ``cache`` (parquet also caches decoded row
    groups for reads that do not go through an arena)."""
    if backend == "parquet":
        return {"cache_bytes": cache, "rowgroup_cache_bytes": cache}
    return {"cache_bytes": cache}


def _growth(backend: str, location: str, cache: int, batches: int) -> int:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, backend, location, json.dumps(_caches(backend, cache)),
         str(batches)],
        capture_output=True, text=True, timeout=600, cwd=Path(__file__).parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    return int(report["peak"] - report["base"])


@pytest.mark.parametrize(("backend", "batches"), [("zarr", 200), ("parquet", 12)])
def test_cold_gather_loop_stays_within_cache_plus_200_mb(stores: dict[str, str], backend: str,
                                                         batches: int) -> None:
    growth = _growth(backend, stores[backend], CACHE, batches)
    configured = sum(_caches(backend, CACHE).values())
    assert growth <= configured + (200 << 20), f"{backend}: RSS grew by {growth >> 20} MiB"


def test_the_measurement_sees_an_arena(stores: dict[str, str]) -> None:
    """With a cache that admits the store, the loop fills an arena of about its size: the
    bound above is a real bound, not a measurement that cannot grow."""
    growth = _growth("zarr", stores["zarr"], 1 << 30, 30)
    assert growth > 0.8 * ROWS * DIM * 4, f"RSS grew by only {growth >> 20} MiB"
