"""Bad input raises a StoregateError subclass that names the bad value, also inherits the builtin
callers already catch, and leaves the store exactly as it was."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from sg_helpers import requires_zarr_backend, snapshot

import storegate
from storegate import (
    BackendImportError,
    BackendNotFoundError,
    CorruptStoreError,
    DataIdNotFoundError,
    DtypeError,
    InconsistentLengthError,
    IndexOutOfRangeError,
    InvalidArgumentError,
    InvalidIndexError,
    InvalidNameError,
    InvalidPhaseError,
    NoDataIdError,
    ReadOnlyError,
    SelectionError,
    ShapeMismatchError,
    StoreGate,
    StoregateError,
    UnknownPhaseError,
    UnsupportedOperationError,
    VarExistsError,
    VarNotFoundError,
)

# ---------------------------------------------------------------------- the hierarchy
BUILTINS = {
    InvalidNameError: (ValueError,),
    InvalidArgumentError: (ValueError, TypeError),
    NoDataIdError: (ValueError,),
    DataIdNotFoundError: (KeyError, ValueError),
    InvalidPhaseError: (ValueError,),
    UnknownPhaseError: (InvalidPhaseError, KeyError, ValueError),
    VarNotFoundError: (KeyError, ValueError),
    VarExistsError: (ValueError,),
    ShapeMismatchError: (ValueError,),
    DtypeError: (TypeError, ValueError),
    InconsistentLengthError: (ValueError,),
    InvalidIndexError: (IndexError, TypeError, ValueError),
    IndexOutOfRangeError: (InvalidIndexError, IndexError),
    ReadOnlyError: (PermissionError,),
    BackendNotFoundError: (KeyError, NotImplementedError),
    BackendImportError: (ImportError,),
    UnsupportedOperationError: (ValueError,),
    SelectionError: (ValueError,),
    CorruptStoreError: (ValueError,),
}


@pytest.mark.parametrize("cls", list(BUILTINS), ids=lambda c: c.__name__)
def test_error_classes_inherit_builtins(cls):
    assert issubclass(cls, StoregateError)
    for base in BUILTINS[cls]:
        assert issubclass(cls, base), f"{cls.__name__} should also be a {base.__name__}"


def test_every_exported_error_is_covered():
    exported = {
        obj for name in storegate.__all__
        if isinstance(obj := getattr(storegate, name), type) and issubclass(obj, StoregateError)
        and obj is not StoregateError
    }
    # every error class is checked above, except ones added later without a builtin listed
    missing = {c.__name__ for c in exported - set(BUILTINS)}
    for name in missing:
        cls = getattr(storegate, name)
        assert any(issubclass(cls, b) for b in (ValueError, KeyError, IndexError, TypeError,
                                                PermissionError, ImportError, OSError)), name


def test_key_errors_print_plainly():
    err = VarNotFoundError("var 'x' is missing")
    assert str(err) == "var 'x' is missing"  # KeyError would add quotes around it


# ---------------------------------------------------------------------- helpers
@pytest.fixture
def filled(make_sg):
    """A compiled store with a bit of everything: two data_ids, int/float/vector vars."""
    sg = make_sg(data_id="other")
    sg.add_data("o", np.arange(4.0))
    sg.set_data_id("d")
    sg.add_data(("a", "b"), np.arange(20).reshape(10, 2), phase=(6, 2, 2))
    sg.add_data("v", np.arange(30, dtype="f4").reshape(10, 3), phase=(6, 2, 2))
    sg.compile()
    return sg


def check_rejected(
    sg: StoreGate,
    call: Callable[[], Any],
    error: type[BaseException],
    *fragments: str,
    builtin: type[BaseException] | None = None,
) -> BaseException:
    """``call()`` raises ``error`` (and ``builtin``), the message contains every fragment, and
    the store is unchanged."""
    before = snapshot(sg)
    with pytest.raises(error) as info:
        call()
    err = info.value
    assert isinstance(err, StoregateError)
    if builtin is not None:
        assert isinstance(err, builtin)
    msg = str(err)
    for fragment in fragments:
        assert fragment in msg, f"{fragment!r} not in {msg!r}"
    assert snapshot(sg) == before
    return err


# ---------------------------------------------------------------------- names
BAD_NAMES = {
    "empty": ("", "empty"),
    "slash": ("a/b", "'a/b'"),
    "backslash": ("a\\b", repr("a\\b")),
    "nul": ("a\x00b", repr("a\x00b")),
    "dotdot": ("..", "'..'"),
    "dot": (".", "'.'"),
    "leading-dot": (".hidden", "'.hidden'"),
    "too-long": ("x" * 256, "256 bytes"),
}


@pytest.mark.parametrize("case", list(BAD_NAMES))
def test_bad_var_names(filled, case):
    name, fragment = BAD_NAMES[case]
    data = np.zeros(10)
    phase = (6, 2, 2)
    check_rejected(filled, lambda: filled.add_data(name, data, phase), InvalidNameError,
                   fragment, builtin=ValueError)
    check_rejected(filled, lambda: filled.add_data(("ok", name), np.zeros((10, 2)), phase),
                   InvalidNameError, fragment)
    check_rejected(filled, lambda: filled.add_data(["ok", name], [data, data], phase),
                   InvalidNameError, fragment)
    check_rejected(filled, lambda: filled.update_data(name, data, phase), InvalidNameError,
                   fragment)
    check_rejected(filled, lambda: filled.create_empty(name, (10,), phase), InvalidNameError,
                   fragment)

    def setitem() -> None:
        filled["train"][name] = np.zeros(6)

    if name:  # an empty str item is a var-name selection too, but reads as "no var names"
        check_rejected(filled, setitem, InvalidNameError, fragment)


@pytest.mark.parametrize("case", list(BAD_NAMES))
def test_bad_data_ids(filled, case):
    name, fragment = BAD_NAMES[case]
    check_rejected(filled, lambda: filled.set_data_id(name), InvalidNameError, fragment,
                   builtin=ValueError)
    assert filled.data_id == "d"


def test_bad_data_id_in_constructor(make_sg):
    with pytest.raises(InvalidNameError, match="'a/b'"):
        make_sg(data_id="a/b")


@pytest.mark.parametrize("data_id", [5, 1.5, b"bytes", ("d",)])
def test_non_str_data_id(filled, data_id):
    err = check_rejected(filled, lambda: filled.set_data_id(data_id), InvalidNameError,
                         "data_id must be string", repr(data_id), builtin=ValueError)
    assert type(data_id).__name__ in str(err)
    assert filled.data_id == "d"


def test_duplicate_names_in_one_call(filled):
    check_rejected(filled, lambda: filled.add_data(("x", "x"), np.zeros((10, 2)), (6, 2, 2)),
                   InvalidNameError, "('x', 'x')")


def test_var_names_of_wrong_type(filled):
    check_rejected(filled, lambda: filled.add_data(5, np.zeros(10)), InvalidArgumentError,
                   "5", "var_names", builtin=ValueError)
    check_rejected(filled, lambda: filled.get_data(5), InvalidArgumentError, "var_names")
    check_rejected(filled, lambda: filled.get_var_shapes(5), InvalidArgumentError, "5")
    check_rejected(filled, lambda: filled.get_data(("a", 5)), InvalidArgumentError, "var_names")
    check_rejected(filled, lambda: filled.get_data(()), InvalidArgumentError, "empty tuple")


def test_no_data_id(make_sg):
    sg = make_sg(data_id=None)
    for call in (lambda: sg.add_data("x", [1]), lambda: sg.get_data("x"), sg.compile,
                 sg.get_metadata, lambda: sg["train"]):
        with pytest.raises(NoDataIdError, match="set_data_id"):
            call()


# ---------------------------------------------------------------------- shapes and lengths
def test_inconsistent_lengths_at_compile(filled):
    filled.add_data("short", np.arange(5), phase="train")
    err = check_rejected(filled, filled.compile, InconsistentLengthError, "'train'", "a=6",
                         "short=5", builtin=ValueError)
    assert "'d'" in str(err)
    check_rejected(filled, lambda: filled.get_data("a", "train"), InconsistentLengthError,
                   "short=5")


def test_wrong_trailing_shape_on_append(filled):
    check_rejected(filled, lambda: filled.add_data("v", np.zeros((4, 2), "f4")),
                   ShapeMismatchError, "(3,)", "(2,)", builtin=ValueError)
    check_rejected(filled, lambda: filled.add_data("a", np.zeros((4, 1), "i8")),
                   ShapeMismatchError, "'a'", "(1,)")
    # nothing of a multi-var call is written when one var fails
    check_rejected(
        filled,
        lambda: filled.add_data(["new", "v"], [np.zeros(4), np.zeros((4, 2), "f4")]),
        ShapeMismatchError, "'v'",
    )


def test_wrong_shape_on_update(filled):
    check_rejected(filled, lambda: filled.update_data("v", np.zeros((5, 3), "f4"), "train"),
                   ShapeMismatchError, "6 rows", "5 rows")
    check_rejected(filled, lambda: filled.update_data("v", np.zeros((2, 3), "f4"), "train",
                                                      index=(0, 3)),
                   ShapeMismatchError, "3 rows", "(2, 3)")

    def setitem() -> None:
        filled["train"]["v"][0] = np.zeros(4, "f4")

    check_rejected(filled, setitem, ShapeMismatchError, "(3,)", "(4,)")


def test_fractions_not_summing_to_one(filled):
    for phase in [(0.5, 0.2, 0.2), [0.5, 0.2, 0.2]]:
        check_rejected(filled, lambda p=phase: filled.add_data("n", np.zeros(10), p),
                       InvalidPhaseError, repr(phase), "0.9", builtin=ValueError)


def test_counts_not_summing_to_n(filled):
    check_rejected(filled, lambda: filled.add_data("n", np.zeros(10), (5, 2, 2)),
                   InvalidPhaseError, "(5, 2, 2)", "9", "10", builtin=ValueError)


@pytest.mark.parametrize(
    ("phase", "fragment"),
    [((0.5, 0.6, -0.1), "[0, 1]"), ((1, 2, 3, 4), "4 entries"), ((0.5, "x", 0.5), "mixes"),
     ((11, -1, 0), "negative"), (5, "5")],
)
def test_malformed_phase_specs(filled, phase, fragment):
    check_rejected(filled, lambda: filled.add_data("n", np.zeros(10), phase), InvalidPhaseError,
                   fragment)


def test_all_phase_with_wrong_length(filled):
    check_rejected(filled, lambda: filled.add_data("n", np.zeros(9), "all"), InvalidPhaseError,
                   "10", "9")


def test_update_index_with_fraction_phase(filled):
    check_rejected(filled, lambda: filled.update_data("a", [1], (6, 2, 2), index=0),
                   InvalidPhaseError, "index=0")


# ---------------------------------------------------------------------- phases, vars
def test_unknown_phase(filled):
    for call in (lambda: filled.add_data("n", np.zeros(10), "bogus"),
                 lambda: filled.get_data("a", "bogus"),
                 lambda: filled.get_var_names("bogus"),
                 lambda: filled.update_data("a", np.zeros(6), "bogus"),
                 lambda: filled.delete_data("a", "bogus"),
                 lambda: filled.shuffle("bogus"),
                 lambda: filled.astype("a", "f4", phase="bogus")):
        err = check_rejected(filled, call, UnknownPhaseError, "'bogus'", "'train'",
                             builtin=KeyError)
        assert isinstance(err, ValueError)


def test_get_var_shapes_rejects_all(filled):
    check_rejected(filled, lambda: filled.get_var_shapes("a", "all"), UnknownPhaseError, "'all'")


def test_unknown_var(filled):
    for call in (lambda: filled.get_data("zz", "train"),
                 lambda: filled.get_data("zz", "train", 0),
                 lambda: filled.get_data(("a", "zz"), "valid"),
                 lambda: filled.get_data(["a", "zz"], "test", [0]),
                 lambda: filled["all"]["zz"][:],
                 lambda: filled.astype("zz", "f4"),
                 lambda: filled.update_data("zz", [1], "train", index=0)):
        err = check_rejected(filled, call, VarNotFoundError, "'zz'", builtin=KeyError)
        assert isinstance(err, ValueError)


def test_var_missing_from_one_phase_of_all(filled):
    filled.add_data("t", np.zeros(6), "train")
    filled.compile()
    check_rejected(filled, lambda: filled.get_data("t", "all"), VarNotFoundError, "'t'",
                   "'valid'")


def test_create_empty_existing(filled):
    check_rejected(filled, lambda: filled.create_empty("a", (10,), (6, 2, 2)), VarExistsError,
                   "a already exists in train", builtin=ValueError)


@pytest.mark.parametrize(
    ("name", "guess"), [("nmupy", "numpy"), ("zar", "zarr"), ("Numpy", "numpy")]
)
def test_unknown_backend(name, guess):
    with pytest.raises(BackendNotFoundError) as info:
        StoreGate(backend=name)
    msg = str(info.value)
    assert repr(name) in msg
    assert f"did you mean {guess!r}" in msg
    assert "numpy" in msg and "zarr" in msg  # the installed names are listed
    assert isinstance(info.value, NotImplementedError)  # what multiml raised
    assert isinstance(info.value, KeyError)


def test_unknown_backend_without_close_match():
    with pytest.raises(BackendNotFoundError, match="installed backends: ") as info:
        StoreGate(backend="qqqqqqqq")
    assert "did you mean" not in str(info.value)


@pytest.mark.parametrize("bad", [5, None, object()])
def test_backend_of_wrong_type(bad):
    with pytest.raises(BackendNotFoundError, match="backend must be a backend name"):
        StoreGate(backend=bad)


def test_backend_args_that_do_not_fit():
    class Picky(storegate.get_backend("numpy")):  # type: ignore[misc,valid-type]
        name = "picky"

        def __init__(self, size: int = 1) -> None:
            super().__init__()

    with pytest.raises(InvalidArgumentError, match="'colour'") as info:
        StoreGate(backend=Picky, backend_args={"colour": "red"})
    assert isinstance(info.value, TypeError)
    with pytest.raises(InvalidArgumentError, match="backend_args cannot be applied"):
        StoreGate(backend=Picky(), backend_args={"size": 2})


# ---------------------------------------------------------------------- indexes
@pytest.mark.parametrize(
    ("index", "fragment"),
    [(6, "6"), (-7, "-7"), ([0, 6], "6"), (np.array([1, -7]), "-7"), ((0, 7), None),
     (10**12, str(10**12))],
)
def test_out_of_range_index(filled, index, fragment):
    if isinstance(index, tuple):  # (start, stop) is a slice: clipped like numpy, no error
        assert filled.get_data("a", "train", index).tolist() == [0, 2, 4, 6, 8, 10]
        return
    for call in (lambda: filled.get_data("a", "train", index),
                 lambda: filled["train"][("a", "b")][index],
                 lambda: filled.update_data("a", [1] * np.size(index), "train", index=index)):
        check_rejected(filled, call, IndexOutOfRangeError, fragment, "6 rows",
                       builtin=IndexError)


def test_out_of_range_on_all(filled):
    check_rejected(filled, lambda: filled["all"]["a"][10], IndexOutOfRangeError, "10",
                   "10 rows")
    check_rejected(filled, lambda: filled["all"]["a"][[0, 10]], IndexOutOfRangeError, "10")


BAD_INDEXES = {
    "float": (1.0, "1.0"),
    "np-float": (np.float64(2.0), "float64"),
    "float-list": ([1.0], "[1.0]"),
    "float-array": (np.array([0.5]), "float64"),
    "str": ("0", "'0'"),
    "none": (None, "None"),
    "2d-array": (np.zeros((2, 2), int), "(2, 2)"),
    "3-tuple": ((1, 2, 3), "(1, 2, 3)"),
    "bool": (True, "True"),
    "float-slice": (slice(0.5, 2), "slice(0.5, 2, None)"),
    "zero-step": (slice(0, 4, 0), "step 0"),
    "short-mask": ([True, False], "length 2"),
}


@pytest.mark.parametrize("case", list(BAD_INDEXES))
def test_bad_index_types(filled, case):
    index, fragment = BAD_INDEXES[case]
    calls = [lambda: filled.get_data("a", "train", index),
             lambda: filled.get_data(("a", "b"), "all", index)]
    if not isinstance(index, str):  # a str item on a view selects var names
        calls.append(lambda: filled["train"]["a"][index])
    for call in calls:
        err = check_rejected(filled, call, InvalidIndexError, fragment, builtin=IndexError)
        assert isinstance(err, TypeError)
        assert isinstance(err, ValueError)  # multiml: ValueError('Un supported index: ...')


# ---------------------------------------------------------------------- var_names vs data
def test_tuple_var_names_wrong_m(filled):
    check_rejected(filled, lambda: filled.add_data(("x", "y", "z"), np.zeros((10, 2))),
                   ShapeMismatchError, "var_names:3 data:2", builtin=ValueError)
    check_rejected(filled, lambda: filled.add_data(("x", "y"), np.zeros(10)),
                   ShapeMismatchError, "var_names:2")


def test_list_var_names_with_fewer_arrays(filled):
    check_rejected(filled, lambda: filled.add_data(["x", "y", "z"], [np.zeros(4)] * 2),
                   ShapeMismatchError, "var_names:3 data:2", builtin=ValueError)
    check_rejected(filled, lambda: filled.add_data(["x", "y"], 5), ShapeMismatchError, "int")


def test_tuple_read_with_different_row_shapes(filled):
    check_rejected(filled, lambda: filled.get_data(("a", "v")), ShapeMismatchError, "a: ()",
                   "v: (3,)")


@pytest.mark.parametrize(
    "data",
    [np.array([object(), object()], dtype=object), [{"a": 1}, {"b": 2}],
     np.array(["x", "y"]), np.array([b"x", b"y"]), np.zeros(2, dtype=[("f", "i4")])],
    ids=["object", "dicts", "unicode", "bytes", "structured"],
)
def test_unstorable_dtypes_refused(filled, data):
    err = check_rejected(filled, lambda: filled.add_data("bad", data), DtypeError, "'bad'",
                         builtin=TypeError)
    assert isinstance(err, ValueError)
    check_rejected(filled, lambda: filled.create_empty("bad", (4,), dtype=object), DtypeError,
                   "object")
    check_rejected(filled, lambda: filled.astype("a", object), DtypeError, "object")


def test_ragged_rows_into_regular_var_refused(filled):
    # [[1, 2], [3]] is a valid *new* ragged var, but not rows for the regular var 'a'
    check_rejected(filled, lambda: filled.add_data("a", [[1, 2], [3]]), ShapeMismatchError,
                   "'a'", "ragged")


def test_malformed_ragged_rows_refused(filled):
    check_rejected(filled, lambda: filled.add_data("bad", [[1, 2], 3]), ShapeMismatchError,
                   "'bad'")
    check_rejected(filled, lambda: filled.add_data("bad", [np.zeros((2, 3)), np.zeros((1, 4))]),
                   ShapeMismatchError, "first axis")


def test_scalar_data_refused(filled):
    check_rejected(filled, lambda: filled.add_data("bad", 5), ShapeMismatchError, "scalar")


def test_lossy_writes_refused(filled):
    check_rejected(filled, lambda: filled.add_data("a", np.array([1.5] * 6)), DtypeError,
                   "'a'", "int64")
    filled.add_data("small", np.zeros(6, "i1"), "train")
    filled.add_data("small", np.zeros(2, "i1"), "valid")
    filled.add_data("small", np.zeros(2, "i1"), "test")
    check_rejected(filled, lambda: filled.update_data("small", [300], "train", index=0),
                   DtypeError, "300", "int8")


def test_transform_argument_errors(filled):
    check_rejected(filled, lambda: filled.onehot("a", 0), InvalidArgumentError, "0",
                   builtin=ValueError)
    check_rejected(filled, lambda: filled.onehot("a", 5), InvalidArgumentError, "[0, 10]",
                   "outside [0, 5)")
    check_rejected(filled, lambda: filled.onehot("v", 5), DtypeError, "float32")
    check_rejected(filled, lambda: filled.argmax("v", axis=0), InvalidArgumentError, "axis 0")
    check_rejected(filled, lambda: filled.argmax("v", axis=2), InvalidArgumentError, "axis 2")


# ---------------------------------------------------------------------- [] selections
def test_selection_errors(filled):
    check_rejected(filled, lambda: filled["train"][0], SelectionError, "var names",
                   builtin=ValueError)
    check_rejected(filled, lambda: filled["a"][0], SelectionError, "phase")
    check_rejected(filled, lambda: len(filled), SelectionError, "len(sg['train'])")
    check_rejected(filled, lambda: "a" in filled, SelectionError, "sg['train']")
    check_rejected(filled, lambda: iter(filled), SelectionError, "sg['train']['x']")

    def del_rows() -> None:
        del filled["train"]["a"][0]

    # 'del view[0]' on a var view is row deletion, which storegate does not do
    check_rejected(filled, del_rows, SelectionError, "whole vars")

    def del_no_phase() -> None:
        del filled["a"]

    check_rejected(filled, del_no_phase, SelectionError, "phase")


# ---------------------------------------------------------------------- read-only zarr
@requires_zarr_backend
def test_zarr_read_only_store(tmp_path):
    path = str(tmp_path / "ro.zarr")
    sg = StoreGate("zarr", backend_args={"output_dir": path}, data_id="d")
    sg.add_data(("a", "b"), np.arange(20).reshape(10, 2), phase=(6, 2, 2))
    sg.compile()
    sg.close()

    ro = StoreGate("zarr", backend_args={"output_dir": path, "mode": "r"}, data_id="d")
    assert ro["valid"][("a", "b")][:].tolist() == [[12, 13], [14, 15]]
    assert ro.get_metadata()["total_events"] == [6, 2, 2]
    writes = [
        lambda: ro.add_data("a", np.arange(6), "train"),
        lambda: ro.add_data("new", np.arange(10), (6, 2, 2)),
        lambda: ro.update_data("a", np.arange(6), "train"),
        lambda: ro.update_data("a", [1], "train", index=0),
        lambda: ro["train"]["a"].__setitem__(slice(0, 2), [1, 2]),
        lambda: ro.delete_data("a", "all"),
        lambda: ro.clear_data(),
        lambda: ro.create_empty("e", (10,), (6, 2, 2)),
        lambda: ro.astype("a", "f4"),
        lambda: ro.onehot("a", 20),
        lambda: ro.shuffle(),
        lambda: ro.compile(reset=True),
    ]
    for call in writes:
        err = check_rejected(ro, call, ReadOnlyError, builtin=PermissionError)
        assert "mode" in str(err) or "read-only" in str(err) or "read only" in str(err)
    # a data_id that does not exist cannot be created in a read-only store
    check_rejected(ro, lambda: ro.set_data_id("fresh"), StoregateError, "'fresh'")
    assert ro.data_id == "d"
    assert ro.get_data_ids() == ["d"]
    ro.close()
    again = StoreGate("zarr", backend_args={"output_dir": path}, data_id="d")
    assert again["all"]["a"][:].tolist() == list(range(0, 20, 2))


def test_shuffle_bad_seed(filled):
    check_rejected(filled, lambda: filled.shuffle(seed="abc"), InvalidArgumentError, "'abc'",
                   builtin=ValueError)
    check_rejected(filled, lambda: filled.shuffle(seed=-1), InvalidArgumentError, "-1")


def test_var_names_of_wrong_type_in_per_var_calls(filled):
    for call in (lambda: filled.delete_data(5), lambda: filled.delete_data(None, "all"),
                 lambda: filled.create_empty(5, (10,), (6, 2, 2)),
                 lambda: filled.astype(5, "f4"), lambda: filled.onehot(None, 3),
                 lambda: filled.argmax(1.5, 1)):
        check_rejected(filled, call, InvalidArgumentError, "is not supported for var_names",
                       builtin=ValueError)
    for call in (lambda: filled.delete_data(["a", 5]), lambda: filled.astype(["a", 5], "f4"),
                 lambda: filled.create_empty(["n", 5], (10,), (6, 2, 2))):
        check_rejected(filled, call, InvalidNameError, "5", builtin=ValueError)


@pytest.mark.parametrize("shape", [(3.5,), (10, 2.0), "abc", (True,), (), (-1,), (10, -2), None])
def test_create_empty_bad_shape(filled, shape):
    check_rejected(filled, lambda: filled.create_empty("n", shape, "train"), ShapeMismatchError,
                   repr(shape), builtin=ValueError)
