"""Generic Parquet import and export (``storegate.convert.parquet``)."""

from __future__ import annotations

import datetime
import decimal
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kinoml_fixtures import kinoml_items, write_kinoml_parquet

from storegate import StoreGate
from storegate.convert import (
    DestinationExistsError,
    ExportResult,
    ImportResult,
    KinomlImport,
    SourceFormatError,
    SourceNotFoundError,
    UnsupportedFieldError,
)
from storegate.convert.parquet import META_KEY, export_parquet, import_parquet
from storegate.errors import (
    DataIdNotFoundError,
    DtypeError,
    InconsistentLengthError,
    InvalidArgumentError,
    InvalidNameError,
    InvalidPhaseError,
    ShapeMismatchError,
    StoregateError,
    VarExistsError,
    VarNotFoundError,
)
from storegate.phases import PHASES
from storegate.ragged import RaggedArray

ak = pytest.importorskip("awkward")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

N = 60
DTYPES = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
          "float16", "float32", "float64"]


# ---------------------------------------------------------------------------------- helpers
def make_gate(backend: str, tmp_path: Path, data_id: str | None = None,
              store: str = "s") -> StoreGate:
    args = {"output_dir": str(tmp_path / f"{store}.zarr")} if backend == "zarr" else {}
    return StoreGate(backend, args, data_id=data_id)


def reopen(sg: StoreGate, backend: str, tmp_path: Path, store: str = "s") -> StoreGate:
    if backend == "numpy":
        return sg
    data_id = sg.data_id
    sg.close()
    return make_gate(backend, tmp_path, data_id, store)


