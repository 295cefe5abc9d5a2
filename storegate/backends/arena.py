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

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

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
    read_rows
        Optional ``read_rows(index, out)`` reading single rows of the source without whole
        chunks (uncompressed chunk files). With it, a gather that would fill many chunks for
        few rows (a cold, fully random batch) reads just its rows and starts filling the
        arena in a background thread instead, so the first batches cost a few random reads
        rather than a read of the whole var.
    cached
        Optional ``cached(rows)``: whether those rows' pages are in the page cache. When they
        are, a fill is a copy at memory speed and happens at once instead.

    Notes
    -----
    Without ``read_rows`` a gather fills the chunks it touches. With it:

    * a gather fills the chunks it touches when that reads at most ``8x`` the bytes asked for;
    * a gather touching at least 16 missing chunks (a random batch spread over the var), or
      any gather from a var of at most 32 MiB (labels), fills the whole var: at once when a
      probe of its rows finds them in the page cache (``cached``), else it reads its rows
      directly and fills the var, in order, in a background thread;
    * a gather of at least 64 rows from fewer chunks (a batch of a chunk-aware sampler, whose
      next batches come from the same chunks) fills them;
    * a smaller gather (a lookup) reads its rows directly, and fills its chunks when a later
      gather asks for them again.

    Rows are served from the buffer once their chunk is resident.
    """

    #: a gather touching this many missing chunks starts the background fill
    BACKGROUND_AFTER = 16
    #: fill touched chunks synchronously when they hold at most this many times the bytes read
    AMPLIFICATION = 8
    #: a var this small is filled whole in the background after its first gather (labels,
    #: offsets: keep them in RAM)
    SMALL_BYTES = 32 << 20
    #: a gather of at least this many rows from few chunks fills them (a chunk-aware batch)
    BATCH_ROWS = 64

    def __init__(
        self,
        shape: tuple[int, ...],
        dtype: np.dtype,
        chunk_rows: int,
        fill: Callable[[int, int, np.ndarray], None],
        read_rows: Callable[[np.ndarray, np.ndarray], None] | None = None,
        cached: Callable[[np.ndarray], bool] | None = None,
        parallel: int = 1,
    ) -> None:
        self.buf = np.empty(shape, dtype=dtype)
        #: how many runs of chunks ``_load`` fills at once (object stores: a request each);
        #: above 1, a sequential scan also reads ahead (see :meth:`ensure_range`)
        self.parallel = max(1, int(parallel))
        self._scan_at = -1  # where the last range ended: a range starting there continues
        self.rows = int(shape[0])
        self.chunk_rows = max(1, int(chunk_rows))
        n_chunks = -(-self.rows // self.chunk_rows)
        self.resident = np.zeros(n_chunks, dtype=bool)
        self._touched = np.zeros(n_chunks, dtype=np.uint8)  # chunks read row by row before
        self.full = n_chunks == 0
        self._fill = fill
        self._read_rows = read_rows
        self._cached = cached
        self._lock = threading.Lock()
        self._background: threading.Thread | None = None
        self._cancelled = False

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
            runs = np.split(chunks, breaks)

            def fill(run: np.ndarray) -> None:
                a = int(run[0]) * self.chunk_rows
                b = min(self.rows, (int(run[-1]) + 1) * self.chunk_rows)
                self._fill(a, b, self.buf[a:b])
                self.resident[run] = True

            if self.parallel > 1 and len(runs) > 1:
                # remote chunks: one request per run, so overlap them (disjoint buffer slices)
                from concurrent.futures import ThreadPoolExecutor

                with ThreadPoolExecutor(min(self.parallel, len(runs)),
                                        thread_name_prefix="storegate_arena") as pool:
                    for _ in pool.map(fill, runs):
                        pass
            else:
                for run in runs:
                    fill(run)
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
        if self.parallel > 1 and start == self._scan_at:
            # a scan of a remote var: fetch the next chunks with these (one request each, in
            # flight together) instead of one round trip per range read. The window is
            # refilled in bursts, once less than half of it is left, so the requests of a
            # burst overlap instead of one chunk being fetched per range read.
            chunk_bytes = self.chunk_rows * max(1, self.buf[:1].nbytes)
            ahead = max(1, min(self.parallel, (32 << 20) // chunk_bytes))
            end = self.resident.size - 1
            if not self.resident[first : min(end, last + ahead // 2) + 1].all():
                last = min(end, last + ahead)
        self._scan_at = stop
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

    def take(self, index: np.ndarray, defer: list[Arena] | None = None) -> np.ndarray:
        """Rows at an int64 index array (any order, repeats allowed), as a new array.

        A background fill this gather starts is appended to ``defer`` instead when given, for
        the caller to start once the other vars of its batch are read (a fill competes with
        their reads for the disk).
        """
        if self.full:
            return np.take(self.buf, index, axis=0)
        chunks = index // self.chunk_rows
        here = self.resident[chunks]
        if here.all():
            return np.take(self.buf, index, axis=0)
        away = ~here
        missing = np.unique(chunks[away])
        asked = int(np.count_nonzero(away))
        if self._read_rows is None or asked * self.AMPLIFICATION >= missing.size * self.chunk_rows:
            self._load(missing)
            return np.take(self.buf, index, axis=0)
        background = False
        if self._background is None:
            if missing.size >= self.BACKGROUND_AFTER or self.nbytes <= self.SMALL_BYTES:
                # spread over the var, or a small var: fill it all; now if its pages are in
                # the page cache (a copy at memory speed), else in the background
                probe = index[away][:: max(1, asked // 8)][:8]
                if self._cached is not None and self._cached(probe):
                    self._load(np.flatnonzero(~self.resident))
                    return np.take(self.buf, index, axis=0)
                background = True
            elif asked >= self.BATCH_ROWS or self._touched[missing].any():
                # a batch drawn from a few chunks (a chunk-aware sampler): the next batches
                # come from the same chunks, fill them now
                self._load(missing)
                return np.take(self.buf, index, axis=0)
            else:
                self._touched[missing] = 1  # a lookup: read the rows, fill if asked again
        out = np.empty((index.size, *self.buf.shape[1:]), dtype=self.buf.dtype)
        if asked < index.size:
            out[here] = np.take(self.buf, index[here], axis=0)
        cold = np.empty((asked, *self.buf.shape[1:]), dtype=self.buf.dtype)
        self._read_rows(index[away], cold)
        out[away] = cold
        if background:  # after this batch's reads, which it would slow down
            if defer is not None:
                defer.append(self)
            else:
                self.start_background()
        return out

    def start_background(self) -> None:
        """Fill every missing chunk, in order, in a daemon thread (once)."""
        if self._background is not None or self.full:
            return
        self._background = threading.Thread(target=self._fill_all, daemon=True,
                                             name="storegate_arena_fill")
        self._background.start()

    def _fill_all(self) -> None:
        try:
            n = self.resident.size
            row_bytes = max(1, self.buf.itemsize * int(np.prod(self.buf.shape[1:])))
            step = max(1, (8 << 20) // (self.chunk_rows * row_bytes))  # about 8 MiB a read
            for c in range(0, n, step):
                if self._cancelled:
                    return
                window = np.arange(c, min(n, c + step))
                window = window[~self.resident[window]]
                if window.size:
                    self._load(window)
        except Exception:  # the gathers read rows directly and report errors themselves
            logger.warning("storegate: background fill of an arena stopped", exc_info=True)

    def cancel(self) -> None:
        """Stop a background fill (the arena was dropped from its cache)."""
        self._cancelled = True

    def rows_of(self, sl: slice) -> np.ndarray:
        """Rows of a slice (``step >= 1``), as a new array."""
        self.ensure_range(sl.start, sl.stop)
        return self.buf[sl].copy()

    def row(self, i: int) -> np.ndarray:
        """One row, as a new array."""
        self.ensure_range(i, i + 1)
        return np.array(self.buf[i], copy=True)

    def set_fill(self, fill: Callable[[int, int, np.ndarray], None],
                 read_rows: Callable[[np.ndarray, np.ndarray], None] | None = None,
                 cached: Callable[[np.ndarray], bool] | None = None) -> None:
        """Point the arena at a new source with the same content (files rewritten unchanged)."""
        self._fill = fill
        self._read_rows = read_rows
        self._cached = cached

    def after_fork(self) -> None:
        """Give a forked child a fresh lock and no fill thread (the buffer stays shared
        copy-on-write)."""
        self._lock = threading.Lock()
        self._background = None

    def update(self, index: int | slice | np.ndarray, data: np.ndarray) -> None:
        """Mirror an in-place write into the buffer (after the source was written).

        Waits for a chunk being filled, so a fill that read the old rows cannot overwrite the
        new ones afterwards.
        """
        with self._lock:
            self.buf[index] = data


def _cancel(arena: Any) -> None:
    """Stop an arena's background fill (other cached objects have none)."""
    cancel = getattr(arena, "cancel", None)
    if cancel is not None:
        cancel()


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
        with self._lock:
            return self._used()

    def _used(self) -> int:  # with the lock held
        return sum(a.nbytes for a in self._arenas.values())

    def admits(self, nbytes: int) -> bool:
        """Whether a var of ``nbytes`` can have an arena at all."""
        return 0 < nbytes <= self.limit

    def get(self, key: Hashable) -> Arena | None:
        """The arena for ``key`` (marking it recently used), or ``None``."""
        # under the lock: reordering the dict while put() or items() iterates it in another
        # thread made that thread raise "OrderedDict mutated during iteration"
        with self._lock:
            arena = self._arenas.get(key)
            if arena is not None:
                self._arenas.move_to_end(key)
            return arena

    def put(self, key: Hashable, arena: Arena) -> None:
        """Add an arena, dropping least recently used ones to stay within the budget."""
        with self._lock:
            old = self._arenas.pop(key, None)
            if old is not arena:
                _cancel(old)
            while self._arenas and self._used() + arena.nbytes > self.limit:
                _cancel(self._arenas.popitem(last=False)[1])
            self._arenas[key] = arena

    def items(self) -> list[tuple[Hashable, Any]]:
        """The cached (key, arena) pairs, least recently used first."""
        with self._lock:
            return list(self._arenas.items())

    def drop(self, key: Hashable) -> None:
        """Forget the arena of ``key`` (after its var changed shape or was deleted)."""
        with self._lock:
            arena = self._arenas.pop(key, None)
        _cancel(arena)

    def drop_prefix(self, prefix: tuple[Hashable, ...]) -> None:
        """Forget every arena whose key starts with ``prefix``."""
        with self._lock:
            for key in [k for k in self._arenas if isinstance(k, tuple)
                        and k[: len(prefix)] == prefix]:
                _cancel(self._arenas.pop(key))

    def clear(self) -> None:
        """Forget every arena."""
        with self._lock:
            for arena in self._arenas.values():
                _cancel(arena)
            self._arenas.clear()
