"""storegate.pyg.FeatureStore / GraphStore: PyG's contracts on the numpy and zarr backends.

Covers what PyG's own FeatureStore/GraphStore tests demand (put with and without an index,
every AttrView form, multi_get, update, remove, sizes, a custom TensorAttr; every layout, sizes,
conversions between layouts), plus storegate's side: phases, the data_id encoding of edge
types, one batched read per group, sizes from metadata, pickling and fork/spawn workers.
"""

from __future__ import annotations

import multiprocessing
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from operator import methodcaller
from typing import Any

import numpy as np
import pytest
import torch
from torch_geometric.data import EdgeAttr, TensorAttr
from torch_geometric.data.feature_store import AttrView, _FieldStatus
from torch_geometric.data.graph_store import EdgeLayout

from storegate import StoreGate
from storegate.errors import (
    InvalidArgumentError,
    InvalidNameError,
    ShapeMismatchError,
    UnsupportedOperationError,
)
from storegate.pyg.stores import (
    NONE_ATTR,
    FeatureStore,
    GraphStore,
    decode_type,
    encode_type,
)

UNSET = _FieldStatus.UNSET
ET = ("user", "rates", "movie")


@dataclass(init=False)
class NoGroupAttr(TensorAttr):
    """PyG's test case: ``group_name`` pinned to None, fields ``(attr_name, index)``."""

    def __init__(self, attr_name: Any = UNSET, index: Any = UNSET) -> None:
        super().__init__(None, attr_name, index)


@dataclass
class IndexNoneAttr(TensorAttr):
    """Like ``torch_geometric.distributed.LocalTensorAttr``: ``index`` defaults to None."""

    index: Any = None


@pytest.fixture
def gate(make_sg: Callable[..., StoreGate]) -> StoreGate:
    """An empty gate without a data_id; zarr chunks of 4 rows, so reads cross chunks."""
    return make_sg(data_id=None, chunk=4)


def feats(n: int = 10, k: int = 3, dtype: Any = torch.float32) -> torch.Tensor:
    return (torch.arange(n * k) * 10).view(n, k).to(dtype)


