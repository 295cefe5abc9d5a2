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
mount; object stores (``s3://``) have no lock at all, so there storegate cannot detect a second
writer (see ``docs/reliability.md``).

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
import os
import socket
import threading
import time
import weakref
from typing import Any

from ..errors import StoreLockedError

__all__ = ["WriterLock"]

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
