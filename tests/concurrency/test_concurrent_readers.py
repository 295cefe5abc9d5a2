"""One writer process and four reader processes on one store (DESIGN §5, §8).

The writer (``concurrency_worker.py writer``) appends self-describing rows to ``x`` (N, 8)
float64 and ``y`` (N,) int64 in blocks of random size and order, compiling or flushing at
random points; each reader process loops: it opens the store with ``mode='r'`` (per iteration
and closing the previous gate, per iteration dropping it unclosed, one gate renewed every two
seconds, or one gate for its whole life), reads ``len`` and then random batches, slices, masks,
lists, single rows and the last rows of ``x`` and ``y`` through views and ``get_data``, and
checks that

* every row it got is exactly the row of its index, in ``x`` and ``y`` alike;
* the length it sees is at least the rows the writer had compiled before the reader opened
  the store, at most the rows the writer had started writing (read after the reads), and
  never smaller than a length it saw before;
* the only errors are the documented retry conditions: :class:`InconsistentLengthError` (the
  implicit compile of a store whose vars are mid-append) and :class:`StoreChangedError`.

Pass/fail does not depend on timing: readers run until the writer has finished and they have
made their quota of reads (10,000 per backend in all); the writer waits until every reader has
completed one iteration before writing its second block, so they overlap every time.

HDF5 is different by design (``backends/storegate-hdf5/README.md``): its file lock admits one
writer *or* any number of readers. The test checks the documented behaviour: a reader that
opens the file while the writer has it gets a :class:`StoregateError` that says so, a writer
that opens it while readers have it likewise, and reads between the writer's flushes are right.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from concurrency_helpers import (
    check_rows,
    child_env,
    finish,
    read_number,
    start_worker,
    store_args,
    wait_for,
    x_rows,
    y_rows,
)

from storegate import StoreGate
from storegate.errors import StoregateError


def _have(module: str) -> bool:
    spec = importlib.util.find_spec(module)
    return spec is not None and spec.origin is not None


# the writer's options per backend: small chunks / row groups / files and a small append
# buffer, so blocks straddle chunk boundaries, tails are rewritten, and a var is flushed while
# the other is still buffered
SETUPS: dict[str, dict[str, Any]] = {
    "zarr": {"writer_args": {"chunk_bytes": 4096}, "rows": 6_000, "mean_block": 60,
             "pause": 0.01},
    "hybrid": {"writer_args": {"chunk_bytes": 4096}, "rows": 5_000, "mean_block": 60,
               "pause": 0.01},
    "parquet": {"writer_args": {"row_group_rows": 256, "file_rows": 2048,
                                "buffer_bytes": 32 << 10},
                "rows": 8_000, "mean_block": 150, "pause": 0.01},
    "hdf5": {"writer_args": {"chunk": 64}, "rows": 2_000, "mean_block": 40, "pause": 0.005},
}

# (policy, extra reader args, quota of reads): 10,000 reads per backend in all
READERS: list[tuple[str, dict[str, Any], int]] = [
    ("fresh", {}, 1_000),
    ("fresh-noclose", {"cache_bytes": 0}, 1_000),
    ("long", {"cache_bytes": 0}, 3_000),
    ("single", {}, 5_000),
]
TOTAL_READS = sum(q for _, _, q in READERS)


def _requirement(backend: str) -> None:
    if backend == "parquet" and not _have("pyarrow"):
        pytest.skip("pyarrow is not installed")
    if backend == "hdf5" and not _have("storegate_hdf5"):
        pytest.skip("the storegate-hdf5 plugin is not installed")


def _run(backend: str, tmp_path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run the writer and the readers; returns the writer's summary and the readers'."""
    _requirement(backend)
    setup = SETUPS[backend]
    side = tmp_path / "side"
    side.mkdir()
    store = tmp_path / ("store.h5" if backend == "hdf5" else "store")
    args = store_args(backend, store)
    logs = [tmp_path / "writer.log"]
    procs = [start_worker({"role": "writer", "backend": backend, "args": args,
                           "writer_args": setup["writer_args"], "side": str(side), "seed": 7,
                           "rows": setup["rows"], "mean_block": setup["mean_block"],
                           "pause": setup["pause"], "readers": len(READERS)}, logs[0])]
    try:
        wait_for(lambda: read_number(side / "done") > 0, 60, "the writer's first compile",
                 procs, logs)
        deadline = time.time() + 150  # a safety stop only: readers end long before
        for i, (policy, extra, quota) in enumerate(READERS):
            if backend == "hdf5":
                extra = {}  # cache_bytes is a zarr/parquet option here
            logs.append(tmp_path / f"reader-{i}.log")
            procs.append(start_worker({
                "role": "reader", "backend": backend, "args": args, "reader_args": extra,
                "side": str(side), "seed": 100 + i, "index": i, "policy": policy,
                "deadline": deadline, "min_reads": quota,
                "result": str(tmp_path / f"reader-{i}.json")}, logs[-1]))
        finish(procs, logs, timeout=170)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    writer = json.loads(logs[0].read_text().strip().splitlines()[-1])
    readers = [json.loads((tmp_path / f"reader-{i}.json").read_text())
               for i in range(len(READERS))]
    return writer, readers


