"""Graph partitioning: contiguous node partitions and partition-pair edge buckets.

Training on a graph larger than memory (embeddings per node, Marius/PyTorch-BigGraph style)
keeps a few node partitions in memory and walks the edges bucket by bucket: bucket ``(i, j)``
holds the edges from partition ``i`` to partition ``j``. :func:`partition` renumbers a graph
stored in the PyG layout (:func:`storegate.pyg.from_data`) so that

* partition ``p`` is the contiguous node rows ``[node_offsets[p], node_offsets[p + 1])`` of
  every node var,
* the edges are stored as COO in bucket order (bucket ``(i, j)`` at rows
  ``[bucket_offsets[i*P + j], bucket_offsets[i*P + j + 1])``), with every edge var aligned,
* the :class:`~storegate.graph.plan.PartitionPlan` is recorded in the store
  (:func:`~storegate.graph.plan.load_plan` reads it).

:func:`partition_graph` is the numpy core (node order, offsets, edge order).

Methods
-------
``'metis'``
    METIS parts (``pip install pymetis``) on the undirected simple graph (self loops and
    duplicates dropped), seeded; nodes in BFS order inside a part. Fewest edges across parts;
    METIS balances parts only up to its tolerance (a few percent) and may leave one empty.
``'bfs'``
    storegate's BFS order (:func:`storegate.graph.node_order`) cut into ``P`` contiguous ranges
    of balanced size: streaming-friendly, keeps neighbourhoods together, vectorised.
``'random'``
    a seeded random permutation cut into balanced ranges (Marius's default).
``'auto'``
    ``'metis'`` when pymetis imports, else ``'bfs'`` (logged).

Balanced ranges have sizes that differ by at most one (partition ``p`` starts at
``p * N // P``; Marius uses ``ceil(N / P)`` rows per partition and a short last one).

Examples
--------
>>> src = np.array([0, 1, 2, 3]); dst = np.array([1, 2, 3, 0])
>>> perm, node_offsets, edge_order, bucket_offsets = partition_graph(src, dst, 4, 2, "bfs")
>>> node_offsets.tolist(), int(bucket_offsets[-1])
([0, 2, 4], 4)
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from .. import indexing
from ..backends.base import TEMP_PREFIX
from ..errors import (
    CorruptStoreError,
    DataIdNotFoundError,
    InvalidArgumentError,
    UnsupportedOperationError,
)
from ..phases import PHASES
from ..ragged import RaggedArray
from .layout import (
    LAYOUTS,
    ORIG_EDGE_ID,
    ORIG_ID,
    all_edge_metas,
    read_edges,
    stored_layouts,
    write_edges,
)
from .ordering import _metis_parts, _pymetis, node_order
from .plan import PartitionPlan, remove_plan, write_plan

__all__ = ["MAX_BUCKETS", "METHODS", "partition", "partition_graph"]

logger = logging.getLogger(__name__)

#: The partitioning methods.
METHODS = ("auto", "metis", "bfs", "random")
#: Most buckets (``P * P``) a plan may have (the bucket offsets are 8 bytes each).
MAX_BUCKETS = 1 << 26
#: Uncompressed bytes of one block of rows copied at a time (when ``chunk_rows`` is None).
BLOCK_BYTES = 16 << 20


# ---------------------------------------------------------------------------------- numpy core
def _check_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InvalidArgumentError(f"{what} must be an int, got {value!r}.")
    return int(value)


def _balanced(num_nodes: int, num_parts: int) -> np.ndarray:
    return (np.arange(num_parts + 1, dtype=np.int64) * num_nodes) // num_parts


def partition_graph(src: Any, dst: Any, num_nodes: int, num_parts: int, method: str = "auto",
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Partition the nodes of a graph and order its edges in partition-pair buckets.

    Parameters
    ----------
    src, dst
        The edges (1-D int arrays of one length, endpoints in ``[0, num_nodes)``); duplicates
        and self loops are allowed.
    num_nodes
        Number of nodes (isolated ones included).
    num_parts
        ``P``, in ``[1, max(num_nodes, 1)]`` (an empty graph has one empty partition), with
        ``P * P <= MAX_BUCKETS``.
    method
        ``'auto'``, ``'metis'``, ``'bfs'`` or ``'random'`` (see the module docstring).
    seed
        Seed of ``'random'`` and ``'metis'``.

    Returns
    -------
    perm
        int64 ``(N,)``, ``perm[new] = old``: the new numbering, partition ``p`` being new ids
        ``[node_offsets[p], node_offsets[p + 1])``.
    node_offsets
        int64 ``(P + 1,)``.
    edge_order
        int64 ``(E,)``: the input edges in bucket order (source partition major, destination
        partition minor; stable inside a bucket).
    bucket_offsets
        int64 ``(P * P + 1,)``: bucket ``(i, j)`` is ``edge_order[bucket_offsets[i*P + j]:
        bucket_offsets[i*P + j + 1]]``.

    Raises
    ------
    InvalidArgumentError
        For a bad method, ``num_parts`` out of range or edges out of range.
    MissingDependencyError
        For ``method='metis'`` without pymetis.

    Examples
    --------
    >>> perm, offs, order, boffs = partition_graph([0, 2, 3], [1, 3, 0], 4, 2, "random", 1)
    >>> sorted(perm.tolist()), offs.tolist(), len(boffs)
    ([0, 1, 2, 3], [0, 2, 4], 5)
    >>> sorted(order.tolist())
    [0, 1, 2]
    """
    if method not in METHODS:
        raise InvalidArgumentError(f"method={method!r}; use one of {METHODS}.")
    num_nodes = _check_int(num_nodes, "num_nodes")
    num_parts = _check_int(num_parts, "num_parts")
    seed = _check_int(seed, "seed")
    if num_nodes < 0:
        raise InvalidArgumentError(f"num_nodes must be >= 0, got {num_nodes}.")
    if not 1 <= num_parts <= max(num_nodes, 1):
        raise InvalidArgumentError(
            f"num_parts={num_parts} is out of range: a graph of {num_nodes} nodes takes "
            f"1..{max(num_nodes, 1)} partitions.")
    if num_parts * num_parts > MAX_BUCKETS:
        raise InvalidArgumentError(
            f"num_parts={num_parts} makes {num_parts ** 2} edge buckets, more than "
            f"{MAX_BUCKETS} (MAX_BUCKETS); use fewer partitions.")
    s = np.asarray(src)
    d = np.asarray(dst)
    if s.ndim != 1 or d.shape != s.shape:
        raise InvalidArgumentError(
            f"src and dst must be 1-D arrays of one length, got shapes {s.shape}, {d.shape}.")
    if s.size and (s.dtype.kind not in "iu" or d.dtype.kind not in "iu"):
        raise InvalidArgumentError(
            f"src and dst must hold ints (node ids), got {s.dtype} and {d.dtype}.")
    s = s.astype(np.int64, copy=False)
    d = d.astype(np.int64, copy=False)
    if s.size:
        lo, hi = min(int(s.min()), int(d.min())), max(int(s.max()), int(d.max()))
        if lo < 0 or hi >= num_nodes:
            raise InvalidArgumentError(
                f"edge endpoints must be in [0, {num_nodes}), got min {lo} and max {hi}; pass "
                "the right num_nodes.")
    if method == "auto":
        method = "metis" if _pymetis() is not None else "bfs"
        logger.info("partition_graph: method='auto' uses %r%s", method,
                    "" if method == "metis" else " (pymetis is not installed)")
    if method == "random":
        perm = np.random.default_rng(seed).permutation(num_nodes).astype(np.int64)
        node_offsets = _balanced(num_nodes, num_parts)
    elif method == "bfs":
        perm = node_order(s, d, num_nodes, "bfs") if num_nodes else np.zeros(0, np.int64)
        node_offsets = _balanced(num_nodes, num_parts)
    else:
        parts = _metis_parts(s, d, num_nodes, num_parts, seed)
        bfs = node_order(s, d, num_nodes, "bfs") if num_nodes else np.zeros(0, np.int64)
        rank = np.empty(num_nodes, dtype=np.int64)
        rank[bfs] = np.arange(num_nodes, dtype=np.int64)
        perm = np.lexsort((rank, parts)).astype(np.int64)
        node_offsets = np.zeros(num_parts + 1, dtype=np.int64)
        np.cumsum(np.bincount(parts, minlength=num_parts), out=node_offsets[1:])
    inverse = np.empty(num_nodes, dtype=np.int64)
    inverse[perm] = np.arange(num_nodes, dtype=np.int64)
    part = np.searchsorted(node_offsets, np.arange(num_nodes, dtype=np.int64),
                           side="right") - 1  # partition of each new id
    bucket = part[inverse[s]] * num_parts + part[inverse[d]]
    edge_order = np.argsort(bucket, kind="stable").astype(np.int64)
    bucket_offsets = np.zeros(num_parts * num_parts + 1, dtype=np.int64)
    np.cumsum(np.bincount(bucket, minlength=num_parts * num_parts), out=bucket_offsets[1:])
    return perm, node_offsets, edge_order, bucket_offsets


