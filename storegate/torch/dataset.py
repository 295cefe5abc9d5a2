"""``StoreGateDataset``: a map-style PyTorch dataset over one phase of a StoreGate.

A ``DataLoader`` that sees ``__getitems__`` hands the dataset a whole batch of indices at once
(torch >= 2.0), so every batch is **one** batched backend read — a vectorised gather from the
memory backend or from the zarr/parquet backends' decoded arenas — instead of one read per
row followed by collation in Python. The rows come back as tensors that share memory with the
arrays read (``torch.from_numpy``, no copy).

Examples
--------
>>> import numpy as np
>>> from storegate import StoreGate
>>> from storegate.torch import StoreGateDataset
>>> sg = StoreGate("numpy", data_id="jets")
>>> sg.add_data("x", np.arange(20, dtype="f4").reshape(10, 2))
>>> sg.add_data("y", np.arange(10) % 2)
>>> ds = StoreGateDataset(sg, "train", ("x", "y"))
>>> len(ds), [t.tolist() for t in ds[3]]
(10, [[6.0, 7.0], 1])
>>> x, y = next(iter(ds.as_dataloader(batch_size=4)))
>>> x.shape, y.tolist()
(torch.Size([4, 2]), [0, 1, 0, 1])
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..errors import (
    DataIdNotFoundError,
    IndexOutOfRangeError,
    InvalidArgumentError,
    InvalidIndexError,
)
from ..phases import check_phase
from ..ragged import RaggedArray

__all__ = ["RAGGED_MODES", "StoreGateDataset", "collate_batch"]

logger = logging.getLogger(__name__)

#: How ragged vars come back in a batch.
RAGGED_MODES = ("list", "padded", "packed")


def collate_batch(batch: Any) -> Any:
    """The ``collate_fn`` for a :class:`StoreGateDataset`: its ``__getitems__`` already returns
    a collated batch, which this passes through (a module-level function, so it pickles for
    spawned workers).

    >>> collate_batch((1, 2))
    (1, 2)
    """
    return batch


def _tensor(arr: np.ndarray) -> torch.Tensor:
    arr = np.asarray(arr)
    if not arr.flags.writeable or not arr.flags.c_contiguous:
        arr = arr.copy()  # torch warns on read-only memory (ascontiguousarray would make 0-d 1-d)
    return torch.from_numpy(arr)


class StoreGateDataset(torch.utils.data.Dataset):
    """Rows of one phase of a StoreGate, as tensors, read a batch at a time.

    Parameters
    ----------
    storegate
        The :class:`~storegate.StoreGate` (any backend). It is pickled into spawned workers;
        forked workers reopen file handles themselves.
    phase
        ``'train'``, ``'valid'``, ``'test'`` or ``'all'`` (the three concatenated).
    var_names
        One var name (each item is then a tensor) or several (a tuple of tensors, or a dict
        with ``as_dict=True``). ``None``: every var of the phase, in store order.
    data_id
        The data_id to read; ``None``: the gate's current one.
    as_dict
        Return ``{var: tensor}`` instead of a tuple.
    ragged
        How a batch returns a ragged var: ``'list'`` (a list of ``(n_i, *k)`` tensors),
        ``'padded'`` (a ``(B, max n_i, *k)`` tensor filled with ``pad_value`` and an int64
        ``(B,)`` tensor of lengths) or ``'packed'`` (the ``(sum n_i, *k)`` values and int64
        ``(B + 1,)`` offsets). A single row (``ds[i]``) is always the ``(n_i, *k)`` tensor.
    pad_value
        Fill of padded batches.

    Notes
    -----
    Use it through :meth:`as_dataloader` or give ``DataLoader`` ``collate_fn=collate_batch``:
    ``__getitems__`` returns the batch already collated. The index of a batch may be in any
    order and repeat rows; rows come back in that order.
    """

    def __init__(
        self,
        storegate: Any,
        phase: str = "train",
        var_names: str | Sequence[str] | None = None,
        *,
        data_id: str | None = None,
        as_dict: bool = False,
        ragged: str = "list",
        pad_value: float = 0,
    ) -> None:
        from ..gate import StoreGate

        if not isinstance(storegate, StoreGate):
            raise InvalidArgumentError(
                f"storegate must be a StoreGate, got {type(storegate).__name__}.")
        if ragged not in RAGGED_MODES:
            raise InvalidArgumentError(
                f"ragged={ragged!r}; use one of {RAGGED_MODES}.")
        self.storegate = storegate
        self.data_id = data_id if data_id is not None else storegate._require_data_id()
        if self.data_id not in storegate.get_data_ids():  # (the gate's current one is kept)
            raise DataIdNotFoundError(
                f"data_id {self.data_id!r} is not in the store; it holds "
                f"{storegate.get_data_ids()}.")
        self.phase = check_phase(phase)
        names = (storegate._var_names(self.data_id, self.phase) if var_names is None
                 else var_names)
        self.single = isinstance(names, str)
        self.var_names: tuple[str, ...] = (names,) if isinstance(names, str) else tuple(names)
        if not self.var_names:
            raise InvalidArgumentError(
                f"phase {self.phase!r} of data_id {self.data_id!r} has no vars to read.")
        if as_dict and self.single:
            raise InvalidArgumentError("as_dict=True needs several var_names (a list).")
        self.as_dict = as_dict
        self.ragged = ragged
        self.pad_value = pad_value
        self._length = int(storegate._compiled(self.data_id).sizes()[self.phase])
        infos = self._infos()
        missing = [v for v in self.var_names if v not in infos]
        if missing:
            from ..errors import VarNotFoundError

            raise VarNotFoundError(
                f"var(s) {missing} are not in phase {self.phase!r} of data_id "
                f"{self.data_id!r}; it has {storegate._var_names(self.data_id, self.phase)}.")
        self._ragged = tuple(infos[v].ragged for v in self.var_names)

    def _infos(self) -> dict[str, Any]:
        db = self.storegate.db
        phases = ("train", "valid", "test") if self.phase == "all" else (self.phase,)
        out: dict[str, Any] = {}
        for ph in phases:
            for v in db.var_names(self.data_id, ph):
                out.setdefault(v, db.info(self.data_id, ph, v))
        return out

    # ------------------------------------------------------------------ sizes
    def __len__(self) -> int:
        return self._length

    @property
    def chunk_rows(self) -> int:
        """Rows per storage chunk of the regular vars read (the largest), for chunk-aware
        sampling; 4,096 for unchunked (memory) storage. (A ragged var's chunks count values,
        not rows, so they are not used.)"""
        rows = [int(i.chunks[0]) for v, i in self._infos().items()
                if i.chunks and not i.ragged and v in self.var_names]
        return max(rows) if rows else 4096

    # ------------------------------------------------------------------ reading
    def _index(self, indices: Any) -> np.ndarray:
        idx = np.asarray(indices.numpy() if isinstance(indices, torch.Tensor) else indices)
        if idx.dtype == bool:
            raise InvalidIndexError("a batch index is a list of row numbers, not a mask.")
        if idx.size == 0:
            return np.zeros(0, dtype=np.int64)
        if idx.dtype.kind not in "iu" or idx.ndim != 1:
            raise InvalidIndexError(
                f"a batch index must be a 1-D list of ints, got {idx.dtype} {idx.shape}.")
        idx = idx.astype(np.int64, copy=False)
        n = self._length
        lo, hi = int(idx.min()), int(idx.max())
        if lo < -n or hi >= n:
            raise IndexOutOfRangeError(
                f"row {hi if hi >= n else lo} is out of range for phase {self.phase!r} with "
                f"{n} rows.")
        if lo < 0:
            idx = np.where(idx < 0, idx + n, idx)
        return idx

    def _read(self, idx: np.ndarray) -> list[Any]:
        if self.phase == "all":  # this dataset's data_id, not the gate's current one
            return list(self.storegate._get_data(self.data_id, list(self.var_names), "all",
                                                 idx, "raw"))
        return self.storegate.db.read_many(self.data_id, self.phase, self.var_names, idx)

    def _ragged_batch(self, rows: RaggedArray) -> Any:
        if self.ragged == "list":
            offs = rows.offsets
            values = _tensor(rows.values)
            return [values[offs[i]:offs[i + 1]] for i in range(len(rows))]
        if self.ragged == "packed":
            return _tensor(rows.values), torch.from_numpy(rows.offsets.copy())
        lengths = np.diff(rows.offsets)
        width = int(lengths.max()) if lengths.size else 0
        out = np.full((len(rows), width, *rows.values.shape[1:]), self.pad_value,
                      dtype=rows.values.dtype)
        if rows.values.shape[0]:
            row_of = np.repeat(np.arange(len(rows)), lengths)
            col = np.arange(rows.values.shape[0]) - np.repeat(rows.offsets[:-1], lengths)
            out[row_of, col] = rows.values
        return torch.from_numpy(out), torch.from_numpy(lengths.astype(np.int64))

    def _pack(self, parts: list[Any]) -> Any:
        if self.single:
            return parts[0]
        if self.as_dict:
            return dict(zip(self.var_names, parts, strict=True))
        return tuple(parts)

    def __getitems__(self, indices: Sequence[int] | np.ndarray) -> Any:
        """A whole batch, collated: one backend read for every var."""
        idx = self._index(indices)
        arrays = self._read(idx)
        parts = [self._ragged_batch(a) if r else _tensor(a)
                 for a, r in zip(arrays, self._ragged, strict=True)]
        return self._pack(parts)

    def __getitem__(self, index: int) -> Any:
        """One row (``index`` an int, negative counts from the end)."""
        if (isinstance(index, torch.Tensor) and index.ndim == 0 and index.dtype != torch.bool
                and not index.dtype.is_floating_point and not index.dtype.is_complex):
            index = int(index)
        elif isinstance(index, np.ndarray) and index.ndim == 0 and index.dtype.kind in "iu":
            index = index[()]  # a 0-d numpy int, like a 0-d torch int above
        if not isinstance(index, int | np.integer) or isinstance(index, bool):
            raise InvalidIndexError(
                f"StoreGateDataset[...] takes one int row, got {type(index).__name__}; read "
                "batches with ds.__getitems__(rows) or through a DataLoader.")
        idx = self._index([int(index)])
        arrays = self._read(idx)
        parts = []
        for a, r in zip(arrays, self._ragged, strict=True):
            parts.append(_tensor(a.values) if r else _tensor(a[0]))
        return self._pack(parts)

    def as_dataloader(self, **kwargs: Any) -> torch.utils.data.DataLoader:
        """A ``DataLoader`` over this dataset (``collate_fn`` set to :func:`collate_batch`).

        Takes every ``DataLoader`` argument: ``batch_size``, ``shuffle``, ``sampler`` (e.g.
        :class:`~storegate.torch.ChunkShuffleSampler`), ``num_workers``,
        ``persistent_workers``, ``pin_memory``, ``multiprocessing_context``, ...
        """
        kwargs.setdefault("collate_fn", collate_batch)
        return torch.utils.data.DataLoader(self, **kwargs)

    def __repr__(self) -> str:
        return (f"StoreGateDataset(data_id={self.data_id!r}, phase={self.phase!r}, "
                f"var_names={self.var_names}, rows={len(self)})")
