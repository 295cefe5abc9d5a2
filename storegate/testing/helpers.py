"""Assertions and data makers used by the contract suite (usable in a backend's own tests).

Examples
--------
>>> import numpy as np
>>> from storegate.testing.helpers import assert_identical, sample_array
>>> a = sample_array("int16", (4, 2), seed=0)
>>> a.shape, a.dtype
((4, 2), dtype('int16'))
>>> assert_identical(a.copy(), a)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backends.base import Backend, VarInfo
from ..ragged import RaggedArray

__all__ = [
    "DTYPES",
    "assert_identical",
    "assert_same_info",
    "assert_same_store",
    "sample_array",
]

#: Every dtype each backend must round-trip exactly.
DTYPES: tuple[str, ...] = (
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
    "complex64",
)


def assert_identical(actual: Any, expected: Any, what: str = "result") -> None:
    """Assert ``actual`` is an ndarray equal to ``expected`` in shape, dtype and every bit.

    ``NaN`` payloads, ``-0.0`` and infinities must match too, so a backend that silently
    converts or rounds is caught.

    Parameters
    ----------
    actual
        What the backend returned; must be a ``numpy.ndarray`` (0-d for a scalar row).
    expected
        The reference value (converted with ``numpy.asarray``).
    what
        Description used in failure messages.

    Examples
    --------
    >>> assert_identical(np.array(1.0), np.float64(1.0))
    """
    if isinstance(expected, RaggedArray):
        assert isinstance(actual, RaggedArray), (
            f"{what}: expected a RaggedArray, got {type(actual).__name__} {actual!r}"
        )
        assert_identical(actual.offsets, expected.offsets, f"{what} (offsets)")
        assert_identical(actual.values, expected.values, f"{what} (values)")
        return
    exp = np.asarray(expected)
    assert isinstance(actual, np.ndarray), (
        f"{what}: expected a numpy.ndarray, got {type(actual).__name__} {actual!r}"
    )
    assert actual.dtype == exp.dtype, f"{what}: dtype {actual.dtype} != expected {exp.dtype}"
    assert actual.shape == exp.shape, f"{what}: shape {actual.shape} != expected {exp.shape}"
    if actual.tobytes() != exp.tobytes():
        np.testing.assert_array_equal(actual, exp, err_msg=what)
        raise AssertionError(f"{what}: values are equal but their bits differ (-0.0, NaN payload)")


def assert_same_info(actual: VarInfo, expected: VarInfo, what: str = "info") -> None:
    """Assert two :class:`~storegate.backends.VarInfo` agree on name, shape, dtype and ragged.

    Chunking, codec and ``extra`` are backend-specific and not compared.

    Examples
    --------
    >>> i = VarInfo("x", (3,), np.dtype("i8"))
    >>> assert_same_info(i, i)
    """
    assert isinstance(actual, VarInfo), f"{what}: expected a VarInfo, got {actual!r}"
    assert actual.name == expected.name, f"{what}: name {actual.name!r} != {expected.name!r}"
    assert tuple(actual.shape) == tuple(expected.shape), (
        f"{what}: shape {actual.shape} != expected {expected.shape}"
    )
    assert all(type(n) is int for n in actual.shape), (
        f"{what}: shape {actual.shape!r} must hold Python ints"
    )
    assert np.dtype(actual.dtype) == np.dtype(expected.dtype), (
        f"{what}: dtype {actual.dtype} != expected {expected.dtype}"
    )
    assert actual.ragged == expected.ragged, f"{what}: ragged {actual.ragged} != {expected.ragged}"
    assert actual.length == expected.length


def assert_same_store(backend: Backend, oracle: Backend, data_ids: list[str] | None = None) -> None:
    """Assert ``backend`` holds the same data_ids, vars (in order), data and attrs as ``oracle``.

    Parameters
    ----------
    backend
        The backend under test.
    oracle
        The reference (usually a :class:`~storegate.backends.numpy_backend.NumpyBackend`).
    data_ids
        Restrict the comparison to these data_ids (default: all of the oracle's, and the set
        of data_ids must be equal).

    Examples
    --------
    >>> from storegate.backends.numpy_backend import NumpyBackend
    >>> assert_same_store(NumpyBackend(), NumpyBackend())
    """
    from ..phases import PHASES

    if data_ids is None:
        assert sorted(backend.data_ids()) == sorted(oracle.data_ids()), (
            f"data_ids {backend.data_ids()} != expected {oracle.data_ids()}"
        )
        data_ids = oracle.data_ids()
    for did in data_ids:
        assert backend.get_attrs(did) == oracle.get_attrs(did), f"attrs of {did!r} differ"
        for phase in PHASES:
            names = backend.var_names(did, phase)
            assert names == oracle.var_names(did, phase), (
                f"var order of {did!r}/{phase}: {names} != expected "
                f"{oracle.var_names(did, phase)}"
            )
            for var in names:
                where = f"{did}/{phase}/{var}"
                exp_info = oracle.info(did, phase, var)
                assert_same_info(backend.info(did, phase, var), exp_info, f"info of {where}")
                full = slice(0, exp_info.length, 1)
                assert_identical(
                    backend.read(did, phase, var, full),
                    oracle.read(did, phase, var, full),
                    f"data of {where}",
                )


def sample_array(dtype: Any, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Random data of ``dtype`` and ``shape`` that include the dtype's awkward values.

    Integers include the minimum and maximum of the dtype; floats include ``nan``, ``inf``,
    ``-inf``, ``-0.0``, the largest finite value and the smallest normal; complex numbers mix
    those into both parts.

    Examples
    --------
    >>> sample_array("uint8", (3,), seed=1).dtype
    dtype('uint8')
    """
    dt = np.dtype(dtype)
    rng = np.random.default_rng(seed)
    specials: list[Any]
    if dt.kind == "b":
        out = rng.random(shape) < 0.5
        specials = [True, False]
    elif dt.kind in "iu":
        info = np.iinfo(dt)
        out = rng.integers(info.min, info.max, size=shape, dtype=dt, endpoint=True)
        specials = [info.min, info.max, 0]
    elif dt.kind == "f":
        finfo = np.finfo(dt)
        out = (rng.standard_normal(shape) * 100).astype(dt)
        specials = [np.nan, np.inf, -np.inf, -0.0, finfo.max, finfo.tiny]
    elif dt.kind == "c":
        part = np.dtype(f"f{dt.itemsize // 2}")
        finfo = np.finfo(part)
        out = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dt)
        specials = [complex(np.nan, 1.0), complex(-0.0, np.inf), complex(finfo.max, -0.0)]
    else:
        raise ValueError(f"sample_array does not make data of dtype {dt}")
    flat = out.reshape(-1)
    for i, value in enumerate(specials[: flat.size]):
        flat[i] = value
    return out