@pytest.fixture(params=["numpy", "zarr"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def snapshot(sg: StoreGate) -> dict[str, Any]:
    out: dict[str, Any] = {"current": sg.data_id, "ids": sg.get_data_ids()}
    for d in out["ids"]:
        out[d] = {ph: sg.db.var_names(d, ph) for ph in PHASES}
    return out


def flat_array(values: np.ndarray) -> Any:
    return pa.array(values)


def fixed(values: np.ndarray) -> Any:
    """``(n, *k)`` numpy as nested fixed-size lists."""
    arr = pa.array(values.reshape(-1))
    for k in reversed(values.shape[1:]):
        arr = pa.FixedSizeListArray.from_arrays(arr, k)
    return arr


def ragged(rows: list[np.ndarray], large: bool = True) -> Any:
    lengths = np.array([len(r) for r in rows])
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    values = np.concatenate(rows)
    cls = pa.LargeListArray if large else pa.ListArray
    return cls.from_arrays(pa.array(offsets.astype(np.int64 if large else np.int32)),
                           fixed(values))


def source_table(n: int = N, seed: int = 0) -> Any:
    """Dense columns of every dtype, multi-dim fixed-size lists and ragged lists."""
    rng = np.random.default_rng(seed)
    cols: dict[str, Any] = {}
    for dt in DTYPES:
        vals = rng.random(n) > 0.5 if dt == "bool" else rng.integers(0, 100, n).astype(dt)
        cols[dt] = flat_array(vals)
    cols["image"] = fixed(rng.standard_normal((n, 2, 3, 4)).astype("f4"))
    cols["pair"] = fixed(rng.integers(-5, 5, (n, 2)).astype("i2"))
    cols["mask"] = fixed(rng.random((n, 3)) > 0.5)
    cols["atoms"] = ragged([rng.standard_normal((int(k), 4)) for k in rng.integers(0, 6, n)])
    cols["hits"] = ragged([rng.integers(0, 9, int(k)).astype("u2")
                           for k in rng.integers(0, 4, n)])
    cols["blocks"] = ragged([rng.standard_normal((int(k), 2, 2)).astype("f2")
                             for k in rng.integers(1, 4, n)])
    return pa.table(cols)


def assert_tables_equal(got: Any, want: Any) -> None:
    assert got.column_names == want.column_names
    assert got.num_rows == want.num_rows
    for name in want.column_names:
        assert got.schema.field(name).type == want.schema.field(name).type, name
        assert got.column(name).combine_chunks().equals(want.column(name).combine_chunks()), \
            name
    assert got.equals(want)


def phase_order(labels: np.ndarray) -> np.ndarray:
    return np.concatenate([np.flatnonzero(labels == p) for p in PHASES])


def assert_same_store(a: StoreGate, b: StoreGate, phases: tuple[str, ...] = PHASES) -> None:
    for ph in phases:
        assert a.get_var_names(ph) == b.get_var_names(ph), ph
        for v in a.get_var_names(ph):
            x = a.get_data(v, ph, ragged_as="raw")
            y = b.get_data(v, ph, ragged_as="raw")
            assert type(x) is type(y), (ph, v)
            if isinstance(x, RaggedArray):
                assert x.values.dtype == y.values.dtype and x.values.shape == y.values.shape
                assert x == y, (ph, v)
            else:
                assert x.dtype == y.dtype and x.shape == y.shape, (ph, v, x.shape, y.shape)
                np.testing.assert_array_equal(x, y, err_msg=f"{ph} {v}")


def expect_clean_failure(sg: StoreGate, call: Callable[[], Any], exc: type[BaseException],
                         *fragments: str) -> BaseException:
    before = snapshot(sg)
    with pytest.raises(exc) as info:
        call()
    assert isinstance(info.value, StoregateError)
    text = str(info.value)
    for frag in fragments:
        assert frag in text, (frag, text)
    assert snapshot(sg) == before
    return info.value


class AddCounter:
    """Counts StoreGate.add_data calls (and their sizes)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[str, int]] = []
        orig = StoreGate.add_data

        def spy(gate: StoreGate, var: Any, data: Any, *args: Any, **kw: Any) -> None:
            self.calls.append((var, len(data)))
            orig(gate, var, data, *args, **kw)

        monkeypatch.setattr(StoreGate, "add_data", spy)


# ---------------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("with_phase", [True, False])
def test_table_round_trip_parquet_store_parquet(backend: str, tmp_path: Path,
                                                with_phase: bool) -> None:
    table = source_table()
    labels = np.random.default_rng(1).choice(np.array(list(PHASES)), N)
    src = tmp_path / "src.parquet"
    if with_phase:
        table = table.append_column("phase", pa.array(labels))
    pq.write_table(table, src, row_group_size=17)

    sg = make_gate(backend, tmp_path, data_id="d")
    kw: dict[str, Any] = {"phase_column": "phase"} if with_phase else {}
    res = import_parquet(src, sg, batch_rows=7, **kw)
    assert type(res) is ImportResult
    names = [n for n in table.column_names if n != "phase"]
    assert res.var_names == names
    assert {v.name: (v.ragged, v.shape, str(v.dtype)) for v in res.vars}["atoms"] == (
        True, (None, 4), "float64")
    assert {v.name: v.shape for v in res.vars}["image"] == (2, 3, 4)
    assert {v.name: str(v.dtype) for v in res.vars if v.name in DTYPES} == {d: d for d in DTYPES}
    if with_phase:
        assert res.sizes == {p: int((labels == p).sum()) for p in PHASES}
    else:
        assert res.sizes == {"train": N, "valid": 0, "test": 0}

    sg = reopen(sg, backend, tmp_path)
    out = tmp_path / "out.parquet"
    exp = export_parquet(sg, out, phase="all" if with_phase else "train", row_group_rows=9)
    assert isinstance(exp, ExportResult) and exp.path == str(out)
    assert exp.var_names == tuple(names)
    assert pq.ParquetFile(out).metadata.num_row_groups >= N // 9
    got = pq.read_table(out)
    want = table.take(pa.array(phase_order(labels))) if with_phase else table
    assert_tables_equal(got, want)
    sg.close()


def test_list_columns_come_back_as_large_list(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    rows = [rng.standard_normal(int(k)) for k in rng.integers(0, 5, 20)]
    src = tmp_path / "list.parquet"
    pq.write_table(pa.table({"x": pa.array([r.tolist() for r in rows])}), src)
    assert pq.read_schema(src).field("x").type == pa.list_(pa.float64())
    sg = StoreGate("numpy", data_id="d")
    res = import_parquet(src, sg)
    assert res.vars[0].ragged and res.vars[0].shape == (None,)
    export_parquet(sg, tmp_path / "out.parquet", phase="train")
    got = pq.read_table(tmp_path / "out.parquet").column("x")
    assert got.type == pa.large_list(pa.float64())
    assert got.to_pylist() == [r.tolist() for r in rows]


def test_same_length_lists_stay_ragged_and_inner_lists_become_axes(tmp_path: Path) -> None:
    src = tmp_path / "lists.parquet"
    pq.write_table(pa.table({
        "same": pa.array([[1, 2], [3, 4], [5, 6]]),                   # all of length 2
        "nested": pa.array([[[1.0, 2.0]], [], [[3.0, 4.0], [5.0, 6.0]]]),  # inner length 2
        "fsl_of_list": pa.array([[[1], [2]], [[3], [4]], [[5], [6]]],
                                pa.list_(pa.list_(pa.int32()), 2)),
    }), src)
    sg = StoreGate("numpy", data_id="d")
    res = import_parquet(src, sg, batch_rows=1)
    assert [(v.ragged, v.shape) for v in res.vars] == [(True, (None,)), (True, (None, 2)),
                                                      (False, (2, 1))]
    assert [r.shape for r in sg.get_data("nested", "train", ragged_as="list")] == [
        (1, 2), (0, 2), (2, 2)]
    np.testing.assert_array_equal(sg.get_data("fsl_of_list", "train")[:, :, 0],
                                  [[1, 2], [3, 4], [5, 6]])


@pytest.mark.parametrize("backend_name", ["numpy", "zarr"])
def test_kinoml_file_round_trip(backend_name: str, tmp_path: Path) -> None:
    r, d, y = kinoml_items(45, seed=3)
    scalars = list(np.random.default_rng(4).standard_normal(45))
    square = [np.full((2, 3), i, dtype=float) for i in range(45)]
    bits = [np.array([i % 2 == 0, True]) for i in range(45)]
    src = write_kinoml_parquet(tmp_path / "kinoml.parquet", [r, d, scalars, square, bits], y,
                               row_group_size=20)
    sg = make_gate(backend_name, tmp_path, data_id="k")
    res = import_parquet(src, sg, batch_rows=8)  # layout='auto' finds kinoml's tuples
    assert isinstance(res, KinomlImport) and res.label_name == "y"
    assert [(v.ragged, v.shape) for v in res.vars] == [
        (True, (None, 16)), (False, (8,)), (False, ()), (False, (2, 3)), (False, (2,)),
        (False, ())]
    sg = reopen(sg, backend_name, tmp_path)
    out = tmp_path / "again.parquet"
    exp = export_parquet(sg, out, layout="kinoml", row_group_rows=10)
    assert exp.sizes == {"train": 45, "valid": 0, "test": 0}
    assert pq.ParquetFile(out).metadata.num_row_groups == 5
    a, b = pq.read_table(src), pq.read_table(out)
    assert a.schema.equals(b.schema)
    assert_tables_equal(b, a)
    A, B = ak.from_parquet(src), ak.from_parquet(out)
    assert str(A.type) == str(B.type) == (
        "45 * (var * var * float64, var * int64, float64, var * var * float64, var * bool, "
        "float32)")
    assert ak.array_equal(A, B)
    sg.close()


def test_kinoml_export_of_phases_and_explicit_layout(tmp_path: Path) -> None:
    r, d, y = kinoml_items(30, seed=5)
    src = write_kinoml_parquet(tmp_path / "k.parquet", [r, d], y)
    sg = StoreGate("numpy", data_id="k")
    import_parquet(src, sg, layout="kinoml", phase=(0.5, 0.3, 0.2), label_name="pIC50")
    assert sg.get_var_names("train") == ["X_a0", "X_a1", "pIC50"]
    out = tmp_path / "k2.parquet"
    exp = export_parquet(sg, out, layout="kinoml")        # phases concatenated, no phase field
    assert exp.sizes == {"train": 15, "valid": 9, "test": 6}
    assert_tables_equal(pq.read_table(out), pq.read_table(src))
    # one phase, and vars in another order (the last one is the label)
    export_parquet(sg, tmp_path / "v.parquet", "k", "valid", layout="kinoml",
                   var_names=["X_a1", "X_a0"])
    arr = ak.from_parquet(tmp_path / "v.parquet")
    assert len(arr) == 9 and str(ak.type(arr)).startswith("9 * (var * int64, var * var")
    np.testing.assert_array_equal(ak.to_numpy(arr["0"]), np.stack(d[15:24]))


@pytest.mark.parametrize("phase", ["all", "train", "valid"])
def test_store_parquet_store(backend: str, tmp_path: Path, phase: str) -> None:
    rng = np.random.default_rng(6)
    n = 23
    spec = (12, 7, 4)
    sg = make_gate(backend, tmp_path, data_id="src")
    sg.add_data("x", rng.standard_normal((n, 3, 2)).astype("f4"), phase=spec)
    sg.add_data("label", rng.integers(0, 3, n).astype("u1"), phase=spec)
    sg.add_data("half", rng.standard_normal(n).astype("f2"), phase=spec)
    sg.add_data("flag", rng.random((n, 2)) > 0.5, phase=spec)
    sg.add_data("wave", (rng.standard_normal((n, 2)) + 1j).astype("c8"), phase=spec)
    sg.add_data("empty", np.zeros((n, 0), dtype="i4"), phase=spec)
    lengths = rng.integers(0, 5, n)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    sg.add_data("atoms", RaggedArray(rng.standard_normal((offsets[-1], 4)), offsets),
                phase=spec)
    sg.add_data("ids", RaggedArray(rng.integers(0, 99, offsets[-1]).astype("i8"), offsets),
                phase=spec)
    sg.add_data("nothing", RaggedArray(np.zeros((offsets[-1], 2, 0), "f8"), offsets),
                phase=spec)
    sg.compile()
    path = tmp_path / "store.parquet"
    res = export_parquet(sg, path, phase=phase, row_group_rows=5)
    phases = PHASES if phase == "all" else (phase,)
    assert res.phases == phases and res.data_id == "src"
    meta = json.loads(pq.read_schema(path).metadata[META_KEY])
    assert meta["format"] == 1 and meta["data_id"] == "src"
    assert meta["phase_column"] == ("phase" if phase == "all" else None)
    assert meta["vars"][6] == {"name": "atoms", "dtype": "float64", "shape": [None, 4],
                               "ragged": True}
    assert "phase" in pq.read_schema(path).names if phase == "all" else True

    back = make_gate(backend, tmp_path, store="back")       # no data_id: the file's is used
    imp = import_parquet(path, back, phase=None if phase == "all" else phase)
    assert imp.data_id == "src" and back.data_id == "src"
    assert [(v.name, v.shape) for v in imp.vars][4:] == [
        ("wave", (2,)), ("empty", (0,)), ("atoms", (None, 4)), ("ids", (None,)),
        ("nothing", (None, 2, 0))]
    back = reopen(back, backend, tmp_path, store="back")
    assert_same_store(sg, back, phases)
    sg.close()
    back.close()


def test_import_metadata_choices(tmp_path: Path) -> None:
    sg = StoreGate("numpy", data_id="orig")
    sg.add_data("x", np.arange(10.0), phase=(5, 3, 2))
    sg.add_data("w", [np.ones(k) for k in (1, 2, 1, 3, 1, 2, 1, 1, 2, 4)], phase=(5, 3, 2))
    path = tmp_path / "e.parquet"
    export_parquet(sg, path, phase_column="split")
    # the gate's data_id wins over the file's; phases from the recorded column
    g = StoreGate("numpy", data_id="mine")
    res = import_parquet(path, g)
    assert res.data_id == "mine" and res.sizes == {"train": 5, "valid": 3, "test": 2}
    # an explicit phase spec wins, and the phase column is still not a var
    g2 = StoreGate("numpy")
    res = import_parquet(path, g2, data_id="other", phase="test")
    assert res.data_id == "other" and res.sizes == {"train": 0, "valid": 0, "test": 10}
    assert g2.get_var_names("test") == ["x", "w"]
    # renamed vars
    g3 = StoreGate("numpy", data_id="d")
    res = import_parquet(path, g3, var_names={"w": "weights"}, dtype="float32")
    assert res.var_names == ["x", "weights"]
    assert [str(v.dtype) for v in res.vars] == ["float32", "float32"]
    assert [str(v.source_dtype) for v in res.vars] == ["float64", "float64"]


def test_changed_metadata_is_ignored_with_a_warning(tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    sg = StoreGate("numpy", data_id="d")
    sg.add_data("x", np.arange(4, dtype="i4"))
    path = tmp_path / "m.parquet"
    export_parquet(sg, path)
    table = pq.read_table(path)
    doc = json.loads(table.schema.metadata[META_KEY])
    doc["vars"][0]["dtype"] = "float32"          # disagrees with the int32 column
    pq.write_table(table.replace_schema_metadata({META_KEY: json.dumps(doc)}), path)
    g = StoreGate("numpy", data_id="d")
    with caplog.at_level(logging.WARNING, logger="storegate.convert.parquet"):
        res = import_parquet(path, g, phase_column="phase")
    assert "do not match" in caplog.text
    assert res.vars[0].dtype == np.dtype("i4")


def test_phase_column_forms(tmp_path: Path) -> None:
    x = np.arange(9.0)
    forms = {
        "strings": pa.array(["train", "val", "test"] * 3),
        "large": pa.array(["train", "valid", "test"] * 3, pa.large_string()),
        "dict": pa.DictionaryArray.from_arrays(
            pa.array(np.array([1, 2, 0] * 3, dtype="i1")), pa.array(["test", "train", "valid"])),
        "ints": pa.array(np.array([0, 1, 2] * 3, dtype="u1")),
    }
    for name, col in forms.items():
        path = tmp_path / f"{name}.parquet"
        pq.write_table(pa.table({"x": x, "ph": col}), path)
        sg = StoreGate("numpy", data_id="d")
        res = import_parquet(path, sg, phase_column="ph", batch_rows=4)
        assert res.sizes == {"train": 3, "valid": 3, "test": 3}, name
        assert sg.get_var_names("train") == ["x"]
        np.testing.assert_array_equal(sg.get_data("x", "valid"), [1.0, 4.0, 7.0])
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"x": x, "ph": pa.array(["train", "dev", "test"] * 3)}), path)
    sg = StoreGate("numpy", data_id="keep")
    expect_clean_failure(sg, lambda: import_parquet(path, sg, phase_column="ph"),
                         InvalidPhaseError, "'dev'", "bad.parquet")
    pq.write_table(pa.table({"x": x, "ph": pa.array(np.arange(9.0))}), path)
    expect_clean_failure(sg, lambda: import_parquet(path, sg, phase_column="ph"),
                         UnsupportedFieldError, "phase_column 'ph'", "double")
    pq.write_table(pa.table({"x": x, "ph": pa.array(["train", None, "test"] * 3)}), path)
    expect_clean_failure(sg, lambda: import_parquet(path, sg, phase_column="ph"),
                         UnsupportedFieldError, "missing values")


def test_pandas_files(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(7)
    df = pd.DataFrame({
        "pt": rng.standard_normal(6).astype("f4"),
        "n": np.arange(6, dtype="i8"),
        "hits": [rng.standard_normal(int(k)) for k in (1, 3, 0, 2, 2, 5)],
        "split": pd.Categorical(["train", "test", "train", "valid", "train", "test"]),
    }, index=[10, 11, 12, 13, 14, 15])
    path = tmp_path / "df.parquet"
    df.to_parquet(path)
    assert "__index_level_0__" in pq.read_schema(path).names
    sg = StoreGate("numpy", data_id="d")
    res = import_parquet(path, sg, phase_column="split")
    assert res.var_names == ["pt", "n", "hits"]
    assert res.sizes == {"train": 3, "valid": 1, "test": 2}
    np.testing.assert_array_equal(sg.get_data("n", "test"), [1, 5])
    assert [len(h) for h in sg.get_data("hits", "train", ragged_as="list")] == [1, 0, 2]
    # a named index is an index column too; a RangeIndex is not stored at all
    df.index.name = "event"
    df.to_parquet(path)
    sg2 = StoreGate("numpy", data_id="d")
    assert import_parquet(path, sg2, phase_column="split").var_names == ["pt", "n", "hits"]
    df.reset_index(drop=True).drop(columns="split").to_parquet(path)
    sg3 = StoreGate("numpy", data_id="d")
    assert import_parquet(path, sg3).var_names == ["pt", "n", "hits"]
    # NaN becomes a missing value in Arrow: refused, naming the column, before any write
    df2 = pd.DataFrame({"a": [1.0, np.nan, 2.0]})
    df2.to_parquet(path)
    sg4 = StoreGate("numpy", data_id="keep")
    expect_clean_failure(sg4, lambda: import_parquet(path, sg4), UnsupportedFieldError,
                         "column 'a'", "missing values", "fillna")


def test_directory_of_files_and_var_names(tmp_path: Path) -> None:
    d = tmp_path / "parts"
    d.mkdir()
    for i in range(3):
        pq.write_table(pa.table({"a b": np.arange(4) + 10 * i, "c": np.ones(4, "f4")}),
                       d / f"part{i}.parquet")
    sg = StoreGate("numpy", data_id="keep")
    expect_clean_failure(sg, lambda: import_parquet(d, sg, data_id="x", var_names={"c": "a/b"}),
                         InvalidNameError, "a/b")
    res = import_parquet(d, sg, data_id="new", var_names=["ab", "c"], phase=(6, 4, 2))
    assert len(res.files) == 3 and res.var_names == ["ab", "c"]
    np.testing.assert_array_equal(sg.get_data("ab", "test"), [22, 23])
    expect_clean_failure(sg, lambda: import_parquet(d, sg, var_names=["one"]),
                         InvalidArgumentError, "2 columns")
    expect_clean_failure(sg, lambda: import_parquet(d, sg, var_names={"zz": "q"}),
                         InvalidArgumentError, "'zz'")
    expect_clean_failure(sg, lambda: import_parquet(d, sg, var_names=["q", "q"]),
                         InvalidNameError, "twice")


def test_streams_in_small_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "one_group.parquet"
    pq.write_table(source_table(N), path)  # one row group
    assert pq.ParquetFile(path).metadata.num_row_groups == 1
    counter = AddCounter(monkeypatch)
    sg = StoreGate("numpy", data_id="d")
    seen: list[int] = []

    class Bar:
        def __init__(self, **kw: Any) -> None:
            seen.append(kw["total"])

        def update(self, n: int = 1) -> None:
            seen.append(n)

        def close(self) -> None:
            pass

    import_parquet(path, sg, batch_rows=11, phase=(0.5, 0.5), progress=Bar)
    assert max(n for _, n in counter.calls) <= 11
    assert sum(n for v, n in counter.calls if v == "atoms") == N
    assert seen[0] == N and sum(seen[1:]) == N
    seen.clear()
    export_parquet(sg, tmp_path / "o.parquet", row_group_rows=8, progress=Bar)
    assert seen[0] == N and max(seen[1:]) <= 8 and sum(seen[1:]) == N
    groups = pq.ParquetFile(tmp_path / "o.parquet").metadata
    assert groups.num_row_groups == 8 and groups.row_group(0).num_rows == 8


# ---------------------------------------------------------------------------------- import errors
BAD_COLUMNS: dict[str, tuple[Callable[[], Any], str]] = {
    "strings": (lambda: pa.array(["a", "b", "c"]), "string"),
    "binary": (lambda: pa.array([b"a", b"b", b"c"]), "binary"),
    "record": (lambda: pa.array([{"a": 1}, {"a": 2}, {"a": 3}]), "struct<a: int64>"),
    "mapping": (lambda: pa.array([[("a", 1)], [], [("b", 2)]],
                                 pa.map_(pa.string(), pa.int64())), "map<string, int64"),
    "categories": (lambda: pa.array(["x", "y", "x"]).dictionary_encode(), "dictionary"),
    "time": (lambda: pa.array([datetime.datetime(2020, 1, i + 1) for i in range(3)]),
             "timestamp"),
    "money": (lambda: pa.array([decimal.Decimal("1.5")] * 3), "decimal128"),
    "nothing": (lambda: pa.nulls(3), "null"),
    "empty_lists": (lambda: pa.array([[], [], []], pa.list_(pa.null())), "Arrow type null"),
    "holes": (lambda: pa.array([1.0, None, 3.0]), "missing values"),
    "list_strings": (lambda: pa.array([["a"], [], ["b"]]), "holds strings"),
}


@pytest.mark.parametrize("case", sorted(BAD_COLUMNS))
def test_unsupported_columns_fail_before_any_write(
    backend: str, tmp_path: Path, case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    make, fragment = BAD_COLUMNS[case]
    path = tmp_path / f"{case}.parquet"
    pq.write_table(pa.table({"good": np.arange(3.0), case: make()}), path)
    sg = make_gate(backend, tmp_path, data_id="keep")
    sg.add_data("a", np.arange(3))
    sg.compile()
    counter = AddCounter(monkeypatch)
    err = expect_clean_failure(sg, lambda: import_parquet(path, sg, data_id="new"),
                               UnsupportedFieldError, f"{case}.parquet", repr(case), fragment)
    assert isinstance(err, TypeError) and err.path == str(path)  # type: ignore[attr-defined]
    assert counter.calls == []
    sg.close()


@pytest.mark.parametrize("backend_name", ["numpy", "zarr"])
def test_missing_values_deep_in_a_list_column_roll_back(backend_name: str,
                                                        tmp_path: Path) -> None:
    rows: list[Any] = [[float(i)] * (i % 3) for i in range(40)]
    rows[33] = [1.0, None]
    path = tmp_path / "late_null.parquet"
    pq.write_table(pa.table({"x": np.arange(40), "r": pa.array(rows)}), path)
    sg = make_gate(backend_name, tmp_path, data_id="keep")
    sg.add_data("a", np.arange(40))
    sg.compile()
    expect_clean_failure(sg, lambda: import_parquet(path, sg, batch_rows=5, phase="valid"),
                         UnsupportedFieldError, "column 'r'", "late_null.parquet",
                         "missing values")
    # an inner axis whose length changes late in the file
    rows2 = [[[1.0, 2.0]] * (i % 3) for i in range(40)]
    rows2[35] = [[1.0, 2.0, 3.0]]
    pq.write_table(pa.table({"x": np.arange(40), "r": pa.array(rows2)}), path)
    expect_clean_failure(sg, lambda: import_parquet(path, sg, batch_rows=5, phase="valid"),
                         UnsupportedFieldError, "column 'r'", "vary along axis 1")
    sg = reopen(sg, backend_name, tmp_path)
    assert sg.get_var_names("valid") == [] and sg.get_var_names("train") == ["a"]
    sg.close()


def test_missing_damaged_and_empty_sources(backend: str, tmp_path: Path) -> None:
    sg = make_gate(backend, tmp_path, data_id="keep")
    err = expect_clean_failure(sg, lambda: import_parquet(tmp_path / "nope.parquet", sg),
                               SourceNotFoundError, "nope.parquet")
    assert isinstance(err, FileNotFoundError)
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet at all" * 20)
    expect_clean_failure(sg, lambda: import_parquet(bad, sg), SourceFormatError,
                         "bad.parquet", "not a readable Parquet")
    good = tmp_path / "good.parquet"
    pq.write_table(source_table(200), good, row_group_size=50)
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    expect_clean_failure(sg, lambda: import_parquet(cut, sg), SourceFormatError, "cut.parquet")
    empty = tmp_path / "empty.parquet"
    pq.write_table(pa.table({"x": np.zeros(0)}), empty)
    expect_clean_failure(sg, lambda: import_parquet(empty, sg), SourceFormatError, "no rows")
    dup = tmp_path / "dup.parquet"
    pq.write_table(pa.Table.from_arrays([pa.array([1]), pa.array([2])], names=["a", "a"]), dup)
    expect_clean_failure(sg, lambda: import_parquet(dup, sg), SourceFormatError, "'a'")
    sg.close()


def test_existing_var_is_refused(backend: str, tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"x": np.arange(5), "y": np.ones(5)}), path)
    sg = make_gate(backend, tmp_path, data_id="d")
    sg.add_data("y", np.zeros(5))
    sg.compile()
    expect_clean_failure(sg, lambda: import_parquet(path, sg), VarExistsError, "'y'")
    expect_clean_failure(sg, lambda: import_parquet(path, sg, var_names={"y": "z"},
                                                    phase=(2, 3)),
                         InconsistentLengthError, "5 rows")
    import_parquet(path, sg, var_names={"y": "z"})
    assert sg.get_var_names("train") == ["y", "x", "z"]
    sg.close()


@pytest.mark.parametrize(("kwargs", "exc", "fragment"), [
    ({"layout": "csv"}, InvalidArgumentError, "layout='csv'"),
    ({"label_name": "y"}, InvalidArgumentError, "layout='kinoml'"),
    ({"layout": "table", "transpose": ["0"]}, InvalidArgumentError, "layout='kinoml'"),
    ({"bogus": 1}, InvalidArgumentError, "bogus"),
    ({"phase": "train", "phase_column": "x"}, InvalidArgumentError, "not both"),
    ({"phase_column": "nope"}, InvalidArgumentError, "'nope'"),
    ({"phase": (0.5, 0.7)}, InvalidPhaseError, "sum"),
    ({"dtype": "int8"}, InvalidArgumentError, "floating-point"),
    ({"batch_rows": -1}, InvalidArgumentError, "batch_rows"),
    ({"data_id": "../up"}, InvalidNameError, "../up"),
    ({"var_names": "x"}, InvalidArgumentError, "var_names"),
])
def test_bad_import_arguments(tmp_path: Path, kwargs: dict[str, Any],
                              exc: type[BaseException], fragment: str) -> None:
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"x": np.arange(5), "y": np.ones(5)}), path)
    sg = StoreGate("numpy", data_id="keep")
    expect_clean_failure(sg, lambda: import_parquet(path, sg, **kwargs), exc, fragment)


def test_kinoml_failures_through_import_parquet(tmp_path: Path) -> None:
    items = [np.zeros((3, 2)) for _ in range(30)] + [np.zeros((3, 5))]
    path = write_kinoml_parquet(tmp_path / "late_bad.parquet", [items], np.zeros(31))
    sg = StoreGate("numpy", data_id="keep")
    expect_clean_failure(sg, lambda: import_parquet(path, sg, batch_rows=8),
                         UnsupportedFieldError, "vary along axis 1")
    expect_clean_failure(sg, lambda: import_parquet(path, sg, layout="kinoml", transpose="0"),
                         InvalidArgumentError, "collection")
    expect_clean_failure(sg, lambda: import_parquet(path, sg, layout="table"),
                         UnsupportedFieldError, "late_bad.parquet", "layout='kinoml'")


# ---------------------------------------------------------------------------------- export errors
def small_store() -> StoreGate:
    sg = StoreGate("numpy", data_id="d")
    sg.add_data("x", np.arange(10.0), phase=(6, 2, 2))
    sg.add_data("r", [np.ones(k) for k in (1, 2, 3, 1, 2, 3, 1, 2, 3, 1)], phase=(6, 2, 2))
    sg.compile()
    return sg


def test_destination_exists_and_overwrite(tmp_path: Path) -> None:
    sg = small_store()
    path = tmp_path / "out.parquet"
    path.write_bytes(b"old content")
    with pytest.raises(DestinationExistsError, match="overwrite=True") as info:
        export_parquet(sg, path)
    assert isinstance(info.value, FileExistsError)
    assert path.read_bytes() == b"old content"
    res = export_parquet(sg, path, overwrite=True)
    assert res.rows == 10 and pq.read_table(path).num_rows == 10
    assert sorted(os.listdir(tmp_path)) == ["out.parquet"]


@pytest.mark.parametrize("layout", ["table", "kinoml"])
@pytest.mark.parametrize("existing", [False, True])
def test_failure_mid_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          layout: str, existing: bool) -> None:
    sg = small_store()
    path = tmp_path / "out.parquet"
    if existing:
        path.write_bytes(b"old content")
    orig = type(sg.db).read_many
    calls = {"n": 0}

    def failing(self: Any, *args: Any, **kw: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full (simulated)")
        return orig(self, *args, **kw)

    monkeypatch.setattr(type(sg.db), "read_many", failing)
    with pytest.raises(OSError, match="disk full"):
        export_parquet(sg, path, layout=layout, row_group_rows=2, overwrite=existing)
    assert calls["n"] == 3
    assert os.listdir(tmp_path) == (["out.parquet"] if existing else [])
    if existing:
        assert path.read_bytes() == b"old content"


def test_writer_failure_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sg = small_store()
    orig = pq.ParquetWriter.write_table
    calls = {"n": 0}

    def failing(self: Any, *args: Any, **kw: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("no space left on device (simulated)")
        return orig(self, *args, **kw)

    monkeypatch.setattr(pq.ParquetWriter, "write_table", failing)
    with pytest.raises(OSError, match="no space"):
        export_parquet(sg, tmp_path / "sub" / "out.parquet", row_group_rows=3)
    assert os.listdir(tmp_path / "sub") == []


def test_export_var_selection(tmp_path: Path) -> None:
    sg = small_store()
    sg.add_data("only_train", np.zeros(6), phase="train")
    # 'all' needs every var in every non-empty phase
    with pytest.raises(InvalidArgumentError, match=r"'only_train'.*\['valid', 'test'\]"):
        export_parquet(sg, tmp_path / "a.parquet")
    with pytest.raises(VarNotFoundError, match="only_train"):
        export_parquet(sg, tmp_path / "a.parquet", var_names=["x", "only_train"])
    res = export_parquet(sg, tmp_path / "a.parquet", var_names=["r", "x"])
    assert pq.read_schema(tmp_path / "a.parquet").names == ["r", "x", "phase"]
    assert res.var_names == ("r", "x")
    res = export_parquet(sg, tmp_path / "t.parquet", phase="train", var_names="only_train")
    assert pq.read_schema(tmp_path / "t.parquet").names == ["only_train"]
    res = export_parquet(sg, tmp_path / "t2.parquet", phase="train")
    assert res.var_names == ("x", "r", "only_train") and res.sizes == {"train": 6}
    export_parquet(sg, tmp_path / "n.parquet", var_names=["x"], phase_column=None)
    table = pq.read_table(tmp_path / "n.parquet")
    assert table.column_names == ["x"] and table.num_rows == 10
    assert json.loads(table.schema.metadata[META_KEY])["phase_column"] is None


def test_export_empty_phases_and_data_ids(tmp_path: Path) -> None:
    sg = StoreGate("numpy", data_id="a")
    sg.add_data("x", np.arange(4), phase="test")
    res = export_parquet(sg, tmp_path / "a.parquet")
    assert res.sizes == {"train": 0, "valid": 0, "test": 4} and res.phases == ("test",)
    assert pq.read_table(tmp_path / "a.parquet").column("phase").to_pylist() == ["test"] * 4
    with pytest.raises(InvalidArgumentError, match="nothing to export"):
        export_parquet(sg, tmp_path / "b.parquet", phase="train")
    with pytest.raises(VarNotFoundError):
        export_parquet(sg, tmp_path / "b.parquet", phase="train", var_names=["x"])
    sg.set_data_id("other")
    res = export_parquet(sg, tmp_path / "c.parquet", data_id="a", phase="test")
    assert res.data_id == "a" and sg.data_id == "other"
    assert not os.path.exists(tmp_path / "b.parquet")


@pytest.mark.parametrize(("kwargs", "exc", "fragment"), [
    ({"layout": "csv"}, InvalidArgumentError, "layout='csv'"),
    ({"phase": "dev"}, InvalidPhaseError, "'dev'"),
    ({"data_id": "nope"}, DataIdNotFoundError, "'nope'"),
    ({"phase_column": "x"}, InvalidArgumentError, "phase_column 'x'"),
    ({"row_group_rows": 0}, InvalidArgumentError, "row_group_rows"),
    ({"compression": "zip"}, InvalidArgumentError, "compression='zip'"),
    ({"var_names": ["x"], "layout": "kinoml"}, InvalidArgumentError, "at least two vars"),
    ({"var_names": ["x", "x"]}, InvalidArgumentError, "twice"),
    ({"var_names": 3}, InvalidArgumentError, "var_names"),
])
def test_bad_export_arguments(tmp_path: Path, kwargs: dict[str, Any],
                              exc: type[BaseException], fragment: str) -> None:
    sg = small_store()
    path = tmp_path / "out.parquet"
    with pytest.raises(exc, match=None) as info:
        export_parquet(sg, path, **kwargs)
    assert fragment in str(info.value)
    assert os.listdir(tmp_path) == []


def test_export_refuses_disagreeing_phases(tmp_path: Path) -> None:
    sg = StoreGate("numpy", data_id="d")
    sg.add_data("x", np.zeros((3, 2), "f4"), phase="train")
    sg.add_data("x", np.zeros((2, 3), "f4"), phase="valid")
    with pytest.raises(ShapeMismatchError, match="'train'"):
        export_parquet(sg, tmp_path / "o.parquet")
    sg.delete_data("x", phase="valid")
    sg.add_data("x", np.zeros((2, 2), "f8"), phase="valid")
    with pytest.raises(DtypeError, match="float64"):
        export_parquet(sg, tmp_path / "o.parquet")
    sg.add_data("y", np.zeros(5), phase="train")
    with pytest.raises(InconsistentLengthError, match="'train'"):
        export_parquet(sg, tmp_path / "o.parquet", phase="train")
    with pytest.raises(InvalidArgumentError, match="StoreGate"):
        export_parquet({"x": 1}, tmp_path / "o.parquet")
    with pytest.raises(InvalidArgumentError, match="data_id"):
        export_parquet(StoreGate("numpy"), tmp_path / "o.parquet")
    assert os.listdir(tmp_path) == []


def test_compression_and_uncompressed(tmp_path: Path) -> None:
    sg = small_store()
    for comp in ("snappy", None, "none", "zstd"):
        export_parquet(sg, tmp_path / "o.parquet", compression=comp, overwrite=True)
        col = pq.ParquetFile(tmp_path / "o.parquet").metadata.row_group(0).column(0)
        assert col.compression == ("UNCOMPRESSED" if comp in (None, "none") else comp.upper())


def test_module_import_is_lazy() -> None:
    code = ("import sys, storegate.convert.parquet; "
            "print(sorted(m for m in ('pyarrow', 'awkward', 'pandas') if m in sys.modules))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=False, env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"
