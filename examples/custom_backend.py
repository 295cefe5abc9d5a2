"""A third-party backend in one file: vars as ``.npy`` files in a directory tree.

``NpyDirBackend`` implements :class:`storegate.backends.Backend` (layout below), is registered
at runtime under the name ``npydir`` the way a plugin distribution registers it (an entry point
in the group ``storegate.backends``; here a throw-away ``*.dist-info`` folder on ``sys.path``
stands in for ``pip install``), is used through ``StoreGate(backend="npydir")`` and
``StoreGate.open(path)``, and is then checked against the contract suite the built-in backends
pass (:mod:`storegate.testing`), by running pytest on this file.

Layout of a store::

    <root>/npydir.json                    marker (how StoreGate.open recognises the store)
    <root>/<data_id>/attrs.json           the data_id's attributes (compile metadata, ...)
    <root>/<data_id>/<phase>/order.json   var names in insertion order
    <root>/<data_id>/<phase>/<var>.npy    one var

Every change writes a new file beside the old one and renames it into place, so a killed
process leaves each file whole. Appends rewrite the var's file (fine for a demonstration, slow
for many appends to big vars); reads memory-map the file. Nothing is kept open, so instances
pickle and fork trivially. Ragged vars are not supported (``supports_ragged = False``: the
facade refuses them with a clear error and the ragged part of the contract skips); see
``backends/storegate-hdf5`` for a plugin that stores them.

In a real distribution the registration is two lines of ``pyproject.toml``::

    [project.entry-points."storegate.backends"]
    npydir = "custom_backend:NpyDirBackend"

Run: ``python examples/custom_backend.py [--rows N] [--dir DIR] [--contract {full,quick,none}]``
(the contract suite needs pytest: ``pip install 'storegate[test]'``). Or run the suite alone:
``python -m pytest examples/custom_backend.py -o python_files=custom_backend.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from storegate import (
    PHASES,
    Backend,
    CorruptStoreError,
    DataIdNotFoundError,
    ShapeMismatchError,
    StoreGate,
    StoreNotFoundError,
    UnknownPhaseError,
    UnsupportedOperationError,
    VarInfo,
    VarNotFoundError,
    list_backends,
)
from storegate.arrays import cast_for_write, check_row_shape
from storegate.backends import backend_specs
from storegate.backends.base import TEMP_PREFIX
from storegate.indexing import Index

MARKER = "npydir.json"
MODES = ("r", "r+", "a", "w", "w-")


class NpyDirBackend(Backend):
    """Vars stored as ``.npy`` files, one directory per data_id and phase.

    Parameters
    ----------
    output_dir
        The store's directory (``None``: a new temporary directory).
    mode
        ``'r'`` read-only, ``'r+'`` an existing store, ``'a'`` open or create (default),
        ``'w'`` create, wiping an existing npydir store, ``'w-'`` create, fail if it exists.
    """

    name: ClassVar[str] = "npydir"
    persistent: ClassVar[bool] = True
    supports_ragged: ClassVar[bool] = False

    def __init__(self, output_dir: str | os.PathLike[str] | None = None,
                 mode: str = "a") -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
        self.root = Path(output_dir if output_dir is not None
                         else tempfile.mkdtemp(prefix="npydir-"))
        self.mode = mode
        exists = (self.root / MARKER).is_file()
        if not exists and self.root.exists() and any(self.root.iterdir()):
            raise CorruptStoreError(f"{self.root} exists and is not an npydir store (no "
                                    f"{MARKER}); choose an empty or new directory.")
        if mode in ("r", "r+") and not exists:
            raise StoreNotFoundError(f"no npydir store at {self.root}; create one with "
                                     "mode='a' or 'w'.")
        if mode == "w-" and exists:
            raise CorruptStoreError(f"{self.root} already holds a store (mode='w-'); use "
                                    "mode='a' to add to it or 'w' to replace it.")
        if mode == "w" and exists:
            shutil.rmtree(self.root)  # once, here: an unpickled copy never wipes again
        if mode != "r":
            self.root.mkdir(parents=True, exist_ok=True)
            if not (self.root / MARKER).is_file():
                self._save_json(self.root / MARKER, {"format": "npydir", "version": 1})

    # ------------------------------------------------------------------ small helpers
    @property
    def readonly(self) -> bool:
        return self.mode == "r"

    def describe(self) -> str:
        return f"npydir store {str(self.root)!r}"

    @classmethod
    def guess_can_open(cls, location: str) -> bool:
        return "://" not in str(location) and (Path(location) / MARKER).is_file()

    @staticmethod
    @contextlib.contextmanager
    def _replacing(path: Path) -> Iterator[Path]:
        """Yield a temporary path beside ``path``; rename it onto ``path`` when the block ends
        without an exception (atomic on POSIX), else delete it."""
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            yield tmp
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def _save_json(self, path: Path, obj: Any) -> None:
        with self._replacing(path) as tmp:
            tmp.write_text(json.dumps(obj))

    def _save_npy(self, path: Path, data: np.ndarray) -> None:
        with self._replacing(path) as tmp, open(tmp, "wb") as f:
            np.save(f, data, allow_pickle=False)

    def _did(self, data_id: str) -> Path:
        path = self.root / data_id
        if not path.is_dir():
            raise DataIdNotFoundError(f"data_id {data_id!r} does not exist in "
                                      f"{self.describe()}; existing: {self.data_ids()}.")
        return path

    def _phase(self, data_id: str, phase: str) -> Path:
        if phase not in PHASES:
            raise UnknownPhaseError(f"phase {phase!r} is not one of {PHASES}.")
        return self._did(data_id) / phase

    def _order(self, data_id: str, phase: str) -> list[str]:
        names: list[str] = json.loads((self._phase(data_id, phase) / "order.json").read_text())
        return names

    def _set_order(self, data_id: str, phase: str, names: list[str]) -> None:
        self._save_json(self._phase(data_id, phase) / "order.json", names)

    def _file(self, data_id: str, phase: str, var: str) -> Path:
        if var not in self._order(data_id, phase):
            raise VarNotFoundError(f"var {var!r} does not exist in data_id {data_id!r}, phase "
                                   f"{phase!r} of {self.describe()}.")
        return self._phase(data_id, phase) / f"{var}.npy"

    def _map(self, data_id: str, phase: str, var: str) -> np.ndarray:
        """The var as a read-only memory map (reads no data until indexed)."""
        return np.load(self._file(data_id, phase, var), mmap_mode="r", allow_pickle=False)

    def _new_var(self, data_id: str, phase: str, var: str, data: np.ndarray) -> None:
        """Write a var's file, then list it (a crash in between leaves it invisible)."""
        order = self._order(data_id, phase)
        self._save_npy(self._phase(data_id, phase) / f"{var}.npy", data)
        if var not in order:
            self._set_order(data_id, phase, [*order, var])

    # ------------------------------------------------------------------ data_ids
    def data_ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir()
                      if p.is_dir() and (p / "attrs.json").is_file())

    def create_data_id(self, data_id: str) -> None:
        self._check_writable()
        path = self.root / data_id
        if (path / "attrs.json").is_file():
            return
        for phase in PHASES:
            (path / phase).mkdir(parents=True, exist_ok=True)
            self._save_json(path / phase / "order.json", [])
        self._save_json(path / "attrs.json", {})  # last: the data_id exists from here on

    def delete_data_id(self, data_id: str) -> None:
        self._check_writable()
        path = self._did(data_id)
        (path / "attrs.json").unlink()  # first: the data_id is gone from here on
        shutil.rmtree(path)

    def get_attrs(self, data_id: str) -> dict[str, Any]:
        attrs: dict[str, Any] = json.loads((self._did(data_id) / "attrs.json").read_text())
        return attrs

    def set_attrs(self, data_id: str, attrs: dict[str, Any]) -> None:
        self._check_writable()
        self._save_json(self._did(data_id) / "attrs.json", copy.deepcopy(attrs))

    # ------------------------------------------------------------------ vars
    def var_names(self, data_id: str, phase: str) -> list[str]:
        return [v for v in self._order(data_id, phase) if not v.startswith(TEMP_PREFIX)]

    def has_var(self, data_id: str, phase: str, var: str) -> bool:
        return var in self._order(data_id, phase)

    def info(self, data_id: str, phase: str, var: str) -> VarInfo:
        arr = self._map(data_id, phase, var)  # parses the header only
        return VarInfo(var, tuple(arr.shape), arr.dtype)

    def read(self, data_id: str, phase: str, var: str, index: Index) -> Any:
        arr = self._map(data_id, phase, var)
        # np.array copies (the caller owns the result); a gather is already a copy
        return np.asarray(arr[index]) if isinstance(index, np.ndarray) else np.array(arr[index])

    def append(self, data_id: str, phase: str, var: str, data: Any) -> None:
        self._check_writable()
        if not isinstance(data, np.ndarray):
            raise UnsupportedOperationError(f"{self.describe()} stores no ragged vars ({var!r}).")
        if not self.has_var(data_id, phase, var):
            self._new_var(data_id, phase, var, data)
            return
        old = self._map(data_id, phase, var)
        check_row_shape(data, old.shape[1:], var)
        if len(data):
            self._save_npy(self._file(data_id, phase, var),
                           np.concatenate([old, cast_for_write(data, old.dtype, var)]))

    def write(self, data_id: str, phase: str, var: str, index: Index, data: Any) -> None:
        self._check_writable()
        path = self._file(data_id, phase, var)
        arr = np.load(path, allow_pickle=False)  # a private copy in memory
        try:
            arr[index] = data
        except ValueError as err:
            raise ShapeMismatchError(f"cannot write data of shape {np.shape(data)} into var "
                                     f"{var!r} at {index!r}: {err}.") from None
        self._save_npy(path, arr)

    def create(self, data_id: str, phase: str, var: str, shape: tuple[int, ...],
               dtype: np.dtype) -> None:
        self._check_writable()
        self._new_var(data_id, phase, var, np.zeros(shape, dtype=dtype))

    def delete(self, data_id: str, phase: str, var: str) -> None:
        self._check_writable()
        path = self._file(data_id, phase, var)
        self._set_order(data_id, phase, [v for v in self._order(data_id, phase) if v != var])
        path.unlink()

    def rename(self, data_id: str, phase: str, src: str, dst: str) -> None:
        self._check_writable()
        path = self._file(data_id, phase, src)
        if dst == src:
            return
        order = self._order(data_id, phase)
        os.replace(path, path.with_name(f"{dst}.npy"))  # replaces dst's file atomically
        order = ([v for v in order if v != src] if dst in order
                 else [dst if v == src else v for v in order])
        self._set_order(data_id, phase, order)


