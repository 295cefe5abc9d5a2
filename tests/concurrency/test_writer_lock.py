"""One writer per store (``storegate.backends.locking.WriterLock`` on ``<store>/.sg-lock``).

A backend takes the lock at its first write and holds it until ``close()``. While it holds it:

* another process that writes gets :class:`StoreLockedError` (also a ``PermissionError``) naming
  the holder's pid, before changing anything; so does a second StoreGate on the same path in
  the same process ("another backend in this process");
* the holder's data stay intact and it can keep writing;
* readers (``mode='r'``) are never blocked.

The lock ends when the holder closes, or when its process dies in any way (SIGKILL included:
the kernel releases the ``flock``); the store is then at the holder's last commit and the next
writer can write. A DataLoader-style child forked from a writer does not keep the lock once
the parent has closed.

Writers and holders run in separate processes (``concurrency_worker.py``: roles ``hold`` and
``try_write``); every wait is on a side file or a process exit, never on a sleep.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from concurrency_helpers import (
    check_rows,
    finish,
    read_number,
    start_worker,
    wait_for,
    worker_cmd,
    x_rows,
    y_rows,
)

from storegate import StoreGate
from storegate.errors import StoreLockedError

BACKENDS = ["zarr", "parquet", "hybrid"]


def _have(module: str) -> bool:
    spec = importlib.util.find_spec(module)
    return spec is not None and spec.origin is not None


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "parquet" and not _have("pyarrow"):
        pytest.skip("pyarrow is not installed")
    return request.param


class Store:
    """A store at ``tmp_path/store`` and the side-file directory of its workers."""

    def __init__(self, backend: str, tmp_path: Path) -> None:
        self.backend = backend
        self.tmp = tmp_path
        self.path = tmp_path / "store"
        self.side = tmp_path / "side"
        self.side.mkdir(exist_ok=True)
        self.args = {"output_dir": str(self.path)}
        self.n_logs = 0

    def _log(self, name: str) -> Path:
        self.n_logs += 1
        return self.tmp / f"{self.n_logs:02d}-{name}.log"

    def hold(self, **cfg: Any) -> tuple[Any, Path, int]:
        """Start a process that writes rows 0..rows, compiles and holds the store (waits for
        ``release()``); returns (process, log, pid)."""
        log = self._log("hold")
        proc = start_worker({"role": "hold", "backend": self.backend, "args": self.args,
                             "side": str(self.side), **cfg}, log)
        wait_for(lambda: (self.side / "held").exists(), 90, "the holder", [proc], [log])
        return proc, log, read_number(self.side / "held")

    def release(self, proc: Any, log: Path) -> None:
        (self.side / "release").write_text("1")
        finish([proc], [log], 90)
        assert (self.side / "released").exists()

    def try_write(self, start: Any, rows: int = 10) -> dict[str, Any]:
        """Run a process that appends rows start..start+rows to x and y, compiles, closes."""
        import subprocess

        from concurrency_helpers import child_env

        result = self.tmp / f"try-{self.n_logs}.json"
        self.n_logs += 1
        proc = subprocess.run(worker_cmd({"role": "try_write", "backend": self.backend,
                                          "args": self.args, "start": start, "rows": rows,
                                          "result": str(result)}),
                              capture_output=True, text=True, timeout=120, env=child_env())
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return json.loads(result.read_text())

    def assert_rows(self, n: int) -> None:
        """The store holds exactly rows 0..n of x and y (read with mode='r')."""
        sg = StoreGate(self.backend, {**self.args, "mode": "r"}, data_id="d")
        try:
            assert len(sg["train"]) == n
            xs, ys = sg["train"][["x", "y"]][:]
            assert check_rows(np.arange(n), xs, ys) is None
        finally:
            sg.close()


def _assert_locked(res: dict[str, Any], holder_pid: int) -> None:
    assert not res["ok"], "a second writer wrote while the first held the store"
    assert res["type"] == "StoreLockedError", res.get("traceback")
    assert "PermissionError" in res["mro"] and "StoregateError" in res["mro"]
    assert f"process {holder_pid}" in res["message"], res["message"]
    assert "mode='r'" in res["message"], res["message"]  # says how to read meanwhile


def test_second_process_refused_until_holder_closes(backend: str, tmp_path: Path) -> None:
    s = Store(backend, tmp_path)
    proc, log, pid = s.hold(rows=100, start=0)
    try:
        _assert_locked(s.try_write(start=100), pid)
        _assert_locked(s.try_write(start=100), pid)  # refused again, nothing half-written
        # a reader is not blocked, and the holder's data are intact
        reader = StoreGate(backend, {**s.args, "mode": "r"}, data_id="d")
        assert len(reader["train"]) == 100
        assert check_rows(np.arange(100), *reader["train"][["x", "y"]][:]) is None
        reader.close()
    finally:
        s.release(proc, log)
    res = s.try_write(start=100)
    assert res["ok"], res.get("traceback")
    s.assert_rows(110)


def test_sigkill_releases_the_lock(backend: str, tmp_path: Path) -> None:
    s = Store(backend, tmp_path)
    proc, _, pid = s.hold(rows=100, start=0)
    _assert_locked(s.try_write(start=100), pid)
    os.kill(pid, signal.SIGKILL)
    assert proc.wait(30) == -signal.SIGKILL
    res = s.try_write(start="len")
    assert res["ok"], res.get("traceback")
    assert res["start"] == 100
    s.assert_rows(110)


def test_sigkill_mid_write_leaves_the_last_commit(backend: str, tmp_path: Path) -> None:
    """The holder has appended 300 rows of x only (zarr has written whole chunks of them, the
    operation is not committed) when it is killed: the next writer finds the store at the
    holder's last commit (x and y of 100 rows) and writes on."""
    s = Store(backend, tmp_path)
    proc, _, pid = s.hold(rows=100, start=0, uncommitted=300)
    os.kill(pid, signal.SIGKILL)
    proc.wait(30)
    res = s.try_write(start="len")
    assert res["ok"], res.get("traceback")
    assert res["start"] == 100
    s.assert_rows(110)