# ---------------------------------------------------------------------------------- the store
def _sizes(storegate: Any, data_id: str) -> list[int]:
    """Rows per phase (train, valid, test) of a data_id, checked consistent."""
    return list(storegate._compiled(data_id).total_events)


def _vars(storegate: Any, data_id: str, sizes: list[int], what: str) -> list[str]:
    """The vars of a data_id, each present in every phase that has rows (in var order)."""
    db = storegate.db
    used = [p for p, n in zip(PHASES, sizes, strict=True) if n]
    names = list(dict.fromkeys(v for p in PHASES for v in db.var_names(data_id, p)))
    for v in names:
        missing = [p for p in used if not db.has_var(data_id, p, v)]
        if missing:
            raise InvalidArgumentError(
                f"{what} var {v!r} of data_id {data_id!r} is missing in phase(s) {missing}, "
                "which hold rows; partitioning concatenates the phases (train, valid, test), so "
                "every var needs every row. Add the var there or delete it first.")
    return names


def _gather(db: Any, data_id: str, var: str, sizes: list[int], rows: np.ndarray) -> Any:
    """Global rows (over train, valid, test) of a var, in the order given."""
    pieces = indexing.split_over(rows, sizes)
    if len(pieces) == 1 and pieces[0][2] is None:
        part, local, _ = pieces[0]
        return db.read(data_id, PHASES[part], var, local)
    got, where = [], []
    for part, local, pos in pieces:
        got.append(db.read(data_id, PHASES[part], var, local))
        if isinstance(pos, slice):
            pos = np.arange(pos.start, pos.stop, dtype=np.int64)
        where.append(np.asarray(pos, dtype=np.int64))
    order = np.argsort(np.concatenate(where), kind="stable")
    if isinstance(got[0], RaggedArray):
        return RaggedArray.concatenate(got).take(order)
    return np.concatenate(got)[order]