def _check(backend: str, writer: dict[str, Any], readers: list[dict[str, Any]],
           allowed: set[str]) -> None:
    summary = [{k: r[k] for k in ("policy", "reads", "iterations", "opens", "overlapped",
                                  "retries", "distinct_lengths", "max_length", "final_length")}
               for r in readers]
    print(f"\n{backend}: writer {writer}")
    for s in summary:
        print(f"{backend}: reader {s}")
    problems = [v for r in readers for v in r["violations"]]
    assert not problems, f"{len(problems)} torn or out-of-bounds reads, e.g.:\n" + \
        "\n".join(problems[:10])
    errors = [e for r in readers for e in r["errors"]]
    assert not errors, f"{len(errors)} unexpected errors in readers, e.g.:\n" + \
        "\n".join(errors[:3])
    unexpected = {k for r in readers for k in r["retries"]} - allowed
    assert not unexpected, unexpected
    assert writer["rows"] == SETUPS[backend]["rows"]
    reads = sum(r["reads"] for r in readers)
    assert reads >= TOTAL_READS, summary
    # every reader overlapped the writer, and the fresh ones saw the store grow
    assert all(r["overlapped"] >= 1 for r in readers), summary
    assert all(r["distinct_lengths"] >= 2 for r in readers if r["policy"].startswith("fresh")), \
        summary
    # once the writer has finished, a new gate in each reader process reads all its rows
    assert all(r["final_length"] == writer["rows"] for r in readers), summary


@pytest.mark.parametrize("backend", ["zarr", "parquet", "hybrid"])
def test_one_writer_many_readers(backend: str, tmp_path: Path) -> None:
    writer, readers = _run(backend, tmp_path)
    _check(backend, writer, readers, {"InconsistentLengthError", "StoreChangedError"})


def test_hdf5_one_writer_many_readers_between_flushes(tmp_path: Path) -> None:
    """HDF5: readers read between the writer's flushes; a collision is the documented
    StoregateError on either side (the worker counts it as 'hdf5 file locked')."""
    writer, readers = _run("hdf5", tmp_path)
    _check("hdf5", writer, readers,
           {"InconsistentLengthError", "StoreChangedError", "hdf5 file locked"})


# ---------------------------------------------------------------------------------- hdf5 rule
_HOLD = """
import sys, time
sys.path.insert(0, {here!r})
from concurrency_helpers import x_rows, y_rows
from storegate import StoreGate
mode = {mode!r}
sg = StoreGate("hdf5", {{"path": {path!r}, "mode": mode}}, data_id="d")
if mode == "r":
    sg["train"]["y"][0:5]                      # the file stays open (shared lock)
else:
    sg.add_data(["x", "y"], [x_rows((100, 110)), y_rows((100, 110))], phase="train")
print("holding", flush=True)
sys.stdin.readline()                          # until the test says so
if mode != "r":
    sg.compile()
sg.close()
print("closed", flush=True)
"""


