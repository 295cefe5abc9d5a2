"""Crash consistency: a writer killed at random points never leaves an inconsistent store.

For every persistent backend a workload of write operations (``storegate.testing.faults``:
appends over several vars and phases, ragged appends, in-place updates, ``create_empty``,
``delete_data``, ``astype``, ``shuffle``, an import of another store, ``compile``, ``close``)
runs in a child process that is killed with SIGKILL -- half of the time at a random moment,
half of the time just before or just after a randomly chosen file change (every write, rename,
link, unlink and directory change the writer makes, its journal and commit included). Each time
the store is reopened for writing, ``storegate check`` must pass, and the store must equal the
state after one of the operations, no older than the last durable one.

``SG_FAULT_KILLS`` sets the kills per backend (64 by default, of which at least 50 must land
before the writer finishes; ``docs/reliability.md`` records a run with 250 per backend),
``SG_FAULT_SEED`` the seed, ``SG_FAULT_REPORT`` a JSON file to which each backend's tally is
appended.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from storegate.backends import list_backends
from storegate.testing import faults

KILLS = int(os.environ.get("SG_FAULT_KILLS", "64"))
SEED = int(os.environ.get("SG_FAULT_SEED", "20261121"))

# small chunks, row groups, files and buffers: many files and many commits per workload
BACKENDS: dict[str, tuple[str, dict[str, Any], str]] = {
    "zarr": ("zarr", {"chunk": 64}, "output_dir"),
    "zarr-lz4": ("zarr", {"chunk": 100, "compressor": "lz4"}, "output_dir"),
    "hybrid": ("hybrid", {"chunk": 64}, "output_dir"),
    "parquet": ("parquet", {"row_group_rows": 50, "file_rows": 200, "buffer_bytes": 16_000},
                "output_dir"),
    "hdf5": ("hdf5", {}, "path"),
}


def _args(key: str, where: Path) -> tuple[str, dict[str, Any]]:
    backend, options, location = BACKENDS[key]
    target = where / ("store.h5" if backend == "hdf5" else "store")
    return backend, {**options, location: str(target)}


@pytest.mark.parametrize("key", list(BACKENDS))
def test_killed_writer_leaves_a_state_between_operations(key: str, tmp_path: Path) -> None:
    backend = BACKENDS[key][0]
    if backend not in list_backends():
        pytest.skip(f"the {backend} backend is not installed")
    ragged = backend != "hdf5" or _supports_ragged(backend)
    ops = faults.workload(seed=SEED % 1000, rounds=1, ragged=ragged, max_rows=300)
    states = faults.expected_states(ops)

    # a clean run: how long the workload takes and how many file changes it makes
    clean = tmp_path / "clean"
    clean.mkdir()
    _, args = _args(key, clean)
    start = time.perf_counter()
    out = faults.run_writer(backend, args, ops, str(clean))
    duration = time.perf_counter() - start
    assert out.exitcode == 0, out.log
    assert faults.check_after_kill(backend, args, states, out) == len(ops)
    assert out.changes and out.changes > len(ops)

    rng = random.Random(SEED)
    plans: list[tuple[Any, ...]] = []
    for i in range(KILLS):
        if i % 2:
            plans.append(("time", rng.uniform(0.0, 0.9 * duration)))
        else:
            plans.append(("change", rng.randint(1, out.changes), rng.choice(["before",
                                                                                "after"])))

    def trial(i: int, kill: tuple[Any, ...]) -> tuple[str, int, bool]:
        where = tmp_path / f"t{i}"
        where.mkdir()
        _, args = _args(key, where)
        outcome = faults.run_writer(backend, args, ops, str(where), kill=kill)
        if kill[0] == "change" and not outcome.killed:  # a run with fewer changes
            assert outcome.exitcode == 0, outcome.log
        try:
            state = faults.check_after_kill(backend, args, states, outcome)
        except AssertionError as err:
            raise AssertionError(f"kill {kill} ({key}): {err}") from None
        shutil.rmtree(where)
        kind = ops[state - 1].kind if state else "empty"
        return kind, state, outcome.killed

    with ThreadPoolExecutor(2) as pool:  # writers run in child processes: two at a time
        results = list(pool.map(lambda a: trial(*a), enumerate(plans)))
        # a backend with few file changes per run (hdf5 writes inside one file) or a slow
        # machine may finish some runs before their kill: top up with kills at random times
        # (or, on a loaded machine where the interpreter's start-up takes most of a run, kills
        # may bunch before the first operation and after the last: aim later into the run
        # until they land in enough states)
        wanted = min(50, KILLS)
        extra = len(plans)

        def short() -> bool:
            killed = sum(1 for _, _, k in results if k)
            return killed < wanted or len({s for _, s, _ in results}) < 5

        while short() and extra < 3 * KILLS:
            more = [(i, ("time", rng.uniform(0.2 * duration, 0.95 * duration)))
                    for i in range(extra, extra + 8)]
            extra += len(more)
            results += list(pool.map(lambda a: trial(*a), more))
    killed = sum(1 for _, _, k in results if k)
    by_state = Counter(s for _, s, _ in results)
    assert killed >= min(50, KILLS), f"only {killed} of {len(results)} writers were killed"
    assert len(by_state) >= 5, f"kills landed in too few states: {by_state}"
    tally = {"backend": key, "kills": killed, "trials": len(results),
             "operations": len(ops), "changes_per_run": out.changes,
             "states_seen": len(by_state), "inconsistent": 0,
             "after_op": dict(Counter(kind for kind, _, _ in results))}
    report = os.environ.get("SG_FAULT_REPORT")
    if report:
        with open(report, "a") as f:
            f.write(json.dumps(tally) + "\n")
    print(tally)


def _supports_ragged(backend: str) -> bool:
    from storegate.backends import get_backend

    return bool(get_backend(backend).supports_ragged)
