"""Ragged cases of the backend contract: rows whose first axis has its own length.

Every backend with ``supports_ragged = True`` runs them (as part of
:class:`~storegate.testing.BackendContract`); for the others they skip with a reason.
A ragged var is appended as a :class:`~storegate.ragged.RaggedArray` and read back as one for
slices and index arrays, or as one numpy array ``(n_i, *k)`` for an int index.
"""

from __future__ import annotations

import multiprocessing
import pickle
from typing import Any

import numpy as np
import pytest

from ..backends.base import Backend
from ..errors import DtypeError, ShapeMismatchError, VarNotFoundError
from ..ragged import RaggedArray
from .helpers import assert_identical, assert_same_store, sample_array

__all__ = ["RaggedContract", "ragged_sample"]

DID = "d"


def ragged_sample(
    n: int, item_shape: tuple[int, ...] = (3,), dtype: str = "f4", seed: int = 0,
    max_len: int = 6,
) -> RaggedArray:
    """``n`` ragged rows of ``(0..max_len, *item_shape)`` items with varied values.

    Examples
    --------
    >>> r = ragged_sample(4, (2,), "i2", seed=1)
    >>> len(r), r.row_shape, r.dtype
    (4, (2,), dtype('int16'))
    """
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, max_len + 1, n)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    values = sample_array(dtype, (int(offsets[-1]), *item_shape), seed=seed)
    return RaggedArray(values, offsets)


def _spawn_read(payload: bytes, index: Any, queue: Any) -> None:
    backend = pickle.loads(payload)
    queue.put(pickle.dumps(backend.read(DID, "train", "r", index)))


