"""PyTorch layer: datasets and samplers over a StoreGate (needs ``pip install 'storegate[torch]'``).

* :class:`StoreGateDataset` — map-style dataset with ``__getitems__``: one batched backend read
  per ``DataLoader`` batch; tensors as a tuple or dict; ragged vars as lists, padded or packed.
* :class:`ChunkShuffleSampler` — random order of chunks, rows shuffled within a window of
  chunks (near-sequential reads, good mixing).
* :class:`ShardedSampler` — ``DistributedSampler``'s contract for random and chunk-aware orders.
* :func:`init_distributed`, :func:`open_shared`, :func:`distributed_loader` (and
  :func:`distributed_info`, :func:`is_main_process`, :func:`close_distributed`) — multi-process
  training under ``torch.distributed`` (:mod:`storegate.torch.distributed`).
* kinoml-compatible classes (:mod:`storegate.torch.kinoml`): ``XyTorchDataset``,
  ``MultiXTorchDataset``, ``AwkwardArrayDataset``, ``PrefeaturizedTorchDataset``,
  ``TorchDataset``.

Importing this package imports torch; ``import storegate`` does not.
"""

from __future__ import annotations

from typing import Any

try:
    import torch  # noqa: F401
except ImportError as err:  # pragma: no cover - exercised without torch installed
    from ..errors import MissingDependencyError

    raise MissingDependencyError(
        f"storegate.torch needs PyTorch ({err}); install it with `pip install "
        "'storegate[torch]'` (CPU-only wheels: see https://pytorch.org/get-started/).") from None

from .dataset import RAGGED_MODES, StoreGateDataset, collate_batch
from .samplers import ChunkShuffleSampler, ShardedSampler, chunk_shuffle

_KINOML = ("AwkwardArrayDataset", "MultiXTorchDataset", "PrefeaturizedTorchDataset",
           "TorchDataset", "XyTorchDataset")
_DISTRIBUTED = ("DistributedInfo", "DistributedLoader", "close_distributed",
                "distributed_info", "distributed_loader", "init_distributed",
                "is_main_process", "open_shared")

__all__ = [
    "RAGGED_MODES",
    "ChunkShuffleSampler",
    "ShardedSampler",
    "StoreGateDataset",
    "chunk_shuffle",
    "collate_batch",
    *_KINOML,
    *_DISTRIBUTED,
]


def __getattr__(name: str) -> Any:
    """The kinoml-compatible classes load on first use (they pull in the converters), and so
    do the ``torch.distributed`` helpers."""
    if name in _KINOML:
        from . import kinoml

        return getattr(kinoml, name)
    if name in _DISTRIBUTED:
        from . import distributed

        return getattr(distributed, name)
    raise AttributeError(f"module 'storegate.torch' has no attribute {name!r}")