# ---------------------------------------------------------------------------------- contract
# The contract suite is pytest classes: this one is collected when pytest runs this file (see
# run_contract). A plain `python custom_backend.py`, or the registry importing the module to
# find NpyDirBackend, needs no pytest.
if __name__ != "__main__" and importlib.util.find_spec("pytest") is not None:
    import pytest

    from storegate.testing import BackendContract

    class TestNpyDirBackend(BackendContract):
        """The whole contract: data_ids, vars, reads at every index form, writes, errors,
        pickling, spawned and forked readers, reopening and read-only mode."""

        @pytest.fixture
        def backend(self, tmp_path: Path) -> NpyDirBackend:
            return NpyDirBackend(tmp_path / "store", mode="a")

        @pytest.fixture
        def reopen(self, tmp_path: Path) -> Any:
            return lambda old: NpyDirBackend(tmp_path / "store", mode="a")

        @pytest.fixture
        def readonly_backend(self, tmp_path: Path) -> Any:
            return lambda old: NpyDirBackend(tmp_path / "store", mode="r")


def run_contract(level: str) -> int:
    """Run the contract suite with pytest on this file, in a fresh interpreter (so pytest
    imports the suite itself and rewrites its asserts); return pytest's exit code."""
    args = [sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:cacheprovider",
            "-o", "python_files=custom_backend.py", "-o", "addopts="]
    if level == "quick":  # a few tests of each part
        args += ["-k", "basics or append_creates_then_appends or read_user_index or "
                 "write_in_place or missing_var or spawned or reopen_keeps or readonly_reads"]
    return subprocess.run(args, check=False).returncode