class RaggedContract:
    """Ragged vars: append, read at every index form, write whole rows, rename, errors,
    pickling, persistence. Mixed into :class:`~storegate.testing.BackendContract`, whose
    fixtures (``backend``, ``oracle``, ``reopen``, ``readonly_backend``) it uses."""

    @pytest.fixture
    def rag(self, backend: Backend, oracle: Backend) -> tuple[Backend, Backend]:
        if not getattr(backend, "supports_ragged", False):
            pytest.skip(f"backend {backend.name!r} does not declare supports_ragged")
        for be in (backend, oracle):
            be.create_data_id(DID)
        return backend, oracle

    @staticmethod
    def _both(rag: tuple[Backend, Backend], method: str, *args: Any) -> None:
        for be in rag:
            getattr(be, method)(DID, "train", *args)

    @staticmethod
    def _check(rag: tuple[Backend, Backend], var: str, index: Any) -> Any:
        got = rag[0].read(DID, "train", var, index)
        assert_identical(got, rag[1].read(DID, "train", var, index), f"read {var!r} {index!r}")
        return got

    # ------------------------------------------------------------------ create and read
    @pytest.mark.parametrize(("item_shape", "dtype"), [
        ((), "i8"), ((3,), "f4"), ((2, 2), "u1"), ((3,), "f2"), ((), "bool"), ((2,), "c8"),
    ])
    def test_ragged_round_trip(self, rag: tuple[Backend, Backend], item_shape: tuple[int, ...],
                               dtype: str) -> None:
        data = ragged_sample(50, item_shape, dtype, seed=3)
        self._both(rag, "append", "r", data)
        info = rag[0].info(DID, "train", "r")
        assert info.ragged and info.length == 50 and info.row_shape == item_shape
        assert info.dtype == np.dtype(dtype)
        assert info.extra.get("n_values") == int(data.offsets[-1])
        whole = self._check(rag, "r", slice(0, 50, 1))
        assert whole == data
        for i in (0, 17, 49):
            row = self._check(rag, "r", i)
            assert_identical(row, data.row(i), f"row {i}")

    @pytest.mark.parametrize("index", [
        slice(5, 30, 1), slice(0, 50, 7), slice(10, 10, 1),
        np.array([49, 0, 3, 3, 20], dtype=np.int64), np.array([], dtype=np.int64),
    ], ids=["slice", "stepped", "empty-slice", "gather", "empty-gather"])
    def test_ragged_read_forms(self, rag: tuple[Backend, Backend], index: Any) -> None:
        data = ragged_sample(50, (3,), "f4", seed=5)
        for start in range(0, 50, 9):  # many small appends
            self._both(rag, "append", "r", data.slice(start, min(50, start + 9)))
        got = self._check(rag, "r", index)
        rows = np.arange(50)[index] if isinstance(index, slice) else index
        assert got == data.take(np.asarray(rows, dtype=np.int64))

    def test_ragged_large_gather(self, rag: tuple[Backend, Backend]) -> None:
        data = ragged_sample(20_000, (4,), "f4", seed=7, max_len=12)
        self._both(rag, "append", "r", data)
        idx = np.random.default_rng(0).integers(0, 20_000, 1000)
        assert self._check(rag, "r", idx) == data.take(idx)

    def test_ragged_copies_in_and_out(self, rag: tuple[Backend, Backend]) -> None:
        data = ragged_sample(10, (2,), "i4", seed=9, max_len=3)
        keep = RaggedArray(data.values.copy(), data.offsets.copy())
        rag[0].append(DID, "train", "r", data)
        data.values[...] = -7  # the caller edits its array afterwards
        got = rag[0].read(DID, "train", "r", slice(0, 10, 1))
        assert got == keep
        got.values[...] = 99  # and edits what it read
        assert rag[0].read(DID, "train", "r", slice(0, 10, 1)) == keep

    # ------------------------------------------------------------------ writes
    def test_ragged_write_rows(self, rag: tuple[Backend, Backend]) -> None:
        data = ragged_sample(30, (3,), "f8", seed=11)
        self._both(rag, "append", "r", data)
        same = RaggedArray(np.full((int(data.lengths()[4]), 3), 5.0), np.array(
            [0, int(data.lengths()[4])]))
        self._both(rag, "write", "r", 4, same)  # same length: in place
        other = ragged_sample(3, (3,), "f8", seed=12, max_len=9)
        self._both(rag, "write", "r", np.array([0, 29, 0], dtype=np.int64), other)  # last wins
        self._both(rag, "write", "r", slice(10, 13, 1), ragged_sample(3, (3,), "f8", seed=13))
        self._check(rag, "r", slice(0, 30, 1))
        assert rag[0].info(DID, "train", "r").length == 30

    def test_ragged_append_casts_like_regular_vars(self, rag: tuple[Backend, Backend]) -> None:
        self._both(rag, "append", "r", ragged_sample(5, (2,), "f4", seed=1))
        wide = ragged_sample(5, (2,), "f4", seed=2)
        wide = RaggedArray(wide.values.astype("f8"), wide.offsets)  # in float32's range
        self._both(rag, "append", "r", wide)  # same kind: cast
        self._check(rag, "r", slice(0, 10, 1))
        with pytest.raises(DtypeError):
            rag[0].append(DID, "train", "r", ragged_sample(2, (2,), "c8", seed=3))
        huge = RaggedArray(np.full((1, 2), 1e300), np.array([0, 1]))
        with pytest.raises(DtypeError):  # would overflow to inf
            rag[0].append(DID, "train", "r", huge)

    # ------------------------------------------------------------------ var management
    def test_ragged_delete_and_rename(self, rag: tuple[Backend, Backend]) -> None:
        self._both(rag, "append", "a", np.arange(6))
        self._both(rag, "append", "r", ragged_sample(6, (), "i2", seed=4))
        self._both(rag, "append", "s", ragged_sample(6, (), "i2", seed=5))
        self._both(rag, "rename", "s", "a")  # a ragged var replaces a regular one in place
        self._both(rag, "rename", "r", "t")
        assert rag[0].var_names(DID, "train") == rag[1].var_names(DID, "train") == ["a", "t"]
        assert rag[0].info(DID, "train", "a").ragged
        self._check(rag, "a", slice(0, 6, 1))
        self._both(rag, "delete", "t")
        assert rag[0].var_names(DID, "train") == ["a"]
        with pytest.raises(VarNotFoundError):
            rag[0].read(DID, "train", "t", 0)
        assert_same_store(rag[0], rag[1])

    def test_ragged_and_regular_do_not_mix(self, rag: tuple[Backend, Backend]) -> None:
        be = rag[0]
        be.append(DID, "train", "x", np.zeros((4, 3), "f4"))
        be.append(DID, "train", "r", ragged_sample(4, (3,), "f4", seed=6))
        with pytest.raises(ShapeMismatchError):
            be.append(DID, "train", "x", ragged_sample(2, (3,), "f4"))
        with pytest.raises(ShapeMismatchError):
            be.append(DID, "train", "r", np.zeros((2, 3), "f4"))
        with pytest.raises(ShapeMismatchError):
            be.append(DID, "train", "r", ragged_sample(2, (4,), "f4"))  # item shape
        assert be.info(DID, "train", "x").length == 4
        assert be.info(DID, "train", "r").length == 4

    # ------------------------------------------------------------------ processes, storage
    def test_ragged_pickle_and_spawn(self, rag: tuple[Backend, Backend]) -> None:
        data = ragged_sample(40, (2,), "f4", seed=8)
        self._both(rag, "append", "r", data)
        rag[0].flush()
        copy = pickle.loads(pickle.dumps(rag[0]))
        assert copy.read(DID, "train", "r", slice(0, 40, 1)) == data
        ctx = multiprocessing.get_context("spawn")
        queue = ctx.Queue()
        index = np.array([39, 2, 2], dtype=np.int64)
        proc = ctx.Process(target=_spawn_read, args=(pickle.dumps(rag[0]), index, queue))
        proc.start()
        try:
            got = pickle.loads(queue.get(timeout=120))
        finally:
            proc.join(timeout=60)
        assert got == data.take(index)  # in-memory data travel with the pickle

    def test_ragged_survives_reopen(self, rag: tuple[Backend, Backend], reopen: Any) -> None:
        if reopen is None:
            pytest.skip("persistence tests need the `reopen` fixture")
        data = ragged_sample(25, (3,), "f4", seed=10)
        self._both(rag, "append", "r", data)
        self._both(rag, "append", "x", np.arange(25))
        rag[0].close()
        new = reopen(rag[0])
        assert new.var_names(DID, "train") == ["r", "x"]
        assert new.info(DID, "train", "r").ragged
        assert new.read(DID, "train", "r", slice(0, 25, 1)) == data
        new.close()

    def test_ragged_readonly(self, rag: tuple[Backend, Backend], readonly_backend: Any) -> None:
        if readonly_backend is None:
            pytest.skip("read-only tests need the `readonly_backend` fixture")
        data = ragged_sample(8, (2,), "i4", seed=2)
        rag[0].append(DID, "train", "r", data)
        rag[0].close()
        ro = readonly_backend(rag[0])
        assert ro.read(DID, "train", "r", np.array([7, 0], dtype=np.int64)) == data.take(
            np.array([7, 0]))
        from ..errors import ReadOnlyError

        with pytest.raises(ReadOnlyError):
            ro.append(DID, "train", "r", data)
        with pytest.raises(ReadOnlyError):
            ro.write(DID, "train", "r", 0, data.slice(0, 1))
        ro.close()
