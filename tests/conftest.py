"""Shared fixtures: StoreGates parametrized over the built-in backends.

``make_sg`` builds a :class:`~storegate.StoreGate` on the backend of the current parameter
(``numpy`` or ``zarr``); zarr stores are real directories under ``tmp_path``. ``reopen`` closes a
gate and opens its store again (a no-op for the in-memory numpy backend, which has nothing to
reopen), so tests can check that data and metadata survive a restart.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sg_helpers import ZARR_MISSING_REASON, zarr_backend_available

from storegate import StoreGate

BACKENDS = ["numpy", "zarr"]

# Hypothesis profiles for the property tests (tests/hostile). "ci", the default, is
# deterministic (derandomize: the same examples on every run, no example database), so a
# failure reproduces by re-running the test; SG_HYPOTHESIS_PROFILE=thorough draws many more,
# random examples to hunt for new bugs locally (a failure prints the
# @reproduce_failure blob that replays it).
try:
    from hypothesis import HealthCheck
    from hypothesis import settings as _hyp_settings
except ImportError:  # hypothesis is only needed by tests/hostile (skipped without it)
    pass
else:
    _hyp_settings.register_profile(
        "ci",
        derandomize=True,
        database=None,
        deadline=None,
        max_examples=250,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                               HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )
    _hyp_settings.register_profile(
        "thorough",
        parent=_hyp_settings.get_profile("ci"),
        derandomize=False,
        max_examples=5000,
    )
    _hyp_settings.load_profile(os.environ.get("SG_HYPOTHESIS_PROFILE", "ci"))


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


@pytest.fixture(scope="session")
def local_s3() -> Iterator[Any]:
    """moto's S3-protocol server on 127.0.0.1 for the whole session (stopped at its end).

    Skipped without moto/s3fs locally; under CI (``CI`` set) a missing dependency fails, so the
    S3 tests cannot silently disappear."""
    try:
        import moto.server  # noqa: F401
        import s3fs  # noqa: F401
    except ImportError as err:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"the S3 tests need moto[server] and s3fs ({err})")
    from storegate.testing.s3 import LocalS3

    server = LocalS3().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_url(local_s3: Any) -> str:
    """A fresh, empty bucket on the local S3 server, as ``s3://<bucket>``."""
    return str(local_s3.bucket())
