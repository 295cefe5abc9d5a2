"""Crash consistency and the single writer of the HDF5 backend.

* the rollback journal on its own (:mod:`storegate_hdf5.journal`): exact restoration, torn
  records and headers, commit, pages saved once, appends that need no saved bytes;
* h5py's ``fileobj`` driver through the journal, for every kind of change the backend makes;
* transactions of the backend: a failed block leaves no trace, nested blocks commit once;
* one writer: a second writer (this process, another process) gets ``StoreLockedError``;
* real kills: a writer process running StoreGate operations (``crash_workload``) is
  ``SIGKILL``-ed at random times and at chosen points (the n-th write, torn in half or not,
  the n-th commit before or after the journal is removed, a write of a recovery); the store
  reopened with ``mode='a'`` must equal the state after the last operation the writer
  finished, or the one after it, and ``storegate check`` must find nothing wrong.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import crash_workload as cw
import h5py
import numpy as np
import pytest
from storegate_hdf5 import HDF5Backend
from storegate_hdf5.journal import (
    _HEAD,
    _REC,
    PAGE_SIZE,
    FileBusyError,
    JournaledFile,
    _record_crc,
    journal_path,
    pending,
    recover,
)

from storegate import StoreGate
from storegate.cli import main as storegate_main
from storegate.errors import CorruptStoreError, StoregateError, StoreLockedError


def _write(path: Path | str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def _read(path: Path | str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _killed_copy(path: str, dst: str) -> str:
    """What a SIGKILL at this moment would leave: the file and its journal, copied."""
    shutil.copyfile(path, dst)
    if pending(path):
        shutil.copyfile(journal_path(path), journal_path(dst))
    return dst


# ---------------------------------------------------------------------------------- the journal
def test_recovery_restores_bytes_exactly(tmp_path: Path) -> None:
    rng = random.Random(7)
    for trial in range(40):
        path = str(tmp_path / f"f{trial}")
        original = rng.randbytes(rng.choice([0, 1, 4095, 4096, 4097, rng.randint(0, 60_000)]))
        _write(path, original)
        model = bytearray(original)
        jf = JournaledFile(path)
        for _ in range(rng.randint(1, 40)):
            r = rng.random()
            size = jf.seek(0, os.SEEK_END)
            if r < 0.6:  # overwrite, possibly past the end (a hole)
                offset = rng.randint(0, size + 5000)
                data = rng.randbytes(rng.randint(1, 3 * PAGE_SIZE))
                jf.seek(offset)
                assert jf.write(data) == len(data)
                if offset > len(model):
                    model.extend(bytes(offset - len(model)))
                model[offset:offset + len(data)] = data
            elif r < 0.8:  # shrink or grow
                new = rng.randint(0, size + 10_000)
                jf.truncate(new)
                del model[new:]
                model.extend(bytes(new - len(model)))
            else:  # reads see the changes
                offset = rng.randint(0, size)
                jf.seek(offset)
                buf = bytearray(rng.randint(0, 9000))
                n = jf.readinto(buf)
                assert bytes(buf[:n]) == bytes(model[offset:offset + len(buf)])
        assert _read(path) == bytes(model)
        jf.close()  # killed: the journal stays
        if jf.pages_saved or len(model) != len(original) or model != original:
            assert pending(path)
        recover(path)
        assert _read(path) == original, trial
        assert not pending(path)


def _journal_with_two_records(tmp_path: Path) -> tuple[str, bytes]:
    path = str(tmp_path / "f")
    original = bytes(range(256)) * 64  # 4 pages
    _write(path, original)
    jf = JournaledFile(path)
    for page in (0, 2):
        jf.seek(page * PAGE_SIZE + 100)
        jf.write(b"\xff" * 50)
    assert jf.pages_saved == 2
    jf.close()
    return path, original


def test_torn_last_record_is_ignored(tmp_path: Path) -> None:
    path, original = _journal_with_two_records(tmp_path)
    changed, journal = _read(path), _read(journal_path(path))
    assert len(journal) == _HEAD.size + 2 * (_REC.size + PAGE_SIZE)
    # a kill while a third record (page 3) was being appended: the page itself was never
    # overwritten. Its bytes here are zeros, so applying them would show.
    page = bytes(PAGE_SIZE)
    record = _REC.pack(3 * PAGE_SIZE, PAGE_SIZE, _record_crc(3 * PAGE_SIZE, page)) + page
    bad_crc = bytearray(record)
    bad_crc[-1] ^= 1
    tails = [record[:cut] for cut in (1, _REC.size - 1, _REC.size, _REC.size + 100,
                                      len(record) - 1)] + [bytes(bad_crc)]
    for tail in tails:
        _write(path, changed)
        _write(journal_path(path), journal + tail)
        assert recover(path) == 2
        assert _read(path) == original
        assert not pending(path)


def test_torn_header_means_the_file_was_not_changed(tmp_path: Path) -> None:
    path = str(tmp_path / "f")
    _write(path, b"x" * 10_000)
    for cut in (0, 3, _HEAD.size - 1):
        _write(journal_path(path), (b"SGH5JRNL" + bytes(40))[:cut])
        assert recover(path) == 0
        assert _read(path) == b"x" * 10_000 and not pending(path)


def test_commit_empties_the_journal_and_close_removes_it(tmp_path: Path) -> None:
    path = str(tmp_path / "f")
    _write(path, b"a" * 10_000)
    jf = JournaledFile(path)
    assert not jf.active and not pending(path)
    assert not os.path.exists(journal_path(path))  # created at the first change
    jf.seek(0)
    jf.write(b"b" * 5000)
    jf.write(b"c" * 20_000)  # past the end
    assert jf.active and pending(path)
    assert jf.commit() is True  # the commit point: the journal is emptied
    assert not jf.active and not pending(path)
    assert os.path.getsize(journal_path(path)) == 0
    assert jf.commit() is False  # nothing to commit
    committed = _read(path)
    assert recover(str(tmp_path / "f")) == 0  # a kill now: nothing to undo
    assert _read(path) == committed and not os.path.exists(journal_path(path))
    jf.seek(100)
    jf.write(b"d")  # a new session
    jf.truncate(3)
    assert jf.original_length == len(committed) and pending(path)
    assert jf.rollback() >= 1
    assert _read(path) == committed and not pending(path)
    jf.seek(0)
    jf.write(b"e")
    jf.commit()
    jf.close()
    assert not os.path.exists(journal_path(path))  # nothing left after a normal end
    assert _read(path)[:1] == b"e"


def test_pages_are_saved_once_per_session(tmp_path: Path) -> None:
    path = str(tmp_path / "f")
    _write(path, bytes(5 * PAGE_SIZE + 10))
    jf = JournaledFile(path)
    for _ in range(100):
        jf.seek(10)
        jf.write(b"z" * 10)
    assert jf.pages_saved == 1
    assert os.path.getsize(journal_path(path)) == _HEAD.size + _REC.size + PAGE_SIZE
    jf.seek(PAGE_SIZE - 5)
    jf.write(b"y" * 10)  # straddles pages 0 and 1: only page 1 is new
    assert jf.pages_saved == 2
    jf.seek(5 * PAGE_SIZE)
    jf.write(b"w" * 100)  # the last, partial page (10 bytes below the original length)
    assert jf.pages_saved == 3
    assert jf.bytes_saved == 2 * PAGE_SIZE + 10
    jf.commit()
    jf.seek(0)
    jf.write(b"v")  # a new session saves page 0 again
    assert jf.pages_saved == 1
    jf.rollback()
    jf.close()


def test_appends_need_no_saved_pages(tmp_path: Path) -> None:
    path = str(tmp_path / "f")
    _write(path, b"q" * 7000)
    jf = JournaledFile(path)
    jf.seek(0, os.SEEK_END)
    for _ in range(50):
        jf.write(os.urandom(100_000))
    assert jf.pages_saved == 0 and jf.bytes_saved == 0
    assert os.path.getsize(journal_path(path)) == _HEAD.size
    jf.close()
    assert recover(path) == 0
    assert _read(path) == b"q" * 7000


def test_one_open_at_a_time(tmp_path: Path) -> None:
    path = str(tmp_path / "f.h5")
    with h5py.File(path, "w") as f:
        f["x"] = np.arange(3)
    jf = JournaledFile(path)
    with pytest.raises(FileBusyError):
        JournaledFile(path)
    with pytest.raises(OSError, match="lock"):  # HDF5 readers wait for the writer
        h5py.File(path, "r")
    jf.close()
    with h5py.File(path, "r") as f:
        assert f["x"][:].tolist() == [0, 1, 2]


def test_a_forked_child_cannot_write(tmp_path: Path) -> None:
    path = str(tmp_path / "f")
    _write(path, b"a" * 100)
    jf = JournaledFile(path)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 3
        try:
            jf.write(b"b")
        except OSError:
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert _read(path) == b"a" * 100 and not jf.active
    jf.close()


# ---------------------------------------------------------------------------------- h5py
def _contents(f: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"/": sorted((k, str(v)) for k, v in f.attrs.items())}

    def visit(name: str, obj: Any) -> None:
        attrs = sorted((k, str(v)) for k, v in obj.attrs.items())
        if isinstance(obj, h5py.Dataset):
            out[name] = (obj.shape, obj.dtype.str, obj[()].tobytes(), attrs)
        else:
            out[name] = (list(obj.keys()), attrs)

    f.visititems(visit)
    return out


def test_h5py_through_the_journal(tmp_path: Path) -> None:
    """Every kind of change the backend makes works through the fileobj driver; a kill before
    or after HDF5's flush (before the commit) restores the committed bytes exactly; and every
    committed file is a complete HDF5 file for the native driver."""
    path = str(tmp_path / "s.h5")
    jf = JournaledFile(path, create=True)
    f = h5py.File(jf, "w", track_order=True)
    f.attrs["storegate_backend"] = "hdf5"
    f.flush()
    jf.commit()
    rng = np.random.default_rng(0)

    def create() -> None:
        g = f.create_group("d", track_order=True)
        g.attrs["storegate_attrs"] = "{}"
        for ph in ("train", "valid", "test"):
            g.create_group(ph, track_order=True).attrs["storegate"] = '{"var_order": []}'

    def dataset() -> None:
        f["d/train"].create_dataset("x", shape=(0, 4), maxshape=(None, 4), dtype="f4",
                                    chunks=(64, 4))

    def extend() -> None:
        ds = f["d/train/x"]
        n = ds.shape[0]
        ds.resize(n + 1000, axis=0)
        ds[n:] = rng.standard_normal((1000, 4)).astype("f4")

    def overwrite() -> None:
        f["d/train/x"][10:700] = -1.0

    def attrs() -> None:
        f["d/train"].attrs["storegate"] = json.dumps({"var_order": [f"v{i}" for i in
                                                                    range(500)]})
        f["d"].attrs["storegate_attrs"] = "x" * 70_000  # dense attribute storage

    def ragged() -> None:
        g = f["d/valid"].create_group("r", track_order=True)
        g.attrs["storegate_ragged"] = True
        g.create_dataset("values", data=np.arange(1000.0), maxshape=(None,), chunks=(128,))
        g.create_dataset("offsets", data=np.array([0, 10, 1000]), maxshape=(None,),
                         chunks=(128,))

    def compressed() -> None:
        f["d/test"].create_dataset("z", data=np.zeros((5000, 3)), chunks=(500, 3),
                                   maxshape=(None, 3), compression="gzip", shuffle=True)

    def move() -> None:
        f["d/train"].move("x", ".sg-old-x")
        f["d/valid"].move("r", "r2")

    def delete() -> None:
        del f["d/train/.sg-old-x"]
        del f["d/test/z"]

    def shrink() -> None:
        f["d/valid/r2/values"].resize(10, axis=0)

    steps: list[Callable[[], None]] = [create, dataset, extend, overwrite, attrs, ragged,
                                       compressed, extend, move, delete, shrink, create]
    steps[-1] = lambda: f.create_group("e").create_dataset("y", data=np.arange(10))
    for i, step in enumerate(steps):
        committed = _read(path)
        step()
        for when in ("before flush", "after flush"):
            if when == "after flush":
                f.flush()
            copy = _killed_copy(path, str(tmp_path / f"kill{i}.h5"))
            recover(copy)
            assert _read(copy) == committed, (i, when)
            os.unlink(copy)
        jf.commit()
        copy = str(tmp_path / f"commit{i}.h5")
        shutil.copyfile(path, copy)
        with h5py.File(copy, "r") as native:
            assert _contents(native) == _contents(f)
        os.unlink(copy)
    f.close()
    jf.commit()
    jf.close()
    with h5py.File(path, "r") as native:
        assert native["e/y"][:].tolist() == list(range(10))


# ---------------------------------------------------------------------------------- transactions
def test_a_failed_block_leaves_no_trace(h5path: str) -> None:
    be = HDF5Backend(path=h5path)
    be.create_data_id("d")
    be.append("d", "train", "x", np.arange(10))
    be.append("d", "train", "r", cw._ragged(np.random.default_rng(0), 5))
    be.flush()
    committed = _read(h5path)
    with pytest.raises(RuntimeError, match="boom"), be.transaction():
        be.append("d", "train", "x", np.arange(10, 5000))
        be.append("d", "train", "y", np.arange(3.0))
        be.write("d", "train", "x", np.array([0, 1]), np.array([-1, -2]))
        be.write("d", "train", "r", np.array([1]), cw._ragged(np.random.default_rng(1), 1))
        be.set_attrs("d", {"k": 1})
        be.create_data_id("other")
        be.delete("d", "train", "r")
        be.flush()  # inside a block: HDF5 flushes, nothing is committed
        raise RuntimeError("boom")
    assert not pending(h5path)
    assert _read(h5path) == committed  # exactly the last commit
    assert be.var_names("d", "train") == ["x", "r"]
    assert be.read("d", "train", "x", slice(0, 10, 1)).tolist() == list(range(10))
    assert be.get_attrs("d") == {} and be.data_ids() == ["d"]
    be.append("d", "train", "x", np.arange(10, 12))  # usable afterwards
    be.close()
    again = HDF5Backend(path=h5path, mode="r")
    assert again.read("d", "train", "x", slice(0, 12, 1)).tolist() == list(range(12))
    again.close()


def test_a_failed_write_outside_a_block_is_rolled_back(h5path: str) -> None:
    be = HDF5Backend(path=h5path)
    be.create_data_id("d")
    be.append("d", "train", "x", np.zeros((4, 2)))
    with pytest.raises(Exception):  # noqa: B017 - the shape error of the backend
        be.write("d", "train", "x", np.array([0, 1]), np.zeros((3, 2)))
    assert be.read("d", "train", "x", slice(0, 4, 1)).tolist() == [[0.0, 0.0]] * 4
    assert not pending(h5path)
    be.close()


def test_nested_blocks_commit_once_at_the_outermost_end(h5path: str) -> None:
    be = HDF5Backend(path=h5path)
    be.create_data_id("d")
    with be.transaction():
        be.append("d", "train", "x", np.arange(3))
        with be.transaction():
            be.append("d", "train", "y", np.arange(3))
            be.flush()  # HDF5 writes its changes: the journal now holds the old pages
        assert pending(h5path)  # the inner end did not commit
    assert not pending(h5path)
    be.close()
    assert not pending(h5path)


def test_journal_gone_after_a_normal_run(tmp_path: Path) -> None:
    path, log = str(tmp_path / "s.h5"), str(tmp_path / "progress")
    run = subprocess.run(cw.child_command({"path": path, "progress": log}),
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    reached, summary = cw.progress(log)
    assert summary is not None and reached == len(cw.workload()) + 1
    assert summary["commit"] > 10  # each operation committed on its own
    assert not os.path.exists(journal_path(path)) and os.path.exists(path + ".sg-lock")
    ro = StoreGate("hdf5", {"path": path, "mode": "r"})
    assert cw.read_state(ro) == cw.expected_states()[-1]
    ro.close()
    assert storegate_main(["check", "-q", path]) == 0


# ---------------------------------------------------------------------------------- one writer
def test_second_writer_in_this_process(h5path: str) -> None:
    a = StoreGate("hdf5", {"path": h5path}, data_id="d")
    a.add_data("x", np.arange(10))
    with pytest.raises(StoreLockedError, match="another backend in this process"):
        StoreGate("hdf5", {"path": h5path}, data_id="d")  # the file is open for writing
    a.compile()  # (a read of a stale store would compile it: a write)
    a.db.flush()  # the file is released (readers may open it), the lock is kept
    b = StoreGate("hdf5", {"path": h5path}, data_id="d")
    assert b["train"]["x"][:].tolist() == list(range(10))  # reading is fine
    with pytest.raises(StoreLockedError, match="one writing process"):
        b.add_data("x", np.arange(3))
    b.close()  # HDF5: no reader may have the file open while it is written
    a.add_data("x", np.arange(10, 20))  # the first writer goes on
    assert a["train"]["x"][:].tolist() == list(range(20))
    a.close()
    b.add_data("x", np.arange(20, 25))  # now the second one may write
    assert b["train"]["x"][:].tolist() == list(range(25))
    b.close()
    assert not pending(h5path)


def test_readers_wait_for_the_writer(h5path: str) -> None:
    w = HDF5Backend(path=h5path)
    w.create_data_id("d")
    w.append("d", "train", "x", np.arange(100))
    with w.transaction():
        w.write("d", "train", "x", slice(0, 50, 1), np.zeros(50, dtype=np.int64))
        w.flush()  # HDF5 wrote into the file: the journal holds the old pages
        assert pending(h5path)
        with pytest.raises(StoreLockedError, match="open in another process"):
            HDF5Backend(path=h5path, mode="r")  # never a torn read
    with pytest.raises(StoregateError, match="open in another process"):
        HDF5Backend(path=h5path, mode="r")  # the file is open for writing (HDF5's rule)
    w.flush()  # commits and releases the file
    r = HDF5Backend(path=h5path, mode="r")
    assert r.read("d", "train", "x", slice(0, 100, 1)).tolist() == [0] * 50 + list(
        range(50, 100))
    with pytest.raises(StoregateError, match="open in another process"):
        w.append("d", "train", "x", np.arange(3))  # a reader has it open: the writer waits
    r.close()
    w.append("d", "train", "x", np.arange(3))
    w.close()


def _try_write_elsewhere(path: str) -> dict[str, Any]:
    run = subprocess.run([*cw.python_command("try_write(sys.argv[1])"), path],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    result: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    return result


def test_second_writer_in_another_process(h5path: str) -> None:
    a = StoreGate("hdf5", {"path": h5path}, data_id="d")
    a.add_data("x", np.arange(10))
    a.db.flush()  # release the file: the other process gets past opening it
    other = _try_write_elsewhere(h5path)
    assert other["type"] == "StoreLockedError", other
    assert f"process {os.getpid()}" in other["message"]
    a.add_data("x", np.arange(10, 20))
    a.close()
    other = _try_write_elsewhere(h5path)
    assert other["ok"], other
    ro = StoreGate("hdf5", {"path": h5path, "mode": "r"}, data_id="d")
    assert ro["train"]["x"][:].tolist() == [*range(20), *range(5)]
    ro.close()


# ---------------------------------------------------------------------------------- kills
class Zygote:
    """A ``python -c`` child that has imported everything and forks one writer per trial."""

    def __init__(self, log: Path) -> None:
        self._err = open(log, "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(cw.python_command("zygote_main()"), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._err, text=True)

    def run(self, config: dict[str, Any], delay: float | None = None) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"config": config, "delay": delay}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, "the zygote died"
        answer: dict[str, Any] = json.loads(line)
        return answer

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)
        self._err.close()


@pytest.fixture(scope="module")
def states() -> list[cw.State]:
    return cw.expected_states()


@pytest.fixture
def zygotes(tmp_path: Path) -> Iterator[list[Zygote]]:
    procs = [Zygote(tmp_path / f"zygote{i}.log") for i in range(2)]
    yield procs
    for z in procs:
        z.close()


_check_mutex = threading.Lock()


def _check_after_kill(path: str, log: str, states: list[cw.State]) -> dict[str, Any]:
    """Reopen with mode='a' (rolls back), compare with the expected states, run the check."""
    reached, summary = cw.progress(log)
    had_journal = pending(path)
    if had_journal:  # a reader rolls back a dead writer's journal (as SQLite's readers do)
        try:
            StoreGate("hdf5", {"path": path, "mode": "r"}).close()
        except CorruptStoreError as err:  # rolled back to before the store was created
            assert "is empty" in str(err)
        assert not pending(path)
    sg = StoreGate("hdf5", {"path": path})
    assert not pending(path)
    state = cw.read_state(sg)
    sg.close()
    allowed = [k for k in (reached, reached + 1) if k < len(states)]
    assert any(states[k] == state for k in allowed), (
        f"after the kill the store matches none of the states {allowed} (the writer had "
        f"finished {reached - 2} operations)")
    with _check_mutex:  # the command configures logging
        assert storegate_main(["check", "-q", path]) == 0
    return {"reached": reached, "journal": had_journal, "finished": summary is not None,
            "seconds": None if summary is None else summary["seconds"]}


def _trial(z: Zygote, where: Path, states: list[cw.State], kill: dict[str, Any] | None,
           delay: float | None) -> dict[str, Any]:
    where.mkdir()
    path, log = str(where / "s.h5"), str(where / "progress")
    answer = z.run({"path": path, "progress": log, "kill": kill}, delay)
    assert answer["exit"] in (None, 0), f"the writer failed: {answer}"
    out = _check_after_kill(path, log, states)
    out["killed"] = answer["signal"] == signal.SIGKILL
    return out


@pytest.mark.timeout(300)
def test_killed_writers_leave_a_committed_state(tmp_path: Path, states: list[cw.State],
                                                zygotes: list[Zygote]) -> None:
    rng = random.Random(20240611)
    # a clean run: how long the workload takes, and how many writes and commits it makes
    clean = _trial(zygotes[0], tmp_path / "clean", states, None, None)
    assert clean["finished"] and clean["reached"] == len(states) - 1
    _, summary = cw.progress(str(tmp_path / "clean" / "progress"))
    assert summary is not None
    seconds, writes, commits = summary["seconds"], summary["write"], summary["commit"]

    plans: list[dict[str, Any]] = []
    for i in range(24):  # at the n-th write (spread over the run), half of them torn
        lo, hi = i * writes // 24 + 1, (i + 1) * writes // 24
        plans.append({"kind": "write", "n": rng.randint(lo, max(lo, hi)), "torn": i % 2 == 1})
    for i in range(8):  # at the n-th commit, before or after the journal is removed
        plans.append({"kind": "commit", "n": rng.randint(1, commits), "after": i % 2 == 1})
    random_kills = 13  # per zygote, at random times during the run

    def work(k: int) -> list[dict[str, Any]]:
        out = [_trial(zygotes[k], tmp_path / f"p{k}-{i}", states, kill, None)
               for i, kill in enumerate(plans[k::2])]
        trial_rng = random.Random(k)
        estimate = seconds  # how long a run takes (the machine may be busy, or less busy)
        for i in range(4 * random_kills):
            if sum(r["killed"] for r in out[len(plans[k::2]):]) >= random_kills:
                break
            r = _trial(zygotes[k], tmp_path / f"r{k}-{i}", states, None,
                       trial_rng.uniform(0.0, 0.9 * estimate))
            if not r["killed"]:  # it finished first: aim earlier
                estimate = min(0.8 * estimate, r["seconds"] or estimate)
            out.append(r)
        return out

    with ThreadPoolExecutor(2) as pool:
        results = [r for part in pool.map(work, range(2)) for r in part]
    killed = [r for r in results if r["killed"]]
    summary = (f"{len(results)} trials, {len(killed)} killed, "
               f"{sum(r['journal'] for r in killed)} left a journal, reached states "
               f"{sorted({r['reached'] for r in killed})}")
    assert len(killed) >= len(plans) + 2 * random_kills - 4, summary
    assert len(killed) >= 50, summary
    assert sum(r["journal"] for r in killed) >= 20, summary  # rollbacks were exercised
    assert len({r["reached"] for r in killed}) >= 10, summary  # kills all over the workload


def _journal_records(path: str) -> int:
    data = _read(journal_path(path))
    pos, count = _HEAD.size, 0
    while pos + _REC.size <= len(data):
        _, length, _ = _REC.unpack_from(data, pos)
        pos += _REC.size + length
        count += pos <= len(data)
    return count


def test_a_killed_recovery_is_recovered(tmp_path: Path, states: list[cw.State],
                                        zygotes: list[Zygote]) -> None:
    """A kill during the rollback of a killed writer's journal: the next open rolls back
    again (recovery is idempotent)."""
    z = zygotes[0]

    def killed_writer(where: Path) -> tuple[str, str, int]:
        # killed just before a commit whose journal holds many saved page runs
        for n in (18, 14, 10, 5, 7):
            if where.exists():
                shutil.rmtree(where)
            where.mkdir()
            path, log = str(where / "s.h5"), str(where / "progress")
            first = z.run({"path": path, "progress": log, "kill": {"kind": "commit", "n": n}})
            assert first["signal"] == signal.SIGKILL and pending(path)
            runs = _journal_records(path)
            if runs >= 4:
                return path, log, runs
        pytest.fail("no commit of the workload saved 4 page runs")  # pragma: no cover

    killed = 0
    for i, torn in enumerate([False, True, False, True]):
        path, log, runs = killed_writer(tmp_path / f"r{i}")
        n = [1, runs // 2, runs, 2][i]
        second = z.run({"path": path, "progress": str(tmp_path / f"progress{i}"), "ops": False,
                        "kill": {"kind": "recover_write", "n": n, "torn": torn}})
        assert second["signal"] == signal.SIGKILL, second
        killed += 1
        assert pending(path)
        _check_after_kill(path, log, states)
    assert killed == 4