def _copy_rows(src_sg: Any, data_id: str, var: str, sizes: list[int], rows: np.ndarray,
               dst_db: Any, dst_id: str, dst_var: str, chunk_rows: int | None) -> None:
    """Write ``var``'s global rows ``rows`` (in that order) to ``dst_var`` of ``dst_id``
    (phase train), block by block."""
    db = src_sg.db
    phase = next(p for p, n in zip(PHASES, sizes, strict=True) if n) if sum(sizes) else "train"
    info = db.info(data_id, phase, var)
    if dst_db.has_var(dst_id, "train", dst_var):
        dst_db.delete(dst_id, "train", dst_var)
    if rows.size == 0:
        if info.ragged:
            dst_db.append(dst_id, "train", dst_var, RaggedArray(
                np.zeros((0, *info.row_shape), dtype=info.dtype), np.zeros(1, dtype=np.int64),
                validate=False))
        else:
            dst_db.create(dst_id, "train", dst_var, (0, *info.row_shape), info.dtype)
        return
    step = chunk_rows
    if step is None:
        if info.ragged:  # the mean row (values plus offset)
            row_bytes = info.nbytes // max(1, info.length)
        else:
            row_bytes = int(np.prod(info.row_shape, dtype=np.int64)) * info.dtype.itemsize
        step = max(1, BLOCK_BYTES // max(1, row_bytes))
    for start in range(0, rows.shape[0], step):
        block = _gather(db, data_id, var, sizes, rows[start:start + step])
        dst_db.append(dst_id, "train", dst_var, block)


def _check_store(storegate: Any, node_id: str, edge_id: str) -> None:
    metas = all_edge_metas(storegate)
    hetero = sorted({str(m.get("edge_type")) for m in metas.values()
                     if m.get("edge_type") is not None})
    if hetero:
        raise UnsupportedOperationError(
            f"the store holds a heterogeneous graph (edge types {hetero}); partitioning "
            "supports one node type and the homogeneous edge type None only (store the graph "
            "with storegate.pyg.from_data(Data(...), sg)).")
    if not stored_layouts(storegate, edge_id):
        stems = sorted({d.rsplit(".", 1)[0] for d in metas})
        raise DataIdNotFoundError(
            f"no graph to partition: the store has no edge index of edge_id {edge_id!r} "
            f"(layouts {LAYOUTS}){f'; edge stems found: {stems}' if stems else ''}. Store the "
            "graph first, e.g. storegate.pyg.from_data(data, sg), or pass edge_id=.")


def partition(storegate: Any, num_parts: int, *, method: str = "auto", seed: int = 0,
              node_id: str = "nodes", edge_id: str = "edges", out: Any = None,
              chunk_rows: int | None = None) -> PartitionPlan:
    """Renumber a graph store into ``num_parts`` contiguous node partitions with its edges in
    partition-pair buckets, and record the :class:`~storegate.graph.plan.PartitionPlan`.

    Reads the homogeneous graph stored in the PyG layout (any stored layout of edge type
    ``None``: COO, CSC or CSR; numpy only, no torch) and writes:

    * every var of ``node_id`` permuted so that partition ``p`` is a contiguous row range,
      all rows (phases train, valid, test concatenated) in phase ``'train'``; the var
      ``orig_id`` holds each row's row before partitioning, composed with an existing
      ``orig_id`` (so it keeps pointing at the graph given to ``from_data(renumber=...)``);
    * the edges as COO in bucket order in ``<edge_id>.coo`` (vars ``row``, ``col``, no
      ``perm``), with its GraphStore metadata; a CSC/CSR of the edge type that was stored is
      rewritten from the new COO (its ``perm`` pointing at the COO rows), never left stale;
    * every var of ``edge_id`` permuted into bucket order (row ``k`` belongs to COO edge
      ``k``), plus ``orig_edge_id``: the edge-var row (original edge id) each edge had
      before, composed with an existing ``orig_edge_id``;
    * the plan, last (see :mod:`storegate.graph.plan`).

    Parameters
    ----------
    storegate
        The :class:`~storegate.StoreGate` holding the graph.
    num_parts
        ``P``, in ``[1, number of nodes]``.
    method, seed
        See :func:`partition_graph`.
    node_id, edge_id
        The data_id of the node vars and the edge stem (the FeatureStore/GraphStore options).
    out
        ``None``: rewrite ``storegate`` in place (new vars are written under temporary names
        and swapped in within one transaction: on a local zarr store a crash leaves the old
        graph or the new one). Another StoreGate: write a partitioned copy there (its
        data_ids for this graph must not exist) and leave the source untouched.
    chunk_rows
        Rows copied per block (default: about 16 MiB per block).

    Returns
    -------
    PartitionPlan

    Raises
    ------
    DataIdNotFoundError
        When the store holds no graph under ``edge_id``.
    UnsupportedOperationError
        For a heterogeneous graph.
    ReadOnlyError
        For an in-place partition of a store opened read-only.
    InvalidArgumentError
        For bad arguments, node vars missing in a phase with rows, or an ``out`` that holds
        the graph's data_ids.
    CorruptStoreError
        When the edge vars do not have one row per edge.

    Notes
    -----
    Memory: the edges are held as int64 arrays (about 48 bytes per edge with the orders), the
    node permutation as int64 (16 bytes per node); node and edge vars are copied in blocks of
    ``chunk_rows`` rows. The train/valid/test split of the node rows is not kept (all rows go
    to ``'train'``); keep a split as mask vars. Other data_ids of the store are not touched
    (nor copied to ``out``).

    Examples
    --------
    >>> from storegate import StoreGate
    >>> from storegate.graph.layout import write_edges
    >>> sg = StoreGate("numpy", data_id="nodes")
    >>> sg.add_data("x", np.arange(6.0).reshape(6, 1), phase="train")
    >>> write_edges(sg, "edges", "coo", np.array([0, 1, 2, 3, 4]), np.array([1, 2, 3, 4, 5]),
    ...             (6, 6))
    >>> plan = partition(sg, 3, method="bfs")
    >>> plan.node_offsets.tolist(), plan.bucket_sizes().sum().item()
    ([0, 2, 4, 6], 5)
    >>> orig = sg.db.read("nodes", "train", "orig_id", slice(0, 6, 1))
    >>> x = sg.db.read("nodes", "train", "x", slice(0, 6, 1))[:, 0]
    >>> bool((x == orig).all())
    True
    """
    from ..gate import StoreGate

    if not isinstance(storegate, StoreGate):
        raise InvalidArgumentError(
            f"storegate must be a StoreGate, got {type(storegate).__name__}.")
    if out is not None and not isinstance(out, StoreGate):
        raise InvalidArgumentError(
            f"out must be None (in place) or a StoreGate, got {type(out).__name__}.")
    if out is storegate or (out is not None and out.db is storegate.db):
        raise InvalidArgumentError(
            "out is the source store; pass out=None to partition in place.")
    if chunk_rows is not None and (_check_int(chunk_rows, "chunk_rows") < 1):
        raise InvalidArgumentError(f"chunk_rows must be >= 1, got {chunk_rows}.")
    if method not in METHODS:
        raise InvalidArgumentError(f"method={method!r}; use one of {METHODS}.")
    for name, value in (("node_id", node_id), ("edge_id", edge_id)):
        if not isinstance(value, str):
            raise InvalidArgumentError(f"{name} must be a str data_id, got {value!r}.")
    if node_id == edge_id:
        raise InvalidArgumentError(f"node_id and edge_id are both {node_id!r}.")
    db = storegate.db
    target = storegate if out is None else out
    target.db._check_writable()
    _check_store(storegate, node_id, edge_id)
    layouts = stored_layouts(storegate, edge_id)
    edges = read_edges(storegate, edge_id)

    # ---- nodes
    has_nodes = node_id in db.data_ids()
    node_sizes = _sizes(storegate, node_id) if has_nodes else [0, 0, 0]
    node_rows = sum(node_sizes)
    size_nodes = max(edges.size)
    if edges.size[0] != edges.size[1]:
        raise CorruptStoreError(
            f"the edge index of {edge_id!r} has size {edges.size}; a homogeneous graph has "
            "one node set (num_src == num_dst).")
    if has_nodes and node_rows and node_rows < size_nodes:
        raise CorruptStoreError(
            f"data_id {node_id!r} has {node_rows} node rows but the edges of {edge_id!r} "
            f"span {size_nodes} nodes; store a row for every node before partitioning.")
    num_nodes = node_rows if node_rows else size_nodes
    node_vars = _vars(storegate, node_id, node_sizes, "node") if has_nodes else []

    # ---- edge vars
    has_evars = edge_id in db.data_ids()
    edge_sizes = _sizes(storegate, edge_id) if has_evars else [0, 0, 0]
    edge_vars = _vars(storegate, edge_id, edge_sizes, "edge") if has_evars else []
    n_edge_rows = sum(edge_sizes)
    if edge_vars and n_edge_rows != edges.num_edges:
        raise CorruptStoreError(
            f"data_id {edge_id!r} has {n_edge_rows} edge rows but the graph has "
            f"{edges.num_edges} edges; every edge var needs one row per edge.")
    if edges.num_edges and edge_vars and int(edges.edge_rows.max()) >= n_edge_rows:
        raise CorruptStoreError(
            f"the perm of {edge_id}.{edges.layout} points at edge row "
            f"{int(edges.edge_rows.max())}, but {edge_id!r} has {n_edge_rows} rows.")

    num_parts = _check_int(num_parts, "num_parts")
    if num_nodes == 0 and num_parts != 1:
        raise InvalidArgumentError(
            f"num_parts={num_parts}, but the graph has no nodes; use num_parts=1.")
    perm, node_offsets, edge_order, bucket_offsets = partition_graph(
        edges.src, edges.dst, num_nodes, num_parts, method, seed)
    used = method
    if method == "auto":
        used = "metis" if _pymetis() is not None else "bfs"
    inverse = np.empty(num_nodes, dtype=np.int64)
    inverse[perm] = np.arange(num_nodes, dtype=np.int64)
    new_src = inverse[edges.src[edge_order]]
    new_dst = inverse[edges.dst[edge_order]]
    edge_rows = edges.edge_rows[edge_order]
    plan = PartitionPlan(num_parts, node_offsets, bucket_offsets, node_id=node_id,
                         edge_id=edge_id, phase="train", method=used, seed=seed)

    if out is None:
        _write_in_place(storegate, plan, perm, node_sizes, node_vars, edge_sizes, edge_vars,
                        edge_rows, new_src, new_dst, layouts, chunk_rows, has_nodes, has_evars)
    else:
        _write_copy(storegate, out, plan, perm, node_sizes, node_vars, edge_sizes, edge_vars,
                    edge_rows, new_src, new_dst, layouts, chunk_rows)
    logger.info("partitioned %s nodes, %s edges into %s parts (method %s)", num_nodes,
                edges.num_edges, num_parts, used)
    return plan


def _write_vars(src_sg: Any, data_id: str, sizes: list[int], names: list[str],
                rows: np.ndarray, dst_db: Any, dst_id: str, prefix: str,
                chunk_rows: int | None, extra: tuple[str, np.ndarray]) -> list[str]:
    """Copy ``names`` (global rows ``rows``) to ``prefix + name`` in phase train of
    ``dst_id``; add the var ``extra`` unless it is among the names (then it is permuted like
    the others, which composes it). Returns the names written (without prefix)."""
    written = []
    for v in names:
        _copy_rows(src_sg, data_id, v, sizes, rows, dst_db, dst_id, prefix + v, chunk_rows)
        written.append(v)
    name, values = extra
    if name not in names:
        tmp = prefix + name
        if dst_db.has_var(dst_id, "train", tmp):
            dst_db.delete(dst_id, "train", tmp)
        if values.size:
            dst_db.append(dst_id, "train", tmp, values)
        else:
            dst_db.create(dst_id, "train", tmp, (0,), np.dtype(np.int64))
        written.append(name)
    return written


def _rewrite_layouts(target: Any, edge_id: str, layouts: dict[str, Any], new_src: np.ndarray,
                     new_dst: np.ndarray, num_nodes: int) -> None:
    size = (num_nodes, num_nodes)
    write_edges(target, edge_id, "coo", new_src, new_dst, size)
    for layout in ("csc", "csr"):
        if layout in layouts:  # rebuilt from the new COO; perm = COO row = edge-var row
            write_edges(target, edge_id, layout, new_src, new_dst, size)


def _write_in_place(sg: Any, plan: PartitionPlan, perm: np.ndarray, node_sizes: list[int],
                    node_vars: list[str], edge_sizes: list[int], edge_vars: list[str],
                    edge_rows: np.ndarray, new_src: np.ndarray, new_dst: np.ndarray,
                    layouts: dict[str, Any], chunk_rows: int | None, has_nodes: bool,
                    has_evars: bool) -> None:
    db = sg.db
    node_id, edge_id = plan.node_id, plan.edge_id
    # 1. the new vars under temporary names (a killed run leaves only temporaries, which the
    #    next open for writing removes)
    if not has_nodes:
        db.create_data_id(node_id)
    if not has_evars:
        db.create_data_id(edge_id)
    new_nodes = _write_vars(sg, node_id, node_sizes, node_vars, perm, db, node_id, TEMP_PREFIX,
                            chunk_rows, (ORIG_ID, perm))
    new_edges = _write_vars(sg, edge_id, edge_sizes, edge_vars, edge_rows, db, edge_id,
                            TEMP_PREFIX, chunk_rows, (ORIG_EDGE_ID, edge_rows))
    db.flush()  # commits the temporaries: a failure below rolls back to exactly this state
    # 2. one transaction swaps everything in: the old graph or the new one survives a crash
    with db.transaction():
        remove_plan(sg, node_id, edge_id)  # first: a half-done swap is never "partitioned"
        for data_id, names in ((node_id, new_nodes), (edge_id, new_edges)):
            sg._invalidate(data_id)
            db.rename_many(data_id, "train", [(TEMP_PREFIX + v, v) for v in names])
            for p in PHASES[1:]:  # the rows of every phase are in train now
                for v in db.var_names(data_id, p):
                    db.delete(data_id, p, v)
            sg._compile(data_id, reset=False)
        _rewrite_layouts(sg, edge_id, layouts, new_src, new_dst, plan.num_nodes)
        write_plan(sg, plan)
    db.flush()


def _write_copy(src: Any, out: Any, plan: PartitionPlan, perm: np.ndarray,
                node_sizes: list[int], node_vars: list[str], edge_sizes: list[int],
                edge_vars: list[str], edge_rows: np.ndarray, new_src: np.ndarray,
                new_dst: np.ndarray, layouts: dict[str, Any], chunk_rows: int | None) -> None:
    db = out.db
    node_id, edge_id = plan.node_id, plan.edge_id
    mine = [node_id, edge_id, f"{edge_id}.coo", f"{edge_id}.coo.ptr"] + [
        f"{edge_id}.{lay}{s}" for lay in layouts for s in ("", ".ptr")]
    clash = sorted(set(mine) & set(db.data_ids()))
    if clash:
        raise InvalidArgumentError(
            f"out already holds the data_id(s) {clash}; partition into a store without them "
            "(or delete them first).")
    for data_id, sizes, names, rows, extra in (
            (node_id, node_sizes, node_vars, perm, (ORIG_ID, perm)),
            (edge_id, edge_sizes, edge_vars, edge_rows, (ORIG_EDGE_ID, edge_rows))):
        db.create_data_id(data_id)
        _write_vars(src, data_id, sizes, names, rows, db, data_id, "", chunk_rows, extra)
        out._compile(data_id, reset=False)
    with db.transaction():
        _rewrite_layouts(out, edge_id, layouts, new_src, new_dst, plan.num_nodes)
        write_plan(out, plan)
    db.flush()
