"""The backend contract suite run for the zarr backend (local directories and memory:// URLs)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from storegate.backends.base import Backend
from storegate.backends.zarr_backend import ZarrBackend
from storegate.testing import BackendContract


class TestZarrBackend(BackendContract):
    """Local zarr store, small chunks so that reads cross many chunk boundaries."""

    @pytest.fixture
    def backend(self, tmp_path: Path) -> Iterator[Backend]:
        be = ZarrBackend(output_dir=str(tmp_path / "store.zarr"), chunk_bytes=4096)
        yield be
        be.close()  # write buffered rows now, not when garbage collection gets to it

    @pytest.fixture
    def reopen(self, tmp_path: Path) -> Callable[[Backend], Backend]:
        return lambda old: ZarrBackend(output_dir=str(tmp_path / "store.zarr"), chunk_bytes=4096)

    @pytest.fixture
    def readonly_backend(self, tmp_path: Path) -> Callable[[Backend], Backend]:
        return lambda old: ZarrBackend(output_dir=str(tmp_path / "store.zarr"), mode="r")


class TestZarrBackendNoArena(TestZarrBackend):
    """The same with the decoded read cache off: every read goes through zarr-python."""

    @pytest.fixture
    def backend(self, tmp_path: Path) -> Iterator[Backend]:
        be = ZarrBackend(output_dir=str(tmp_path / "store.zarr"), chunk_bytes=4096,
                         cache_bytes=0)
        yield be
        be.close()


class TestZarrBackendCompressed(TestZarrBackend):
    """blosc-lz4 compressed chunks in a zarr format 2 store."""

    @pytest.fixture
    def backend(self, tmp_path: Path) -> Iterator[Backend]:
        be = ZarrBackend(output_dir=str(tmp_path / "store.zarr"), chunk_bytes=4096,
                         compressor="lz4", zarr_format=2)
        yield be
        be.close()


class TestZarrBackendFsspec(BackendContract):
    """A memory:// URL, through fsspec."""

    @pytest.fixture
    def backend(self, tmp_path: Path) -> Iterator[Backend]:
        pytest.importorskip("fsspec")
        url = f"memory://storegate-contract-{os.getpid()}/{tmp_path.name}/store.zarr"
        be = ZarrBackend(output_dir=url, chunk_bytes=4096)
        yield be
        be.close()

    def test_read_in_spawned_process(self) -> None:  # type: ignore[override]
        pytest.skip("memory:// file systems live in one process; spawn cannot see them")

    def test_ragged_pickle_and_spawn(self) -> None:  # type: ignore[override]
        pytest.skip("memory:// file systems live in one process; spawn cannot see them")


class TestZarrBackendS3(BackendContract):
    """An ``s3://`` URL on the local S3-protocol server (moto), through s3fs: every request is
    real HTTP, and spawned processes reach the store over TCP. The large gather uses 20,000
    rows: moto answers about 120 requests a second, and the 200,000-row version (3,000
    chunks of 4 KiB per var) takes over a minute."""

    large_rows = 20_000

    @pytest.fixture
    def backend(self, s3_url: str, local_s3: Any) -> Iterator[Backend]:
        be = ZarrBackend(output_dir=f"{s3_url}/store.zarr", chunk_bytes=4096,
                         storage_options=local_s3.storage_options)
        yield be
        be.close()

    @pytest.fixture
    def reopen(self, s3_url: str, local_s3: Any) -> Callable[[Backend], Backend]:
        return lambda old: ZarrBackend(output_dir=f"{s3_url}/store.zarr", chunk_bytes=4096,
                                       storage_options=local_s3.storage_options)

    @pytest.fixture
    def readonly_backend(self, s3_url: str, local_s3: Any) -> Callable[[Backend], Backend]:
        return lambda old: ZarrBackend(output_dir=f"{s3_url}/store.zarr", mode="r",
                                       storage_options=local_s3.storage_options)
