"""NPZ import and export (``storegate.convert.import_npz`` / ``export_npz``).

Source files are written exactly as kinoml writes them: ``np.savez(path, **dict_of_arrays,
**indices)`` (or ``np.savez_compressed``) with the layouts ``X``, ``X_s{i}_`` and
``X_s{i}_a{j}_`` (see /work/shared/reference/kinoml-datasets-and-marius.md §2).
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from storegate import StoreGate
from storegate.convert import (
    ConversionError,
    DestinationExistsError,
    SourceFormatError,
    SourceNotFoundError,
    UnsupportedFieldError,
    export_npz,
    import_npz,
)
from storegate.convert import npz as npz_module
from storegate.convert.npzfile import NpzReader
from storegate.errors import (
    DataIdNotFoundError,
    InconsistentLengthError,
    IndexOutOfRangeError,
    InvalidArgumentError,
    InvalidPhaseError,
    StoregateError,
    VarExistsError,
    VarNotFoundError,
)
from storegate.phases import PHASES
from storegate.ragged import RaggedArray

N = 13  # > 10 items: s10 sorts after s9 numerically, before s2 lexicographically


# ---------------------------------------------------------------------------------- helpers
def make_gate(backend: str, tmp_path: Path, name: str = "store",
              data_id: str | None = None) -> StoreGate:
    if backend == "numpy":
        return StoreGate("numpy", data_id=data_id)
    suffix = ".zarr" if backend in ("zarr", "hybrid") else ".parquet"
    return StoreGate(backend, {"output_dir": str(tmp_path / f"{name}{suffix}")},
                     data_id=data_id)


@pytest.fixture(params=["numpy", "zarr"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def savez(path: Path, arrays: dict[str, Any], compressed: bool = False) -> Path:
    """What kinoml does: ``np.savez(path, **dict_of_arrays, **indices)``."""
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    return path


def assert_same(got: Any, want: Any) -> None:
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    assert got.shape == want.shape, (got.shape, want.shape)
    np.testing.assert_array_equal(got, want)


def assert_rows(got: list[np.ndarray], want: list[np.ndarray]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert_same(g, w)


def assert_npz_equal(got: str | Path, want: str | Path) -> None:
    """Same member names, and every member equal in value, dtype and shape."""
    with np.load(want, allow_pickle=False) as a, np.load(got, allow_pickle=False) as b:
        assert sorted(b.files) == sorted(a.files)
        for key in a.files:
            assert_same(b[key], a[key])


def ragged_items(n: int, k: tuple[int, ...] = (3,), dtype: str = "f8",
                 base: int = 1000) -> list[np.ndarray]:
    """Item ``i`` has ``i % 4 + 1`` rows (so lengths differ) filled with ``i * base + r``."""
    out = []
    for i in range(n):
        rows = i % 4 + 1
        size = rows * int(np.prod(k))
        out.append((np.arange(size) + i * base).astype(dtype).reshape((rows, *k)))
    return out


def dense_items(n: int, k: tuple[int, ...] = (8,), dtype: str = "i8") -> list[np.ndarray]:
    return [np.full(k, i, dtype=dtype) for i in range(n)]


def item_keys(n: int, j: int | None, underscore: bool = True) -> list[str]:
    u = "_" if underscore else ""
    return [f"X_s{i}{u}" if j is None else f"X_s{i}_a{j}{u}" for i in range(n)]


def lexicographic(d: dict[str, Any]) -> dict[str, Any]:
    """The same members in string order (X_s10_ before X_s2_) so the zip order is not the item
    order."""
    return {k: d[k] for k in sorted(d)}


def contiguous_idx(n: int, n_train: int, n_val: int) -> dict[str, np.ndarray]:
    return {"idx_train": np.arange(0, n_train), "idx_val": np.arange(n_train, n_train + n_val),
            "idx_test": np.arange(n_train + n_val, n)}


def kinoml_arrays_file(n: int = N, underscore: bool = True) -> tuple[dict[str, Any],
                                                                     list[np.ndarray],
                                                                     list[np.ndarray]]:
    """``X_s{i}_a0_`` ragged (n_i, 3) float64, ``X_s{i}_a1_`` dense (8,) int64, y float32."""
    a0, a1 = ragged_items(n), dense_items(n)
    d: dict[str, Any] = {}
    for i in range(n):
        u = "_" if underscore else ""
        d[f"X_s{i}_a0{u}"] = a0[i]
        d[f"X_s{i}_a1{u}"] = a1[i]
    d["y"] = np.arange(n, dtype="f4") / 2
    return d, a0, a1


def phase_rows(sg: StoreGate, var: str, phase: str) -> Any:
    return sg.get_data(var, phase, ragged_as="list")


def snapshot(sg: StoreGate) -> dict[str, Any]:
    """Everything a failed import must leave unchanged: data_ids, attributes, var names and
    order, dtype and content of every var (ragged ones included)."""
    db = sg.db
    out: dict[str, Any] = {}
    for data_id in db.data_ids():
        entry: dict[str, Any] = {"attrs": db.get_attrs(data_id)}
        for phase in PHASES:
            cols = {}
            for v in db.var_names(data_id, phase):
                info = db.info(data_id, phase, v)
                data = db.read(data_id, phase, v, slice(0, info.length, 1))
                if isinstance(data, RaggedArray):
                    cols[v] = ("ragged", str(data.values.dtype), data.values.tobytes(),
                               data.offsets.tobytes())
                else:
                    cols[v] = (str(data.dtype), data.shape, data.tobytes())
            entry[phase] = (db.var_names(data_id, phase), cols)
        out[data_id] = entry
    return out


def all_files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")} if root.exists() else set()


# ---------------------------------------------------------------------------------- kinoml
@pytest.mark.parametrize("compressed", [False, True], ids=["savez", "compressed"])
def test_kinoml_dense_X(backend: str, tmp_path: Path, compressed: bool) -> None:
    X = np.arange(N * 4 * 3, dtype="f8").reshape(N, 4, 3) / 3
    y = np.linspace(0, 1, N, dtype="f4")
    path = savez(tmp_path / "dense.npz", {"X": X, "y": y}, compressed)
    sg = make_gate(backend, tmp_path)
    res = import_npz(path, sg, data_id="kin")
    assert res.data_id == "kin" and sg.data_id == "kin"
    assert res.files == (str(path),)
    assert res.var_names == ["X", "y"]
    assert [(v.ragged, v.shape, v.dtype) for v in res.vars] == [
        (False, (4, 3), np.dtype("f8")), (False, (), np.dtype("f4"))]
    assert res.sizes == {"train": N, "valid": 0, "test": 0} and res.skipped == 0
    assert_same(sg.get_data("X", "train"), X)
    assert_same(sg.get_data("y", "train"), y)
    assert sg.get_var_names("train") == ["X", "y"]


@pytest.mark.parametrize("underscore", [True, False], ids=["X_s_", "X_s"])
@pytest.mark.parametrize("item_shape", [(3,), ()], ids=["items-2d", "items-1d"])
@pytest.mark.parametrize("order", ["numeric", "lexicographic"])
def test_kinoml_ragged_X_s(backend: str, tmp_path: Path, underscore: bool,
                           item_shape: tuple[int, ...], order: str) -> None:
    items = ragged_items(N, item_shape)
    d = dict(zip(item_keys(N, None, underscore), items, strict=True))
    d["y"] = np.arange(N, dtype="f4")
    if order == "lexicographic":
        d = lexicographic(d)
    path = savez(tmp_path / "ragged.npz", d)
    with NpzReader(path) as npz:  # the zip really holds s10 before s2 in that case
        keys = npz.keys()
        assert (keys.index(item_keys(N, None, underscore)[10])
                < keys.index(item_keys(N, None, underscore)[2])) == (order != "numeric")
    sg = make_gate(backend, tmp_path)
    res = import_npz(path, sg, data_id="kin")
    assert res.var_names == ["X", "y"]
    x = res.vars[0]
    assert x.ragged and x.shape == (None, *item_shape) and x.field == "X_s{i}"
    assert x.dtype == np.dtype("f8")
    got = phase_rows(sg, "X", "train")
    assert_rows(got, items)  # row i is item i (s10 after s9)
    assert_same(sg.get_data("X", "train", 10), items[10])
    assert sg.get_var_shapes("X", "train") == (None, *item_shape)


@pytest.mark.parametrize("underscore", [True, False])
@pytest.mark.parametrize("compressed", [False, True], ids=["savez", "compressed"])
def test_kinoml_X_s_a(backend: str, tmp_path: Path, underscore: bool, compressed: bool) -> None:
    d, a0, a1 = kinoml_arrays_file(N, underscore)
    path = savez(tmp_path / "sa.npz", lexicographic(d), compressed)
    sg = make_gate(backend, tmp_path)
    res = import_npz(path, sg, data_id="kin")
    assert res.var_names == ["X_a0", "X_a1", "y"]
    assert [(v.name, v.ragged, v.shape) for v in res.vars] == [
        ("X_a0", True, (None, 3)), ("X_a1", False, (8,)), ("y", False, ())]
    assert [v.field for v in res.vars] == ["X_s{i}_a0", "X_s{i}_a1", "y"]
    assert_rows(phase_rows(sg, "X_a0", "train"), a0)
    assert_same(sg.get_data("X_a1", "train"), np.stack(a1))  # regular var, int64 kept
    assert_same(sg.get_data("y", "train"), d["y"])


def test_kinoml_array_numbers_sort_numerically(tmp_path: Path) -> None:
    """Arrays a0..a11: vars X_a0 .. X_a11 in numeric order, each from its own members."""
    n, m = 3, 12
    d = {f"X_s{i}_a{j}_": np.full(2, 100 * i + j, "i4") for i in range(n) for j in range(m)}
    d["y"] = np.zeros(n, "f4")
    path = savez(tmp_path / "many_a.npz", lexicographic(d))
    sg = StoreGate("numpy")
    res = import_npz(path, sg, data_id="k")
    assert res.var_names == [f"X_a{j}" for j in range(m)] + ["y"]
    for j in range(m):
        assert_same(sg.get_data(f"X_a{j}", "train"),
                    np.array([[100 * i + j] * 2 for i in range(n)], "i4"))


def test_kinoml_other_letters_and_no_label(tmp_path: Path) -> None:
    """Any letters may stand for s and a (kinoml's parser drops them); no y is fine."""
    d = {f"X_p{i}_b{j}_": np.full(2, i, "f4") for i in range(4) for j in range(2)}
    path = savez(tmp_path / "letters.npz", d)
    sg = StoreGate("numpy")
    res = import_npz(path, sg, data_id="k")
    assert res.var_names == ["X_a0", "X_a1"]
    assert sg.db.get_attrs("k")["source"]["letters"] == ["p", "b"]
    out = export_npz(sg, tmp_path / "back.npz")
    assert_npz_equal(out.path, path)


def test_dense_array_j_with_equal_shapes_is_a_regular_var(tmp_path: Path) -> None:
    d = {f"X_s{i}_a0_": np.full((2, 3), i, "f4") for i in range(N)}
    d |= {f"X_s{i}_a1_": r for i, r in enumerate(ragged_items(N, (2,), "i2"))}
    path = savez(tmp_path / "j.npz", d)
    sg = StoreGate("numpy")
    res = import_npz(path, sg, data_id="k")
    assert [(v.name, v.ragged, v.shape) for v in res.vars] == [
        ("X_a0", False, (2, 3)), ("X_a1", True, (None, 2))]
    assert_same(sg.get_data("X_a0", "train"), np.stack([d[f"X_s{i}_a0_"] for i in range(N)]))


def test_X_s_with_equal_shapes_stays_ragged(tmp_path: Path) -> None:
    """X_s{i}_ is kinoml's ragged layout: one var X, ragged even when shapes agree."""
    items = [np.full((2, 3), i, "f8") for i in range(5)]
    path = savez(tmp_path / "eq.npz", {f"X_s{i}_": a for i, a in enumerate(items)})
    sg = StoreGate("numpy")
    res = import_npz(path, sg, data_id="k")
    assert res.vars[0].ragged and res.vars[0].shape == (None, 3)
    assert_rows(phase_rows(sg, "X", "train"), items)
    export_npz(sg, tmp_path / "back.npz")
    assert_npz_equal(tmp_path / "back.npz", path)


def test_items_of_mixed_dtypes_promote(tmp_path: Path) -> None:
    items = [np.ones((2, 2), "f4"), np.ones((3, 2), "f8"), np.ones((1, 2), "i2")]
    path = savez(tmp_path / "mixed.npz", {f"X_s{i}_": a for i, a in enumerate(items)})
    sg = StoreGate("numpy")
    res = import_npz(path, sg, data_id="k")
    assert res.vars[0].dtype == np.dtype("f8")
    assert sg.get_data("X", "train", ragged_as="raw").values.dtype == np.dtype("f8")


# ---------------------------------------------------------------------------------- phases
def test_idx_members_are_phases_in_file_order(backend: str, tmp_path: Path) -> None:
    d, a0, a1 = kinoml_arrays_file(N)
    # indices listed out of order; rows 5 and 11 are in no index
    d |= {"idx_train": [9, 0, 3, 12, 1, 6], "idx_val": [8, 2], "idx_test": [10, 4, 7]}
    path = savez(tmp_path / "idx.npz", d)
    sg = make_gate(backend, tmp_path)
    res = import_npz(path, sg, data_id="kin")
    assert res.sizes == {"train": 6, "valid": 2, "test": 3}
    assert res.skipped == 2
    assert res.rows == 11
    want = {"train": [0, 1, 3, 6, 9, 12], "valid": [2, 8], "test": [4, 7, 10]}
    for ph, rows in want.items():
        assert_rows(phase_rows(sg, "X_a0", ph), [a0[i] for i in rows])
        assert_same(sg.get_data("X_a1", ph), np.stack([a1[i] for i in rows]))
        assert_same(sg.get_data("y", ph), d["y"][rows])
    assert sg.get_metadata()["total_events"] == [6, 2, 3]


def test_some_idx_members_only(tmp_path: Path) -> None:
    d, _, _ = kinoml_arrays_file(N)
    d |= {"idx_train": np.arange(0, 10), "idx_test": np.arange(10, 13)}
    path = savez(tmp_path / "two.npz", d)
    sg = StoreGate("numpy")
    res = import_npz(path, sg, data_id="k")
    assert res.sizes == {"train": 10, "valid": 0, "test": 3}
    assert sg.get_var_names("valid") == []


def test_bool_mask_and_empty_idx(tmp_path: Path) -> None:
    n = 6
    mask = np.array([True, False, True, True, False, True])
    path = savez(tmp_path / "m.npz", {"v": np.arange(n), "idx_train": mask,
                                      "idx_val": np.array([], dtype="f8"),
                                      "idx_test": np.array([1, 4])})
    sg = StoreGate("numpy")
    res = import_npz(path, sg, data_id="k")
    assert res.sizes == {"train": 4, "valid": 0, "test": 2}
    assert_same(sg.get_data("v", "train"), np.array([0, 2, 3, 5]))


@pytest.mark.parametrize(("phase", "sizes"), [
    ("test", {"train": 0, "valid": 0, "test": N}),
    ("val", {"train": 0, "valid": N, "test": 0}),
    ((7, 3, 3), {"train": 7, "valid": 3, "test": 3}),
    ({"train": [0, 1], "test": [2]}, {"train": 2, "valid": 0, "test": 1}),
])
def test_phase_argument_overrides_idx(tmp_path: Path, phase: Any,
                                      sizes: dict[str, int]) -> None:
    d, a0, _ = kinoml_arrays_file(N)
    d |= contiguous_idx(N, 5, 4)
    path = savez(tmp_path / "over.npz", d)
    sg = StoreGate("numpy")
    res = import_npz(path, sg, data_id="k", phase=phase)
    assert res.sizes == sizes
    assert res.skipped == N - sum(sizes.values())
    first = next(ph for ph in PHASES if sizes[ph])
    assert_same(sg.get_data("X_a0", first, 0), a0[0])


def test_without_idx_every_row_is_train(tmp_path: Path) -> None:
    path = savez(tmp_path / "a.npz", {"v": np.arange(4)})
    res = import_npz(path, StoreGate("numpy"), data_id="k")
    assert res.sizes == {"train": 4, "valid": 0, "test": 0}


# ---------------------------------------------------------------------------------- options
def test_dtype_float32_casts_floats_only(backend: str, tmp_path: Path) -> None:
    n = 11
    d = {}
    for i, item in enumerate(ragged_items(n)):  # float64, ragged
        d[f"X_s{i}_a0_"] = item
        d[f"X_s{i}_a1_"] = np.full(4, i, "i8")
        d[f"X_s{i}_a2_"] = np.array([i % 2 == 0, True])
        d[f"X_s{i}_a3_"] = np.full(3, i / 4, "f2")
    d["y"] = np.arange(n, dtype="f8")
    d["count"] = np.arange(n, dtype="u2")
    path = savez(tmp_path / "types.npz", d)
    sg = make_gate(backend, tmp_path)
    res = import_npz(path, sg, data_id="k", dtype="float32")
    got = {v.name: (v.dtype, v.source_dtype) for v in res.vars}
    assert got == {
        "X_a0": (np.dtype("f4"), np.dtype("f8")), "X_a1": (np.dtype("i8"), np.dtype("i8")),
        "X_a2": (np.dtype("bool"), np.dtype("bool")),
        "X_a3": (np.dtype("f4"), np.dtype("f2")),
        "y": (np.dtype("f4"), np.dtype("f8")), "count": (np.dtype("u2"), np.dtype("u2"))}
    assert sg.get_data("X_a0", "train", ragged_as="raw").values.dtype == np.dtype("f4")
    assert_same(sg.get_data("X_a1", "train"), np.stack([d[f"X_s{i}_a1_"] for i in range(n)]))
    assert_same(sg.get_data("X_a2", "train"), np.stack([d[f"X_s{i}_a2_"] for i in range(n)]))
    assert_same(sg.get_data("X_a3", "train"),
                np.stack([d[f"X_s{i}_a3_"] for i in range(n)]).astype("f4"))
    assert_same(sg.get_data("y", "train"), d["y"].astype("f4"))
    assert_same(sg.get_data("count", "train"), d["count"])


@pytest.mark.parametrize("bad", ["int32", "bool", "not-a-dtype", object])
def test_dtype_must_be_a_float(tmp_path: Path, bad: Any) -> None:
    path = savez(tmp_path / "a.npz", {"v": np.arange(3.0)})
    sg = StoreGate("numpy")
    with pytest.raises(InvalidArgumentError, match="floating-point"):
        import_npz(path, sg, data_id="k", dtype=bad)
    assert sg.get_data_ids() == []


def test_dtypes_preserved(backend: str, tmp_path: Path) -> None:
    n = 12
    d: dict[str, Any] = {}
    for i in range(n):
        d[f"X_s{i}_a0_"] = (np.arange((i % 3 + 1) * 2) % 2 == 0).reshape(-1, 2)  # ragged bool
        d[f"X_s{i}_a1_"] = np.full((i % 2 + 1,), i, "f2")  # ragged float16 1-D
        d[f"X_s{i}_a2_"] = np.full(3, -i, "i8")
        d[f"X_s{i}_a3_"] = np.full(2, i * 0.25, "f8")
    d |= {"y": np.arange(n, dtype="f8"), "i": np.arange(n, dtype="i8"),
          "b": np.arange(n) % 3 == 0, "h": np.arange(n, dtype="f2")}
    path = savez(tmp_path / "dt.npz", d)
    sg = make_gate(backend, tmp_path)
    res = import_npz(path, sg, data_id="k")
    assert {v.name: str(v.dtype) for v in res.vars} == {
        "X_a0": "bool", "X_a1": "float16", "X_a2": "int64", "X_a3": "float64",
        "y": "float64", "i": "int64", "b": "bool", "h": "float16"}
    for j in range(2):
        assert_rows(phase_rows(sg, f"X_a{j}", "train"), [d[f"X_s{i}_a{j}_"] for i in range(n)])
    for j in (2, 3):
        assert_same(sg.get_data(f"X_a{j}", "train"),
                    np.stack([d[f"X_s{i}_a{j}_"] for i in range(n)]))
    for key in ("y", "i", "b", "h"):
        assert_same(sg.get_data(key, "train"), d[key])


def test_big_endian_members(backend: str, tmp_path: Path) -> None:
    """Big-endian members import with their values; stores keep native byte order."""
    items = [np.arange(2 * (i + 1), dtype=">i4").reshape(-1, 2) for i in range(11)]
    d = {f"X_s{i}_": a for i, a in enumerate(items)}
    d |= {"y": (np.arange(11) / 3).astype(">f8")}
    path = savez(tmp_path / "be.npz", d)
    sg = make_gate(backend, tmp_path)
    res = import_npz(path, sg, data_id="k")
    assert [v.source_dtype for v in res.vars] == [np.dtype(">i4"), np.dtype(">f8")]
    got = phase_rows(sg, "X", "train")
    for g, w in zip(got, items, strict=True):
        assert g.dtype == np.dtype("=i4")
        np.testing.assert_array_equal(g, w)
    y = sg.get_data("y", "train")
    assert y.dtype == np.dtype("=f8")
    np.testing.assert_array_equal(y, d["y"])


def test_transpose_items_varying_along_last_axis(backend: str, tmp_path: Path) -> None:
    """Unpadded one-hot (21, L) and edge indices (2, E): stored as rows (n_i, k)."""
    n = 12
    onehot = [np.eye(5, i % 4 + 2, dtype="f8") for i in range(n)]      # (5, L_i)
    edges = [np.arange(2 * (i + 1), dtype="i8").reshape(2, -1) for i in range(n)]  # (2, E_i)
    square = [np.full((3, 2), i, "f4") for i in range(n)]              # equal shapes (3, 2)
    d = {}
    for i in range(n):
        d[f"X_s{i}_a0_"], d[f"X_s{i}_a1_"], d[f"X_s{i}_a2_"] = onehot[i], edges[i], square[i]
    d["y"] = np.arange(n, dtype="f4")
    d |= contiguous_idx(n, 8, 2)
    path = savez(tmp_path / "t.npz", d)
    sg = make_gate(backend, tmp_path)
    with pytest.raises(UnsupportedFieldError) as err:
        import_npz(path, sg, data_id="k")
    msg = str(err.value)
    assert str(path) in msg and "transpose=['X_a0']" in msg
    assert sg.get_data_ids() == []
    res = import_npz(path, sg, data_id="k", transpose=["X_a0", "X_a1", "X_a2"])
    assert [(v.name, v.ragged, v.shape, v.transposed) for v in res.vars] == [
        ("X_a0", True, (None, 5), True), ("X_a1", True, (None, 2), True),
        ("X_a2", False, (2, 3), True), ("y", False, (), False)]
    assert_rows(phase_rows(sg, "X_a0", "train"), [a.T for a in onehot[:8]])
    assert_rows(phase_rows(sg, "X_a1", "valid"), [a.T for a in edges[8:10]])
    assert_same(sg.get_data("X_a2", "test"), np.stack([a.T for a in square[10:]]))
    # exported back in the file's own orientation
    out = export_npz(sg, tmp_path / "back.npz")
    assert_npz_equal(out.path, path)


def test_transpose_as_a_string_and_on_X_s(tmp_path: Path) -> None:
    items = [np.arange(3 * (i + 1), dtype="i4").reshape(3, -1) for i in range(11)]
    path = savez(tmp_path / "xs.npz", {f"X_s{i}": a for i, a in enumerate(items)})
    sg = StoreGate("numpy")
    res = import_npz(path, sg, data_id="k", transpose="X")
    assert res.vars[0].shape == (None, 3)
    assert_rows(phase_rows(sg, "X", "train"), [a.T for a in items])
    export_npz(sg, tmp_path / "back.npz")
    assert_npz_equal(tmp_path / "back.npz", path)


def test_transpose_errors(tmp_path: Path) -> None:
    d, _, _ = kinoml_arrays_file(5)
    path = savez(tmp_path / "a.npz", d)
    sg = StoreGate("numpy")
    with pytest.raises(InvalidArgumentError, match=r"\['y'\]"):
        import_npz(path, sg, data_id="k", transpose=["y"])  # not a per-item var
    with pytest.raises(UnsupportedFieldError, match="2-D items"):
        import_npz(path, sg, data_id="k", transpose=["X_a1"])  # 1-D items
    assert sg.get_data_ids() == []


def test_var_names_list_selects_and_orders(backend: str, tmp_path: Path) -> None:
    d, _, a1 = kinoml_arrays_file(N)
    path = savez(tmp_path / "a.npz", d)
    sg = make_gate(backend, tmp_path)
    res = import_npz(path, sg, data_id="k", var_names=["y", "X_a1"])
    assert res.var_names == ["y", "X_a1"]
    assert sg.get_var_names("train") == ["y", "X_a1"]
    assert_same(sg.get_data("X_a1", "train"), np.stack(a1))


def test_var_names_mapping_renames(backend: str, tmp_path: Path) -> None:
    d, a0, _ = kinoml_arrays_file(N)
    path = savez(tmp_path / "a.npz", d)
    sg = make_gate(backend, tmp_path)
    res = import_npz(path, sg, data_id="k", var_names={"X_a0": "ligand", "y": "pIC50"})
    assert res.var_names == ["ligand", "X_a1", "pIC50"]
    assert [v.field for v in res.vars] == ["X_s{i}_a0", "X_s{i}_a1", "y"]
    assert sg.get_var_names("train") == ["ligand", "X_a1", "pIC50"]
    assert_rows(phase_rows(sg, "ligand", "train"), a0)
    assert_same(sg.get_data("pIC50", "train"), d["y"])


@pytest.mark.parametrize(("var_names", "error"), [
    (["nope"], VarNotFoundError), ({"nope": "x"}, VarNotFoundError),
    ("y", InvalidArgumentError), (["y", "y"], InvalidArgumentError),
    ({"X_a0": "y"}, InvalidArgumentError), ({"X_a0": "z", "X_a1": "z"}, InvalidArgumentError),
    ({"y": "bad/name"}, StoregateError),
])
def test_bad_var_names(tmp_path: Path, var_names: Any, error: type[Exception]) -> None:
    d, _, _ = kinoml_arrays_file(4)
    path = savez(tmp_path / "a.npz", d)
    sg = StoreGate("numpy", data_id="keep")
    sg.add_data("old", np.arange(2))
    sg.compile()
    before = snapshot(sg)
    with pytest.raises(error):
        import_npz(path, sg, data_id="k", var_names=var_names)
    assert snapshot(sg) == before


def test_progress_counts_rows(tmp_path: Path) -> None:
    class Bar:
        made: list[Bar] = []

        def __init__(self, **kw: Any) -> None:
            self.kw, self.done, self.closed = kw, 0, False
            Bar.made.append(self)

        def update(self, n: int = 1) -> None:
            self.done += n

        def close(self) -> None:
            self.closed = True

    d, _, _ = kinoml_arrays_file(N)
    path = savez(tmp_path / "a.npz", d)
    import_npz(path, StoreGate("numpy"), data_id="k", progress=Bar, batch_bytes=64)
    (bar,) = Bar.made
    assert bar.kw["total"] == N and bar.done == N and bar.closed


# ---------------------------------------------------------------------------------- plain
def plain_file(tmp_path: Path, n: int = 10, idx: bool = True) -> tuple[Path, dict[str, Any],
                                                                        list[np.ndarray]]:
    trk = ragged_items(n, (2,), "f4")
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum([len(t) for t in trk], out=offsets[1:])
    d: dict[str, Any] = {
        "pt": np.arange(n, dtype="f4"), "img": np.arange(n * 4, dtype="i2").reshape(n, 2, 2),
        "trk.values": np.concatenate(trk), "trk.offsets": offsets,
        "flag": np.arange(n) % 2 == 0, "h": np.arange(n, dtype="f2")}
    if idx:
        d |= contiguous_idx(n, 6, 2)
    return savez(tmp_path / "plain.npz", d), d, trk


def test_plain_layout(backend: str, tmp_path: Path) -> None:
    path, d, trk = plain_file(tmp_path)
    sg = make_gate(backend, tmp_path)
    res = import_npz(path, sg, data_id="p")
    assert res.var_names == ["pt", "img", "trk", "flag", "h"]
    assert [(v.ragged, v.shape) for v in res.vars] == [
        (False, ()), (False, (2, 2)), (True, (None, 2)), (False, ()), (False, ())]
    assert res.vars[2].field == "trk"
    assert res.sizes == {"train": 6, "valid": 2, "test": 2}
    assert_same(sg.get_data("img", "valid"), d["img"][6:8])
    assert_rows(phase_rows(sg, "trk", "train"), trk[:6])
    assert_rows(phase_rows(sg, "trk", "test"), trk[8:])
    assert_same(sg.get_data("h", "test"), d["h"][8:])
    assert sg.db.get_attrs("p")["source"]["layout"] == "plain"


def test_plain_idx_skips_rows(tmp_path: Path) -> None:
    n = 8
    path = savez(tmp_path / "p.npz", {"a": np.arange(n), "b": np.arange(n) * 2.0,
                                      "idx_train": [7, 1, 2], "idx_test": [5]})
    sg = StoreGate("numpy")
    res = import_npz(path, sg, data_id="p")
    assert res.sizes == {"train": 3, "valid": 0, "test": 1} and res.skipped == 4
    assert_same(sg.get_data("a", "train"), np.array([1, 2, 7]))
    assert_same(sg.get_data("b", "test"), np.array([10.0]))


def test_layout_plain_takes_kinoml_names_as_vars(tmp_path: Path) -> None:
    d = {"X_s0_": np.arange(2.0), "X_s1_": np.arange(2.0) + 1, "y": np.zeros(2, "f4")}
    path = savez(tmp_path / "k.npz", d)
    sg = StoreGate("numpy")
    res = import_npz(path, sg, data_id="p", layout="plain")
    assert res.var_names == ["X_s0_", "X_s1_", "y"]
    assert_same(sg.get_data("X_s1_", "train"), d["X_s1_"])
    assert import_npz(path, StoreGate("numpy"), data_id="k").var_names == ["X", "y"]


def test_layout_kinoml_refuses_plain_files(tmp_path: Path) -> None:
    path = savez(tmp_path / "p.npz", {"a": np.arange(3)})
    with pytest.raises(SourceFormatError, match="layout='plain'") as err:
        import_npz(path, StoreGate("numpy"), data_id="p", layout="kinoml")
    assert str(path) in str(err.value)
    with pytest.raises(InvalidArgumentError, match="layout"):
        import_npz(path, StoreGate("numpy"), data_id="p", layout="csv")


def test_plain_mismatched_lengths(backend: str, tmp_path: Path) -> None:
    path = savez(tmp_path / "p.npz", {"a": np.arange(5), "b": np.arange(4)})
    sg = make_gate(backend, tmp_path)
    with pytest.raises(SourceFormatError) as err:
        import_npz(path, sg, data_id="p")
    assert str(path) in str(err.value) and "'a': 5" in str(err.value)
    assert sg.get_data_ids() == []
    res = import_npz(path, sg, data_id="p", var_names=["a"])  # the documented way out?
    assert res.var_names == ["a"]


@pytest.mark.parametrize("offsets", [
    np.array([0, 3, 2, 6]), np.array([1, 3, 6]), np.array([0, 3, 5]),
    np.array([0.0, 3.0, 6.0]), np.zeros((2, 2), "i8")],
    ids=["decreasing", "not-from-0", "short", "float", "2-d"])
def test_bad_ragged_pairs(tmp_path: Path, offsets: np.ndarray) -> None:
    path = savez(tmp_path / "p.npz", {"v.values": np.arange(6.0), "v.offsets": offsets})
    with pytest.raises(SourceFormatError, match="do not form a ragged var") as err:
        import_npz(path, StoreGate("numpy"), data_id="p")
    assert str(path) in str(err.value)


def test_offsets_without_values_are_plain_vars(tmp_path: Path) -> None:
    path = savez(tmp_path / "p.npz", {"v.offsets": np.arange(3), "w.values": np.arange(3.0)})
    res = import_npz(path, StoreGate("numpy"), data_id="p")
    assert res.var_names == ["v.offsets", "w.values"]


def test_empty_ragged_rows(tmp_path: Path) -> None:
    rows = [np.zeros((0, 2)), np.ones((2, 2)), np.zeros((0, 2))]
    path = savez(tmp_path / "p.npz", {"v.values": np.ones((2, 2)),
                                      "v.offsets": np.array([0, 0, 2, 2])})
    sg = StoreGate("numpy")
    import_npz(path, sg, data_id="p", batch_bytes=1)
    assert_rows(phase_rows(sg, "v", "train"), rows)


# ---------------------------------------------------------------------------------- round trips
def check_round_trip(src: Path, sg: StoreGate, tmp_path: Path, **export_kw: Any) -> None:
    out = export_npz(sg, tmp_path / "back.npz", **export_kw)
    assert out.path == str(tmp_path / "back.npz")
    assert_npz_equal(out.path, src)


@pytest.mark.parametrize("underscore", [True, False])
def test_round_trip_kinoml_X_s_a(backend: str, tmp_path: Path, underscore: bool) -> None:
    d, _, _ = kinoml_arrays_file(N, underscore)
    d |= contiguous_idx(N, 9, 2)
    path = savez(tmp_path / "k.npz", d)
    sg = make_gate(backend, tmp_path)
    import_npz(path, sg, data_id="kin")
    check_round_trip(path, sg, tmp_path)


@pytest.mark.parametrize("underscore", [True, False])
@pytest.mark.parametrize("item_shape", [(3,), ()], ids=["items-2d", "items-1d"])
def test_round_trip_kinoml_X_s(backend: str, tmp_path: Path, underscore: bool,
                               item_shape: tuple[int, ...]) -> None:
    d: dict[str, Any] = dict(zip(item_keys(N, None, underscore), ragged_items(N, item_shape),
                                 strict=True))
    d["y"] = np.arange(N, dtype="f4")
    d |= contiguous_idx(N, 7, 3)
    path = savez(tmp_path / "k.npz", d, compressed=True)
    sg = make_gate(backend, tmp_path)
    import_npz(path, sg, data_id="kin")
    check_round_trip(path, sg, tmp_path)


def test_round_trip_kinoml_dense(backend: str, tmp_path: Path) -> None:
    d = {"X": np.arange(N * 6, dtype="f8").reshape(N, 2, 3), "y": np.arange(N, dtype="f4"),
         **contiguous_idx(N, 10, 1)}
    path = savez(tmp_path / "k.npz", d)
    sg = make_gate(backend, tmp_path)
    import_npz(path, sg, data_id="kin")
    check_round_trip(path, sg, tmp_path)


def test_round_trip_kinoml_without_idx(backend: str, tmp_path: Path) -> None:
    d, _, _ = kinoml_arrays_file(N)
    path = savez(tmp_path / "k.npz", d)
    sg = make_gate(backend, tmp_path)
    import_npz(path, sg, data_id="kin")
    check_round_trip(path, sg, tmp_path)


def test_round_trip_through_a_reopened_store(tmp_path: Path) -> None:
    d, _, _ = kinoml_arrays_file(N, underscore=False)
    d |= contiguous_idx(N, 9, 2)
    path = savez(tmp_path / "k.npz", d)
    sg = make_gate("zarr", tmp_path)
    import_npz(path, sg, data_id="kin")
    sg.close()
    again = StoreGate.open(str(tmp_path / "store.zarr"))
    check_round_trip(path, again, tmp_path)


@pytest.mark.parametrize("idx", [True, False])
def test_round_trip_plain(backend: str, tmp_path: Path, idx: bool) -> None:
    path, _, _ = plain_file(tmp_path, idx=idx)
    sg = make_gate(backend, tmp_path)
    import_npz(path, sg, data_id="p")
    check_round_trip(path, sg, tmp_path)


def test_round_trip_on_the_parquet_backend(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    d, _, _ = kinoml_arrays_file(N)
    d |= contiguous_idx(N, 9, 2)
    path = savez(tmp_path / "k.npz", d)
    sg = make_gate("parquet", tmp_path)
    import_npz(path, sg, data_id="kin")
    check_round_trip(path, sg, tmp_path)
    ppath, _, _ = plain_file(tmp_path)
    import_npz(ppath, sg, data_id="p")
    out = export_npz(sg, tmp_path / "p_back.npz", data_id="p")
    assert_npz_equal(out.path, ppath)


def fill_store(sg: StoreGate) -> dict[str, dict[str, Any]]:
    """Dense and ragged vars of several dtypes over three phases."""
    rng = np.random.default_rng(5)
    n = 10
    data = {
        "pt": rng.standard_normal(n).astype("f4"),
        "img": rng.integers(-100, 100, (n, 2, 3)).astype("i2"),
        "trk": ragged_items(n, (4,), "f8"),
        "hits": ragged_items(n, (), "i8"),
        "flag": rng.integers(0, 2, n).astype(bool),
    }
    sg.set_data_id("d")
    for name, value in data.items():
        arr = RaggedArray.from_list(value) if isinstance(value, list) else value
        sg.add_data(name, arr, phase=(6, 2, 2))
    sg.compile()
    cuts = {"train": slice(0, 6), "valid": slice(6, 8), "test": slice(8, 10)}
    return {ph: {k: v[s] for k, v in data.items()}
            for ph, s in cuts.items()}


def assert_store_matches(sg: StoreGate, want: dict[str, dict[str, Any]],
                         data_id: str = "d") -> None:
    sg.set_data_id(data_id)
    for ph, cols in want.items():
        assert sg.get_var_names(ph) == list(cols)
        for name, value in cols.items():
            if isinstance(value, list):
                assert_rows(phase_rows(sg, name, ph), value)
            else:
                assert_same(sg.get_data(name, ph), value)


def test_store_to_npz_to_store(backend: str, tmp_path: Path) -> None:
    sg = make_gate(backend, tmp_path, "a")
    want = fill_store(sg)
    out = export_npz(sg, tmp_path / "d.npz")
    assert out.sizes == {"train": 6, "valid": 2, "test": 2} and out.rows == 10
    assert out.var_names == ("pt", "img", "trk", "hits", "flag")
    with np.load(out.path, allow_pickle=False) as f:
        assert sorted(f.files) == sorted(
            ["pt", "img", "trk.values", "trk.offsets", "hits.values", "hits.offsets", "flag",
             "idx_train", "idx_val", "idx_test"])
        assert f["trk.offsets"].dtype == np.int64
    back = make_gate(backend, tmp_path, "b")
    res = import_npz(out.path, back, data_id="d")
    assert res.sizes == out.sizes
    assert_store_matches(back, want)


def test_export_one_phase(tmp_path: Path) -> None:
    sg = StoreGate("numpy")
    want = fill_store(sg)
    out = export_npz(sg, tmp_path / "v.npz", phase="valid")
    assert out.phases == ("valid",) and out.sizes == {"valid": 2}
    with np.load(out.path) as f:
        assert not [k for k in f.files if k.startswith("idx_")]
        assert_same(f["pt"], want["valid"]["pt"])
    back = StoreGate("numpy")
    import_npz(out.path, back, data_id="d", phase="valid")
    assert_store_matches(back, {"valid": want["valid"]})


def test_export_var_names_and_compressed(tmp_path: Path) -> None:
    sg = StoreGate("numpy")
    want = fill_store(sg)
    out = export_npz(sg, tmp_path / "c.npz", var_names=["trk", "pt"], compressed=True)
    assert out.var_names == ("trk", "pt")
    with zipfile.ZipFile(out.path) as zf:
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_DEFLATED}
    with np.load(out.path) as f:
        assert_same(f["pt"], np.concatenate([want[ph]["pt"] for ph in PHASES]))
    back = StoreGate("numpy")
    import_npz(out.path, back, data_id="d")
    assert_rows(phase_rows(back, "trk", "test"), want["test"]["trk"])


def test_export_all_train_writes_no_idx(tmp_path: Path) -> None:
    sg = StoreGate("numpy", data_id="d")
    sg.add_data("v", np.arange(5))
    out = export_npz(sg, tmp_path / "t.npz")
    with np.load(out.path) as f:
        assert f.files == ["v"]


def test_export_kinoml_layout_from_a_store(tmp_path: Path) -> None:
    sg = StoreGate("numpy", data_id="d")
    items = ragged_items(4, (2,))
    sg.add_data("X", RaggedArray.from_list(items), phase=(2, 1, 1))
    sg.add_data("y", np.arange(4, dtype="f4"), phase=(2, 1, 1))
    out = export_npz(sg, tmp_path / "k.npz", layout="kinoml")
    with np.load(out.path) as f:
        assert sorted(f.files) == sorted(
            [f"X_s{i}_" for i in range(4)] + ["y", "idx_train", "idx_val", "idx_test"])
        for i in range(4):
            assert_same(f[f"X_s{i}_"], items[i])
        assert_same(f["idx_val"], np.array([2]))
    plain = export_npz(sg, tmp_path / "p.npz")  # not imported from kinoml: plain by default
    with np.load(plain.path) as f:
        assert "X.values" in f.files


def test_export_errors(tmp_path: Path) -> None:
    sg = StoreGate("numpy", data_id="d")
    sg.add_data("a", np.arange(4.0))
    sg.add_data("X", np.arange(4.0))
    sg.add_data("X_a0", np.arange(4.0))
    dst = tmp_path / "out" / "e.npz"
    with pytest.raises(InvalidArgumentError, match="not both"):
        export_npz(sg, dst, layout="kinoml")
    with pytest.raises(InvalidArgumentError, match="kinoml's layout needs"):
        export_npz(sg, dst, layout="kinoml", var_names=["a"])
    with pytest.raises(InvalidArgumentError, match="layout"):
        export_npz(sg, dst, layout="wide")
    with pytest.raises(DataIdNotFoundError):
        export_npz(sg, dst, data_id="nope")
    with pytest.raises(VarNotFoundError):
        export_npz(sg, dst, var_names=["nope"])
    with pytest.raises(InvalidArgumentError):
        export_npz(StoreGate("numpy"), dst)
    with pytest.raises(InvalidArgumentError):
        export_npz("not a gate", dst)
    # nothing, not even a temporary, is left beside the destination
    assert not dst.exists()
    assert not dst.parent.exists() or os.listdir(dst.parent) == []


def test_export_refuses_to_overwrite(tmp_path: Path) -> None:
    sg = StoreGate("numpy", data_id="d")
    sg.add_data("a", np.arange(3))
    dst = tmp_path / "a.npz"
    dst.write_bytes(b"precious")
    with pytest.raises(DestinationExistsError) as err:
        export_npz(sg, dst)
    assert isinstance(err.value, FileExistsError)
    assert dst.read_bytes() == b"precious"
    export_npz(sg, dst, overwrite=True)
    with np.load(dst) as f:
        assert_same(f["a"], np.arange(3))
    assert sorted(os.listdir(tmp_path)) == ["a.npz"]


# ---------------------------------------------------------------------------------- medium file
@pytest.fixture(scope="module")
def medium(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """2,000 items: a0 ragged (n_i, 6) float32, a1 dense (16,) int64, y, a dense column."""
    n = 2000
    rng = np.random.default_rng(11)
    d: dict[str, Any] = {}
    for i in range(n):
        d[f"X_s{i}_a0_"] = rng.standard_normal((int(rng.integers(1, 9)), 6)).astype("f4")
        d[f"X_s{i}_a1_"] = rng.integers(0, 2**40, 16)
    d["y"] = rng.standard_normal(n).astype("f4")
    d["w"] = rng.standard_normal((n, 8))
    folder = tmp_path_factory.mktemp("medium")
    contiguous = savez(folder / "medium.npz", d | contiguous_idx(n, 1600, 200))
    perm = rng.permutation(n)
    shuffled = savez(folder / "shuffled.npz", d | {
        "idx_train": perm[:1500], "idx_val": perm[1500:1700], "idx_test": perm[1700:1950]})
    return {"n": n, "d": d, "contiguous": contiguous, "shuffled": shuffled, "perm": perm}


def test_medium_file_every_member_round_trips(backend: str, tmp_path: Path,
                                              medium: dict[str, Any],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(npz_module, "BATCH_BYTES", 30_000)  # export blocks too
    sg = make_gate(backend, tmp_path)
    res = import_npz(medium["contiguous"], sg, data_id="m", batch_bytes=30_000)
    assert res.sizes == {"train": 1600, "valid": 200, "test": 200}
    check_round_trip(medium["contiguous"], sg, tmp_path)


def test_medium_file_shuffled_idx(backend: str, tmp_path: Path, medium: dict[str, Any]) -> None:
    d, perm = medium["d"], medium["perm"]
    sg = make_gate(backend, tmp_path)
    res = import_npz(medium["shuffled"], sg, data_id="m", batch_bytes=30_000)
    assert res.sizes == {"train": 1500, "valid": 200, "test": 250} and res.skipped == 50
    for ph, rows in (("train", perm[:1500]), ("valid", perm[1500:1700]),
                     ("test", perm[1700:1950])):
        rows = np.sort(rows)
        assert_rows(phase_rows(sg, "X_a0", ph), [d[f"X_s{i}_a0_"] for i in rows])
        assert_same(sg.get_data("X_a1", ph), np.stack([d[f"X_s{i}_a1_"] for i in rows]))
        assert_same(sg.get_data("y", ph), d["y"][rows])
        assert_same(sg.get_data("w", ph), d["w"][rows])


# ---------------------------------------------------------------------------------- bad inputs
class Evil:
    """Unpickling an object array holding this creates ``marker`` (it must never happen)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (self.marker, "w"))


def _kinoml(tmp_path: Path, n: int = N, **extra: Any) -> dict[str, Any]:
    d, _, _ = kinoml_arrays_file(n)
    return d | extra


def _member_offset(path: Path, key: str, where: str = "data") -> int:
    with NpzReader(path) as npz:
        m = npz.member(key)
        return m.data + 5 if where == "data" else m.start


def _flip(path: Path, offset: int, xor: int = 0x5A) -> Path:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= xor
    path.write_bytes(bytes(raw))
    return path


def bad_pickle(tmp_path: Path) -> Path:
    obj = np.array([Evil(str(tmp_path / "unpickled.marker")), 2], dtype=object)
    d = _kinoml(tmp_path)
    path = tmp_path / "bad.npz"
    with zipfile.ZipFile(path, "w") as zf:
        for k, v in d.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, v)
            zf.writestr(k + ".npy", buf.getvalue())
        buf = io.BytesIO()
        np.lib.format.write_array(buf, obj, allow_pickle=True)
        zf.writestr("meta.npy", buf.getvalue())
    return path


def bad_truncated_in_directory(tmp_path: Path) -> Path:
    path = savez(tmp_path / "bad.npz", _kinoml(tmp_path))
    raw = path.read_bytes()
    path.write_bytes(raw[:len(raw) - 300])
    return path


def bad_truncated_in_data(tmp_path: Path) -> Path:
    path = savez(tmp_path / "bad.npz", _kinoml(tmp_path))
    cut = _member_offset(path, "X_s7_a0_")
    path.write_bytes(path.read_bytes()[:cut])
    return path


def bad_crc_item(tmp_path: Path) -> Path:
    path = savez(tmp_path / "bad.npz", _kinoml(tmp_path))
    return _flip(path, _member_offset(path, "X_s11_a0_"))


def bad_crc_column(tmp_path: Path) -> Path:
    d = _kinoml(tmp_path, w=np.arange(N * 50, dtype="f8").reshape(N, 50))
    path = savez(tmp_path / "bad.npz", d)
    with NpzReader(path) as npz:
        m = npz.member("w")
        at = m.end - 20  # in the last row: found when the copy has written the rest
    return _flip(path, at)


def bad_crc_csr(tmp_path: Path) -> Path:
    path, _, _ = plain_file(tmp_path)
    with NpzReader(path) as npz:
        at = npz.member("trk.values").end - 3
    bad = tmp_path / "bad.npz"
    bad.write_bytes(path.read_bytes())
    return _flip(bad, at)


def bad_crc_header_padding(tmp_path: Path) -> Path:
    path = savez(tmp_path / "bad.npz", _kinoml(tmp_path))
    with NpzReader(path) as npz:
        at = npz.member("X_s12_a1_").data - 3  # a padding space of the .npy header
    assert path.read_bytes()[at:at + 1] == b" "
    return _flip(path, at, 0x29)  # a tab: the header still parses, the CRC does not match


def bad_crc_compressed(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    d = _kinoml(tmp_path, w=rng.standard_normal((N, 400)))
    path = savez(tmp_path / "bad.npz", d, compressed=True)
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("w.npy")
        at = info.header_offset + 30 + len(info.filename) + len(info.extra) + \
            info.compress_size - 50
    return _flip(path, at)


def bad_empty(tmp_path: Path) -> Path:
    path = tmp_path / "bad.npz"
    path.write_bytes(b"")
    return path


def bad_not_zip(tmp_path: Path) -> Path:
    path = tmp_path / "bad.npz"
    np.save(path, np.arange(10))  # a .npy under an .npz name
    os.replace(str(path) + ".npy", path)
    return path


def bad_not_npy(tmp_path: Path) -> Path:
    path = savez(tmp_path / "bad.npz", _kinoml(tmp_path))
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("README.txt", "hello")
    return path


def bad_scalar(tmp_path: Path) -> Path:
    return savez(tmp_path / "bad.npz", _kinoml(tmp_path, n_atoms=np.array(5)))


def bad_shapes_last_axis(tmp_path: Path) -> Path:
    d = {f"X_s{i}_": np.zeros((4, i + 1)) for i in range(N)} | {"y": np.zeros(N, "f4")}
    return savez(tmp_path / "bad.npz", d)


def bad_shapes_middle_axis(tmp_path: Path) -> Path:
    d = {f"X_s{i}_a0_": np.zeros((i + 1, i % 3 + 1, 2)) for i in range(N)}
    return savez(tmp_path / "bad.npz", d | {"y": np.zeros(N, "f4")})


def bad_scalar_and_vector_items(tmp_path: Path) -> Path:
    d = {"X_s0_": np.zeros(()), "X_s1_": np.zeros(3), "X_s2_": np.zeros(2)}
    return savez(tmp_path / "bad.npz", d)


def bad_missing_item(tmp_path: Path) -> Path:
    d = _kinoml(tmp_path)
    del d["X_s4_a0_"], d["X_s4_a1_"]
    return savez(tmp_path / "bad.npz", d)


def bad_missing_item_of_one_array(tmp_path: Path) -> Path:
    d = _kinoml(tmp_path)
    del d["X_s12_a1_"]
    return savez(tmp_path / "bad.npz", d)


def bad_item_twice(tmp_path: Path) -> Path:
    d = {"X_s1_": np.zeros(2), "X_s01_": np.zeros(2), "X_s0_": np.zeros(2)}
    return savez(tmp_path / "bad.npz", d)


def bad_mixed_layouts(tmp_path: Path) -> Path:
    return savez(tmp_path / "bad.npz", _kinoml(tmp_path, X_s0_=np.zeros(3)))


def bad_X_and_items(tmp_path: Path) -> Path:
    return savez(tmp_path / "bad.npz", _kinoml(tmp_path, X=np.zeros((N, 2))))


def bad_idx_out_of_range(tmp_path: Path) -> Path:
    return savez(tmp_path / "bad.npz", _kinoml(tmp_path, idx_train=[0, 1, N], idx_test=[2]))


def bad_idx_twice(tmp_path: Path) -> Path:
    return savez(tmp_path / "bad.npz", _kinoml(tmp_path, idx_train=[0, 1, 2], idx_test=[2]))


def bad_idx_float(tmp_path: Path) -> Path:
    return savez(tmp_path / "bad.npz", _kinoml(tmp_path, idx_train=[0.0, 1.0]))


def bad_idx_2d(tmp_path: Path) -> Path:
    return savez(tmp_path / "bad.npz", _kinoml(tmp_path, idx_train=[[0, 1]]))


def bad_row_counts(tmp_path: Path) -> Path:
    return savez(tmp_path / "bad.npz", _kinoml(tmp_path, y=np.zeros(N - 1, "f4")))


def bad_string_member(tmp_path: Path) -> Path:
    return savez(tmp_path / "bad.npz", _kinoml(tmp_path, names=np.array(["a"] * N)))


def bad_nothing(tmp_path: Path) -> Path:
    return savez(tmp_path / "bad.npz", {"idx_train": np.arange(3)})


BAD = {
    "pickle": (bad_pickle, UnsupportedFieldError, "pickled"),
    "truncated-directory": (bad_truncated_in_directory, SourceFormatError, "truncated"),
    "truncated-data": (bad_truncated_in_data, SourceFormatError, "truncated"),
    "crc-item": (bad_crc_item, SourceFormatError, "CRC-32"),
    "crc-column": (bad_crc_column, SourceFormatError, "CRC-32"),
    "crc-csr": (bad_crc_csr, SourceFormatError, "CRC-32"),
    "crc-header": (bad_crc_header_padding, SourceFormatError, "CRC-32"),
    "crc-compressed": (bad_crc_compressed, SourceFormatError, "'w'"),
    "empty": (bad_empty, SourceFormatError, "not a zip"),
    "not-zip": (bad_not_zip, SourceFormatError, "not a zip"),
    "not-npy": (bad_not_npy, SourceFormatError, "README.txt"),
    "scalar": (bad_scalar, UnsupportedFieldError, "scalar"),
    "shapes-last-axis": (bad_shapes_last_axis, UnsupportedFieldError, "transpose="),
    "shapes-middle-axis": (bad_shapes_middle_axis, UnsupportedFieldError, "first axis only"),
    "scalar-and-vector-items": (bad_scalar_and_vector_items, UnsupportedFieldError, "shape"),
    "missing-item": (bad_missing_item, SourceFormatError, r"lacks items \[4\]"),
    "missing-item-one-array": (bad_missing_item_of_one_array, SourceFormatError,
                               r"a1 lacks items \[12\]"),
    "item-twice": (bad_item_twice, SourceFormatError, "appears twice"),
    "mixed-layouts": (bad_mixed_layouts, SourceFormatError, "mixes"),
    "X-and-items": (bad_X_and_items, SourceFormatError, "member X"),
    "idx-out-of-range": (bad_idx_out_of_range, IndexOutOfRangeError, "13"),
    "idx-twice": (bad_idx_twice, InvalidPhaseError, "row 2"),
    "idx-float": (bad_idx_float, SourceFormatError, "idx_train"),
    "idx-2d": (bad_idx_2d, SourceFormatError, "idx_train"),
    "row-counts": (bad_row_counts, SourceFormatError, "different numbers of rows"),
    "string-member": (bad_string_member, UnsupportedFieldError, "names"),
    "nothing": (bad_nothing, SourceFormatError, "no arrays"),
}


@pytest.fixture(params=[False, True], ids=["fresh-gate", "gate-with-data"])
def prior(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def gate_for_failure(backend: str, tmp_path: Path, prior: bool) -> StoreGate:
    sg = make_gate(backend, tmp_path)
    if prior:
        sg.set_data_id("keep")
        sg.add_data("old", np.arange(5.0), phase=(3, 1, 1))
        sg.add_data("rag", RaggedArray.from_list(ragged_items(5)), phase=(3, 1, 1))
        sg.compile()
        sg.close()
    return sg


@pytest.mark.parametrize("case", list(BAD))
def test_bad_inputs_leave_the_store_unchanged(backend: str, tmp_path: Path, prior: bool,
                                              case: str) -> None:
    build, error, match = BAD[case]
    src_dir = tmp_path / "src"
    src_dir.mkdir()
    path = build(src_dir)
    sg = gate_for_failure(backend, tmp_path, prior)
    before, files = snapshot(sg), all_files(tmp_path / "store.zarr")
    with pytest.raises(error, match=match) as err:
        import_npz(path, sg, data_id="new", batch_bytes=200)
    assert isinstance(err.value, StoregateError)
    assert str(path) in str(err.value)
    if isinstance(err.value, ConversionError):
        assert err.value.path == str(path)
    assert not (src_dir / "unpickled.marker").exists()
    assert snapshot(sg) == before
    assert sg.get_data_ids() == (["keep"] if prior else [])
    assert sg.data_id == ("keep" if prior else None)
    sg.close()
    assert all_files(tmp_path / "store.zarr") == files
    if prior:  # the store still works
        assert_same(sg.get_data("old", "train"), np.arange(3.0))


@pytest.mark.parametrize("case", ["crc-item", "crc-column", "crc-csr"])
def test_failure_in_an_existing_data_id_removes_only_new_vars(backend: str, tmp_path: Path,
                                                              case: str) -> None:
    build = BAD[case][0]
    src_dir = tmp_path / "src"
    src_dir.mkdir()
    path = build(src_dir)
    sg = gate_for_failure(backend, tmp_path, prior=True)
    sg.set_data_id("train_only")
    sg.add_data("old", np.arange(4), phase="train")
    sg.compile()
    before, files = snapshot(sg), all_files(tmp_path / "store.zarr")
    with pytest.raises(SourceFormatError, match="CRC"):
        import_npz(path, sg, data_id="train_only", batch_bytes=200, phase="test")
    assert snapshot(sg) == before
    sg.close()
    assert all_files(tmp_path / "store.zarr") == files
    assert sg.get_metadata()["compiled"] is True


@pytest.mark.parametrize("prior", [False, True], ids=["fresh-gate", "gate-with-data"])
def test_failed_import_on_the_parquet_backend_is_undone(tmp_path: Path, prior: bool) -> None:
    pytest.importorskip("pyarrow")
    src_dir = tmp_path / "src"
    src_dir.mkdir()
    path = bad_crc_column(src_dir)
    sg = gate_for_failure("parquet", tmp_path, prior)
    before, files = snapshot(sg), all_files(tmp_path / "store.parquet")
    with pytest.raises(SourceFormatError, match="CRC"):
        import_npz(path, sg, data_id="new", batch_bytes=200)
    assert snapshot(sg) == before
    sg.close()
    assert all_files(tmp_path / "store.parquet") == files


def test_corrupt_crc_found_late_after_earlier_batches_were_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The damage is in the last item: earlier batches were written, then undone."""
    path = bad_crc_item(tmp_path)
    sg = make_gate("zarr", tmp_path)
    adds: list[str] = []
    original = StoreGate.add_data

    def spy(self: StoreGate, var: Any, *args: Any, **kw: Any) -> Any:
        adds.append(var)
        return original(self, var, *args, **kw)

    monkeypatch.setattr(StoreGate, "add_data", spy)
    with pytest.raises(SourceFormatError):
        import_npz(path, sg, data_id="new", batch_bytes=100)
    assert adds  # something was written before the damaged member was met
    assert sg.get_data_ids() == []
    assert not (tmp_path / "store.zarr" / "new").exists()


def test_missing_source(tmp_path: Path) -> None:
    sg = StoreGate("numpy")
    with pytest.raises(SourceNotFoundError) as err:
        import_npz(tmp_path / "nope.npz", sg, data_id="k")
    assert isinstance(err.value, FileNotFoundError)
    assert "nope.npz" in str(err.value)
    assert sg.get_data_ids() == []


def test_existing_var_is_refused(backend: str, tmp_path: Path) -> None:
    d, _, _ = kinoml_arrays_file(N)
    path = savez(tmp_path / "k.npz", d)
    sg = make_gate(backend, tmp_path)
    sg.set_data_id("kin")
    sg.add_data("y", np.zeros(N, "f4"))
    sg.compile()
    before, files = snapshot(sg), all_files(tmp_path / "store.zarr")
    with pytest.raises(VarExistsError, match="'y'"):
        import_npz(path, sg, data_id="kin")
    assert snapshot(sg) == before
    assert all_files(tmp_path / "store.zarr") == files
    # into another data_id, or under other names, it works
    import_npz(path, sg, data_id="kin", var_names={"y": "y2"})
    assert sg.get_var_names("train") == ["y", "X_a0", "X_a1", "y2"]


def test_other_lengths_in_the_data_id_are_refused(tmp_path: Path) -> None:
    d, _, _ = kinoml_arrays_file(N)
    path = savez(tmp_path / "k.npz", d)
    sg = StoreGate("numpy", data_id="kin")
    sg.add_data("z", np.zeros(N - 1))
    with pytest.raises(InconsistentLengthError, match="train"):
        import_npz(path, sg, data_id="kin")
    assert sg.get_var_names("train") == ["z"]


def test_bad_arguments(tmp_path: Path) -> None:
    path = savez(tmp_path / "a.npz", {"v": np.arange(3)})
    with pytest.raises(InvalidArgumentError):
        import_npz(path, "gate", data_id="k")
    with pytest.raises(InvalidArgumentError, match="data_id"):
        import_npz(path, StoreGate("numpy"))
    with pytest.raises(StoregateError):
        import_npz(path, StoreGate("numpy"), data_id="a/b")
    for bad in (0, -1, 1.5, True):
        with pytest.raises(InvalidArgumentError, match="batch_bytes"):
            import_npz(path, StoreGate("numpy"), data_id="k", batch_bytes=bad)
    with pytest.raises(InvalidPhaseError) as err:
        import_npz(path, StoreGate("numpy"), data_id="k", phase="all")
    assert str(path) in str(err.value)


def test_default_data_id_is_the_gates(tmp_path: Path) -> None:
    path = savez(tmp_path / "a.npz", {"v": np.arange(3)})
    sg = StoreGate("numpy", data_id="mine")
    assert import_npz(path, sg).data_id == "mine"


# ---------------------------------------------------------------------------------- zip64
def write_zip64(path: Path, arrays: dict[str, np.ndarray], compressed: bool) -> Path:
    method = zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", compression=method, allowZip64=True) as zf:
        for key, arr in arrays.items():
            with zf.open(key + ".npy", "w", force_zip64=True) as fp:
                np.lib.format.write_array(fp, np.asanyarray(arr))
    return path


@pytest.mark.parametrize("compressed", [False, True])
def test_force_zip64_members_import(backend: str, tmp_path: Path, compressed: bool) -> None:
    d, a0, a1 = kinoml_arrays_file(N)
    d |= contiguous_idx(N, 9, 2)
    path = write_zip64(tmp_path / "z64.npz", {k: np.asarray(v) for k, v in d.items()},
                       compressed)
    with zipfile.ZipFile(path) as zf:  # really zip64 local headers
        raw = path.read_bytes()
        info = zf.getinfo("X_s0_a0_.npy")
        assert raw[info.header_offset + 18:info.header_offset + 26] == b"\xff" * 8
    sg = make_gate(backend, tmp_path)
    res = import_npz(path, sg, data_id="k")
    assert res.sizes == {"train": 9, "valid": 2, "test": 2}
    assert_rows(phase_rows(sg, "X_a0", "train"), a0[:9])
    assert_same(sg.get_data("X_a1", "test"), np.stack(a1[11:]))
    check_round_trip(path, sg, tmp_path)


def test_export_streams_big_vars_with_zip64_headers(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """export_npz writes big members in blocks; numpy reads them back."""
    monkeypatch.setattr(npz_module, "BATCH_BYTES", 1000)
    sg = StoreGate("numpy", data_id="d")
    big = np.arange(20000, dtype="f8").reshape(5000, 4)
    sg.add_data("big", big, phase=(0.6, 0.2, 0.2))
    out = export_npz(sg, tmp_path / "big.npz")
    with np.load(out.path) as f:
        assert_same(f["big"], big)


# ---------------------------------------------------------------------------------- misc
def test_source_attrs_are_recorded(tmp_path: Path) -> None:
    d, _, _ = kinoml_arrays_file(N, underscore=False)
    d |= contiguous_idx(N, 9, 2)
    path = savez(tmp_path / "k.npz", d)
    sg = StoreGate("numpy")
    import_npz(path, sg, data_id="k")
    assert sg.db.get_attrs("k")["source"] == {
        "format": "npz", "file": "k.npz", "layout": "kinoml", "x_layout": "X_s_a",
        "underscore": False, "letters": ["s", "a"], "indices": True, "transposed": []}


def test_import_into_a_second_data_id_keeps_the_first(backend: str, tmp_path: Path) -> None:
    d, _, _ = kinoml_arrays_file(N)
    path = savez(tmp_path / "k.npz", d)
    sg = make_gate(backend, tmp_path)
    import_npz(path, sg, data_id="a")
    import_npz(path, sg, data_id="b", dtype="float32")
    assert sg.get_data_ids() == ["a", "b"]
    sg.set_data_id("a")
    assert sg.get_data("y", "train").dtype == np.dtype("f4")
    assert sg.get_data("X_a0", "train", ragged_as="raw").values.dtype == np.dtype("f8")


def test_no_compile(tmp_path: Path) -> None:
    path = savez(tmp_path / "a.npz", {"v": np.arange(3)})
    sg = StoreGate("numpy")
    import_npz(path, sg, data_id="k", do_compile=False)
    assert_same(sg.get_data("v", "train"), np.arange(3))  # compiled implicitly on read


def test_import_accepts_str_and_pathlike(tmp_path: Path) -> None:
    path = savez(tmp_path / "a.npz", {"v": np.arange(3)})
    for p in (str(path), path):
        res = import_npz(p, StoreGate("numpy"), data_id="k")
        assert res.files == (str(path),)


def _callable_names() -> list[Callable[..., Any]]:
    return [import_npz, export_npz]


def test_public_names() -> None:
    import storegate.convert as conv

    assert all(getattr(conv, f.__name__) is f for f in _callable_names())
