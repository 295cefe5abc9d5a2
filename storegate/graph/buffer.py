"""A partition buffer in front of an :class:`~storegate.graph.embeddings.EmbeddingTable`.

The table's rows are split into ``P`` contiguous partitions (the node ranges of a
:class:`~storegate.graph.plan.PartitionPlan`, or ``P`` equal ranges). :class:`PartitionBuffer`
keeps ``capacity`` of them in one block of memory (plus the optimizer state's block) and
serves :meth:`~PartitionBuffer.gather`, :meth:`~PartitionBuffer.scatter_add`,
:meth:`~PartitionBuffer.put` and :meth:`~PartitionBuffer.apply_gradients` on resident rows at
memory speed. Moving to the next state of a :class:`~storegate.graph.swaps.SwapPlan` evicts the
partitions it no longer holds and admits the new ones:

* evicted partitions that were updated are copied to a staging array and written back to the
  table by a background thread (write-behind);
* the partitions the *next* state admits are read by the same thread as soon as a swap is
  done (prefetch), so the next swap only copies them into their slots;
* one I/O thread does every table read and write, in order, so a partition read always sees
  its latest write-back; the training thread never touches the store.

:meth:`~PartitionBuffer.edge_buckets` walks a plan for edge workloads: it swaps state by state
and yields the edges of the buckets assigned to each state (read from the partitioned graph,
prefetched one state ahead too), whose both ends are resident. :meth:`~PartitionBuffer.full_load`
holds the whole table for evaluation.

Examples
--------
>>> import numpy as np
>>> from storegate import StoreGate
>>> from storegate.graph.embeddings import EmbeddingTable
>>> from storegate.graph.swaps import node_plan
>>> table = EmbeddingTable(StoreGate("numpy"), "nodes", "emb", 8, 2, init="zeros")
>>> with PartitionBuffer(table, 4, capacity=2) as buf:
...     for state in buf.states(node_plan(4, 2)):
...         for p in state:
...             lo, hi = buf.resident_range(p)
...             buf.scatter_add(np.arange(lo, hi), np.ones((hi - lo, 2)))
>>> table.to_numpy()[:, 0].tolist()
[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InvalidArgumentError, InvalidIndexError, UnsupportedOperationError
from .embeddings import (
    EmbeddingTable,
    _compute_dtype,
    _id_rows,
    _ids,
    _last_wins,
    coalesce,
    sparse_step,
)
from .swaps import SwapPlan

__all__ = ["BufferStats", "EdgeBucket", "PartitionBuffer", "equal_offsets"]

logger = logging.getLogger(__name__)


def equal_offsets(num_rows: int, num_parts: int) -> np.ndarray:
    """Marius's partition ranges: ``num_parts`` ranges of ``ceil(num_rows / num_parts)`` rows
    (the last shorter, possibly empty).

    >>> equal_offsets(10, 4).tolist()
    [0, 3, 6, 9, 10]
    """
    p = int(num_parts)
    if p < 1:
        raise InvalidArgumentError(f"num_parts={num_parts}; use at least 1 partition.")
    size = -(-int(num_rows) // p) if num_rows else 0
    return np.minimum(np.arange(p + 1, dtype=np.int64) * size, int(num_rows))


@dataclass
class BufferStats:
    """What a :class:`PartitionBuffer` spent on swapping.

    Attributes
    ----------
    swaps
        States entered.
    reads, writes
        Partitions read from / written back to the table.
    io_seconds
        Time the I/O thread spent reading and writing partitions (and edges).
    stall_seconds
        Time the training thread waited for that I/O inside swaps (and edge reads). Swaps
        copy no partition on the training thread (slots change arrays by reference), so this
        is all of a swap's cost there.
    """

    swaps: int = 0
    reads: int = 0
    writes: int = 0
    io_seconds: float = 0.0
    stall_seconds: float = 0.0

    @property
    def hidden_fraction(self) -> float:
        """Share of the I/O time the training thread did not wait for (1.0: all overlapped).

        >>> BufferStats(io_seconds=2.0, stall_seconds=0.5).hidden_fraction
        0.75
        """
        if self.io_seconds <= 0:
            return 1.0
        return max(0.0, 1.0 - self.stall_seconds / self.io_seconds)


@dataclass
class EdgeBucket:
    """The edges of one bucket ``(i, j)`` in state ``state`` of a plan (global node ids).

    Attributes
    ----------
    step
        Index of the state in the plan.
    state
        Resident partitions.
    bucket
        ``(i, j)``: sources in partition ``i``, destinations in partition ``j``.
    src, dst
        int64 global node ids.
    vars
        Requested edge vars, rows aligned with ``src``/``dst``.
    """

    step: int
    state: tuple[int, ...]
    bucket: tuple[int, int]
    src: np.ndarray
    dst: np.ndarray
    vars: dict[str, np.ndarray] = field(default_factory=dict)


class PartitionBuffer:
    """``capacity`` partitions of an :class:`~storegate.graph.embeddings.EmbeddingTable` in
    memory, swapped in the order of a :class:`~storegate.graph.swaps.SwapPlan`, with prefetch
    and write-behind (see the module docstring).

    Parameters
    ----------
    table
        The table (weights and, with Adagrad, optimizer state, swapped in lockstep).
    partitions
        A :class:`~storegate.graph.plan.PartitionPlan` (its node ranges; needed by
        :meth:`edge_buckets`), an int ``P`` (``P`` equal ranges, see :func:`equal_offsets`),
        or the ``P + 1`` range offsets.
    capacity
        Partitions held in memory, weights and state. Peak memory is that plus the partitions in
        flight: those being written back and, with ``prefetch``, those read for the next state
        (with BETA plans of capacity 2 or more, about one partition each).
    prefetch
        Read the next state's partitions in the background (default). Without it, each swap
        reads synchronously (write-back stays in the background).

    Notes
    -----
    Rows of partitions that are not resident cannot be read or updated through the buffer
    (``InvalidIndexError``): follow the plan, or use :meth:`full_load`. Do not use the table
    itself while a buffer is attached; :meth:`flush` commits both. Results are exactly those of
    the same updates applied to the table in the same order (the buffer only changes where
    rows live).

    Examples
    --------
    >>> from storegate import StoreGate
    >>> t = EmbeddingTable(StoreGate("numpy"), "n", "w", 6, 1, init="zeros")
    >>> buf = PartitionBuffer(t, 3, capacity=2)
    >>> buf.swap_to((0, 2)); buf.resident
    (0, 2)
    >>> buf.put([5], [[7.0]]); buf.flush(); t.gather([5]).tolist()
    [[7.0]]
    >>> buf.close()
    """

    def __init__(self, table: EmbeddingTable, partitions: Any, capacity: int, *,
                 prefetch: bool = True) -> None:
        if not isinstance(table, EmbeddingTable):
            raise InvalidArgumentError(
                f"table must be an EmbeddingTable, got {type(table).__name__}.")
        self.table = table
        self.graph_plan = partitions if hasattr(partitions, "bucket_offsets") else None
        if self.graph_plan is not None:
            offsets = np.asarray(self.graph_plan.node_offsets, dtype=np.int64)
        elif isinstance(partitions, (int, np.integer)) and not isinstance(partitions, bool):
            offsets = equal_offsets(table.num_embeddings, int(partitions))
        else:
            offsets = np.asarray(partitions, dtype=np.int64).reshape(-1)
        if (offsets.size < 2 or int(offsets[0]) != 0
                or int(offsets[-1]) != table.num_embeddings or bool((np.diff(offsets) < 0).any())):
            raise InvalidArgumentError(
                f"partitions must cover the table's {table.num_embeddings} rows: offsets from 0 "
                f"to {table.num_embeddings}, never decreasing (got {offsets[:6].tolist()}...); "
                "pass a PartitionPlan, a number of partitions or such offsets.")
        self.offsets = offsets
        self.num_parts = int(offsets.size - 1)
        try:
            cap = int(capacity)
        except (TypeError, ValueError):
            raise InvalidArgumentError(f"capacity must be an int, got {capacity!r}.") from None
        if cap < 1:
            raise InvalidArgumentError(f"capacity={capacity}; hold at least 1 partition.")
        self.capacity = min(cap, self.num_parts)
        self.prefetch = bool(prefetch)
        self.max_rows = int(np.diff(offsets).max()) if self.num_parts else 0
        self._has_state = table.has_state
        # one array per slot (the partition's rows), swapped by reference: admitting a
        # prefetched partition or evicting one copies nothing on the training thread
        self._w: list[np.ndarray | None] = [None] * self.capacity
        self._s: list[np.ndarray | None] = [None] * self.capacity
        self._stride = max(self.max_rows, 1)  # local id = slot * stride + row in partition
        self._g2l = np.full(table.num_embeddings, -1, dtype=np.int64)
        self._slot_of: dict[int, int] = {}
        self._slot_part = np.full(self.capacity, -1, dtype=np.int64)
        self._dirty: set[int] = set()
        self._full = False
        self._pending: dict[int, Future[tuple[np.ndarray, np.ndarray | None]]] = {}
        self._edges_pending: dict[int, Future[list[EdgeBucket]]] = {}
        self._io = ThreadPoolExecutor(1, thread_name_prefix="storegate-buffer")
        self._lock = threading.Lock()
        self.stats = BufferStats()
        self._closed = False

    # ------------------------------------------------------------------ background I/O
    def _timed(self, fn: Any, *args: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args)
        finally:
            with self._lock:
                self.stats.io_seconds += time.perf_counter() - t0

    def _submit(self, fn: Any, *args: Any) -> Future[Any]:
        if self._closed:
            raise UnsupportedOperationError("this PartitionBuffer is closed.")
        return self._io.submit(self._timed, fn, *args)

    def _wait(self, fut: Future[Any]) -> Any:
        t0 = time.perf_counter()
        try:
            return fut.result()
        finally:
            self.stats.stall_seconds += time.perf_counter() - t0

    @staticmethod
    def _own(arr: np.ndarray) -> np.ndarray:
        """``arr``, or a copy when it may share memory with the backend (a view of a cache)."""
        if arr.flags.owndata and arr.flags.writeable and arr.flags.c_contiguous:
            return arr
        return np.array(arr, copy=True, order="C")

    def _read_part(self, p: int) -> tuple[np.ndarray, np.ndarray | None]:
        lo, hi = int(self.offsets[p]), int(self.offsets[p + 1])
        w = self._own(self.table.read_range(lo, hi))
        s = self._own(self.table.read_range(lo, hi, state=True)) if self._has_state else None
        return w, s

    def _write_part(self, p: int, w: np.ndarray, s: np.ndarray | None) -> None:
        lo = int(self.offsets[p])
        self.table.write_range(lo, w)
        if s is not None:
            self.table.write_range(lo, s, state=True)

    # ------------------------------------------------------------------ residency
    @property
    def resident(self) -> tuple[int, ...]:
        """The partitions in memory (sorted)."""
        return tuple(sorted(self._slot_of))

    def resident_range(self, p: int) -> tuple[int, int]:
        """Global rows ``(start, stop)`` of partition ``p``.

        >>> from storegate import StoreGate
        >>> t = EmbeddingTable(StoreGate("numpy"), "n", "w", 10, 1)
        >>> PartitionBuffer(t, 4, capacity=2).resident_range(3)
        (9, 10)
        """
        if not 0 <= int(p) < self.num_parts:
            raise InvalidArgumentError(f"partition {p} is not in 0..{self.num_parts - 1}.")
        return int(self.offsets[p]), int(self.offsets[p + 1])

    def _evict(self, p: int) -> None:
        slot = self._slot_of.pop(p)
        self._slot_part[slot] = -1
        lo, hi = self.resident_range(p)
        self._g2l[lo:hi] = -1
        w, s = self._w[slot], self._s[slot]
        self._w[slot] = self._s[slot] = None
        if p in self._dirty and w is not None:  # written back from the detached arrays
            self._dirty.discard(p)
            self.stats.writes += 1
            self._submit(self._write_part, p, w, s)

    def _admit(self, p: int, slot: int) -> None:
        fut = self._pending.pop(p, None)
        if fut is None:
            fut = self._submit(self._read_part, p)
        w, s = self._wait(fut)
        self.stats.reads += 1
        lo, hi = self.resident_range(p)
        self._w[slot], self._s[slot] = w, s
        a = slot * self._stride
        self._g2l[lo:hi] = np.arange(a, a + hi - lo, dtype=np.int64)
        self._slot_of[p] = slot
        self._slot_part[slot] = p

    def _check_state(self, state: Sequence[int]) -> tuple[int, ...]:
        try:
            parts = tuple(sorted({int(p) for p in state}))
        except (TypeError, ValueError):
            raise InvalidArgumentError(f"a state is a set of partition ids, got {state!r}.") \
                from None
        if len(parts) > self.capacity:
            raise InvalidArgumentError(
                f"state {parts} has {len(parts)} partitions; the buffer holds {self.capacity}.")
        if parts and (parts[0] < 0 or parts[-1] >= self.num_parts):
            raise InvalidArgumentError(
                f"state {parts} names partitions outside 0..{self.num_parts - 1}.")
        return parts

    def swap_to(self, state: Sequence[int], next_state: Sequence[int] | None = None) -> None:
        """Make ``state`` the resident partitions; with ``next_state``, start reading the
        partitions it will admit in the background.

        >>> from storegate import StoreGate
        >>> t = EmbeddingTable(StoreGate("numpy"), "n", "w", 4, 1)
        >>> buf = PartitionBuffer(t, 4, capacity=2)
        >>> buf.swap_to([1, 0], next_state=[0, 3]); buf.resident, buf.stats.reads
        ((0, 1), 2)
        >>> buf.close()
        """
        if self._full:
            raise UnsupportedOperationError(
                "the buffer holds the whole table (full_load); call release() before swapping.")
        parts = self._check_state(state)
        nxt = self._check_state(next_state) if next_state is not None else None
        for p in [p for p in self._slot_of if p not in parts]:
            self._evict(p)
        free = [s for s in range(self.capacity) if s not in self._slot_of.values()]
        for p in parts:
            if p not in self._slot_of:
                self._admit(p, free.pop(0))
        for p in list(self._pending):  # prefetched for a state that did not come
            if p not in parts and (nxt is None or p not in nxt):
                self._wait(self._pending.pop(p))
        self.stats.swaps += 1
        if nxt is not None and self.prefetch:
            for p in nxt:
                if p not in self._slot_of and p not in self._pending:
                    self._pending[p] = self._submit(self._read_part, p)

    def states(self, plan: SwapPlan) -> Iterator[tuple[int, ...]]:
        """Enter each state of ``plan`` in turn (prefetching the next) and yield it.

        >>> from storegate import StoreGate
        >>> from storegate.graph.swaps import beta_plan
        >>> t = EmbeddingTable(StoreGate("numpy"), "n", "w", 9, 1)
        >>> with PartitionBuffer(t, 3, capacity=2) as buf:
        ...     print(list(buf.states(beta_plan(3, 2, seed=None))))
        [(0, 1), (0, 2), (1, 2)]
        """
        self._check_plan(plan)
        for k, state in enumerate(plan.states):
            nxt = plan.states[k + 1] if k + 1 < len(plan.states) else None
            self.swap_to(state, nxt)
            yield state

    def _check_plan(self, plan: SwapPlan) -> None:
        if not isinstance(plan, SwapPlan):
            raise InvalidArgumentError(f"plan must be a SwapPlan, got {type(plan).__name__}.")
        if plan.num_parts != self.num_parts or plan.capacity > self.capacity:
            raise InvalidArgumentError(
                f"the plan is for {plan.num_parts} partitions and a buffer of {plan.capacity};"
                f" this buffer has {self.num_parts} partitions and capacity {self.capacity}.")

    # ------------------------------------------------------------------ edges
    def _read_edges(self, step: int, state: tuple[int, ...],
                    buckets: list[tuple[int, int]], edge_vars: tuple[str, ...]
                    ) -> list[EdgeBucket]:
        gp = self.graph_plan
        assert gp is not None
        db = self.table.storegate.db
        out = []
        for i, j in buckets:
            a, b = (int(x) for x in gp.bucket_range(i, j))
            sl = slice(a, b, 1)
            src = np.asarray(db.read(gp.edge_data_id, gp.phase, "row", sl), dtype=np.int64)
            dst = np.asarray(db.read(gp.edge_data_id, gp.phase, "col", sl), dtype=np.int64)
            ev = {v: np.asarray(db.read(gp.edge_id, gp.phase, v, sl)) for v in edge_vars}
            out.append(EdgeBucket(step, state, (i, j), src, dst, ev))
        return out

    def edge_buckets(self, plan: SwapPlan, edge_vars: Sequence[str] = ()
                     ) -> Iterator[EdgeBucket]:
        """Walk ``plan`` (a BETA plan): per state, swap it in and yield the edges of each bucket
        assigned to it (both ends resident), with the edge vars ``edge_vars``.

        Needs the buffer to be built on the :class:`~storegate.graph.plan.PartitionPlan` of a
        partitioned graph (the edges are read from its bucket ranges, one state ahead).

        Examples
        --------
        See ``examples/link_prediction.py`` and ``docs/graphs.md``.
        """
        gp = self.graph_plan
        if gp is None:
            raise UnsupportedOperationError(
                "edge_buckets needs the PartitionPlan of a partitioned graph; build the buffer "
                "with partitions=storegate.graph.load_plan(sg) (see storegate.graph.partition).")
        self._check_plan(plan)
        names = tuple(edge_vars)
        db = self.table.storegate.db
        for v in names:
            if not db.has_var(gp.edge_id, gp.phase, v):
                from ..errors import VarNotFoundError

                raise VarNotFoundError(
                    f"edge var {v!r} is not in data_id {gp.edge_id!r} (phase {gp.phase!r}); "
                    f"edge vars there: {db.var_names(gp.edge_id, gp.phase)}.")
        n = plan.num_states
        for k, state in enumerate(plan.states):
            fut = self._edges_pending.pop(k, None)
            if fut is None:
                fut = self._submit(self._read_edges, k, tuple(state), list(plan.buckets[k]), names)
            nxt = plan.states[k + 1] if k + 1 < n else None
            self.swap_to(state, nxt)
            if k + 1 < n:  # queued after the next state's partitions
                self._edges_pending[k + 1] = self._submit(
                    self._read_edges, k + 1, tuple(plan.states[k + 1]),
                    list(plan.buckets[k + 1]), names)
            yield from self._wait(fut)
        self._edges_pending.clear()

    # ------------------------------------------------------------------ rows
    def _local(self, ids: Any) -> np.ndarray:
        flat = _ids(ids, self.table.num_embeddings)
        local = self._g2l[flat]
        if local.size and int(local.min()) < 0:
            missing = np.unique(flat[local < 0])
            parts = np.unique(np.searchsorted(self.offsets, missing, side="right") - 1)
            raise InvalidIndexError(
                f"rows {missing[:5].tolist()} are in partitions {parts[:8].tolist()}, which are "
                f"not in the buffer (resident: {list(self.resident)}); follow the swap plan, or "
                "call full_load() to hold the whole table.")
        return local

    def _mark(self, local: np.ndarray) -> None:
        if self._full:
            self._dirty.add(-1)
            return
        if local.size:
            slots = np.unique(local // self._stride)
            self._dirty.update(int(p) for p in self._slot_part[slots])

    def _take(self, arrs: list[np.ndarray | None], local: np.ndarray) -> np.ndarray:
        """Rows at buffer-local ids, from the slot arrays (one fancy index per slot used)."""
        stride = self._stride
        slots = local // stride
        first = int(slots[0]) if slots.size else 0
        if slots.size == 0 or bool((slots == first).all()):
            arr = arrs[first]
            if arr is None:
                return np.empty((0, self.dim), self.dtype)
            return arr[local - first * stride]
        out = np.empty((local.size, self.dim), dtype=self.dtype)
        for slot in np.unique(slots):
            m = slots == slot
            out[m] = arrs[int(slot)][local[m] - int(slot) * stride]  # type: ignore[index]
        return out

    def _assign(self, arrs: list[np.ndarray | None], local: np.ndarray,
                rows: np.ndarray) -> None:
        """Write rows at unique buffer-local ids."""
        stride = self._stride
        slots = local // stride
        for slot in np.unique(slots):
            m = slots == slot
            arrs[int(slot)][local[m] - int(slot) * stride] = rows[m]  # type: ignore[index]
        self._mark(local)

    @property
    def num_embeddings(self) -> int:
        """Rows of the table."""
        return self.table.num_embeddings

    @property
    def dim(self) -> int:
        """Width of the table."""
        return self.table.dim

    @property
    def dtype(self) -> np.dtype:
        """Dtype of the table."""
        return self.table.dtype

    def gather(self, ids: Any) -> np.ndarray:
        """Rows at ``ids`` (global row numbers; all must be resident).

        >>> from storegate import StoreGate
        >>> t = EmbeddingTable(StoreGate("numpy"), "n", "w", 4, 1, init="zeros")
        >>> with PartitionBuffer(t, 2, capacity=1) as buf:
        ...     buf.swap_to([1]); print(buf.gather([3, 2]).shape)
        (2, 1)
        """
        shape = np.shape(ids.detach().cpu().numpy() if hasattr(ids, "detach") else ids)
        return self._take(self._w, self._local(ids)).reshape(*shape, self.dim)

    def gather_state(self, ids: Any) -> np.ndarray:
        """Optimizer-state rows at ``ids`` (resident)."""
        self._need_state()
        return self._take(self._s, self._local(ids))

    def _need_state(self) -> None:
        if not self._has_state:
            raise InvalidArgumentError("the table has no optimizer state (optimizer='adagrad').")

    def _rows(self, ids: Any, values: Any) -> tuple[np.ndarray, np.ndarray]:
        flat, v = _id_rows(ids, values, self.table.num_embeddings, self.dim)
        return self._local(flat), v

    def put(self, ids: Any, values: Any) -> None:
        """Overwrite resident rows (for a repeated id, its last value wins)."""
        local, v = self._rows(ids, values)
        uniq, rows = _last_wins(local, v)
        self._assign(self._w, uniq, rows)

    def put_state(self, ids: Any, values: Any) -> None:
        """Overwrite resident optimizer-state rows."""
        self._need_state()
        local, v = self._rows(ids, values)
        uniq, rows = _last_wins(local, v)
        self._assign(self._s, uniq, rows)

    def scatter_add(self, ids: Any, deltas: Any) -> None:
        """Add ``deltas`` to resident rows; deltas of a repeated id are summed."""
        local, v = self._rows(ids, deltas)
        cdt = _compute_dtype(self.dtype)
        uniq, sums = coalesce(local, v.astype(cdt, copy=False))
        self._add_local(uniq, sums)

    def _add_local(self, local: np.ndarray, sums: np.ndarray) -> None:
        cdt = _compute_dtype(self.dtype)
        rows = self._take(self._w, local).astype(cdt, copy=False) + sums
        self._assign(self._w, local, rows.astype(self.dtype, copy=False))

    # the optimizer's fast paths (ids already unique, see sparse_step)
    def _add_unique(self, ids: np.ndarray, sums: np.ndarray) -> None:
        self._add_local(self._local(ids), sums)

    def _put_state_unique(self, ids: np.ndarray, rows: np.ndarray) -> None:
        self._need_state()
        self._assign(self._s, self._local(ids), rows.astype(self.dtype, copy=False))

    def apply_gradients(self, ids: Any, grads: Any) -> None:
        """One optimizer step of the table's optimizer on resident rows (see
        :func:`~storegate.graph.embeddings.sparse_step`)."""
        t = self.table
        if t.optimizer is None:
            raise InvalidArgumentError(
                "the table has no optimizer; open it with optimizer='sgd' or 'adagrad'.")
        sparse_step(self, ids, grads, optimizer=t.optimizer, lr=t.lr, eps=t.eps)

    # ------------------------------------------------------------------ whole table
    def _drain(self) -> None:
        for fut in list(self._pending.values()):
            self._wait(fut)
        self._pending.clear()
        self._wait(self._submit(lambda: None))  # everything queued before is done

    def full_load(self) -> None:
        """Hold the whole table in memory (for evaluation): the resident partitions are
        written back, then every row is read. :meth:`release` goes back to swapping.

        >>> from storegate import StoreGate
        >>> t = EmbeddingTable(StoreGate("numpy"), "n", "w", 5, 1, init="zeros")
        >>> with PartitionBuffer(t, 5, capacity=2) as buf:
        ...     buf.full_load(); print(buf.gather([0, 4]).ravel().tolist())
        [0.0, 0.0]
        """
        if self._full:
            return
        for p in list(self._slot_of):
            self._evict(p)
        self._drain()
        n = self.table.num_embeddings
        w = self._wait(self._submit(lambda: self._own(self.table.read_range(0, n))))
        s = (self._wait(self._submit(lambda: self._own(self.table.read_range(0, n, state=True))))
             if self._has_state else None)
        self._w, self._s = [w], [s]
        self._stride = max(n, 1)
        self._g2l = np.arange(n, dtype=np.int64)
        self._full = True

    def release(self) -> None:
        """Leave :meth:`full_load` (writing back what was updated) and free the memory; the
        buffer is then empty and swaps again.

        >>> from storegate import StoreGate
        >>> t = EmbeddingTable(StoreGate("numpy"), "n", "w", 4, 1, init="zeros")
        >>> with PartitionBuffer(t, 2, capacity=1) as buf:
        ...     buf.full_load(); buf.put([3], [[1.0]]); buf.release(); buf.resident
        ()
        >>> t.gather([3]).tolist()
        [[1.0]]
        """
        if self._full:
            if self._dirty:
                self._wait(self._submit(self._write_all, self._w[0], self._s[0]))
            self._dirty.clear()
            self._full = False
            self._w = [None] * self.capacity
            self._s = [None] * self.capacity
            self._stride = max(self.max_rows, 1)
        else:
            for p in list(self._slot_of):
                self._evict(p)
            self._drain()
        self._g2l = np.full(self.table.num_embeddings, -1, dtype=np.int64)

    def _write_all(self, w: np.ndarray | None, s: np.ndarray | None) -> None:
        if w is not None:
            self.table.write_range(0, w)
        if s is not None:
            self.table.write_range(0, s, state=True)

    def flush(self) -> None:
        """Write back every updated resident partition and commit the table
        (:meth:`EmbeddingTable.flush`): a kill after this leaves the table as it is now."""
        # the training thread waits for these writes (it could change the arrays otherwise)
        if self._full:
            if self._dirty:
                self._wait(self._submit(self._write_all, self._w[0], self._s[0]))
                self._dirty.clear()
        else:
            for p in sorted(self._dirty):
                slot = self._slot_of[p]
                self._submit(self._write_part, p, self._w[slot], self._s[slot])
                self.stats.writes += 1
            self._dirty.clear()
        self._wait(self._submit(self.table.flush))

    def close(self, flush: bool = True) -> None:
        """Flush (unless ``flush=False``: updates since the last flush are dropped) and stop
        the I/O thread."""
        if self._closed:
            return
        try:
            if flush:
                self.flush()
            else:
                self._drain()
                self._wait(self._submit(self.table.discard))
        finally:
            self._closed = True
            self._io.shutdown(wait=True)

    def __enter__(self) -> PartitionBuffer:
        return self

    def __exit__(self, exc_type: Any, *exc: object) -> None:
        self.close(flush=exc_type is None)

    def __repr__(self) -> str:
        return (f"PartitionBuffer({self.table!r}, {self.num_parts} partitions, capacity "
                f"{self.capacity}, resident {list(self.resident)})")