def count_reads(sg: StoreGate, monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """Record every read / read_many call the backend gets (not the reads a read_many makes)."""
    calls: list[tuple[Any, ...]] = []
    db = sg.db
    read, read_many = db.read, db.read_many
    inside = [0]

    def spy_read(*args: Any) -> Any:
        if not inside[0]:
            calls.append(("read", *args[:3]))
        return read(*args)

    def spy_many(*args: Any) -> Any:
        calls.append(("read_many", args[0], args[1], tuple(args[2])))
        inside[0] += 1
        try:
            return read_many(*args)
        finally:
            inside[0] -= 1

    monkeypatch.setattr(db, "read", spy_read)
    monkeypatch.setattr(db, "read_many", spy_many)
    return calls


def pairs(row: torch.Tensor, col: torch.Tensor) -> list[tuple[int, int]]:
    return sorted(zip(row.tolist(), col.tolist(), strict=True))


# =================================================================================== names
def test_edge_type_encoding_round_trips() -> None:
    assert encode_type(ET) == "user__rates__movie"
    assert decode_type("user__rates__movie") == ET
    assert encode_type(None) == "nodes" and decode_type("nodes") is None
    assert encode_type(None, "edges") == "edges" and decode_type("edges", "edges") is None
    assert encode_type("paper") == "paper" and decode_type("paper") == "paper"
    assert encode_type(("a_b", "to.x", "c-d")) == "a_b__to.x__c-d"
    assert decode_type("a_b__to.x__c-d") == ("a_b", "to.x", "c-d")


@pytest.mark.parametrize(("bad", "says"), [
    (("us__er", "rates", "movie"), "'us__er'"), (("user_", "rates", "movie"), "'user_'"),
    (("user", "_rates", "movie"), "'_rates'"), (("", "rates", "movie"), "''"),
    (("user", "ra/tes", "movie"), "'/'"), (("user", "rates"), "('user', 'rates')"),
    (("a", 1, "b"), "('a', 1, 'b')"), ("a__b", "'__'"), ("paper.csc", ".csc"),
    ("x.ptr", ".ptr"), ("a/b", "'/'"), ("", "empty"), (".hidden", "'.'"),
    ("nodes", "homogeneous"), (3, "int 3"), (["a", "b", "c"], "list"),
])
def test_ambiguous_or_invalid_names_are_refused(bad: Any, says: str) -> None:
    with pytest.raises(InvalidNameError) as err:
        encode_type(bad)
    assert says in str(err.value)


def test_store_options_are_validated(gate: StoreGate) -> None:
    with pytest.raises(InvalidArgumentError):
        FeatureStore(object())
    with pytest.raises(InvalidArgumentError):
        GraphStore({})
    with pytest.raises(InvalidArgumentError):
        FeatureStore(gate, node_id="same", edge_id="same")
    with pytest.raises(InvalidArgumentError):
        FeatureStore(gate, node_types=[ET])
    with pytest.raises(InvalidNameError):
        FeatureStore(gate, node_id="a__b")
    with pytest.raises(ValueError, match="unknown phase"):
        FeatureStore(gate, phase="training")
    with pytest.raises(ValueError, match="unknown phase"):
        FeatureStore(gate, write_phase="all")


# =================================================================================== features
def test_put_get_whole_tensor_every_index_form(gate: StoreGate) -> None:
    fs = FeatureStore(gate)
    x = feats()
    assert fs.put_tensor(x, group_name="paper", attr_name="x", index=None) is True
    assert gate.get_data_ids() == ["paper"]
    assert gate.db.var_names("paper", "train") == ["x"]
    got = fs.get_tensor("paper", "x", None)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float32
    assert torch.equal(got, x)
    assert torch.equal(fs.get_tensor("paper", "x", slice(None)), x)
    idx = torch.tensor([7, 0, 7, 3])
    assert torch.equal(fs.get_tensor("paper", "x", idx), x[idx])
    # PyG's TensorAttr.is_set compares the index with !=, so a numpy index array of more than
    # one element fails in PyG's public get_tensor / multi_get_tensor themselves (one element
    # works); the store's own hook takes any ndarray
    assert torch.equal(fs.get_tensor("paper", "x", np.array([4])), x[[4]])
    assert torch.equal(fs._get_tensor(TensorAttr("paper", "x", idx.numpy())), x[idx])
    assert torch.equal(fs.get_tensor("paper", "x", [9, 1]), x[[9, 1]])
    assert torch.equal(fs.get_tensor("paper", "x", 2), x[2])
    assert torch.equal(fs.get_tensor("paper", "x", -1), x[-1])  # Python's -1: the last row
    assert torch.equal(fs.get_tensor("paper", "x", slice(2, 9, 3)), x[2:9:3])
    mask = torch.arange(10) % 3 == 0
    assert torch.equal(fs.get_tensor("paper", "x", mask), x[mask])
    assert fs.get_tensor("paper", "x", torch.tensor([], dtype=torch.long)).shape == (0, 3)
    with pytest.raises(IndexError):
        fs.get_tensor("paper", "x", torch.tensor([10]))
    with pytest.raises(IndexError):
        fs.get_tensor("paper", "x", torch.tensor([0.5]))


@pytest.mark.parametrize("dtype", [torch.float16, torch.float64, torch.int32, torch.int64,
                                   torch.bool, torch.uint8])
def test_dtypes_are_preserved(gate: StoreGate, dtype: torch.dtype) -> None:
    fs = FeatureStore(gate)
    x = feats(6, 2, dtype)
    fs[None, "x", None] = x
    out = fs[None, "x", torch.tensor([5, 1])]
    assert out.dtype == dtype and torch.equal(out, x[[5, 1]])


def test_bfloat16_is_refused_clearly(gate: StoreGate) -> None:
    with pytest.raises(TypeError, match="bfloat16"):
        FeatureStore(gate)["n", "x", None] = torch.zeros(3, dtype=torch.bfloat16)


def test_homogeneous_group_none_is_the_nodes_data_id(gate: StoreGate) -> None:
    fs = FeatureStore(gate)
    x = feats(5)
    fs[None, "x", None] = x
    assert gate.get_data_ids() == ["nodes"]
    assert torch.equal(fs[None, "x", None], x)
    assert [(a.group_name, a.attr_name) for a in fs.get_all_tensor_attrs()] == [(None, "x")]
    other = FeatureStore(gate, node_id="graph_nodes")
    other[None, "y", None] = x
    assert "graph_nodes" in gate.get_data_ids()
    with pytest.raises(InvalidNameError, match="homogeneous"):
        fs["nodes", "x", None]


def test_edge_type_groups_round_trip_and_are_not_listed(gate: StoreGate) -> None:
    fs = FeatureStore(gate)
    w = torch.rand(7, 2)
    fs[ET, "edge_attr", None] = w
    fs["user", "x", None] = feats(3)
    fs["edges", "w", None] = torch.ones(4)  # a homogeneous graph's edge features
    assert sorted(gate.get_data_ids()) == ["edges", "user", "user__rates__movie"]
    assert torch.equal(fs[ET, "edge_attr", torch.tensor([6, 0])], w[[6, 0]])
    assert torch.equal(fs[(ET,)]["edge_attr"][:], w)  # fs[ET] would spread the tuple
    assert torch.equal(fs.view(group_name=ET).edge_attr[:], w)
    assert fs.get_tensor_size(ET, "edge_attr") == (7, 2)
    assert [(a.group_name, a.attr_name) for a in fs.get_all_tensor_attrs()] == [("user", "x")]


def test_put_with_index_into_a_missing_var(gate: StoreGate) -> None:
    """PyG's own test puts with index=arange into an empty key; positionally, an index that
    holds every row once stores the whole tensor (row index[i] = tensor[i])."""
    fs = FeatureStore(gate)
    x = feats(3)
    assert fs.put_tensor(x, "A", "feat", torch.tensor([0, 1, 2]))
    assert torch.equal(fs["A", "feat", None], x)
    fs.put_tensor(x, "A", "perm", torch.tensor([2, 0, 1]))
    assert torch.equal(fs["A", "perm", torch.tensor([2, 0, 1])], x)
    assert torch.equal(fs["A", "perm", None], x[[1, 2, 0]])
    with pytest.raises(KeyError, match="Put the whole tensor first"):
        fs.put_tensor(x[:2], "A", "part", torch.tensor([0, 2]))
    with pytest.raises(KeyError):
        fs.put_tensor(x[:2], "A", "dup", torch.tensor([0, 0]))
    assert gate.db.var_names("A", "train") == ["feat", "perm"]


def test_put_with_index_writes_rows_in_place(gate: StoreGate) -> None:
    fs = FeatureStore(gate)
    x = feats(8)
    fs["n", "x", None] = x
    new = -torch.ones(2, 3)
    fs["n", "x", torch.tensor([6, 1])] = new
    x[[6, 1]] = new
    assert torch.equal(fs["n", "x", None], x)
    fs["n", "x", -1] = torch.full((3,), 7.0)  # one row, Python's -1
    fs["n", "x", 0] = torch.full((1, 3), 5.0)  # one row given as (1, k)
    x[-1], x[0] = 7.0, 5.0
    assert torch.equal(fs["n", "x", None], x)
    fs["n", "y", None] = torch.arange(8)
    fs["n", "y", 3] = torch.tensor(30)  # a 0-d tensor for one row of a 1-D var
    assert fs["n", "y", 3].item() == 30
    with pytest.raises(ShapeMismatchError):
        fs["n", "x", torch.tensor([0, 1])] = torch.zeros(3, 3)


def test_whole_put_replaces_and_keeps_group_lengths_consistent(gate: StoreGate) -> None:
    fs = FeatureStore(gate)
    fs["n", "x", None] = feats(5)
    fs["n", "y", None] = torch.arange(5)
    fs["n", "x", None] = torch.zeros(5, 7, dtype=torch.float64)  # new shape and dtype
    assert fs["n", "x", None].shape == (5, 7) and fs["n", "x", None].dtype == torch.float64
    assert gate.db.var_names("n", "train") == ["x", "y"]  # order kept
    with pytest.raises(ShapeMismatchError, match="has 5 rows"):
        fs["n", "z", None] = torch.zeros(4)
    assert gate.db.var_names("n", "train") == ["x", "y"]
    assert not any(v.startswith(".") for v in gate.db.var_names("n", "train"))
    # the only var of a group may change length
    fs["m", "a", None] = torch.zeros(3)
    fs["m", "a", None] = torch.zeros(6)
    assert fs.get_tensor_size("m", "a") == (6,)


def test_views_every_form(gate: StoreGate) -> None:
    fs = FeatureStore(gate)
    x = feats(3)
    index = torch.tensor([0, 1, 2])
    fs["A", "feat", index] = x
    # fully specified forms give tensors
    assert torch.equal(fs["A", "feat", index], x)
    assert torch.equal(fs["A", "feat", None], x)
    assert torch.equal(fs["A", "feat", :], x)
    assert torch.equal(fs["A"]["feat"][:], x)
    assert torch.equal(fs["A"].feat[:], x)
    assert torch.equal(fs["A"].feat[torch.tensor([2])], x[[2]])
    assert torch.equal(fs["A", "feat"][index], x)
    assert torch.equal(fs.view().A.feat[:], x)
    assert torch.equal(fs["A", "feat"](), x)
    # partial forms give views
    assert isinstance(fs["A"], AttrView)
    assert fs["A"] == fs.view(TensorAttr(group_name="A"))
    assert fs["A"].feat == fs.view(TensorAttr(group_name="A", attr_name="feat"))
    view = fs.view(group_name="A")
    view.attr_name = "feat"
    view["index"] = index
    assert view == AttrView(fs, TensorAttr("A", "feat", index))
    assert (view == 0) is False
    assert repr(fs) == "FeatureStore()"
    with pytest.raises(AttributeError):
        _ = fs.view(group_name="A", index=None).feat.A
    # attr_name=None: the group's unnamed tensor, what calling a group view reads
    fs["A", None, None] = x * 2
    assert gate.db.has_var("A", "train", NONE_ATTR)
    assert torch.equal(fs["A"](), x * 2)
    # deletion
    del fs["A", "feat", index]
    with pytest.raises(KeyError):
        _ = fs["A", "feat", index]
    del fs["A"]
    with pytest.raises(KeyError):
        _ = fs["A"]()
    with pytest.raises(ValueError, match="not fully specified"):
        fs.get_tensor("A", "feat")


def test_custom_tensor_attr_without_group_name(gate: StoreGate) -> None:
    fs = FeatureStore(gate, tensor_attr_cls=NoGroupAttr)
    x = feats(3)
    index = torch.tensor([0, 1, 2])
    fs["feat", index] = x
    assert gate.get_data_ids() == ["nodes"]
    assert isinstance(fs["feat"], AttrView)
    assert torch.equal(fs["feat", index], x)
    assert torch.equal(fs["feat"][index], x)
    assert torch.equal(fs["feat"][:], x)
    assert torch.equal(fs["feat", :], x)
    attrs = fs.get_all_tensor_attrs()
    assert [type(a) for a in attrs] == [NoGroupAttr]
    assert (attrs[0].group_name, attrs[0].attr_name, attrs[0].index) == (None, "feat", UNSET)
    attrs[0].index = torch.tensor([2, 0])
    assert torch.equal(fs.multi_get_tensor(attrs)[0], x[[2, 0]])
    assert fs.get_tensor_size("feat") == (3, 3)


def test_custom_tensor_attr_with_index_default(gate: StoreGate) -> None:
    fs = FeatureStore(gate, tensor_attr_cls=IndexNoneAttr)
    x = feats(4)
    fs["g", "x"] = x  # fully specified: index defaults to None
    assert torch.equal(fs["g", "x"], x)
    attr = fs.get_all_tensor_attrs()[0]
    assert isinstance(attr, IndexNoneAttr) and attr.index is None


def test_multi_get_one_batched_read_per_group(gate: StoreGate,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    fs = FeatureStore(gate)
    px, py = feats(10), torch.arange(10) % 3
    ax = torch.rand(6, 4)
    fs["paper", "x", None] = px
    fs["paper", "y", None] = py
    fs["author", "x", None] = ax
    pidx, aidx = torch.tensor([9, 0, 4, 4]), torch.tensor([5, 1])
    attrs = [TensorAttr("paper", "x", pidx), TensorAttr("author", "x", aidx),
             TensorAttr("paper", "y", pidx), TensorAttr("paper", "x", pidx)]
    fs.multi_get_tensor(attrs)  # warm (compiles the groups)
    calls = count_reads(gate, monkeypatch)
    out = fs.multi_get_tensor(attrs)
    assert [c[0] for c in calls] == ["read_many", "read_many"]
    assert calls[0][1:] == ("paper", "train", ("x", "y"))
    assert calls[1][1:] == ("author", "train", ("x",))
    for got, want in zip(out, [px[pidx], ax[aidx], py[pidx], px[pidx]], strict=True):
        assert isinstance(got, torch.Tensor) and torch.equal(got, want)
    with pytest.raises(KeyError):
        fs.multi_get_tensor([TensorAttr("paper", "nope", pidx)])
    with pytest.raises(KeyError):
        fs.multi_get_tensor([TensorAttr("nobody", "x", pidx)])
    with pytest.raises(ValueError, match="not fully specified"):
        fs.multi_get_tensor([TensorAttr("paper", "x")])


def test_convert_type(gate: StoreGate) -> None:
    fs = FeatureStore(gate)
    x = feats(4)
    fs["n", "x", None] = x
    arr = fs.get_tensor("n", "x", np.array([3]), convert_type=True)  # (see above: 1 element)
    assert isinstance(arr, np.ndarray) and np.array_equal(arr, x.numpy()[[3]])
    ten = fs.get_tensor("n", "x", torch.tensor([3, 1]), convert_type=True)
    assert isinstance(ten, torch.Tensor)
    out = fs.multi_get_tensor([TensorAttr("n", "x", np.array([0]))], convert_type=True)
    assert isinstance(out[0], np.ndarray)
    assert isinstance(fs.get_tensor("n", "x", np.array([0])), torch.Tensor)  # without


def test_update_tensor(gate: StoreGate) -> None:
    fs = FeatureStore(gate)
    x = feats(3)
    fs["A", "feat", None] = x
    # PyG's test: an update with another shape replaces the tensor
    assert fs.update_tensor(torch.tensor([0, 2]), "A", "feat", None)
    assert torch.equal(fs["A", "feat", None], torch.tensor([0, 2]))
    # same shape and dtype: written in place (the var stays, nothing is renamed)
    fs["A", "feat", None] = x
    fs["A", "other", None] = torch.zeros(3)
    assert fs.update_tensor(x + 1, "A", "feat", None)
    assert torch.equal(fs["A", "feat", None], x + 1)
    assert gate.db.var_names("A", "train") == ["feat", "other"]
    # rows in place
    assert fs.update_tensor(torch.zeros(1, 3), "A", "feat", torch.tensor([1]))
    assert fs["A", "feat", None][1].tolist() == [0.0, 0.0, 0.0]
    # a missing var is put
    assert fs.update_tensor(torch.ones(3), "A", "new", None)
    assert torch.equal(fs["A", "new", None], torch.ones(3))
    with pytest.raises(ValueError, match="not fully specified"):
        fs.update_tensor(x, "A")


def test_remove_tensor(gate: StoreGate) -> None:
    fs = FeatureStore(gate)
    fs["A", "feat", None] = feats(3)
    fs["A", "y", None] = torch.zeros(3)
    assert fs.remove_tensor("A", "feat", None) is True
    assert fs.remove_tensor("A", "feat", None) is False
    assert fs.remove_tensor("nobody", "feat", None) is False
    with pytest.raises(KeyError):
        fs.get_tensor("A", "feat", None)
    assert fs.get_tensor_size("A", "feat") is None
    assert gate.db.var_names("A", "train") == ["y"]


def test_sizes_come_from_metadata(gate: StoreGate, monkeypatch: pytest.MonkeyPatch) -> None:
    fs = FeatureStore(gate)
    fs["paper", "x", None] = feats(10, 4)
    fs["paper", "y", None] = torch.arange(10)
    calls = count_reads(gate, monkeypatch)
    assert fs.get_tensor_size("paper", "x") == (10, 4)
    assert fs.get_tensor_size("paper", "y", None) == (10,)
    assert fs.get_tensor_size(TensorAttr("paper", "x")) == (10, 4)
    assert fs.get_tensor_size("paper", "nope") is None
    assert fs.get_tensor_size("nobody", "x") is None
    assert calls == []


def test_get_all_tensor_attrs_fresh_and_node_level_only(gate: StoreGate) -> None:
    fs = FeatureStore(gate)
    gs = GraphStore(gate)
    fs["paper", "x", None] = feats(4)
    fs["paper", "y", None] = torch.arange(4)
    fs["paper", None, None] = torch.zeros(4)  # unnamed: not listed
    fs["author", "x", None] = feats(2)
    fs[("author", "writes", "paper"), "w", None] = torch.ones(5)
    gs.put_edge_index((torch.tensor([0, 1]), torch.tensor([1, 3])),
                      edge_type=("author", "writes", "paper"), layout="coo")
    gs.put_edge_index((torch.tensor([0, 1]), torch.tensor([0, 1, 2, 2, 2])),
                      edge_type=("author", "writes", "paper"), layout="csc")
    gate.set_data_id("jagged")
    gate.add_data("r", [np.zeros(2), np.zeros(3)])  # ragged: not a tensor
    keys = lambda attrs: sorted((a.group_name, a.attr_name) for a in attrs)  # noqa: E731
    first = fs.get_all_tensor_attrs()
    assert keys(first) == [("author", "x"), ("paper", "x"), ("paper", "y")]
    assert all(type(a) is TensorAttr and a.index is UNSET for a in first)
    for a in first:  # the loaders mutate what they get
        a.index = torch.tensor([0])
    second = fs.get_all_tensor_attrs()
    assert all(a.index is UNSET for a in second)
    assert not {id(a) for a in first} & {id(a) for a in second}
    assert keys(FeatureStore(gate, node_types=["paper"]).get_all_tensor_attrs()) == [
        ("paper", "x"), ("paper", "y")]
    assert FeatureStore(gate, node_types=[None, "absent"]).get_all_tensor_attrs() == []
    with pytest.raises(UnsupportedOperationError, match="ragged"):
        fs["jagged", "r", None]
    assert fs.get_tensor_size("jagged", "r") is None


def test_loader_use_pattern_matches_in_memory_indexing(gate: StoreGate) -> None:
    """What PyG's loaders do per batch: get_all_tensor_attrs, set one index tensor on every
    attr, one multi_get_tensor."""
    fs = FeatureStore(gate, node_types=[None])
    x, y = feats(50, 8), torch.arange(50) % 7
    fs[None, "x", None] = x
    fs[None, "y", None] = y
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        node = torch.randperm(50, generator=gen)[:16]
        attrs = fs.get_all_tensor_attrs()
        for attr in attrs:
            attr.index = node
        out = fs.multi_get_tensor(attrs)
        got = {a.attr_name: t for a, t in zip(attrs, out, strict=True)}
        assert set(got) == {"x", "y"}
        assert torch.equal(got["x"], x[node]) and torch.equal(got["y"], y[node])


def test_remote_backend_utils_count_nodes(gate: StoreGate) -> None:
    from torch_geometric.data import remote_backend_utils

    fs, gs = FeatureStore(gate), GraphStore(gate)
    fs["paper", "x", None] = feats(6)
    fs["author", "x", None] = feats(4)
    gs[("author", "writes", "paper"), "coo"] = (torch.tensor([0]), torch.tensor([1]))
    assert remote_backend_utils.num_nodes(fs, gs, "paper") == 6
    assert remote_backend_utils.num_nodes(fs, gs, "author") == 4


# ---------------------------------------------------------------------------------- phases
@pytest.fixture
def split_gate(gate: StoreGate) -> StoreGate:
    """Group 'paper' with 10 rows split 6/2/2; var 'x' = row number * 10 + column."""
    gate.set_data_id("paper")
    rows = np.arange(10)
    gate.add_data("x", (rows[:, None] * 10 + np.arange(3)).astype("f4"), phase=(6, 2, 2))
    gate.add_data("id", rows, phase=(6, 2, 2))
    gate.compile()
    return gate


def test_phase_all_counts_global_rows(split_gate: StoreGate) -> None:
    fs = FeatureStore(split_gate)
    idx = torch.tensor([9, 0, 7, 6, 2])
    assert fs["paper", "id", idx].tolist() == [9, 0, 7, 6, 2]
    assert fs["paper", "x", idx][:, 0].tolist() == [90.0, 0.0, 70.0, 60.0, 20.0]
    assert fs["paper", "id", None].tolist() == list(range(10))
    assert fs["paper", "id", slice(4, 9, 2)].tolist() == [4, 6, 8]
    assert fs["paper", "id", 7].item() == 7
    assert fs.get_tensor_size("paper", "x") == (10, 3)
    valid = FeatureStore(split_gate, phase="valid")
    assert valid["paper", "id", None].tolist() == [6, 7]
    assert valid["paper", "id", torch.tensor([1])].tolist() == [7]
    assert valid.get_tensor_size("paper", "id") == (2,)


def test_phase_all_writes_follow_the_group_split(split_gate: StoreGate) -> None:
    fs = FeatureStore(split_gate)
    fs["paper", "z", None] = torch.arange(10) * 2  # split 6/2/2 like the group
    assert [split_gate.db.info("paper", p, "z").length for p in ("train", "valid", "test")] == [
        6, 2, 2]
    assert fs["paper", "z", torch.tensor([8, 1])].tolist() == [16, 2]
    fs["paper", "z", torch.tensor([9, 0])] = torch.tensor([-1, -2])  # rows in two phases
    assert fs["paper", "z", None].tolist() == [-2, 2, 4, 6, 8, 10, 12, 14, 16, -1]
    with pytest.raises(ShapeMismatchError, match="10 rows"):
        fs["paper", "w", None] = torch.zeros(6)
    split_gate.set_data_id("paper")
    split_gate.compile()  # still consistent
    # an empty group goes to write_phase
    fs_valid = FeatureStore(split_gate, write_phase="valid")
    fs_valid["fresh", "a", None] = torch.arange(3)
    assert split_gate.db.var_names("fresh", "valid") == ["a"]
    assert fs_valid["fresh", "a", torch.tensor([2])].tolist() == [2]
    # a store on one phase writes there
    test = FeatureStore(split_gate, phase="test")
    test["paper", "t", None] = torch.tensor([5, 6])
    assert split_gate.db.var_names("paper", "train") == ["x", "id", "z"]
    assert split_gate.db.var_names("paper", "test")[-1] == "t"
    assert test["paper", "t", None].tolist() == [5, 6]
    with pytest.raises(KeyError):  # 't' is not in train/valid: not readable over 'all'
        fs["paper", "t", torch.tensor([0])]


def test_remove_over_all_phases(split_gate: StoreGate) -> None:
    fs = FeatureStore(split_gate)
    assert fs.remove_tensor("paper", "x", None)
    assert all("x" not in split_gate.db.var_names("paper", p) for p in ("train", "valid", "test"))


# ---------------------------------------------------------------------------------- persistence
def test_reopened_store_serves_the_same(gate: StoreGate, reopen: Callable[..., StoreGate]) -> None:
    fs, gs = FeatureStore(gate), GraphStore(gate)
    x = feats(6)
    fs["n", "x", None] = x
    gs[ET, "csc"] = (torch.tensor([0, 1, 0]), torch.tensor([0, 2, 3]))
    again = reopen(gate)
    fs2, gs2 = FeatureStore(again), GraphStore(again)
    assert torch.equal(fs2["n", "x", None], x)
    attrs = gs2.get_all_edge_attrs()
    assert [(a.edge_type, a.layout, a.is_sorted, a.size) for a in attrs] == [
        (ET, EdgeLayout.CSC, True, (2, 2))]
    row, colptr = gs2[ET, "csc"]
    assert row.tolist() == [0, 1, 0] and colptr.tolist() == [0, 2, 3]


# =================================================================================== graph
def sample_graph() -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
    """A COO graph in no particular order, with a duplicate edge, a self loop and isolated
    nodes (5 sources, 6 destinations)."""
    row = torch.tensor([3, 0, 1, 4, 0, 2, 1, 1, 3])
    col = torch.tensor([2, 0, 2, 5, 1, 2, 0, 0, 3])
    return row, col, (5, 6)


def to_csr(row: torch.Tensor, col: torch.Tensor, n: int) -> tuple[torch.Tensor, ...]:
    perm = torch.argsort(row * 1000 + col, stable=True)
    ptr = torch.zeros(n + 1, dtype=torch.long)
    ptr[1:] = torch.cumsum(torch.bincount(row, minlength=n), 0)
    return ptr, col[perm], perm


def to_csc(row: torch.Tensor, col: torch.Tensor, n: int) -> tuple[torch.Tensor, ...]:
    perm = torch.argsort(col * 1000 + row, stable=True)
    ptr = torch.zeros(n + 1, dtype=torch.long)
    ptr[1:] = torch.cumsum(torch.bincount(col, minlength=n), 0)
    return row[perm], ptr, perm


def coo_of(layout: str, a: torch.Tensor, b: torch.Tensor) -> list[tuple[int, int]]:
    if layout == "csr":
        a = torch.repeat_interleave(torch.arange(len(a) - 1), a.diff())
    if layout == "csc":
        b = torch.repeat_interleave(torch.arange(len(b) - 1), b.diff())
    return pairs(a, b)


def test_every_layout_round_trips(gate: StoreGate) -> None:
    gs = GraphStore(gate)
    row, col, size = sample_graph()
    rowptr, csr_col, _ = to_csr(row, col, size[0])
    csc_row, colptr, _ = to_csc(row, col, size[1])
    gs["edge", "coo"] = (row, col)
    gs["edge", "csr"] = (rowptr, csr_col)
    gs["edge", "csc"] = (csc_row, colptr)
    for layout, want in (("coo", (row, col)), ("csr", (rowptr, csr_col)),
                         ("csc", (csc_row, colptr))):
        got = gs["edge", layout]
        assert len(got) == 2
        assert all(isinstance(t, torch.Tensor) and t.dtype == torch.long for t in got)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
        assert coo_of(layout, *got) == pairs(row, col)
    attrs = gs.get_all_edge_attrs()
    assert [a.layout.value for a in attrs] == ["csc", "coo", "csr"]  # CSC first
    assert [a.size for a in attrs] == [size, size, size]  # inferred, each side
    assert [a.is_sorted for a in attrs] == [True, False, False]
    assert all(type(a) is EdgeAttr and a.edge_type == "edge" for a in attrs)
    assert sorted(gate.get_data_ids()) == ["edge.coo", "edge.csc", "edge.csc.ptr", "edge.csr",
                                           "edge.csr.ptr"]
    for data_id in gate.get_data_ids():  # every data_id is a consistent storegate dataset
        gate.set_data_id(data_id)
        gate.compile()


def test_size_explicit_inferred_and_checked(gate: StoreGate) -> None:
    gs, fs = GraphStore(gate), FeatureStore(gate)
    row, col, _ = sample_graph()
    gs.put_edge_index((row, col), edge_type=None, layout="coo", size=(10, 12))
    assert gs.get_all_edge_attrs()[0].size == (10, 12)
    assert gate.get_data_ids() == ["edges.coo"]
    # homogeneous without size: square, counting the stored nodes (isolated ones at the end)
    fs[None, "x", None] = feats(9)
    gs.put_edge_index((row, col), edge_type=None, layout="coo")
    assert gs.get_all_edge_attrs()[0].size == (9, 9)
    # heterogeneous: each side from its node type when stored
    fs["user", "x", None] = feats(7)
    gs[ET, "coo"] = (row, col)
    assert [a.size for a in gs.get_all_edge_attrs() if a.edge_type == ET] == [(7, 6)]
    # a pointer fixes its side
    ptr = torch.tensor([0, 1, 1, 2])
    gs[ET, "csr"] = (ptr, torch.tensor([0, 5]))
    assert {a.layout.value: a.size for a in gs.get_all_edge_attrs()
            if a.edge_type == ET}["csr"] == (3, 6)
    with pytest.raises(ShapeMismatchError, match="rowptr"):
        gs.put_edge_index((ptr, torch.tensor([0, 5])), edge_type=ET, layout="csr", size=(4, 6))
    with pytest.raises(ShapeMismatchError, match="colptr"):
        gs.put_edge_index((torch.tensor([0, 5]), ptr), edge_type=ET, layout="csc", size=(6, 4))
    with pytest.raises(ShapeMismatchError, match="size"):
        gs.put_edge_index((row, col), edge_type=ET, layout="coo", size=(2, 2))


def test_bad_edge_indices_are_refused_and_change_nothing(gate: StoreGate) -> None:
    gs = GraphStore(gate)
    gs["e", "csr"] = (torch.tensor([0, 1, 2]), torch.tensor([1, 0]))
    before = gs["e", "csr"]
    bad = [
        ((torch.tensor([0, 2, 1]), torch.tensor([1, 0])), ShapeMismatchError),  # decreasing
        ((torch.tensor([1, 2, 2]), torch.tensor([1, 0])), ShapeMismatchError),  # not from 0
        ((torch.tensor([0, 1, 3]), torch.tensor([1, 0])), ShapeMismatchError),  # wrong end
        ((torch.tensor([0, 1, 2]), torch.tensor([1.0, 0.0])), InvalidArgumentError),
        ((torch.tensor([0, 1, 2]), torch.tensor([-1, 0])), InvalidArgumentError),
        ((torch.tensor([[0, 1, 2]]), torch.tensor([1, 0])), InvalidArgumentError),
        ((torch.tensor([0, 1, 2]), torch.tensor([1, 0]), torch.tensor([0, 5])),
         ShapeMismatchError),  # perm out of range
        ((torch.tensor([0, 1, 2]),), InvalidArgumentError),
    ]
    for payload, err in bad:
        with pytest.raises(err):
            gs["e", "csr"] = payload
    after = gs["e", "csr"]
    assert torch.equal(before[0], after[0]) and torch.equal(before[1], after[1])
    with pytest.raises(ShapeMismatchError, match="lengths"):
        gs["e", "coo"] = (torch.tensor([0, 1]), torch.tensor([0]))
    with pytest.raises(InvalidArgumentError, match="not sorted"):
        gs.put_edge_index((torch.tensor([0, 1]), torch.tensor([1, 0])), edge_type="e",
                          layout="coo", is_sorted=True)
    with pytest.raises(ValueError, match="CSR"):
        gs.put_edge_index((torch.tensor([0, 1]), torch.tensor([1, 0])), edge_type="e",
                          layout="csr", is_sorted=True)  # PyG's EdgeAttr refuses it
    with pytest.raises(InvalidNameError):
        gs["edges", "coo"] = (torch.tensor([0]), torch.tensor([0]))  # the name of None
    assert [a.layout.value for a in gs.get_all_edge_attrs()] == ["csr"]


def test_stacked_edge_index_and_empty_graph(gate: StoreGate) -> None:
    gs = GraphStore(gate)
    gs[None, "coo"] = torch.tensor([[0, 1, 2], [1, 2, 0]])
    row, col = gs[None, "coo"]
    assert row.tolist() == [0, 1, 2] and col.tolist() == [1, 2, 0]
    gs.put_edge_index((torch.zeros(0, dtype=torch.long), torch.zeros(4, dtype=torch.long)),
                      edge_type="empty", layout="csc", size=(2, 3))
    row, colptr = gs["empty", "csc"]
    assert row.numel() == 0 and colptr.tolist() == [0, 0, 0, 0]


def test_missing_and_remove(gate: StoreGate) -> None:
    gs = GraphStore(gate)
    with pytest.raises(KeyError):
        gs[ET, "coo"]
    gs[ET, "csr"] = (torch.tensor([0, 1, 2]), torch.tensor([0, 0]))
    with pytest.raises(KeyError):
        gs[ET, "csc"]
    with pytest.raises(KeyError):
        gs.get_edge_perm(ET, "csc")
    assert gs.remove_edge_index(ET, "csr") is True
    assert gs.remove_edge_index(ET, "csr") is False
    with pytest.raises(KeyError):
        gs[ET, "csr"]
    assert gate.get_data_ids() == [] and gs.get_all_edge_attrs() == []
    del gs  # a store holds no state of its own


@pytest.mark.parametrize("stored", ["coo", "csr", "csc"])
def test_conversions_give_the_same_graph(gate: StoreGate, stored: str) -> None:
    gs = GraphStore(gate)
    row, col, size = sample_graph()
    payload = {"coo": lambda: (row, col), "csr": lambda: to_csr(row, col, size[0])[:2],
               "csc": lambda: to_csc(row, col, size[1])[:2]}[stored]()
    gs.put_edge_index(payload, edge_type=None, layout=stored, size=size)
    stored_pairs = coo_of(stored, *payload)
    orig_order = gs.coo()  # the stored edge order, as COO
    r0, c0, p0 = orig_order
    assert pairs(r0, c0) == stored_pairs and p0 is None
    for layout in ("coo", "csr", "csc"):
        a, b, perm = getattr(gs, layout)()
        assert coo_of(layout, a, b) == stored_pairs
        if layout == "csc":
            assert torch.all(b.diff() >= 0) and len(b) == size[1] + 1
        if layout == "csr":
            assert len(a) == size[0] + 1
        if perm is not None:  # converted edge i is stored edge perm[i]
            ca, cb = a, b
            if layout == "csr":
                ca = torch.repeat_interleave(torch.arange(len(a) - 1), a.diff())
            if layout == "csc":
                cb = torch.repeat_interleave(torch.arange(len(b) - 1), b.diff())
            assert torch.equal(ca, r0[perm]) and torch.equal(cb, c0[perm])
        else:
            assert layout == stored or (stored == "csc" and layout == "coo") or (
                stored == "csr" and layout == "coo")


def test_heterogeneous_conversions_and_store(gate: StoreGate) -> None:
    gs = GraphStore(gate)
    row, col, size = sample_graph()
    et2 = ("movie", "rated_by", "user")
    gs.put_edge_index((row, col), edge_type=ET, layout="coo", size=size)
    gs.put_edge_index(to_csc(col, row, size[0])[:2], edge_type=et2, layout="csc",
                      size=size[::-1])
    rows, colptrs, perms = gs.csc()
    assert set(rows) == {ET, et2}
    assert perms[et2] is None  # stored as CSC: no conversion
    assert coo_of("csc", rows[ET], colptrs[ET]) == pairs(row, col)
    assert torch.equal(rows[ET], row[perms[ET]])
    with pytest.raises(ValueError, match="not found"):
        gs.csc([("a", "b", "c")])
    # store=True keeps the conversion with its perm; csc() then reads it as stored
    gs.csc([ET], store=True)
    assert [a.layout.value for a in gs.get_all_edge_attrs() if a.edge_type == ET] == [
        "csc", "coo"]
    rows2, colptrs2, perms2 = gs.csc([ET])
    assert torch.equal(rows2[ET], rows[ET]) and torch.equal(colptrs2[ET], colptrs[ET])
    assert torch.equal(perms2[ET], perms[ET])
    assert torch.equal(gs.get_edge_perm(ET, "csc"), perms[ET])
    # a layout converted from a layout with a perm composes them (ids stay the original ones)
    gs.remove_edge_index(ET, "coo")
    rowptr3, col3, perm3 = gs.csr([ET])
    src = torch.repeat_interleave(torch.arange(len(rowptr3[ET]) - 1), rowptr3[ET].diff())
    assert torch.equal(src, row[perm3[ET]]) and torch.equal(col3[ET], col[perm3[ET]])


def test_csc_is_served_as_stored(gate: StoreGate, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stored as CSC: csc() converts nothing (perm None, no sort) and reads each var once;
    on the numpy backend the tensors share the backend's buffers (no copy at all)."""
    gs = GraphStore(gate)
    row, col, size = sample_graph()
    csc_row, colptr, _ = to_csc(row, col, size[1])
    gs.put_edge_index((csc_row, colptr), edge_type=None, layout="csc", size=size)
    import torch_geometric.data.graph_store as pyg_graph_store

    def no_sort(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("CSC stored as CSC must not be sorted")

    monkeypatch.setattr(pyg_graph_store, "index_sort", no_sort)
    calls = count_reads(gate, monkeypatch)
    r, c, perm = gs.csc()
    assert perm is None and torch.equal(r, csc_row) and torch.equal(c, colptr)
    if gate.backend == "numpy":
        assert calls == []  # the backend's own arrays
        again, _, _ = gs.csc()
        assert again.data_ptr() == r.data_ptr()
    else:
        assert sorted(c[3] for c in calls) == ["colptr", "row"]


# =================================================================================== processes
def _attrs() -> list[TensorAttr]:
    return [TensorAttr("paper", "x", torch.tensor([4, 0, 2])),
            TensorAttr("paper", "y", torch.tensor([4, 0, 2]))]


def _fill(gate: StoreGate) -> tuple[FeatureStore, GraphStore]:
    fs, gs = FeatureStore(gate), GraphStore(gate)
    fs["paper", "x", None] = feats(5)
    fs["paper", "y", None] = torch.arange(5)
    gs.put_edge_index(to_csc(*sample_graph()[:2], 6)[:2], edge_type=None, layout="csc",
                      size=(6, 6))
    return fs, gs


def test_stores_pickle(gate: StoreGate) -> None:
    fs, gs = _fill(gate)
    fs2, gs2 = pickle.loads(pickle.dumps((fs, gs)))
    assert type(fs2) is FeatureStore and fs2.phase == "all"
    for a, b in zip(fs2.multi_get_tensor(_attrs()), fs.multi_get_tensor(_attrs()), strict=True):
        assert torch.equal(a, b)
    assert [torch.equal(a, b) for a, b in zip(gs2.csc()[:2], gs.csc()[:2], strict=True)] == [
        True, True]
    custom = FeatureStore(gate, tensor_attr_cls=NoGroupAttr)
    assert pickle.loads(pickle.dumps(custom))._tensor_attr_cls is NoGroupAttr


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_worker_processes_read(gate: StoreGate, method: str) -> None:
    fs, gs = _fill(gate)
    want_f = fs.multi_get_tensor(_attrs())
    want_g = gs.csc()[:2]
    with multiprocessing.get_context(method).Pool(1) as pool:
        got_f = pool.apply(methodcaller("multi_get_tensor", _attrs()), (fs,))
        got_g = pool.apply(methodcaller("csc"), (gs,))[:2]
        attrs = pool.apply(methodcaller("get_all_tensor_attrs"), (fs,))
    assert all(torch.equal(a, b) for a, b in zip(got_f, want_f, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(got_g, want_g, strict=True))
    assert sorted(a.attr_name for a in attrs) == ["x", "y"]
