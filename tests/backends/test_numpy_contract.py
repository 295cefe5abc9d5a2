"""The backend contract suite run for the numpy backend.

Its persistence and read-only parts skip here (the numpy backend keeps data in memory); the
zarr run in ``test_zarr_contract.py`` exercises them.
"""

from __future__ import annotations

import pytest

import storegate
from storegate.backends.base import Backend
from storegate.backends.numpy_backend import NumpyBackend
from storegate.testing import BackendContract


class TestNumpyBackend(BackendContract):
    """The numpy backend against the contract (persistence and read-only tests skip)."""

    @pytest.fixture
    def backend(self) -> Backend:
        return NumpyBackend()


def test_testing_is_not_imported_by_storegate() -> None:
    """``import storegate`` must not import the testing package (nor pytest through it)."""
    import subprocess
    import sys

    code = (
        "import sys, storegate; "
        "bad = [m for m in ('storegate.testing', 'pytest') if m in sys.modules]; "
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
    assert storegate.__name__ == "storegate"
