"""HDF5 import and export (``storegate.convert.hdf5``): round trips, phases, ragged data,
refusals, streaming and failures that must leave nothing behind."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from storegate import StoreGate
from storegate.convert import (
    DestinationExistsError,
    SourceFormatError,
    SourceNotFoundError,
    UnsupportedFieldError,
)
from storegate.convert import hdf5 as hdf5_mod
from storegate.convert.hdf5 import export_hdf5, import_hdf5
from storegate.errors import (
    DataIdNotFoundError,
    InconsistentLengthError,
    InvalidArgumentError,
    InvalidNameError,
    InvalidPhaseError,
    MissingDependencyError,
    UnknownPhaseError,
    UnsupportedOperationError,
    VarExistsError,
    VarNotFoundError,
)
from storegate.phases import PHASES
from storegate.ragged import RaggedArray

h5py = pytest.importorskip("h5py")

BACKENDS = ["numpy", "zarr"]
N = 40


# ---------------------------------------------------------------------------------- helpers
def make_gate(backend: str, tmp_path: Path, data_id: str | None = None,
              store: str = "s") -> StoreGate:
    if backend == "zarr":
        return StoreGate("zarr", {"output_dir": str(tmp_path / f"{store}.zarr")},
                         data_id=data_id)
    return StoreGate("numpy", data_id=data_id)


def store_snapshot(sg: StoreGate) -> dict[str, Any]:
    """Every data_id, var (in order), dtype, shape and byte of the store, and its attrs."""
    db = sg.db
    out: dict[str, Any] = {"current": sg.data_id}
    for data_id in db.data_ids():
        entry: dict[str, Any] = {"attrs": db.get_attrs(data_id)}
        for phase in PHASES:
            cols = []
            for v in db.var_names(data_id, phase):
                info = db.info(data_id, phase, v)
                data = db.read(data_id, phase, v, slice(0, info.length, 1))
                if isinstance(data, RaggedArray):
                    cols.append((v, "ragged", str(data.dtype), data.values.shape,
                                 data.values.tobytes(), data.offsets.tolist()))
                else:
                    cols.append((v, "dense", str(data.dtype), data.shape, data.tobytes()))
            entry[phase] = cols
        out[data_id] = entry
    return out


def data_id_snapshot(sg: StoreGate, data_id: str) -> dict[str, Any]:
    snap = store_snapshot(sg)[data_id]
    snap.pop("attrs")
    return snap


def h5_contents(path: Path | str) -> dict[str, Any]:
    """Every dataset of a file: path -> (dtype, shape, bytes), and every group's path."""
    out: dict[str, Any] = {}

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            data = obj[()]
            out[name] = (obj.dtype, obj.shape, np.asarray(data).tobytes())
        else:
            out[name] = "group"

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return out


def ragged_rows(rng: np.random.Generator, n: int, k: tuple[int, ...],
                dtype: str) -> tuple[np.ndarray, np.ndarray]:
    lengths = rng.integers(0, 6, n)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    values = (rng.standard_normal((int(offsets[-1]), *k)) * 10).astype(dtype)
    return values, offsets


def fill_dense(g: Any, n: int, seed: int) -> None:
    """Datasets of many dtypes and row shapes."""
    rng = np.random.default_rng(seed)
    g["f16"] = rng.standard_normal((n, 3)).astype("float16")
    g["i8"] = rng.integers(-128, 127, n).astype("int8")
    g["flag"] = rng.integers(0, 2, n).astype(bool)
    g["u64"] = rng.integers(0, 2**63, n).astype("uint64") * np.uint64(2)
    g["img"] = rng.standard_normal((n, 2, 2)).astype("float32")
    g["c64"] = (rng.standard_normal(n) + 1j * rng.standard_normal(n)).astype("complex64")
    g["f64"] = rng.standard_normal(n)


def fill_ragged(g: Any, n: int, seed: int, marked: bool = True) -> None:
    rng = np.random.default_rng(seed)
    for name, k, dt in (("hits", (3,), "float32"), ("ids", (), "int16")):
        values, offsets = ragged_rows(rng, n, k, dt)
        sub = g.create_group(name)
        sub["values"] = values
        sub["offsets"] = offsets
        if marked:
            sub.attrs["storegate_ragged"] = True


def write_flat(path: Path, n: int = N, ragged: bool = True, seed: int = 0) -> Path:
    with h5py.File(path, "w", track_order=True) as f:
        fill_dense(f, n, seed)
        if ragged:
            fill_ragged(f, n, seed + 1)
    return path


def write_phased(path: Path, sizes: tuple[int, int, int] = (30, 0, 7)) -> Path:
    """/train, /valid, /test groups; an empty phase keeps an empty group."""
    with h5py.File(path, "w", track_order=True) as f:
        for i, (ph, n) in enumerate(zip(PHASES, sizes, strict=True)):
            g = f.create_group(ph, track_order=True)
            if n:
                fill_dense(g, n, seed=10 + i)
                fill_ragged(g, n, seed=20 + i)
    return path


def vlen_rows(n: int, dtype: str = "float64", seed: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(int(m)).astype(dtype) for m in rng.integers(0, 5, n)]


def write_vlen(path: Path, rows: list[np.ndarray], name: str = "tracks") -> Path:
    with h5py.File(path, "w", track_order=True) as f:
        f["x"] = np.arange(len(rows), dtype="int32")
        ds = f.create_dataset(name, (len(rows),), dtype=h5py.vlen_dtype(rows[0].dtype))
        for i, r in enumerate(rows):
            ds[i] = r
    return path


