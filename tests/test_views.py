"""View semantics: ``sg[...]`` selections are immutable values, in any order."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from sg_helpers import assert_array_equal_exact

from storegate import InvalidIndexError, NoDataIdError, SelectionError, StoreGate, View


@pytest.fixture
def sg3(make_sg):
    """a = 0..9 and b = 100+a split 6/2/2, vector var v = [a, 2a] (f4)."""
    sg = make_sg()
    a = np.arange(10)
    sg.add_data(("a", "b"), np.stack([a, 100 + a], axis=1), phase=(6, 2, 2))
    sg.add_data("v", np.stack([a, 2 * a], axis=1).astype("f4"), phase=(6, 2, 2))
    sg.compile()
    return sg


# ---------------------------------------------------------------------- selection
def test_view_repr_and_properties(sg3):
    view = sg3["train"][("a", "b")]
    assert isinstance(view, View)
    assert (view.data_id, view.phase, view.var_names) == ("d", "train", ("a", "b"))
    assert repr(view) == "View(data_id='d', phase='train', var_names=('a', 'b'))"


@pytest.mark.parametrize("phase", ["train", "valid", "test", "all"])
def test_order_independence(sg3, phase):
    for names in ("a", ("a", "b"), ["a", "v"]):
        first = sg3[phase][names][:]
        second = sg3[names][phase][:]
        if isinstance(names, list):
            for x, y in zip(first, second, strict=True):
                assert_array_equal_exact(x, y)
        else:
            assert_array_equal_exact(first, second)
    assert sg3["a"]["valid"][1] == 7


def test_later_items_replace_earlier(sg3):
    assert sg3["train"]["valid"]["a"][:].tolist() == [6, 7]
    assert sg3["train"]["a"]["b"][:].tolist() == [100, 101, 102, 103, 104, 105]


def test_views_are_immutable(sg3):
    t = sg3["train"]
    v = sg3["valid"]
    ta = t["a"]
    _ = sg3["test"]["b"]
    assert t.phase == "train" and t.var_names is None
    assert v.phase == "valid"
    assert ta.phase == "train" and ta.var_names == "a"
    assert ta[:].tolist() == [0, 1, 2, 3, 4, 5]
    with pytest.raises(AttributeError):
        t.phase = "test"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        t.extra = 1  # type: ignore[attr-defined]


def test_view_keeps_its_data_id(sg3):
    train = sg3["train"]
    sg3.set_data_id("other")
    sg3.add_data("a", np.array([42]))
    assert train["a"][:].tolist() == [0, 1, 2, 3, 4, 5]
    assert sg3["train"]["a"][:].tolist() == [42]


def test_views_across_threads(sg3):
    results: dict[str, list] = {}

    def work(phase: str) -> None:
        view = sg3[phase]["a"]
        results[phase] = [view[:].tolist() for _ in range(50)][-1]

    threads = [threading.Thread(target=work, args=(p,)) for p in ("train", "valid", "test")]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert results == {"train": [0, 1, 2, 3, 4, 5], "valid": [6, 7], "test": [8, 9]}


# ---------------------------------------------------------------------- indexes on a var view
def test_index_forms_on_var_view(sg3):
    view = sg3["train"]["a"]
    assert view[(1, 3)].tolist() == [1, 2]  # multiml's (start, stop)
    assert view[[0, 2]].tolist() == [0, 2]
    assert view[[4, 4, 1]].tolist() == [4, 4, 1]
    assert view[np.array([5, 0])].tolist() == [5, 0]
    assert view[-1].tolist() == [0, 1, 2, 3, 4, 5]  # -1 = all rows (multiml)
    assert view[-2] == 4
    assert view[1:5:2].tolist() == [1, 3]
    assert view[::-1].tolist() == [5, 4, 3, 2, 1, 0]
    assert view[...].tolist() == [0, 1, 2, 3, 4, 5]
    assert view[np.int64(3)] == 3
    assert sg3["train"]["v"][(4, 6)].tolist() == [[4.0, 8.0], [5.0, 10.0]]
    assert sg3["train"][("a", "b")][(0, 2)].tolist() == [[0, 100], [1, 101]]


def test_tuple_of_str_is_var_names_tuple_of_ints_is_index(sg3):
    assert sg3["train"][("a", "b")].var_names == ("a", "b")
    assert sg3["train"]["a"][(2, 4)].tolist() == [2, 3]
    with pytest.raises(InvalidIndexError):
        sg3["train"]["a"][("a", 1)]


def test_numpy_str_array_is_not_var_names(sg3):
    with pytest.raises(InvalidIndexError, match="list or tuple of str"):
        sg3["train"][np.array(["a", "b"])]


# ---------------------------------------------------------------------- len / in / iter
def test_len(sg3):
    assert [len(sg3[p]) for p in ("train", "valid", "test", "all")] == [6, 2, 2, 10]
    assert len(sg3["train"]["a"]) == 6
    assert len(sg3["a"]["all"]) == 10


def test_contains(sg3):
    assert "a" in sg3["train"]
    assert "v" in sg3["test"]
    assert "zz" not in sg3["train"]
    assert 5 not in sg3["train"]
    assert "a" in sg3["all"]
    sg3.add_data("only", np.zeros(6), "train")
    assert "only" in sg3["train"]
    assert "only" not in sg3["valid"]
    assert "only" not in sg3["all"]


def test_iter_phase_gives_var_names(sg3):
    assert list(sg3["train"]) == ["a", "b", "v"]
    assert list(sg3["all"]) == ["a", "b", "v"]


def test_iter_rows(sg3):
    assert [int(x) for x in sg3["valid"]["a"]] == [6, 7]
    rows = list(sg3["test"][("a", "b")])
    assert [r.tolist() for r in rows] == [[8, 108], [9, 109]]
    assert [r.tolist() for r in sg3["all"]["v"]][5:8] == [[5.0, 10.0], [6.0, 12.0], [7.0, 14.0]]
    assert [[int(x) for x in r] for r in sg3["valid"][["a", "b"]]] == [[6, 106], [7, 107]]


def test_iter_many_rows_in_blocks(make_sg):
    sg = make_sg()
    n = 9000  # more than one internal read block
    sg.add_data("x", np.arange(n), phase=(5000, 3000, 1000))
    got = np.fromiter(iter(sg["all"]["x"]), dtype=np.int64)
    assert_array_equal_exact(got, np.arange(n))
    assert sum(1 for _ in sg["train"]["x"]) == 5000


def test_iter_empty_phase(sg3):
    assert list(sg3["train"]["a"][0:0]) == []
    sg3.add_data("t", np.zeros(3), "train")  # inconsistent, but only a new data_id is read
    sg3.set_data_id("empty")
    assert list(sg3["valid"]) == []


# ---------------------------------------------------------------------- setitem forms
def test_setitem_forms(sg3):
    sg3["train"]["a"][:] = np.arange(6) * 10
    assert sg3["train"]["a"][:].tolist() == [0, 10, 20, 30, 40, 50]
    sg3["train"]["a"][1:3] = [11, 21]
    sg3["train"]["a"][(3, 5)] = [31, 41]
    sg3["train"]["a"][[5, 0]] = [51, 1]
    sg3["train"]["a"][np.array([False, False, False, False, False, True])] = [52]
    assert sg3["train"]["a"][:].tolist() == [1, 11, 21, 31, 41, 52]
    sg3["train"]["a"][-2] = [40]
    assert sg3["train"]["a"][4] == 40
    sg3["train"][("a", "b")][0:2] = [[7, 8], [9, 10]]
    assert sg3["train"][("a", "b")][0:2].tolist() == [[7, 8], [9, 10]]
    sg3["valid"][["a", "v"]][:] = [np.array([60, 70]), np.zeros((2, 2), "f4")]
    assert sg3["valid"]["v"][:].tolist() == [[0.0, 0.0], [0.0, 0.0]]
    assert sg3["valid"]["a"][:].tolist() == [60, 70]
    # other phases untouched
    assert sg3["test"][("a", "b")][:].tolist() == [[8, 108], [9, 109]]


def test_setitem_var_on_phase_view_creates_or_replaces(sg3):
    sg3["train"]["new"] = np.arange(6) + 0.5
    assert sg3.get_var_names("train") == ["a", "b", "v", "new"]
    assert sg3["train"]["new"][:].tolist() == [0.5, 1.5, 2.5, 3.5, 4.5, 5.5]
    sg3["train"]["new"] = np.zeros(6)
    assert sg3["train"]["new"][:].tolist() == [0.0] * 6
    sg3["all"][("p", "q")] = np.ones((10, 2))
    assert sg3.get_var_names("test") == ["a", "b", "v", "p", "q"]


def test_setitem_through_gate(sg3):
    with pytest.raises(SelectionError, match="phase"):
        sg3["a"] = np.zeros(10)


def test_setitem_all_whole_and_index(sg3):
    sg3["all"]["b"][:] = np.arange(10) * -1
    assert sg3["valid"]["b"][:].tolist() == [-6, -7]
    sg3["all"]["b"][5:8] = [1, 2, 3]
    assert sg3["all"]["b"][:].tolist() == [0, -1, -2, -3, -4, 1, 2, 3, -8, -9]


def test_setitem_needs_phase_and_vars(sg3):
    with pytest.raises(SelectionError, match="var names"):
        sg3["train"][0:2] = [1, 2]
    with pytest.raises(SelectionError, match="phase"):
        sg3["a"][0:2] = [1, 2]


# ---------------------------------------------------------------------- del forms
def test_del_forms(sg3):
    sg3.add_data(("c", "e"), np.zeros((10, 2)), phase=(6, 2, 2))
    del sg3["train"]["a"]
    assert sg3.get_var_names("train") == ["b", "v", "c", "e"]
    del sg3["valid"][["a", "b"]]
    assert sg3.get_var_names("valid") == ["v", "c", "e"]
    del sg3["all"]["c"]
    assert [sg3.get_var_names(p) for p in ("train", "valid", "test")] == [
        ["b", "v", "e"], ["v", "e"], ["a", "b", "v", "e"]
    ]
    del sg3["all"][["e", "missing"]]  # missing vars are skipped, as in multiml
    assert sg3.get_var_names("test") == ["a", "b", "v"]
    del sg3["test"][("a",)]  # tuple of names (multiml refused tuples)
    assert sg3.get_var_names("test") == ["b", "v"]


def test_del_var_view_item(sg3):
    # del sg['train']['v']['a']: the last item names the vars to delete
    del sg3["train"]["v"]["a"]
    assert sg3.get_var_names("train") == ["b", "v"]


def test_del_errors(sg3):
    with pytest.raises(SelectionError, match="phase"):
        del sg3["a"]
    with pytest.raises(SelectionError, match="whole vars"):
        del sg3["train"][0]
    with pytest.raises(SelectionError, match="whole vars"):
        del sg3["train"]["a"][0:2]
    assert sg3.get_var_names("train") == ["a", "b", "v"]


# ---------------------------------------------------------------------- missing pieces
def test_messages_when_phase_or_vars_missing(sg3):
    with pytest.raises(SelectionError) as info:
        sg3["train"][0]
    msg = str(info.value)
    assert "var names" in msg and "phase='train'" in msg
    with pytest.raises(SelectionError) as info:
        sg3["a"][0]
    assert "a phase" in str(info.value) and "var_names='a'" in str(info.value)
    with pytest.raises(SelectionError, match=r"phase .* and var names"):
        sg3[0]
    with pytest.raises(SelectionError, match="len"):
        len(sg3["a"])
    with pytest.raises(SelectionError, match="'in'"):
        "a" in sg3["a"]  # noqa: B015
    with pytest.raises(SelectionError, match="iteration"):
        iter(sg3["a"]).__next__()


def test_no_data_id_for_views():
    sg = StoreGate()
    with pytest.raises(NoDataIdError, match="please set default data_id"):
        sg["train"]
    with pytest.raises(ValueError, match="please set default data_id"):
        sg["train"] = 1


def test_empty_selections(sg3):
    assert sg3["train"][[]][:] == []  # an empty list of var names reads nothing
    assert sg3.get_data([], "train") == []
