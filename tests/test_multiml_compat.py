"""Every example of multiml's StoreGate documentation runs unchanged, with multiml's results.

Sources: the class and method docstrings of ``multiml/storegate.py``, ``sphinx/storegate.rst``
and ``tests/test_storegate.py`` of UTokyo-ICEPP/multiml. Where the documentation prints a result
that multiml's own code does not produce (the sphinx tutorial's 3/1/1 split), the test asserts
what multiml's code computes, and says so.
"""

from __future__ import annotations

import numpy as np
import pytest
from sg_helpers import assert_array_equal_exact

from storegate import StoreGate

PHASE_FRACTIONS = (0.8, 0.1, 0.1)


def multiml_cuts(n: int, fractions: tuple[float, ...]) -> tuple[int, int]:
    """multiml's ``_get_phase_indices`` for fractions: ``int(n*f0)``, ``int(n*f0 + n*f1)``."""
    return int(n * fractions[0]), int(n * fractions[0] + n * fractions[1])


# ---------------------------------------------------------------------- class docstring
def test_class_docstring_example(make_sg):
    var_names = ["var0", "var1", "var2"]
    data = [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]]
    phase = (0.5, 0.25, 0.25)
    storegate = make_sg(data_id="test_id")
    # multiml zips var_names with data, so the 4th row is silently ignored; storegate warns.
    with pytest.warns(UserWarning, match="4 arrays given for 3 var names"):
        storegate.add_data(var_names=var_names, data=data, phase=phase)

    # each var got 3 values; n=3 with (0.5, 0.25, 0.25) cuts at int(1.5)=1 and int(2.25)=2
    assert multiml_cuts(3, phase) == (1, 2)
    got = storegate.get_data(var_names=var_names, phase="train")
    assert isinstance(got, list) and len(got) == 3
    for arr, expected in zip(got, [[0], [3], [6]], strict=True):
        assert_array_equal_exact(arr, np.array(expected))
    assert [a.tolist() for a in storegate.get_data(var_names, "valid")] == [[1], [4], [7]]
    assert [a.tolist() for a in storegate.get_data(var_names, "test")] == [[2], [5], [8]]

    row = storegate["train"][var_names][0]
    assert isinstance(row, list)
    assert row == [0, 3, 6]
    assert all(isinstance(x, np.integer) for x in row)


def test_class_docstring_warning_points_at_caller(make_sg):
    storegate = make_sg()
    with pytest.warns(UserWarning) as rec:
        storegate.add_data(["a"], [[1, 2], [3, 4]], phase="train")
    assert rec[0].filename == __file__
    with pytest.warns(UserWarning) as rec:
        storegate.update_data(["a"], [[5, 6], [7, 8]], phase="train")
    assert rec[0].filename == __file__
    with pytest.warns(UserWarning) as rec:
        storegate["train"][["a"]][:] = [[1, 1], [7, 8]]
    assert rec[0].filename == __file__
    assert storegate["train"]["a"][:].tolist() == [1, 1]


# ---------------------------------------------------------------------- sphinx tutorial
@pytest.fixture
def toy(make_sg):
    storegate = make_sg(data_id="toy-dataset")
    phase = (0.8, 0.1, 0.1)  # fraction of train, valid, test phase
    storegate.add_data("x0", np.array(range(5)), phase)
    storegate.add_data("x1", np.array(range(5)), phase)
    storegate.compile()
    return storegate


def test_tutorial_split_follows_multiml_arithmetic(toy):
    # The tutorial prints train [0 1 2] (3/1/1), but multiml's code cuts n=5 at
    # int(5*0.8)=4 and int(5*0.8 + 5*0.1)=int(4.5)=4: train 4 rows, valid none, test 1.
    assert multiml_cuts(5, PHASE_FRACTIONS) == (4, 4)
    assert toy.get_metadata()["total_events"] == [4, 0, 1]
    assert toy.get_metadata()["valid_phases"] == ["train", "test"]
    assert len(toy["train"]) == 4
    assert len(toy["valid"]) == 0
    assert len(toy["test"]) == 1
    assert toy.get_var_names("valid") == []


