"""Learnable embedding tables on any backend, Marius-style.

* :class:`EmbeddingTable` — a ``(N, dim)`` float var with ``gather``, ``put``, ``scatter_add``
  (duplicates summed), a sparse SGD/Adagrad step whose state is a second var updated in
  lockstep, and ``flush`` (a kill leaves the table as of the last flush);
* :class:`PartitionBuffer` — ``capacity`` partitions of a table in memory, swapped along a
  :class:`SwapPlan` (:func:`beta_plan` for edge buckets, :func:`node_plan` for node tasks) with
  background prefetch and write-back, ``full_load`` for evaluation, and an edge-bucket iterator
  over a partitioned graph (:func:`storegate.graph.partition`);
* :class:`StoreEmbedding` — a ``torch.nn.Module`` whose backward applies the sparse update
  (loads torch on first use).

The implementations live in :mod:`storegate.graph` (numpy only) and
:mod:`storegate.torch.embedding`; see ``docs/graphs.md``.

Examples
--------
>>> import numpy as np
>>> from storegate import StoreGate
>>> from storegate.embeddings import EmbeddingTable, PartitionBuffer, beta_plan
>>> table = EmbeddingTable(StoreGate("numpy"), "nodes", "emb", 8, 4, optimizer="adagrad")
>>> with PartitionBuffer(table, 4, capacity=2) as buf:
...     for state in buf.states(beta_plan(4, 2, seed=0)):
...         ids = np.arange(*buf.resident_range(state[0]))
...         buf.apply_gradients(ids, np.ones((len(ids), 4), np.float32))
>>> table.pending_rows
0
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .graph.buffer import BufferStats, EdgeBucket, PartitionBuffer, equal_offsets
from .graph.embeddings import EmbeddingTable, coalesce, sparse_step
from .graph.swaps import SwapPlan, beta_plan, node_plan

if TYPE_CHECKING:  # loaded on first use (imports torch)
    from .torch.embedding import StoreEmbedding

__all__ = [
    "BufferStats",
    "EdgeBucket",
    "EmbeddingTable",
    "PartitionBuffer",
    "StoreEmbedding",
    "SwapPlan",
    "beta_plan",
    "coalesce",
    "equal_offsets",
    "node_plan",
    "sparse_step",
]


def __getattr__(name: str) -> Any:
    """:class:`StoreEmbedding` loads torch on first use."""
    if name == "StoreEmbedding":
        from .torch.embedding import StoreEmbedding

        return StoreEmbedding
    raise AttributeError(f"module 'storegate.embeddings' has no attribute {name!r}")
