"""The zarr backend: vars as zarr arrays in a local directory or any fsspec URL.

Layout (zarr format 3 by default)::

    <output_dir>/zarr.json                      root group
    <output_dir>/<data_id>/zarr.json            group; attributes = the data_id's attrs
    <output_dir>/<data_id>/<phase>/zarr.json    group; attributes["storegate"]["var_order"]
    <output_dir>/<data_id>/<phase>/<var>/...    one array per var, chunked along axis 0 only

Stores written by multiml (zarr format 2, the same ``data_id/phase/var`` groups, no attributes)
open for reading and appending; their vars are listed alphabetically until storegate records
an order.

How it is fast (see DESIGN §7 and ``bench/gather.py``):

* **chunks sized by bytes** (``chunk_bytes``, 4 MiB by default) rather than a fixed row count;
  a var's chunk size is chosen when its first rows are flushed, so a 10-row var does not get a
  4 MiB (zero-padded) chunk;
* **no compression by default** (random float data barely compress and decoding costs more
  than it saves; ``compressor='lz4'`` or ``'zstd'`` opts in) and never a process-wide default;
* **appends are buffered** to whole chunks (zarr re-encodes a partly filled chunk on every
  append otherwise); the tail is flushed on ``flush``/``close``/compile, before reads of that
  var, before pickling, and at interpreter exit;
* **random gathers** are served from a decoded :class:`~storegate.backends.arena.Arena` per var,
  filled chunk by chunk on first touch, within a per-backend byte budget (``cache_bytes``);
* array handles and var lists are cached per process and refreshed after a fork.

Examples
--------
>>> import tempfile, numpy as np
>>> from storegate import StoreGate
>>> path = tempfile.mkdtemp() + "/store.zarr"
>>> sg = StoreGate("zarr", {"output_dir": path}, data_id="jets")
>>> sg.add_data(("pt", "eta"), np.arange(20.0).reshape(10, 2), phase=(0.8, 0.1, 0.1))
>>> sg.compile()
>>> StoreGate("zarr", {"output_dir": path, "mode": "r"}, data_id="jets")["train"]["eta"][[0, 7]]
array([ 1., 15.])
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import shutil
import tempfile
import threading
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..arrays import cast_for_write, check_row_shape
from ..errors import (
    CorruptStoreError,
    DataIdNotFoundError,
    DtypeError,
    InvalidArgumentError,
    ShapeMismatchError,
    StoregateError,
    StoreNotFoundError,
    VarExistsError,
    VarNotFoundError,
)
from ..indexing import Index
from ..phases import PHASES, check_phase
from ..ragged import RaggedArray
from .arena import Arena, ArenaCache, default_cache_bytes
from .base import TEMP_PREFIX, Backend, VarInfo
from .journal import JOURNAL_DIR, DirJournal, Transactions, Writer, recover_abandoned
from .lifecycle import flush_at_exit, remove_own_tmpdir
from .locking import LOCK_NAME, ObjectLease, WriterLock
from .remote import remote_options

__all__ = ["ZarrBackend"]

logger = logging.getLogger(__name__)

_MODES = ("r", "r+", "a", "w", "w-")
_META = "storegate"
_OLD_PREFIX = ".sg-old-"
_LOCK_FILE = LOCK_NAME
_PRIVATE = (_LOCK_FILE, JOURNAL_DIR)
DEFAULT_CHUNK_BYTES = 4 << 20


class _HidesPrivate:
    """Store mixin: storegate's own files (the lock or lease, the journal) and a killed write's
    temporaries (``*.partial``) are not part of the zarr hierarchy, so zarr's listings skip
    them."""

    async def list(self) -> Any:
        async for key in super().list():  # type: ignore[misc]
            if not key.startswith(_PRIVATE):
                yield key

    async def list_prefix(self, prefix: str) -> Any:
        async for key in super().list_prefix(prefix):  # type: ignore[misc]
            if not key.startswith(_PRIVATE):
                yield key

    async def list_dir(self, prefix: str) -> Any:
        top = not prefix.strip("/")
        async for key in super().list_dir(prefix):  # type: ignore[misc]
            if not (top and key.startswith(_PRIVATE)) and not key.endswith(".partial"):
                yield key


def _journaled_store_class() -> Any:
    """A zarr ``LocalStore`` whose writes and deletes go through the backend's undo journal
    (:mod:`storegate.backends.journal`) and never through symbolic links leaving the store."""
    from zarr.storage import LocalStore

    class JournaledLocalStore(_HidesPrivate, LocalStore):
        writer: Writer | None = None

        def _journal(self) -> DirJournal | None:
            w = self.writer
            return None if w is None else w.journal

        async def set(self, key: str, value: Any) -> None:
            j = self._journal()
            if j is not None:
                j.before_write(key)
            await super().set(key, value)

        async def set_if_not_exists(self, key: str, value: Any) -> None:
            j = self._journal()
            if j is not None and not os.path.exists(os.path.join(str(self.root), key)):
                j.before_write(key)
            await super().set_if_not_exists(key, value)

        async def delete(self, key: str) -> None:
            j = self._journal()
            if j is None:
                await super().delete(key)
                return
            self._check_writable()
            j.remove(key)

        async def delete_dir(self, prefix: str) -> None:
            if not prefix.strip("/"):
                await self.clear()  # the whole store, but never the lock and journal
                return
            j = self._journal()
            if j is None:
                await super().delete_dir(prefix)
                return
            self._check_writable()
            if os.path.isdir(os.path.join(str(self.root), prefix)):
                j.remove(prefix)

        async def clear(self) -> None:
            self._check_writable()
            j = self._journal()
            root = str(self.root)
            for name in os.listdir(root):
                if name in (_LOCK_FILE, JOURNAL_DIR):
                    continue
                if j is not None:
                    j.remove(name)
                elif os.path.isdir(os.path.join(root, name)):
                    shutil.rmtree(os.path.join(root, name))
                else:
                    os.unlink(os.path.join(root, name))

        def with_read_only(self, read_only: bool = False) -> Any:
            other = type(self)(root=self.root, read_only=read_only)
            other.writer = None if read_only else self.writer
            return other

    return JournaledLocalStore


_STORE_CLASS: Any = None


def _store_class() -> Any:
    global _STORE_CLASS
    if _STORE_CLASS is None:
        _STORE_CLASS = _journaled_store_class()
    return _STORE_CLASS


_REMOTE_CLASS: Any = None


def _remote_store_class() -> Any:
    """zarr's ``FsspecStore`` with storegate's lease object (``.sg-lock``) hidden from the
    listings, like the local store hides its private files."""
    global _REMOTE_CLASS
    if _REMOTE_CLASS is None:
        from zarr.storage import FsspecStore

        class PrivateHidingFsspecStore(_HidesPrivate, FsspecStore):
            pass

        _REMOTE_CLASS = PrivateHidingFsspecStore
    return _REMOTE_CLASS


def _next_pow2(n: int) -> int:
    return 1 << max(0, int(n - 1).bit_length())


def _codec(spec: Any, zarr_format: int) -> tuple[Any, str]:
    """``compressors=`` argument for zarr and a short description, from a user spec."""
    if spec is None or (isinstance(spec, str) and spec.lower() in ("default", "none", "")):
        return None, "none"
    if isinstance(spec, str):
        name = spec.lower()
        if name in ("lz4", "blosc", "blosc-lz4"):
            cname, level = "lz4", 5
        elif name == "blosc-zstd":
            cname, level = "zstd", 5
        elif name in ("zstd", "gzip"):
            cname, level = name, 3 if name == "zstd" else 5
        else:
            raise StoregateError(
                f"unknown compressor {spec!r}; use None (the default, fastest reads), 'lz4' "
                "(blosc-lz4 with shuffle), 'blosc-zstd', 'zstd', 'gzip', or a zarr/numcodecs "
                "codec instance."
            )
        if zarr_format == 2:
            import numcodecs

            if cname == "gzip":
                return numcodecs.GZip(level), f"gzip({level})"
            if name in ("zstd",):
                return numcodecs.Zstd(level), f"zstd({level})"
            return numcodecs.Blosc(cname, level, numcodecs.Blosc.SHUFFLE), f"blosc({cname})"
        from zarr.codecs import BloscCodec, GzipCodec, ZstdCodec

        if cname == "gzip":
            return GzipCodec(level=level), f"gzip({level})"
        if name == "zstd":
            return ZstdCodec(level=level), f"zstd({level})"
        return BloscCodec(cname=cname, clevel=level, shuffle="shuffle"), f"blosc({cname})"  # type: ignore[arg-type]
    codec_id = getattr(spec, "codec_id", None)
    if codec_id is not None:  # a numcodecs codec, as multiml users passed
        if zarr_format == 2:
            return spec, str(codec_id)
        config = spec.get_config()
        from zarr.codecs import BloscCodec, GzipCodec, ZstdCodec

        if codec_id == "blosc":
            shuffle = {0: "noshuffle", 1: "shuffle", 2: "bitshuffle", -1: "shuffle"}
            return BloscCodec(
                cname=config.get("cname", "lz4"),
                clevel=config.get("clevel", 5),
                shuffle=shuffle.get(config.get("shuffle", 1), "shuffle"),  # type: ignore[arg-type]
            ), f"blosc({config.get('cname', 'lz4')})"
        if codec_id == "zstd":
            return ZstdCodec(level=config.get("level", 3)), f"zstd({config.get('level', 3)})"
        if codec_id in ("gzip", "zlib"):
            return GzipCodec(level=config.get("level", 5)), "gzip"
        raise StoregateError(
            f"numcodecs codec {codec_id!r} has no zarr format 3 equivalent here; use 'lz4', "
            "'zstd', 'gzip' or a zarr.codecs codec."
        )
    return spec, type(spec).__name__


def _describe_codecs(arr: Any) -> str:
    meta = arr.metadata
    if getattr(meta, "zarr_format", 3) == 2:
        comp = getattr(meta, "compressor", None)
        return "none" if comp is None else str(getattr(comp, "codec_id", comp))
    names = [type(c).__name__.replace("Codec", "").lower() for c in meta.codecs]
    names = [n for n in names if n != "bytes"]
    return "+".join(names) if names else "none"


class _Files:
    """Directory operations the zarr API lacks (rename, existence), for local and fsspec."""

    def __init__(self, store: Any, location: str, storage_options: dict[str, Any] | None) -> None:
        from zarr.storage import FsspecStore, LocalStore

        self.fs: Any = None
        self.root: str | None = None
        self.writer: Writer | None = getattr(store, "writer", None)
        if isinstance(store, LocalStore):
            self.root = str(store.root)
        elif isinstance(store, FsspecStore):
            # zarr holds an async file system; directory moves need a synchronous one
            from fsspec.core import url_to_fs

            self.fs, self.root = url_to_fs(location, **remote_options(location, storage_options))

    @property
    def supported(self) -> bool:
        return self.root is not None

    def _p(self, rel: str) -> str:
        assert self.root is not None
        return f"{self.root.rstrip('/')}/{rel}"

    def _fresh(self) -> Any:
        """The file system with its listing cache dropped: zarr writes through its own
        (asynchronous) instance, so listings cached by this one may be stale."""
        self.fs.invalidate_cache()
        return self.fs

    def exists(self, rel: str) -> bool:
        if self.fs is None:
            return os.path.exists(self._p(rel))
        return bool(self._fresh().exists(self._p(rel)))

    def move(self, src: str, dst: str) -> None:
        if self.fs is None:
            j = self.writer.journal if self.writer is not None else None
            if j is not None:
                j.before_rename(src, dst)
            os.replace(self._p(src), self._p(dst))
        else:
            # an object store has no rename: copy every object (concurrently, through the
            # file system's bulk copy), then delete the originals. fsspec's recursive mv also
            # tries to copy the "directory" keys, which S3 rejects.
            fs = self._fresh()
            s, d = self._p(src).rstrip("/"), self._p(dst).rstrip("/")
            files = [f for f in fs.find(s) if f.startswith(s + "/")]
            if not files:
                raise FileNotFoundError(f"nothing to move at {s!r}")
            fs.copy(files, [d + f[len(s):] for f in files])
            fs.rm(files)
            fs.invalidate_cache()

    def remove(self, rel: str) -> None:
        if self.fs is None:
            j = self.writer.journal if self.writer is not None else None
            if j is not None:
                j.remove(rel)
            else:
                shutil.rmtree(self._p(rel), ignore_errors=True)
        elif self._fresh().exists(self._p(rel)):
            self.fs.rm(self._p(rel), recursive=True)

    def children(self, rel: str) -> list[str]:
        try:
            if self.fs is None:
                return sorted(os.listdir(self._p(rel)))
            return sorted(p.rstrip("/").rsplit("/", 1)[-1]
                          for p in self._fresh().ls(self._p(rel), detail=False))
        except (FileNotFoundError, NotADirectoryError):
            return []


@dataclass
class _Var:
    """One var in this process: its zarr array (once created) and buffered appended rows."""

    dtype: np.dtype
    row_shape: tuple[int, ...]
    array: Any = None
    chunk_rows: int = 0
    pending: list[np.ndarray] = field(default_factory=list)
    pending_rows: int = 0
    filler: Any = None  # reads rows start:stop straight from the chunks (see _filler)
    rows_reader: Any = None  # reads single rows without whole chunks, or None (see _filler)
    whole: np.ndarray | None = None  # a ragged var's offsets, kept in memory once read

    @property
    def committed(self) -> int:
        return 0 if self.array is None else int(self.array.shape[0])

    @property
    def length(self) -> int:
        return self.committed + self.pending_rows

    @property
    def row_bytes(self) -> int:
        return max(1, int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize)


@dataclass
class _Phase:
    """One phase group: handle, var order (the commit record of which vars exist), vars."""

    group: Any
    order: list[str]
    vars: dict[str, _Var] = field(default_factory=dict)
    # read-only: vars whose content is their moved-aside copy (an interrupted swap)
    redirect: dict[str, str] = field(default_factory=dict)
    # ragged vars: a group <var>/ holding the arrays <var>/values and <var>/offsets
    ragged: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class _Settings:
    location: str
    storage_options: dict[str, Any] | None
    chunk: int | None
    chunk_bytes: int
    compressor: Any
    cache_bytes: int
    zarr_format: int
    io_threads: int = 16


def _flush_all(phases: dict[tuple[str, str], _Phase], settings: _Settings, pid: int,
               tx: Transactions | None = None) -> None:
    """Write buffered rows and commit (when a backend is collected, and at interpreter exit)."""
    if os.getpid() != pid:
        return
    if threading.current_thread().name == "zarr_io":
        # garbage collection ran inside zarr's event-loop thread, where zarr's synchronous API
        # cannot be called: write from a thread of our own (non-daemon, so it finishes)
        threading.Thread(target=_flush_all, args=(phases, settings, pid, tx),
                         name="storegate-flush").start()
        return
    failed = False
    for (_, _), ph in list(phases.items()):
        for name, var in list(ph.vars.items()):
            if var.pending:
                try:
                    _flush_var(ph, name, var, settings)
                except Exception:  # pragma: no cover - best effort at exit
                    failed = True
                    logger.exception("storegate: could not flush var %r at exit", name)
    if tx is not None and not failed:
        try:
            tx.commit()
        except Exception:  # pragma: no cover - best effort at exit
            logger.exception("storegate: could not commit at exit")


def _discard(phases: dict[tuple[str, str], _Phase], cache: ArenaCache) -> None:
    """Forget everything this process knows of the store (after a rollback: reload it)."""
    for ph in phases.values():
        for v in ph.vars.values():
            _drop_io(v)
    phases.clear()
    cache.clear()


def _buffered(phases: dict[tuple[str, str], _Phase]) -> bool:
    return any(v.pending for ph in phases.values() for v in ph.vars.values())


def _check_dtype(dtype: np.dtype, var: str) -> None:
    """Refuse, before anything is buffered, a dtype zarr cannot store (long double)."""
    if (dtype.kind == "f" and dtype.itemsize > 8) or (dtype.kind == "c" and dtype.itemsize > 16):
        smaller = "c16" if dtype.kind == "c" else "f8"
        raise DtypeError(
            f"var {var!r} has dtype {dtype} (extended precision), which zarr cannot store; "
            f"convert it first, e.g. data.astype('{smaller}')."
        )


def _create_array(ph: _Phase, name: str, var: _Var, settings: _Settings, rows: int) -> None:
    fmt = int(ph.group.metadata.zarr_format)
    compressors, _ = _codec(settings.compressor, fmt)
    var.chunk_rows = rows
    kwargs: dict[str, Any] = dict(
        name=name,
        shape=(0, *var.row_shape),
        chunks=(rows, *var.row_shape),
        dtype=var.dtype,
        fill_value=0,
        overwrite=True,
        # every chunk is written, even all-zero ones, so a missing chunk file is damage
        # (`storegate check`), not "all fill values"
        config={"write_empty_chunks": True},
    )
    kwargs["compressors"] = compressors
    if 0 in var.row_shape:
        kwargs["chunks"] = (rows, *(max(1, s) for s in var.row_shape))
    var.array = ph.group.create_array(**kwargs)
    _drop_io(var)


def _committed(ph: _Phase, name: str) -> bool:
    """Whether a var's data are on disk: its array exists (a ragged var: its offsets array,
    which is written after its values)."""
    key = f"{name}/offsets" if name in ph.ragged else name
    return key not in ph.vars or ph.vars[key].array is not None


def _commit_order(ph: _Phase) -> None:
    """Persist which vars exist, in order: the last step of every create/delete/rename."""
    created = [v for v in ph.order if _committed(ph, v)]
    meta = dict(ph.group.attrs.get(_META, {}) or {})
    meta["var_order"] = created
    meta["ragged"] = [v for v in created if v in ph.ragged]
    ph.group.attrs[_META] = meta


def _target_rows(var: _Var, settings: _Settings) -> int:
    if settings.chunk:
        return int(settings.chunk)
    return max(1, settings.chunk_bytes // var.row_bytes)


def _grown_view(arr: Any, shape: tuple[int, ...]) -> Any:
    """The array with a larger shape *in memory only*: writes through it store chunks but not
    the new shape, so a reader (or a crash) still sees the old length until ``resize``."""
    import zarr
    from zarr.core.array import AsyncArray

    inner = arr._async_array
    return zarr.Array(AsyncArray(metadata=inner.metadata.update_shape(shape),
                                 store_path=inner.store_path, config=inner.config))


def _write_rows(var: _Var, block: np.ndarray, io_threads: int = 16) -> None:
    """Append rows: chunk data first, then the committed length (the array's shape).

    A process killed in between leaves the var at its old length with its old content (chunk
    files are replaced atomically on local stores), never with rows that were not written.
    Uncompressed local chunks are written as files straight from ``block`` (no codec pipeline,
    no copy); others go through zarr.
    """
    start = var.committed
    stop = start + block.shape[0]
    shape = (stop, *var.row_shape)
    if var.filler is None:
        _filler(var, io_threads)
    try:
        if var.rows_reader is not None and var.array.fill_value == 0:
            writer = getattr(var.array.store, "writer", None)
            var.rows_reader.before_write = (writer.journal.before_write
                                            if writer is not None and writer.journal else None)
            var.rows_reader.write_range(start, block)
            var.array.resize(shape)
            return
        try:
            grown = _grown_view(var.array, shape)
        except (AttributeError, TypeError):  # a zarr without these internals: length first
            var.array.resize(shape)
            var.array[start:stop] = block
            return
        grown[start:stop] = block
        var.array.resize(shape)
    finally:
        _drop_io(var)  # chunk files were replaced: cached descriptors see the old ones


def _flush_var(ph: _Phase, name: str, var: _Var, settings: _Settings) -> None:
    if not var.pending:
        return
    block = var.pending[0] if len(var.pending) == 1 else np.concatenate(var.pending)
    new = var.array is None
    if new:
        target = _target_rows(var, settings)
        rows = target if settings.chunk else min(target, _next_pow2(block.shape[0]))
        _create_array(ph, name, var, settings, rows)
    _write_rows(var, block, settings.io_threads)
    var.pending, var.pending_rows = [], 0
    if new:
        _commit_order(ph)


def _raw_chunk_dir(arr: Any) -> str | None:
    """The directory of an array whose chunk files are raw C-order little-endian rows."""
    from zarr.storage import LocalStore

    if not isinstance(arr.store, LocalStore) or arr.dtype.byteorder == ">":
        return None
    if tuple(arr.chunks[1:]) != tuple(arr.shape[1:]) or arr.dtype.hasobject:
        return None  # chunked along other axes too (a foreign store): rows are not contiguous
    meta = arr.metadata
    if meta.zarr_format == 3:
        from zarr.codecs import BytesCodec

        codecs = meta.codecs
        if len(codecs) != 1 or not isinstance(codecs[0], BytesCodec):
            return None
        if codecs[0].endian is not None and codecs[0].endian.value != "little":
            return None
    elif meta.compressor is not None or meta.filters or meta.order != "C":
        return None
    return os.path.join(str(arr.store.root), arr.path)


def _drop_io(var: _Var) -> None:
    """Forget a var's readers and the cached descriptors of its chunk files (after writes:
    zarr replaces a chunk file by a new one, and an open descriptor still reads the old)."""
    reader = var.rows_reader
    var.filler = var.rows_reader = None
    directory = reader.directory if reader is not None else (
        _raw_chunk_dir(var.array) if var.array is not None else None)
    if directory:
        from .chunkio import descriptors

        descriptors.forget(directory)


#: An array whose metadata claims more bytes than this is damaged: no store holds 64 PiB in one
#: var, and numpy could not index it (a crafted ``zarr.json`` claiming 10**18 rows).
_MAX_CLAIMED_BYTES = 1 << 56
#: Above this many chunks along axis 0, gathers of compressed vars decode chunk by chunk
#: (zarr's orthogonal indexing allocates per-chunk counters for the whole array).
_MAX_ZARR_GATHER_CHUNKS = 1 << 22


def _array_problem(arr: Any) -> str | None:
    """What makes a zarr array unreadable as a storegate var, from its metadata alone (no
    I/O), or ``None``: not an array, no row axis, chunk shapes that do not fit the shape (zero
    rows per chunk reads every row from the wrong place), a dtype storegate does not store,
    or a claimed size no store can hold."""
    import zarr

    from ..arrays import check_storable_dtype

    if not isinstance(arr, zarr.Array):
        return "it is a group, not an array"
    try:
        shape = tuple(int(s) for s in arr.shape)
        chunks = tuple(int(c) for c in arr.chunks)
        dtype = np.dtype(arr.dtype)
    except Exception as err:  # an irregular chunk grid, a dtype numpy lacks
        return f"its metadata cannot be used ({type(err).__name__}: {err})"
    if not shape:
        return "it is a 0-d array; a var needs a row axis"
    if len(chunks) != len(shape) or any(c < 1 for c in chunks):
        return (f"its chunk shape {chunks} does not fit its shape {shape} (every chunk must "
                "hold at least one element along each axis)")
    if any(s < 0 for s in shape):
        return f"its shape {shape} is negative"
    try:
        check_storable_dtype(dtype)
    except StoregateError:
        return (f"its dtype {dtype} is not one storegate stores (numbers and bools only; "
                "object and string arrays are refused)")
    items = 1
    for s in shape:
        items *= s
    if items * dtype.itemsize > _MAX_CLAIMED_BYTES:
        return (f"its metadata claims shape {shape} of {dtype} ({items * dtype.itemsize} "
                "bytes), more than any store holds")
    return None


def _check_metadata_files(group: Any, rel: str) -> None:
    """Refuse the metadata files of array ``rel`` of ``group`` (a local store) that are not
    regular files, before zarr reads them: a link to ``/dev/zero`` would be read until memory
    runs out, a FIFO would block."""
    from zarr.storage import LocalStore

    store = getattr(group, "store", None)
    if not isinstance(store, LocalStore):
        return
    base = os.path.join(str(store.root), str(group.path), rel)
    for name in ("zarr.json", ".zarray", ".zattrs"):
        path = os.path.join(base, name)
        if os.path.lexists(path) and not os.path.isfile(path):
            raise ValueError(f"{name} is not a regular file (a device, FIFO or directory, "
                             "possibly behind a symbolic link)")


def _sparse(arr: Any) -> bool:
    """Whether chunk files of an array may be missing (then read as the fill value): arrays
    of ``create_empty`` (marked ``sparse``), whose unwritten rows have none, and zarr format 2
    arrays (multiml's zarr skipped chunks holding only the fill value). Every chunk of other
    arrays is written, so a missing one is damage."""
    if getattr(arr.metadata, "zarr_format", 3) == 2:
        return True
    try:
        own = arr.attrs.get(_META)
    except Exception:
        return True
    return isinstance(own, dict) and bool(own.get("sparse"))


def _chunk_guard(arr: Any, missing_ok: bool = True) -> Any:
    """For an array read through zarr from a local directory: ``verify(chunks)``, which checks
    the chunk files of the given chunk numbers (along axis 0) before zarr reads them, or
    ``None`` when there is nothing to check. Each file must be a regular file (zarr would read a
    FIFO or ``/dev/zero`` behind a symbolic link forever) and, for blosc, as long as its frame
    header says (blosc decodes a truncated frame past its end: garbage, or a crash). A missing
    file is damage unless ``missing_ok`` (see :func:`_sparse`); then zarr reads the fill value.
    """
    import itertools
    import stat

    from zarr.storage import LocalStore

    if not isinstance(arr.store, LocalStore):
        return None
    meta = arr.metadata
    if meta.zarr_format == 3:
        from zarr.codecs import BloscCodec, BytesCodec

        codecs = list(meta.codecs)
        if not codecs or not isinstance(codecs[0], BytesCodec):
            return None  # sharded or otherwise nested: chunk files are not chunks
        blosc = len(codecs) == 2 and isinstance(codecs[1], BloscCodec)
    else:
        blosc = not meta.filters and getattr(meta.compressor, "codec_id", None) == "blosc"
    base = os.path.join(str(arr.store.root), arr.path)
    counts = [-(-int(s) // int(c)) for s, c in zip(arr.shape[1:], arr.chunks[1:], strict=True)]
    rest = list(itertools.product(*(range(n) for n in counts)))
    if len(rest) > 4096:
        return None
    done: set[int] = set()

    def verify(chunks: Any) -> None:
        for c in chunks:
            c = int(c)
            if c in done:
                continue
            for r in rest:
                key = meta.encode_chunk_key((c, *r))
                path = os.path.join(base, key)
                try:
                    st = os.stat(path)
                except FileNotFoundError:
                    if missing_ok:
                        continue
                    raise CorruptStoreError(
                        f"chunk file {key} of var {arr.path!r} is missing, but every chunk of "
                        "it was written; the store was modified outside storegate (run "
                        "`storegate check` on it).") from None
                except OSError as err:
                    raise CorruptStoreError(
                        f"chunk file {key} of var {arr.path!r} cannot be read ({err}); run "
                        "`storegate check` on the store.") from None
                if not stat.S_ISREG(st.st_mode):
                    raise CorruptStoreError(
                        f"chunk file {key} of var {arr.path!r} is not a regular file (a "
                        "device, FIFO or directory, possibly behind a symbolic link); the store "
                        "was modified outside storegate. Restore the chunk file.")
                if blosc:
                    with open(path, "rb") as f:
                        head = f.read(16)
                    want = int.from_bytes(head[12:16], "little") if len(head) == 16 else -1
                    if want != st.st_size:
                        raise CorruptStoreError(
                            f"chunk file {key} of var {arr.path!r} is truncated or overwritten "
                            f"({st.st_size} bytes; its blosc header records {max(want, 0)}); "
                            "run `storegate check` on the store.")
            done.add(c)

    return verify


def _decode_error(arr: Any, err: Exception) -> CorruptStoreError:
    """A zarr/codec failure while reading an array, as a ``CorruptStoreError`` naming the var
    (not the rows: ``storegate check`` merges identical messages of neighbouring blocks)."""
    return CorruptStoreError(
        f"var {arr.path!r} cannot be decoded ({type(err).__name__}: {err}); a chunk file or the "
        "array metadata is damaged. Run `storegate check` on the store.")


def _zarr_gather(arr: Any, index: np.ndarray, guard: Any) -> np.ndarray:
    """Rows at ``index`` through zarr, each touched chunk checked by ``guard`` first; chunk by
    chunk when the array has very many chunks (zarr's orthogonal indexing would allocate
    counters for all of them)."""
    rows = int(arr.chunks[0])
    try:
        if guard is not None:
            guard(np.unique(index // rows))
        if -(-int(arr.shape[0]) // rows) <= _MAX_ZARR_GATHER_CHUNKS:
            return np.asarray(arr.oindex[index])
        uniq, inverse = np.unique(index, return_inverse=True)
        out = np.empty((uniq.shape[0], *arr.shape[1:]), dtype=arr.dtype)
        chunk = uniq // rows
        cuts = np.flatnonzero(np.diff(chunk)) + 1
        for seg in np.split(np.arange(uniq.shape[0]), cuts):
            lo, hi = int(uniq[seg[0]]), int(uniq[seg[-1]]) + 1
            out[seg] = np.asarray(arr[lo:hi])[uniq[seg] - lo]
        return np.take(out, inverse.reshape(-1), axis=0)
    except StoregateError:
        raise
    except Exception as err:
        raise _decode_error(arr, err) from None


def _alloc_rows(var: _Var, n: int, key: tuple[str, str, str]) -> np.ndarray:
    """An uninitialised buffer for ``n`` rows of a var, or a clear error when it cannot be
    allocated (a read of more rows than fit in memory, or of a var whose metadata lies)."""
    try:
        return np.empty((n, *var.row_shape), dtype=var.dtype)
    except (MemoryError, ValueError) as err:
        size = n * var.row_bytes
        raise InvalidArgumentError(
            f"reading {n} rows of var {'/'.join(key)!r} needs {size} bytes of memory, which "
            f"cannot be allocated ({type(err).__name__}: {err}); read it in slices. If the var "
            "should not be this large, its metadata is damaged: run `storegate check`."
        ) from None


def _filler(var: _Var, io_threads: int) -> None:
    """Set a var's readers: ``filler(start, stop, out)`` for ranges and, for uncompressed local
    chunks, ``rows_reader`` (a :class:`~storegate.backends.chunkio.RawChunkFiles`) that reads
    single rows straight from the chunk files (no decode, no whole chunks, concurrent reads).
    Everything else goes through zarr.
    """
    arr = var.array
    base = _raw_chunk_dir(arr)
    missing_ok = _sparse(arr)
    if base is None:
        guard = _chunk_guard(arr, missing_ok)
        rows = max(1, int(arr.chunks[0]))

        def via_zarr(start: int, stop: int, out: np.ndarray) -> None:
            try:
                if guard is not None and stop > start:
                    guard(range(start // rows, (stop - 1) // rows + 1))
                out[...] = arr[start:stop]
            except StoregateError:
                raise
            except Exception as err:
                raise _decode_error(arr, err) from None

        via_zarr.guard = guard  # type: ignore[attr-defined]  # for gathers (_zarr_gather)

        var.filler, var.rows_reader = via_zarr, None
        return
    from .chunkio import RawChunkFiles

    meta = arr.metadata
    tail = (0,) * (arr.ndim - 1)

    def chunk_path(c: int) -> str:
        return os.path.join(base, meta.encode_chunk_key((c, *tail)))

    reader = RawChunkFiles(chunk_path, int(arr.shape[0]), int(arr.chunks[0]),
                           tuple(arr.shape[1:]), np.dtype(arr.dtype), io_threads=io_threads,
                           name=f"var {arr.path!r}", directory=base, missing_ok=missing_ok)
    var.filler, var.rows_reader = reader.read_range, reader


# ---- parallel region writes (storegate.dask): what a worker process unpickles
class _ZarrRegionWriter:
    """Writes chunk-aligned rows of one zarr array from any process (the
    :class:`~storegate.backends.base.RegionWriter` of :meth:`ZarrBackend.region_writer`).

    It pickles as the store location, the array's path, shape and dtype, and a token naming
    this writer; each process opens the array once per token and keeps it (the last few).
    Uncompressed local chunks are written as whole files straight from the rows, each replaced
    atomically (as appends do); anything else goes through zarr.
    """

    _opened: ClassVar[dict[str, _Var]] = {}
    _opened_lock: ClassVar[threading.Lock] = threading.Lock()
    _KEEP: ClassVar[int] = 8

    def __init__(self, location: str, storage_options: dict[str, Any] | None, path: str,
                 shape: tuple[int, ...], dtype: np.dtype, chunk_rows: int, token: str) -> None:
        self.location = location
        self.storage_options = storage_options
        self.path = path
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.chunk_rows = int(chunk_rows)
        self.token = token

    def __repr__(self) -> str:
        return f"<zarr region writer {self.location!r}:{self.path!r}>"

    def _var(self) -> _Var:
        cache = type(self)._opened
        with self._opened_lock:
            v = cache.get(self.token)
        if v is not None:
            return v
        import zarr

        if "://" in self.location:
            from zarr.storage import FsspecStore

            store: Any = FsspecStore.from_url(self.location,
                                              storage_options=remote_options(
                                                  self.location, self.storage_options),
                                              read_only=False)
        else:
            store = _store_class()(self.location, read_only=False)  # no journal: no writer set
        try:
            arr = zarr.open_array(store=store, path=self.path, mode="r+")
        except Exception as err:
            raise StoregateError(
                f"a dask worker cannot open var {self.path!r} of zarr store {self.location!r} "
                f"({type(err).__name__}: {err}); every worker must reach the store at the same "
                "path or URL (a shared file system, or s3:// with storage_options)."
            ) from None
        if tuple(arr.shape) != self.shape or np.dtype(arr.dtype) != self.dtype:
            raise StoregateError(
                f"var {self.path!r} of zarr store {self.location!r} changed while dask workers "
                f"were writing it (shape {tuple(arr.shape)}, dtype {arr.dtype}; expected "
                f"{self.shape}, {self.dtype}); the write was abandoned."
            )
        v = _Var(np.dtype(arr.dtype), tuple(arr.shape[1:]), arr, int(arr.chunks[0]))
        _filler(v, 1)
        with self._opened_lock:
            cache[self.token] = v
            while len(cache) > self._KEEP:
                del cache[next(iter(cache))]
        return v

    def write(self, start: int, rows: np.ndarray) -> None:
        """Store ``rows`` as rows ``start:start + len(rows)`` (chunk-aligned, see the class)."""
        start = int(start)
        stop = start + int(rows.shape[0])
        n, cr = self.shape[0], self.chunk_rows
        if tuple(rows.shape[1:]) != self.shape[1:] or not 0 <= start <= stop <= n or (
                start % cr or (stop % cr and stop != n)):
            raise ShapeMismatchError(
                f"a region write of rows {start}:{stop} (row shape {tuple(rows.shape[1:])}) "
                f"does not fit var {self.path!r} of shape {self.shape} with chunks of {cr} "
                "rows: writes must cover whole chunks (start and stop multiples of the chunk "
                "rows, or stop at the last row)."
            )
        if stop == start:
            return
        v = self._var()
        rows = np.ascontiguousarray(rows, dtype=v.dtype)
        if v.rows_reader is not None and v.array.fill_value == 0:
            v.rows_reader.write_range(start, rows)
        else:
            v.array[start:stop] = rows


class ZarrBackend(Backend):
    """Vars stored as zarr arrays (zarr-python 3; format 3 by default, format 2 readable).

    Parameters
    ----------
    output_dir
        A local directory or an fsspec URL (``s3://bucket/store.zarr``, ``memory://x``).
        ``None`` makes a temporary directory that is removed when the backend is collected.
    chunk
        Rows per chunk (multiml's option). ``None`` (default) sizes chunks by ``chunk_bytes``.
    compressor
        ``'default'``/``None`` (no compression), ``'lz4'`` (blosc-lz4 + shuffle),
        ``'blosc-zstd'``, ``'zstd'``, ``'gzip'``, or a zarr / numcodecs codec instance. It
        applies to arrays this backend creates and never changes a process-wide default.
    mode
        ``'r'`` read-only, ``'r+'`` read/write (must exist), ``'a'`` read/write (created if
        missing; default), ``'w'`` wipe the whole store first, ``'w-'`` create (must not exist).
    chunk_bytes
        Target uncompressed chunk size when ``chunk`` is not given.
    cache_bytes
        Budget of the decoded arenas used for random gathers (default: a quarter of RAM;
        ``0`` disables them). A var larger than the budget is read without an arena: single
        rows straight from uncompressed chunk files, or through zarr for compressed ones.
    io_threads
        Reads in flight for a random gather that reads rows straight from the chunk files
        (a cold store, or a var larger than ``cache_bytes``); 16 by default.
    storage_options
        Passed to fsspec for URLs (credentials, endpoint_url, ...).
    zarr_format
        Format of a newly created store (3, or 2 for tools that only read format 2).

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> be = ZarrBackend(output_dir=tempfile.mkdtemp() + "/s.zarr", compressor="lz4")
    >>> be.create_data_id("d")
    >>> be.append("d", "train", "x", np.ones((5, 3), "f4"))
    >>> be.info("d", "train", "x").shape
    (5, 3)
    """

    name: ClassVar[str] = "zarr"
    persistent: ClassVar[bool] = True
    supports_ragged: ClassVar[bool] = True

    def __init__(
        self,
        output_dir: str | os.PathLike[str] | None = None,
        chunk: int | None = None,
        compressor: Any = "default",
        mode: str = "a",
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        cache_bytes: int | None = None,
        storage_options: dict[str, Any] | None = None,
        zarr_format: int = 3,
        io_threads: int = 16,
    ) -> None:
        if mode not in _MODES:
            raise StoregateError(
                f"unknown mode {mode!r} for the zarr backend; use one of {', '.join(_MODES)} "
                "('r' read-only, 'a' read/write creating the store if needed)."
            )
        if chunk is not None and (not isinstance(chunk, int | np.integer) or chunk < 1):
            raise StoregateError(f"chunk must be a positive number of rows, got {chunk!r}.")
        if zarr_format not in (2, 3):
            raise StoregateError(f"zarr_format must be 2 or 3, got {zarr_format!r}.")
        if not isinstance(io_threads, int | np.integer) or not 1 <= io_threads <= 64:
            raise StoregateError(f"io_threads must be an integer from 1 to 64, got "
                                 f"{io_threads!r}.")
        if cache_bytes is not None and (not isinstance(cache_bytes, int | np.integer)
                                        or cache_bytes < 0):
            raise StoregateError(f"cache_bytes must be a number of bytes >= 0 (0 disables the "
                                 f"arenas), got {cache_bytes!r}.")
        self._tmpdir: str | None = None
        if output_dir is None:
            self._tmpdir = tempfile.mkdtemp(prefix="storegate-")
            output_dir = os.path.join(self._tmpdir, "store.zarr")
            weakref.finalize(self, remove_own_tmpdir, self._tmpdir, os.getpid())
        location = os.fspath(output_dir)
        _codec(compressor, zarr_format)  # validate early
        self._settings = _Settings(
            location=location,
            storage_options=dict(storage_options) if storage_options else None,
            chunk=int(chunk) if chunk is not None else None,
            chunk_bytes=int(chunk_bytes),
            compressor=compressor,
            cache_bytes=default_cache_bytes() if cache_bytes is None else int(cache_bytes),
            zarr_format=zarr_format,
            io_threads=int(io_threads),
        )
        self._mode = mode
        self._init_process()
        self._open_root()  # fail early on a missing/foreign store
        # after the first open, 'w'/'w-' must never wipe or fail again (pickled copies, forks)
        self._mode = "r" if mode == "r" else "a"

    # ------------------------------------------------------------------ process state
    def _init_process(self) -> None:
        self._pid = os.getpid()
        self._root: Any = None
        self._files: _Files | None = None
        self._phases: dict[tuple[str, str], _Phase] = {}
        self._cache = ArenaCache(self._settings.cache_bytes)
        self._batch = threading.local()  # read_many: arenas whose background fill waits
        self._writer = Writer()
        writer, phases = self._writer, self._phases
        cache = self._cache
        self._tx = Transactions(lambda: writer.journal, lambda: _buffered(phases),
                                functools.partial(_discard, phases, cache))
        self._finalizer = weakref.finalize(
            self, _flush_all, self._phases, self._settings, self._pid, self._tx
        )
        self._finalizer.atexit = False  # exit is handled by lifecycle.flush_at_exit
        flush_at_exit(self, functools.partial(_flush_all, self._phases, self._settings,
                                              self._pid, self._tx))

    def _check_pid(self) -> None:
        if os.getpid() != self._pid:
            # A forked child: drop handles and (the parent's) buffered rows, keep nothing that
            # could write the parent's data twice. The decoded arenas hold committed rows only
            # (reads flush first), so they stay: shared copy-on-write with the parent, with
            # fresh locks, filling their missing chunks through this process's own handles.
            # DataLoader workers then start without re-reading what the parent has read.
            arenas = self._cache.items()
            self._finalizer.detach()
            self._init_process()
            for key, arena in arenas:
                arena.after_fork()
                arena.set_fill(functools.partial(self._refill, tuple(key)),  # type: ignore[arg-type]
                               functools.partial(self._reread, tuple(key)),  # type: ignore[arg-type]
                               functools.partial(self._recached, tuple(key)))  # type: ignore[arg-type]
                self._cache.put(key, arena)

    def _keyed(self, key: tuple[str, str, str]) -> _Var:
        """The var (or ragged part ``var/values``) of an arena key, with its readers set."""
        data_id, phase, name = key
        var, _, part = name.partition("/")
        v = self._part(data_id, phase, var, part) if part else self._var(data_id, phase, var)
        if v.filler is None:
            _filler(v, self._settings.io_threads)
        return v

    # the sources of an arena inherited from the parent process (see ``_check_pid``)
    def _refill(self, key: tuple[str, str, str], start: int, stop: int, out: np.ndarray) -> None:
        self._keyed(key).filler(start, stop, out)

    def _recached(self, key: tuple[str, str, str], rows: np.ndarray) -> bool:
        reader = self._keyed(key).rows_reader
        return reader is not None and bool(reader.cached(rows))

    def _reread(self, key: tuple[str, str, str], index: np.ndarray, out: np.ndarray) -> None:
        v = self._keyed(key)
        if v.rows_reader is not None:
            v.rows_reader.read_rows(index, out)
        else:
            out[...] = _zarr_gather(v.array, index, getattr(v.filler, "guard", None))

    def __getstate__(self) -> dict[str, Any]:
        if os.getpid() == self._pid:
            self.flush()
        return {"settings": self._settings, "mode": self._mode}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._settings = state["settings"]
        self._mode = state["mode"]
        self._tmpdir = None
        self._init_process()

    @property
    def readonly(self) -> bool:
        return self._mode == "r"

    @property
    def location(self) -> str:
        """The store's directory or URL."""
        return self._settings.location

    def describe(self) -> str:
        return f"zarr store {self._settings.location!r}"

    def _open_root(self) -> Any:
        self._check_pid()
        if self._root is not None:
            return self._root
        import zarr
        from zarr.errors import GroupNotFoundError

        s = self._settings
        loc = s.location
        is_url = "://" in loc
        if not is_url and os.path.isfile(loc):
            raise CorruptStoreError(
                f"{loc!r} is a file, not a zarr store directory; pass a directory path."
            )
        try:
            if is_url:
                store: Any = _remote_store_class().from_url(
                    loc, storage_options=remote_options(loc, s.storage_options),
                    read_only=self.readonly
                )
            else:
                if self.readonly and not os.path.isdir(loc):
                    raise StoreNotFoundError(
                        f"no zarr store at {loc!r} (mode='r' opens existing stores only); check "
                        "the path or open with mode='a' to create it."
                    )
                store = _store_class()(loc, read_only=self.readonly)
                if not self.readonly:
                    self._start_writer(store, loc)
                else:
                    recover_abandoned(loc, os.path.join(loc, _LOCK_FILE), self.describe())
            # 'w-' was checked above (the directory now holds the lock file, which zarr's own
            # check would count as existing data)
            kwargs: dict[str, Any] = {"mode": "w" if self._mode == "w-" and not is_url
                                      else self._mode}
            if self._mode in ("w", "w-") or not self._exists(store):
                kwargs["zarr_format"] = s.zarr_format
            if getattr(store, "writer", None) is not None and self._writer.journal is not None:
                with self._tx():  # creating or wiping the store is one unit too
                    root = zarr.open_group(store=store, **kwargs)
                    if _META not in root.attrs:
                        root.attrs[_META] = {"format": 1}
            else:
                root = zarr.open_group(store=store, **kwargs)
        except StoregateError:
            raise
        except (GroupNotFoundError, FileNotFoundError) as err:
            raise StoreNotFoundError(
                f"no zarr store at {loc!r} ({err}); check the path, or open with mode='a' to "
                "create one."
            ) from None
        except FileExistsError as err:
            raise StoregateError(
                f"a store already exists at {loc!r} and mode='w-' refuses to overwrite it "
                f"({err}); use mode='a' to open it or mode='w' to replace it."
            ) from None
        except (ValueError, TypeError, KeyError, json.JSONDecodeError) as err:
            raise CorruptStoreError(
                f"{loc!r} is not a readable zarr store ({type(err).__name__}: {err}); it may be "
                "damaged or written by another tool."
            ) from None
        except ImportError as err:
            raise StoregateError(
                f"opening {loc!r} needs a library that is not installed ({err}); for s3:// "
                "URLs: pip install 'storegate[s3]'."
            ) from None
        self._root = root
        self._files = _Files(root.store, s.location, s.storage_options)
        if is_url and not self.readonly and self._writer.lock is None:
            # an object store: a lease object instead of flock, taken at the first write
            self._writer.lock = ObjectLease(self._files.fs, self._files._p(_LOCK_FILE),
                                            self.describe())
            if _META not in root.attrs:
                root.attrs[_META] = {"format": 1}  # a new remote store (no journal)
        if self._writer.lock is not None and self._writer.lock.held and self._mode == "a":
            self._release_if_clean()
        return root

    # ------------------------------------------------------------------ one writer
    def _start_writer(self, store: Any, loc: str) -> None:
        """At a writable open of a local store: take the writer lock if it is free, roll back
        a journal a killed writer left, and keep the lock only when the open itself writes
        (a new store, ``mode='w'``/``'w-'``); otherwise it is taken again at the first write,
        so a process that opens with the default mode only to read never blocks a writer."""
        if self._mode in ("a", "w", "w-"):
            os.makedirs(loc, exist_ok=True)
        elif not os.path.isdir(loc):
            return  # 'r+' of a missing store: zarr raises the proper error
        lock = self._writer.lock or WriterLock(os.path.join(loc, _LOCK_FILE), self.describe())
        self._writer.lock = lock
        exists = any(os.path.exists(os.path.join(loc, m)) for m in ("zarr.json", ".zgroup"))
        if self._mode == "w-" and (exists or any(n not in _PRIVATE for n in os.listdir(loc))):
            raise StoregateError(
                f"a store (or other data) already exists at {loc!r} and mode='w-' refuses to "
                "overwrite it; use mode='a' to open it or mode='w' to replace it.")
        creating = self._mode in ("w", "w-") or not exists
        if creating:
            lock.acquire()
        elif not lock.try_acquire():
            store.writer = self._writer  # the journal is enabled when the lock is taken
            return
        self._enable_journal(store, loc)

    def _enable_journal(self, store: Any, loc: str) -> None:
        w = self._writer
        if w.journal is None:
            DirJournal.recover(loc)  # a writer killed before its commit: back to that commit
            w.journal = DirJournal(loc)
        store.writer = w

    def _release_if_clean(self) -> None:
        """Give the lock back after an open that wrote nothing (see :meth:`_start_writer`)."""
        w = self._writer
        if w.lock is None or (w.journal is not None and w.journal.active) or self._tx.depth:
            return
        w.lock.release()
        w.journal = None

    def _check_writable(self) -> None:
        """Refuse writes to a read-only store; take the writer lock (and enable the undo
        journal) at the first write, raising :class:`~storegate.errors.StoreLockedError` if
        another writer holds the store."""
        super()._check_writable()
        if self._root is None:
            self._open_root()
        w = self._writer
        remote = isinstance(w.lock, ObjectLease)
        if w.lock is None or (w.lock.held and (w.journal is not None or remote)):
            return
        w.lock.acquire()
        # another writer may have changed the store since this process read it
        if not _buffered(self._phases):
            _discard(self._phases, self._cache)
        if remote:
            # a lease outlives its process: give it back at exit (after the rows buffered by
            # this backend are written, whose exit flush was registered first)
            flush_at_exit(w.lock, w.lock.release)
            return  # no journal on an object store: each object write is atomic
        store = self._root.store
        self._enable_journal(store, str(store.root))

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """See :meth:`Backend.transaction`: local stores record changes in an undo journal
        (``<store>/.sg-journal``) committed at the end of the outermost block, or at the next
        :meth:`flush` while appended rows are buffered. Remote stores (fsspec URLs) have no
        journal: each object write is atomic, a group of them is not."""
        with self._tx():
            yield

    @classmethod
    def guess_can_open(cls, location: str,
                       storage_options: dict[str, Any] | None = None) -> bool:
        """A zarr group (format 3 ``zarr.json`` or multiml's format 2 ``.zgroup``) at
        ``location``, a local path or an fsspec URL (reached with ``storage_options``, or the
        environment's settings, e.g. the ``AWS_*`` variables)."""
        try:
            location = os.fspath(location)
            if "://" not in location:
                return os.path.isdir(location) and any(
                    os.path.isfile(os.path.join(location, m)) for m in ("zarr.json", ".zgroup"))
            from fsspec.core import url_to_fs

            fs, root = url_to_fs(location, **(storage_options or {}))
            fs.invalidate_cache()
            return any(fs.exists(f"{root.rstrip('/')}/{m}") for m in ("zarr.json", ".zgroup"))
        except Exception:
            return False

    @staticmethod
    def _exists(store: Any) -> bool:
        from zarr.core.sync import sync

        async def probe() -> bool:
            return bool(await store.exists("zarr.json") or await store.exists(".zgroup"))

        try:
            return bool(sync(probe()))
        except Exception:
            return False

    # ------------------------------------------------------------------ data_ids
    def data_ids(self) -> list[str]:
        root = self._open_root()
        return sorted(k for k in root.group_keys() if not k.startswith("."))

    def _data_group(self, data_id: str) -> Any:
        root = self._open_root()
        try:
            group = root[data_id]
        except KeyError:
            raise DataIdNotFoundError(
                f"data_id {data_id!r} does not exist in {self.describe()}; existing: "
                f"{self.data_ids()}."
            ) from None
        import zarr

        if not isinstance(group, zarr.Group):
            raise CorruptStoreError(f"{data_id!r} in {self.describe()} is an array, not a group.")
        return group

    def create_data_id(self, data_id: str) -> None:
        root = self._open_root()
        if data_id in root:
            return
        if self.readonly:
            raise DataIdNotFoundError(
                f"data_id {data_id!r} does not exist in {self.describe()}, which is open "
                f"read-only; existing data_ids: {self.data_ids()}."
            )
        self._check_writable()
        with self._tx():
            group = root.require_group(data_id)
            for phase in PHASES:
                group.require_group(phase).attrs[_META] = {"var_order": []}

    def delete_data_id(self, data_id: str) -> None:
        self._check_writable()
        self._data_group(data_id)
        for key in [k for k in self._phases if k[0] == data_id]:
            for v in self._phases.pop(key).vars.values():
                _drop_io(v)
        self._cache.drop_prefix((data_id,))
        del self._open_root()[data_id]

    def get_attrs(self, data_id: str) -> dict[str, Any]:
        attrs = self._data_group(data_id).attrs.asdict()
        return json.loads(json.dumps(attrs))

    def set_attrs(self, data_id: str, attrs: dict[str, Any]) -> None:
        self._check_writable()
        self._data_group(data_id).attrs.put(json.loads(json.dumps(attrs)))

    # ------------------------------------------------------------------ phases and vars
    def _phase(self, data_id: str, phase: str, create: bool = False) -> _Phase:
        self._check_pid()
        key = (data_id, phase)
        ph = self._phases.get(key)
        if ph is not None:
            return ph
        phase = check_phase(phase, allow_all=False)
        group = self._data_group(data_id)
        try:
            pgroup = group[phase]
        except KeyError:
            if not create:
                return _Phase(None, [])
            self._check_writable()
            pgroup = group.require_group(phase)
            pgroup.attrs[_META] = {"var_order": []}
        lock = self._writer.lock
        holding = not self.readonly and (lock is None or lock.held)
        if holding:
            with self._tx():
                self._recover(data_id, phase)
        meta = pgroup.attrs.get(_META) or {}
        order = meta.get("var_order") if isinstance(meta, dict) else None
        if not isinstance(order, list):  # a store storegate did not write (multiml)
            try:
                order = sorted(k for k in pgroup.array_keys() if not k.startswith("."))
            except Exception:  # an array whose metadata zarr refuses: list it by its files,
                rel = f"{data_id}/{phase}"  # and reading it names the problem (_var)
                fs = self._files
                order = [] if fs is None else [
                    c for c in fs.children(rel) if not c.startswith(".")
                    and any(fs.exists(f"{rel}/{c}/{m}") for m in (".zarray", "zarr.json"))]
        ph = _Phase(pgroup, [str(v) for v in order])
        ragged = meta.get("ragged") if isinstance(meta, dict) else None
        ph.ragged = {str(v) for v in ragged} if isinstance(ragged, list) else set()
        files = self._files
        if not holding and files is not None and files.supported:
            # cannot recover (read-only, or another process may be writing): read what the
            # recovery would restore
            rel = f"{data_id}/{phase}"
            try:
                back = self._interrupted(rel, files.children(rel)) or []
            except Exception:  # a file system that cannot list (http): best effort
                back = []
            ph.redirect = {v: _OLD_PREFIX + v for v in back}
        self._phases[key] = ph
        return ph

    def _interrupted(self, rel: str, children: list[str]) -> list[str] | None:
        """The vars an interrupted :meth:`rename_many` had moved aside (``.sg-old-<var>``, in
        ``children`` of phase directory ``rel``) if it stopped before every new var was in
        place (so the old ones are the content), else ``None``."""
        assert self._files is not None
        olds = [c[len(_OLD_PREFIX):] for c in children if c.startswith(_OLD_PREFIX)]
        if all(self._files.exists(f"{rel}/{name}") for name in olds):
            return None
        return olds

    def _recover(self, data_id: str, phase: str) -> None:
        """Finish or undo a rename that a crash interrupted; remove orphaned temporaries.

        A group of swaps (:meth:`rename_many`) moves every old var aside before moving any new
        one in. If some moved-aside var has no replacement in place, the group stopped half way
        and every old var is put back (a new one already in place is moved out first, so a crash
        during the recovery itself is recovered the same way); otherwise every swap completed
        and the old copies are removed.
        """
        files = self._files
        if files is None or not files.supported:
            return
        rel = f"{data_id}/{phase}"
        children = files.children(rel)
        if any(c.startswith(_OLD_PREFIX) for c in children):
            back = self._interrupted(rel, children)
            for child in children:
                if not child.startswith(_OLD_PREFIX):
                    continue
                name = child[len(_OLD_PREFIX):]
                if back is None:
                    files.remove(f"{rel}/{child}")  # the swap completed; drop the old copy
                    continue
                if files.exists(f"{rel}/{name}"):
                    files.remove(f"{rel}/{TEMP_PREFIX}{name}")
                    files.move(f"{rel}/{name}", f"{rel}/{TEMP_PREFIX}{name}")
                files.move(f"{rel}/{child}", f"{rel}/{name}")  # undo: old data back
                logger.warning("storegate: restored var %r in %s after an interrupted "
                               "rewrite", name, rel)
            children = files.children(rel)
        for child in children:
            if child.startswith(TEMP_PREFIX):
                files.remove(f"{rel}/{child}")

    def _var(self, data_id: str, phase: str, var: str) -> _Var:
        ph = self._phase(data_id, phase)
        v = ph.vars.get(var)
        if v is not None:
            return v
        if var not in ph.order and not (var.startswith(".") and ph.group is not None
                                        and var in ph.group):
            raise VarNotFoundError(
                f"var {var!r} does not exist in data_id {data_id!r}, phase {phase!r} of "
                f"{self.describe()}; vars there: {ph.order}."
            )
        problem: str | None
        try:
            _check_metadata_files(ph.group, ph.redirect.get(var, var))
            arr = ph.group[ph.redirect.get(var, var)]
        except KeyError:
            raise CorruptStoreError(
                f"var {var!r} is listed in {data_id}/{phase} of {self.describe()} but its array "
                "is missing; the store was modified outside storegate. Delete the var or "
                "restore its files."
            ) from None
        except Exception as err:  # metadata zarr refuses (bad shape, codec, dtype, chunks)
            arr, problem = None, f"its metadata cannot be read ({type(err).__name__}: {err})"
        else:
            problem = _array_problem(arr)
        if problem is not None:
            raise CorruptStoreError(
                f"var {var!r} in {data_id}/{phase} of {self.describe()} cannot be read: "
                f"{problem}. The store was modified outside storegate or written by another "
                "tool; run `storegate check` on it, and restore or delete the var."
            )
        v = _Var(np.dtype(arr.dtype), tuple(arr.shape[1:]), arr, int(arr.chunks[0]))
        ph.vars[var] = v
        return v

    def var_names(self, data_id: str, phase: str) -> list[str]:
        return list(self._phase(data_id, phase).order)

    def has_var(self, data_id: str, phase: str, var: str) -> bool:
        ph = self._phase(data_id, phase)
        return var in ph.order or var in ph.vars

    def info(self, data_id: str, phase: str, var: str) -> VarInfo:
        if self._is_ragged(data_id, phase, var):
            return self._ragged_info(data_id, phase, var)
        v = self._var(data_id, phase, var)
        chunks = tuple(v.array.chunks) if v.array is not None else None
        codec = (_describe_codecs(v.array) if v.array is not None
                 else _codec(self._settings.compressor, 3)[1])
        return VarInfo(var, (v.length, *v.row_shape), v.dtype, chunks=chunks, codec=codec)

    def lengths(self, data_id: str, phase: str) -> dict[str, int]:
        """Rows of every var of a phase. On a local store the lengths of vars not yet opened in
        this process come from their metadata files directly (1,000 vars in about 15 ms, where
        opening each array through zarr takes about 0.6 ms)."""
        ph = self._phase(data_id, phase)
        files = self._files
        local = files is not None and files.fs is None and files.root is not None
        out: dict[str, int] = {}
        for name in ph.order:
            n = None
            v = ph.vars.get(name)
            if v is not None:
                n = v.length
            elif local and name not in ph.ragged and ph.group is not None:
                n = self._stored_length(f"{data_id}/{phase}/{ph.redirect.get(name, name)}",
                                        int(ph.group.metadata.zarr_format))
            out[name] = self.info(data_id, phase, name).length if n is None else n
        return out

    def _stored_length(self, rel: str, zarr_format: int) -> int | None:
        """Rows recorded in an array's metadata file, or ``None`` to ask zarr."""
        assert self._files is not None
        meta = "zarr.json" if zarr_format == 3 else ".zarray"
        try:
            path = self._files._p(f"{rel}/{meta}")
            if not os.path.isfile(path):  # a FIFO or device behind a link would never end
                return None
            with open(path, "rb") as f:
                doc = json.loads(f.read(1 << 24))
            shape = doc["shape"]
            if zarr_format == 3:
                if doc.get("node_type") != "array":
                    return None
                chunks = doc["chunk_grid"]["configuration"]["chunk_shape"]
            else:
                chunks = doc["chunks"]
            # anything unusual is left to zarr and _array_problem, which name the problem
            if not (isinstance(shape, list) and isinstance(chunks, list) and shape
                    and len(chunks) == len(shape)
                    and all(type(s) is int and s >= 0 for s in shape)
                    and all(type(c) is int and c >= 1 for c in chunks)
                    and int(np.prod([max(1, s) for s in shape], dtype=object))
                    <= _MAX_CLAIMED_BYTES):
                return None
            return int(shape[0])
        except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
            return None  # missing or damaged: zarr raises the proper error

    # ------------------------------------------------------------------ reads
    def _ready(self, data_id: str, phase: str, var: str) -> _Var:
        v = self._var(data_id, phase, var)
        if v.pending:
            _flush_var(self._phases[(data_id, phase)], var, v, self._settings)
            self._cache.drop((data_id, phase, var))
        return v

    def _arena(self, key: tuple[str, str, str], v: _Var) -> Arena | None:
        arena = self._cache.get(key)
        if arena is not None:
            return arena
        nbytes = v.length * v.row_bytes
        if not self._cache.admits(nbytes):
            return None
        if v.filler is None:
            _filler(v, self._settings.io_threads)
        reader = v.rows_reader
        try:
            remote = self._files is not None and self._files.fs is not None
            arena = Arena((v.length, *v.row_shape), v.dtype, v.chunk_rows, v.filler,
                          reader.read_rows if reader is not None else None,
                          reader.cached if reader is not None else None,
                          parallel=self._settings.io_threads if remote else 1)
        except (MemoryError, ValueError):  # no room for it: read without an arena
            return None
        self._cache.put(key, arena)
        return arena

    def read(self, data_id: str, phase: str, var: str, index: Index) -> np.ndarray:
        """Gathers go through the var's decoded arena (filled on first touch); rows and slices
        are copied from the arena when it already holds them, else read straight from the chunks
        without filling it, so streaming a local var (a scan, a transform) keeps memory flat.
        Slices of a remote var (an fsspec URL) fill the arena too, reading ahead during a
        scan (a request per chunk, several in flight); the arena stays within ``cache_bytes``
        (``cache_bytes=0``: no arena, no read-ahead, flat memory)."""
        if self._is_ragged(data_id, phase, var):
            return self._ragged_read(data_id, phase, var, index)
        return self._read_rows((data_id, phase, var), self._ready(data_id, phase, var), index)

    def _read_rows(self, key: tuple[str, str, str], v: _Var, index: Index) -> np.ndarray:
        if v.array is None:  # an empty var that was never flushed
            return np.empty((0, *v.row_shape), dtype=v.dtype)[index]
        if isinstance(index, np.ndarray):
            if index.size == 0:
                return np.empty((0, *v.row_shape), dtype=v.dtype)
            arena = self._arena(key, v)
            if arena is not None:
                return arena.take(index, getattr(self._batch, "defer", None))
            if v.filler is None:
                _filler(v, self._settings.io_threads)
            if v.rows_reader is not None:  # larger than the arena budget: rows, not chunks
                out = _alloc_rows(v, index.size, key)
                v.rows_reader.read_rows(index, out)
                return out
            return _zarr_gather(v.array, index, getattr(v.filler, "guard", None))
        if isinstance(index, int):
            start, stop, step = index, index + 1, 1
        else:
            start, stop, step = index.start, index.stop, index.step
        if stop <= start:
            return np.empty((0, *v.row_shape), dtype=v.dtype)
        arena = self._cache.get(key)
        if arena is None and self._files is not None and self._files.fs is not None:
            # a remote var: ranges go through the decoded cache too, which reads ahead
            # during a scan (several chunk requests in flight instead of one at a time)
            arena = self._arena(key, v)
            if arena is not None:
                arena.ensure_range(start, stop)
        elif arena is not None and arena.parallel > 1:
            arena.ensure_range(start, stop)
        if arena is not None and arena.covers(start, stop):
            out = arena.buf[index]
            return np.array(out, copy=True)
        out = _alloc_rows(v, stop - start, key)
        if v.filler is None:
            _filler(v, self._settings.io_threads)
        v.filler(start, stop, out)
        if isinstance(index, int):
            return out.reshape(v.row_shape)  # a 0-d array for a scalar var, never a scalar
        return out if step == 1 else out[::step].copy()

    # ------------------------------------------------------------------ writes
    def append(self, data_id: str, phase: str, var: str, data: Any) -> None:
        self._check_writable()
        ph = self._phase(data_id, phase, create=True)
        if isinstance(data, RaggedArray) or var in ph.ragged:
            self._ragged_append(ph, data_id, phase, var, data)
            return
        v = ph.vars.get(var)
        if v is None and var in ph.order:
            v = self._var(data_id, phase, var)
        if v is None:
            if data.dtype.kind not in "biufc":
                raise ShapeMismatchError(f"cannot store dtype {data.dtype} in var {var!r}.")
            _check_dtype(data.dtype, var)
            v = _Var(np.dtype(data.dtype), tuple(data.shape[1:]))
            ph.vars[var] = v
            if var not in ph.order and not var.startswith("."):  # dotted: storegate's temporaries
                ph.order.append(var)
        else:
            check_row_shape(data, v.row_shape, var)
            data = cast_for_write(data, v.dtype, var)
        self._cache.drop((data_id, phase, var))
        self._push(ph, var, v, data)

    def _push(self, ph: _Phase, name: str, v: _Var, data: np.ndarray) -> None:
        """Buffer ``data``; write every whole chunk that the buffer now completes."""
        s = self._settings
        n = data.shape[0]
        if n == 0:
            return
        if v.array is None:
            target = _target_rows(v, s)
            if v.pending_rows + n < target:
                v.pending.append(np.array(data, copy=True))
                v.pending_rows += n
                return
            _create_array(ph, name, v, s, target)
            created = True
        else:
            created = False
        rows = v.chunk_rows
        total = v.committed + v.pending_rows + n
        boundary = (total // rows) * rows
        if boundary > v.committed:
            need = boundary - v.committed - v.pending_rows  # rows taken from data
            parts = [*v.pending, data[:need]]
            block = parts[0] if len(parts) == 1 else np.concatenate(parts)
            _write_rows(v, block, self._settings.io_threads)
            rest = data[need:]
            v.pending = [np.array(rest, copy=True)] if rest.shape[0] else []
            v.pending_rows = int(rest.shape[0])
        else:
            v.pending.append(np.array(data, copy=True))
            v.pending_rows += n
        if created:
            _commit_order(ph)

    def flush(self) -> None:
        """Write buffered rows and commit (outside a :meth:`transaction` block; inside one,
        the block's end commits)."""
        if os.getpid() != self._pid or self._root is None:
            return
        for (data_id, phase), ph in list(self._phases.items()):
            for name, v in list(ph.vars.items()):
                if v.pending:
                    _flush_var(ph, name, v, self._settings)
                    self._cache.drop((data_id, phase, name))
        self._tx.commit()

    def write(self, data_id: str, phase: str, var: str, index: Index, data: Any) -> None:
        self._check_writable()
        if self._is_ragged(data_id, phase, var) or isinstance(data, RaggedArray):
            self._ragged_write(data_id, phase, var, index, data)
            return
        v = self._ready(data_id, phase, var)
        if v.array is None:
            if isinstance(index, np.ndarray) and index.size == 0:
                return
            raise ShapeMismatchError(f"var {var!r} has no rows to write into.")
        data = np.asarray(data, dtype=v.dtype)
        if isinstance(index, np.ndarray):
            if index.size == 0:
                return
            # numpy semantics: with repeated rows the last value wins
            order = np.argsort(index, kind="stable")
            sorted_idx = index[order]
            last = np.ones(sorted_idx.size, dtype=bool)
            last[:-1] = sorted_idx[1:] != sorted_idx[:-1]
            v.array.oindex[sorted_idx[last]] = data[order[last]]
        else:
            v.array[index] = data
        _drop_io(v)
        arena = self._cache.get((data_id, phase, var))
        if arena is not None:
            arena.update(index, data)

    def create(
        self, data_id: str, phase: str, var: str, shape: tuple[int, ...], dtype: np.dtype
    ) -> None:
        self._check_writable()
        ph = self._phase(data_id, phase, create=True)
        if var in ph.order:
            raise VarExistsError(f"var {var!r} already exists in {data_id}/{phase}.")
        _check_dtype(np.dtype(dtype), var)
        v = _Var(np.dtype(dtype), tuple(shape[1:]))
        rows = _target_rows(v, self._settings)
        if not self._settings.chunk:
            rows = min(rows, _next_pow2(max(1, shape[0])))
        _create_array(ph, var, v, self._settings, rows)
        v.array.resize(tuple(shape))
        # rows are not written until update_data: their chunks may be missing (they read as
        # zeros, the documented content), which `storegate check` must not call damage
        v.array.attrs[_META] = {"sparse": True}
        ph.vars[var] = v
        if not var.startswith("."):
            ph.order.append(var)
        _commit_order(ph)

    def delete(self, data_id: str, phase: str, var: str) -> None:
        self._check_writable()
        ph = self._phase(data_id, phase)
        if var in ph.ragged:
            on_disk = _committed(ph, var) or f"{var}/values" in ph.vars
        else:
            on_disk = self._var(data_id, phase, var).array is not None
        if var in ph.order:
            ph.order.remove(var)
        ph.ragged.discard(var)
        self._forget(data_id, phase, [var])
        if ph.group is not None:
            _commit_order(ph)  # the var is gone for readers from here on
            if on_disk and var in ph.group:
                del ph.group[var]

    def rename(self, data_id: str, phase: str, src: str, dst: str) -> None:
        self.rename_many(data_id, phase, [(src, dst)])

    def rename_many(self, data_id: str, phase: str, pairs: Sequence[tuple[str, str]]) -> None:
        """Swap vars in as one unit: every replaced var is first moved aside to
        ``.sg-old-<dst>``, then every new one is moved in, the var order is committed and the old
        copies are removed. A crash (or an error) before the last new var is in place rolls all
        of them back; after that, all are kept (see :meth:`_recover`)."""
        self._check_writable()
        ph = self._phase(data_id, phase)
        for src, _ in pairs:
            self._flush_name(data_id, phase, src)
        pairs = [(src, dst) for src, dst in pairs if src != dst]
        if not pairs:
            return
        files = self._files
        if files is None or not files.supported:
            raise StoregateError(
                f"renaming vars is not supported on {self.describe()} (no directory access)."
            )
        rel = f"{data_id}/{phase}"
        replaced = [dst for _, dst in pairs
                    if dst in ph.order or dst in ph.vars or dst in ph.ragged]
        for dst in replaced:
            self._flush_name(data_id, phase, dst)
        try:
            for dst in replaced:
                if files.exists(f"{rel}/{dst}"):
                    files.move(f"{rel}/{dst}", f"{rel}/{_OLD_PREFIX}{dst}")
            for src, dst in pairs:
                files.move(f"{rel}/{src}", f"{rel}/{dst}")
        except BaseException:
            self._forget(data_id, phase, [n for pair in pairs for n in pair])
            self._recover(data_id, phase)  # put the old vars back
            raise
        # from here the new data are in place; the order below makes it official
        moved_ragged = {dst for src, dst in pairs if src in ph.ragged}
        for src, dst in pairs:
            ph.ragged.discard(src)
            ph.ragged.discard(dst)
        ph.ragged |= moved_ragged
        for src, dst in pairs:
            if dst not in replaced:
                if src in ph.order:
                    ph.order[ph.order.index(src)] = dst
                else:
                    ph.order.append(dst)
            elif src in ph.order:
                ph.order.remove(src)
        self._forget(data_id, phase, [n for pair in pairs for n in pair])
        _commit_order(ph)
        for dst in replaced:
            files.remove(f"{rel}/{_OLD_PREFIX}{dst}")

    # ------------------------------------------------------------------ ragged vars
    def _is_ragged(self, data_id: str, phase: str, var: str) -> bool:
        return var in self._phase(data_id, phase).ragged

    def _flush_name(self, data_id: str, phase: str, var: str) -> None:
        if self._is_ragged(data_id, phase, var):
            self._offsets(data_id, phase, var)
        else:
            self._ready(data_id, phase, var)

    def _part(self, data_id: str, phase: str, var: str, part: str) -> _Var:
        """The ``values`` or ``offsets`` array of a ragged var."""
        ph = self._phase(data_id, phase)
        key = f"{var}/{part}"
        v = ph.vars.get(key)
        if v is None:
            problem: str | None
            try:
                _check_metadata_files(ph.group, f"{ph.redirect.get(var, var)}/{part}")
                arr = ph.group[f"{ph.redirect.get(var, var)}/{part}"]
            except KeyError:
                raise CorruptStoreError(
                    f"ragged var {var!r} in {data_id}/{phase} of {self.describe()} has no "
                    f"{part!r} array; the store was modified outside storegate."
                ) from None
            except Exception as err:  # metadata zarr refuses (bad shape, codec, dtype, chunks)
                arr, problem = None, f"its metadata cannot be read ({type(err).__name__}: {err})"
            else:
                problem = _array_problem(arr)
                if problem is None and part == "offsets" and (
                        arr.ndim != 1 or np.dtype(arr.dtype).kind not in "iu"):
                    problem = (f"offsets must be a 1-d integer array, not {arr.dtype} of shape "
                               f"{tuple(arr.shape)}")
            if problem is not None:
                raise CorruptStoreError(
                    f"the {part!r} array of ragged var {var!r} in {data_id}/{phase} of "
                    f"{self.describe()} cannot be read: {problem}. The store was modified "
                    "outside storegate; run `storegate check` on it, and restore or delete the "
                    "var."
                )
            v = _Var(np.dtype(arr.dtype), tuple(arr.shape[1:]), arr, int(arr.chunks[0]))
            ph.vars[key] = v
        return v

    def _ready_part(self, data_id: str, phase: str, var: str, part: str) -> _Var:
        v = self._part(data_id, phase, var, part)
        if v.pending:
            _flush_var(self._phases[(data_id, phase)], f"{var}/{part}", v, self._settings)
            self._cache.drop((data_id, phase, f"{var}/{part}"))
        return v

    def _offsets(self, data_id: str, phase: str, var: str) -> np.ndarray:
        """A ragged var's offsets (n + 1 entries), read once and kept in memory; writes the
        var's buffered rows first (values before offsets: data first)."""
        self._ready_part(data_id, phase, var, "values")
        off = self._ready_part(data_id, phase, var, "offsets")
        if off.whole is None or off.whole.shape[0] != off.length:
            whole = self._read_rows((data_id, phase, f"{var}/offsets"), off,
                                    slice(0, off.length, 1))
            values = self._part(data_id, phase, var, "values")
            if whole.shape[0] == 0 or whole[0] != 0 or whole[-1] > values.length or (
                    np.diff(whole) < 0).any():
                raise CorruptStoreError(
                    f"the offsets of ragged var {var!r} in {data_id}/{phase} of "
                    f"{self.describe()} are damaged (they must start at 0, never decrease and "
                    f"end within the {values.length} values)."
                )
            off.whole = whole
        return off.whole

    def _ragged_info(self, data_id: str, phase: str, var: str) -> VarInfo:
        values = self._part(data_id, phase, var, "values")
        off = self._part(data_id, phase, var, "offsets")
        chunks = tuple(values.array.chunks) if values.array is not None else None
        codec = _describe_codecs(values.array) if values.array is not None else "pending"
        n_values = int(self._offsets(data_id, phase, var)[-1])
        return VarInfo(var, (off.length - 1, *values.row_shape), values.dtype, ragged=True,
                       chunks=chunks, codec=codec, extra={"n_values": n_values})

    def _ragged_read(self, data_id: str, phase: str, var: str, index: Index) -> Any:
        offsets = self._offsets(data_id, phase, var)
        values = self._part(data_id, phase, var, "values")
        vkey = (data_id, phase, f"{var}/values")
        if isinstance(index, int):
            return self._read_rows(vkey, values, slice(int(offsets[index]),
                                                       int(offsets[index + 1]), 1))
        if isinstance(index, slice) and index.step == 1:
            a, b = int(offsets[index.start]), int(offsets[max(index.start, index.stop)])
            return RaggedArray(self._read_rows(vkey, values, slice(a, b, 1)),
                               offsets[index.start : max(index.start, index.stop) + 1] - a,
                               validate=False)
        rows = index if isinstance(index, np.ndarray) else np.arange(
            index.start, index.stop, index.step, dtype=np.int64)
        starts = offsets[rows]
        lengths = offsets[rows + 1] - starts
        new = np.zeros(rows.shape[0] + 1, dtype=np.int64)
        np.cumsum(lengths, out=new[1:])
        positions = np.repeat(starts - new[:-1], lengths) + np.arange(int(new[-1]),
                                                                       dtype=np.int64)
        return RaggedArray(self._read_rows(vkey, values, positions), new, validate=False)

    def _ragged_append(self, ph: _Phase, data_id: str, phase: str, var: str, data: Any) -> None:
        exists = var in ph.order or var in ph.ragged
        if exists and var not in ph.ragged:
            raise ShapeMismatchError(
                f"var {var!r} has rows of one fixed shape; ragged rows cannot be written into "
                "it. Use a new var for ragged data."
            )
        if not isinstance(data, RaggedArray):
            raise ShapeMismatchError(
                f"var {var!r} is ragged; write ragged rows (a list of arrays, an awkward array "
                "or a RaggedArray), not a regular array."
            )
        if exists:
            values = self._part(data_id, phase, var, "values")
            off = self._part(data_id, phase, var, "offsets")
            check_row_shape(data.values, values.row_shape, var)
            data = RaggedArray(cast_for_write(data.values, values.dtype, var), data.offsets,
                               validate=False)
        else:
            _check_dtype(np.dtype(data.dtype), var)
            values = _Var(np.dtype(data.dtype), data.row_shape)
            off = _Var(np.dtype(np.int64), ())
            ph.vars[f"{var}/values"] = values  # values first: flushed before the offsets
            ph.vars[f"{var}/offsets"] = off
            ph.ragged.add(var)
            if var not in ph.order and not var.startswith("."):
                ph.order.append(var)
            off.pending, off.pending_rows = [np.zeros(1, dtype=np.int64)], 1
        base = values.length
        self._push(ph, f"{var}/values", values, data.values)
        new_offsets = data.offsets[1:] + base
        rows = off.chunk_rows or _target_rows(off, self._settings)
        total = off.committed + off.pending_rows + new_offsets.shape[0]
        if (off.array is None and total - off.committed >= rows) or (
                off.array is not None and (total // rows) * rows > off.committed):
            # the offsets are about to reach the disk: their values must be there first
            _flush_var(ph, f"{var}/values", values, self._settings)
        self._push(ph, f"{var}/offsets", off, new_offsets)
        off.whole = None
        for part in ("values", "offsets"):
            self._cache.drop((data_id, phase, f"{var}/{part}"))

    def _ragged_write(self, data_id: str, phase: str, var: str, index: Index, data: Any) -> None:
        ph = self._phase(data_id, phase)
        if var not in ph.ragged or not isinstance(data, RaggedArray):
            self._ragged_append(ph, data_id, phase, var, data)  # raises the kind mismatch
            return
        offsets = self._offsets(data_id, phase, var)
        values = self._part(data_id, phase, var, "values")
        check_row_shape(data.values, values.row_shape, var)
        data = RaggedArray(cast_for_write(data.values, values.dtype, var), data.offsets,
                           validate=False)
        if isinstance(index, int):
            rows = np.array([index], dtype=np.int64)
        elif isinstance(index, slice):
            rows = np.arange(index.start, index.stop, index.step, dtype=np.int64)
        else:
            rows = index
        if rows.shape[0] != len(data):
            raise ShapeMismatchError(
                f"the index selects {rows.shape[0]} rows of {var!r} but {len(data)} ragged rows "
                "were given."
            )
        if rows.size == 0:
            return
        same = np.array_equal(offsets[rows + 1] - offsets[rows], data.lengths())
        if same and np.unique(rows).shape[0] == rows.shape[0]:
            # same lengths: overwrite the values in place
            starts = offsets[rows]
            positions = np.repeat(starts - data.offsets[:-1], data.lengths()) + np.arange(
                data.values.shape[0], dtype=np.int64)
            self.write(data_id, phase, f"{var}/values", positions, data.values)
            return
        # other lengths: the values move, so the var is rewritten and swapped in
        new = self._ragged_read(data_id, phase, var, slice(0, len(offsets) - 1, 1))
        new = new.replace_rows(rows, data)
        tmp = TEMP_PREFIX + var
        if tmp in ph.ragged or tmp in ph.vars:
            self.delete(data_id, phase, tmp)
        self._ragged_append(ph, data_id, phase, tmp, new)
        self.rename_many(data_id, phase, [(tmp, var)])

    def _forget(self, data_id: str, phase: str, names: Sequence[str]) -> None:
        """Drop this process's handles and arenas of vars whose directories moved."""
        ph = self._phases.get((data_id, phase))
        for name in names:
            for key in (name, f"{name}/values", f"{name}/offsets"):
                if ph is not None:
                    v = ph.vars.pop(key, None)
                    if v is not None:
                        _drop_io(v)
                self._cache.drop((data_id, phase, key))

    def close(self) -> None:
        self.flush()
        self._cache.clear()
        for ph in self._phases.values():
            for v in ph.vars.values():
                _drop_io(v)
        self._phases.clear()
        self._root = None
        if os.getpid() == self._pid and not self._tx.depth:
            w = self._writer
            if w.lock is not None:
                w.lock.release()
            w.journal = None

    def chunk_layout(self, data_id: str, phase: str, var: str) -> dict[str, Any]:
        """Chunk rows and codec of a var (for ``storegate info`` and samplers)."""
        v = self._var(data_id, phase, var)
        return {
            "chunk_rows": v.chunk_rows or _target_rows(v, self._settings),
            "codec": _describe_codecs(v.array) if v.array is not None else "pending",
        }

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Arena fills started by the gathers of this block start when it ends (a fill
        competes with the batch's own reads for the disk)."""
        if getattr(self._batch, "defer", None) is not None:  # nested: the outer block starts
            yield
            return
        deferred: list[Arena] = []
        self._batch.defer = deferred
        try:
            yield
        finally:
            self._batch.defer = None
            for arena in deferred:
                arena.start_background()


    # ---- parallel region writes (storegate.dask)
    def region_writer(self, data_id: str, phase: str, var: str) -> _ZarrRegionWriter | None:
        """A picklable writer of chunk-aligned rows of a regular var, for dask workers (see
        :meth:`Backend.region_writer`); ``None`` for a ``memory://`` store (other processes
        cannot see it), a ragged var, or an array chunked along other axes too.

        Workers write the var's chunk files without the writer lock and the undo journal: the
        process that asks for the writer holds the lock (it takes it here) and is expected to
        write a temporary var (a ``.sg-tmp-`` name, removed at the next writable open if the
        process dies) and rename it into place afterwards, as :func:`storegate.dask.from_dask`
        does.

        Examples
        --------
        >>> import tempfile
        >>> be = ZarrBackend(output_dir=tempfile.mkdtemp() + "/s.zarr", chunk=2)
        >>> be.create_data_id("d"); be.create("d", "train", "x", (5, 3), np.dtype("f4"))
        >>> w = be.region_writer("d", "train", "x")
        >>> w.chunk_rows
        2
        >>> for start in (4, 0, 2):  # any order, any process; each call whole chunks
        ...     w.write(start, np.full((min(2, 5 - start), 3), start, "f4"))
        >>> be.end_region_writes("d", "train", "x")
        >>> be.read("d", "train", "x", slice(0, 5, 1))[:, 0].tolist()
        [0.0, 0.0, 2.0, 2.0, 4.0]
        """
        import uuid

        self._check_writable()
        s = self._settings
        if s.location.startswith("memory://") or self._is_ragged(data_id, phase, var):
            return None
        v = self._ready(data_id, phase, var)
        arr = v.array
        if arr is None or any(int(c) < int(n) for c, n in zip(arr.chunks[1:], arr.shape[1:],
                                                              strict=True)):
            return None
        return _ZarrRegionWriter(s.location, s.storage_options, str(arr.path), tuple(arr.shape),
                                 np.dtype(arr.dtype), int(arr.chunks[0]), uuid.uuid4().hex)

    def end_region_writes(self, data_id: str, phase: str, var: str) -> None:
        """Forget this process's handles of a var written by a :meth:`region_writer` (its chunk
        files were replaced by other processes) and drop its ``sparse`` mark: every chunk is
        written now, so ``storegate check`` reports a missing one again."""
        self._check_writable()
        self._forget(data_id, phase, [var])
        arr = self._var(data_id, phase, var).array
        own = arr.attrs.get(_META)
        if isinstance(own, dict) and own.get("sparse"):
            arr.attrs[_META] = {k: x for k, x in own.items() if k != "sparse"}
        self._forget(data_id, phase, [var])

    # ------------------------------------------------------------------ health check, sizes
    def _disk_name(self, data_id: str, phase: str, var: str) -> tuple[_Phase, str]:
        """The phase and the name of the directory that holds a var's data (the moved-aside
        copy a read-only open reads after an interrupted rewrite)."""
        ph = self._phase(data_id, phase)
        if not self.has_var(data_id, phase, var):
            raise VarNotFoundError(
                f"var {var!r} does not exist in data_id {data_id!r}, phase {phase!r} of "
                f"{self.describe()}; vars there: {ph.order}."
            )
        return ph, ph.redirect.get(var, var)

    def _listing(self, rel: str) -> dict[str, int | None] | None:
        """The files below directory ``rel`` of the store, as ``key -> size`` (keys relative to
        ``rel`` with ``/`` separators), or ``None`` when the storage cannot be listed."""
        files = self._files
        if files is None or not files.supported:
            return None
        base = files._p(rel)
        out: dict[str, int | None] = {}
        try:
            if files.fs is None:
                for dirpath, _, names in os.walk(base):
                    sub = os.path.relpath(dirpath, base).replace(os.sep, "/")
                    for n in names:
                        try:
                            size: int | None = os.path.getsize(os.path.join(dirpath, n))
                        except OSError:
                            size = None
                        out[n if sub == "." else f"{sub}/{n}"] = size
                return out
            prefix = base.strip("/") + "/"
            for path, detail in files.fs.find(base, detail=True).items():
                key = str(path).strip("/")
                if key.startswith(prefix):
                    size = detail.get("size") if isinstance(detail, dict) else None
                    out[key[len(prefix):]] = None if size is None else int(size)
            return out
        except Exception as err:  # a file system that cannot list (http): skip the check
            logger.debug("storegate: cannot list %r of %s (%s)", rel, self.describe(), err)
            return None

    @staticmethod
    def _open_array(ph: _Phase, path: str, what: str, problems: list[str]) -> Any:
        """The zarr array at ``path`` of a phase group, freshly opened from its metadata on
        disk, or ``None`` (with the reason in ``problems``)."""
        import zarr

        try:
            _check_metadata_files(ph.group, path)
            arr = ph.group[path]
        except KeyError:
            problems.append(f"the {what}array is missing (no zarr metadata at {path!r}); the "
                            "store was modified outside storegate")
            return None
        except Exception as err:
            problems.append(f"the {what}array metadata cannot be read ({type(err).__name__}: "
                            f"{err})")
            return None
        if not isinstance(arr, zarr.Array):
            problems.append(f"{path!r} is a group, not an array")
            return None
        problem = _array_problem(arr)
        if problem is not None:
            problems.append(f"the {what}array cannot be used: {problem}")
            return None
        return arr

    def _check_chunks(self, arr: Any, part: str, problems: list[str],
                      rows: np.ndarray | None = None) -> None:
        """Check the chunk files of one zarr array (a regular var, or a ragged var's
        ``values``/``offsets``): one for every chunk its shape needs and (uncompressed chunks)
        each of the right size. ``rows``: a ragged var's offsets, to name the rows that damaged
        values belong to."""
        import itertools

        what = f"{part} " if part else ""
        meta = arr.metadata
        shape = tuple(int(s) for s in arr.shape)
        try:
            grid = tuple(int(c) for c in meta.chunk_grid.chunk_shape)
        except (AttributeError, TypeError):  # pragma: no cover - an irregular chunk grid
            return
        if not shape or any(s == 0 for s in shape) or any(c <= 0 for c in grid):
            return  # no chunks needed
        listing = self._listing(arr.path)
        if listing is None:
            return
        expected: int | None = None  # the size of every chunk file, when stored raw
        blosc = False  # chunk files are blosc frames, whose header records their size
        if meta.zarr_format == 3:
            from zarr.codecs import BloscCodec, BytesCodec

            codecs = list(meta.codecs)
            if len(codecs) == 1 and isinstance(codecs[0], BytesCodec):
                expected = int(np.prod(grid, dtype=np.int64)) * arr.dtype.itemsize
            blosc = (len(codecs) == 2 and isinstance(codecs[0], BytesCodec)
                     and isinstance(codecs[1], BloscCodec))
        elif not meta.filters:
            if meta.compressor is None:
                expected = int(np.prod(grid, dtype=np.int64)) * arr.dtype.itemsize
            blosc = getattr(meta.compressor, "codec_id", None) == "blosc"
        counts = [-(-s // c) for s, c in zip(shape, grid, strict=True)]
        rest = list(itertools.product(*(range(n) for n in counts[1:])))
        found: list[tuple[int, str]] = []
        missing: list[list[Any]] = []  # runs [first, last, first key, last key] of chunk rows

        def lacks(lo: int, hi: int) -> None:
            first, last = (meta.encode_chunk_key((i, *rest[0])) for i in (lo, hi))
            if missing and missing[-1][1] == lo - 1:
                missing[-1][1], missing[-1][3] = hi, last
            else:
                missing.append([lo, hi, first, last])

        if counts[0] * len(rest) <= 1 << 20:
            present: Any = range(counts[0])
        else:
            # metadata claiming very many chunks (10**18 rows): probe only the chunk rows that
            # have files; the rows between them are missing (one run per gap)
            present = sorted(i for i in self._listed_rows(meta, listing, len(shape))
                             if i < counts[0])
        after = 0  # the first chunk row not yet accounted for
        for i in present:
            if i > after:
                lacks(after, i - 1)
            after = i + 1
            for r in rest:
                key = meta.encode_chunk_key((i, *r))
                if key not in listing:
                    lacks(i, i)
                    missing[-1][3] = key  # the key actually missing, in the message
                    if missing[-1][0] == i:
                        missing[-1][2] = key
                    break
                size = listing[key]
                want = expected
                if blosc and size is not None:
                    want = self._blosc_size(f"{arr.path}/{key}")
                if want is not None and size is not None and size != want:
                    span = self._span(part, i * grid[0], min(shape[0], (i + 1) * grid[0]) - 1,
                                      rows)
                    has = (f"has {size} bytes instead of {want}" if want >= 0 else
                           f"has only {size} bytes, too few for a blosc header")
                    found.append((i, f"{what}chunk file {key} {has} (truncated or overwritten; "
                                     f"{span} cannot be read correctly)"))
                    break
        if after < counts[0]:
            lacks(after, counts[0] - 1)
        fill = getattr(meta, "fill_value", 0)
        own = arr.attrs.get(_META) if hasattr(arr, "attrs") else None
        if isinstance(own, dict) and own.get("sparse"):
            missing = []  # created by create_empty: unwritten chunks read as zeros, by design
        for lo, hi, first, last in missing:  # runs of consecutive missing chunks: one line each
            span = self._span(part, lo * grid[0], min(shape[0], (hi + 1) * grid[0]) - 1, rows)
            files = (f"chunk file {first} is" if lo == hi else
                     f"chunk files {first} .. {last} ({hi - lo + 1} chunks) are")
            found.append((lo, f"{what}{files} missing ({span} would read as the fill "
                              f"value {fill}; storegate writes every chunk, so only rows "
                              "of create_empty that were never written may lack one)"))
        problems.extend(msg for _, msg in sorted(found, key=lambda item: item[0]))

    @staticmethod
    def _listed_rows(meta: Any, listing: dict[str, int | None], ndim: int) -> set[int]:
        """The chunk rows (first chunk coordinate) of the chunk files in ``listing``."""
        prefix = ""
        if meta.zarr_format == 3:
            enc = meta.chunk_key_encoding
            sep = str(enc.separator)
            if getattr(enc, "name", "default") == "default":
                prefix = "c" + sep
        else:
            sep = str(getattr(meta, "dimension_separator", None) or ".")
        out: set[int] = set()
        for key in listing:
            if not key.startswith(prefix):
                continue
            parts = key[len(prefix):].split(sep)
            if len(parts) == ndim and parts[0].isdigit():
                out.add(int(parts[0]))
        return out

    def _blosc_size(self, rel: str) -> int | None:
        """The size a blosc-compressed chunk file must have, from its frame header (bytes
        12-15, ``cbytes``); ``-1`` when the file is too short to hold a header. Blosc decodes a
        truncated frame past its end (garbage, or a crash), so this is checked before any read.
        """
        files = self._files
        if files is None or not files.supported:
            return None
        try:
            if files.fs is None:
                if not os.path.isfile(files._p(rel)):
                    return -1  # a FIFO behind a link would block the open: not a chunk file
                with open(files._p(rel), "rb") as f:
                    head = f.read(16)
            else:
                head = bytes(files.fs.cat_file(files._p(rel), start=0, end=16))
        except Exception:
            return None
        if len(head) < 16:
            return -1
        return int.from_bytes(head[12:16], "little")

    @staticmethod
    def _span(part: str, lo: int, hi: int, rows: np.ndarray | None = None) -> str:
        """Words for entries ``lo..hi`` (inclusive) of a var's array, or of a ragged var's
        ``values``/``offsets`` array (``rows``: its offsets, to name the rows of values)."""
        if part == "offsets":
            return f"offsets {lo}..{hi}"
        if part != "values":
            return f"rows {lo}..{hi}"
        where = ""
        if rows is not None and rows.shape[0] > 1:
            n = rows.shape[0] - 1
            r0 = min(n - 1, max(0, int(np.searchsorted(rows, lo, side="right")) - 1))
            r1 = min(n - 1, max(0, int(np.searchsorted(rows, hi, side="right")) - 1))
            where = f" (in rows {r0}..{r1})"
        return f"values {lo}..{hi}{where}"

    @staticmethod
    def _check_offsets(offsets: Any, n_values: int, problems: list[str]) -> np.ndarray | None:
        """Offsets on disk must start at 0, never decrease and end within the values. Returns
        them when they are sound."""
        n = int(offsets.shape[0])
        if n == 0:
            problems.append("the offsets array is empty; a ragged var needs one offset more "
                            "than it has rows")
            return None
        try:
            whole = np.asarray(offsets[:], dtype=np.int64)  # small: 8 bytes a row
        except Exception as err:
            problems.append(f"the offsets cannot be read ({type(err).__name__}: {err})")
            return None
        sound = True
        if whole[0] != 0:
            problems.append(f"the offsets start at {int(whole[0])}, not 0")
            sound = False
        down = np.flatnonzero(np.diff(whole) < 0)
        if down.size:
            i = int(down[0])
            more = f"; {down.size} places in all" if down.size > 1 else ""
            problems.append(
                f"the offsets decrease at row {i} ({int(whole[i])} -> {int(whole[i + 1])}"
                f"{more}): those rows read the wrong values")
            sound = False
        if whole[-1] > n_values:
            first = max(0, int(np.searchsorted(whole, n_values, side="right")) - 1)
            rows = f"row {first} points" if first >= n - 2 else f"rows {first}..{n - 2} point"
            problems.append(f"the offsets end at {int(whole[-1])}, past the {n_values} values "
                            f"on disk ({rows} past the values)")
            sound = False
        return whole if sound else None

    def check(self, data_id: str, phase: str, var: str) -> list[str]:
        """What reading the var back cannot reveal: chunk files that are missing (zarr reads
        them as the fill value), uncompressed chunk files of the wrong size (they read as
        zeros past their end), unreadable array metadata, ragged offsets that decrease or
        point past the values. Rows still buffered in memory are not on disk and not checked.

        Examples
        --------
        >>> import tempfile
        >>> be = ZarrBackend(output_dir=tempfile.mkdtemp() + "/s.zarr", chunk=4)
        >>> be.create_data_id("d"); be.append("d", "train", "x", np.arange(1, 11)); be.flush()
        >>> be.check("d", "train", "x")
        []
        >>> os.remove(os.path.join(be.location, "d", "train", "x", "c", "1"))
        >>> be.check("d", "train", "x")[0][:55]
        'chunk file c/1 is missing (rows 4..7 would read as the '
        """
        ph, name = self._disk_name(data_id, phase, var)
        problems: list[str] = []
        if var in ph.ragged:
            if not _committed(ph, var):
                return problems  # only buffered rows so far: nothing on disk to check
            values = self._open_array(ph, f"{name}/values", "values ", problems)
            offsets = self._open_array(ph, f"{name}/offsets", "offsets ", problems)
            whole = None
            if offsets is not None:
                before = len(problems)
                self._check_chunks(offsets, "offsets", problems)
                # offsets with missing or short chunks are not read: zarr would fill the rows
                # its metadata claims (a damaged shape can claim billions)
                if values is not None and len(problems) == before:
                    whole = self._check_offsets(offsets, int(values.shape[0]), problems)
            if values is not None:
                self._check_chunks(values, "values", problems, whole)
            return problems
        v = ph.vars.get(var)
        if v is not None and v.array is None:
            return problems  # only buffered rows so far
        arr = self._open_array(ph, name, "", problems)
        if arr is not None:
            self._check_chunks(arr, "", problems)
        return problems

    def stored_bytes(self, data_id: str, phase: str, var: str) -> int | None:
        """Bytes of the var's files on disk (chunks and metadata; a ragged var: both arrays).
        Rows still buffered in memory are not counted. ``None`` for a file system that cannot
        tell (an fsspec file system without ``du``).

        Examples
        --------
        >>> import tempfile
        >>> be = ZarrBackend(output_dir=tempfile.mkdtemp() + "/s.zarr")
        >>> be.create_data_id("d"); be.append("d", "train", "x", np.ones(1000)); be.flush()
        >>> be.stored_bytes("d", "train", "x") > 0
        True
        """
        _, name = self._disk_name(data_id, phase, var)
        files = self._files
        if files is None or not files.supported:
            return None
        rel = f"{data_id}/{phase}/{name}"
        if files.fs is None:
            listing = self._listing(rel)
            return None if listing is None else sum(s or 0 for s in listing.values())
        du = getattr(files.fs, "du", None)
        if du is None:
            return None
        try:
            return int(du(files._p(rel), total=True))
        except FileNotFoundError:
            return 0
        except Exception as err:
            logger.debug("storegate: cannot size %r of %s (%s)", rel, self.describe(), err)
            return None
