"""kinoml-compatible PyTorch datasets, built over a StoreGate.

The five dataset classes of ``kinoml.datasets.torch_datasets`` with kinoml's constructors,
classmethods and return shapes, reading their rows from a :class:`~storegate.StoreGate`:

=============================  ==================================================================
class                          built from
=============================  ==================================================================
PrefeaturizedTorchDataset      ``(systems, measurements, observation_model)``: featurized arrays
TorchDataset                   ``(systems, measurements, featurizer, observation_model)``
XyTorchDataset                 ``(X, y, indices)``, :meth:`~XyTorchDataset.from_npz`
MultiXTorchDataset             ``(dict_of_arrays, indices)``, :meth:`~MultiXTorchDataset.from_npz`
AwkwardArrayDataset            ``(data)``, :meth:`~AwkwardArrayDataset.from_parquet`
=============================  ==================================================================

Every class keeps its rows in one phase of a data_id, **in source order**, so the dataset's
index space is kinoml's: global row numbers. Splits are the ``indices`` attribute, a dict with
kinoml's keys ``'train'``, ``'test'``, ``'val'`` of int64 row-number arrays (as in kinoml they
are not applied by ``__getitem__``: use ``ds[ds.indices['train']]`` or
``torch.utils.data.Subset(ds, ds.indices['train'])``). Built from arrays, the store is in
memory (the ``numpy`` backend, a copy of the data). ``from_npz``/``from_parquet`` import the
file through :mod:`storegate.convert` into a zarr store at ``store=`` (kept, and reused the next
time), or, without ``store=``, into memory (``MultiXTorchDataset.from_npz(lazy=True)``: a
temporary zarr directory, deleted with the dataset).

What kinoml got wrong and these classes do right (each has a test):

* indexes: Python, numpy and torch integers (also negative), slices (also negative and
  stepped), lists, arrays and 1-D tensors of ints and bool masks (numpy, torch, list) select the
  same rows of X and y; rows out of range raise
  :class:`~storegate.errors.IndexOutOfRangeError` (an ``IndexError``); tuples are lists of rows;
* an int index gives a 0-d y in every class (kinoml's multi-X path gave shape ``(1,)``);
* ``indices=None`` (every row is ``'train'``) and single-key dicts are accepted;
* single-X NPZ files load in ``MultiXTorchDataset``; NPZ files without ``idx_*`` load;
* ``AwkwardArrayDataset`` decides once per field whether it is one stacked tensor (the field is
  regular over the whole dataset) or a list of per-item tensors (ragged), so the return types
  never change from batch to batch; torch tensors work as indexes;
* tensors are created on the CPU (``device`` stays ``'cpu'``; move batches in the training
  loop), without ``requires_grad``; DataLoader workers (fork or spawn) work for every class:
  files are never re-opened per item, no file handle is shared between processes;
* ``TorchDataset`` really memoizes (the featurizer runs once per item) and accepts kinoml's
  current featurizer API (``featurizer(list_of_systems)``) as well as per-system callables.

Each ``__getitem__`` is one batched StoreGate read (for every var at once), and the classes
implement ``__getitems__``, so a ``DataLoader`` reads a whole batch at once too, then collates
per-item samples exactly as kinoml's per-item path did.

Examples
--------
>>> import numpy as np, torch
>>> from storegate.torch.kinoml import XyTorchDataset
>>> X = np.arange(12, dtype="float32").reshape(6, 2)
>>> y = np.arange(6, dtype="float32")
>>> ds = XyTorchDataset(X, y, indices={"train": [0, 1, 2, 3], "test": [4, 5]})
>>> ds[-1]
(tensor([10., 11.]), tensor(5.))
>>> Xb, yb = ds[ds.indices["test"]]
>>> Xb.shape, yb.tolist()
(torch.Size([2, 2]), [4.0, 5.0])
>>> loader = ds.as_dataloader(batch_size=4)
>>> [b[1].tolist() for b in loader]
[[0.0, 1.0, 2.0, 3.0], [4.0, 5.0]]
"""

from __future__ import annotations

import inspect
import logging
import numbers
import os
import re
import shutil
import tempfile
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import (
    DtypeError,
    IndexOutOfRangeError,
    InvalidArgumentError,
    InvalidIndexError,
    ShapeMismatchError,
    UnsupportedOperationError,
    VarNotFoundError,
)
from ..gate import StoreGate
from ..indexing import is_torch_tensor, normalize
from ..names import check_name
from ..phases import PHASES, check_phase
from ..ragged import RaggedArray

__all__ = [
    "AwkwardArrayDataset",
    "MultiXTorchDataset",
    "PrefeaturizedTorchDataset",
    "TorchDataset",
    "XyTorchDataset",
    "null_observation_model",
]

logger = logging.getLogger(__name__)

#: data_id attribute where ``from_npz``/``from_parquet`` record what they imported.
ATTR = "kinoml_torch"
#: data_id of stores built from arrays, and of files whose name is not a valid data_id.
DEFAULT_DATA_ID = "kinoml"
#: kinoml's split names, in kinoml's order.
SPLITS = ("train", "test", "val")

_SPLIT_ALIASES = {
    "train": "train", "idx_train": "train",
    "test": "test", "idx_test": "test",
    "val": "val", "valid": "val", "validation": "val", "idx_val": "val", "idx_valid": "val",
}
# kinoml's NPZ key grammar: X_<letter><int>[_<letter><int>][_]
_X_KEY = re.compile(r"^X_([A-Za-z])(\d+)(?:_([A-Za-z])(\d+))?_?$")


def null_observation_model(arg: Any) -> Any:
    """The identity: kinoml's default observation model (kept as an attribute, never applied
    by the datasets).

    >>> null_observation_model(3)
    3
    """
    return arg


# ---------------------------------------------------------------------------------- helpers
def _rows(index: Any, n: int) -> int | slice | np.ndarray:
    """A kinoml index as a non-negative int, a slice with step >= 1 or an int64 row array.

    Unlike :func:`storegate.indexing.normalize`, ``-1`` is the last row (kinoml/numpy), and a
    tuple is a list of rows (not multiml's ``(start, stop)``).
    """
    if (is_torch_tensor(index) or isinstance(index, np.ndarray)) and index.ndim == 0:
        index = index.item()
    if isinstance(index, bool | np.bool_):
        raise InvalidIndexError(
            f"a bool ({index!r}) is not a row index; use a bool mask with one entry per row, "
            "an int, a slice or a list of ints.")
    if isinstance(index, numbers.Integral):
        i = int(index)
        j = i + n if i < 0 else i
        if not 0 <= j < n:
            raise IndexOutOfRangeError(
                f"index {i} is out of range for a dataset of {n} rows (valid: {-n}..{n - 1})."
                if n else f"index {i} is out of range: the dataset has no rows.")
        return j
    if isinstance(index, tuple):
        index = list(index)
    return normalize(index, n)


def _tensor(arr: Any) -> torch.Tensor:
    """A CPU tensor sharing memory with a (fresh) numpy array read from the store."""
    a = np.asarray(arr)
    if not (a.flags.writeable and a.flags.c_contiguous):
        a = np.array(a, order="C")  # (np.ascontiguousarray would make a 0-d array 1-d)
    return torch.from_numpy(a)


def _item(arr: Any, transposed: bool) -> torch.Tensor:
    t = _tensor(arr)
    return t.t().contiguous() if transposed else t


def _items(data: np.ndarray | RaggedArray, transposed: bool) -> list[torch.Tensor]:
    """Rows of a batch read as a list of per-item tensors (views of one buffer)."""
    if isinstance(data, RaggedArray):
        lengths = np.diff(data.offsets).tolist()
        parts = list(torch.split(_tensor(data.values), lengths)) if lengths else []
    else:
        parts = list(_tensor(data).unbind(0))
    if transposed:
        parts = [p.t().contiguous() for p in parts]
    return parts


