"""The writer of the kill tests (``test_crash.py``): a deterministic sequence of StoreGate write
operations, the states it passes through, and the child process that runs it until killed.

The child is started as ``python -c "...; crash_workload.child_main(config)"`` (see
:func:`child_command`). It opens ``StoreGate("hdf5", {"path": ...})``, logs ``ready`` and then
``start i`` / ``done i`` around each operation to a progress file (line-buffered, so a kill
loses at most the line being written), and runs every operation in one
``sg.db.transaction()`` block (the facade's own block, when it has one, joins it). A *kill
point* in the config makes the child kill itself (``SIGKILL``) at a chosen place: the ``n``-th
write of a byte range by the journaled file (``write``; with ``torn`` only the first half of the
bytes is written first), the ``n``-th commit (``commit``, before or ``after`` the journal is
removed), or the ``n``-th write during a recovery (``recover_write``).

The parent replays the same operations on the numpy backend (:func:`expected_states`) and
compares what it finds after the kill (:func:`read_state`) with the states between operations.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from storegate import StoreGate
from storegate.ragged import RaggedArray

D = "d"
PHASES = ("train", "valid", "test")

#: A store state: per phase, the vars in order with (dtype, shape, digest of the data); or
#: ``None`` when the store has no data_id ``d`` yet.
State = dict[str, list[tuple[str, str, tuple[int, ...], str]]] | None


def _ragged(rng: np.random.Generator, n: int, dtype: str = "f4") -> RaggedArray:
    lengths = rng.integers(0, 5, size=n)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return RaggedArray(rng.standard_normal(int(offsets[-1])).astype(dtype), offsets)


def workload(seed: int = 0) -> list[tuple[Any, ...]]:
    """The operations, as plain tuples (each keeps every phase's vars the same length).

    Examples
    --------
    >>> ops = workload(0)
    >>> ops[0][0], len(ops)
    ('add', 17)
    """
    rng = np.random.default_rng(seed)

    def f4(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype("f4")

    def i8(n: int) -> np.ndarray:
        return rng.integers(-1000, 1000, size=n, dtype=np.int64)

    split = (0.6, 0.2, 0.2)
    return [
        ("add", ["a", "b"], [f4(300, 8), i8(300)], split),              # 180 / 60 / 60
        ("add", ["r"], [_ragged(rng, 300)], split),
        ("add", ["a", "b", "r"], [f4(2000, 8), i8(2000), _ragged(rng, 2000)], "train"),
        ("update", ["a"], [f4(50, 8)], "train", (10, 60)),
        ("create_empty", "e", (2180 + 60 + 60, 3), (2180, 60, 60), "f8"),
        ("update", ["e"], [rng.standard_normal((60, 3))], "valid", -1),
        ("compile",),
        ("astype", "b", "f4", "all"),
        ("delete", "a", "valid"),
        ("add", ["a"], [f4(60, 8)], "valid"),
        ("update_ragged", "r", "test", np.array([3, 7], dtype=np.int64), _ragged(rng, 2)),
        ("add", ["a", "b", "r", "e"],
         [f4(5000, 8), rng.standard_normal(5000).astype("f4"), _ragged(rng, 5000),
          rng.standard_normal((5000, 3))], "test"),
        ("astype", "e", "f4", "train"),
        ("update", ["a", "b"], [f4(3000, 8), rng.standard_normal(3000).astype("f4")], "test",
         (1000, 4000)),
        ("delete", "e", "all"),
        ("add", ["a", "b", "r"], [f4(400, 8), i8(400).astype("f4"), _ragged(rng, 400)],
         (0.5, 0.25, 0.25)),
        ("compile",),
    ]


def apply(sg: StoreGate, op: tuple[Any, ...]) -> None:
    """Run one operation of :func:`workload` through the facade."""
    kind = op[0]
    if kind == "add":
        _, names, data, phase = op
        sg.add_data(list(names), list(data), phase=phase)
    elif kind == "update":
        _, names, data, phase, index = op
        sg.update_data(list(names), list(data), phase=phase, index=index, do_compile=False)
    elif kind == "update_ragged":
        _, var, phase, rows, data = op
        with sg.db.transaction():  # rows of other lengths: the var is rewritten and swapped
            sg.db.write(D, phase, var, rows, data)
    elif kind == "create_empty":
        _, var, shape, phase, dtype = op
        sg.create_empty(var, shape, phase=phase, dtype=dtype)
    elif kind == "compile":
        sg.compile()
    elif kind == "astype":
        _, var, dtype, phase = op
        sg.astype(var, dtype, phase=phase)
    elif kind == "delete":
        _, var, phase = op
        sg.delete_data(var, phase=phase, do_compile=False)
    else:  # pragma: no cover
        raise ValueError(f"unknown op {kind!r}")


def _digest(value: Any) -> tuple[str, tuple[int, ...], str]:
    h = hashlib.sha1()
    if isinstance(value, RaggedArray):
        values = np.ascontiguousarray(value.values)
        offsets = np.ascontiguousarray(value.offsets, dtype=np.int64)
        h.update(values.tobytes())
        h.update(offsets.tobytes())
        return f"ragged[{values.dtype.str}]", (len(value), *values.shape[1:]), h.hexdigest()
    arr = np.ascontiguousarray(value)
    h.update(arr.tobytes())
    return arr.dtype.str, tuple(arr.shape), h.hexdigest()


def read_state(sg: StoreGate) -> State:
    """What the store holds, in the form of :data:`State` (read through the backend)."""
    db = sg.db
    if D not in db.data_ids():
        return None
    state: dict[str, list[tuple[str, str, tuple[int, ...], str]]] = {}
    for phase in PHASES:
        rows = []
        for var in db.var_names(D, phase):
            n = db.info(D, phase, var).length
            rows.append((var, *_digest(db.read(D, phase, var, slice(0, n, 1)))))
        state[phase] = rows
    return state


def expected_states(seed: int = 0) -> list[State]:
    """States of the store: before it exists (``None``), after the data_id was created, and
    after each operation (``states[i + 2]``), from a replay on the numpy backend."""
    sg = StoreGate("numpy", data_id=D)
    states: list[State] = [None, read_state(sg)]
    for op in workload(seed):
        apply(sg, op)
        states.append(read_state(sg))
    return states


# ---------------------------------------------------------------------------------- the child
def _kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _install_kill_point(point: dict[str, Any] | None, counts: dict[str, int]) -> None:
    from storegate_hdf5 import journal

    write_all: Callable[..., None] = journal._write_all
    recover = journal.recover
    state = {"recovering": False}
    kind = None if point is None else point["kind"]
    n = 0 if point is None else int(point["n"])
    after = bool(point and point.get("after"))

    def counting_write_all(fd: int, data: Any, offset: int | None = None) -> None:
        key = "recover_write" if state["recovering"] else "write"
        counts[key] = counts.get(key, 0) + 1
        if kind == key and counts[key] == n:
            if point is not None and point.get("torn"):
                view = memoryview(data).cast("B")
                write_all(fd, view[: max(1, view.nbytes // 2)], offset)
            _kill()
        write_all(fd, data, offset)

    def counting_recover(*args: Any, **kwargs: Any) -> int:
        state["recovering"] = True
        try:
            return recover(*args, **kwargs)
        finally:
            state["recovering"] = False

    commit = journal.JournaledFile.commit

    def counting_commit(self: Any) -> bool:
        if self.active:
            counts["commit"] = counts.get("commit", 0) + 1
            if kind == "commit" and counts["commit"] == n and not after:
                _kill()
        done = commit(self)
        if done and kind == "commit" and counts["commit"] == n and after:
            _kill()
        return done

    journal._write_all = counting_write_all
    journal.recover = counting_recover
    journal.JournaledFile.commit = counting_commit  # type: ignore[method-assign]


def child_main(config: dict[str, Any]) -> None:
    """Run the workload on the hdf5 store ``config["path"]``, logging progress, until done
    or killed (see the module docstring). ``config["ops"] = False`` only opens the store
    (a recovery) and closes it."""
    counts: dict[str, int] = {}
    _install_kill_point(config.get("kill"), counts)
    with open(config["progress"], "a", buffering=1) as log:
        sg = StoreGate("hdf5", {"path": config["path"], **config.get("args", {})},
                       data_id=D)
        log.write("ready\n")
        start = time.perf_counter()
        if config.get("ops", True):
            for i, op in enumerate(workload(config.get("seed", 0))):
                log.write(f"start {i}\n")
                with sg.db.transaction():
                    apply(sg, op)
                log.write(f"done {i}\n")
        sg.close()
        log.write(f"finished {json.dumps({'seconds': time.perf_counter() - start, **counts})}\n")


def _wait_ready(pid: int, progress_path: str, timeout: float = 60.0) -> int | None:
    """Wait until the writer logged ``ready``; its wait status if it ended first."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        try:
            with open(progress_path) as f:
                if "ready" in f.read():
                    return None
        except FileNotFoundError:
            pass
        time.sleep(0.0005)
    return None


def zygote_main() -> None:
    """Serve writers: for each JSON line ``{"config": ..., "delay": seconds or null}`` on
    stdin, fork a child running :func:`child_main`; with a delay, ``SIGKILL`` it that long
    after it logged ``ready``. Answer with one JSON line: the child's exit code or the signal
    that ended it. (A fork of this process, which has imported everything already, costs
    milliseconds where a new interpreter costs a second.)"""
    for line in sys.stdin:
        request = json.loads(line)
        config = request["config"]
        pid = os.fork()
        if pid == 0:  # the writer
            code = 0
            try:
                child_main(config)
            except BaseException:
                import traceback

                traceback.print_exc()
                code = 1
            finally:
                os._exit(code)
        status = None
        delay = request.get("delay")
        if delay is not None:
            status = _wait_ready(pid, config["progress"])
            if status is None:
                time.sleep(float(delay))
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if status is None:
            _, status = os.waitpid(pid, 0)
        answer = {"signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0,
                  "exit": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


def python_command(call: str) -> list[str]:
    """``[sys.executable, "-c", ...]`` calling ``crash_workload.<call>`` in a new interpreter
    that imports storegate, the plugin and this module from where the calling process does."""
    import storegate_hdf5

    import storegate

    paths = [os.path.dirname(os.path.abspath(__file__)),
             os.path.dirname(os.path.dirname(os.path.abspath(storegate_hdf5.__file__))),
             os.path.dirname(os.path.dirname(os.path.abspath(storegate.__file__)))]
    code = (f"import sys; sys.path[:0] = {paths!r}; import json, crash_workload; "
            f"crash_workload.{call}")
    return [sys.executable, "-c", code]


def child_command(config: dict[str, Any]) -> list[str]:
    """The command running :func:`child_main` with ``config`` in a new interpreter."""
    return [*python_command("child_main(json.loads(sys.argv[1]))"), json.dumps(config)]


def progress(path: str) -> tuple[int, dict[str, Any] | None]:
    """The last state the child reached (an index into :func:`expected_states`: 0 before
    the store existed, 1 once it was open, ``i + 2`` after operation ``i``) and the summary
    of a finished run (``None`` if it was killed)."""
    reached, summary = 0, None
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return 0, None
    for line in lines:
        if line == "ready":
            reached = max(reached, 1)
        elif line.startswith("done "):
            reached = int(line.split()[1]) + 2
        elif line.startswith("finished "):
            summary = json.loads(line[len("finished "):])
    return reached, summary


def try_write(path: str) -> None:
    """Print (JSON) what happens when this process tries one ``add_data`` on ``path``."""
    out: dict[str, Any] = {"ok": False, "type": None, "message": None, "pid": os.getpid()}
    try:
        sg = StoreGate("hdf5", {"path": path}, data_id=D)
        sg.add_data("x", np.arange(5, dtype=np.int64), phase="train")
        sg.close()
        out["ok"] = True
    except Exception as err:  # reported to the parent
        out["type"] = type(err).__name__
        out["message"] = str(err)
    print(json.dumps(out))
