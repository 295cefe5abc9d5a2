"""The GraphStore layout of a store, without torch: constants and a numpy reader.

:class:`storegate.pyg.GraphStore` keeps each ``(edge_type, layout)`` in the data_id
``<edge type>.<layout>`` (``'edges.csc'`` for the homogeneous edge type ``None``), with one row
per edge in phase ``'train'``:

======  ===========================  ===============================
layout  data_id ``<e>.<layout>``     data_id ``<e>.<layout>.ptr``
======  ===========================  ===============================
coo     ``row``, ``col``             —
csr     ``col``                      ``rowptr``
csc     ``row``                      ``colptr``
======  ===========================  ===============================

plus an optional var ``perm`` (the original edge id of each stored edge) and the ``EdgeAttr``
as JSON in the attribute ``'pyg'`` of ``<e>.<layout>`` (``edge_type``, ``layout``,
``is_sorted``, ``size``), written last. Edge-level vars (``edge_attr``, ...) of the
homogeneous graph live in the data_id ``'edges'``; **their row ``k`` belongs to the edge whose
original id is ``k``**: the stored edge at position ``j`` of a layout owns edge-var row
``perm[j]`` when the layout stores ``perm``, else row ``j``. That is how PyG's samplers turn
sampled edge positions into ``e_id`` (``perm[positions]``) and then fetch edge features by
``e_id``; :func:`read_edges` returns that row per stored edge.

This module imports only numpy, so :mod:`storegate.graph.partitioning` reads graphs without
torch; :mod:`storegate.pyg.stores` takes its constants from here.

Examples
--------
>>> from storegate import StoreGate
>>> sg = StoreGate("numpy")
>>> write_edges(sg, "edges", "coo", np.array([0, 2]), np.array([1, 1]), (3, 3))
>>> stored_layouts(sg)
{'coo': {'edge_type': None, 'layout': 'coo', 'is_sorted': True, 'size': [3, 3]}}
>>> e = read_edges(sg)
>>> e.layout, e.src.tolist(), e.dst.tolist(), e.edge_rows.tolist(), e.size
('coo', [0, 2], [1, 1], [0, 1], (3, 3))
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import CorruptStoreError, DataIdNotFoundError, InvalidArgumentError

__all__ = [
    "ATTRS_KEY",
    "GRAPH_PHASE",
    "GRAPH_SUFFIXES",
    "LAYOUTS",
    "LAYOUT_ORDER",
    "LAYOUT_VARS",
    "ORIG_EDGE_ID",
    "ORIG_ID",
    "PERM",
    "SEP",
    "StoredEdges",
    "all_edge_metas",
    "read_edges",
    "stored_layouts",
    "write_edges",
]

logger = logging.getLogger(__name__)

#: Separator of the three names of an edge type in its data_id.
SEP = "__"
#: The endings of the data_ids a GraphStore owns (never node types).
GRAPH_SUFFIXES = (".coo", ".csr", ".csc", ".ptr")
#: The key of a GraphStore's metadata in the attributes of its data_ids.
ATTRS_KEY = "pyg"
#: Where a GraphStore keeps its vars (one phase; the topology has no train/valid/test split).
GRAPH_PHASE = "train"
#: The edge layouts.
LAYOUTS = ("coo", "csr", "csc")
#: get_all_edge_attrs lists the layouts of one edge type in this order: the homogeneous path of
#: PyG's conversions uses the first attr only, and CSC needs no conversion for sampling.
LAYOUT_ORDER = {"csc": 0, "coo": 1, "csr": 2}
#: Per layout: (the compressed side's pointer var or None, the names of the two payload vars).
LAYOUT_VARS: dict[str, tuple[str | None, tuple[str, str]]] = {
    "coo": (None, ("row", "col")),
    "csr": ("rowptr", ("rowptr", "col")),
    "csc": ("colptr", ("row", "colptr")),
}
#: The var of a layout with the original edge id of each stored edge.
PERM = "perm"
#: Node-level var holding each row's id in the source graph (renumbering, partitioning).
ORIG_ID = "orig_id"
#: Edge-level var holding each edge row's row in the source store (partitioning).
ORIG_EDGE_ID = "orig_edge_id"


@dataclass(frozen=True)
class StoredEdges:
    """The edges of one stored layout, as COO in stored order.

    Attributes
    ----------
    layout
        The layout read (``'coo'``, ``'csr'`` or ``'csc'``).
    src, dst
        int64 endpoints of each stored edge.
    edge_rows
        int64 row of the edge-level vars that belongs to each stored edge (``perm`` if the
        layout stores one, else ``0..E-1``).
    size
        ``(num_src, num_dst)`` from the layout's metadata.
    has_perm
        Whether the layout stores ``perm``.

    Examples
    --------
    >>> e = StoredEdges("coo", np.array([0]), np.array([1]), np.array([0]), (2, 2), False)
    >>> e.num_edges
    1
    """

    layout: str
    src: np.ndarray
    dst: np.ndarray
    edge_rows: np.ndarray
    size: tuple[int, int]
    has_perm: bool

    @property
    def num_edges(self) -> int:
        """Number of stored edges."""
        return int(self.src.shape[0])


def _meta(db: Any, data_id: str) -> dict[str, Any] | None:
    try:
        meta = db.get_attrs(data_id).get(ATTRS_KEY)
    except DataIdNotFoundError:
        return None
    return meta if isinstance(meta, dict) else None


def all_edge_metas(storegate: Any) -> dict[str, dict[str, Any]]:
    """The GraphStore metadata of every stored ``(edge_type, layout)``, by data_id.

    Examples
    --------
    >>> from storegate import StoreGate
    >>> all_edge_metas(StoreGate("numpy"))
    {}
    """
    db = storegate.db
    out = {}
    for data_id in db.data_ids():
        if not data_id.endswith(GRAPH_SUFFIXES[:3]):
            continue
        meta = _meta(db, data_id)
        if meta is not None:
            out[data_id] = meta
    return out


def stored_layouts(storegate: Any, edge_id: str = "edges") -> dict[str, dict[str, Any]]:
    """The layouts of the homogeneous edge type (``None``) stored under the stem ``edge_id``:
    ``{layout: metadata}``.

    Examples
    --------
    >>> from storegate import StoreGate
    >>> stored_layouts(StoreGate("numpy"))
    {}
    """
    out = {}
    for layout in LAYOUTS:
        meta = _meta(storegate.db, f"{edge_id}.{layout}")
        if meta is not None and meta.get("edge_type") is None:
            out[layout] = meta
    return out


def _whole(db: Any, data_id: str, var: str) -> np.ndarray:
    if not db.has_var(data_id, GRAPH_PHASE, var):
        raise CorruptStoreError(
            f"data_id {data_id!r} is listed as an edge index but has no var {var!r} in phase "
            f"{GRAPH_PHASE!r}; store the edges again (GraphStore.put_edge_index).")
    n = db.info(data_id, GRAPH_PHASE, var).length
    return np.asarray(db.read(data_id, GRAPH_PHASE, var, slice(0, n, 1)), dtype=np.int64)


def read_edges(storegate: Any, edge_id: str = "edges", layout: str | None = None) -> StoredEdges:
    """Read the homogeneous edges stored under ``edge_id`` as COO, with numpy only.

    Parameters
    ----------
    storegate
        The :class:`~storegate.StoreGate`.
    edge_id
        The edge stem (the GraphStore's ``edge_id``).
    layout
        The layout to read; default: the first stored of ``'coo'``, ``'csc'``, ``'csr'``.

    Raises
    ------
    DataIdNotFoundError
        When no layout (or not ``layout``) of that edge type is stored.

    Examples
    --------
    >>> from storegate import StoreGate
    >>> sg = StoreGate("numpy")
    >>> write_edges(sg, "edges", "csc", np.array([1, 0]), np.array([0, 1]), (2, 2),
    ...             perm=np.array([1, 0]))
    >>> e = read_edges(sg)
    >>> e.layout, e.src.tolist(), e.dst.tolist(), e.edge_rows.tolist()
    ('csc', [1, 0], [0, 1], [1, 0])
    """
    found = stored_layouts(storegate, edge_id)
    if layout is None:
        for candidate in ("coo", "csc", "csr"):
            if candidate in found:
                layout = candidate
                break
    if layout is None or layout not in found:
        raise DataIdNotFoundError(
            f"no edge index of the homogeneous edge type (edge_id {edge_id!r}"
            f"{'' if layout is None else f', layout {layout!r}'}) is in the store; stored "
            f"layouts: {sorted(found)}. Store the graph first, e.g. with "
            "storegate.pyg.from_data(data, sg).")
    db = storegate.db
    meta = found[layout]
    main = f"{edge_id}.{layout}"
    try:
        size = (int(meta["size"][0]), int(meta["size"][1]))
    except (KeyError, TypeError, ValueError, IndexError):
        raise CorruptStoreError(
            f"the metadata of {main!r} has no valid 'size': {meta!r}.") from None
    if layout == "coo":
        src, dst = _whole(db, main, "row"), _whole(db, main, "col")
    elif layout == "csc":
        src = _whole(db, main, "row")
        ptr = _whole(db, main + ".ptr", "colptr")
        dst = np.repeat(np.arange(ptr.shape[0] - 1, dtype=np.int64), np.diff(ptr))
    else:
        dst = _whole(db, main, "col")
        ptr = _whole(db, main + ".ptr", "rowptr")
        src = np.repeat(np.arange(ptr.shape[0] - 1, dtype=np.int64), np.diff(ptr))
    if src.shape != dst.shape:
        raise CorruptStoreError(
            f"the edge index {main!r} is inconsistent: {src.shape[0]} sources and "
            f"{dst.shape[0]} destinations.")
    has_perm = bool(db.has_var(main, GRAPH_PHASE, PERM))
    rows = _whole(db, main, PERM) if has_perm else np.arange(src.shape[0], dtype=np.int64)
    if rows.shape != src.shape:
        raise CorruptStoreError(
            f"perm of {main!r} has {rows.shape[0]} entries for {src.shape[0]} edges.")
    return StoredEdges(layout, src, dst, rows, size, has_perm)


def write_edges(storegate: Any, edge_id: str, layout: str, src: np.ndarray, dst: np.ndarray,
                size: tuple[int, int], *, perm: np.ndarray | None = None,
                is_sorted: bool | None = None) -> None:
    """Store COO edges in ``layout`` under ``edge_id`` (edge type ``None``) as
    :class:`storegate.pyg.GraphStore` does, replacing that layout; numpy only.

    The edges are converted with a stable sort (CSC: by destination, CSR: by source), and the
    stored ``perm`` then maps each stored edge to its position in ``src``/``dst`` (composed
    with ``perm`` when given). A COO is stored in the given order (``perm`` as given).
    The metadata is written last.

    Examples
    --------
    >>> from storegate import StoreGate
    >>> sg = StoreGate("numpy")
    >>> write_edges(sg, "edges", "csr", np.array([1, 0]), np.array([0, 1]), (2, 2))
    >>> sorted(sg.get_data_ids())
    ['edges.csr', 'edges.csr.ptr']
    >>> sg.db.read("edges.csr", "train", "perm", slice(0, 2, 1)).tolist()
    [1, 0]
    """
    if layout not in LAYOUTS:
        raise InvalidArgumentError(f"layout={layout!r}; use one of {LAYOUTS}.")
    src = np.asarray(src, dtype=np.int64)
    dst = np.asarray(dst, dtype=np.int64)
    main, ptr_id = f"{edge_id}.{layout}", f"{edge_id}.{layout}.ptr"
    cols: dict[str, np.ndarray]
    ptr: dict[str, np.ndarray] | None = None
    if layout == "coo":
        cols = {"row": src, "col": dst}
        if perm is not None:
            cols[PERM] = np.asarray(perm, dtype=np.int64)
        sorted_ = bool(dst.size < 2 or (np.diff(dst) >= 0).all())
        is_sorted = sorted_ if is_sorted is None else bool(is_sorted and sorted_)
    else:
        key, other, n = (dst, src, size[1]) if layout == "csc" else (src, dst, size[0])
        order = np.argsort(key, kind="stable")
        pointer = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(key, minlength=n), out=pointer[1:])
        stored_perm = order if perm is None else np.asarray(perm, dtype=np.int64)[order]
        cols = {("row" if layout == "csc" else "col"): other[order], PERM: stored_perm}
        ptr = {"colptr" if layout == "csc" else "rowptr": pointer}
        is_sorted = layout == "csc"
    sg = storegate
    db = sg.db
    db._check_writable()
    with db.transaction():
        present = db.data_ids()
        if main in present:  # unlist first: a half-written layout is never listed
            attrs = db.get_attrs(main)
            if attrs.pop(ATTRS_KEY, None) is not None:
                db.set_attrs(main, attrs)
        for data_id, data in ((ptr_id, ptr), (main, cols)):
            if data_id in present:
                sg._invalidate(data_id)
                db.delete_data_id(data_id)
            if data is None:
                continue
            db.create_data_id(data_id)
            for v, arr in data.items():
                if arr.size:
                    db.append(data_id, GRAPH_PHASE, v, arr)
                else:
                    db.create(data_id, GRAPH_PHASE, v, (0,), np.dtype(np.int64))
            sg._compile(data_id, reset=False)
        attrs = db.get_attrs(main)
        attrs[ATTRS_KEY] = {"edge_type": None, "layout": layout, "is_sorted": bool(is_sorted),
                            "size": [int(size[0]), int(size[1])]}
        db.set_attrs(main, attrs)
    db.flush()
