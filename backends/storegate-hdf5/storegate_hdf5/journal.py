"""Crash consistency for one HDF5 file: a byte-level rollback journal (as SQLite's).

HDF5 updates its metadata (object headers, B-trees, heaps, the superblock) in place and in no
particular order, so a process killed while it writes can leave a file that no longer opens.
:class:`JournaledFile` is the file object a writer hands to h5py (``h5py.File(jf, mode)``,
HDF5's ``fileobj`` driver). Every write and truncation HDF5 makes passes through it, and before
the first change of a *session* it keeps what is needed to undo the session:

* the **journal** ``<path>.sg-journal`` gets a header holding the file's length at the start
  of the session (written before the first change: undoing writes past that length is
  truncating back to it, so appended bytes cost nothing);
* before the first overwrite of a page (4 KiB) lying below that length, the page's old bytes
  are appended to the journal as a record (offset, length, CRC-32, bytes); each page is saved
  once per session. A record is written before its page is changed, so a record cut short by
  a kill is detected by its length or checksum and ignored: its page was not touched yet.

**Commit** (:meth:`JournaledFile.commit`, after HDF5 has flushed everything, ``f.flush()``):
truncate the journal to zero bytes. That ``ftruncate`` is the commit point (an empty journal,
or one whose header is incomplete, holds nothing to undo); the file is kept for the next
session and unlinked when the writer closes, so none is left after a normal run. (SQLite calls
this ``journal_mode=TRUNCATE``; creating and unlinking the journal at every commit costs about
ten times as much, which matters when every small write commits.)
**Recovery** (:func:`recover`, called by whoever holds the store's writer lock before the file
is opened again): if a journal exists, write its saved pages back, truncate the file to the
saved length and unlink the journal. The file is then byte for byte what it was at the last
commit. Recovery is idempotent, so a kill during recovery is repaired by the next one.
:meth:`JournaledFile.rollback` does the same for a live session (a failed operation).

Guarantees are against a killed process (SIGKILL, the OOM killer, a crash): the kernel keeps
the writes of a dead process, in order. Against power loss pass ``fsync=True``: the journal is
then synced before any page it protects is overwritten, and the file before the commit.

Readers never see a journal in use: the writer holds an exclusive ``flock`` on the HDF5 file
while it is open (HDF5's own readers take a shared one, so they wait or fail, as with HDF5's
native file locking), and a non-empty journal exists only while the writer has the file open.
A non-empty journal found while no writer is alive is what a killed writer left; a read-only
opener cannot roll it back (it may not write), and reading around it would need an overlay of
the saved pages on every read, so the backend refuses it with
:class:`~storegate.errors.CorruptStoreError` and asks for one writable open, which recovers.
That is the simpler of the two robust choices: a read never returns torn data, and the fast
native driver serves every read-only open.

Examples
--------
>>> import os, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "f.bin")
>>> with open(path, "wb") as f:
...     _ = f.write(b"a" * 10000)
>>> jf = JournaledFile(path)
>>> _ = jf.seek(5000); _ = jf.write(b"b" * 100)   # overwrites part of page 1
>>> _ = jf.seek(0, 2); _ = jf.write(b"tail")      # appends: nothing to save
>>> jf.active, jf.pages_saved
(True, 1)
>>> jf.close()                                    # as if killed: the journal stays
>>> recover(path)
1
>>> open(path, "rb").read() == b"a" * 10000
True
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import struct
import zlib
from typing import Any

from storegate.errors import CorruptStoreError, StoregateError

__all__ = [
    "JOURNAL_SUFFIX",
    "PAGE_SIZE",
    "FileBusyError",
    "JournaledFile",
    "journal_path",
    "pending",
    "recover",
]

logger = logging.getLogger(__name__)

#: Suffix of the journal file beside the HDF5 file.
JOURNAL_SUFFIX = ".sg-journal"
#: Granularity of saved pages (bytes).
PAGE_SIZE = 4096

_MAGIC = b"SGH5JRNL"
_VERSION = 1
# magic, version, page size, original length, CRC-32 of the fields before it
_HEAD = struct.Struct("<8sIIQI")
# offset, length, CRC-32 of (offset, length, bytes)
_REC = struct.Struct("<QII")
# the largest record written (a run of pages is split into records of at most this)
_MAX_RECORD = 1 << 20


class FileBusyError(StoregateError, OSError):
    """Another open file handle (an HDF5 reader, or a writer not using storegate) holds a
    lock on the file, so it cannot be opened for writing now."""


def journal_path(path: str) -> str:
    """The journal file of the HDF5 file ``path``.

    Examples
    --------
    >>> journal_path("runs/store.h5")
    'runs/store.h5.sg-journal'
    """
    return os.fspath(path) + JOURNAL_SUFFIX


def pending(path: str) -> bool:
    """Whether ``path`` has a journal with a complete header: a writer is in a session, or was
    killed in one. (An empty journal is a committed one; an incomplete header means no change
    was made.)

    Examples
    --------
    >>> pending("/nonexistent/store.h5")
    False
    """
    try:
        return os.path.getsize(journal_path(path)) >= _HEAD.size
    except OSError:
        return False


def _fsync_dir(path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:  # pragma: no cover - a platform without directory descriptors
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _write_all(fd: int, data: Any, offset: int | None = None) -> None:
    """Write every byte of ``data`` (at ``offset``, or appended when ``None``)."""
    view = memoryview(data).cast("B")
    done = 0
    while done < view.nbytes:
        if offset is None:
            done += os.write(fd, view[done:])
        else:
            done += os.pwrite(fd, view[done:], offset + done)


def _read_exact(fd: int, size: int, offset: int) -> bytes:
    parts: list[bytes] = []
    got = 0
    while got < size:
        chunk = os.pread(fd, size - got, offset + got)
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def _record_crc(offset: int, data: Any) -> int:
    return zlib.crc32(data, zlib.crc32(struct.pack("<QI", offset, len(data))))


def _header(page_size: int, length: int) -> bytes:
    fields = struct.pack("<8sIIQ", _MAGIC, _VERSION, page_size, length)
    return fields + struct.pack("<I", zlib.crc32(fields))


def recover(path: str, fd: int | None = None, *, fsync: bool = True, warn: bool = True) -> int:
    """Roll ``path`` back to its last commit if a journal was left (see the module docstring).

    Call it only while holding the store's writer lock: a live writer's journal must not be
    touched. Records after the first damaged or incomplete one are ignored (the kill cut the
    journal there, before their pages were changed).

    Parameters
    ----------
    path
        The HDF5 file.
    fd
        An open read/write descriptor of ``path`` to use (default: the file is opened here).
    fsync
        Sync the restored file before the journal is removed (default ``True``: recovery is
        rare, and a recovery lost to a power cut would leave neither the journal nor the file).
    warn
        Log the rollback of a journal with saved changes as a warning (default), or only at
        debug level (the rollback of a failed operation, which its exception reports).

    Returns
    -------
    int
        The number of records restored; ``0`` if there was no journal (or it held no change).

    Examples
    --------
    >>> recover("/nonexistent/store.h5")
    0
    """
    jpath = journal_path(path)
    try:
        jf = open(jpath, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return 0
    restored = 0
    with jf:
        head = jf.read(_HEAD.size)
        valid = len(head) == _HEAD.size
        if valid:
            magic, version, _page, length, crc = _HEAD.unpack(head)
            valid = (magic == _MAGIC and version == _VERSION
                     and zlib.crc32(head[:-4]) == crc)
        if not valid:
            # empty: committed. The header is written before the first change, so a torn
            # header means the file was not changed in that session.
            if head:
                logger.info("storegate-hdf5: removed an incomplete journal %s (the file had "
                            "not been changed)", jpath)
        elif not os.path.exists(path):
            logger.warning("storegate-hdf5: %s has a journal but the file is gone; removed "
                           "the journal", path)
        else:
            own = fd is None
            dfd = os.open(path, os.O_RDWR | os.O_CLOEXEC) if own else fd
            assert dfd is not None
            try:
                while True:
                    rec = jf.read(_REC.size)
                    if len(rec) < _REC.size:
                        break
                    offset, size, crc = _REC.unpack(rec)
                    if size == 0 or size > _MAX_RECORD or offset + size > length:
                        break  # damaged: nothing after it can be trusted
                    data = jf.read(size)
                    if len(data) < size or _record_crc(offset, data) != crc:
                        break  # cut short by the kill: its page was never overwritten
                    _write_all(dfd, data, offset)
                    restored += 1
                os.ftruncate(dfd, length)
                if fsync:
                    os.fsync(dfd)
            finally:
                if own:
                    os.close(dfd)
            logger.log(logging.WARNING if warn else logging.DEBUG,
                       "storegate-hdf5: rolled %s back to its last commit (%d saved page runs "
                       "restored, length %d)", path, restored, length)
    os.unlink(jpath)
    if fsync:
        _fsync_dir(jpath)
    return restored


class JournaledFile:
    """A read/write file object for h5py's ``fileobj`` driver that journals every change.

    The file is opened (and created if ``create``) with an exclusive, non-blocking ``flock``
    held until :meth:`close`, so HDF5 readers (which take a shared ``flock``) cannot read it
    while it changes; a held lock raises :class:`FileBusyError`. A journal left by a killed
    writer is rolled back first (the caller must hold the store's writer lock).

    Parameters
    ----------
    path
        The file.
    create
        Create the file if it does not exist.
    page_size
        Granularity of saved pages (default 4 KiB).
    fsync
        Sync the journal before the first overwrite of each batch of saved pages and the file
        before each commit (survives power loss; costs a sync per write that overwrites).
    lock
        Take the ``flock`` (default ``True``; it is also skipped when the environment sets
        ``HDF5_USE_FILE_LOCKING=FALSE``, as HDF5 does).

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "f.bin")
    >>> jf = JournaledFile(path, create=True)
    >>> jf.write(b"x" * 5000)
    5000
    >>> jf.commit()
    True
    >>> _ = jf.seek(0); _ = jf.write(b"y")   # a new session saves page 0
    >>> jf.rollback()
    1
    >>> _ = jf.seek(0); jf.read(2)
    b'xx'
    >>> jf.close()
    """

    def __init__(self, path: str, *, create: bool = False, page_size: int = PAGE_SIZE,
                 fsync: bool = False, lock: bool = True) -> None:
        if page_size < 512 or page_size & (page_size - 1):
            raise ValueError(f"page_size must be a power of two >= 512, got {page_size}")
        self.path = os.fspath(path)
        self.journal_path = journal_path(self.path)
        self.page_size = int(page_size)
        self.fsync = bool(fsync)
        flags = os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if create else 0)
        fd = os.open(self.path, flags, 0o644)
        try:
            if lock and os.environ.get("HDF5_USE_FILE_LOCKING", "").upper() not in (
                    "FALSE", "0"):
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise FileBusyError(
                        f"{self.path!r} is open in another process (or by another h5py "
                        "handle of this one)") from None
                except OSError as err:  # a file system without flock: best effort
                    if err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                        raise
            recover(self.path, fd, fsync=True)
        except BaseException:
            os.close(fd)
            raise
        self._fd: int | None = fd
        self._pid = os.getpid()
        self._pos = 0
        self._size = os.fstat(fd).st_size
        self._jfd: int | None = None  # the journal (kept open, empty between sessions)
        self._active = False  # a session is open: changes since the last commit
        self._orig = 0  # the file's length when the session began
        self._saved: set[int] = set()  # pages saved in this session
        self._buf: bytearray | None = None  # a record being written
        self.bytes_saved = 0  # old bytes copied to the journal in this session

    # ------------------------------------------------------------------ state
    @property
    def active(self) -> bool:
        """Whether changes since the last commit are being journaled (a session is open)."""
        return self._active

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._fd is None

    @property
    def pages_saved(self) -> int:
        """Pages saved in the journal in this session."""
        return len(self._saved)

    @property
    def original_length(self) -> int:
        """The file's length at the start of the session (its current length without one)."""
        return self._orig if self._active else self._size

    def _usable(self) -> int:
        if self._fd is None:
            raise ValueError(f"I/O on the closed journaled file {self.path!r}")
        if os.getpid() != self._pid:
            # a forked child inherited the writer's objects: it must never change the file
            raise OSError(errno.EBADF, f"{self.path!r} is written by process {self._pid}; a "
                          "forked child may not write it")
        return self._fd

    # ------------------------------------------------------------------ file protocol
    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_SET:
            pos = offset
        elif whence == os.SEEK_CUR:
            pos = self._pos + offset
        elif whence == os.SEEK_END:
            pos = self._size + offset
        else:
            raise ValueError(f"invalid whence {whence!r}")
        if pos < 0:
            raise ValueError(f"negative seek position {pos}")
        self._pos = pos
        return pos

    def tell(self) -> int:
        return self._pos

    def read(self, size: int = -1) -> bytes:
        fd = self._usable()
        if size is None or size < 0:
            size = max(0, self._size - self._pos)
        data = _read_exact(fd, size, self._pos)
        self._pos += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        fd = self._usable()
        view = memoryview(buffer).cast("B")
        got = 0
        while got < view.nbytes:
            n = os.preadv(fd, [view[got:]], self._pos + got)
            if n == 0:
                break
            got += n
        self._pos += got
        return got

    def write(self, data: Any) -> int:
        fd = self._usable()
        view = memoryview(data).cast("B")
        n = view.nbytes
        if n == 0:
            return 0
        start = self._pos
        self._before_change(start, start + n)
        _write_all(fd, view, start)
        self._pos = start + n
        self._size = max(self._size, self._pos)
        return n

    def truncate(self, size: int | None = None) -> int:
        fd = self._usable()
        size = self._pos if size is None else int(size)
        if size != self._size:
            self._before_change(size, self._size)
            os.ftruncate(fd, size)
            self._size = size
        return size

    def flush(self) -> None:
        """Nothing is buffered here (HDF5's flush reaches the kernel at once)."""

    def wipe(self) -> None:
        """Truncate the file to zero bytes at once, outside any session (it cannot be undone:
        for replacing a whole file, where saving every old page would copy the file)."""
        fd = self._usable()
        if self._active:
            raise RuntimeError("wipe() needs a committed file (no open session)")
        os.ftruncate(fd, 0)
        self._size = 0

    # ------------------------------------------------------------------ journaling
    def _begin(self) -> None:
        if self._active:
            return
        if self._jfd is not None and not self._journal_is_ours(self._jfd):
            os.close(self._jfd)  # the empty journal was removed (by hand?): start a new one
            self._jfd = None
        if self._jfd is None:
            try:
                self._jfd = os.open(
                    self.journal_path,
                    os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o644)
            except FileExistsError:
                raise CorruptStoreError(
                    f"{self.path!r} has a journal {self.journal_path!r} that this writer did "
                    "not start; open the store with mode='a' (one writer at a time) to roll "
                    "the interrupted write back.") from None
            if self.fsync:
                _fsync_dir(self.journal_path)
        # the header (and with it the length to return to) before the first change
        _write_all(self._jfd, _header(self.page_size, self._size))
        if self.fsync:
            os.fsync(self._jfd)
        self._active = True
        self._orig = self._size
        self._saved.clear()
        self.bytes_saved = 0

    def _journal_is_ours(self, jfd: int) -> bool:
        try:
            here, there = os.fstat(jfd), os.stat(self.journal_path)
        except OSError:
            return False
        return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)

    def _before_change(self, start: int, stop: int) -> None:
        """Save the unsaved pages of ``[start, stop)`` below the original length."""
        self._begin()
        end = min(stop, self._orig)
        if start >= end:
            return
        page = self.page_size
        first, last = start // page, (end - 1) // page
        todo = [p for p in range(first, last + 1) if p not in self._saved]
        if not todo:
            return
        assert self._fd is not None and self._jfd is not None
        per_record = max(1, _MAX_RECORD // page)
        if self._buf is None:  # one buffer for every record: no allocation (page faults)
            self._buf = bytearray(_REC.size + per_record * page)
        buf = memoryview(self._buf)
        run_start = 0
        for i in range(1, len(todo) + 1):
            if (i < len(todo) and todo[i] == todo[i - 1] + 1
                    and i - run_start < per_record):
                continue
            offset = todo[run_start] * page
            length = min((todo[i - 1] + 1) * page, self._orig) - offset
            old = buf[_REC.size:_REC.size + length]
            got = 0
            while got < length:
                n = os.preadv(self._fd, [old[got:]], offset + got)
                if n == 0:  # pragma: no cover - the file shrank behind our back
                    raise CorruptStoreError(
                        f"{self.path!r} is shorter than when this writer opened it; another "
                        "program changed it while storegate was writing.")
                got += n
            _REC.pack_into(buf, 0, offset, length, _record_crc(offset, old))
            _write_all(self._jfd, buf[:_REC.size + length])
            self.bytes_saved += length
            run_start = i
        if self.fsync:
            os.fsync(self._jfd)
        self._saved.update(todo)  # only now: a failed save is retried by the next write

    def commit(self) -> bool:
        """End the session: the file as it is now becomes the state a rollback returns to.

        HDF5 must have flushed first (``h5py.File.flush()``, or the file is closed). The
        journal is emptied (``ftruncate`` to 0 bytes: the commit point; an empty journal
        holds nothing to undo) and kept for the next session, and removed by :meth:`close`
        (re-creating and unlinking a file costs about ten times as much, and commits come
        after every small write). Returns whether there was anything to commit.
        """
        if not self._active:
            return False
        assert self._jfd is not None
        if self.fsync and self._fd is not None:
            os.fsync(self._fd)
        os.ftruncate(self._jfd, 0)  # the commit point
        if self.fsync:
            os.fsync(self._jfd)
        self._active = False
        self._saved.clear()
        self._orig = 0
        return True

    def rollback(self) -> int:
        """Undo the session: restore every saved page and the original length (HDF5 must not
        use the file afterwards without reopening it). Returns the records restored."""
        if not self._active:
            return 0
        jfd, self._jfd = self._jfd, None
        self._active = False
        if jfd is not None:
            os.close(jfd)
        fd = self._usable()
        restored = recover(self.path, fd, fsync=self.fsync, warn=False)  # removes the journal
        self._size = os.fstat(fd).st_size
        self._saved.clear()
        self._orig = 0
        return restored

    def close(self) -> None:
        """Close the file (and release the lock). A committed (empty) journal is removed; an
        open session is left as it is: its journal stays until the next opener's recovery."""
        jfd, self._jfd = self._jfd, None
        fd, self._fd = self._fd, None
        if jfd is not None and not self._active and os.getpid() == self._pid:
            with contextlib.suppress(OSError):
                os.unlink(self.journal_path)
        self._active = False
        # (in a forked child these are copies: closing them leaves the parent's lock alone)
        for d in (jfd, fd):
            if d is not None:
                with contextlib.suppress(OSError):
                    os.close(d)

    def __repr__(self) -> str:
        state = "closed" if self._fd is None else ("journaling" if self.active else "clean")
        return f"<JournaledFile {self.path!r} {state}>"
