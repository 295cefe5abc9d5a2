"""The backend contract suite: pytest classes every storegate backend subclasses.

A backend (built-in or third-party) gets the whole suite by subclassing
:class:`BackendContract` in its test module and defining one fixture::

    import pytest
    from storegate.testing import BackendContract
    class TestMyBackend(BackendContract):
        @pytest.fixture
        def backend(self, tmp_path):
            return MyBackend(output_dir=str(tmp_path / "store"))

Every test drives the backend and the in-memory numpy backend (the oracle) with the same calls
and compares results bit for bit: data_ids and attrs, append/create/write/delete/rename, var
order, ``info``, reads at every normalised index form (and at the user forms after
:func:`storegate.indexing.normalize`), copies in and out, ``read_many``, 13 dtypes, multi-dim
vars, many small appends, a 200,000-row gather, the error types, pickling, reads in spawned and
forked processes, and (when the fixtures below exist) persistence and read-only mode.

Fixtures a subclass may override
--------------------------------
``backend``
    Required: a fresh, empty, writable backend on its own storage (use ``tmp_path``). It may
    ``yield`` the backend and clean up afterwards. Alternatively set the class attribute
    ``backend_cls`` and override ``backend_kwargs`` (a dict of write-mode options, e.g.
    ``{"output_dir": ..., "mode": "a"}``); the default ``backend`` fixture then returns
    ``backend_cls(**backend_kwargs)``.
``reopen``
    For persistent backends: return a callable ``reopen(backend) -> Backend`` that opens a new
    instance on the same storage as ``backend`` (which the suite has closed first). Default
    ``None``: the persistence tests are skipped with a reason saying so.
``readonly_backend``
    For backends with a read-only mode: a callable ``readonly_backend(backend) -> Backend``
    opening the same storage read-only. Default ``None``: read-only tests are skipped.
``oracle``
    The reference backend (default: a fresh ``NumpyBackend``); rarely overridden.

For a persistent backend::

    class TestMyBackend(BackendContract):
        @pytest.fixture
        def backend(self, tmp_path):
            return MyBackend(output_dir=str(tmp_path / "store"), mode="a")

        @pytest.fixture
        def reopen(self, tmp_path):
            return lambda old: MyBackend(output_dir=str(tmp_path / "store"), mode="a")

        @pytest.fixture
        def readonly_backend(self, tmp_path):
            return lambda old: MyBackend(output_dir=str(tmp_path / "store"), mode="r")

The suite is split into parts (:class:`DataIdContract`, :class:`VarContract`,
:class:`ReadContract`, :class:`WriteContract`, :class:`ErrorContract`,
:class:`ProcessContract`, :class:`PersistenceContract`, :class:`RaggedContract`) that can
be subclassed on their own.
A test that cannot apply to a backend can be overridden in the subclass (e.g. with a method of
the same name that calls ``pytest.skip`` with the reason).

Persistent backends may buffer writes: the suite calls ``flush()`` before pickling a backend or
handing it to another process, and ``close()`` before reopening its storage.

This module imports pytest; ``import storegate`` never imports it.
"""

from __future__ import annotations

import pytest

# plain asserts in the suite get pytest's detailed failure messages
pytest.register_assert_rewrite("storegate.testing.contract", "storegate.testing.helpers")

from .contract import (  # noqa: E402
    BackendContract,
    BackendFixtures,
    DataIdContract,
    ErrorContract,
    PersistenceContract,
    ProcessContract,
    ReadContract,
    Reopen,
    Twin,
    VarContract,
    WriteContract,
)
from .helpers import (  # noqa: E402
    DTYPES,
    assert_identical,
    assert_same_info,
    assert_same_store,
    sample_array,
)
from .ragged import RaggedContract, ragged_sample  # noqa: E402

__all__ = [
    "DTYPES",
    "BackendContract",
    "BackendFixtures",
    "DataIdContract",
    "ErrorContract",
    "PersistenceContract",
    "ProcessContract",
    "RaggedContract",
    "ReadContract",
    "Reopen",
    "Twin",
    "VarContract",
    "WriteContract",
    "assert_identical",
    "assert_same_info",
    "assert_same_store",
    "ragged_sample",
    "sample_array",
]
