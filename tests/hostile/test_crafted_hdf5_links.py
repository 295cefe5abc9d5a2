"""Case 5: HDF5 files whose members lead outside the file.

External links (absolute and relative paths, to a dataset or to a whole group, also behind a
soft link), virtual datasets mapping another file (or the file itself), datasets whose raw data
live in external files, dangling and looping soft links. ``storegate.convert`` (the HDF5
import, ``convert`` and ``storegate convert``) refuses each with a ``StoregateError`` naming
the member, reads nothing from outside and leaves no output behind (DESIGN §8). Soft links to
members inside the file are ordinary and imported.

The hdf5 plugin backend, opening such a crafted file as a store, refuses the same external
links, virtual datasets and external storage for reads and writes (tested at the end).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_crafted_support import assert_cli_convert_refuses, child_env, tree_digest

import storegate.convert as convert
from storegate import StoreGate
from storegate.errors import StoregateError

h5py = pytest.importorskip("h5py")

X = np.arange(10.0)


def outside(tmp_path: Path) -> Path:
    d = tmp_path / "outside"
    d.mkdir(exist_ok=True)
    if not (d / "secret.h5").exists():
        with h5py.File(d / "secret.h5", "w") as f:
            f["s"] = np.full(10, 42.0)
            f.create_group("g")["s"] = np.full(10, 42.0)
        np.full(10, 42.0).tofile(d / "raw.bin")
    return d


def crafted(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, the member its error must name)."""
    out = outside(tmp_path)
    secret, raw = str(out / "secret.h5"), str(out / "raw.bin")
    files: dict[str, tuple[Path, str]] = {}

    def make(name: str, member: str, fill: object) -> None:
        path = tmp_path / f"{name}.h5"
        with h5py.File(path, "w") as f:
            f["x"] = X
            fill(f)  # type: ignore[operator]
        files[name] = (path, member)

    def vds(f: object, source: str) -> None:
        layout = h5py.VirtualLayout(shape=(10,), dtype="f8")
        layout[:] = h5py.VirtualSource(source, "s" if source != "." else "x", shape=(10,))
        f.create_virtual_dataset("y", layout)  # type: ignore[attr-defined]

    make("external_link", "/y", lambda f: f.__setitem__("y", h5py.ExternalLink(secret, "/s")))
    make("external_link_relative", "/y",
         lambda f: f.__setitem__("y", h5py.ExternalLink("outside/secret.h5", "/s")))
    make("external_link_to_group", "/g",
         lambda f: f.__setitem__("g", h5py.ExternalLink(secret, "/g")))

    def soft_to_external(f: object) -> None:
        f["e"] = h5py.ExternalLink(secret, "/s")  # type: ignore[index]
        f["y"] = h5py.SoftLink("/e")  # type: ignore[index]

    make("soft_link_to_external_link", "/e", soft_to_external)

    def phase_external(f: object) -> None:
        del f["x"]  # type: ignore[attr-defined]
        g = f.create_group("train")  # type: ignore[attr-defined]
        g["x"] = X
        g["y"] = h5py.ExternalLink(secret, "/s")

    make("external_link_in_phase_group", "/train/y", phase_external)
    make("virtual_dataset_other_file", "/y", lambda f: vds(f, secret))
    make("virtual_dataset_same_file", "/y", lambda f: vds(f, "."))
    make("external_raw_storage", "/y", lambda f: f.create_dataset(
        "y", shape=(10,), dtype="f8", external=[(raw, 0, 80)]))
    make("dangling_soft_link", "/y", lambda f: f.__setitem__("y", h5py.SoftLink("/nowhere")))

    def loop(f: object) -> None:
        f["y"] = h5py.SoftLink("/z")  # type: ignore[index]
        f["z"] = h5py.SoftLink("/y")  # type: ignore[index]

    make("soft_link_loop", "/", loop)
    return files


