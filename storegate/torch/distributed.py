"""Multi-process training with ``torch.distributed``: set up the process group, open the
shared store read-only, and give each rank a ``DataLoader`` over its shard.

Every rank (process) of a job opens the **same** store read-only (:func:`open_shared`): a
read-only open takes no lock and writes nothing, so any number of ranks — and their
``DataLoader`` workers — read one local directory or one object-storage URL concurrently.
:func:`distributed_loader` wraps a dataset in a ``DataLoader`` over a
:class:`~storegate.torch.ShardedSampler` for this rank: the ranks' shards are disjoint and
together cover every row once per epoch (``DistributedSampler``'s contract), a batch is still
one batched backend read (``StoreGateDataset.__getitems__``), and ``loader.set_epoch(epoch)``
gives the next epoch's order.

A script that runs under ``torchrun`` and as a plain ``python train.py`` alike::

    from storegate.torch import (StoreGateDataset, distributed_loader, init_distributed,
                                 open_shared)

    rank, world_size = init_distributed()          # from torchrun's env, or world size 1
    sg = open_shared("s3://bucket/jets.zarr")      # every rank, read-only
    loader = distributed_loader(StoreGateDataset(sg, "train", ("x", "y")), batch_size=1024,
                                mode="chunk")
    for epoch in range(10):
        loader.set_epoch(epoch)
        for x, y in loader:
            ...

Examples
--------
>>> import numpy as np
>>> from storegate import StoreGate
>>> from storegate.torch import StoreGateDataset
>>> sg = StoreGate("numpy", data_id="d")
>>> sg.add_data("row", np.arange(10))
>>> ds = StoreGateDataset(sg, "train", "row")
>>> shards = [distributed_loader(ds, 5, shuffle=False, num_replicas=2, rank=r)
...           for r in (0, 1)]
>>> [[b.tolist() for b in loader] for loader in shards]
[[[0, 2, 4, 6, 8]], [[1, 3, 5, 7, 9]]]
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Mapping, Sized
from typing import Any, NamedTuple, cast

import torch
import torch.distributed as dist

from ..errors import InvalidArgumentError, MissingDependencyError
from .dataset import StoreGateDataset, collate_batch
from .samplers import ShardedSampler

__all__ = [
    "DistributedInfo",
    "DistributedLoader",
    "close_distributed",
    "distributed_info",
    "distributed_loader",
    "init_distributed",
    "is_main_process",
    "open_shared",
]

logger = logging.getLogger(__name__)

#: The environment variables ``torchrun`` (``python -m torch.distributed.run``) sets.
ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")

_MODES = {"random": 0, "chunk": 1}


class DistributedInfo(NamedTuple):
    """Where this process stands in the job (see :func:`distributed_info`)."""

    rank: int
    """This process's rank, ``0 <= rank < world_size``."""
    world_size: int
    """The number of processes (ranks) of the job."""
    local_rank: int
    """The rank on this node (``LOCAL_RANK``; e.g. the GPU to use)."""
    initialized: bool
    """Whether the ``torch.distributed`` default process group is initialised."""


# ---------------------------------------------------------------------------------- environment
def _available() -> bool:
    return bool(dist.is_available())


def _env_int(name: str, env: Mapping[str, str]) -> int | None:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise InvalidArgumentError(
            f"environment variable {name}={raw!r} is not an integer; torchrun sets it (launch "
            f"with `torchrun ...`) or unset it to run as a single process.") from None


