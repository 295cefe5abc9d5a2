"""Node orders that keep neighbours close: renumbering a graph for locality.

A sampled mini-batch reads the features of a few thousand nodes and their neighbours. When
neighbours have nearby numbers, those rows share storage chunks (and pages of a decoded arena),
so a batch touches few chunks. :func:`node_order` computes such a numbering with numpy only:

* ``'bfs'`` — breadth-first search from the highest-degree node of each component (a
  Cuthill-McKee-like order without the degree sort inside a level), vectorised per level;
* ``'degree'`` — by decreasing degree (hubs first; cheap, helps skewed graphs);
* ``'metis'`` — parts from METIS (``pip install pymetis``), each part's nodes contiguous and
  in BFS order inside.

Every function returns ``perm``: ``perm[new] = old``. Use :func:`relabel` to apply it to an
edge index and rows.

Examples
--------
>>> import numpy as np
>>> src = np.array([0, 1, 2, 3, 4, 5]); dst = np.array([5, 4, 3, 2, 1, 0])
>>> perm = node_order(src, dst, 6, method="bfs")
>>> sorted(perm.tolist()) == list(range(6))
True
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

import numpy as np

from ..errors import CorruptStoreError, InvalidArgumentError, MissingDependencyError

__all__ = ["METHODS", "csr_undirected", "node_order", "relabel"]

logger = logging.getLogger(__name__)

METHODS = ("bfs", "degree", "metis")


def csr_undirected(src: np.ndarray, dst: np.ndarray,
                   num_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """``(rowptr, col)`` of the graph with every edge in both directions (self-loops kept
    once; duplicates are harmless for ordering).

    >>> rowptr, col = csr_undirected(np.array([0]), np.array([1]), 3)
    >>> rowptr.tolist(), col.tolist()
    ([0, 1, 2, 2], [1, 0])
    """
    src = np.asarray(src, dtype=np.int64)
    dst = np.asarray(dst, dtype=np.int64)
    if src.shape != dst.shape or src.ndim != 1:
        raise InvalidArgumentError("src and dst must be 1-D arrays of the same length.")
    if src.size and (min(src.min(), dst.min()) < 0 or max(src.max(), dst.max()) >= num_nodes):
        raise InvalidArgumentError(f"edge endpoints must be in [0, {num_nodes}).")
    loop = src == dst
    a = np.concatenate([src, dst[~loop]])
    b = np.concatenate([dst, src[~loop]])
    order = np.argsort(a, kind="stable")
    col = b[order]
    counts = np.bincount(a, minlength=num_nodes)
    rowptr = np.zeros(num_nodes + 1, dtype=np.int64)
    np.cumsum(counts, out=rowptr[1:])
    return rowptr, col


def _neighbours(rowptr: np.ndarray, col: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    """All neighbours of ``nodes`` (concatenated, in node order), vectorised."""
    starts = rowptr[nodes]
    lengths = rowptr[nodes + 1] - starts
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    return col[np.arange(total, dtype=np.int64) + offsets]


def _bfs(rowptr: np.ndarray, col: np.ndarray, num_nodes: int,
         seeds: np.ndarray | None = None) -> np.ndarray:
    degree = np.diff(rowptr)
    visited = np.zeros(num_nodes, dtype=bool)
    out = np.empty(num_nodes, dtype=np.int64)
    pos = 0
    # restart points: highest degree first (one per component reached)
    candidates = np.argsort(-degree, kind="stable") if seeds is None else seeds
    ci = 0
    while pos < num_nodes:
        while ci < candidates.size and visited[candidates[ci]]:
            ci += 1
        if ci >= candidates.size:  # nodes outside the seeds (metis parts): append the rest
            rest = np.flatnonzero(~visited)
            out[pos:pos + rest.size] = rest
            break
        frontier = np.array([candidates[ci]], dtype=np.int64)
        visited[frontier] = True
        while frontier.size:
            out[pos:pos + frontier.size] = frontier
            pos += frontier.size
            nb = _neighbours(rowptr, col, frontier)
            nb = nb[~visited[nb]]
            if nb.size == 0:
                break
            _, first = np.unique(nb, return_index=True)
            frontier = nb[np.sort(first)]  # order of first discovery
            visited[frontier] = True
    return out


def node_order(src: np.ndarray, dst: np.ndarray, num_nodes: int, method: str = "bfs",
               num_parts: int | None = None, seed: int = 0) -> np.ndarray:
    """A locality-preserving numbering of the nodes: ``perm[new] = old``.

    Parameters
    ----------
    src, dst
        The edges (either direction; the order treats the graph as undirected).
    num_nodes
        Number of nodes (isolated nodes included; they go last in BFS order).
    method
        ``'bfs'``, ``'degree'`` or ``'metis'`` (see the module docstring).
    num_parts
        Parts for ``'metis'`` (default: about one per 4,096 nodes).
    seed
        Seed of METIS.

    Examples
    --------
    >>> node_order(np.array([0, 0, 0]), np.array([1, 2, 3]), 5, "degree").tolist()
    [0, 1, 2, 3, 4]
    """
    if method not in METHODS:
        raise InvalidArgumentError(f"method={method!r}; use one of {METHODS}.")
    rowptr, col = csr_undirected(src, dst, num_nodes)
    if method == "degree":
        return np.argsort(-np.diff(rowptr), kind="stable").astype(np.int64)
    if method == "bfs":
        return _bfs(rowptr, col, num_nodes)
    parts = num_parts or max(2, num_nodes // 4096)
    membership = _metis_parts(np.asarray(src, dtype=np.int64), np.asarray(dst, dtype=np.int64),
                              num_nodes, parts, seed)
    # parts contiguous; inside a part, BFS order restricted to the part's nodes
    bfs = _bfs(rowptr, col, num_nodes)
    rank = np.empty(num_nodes, dtype=np.int64)
    rank[bfs] = np.arange(num_nodes)
    return np.lexsort((rank, membership)).astype(np.int64)


def _pymetis() -> Any:
    try:
        return importlib.import_module("pymetis")
    except ImportError:
        return None


def _metis_parts(src: np.ndarray, dst: np.ndarray, num_nodes: int, num_parts: int,
                 seed: int) -> np.ndarray:
    """METIS membership of every node (simple undirected graph: no loops, no duplicates)."""
    pymetis = _pymetis()
    if pymetis is None:
        raise MissingDependencyError(
            "method='metis' needs pymetis; install it with `pip install pymetis`, or use "
            "method='bfs' (or 'auto', which falls back to 'bfs').")
    if num_parts == 1:
        return np.zeros(num_nodes, dtype=np.int64)
    keep = src != dst
    a, b = src[keep], dst[keep]
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    pairs = np.unique(lo * np.int64(num_nodes) + hi) if lo.size else lo
    rowptr, col = csr_undirected(pairs // max(num_nodes, 1), pairs % max(num_nodes, 1),
                                 num_nodes)
    opts = pymetis.Options(seed=seed) if hasattr(pymetis, "Options") else None
    kwargs = {"options": opts} if opts is not None else {}
    _, membership = pymetis.part_graph(num_parts, xadj=rowptr, adjncy=col, **kwargs)
    parts = np.asarray(membership, dtype=np.int64)
    if parts.shape != (num_nodes,) or (parts.size and (
            int(parts.min()) < 0 or int(parts.max()) >= num_parts)):
        raise CorruptStoreError(
            f"pymetis returned an invalid membership (shape {parts.shape}, values outside "
            f"0..{num_parts - 1}); check the pymetis installation.")
    return parts


def relabel(perm: np.ndarray, edge_index: np.ndarray) -> np.ndarray:
    """``edge_index`` (``(2, E)`` old ids) in the numbering ``perm`` (``perm[new] = old``).

    >>> relabel(np.array([2, 0, 1]), np.array([[2], [0]])).tolist()
    [[0], [1]]
    """
    inverse = np.empty_like(perm)
    inverse[perm] = np.arange(perm.size, dtype=perm.dtype)
    return inverse[np.asarray(edge_index)]
