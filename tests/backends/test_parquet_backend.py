"""Parquet-specific behaviour: interop with pyarrow/pandas, foreign files, damage, crashes,
in-place rewrites, file alignment, ragged vars, processes, options."""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import storegate
from storegate import StoreGate
from storegate.backends.numpy_backend import NumpyBackend
from storegate.ragged import RaggedArray
from storegate.testing import DTYPES, assert_identical, sample_array

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
pds = pytest.importorskip("pyarrow.dataset")
pd = pytest.importorskip("pandas")

from storegate.backends import parquet_backend as pb  # noqa: E402
from storegate.backends.parquet_backend import MANIFEST, ParquetBackend  # noqa: E402


def run_python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args],
                          capture_output=True, text=True, timeout=120, check=False)


def parquet_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".parquet"))


def manifest(folder: Path) -> dict[str, Any]:
    return json.loads((folder / MANIFEST).read_text())


def assert_consistent(folder: Path) -> None:
    """Every file the manifest lists exists, is a complete Parquet file, and has the row groups
    and columns the manifest says."""
    man = manifest(folder)
    for name, f in man["files"].items():
        meta = pq.read_metadata(folder / name)
        assert meta.num_rows == f["rows"]
        assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == f["row_groups"]
        names = meta.schema.to_arrow_schema().names
        assert set(f["columns"].values()) <= set(names)
    for var, v in man["vars"].items():
        assert all(var in man["files"][f]["columns"] for f in v["files"])


@pytest.fixture
def store(tmp_path: Path) -> str:
    return str(tmp_path / "store.parquet")


# ---------------------------------------------------------------------------------- interop
def test_store_reads_with_pyarrow_dataset_and_pandas(store: str) -> None:
    """Vars added one by one (the usual add_data; add_data; compile) land in the same files,
    which pyarrow.dataset and pandas read as one table with the same values and dtypes."""
    sg = StoreGate("parquet", {"output_dir": store, "row_group_rows": 7, "file_rows": 30},
                   data_id="d")
    n = 100
    cols: dict[str, np.ndarray] = {}
    for dtype in DTYPES:
        if dtype == "complex64":
            continue
        cols[f"v_{dtype}"] = sample_array(dtype, (n,), seed=len(dtype))
    feats = sample_array("float32", (n, 4), seed=1)
    img = sample_array("uint8", (n, 2, 3), seed=2)
    for name, arr in cols.items():
        sg.add_data(name, arr, phase=(0.8, 0.1, 0.1))
    sg.add_data("feats", feats, phase=(0.8, 0.1, 0.1))
    sg.add_data("img", img, phase=(0.8, 0.1, 0.1))
    sg.compile()
    sg.close()
    phase_dir = Path(store) / "d" / "train"
    files = parquet_files(phase_dir)
    assert len(files) == 3  # 80 rows, 30 per file, every var in each file
    table = pds.dataset(str(phase_dir)).to_table()
    assert table.num_rows == 80
    assert table.column_names == [*cols, "feats", "img"]
    df = pd.read_parquet(str(phase_dir))
    for name, arr in cols.items():
        assert df[name].dtype == arr.dtype, name
        assert_identical(df[name].to_numpy(), arr[:80], name)
        assert_identical(table.column(name).to_numpy(), arr[:80], name)
    got = np.stack(df["feats"].to_numpy())
    assert got.dtype == np.float32
    assert_identical(got, feats[:80])
    flat = table.column("img").combine_chunks().flatten().flatten().to_numpy()
    assert_identical(flat.reshape(80, 2, 3), img[:80])
    valid = pd.read_parquet(str(Path(store) / "d" / "valid"))
    assert_identical(valid["v_int64"].to_numpy(), cols["v_int64"][80:90])


def test_complex_and_ragged_columns_are_plain_arrow(store: str) -> None:
    be = ParquetBackend(output_dir=store)
    be.create_data_id("d")
    c = sample_array("complex64", (5, 2), seed=3)
    rows = [np.arange(k, dtype="i2") for k in (3, 0, 1, 4, 2)]
    be.append("d", "train", "c", c)
    be.append("d", "train", "r", RaggedArray.from_list(rows))
    be.close()
    table = pq.read_table(str(Path(store) / "d" / "train"))
    assert pa.types.is_fixed_size_list(table.schema.field("c").type)
    pairs = table.column("c").combine_chunks().flatten().flatten().to_numpy()
    assert_identical(pairs.view("c8").reshape(5, 2), c)
    assert table.schema.field("c").metadata[b"storegate.dtype"] == b"<c8"
    assert pa.types.is_large_list(table.schema.field("r").type)
    assert [np.asarray(v).tolist() for v in table.column("r").to_pylist()] == [
        r.tolist() for r in rows]
    df = pd.read_parquet(str(Path(store) / "d" / "train"))
    assert df["r"].iloc[3].dtype == np.int16