def _check_rank(rank: int, world_size: int, where: str) -> None:
    for name, value in (("rank", rank), ("world_size", world_size)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise InvalidArgumentError(f"{name} must be an int, got {value!r} ({where}).")
    if world_size < 1 or not 0 <= rank < world_size:
        raise InvalidArgumentError(
            f"rank {rank} is not in [0, world_size={world_size}) ({where}); every process "
            "needs a distinct rank below the world size.")


def _timeout(timeout: float | datetime.timedelta | None) -> datetime.timedelta | None:
    if timeout is None:
        return None
    if isinstance(timeout, datetime.timedelta):
        seconds = timeout.total_seconds()
    elif isinstance(timeout, int | float) and not isinstance(timeout, bool):
        seconds = float(timeout)
    else:
        raise InvalidArgumentError(
            f"timeout must be seconds (a number) or a datetime.timedelta, got {timeout!r}.")
    if not seconds > 0:
        raise InvalidArgumentError(f"timeout must be positive, got {seconds} s.")
    return datetime.timedelta(seconds=seconds)


def _check_backend(backend: str) -> None:
    if not isinstance(backend, str) or not backend:
        raise InvalidArgumentError(
            f"backend must be a torch.distributed backend name ('gloo', 'nccl', ...), got "
            f"{backend!r}.")
    if ":" in backend or "," in backend:  # 'cpu:gloo,cuda:nccl': torch checks each part
        return
    known = ("gloo", "nccl", "mpi", "ucc", "xccl")
    if backend.lower() not in known and backend not in dist.Backend.backend_list:
        raise InvalidArgumentError(
            f"unknown torch.distributed backend {backend!r}; use 'gloo' (CPU) or 'nccl' "
            f"(NVIDIA GPUs); this torch knows {sorted(dist.Backend.backend_list)}.")
    if not dist.is_backend_available(backend.lower()):
        raise MissingDependencyError(
            f"this build of torch has no {backend!r} backend for torch.distributed; use "
            "backend='gloo' (CPU, always built) or install a torch build with it.")


def distributed_info() -> DistributedInfo:
    """This process's rank, world size and local rank.

    From the initialised default process group when there is one, else from the environment
    ``torchrun`` sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), else a single process
    ``(0, 1, 0)``. ``local_rank`` is ``LOCAL_RANK`` when set, else the rank.

    Examples
    --------
    >>> distributed_info()              # a plain `python` process
    DistributedInfo(rank=0, world_size=1, local_rank=0, initialized=False)
    """
    env = os.environ
    if _available() and dist.is_initialized():
        rank, world = int(dist.get_rank()), int(dist.get_world_size())
        local = _env_int("LOCAL_RANK", env)
        return DistributedInfo(rank, world, rank if local is None else local, True)
    rank_env, world_env = _env_int("RANK", env), _env_int("WORLD_SIZE", env)
    rank = 0 if rank_env is None else rank_env
    world = 1 if world_env is None else world_env
    local = _env_int("LOCAL_RANK", env)
    return DistributedInfo(rank, world, rank if local is None else local, False)


def is_main_process() -> bool:
    """Whether this is rank 0 (the process that logs, evaluates and saves checkpoints).

    >>> is_main_process()
    True
    """
    return distributed_info().rank == 0


# ---------------------------------------------------------------------------------- process group
def init_distributed(
    backend: str = "gloo",
    *,
    init_method: str | None = None,
    rank: int | None = None,
    world_size: int | None = None,
    timeout: float | datetime.timedelta | None = None,
) -> tuple[int, int]:
    """Initialise the ``torch.distributed`` default process group; return ``(rank,
    world_size)``.

    Where the group comes from:

    * already initialised (by this function or by your own code): nothing is done;
    * ``init_method`` given (``'tcp://host:port'``, ``'file:///shared/path'``, ``'env://'``):
      that rendezvous, with ``rank``/``world_size`` from the arguments or else from ``RANK``
      / ``WORLD_SIZE``;
    * the environment ``torchrun`` sets (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``,
      ``MASTER_PORT``; arguments override ``RANK``/``WORLD_SIZE``): ``env://``;
    * none of these (a plain ``python train.py``), or a world size of 1 without
      ``MASTER_ADDR``: a **one-process group** over an in-memory store — no network, no
      error — so the same script runs alone and under ``torchrun``, and collectives
      (``all_reduce``, ...) work in both.

    Parameters
    ----------
    backend
        ``'gloo'`` (CPU; the default) or ``'nccl'`` (NVIDIA GPUs; then call
        ``torch.cuda.set_device(local_rank)`` yourself, see :func:`distributed_info`), or any
        backend string ``torch.distributed.init_process_group`` takes.
    init_method
        A rendezvous URL; ``None``: the environment as above.
    rank, world_size
        Override ``RANK`` / ``WORLD_SIZE``.
    timeout
        Seconds (or a ``timedelta``) a rank waits for the others, at the rendezvous and in
        every collective; ``None``: torch's default (30 minutes for gloo). A rank that dies
        makes the others fail after this long instead of hanging forever.

    Returns
    -------
    tuple of int
        ``(rank, world_size)``.

    Raises
    ------
    InvalidArgumentError
        Half of the environment (``RANK`` without ``WORLD_SIZE``, a world size above 1
        without ``MASTER_ADDR``/``MASTER_PORT``), non-integer values, a rank out of range, a
        bad timeout or backend name.
    MissingDependencyError
        torch was built without ``torch.distributed`` or without the backend.

    Notes
    -----
    Errors of the rendezvous itself (a master that cannot be reached, a timeout) are torch's
    own exceptions, with a note saying what was tried. Call :func:`close_distributed` at the
    end of the script.

    Examples
    --------
    >>> init_distributed()              # no torchrun environment: a one-process group
    (0, 1)
    >>> init_distributed()              # idempotent
    (0, 1)
    >>> close_distributed()
    """
    if not _available():
        raise MissingDependencyError(
            "this build of torch has no torch.distributed; install a regular torch wheel "
            "(https://pytorch.org/get-started/).")
    if dist.is_initialized():
        got = (int(dist.get_rank()), int(dist.get_world_size()))
        logger.debug("init_distributed: the process group is already initialised: rank %d "
                     "of %d", *got)
        return got
    _check_backend(backend)
    delta = _timeout(timeout)
    env = os.environ
    rank_v = rank if rank is not None else _env_int("RANK", env)
    world_v = world_size if world_size is not None else _env_int("WORLD_SIZE", env)
    kwargs: dict[str, Any] = {"backend": backend}
    if delta is not None:
        kwargs["timeout"] = delta

    if init_method is not None:
        if not isinstance(init_method, str) or "://" not in init_method:
            raise InvalidArgumentError(
                f"init_method must be a URL such as 'tcp://host:port', 'file:///path' or "
                f"'env://', got {init_method!r}.")
        if init_method != "env://" and (rank_v is None or world_v is None):
            raise InvalidArgumentError(
                f"init_method={init_method!r} needs rank= and world_size= (or the RANK and "
                "WORLD_SIZE environment variables).")
        if rank_v is not None and world_v is not None:
            _check_rank(rank_v, world_v, "init_distributed")
            kwargs.update(rank=rank_v, world_size=world_v)
        kwargs["init_method"] = init_method
        where = f"init_method={init_method!r}"
    elif rank_v is None and world_v is None:
        kwargs.update(store=dist.HashStore(), rank=0, world_size=1)
        where = "a one-process group (no RANK/WORLD_SIZE in the environment)"
    else:
        if rank_v is None or world_v is None:
            missing = "RANK" if rank_v is None else "WORLD_SIZE"
            raise InvalidArgumentError(
                f"{missing} is not set while {'WORLD_SIZE' if rank_v is None else 'RANK'} is: "
                "launch with `torchrun` (it sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR "
                f"and MASTER_PORT), set {missing} yourself, or unset both to run as one "
                "process.")
        _check_rank(rank_v, world_v, "RANK/WORLD_SIZE")
        missing_master = [k for k in ("MASTER_ADDR", "MASTER_PORT") if not env.get(k)]
        if world_v == 1 and missing_master:
            kwargs.update(store=dist.HashStore(), rank=0, world_size=1)
            where = "a one-process group (WORLD_SIZE=1)"
        else:
            if missing_master:
                raise InvalidArgumentError(
                    f"WORLD_SIZE={world_v} but {' and '.join(missing_master)} "
                    f"{'is' if len(missing_master) == 1 else 'are'} not set: set MASTER_ADDR to "
                    "the host of rank 0 and MASTER_PORT to a free port on it (torchrun does "
                    "this), or pass init_method='tcp://host:port'.")
            _env_int("MASTER_PORT", env)
            kwargs.update(init_method="env://", rank=rank_v, world_size=world_v)
            where = (f"env:// (MASTER_ADDR={env['MASTER_ADDR']}, "
                     f"MASTER_PORT={env['MASTER_PORT']})")
    try:
        dist.init_process_group(**kwargs)
    except Exception as err:
        err.add_note(
            f"storegate.torch.init_distributed: backend={backend!r}, rendezvous {where}, "
            f"rank={kwargs.get('rank')}, world_size={kwargs.get('world_size')}. Check that "
            "every rank was started with the same world size and a distinct rank, that the "
            "master address/port is reachable from every node, and the timeout.")
        raise
    got = (int(dist.get_rank()), int(dist.get_world_size()))
    logger.info("torch.distributed initialised (%s, %s): rank %d of %d", backend, where, *got)
    return got


def close_distributed() -> None:
    """Destroy the default process group if there is one (idempotent); call it at the end of
    a script, after the last collective.

    >>> close_distributed()             # nothing to close: a no-op
    """
    if _available() and dist.is_initialized():
        dist.destroy_process_group()
        logger.debug("torch.distributed process group destroyed")


# ---------------------------------------------------------------------------------- the store
def open_shared(
    location: str | os.PathLike[str],
    *,
    backend: str | None = None,
    data_id: str | None = None,
    storage_options: dict[str, Any] | None = None,
    **backend_args: Any,
) -> Any:
    """Open the store every rank reads, read-only: ``StoreGate.open(location, mode='r')``.

    A read-only open takes no writer lock and writes nothing, so every rank of a job (and
    every ``DataLoader`` worker, which reopens the store in its own process) can open the same
    local directory or object-storage URL at once. Write the store from one process *before*
    launching the job.

    Parameters
    ----------
    location
        A store directory or an fsspec URL (``s3://bucket/jets.zarr``, ``gs://...``).
    backend
        The backend name; ``None`` recognises the store by its files. With
        ``storage_options`` it defaults to ``'zarr'``, the built-in backend that reads fsspec
        URLs (the recognition step cannot see the options).
    data_id
        The data_id to select (default: the store's only one).
    storage_options
        fsspec options for a URL (``endpoint_url``, ``key``, ``secret``, ...). Without them,
        s3fs reads the usual environment (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
        ``AWS_ENDPOINT_URL``, ``AWS_PROFILE``, ...), which is how credentials usually reach
        the ranks of a multi-node job.
    **backend_args
        Further backend options, e.g. ``cache_bytes=`` (the zarr backend keeps a decoded copy
        of the chunks it has read, up to a quarter of the RAM per process by default: divide
        it by the number of ranks on a node).

    Returns
    -------
    StoreGate

    Raises
    ------
    InvalidArgumentError
        ``mode=`` other than ``'r'`` in ``backend_args``.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from storegate import StoreGate
    >>> path = tempfile.mkdtemp() + "/store.zarr"
    >>> sg = StoreGate("zarr", {"output_dir": path}, data_id="d")
    >>> sg.add_data("x", np.arange(6), "train"); sg.compile(); sg.close()
    >>> shared = open_shared(path)
    >>> shared.data_id, shared["train"]["x"][[5, 0]].tolist()
    ('d', [5, 0])
    """
    from ..gate import StoreGate

    mode = backend_args.pop("mode", "r")
    if mode != "r":
        raise InvalidArgumentError(
            f"open_shared opens the store read-only (every rank reads it at once), got "
            f"mode={mode!r}; write the store from one process before launching the job, or "
            "use StoreGate.open(location, mode=...) in that one process.")
    if storage_options is not None:
        if not isinstance(storage_options, Mapping):
            raise InvalidArgumentError(
                f"storage_options must be a dict of fsspec options, got {storage_options!r}.")
        backend_args["storage_options"] = dict(storage_options)
        if backend is None:
            backend = "zarr"
    return StoreGate.open(os.fspath(location), backend=backend, mode="r", data_id=data_id,
                          backend_args=backend_args or None)


# ---------------------------------------------------------------------------------- the loader
class DistributedLoader(torch.utils.data.DataLoader):
    """A ``DataLoader`` over one rank's shard (made by :func:`distributed_loader`).

    ``loader.sampler`` (and ``loader.batch_sampler.sampler``) is the
    :class:`~storegate.torch.ShardedSampler`; :meth:`set_epoch` reaches it.
    """

    shard_sampler: ShardedSampler

    def set_epoch(self, epoch: int) -> None:
        """Use epoch ``epoch``'s order (call it on every rank, with the same value, before
        iterating an epoch). It works with worker processes, persistent ones included: the
        order is drawn in this process, the workers only read the rows they are given."""
        self.shard_sampler.set_epoch(epoch)

    @property
    def epoch(self) -> int:
        """The epoch of the current order."""
        return self.shard_sampler.epoch


def _verify_agreement(sampler: ShardedSampler) -> None:
    """One all-gather of the sampler's settings: ranks that disagree on the dataset length,
    seed or mode would silently overlap or miss rows; this makes every rank fail instead."""
    backend = str(dist.get_backend())
    if "gloo" not in backend and "mpi" not in backend:
        logger.debug("distributed_loader: no CPU collective on backend %r; not verified",
                     backend)
        return
    fields = ("rows", "seed", "shuffle", "drop_last", "mode", "chunk_rows", "window")
    mine = torch.tensor([sampler.n, sampler.seed & 0x7FFF_FFFF_FFFF_FFFF, int(sampler.shuffle),
                         int(sampler.drop_last), _MODES[sampler.mode], sampler.chunk_rows,
                         sampler.window], dtype=torch.int64)
    gathered = [torch.empty_like(mine) for _ in range(sampler.num_replicas)]
    dist.all_gather(gathered, mine)
    table = torch.stack(gathered)
    differ = [f for i, f in enumerate(fields) if bool((table[:, i] != table[0, i]).any())]
    if differ:
        per_rank = {f: table[:, fields.index(f)].tolist() for f in differ}
        raise InvalidArgumentError(
            f"the ranks disagree on {', '.join(differ)} (per rank: {per_rank}); every rank must "
            "build its loader over the same rows with the same seed and options, or the shards "
            "overlap and miss rows. Open the same store (a finished one: no rank may see rows "
            "another does not) and pass the same arguments on every rank.")


def distributed_loader(
    dataset: torch.utils.data.Dataset[Any],
    batch_size: int,
    *,
    shuffle: bool = True,
    seed: int = 0,
    mode: str = "random",
    drop_last: bool = False,
    drop_last_batch: bool = False,
    num_workers: int = 0,
    chunk_rows: int | None = None,
    window: int = 8,
    num_replicas: int | None = None,
    rank: int | None = None,
    verify: bool = True,
    **dataloader_kwargs: Any,
) -> DistributedLoader:
    """A ``DataLoader`` over this rank's shard of ``dataset``, for ``torch.distributed``.

    The shard comes from a :class:`~storegate.torch.ShardedSampler` (``DistributedSampler``'s
    contract): each of the ``world_size`` ranks gets ``ceil(N / world_size)`` rows per epoch
    (``floor`` with ``drop_last=True``), the shards are disjoint and together hold every row,
    and every rank gets the same number of batches, so ``DistributedDataParallel`` steps stay
    in lockstep. Call ``loader.set_epoch(epoch)`` before each epoch.

    Parameters
    ----------
    dataset
        A :class:`~storegate.torch.StoreGateDataset` (each batch is then **one** batched read,
        returned already collated) or any map-style dataset.
    batch_size
        Rows per batch on this rank (the global batch is ``batch_size * world_size``).
    shuffle, seed
        A new order every epoch, from ``seed + epoch`` (the seed must be the same on every
        rank). ``shuffle=False``: rows in order, dealt out round-robin.
    mode
        ``'random'``: the rows ``torch.utils.data.DistributedSampler`` would give (a uniform
        permutation, strided over ranks: every rank touches every storage chunk). ``'chunk'``:
        a chunk-aware order cut into one contiguous block per rank, so each rank reads about
        ``1 / world_size`` of the chunks per epoch, near-sequentially — the mode for object
        storage and cold disks.
    drop_last
        ``False`` (default): when ``N`` is not divisible by the world size, the order is padded
        by repeating its first rows (up to ``world_size - 1`` rows are seen twice per epoch), as
        ``DistributedSampler`` does. ``True``: the tail is dropped instead (up to
        ``world_size - 1`` rows are not seen that epoch; no row twice).
    drop_last_batch
        The ``DataLoader``'s ``drop_last``: drop this rank's last, incomplete batch.
    num_workers
        ``DataLoader`` worker processes per rank; each reopens the store in its own process.
    chunk_rows, window
        For ``mode='chunk'`` (see :class:`~storegate.torch.ChunkShuffleSampler`); by default
        the dataset's storage chunking and 8 chunks.
    num_replicas, rank
        Override the world size and rank of the default process group (e.g. without one).
    verify
        With the ranks taken from an initialised gloo (or mpi) process group, gather every
        rank's dataset length, seed and options once and raise on every rank if they differ
        (a collective: every rank must call this function together).
    **dataloader_kwargs
        Any other ``DataLoader`` argument (``persistent_workers``, ``pin_memory``,
        ``multiprocessing_context``, ``prefetch_factor``, ``collate_fn``, ...).

    Returns
    -------
    DistributedLoader
        A ``DataLoader`` with ``set_epoch(epoch)``; ``loader.sampler`` is the
        ``ShardedSampler``.

    Raises
    ------
    InvalidArgumentError
        A bad ``batch_size`` or option, ``sampler``/``batch_sampler``/``shuffle`` in
        ``dataloader_kwargs``, no process group and no ``num_replicas``/``rank``, or (with
        ``verify``) ranks that disagree.

    Examples
    --------
    >>> import numpy as np
    >>> from storegate import StoreGate
    >>> from storegate.torch import StoreGateDataset
    >>> sg = StoreGate("numpy", data_id="d")
    >>> sg.add_data("x", np.arange(7.0))
    >>> ds = StoreGateDataset(sg, "train", "x")
    >>> loader = distributed_loader(ds, 2, num_replicas=2, rank=1, seed=3)
    >>> loader.set_epoch(1)
    >>> len(loader), sum(len(b) for b in loader)     # 7 rows: 4 per rank (one repeated)
    (2, 4)
    """
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise InvalidArgumentError(
            f"batch_size must be a positive int (rows per batch on each rank), got "
            f"{batch_size!r}.")
    for name in ("sampler", "batch_sampler", "shuffle", "drop_last"):
        if name in dataloader_kwargs:
            raise InvalidArgumentError(
                f"distributed_loader sets the DataLoader's {name!r} itself (the rank's "
                "ShardedSampler); pass shuffle=, drop_last= (the shard) or drop_last_batch= "
                "(the DataLoader's) to distributed_loader, or build a DataLoader yourself "
                "with sampler=ShardedSampler(...).")
    for name, value in (("shuffle", shuffle), ("drop_last", drop_last),
                        ("drop_last_batch", drop_last_batch), ("verify", verify)):
        if not isinstance(value, bool):
            raise InvalidArgumentError(f"{name} must be True or False, got {value!r}.")
    if not isinstance(num_workers, int) or isinstance(num_workers, bool) or num_workers < 0:
        raise InvalidArgumentError(
            f"num_workers must be a non-negative int, got {num_workers!r}.")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise InvalidArgumentError(f"seed must be an int (the same on every rank), got {seed!r}.")
    from_group = num_replicas is None or rank is None
    if from_group and not (_available() and dist.is_initialized()):
        raise InvalidArgumentError(
            "torch.distributed is not initialised: call storegate.torch.init_distributed() "
            "first (under torchrun or alone), or pass num_replicas= and rank=.")
    sampler = ShardedSampler(cast(Sized, dataset), num_replicas=num_replicas, rank=rank,
                             shuffle=shuffle, seed=seed, drop_last=drop_last, mode=mode,
                             chunk_rows=chunk_rows, window=window)
    if verify and from_group and sampler.num_replicas > 1:
        _verify_agreement(sampler)
    if isinstance(dataset, StoreGateDataset):
        dataloader_kwargs.setdefault("collate_fn", collate_batch)
    loader = DistributedLoader(dataset, batch_size=batch_size, sampler=sampler,
                               drop_last=drop_last_batch, num_workers=num_workers,
                               **dataloader_kwargs)
    loader.shard_sampler = sampler
    logger.debug("distributed_loader: rank %d of %d, %d rows in %d batches (%s)", sampler.rank,
                 sampler.num_replicas, len(sampler), len(loader), mode)
    return loader