def test_tutorial_retrieval(toy):
    assert_array_equal_exact(toy["train"]["x0"][:], np.array([0, 1, 2, 3]))
    first = toy["train"]["x0"][0]
    assert first == 0 and isinstance(first, np.int64)
    assert_array_equal_exact(toy["train"]["x0"][0:2], np.array([0, 1]))
    data = toy["train"][("x0", "x1")][:]
    assert_array_equal_exact(data, np.array([[0, 0], [1, 1], [2, 2], [3, 3]]))
    data = toy["train"][["x0", "x1"]][:]
    assert isinstance(data, list) and len(data) == 2
    assert_array_equal_exact(data[0], np.array([0, 1, 2, 3]))
    assert_array_equal_exact(data[1], np.array([0, 1, 2, 3]))
    assert_array_equal_exact(toy["test"]["x1"][:], np.array([4]))


def test_tutorial_loop(toy):
    seen = []
    for index, data in enumerate(toy["train"][("x0", "x1")]):
        assert isinstance(data, np.ndarray) and data.shape == (2,)
        seen.append((index, data.tolist()))
    assert seen == [(0, [0, 0]), (1, [1, 1]), (2, [2, 2]), (3, [3, 3])]


def test_tutorial_loop_single_var_and_list(toy):
    assert [int(x) for x in toy["train"]["x0"]] == [0, 1, 2, 3]
    # multiml's legacy iteration over a list of vars gives [get_data(v, i) for v] per row
    assert [[int(v) for v in row] for row in toy["train"][["x0", "x1"]]] == [
        [0, 0], [1, 1], [2, 2], [3, 3]
    ]


def test_tutorial_show_info_layout(toy, capsys, backend_name):
    toy.show_info()
    out = capsys.readouterr().out
    rule = "=" * 61
    dash = "-" * 61
    b = backend_name.ljust(7)
    expected = "\n".join([
        rule,
        "StoreGate data_id : toy-dataset, compiled : True",
        rule,
        "phase  backend  var_name  var_type  total_events  var_shape",
        dash,
        f"train  {b}  x0        <i8       4             ()",
        f"train  {b}  x1        <i8       4             ()",
        dash,
        f"test   {b}  x0        <i8       1             ()",
        f"test   {b}  x1        <i8       1             ()",
        dash,
        rule,
    ]) + "\n"
    assert out == expected


def test_show_info_truncates_long_cells(make_sg, capsys):
    storegate = make_sg(data_id="s")
    long_name = "v" * 35
    storegate.add_data(long_name, np.zeros((2, 3), "f4"))
    storegate.show_info()
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == "StoreGate data_id : s, compiled : False"
    row = next(ln for ln in lines if ln.startswith("train"))
    assert row.split() == ["train", storegate.backend, "v" * 30, "<f4", "2", "(3,)"]
    assert len(lines[0]) == sum([5, 7, 30, 8, 12, 9]) + 2 * 6


# ---------------------------------------------------------------------- [] docstrings
@pytest.fixture
def three(make_sg):
    storegate = make_sg()
    storegate.add_data("var0", np.arange(10), phase=(6, 2, 2))
    storegate.add_data("var1", np.arange(10) * 10, phase=(6, 2, 2))
    storegate.compile()
    return storegate


def test_getitem_docstring_forms(three):
    # get all train data / slice train data by index / loop by index
    assert three["train"]["var0"][:].tolist() == [0, 1, 2, 3, 4, 5]
    assert three["train"]["var0"][0:2].tolist() == [0, 1]
    assert [int(d) for d in three["train"]["var0"]] == [0, 1, 2, 3, 4, 5]
    assert three["valid"]["var1"][:].tolist() == [60, 70]


def test_setitem_docstring_forms(three):
    data = np.arange(6) + 100
    three["train"]["var0"][:] = data
    assert three["train"]["var0"][:].tolist() == [100, 101, 102, 103, 104, 105]
    three["train"]["var0"][0:2] = data[0:2] * 2
    assert three["train"]["var0"][:].tolist() == [200, 202, 102, 103, 104, 105]
    # other phases untouched
    assert three["valid"]["var0"][:].tolist() == [6, 7]


def test_delitem_docstring_form(three):
    del three["train"]["var0"]
    assert three.get_var_names("train") == ["var1"]
    assert three.get_var_names("valid") == ["var0", "var1"]


def test_len_and_contains_docstring_forms(three):
    assert len(three["train"]) == 6
    assert len(three["test"]) == 2
    assert "var0" in three["train"]
    assert "var1" in three["test"]
    assert "var9" not in three["train"]


