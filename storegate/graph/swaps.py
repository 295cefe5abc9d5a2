"""Swap plans: which partitions a buffer holds at each step of an epoch.

A :class:`~storegate.graph.buffer.PartitionBuffer` keeps ``capacity`` of the ``P`` partitions
of an embedding table in memory. A *swap plan* is the list of buffer states it goes through in
one epoch (each state a set of resident partitions) and, for edge workloads, the edge buckets
``(i, j)`` processed in each state (both ``i`` and ``j`` resident).

* :func:`beta_plan` — Marius's BETA ordering for edge (link prediction) workloads: every pair
  of partitions meets in the buffer at least once, mostly swapping one partition per step.
  Fix ``capacity - 1`` partitions, cycle the remaining ones through the last slot, then drop
  the fixed ones (they have met everyone) and repeat with the rest. Partition order is a seeded
  random permutation per epoch; each bucket is processed in one state containing both of its
  partitions (the first such state, or a random one, Marius's ``randomly_assign_edge_buckets``).
* :func:`node_plan` — for node workloads (classification): each partition is resident once per
  epoch, in groups of ``capacity``; ``'sequential'`` keeps the natural order, ``'dispersed'``
  a seeded random one.

Examples
--------
>>> plan = beta_plan(4, 2, seed=0)
>>> plan.num_states, plan.covers_all_buckets()
(6, True)
>>> node_plan(5, 2).states
[(0, 1), (2, 3), (4,)]
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InvalidArgumentError

__all__ = ["ASSIGNMENTS", "NODE_ORDERS", "SwapPlan", "beta_plan", "node_plan"]

#: How :func:`beta_plan` gives each edge bucket a state.
ASSIGNMENTS = ("first", "random")
#: Orders of :func:`node_plan`.
NODE_ORDERS = ("sequential", "dispersed")


@dataclass(frozen=True)
class SwapPlan:
    """The buffer states of one epoch, and the edge buckets processed in each.

    Attributes
    ----------
    num_parts
        Number of partitions ``P``.
    capacity
        Partitions the buffer holds.
    states
        Resident partitions per step (sorted tuples, each of at most ``capacity``).
    buckets
        Per state, the edge buckets ``(i, j)`` processed there (empty lists for node plans).
    kind
        ``'beta'``, ``'sequential'`` or ``'dispersed'``.

    Examples
    --------
    >>> plan = beta_plan(3, 2, seed=None, assign="first")
    >>> plan.states
    [(0, 1), (0, 2), (1, 2)]
    >>> plan.buckets[0]
    [(0, 0), (0, 1), (1, 0), (1, 1)]
    """

    num_parts: int
    capacity: int
    states: list[tuple[int, ...]]
    buckets: list[list[tuple[int, int]]] = field(default_factory=list)
    kind: str = "beta"

    @property
    def num_states(self) -> int:
        """Number of buffer states in the epoch."""
        return len(self.states)

    def admits(self) -> list[tuple[int, ...]]:
        """Per state, the partitions read in when entering it (the first: all of it).

        >>> beta_plan(3, 2, seed=None, assign="first").admits()
        [(0, 1), (2,), (1,)]
        """
        out: list[tuple[int, ...]] = []
        prev: set[int] = set()
        for s in self.states:
            out.append(tuple(p for p in s if p not in prev))
            prev = set(s)
        return out

    @property
    def num_swaps(self) -> int:
        """Partition reads after the first state (what prefetching has to hide).

        >>> beta_plan(4, 2, seed=0).num_swaps
        5
        """
        return sum(len(a) for a in self.admits()[1:])

    def covers_all_buckets(self) -> bool:
        """Whether every bucket ``(i, j)`` is processed exactly once, in a state holding both.

        >>> beta_plan(5, 3, seed=1).covers_all_buckets()
        True
        """
        seen: dict[tuple[int, int], int] = {}
        for s, bs in zip(self.states, self.buckets, strict=True):
            for i, j in bs:
                if i not in s or j not in s:
                    return False
                seen[(i, j)] = seen.get((i, j), 0) + 1
        p = self.num_parts
        return len(seen) == p * p and all(c == 1 for c in seen.values())


def _check(num_parts: int, capacity: int) -> tuple[int, int]:
    try:
        p, c = int(num_parts), int(capacity)
    except (TypeError, ValueError):
        raise InvalidArgumentError(
            f"num_parts and capacity must be ints, got {num_parts!r} and {capacity!r}.") from None
    if p < 1:
        raise InvalidArgumentError(f"num_parts={p}; a plan needs at least 1 partition.")
    if c < 1:
        raise InvalidArgumentError(f"capacity={c}; the buffer must hold at least 1 partition.")
    return p, min(c, p)


def beta_plan(num_parts: int, capacity: int, *, seed: int | None = 0,
              assign: str = "random") -> SwapPlan:
    """Marius's BETA ordering: buffer states in which every pair of partitions meets.

    Parameters
    ----------
    num_parts
        Partitions ``P`` of the table.
    capacity
        Partitions the buffer holds (``>= 2`` unless ``P == 1``: with one slot, pairs of
        different partitions can never meet).
    seed
        Seed of the per-epoch partition order and of the random bucket assignment (vary it per
        epoch, e.g. ``seed=epoch``); ``None`` keeps the natural order.
    assign
        ``'random'`` (each bucket in a random state holding both partitions; Marius's default)
        or ``'first'`` (the first such state).

    Returns
    -------
    SwapPlan

    Examples
    --------
    >>> plan = beta_plan(8, 2, seed=3)
    >>> plan.num_states, plan.num_swaps, plan.covers_all_buckets()
    (28, 27, True)
    """
    p, c = _check(num_parts, capacity)
    if assign not in ASSIGNMENTS:
        raise InvalidArgumentError(f"assign={assign!r}; use one of {ASSIGNMENTS}.")
    if c < 2 and p > 1:
        raise InvalidArgumentError(
            f"capacity={capacity}: a BETA plan over {p} partitions needs a buffer of at least 2 "
            "partitions, so that pairs of partitions can meet.")
    rng = np.random.default_rng(seed)
    order = [int(x) for x in (rng.permutation(p) if seed is not None else np.arange(p))]
    states: list[tuple[int, ...]] = []
    remaining = order
    while remaining:
        if len(remaining) <= c:
            states.append(tuple(sorted(remaining)))
            break
        fixed, rest = remaining[:c - 1], remaining[c - 1:]
        for x in rest:
            states.append(tuple(sorted([*fixed, x])))
        # the fixed partitions have met everyone; continue with the rest, starting with the one
        # resident now, so the next state keeps it (one read fewer)
        remaining = [rest[-1], *rest[:-1]]
    member = np.zeros((len(states), p), dtype=bool)
    for k, s in enumerate(states):
        member[k, list(s)] = True
    buckets: list[list[tuple[int, int]]] = [[] for _ in states]
    for i in range(p):
        for j in range(p):
            eligible = np.flatnonzero(member[:, i] & member[:, j])
            k = int(eligible[0] if assign == "first" else rng.choice(eligible))
            buckets[k].append((i, j))
    return SwapPlan(p, c, states, buckets, "beta")


def node_plan(num_parts: int, capacity: int, *, order: str = "sequential",
              seed: int | None = 0) -> SwapPlan:
    """Buffer states for node workloads: each partition resident once, ``capacity`` at a time.

    Parameters
    ----------
    num_parts, capacity
        As in :func:`beta_plan` (any ``capacity >= 1``).
    order
        ``'sequential'`` (partitions ``0, 1, 2, ...``) or ``'dispersed'`` (a seeded random
        order, so consecutive epochs see different groupings).
    seed
        Seed of ``'dispersed'``.

    Examples
    --------
    >>> node_plan(6, 3, order="dispersed", seed=0).states
    [(2, 3, 5), (0, 1, 4)]
    """
    p, c = _check(num_parts, capacity)
    if order not in NODE_ORDERS:
        raise InvalidArgumentError(f"order={order!r}; use one of {NODE_ORDERS}.")
    parts = (np.random.default_rng(seed).permutation(p) if order == "dispersed"
             else np.arange(p))
    states = [tuple(sorted(int(x) for x in parts[k:k + c])) for k in range(0, p, c)]
    return SwapPlan(p, c, states, [[] for _ in states], order)
