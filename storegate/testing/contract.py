"""The backend contract suite: pytest classes a backend's test module subclasses.

See :mod:`storegate.testing` for how to use it. Every test drives the backend under test and
the in-memory :class:`~storegate.backends.numpy_backend.NumpyBackend` (the *oracle*) with the
same calls and compares the results bit for bit; tests about a var's content also compare with
plain numpy indexing of the source array.
"""

from __future__ import annotations

import multiprocessing
import pickle
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import pytest

from ..backends.base import Backend, VarInfo
from ..backends.numpy_backend import NumpyBackend
from ..errors import (
    DataIdNotFoundError,
    DtypeError,
    ReadOnlyError,
    ShapeMismatchError,
    StoregateError,
    VarNotFoundError,
)
from ..indexing import Index, normalize
from ..phases import PHASES
from ._workers import ReadRequest, run_reads_in_process
from .helpers import DTYPES, assert_identical, assert_same_info, assert_same_store, sample_array
from .ragged import RaggedContract

__all__ = [
    "BackendContract",
    "BackendFixtures",
    "DataIdContract",
    "ErrorContract",
    "PersistenceContract",
    "ProcessContract",
    "ReadContract",
    "Reopen",
    "Twin",
    "VarContract",
    "WriteContract",
]

#: ``reopen`` / ``readonly_backend`` fixtures return this: given the (closed) backend a test
#: wrote through, open and return a new instance on the same storage.
Reopen = Callable[[Backend], Backend]

DID = "d"
N = 10