def test_repr_like_multiml():
    sg = StoreGate(backend="numpy", data_id="d")
    assert repr(sg) == "StoreGate(backend=numpy, backend_args={}, data_id=d)"


def test_data_id_and_backend_properties(make_sg, backend_name):
    storegate = make_sg(data_id="first")
    assert storegate.data_id == "first"
    assert storegate.backend == backend_name
    storegate.set_data_id("second")
    assert storegate.data_id == "second"
    assert set(storegate.get_data_ids()) == {"first", "second"}


# ---------------------------------------------------------------------- get_data shapes
K = (2, 3)  # per-row shape
N_TRAIN = 6


@pytest.fixture
def shaped(make_sg):
    storegate = make_sg()
    a = np.arange(10 * 6, dtype="f4").reshape(10, *K)
    storegate.add_data("a", a, phase=(N_TRAIN, 2, 2))
    storegate.add_data("b", -a, phase=(N_TRAIN, 2, 2))
    storegate.add_data("c", np.arange(10, dtype="i8"), phase=(N_TRAIN, 2, 2))
    storegate.compile()
    return storegate, a


INDEXES = {  # index -> the train rows it selects
    "minus1": (-1, [0, 1, 2, 3, 4, 5]),
    "slice": (slice(1, 4), [1, 2, 3]),
    "step-slice": (slice(0, 6, 2), [0, 2, 4]),
    "start-stop": ((1, 5), [1, 2, 3, 4]),
    "list": ([5, 0, 5], [5, 0, 5]),
    "ndarray": (np.array([2, 1]), [2, 1]),
}


@pytest.mark.parametrize("name", list(INDEXES))
def test_get_data_shape_table(shaped, name):
    storegate, a = shaped
    index, rows = INDEXES[name]
    n = len(rows)
    expected_rows = a[rows]
    # str -> (N, k)
    got = storegate.get_data("a", "train", index)
    assert_array_equal_exact(got, expected_rows)
    # tuple -> (N, M, k)
    got = storegate.get_data(("a", "b"), "train", index)
    assert got.shape == (n, 2, *K)
    np.testing.assert_array_equal(got[:, 0], expected_rows)
    np.testing.assert_array_equal(got[:, 1], -expected_rows)
    # 1-tuple -> (N, 1, k)
    assert storegate.get_data(("a",), "train", index).shape == (n, 1, *K)
    # list -> list of (N, k)
    got = storegate.get_data(["a", "c"], "train", index)
    assert isinstance(got, list) and [g.shape for g in got] == [(n, *K), (n,)]
    assert got[1].tolist() == rows
    # the [] syntax gives the same (int/slice items in multiml; any index here)
    np.testing.assert_array_equal(storegate["train"]["a"][index], expected_rows)


def test_get_data_int_index_shapes(shaped):
    storegate, a = shaped
    assert_array_equal_exact(storegate.get_data("a", "train", 4), a[4])  # k
    got = storegate.get_data(("a", "b"), "train", 4)  # (M, k)
    assert_array_equal_exact(got, np.stack([a[4], -a[4]]))
    assert storegate.get_data(("a",), "train", 4).shape == (1, *K)
    got = storegate.get_data(["a", "c"], "train", 4)
    assert isinstance(got, list)
    assert_array_equal_exact(got[0], a[4])
    assert got[1] == 4 and isinstance(got[1], np.integer)  # 1-D var: a numpy scalar


def test_get_data_all_phase_default_index(shaped):
    storegate, a = shaped
    assert_array_equal_exact(storegate.get_data("a", "all"), a)
    assert_array_equal_exact(storegate.get_data("a", None), a)
    got = storegate.get_data(("a", "b"), "all")
    assert got.shape == (10, 2, *K)
    np.testing.assert_array_equal(got[:, 1], -a)


def test_get_data_docstring_example(shaped):
    storegate, a = shaped
    np.testing.assert_array_equal(storegate.get_data(var_names="a", phase="train", index=1), a[1])


def test_get_data_dtype_promotion_in_tuple(shaped):
    storegate, _ = shaped
    storegate.add_data("f", np.arange(10, dtype="f4"), phase=(N_TRAIN, 2, 2))
    got = storegate.get_data(("c", "f"), "train")
    assert got.dtype == np.result_type(np.int64, np.float32)
    assert got[:, 1].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]


