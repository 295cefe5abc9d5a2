"""``storegate.convert.convert`` / ``sniff``: one entry point for every conversion."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from storegate import StoreGate
from storegate.convert import (
    DestinationExistsError,
    ExportResult,
    ImportResult,
    SourceFormatError,
    SourceNotFoundError,
    convert,
    sniff,
)
from storegate.convert.dispatch import data_id_for
from storegate.convert.npzfile import NpzReader
from storegate.errors import InvalidArgumentError
from storegate.phases import PHASES
from storegate.ragged import RaggedArray

N = 24


# ---------------------------------------------------------------------------------- helpers
def optional_converter(name: str) -> ModuleType:
    """``storegate.convert.<name>``, or skip the test when it (or its library) is missing."""
    try:
        return importlib.import_module(f"storegate.convert.{name}")
    except ImportError as err:
        pytest.skip(f"storegate.convert.{name} is not importable: {err}")


def assert_same(got: Any, want: Any) -> None:
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def assert_npz_equal(got: str | Path, want: str | Path) -> None:
    with np.load(want, allow_pickle=False) as a, np.load(got, allow_pickle=False) as b:
        assert sorted(b.files) == sorted(a.files)
        for key in a.files:
            assert_same(b[key], a[key])


def temporaries(folder: Path) -> list[str]:
    return [n for n in os.listdir(folder) if ".sg-tmp-" in n or ".sg-convert-" in n
            or ".sg-old-" in n]


def kinoml_npz(path: Path, n: int = N, idx: tuple[int, int] = (16, 4),
               compressed: bool = False) -> dict[str, Any]:
    """kinoml's layout: X_s{i}_a0_ ragged, X_s{i}_a1_ dense, y; contiguous idx_*."""
    d: dict[str, Any] = {}
    for i in range(n):
        d[f"X_s{i}_a0_"] = np.full((i % 3 + 1, 2), i, "f8")
        d[f"X_s{i}_a1_"] = np.full(4, i, "i8")
    d["y"] = np.arange(n, dtype="f4")
    a, b = idx
    d |= {"idx_train": np.arange(a), "idx_val": np.arange(a, a + b),
          "idx_test": np.arange(a + b, n)}
    (np.savez_compressed if compressed else np.savez)(path, **d)
    return d


def plain_npz(path: Path, n: int = N) -> dict[str, Any]:
    d = {"pt": np.arange(n, dtype="f8"), "label": np.arange(n, dtype="i4") % 2}
    np.savez(path, **d)
    return d


def zarr_store(path: Path, data_ids: tuple[str, ...] = ("jets",)) -> StoreGate:
    sg = StoreGate("zarr", {"output_dir": str(path)})
    for k, did in enumerate(data_ids):
        sg.set_data_id(did)
        sg.add_data("pt", np.arange(10, dtype="f4") + k, phase=(6, 2, 2))
        sg.add_data("trk", RaggedArray.from_list(
            [np.full((i % 3, 2), i, "f8") for i in range(10)]), phase=(6, 2, 2))
        sg.compile()
    sg.close()
    return sg


def flip_member_byte(path: Path, key: str) -> None:
    with NpzReader(path) as npz:
        at = npz.member(key).data + 2
    raw = bytearray(path.read_bytes())
    raw[at] ^= 0xFF
    path.write_bytes(bytes(raw))


# ---------------------------------------------------------------------------------- sniff
def test_sniff_files_and_stores(tmp_path: Path) -> None:
    plain_npz(tmp_path / "a.npz")
    assert sniff(str(tmp_path / "a.npz")) == ("npz", None)
    np.savez_compressed(tmp_path / "c.npz", a=np.arange(3))
    assert sniff(str(tmp_path / "c.npz")) == ("npz", None)
    np.savez(tmp_path / "empty_zip.npz")  # no members: the end record only
    assert sniff(str(tmp_path / "empty_zip.npz")) == ("npz", None)
    zarr_store(tmp_path / "s.zarr")
    assert sniff(str(tmp_path / "s.zarr")) == ("store", "zarr")


