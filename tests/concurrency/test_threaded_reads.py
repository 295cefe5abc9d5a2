"""One StoreGate shared by threads for reading (DESIGN §4: views are safe across threads).

Eight threads start together (a barrier) on a gate whose caches are cold, so they race on every
lazy step at once: opening the store and its arrays, loading the compile metadata, creating
the per-var readers and arenas, filling arenas in the background while other threads gather,
evicting arenas under a small ``cache_bytes``, and descriptor and handle caches. Each thread
reads random batches, slices, single rows and the last rows of several vars, and checks each
result exactly against the in-memory truth; some threads also ask ``len``, ``in``,
``get_var_names``, ``get_var_shapes`` and ``get_metadata`` while the others read. Any
exception or wrong value in any thread fails the test with the thread's traceback.
"""

from __future__ import annotations

import importlib.util
import threading
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from concurrency_helpers import check_rows, x_rows, y_rows

from storegate import StoreGate
from storegate.backends.arena import ArenaCache

THREADS = 8
ITERATIONS = 60  # per thread; a few seconds per configuration on 2 cores
N = 20_000  # train rows (valid, test: N // 10 each)


def _truth(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"x": x_rows((0, n)), "y": y_rows((0, n)),
            "w": rng.standard_normal((n, 3)).astype(np.float32)}


