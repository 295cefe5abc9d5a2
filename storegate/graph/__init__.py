"""Graphs at scale, with numpy only: locality orders, partitions, embedding tables.

* :mod:`~storegate.graph.ordering` — node orders that keep neighbours close
  (:func:`node_order`, :func:`relabel`);
* :mod:`~storegate.graph.partitioning` — :func:`partition` a stored graph into contiguous node
  partitions with its edges in partition-pair buckets (the :class:`PartitionPlan`, read back
  with :func:`load_plan`), and :func:`export_pyg` to PyG's distributed on-disk layout;
* :mod:`~storegate.graph.embeddings`, :mod:`~storegate.graph.buffer`,
  :mod:`~storegate.graph.swaps` — learnable embedding tables, the partition buffer and its swap
  plans (also importable from :mod:`storegate.embeddings`).

See ``docs/graphs.md``.
"""

from .buffer import PartitionBuffer
from .embeddings import EmbeddingTable
from .export import export_pyg
from .layout import ORIG_EDGE_ID, ORIG_ID
from .ordering import METHODS, csr_undirected, node_order, relabel
from .partitioning import partition, partition_graph
from .plan import PartitionPlan, load_plan
from .swaps import SwapPlan, beta_plan, node_plan

__all__ = [
    "METHODS",
    "ORIG_EDGE_ID",
    "ORIG_ID",
    "EmbeddingTable",
    "PartitionBuffer",
    "PartitionPlan",
    "SwapPlan",
    "beta_plan",
    "csr_undirected",
    "export_pyg",
    "load_plan",
    "node_order",
    "node_plan",
    "partition",
    "partition_graph",
    "relabel",
]
