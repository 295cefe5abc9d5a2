"""Samplers: chunk-aware shuffling and sharding across distributed ranks.

:class:`ChunkShuffleSampler` shuffles *chunks* (blocks of rows that storage reads together)
and then rows inside a window of a few chunks: a batch touches at most ``window`` chunks, so a
disk-backed store reads near-sequentially (and a decoded arena stays hot in the CPU caches),
while rows still mix across ``window * chunk_rows`` positions. :class:`ShardedSampler` splits
either order — a plain random permutation or the chunk-aware one — over
``torch.distributed`` ranks with the contract of ``torch.utils.data.DistributedSampler``
(``num_replicas``, ``rank``, ``shuffle``, ``seed``, ``drop_last``, ``set_epoch``).

Every sampler yields each row of the dataset exactly once per epoch (a ``ShardedSampler``:
the ranks together, with up to ``num_replicas - 1`` rows repeated to even the shards unless
``drop_last``). Call ``set_epoch(epoch)`` at the start of each epoch to get a new order.

Examples
--------
>>> s = ChunkShuffleSampler(12, chunk_rows=4, window=1, seed=0)
>>> order = list(s)
>>> sorted(order) == list(range(12))
True
>>> [sorted(order[i:i + 4])[0] % 4 == 0 for i in (0, 4, 8)]   # one whole chunk at a time
[True, True, True]
>>> shards = [list(ShardedSampler(10, num_replicas=2, rank=r, shuffle=False)) for r in (0, 1)]
>>> shards
[[0, 2, 4, 6, 8], [1, 3, 5, 7, 9]]
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sized
from typing import Any

import numpy as np
import torch

from ..errors import InvalidArgumentError

__all__ = ["ChunkShuffleSampler", "ShardedSampler", "chunk_shuffle"]


def _length(data: Sized | int) -> int:
    if isinstance(data, bool):
        raise InvalidArgumentError(f"a sampler needs a dataset or a length, got {data!r}.")
    if isinstance(data, int | np.integer):
        if data < 0:
            raise InvalidArgumentError(f"a sampler needs a non-negative length, got {data}.")
        return int(data)
    return len(data)


def _chunk_rows(data: Any, chunk_rows: int | None) -> int:
    rows = chunk_rows if chunk_rows is not None else getattr(data, "chunk_rows", 4096)
    if not isinstance(rows, int | np.integer) or isinstance(rows, bool) or rows < 1:
        raise InvalidArgumentError(f"chunk_rows must be a positive int, got {rows!r}.")
    return int(rows)


def chunk_shuffle(n: int, chunk_rows: int, window: int, rng: np.random.Generator) -> np.ndarray:
    """A permutation of ``range(n)``: chunks of ``chunk_rows`` rows in random order, rows
    shuffled within each run of ``window`` consecutive (shuffled) chunks.

    >>> p = chunk_shuffle(8, 2, 2, np.random.default_rng(0))
    >>> sorted(p.tolist()) == list(range(8))
    True
    """
    if window < 1:
        raise InvalidArgumentError(f"window must be a positive number of chunks, got {window}.")
    n_chunks = -(-n // chunk_rows) if n else 0
    order = rng.permutation(n_chunks)
    out = np.empty(n, dtype=np.int64)
    pos = 0
    for w in range(0, n_chunks, window):
        chunks = order[w:w + window]
        starts = chunks * chunk_rows
        stops = np.minimum(starts + chunk_rows, n)
        lengths = stops - starts
        total = int(lengths.sum())
        # the rows of these chunks, then one shuffle of the window
        offsets = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
        rows = np.arange(total, dtype=np.int64) + offsets
        rng.shuffle(rows)
        out[pos:pos + total] = rows
        pos += total
    return out


class ChunkShuffleSampler(torch.utils.data.Sampler[int]):
    """Random order of chunks, rows shuffled within a window of chunks.

    Parameters
    ----------
    data
        A :class:`~storegate.torch.StoreGateDataset` (its ``chunk_rows`` is used), any sized
        dataset, or a number of rows.
    chunk_rows
        Rows per chunk; ``None``: the dataset's ``chunk_rows`` (the storage chunking), else
        4,096.
    window
        Chunks whose rows are shuffled together (default 8). 1 keeps each chunk's rows
        together; a window as large as the dataset is a full shuffle.
    seed
        Seed of the order; the epoch (``set_epoch``) is added to it.
    """

    def __init__(self, data: Sized | int, chunk_rows: int | None = None, window: int = 8,
                 seed: int = 0) -> None:
        self.n = _length(data)
        self.chunk_rows = _chunk_rows(data, chunk_rows)
        if not isinstance(window, int) or window < 1:
            raise InvalidArgumentError(f"window must be a positive int, got {window!r}.")
        self.window = window
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use the order of epoch ``epoch`` (call it at the start of each epoch)."""
        self.epoch = int(epoch)

    def order(self) -> np.ndarray:
        """This epoch's order as an int64 array."""
        rng = np.random.default_rng((self.seed, self.epoch))
        return chunk_shuffle(self.n, self.chunk_rows, self.window, rng)

    def __iter__(self) -> Iterator[int]:
        return iter(self.order().tolist())

    def __len__(self) -> int:
        return self.n