def test_import_refuses_links_leaving_the_file(tmp_path: Path) -> None:
    files = crafted(tmp_path)
    digest = tree_digest(tmp_path / "outside")
    for name, (path, member) in files.items():
        calls = {
            "import_hdf5": lambda p=path: convert.import_hdf5(p, StoreGate(data_id="d")),
            "convert": lambda p=path, n=name: convert.convert(p, tmp_path / f"out-{n}.zarr"),
        }
        for what, call in calls.items():
            with pytest.raises(StoregateError) as info:
                call()
            assert member in str(info.value), f"{name} {what}: {info.value}"
            assert not (tmp_path / f"out-{name}.zarr").exists(), name
    assert tree_digest(tmp_path / "outside") == digest


def test_cli_convert_refuses_links_leaving_the_file(tmp_path: Path) -> None:
    assert_cli_convert_refuses(tmp_path, crafted(tmp_path))


def test_soft_link_inside_the_file_is_followed(tmp_path: Path) -> None:
    path = tmp_path / "soft.h5"
    with h5py.File(path, "w") as f:
        f["x"] = X
        f["y"] = h5py.SoftLink("/x")
    sg = StoreGate(data_id="d")
    convert.import_hdf5(path, sg)
    np.testing.assert_array_equal(sg.get_data("y", "train"), X)


# ---------------------------------------------------------------- the hdf5 plugin backend
_PLUGIN_CHILD = r"""
import json, sys, warnings
warnings.simplefilter("ignore")
import numpy as np
from storegate import StoreGate
from storegate.errors import StoregateError
out = []
for path in sys.argv[1:]:
    res = {}
    for op in ("read", "gather", "write", "append"):
        try:
            sg = StoreGate("hdf5", {"path": path, "mode": "r" if op in ("read", "gather")
                                    else "a"}, data_id="d")
            if op == "read":
                sg.get_data("y", "train")
            elif op == "gather":
                sg["train"]["y"][[0, 5]]
            elif op == "write":
                sg.update_data("y", np.zeros(10), phase="train")
            else:
                sg.add_data("y", np.zeros(2), phase="train")
            sg.close()
            res[op] = {"ok": True}
        except StoregateError as err:
            res[op] = {"ok": False, "sg": True, "msg": str(err)}
        except BaseException as err:
            res[op] = {"ok": False, "sg": False, "msg": f"{type(err).__name__}: {err}"}
    out.append(res)
print("@@RESULT@@" + json.dumps(out))
"""


def test_hdf5_plugin_refuses_members_leaving_the_file(tmp_path: Path) -> None:
    try:
        StoreGate("hdf5", {"path": str(tmp_path / "probe.h5")}, data_id="d").close()
    except StoregateError:
        pytest.skip("the hdf5 plugin backend is not installed")
    secret = str(outside(tmp_path) / "secret.h5")
    raw = str(tmp_path / "outside" / "raw.bin")
    digest = tree_digest(tmp_path / "outside")
    paths = []
    for kind in ("external_link", "virtual_dataset", "external_raw_storage"):
        path = tmp_path / f"store-{kind}.h5"
        sg = StoreGate("hdf5", {"path": str(path)}, data_id="d")
        sg.add_data("x", X, phase="train")
        sg.compile()
        sg.close()
        with h5py.File(path, "a") as f:
            g = f["d/train"]
            if kind == "external_link":
                g["y"] = h5py.ExternalLink(secret, "/s")
            elif kind == "virtual_dataset":
                layout = h5py.VirtualLayout(shape=(10,), dtype="f8")
                layout[:] = h5py.VirtualSource(secret, "s", shape=(10,))
                g.create_virtual_dataset("y", layout)
            else:
                g.create_dataset("y", shape=(10,), dtype="f8", external=[(raw, 0, 80)])
            meta = json.loads(g.attrs["storegate"])
            meta["var_order"] = ["x", "y"]
            g.attrs["storegate"] = json.dumps(meta)
        paths.append(str(path))
    proc = subprocess.run([sys.executable, "-c", _PLUGIN_CHILD, *paths], capture_output=True,
                          text=True, env=child_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads([x for x in proc.stdout.splitlines()
                          if x.startswith("@@RESULT@@")][-1][len("@@RESULT@@"):])
    for path, res in zip(paths, results, strict=True):
        for op, r in res.items():
            assert not r["ok"] and r["sg"], (path, op, r)
            assert "d/train/y" in r["msg"], (path, op, r)
    assert tree_digest(tmp_path / "outside") == digest
