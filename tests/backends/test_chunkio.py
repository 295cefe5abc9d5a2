"""Direct chunk-file reads and writes (``storegate.backends.chunkio``) and the arena policies
that use them."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from bench.common import evict  # the benchmarks' page-cache eviction
from storegate import StoreGate
from storegate.backends.arena import Arena, ArenaCache
from storegate.backends.chunkio import DescriptorCache, RawChunkFiles, descriptors
from storegate.errors import CorruptStoreError


def _chunked(tmp_path: Path, data: np.ndarray, chunk_rows: int) -> RawChunkFiles:
    """``data`` as raw chunk files (the last one padded to a whole chunk, as zarr stores it)."""
    n = data.shape[0]
    for c in range(-(-n // chunk_rows)):
        block = np.zeros((chunk_rows, *data.shape[1:]), data.dtype)
        part = data[c * chunk_rows:(c + 1) * chunk_rows]
        block[: part.shape[0]] = part
        block.tofile(tmp_path / str(c))
    return RawChunkFiles(lambda c: str(tmp_path / str(c)), n, chunk_rows, data.shape[1:],
                         data.dtype, io_threads=8, name="var 'x'", directory=str(tmp_path))


@pytest.fixture
def data() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((1000, 3, 2)).astype("f4")


@pytest.mark.parametrize("threads", [1, 8])
def test_read_rows_matches_numpy(tmp_path: Path, data: np.ndarray, threads: int) -> None:
    files = _chunked(tmp_path, data, 64)
    files.io_threads = threads
    rng = np.random.default_rng(1)
    for index in (rng.choice(1000, 300, replace=False),          # unsorted, unique
                  np.sort(rng.choice(1000, 300, replace=False)),  # sorted
                  rng.integers(0, 1000, 500),                     # repeats
                  np.arange(100, 400),                            # one run across chunks
                  np.array([999]), np.array([0, 0, 0])):
        out = np.empty((index.size, 3, 2), "f4")
        files.read_rows(index, out)
        np.testing.assert_array_equal(out, data[index])


def test_read_range_matches_numpy(tmp_path: Path, data: np.ndarray) -> None:
    files = _chunked(tmp_path, data, 64)
    for a, b in ((0, 1000), (63, 65), (5, 6), (640, 1000), (999, 1000)):
        out = np.empty((b - a, 3, 2), "f4")
        files.read_range(a, b, out)
        np.testing.assert_array_equal(out, data[a:b])


def test_truncated_chunk_file_is_an_error_naming_the_var(tmp_path: Path,
                                                         data: np.ndarray) -> None:
    files = _chunked(tmp_path, data, 64)
    with open(tmp_path / "3", "r+b") as f:
        f.truncate(100)
    out = np.empty((1, 3, 2), "f4")
    with pytest.raises(CorruptStoreError, match=r"chunk file .*3.* of var 'x' is truncated"):
        files.read_rows(np.array([3 * 64 + 10]), out)
    with pytest.raises(CorruptStoreError, match="truncated"):
        files.read_range(3 * 64, 4 * 64, np.empty((64, 3, 2), "f4"))
    files.read_rows(np.array([5]), out)  # other chunks still read
    np.testing.assert_array_equal(out[0], data[5])


def test_missing_chunk_file_reads_as_fill_value(tmp_path: Path, data: np.ndarray) -> None:
    files = _chunked(tmp_path, data, 64)
    descriptors.forget(str(tmp_path))
    os.remove(tmp_path / "2")
    out = np.empty((2, 3, 2), "f4")
    files.read_rows(np.array([2 * 64, 1]), out)
    np.testing.assert_array_equal(out[0], 0)
    np.testing.assert_array_equal(out[1], data[1])


def test_write_range_keeps_earlier_rows_and_pads(tmp_path: Path, data: np.ndarray) -> None:
    files = _chunked(tmp_path, data[:100], 64)
    files.write_range(100, data[100:300])  # completes chunk 1, writes 2 and 3 (padded)
    descriptors.forget(str(tmp_path))
    files.rows = 300
    out = np.empty((300, 3, 2), "f4")
    files.read_range(0, 300, out)
    np.testing.assert_array_equal(out, data[:300])
    assert os.path.getsize(tmp_path / "4") == 64 * 24  # the last chunk, whole, zero padded
    tail = np.fromfile(tmp_path / "4", "f4").reshape(64, 3, 2)
    np.testing.assert_array_equal(tail[: 300 - 256], data[256:300])
    np.testing.assert_array_equal(tail[300 - 256:], 0)
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".partial")]


def test_descriptor_cache_bounds_and_leases(tmp_path: Path) -> None:
    paths = []
    for i in range(10):
        p = tmp_path / f"f{i}"
        p.write_bytes(b"x" * 10)
        paths.append(str(p))
    cache = DescriptorCache(capacity=3)
    with cache.lease() as get:
        fds = [get(p, "random") for p in paths[:5]]
        # all five are held: none may be closed while the block runs
        for fd in fds:
            assert os.pread(fd, 1, 0) == b"x"
    assert cache.open_count() == 3  # released: trimmed to capacity
    with cache.lease() as get:
        fd = get(paths[0], "random")
        cache.forget(str(tmp_path))  # forgotten while held: closed at release, not before
        assert os.pread(fd, 1, 0) == b"x"
    assert cache.open_count() == 0
    with pytest.raises(OSError):
        os.fstat(fd)
    with cache.lease() as get:
        assert get(str(tmp_path / "missing"), "random") == -1


def test_descriptor_cache_under_threads(tmp_path: Path, data: np.ndarray) -> None:
    files = _chunked(tmp_path, data, 8)  # 125 files
    old = descriptors.capacity
    descriptors.capacity = 16  # far fewer than the files: constant eviction
    try:
        errors: list[BaseException] = []

        def reader(seed: int) -> None:
            rng = np.random.default_rng(seed)
            try:
                for _ in range(30):
                    idx = rng.choice(1000, 200, replace=False)
                    out = np.empty((200, 3, 2), "f4")
                    files.read_rows(idx, out)
                    np.testing.assert_array_equal(out, data[idx])
            except BaseException as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=reader, args=(s,)) for s in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors[0]
    finally:
        descriptors.capacity = old
        descriptors.forget(str(tmp_path))


# ---------------------------------------------------------------------- arena policies
def _arena(tmp_path: Path, data: np.ndarray, chunk_rows: int) -> tuple[Arena, list[int]]:
    files = _chunked(tmp_path, data, chunk_rows)
    filled: list[int] = []

    def fill(a: int, b: int, out: np.ndarray) -> None:
        filled.append(b - a)
        files.read_range(a, b, out)

    return Arena(data.shape, data.dtype, chunk_rows, fill, files.read_rows), filled


@pytest.fixture
def big() -> np.ndarray:  # 48 MiB: above the size of vars filled whole
    return np.random.default_rng(2).standard_normal((1 << 20, 12)).astype("f4")


def test_random_batch_reads_rows_and_fills_in_background(tmp_path: Path,
                                                         big: np.ndarray) -> None:
    arena, filled = _arena(tmp_path, big, 8192)  # 128 chunks
    idx = np.random.default_rng(3).choice(big.shape[0], 1024, replace=False)
    np.testing.assert_array_equal(arena.take(idx), big[idx])
    assert arena._background is not None
    arena._background.join(60)
    assert arena.full and sum(filled) == big.shape[0]
    idx = np.random.default_rng(4).choice(big.shape[0], 1024, replace=False)
    np.testing.assert_array_equal(arena.take(idx), big[idx])


@pytest.mark.skipif(not hasattr(os, "RWF_NOWAIT"), reason="needs preadv(RWF_NOWAIT) (Linux)")
def test_random_batch_fills_at_once_when_the_pages_are_cached(tmp_path: Path,
                                                              big: np.ndarray) -> None:
    files = _chunked(tmp_path, big, 8192)
    files.read_range(0, big.shape[0], np.empty_like(big))  # every page in the page cache
    idx = np.random.default_rng(9).choice(big.shape[0], 1024, replace=False)
    assert files.cached(idx[:8])
    arena = Arena(big.shape, big.dtype, 8192, files.read_range, files.read_rows, files.cached)
    np.testing.assert_array_equal(arena.take(idx), big[idx])
    assert arena.full and arena._background is None
    evict(tmp_path)
    if files.cached(idx[:8]):
        pytest.skip("this file system keeps evicted pages (tmpfs?)")
    arena = Arena(big.shape, big.dtype, 8192, files.read_range, files.read_rows, files.cached)
    np.testing.assert_array_equal(arena.take(idx), big[idx])  # cold: rows now, fill later
    assert arena._background is not None
    arena._background.join(60)
    assert arena.full


def test_chunk_local_batch_fills_its_chunks(tmp_path: Path, big: np.ndarray) -> None:
    arena, filled = _arena(tmp_path, big, 8192)
    assert filled == []
    idx = np.random.default_rng(5).choice(np.arange(8192, 3 * 8192), 1024, replace=False)
    np.testing.assert_array_equal(arena.take(idx), big[idx])
    assert arena._background is None
    assert arena.resident.tolist()[:4] == [False, True, True, False]
    assert filled == [2 * 8192]  # one read of the two chunks


def test_lookup_reads_rows_and_fills_when_asked_again(tmp_path: Path, big: np.ndarray) -> None:
    arena, filled = _arena(tmp_path, big, 8192)
    np.testing.assert_array_equal(arena.take(np.array([10, 20_000])), big[[10, 20_000]])
    assert not arena.resident.any() and filled == []
    np.testing.assert_array_equal(arena.take(np.array([11])), big[[11]])
    assert arena.resident[0] and not arena.resident[2]


def test_small_var_is_filled_in_the_background(tmp_path: Path) -> None:
    y = np.arange(100_000, dtype=np.int64)
    arena, _ = _arena(tmp_path, y, 4096)
    np.testing.assert_array_equal(arena.take(np.array([5, 99_999])), y[[5, 99_999]])
    assert arena._background is not None
    arena._background.join(60)
    assert arena.full


def test_dropping_an_arena_stops_its_fill(tmp_path: Path, big: np.ndarray) -> None:
    cache = ArenaCache(limit=1 << 30)
    files = _chunked(tmp_path, big, 8192)

    def slow_fill(a: int, b: int, out: np.ndarray) -> None:
        time.sleep(0.01)
        files.read_range(a, b, out)

    arena = Arena(big.shape, big.dtype, 8192, slow_fill, files.read_rows)
    cache.put("x", arena)
    arena.take(np.random.default_rng(6).choice(big.shape[0], 1024, replace=False))
    assert arena._background is not None
    cache.drop("x")
    arena._background.join(10)
    assert not arena._background.is_alive() and not arena.full


# ---------------------------------------------------------------------- through the backend
def test_zarr_backend_reads_rows_directly_beyond_the_cache(tmp_path: Path) -> None:
    x = np.random.default_rng(7).standard_normal((50_000, 16)).astype("f4")
    path = str(tmp_path / "s.zarr")
    sg = StoreGate("zarr", {"output_dir": path}, data_id="d")
    sg.add_data("x", x)
    sg.compile()
    sg.close()
    ro = StoreGate("zarr", {"output_dir": path, "mode": "r", "cache_bytes": 1 << 20},
                   data_id="d")
    idx = np.random.default_rng(8).integers(0, 50_000, 3000)
    np.testing.assert_array_equal(ro.get_data("x", "train", idx), x[idx])
    assert ro.db._cache.items() == []  # no arena: the var is larger than the cache
    np.testing.assert_array_equal(ro["train"]["x"][1000:2000], x[1000:2000])


def test_appends_rewrite_chunks_seen_by_cached_descriptors(tmp_path: Path) -> None:
    """A chunk file replaced by an append must not be read through a stale descriptor."""
    path = str(tmp_path / "s.zarr")
    sg = StoreGate("zarr", {"output_dir": path, "chunk": 100, "cache_bytes": 0}, data_id="d")
    first = np.arange(150, dtype="f8")
    sg.add_data("x", first)
    sg.compile()
    np.testing.assert_array_equal(sg.get_data("x", "train", np.array([120, 149])),
                                  [120.0, 149.0])
    sg.add_data("x", np.arange(150, 260, dtype="f8"))
    sg.compile()
    np.testing.assert_array_equal(sg.get_data("x", "train", np.array([149, 150, 199, 259])),
                                  [149.0, 150.0, 199.0, 259.0])
    sg.update_data("x", np.array([-1.0]), index=[120])
    np.testing.assert_array_equal(sg.get_data("x", "train", np.array([120])), [-1.0])