def test_sniff_parquet_and_hdf5(tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    pa = pytest.importorskip("pyarrow")
    pq.write_table(pa.table({"a": [1, 2]}), tmp_path / "t.parquet")
    assert sniff(str(tmp_path / "t.parquet")) == ("parquet", None)
    folder = tmp_path / "parts"
    folder.mkdir()
    pq.write_table(pa.table({"a": [1]}), folder / "part-0.parquet")
    assert sniff(str(folder)) == ("parquet", None)
    sg = StoreGate("parquet", {"output_dir": str(tmp_path / "p.store")}, data_id="d")
    sg.add_data("x", np.arange(3))
    sg.compile()
    sg.close()
    assert sniff(str(tmp_path / "p.store")) == ("store", "parquet")
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f["x"] = np.arange(3)
    assert sniff(str(tmp_path / "f.h5")) == ("hdf5", None)


def test_sniff_multiml_v2_store(tmp_path: Path) -> None:
    zarr = pytest.importorskip("zarr")
    root = zarr.open_group(str(tmp_path / "mm.zarr"), mode="w", zarr_format=2)
    root.create_group("d").create_group("train").create_array("v", shape=(2,), dtype="f4")
    assert sniff(str(tmp_path / "mm.zarr")) == ("store", "zarr")


def test_sniff_refusals(tmp_path: Path) -> None:
    with pytest.raises(SourceNotFoundError) as err:
        sniff(str(tmp_path / "nope.npz"))
    assert isinstance(err.value, FileNotFoundError)
    (tmp_path / "empty.npz").write_bytes(b"")
    with pytest.raises(SourceFormatError, match="empty"):
        sniff(str(tmp_path / "empty.npz"))
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(SourceFormatError, match="not an NPZ, Parquet or HDF5") as err2:
        sniff(str(tmp_path / "notes.txt"))
    assert "notes.txt" in str(err2.value)
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "x.csv").write_text("a\n1\n")
    with pytest.raises(SourceFormatError, match="directory"):
        sniff(str(tmp_path / "dir"))


@pytest.mark.parametrize(("path", "want"), [
    ("/data/kinase.v2.npz", "kinase.v2"), ("rel/jets.npz", "jets"),
    ("/x/.hidden.npz", "hidden"), ("/x/a.parquet", "a"), ("/x/f.h5", "f"),
    ("/x/noext", "noext")])
def test_data_id_for(path: str, want: str) -> None:
    assert data_id_for(path) == want


def test_data_id_for_directories(tmp_path: Path) -> None:
    (tmp_path / "store.zarr").mkdir()
    assert data_id_for(str(tmp_path / "store.zarr")) == "store"
    assert data_id_for(str(tmp_path / "store.zarr") + "/") == "store"


# ---------------------------------------------------------------------------------- directions
def test_npz_to_zarr_store(tmp_path: Path) -> None:
    d = kinoml_npz(tmp_path / "kinase.npz")
    dst = tmp_path / "out" / "kinase.zarr"
    res = convert(tmp_path / "kinase.npz", dst)
    assert isinstance(res, ImportResult)
    assert res.data_id == "kinase"
    assert res.sizes == {"train": 16, "valid": 4, "test": 4}
    assert temporaries(dst.parent) == []
    sg = StoreGate.open(str(dst))
    assert sg.backend == "zarr" and sg.data_id == "kinase"
    assert sg.get_var_names("train") == ["X_a0", "X_a1", "y"]
    assert_same(sg.get_data("X_a1", "test"), np.stack([d[f"X_s{i}_a1_"] for i in range(20, N)]))
    assert_same(sg.get_data("X_a0", "valid", 0), d["X_s16_a0_"])
    assert sg.get_metadata()["compiled"]


