"""Backend discovery through the entry-point group ``storegate.backends``.

Plugins are real (throw-away) distributions: a ``*.dist-info`` folder with ``METADATA`` and
``entry_points.txt`` plus a module, put on ``sys.path`` for the test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import storegate
import storegate.backends
from storegate import BackendImportError, BackendNotFoundError, InvalidArgumentError, StoreGate
from storegate.backends import Backend, BackendPluginWarning, get_backend, list_backends
from storegate.backends.numpy_backend import NumpyBackend

PLUGIN_MODULES = ("fakeplugin_mod", "brokenplugin_mod", "notabackend_mod")


def write_dist(root: Path, dist: str, entry_points: str, module: str, source: str) -> None:
    info = root / f"{dist}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\nSummary: test plugin\n"
    )
    (info / "entry_points.txt").write_text(f"[storegate.backends]\n{entry_points}\n")
    (root / f"{module}.py").write_text(textwrap.dedent(source))


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    """tmp_path with three plugin distributions, on sys.path; the registry is refreshed."""
    root = tmp_path / "site"
    root.mkdir()
    write_dist(root, "fakeplugin", "fake = fakeplugin_mod:FakeBackend", "fakeplugin_mod", """
        from storegate.backends.numpy_backend import NumpyBackend

        class FakeBackend(NumpyBackend):
            name = "fake"

            def __init__(self, flavour="plain", **kwargs):
                super().__init__(**kwargs)
                self.flavour = flavour
    """)
    write_dist(root, "brokenplugin", "broken = brokenplugin_mod:BrokenBackend",
               "brokenplugin_mod", """
        raise ImportError("brokenplugin needs a library that is not installed")
    """)
    write_dist(root, "notabackend", "notabackend = notabackend_mod:Thing", "notabackend_mod",
               """
        class Thing:
            pass
    """)
    for mod in PLUGIN_MODULES:
        monkeypatch.delitem(sys.modules, mod, raising=False)
    monkeypatch.syspath_prepend(str(root))
    storegate.backends.refresh()
    yield root
    storegate.backends.refresh()
    for mod in PLUGIN_MODULES:
        sys.modules.pop(mod, None)


@pytest.fixture(autouse=True)
def _fresh_registry():
    storegate.backends.refresh()
    yield
    storegate.backends.refresh()


def test_builtins_listed_without_import():
    names = list_backends()
    assert {"numpy", "zarr"} <= set(names)
    assert names == sorted(names)
    specs = storegate.backends.backend_specs()
    assert specs["numpy"].target == "storegate.backends.numpy_backend:NumpyBackend"
    assert specs["zarr"].target == "storegate.backends.zarr_backend:ZarrBackend"


def test_plugin_is_discovered_and_used(plugin_dir):
    assert {"fake", "broken", "notabackend"} <= set(list_backends())
    spec = storegate.backends.backend_specs()["fake"]
    assert spec.distribution == "fakeplugin" and spec.version == "1.0"
    assert "fakeplugin_mod" not in sys.modules  # listing imports nothing

    sg = StoreGate(backend="fake", backend_args={"flavour": "spicy"}, data_id="d")
    assert sg.backend == "fake"
    assert type(sg.db).__name__ == "FakeBackend" and sg.db.flavour == "spicy"
    assert isinstance(sg.db, NumpyBackend)
    sg.add_data("x", np.arange(10), phase=(0.8, 0.1, 0.1))
    assert sg["train"]["x"][:].tolist() == list(range(8))
    assert get_backend("fake") is type(sg.db)


def test_plugin_unknown_after_refresh_without_path(plugin_dir, monkeypatch):
    assert "fake" in list_backends()
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(plugin_dir)])
    storegate.backends.refresh()
    assert "fake" not in list_backends()
    with pytest.raises(BackendNotFoundError, match="'fake' is not supported"):
        StoreGate(backend="fake")


def test_broken_plugin_raises_naming_distribution(plugin_dir):
    with pytest.raises(BackendImportError) as info:
        StoreGate(backend="broken")
    msg = str(info.value)
    assert "brokenplugin" in msg and "1.0" in msg
    assert "not installed" in msg  # the plugin's own reason
    assert isinstance(info.value, ImportError)
    # other backends keep working
    assert StoreGate(backend="fake").backend == "fake"


def test_entry_point_that_is_not_a_backend(plugin_dir):
    with pytest.raises(BackendImportError,
                       match=r"notabackend.*not a storegate\.backends\.Backend"):
        StoreGate(backend="notabackend")


def test_load_all_warns_about_broken_plugin(plugin_dir):
    with pytest.warns(BackendPluginWarning) as record:
        ok, failed = storegate.backends.load_all()
    assert "fake" in ok and "numpy" in ok
    assert "broken" in failed and "notabackend" in failed
    assert isinstance(failed["broken"], BackendImportError)
    messages = [str(w.message) for w in record]
    assert any("brokenplugin" in m for m in messages), messages
    assert any("notabackend" in m for m in messages), messages
    assert not any("fakeplugin" in m for m in messages)


def test_import_storegate_survives_broken_plugin(plugin_dir):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(plugin_dir), env.get("PYTHONPATH", "")])
    code = (
        "import sys, warnings\n"
        "warnings.simplefilter('error')\n"
        "import storegate\n"
        "names = storegate.list_backends()\n"
        "assert 'broken' in names and 'fake' in names, names\n"
        "assert 'brokenplugin_mod' not in sys.modules\n"
        "sg = storegate.StoreGate('numpy', data_id='d')\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_backend_subclass_and_instance():
    class Mine(NumpyBackend):
        name = "mine"

    sg = StoreGate(backend=Mine, data_id="d")
    assert sg.backend == "mine" and type(sg.db) is Mine
    inst = Mine()
    sg2 = StoreGate(backend=inst, data_id="d")
    assert sg2.db is inst and sg2.backend == "mine"
    sg2.add_data("x", np.arange(3))
    assert inst.read("d", "train", "x", slice(0, 3, 1)).tolist() == [0, 1, 2]
    # two gates on one backend instance share its data
    sg3 = StoreGate(backend=inst, data_id="d")
    assert sg3["train"]["x"][:].tolist() == [0, 1, 2]


def test_backend_class_that_is_not_a_backend():
    class NotABackend:
        name = "nope"

    with pytest.raises(BackendNotFoundError, match="Backend subclass or instance"):
        StoreGate(backend=NotABackend)


def test_get_backend_caches_and_refresh_forgets():
    cls = get_backend("numpy")
    assert cls is NumpyBackend and issubclass(cls, Backend)
    assert get_backend("numpy") is cls
    storegate.backends.refresh()
    assert get_backend("numpy") is NumpyBackend


def test_duplicate_registration_warns(tmp_path, monkeypatch):
    root = tmp_path / "dup"
    root.mkdir()
    write_dist(root, "dupplugin", "numpy = fakeplugin_mod:FakeBackend", "dupplugin_mod", "")
    monkeypatch.syspath_prepend(str(root))
    storegate.backends.refresh()
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        specs = storegate.backends.backend_specs()
    # the name resolves to one target, and the clash is reported naming the distribution
    assert specs["numpy"].target in ("storegate.backends.numpy_backend:NumpyBackend",
                                     "fakeplugin_mod:FakeBackend")
    assert any("dupplugin" in str(w.message) and issubclass(w.category, BackendPluginWarning)
               for w in record)


@pytest.fixture
def runtime_registry() -> Iterator[None]:
    """Forget the backends a test registers at runtime."""
    from storegate.backends import registry

    before = dict(registry._runtime)
    yield
    registry._runtime.clear()
    registry._runtime.update(before)
    registry.refresh()


def test_register_backend_at_runtime(runtime_registry: None) -> None:
    from storegate.backends import register_backend
    from storegate.backends.numpy_backend import NumpyBackend

    class Scratch(NumpyBackend):
        """An in-memory backend under another name."""

    register_backend("scratch-test", Scratch)
    assert storegate.get_backend("scratch-test") is Scratch
    assert "scratch-test" in storegate.list_backends()
    sg = storegate.StoreGate("scratch-test", data_id="d")
    sg.add_data("x", np.arange(4.0), phase="train")
    assert isinstance(sg.db, Scratch) and sg["train"]["x"][[3]].tolist() == [3.0]
    storegate.backends.refresh()  # survives a refresh of the discovery cache
    assert storegate.get_backend("scratch-test") is Scratch
    # a lazy import path, imported on first use
    register_backend("lazy-test", "storegate.backends.numpy_backend:NumpyBackend")
    assert storegate.backends.backend_specs()["lazy-test"].distribution is None
    assert storegate.get_backend("lazy-test") is NumpyBackend
    # the same target again is fine; another one needs overwrite=True
    register_backend("scratch-test", Scratch)
    with pytest.raises(InvalidArgumentError, match="overwrite=True"):
        register_backend("scratch-test", NumpyBackend)
    with pytest.raises(InvalidArgumentError, match="overwrite=True"):
        register_backend("zarr", NumpyBackend)
    register_backend("scratch-test", NumpyBackend, overwrite=True)
    assert storegate.get_backend("scratch-test") is NumpyBackend


@pytest.mark.parametrize("name,target", [
    ("", "a:b"), ("bad name", "a:b"), ("../x", "a:b"), (3, "a:b"),
    ("ok", "no_colon"), ("ok", ":Cls"), ("ok", "mod:"), ("ok", int), ("ok", None),
])
def test_register_backend_refuses_bad_input(runtime_registry: None, name: Any,
                                            target: Any) -> None:
    from storegate.backends import register_backend

    with pytest.raises(InvalidArgumentError):
        register_backend(name, target)
    assert "ok" not in storegate.list_backends()


def test_register_backend_with_a_broken_path_fails_on_use(runtime_registry: None) -> None:
    from storegate.backends import register_backend

    register_backend("broken-test", "storegate_no_such_module:Backend")
    assert "broken-test" in storegate.list_backends()
    with pytest.raises(BackendImportError, match="storegate_no_such_module"):
        storegate.get_backend("broken-test")
