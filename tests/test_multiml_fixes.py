"""multiml bugs storegate fixes on purpose (DESIGN section 9, reference notes section 10).

Each test would fail on multiml; the comment in each says what multiml does instead.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
from sg_helpers import assert_array_equal_exact, requires_zarr_backend, snapshot

from storegate import (
    DtypeError,
    InconsistentLengthError,
    InvalidNameError,
    InvalidPhaseError,
    StoreGate,
    VarExistsError,
    VarNotFoundError,
)


# ---------------------------------------------------------------------- phase specs
@pytest.mark.parametrize(
    ("phase", "sizes"),
    [((0.7, 0.2, 0.1), [7, 2, 1]), ((0.6, 0.3, 0.1), [6, 3, 1])],
)
def test_fraction_tuple_with_float_rounding_accepted(make_sg, phase, sizes):
    # multiml: sum((0.7, 0.2, 0.1)) == 0.9999999999999999 != 1.0 ->
    # ValueError('Sum of fraction must be 1.0')
    sg = make_sg()
    sg.add_data("x", np.arange(10), phase=phase)
    assert sg.get_metadata()["total_events"] == sizes


def test_fraction_list_must_sum_to_one(make_sg):
    # multiml: lists skip the sum check; [0.5, 0.2, 0.2] gives 5/2/3
    sg = make_sg()
    with pytest.raises(InvalidPhaseError, match=r"\[0\.5, 0\.2, 0\.2\] sum to 0\.9"):
        sg.add_data("x", np.arange(10), phase=[0.5, 0.2, 0.2])
    assert sg.get_var_names("train") == []


def test_numpy_int_counts_are_counts(make_sg):
    # multiml: a tuple of np.int64 is taken as fractions and rejected (sum != 1.0)
    sg = make_sg()
    sg.add_data("x", np.arange(10), phase=tuple(np.array([5, 3, 2])))
    assert sg.get_metadata()["total_events"] == [5, 3, 2]


def test_all_phase_without_explicit_compile(make_sg):
    # multiml: 'all' needs a compiled data_id, and every add clears it, so a second
    # add_data(..., 'all') raises 'Auto fraction is supported only after compile'
    sg = make_sg()
    sg.add_data("a", np.arange(10), phase=(0.6, 0.2, 0.2))
    sg.add_data("b", np.arange(10) * 2, phase="all")
    sg.add_data("c", np.arange(10) * 3, phase="auto")
    assert sg["valid"][("a", "b", "c")][:].tolist() == [[6, 12, 18], [7, 14, 21]]


# ---------------------------------------------------------------------- copies, aliasing
def test_input_is_copied(make_sg):
    # multiml numpy backend: stores the caller's array, so later edits change the store
    sg = make_sg()
    x = np.arange(10.0)
    sg.add_data("x", x, phase=(0.6, 0.2, 0.2))
    x[:] = -1
    assert sg["all"]["x"][:].tolist() == list(np.arange(10.0))


def test_split_pieces_do_not_alias(make_sg):
    # multiml numpy backend: pieces from overlapping views share memory, so writing the valid
    # copy wrote into the train copy
    sg = make_sg()
    x = np.arange(10.0)
    sg.add_data("a", x[0:6], phase="train")
    sg.add_data("a", x[4:10], phase="valid")
    sg.compile()
    sg.update_data("a", [100.0], phase="valid", index=0)
    assert sg["train"]["a"][:].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert sg["valid"]["a"][:].tolist() == [100.0, 5.0, 6.0, 7.0, 8.0, 9.0]


def test_returned_rows_are_copies(make_sg):
    # multiml numpy backend: get_data(str, int index) returns a view of the stored row
    sg = make_sg()
    sg.add_data("v", np.zeros((3, 2)))
    row = sg["train"]["v"][0]
    row[:] = 99
    block = sg["train"]["v"][:]
    block[:] = 7
    assert sg["train"]["v"][:].tolist() == [[0.0, 0.0]] * 3


def test_add_data_shuffle_leaves_caller_array(make_sg):
    # multiml: add_data(str, ndarray, shuffle=True) shuffles the caller's array in place
    sg = make_sg()
    x = np.arange(20)
    sg.add_data("x", x, phase="train", shuffle=True)
    assert x.tolist() == list(range(20))
    assert sorted(sg["train"]["x"][:].tolist()) == list(range(20))
    assert sg["train"]["x"][:].tolist() != list(range(20))


# ---------------------------------------------------------------------- metadata
def test_var_shapes_right_after_append(make_sg, capsys):
    # multiml numpy backend: after an append the shape is recomputed as row0.shape[1:] -> ()
    sg = make_sg()
    sg.add_data("v", np.zeros((4, 2)))
    sg.add_data("v", np.ones((3, 2)))
    assert sg.get_var_shapes("v") == (2,)
    sg.compile()
    sg.show_info()
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("train"))
    assert line.split() == ["train", sg.backend, "v", "<f8", "7", "(2,)"]


def test_append_keeps_dtype(make_sg):
    # multiml: numpy upcasts (f4 + f8 -> f8), zarr casts; here every backend keeps the var's
    sg = make_sg()
    sg.add_data("v", np.zeros(3, "f4"))
    sg.add_data("v", np.ones(2, "f8"))
    sg.add_data("v", np.array([2, 3], "i8"))
    assert_array_equal_exact(sg["train"]["v"][:], np.array([0, 0, 0, 1, 1, 2, 3], "f4"))


def test_var_order_is_insertion_order(make_sg, reopen):
    # multiml zarr backend: alphabetical (array_keys())
    sg = make_sg()
    sg.add_data("b", np.zeros(3))
    sg.add_data("a", np.zeros(3))
    sg.add_data(("z", "c"), np.zeros((3, 2)))
    assert sg.get_var_names() == ["b", "a", "z", "c"]
    sg = reopen(sg)
    assert sg.get_var_names() == ["b", "a", "z", "c"]
    assert sg["train"][["b", "a", "z", "c"]][0] == [0.0, 0.0, 0.0, 0.0]


def test_compile_metadata_persisted(make_sg, reopen):
    # multiml: metadata lives in memory only; a reopened zarr store needs compile() first
    sg = make_sg()
    sg.add_data("x", np.arange(10), phase=(0.6, 0.2, 0.2))
    sg.compile()
    sg = reopen(sg)
    assert sg.get_metadata()["total_events"] == [6, 2, 2]
    assert len(sg["valid"]) == 2
    assert sg["test"]["x"][:].tolist() == [8, 9]


# ---------------------------------------------------------------------- transforms
@pytest.mark.parametrize("transform", ["astype", "onehot", "argmax"])
def test_transform_all_phase_on_only_var_keeps_data(make_sg, transform):
    # multiml: deletes the var, recompiles to sizes 0, then update_data(..., 'all') raises
    # 'Provided events are not consistent with metadata' -- the var is gone
    sg = make_sg()
    labels = np.array([0, 2, 1, 2, 0, 1, 1, 0, 2, 2])
    if transform == "argmax":
        sg.add_data("y", np.identity(3)[labels], phase=(0.6, 0.2, 0.2))
        sg.argmax("y", axis=1, phase="all")
        expected = labels.astype(np.int64)
    elif transform == "onehot":
        sg.add_data("y", labels, phase=(0.6, 0.2, 0.2))
        sg.onehot("y", 3, phase="all")
        expected = np.identity(3)[labels]
    else:
        sg.add_data("y", labels, phase=(0.6, 0.2, 0.2))
        sg.astype("y", "f4", phase="all")
        expected = labels.astype("f4")
    assert_array_equal_exact(sg["all"]["y"][:], expected)
    assert sg.get_metadata()["total_events"] == [6, 2, 2]


def test_astype_keeps_var_position(make_sg):
    # multiml: astype deletes and re-adds, so the var moves to the end of the order
    sg = make_sg()
    sg.add_data(("a", "b", "c"), np.zeros((4, 3)))
    sg.astype("a", "i4")
    assert sg.get_var_names() == ["a", "b", "c"]
    assert sg["train"]["a"][:].dtype == np.int32


def test_failed_transform_leaves_var(make_sg):
    # multiml: the var is deleted before the new one is written
    sg = make_sg()
    sg.add_data("y", np.array([0, 5, 1]))
    before = snapshot(sg)
    with pytest.raises(ValueError, match="outside"):
        sg.onehot("y", 3)
    assert snapshot(sg) == before


# ---------------------------------------------------------------------- zarr global state
def _zarr_codecs(path: str, var: str) -> dict:
    import zarr

    root = zarr.open_group(path, mode="r")
    for name, obj in root.members(max_depth=None):
        parts = name.split("/")
        if isinstance(obj, zarr.Array) and var in parts:
            md = obj.metadata.to_dict()
            return {k: md.get(k) for k in ("codecs", "compressor", "filters")}
    raise AssertionError(f"no zarr array for var {var!r} under {path}")


def _compressor(kind: str):
    if kind == "numcodecs-blosc":  # what multiml users pass
        import numcodecs

        return numcodecs.Blosc(cname="zstd", clevel=3, shuffle=numcodecs.Blosc.BITSHUFFLE)
    import zarr

    return zarr.codecs.ZstdCodec(level=7)


@requires_zarr_backend
@pytest.mark.parametrize("kind", ["zarr-zstd", "numcodecs-blosc"])
def test_zarr_compressor_is_per_store(tmp_path, kind):
    # multiml: compressor=X sets zarr.storage.default_compressor = X for the whole process
    import zarr

    config_before = copy.deepcopy(zarr.config.config)
    data = np.arange(1000, dtype="f4")

    def make(name, **args):
        path = str(tmp_path / name)
        sg = StoreGate("zarr", backend_args={"output_dir": path, **args}, data_id="d")
        sg.add_data("compvar", data)
        sg.compile()
        sg.close()
        return path

    baseline = make("base.zarr")
    custom = make("custom.zarr", compressor=_compressor(kind))
    later = make("later.zarr")
    assert _zarr_codecs(custom, "compvar") != _zarr_codecs(baseline, "compvar")
    assert ("blosc" if "blosc" in kind else "zstd") in repr(_zarr_codecs(custom, "compvar"))
    assert _zarr_codecs(later, "compvar") == _zarr_codecs(baseline, "compvar")
    assert zarr.config.config == config_before
    reread = StoreGate("zarr", backend_args={"output_dir": custom}, data_id="d")
    assert_array_equal_exact(reread["train"]["compvar"][:], data)


# ---------------------------------------------------------------------- 'all' and indexes
@pytest.fixture
def abc(make_sg):
    """a = 0..9 split 6/2/2; b = 10*a; vector var v = [a, -a]."""
    sg = make_sg()
    a = np.arange(10)
    sg.add_data(("a", "b"), np.stack([a, 10 * a], axis=1), phase=(6, 2, 2))
    sg.add_data("v", np.stack([a, -a], axis=1).astype("f4"), phase=(6, 2, 2))
    sg.compile()
    return sg


@pytest.mark.parametrize(
    ("index", "rows"),
    [
        (slice(4, 9), [4, 5, 6, 7, 8]),
        (slice(None, None, 3), [0, 3, 6, 9]),
        (slice(9, 2, -3), [9, 6, 3]),
        ([9, 0, 7, 5, 7], [9, 0, 7, 5, 7]),
        (np.array([8, 2]), [8, 2]),
        ((5, 8), [5, 6, 7]),
        (np.arange(10) % 4 == 0, [0, 4, 8]),
    ],
)
def test_all_phase_takes_any_index(abc, index, rows):
    # multiml: 'phase=all is not supported together with index option'
    assert abc["all"]["a"][index].tolist() == rows
    assert abc.get_data("b", "all", index).tolist() == [10 * r for r in rows]
    got = abc["all"][("a", "b")][index]
    assert got.shape == (len(rows), 2)
    assert got[:, 1].tolist() == [10 * r for r in rows]
    got = abc["all"]["v"][index]
    assert got.shape == (len(rows), 2) and got[:, 1].tolist() == [-r for r in rows]
    assert [x.tolist() for x in abc["all"][["a", "b"]][index]] == [rows, [10 * r for r in rows]]


def test_all_phase_int_index(abc):
    # multiml: any int other than -1 with 'all' raises
    assert abc["all"]["a"][7] == 7
    assert abc["all"]["a"][-3] == 7
    assert abc["all"][("a", "b")][8].tolist() == [8, 80]
    assert abc["all"]["v"][9].tolist() == [9.0, -9.0]


def test_all_phase_index_writes(abc):
    # multiml: an index other than -1 with 'all' is unusable
    abc["all"]["a"][[9, 0, 6]] = [90, 0, 60]
    abc["all"]["a"][4:7] = [40, 50, 61]
    abc["all"]["a"][8] = [80]
    assert abc["all"]["a"][:].tolist() == [0, 1, 2, 3, 40, 50, 61, 7, 80, 90]
    assert abc["valid"]["a"][:].tolist() == [61, 7]


def test_negative_int_index(abc):
    # multiml: -2 on a vector var returns row[-2]; on a 1-D var AxisError; tuples transposed
    assert abc["train"]["a"][-2] == 4
    assert abc["train"]["v"][-2].tolist() == [4.0, -4.0]
    assert abc["train"][("a", "b")][-6].tolist() == [0, 0]
    assert abc.get_data(("a", "b"), "valid", -2).tolist() == [6, 60]


def test_numpy_integer_index(abc):
    # multiml: np.int64 index -> ValueError('Un supported index: 2') / NotImplementedError in []
    assert abc["train"]["a"][np.int64(2)] == 2
    assert abc.get_data("a", "train", np.int32(3)) == 3
    assert abc["train"][("a", "b")][np.uint8(1)].tolist() == [1, 10]
    abc["train"]["a"][np.int64(0)] = [-5]
    abc.update_data("a", [-6], "train", index=np.int64(1))
    assert abc["train"]["a"][0:2].tolist() == [-5, -6]


def test_list_of_ints_is_an_index(abc):
    # multiml: sg[[0, 1]] and sg['train'][(1, 3)] are taken as var names
    assert abc["train"]["a"][[0, 1]].tolist() == [0, 1]
    assert abc["train"]["a"][(1, 3)].tolist() == [1, 2]


@pytest.mark.parametrize("as_list", [False, True])
def test_bool_mask_is_a_mask(abc, as_list):
    # multiml numpy backend: np.take treats True/False as rows 1 and 0
    mask = np.array([True, False, False, True, False, True])
    index = mask.tolist() if as_list else mask
    assert abc["train"]["a"][index].tolist() == [0, 3, 5]
    assert abc["train"][("a", "b")][index].tolist() == [[0, 0], [3, 30], [5, 50]]
    assert abc["train"]["v"][index].shape == (3, 2)


def test_empty_list_index(abc):
    # multiml zarr backend: the empty list becomes a float64 array -> IndexError
    assert_array_equal_exact(abc["train"]["a"][[]], np.empty(0, dtype=np.int64))
    assert_array_equal_exact(abc["train"]["v"][[]], np.empty((0, 2), dtype="f4"))
    assert_array_equal_exact(abc["valid"][("a", "b")][[]], np.empty((0, 2), dtype=np.int64))
    assert_array_equal_exact(abc["all"]["v"][np.array([], dtype=int)],
                             np.empty((0, 2), dtype="f4"))
    assert [x.shape for x in abc["train"][["a", "v"]][[]]] == [(0,), (0, 2)]


def test_int_index_setitem(abc):
    # multiml: int-index setitem is broken for 1-D vars under numpy 2 and for all vars on zarr
    abc["train"]["a"][1] = [42]
    abc["train"]["v"][1] = [[7.0, 8.0]]
    abc["train"]["v"][2] = [9.0, 10.0]
    abc["train"][("a", "b")][3] = [[33, 330]]
    assert abc["train"]["a"][0:4].tolist() == [0, 42, 2, 33]
    assert abc["train"]["b"][3] == 330
    assert abc["train"]["v"][1:3].tolist() == [[7.0, 8.0], [9.0, 10.0]]


def test_int_index_setitem_scalar(abc):
    # multiml: a scalar raises TypeError (update_data splits on len(data))
    abc["train"]["a"][2] = 77
    abc.update_data("b", 5, "valid", index=-2)
    assert abc["train"]["a"][2] == 77
    assert abc["valid"]["b"][:].tolist() == [5, 70]


# ---------------------------------------------------------------------- names, data_id
@pytest.mark.parametrize("name", ["a/b", "x/y/z", "/abs"])
def test_names_with_slash_rejected(make_sg, name):
    # multiml zarr backend: creates a nested group and the var/data_id becomes invisible
    sg = make_sg()
    with pytest.raises(InvalidNameError, match="contains '/'"):
        sg.add_data(name, np.zeros(3))
    with pytest.raises(InvalidNameError, match="contains '/'"):
        sg.set_data_id(name)
    assert sg.get_var_names() == []
    assert sg.get_data_ids() == ["d"]
    assert sg.data_id == "d"


def test_set_data_id_non_str_keeps_old(make_sg):
    # multiml: assigns before validating, so _data_id stays 5 after ValueError
    sg = make_sg()
    with pytest.raises(ValueError, match="data_id must be string"):
        sg.set_data_id(5)
    assert sg.data_id == "d"
    sg.add_data("x", np.zeros(2))
    assert sg.get_data_ids() == ["d"]


# ---------------------------------------------------------------------- compile state
def test_create_empty_invalidates_compile(make_sg):
    # multiml: create_empty does not clear 'compiled', so len() and metadata go stale
    sg = make_sg()
    sg.add_data("a", np.arange(4), phase="train")
    sg.compile()
    assert len(sg["valid"]) == 0
    sg.create_empty("e", (5, 3), phase="valid")
    assert len(sg["valid"]) == 5
    assert sg.get_metadata()["valid_phases"] == ["train", "valid"]


def test_create_empty_is_all_or_nothing(make_sg):
    # multiml: the exists-check runs per phase inside the loop, so creation can be partial
    sg = make_sg()
    sg.add_data("e", np.zeros(1), phase="test")
    before = snapshot(sg)
    with pytest.raises(VarExistsError, match="e already exists in test"):
        sg.create_empty("e", (10,), phase=(0.8, 0.1, 0.1))
    assert snapshot(sg) == before


def test_get_data_compiles_implicitly(make_sg):
    # multiml: ValueError('get_data is supported only after compile')
    sg = make_sg()
    sg.add_data("x", np.arange(5), phase=(3, 2, 0))
    assert sg["valid"]["x"][:].tolist() == [3, 4]
    assert len(sg["train"]) == 3
    sg.add_data("x", np.arange(2), phase="valid")
    assert len(sg["valid"]) == 4


def test_inconsistent_phase_raises_naming_phase_and_lengths(make_sg):
    # multiml: ValueError('get_data is supported only after compile'), and compile() dumps the
    # whole metadata dict without saying which phase disagrees
    sg = make_sg()
    sg.add_data("x", np.arange(5), phase=(3, 2, 0))
    sg.add_data("y", np.arange(3), phase="valid")
    with pytest.raises(InconsistentLengthError) as info:
        sg.get_data("x", "train")
    msg = str(info.value)
    assert "'valid'" in msg and "x=2" in msg and "y=3" in msg
    with pytest.raises(InconsistentLengthError, match="x=2, y=3"):
        len(sg["train"])


def test_failed_partial_setitem_leaves_store_compilable(make_sg):
    # multiml: setitem of a slice on an unknown var creates a short var; compile then fails
    sg = make_sg()
    sg.add_data("x", np.arange(6))
    sg.compile()
    with pytest.raises(VarNotFoundError, match="'new'"):
        sg["train"]["new"][0:3] = [1, 2, 3]
    sg.compile()
    assert sg.get_var_names() == ["x"]


# ---------------------------------------------------------------------- RNG, dtypes, views
def test_shuffle_does_not_use_global_rng(make_sg, monkeypatch):
    # multiml: reseeds the global legacy np.random (then restores its state)
    sg = make_sg()
    sg.add_data(("a", "b"), np.arange(40).reshape(20, 2), phase=(10, 5, 5))
    np.random.seed(1234)
    state = np.random.get_state()

    def forbidden(*args, **kwargs):
        raise AssertionError("the global numpy RNG was used")

    for fn in ("seed", "shuffle", "set_state", "get_state", "permutation"):
        monkeypatch.setattr(np.random, fn, forbidden)
    sg.shuffle(seed=4)
    sg.add_data(("a", "b"), np.arange(40).reshape(20, 2), phase=(10, 5, 5), shuffle=3)
    monkeypatch.undo()
    after = np.random.get_state()
    assert after[0] == state[0] and np.array_equal(after[1], state[1]) and after[2:] == state[2:]
    assert sorted(sg["all"]["a"][:].tolist()) == sorted(list(range(0, 40, 2)) * 2)


def test_update_float_into_int_raises(make_sg):
    # multiml: silently casts/truncates 1.7 -> 1
    sg = make_sg()
    sg.add_data("i", np.arange(4))
    before = snapshot(sg)
    with pytest.raises(DtypeError, match="float64 data into var 'i' of dtype int64"):
        sg.update_data("i", [1.7], "train", index=0)
    with pytest.raises(DtypeError):
        sg["train"]["i"][:] = np.array([0.5, 1.5, 2.5, 3.5])
    with pytest.raises(DtypeError):
        sg.add_data("i", np.array([1.5]))
    assert snapshot(sg) == before


def test_views_are_immutable(make_sg):
    # multiml: sg[...] returns the StoreGate itself, so sg['valid'] changes t as well
    sg = make_sg()
    sg.add_data("x", np.arange(10), phase=(6, 2, 2))
    t = sg["train"]
    v = sg["valid"]
    tx = t["x"]
    assert t.phase == "train" and v.phase == "valid"
    assert t.var_names is None and tx.var_names == "x"
    assert len(t) == 6
    assert tx[:].tolist() == [0, 1, 2, 3, 4, 5]
    assert v["x"][:].tolist() == [6, 7]
    with pytest.raises(AttributeError):
        t.phase = "valid"  # type: ignore[misc]


def test_phase_names_vs_var_names(make_sg):
    # multiml: a var named 'train' cannot be selected; storegate reads it through a list
    sg = make_sg()
    sg.add_data("train", np.arange(3))
    assert sg["train"][["train"]][:][0].tolist() == [0, 1, 2]
    assert sg.get_data("train", "train").tolist() == [0, 1, 2]


def test_get_var_names_and_contains_for_all(make_sg):
    # multiml: get_var_names('all') and 'x' in sg['all'] raise KeyError('all')
    sg = make_sg()
    sg.add_data(("x", "y"), np.zeros((10, 2)), phase=(0.6, 0.2, 0.2))
    sg.add_data("t", np.zeros(6), phase="train")
    sg.add_data("t2", np.zeros(6), phase="train")
    assert sg.get_var_names("all") == ["x", "y"]
    assert "x" in sg["all"]
    assert "t" not in sg["all"]


def test_reopened_stale_store_compiles_on_read(make_sg, reopen):
    # multiml: nothing is persisted; every reopened store needs compile() before reads
    sg = make_sg()
    sg.add_data(("a", "b"), np.arange(20).reshape(10, 2), phase=(6, 2, 2))
    sg.compile()
    sg.add_data("a", np.array([100]), phase="test")
    sg.add_data("b", np.array([101]), phase="test")  # stale: written after compile
    sg = reopen(sg)
    assert len(sg["test"]) == 3
    assert sg["test"][("a", "b")][:].tolist() == [[16, 17], [18, 19], [100, 101]]
    sg.add_data(("a", "b"), np.array([[200, 201]]), phase="valid")
    sg = reopen(sg)
    assert sg.get_metadata()["total_events"] == [6, 3, 3]
    assert sg["all"]["b"][[8, 11]].tolist() == [201, 101]


def test_reopened_store_keeps_dtypes_and_data_ids(make_sg, reopen):
    sg = make_sg(data_id="first")
    sg.add_data("i1", np.array([1, -2, 3], "i1"))
    sg.add_data("u2", np.array([1, 2, 3], "u2"))
    sg.add_data("f2", np.array([0.5, 1.5, 2.5], "f2"))
    sg.add_data("c8", np.array([1 + 2j, 0, 1j], "c8"))
    sg.add_data("bool", np.array([True, False, True]))
    sg.set_data_id("second")
    sg.add_data("x", np.zeros((3, 2, 2), "f4"))
    sg = reopen(sg, data_id="first")
    assert sg.get_data_ids() == ["first", "second"]
    got = sg["train"][["i1", "u2", "f2", "c8", "bool"]][:]
    assert [g.dtype.str for g in got] == ["|i1", "<u2", "<f2", "<c8", "|b1"]
    assert got[0].tolist() == [1, -2, 3] and got[3][0] == 1 + 2j
    sg.set_data_id("second")
    assert sg.get_var_shapes("x") == (2, 2)


def test_non_native_byte_order_is_stored_natively(make_sg, reopen):
    """A big-endian array keeps its values and reads back in native order, before and after
    a reopen, on every backend (regular and ragged vars)."""
    from storegate import RaggedArray

    sg = make_sg()
    sg.add_data("x", np.arange(3, dtype=">f4"))
    sg.add_data("r", RaggedArray(np.arange(4, dtype=">i2"), np.array([0, 1, 3, 4])))
    for gate in (sg, reopen(sg)):
        x = gate.get_data("x", "train")
        r = gate.get_data("r", "train", ragged_as="raw")
        assert x.dtype == np.dtype("float32") and x.tolist() == [0.0, 1.0, 2.0]
        assert r.values.dtype == np.dtype("int16") and r.values.tolist() == [0, 1, 2, 3]
