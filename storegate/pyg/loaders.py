"""PyG's ``NeighborLoader`` and ``LinkNeighborLoader`` driven by storegate's pure-PyTorch sampler.

:class:`NeighborLoader` and :class:`LinkNeighborLoader` subclass PyG's classes of the same name
(so they are PyG ``NodeLoader``/``LinkLoader`` objects and take the same arguments) and build a
:class:`~storegate.pyg.sampler.StoreGateNeighborSampler` instead of PyG's ``NeighborSampler``,
which needs pyg-lib or torch-sparse. They run over ``Data``, ``HeteroData`` or any
``(FeatureStore, GraphStore)`` pair — storegate's stores or others.

``sampler_backend`` chooses the sampler: ``'torch'`` (storegate's), ``'pyg'`` (PyG's own, needs
pyg-lib or torch-sparse) or ``'auto'`` (default: PyG's when pyg-lib is installed and the
subgraph type is not ``'induced'``, storegate's otherwise). A ``neighbor_sampler`` object, when
given, is used as is.

Over a ``(FeatureStore, GraphStore)`` pair these loaders also fill in what PyG leaves to the
caller: ``input_nodes=None`` (homogeneous) or ``(node_type, None)`` means every node;
``edge_label_index`` may be a bare ``[2, n]`` tensor (homogeneous), and ``None`` means every
edge.

Examples
--------
>>> import torch
>>> from torch_geometric.data import Data
>>> edge_index = torch.tensor([[1, 2, 3, 0, 2], [0, 0, 0, 1, 3]])
>>> data = Data(x=torch.arange(4.0).view(-1, 1), edge_index=edge_index)
>>> loader = NeighborLoader(data, num_neighbors=[2], batch_size=2, input_nodes=torch.tensor([0, 3]))
>>> batch = next(iter(loader))
>>> batch.batch_size, batch.n_id[:2].tolist()
(2, [0, 3])
>>> bool((batch.x.view(-1) == data.x.view(-1)[batch.n_id]).all())
True
>>> type(loader.node_sampler).__name__
'StoreGateNeighborSampler'
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Literal, TypeAlias

import torch
import torch_geometric.typing
from torch import Tensor
from torch_geometric.data import Data, FeatureStore, GraphStore, HeteroData
from torch_geometric.loader import LinkNeighborLoader as _PygLinkNeighborLoader
from torch_geometric.loader import NeighborLoader as _PygNeighborLoader
from torch_geometric.sampler import BaseSampler, NegativeSampling, NumNeighbors
from torch_geometric.sampler import NeighborSampler as _PygNeighborSampler
from torch_geometric.sampler.base import SubgraphType

from ..errors import InvalidArgumentError, MissingDependencyError
from .sampler import StoreGateNeighborSampler

__all__ = ["LinkNeighborLoader", "NeighborLoader", "make_neighbor_sampler"]

logger = logging.getLogger(__name__)

SamplerBackend = Literal["auto", "torch", "pyg"]
GraphData: TypeAlias = "Data | HeteroData | tuple[FeatureStore, GraphStore]"


def _pyg_sampler_available(subgraph_type: SubgraphType) -> bool:
    if subgraph_type == SubgraphType.induced:  # pyg-lib does not do induced subgraphs
        return bool(torch_geometric.typing.WITH_TORCH_SPARSE)
    return bool(torch_geometric.typing.WITH_PYG_LIB or torch_geometric.typing.WITH_TORCH_SPARSE)


def make_neighbor_sampler(
    data: GraphData,
    num_neighbors: NumNeighbors | list[int] | dict[Any, list[int]],
    *,
    backend: SamplerBackend = "auto",
    **kwargs: Any,
) -> BaseSampler:
    """The neighbour sampler for ``data``: storegate's or PyG's (see the module docstring).

    Parameters
    ----------
    data : Data, HeteroData or tuple of (FeatureStore, GraphStore)
        The graph.
    num_neighbors : list of int, dict or NumNeighbors
        As in PyG.
    backend : {'auto', 'torch', 'pyg'}
        ``'torch'``: :class:`~storegate.pyg.sampler.StoreGateNeighborSampler`; ``'pyg'``: PyG's
        ``NeighborSampler`` (needs pyg-lib or torch-sparse); ``'auto'``: PyG's when pyg-lib is
        installed (and the subgraph type is not ``'induced'``), storegate's otherwise.
    **kwargs
        The other arguments of PyG's ``NeighborSampler`` (``replace``, ``subgraph_type``,
        ``disjoint``, ``time_attr``, ``weight_attr``, ``is_sorted``, ``share_memory``, ...).

    Examples
    --------
    >>> from torch_geometric.data import Data
    >>> data = Data(edge_index=torch.tensor([[0, 1], [1, 0]]), num_nodes=2)
    >>> type(make_neighbor_sampler(data, [1], backend="torch")).__name__
    'StoreGateNeighborSampler'
    """
    if backend not in ("auto", "torch", "pyg"):
        raise InvalidArgumentError(
            f"sampler backend must be 'auto', 'torch' or 'pyg' (got {backend!r}).")
    subgraph_type = SubgraphType(kwargs.get("subgraph_type", "directional"))
    if not kwargs.get("directed", True):
        subgraph_type = SubgraphType.induced
    use_pyg = backend == "pyg" or (
        backend == "auto" and bool(torch_geometric.typing.WITH_PYG_LIB)
        and subgraph_type != SubgraphType.induced)
    if use_pyg:
        if not _pyg_sampler_available(subgraph_type):
            raise MissingDependencyError(
                "sampler_backend='pyg' needs pyg-lib (or torch-sparse) installed; use "
                "sampler_backend='torch' (storegate's pure-PyTorch sampler) instead.")
        logger.debug("neighbour sampling with PyG's NeighborSampler")
        return _PygNeighborSampler(data, num_neighbors=num_neighbors, **kwargs)
    logger.debug("neighbour sampling with StoreGateNeighborSampler")
    return StoreGateNeighborSampler(data, num_neighbors=num_neighbors, **kwargs)


def _num_nodes(sampler: BaseSampler, node_type: Any) -> int | None:
    num_nodes = getattr(sampler, "num_nodes", None)
    if isinstance(num_nodes, dict):
        n = num_nodes.get(node_type)
        return None if n is None else int(n)
    return None if num_nodes is None or node_type is not None else int(num_nodes)


def _fill_input_nodes(data: GraphData, sampler: BaseSampler, input_nodes: Any) -> Any:
    """Every node for ``None`` / ``(node_type, None)`` over a (FeatureStore, GraphStore)."""
    if not isinstance(data, tuple | list):
        return input_nodes
    if input_nodes is None:
        n = _num_nodes(sampler, None)
        return input_nodes if n is None else torch.arange(n)
    if isinstance(input_nodes, tuple | list) and len(input_nodes) == 2 and input_nodes[1] is None:
        n = _num_nodes(sampler, input_nodes[0])
        return input_nodes if n is None else (input_nodes[0], torch.arange(n))
    return input_nodes


def _fill_edge_label_index(data: GraphData, edge_label_index: Any) -> Any:
    """Over a homogeneous (FeatureStore, GraphStore), PyG wants ``(None, index)``: wrap a bare
    index, and make ``None`` / ``(None, None)`` every edge."""
    if not isinstance(data, tuple | list):
        return edge_label_index
    if isinstance(edge_label_index, Tensor):
        return None, edge_label_index
    if edge_label_index is None or (isinstance(edge_label_index, tuple | list)
                                    and len(edge_label_index) == 2
                                    and edge_label_index[0] is None
                                    and edge_label_index[1] is None):
        _, graph_store = data
        attrs = graph_store.get_all_edge_attrs()
        if not attrs or attrs[0].edge_type is not None:
            return edge_label_index
        row, col, _ = graph_store.coo()
        return None, torch.stack([row.to(torch.long), col.to(torch.long)], dim=0)
    return edge_label_index


class NeighborLoader(_PygNeighborLoader):
    """PyG's ``NeighborLoader`` with storegate's pure-PyTorch sampler (no pyg-lib needed).

    Takes PyG's arguments (see ``torch_geometric.loader.NeighborLoader``) plus
    ``sampler_backend``; yields the same ``Data``/``HeteroData`` mini-batches (``n_id``,
    ``e_id``, ``batch_size``, ``input_id``, ``num_sampled_nodes``, ``num_sampled_edges``).

    Parameters
    ----------
    data : Data, HeteroData or tuple of (FeatureStore, GraphStore)
        The graph; e.g. ``(storegate.pyg.FeatureStore(sg), storegate.pyg.GraphStore(sg))``.
    num_neighbors : list of int or dict
        Neighbours per hop (``-1``: all), or a dict per edge type.
    input_nodes : Tensor, str or tuple, optional
        Seed nodes (ids or a boolean mask; ``(node_type, ids)`` in heterogeneous graphs).
        Over a ``(FeatureStore, GraphStore)``, ``None`` and ``(node_type, None)`` mean all nodes.
    replace, subgraph_type, disjoint, temporal_strategy, time_attr, weight_attr, is_sorted
        As in PyG. Storegate's sampler does neither temporal nor weighted sampling.
    transform, transform_sampler_output, filter_per_worker, neighbor_sampler, directed
        As in PyG.
    sampler_backend : {'auto', 'torch', 'pyg'}
        Which sampler to build when ``neighbor_sampler`` is not given (see
        :func:`make_neighbor_sampler`).
    **kwargs
        ``DataLoader`` arguments: ``batch_size``, ``shuffle``, ``num_workers``, ...

    Examples
    --------
    >>> import torch
    >>> from torch_geometric.data import Data
    >>> data = Data(x=torch.randn(5, 3), y=torch.arange(5),
    ...             edge_index=torch.tensor([[0, 1, 2, 3, 4], [1, 2, 3, 4, 0]]))
    >>> loader = NeighborLoader(data, num_neighbors=[1, 1], batch_size=2, shuffle=False)
    >>> batch = next(iter(loader))
    >>> batch.n_id.tolist(), batch.y.tolist()  # seeds 0, 1; then 4 -> 0, 3 -> 4
    ([0, 1, 4, 3], [0, 1, 4, 3])
    >>> batch.num_sampled_nodes, batch.num_sampled_edges
    ([2, 1, 1], [2, 1])
    """

    def __init__(
        self,
        data: GraphData,
        num_neighbors: NumNeighbors | list[int] | dict[Any, list[int]],
        input_nodes: Any = None,
        input_time: Tensor | None = None,
        replace: bool = False,
        subgraph_type: SubgraphType | str = "directional",
        disjoint: bool = False,
        temporal_strategy: str = "uniform",
        time_attr: str | None = None,
        weight_attr: str | None = None,
        transform: Callable[..., Any] | None = None,
        transform_sampler_output: Callable[..., Any] | None = None,
        is_sorted: bool = False,
        filter_per_worker: bool | None = None,
        neighbor_sampler: BaseSampler | None = None,
        directed: bool = True,
        sampler_backend: SamplerBackend = "auto",
        **kwargs: Any,
    ) -> None:
        if neighbor_sampler is None:
            neighbor_sampler = make_neighbor_sampler(
                data, num_neighbors, backend=sampler_backend, replace=replace,
                subgraph_type=subgraph_type, disjoint=disjoint,
                temporal_strategy=temporal_strategy, time_attr=time_attr,
                weight_attr=weight_attr, is_sorted=is_sorted,
                share_memory=kwargs.get("num_workers", 0) > 0, directed=directed)
        self.sampler_backend = sampler_backend
        super().__init__(
            data, num_neighbors, input_nodes=_fill_input_nodes(data, neighbor_sampler,
                                                               input_nodes),
            input_time=input_time, replace=replace, subgraph_type=subgraph_type,
            disjoint=disjoint, temporal_strategy=temporal_strategy, time_attr=time_attr,
            weight_attr=weight_attr, transform=transform,
            transform_sampler_output=transform_sampler_output, is_sorted=is_sorted,
            filter_per_worker=filter_per_worker, neighbor_sampler=neighbor_sampler,
            directed=directed, **kwargs)


class LinkNeighborLoader(_PygLinkNeighborLoader):
    """PyG's ``LinkNeighborLoader`` with storegate's pure-PyTorch sampler (no pyg-lib needed).

    Takes PyG's arguments (see ``torch_geometric.loader.LinkNeighborLoader``) plus
    ``sampler_backend``: mini-batches of seed edges (``edge_label_index``, ``edge_label``)
    with the sampled neighbourhoods of their endpoints, optionally with negatives
    (``neg_sampling=NegativeSampling('binary' | 'triplet', amount)``; binary batches carry
    ``edge_label_index``/``edge_label`` with 0 for negatives, triplet batches ``src_index``,
    ``dst_pos_index`` and ``dst_neg_index``). Negatives are drawn uniformly and may be false
    negatives, as in PyG.

    Parameters
    ----------
    data : Data, HeteroData or tuple of (FeatureStore, GraphStore)
        The graph.
    num_neighbors : list of int or dict
        Neighbours per hop (``-1``: all), or a dict per edge type.
    edge_label_index : Tensor, edge type or tuple, optional
        Seed edges (``[2, n]``), or ``(edge_type, index)`` in heterogeneous graphs. Over a
        homogeneous ``(FeatureStore, GraphStore)``, a bare ``[2, n]`` index works too (PyG
        wants ``(None, index)``) and ``None`` means every edge.
    edge_label, edge_label_time, neg_sampling, neg_sampling_ratio
        As in PyG (``edge_label_time`` needs temporal sampling, which storegate's sampler
        does not do).
    replace, subgraph_type, disjoint, temporal_strategy, time_attr, weight_attr, is_sorted
        As in PyG.
    transform, transform_sampler_output, filter_per_worker, neighbor_sampler, directed
        As in PyG.
    sampler_backend : {'auto', 'torch', 'pyg'}
        Which sampler to build when ``neighbor_sampler`` is not given.
    **kwargs
        ``DataLoader`` arguments: ``batch_size``, ``shuffle``, ``num_workers``, ...

    Examples
    --------
    >>> import torch
    >>> from torch_geometric.data import Data
    >>> data = Data(x=torch.randn(4, 2), edge_index=torch.tensor([[0, 1, 2], [1, 2, 3]]))
    >>> loader = LinkNeighborLoader(data, num_neighbors=[-1], batch_size=3,
    ...                             neg_sampling=NegativeSampling("binary", 1))
    >>> batch = next(iter(loader))
    >>> batch.edge_label.tolist()
    [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    >>> src, dst = batch.n_id[batch.edge_label_index[:, :3]].tolist()
    >>> sorted(zip(src, dst))
    [(0, 1), (1, 2), (2, 3)]
    """

    def __init__(
        self,
        data: GraphData,
        num_neighbors: NumNeighbors | list[int] | dict[Any, list[int]],
        edge_label_index: Any = None,
        edge_label: Tensor | None = None,
        edge_label_time: Tensor | None = None,
        replace: bool = False,
        subgraph_type: SubgraphType | str = "directional",
        disjoint: bool = False,
        temporal_strategy: str = "uniform",
        neg_sampling: NegativeSampling | None = None,
        neg_sampling_ratio: int | float | None = None,
        time_attr: str | None = None,
        weight_attr: str | None = None,
        transform: Callable[..., Any] | None = None,
        transform_sampler_output: Callable[..., Any] | None = None,
        is_sorted: bool = False,
        filter_per_worker: bool | None = None,
        neighbor_sampler: BaseSampler | None = None,
        directed: bool = True,
        sampler_backend: SamplerBackend = "auto",
        **kwargs: Any,
    ) -> None:
        if neighbor_sampler is None:
            neighbor_sampler = make_neighbor_sampler(
                data, num_neighbors, backend=sampler_backend, replace=replace,
                subgraph_type=subgraph_type, disjoint=disjoint,
                temporal_strategy=temporal_strategy, time_attr=time_attr,
                weight_attr=weight_attr, is_sorted=is_sorted,
                share_memory=kwargs.get("num_workers", 0) > 0, directed=directed)
        self.sampler_backend = sampler_backend
        super().__init__(
            data, num_neighbors,
            edge_label_index=_fill_edge_label_index(data, edge_label_index),
            edge_label=edge_label, edge_label_time=edge_label_time, replace=replace,
            subgraph_type=subgraph_type, disjoint=disjoint,
            temporal_strategy=temporal_strategy, neg_sampling=neg_sampling,
            neg_sampling_ratio=neg_sampling_ratio, time_attr=time_attr,
            weight_attr=weight_attr, transform=transform,
            transform_sampler_output=transform_sampler_output, is_sorted=is_sorted,
            filter_per_worker=filter_per_worker, neighbor_sampler=neighbor_sampler,
            directed=directed, **kwargs)
