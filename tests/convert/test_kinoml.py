"""Importing kinoml's Parquet layout (``storegate.convert.import_kinoml_parquet``)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kinoml_fixtures import kinoml_items, write_kinoml_parquet, write_named_parquet

import storegate
from storegate import StoreGate
from storegate.convert import (
    ConversionError,
    KinomlImport,
    SourceFormatError,
    SourceNotFoundError,
    UnsupportedFieldError,
    import_kinoml_parquet,
)
from storegate.errors import (
    InconsistentLengthError,
    IndexOutOfRangeError,
    InvalidArgumentError,
    InvalidNameError,
    InvalidPhaseError,
    MissingDependencyError,
    StoregateError,
    VarExistsError,
)
from storegate.phases import PHASES, split
from storegate.ragged import RaggedArray

ak = pytest.importorskip("awkward")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

N = 120
BACKENDS = ["numpy", "zarr", "hybrid", "parquet"]


# ---------------------------------------------------------------------------------- helpers
def make_gate(backend: str, tmp_path: Path, data_id: str | None = None,
              store: str = "store") -> StoreGate:
    args: dict[str, Any] = {}
    if backend in ("zarr", "hybrid"):
        args = {"output_dir": str(tmp_path / f"{store}.zarr")}
    elif backend == "parquet":
        args = {"output_dir": str(tmp_path / f"{store}.parquet")}
    return StoreGate(backend, args, data_id=data_id)


def reopen(sg: StoreGate, backend: str, tmp_path: Path, store: str = "store") -> StoreGate:
    if backend == "numpy":
        return sg
    data_id = sg.data_id
    sg.close()
    return make_gate(backend, tmp_path, data_id, store)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One kinoml file (several row groups) and the items it holds."""
    ragged, dense, y = kinoml_items(N, seed=1)
    path = tmp_path_factory.mktemp("kinoml") / "kinase.parquet"
    write_kinoml_parquet(path, [ragged, dense], y, row_group_size=50)
    return {"path": path, "ragged": ragged, "dense": dense, "y": y}


def assert_items(got: list[np.ndarray], want: list[np.ndarray], dtype: Any) -> None:
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert isinstance(g, np.ndarray), i
        assert g.dtype == np.dtype(dtype), (i, g.dtype)
        assert g.shape == w.shape, (i, g.shape, w.shape)
        np.testing.assert_array_equal(g, w.astype(dtype), err_msg=f"item {i}")


def snapshot(sg: StoreGate) -> dict[str, Any]:
    """What a failed import must not change: data_ids, their vars per phase, the data_id."""
    out: dict[str, Any] = {"current": sg.data_id, "ids": sg.get_data_ids()}
    for d in out["ids"]:
        out[d] = {ph: sg.db.var_names(d, ph) for ph in PHASES}
    return out


# ---------------------------------------------------------------------------------- round trip
def test_every_item_equals_the_source_on_every_backend(
    backend: str, tmp_path: Path, source: dict[str, Any]
) -> None:
    sg = make_gate(backend, tmp_path)
    res = import_kinoml_parquet(source["path"], sg, data_id="kinase")
    assert isinstance(res, KinomlImport)
    assert res.data_id == "kinase" and sg.data_id == "kinase"
    assert res.sizes == {"train": N, "valid": 0, "test": 0}
    assert res.feature_names == ["X_a0", "X_a1"] and res.label_name == "y"
    assert [(v.name, v.field, v.ragged) for v in res.vars] == [
        ("X_a0", "0", True), ("X_a1", "1", False), ("y", "2", False)]

    sg = reopen(sg, backend, tmp_path)
    assert sg.get_var_names("train") == ["X_a0", "X_a1", "y"]
    assert sg.get_var_shapes(["X_a0", "X_a1", "y"]) == [(None, 16), (8,), ()]
    assert sg.get_metadata()["total_events"] == [N, 0, 0]
    assert_items(sg.get_data("X_a0", "train", ragged_as="list"), source["ragged"], "float64")
    dense = sg.get_data("X_a1", "train")
    assert dense.dtype == np.int64 and dense.shape == (N, 8)
    np.testing.assert_array_equal(dense, np.stack(source["dense"]))
    y = sg.get_data("y", "train")
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, source["y"])
    # random gathers, every return type
    idx = np.array([N - 1, 3, 77, 3])
    raw = sg.get_data("X_a0", "train", idx, ragged_as="raw")
    assert isinstance(raw, RaggedArray)
    assert_items(raw.to_list(), [source["ragged"][i] for i in idx], "float64")
    awk = sg.get_data("X_a0", "train", idx)
    assert isinstance(awk, ak.Array) and len(awk) == 4
    np.testing.assert_array_equal(ak.to_numpy(awk[1]), source["ragged"][3])
    one = sg.get_data("X_a0", "train", 77)
    np.testing.assert_array_equal(one, source["ragged"][77])
    sg.close()


