"""PyTorch Geometric's ``FeatureStore`` and ``GraphStore`` over a StoreGate.

With these two, PyG's loaders (through :mod:`storegate.pyg`'s sampler) train from any storegate
backend: node features are read a batch at a time, one batched backend read per node type, and
the topology is served in the layout it was stored in.

How PyG's keys map onto the store
---------------------------------
=============================================  ===============================================
PyG                                            storegate
=============================================  ===============================================
node type ``'paper'``                          data_id ``'paper'``
``group_name=None`` (homogeneous nodes)        data_id ``'nodes'`` (option ``node_id``)
edge type ``('author', 'writes', 'paper')``    data_id ``'author__writes__paper'``
``attr_name='x'``                              var ``'x'``
``attr_name=None``                             var ``'__none__'`` (:data:`NONE_ATTR`)
``index``                                      global row over the phase (default ``'all'``:
                                               train, valid, test concatenated)
edge index of ``edge_type`` in layout ``L``    data_id ``<edge type>.<L>`` (``L``: ``coo``,
                                               ``csr``, ``csc``) with the vars of one row per
                                               edge, and ``<edge type>.<L>.ptr`` with the
                                               pointer of CSR/CSC
``edge_type=None`` (homogeneous edges)         edge type ``'edges'`` (option ``edge_id``)
=============================================  ===============================================

Edge types are encoded by joining their three names with ``'__'`` (names cannot hold ``'/'``);
the encoding is reversible because names with ``'__'``, names that start or end with ``'_'``
and names ending in ``.coo``/``.csr``/``.csc``/``.ptr`` are refused (see :func:`encode_type`).

Examples
--------
>>> import torch
>>> from storegate import StoreGate
>>> from storegate.pyg.stores import FeatureStore, GraphStore
>>> sg = StoreGate("numpy")
>>> fs, gs = FeatureStore(sg), GraphStore(sg)
>>> fs.put_tensor(torch.arange(8.0).view(4, 2), group_name=None, attr_name="x", index=None)
True
>>> fs[None, "x", torch.tensor([3, 0])]
tensor([[6., 7.],
        [0., 1.]])
>>> gs.put_edge_index((torch.tensor([1, 2, 3]), torch.tensor([0, 0, 1])),
...                   edge_type=None, layout="coo", size=(4, 4))
True
>>> row, colptr, perm = gs.csc()
>>> row.tolist(), colptr.tolist()
([1, 2, 3], [0, 2, 3, 3, 3])
>>> sorted(sg.get_data_ids())
['edges.coo', 'nodes']
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
import torch_geometric.data as _pyg  # type: ignore[import-untyped, unused-ignore]
from torch_geometric.data.graph_store import (  # type: ignore[import-untyped, unused-ignore]
    EdgeLayout,
)

from .. import indexing
from ..arrays import as_array
from ..backends.base import TEMP_PREFIX, Backend
from ..errors import (
    DataIdNotFoundError,
    DtypeError,
    IndexOutOfRangeError,
    InvalidArgumentError,
    InvalidIndexError,
    InvalidNameError,
    ShapeMismatchError,
    UnsupportedOperationError,
    VarNotFoundError,
)
from ..graph.layout import ATTRS_KEY as _ATTRS_KEY
from ..graph.layout import GRAPH_PHASE as _GRAPH_PHASE
from ..graph.layout import GRAPH_SUFFIXES, SEP
from ..graph.layout import LAYOUT_ORDER as _LAYOUT_ORDER
from ..graph.layout import LAYOUT_VARS as _LAYOUT_VARS
from ..names import check_name
from ..phases import ALL, PHASES, check_phase
from ..ragged import RaggedArray

__all__ = [
    "GRAPH_SUFFIXES",
    "NONE_ATTR",
    "SEP",
    "FeatureStore",
    "GraphStore",
    "decode_type",
    "encode_type",
]

logger = logging.getLogger(__name__)

# SEP, GRAPH_SUFFIXES and the GraphStore layout constants live in storegate.graph.layout
# (torch-free, shared with storegate.graph.partitioning).
#: The var that holds a group's tensor stored with ``attr_name=None`` (``store[group]()``).
NONE_ATTR = "__none__"


# ---------------------------------------------------------------------------------- names
def _check_plain(name: str, what: str, *, joined: bool = False) -> str:
    """``name`` if it is a valid data_id that cannot be taken for another key's encoding."""
    check_name(name, "data_id")
    if SEP in name and not joined:
        raise InvalidNameError(
            f"{what} {name!r} contains {SEP!r}, which separates the names of an edge type in a "
            f"data_id ('author{SEP}writes{SEP}paper'); the name would be ambiguous. Rename it, "
            f"e.g. {name.replace(SEP, '_')!r}."
        )
    if name.endswith(GRAPH_SUFFIXES):
        raise InvalidNameError(
            f"{what} {name!r} ends with one of {GRAPH_SUFFIXES}, the endings of the data_ids "
            f"that hold a GraphStore's edge indices. Rename it, e.g. "
            f"{name.replace('.', '_')!r}."
        )
    return name


