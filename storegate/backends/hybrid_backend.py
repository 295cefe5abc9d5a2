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
  exist in storage are dropped; the only copy of a var is never dropped.

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
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from ..errors import DataIdNotFoundError, InvalidArgumentError, VarNotFoundError
from ..indexing import Index
from .base import Backend, VarInfo
from .numpy_backend import NumpyBackend
from .zarr_backend import ZarrBackend

__all__ = ["HybridBackend"]

MODES = ("numpy", "zarr")


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
        self._recent: OrderedDict[tuple[str, str, str], None] = OrderedDict()
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

    def _source(self, data_id: str, phase: str, var: str) -> Backend:
        """Where reads of a var come from: memory if it has a copy, else storage."""
        if self._mem_has(data_id, phase, var):
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

    def memory_bytes(self) -> int:
        """Bytes held by the memory tier."""
        total = 0
        for d in self._mem.data_ids():
            for p in ("train", "valid", "test"):
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
        keys = [(d, p, v) for d in self._mem.data_ids() for p in ("train", "valid", "test")
                for v in self._mem.var_names(d, p)]
        order = [k for k in self._recent if k in keys] + [k for k in keys if k not in self._recent]
        for key in order:
            if used <= self.memory_limit:
                break
            if self._disk_has(*key):  # never drop the only copy
                used -= self._mem.info(*key).nbytes
                self._mem.delete(*key)
                self._recent.pop(key, None)
                dropped.append(key)
        return dropped

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

    def create_data_id(self, data_id: str) -> None:
        self._mem.create_data_id(data_id)
        if self._disk.readonly:
            if data_id not in self._disk.data_ids():
                self._disk.create_data_id(data_id)  # raises DataIdNotFoundError, read-only
            return
        self._disk.create_data_id(data_id)

    def delete_data_id(self, data_id: str) -> None:
        if data_id in self._mem.data_ids():
            self._mem.delete_data_id(data_id)
        if data_id in self._disk.data_ids():
            self._disk.delete_data_id(data_id)

    def get_attrs(self, data_id: str) -> dict[str, Any]:
        if data_id in self._disk.data_ids():
            return self._disk.get_attrs(data_id)
        return self._mem.get_attrs(data_id)

    def set_attrs(self, data_id: str, attrs: dict[str, Any]) -> None:
        self._mem.create_data_id(data_id)
        self._mem.set_attrs(data_id, attrs)
        if not self._disk.readonly and data_id in self._disk.data_ids():
            self._disk.set_attrs(data_id, attrs)

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
        return names

    def has_var(self, data_id: str, phase: str, var: str) -> bool:
        return self._mem_has(data_id, phase, var) or self._disk_has(data_id, phase, var)

    def info(self, data_id: str, phase: str, var: str) -> VarInfo:
        return self._source(data_id, phase, var).info(data_id, phase, var)

    def read(self, data_id: str, phase: str, var: str, index: Index) -> np.ndarray:
        return self._source(data_id, phase, var).read(data_id, phase, var, index)

    def read_many(
        self, data_id: str, phase: str, vars: Sequence[str], index: Index
    ) -> list[np.ndarray]:
        return [self.read(data_id, phase, v, index) for v in vars]

    def _targets(self, data_id: str, phase: str, var: str) -> list[Backend]:
        holders = self.holders(data_id, phase, var)
        if holders:
            return holders
        target = self.tier(self._mode)
        if target is self._mem:
            self._mem.create_data_id(data_id)
        return [target]

    def append(self, data_id: str, phase: str, var: str, data: np.ndarray) -> None:
        for db in self._targets(data_id, phase, var):
            db.append(data_id, phase, var, data)
        if self._mem_has(data_id, phase, var):
            self._touch(data_id, phase, var)
            self.enforce_memory_limit()

    def write(self, data_id: str, phase: str, var: str, index: Index, data: np.ndarray) -> None:
        holders = self.holders(data_id, phase, var)
        if not holders:
            self._source(data_id, phase, var)  # raises VarNotFoundError
        for db in holders:
            db.write(data_id, phase, var, index, data)

    def create(
        self, data_id: str, phase: str, var: str, shape: tuple[int, ...], dtype: np.dtype
    ) -> None:
        for db in self._targets(data_id, phase, var):
            db.create(data_id, phase, var, shape, dtype)

    def delete(self, data_id: str, phase: str, var: str) -> None:
        current = self.tier(self._mode)
        holders = self.holders(data_id, phase, var)
        if not holders:
            self._source(data_id, phase, var)  # raises VarNotFoundError
        target = current if current in holders else holders[0]
        target.delete(data_id, phase, var)
        self._recent.pop((data_id, phase, var), None)

    def rename(self, data_id: str, phase: str, src: str, dst: str) -> None:
        holders = self.holders(data_id, phase, src)
        if not holders:
            self._source(data_id, phase, src)  # raises VarNotFoundError
        if src == dst:
            return
        for db, has in ((self._mem, self._mem_has), (self._disk, self._disk_has)):
            if db in holders:
                db.rename(data_id, phase, src, dst)
            elif has(data_id, phase, dst):
                db.delete(data_id, phase, dst)  # dst's copy in a tier src is not in is stale