def test_npz_to_store_options(tmp_path: Path) -> None:
    plain_npz(tmp_path / "p.npz")
    res = convert(tmp_path / "p.npz", tmp_path / "p.zarr", data_id="mine",
                  phase=(0.5, 0.25, 0.25), dtype="float32", backend="zarr")
    assert res.data_id == "mine" and res.sizes == {"train": 12, "valid": 6, "test": 6}
    sg = StoreGate.open(str(tmp_path / "p.zarr"))
    assert sg.get_data("pt", "train").dtype == np.dtype("f4")
    assert sg.get_data("label", "train").dtype == np.dtype("i4")
    np.savez(tmp_path / "k.npz", X_s0_=np.arange(2), X_s1_=np.arange(2), y=np.zeros(2))
    res2 = convert(tmp_path / "k.npz", tmp_path / "k.zarr", layout="plain")
    assert res2.var_names == ["X_s0_", "X_s1_", "y"]
    res3 = convert(tmp_path / "k.npz", tmp_path / "k2.zarr")
    assert res3.var_names == ["X", "y"] and res3.sizes["train"] == 2


def test_npz_to_parquet_store(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    d = kinoml_npz(tmp_path / "kinase.npz")
    res = convert(tmp_path / "kinase.npz", tmp_path / "kinase.parquet", backend="parquet")
    assert isinstance(res, ImportResult)
    sg = StoreGate.open(str(tmp_path / "kinase.parquet"))
    assert sg.backend == "parquet"
    assert_same(sg.get_data("y", "all"), d["y"])


def test_store_to_npz(tmp_path: Path) -> None:
    src = tmp_path / "s.zarr"
    zarr_store(src)
    res = convert(src, tmp_path / "jets.npz")
    assert isinstance(res, ExportResult)
    assert res.data_id == "jets" and res.sizes == {"train": 6, "valid": 2, "test": 2}
    with np.load(tmp_path / "jets.npz", allow_pickle=False) as f:
        assert sorted(f.files) == ["idx_test", "idx_train", "idx_val", "pt", "trk.offsets",
                                   "trk.values"]
        assert_same(f["pt"], np.arange(10, dtype="f4"))
        assert_same(f["idx_val"], np.array([6, 7]))
    one = convert(src, tmp_path / "valid.npz", phase="valid")
    assert one.sizes == {"valid": 2}
    with np.load(tmp_path / "valid.npz") as f:
        assert_same(f["pt"], np.array([6, 7], "f4"))
    with pytest.raises(InvalidArgumentError, match="phase"):
        convert(src, tmp_path / "bad.npz", phase="nope")
    assert not (tmp_path / "bad.npz").exists()


def test_store_with_several_data_ids_to_npz(tmp_path: Path) -> None:
    src = tmp_path / "s.zarr"
    zarr_store(src, ("a", "b"))
    with pytest.raises(InvalidArgumentError, match="data_id"):
        convert(src, tmp_path / "x.npz")
    res = convert(src, tmp_path / "b.npz", data_id="b")
    with np.load(res.path) as f:
        assert_same(f["pt"], np.arange(10, dtype="f4") + 1)


def test_npz_round_trip_through_a_store_and_file_to_file(tmp_path: Path) -> None:
    kinoml_npz(tmp_path / "k.npz", compressed=True)
    convert(tmp_path / "k.npz", tmp_path / "k.zarr")
    convert(tmp_path / "k.zarr", tmp_path / "back.npz")
    assert_npz_equal(tmp_path / "back.npz", tmp_path / "k.npz")
    res = convert(tmp_path / "k.npz", tmp_path / "direct.npz")  # file -> file
    assert isinstance(res, ExportResult)
    assert_npz_equal(tmp_path / "direct.npz", tmp_path / "k.npz")
    assert temporaries(tmp_path) == []


def test_store_to_store_parquet(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    src = tmp_path / "s.zarr"
    zarr_store(src, ("a", "b"))
    res = convert(src, tmp_path / "copy.store", backend="parquet")
    assert isinstance(res, list) and [r.data_id for r in res] == ["a", "b"]
    out = StoreGate.open(str(tmp_path / "copy.store"))
    assert out.backend == "parquet" and out.get_data_ids() == ["a", "b"]
    orig = StoreGate.open(str(src))
    for did in ("a", "b"):
        out.set_data_id(did)
        orig.set_data_id(did)
        for ph in PHASES:
            assert_same(out.get_data("pt", ph), orig.get_data("pt", ph))
            for g, w in zip(out.get_data("trk", ph, ragged_as="list"),
                            orig.get_data("trk", ph, ragged_as="list"), strict=True):
                assert_same(g, w)
    one = convert(src, tmp_path / "one.zarr", data_id="b", dtype="float64")
    assert [r.data_id for r in one] == ["b"]
    assert StoreGate.open(str(tmp_path / "one.zarr")).get_data("pt", "all").dtype == "f8"
    with pytest.raises(InvalidArgumentError, match="phase"):
        convert(src, tmp_path / "p.zarr", phase="train")
    assert temporaries(tmp_path) == []


def test_multiml_store_to_zarr_v3(tmp_path: Path) -> None:
    zarr = pytest.importorskip("zarr")
    root = zarr.open_group(str(tmp_path / "mm.zarr"), mode="w", zarr_format=2)
    want = {}
    for ph, n in zip(PHASES, (4, 1, 1), strict=True):
        g = root.require_group("d").create_group(ph)
        arr = np.arange(n * 2, dtype="f4").reshape(n, 2) + 10 * len(want)
        g.create_array("v", shape=arr.shape, dtype="f4", chunks=(2, 2))[:] = arr
        want[ph] = arr
    convert(tmp_path / "mm.zarr", tmp_path / "new.zarr")
    assert (tmp_path / "new.zarr" / "zarr.json").exists()
    out = StoreGate.open(str(tmp_path / "new.zarr"))
    for ph, arr in want.items():
        assert_same(out.get_data("v", ph), arr)


def test_npz_to_parquet_file(tmp_path: Path) -> None:
    optional_converter("parquet")
    pq = pytest.importorskip("pyarrow.parquet")
    d = plain_npz(tmp_path / "p.npz")
    res = convert(tmp_path / "p.npz", tmp_path / "p.parquet")
    assert isinstance(res, ExportResult)
    table = pq.read_table(tmp_path / "p.parquet")
    assert table.num_rows == N
    assert np.array_equal(np.asarray(table.column("pt")), d["pt"])
    assert temporaries(tmp_path) == []


def test_npz_to_hdf5_file(tmp_path: Path) -> None:
    optional_converter("hdf5")
    h5py = pytest.importorskip("h5py")
    plain_npz(tmp_path / "p.npz")
    res = convert(tmp_path / "p.npz", tmp_path / "p.h5")
    assert isinstance(res, ExportResult)
    with h5py.File(tmp_path / "p.h5", "r") as f:
        assert len(f.keys()) > 0
    assert temporaries(tmp_path) == []


# ---------------------------------------------------------------------------------- shuffle
def test_shuffle_permutes_rows_consistently(tmp_path: Path) -> None:
    d = kinoml_npz(tmp_path / "k.npz")
    convert(tmp_path / "k.npz", tmp_path / "k.zarr", shuffle=7)
    sg = StoreGate.open(str(tmp_path / "k.zarr"))
    phase_items = {"train": range(0, 16), "valid": range(16, 20), "test": range(20, N)}
    moved = False
    for ph, items in phase_items.items():
        y = sg.get_data("y", ph)
        assert sorted(y.astype(int).tolist()) == list(items)  # same multiset per phase
        moved |= y.astype(int).tolist() != list(items)
        a0 = sg.get_data("X_a0", ph, ragged_as="list")
        a1 = sg.get_data("X_a1", ph)
        for row, item in enumerate(y.astype(int)):  # every var moved with its row
            assert_same(a0[row], d[f"X_s{item}_a0_"])
            assert_same(a1[row], d[f"X_s{item}_a1_"])
    assert moved
    # same seed, same order; another seed, another order
    convert(tmp_path / "k.npz", tmp_path / "k2.zarr", shuffle=7)
    convert(tmp_path / "k.npz", tmp_path / "k3.zarr", shuffle=8)
    y7 = StoreGate.open(str(tmp_path / "k2.zarr")).get_data("y", "train")
    y8 = StoreGate.open(str(tmp_path / "k3.zarr")).get_data("y", "train")
    assert_same(y7, sg.get_data("y", "train"))
    assert not np.array_equal(y7, y8)


def test_shuffle_of_a_store_copy_and_file_to_file(tmp_path: Path) -> None:
    src = tmp_path / "s.zarr"
    zarr_store(src)
    convert(src, tmp_path / "shuf.zarr", shuffle=1)
    out = StoreGate.open(str(tmp_path / "shuf.zarr"))
    pt = out.get_data("pt", "train")
    assert sorted(pt.tolist()) == list(range(6))
    for row, value in enumerate(pt.astype(int)):
        assert_same(out.get_data("trk", "train", row), np.full((value % 3, 2), value, "f8"))
    kinoml_npz(tmp_path / "k.npz")
    convert(tmp_path / "k.npz", tmp_path / "shuf.npz", shuffle=3)
    with np.load(tmp_path / "shuf.npz") as f:
        assert sorted(f["y"][:16].tolist()) == list(range(16))
    with pytest.raises(InvalidArgumentError, match="shuffle"):
        convert(src, tmp_path / "x.npz", shuffle=1)
    assert temporaries(tmp_path) == []


# ---------------------------------------------------------------------------------- destinations
def test_existing_destination_is_kept(tmp_path: Path) -> None:
    plain_npz(tmp_path / "p.npz")
    dst = tmp_path / "p.zarr"
    zarr_store(dst)
    with pytest.raises(DestinationExistsError) as err:
        convert(tmp_path / "p.npz", dst)
    assert isinstance(err.value, FileExistsError) and str(dst) in str(err.value)
    assert StoreGate.open(str(dst)).get_data_ids() == ["jets"]
    (tmp_path / "out.npz").write_bytes(b"old")
    with pytest.raises(DestinationExistsError):
        convert(dst, tmp_path / "out.npz")
    with pytest.raises(DestinationExistsError):
        convert(tmp_path / "p.npz", tmp_path / "out.npz")
    assert (tmp_path / "out.npz").read_bytes() == b"old"
    assert temporaries(tmp_path) == []


def test_overwrite_replaces(tmp_path: Path) -> None:
    plain_npz(tmp_path / "p.npz")
    dst = tmp_path / "p.zarr"
    zarr_store(dst)
    convert(tmp_path / "p.npz", dst, overwrite=True)
    sg = StoreGate.open(str(dst))
    assert sg.get_data_ids() == ["p"]  # the old data_id "jets" is gone
    (tmp_path / "out.npz").write_bytes(b"old")
    convert(dst, tmp_path / "out.npz", overwrite=True)
    with np.load(tmp_path / "out.npz") as f:
        assert sorted(f.files) == ["label", "pt"]
    assert temporaries(tmp_path) == []


@pytest.mark.parametrize("dst_name", ["bad.zarr", "bad.npz"])
@pytest.mark.parametrize("existing", [False, True])
def test_failed_conversion_leaves_nothing(tmp_path: Path, dst_name: str,
                                          existing: bool) -> None:
    kinoml_npz(tmp_path / "k.npz")
    flip_member_byte(tmp_path / "k.npz", "X_s22_a0_")  # found late, during the copy
    out = tmp_path / "out"
    out.mkdir()
    dst = out / dst_name
    if existing:
        dst.write_bytes(b"previous")
    with pytest.raises(SourceFormatError, match="CRC"):
        convert(tmp_path / "k.npz", dst, overwrite=existing)
    if existing:
        assert dst.read_bytes() == b"previous"
        assert os.listdir(out) == [dst_name]
    else:
        assert os.listdir(out) == []


def test_failed_store_copy_leaves_nothing(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "s.zarr"
    zarr_store(src)
    from storegate.convert import stores

    def broken(*args: Any, **kw: Any) -> Any:
        raise OSError("disk full")

    monkeypatch.setattr(stores, "_copy_one", broken)
    out = tmp_path / "out"
    with pytest.raises(OSError, match="disk full"):
        convert(src, out / "copy.zarr")
    assert not out.exists() or os.listdir(out) == []


def test_bad_sources(tmp_path: Path) -> None:
    with pytest.raises(SourceNotFoundError):
        convert(tmp_path / "nope.npz", tmp_path / "x.zarr")
    (tmp_path / "t.txt").write_text("text")
    with pytest.raises(SourceFormatError):
        convert(tmp_path / "t.txt", tmp_path / "x.zarr")
    assert not (tmp_path / "x.zarr").exists()
    assert temporaries(tmp_path) == []
