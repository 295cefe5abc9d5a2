"""The backend contract suite run for the parquet backend.

``TestParquetBackend`` uses tiny row groups and files (3 rows per row group, 7 per file), so
reads, gathers and in-place writes cross many row-group and file boundaries; the variants run
without the decoded arena, and with compression and default sizes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from storegate.backends.base import Backend
from storegate.testing import BackendContract

pytest.importorskip("pyarrow")

from storegate.backends.parquet_backend import ParquetBackend


def _store(tmp_path: Path) -> str:
    return str(tmp_path / "store.parquet")


class TestParquetBackend(BackendContract):
    """Small row groups and files: every read crosses boundaries."""

    options: dict[str, Any] = {"row_group_rows": 3, "file_rows": 7}

    @pytest.fixture
    def backend(self, tmp_path: Path) -> Iterator[Backend]:
        be = ParquetBackend(output_dir=_store(tmp_path), **self.options)
        yield be
        be.close()  # write buffered rows now, not when garbage collection gets to it

    @pytest.fixture
    def reopen(self, tmp_path: Path) -> Iterator[Callable[[Backend], Backend]]:
        opened: list[Backend] = []

        def factory(old: Backend) -> Backend:
            be = ParquetBackend(output_dir=_store(tmp_path), **self.options)
            opened.append(be)
            return be

        yield factory
        for be in opened:
            be.close()

    @pytest.fixture
    def readonly_backend(self, tmp_path: Path) -> Iterator[Callable[[Backend], Backend]]:
        opened: list[Backend] = []

        def factory(old: Backend) -> Backend:
            be = ParquetBackend(output_dir=_store(tmp_path), mode="r")
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
