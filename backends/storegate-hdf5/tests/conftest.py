"""Fixtures shared by the storegate-hdf5 tests.

The plugin's own checkout is put first on ``sys.path``, so the tests always exercise this
working tree, even where the plugin was installed as a copy (``pip install`` without ``-e``).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

PLUGIN_ROOT = str(Path(__file__).resolve().parents[1])
if PLUGIN_ROOT not in sys.path:
    sys.path.insert(0, PLUGIN_ROOT)

import pytest  # noqa: E402
from storegate_hdf5 import HDF5Backend  # noqa: E402


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
