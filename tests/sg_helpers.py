"""Helpers shared by the facade tests (imported as ``from sg_helpers import ...``)."""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np
import pytest

from storegate import StoreGate
from storegate.phases import PHASES


def zarr_backend_available() -> bool:
    """Whether the zarr backend module exists (it is written separately from the core)."""
    return importlib.util.find_spec("storegate.backends.zarr_backend") is not None


ZARR_MISSING_REASON = "storegate/backends/zarr_backend.py does not exist yet"

requires_zarr_backend = pytest.mark.skipif(
    not zarr_backend_available(), reason=ZARR_MISSING_REASON
)


def snapshot(sg: StoreGate) -> dict[str, Any]:
    """Everything a failed call must leave unchanged: data_ids, var names and order per phase,
    dtype and content of every var, and the persisted attributes (compile state)."""
    db = sg.db
    out: dict[str, Any] = {"current": sg.data_id}
    for data_id in db.data_ids():
        entry: dict[str, Any] = {"attrs": db.get_attrs(data_id)}
        for phase in PHASES:
            names = db.var_names(data_id, phase)
            cols = {}
            for v in names:
                info = db.info(data_id, phase, v)
                data = db.read(data_id, phase, v, slice(0, info.length, 1))
                cols[v] = (str(data.dtype), data.shape, data.tobytes())
            entry[phase] = (names, cols)
        out[data_id] = entry
    return out


def assert_array_equal_exact(got: Any, expected: Any) -> None:
    """Values, shape and dtype all equal."""
    exp = np.asarray(expected)
    assert isinstance(got, np.ndarray), f"expected an ndarray, got {type(got).__name__}"
    assert got.shape == exp.shape, (got.shape, exp.shape)
    assert got.dtype == exp.dtype, (got.dtype, exp.dtype)
    np.testing.assert_array_equal(got, exp)


def require(module: str) -> Any:
    """Import ``module`` or skip the test; unlike ``pytest.importorskip`` it is not fooled by
    a test folder of the same name (``tests/torch`` is a namespace package ``torch`` once
    ``tests/`` is on ``sys.path``)."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        pytest.skip(f"{module} is not installed (an optional extra)")
    return importlib.import_module(module)


def run_until_killed(script_text: str, args: list[str], workdir: Any) -> Any:
    """Run ``script_text`` (dedented) with ``args`` in a new interpreter that kills itself with
    SIGKILL; check that it died that way and return the ``CompletedProcess``."""
    import signal
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    script = Path(workdir) / "killed_script.py"
    script.write_text(textwrap.dedent(script_text))
    proc = subprocess.run([sys.executable, str(script), *map(str, args)], capture_output=True,
                          text=True, timeout=180)
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr[-2000:])
    return proc
