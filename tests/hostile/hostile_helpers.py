"""Helpers of the hostile-input property tests: backends, stores and exact comparisons.

Every backend is opened the same way (``open_gate``); persistent stores live in their own
directory (``store_root``), so a test can check that nothing was written beside the store.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from storegate import StoreGate, list_backends

#: Every backend the hostile suite runs on (hdf5 is the plugin ``storegate-hdf5``).
ALL_BACKENDS = ("numpy", "zarr", "hybrid", "parquet", "hdf5")
#: Backends whose stores survive a close and reopen (and whose names become paths or keys).
PERSISTENT_BACKENDS = ("zarr", "parquet", "hdf5")


def backend_skip_reason(name: str) -> str | None:
    """Why ``name`` cannot run here, or ``None``."""
    if name not in list_backends():
        return f"backend {name!r} is not installed"
    needs = {"zarr": "zarr", "hybrid": "zarr", "parquet": "pyarrow", "hdf5": "h5py"}.get(name)
    if needs and importlib.util.find_spec(needs) is None:
        return f"backend {name!r} needs {needs}, which is not installed"
    return None


def require_backend(name: str) -> None:
    reason = backend_skip_reason(name)
    if reason:
        pytest.skip(reason)


def store_path(backend: str, root: Path) -> Path:
    """Where the store of ``backend`` lives inside the directory ``root``."""
    return root / ("store.h5" if backend == "hdf5" else "store")


#: Backend options giving tiny chunks / row groups / files, so that a few rows already
#: cross chunk boundaries.
SMALL_CHUNKS: dict[str, dict[str, Any]] = {
    "numpy": {},
    "zarr": {"chunk": 3},
    "hybrid": {"chunk": 3},
    "parquet": {"row_group_rows": 3, "file_rows": 5},
    "hdf5": {"chunk": 3},
}


def gate_args(backend: str, root: Path, mode: str = "a", **extra: Any) -> dict[str, Any]:
    if backend == "numpy":
        return dict(extra)
    key = "path" if backend == "hdf5" else "output_dir"
    return {key: str(store_path(backend, root)), "mode": mode, **extra}


def open_gate(backend: str, root: Path, data_id: str | None = None, mode: str = "a",
              **extra: Any) -> StoreGate:
    """A StoreGate on ``backend`` whose store (if any) is ``store_path(backend, root)``."""
    return StoreGate(backend=backend, backend_args=gate_args(backend, root, mode, **extra),
                     data_id=data_id)


def close_quietly(sg: StoreGate | None) -> None:
    if sg is not None:
        with contextlib.suppress(Exception):
            sg.close()


def entries_outside_store(backend: str, root: Path) -> list[str]:
    """Everything in ``root`` (recursively, symlinks not followed) except the store itself."""
    store = store_path(backend, root)
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if here == store or store in here.parents:
            continue
        for name in dirnames + filenames:
            path = here / name
            if path != store:
                found.append(str(path.relative_to(root)))
    return sorted(found)


def assert_same_result(got: Any, expected: Any, what: str = "") -> None:
    """``got`` equals ``expected`` exactly: array-ness, values, dtype and shape."""
    exp_is_array = isinstance(expected, np.ndarray)
    assert isinstance(got, np.ndarray) == exp_is_array, (
        f"{what}: got {type(got).__name__}, expected {type(expected).__name__}")
    if not exp_is_array:
        assert isinstance(got, np.generic), f"{what}: got {type(got).__name__}"
    g, e = np.asarray(got), np.asarray(expected)
    assert g.dtype == e.dtype, f"{what}: dtype {g.dtype} != {e.dtype}"
    assert g.shape == e.shape, f"{what}: shape {g.shape} != {e.shape}"
    # bytes, so that NaN payloads, -0.0 and complex parts must all agree
    assert g.tobytes() == e.tobytes(), f"{what}: values differ:\n{g!r}\n!=\n{e!r}"


def note(message: str) -> None:
    """``hypothesis.note`` inside a property; nothing in a plain (parametrized) test."""
    from hypothesis import control

    if control.currently_in_test_context():
        control.note(message)


def event(value: str) -> None:
    """``hypothesis.event`` (for ``--hypothesis-show-statistics``) inside a property."""
    from hypothesis import control

    if control.currently_in_test_context():
        control.event(value)


def fail_plainly_on_raw_errors(fn: Any, *args: Any) -> None:
    """Run ``fn(*args)``; turn an exception that is not a StoregateError into a plain failure.

    For the strict xfails of backend bugs: the raw error comes out of zarr's asyncio machinery,
    whose garbage has finalizers; collected while pytest parses sources for the traceback,
    they make CPython 3.11.7's ``ast.parse`` raise SystemError and end the session with
    INTERNALERROR. So: collect now, and fail without a traceback.
    """
    import gc

    from storegate.errors import StoregateError

    try:
        fn(*args)
    except StoregateError:
        raise
    except Exception as err:
        message = f"raw {type(err).__module__}.{type(err).__name__}: {err}"
        del err
        gc.collect()
        pytest.fail(message, pytrace=False)