# ---------------------------------------------------------------------------------- registration
def register_at_runtime(folder: Path) -> None:
    """Register ``npydir`` as a pip-installed plugin would: a distribution's metadata with an
    entry point in the group ``storegate.backends``, found on ``sys.path``."""
    info = folder / "storegate_npydir-0.1.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: storegate-npydir\n"
                                   "Version: 0.1.0\n")
    (info / "entry_points.txt").write_text(
        "[storegate.backends]\nnpydir = custom_backend:NpyDirBackend\n")
    here = str(Path(__file__).resolve().parent)  # where the module `custom_backend` lives
    for path in (here, str(folder)):
        if path not in sys.path:
            sys.path.append(path)
    from storegate.backends import registry

    registry.refresh()  # forget the cached discovery, so the new entry point is seen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="number of events")
    parser.add_argument("--dir", default=None, help="where to write the store")
    parser.add_argument("--contract", choices=("full", "quick", "none"), default="full",
                        help="how much of the contract suite to run")
    args = parser.parse_args(argv)
    work = Path(args.dir or tempfile.mkdtemp(prefix="storegate-npydir-"))
    work.mkdir(parents=True, exist_ok=True)

    # 1. Register the backend and find it by name, as StoreGate(backend=...) does.
    register_at_runtime(work / "site")
    spec = backend_specs()["npydir"]
    print(f"registered backend 'npydir' -> {spec.target} ({spec.distribution} {spec.version})")
    print(f"installed backends: {', '.join(list_backends())}")

    # 2. Use it through the facade: phases, compile, a reopen in read-only mode.
    path = work / "jets.npydir"
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.rows, 8), dtype=np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    sg = StoreGate(backend="npydir", backend_args={"output_dir": str(path), "mode": "w"},
                   data_id="jets")
    sg.add_data("x", x, phase=(0.8, 0.1, 0.1))
    sg.add_data("label", y, phase=(0.8, 0.1, 0.1))
    sg.onehot("label", 2, phase="all")  # a whole-var transform: create, append, rename
    sg.compile()
    sg.show_info()
    sg.close()

    again = StoreGate.open(str(path))  # the backend is recognised by its marker file
    idx = rng.choice(len(again["train"]), min(1024, len(again["train"])), replace=False)
    xb, yb = again["train"]["x"][idx], again["train"]["label"][idx]
    assert np.array_equal(xb, x[idx]) and np.array_equal(yb.argmax(1), y[idx])
    print(f"reopened with backend {again.backend!r}, read-only {again.db.readonly}: "
          f"train rows {len(again['train'])}, batch x {xb.shape} label {yb.shape} {yb.dtype}")
    files = sorted(p.name for p in (path / "jets" / "train").iterdir())
    print(f"files of jets/train: {files}")
    again.close()

    # 3. The contract suite, exactly as the built-in backends run it.
    if args.contract == "none":
        return 0
    if importlib.util.find_spec("pytest") is None:
        print("pytest is not installed: pip install 'storegate[test]', then run "
              "python -m pytest examples/custom_backend.py -o python_files=custom_backend.py")
        return 0
    print(f"running the contract suite ({args.contract}) on NpyDirBackend:")
    sys.stdout.flush()
    code = run_contract(args.contract)
    print(f"contract suite: {'passed' if code == 0 else f'FAILED (pytest exit code {code})'}")
    return 0 if code == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
