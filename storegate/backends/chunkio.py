"""Direct reads from uncompressed chunk files: cached descriptors, concurrent reads, read-ahead.

A var stored as one file per chunk of rows, each file holding its rows raw (C order, native
byte order, no codec), needs no decoding: row ``i`` is ``row_bytes`` bytes at offset
``(i % chunk_rows) * row_bytes`` of chunk file ``i // chunk_rows``. :class:`RawChunkFiles`
reads rows and row ranges straight into the caller's buffer with ``os.preadv``:

* **random rows** are grouped into runs of neighbouring rows (one read per run) and read by a
  pool of I/O threads (``io_threads``, 16 by default), so a cold batch keeps many reads in
  flight (``os.preadv`` releases the GIL) on descriptors opened with ``POSIX_FADV_RANDOM``, so
  the kernel reads only the pages asked for;
* **ranges** (scans) are read in order on descriptors opened with ``POSIX_FADV_SEQUENTIAL``,
  and the next chunk file is announced with ``POSIX_FADV_WILLNEED`` when a scan enters a
  chunk, so the disk reads ahead while the caller works;
* descriptors are cached process-wide (:class:`DescriptorCache`, least recently used closed
  first, at most ``min(1024, soft RLIMIT_NOFILE / 4)`` open), and forgotten by directory when a
  writer replaces chunk files.

Examples
--------
>>> import os, tempfile, numpy as np
>>> d = tempfile.mkdtemp()
>>> data = np.arange(40, dtype="f4").reshape(10, 4)
>>> for c in range(3):                      # chunks of 4 rows: files 0, 1, 2
...     data[c * 4:(c + 1) * 4].tofile(os.path.join(d, str(c)))
>>> files = RawChunkFiles(lambda c: os.path.join(d, str(c)), rows=10, chunk_rows=4,
...                       row_shape=(4,), dtype=np.dtype("f4"))
>>> out = np.empty((3, 4), "f4")
>>> files.read_rows(np.array([9, 0, 5]), out)
>>> out[:, 0]
array([36.,  0., 20.], dtype=float32)
>>> files.read_range(3, 6, out)
>>> out[:, 0]
array([12., 16., 20.], dtype=float32)
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from ..errors import CorruptStoreError

__all__ = ["DescriptorCache", "RawChunkFiles", "descriptors", "io_pool"]

DEFAULT_IO_THREADS = 16
#: how far a scan announces the chunk files ahead of it (``POSIX_FADV_WILLNEED``)
READ_AHEAD_BYTES = 16 << 20
_RANDOM = getattr(os, "POSIX_FADV_RANDOM", None)
_SEQUENTIAL = getattr(os, "POSIX_FADV_SEQUENTIAL", None)
_WILLNEED = getattr(os, "POSIX_FADV_WILLNEED", None)
_MISSING = -1  # a chunk file that does not exist: never written, zarr's fill value (0)


def _fd_budget() -> int:
    """A quarter of the soft limit on open files, between 16 and 1,024."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if soft == resource.RLIM_INFINITY:
            soft = 4096
    except (ImportError, OSError, ValueError):  # pragma: no cover - not Unix
        soft = 1024
    return max(16, min(1024, int(soft) // 4))


class DescriptorCache:
    """Open read-only descriptors of chunk files, shared by every reader of a process.

    Descriptors are handed out by :meth:`lease`, which holds them open until the block ends;
    the least recently used descriptors that no block holds are closed when more than
    ``capacity`` are open. A forked child starts with an empty cache.

    Parameters
    ----------
    capacity
        Most descriptors kept open (leased ones may exceed it for the length of a read).

    Examples
    --------
    >>> import tempfile
    >>> cache = DescriptorCache(capacity=4)
    >>> path = tempfile.mkstemp()[1]
    >>> with cache.lease() as get:
    ...     fd = get(path, "random")
    >>> cache.open_count()
    1
    >>> cache.forget(path)
    >>> cache.open_count()
    0
    """

    def __init__(self, capacity: int | None = None) -> None:
        self.capacity = _fd_budget() if capacity is None else max(1, int(capacity))
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._fds: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._held: dict[int, int] = {}  # fd -> number of blocks holding it
        self._doomed: set[int] = set()  # forgotten or evicted while held: close on release
        # bumped by forget(): a descriptor opened before a forget is used once, never cached
        # (it may show a file that another process has replaced since)
        self._epoch = 0

    def _after_fork(self) -> None:
        fds = list(self._fds.values())
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._fds = OrderedDict()
        self._held, self._doomed = {}, set()
        for fd in fds:  # the child's copies; the parent's stay open
            with contextlib.suppress(OSError):
                os.close(fd)

    def open_count(self) -> int:
        """Descriptors currently open."""
        return len(self._fds) + len(self._doomed)

    def _open(self, path: str, advice: str) -> int:
        try:
            # O_NONBLOCK: a FIFO behind a symbolic link would block the open forever
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
                         | getattr(os, "O_NONBLOCK", 0))
        except FileNotFoundError:
            return _MISSING
        try:
            regular = stat.S_ISREG(os.fstat(fd).st_mode)
        except OSError:
            regular = False
        if not regular:  # a device (/dev/zero), FIFO or directory is never a chunk file
            os.close(fd)
            raise CorruptStoreError(
                f"chunk file {path!r} is not a regular file (a device, FIFO or directory, "
                "possibly behind a symbolic link); the store was modified outside storegate. "
                "Restore the chunk file.")
        flag = _RANDOM if advice == "random" else _SEQUENTIAL
        if flag is not None:
            with contextlib.suppress(OSError):
                os.posix_fadvise(fd, 0, 0, flag)
        return fd

    def _get(self, path: str, advice: str, held: list[int]) -> int:
        key = (path, advice)
        with self._lock:
            fd = self._fds.get(key)
            if fd is not None:
                self._fds.move_to_end(key)
                if fd != _MISSING:
                    self._held[fd] = self._held.get(fd, 0) + 1
                    held.append(fd)
                return fd
            epoch = self._epoch
        fd = self._open(path, advice)
        with self._lock:
            if self._epoch != epoch:  # forgotten while it was being opened: this read only
                if fd != _MISSING:
                    self._held[fd] = self._held.get(fd, 0) + 1
                    self._doomed.add(fd)
                    held.append(fd)
                return fd
            other = self._fds.get(key)
            if other is not None:  # another thread opened it meanwhile: use that one
                if fd != _MISSING:
                    os.close(fd)
                fd = other
                self._fds.move_to_end(key)
            else:
                self._fds[key] = fd
            if fd != _MISSING:
                self._held[fd] = self._held.get(fd, 0) + 1
                held.append(fd)
            self._evict()
        return fd

    def _evict(self) -> None:
        while len(self._fds) > self.capacity:
            for key, fd in self._fds.items():
                if fd == _MISSING or not self._held.get(fd):
                    del self._fds[key]
                    if fd != _MISSING:
                        os.close(fd)
                    break
            else:
                return  # everything is held: close later

    def _release(self, held: list[int]) -> None:
        with self._lock:
            for fd in held:
                n = self._held.get(fd, 0) - 1
                if n > 0:
                    self._held[fd] = n
                    continue
                self._held.pop(fd, None)
                if fd in self._doomed:
                    self._doomed.discard(fd)
                    os.close(fd)
            self._evict()

    @contextlib.contextmanager
    def lease(self) -> Iterator[Callable[[str, str], int]]:
        """A block within which ``get(path, advice)`` returns an open descriptor (``-1`` for a
        missing file); ``advice`` is ``'random'`` or ``'sequential'``."""
        if os.getpid() != self._pid:
            self._after_fork()
        held: list[int] = []
        try:
            yield lambda path, advice: self._get(path, advice, held)
        finally:
            self._release(held)

    def forget(self, prefix: str) -> None:
        """Close the descriptors of ``prefix`` and of every file under it (files replaced)."""
        if os.getpid() != self._pid:
            self._after_fork()
            return
        under = prefix.rstrip(os.sep) + os.sep
        with self._lock:
            self._epoch += 1
            for key in [k for k in self._fds if k[0] == prefix or k[0].startswith(under)]:
                fd = self._fds.pop(key)
                if fd == _MISSING:
                    continue
                if self._held.get(fd):
                    self._doomed.add(fd)
                else:
                    os.close(fd)


descriptors = DescriptorCache()

_pool: ThreadPoolExecutor | None = None
_pool_pid = 0
_pool_lock = threading.Lock()


def io_pool() -> ThreadPoolExecutor:
    """The process-wide pool of I/O threads (created on first use, again after a fork)."""
    global _pool, _pool_pid
    if _pool is None or _pool_pid != os.getpid():
        with _pool_lock:
            if _pool is None or _pool_pid != os.getpid():
                _pool = ThreadPoolExecutor(max_workers=64, thread_name_prefix="storegate_io")
                _pool_pid = os.getpid()
    return _pool


class RawChunkFiles:
    """Rows of a var read straight from its uncompressed chunk files.

    Parameters
    ----------
    chunk_path
        The file of chunk ``c``.
    rows, chunk_rows
        Rows of the var and rows per chunk (every chunk file but the last holds
        ``chunk_rows`` rows; the last may hold a whole chunk or only the rows in use).
    row_shape, dtype
        Shape of one row and the element type, as stored (native byte order).
    io_threads
        Reads in flight for random rows (1 reads in the calling thread).
    name
        How errors name the var.
    directory
        The directory holding the chunk files (what :meth:`DescriptorCache.forget` is given
        when they are rewritten).
    missing_ok
        Whether a missing chunk file reads as zeros (the fill value: rows never written, as
        in a ``create_empty`` var) rather than raising ``CorruptStoreError`` (a var whose
        every chunk was written, where a missing file is damage).
    """

    def __init__(
        self,
        chunk_path: Callable[[int], str],
        rows: int,
        chunk_rows: int,
        row_shape: tuple[int, ...],
        dtype: np.dtype,
        io_threads: int = DEFAULT_IO_THREADS,
        name: str = "var",
        directory: str = "",
        missing_ok: bool = True,
    ) -> None:
        self.chunk_path = chunk_path
        self.directory = directory
        # called with each chunk file's path before it is replaced (the writer's undo journal)
        self.before_write: Callable[[str], None] | None = None
        self.rows = int(rows)
        self.chunk_rows = max(1, int(chunk_rows))
        self.row_shape = tuple(row_shape)
        self.dtype = np.dtype(dtype)
        self.row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize
        self.io_threads = max(1, int(io_threads))
        self.name = name
        self.missing_ok = missing_ok
        self._paths: dict[int, str] = {}
        self._announced = -1
        self._last_stop = -1  # where the previous range ended: a scan continues from there
        if directory:
            # Descriptors cached for earlier readers of this var may show chunk files that a
            # writer in another process has replaced since (a rename gives the path a new
            # inode; the old one keeps the rows it had, zero padding after them), so a reader
            # of the longer var would read zeros. The caller read the var's length before
            # creating this reader, and every chunk file opened from now on holds those rows.
            descriptors.forget(directory)

    # ------------------------------------------------------------------ helpers
    def _path(self, c: int) -> str:
        path = self._paths.get(c)
        if path is None:
            path = self._paths[c] = self.chunk_path(c)
        return path

    def _read(self, get: Callable[[str, str], int], advice: str, c: int, offset: int,
              dst: memoryview) -> None:
        fd = get(self._path(c), advice)
        if fd == _MISSING:
            if not self.missing_ok:
                raise CorruptStoreError(
                    f"chunk file {self._path(c)!r} of {self.name} is missing, but every chunk "
                    "of it was written; the store was modified outside storegate (run "
                    "`storegate check` on it).")
            dst[:] = bytes(len(dst))  # never written: the fill value
            return
        got = os.preadv(fd, [dst], offset)
        while 0 < got < len(dst):  # a short read that is not the end of the file
            more = os.preadv(fd, [dst[got:]], offset + got)
            if more <= 0:
                break
            got += more
        if got < len(dst):
            raise CorruptStoreError(
                f"chunk file {self._path(c)!r} of {self.name} is truncated: {len(dst)} bytes "
                f"needed from offset {offset}, {max(got, 0)} there; run `storegate check` on "
                "the store.")

    @staticmethod
    def _bytes(out: np.ndarray) -> memoryview:
        if not out.flags.c_contiguous:
            raise ValueError("the output buffer must be C-contiguous")
        return out.reshape(-1).view(np.uint8).data

    # ------------------------------------------------------------------ ranges
    def read_range(self, start: int, stop: int, out: np.ndarray) -> None:
        """Rows ``start:stop`` into ``out`` (C-contiguous, at least ``stop - start`` rows).

        The next chunk file is announced to the kernel when the range continues the previous
        one (a scan) or spans several chunks, never for an isolated range (a chunk filled for
        a chunk-aware batch), whose neighbour nobody asked for.
        """
        if stop <= start:
            return
        buf = self._bytes(out)
        rb, cr = self.row_bytes, self.chunk_rows
        scanning = start == self._last_stop
        self._last_stop = stop
        with descriptors.lease() as get:
            pos = start
            while pos < stop:
                c = pos // cr
                hi = min(stop, (c + 1) * cr)
                if scanning or hi < stop:
                    self._announce(get, c + 1)
                self._read(get, "sequential", c, (pos - c * cr) * rb,
                           buf[(pos - start) * rb:(hi - start) * rb])
                pos = hi

    def _announce(self, get: Callable[[str, str], int], c: int) -> None:
        """Ask the kernel to start reading chunk ``c`` and the ones after it, up to
        :data:`READ_AHEAD_BYTES` ahead (a scan is about to need them)."""
        if _WILLNEED is None:
            return
        ahead = max(1, min(16, READ_AHEAD_BYTES // max(1, self.chunk_rows * self.row_bytes)))
        last = min(c + ahead, -(-self.rows // self.chunk_rows))  # exclusive
        # announced before: the window [c, last) minus what the previous call covered
        first = self._announced + 1 if c - 1 <= self._announced < last else c
        for k in range(first, last):
            fd = get(self._path(k), "sequential")
            if fd != _MISSING:
                with contextlib.suppress(OSError):
                    os.posix_fadvise(fd, 0, 0, _WILLNEED)
        self._announced = max(last - 1, first - 1)

    # ------------------------------------------------------------------ random rows
    def cached(self, rows: np.ndarray) -> bool:
        """Whether the pages of these rows are in the page cache, probed with reads that
        must not wait for the disk (``RWF_NOWAIT``); ``False`` where that is unsupported."""
        flag = getattr(os, "RWF_NOWAIT", None)
        if flag is None:
            return False
        buf = memoryview(bytearray(self.row_bytes))
        cr, rb = self.chunk_rows, self.row_bytes
        with descriptors.lease() as get:
            for r in np.asarray(rows, dtype=np.int64).tolist():
                c = r // cr
                fd = get(self._path(c), "random")
                if fd == _MISSING:
                    continue
                try:
                    got = os.preadv(fd, [buf], (r - c * cr) * rb, flag)
                except OSError:  # EAGAIN: not cached (or the flag is refused)
                    return False
                if got < rb:
                    return False
        return True

    def read_rows(self, index: np.ndarray, out: np.ndarray) -> None:
        """Rows at ``index`` (int64, in range, any order, repeats allowed) into ``out``.

        Neighbouring rows are read together; the reads run on the I/O pool.
        """
        index = np.asarray(index, dtype=np.int64)
        if index.size == 0:
            return
        ordered = index.size < 2 or bool((index[1:] > index[:-1]).all())
        if ordered:
            self._read_sorted(index, out)
            return
        uniq, inverse = np.unique(index, return_inverse=True)
        tmp = np.empty((uniq.size, *self.row_shape), dtype=self.dtype)
        self._read_sorted(uniq, tmp)
        np.take(tmp, inverse.reshape(-1), axis=0, out=out)

    def _read_sorted(self, rows: np.ndarray, out: np.ndarray) -> None:
        """Strictly increasing ``rows`` into ``out``, one read per run of neighbouring rows."""
        buf = self._bytes(out)
        rb, cr = self.row_bytes, self.chunk_rows
        chunk = rows // cr
        brk = np.flatnonzero((np.diff(rows) != 1) | (np.diff(chunk) != 0)) + 1
        first = np.concatenate(([0], brk))
        length = np.diff(np.concatenate((first, [rows.size])))
        c_of = chunk[first].tolist()
        off = ((rows[first] - chunk[first] * cr) * rb).tolist()
        dst = (first * rb).tolist()
        nbytes = (length * rb).tolist()
        runs = len(c_of)

        def work(k: int, step: int) -> None:
            with descriptors.lease() as get:
                for j in range(k, runs, step):
                    self._read(get, "random", c_of[j], off[j],
                               buf[dst[j]:dst[j] + nbytes[j]])

        tasks = min(self.io_threads, runs)
        if tasks <= 1 or runs < 8:
            work(0, 1)
            return
        pool = io_pool()
        futures: list[Future[Any]] = [pool.submit(work, k, tasks) for k in range(1, tasks)]
        try:
            work(0, tasks)  # the calling thread takes a share too
        finally:
            for f in futures:
                f.result()

    # ------------------------------------------------------------------ writes
    def write_range(self, start: int, block: np.ndarray) -> None:
        """Write rows ``start:start + len(block)`` as whole chunk files, each replaced
        atomically (written beside it as ``<chunk>.<hex>.partial``, then renamed, like zarr's
        local store). Rows before ``start`` in the first chunk are kept; a chunk is padded with
        zeros (the fill value) to its full size, as zarr stores it.

        The caller records the new length afterwards and then calls
        :meth:`DescriptorCache.forget` for :attr:`directory`.
        """
        import uuid

        block = np.ascontiguousarray(block, dtype=self.dtype)
        src = block.reshape(-1).view(np.uint8).data
        rb, cr = self.row_bytes, self.chunk_rows
        stop = start + block.shape[0]
        pos = start
        while pos < stop:
            c = pos // cr
            lo, hi = pos - c * cr, min(stop - c * cr, cr)
            path = self._path(c)
            parts: list[Any] = []
            if lo:
                head = bytearray(lo * rb)
                self._read_head(path, memoryview(head))
                parts.append(head)
            parts.append(src[(pos - start) * rb:(pos - start + hi - lo) * rb])
            if hi < cr:
                parts.append(bytes((cr - hi) * rb))
            if self.before_write is not None:
                self.before_write(path)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = f"{path}.{uuid.uuid4().hex}.partial"
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                             | getattr(os, "O_CLOEXEC", 0), 0o666)
                try:
                    for part in parts:
                        view = memoryview(part)
                        while view:
                            view = view[os.write(fd, view):]
                finally:
                    os.close(fd)
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            pos = c * cr + hi

    def _read_head(self, path: str, dst: memoryview) -> None:
        """The first ``len(dst)`` bytes of a chunk file that already holds committed rows."""
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise CorruptStoreError(
                f"chunk file {path!r} of {self.name} is missing but holds committed rows; run "
                "`storegate check` on the store.") from None
        try:
            got = os.preadv(fd, [dst], 0)
        finally:
            os.close(fd)
        if got < len(dst):
            raise CorruptStoreError(
                f"chunk file {path!r} of {self.name} is truncated ({got} bytes, {len(dst)} "
                "needed); run `storegate check` on the store.")
