"""Case 6: ``mode='r'`` is enforced by every persistent backend (zarr, hybrid's zarr tier,
parquet, hdf5).

A store is written, closed and hashed (every file below it, or the HDF5 file and what lies
beside it). It is opened with ``mode='r'`` and every write of ``StoreGate`` and of the backend
itself is attempted: each raises ``ReadOnlyError`` (a ``PermissionError``) or another clear
``StoregateError``, and afterwards (the gate closed, its process's exit-time flush included,
as the writes run in a child interpreter) the store's files are byte-identical.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_crafted_support import child_env, tree_digest

from storegate import StoreGate
from storegate.errors import StoregateError

BACKENDS = ["zarr", "hybrid", "parquet", "hdf5"]

_CHILD = r"""
import json, sys, warnings
warnings.simplefilter("ignore")
import numpy as np
from storegate import StoreGate
from storegate.errors import ReadOnlyError, StoregateError
from storegate.ragged import RaggedArray

backend, path = sys.argv[1], sys.argv[2]
args = {"path": path} if backend == "hdf5" else {"output_dir": path}
args["mode"] = "r"
sg = StoreGate(backend, args, data_id="d")
db = sg.db
rows = lambda n: np.ones((n, 2))
ragged = RaggedArray.from_list([np.ones(2, "f4"), np.ones(3, "f4")])
calls = {
    # StoreGate
    "add_data existing": lambda: sg.add_data("x", rows(2), phase="train"),
    "add_data new var": lambda: sg.add_data("new", rows(6), phase="train"),
    "add_data new phase split": lambda: sg.add_data("new", rows(10), phase=(0.8, 0.1, 0.1)),
    "update_data": lambda: sg.update_data("x", rows(6), phase="train"),
    "update_data row": lambda: sg.update_data("x", rows(1), phase="train", index=3),
    "setitem": lambda: sg["train"]["x"].__setitem__(slice(0, 2), rows(2)),
    "update_data new var": lambda: sg.update_data("fresh", rows(6), phase="train"),
    "create_empty": lambda: sg.create_empty("e", (10, 2), phase="train"),
    "delete_data": lambda: sg.delete_data("x", phase="train"),
    "delitem": lambda: sg["train"].__delitem__("x"),
    "clear_data": lambda: sg.clear_data(),
    "astype": lambda: sg.astype("x", "f4", phase="train"),
    "onehot": lambda: sg.onehot("label", 3, phase="train"),
    "argmax": lambda: sg.argmax("x", axis=1, phase="train"),
    "shuffle": lambda: sg.shuffle(phase="all", seed=1),
    "compile reset": lambda: sg.compile(reset=True),
    "set_data_id new": lambda: sg.set_data_id("brand_new"),
    # the backend itself
    "be.append": lambda: db.append("d", "train", "x", rows(2)),
    "be.append new": lambda: db.append("d", "train", "n2", rows(2)),
    "be.append ragged": lambda: db.append("d", "train", "rg", ragged),
    "be.write": lambda: db.write("d", "train", "x", np.array([0, 1]), rows(2)),
    "be.write slice": lambda: db.write("d", "train", "x", slice(0, 2, 1), rows(2)),
    "be.create": lambda: db.create("d", "train", "c", (4, 2), np.dtype("f8")),
    "be.delete": lambda: db.delete("d", "train", "x"),
    "be.rename": lambda: db.rename("d", "train", "x", "x2"),
    "be.rename_many": lambda: db.rename_many("d", "train", [("x", "y2"), ("label", "l2")]),
    "be.set_attrs": lambda: db.set_attrs("d", {"evil": 1}),
    "be.create_data_id": lambda: db.create_data_id("other"),
    "be.delete_data_id": lambda: db.delete_data_id("d"),
    # hybrid: a memory copy (allowed: it writes nothing) may not reach the storage tier
    "to_storage": lambda: (sg.to_memory("x", phase="train") if backend == "hybrid" else None,
                           sg.to_storage("x", phase="train", output_var_names="x_copy")),
    "update_data of a var in both tiers": lambda: sg.update_data("x", rows(6), phase="train"),
}
out = {}
for name, call in calls.items():
    try:
        call()
        out[name] = {"ok": True}
    except ReadOnlyError as err:
        out[name] = {"ok": False, "readonly": True, "perm": isinstance(err, PermissionError),
                     "msg": str(err)}
    except StoregateError as err:
        out[name] = {"ok": False, "readonly": False, "type": type(err).__name__,
                     "msg": str(err)}
    except BaseException as err:
        out[name] = {"ok": False, "raw": True, "type": type(err).__name__, "msg": str(err)}
