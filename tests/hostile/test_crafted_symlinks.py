"""Case 2: symbolic links inside a store that lead outside it.

A var directory, a chunk file, a phase directory and a data_id directory of a zarr store, and
the data file, the manifest, a phase and a data_id directory of a parquet store, are replaced
by links to copies outside the store. Every write (through ``StoreGate`` and the backend
directly, and ``mode='w'``) runs in a child interpreter, which then exits (so buffered rows
and the exit-time flush count too); afterwards the tree outside the store must be
byte-identical.

What storegate does (and these tests pin down):

* **writes** never modify, create or delete anything outside the store. A write *into* a
  directory reached through a link that leaves the store is refused with a
  ``StoregateError`` naming the path; a write that *replaces* a linked file (a chunk file,
  a Parquet data file, the manifest) replaces the link itself inside the store, as every
  storegate write replaces files by renaming a new one into place; deleting a linked var
  removes the link, not its target; ``mode='w'`` removes links without following them.
* **reads** follow links: the data stay untouched, and a store may legitimately keep a var on
  another disk. Only files that are not regular files (a FIFO or a device behind a link) are
  refused (``test_link_to_device_or_fifo_is_refused`` below): a read of ``/dev/zero`` through
  zarr would never end, opening a FIFO would block forever.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_crafted_support import child_env, tree_digest

from storegate import StoreGate

DATA = np.arange(20.0).reshape(10, 2)

_CHILD = r"""
import json, sys, warnings
warnings.simplefilter("ignore")
import numpy as np
from storegate import StoreGate
from storegate.errors import StoregateError

jobs = json.loads(sys.stdin.read())
out = []
for job in jobs:
    backend, path, op = job["backend"], job["path"], job["op"]
    extra = {"chunk": 4} if backend == "zarr" else {}
    res = {"ok": True}
    try:
        if op == "mode_w":
            sg = StoreGate(backend, {"output_dir": path, "mode": "w", **extra}, data_id="d")
            sg.add_data("z", np.arange(4.0), phase="train")
            sg.close()
        elif op == "read":
            sg = StoreGate(backend, {"output_dir": path, "mode": "r"}, data_id="d")
            res["value"] = sg.get_data("x", "train").tolist()
        else:
            sg = StoreGate(backend, {"output_dir": path, **extra}, data_id="d")
            db = sg.db
            if op == "append":
                sg.add_data("x", np.ones((3, 2)), phase="train")
            elif op == "update":
                sg.update_data("x", np.ones((10, 2)), phase="train")
            elif op == "update_row":
                sg.update_data("x", np.ones((1, 2)), phase="train", index=5)
            elif op == "delete":
                sg.delete_data("x", phase="train")
            elif op == "astype":
                sg.astype("x", "f4", phase="train")
            elif op == "onehot":
                sg.onehot("y", 10, phase="train")
            elif op == "shuffle":
                sg.shuffle(phase="train")
            elif op == "clear":
                sg.clear_data()
            elif op == "create_empty":
                sg.create_empty("e", (10, 2), phase="train", dtype="f8")
            elif op == "new_var":
                sg.add_data("n", np.arange(10.0), phase="train")
            elif op == "be_write":
                db.write("d", "train", "x", np.array([0, 9]), np.ones((2, 2)))
            elif op == "be_append":
                db.append("d", "train", "x", np.ones((2, 2)))
            elif op == "be_delete":
                db.delete("d", "train", "x")
            elif op == "be_rename":
                db.rename("d", "train", "x", "x2")
            elif op == "be_attrs":
                db.set_attrs("d", {"k": 1})
            elif op == "delete_data_id":
                db.delete_data_id("d")
            else:
                raise SystemExit(f"unknown op {op}")
            sg.close()
    except StoregateError as err:
        res = {"ok": False, "sg": True, "type": type(err).__name__, "msg": str(err)}
    except BaseException as err:
        res = {"ok": False, "sg": False, "type": type(err).__name__, "msg": str(err)[:800]}
    out.append(res)
