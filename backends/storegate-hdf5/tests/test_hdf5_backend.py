"""Behaviour specific to the HDF5 backend (the contract suite covers the rest)."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
from storegate_hdf5 import HDF5Backend
from storegate_hdf5.backend import resolve_path

from storegate import StoreGate
from storegate.backends import get_backend, refresh
from storegate.backends.registry import guess_backend
from storegate.errors import CorruptStoreError, StoregateError, StoreNotFoundError
from storegate.ragged import RaggedArray


def test_registered_as_plugin() -> None:
    refresh()
    assert get_backend("hdf5") is HDF5Backend


def test_storegate_facade(h5path: str) -> None:
    sg = StoreGate(backend="hdf5", backend_args={"path": h5path}, data_id="d")
    sg.add_data("x", np.arange(20.0).reshape(10, 2), phase=(0.6, 0.2, 0.2))
    sg.compile()
    sg.close()
    ro = StoreGate(backend="hdf5", backend_args={"path": h5path, "mode": "r"}, data_id="d")
    assert ro["train"]["x"][[0, 5]].tolist() == [[0.0, 1.0], [10.0, 11.0]]


def test_layout_on_disk(h5backend: HDF5Backend, h5path: str) -> None:
    h5backend.create_data_id("d")
    h5backend.append("d", "train", "x", np.ones((5, 3), "f4"))
    h5backend.append("d", "train", "r", RaggedArray(np.arange(4), np.array([0, 1, 4])))
    h5backend.set_attrs("d", {"k": [1, 2]})
    h5backend.close()
    with h5py.File(h5path, "r") as f:
        assert f.attrs["storegate_backend"] == "hdf5"
        assert int(f.attrs["storegate_format"]) == 1
        ds = f["d/train/x"]
        assert ds.maxshape == (None, 3) and ds.chunks is not None
        assert f["d/train/r/offsets"][:].tolist() == [0, 1, 4]
        assert f["d/train/r/values"].shape == (4,)
        assert '"var_order": ["x", "r"]' in f["d/train"].attrs["storegate"]
        assert f["d"].attrs["storegate_attrs"] == '{"k": [1, 2]}'


def test_output_dir_and_path(tmp_path: Path) -> None:
    assert resolve_path(None, str(tmp_path)) == str(tmp_path / "store.h5")
    assert resolve_path(None, str(tmp_path / "a.hdf5")) == str(tmp_path / "a.hdf5")
    assert resolve_path(str(tmp_path / "f"), None) == str(tmp_path / "f")
    be = HDF5Backend(output_dir=str(tmp_path / "new_dir"))
    be.close()
    assert os.path.isfile(tmp_path / "new_dir" / "store.h5")
    with pytest.raises(StoregateError):
        HDF5Backend(path="a.h5", output_dir="b")


def test_guess_and_location_args(h5backend: HDF5Backend, h5path: str, tmp_path: Path) -> None:
    h5backend.create_data_id("d")
    h5backend.flush()
    assert HDF5Backend.guess_can_open(h5path)
    assert guess_backend(h5path) == "hdf5"
    assert HDF5Backend.location_args(h5path, "a") == {"path": h5path, "mode": "a"}
    foreign = str(tmp_path / "foreign.h5")
    with h5py.File(foreign, "w") as f:
        f["x"] = np.arange(3)
    assert not HDF5Backend.guess_can_open(foreign)
    assert not HDF5Backend.guess_can_open(str(tmp_path / "missing.h5"))
    with pytest.raises(CorruptStoreError, match="not a storegate hdf5 store"):
        HDF5Backend(path=foreign)


def test_modes(tmp_path: Path) -> None:
    path = str(tmp_path / "m.h5")
    with pytest.raises(StoreNotFoundError):
        HDF5Backend(path=path, mode="r")
    with pytest.raises(StoreNotFoundError):
        HDF5Backend(path=path, mode="r+")
    be = HDF5Backend(path=path, mode="w-")
    be.create_data_id("d")
    be.close()
    with pytest.raises(StoregateError, match="w-"):
        HDF5Backend(path=path, mode="w-")
    assert HDF5Backend(path=path, mode="r+").data_ids() == ["d"]
    wiped = HDF5Backend(path=path, mode="w")
    assert wiped.data_ids() == []
    wiped.close()
    with pytest.raises(StoregateError):
        HDF5Backend(path=path, mode="x")


def test_compression_options(tmp_path: Path) -> None:
    for comp in ("gzip", "lzf"):
        be = HDF5Backend(path=str(tmp_path / f"{comp}.h5"), compression=comp)
        be.create_data_id("d")
        be.append("d", "train", "x", np.zeros((1000, 4), "f8"))
        assert be.info("d", "train", "x").codec == comp
        assert be.stored_bytes("d", "train", "x") < 32_000  # zeros compress
        be.close()
    with pytest.raises(StoregateError, match="compression"):
        HDF5Backend(path=str(tmp_path / "bad.h5"), compression="zstd")


def test_stored_bytes_and_check(h5backend: HDF5Backend) -> None:
    h5backend.create_data_id("d")
    h5backend.append("d", "train", "x", np.ones(1000))
    h5backend.append("d", "train", "r", RaggedArray(np.arange(4), np.array([0, 1, 4])))
    assert h5backend.stored_bytes("d", "train", "x") >= 8000
    assert h5backend.stored_bytes("d", "train", "r") > 0
    assert h5backend.check("d", "train", "r") == []


def test_temporaries_hidden(h5backend: HDF5Backend) -> None:
    h5backend.create_data_id("d")
    h5backend.append("d", "train", ".sg-tmp-x", np.arange(3))
    assert h5backend.var_names("d", "train") == []
    assert h5backend.has_var("d", "train", ".sg-tmp-x")
    h5backend.rename("d", "train", ".sg-tmp-x", "x")
    assert h5backend.var_names("d", "train") == ["x"]


def test_external_link_refused(h5backend: HDF5Backend, h5path: str, tmp_path: Path) -> None:
    h5backend.create_data_id("d")
    h5backend.append("d", "train", "x", np.arange(3))
    h5backend.close()
    other = str(tmp_path / "other.h5")
    with h5py.File(other, "w") as f:
        f["secret"] = np.arange(5)
    with h5py.File(h5path, "a") as f:
        f["d/train/ext"] = h5py.ExternalLink(other, "/secret")
        f["outside"] = h5py.ExternalLink(other, "/")
    be = HDF5Backend(path=h5path, mode="r")
    with pytest.raises(CorruptStoreError, match="external link"):
        be.data_ids()
    with pytest.raises(CorruptStoreError, match="external link"):
        be.var_names("d", "train")
    be.close()


def test_virtual_dataset_refused(h5backend: HDF5Backend, h5path: str, tmp_path: Path) -> None:
    h5backend.create_data_id("d")
    h5backend.close()
    other = str(tmp_path / "src.h5")
    with h5py.File(other, "w") as f:
        f["data"] = np.arange(4)
    layout = h5py.VirtualLayout(shape=(4,), dtype="i8")
    layout[:] = h5py.VirtualSource(other, "data", shape=(4,))
    with h5py.File(h5path, "a") as f:
        f["d/train"].create_virtual_dataset(".sg-tmp-v", layout)
    be = HDF5Backend(path=h5path, mode="r")
    with pytest.raises(CorruptStoreError, match="virtual dataset"):
        be.read("d", "train", ".sg-tmp-v", 0)
    be.close()


def test_interrupted_rename_is_rolled_back(h5backend: HDF5Backend, h5path: str) -> None:
    h5backend.create_data_id("d")
    h5backend.append("d", "train", "a", np.arange(3))
    h5backend.append("d", "train", "b", np.arange(3) * 10)
    h5backend.close()
    with h5py.File(h5path, "a") as f:  # a crash after moving 'a' and 'b' aside, nothing in
        f["d/train"].move("a", ".sg-old-a")
        f["d/train"].move("b", ".sg-old-b")
        f["d/train/.sg-tmp-a"] = np.arange(3) + 100
    be = HDF5Backend(path=h5path)
    assert be.var_names("d", "train") == ["a", "b"]
    assert be.read("d", "train", "a", slice(0, 3, 1)).tolist() == [0, 1, 2]
    assert not be.has_var("d", "train", ".sg-tmp-a")
    be.close()


def test_pickle_and_flush_release_the_file(h5backend: HDF5Backend, h5path: str) -> None:
    h5backend.create_data_id("d")
    h5backend.append("d", "train", "x", np.arange(5))
    clone = pickle.loads(pickle.dumps(h5backend))  # pickling flushes and closes
    with h5py.File(h5path, "r") as f:  # another opener is not locked out
        assert f["d/train/x"].shape == (5,)
    assert clone.read("d", "train", "x", 4).item() == 4
    clone.close()


def test_uninitialised_create_and_dtype_refused(h5backend: HDF5Backend) -> None:
    h5backend.create_data_id("d")
    h5backend.create("d", "train", "e", (4, 2), np.dtype("f4"))
    assert h5backend.info("d", "train", "e").shape == (4, 2)
    with pytest.raises(StoregateError):
        h5backend.append("d", "train", "s", np.array(["a", "b"]))
