"""Processes of the concurrency tests: ``python concurrency_worker.py '<json config>'``.

Roles (``config["role"]``):

``writer``
    Appends self-describing rows (see :mod:`concurrency_helpers`) to ``x`` and ``y`` of phase
    ``train`` in blocks of random size, in a random order (x then y, y then x, both in one
    call), calling ``compile()``, ``flush()`` or nothing after a block, and publishing
    ``intent``/``done`` side files. Ends with a compile, ``close()`` and the ``finished`` file.
``reader``
    Opens the store with ``mode='r'`` (a new StoreGate per iteration, one renewed every few
    seconds, or a single one for its whole life) and reads random rows, slices, single rows and
    the last rows through several paths, checking every row and the length bounds. Writes a
    JSON summary (counts, retries by error type, violations, unexpected errors) to
    ``config["result"]``.
``hold``
    Opens a writable StoreGate, appends rows (taking the writer lock), writes the ``held`` side
    file and then waits: for the ``release`` file (then closes and writes ``released``), or
    forever (the test kills it). With ``fork_child``: before waiting, forks a child that reads
    through the inherited gate and sleeps, as a DataLoader worker would, and closes the parent's
    gate right away.
``try_write``
    Tries one ``add_data`` on the store and writes ``{"ok": ..., "type": ..., "message": ...}``
    to ``config["result"]``.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from typing import Any

import numpy as np
from concurrency_helpers import check_rows, read_number, write_number, x_rows, y_rows

from storegate import StoreGate
from storegate.errors import InconsistentLengthError, StoreChangedError, StoregateError

D = "d"


def _side(cfg: dict[str, Any], name: str) -> str:
    return os.path.join(cfg["side"], name)


def _hdf5_locked(err: BaseException) -> bool:
    """The documented error of the hdf5 backend when another process has the file open."""
    return isinstance(err, StoregateError) and "open in another process" in str(err)


def _retrying(cfg: dict[str, Any], fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call ``fn``; on hdf5, retry while readers hold the file (HDF5's own lock)."""
    waits = 0
    while True:
        try:
            return fn(*args, **kwargs)
        except StoregateError as err:
            if cfg["backend"] != "hdf5" or not _hdf5_locked(err) or waits > 20000:
                raise
            waits += 1
            time.sleep(0.0005)


# ---------------------------------------------------------------------------------- writer
def writer(cfg: dict[str, Any]) -> None:
    be, args = cfg["backend"], dict(cfg["args"], **cfg.get("writer_args", {}))
    hdf5 = be == "hdf5"
    rng = np.random.default_rng(cfg["seed"])
    total, mean, pause = cfg["rows"], cfg["mean_block"], cfg["pause"]
    t0 = time.monotonic()
    sg = _retrying(cfg, StoreGate, be, args, data_id=D)
    n = 0
    compiles = flushes = 0
    wants = _side(cfg, "wants")
    while n < total:
        if n and cfg.get("readers") and not _readers_ready(cfg):
            time.sleep(0.01)  # the readers are starting: let them overlap with every block
            continue
        k = int(min(total - n, rng.integers(1, 2 * mean)))
        if hdf5:
            write_number(wants, 1)  # readers step back while the writer takes the file
        write_number(_side(cfg, "intent"), n + k)
        xs, ys = x_rows((n, n + k)), y_rows((n, n + k))
        order = int(rng.integers(3))
        if order == 2:
            _retrying(cfg, sg.add_data, ["x", "y"], [xs, ys], phase="train")
        else:
            first, second = (("x", xs), ("y", ys)) if order == 0 else (("y", ys), ("x", xs))
            _retrying(cfg, sg.add_data, first[0], first[1], phase="train")
            if rng.random() < 0.3:  # one var on disk ahead of the other
                _retrying(cfg, sg.db.flush)
            _retrying(cfg, sg.add_data, second[0], second[1], phase="train")
        n += k
        act = rng.random()
        if n == k or act < 0.5:
            _retrying(cfg, sg.compile)
            if hdf5:
                sg.db.flush()  # closes the file: readers may open it
            compiles += 1
            write_number(_side(cfg, "done"), n)
        elif act < 0.75:
            _retrying(cfg, sg.db.flush)
            flushes += 1
        if hdf5:
            sg.db.flush()
            os.unlink(wants)
        time.sleep(float(rng.uniform(0, 2 * pause)))
    _retrying(cfg, sg.compile)
    sg.close()
    write_number(_side(cfg, "done"), n)
    write_number(_side(cfg, "finished"), 1)
    print(json.dumps({"rows": n, "compiles": compiles, "flushes": flushes,
                      "seconds": round(time.monotonic() - t0, 2)}), flush=True)