# ---------------------------------------------------------------------- writes
def test_add_data_docstring_example_appends(make_sg):
    storegate = make_sg()
    storegate.add_data(var_names="var0", data=np.array([0, 1, 2]), phase="train")
    storegate.add_data(var_names="var0", data=np.array([3, 4]), phase="train")
    assert_array_equal_exact(storegate["train"]["var0"][:], np.array([0, 1, 2, 3, 4]))


def test_update_data_int_index_docstring_example(make_sg):
    storegate = make_sg()
    storegate.add_data("var0", np.array([5, 6, 7]), phase="train")
    storegate.update_data(var_names="var0", data=[1], phase="train", index=1)
    assert_array_equal_exact(storegate["train"]["var0"][:], np.array([5, 1, 7]))


def test_update_data_start_stop_index(make_sg):
    storegate = make_sg()
    storegate.add_data("var0", np.arange(6), phase="train")
    storegate.update_data(var_names="var0", data=[10, 20], phase="train", index=(2, 4))
    assert storegate["train"]["var0"][:].tolist() == [0, 1, 10, 20, 4, 5]


def test_update_data_creates_missing_var(make_sg):
    storegate = make_sg()
    storegate.add_data("a", np.arange(10), phase=(0.8, 0.1, 0.1))
    storegate.update_data("b", np.arange(10) * 2, phase=(0.8, 0.1, 0.1))
    assert storegate.get_var_names("test") == ["a", "b"]
    assert storegate["test"]["b"][:].tolist() == [18]


def test_setitem_all_whole_phase(make_sg):
    storegate = make_sg()
    storegate.add_data(("a", "b"), np.zeros((10, 2)), phase=(0.8, 0.1, 0.1))
    storegate.compile()
    data = np.arange(20.0).reshape(10, 2)
    storegate["all"][("a", "b")][:] = data
    assert_array_equal_exact(storegate["all"][("a", "b")][:], data)
    assert storegate["valid"]["b"][:].tolist() == [17.0]


def test_get_metadata_keys_and_values(make_sg):
    storegate = make_sg()
    storegate.add_data("x", np.arange(10), phase=(0.6, 0.2, 0.2))
    storegate.compile()
    meta = storegate.get_metadata()
    assert set(meta) == {"compiled", "total_events", "sizes", "valid_phases"}
    assert meta == {
        "compiled": True,
        "total_events": [6, 2, 2],
        "sizes": {"train": 6, "valid": 2, "test": 2, "all": 10},
        "valid_phases": ["train", "valid", "test"],
    }


def test_get_metadata_empty_store(make_sg):
    storegate = make_sg()
    storegate.compile()
    assert storegate.get_metadata() == {
        "compiled": True,
        "total_events": [0, 0, 0],
        "sizes": {"train": 0, "valid": 0, "test": 0, "all": 0},
        "valid_phases": [],
    }


def test_compile_reset_writes_active(make_sg):
    storegate = make_sg()
    storegate.add_data("x", np.arange(5.0), phase=(3, 2, 0))
    storegate.compile(reset=True)
    assert storegate.get_var_names("train") == ["x", "active"]
    assert_array_equal_exact(storegate["train"]["active"][:], np.ones(3, dtype=np.int64))
    assert_array_equal_exact(storegate["valid"]["active"][:], np.ones(2, dtype=np.int64))
    assert storegate.get_var_names("test") == []


def test_get_var_shapes(make_sg):
    storegate = make_sg()
    storegate.add_data("img", np.zeros((4, 3, 2), "f4"))
    storegate.add_data("y", np.zeros(4, "i8"))
    assert storegate.get_var_shapes("img") == (3, 2)
    assert storegate.get_var_shapes("y") == ()
    assert storegate.get_var_shapes("nope") is None
    assert storegate.get_var_shapes(["img", "nope", "y"]) == [(3, 2), None, ()]


def test_delete_and_clear(make_sg):
    storegate = make_sg()
    storegate.add_data(("a", "b", "c"), np.zeros((10, 3)), phase=(0.6, 0.2, 0.2))
    storegate.delete_data("a", phase="all")
    storegate.delete_data(["b", "missing"], phase="valid")  # missing vars are skipped
    assert storegate.get_var_names("train") == ["b", "c"]
    assert storegate.get_var_names("valid") == ["c"]
    storegate.clear_data()
    assert [storegate.get_var_names(p) for p in ("train", "valid", "test")] == [[], [], []]
    assert storegate.get_metadata()["total_events"] == [0, 0, 0]


