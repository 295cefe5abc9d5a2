"""Shared pieces of the concurrency tests (imported by the tests and by the worker script).

Rows are self-describing: row ``i`` of var ``x`` (shape ``(N, 8)``, float64) is
``i + 1 + arange(8) / 16`` and row ``i`` of ``y`` (``(N,)``, int64) is ``i + 1``. No row is ever
0, so a chunk that was never written (zero fill), a row from the wrong place, or x and y of
different rows all show up in :func:`check_rows`. Every value is exactly representable, so the
comparison is exact.

The writer publishes two numbers in side files (each replaced atomically):

* ``intent``: written *before* it starts appending a block, the row count after that block. No
  reader may ever see more rows than the last intent (an upper bound, read *after* a read);
* ``done``: written after a ``compile()`` (or a flush that ends with the file closed, hdf5)
  returned, the rows every reader opening the store afterwards must see at least (a lower
  bound, read *before* the reader opens the store).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
WORKER = HERE / "concurrency_worker.py"

XCOLS = 8
_FRAC = np.arange(XCOLS, dtype=np.float64) / 16.0


def x_rows(index: Any) -> np.ndarray:
    """Rows of ``x`` at ``index`` (an int array, or ``(start, stop)``)."""
    if isinstance(index, tuple):
        index = np.arange(index[0], index[1], dtype=np.int64)
    idx = np.asarray(index, dtype=np.int64)
    return (idx.astype(np.float64) + 1.0)[..., None] + _FRAC


def y_rows(index: Any) -> np.ndarray:
    if isinstance(index, tuple):
        index = np.arange(index[0], index[1], dtype=np.int64)
    return np.asarray(index, dtype=np.int64) + 1


def check_rows(index: np.ndarray, x: Any = None, y: Any = None) -> str | None:
    """``None`` if ``x`` and ``y`` (either may be ``None``) are exactly the rows at ``index``,
    else a short description of the first difference."""
    index = np.asarray(index, dtype=np.int64)
    if x is not None:
        x = np.asarray(x)
        want = x_rows(index)
        if x.shape != want.shape or x.dtype != np.float64:
            return f"x: shape/dtype {x.shape} {x.dtype}, expected {want.shape} float64"
        bad = np.flatnonzero((x != want).any(axis=-1)) if x.ndim == 2 else (
            [0] if not np.array_equal(x, want) else [])
        if len(bad):
            k = int(bad[0])
            got = x[k] if x.ndim == 2 else x
            return (f"x: row {int(index.reshape(-1)[k])} holds {got.tolist()[:3]}..., expected "
                    f"{want.reshape(-1, XCOLS)[k].tolist()[:3]}... ({len(bad)} bad rows of "
                    f"{index.size})")
    if y is not None:
        y = np.asarray(y)
        want = y_rows(index)
        if y.shape != want.shape or y.dtype != np.int64:
            return f"y: shape/dtype {y.shape} {y.dtype}, expected {want.shape} int64"
        bad = np.flatnonzero((y != want).reshape(-1))
        if len(bad):
            k = int(bad[0])
            return (f"y: row {int(index.reshape(-1)[k])} holds {int(y.reshape(-1)[k])}, expected "
                    f"{int(want.reshape(-1)[k])} ({len(bad)} bad rows of {index.size})")
    return None


# ---------------------------------------------------------------------------------- side files
def write_number(path: str | Path, value: int) -> None:
    """Replace the file ``path`` with ``value`` (atomically: readers never see a partial one)."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(str(int(value)))
    os.replace(tmp, path)


def read_number(path: str | Path, default: int = -1) -> int:
    try:
        with open(path) as f:
            return int(f.read())
    except (FileNotFoundError, ValueError):
        return default


# ---------------------------------------------------------------------------------- processes
def worker_cmd(config: dict[str, Any]) -> list[str]:
    return [sys.executable, str(WORKER), json.dumps(config)]


def child_env() -> dict[str, str]:
    """The environment of a worker: it imports storegate (and the hdf5 plugin) from where this
    process did (pytest puts the checkout on ``sys.path``; a child must be told)."""
    import importlib.util

    import storegate

    paths = [str(Path(storegate.__file__).resolve().parents[1])]
    spec = importlib.util.find_spec("storegate_hdf5")
    if spec is not None and spec.origin is not None:
        paths.append(str(Path(spec.origin).resolve().parents[1]))
    old = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths + ([old] if old else []))}


def start_worker(config: dict[str, Any], log: Path) -> subprocess.Popen[bytes]:
    """Start the worker script in a fresh interpreter (``spawn`` semantics: nothing inherited),
    its output going to ``log``."""
    env = child_env()
    f = open(log, "wb")  # noqa: SIM115 - closed by the child exiting; the parent reads the file
    try:
        return subprocess.Popen(worker_cmd(config), stdout=f, stderr=subprocess.STDOUT, env=env,
                                cwd=str(HERE))
    finally:
        f.close()


def wait_for(predicate: Any, timeout: float, what: str, procs: list[Any] = (),  # type: ignore[assignment]
             logs: list[Path] = ()) -> None:  # type: ignore[assignment]
    """Poll ``predicate`` until true; fail with the workers' logs after ``timeout`` or when a
    worker died."""
    end = time.monotonic() + timeout
    while not predicate():
        for p, log in zip(procs, logs, strict=False):
            if p.poll() is not None and p.returncode != 0:
                raise AssertionError(f"{what}: worker exited with {p.returncode}:\n"
                                     f"{log.read_text(errors='replace')[-4000:]}")
        if time.monotonic() > end:
            text = "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-2000:]}"
                             for log in logs if log.exists())
            raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{text}")
        time.sleep(0.02)


def finish(procs: list[subprocess.Popen[bytes]], logs: list[Path], timeout: float) -> None:
    """Wait for every worker; kill the rest and fail (with their logs) after ``timeout``."""
    end = time.monotonic() + timeout
    failed = []
    for p, log in zip(procs, logs, strict=True):
        try:
            p.wait(max(0.1, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            failed.append(f"--- {log.name} (killed after the timeout)\n"
                          f"{log.read_text(errors='replace')[-3000:]}")
            continue
        if p.returncode != 0:
            failed.append(f"--- {log.name} (exit {p.returncode})\n"
                          f"{log.read_text(errors='replace')[-3000:]}")
    if failed:
        raise AssertionError("workers failed:\n" + "\n".join(failed))


def store_args(backend: str, path: Path, **extra: Any) -> dict[str, Any]:
    """``backend_args`` for a store at ``path`` (hdf5 takes ``path=``, the others
    ``output_dir=``)."""
    key = "path" if backend == "hdf5" else "output_dir"
    return {key: str(path), **extra}