def _stacked(data: np.ndarray, transposed: bool) -> torch.Tensor:
    t = _tensor(data)
    return t.transpose(-1, -2).contiguous() if transposed else t


def _as_numpy(obj: Any, what: str) -> np.ndarray:
    if is_torch_tensor(obj):
        return np.asarray(obj.detach().cpu().numpy())
    try:
        arr = np.asarray(obj)
    except ValueError:
        raise ShapeMismatchError(
            f"{what} holds arrays of different shapes; give one array-like per row.") from None
    if arr.dtype == object:
        raise DtypeError(
            f"{what} is not numeric (object dtype, e.g. Python objects or arrays of different "
            "shapes); give numbers or a list of numeric arrays.")
    return arr


def _column(items: Sequence[Any], what: str) -> tuple[np.ndarray | RaggedArray, bool]:
    """Per-row arrays as one var: ``(data, transposed)``. Equal shapes: a dense var; shapes
    that differ in the first axis: a ragged var; 2-D items ``(k, n_i)`` that differ in the last
    axis: a ragged var of the transposed items (transposed back when read)."""
    arrays = [_as_numpy(a, what) for a in items]
    if not arrays:
        raise ShapeMismatchError(f"{what} has no rows.")
    shapes = {a.shape for a in arrays}
    if len(shapes) == 1:
        return np.stack(arrays), False
    if all(a.ndim >= 1 for a in arrays) and len({a.shape[1:] for a in arrays}) == 1:
        return RaggedArray.from_list(arrays, what), False
    if all(a.ndim == 2 for a in arrays) and len({a.shape[0] for a in arrays}) == 1:
        return RaggedArray.from_list([a.T for a in arrays], what), True
    a, b = sorted(shapes)[:2]
    raise ShapeMismatchError(
        f"{what} has items of shapes {a} and {b}; items may differ in their first axis only "
        "(or, for 2-D items (k, n_i), in their last).")


def _check_indices(indices: Any, n: int) -> dict[str, np.ndarray]:
    """kinoml's ``indices`` as ``{'train'|'test'|'val': int64 row numbers}``."""
    if indices is None:
        return {"train": np.arange(n, dtype=np.int64)}
    if not isinstance(indices, Mapping):
        raise InvalidArgumentError(
            f"indices must be a dict like {{'train': rows, 'test': rows, 'val': rows}} or None, "
            f"got {type(indices).__name__}.")
    out: dict[str, np.ndarray] = {}
    for key, value in indices.items():
        name = _SPLIT_ALIASES.get(str(key))
        if name is None:
            raise InvalidArgumentError(
                f"indices key {key!r} is not a split; use 'train', 'test' and 'val' (kinoml's "
                "names; 'valid' and 'idx_*' are accepted too).")
        if name in out:
            raise InvalidArgumentError(f"indices names the split {name!r} twice ({key!r}).")
        if value is True:  # kinoml's placeholder {"train": True}
            rows: Any = np.arange(n, dtype=np.int64)
        elif value is None or value is False:
            rows = np.empty(0, dtype=np.int64)
        elif isinstance(value, numbers.Integral) or (
                isinstance(value, np.ndarray | torch.Tensor) and value.ndim == 0):
            rows = np.array([_rows(value, n)], dtype=np.int64)
        else:
            rows = _rows(value, n)
            if isinstance(rows, slice):
                rows = np.arange(rows.start, rows.stop, rows.step, dtype=np.int64)
        out[name] = np.asarray(rows, dtype=np.int64)
    return {k: out[k] for k in SPLITS if k in out}