def _holder(path: Path, mode: str) -> subprocess.Popen[str]:
    here = str(Path(__file__).resolve().parent)
    proc = subprocess.Popen([sys.executable, "-c", _HOLD.format(here=here, path=str(path),
                                                                  mode=mode)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env=child_env())
    assert proc.stdout is not None and proc.stdout.readline().strip() == "holding"
    return proc


def _release(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "closed"
    assert proc.wait(30) == 0


def test_hdf5_reader_refused_while_writer_holds_file(tmp_path: Path) -> None:
    """The documented HDF5 rule, deterministically: while a writer process has the file open
    a reader gets a StoregateError naming the file and the fix; after its flush the reader
    reads every row, including the writer's; while a reader has it open, a writer is refused
    the same way and the reader's data are intact."""
    _requirement("hdf5")
    path = tmp_path / "store.h5"
    sg = StoreGate("hdf5", {"path": str(path)}, data_id="d")
    sg.add_data(["x", "y"], [x_rows((0, 100)), y_rows((0, 100))], phase="train")
    sg.compile()
    sg.close()

    writer = _holder(path, "a")
    try:
        with pytest.raises(StoregateError) as info:
            StoreGate("hdf5", {"path": str(path), "mode": "r"}, data_id="d")["train"]["y"][0:1]
        text = str(info.value)
        assert str(path) in text and "another process" in text and "mode='r'" in text, text
    finally:
        _release(writer)
    reader = StoreGate("hdf5", {"path": str(path), "mode": "r"}, data_id="d")
    assert len(reader["train"]) == 110
    assert check_rows(np.arange(110), *reader["train"][["x", "y"]][:]) is None
    reader.close()

    held = _holder(path, "r")
    try:
        with pytest.raises(StoregateError) as info:
            w = StoreGate("hdf5", {"path": str(path)}, data_id="d")  # opens the file to write
            w.add_data(["x", "y"], [x_rows((110, 120)), y_rows((110, 120))], phase="train")
        assert str(path) in str(info.value) and "another process" in str(info.value), \
            str(info.value)
    finally:
        _release(held)
    reader = StoreGate("hdf5", {"path": str(path), "mode": "r"}, data_id="d")
    assert len(reader["train"]) == 110
    assert check_rows(np.arange(110), *reader["train"][["x", "y"]][:]) is None
    reader.close()


# ---------------------------------------------------------------------------------- regressions
_APPEND = """
import sys
sys.path.insert(0, {here!r})
from concurrency_helpers import x_rows, y_rows
from storegate import StoreGate
sg = StoreGate({backend!r}, {{"output_dir": {path!r}, "chunk": 128}}, data_id="d")
n = len(sg["train"])
sg.add_data(["x", "y"], [x_rows((n, n + {rows})), y_rows((n, n + {rows}))], phase="train")
sg.compile()
sg.close()
"""


@pytest.mark.parametrize("backend", ["zarr", "hybrid"])
@pytest.mark.parametrize("cache_bytes", [None, 0])
def test_reader_after_another_process_rewrote_a_chunk(backend: str, cache_bytes: int | None,
                                                      tmp_path: Path) -> None:
    """A reader process keeps a gate open (its chunk files' descriptors cached process-wide)
    while another process appends into the same, partly filled chunk (which replaces the chunk
    file). A gate opened afterwards in the reader process must read the new rows, not zeros
    from the old file through a cached descriptor."""
    path = str(tmp_path / "s")
    here = str(Path(__file__).resolve().parent)
    sg = StoreGate(backend, {"output_dir": path, "chunk": 128}, data_id="d")
    sg.add_data(["x", "y"], [x_rows((0, 200)), y_rows((0, 200))], phase="train")
    sg.compile()
    sg.close()
    args = {"output_dir": path, "mode": "r", "cache_bytes": cache_bytes}
    old = StoreGate(backend, args, data_id="d")
    assert check_rows(np.arange(150, 200), *old["train"][["x", "y"]][150:200]) is None
    idx = np.array([199, 150, 160])
    assert check_rows(idx, *old["train"][["x", "y"]][idx]) is None
    for rows in (40, 30):
        subprocess.run([sys.executable, "-c", _APPEND.format(here=here, backend=backend,
                                                             path=path, rows=rows)],
                       check=True, env=child_env(), timeout=120)
        new = StoreGate(backend, args, data_id="d")  # `old` stays open
        n = len(new["train"])
        assert check_rows(np.arange(150, n), *new["train"][["x", "y"]][150:n]) is None
        idx = np.array([n - 1, 150, n - 2, 0])
        assert check_rows(idx, *new["train"][["x", "y"]][idx]) is None
        # the old gate still reads its own rows
        assert len(old["train"]) == 200
        assert check_rows(np.arange(0, 200), *old["train"][["x", "y"]][0:200]) is None
    new.close()
    old.close()
