"""``StoreGate``: the facade users talk to, with multiml's public API.

The facade turns var-name forms (str / tuple / list), phase specs and user indexes into plain
backend calls, keeps the compile metadata (persisted in the store, so a reopened store needs no
recompile) and knows nothing about any concrete backend.

Examples
--------
>>> import numpy as np
>>> from storegate import StoreGate
>>> sg = StoreGate(backend="numpy", data_id="toy-dataset")
>>> phase = (0.8, 0.1, 0.1)
>>> sg.add_data("x0", np.array(range(5)), phase)
>>> sg.add_data("x1", np.array(range(5)), phase)
>>> sg.compile()
>>> sg["train"]["x0"][:]
array([0, 1, 2, 3])
>>> sg["train"][("x0", "x1")][0:2]
array([[0, 0],
       [1, 1]])
>>> sg.get_metadata()["sizes"]
{'train': 4, 'valid': 0, 'test': 1, 'all': 5}
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import logging
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from . import indexing, transforms
from .arrays import (
    as_array,
    cast_for_write,
    check_row_shape,
    check_storable_dtype,
    native,
    native_dtype,
)
from .backends.base import TEMP_PREFIX, Backend, VarInfo
from .backends.registry import get_backend
from .errors import (
    BackendNotFoundError,
    DtypeError,
    InconsistentLengthError,
    InvalidArgumentError,
    InvalidNameError,
    InvalidPhaseError,
    MissingDependencyError,
    NoDataIdError,
    SelectionError,
    ShapeMismatchError,
    StoreLockedError,
    UnsupportedOperationError,
    VarExistsError,
    VarNotFoundError,
)
from .names import check_name
from .phases import ALL, PHASES, check_phase, phase_list, split
from .ragged import RaggedArray, is_ragged_input
from .views import View

__all__ = ["StoreGate"]

logger = logging.getLogger("storegate")

_META_KEY = "storegate"
_META_VERSION = 1


@dataclass
class _Meta:
    """Compile state of one data_id (what ``get_metadata`` reports)."""

    compiled: bool
    total_events: list[int]
    valid_phases: list[str]

    def sizes(self) -> dict[str, int]:
        t = self.total_events
        return {"train": t[0], "valid": t[1], "test": t[2], "all": sum(t)}

    def as_dict(self) -> dict[str, Any]:
        return {
            "compiled": self.compiled,
            "total_events": list(self.total_events),
            "sizes": self.sizes(),
            "valid_phases": list(self.valid_phases),
        }


@dataclass
class _Op:
    """One planned backend write; a call validates all of its ops before running any."""

    kind: str  # "append" | "write" | "create"
    phase: str
    var: str
    data: np.ndarray | None = None
    index: indexing.Index | None = None
    shape: tuple[int, ...] | None = None
    dtype: np.dtype | None = None


def _make_backend(backend: Any, backend_args: dict[str, Any]) -> tuple[str, Backend]:
    if isinstance(backend, Backend):
        if backend_args:
            raise InvalidArgumentError(
                "backend_args cannot be applied to an already constructed backend instance; "
                "pass the class (or its name) with backend_args, or configure the instance."
            )
        return backend.name, backend
    if isinstance(backend, type) and issubclass(backend, Backend):
        cls = backend
    elif isinstance(backend, str):
        cls = get_backend(backend)
    else:
        raise BackendNotFoundError(
            f"backend must be a backend name (str), a Backend subclass or instance, got "
            f"{backend!r}."
        )
    _check_backend_args(cls, backend_args)
    return cls.name, cls(**backend_args)


def _check_backend_args(cls: type[Backend], backend_args: dict[str, Any]) -> None:
    """Refuse options the backend's constructor does not take, with a "did you mean"."""
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    known = [n for n, p in params.items() if n != "self" and p.kind in (
        inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]
    for key in backend_args:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            guess = f" Did you mean {close[0]!r}?" if close else ""
            raise InvalidArgumentError(
                f"backend {cls.name!r} has no option {key!r}.{guess} Its options: "
                f"{', '.join(known)} (see help({cls.__module__}.{cls.__qualname__}))."
            )


def _flat_names(var_names: Any) -> list[str]:
    """Every var name in a str / tuple / (nested) list of var names."""
    if isinstance(var_names, str):
        return [var_names]
    if isinstance(var_names, tuple | list):
        return [n for v in var_names for n in _flat_names(v)]
    raise InvalidArgumentError(
        f"{type(var_names)} is not supported for var_names ({var_names!r}); give a str, a tuple "
        "of str or a list."
    )


def _as_data(column: Any, what: str) -> np.ndarray | RaggedArray:
    """User data for one var: a regular ndarray, or a RaggedArray for ragged input (a list of
    arrays whose first axes differ, an awkward array, a RaggedArray)."""
    if is_ragged_input(column):
        if isinstance(column, RaggedArray):
            rag = column
        elif type(column).__module__.partition(".")[0] == "awkward":
            rag = RaggedArray.from_awkward(column, what)
        else:
            rag = RaggedArray.from_list(column, what)
        if not rag.values.dtype.isnative:
            rag = RaggedArray(native(rag.values), rag.offsets, validate=False)
        return rag
    return as_array(column, what)


def _n_rows(data: np.ndarray | RaggedArray) -> int:
    return len(data) if isinstance(data, RaggedArray) else int(data.shape[0])


def _rows(data: np.ndarray | RaggedArray, sel: slice | np.ndarray) -> np.ndarray | RaggedArray:
    """Rows of regular or ragged data at a slice (step 1) or an index array."""
    if isinstance(data, RaggedArray):
        if isinstance(sel, slice):
            return data.slice(sel.start or 0, sel.stop if sel.stop is not None else len(data))
        return data.take(sel)
    return data[sel]


def _ragged_from_regular(arr: np.ndarray, var: str) -> RaggedArray:
    """Regular rows ``(N, m, *k)`` as N ragged rows of length m (for a ragged var)."""
    if arr.ndim < 2:
        raise ShapeMismatchError(
            f"var {var!r} is ragged: each row is an array (n_i, ...), but the data have shape "
            f"{arr.shape}; pass a list of arrays, an awkward array or a RaggedArray."
        )
    n, m = arr.shape[0], arr.shape[1]
    return RaggedArray(arr.reshape((n * m, *arr.shape[2:])),
                       np.arange(0, n * m + 1, max(m, 1), dtype=np.int64)[: n + 1] if m else
                       np.zeros(n + 1, dtype=np.int64), validate=False)


def _no_ragged_tuple(infos: Sequence[VarInfo]) -> None:
    ragged = [i.name for i in infos if i.ragged]
    if ragged:
        raise ShapeMismatchError(
            f"ragged var {ragged[0]!r} cannot be bound into a tuple (rows differ in length); "
            f"read it on its own or in a list, e.g. ['{ragged[0]}', ...]."
        )


def _ragged_out(data: RaggedArray, ragged_as: str) -> Any:
    if ragged_as == "raw":
        return data
    if ragged_as == "list":
        return data.to_list()
    if ragged_as == "awkward":
        try:
            return data.to_awkward()
        except ImportError:
            raise MissingDependencyError(
                "reading a ragged var as an awkward array needs awkward: pip install "
                "'storegate[parquet]' (or pass ragged_as='list' / 'raw')."
            ) from None
    raise InvalidArgumentError(
        f"ragged_as={ragged_as!r} is not one of 'awkward', 'list', 'raw'."
    )


def _tier_has(db: Backend, data_id: str, phase: str, var: str) -> bool:
    return data_id in db.data_ids() and db.has_var(data_id, phase, var)


def _row_dtype_shape(infos: Sequence[VarInfo], names: Sequence[str]) -> tuple[tuple[int, ...],
                                                                              np.dtype]:
    shapes = {i.row_shape for i in infos}
    if len(shapes) > 1:
        desc = ", ".join(f"{n}: {i.row_shape}" for n, i in zip(names, infos, strict=True))
        raise ShapeMismatchError(
            f"vars read together as a tuple must have the same row shape, got {desc}; read "
            "them as a list (['a', 'b']) to get one array per var."
        )
    return next(iter(shapes)), np.result_type(*[i.dtype for i in infos])


def _name_list(var_names: Any) -> list[str]:
    """``var_names`` (a str, or a list/tuple of str) as a list, for calls that handle each var
    on its own (delete, create_empty, astype, ...)."""
    if isinstance(var_names, str):
        return [var_names]
    if not isinstance(var_names, list | tuple):
        raise InvalidArgumentError(
            f"{type(var_names)} is not supported for var_names ({var_names!r}); give a str or "
            "a list of str."
        )
    for v in var_names:
        if not isinstance(v, str):
            raise InvalidNameError(
                f"var names must be str, got {type(v).__name__} {v!r} in {var_names!r}."
            )
    return list(var_names)


class StoreGate:
    """A phase-aware store of named arrays ("vars") for machine learning.

    Parameters
    ----------
    backend
        A registered backend name (``'numpy'``, ``'zarr'``, ``'hybrid'``, ``'parquet'``, or a
        plugin's name; see :func:`storegate.list_backends`), a :class:`~storegate.backends.Backend`
        subclass, or a backend instance.
    backend_args
        Options for the backend, e.g. ``{'output_dir': 'store.zarr', 'mode': 'a'}`` for zarr.
    data_id
        The default data_id (dataset name); can be changed with :meth:`set_data_id`.

    Examples
    --------
    >>> import numpy as np
    >>> from storegate import StoreGate
    >>> var_names = ['var0', 'var1', 'var2']
    >>> data = [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    >>> storegate = StoreGate(backend='numpy', data_id='test_id')
    >>> storegate.add_data(var_names=var_names, data=data, phase=(0.5, 0.25, 0.25))
    >>> storegate.get_data(var_names=var_names, phase='train')
    [array([0]), array([3]), array([6])]
    >>> storegate['train'][var_names][0]
    [np.int64(0), np.int64(3), np.int64(6)]
    """

    def __init__(
        self,
        backend: Any = "numpy",
        backend_args: dict[str, Any] | None = None,
        data_id: str | None = None,
    ) -> None:
        self._backend_args: dict[str, Any] = dict(backend_args or {})
        self._backend, self._db = _make_backend(backend, self._backend_args)
        self._data_id: str | None = None
        self._meta: dict[str, _Meta] = {}
        #: How :meth:`get_data` returns ragged vars by default: 'awkward', 'list' or 'raw'.
        self.ragged_as = "awkward"
        if data_id is not None:
            self.set_data_id(data_id)

    @classmethod
    def open(
        cls,
        location: str,
        backend: str | None = None,
        mode: str = "r",
        data_id: str | None = None,
        backend_args: dict[str, Any] | None = None,
    ) -> StoreGate:
        """Open the existing store at ``location``, whichever backend wrote it.

        Parameters
        ----------
        location
            A store directory (or fsspec URL for backends that take one).
        backend
            The backend name; ``None`` asks every installed backend whether it recognises
            the location (:func:`storegate.backends.guess_backend`).
        mode
            ``'r'`` (default, read-only) or a writable mode of the backend (``'r+'``,
            ``'a'``).
        data_id
            The data_id to select; it must exist. ``None``: the store's only data_id if it
            has exactly one, else none selected.
        backend_args
            Further backend options (merged over the location and mode).

        Raises
        ------
        StoreNotFoundError
            Nothing at ``location``.
        CorruptStoreError
            No installed backend recognises it (pass ``backend=``).
        DataIdNotFoundError
            ``data_id`` is not in the store.

        Examples
        --------
        >>> import tempfile, numpy as np
        >>> path = tempfile.mkdtemp() + "/store.zarr"
        >>> sg = StoreGate("zarr", {"output_dir": path}, data_id="jets")
        >>> sg.add_data("x", np.arange(4), "train")
        >>> sg.close()
        >>> again = StoreGate.open(path)
        >>> again.backend, again.data_id, again["train"]["x"][:].tolist()
        ('zarr', 'jets', [0, 1, 2, 3])
        """
        from .backends.registry import guess_backend
        from .errors import DataIdNotFoundError

        location = str(location) if not isinstance(location, str) else location
        so = (backend_args or {}).get("storage_options")
        name = backend if backend is not None else guess_backend(location, so)
        args = get_backend(name).location_args(location, mode)
        args.update(backend_args or {})
        gate = cls(name, args)
        ids = gate.get_data_ids()
        if data_id is not None:
            if data_id not in ids:
                raise DataIdNotFoundError(
                    f"data_id {data_id!r} is not in the store at {location!r}; it holds "
                    f"{ids}.")
            gate.set_data_id(data_id)
        elif len(ids) == 1:
            gate.set_data_id(ids[0])
        return gate

    def __repr__(self) -> str:
        return (
            f"StoreGate(backend={self._backend}, backend_args={self._backend_args}, "
            f"data_id={self._data_id})"
        )

    # ------------------------------------------------------------------ properties
    @property
    def data_id(self) -> str | None:
        """The current default data_id."""
        return self._data_id

    @property
    def backend(self) -> str:
        """The backend's registry name, e.g. ``'zarr'``."""
        return self._backend

    @property
    def db(self) -> Backend:
        """The backend instance (for backend-specific operations)."""
        return self._db

    def set_data_id(self, data_id: str) -> None:
        """Set the default data_id, creating the dataset (with its three phases) if needed.

        Examples
        --------
        >>> sg = StoreGate()
        >>> sg.set_data_id("jets")
        >>> sg.data_id
        'jets'
        """
        if not isinstance(data_id, str):
            raise InvalidNameError(
                f"data_id must be string, got {type(data_id).__name__} {data_id!r}; the "
                f"data_id is unchanged ({self._data_id!r})."
            )
        check_name(data_id, "data_id")
        if data_id not in self._db.data_ids():
            self._db.create_data_id(data_id)
        self._data_id = data_id

    def close(self) -> None:
        """Flush buffered writes and release file handles. The gate can still be used.

        Examples
        --------
        >>> StoreGate().close()
        """
        self._db.close()

    def __enter__(self) -> StoreGate:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ metadata
    def _require_data_id(self) -> str:
        if self._data_id is None:
            raise NoDataIdError(
                "please set default data_id: StoreGate(..., data_id='name') or "
                "sg.set_data_id('name')."
            )
        return self._data_id

    def _load_meta(self, data_id: str) -> _Meta:
        meta = self._meta.get(data_id)
        if meta is None:
            raw = self._db.get_attrs(data_id).get(_META_KEY, {})
            if raw.get("version") == _META_VERSION and raw.get("compiled"):
                meta = _Meta(True, [int(x) for x in raw["total_events"]],
                             [str(p) for p in raw["valid_phases"]])
            else:
                meta = _Meta(False, [0, 0, 0], [])
            self._meta[data_id] = meta
        return meta

    def _save_meta(self, data_id: str, meta: _Meta) -> None:
        self._meta[data_id] = meta
        if self._db.readonly:
            return
        attrs = self._db.get_attrs(data_id)
        attrs[_META_KEY] = {
            "version": _META_VERSION,
            "compiled": meta.compiled,
            "total_events": meta.total_events,
            "valid_phases": meta.valid_phases,
        }
        try:
            self._db.set_attrs(data_id, attrs)
        except StoreLockedError:
            # another process is writing the store: the phase sizes stay in this gate only
            # (persisting them saves a later open a compile, nothing more); a write of data
            # raises the same error itself
            logger.info("compile state of %r not persisted: %s is being written elsewhere",
                        data_id, self._db.describe())

    def _invalidate(self, data_id: str) -> None:
        """Mark a data_id as not compiled, persisting that before any data changes."""
        meta = self._load_meta(data_id)
        if meta.compiled:
            self._save_meta(data_id, _Meta(False, meta.total_events, meta.valid_phases))

    def _compiled(self, data_id: str) -> _Meta:
        """The compile state, compiling implicitly when the store is stale but consistent."""
        meta = self._meta.get(data_id)
        if meta is not None and meta.compiled:
            return meta
        meta = self._load_meta(data_id)
        if not meta.compiled:
            meta = self._compile(data_id, reset=False)
        return meta

    def _compile(self, data_id: str, reset: bool) -> _Meta:
        if self._db.readonly:
            return self._compile_in(data_id, reset)
        with self._db.transaction():
            return self._compile_in(data_id, reset)

    def _compile_in(self, data_id: str, reset: bool) -> _Meta:
        self._db.flush()
        total: list[int] = []
        valid: list[str] = []
        for phase in PHASES:
            lengths = self._db.lengths(data_id, phase)
            names = list(lengths)
            if len(set(lengths.values())) > 1:
                desc = ", ".join(f"{v}={n}" for v, n in lengths.items())
                raise InconsistentLengthError(
                    f"Number of events are not consistent in data_id {data_id!r}, phase "
                    f"{phase!r}: {desc}. Every var of a phase needs the same number of rows; "
                    "append the missing rows or delete the odd var."
                )
            if names:
                n = next(iter(lengths.values()))
                if reset:
                    active = np.ones(n, dtype=np.int64)
                    if "active" in lengths:
                        self._db.write(data_id, phase, "active", slice(0, n, 1), active)
                    else:
                        self._db.append(data_id, phase, "active", active)
                total.append(n)
                valid.append(phase)
            else:
                total.append(0)
        meta = _Meta(True, total, valid)
        self._db.flush()
        self._save_meta(data_id, meta)
        return meta

    def compile(self, reset: bool = False, show_info: bool = False) -> None:
        """Check that the vars of each phase have equal lengths and record the phase sizes.

        The result is persisted in the store, so a reopened store needs no recompile. Reads of
        a stale store compile implicitly; an explicit call is still the way to check a store.

        Parameters
        ----------
        reset
            (Re)write the var ``active`` (int64 ones) in every non-empty phase.
        show_info
            Print :meth:`show_info` afterwards.

        Raises
        ------
        InconsistentLengthError
            Naming the phase and the length of each var when they differ.

        Examples
        --------
        >>> sg = StoreGate(data_id="d")
        >>> sg.add_data("x", np.zeros(4), phase=(2, 1, 1))
        >>> sg.compile()
        >>> sg.get_metadata()["total_events"]
        [2, 1, 1]
        """
        data_id = self._require_data_id()
        self._compile(data_id, reset)
        if show_info:
            self.show_info()

    def get_metadata(self) -> dict[str, Any]:
        """The compile metadata: ``compiled``, ``total_events``, ``sizes``, ``valid_phases``.

        Compiles implicitly when the data changed since the last compile. Returns a copy.

        Examples
        --------
        >>> sg = StoreGate(data_id="d")
        >>> sg.add_data("x", np.zeros(10), phase=(0.6, 0.2, 0.2))
        >>> meta = sg.get_metadata()
        >>> meta["compiled"], meta["total_events"], meta["valid_phases"]
        (True, [6, 2, 2], ['train', 'valid', 'test'])
        >>> meta["sizes"]
        {'train': 6, 'valid': 2, 'test': 2, 'all': 10}
        """
        return self._compiled(self._require_data_id()).as_dict()

    def _phase_size(self, data_id: str, phase: str) -> int:
        return self._compiled(data_id).sizes()[check_phase(phase)]

    def get_data_ids(self) -> list[str]:
        """The data_ids in the store.

        Examples
        --------
        >>> StoreGate(data_id="a").get_data_ids()
        ['a']
        """
        return self._db.data_ids()

    def _var_names(self, data_id: str, phase: Any) -> list[str]:
        name = check_phase(phase)
        if name != ALL:
            return self._db.var_names(data_id, name)
        meta = self._compiled(data_id)
        if not meta.valid_phases:
            return []
        common = [set(self._db.var_names(data_id, p)) for p in meta.valid_phases[1:]]
        first = self._db.var_names(data_id, meta.valid_phases[0])
        return [v for v in first if all(v in c for c in common)]

    def get_var_names(self, phase: str = "train") -> list[str]:
        """Var names of a phase, in insertion order.

        With ``phase='all'``: the vars present in every non-empty phase (those that
        ``get_data(..., phase='all')`` can read).

        Examples
        --------
        >>> sg = StoreGate(data_id="d")
        >>> sg.add_data("b", np.zeros(2)); sg.add_data("a", np.zeros(2))
        >>> sg.get_var_names()
        ['b', 'a']
        """
        return self._var_names(self._require_data_id(), phase)

    def get_var_shapes(self, var_names: Any, phase: str = "train") -> Any:
        """Per-row shape of a var (``None`` if it does not exist), or a list for a list.

        Examples
        --------
        >>> sg = StoreGate(data_id="d")
        >>> sg.add_data("x", np.zeros((3, 4, 5)))
        >>> sg.get_var_shapes("x"), sg.get_var_shapes(["x", "nope"])
        ((4, 5), [(4, 5), None])
        """
        data_id = self._require_data_id()
        ph = check_phase(phase, allow_all=False)
        if isinstance(var_names, str):
            if not self._db.has_var(data_id, ph, var_names):
                return None
            info = self._db.info(data_id, ph, var_names)
            return (None, *info.row_shape) if info.ragged else info.row_shape
        if isinstance(var_names, list | tuple):
            return [self.get_var_shapes(v, ph) for v in var_names]
        raise InvalidArgumentError(
            f"invalid type of var_names: {var_names!r}; give a str or a list of str."
        )

    # ------------------------------------------------------------------ reading
    def get_data(
        self, var_names: Any, phase: str | None = "train", index: Any = -1, *,
        ragged_as: str | None = None,
    ) -> Any:
        """Read vars of a phase at an index.

        Parameters
        ----------
        var_names
            A str (one var), a tuple (vars bound into one array) or a list (one array each).
        phase
            ``'train'``, ``'valid'``, ``'test'``, or ``'all'``/``None`` for the three phases
            concatenated (the index then counts rows over the concatenation).
        index
            ``-1`` (all rows, the default), an int, a slice, a ``(start, stop)`` tuple, a list
            or array of ints, a bool mask or a torch tensor.
        ragged_as
            How rows of a ragged var are returned: ``'awkward'`` (an ``awkward.Array``),
            ``'list'`` (a list of numpy arrays) or ``'raw'`` (a
            :class:`~storegate.ragged.RaggedArray`: flat values + offsets). Default: the gate's
            :attr:`ragged_as` (``'awkward'``). An int index returns one numpy array either way.

        Returns
        -------
        numpy.ndarray or list
            ======================  ===========  ==============
            index \\ var_names       str          tuple of M
            ======================  ===========  ==============
            int                     ``k``        ``(M, k)``
            anything else           ``(N, k)``   ``(N, M, k)``
            ======================  ===========  ==============

            where ``k`` is the per-row shape; a list of names gives a list of the str results.

        Examples
        --------
        >>> sg = StoreGate(data_id="d")
        >>> sg.add_data(("a", "b"), np.arange(8).reshape(4, 2))
        >>> sg.get_data("a", "train", [3, 0])
        array([6, 0])
        >>> sg.get_data(("a", "b"), "train", 1)
        array([2, 3])
        >>> sg.get_data(["a", "b"], "train", (0, 2))
        [array([0, 2]), array([1, 3])]
        """
        return self._get_data(self._require_data_id(), var_names, phase, index, ragged_as)

    @staticmethod
    def _read_names(var_names: Any) -> tuple[tuple[str, ...], bool]:
        """``(names, single)`` for a str or tuple of var names to read."""
        if isinstance(var_names, str):
            return (var_names,), True
        if isinstance(var_names, tuple) and all(isinstance(v, str) for v in var_names):
            if not var_names:
                raise InvalidArgumentError(
                    "var_names is an empty tuple; give at least one var name, e.g. ('x',)."
                )
            return var_names, False
        raise InvalidArgumentError(
            f"{type(var_names)} is not supported for var_names ({var_names!r}); give a str, "
            "a tuple of str or a list."
        )

    def _get_data(
        self, data_id: str, var_names: Any, phase: Any, index: Any, ragged_as: str | None = None
    ) -> Any:
        if isinstance(var_names, list):
            if not var_names:
                return []
            with self._db.batch():
                ph = phase if isinstance(phase, str) and phase in PHASES else None
                if ph is None or any(isinstance(v, list) for v in var_names):
                    return [self._get_data(data_id, v, phase, index, ragged_as)
                            for v in var_names]
                # one phase: the index is checked once for every var of the list
                parsed = [self._read_names(v) for v in var_names]
                meta = self._meta.get(data_id)
                if meta is None or not meta.compiled:
                    meta = self._compiled(data_id)
                idx = indexing.normalize(index, meta.total_events[PHASES.index(ph)])
                return [self._get_phase(data_id, names, single, ph, idx, ragged_as)
                        for names, single in parsed]
        names, single = self._read_names(var_names)
        meta = self._meta.get(data_id)
        if meta is None or not meta.compiled:
            meta = self._compiled(data_id)
        ph = phase if isinstance(phase, str) and phase in PHASES else check_phase(phase)
        if ph != ALL:
            idx = indexing.normalize(index, meta.total_events[PHASES.index(ph)])
            return self._get_phase(data_id, names, single, ph, idx, ragged_as)
        out = self._read_all(data_id, meta, names, single, index)
        if isinstance(out, RaggedArray):
            return _ragged_out(out, ragged_as or self.ragged_as)
        return out

    def _get_phase(self, data_id: str, names: tuple[str, ...], single: bool, phase: str,
                   idx: indexing.Index, ragged_as: str | None) -> Any:
        """Read vars of one phase at a normalised index."""
        out = self._read_phase(data_id, phase, names, single, idx)
        if isinstance(out, RaggedArray):
            return _ragged_out(out, ragged_as or self.ragged_as)
        return out

    def _infos(
        self, data_id: str, phase: str, names: Sequence[str], db: Backend | None = None
    ) -> list[VarInfo]:
        db = db or self._db
        try:
            return [db.info(data_id, phase, v) for v in names]
        except VarNotFoundError:
            present = db.var_names(data_id, phase)
            missing = [v for v in names if v not in present]
            raise VarNotFoundError(
                f"var_name {missing[0]!r} does not exist in {data_id!r}, phase {phase!r}; vars "
                f"there: {present}."
            ) from None

    def _read_phase(
        self, data_id: str, phase: str, names: tuple[str, ...], single: bool,
        idx: indexing.Index, db: Backend | None = None,
    ) -> Any:
        db = db or self._db
        if single:
            try:
                out = db.read(data_id, phase, names[0], idx)
            except VarNotFoundError:
                self._infos(data_id, phase, names, db)
                raise
            if isinstance(out, RaggedArray):
                return out
            return out[()] if out.ndim == 0 else out
        infos = self._infos(data_id, phase, names, db)
        _no_ragged_tuple(infos)
        row_shape, dtype = _row_dtype_shape(infos, names)
        parts = db.read_many(data_id, phase, names, idx)
        if isinstance(idx, int):
            return np.stack(parts).astype(dtype, copy=False)
        n = parts[0].shape[0] if parts else 0
        out = np.empty((n, len(names), *row_shape), dtype=dtype)
        for j, part in enumerate(parts):
            out[:, j] = part
        return out

    def _read_all(
        self, data_id: str, meta: _Meta, names: tuple[str, ...], single: bool, index: Any
    ) -> Any:
        sizes = meta.total_events
        for p in meta.valid_phases:
            self._infos(data_id, p, names)
        idx = indexing.normalize(index, sum(sizes))
        pieces = indexing.split_over(idx, sizes)
        if isinstance(idx, int):
            part, local, _ = pieces[0]
            return self._read_phase(data_id, PHASES[part], names, single, local)
        infos = [i for p in meta.valid_phases for i in self._infos(data_id, p, names)]
        if not infos:
            raise VarNotFoundError(
                f"data_id {data_id!r} has no data in any phase; add data before reading 'all'."
            )
        if any(i.ragged for i in infos):
            if not single:
                _no_ragged_tuple(infos)
            got = [(pos, self._read_phase(data_id, PHASES[part], names, single, local))
                   for part, local, pos in pieces]
            if len(got) == 1:
                return got[0][1]
            combined = RaggedArray.concatenate([r for _, r in got])
            if isinstance(idx, slice):
                return combined  # the pieces are consecutive runs, in order
            where = np.concatenate([p for p, _ in got])
            return combined.take(np.argsort(where, kind="stable"))
        row_shape, dtype = _row_dtype_shape(infos, names * len(meta.valid_phases))
        n = indexing.count(idx, sum(sizes))
        shape = (n, *row_shape) if single else (n, len(names), *row_shape)
        if len(pieces) == 1 and pieces[0][2] is None:
            part, local, _ = pieces[0]
            res = self._read_phase(data_id, PHASES[part], names, single, local)
            return res.astype(dtype, copy=False)
        out = np.empty(shape, dtype=dtype)
        for part, local, positions in pieces:
            res = self._read_phase(data_id, PHASES[part], names, single, local)
            out[positions if positions is not None else slice(None)] = res
        return out

    # ------------------------------------------------------------------ writing
    def _columns(
        self, var_names: Any, data: Any, what: str, stacklevel: int = 4
    ) -> list[tuple[str, Any]]:
        """Split (var_names, data) into (var, column data) pairs, multiml's var-name rules.

        ``stacklevel`` makes the "arrays ignored" warning point at the user's call (4: the
        caller of ``update_data`` or of a view's ``[...] = data``; 3: of ``add_data``)."""
        if isinstance(var_names, str):
            check_name(var_names)
            return [(var_names, data)]
        if isinstance(var_names, tuple):
            for v in var_names:
                check_name(v)
            if len(set(var_names)) != len(var_names):
                raise InvalidNameError(f"var_names {var_names!r} name a var twice.")
            arr = as_array(data, "data")
            m = len(var_names)
            if arr.ndim < 2 or arr.shape[1] != m:
                got = arr.shape[1] if arr.ndim >= 2 else "none (1-D data)"
                raise ShapeMismatchError(
                    f"Shapes with bind_var are not consistent var_names:{m} data:{got}; a tuple "
                    f"of {m} var names binds data of shape (N, {m}, ...), got {arr.shape}."
                )
            return [(v, arr[:, j]) for j, v in enumerate(var_names)]
        if isinstance(var_names, list):
            if isinstance(data, np.ndarray | list | tuple):
                items = list(data)
            else:
                raise ShapeMismatchError(
                    f"with a list of var names, data must be a list of arrays (one per var), "
                    f"got {type(data).__name__}."
                )
            if len(items) < len(var_names):
                raise ShapeMismatchError(
                    f"Shapes are not consistent var_names:{len(var_names)} data:{len(items)}; "
                    f"{what} with a list of var names takes one array per var."
                )
            if len(items) > len(var_names):
                warnings.warn(
                    f"{what}: {len(items)} arrays given for {len(var_names)} var names; the "
                    f"last {len(items) - len(var_names)} are ignored (as multiml did).",
                    UserWarning,
                    stacklevel=stacklevel,
                )
            out: list[tuple[str, Any]] = []
            for v, d in zip(var_names, items, strict=False):
                out.extend(self._columns(v, d, what))
            names = [v for v, _ in out]
            if len(set(names)) != len(names):
                raise InvalidNameError(f"var_names {var_names!r} name a var twice.")
            return out
        raise InvalidArgumentError(
            f"{type(var_names)} is not supported for var_names ({var_names!r}); give a str, a "
            "tuple of str or a list."
        )

    def _plan_append(self, data_id: str, phase: str, var: str, arr: Any) -> _Op:
        if self._db.has_var(data_id, phase, var):
            info = self._db.info(data_id, phase, var)
            arr = self._fit(arr, info, var)
        elif isinstance(arr, RaggedArray) and not self._db.supports_ragged:
            raise UnsupportedOperationError(
                f"backend {self._backend!r} cannot store ragged vars (var {var!r}); use numpy, "
                "zarr, hybrid or parquet."
            )
        return _Op("append", phase, var, data=arr)

    @staticmethod
    def _fit(arr: Any, info: VarInfo, var: str) -> Any:
        """Data made to fit an existing var: same kind (regular/ragged), row shape, dtype."""
        if info.ragged:
            if not isinstance(arr, RaggedArray):
                arr = _ragged_from_regular(arr, var)
            check_row_shape(arr.values, info.row_shape, var)
            return RaggedArray(cast_for_write(arr.values, info.dtype, var), arr.offsets,
                               validate=False)
        if isinstance(arr, RaggedArray):
            raise ShapeMismatchError(
                f"var {var!r} has rows of one fixed shape {info.row_shape}; ragged rows cannot "
                "be written into it. Use a new var for ragged data."
            )
        check_row_shape(arr, info.row_shape, var)
        return cast_for_write(arr, info.dtype, var)

    def _run(self, data_id: str, ops: list[_Op], do_compile: bool) -> None:
        if not ops and not do_compile:
            return
        if self._db.readonly:
            self._db._check_writable()
        with self._db.transaction():  # one unit: a crash leaves all of it or none
            self._invalidate(data_id)
            for op in ops:
                if op.kind == "append":
                    assert op.data is not None
                    self._db.append(data_id, op.phase, op.var, op.data)
                elif op.kind == "write":
                    assert op.data is not None and op.index is not None
                    self._db.write(data_id, op.phase, op.var, op.index, op.data)
                else:
                    assert op.shape is not None and op.dtype is not None
                    self._db.create(data_id, op.phase, op.var, op.shape, op.dtype)
            if do_compile:
                self._compile(data_id, reset=False)

    @staticmethod
    def _shuffle_perm(shuffle: Any, n: int) -> np.ndarray | None:
        if shuffle is None or shuffle is False or (
            isinstance(shuffle, int | np.integer) and not isinstance(shuffle, bool) and shuffle == 0
        ):
            return None
        seed = 1 if shuffle is True else int(shuffle)
        # multiml seeded the legacy global RNG and shuffled in place; RandomState(seed) gives
        # the same permutation without touching the global RNG or the caller's array.
        return np.random.RandomState(seed).permutation(n)

    def add_data(
        self,
        var_names: Any,
        data: Any,
        phase: Any = "train",
        shuffle: Any = False,
        do_compile: bool = False,
    ) -> None:
        """Add rows: append to existing vars, create the others.

        Parameters
        ----------
        var_names
            A str (data of shape ``(N, *k)``), a tuple of M names (data ``(N, M, *k)``, one
            var per column) or a list of names (data: a list with one array per name).
        data
            Array-like data; it is copied, never modified.
        phase
            A phase name, ``'all'`` (split by the compiled sizes), fractions ``(0.8, 0.1, 0.1)``
            or counts ``(800, 100, 100)``; see :mod:`storegate.phases`.
        shuffle
            ``False``/``0``: keep the order. ``True`` (seed 1) or an int seed: permute rows
            before splitting; the permutation depends only on (seed, N), so vars added in
            separate calls with the same seed stay aligned.
        do_compile
            Compile afterwards.

        Examples
        --------
        >>> sg = StoreGate(data_id="d")
        >>> sg.add_data(var_names='var0', data=np.array([0, 1, 2]), phase='train')
        >>> sg.add_data('var0', [3, 4])
        >>> sg['train']['var0'][:]
        array([0, 1, 2, 3, 4])
        """
        data_id = self._require_data_id()
        ops: list[_Op] = []
        compiled_sizes = None
        if isinstance(phase, str) and check_phase(phase) == ALL:
            compiled_sizes = self._compiled(data_id).sizes()
        for var, column in self._columns(var_names, data, "add_data", stacklevel=3):
            arr = _as_data(column, f"data for var {var!r}")
            perm = self._shuffle_perm(shuffle, _n_rows(arr))
            if perm is not None:
                arr = _rows(arr, perm)
            for ph, a, b in split(phase, _n_rows(arr), compiled_sizes):
                ops.append(self._plan_append(data_id, ph, var, _rows(arr, slice(a, b))))
        self._run(data_id, ops, do_compile)

    def update_data(
        self,
        var_names: Any,
        data: Any,
        phase: Any = "train",
        index: Any = -1,
        do_compile: bool = True,
    ) -> None:
        """Overwrite rows of vars in place; vars that do not exist yet are added.

        Parameters
        ----------
        var_names, data, phase
            As in :meth:`add_data`.
        index
            ``-1`` (every row; the data must have the var's length), an int, a slice, a
            ``(start, stop)`` tuple, or an int array / bool mask. With ``phase='all'`` the
            index counts rows over train, valid and test. An index other than ``-1`` needs a
            single phase or ``'all'``.
        do_compile
            Compile afterwards.

        Examples
        --------
        >>> sg = StoreGate(data_id="d")
        >>> sg.add_data("var0", np.array([5, 6, 7]))
        >>> sg.update_data(var_names='var0', data=[1], phase='train', index=1)
        >>> sg.update_data("var0", [8, 9], index=(1, 3))
        >>> sg["train"]["var0"][:]
        array([5, 8, 9])
        """
        self._update_data(self._require_data_id(), var_names, data, phase, index, do_compile)

    @staticmethod
    def _is_whole(index: Any) -> bool:
        if isinstance(index, int | np.integer) and not isinstance(index, bool):
            return int(index) == -1
        return index is Ellipsis or (
            isinstance(index, slice) and index == slice(None, None, None)
        )

    def _update_data(
        self, data_id: str, var_names: Any, data: Any, phase: Any, index: Any, do_compile: bool
    ) -> None:
        ops: list[_Op] = []
        whole = self._is_whole(index)
        is_name = isinstance(phase, str)
        ph_name = check_phase(phase) if is_name else None
        if not whole and not is_name:
            raise InvalidPhaseError(
                f"update_data with index={index!r} needs a single phase or 'all', got phase "
                f"{phase!r}; write each phase separately."
            )
        compiled = self._compiled(data_id) if ph_name == ALL else None
        one_row = not whole and isinstance(index, int | np.integer) and not isinstance(
            index, bool | np.bool_
        )
        for var, column in self._columns(var_names, data, "update_data"):
            arr: np.ndarray | RaggedArray
            if one_row and (np.isscalar(column) or (
                    isinstance(column, np.ndarray) and column.ndim == 0)):
                # one row of a 1-D var may be given as a scalar, as in numpy (a[i] = 5)
                arr = as_array([column], f"data for var {var!r}").reshape(())
            else:
                arr = _as_data(column, f"data for var {var!r}")
            if whole:
                sizes = compiled.sizes() if compiled is not None else None
                for ph, a, b in split(phase, _n_rows(arr), sizes):
                    ops.append(self._plan_whole(data_id, ph, var, _rows(arr, slice(a, b))))
            elif ph_name == ALL:
                assert compiled is not None
                idx = indexing.normalize(index, sum(compiled.total_events))
                for part, local, positions in indexing.split_over(idx, compiled.total_events):
                    rows = arr if positions is None else _rows(arr, positions)
                    if isinstance(idx, int):
                        rows = arr
                    ops.append(self._plan_write(data_id, PHASES[part], var, local, rows))
            else:
                assert ph_name is not None
                if not self._db.has_var(data_id, ph_name, var):
                    raise VarNotFoundError(
                        f"var {var!r} does not exist in {data_id!r}, phase {ph_name!r}; "
                        f"update_data with index={index!r} writes rows of an existing var. "
                        "Add the var first (add_data) or use index=-1."
                    )
                length = self._db.info(data_id, ph_name, var).length
                idx = indexing.normalize(index, length)
                ops.append(self._plan_write(data_id, ph_name, var, idx, arr))
        self._run(data_id, ops, do_compile)

    def _plan_whole(self, data_id: str, phase: str, var: str, arr: Any) -> _Op:
        if not self._db.has_var(data_id, phase, var):
            return self._plan_append(data_id, phase, var, arr)
        length = self._db.info(data_id, phase, var).length
        if _n_rows(arr) != length:
            raise ShapeMismatchError(
                f"update_data replaces the {length} rows of var {var!r} in phase {phase!r} in "
                f"place, but got {_n_rows(arr)} rows; pass {length} rows, an index, or "
                "delete_data and add_data to replace the var with a different length."
            )
        return self._plan_write(data_id, phase, var, slice(0, length, 1), arr)

    def _plan_write(
        self, data_id: str, phase: str, var: str, idx: indexing.Index, arr: Any
    ) -> _Op:
        info = self._db.info(data_id, phase, var)
        if info.ragged:
            if isinstance(idx, int) and isinstance(arr, np.ndarray):
                if arr.ndim == len(info.row_shape) + 2 and arr.shape[0] == 1:
                    arr = arr[0]  # [row], as multiml's int-index writes take (1, ...)
                arr = RaggedArray.from_list([arr], f"data for var {var!r}")  # one row
            arr = self._fit(arr, info, var)
            n = 1 if isinstance(idx, int) else indexing.count(idx, info.length)
            if len(arr) != n:
                raise ShapeMismatchError(
                    f"index selects {n} rows of ragged var {var!r} in phase {phase!r}, but "
                    f"{len(arr)} rows were given."
                )
            return _Op("write", phase, var, data=arr, index=idx)
        if isinstance(arr, RaggedArray):
            self._fit(arr, info, var)  # raises: ragged rows into a regular var
        if isinstance(idx, int):
            if arr.shape == (1, *info.row_shape):
                arr = arr[0]
            if arr.shape != info.row_shape:
                raise ShapeMismatchError(
                    f"writing one row of var {var!r} needs data of shape {info.row_shape} (or "
                    f"(1, *{info.row_shape})), got {arr.shape}."
                )
        else:
            n = indexing.count(idx, info.length)
            if arr.shape != (n, *info.row_shape):
                raise ShapeMismatchError(
                    f"index selects {n} rows of var {var!r} (rows of shape {info.row_shape}) "
                    f"in phase {phase!r}, but data have shape {arr.shape}; expected "
                    f"{(n, *info.row_shape)}."
                )
        arr = cast_for_write(arr, info.dtype, var)
        return _Op("write", phase, var, data=arr, index=idx)

    def create_empty(
        self, var_names: Any, shape: Any, phase: Any = "train", dtype: Any = "f4"
    ) -> None:
        """Create vars of a given total shape, split over phases like :meth:`add_data`.

        Contents are unspecified until written (zeros on the built-in backends).

        Examples
        --------
        >>> sg = StoreGate(data_id="d")
        >>> sg.create_empty("img", (10, 4, 4), phase=(0.8, 0.1, 0.1))
        >>> sg.get_var_shapes("img"), len(sg["train"])
        ((4, 4), 8)
        """
        data_id = self._require_data_id()
        names = _name_list(var_names)
        for v in names:
            check_name(v)
        if isinstance(shape, tuple | list) and any(s is None for s in shape):
            raise ShapeMismatchError(
                f"create_empty cannot make a ragged var (shape {tuple(shape)!r} has None): the "
                "length of each row is only known from the data. Add it with add_data instead."
            )
        if isinstance(shape, int | np.integer):
            shape = (int(shape),)
        try:
            full = tuple(int(s) for s in shape)
            if not all(isinstance(s, int | np.integer) and not isinstance(s, bool)
                       for s in shape):
                raise TypeError
        except (TypeError, ValueError):
            raise ShapeMismatchError(
                f"shape must be a tuple of ints like (N, 3), got {shape!r}."
            ) from None
        if not full or any(s < 0 for s in full):
            raise ShapeMismatchError(f"shape {shape!r} must be non-empty and non-negative.")
        dt = native_dtype(check_storable_dtype(dtype, "create_empty"))  # stored natively
        compiled_sizes = None
        if isinstance(phase, str) and check_phase(phase) == ALL:
            compiled_sizes = self._compiled(data_id).sizes()
        ops = []
        for v in names:
            for ph, a, b in split(phase, full[0], compiled_sizes):
                if self._db.has_var(data_id, ph, v):
                    raise VarExistsError(
                        f"create_empty: {v} already exists in {ph}; delete it first "
                        f"(sg.delete_data({v!r}, phase={ph!r})) or write into it."
                    )
                ops.append(_Op("create", ph, v, shape=(b - a, *full[1:]), dtype=dt))
        self._run(data_id, ops, False)

    def delete_data(self, var_names: Any, phase: str = "train", do_compile: bool = True) -> None:
        """Delete whole vars from a phase (``'all'``: from every phase). Missing vars are
        skipped, as in multiml.

        Examples
        --------
        >>> sg = StoreGate(data_id="d")
        >>> sg.add_data(("a", "b"), np.zeros((4, 2)), phase=(2, 1, 1))
        >>> sg.delete_data("a", phase="all")
        >>> sg.get_var_names("valid")
        ['b']
        """
        self._delete_data(self._require_data_id(), var_names, phase, do_compile)

    def _delete_data(self, data_id: str, var_names: Any, phase: Any, do_compile: bool) -> None:
        names = _name_list(var_names)
        phases = phase_list(phase)
        todo = [(p, v) for p in phases for v in names if self._db.has_var(data_id, p, v)]
        skipped = [v for v in names if not any(v == t for _, t in todo)]
        if skipped:
            logger.info("delete_data: %s not found in %s; nothing deleted for them",
                        skipped, phases)
        if todo:
            self._db._check_writable()
        with self._db.transaction():
            if todo:
                self._invalidate(data_id)
                for p, v in todo:
                    self._db.delete(data_id, p, v)
            if do_compile:
                self._compile(data_id, reset=False)

    def clear_data(self) -> None:
        """Delete every var of the current data_id in every phase.

        Examples
        --------
        >>> sg = StoreGate(data_id="d")
        >>> sg.add_data("x", np.zeros(3))
        >>> sg.clear_data(); sg.get_var_names()
        []
        """
        data_id = self._require_data_id()
        with self._db.transaction():
            for phase in PHASES:
                names = self._db.var_names(data_id, phase)
                if names:
                    self._delete_data(data_id, names, phase, False)
            self._compile(data_id, reset=False)

    # ------------------------------------------------------------------ transforms
    def _transform(
        self,
        var_names: Any,
        phase: Any,
        make_fn: Callable[[str, str, VarInfo], Callable[[np.ndarray], np.ndarray]],
    ) -> None:
        data_id = self._require_data_id()
        names = _name_list(var_names)
        phases = phase_list(phase)
        if check_phase(phase) == ALL:
            phases = [p for p in phases if any(self._db.has_var(data_id, p, v) for v in names)]
        plans = []
        for p in phases:
            for v in names:
                info = self._infos(data_id, p, [v])[0]
                plans.append((p, v, make_fn(p, v, info)))
        self._db._check_writable()
        for p, v, _ in plans:  # every copy must be writable before the first one changes
            for db in self._db.holders(data_id, p, v):
                db._check_writable()
        with self._db.transaction():  # every phase and tier, or none of them
            self._invalidate(data_id)
            for p, v, fn in plans:
                # every tier holding a copy, swapped in together (tiers never disagree)
                transforms.replace_vars(data_id, p, [
                    (db, v, transforms.map_blocks(db, data_id, p, v, fn))
                    for db in self._db.holders(data_id, p, v)])
            self._compile(data_id, reset=False)

    def astype(self, var_names: Any, dtype: Any, phase: Any = "train") -> None:
        """Convert vars to ``dtype``, block by block; the old var stays until the new one is
        complete.

        Examples
        --------
        >>> sg = StoreGate(data_id="d")
        >>> sg.add_data("x", np.array([1.7, 2.2]))
        >>> sg.astype("x", "i8")
        >>> sg["train"]["x"][:]
        array([1, 2])
        """
        dt = native_dtype(check_storable_dtype(dtype, "astype"))  # stored natively
        self._transform(var_names, phase, lambda p, v, info: (lambda a: a.astype(dt)))

    def onehot(self, var_names: Any, num_classes: int, phase: Any = "train") -> None:
        """Replace integer labels by one-hot float64 vectors (shape ``(N, *k, num_classes)``).

        Labels are checked to lie in ``[0, num_classes)`` before anything is written.

        Examples
        --------
        >>> sg = StoreGate(data_id="d")
        >>> sg.add_data("y", np.array([0, 2]))
        >>> sg.onehot("y", 3)
        >>> sg["train"]["y"][:]
        array([[1., 0., 0.],
               [0., 0., 1.]])
        """
        if not isinstance(num_classes, int | np.integer) or num_classes < 1:
            raise InvalidArgumentError(f"num_classes must be a positive int, got {num_classes!r}.")
        data_id = self._require_data_id()
        eye = np.identity(int(num_classes))

        def make(p: str, v: str, info: VarInfo) -> Callable[[np.ndarray], np.ndarray]:
            if info.dtype.kind not in "iub":
                raise DtypeError(
                    f"onehot needs integer labels, but var {v!r} in phase {p!r} has dtype "
                    f"{info.dtype}; convert it first: sg.astype({v!r}, 'i8', phase={p!r})."
                )
            step = max(1, transforms.BLOCK_BYTES // max(1, info.nbytes // max(1, info.length)))
            for start in range(0, info.length, step):
                block = self._db.read(data_id, p, v, slice(start, min(info.length, start + step)))
                if isinstance(block, RaggedArray):
                    block = block.values  # the labels of every item of every row
                if block.size and (block.min() < 0 or block.max() >= num_classes):
                    raise InvalidArgumentError(
                        f"onehot: var {v!r} in phase {p!r} has labels in [{block.min()}, "
                        f"{block.max()}], outside [0, {num_classes}); pass a larger num_classes."
                    )
            return lambda a: eye[a.astype(np.intp)]

        self._transform(var_names, phase, make)

    def argmax(self, var_names: Any, axis: int, phase: Any = "train") -> None:
        """Replace vars by ``np.argmax(data, axis)`` (int64). ``axis`` counts the sample axis as
        0, as in multiml, so ``axis=1`` reduces the first per-row axis.

        Examples
        --------
        >>> sg = StoreGate(data_id="d")
        >>> sg.add_data("p", np.array([[0.1, 0.9], [0.8, 0.2]]))
        >>> sg.argmax("p", axis=1)
        >>> sg["train"]["p"][:]
        array([1, 0])
        """

        def make(p: str, v: str, info: VarInfo) -> Callable[[np.ndarray], np.ndarray]:
            if info.ragged:
                raise UnsupportedOperationError(
                    f"argmax of ragged var {v!r} in phase {p!r} is not supported: its rows have "
                    "different lengths along axis 1, so the result would not be one var. "
                    "Read the rows (ragged_as='list') and reduce them yourself."
                )
            ndim = len(info.shape)
            if not isinstance(axis, int | np.integer) or not -ndim <= axis < ndim or (
                axis % ndim == 0
            ):
                raise InvalidArgumentError(
                    f"argmax axis {axis!r} is invalid for var {v!r} of shape {info.shape}: "
                    f"use 1..{ndim - 1} (axis 0 is the sample axis)."
                )
            return lambda a: np.argmax(a, axis=int(axis)).astype(np.int64)

        self._transform(var_names, phase, make)

    def shuffle(self, phase: Any = "all", seed: int = 0) -> None:
        """Permute the rows of every var of a phase with one permutation per phase.

        The permutation comes from ``numpy.random.default_rng(seed)`` and the phase length;
        the global numpy RNG is not touched.

        Examples
        --------
        >>> sg = StoreGate(data_id="d")
        >>> sg.add_data(("a", "b"), np.arange(20).reshape(10, 2))
        >>> sg.shuffle("train", seed=3)
        >>> rows = sg["train"][("a", "b")][:]
        >>> bool((rows[:, 1] == rows[:, 0] + 1).all()), sorted(rows[:, 0].tolist())[:3]
        (True, [0, 2, 4])
        """
        data_id = self._require_data_id()
        phases = phase_list(phase)  # validate everything before the store is touched
        try:
            np.random.default_rng(seed)
        except (TypeError, ValueError) as err:
            raise InvalidArgumentError(
                f"shuffle seed {seed!r} cannot seed numpy.random.default_rng ({err}); pass a "
                "non-negative int."
            ) from None
        meta = self._compiled(data_id)
        self._db._check_writable()
        for p in phases:  # every copy must be writable before the first one changes
            for v in self._db.var_names(data_id, p):
                for db in self._db.holders(data_id, p, v):
                    db._check_writable()
        with self._db.transaction():  # every phase, or none of them
            self._invalidate(data_id)
            for p in phases:
                names = self._db.var_names(data_id, p)
                n = meta.sizes()[p]
                if not names or n < 2:
                    continue
                perm = np.random.default_rng(seed).permutation(n)
                # every var of the phase (in both tiers of a hybrid store) is written, then all
                # are swapped in together: the phase never ends up half shuffled
                transforms.replace_vars(data_id, p, [
                    (db, v, transforms.shuffled_blocks(db, data_id, p, v, perm))
                    for v in names for db in self._db.holders(data_id, p, v)])
            self._compile(data_id, reset=False)

    # ------------------------------------------------------------------ hybrid (non-hybrid)
    def set_mode(self, mode: str) -> None:
        """Choose the tier new writes go to (hybrid backend only; elsewhere a warning).

        Examples
        --------
        >>> StoreGate().set_mode("numpy")
        """
        setter = getattr(self._db, "set_mode", None)
        if setter is None:
            logger.warning("set_mode is valid for only hybrid database (%s)", self._backend)
            return
        setter(mode)

    def _read_whole(self, db: Backend, data_id: str, var_names: Any, phase: str) -> Any:
        """``get_data(var_names, phase)`` answered by one given backend (a tier)."""
        if isinstance(var_names, list):
            return [self._read_whole(db, data_id, v, phase) for v in var_names]
        names, single = self._read_names(var_names)
        n = self._infos(data_id, phase, names[:1], db)[0].length
        return self._read_phase(data_id, phase, names, single, slice(0, n, 1), db)

    def _check_copy_lengths(self, data_id: str, phase: str,
                            columns: list[tuple[str, Any]], shadows: bool) -> None:
        """Refuse a tier copy that would leave ``phase`` with vars of different lengths (the
        compile after the swap would fail with both tiers already changed). ``shadows``: the
        new copies hide the var's present copy (the destination is the memory tier)."""
        new = {v for v, _ in columns}
        lengths = {v: self._db.info(data_id, phase, v).length
                   for v in self._db.var_names(data_id, phase) if not (shadows and v in new)}
        lengths.update({f"{v} (new copy)": _n_rows(arr) for v, arr in columns})
        if len(set(lengths.values())) > 1:
            desc = ", ".join(f"{v}={n}" for v, n in lengths.items())
            raise InconsistentLengthError(
                f"the copy would give vars of different lengths in data_id {data_id!r}, phase "
                f"{phase!r}: {desc}; every var of a phase needs the same number of rows (a "
                "callback must return as many rows as it was given). Nothing was copied."
            )

    def _tier_copy(self, method: str, var_names: Any, phase: Any, output_var_names: Any,
                   callback: Any) -> None:
        tier = getattr(self._db, "tier", None)
        if tier is None:
            raise UnsupportedOperationError(
                f"{method} is valid for only hybrid database ({self._backend}); use "
                "StoreGate(backend='hybrid', ...)."
            )
        data_id = self._require_data_id()
        src, dst = (tier("zarr"), tier("numpy")) if method == "to_memory" else (
            tier("numpy"), tier("zarr"))
        names = [n for n in _flat_names(var_names)]
        out_names = var_names if output_var_names is None else output_var_names
        phases = phase_list(phase)
        if check_phase(phase) == ALL:  # only the phases where the source tier has the vars
            phases = [p for p in phases if any(_tier_has(src, data_id, p, v) for v in names)]
        # 1. stage: read and transform everything before writing anything
        staged: list[tuple[str, list[tuple[str, Any]]]] = []
        for p in phases:
            missing = [v for v in names if not _tier_has(src, data_id, p, v)]
            if missing:
                where = "storage" if method == "to_memory" else "memory"
                raise VarNotFoundError(
                    f"{method}: var {missing[0]!r} is not in the {where} tier of data_id "
                    f"{data_id!r}, phase {p!r}; nothing was copied."
                )
            data = self._read_whole(src, data_id, var_names, p)
            new_names = out_names
            if callback is not None:
                new_names, data = callback(out_names, data)
            columns = [(v, _as_data(c, f"data for var {v!r}"))
                       for v, c in self._columns(new_names, data, method)]
            self._check_copy_lengths(data_id, p, columns, shadows=dst is tier("numpy"))
            staged.append((p, columns))
        if not staged:
            raise VarNotFoundError(
                f"{method}: none of {names} is in the source tier of data_id {data_id!r}; "
                "nothing was copied."
            )
        # 2. write each var under a temporary name, then swap them all in
        dst._check_writable()
        with self._db.transaction():  # every var and phase, or none
            self._invalidate(data_id)
            dst.create_data_id(data_id)
            written: list[tuple[str, str, str]] = []
            try:
                for p, columns in staged:
                    for v, arr in columns:
                        tmp = TEMP_PREFIX + v
                        if dst.has_var(data_id, p, tmp):
                            dst.delete(data_id, p, tmp)
                        written.append((p, v, tmp))
                        if _n_rows(arr) or isinstance(arr, RaggedArray):
                            dst.append(data_id, p, tmp, arr)
                        else:
                            dst.create(data_id, p, tmp, arr.shape, arr.dtype)
                dst.flush()
            except BaseException:
                for p, _, tmp in written:
                    with contextlib.suppress(Exception):
                        if dst.has_var(data_id, p, tmp):
                            dst.delete(data_id, p, tmp)
                raise
            note = getattr(self._db, "note_copy", None)
            mirror = callback is None and out_names == var_names  # same data under the same name
            for p, v, tmp in written:
                dst.rename(data_id, p, tmp, v)
                if note is not None:
                    note(data_id, p, v, mirror)
            enforce = getattr(self._db, "enforce_memory_limit", None)
            if enforce is not None:
                enforce()
            self._compile(data_id, reset=False)

    def to_memory(
        self, var_names: Any, phase: Any = "train", output_var_names: Any = None,
        callback: Any = None,
    ) -> None:
        """Copy vars from the storage tier to the memory tier (hybrid backend only).

        Examples
        --------
        >>> try:
        ...     StoreGate(data_id="d").to_memory("x")
        ... except ValueError as err:
        ...     print(str(err).split(";")[0])
        to_memory is valid for only hybrid database (numpy)
        """
        self._tier_copy("to_memory", var_names, phase, output_var_names, callback)

    def to_storage(
        self, var_names: Any, phase: Any = "train", output_var_names: Any = None,
        callback: Any = None,
    ) -> None:
        """Copy vars from the memory tier to the storage tier (hybrid backend only).

        Examples
        --------
        >>> try:
        ...     StoreGate(data_id="d").to_storage("x")
        ... except ValueError as err:
        ...     print(type(err).__name__)
        UnsupportedOperationError
        """
        self._tier_copy("to_storage", var_names, phase, output_var_names, callback)

    # ------------------------------------------------------------------ display
    def _info_rows(self, data_id: str) -> list[list[str] | str]:
        rows: list[list[str] | str] = []
        for phase in PHASES:
            names = self._db.var_names(data_id, phase)
            if not names:
                continue
            tiers_of = getattr(self._db, "tiers_of", None)
            for v in names:
                info = self._db.info(data_id, phase, v)
                where = ",".join(tiers_of(data_id, phase, v)) if tiers_of else self._backend
                shape = (None, *info.row_shape) if info.ragged else info.row_shape
                vtype = info.dtype.str + (" (ragged)" if info.ragged else "")
                rows.append([phase, where, v, vtype, str(info.length), str(shape)])
            rows.append("-")
        return rows

    def info_table(self) -> str:
        """The :meth:`show_info` table as a string.

        Examples
        --------
        >>> sg = StoreGate(data_id="s")
        >>> sg.add_data("a", np.zeros((10, 3), "f4")); sg.compile()
        >>> print(sg.info_table())
        =============================================================
        StoreGate data_id : s, compiled : True
        =============================================================
        phase  backend  var_name  var_type  total_events  var_shape
        -------------------------------------------------------------
        train  numpy    a         <f4       10            (3,)
        -------------------------------------------------------------
        =============================================================
        """
        data_id = self._require_data_id()
        meta = self._load_meta(data_id)
        header = f"StoreGate data_id : {data_id}, compiled : {meta.compiled}"
        names = ["phase", "backend", "var_name", "var_type", "total_events", "var_shape"]
        rows = self._info_rows(data_id)
        widths = [max(5, len(n)) for n in names]
        for row in rows:
            if isinstance(row, list):
                widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
        widths = [min(w, 30) for w in widths]
        total = sum(widths) + 2 * len(widths)

        def fmt(cells: list[str]) -> str:
            return "  ".join(c[:30].ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

        lines = ["=" * total, header, "=" * total, fmt(names), "-" * total]
        for row in rows:
            lines.append("-" * total if row == "-" else fmt(list(row)))
        lines.append("=" * total)
        return "\n".join(lines)

    def show_info(self, file: IO[str] | None = None) -> None:
        """Print a table of the vars of each phase (multiml's layout, real dtypes).

        Parameters
        ----------
        file
            Where to write; ``sys.stdout`` by default.

        Examples
        --------
        >>> sg = StoreGate(data_id="s")
        >>> sg.add_data("c", np.zeros(4, "i8"), phase=(2, 2, 0))
        >>> sg.show_info()  # doctest: +NORMALIZE_WHITESPACE
        =============================================================
        StoreGate data_id : s, compiled : False
        =============================================================
        phase  backend  var_name  var_type  total_events  var_shape
        -------------------------------------------------------------
        train  numpy    c         <i8       2             ()
        -------------------------------------------------------------
        valid  numpy    c         <i8       2             ()
        -------------------------------------------------------------
        =============================================================
        """
        out = file if file is not None else sys.stdout
        out.write(self.info_table() + "\n")

    # ------------------------------------------------------------------ [] syntax
    def __getitem__(self, item: Any) -> Any:
        return View(self, self._require_data_id())[item]

    def __setitem__(self, item: Any, data: Any) -> None:
        View(self, self._require_data_id())[item] = data

    def __delitem__(self, item: Any) -> None:
        del View(self, self._require_data_id())[item]

    def __len__(self) -> int:
        raise SelectionError(
            "len() needs a phase: use len(sg['train']) (or 'valid', 'test', 'all')."
        )

    def __contains__(self, item: object) -> bool:
        raise SelectionError(
            f"'in' needs a phase: use {item!r} in sg['train'] (or 'valid', 'test', 'all')."
        )

    def __iter__(self) -> Any:
        raise SelectionError(
            "iterate over a selection, e.g. `for row in sg['train']['x']`, or over the vars of "
            "a phase with `for name in sg['train']`."
        )

