"""Validation of data_id and var names: the one place that decides what a name may be.

A name is used as a directory or key by the disk backends, so it must never let a backend
write outside its root. Rules: a ``str``, non-empty, at most 255 bytes in UTF-8, no ``/``,
``\\`` or NUL, not starting with ``.`` (which also rules out ``.`` and ``..``; names starting
with a dot are reserved for storegate's own bookkeeping), encodable as UTF-8 (no lone
surrogates), and not the name of a file the disk formats keep beside the data (``zarr.json``,
or anything starting with ``_storegate``), which a var or data_id of that name would overwrite.

Examples
--------
>>> from storegate.names import check_name
>>> check_name("jets", "data_id")
'jets'
>>> check_name("a/b", "var")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
storegate.errors.InvalidNameError: var name 'a/b' contains '/'; ... Rename it, e.g. 'a_b'.
"""

from __future__ import annotations

from typing import Any

from .errors import InvalidNameError

__all__ = ["MAX_NAME_BYTES", "check_name"]

MAX_NAME_BYTES = 255
_FORBIDDEN = ("/", "\\", "\x00")
_RESERVED = frozenset({"zarr.json"})
_RESERVED_PREFIX = "_storegate"


def check_name(name: Any, kind: str = "var") -> str:
    """Return ``name`` if it is a valid data_id or var name, else raise ``InvalidNameError``.

    Parameters
    ----------
    name
        The candidate name.
    kind
        What the name is for (``"var"`` or ``"data_id"``), used in the message.

    Returns
    -------
    str
        The name, unchanged.

    Examples
    --------
    >>> check_name("pt")
    'pt'
    """
    if not isinstance(name, str):
        raise InvalidNameError(
            f"{kind} name must be a str, got {type(name).__name__} {name!r}; "
            f"pass the name as a string, e.g. {str(name)!r}."
        )
    if name == "":
        raise InvalidNameError(f"{kind} name is empty; give it a non-empty name.")
    for ch in _FORBIDDEN:
        if ch in name:
            shown = {"\x00": "NUL"}.get(ch, ch)
            fixed = name.replace(ch, "_")
            raise InvalidNameError(
                f"{kind} name {name!r} contains {shown!r}; names may not contain '/', '\\\\' or "
                f"NUL (they become paths in disk backends). Rename it, e.g. {fixed!r}."
            )
    if name.startswith("."):
        raise InvalidNameError(
            f"{kind} name {name!r} starts with '.'; such names (and '.', '..') are reserved. "
            f"Rename it, e.g. {name.lstrip('.') or 'x'!r}."
        )
    if name in _RESERVED or name.startswith(_RESERVED_PREFIX):
        raise InvalidNameError(
            f"{kind} name {name!r} is reserved: the disk backends keep a metadata file of that "
            f"name beside the data (zarr's 'zarr.json', the parquet backend's '_storegate*' "
            f"files). Rename it, e.g. {name.replace('.', '_').lstrip('_') + '_'!r}."
        )
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError as err:
        raise InvalidNameError(
            f"{kind} name {name[:40]!r} is not valid Unicode text ({err.reason}: a lone "
            "surrogate, e.g. from a file name decoded with errors='surrogateescape'); names "
            "are stored as UTF-8. Rename it."
        ) from None
    if size > MAX_NAME_BYTES:
        raise InvalidNameError(
            f"{kind} name {name[:40]!r}... is {size} bytes long; "
            f"the limit is {MAX_NAME_BYTES} bytes (a file name on most file systems)."
        )
    return name
