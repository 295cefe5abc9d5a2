"""Immutable selections: ``sg["train"]``, ``sg["train"]["x"]``, ``sg["x"]["train"]``.

multiml's ``sg[...]`` stored the phase and var names on the StoreGate itself, so two
selections interfered (``t = sg['train']; sg['valid']`` changed ``t``). Here every ``[...]``
returns a new :class:`View` holding ``(data_id, phase, var_names)``; views never change and are
safe to share between threads.

An item is taken as

* a phase: ``'train'``, ``'valid'``, ``'test'``, ``'all'``;
* var names: any other str, or a non-empty list/tuple of str (tuple = bound vars, list =
  separate arrays, as in ``get_data``);
* otherwise an index (int, slice, list/array of ints, bool mask, tensor, ``(start, stop)``),
  which reads (``view[idx]``) or writes (``view[idx] = data``) once phase and vars are set.

Examples
--------
>>> import numpy as np
>>> from storegate import StoreGate
>>> sg = StoreGate("numpy", data_id="d")
>>> sg.add_data(("a", "b"), np.arange(10).reshape(5, 2), phase=(3, 1, 1))
>>> train = sg["train"]
>>> train[("a", "b")][0:2].tolist()
[[0, 1], [2, 3]]
>>> sg["b"]["valid"][:].tolist()
[7]
>>> len(train), "a" in train
(3, True)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import InvalidIndexError, SelectionError
from .phases import ALL, PHASES

if TYPE_CHECKING:
    from .gate import StoreGate

__all__ = ["View"]

_PHASE_ITEMS = (*PHASES, ALL)
_ITER_BLOCK = 4096


def _is_var_names(item: Any) -> bool:
    if isinstance(item, str):
        return item not in _PHASE_ITEMS
    if isinstance(item, tuple | list):
        return len(item) > 0 and all(isinstance(x, str) for x in item)
    return False


class View:
    """A read/write selection of one data_id, an optional phase and optional var names.

    Parameters
    ----------
    gate
        The :class:`~storegate.StoreGate` the view reads from.
    data_id
        The data_id, fixed when the view is made.
    phase
        ``'train'``, ``'valid'``, ``'test'``, ``'all'`` or ``None``.
    var_names
        A str, tuple or list of var names, or ``None``.

    Examples
    --------
    >>> from storegate import StoreGate
    >>> sg = StoreGate("numpy", data_id="d")
    >>> sg["train"]
    View(data_id='d', phase='train', var_names=None)
    """

    __slots__ = ("_data_id", "_gate", "_phase", "_var_names")

    def __init__(
        self, gate: StoreGate, data_id: str, phase: str | None = None, var_names: Any = None
    ) -> None:
        self._gate = gate
        self._data_id = data_id
        self._phase = phase
        self._var_names = var_names

    @property
    def data_id(self) -> str:
        """The data_id this view reads."""
        return self._data_id

    @property
    def phase(self) -> str | None:
        """The selected phase, or ``None``."""
        return self._phase

    @property
    def var_names(self) -> Any:
        """The selected var names (str, tuple or list), or ``None``."""
        return self._var_names

    def __repr__(self) -> str:
        return (
            f"View(data_id={self._data_id!r}, phase={self._phase!r}, "
            f"var_names={self._var_names!r})"
        )

    # ------------------------------------------------------------------ selection
    def _need(self, phase: bool, var_names: bool, action: str) -> None:
        missing = []
        if phase and self._phase is None:
            missing.append("a phase ('train', 'valid', 'test' or 'all')")
        if var_names and self._var_names is None:
            missing.append("var names")
        if missing:
            raise SelectionError(
                f"{action} needs {' and '.join(missing)} first, e.g. "
                f"sg['train']['x'][0:10]; this view is {self!r}."
            )

    def __getitem__(self, item: Any) -> Any:
        if isinstance(item, str) and item in _PHASE_ITEMS:
            return View(self._gate, self._data_id, item, self._var_names)
        if _is_var_names(item) or (
            self._var_names is None and isinstance(item, list | tuple) and len(item) == 0
        ):
            return View(self._gate, self._data_id, self._phase, item)
        if isinstance(item, np.ndarray) and item.dtype.kind in "US":
            raise InvalidIndexError(
                f"a numpy array of strings ({item!r}) is not accepted as var names; pass a "
                "list or tuple of str."
            )
        self._need(True, True, "reading rows")
        assert self._phase is not None
        return self._gate._get_data(self._data_id, self._var_names, self._phase, item)

    def __setitem__(self, item: Any, data: Any) -> None:
        if _is_var_names(item):
            self._need(True, False, "assigning a var")
            assert self._phase is not None
            self._gate._update_data(self._data_id, item, data, self._phase, -1, True)
            return
        self._need(True, True, "writing rows")
        assert self._phase is not None
        self._gate._update_data(self._data_id, self._var_names, data, self._phase, item, True)

    def __delitem__(self, item: Any) -> None:
        self._need(True, False, "deleting vars")
        if not _is_var_names(item):
            raise SelectionError(
                f"del view[{item!r}]: item must be a var name or a list of var names; storegate "
                "deletes whole vars, not rows (write a new var without those rows instead)."
            )
        assert self._phase is not None
        self._gate._delete_data(self._data_id, item, self._phase, True)

    # ------------------------------------------------------------------ dunder queries
    def __len__(self) -> int:
        self._need(True, False, "len()")
        assert self._phase is not None
        return self._gate._phase_size(self._data_id, self._phase)

    def __contains__(self, item: object) -> bool:
        self._need(True, False, "'in'")
        assert self._phase is not None
        if not isinstance(item, str):
            return False
        return item in self._gate._var_names(self._data_id, self._phase)

    def __iter__(self) -> Iterator[Any]:
        """Rows of the selected vars (read in blocks), or the var names of a phase view."""
        self._need(True, False, "iteration")
        assert self._phase is not None
        if self._var_names is None:
            yield from self._gate._var_names(self._data_id, self._phase)
            return
        n = self._gate._phase_size(self._data_id, self._phase)
        for start in range(0, n, _ITER_BLOCK):
            stop = min(n, start + _ITER_BLOCK)
            block = self._gate._get_data(
                self._data_id, self._var_names, self._phase, slice(start, stop)
            )
            if isinstance(block, list):
                for rows in zip(*block, strict=True):
                    yield list(rows)
            else:
                yield from block