def test_second_gate_in_same_process(backend: str, tmp_path: Path) -> None:
    args = {"output_dir": str(tmp_path / "store")}
    first = StoreGate(backend, args, data_id="d")
    first.add_data(["x", "y"], [x_rows((0, 100)), y_rows((0, 100))], phase="train")
    first.compile()
    second = StoreGate(backend, args, data_id="d")  # opening to read takes no lock
    assert len(second["train"]) == 100
    with pytest.raises(StoreLockedError) as info:
        second.add_data(["x", "y"], [x_rows((100, 110)), y_rows((100, 110))], phase="train")
    assert "another backend in this process" in str(info.value), str(info.value)
    assert isinstance(info.value, PermissionError)
    # a read-only gate reads meanwhile; the first writer goes on
    reader = StoreGate(backend, {**args, "mode": "r"}, data_id="d")
    assert check_rows(np.arange(100), *reader["train"][["x", "y"]][:]) is None
    first.add_data(["x", "y"], [x_rows((100, 150)), y_rows((100, 150))], phase="train")
    first.compile()
    first.close()
    # the second gate now writes, after the rows the first one added since it looked
    second.add_data(["x", "y"], [x_rows((150, 160)), y_rows((150, 160))], phase="train")
    second.compile()
    assert len(second["train"]) == 160
    assert check_rows(np.arange(160), *second["train"][["x", "y"]][:]) is None
    second.close()
    reader.close()
    reader = StoreGate(backend, {**args, "mode": "r"}, data_id="d")
    assert check_rows(np.arange(160), *reader["train"][["x", "y"]][:]) is None
    reader.close()


def test_forked_child_does_not_keep_the_lock(backend: str, tmp_path: Path) -> None:
    """A writer forks a DataLoader-style worker (which reads through the inherited gate and
    stays alive), then closes: another process can write while the child still runs."""
    s = Store(backend, tmp_path)
    proc, log, _ = s.hold(rows=100, start=0, fork_child=True)
    try:
        wait_for(lambda: (s.side / "child_read").exists(), 60, "the forked child's read",
                 [proc], [log])
        assert read_number(s.side / "child_read") == 0, "the forked child read wrong rows"
        child = read_number(s.side / "child_pid")
        os.kill(child, 0)  # still alive
        res = s.try_write(start=100)
        assert res["ok"], res.get("traceback")
    finally:
        (s.side / "exit").write_text("1")
        finish([proc], [log], 90)
    s.assert_rows(110)


def test_reader_process_not_blocked_by_holder(backend: str, tmp_path: Path) -> None:
    """A reader process (mode='r') reads every row while another process holds the lock."""
    s = Store(backend, tmp_path)
    proc, log, _ = s.hold(rows=300, start=0)
    try:
        cfg = {"role": "reader", "backend": backend, "args": s.args, "side": str(s.side),
               "seed": 1, "index": 0, "policy": "fresh", "deadline": 1e12, "min_reads": 200,
               "result": str(tmp_path / "reader.json")}
        (s.side / "finished").write_text("1")  # nothing more is coming: read the quota
        (s.side / "done").write_text("300")
        (s.side / "intent").write_text("300")
        rlog = tmp_path / "reader.log"
        finish([start_worker(cfg, rlog)], [rlog], 120)
        st = json.loads((tmp_path / "reader.json").read_text())
        assert st["reads"] >= 200 and not st["violations"] and not st["errors"], st
        assert not st["retries"], st
    finally:
        s.release(proc, log)