def files_in(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


class Recorder:
    """A tqdm-like bar that records its updates."""

    instances: list[Recorder] = []

    def __init__(self, **kw: Any) -> None:
        self.kw = kw
        self.done = 0
        self.closed = False
        Recorder.instances.append(self)

    def update(self, n: int = 1) -> None:
        self.done += n

    def close(self) -> None:
        self.closed = True


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Force many blocks and chunks on every copy."""
    monkeypatch.setattr(hdf5_mod, "BLOCK_BYTES", 64)
    monkeypatch.setattr(hdf5_mod, "CHUNK_BYTES", 32)
    monkeypatch.setattr(hdf5_mod, "VLEN_BLOCK_ROWS", 3)


# ---------------------------------------------------------------------------------- round trips
def test_flat_round_trip(backend: str, tmp_path: Path) -> None:
    src = write_flat(tmp_path / "in.h5")
    sg = make_gate(backend, tmp_path)
    res = import_hdf5(src, sg, data_id="d")
    assert res.data_id == "d" and res.files == (str(src),)
    assert res.var_names == ["f16", "i8", "flag", "u64", "img", "c64", "f64", "hits", "ids"]
    assert res.sizes == {"train": N, "valid": 0, "test": 0} and res.skipped == 0
    by_name = {v.name: v for v in res.vars}
    assert by_name["img"].shape == (2, 2) and by_name["img"].dtype == np.dtype("float32")
    assert by_name["hits"].ragged and by_name["hits"].shape == (None, 3)
    assert by_name["hits"].field == "/hits"
    assert sg.get_var_names("train") == res.var_names
    out = export_hdf5(sg, tmp_path / "out.h5", phase="train")
    assert out.phases == ("train",) and out.sizes == {"train": N}
    assert h5_contents(src) == h5_contents(out.path)
    with h5py.File(out.path) as f:
        assert list(f) == res.var_names
        assert f.attrs["storegate_data_id"] == "d" and int(f.attrs["storegate_format"]) == 1
        assert bool(f["hits"].attrs["storegate_ragged"])


def test_phase_groups_round_trip(backend: str, tmp_path: Path) -> None:
    src = write_phased(tmp_path / "in.h5")
    sg = make_gate(backend, tmp_path)
    res = import_hdf5(src, sg, data_id="d")
    assert res.sizes == {"train": 30, "valid": 0, "test": 7}
    assert sg.get_var_names("valid") == []
    assert sg.get_data("f16", "test").dtype == np.dtype("float16")
    assert res.vars[0].field == "/train/f16"
    out = export_hdf5(sg, tmp_path / "out.h5")
    assert out.phases == PHASES and out.sizes == {"train": 30, "valid": 0, "test": 7}
    got = h5_contents(out.path)
    assert got == h5_contents(src)
    assert got["valid"] == "group"  # empty phases keep their group


def test_round_trip_after_reopen(tmp_path: Path) -> None:
    src = write_phased(tmp_path / "in.h5", sizes=(5, 4, 3))
    sg = make_gate("zarr", tmp_path)
    import_hdf5(src, sg, data_id="d")
    sg.close()
    again = StoreGate.open(str(tmp_path / "s.zarr"))
    out = export_hdf5(again, tmp_path / "out.h5")
    assert h5_contents(out.path) == h5_contents(src)


def test_vlen_round_trip(backend: str, tmp_path: Path) -> None:
    rows = vlen_rows(25, "float32")
    src = write_vlen(tmp_path / "in.h5", rows)
    sg = make_gate(backend, tmp_path)
    res = import_hdf5(src, sg, data_id="d")
    var = res.vars[1]
    assert (var.name, var.ragged, var.shape, var.dtype) == ("tracks", True, (None,),
                                                             np.dtype("float32"))
    got = sg.get_data("tracks", "train", ragged_as="list")
    assert len(got) == len(rows)
    for a, b in zip(got, rows, strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    out = export_hdf5(sg, tmp_path / "out.h5", phase="train")
    with h5py.File(out.path) as f:
        values, offsets = f["tracks/values"][:], f["tracks/offsets"][:]
        assert values.dtype == np.dtype("float32") and offsets.dtype == np.dtype("int64")
        np.testing.assert_array_equal(f["x"][:], np.arange(25, dtype="int32"))
    for i, r in enumerate(rows):
        np.testing.assert_array_equal(values[offsets[i]:offsets[i + 1]], r)
    # and the values/offsets file round-trips exactly from there on
    sg2 = make_gate(backend, tmp_path, store="s2")
    import_hdf5(out.path, sg2, data_id="d")
    again = export_hdf5(sg2, tmp_path / "again.h5", phase="train")
    assert h5_contents(again.path) == h5_contents(out.path)


def test_big_endian_becomes_native(backend: str, tmp_path: Path) -> None:
    path = tmp_path / "in.h5"
    with h5py.File(path, "w") as f:
        f["be"] = np.arange(6, dtype=">i4")
        g = f.create_group("rag")
        g["values"] = np.arange(5, dtype=">f8")
        g["offsets"] = np.array([0, 2, 2, 3, 3, 5, 5], dtype=">i8")
    sg = make_gate(backend, tmp_path)
    res = import_hdf5(path, sg, data_id="d")
    assert [(str(v.source_dtype), str(v.dtype)) for v in res.vars] == [
        (">i4", "int32"), (">f8", "float64")]
    assert sg.get_data("be").dtype == np.dtype("<i4")
    np.testing.assert_array_equal(sg.get_data("be"), np.arange(6))
    np.testing.assert_array_equal(sg.get_data("rag", ragged_as="raw").values, np.arange(5.0))


def test_unmarked_ragged_group_and_array_dtype(tmp_path: Path) -> None:
    path = tmp_path / "in.h5"
    with h5py.File(path, "w", track_order=True) as f:
        fill_ragged(f, 6, seed=1, marked=False)
        vec = f.create_dataset("vec", (6,), dtype=np.dtype(("f4", (3,))))  # HDF5 array type
        vec[:] = np.arange(18, dtype="f4").reshape(6, 3)
    sg = StoreGate("numpy")
    res = import_hdf5(path, sg, data_id="d")
    assert [(v.name, v.ragged, v.shape) for v in res.vars] == [
        ("hits", True, (None, 3)), ("ids", True, (None,)), ("vec", False, (3,))]
    np.testing.assert_array_equal(sg.get_data("vec"), np.arange(18, dtype="f4").reshape(6, 3))


def test_store_to_hdf5_to_store(backend: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    sg = make_gate(backend, tmp_path, data_id="jets")
    sg.add_data(("pt", "eta"), rng.standard_normal((50, 2)).astype("f4"), phase=(0.6, 0.2, 0.2))
    sg.add_data("label", rng.integers(0, 3, 50).astype("u1"), phase=(0.6, 0.2, 0.2))
    sg.add_data("mask", rng.integers(0, 2, (50, 4)).astype(bool), phase=(0.6, 0.2, 0.2))
    tracks = [rng.standard_normal((int(m), 2)) for m in rng.integers(0, 4, 50)]
    sg.add_data("tracks", tracks, phase=(0.6, 0.2, 0.2))
    sg.add_data("extra", np.arange(30, dtype="i2"), phase="train")
    sg.compile()
    before = data_id_snapshot(sg, "jets")
    out = export_hdf5(sg, tmp_path / "jets.h5")
    assert out.var_names == ("pt", "eta", "label", "mask", "tracks", "extra")
    assert out.data_id == "jets" and out.rows == 50
    other = make_gate(backend, tmp_path, store="other")
    res = import_hdf5(out.path, other)  # data_id from the file's storegate_data_id
    assert res.data_id == "jets" and other.data_id == "jets"
    assert data_id_snapshot(other, "jets") == before
    assert store_snapshot(sg)["current"] == "jets"


def test_export_does_not_change_current_data_id(tmp_path: Path) -> None:
    sg = StoreGate("numpy", data_id="a")
    sg.add_data("x", np.arange(3))
    sg.set_data_id("b")
    sg.add_data("y", np.arange(2))
    res = export_hdf5(sg, tmp_path / "a.h5", data_id="a", phase="train")
    assert sg.data_id == "b" and res.var_names == ("x",)


def test_export_var_selection_and_compression(tmp_path: Path) -> None:
    src = write_phased(tmp_path / "in.h5", sizes=(20, 5, 5))
    sg = StoreGate("numpy")
    import_hdf5(src, sg, data_id="d")
    for comp in ("gzip", "lzf"):
        out = export_hdf5(sg, tmp_path / f"{comp}.h5", var_names=["hits", "f16"],
                          compression=comp)
        assert out.var_names == ("hits", "f16")
        with h5py.File(out.path) as f:
            assert list(f["train"]) == ["hits", "f16"]
            assert f["train/f16"].compression == comp
            assert f["valid/hits/values"].compression == comp
        contents = h5_contents(out.path)
        full = h5_contents(src)
        for key, value in contents.items():
            assert full[key] == value


def test_phase_group_imported_with_phase(tmp_path: Path) -> None:
    src = write_phased(tmp_path / "in.h5", sizes=(10, 0, 4))
    sg = StoreGate("numpy")
    res = import_hdf5(src, sg, data_id="d", group="/test", phase="valid",
                      var_names={"i8": "small", "hits": "h"})
    assert res.var_names == ["small", "h"] and res.sizes == {"train": 0, "valid": 4, "test": 0}
    with h5py.File(src) as f:
        np.testing.assert_array_equal(sg.get_data("small", "valid"), f["test/i8"][:])


# ---------------------------------------------------------------------------------- phases
@pytest.mark.parametrize(
    ("phase", "sizes", "skipped"),
    [
        (None, (12, 0, 0), 0),
        ("test", (0, 0, 12), 0),
        ("val", (0, 12, 0), 0),
        ((0.5, 0.25, 0.25), (6, 3, 3), 0),
        ((4, 4, 4), (4, 4, 4), 0),
        (np.array(["train", "val", "test"] * 4), (4, 4, 4), 0),
        (np.array([0, 1, 2, 2] * 3), (3, 3, 6), 0),
        ({"idx_train": [0, 5, 7], "idx_val": np.arange(1, 3), "idx_test": [11]}, (3, 2, 1), 6),
    ],
)
def test_phase_specs(tmp_path: Path, phase: Any, sizes: tuple[int, int, int],
                     skipped: int) -> None:
    src = write_flat(tmp_path / "in.h5", n=12)
    sg = StoreGate("numpy")
    res = import_hdf5(src, sg, data_id="d", phase=phase)
    assert res.sizes == dict(zip(PHASES, sizes, strict=True)) and res.skipped == skipped
    with h5py.File(src) as f:
        i8 = f["i8"][:]
        offsets, values = f["hits/offsets"][:], f["hits/values"][:]
    if isinstance(phase, dict):
        rows = np.array([0, 5, 7])
        np.testing.assert_array_equal(sg.get_data("i8", "train"), i8[rows])
        got = sg.get_data("hits", "train", ragged_as="list")
        for r, g in zip(rows, got, strict=True):
            np.testing.assert_array_equal(g, values[offsets[r]:offsets[r + 1]])
    else:
        all_rows = np.concatenate([sg.get_data("i8", ph) for ph in PHASES if sizes[
            PHASES.index(ph)]])
        assert sorted(all_rows.tolist()) == sorted(i8.tolist())


def test_phase_spec_selecting_nothing(tmp_path: Path) -> None:
    src = write_flat(tmp_path / "in.h5", n=4)
    sg = StoreGate("numpy", data_id="old")
    with pytest.raises(InvalidPhaseError, match="selects none"):
        import_hdf5(src, sg, data_id="d", phase={"train": []})
    assert sg.get_data_ids() == ["old"]


def test_bad_phase_spec(tmp_path: Path) -> None:
    src = write_flat(tmp_path / "in.h5", n=4)
    sg = StoreGate("numpy", data_id="old")
    with pytest.raises(InvalidPhaseError):
        import_hdf5(src, sg, data_id="d", phase=(1, 1, 1))
    with pytest.raises(InvalidPhaseError):
        import_hdf5(src, sg, data_id="d", phase="all")
    assert sg.get_data_ids() == ["old"]


# ---------------------------------------------------------------------------------- arguments
def test_var_names_select_and_rename(tmp_path: Path) -> None:
    path = tmp_path / "in.h5"
    with h5py.File(path, "w", track_order=True) as f:
        f["a"] = np.arange(5)
        f["b"] = np.arange(5.0)
        f["names"] = np.array([b"x"] * 5)  # strings: refused only when selected
        f["ext"] = h5py.ExternalLink("elsewhere.h5", "/x")  # never followed if not selected
        f.create_group("meta")
    sg = StoreGate("numpy")
    res = import_hdf5(path, sg, data_id="d", var_names=["b", "a"])
    assert res.var_names == ["b", "a"] and sg.get_var_names() == ["b", "a"]
    res = import_hdf5(path, sg, data_id="e", var_names={"a": "alpha"})
    assert res.var_names == ["alpha"] and res.vars[0].field == "/a"
    res = import_hdf5(path, sg, data_id="f", var_names="a")
    assert res.var_names == ["a"]
    with pytest.raises(InvalidArgumentError, match="'nope'"):
        import_hdf5(path, sg, data_id="g", var_names=["a", "nope"])
    with pytest.raises(InvalidArgumentError):
        import_hdf5(path, sg, data_id="g", var_names=["a", "a"])
    with pytest.raises(InvalidArgumentError):
        import_hdf5(path, sg, data_id="g", var_names=3)  # type: ignore[arg-type]
    with pytest.raises(InvalidNameError):
        import_hdf5(path, sg, data_id="g", var_names={"a": "same", "b": "same"})
    with pytest.raises(InvalidNameError):
        import_hdf5(path, sg, data_id="g", var_names={"a": "bad/name"})
    assert sg.get_data_ids() == ["d", "e", "f"]


def test_dtype_cast(tmp_path: Path) -> None:
    src = write_flat(tmp_path / "in.h5", n=8)
    sg = StoreGate("numpy")
    res = import_hdf5(src, sg, data_id="d", dtype="float32")
    kinds = {v.name: (str(v.source_dtype), str(v.dtype)) for v in res.vars}
    assert kinds["f16"] == ("float16", "float32") and kinds["f64"] == ("float64", "float32")
    assert kinds["i8"] == ("int8", "int8") and kinds["c64"] == ("complex64", "complex64")
    assert sg.get_data("f64").dtype == np.dtype("float32")
    assert sg.get_data("hits", ragged_as="raw").dtype == np.dtype("float32")
    assert sg.get_data("flag").dtype == np.dtype(bool)
    with pytest.raises(InvalidArgumentError):
        import_hdf5(src, sg, data_id="e", dtype="int32")


def test_existing_var_refused(tmp_path: Path) -> None:
    src = write_flat(tmp_path / "in.h5", n=4, ragged=False)
    sg = StoreGate("numpy", data_id="d")
    sg.add_data("i8", np.zeros(4, dtype="int8"))
    before = store_snapshot(sg)
    with pytest.raises(VarExistsError):
        import_hdf5(src, sg)
    assert store_snapshot(sg) == before


def test_backend_without_ragged_support(tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    src = write_flat(tmp_path / "in.h5", n=5)
    sg = StoreGate("numpy", data_id="old")
    monkeypatch.setattr(sg.db, "supports_ragged", False)
    with pytest.raises(UnsupportedOperationError, match="hits, ids"):
        import_hdf5(src, sg, data_id="d")
    assert sg.get_data_ids() == ["old"]
    res = import_hdf5(src, sg, data_id="d", var_names=["i8"])
    assert res.var_names == ["i8"]


def test_no_data_id(tmp_path: Path) -> None:
    path = tmp_path / "plain.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.arange(3)
    with pytest.raises(InvalidArgumentError, match="data_id"):
        import_hdf5(path, StoreGate("numpy"))
    with pytest.raises(InvalidArgumentError, match="StoreGate"):
        import_hdf5(path, object())


def test_progress(tmp_path: Path) -> None:
    src = write_flat(tmp_path / "in.h5", n=10)
    sg = StoreGate("numpy")
    Recorder.instances.clear()
    import_hdf5(src, sg, data_id="d", progress=Recorder)
    export_hdf5(sg, tmp_path / "out.h5", progress=Recorder)
    imp, exp = Recorder.instances
    assert imp.closed and imp.done == imp.kw["total"] == 9 * 10  # rows summed over vars
    assert exp.closed and exp.done == exp.kw["total"] == 9 * 10
    assert imp.kw["desc"] == "import in.h5" and exp.kw["unit"] == "rows"


def test_soft_links_inside_the_file(tmp_path: Path) -> None:
    path = tmp_path / "in.h5"
    with h5py.File(path, "w", track_order=True) as f:
        g = f.create_group("data")
        g["x"] = np.arange(4)
        f["alias"] = h5py.SoftLink("/data/x")
        f["rel"] = h5py.SoftLink("data/x")
        f["view"] = h5py.SoftLink("/data")
    sg = StoreGate("numpy")
    res = import_hdf5(path, sg, data_id="d", var_names=["alias", "rel"])
    assert res.var_names == ["alias", "rel"]
    np.testing.assert_array_equal(sg.get_data("rel"), np.arange(4))
    res = import_hdf5(path, sg, data_id="e", group="view")
    assert res.var_names == ["x"]


# ---------------------------------------------------------------------------------- refusals
def _external(f: Any, tmp: Path) -> None:
    with h5py.File(tmp / "other.h5", "w") as o:
        o["x"] = np.arange(N)
    f["ext"] = h5py.ExternalLink(str(tmp / "other.h5"), "/x")


def _virtual(f: Any, tmp: Path) -> None:
    with h5py.File(tmp / "other.h5", "w") as o:
        o["x"] = np.arange(N)
    layout = h5py.VirtualLayout(shape=(N,), dtype="i8")
    layout[:] = h5py.VirtualSource(str(tmp / "other.h5"), "x", shape=(N,))
    f.create_virtual_dataset("virt", layout)


def _external_storage(f: Any, tmp: Path) -> None:
    np.arange(N, dtype="f8").tofile(tmp / "raw.bin")
    f.create_dataset("raw", shape=(N,), dtype="f8", external=[(str(tmp / "raw.bin"), 0, 8 * N)])


def _soft_to_external(f: Any, tmp: Path) -> None:
    _external(f, tmp)
    f["via"] = h5py.SoftLink("/ext")


def _enum(f: Any, tmp: Path) -> None:
    f.create_dataset("kind", data=np.zeros(N, dtype="i1"),
                     dtype=h5py.enum_dtype({"a": 0, "b": 1}, basetype="i1"))


def _ragged_offsets(offsets: list[int], n_values: int = 5) -> Callable[[Any, Path], None]:
    def make(f: Any, tmp: Path) -> None:
        g = f.create_group("rag")
        g["values"] = np.arange(n_values, dtype="f4")
        g["offsets"] = np.array(offsets)
    return make


def _with_phase_group(f: Any, tmp: Path) -> None:
    f.create_group("train")["y"] = np.arange(N)


BAD: dict[str, tuple[Callable[[Any, Path], None], type[Exception], str, dict[str, Any]]] = {
    "external link": (_external, SourceFormatError, "external link", {}),
    "soft link to external": (_soft_to_external, SourceFormatError, "external link",
                              {"var_names": ["x0", "via"]}),
    "virtual": (_virtual, SourceFormatError, "virtual dataset", {}),
    "external storage": (_external_storage, SourceFormatError, "external files", {}),
    "dangling soft link": (lambda f, t: f.__setitem__("dang", h5py.SoftLink("/nowhere")),
                           SourceFormatError, "dangling", {}),
    "fixed strings": (lambda f, t: f.__setitem__("s", np.array([b"ab"] * N)),
                      UnsupportedFieldError, "strings", {}),
    "vlen strings": (lambda f, t: f.create_dataset("s", data=["a"] * N,
                                                   dtype=h5py.string_dtype()),
                     UnsupportedFieldError, "strings", {}),
    "compound": (lambda f, t: f.__setitem__("rec", np.zeros(N, dtype=[("a", "f4"),
                                                                      ("b", "i4")])),
                 UnsupportedFieldError, "compound", {}),
    "enum": (_enum, UnsupportedFieldError, "enum", {}),
    "reference": (lambda f, t: f.create_dataset("ref", (N,), dtype=h5py.ref_dtype),
                  UnsupportedFieldError, "reference", {}),
    "opaque": (lambda f, t: f.__setitem__("op", np.zeros(N, dtype="V4")),
               UnsupportedFieldError, "opaque", {}),
    "scalar": (lambda f, t: f.__setitem__("sc", 3.0), UnsupportedFieldError, "scalar", {}),
    "2-D vlen": (lambda f, t: f.create_dataset("vl", (N, 2), dtype=h5py.vlen_dtype("f4")),
                 UnsupportedFieldError, "variable-length", {}),
    "length": (lambda f, t: f.__setitem__("short", np.arange(N - 1)),
               InconsistentLengthError, "'/short' (39 rows)", {}),
    "subgroup": (lambda f, t: f.create_group("meta").create_dataset("a", data=np.arange(3)),
                 UnsupportedFieldError, "'/meta' is a group", {}),
    "offsets start": (_ragged_offsets([1] + [5] * N), SourceFormatError, "invalid offsets", {}),
    "offsets decrease": (_ragged_offsets([0, 3, 2] + [5] * (N - 1)), SourceFormatError,
                         "invalid offsets", {}),
    "offsets end": (_ragged_offsets([0] * (N + 1)), SourceFormatError, "invalid offsets", {}),
    "offsets 2-D": (_ragged_offsets([[0, 5]] * (N + 1)), SourceFormatError, "1-D integer", {}),
    "offsets float": (_ragged_offsets([0.0] * N + [5.0]), SourceFormatError, "1-D integer", {}),
    "phase with phase groups": (_with_phase_group, InvalidArgumentError, "phase=None",
                                {"phase": "train"}),
    "valid and val": (lambda f, t: (f.create_group("valid"), f.create_group("val")),
                      SourceFormatError, "two groups for phase 'valid'", {}),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_refused_before_writing(backend: str, tmp_path: Path, case: str) -> None:
    make, error, text, kwargs = BAD[case]
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w", track_order=True) as f:
        f["x0"] = np.arange(N)  # a good dataset first: nothing may be written for it
        make(f, tmp_path)
    sg = make_gate(backend, tmp_path, data_id="old")
    sg.add_data("keep", np.arange(3))
    sg.compile()
    before = store_snapshot(sg)
    with pytest.raises(error) as info:
        import_hdf5(path, sg, data_id="new", **kwargs)
    message = str(info.value)
    assert str(path) in message and text in message, message
    if case == "subgroup":
        assert "group=" in message and "var_names=" in message
    if case == "length":
        assert "'/x0' (40 rows)" in message
    assert store_snapshot(sg) == before
    with pytest.raises(error):  # into the existing data_id: same
        import_hdf5(path, sg, **kwargs)
    assert store_snapshot(sg) == before


def test_marked_ragged_group_with_extra_member(tmp_path: Path) -> None:
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        fill_ragged(f, 4, seed=0)
        f["hits/extra"] = np.arange(3)
    with pytest.raises(SourceFormatError, match="marked as a ragged var"):
        import_hdf5(path, StoreGate("numpy"), data_id="d")


def test_bad_member_of_phase_group(tmp_path: Path) -> None:
    path = write_phased(tmp_path / "in.h5", sizes=(5, 3, 2))
    with h5py.File(path, "a") as f:
        f["test/s"] = np.array([b"a", b"b"])
    sg = StoreGate("numpy", data_id="old")
    with pytest.raises(UnsupportedFieldError, match="'/test/s'"):
        import_hdf5(path, sg, data_id="d")
    assert sg.get_data_ids() == ["old"]
    res = import_hdf5(path, sg, data_id="d", var_names=["i8", "hits"])  # select around it
    assert res.sizes == {"train": 5, "valid": 3, "test": 2}


def test_phases_of_one_var_must_agree(tmp_path: Path) -> None:
    path = tmp_path / "in.h5"
    with h5py.File(path, "w") as f:
        f["train/x"] = np.zeros(3, dtype="f4")
        f["test/x"] = np.zeros(2, dtype="f8")
    with pytest.raises(SourceFormatError, match="must agree"):
        import_hdf5(path, StoreGate("numpy"), data_id="d")


def test_other_members_beside_phase_groups_are_ignored(tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    path = write_phased(tmp_path / "in.h5", sizes=(3, 2, 1))
    with h5py.File(path, "a") as f:
        f["notes"] = np.array([b"x"])
    sg = StoreGate("numpy")
    with caplog.at_level("WARNING", logger="storegate.convert.hdf5"):
        res = import_hdf5(path, sg, data_id="d")
    assert res.sizes == {"train": 3, "valid": 2, "test": 1}
    assert "notes" in caplog.text


@pytest.mark.parametrize("make", ["text", "truncated", "directory", "empty"])
def test_not_hdf5(tmp_path: Path, make: str) -> None:
    path = tmp_path / "bad.h5"
    if make == "text":
        path.write_text("not an hdf5 file\n" * 100)
    elif make == "truncated":
        write_flat(path, n=5000)
        size = path.stat().st_size
        with open(path, "r+b") as fh:
            fh.truncate(size // 2)
    elif make == "directory":
        path.mkdir()
    else:
        path.write_bytes(b"")
    sg = StoreGate("numpy", data_id="old")
    with pytest.raises(SourceFormatError) as info:
        import_hdf5(path, sg, data_id="d")
    assert str(path) in str(info.value) and info.value.path == str(path)
    assert sg.get_data_ids() == ["old"]


def test_missing_file_and_group(tmp_path: Path) -> None:
    with pytest.raises(SourceNotFoundError) as info:
        import_hdf5(tmp_path / "nope.h5", StoreGate("numpy"), data_id="d")
    assert isinstance(info.value, FileNotFoundError) and "nope.h5" in str(info.value)
    src = write_flat(tmp_path / "in.h5", n=3)
    with pytest.raises(SourceFormatError, match="no group '/missing'"):
        import_hdf5(src, StoreGate("numpy"), data_id="d", group="/missing")
    with pytest.raises(SourceFormatError, match="is a dataset"):
        import_hdf5(src, StoreGate("numpy"), data_id="d", group="/i8")
    with pytest.raises(SourceFormatError, match="external link"):
        with h5py.File(src, "a") as f:
            f["elsewhere"] = h5py.ExternalLink("other.h5", "/")
        import_hdf5(src, StoreGate("numpy"), data_id="d", group="/elsewhere/g")


def test_nothing_to_import(tmp_path: Path) -> None:
    path = tmp_path / "empty.h5"
    with h5py.File(path, "w") as f:
        f.create_group("g")
        f["h/x"] = np.zeros((0, 3))
    with pytest.raises(SourceFormatError, match="no datasets"):
        import_hdf5(path, StoreGate("numpy"), data_id="d", group="g")
    with pytest.raises(SourceFormatError, match="no rows"):
        import_hdf5(path, StoreGate("numpy"), data_id="d", group="h")


def test_h5py_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = write_flat(tmp_path / "in.h5", n=3)
    sg = StoreGate("numpy", data_id="d")
    sg.add_data("x", np.arange(3))
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(MissingDependencyError, match=r"storegate\[hdf5\]"):
        import_hdf5(src, sg)
    with pytest.raises(MissingDependencyError, match=r"storegate\[hdf5\]"):
        export_hdf5(sg, tmp_path / "out.h5")
    assert not (tmp_path / "out.h5").exists()


def test_module_import_does_not_import_h5py() -> None:
    code = ("import sys, storegate.convert.hdf5; "
            "assert 'h5py' not in sys.modules, 'h5py imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------------- streaming
def test_streaming_blocks_give_the_same_result(backend: str, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    src = write_phased(tmp_path / "in.h5", sizes=(37, 11, 5))
    vl = write_vlen(tmp_path / "vl.h5", vlen_rows(17))
    whole = make_gate(backend, tmp_path, store="whole")
    import_hdf5(src, whole, data_id="d")
    import_hdf5(vl, whole, data_id="v", phase=(0.5, 0.25, 0.25))
    expected = store_snapshot(whole)
    expected.pop("current")
    export_hdf5(whole, tmp_path / "whole.h5", data_id="d")

    monkeypatch.setattr(hdf5_mod, "BLOCK_BYTES", 64)
    monkeypatch.setattr(hdf5_mod, "CHUNK_BYTES", 32)
    monkeypatch.setattr(hdf5_mod, "VLEN_BLOCK_ROWS", 3)
    sg = make_gate(backend, tmp_path, store="blocks")
    calls: list[int] = []
    real_add = sg.add_data

    def spy(*args: Any, **kwargs: Any) -> None:
        calls.append(1)
        real_add(*args, **kwargs)

    monkeypatch.setattr(sg, "add_data", spy)
    import_hdf5(src, sg, data_id="d")
    import_hdf5(vl, sg, data_id="v", phase=(0.5, 0.25, 0.25))
    assert len(calls) > 100  # many blocks per var
    got = store_snapshot(sg)
    got.pop("current")
    assert got == expected

    reads: list[int] = []
    real_read = sg.db.read

    def read_spy(*args: Any, **kwargs: Any) -> Any:
        reads.append(1)
        return real_read(*args, **kwargs)

    monkeypatch.setattr(sg.db, "read", read_spy)
    out = export_hdf5(sg, tmp_path / "blocks.h5", data_id="d")
    assert len(reads) > 100
    assert h5_contents(out.path) == h5_contents(tmp_path / "whole.h5") == h5_contents(src)
    with h5py.File(out.path) as f:
        assert f["train/f16"].chunks[0] < 37


def test_block_rows_follow_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "in.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.arange(1000, dtype="f8"), chunks=(30,))
        f.create_dataset("y", data=np.arange(1000, dtype="f8"), chunks=(300,))
        f.create_dataset("z", data=np.arange(1000, dtype="f8"), chunks=(500,))
    monkeypatch.setattr(hdf5_mod, "BLOCK_BYTES", 8 * 100)
    sizes: dict[str, list[int]] = {"x": [], "y": [], "z": []}
    sg = StoreGate("numpy")
    real_add = sg.add_data

    def spy(var: Any, data: Any, phase: Any = "train") -> None:
        sizes[var].append(len(data))
        real_add(var, data, phase=phase)

    monkeypatch.setattr(sg, "add_data", spy)
    import_hdf5(path, sg, data_id="d")
    assert sizes["x"][:3] == [90, 90, 90] and sum(sizes["x"]) == 1000  # whole chunks
    assert sizes["y"] == [300, 300, 300, 100]  # a chunk of up to 4 blocks: read whole
    assert sizes["z"][:2] == [100, 100]  # bigger chunks: blocks
    for var in "xyz":
        np.testing.assert_array_equal(sg.get_data(var), np.arange(1000, dtype="f8"))


# ---------------------------------------------------------------------------------- failures
@pytest.fixture
def gate_with_data(backend: str, tmp_path: Path) -> Iterator[StoreGate]:
    sg = make_gate(backend, tmp_path, data_id="old")
    sg.add_data("keep", np.arange(40))
    sg.compile()
    yield sg


@pytest.mark.parametrize("into", ["new", "old"])
def test_import_failing_mid_copy_leaves_nothing(gate_with_data: StoreGate, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                small_blocks: None, into: str) -> None:
    sg = gate_with_data
    src = write_flat(tmp_path / "in.h5", n=N)
    before = store_snapshot(sg)
    real_add = sg.add_data
    calls: list[int] = []

    def flaky(*args: Any, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) > 3:
            raise OSError("disk full")
        real_add(*args, **kwargs)

    monkeypatch.setattr(sg, "add_data", flaky)
    with pytest.raises(OSError, match="disk full"):
        import_hdf5(src, sg, data_id=into, var_names={"i8": "i8x", "hits": "hitsx"})
    assert len(calls) == 4
    if into == "old":
        # the failed import marked "old" as not compiled; its data are intact and it compiles
        sg.compile()
    assert store_snapshot(sg) == before


def test_damaged_chunk_found_mid_copy(gate_with_data: StoreGate, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    sg = gate_with_data
    path = tmp_path / "damaged.h5"
    rng = np.random.default_rng(0)
    with h5py.File(path, "w", track_order=True) as f:
        f["good"] = np.arange(4000, dtype="f8")
        f.create_dataset("x", data=rng.standard_normal(4000), chunks=(100,), compression="gzip")
        info = f["x"].id.get_chunk_info(30)
    with open(path, "r+b") as fh:
        fh.seek(info.byte_offset + 10)
        fh.write(b"\0" * 200)
    monkeypatch.setattr(hdf5_mod, "BLOCK_BYTES", 800 * 8)
    before = store_snapshot(sg)
    with pytest.raises(SourceFormatError) as err:
        import_hdf5(path, sg, data_id="new")
    assert str(path) in str(err.value) and "'/x'" in str(err.value)
    assert store_snapshot(sg) == before


def test_export_failing_mid_copy_leaves_no_file(backend: str, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                small_blocks: None) -> None:
    sg = make_gate(backend, tmp_path, data_id="d")
    src = write_flat(tmp_path / "in.h5", n=N)
    import_hdf5(src, sg)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    real_read = sg.db.read
    calls: list[int] = []

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) > 2:
            raise KeyboardInterrupt
        return real_read(*args, **kwargs)

    monkeypatch.setattr(sg.db, "read", flaky)
    with pytest.raises(KeyboardInterrupt):
        export_hdf5(sg, out_dir / "out.h5")
    assert files_in(out_dir) == []
    # an existing destination survives a failed overwrite
    (out_dir / "out.h5").write_bytes(b"old")
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        export_hdf5(sg, out_dir / "out.h5", overwrite=True)
    assert files_in(out_dir) == ["out.h5"] and (out_dir / "out.h5").read_bytes() == b"old"


def test_export_destination_exists(tmp_path: Path) -> None:
    sg = StoreGate("numpy", data_id="d")
    sg.add_data("x", np.arange(5, dtype="i2"))
    dst = tmp_path / "out.h5"
    dst.write_bytes(b"precious")
    with pytest.raises(DestinationExistsError) as info:
        export_hdf5(sg, dst)
    assert isinstance(info.value, FileExistsError) and str(dst) in str(info.value)
    assert dst.read_bytes() == b"precious" and files_in(tmp_path) == ["out.h5"]
    res = export_hdf5(sg, dst, overwrite=True)
    assert res.path == str(dst) and files_in(tmp_path) == ["out.h5"]
    with h5py.File(dst) as f:
        np.testing.assert_array_equal(f["train/x"][:], np.arange(5, dtype="i2"))


def test_export_bad_arguments(tmp_path: Path) -> None:
    sg = StoreGate("numpy", data_id="d")
    sg.add_data("x", np.arange(5))
    dst = tmp_path / "out.h5"
    with pytest.raises(DataIdNotFoundError):
        export_hdf5(sg, dst, data_id="nope")
    with pytest.raises(VarNotFoundError, match="'y'"):
        export_hdf5(sg, dst, var_names=["x", "y"])
    with pytest.raises(VarNotFoundError):
        export_hdf5(sg, dst, phase="test", var_names=["x"])
    with pytest.raises(InvalidArgumentError):
        export_hdf5(sg, dst, compression="zstd")
    with pytest.raises(UnknownPhaseError):
        export_hdf5(sg, dst, phase="training")
    with pytest.raises(InvalidArgumentError):
        export_hdf5(sg, dst, var_names=["x", "x"])
    with pytest.raises(InvalidArgumentError):
        export_hdf5(object(), dst)
    with pytest.raises(InvalidArgumentError, match="data_id"):
        export_hdf5(StoreGate("numpy"), dst)
    assert files_in(tmp_path) == []


def test_export_inconsistent_phase(tmp_path: Path) -> None:
    sg = StoreGate("numpy", data_id="d")
    sg.add_data("x", np.arange(5))
    sg.add_data("y", np.arange(4))
    with pytest.raises(InconsistentLengthError, match="'x' has 5 rows but 'y' has 4"):
        export_hdf5(sg, tmp_path / "out.h5")
    res = export_hdf5(sg, tmp_path / "out.h5", var_names=["y"])
    assert res.sizes == {"train": 4, "valid": 0, "test": 0}
    assert files_in(tmp_path) == ["out.h5"]


def test_export_empty_rows(tmp_path: Path) -> None:
    """Vars whose rows hold no elements (shape (N, 0), ragged rows all empty) survive."""
    sg = StoreGate("numpy", data_id="d")
    sg.add_data("nothing", np.zeros((3, 0), dtype="f4"))
    sg.add_data("empty_rows", RaggedArray(np.zeros((0, 2), dtype="i4"),
                                          np.zeros(4, dtype=np.int64)))
    out = export_hdf5(sg, tmp_path / "out.h5", phase="train")
    other = StoreGate("numpy")
    import_hdf5(out.path, other, data_id="d")
    assert data_id_snapshot(other, "d") == data_id_snapshot(sg, "d")