def encode_type(type_: Any, none_id: str = "nodes") -> str:
    """The data_id of a node type, an edge type or ``None``.

    Parameters
    ----------
    type_
        ``None`` (homogeneous), a str (a node type, or an edge type given by one name) or a
        ``(src, rel, dst)`` tuple of str.
    none_id
        The data_id standing for ``None``.

    Raises
    ------
    InvalidNameError
        For names that are not valid data_ids or would make the encoding ambiguous: a name
        with ``'__'``, an edge type part that is empty or starts or ends with ``'_'``, a name
        ending in ``.coo``/``.csr``/``.csc``/``.ptr``, a str equal to ``none_id``.

    Examples
    --------
    >>> encode_type(("user", "rates", "movie"))
    'user__rates__movie'
    >>> encode_type(None), encode_type("paper")
    ('nodes', 'paper')
    >>> encode_type(("user", "_rates", "movie"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    storegate.errors.InvalidNameError: edge type ('user', '_rates', 'movie') has the part ...
    """
    if type_ is None:
        return none_id
    if isinstance(type_, str):
        _check_plain(type_, "type name")
        if type_ == none_id:
            raise InvalidNameError(
                f"type name {type_!r} is the data_id of the homogeneous group (None) in this "
                f"store; use None for it, or choose another name for the homogeneous data_id "
                f"(node_id=/edge_id=)."
            )
        return type_
    if (isinstance(type_, tuple) and len(type_) == 3
            and all(isinstance(p, str) for p in type_)):
        for part in type_:
            if part:
                try:
                    check_name(part, "part")
                except InvalidNameError as err:
                    raise InvalidNameError(f"edge type {type_!r}: {err}") from None
            if not part or SEP in part or part.startswith("_") or part.endswith("_"):
                raise InvalidNameError(
                    f"edge type {type_!r} has the part {part!r}; the parts of an edge type are "
                    f"joined with {SEP!r} into a data_id, so they must be non-empty, must not "
                    f"contain {SEP!r} and must not start or end with '_'. Rename it, e.g. "
                    f"{part.strip('_').replace(SEP, '_') or 'x'!r}."
                )
        return _check_plain(SEP.join(type_), f"edge type {type_!r}, encoded as", joined=True)
    raise InvalidNameError(
        f"a group name / edge type must be None, a str or a (src, rel, dst) tuple of str, got "
        f"{type(type_).__name__} {type_!r}."
    )


def decode_type(data_id: str, none_id: str = "nodes") -> Any:
    """The node type, edge type or ``None`` a data_id stands for (inverse of
    :func:`encode_type`).

    Examples
    --------
    >>> decode_type("user__rates__movie")
    ('user', 'rates', 'movie')
    >>> decode_type("nodes"), decode_type("paper")
    (None, 'paper')
    """
    if data_id == none_id:
        return None
    parts = data_id.split(SEP)
    if len(parts) == 3 and all(parts):
        return tuple(parts)
    return data_id


