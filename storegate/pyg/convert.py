"""Write a PyG ``Data``/``HeteroData`` into a StoreGate, and read it back.

:func:`from_data` stores node-level tensors (features, labels, masks) through
:class:`~storegate.pyg.FeatureStore`, edge indices through :class:`~storegate.pyg.GraphStore`
(CSC by default: what the neighbour sampler reads), and edge-level tensors (``edge_attr``,
...) as vars of the edge type. With ``renumber=`` the nodes are renumbered for locality first
(:func:`storegate.graph.node_order`: BFS, degree, or METIS parts), so the neighbours of a node
have nearby row numbers and a sampled batch touches few storage chunks; the original id of
every row is kept in the node-level var ``orig_id`` (``batch.orig_id`` in a loader's batches)
and :func:`to_data` puts the rows back in the original order.

Examples
--------
>>> import torch
>>> from torch_geometric.data import Data
>>> from storegate import StoreGate
>>> data = Data(x=torch.randn(5, 3), y=torch.arange(5),
...             edge_index=torch.tensor([[0, 1, 2, 3], [1, 2, 3, 4]]))
>>> sg = StoreGate("numpy")
>>> fs, gs = from_data(data, sg, renumber="bfs")
>>> back = to_data(fs, gs)
>>> bool(torch.equal(back.x, data.x)), bool(torch.equal(back.y, data.y))
(True, True)
>>> sorted(map(tuple, back.edge_index.t().tolist())) == sorted(
...     map(tuple, data.edge_index.t().tolist()))
True
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from ..errors import InvalidArgumentError
from ..graph.layout import ORIG_ID
from ..graph.ordering import METHODS, node_order
from .stores import FeatureStore, GraphStore

__all__ = ["ORIG_ID", "from_data", "to_data"]

logger = logging.getLogger(__name__)

_LAYOUTS = ("coo", "csr", "csc")


def _node_types(data: Any) -> list[Any]:
    from torch_geometric.data import HeteroData  # type: ignore[import-untyped, unused-ignore]

    return list(data.node_types) if isinstance(data, HeteroData) else [None]


def _edge_types(data: Any) -> list[Any]:
    from torch_geometric.data import HeteroData  # type: ignore[import-untyped, unused-ignore]

    return list(data.edge_types) if isinstance(data, HeteroData) else [None]


def _store(data: Any, key: Any) -> Any:
    return data if key is None else data[key]


def _orders(data: Any, renumber: str | None, num_parts: int | None) -> dict[Any, np.ndarray]:
    """``perm[new] = old`` per node type (only for types that get renumbered)."""
    if renumber is None:
        return {}
    if renumber not in METHODS:
        raise InvalidArgumentError(f"renumber={renumber!r}; use None or one of {METHODS}.")
    orders: dict[Any, np.ndarray] = {}
    for nt in _node_types(data):
        n = int(_store(data, nt).num_nodes)
        srcs, dsts = [], []
        for et in _edge_types(data):
            if et is not None and not (et[0] == nt and et[2] == nt):
                continue  # the order of a node type follows its own (homogeneous) edges
            ei = _store(data, et).edge_index
            srcs.append(ei[0].numpy())
            dsts.append(ei[1].numpy())
        src = np.concatenate(srcs) if srcs else np.zeros(0, np.int64)
        dst = np.concatenate(dsts) if dsts else np.zeros(0, np.int64)
        orders[nt] = node_order(src, dst, n, renumber, num_parts)
    return orders


def from_data(
    data: Any,
    storegate: Any,
    *,
    layout: str = "csc",
    renumber: str | None = None,
    num_parts: int | None = None,
    write_phase: str = "train",
) -> tuple[FeatureStore, GraphStore]:
    """Write ``data`` (a ``Data`` or ``HeteroData``) into ``storegate``.

    Parameters
    ----------
    data
        The graph. Node-level tensors (``data.is_node_attr``) become vars of the node type,
        edge indices are stored in ``layout``, edge-level tensors become vars of the edge
        type; graph-level values are not stored.
    storegate
        The :class:`~storegate.StoreGate` to write into (any backend); its data_ids for these
        node and edge types must not exist yet.
    layout
        ``'csc'`` (default; the sampler reads it without conversion), ``'csr'`` or ``'coo'``.
    renumber
        ``None`` (keep ids), ``'bfs'``, ``'degree'`` or ``'metis'`` (see
        :func:`storegate.graph.node_order`). Node rows, edges and edge rows are relabelled; the
        var ``orig_id`` records each row's id in ``data``.
    num_parts
        Parts for ``renumber='metis'``.
    write_phase
        The phase the rows are written to.

    Returns
    -------
    (FeatureStore, GraphStore)
        Over ``storegate``, ready for :class:`storegate.pyg.NeighborLoader`.
    """
    if layout not in _LAYOUTS:
        raise InvalidArgumentError(f"layout={layout!r}; use one of {_LAYOUTS}.")
    fs = FeatureStore(storegate, write_phase=write_phase)
    gs = GraphStore(storegate)
    orders = _orders(data, renumber, num_parts)
    inverse = {}
    for nt, perm in orders.items():
        inv = np.empty_like(perm)
        inv[perm] = np.arange(perm.size, dtype=perm.dtype)
        inverse[nt] = torch.from_numpy(inv)
    for nt in _node_types(data):
        store = _store(data, nt)
        new_to_old = torch.from_numpy(orders[nt]) if nt in orders else None
        for key, value in store.items():
            if not isinstance(value, torch.Tensor) or not store.is_node_attr(key):
                continue
            rows = value[new_to_old] if new_to_old is not None else value
            fs.put_tensor(rows.contiguous(), group_name=nt, attr_name=key, index=None)
        if new_to_old is not None:
            fs.put_tensor(new_to_old.clone(), group_name=nt, attr_name=ORIG_ID, index=None)
    for et in _edge_types(data):
        store = _store(data, et)
        ei = store.edge_index
        src_t, dst_t = (None, None) if et is None else (et[0], et[2])
        src = inverse[src_t][ei[0]] if src_t in inverse else ei[0]
        dst = inverse[dst_t][ei[1]] if dst_t in inverse else ei[1]
        n_src = int(_store(data, src_t).num_nodes)
        n_dst = int(_store(data, dst_t).num_nodes)
        # edges sorted by destination (CSC order) so edge rows and the index agree
        order = torch.argsort(dst * max(n_src, 1) + src, stable=True)
        src, dst = src[order], dst[order]
        if layout == "coo":
            gs.put_edge_index((src, dst), edge_type=et, layout="coo", size=(n_src, n_dst),
                              is_sorted=True)
        elif layout == "csc":
            colptr = torch.zeros(n_dst + 1, dtype=torch.long)
            colptr[1:] = torch.cumsum(torch.bincount(dst, minlength=n_dst), 0)
            gs.put_edge_index((src, colptr), edge_type=et, layout="csc", size=(n_src, n_dst))
        else:
            by_src = torch.argsort(src * max(n_dst, 1) + dst, stable=True)
            rowptr = torch.zeros(n_src + 1, dtype=torch.long)
            rowptr[1:] = torch.cumsum(torch.bincount(src, minlength=n_src), 0)
            gs.put_edge_index((rowptr, dst[by_src]), edge_type=et, layout="csr",
                              size=(n_src, n_dst))
            order = order[by_src]
        group = et if et is not None else fs.edge_id
        for key, value in store.items():
            if key == "edge_index" or not isinstance(value, torch.Tensor):
                continue
            if store.is_edge_attr(key):
                fs.put_tensor(value[order].contiguous(), group_name=group, attr_name=key,
                              index=None)
    logger.info("stored %s node type(s), %s edge type(s) (layout %s, renumber %s)",
                len(_node_types(data)), len(_edge_types(data)), layout, renumber)
    return fs, gs


def to_data(feature_store: FeatureStore, graph_store: GraphStore, *,
            original_order: bool = True) -> Any:
    """Read a graph written by :func:`from_data` (or any stores of these classes) back into a
    ``Data`` (one node and one edge type) or ``HeteroData``.

    Parameters
    ----------
    feature_store, graph_store
        The stores.
    original_order
        Put node rows back in the order of the source graph (undoing ``renumber=``, using
        the var ``orig_id``, which is then dropped) and relabel the edges accordingly.
    """
    from torch_geometric.data import Data, HeteroData  # type: ignore[import-untyped, unused-ignore]

    attrs = feature_store.get_all_tensor_attrs()
    edge_attrs = graph_store.get_all_edge_attrs()
    node_types = list(dict.fromkeys(a.group_name for a in attrs))
    edge_types = list(dict.fromkeys(e.edge_type for e in edge_attrs))
    hetero = any(nt is not None for nt in node_types) or any(et is not None
                                                            for et in edge_types)
    out: Any = HeteroData() if hetero else Data()
    back: dict[Any, torch.Tensor] = {}  # new id -> old id, per node type
    for nt in node_types:
        target = out[nt] if hetero else out
        names = [a.attr_name for a in attrs if a.group_name == nt]
        values = feature_store.multi_get_tensor(
            [feature_store._tensor_attr_cls.cast(nt, n, None) for n in names])
        tensors = dict(zip(names, values, strict=True))
        orig = tensors.pop(ORIG_ID, None) if original_order else None
        if orig is not None:
            back[nt] = orig
            order = torch.argsort(orig)
            tensors = {k: v[order] for k, v in tensors.items()}
        for k, v in tensors.items():
            setattr(target, k, v)
    for et in edge_types:
        target = out[et] if hetero else out
        if hetero:
            rows, cols, _ = graph_store.coo(edge_types=[et])
            row, col = rows[et], cols[et]
        else:
            row, col, _ = graph_store.coo()
        src_t, dst_t = (et[0], et[2]) if hetero else (None, None)
        if src_t in back:
            row = back[src_t][row]
        if dst_t in back:
            col = back[dst_t][col]
        target.edge_index = torch.stack([row, col])
        group = et if hetero else feature_store.edge_id
        data_id = feature_store._data_id(group)
        if data_id in feature_store.storegate.get_data_ids():
            for name in feature_store.storegate._var_names(data_id, "all"):
                setattr(target, name, feature_store.get_tensor(group, name, None))
    return out
