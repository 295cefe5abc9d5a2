"""Fixtures shared by the storegate-hdf5 tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from storegate_hdf5 import HDF5Backend


@pytest.fixture
def h5path(tmp_path: Path) -> str:
    """Path of a fresh HDF5 store file."""
    return str(tmp_path / "store.h5")


@pytest.fixture
def h5backend(h5path: str) -> Iterator[HDF5Backend]:
    """A fresh writable backend, closed after the test."""
    be = HDF5Backend(path=h5path)
    yield be
    be.close()