def _check_id_option(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidNameError(f"{what} must be a str data_id, got {value!r}.")
    return _check_plain(value, what)


# ---------------------------------------------------------------------------------- arrays
def _as_numpy(tensor: Any, what: str, *, scalar: bool = False) -> np.ndarray:
    """A tensor, ndarray or array-like as an ndarray with a row axis (no copy for tensors);
    ``scalar``: a 0-d value is accepted too (one row of a 1-D var)."""
    if isinstance(tensor, torch.Tensor):
        try:
            tensor = tensor.detach().cpu().numpy()
        except TypeError as err:  # bfloat16 and friends have no numpy dtype
            raise DtypeError(
                f"{what} has dtype {tensor.dtype}, which numpy (and so storegate) cannot store "
                f"({err}); convert it first, e.g. tensor.float()."
            ) from None
    if scalar and np.ndim(tensor) == 0:
        return as_array(np.reshape(tensor, (1,)), what).reshape(())
    return as_array(tensor, what)


def _tensor(arr: Any, what: str) -> torch.Tensor:
    """A read result as a tensor sharing its memory (copied only when torch cannot share)."""
    if isinstance(arr, RaggedArray):
        raise UnsupportedOperationError(
            f"{what} is a ragged var (rows of different lengths), which PyG cannot take as one "
            "tensor; read it with StoreGate.get_data instead."
        )
    arr = np.asarray(arr)
    if not arr.flags.writeable or not arr.flags.c_contiguous:
        arr = arr.copy()  # torch warns on read-only memory (ascontiguousarray would make 0-d 1-d)
    return torch.from_numpy(arr)


def _is_all(index: Any) -> bool:
    return index is None or (isinstance(index, slice) and index == slice(None))


def _raw_index(index: Any) -> Any:
    """A PyG index made ready for :func:`storegate.indexing.normalize`: tensors as numpy
    arrays (converted once), ``None`` as every row. Ints keep PyG's (Python's) meaning, where
    ``-1`` is the last row rather than storegate's "all rows", so they are resolved later."""
    if index is None:
        return slice(None)
    if isinstance(index, torch.Tensor):
        if index.dtype.is_floating_point or index.dtype.is_complex:
            raise InvalidIndexError(
                f"an index tensor must hold ints (node ids) or bools, got {index.dtype}.")
        return index.detach().cpu().numpy()
    return index


def _normalize(index: Any, length: int) -> indexing.Index:
    """A raw index as a backend index over ``length`` rows, with Python's meaning of
    negative ints (``-1`` is the last row)."""
    if isinstance(index, int | np.integer) and not isinstance(index, bool | np.bool_):
        i = int(index)
        if not -length <= i < length:
            raise IndexOutOfRangeError(
                f"index {i} is out of range for {length} rows.")
        return i + length if i < 0 else i
    if isinstance(index, np.ndarray) and index.ndim == 0:
        return _normalize(index.item(), length)
    return indexing.normalize(index, length)


def _int_array(x: Any, what: str) -> np.ndarray:
    """An edge index part as a 1-D int64 ndarray of non-negative ints."""
    arr = _as_numpy(x, what) if not isinstance(x, np.ndarray) else x
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise InvalidArgumentError(
            f"{what} must be a 1-D integer tensor, got dtype {arr.dtype} and shape {arr.shape}."
        )
    arr = arr.astype(np.int64, copy=False)
    if arr.size and int(arr.min()) < 0:
        raise InvalidArgumentError(f"{what} holds negative values ({int(arr.min())}).")
    return arr


def _shared_array(db: Backend, data_id: str, phase: str, var: str) -> np.ndarray | None:
    """The numpy backend's own buffer of a var (no copy), or ``None`` for other backends.

    The backend contract makes every ``read`` a new array; only the in-memory backend can hand
    out its buffer. The GraphStore uses it so a topology held in memory is served without a
    second copy (edge indices are static in PyG's GraphStore: treat the tensors as read-only).
    """
    from ..backends.numpy_backend import NumpyBackend

    if type(db) is not NumpyBackend:
        return None
    view = getattr(db._column(data_id, phase, var), "view", None)
    return view if isinstance(view, np.ndarray) else None


# ---------------------------------------------------------------------------------- features
class FeatureStore(_pyg.FeatureStore):
    """PyG's ``FeatureStore`` over a :class:`~storegate.StoreGate`.

    ``group_name`` is a node type (or an edge type, for edge features), stored as a data_id
    (see the module docstring for the encoding); ``attr_name`` is a var; ``index`` selects
    global rows over ``phase``, by position, as ``tensor[index]`` would: ``None`` or ``:`` all
    rows, an int (negative counts from the end), a slice, an int or bool tensor / ndarray /
    list. Reads return torch tensors (sharing memory with the array read, no extra copy).

    Parameters
    ----------
    storegate
        The :class:`~storegate.StoreGate` holding the data (any backend). Its default data_id
        is neither used nor changed.
    phase
        The phase whose rows the indexes count: ``'all'`` (default: train, valid and test
        concatenated, in that order), ``'train'``, ``'valid'`` or ``'test'``.
    write_phase
        Where a whole tensor goes when its group has no rows yet, with ``phase='all'``
        (default ``'train'``). A whole tensor for a group that has rows is split over the
        phases as the group's rows are (so it must have as many rows); with a single
        ``phase``, writes go to that phase.
    node_types
        The node types whose vars :meth:`get_all_tensor_attrs` lists (``None`` means the
        homogeneous group). Default: every data_id of the store that is not an edge type, the
        homogeneous edge group or a GraphStore's data_id. Give it when the store also holds
        data_ids that are not node types (e.g. ``[None]`` for a homogeneous graph).
    node_id
        The data_id of ``group_name=None`` (default ``'nodes'``).
    edge_id
        The group of a homogeneous graph's edge features (default ``'edges'``, the
        GraphStore's name for ``edge_type=None``); edge-level, so never listed.
    tensor_attr_cls
        A ``TensorAttr`` subclass with other field defaults or order (PyG's option).

    Notes
    -----
    * ``put_tensor`` without an index stores a whole var, replacing any var of that name (the
      new one is written under a temporary name and then swapped in). With an index it writes
      those rows in place; the var must exist, unless the index holds each row ``0..n-1`` of
      the tensor exactly once (then the var is created, row ``index[i]`` being
      ``tensor[i]``).
    * ``update_tensor`` writes in place when the var exists and the new tensor has its shape
      and dtype (or an index is given), otherwise it replaces the var.
    * ``remove_tensor`` deletes the whole var (an index is ignored, as in PyG's stores).
    * ``get_tensor_size`` reads metadata only; ``None`` for a missing (or ragged) var.
    * ``multi_get_tensor`` makes one ``read_many`` per group and phase touched, converting a
      shared index once.
    * ``get_all_tensor_attrs`` returns new ``TensorAttr`` objects on every call, for the
      regular (non-ragged) vars of the node types only, without ``index``; the var of
      ``attr_name=None`` is not listed (PyG's loaders need a name).
    * The store pickles with its StoreGate, so it works in forked and spawned ``DataLoader``
      workers; backends reopen their files per process.
    * PyG's own pitfalls: ``store[edge_type]`` spreads the tuple over the fields, so write
      ``store[(edge_type,)]``, ``store.view(group_name=edge_type)`` or
      ``store[edge_type, attr, index]``; and PyG's ``get_tensor`` / ``multi_get_tensor`` fail on
      a numpy index array of more than one element (``TensorAttr.is_set`` compares it with
      ``!=``), so index with a tensor or a list.

    Examples
    --------
    >>> import torch
    >>> from storegate import StoreGate
    >>> sg = StoreGate("numpy")
    >>> fs = FeatureStore(sg)
    >>> x = torch.arange(10.0).view(5, 2)
    >>> fs["paper", "x", None] = x
    >>> fs["paper"].x[torch.tensor([4, 1])]
    tensor([[8., 9.],
            [2., 3.]])
    >>> fs.get_tensor_size("paper", "x")
    (5, 2)
    >>> [(a.group_name, a.attr_name) for a in fs.get_all_tensor_attrs()]
    [('paper', 'x')]
    >>> sg.get_data_ids(), fs.storegate.db.var_names("paper", "train")
    (['paper'], ['x'])
    """

    def __init__(
        self,
        storegate: Any,
        *,
        phase: str = "all",
        write_phase: str = "train",
        node_types: Iterable[Any] | None = None,
        node_id: str = "nodes",
        edge_id: str = "edges",
        tensor_attr_cls: Any = None,
    ) -> None:
        from ..gate import StoreGate

        super().__init__(tensor_attr_cls=tensor_attr_cls)
        if not isinstance(storegate, StoreGate):
            raise InvalidArgumentError(
                f"storegate must be a StoreGate, got {type(storegate).__name__}.")
        self.storegate = storegate
        self.phase = check_phase(phase)
        self.write_phase = check_phase(write_phase, allow_all=False)
        self.node_id = _check_id_option(node_id, "node_id")
        self.edge_id = _check_id_option(edge_id, "edge_id")
        if self.node_id == self.edge_id:
            raise InvalidArgumentError(
                f"node_id and edge_id are both {node_id!r}; they name different data_ids.")
        self.node_types: tuple[Any, ...] | None = None
        if node_types is not None:
            types = tuple(node_types)
            for t in types:
                if isinstance(t, tuple):
                    raise InvalidArgumentError(
                        f"node_types holds the edge type {t!r}; edge features are never "
                        "listed (PyG's loaders index them by node id).")
                self._data_id(t)  # validates
            self.node_types = types

    # ------------------------------------------------------------------ keys
    def _data_id(self, group: Any) -> str:
        return encode_type(group, self.node_id)

    @staticmethod
    def _var(attr_name: Any) -> str:
        if attr_name is None:
            return NONE_ATTR
        if not isinstance(attr_name, str):
            raise InvalidNameError(
                f"attr_name must be a str (a var name) or None, got {attr_name!r}.")
        return check_name(attr_name, "var")

    def _phases(self) -> list[str]:
        return list(PHASES) if self.phase == ALL else [self.phase]

    def _where(self, data_id: str, var: str) -> list[str]:
        """The phases of this store's view that hold the var ([] if the group is missing)."""
        db = self.storegate.db
        try:
            return [p for p in self._phases() if db.has_var(data_id, p, var)]
        except DataIdNotFoundError:
            return []

    def _missing(self, group: Any, data_id: str, var: str, what: str = "") -> VarNotFoundError:
        db = self.storegate.db
        try:
            present = sorted({v for p in self._phases() for v in db.var_names(data_id, p)})
        except DataIdNotFoundError:
            return VarNotFoundError(
                f"group_name {group!r} (data_id {data_id!r}) is not in the store{what}.")
        return VarNotFoundError(
            f"attr_name {None if var == NONE_ATTR else var!r} of group_name {group!r} (var "
            f"{var!r} of data_id {data_id!r}, phase {self.phase!r}) is not in the store{what}; "
            f"vars there: {present}.")

    # ------------------------------------------------------------------ reading
    def _sizes(self, group: Any, data_id: str) -> list[int]:
        """Rows per phase of the group (train, valid, test), from its compile metadata."""
        try:
            return list(self.storegate._compiled(data_id).total_events)
        except DataIdNotFoundError:
            raise self._missing(group, data_id, NONE_ATTR) from None

    def _total(self, sizes: list[int]) -> int:
        """The rows an index counts over: all phases, or this store's one phase."""
        return sum(sizes) if self.phase == ALL else sizes[PHASES.index(self.phase)]

    def _read(self, group: Any, vars: Sequence[str], index: Any) -> list[torch.Tensor]:
        """Rows ``index`` (a raw index, see :func:`_raw_index`) of several vars of one group:
        one ``read_many`` per phase touched."""
        db = self.storegate.db
        data_id = self._data_id(group)
        sizes = self._sizes(group, data_id)
        total = self._total(sizes)
        used = ([p for p, n in zip(PHASES, sizes, strict=True) if n > 0] if self.phase == ALL
                else [self.phase])
        for v in vars:
            where = self._where(data_id, v)
            if not where or any(p not in where for p in used):
                raise self._missing(group, data_id, v)
        idx = _normalize(index, total)
        if self.phase != ALL:
            arrays = db.read_many(data_id, self.phase, vars, idx)
        else:
            pieces = indexing.split_over(idx, sizes)
            if not pieces:  # no rows selected
                phase = used[0] if used else self._where(data_id, vars[0])[0]
                arrays = db.read_many(data_id, phase, vars, np.zeros(0, dtype=np.int64))
            elif len(pieces) == 1 and pieces[0][2] is None:
                part, local, _ = pieces[0]
                arrays = db.read_many(data_id, PHASES[part], vars, local)
            else:
                got = [(pos, db.read_many(data_id, PHASES[part], vars, local))
                       for part, local, pos in pieces]
                n = indexing.count(idx, total)
                arrays = []
                for j in range(len(vars)):
                    parts = [g[j] for _, g in got]
                    if any(isinstance(p, RaggedArray) for p in parts):
                        arrays.append(parts[0])  # raises in _tensor, naming the var
                        continue
                    out = np.empty((n, *parts[0].shape[1:]),
                                   dtype=np.result_type(*[p.dtype for p in parts]))
                    for (pos, _), part in zip(got, parts, strict=True):
                        out[pos] = part
                    arrays.append(out)
        return [_tensor(a, f"attr_name {v!r} of group_name {group!r}")
                for a, v in zip(arrays, vars, strict=True)]

    def _get_tensor(self, attr: Any) -> torch.Tensor:
        return self._read(attr.group_name, [self._var(attr.attr_name)],
                          _raw_index(attr.index))[0]

    def _multi_get_tensor(self, attrs: list[Any]) -> list[torch.Tensor]:
        """One batched read per group (and per index object) for all of ``attrs``."""
        groups: dict[tuple[str, int], list[int]] = {}
        for i, attr in enumerate(attrs):
            key = (self._data_id(attr.group_name), id(attr.index))
            groups.setdefault(key, []).append(i)
        raw: dict[int, Any] = {}  # an index shared by several groups is converted once
        out: list[Any] = [None] * len(attrs)
        for (_, key_index), positions in groups.items():
            first = attrs[positions[0]]
            if key_index not in raw:
                raw[key_index] = _raw_index(first.index)
            vars = list(dict.fromkeys(self._var(attrs[i].attr_name) for i in positions))
            tensors = dict(zip(vars, self._read(first.group_name, vars, raw[key_index]),
                               strict=True))
            for i in positions:
                out[i] = tensors[self._var(attrs[i].attr_name)]
        return out

    def _get_tensor_size(self, attr: Any) -> tuple[int, ...] | None:
        data_id, var = self._data_id(attr.group_name), self._var(attr.attr_name)
        db = self.storegate.db
        infos = [db.info(data_id, p, var) for p in self._where(data_id, var)]
        if not infos or any(i.ragged for i in infos):
            return None
        return (sum(i.length for i in infos), *infos[0].row_shape)

    def _node_ids(self) -> list[str]:
        db = self.storegate.db
        present = db.data_ids()
        if self.node_types is not None:
            ids = [self._data_id(t) for t in self.node_types]
            return [d for d in ids if d in present]
        return [d for d in present if d == self.node_id or (
            d != self.edge_id and SEP not in d and not d.endswith(GRAPH_SUFFIXES))]

    def _new_attr(self, group: Any, attr_name: str) -> Any:
        cls = self._tensor_attr_cls
        try:
            return cls(group_name=group, attr_name=attr_name)
        except TypeError:  # a TensorAttr subclass whose __init__ pins some fields
            attr = cls()
            attr.group_name = group
            attr.attr_name = attr_name
            return attr

    def get_all_tensor_attrs(self) -> list[Any]:
        """New ``TensorAttr`` objects (``index`` unset) for the node-level vars: the regular
        vars of every node type, readable over ``phase``.

        Examples
        --------
        >>> from storegate import StoreGate
        >>> fs = FeatureStore(StoreGate("numpy"))
        >>> fs[None, "x", None] = np.zeros((3, 2), "f4")
        >>> fs[("a", "to", "b"), "w", None] = np.ones(4)
        >>> fs.get_all_tensor_attrs()
        [TensorAttr(group_name=None, attr_name='x', index=<_FieldStatus.UNSET: None>)]
        """
        sg = self.storegate
        db = sg.db
        out = []
        for data_id in self._node_ids():
            group = decode_type(data_id, self.node_id)
            names = sg._var_names(data_id, self.phase)
            if not names:
                continue
            where = {v: self._where(data_id, v) for v in names}
            for v in names:
                if v == NONE_ATTR or not where[v]:
                    continue
                if db.info(data_id, where[v][0], v).ragged:
                    continue
                out.append(self._new_attr(group, v))
        return out

    # ------------------------------------------------------------------ writing
    def _put_tensor(self, tensor: Any, attr: Any) -> bool:
        group = attr.group_name
        data_id, var = self._data_id(group), self._var(attr.attr_name)
        if _is_all(attr.index):
            self._put_whole(group, data_id, var, self._array(tensor, attr))
        elif self._where(data_id, var):
            self._write_rows(group, data_id, var, tensor, attr.index)
        else:
            # PyG's own stores accept a first put with an index; positionally that is a whole
            # tensor when the index holds every row 0..n-1 once
            arr = self._array(tensor, attr)
            n = arr.shape[0]
            try:
                idx = _normalize(_raw_index(attr.index), n)
            except InvalidIndexError:
                idx = 0  # rows beyond the tensor: not a whole tensor
            rows = np.arange(n)[idx] if isinstance(idx, slice) else np.atleast_1d(idx)
            if isinstance(idx, int) or rows.shape[0] != n or not np.array_equal(
                    np.sort(rows), np.arange(n)):
                raise self._missing(
                    group, data_id, var,
                    "; put_tensor with an index writes rows of an existing var. Put the whole "
                    "tensor first (index=None), or give an index holding each row 0..n-1 once")
            whole = np.empty_like(arr)
            whole[rows] = arr
            self._put_whole(group, data_id, var, whole)
        return True

    @staticmethod
    def _array(tensor: Any, attr: Any, scalar: bool = False) -> np.ndarray:
        return _as_numpy(tensor, f"the tensor for attr_name {attr.attr_name!r} of group_name "
                                 f"{attr.group_name!r}", scalar=scalar)

    def _write_rows(self, group: Any, data_id: str, var: str, tensor: Any, index: Any) -> None:
        """Overwrite rows ``index`` (global over ``phase``) of an existing var in place."""
        raw = _raw_index(index)
        one = isinstance(raw, int | np.integer) and not isinstance(raw, bool | np.bool_)
        arr = _as_numpy(tensor, f"the rows for attr_name {var!r} of group_name {group!r}",
                        scalar=one)
        if one:  # Python's -1 is the last row, storegate's means "all rows"
            raw = _normalize(raw, self._total(self._sizes(group, data_id)))
        self.storegate._update_data(data_id, var, arr, self.phase, raw, False)

    def _put_whole(self, group: Any, data_id: str, var: str, arr: np.ndarray) -> None:
        """Store ``arr`` as the whole var, replacing it; rows split over the phases as the
        group's other vars are (or all in the write phase for an empty group)."""
        sg = self.storegate
        db = sg.db
        db._check_writable()
        if data_id not in db.data_ids():
            db.create_data_id(data_id)
        phases = self._phases()
        lengths: list[int | None] = []
        for p in phases:
            others = [v for v in db.var_names(data_id, p) if v != var]
            lengths.append(db.info(data_id, p, others[0]).length if others else None)
        n = int(arr.shape[0])
        if all(x is None for x in lengths):
            target = self.write_phase if self.phase == ALL else self.phase
            plan = [(target, 0, n)]
        else:
            sizes = [x or 0 for x in lengths]
            if sum(sizes) != n:
                desc = ", ".join(f"{p}={s}" for p, s in zip(phases, sizes, strict=True))
                raise ShapeMismatchError(
                    f"group_name {group!r} (data_id {data_id!r}) has {sum(sizes)} rows "
                    f"({desc}), but the tensor for attr_name {var!r} has {n}; every var of a "
                    f"group needs one row per node (or edge). Nothing was written."
                )
            plan, start = [], 0
            for p, s in zip(phases, sizes, strict=True):
                if s:
                    plan.append((p, start, start + s))
                start += s
        sg._invalidate(data_id)
        tmp = TEMP_PREFIX + var
        written: list[str] = []
        try:
            for p, a, b in plan:
                if db.has_var(data_id, p, tmp):
                    db.delete(data_id, p, tmp)
                written.append(p)
                if b > a:
                    db.append(data_id, p, tmp, arr[a:b])
                else:
                    db.create(data_id, p, tmp, (0, *arr.shape[1:]), arr.dtype)
        except BaseException:
            for p in written:
                if db.has_var(data_id, p, tmp):
                    db.delete(data_id, p, tmp)
            raise
        for p in phases:
            if p not in written and db.has_var(data_id, p, var):
                db.delete(data_id, p, var)
        for p in written:
            db.rename(data_id, p, tmp, var)
        db.flush()  # whole: forked workers (which drop unflushed rows) see it
        logger.debug("put %s/%s: %s rows into %s", data_id, var, n, written)

    def update_tensor(self, tensor: Any, *args: Any, **kwargs: Any) -> bool:
        """Update a tensor: rows in place when ``index`` is given (the var must exist) or the
        whole var in place when the new tensor has its shape and dtype; otherwise the var is
        replaced (PyG's default: remove, then put).

        Examples
        --------
        >>> from storegate import StoreGate
        >>> fs = FeatureStore(StoreGate("numpy"))
        >>> fs["n", "x", None] = np.zeros(4)
        >>> fs.update_tensor(np.array([5.0, 6.0]), "n", "x", index=[1, 3])
        True
        >>> fs["n", "x", None].tolist()
        [0.0, 5.0, 0.0, 6.0]
        """
        attr = self._tensor_attr_cls.cast(*args, **kwargs)
        if not attr.is_fully_specified():
            raise ValueError(
                f"The input TensorAttr '{attr}' is not fully specified; give group_name, "
                "attr_name and index (None for the whole tensor).")
        data_id, var = self._data_id(attr.group_name), self._var(attr.attr_name)
        if not self._where(data_id, var):
            return bool(self.put_tensor(tensor, attr))
        if not _is_all(attr.index):
            self._write_rows(attr.group_name, data_id, var, tensor, attr.index)
            return True
        arr = self._array(tensor, attr)
        size = self._get_tensor_size(attr)
        dtype = self.storegate.db.info(data_id, self._where(data_id, var)[0], var).dtype
        if size == tuple(arr.shape) and dtype == arr.dtype:
            self.storegate._update_data(data_id, var, arr, self.phase, -1, False)
        else:
            self._put_whole(attr.group_name, data_id, var, arr)
        return True

    def _remove_tensor(self, attr: Any) -> bool:
        data_id, var = self._data_id(attr.group_name), self._var(attr.attr_name)
        where = self._where(data_id, var)
        for p in where:
            self.storegate._delete_data(data_id, [var], p, False)
        return bool(where)


# ---------------------------------------------------------------------------------- graph
class GraphStore(_pyg.GraphStore):
    """PyG's ``GraphStore`` over a :class:`~storegate.StoreGate`: edge indices as int64 vars.

    Each ``(edge_type, layout)`` has its own data_id, named ``<edge type>.<layout>`` (the edge
    type encoded as in the module docstring, ``'edges'`` for ``None``), holding the vars with
    one row per edge in phase ``'train'``:

    ======  ===================  =========================  =================
    layout  PyG payload          data_id ``<e>.<layout>``   ``<e>.<layout>.ptr``
    ======  ===================  =========================  =================
    coo     ``(row, col)``       ``row``, ``col``           —
    csr     ``(rowptr, col)``    ``col``                    ``rowptr``
    csc     ``(row, colptr)``    ``row``                    ``colptr``
    ======  ===================  =========================  =================

    plus ``perm`` when the payload has a third tensor (the original edge id of each stored
    edge, e.g. the ``perm`` that :meth:`csc` returned). The pointer lives in its own data_id
    because every var of a phase has one length in storegate. The ``EdgeAttr`` (edge type,
    layout, ``is_sorted``, ``size``) is kept in the attributes of ``<e>.<layout>``, written
    last, so an interrupted put is never listed.

    Parameters
    ----------
    storegate
        The :class:`~storegate.StoreGate` (any backend); may be the FeatureStore's.
    edge_id
        The data_id stem of ``edge_type=None`` (default ``'edges'``).
    node_id
        The FeatureStore's data_id of the homogeneous nodes (default ``'nodes'``), used to
        infer ``size`` (below).
    edge_attr_cls
        An ``EdgeAttr`` subclass (PyG's option).

    Notes
    -----
    * ``size`` is always set. When a put gives none, each side that no pointer fixes is the
      larger of the highest index + 1 and the rows of the node type's data_id in this store
      (``src``/``dst`` of a tuple edge type, ``node_id`` for ``None``), so isolated nodes at
      the end are counted when the node features are stored first.
    * Lookups key on ``(edge_type, layout)``; the ``is_sorted`` and ``size`` of a query are
      not compared. COO with ``is_sorted=True`` is checked to be sorted by ``col``.
    * Reading a layout reads its vars whole and returns tensors over the arrays read
      (``torch.from_numpy``, no further copy, no sort or conversion when the layout asked for
      is stored). On the in-memory numpy backend they share the backend's own buffers (no copy
      at all): treat them as read-only. On disk backends the one read is the in-memory copy;
      the store keeps no second copy.
    * :meth:`csc` (and :meth:`coo`, :meth:`csr`) return the stored ``perm`` of a layout that
      needs no conversion, and compose it with the conversion's permutation otherwise, so
      edge ids keep pointing at the original edge order. ``store=True`` keeps that ``perm``.

    Examples
    --------
    >>> import torch
    >>> from storegate import StoreGate
    >>> gs = GraphStore(StoreGate("numpy"))
    >>> et = ("user", "rates", "movie")
    >>> gs[et, "coo"] = (torch.tensor([0, 0, 1]), torch.tensor([2, 0, 1]))
    >>> [(a.edge_type, a.layout.value, a.is_sorted, a.size) for a in gs.get_all_edge_attrs()]
    [(('user', 'rates', 'movie'), 'coo', False, (2, 3))]
    >>> row, colptr, perm = gs.csc([et], store=True)
    >>> colptr[et].tolist(), row[et].tolist(), perm[et].tolist()
    ([0, 1, 2, 3], [0, 1, 0], [1, 2, 0])
    >>> sorted(gs.storegate.get_data_ids())
    ['user__rates__movie.coo', 'user__rates__movie.csc', 'user__rates__movie.csc.ptr']
    """

    def __init__(
        self,
        storegate: Any,
        *,
        edge_id: str = "edges",
        node_id: str = "nodes",
        edge_attr_cls: Any = None,
    ) -> None:
        from ..gate import StoreGate

        super().__init__(edge_attr_cls=edge_attr_cls)
        if not isinstance(storegate, StoreGate):
            raise InvalidArgumentError(
                f"storegate must be a StoreGate, got {type(storegate).__name__}.")
        self.storegate = storegate
        self.edge_id = _check_id_option(edge_id, "edge_id")
        self.node_id = _check_id_option(node_id, "node_id")

    # ------------------------------------------------------------------ keys
    def _ids(self, edge_type: Any, layout: Any) -> tuple[str, str, str]:
        """``(main data_id, pointer data_id, layout name)``."""
        name = EdgeLayout(layout).value
        main = f"{encode_type(edge_type, self.edge_id)}.{name}"
        check_name(main + ".ptr", "data_id")
        return main, main + ".ptr", name

    def _meta(self, data_id: str) -> dict[str, Any] | None:
        db = self.storegate.db
        try:
            meta = db.get_attrs(data_id).get(_ATTRS_KEY)
        except DataIdNotFoundError:
            return None
        return meta if isinstance(meta, dict) else None

    def _node_rows(self, node_type: Any) -> int | None:
        """Rows of a node type's data_id in this store (over all phases), or ``None``."""
        db = self.storegate.db
        try:
            data_id = encode_type(node_type, self.node_id)
        except InvalidNameError:
            return None
        if data_id not in db.data_ids():
            return None
        total, found = 0, False
        for p in PHASES:
            names = db.var_names(data_id, p)
            if names:
                total += db.info(data_id, p, names[0]).length
                found = True
        return total if found else None

    # ------------------------------------------------------------------ writing
    def _put_edge_index(self, edge_index: Any, edge_attr: Any) -> bool:
        main, ptr_id, layout = self._ids(edge_attr.edge_type, edge_attr.layout)
        parts = list(edge_index)
        if len(parts) not in (2, 3):
            raise InvalidArgumentError(
                f"an edge index is a pair of tensors (or a 2 x E tensor), plus optionally a "
                f"perm tensor, got {len(parts)} parts.")
        a = _int_array(parts[0], f"{_LAYOUT_VARS[layout][1][0]} of {main!r}")
        b = _int_array(parts[1], f"{_LAYOUT_VARS[layout][1][1]} of {main!r}")
        perm = _int_array(parts[2], f"perm of {main!r}") if len(parts) == 3 and (
            parts[2] is not None) else None
        size = self._size(edge_attr, layout, a, b, main)
        ptr_name = _LAYOUT_VARS[layout][0]
        if layout == "coo":
            edges, ptr = {"row": a, "col": b}, None
        elif layout == "csr":
            edges, ptr = {"col": b}, a
        else:
            edges, ptr = {"row": a}, b
        n_edges = len(next(iter(edges.values())))
        if ptr is not None:
            self._check_ptr(ptr, n_edges, main, ptr_name or "")
        elif len(a) != len(b):
            raise ShapeMismatchError(
                f"row and col of {main!r} have different lengths ({len(a)}, {len(b)}).")
        for name, arr, bound in (("row", a, size[0]), ("col", b, size[1])):
            if name in edges and arr.size and int(arr.max()) >= bound:
                raise ShapeMismatchError(
                    f"{name} of {main!r} holds node {int(arr.max())}, but size is {size}; "
                    "pass a larger size.")
        is_sorted = layout == "csc" or (layout == "coo" and bool(edge_attr.is_sorted))
        if layout == "coo" and is_sorted and b.size and bool((np.diff(b) < 0).any()):
            raise InvalidArgumentError(
                f"is_sorted=True, but col of {main!r} is not sorted; sort the edges by "
                "destination (col) or pass is_sorted=False.")
        if perm is not None:
            edges["perm"] = perm
            if len(perm) != n_edges or (perm.size and int(perm.max()) >= n_edges):
                raise ShapeMismatchError(
                    f"perm of {main!r} must hold {n_edges} edge ids in 0..{n_edges - 1}.")
        meta = {"edge_type": list(edge_attr.edge_type) if isinstance(edge_attr.edge_type, tuple)
                else edge_attr.edge_type, "layout": layout, "is_sorted": is_sorted,
                "size": [int(size[0]), int(size[1])]}
        self._write(main, ptr_id, edges, None if ptr is None else {ptr_name or "": ptr}, meta)
        return True

    def _size(self, edge_attr: Any, layout: str, a: np.ndarray, b: np.ndarray,
              main: str) -> tuple[int, int]:
        if edge_attr.size is not None:
            try:
                src, dst = (int(s) for s in edge_attr.size)
            except (TypeError, ValueError):
                raise InvalidArgumentError(
                    f"size must be (num_src, num_dst), got {edge_attr.size!r}.") from None
            if layout == "csr" and len(a) != src + 1:
                raise ShapeMismatchError(
                    f"rowptr of {main!r} has {len(a)} entries, but size {(src, dst)} needs "
                    f"{src + 1} (num_src + 1).")
            if layout == "csc" and len(b) != dst + 1:
                raise ShapeMismatchError(
                    f"colptr of {main!r} has {len(b)} entries, but size {(src, dst)} needs "
                    f"{dst + 1} (num_dst + 1).")
            return src, dst

        def top(x: np.ndarray) -> int:
            return int(x.max()) + 1 if x.size else 0

        # a pointer fixes its side; the other side is the highest index + 1, or more when the
        # node type's data_id in this store has more rows (isolated nodes at the end)
        src = len(a) - 1 if layout == "csr" else top(a)
        dst = len(b) - 1 if layout == "csc" else top(b)
        et = edge_attr.edge_type
        if et is None:
            src_n = dst_n = max(src, dst, self._node_rows(None) or 0)
        elif isinstance(et, tuple):
            src_n = max(src, self._node_rows(et[0]) or 0)
            dst_n = max(dst, self._node_rows(et[2]) or 0)
        else:
            src_n, dst_n = src, dst
        return (src if layout == "csr" else src_n), (dst if layout == "csc" else dst_n)

    @staticmethod
    def _check_ptr(ptr: np.ndarray, n_edges: int, main: str, name: str) -> None:
        if ptr.size == 0 or int(ptr[0]) != 0 or int(ptr[-1]) != n_edges or bool(
                (np.diff(ptr) < 0).any()):
            raise ShapeMismatchError(
                f"{name} of {main!r} is not a pointer over {n_edges} edges: it must start at "
                f"0, never decrease and end at {n_edges}.")

    def _write(self, main: str, ptr_id: str, edges: dict[str, np.ndarray],
               ptr: dict[str, np.ndarray] | None, meta: dict[str, Any]) -> None:
        sg = self.storegate
        db = sg.db
        db._check_writable()
        present = db.data_ids()
        if main in present:  # unlist the old layout first: a half-written one is never listed
            attrs = db.get_attrs(main)
            if attrs.pop(_ATTRS_KEY, None) is not None:
                db.set_attrs(main, attrs)
        for data_id, cols in ((ptr_id, ptr), (main, edges)):
            if data_id in present:  # drop the old vars (and a pointer the layout lacks)
                sg._invalidate(data_id)
                if cols is None:
                    db.delete_data_id(data_id)
                    continue
                for p in PHASES:
                    for v in db.var_names(data_id, p):
                        db.delete(data_id, p, v)
            elif cols is None:
                continue
            else:
                db.create_data_id(data_id)
            for v, arr in cols.items():
                if arr.size:
                    db.append(data_id, _GRAPH_PHASE, v, arr)
                else:
                    db.create(data_id, _GRAPH_PHASE, v, (0,), np.dtype(np.int64))
            sg._compile(data_id, reset=False)
        attrs = db.get_attrs(main)
        attrs[_ATTRS_KEY] = meta
        db.set_attrs(main, attrs)
        db.flush()

    # ------------------------------------------------------------------ reading
    def _whole(self, data_id: str, var: str) -> torch.Tensor:
        db = self.storegate.db
        arr = _shared_array(db, data_id, _GRAPH_PHASE, var)
        if arr is None:
            n = db.info(data_id, _GRAPH_PHASE, var).length
            arr = db.read(data_id, _GRAPH_PHASE, var, slice(0, n, 1))
        return _tensor(arr, f"var {var!r} of data_id {data_id!r}")

    def _get_edge_index(self, edge_attr: Any) -> tuple[torch.Tensor, torch.Tensor] | None:
        main, ptr_id, layout = self._ids(edge_attr.edge_type, edge_attr.layout)
        if self._meta(main) is None:
            return None
        ptr_name, (first, second) = _LAYOUT_VARS[layout]
        return (self._whole(ptr_id if first == ptr_name else main, first),
                self._whole(ptr_id if second == ptr_name else main, second))

    def get_edge_perm(self, edge_type: Any, layout: Any) -> torch.Tensor | None:
        """The stored ``perm`` of a layout (original edge id of each stored edge), or ``None``.

        Raises
        ------
        KeyError
            When the layout of that edge type is not stored.

        Examples
        --------
        >>> from storegate import StoreGate
        >>> gs = GraphStore(StoreGate("numpy"))
        >>> gs.put_edge_index((np.array([1, 0]), np.array([0, 1, 2]), np.array([1, 0])),
        ...                   edge_type=None, layout="csc")
        True
        >>> gs.get_edge_perm(None, "csc").tolist()
        [1, 0]
        """
        main, _, _ = self._ids(edge_type, layout)
        if self._meta(main) is None:
            raise VarNotFoundError(
                f"'edge_index' of edge type {edge_type!r} in layout {EdgeLayout(layout).value!r}"
                " is not in the store.")
        if not self.storegate.db.has_var(main, _GRAPH_PHASE, "perm"):
            return None
        return self._whole(main, "perm")

    def _remove_edge_index(self, edge_attr: Any) -> bool:
        main, ptr_id, _ = self._ids(edge_attr.edge_type, edge_attr.layout)
        if self._meta(main) is None:
            return False
        sg = self.storegate
        db = sg.db
        db._check_writable()
        for data_id in (main, ptr_id):
            if data_id in db.data_ids():
                sg._invalidate(data_id)
                db.delete_data_id(data_id)
        return True

    def get_all_edge_attrs(self) -> list[Any]:
        """An ``EdgeAttr`` (``size`` set) per stored ``(edge_type, layout)``; the layouts of an
        edge type in the order CSC, COO, CSR.

        Examples
        --------
        >>> from storegate import StoreGate
        >>> gs = GraphStore(StoreGate("numpy"))
        >>> gs.put_edge_index((np.array([0, 1]), np.array([1, 0])), edge_type=None,
        ...                   layout="coo", size=(3, 3))
        True
        >>> [(a.edge_type, a.layout.value, a.size) for a in gs.get_all_edge_attrs()]
        [(None, 'coo', (3, 3))]
        """
        found: list[tuple[Any, str, dict[str, Any]]] = []
        for data_id in self.storegate.db.data_ids():
            if not data_id.endswith(GRAPH_SUFFIXES[:3]):
                continue
            meta = self._meta(data_id)
            if meta is None:
                continue
            et = meta.get("edge_type")
            found.append((tuple(et) if isinstance(et, list) else et, str(meta["layout"]), meta))
        order: dict[Any, int] = {}
        for et, _, _ in found:
            order.setdefault(et, len(order))
        found.sort(key=lambda f: (order[f[0]], _LAYOUT_ORDER.get(f[1], 3)))
        cls = self._edge_attr_cls
        return [cls(edge_type=et, layout=EdgeLayout(layout), is_sorted=bool(m["is_sorted"]),
                    size=(int(m["size"][0]), int(m["size"][1])))
                for et, layout, m in found]

    # ------------------------------------------------------------------ conversions
    def _edge_to_layout(self, attr: Any, layout: Any, store: bool = False) -> tuple[Any, Any, Any]:
        """PyG's conversion, with the stored ``perm`` of the source layout composed in, and
        ``store=True`` keeping the resulting ``perm``."""
        row, col, perm = super()._edge_to_layout(attr, layout, False)
        src_layout, dst_layout = EdgeLayout(attr.layout), EdgeLayout(layout)
        stored = self.get_edge_perm(attr.edge_type, src_layout)
        if stored is not None:
            perm = stored if perm is None else stored[perm]
        if store and src_layout != dst_layout:
            # COO made from CSC is sorted by destination; CSC always is; CSR never
            is_sorted = dst_layout == EdgeLayout.CSC or (
                dst_layout == EdgeLayout.COO and src_layout == EdgeLayout.CSC)
            new = self._edge_attr_cls(edge_type=attr.edge_type, layout=dst_layout,
                                      is_sorted=is_sorted, size=attr.size)
            self.put_edge_index((row, col) if perm is None else (row, col, perm), new)
        return row, col, perm