def _i64(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


class Twin:
    """The backend under test and the numpy oracle, driven in lockstep.

    Parameters
    ----------
    backend
        The backend under test.
    oracle
        The reference backend.
    data_id
        The data_id created in both and used by every method.

    Examples
    --------
    >>> t = Twin(NumpyBackend(), NumpyBackend())
    >>> t.append("x", np.arange(3))
    >>> t.check("x", slice(0, 3, 1))
    """

    def __init__(self, backend: Backend, oracle: Backend, data_id: str = DID) -> None:
        self.backend = backend
        self.oracle = oracle
        self.data_id = data_id
        backend.create_data_id(data_id)
        oracle.create_data_id(data_id)

    def append(self, var: str, data: np.ndarray, phase: str = "train") -> None:
        """Append ``data`` to ``var`` in both backends."""
        self.backend.append(self.data_id, phase, var, data)
        self.oracle.append(self.data_id, phase, var, data)

    def write(self, var: str, index: Index, data: np.ndarray, phase: str = "train") -> None:
        """Write ``data`` at ``index`` in both backends."""
        self.backend.write(self.data_id, phase, var, index, data)
        self.oracle.write(self.data_id, phase, var, index, data)

    def read(self, var: str, index: Index, phase: str = "train") -> np.ndarray:
        """Read from the backend under test, checking it against the oracle."""
        got = self.backend.read(self.data_id, phase, var, index)
        exp = self.oracle.read(self.data_id, phase, var, index)
        assert_identical(got, exp, f"read({self.data_id!r}, {phase!r}, {var!r}, {index!r})")
        return got

    def check(self, var: str, index: Index, phase: str = "train") -> None:
        """Assert the backend reads the same as the oracle at ``index``."""
        self.read(var, index, phase)

    def info(self, var: str, phase: str = "train") -> VarInfo:
        """``info`` of the backend, checked against the oracle."""
        got = self.backend.info(self.data_id, phase, var)
        assert_same_info(got, self.oracle.info(self.data_id, phase, var), f"info of {var!r}")
        return got

    def check_store(self) -> None:
        """Assert both backends hold the same data_ids, vars, order, data and attrs."""
        assert_same_store(self.backend, self.oracle)


def _skip_without(factory: Reopen | None, fixture: str, what: str) -> Reopen:
    if factory is None:
        opens = "read-only " if fixture == "readonly_backend" else ""
        pytest.skip(
            f"{what} tests need the `{fixture}` fixture: a callable taking the backend a test "
            f"wrote through and returning a new {opens}instance on the same storage. This "
            f"suite does not define it (e.g. the backend keeps its data in memory)."
        )
    return factory


# ---------------------------------------------------------------------------------- fixtures
class BackendFixtures:
    """Fixtures of the contract suite; every part of it inherits them.

    Override ``backend`` (or set :attr:`backend_cls` and override ``backend_kwargs``); override
    ``reopen`` and ``readonly_backend`` where the backend supports them.

    Attributes
    ----------
    backend_cls
        The backend class. Only used by the default ``backend`` fixture, which calls
        ``backend_cls(**backend_kwargs)``.
    """

    backend_cls: ClassVar[type[Backend] | None] = None

    @pytest.fixture
    def backend_kwargs(self) -> dict[str, Any]:
        """Options for a fresh, writable backend (e.g. ``output_dir`` and ``mode='a'``)."""
        return {}

    @pytest.fixture
    def backend(self, backend_kwargs: dict[str, Any]) -> Backend:
        """A fresh, empty, writable backend. Each test gets its own storage."""
        if self.backend_cls is None:
            raise NotImplementedError(
                f"{type(self).__name__} must define a `backend` fixture returning a fresh "
                "backend, or set `backend_cls` (and a `backend_kwargs` fixture)."
            )
        return self.backend_cls(**backend_kwargs)

    @pytest.fixture
    def reopen(self) -> Reopen | None:
        """``reopen(backend) -> Backend`` on the same storage, or ``None`` (no persistence)."""
        return None

    @pytest.fixture
    def readonly_backend(self) -> Reopen | None:
        """``readonly_backend(backend) -> Backend`` opening the same storage read-only, or
        ``None`` when the backend has no read-only mode."""
        return None

    @pytest.fixture
    def oracle(self) -> Backend:
        """The reference backend (in-memory numpy)."""
        return NumpyBackend()

    @pytest.fixture
    def twin(self, backend: Backend, oracle: Backend) -> Twin:
        """The backend under test and the oracle, with data_id ``'d'`` created in both."""
        return Twin(backend, oracle)


# ---------------------------------------------------------------------------------- data_ids
class DataIdContract(BackendFixtures):
    """Datasets (data_ids), their phases and their attributes."""

    def test_backend_basics(self, backend: Backend) -> None:
        """It is a Backend with a name, a description, a repr, and it is writable."""
        assert isinstance(backend, Backend)
        assert isinstance(type(backend).name, str) and type(backend).name
        assert isinstance(backend.describe(), str)
        assert isinstance(repr(backend), str)
        assert backend.readonly is False

    def test_fresh_backend_is_empty(self, backend: Backend) -> None:
        """A fresh backend (fresh storage) has no data_ids."""
        assert backend.data_ids() == []

    def test_create_data_id_has_empty_phases(self, backend: Backend) -> None:
        """A new data_id has the three phases, all without vars."""
        backend.create_data_id(DID)
        assert backend.data_ids() == [DID]
        for phase in PHASES:
            assert backend.var_names(DID, phase) == []
            assert not backend.has_var(DID, phase, "x")

    def test_create_data_id_is_idempotent(self, twin: Twin) -> None:
        """Creating an existing data_id again keeps its vars and attrs."""
        twin.append("x", np.arange(4))
        twin.backend.set_attrs(DID, {"k": 1})
        twin.oracle.set_attrs(DID, {"k": 1})
        twin.backend.create_data_id(DID)
        assert twin.backend.data_ids() == [DID]
        twin.check_store()

    def test_data_ids(self, backend: Backend) -> None:
        """data_ids lists every created data_id once."""
        for did in ("b", "a", "c"):
            backend.create_data_id(did)
        backend.create_data_id("a")
        ids = backend.data_ids()
        assert sorted(ids) == ["a", "b", "c"] and len(ids) == 3
        assert all(isinstance(i, str) for i in ids)

    def test_delete_data_id(self, backend: Backend, oracle: Backend) -> None:
        """Deleting a data_id removes it and its vars, and leaves the others alone."""
        for be in (backend, oracle):
            for did in ("keep", "gone"):
                be.create_data_id(did)
                be.append(did, "train", "x", np.arange(5))
                be.set_attrs(did, {"name": did})
            be.delete_data_id("gone")
        assert backend.data_ids() == ["keep"]
        assert_same_store(backend, oracle)
        with pytest.raises(DataIdNotFoundError):
            backend.read("gone", "train", "x", 0)
        backend.create_data_id("gone")
        assert backend.var_names("gone", "train") == []
        assert backend.get_attrs("gone") == {}

    def test_attrs_default_empty(self, backend: Backend) -> None:
        """A new data_id has empty attrs."""
        backend.create_data_id(DID)
        assert backend.get_attrs(DID) == {}

    def test_attrs_round_trip(self, backend: Backend) -> None:
        """JSON-able attrs (nested dicts, lists, str, int, float, bool, None) round-trip."""
        backend.create_data_id(DID)
        attrs = {
            "int": 3,
            "float": 0.25,
            "str": "ünï",
            "bool": True,
            "none": None,
            "list": [1, 2.5, "x", [3]],
            "nested": {"sizes": {"train": 8, "valid": 1, "test": 1}, "vars": ["a", "b"]},
        }
        backend.set_attrs(DID, attrs)
        assert backend.get_attrs(DID) == attrs

    def test_attrs_are_copied(self, backend: Backend) -> None:
        """get_attrs returns a copy, and set_attrs does not keep the caller's dict."""
        backend.create_data_id(DID)
        attrs: dict[str, Any] = {"a": {"b": [1]}}
        backend.set_attrs(DID, attrs)
        attrs["a"]["b"].append(2)
        attrs["c"] = 1
        got = backend.get_attrs(DID)
        assert got == {"a": {"b": [1]}}
        got["a"]["b"].append(3)
        got["d"] = 4
        assert backend.get_attrs(DID) == {"a": {"b": [1]}}

    def test_set_attrs_replaces(self, backend: Backend) -> None:
        """set_attrs replaces the whole dict; attrs are per data_id."""
        backend.create_data_id(DID)
        backend.create_data_id("other")
        backend.set_attrs(DID, {"a": 1, "b": 2})
        backend.set_attrs("other", {"z": 0})
        backend.set_attrs(DID, {"c": 3})
        assert backend.get_attrs(DID) == {"c": 3}
        assert backend.get_attrs("other") == {"z": 0}


# ---------------------------------------------------------------------------------- vars
class VarContract(BackendFixtures):
    """Creating, appending, describing, ordering, deleting and renaming vars."""

    def test_append_creates_then_appends(self, twin: Twin) -> None:
        """The first append creates the var with the data's dtype, later ones add rows."""
        a = sample_array("f4", (5, 3), seed=1)
        b = sample_array("f4", (4, 3), seed=2)
        twin.append("x", a)
        assert twin.backend.has_var(DID, "train", "x")
        assert twin.info("x").shape == (5, 3)
        twin.append("x", b)
        info = twin.info("x")
        assert info.shape == (9, 3) and info.length == 9 and info.row_shape == (3,)
        assert info.dtype == np.dtype("f4") and info.ragged is False and info.name == "x"
        assert_identical(twin.read("x", slice(0, 9, 1)), np.concatenate([a, b]))

    @pytest.mark.parametrize(
        ("var_dtype", "data_dtype"),
        [("i8", "i4"), ("f8", "f4"), ("f4", "f8"), ("i4", "bool"), ("c8", "f4")],
    )
    def test_append_casts_to_var_dtype(self, twin: Twin, var_dtype: str, data_dtype: str) -> None:
        """Appending a castable dtype keeps the var's dtype."""
        first = np.arange(4).astype(var_dtype)
        more = np.array([1, 0, 1]).astype(data_dtype)
        twin.append("x", first)
        twin.append("x", more)
        assert twin.info("x").dtype == np.dtype(var_dtype)
        assert_identical(
            twin.read("x", slice(0, 7, 1)), np.concatenate([first, more.astype(var_dtype)])
        )

    def test_append_empty_batch(self, twin: Twin) -> None:
        """Appending zero rows to a var changes nothing."""
        a = sample_array("i2", (3, 2), seed=3)
        twin.append("x", a)
        twin.append("x", a[:0])
        assert twin.info("x").shape == (3, 2)
        assert_identical(twin.read("x", slice(0, 3, 1)), a)

    def test_append_creates_empty_var(self, twin: Twin) -> None:
        """A var created from zero rows has the right shape and dtype and grows later."""
        twin.append("x", np.zeros((0, 2, 3), dtype="u2"))
        info = twin.info("x")
        assert info.shape == (0, 2, 3) and info.dtype == np.dtype("u2")
        twin.check("x", slice(0, 0, 1))
        twin.check("x", np.empty(0, dtype=np.int64))
        twin.append("x", sample_array("u2", (2, 2, 3), seed=4))
        twin.check("x", slice(0, 2, 1))

    def test_var_order_is_insertion_order(self, twin: Twin) -> None:
        """Vars are listed in the order they were created, not alphabetically."""
        for name in ("zeta", "alpha", "mid", "Beta"):
            twin.append(name, np.arange(3))
        assert twin.backend.var_names(DID, "train") == ["zeta", "alpha", "mid", "Beta"]

    def test_var_order_after_delete_and_readd(self, twin: Twin) -> None:
        """A deleted and re-added var goes to the end."""
        for name in ("c", "a", "b"):
            twin.append(name, np.arange(3))
        twin.backend.delete(DID, "train", "c")
        assert twin.backend.var_names(DID, "train") == ["a", "b"]
        twin.backend.append(DID, "train", "c", np.arange(2))
        assert twin.backend.var_names(DID, "train") == ["a", "b", "c"]
        assert twin.backend.info(DID, "train", "c").shape == (2,)

    def test_phases_are_independent(self, twin: Twin) -> None:
        """Each phase has its own vars, order and lengths."""
        twin.append("x", np.arange(5), phase="train")
        twin.append("y", np.arange(2.0), phase="valid")
        twin.append("x", np.arange(3), phase="valid")
        assert twin.backend.var_names(DID, "train") == ["x"]
        assert twin.backend.var_names(DID, "valid") == ["y", "x"]
        assert twin.backend.var_names(DID, "test") == []
        assert twin.info("x", "train").length == 5
        assert twin.info("x", "valid").length == 3
        assert not twin.backend.has_var(DID, "test", "x")
        twin.check_store()

    def test_has_var(self, twin: Twin) -> None:
        """has_var is True for existing vars only."""
        twin.append("x", np.arange(3))
        assert twin.backend.has_var(DID, "train", "x") is True
        assert twin.backend.has_var(DID, "train", "y") is False
        assert twin.backend.has_var(DID, "valid", "x") is False

    @pytest.mark.parametrize(
        ("shape", "dtype"),
        [((7,), "i8"), ((7, 3), "f4"), ((7, 3, 4), "u1"), ((7, 1), "c8"), ((1, 2, 1, 2), "?")],
        ids=str,
    )
    def test_info(self, twin: Twin, shape: tuple[int, ...], dtype: str) -> None:
        """info reports name, shape, dtype, length, row shape and nbytes."""
        twin.append("v", sample_array(dtype, shape))
        info = twin.info("v")
        assert info.name == "v"
        assert info.shape == shape and info.length == shape[0]
        assert info.row_shape == shape[1:]
        assert info.dtype == np.dtype(dtype)
        assert info.ragged is False
        assert info.nbytes == int(np.prod(shape)) * np.dtype(dtype).itemsize

    def test_info_does_not_read_data(self, twin: Twin, monkeypatch: pytest.MonkeyPatch) -> None:
        """info answers without going through read/read_many."""
        twin.append("x", sample_array("f8", (6, 2)))
        twin.append("x", sample_array("f8", (3, 2), seed=5))

        def boom(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError("info() must not read data")

        monkeypatch.setattr(twin.backend, "read", boom)
        monkeypatch.setattr(twin.backend, "read_many", boom)
        assert twin.info("x").shape == (9, 2)

    def test_info_follows_appends(self, twin: Twin) -> None:
        """info (and any cache behind it) is up to date after every append."""
        for k in range(1, 6):
            twin.append("x", np.full((k, 2), k, dtype="i4"))
            assert twin.info("x").length == k * (k + 1) // 2

    @pytest.mark.parametrize(
        ("shape", "dtype"), [((6,), "f8"), ((6, 3), "i2"), ((4, 2, 3), "c8"), ((0, 3), "f4")],
        ids=str,
    )
    def test_create_then_write(self, twin: Twin, shape: tuple[int, ...], dtype: str) -> None:
        """create makes a var of the given shape and dtype whose rows can then be written."""
        twin.backend.create(DID, "train", "x", shape, np.dtype(dtype))
        twin.oracle.create(DID, "train", "x", shape, np.dtype(dtype))
        info = twin.info("x")
        assert info.shape == shape and info.dtype == np.dtype(dtype)
        assert twin.backend.var_names(DID, "train") == ["x"]
        got = twin.backend.read(DID, "train", "x", slice(0, shape[0], 1))
        assert got.shape == shape and got.dtype == np.dtype(dtype)  # contents unspecified
        data = sample_array(dtype, shape, seed=6)
        if shape[0]:
            twin.write("x", slice(0, shape[0], 1), data)
            twin.write("x", 1, data[0])
            twin.write("x", _i64(shape[0] - 1, 0), data[:2])
        twin.check("x", slice(0, shape[0], 1))
        twin.append("x", data)
        assert twin.info("x").length == 2 * shape[0]
        twin.check("x", slice(0, 2 * shape[0], 1))

    def test_create_keeps_order(self, twin: Twin) -> None:
        """Vars made by create take their place in the insertion order."""
        twin.append("b", np.arange(3))
        twin.backend.create(DID, "train", "a", (3,), np.dtype("f4"))
        twin.append("c", np.arange(3))
        assert twin.backend.var_names(DID, "train") == ["b", "a", "c"]

    def test_delete(self, twin: Twin) -> None:
        """delete removes one var and leaves the others (and other phases) alone."""
        for name in ("a", "b", "c"):
            twin.append(name, sample_array("f4", (4, 2), seed=len(name)))
        twin.append("b", np.arange(2), phase="test")
        twin.backend.delete(DID, "train", "b")
        twin.oracle.delete(DID, "train", "b")
        assert twin.backend.var_names(DID, "train") == ["a", "c"]
        assert not twin.backend.has_var(DID, "train", "b")
        with pytest.raises(VarNotFoundError):
            twin.backend.read(DID, "train", "b", 0)
        with pytest.raises(VarNotFoundError):
            twin.backend.info(DID, "train", "b")
        twin.check_store()

    def test_delete_then_recreate_with_other_shape(self, twin: Twin) -> None:
        """A var re-created after delete has its new shape and dtype (no stale cache)."""
        twin.append("x", sample_array("f8", (5, 3)))
        twin.check("x", slice(0, 5, 1))
        for be in (twin.backend, twin.oracle):
            be.delete(DID, "train", "x")
        twin.append("x", sample_array("i2", (2,), seed=7))
        assert twin.info("x").shape == (2,)
        twin.check("x", slice(0, 2, 1))

    def _three(self, twin: Twin) -> None:
        twin.append("a", sample_array("f4", (4, 2), seed=11))
        twin.append("b", sample_array("i8", (6,), seed=12))
        twin.append("c", sample_array("u1", (3, 2, 2), seed=13))

    def _rename(self, twin: Twin, src: str, dst: str) -> None:
        twin.backend.rename(DID, "train", src, dst)
        twin.oracle.rename(DID, "train", src, dst)

    def test_rename_to_new_name_keeps_position(self, twin: Twin) -> None:
        """A fresh dst takes src's place in the var order."""
        self._three(twin)
        expected = twin.oracle.read(DID, "train", "b", slice(0, 6, 1))
        self._rename(twin, "b", "z")
        assert twin.backend.var_names(DID, "train") == ["a", "z", "c"]
        assert not twin.backend.has_var(DID, "train", "b")
        assert_identical(twin.read("z", slice(0, 6, 1)), expected)
        with pytest.raises(VarNotFoundError):
            twin.backend.read(DID, "train", "b", 0)
        twin.check_store()

    @pytest.mark.parametrize(("src", "dst", "order"), [("c", "a", ["a", "b"]),
                                                       ("a", "c", ["b", "c"]),
                                                       ("b", "a", ["a", "c"])])
    def test_rename_replaces_existing_dst(
        self, twin: Twin, src: str, dst: str, order: list[str]
    ) -> None:
        """An existing dst is replaced (new shape and dtype) and keeps its own position."""
        self._three(twin)
        src_info = twin.oracle.info(DID, "train", src)
        expected = twin.oracle.read(DID, "train", src, slice(0, src_info.length, 1))
        twin.check(dst, slice(0, 1, 1))  # warm any cache of the old dst
        self._rename(twin, src, dst)
        assert twin.backend.var_names(DID, "train") == order
        info = twin.info(dst)
        assert info.shape == src_info.shape and info.dtype == src_info.dtype
        assert_identical(twin.read(dst, slice(0, info.length, 1)), expected)
        twin.check_store()

    def test_rename_temporary_swap(self, twin: Twin) -> None:
        """The facade's whole-var transform pattern: write '.sg-tmp-x', rename it onto 'x'."""
        twin.append("x", np.arange(6, dtype="i4"))
        twin.append("y", np.arange(6.0))
        tmp = ".sg-tmp-x"
        twin.backend.create(DID, "train", tmp, (0,), np.dtype("f8"))
        twin.oracle.create(DID, "train", tmp, (0,), np.dtype("f8"))
        twin.append(tmp, np.arange(6, dtype="f8") * 0.5)
        self._rename(twin, tmp, "x")
        assert twin.backend.var_names(DID, "train") == ["x", "y"]
        assert twin.info("x").dtype == np.dtype("f8")
        twin.check_store()

    def test_rename_onto_itself_is_a_no_op(self, twin: Twin) -> None:
        """rename(x, x) keeps x as it is."""
        self._three(twin)
        self._rename(twin, "b", "b")
        assert twin.backend.var_names(DID, "train") == ["a", "b", "c"]
        twin.check_store()

    def test_rename_then_append(self, twin: Twin) -> None:
        """A renamed var can be appended to and read under its new name."""
        twin.append("x", np.arange(3))
        self._rename(twin, "x", "y")
        twin.append("y", np.arange(3, 5))
        twin.append("x", np.arange(2))
        assert twin.backend.var_names(DID, "train") == ["y", "x"]
        assert_identical(twin.read("y", slice(0, 5, 1)), np.arange(5))
        twin.check_store()


# ---------------------------------------------------------------------------------- reads
_ROW_SHAPES = [pytest.param((), "i8", id="1d-i8"), pytest.param((3,), "f4", id="2d-f4"),
               pytest.param((3, 4), "f8", id="3d-f8")]

_NORMALIZED: list[Any] = [
    pytest.param(0, id="int-first"),
    pytest.param(5, id="int-mid"),
    pytest.param(N - 1, id="int-last"),
    pytest.param(slice(0, N, 1), id="slice-all"),
    pytest.param(slice(2, 7, 1), id="slice-mid"),
    pytest.param(slice(N - 1, N, 1), id="slice-last"),
    pytest.param(slice(1, N, 3), id="slice-step3"),
    pytest.param(slice(0, N, 7), id="slice-step7"),
    pytest.param(slice(3, 9, 2), id="slice-step2"),
    pytest.param(slice(0, N, N + 5), id="slice-bigstep"),
    pytest.param(slice(0, 0, 1), id="slice-empty-start"),
    pytest.param(slice(4, 4, 1), id="slice-empty-mid"),
    pytest.param(slice(N, N, 1), id="slice-empty-end"),
    pytest.param(slice(6, 6, 3), id="slice-empty-step"),
    pytest.param(_i64(7, 2, 2, 9, 0, 7), id="array-unsorted-repeats"),
    pytest.param(_i64(4), id="array-one"),
    pytest.param(_i64(3, 3, 3), id="array-same"),
    pytest.param(np.arange(N - 1, -1, -1, dtype=np.int64), id="array-reversed"),
    pytest.param(np.arange(N, dtype=np.int64), id="array-all"),
    pytest.param(np.empty(0, dtype=np.int64), id="array-empty"),
]

_USER: list[Any] = [
    pytest.param(-2, -2, id="neg-int"),
    pytest.param(-N, 0, id="neg-int-first"),
    pytest.param(np.int64(3), 3, id="np-int64"),
    pytest.param(np.int32(-3), -3, id="np-int32-neg"),
    pytest.param(np.uint8(N - 1), N - 1, id="np-uint8"),
    pytest.param(np.array(4), 4, id="0d-array"),
    pytest.param(-1, slice(None), id="minus-one-is-all"),
    pytest.param(Ellipsis, slice(None), id="ellipsis"),
    pytest.param(slice(None), slice(None), id="slice-none"),
    pytest.param(slice(-4, None), slice(-4, None), id="slice-neg-start"),
    pytest.param(slice(None, -3), slice(None, -3), id="slice-neg-stop"),
    pytest.param(slice(5, 100), slice(5, 100), id="slice-past-end"),
    pytest.param(slice(-100, 3), slice(-100, 3), id="slice-before-start"),
    pytest.param(slice(1, None, 3), slice(1, None, 3), id="slice-step"),
    pytest.param(slice(None, None, -1), slice(None, None, -1), id="slice-reversed"),
    pytest.param(slice(8, 1, -3), slice(8, 1, -3), id="slice-neg-step"),
    pytest.param(slice(7, 3), slice(7, 3), id="slice-empty"),
    pytest.param(slice(3, 7, -1), slice(3, 7, -1), id="slice-neg-step-empty"),
    pytest.param((2, 6), slice(2, 6), id="tuple"),
    pytest.param((np.int64(0), np.int64(3)), slice(0, 3), id="tuple-np-ints"),
    pytest.param([3, -1, 0, 3], [3, -1, 0, 3], id="list-neg-repeats"),
    pytest.param([np.int64(2), 5], [2, 5], id="list-np-ints"),
    pytest.param([], np.empty(0, dtype=np.intp), id="list-empty"),
    pytest.param(np.array([9, 2, 2], dtype=np.int32), [9, 2, 2], id="array-int32"),
    pytest.param(np.array([1, 0], dtype=np.uint16), [1, 0], id="array-uint16"),
    pytest.param(np.array([-1, -N]), [-1, -N], id="array-neg"),
    pytest.param(np.arange(N) % 3 == 0, np.arange(N) % 3 == 0, id="bool-mask"),
    pytest.param([i % 2 == 1 for i in range(N)], np.arange(N) % 2 == 1, id="bool-list"),
    pytest.param(np.zeros(N, dtype=bool), np.zeros(N, dtype=bool), id="bool-mask-none"),
    pytest.param(np.ones(N, dtype=bool), np.ones(N, dtype=bool), id="bool-mask-all"),
]


class ReadContract(BackendFixtures):
    """Reads at every index form, copies, read_many, dtypes, shapes and a large gather."""

    def _var(self, twin: Twin, row_shape: tuple[int, ...], dtype: str) -> np.ndarray:
        src = sample_array(dtype, (N, *row_shape), seed=21)
        twin.append("x", src[:4])  # two appends, so reads cross an append boundary
        twin.append("x", src[4:])
        twin.append("other", np.arange(N, dtype="i2"))
        return src

    @pytest.mark.parametrize(("row_shape", "dtype"), _ROW_SHAPES)
    @pytest.mark.parametrize("index", _NORMALIZED)
    def test_read_normalized_index(
        self, twin: Twin, index: Index, row_shape: tuple[int, ...], dtype: str
    ) -> None:
        """Every normalised index form reads what numpy indexing of the source gives."""
        src = self._var(twin, row_shape, dtype)
        got = twin.read("x", index)
        assert_identical(got, np.asarray(src[index]), f"read at {index!r}")
        if isinstance(index, int):
            assert got.shape == row_shape  # row axis dropped; 0-d for a 1-D var

    @pytest.mark.parametrize(("row_shape", "dtype"), _ROW_SHAPES[:2])
    @pytest.mark.parametrize(("user_index", "numpy_index"), _USER)
    def test_read_user_index(
        self, twin: Twin, user_index: Any, numpy_index: Any, row_shape: tuple[int, ...],
        dtype: str,
    ) -> None:
        """User index forms, normalised by storegate.indexing.normalize, read as numpy does."""
        src = self._var(twin, row_shape, dtype)
        index = normalize(user_index, N)
        assert isinstance(index, int | slice | np.ndarray)
        if isinstance(index, np.ndarray):
            assert index.dtype == np.int64 and index.ndim == 1
        got = twin.read("x", index)
        assert_identical(got, np.asarray(src[numpy_index]), f"read at {user_index!r}")

    def test_read_int_drops_row_axis(self, twin: Twin) -> None:
        """An int index drops the row axis: 0-d for a 1-D var, row_shape otherwise."""
        twin.append("s", np.arange(5.0))
        twin.append("m", np.arange(30).reshape(5, 2, 3))
        scalar = twin.read("s", 3)
        assert isinstance(scalar, np.ndarray) and scalar.shape == () and scalar.item() == 3.0
        assert twin.read("m", 4).shape == (2, 3)

    @pytest.mark.parametrize("row_shape", [(), (3,), (2, 2)], ids=str)
    @pytest.mark.parametrize("dtype", ["f4", "i8", "?"])
    def test_read_empty_selection(self, twin: Twin, row_shape: tuple[int, ...], dtype: str) -> None:
        """Empty slices and empty index arrays give (0, *row_shape) arrays of the var's dtype."""
        twin.append("x", sample_array(dtype, (5, *row_shape)))
        for index in (slice(0, 0, 1), slice(5, 5, 1), slice(2, 2, 4), np.empty(0, np.int64)):
            got = twin.read("x", index)
            assert got.shape == (0, *row_shape) and got.dtype == np.dtype(dtype)

    @pytest.mark.parametrize(
        "index", [3, slice(0, N, 1), slice(1, 8, 2), _i64(5, 1, 5)], ids=repr
    )
    def test_read_returns_a_copy(self, twin: Twin, index: Index) -> None:
        """Mutating a read result never changes the store, and results share no memory."""
        src = sample_array("f8", (N, 2), seed=22)
        twin.append("x", src)
        first = twin.read("x", index)
        second = twin.backend.read(DID, "train", "x", index)
        assert not np.shares_memory(first, second)
        assert first.flags.writeable, "a read result must be writable (the caller owns it)"
        first[...] = -7.0
        twin.check("x", index)
        assert_identical(twin.read("x", slice(0, N, 1)), src)

    def test_read_leaves_index_alone(self, twin: Twin) -> None:
        """A read never modifies the index array it is given (e.g. by sorting it in place)."""
        twin.append("x", np.arange(N * 2).reshape(N, 2))
        index = _i64(9, 3, 3, 0, 7)
        keep = index.copy()
        twin.read("x", index)
        twin.backend.read_many(DID, "train", ["x", "x"], index)
        assert_identical(index, keep, "the index array after the read")

    @pytest.mark.parametrize(
        "index",
        [4, slice(0, N, 1), slice(2, 9, 3), slice(3, 3, 1), _i64(8, 1, 1), _i64()],
        ids=repr,
    )
    def test_read_many_equals_reads(self, twin: Twin, index: Index) -> None:
        """read_many gives, in order, what one read per var gives."""
        twin.append("a", sample_array("f4", (N, 3), seed=23))
        twin.append("b", sample_array("i8", (N,), seed=24))
        twin.append("c", sample_array("u1", (N, 2, 2), seed=25))
        names = ["c", "a", "b", "a"]
        many = twin.backend.read_many(DID, "train", names, index)
        assert isinstance(many, list) and len(many) == len(names)
        for name, got in zip(names, many, strict=True):
            assert_identical(got, twin.oracle.read(DID, "train", name, index), f"{name!r}")
        assert not np.shares_memory(many[1], many[3])

    @pytest.mark.parametrize("dtype", DTYPES)
    def test_dtype_round_trip(self, twin: Twin, dtype: str) -> None:
        """Each dtype round-trips bit for bit (including nan, inf, -0.0, min and max)."""
        src = sample_array(dtype, (N, 2), seed=26)
        twin.append("x", src[:6])
        twin.append("x", src[6:])
        assert twin.info("x").dtype == np.dtype(dtype)
        assert_identical(twin.read("x", slice(0, N, 1)), src)
        assert_identical(twin.read("x", _i64(9, 0, 4, 4)), src[[9, 0, 4, 4]])
        assert_identical(twin.read("x", 7), src[7])
        flat = sample_array(dtype, (5,), seed=27)
        twin.append("flat", flat)
        assert_identical(twin.read("flat", slice(0, 5, 1)), flat)
        assert_identical(twin.read("flat", 0), flat[0])

    def test_multidim_var(self, twin: Twin) -> None:
        """(N, 3, 4) vars append, read and write like numpy."""
        src = sample_array("f4", (12, 3, 4), seed=28)
        for part in np.array_split(src, 4):
            twin.append("x", part)
        assert twin.info("x").shape == (12, 3, 4)
        for index in (0, 11, slice(0, 12, 1), slice(1, 12, 5), _i64(11, 0, 5, 5)):
            assert_identical(twin.read("x", index), np.asarray(src[index]))
        row = np.full((3, 4), 9.5, dtype="f4")
        twin.write("x", 2, row)
        src[2] = row
        assert_identical(twin.read("x", slice(0, 12, 1)), src)

    def test_many_small_appends(self, twin: Twin) -> None:
        """Many small appends (with reads in between) equal one concatenation."""
        rng = np.random.default_rng(29)
        parts = []
        total = 0
        for k in range(120):
            part = rng.standard_normal((int(rng.integers(0, 6)), 3)).astype("f4")
            labels = np.arange(total, total + part.shape[0], dtype="i8")
            twin.append("x", part)
            twin.append("y", labels)
            parts.append(part)
            total += part.shape[0]
            if k % 15 == 0 and total:
                assert twin.info("x").length == total
                twin.check("x", slice(max(0, total - 4), total, 1))
                twin.check("y", _i64(total - 1, 0))
        full = np.concatenate(parts)
        assert twin.info("x").shape == full.shape
        assert_identical(twin.read("x", slice(0, total, 1)), full)
        assert_identical(twin.read("y", slice(0, total, 1)), np.arange(total, dtype="i8"))
        idx = rng.integers(0, total, 50)
        assert_identical(twin.read("x", idx), full[idx])

    #: rows of :meth:`test_large_random_gathers`; a backend whose every chunk is a slow request
    #: (an object store in CI) may lower it in its subclass, keeping the same reads
    large_rows: int = 200_000

    def test_large_random_gathers(self, twin: Twin) -> None:
        """200,000 x 16 float32 (``large_rows``): random gathers, slices and rows equal
        numpy's."""
        rng = np.random.default_rng(30)
        n = max(4096, int(self.large_rows))
        cut1, cut2 = n // 4, n * 617 // 1000 + 57  # three appends of uneven sizes
        src = rng.standard_normal((n, 16), dtype=np.float32)
        labels = rng.integers(0, 10, n).astype(np.int64)
        for a, b in ((0, cut1), (cut1, cut2), (cut2, n)):
            twin.backend.append(DID, "train", "x", src[a:b])
            twin.backend.append(DID, "train", "y", labels[a:b])
        assert twin.backend.info(DID, "train", "x").shape == (n, 16)
        be = twin.backend
        for _ in range(3):
            idx = rng.integers(0, n, 1024)
            assert_identical(be.read(DID, "train", "x", idx), src[idx], "random gather")
            got_x, got_y = be.read_many(DID, "train", ["x", "y"], idx)
            assert_identical(got_x, src[idx], "read_many x")
            assert_identical(got_y, labels[idx], "read_many y")
        idx = np.sort(rng.choice(n, 2048, replace=False))
        assert_identical(be.read(DID, "train", "x", idx), src[idx], "sorted gather")
        for index in (slice(cut1 - 10, cut1 + 20, 1), slice(0, n, 997), n - 1, cut2 - 1):
            assert_identical(be.read(DID, "train", "x", index), np.asarray(src[index]), repr(index))


# ---------------------------------------------------------------------------------- writes
class WriteContract(BackendFixtures):
    """In-place writes and the copying of caller arrays."""

    def test_append_copies_input(self, twin: Twin) -> None:
        """Changing the caller's array after append (creating or not) changes nothing."""
        first = np.arange(6.0).reshape(3, 2)
        twin.append("x", first)
        first[:] = -1.0
        more = np.arange(6.0, 10.0).reshape(2, 2)
        twin.append("x", more)
        more[:] = -2.0
        assert_identical(twin.read("x", slice(0, 5, 1)), np.arange(10.0).reshape(5, 2))

    def test_append_does_not_modify_input(self, twin: Twin) -> None:
        """append leaves the caller's array untouched (values, dtype, writeable flag)."""
        data = np.arange(6, dtype="i4").reshape(3, 2)
        twin.append("x", np.zeros((1, 2), dtype="i8"))
        twin.append("x", data)
        assert_identical(data, np.arange(6, dtype="i4").reshape(3, 2), "the caller's array")
        assert data.flags.writeable

    def test_write_copies_input(self, twin: Twin) -> None:
        """Changing the caller's array after write changes nothing."""
        twin.append("x", np.zeros((5, 2)))
        data = np.ones((2, 2))
        twin.write("x", slice(1, 3, 1), data)
        data[:] = 5.0
        row = np.full(2, 3.0)
        twin.write("x", 4, row)
        row[:] = 6.0
        expected = np.zeros((5, 2))
        expected[1:3] = 1.0
        expected[4] = 3.0
        assert_identical(twin.read("x", slice(0, 5, 1)), expected)

    @pytest.mark.parametrize("row_shape", [(), (3,)], ids=str)
    @pytest.mark.parametrize(
        "index",
        [0, N - 1, slice(0, N, 1), slice(2, 5, 1), slice(1, N, 3), slice(4, 4, 1),
         _i64(8, 1, 5), _i64(3), _i64()],
        ids=repr,
    )
    def test_write_in_place(self, twin: Twin, index: Index, row_shape: tuple[int, ...]) -> None:
        """write at an int, slice or array index changes exactly those rows."""
        src = sample_array("f8", (N, *row_shape), seed=31)
        twin.append("x", src[:3])
        twin.append("x", src[3:])
        twin.append("y", np.arange(N))
        twin.check("x", slice(0, N, 1))  # warm caches before the write
        expected = src.copy()
        shape = np.shape(expected[index])
        data = np.arange(int(np.prod(shape)), dtype="f8").reshape(shape) + 1000.0
        expected[index] = data
        twin.write("x", index, data)
        assert twin.info("x").shape == (N, *row_shape)
        assert_identical(twin.read("x", slice(0, N, 1)), expected)
        assert_identical(twin.read("x", index), np.asarray(expected[index]))
        assert_identical(twin.read("y", slice(0, N, 1)), np.arange(N))

    def test_write_then_append_then_write(self, twin: Twin) -> None:
        """Writes and appends interleave without losing either."""
        twin.append("x", np.zeros(4, dtype="i8"))
        twin.write("x", slice(0, 2, 1), _i64(1, 2))
        twin.append("x", _i64(7, 8, 9))
        twin.write("x", _i64(6, 3), _i64(60, 30))
        twin.write("x", 4, np.array(40, dtype="i8"))
        assert_identical(twin.read("x", slice(0, 7, 1)), _i64(1, 2, 0, 30, 40, 8, 60))
        twin.check_store()


# ---------------------------------------------------------------------------------- errors
_MISSING_VAR_OPS: dict[str, Callable[[Backend], Any]] = {
    "read": lambda be: be.read(DID, "train", "nope", 0),
    "read-slice": lambda be: be.read(DID, "train", "nope", slice(0, 1, 1)),
    "read_many": lambda be: be.read_many(DID, "train", ["x", "nope"], slice(0, 1, 1)),
    "info": lambda be: be.info(DID, "train", "nope"),
    "delete": lambda be: be.delete(DID, "train", "nope"),
    "write": lambda be: be.write(DID, "train", "nope", 0, np.array(1)),
    "rename-src": lambda be: be.rename(DID, "train", "nope", "y"),
    "other-phase": lambda be: be.read(DID, "valid", "x", 0),
}

_MISSING_DATA_ID_OPS: dict[str, Callable[[Backend], Any]] = {
    "var_names": lambda be: be.var_names("nope", "train"),
    "read": lambda be: be.read("nope", "train", "x", 0),
    "read_many": lambda be: be.read_many("nope", "train", ["x"], 0),
    "info": lambda be: be.info("nope", "train", "x"),
    "append": lambda be: be.append("nope", "train", "x", np.arange(3)),
    "write": lambda be: be.write("nope", "train", "x", 0, np.array(1)),
    "create": lambda be: be.create("nope", "train", "x", (3,), np.dtype("i8")),
    "delete": lambda be: be.delete("nope", "train", "x"),
    "rename": lambda be: be.rename("nope", "train", "x", "y"),
    "get_attrs": lambda be: be.get_attrs("nope"),
    "set_attrs": lambda be: be.set_attrs("nope", {"a": 1}),
    "delete_data_id": lambda be: be.delete_data_id("nope"),
}


class ErrorContract(BackendFixtures):
    """Errors: the storegate exception types, and no change to the store on failure."""

    @pytest.mark.parametrize("op", list(_MISSING_VAR_OPS))
    def test_missing_var(self, twin: Twin, op: str) -> None:
        """Operations on a var that does not exist raise VarNotFoundError (also a KeyError)."""
        twin.append("x", np.arange(3))
        with pytest.raises(VarNotFoundError) as err:
            _MISSING_VAR_OPS[op](twin.backend)
        assert isinstance(err.value, KeyError) and isinstance(err.value, StoregateError)
        twin.check_store()

    @pytest.mark.parametrize("op", list(_MISSING_DATA_ID_OPS))
    def test_missing_data_id(self, twin: Twin, op: str) -> None:
        """Operations on a data_id that does not exist raise DataIdNotFoundError."""
        twin.append("x", np.arange(3))
        with pytest.raises(DataIdNotFoundError) as err:
            _MISSING_DATA_ID_OPS[op](twin.backend)
        assert isinstance(err.value, KeyError) and isinstance(err.value, StoregateError)
        assert twin.backend.data_ids() == [DID]
        twin.check_store()

    @pytest.mark.parametrize(
        ("first", "bad"),
        [((4, 3), (2, 4)), ((4, 3), (2,)), ((4,), (2, 1)), ((4, 2, 2), (2, 2, 3))],
        ids=str,
    )
    def test_append_wrong_row_shape(
        self, twin: Twin, first: tuple[int, ...], bad: tuple[int, ...]
    ) -> None:
        """Appending rows of another shape raises ShapeMismatchError and changes nothing."""
        twin.append("x", np.zeros(first, dtype="f4"))
        with pytest.raises(ShapeMismatchError):
            twin.backend.append(DID, "train", "x", np.ones(bad, dtype="f4"))
        twin.check_store()

    @pytest.mark.parametrize(
        ("var_dtype", "data"),
        [
            ("i8", np.array([1.5, 2.0])),
            ("i4", np.array([1.0], dtype="f4")),
            ("f8", np.array([1 + 2j])),
            ("?", np.array([2, 0])),
            ("i1", np.array([300, 1])),
            ("u2", np.array([-1, 1])),
        ],
        ids=["float-into-int", "f4-into-i4", "complex-into-float", "int-into-bool",
             "overflow-int8", "negative-into-uint"],
    )
    def test_append_lossy_cast(self, twin: Twin, var_dtype: str, data: np.ndarray) -> None:
        """Appending data that cannot be cast without loss raises DtypeError, no change."""
        twin.append("x", np.zeros(3, dtype=var_dtype))
        with pytest.raises(DtypeError):
            twin.backend.append(DID, "train", "x", data)
        assert twin.info("x").dtype == np.dtype(var_dtype)
        twin.check_store()


# ---------------------------------------------------------------------------------- processes
def _populate(twin: Twin) -> list[ReadRequest]:
    twin.append("x", sample_array("f4", (20, 3), seed=41))
    twin.append("x", sample_array("f4", (7, 3), seed=42))
    twin.append("label", np.arange(27, dtype="i8"))
    twin.append("flag", sample_array("?", (5,), seed=43), phase="test")
    attrs = {"meta": {"sizes": [27, 0, 5]}, "note": "contract"}
    for be in (twin.backend, twin.oracle):
        be.set_attrs(DID, attrs)
        be.create_data_id("second")
        be.append("second", "valid", "z", sample_array("c8", (4, 2), seed=44))
    return [
        (DID, "train", "x", _i64(26, 3, 3, 0, 19, 20)),
        (DID, "train", "x", slice(2, 25, 4)),
        (DID, "train", "label", 26),
        (DID, "test", "flag", slice(0, 5, 1)),
        ("second", "valid", "z", _i64(1, 3)),
    ]


class ProcessContract(BackendFixtures):
    """Pickling, use from spawned and forked processes, close and reuse."""

    def test_pickle_round_trip(self, twin: Twin) -> None:
        """A pickled and unpickled backend reads the same data_ids, vars, data and attrs."""
        _populate(twin)
        twin.backend.flush()
        clone = pickle.loads(pickle.dumps(twin.backend))
        assert type(clone) is type(twin.backend)
        assert clone.readonly == twin.backend.readonly
        assert_same_store(clone, twin.oracle)
        clone.close()

    def test_pickle_after_reads(self, twin: Twin) -> None:
        """Pickling works after reads opened handles or filled caches."""
        requests = _populate(twin)
        for d, p, v, index in requests:
            twin.backend.read(d, p, v, index)
            twin.backend.info(d, p, v)
        twin.backend.flush()
        clone = pickle.loads(pickle.dumps(twin.backend))
        for d, p, v, index in requests:
            assert_identical(clone.read(d, p, v, index), twin.oracle.read(d, p, v, index))

    def _compare(self, twin: Twin, requests: list[ReadRequest], method: str) -> None:
        results, infos = run_reads_in_process(method, twin.backend, requests)
        assert len(results) == len(requests)
        for (d, p, v, index), got, (shape, dtype) in zip(requests, results, infos, strict=True):
            assert_identical(got, twin.oracle.read(d, p, v, index), f"{method}: {v} at {index!r}")
            exp = twin.oracle.info(d, p, v)
            assert (shape, dtype) == (exp.shape, str(exp.dtype))

    def test_read_in_spawned_process(self, twin: Twin) -> None:
        """A spawned worker given the pickled backend reads the same data."""
        requests = _populate(twin)
        twin.backend.flush()
        self._compare(twin, requests, "spawn")

    def test_read_in_forked_process(self, twin: Twin) -> None:
        """A forked child reading through the inherited (already used) backend gets the same
        data, and the parent keeps working afterwards."""
        if "fork" not in multiprocessing.get_all_start_methods():
            pytest.skip("the 'fork' start method is not available on this platform")
        requests = _populate(twin)
        twin.backend.flush()
        for d, p, v, index in requests:  # use the backend in the parent first (open handles)
            twin.backend.read(d, p, v, index)
        self._compare(twin, requests, "fork")
        twin.append("x", sample_array("f4", (2, 3), seed=45))
        twin.check("x", slice(0, 29, 1))
        twin.check_store()

    def test_close_then_reuse(self, twin: Twin) -> None:
        """close flushes; the backend can be used again afterwards; flush is idempotent."""
        _populate(twin)
        twin.backend.flush()
        twin.backend.flush()
        twin.backend.close()
        twin.check_store()
        twin.append("label", np.arange(27, 30, dtype="i8"))
        twin.backend.close()
        twin.backend.close()
        twin.check_store()

    def test_context_manager(self, twin: Twin) -> None:
        """``with backend:`` returns the backend and closes it on exit."""
        with twin.backend as be:
            assert be is twin.backend
            _populate(twin)
        twin.check_store()


# ---------------------------------------------------------------------------------- persistence
_READONLY_OPS: dict[str, Callable[[Backend], Any]] = {
    "create_data_id": lambda be: be.create_data_id("new"),
    "delete_data_id": lambda be: be.delete_data_id(DID),
    "set_attrs": lambda be: be.set_attrs(DID, {"a": 2}),
    "append-existing": lambda be: be.append(DID, "train", "x", np.zeros((1, 3), "f4")),
    "append-new": lambda be: be.append(DID, "valid", "new", np.arange(3)),
    "write": lambda be: be.write(DID, "train", "x", 0, np.zeros(3, "f4")),
    "create": lambda be: be.create(DID, "train", "new", (3,), np.dtype("i8")),
    "delete": lambda be: be.delete(DID, "train", "label"),
    "rename": lambda be: be.rename(DID, "train", "label", "renamed"),
    "rename-onto": lambda be: be.rename(DID, "train", "label", "x"),
}


class PersistenceContract(BackendFixtures):
    """Reopening the same storage, and read-only mode (skipped without the fixtures)."""

    def _reopened(self, backend: Backend, reopen: Reopen | None) -> Backend:
        factory = _skip_without(reopen, "reopen", "persistence")
        backend.close()
        new = factory(backend)
        assert new is not backend
        return new

    def test_reopen_keeps_everything(self, twin: Twin, reopen: Reopen | None) -> None:
        """Data, dtypes, var order and attrs survive closing and reopening."""
        _skip_without(reopen, "reopen", "persistence")
        _populate(twin)
        for name in ("zeta", "alpha", "mid"):
            twin.append(name, sample_array("u2", (3, 2), seed=len(name)), phase="valid")
        for dtype in DTYPES:
            twin.append(f"dt_{dtype}", sample_array(dtype, (4,), seed=46), phase="test")
        new = self._reopened(twin.backend, reopen)
        assert_same_store(new, twin.oracle)
        new.close()

    def test_reopen_after_delete_rename_write(self, twin: Twin, reopen: Reopen | None) -> None:
        """Deletes, renames (both kinds), writes and attr changes are persisted."""
        _skip_without(reopen, "reopen", "persistence")
        _populate(twin)
        for name in ("a", "b", "c", "d"):
            twin.append(name, np.arange(4, dtype="i4") * len(name))
        for be in (twin.backend, twin.oracle):
            be.delete(DID, "train", "a")
            be.rename(DID, "train", "b", "z")
            be.rename(DID, "train", "d", "c")
            be.write(DID, "train", "x", _i64(0, 26), np.ones((2, 3), "f4"))
            be.set_attrs(DID, {"replaced": True})
            be.delete_data_id("second")
        new = self._reopened(twin.backend, reopen)
        assert new.var_names(DID, "train") == ["x", "label", "z", "c"]
        assert_same_store(new, twin.oracle)
        new.close()

    def test_reopen_then_append(self, twin: Twin, reopen: Reopen | None) -> None:
        """A reopened store takes more appends, writes and new vars, and keeps them."""
        _skip_without(reopen, "reopen", "persistence")
        _populate(twin)
        new = self._reopened(twin.backend, reopen)
        more = sample_array("f4", (5, 3), seed=47)
        for be in (new, twin.oracle):
            be.append(DID, "train", "x", more)
            be.append(DID, "train", "extra", np.arange(4))
            be.write(DID, "train", "label", 0, np.array(-5, dtype="i8"))
        assert_same_store(new, twin.oracle)
        again = self._reopened(new, reopen)
        assert_same_store(again, twin.oracle)
        again.close()

    def test_pickle_reopens_storage(self, twin: Twin, reopen: Reopen | None) -> None:
        """An unpickled persistent backend reopens the storage rather than carrying a
        snapshot: it sees data flushed after it was pickled."""
        _skip_without(reopen, "reopen", "persistence")
        _populate(twin)
        twin.backend.flush()
        payload = pickle.dumps(twin.backend)
        twin.append("label", np.arange(27, 30, dtype="i8"))
        twin.append("late", np.arange(3.0), phase="valid")
        twin.backend.flush()
        clone = pickle.loads(payload)
        assert_same_store(clone, twin.oracle)
        clone.close()

    def test_readonly_reads(self, twin: Twin, readonly_backend: Reopen | None) -> None:
        """A read-only instance reports readonly and reads everything."""
        factory = _skip_without(readonly_backend, "readonly_backend", "read-only")
        _populate(twin)
        twin.backend.close()
        ro = factory(twin.backend)
        assert ro.readonly is True
        assert_same_store(ro, twin.oracle)
        clone = pickle.loads(pickle.dumps(ro))
        assert clone.readonly is True
        assert_same_store(clone, twin.oracle)
        ro.close()

    @pytest.mark.parametrize("op", list(_READONLY_OPS))
    def test_readonly_rejects_writes(
        self, twin: Twin, readonly_backend: Reopen | None, op: str
    ) -> None:
        """Every write on a read-only instance raises ReadOnlyError and changes nothing.

        Creating a new data_id may raise DataIdNotFoundError instead: on a read-only store
        the data_id a caller asks for does not exist, and saying so is just as true.
        """
        factory = _skip_without(readonly_backend, "readonly_backend", "read-only")
        _populate(twin)
        twin.backend.close()
        ro = factory(twin.backend)
        expected: tuple[type[Exception], ...] = (ReadOnlyError,)
        if op == "create_data_id":
            expected = (ReadOnlyError, DataIdNotFoundError)
        with pytest.raises(expected) as err:
            _READONLY_OPS[op](ro)
        assert isinstance(err.value, StoregateError)
        ro.flush()
        ro.close()
        assert_same_store(ro, twin.oracle)
        assert_same_store(factory(twin.backend), twin.oracle)


# ---------------------------------------------------------------------------------- all
class BackendContract(
    DataIdContract,
    VarContract,
    ReadContract,
    WriteContract,
    ErrorContract,
    ProcessContract,
    PersistenceContract,
    RaggedContract,
):
    """The whole backend contract. Subclass it and define a ``backend`` fixture.

    See :mod:`storegate.testing` for the fixtures a subclass may override.
    """
