"""Fault injection: kill a writer at random points and check the store it leaves.

The harness behind ``tests/faults`` (and usable for a third-party backend, like the contract
suite in :mod:`storegate.testing`):

1. a deterministic **workload** (:func:`workload`) of StoreGate write operations — ``add_data``
   of several vars over several phases, ragged appends, ``update_data``, ``create_empty``,
   ``delete_data``, transforms (``astype``, ``shuffle``), an import of another store
   (:func:`storegate.convert.stores.copy_store`), ``compile`` and ``close`` — every one of
   which leaves each phase consistent;
2. the **expected states** (:func:`expected_states`): the same workload replayed on the numpy
   backend, with a snapshot of the whole store after each operation;
3. a **writer** child process (:func:`run_writer`; a ``forkserver`` child, so a trial costs
   milliseconds rather than a Python start-up) that runs the workload on the backend under
   test, logging each operation it starts and finishes, and is killed with ``SIGKILL`` after a
   random delay, or kills itself at a chosen point: before or after the N-th change of a file
   (``os.replace``, ``os.rename``, ``os.link``, ``os.unlink``, ``os.mkdir``, ``os.rmdir``,
   ``shutil.rmtree``) — every step of every write, journal and commit;
4. the **check** (:func:`check_after_kill`): reopen the store for writing (which rolls back an
   uncommitted write), run :func:`storegate.checks.check_store`, read everything back and find
   the expected state it equals. It must equal the state after some operation between the
   last one that was durable (``compile``, ``close`` and operations that compile) and the
   last one started.

Examples
--------
>>> ops = workload(seed=1, rounds=1)
>>> states = expected_states(ops)
>>> len(states) == len(ops) + 1, states[0]
(True, {})
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import random
import shutil
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "Op",
    "Outcome",
    "check_after_kill",
    "expected_states",
    "read_state",
    "run_writer",
    "workload",
]

DATA_ID = "d"
IMPORTED = "imp"
PHASES = ("train", "valid", "test")
#: file-system calls that change a store: a kill "at change N" happens just before (or after)
#: the N-th of them in the writer
CHANGES = ("replace", "rename", "link", "unlink", "mkdir", "rmdir")


@dataclass(frozen=True)
class Op:
    """One write operation of the workload (``kind`` and its arguments)."""

    kind: str
    args: tuple[Any, ...] = ()

    @property
    def durable(self) -> bool:
        """Whether the store must hold this operation once it returned (it commits)."""
        return self.kind in ("compile", "close", "update", "delete", "astype", "shuffle",
                             "copy")


def _rows(tag: int, n: int, what: str) -> np.ndarray:
    """Deterministic, op-specific data: ``what`` selects the var's dtype and row shape."""
    rng = np.random.default_rng(tag)
    if what == "x":
        return rng.standard_normal((n, 6)).astype("f4")
    if what == "y":
        return rng.integers(1, 1 << 40, n).astype("i8")
    if what == "w":
        return rng.standard_normal((n, 2, 2))
    raise ValueError(what)