TRUTH = {p: _truth(n, s) for p, n, s in (("train", N, 1), ("valid", N // 10, 2),
                                         ("test", N // 10, 3))}


def _fill(sg: StoreGate, compile: bool = True) -> None:
    for phase, cols in TRUTH.items():
        # in pieces, so disk backends get several chunks / row groups / files
        n = len(cols["y"])
        for a in range(0, n, 4_000):
            b = min(n, a + 4_000)
            for var in ("x", "y", "w"):
                sg.add_data(var, cols[var][a:b], phase=phase)
    if compile:
        sg.compile()
    else:
        assert not sg._load_meta("d").compiled  # the reads will compile it


# ---------------------------------------------------------------------------------- configs
def _have(module: str) -> bool:
    spec = importlib.util.find_spec(module)
    return spec is not None and spec.origin is not None


CONFIGS: dict[str, dict[str, Any]] = {
    # name: backend, writer args, reader args (None: read through the writing gate), warm-up
    "numpy": {"backend": "numpy", "write": {}, "read": None},
    "zarr-cold": {"backend": "zarr", "write": {"chunk_bytes": 32 << 10}, "read": {}},
    "zarr-warm": {"backend": "zarr", "write": {"chunk_bytes": 32 << 10}, "read": {},
                  "warm": True},
    # arenas larger than the budget one at a time: gathers evict each other's arenas
    "zarr-evicting": {"backend": "zarr", "write": {"chunk_bytes": 32 << 10},
                      "read": {"cache_bytes": 1_400_000}},
    # no arenas: rows straight from the chunk files through the I/O pool
    "zarr-no-arena": {"backend": "zarr", "write": {"chunk_bytes": 32 << 10},
                      "read": {"cache_bytes": 0, "io_threads": 4}},
    "zarr-lz4": {"backend": "zarr", "write": {"chunk_bytes": 32 << 10, "compressor": "lz4"},
                 "read": {}},
    # many files and row groups (fewer than the 64 handles the backend keeps open; the test
    # at the end evicts handles under reading threads)
    "parquet": {"backend": "parquet", "write": {"row_group_rows": 128, "file_rows": 1024},
                "read": {}},
    "parquet-no-arena": {"backend": "parquet", "write": {"row_group_rows": 128,
                                                          "file_rows": 1024},
                         "read": {"cache_bytes": 0, "rowgroup_cache_bytes": 200_000}},
    "hdf5": {"backend": "hdf5", "write": {"chunk": 512}, "read": {}},
    "hybrid": {"backend": "hybrid", "write": {"chunk_bytes": 32 << 10}, "read": {},
               "to_memory": "w"},
    "hybrid-same-gate": {"backend": "hybrid", "write": {"chunk_bytes": 32 << 10},
                         "read": None, "to_memory": "w"},
    # the writing gate, not compiled after its last append: the first reads of every thread
    # compile it implicitly (and persist that) at the same time
    "numpy-stale": {"backend": "numpy", "write": {}, "read": None, "stale": True},
    "zarr-stale-writer": {"backend": "zarr", "write": {"chunk_bytes": 32 << 10}, "read": None,
                          "stale": True},
    "parquet-stale-writer": {"backend": "parquet", "write": {"row_group_rows": 128,
                                                              "file_rows": 1024},
                             "read": None, "stale": True},
    "hdf5-stale-writer": {"backend": "hdf5", "write": {"chunk": 512}, "read": None,
                          "stale": True},
}


def _requirement(backend: str) -> str | None:
    if backend == "parquet" and not _have("pyarrow"):
        return "pyarrow"
    if backend == "hdf5" and not _have("storegate_hdf5"):
        return "storegate_hdf5"
    return None


def _make(name: str, tmp_path: Path) -> StoreGate:
    cfg = CONFIGS[name]
    backend = cfg["backend"]
    missing = _requirement(backend)
    if missing:
        pytest.skip(f"{missing} is not installed")
    key = "path" if backend == "hdf5" else "output_dir"
    loc = {} if backend == "numpy" else {
        key: str(tmp_path / ("store.h5" if backend == "hdf5" else "store"))}
    sg = StoreGate(backend, {**loc, **cfg["write"]}, data_id="d")
    _fill(sg, compile=not cfg.get("stale"))
    if cfg.get("to_memory"):
        sg.to_memory(cfg["to_memory"], phase="all")
    if cfg["read"] is None:
        return sg
    sg.close()
    reader = StoreGate(backend, {**loc, **cfg["read"], "mode": "r"}, data_id="d")
    if cfg.get("warm"):
        for phase in TRUTH:
            for var in ("x", "y", "w"):
                n = len(TRUTH[phase][var])
                reader[phase][var][np.arange(n)]  # fills the arenas
    return reader


# ---------------------------------------------------------------------------------- workers
def _expect(phase: str, var: str, index: Any) -> np.ndarray:
    return TRUTH[phase][var][index]


def _same(got: Any, want: np.ndarray, what: str) -> None:
    got = np.asarray(got)
    if got.shape != want.shape or got.dtype != want.dtype or not np.array_equal(got, want):
        raise AssertionError(f"{what}: got shape {got.shape} {got.dtype}, expected "
                             f"{want.shape} {want.dtype}; equal values: "
                             f"{got.shape == want.shape and np.array_equal(got, want)}")


def _reader(sg: StoreGate, seed: int, counts: list[int]) -> None:
    rng = np.random.default_rng(seed)
    reads = 0
    for _ in range(ITERATIONS):
        phase = ("train", "train", "valid", "test")[int(rng.integers(4))]
        n = len(TRUTH[phase]["y"])
        view = sg[phase]
        kind = int(rng.integers(6))
        if kind == 0:  # a random batch of two vars, one batched read
            idx = rng.integers(0, n, size=int(rng.integers(1, 1025)))
            xs, ys = view[["x", "y"]][idx]
            bad = check_rows(idx, xs, ys) if phase == "train" else None
            assert bad is None, bad
            _same(xs, _expect(phase, "x", idx), f"{phase}[['x','y']][idx] x")
            _same(ys, _expect(phase, "y", idx), f"{phase}[['x','y']][idx] y")
        elif kind == 1:  # one var, random rows
            var = ("x", "y", "w")[int(rng.integers(3))]
            idx = rng.integers(0, n, size=int(rng.integers(1, 513)))
            _same(view[var][idx], _expect(phase, var, idx), f"{phase}[{var!r}][idx]")
        elif kind == 2:  # a slice, a scan step
            var = ("x", "y", "w")[int(rng.integers(3))]
            a = int(rng.integers(0, n))
            b = min(n, a + int(rng.integers(1, 3000)))
            _same(view[var][a:b], _expect(phase, var, slice(a, b)), f"{phase}[{var!r}][a:b]")
        elif kind == 3:  # single rows and the last rows
            i = int(rng.integers(0, n))
            _same(view["x"][i], _expect(phase, "x", i), f"{phase}['x'][{i}]")
            _same(sg.get_data("w", phase, n - 1), _expect(phase, "w", n - 1),
                  f"get_data('w', {phase!r}, n-1)")
            _same(view["y"][n - 50:n], _expect(phase, "y", slice(n - 50, n)),
                  f"{phase}['y'][n-50:n]")
        elif kind == 4:  # 'all' over the three phases, sorted unique rows
            total = sum(len(c["y"]) for c in TRUTH.values())
            idx = np.unique(rng.integers(0, total, size=int(rng.integers(1, 257))))
            want = np.concatenate([TRUTH[p]["w"] for p in ("train", "valid", "test")])[idx]
            _same(sg.get_data("w", "all", idx), want, "get_data('w', 'all', idx)")
        else:  # a tuple read of vars with one row shape: w and w as (N, 2, 3)
            idx = rng.integers(0, n, size=int(rng.integers(1, 129)))
            got = view[("w", "w")][idx]
            want = np.stack([_expect(phase, "w", idx)] * 2, axis=1)
            _same(got, want, f"{phase}[('w','w')][idx]")
        reads += 1
    counts.append(reads)


def _asker(sg: StoreGate, seed: int, counts: list[int]) -> None:
    """Metadata queries (no data reads) while the other threads read."""
    rng = np.random.default_rng(seed)
    calls = 0
    for _ in range(ITERATIONS * 3):
        phase = ("train", "valid", "test")[int(rng.integers(3))]
        assert len(sg[phase]) == len(TRUTH[phase]["y"])
        assert sg.get_var_names(phase) == ["x", "y", "w"]
        assert "x" in sg[phase] and "nope" not in sg[phase]
        assert sg.get_var_shapes(["x", "y", "w"], phase) == [(8,), (), (3,)]
        meta = sg.get_metadata()
        assert meta["total_events"] == [N, N // 10, N // 10], meta
        assert sorted(sg.get_data_ids()) == ["d"]
        calls += 6
        if rng.random() < 0.3:  # and a read now and then
            i = int(rng.integers(0, len(TRUTH[phase]["y"])))
            _same(sg[phase]["y"][i], _expect(phase, "y", i), f"{phase}['y'][{i}]")
    counts.append(calls)


def _run_threads(sg: StoreGate, askers: int = 2) -> tuple[int, int]:
    barrier = threading.Barrier(THREADS)
    errors: list[str] = []
    reads: list[int] = []
    queries: list[int] = []

    def body(k: int) -> None:
        try:
            barrier.wait()
            if k < askers:
                _asker(sg, 1000 + k, queries)
            else:
                _reader(sg, k, reads)
        except BaseException:
            errors.append(f"thread {k}:\n{traceback.format_exc()}")
            barrier.abort()

    threads = [threading.Thread(target=body, args=(k,), name=f"reader-{k}")
               for k in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a reader thread hangs"
    assert not errors, "\n".join(errors[:3])
    return sum(reads), sum(queries)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_threads_share_one_gate(name: str, tmp_path: Path) -> None:
    """8 threads (2 asking metadata, 6 reading) on one cold gate: every result exact."""
    sg = _make(name, tmp_path)
    try:
        reads, queries = _run_threads(sg)
        assert reads == (THREADS - 2) * ITERATIONS
        assert queries == 2 * ITERATIONS * 3 * 6
    finally:
        sg.close()


@pytest.mark.parametrize("name", ["zarr-cold", "parquet", "hdf5"])
def test_threads_after_reopen_of_same_gate(name: str, tmp_path: Path) -> None:
    """close() releases handles but leaves the gate usable: threads reopen it together."""
    sg = _make(name, tmp_path)
    try:
        _run_threads(sg, askers=1)
        sg.close()
        _run_threads(sg, askers=1)
    finally:
        sg.close()


# ---------------------------------------------------------------------------------- regressions
def test_arena_cache_get_while_put_evicts() -> None:
    """ArenaCache.get reorders the LRU while put/items/drop_prefix iterate it in other threads
    (a dict mutated during iteration raised RuntimeError in the reading thread)."""

    class Fake:
        def __init__(self, nbytes: int) -> None:
            self.nbytes = nbytes

        def cancel(self) -> None:
            pass

    cache = ArenaCache(limit=10 * 100)
    for k in range(10):
        cache.put(("d", "train", f"v{k}"), Fake(100))  # type: ignore[arg-type]
    stop = threading.Event()
    errors: list[str] = []

    def getter(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            while not stop.is_set():
                cache.get(("d", "train", f"v{int(rng.integers(12))}"))
        except BaseException:
            errors.append(traceback.format_exc())

    def putter() -> None:
        rng = np.random.default_rng(99)
        try:
            for i in range(20_000):
                k = int(rng.integers(12))
                cache.put(("d", "train", f"v{k}"), Fake(100 + (i % 3) * 50))  # type: ignore[arg-type]
                if i % 7 == 0:
                    cache.items()
                if i % 11 == 0:
                    cache.drop_prefix(("d", "valid"))
                _ = cache.used
        except BaseException:
            errors.append(traceback.format_exc())
        finally:
            stop.set()

    threads = [threading.Thread(target=getter, args=(s,)) for s in range(3)]
    threads.append(threading.Thread(target=putter))
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[0]
    assert cache.used <= cache.limit


_EVICT = """
import sys, threading, traceback
sys.path.insert(0, {here!r})
import numpy as np
from concurrency_helpers import check_rows, x_rows, y_rows
from storegate import StoreGate
from storegate.backends import parquet_backend

parquet_backend._MAX_HANDLES = 2
path = {path!r}
sg = StoreGate("parquet", {{"output_dir": path, "row_group_rows": 128, "file_rows": 256}},
               data_id="d")
n = 8192  # 32 files
sg.add_data(["x", "y"], [x_rows((0, n)), y_rows((0, n))], phase="train")
sg.compile()
sg.close()
reader = StoreGate("parquet", {{"output_dir": path, "mode": "r", "cache_bytes": 0,
                                "rowgroup_cache_bytes": 0}}, data_id="d")
errors = []
barrier = threading.Barrier(8)

def body(k):
    rng = np.random.default_rng(k)
    try:
        barrier.wait()
        for _ in range(200):
            idx = rng.integers(0, n, size=16)
            bad = check_rows(idx, *reader["train"][["x", "y"]][idx])
            assert bad is None, bad
    except BaseException:
        errors.append(traceback.format_exc())

threads = [threading.Thread(target=body, args=(k,)) for k in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join(120)
print(errors[0] if errors else "ok")
"""


def test_parquet_handle_eviction_while_reading(tmp_path: Path) -> None:
    """Threads reading through more Parquet files than the backend keeps open (here 2, by
    default 64): a handle evicted by one thread must not be closed under another thread's
    read. Runs in a child process, because the bug can crash the interpreter."""
    import subprocess
    import sys

    from concurrency_helpers import HERE, child_env

    if _requirement("parquet"):
        pytest.skip("pyarrow is not installed")
    code = _EVICT.format(here=str(HERE), path=str(tmp_path / "s"))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env=child_env())
    assert proc.returncode == 0, f"the reader process died ({proc.returncode}):\n" \
        f"{proc.stderr[-3000:]}"
    assert proc.stdout.strip().endswith("ok"), proc.stdout[-3000:]