def test_create_empty_then_fill(make_sg):
    storegate = make_sg()
    storegate.create_empty("img", (10, 4), phase=(0.8, 0.1, 0.1), dtype="f4")
    assert storegate.get_var_shapes("img") == (4,)
    assert len(storegate["train"]) == 8
    storegate["all"]["img"][:] = np.ones((10, 4), "f4")
    assert_array_equal_exact(storegate["all"]["img"][:], np.ones((10, 4), "f4"))


def test_set_mode_on_non_hybrid_only_warns(make_sg, caplog):
    storegate = make_sg()
    with caplog.at_level("WARNING", logger="storegate"):
        storegate.set_mode("numpy")
    assert "set_mode is valid for only hybrid database" in caplog.text


def test_to_memory_on_non_hybrid_raises_value_error(make_sg, backend_name):
    storegate = make_sg()
    with pytest.raises(ValueError, match=f"to_memory is valid for only hybrid database "
                                         f"\\({backend_name}\\)"):
        storegate.to_memory("x")
    with pytest.raises(ValueError, match="to_storage is valid for only hybrid"):
        storegate.to_storage("x")


# ---------------------------------------------------------------------- shuffle
def multiml_shuffled(column: np.ndarray, seed: int) -> np.ndarray:
    """multiml: ``np.random.seed(seed); np.random.shuffle(column)`` on a copy."""
    out = column.copy()
    np.random.RandomState(seed).shuffle(out)
    return out


def test_add_data_shuffle_aligned_across_calls(make_sg):
    """multiml's tests/test_storegate.py, numpy part: the same data added under two tuple names
    with shuffle=True stay row-aligned."""
    var_names01 = ("var0", "var1")
    var_names23 = ("var2", "var3")
    data01_bind = np.array([np.linspace(0, 9, 10), np.linspace(10, 19, 10)]).transpose(1, 0)
    phase = (0.8, 0.1, 0.1)
    storegate = make_sg(data_id="test_storegate")
    storegate.add_data(var_names=var_names01, data=data01_bind, phase=phase, shuffle=True)
    storegate.add_data(var_names=var_names23, data=data01_bind, phase=phase, shuffle=True)
    storegate.compile()

    storegate_train = storegate["train"]
    assert storegate_train[var_names01][0][0] == storegate_train[var_names23][0][0]
    # stronger: whole phases equal, and equal to what multiml computes (seed 1 = True)
    for p in ("train", "valid", "test"):
        assert_array_equal_exact(storegate[p][var_names01][:], storegate[p][var_names23][:])
    expected0 = multiml_shuffled(data01_bind[:, 0], 1)
    expected1 = multiml_shuffled(data01_bind[:, 1], 1)
    assert_array_equal_exact(storegate["all"]["var0"][:], expected0)
    assert_array_equal_exact(storegate["all"]["var3"][:], expected1)
    assert len(storegate["train"]) == 8


def test_add_data_shuffle_int_seed(make_sg):
    storegate = make_sg()
    x = np.arange(20)
    storegate.add_data("x", x, phase="train", shuffle=7)
    assert_array_equal_exact(storegate["train"]["x"][:], multiml_shuffled(x, 7))


def test_add_data_shuffle_false_and_zero_keep_order(make_sg):
    storegate = make_sg()
    storegate.add_data("a", np.arange(5), shuffle=False)
    storegate.add_data("b", np.arange(5), shuffle=0)
    assert storegate["train"]["a"][:].tolist() == [0, 1, 2, 3, 4]
    assert storegate["train"]["b"][:].tolist() == [0, 1, 2, 3, 4]


def test_shuffle_method_keeps_rows_aligned(make_sg):
    storegate = make_sg()
    storegate.add_data(("a", "b"), np.arange(40).reshape(20, 2), phase=(10, 5, 5))
    storegate.shuffle(phase="all", seed=3)
    rows = storegate["all"][("a", "b")][:]
    assert (rows[:, 1] == rows[:, 0] + 1).all()
    # each phase is permuted within itself
    assert sorted(storegate["train"]["a"][:].tolist()) == list(range(0, 20, 2))
    assert sorted(storegate["valid"]["a"][:].tolist()) == list(range(20, 30, 2))
    assert storegate["train"]["a"][:].tolist() != list(range(0, 20, 2))
    # deterministic: same seed, same result
    other = StoreGate(data_id="d")
    other.add_data(("a", "b"), np.arange(40).reshape(20, 2), phase=(10, 5, 5))
    other.shuffle(phase="all", seed=3)
    assert_array_equal_exact(other["all"][("a", "b")][:], rows)


