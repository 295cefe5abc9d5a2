"""Learnable embedding tables stored as vars: :class:`EmbeddingTable`.

An embedding table is a float var of shape ``(N, dim)`` in a StoreGate (any backend), read and
updated a few rows at a time: :meth:`~EmbeddingTable.gather`, :meth:`~EmbeddingTable.put`,
:meth:`~EmbeddingTable.scatter_add` (duplicate ids summed) and the optimizer step
:meth:`~EmbeddingTable.apply_gradients` (sparse SGD or Adagrad; Adagrad's sum of squared
gradients is a second var of the same shape, updated in lockstep).

Crash safety: updates never touch the committed var. They go to a hidden working copy (a
temporary var the store sweeps on reopen), and the rows updated since the last flush are
tracked; reads take updated rows from the working copy and the others from the committed var.
:meth:`~EmbeddingTable.flush` copies the rows *not* updated into the working copy and swaps it
in (``rename_many``, with the optimizer state, in one transaction), so a kill at any moment
leaves the table (and its state) as of the last flush. A flush after an epoch that touched
every row copies nothing; a flush after a few sparse updates copies the rest of the table.

For training out of core, put a :class:`~storegate.graph.buffer.PartitionBuffer` in front: it
holds a few partitions in memory and writes back to the table when swapping.

Examples
--------
>>> import numpy as np
>>> from storegate import StoreGate
>>> sg = StoreGate("numpy")
>>> table = EmbeddingTable(sg, "nodes", "emb", num_embeddings=5, dim=2, init="zeros",
...                        optimizer="sgd", lr=0.5)
>>> table.scatter_add([1, 1, 3], np.ones((3, 2), np.float32))
>>> table.gather([1, 3]).tolist()
[[2.0, 2.0], [1.0, 1.0]]
>>> table.apply_gradients([3], np.full((1, 2), 2.0, np.float32))   # row 3 -= 0.5 * 2
>>> table.gather([3]).tolist()
[[0.0, 0.0]]
>>> table.flush()
>>> sg.get_data_ids(), sg.db.var_names("nodes", "train")
(['nodes'], ['emb'])
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from ..backends.base import TEMP_PREFIX
from ..errors import (
    DtypeError,
    IndexOutOfRangeError,
    InvalidArgumentError,
    InvalidIndexError,
    InvalidNameError,
    ShapeMismatchError,
    VarNotFoundError,
)
from ..names import check_name
from ..phases import check_phase

__all__ = ["INITS", "OPTIMIZERS", "EmbeddingTable", "coalesce", "sparse_step"]

logger = logging.getLogger(__name__)

#: Optimizers of :meth:`EmbeddingTable.apply_gradients` (``None``: no optimizer).
OPTIMIZERS = ("sgd", "adagrad")
#: Named initialisations of a new table (or pass a callable ``(rng, shape, dtype) -> array``).
INITS = ("normal", "uniform", "zeros")
_FLOATS = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))
#: Rows per block when a table is initialised or copied.
_BLOCK_BYTES = 8 << 20


def _ids(ids: Any, n: int, what: str = "ids") -> np.ndarray:
    """``ids`` as a flat int64 array of rows in ``[0, n)`` (torch tensors and lists accepted)."""
    if hasattr(ids, "detach") and hasattr(ids, "numpy"):
        ids = ids.detach().cpu().numpy()
    arr = np.asarray(ids)
    if arr.dtype == np.bool_ or (arr.size and arr.dtype.kind not in "iu"):
        raise InvalidIndexError(
            f"{what} must be integers (row numbers of the table), got dtype {arr.dtype}.")
    flat = arr.reshape(-1).astype(np.int64, copy=False)
    if flat.size and (int(flat.min()) < 0 or int(flat.max()) >= n):
        bad = flat[(flat < 0) | (flat >= n)][:5].tolist()
        raise IndexOutOfRangeError(
            f"{what} {bad} are out of range for a table of {n} rows; use ids in [0, {n}).")
    return flat


def _id_rows(ids: Any, values: Any, n: int, dim: int,
            what: str = "values") -> tuple[np.ndarray, np.ndarray]:
    """``(flat ids, values as (len(ids), dim))``, checked (see :func:`coalesce`'s callers).

    >>> f, v = _id_rows([[0], [2]], np.ones(4), 3, 2); f.tolist(), v.shape
    ([0, 2], (2, 2))
    """
    flat = _ids(ids, n)
    v = np.asarray(values.detach().cpu().numpy() if hasattr(values, "detach") else values)
    if v.size != flat.size * dim:
        raise ShapeMismatchError(
            f"{what} must hold one row of {dim} values per id ({flat.size} ids), got "
            f"shape {v.shape}.")
    if v.dtype.kind not in "fiub":
        raise DtypeError(f"{what} must be numbers, got dtype {v.dtype}.")
    return flat, v.reshape(flat.size, dim)


def coalesce(ids: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique ``ids`` and the sum of the ``values`` rows of each (a segment sum).

    Examples
    --------
    >>> u, s = coalesce(np.array([3, 1, 3]), np.array([[1.0], [2.0], [4.0]]))
    >>> u.tolist(), s.tolist()
    ([1, 3], [[2.0], [5.0]])
    """
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    values = np.asarray(values)
    if ids.size == 0:
        return ids, values.reshape(0, values.shape[-1] if values.ndim > 1 else 0)
    values = values.reshape(ids.size, -1)
    order = np.argsort(ids, kind="stable")
    s = ids[order]
    starts = np.flatnonzero(np.concatenate([[True], s[1:] != s[:-1]]))
    ordered = values[order]
    if starts.size == ids.size:  # no duplicates
        return s, ordered
    # first occurrences copied, then only the repeats added in order (much faster than
    # reduceat over rows, and the same left-to-right sum)
    out = ordered[starts].copy()
    repeat = np.concatenate([[False], s[1:] == s[:-1]])
    segment = np.cumsum(~repeat) - 1
    np.add.at(out, segment[repeat], ordered[repeat])
    return s[starts], out


def _last_wins(ids: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique ``ids`` with the value of each id's last occurrence."""
    rev = ids[::-1]
    uniq, first = np.unique(rev, return_index=True)
    return uniq, values[::-1][first]


def _compute_dtype(dtype: np.dtype) -> np.dtype:
    """float16 tables are updated in float32 (then rounded once), others in their own dtype."""
    return np.dtype(np.float32) if dtype == np.float16 else dtype


def sparse_step(rows: Any, ids: Any, grads: Any, *, optimizer: str, lr: float,
                eps: float = 1e-10) -> None:
    """One sparse optimizer step on a row store (an :class:`EmbeddingTable` or a
    :class:`~storegate.graph.buffer.PartitionBuffer`): what ``torch.optim.SGD`` /
    ``torch.optim.Adagrad`` do to an ``nn.Embedding(sparse=True)``.

    Duplicate ids are summed first (``grad.coalesce()``). SGD: ``w -= lr * g``. Adagrad:
    ``s += g**2; w -= lr * g / (sqrt(s) + eps)``, with ``s`` the rows' state.

    Examples
    --------
    >>> from storegate import StoreGate
    >>> t = EmbeddingTable(StoreGate("numpy"), "n", "w", 3, 1, init="zeros",
    ...                    optimizer="adagrad", lr=1.0)
    >>> sparse_step(t, [0, 0], np.array([[1.0], [1.0]]), optimizer="adagrad", lr=1.0)
    >>> round(float(t.gather([0])[0, 0]), 6), t.gather_state([0]).tolist()
    (-1.0, [[4.0]])
    """
    if optimizer not in OPTIMIZERS:
        raise InvalidArgumentError(f"optimizer={optimizer!r}; use one of {OPTIMIZERS}.")
    flat, g = _id_rows(ids, grads, rows.num_embeddings, rows.dim, "grads")
    cdt = _compute_dtype(rows.dtype)
    uniq, gsum = coalesce(flat, g.astype(cdt, copy=False))
    # ids are unique from here: the rows' fast paths skip the duplicate handling
    if optimizer == "sgd":
        rows._add_unique(uniq, -lr * gsum)
        return
    state = rows.gather_state(uniq).astype(cdt, copy=False) + gsum * gsum
    rows._put_state_unique(uniq, state)
    rows._add_unique(uniq, -lr * gsum / (np.sqrt(state) + eps))


class _Shadowed:
    """One var of a table: reads from the committed var or the working copy, writes to the
    working copy, :meth:`commit` swaps it in (see the module docstring)."""

    def __init__(self, table: EmbeddingTable, var: str) -> None:
        self.table = table
        self.var = var
        self.work = f"{TEMP_PREFIX}work-{var}"
        self.dirty = np.zeros(table.num_embeddings, dtype=bool)
        self.has_work = False

    # -------------------------------------------------------------- reading
    def read(self, ids: np.ndarray) -> np.ndarray:
        t = self.table
        if not self.has_work:
            return np.asarray(t._read(self.var, ids))
        mask = self.dirty[ids]
        if not mask.any():
            return np.asarray(t._read(self.var, ids))
        if mask.all():
            return np.asarray(t._read(self.work, ids))
        out = np.empty((ids.size, t.dim), dtype=t.dtype)
        out[~mask] = t._read(self.var, ids[~mask])
        out[mask] = t._read(self.work, ids[mask])
        return out

    def read_range(self, start: int, stop: int) -> np.ndarray:
        t = self.table
        sl = slice(start, stop, 1)
        if not self.has_work:
            return np.asarray(t._read(self.var, sl))
        mask = self.dirty[start:stop]
        if not mask.any():
            return np.asarray(t._read(self.var, sl))
        work = np.asarray(t._read(self.work, sl))
        if mask.all():
            return work
        out = np.array(t._read(self.var, sl))
        out[mask] = work[mask]
        return out

    # -------------------------------------------------------------- writing
    def _ensure_work(self) -> None:
        if self.has_work:
            return
        t = self.table
        db = t.storegate.db
        db._check_writable()
        if db.has_var(t.data_id, t.phase, self.work):  # left by an earlier session: stale
            db.delete(t.data_id, t.phase, self.work)
        db.create(t.data_id, t.phase, self.work, (t.num_embeddings, t.dim), t.dtype)
        self.has_work = True

    def write(self, ids: np.ndarray, rows: np.ndarray) -> None:
        """Write rows at sorted unique ``ids``."""
        if ids.size == 0:
            return
        self._ensure_work()
        t = self.table
        t.storegate.db.write(t.data_id, t.phase, self.work, ids, rows.astype(t.dtype, copy=False))
        self.dirty[ids] = True

    def write_range(self, start: int, rows: np.ndarray) -> None:
        if len(rows) == 0:
            return
        self._ensure_work()
        t = self.table
        stop = start + len(rows)
        t.storegate.db.write(t.data_id, t.phase, self.work, slice(start, stop, 1),
                             rows.astype(t.dtype, copy=False))
        self.dirty[start:stop] = True

    def prepare_commit(self) -> bool:
        """Copy the rows not updated into the working copy; whether there is one to swap in."""
        if not self.has_work:
            return False
        t = self.table
        db = t.storegate.db
        block = t._block_rows
        copied = 0
        for a in range(0, t.num_embeddings, block):
            b = min(a + block, t.num_embeddings)
            clean = ~self.dirty[a:b]
            if not clean.any():
                continue
            sl = slice(a, b, 1)
            if clean.all():
                rows = np.asarray(t._read(self.var, sl))
            else:
                rows = np.array(t._read(self.work, sl))
                rows[clean] = np.asarray(t._read(self.var, sl))[clean]
            db.write(t.data_id, t.phase, self.work, sl, rows)
            copied += int(clean.sum())
        logger.debug("table %s/%s: %d rows not updated copied before the swap",
                     t.data_id, self.var, copied)
        return True

    def committed(self) -> None:
        self.dirty[:] = False
        self.has_work = False


class EmbeddingTable:
    """A learnable ``(num_embeddings, dim)`` float table stored as a var, on any backend.

    Parameters
    ----------
    storegate
        The :class:`~storegate.StoreGate` holding the table.
    data_id
        Its dataset (created if missing). Node tables usually live with the node vars (the
        data_id ``'nodes'`` of a graph), so the table rows line up with the nodes; other vars
        of ``phase`` must then have ``num_embeddings`` rows.
    var
        The var holding the weights. An existing var is opened (its shape and dtype are
        checked against the arguments given); a missing one is created and initialised.
    num_embeddings, dim
        The table shape (needed to create it).
    dtype
        ``float16``, ``float32`` (default) or ``float64``. float16 tables are updated in
        float32 and rounded once per update.
    phase
        The phase holding the table (``'train'``).
    optimizer
        ``None`` (no :meth:`apply_gradients`), ``'sgd'`` or ``'adagrad'``. Adagrad keeps the sum
        of squared gradients in the var ``state_var`` (created as zeros if missing).
    lr, eps
        Learning rate and Adagrad's ``eps`` (as ``torch.optim.Adagrad``).
    state_var
        Name of the optimizer-state var (default ``'<var>_state'``).
    init
        For a new table: ``'normal'`` (default; ``N(0, init_scale)``), ``'uniform'``
        (``U(-init_scale, init_scale)``), ``'zeros'``, or a callable
        ``(rng, shape, dtype) -> array`` called per block of rows.
    init_scale
        Scale of ``'normal'``/``'uniform'`` (default ``1 / sqrt(dim)``).
    seed
        Seed of the initialisation (the same seed gives the same table on every backend).

    Notes
    -----
    One thread at a time: a table is not thread-safe (a :class:`PartitionBuffer` in front of
    it does all its I/O from one background thread). ``scatter_add`` and ``put`` on a disk
    backend rewrite the storage chunks they touch, so many small random updates straight to a
    zarr table are slow: train through a :class:`~storegate.graph.buffer.PartitionBuffer`,
    or use the numpy/hybrid backend.

    Examples
    --------
    >>> from storegate import StoreGate
    >>> sg = StoreGate("numpy")
    >>> t = EmbeddingTable(sg, "nodes", "emb", num_embeddings=4, dim=3, seed=0)
    >>> t.gather([0, 2]).shape, t.dtype
    ((2, 3), dtype('float32'))
    >>> t.put([2], np.zeros((1, 3), np.float32)); t.gather([2]).tolist()
    [[0.0, 0.0, 0.0]]
    >>> EmbeddingTable(sg, "nodes", "emb").num_embeddings   # reopen
    4
    """

    def __init__(
        self,
        storegate: Any,
        data_id: str,
        var: str,
        num_embeddings: int | None = None,
        dim: int | None = None,
        *,
        dtype: Any = None,
        phase: str = "train",
        optimizer: str | None = None,
        lr: float = 0.1,
        eps: float = 1e-10,
        state_var: str | None = None,
        init: str | Callable[..., Any] = "normal",
        init_scale: float | None = None,
        seed: int | None = 0,
    ) -> None:
        from ..gate import StoreGate

        if not isinstance(storegate, StoreGate):
            raise InvalidArgumentError(
                f"storegate must be a StoreGate, got {type(storegate).__name__}.")
        self.storegate = storegate
        self.data_id = check_name(data_id, "data_id")
        self.var = check_name(var, "var")
        self.phase = check_phase(phase)
        if self.phase not in ("train", "valid", "test"):
            raise InvalidArgumentError(f"phase={phase!r}: a table lives in one phase "
                                       "('train', 'valid' or 'test').")
        if optimizer is not None and optimizer not in OPTIMIZERS:
            raise InvalidArgumentError(
                f"optimizer={optimizer!r}; use None, 'sgd' or 'adagrad'.")
        if not (isinstance(init, str) and init in INITS) and not callable(init):
            raise InvalidArgumentError(f"init={init!r}; use one of {INITS} or a callable.")
        self.optimizer = optimizer
        self.lr = float(lr)
        self.eps = float(eps)
        self.state_var = check_name(state_var or f"{var}_state", "var") if optimizer == \
            "adagrad" else None
        if self.state_var == self.var:
            raise InvalidArgumentError("state_var must differ from var.")
        for name in (self.var, self.state_var):
            if name is not None and len(f"{TEMP_PREFIX}init-{name}".encode()) > 255:
                raise InvalidNameError(
                    f"var name {name!r} is too long for a table: its working copy needs "
                    f"{len(TEMP_PREFIX) + 5} more bytes within 255; use a shorter name.")
        db = storegate.db
        exists = data_id in db.data_ids() and db.has_var(data_id, self.phase, var)
        if exists:
            info = db.info(data_id, self.phase, var)
            if info.ragged or len(info.shape) != 2:
                raise ShapeMismatchError(
                    f"var {var!r} of data_id {data_id!r} has shape {info.shape}; an embedding "
                    "table is a 2-D (num_embeddings, dim) var.")
            for given, actual, what in ((num_embeddings, info.shape[0], "num_embeddings"),
                                        (dim, info.shape[1], "dim")):
                if given is not None and int(given) != actual:
                    raise ShapeMismatchError(
                        f"{what}={given}, but the stored table {data_id}/{var} has "
                        f"{what}={actual}; pass {actual} (or None) or use another var.")
            if dtype is not None and np.dtype(dtype) != info.dtype:
                raise DtypeError(f"dtype={np.dtype(dtype)}, but the stored table {data_id}/{var}"
                                 f" is {info.dtype}; pass {info.dtype} (or None).")
            self.num_embeddings, self.dim = int(info.shape[0]), int(info.shape[1])
            self.dtype = np.dtype(info.dtype)
        else:
            if num_embeddings is None or dim is None:
                raise VarNotFoundError(
                    f"there is no table {data_id}/{var} (phase {self.phase!r}) yet; pass "
                    "num_embeddings and dim to create it.")
            self.num_embeddings, self.dim = int(num_embeddings), int(dim)
            if self.num_embeddings < 0 or self.dim < 1:
                raise InvalidArgumentError(
                    f"num_embeddings={num_embeddings}, dim={dim}; use num_embeddings >= 0 and "
                    "dim >= 1.")
            self.dtype = np.dtype(dtype if dtype is not None else np.float32)
        if self.dtype not in _FLOATS:
            raise DtypeError(f"an embedding table is float16, float32 or float64, got "
                             f"{self.dtype}.")
        row_bytes = self.dim * self.dtype.itemsize
        self._block_rows = max(1, _BLOCK_BYTES // row_bytes)
        if not exists:
            self._create(self.var, init, init_scale, seed)
        if self.state_var is not None and not db.has_var(data_id, self.phase, self.state_var):
            self._create(self.state_var, "zeros", None, None)
        elif self.state_var is not None:
            info = db.info(data_id, self.phase, self.state_var)
            if info.shape != (self.num_embeddings, self.dim) or info.dtype != self.dtype:
                raise ShapeMismatchError(
                    f"the optimizer state {data_id}/{self.state_var} has shape {info.shape} "
                    f"and dtype {info.dtype}; it must match the table "
                    f"({(self.num_embeddings, self.dim)}, {self.dtype}).")
        self._weights = _Shadowed(self, self.var)
        self._state = _Shadowed(self, self.state_var) if self.state_var else None

    # -------------------------------------------------------------- creation
    def _create(self, var: str, init: Any, scale: float | None, seed: int | None) -> None:
        sg = self.storegate
        db = sg.db
        db._check_writable()
        n, dim = self.num_embeddings, self.dim
        others = {v: ln for v, ln in (db.lengths(self.data_id, self.phase).items()
                                      if self.data_id in db.data_ids() else ())}
        wrong = {v: ln for v, ln in others.items() if ln != n}
        if wrong:
            raise ShapeMismatchError(
                f"num_embeddings={n}, but the vars of data_id {self.data_id!r} phase "
                f"{self.phase!r} have {wrong} rows; every var of a phase has one length: put the "
                "table in its own data_id or use num_embeddings="
                f"{next(iter(wrong.values()))}.")
        rng = np.random.default_rng(seed)
        std = float(scale) if scale is not None else 1.0 / np.sqrt(dim)
        tmp = f"{TEMP_PREFIX}init-{var}"
        with db.transaction():
            if self.data_id not in db.data_ids():
                db.create_data_id(self.data_id)
            else:
                sg._invalidate(self.data_id)
            if db.has_var(self.data_id, self.phase, tmp):
                db.delete(self.data_id, self.phase, tmp)
            if n == 0:
                db.create(self.data_id, self.phase, tmp, (0, dim), self.dtype)
            for a in range(0, n, self._block_rows):
                shape = (min(n, a + self._block_rows) - a, dim)
                if init == "zeros":
                    block = np.zeros(shape, self.dtype)
                elif init == "normal":
                    block = rng.normal(0.0, std, size=shape)
                elif init == "uniform":
                    block = rng.uniform(-std, std, size=shape)
                else:
                    block = np.asarray(init(rng, shape, self.dtype))
                    if block.shape != shape:
                        raise ShapeMismatchError(
                            f"init returned shape {block.shape} for a block of shape {shape}.")
                db.append(self.data_id, self.phase, tmp, block.astype(self.dtype, copy=False))
            db.flush()
            db.rename(self.data_id, self.phase, tmp, var)
            sg._compile(self.data_id, reset=False)
        logger.info("created table %s/%s: %d x %d %s (init %s)", self.data_id, var, n, dim,
                    self.dtype, init if isinstance(init, str) else "callable")

    # -------------------------------------------------------------- I/O
    def _read(self, var: str, index: Any) -> Any:
        return self.storegate.db.read(self.data_id, self.phase, var, index)

    def _check_state(self) -> _Shadowed:
        if self._state is None:
            raise InvalidArgumentError(
                f"table {self.data_id}/{self.var} has no optimizer state; open it with "
                "optimizer='adagrad'.")
        return self._state

    def _rows_in(self, ids: Any, values: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
        return _id_rows(ids, values, self.num_embeddings, self.dim, what)

    def gather(self, ids: Any) -> np.ndarray:
        """The rows at ``ids`` (any int array-like; the result has shape ``ids.shape + (dim,)``).

        >>> from storegate import StoreGate
        >>> t = EmbeddingTable(StoreGate("numpy"), "n", "w", 3, 2, init="zeros")
        >>> t.gather([[0, 1], [2, 2]]).shape
        (2, 2, 2)
        """
        flat = _ids(ids, self.num_embeddings)
        shape = np.shape(ids.detach().cpu().numpy() if hasattr(ids, "detach") else ids)
        return self._weights.read(flat).reshape(*shape, self.dim)

    def gather_state(self, ids: Any) -> np.ndarray:
        """The optimizer-state rows at ``ids`` (Adagrad's sum of squared gradients).

        >>> from storegate import StoreGate
        >>> t = EmbeddingTable(StoreGate("numpy"), "n", "w", 3, 2, optimizer="adagrad")
        >>> t.gather_state([1]).tolist()
        [[0.0, 0.0]]
        """
        state = self._check_state()
        return state.read(_ids(ids, self.num_embeddings))

    def put(self, ids: Any, values: Any) -> None:
        """Overwrite the rows at ``ids`` (for a repeated id, its last value wins).

        >>> from storegate import StoreGate
        >>> t = EmbeddingTable(StoreGate("numpy"), "n", "w", 3, 1, init="zeros")
        >>> t.put([2, 2], [[1.0], [5.0]]); t.gather([2]).tolist()
        [[5.0]]
        """
        flat, v = self._rows_in(ids, values, "values")
        uniq, rows = _last_wins(flat, v)
        self._weights.write(uniq, rows)

    def put_state(self, ids: Any, values: Any) -> None:
        """Overwrite optimizer-state rows (as :meth:`put`)."""
        state = self._check_state()
        flat, v = self._rows_in(ids, values, "values")
        uniq, rows = _last_wins(flat, v)
        state.write(uniq, rows)

    def scatter_add(self, ids: Any, deltas: Any) -> None:
        """Add ``deltas`` to the rows at ``ids``; deltas of a repeated id are summed.

        >>> from storegate import StoreGate
        >>> t = EmbeddingTable(StoreGate("numpy"), "n", "w", 3, 1, init="zeros")
        >>> t.scatter_add([0, 2, 0], [[1.0], [2.0], [3.0]]); t.gather([0, 1, 2]).ravel().tolist()
        [4.0, 0.0, 2.0]
        """
        flat, v = self._rows_in(ids, deltas, "deltas")
        uniq, sums = coalesce(flat, v.astype(_compute_dtype(self.dtype), copy=False))
        self._add_unique(uniq, sums)

    # the optimizer's fast paths (sorted unique ids, see sparse_step)
    def _add_unique(self, ids: np.ndarray, sums: np.ndarray) -> None:
        rows = self._weights.read(ids).astype(_compute_dtype(self.dtype), copy=False) + sums
        self._weights.write(ids, rows)

    def _put_state_unique(self, ids: np.ndarray, rows: np.ndarray) -> None:
        self._check_state().write(ids, rows)

    def apply_gradients(self, ids: Any, grads: Any) -> None:
        """One optimizer step (the table's ``optimizer``) for the gradient rows ``grads`` of
        ``ids`` (duplicates summed); see :func:`sparse_step`.

        >>> from storegate import StoreGate
        >>> t = EmbeddingTable(StoreGate("numpy"), "n", "w", 2, 1, init="zeros",
        ...                    optimizer="sgd", lr=0.1)
        >>> t.apply_gradients([1], [[10.0]]); t.gather([1]).tolist()
        [[-1.0]]
        """
        if self.optimizer is None:
            raise InvalidArgumentError(
                f"table {self.data_id}/{self.var} has no optimizer; open it with "
                "optimizer='sgd' or 'adagrad' (or update it with scatter_add).")
        sparse_step(self, ids, grads, optimizer=self.optimizer, lr=self.lr, eps=self.eps)

    def read_range(self, start: int, stop: int, *, state: bool = False) -> np.ndarray:
        """Rows ``start:stop`` (of the weights, or of the optimizer state).

        >>> from storegate import StoreGate
        >>> EmbeddingTable(StoreGate("numpy"), "n", "w", 3, 1, init="zeros").read_range(1, 3)
        array([[0.],
               [0.]], dtype=float32)
        """
        start, stop = self._range(start, stop)
        return (self._check_state() if state else self._weights).read_range(start, stop)

    def write_range(self, start: int, rows: Any, *, state: bool = False) -> None:
        """Overwrite rows ``start:start + len(rows)`` (of the weights or of the state).

        >>> from storegate import StoreGate
        >>> t = EmbeddingTable(StoreGate("numpy"), "n", "w", 3, 1, init="zeros")
        >>> t.write_range(1, np.ones((2, 1))); t.read_range(0, 3).ravel().tolist()
        [0.0, 1.0, 1.0]
        """
        arr = np.asarray(rows)
        if arr.ndim != 2 or arr.shape[1] != self.dim:
            raise ShapeMismatchError(f"rows must have shape (k, {self.dim}), got {arr.shape}.")
        self._range(start, start + len(arr))
        (self._check_state() if state else self._weights).write_range(int(start), arr)

    def _range(self, start: int, stop: int) -> tuple[int, int]:
        start, stop = int(start), int(stop)
        if not 0 <= start <= stop <= self.num_embeddings:
            raise IndexOutOfRangeError(
                f"rows {start}:{stop} are outside the table's {self.num_embeddings} rows.")
        return start, stop

    def to_numpy(self, *, state: bool = False) -> np.ndarray:
        """The whole table (or its optimizer state) as one array (reads every row).

        >>> from storegate import StoreGate
        >>> EmbeddingTable(StoreGate("numpy"), "n", "w", 2, 2, init="zeros").to_numpy().shape
        (2, 2)
        """
        return self.read_range(0, self.num_embeddings, state=state)

    @property
    def has_state(self) -> bool:
        """Whether the table keeps an optimizer state (Adagrad)."""
        return self._state is not None

    @property
    def pending_rows(self) -> int:
        """Rows updated since the last :meth:`flush` (lost if the process dies now)."""
        return int(self._weights.dirty.sum())

    def flush(self) -> None:
        """Commit every update since the last flush (weights and state together, atomically
        where the backend's ``rename_many`` and transactions are: local zarr, hdf5, parquet).

        >>> from storegate import StoreGate
        >>> t = EmbeddingTable(StoreGate("numpy"), "n", "w", 2, 1, init="zeros")
        >>> t.put([0], [[1.0]]); t.pending_rows
        1
        >>> t.flush(); t.pending_rows
        0
        """
        parts = [s for s in (self._weights, self._state) if s is not None]
        if not any(s.has_work for s in parts):
            return
        sg = self.storegate
        db = sg.db
        with db.transaction():
            pairs = [(s.work, s.var) for s in parts if s.prepare_commit()]
            db.flush()
            db.rename_many(self.data_id, self.phase, pairs)
            db.flush()
        for s in parts:
            s.committed()
        logger.debug("table %s/%s flushed", self.data_id, self.var)

    def discard(self) -> None:
        """Drop every update since the last flush (the table reads as committed again).

        >>> from storegate import StoreGate
        >>> t = EmbeddingTable(StoreGate("numpy"), "n", "w", 2, 1, init="zeros")
        >>> t.put([0], [[1.0]]); t.discard(); t.gather([0]).tolist()
        [[0.0]]
        """
        db = self.storegate.db
        for s in (self._weights, self._state):
            if s is not None and s.has_work:
                if db.has_var(self.data_id, self.phase, s.work):
                    db.delete(self.data_id, self.phase, s.work)
                s.committed()

    def __repr__(self) -> str:
        opt = f", optimizer={self.optimizer!r}" if self.optimizer else ""
        return (f"EmbeddingTable({self.data_id}/{self.var}: {self.num_embeddings} x {self.dim} "
                f"{self.dtype}{opt})")
