"""Whole-var rewrites that stream block by block and swap the result in atomically.

``astype``, ``onehot``, ``argmax`` and ``shuffle`` never hold a whole var in memory: the new
var is written block by block under a temporary name (``.sg-tmp-<var>``, invisible to
``var_names``) and then renamed over the old one with :meth:`Backend.rename`. If anything fails
or the process is interrupted before the rename, the old var is untouched; a temporary left by a
killed process is removed the next time the phase is opened for writing.

Shuffling a var larger than memory uses two passes over scratch files: rows are first
distributed into buckets by the output block they land in, then each bucket is assembled into
its block. Peak memory is a few blocks (:data:`BLOCK_BYTES`) plus the permutation and its
inverse (int64, 16 bytes a row: a 1 GiB var of 4M rows grows the process by about 150 MB); the
scratch space is one copy of the var, in ``TMPDIR`` (``storegate-shuffle-<pid>-*``; the scratch
of a shuffle that was killed is removed by the next shuffle, once its process is gone).

:func:`replace_vars` rewrites several vars as one unit (a shuffle's vars, or the tiers holding
copies of one var): every new var is written before the first one is swapped in, and the swaps
go through :meth:`Backend.rename_many`, which the zarr backend makes all-or-nothing.

Examples
--------
>>> import numpy as np
>>> from storegate.backends.numpy_backend import NumpyBackend
>>> be = NumpyBackend(); be.create_data_id("d")
>>> be.append("d", "train", "x", np.arange(6))
>>> replace_var(be, "d", "train", "x", map_blocks(be, "d", "train", "x", lambda a: a * 10))
>>> be.read("d", "train", "x", slice(0, 6, 1))
array([ 0, 10, 20, 30, 40, 50])
>>> replace_var(be, "d", "train", "x", shuffled_blocks(be, "d", "train", "x",
...                                                   np.array([5, 4, 3, 2, 1, 0])))
>>> be.read("d", "train", "x", slice(0, 6, 1))
array([50, 40, 30, 20, 10,  0])
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from .backends.base import TEMP_PREFIX, Backend
from .ragged import RaggedArray

__all__ = ["BLOCK_BYTES", "TMP_PREFIX", "map_blocks", "replace_var", "replace_vars",
           "shuffled_blocks"]

#: Uncompressed bytes per block read or written by a rewrite.
BLOCK_BYTES = 16 << 20
#: Prefix of the temporary var a rewrite writes before swapping it in.
TMP_PREFIX = TEMP_PREFIX
_SCRATCH_PREFIX = "storegate-shuffle-"


def _remove_orphaned_scratch() -> None:
    """Remove the scratch directories of shuffles whose process no longer exists (kill -9)."""
    base = tempfile.gettempdir()
    try:
        names = os.listdir(base)
    except OSError:
        return
    for name in names:
        pid = name[len(_SCRATCH_PREFIX):].split("-", 1)[0]
        if not name.startswith(_SCRATCH_PREFIX) or not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(os.path.join(base, name), ignore_errors=True)
        except OSError:  # alive, owned by someone else
            pass


def _rows_per_block(row_bytes: int, block_bytes: int) -> int:
    return max(1, block_bytes // max(1, row_bytes))


def _row_bytes(shape: tuple[int, ...], dtype: np.dtype) -> int:
    return int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize


class _Blocks:
    """An iterable of blocks plus the shape/dtype of the result when there is no block."""

    def __init__(self, blocks: Iterable[np.ndarray], empty: np.ndarray) -> None:
        self.blocks = blocks
        self.empty = empty

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter(self.blocks)


def map_blocks(
    db: Backend,
    data_id: str,
    phase: str,
    var: str,
    fn: Callable[[np.ndarray], np.ndarray],
    block_bytes: int | None = None,
) -> _Blocks:
    """``fn`` applied to consecutive blocks of rows of a var (lazily).

    ``fn`` maps ``(n, *k)`` rows to ``(n, *k2)`` rows; the block size accounts for both sides.
    ``block_bytes`` defaults to :data:`BLOCK_BYTES` as it is at call time.

    Examples
    --------
    >>> from storegate.backends.numpy_backend import NumpyBackend
    >>> be = NumpyBackend(); be.create_data_id("d"); be.append("d", "train", "x", np.arange(3))
    >>> [b.tolist() for b in map_blocks(be, "d", "train", "x", lambda a: a + 1, block_bytes=16)]
    [[1, 2], [3]]
    """
    if block_bytes is None:
        block_bytes = BLOCK_BYTES
    info = db.info(data_id, phase, var)
    if info.ragged:  # a ragged var: fn maps its values; the offsets stay
        values_fn = fn

        def fn(block: Any) -> Any:
            return RaggedArray(np.ascontiguousarray(values_fn(block.values)), block.offsets,
                               validate=False)

        zero = RaggedArray(np.zeros((0, *info.row_shape), dtype=info.dtype),
                           np.zeros(1, dtype=np.int64), validate=False)
        empty = fn(zero)
        probe = values_fn(np.zeros((1, *info.row_shape), dtype=info.dtype))
    else:
        empty = fn(np.zeros((0, *info.row_shape), dtype=info.dtype))
        probe = fn(np.zeros((1, *info.row_shape), dtype=info.dtype))
    step = _rows_per_block(max(_row_bytes(info.shape, info.dtype),
                               _row_bytes(probe.shape, probe.dtype)), block_bytes)

    def gen() -> Iterator[np.ndarray]:
        for start in range(0, info.length, step):
            stop = min(info.length, start + step)
            out = fn(db.read(data_id, phase, var, slice(start, stop, 1)))
            yield out if isinstance(out, RaggedArray) else np.ascontiguousarray(out)

    return _Blocks(gen(), empty)


def shuffled_blocks(
    db: Backend,
    data_id: str,
    phase: str,
    var: str,
    perm: np.ndarray,
    block_bytes: int | None = None,
) -> _Blocks:
    """The rows of a var in the order ``perm`` (row ``i`` of the result is row ``perm[i]``).

    In-memory backends gather directly; persistent ones use a two-pass bucket shuffle over
    scratch files so that memory stays at about two blocks.

    Examples
    --------
    >>> from storegate.backends.numpy_backend import NumpyBackend
    >>> be = NumpyBackend(); be.create_data_id("d"); be.append("d", "train", "x", np.arange(4))
    >>> np.concatenate(list(shuffled_blocks(be, "d", "train", "x", np.array([2, 0, 3, 1]))))
    array([2, 0, 3, 1])
    """
    if block_bytes is None:
        block_bytes = BLOCK_BYTES
    info = db.info(data_id, phase, var)
    n = info.length
    if perm.shape != (n,):
        raise ValueError(f"permutation of length {perm.shape} for a var of {n} rows")
    empty: Any = np.zeros((0, *info.row_shape), dtype=info.dtype)
    if info.ragged:
        empty = RaggedArray(empty, np.zeros(1, dtype=np.int64), validate=False)
    step = _rows_per_block(_row_bytes(info.shape, info.dtype), block_bytes)
    perm = perm.astype(np.int64, copy=False)

    def gather() -> Iterator[np.ndarray]:
        for start in range(0, n, step):
            yield db.read(data_id, phase, var, perm[start : start + step])

    def two_pass() -> Iterator[np.ndarray]:
        inverse = np.empty(n, dtype=np.int64)
        inverse[perm] = np.arange(n, dtype=np.int64)
        n_blocks = -(-n // step)
        _remove_orphaned_scratch()
        with tempfile.TemporaryDirectory(prefix=f"{_SCRATCH_PREFIX}{os.getpid()}-") as scratch:
            def path(block: int, kind: str) -> str:
                return os.path.join(scratch, f"{block}.{kind}")

            # pass 1: stream the var, sending each row to the bucket of its output block
            for start in range(0, n, step):
                stop = min(n, start + step)
                rows = db.read(data_id, phase, var, slice(start, stop, 1))
                dest = inverse[start:stop]
                bucket = dest // step
                order = np.argsort(bucket, kind="stable")
                cuts = np.flatnonzero(np.diff(bucket[order])) + 1
                for group in np.split(order, cuts):
                    b = int(bucket[group[0]])
                    with open(path(b, "rows"), "ab") as f:
                        f.write(np.ascontiguousarray(rows[group]).tobytes())
                    with open(path(b, "pos"), "ab") as f:
                        f.write(dest[group].tobytes())
                del rows
            del inverse
            # pass 2: each bucket holds exactly the rows of one output block
            for b in range(n_blocks):
                pos = np.fromfile(path(b, "pos"), dtype=np.int64) - b * step
                rows = np.fromfile(path(b, "rows"), dtype=info.dtype).reshape(
                    (pos.shape[0], *info.row_shape))
                out = np.empty_like(rows)
                out[pos] = rows
                del rows
                os.unlink(path(b, "pos"))
                os.unlink(path(b, "rows"))
                yield out

    # ragged vars are gathered (their values arena keeps the gathers fast)
    return _Blocks(two_pass() if db.persistent and not info.ragged else gather(), empty)


def replace_var(db: Backend, data_id: str, phase: str, var: str, blocks: _Blocks) -> None:
    """Write ``blocks`` as the new content of ``var``, then swap it in.

    The old var stays readable and unchanged until the final :meth:`Backend.rename`; on any
    exception the temporary var is removed and the exception re-raised.

    Examples
    --------
    >>> from storegate.backends.numpy_backend import NumpyBackend
    >>> be = NumpyBackend(); be.create_data_id("d"); be.append("d", "train", "x", np.arange(3))
    >>> def boom(a):
    ...     raise RuntimeError("conversion failed")
    >>> try:
    ...     replace_var(be, "d", "train", "x", map_blocks(be, "d", "train", "x", boom))
    ... except RuntimeError:
    ...     pass
    >>> be.read("d", "train", "x", slice(0, 3, 1)), be.var_names("d", "train")
    (array([0, 1, 2]), ['x'])
    """
    replace_vars(data_id, phase, [(db, var, blocks)])


def replace_vars(
    data_id: str, phase: str, items: Sequence[tuple[Backend, str, _Blocks]]
) -> None:
    """Write every ``(db, var, blocks)`` under its temporary name, then swap them all in.

    Nothing is swapped before every new var is complete, so an exception while writing any of
    them leaves all the old vars intact (a shuffled phase never ends up half shuffled); the
    swaps of one backend go through one :meth:`Backend.rename_many`. On any exception the
    temporaries are removed and the exception re-raised.

    Examples
    --------
    >>> from storegate.backends.numpy_backend import NumpyBackend
    >>> be = NumpyBackend(); be.create_data_id("d")
    >>> be.append("d", "train", "x", np.arange(3)); be.append("d", "train", "y", np.arange(3))
    >>> perm = np.array([2, 0, 1])
    >>> replace_vars("d", "train", [(be, v, shuffled_blocks(be, "d", "train", v, perm))
    ...                             for v in ("x", "y")])
    >>> be.read("d", "train", "y", slice(0, 3, 1))
    array([2, 0, 1])
    """
    groups: dict[int, tuple[Backend, list[tuple[str, str]]]] = {}
    written: list[tuple[Backend, str]] = []
    try:
        for db, var, blocks in items:
            tmp = TMP_PREFIX + var
            if db.has_var(data_id, phase, tmp):
                db.delete(data_id, phase, tmp)
            written.append((db, tmp))
            wrote = False
            for block in blocks:
                db.append(data_id, phase, tmp, block)
                wrote = True
            if not wrote:
                if isinstance(blocks.empty, RaggedArray):
                    db.append(data_id, phase, tmp, blocks.empty)
                else:
                    db.create(data_id, phase, tmp, blocks.empty.shape, blocks.empty.dtype)
            db.flush()
            groups.setdefault(id(db), (db, []))[1].append((tmp, var))
        for db, pairs in groups.values():
            db.rename_many(data_id, phase, pairs)
    except BaseException:
        for db, tmp in written:
            with contextlib.suppress(Exception):
                if db.has_var(data_id, phase, tmp):
                    db.delete(data_id, phase, tmp)
        raise