def test_shuffle_single_phase_leaves_others(make_sg):
    storegate = make_sg()
    storegate.add_data("a", np.arange(20), phase=(10, 5, 5))
    storegate.shuffle(phase="train", seed=5)
    assert storegate["valid"]["a"][:].tolist() == [10, 11, 12, 13, 14]
    assert storegate["train"]["a"][:].tolist() != list(range(10))


# ---------------------------------------------------------------------- transforms
def test_astype_onehot_argmax(make_sg):
    storegate = make_sg()
    storegate.add_data("y", np.array([0.0, 2.0, 1.0, 2.0]))
    storegate.astype("y", "i8")
    assert_array_equal_exact(storegate["train"]["y"][:], np.array([0, 2, 1, 2]))
    storegate.onehot("y", num_classes=3)
    assert_array_equal_exact(storegate["train"]["y"][:], np.identity(3)[[0, 2, 1, 2]])
    storegate.argmax("y", axis=1)
    assert_array_equal_exact(storegate["train"]["y"][:], np.array([0, 2, 1, 2]))


def test_multiml_test_storegate_flow(make_sg):
    """The backend-independent part of multiml's tests/test_storegate.py, on each backend."""
    data_id = "test_storegate"
    var_names01 = ("var0", "var1")
    var_names23 = ("var2", "var3")
    data01 = np.array([np.linspace(0, 9, 10), np.linspace(10, 19, 10)])
    data23 = np.array([np.linspace(20, 29, 10), np.linspace(30, 39, 10)])
    data01_bind = data01.transpose(1, 0)
    data23_bind = data23.transpose(1, 0)

    storegate = make_sg(data_id=data_id)
    assert storegate.data_id == data_id
    storegate.set_data_id(data_id)
    assert storegate.data_id == data_id

    phase = (0.8, 0.1, 0.1)
    storegate.add_data(var_names=var_names01, data=data01_bind, phase=phase)
    storegate.add_data(var_names=var_names23, data=data23_bind, phase=phase)
    assert storegate.get_data_ids() == [data_id]
    storegate.compile()

    storegate.update_data(var_names=var_names23, data=data23_bind, phase=phase)
    storegate.update_data(var_names=var_names23, data=data23_bind, phase=phase)
    storegate.compile()
    storegate.get_metadata()

    storegate.update_data(var_names=var_names23, data=data23_bind, phase="all")
    storegate["all"][var_names23][:] = data23_bind
    storegate.compile()

    assert_array_equal_exact(
        storegate.get_data(var_names=var_names23, phase="train", index=0), data23_bind[0]
    )
    assert_array_equal_exact(storegate.get_data(var_names=var_names23, phase="all"),
                             data23_bind)
    assert_array_equal_exact(storegate["all"][var_names23][:], data23_bind)

    total_events = len(data01[0])
    train_events = total_events * phase[0]
    assert len(storegate["train"]) == total_events * phase[0]
    assert len(storegate["valid"]) == total_events * phase[1]
    assert len(storegate["test"]) == total_events * phase[2]
    assert var_names23[0] in storegate["train"]
    assert var_names23[1] in storegate["train"]

    storegate_train = storegate["train"]
    assert storegate_train[var_names23][:].shape == (train_events, len(var_names23))
    assert storegate_train[var_names23][0].shape == (len(var_names23),)
    assert storegate_train[var_names23[0]][:].shape == (train_events,)
    assert storegate_train[var_names23[0]][0] == 20

    storegate.delete_data(var_names="var2", phase="train")
    del storegate["train"][["var0", "var1"]]
    assert storegate.get_var_names(phase="train") == ["var3"]

    storegate.astype(var_names="var3", dtype="i8")
    storegate.onehot(var_names="var3", num_classes=40)
    storegate.argmax(var_names="var3", axis=1)
    assert storegate["train"]["var3"][0] == 30
    assert storegate["train"]["var3"][:].tolist() == list(range(30, 38))