def _readers_ready(cfg: dict[str, Any]) -> bool:
    """Whether every reader has finished its first iteration (or a minute has passed)."""
    started = cfg.setdefault("_wait_started", time.monotonic())
    ready = sum(os.path.exists(_side(cfg, f"ready-{i}")) for i in range(cfg["readers"]))
    return ready >= cfg["readers"] or time.monotonic() - started > 60


# ---------------------------------------------------------------------------------- reader
class _Violation(Exception):
    pass


def _read_iteration(sg: StoreGate, rng: np.random.Generator, st: dict[str, Any],
                    lower: int, last: int) -> int:
    """One round of reads; returns the length observed. Raises _Violation on a bad result."""
    reads = 0

    def check(what: str, index: Any, x: Any = None, y: Any = None) -> None:
        nonlocal reads
        reads += 1
        if isinstance(index, tuple):
            index = np.arange(index[0], index[1], dtype=np.int64)
        bad = check_rows(np.asarray(index), x, y)
        if bad is not None:
            raise _Violation(f"{what}: {bad}")

    train = sg["train"]
    n = len(train)
    reads += 1
    if n < lower:
        raise _Violation(f"len {n} < {lower} rows committed (compiled) before the open")
    if n < last:
        raise _Violation(f"len {n} went back from {last} observed earlier in this process")
    if n == 0:
        return n
    for _ in range(int(rng.integers(3, 8))):
        kind = int(rng.integers(7))
        if kind == 0:  # random batch, both vars with one index (list = one batched read)
            idx = rng.integers(0, n, size=int(rng.integers(1, 257)))
            xs, ys = train[["x", "y"]][idx]
            check("train[['x','y']][idx]", idx, xs, ys)
        elif kind == 1:  # each var on its own, the same index
            idx = rng.integers(0, n, size=int(rng.integers(1, 65)))
            check("train['x'][idx]", idx, x=train["x"][idx])
            check("train['y'][idx]", idx, y=train["y"][idx])
        elif kind == 2:  # a slice
            a = int(rng.integers(0, n))
            b = min(n, a + int(rng.integers(1, 300)))
            check("train['x'][a:b]", (a, b), x=train["x"][a:b])
            check("sg.get_data('y', 'train', (a, b))", (a, b), y=sg.get_data("y", "train", (a, b)))
        elif kind == 3:  # the last rows: written last, the likeliest to be torn
            k = min(n, int(rng.integers(1, 65)))
            xs, ys = train[["x", "y"]][n - k:n]
            check("train[['x','y']][n-k:n]", (n - k, n), xs, ys)
            check("train['x'][n-1]", np.array(n - 1), x=train["x"][n - 1])
            check("get_data('y', 'train', n-1)", np.array(n - 1),
                  y=np.asarray(sg.get_data("y", "train", n - 1)))
        elif kind == 4:  # sorted, unique rows through get_data and the 'all' phase
            idx = np.unique(rng.integers(0, n, size=int(rng.integers(1, 129))))
            xs, ys = sg.get_data(["x", "y"], "train", idx)
            check("get_data(['x','y'], 'train', idx)", idx, xs, ys)
            check("get_data('x', 'all', idx)", idx, x=sg.get_data("x", "all", idx))
        elif kind == 5:  # a bool mask and a list
            mask = rng.random(n) < min(1.0, 64 / n)
            check("train['y'][mask]", np.flatnonzero(mask), y=train["y"][mask])
            lst = rng.integers(0, n, size=5).tolist()
            check("train['x'][list]", np.array(lst), x=train["x"][lst])
        else:  # the whole of y (small), and a negative int
            check("train['y'][:]", (0, n), y=train["y"][:])
            if n >= 2:  # -1 means every row (multiml); -2 is row n - 2
                check("train['x'][-2]", np.array(n - 2), x=train["x"][-2])
    st["reads"] += reads
    return n