def test_dtype_float32_downcasts_float_fields_only(
    backend: str, tmp_path: Path, source: dict[str, Any]
) -> None:
    sg = make_gate(backend, tmp_path, data_id="d")
    res = import_kinoml_parquet(source["path"], sg, dtype="float32")
    assert [str(v.dtype) for v in res.vars] == ["float32", "int64", "float32"]
    assert [str(v.source_dtype) for v in res.vars] == ["float64", "int64", "float32"]
    sg = reopen(sg, backend, tmp_path)
    assert_items(sg.get_data("X_a0", "train", ragged_as="list"), source["ragged"], "float32")
    assert sg.get_data("X_a1", "train").dtype == np.int64
    assert sg.get_data("y", "train").dtype == np.float32
    sg.close()


def test_phase_fractions_split_rows_like_add_data(
    backend: str, tmp_path: Path, source: dict[str, Any]
) -> None:
    sg = make_gate(backend, tmp_path, data_id="d")
    res = import_kinoml_parquet(source["path"], sg, phase=(0.7, 0.2, 0.1), batch_rows=17)
    pieces = split((0.7, 0.2, 0.1), N)
    assert res.sizes == {ph: b - a for ph, a, b in pieces}
    sg = reopen(sg, backend, tmp_path)
    for ph, a, b in pieces:
        assert_items(sg.get_data("X_a0", ph, ragged_as="list"), source["ragged"][a:b],
                     "float64")
        np.testing.assert_array_equal(sg.get_data("X_a1", ph), np.stack(source["dense"][a:b]))
        np.testing.assert_array_equal(sg.get_data("y", ph), source["y"][a:b])
    sg.close()


def test_phase_labels_per_row(backend: str, tmp_path: Path, source: dict[str, Any]) -> None:
    rng = np.random.default_rng(5)
    labels = rng.choice(np.array(["train", "val", "test"]), N)
    sg = make_gate(backend, tmp_path, data_id="d")
    res = import_kinoml_parquet(source["path"], sg, phase=labels, batch_rows=32)
    for ph, lab in zip(PHASES, ("train", "val", "test"), strict=True):
        rows = np.flatnonzero(labels == lab)
        assert res.sizes[ph] == rows.size
        assert_items(sg.get_data("X_a0", ph, ragged_as="list"),
                     [source["ragged"][i] for i in rows], "float64")
        np.testing.assert_array_equal(sg.get_data("y", ph), source["y"][rows])
    sg.close()


def test_phase_mapping_of_kinoml_indices(tmp_path: Path, source: dict[str, Any]) -> None:
    perm = np.random.default_rng(2).permutation(N)
    idx = {"idx_train": perm[:80], "idx_val": perm[80:100], "idx_test": perm[100:110]}
    sg = StoreGate("numpy", data_id="d")
    res = import_kinoml_parquet(source["path"], sg, phase=idx)
    assert res.sizes == {"train": 80, "valid": 20, "test": 10} and res.skipped == 10
    for ph, key in zip(PHASES, idx, strict=True):
        rows = np.sort(idx[key])  # rows keep the file order
        assert_items(sg.get_data("X_a0", ph, ragged_as="list"),
                     [source["ragged"][i] for i in rows], "float64")