def test_vars_written_at_different_times_get_their_own_files(store: str) -> None:
    be = ParquetBackend(output_dir=store)
    be.create_data_id("d")
    be.append("d", "train", "x", np.arange(10))
    be.append("d", "train", "y", np.arange(10.0))
    be.append("d", "train", "y", np.arange(10.0, 15.0))  # y now covers other rows than x
    be.flush()
    man = manifest(Path(store) / "d" / "train")
    assert len(man["files"]) == 2
    assert man["vars"]["x"]["files"] != man["vars"]["y"]["files"]
    # later appends that cover the same range are aligned again
    be.append("d", "train", "x", np.arange(10, 15))
    be.append("d", "train", "x", np.arange(15, 20))
    be.append("d", "train", "y", np.arange(15.0, 20.0))
    be.flush()
    man = manifest(Path(store) / "d" / "train")
    assert man["vars"]["x"]["files"][-1] == man["vars"]["y"]["files"][-1]
    assert_identical(be.read("d", "train", "y", slice(0, 20, 1)), np.arange(20.0))
    assert_identical(be.read("d", "train", "x", slice(0, 20, 1)), np.arange(20))
    be.compact()
    folder = Path(store) / "d" / "train"
    assert len(parquet_files(folder)) == 1
    df = pd.read_parquet(str(folder))
    assert df.columns.tolist() == ["x", "y"]
    assert_identical(df["x"].to_numpy(), np.arange(20))
    assert_consistent(folder)


def test_whole_var_rewrites_keep_column_names(store: str) -> None:
    """astype writes the new var as '.sg-tmp-x' with the column name 'x'; after compact the
    phase is one table again."""
    sg = StoreGate("parquet", {"output_dir": store}, data_id="d")
    sg.add_data("x", np.arange(20, dtype="i4"))
    sg.add_data("y", np.arange(20.0))
    sg.compile()
    sg.astype("x", "f8")
    sg.shuffle("train", seed=1)
    x = sg["train"]["x"][:]
    assert x.dtype == np.float64 and sorted(x.tolist()) == list(range(20))
    assert_identical(sg["train"]["y"][:], x)
    folder = Path(store) / "d" / "train"
    for name in parquet_files(folder):
        assert all(not c.startswith(".") for c in pq.read_schema(folder / name).names)
    sg.db.compact()
    df = pd.read_parquet(str(folder))
    assert df.columns.tolist() == ["x", "y"] and df["x"].dtype == np.float64
    assert_identical(df["y"].to_numpy(), x)
    assert_consistent(folder)


