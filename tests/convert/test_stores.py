"""Copying data_ids between stores (``storegate.convert.copy_store``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from storegate import StoreGate
from storegate.convert import copy_store, stores
from storegate.errors import (
    DataIdNotFoundError,
    InconsistentLengthError,
    InvalidArgumentError,
    StoregateError,
    VarExistsError,
)
from storegate.phases import PHASES
from storegate.ragged import RaggedArray

zarr = pytest.importorskip("zarr")


# ---------------------------------------------------------------------------------- helpers
def make_gate(backend: str, tmp_path: Path, name: str = "dst",
              data_id: str | None = None) -> StoreGate:
    if backend == "numpy":
        return StoreGate("numpy", data_id=data_id)
    suffix = ".parquet" if backend == "parquet" else ".zarr"
    return StoreGate(backend, {"output_dir": str(tmp_path / f"{name}{suffix}")},
                     data_id=data_id)


def assert_same(got: Any, want: Any) -> None:
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def read_all(sg: StoreGate, data_id: str) -> dict[str, dict[str, Any]]:
    """Every var of every phase of ``data_id``: arrays, ragged vars as lists of rows."""
    db = sg.db
    out: dict[str, dict[str, Any]] = {}
    for ph in PHASES:
        cols: dict[str, Any] = {}
        for v in db.var_names(data_id, ph):
            info = db.info(data_id, ph, v)
            data = db.read(data_id, ph, v, slice(0, info.length, 1))
            cols[v] = data.to_list() if isinstance(data, RaggedArray) else data
        out[ph] = cols
    return out


def assert_stores_equal(got: StoreGate, want: StoreGate, data_ids: list[str],
                        cast: str | None = None) -> None:
    for did in data_ids:
        a, b = read_all(want, did), read_all(got, did)
        for ph in PHASES:
            assert list(b[ph]) == list(a[ph]), (did, ph)
            for v, value in a[ph].items():
                if isinstance(value, list):
                    assert len(b[ph][v]) == len(value)
                    for g, w in zip(b[ph][v], value, strict=True):
                        assert_same(g, w.astype(cast) if cast and w.dtype.kind == "f" else w)
                else:
                    want_v = value.astype(cast) if cast and value.dtype.kind == "f" else value
                    assert_same(b[ph][v], want_v)
        got.set_data_id(did)
        want.set_data_id(did)
        assert got.get_metadata()["total_events"] == want.get_metadata()["total_events"]


def ragged(n: int, k: tuple[int, ...], dtype: str, seed: int) -> RaggedArray:
    rng = np.random.default_rng(seed)
    rows = [rng.standard_normal((int(rng.integers(0, 5)), *k)).astype(dtype) for _ in range(n)]
    return RaggedArray.from_list(rows)


def fill(sg: StoreGate) -> None:
    """Two data_ids: dense and ragged vars of several dtypes; one with train only."""
    rng = np.random.default_rng(1)
    sg.set_data_id("jets")
    sg.add_data("pt", rng.standard_normal(20).astype("f4"), phase=(12, 4, 4))
    sg.add_data("img", rng.integers(0, 9, (20, 2, 3)).astype("u1"), phase=(12, 4, 4))
    sg.add_data("trk", ragged(20, (3,), "f8", 2), phase=(12, 4, 4))
    sg.add_data("hits", ragged(20, (), "i8", 3), phase=(12, 4, 4))
    sg.add_data("label", rng.integers(0, 2, 20).astype(bool), phase=(12, 4, 4))
    sg.compile()
    attrs = sg.db.get_attrs("jets")
    sg.db.set_attrs("jets", {**attrs, "origin": {"run": 7, "tags": ["a", "b"]}})
    sg.set_data_id("only_train")
    sg.add_data("x", np.arange(6, dtype="f2"))
    sg.add_data("r", ragged(6, (2,), "f4", 4))
    sg.compile()


@pytest.fixture(params=["numpy", "zarr"])
def src(request: pytest.FixtureRequest, tmp_path: Path) -> StoreGate:
    sg = make_gate(str(request.param), tmp_path, "src")
    fill(sg)
    return sg


# ---------------------------------------------------------------------------------- copies
@pytest.mark.parametrize("dst_backend", ["numpy", "zarr", "parquet"])
def test_copy_everything(src: StoreGate, tmp_path: Path, dst_backend: str) -> None:
    if dst_backend == "parquet":
        pytest.importorskip("pyarrow")
    dst = make_gate(dst_backend, tmp_path)
    res = copy_store(src, dst)
    assert [r.data_id for r in res] == ["jets", "only_train"]
    assert res[0].var_names == ["pt", "img", "trk", "hits", "label"]
    assert [(v.ragged, v.shape) for v in res[0].vars] == [
        (False, ()), (False, (2, 3)), (True, (None, 3)), (True, (None,)), (False, ())]
    assert res[0].sizes == {"train": 12, "valid": 4, "test": 4}
    assert res[1].sizes == {"train": 6, "valid": 0, "test": 0}
    assert dst.get_data_ids() == ["jets", "only_train"]
    assert_stores_equal(dst, src, ["jets", "only_train"])
    assert dst.db.get_attrs("jets")["origin"] == {"run": 7, "tags": ["a", "b"]}
    dst.set_data_id("only_train")
    assert dst.get_var_names("valid") == [] and dst.get_var_names("test") == []
    assert dst.get_metadata()["compiled"]


def test_numpy_to_zarr_survives_reopening(tmp_path: Path) -> None:
    src = StoreGate("numpy")
    fill(src)
    dst = make_gate("zarr", tmp_path)
    copy_store(src, dst)
    dst.close()
    again = StoreGate.open(str(tmp_path / "dst.zarr"))
    assert_stores_equal(again, src, ["jets", "only_train"])
    again.set_data_id("jets")
    assert again.get_metadata()["compiled"]  # compile state persisted by the copy


def test_zarr_to_parquet(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    src = make_gate("zarr", tmp_path, "src")
    fill(src)
    src.close()
    src = StoreGate.open(str(tmp_path / "src.zarr"))
    dst = make_gate("parquet", tmp_path)
    copy_store(src, dst, ["jets"])
    dst.close()
    again = StoreGate.open(str(tmp_path / "dst.parquet"))
    assert again.backend == "parquet"
    assert again.get_data_ids() == ["jets"]
    assert_stores_equal(again, src, ["jets"])


def test_copy_in_many_blocks(src: StoreGate, tmp_path: Path,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stores, "BLOCK_BYTES", 1)
    adds: list[int] = []
    original = StoreGate.add_data

    def spy(self: StoreGate, var: Any, data: Any, *args: Any, **kw: Any) -> Any:
        adds.append(len(data))
        return original(self, var, data, *args, **kw)

    dst = make_gate("zarr", tmp_path)
    monkeypatch.setattr(StoreGate, "add_data", spy)
    copy_store(src, dst)
    monkeypatch.undo()
    assert max(adds) == 1 and len(adds) == 5 * 20 + 2 * 6
    assert_stores_equal(dst, src, ["jets", "only_train"])


def test_selected_data_ids_and_progress(src: StoreGate, tmp_path: Path) -> None:
    class Bar:
        made: list[Bar] = []

        def __init__(self, **kw: Any) -> None:
            self.kw, self.done = kw, 0
            Bar.made.append(self)

        def update(self, n: int = 1) -> None:
            self.done += n

        def close(self) -> None:
            pass

    dst = make_gate("numpy", tmp_path)
    res = copy_store(src, dst, ["only_train"], progress=Bar)
    assert [r.data_id for r in res] == ["only_train"]
    assert dst.get_data_ids() == ["only_train"]
    (bar,) = Bar.made
    assert bar.kw["unit"] == "B" and bar.done == bar.kw["total"] > 0


def test_dtype_cast(src: StoreGate, tmp_path: Path) -> None:
    dst = make_gate("zarr", tmp_path)
    res = copy_store(src, dst, dtype="float32")
    dtypes = {v.name: (str(v.dtype), str(v.source_dtype)) for v in res[0].vars}
    assert dtypes == {"pt": ("float32", "float32"), "img": ("uint8", "uint8"),
                      "trk": ("float32", "float64"), "hits": ("int64", "int64"),
                      "label": ("bool", "bool")}
    assert {v.name: str(v.dtype) for v in res[1].vars} == {"x": "float32", "r": "float32"}
    assert_stores_equal(dst, src, ["jets", "only_train"], cast="float32")
    with pytest.raises(InvalidArgumentError, match="floating-point"):
        copy_store(src, make_gate("numpy", tmp_path), dtype="int8")


def test_empty_vars_are_kept(tmp_path: Path) -> None:
    """A var with no rows in a phase (multiml stores may have them) is copied as such."""
    src = StoreGate("numpy", data_id="e")
    src.add_data("a", np.arange(4.0), phase="train")
    src.add_data("r", ragged(4, (2,), "f4", 0), phase="train")
    src.db.append("e", "valid", "a", np.zeros(0))
    src.db.append("e", "valid", "r", RaggedArray(np.zeros((0, 2), "f4"), np.zeros(1, "i8")))
    src.compile()
    for backend in ("numpy", "zarr"):
        dst = make_gate(backend, tmp_path, f"e_{backend}")
        res = copy_store(src, dst)
        assert res[0].sizes == {"train": 4, "valid": 0, "test": 0}
        dst.set_data_id("e")
        assert dst.get_var_names("valid") == ["a", "r"]
        assert dst.get_var_shapes("r", "valid") == (None, 2)
        assert dst.get_metadata()["valid_phases"] == src.get_metadata()["valid_phases"]
        assert_stores_equal(dst, src, ["e"])


def test_existing_vars_are_refused(src: StoreGate, tmp_path: Path) -> None:
    dst = make_gate("zarr", tmp_path, data_id="jets")
    dst.add_data("trk", RaggedArray.from_list([np.zeros((1, 3))] * 12))
    dst.compile()
    before = read_all(dst, "jets")
    with pytest.raises(VarExistsError, match="'trk'"):
        copy_store(src, dst, ["jets"])
    after = read_all(dst, "jets")
    assert list(after["train"]) == ["trk"] and list(before["train"]) == ["trk"]
    assert dst.get_data_ids() == ["jets"]
    # other vars of other lengths in the same data_id
    dst2 = make_gate("numpy", tmp_path, data_id="jets")
    dst2.add_data("other", np.zeros(3))
    with pytest.raises(InconsistentLengthError):
        copy_store(src, dst2, ["jets"])
    assert dst2.get_var_names("train") == ["other"]


def test_copy_into_an_existing_data_id_adds_vars(tmp_path: Path) -> None:
    src = StoreGate("numpy", data_id="d")
    src.add_data("new", np.arange(5), phase=(3, 1, 1))
    dst = make_gate("zarr", tmp_path, data_id="d")
    dst.add_data("old", np.arange(5.0), phase=(3, 1, 1))
    dst.compile()
    copy_store(src, dst)
    assert dst.get_var_names("train") == ["old", "new"]
    assert_same(dst.get_data("new", "test"), np.array([4]))


def test_failed_copy_is_undone(src: StoreGate, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    dst = make_gate("zarr", tmp_path)
    calls = {"n": 0}
    original = StoreGate.add_data

    def failing(self: StoreGate, *args: Any, **kw: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 4:
            raise OSError("disk full")
        return original(self, *args, **kw)

    monkeypatch.setattr(StoreGate, "add_data", failing)
    with pytest.raises(OSError, match="disk full"):
        copy_store(src, dst)
    monkeypatch.undo()
    assert dst.get_data_ids() == []
    assert dst.data_id is None
    # nothing but the root group (and the writer's lock file) is left
    assert sorted(p.name for p in (tmp_path / "dst.zarr").iterdir()) == [".sg-lock", "zarr.json"]


def test_bad_arguments(src: StoreGate) -> None:
    with pytest.raises(DataIdNotFoundError, match="nope"):
        copy_store(src, StoreGate("numpy"), ["jets", "nope"])
    with pytest.raises(InvalidArgumentError, match="src"):
        copy_store("store", StoreGate("numpy"))
    with pytest.raises(InvalidArgumentError, match="dst"):
        copy_store(src, {"backend": "numpy"})


# ---------------------------------------------------------------------------------- multiml
def write_multiml_store(path: Path) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """A store laid out as multiml's ZarrDatabase (zarr 2.17) wrote it: zarr format 2,
    ``<data_id>/<phase>/<var>`` groups and arrays, blosc-lz4, rows chunked, no attributes."""
    import numcodecs

    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    rng = np.random.default_rng(9)
    data: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for data_id, sizes in (("higgs", (7, 2, 3)), ("ttbar", (5, 0, 1))):
        group = root.create_group(data_id)
        data[data_id] = {}
        for phase, n in zip(PHASES, sizes, strict=True):
            g = group.create_group(phase)  # initialize() creates all three
            data[data_id][phase] = {}
            if n == 0:
                continue
            for var, shape, dtype in (("var1", (4,), "f4"), ("var0", (), "f4"),
                                      ("label", (), "i8"), ("image", (2, 3), "f8")):
                arr = rng.standard_normal((n, *shape)).astype(dtype)
                z = g.create_array(var, shape=arr.shape, chunks=(3, *shape), dtype=dtype,
                                   compressors=numcodecs.Blosc("lz4", 5, 1), fill_value=0)
                z[:] = arr
                data[data_id][phase][var] = arr
    return data


@pytest.mark.parametrize("dst_backend", ["zarr", "parquet"])
def test_multiml_store_into_a_new_store(tmp_path: Path, dst_backend: str) -> None:
    if dst_backend == "parquet":
        pytest.importorskip("pyarrow")
    path = tmp_path / "multiml.zarr"
    data = write_multiml_store(path)
    assert (path / ".zgroup").exists() and not (path / "zarr.json").exists()
    src = StoreGate.open(str(path))
    assert src.backend == "zarr"
    dst = make_gate(dst_backend, tmp_path)
    res = copy_store(src, dst)
    assert [r.data_id for r in res] == ["higgs", "ttbar"]
    assert res[0].sizes == {"train": 7, "valid": 2, "test": 3}
    assert res[1].sizes == {"train": 5, "valid": 0, "test": 1}
    dst.close()
    again = StoreGate.open(str(tmp_path / f"dst.{'zarr' if dst_backend == 'zarr' else 'parquet'}"))
    for data_id, phases in data.items():
        again.set_data_id(data_id)
        for phase, cols in phases.items():
            # multiml listed vars alphabetically; that order is kept
            assert again.get_var_names(phase) == sorted(cols)
            for var, arr in cols.items():
                assert_same(again.get_data(var, phase), arr)
        assert again.get_metadata()["compiled"]
    if dst_backend == "zarr":
        meta = json.loads((tmp_path / "dst.zarr" / "higgs" / "train" / "var1" / "zarr.json")
                          .read_text())
        assert meta["zarr_format"] == 3
    # the source is untouched (opened read-only): still format 2, no attributes added
    assert not (path / "zarr.json").exists()
    assert not (path / "higgs" / "train" / ".zattrs").exists() or json.loads(
        (path / "higgs" / "train" / ".zattrs").read_text()) == {}


def test_read_only_source_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "multiml.zarr"
    write_multiml_store(path)
    src = StoreGate.open(str(path))
    with pytest.raises(StoregateError):
        copy_store(StoreGate("numpy", data_id="x"), src)
