"""The contract every storage backend fulfils.

A backend stores *vars* (arrays whose axis 0 is the sample axis) under
``(data_id, phase, var)`` and a small JSON-able attribute dict per data_id. It knows nothing
about phase specs, compile state, torch or PyG: the facade (:class:`storegate.StoreGate`) does
that on top of these methods.

Contract in short (the suite in :mod:`storegate.testing` checks all of it):

* Indexes reach a backend already normalised by :func:`storegate.indexing.normalize`: a
  non-negative ``int``, a ``slice`` with clipped bounds and ``step >= 1``, or a 1-D int64
  array of in-range rows (any order, repeats allowed).
* ``read`` returns a new array the caller owns (never a view of internal storage); for an int
  index the row axis is dropped (shape ``row_shape``, possibly 0-d).
* ``append``/``write`` copy their input (never keep a reference to a caller's array) and store
  dtypes exactly; ``append`` creates the var when it does not exist.
* Var order is insertion order and survives reopening.
* Missing names raise :class:`~storegate.errors.VarNotFoundError` /
  :class:`~storegate.errors.DataIdNotFoundError`; writes to a read-only backend raise
  :class:`~storegate.errors.ReadOnlyError`.
* Instances are picklable and fork-safe: handles open lazily per process.

Examples
--------
>>> from storegate.backends import Backend, get_backend
>>> cls = get_backend("numpy")
>>> issubclass(cls, Backend), cls.name
(True, 'numpy')
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from ..indexing import Index
from ..ragged import RaggedArray

__all__ = ["TEMP_PREFIX", "Backend", "RegionWriter", "Rows", "VarInfo"]

#: What backends read and write: a regular array ``(n, *k)`` or ragged rows.
Rows = np.ndarray | RaggedArray

#: Vars whose names start with this are storegate's temporaries (user names cannot start with
#: "."); backends store them like any var but never list them in ``var_names``.
TEMP_PREFIX = ".sg-tmp-"


@dataclass(frozen=True)
class VarInfo:
    """What a backend knows about a var without reading its data.

    Attributes
    ----------
    name
        The var name.
    shape
        Full shape; ``shape[0]`` is the number of rows.
    dtype
        The stored numpy dtype.
    ragged
        Whether rows have their own length along the first per-row axis. For a ragged var,
        ``shape[1:]`` (``row_shape``) is the shape of one *item*: a row is ``(n_i, *row_shape)``,
        and ``extra["n_values"]`` counts the items of all rows.
    chunks
        Chunk shape on disk, or ``None`` for unchunked storage.
    codec
        A short description of the compression, or ``None``.
    extra
        Backend-specific details (shown by ``storegate info``).

    Examples
    --------
    >>> import numpy as np
    >>> VarInfo("x", (10, 3), np.dtype("f4")).row_shape
    (3,)
    """

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    ragged: bool = False
    chunks: tuple[int, ...] | None = None
    codec: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def length(self) -> int:
        """Number of rows."""
        return int(self.shape[0])

    @property
    def row_shape(self) -> tuple[int, ...]:
        """Shape of one row (``shape[1:]``)."""
        return tuple(self.shape[1:])

    @property
    def nbytes(self) -> int:
        """Size of the data in bytes, uncompressed (a ragged var: values plus offsets)."""
        if self.ragged:
            items = int(self.extra.get("n_values", 0))
            per_item = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
            return items * per_item + 8 * (self.length + 1)
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


class Backend(abc.ABC):
    """Abstract base class of storegate backends.

    Subclasses set :attr:`name`, take their options as keyword arguments in ``__init__``
    (they arrive from ``StoreGate(backend_args=...)``) and implement the abstract methods.
    Optional abilities are announced by class flags; an operation a backend lacks raises
    :class:`~storegate.errors.UnsupportedOperationError` naming the backend.

    Examples
    --------
    >>> from storegate.backends import get_backend
    >>> be = get_backend("numpy")()
    >>> be.create_data_id("d")
    >>> be.append("d", "train", "x", np.arange(3))
    >>> be.read("d", "train", "x", slice(0, 2, 1))
    array([0, 1])
    """

    #: Registry name of the backend (the entry point name).
    name: ClassVar[str] = "backend"
    #: Whether data survive the process (used by tests and ``storegate info``).
    persistent: ClassVar[bool] = False
    #: Whether ragged vars are supported.
    supports_ragged: ClassVar[bool] = False

    # ------------------------------------------------------------------ lifecycle
    @property
    def readonly(self) -> bool:
        """True when the backend was opened read-only."""
        return False

    def describe(self) -> str:
        """A short human description of where the data live (for messages and reprs)."""
        return self.name

    def flush(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Write out anything buffered (appends, metadata). Idempotent."""

    def close(self) -> None:
        """Flush and release handles. The backend may be used again afterwards (it reopens)."""
        self.flush()

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"

    # ------------------------------------------------------------------ locations
    @classmethod
    def guess_can_open(cls, location: str) -> bool:
        """Whether ``location`` looks like a store of this backend.

        Cheap (looks for a marker file, never reads data) and never raises. The ``storegate``
        command and :meth:`storegate.StoreGate.open` ask every installed backend in turn to
        pick one for a path. The default says no: backends without a location (memory) never
        claim one.
        """
        return False

    @classmethod
    def location_args(cls, location: str, mode: str = "r") -> dict[str, Any]:
        """The ``backend_args`` that open the store at ``location`` in ``mode``.

        The default follows the built-in backends' convention (``output_dir`` and ``mode``);
        a backend whose arguments are named otherwise overrides this.

        Examples
        --------
        >>> from storegate.backends import get_backend
        >>> get_backend("zarr").location_args("runs/store.zarr")
        {'output_dir': 'runs/store.zarr', 'mode': 'r'}
        """
        return {"output_dir": location, "mode": mode}

    # ------------------------------------------------------------------ inspection
    def stored_bytes(self, data_id: str, phase: str, var: str) -> int | None:
        """Bytes the var occupies in storage (after compression), or ``None`` if unknown.

        ``storegate info`` shows it beside the uncompressed size. Memory backends return
        ``None`` (the default).
        """
        return None

    def check(self, data_id: str, phase: str, var: str) -> list[str]:
        """Storage-level problems of a var that reading it back would not reveal.

        ``storegate check`` reads every var fully and compares it with :meth:`info` itself;
        this hook adds what only the backend can see: a chunk file that is missing (zarr
        would silently return the fill value), a manifest whose row counts disagree with the
        data files, offsets of a ragged var that point past its values. Each problem is one
        line of text (without the data_id/phase/var, which the caller adds). Must not raise
        for a damaged var: report the damage instead. The default finds nothing.
        """
        return []

    # ------------------------------------------------------------------ data_ids
    @abc.abstractmethod
    def data_ids(self) -> list[str]:
        """Names of the datasets in the store, in creation order where known."""

    @abc.abstractmethod
    def create_data_id(self, data_id: str) -> None:
        """Create an empty dataset with its three phases; a no-op if it exists."""

    @abc.abstractmethod
    def delete_data_id(self, data_id: str) -> None:
        """Delete a dataset and all its vars."""

    @abc.abstractmethod
    def get_attrs(self, data_id: str) -> dict[str, Any]:
        """The JSON-able attributes stored for a data_id (a copy)."""

    @abc.abstractmethod
    def set_attrs(self, data_id: str, attrs: dict[str, Any]) -> None:
        """Replace the attributes of a data_id (persisted by persistent backends)."""

    # ------------------------------------------------------------------ vars
    @abc.abstractmethod
    def var_names(self, data_id: str, phase: str) -> list[str]:
        """Var names of one phase in insertion order."""

    def has_var(self, data_id: str, phase: str, var: str) -> bool:
        """Whether the var exists."""
        return var in self.var_names(data_id, phase)

    def holders(self, data_id: str, phase: str, var: str) -> list[Backend]:
        """The backends that store a copy of the var: ``[self]``, or each tier of a tiered
        backend (whole-var rewrites then run in every copy's own storage)."""
        return [self]

    @abc.abstractmethod
    def info(self, data_id: str, phase: str, var: str) -> VarInfo:
        """Shape, dtype and layout of a var, without reading its data."""

    def lengths(self, data_id: str, phase: str) -> dict[str, int]:
        """Rows of every var of a phase, in var order (what ``compile`` checks).

        The default asks :meth:`info` per var; a backend whose per-var metadata lookups are
        slow overrides it with one bulk read.
        """
        return {v: self.info(data_id, phase, v).length for v in self.var_names(data_id, phase)}

    @abc.abstractmethod
    def read(self, data_id: str, phase: str, var: str, index: Index) -> Any:
        """Read rows of a var at a normalised index (see the module docstring): an ndarray, or
        for a ragged var a :class:`~storegate.ragged.RaggedArray` (one ``(n_i, *k)`` ndarray
        for an int index)."""

    def read_many(
        self, data_id: str, phase: str, vars: Sequence[str], index: Index
    ) -> list[Any]:
        """Read several vars of one phase at the same index (one batched read if possible)."""
        with self.batch():
            return [self.read(data_id, phase, v, index) for v in vars]

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """A block of reads that belong to one batch (the vars of a ``get_data`` call).

        A hook, a no-op by default: a backend may defer background work its reads start (an
        arena fill) to the end of the block, so it does not compete with the batch's reads.
        """
        yield

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """A block of writes that a crash leaves wholly applied or not at all.

        :class:`~storegate.StoreGate` runs each of its write operations (``add_data``,
        ``update_data``, ``create_empty``, ``delete_data``, a transform, a tier copy, metadata)
        in one block. Blocks nest: an inner block joins the outer one. A persistent backend
        records what the block changes and commits it at the end of the outermost block (or,
        while appended rows are still buffered in memory, at the next :meth:`flush`), so after a
        kill the store reopens at the last commit: a state between two operations. If the
        block raises and nothing else was uncommitted, its changes are undone at once.

        The default is a no-op (memory backends; a backend without crash guarantees).
        """
        yield

    @abc.abstractmethod
    def append(self, data_id: str, phase: str, var: str, data: Rows) -> None:
        """Append rows to a var, creating it (with ``data``'s dtype) if it does not exist; a
        :class:`~storegate.ragged.RaggedArray` creates or extends a ragged var (backends with
        ``supports_ragged``)."""

    @abc.abstractmethod
    def write(self, data_id: str, phase: str, var: str, index: Index, data: Rows) -> None:
        """Overwrite rows in place. ``data`` has shape ``(count, *row_shape)``, or
        ``row_shape`` for an int index; it has already been cast to the var's dtype."""

    @abc.abstractmethod
    def create(
        self, data_id: str, phase: str, var: str, shape: tuple[int, ...], dtype: np.dtype
    ) -> None:
        """Create a var of the given full shape with unspecified contents."""

    @abc.abstractmethod
    def delete(self, data_id: str, phase: str, var: str) -> None:
        """Delete a var (raise ``VarNotFoundError`` if it does not exist)."""

    @abc.abstractmethod
    def rename(self, data_id: str, phase: str, src: str, dst: str) -> None:
        """Rename var ``src`` to ``dst``, replacing ``dst`` if it exists.

        ``dst`` keeps its place in the var order if it existed, else takes ``src``'s place.
        Whole-var transforms (``astype``, ``shuffle``, ...) write a new var under a temporary
        name and swap it in with this method, so it should be as close to atomic as the
        storage allows.
        """

    def rename_many(self, data_id: str, phase: str, pairs: Sequence[tuple[str, str]]) -> None:
        """Rename several vars (``(src, dst)`` pairs) as one swap, as :meth:`rename` does each.

        Whole-var rewrites of several vars that must stay aligned (``shuffle``) swap them in
        with this method. The default renames one pair after another; a persistent backend
        should make the group all-or-nothing across a crash (the zarr backend does).
        """
        for src, dst in pairs:
            self.rename(data_id, phase, src, dst)

    def _check_writable(self) -> None:
        if self.readonly:
            from ..errors import ReadOnlyError

            raise ReadOnlyError(
                f"{self.describe()} was opened read-only (mode='r'); reopen it with "
                "backend_args={'mode': 'a'} to write."
            )

    # ------------------------------------------------------------------ parallel region writes
    def region_writer(self, data_id: str, phase: str, var: str) -> RegionWriter | None:
        """A small picklable :class:`RegionWriter` that writes rows of a var from any process,
        or ``None`` when the backend cannot take parallel writes (the default).

        :func:`storegate.dask.from_dask` uses it to let the workers of a dask cluster write
        their blocks straight into storage. The var must exist with its final shape (made by
        :meth:`create`) and be regular (not ragged). The writer bypasses the backend's writer
        lock and undo journal: the caller holds the lock, and makes the var visible to readers
        only after every write succeeded (``from_dask`` writes a temporary var and renames
        it). When every write is done, the caller calls :meth:`end_region_writes` in its own
        process.

        Examples
        --------
        >>> from storegate.backends import get_backend
        >>> be = get_backend("numpy")()
        >>> be.create_data_id("d"); be.create("d", "train", "x", (4,), np.dtype("f8"))
        >>> be.region_writer("d", "train", "x") is None   # memory: no writes from elsewhere
        True
        """
        return None

    def end_region_writes(self, data_id: str, phase: str, var: str) -> None:  # noqa: B027
        """Called once, in the process that asked for :meth:`region_writer`, after every row
        of the var has been written through it: drop handles and caches that may show the
        var's old files, and record that the var is complete. A no-op by default."""


@runtime_checkable
class RegionWriter(Protocol):
    """Writes rows of one var from any process (see :meth:`Backend.region_writer`).

    Instances are small and picklable. :meth:`write` may be called concurrently, from any
    threads and processes, for disjoint row ranges that start at a multiple of
    :attr:`chunk_rows` and end at a multiple of it or at the var's last row, so that no two
    calls touch the same stored chunk.

    Examples
    --------
    >>> class Printer:
    ...     chunk_rows = 2
    ...     def write(self, start: int, rows: np.ndarray) -> None:
    ...         print(start, rows.tolist())
    >>> isinstance(Printer(), RegionWriter)
    True
    """

    #: Rows per stored chunk: every write starts at a multiple of it.
    chunk_rows: int

    def write(self, start: int, rows: np.ndarray) -> None:
        """Store ``rows`` (the var's dtype and row shape) as rows ``start:start + len(rows)``."""