# ---------------------------------------------------------------------------------- foreign
def test_foreign_parquet_file_opens_read_only(tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    df = pd.DataFrame({"pt": np.arange(6, dtype="f4"), "n": np.arange(6, dtype="i8"),
                       "ok": np.arange(6) % 2 == 0, "name": list("abcdef")})
    df["hits"] = [np.arange(k, dtype="f8") for k in range(6)]
    table = pa.Table.from_pandas(df, preserve_index=False).append_column(
        "vec", pa.FixedSizeListArray.from_arrays(pa.array(np.arange(12, dtype="i4")), 2))
    pq.write_table(table, path, row_group_size=4)
    with pytest.raises(storegate.StoregateError, match="mode='r'"):
        ParquetBackend(output_dir=str(path))
    with pytest.warns(UserWarning, match="'name'"):
        be = ParquetBackend(output_dir=str(path), mode="r")
    assert be.readonly and be.data_ids() == ["events"]
    assert be.var_names("events", "train") == ["pt", "n", "ok", "hits", "vec"]
    assert be.var_names("events", "valid") == []
    assert_identical(be.read("events", "train", "pt", slice(0, 6, 1)), df["pt"].to_numpy())
    assert_identical(be.read("events", "train", "ok", np.array([5, 0])), np.array([False, True]))
    assert_identical(be.read("events", "train", "vec", 5), np.array([10, 11], "i4"))
    hits = be.read("events", "train", "hits", np.array([5, 1, 0]))
    assert isinstance(hits, RaggedArray) and hits.lengths().tolist() == [5, 1, 0]
    assert be.info("events", "train", "hits").ragged
    with pytest.raises(storegate.ReadOnlyError):
        be.append("events", "train", "pt", np.zeros(1, "f4"))
    # through the facade, under a chosen data_id
    with pytest.warns(UserWarning):
        sg = StoreGate("parquet", {"output_dir": str(path), "mode": "r",
                                   "foreign_data_id": "ev"}, data_id="ev")
    assert_identical(sg["train"]["n"][2:4], np.array([2, 3]))
    assert len(sg["train"]) == 6


def test_foreign_dataset_directory(tmp_path: Path) -> None:
    folder = tmp_path / "ds"
    table = pa.table({"a": np.arange(10, dtype="u2"), "b": np.linspace(0, 1, 10)})
    pds.write_dataset(table, folder, format="parquet", max_rows_per_file=4,
                      max_rows_per_group=4)
    be = ParquetBackend(output_dir=str(folder), mode="r")
    assert be.data_ids() == ["ds"]
    got = be.read("ds", "train", "a", np.arange(10)[::-1].copy())
    assert_identical(np.sort(got), np.arange(10, dtype="u2"))
    # nulls cannot become numpy values: a clear error, not a pyarrow traceback
    pq.write_table(pa.table({"a": pa.array([1, None, 3], pa.int64())}), tmp_path / "n.parquet")
    nulls = ParquetBackend(output_dir=str(tmp_path / "n.parquet"), mode="r")
    with pytest.raises(storegate.DtypeError, match="missing values"):
        nulls.read("n", "train", "a", slice(0, 3, 1))


def test_foreign_and_damaged_paths_give_clear_errors(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(storegate.CorruptStoreError, match="not a Parquet file"):
        ParquetBackend(output_dir=str(text), mode="r")
    fake = tmp_path / "fake.parquet"
    fake.write_bytes(b"PAR1 this is not really parquet")
    with pytest.raises(storegate.CorruptStoreError, match="not a readable Parquet file"):
        ParquetBackend(output_dir=str(fake), mode="r")
    with pytest.raises(storegate.StoreNotFoundError, match="mode='r'"):
        ParquetBackend(output_dir=str(tmp_path / "missing"), mode="r")
    store = tmp_path / "s"
    be = ParquetBackend(output_dir=str(store))
    be.create_data_id("d")
    be.append("d", "train", "x", np.arange(5))
    be.close()
    with pytest.raises(storegate.StoreNotFoundError, match="root directory"):
        ParquetBackend(output_dir=str(store / "d"))


def test_corrupt_manifest_and_files(tmp_path: Path) -> None:
    store = tmp_path / "s"
    be = ParquetBackend(output_dir=str(store))
    be.create_data_id("d")
    be.append("d", "train", "x", np.arange(5))
    be.append("d", "valid", "x", np.arange(5))
    be.append("d", "test", "x", np.arange(5))
    be.close()
    (store / "d" / "train" / MANIFEST).write_text("{ not json")
    man = manifest(store / "d" / "valid")
    man["vars"]["x"]["files"] = ["part-999999-00000000.parquet"]
    (store / "d" / "valid" / MANIFEST).write_text(json.dumps(man))
    again = ParquetBackend(output_dir=str(store), mode="r")
    with pytest.raises(storegate.CorruptStoreError, match=r"train.*not JSON"):
        again.var_names("d", "train")
    with pytest.raises(storegate.CorruptStoreError, match="does not hold it"):
        again.info("d", "valid", "x")
    test_dir = store / "d" / "test"
    data = test_dir / parquet_files(test_dir)[0]
    data.write_bytes(data.read_bytes()[:40])  # truncated
    with pytest.raises(storegate.CorruptStoreError, match="Parquet"):
        again.read("d", "test", "x", slice(0, 5, 1))
    data.unlink()
    fresh = ParquetBackend(output_dir=str(store), mode="r")
    with pytest.raises(storegate.CorruptStoreError, match="missing"):
        fresh.read("d", "test", "x", slice(0, 5, 1))
    (store / pb.ROOT_MARKER).write_text("[]")
    with pytest.raises(storegate.CorruptStoreError, match="storegate parquet store"):
        ParquetBackend(output_dir=str(store))


# ---------------------------------------------------------------------------------- crashes
WRITER = """
import sys, numpy as np
from storegate import StoreGate
sg = StoreGate("parquet", {"output_dir": sys.argv[1], "row_group_rows": 500,
                           "file_rows": 2000}, data_id="d")
i = int(sys.argv[2])
print("ready", flush=True)
while True:
    sg.add_data(("x", "y"), np.full((5000, 2, 16), i, "f4"))
    sg.compile()  # writes the buffered rows (data files, then the manifest)
    i += 1
"""


@pytest.mark.parametrize("delay", [0.05, 0.3, 0.8])
def test_writer_killed_mid_append_leaves_previous_content(tmp_path: Path, delay: float) -> None:
    path = tmp_path / "s"
    sg = StoreGate("parquet", {"output_dir": str(path)}, data_id="d")
    sg.add_data(("x", "y"), np.full((100, 2, 16), -1, "f4"))
    sg.compile()
    sg.close()
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), "0"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    folder = path / "d" / "train"
    assert_consistent(folder)
    ro = ParquetBackend(output_dir=str(path), mode="r")
    lengths = {v: ro.info("d", "train", v).length for v in ("x", "y")}
    assert lengths["x"] == lengths["y"]  # written together, committed together
    for var in ("x", "y"):
        rows = ro.read("d", "train", var, slice(0, lengths[var], 1))
        values = rows[:, 0]
        assert (rows == values[:, None]).all()  # no torn rows
        assert (values[:100] == -1).all()
        steps = values[100:]
        assert steps.size % 5000 == 0  # whole batches only
        if steps.size:
            assert (np.bincount(steps.astype(np.int64)) == 5000).all()
    # files of the interrupted flush are ignored now and removed by the next writer
    listed = set(manifest(folder)["files"])
    writer = ParquetBackend(output_dir=str(path))
    writer.var_names("d", "train")
    assert set(parquet_files(folder)) == listed
    assert not [n for n in os.listdir(folder) if n.startswith(".tmp-")]


def test_failure_between_data_and_manifest_keeps_previous_content(
    store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    be = ParquetBackend(output_dir=store)
    be.create_data_id("d")
    be.append("d", "train", "x", np.arange(10))
    be.flush()
    be.append("d", "train", "x", np.arange(10, 20))

    def crash(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt("killed while committing")

    monkeypatch.setattr(pb, "_write_json", crash)
    with pytest.raises(KeyboardInterrupt):
        be.flush()
    monkeypatch.undo()
    folder = Path(store) / "d" / "train"
    ro = ParquetBackend(output_dir=store, mode="r")
    assert_identical(ro.read("d", "train", "x", slice(0, 10, 1)), np.arange(10))
    assert ro.info("d", "train", "x").length == 10
    be.flush()  # the rows are still buffered: a retry writes them
    assert_identical(ParquetBackend(output_dir=store, mode="r").read(
        "d", "train", "x", slice(0, 20, 1)), np.arange(20))
    assert_consistent(folder)


def test_buffered_rows_are_written_at_interpreter_exit(store: str) -> None:
    res = run_python(
        """
        import sys, numpy as np
        from storegate import StoreGate
        sg = StoreGate("parquet", {"output_dir": sys.argv[1]}, data_id="d")
        for i in range(7):
            sg.add_data("x", np.full((3, 2), i, "f4"))
        # no compile(), no close()
        """, store)
    assert res.returncode == 0, res.stderr
    got = ParquetBackend(output_dir=store, mode="r").read("d", "train", "x", slice(0, 21, 1))
    assert (got[::3, 0] == np.arange(7)).all()


# ---------------------------------------------------------------------------------- writes
def test_in_place_write_rewrites_only_affected_files(store: str) -> None:
    be = ParquetBackend(output_dir=store, row_group_rows=10, file_rows=30)
    be.create_data_id("d")
    x = np.arange(100, dtype="i8")
    y = np.arange(200, dtype="f4").reshape(100, 2)
    be.append("d", "train", "x", x)
    be.append("d", "train", "y", y)
    be.flush()
    folder = Path(store) / "d" / "train"
    before = manifest(folder)["vars"]["x"]["files"]
    assert len(before) == 4 and manifest(folder)["vars"]["y"]["files"] == before
    be.read("d", "train", "x", np.arange(100))  # fill the arena: it must follow the write
    be.write("d", "train", "x", np.array([31, 45, 31]), np.array([-1, -2, -3]))
    after = manifest(folder)["vars"]["x"]["files"]
    assert after[0] == before[0] and after[2:] == before[2:] and after[1] != before[1]
    assert manifest(folder)["vars"]["y"]["files"] == after  # y keeps sharing the file
    assert parquet_files(folder) == sorted(after)  # the replaced file is gone
    x[[45, 31]] = [-2, -3]  # numpy semantics: the last write wins
    assert_identical(be.read("d", "train", "x", slice(0, 100, 1)), x)
    assert_identical(be.read("d", "train", "x", np.arange(99, -1, -1)), x[::-1])
    assert_identical(be.read("d", "train", "y", slice(0, 100, 1)), y)
    be.write("d", "train", "y", slice(0, 100, 1), np.zeros((100, 2), "f4"))
    assert set(manifest(folder)["files"]).isdisjoint(after)
    be.close()
    ro = ParquetBackend(output_dir=store, mode="r")
    assert_identical(ro.read("d", "train", "x", slice(0, 100, 1)), x)
    assert_identical(ro.read("d", "train", "y", np.array([7])), np.zeros((1, 2), "f4"))
    assert_consistent(folder)


def test_writes_to_buffered_rows_stay_in_memory(store: str) -> None:
    be = ParquetBackend(output_dir=store)
    be.create_data_id("d")
    be.create("d", "train", "x", (50, 3), np.dtype("f4"))
    for start in range(0, 50, 10):
        be.write("d", "train", "x", slice(start, start + 10, 1),
                 np.full((10, 3), start, "f4"))
    folder = Path(store) / "d" / "train"
    assert parquet_files(folder) == []  # nothing written yet
    be.flush()
    assert len(parquet_files(folder)) == 1
    got = be.read("d", "train", "x", slice(0, 50, 1))
    assert (got[:, 0] == np.repeat(np.arange(0, 50, 10), 10)).all()


def test_stale_reader_follows_replaced_files(store: str) -> None:
    writer = ParquetBackend(output_dir=store)
    writer.create_data_id("d")
    writer.append("d", "train", "x", np.arange(10))
    writer.flush()
    reader = ParquetBackend(output_dir=store, mode="r", cache_bytes=0, rowgroup_cache_bytes=0)
    assert_identical(reader.read("d", "train", "x", 3), np.array(3))
    reader.close()  # drop handles: the next read opens the (replaced) file by name
    writer.write("d", "train", "x", 3, np.array(-3))
    reader2 = ParquetBackend(output_dir=store, mode="r", cache_bytes=0, rowgroup_cache_bytes=0)
    assert_identical(reader2.read("d", "train", "x", 3), np.array(-3))
    # an instance whose manifest is stale reloads it when its files have gone
    stale = ParquetBackend(output_dir=store, mode="r", cache_bytes=0, rowgroup_cache_bytes=0)
    stale.var_names("d", "train")
    writer.write("d", "train", "x", 4, np.array(-4))
    assert_identical(stale.read("d", "train", "x", slice(3, 5, 1)), np.array([-3, -4]))


# ---------------------------------------------------------------------------------- ragged
def ragged(seed: int, n: int, item: tuple[int, ...] = (2,), dtype: str = "f4") -> RaggedArray:
    rng = np.random.default_rng(seed)
    return RaggedArray.from_list(
        [sample_array(dtype, (int(k), *item), seed=seed * 1000 + i)
         for i, k in enumerate(rng.integers(0, 6, n))])


def same(got: Any, exp: Any, what: str = "") -> None:
    if isinstance(exp, RaggedArray):
        assert isinstance(got, RaggedArray), what
        assert_identical(got.offsets, exp.offsets, what)
        assert_identical(got.values, exp.values, what)
    else:
        assert_identical(got, exp, what)


RAGGED_INDEXES: list[Any] = [0, 17, 39, slice(0, 40, 1), slice(5, 23, 1), slice(3, 38, 4),
                             slice(9, 9, 1), np.array([39, 2, 2, 17, 0], dtype=np.int64),
                             np.arange(40, dtype=np.int64)[::-1].copy(),
                             np.empty(0, dtype=np.int64)]


@pytest.mark.parametrize("options", [{"row_group_rows": 3, "file_rows": 8}, {},
                                     {"cache_bytes": 0, "rowgroup_cache_bytes": 0}], ids=str)
@pytest.mark.parametrize(("item", "dtype"), [((), "i8"), ((2,), "f4"), ((2, 3), "c8"),
                                             ((0,), "f8")], ids=str)
def test_ragged_vars_match_numpy_backend(
    tmp_path: Path, options: dict[str, Any], item: tuple[int, ...], dtype: str
) -> None:
    store = str(tmp_path / "s")
    be, oracle = ParquetBackend(output_dir=store, **options), NumpyBackend()
    parts = [ragged(s, n, item, dtype) for s, n in ((1, 13), (2, 1), (3, 26))]
    for b in (be, oracle):
        b.create_data_id("d")
        b.append("d", "train", "r", parts[0])
        b.append("d", "train", "r", parts[1])
    be.flush()
    for b in (be, oracle):
        b.append("d", "train", "r", parts[2])
    info = be.info("d", "train", "r")
    exp = oracle.info("d", "train", "r")
    assert (info.shape, info.dtype, info.ragged) == (exp.shape, exp.dtype, True)
    assert info.extra["n_values"] == exp.extra["n_values"]
    for index in RAGGED_INDEXES:
        same(be.read("d", "train", "r", index), oracle.read("d", "train", "r", index), str(index))
    # writes replace whole rows, with any lengths, in files and in buffered rows
    writes: list[tuple[Any, RaggedArray]] = [
        (5, ragged(9, 1, item, dtype)),
        (slice(10, 16, 2), ragged(10, 3, item, dtype)),
        (np.array([38, 0, 38, 20], dtype=np.int64), ragged(11, 4, item, dtype)),
    ]
    for index, data in writes:
        for b in (be, oracle):
            b.write("d", "train", "r", index, data)
        be.append("d", "train", "r", parts[1])
        oracle.append("d", "train", "r", parts[1])
        be.write("d", "train", "r", 40, ragged(12, 1, item, dtype))  # a buffered row
        oracle.write("d", "train", "r", 40, ragged(12, 1, item, dtype))
    n = oracle.info("d", "train", "r").length
    same(be.read("d", "train", "r", slice(0, n, 1)), oracle.read("d", "train", "r",
                                                                  slice(0, n, 1)))
    assert be.info("d", "train", "r").extra["n_values"] == oracle.info(
        "d", "train", "r").extra["n_values"]
    with pytest.raises(storegate.ShapeMismatchError, match="ragged"):
        be.write("d", "train", "r", 0, np.zeros((1, *item), dtype))
    with pytest.raises(storegate.ShapeMismatchError, match="2 rows"):
        be.write("d", "train", "r", slice(0, 2, 1), ragged(13, 3, item, dtype))
    be.close()
    ro = ParquetBackend(output_dir=store, mode="r")
    for index in (slice(0, n, 1), np.array([n - 1, 3, 3], dtype=np.int64), n - 2):
        same(ro.read("d", "train", "r", index), oracle.read("d", "train", "r", index))
    assert ro.info("d", "train", "r").extra["n_values"] == oracle.info(
        "d", "train", "r").extra["n_values"]
    assert ro.var_names("d", "train") == ["r"]
    clone = pickle.loads(pickle.dumps(ro))
    same(clone.read("d", "train", "r", slice(0, n, 1)), oracle.read("d", "train", "r",
                                                                     slice(0, n, 1)))


def test_ragged_and_regular_kinds_do_not_mix(store: str) -> None:
    be = ParquetBackend(output_dir=store)
    be.create_data_id("d")
    be.append("d", "train", "r", ragged(1, 4))
    be.append("d", "train", "x", np.zeros((4, 2), "f4"))
    with pytest.raises(storegate.ShapeMismatchError, match="ragged"):
        be.append("d", "train", "r", np.zeros((2, 2), "f4"))
    with pytest.raises(storegate.ShapeMismatchError, match="fixed shape"):
        be.append("d", "train", "x", ragged(2, 2))
    with pytest.raises(storegate.ShapeMismatchError):
        be.append("d", "train", "r", ragged(3, 2, item=(3,)))
    with pytest.raises(storegate.DtypeError):
        be.append("d", "train", "r", RaggedArray.from_list([np.ones((2, 2), "c8")]))
    assert be.info("d", "train", "r").length == 4


# ---------------------------------------------------------------------------------- processes
def _child_gather(backend: ParquetBackend, index: np.ndarray) -> np.ndarray:
    return backend.read("d", "train", "x", index)


def _forked_child(conn: Any, backend: ParquetBackend, index: np.ndarray) -> None:
    try:
        st = backend._state()  # a new per-process state; the arena comes along
        arena = st.arenas.get(("d", "train", "x"))
        reused = arena is not None and bool(arena.resident.all())
        conn.send(("ok", backend.read("d", "train", "x", index), reused))
    except BaseException as err:  # pragma: no cover - reported to the parent
        conn.send(("error", repr(err), False))
    finally:
        conn.close()


def test_spawned_and_forked_reads(store: str) -> None:
    be = ParquetBackend(output_dir=store, row_group_rows=64)
    be.create_data_id("d")
    x = sample_array("f4", (1000, 4), seed=5)
    be.append("d", "train", "x", x)
    idx = np.random.default_rng(0).integers(0, 1000, 300)
    assert_identical(be.read("d", "train", "x", idx), x[idx])  # arena filled in the parent
    with multiprocessing.get_context("spawn").Pool(1) as pool:  # the backend is pickled
        got = pool.apply(_child_gather, (be, idx[::-1].copy()))
    assert_identical(got, x[idx[::-1]])
    if "fork" not in multiprocessing.get_all_start_methods():
        return
    be.append("d", "train", "y", np.arange(3))  # buffered in the parent: never in the child
    ctx = multiprocessing.get_context("fork")
    for expect_reused in (True, False):
        recv, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_forked_child, args=(send, be, np.array([999, 3, 3])))
        proc.start()  # the child inherits the live backend (handles, arena, buffered rows)
        send.close()
        status, got, reused = recv.recv()
        proc.join(60)
        assert status == "ok", got
        assert_identical(got, x[[999, 3, 3]])
        assert reused is expect_reused
        # the parent appends after the first fork: the second child sees the new files, and
        # the arena (filled from the old ones) is not used for them
        be.append("d", "train", "x", x[:10])
        be.flush()
        x = np.concatenate([x, x[:10]])
        assert_identical(be.read("d", "train", "x", np.array([1005])), x[[5]])
        be._st.arenas.clear()
        be.read("d", "train", "x", slice(0, 5, 1))  # a slice does not fill an arena
    assert be.info("d", "train", "y").length == 3
    ro = ParquetBackend(output_dir=store, mode="r")
    assert ro.info("d", "train", "y").length == 3  # written once, by the parent
    assert ro.info("d", "train", "x").length == 1020


# ---------------------------------------------------------------------------------- options
def test_options_are_validated(tmp_path: Path) -> None:
    where = str(tmp_path / "s")
    bad: list[tuple[dict[str, Any], str]] = [
        ({"mode": "rw"}, "unknown mode 'rw'"),
        ({"compression": "lzma"}, "unknown compression 'lzma'"),
        ({"compression": "zstd", "compression_level": 99}, "compression_level"),
        ({"compression": "snappy", "compression_level": 1}, "no levels"),
        ({"compression_level": 3}, "compression_level"),
        ({"row_group_rows": 0}, "row_group_rows"),
        ({"row_group_bytes": -5}, "row_group_bytes"),
        ({"file_rows": 2.5}, "file_rows"),
        ({"cache_bytes": -1}, "cache_bytes"),
        ({"buffer_bytes": "big"}, "buffer_bytes"),
        ({"foreign_data_id": "a/b"}, "a/b"),
    ]
    for options, message in bad:
        with pytest.raises(storegate.StoregateError, match=message):
            ParquetBackend(output_dir=where, **options)
    with pytest.raises(storegate.StoregateError, match="URL"):
        ParquetBackend(output_dir="nosuchprotocol://bucket/x")
    assert not (tmp_path / "s").exists()
    with pytest.raises(storegate.InvalidArgumentError):
        StoreGate("parquet", {"output_dir": where, "compresion": "lz4"})


@pytest.mark.parametrize("compression", ["none", None, "lz4", "snappy", "zstd", "gzip"])
def test_compressions_round_trip(tmp_path: Path, compression: str | None) -> None:
    be = ParquetBackend(output_dir=str(tmp_path / "s"), compression=compression)
    be.create_data_id("d")
    x = np.tile(np.arange(50, dtype="f4"), (40, 1))
    be.append("d", "train", "x", x)
    be.flush()
    codec = pq.read_metadata(next((tmp_path / "s" / "d" / "train").glob("*.parquet"))
                             ).row_group(0).column(0).compression
    expected = {"none": "UNCOMPRESSED", None: "UNCOMPRESSED", "lz4": "LZ4",
                "snappy": "SNAPPY", "zstd": "ZSTD", "gzip": "GZIP"}[compression]
    assert codec.startswith(expected)
    assert be.info("d", "train", "x").codec == (compression or "none")
    assert_identical(be.read("d", "train", "x", np.array([39, 0])), x[[39, 0]])


def test_modes(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with pytest.raises(storegate.StoreNotFoundError):
        StoreGate("parquet", {"output_dir": str(path), "mode": "r+"})
    sg = StoreGate("parquet", {"output_dir": str(path), "mode": "w-"}, data_id="a")
    sg.add_data("x", np.arange(3))
    sg.close()
    with pytest.raises(storegate.StoregateError, match="already exists"):
        StoreGate("parquet", {"output_dir": str(path), "mode": "w-"})
    ro = StoreGate("parquet", {"output_dir": str(path), "mode": "r"}, data_id="a")
    assert_identical(ro["train"]["x"][:], np.arange(3))
    with pytest.raises(storegate.DataIdNotFoundError, match="read-only"):
        ro.set_data_id("b")
    with pytest.raises(storegate.ReadOnlyError):
        ro.add_data("x", np.arange(2))
    wiped = StoreGate("parquet", {"output_dir": str(path), "mode": "w"}, data_id="c")
    assert wiped.get_data_ids() == ["c"]
    # a foreign Parquet directory is never wiped
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    pq.write_table(pa.table({"a": [1, 2]}), foreign / "a.parquet")
    with pytest.raises(storegate.StoregateError, match="did not write"):
        ParquetBackend(output_dir=str(foreign), mode="w")
    assert (foreign / "a.parquet").exists()


def test_temporary_store_is_removed() -> None:
    be = ParquetBackend()
    location = Path(be.location)
    be.create_data_id("d")
    be.append("d", "train", "x", np.arange(3))
    be.flush()
    assert location.exists()
    del be
    import gc

    gc.collect()
    assert not location.exists()


def test_dtypes_and_odd_shapes_round_trip(store: str) -> None:
    be = ParquetBackend(output_dir=store, row_group_rows=2)
    be.create_data_id("d")
    arrays = {f"v_{d}": sample_array(d, (5, 2), seed=3) for d in DTYPES}
    arrays["big_endian"] = np.arange(5, dtype=">i4")
    arrays["empty_rows"] = np.zeros((5, 0, 3), "f8")
    arrays["scalar_c16"] = sample_array("complex128", (5,), seed=4)
    for name, arr in arrays.items():
        be.append("d", "train", name, arr)
    be.close()
    ro = ParquetBackend(output_dir=store, mode="r")
    for name, arr in arrays.items():
        assert ro.info("d", "train", name).dtype == arr.dtype
        assert_identical(ro.read("d", "train", name, slice(0, 5, 1)), arr, name)
        assert_identical(ro.read("d", "train", name, np.array([4, 1, 1])), arr[[4, 1, 1]], name)
        assert_identical(ro.read("d", "train", name, 3), np.array(arr[3], dtype=arr.dtype),
                         name)
    with pytest.raises(storegate.DtypeError, match="Parquet"):
        be.append("d", "valid", "ld", np.zeros(3, dtype=np.longdouble))


def test_facade_round_trip_and_reopen(store: str) -> None:
    sg = StoreGate("parquet", {"output_dir": store}, data_id="jets")
    x = np.arange(40, dtype="f4").reshape(20, 2)
    sg.add_data(("pt", "eta"), x, phase=(0.5, 0.25, 0.25))
    sg.add_data("label", np.arange(20) % 3, phase=(0.5, 0.25, 0.25))
    sg.compile()
    sg.onehot("label", 3, phase="all")
    sg.close()
    again = StoreGate("parquet", {"output_dir": store, "mode": "r"}, data_id="jets")
    assert again.get_metadata()["total_events"] == [10, 5, 5]
    assert again.get_var_names("train") == ["pt", "eta", "label"]
    assert_identical(again["valid"]["eta"][:], x[10:15, 1])
    assert_identical(again["test"]["label"][0], np.eye(3)[15 % 3])
    assert_identical(again["all"][("pt", "eta")][[19, 0]], x[[19, 0]][:, :, None][:, :, 0])


def test_parallel_arena_fill_matches(store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Large fills decode row groups in threads, each with a file handle of its own."""
    monkeypatch.setattr(pb, "_PARALLEL_FILL_BYTES", 0)
    monkeypatch.setattr(pb, "_FILL_THREADS", 3)
    be = ParquetBackend(output_dir=store, row_group_rows=7, file_rows=50)
    be.create_data_id("d")
    x = sample_array("f8", (400, 3), seed=8)
    be.append("d", "train", "x", x)
    idx = np.random.default_rng(3).integers(0, 400, 500)
    assert_identical(be.read("d", "train", "x", idx), x[idx])
    assert_identical(be.read("d", "train", "x", slice(13, 390, 1)), x[13:390])
    nocache = ParquetBackend(output_dir=store, cache_bytes=0, rowgroup_cache_bytes=0)
    assert_identical(nocache.read("d", "train", "x", slice(0, 400, 1)), x)