def _fingerprint(path: str) -> dict[str, Any] | None:
    """What identifies a source file (name, size, modification time); None if missing."""
    if os.path.isfile(path):
        st = os.stat(path)
        return {"file": os.path.basename(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    if os.path.isdir(path):
        files = sorted(f for f in os.listdir(path) if f.endswith(".parquet"))
        stats = [os.stat(os.path.join(path, f)) for f in files]
        return {"file": os.path.basename(os.path.normpath(path)), "files": files,
                "size": sum(s.st_size for s in stats),
                "mtime_ns": max((s.st_mtime_ns for s in stats), default=0)}
    return None


def _default_data_id(path: str) -> str:
    stem = os.path.basename(os.path.normpath(path))
    for ext in (".npz", ".parquet"):
        stem = stem.removesuffix(ext)
    try:
        return check_name(stem, "data_id")
    except ValueError:
        return DEFAULT_DATA_ID


def _remove_tree(path: str, pid: int) -> None:
    if os.getpid() == pid:  # never from a forked child (a DataLoader worker) of the owner
        shutil.rmtree(path, ignore_errors=True)


def _temporary_zarr() -> StoreGate:
    """A zarr store in a temporary directory, removed when the gate is collected (or at exit)
    in the process that made it; copies in forked or spawned workers never remove it."""
    tmp = tempfile.mkdtemp(prefix="storegate-kinoml-")
    sg = StoreGate("zarr", {"output_dir": os.path.join(tmp, "store.zarr")})
    weakref.finalize(sg, _remove_tree, tmp, os.getpid())
    return sg


def _target(store: Any, lazy: bool) -> StoreGate:
    """The gate an import writes to: ``store`` (a StoreGate, or a zarr directory), else memory
    (``lazy``: a temporary zarr directory, removed with the gate)."""
    if isinstance(store, StoreGate):
        return store
    if store is None:
        return _temporary_zarr() if lazy else StoreGate("numpy")
    return StoreGate("zarr", {"output_dir": os.fspath(store)})


def _options(dtype: Any) -> dict[str, Any]:
    """Import options a reused store must have been made with."""
    from ..convert.target import float_cast

    cast = float_cast(dtype)
    return {"dtype": None if cast is None else cast.str}


def _reusable(sg: StoreGate, data_id: str, source: dict[str, Any] | None, overwrite: bool,
              path: str, options: dict[str, Any]) -> dict[str, Any] | None:
    """The recorded import of ``path`` in ``sg`` if it can be reused; None to import (after
    clearing the data_id when ``overwrite``)."""
    from ..convert.errors import DestinationExistsError

    if data_id not in sg.get_data_ids():
        return None
    if not any(sg.db.var_names(data_id, ph) for ph in PHASES):
        return None
    meta = sg.db.get_attrs(data_id).get(ATTR)
    same = meta is not None and meta.get("options") == options and (
        source is None or meta.get("source") == source)
    if not overwrite and same:
        assert meta is not None
        logger.info("%s: reusing data_id %r of %s", path, data_id, sg.db.describe())
        return dict(meta)
    if overwrite:
        sg.set_data_id(data_id)
        sg.clear_data()
        attrs = sg.db.get_attrs(data_id)
        attrs.pop(ATTR, None)
        sg.db.set_attrs(data_id, attrs)
        return None
    if meta is None:
        why = "was not imported by storegate.torch.kinoml"
    elif meta.get("options") != options:
        why = f"was imported with other options ({meta.get('options')}, not {options})"
    else:
        why = f"holds another version of the file ({meta.get('source')} != {source})"
    raise DestinationExistsError(
        f"data_id {data_id!r} of {sg.db.describe()} {why}; pass overwrite=True to import "
        f"{path!r} again, or choose another data_id= or store=.", path)


def _record(sg: StoreGate, data_id: str, meta: dict[str, Any]) -> None:
    attrs = sg.db.get_attrs(data_id)
    attrs[ATTR] = meta
    sg.db.set_attrs(data_id, attrs)


def _npz_plan(path: str) -> dict[str, Any]:
    """kinoml's NPZ layout from the member headers (no data read but the ``idx_*`` members):
    the X vars the import makes, the vars whose items need transposing, the split indices."""
    from ..convert.errors import SourceFormatError
    from ..convert.npzfile import NpzReader

    with NpzReader(path) as reader:
        shapes: dict[int | None, list[tuple[int, ...]]] = {}
        keys = set()
        indices: dict[str, np.ndarray] = {}
        for m in reader.members:
            keys.add(m.key)
            if m.key in _SPLIT_ALIASES and m.key.startswith("idx_"):
                indices[m.key] = reader.read(m)
                continue
            hit = _X_KEY.match(m.key)
            if hit is not None:
                j = None if hit.group(4) is None else int(hit.group(4))
                shapes.setdefault(j, []).append(m.shape)
        spath = reader.path
    if "y" not in keys:
        raise SourceFormatError(
            f"{spath!r} has no member 'y'; kinoml's NPZ files hold X (or X_s{{i}}_a{{j}}_ "
            "members), y and optionally idx_train/idx_test/idx_val.", spath)
    if "X" in keys and not shapes:
        return {"x_layout": "X", "x_vars": ["X"], "transpose": [], "indices": indices}
    if not shapes:
        raise SourceFormatError(
            f"{spath!r} is not in kinoml's layout: it has no member X, X_s{{i}}_ or "
            f"X_s{{i}}_a{{j}}_ (members: {sorted(keys)[:6]}).", spath)
    layout = "X_s" if None in shapes else "X_s_a"
    names = {j: "X" if j is None else f"X_a{j}" for j in shapes}
    transpose = []
    for j, sh in shapes.items():
        if len(set(sh)) == 1:
            continue
        first_axis = all(len(s) >= 1 for s in sh) and len({s[1:] for s in sh}) == 1
        last_axis = all(len(s) == 2 for s in sh) and len({s[0] for s in sh}) == 1
        if last_axis and not first_axis:
            transpose.append(names[j])
    order = sorted(shapes, key=lambda j: -1 if j is None else j)
    return {"x_layout": layout, "x_vars": [names[j] for j in order], "transpose": transpose,
            "indices": indices}


def _single_x_only(path: str, layout: Any) -> None:
    if layout != "X":
        raise ShapeMismatchError(
            f"{path!r} has per-system X members ({layout}); XyTorchDataset needs one X "
            "array: use MultiXTorchDataset.from_npz.")


def _import_npz(path: Any, store: Any, lazy: bool, data_id: str | None, dtype: Any,
                transpose: Sequence[str] | None, overwrite: bool, single_x: bool = False
                ) -> tuple[StoreGate, str, dict[str, Any]]:
    """Import a kinoml NPZ (all rows to 'train', file order) or reuse a stored import."""
    from ..convert import import_npz

    spath = os.fspath(path)
    sg = _target(store, lazy)
    did = data_id if data_id is not None else _default_data_id(spath)
    source = _fingerprint(spath)
    options = _options(dtype)
    meta = _reusable(sg, did, source, overwrite, spath, options)
    if meta is not None:
        if single_x:
            _single_x_only(spath, meta.get("x_layout"))
        return sg, did, meta
    plan = _npz_plan(spath)
    if single_x:
        _single_x_only(spath, plan["x_layout"])
    todo = list(plan["transpose"] if transpose is None else transpose)
    res = import_npz(spath, sg, data_id=did, layout="kinoml", var_names=[*plan["x_vars"], "y"],
                     phase="train", dtype=dtype, transpose=todo)
    n = res.sizes["train"]
    indices = _check_indices(plan["indices"] or None, n)
    meta = {"version": 1, "format": "npz", "source": source, "options": options,
            "x_layout": plan["x_layout"],
            "x_vars": plan["x_vars"], "y_var": "y", "phase": "train",
            "transposed": [v.name for v in res.vars if v.transposed],
            "indices": {k: v.tolist() for k, v in indices.items()}}
    _record(sg, did, meta)
    sg.close()  # committed, and the store's writer lock released (the dataset only reads)
    return sg, did, meta


def _parquet_transpose(path: str) -> list[str]:
    """Feature fields of a kinoml Parquet file whose 2-D items ``(k, n_i)`` vary along their
    last axis (read only when the import without ``transpose=`` failed)."""
    import awkward as ak

    arr = ak.from_parquet(path)
    out = []
    for f in arr.fields[:-1]:
        col = arr[f]
        if col.ndim != 3 or len(col) == 0:
            continue
        first = np.asarray(ak.to_numpy(ak.num(col, axis=1)))
        inner = np.asarray(ak.to_numpy(ak.flatten(ak.num(col, axis=2))))
        if np.unique(first).size == 1 and np.unique(inner).size > 1:
            out.append(f)
    return out


def _import_parquet(path: Any, store: Any, data_id: str | None, dtype: Any,
                    transpose: Sequence[str] | None, overwrite: bool, batch_rows: int | None,
                    indices: Any) -> tuple[StoreGate, str, dict[str, Any]]:
    from ..convert import import_kinoml_parquet
    from ..convert.errors import UnsupportedFieldError

    spath = os.fspath(path)
    sg = _target(store, False)
    did = data_id if data_id is not None else _default_data_id(spath)
    source = _fingerprint(spath)
    options = _options(dtype)
    meta = _reusable(sg, did, source, overwrite, spath, options)
    if meta is None:
        def run(fields: Sequence[str]) -> Any:
            return import_kinoml_parquet(spath, sg, data_id=did, phase="train", dtype=dtype,
                                         batch_rows=batch_rows, transpose=list(fields))
        try:
            res = run(transpose or ())
        except UnsupportedFieldError:
            fields = _parquet_transpose(spath) if transpose is None else []
            if not fields:
                raise
            logger.info("%s: storing fields %s transposed (items vary along their last axis)",
                        spath, fields)
            res = run(fields)
        meta = {"version": 1, "format": "parquet", "source": source, "options": options,
                "x_layout": "X_s_a", "x_vars": res.feature_names, "y_var": res.label_name,
                "phase": "train", "transposed": [v.name for v in res.vars if v.transposed],
                "indices": None}
        _record(sg, did, meta)
    if indices is not None:
        n = sg._compiled(did).sizes()["train"]
        meta["indices"] = {k: v.tolist() for k, v in _check_indices(indices, n).items()}
        _record(sg, did, meta)
    sg.close()  # committed, and the store's writer lock released (the dataset only reads)
    return sg, did, meta


# ---------------------------------------------------------------------------------- base
class _KinomlDataset(Dataset):
    """Shared machinery: the store, the row count, index handling, batched reads."""

    #: Where tensors are created; always the CPU (kinoml chose CUDA when available, which
    #: broke DataLoader workers). Move batches to the GPU in the training loop.
    device: str = "cpu"
    storegate: StoreGate
    data_id: str
    phase: str
    indices: dict[str, np.ndarray]

    # ------------------------------------------------------------------ construction
    def _attach(self, storegate: StoreGate, data_id: str, phase: str, x_vars: Sequence[str],
                y_var: str, indices: Any, transposed: Sequence[str] = ()) -> None:
        self.storegate = storegate
        self.data_id = data_id
        self.phase = check_phase(phase)
        #: kinoml's observation model: kept, never applied by the dataset.
        self.observation_model: Callable[..., Any] = null_observation_model
        sizes = storegate._compiled(data_id).sizes()
        self._n = int(sizes[self.phase])
        self._x_vars = list(x_vars)
        self._y_var = y_var
        phases = [p for p in PHASES if sizes[p]] if self.phase == "all" else [self.phase]
        db = storegate.db
        ragged: dict[str, bool] = {}
        for v in [*self._x_vars, y_var]:
            for p in phases or [PHASES[0]]:
                if not db.has_var(data_id, p, v):
                    raise VarNotFoundError(
                        f"var {v!r} is not in phase {p!r} of data_id {data_id!r}; it has "
                        f"{db.var_names(data_id, p)}.")
                ragged[v] = db.info(data_id, p, v).ragged
        self._ragged = ragged
        self._transposed = frozenset(transposed)
        self.indices = _check_indices(indices, self._n)

    @staticmethod
    def _memory_gate(columns: Sequence[tuple[str, Any]]) -> StoreGate:
        sg = StoreGate("numpy", data_id=DEFAULT_DATA_ID)
        for name, data in columns:
            sg.add_data(name, data, phase="train")
        sg.compile()
        return sg

    @classmethod
    def from_storegate(
        cls,
        storegate: StoreGate,
        data_id: str | None = None,
        *,
        phase: str = "train",
        x_vars: str | Sequence[str] | None = None,
        y_var: str | None = None,
        indices: Any = None,
    ) -> Any:
        """The dataset over vars already in a StoreGate.

        Parameters
        ----------
        storegate
            Any :class:`~storegate.StoreGate` (e.g. ``StoreGate.open('store.zarr')``).
        data_id
            The data_id; ``None``: the gate's current one.
        phase
            The phase whose rows are the dataset's rows; ``'all'`` for the three phases
            concatenated (then ``indices`` defaults to the phases: ``'train'``, ``'val'``,
            ``'test'`` row ranges).
        x_vars, y_var
            The feature var(s) and the label var. Default: what ``from_npz``/``from_parquet``
            recorded, else ``'X'`` / every var but the label, and ``'y'``.
        indices
            kinoml's split dict; default: the recorded one, else as described for ``phase``.
        """
        if not isinstance(storegate, StoreGate):
            raise InvalidArgumentError(
                f"storegate must be a StoreGate, got {type(storegate).__name__}.")
        did = data_id if data_id is not None else storegate._require_data_id()
        ph = check_phase(phase)
        attrs = storegate.db.get_attrs(did) if did in storegate.get_data_ids() else {}
        meta = attrs.get(ATTR)
        if meta is not None and meta.get("phase") != ph:
            meta = None
        if meta is None:  # vars that import_npz(transpose=...) stored transposed
            source = attrs.get("source")
            meta = {"transposed": list(source.get("transposed", []))
                    if isinstance(source, Mapping) else []}
        meta = dict(meta)
        y = y_var or meta.get("y_var") or "y"
        if x_vars is not None:
            xs = [x_vars] if isinstance(x_vars, str) else list(x_vars)
            if meta.get("x_vars") != xs:
                meta.pop("x_layout", None)
        elif meta.get("x_vars"):
            xs = list(meta["x_vars"])
        else:
            xs = cls._default_x_vars(storegate, did, ph, y)
        if indices is None:
            indices = meta.get("indices")
        if indices is None and ph == "all":
            sizes = storegate._compiled(did).sizes()
            bounds = np.cumsum([0, *(sizes[p] for p in PHASES)])
            indices = {"train": np.arange(bounds[0], bounds[1]),
                       "val": np.arange(bounds[1], bounds[2]),
                       "test": np.arange(bounds[2], bounds[3])}
            indices = {k: v for k, v in indices.items() if k == "train" or v.size}
        self = cls.__new__(cls)
        self._attach(storegate, did, ph, xs, y, indices, meta.get("transposed", ()))
        self._init_layout(meta)
        return self

    @classmethod
    def _default_x_vars(cls, storegate: StoreGate, data_id: str, phase: str,
                        y_var: str) -> list[str]:
        return ["X"]

    def _init_layout(self, meta: Mapping[str, Any]) -> None:
        """Class-specific checks after :meth:`_attach`."""

    # ------------------------------------------------------------------ reading
    def __len__(self) -> int:
        return self._n

    def _read(self, rows: int | slice | np.ndarray, names: Sequence[str] | None = None
              ) -> list[Any]:
        """One batched read of every var (this dataset's data_id, whatever the gate's)."""
        names = [*self._x_vars, self._y_var] if names is None else list(names)
        out: list[Any] = self.storegate._get_data(self.data_id, names, self.phase, rows, "raw")
        return out

    def _x_batch(self, var: str, data: Any) -> Any:
        """A var's rows for a batch: one tensor if the var is regular, else a list."""
        if isinstance(data, RaggedArray):
            return _items(data, var in self._transposed)
        return _stacked(data, var in self._transposed)

    def _x_one(self, var: str, data: Any) -> torch.Tensor:
        return _item(data, var in self._transposed)

    def _split(self, batch: Any) -> list[Any]:
        """A batch ``(X, y)`` (X a tensor or list) as per-item ``(x, y)`` samples."""
        X, y = batch
        xs = X if isinstance(X, list) else list(X.unbind(0))
        return list(zip(xs, y.unbind(0), strict=True))

    def __getitems__(self, indices: Sequence[int]) -> list[Any]:
        """Per-item samples of a batch of rows, from one batched read (``DataLoader`` calls
        this, then collates the samples as it collates ``ds[i]`` for each ``i``)."""
        return self._split(self[list(indices)])

    def as_dataloader(self, **kwargs: Any) -> DataLoader:
        """Build a PyTorch ``DataLoader`` over this dataset: ``DataLoader(self, **kwargs)``."""
        return DataLoader(dataset=self, **kwargs)

    def __repr__(self) -> str:
        splits = ", ".join(f"{k}={v.size}" for k, v in self.indices.items())
        return (f"{type(self).__name__}({self._n} rows, X={self._x_vars}, y={self._y_var!r}, "
                f"indices: {splits}; data_id {self.data_id!r} phase {self.phase!r} of "
                f"{self.storegate.db.describe()})")


# ---------------------------------------------------------------------------------- Xy
class XyTorchDataset(_KinomlDataset):
    """kinoml's ``XyTorchDataset``: a dense X and its y.

    ``ds[i]`` is ``(X[i], y[i])`` (y 0-d), any other index ``(X[rows], y[rows])``; dtypes are
    kept as stored (kinoml used ``torch.as_tensor``). The store holds a copy of the arrays
    (kinoml shared memory with them).

    Parameters
    ----------
    X, y
        Array-likes (numpy arrays, torch tensors, lists) with the same number of rows.
    indices
        kinoml's splits ``{'train': rows, 'test': rows, 'val': rows}`` (any subset of the keys;
        row numbers or bool masks); ``None``: every row is ``'train'``.

    Examples
    --------
    >>> import numpy as np, torch
    >>> ds = XyTorchDataset(np.eye(3), np.array([0.0, 1.0, 2.0]))
    >>> ds[np.int64(1)]
    (tensor([0., 1., 0.], dtype=torch.float64), tensor(1., dtype=torch.float64))
    >>> ds[torch.tensor([True, False, True])][1]
    tensor([0., 2.], dtype=torch.float64)
    >>> ds.input_size(), list(ds.indices)
    (3, ['train'])
    """

    def __init__(self, X: Any, y: Any, indices: Any = None) -> None:
        Xa, ya = _as_numpy(X, "X"), _as_numpy(y, "y")
        if Xa.ndim == 0 or ya.ndim == 0 or Xa.shape[0] != ya.shape[0]:
            raise ShapeMismatchError(
                f"X and y must have the same number of elements (rows), got shapes {Xa.shape} "
                f"and {ya.shape}.")
        sg = self._memory_gate([("X", Xa), ("y", ya)])
        self._attach(sg, DEFAULT_DATA_ID, "train", ["X"], "y", indices)

    def _init_layout(self, meta: Mapping[str, Any]) -> None:
        if len(self._x_vars) != 1 or self._ragged[self._x_vars[0]]:
            raise ShapeMismatchError(
                f"XyTorchDataset needs one regular X var, got {self._x_vars} (ragged vars need "
                "MultiXTorchDataset or AwkwardArrayDataset).")

    @classmethod
    def from_npz(
        cls,
        path: str | os.PathLike[str],
        *,
        store: Any = None,
        data_id: str | None = None,
        dtype: Any = None,
        overwrite: bool = False,
    ) -> XyTorchDataset:
        """Load ``X``, ``y`` (and ``idx_train``/``idx_test``/``idx_val`` if present) from a
        kinoml NPZ file.

        Parameters
        ----------
        path
            The ``.npz`` file (``np.savez(path, X=..., y=..., idx_train=...)``).
        store
            Where the imported rows are kept: a zarr directory (created, or reused when it
            already holds this file's import) or a :class:`~storegate.StoreGate`. ``None``:
            in memory.
        data_id
            The data_id in the store; default: the file name without ``.npz``.
        dtype
            Cast floating-point arrays to this dtype (e.g. ``'float32'``).
        overwrite
            Import again even if ``store`` holds another import under ``data_id``.

        Examples
        --------
        >>> import os, tempfile, numpy as np
        >>> path = os.path.join(tempfile.mkdtemp(), "xy.npz")
        >>> np.savez(path, X=np.ones((4, 3), "f4"), y=np.arange(4, dtype="f4"))
        >>> ds = XyTorchDataset.from_npz(path)
        >>> len(ds), ds[-1][1], ds.indices["train"].tolist()
        (4, tensor(3.), [0, 1, 2, 3])
        """
        sg, did, _ = _import_npz(path, store, False, data_id, dtype, None, overwrite,
                                 single_x=True)
        out: XyTorchDataset = cls.from_storegate(sg, did)
        return out

    def __getitem__(self, index: Any) -> tuple[torch.Tensor, torch.Tensor]:
        rows = _rows(index, self._n)
        X, y = self._read(rows)
        return _tensor(X), _tensor(y)

    @property
    def data_X(self) -> torch.Tensor:
        """Every X row as one tensor (reads the whole var)."""
        return self[slice(None)][0]

    @property
    def data_y(self) -> torch.Tensor:
        """Every y value as one tensor."""
        return _tensor(self._read(slice(0, self._n, 1), [self._y_var])[0])

    def input_size(self) -> int:
        """The size of X's first per-row axis (kinoml: ``X.shape[1]``)."""
        shape = self.estimate_input_size()
        if not shape:
            raise ShapeMismatchError("X has one number per row; it has no input_size axis.")
        return int(shape[0])

    def estimate_input_size(self) -> tuple[int, ...]:
        """Per-row shape of X (a tuple)."""
        p = self.phase if self.phase != "all" else next(
            p for p in PHASES if self.storegate.db.has_var(self.data_id, p, self._x_vars[0]))
        return tuple(self.storegate.db.info(self.data_id, p, self._x_vars[0]).row_shape)


# ---------------------------------------------------------------------------------- Prefeaturized
class PrefeaturizedTorchDataset(_KinomlDataset):
    """kinoml's ``PrefeaturizedTorchDataset``: featurized systems and their measurements.

    Both come back as float32 CPU tensors (kinoml casts both to float32): ``ds[i]`` is
    ``(X_i, y_i)`` with a 0-d y, a batch index ``(X (k, ...), y (k,))``. Systems whose arrays
    differ in their first axis are stored ragged; a batch then gives a list of X tensors (for
    every batch, whatever rows it holds).

    Parameters
    ----------
    systems
        The featurized systems: an array ``(N, ...)`` or a sequence of arrays (kinoml's
        ``DatasetProvider.featurized_systems()``).
    measurements
        One measurement per system (``measurements_as_array()``).
    observation_model
        Kept as the ``observation_model`` attribute, never applied (as in kinoml).

    Examples
    --------
    >>> import numpy as np
    >>> ds = PrefeaturizedTorchDataset(np.arange(6).reshape(3, 2), np.array([1, 2, 3]))
    >>> ds[0]
    (tensor([0., 1.]), tensor(1.))
    >>> ds.estimate_input_size(), ds.device
    ((2,), 'cpu')
    """

    def __init__(self, systems: Any, measurements: Any,
                 observation_model: Callable[..., Any] = null_observation_model) -> None:
        if len(systems) != len(measurements):
            raise ShapeMismatchError(
                f"Systems and Measurements must match in size! Got {len(systems)} systems and "
                f"{len(measurements)} measurements.")
        if isinstance(systems, np.ndarray) or is_torch_tensor(systems):
            X: Any = _as_numpy(systems, "systems")
            transposed = False
        else:
            X, transposed = _column(list(systems), "systems")
        sg = self._memory_gate([("X", X), ("y", _as_numpy(measurements, "measurements"))])
        self._attach(sg, DEFAULT_DATA_ID, "train", ["X"], "y", None,
                     ["X"] if transposed else [])
        self.observation_model = observation_model

    def _init_layout(self, meta: Mapping[str, Any]) -> None:
        if len(self._x_vars) != 1:
            raise ShapeMismatchError(
                f"{type(self).__name__} reads one X var, got {self._x_vars}.")

    def __getitem__(self, index: Any) -> tuple[Any, torch.Tensor]:
        rows = _rows(index, self._n)
        X, y = self._read(rows)
        var = self._x_vars[0]
        if isinstance(rows, int):
            x: Any = self._x_one(var, X)
        else:
            x = self._x_batch(var, X)
        return _float(x), _tensor(np.asarray(y, dtype=np.float32))

    @property
    def systems(self) -> Any:
        """Every featurized system (an array, or a list for ragged systems; reads them all)."""
        out = self._read(slice(0, self._n, 1), self._x_vars)[0]
        return out.to_list() if isinstance(out, RaggedArray) else out

    @property
    def measurements(self) -> np.ndarray:
        """Every measurement (an array)."""
        return np.asarray(self._read(slice(0, self._n, 1), [self._y_var])[0])

    def estimate_input_size(self) -> tuple[int, ...]:
        """Shape of the first system's X (kinoml: ``systems[0].shape``)."""
        return tuple(self[0][0].shape)


def _float(x: Any) -> Any:
    if isinstance(x, list):
        return [t.to(torch.float32) for t in x]
    return x.to(torch.float32)


# ---------------------------------------------------------------------------------- TorchDataset
class TorchDataset(PrefeaturizedTorchDataset):
    """kinoml's ``TorchDataset``: systems featurized on first access, then memoized.

    The measurements are in the store; the systems stay Python objects. ``ds[i]`` runs the
    featurizer for item ``i`` the first time only (:attr:`cache` keeps the result) and returns
    ``(X_i float32, y_i float32 0-d)``; a batch index returns ``(X (k, ...), y (k,))`` (the
    items' features must have one shape). Two featurizer APIs work:

    * per system (kinoml's old API, and any callable): ``featurizer(system)`` returns an array,
      or an object whose ``.featurizations[featurizer.name]`` (else ``['last']``) is one;
    * batched (kinoml's current ``BaseFeaturizer``, detected from its ``featurize(systems)``
      signature or forced with ``batched=True``): ``featurizer([systems])`` featurizes a list
      in one call and returns the systems, their ``.featurizations`` filled in.

    The dataset pickles (for spawned DataLoader workers) with its cache; each worker fills its
    own copy, so call :meth:`featurize_all` first to featurize everything once in the main
    process.

    Parameters
    ----------
    systems
        The (unfeaturized) systems.
    measurements
        One measurement per system.
    featurizer
        See above. Required.
    observation_model
        Kept as an attribute, never applied.
    batched
        ``None`` (detect), ``True`` (call with a list) or ``False`` (call per system).

    Examples
    --------
    >>> import numpy as np
    >>> calls = []
    >>> def featurize(system):
    ...     calls.append(system)
    ...     return np.full(3, system)
    >>> ds = TorchDataset([10, 20, 30], np.array([1.0, 2.0, 3.0]), featurize)
    >>> ds[1], ds[1][0].dtype
    ((tensor([20., 20., 20.]), tensor(2.)), torch.float32)
    >>> ds[[1, 2]][0].shape, calls
    (torch.Size([2, 3]), [20, 30])
    """

    def __init__(self, systems: Sequence[Any], measurements: Any, featurizer: Any,
                 observation_model: Callable[..., Any] = null_observation_model, *,
                 batched: bool | None = None) -> None:
        if featurizer is None:
            raise InvalidArgumentError("TorchDataset requires `featurizer` keyword argument!")
        if len(systems) != len(measurements):
            raise ShapeMismatchError(
                f"Systems and Measurements must match in size! Got {len(systems)} systems and "
                f"{len(measurements)} measurements.")
        self._systems = list(systems)
        sg = self._memory_gate([("y", _as_numpy(measurements, "measurements"))])
        self._attach(sg, DEFAULT_DATA_ID, "train", [], "y", None)
        self.observation_model = observation_model
        self.featurizer = featurizer
        self.batched = _is_batched(featurizer) if batched is None else bool(batched)
        #: Features computed so far: row number -> array.
        self.cache: dict[int, np.ndarray] = {}

    @classmethod
    def from_storegate(cls, *args: Any, **kwargs: Any) -> Any:
        """Not available: the systems of a TorchDataset are Python objects, not vars."""
        raise UnsupportedOperationError(
            "TorchDataset featurizes Python objects on access; store the features and use "
            "PrefeaturizedTorchDataset.from_storegate instead.")

    @property
    def systems(self) -> list[Any]:
        """The systems (a list)."""
        return self._systems

    def _feature(self, result: Any, row: int) -> np.ndarray:
        value = result
        feats = getattr(result, "featurizations", None)
        if feats is not None:
            name = getattr(self.featurizer, "name", None)
            if name is not None and name in feats:
                value = feats[name]
            elif "last" in feats:
                value = feats["last"]
            else:
                raise InvalidArgumentError(
                    f"the featurizer returned a system for row {row} whose featurizations "
                    f"({list(feats)}) hold neither {name!r} nor 'last'.")
        try:
            arr = np.asarray(value)
        except ValueError:
            arr = np.asarray(None)
        if arr.dtype == object or arr.dtype.kind not in "biuf":
            raise DtypeError(
                f"the featurizer gave row {row} a {type(value).__name__} that is not a numeric "
                "array; a TorchDataset needs array-like features.")
        return arr

    def _featurize(self, rows: Sequence[int]) -> list[np.ndarray]:
        missing = list(dict.fromkeys(r for r in rows if r not in self.cache))
        if missing and self.batched:
            inputs = [self._systems[r] for r in missing]
            result = list(self.featurizer(inputs))
            if len(result) == len(inputs):
                pairs = list(zip(missing, result, strict=True))
            else:  # kinoml drops the systems whose featurization failed
                kept = {id(s): s for s in result}
                lost = [r for r, s in zip(missing, inputs, strict=True) if id(s) not in kept]
                if lost:
                    raise InvalidArgumentError(
                        f"the featurizer returned {len(result)} of {len(inputs)} systems; rows "
                        f"{lost[:10]} were dropped (kinoml drops systems it cannot featurize).")
                pairs = [(r, kept[id(s)]) for r, s in zip(missing, inputs, strict=True)]
            for r, res in pairs:
                self.cache[r] = self._feature(res, r)
        else:
            for r in missing:
                self.cache[r] = self._feature(self.featurizer(self._systems[r]), r)
        return [self.cache[r] for r in rows]

    def featurize_all(self) -> TorchDataset:
        """Featurize every system not featurized yet (one call in batched mode); returns self.

        Examples
        --------
        >>> ds = TorchDataset([1, 2], [0.0, 1.0], lambda s: [s, s]).featurize_all()
        >>> sorted(ds.cache)
        [0, 1]
        """
        self._featurize(range(self._n))
        return self

    def __getitem__(self, index: Any) -> tuple[torch.Tensor, torch.Tensor]:
        rows = _rows(index, self._n)
        (y,) = self._read(rows)
        yt = _tensor(np.asarray(y, dtype=np.float32))
        if isinstance(rows, int):
            return _tensor(self._featurize([rows])[0].astype(np.float32)), yt
        if isinstance(rows, slice):
            rows = np.arange(rows.start, rows.stop, rows.step)
        feats = self._featurize([int(r) for r in rows])
        if not feats:
            return torch.empty(0, dtype=torch.float32), yt
        if len({f.shape for f in feats}) > 1:
            raise ShapeMismatchError(
                f"the features of rows {rows[:5].tolist()}... have different shapes "
                f"({sorted({f.shape for f in feats})[:2]}); index one row at a time, or use a "
                "DataLoader with collate_fn=list.")
        return _tensor(np.stack(feats).astype(np.float32, copy=False)), yt

    def __getitems__(self, indices: Sequence[int]) -> list[Any]:
        """Per-item samples (features may differ in shape here: ``collate_fn=list`` works)."""
        rows = _rows(list(indices), self._n)
        assert isinstance(rows, np.ndarray)
        (y,) = self._read(rows)
        feats = self._featurize([int(r) for r in rows])
        return [(_tensor(f.astype(np.float32)), yi)
                for f, yi in zip(feats, _tensor(np.asarray(y, np.float32)).unbind(0),
                                 strict=True)]

    def estimate_input_size(self) -> tuple[int, ...]:
        """Shape of the first system's features (featurizes it once)."""
        return tuple(self._featurize([0])[0].shape)


def _is_batched(featurizer: Any) -> bool:
    """kinoml's current featurizers take a list: ``featurize(self, systems, ...)``."""
    featurize = getattr(featurizer, "featurize", None)
    if not callable(featurize):
        return False
    try:
        params = list(inspect.signature(featurize).parameters)
    except (TypeError, ValueError):
        return False
    return bool(params) and params[0] == "systems"


# ---------------------------------------------------------------------------------- MultiX
class MultiXTorchDataset(_KinomlDataset):
    """kinoml's ``MultiXTorchDataset``: systems made of one or several arrays.

    Layouts (kinoml's ``to_dict_of_arrays``):

    * ``X`` (single X, every system one array of one shape): ``ds[i]`` is ``(X[i], y[i])``,
      a batch ``(X (k, ...), y (k,))``;
    * ``X_s{i}_`` (one array per system) and ``X_s{i}_a{j}_`` (arrays ``j`` of system ``i``):
      ``ds[i]`` is ``([tensor per array], y_i)`` with a **0-d** y (kinoml gave shape ``(1,)``),
      a batch ``(list over systems of [tensor per array], y (k,))``.

    Tensors keep the stored dtype. Batches of ragged systems need ``collate_fn=list`` (or
    ``batch_size=None`` with a ``BatchSampler``) in a ``DataLoader``, as in kinoml.

    Parameters
    ----------
    dict_of_arrays
        A mapping (a dict or ``np.load``'s NpzFile) with kinoml's keys and ``y``; ``idx_*``
        keys give the splits when ``indices`` is ``None``.
    indices
        kinoml's splits ``{'train': rows, 'test': rows, 'val': rows}``; ``None``: the
        mapping's ``idx_*`` arrays if any, else every row ``'train'``.

    Examples
    --------
    >>> import numpy as np
    >>> data = {f"X_s{i}_a0_": np.ones((i + 1, 2), "f4") for i in range(3)}
    >>> data |= {f"X_s{i}_a1_": np.full(4, i) for i in range(3)}
    >>> ds = MultiXTorchDataset(data | {"y": np.arange(3, dtype="f4")})
    >>> X, y = ds[-1]
    >>> [t.shape for t in X], y
    ([torch.Size([3, 2]), torch.Size([4])], tensor(2.))
    >>> X, y = ds[[0, 2]]
    >>> [[t.shape[0] for t in system] for system in X], y.shape
    ([[1, 4], [3, 4]], torch.Size([2]))
    """

    def __init__(self, dict_of_arrays: Mapping[str, Any], indices: Any = None) -> None:
        keys = list(dict_of_arrays.keys())
        if "y" not in keys:
            raise VarNotFoundError(
                f"dict_of_arrays has no 'y' (keys: {keys[:6]}); kinoml's layout is X (or "
                "X_s{i}_a{j}_ keys) plus y.")
        y = _as_numpy(dict_of_arrays["y"], "y")
        groups: dict[int | None, dict[int, str]] = {}
        for k in keys:
            hit = _X_KEY.match(k)
            if hit is None:
                if k.startswith("X") and k != "X":
                    raise InvalidArgumentError(
                        f"key {k!r} does not follow kinoml's X_s{{i}}_a{{j}}_ grammar.")
                continue
            j = None if hit.group(4) is None else int(hit.group(4))
            groups.setdefault(j, {})[int(hit.group(2))] = k
        if "X" in keys and groups:
            raise InvalidArgumentError(
                "dict_of_arrays has X and X_s... keys; kinoml writes one of the layouts.")
        columns: list[tuple[str, Any]] = []
        transposed: list[str] = []
        if "X" in keys:
            layout = "X"
            X = _as_numpy(dict_of_arrays["X"], "X")
            if X.ndim == 0 or X.shape[0] != y.shape[0]:
                raise ShapeMismatchError(f"X has shape {X.shape} but y has {y.shape[0]} rows.")
            columns.append(("X", X))
        elif groups:
            layout = "X_s" if None in groups else "X_s_a"
            if None in groups and len(groups) > 1:
                raise InvalidArgumentError(
                    "dict_of_arrays mixes X_s{i}_ and X_s{i}_a{j}_ keys.")
            for j in sorted(groups, key=lambda j: -1 if j is None else j):
                by_i = groups[j]
                name = "X" if j is None else f"X_a{j}"
                if sorted(by_i) != list(range(y.shape[0])):
                    raise ShapeMismatchError(
                        f"array {name} has systems {sorted(by_i)[:5]}...; y has {y.shape[0]} "
                        f"rows, so systems must be numbered 0..{y.shape[0] - 1}.")
                data, t = _column([dict_of_arrays[by_i[i]] for i in range(len(by_i))],
                                  f"array {name}")
                columns.append((name, data))
                if t:
                    transposed.append(name)
        else:
            raise VarNotFoundError(
                f"dict_of_arrays has no X keys (keys: {keys[:6]}); kinoml's layout is X or "
                "X_s{i}_ / X_s{i}_a{j}_ keys plus y.")
        if indices is None:
            idx = {k: dict_of_arrays[k] for k in keys
                   if k.startswith("idx_") and k in _SPLIT_ALIASES}
            indices = idx or None
        sg = self._memory_gate([*columns, ("y", y)])
        self._attach(sg, DEFAULT_DATA_ID, "train", [c[0] for c in columns], "y", indices,
                     transposed)
        self._init_layout({"x_layout": layout})

    @classmethod
    def _default_x_vars(cls, storegate: StoreGate, data_id: str, phase: str,
                        y_var: str) -> list[str]:
        p = phase if phase != "all" else "train"
        return [v for v in storegate.db.var_names(data_id, p) if v != y_var]

    def _init_layout(self, meta: Mapping[str, Any]) -> None:
        layout = meta.get("x_layout")
        if layout is None:
            single = self._x_vars == ["X"] and not self._ragged["X"]
            layout = "X" if single else ("X_s" if len(self._x_vars) == 1 else "X_s_a")
        if layout == "X" and (len(self._x_vars) != 1 or self._ragged[self._x_vars[0]]):
            raise ShapeMismatchError(
                f"single-X layout needs one regular X var, got {self._x_vars}.")
        self._layout = layout

    @classmethod
    def from_npz(
        cls,
        path: str | os.PathLike[str],
        lazy: bool = True,
        close_filehandle: bool = False,
        *,
        store: Any = None,
        data_id: str | None = None,
        dtype: Any = None,
        transpose: Sequence[str] | None = None,
        overwrite: bool = False,
    ) -> MultiXTorchDataset:
        """Load a kinoml NPZ file (any of its three layouts, with or without ``idx_*``).

        The file is imported once (streamed, every member CRC-checked) and closed; the dataset
        never reads it again, so ``DataLoader`` workers (fork or spawn) are safe.

        Parameters
        ----------
        path
            The ``.npz`` file.
        lazy
            Without ``store``: ``True`` keeps the rows in a temporary zarr directory (deleted
            with the dataset; rows decoded on first touch), ``False`` in memory.
        close_filehandle
            Accepted for compatibility; no file handle is kept either way.
        store
            A zarr directory (created, or reused when it already holds this file's import) or
            a :class:`~storegate.StoreGate` to keep the rows in.
        data_id
            The data_id in the store; default: the file name without ``.npz``.
        dtype
            Cast floating-point arrays to this dtype (e.g. ``'float32'``).
        transpose
            Arrays (``'X'``, ``'X_a0'``, ...) whose 2-D items ``(k, n_i)`` vary along their
            last axis, stored as ``(n_i, k)`` and transposed back when read. ``None``: found
            from the member shapes.
        overwrite
            Import again even if ``store`` holds another import under ``data_id``.

        Examples
        --------
        >>> import os, tempfile, numpy as np
        >>> path = os.path.join(tempfile.mkdtemp(), "kinase.npz")
        >>> items = {f"X_s{i}_a0_": np.ones((21, 5 + i)) for i in range(4)}  # one-hot (21, L)
        >>> np.savez(path, **items, y=np.arange(4, dtype="f4"), idx_train=[0, 1, 2],
        ...          idx_test=[3])
        >>> ds = MultiXTorchDataset.from_npz(path)
        >>> [X[0].shape for X in ds[ds.indices["train"]][0]]
        [torch.Size([21, 5]), torch.Size([21, 6]), torch.Size([21, 7])]
        """
        del close_filehandle  # nothing is kept open
        sg, did, _ = _import_npz(path, store, lazy, data_id, dtype, transpose, overwrite)
        out: MultiXTorchDataset = cls.from_storegate(sg, did)
        return out

    def is_single_X(self) -> bool:
        """Whether the systems are rows of one X array (kinoml's ``X`` layout)."""
        return self._layout == "X"

    @property
    def shape_X(self) -> torch.Size:
        """kinoml's ``shape_X``: X's shape (single X), else ``(n_systems, n_arrays)``
        (``X_s{i}_a{j}_``) or ``(n_systems,)`` (``X_s{i}_``)."""
        if self._layout == "X":
            return torch.Size((self._n, *self.estimate_input_size()))
        if self._layout == "X_s":
            return torch.Size((self._n,))
        return torch.Size((self._n, len(self._x_vars)))

    @property
    def shape_y(self) -> torch.Size:
        """Shape of y."""
        return torch.Size(self.data_y.shape)

    @property
    def data_y(self) -> torch.Tensor:
        """Every y value as one tensor."""
        return _tensor(self._read(slice(0, self._n, 1), [self._y_var])[0])

    @property
    def data_X(self) -> torch.Tensor | None:
        """Single X: every row as one tensor (reads the whole var); else ``None``."""
        return self[slice(None)][0] if self._layout == "X" else None

    def __getitem__(self, index: Any) -> tuple[Any, torch.Tensor]:
        rows = _rows(index, self._n)
        *Xs, y = self._read(rows)
        if self._layout == "X":
            var = self._x_vars[0]
            return (self._x_one(var, Xs[0]) if isinstance(rows, int)
                    else _stacked(Xs[0], var in self._transposed)), _tensor(y)
        if isinstance(rows, int):
            return [self._x_one(v, x) for v, x in zip(self._x_vars, Xs, strict=True)], _tensor(y)
        per_var = [_items(x, v in self._transposed)
                   for v, x in zip(self._x_vars, Xs, strict=True)]
        return [list(system) for system in zip(*per_var, strict=True)], _tensor(y)

    def estimate_input_size(self) -> Any:
        """Single X: the per-row shape (a tuple); else a tuple with the shape of each array of
        the first system."""
        X, _ = self[0]
        if isinstance(X, list):
            return tuple(tuple(t.shape) for t in X)
        return tuple(X.shape)


# ---------------------------------------------------------------------------------- Awkward
class AwkwardArrayDataset(_KinomlDataset):
    """kinoml's ``AwkwardArrayDataset``: one record per system, the last field y.

    ``ds[index]`` is ``([X_field0, X_field1, ...], y)``. A field whose items have one shape over
    the whole dataset is one stacked tensor ``(k, ...)`` for a batch; a ragged field is a list
    of per-item tensors, for every batch (decided once, when the data are stored; kinoml
    decided per call, so the type changed with the rows drawn). An int index gives the items'
    tensors and a 0-d y. Dtypes are kept (kinoml's ``ak.from_iter`` made features float64).

    Parameters
    ----------
    data
        An ``awkward.Array`` of records or tuples (``ak.zip([*X, y], depth_limit=1)``).
    indices
        kinoml's splits (kinoml's class had none); ``None``: every row ``'train'``.

    Examples
    --------
    >>> import awkward as ak, numpy as np
    >>> X0 = ak.from_iter([np.ones((2, 3)), np.ones((4, 3)), np.ones((1, 3))])   # ragged
    >>> X1 = ak.from_iter([np.zeros(5), np.ones(5), np.ones(5)])                 # regular
    >>> ds = AwkwardArrayDataset(ak.zip([X0, X1, ak.from_numpy(np.arange(3.0))],
    ...                                 depth_limit=1))
    >>> (f0, f1), y = ds[1:3]
    >>> [t.shape for t in f0], f1.shape, y.tolist()
    ([torch.Size([4, 3]), torch.Size([1, 3])], torch.Size([2, 5]), [1.0, 2.0])
    >>> [t.shape for t in ds[0][0]]
    [torch.Size([2, 3]), torch.Size([5])]
    """

    def __init__(self, data: Any, indices: Any = None) -> None:
        import awkward as ak

        fields = list(data.fields)
        if len(fields) < 2:
            raise ShapeMismatchError(
                f"data must be records with at least two fields (features, then y), got "
                f"fields {fields}.")
        columns: list[tuple[str, Any]] = []
        transposed: list[str] = []
        for j, f in enumerate(fields[:-1]):
            col, t = _awkward_column(ak, data[f], f"field {f!r}")
            columns.append((f"X_a{j}", col))
            if t:
                transposed.append(f"X_a{j}")
        y = _awkward_column(ak, data[fields[-1]], f"field {fields[-1]!r} (y)")[0]
        sg = self._memory_gate([*columns, ("y", y)])
        self._attach(sg, DEFAULT_DATA_ID, "train", [c[0] for c in columns], "y", indices,
                     transposed)
        self.fields = fields

    @classmethod
    def _default_x_vars(cls, storegate: StoreGate, data_id: str, phase: str,
                        y_var: str) -> list[str]:
        return MultiXTorchDataset._default_x_vars(storegate, data_id, phase, y_var)

    def _init_layout(self, meta: Mapping[str, Any]) -> None:
        self.fields = [str(j) for j in range(len(self._x_vars) + 1)]

    @classmethod
    def from_parquet(
        cls,
        path: str | os.PathLike[str],
        *,
        store: Any = None,
        data_id: str | None = None,
        dtype: Any = None,
        transpose: Sequence[str] | None = None,
        indices: Any = None,
        overwrite: bool = False,
        batch_rows: int | None = None,
    ) -> AwkwardArrayDataset:
        """Load a kinoml Parquet file (``ak.to_parquet(ak.zip([*X, y], depth_limit=1))``).

        The file is imported through
        :func:`~storegate.convert.import_kinoml_parquet` (streamed in batches, never all in
        RAM) and not read again. ``ak.from_parquet`` options (kinoml's ``**kwargs``) are not
        taken.

        Parameters
        ----------
        path
            The ``.parquet`` file (or a directory of them).
        store
            A zarr directory (created, or reused when it already holds this file's import) or
            a :class:`~storegate.StoreGate`. ``None``: in memory.
        data_id
            The data_id in the store; default: the file name without ``.parquet``.
        dtype
            Cast floating-point fields to this dtype, e.g. ``'float32'`` to undo kinoml's
            float64 upcast. ``None`` keeps the file's dtypes (as kinoml did).
        transpose
            Fields whose 2-D items ``(k, n_i)`` vary along their last axis (stored as
            ``(n_i, k)``, transposed back when read). ``None``: found when needed.
        indices
            kinoml's splits (kinoml's Parquet files hold none); ``None``: every row
            ``'train'``. Recorded in the store.
        overwrite
            Import again even if ``store`` holds another import under ``data_id``.
        batch_rows
            Rows decoded at a time by the import.

        Examples
        --------
        >>> import os, tempfile, awkward as ak, numpy as np
        >>> path = os.path.join(tempfile.mkdtemp(), "d.parquet")
        >>> X = [ak.from_iter([np.ones((n, 2)) for n in (1, 3, 2)])]
        >>> _ = ak.to_parquet(ak.zip([*X, ak.from_numpy(np.ones(3, "f4"))], depth_limit=1),
        ...                   path)
        >>> ds = AwkwardArrayDataset.from_parquet(path)
        >>> [t.shape for t in ds[[2, 0]][0][0]]
        [torch.Size([2, 2]), torch.Size([1, 2])]
        """
        sg, did, _ = _import_parquet(path, store, data_id, dtype, transpose, overwrite,
                                     batch_rows, indices)
        out: AwkwardArrayDataset = cls.from_storegate(sg, did)
        return out

    def __getitem__(self, index: Any) -> tuple[list[Any], torch.Tensor]:
        rows = _rows(index, self._n)
        *Xs, y = self._read(rows)
        if isinstance(rows, int):
            X = [self._x_one(v, x) for v, x in zip(self._x_vars, Xs, strict=True)]
        else:
            X = [self._x_batch(v, x) for v, x in zip(self._x_vars, Xs, strict=True)]
        return X, _tensor(y)

    def _split(self, batch: Any) -> list[Any]:
        X, y = batch
        fields = [f if isinstance(f, list) else list(f.unbind(0)) for f in X]
        return [(list(items), yi) for items, yi in
                zip(zip(*fields, strict=True), y.unbind(0), strict=True)]

    def estimate_input_size(self) -> tuple[tuple[int, ...], ...]:
        """The shape of each feature of the first system (a tuple of tuples)."""
        return tuple(tuple(t.shape) for t in self[0][0])

    @property
    def data(self) -> Any:
        """Every row as an awkward tuple array ``ak.zip([*X, y], depth_limit=1)`` (reads all)."""
        import awkward as ak

        *Xs, y = self._read(slice(0, self._n, 1))
        parts = []
        for v, x in zip(self._x_vars, Xs, strict=True):
            if v in self._transposed:
                x = [np.ascontiguousarray(a.T) for a in
                     (x.to_list() if isinstance(x, RaggedArray) else x)]
                parts.append(ak.from_iter(x))
            else:
                parts.append(x.to_awkward() if isinstance(x, RaggedArray)
                             else ak.from_numpy(x))
        return ak.zip([*parts, ak.from_numpy(np.asarray(y))], depth_limit=1)


def _awkward_column(ak: Any, col: Any, what: str) -> tuple[np.ndarray | RaggedArray, bool]:
    """One field as a var: dense when regular over the whole array, else ragged (transposed
    for 2-D items varying along their last axis)."""
    try:
        return np.asarray(ak.to_numpy(col, allow_missing=False)), False
    except (ValueError, TypeError):
        pass
    try:
        return RaggedArray.from_awkward(col, what), False
    except (ValueError, TypeError):
        pass
    items = [np.asarray(ak.to_numpy(col[i], allow_missing=False)) for i in range(len(col))]
    return _column(items, what)
