"""One writer per store: an advisory lock file that a writing backend holds until it closes.

The lock is ``flock(2)`` on a small file inside (or beside) the store. The kernel releases it
when the holder exits, however it exits (a ``kill -9`` included), so there is no stale lock to
clean up, and a second writer -- another process, or a second backend opened on the same store
in this process -- gets :class:`~storegate.errors.StoreLockedError` naming the holder instead of
interleaving its writes. Readers never take the lock and are never blocked.

The lock file holds the holder's pid, host and start time (for the message only; the lock itself
is the ``flock``). It is never deleted: removing a lock file another process may be about to
lock is the classic race of lock files.

Network file systems: ``flock`` works on NFSv4 and most cluster file systems, but not on every
mount. Object stores (``s3://``, ``gs://``, ...) have no lock: there :class:`ObjectLease`
takes its place, a lease object created with a conditional write (``If-None-Match: *``),
which fails when the object exists. A lease outlives a writer that is killed, so a writer that
finds the lease of a dead process on its own host takes it over; one held from another host
must be removed by hand (``storegate unlock URL``) once that writer is known to be gone.

Examples
--------
>>> import tempfile
>>> from storegate.errors import StoreLockedError
>>> d = tempfile.mkdtemp()
>>> a, b = WriterLock(d + "/.sg-lock", "a store"), WriterLock(d + "/.sg-lock", "a store")
>>> a.acquire()
>>> try:
...     b.acquire()
... except StoreLockedError as err:
...     print(str(err).split(";")[0])  # doctest: +ELLIPSIS
a store is being written by another backend in this process (since ...)
>>> a.release(); b.acquire(); b.release()
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import weakref
from typing import Any

from ..errors import StoreLockedError

__all__ = ["LOCK_NAME", "ObjectLease", "WriterLock", "break_lease", "pid_alive",
           "release_leases"]

logger = logging.getLogger(__name__)

#: The name of the lock file (local stores) and of the lease object (object stores) in a
#: store's root.
LOCK_NAME = ".sg-lock"

_held: weakref.WeakSet[WriterLock] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # A forked child (a DataLoader worker) inherits the descriptor, and with it a share of the
    # parent's flock: close the child's copy, so the lock ends when the parent releases it.
    for lock in list(_held):
        fd, lock._fd = lock._fd, None
        lock._pid = os.getpid()
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


os.register_at_fork(after_in_child=_after_fork_in_child)


class WriterLock:
    """An exclusive, non-blocking lock on ``path`` held by this object (see the module doc).

    Parameters
    ----------
    path
        The lock file (created if missing; its directory must exist).
    what
        How messages name the store (``"zarr store '/data/s.zarr'"``).
    """

    def __del__(self) -> None:
        self.release()

    def __init__(self, path: str, what: str) -> None:
        self.path = path
        self.what = what
        self._fd: int | None = None
        self._pid = os.getpid()
        self._mutex = threading.Lock()

    @property
    def held(self) -> bool:
        """Whether this process holds the lock through this object."""
        return self._fd is not None and self._pid == os.getpid()

    def try_acquire(self) -> bool:
        """Take the lock if it is free; ``False`` if another writer holds it."""
        import fcntl

        with self._mutex:
            if self._pid != os.getpid():  # a forked child never inherits the parent's lock
                self._fd, self._pid = None, os.getpid()
            if self._fd is not None:
                return True
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            except BaseException:
                os.close(fd)
                raise
            stamp = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, stamp, 0)
            self._fd = fd
            _held.add(self)
            return True

    def acquire(self) -> None:
        """Take the lock or raise :class:`~storegate.errors.StoreLockedError`."""
        if not self.try_acquire():
            raise StoreLockedError(
                f"{self.what} is being written by {self._holder()}; storegate allows one "
                "writing process per store. Wait for it to finish (or close() the other "
                "StoreGate), or open this one with mode='r' to read while it writes."
            )

    def _holder(self) -> str:
        info: dict[str, Any] = {}
        try:
            with open(self.path, "rb") as f:
                info = json.loads(f.read(4096) or b"{}")
        except (OSError, ValueError):
            pass
        if not isinstance(info, dict) or "pid" not in info:
            return "another process"
        me = info.get("pid") == os.getpid() and info.get("host") == socket.gethostname()
        who = ("another backend in this process" if me else
               f"process {info.get('pid')} on {info.get('host', '?')}")
        return f"{who} (since {info.get('since', '?')})"

    def release(self) -> None:
        """Release the lock (a no-op if not held)."""
        with self._mutex:
            fd, self._fd = self._fd, None
            _held.discard(self)
            if fd is not None and self._pid == os.getpid():
                os.close(fd)  # closing the descriptor releases the flock


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this host.

    >>> pid_alive(os.getpid())
    True
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_leases: weakref.WeakSet[ObjectLease] = weakref.WeakSet()


def release_leases() -> None:
    """Delete every lease this process holds (a test server about to stop; see
    :class:`storegate.testing.s3.LocalS3`). A backend whose lease is gone takes it again at
    its next write."""
    for lease in list(_leases):
        lease.release()


class ObjectLease:
    """One writer per store on an object store: the object ``path`` exists while a process
    writes (see the module doc). The same interface as :class:`WriterLock`.

    Parameters
    ----------
    fs
        The store's fsspec file system.
    path
        The lease object's path in ``fs`` (``<store root>/.sg-lock``).
    what
        How messages name the store.

    Examples
    --------
    >>> import fsspec
    >>> from storegate.errors import StoreLockedError
    >>> fs = fsspec.filesystem("memory")
    >>> a = ObjectLease(fs, "/doc-lease/s.zarr/.sg-lock", "a store")
    >>> b = ObjectLease(fs, "/doc-lease/s.zarr/.sg-lock", "a store")
    >>> a.acquire(); a.held
    True
    >>> b.try_acquire()
    False
    >>> a.release(); b.try_acquire(); b.release()
    True
    """

    def __init__(self, fs: Any, path: str, what: str) -> None:
        self.fs = fs
        self.path = path
        self.what = what
        self._token: str | None = None
        self._pid = os.getpid()
        self._mutex = threading.Lock()

    @property
    def held(self) -> bool:
        """Whether this process holds the lease through this object."""
        return self._token is not None and self._pid == os.getpid()

    def _read(self) -> dict[str, Any] | None:
        """The lease's content; ``None`` if there is none, ``{}`` if it is unreadable."""
        try:
            self.fs.invalidate_cache()
            raw = self.fs.cat_file(self.path)
        except FileNotFoundError:
            return None
        try:
            info = json.loads(raw or b"{}")
        except ValueError:
            return {}
        return info if isinstance(info, dict) else {}

    def _create(self, body: bytes) -> bool:
        try:
            self.fs.pipe_file(self.path, body, mode="create")
        except FileExistsError:
            return False
        except TypeError:  # a file system without exclusive creation: check, then write
            if self.fs.exists(self.path):
                return False
            self.fs.pipe_file(self.path, body)
        return True

    def try_acquire(self) -> bool:
        """Take the lease if it is free (or its holder, on this host, is dead)."""
        import uuid

        with self._mutex:
            if self._pid != os.getpid():  # a forked child never inherits the parent's lease
                self._token, self._pid = None, os.getpid()
            if self._token is not None:
                return True
            token = uuid.uuid4().hex
            body = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                               "since": time.strftime("%Y-%m-%d %H:%M:%S"),
                               "token": token}).encode()
            if not self._create(body):
                info = self._read()
                if info is None:  # released between our write and our read: try once more
                    if not self._create(body):
                        return False
                elif self._stale(info):
                    logger.warning("%s: taking over the lease of dead process %s on this host "
                                   "(%s)", self.what, info.get("pid"), self.path)
                    with contextlib.suppress(FileNotFoundError):
                        self.fs.rm_file(self.path)
                    if not self._create(body):
                        return False
                else:
                    return False
            self._token = token
            _leases.add(self)
            return True

    @staticmethod
    def _stale(info: dict[str, Any]) -> bool:
        pid = info.get("pid")
        return (info.get("host") == socket.gethostname() and isinstance(pid, int)
                and pid != os.getpid() and not pid_alive(pid))

    def acquire(self) -> None:
        """Take the lease or raise :class:`~storegate.errors.StoreLockedError`."""
        if not self.try_acquire():
            info = self._read() or {}
            me = info.get("pid") == os.getpid() and info.get("host") == socket.gethostname()
            who = ("another backend in this process" if me else
                   f"process {info.get('pid', '?')} on {info.get('host', '?')}")
            raise StoreLockedError(
                f"{self.what} is being written by {who} (since {info.get('since', '?')}); "
                "storegate allows one writing process per store. Wait for it to finish (or "
                "close() the other StoreGate), or open this one with mode='r' to read while it "
                f"writes. If that writer is gone (killed, its machine lost), its lease "
                f"{self.path!r} stays: remove it with `storegate unlock <store URL>`."
            )

    def release(self) -> None:
        """Delete the lease if this process holds it (a no-op otherwise)."""
        with self._mutex:
            token, self._token = self._token, None
            _leases.discard(self)
            if token is None or self._pid != os.getpid():
                return
            try:
                info = self._read()
                if info is not None and info.get("token") == token:
                    with contextlib.suppress(FileNotFoundError):
                        self.fs.rm_file(self.path)
            except Exception as err:  # the store is unreachable (e.g. at exit, offline)
                logger.warning("%s: could not remove this writer's lease %r (%s: %s); the next "
                               "writer on this host takes it over, one elsewhere needs "
                               "`storegate unlock`", self.what, self.path,
                               type(err).__name__, err)


def break_lease(fs: Any, path: str) -> dict[str, Any] | None:
    """Remove a lease left by a writer that is gone; return what it said (``None``: there was
    none). Removing the lease of a live writer lets a second writer in: check first.

    >>> import fsspec
    >>> fs = fsspec.filesystem("memory")
    >>> lease = ObjectLease(fs, "/doc-break/s.zarr/.sg-lock", "a store"); lease.acquire()
    >>> sorted(break_lease(fs, "/doc-break/s.zarr/.sg-lock"))
    ['host', 'pid', 'since', 'token']
    >>> break_lease(fs, "/doc-break/s.zarr/.sg-lock") is None
    True
    """
    info = ObjectLease(fs, path, "")._read()
    if info is not None:
        with contextlib.suppress(FileNotFoundError):
            fs.rm_file(path)
    return info