class ShardedSampler(torch.utils.data.Sampler[int]):
    """This rank's share of an epoch, as ``torch.utils.data.DistributedSampler`` gives it, for
    a random or a chunk-aware order.

    Parameters
    ----------
    data
        The dataset (or its number of rows).
    num_replicas, rank
        The number of processes and this one's rank; ``None``: from ``torch.distributed``
        (which must then be initialised).
    shuffle
        ``False``: rows in order. ``True``: a new order every epoch.
    seed
        Seed shared by all ranks (the orders must agree); the epoch is added to it.
    drop_last
        Drop the tail so every rank gets the same number of rows without repeats; otherwise the
        order is padded by repeating its first rows (as ``DistributedSampler`` does).
    mode
        ``'random'`` — the same permutation as ``DistributedSampler`` (``torch.randperm`` with
        ``seed + epoch``), strided over ranks; or ``'chunk'`` — :func:`chunk_shuffle`, split
        into contiguous blocks per rank so each rank keeps the near-sequential reads.
    chunk_rows, window
        For ``mode='chunk'`` (see :class:`ChunkShuffleSampler`).
    """

    def __init__(self, data: Sized | int, num_replicas: int | None = None,
                 rank: int | None = None, shuffle: bool = True, seed: int = 0,
                 drop_last: bool = False, mode: str = "random", chunk_rows: int | None = None,
                 window: int = 8) -> None:
        if num_replicas is None or rank is None:
            if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
                raise InvalidArgumentError(
                    "torch.distributed is not initialised; pass num_replicas= and rank=.")
            num_replicas = (torch.distributed.get_world_size() if num_replicas is None
                            else num_replicas)
            rank = torch.distributed.get_rank() if rank is None else rank
        for name, value in (("num_replicas", num_replicas), ("rank", rank)):
            if not isinstance(value, int | np.integer) or isinstance(value, bool):
                raise InvalidArgumentError(f"{name} must be an int, got {value!r}.")
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise InvalidArgumentError(
                f"rank {rank} is not in [0, num_replicas={num_replicas}).")
        if mode not in ("random", "chunk"):
            raise InvalidArgumentError(f"mode={mode!r}; use 'random' or 'chunk'.")
        self.n = _length(data)
        self.num_replicas, self.rank = int(num_replicas), int(rank)
        self.shuffle, self.seed, self.drop_last, self.mode = shuffle, int(seed), drop_last, mode
        self.chunk_rows = _chunk_rows(data, chunk_rows) if mode == "chunk" else 0
        if not isinstance(window, int) or window < 1:
            raise InvalidArgumentError(f"window must be a positive int, got {window!r}.")
        self.window = window
        self.epoch = 0
        if drop_last and self.n % self.num_replicas:
            self.num_samples = math.ceil((self.n - self.num_replicas) / self.num_replicas)
        else:
            self.num_samples = math.ceil(self.n / self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas

    def set_epoch(self, epoch: int) -> None:
        """Use the order of epoch ``epoch`` (every rank must call it with the same value)."""
        self.epoch = int(epoch)

    def order(self) -> np.ndarray:
        """This rank's rows for the current epoch."""
        n = self.n
        if not self.shuffle:
            full = np.arange(n, dtype=np.int64)
        elif self.mode == "random":
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            full = torch.randperm(n, generator=g).numpy()
        else:
            rng = np.random.default_rng((self.seed, self.epoch))
            full = chunk_shuffle(n, self.chunk_rows, self.window, rng)
        if not self.drop_last:
            pad = self.total_size - n
            if pad > 0:
                full = np.concatenate([full, np.resize(full, pad)]) if n else full
        else:
            full = full[:self.total_size]
        if self.mode == "chunk" and self.shuffle:
            return full[self.rank * self.num_samples:(self.rank + 1) * self.num_samples]
        return full[self.rank:self.total_size:self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        return iter(self.order().tolist())

    def __len__(self) -> int:
        return self.num_samples