def _ragged(tag: int, n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(tag)
    return [rng.standard_normal((int(k), 3)).astype("f4") for k in rng.integers(0, 5, n)]


def workload(seed: int = 0, rounds: int = 2, ragged: bool = True,
             copy: bool = True, max_rows: int = 700) -> list[Op]:
    """A deterministic sequence of write operations; after each one every phase of every
    data_id has vars of one length.

    Parameters
    ----------
    seed
        Chooses sizes, phases and indexes.
    rounds
        Repetitions of the basic sequence (each grows the vars).
    ragged
        Include a ragged var (backends with ``supports_ragged``).
    copy
        Include an import of another store (``copy_store``).
    max_rows
        Largest number of rows of one ``add_data``.
    """
    r = random.Random(seed)
    ops: list[Op] = []
    tag = 1000 * seed
    for k in range(rounds):
        for _ in range(r.randint(2, 4)):  # appends, several vars over several phases
            tag += 1
            ops.append(Op("add", (r.randint(1, max_rows), r.choice([(0.6, 0.2, 0.2), "train",
                                                                (0.5, 0.5, 0.0)]), tag)))
        ops.append(Op("compile"))
        tag += 1
        ops.append(Op("update", ("x", r.choice(["slice", "array", "int"]), tag)))
        if ragged:
            tag += 1
            ops.append(Op("add_ragged", (tag,)))
        if k == 0:
            ops.append(Op("create_empty", ("w",)))
            tag += 1
            ops.append(Op("update", ("w", "whole", tag)))
        ops.append(Op("astype", ("y", "f8" if k % 2 == 0 else "i8")))
        ops.append(Op("shuffle", (r.choice(["train", "all"]), r.randint(0, 99))))
        if k == rounds - 1:
            ops.append(Op("delete", ("w",)))
        if copy and k == 0:
            ops.append(Op("copy", (tag,)))
        ops.append(Op("close"))
    return ops


def _source_store(tag: int) -> Any:
    from storegate import StoreGate

    src = StoreGate("numpy", data_id=IMPORTED)
    src.add_data(["a", "b"], [_rows(tag, 40, "x"), _rows(tag + 1, 40, "y")],
                 phase=(0.5, 0.25, 0.25))
    src.compile()
    return src


def apply(sg: Any, op: Op) -> None:
    """Run one operation on a :class:`~storegate.StoreGate` whose data_id is :data:`DATA_ID`."""
    k, a = op.kind, op.args
    if k == "add":
        n, phase, tag = a
        names = ["x", "y"]
        data: list[Any] = [_rows(tag, n, "x"), _rows(tag, n, "y")]
        if "w" in sg.get_var_names("train"):
            names.append("w")
            data.append(_rows(tag, n, "w"))
        ragged = "r" in sg.get_var_names("train")
        if ragged:
            names.append("r")
            data.append(_ragged(tag, n))
        sg.add_data(names, data, phase=phase)
    elif k == "compile":
        sg.compile()
    elif k == "close":
        sg.close()
    elif k == "update":
        var, form, tag = a
        if form == "whole":
            sizes = sg.get_metadata()["total_events"]
            sg.update_data(var, _rows(tag, sum(sizes), var), phase="all")
            return
        n = len(sg["train"])
        if n == 0:
            return
        rng = np.random.default_rng(tag)
        if form == "slice":
            lo = int(rng.integers(0, n))
            hi = int(rng.integers(lo, n + 1))
            sg.update_data(var, _rows(tag, hi - lo, var), phase="train", index=(lo, hi))
        elif form == "array":
            idx = rng.choice(n, size=min(n, 50), replace=False)
            sg.update_data(var, _rows(tag, idx.size, var), phase="train", index=idx)
        else:
            sg.update_data(var, _rows(tag, 1, var)[0], phase="train", index=int(n // 2))
    elif k == "add_ragged":
        (tag,) = a
        if "r" in sg.get_var_names("train"):
            return
        sizes = sg.get_metadata()["total_events"]
        if not sum(sizes):
            return
        rows = _ragged(tag, sum(sizes))
        sg.add_data("r", rows, phase=tuple(sizes) if sum(sizes) else "train")
    elif k == "create_empty":
        (var,) = a
        sizes = sg.get_metadata()["total_events"]
        sg.create_empty(var, (sum(sizes), 2, 2), phase=tuple(sizes), dtype="f8")
    elif k == "delete":
        sg.delete_data(a[0], phase="all")
    elif k == "astype":
        var, dtype = a
        sg.astype(var, dtype, phase="all")
    elif k == "shuffle":
        phase, seed = a
        sg.shuffle(phase, seed=seed)
    elif k == "copy":
        from ..convert.stores import copy_store

        (tag,) = a
        copy_store(_source_store(tag), sg, do_compile=True)
        sg.set_data_id(DATA_ID)
    else:
        raise ValueError(f"unknown operation {k!r}")


State = dict[str, dict[str, list[tuple[str, str, tuple[int, ...], str]]]]


def _digest(value: Any) -> tuple[str, tuple[int, ...], str]:
    from ..ragged import RaggedArray

    if isinstance(value, RaggedArray):
        h = hashlib.sha1(np.ascontiguousarray(value.values).tobytes())
        h.update(np.ascontiguousarray(value.offsets).tobytes())
        return f"ragged:{value.values.dtype.str}", (len(value), *value.values.shape[1:]), \
            h.hexdigest()
    arr = np.ascontiguousarray(value)
    return arr.dtype.str, arr.shape, hashlib.sha1(arr.tobytes()).hexdigest()


def read_state(sg: Any) -> State:
    """Every data_id, phase and var of a store (in var order) with dtype, shape and a digest
    of its content."""
    db = sg.db
    out: State = {}
    for data_id in sorted(db.data_ids()):
        phases = {}
        for phase in PHASES:
            entries = []
            for var in db.var_names(data_id, phase):
                n = db.info(data_id, phase, var).length
                value = db.read(data_id, phase, var, slice(0, n, 1))
                entries.append((var, *_digest(value)))
            if entries:
                phases[phase] = entries
        if phases:
            out[data_id] = phases
    return out


def expected_states(ops: Sequence[Op]) -> list[State]:
    """The store's state before the first operation and after each one (numpy oracle)."""
    from storegate import StoreGate

    sg = StoreGate("numpy", data_id=DATA_ID)
    states = [read_state(sg)]
    for op in ops:
        apply(sg, op)
        states.append(read_state(sg))
    return states


# ---------------------------------------------------------------------------------- the writer
def _install_kill(spec: tuple[Any, ...], counter: dict[str, int]) -> None:
    """Patch the file-changing calls of ``os`` (and ``shutil.rmtree``) to count them and
    ``SIGKILL`` this process before or after change number ``spec[1]``."""
    target, where = (int(spec[1]), spec[2]) if spec[0] == "change" else (-1, "")

    mutex = threading.Lock()

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            with mutex:  # changes also happen in I/O threads
                counter["n"] += 1
                hit = counter["n"] == target
            if hit and where == "before":
                os.kill(os.getpid(), signal.SIGKILL)
            try:
                return fn(*args, **kwargs)
            finally:  # also when the call failed (a caller may expect that and go on)
                if hit and where == "after":
                    os.kill(os.getpid(), signal.SIGKILL)
        return wrapped

    for name in CHANGES:
        setattr(os, name, wrap(getattr(os, name)))
    shutil.rmtree = wrap(shutil.rmtree)  # type: ignore[assignment]


def _writer_main(backend: str, args: dict[str, Any], ops: Sequence[Op], log_path: str,
                 kill: tuple[Any, ...]) -> None:
    counter = {"n": 0}
    from storegate import StoreGate

    with open(log_path, "a", buffering=1) as log:
        _install_kill(kill, counter)
        sg = StoreGate(backend, dict(args), data_id=DATA_ID)
        for i, op in enumerate(ops):
            log.write(f"start {i} {time.perf_counter():.4f}\n")
            try:
                apply(sg, op)
            except BaseException:
                import traceback

                log.write("error " + traceback.format_exc().replace("\n", "\n| ") + "\n")
                raise
            log.write(f"done {i}{' durable' if op.durable else ''}\n")
        log.write(f"changes {counter['n']}\n")


_CTX: Any = None


def _context() -> Any:
    global _CTX
    if _CTX is None:
        _CTX = multiprocessing.get_context("forkserver")
        _CTX.set_forkserver_preload(["numpy", "zarr", "storegate", "storegate.testing.faults",
                                     "storegate.backends.zarr_backend"])
    return _CTX


@dataclass
class Outcome:
    """What a writer did before it died: operations started and finished, and the durable
    ones (indexes into the workload), its exit code and the file changes it counted."""

    started: int = -1
    done: int = -1
    durable: int = -1
    exitcode: int | None = None
    changes: int | None = None
    log: list[str] = field(default_factory=list)

    @property
    def killed(self) -> bool:
        return self.exitcode == -signal.SIGKILL


def run_writer(backend: str, args: dict[str, Any], ops: Sequence[Op], workdir: str,
               kill: tuple[Any, ...] = ("none",), timeout: float = 120.0) -> Outcome:
    """Run the workload in a child process; ``kill`` is ``("none",)``, ``("time", seconds)``
    (the parent sends SIGKILL) or ``("change", n, "before"|"after")`` (the child kills
    itself at its n-th file change)."""
    log_path = os.path.join(workdir, f"writer-{time.monotonic_ns()}.log")
    proc = _context().Process(target=_writer_main, args=(backend, args, list(ops), log_path,
                                                         kill))
    proc.start()
    if kill[0] == "time":
        proc.join(float(kill[1]))
        if proc.is_alive():
            os.kill(proc.pid, signal.SIGKILL)
    proc.join(timeout)
    if proc.is_alive():  # pragma: no cover - a hung writer
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        raise AssertionError(f"the writer did not finish within {timeout} s")
    out = Outcome(exitcode=proc.exitcode)
    if os.path.exists(log_path):  # not if the writer was killed before it opened the log
        with open(log_path) as f:
            out.log = f.read().splitlines()
        os.unlink(log_path)
    for line in out.log:
        word, _, rest = line.partition(" ")
        if word == "start":
            out.started = int(rest.split()[0])
        elif word == "done":
            out.done = int(rest.split()[0])
            if rest.endswith("durable"):
                out.durable = out.done
        elif word == "changes":
            out.changes = int(rest)
    return out


def check_after_kill(backend: str, args: dict[str, Any], states: Sequence[State],
                     outcome: Outcome) -> int:
    """Reopen the store a killed writer left, check it and return the index of the expected
    state it equals (``0``: before the first operation; ``i + 1``: after operation ``i``).

    Raises ``AssertionError`` when ``storegate check`` finds a problem, when the store equals
    no state in the allowed range (after the last durable operation, up to the last one
    started), or when a journal is left after the reopen.
    """
    from storegate import StoreGate
    from storegate.checks import check_store

    sg = StoreGate(backend, {**args, "mode": "a"})
    try:
        if DATA_ID not in sg.get_data_ids():
            state: State = {}
        else:
            report = check_store(sg)
            assert report.ok, f"storegate check failed: {[str(p) for p in report.problems]}"
            state = read_state(sg)
    finally:
        sg.close()
    lo = outcome.durable + 1
    hi = outcome.started + 1
    matches = [i for i, s in enumerate(states) if s == state]
    assert matches, (f"the store equals no state between operations (writer log: "
                     f"{outcome.log[-3:]}); found {state}")
    good = [i for i in matches if lo <= i <= hi]
    assert good, (f"the store equals state(s) {matches}, outside the allowed range {lo}..{hi} "
                  f"(writer log: {outcome.log[-3:]})")
    return good[-1]