def reader(cfg: dict[str, Any]) -> None:
    be = cfg["backend"]
    args = dict(cfg["args"], mode="r", **cfg.get("reader_args", {}))
    # 'fresh': a new StoreGate per iteration, the previous one closed; 'fresh-noclose': the
    # same, the previous one dropped without close() (it is only garbage); 'long': one gate
    # renewed every renew_s seconds; 'single': one gate for the whole run
    policy = cfg["policy"]
    hdf5 = be == "hdf5"
    rng = np.random.default_rng(cfg["seed"])
    st: dict[str, Any] = {"reads": 0, "iterations": 0, "opens": 0, "retries": {},
                          "violations": [], "errors": [], "lengths": [], "policy": policy,
                          "overlapped": 0}
    sg: StoreGate | None = None
    opened_at = 0.0
    lower = 0
    last = 0
    while True:
        now = time.time()
        finished = os.path.exists(_side(cfg, "finished"))
        if now > cfg["deadline"] or (finished and st["reads"] >= cfg["min_reads"]):
            break
        if hdf5 and os.path.exists(_side(cfg, "wants")) and rng.random() < 0.9:
            time.sleep(0.001)  # mostly leave the file to the writer (sometimes collide)
            continue
        done_before = read_number(_side(cfg, "done"), 0)
        renew = sg is None or policy.startswith("fresh") or (
            policy == "long" and now - opened_at > cfg.get("renew_s", 2.0))
        try:
            if renew:
                if sg is not None and policy != "fresh-noclose":
                    sg.close()
                sg = None
                sg = StoreGate(be, args, data_id=D)
                st["opens"] += 1
                lower, opened_at = done_before, now
            n = _read_iteration(sg, rng, st, lower, last)
            intent_after = read_number(_side(cfg, "intent"), 0)
            if n > intent_after:
                raise _Violation(f"len {n} > {intent_after}, the rows the writer had started "
                                 "writing")
            last = max(last, n)
            st["lengths"].append(n)
            st["iterations"] += 1
            if not finished:
                st["overlapped"] += 1
            if st["iterations"] == 1:
                write_number(_side(cfg, f"ready-{cfg['index']}"), 1)
        except _Violation as v:
            st["violations"].append(f"[{policy}] {v}")
            if len(st["violations"]) > 20:
                break
            sg = None
        except (StoreChangedError, InconsistentLengthError) as err:
            name = type(err).__name__
            st["retries"][name] = st["retries"].get(name, 0) + 1
        except StoregateError as err:
            if hdf5 and _hdf5_locked(err):
                st["retries"]["hdf5 file locked"] = st["retries"].get("hdf5 file locked", 0) + 1
                time.sleep(0.001)
            else:
                st["errors"].append(traceback.format_exc())
                sg = None
        except Exception:
            st["errors"].append(traceback.format_exc())
            sg = None
        finally:
            if hdf5 and sg is not None:
                sg.db.flush()  # give the file back (HDF5 locks it while open), keep the gate
        if len(st["errors"]) > 20:
            break
        if hdf5:
            time.sleep(0.002)  # leave the writer windows to take the file
    if sg is not None and policy != "fresh-noclose":
        sg.close()
    sg = None
    st["final_length"] = _final_check(cfg, args, st) if finished else None
    lengths = st.pop("lengths")
    st["distinct_lengths"] = len(set(lengths))
    st["max_length"] = max(lengths, default=0)
    with open(cfg["result"], "w") as f:
        json.dump(st, f)


