"""The store side of an import: argument checks, refusing clashes, undoing a failed import.

Every importer writes through an :class:`ImportTarget`: it checks the gate and data_id, refuses
vars that already exist (an import creates its vars, it never appends to yours), and when the
import fails — a damaged file found halfway, a full disk, Ctrl-C — deletes what the import
wrote, so the store is left as it was.

Examples
--------
>>> import numpy as np
>>> from storegate import StoreGate
>>> sg = StoreGate("numpy")
>>> with ImportTarget(sg, "d") as target:
...     target.check_new(["x"], {"train": 2, "valid": 0, "test": 0})
...     target.add("x", np.arange(2), "train")
>>> sg.get_data("x", "train").tolist()
[0, 1]
>>> try:
...     with ImportTarget(sg, "e") as target:
...         target.add("x", np.arange(2), "train")
...         raise OSError("disk full")
... except OSError:
...     pass
>>> sg.get_data_ids()                       # the failed import left nothing behind
['d']
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from ..errors import InconsistentLengthError, InvalidArgumentError, StoregateError, VarExistsError
from ..names import check_name
from ..phases import PHASES

__all__ = ["ImportTarget", "float_cast"]

logger = logging.getLogger(__name__)


def float_cast(dtype: Any) -> np.dtype | None:
    """The ``dtype=`` argument of the importers: a float dtype that floating-point vars are
    cast to (integer and bool vars keep theirs), or ``None``.

    >>> float_cast("float32"), float_cast(None)
    (dtype('float32'), None)
    """
    if dtype is None:
        return None
    try:
        cast = np.dtype(dtype)
    except TypeError:
        cast = None
    if cast is None or cast.kind != "f":
        raise InvalidArgumentError(
            f"dtype={dtype!r} is not a floating-point dtype; use e.g. 'float32' (casts the "
            "float vars; integer and bool vars keep their dtype) or None.")
    return cast


class ImportTarget:
    """Where an import writes, and how it is undone.

    Parameters
    ----------
    storegate
        The :class:`~storegate.StoreGate` to write into.
    data_id
        The data_id to write to (created if needed; it becomes the gate's data_id). ``None``:
        the gate's current data_id.
    """

    def __init__(self, storegate: Any, data_id: str | None) -> None:
        from ..gate import StoreGate

        if not isinstance(storegate, StoreGate):
            raise InvalidArgumentError(
                f"storegate must be a StoreGate, got {type(storegate).__name__}; create one, "
                "e.g. StoreGate('zarr', {'output_dir': 'store.zarr'}).")
        if data_id is not None:
            check_name(data_id, "data_id")
        elif storegate.data_id is None:
            raise InvalidArgumentError(
                "the StoreGate has no data_id; pass data_id='name' to the importer.")
        self.storegate = storegate
        self.data_id: str = data_id if data_id is not None else str(storegate.data_id)
        self.db = storegate.db
        self.existed = self.data_id in self.db.data_ids()
        self.written: set[tuple[str, str]] = set()
        self._previous = storegate.data_id
        self._attrs: dict[str, Any] | None = None
        self._tx: Any = None

    # ------------------------------------------------------------------ checks
    def check_new(self, var_names: Iterable[str], sizes: Mapping[str, int]) -> None:
        """Refuse vars that exist already, and phases whose existing vars have another length.

        Call it before writing anything.
        """
        names = list(var_names)
        for name in names:
            check_name(name, "var")
        if not self.existed:
            return
        for ph in PHASES:
            for var in names:
                if self.db.has_var(self.data_id, ph, var):
                    raise VarExistsError(
                        f"var {var!r} already exists in data_id {self.data_id!r} (phase "
                        f"{ph!r}); the import creates its vars. Delete it first "
                        f"(sg.delete_data({var!r}, phase='all')), import into another data_id, "
                        "or choose other var names.")
        for ph in PHASES:
            present = self.db.var_names(self.data_id, ph)
            if present and sizes.get(ph, 0):
                length = self.db.info(self.data_id, ph, present[0]).length
                if length != sizes[ph]:
                    raise InconsistentLengthError(
                        f"data_id {self.data_id!r} already holds {length} rows in phase "
                        f"{ph!r} (var {present[0]!r}), but the import would add vars of "
                        f"{sizes[ph]} rows there; import into a new data_id, or choose phases "
                        "that match.")

    # ------------------------------------------------------------------ writing
    def __enter__(self) -> ImportTarget:
        # the whole import is one transaction of the store: a kill leaves it wholly imported
        # or not at all (on backends with crash guarantees, see Backend.transaction)
        self._tx = self.db.transaction()
        self._tx.__enter__()
        try:
            if self.existed:  # restored if the import fails (the compile state among them)
                self._attrs = self.db.get_attrs(self.data_id)
            self.storegate.set_data_id(self.data_id)
        except BaseException:
            self._tx.__exit__(*sys.exc_info())
            raise
        return self

    def add(self, var: str, data: Any, phase: str) -> None:
        """Append rows of one var to one phase (recorded, so a failure can undo them)."""
        self.written.add((var, phase))
        self.storegate.add_data(var, data, phase=phase)

    def undo(self) -> None:
        """Delete every var written so far (best effort; used while an error propagates)."""
        for var, ph in sorted(self.written):
            with contextlib.suppress(StoregateError):
                if self.db.has_var(self.data_id, ph, var):
                    self.storegate.delete_data(var, phase=ph, do_compile=False)
        self.written.clear()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            self._undo_failed(exc_type)
        finally:
            self._tx.__exit__(exc_type, exc, tb)

    def _undo_failed(self, exc_type: Any) -> None:
        if exc_type is None:
            return
        logger.info("import into data_id %r failed (%s); removing what it wrote",
                    self.data_id, exc_type.__name__)
        self.undo()
        gate = self.storegate
        with contextlib.suppress(StoregateError):
            if not self.existed:
                if self.data_id in self.db.data_ids():
                    self.db.delete_data_id(self.data_id)
            elif self._attrs is not None:
                self.db.set_attrs(self.data_id, self._attrs)
        gate._meta.pop(self.data_id, None)  # cached compile state: reread from the store
        if self._previous is None or self._previous in self.db.data_ids():
            gate._data_id = self._previous  # the gate selects what it selected before
