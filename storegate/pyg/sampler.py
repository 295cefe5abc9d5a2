"""A pure-PyTorch neighbour sampler for PyG's loaders (no pyg-lib, no torch-sparse).

:class:`StoreGateNeighborSampler` is a :class:`torch_geometric.sampler.BaseSampler` with the
constructor of PyG's ``NeighborSampler``. It samples from the CSC topology of

* an in-memory :class:`~torch_geometric.data.Data` / :class:`~torch_geometric.data.HeteroData`
  (the edge index is sorted by destination once, with torch), or
* any ``(FeatureStore, GraphStore)`` pair, through ``graph_store.csc()`` as PyG's sampler does
  (a store that serves CSC — storegate's does — costs no sort and, memory-mapped, no copy).

Supported: homogeneous and heterogeneous graphs; ``num_neighbors`` as a list or a dict per edge
type (``-1``: all neighbours, ``0``: none); ``replace``; ``subgraph_type`` ``'directional'``,
``'bidirectional'`` and ``'induced'``; ``disjoint``; link sampling with binary or triplet
negative sampling (``sample_from_edges``). Not supported: temporal sampling (``time_attr``,
seed times) and weighted sampling (``weight_attr``) — PyG's own sampler with pyg-lib does those.

Everything is vectorised over the nodes of a hop: a batch costs a Python loop over hops and edge
types only. Sampling ``k`` of ``deg`` neighbours without replacement takes all of them when
``deg <= k``, keeps the ``k`` smallest of ``deg`` random keys when ``deg`` is at most a few times
``k``, and otherwise draws ``k`` random offsets and redraws only the duplicates (rare when
``deg`` is large) — so the cost follows the number of sampled edges, not the degrees of hubs.
Global ids are mapped to batch-local ids through a scratch array per node type (reset after
each batch), not through sorting.

Examples
--------
>>> import torch
>>> from torch_geometric.data import Data
>>> from torch_geometric.sampler import NodeSamplerInput
>>> edge_index = torch.tensor([[1, 2, 3, 0, 0], [0, 0, 0, 1, 2]])
>>> data = Data(edge_index=edge_index, num_nodes=4)
>>> sampler = StoreGateNeighborSampler(data, num_neighbors=[2, -1])
>>> _ = torch.manual_seed(0)
>>> out = sampler.sample_from_nodes(NodeSamplerInput(input_id=None, node=torch.tensor([0])))
>>> out.node[0].item(), out.num_sampled_nodes[0], out.num_sampled_edges[0]
(0, 1, 2)
>>> bool((out.col[:2] == 0).all())  # the two in-edges sampled for the seed
True
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import Data, FeatureStore, GraphStore, HeteroData, remote_backend_utils
from torch_geometric.sampler import (
    BaseSampler,
    EdgeSamplerInput,
    HeteroSamplerOutput,
    NegativeSampling,
    NodeSamplerInput,
    NumNeighbors,
    SamplerOutput,
)
from torch_geometric.sampler.base import DataType, SubgraphType
from torch_geometric.sampler.neighbor_sampler import edge_sample, node_sample
from torch_geometric.sampler.utils import to_csc, to_hetero_csc

from ..errors import InvalidArgumentError, UnsupportedOperationError

__all__ = ["StoreGateNeighborSampler", "sample_neighbors"]

logger = logging.getLogger(__name__)

#: Between ``k`` and ``_KEYS_FACTOR * k`` neighbours, sample by random keys (cost ``deg``);
#: above, by random offsets with rejection of duplicates (cost about ``k``).
_KEYS_FACTOR = 3
#: Rounds of redrawing duplicates before the remaining rows fall back to random keys.
_MAX_REDRAWS = 32

_LONG = torch.int64
_EMPTY = torch.empty(0, dtype=_LONG)


def _rand_offsets(deg: Tensor, k: int) -> Tensor:
    """``[n, k]`` uniform offsets in ``[0, deg)`` per row (``deg >= 1``), drawn in float64."""
    off = (torch.rand(deg.numel(), k, dtype=torch.float64) * deg.unsqueeze(1)).to(_LONG)
    return torch.minimum(off, (deg - 1).unsqueeze(1))  # float rounding can reach ``deg``


def _keys_offsets(deg: Tensor, k: int) -> Tensor:
    """``[n, k]`` distinct offsets in ``[0, deg)`` per row (``deg > k``): the ``k`` smallest
    of ``deg`` uniform random keys. Cost: ``n * max(deg)``."""
    width = int(deg.max())
    keys = torch.rand(deg.numel(), width)
    keys.masked_fill_(torch.arange(width).unsqueeze(0) >= deg.unsqueeze(1), 2.0)
    return keys.topk(k, dim=1, largest=False, sorted=False).indices


def _distinct_offsets(deg: Tensor, k: int) -> Tensor:
    """``[n, k]`` distinct uniform offsets in ``[0, deg)`` per row (``deg > k``, best for
    ``deg >> k``): draw with replacement, then redraw the duplicates until none is left.

    The result is a uniform ``k``-subset: the procedure only tests values for equality, so it
    is invariant under any relabelling of ``[0, deg)``.
    """
    off = _rand_offsets(deg, k)
    active = torch.arange(deg.numel())
    for _ in range(_MAX_REDRAWS):
        sub = off[active].sort(dim=1).values
        dup = torch.zeros_like(sub, dtype=torch.bool)
        dup[:, 1:] = sub[:, 1:] == sub[:, :-1]
        rows = dup.any(dim=1)
        off[active] = sub
        if not bool(rows.any()):
            return off
        active, sub, dup = active[rows], sub[rows], dup[rows]
        d = deg[active].unsqueeze(1).expand_as(sub)[dup]
        sub[dup] = torch.minimum((torch.rand(d.numel(), dtype=torch.float64) * d).to(_LONG),
                                 d - 1)
        off[active] = sub
    # Practically unreachable (needs deg close to k): finish the stubborn rows exactly.
    sub = off[active].sort(dim=1).values
    dup = torch.zeros_like(sub, dtype=torch.bool)
    dup[:, 1:] = sub[:, 1:] == sub[:, :-1]
    rows = dup.any(dim=1)
    if bool(rows.any()):
        idx = active[rows]
        off[idx] = _keys_offsets(deg[idx], k)
    return off


def _ranges(start: Tensor, count: Tensor, total: int | None = None) -> tuple[Tensor, Tensor]:
    """Concatenated ``arange(start[i], start[i] + count[i])``, and the row of each element."""
    n = count.numel()
    if total is None:
        total = int(count.sum())
    seg = torch.repeat_interleave(torch.arange(n), count, output_size=total)
    first = torch.cumsum(count, 0) - count
    return torch.arange(total) + (start - first)[seg], seg


def sample_neighbors(colptr: Tensor, nodes: Tensor, k: int,
                     replace: bool = False) -> tuple[Tensor, Tensor]:
    """Sample up to ``k`` in-edges of each of ``nodes`` from a CSC ``colptr``.

    Parameters
    ----------
    colptr : Tensor
        CSC pointer of the graph (``num_dst + 1`` entries, int32 or int64).
    nodes : Tensor
        int64 destination node ids (duplicates allowed; each occurrence is sampled).
    k : int
        Neighbours per node; ``-1`` takes all of them, ``0`` none.
    replace : bool
        Sample with replacement (``k`` edges for every node with at least one in-edge).

    Returns
    -------
    pos : Tensor
        int64 positions into the CSC ``row`` array (so ``row[pos]`` are the neighbours),
        grouped by node in the order of ``nodes``.
    count : Tensor
        int64 number of sampled edges of each node (``min(k, deg)`` without replacement).

    Examples
    --------
    >>> colptr = torch.tensor([0, 3, 3, 8])
    >>> pos, count = sample_neighbors(colptr, torch.tensor([0, 1, 2]), 2)
    >>> count.tolist()
    [2, 0, 2]
    >>> bool(((pos[:2] >= 0) & (pos[:2] < 3)).all() and ((pos[2:] >= 3) & (pos[2:] < 8)).all())
    True
    >>> sample_neighbors(colptr, torch.tensor([2, 0]), -1)[0].tolist()
    [3, 4, 5, 6, 7, 0, 1, 2]
    """
    nodes = nodes.to(_LONG)
    start = colptr[nodes].to(_LONG)
    deg = colptr[nodes + 1].to(_LONG) - start
    n = nodes.numel()
    if k < 0:
        return _ranges(start, deg)[0], deg
    if k == 0 or n == 0:
        return _EMPTY, torch.zeros(n, dtype=_LONG)
    if replace:
        has = deg > 0
        count = has.to(_LONG) * k
        if not bool(has.all()):
            start, deg = start[has], deg[has]
        pos = (start.unsqueeze(1) + _rand_offsets(deg, k)).view(-1)
        return pos, count
    count = deg.clamp(max=k)
    small = deg <= k
    if bool(small.all()):
        return _ranges(start, count)[0], count
    total = int(count.sum())
    out = torch.empty(total, dtype=_LONG)
    slot = torch.cumsum(count, 0) - count  # first output slot of each node
    idx = small.nonzero().view(-1)
    if idx.numel():
        local, seg = _ranges(torch.zeros_like(idx), count[idx])
        out[slot[idx][seg] + local] = start[idx][seg] + local
    cols = torch.arange(k).unsqueeze(0)
    mid = ~small & (deg <= _KEYS_FACTOR * k)
    for mask, pick in ((mid, _keys_offsets), (deg > _KEYS_FACTOR * k, _distinct_offsets)):
        idx = mask.nonzero().view(-1)
        if idx.numel():
            off = pick(deg[idx], k)
            out[(slot[idx].unsqueeze(1) + cols).view(-1)] = (start[idx].unsqueeze(1)
                                                             + off).view(-1)
    return out, count


class _NodeSet:
    """The nodes of one type sampled for one batch: global ids in sampling order, the seed of
    each (``disjoint``), and the map from node (or ``(seed, node)`` pair) to batch-local id.

    With a ``scratch`` array (int32 over all nodes of the type, ``-1`` except at the nodes of
    this batch; :meth:`release` puts the ``-1`` back) a lookup is one gather. Without one
    (``disjoint``, or types too large for a scratch array) the keys ``seed * num_nodes + node``
    (``node`` alone when not disjoint) are kept sorted and looked up with ``searchsorted``.
    """

    def __init__(self, num_nodes: int, scratch: Tensor | None, disjoint: bool) -> None:
        self.num_nodes = num_nodes
        self.scratch = scratch
        self.disjoint = disjoint
        self.nodes: list[Tensor] = []
        self.batch: list[Tensor] = []
        self.count = 0
        self.keys = _EMPTY  # sorted mode: sorted keys and their local ids
        self.key_local = _EMPTY

    def _key(self, node: Tensor, batch: Tensor | None) -> Tensor:
        return node if batch is None else batch * self.num_nodes + node

    def add_seeds(self, seed: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """Take ``seed`` (in order, duplicates kept) as local ids ``0..len(seed)-1``; returns
        the first frontier ``(global ids, local ids, seed index or None)``. A neighbour equal
        to a duplicated seed maps to its first occurrence."""
        n = seed.numel()
        local = torch.arange(n)
        self.nodes.append(seed)
        self.count = n
        batch = local if self.disjoint else None
        if batch is not None:
            self.batch.append(batch)
        if self.scratch is not None:
            self.scratch[seed] = n
            self.scratch.scatter_reduce_(0, seed, local.to(self.scratch.dtype), reduce="amin")
        else:
            self.keys, inv = torch.unique(self._key(seed, batch), return_inverse=True)
            self.key_local = torch.full((self.keys.numel(),), n, dtype=_LONG)
            self.key_local.scatter_reduce_(0, inv, local, reduce="amin")
        return seed, local, batch

    def insert(self, cand: Tensor,
               cand_batch: Tensor | None) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """Local ids of the candidate nodes, adding the unseen ones in order of first
        occurrence. Returns ``(local ids of cand, new global ids, new local ids, their seed
        index or None)``."""
        if self.scratch is not None:
            return self._insert_scratch(cand)
        return self._insert_sorted(cand, cand_batch)

    def _insert_scratch(self, cand: Tensor) -> tuple[Tensor, Tensor, Tensor, None]:
        scratch = self.scratch
        assert scratch is not None
        loc = scratch[cand].to(_LONG)
        unknown = loc < 0
        uc = cand[unknown]
        m = uc.numel()
        if m == 0:
            return loc, _EMPTY, _EMPTY, None
        ar = torch.arange(m, dtype=scratch.dtype)
        scratch[uc] = m
        scratch.scatter_reduce_(0, uc, ar, reduce="amin")
        new = uc[scratch[uc] == ar]
        new_local = torch.arange(self.count, self.count + new.numel())
        scratch[new] = new_local.to(scratch.dtype)
        loc[unknown] = scratch[uc].to(_LONG)
        self.count += new.numel()
        self.nodes.append(new)
        return loc, new, new_local, None

    def _find(self, key: Tensor) -> tuple[Tensor, Tensor]:
        """``(local ids, found)`` of ``key`` in the sorted keys (local id -1 if not found)."""
        loc = torch.full_like(key, -1)
        if self.keys.numel() == 0:
            return loc, torch.zeros_like(key, dtype=torch.bool)
        at = torch.searchsorted(self.keys, key).clamp_(max=self.keys.numel() - 1)
        hit = self.keys[at] == key
        loc[hit] = self.key_local[at[hit]]
        return loc, hit

    def _insert_sorted(self, cand: Tensor,
                       cand_batch: Tensor | None) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        key = self._key(cand, cand_batch)
        loc, hit = self._find(key)
        miss = ~hit
        mk = key[miss]
        if mk.numel() == 0:
            return loc, _EMPTY, _EMPTY, (_EMPTY if self.disjoint else None)
        uniq, inv = torch.unique(mk, return_inverse=True)
        first = torch.full((uniq.numel(),), mk.numel(), dtype=_LONG)
        first.scatter_reduce_(0, inv, torch.arange(mk.numel()), reduce="amin")
        order = first.argsort()
        rank = torch.empty_like(order)
        rank[order] = torch.arange(order.numel())
        uniq_local = rank + self.count
        loc[miss] = uniq_local[inv]
        new_key = uniq[order]
        new_batch: Tensor | None = None
        if self.disjoint:
            new, new_batch = new_key % self.num_nodes, new_key // self.num_nodes
            self.batch.append(new_batch)
        else:
            new = new_key
        new_local = torch.arange(self.count, self.count + new.numel())
        self.count += new.numel()
        self.nodes.append(new)
        self.keys, perm = torch.cat([self.keys, uniq]).sort()
        self.key_local = torch.cat([self.key_local, uniq_local])[perm]
        return loc, new, new_local, new_batch

    def lookup(self, nodes: Tensor) -> Tensor:
        """Local ids of global ``nodes``, ``-1`` where not sampled (not disjoint)."""
        if self.scratch is not None:
            return self.scratch[nodes].to(_LONG)
        return self._find(nodes)[0]

    def all_nodes(self) -> Tensor:
        if not self.nodes:
            return _EMPTY
        return torch.cat(self.nodes) if len(self.nodes) > 1 else self.nodes[0]

    def all_batch(self) -> Tensor | None:
        if not self.disjoint:
            return None
        return torch.cat(self.batch) if self.batch else _EMPTY

    def release(self) -> None:
        if self.scratch is not None:
            for part in self.nodes:
                self.scratch[part] = -1


def _ordered_unique(items: Sequence[Any]) -> list[Any]:
    return list(dict.fromkeys(items))


class StoreGateNeighborSampler(BaseSampler):
    """Neighbour sampling in pure PyTorch, a drop-in for PyG's ``NeighborSampler``.

    Parameters
    ----------
    data : Data, HeteroData or tuple of (FeatureStore, GraphStore)
        The graph. Its topology is read once, as CSC: sorted by destination from an in-memory
        ``Data``/``HeteroData``, or taken from ``graph_store.csc()`` (tensors that a store
        returns memory-mapped stay memory-mapped).
    num_neighbors : list of int, dict or NumNeighbors
        Neighbours sampled per node and hop (``-1``: all, ``0``: none); in heterogeneous graphs
        also a dict ``{edge_type: [k_hop0, k_hop1, ...]}`` (every edge type, or use
        ``NumNeighbors(values, default=...)``).
    subgraph_type : {'directional', 'bidirectional', 'induced'}
        ``'directional'`` returns the sampled edges (message flow towards the seeds);
        ``'bidirectional'`` adds their reverses; ``'induced'`` returns every edge between the
        sampled nodes.
    replace : bool
        Sample with replacement.
    disjoint : bool
        Give every seed its own subgraph (``batch`` tells which seed each node belongs to).
    temporal_strategy : str
        Accepted for compatibility; temporal sampling is not supported.
    time_attr, weight_attr : None
        Temporal and weighted sampling are not supported (they raise
        :class:`~storegate.errors.UnsupportedOperationError`).
    is_sorted : bool
        In-memory data only: the edge index is already sorted by destination.
    share_memory : bool
        In-memory data only: move the CSC tensors to shared memory (for worker processes
        started with ``spawn``).
    directed : bool
        Deprecated as in PyG: ``False`` means ``subgraph_type='induced'``.

    Notes
    -----
    Sampled nodes come in hop order, seeds first (all of them, in order, duplicates kept), then
    each hop's new nodes in order of first discovery (edge types in the order of
    ``edge_types``). Edges come hop by hop, grouped by destination in frontier order; ``edge``
    holds positions in the CSC order and :attr:`edge_permutation` maps them to the original
    edge ids (``None`` when the graph was already in CSC order).

    Each process keeps, per node type, an int32 scratch array over all nodes of the type for
    relabelling (4 bytes per node, allocated on first use); types with more than
    :attr:`scratch_max_nodes` nodes, and ``disjoint`` sampling, use sorting instead.

    Examples
    --------
    >>> import torch
    >>> from torch_geometric.data import HeteroData
    >>> from torch_geometric.sampler import NodeSamplerInput
    >>> data = HeteroData()
    >>> data['paper'].num_nodes, data['author'].num_nodes = 3, 2
    >>> data['author', 'writes', 'paper'].edge_index = torch.tensor([[0, 1, 1], [0, 0, 2]])
    >>> data['paper', 'rev_writes', 'author'].edge_index = torch.tensor([[0, 0, 2], [0, 1, 1]])
    >>> sampler = StoreGateNeighborSampler(data, num_neighbors=[-1, -1])
    >>> out = sampler.sample_from_nodes(
    ...     NodeSamplerInput(input_id=None, node=torch.tensor([0]), input_type='paper'))
    >>> out.node['paper'].tolist(), sorted(out.node['author'].tolist())
    ([0, 2], [0, 1])
    >>> out.num_sampled_nodes['author'], out.num_sampled_edges[('author', 'writes', 'paper')]
    ([0, 2, 0], [2, 0])
    """

    #: Node types with more nodes than this relabel by sorting instead of a scratch array.
    scratch_max_nodes: int = 1 << 26

    def __init__(
        self,
        data: Data | HeteroData | tuple[FeatureStore, GraphStore],
        num_neighbors: NumNeighbors | list[int] | dict[Any, list[int]],
        subgraph_type: SubgraphType | str = "directional",
        replace: bool = False,
        disjoint: bool = False,
        temporal_strategy: str = "uniform",
        time_attr: str | None = None,
        weight_attr: str | None = None,
        is_sorted: bool = False,
        share_memory: bool = False,
        directed: bool = True,
    ) -> None:
        if not directed:
            subgraph_type = SubgraphType.induced
            warnings.warn("The 'directed' argument is deprecated; use "
                          "subgraph_type='induced' instead.", DeprecationWarning, stacklevel=2)
        if time_attr is not None:
            raise UnsupportedOperationError(
                f"{type(self).__name__} does not do temporal sampling (time_attr="
                f"{time_attr!r}); install pyg-lib and use PyG's NeighborSampler for it.")
        if weight_attr is not None:
            raise UnsupportedOperationError(
                f"{type(self).__name__} does not do weighted sampling (weight_attr="
                f"{weight_attr!r}); install pyg-lib and use PyG's NeighborSampler for it.")
        self.subgraph_type = SubgraphType(subgraph_type)
        if disjoint and self.subgraph_type == SubgraphType.induced:
            raise InvalidArgumentError("disjoint sampling cannot return induced subgraphs.")
        self.replace = bool(replace)
        self.disjoint = bool(disjoint)
        self.temporal_strategy = temporal_strategy
        self.keep_orig_edges = False
        self.data_type = DataType.from_data(data)
        self.node_time = None  # for PyG's ``edge_sample``: no temporal sampling

        colptr: dict[Any, Tensor]
        row: dict[Any, Tensor]
        perm: Any
        if self.data_type == DataType.homogeneous:
            assert isinstance(data, Data)
            c, r, perm = to_csc(data, device=torch.device("cpu"), share_memory=share_memory,
                                is_sorted=is_sorted)
            colptr, row = {None: c}, {None: r}
            num_nodes: dict[Any, int] = {None: int(data.num_nodes)}
            node_types: list[Any] = [None]
            edge_types: list[Any] = [None]
        elif self.data_type == DataType.heterogeneous:
            assert isinstance(data, HeteroData)
            node_types, edge_types = (list(x) for x in data.metadata())
            num_nodes = {t: int(data[t].num_nodes or 0) for t in node_types}
            colptr, row, perm = to_hetero_csc(data, device=torch.device("cpu"),
                                              share_memory=share_memory, is_sorted=is_sorted)
        else:
            feature_store, graph_store = data
            node_types, edge_types, num_nodes, colptr, row, perm = self._remote_csc(
                feature_store, graph_store)
        self.is_hetero = edge_types != [None]
        self.node_types = node_types
        self.edge_types = edge_types
        self.perm = perm
        self._colptr = colptr
        self._row = row
        self._ends = {e: ((None, None) if e is None else (e[0], e[-1])) for e in edge_types}
        for e, (_, dst) in self._ends.items():  # a short colptr means trailing zero degrees
            c = colptr[e]
            need = num_nodes.get(dst, 0) + 1
            if c.numel() < need:
                fill = c[-1:] if c.numel() else torch.zeros(1, dtype=c.dtype)
                colptr[e] = torch.cat([c, fill.expand(need - c.numel())])
            num_nodes[dst] = max(num_nodes.get(dst, 0), c.numel() - 1)
        self._num_nodes = num_nodes
        self.num_nodes: int | dict[Any, int] = (num_nodes if self.is_hetero
                                                 else num_nodes[None])
        self.num_neighbors = num_neighbors
        self._scratch: dict[Any, Tensor] = {}
        self._lock = threading.Lock()
        logger.debug("StoreGateNeighborSampler over %s: %d node type(s), %d edge type(s)",
                     self.data_type.value, len(node_types), len(edge_types))

    @staticmethod
    def _remote_csc(feature_store: FeatureStore, graph_store: GraphStore) -> tuple[
            list[Any], list[Any], dict[Any, int], dict[Any, Tensor], dict[Any, Tensor], Any]:
        edge_attrs = graph_store.get_all_edge_attrs()
        if not edge_attrs:
            raise InvalidArgumentError("the GraphStore holds no edges.")
        edge_types = _ordered_unique([a.edge_type for a in edge_attrs])
        tensor_attrs = feature_store.get_all_tensor_attrs()
        if edge_types == [None]:
            r, c, perm = graph_store.csc()
            sizes = [a.size for a in edge_attrs if a.size is not None]
            if sizes:
                n = max(max(s) for s in sizes)
            else:
                fs_sizes = [feature_store.get_tensor_size(a) for a in tensor_attrs]
                n = max([s[0] for s in fs_sizes if s] + [c.numel() - 1])
                if r.numel():
                    n = max(n, int(r.max()) + 1)
            return [None], [None], {None: int(n)}, {None: c}, {None: r}, perm
        row, colptr, perm = graph_store.csc()
        node_types = _ordered_unique(
            [a.group_name for a in tensor_attrs if isinstance(a.group_name, str)]
            + [t for e in edge_types for t in (e[0], e[-1])])
        num_nodes: dict[Any, int] = {}
        for t in node_types:
            try:
                num_nodes[t] = int(remote_backend_utils.num_nodes(feature_store, graph_store, t))
            except ValueError:  # no size anywhere: the largest id in the topology
                n = 0
                for e in edge_types:
                    if e[-1] == t:
                        n = max(n, colptr[e].numel() - 1)
                    if e[0] == t and row[e].numel():
                        n = max(n, int(row[e].max()) + 1)
                num_nodes[t] = n
        return node_types, edge_types, num_nodes, dict(colptr), dict(row), perm

    # -- configuration ----------------------------------------------------------------------

    @property
    def num_neighbors(self) -> NumNeighbors:
        """The number of neighbours per hop (a PyG ``NumNeighbors``); assignable."""
        return self._num_neighbors

    @num_neighbors.setter
    def num_neighbors(self, value: NumNeighbors | list[int] | dict[Any, list[int]]) -> None:
        nn = value if isinstance(value, NumNeighbors) else NumNeighbors(value)
        if self.is_hetero:
            per_type = nn.get_values(self.edge_types)
            k = {e: [int(x) for x in per_type[e]] for e in self.edge_types}
        else:
            if isinstance(nn.values, dict):
                raise InvalidArgumentError(
                    "num_neighbors must be a list of ints for a homogeneous graph.")
            k = {None: [int(x) for x in nn.values]}
        hops = {len(v) for v in k.values()}
        if len(hops) > 1:
            raise InvalidArgumentError("num_neighbors must give the same number of hops for "
                                       "every edge type.")
        self._num_neighbors = nn
        self._k = k
        self._num_hops = hops.pop() if hops else 0

    @property
    def edge_permutation(self) -> Any:
        """Positions in CSC order -> original edge ids (``None``, or a dict per edge type)."""
        return self.perm

    # -- pickling (worker processes) ----------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_scratch"] = {}
        state.pop("_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # -- BaseSampler --------------------------------------------------------------------------

    def sample_from_nodes(self, index: NodeSamplerInput,
                          **kwargs: Any) -> SamplerOutput | HeteroSamplerOutput:
        """Sample the neighbourhoods of ``index.node`` (see PyG's ``BaseSampler``)."""
        if index.time is not None:
            raise UnsupportedOperationError(f"{type(self).__name__} does not do temporal "
                                            "sampling (seed times were given).")
        out = node_sample(index, self._sample)
        if self.subgraph_type == SubgraphType.bidirectional:
            out = out.to_bidirectional(keep_orig_edges=self.keep_orig_edges)
        return out

    def sample_from_edges(self, index: EdgeSamplerInput,
                          neg_sampling: NegativeSampling | None = None
                          ) -> SamplerOutput | HeteroSamplerOutput:
        """Sample the neighbourhoods of the endpoints of ``index`` plus negatives (binary or
        triplet), with PyG's conventions for ``edge_label_index``/``edge_label`` and
        ``src_index``/``dst_pos_index``/``dst_neg_index``."""
        if index.time is not None:
            raise UnsupportedOperationError(f"{type(self).__name__} does not do temporal "
                                            "sampling (edge_label_time was given).")
        out = edge_sample(index, self._sample, self.num_nodes, self.disjoint, None,
                          neg_sampling)
        if self.subgraph_type == SubgraphType.bidirectional:
            out = out.to_bidirectional(keep_orig_edges=self.keep_orig_edges)
        return out

    # -- sampling -----------------------------------------------------------------------------

    def _scratch_for(self, node_type: Any) -> Tensor | None:
        n = self._num_nodes.get(node_type, 0)
        if self.disjoint or n > self.scratch_max_nodes:
            return None
        scratch = self._scratch.get(node_type)
        if scratch is None:
            scratch = torch.full((n,), -1, dtype=torch.int32)
            self._scratch[node_type] = scratch
        return scratch

    def _sample(self, seed: Tensor | dict[Any, Tensor], seed_time: Any = None,
                **kwargs: Any) -> SamplerOutput | HeteroSamplerOutput:
        if seed_time is not None:
            raise UnsupportedOperationError(f"{type(self).__name__} does not do temporal "
                                            "sampling.")
        seed_dict = seed if isinstance(seed, dict) else {None: seed}
        unknown = set(seed_dict) - set(self.node_types)
        if unknown:
            raise InvalidArgumentError(f"unknown node type(s) {sorted(map(str, unknown))}; "
                                       f"the graph has {self.node_types}.")
        # One batch at a time per sampler object owns the scratch arrays; a concurrent call
        # (threads) gets fresh ones.
        owned = self._lock.acquire(blocking=False)
        try:
            if owned:
                sets = {t: _NodeSet(self._num_nodes[t], self._scratch_for(t), self.disjoint)
                        for t in self.node_types}
            else:
                sets = {t: _NodeSet(self._num_nodes[t], None, self.disjoint)
                        for t in self.node_types}
            try:
                return self._sample_sets(seed_dict, sets)
            finally:
                for s in sets.values():
                    s.release()
        finally:
            if owned:
                self._lock.release()

    def _sample_sets(self, seed_dict: dict[Any, Tensor],
                     sets: dict[Any, _NodeSet]) -> SamplerOutput | HeteroSamplerOutput:
        frontier: dict[Any, tuple[Tensor, Tensor, Tensor | None]] = {}
        for t, s in seed_dict.items():
            frontier[t] = sets[t].add_seeds(s.to(_LONG).view(-1))
        num_nodes_hop = {t: [sets[t].count] for t in self.node_types}
        rows: dict[Any, list[Tensor]] = {e: [] for e in self.edge_types}
        cols: dict[Any, list[Tensor]] = {e: [] for e in self.edge_types}
        edges: dict[Any, list[Tensor]] = {e: [] for e in self.edge_types}
        num_edges_hop: dict[Any, list[int]] = {e: [] for e in self.edge_types}

        for hop in range(self._num_hops):
            found: dict[Any, list[tuple[Any, Tensor, Tensor | None]]] = {}
            for e in self.edge_types:
                src, dst = self._ends[e]
                f = frontier.get(dst)
                k = self._k[e][hop]
                if f is None or f[0].numel() == 0 or k == 0:
                    num_edges_hop[e].append(0)
                    continue
                f_node, f_local, f_batch = f
                pos, count = sample_neighbors(self._colptr[e], f_node, k, self.replace)
                total = pos.numel()
                cols[e].append(torch.repeat_interleave(f_local, count, output_size=total))
                edges[e].append(pos)
                num_edges_hop[e].append(total)
                nbr_batch = (None if f_batch is None else
                             torch.repeat_interleave(f_batch, count, output_size=total))
                found.setdefault(src, []).append((e, self._row[e][pos].to(_LONG), nbr_batch))
            frontier = {}
            for t, parts in found.items():
                cand = torch.cat([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
                cand_batch = None
                if self.disjoint:
                    cand_batch = torch.cat([p[2] for p in parts])  # type: ignore[misc]
                loc, new, new_local, new_batch = sets[t].insert(cand, cand_batch)
                for (e, _, _), part in zip(parts, loc.split([p[1].numel() for p in parts]),
                                             strict=True):
                    rows[e].append(part)
                frontier[t] = (new, new_local, new_batch)
            for t in self.node_types:
                num_nodes_hop[t].append(frontier[t][0].numel() if t in frontier else 0)

        node = {t: s.all_nodes() for t, s in sets.items()}
        batch = {t: s.all_batch() for t, s in sets.items()}

        def cat(parts: list[Tensor]) -> Tensor:
            if not parts:
                return _EMPTY
            return torch.cat(parts) if len(parts) > 1 else parts[0]

        row = {e: cat(rows[e]) for e in self.edge_types}
        col = {e: cat(cols[e]) for e in self.edge_types}
        edge = {e: cat(edges[e]) for e in self.edge_types}
        num_sampled_edges: dict[Any, list[int]] | None = num_edges_hop
        if self.subgraph_type == SubgraphType.induced:
            row, col, edge = self._induced(node, sets)
            num_sampled_edges = None

        if not self.is_hetero:
            return SamplerOutput(
                node=node[None], row=row[None], col=col[None], edge=edge[None],
                batch=batch[None], num_sampled_nodes=num_nodes_hop[None],
                num_sampled_edges=None if num_sampled_edges is None else num_sampled_edges[None])
        return HeteroSamplerOutput(
            node=node, row=row, col=col, edge=edge,
            batch=batch if self.disjoint else None,
            num_sampled_nodes=num_nodes_hop, num_sampled_edges=num_sampled_edges)

    def _induced(self, node: dict[Any, Tensor], sets: dict[Any, _NodeSet]) -> tuple[
            dict[Any, Tensor], dict[Any, Tensor], dict[Any, Tensor]]:
        """Every edge between sampled nodes: all in-edges of the sampled nodes whose source
        was sampled too."""
        row, col, edge = {}, {}, {}
        for e in self.edge_types:
            src, dst = self._ends[e]
            d = node[dst]
            pos, count = sample_neighbors(self._colptr[e], d, -1)
            local_src = sets[src].lookup(self._row[e][pos].to(_LONG))
            keep = local_src >= 0
            row[e] = local_src[keep]
            col[e] = torch.repeat_interleave(torch.arange(d.numel()), count,
                                             output_size=pos.numel())[keep]
            edge[e] = pos[keep]
        return row, col, edge

    def __repr__(self) -> str:
        k = self._k if self.is_hetero else self._k[None]
        return (f"{type(self).__name__}(num_neighbors={k}, replace={self.replace}, "
                f"subgraph_type={self.subgraph_type.value!r}, disjoint={self.disjoint})")
