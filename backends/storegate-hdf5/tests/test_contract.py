"""The storegate backend contract suite, run for the HDF5 backend."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from storegate_hdf5 import HDF5Backend

from storegate.backends.base import Backend
from storegate.testing import BackendContract


class TestHDF5Backend(BackendContract):
    """Small chunks (4 KiB), so reads cross many chunk boundaries."""

    @pytest.fixture
    def backend(self, tmp_path: Path) -> Iterator[Backend]:
        be = HDF5Backend(path=str(tmp_path / "store.h5"), chunk_bytes=4096)
        yield be
        be.close()

    @pytest.fixture
    def reopen(self, tmp_path: Path) -> Callable[[Backend], Backend]:
        return lambda old: HDF5Backend(path=str(tmp_path / "store.h5"), chunk_bytes=4096)

    @pytest.fixture
    def readonly_backend(self, tmp_path: Path) -> Callable[[Backend], Backend]:
        return lambda old: HDF5Backend(path=str(tmp_path / "store.h5"), mode="r")


class TestHDF5BackendNoCache(TestHDF5Backend):
    """The decoded read cache off: every read goes through h5py."""

    @pytest.fixture
    def backend(self, tmp_path: Path) -> Iterator[Backend]:
        be = HDF5Backend(path=str(tmp_path / "store.h5"), chunk_bytes=4096, cache_bytes=0)
        yield be
        be.close()


class TestHDF5BackendGzip(TestHDF5Backend):
    """gzip-compressed datasets, given as multiml's output_dir (a directory)."""

    @pytest.fixture
    def backend(self, tmp_path: Path) -> Iterator[Backend]:
        be = HDF5Backend(output_dir=str(tmp_path), chunk_bytes=4096, compression="gzip")
        yield be
        be.close()
