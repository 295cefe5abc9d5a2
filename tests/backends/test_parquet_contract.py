"""The backend contract suite run for the parquet backend.

``TestParquetBackend`` uses tiny row groups and files (3 rows per row group, 7 per file), so
reads, gathers and in-place writes cross many row-group and file boundaries; the variants run
without the decoded arena, and with compression and default sizes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from storegate.backends.base import Backend
from storegate.testing import BackendContract
from storegate.testing.contract import DID
from storegate.testing.helpers import assert_identical
from storegate.testing.ragged import ragged_sample

pytest.importorskip("pyarrow")

from storegate.backends.parquet_backend import ParquetBackend


class TestParquetBackend(BackendContract):
    """Small row groups and files: every read crosses boundaries."""

    options: dict[str, Any] = {"row_group_rows": 3, "file_rows": 7}
    #: 7-row files make 200,000 rows 28,500 files (28 s); 12,000 rows cross as many boundaries
    #: per read (1,024 random rows touch about as many files either way)
    large_rows = 12_000

    @pytest.fixture
    def where(self, tmp_path: Path) -> dict[str, Any]:
        """The store's location arguments (``output_dir``, and ``storage_options`` for URLs);
        the variants on other storage override only this."""
        return {"output_dir": str(tmp_path / "store.parquet")}

    @pytest.fixture
    def backend(self, where: dict[str, Any]) -> Iterator[Backend]:
        be = ParquetBackend(**where, **self.options)
        yield be
        be.close()  # write buffered rows now, not when garbage collection gets to it

    @pytest.fixture
    def reopen(self, where: dict[str, Any]) -> Iterator[Callable[[Backend], Backend]]:
        opened: list[Backend] = []

        def factory(old: Backend) -> Backend:
            be = ParquetBackend(**where, **self.options)
            opened.append(be)
            return be

        yield factory
        for be in opened:
            be.close()

    @pytest.fixture
    def readonly_backend(self, where: dict[str, Any]) -> Iterator[Callable[[Backend], Backend]]:
        opened: list[Backend] = []

        def factory(old: Backend) -> Backend:
            be = ParquetBackend(**where, mode="r")
            opened.append(be)
            return be

        yield factory
        for be in opened:
            be.close()


class TestParquetBackendNoCache(TestParquetBackend):
    """No arena and no row-group cache: every read decodes its row groups from the files."""

    options: dict[str, Any] = {"row_group_rows": 4, "file_rows": 9, "cache_bytes": 0,
                               "rowgroup_cache_bytes": 0}


class TestParquetBackendCompressed(TestParquetBackend):
    """zstd-compressed files with the default (byte-sized) row groups and files, and an append
    buffer so small that appends are written almost immediately."""

    options: dict[str, Any] = {"compression": "zstd", "buffer_bytes": 64}


class TestParquetBackendFsspec(TestParquetBackend):
    """A ``memory://`` URL, through fsspec: the remote code path (no lock, no journal, byte
    ranges fetched from the file system) with small row groups and files."""

    #: fewer rows in the large gathers (the same reads): 200,000 rows of 3-row groups make
    #: 28,000 files, and fsspec's memory file system scans all of its files at every write
    large_rows = 4096

    @pytest.fixture
    def where(self, tmp_path: Path) -> Iterator[dict[str, Any]]:
        pytest.importorskip("fsspec")
        url = f"memory://storegate-parquet-{os.getpid()}/{tmp_path.name}/store.parquet"
        yield {"output_dir": url}
        _wipe_memory(url)

    def test_read_in_spawned_process(self) -> None:  # type: ignore[override]
        pytest.skip("memory:// file systems live in one process; spawn cannot see them")

    def test_ragged_pickle_and_spawn(self) -> None:  # type: ignore[override]
        pytest.skip("memory:// file systems live in one process; spawn cannot see them")


def _wipe_memory(url: str) -> None:
    """Drop a memory:// store (the file system is process-wide; tests must not pile up)."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(url)
    if fs.exists(root):
        fs.rm(root, recursive=True)


class TestParquetBackendS3(TestParquetBackend):
    """An ``s3://`` URL on the local S3-protocol server (moto), through s3fs: every request is
    real HTTP, and spawned processes reach the store over TCP. Small row groups and files, so
    reads cross boundaries and gathers fetch many byte ranges concurrently."""

    #: fewer rows in the large gathers (the same reads): every 7-row file is a request
    large_rows = 4096

    def test_ragged_large_gather(self, rag: tuple[Backend, Backend]) -> None:
        """The contract's large ragged gather (1,000 random rows, repeats, any order, read
        through the whole-var decode) on 3,000 rows instead of 20,000: with 7-row files those
        would be 2,900 objects, each a request to the local S3 server."""
        data = ragged_sample(3_000, (4,), "f4", seed=7, max_len=12)
        for be in rag:
            be.append(DID, "train", "r", data)
        idx = np.random.default_rng(0).integers(0, 3_000, 1000)
        got = rag[0].read(DID, "train", "r", idx)
        assert_identical(got, rag[1].read(DID, "train", "r", idx), "large ragged gather")
        assert got == data.take(idx)

    @pytest.fixture
    def where(self, s3_url: str, local_s3: Any) -> dict[str, Any]:
        return {"output_dir": f"{s3_url}/store.parquet",
                "storage_options": local_s3.storage_options}
