"""Checks and conversions of user data before it reaches a backend.

Every backend and the facade share these, so a dtype or shape problem reads the same whatever
the storage.

Examples
--------
>>> import numpy as np
>>> from storegate.arrays import cast_for_write
>>> cast_for_write(np.array([1, 2]), np.dtype("f4"), "x").dtype
dtype('float32')
>>> cast_for_write(np.array([1.5]), np.dtype("i8"), "label")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
storegate.errors.DtypeError: cannot write float64 data into var 'label' of dtype int64 ...
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import DtypeError, ShapeMismatchError

__all__ = [
    "as_array",
    "cast_for_write",
    "check_row_shape",
    "check_storable_dtype",
    "native",
    "native_dtype",
]


def check_storable_dtype(dtype: Any, what: str = "data") -> np.dtype:
    """Return ``dtype`` as a numpy dtype if storegate can store it, else raise ``DtypeError``.

    Object, structured and void dtypes are refused: they need pickle or have no portable layout.
    Strings (``U``/``S``) are refused too, as not every backend can store them.

    Examples
    --------
    >>> check_storable_dtype("f4")
    dtype('float32')
    """
    try:
        dt = np.dtype(dtype)
    except TypeError as err:
        raise DtypeError(f"{dtype!r} is not a numpy dtype ({err}).") from None
    if dt.kind not in "biufc" or dt.fields is not None or dt.subdtype is not None:
        raise DtypeError(
            f"{what} has dtype {dt} ({dt.kind!r}), which storegate does not store: object "
            "arrays would need pickle and strings/records have no portable layout. Use a "
            "numeric or bool dtype (e.g. encode strings as integer ids)."
        )
    return dt


def as_array(data: Any, what: str = "data") -> np.ndarray:
    """Turn user data (ndarray, list, tensor) into an ndarray with a sample axis.

    Examples
    --------
    >>> as_array([[1, 2], [3, 4]]).shape
    (2, 2)
    """
    from .indexing import is_torch_tensor

    if is_torch_tensor(data):
        data = data.detach().cpu().numpy()
    if isinstance(data, np.ndarray):
        arr = data
    else:
        try:
            arr = np.asarray(data)
        except ValueError as err:
            raise ShapeMismatchError(
                f"{what} cannot be made into an array ({err}); rows of a var must all have the "
                "same shape."
            ) from None
    if arr.ndim == 0:
        raise ShapeMismatchError(
            f"{what} is a scalar ({arr!r}); data need a leading sample axis, e.g. [value]."
        )
    check_storable_dtype(arr.dtype, what)
    return native(arr)


def native_dtype(dtype: np.dtype) -> np.dtype:
    """``dtype`` in the machine's byte order (the dtype every var is stored with).

    Examples
    --------
    >>> native_dtype(np.dtype(">f8")) == np.dtype("f8")
    True
    """
    return dtype if dtype.isnative else dtype.newbyteorder("=")


def native(arr: np.ndarray) -> np.ndarray:
    """``arr`` in the machine's byte order (a converted copy only if it is not already).

    Every var is stored in native byte order, on every backend, so a var's dtype is the same
    before and after a store is reopened; the values are unchanged.

    Examples
    --------
    >>> native(np.arange(3, dtype=">i4")).dtype
    dtype('int32')
    """
    if arr.dtype.byteorder in ("=", "|") or arr.dtype.isnative:
        return arr
    return arr.astype(arr.dtype.newbyteorder("="))


def check_row_shape(data: np.ndarray, row_shape: tuple[int, ...], var: str) -> None:
    """Raise ``ShapeMismatchError`` unless ``data`` has rows of ``row_shape``.

    Examples
    --------
    >>> check_row_shape(np.zeros((4, 3)), (3,), "x")
    """
    if tuple(data.shape[1:]) != tuple(row_shape):
        raise ShapeMismatchError(
            f"var {var!r} has rows of shape {tuple(row_shape)}, but the data have rows of shape "
            f"{tuple(data.shape[1:])} (data shape {tuple(data.shape)}); reshape the data to "
            f"{_shape_text(row_shape)}."
        )


def _shape_text(row_shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(["N", *map(str, row_shape)]) + ("," if not row_shape else "") + ")"


def cast_for_write(data: np.ndarray, dtype: np.dtype, var: str) -> np.ndarray:
    """Cast ``data`` to a var's ``dtype`` if no value can be lost by kind.

    Same-kind casts are allowed (float64 into float32, int into float, bool into int); casts
    that change kind the wrong way (float into int, complex into float, int into bool) raise.
    Integer narrowing is allowed only when every value fits, and a cast into a float or complex
    var only when no finite value (real or imaginary part) would overflow to infinity, e.g.
    ints above 65504 into float16 (precision is rounded, as numpy does).

    Examples
    --------
    >>> cast_for_write(np.array([300]), np.dtype("i2"), "x")
    array([300], dtype=int16)
    """
    if data.dtype == dtype:
        return data
    ok = np.can_cast(data.dtype, dtype, casting="same_kind")
    if ok and data.dtype.kind in "iu" and dtype.kind in "iu" and data.size:
        info = np.iinfo(dtype)
        lo, hi = data.min(), data.max()
        ok = bool(lo >= info.min and hi <= info.max)
        if not ok:
            raise DtypeError(
                f"values of {var!r} range over [{lo}, {hi}], which does not fit the var's dtype "
                f"{dtype}; convert the var first (sg.astype({var!r}, '{data.dtype}'))."
            )
    if ok and dtype.kind in "fc" and data.size:
        # any numeric source (float16 <- int too): refuse finite values that become inf
        with np.errstate(over="ignore", invalid="ignore"):
            out = data.astype(dtype)
        pairs = [(data.real, out.real), (data.imag, out.imag)] if dtype.kind == "c" else [
            (data, out)]
        lost = np.zeros(data.shape, dtype=bool)
        for src, dst in pairs:
            lost |= np.isinf(dst) & np.isfinite(src)
        if lost.any():
            bad = data[lost]
            peak = max(float(np.abs(bad.real).max()), float(np.abs(bad.imag).max())) if (
                bad.dtype.kind == "c") else float(np.abs(bad.astype(np.float64)).max())
            raise DtypeError(
                f"values of {var!r} reach {peak:.3g}, beyond the largest {dtype} "
                f"({float(np.finfo(dtype).max):.3g}); they would become inf. Convert the var "
                f"first (sg.astype({var!r}, '{data.dtype}'))."
            )
        return out
    if not ok:
        raise DtypeError(
            f"cannot write {data.dtype} data into var {var!r} of dtype {dtype} without losing "
            f"values; convert the var first (sg.astype({var!r}, '{data.dtype}')) or cast the "
            f"data yourself (data.astype('{dtype}'))."
        )
    return data.astype(dtype)