def _final_check(cfg: dict[str, Any], args: dict[str, Any], st: dict[str, Any]) -> int:
    """After the writer has finished: a new gate sees every row the writer wrote, right."""
    done = read_number(_side(cfg, "done"))
    for _ in range(1000):  # hdf5: the writer may still be closing the file
        try:
            sg = StoreGate(cfg["backend"], args, data_id=D)
            try:
                n = len(sg["train"])
                xs, ys = sg["train"][["x", "y"]][:]
            finally:
                sg.close()
            break
        except StoregateError as err:
            if not _hdf5_locked(err):
                raise
            time.sleep(0.005)
    else:
        raise RuntimeError("the store stayed locked after the writer had finished")
    bad = check_rows(np.arange(n), xs, ys)
    if n != done or bad is not None:
        st["violations"].append(f"[final] len {n} (writer wrote {done}): {bad}")
    return n


# ---------------------------------------------------------------------------------- lock roles
def hold(cfg: dict[str, Any]) -> None:
    be, args = cfg["backend"], cfg["args"]
    sg = StoreGate(be, args, data_id=D)
    n0 = cfg.get("start", 0)
    rows = cfg.get("rows", 100)
    sg.add_data(["x", "y"], [x_rows((n0, n0 + rows)), y_rows((n0, n0 + rows))], phase="train")
    sg.compile()
    if cfg.get("uncommitted"):
        # rows of x only, not compiled: zarr writes the whole chunks among them (while the
        # tail stays buffered, the operation is not committed), parquet buffers them all
        k = cfg["uncommitted"]
        sg.add_data("x", x_rows((n0 + rows, n0 + rows + k)), phase="train")
    if cfg.get("fork_child"):
        import multiprocessing

        ctx = multiprocessing.get_context("fork")
        child = ctx.Process(target=_forked_reader, args=(sg, cfg), daemon=False)
        child.start()
        write_number(_side(cfg, "child_pid"), child.pid)
        sg.close()
        write_number(_side(cfg, "held"), os.getpid())
        child.join()
        return
    write_number(_side(cfg, "held"), os.getpid())
    release = _side(cfg, "release")
    while not os.path.exists(release):
        time.sleep(0.01)
    sg.close()
    write_number(_side(cfg, "released"), 1)
    while cfg.get("linger") and not os.path.exists(_side(cfg, "exit")):
        time.sleep(0.01)


def _forked_reader(sg: StoreGate, cfg: dict[str, Any]) -> None:
    """A DataLoader-style worker: reads through the gate its parent forked, then idles."""
    n = len(sg["train"])
    bad = check_rows(np.arange(n), y=sg["train"]["y"][:])
    write_number(_side(cfg, "child_read"), 0 if bad is None else 1)
    end = time.time() + 60
    while time.time() < end and not os.path.exists(_side(cfg, "exit")):
        time.sleep(0.01)


def try_write(cfg: dict[str, Any]) -> None:
    be, args = cfg["backend"], cfg["args"]
    out: dict[str, Any] = {"ok": False, "type": None, "message": None, "pid": os.getpid()}
    try:
        sg = StoreGate(be, args, data_id=D)
        n0 = cfg.get("start", 0)
        if n0 == "len":  # after whatever the store holds (a rolled-back store: its commit)
            n0 = len(sg["train"])
        out["start"] = n0
        rows = cfg.get("rows", 10)
        sg.add_data(["x", "y"], [x_rows((n0, n0 + rows)), y_rows((n0, n0 + rows))],
                    phase="train")
        sg.compile()
        sg.close()
        out["ok"] = True
    except Exception as err:
        out["type"] = type(err).__name__
        out["mro"] = [c.__name__ for c in type(err).__mro__]
        out["message"] = str(err)
        out["traceback"] = traceback.format_exc()
    with open(cfg["result"], "w") as f:
        json.dump(out, f)


ROLES = {"writer": writer, "reader": reader, "hold": hold, "try_write": try_write}

if __name__ == "__main__":
    config = json.loads(sys.argv[1])
    ROLES[config["role"]](config)
