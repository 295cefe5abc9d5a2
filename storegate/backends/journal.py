"""Crash consistency for directory stores: an undo journal of whole files.

A store on a local file system (zarr, parquet) changes by creating files, replacing files
(write a temporary, then ``rename`` over the old one) and removing files or directories. The
:class:`DirJournal` is told about each change *before* it happens:

* a file about to be **replaced** is hard-linked into the journal first (the rename that
  replaces it gives the path a new inode, so the link keeps the old content at no copy cost);
* a file or directory about to be **created** is recorded (undo: remove it);
* a file or directory about to be **removed** is moved into the journal instead (undo: move
  it back);
* a directory about to be **renamed** is recorded (undo: rename it back).

Each record is one JSON line appended to ``<root>/.sg-journal/index`` before the change.
**Committing** removes the index (one ``unlink``: the commit point) and then the saved copies.
**Recovering** a store whose journal still has an index (a writer died before committing)
undoes the records newest first, so the store is exactly as it was at the previous commit.
A record cut short by the kill is ignored: its change had not started.

Both orders are safe: a kill between saving a copy and logging it leaves an unlisted copy
(removed with the journal); a kill between logging and changing finds the path unchanged
(undo is a no-op for it).

Guarantees are against a killed process (SIGKILL, OOM killer, a crash): the kernel keeps the
writes of a dead process. Against power loss the journal is as durable as the file system's
ordering of renames; pass ``fsync=True`` to flush the index and directories at each step.

:class:`Transactions` turns a backend's calls into units: nested ``transaction()`` blocks join
the outermost one, and the journal is committed when the backend has nothing buffered at the
end of an outermost block (or at the next ``flush``).

Examples
--------
>>> import os, tempfile
>>> root = tempfile.mkdtemp()
>>> with open(os.path.join(root, "a"), "w") as f:
...     _ = f.write("old")
>>> j = DirJournal(root)
>>> j.before_write("a")                        # about to replace "a"
>>> with open(os.path.join(root, "a.tmp"), "w") as f:
...     _ = f.write("new")
>>> os.replace(os.path.join(root, "a.tmp"), os.path.join(root, "a"))
>>> j.before_write("b")                        # about to create "b"
>>> open(os.path.join(root, "b"), "w").close()
>>> DirJournal.recover(root)                   # as if the writer had died here
2
>>> open(os.path.join(root, "a")).read(), os.path.exists(os.path.join(root, "b"))
('old', False)
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from typing import Any

from ..errors import CorruptStoreError

__all__ = ["JOURNAL_DIR", "DirJournal", "Transactions", "Writer", "recover_abandoned"]

logger = logging.getLogger(__name__)

JOURNAL_DIR = ".sg-journal"
_INDEX = "index"


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:  # pragma: no cover
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


class DirJournal:
    """The undo journal of one store directory (see the module docstring).

    Parameters
    ----------
    root
        The store's directory; the journal lives in ``<root>/.sg-journal``.
    fsync
        Flush the index and the directories at each step (survives power loss on file systems
        that order metadata; costs a few ms per change).
    """

    def __init__(self, root: str, fsync: bool = False) -> None:
        self.root = os.path.abspath(root)
        self.dir = os.path.join(self.root, JOURNAL_DIR)
        self.fsync = fsync
        self._index: Any = None
        self._seen: set[str] = set()  # paths already protected in this session
        self._created_dirs: set[str] = set()  # directories created in this session
        self._n = 0
        self._lock = threading.RLock()
        self.changes = 0  # records written in this session
        self._real_root = os.path.realpath(self.root)
        self._dirs_ok: dict[str, bool] = {}  # directory -> inside the store (symlink guard)

    @property
    def active(self) -> bool:
        """Whether changes since the last commit are being recorded."""
        return self._index is not None

    # ------------------------------------------------------------------ recording
    def _begin(self) -> None:
        if self._index is not None:
            return
        if os.path.exists(os.path.join(self.dir, _INDEX)):
            raise RuntimeError(f"an uncommitted journal exists in {self.dir}; recover it first")
        _remove(self.dir)
        os.makedirs(self.dir)
        self._index = open(os.path.join(self.dir, _INDEX), "ab", buffering=0)  # noqa: SIM115
        self._log({"op": "begin", "pid": os.getpid()})
        if self.fsync:
            _fsync_dir(self.root)

    def _log(self, record: dict[str, Any]) -> None:
        self._index.write((json.dumps(record) + "\n").encode())
        if self.fsync:
            os.fsync(self._index.fileno())
        self.changes += 1

    def _rel(self, path: str) -> str:
        rel = os.path.relpath(os.path.abspath(os.path.join(self.root, path)), self.root)
        if rel == ".." or rel.startswith(".." + os.sep) or os.path.isabs(rel):
            raise CorruptStoreError(f"{path!r} is outside the store {self.root!r}; storegate "
                                    "writes only inside its store.")
        self._guard(os.path.dirname(rel), path)
        return rel

    def _guard(self, rel_dir: str, path: str) -> None:
        """Refuse a change whose directory is reached through a symbolic link that leaves the
        store (writing there would modify files outside it)."""
        if not rel_dir:
            return
        ok = self._dirs_ok.get(rel_dir)
        if ok is None:
            real = os.path.realpath(os.path.join(self.root, rel_dir))
            ok = real == self._real_root or real.startswith(self._real_root + os.sep)
            self._dirs_ok[rel_dir] = ok
        if not ok:
            raise CorruptStoreError(
                f"{os.path.join(self.root, path)!r} is reached through a symbolic link that "
                f"leads outside the store {self.root!r}; storegate never writes through such "
                "links. Replace the link by the directory it points to (or remove it).")

    def _inside_created(self, rel: str) -> bool:
        parts = rel.split(os.sep)
        return any(os.sep.join(parts[:i]) in self._created_dirs for i in range(1, len(parts)))

    def _copy_name(self) -> str:
        self._n += 1
        return os.path.join(self.dir, str(self._n))

    def before_write(self, path: str) -> None:
        """``path`` (relative to the root) is about to be created, or replaced by a rename."""
        with self._lock:
            rel = self._rel(path)
            if rel in self._seen or self._inside_created(rel):
                return
            self._begin()
            self._seen.add(rel)
            full = os.path.join(self.root, rel)
            # directories the write will create, outermost first
            missing: list[str] = []
            parent = os.path.dirname(rel)
            while parent and not os.path.isdir(os.path.join(self.root, parent)):
                missing.append(parent)
                parent = os.path.dirname(parent)
            if missing:
                top = missing[-1]
                self._log({"op": "created", "path": top})
                self._created_dirs.add(top)
                return
            if os.path.isfile(full):
                copy = self._copy_name()
                os.link(full, copy, follow_symlinks=False)
                self._log({"op": "saved", "path": rel, "copy": os.path.basename(copy)})
            else:
                self._log({"op": "created", "path": rel})

    def before_mkdir(self, path: str) -> None:
        """Directory ``path`` is about to be created (undo removes it with its contents)."""
        with self._lock:
            rel = self._rel(path)
            if rel in self._seen or self._inside_created(rel):
                return
            if os.path.isdir(os.path.join(self.root, rel)):
                return
            self._begin()
            self._seen.add(rel)
            parent = rel
            while os.path.dirname(parent) and not os.path.isdir(
                    os.path.join(self.root, os.path.dirname(parent))):
                parent = os.path.dirname(parent)
            self._log({"op": "created", "path": parent})
            self._created_dirs.add(parent)

    def remove(self, path: str) -> None:
        """Remove a file or directory, keeping it in the journal until the commit."""
        with self._lock:
            rel = self._rel(path)
            full = os.path.join(self.root, rel)
            if not os.path.lexists(full):
                return
            if rel in self._created_dirs or self._inside_created(rel):
                _remove(full)  # nothing of it existed at the last commit
                return
            self._begin()
            copy = self._copy_name()
            self._log({"op": "moved", "path": rel, "copy": os.path.basename(copy)})
            os.rename(full, copy)
            self._seen.add(rel)

    def before_rename(self, src: str, dst: str) -> None:
        """Directory or file ``src`` is about to be renamed to ``dst`` (which does not exist)."""
        with self._lock:
            rsrc, rdst = self._rel(src), self._rel(dst)
            if self._inside_created(rsrc) and self._inside_created(rdst):
                return
            self._begin()
            self._log({"op": "renamed", "src": rsrc, "dst": rdst})

    # ------------------------------------------------------------------ ending
    def commit(self) -> None:
        """Make every recorded change permanent (a no-op without changes)."""
        with self._lock:
            index, self._index = self._index, None
            self._seen.clear()
            self._created_dirs.clear()
            self._dirs_ok.clear()
            self._n = 0
            self.changes = 0
            if index is None:
                return
            index.close()
            if self.fsync:
                _fsync_dir(self.root)  # the changes' renames reach the disk before the commit
            os.unlink(os.path.join(self.dir, _INDEX))  # the commit point
            if self.fsync:
                _fsync_dir(self.dir)
            _remove(self.dir)

    def rollback(self) -> int:
        """Undo every recorded change (the store is as at the last commit); returns the number
        of records undone."""
        with self._lock:
            index, self._index = self._index, None
            self._seen.clear()
            self._created_dirs.clear()
            self._dirs_ok.clear()
            self._n = 0
            self.changes = 0
            if index is not None:
                index.close()
            return self.recover(self.root, fsync=self.fsync)

    @staticmethod
    def pending(root: str) -> bool:
        """Whether ``root`` has a journal that was not committed (a writer is writing, or died)."""
        return os.path.exists(os.path.join(root, JOURNAL_DIR, _INDEX))

    @staticmethod
    def recover(root: str, fsync: bool = False) -> int:
        """Undo an uncommitted journal left in ``root`` (call with the store's writer lock
        held). Returns the number of records undone (0 without a journal)."""
        jdir = os.path.join(root, JOURNAL_DIR)
        index = os.path.join(jdir, _INDEX)
        if not os.path.exists(index):
            if os.path.isdir(jdir):
                _remove(jdir)  # a commit that stopped while removing the copies
            return 0
        with open(index, "rb") as f:
            lines = f.read().split(b"\n")
        records: list[dict[str, Any]] = []
        for line in lines:
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # the last line, cut short by the kill: its change never started
            if isinstance(rec, dict):
                records.append(rec)
        undone = 0
        touched: set[str] = set()
        for rec in records:
            for key in ("path", "src", "dst"):
                if isinstance(rec.get(key), str):
                    touched.add(os.path.dirname(os.path.join(root, rec[key])))
        for rec in reversed(records):
            op = rec.get("op")
            try:
                if op == "created":
                    _remove(os.path.join(root, rec["path"]))
                elif op in ("saved", "moved"):
                    copy = os.path.join(jdir, str(rec["copy"]))
                    target = os.path.join(root, rec["path"])
                    if not os.path.lexists(copy):
                        continue  # the change never happened
                    if os.path.lexists(target):
                        _remove(target)
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    os.rename(copy, target)
                elif op == "renamed":
                    src = os.path.join(root, rec["src"])
                    dst = os.path.join(root, rec["dst"])
                    if os.path.lexists(dst) and not os.path.lexists(src):
                        os.rename(dst, src)
                else:
                    continue
            except (KeyError, TypeError):
                continue  # a foreign or damaged record: nothing to undo
            undone += 1
        for folder in touched:  # temporaries of writes the kill cut short
            with contextlib.suppress(OSError):
                for name in os.listdir(folder):
                    if name.endswith(".partial") or name.startswith(".tmp-"):
                        _remove(os.path.join(folder, name))
        if fsync:
            _fsync_dir(root)
        os.unlink(index)
        _remove(jdir)
        if undone:
            logger.warning("storegate: rolled back %d changes of an interrupted write in %s",
                           undone, root)
        return undone


def recover_abandoned(root: str, lock_path: str, what: str) -> None:
    """For a reader: roll back the journal of a writer that died, as the next writer would.

    A journal with an index and a free lock is "hot" (its writer died before committing):
    like SQLite's readers with a hot journal, a read-only open rolls it back (briefly taking
    the writer lock), so it reads the last committed state. A journal whose writer is alive is
    left alone (its writes are data first, then lengths). Without write access to the store
    the rollback cannot happen; the reader is warned and may see part of the interrupted
    write.
    """
    if not DirJournal.pending(root):
        return
    from .locking import WriterLock

    lock = WriterLock(lock_path, what)
    try:
        got = lock.try_acquire()
    except OSError as err:
        logger.warning("storegate: %s holds an interrupted write that cannot be rolled back "
                       "(%s); reads may see part of it. Open it once with mode='a' where it "
                       "is writable.", what, err)
        return
    if not got:
        return  # a live writer: its journal is its own
    try:
        DirJournal.recover(root)
    except OSError as err:
        logger.warning("storegate: could not roll back an interrupted write in %s (%s); reads "
                       "may see part of it.", what, err)
    finally:
        lock.release()


class Writer:
    """A backend's writer side in one process: the store's lock and its journal (both ``None``
    until the first write; the journal stays ``None`` for stores without one, e.g. remote).
    Shared by the backend, its store objects and its exit flush, none of which may hold the
    backend itself."""

    def __init__(self) -> None:
        from .locking import ObjectLease, WriterLock

        self.lock: WriterLock | ObjectLease | None = None
        self.journal: DirJournal | None = None


class Transactions:
    """Nesting and commit policy of a backend's ``transaction()`` (see the module docstring).

    Parameters
    ----------
    journal
        Returns the backend's journal (``None``: nothing to commit, e.g. a remote store).
    buffered
        Whether the backend holds rows in memory that are not written yet; the journal is then
        left open at the end of a block and committed by the next ``flush``, so the journal
        always ends at a state between two operations.
    discard
        Drops the backend's in-memory state after a rollback (it reloads from disk).
    """

    def __init__(self, journal: Callable[[], DirJournal | None], buffered: Callable[[], bool],
                 discard: Callable[[], None]) -> None:
        self._journal = journal
        self._buffered = buffered
        self._discard = discard
        self._depth = 0
        self._clean_start = True
        self._mutex = threading.RLock()

    @property
    def depth(self) -> int:
        return self._depth

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        with self._mutex:
            if self._depth == 0:
                j = self._journal()
                # a failed block may be undone only if nothing else is uncommitted (neither
                # written since the last commit nor buffered in memory)
                self._clean_start = (j is None or not j.active) and not self._buffered()
            self._depth += 1
            try:
                yield
            except BaseException:
                self._depth -= 1
                if self._depth == 0:
                    self._failed()
                raise
            self._depth -= 1
            if self._depth == 0 and not self._buffered():
                self.commit()

    def _failed(self) -> None:
        j = self._journal()
        if j is None or not j.active:
            return
        if self._clean_start:
            # everything since the last commit belongs to the failed operation: undo it all
            j.rollback()
            self._discard()
        else:
            logger.warning(
                "storegate: an operation failed after earlier uncommitted appends; the store "
                "keeps what was written (flush() commits it)")

    def commit(self) -> None:
        """Commit the journal (called by ``flush``; a no-op inside a block)."""
        with self._mutex:
            if self._depth:
                return
            j = self._journal()
            if j is not None:
                j.commit()