print("@@RESULT@@" + json.dumps(out))
"""

WRITES = ["append", "update", "update_row", "delete", "astype", "onehot", "shuffle", "clear",
          "create_empty", "new_var", "be_write", "be_append", "be_delete", "be_rename",
          "be_attrs", "delete_data_id", "mode_w"]

#: (backend, link): which part of the store is a link to a copy outside it
LINKS = [("zarr", "var_dir"), ("zarr", "chunk_file"), ("zarr", "phase_dir"),
         ("zarr", "data_id_dir"), ("parquet", "data_file"), ("parquet", "manifest"),
         ("parquet", "phase_dir"), ("parquet", "data_id_dir")]
#: links to directories: a write into them would write outside the store
DIR_LINKS = {"var_dir", "phase_dir", "data_id_dir"}
#: writes that go into the var x, its phase or its data_id (so through a directory link)
INTO = {
    # (astype rewrites the var beside it and swaps it in: the link is replaced, not followed)
    "var_dir": {"append", "update", "update_row", "be_write", "be_append"},
    "phase_dir": {"append", "update", "update_row", "astype", "onehot", "shuffle",
                  "create_empty", "new_var", "be_write", "be_append", "be_delete",
                  "be_rename"},
    "data_id_dir": {"append", "update", "update_row", "astype", "onehot", "shuffle",
                    "create_empty", "new_var", "be_write", "be_append", "be_delete",
                    "be_rename", "be_attrs"},
}


def build(root: Path, backend: str, link: str) -> tuple[Path, Path]:
    """A store at ``root/store`` whose ``link`` is a link to ``root/outside/...``."""
    store, outside = root / "store", root / "outside"
    extra = {"chunk": 4} if backend == "zarr" else {}
    sg = StoreGate(backend, {"output_dir": str(store), **extra}, data_id="d")
    sg.add_data("x", DATA, phase="train")
    sg.add_data("y", np.arange(10), phase="train")
    sg.compile()
    sg.close()
    outside.mkdir()
    (outside / "unrelated.txt").write_text("keep me")
    phase = store / "d" / "train"
    if link == "var_dir":
        src = phase / "x"
    elif link == "chunk_file":
        src = phase / "x" / "c" / "1" / "0"
    elif link == "phase_dir":
        src = phase
    elif link == "data_id_dir":
        src = store / "d"
    elif link == "data_file":
        (src,) = phase.glob("*.parquet")
    elif link == "manifest":
        src = phase / "_storegate_manifest.json"
    else:  # pragma: no cover
        raise AssertionError(link)
    target = outside / f"linked-{src.name}"
    shutil.move(str(src), str(target))
    os.symlink(target, src)
    return store, outside


def run(jobs: list[dict[str, str]]) -> list[dict[str, object]]:
    proc = subprocess.run([sys.executable, "-c", _CHILD], input=json.dumps(jobs),
                          capture_output=True, text=True, env=child_env(), timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = [x for x in proc.stdout.splitlines() if x.startswith("@@RESULT@@")][-1]
    out: list[dict[str, object]] = json.loads(line[len("@@RESULT@@"):])
    return out


@pytest.mark.parametrize(("backend", "link"), LINKS, ids=[f"{b}-{k}" for b, k in LINKS])
def test_writes_never_touch_what_a_link_points_to(tmp_path: Path, backend: str,
                                                  link: str) -> None:
    if backend == "parquet":
        pytest.importorskip("pyarrow")
    jobs, before = [], []
    for op in WRITES:
        store, outside = build(tmp_path / op, backend, link)
        before.append((op, outside, tree_digest(outside)))
        jobs.append({"backend": backend, "path": str(store), "op": op})
    results = run(jobs)  # the child has exited: its exit-time flush is included
    for (op, outside, digest), res in zip(before, results, strict=True):
        where = f"{backend} {link} {op}"
        assert tree_digest(outside) == digest, f"{where}: the tree outside the store changed"
        assert res["ok"] or res["sg"], f"{where}: a raw {res['type']}: {res['msg']}"
        if link in DIR_LINKS and op in INTO.get(link, ()):
            assert not res["ok"], f"{where}: a write through a link leaving the store succeeded"
            assert "link" in str(res["msg"]), f"{where}: {res['msg']}"


@pytest.mark.parametrize(("backend", "link"), LINKS, ids=[f"{b}-{k}" for b, k in LINKS])
def test_reads_follow_links(tmp_path: Path, backend: str, link: str) -> None:
    """Reads follow links (nothing is modified; a var may live on another disk)."""
    if backend == "parquet":
        pytest.importorskip("pyarrow")
    store, outside = build(tmp_path, backend, link)
    digest = tree_digest(outside)
    ro = StoreGate(backend, {"output_dir": str(store), "mode": "r"}, data_id="d")
    np.testing.assert_array_equal(ro.get_data("x", "train"), DATA)
    np.testing.assert_array_equal(ro["train"]["x"][[9, 0, 5]], DATA[[9, 0, 5]])
    from storegate.checks import check_store

    assert check_store(ro).ok
    ro.close()
    assert tree_digest(outside) == digest


def test_link_to_device_or_fifo_is_refused(tmp_path: Path) -> None:
    """A chunk or data file that is a link to a device or a FIFO would never end (a read of
    ``/dev/zero`` through zarr) or block forever (opening a FIFO): refused as damage."""
    pytest.importorskip("pyarrow")
    from test_crafted_support import assert_error, run_child

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    jobs = []
    for i, (backend, comp, target, meta) in enumerate([
            ("zarr", "default", "/dev/zero", False), ("zarr", "default", str(fifo), False),
            ("zarr", "lz4", "/dev/zero", False), ("zarr", "lz4", str(fifo), False),
            ("zarr", "default", "/dev/zero", True), ("zarr", "lz4", str(fifo), True),
            ("parquet", None, "/dev/zero", False), ("parquet", None, str(fifo), False)]):
        store = tmp_path / f"s{i}"
        args = {"output_dir": str(store)}
        if backend == "zarr":
            args.update(chunk=4, compressor=comp)
        sg = StoreGate(backend, args, data_id="d")
        sg.add_data("x", DATA, phase="train")
        sg.close()
        phase = store / "d" / "train"
        if meta:  # the array's metadata file itself
            victim = phase / "x" / "zarr.json"
        elif backend == "zarr":
            victim = phase / "x" / "c" / "1" / "0"
        else:
            victim = next(phase.glob("*.parquet"))
        victim.unlink()
        victim.symlink_to(target)
        jobs.append({"backend": backend, "path": str(store), "var": "x",
                     "ops": ["rows:0,10", "gather:5", "check", "cli"]})
    out = run_child(jobs, timeout=120)
    assert out["maxrss_mb"] < 600
    for job, res in zip(jobs, out["jobs"], strict=True):
        for op in ("rows:0,10", "gather:5"):
            assert_error(res[op], "regular file", kinds=("CorruptStoreError",))
        assert res["check"]["value"], job
        assert res["cli"]["value"][0] == 1, job
