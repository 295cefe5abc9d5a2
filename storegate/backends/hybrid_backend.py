"""The hybrid backend: a memory tier (numpy) over a storage tier (zarr), seen as one store.

multiml's hybrid backend routed every call to whichever tier ``mode`` named, so the two tiers
could not see each other: after ``to_memory`` the vars still in storage vanished from
``get_var_names``, ``len`` and ``get_data``. Here there is one view:

* a var may live in storage, in memory, or in both (``to_memory`` copies, it does not move);
* reads, ``info``, ``var_names``, ``compile`` see both tiers; a var present in memory is read
  from memory;
* ``mode`` (``set_mode('numpy'|'zarr')``) chooses where *new* vars go; writes and appends to an
  existing var go to every tier that holds it, so copies never diverge;
* ``delete`` removes the var from the current mode's tier if it is there, otherwise from the
  tier that has it (so a var you can see, you can delete);
* ``memory_limit`` bounds the memory tier: least recently used memory copies whose data also
  exist in storage are dropped; the only copy of a var is never dropped. A dropped copy still
  counts for ``delete``: deleting the var in mode ``'zarr'`` reloads it into memory before the
  storage copy goes (``to_memory`` + delete never loses data), in mode ``'numpy'`` it only
  forgets the dropped copy;
* while the memory tier holds vars that storage does not, the storage tier's copy of the
  dataset attributes (where the facade keeps its compile metadata) is cleared, so a reopened
  store recompiles from what storage holds instead of trusting sizes that counted them.

See ``docs/backends/hybrid.md``.

Examples
--------
>>> import tempfile, numpy as np
>>> from storegate import StoreGate
>>> sg = StoreGate("hybrid", {"output_dir": tempfile.mkdtemp() + "/h.zarr"}, data_id="d")
>>> sg.add_data(("a", "b"), np.arange(20).reshape(10, 2), phase=(0.8, 0.1, 0.1))
>>> sg.to_memory("a", phase="all")          # a copy of 'a' in memory; 'b' stays on disk
>>> sg.db.tiers_of("d", "train", "a"), sg.db.tiers_of("d", "train", "b")
(['numpy', 'zarr'], ['zarr'])
>>> sg.get_var_names("train"), sg["train"][("a", "b")][7].tolist()
(['a', 'b'], [14, 15])
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, ClassVar

import numpy as np

from ..errors import DataIdNotFoundError, InvalidArgumentError, VarNotFoundError
from ..indexing import Index
from ..phases import PHASES
from .base import TEMP_PREFIX, Backend, VarInfo
from .numpy_backend import NumpyBackend
from .zarr_backend import ZarrBackend

__all__ = ["HybridBackend"]

MODES = ("numpy", "zarr")

_Key = tuple[str, str, str]


class HybridBackend(Backend):
    """A numpy memory tier over a zarr storage tier with one unified view.

    Parameters
    ----------
    output_dir, chunk, compressor, mode
        The storage tier's options (see :class:`~storegate.backends.zarr_backend.ZarrBackend`;
        ``mode`` is the zarr open mode, as in multiml).
    memory_limit
        Bytes the memory tier may hold before least recently used copies that also exist in
        storage are dropped (``None``: no limit).
    **zarr_options
        Further options for the storage tier (``chunk_bytes``, ``cache_bytes``, ...).

    Examples
    --------
    >>> import tempfile
    >>> be = HybridBackend(output_dir=tempfile.mkdtemp() + "/h.zarr")
    >>> be.mode
    'zarr'
    """

    name: ClassVar[str] = "hybrid"
    persistent: ClassVar[bool] = True
    supports_ragged: ClassVar[bool] = True

    def __init__(
        self,
        output_dir: Any = None,
        chunk: int | None = None,
        compressor: Any = "default",
        mode: str = "a",
        memory_limit: int | None = None,
        **zarr_options: Any,
    ) -> None:
        if memory_limit is not None and (not isinstance(memory_limit, int) or memory_limit < 0):
            raise InvalidArgumentError(
                f"memory_limit must be a number of bytes (int >= 0) or None, got "
                f"{memory_limit!r}."
            )
        self._disk = ZarrBackend(output_dir=output_dir, chunk=chunk, compressor=compressor,
                                 mode=mode, **zarr_options)
        self._mem = NumpyBackend()
        self._mode = "zarr"  # multiml's default: writes go to storage
        self.memory_limit = memory_limit
        self._recent: OrderedDict[_Key, None] = OrderedDict()
        # memory copies known to hold the same data as the storage copy (the only evictable ones)
        self._mirrors: set[_Key] = set()
        # mirrors dropped by memory_limit: for ``delete`` they still count as a memory copy
        self._evicted: set[_Key] = set()
        # data_ids whose attrs were set through this instance (the memory tier has the view's)
        self._local_attrs: set[str] = set()
        # the view's var order per (data_id, phase): insertion order, kept when a var moves
        # between tiers (each tier alone would put a var copied into it last)
        self._order: dict[tuple[str, str], list[str]] = {}
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ tiers
    @property
    def mode(self) -> str:
        """The tier new vars are written to: ``'numpy'`` (memory) or ``'zarr'`` (storage)."""
        return self._mode

    def set_mode(self, mode: str) -> None:
        """Choose the tier new vars go to. A bad mode raises and changes nothing."""
        if mode not in MODES:
            raise InvalidArgumentError(
                f"unknown hybrid mode {mode!r}; use 'numpy' (memory) or 'zarr' (storage)."
            )
        self._mode = mode

    def tier(self, name: str) -> Backend:
        """The backend of one tier, ``'numpy'`` or ``'zarr'``."""
        if name == "numpy":
            return self._mem
        if name == "zarr":
            return self._disk
        raise InvalidArgumentError(f"unknown tier {name!r}; the tiers are 'numpy' and 'zarr'.")

    def tiers_of(self, data_id: str, phase: str, var: str) -> list[str]:
        """The tiers holding a copy of the var, memory first."""
        out = []
        if data_id in self._mem.data_ids() and self._mem.has_var(data_id, phase, var):
            out.append("numpy")
        if self._disk_has(data_id, phase, var):
            out.append("zarr")
        return out

    def holders(self, data_id: str, phase: str, var: str) -> list[Backend]:
        return [self.tier(t) for t in self.tiers_of(data_id, phase, var)]

    def _disk_has(self, data_id: str, phase: str, var: str) -> bool:
        try:
            return self._disk.has_var(data_id, phase, var)
        except DataIdNotFoundError:
            return False

    def _mem_has(self, data_id: str, phase: str, var: str) -> bool:
        return data_id in self._mem.data_ids() and self._mem.has_var(data_id, phase, var)

    def _source(self, data_id: str, phase: str, var: str, touch: bool = False) -> Backend:
        """Where reads of a var come from: memory if it has a copy, else storage. ``touch``:
        count this as a use of the memory copy (data reads do; ``info`` does not)."""
        if self._mem_has(data_id, phase, var):
            if touch:
                self._touch(data_id, phase, var)
            return self._mem
        if self._disk_has(data_id, phase, var):
            return self._disk
        raise VarNotFoundError(
            f"var {var!r} does not exist in data_id {data_id!r}, phase {phase!r} (in memory or "
            f"in {self._disk.describe()}); vars there: {self.var_names(data_id, phase)}."
        )

    # ------------------------------------------------------------------ memory limit
    def _touch(self, data_id: str, phase: str, var: str) -> None:
        if self.memory_limit is None:
            return
        key = (data_id, phase, var)
        with self._lock:
            self._recent.pop(key, None)
            self._recent[key] = None

    def _forget(self, key: _Key) -> None:
        """Drop the bookkeeping of a var's memory copy (it was deleted, replaced or moved)."""
        with self._lock:
            self._recent.pop(key, None)
            self._mirrors.discard(key)
            self._evicted.discard(key)

    def note_copy(self, data_id: str, phase: str, var: str, mirror: bool) -> None:
        """Record that ``to_memory``/``to_storage`` just wrote a copy of a var into one tier.

        ``mirror`` says the new copy holds the same data as the var's copy in the other tier
        (a plain copy: no callback, same name). Only such memory copies may be dropped by
        ``memory_limit``; a copy made through a callback or under another name is kept, since
        storage does not hold its data.
        """
        key = (data_id, phase, var)
        with self._lock:
            self._evicted.discard(key)
            if mirror and self._mem_has(*key) and self._disk_has(*key):
                self._mirrors.add(key)
            else:
                self._mirrors.discard(key)
        if self._mem_has(*key):
            self._touch(*key)

    def memory_bytes(self) -> int:
        """Bytes held by the memory tier."""
        total = 0
        for d in self._mem.data_ids():
            for p in PHASES:
                for v in self._mem.var_names(d, p):
                    total += self._mem.info(d, p, v).nbytes
        return total

    def enforce_memory_limit(self) -> list[tuple[str, str, str]]:
        """Drop least recently used memory copies that also exist in storage until the memory
        tier fits ``memory_limit``. Returns what was dropped."""
        dropped: list[tuple[str, str, str]] = []
        if self.memory_limit is None:
            return dropped
        used = self.memory_bytes()
        if used <= self.memory_limit:
            return dropped
        keys = [(d, p, v) for d in self._mem.data_ids() for p in PHASES
                for v in self._mem.var_names(d, p)]
        present = set(keys)
        # least recently used first; copies never touched count as the oldest
        order = [k for k in keys if k not in self._recent] + [
            k for k in self._recent if k in present]
        for key in order:
            if used <= self.memory_limit:
                break
            if key in self._mirrors and self._disk_has(*key):  # never drop the only copy
                used -= self._mem.info(*key).nbytes
                self._mem.delete(*key)
                self._forget(key)
                with self._lock:
                    self._evicted.add(key)
                dropped.append(key)
        return dropped

    def _memory_only(self, data_id: str) -> bool:
        """Whether the memory tier holds a var of ``data_id`` that storage does not."""
        if data_id not in self._mem.data_ids():
            return False
        return any(not self._disk_has(data_id, p, v)
                   for p in PHASES for v in self._mem.var_names(data_id, p))

    # ------------------------------------------------------------------ Backend API
    @property
    def readonly(self) -> bool:
        return self._disk.readonly and self._mode == "zarr"

    def describe(self) -> str:
        return f"hybrid (memory over {self._disk.describe()})"

    def flush(self) -> None:
        self._disk.flush()

    def close(self) -> None:
        self._disk.close()

    def data_ids(self) -> list[str]:
        disk = self._disk.data_ids()
        return disk + [d for d in self._mem.data_ids() if d not in disk]

    def _require_data_id(self, data_id: str) -> None:
        if data_id not in self._mem.data_ids() and data_id not in self._disk.data_ids():
            raise DataIdNotFoundError(
                f"data_id {data_id!r} does not exist in {self.describe()}; existing: "
                f"{self.data_ids()}."
            )

    def create_data_id(self, data_id: str) -> None:
        if self._disk.readonly:
            # a read-only storage tier: a new data_id can only live in memory (mode 'numpy')
            if data_id not in self._disk.data_ids() and self._mode == "zarr":
                self._disk.create_data_id(data_id)  # raises DataIdNotFoundError, read-only
        else:
            self._disk.create_data_id(data_id)
        self._mem.create_data_id(data_id)

    def delete_data_id(self, data_id: str) -> None:
        self._require_data_id(data_id)
        if data_id in self._disk.data_ids():
            self._disk.delete_data_id(data_id)  # first: it is the one that may refuse
        if data_id in self._mem.data_ids():
            self._mem.delete_data_id(data_id)
        for key in [k for k in {*self._recent, *self._mirrors, *self._evicted}
                    if k[0] == data_id]:
            self._forget(key)
        self._local_attrs.discard(data_id)
        for phase_key in [k for k in self._order if k[0] == data_id]:
            del self._order[phase_key]

    def get_attrs(self, data_id: str) -> dict[str, Any]:
        if data_id in self._local_attrs and data_id in self._mem.data_ids():
            return self._mem.get_attrs(data_id)
        if data_id in self._disk.data_ids():
            return self._disk.get_attrs(data_id)
        return self._mem.get_attrs(data_id)

    def set_attrs(self, data_id: str, attrs: dict[str, Any]) -> None:
        self._check_writable()
        self._require_data_id(data_id)
        if not self._disk.readonly and data_id in self._disk.data_ids():
            # Storage gets the attrs only while it holds the whole view: attrs describing
            # memory-only vars would be wrong for a reopened store, which cannot see them.
            self._disk.set_attrs(data_id, {} if self._memory_only(data_id) else attrs)
        self._mem.create_data_id(data_id)
        self._mem.set_attrs(data_id, attrs)
        self._local_attrs.add(data_id)

    def var_names(self, data_id: str, phase: str) -> list[str]:
        try:
            names = self._disk.var_names(data_id, phase)
        except DataIdNotFoundError:
            names = []
        if data_id in self._mem.data_ids():
            names += [v for v in self._mem.var_names(data_id, phase) if v not in names]
        elif not names and data_id not in self._disk.data_ids():
            raise DataIdNotFoundError(
                f"data_id {data_id!r} does not exist in {self.describe()}; existing: "
                f"{self.data_ids()}."
            )
        # Vars keep the place they had in this view; new ones (also those written to a tier
        # directly, e.g. by to_memory) come last. Storage's persisted order seeds it.
        with self._lock:
            order = self._order.setdefault((data_id, phase), [])
            present = set(names)
            order[:] = [v for v in order if v in present]
            known = set(order)
            order.extend(v for v in names if v not in known)
            return list(order)

    def _order_of(self, data_id: str, phase: str) -> list[str]:
        """The view's order list of a phase, brought up to date."""
        self.var_names(data_id, phase)
        return self._order[data_id, phase]

    def has_var(self, data_id: str, phase: str, var: str) -> bool:
        return self._mem_has(data_id, phase, var) or self._disk_has(data_id, phase, var)

    def info(self, data_id: str, phase: str, var: str) -> VarInfo:
        return self._source(data_id, phase, var).info(data_id, phase, var)

    def batch(self) -> Any:
        return self._disk.batch()

    def transaction(self) -> Any:
        """The storage tier's transaction (the memory tier does not outlive the process)."""
        return self._disk.transaction()

    def lengths(self, data_id: str, phase: str) -> dict[str, int]:
        names = self.var_names(data_id, phase)
        mem = set(self._mem.var_names(data_id, phase)) if data_id in self._mem.data_ids() else set()
        disk: dict[str, int] = {}
        if any(v not in mem for v in names):
            disk = self._disk.lengths(data_id, phase)
        return {v: self._mem.info(data_id, phase, v).length if v in mem
                else disk[v] if v in disk else self.info(data_id, phase, v).length
                for v in names}

    def read(self, data_id: str, phase: str, var: str, index: Index) -> Any:
        return self._source(data_id, phase, var, touch=True).read(data_id, phase, var, index)

    def _targets(self, data_id: str, phase: str, var: str) -> list[Backend]:
        """The tiers a write to the var goes to: every holder, storage first (it is the one
        that may refuse), or the current mode's tier for a new var."""
        holders = self.holders(data_id, phase, var)
        if not holders:
            self._require_data_id(data_id)
            target = self.tier(self._mode)
            if target is self._mem:
                self._mem.create_data_id(data_id)
            holders = [target]
            if not var.startswith(TEMP_PREFIX):  # a new var of the view: it comes last
                order = self._order_of(data_id, phase)
                with self._lock:
                    order.append(var)
        holders = sorted(holders, key=lambda db: db is self._mem)
        for db in holders:
            db._check_writable()
        return holders

    def append(self, data_id: str, phase: str, var: str, data: Any) -> None:
        for db in self._targets(data_id, phase, var):
            db.append(data_id, phase, var, data)
        if self._mem_has(data_id, phase, var):
            self._touch(data_id, phase, var)
            self.enforce_memory_limit()

    def write(self, data_id: str, phase: str, var: str, index: Index, data: Any) -> None:
        if not self.has_var(data_id, phase, var):
            self._source(data_id, phase, var)  # raises VarNotFoundError
        for db in self._targets(data_id, phase, var):
            db.write(data_id, phase, var, index, data)

    def create(
        self, data_id: str, phase: str, var: str, shape: tuple[int, ...], dtype: np.dtype
    ) -> None:
        for db in self._targets(data_id, phase, var):
            db.create(data_id, phase, var, shape, dtype)

    def delete(self, data_id: str, phase: str, var: str) -> None:
        """Delete the var from the current mode's tier if it holds a copy, else from the tier
        that does. A memory copy dropped by ``memory_limit`` still counts as a copy: in mode
        ``'numpy'`` deleting forgets it (the storage copy stays, as for a kept memory copy); in
        mode ``'zarr'`` it is reloaded into memory before the storage copy is deleted."""
        key = (data_id, phase, var)
        holders = self.tiers_of(*key)
        if not holders:
            self._source(*key)  # raises VarNotFoundError
        evicted = key in self._evicted and "numpy" not in holders
        if self._mode == "numpy" and evicted:
            self._forget(key)
            return
        target = self._mode if self._mode in holders else holders[0]
        if target == "zarr" and evicted:
            self._disk._check_writable()
            info = self._disk.info(*key)
            data = self._disk.read(*key, slice(0, info.length, 1))
            self._mem.create_data_id(data_id)
            if info.length:
                self._mem.append(*key, data)
            else:
                self._mem.create(*key, info.shape, info.dtype)
            try:
                self._disk.delete(*key)
            except BaseException:
                self._mem.delete(*key)
                raise
        else:
            self.tier(target).delete(*key)
        self._forget(key)
        if self._mem_has(*key):
            self._touch(*key)
        elif not self._disk_has(*key):  # gone from the view: a re-added var comes last
            with self._lock:
                order = self._order.get((data_id, phase))
                if order is not None and var in order:
                    order.remove(var)

    def rename(self, data_id: str, phase: str, src: str, dst: str) -> None:
        holders = self.holders(data_id, phase, src)
        if not holders:
            self._source(data_id, phase, src)  # raises VarNotFoundError
        if src == dst:
            return
        for db, has in ((self._disk, self._disk_has), (self._mem, self._mem_has)):
            if db in holders or has(data_id, phase, dst):
                db._check_writable()  # before anything changes
        order = [v for v in self._order_of(data_id, phase) if v != src]
        if dst not in order:  # dst keeps its place, else takes src's (temporaries: the end)
            old_order = self._order[data_id, phase]
            order.insert(old_order.index(src) if src in old_order else len(order), dst)
        for db, has in ((self._disk, self._disk_has), (self._mem, self._mem_has)):
            if db in holders:
                db.rename(data_id, phase, src, dst)
            elif has(data_id, phase, dst):
                db.delete(data_id, phase, dst)  # dst's copy in a tier src is not in is stale
        old, new = (data_id, phase, src), (data_id, phase, dst)
        with self._lock:
            mirror, evicted = old in self._mirrors, old in self._evicted
            recent = old in self._recent
        self._forget(old)
        self._forget(new)
        with self._lock:
            self._order[data_id, phase] = order
            if mirror:
                self._mirrors.add(new)
            if evicted:
                self._evicted.add(new)
            if recent:
                self._recent[new] = None

    # ------------------------------------------------------------------ health check, sizes
    def check(self, data_id: str, phase: str, var: str) -> list[str]:
        """The storage tier's check of the var (a var only in memory has nothing to check).

        Examples
        --------
        >>> import tempfile
        >>> be = HybridBackend(output_dir=tempfile.mkdtemp() + "/h.zarr")
        >>> be.create_data_id("d"); be.append("d", "train", "x", np.arange(5))
        >>> be.check("d", "train", "x")
        []
        """
        if self._disk_has(data_id, phase, var):
            return self._disk.check(data_id, phase, var)
        self._source(data_id, phase, var)  # raises VarNotFoundError for an unknown var
        return []

    def stored_bytes(self, data_id: str, phase: str, var: str) -> int | None:
        """Bytes of the storage tier's copy of the var, or ``None`` if only memory holds it.

        Examples
        --------
        >>> import tempfile
        >>> be = HybridBackend(output_dir=tempfile.mkdtemp() + "/h.zarr")
        >>> be.create_data_id("d"); be.append("d", "train", "x", np.arange(1, 6)); be.flush()
        >>> be.stored_bytes("d", "train", "x") > 0
        True
        """
        if self._disk_has(data_id, phase, var):
            return self._disk.stored_bytes(data_id, phase, var)
        self._source(data_id, phase, var)
        return None
