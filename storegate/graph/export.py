"""Export a partitioned graph store to PyG's distributed on-disk layout.

:func:`export_pyg` writes what ``torch_geometric.distributed.Partitioner`` writes for a
homogeneous graph, so ``LocalFeatureStore.from_partition(root, pid)`` and
``LocalGraphStore.from_partition(root, pid)`` load it::

    root/
    |-- META.json        num_parts, is_hetero False, is_sorted True (by destination)
    |-- node_map.pt      partition of every node (int64, N)
    |-- edge_map.pt      partition of every edge (int64, E): the partition of its destination
    |-- label.pt         node labels (var ``y``) of every node, when the store has them
    |-- part_<p>/
        |-- graph.pt       {'edge_id', 'row', 'col', 'size'}: the edges into partition p
        |-- node_feats.pt  {'global_id', 'feats': {var: tensor}}: the nodes of partition p
        |-- edge_feats.pt  {'global_id', 'feats': {var: tensor}} of the edges of graph.pt

Ids are the rows of the partitioned store (node rows, COO edge rows), which are PyG's
"global ids" here; the vars ``orig_id`` / ``orig_edge_id`` (exported as features) map them
back to the graph that was stored. As in PyG's ``Partitioner``, partition ``p`` holds the edges
whose destination is in ``p`` (buckets ``(i, p)`` of the plan) sorted by destination (stable),
and the nodes of ``p``. Every regular node var goes into ``feats`` (``x``, ``y``, masks,
``orig_id``, ...; PyG's loaders read ``x``, the rest are there for the user), every regular edge
var into the edge ``feats``. PyG's distributed sampler takes labels from
``feature_store.labels`` (a tensor over all nodes): load ``label.pt`` into it. Ragged vars and
dtypes torch cannot hold are skipped with a warning. PyG's ``LocalFeatureStore`` cannot load an
empty ``global_id``, so an empty partition gets no ``node_feats.pt`` and a partition without
edges an empty ``edge_feats.pt``.

Examples
--------
>>> import tempfile, torch
>>> from storegate import StoreGate
>>> from storegate.graph.layout import write_edges
>>> from storegate.graph import partition
>>> sg = StoreGate("numpy", data_id="nodes")
>>> sg.add_data("x", np.arange(4.0).reshape(4, 1), phase="train")
>>> write_edges(sg, "edges", "coo", np.array([0, 1, 2]), np.array([1, 2, 3]), (4, 4))
>>> _ = partition(sg, 2, method="bfs")
>>> root = export_pyg(sg, tempfile.mkdtemp())
>>> sorted(p.name for p in root.iterdir())
['META.json', 'edge_map.pt', 'node_map.pt', 'part_0', 'part_1']
>>> torch.load(root / "node_map.pt").tolist()
[0, 0, 1, 1]
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidArgumentError
from .layout import GRAPH_PHASE
from .plan import PartitionPlan, load_plan

__all__ = ["export_pyg"]

logger = logging.getLogger(__name__)


def _tensors(db: Any, data_id: str, phase: str, index: Any, what: str) -> dict[str, Any]:
    """Regular vars of a data_id at ``index`` as tensors (others skipped with a warning)."""
    import torch

    if data_id not in db.data_ids():
        return {}
    out = {}
    for v in db.var_names(data_id, phase):
        info = db.info(data_id, phase, v)
        if info.ragged:
            logger.warning("export_pyg: %s var %r is ragged; PyG's layout holds one tensor per "
                           "var, so it is not exported", what, v)
            continue
        arr = np.ascontiguousarray(db.read(data_id, phase, v, index))
        try:
            out[v] = torch.from_numpy(arr.copy() if not arr.flags.writeable else arr)
        except TypeError:
            logger.warning("export_pyg: %s var %r has dtype %s, which torch cannot hold; not "
                           "exported", what, v, arr.dtype)
    return out


def export_pyg(storegate: Any, root: str | os.PathLike[str], *,
               plan: PartitionPlan | None = None, node_id: str = "nodes",
               edge_id: str = "edges") -> Path:
    """Write a partitioned store in the layout of ``torch_geometric.distributed.Partitioner``
    (see the module docstring).

    Parameters
    ----------
    storegate
        The :class:`~storegate.StoreGate`, partitioned by :func:`storegate.graph.partition`.
    root
        The output directory (created; files there are overwritten).
    plan
        The plan; default :func:`~storegate.graph.plan.load_plan` of ``node_id``.
    node_id, edge_id
        The data_id of the nodes and the edge stem (when ``plan`` is not given).

    Returns
    -------
    pathlib.Path
        ``root``.

    Raises
    ------
    DataIdNotFoundError
        When the store is not partitioned (the message says to run ``partition`` first).

    Examples
    --------
    >>> import tempfile
    >>> from storegate import StoreGate
    >>> export_pyg(StoreGate("numpy"), tempfile.mkdtemp())  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    storegate.errors.DataIdNotFoundError: the store is not partitioned: ...
    """
    import torch

    if plan is None:
        plan = load_plan(storegate, node_id)
    elif not isinstance(plan, PartitionPlan):
        raise InvalidArgumentError(f"plan must be a PartitionPlan, got {type(plan).__name__}.")
    db = storegate.db
    out = Path(os.fspath(root))
    out.mkdir(parents=True, exist_ok=True)
    P, n = plan.num_parts, plan.num_nodes
    coo = plan.edge_data_id
    m = plan.num_edges
    row = np.asarray(db.read(coo, GRAPH_PHASE, "row", slice(0, m, 1)), dtype=np.int64)
    col = np.asarray(db.read(coo, GRAPH_PHASE, "col", slice(0, m, 1)), dtype=np.int64)
    node_map = np.repeat(np.arange(P, dtype=np.int64), np.diff(plan.node_offsets))
    bucket = np.repeat(np.arange(P * P, dtype=np.int64), np.diff(plan.bucket_offsets))
    edge_map = bucket % P  # the partition of the destination, as PyG's Partitioner
    for p in range(P):
        part = out / f"part_{p}"
        part.mkdir(exist_ok=True)
        ranges = [plan.bucket_range(i, p) for i in range(P)]
        ids = (np.concatenate([np.arange(a, b, dtype=np.int64) for a, b in ranges])
               if ranges else np.zeros(0, np.int64))
        ids = ids[np.argsort(col[ids], kind="stable")]  # sorted by destination
        torch.save({"edge_id": torch.from_numpy(ids), "row": torch.from_numpy(row[ids]),
                    "col": torch.from_numpy(col[ids]), "size": (n, n)}, part / "graph.pt")
        start, stop = plan.node_range(p)
        # PyG's LocalFeatureStore cannot take an empty global_id (it calls max()): an empty
        # partition has no node_feats.pt, a partition without edges an empty edge_feats.pt
        (part / "node_feats.pt").unlink(missing_ok=True)
        if stop > start:
            feats = _tensors(db, plan.node_id, plan.phase, slice(start, stop, 1), "node")
            torch.save({"global_id": torch.arange(start, stop, dtype=torch.int64),
                        "feats": feats}, part / "node_feats.pt")
        efeats = _tensors(db, plan.edge_id, plan.phase, ids, "edge") if ids.size else {}
        torch.save({"global_id": torch.from_numpy(ids), "feats": efeats} if efeats else {},
                   part / "edge_feats.pt")
    torch.save(torch.from_numpy(node_map), out / "node_map.pt")
    torch.save(torch.from_numpy(edge_map), out / "edge_map.pt")
    if plan.node_id in db.data_ids() and db.has_var(plan.node_id, plan.phase, "y") and not (
            db.info(plan.node_id, plan.phase, "y").ragged):
        y = np.ascontiguousarray(db.read(plan.node_id, plan.phase, "y", slice(0, n, 1)))
        torch.save(torch.from_numpy(y.copy()), out / "label.pt")
    meta = {"num_parts": P, "node_types": None, "edge_types": None, "node_offset": None,
            "is_hetero": False, "is_sorted": True}
    (out / "META.json").write_text(json.dumps(meta))
    logger.info("exported %s partitions (%s nodes, %s edges) to %s", P, n, m, out)
    return out
