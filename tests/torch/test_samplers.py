"""ChunkShuffleSampler, ShardedSampler and chunk_shuffle: orders, epochs, DistributedSampler's
contract, argument checks."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import DistributedSampler

from storegate import StoreGate
from storegate.errors import InvalidArgumentError
from storegate.torch import ChunkShuffleSampler, ShardedSampler, StoreGateDataset, chunk_shuffle


def chunk_of(rows: list[int], chunk_rows: int) -> list[int]:
    return [r // chunk_rows for r in rows]


def windows(order: list[int], n: int, chunk_rows: int, window: int) -> list[list[int]]:
    """Split ``order`` into its windows, checking that each holds exactly the rows of
    ``window`` whole chunks (the last may hold fewer chunks)."""
    size = [min(chunk_rows, n - c * chunk_rows) for c in range(-(-n // chunk_rows))]
    out: list[list[int]] = []
    current: list[int] = []
    chunks: set[int] = set()
    for row in order:
        c = row // chunk_rows
        if c not in chunks:
            assert len(chunks) < window, f"window {len(out)} mixes more than {window} chunks"
            chunks.add(c)
        current.append(row)
        if len(chunks) == window and len(current) == sum(size[k] for k in chunks):
            out.append(current)
            current, chunks = [], set()
    if current:
        assert len(current) == sum(size[k] for k in chunks), "the last window is incomplete"
        out.append(current)
    for w in out:
        assert sorted(w) == sorted(r for c in set(chunk_of(w, chunk_rows))
                                   for r in range(c * chunk_rows, c * chunk_rows + size[c]))
    return out


# ---------------------------------------------------------------------------------- chunk shuffle
@pytest.mark.parametrize("n", [0, 1, 7, 100, 1000])
@pytest.mark.parametrize("chunk_rows", [1, 3, 16, 4096])
@pytest.mark.parametrize("window", [1, 2, 8, 10_000])
def test_chunk_shuffle_sampler_yields_a_permutation_in_windows(n: int, chunk_rows: int,
                                                               window: int) -> None:
    sampler = ChunkShuffleSampler(n, chunk_rows=chunk_rows, window=window, seed=4)
    order = list(sampler)
    assert len(sampler) == n
    assert sorted(order) == list(range(n))
    assert all(type(i) is int for i in order)
    got = windows(order, n, chunk_rows, window)
    n_chunks = math.ceil(n / chunk_rows)
    assert len(got) == math.ceil(n_chunks / window)


@pytest.mark.parametrize("n, chunk_rows", [(100, 10), (103, 10), (64, 64), (65, 64)])
def test_window_one_keeps_each_chunk_together(n: int, chunk_rows: int) -> None:
    order = list(ChunkShuffleSampler(n, chunk_rows=chunk_rows, window=1, seed=0))
    pos = 0
    seen = []
    while pos < n:
        c = order[pos] // chunk_rows
        length = min(chunk_rows, n - c * chunk_rows)
        block = order[pos:pos + length]
        assert sorted(block) == list(range(c * chunk_rows, c * chunk_rows + length))
        seen.append(c)
        pos += length
    assert sorted(seen) == list(range(-(-n // chunk_rows)))


def test_chunks_and_rows_are_both_shuffled() -> None:
    order = list(ChunkShuffleSampler(1000, chunk_rows=10, window=4, seed=0))
    chunk_order = list(dict.fromkeys(chunk_of(order, 10)))
    assert chunk_order != sorted(chunk_order)  # the chunks come in random order
    first = order[:40]
    assert first != sorted(first)  # rows are shuffled inside a window


def test_epochs_and_seeds_set_the_order() -> None:
    a = ChunkShuffleSampler(500, chunk_rows=20, window=3, seed=7)
    b = ChunkShuffleSampler(500, chunk_rows=20, window=3, seed=7)
    epoch0 = list(a)
    assert list(a) == epoch0 == list(b)  # the same seed and epoch: the same order
    a.set_epoch(1)
    epoch1 = list(a)
    assert epoch1 != epoch0 and sorted(epoch1) == list(range(500))
    b.set_epoch(1)
    assert list(b) == epoch1  # deterministic per (seed, epoch)
    a.set_epoch(0)
    assert list(a) == epoch0
    assert list(ChunkShuffleSampler(500, chunk_rows=20, window=3, seed=8)) != epoch0
    assert a.order().dtype == np.int64


def test_chunk_rows_come_from_the_dataset(tmp_path: Any) -> None:
    sg = StoreGate("zarr", {"output_dir": str(tmp_path / "s.zarr"), "chunk": 25}, data_id="d")
    sg.add_data("x", np.arange(300, dtype=np.float32), phase=(200, 50, 50))
    sg.compile()
    ds = StoreGateDataset(sg, "train", "x")
    assert ChunkShuffleSampler(ds).chunk_rows == 25
    assert ChunkShuffleSampler(ds, chunk_rows=10).chunk_rows == 10
    assert len(ChunkShuffleSampler(ds)) == 200
    assert ShardedSampler(ds, 2, 0, mode="chunk").chunk_rows == 25
    assert ChunkShuffleSampler(list(range(9))).chunk_rows == 4096  # any sized dataset
    assert len(ChunkShuffleSampler(list(range(9)))) == 9


def test_chunk_shuffle_function() -> None:
    p = chunk_shuffle(50, 8, 2, np.random.default_rng(0))
    assert p.dtype == np.int64 and sorted(p.tolist()) == list(range(50))
    assert p.tolist() == chunk_shuffle(50, 8, 2, np.random.default_rng(0)).tolist()
    windows(p.tolist(), 50, 8, 2)
    assert chunk_shuffle(0, 8, 2, np.random.default_rng(0)).shape == (0,)


@pytest.mark.parametrize("kwargs", [
    {"data": -1}, {"data": True}, {"data": 10, "window": 0}, {"data": 10, "window": -2},
    {"data": 10, "window": 1.5}, {"data": 10, "window": "2"}, {"data": 10, "chunk_rows": 0},
    {"data": 10, "chunk_rows": -4}, {"data": 10, "chunk_rows": 2.5},
    {"data": 10, "chunk_rows": True},
])
def test_chunk_shuffle_sampler_bad_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgumentError):
        ChunkShuffleSampler(**kwargs)


def test_chunk_shuffle_bad_window() -> None:
    with pytest.raises(InvalidArgumentError):
        chunk_shuffle(10, 2, 0, np.random.default_rng(0))


# ---------------------------------------------------------------------------------- sharding
CONTRACT = list(itertools.product(
    [0, 1, 5, 10, 11, 100, 101],  # n
    [1, 2, 3, 4],  # num_replicas
    [False, True],  # shuffle
    [False, True],  # drop_last
))


@pytest.mark.parametrize("n, num_replicas, shuffle, drop_last", CONTRACT)
def test_random_mode_is_distributed_sampler(n: int, num_replicas: int, shuffle: bool,
                                            drop_last: bool) -> None:
    for rank, seed, epoch in itertools.product(range(num_replicas), (0, 7), (0, 3)):
        ours = ShardedSampler(n, num_replicas=num_replicas, rank=rank, shuffle=shuffle,
                              seed=seed, drop_last=drop_last, mode="random")
        theirs = DistributedSampler(range(n), num_replicas=num_replicas, rank=rank,
                                    shuffle=shuffle, seed=seed, drop_last=drop_last)
        ours.set_epoch(epoch)
        theirs.set_epoch(epoch)
        expected = list(theirs)
        assert list(ours) == expected
        assert len(ours) == len(theirs) == len(expected)
        assert (ours.num_samples, ours.total_size) == (theirs.num_samples, theirs.total_size)


@pytest.mark.parametrize("n, num_replicas, drop_last", [
    (n, r, d) for n, r, _, d in CONTRACT if n])
def test_unshuffled_chunk_mode_is_distributed_sampler(n: int, num_replicas: int,
                                                      drop_last: bool) -> None:
    for rank in range(num_replicas):
        ours = ShardedSampler(n, num_replicas, rank, shuffle=False, drop_last=drop_last,
                              mode="chunk", chunk_rows=4)
        theirs = DistributedSampler(range(n), num_replicas, rank, shuffle=False,
                                    drop_last=drop_last)
        assert list(ours) == list(theirs)


@pytest.mark.parametrize("mode", ["random", "chunk"])
@pytest.mark.parametrize("n, num_replicas, shuffle, drop_last", CONTRACT)
def test_shards_cover_the_data(mode: str, n: int, num_replicas: int, shuffle: bool,
                               drop_last: bool) -> None:
    shards = [list(ShardedSampler(n, num_replicas, rank, shuffle=shuffle, seed=1,
                                  drop_last=drop_last, mode=mode, chunk_rows=8, window=2))
              for rank in range(num_replicas)]
    lengths = {len(s) for s in shards}
    assert len(lengths) == 1  # every rank gets the same number of rows
    union = [i for s in shards for i in s]
    if drop_last:  # the contract: n % num_replicas rows dropped, nothing repeated
        assert len(union) == len(set(union)) == n - n % num_replicas
        assert set(union) <= set(range(n))
    else:  # every row, and up to num_replicas - 1 repeats to even the shards
        assert set(union) == set(range(n))
        assert len(union) == n + (-n % num_replicas if n else 0)
    if n % num_replicas == 0:  # divisible: the shards are disjoint
        assert len(union) == len(set(union)) == n


@pytest.mark.parametrize("n, chunk_rows, window", [(400, 16, 1), (400, 16, 3), (402, 7, 2)])
def test_chunk_mode_gives_each_rank_a_block_of_the_chunk_order(n: int, chunk_rows: int,
                                                               window: int) -> None:
    """The ranks' shards, in rank order, are the chunk-aware order of ChunkShuffleSampler
    (padded like DistributedSampler's), so each rank keeps near-sequential reads."""
    chunked = ChunkShuffleSampler(n, chunk_rows=chunk_rows, window=window, seed=9)
    for epoch in (0, 2):
        chunked.set_epoch(epoch)
        full = list(chunked)
        shards = []
        for rank in range(4):
            s = ShardedSampler(n, 4, rank, seed=9, mode="chunk", chunk_rows=chunk_rows,
                               window=window)
            s.set_epoch(epoch)
            shards.append(list(s))
        joined = [i for s in shards for i in s]
        pad = -n % 4
        assert joined == full + full[:pad]
        if window == 1:  # a shard touches few chunks: about its share of them, plus edges
            for s in shards:
                assert len(set(chunk_of(s, chunk_rows))) <= len(s) // chunk_rows + 2


@pytest.mark.parametrize("mode", ["random", "chunk"])
def test_sharded_epochs(mode: str) -> None:
    def shards(epoch: int, seed: int = 3) -> list[list[int]]:
        out = []
        for rank in range(2):
            s = ShardedSampler(300, 2, rank, seed=seed, mode=mode, chunk_rows=10)
            s.set_epoch(epoch)
            out.append(list(s))
        return out

    e0, e1 = shards(0), shards(1)
    assert e0 != e1
    assert shards(0) == e0  # deterministic per (seed, epoch)
    assert shards(0, seed=4) != e0
    for e in (e0, e1):
        assert sorted(e[0] + e[1]) == list(range(300))


def test_ranks_from_torch_distributed() -> None:
    if not torch.distributed.is_available():
        pytest.skip("torch.distributed is not available in this torch build")
    with pytest.raises(InvalidArgumentError, match="not initialised"):
        ShardedSampler(10)
    try:
        torch.distributed.init_process_group("gloo", store=torch.distributed.HashStore(),
                                             rank=0, world_size=1)
    except (RuntimeError, ValueError) as err:  # pragma: no cover - no gloo
        pytest.skip(f"cannot start a one-process gloo group: {err}")
    try:
        s = ShardedSampler(10, shuffle=False)
        assert (s.num_replicas, s.rank) == (1, 0)
        assert list(s) == list(range(10))
        assert ShardedSampler(10, num_replicas=2, shuffle=False).rank == 0
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.parametrize("kwargs", [
    {"num_replicas": 2, "rank": 2}, {"num_replicas": 2, "rank": -1},
    {"num_replicas": 0, "rank": 0}, {"num_replicas": -1, "rank": 0},
    {"num_replicas": "2", "rank": 0}, {"num_replicas": 2, "rank": 0.5},
    {"num_replicas": 2, "rank": True}, {"num_replicas": 2, "rank": 0, "mode": "sequential"},
    {"num_replicas": 2, "rank": 0, "mode": "chunk", "window": 0},
    {"num_replicas": 2, "rank": 0, "mode": "chunk", "chunk_rows": 0},
    {"num_replicas": 2, "rank": 0, "window": -1},
    {"num_replicas": 2, "rank": 0, "data": -5},
])
def test_sharded_sampler_bad_arguments(kwargs: dict[str, Any]) -> None:
    kwargs = {"data": 10, **kwargs}
    with pytest.raises(InvalidArgumentError):
        ShardedSampler(**kwargs)