def test_integer_phase_labels_and_named_phase(tmp_path: Path, source: dict[str, Any]) -> None:
    sg = StoreGate("numpy", data_id="d")
    codes = np.arange(N) % 3
    res = import_kinoml_parquet(source["path"], sg, phase=codes)
    assert res.sizes == {"train": 40, "valid": 40, "test": 40}
    np.testing.assert_array_equal(sg.get_data("y", "test"), source["y"][2::3])
    sg2 = StoreGate("numpy", data_id="d")
    res = import_kinoml_parquet(source["path"], sg2, phase="test")
    assert res.sizes == {"train": 0, "valid": 0, "test": N}


def test_streams_in_batches_within_one_row_group(tmp_path: Path) -> None:
    ragged, dense, y = kinoml_items(90, seed=3)
    path = write_kinoml_parquet(tmp_path / "one.parquet", [ragged, dense], y)
    assert pq.ParquetFile(path).metadata.num_row_groups == 1  # kinoml's default layout
    sg = StoreGate("numpy", data_id="d")
    calls: list[tuple[str, int]] = []
    orig = sg.add_data

    def spy(var: str, data: Any, phase: Any = "train", **kw: Any) -> None:
        calls.append((var, len(data)))
        orig(var, data, phase=phase, **kw)

    sg.add_data = spy  # type: ignore[method-assign,assignment]
    import_kinoml_parquet(path, sg, batch_rows=20, phase=(0.5, 0.5))
    assert max(n for _, n in calls) <= 20
    assert sum(n for v, n in calls if v == "X_a0") == 90
    assert_items(sg.get_data("X_a0", "train", ragged_as="list") +
                 sg.get_data("X_a0", "valid", ragged_as="list"), ragged, "float64")


