"""The HDF5 backend: one HDF5 file per store, one chunked, resizable dataset per var.

Layout::

    /                                   attrs: storegate_backend="hdf5", storegate_format=1
    /<data_id>/                         attrs: storegate_attrs = JSON string (the data_id attrs)
    /<data_id>/<phase>/                 attrs: storegate = JSON {"var_order": [...], ...}
    /<data_id>/<phase>/<var>            dataset (N, *k), maxshape (None, *k), chunked along axis 0
    /<data_id>/<phase>/<var>/values     a ragged var: a group (attr storegate_ragged=True)
    /<data_id>/<phase>/<var>/offsets      holding values (n_values, *k) and offsets (N + 1,) int64

Handles are opened lazily, per process: read-only ones with HDF5's native driver, read/write
ones through a :class:`~storegate_hdf5.journal.JournaledFile` (h5py's ``fileobj`` driver).
``flush()`` (and ``close()``, and pickling) commits and closes the file so other processes can
open it. A forked child never touches the parent's handle: it keeps the inherited objects
alive without closing them and opens its own. Random gathers go through a decoded in-memory
copy of the var (:class:`storegate.backends.arena.Arena`), filled chunk by chunk on first
touch.

Crash consistency (DESIGN §8). Every byte HDF5 changes in the file passes through the rollback
journal of :mod:`storegate_hdf5.journal` (``<path>.sg-journal``). :meth:`HDF5Backend.
transaction` blocks group writes (StoreGate runs each operation in one; a write method called
outside a block is a block of its own); the end of the outermost block is a commit (HDF5
flushed, journal emptied). A process killed before a commit leaves the journal, and the next
writable open rolls the file back to the last commit, byte for byte; a block that raises is
rolled back at once. An open for reading that finds a killed writer's journal rolls it back
too, under the writer lock (as SQLite's readers roll back a hot journal); only where it cannot
write the file does it raise :class:`~storegate.errors.CorruptStoreError` asking for one
``mode='a'`` open where it can (it never reads a torn file).

One writer. The first write of a backend takes :class:`~storegate.backends.locking.
WriterLock` on ``<path>.sg-lock`` and holds it until :meth:`HDF5Backend.close`; another writer
(process, or backend of this process) gets :class:`~storegate.errors.StoreLockedError`. While
the file is open for writing it also holds an exclusive ``flock`` on the file itself, as
HDF5's native locking does, so readers wait until the writer flushes.

Examples
--------
>>> import tempfile, os, numpy as np
>>> path = os.path.join(tempfile.mkdtemp(), "store.h5")
>>> be = HDF5Backend(path=path)
>>> be.create_data_id("d")
>>> be.append("d", "train", "x", np.arange(6.0).reshape(3, 2))
>>> be.read("d", "train", "x", np.array([2, 0]))
array([[4., 5.],
       [0., 1.]])
>>> be.close()
>>> HDF5Backend.guess_can_open(path)
True
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import logging
import os
import tempfile
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar, cast

import numpy as np

from storegate.arrays import cast_for_write, check_row_shape
from storegate.backends.arena import Arena, ArenaCache, default_cache_bytes
from storegate.backends.base import TEMP_PREFIX, Backend, VarInfo
from storegate.backends.lifecycle import remove_own_tmpdir
from storegate.backends.locking import WriterLock
from storegate.errors import (
    CorruptStoreError,
    DataIdNotFoundError,
    DtypeError,
    InvalidArgumentError,
    ReadOnlyError,
    ShapeMismatchError,
    StoregateError,
    StoreLockedError,
    StoreNotFoundError,
    VarExistsError,
    VarNotFoundError,
)
from storegate.indexing import Index
from storegate.phases import PHASES, check_phase
from storegate.ragged import RaggedArray, kind_mismatch, rows_of

from .journal import FileBusyError, JournaledFile, journal_path
from .journal import pending as journal_pending

__all__ = ["DEFAULT_CHUNK_BYTES", "FORMAT_VERSION", "LOCK_SUFFIX", "HDF5Backend"]

logger = logging.getLogger(__name__)

#: Version of the layout written by this backend (root attribute ``storegate_format``).
FORMAT_VERSION = 1
#: Target uncompressed bytes of one chunk.
DEFAULT_CHUNK_BYTES = 1 << 20
#: Smallest chunk (bytes) given to a var whose first append is small.
MIN_CHUNK_BYTES = 64 << 10
#: HDF5 file signature (at offset 0, or 512, 1024, ... after a user block).
SIGNATURE = b"\x89HDF\r\n\x1a\n"
#: File extensions that make ``output_dir`` name the file itself.
H5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5")
#: File name used inside a directory given as ``output_dir``.
DEFAULT_FILE_NAME = "store.h5"
#: Suffix of the writer lock file beside the HDF5 file (:class:`WriterLock`).
LOCK_SUFFIX = ".sg-lock"

_MODES = ("r", "r+", "a", "w", "w-")
_COMPRESSIONS = (None, "gzip", "lzf")
_ROOT_BACKEND = "storegate_backend"
_ROOT_FORMAT = "storegate_format"
_DATA_ATTRS = "storegate_attrs"
_PHASE_META = "storegate"
_RAGGED_ATTR = "storegate_ragged"
_OLD_PREFIX = ".sg-old-"
_CHUNK_CACHE_BYTES = 8 << 20

# h5py objects a forked child inherited from its parent: kept alive, never closed, so that
# garbage collection in the child cannot close (flush, unlock) the parent's file.
_INHERITED: list[Any] = []


_F = TypeVar("_F", bound=Callable[..., Any])


def _h5py() -> Any:
    import h5py

    return h5py


def _atomic(method: _F) -> _F:
    """Run a write method in :meth:`HDF5Backend.transaction` (its own unit of commit when
    it is not called inside a block)."""

    @functools.wraps(method)
    def atomic(self: HDF5Backend, *args: Any, **kwargs: Any) -> Any:
        with self.transaction():
            return method(self, *args, **kwargs)

    return cast(_F, atomic)


class _Blocks:
    """How deep a backend is in :meth:`HDF5Backend.transaction` blocks (shared with the
    finalizer of its writable file, which must not commit half a block)."""

    __slots__ = ("depth",)

    def __init__(self) -> None:
        self.depth = 0


def _close_writer(f: Any, jf: JournaledFile, pid: int, blocks: _Blocks) -> None:
    """Close a writable file a backend left open (collected, or at interpreter exit) and
    commit what closing it wrote. Every block was committed at its end, so this only
    finishes HDF5's own bookkeeping. Inside a block (a thread still writing at exit), or if
    closing fails, the journal stays and the next open rolls back to the last commit."""
    if os.getpid() != pid:
        # a forked child: the parent's objects must neither be used nor closed here
        _INHERITED.append((f, jf))
        return
    try:
        f.close()
    except Exception:  # pragma: no cover - closing a damaged file
        logger.warning("storegate-hdf5: closing %s failed; the next open rolls it back to "
                       "its last commit", jf.path, exc_info=True)
        jf.close()
        return
    try:
        if blocks.depth == 0:
            jf.commit()
    finally:
        jf.close()


def _writer_alive(path: str) -> bool:
    """Whether a writer holds the lock file of the HDF5 file ``path`` (without taking it,
    creating the lock file or needing write permission)."""
    try:
        fd = os.open(path + LOCK_SUFFIX, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False  # no lock file: no writer ever locked this store
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:  # pragma: no cover - a file system without flock
        return False
    finally:
        os.close(fd)
    return False


def _holder(path: str) -> str:
    """Who holds the writer lock of ``path``, from the lock file (for messages)."""
    try:
        with open(path + LOCK_SUFFIX, "rb") as fh:
            info = json.loads(fh.read(4096) or b"{}")
    except (OSError, ValueError):
        info = {}
    if not isinstance(info, dict) or "pid" not in info:
        return "another writer"
    who = ("another backend in this process" if info.get("pid") == os.getpid()
           else f"process {info.get('pid')} on {info.get('host', '?')}")
    return f"{who} (since {info.get('since', '?')})"


def _next_pow2(n: int) -> int:
    return 1 << max(0, int(n - 1).bit_length())


def resolve_path(path: str | os.PathLike[str] | None,
                 output_dir: str | os.PathLike[str] | None) -> str | None:
    """The HDF5 file of a store from the backend arguments.

    ``path`` always names the file. ``output_dir`` (multiml's argument) names the file when it
    is an existing file or ends in ``.h5``/``.hdf5``/``.hdf``/``.he5``; otherwise it is a
    directory holding ``store.h5``.

    Examples
    --------
    >>> resolve_path(None, "runs/a.h5"), resolve_path(None, "runs/out")
    ('runs/a.h5', 'runs/out/store.h5')
    """
    if path is not None and output_dir is not None:
        raise InvalidArgumentError(
            "pass either path= (the HDF5 file) or output_dir= to the hdf5 backend, not both.")
    if path is not None:
        return os.fspath(path)
    if output_dir is None:
        return None
    loc = os.fspath(output_dir)
    if os.path.isfile(loc) or loc.lower().endswith(H5_SUFFIXES):
        return loc
    return os.path.join(loc, DEFAULT_FILE_NAME)


@dataclass(frozen=True)
class _Settings:
    path: str
    compression: str | None
    compression_opts: int | None
    chunk: int | None
    chunk_bytes: int
    cache_bytes: int


@dataclass
class _Meta:
    """A phase's committed var order (cached while the file stays open)."""

    order: list[str]
    ragged: set[str] = field(default_factory=set)


class HDF5Backend(Backend):
    """Vars stored as chunked, resizable datasets of one HDF5 file (via h5py).

    Parameters
    ----------
    path
        The HDF5 file. ``None`` (and no ``output_dir``) makes a temporary file, removed when
        the backend is collected.
    output_dir
        multiml's argument, accepted too: the file if it ends in ``.h5`` (``.hdf5``, ``.hdf``,
        ``.he5``) or is an existing file, otherwise a directory holding ``store.h5``.
    mode
        ``'r'`` read-only, ``'r+'`` read/write (must exist), ``'a'`` read/write, created if
        missing (default), ``'w'`` truncate first, ``'w-'`` create (must not exist).
    compression
        ``None`` (default, fastest reads), ``'gzip'`` or ``'lzf'``, for datasets this backend
        creates (with the shuffle filter).
    compression_opts
        The gzip level (0-9).
    chunk
        Rows per chunk; ``None`` sizes chunks by ``chunk_bytes``.
    chunk_bytes
        Target uncompressed chunk size (default 1 MiB).
    cache_bytes
        Budget of the decoded in-memory copies used for random gathers (default: a quarter of
        RAM; ``0`` disables them).

    Examples
    --------
    >>> be = HDF5Backend(compression="gzip")
    >>> be.create_data_id("d")
    >>> be.append("d", "valid", "y", np.arange(4, dtype="i2"))
    >>> be.info("d", "valid", "y").codec
    'gzip'
    """

    name: ClassVar[str] = "hdf5"
    persistent: ClassVar[bool] = True
    supports_ragged: ClassVar[bool] = True

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        output_dir: str | os.PathLike[str] | None = None,
        mode: str = "a",
        compression: str | None = None,
        compression_opts: int | None = None,
        chunk: int | None = None,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        cache_bytes: int | None = None,
    ) -> None:
        if mode not in _MODES:
            raise InvalidArgumentError(
                f"unknown mode {mode!r} for the hdf5 backend; use one of {', '.join(_MODES)} "
                "('r' read-only, 'a' read/write creating the file if needed).")
        if isinstance(compression, str) and compression.lower() in ("none", "", "default"):
            compression = None
        if compression not in _COMPRESSIONS:
            raise InvalidArgumentError(
                f"unknown compression {compression!r} for the hdf5 backend; use None (default, "
                "fastest reads), 'gzip' or 'lzf'.")
        if compression_opts is not None and compression != "gzip":
            raise InvalidArgumentError("compression_opts (a gzip level) needs compression='gzip'.")
        if chunk is not None and (not isinstance(chunk, int | np.integer) or chunk < 1):
            raise InvalidArgumentError(f"chunk must be a positive number of rows, got {chunk!r}.")
        if int(chunk_bytes) < 1:
            raise InvalidArgumentError(f"chunk_bytes must be positive, got {chunk_bytes!r}.")
        resolved = resolve_path(path, output_dir)
        self._tmpdir: str | None = None
        if resolved is None:
            self._tmpdir = tempfile.mkdtemp(prefix="storegate-")
            resolved = os.path.join(self._tmpdir, DEFAULT_FILE_NAME)
            weakref.finalize(self, remove_own_tmpdir, self._tmpdir, os.getpid())
        self._settings = _Settings(
            path=resolved,
            compression=compression,
            compression_opts=None if compression_opts is None else int(compression_opts),
            chunk=None if chunk is None else int(chunk),
            chunk_bytes=int(chunk_bytes),
            cache_bytes=default_cache_bytes() if cache_bytes is None else int(cache_bytes),
        )
        self._readonly = mode == "r"
        self._mode = mode
        self._init_process()
        self._cache = ArenaCache(self._settings.cache_bytes)
        if self._readonly:
            self._file_handle(write=False)  # fail early
        else:
            self._start_writer()
        # later opens must never truncate again or fail because the file exists
        self._mode = "r" if self._readonly else "r+"

    # ------------------------------------------------------------------ process state
    def _init_process(self) -> None:
        self._pid = os.getpid()
        self._file: Any = None
        self._writable = False
        self._objs: dict[str, Any] = {}
        self._meta: dict[tuple[str, str], _Meta] = {}
        self._offsets: dict[tuple[str, str, str], np.ndarray] = {}
        # the writer side: the journaled file under the open h5py file, its finalizer, the
        # store's writer lock and the transaction state
        self._jfile: JournaledFile | None = None
        self._wfin: weakref.finalize[Any, Any] | None = None
        self._lock: WriterLock | None = None
        self._blocks = _Blocks()
        self._tx_clean = True
        self._tx_mutex = threading.RLock()
        # written since the last commit: HDF5 keeps changes in its metadata and chunk caches,
        # so the journal may not have seen them yet
        self._dirty = False

    def _check_pid(self) -> None:
        if os.getpid() == self._pid:
            return
        # A forked child: the parent's h5py objects must neither be used nor closed here.
        if self._file is not None:
            _INHERITED.append((self._file, self._objs, self._jfile))
        if self._wfin is not None:
            self._wfin.detach()
        arenas = self._cache.items()
        self._init_process()
        self._cache = ArenaCache(self._settings.cache_bytes)
        for key, arena in arenas:  # committed rows: shared copy-on-write with the parent
            arena.after_fork()
            self._cache.put(key, arena)

    def __getstate__(self) -> dict[str, Any]:
        if os.getpid() == self._pid:
            self.flush()
        return {"settings": self._settings, "mode": self._mode, "readonly": self._readonly}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._settings = state["settings"]
        self._mode = state["mode"]
        self._readonly = state["readonly"]
        self._tmpdir = None
        self._init_process()
        self._cache = ArenaCache(self._settings.cache_bytes)

    @property
    def readonly(self) -> bool:
        return self._readonly

    @property
    def location(self) -> str:
        """The HDF5 file of the store."""
        return self._settings.path

    def describe(self) -> str:
        return f"HDF5 file {self._settings.path!r}"

    # ------------------------------------------------------------------ the writer
    def _writer_lock(self) -> WriterLock:
        if self._lock is None:
            self._lock = WriterLock(self._settings.path + LOCK_SUFFIX,
                                    f"hdf5 store {self._settings.path!r}")
        return self._lock

    def _take_lock(self) -> bool:
        """Hold the writer lock (until :meth:`close`); ``True`` if it was taken just now.
        Raises :class:`~storegate.errors.StoreLockedError` while another writer holds it."""
        lock = self._writer_lock()
        if lock.held:
            return False
        try:
            lock.acquire()
        except StoreLockedError:
            raise
        except OSError as err:  # a read-only directory: no lock file, no writing
            raise ReadOnlyError(
                f"cannot write {self.describe()}: its lock file {lock.path!r} cannot be "
                f"created ({err}). Make the directory writable, or open the store with "
                "mode='r'.") from None
        # another writer may have changed the file since this process read it
        self._cache.clear()
        return True

    def _start_writer(self) -> None:
        """The writable open of ``__init__``: create (or wipe) the file as one committed unit,
        or, for an existing file, roll back a journal a killed writer left and finish or undo
        an interrupted var swap. The writer lock is kept only if the open wrote; otherwise it
        is taken at the first write, so a backend opened with the default mode only to read
        never blocks a writer."""
        path = self._settings.path
        empty = not os.path.isfile(path) or os.path.getsize(path) == 0
        if self._mode in ("w", "w-") or (self._mode == "a" and empty):
            with self.transaction():
                self._file_handle(write=True)
            return
        if not os.path.exists(path) or os.path.isdir(path):
            self._file_handle(write=False)  # the proper error
            return
        lock = self._writer_lock()
        try:
            free = lock.try_acquire()
        except OSError:  # no lock file possible (read-only directory): writes will say so
            free = False
        if not free:  # a live writer: leave its journal alone
            self._file_handle(write=False)
            return
        try:
            if journal_pending(path):
                self._roll_back_journal()
            if self._needs_repair():
                self._repair()  # a write: the lock stays with this backend
        finally:
            if not self._writable:
                lock.release()

    def _roll_back_journal(self) -> None:
        """Undo the interrupted session of a killed writer (the writer lock is held)."""
        try:
            JournaledFile(self._settings.path).close()  # opening it recovers
        except FileBusyError as err:
            raise self._busy(err) from None

    def _busy(self, err: BaseException) -> StoregateError:
        path = self._settings.path
        if _writer_alive(path) and not self._writer_lock().held:
            return StoreLockedError(
                f"{path!r} is open in another process: it is being written by "
                f"{_holder(path)}. HDF5 allows one writer and no readers while it writes: "
                "call flush() or close() on the writing StoreGate first (readers open the "
                "store with mode='r').")
        return StoregateError(
            f"{path!r} is open in another process, or by another backend of this process "
            f"({err}). HDF5 allows one writer and no readers while it writes: call flush() or "
            "close() on the backend that has it open first, and open readers with mode='r'.")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """See :meth:`Backend.transaction`. Every change to the file goes through a rollback
        journal (:mod:`storegate_hdf5.journal`); blocks nest (an inner block joins the
        outermost one), and the end of the outermost block is a commit: HDF5 is flushed and
        the journal emptied. HDF5 buffers no rows in memory, so every block ends with a
        commit. If the outermost block raises, everything it wrote is rolled back (the file
        is restored and reopened), so the failed operation leaves no trace. Each write method
        called outside a block is a block of its own.

        Examples
        --------
        >>> be = HDF5Backend()
        >>> be.create_data_id("d")
        >>> with be.transaction():
        ...     be.append("d", "train", "x", np.arange(3))
        ...     be.append("d", "train", "y", np.arange(3))
        >>> try:
        ...     with be.transaction():
        ...         be.append("d", "train", "x", np.arange(3))
        ...         raise RuntimeError("interrupted")
        ... except RuntimeError:
        ...     pass
        >>> be.info("d", "train", "x").length  # the failed block left no trace
        3
        """
        self._check_pid()
        with self._tx_mutex:
            if self._blocks.depth == 0:
                # a failed block may be undone only if it began at a commit
                self._tx_clean = not self._dirty
            self._blocks.depth += 1
            try:
                yield
            except BaseException:
                self._blocks.depth -= 1
                if self._blocks.depth == 0:
                    self._tx_failed()
                raise
            self._blocks.depth -= 1
            if self._blocks.depth == 0:
                try:
                    self._commit_journal()
                except BaseException:
                    self._tx_failed()
                    raise

    def _commit_journal(self) -> None:
        """Flush HDF5 and commit the journal (a no-op when nothing was written)."""
        jf = self._jfile
        if not self._dirty or jf is None or self._file is None:
            return
        self._file.flush()
        jf.commit()
        self._dirty = False

    def _tx_failed(self) -> None:
        if not self._dirty or self._jfile is None:
            return
        if not self._tx_clean:  # pragma: no cover - every block ends with a commit
            logger.warning("storegate-hdf5: an operation failed after earlier uncommitted "
                           "writes to %s; the file keeps what was written", self.describe())
            return
        self._roll_back()

    def _roll_back(self) -> None:
        """Undo everything since the last commit: close HDF5 (what closing writes is
        journaled too), restore the saved pages, forget every cached object."""
        f, jf, fin = self._file, self._jfile, self._wfin
        self._objs.clear()
        self._meta.clear()
        self._offsets.clear()
        self._file, self._jfile, self._wfin = None, None, None
        self._writable = False
        self._dirty = False
        self._cache.clear()
        if fin is not None:
            fin.detach()
        if f is not None:
            try:
                f.close()
            except Exception:  # pragma: no cover - closing after a failure inside HDF5
                logger.debug("storegate-hdf5: closing %s before a rollback failed",
                             self.describe(), exc_info=True)
        if jf is None:
            return
        try:
            restored = jf.rollback()
            logger.info("storegate-hdf5: rolled back a failed operation on %s (%d saved page "
                        "runs restored)", self.describe(), restored)
        except Exception:  # pragma: no cover - an I/O error while restoring
            logger.exception("storegate-hdf5: could not roll back %s; the journal stays and "
                             "the next open retries", self.describe())
        finally:
            jf.close()

    # ------------------------------------------------------------------ the file
    def _open_read(self) -> Any:
        """The file opened read-only with HDF5's native driver."""
        h5py = _h5py()
        path = self._settings.path
        if os.path.isdir(path):
            raise CorruptStoreError(
                f"{path!r} is a directory, not an HDF5 file; pass the file as path= (or an "
                f"output_dir without a .h5 suffix to use {DEFAULT_FILE_NAME!r} inside it).")
        if journal_pending(path):
            self._journal_found()
        if os.path.isfile(path) and os.path.getsize(path) == 0:
            raise CorruptStoreError(
                f"{path!r} is empty: a writer creating the store was interrupted. Open it with "
                "mode='a' (or 'w') to create the store again.")
        try:
            f = h5py.File(path, "r", track_order=True, rdcc_nbytes=_CHUNK_CACHE_BYTES)
        except FileNotFoundError:
            raise StoreNotFoundError(
                f"no HDF5 store at {path!r} (mode={self._mode!r} opens existing files only); "
                "check the path, or open with mode='a' to create it.") from None
        except OSError as err:
            text = str(err)
            if "lock" in text.lower():
                raise self._busy(err) from None
            raise CorruptStoreError(
                f"{path!r} is not a readable HDF5 file ({text}); it may be damaged or not be "
                "an HDF5 file.") from None
        try:
            self._check_root(f, False)
        except BaseException:
            f.close()
            raise
        return f

    def _journal_found(self) -> None:
        """A journal beside the file at an open for reading: roll it back if no writer is
        alive (like SQLite's readers with a hot journal; a ``mode='r'`` backend too, when it may
        write the file), else refuse (never read a torn file)."""
        path = self._settings.path
        lock = self._writer_lock()
        held = lock.held
        taken = False
        if not held:
            with contextlib.suppress(OSError):  # (no lock file possible: cannot recover)
                taken = lock.try_acquire()
        if held or taken:
            try:
                self._roll_back_journal()
            finally:
                if taken:
                    lock.release()
            return
        if _writer_alive(path):
            raise self._busy(OSError(f"{path!r} is being written"))
        raise CorruptStoreError(
            f"{path!r} was being written by a process that stopped before committing (its "
            f"rollback journal {journal_path(path)!r} is still there), so the file may be "
            "torn. Open the store once with mode='a' (for example StoreGate(backend='hdf5', "
            f"backend_args={{'path': {path!r}, 'mode': 'a'}}) where the file is writable): "
            "that rolls the interrupted write back to the last commit.")

    def _open_write(self) -> Any:
        """The file opened read/write through a :class:`JournaledFile` (h5py's ``fileobj``
        driver), after taking the writer lock and rolling back a killed writer's journal."""
        h5py = _h5py()
        path = self._settings.path
        mode = self._mode
        if mode in ("a", "w", "w-"):
            parent = os.path.dirname(path)
            if parent:
                os.makedirs(parent, exist_ok=True)
        if os.path.isdir(path):
            raise CorruptStoreError(
                f"{path!r} is a directory, not an HDF5 file; pass the file as path= (or an "
                f"output_dir without a .h5 suffix to use {DEFAULT_FILE_NAME!r} inside it).")
        exists = os.path.exists(path)
        if mode == "r+" and not exists:
            raise StoreNotFoundError(
                f"no HDF5 store at {path!r} (mode='r+' opens existing files only); check the "
                "path, or open with mode='a' to create it.")
        if mode == "w-" and exists:
            raise StoregateError(
                f"{path!r} already exists and mode='w-' refuses to overwrite it; use mode='a' "
                "to open it or mode='w' to replace it.")
        took = self._take_lock()
        try:
            try:
                jf = JournaledFile(path, create=True)  # rolls back a killed writer's journal
            except FileBusyError as err:
                raise self._busy(err) from None
            try:
                if mode == "w" and jf.original_length:
                    # 'w' replaces the store: the old content is dropped at once, unjournaled
                    # (a kill now leaves an empty file, which the next writable open creates)
                    jf.wipe()
                h5mode = "r+" if jf.original_length else "w"
                try:
                    f = h5py.File(jf, h5mode, track_order=True, rdcc_nbytes=_CHUNK_CACHE_BYTES)
                except OSError as err:
                    raise CorruptStoreError(
                        f"{path!r} is not a readable HDF5 file ({err}); it may be damaged or "
                        "not be an HDF5 file.") from None
                try:
                    self._check_root(f, True)
                except BaseException:
                    f.close()
                    raise
            except BaseException:
                if jf.active:
                    jf.rollback()
                jf.close()
                raise
        except BaseException:
            if took:
                self._writer_lock().release()
            raise
        self._jfile = jf
        self._wfin = weakref.finalize(self, _close_writer, f, jf, os.getpid(), self._blocks)
        return f

    def _check_root(self, f: Any, write: bool) -> None:
        kind = f.attrs.get(_ROOT_BACKEND)
        if isinstance(kind, bytes):
            kind = kind.decode()
        if kind != "hdf5":
            if len(f.keys()):
                raise CorruptStoreError(
                    f"{self._settings.path!r} is an HDF5 file but not a storegate hdf5 store "
                    f"(no root attribute {_ROOT_BACKEND}='hdf5'); import it with "
                    "storegate.convert.hdf5.import_hdf5 instead.")
            if write:
                f.attrs[_ROOT_BACKEND] = "hdf5"
                f.attrs[_ROOT_FORMAT] = FORMAT_VERSION
            return
        fmt = f.attrs.get(_ROOT_FORMAT, FORMAT_VERSION)
        if int(fmt) > FORMAT_VERSION:
            raise CorruptStoreError(
                f"{self._settings.path!r} has storegate hdf5 format {int(fmt)}, newer than "
                f"this plugin reads ({FORMAT_VERSION}); upgrade storegate-hdf5.")

    def _file_handle(self, write: bool = False) -> Any:
        """The open file: any handle for reads, a read/write (journaled) one for writes."""
        self._check_pid()
        if self._file is not None and (self._writable or not write):
            if write:
                self._dirty = True
            return self._file
        if write:
            self._check_writable()
        if self._file is not None:
            self._close_file()
        path = self._settings.path
        if not write and not self._readonly and (
                not os.path.exists(path) or (os.path.isfile(path)
                                             and os.path.getsize(path) == 0)):
            write = True  # a writable store whose file is gone (or empty): create it again
        with self._tx_mutex:
            self._file = self._open_write() if write else self._open_read()
            self._writable = write
            if write:
                self._dirty = True
                if self._blocks.depth == 0:
                    self._commit_journal()  # opened outside any block: the open is a unit
        return self._file

    def _close_file(self) -> None:
        """Close the file; a writable one is committed once HDF5 has closed it (a close that
        fails leaves the journal, so the next open rolls back to the last commit)."""
        self._objs.clear()
        self._meta.clear()
        self._offsets.clear()
        f, jf, fin = self._file, self._jfile, self._wfin
        self._file, self._jfile, self._wfin = None, None, None
        self._writable = False
        self._dirty = False
        if fin is not None:
            fin.detach()
        closed = True
        if f is not None:
            try:
                f.close()
            except Exception:  # pragma: no cover - closing a damaged file
                closed = False
                logger.warning("storegate-hdf5: closing %s failed", self.describe(),
                               exc_info=True)
        if jf is not None:
            try:
                if closed:
                    jf.commit()
            finally:
                jf.close()

    def flush(self) -> None:
        """Commit everything written and release the file (it reopens on the next call), so
        other processes can open it; the writer lock stays until :meth:`close`. Inside a
        :meth:`transaction` block this only flushes HDF5 (the block's end commits)."""
        if os.getpid() != self._pid:
            return
        with self._tx_mutex:
            if self._blocks.depth:
                if self._file is not None and self._writable:
                    self._file.flush()
                return
            self._close_file()

    def close(self) -> None:
        """Commit, close the file and give the writer lock back (the backend may be used
        again: it reopens, and takes the lock again at its next write)."""
        if os.getpid() == self._pid:
            with self._tx_mutex:
                self._close_file()
                if self._lock is not None:
                    self._lock.release()
        self._cache.clear()

    # ------------------------------------------------------------------ locations
    @classmethod
    def guess_can_open(cls, location: str) -> bool:
        """An existing HDF5 file whose root carries ``storegate_backend = 'hdf5'``."""
        try:
            location = os.fspath(location)
            if not os.path.isfile(location):
                return False
            with open(location, "rb") as fh:
                found = False
                for offset in (0, 512, 1024, 2048, 4096, 8192):
                    fh.seek(offset)
                    if fh.read(8) == SIGNATURE:
                        found = True
                        break
            if not found:
                return False
            if journal_pending(location):
                return True  # only this backend writes that journal (the file may be torn)
            h5py = _h5py()
            with h5py.File(location, "r", locking=False) as f:
                kind = f.attrs.get(_ROOT_BACKEND)
                if isinstance(kind, bytes):
                    kind = kind.decode()
                return bool(kind == "hdf5")
        except Exception:
            return False

    @classmethod
    def location_args(cls, location: str, mode: str = "r") -> dict[str, Any]:
        """``{'path': location, 'mode': mode}``.

        Examples
        --------
        >>> HDF5Backend.location_args("run.h5")
        {'path': 'run.h5', 'mode': 'r'}
        """
        return {"path": location, "mode": mode}

    # ------------------------------------------------------------------ safety checks
    def _refuse_link(self, group: Any, name: str, where: str) -> Any:
        """The link object of ``name`` in ``group`` (None if absent); external links raise."""
        h5py = _h5py()
        link = group.get(name, getlink=True)
        if isinstance(link, h5py.ExternalLink):
            raise CorruptStoreError(
                f"{where!r} in {self.describe()} is an external link to {link.filename!r}:"
                f"{link.path!r}; storegate refuses links that read outside the file. Copy the "
                "data into the file (h5py copy) or remove the link.")
        return link

    def _check_dataset(self, ds: Any, where: str) -> None:
        if ds.is_virtual:
            outside = sorted({vs.file_name for vs in ds.virtual_sources()
                              if vs.file_name != "."})
            if outside:
                raise CorruptStoreError(
                    f"{where!r} in {self.describe()} is a virtual dataset reading from "
                    f"{outside}; storegate refuses data outside the file. Materialise it "
                    "(h5repack) or import it with storegate.convert.hdf5.")
        if ds.external:
            raise CorruptStoreError(
                f"{where!r} in {self.describe()} keeps its raw data in external files "
                f"{[e[0] for e in ds.external]}; storegate refuses data outside the file.")

    def _get(self, path: str, write: bool = False) -> Any:
        """The h5py object at ``path`` (checked, cached), or ``None`` if it does not exist."""
        f = self._file_handle(write)
        obj = self._objs.get(path)
        if obj is not None:
            return obj
        parent, _, name = path.rpartition("/")
        group = f[parent] if parent else f
        if self._refuse_link(group, name, path) is None:
            return None
        obj = group[name]
        h5py = _h5py()
        if isinstance(obj, h5py.Dataset):
            self._check_dataset(obj, path)
        elif isinstance(obj, h5py.Group) and obj.attrs.get(_RAGGED_ATTR, False):
            for part in ("values", "offsets"):
                self._refuse_link(obj, part, f"{path}/{part}")
                sub = obj.get(part)
                if isinstance(sub, h5py.Dataset):
                    self._check_dataset(sub, f"{path}/{part}")
        self._objs[path] = obj
        return obj

    # ------------------------------------------------------------------ data_ids
    def data_ids(self) -> list[str]:
        f = self._file_handle()
        names = [k for k in f if not k.startswith(".")]
        for name in names:
            self._refuse_link(f, name, name)
        return names

    def _data_group(self, data_id: str, write: bool = False) -> Any:
        group = self._get(data_id, write)
        if group is None:
            raise DataIdNotFoundError(
                f"data_id {data_id!r} does not exist in {self.describe()}; existing: "
                f"{self.data_ids()}.")
        if not isinstance(group, _h5py().Group):
            raise CorruptStoreError(f"{data_id!r} in {self.describe()} is a dataset, not a group.")
        return group

    @_atomic
    def create_data_id(self, data_id: str) -> None:
        if self._get(data_id) is not None:
            return
        if self._readonly:
            raise DataIdNotFoundError(
                f"data_id {data_id!r} does not exist in {self.describe()}, which is open "
                f"read-only; existing data_ids: {self.data_ids()}.")
        f = self._file_handle(write=True)
        group = f.create_group(data_id, track_order=True)
        group.attrs[_DATA_ATTRS] = "{}"
        for phase in PHASES:
            pg = group.create_group(phase, track_order=True)
            pg.attrs[_PHASE_META] = json.dumps({"var_order": [], "ragged": []})
        self._objs.pop(data_id, None)

    @_atomic
    def delete_data_id(self, data_id: str) -> None:
        self._check_writable()
        self._data_group(data_id)
        f = self._file_handle(write=True)
        del f[data_id]
        self._forget_prefix(data_id)
        self._cache.drop_prefix((data_id,))

    def get_attrs(self, data_id: str) -> dict[str, Any]:
        raw = self._data_group(data_id).attrs.get(_DATA_ATTRS, "{}")
        if isinstance(raw, bytes):
            raw = raw.decode()
        try:
            attrs = json.loads(raw)
        except (TypeError, ValueError) as err:
            raise CorruptStoreError(
                f"the attributes of data_id {data_id!r} in {self.describe()} are not valid "
                f"JSON ({err}).") from None
        return attrs if isinstance(attrs, dict) else {}

    @_atomic
    def set_attrs(self, data_id: str, attrs: dict[str, Any]) -> None:
        self._check_writable()
        try:
            text = json.dumps(attrs)
        except (TypeError, ValueError) as err:
            raise InvalidArgumentError(
                f"attrs of data_id {data_id!r} must be JSON-able ({err}).") from None
        self._data_group(data_id, write=True).attrs[_DATA_ATTRS] = text

    # ------------------------------------------------------------------ phases
    def _forget_prefix(self, prefix: str) -> None:
        for key in [k for k in self._objs if k == prefix or k.startswith(prefix + "/")]:
            del self._objs[key]
        parts = prefix.split("/")
        for phase_key in [k for k in self._meta if list(k[: len(parts)]) == parts[:2]]:
            del self._meta[phase_key]
        for var_key in [k for k in self._offsets if list(k[: len(parts)]) == parts]:
            del self._offsets[var_key]

    def _phase_group(self, data_id: str, phase: str, write: bool = False) -> Any:
        """The phase group, created when writing; ``None`` when absent on a read."""
        phase = check_phase(phase, allow_all=False)
        self._data_group(data_id, write)
        pg = self._get(f"{data_id}/{phase}", write)
        if pg is None and write:
            pg = self._file_handle(write=True)[data_id].create_group(phase, track_order=True)
            pg.attrs[_PHASE_META] = json.dumps({"var_order": [], "ragged": []})
            self._objs[f"{data_id}/{phase}"] = pg
        return pg

    def _phase_meta(self, data_id: str, phase: str) -> _Meta:
        pg = self._phase_group(data_id, phase)
        key = (data_id, phase)
        meta = self._meta.get(key)
        if meta is not None:
            return meta
        if pg is None:
            return _Meta([])
        names = list(pg.keys())
        for name in names:  # listing refuses external links
            self._refuse_link(pg, name, f"{data_id}/{phase}/{name}")
        raw = pg.attrs.get(_PHASE_META)
        info: Any = None
        if raw is not None:
            try:
                info = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
            except (TypeError, ValueError):
                info = None
        if isinstance(info, dict) and isinstance(info.get("var_order"), list):
            order = [str(v) for v in info["var_order"]]
        else:  # a phase storegate did not write: list its members
            order = sorted(n for n in names if not n.startswith("."))
        h5py = _h5py()
        ragged = {n for n in names if isinstance(pg.get(n), h5py.Group)}
        meta = _Meta(order, ragged)
        self._meta[key] = meta
        return meta

    def _commit(self, data_id: str, phase: str, order: list[str]) -> None:
        """Persist the var order: the last step of every create/delete/rename."""
        pg = self._phase_group(data_id, phase, write=True)
        h5py = _h5py()
        ragged = [v for v in order if isinstance(pg.get(v), h5py.Group)]
        pg.attrs[_PHASE_META] = json.dumps({"var_order": order, "ragged": ragged})
        self._meta.pop((data_id, phase), None)

    # ------------------------------------------------------------------ vars
    def var_names(self, data_id: str, phase: str) -> list[str]:
        return list(self._phase_meta(data_id, phase).order)

    def has_var(self, data_id: str, phase: str, var: str) -> bool:
        meta = self._phase_meta(data_id, phase)
        if var in meta.order:
            return True
        if var.startswith("."):
            return self._get(f"{data_id}/{check_phase(phase, allow_all=False)}/{var}") is not None
        return False

    def _obj(self, data_id: str, phase: str, var: str, write: bool = False,
             missing_ok: bool = False) -> Any:
        """The dataset (regular var) or group (ragged var), or ``None`` if ``missing_ok``."""
        meta = self._phase_meta(data_id, phase)
        phase = check_phase(phase, allow_all=False)
        listed = var in meta.order
        obj = None
        if listed or var.startswith("."):
            obj = self._get(f"{data_id}/{phase}/{var}", write)
        if obj is None:
            if listed:
                raise CorruptStoreError(
                    f"var {var!r} is listed in {data_id}/{phase} of {self.describe()} but its "
                    "dataset is missing; the file was modified outside storegate.")
            if missing_ok:
                return None
            raise VarNotFoundError(
                f"var {var!r} does not exist in data_id {data_id!r}, phase {phase!r} of "
                f"{self.describe()}; vars there: {meta.order}.")
        return obj

    def _part(self, data_id: str, phase: str, var: str, part: str, write: bool = False) -> Any:
        ds = self._get(f"{data_id}/{phase}/{var}/{part}", write)
        if ds is None:
            raise CorruptStoreError(
                f"ragged var {var!r} in {data_id}/{phase} of {self.describe()} has no {part!r} "
                "dataset; the file was modified outside storegate.")
        return ds

    @staticmethod
    def _is_group(obj: Any) -> bool:
        return isinstance(obj, _h5py().Group)

    @staticmethod
    def _codec(ds: Any) -> str:
        return str(ds.compression) if ds.compression else "none"

    def info(self, data_id: str, phase: str, var: str) -> VarInfo:
        obj = self._obj(data_id, phase, var)
        if self._is_group(obj):
            values = self._part(data_id, phase, var, "values")
            offsets = self._ragged_offsets(data_id, phase, var)
            return VarInfo(var, (int(offsets.shape[0]) - 1,
                                 *(int(s) for s in values.shape[1:])),
                           np.dtype(values.dtype), ragged=True,
                           chunks=tuple(values.chunks) if values.chunks else None,
                           codec=self._codec(values), extra={"n_values": int(offsets[-1])})
        return VarInfo(var, tuple(int(s) for s in obj.shape), np.dtype(obj.dtype),
                       chunks=tuple(obj.chunks) if obj.chunks else None, codec=self._codec(obj))

    def stored_bytes(self, data_id: str, phase: str, var: str) -> int | None:
        """Bytes the var's datasets occupy in the file (``ds.id.get_storage_size()``).

        Examples
        --------
        >>> be = HDF5Backend()
        >>> be.create_data_id("d"); be.append("d", "train", "x", np.ones(1000))
        >>> be.stored_bytes("d", "train", "x") >= 8000
        True
        """
        obj = self._obj(data_id, phase, var)
        if self._is_group(obj):
            return sum(int(self._part(data_id, phase, var, p).id.get_storage_size())
                       for p in ("values", "offsets"))
        return int(obj.id.get_storage_size())

    def check(self, data_id: str, phase: str, var: str) -> list[str]:
        """Ragged offsets that do not start at 0, decrease or point past the values; datasets
        that cannot be opened."""
        problems: list[str] = []
        try:
            obj = self._obj(data_id, phase, var)
        except StoregateError as err:
            if isinstance(err, VarNotFoundError):
                raise
            return [str(err)]
        if not self._is_group(obj):
            return problems
        try:
            values = self._part(data_id, phase, var, "values")
            offsets = np.asarray(self._part(data_id, phase, var, "offsets")[:], dtype=np.int64)
        except StoregateError as err:
            return [str(err)]
        if offsets.shape[0] == 0:
            return ["the offsets dataset is empty; a ragged var needs one offset more than it "
                    "has rows"]
        if offsets[0] != 0:
            problems.append(f"the offsets start at {int(offsets[0])}, not 0")
        down = np.flatnonzero(np.diff(offsets) < 0)
        if down.size:
            problems.append(f"the offsets decrease at row {int(down[0])} ({down.size} places "
                            "in all)")
        if offsets[-1] > values.shape[0]:
            problems.append(f"the offsets end at {int(offsets[-1])}, past the "
                            f"{values.shape[0]} values in the file")
        return problems

    # ------------------------------------------------------------------ creating datasets
    def _chunk_rows(self, row_shape: tuple[int, ...], dtype: np.dtype, first: int) -> int:
        s = self._settings
        if s.chunk:
            return s.chunk
        row_bytes = max(1, int(np.prod(row_shape, dtype=np.int64)) * dtype.itemsize)
        target = max(1, s.chunk_bytes // row_bytes)
        floor = max(1, min(s.chunk_bytes, MIN_CHUNK_BYTES) // row_bytes)
        return int(min(target, max(floor, _next_pow2(max(1, first)))))

    def _new_dataset(self, group: Any, name: str, shape: tuple[int, ...], dtype: np.dtype,
                     first: int) -> Any:
        row = tuple(int(s) for s in shape[1:])
        rows = self._chunk_rows(row, dtype, first)
        s = self._settings
        kwargs: dict[str, Any] = {}
        if s.compression:
            kwargs.update(compression=s.compression, shuffle=True)
            if s.compression_opts is not None:
                kwargs["compression_opts"] = s.compression_opts
        return group.create_dataset(
            name, shape=tuple(int(x) for x in shape), dtype=dtype,
            maxshape=(None, *(d if d > 0 else None for d in row)),
            chunks=(rows, *(max(1, d) for d in row)), **kwargs)

    @staticmethod
    def _check_dtype(dtype: np.dtype, var: str) -> None:
        if dtype.kind not in "biufc" or dtype.fields is not None:
            raise DtypeError(
                f"cannot store dtype {dtype} in var {var!r}: the hdf5 backend stores bool, "
                "integer, float and complex numbers (no objects, strings or records).")

    # ------------------------------------------------------------------ reads
    def _fill(self, path: str, start: int, stop: int, out: np.ndarray) -> None:
        """Rows ``start:stop`` of the dataset at ``path`` into ``out`` (for arenas)."""
        if out.size == 0:
            return
        ds = self._get(path)
        ds.read_direct(out, np.s_[start:stop])

    def _arena(self, path: str, ds: Any) -> Arena | None:
        key = tuple(path.split("/", 2))
        arena = self._cache.get(key)
        if arena is not None and arena.rows == ds.shape[0]:
            return arena
        nbytes = int(np.prod(ds.shape, dtype=np.int64)) * ds.dtype.itemsize
        if not self._cache.admits(nbytes):
            return None
        rows = int(ds.chunks[0]) if ds.chunks else max(1, ds.shape[0])
        arena = Arena(tuple(int(s) for s in ds.shape), np.dtype(ds.dtype), rows,
                      functools.partial(self._fill, path))
        self._cache.put(key, arena)
        return arena

    def _drop_arena(self, path: str) -> None:
        self._cache.drop(tuple(path.split("/", 2)))

    def _read_ds(self, path: str, ds: Any, index: Index) -> np.ndarray:
        row = tuple(int(s) for s in ds.shape[1:])
        dtype = np.dtype(ds.dtype)
        n = int(ds.shape[0])
        if isinstance(index, np.ndarray):
            if index.size == 0:
                return np.empty((0, *row), dtype=dtype)
            arena = self._arena(path, ds)
            if arena is not None:
                return arena.take(index)
            uniq, inverse = np.unique(index, return_inverse=True)
            got = np.empty((uniq.shape[0], *row), dtype=dtype)
            if got.size:
                lo, hi = int(uniq[0]), int(uniq[-1]) + 1
                if hi - lo <= 4 * uniq.shape[0]:  # dense enough: one covering read
                    block = np.empty((hi - lo, *row), dtype=dtype)
                    ds.read_direct(block, np.s_[lo:hi])
                    got = block[uniq - lo]
                else:
                    got = np.asarray(ds[uniq])
            return np.take(got, inverse.reshape(-1), axis=0)
        if isinstance(index, int | np.integer):
            start, stop, step = int(index), int(index) + 1, 1
        else:
            start, stop, step = index.start, min(index.stop, n), index.step or 1
        if stop <= start:
            return np.empty((0, *row), dtype=dtype)
        arena = self._cache.get(tuple(path.split("/", 2)))
        if arena is not None and arena.rows == n and arena.covers(start, stop):
            if isinstance(index, slice):
                return arena.buf[start:stop:step].copy()
            return np.array(arena.buf[start], copy=True)
        if step == 1:
            out = np.empty((stop - start, *row), dtype=dtype)
            if out.size:
                ds.read_direct(out, np.s_[start:stop])
        else:
            count = len(range(start, stop, step))
            out = np.empty((count, *row), dtype=dtype)
            if out.size:
                out[...] = ds[start:stop:step]
        if not isinstance(index, slice):
            return out.reshape(row)  # a 0-d array for a scalar var, never a numpy scalar
        return out

    def read(self, data_id: str, phase: str, var: str, index: Index) -> Any:
        """Rows at a normalised index; random gathers go through the var's decoded copy."""
        obj = self._obj(data_id, phase, var)
        if self._is_group(obj):
            return self._ragged_read(data_id, phase, var, index)
        return self._read_ds(f"{data_id}/{check_phase(phase, allow_all=False)}/{var}", obj,
                             index)

    def read_many(
        self, data_id: str, phase: str, vars: Sequence[str], index: Index
    ) -> list[Any]:
        return [self.read(data_id, phase, v, index) for v in vars]

    # ------------------------------------------------------------------ writes
    @_atomic
    def append(self, data_id: str, phase: str, var: str, data: Any) -> None:
        self._check_writable()
        phase = check_phase(phase, allow_all=False)
        pg = self._phase_group(data_id, phase, write=True)
        obj = self._obj(data_id, phase, var, write=True, missing_ok=True)
        if isinstance(data, RaggedArray) or (obj is not None and self._is_group(obj)):
            self._ragged_append(data_id, phase, var, obj, data)
            return
        data = np.asarray(data)
        path = f"{data_id}/{phase}/{var}"
        if obj is None:
            self._check_dtype(data.dtype, var)
            obj = self._new_dataset(pg, var, (0, *data.shape[1:]), data.dtype, data.shape[0])
            self._objs[path] = obj
            self._add_to_order(data_id, phase, var)
        else:
            check_row_shape(data, tuple(obj.shape[1:]), var)
            data = cast_for_write(data, np.dtype(obj.dtype), var)
        self._extend(path, obj, data)

    def _extend(self, path: str, ds: Any, data: np.ndarray) -> None:
        """Resize the dataset along axis 0 and write ``data`` at its end."""
        n = int(data.shape[0])
        if n == 0:
            return
        old = int(ds.shape[0])
        ds.resize(old + n, axis=0)
        block = np.ascontiguousarray(data)
        if block.size:
            ds.write_direct(block, dest_sel=np.s_[old:old + n])
        self._drop_arena(path)

    def _add_to_order(self, data_id: str, phase: str, var: str) -> None:
        if var.startswith("."):  # storegate's temporaries are never listed
            return
        order = self.var_names(data_id, phase)
        if var not in order:
            self._commit(data_id, phase, [*order, var])

    @_atomic
    def write(self, data_id: str, phase: str, var: str, index: Index, data: Any) -> None:
        self._check_writable()
        phase = check_phase(phase, allow_all=False)
        obj = self._obj(data_id, phase, var, write=True)
        if self._is_group(obj) != isinstance(data, RaggedArray):
            raise kind_mismatch(var, ragged_var=self._is_group(obj))
        if self._is_group(obj):
            self._ragged_write(data_id, phase, var, index, data)
            return
        self._write_ds(f"{data_id}/{phase}/{var}", obj, index, data, var)

    def _write_ds(self, path: str, ds: Any, index: Index, data: Any, var: str) -> None:
        row = tuple(int(s) for s in ds.shape[1:])
        data = np.asarray(data, dtype=ds.dtype)
        if isinstance(index, np.ndarray):
            count = int(index.shape[0])
        elif isinstance(index, slice):
            count = len(range(index.start, min(index.stop, int(ds.shape[0])), index.step or 1))
        else:
            count = -1
        want = row if count < 0 else (count, *row)
        if data.shape != want:
            try:
                data = np.broadcast_to(data, want)
            except ValueError:
                raise ShapeMismatchError(
                    f"cannot write data of shape {data.shape} into var {var!r} at {index!r}: "
                    f"the selection has shape {want}.") from None
        if count == 0:
            return
        if isinstance(index, np.ndarray):
            # numpy semantics: with repeated rows the last value wins
            order = np.argsort(index, kind="stable")
            rows = index[order]
            last = np.ones(rows.size, dtype=bool)
            last[:-1] = rows[1:] != rows[:-1]
            rows, values = rows[last], np.ascontiguousarray(data[order[last]])
            if values.size:
                breaks = np.flatnonzero(np.diff(rows) != 1) + 1
                pos = 0
                for run in np.split(rows, breaks):  # one write per run of consecutive rows
                    a, k = int(run[0]), int(run.shape[0])
                    ds.write_direct(values, source_sel=np.s_[pos:pos + k],
                                    dest_sel=np.s_[a:a + k])
                    pos += k
        elif isinstance(index, slice):
            if data.size:
                ds[index.start:index.stop:index.step or 1] = data
        else:
            if data.size:
                block = np.ascontiguousarray(data.reshape((1, *row)))
                ds.write_direct(block, dest_sel=np.s_[int(index):int(index) + 1])
        arena = self._cache.get(tuple(path.split("/", 2)))
        if arena is not None:
            arena.update(index, data)

    @_atomic
    def create(
        self, data_id: str, phase: str, var: str, shape: tuple[int, ...], dtype: np.dtype
    ) -> None:
        self._check_writable()
        phase = check_phase(phase, allow_all=False)
        pg = self._phase_group(data_id, phase, write=True)
        dtype = np.dtype(dtype)
        self._check_dtype(dtype, var)
        if var in self.var_names(data_id, phase):
            raise VarExistsError(f"var {var!r} already exists in {data_id}/{phase} of "
                                 f"{self.describe()}; delete it first.")
        path = f"{data_id}/{phase}/{var}"
        if var in pg:  # a leftover temporary
            del pg[var]
            self._forget_prefix(path)
        self._drop_arena(path)
        self._objs[path] = self._new_dataset(pg, var, tuple(shape), dtype, int(shape[0]))
        self._add_to_order(data_id, phase, var)

    @_atomic
    def delete(self, data_id: str, phase: str, var: str) -> None:
        self._check_writable()
        phase = check_phase(phase, allow_all=False)
        self._obj(data_id, phase, var, write=True)
        order = self.var_names(data_id, phase)
        if var in order:
            order.remove(var)
            self._commit(data_id, phase, order)  # gone for readers from here on
        pg = self._phase_group(data_id, phase, write=True)
        path = f"{data_id}/{phase}/{var}"
        self._forget_prefix(path)
        del pg[var]
        for key in (var, f"{var}/values", f"{var}/offsets"):
            self._cache.drop((data_id, phase, key))

    def rename(self, data_id: str, phase: str, src: str, dst: str) -> None:
        self.rename_many(data_id, phase, [(src, dst)])

    @_atomic
    def rename_many(self, data_id: str, phase: str, pairs: Sequence[tuple[str, str]]) -> None:
        """Swap vars in as one unit (h5py ``move``): every replaced var is moved aside to
        ``.sg-old-<dst>``, then every new one is moved in, the var order is committed and the
        old copies are deleted. An error before the order is committed moves everything back;
        a crash is repaired on the next writable open (see :meth:`_recover_phase`)."""
        self._check_writable()
        phase = check_phase(phase, allow_all=False)
        for src, _ in pairs:
            self._obj(data_id, phase, src, write=True)  # VarNotFoundError for a missing src
        pairs = [(src, dst) for src, dst in pairs if src != dst]
        if not pairs:
            return
        pg = self._phase_group(data_id, phase, write=True)
        order = self.var_names(data_id, phase)
        replaced = [dst for _, dst in pairs if dst in pg]
        names = {n for pair in pairs for n in pair}
        for name in names:
            self._forget_prefix(f"{data_id}/{phase}/{name}")
            for key in (name, f"{name}/values", f"{name}/offsets"):
                self._cache.drop((data_id, phase, key))
        aside: list[str] = []
        moved: list[tuple[str, str]] = []
        try:
            for dst in replaced:
                if _OLD_PREFIX + dst in pg:
                    del pg[_OLD_PREFIX + dst]
                pg.move(dst, _OLD_PREFIX + dst)
                aside.append(dst)
            for src, dst in pairs:
                pg.move(src, dst)
                moved.append((src, dst))
        except BaseException:
            for src, dst in reversed(moved):
                pg.move(dst, src)
            for dst in reversed(aside):
                pg.move(_OLD_PREFIX + dst, dst)
            self._objs.clear()
            raise
        for src, dst in pairs:
            if dst not in order:
                if src in order:
                    order[order.index(src)] = dst
                elif not dst.startswith("."):
                    order.append(dst)
            elif src in order:
                order.remove(src)
        self._objs.clear()
        self._commit(data_id, phase, order)
        for dst in replaced:
            del pg[_OLD_PREFIX + dst]

    # ------------------------------------------------------------------ crash recovery
    def _phase_groups(self, f: Any) -> Iterator[Any]:
        h5py = _h5py()
        for data_id in list(f.keys()):
            group = f.get(data_id)
            if not isinstance(group, h5py.Group):
                continue
            for phase in PHASES:
                pg = group.get(phase)
                if isinstance(pg, h5py.Group):
                    yield pg

    def _needs_repair(self) -> bool:
        """Whether a phase holds leftovers of a var swap or temporaries (storegate writes
        these only inside a transaction now; a file from an earlier version, or a transform
        whose steps were separate transactions, may still have them)."""
        f = self._file_handle()
        return any(c.startswith((_OLD_PREFIX, TEMP_PREFIX))
                   for pg in self._phase_groups(f) for c in pg)

    @_atomic
    def _repair(self) -> None:
        """Finish or undo renames a crash interrupted; remove orphaned temporaries."""
        f = self._file_handle(write=True)
        for pg in self._phase_groups(f):
            self._recover_phase(pg)
        self._objs.clear()
        self._meta.clear()

    @staticmethod
    def _recover_phase(pg: Any) -> None:
        children = list(pg.keys())
        olds = [c[len(_OLD_PREFIX):] for c in children if c.startswith(_OLD_PREFIX)]
        complete = all(name in pg for name in olds)
        for name in olds:
            if complete:  # every new var was in place: drop the old copies
                del pg[_OLD_PREFIX + name]
                continue
            if name in pg:
                del pg[name]
            pg.move(_OLD_PREFIX + name, name)
            logger.warning("storegate-hdf5: restored var %r in %s after an interrupted "
                           "rewrite", name, pg.name)
        for child in list(pg.keys()):
            if child.startswith(TEMP_PREFIX):
                del pg[child]

    # ------------------------------------------------------------------ ragged vars
    def _ragged_offsets(self, data_id: str, phase: str, var: str) -> np.ndarray:
        """A ragged var's offsets (n + 1 entries), read once per open and kept in memory."""
        key = (data_id, phase, var)
        whole = self._offsets.get(key)
        if whole is not None:
            return whole
        off = self._part(data_id, phase, var, "offsets")
        values = self._part(data_id, phase, var, "values")
        whole = np.empty(int(off.shape[0]), dtype=np.int64)
        if whole.size:
            off.read_direct(whole)
        if whole.shape[0] == 0 or whole[0] != 0 or whole[-1] > values.shape[0] or (
                np.diff(whole) < 0).any():
            raise CorruptStoreError(
                f"the offsets of ragged var {var!r} in {data_id}/{phase} of {self.describe()} "
                f"are damaged (they must start at 0, never decrease and end within the "
                f"{values.shape[0]} values); run `storegate check`.")
        self._offsets[key] = whole
        return whole

    def _ragged_read(self, data_id: str, phase: str, var: str, index: Index) -> Any:
        phase = check_phase(phase, allow_all=False)
        offsets = self._ragged_offsets(data_id, phase, var)
        values = self._part(data_id, phase, var, "values")
        vpath = f"{data_id}/{phase}/{var}/values"
        if isinstance(index, int | np.integer):
            i = int(index)
            return self._read_ds(vpath, values, slice(int(offsets[i]), int(offsets[i + 1]), 1))
        if isinstance(index, slice) and (index.step or 1) == 1:
            start, stop = index.start, max(index.start, index.stop)
            a, b = int(offsets[start]), int(offsets[stop])
            return RaggedArray(self._read_ds(vpath, values, slice(a, b, 1)),
                               offsets[start:stop + 1] - a, validate=False)
        rows = rows_of(index)
        starts = offsets[rows]
        lengths = offsets[rows + 1] - starts
        new = np.zeros(rows.shape[0] + 1, dtype=np.int64)
        np.cumsum(lengths, out=new[1:])
        positions = np.repeat(starts - new[:-1], lengths) + np.arange(int(new[-1]),
                                                                       dtype=np.int64)
        return RaggedArray(self._read_ds(vpath, values, positions), new, validate=False)

    def _ragged_append(self, data_id: str, phase: str, var: str, obj: Any, data: Any) -> None:
        if obj is not None and not self._is_group(obj):
            raise kind_mismatch(var, ragged_var=False)
        if not isinstance(data, RaggedArray):
            raise kind_mismatch(var, ragged_var=True)
        path = f"{data_id}/{phase}/{var}"
        if obj is None:
            self._check_dtype(data.dtype, var)
            pg = self._phase_group(data_id, phase, write=True)
            group = pg.create_group(var, track_order=True)
            group.attrs[_RAGGED_ATTR] = True
            self._new_dataset(group, "values", (0, *data.row_shape), data.dtype,
                              int(data.values.shape[0]))
            off = self._new_dataset(group, "offsets", (1,), np.dtype(np.int64), len(data) + 1)
            off[0] = 0
            self._objs[path] = group
            self._offsets.pop((data_id, phase, var), None)
            self._add_to_order(data_id, phase, var)
        values = self._part(data_id, phase, var, "values", write=True)
        off = self._part(data_id, phase, var, "offsets", write=True)
        check_row_shape(data.values, tuple(values.shape[1:]), var)
        vals = cast_for_write(data.values, np.dtype(values.dtype), var)
        if len(data) == 0:
            return
        current = self._ragged_offsets(data_id, phase, var)
        base = int(current[-1])  # the offsets are the commit record; values past them are junk
        m = int(vals.shape[0])
        # data first: the values, then the offsets that make them visible
        if int(values.shape[0]) != base + m:
            values.resize(base + m, axis=0)
        if m and vals.size:
            values.write_direct(np.ascontiguousarray(vals), dest_sel=np.s_[base:base + m])
        new = np.asarray(data.offsets[1:], dtype=np.int64) + base
        n0 = int(off.shape[0])
        off.resize(n0 + new.shape[0], axis=0)
        off.write_direct(np.ascontiguousarray(new), dest_sel=np.s_[n0:n0 + new.shape[0]])
        self._offsets[(data_id, phase, var)] = np.concatenate([current, new])
        self._drop_arena(f"{path}/values")

    def _ragged_write(self, data_id: str, phase: str, var: str, index: Index,
                      data: RaggedArray) -> None:
        offsets = self._ragged_offsets(data_id, phase, var)
        values = self._part(data_id, phase, var, "values", write=True)
        check_row_shape(data.values, tuple(values.shape[1:]), var)
        data = RaggedArray(cast_for_write(data.values, np.dtype(values.dtype), var),
                           data.offsets, validate=False)
        rows = rows_of(index)
        if rows.shape[0] != len(data):
            raise ShapeMismatchError(
                f"the index selects {rows.shape[0]} rows of {var!r} but {len(data)} ragged rows "
                "were given.")
        if rows.size == 0:
            return
        same = np.array_equal(offsets[rows + 1] - offsets[rows], data.lengths())
        if same and np.unique(rows).shape[0] == rows.shape[0]:
            # same lengths: overwrite the values in place
            positions = np.repeat(offsets[rows] - data.offsets[:-1], data.lengths()) + np.arange(
                data.values.shape[0], dtype=np.int64)
            self._write_ds(f"{data_id}/{phase}/{var}/values", values, positions, data.values,
                           var)
            return
        # other lengths: the values move, so the var is rewritten and swapped in
        whole = self._ragged_read(data_id, phase, var, slice(0, len(offsets) - 1, 1))
        new = whole.replace_rows(rows, data)
        tmp = TEMP_PREFIX + var
        pg = self._phase_group(data_id, phase, write=True)
        if tmp in pg:
            del pg[tmp]
            self._forget_prefix(f"{data_id}/{phase}/{tmp}")
        self._ragged_append(data_id, phase, tmp, None, new)
        self.rename_many(data_id, phase, [(tmp, var)])