# the data are what they were
out["__data"] = np.asarray(StoreGate(backend, args, data_id="d").get_data("x", "train")
                           ).tolist()
sg.close()
print("@@RESULT@@" + json.dumps(out))
"""

#: operations that may succeed on a read-only store because they write nothing to it (none:
#: every call of the child must be refused)
HARMLESS: set[str] = set()


def build(tmp_path: Path, backend: str) -> tuple[Path, Path]:
    """The store (its path) and the directory to hash (the store, or the HDF5 file's
    directory)."""
    if backend == "hdf5":
        path = tmp_path / "h" / "store.h5"
        path.parent.mkdir()
        args = {"path": str(path)}
    else:
        path = tmp_path / "store"
        args = {"output_dir": str(path)}
    try:
        sg = StoreGate(backend, args, data_id="d")
    except StoregateError as err:
        pytest.skip(f"backend {backend} is not available ({err})")
    sg.add_data("x", np.arange(20.0).reshape(10, 2), phase=(6, 2, 2))
    sg.add_data("label", np.arange(10) % 3, phase=(6, 2, 2))
    sg.compile()
    sg.close()
    return path, path.parent if backend == "hdf5" else path


@pytest.mark.parametrize("backend", BACKENDS)
def test_read_only_store_refuses_every_write(tmp_path: Path, backend: str) -> None:
    path, root = build(tmp_path, backend)
    before = tree_digest(root)
    proc = subprocess.run([sys.executable, "-c", _CHILD, backend, str(path)],
                          capture_output=True, text=True, env=child_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads([x for x in proc.stdout.splitlines()
                      if x.startswith("@@RESULT@@")][-1][len("@@RESULT@@"):])
    assert out.pop("__data") == np.arange(12.0).reshape(6, 2).tolist()
    for name, res in out.items():
        assert not res.get("raw"), f"{backend} {name}: raw {res['type']}: {res['msg']}"
        if name in HARMLESS:
            continue
        assert not res["ok"], f"{backend} {name}: a write to a read-only store succeeded"
        if not res["readonly"]:
            # a clear refusal of another kind: the data_id does not exist in a read-only
            # store, or the operation is not offered by this backend
            assert res["type"] in ("DataIdNotFoundError", "UnsupportedOperationError"), (
                backend, name, res)
            if res["type"] == "DataIdNotFoundError":
                assert "read-only" in res["msg"], (backend, name, res)
        else:
            assert res["perm"], (backend, name, res)
            assert "read-only" in res["msg"] or "mode='r'" in res["msg"], (backend, name, res)
    assert tree_digest(root) == before, f"{backend}: the read-only store's files changed"


def test_hybrid_to_memory_on_a_read_only_store_leaves_its_files_alone(tmp_path: Path) -> None:
    """to_memory copies into the memory tier only: allowed on a read-only store, which it
    does not change (and a later to_storage is refused)."""
    path, root = build(tmp_path, "hybrid")
    before = tree_digest(root)
    sg = StoreGate("hybrid", {"output_dir": str(path), "mode": "r"}, data_id="d")
    try:
        sg.to_memory("x", phase="train")
    except StoregateError as err:  # refusing is fine too
        assert "read-only" in str(err) or "mode='r'" in str(err), err
    else:
        np.testing.assert_array_equal(sg.get_data("x", "train"),
                                      np.arange(12.0).reshape(6, 2))
        with pytest.raises(PermissionError):
            sg.to_storage("x", phase="train", output_var_names="x_copy")
    sg.close()
    assert tree_digest(root) == before