def test_same_shape_nested_field_becomes_a_regular_var(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    same = [rng.standard_normal((5, 3)) for _ in range(30)]
    path = write_kinoml_parquet(tmp_path / "same.parquet", [same], np.zeros(30))
    sg = StoreGate("numpy", data_id="d")
    res = import_kinoml_parquet(path, sg, batch_rows=7)
    assert res.vars[0].ragged is False and res.vars[0].shape == (5, 3)
    got = sg.get_data("X_a0", "train")
    assert got.shape == (30, 5, 3) and got.dtype == np.float64
    np.testing.assert_array_equal(got, np.stack(same))


@pytest.mark.parametrize("backend_name", ["numpy", "zarr"])
def test_field_uniform_in_the_first_batch_but_ragged_later(
    backend_name: str, tmp_path: Path
) -> None:
    rng = np.random.default_rng(9)
    lengths = [5] * 25 + list(rng.integers(1, 9, 35))
    items = [rng.standard_normal((k, 4)) for k in lengths]
    same = [np.full((2, 3), i) for i in range(60)]
    path = write_kinoml_parquet(tmp_path / "late.parquet", [items, same], np.arange(60.0))
    sg = make_gate(backend_name, tmp_path, data_id="keep")
    calls = {"n": 0}
    orig = sg.add_data

    def spy(*args: Any, **kw: Any) -> None:
        calls["n"] += 1
        orig(*args, **kw)

    sg.add_data = spy  # type: ignore[method-assign]
    res = import_kinoml_parquet(path, sg, data_id="d", batch_rows=10, phase=(0.5, 0.5))
    assert calls["n"] > 3 * 6  # it wrote, found the field ragged, and wrote again
    assert [(v.ragged, v.shape) for v in res.vars] == [(True, (None, 4)), (False, (2, 3)),
                                                      (False, ())]
    assert sg.get_var_names("train") == ["X_a0", "X_a1", "y"]
    got = sg.get_data("X_a0", "train", ragged_as="list") + sg.get_data(
        "X_a0", "valid", ragged_as="list")
    assert_items(got, items, "float64")
    np.testing.assert_array_equal(sg.get_data("X_a1", "valid"), np.stack(same[30:]))
    sg.close()


def test_empty_items_first_then_a_shape_pass(tmp_path: Path) -> None:
    items = [np.zeros((0, 16))] * 12 + [np.ones((k, 16)) for k in (3, 1, 4)]
    path = write_kinoml_parquet(tmp_path / "empty_first.parquet", [items], np.zeros(15))
    sg = StoreGate("numpy", data_id="d")
    res = import_kinoml_parquet(path, sg, batch_rows=5)
    assert res.vars[0].ragged and res.vars[0].shape == (None, 16)
    got = sg.get_data("X_a0", "train", ragged_as="list")
    assert [g.shape for g in got] == [(0, 16)] * 12 + [(3, 16), (1, 16), (4, 16)]


def test_transpose_stores_items_k_by_n_as_rows_n_by_k(tmp_path: Path) -> None:
    rng = np.random.default_rng(10)
    # kinoml's unpadded one-hot (53, L) and an edge index (2, E); the first 12 share L, so the
    # first batch guesses regular and a later one turns the field ragged
    L = [7] * 12 + list(rng.integers(1, 12, 28))
    onehot = [rng.standard_normal((5, n)) for n in L]
    edges = [rng.integers(0, 9, (2, int(e))) for e in rng.integers(0, 6, 40)]
    square = [rng.standard_normal((3, 4)) for _ in range(40)]
    path = write_kinoml_parquet(tmp_path / "graph.parquet", [onehot, edges, square],
                                np.arange(40.0))
    sg = StoreGate("numpy", data_id="d")
    res = import_kinoml_parquet(path, sg, transpose=["0", "X_a1", "2"], batch_rows=6)
    assert [(v.ragged, v.shape, v.transposed) for v in res.vars] == [
        (True, (None, 5), True), (True, (None, 2), True), (False, (4, 3), True),
        (False, (), False)]
    assert_items(sg.get_data("X_a0", "train", ragged_as="list"), [a.T for a in onehot],
                 "float64")
    assert_items(sg.get_data("X_a1", "train", ragged_as="list"), [a.T for a in edges],
                 "int64")
    np.testing.assert_array_equal(sg.get_data("X_a2", "train"),
                                  np.stack([a.T for a in square]))


@pytest.mark.parametrize(("items", "kwargs", "exc", "fragment"), [
    ([np.zeros((2, 3)), np.zeros((4, 3))], {"transpose": ["0"]}, UnsupportedFieldError,
     "vary along axis 1 (lengths 2 and 4"),
    ([[[1.0, 2.0], [3.0]], [[1.0]]], {"transpose": ["0"]}, UnsupportedFieldError,
     "not a 2-D array"),
    ([np.zeros((2, 3)), np.zeros((2, 3))], {"transpose": ["1"]}, InvalidArgumentError,
     "not a feature field"),
    ([np.zeros((2, 3)), np.zeros((2, 3))], {"transpose": "0"}, InvalidArgumentError,
     "collection"),
    ([np.zeros((2, 3, 1)), np.zeros((2, 3, 1))], {"transpose": ["0"]}, UnsupportedFieldError,
     "only 2-D items"),
])
def test_transpose_errors(tmp_path: Path, items: list[Any], kwargs: dict[str, Any],
                          exc: type[BaseException], fragment: str) -> None:
    path = write_kinoml_parquet(tmp_path / "t.parquet", [items], np.zeros(len(items)))
    sg = StoreGate("numpy", data_id="keep")
    expect_clean_failure(sg, lambda: import_kinoml_parquet(path, sg, **kwargs), exc, fragment)


def test_named_fields_and_phase_field(tmp_path: Path) -> None:
    ragged, dense, y = kinoml_items(40, seed=6)
    split_col = np.array(["train", "valid", "test", "train"] * 10)
    path = tmp_path / "named.parquet"
    pq.write_table(pa.table({
        "smiles": pa.array([r.tolist() for r in ragged]),
        "split": pa.array(split_col),
        "fp": pa.array([d.tolist() for d in dense], type=pa.list_(pa.int64(), 8)),
        "affinity": pa.array(y),
    }), path, row_group_size=16)
    sg = StoreGate("numpy", data_id="d")
    res = import_kinoml_parquet(path, sg, phase_field="split",
                                var_names={"fp": "fingerprint"}, label_name="pIC50")
    assert [v.name for v in res.vars] == ["smiles", "fingerprint", "pIC50"]
    assert res.sizes == {"train": 20, "valid": 10, "test": 10}
    rows = np.flatnonzero(split_col == "valid")
    assert_items(sg.get_data("smiles", "valid", ragged_as="list"),
                 [ragged[i] for i in rows], "float64")
    np.testing.assert_array_equal(sg.get_data("fingerprint", "valid"),
                                  np.stack([dense[i] for i in rows]))
    np.testing.assert_array_equal(sg.get_data("pIC50", "valid"), y[rows])

    # ak.to_parquet of a record with named fields: plain top-level columns
    path2 = write_named_parquet(tmp_path / "named_ak.parquet", {"x": ragged, "label": y})
    sg2 = StoreGate("numpy", data_id="d")
    res2 = import_kinoml_parquet(path2, sg2)
    assert res2.feature_names == ["x"] and res2.label_name == "y"


def test_directory_and_list_of_files_import_as_one_dataset(tmp_path: Path) -> None:
    parts = [kinoml_items(30, seed=s) for s in (7, 8)]
    d = tmp_path / "groups"
    d.mkdir()
    for i, (r, f, y) in enumerate(parts):
        write_kinoml_parquet(d / f"group{i}.parquet", [r, f], y)
    sg = StoreGate("numpy", data_id="d")
    res = import_kinoml_parquet(d, sg, var_names=["conf", "fp"])
    assert res.sizes["train"] == 60 and len(res.files) == 2
    assert_items(sg.get_data("conf", "train", ragged_as="list"),
                 parts[0][0] + parts[1][0], "float64")
    sg2 = StoreGate("numpy", data_id="d")
    res2 = import_kinoml_parquet([d / "group1.parquet", d / "group0.parquet"], sg2)
    np.testing.assert_array_equal(sg2.get_data("y", "train"),
                                  np.concatenate([parts[1][2], parts[0][2]]))
    assert res2.files[0].endswith("group1.parquet")


def test_imports_next_to_existing_vars_of_the_same_length(tmp_path: Path,
                                                          source: dict[str, Any]) -> None:
    sg = StoreGate("numpy", data_id="d")
    sg.add_data("weight", np.ones(N), phase=(0.5, 0.5))
    import_kinoml_parquet(source["path"], sg, phase=(0.5, 0.5))
    assert sg.get_var_names("valid") == ["weight", "X_a0", "X_a1", "y"]


# ---------------------------------------------------------------------------------- errors
def expect_clean_failure(sg: StoreGate, call: Callable[[], Any], exc: type[BaseException],
                         *fragments: str) -> BaseException:
    before = snapshot(sg)
    with pytest.raises(exc) as info:
        call()
    assert isinstance(info.value, StoregateError)
    text = str(info.value)
    for frag in fragments:
        assert frag in text, (frag, text)
    assert "Traceback" not in text
    assert info.value.__cause__ is None or isinstance(info.value.__cause__, StoregateError)
    assert snapshot(sg) == before
    return info.value


def test_missing_file(backend: str, tmp_path: Path) -> None:
    sg = make_gate(backend, tmp_path, data_id="keep")
    err = expect_clean_failure(sg, lambda: import_kinoml_parquet(
        tmp_path / "nope.parquet", sg, data_id="new"), FileNotFoundError, "nope.parquet")
    assert isinstance(err, SourceNotFoundError) and err.path == str(tmp_path / "nope.parquet")
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    expect_clean_failure(sg, lambda: import_kinoml_parquet(empty, sg), SourceNotFoundError,
                         "empty_dir", "no Parquet files")
    sg.close()


def test_not_a_parquet_file(backend: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PK\x03\x04 this is a zip, not parquet" * 10)
    sg = make_gate(backend, tmp_path, data_id="keep")
    err = expect_clean_failure(sg, lambda: import_kinoml_parquet(bad, sg, data_id="new"),
                               SourceFormatError, "bad.parquet", "not a readable Parquet")
    assert isinstance(err, ValueError) and isinstance(err, ConversionError)
    sg.close()


def test_truncated_file(tmp_path: Path, source: dict[str, Any]) -> None:
    data = Path(source["path"]).read_bytes()
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(data[: len(data) // 2])
    sg = StoreGate("numpy", data_id="keep")
    expect_clean_failure(sg, lambda: import_kinoml_parquet(cut, sg), SourceFormatError,
                         "cut.parquet")


def test_not_kinoml_layout(backend: str, tmp_path: Path) -> None:
    path = tmp_path / "one_col.parquet"
    pq.write_table(pa.table({"x": np.arange(5.0)}), path)
    sg = make_gate(backend, tmp_path, data_id="keep")
    expect_clean_failure(sg, lambda: import_kinoml_parquet(path, sg), SourceFormatError,
                         "one_col.parquet", "not in kinoml's layout", "label")
    empty = tmp_path / "empty.parquet"
    write_kinoml_parquet(empty, [[np.zeros(2)]], np.zeros(1))
    pq.write_table(pq.read_table(empty).slice(0, 0), empty)
    expect_clean_failure(sg, lambda: import_kinoml_parquet(empty, sg), SourceFormatError,
                         "no rows")
    sg.close()


@pytest.mark.parametrize("backend_name", ["numpy", "zarr", "parquet"])
def test_inner_axis_varying_late_in_the_file_leaves_nothing_behind(
    backend_name: str, tmp_path: Path
) -> None:
    items = [np.zeros((3, 2)) for _ in range(30)] + [np.zeros((3, 5))]
    path = write_kinoml_parquet(tmp_path / "late_bad.parquet", [items], np.zeros(31))
    sg = make_gate(backend_name, tmp_path, data_id="keep")
    sg.add_data("a", np.arange(4), phase="test")
    sg.compile()
    before = snapshot(sg)
    with pytest.raises(UnsupportedFieldError,
                       match=r"vary along axis 1 \(lengths 2 and 5, near row 24"):
        import_kinoml_parquet(path, sg, batch_rows=8)
    assert snapshot(sg) == before
    sg = reopen(sg, backend_name, tmp_path)
    assert snapshot(sg) == before
    np.testing.assert_array_equal(sg.get_data("a", "test"), np.arange(4))
    sg.close()


@pytest.mark.parametrize("case", ["strings", "nulls", "inner_axis_varies", "nested_record"])
def test_unsupported_fields(backend: str, tmp_path: Path, case: str) -> None:
    path = tmp_path / f"{case}.parquet"
    y = np.zeros(3, dtype="f4")
    if case == "strings":
        write_named_parquet(path, {"smiles": ak.Array(["CCO", "C", "N"]), "y": y})
        want = "strings"
    elif case == "nulls":
        write_kinoml_parquet(path, [[[1.0, 2.0], [None], [3.0]]], y)
        want = "missing values"
    elif case == "inner_axis_varies":
        # an edge index (2, E_i): the varying axis is not the first one
        write_kinoml_parquet(path, [[np.zeros((2, 3)), np.zeros((2, 5)), np.zeros((2, 1))]], y)
        want = "pass transpose=['0']"
    else:
        pq.write_table(pa.table({"rec": pa.array([{"a": 1}, {"a": 2}, {"a": 3}]), "y": y}),
                       path)
        want = "nested records"
    sg = make_gate(backend, tmp_path, data_id="keep")
    err = expect_clean_failure(sg, lambda: import_kinoml_parquet(path, sg, data_id="new"),
                               UnsupportedFieldError, f"{case}.parquet", want)
    assert isinstance(err, TypeError)
    sg.close()


def test_existing_var_is_refused_before_anything_is_written(
    backend: str, tmp_path: Path, source: dict[str, Any]
) -> None:
    sg = make_gate(backend, tmp_path, data_id="d")
    sg.add_data("y", np.zeros(N, dtype="f4"))
    sg.compile()
    expect_clean_failure(sg, lambda: import_kinoml_parquet(source["path"], sg), VarExistsError,
                         "'y'", "delete_data")
    # a phase that already holds rows of another length
    sg2 = make_gate(backend, tmp_path, data_id="d", store="other")
    sg2.add_data("w", np.zeros(5))
    expect_clean_failure(sg2, lambda: import_kinoml_parquet(source["path"], sg2),
                         InconsistentLengthError, "5 rows", str(N))
    sg.close()
    sg2.close()


@pytest.mark.parametrize(("kwargs", "exc", "fragment"), [
    ({"phase": (0.5, 0.6)}, InvalidPhaseError, "sum"),
    ({"phase": np.array(["train", "dev"] * (N // 2))}, InvalidPhaseError, "'dev'"),
    ({"phase": np.zeros(3, dtype=int)}, InvalidPhaseError, f"({N} rows)"),
    ({"phase": {"train": [0, 1], "test": [1]}}, InvalidPhaseError, "row 1"),
    ({"phase": {"train": [N + 5]}}, IndexOutOfRangeError, "reach row"),
    ({"phase": "all"}, InvalidPhaseError, "'all'"),
    ({"phase_field": "9"}, InvalidArgumentError, "not a field"),
    ({"phase": "train", "phase_field": "2"}, InvalidArgumentError, "not both"),
    ({"dtype": "int32"}, InvalidArgumentError, "floating-point"),
    ({"batch_rows": 0}, InvalidArgumentError, "batch_rows"),
    ({"var_names": ["a"]}, InvalidArgumentError, "2 feature fields"),
    ({"var_names": {"7": "a"}}, InvalidArgumentError, "'7'"),
    ({"var_names": ["a", "y"]}, InvalidNameError, "twice"),
    ({"label_name": "a/b"}, InvalidNameError, "a/b"),
    ({"data_id": "../x"}, InvalidNameError, "../x"),
])
def test_bad_arguments(tmp_path: Path, source: dict[str, Any], kwargs: dict[str, Any],
                       exc: type[BaseException], fragment: str) -> None:
    sg = make_gate("zarr", tmp_path, data_id="keep")
    expect_clean_failure(sg, lambda: import_kinoml_parquet(source["path"], sg, **kwargs), exc,
                         fragment)
    sg.close()


def test_not_a_storegate(source: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgumentError, match="StoreGate"):
        import_kinoml_parquet(source["path"], {"backend": "numpy"})
    with pytest.raises(InvalidArgumentError, match="data_id"):
        import_kinoml_parquet(source["path"], StoreGate("numpy"))


@pytest.mark.parametrize("backend_name", ["numpy", "zarr"])
def test_failure_while_writing_rolls_back(
    backend_name: str, tmp_path: Path, source: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    sg = make_gate(backend_name, tmp_path, data_id="keep")
    sg.add_data("a", np.arange(3), phase="test")
    before = snapshot(sg)
    orig = StoreGate.add_data
    count = {"n": 0}

    def failing(self: StoreGate, *args: Any, **kw: Any) -> None:
        count["n"] += 1
        if count["n"] == 5:
            raise OSError("disk full (simulated)")
        orig(self, *args, **kw)

    monkeypatch.setattr(StoreGate, "add_data", failing)
    with pytest.raises(OSError, match="disk full"):
        import_kinoml_parquet(source["path"], sg, data_id="new", batch_rows=40)
    monkeypatch.undo()
    assert count["n"] == 5
    assert snapshot(sg) == before
    # the same import into the existing data_id: its created vars are removed again
    count["n"] = 0
    monkeypatch.setattr(StoreGate, "add_data", failing)
    with pytest.raises(OSError):
        import_kinoml_parquet(source["path"], sg, batch_rows=40, phase=(0.5, 0.5))
    monkeypatch.undo()
    assert snapshot(sg) == before
    np.testing.assert_array_equal(sg.get_data("a", "test"), np.arange(3))
    sg.close()


def test_missing_pyarrow_is_a_clear_import_error(
    source: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ImportError, match="pyarrow") as info:
        import_kinoml_parquet(source["path"], StoreGate("numpy", data_id="d"))
    assert isinstance(info.value, MissingDependencyError)


def test_import_is_lazy() -> None:
    code = ("import sys, storegate.convert; "
            "print(sorted(m for m in ('pyarrow', 'awkward') if m in sys.modules))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=False, env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_public_names() -> None:
    import storegate.convert as convert

    assert set(convert.__all__) >= {"import_kinoml_parquet", "SourceFormatError"}
    assert issubclass(convert.ConversionError, storegate.StoregateError)
