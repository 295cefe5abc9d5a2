"""The partition plan of a partitioned graph store (Marius-style node partitions, edge buckets).

After :func:`storegate.graph.partition`, the node rows of partition ``p`` are the contiguous
range ``[node_offsets[p], node_offsets[p + 1])`` of the node data_id (phase ``'train'``), and the
stored COO edges are ordered in buckets: bucket ``(i, j)`` holds the edges whose source is in
partition ``i`` and destination in partition ``j``, at rows
``[bucket_offsets[i * P + j], bucket_offsets[i * P + j + 1])`` of ``<edge_id>.coo`` (and of the
edge-level vars in ``<edge_id>``, which are aligned with it).

Where the plan is stored
------------------------
The plan is the attribute ``'partition'`` (:data:`PLAN_KEY`) of the node data_id, written last
by the partitioning (and removed first when it starts), so a partition that was interrupted is
never taken for a finished one. The offsets go into that JSON while there are at most
:data:`INLINE_OFFSETS` of them (``P <= 63``); beyond that they are the var ``offsets`` (phase
``'train'``: ``node_offsets`` then ``bucket_offsets``, concatenated) of the data_id
``<edge_id>.coo.ptr`` (:func:`offsets_data_id`), and the attribute names it. That data_id ends
in ``.ptr``, so :class:`storegate.pyg.FeatureStore` never lists it as a node type; it is the
pointer of the COO edges over their buckets, and :class:`storegate.pyg.GraphStore` deletes it
when the COO is stored again (which voids the plan: :func:`load_plan` then says so).

Examples
--------
>>> plan = PartitionPlan(2, np.array([0, 2, 5]), np.array([0, 1, 1, 3, 4]))
>>> plan.num_nodes, plan.num_edges, plan.max_part_rows, plan.edge_data_id
(5, 4, 3, 'edges.coo')
>>> plan.node_range(1), plan.bucket_range(1, 0)
((2, 5), (1, 3))
>>> plan.bucket_sizes().tolist()
[[1, 0], [2, 1]]
>>> plan.partition_of(np.array([0, 4, 2])).tolist()
[0, 1, 1]
>>> PartitionPlan.from_attrs(plan.to_attrs()) == plan
True
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import (
    CorruptStoreError,
    DataIdNotFoundError,
    IndexOutOfRangeError,
    InvalidArgumentError,
)
from .layout import GRAPH_PHASE

__all__ = ["INLINE_OFFSETS", "PLAN_KEY", "PartitionPlan", "load_plan", "offsets_data_id"]

logger = logging.getLogger(__name__)

#: The attribute of the node data_id that holds the plan.
PLAN_KEY = "partition"
#: Offsets (node plus bucket) kept inline in the JSON attribute; more go into a var.
INLINE_OFFSETS = 4096
#: The var holding the offsets when they are not inline.
OFFSETS_VAR = "offsets"
_FORMAT = 1


def offsets_data_id(edge_id: str = "edges") -> str:
    """The data_id that holds the offsets of a large plan: ``<edge_id>.coo.ptr``.

    >>> offsets_data_id("edges")
    'edges.coo.ptr'
    """
    return f"{edge_id}.coo.ptr"


def _offsets(value: Any, what: str, length: int | None) -> np.ndarray:
    try:
        arr = np.array(value, dtype=np.int64, copy=True)
    except (TypeError, ValueError, OverflowError):
        raise InvalidArgumentError(f"{what} must be a 1-D array of ints, got {value!r:.80}.") \
            from None
    if arr.ndim != 1 or (length is not None and arr.shape[0] != length):
        raise InvalidArgumentError(
            f"{what} must be a 1-D array of {length} ints, got shape {arr.shape}.")
    if arr.shape[0] == 0 or int(arr[0]) != 0 or bool((np.diff(arr) < 0).any()):
        raise InvalidArgumentError(
            f"{what} must start at 0 and never decrease, got {arr[:8].tolist()}"
            f"{'...' if arr.shape[0] > 8 else ''}.")
    arr.flags.writeable = False
    return arr


@dataclass(frozen=True)
class PartitionPlan:
    """Where the partitions and edge buckets of a partitioned graph store are.

    Parameters
    ----------
    num_parts
        ``P``, the number of node partitions.
    node_offsets
        int64, ``(P + 1,)``: partition ``p`` is node rows ``[node_offsets[p],
        node_offsets[p + 1])`` (global rows of the node data_id in ``phase``).
    bucket_offsets
        int64, ``(P * P + 1,)``: bucket ``(i, j)`` (edges from partition ``i`` to partition
        ``j``) is rows ``[bucket_offsets[i * P + j], bucket_offsets[i * P + j + 1])`` of the
        stored COO edges.
    node_id
        The data_id of the node vars.
    edge_id
        The edge stem: COO edges in ``f"{edge_id}.coo"`` (vars ``row``, ``col``), edge-level
        vars in ``edge_id``.
    phase
        The phase holding the node rows, edge rows and edge vars.
    method
        The partitioning method used (``'metis'``, ``'bfs'`` or ``'random'``).
    seed
        Its seed.

    Raises
    ------
    InvalidArgumentError
        When the offsets are not non-decreasing from 0 with the right lengths.

    Examples
    --------
    >>> plan = PartitionPlan(1, np.array([0, 3]), np.array([0, 2]), method="random")
    >>> plan.bucket_range(0, 0), plan.node_offsets.dtype
    ((0, 2), dtype('int64'))
    """

    num_parts: int
    node_offsets: np.ndarray
    bucket_offsets: np.ndarray
    node_id: str = "nodes"
    edge_id: str = "edges"
    phase: str = "train"
    method: str = "bfs"
    seed: int = 0

    def __post_init__(self) -> None:
        p = self.num_parts
        if isinstance(p, bool) or not isinstance(p, int | np.integer) or p < 1:
            raise InvalidArgumentError(f"num_parts must be an int >= 1, got {p!r}.")
        object.__setattr__(self, "num_parts", int(p))
        object.__setattr__(self, "node_offsets",
                           _offsets(self.node_offsets, "node_offsets", int(p) + 1))
        object.__setattr__(self, "bucket_offsets",
                           _offsets(self.bucket_offsets, "bucket_offsets", int(p) ** 2 + 1))
        for name in ("node_id", "edge_id", "phase", "method"):
            if not isinstance(getattr(self, name), str):
                raise InvalidArgumentError(
                    f"{name} must be a str, got {getattr(self, name)!r}.")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int | np.integer):
            raise InvalidArgumentError(f"seed must be an int, got {self.seed!r}.")
        object.__setattr__(self, "seed", int(self.seed))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PartitionPlan):
            return NotImplemented
        return (self.num_parts == other.num_parts
                and np.array_equal(self.node_offsets, other.node_offsets)
                and np.array_equal(self.bucket_offsets, other.bucket_offsets)
                and (self.node_id, self.edge_id, self.phase, self.method, self.seed)
                == (other.node_id, other.edge_id, other.phase, other.method, other.seed))

    def __hash__(self) -> int:
        return hash((self.num_parts, self.node_offsets.tobytes(), self.bucket_offsets.tobytes(),
                     self.node_id, self.edge_id, self.phase, self.method, self.seed))

    # ------------------------------------------------------------------ properties
    @property
    def num_nodes(self) -> int:
        """Number of nodes (rows of the node data_id)."""
        return int(self.node_offsets[-1])

    @property
    def num_edges(self) -> int:
        """Number of edges (rows of the COO edges)."""
        return int(self.bucket_offsets[-1])

    @property
    def edge_data_id(self) -> str:
        """The data_id of the COO edges: ``f"{edge_id}.coo"``."""
        return f"{self.edge_id}.coo"

    @property
    def max_part_rows(self) -> int:
        """Rows of the largest partition."""
        return int(np.diff(self.node_offsets).max())

    # ------------------------------------------------------------------ lookups
    def _part(self, p: Any, what: str) -> int:
        if isinstance(p, bool) or not isinstance(p, int | np.integer):
            raise InvalidArgumentError(f"{what} must be an int partition number, got {p!r}.")
        if not 0 <= int(p) < self.num_parts:
            raise IndexOutOfRangeError(
                f"{what}={int(p)} is out of range: the plan has partitions "
                f"0..{self.num_parts - 1}.")
        return int(p)

    def node_range(self, p: int) -> tuple[int, int]:
        """``(start, stop)``: the node rows of partition ``p``.

        >>> PartitionPlan(2, np.array([0, 1, 3]), np.zeros(5, "i8")).node_range(1)
        (1, 3)
        """
        p = self._part(p, "p")
        return int(self.node_offsets[p]), int(self.node_offsets[p + 1])

    def bucket_range(self, i: int, j: int) -> tuple[int, int]:
        """``(start, stop)``: the COO edge rows of bucket ``(i, j)`` (source in ``i``,
        destination in ``j``).

        >>> PartitionPlan(2, np.array([0, 1, 3]), np.array([0, 0, 2, 2, 3])).bucket_range(0, 1)
        (0, 2)
        """
        k = self._part(i, "i") * self.num_parts + self._part(j, "j")
        return int(self.bucket_offsets[k]), int(self.bucket_offsets[k + 1])

    def bucket_sizes(self) -> np.ndarray:
        """int64 ``(P, P)``: the number of edges of each bucket.

        >>> PartitionPlan(2, np.array([0, 1, 3]), np.array([0, 0, 2, 2, 3])).bucket_sizes()
        array([[0, 2],
               [0, 1]])
        """
        return np.diff(self.bucket_offsets).reshape(self.num_parts, self.num_parts)

    def partition_of(self, nodes: Any) -> np.ndarray:
        """The partition of each node row (int64, same shape as ``nodes``).

        Raises
        ------
        IndexOutOfRangeError
            For rows outside ``[0, num_nodes)``.

        Examples
        --------
        >>> PartitionPlan(2, np.array([0, 1, 3]), np.zeros(5, "i8")).partition_of([2, 0])
        array([1, 0])
        """
        arr = np.asarray(nodes)
        if arr.size and arr.dtype.kind not in "iu":
            raise InvalidArgumentError(f"nodes must be ints (node rows), got dtype {arr.dtype}.")
        arr = arr.astype(np.int64, copy=False)
        if arr.size and (int(arr.min()) < 0 or int(arr.max()) >= self.num_nodes):
            raise IndexOutOfRangeError(
                f"node rows must be in [0, {self.num_nodes}), got min {int(arr.min())}, max "
                f"{int(arr.max())}.")
        return (np.searchsorted(self.node_offsets, arr, side="right") - 1).astype(np.int64)

    # ------------------------------------------------------------------ (de)serialisation
    def to_attrs(self) -> dict[str, Any]:
        """The plan as a JSON-safe dict (offsets as lists).

        Examples
        --------
        >>> PartitionPlan(1, np.array([0, 2]), np.array([0, 1])).to_attrs()["node_offsets"]
        [0, 2]
        """
        return {"format": _FORMAT, "num_parts": self.num_parts,
                "node_offsets": self.node_offsets.tolist(),
                "bucket_offsets": self.bucket_offsets.tolist(), "node_id": self.node_id,
                "edge_id": self.edge_id, "phase": self.phase, "method": self.method,
                "seed": self.seed}

    @classmethod
    def from_attrs(cls, d: Any) -> PartitionPlan:
        """The plan of a dict made by :meth:`to_attrs`.

        Raises
        ------
        InvalidArgumentError
            When the dict is malformed (missing keys, wrong types, offsets that do not fit).

        Examples
        --------
        >>> PartitionPlan.from_attrs({"num_parts": 1})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        storegate.errors.InvalidArgumentError: a partition plan needs the keys ...
        """
        if not isinstance(d, dict):
            raise InvalidArgumentError(f"a partition plan must be a dict, got {d!r:.80}.")
        need = ("num_parts", "node_offsets", "bucket_offsets")
        missing = [k for k in need if k not in d]
        if missing:
            raise InvalidArgumentError(
                f"a partition plan needs the keys {list(need)}; {missing} missing in "
                f"{sorted(d)}.")
        if d.get("format", _FORMAT) != _FORMAT:
            raise InvalidArgumentError(
                f"partition plan format {d.get('format')!r} is not supported (this storegate "
                f"reads format {_FORMAT}); upgrade storegate or partition again.")
        kwargs = {k: d[k] for k in ("node_id", "edge_id", "phase", "method", "seed") if k in d}
        return cls(d["num_parts"], d["node_offsets"], d["bucket_offsets"], **kwargs)


# ---------------------------------------------------------------------------------- the store
def load_plan(storegate: Any, node_id: str = "nodes") -> PartitionPlan:
    """The partition plan of a store partitioned by :func:`storegate.graph.partition`.

    The plan is checked against the store: the node rows and COO edges must still be as many
    as when it was made.

    Raises
    ------
    DataIdNotFoundError
        When the store is not partitioned (no plan in the attributes of ``node_id``).
    CorruptStoreError
        When the plan is malformed or the graph changed since it was partitioned.

    Examples
    --------
    >>> from storegate import StoreGate
    >>> sg = StoreGate("numpy")
    >>> load_plan(sg)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    storegate.errors.DataIdNotFoundError: the store is not partitioned: ...
    """
    db = storegate.db
    fix = ("run storegate.graph.partition(sg, num_parts=...) first (node_id="
           f"{node_id!r}).")
    if node_id not in db.data_ids():
        raise DataIdNotFoundError(
            f"the store is not partitioned: it has no node data_id {node_id!r} (data_ids: "
            f"{db.data_ids()}); {fix}")
    raw = db.get_attrs(node_id).get(PLAN_KEY)
    if raw is None:
        raise DataIdNotFoundError(
            f"the store is not partitioned: data_id {node_id!r} has no partition plan; {fix}")
    try:
        if not isinstance(raw, dict):
            raise InvalidArgumentError(f"the plan is not a dict: {raw!r:.80}")
        if isinstance(raw.get("node_offsets"), dict):  # offsets stored as a var
            ref = raw["node_offsets"]
            data_id, var = str(ref.get("data_id")), str(ref.get("var", OFFSETS_VAR))
            if data_id not in db.data_ids() or not db.has_var(data_id, GRAPH_PHASE, var):
                raise CorruptStoreError(
                    f"the partition plan of data_id {node_id!r} keeps its offsets in var "
                    f"{var!r} of data_id {data_id!r}, which is missing (the edges were stored "
                    f"again?); {fix}")
            n = db.info(data_id, GRAPH_PHASE, var).length
            offsets = np.asarray(db.read(data_id, GRAPH_PHASE, var, slice(0, n, 1)))
            p = int(raw["num_parts"])
            raw = {**raw, "node_offsets": offsets[:p + 1], "bucket_offsets": offsets[p + 1:]}
        plan = PartitionPlan.from_attrs(raw)
    except (InvalidArgumentError, KeyError, TypeError, ValueError) as err:
        if isinstance(err, CorruptStoreError):
            raise
        raise CorruptStoreError(
            f"the partition plan of data_id {node_id!r} is malformed ({err}); {fix}") from None
    _check_against_store(storegate, plan, fix)
    return plan


def _rows(db: Any, data_id: str, phases: tuple[str, ...]) -> int:
    total = 0
    for p in phases:
        names = db.var_names(data_id, p)
        if names:
            total += db.info(data_id, p, names[0]).length
    return total


def _check_against_store(storegate: Any, plan: PartitionPlan, fix: str) -> None:
    db = storegate.db
    nodes = _rows(db, plan.node_id, (plan.phase,))
    edges = (_rows(db, plan.edge_data_id, (GRAPH_PHASE,))
             if plan.edge_data_id in db.data_ids() else None)
    if nodes != plan.num_nodes or edges != plan.num_edges:
        raise CorruptStoreError(
            f"the partition plan of data_id {plan.node_id!r} is stale: it has "
            f"{plan.num_nodes} nodes and {plan.num_edges} edges, the store {nodes} node rows "
            f"(phase {plan.phase!r}) and {edges} COO edges ({plan.edge_data_id!r}); the graph "
            f"changed since it was partitioned; {fix}")


def remove_plan(storegate: Any, node_id: str, edge_id: str) -> None:
    """Remove the plan (attribute and offsets data_id) of a store, if any (partitioning starts
    with this, so an interrupted run never leaves a plan)."""
    db = storegate.db
    if node_id in db.data_ids():
        attrs = db.get_attrs(node_id)
        if attrs.pop(PLAN_KEY, None) is not None:
            db.set_attrs(node_id, attrs)
    ptr = offsets_data_id(edge_id)
    if ptr in db.data_ids():
        storegate._invalidate(ptr)
        db.delete_data_id(ptr)


def write_plan(storegate: Any, plan: PartitionPlan) -> None:
    """Record ``plan`` in the store (offsets inline or in a var, see the module docstring);
    the attribute is written last."""
    db = storegate.db
    attrs = plan.to_attrs()
    if plan.num_parts + 1 + plan.num_parts ** 2 + 1 > INLINE_OFFSETS:
        ptr = offsets_data_id(plan.edge_id)
        if ptr in db.data_ids():
            storegate._invalidate(ptr)
            db.delete_data_id(ptr)
        db.create_data_id(ptr)
        db.append(ptr, GRAPH_PHASE, OFFSETS_VAR,
                  np.concatenate([plan.node_offsets, plan.bucket_offsets]))
        storegate._compile(ptr, reset=False)
        ref = {"data_id": ptr, "var": OFFSETS_VAR}
        attrs["node_offsets"] = attrs["bucket_offsets"] = ref
    node_attrs = db.get_attrs(plan.node_id)
    node_attrs[PLAN_KEY] = attrs
    db.set_attrs(plan.node_id, node_attrs)
