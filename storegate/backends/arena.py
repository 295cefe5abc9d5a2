"""Decoded arenas: random gathers from disk-backed vars at in-memory speed.

Chunked formats read and decode a whole chunk to return one row of it, with a fixed cost per
chunk (about 250 us in zarr-python), so a random batch of 1,024 rows that touches hundreds of
chunks takes hundreds of milliseconds. An :class:`Arena` instead keeps one flat, decoded buffer
per var, filled chunk by chunk on first touch (a residency bitmap, checked vectorised), and
serves every later gather with one ``numpy.take`` over it.

The arenas of one backend share a byte budget (:class:`ArenaCache`); the least recently used
arena is dropped when a new one would exceed it, and vars larger than the budget are read
without an arena.

Examples
--------
>>> import numpy as np
>>> src = np.arange(20).reshape(10, 2)
>>> def fill(start, stop, out):
...     out[...] = src[start:stop]
>>> arena = Arena(src.shape, src.dtype, chunk_rows=4, fill=fill)
>>> arena.take(np.array([9, 0, 5]))
array([[18, 19],
       [ 0,  1],
       [10, 11]])
>>> int(arena.resident.sum())          # chunks 0, 1 and 2 were read
3
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np

__all__ = ["Arena", "ArenaCache", "default_cache_bytes"]


def default_cache_bytes() -> int:
    """A quarter of the machine's physical memory (at least 256 MiB).

    Examples
    --------
    >>> default_cache_bytes() >= 256 << 20
    True
    """
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        total = 4 << 30
    return max(256 << 20, total // 4)


class Arena:
    """A decoded copy of one var, filled lazily by chunk.

    Parameters
    ----------
    shape, dtype
        Shape and dtype of the var.
    chunk_rows
        Rows per chunk of the source; the unit of filling.
    fill
        ``fill(start, stop, out)`` writing rows ``start:stop`` of the source into ``out`` (a
        C-contiguous view of the arena).
    """

    def __init__(
        self,
        shape: tuple[int, ...],
        dtype: np.dtype,
        chunk_rows: int,
        fill: Callable[[int, int, np.ndarray], None],
    ) -> None:
        self.buf = np.empty(shape, dtype=dtype)
        self.rows = int(shape[0])
        self.chunk_rows = max(1, int(chunk_rows))
        n_chunks = -(-self.rows // self.chunk_rows)
        self.resident = np.zeros(n_chunks, dtype=bool)
        self.full = n_chunks == 0
        self._fill = fill
        self._lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        """Bytes held by the buffer."""
        return int(self.buf.nbytes)

    def _load(self, chunks: np.ndarray) -> None:
        """Fill the given (sorted, unique) chunk numbers, one source read per run."""
        with self._lock:
            chunks = chunks[~self.resident[chunks]]
            if chunks.size == 0:
                return
            breaks = np.flatnonzero(np.diff(chunks) != 1) + 1
            for run in np.split(chunks, breaks):
                a = int(run[0]) * self.chunk_rows
                b = min(self.rows, (int(run[-1]) + 1) * self.chunk_rows)
                self._fill(a, b, self.buf[a:b])
                self.resident[run] = True
            self.full = bool(self.resident.all())

    def ensure_rows(self, rows: np.ndarray) -> None:
        """Make the chunks holding ``rows`` resident."""
        if self.full:
            return
        chunks = rows // self.chunk_rows
        missing = ~self.resident[chunks]
        if missing.any():
            self._load(np.unique(chunks[missing]))

    def ensure_range(self, start: int, stop: int) -> None:
        """Make the chunks holding rows ``start:stop`` resident."""
        if self.full or stop <= start:
            return
        first, last = start // self.chunk_rows, (stop - 1) // self.chunk_rows
        window = self.resident[first : last + 1]
        if not window.all():
            self._load(np.arange(first, last + 1)[~window])

    def covers(self, start: int, stop: int) -> bool:
        """Whether every chunk holding rows ``start:stop`` is resident."""
        if self.full:
            return True
        if stop <= start:
            return True
        first, last = start // self.chunk_rows, (stop - 1) // self.chunk_rows
        return bool(self.resident[first : last + 1].all())

    def take(self, index: np.ndarray) -> np.ndarray:
        """Rows at an int64 index array (any order, repeats allowed), as a new array."""
        self.ensure_rows(index)
        return np.take(self.buf, index, axis=0)

    def rows_of(self, sl: slice) -> np.ndarray:
        """Rows of a slice (``step >= 1``), as a new array."""
        self.ensure_range(sl.start, sl.stop)
        return self.buf[sl].copy()

    def row(self, i: int) -> np.ndarray:
        """One row, as a new array."""
        self.ensure_range(i, i + 1)
        return np.array(self.buf[i], copy=True)

    def set_fill(self, fill: Callable[[int, int, np.ndarray], None]) -> None:
        """Point the arena at a new source with the same content (files rewritten unchanged)."""
        self._fill = fill

    def after_fork(self) -> None:
        """Give a forked child a fresh lock (the buffer stays shared copy-on-write)."""
        self._lock = threading.Lock()

    def update(self, index: int | slice | np.ndarray, data: np.ndarray) -> None:
        """Mirror an in-place write into resident chunks (others are read fresh later)."""
        self.buf[index] = data


class ArenaCache:
    """Arenas of one backend under a shared byte budget, least recently used dropped first.

    Parameters
    ----------
    limit
        Budget in bytes; ``0`` disables arenas.

    Examples
    --------
    >>> cache = ArenaCache(limit=1 << 20)
    >>> cache.admits(2 << 20)
    False
    """

    def __init__(self, limit: int) -> None:
        self.limit = int(limit)
        self._arenas: OrderedDict[Hashable, Arena] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def used(self) -> int:
        """Bytes held by all arenas."""
        return sum(a.nbytes for a in self._arenas.values())

    def admits(self, nbytes: int) -> bool:
        """Whether a var of ``nbytes`` can have an arena at all."""
        return 0 < nbytes <= self.limit

    def get(self, key: Hashable) -> Arena | None:
        """The arena for ``key`` (marking it recently used), or ``None``."""
        arena = self._arenas.get(key)
        if arena is not None:
            with contextlib.suppress(KeyError):  # dropped by another thread meanwhile
                self._arenas.move_to_end(key)
        return arena

    def put(self, key: Hashable, arena: Arena) -> None:
        """Add an arena, dropping least recently used ones to stay within the budget."""
        with self._lock:
            self._arenas.pop(key, None)
            while self._arenas and self.used + arena.nbytes > self.limit:
                self._arenas.popitem(last=False)
            self._arenas[key] = arena

    def items(self) -> list[tuple[Hashable, Any]]:
        """The cached (key, arena) pairs, least recently used first."""
        with self._lock:
            return list(self._arenas.items())

    def drop(self, key: Hashable) -> None:
        """Forget the arena of ``key`` (after its var changed shape or was deleted)."""
        with self._lock:
            self._arenas.pop(key, None)

    def drop_prefix(self, prefix: tuple[Hashable, ...]) -> None:
        """Forget every arena whose key starts with ``prefix``."""
        with self._lock:
            for key in [k for k in self._arenas if isinstance(k, tuple)
                        and k[: len(prefix)] == prefix]:
                del self._arenas[key]

    def clear(self) -> None:
        """Forget every arena."""
        with self._lock:
            self._arenas.clear()
