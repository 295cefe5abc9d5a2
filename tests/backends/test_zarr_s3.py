"""zarr stores on S3, through a StoreGate: the local S3-protocol server (moto) started by the
``local_s3`` fixture, every request real HTTP.

The backend contract suite runs against ``s3://`` in ``test_zarr_contract.py``
(``TestZarrBackendS3``); this file covers what a user does around it: storage options and the
AWS environment variables, opening a store someone else writes, read-only sessions that change
nothing, missing buckets and stores, and concurrent chunk fetches.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import threading
import time
import warnings
from typing import Any

import numpy as np
import pytest

from storegate import StoreGate
from storegate.backends.arena import Arena
from storegate.cli import main
from storegate.errors import ReadOnlyError, StoreLockedError, StoreNotFoundError
from storegate.testing.s3 import s3_environment


def _objects(local_s3: Any, url: str) -> dict[str, bytes]:
    """Every object under ``url`` and its bytes."""
    fs = local_s3.filesystem()
    fs.invalidate_cache()
    root = url.split("://", 1)[1]
    return {p: fs.cat_file(p) for p in fs.find(root)}


def _write_store(url: str, options: dict[str, Any]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(5)
    data = {"x": rng.standard_normal((500, 6)).astype("f4"), "y": np.arange(500) % 3}
    sg = StoreGate("zarr", {"output_dir": url, "storage_options": options,
                            "chunk_bytes": 2048}, data_id="jets")
    sg.add_data("x", data["x"], phase=(0.6, 0.2, 0.2))
    sg.add_data("y", data["y"], phase=(0.6, 0.2, 0.2))
    sg.compile()
    sg.close()
    return data


def test_round_trip_with_storage_options(local_s3: Any, s3_url: str) -> None:
    url = f"{s3_url}/runs/store.zarr"
    data = _write_store(url, local_s3.storage_options)
    sg = StoreGate.open(url, backend_args={"storage_options": local_s3.storage_options})
    assert sg.backend == "zarr" and sg.data_id == "jets"
    assert sg.get_data_ids() == ["jets"]
    np.testing.assert_array_equal(sg["train"]["x"][:], data["x"][:300])
    np.testing.assert_array_equal(sg["test"][["x", "y"]][[0, 99, 5]][1],
                                  data["y"][400:][[0, 99, 5]])
    np.testing.assert_array_equal(sg["all"]["y"][:], data["y"])
    idx = np.random.default_rng(0).integers(0, 300, 200)
    np.testing.assert_array_equal(sg["train"]["x"][idx], data["x"][:300][idx])
    sg.close()


def test_endpoint_and_credentials_from_the_environment(local_s3: Any, s3_url: str) -> None:
    """No storage_options at all: AWS_ENDPOINT_URL and the key variables, as on a cluster."""
    url = f"{s3_url}/env.zarr"
    with s3_environment(local_s3.endpoint_url):
        sg = StoreGate("zarr", {"output_dir": url}, data_id="d")
        sg.add_data("x", np.arange(10.0), phase="train")
        sg.compile()
        sg.close()
        again = StoreGate.open(url)
        assert again["train"]["x"][:].tolist() == list(np.arange(10.0))
        again.close()


def test_readonly_session_changes_no_object(local_s3: Any, s3_url: str) -> None:
    """A reader with mode='r' reads everything and leaves every object byte-identical (it
    could run with credentials that only allow GET and LIST)."""
    url = f"{s3_url}/shared.zarr"
    data = _write_store(url, local_s3.storage_options)
    before = _objects(local_s3, url)
    sg = StoreGate.open(url, backend_args={"storage_options": local_s3.storage_options})
    for phase in ("train", "valid", "test", "all"):
        for var in ("x", "y"):
            sg[phase][var][:]
    sg["train"]["x"][[3, 1, 2]]
    assert sg["valid"]["y"][:].tolist() == data["y"][300:400].tolist()
    with pytest.raises(ReadOnlyError):
        sg.add_data("z", np.zeros(300), phase="train")
    sg.close()
    assert _objects(local_s3, url) == before


def _append_rows(url: str, options: dict[str, Any], start: int) -> None:
    sg = StoreGate("zarr", {"output_dir": url, "storage_options": options}, data_id="jets")
    sg.add_data("x", np.full((50, 6), start, dtype="f4"), phase="train")
    sg.add_data("y", np.full(50, start), phase="train")
    sg.compile()
    sg.close()


def test_reader_sees_what_another_process_wrote(local_s3: Any, s3_url: str) -> None:
    """A writer in another process (another machine, as far as S3 knows) appends; a reader
    that opens the store afterwards sees the new rows, one opened before keeps its view."""
    url = f"{s3_url}/grow.zarr"
    _write_store(url, local_s3.storage_options)
    opts = {"storage_options": local_s3.storage_options}
    early = StoreGate.open(url, backend_args=opts)
    assert len(early["train"]["x"]) == 300
    proc = mp.get_context("spawn").Process(
        target=_append_rows, args=(url, local_s3.storage_options, 7))
    proc.start()
    proc.join(120)
    assert proc.exitcode == 0
    late = StoreGate.open(url, backend_args=opts)
    assert len(late["train"]["x"]) == 350
    assert late["train"]["y"][-50:].tolist() == [7] * 50
    assert len(early["train"]["x"]) == 300  # a snapshot of what it opened
    early.close()
    late.close()


def test_missing_bucket_and_store_are_not_found(local_s3: Any, s3_url: str) -> None:
    opts = {"storage_options": local_s3.storage_options}
    with pytest.raises(StoreNotFoundError, match="nothing exists at that URL"):
        StoreGate.open(f"{s3_url}/nothing-here.zarr", backend_args=opts)
    with pytest.raises(StoreNotFoundError):
        StoreGate.open("s3://no-such-bucket-storegate/x.zarr", backend_args=opts)
    with pytest.raises(StoreNotFoundError):
        StoreGate("zarr", {"output_dir": f"{s3_url}/absent.zarr", "mode": "r", **opts})


def test_arena_fetches_remote_runs_concurrently() -> None:
    """Random rows of a remote var touch many separate chunks; the arena fetches them
    concurrently (one request each on an object store) instead of one after another."""
    active = 0
    peak = 0
    lock = threading.Lock()

    def fill(start: int, stop: int, out: np.ndarray) -> None:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.02)  # a request's round trip
        out[...] = np.arange(start, stop)[:, None]
        with lock:
            active -= 1

    src_rows = 64 * 40
    arena = Arena((src_rows, 1), np.dtype("i8"), 64, fill, parallel=8)
    idx = np.arange(0, src_rows, 128)  # every other chunk: 20 separate runs
    got = arena.take(idx)
    np.testing.assert_array_equal(got[:, 0], idx)
    assert peak > 1
    serial = Arena((src_rows, 1), np.dtype("i8"), 64, fill)
    peak = 0
    np.testing.assert_array_equal(serial.take(idx)[:, 0], idx)
    assert peak == 1


# ------------------------------------------------------------------------- one writer on S3
def _lease(local_s3: Any, url: str) -> dict[str, Any] | None:
    fs = local_s3.filesystem()
    fs.invalidate_cache()
    path = url.split("://", 1)[1] + "/.sg-lock"
    return json.loads(fs.cat_file(path)) if fs.exists(path) else None


def _write_and_exit(url: str, options: dict[str, Any], how: str) -> None:
    sg = StoreGate("zarr", {"output_dir": url, "storage_options": options}, data_id="d")
    sg.add_data("late", np.arange(3.0), phase="train")
    if how == "kill":
        os._exit(0)  # no close, no exit handlers: the lease stays behind
    # "exit": return without close(); the exit hook writes the rows and ends the lease


def test_one_writer_per_store_through_a_lease(local_s3: Any, s3_url: str) -> None:
    url = f"{s3_url}/lease.zarr"
    args = {"output_dir": url, "storage_options": local_s3.storage_options}
    StoreGate("zarr", args, data_id="d").close()  # creating data_id 'd' is a write
    assert _lease(local_s3, url) is None
    first = StoreGate("zarr", args, data_id="d")
    assert _lease(local_s3, url) is None  # opening to read takes nothing
    first.add_data("x", np.arange(4.0), phase="train")
    held = _lease(local_s3, url)
    assert held is not None and held["pid"] == os.getpid()
    second = StoreGate("zarr", args, data_id="d")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the lease object is no zarr node
        assert second.get_data_ids() == ["d"]
    with pytest.raises(StoreLockedError, match="storegate unlock"):
        second.add_data("y", np.arange(4.0), phase="train")
    first.compile()
    first.close()
    assert _lease(local_s3, url) is None
    second.add_data("y", np.arange(4.0), phase="train")
    second.compile()
    assert second.get_var_names("train") == ["x", "y"]
    second.close()


def test_a_killed_writers_lease_is_taken_over_on_its_host(local_s3: Any, s3_url: str,
                                                          caplog: Any) -> None:
    url = f"{s3_url}/killed.zarr"
    args = {"output_dir": url, "storage_options": local_s3.storage_options}
    ctx = mp.get_context("spawn")
    proc = ctx.Process(target=_write_and_exit, args=(url, local_s3.storage_options, "kill"))
    proc.start()
    proc.join(120)
    left = _lease(local_s3, url)
    assert left is not None and left["pid"] == proc.pid
    sg = StoreGate("zarr", args, data_id="d")
    with caplog.at_level("WARNING", logger="storegate"):
        sg.add_data("x", np.arange(2.0), phase="train")
    assert "taking over the lease of dead process" in caplog.text
    sg.close()
    assert _lease(local_s3, url) is None


def test_a_writer_that_forgets_close_ends_its_lease_at_exit(local_s3: Any, s3_url: str) -> None:
    url = f"{s3_url}/exit.zarr"
    proc = mp.get_context("spawn").Process(
        target=_write_and_exit, args=(url, local_s3.storage_options, "exit"))
    proc.start()
    proc.join(120)
    assert proc.exitcode == 0
    assert _lease(local_s3, url) is None
    sg = StoreGate.open(url, backend_args={"storage_options": local_s3.storage_options})
    assert sg["train"]["late"][:].tolist() == [0.0, 1.0, 2.0]
    sg.close()


def test_unlock_removes_a_lease_from_another_host(local_s3: Any, s3_url: str,
                                                  capsys: Any) -> None:
    url = f"{s3_url}/other-host.zarr"
    args = {"output_dir": url, "storage_options": local_s3.storage_options}
    StoreGate("zarr", args, data_id="d").close()
    fs = local_s3.filesystem()
    foreign = {"pid": 12345, "host": "node-7.cluster", "since": "2026-01-01 00:00:00",
               "token": "t"}
    fs.pipe_file(url.split("://", 1)[1] + "/.sg-lock", json.dumps(foreign).encode())
    sg = StoreGate("zarr", args, data_id="d")
    with pytest.raises(StoreLockedError, match=r"process 12345 on node-7\.cluster"):
        sg.add_data("x", np.arange(2.0), phase="train")
    with s3_environment(local_s3.endpoint_url):
        assert main(["unlock", url]) == 0
        assert "removed the lease of process 12345 on node-7.cluster" in capsys.readouterr().out
        assert main(["unlock", url]) == 0
        assert "no lease" in capsys.readouterr().out
    sg = StoreGate("zarr", args, data_id="d")  # a new gate: the old one's view was locked out
    sg.add_data("x", np.arange(2.0), phase="train")
    sg.close()
