"""``torch.nn.Module`` front end of a stored embedding table: :class:`StoreEmbedding`.

``StoreEmbedding(rows)`` looks up rows of an
:class:`~storegate.graph.embeddings.EmbeddingTable` (or of the
:class:`~storegate.graph.buffer.PartitionBuffer` in front of one) like ``nn.Embedding``; the
backward pass applies the table's sparse optimizer step (SGD or Adagrad) to the rows used,
duplicates summed, exactly as ``nn.Embedding(sparse=True)`` with ``torch.optim.SGD`` /
``torch.optim.Adagrad`` would. The table holds no ``nn.Parameter``: the rest of a model
(relation embeddings, a decoder) trains with any torch optimizer as usual.

Examples
--------
>>> import torch
>>> from storegate import StoreGate
>>> from storegate.graph.embeddings import EmbeddingTable
>>> table = EmbeddingTable(StoreGate("numpy"), "n", "emb", 4, 2, init="zeros",
...                        optimizer="sgd", lr=0.5)
>>> emb = StoreEmbedding(table)
>>> out = emb(torch.tensor([1, 1, 3]))
>>> out.sum().backward()             # grad 1 per use: row 1 used twice
>>> table.gather([1, 3]).tolist()
[[-1.0, -1.0], [-0.5, -0.5]]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import InvalidArgumentError

__all__ = ["StoreEmbedding"]


class _Lookup(torch.autograd.Function):
    """Gather rows in forward; apply the table's optimizer to the gradient in backward."""

    @staticmethod
    def forward(ctx: Any, anchor: torch.Tensor, ids: torch.Tensor, rows: Any) -> torch.Tensor:
        ctx.rows = rows
        ctx.save_for_backward(ids)
        flat = ids.reshape(-1).cpu().numpy()
        out = torch.from_numpy(np.ascontiguousarray(rows.gather(flat)))
        return out.reshape(*ids.shape, rows.dim)

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> tuple[None, None, None]:
        (ids,) = ctx.saved_tensors
        grad = grads[0].reshape(-1, ctx.rows.dim).detach().cpu().numpy()
        ctx.rows.apply_gradients(ids.reshape(-1).cpu().numpy(), grad)
        return None, None, None


class StoreEmbedding(torch.nn.Module):
    """A lookup into a stored table whose backward updates the table.

    Parameters
    ----------
    rows
        An :class:`~storegate.graph.embeddings.EmbeddingTable` with an ``optimizer``, or a
        :class:`~storegate.graph.buffer.PartitionBuffer` over one (ids must then be resident).

    Notes
    -----
    The update happens inside ``loss.backward()``: call backward once per forward (as with any
    training step); a second backward through the same output would apply the step again.
    Under ``torch.no_grad()`` (evaluation) the lookup is a plain read. Outputs are float tensors
    of the table's dtype on the CPU; move them to a device yourself.

    Examples
    --------
    >>> import torch
    >>> from storegate import StoreGate
    >>> from storegate.graph.embeddings import EmbeddingTable
    >>> t = EmbeddingTable(StoreGate("numpy"), "n", "e", 3, 2, optimizer="adagrad", lr=0.1)
    >>> StoreEmbedding(t)(torch.tensor([[0, 2]])).shape
    torch.Size([1, 2, 2])
    """

    def __init__(self, rows: Any) -> None:
        super().__init__()
        needed = ("gather", "apply_gradients", "dim", "num_embeddings")
        if not all(hasattr(rows, n) for n in needed):
            raise InvalidArgumentError(
                f"rows must be an EmbeddingTable or a PartitionBuffer, got "
                f"{type(rows).__name__}.")
        table = getattr(rows, "table", rows)
        if getattr(table, "optimizer", None) is None:
            raise InvalidArgumentError(
                "the table has no optimizer, so backward could not update it; open it with "
                "optimizer='sgd' or 'adagrad'.")
        self.rows = rows

    @property
    def num_embeddings(self) -> int:
        """Rows of the table."""
        return int(self.rows.num_embeddings)

    @property
    def embedding_dim(self) -> int:
        """Width of the table (``nn.Embedding``'s name)."""
        return int(self.rows.dim)

    def forward(self, ids: Any) -> torch.Tensor:
        """The rows at ``ids`` (an int tensor of any shape); shape ``ids.shape + (dim,)``."""
        if not isinstance(ids, torch.Tensor):
            ids = torch.as_tensor(ids)
        if ids.dtype.is_floating_point or ids.dtype == torch.bool:
            raise InvalidArgumentError(
                f"ids must be an integer tensor (row numbers), got {ids.dtype}.")
        if not torch.is_grad_enabled():
            flat = ids.reshape(-1).cpu().numpy()
            rows = torch.from_numpy(np.ascontiguousarray(self.rows.gather(flat)))
            return rows.reshape(*ids.shape, self.rows.dim)
        anchor = torch.empty(0, requires_grad=True)
        out: torch.Tensor = _Lookup.apply(anchor, ids, self.rows)
        return out

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, rows={self.rows!r}"
