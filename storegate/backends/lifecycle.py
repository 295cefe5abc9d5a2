"""Writing buffered rows before the interpreter exits, for backends that buffer appends.

zarr and pyarrow do their I/O through thread pools, which ``concurrent.futures`` shuts down
before ``atexit`` handlers run. ``threading``'s own exit callbacks run earlier, in reverse order
of registration, so a hook registered after ``concurrent.futures`` has registered its own runs
first, while the pools still accept work.

Examples
--------
>>> class Buffering:
...     def __init__(self):
...         self.rows = [1, 2]
...         flush_at_exit(self, self.rows.clear)   # must not hold ``self`` itself
>>> b = Buffering()
>>> run_exit_flushes(); b.rows
[]
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import sys
import threading
import weakref
from collections.abc import Callable
from typing import Any

__all__ = ["flush_at_exit", "run_exit_flushes"]

logger = logging.getLogger(__name__)

_flushes: weakref.WeakKeyDictionary[Any, Callable[[], None]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()
_installed = False


def flush_at_exit(owner: Any, flush: Callable[[], None]) -> None:
    """Call ``flush`` at interpreter exit while ``owner`` is alive (re-registering replaces).

    ``flush`` must not reference ``owner`` (the registry holds it weakly).
    """
    global _installed
    with _lock:
        _flushes[owner] = flush
        if not _installed:
            _install()
            _installed = True


def run_exit_flushes() -> None:
    """Run every registered flush now (best effort: failures are logged)."""
    with _lock:
        flushes = list(_flushes.values())
    for flush in flushes:
        try:
            flush()
        except Exception:  # pragma: no cover - best effort at exit
            logger.exception("storegate: could not write buffered rows at exit")


def _install() -> None:
    import concurrent.futures.thread  # noqa: F401  (registers its own exit hook first)

    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        try:
            register(run_exit_flushes)
            return
        except RuntimeError:  # pragma: no cover - already shutting down
            pass
    atexit.register(run_exit_flushes)  # pragma: no cover


def remove_own_tmpdir(path: str, owner_pid: int) -> None:
    """Delete a backend's temporary store directory, but only in the process that made it.

    A forked child (a DataLoader worker) holds a copy of the backend; when that copy is
    collected, the parent's data must stay.
    """
    if os.getpid() == owner_pid:
        # open descriptors would keep the deleted files' space; none exist if chunkio was
        # never imported (and importing it now, perhaps at interpreter exit, could fail)
        chunkio = sys.modules.get(f"{__package__}.chunkio")
        if chunkio is not None:
            chunkio.descriptors.forget(path)
        shutil.rmtree(path, ignore_errors=True)
