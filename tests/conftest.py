"""Shared fixtures: StoreGates parametrized over the built-in backends.

``make_sg`` builds a :class:`~storegate.StoreGate` on the backend of the current parameter
(``numpy`` or ``zarr``); zarr stores are real directories under ``tmp_path``. ``reopen`` closes a
gate and opens its store again (a no-op for the in-memory numpy backend, which has nothing to
reopen), so tests can check that data and metadata survive a restart.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sg_helpers import ZARR_MISSING_REASON, zarr_backend_available

from storegate import StoreGate

BACKENDS = ["numpy", "zarr"]


class GateFactory:
    """Builds StoreGates on one backend and remembers how, so they can be reopened."""

    def __init__(self, backend: str, tmp_path: Path) -> None:
        self.backend = backend
        self.tmp_path = tmp_path
        self._args: dict[int, tuple[StoreGate, dict[str, Any]]] = {}

    @property
    def persistent(self) -> bool:
        return self.backend != "numpy"

    def args_for(self, store: str = "store.zarr", **backend_args: Any) -> dict[str, Any]:
        if self.backend == "zarr":
            return {"output_dir": str(self.tmp_path / store), **backend_args}
        return dict(backend_args)

    def __call__(
        self, data_id: str | None = "d", store: str = "store.zarr", **backend_args: Any
    ) -> StoreGate:
        args = self.args_for(store, **backend_args)
        sg = StoreGate(backend=self.backend, backend_args=args, data_id=data_id)
        self._args[id(sg)] = (sg, args)
        return sg

    def reopen(self, sg: StoreGate, data_id: str | None = None, **backend_args: Any) -> StoreGate:
        """Close ``sg`` and open its store again (numpy: return ``sg`` itself)."""
        if not self.persistent:
            if data_id is not None:
                sg.set_data_id(data_id)
            return sg
        _, args = self._args[id(sg)]
        sg.close()
        new_args = {**args, **backend_args}
        new = StoreGate(
            backend=self.backend,
            backend_args=new_args,
            data_id=data_id if data_id is not None else sg.data_id,
        )
        self._args[id(new)] = (new, new_args)
        return new

    def close_all(self) -> None:
        for sg, _ in self._args.values():
            with contextlib.suppress(Exception):
                sg.close()


@pytest.fixture(params=BACKENDS)
def backend_name(request: pytest.FixtureRequest) -> str:
    """The backend name under test; zarr is skipped while its module does not exist."""
    if request.param == "zarr" and not zarr_backend_available():
        pytest.skip(ZARR_MISSING_REASON)
    return request.param


@pytest.fixture
def gates(backend_name: str, tmp_path: Path) -> Iterator[GateFactory]:
    factory = GateFactory(backend_name, tmp_path)
    yield factory
    factory.close_all()


@pytest.fixture
def make_sg(gates: GateFactory) -> Callable[..., StoreGate]:
    """``make_sg(data_id='d', store='store.zarr', **backend_args)`` -> a new StoreGate."""
    return gates


@pytest.fixture
def reopen(gates: GateFactory) -> Callable[..., StoreGate]:
    """``reopen(sg, **backend_args)`` -> the same store opened again (numpy: ``sg``)."""
    return gates.reopen


@pytest.fixture
def sg(make_sg: Callable[..., StoreGate]) -> StoreGate:
    """An empty StoreGate with data_id ``'d'``."""
    return make_sg()
