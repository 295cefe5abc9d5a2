"""Hostile data_id and var names on the persistent backends.

Property: a name is refused with ``InvalidNameError`` exactly when the documented rule
(``storegate.names``: a non-empty ``str`` of at most 255 UTF-8 bytes, no ``/``, ``\\`` or NUL,
not starting with ``.``) says so. Every accepted name round-trips exactly: written, closed,
reopened read-only, the same data_id, the same var names in insertion order (code point for
code point: NFC and NFD spellings stay distinct) and the same data. Nothing is ever created
outside the store, whatever the name.
"""

from __future__ import annotations

import shutil
import tempfile
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("hypothesis")

from hostile_helpers import (
    PERSISTENT_BACKENDS,
    assert_same_result,
    close_quietly,
    entries_outside_store,
    event,
    fail_plainly_on_raw_errors,
    note,
    open_gate,
    require_backend,
    store_path,
)
from hypothesis import example, given
from hypothesis import strategies as st

from storegate import StoreGate
from storegate.errors import InvalidArgumentError, InvalidNameError
from storegate.names import check_name

NFC = unicodedata.normalize("NFC", "café")
NFD = unicodedata.normalize("NFD", "café")
assert NFC != NFD

#: Names of a backend's own files: reserved by storegate.names (tested on every backend below).
BACKEND_COLLISIONS = {"zarr.json", "_storegate_parquet.json", "_storegate_attrs.json"}

HOSTILE_NAMES = [
    "..", ".", "../x", "../../etc/passwd", "/abs", "/", "a/b", "a\\b", "..\\x", "\\", "\x00",
    "a\x00b", ".hidden", ".sg-tmp-x", ".sg-lock", "~", "~root", "$HOME", "%2e%2e", "..%2f..",
    "a\nb", "\t", "\r", "\x7f", "\x1b[31mred", " ", "  lead", "trail ", "trail.", "...x",
    NFC, NFD, "\u202eevil.txt", "\u200b", "\ufeffbom", "🦄", "🦄" * 63, "🦄" * 64, "x" * 255,
    "x" * 256, "é" * 127, "é" * 128, "\ud800", "a\udfffb", "CON", "NUL", "aux.txt", "*", "?",
    ":", "|", "<>", '"', "'", "train", "all", "valid", "c", "0", "-1", "__init__", "zarr",
    "data.parquet", "part-0.parquet", "store.h5", "x" * 400,
    "\u2215etc\u2215passwd",  # DIVISION SLASH, not a path separator
    "\uff0e\uff0e",  # FULLWIDTH FULL STOPs
]
NON_STR = [5, None, b"bytes", 1.5, np.int64(3), object(), bytearray(b"x"), {"a"}]
# a tuple or list is a valid var_names *form* (several names), so only a data_id can be one
NON_STR_IDS = [("a",), ["a"]]


def documented_valid(name: Any) -> bool:
    """The rule of storegate.names, restated."""
    if not isinstance(name, str) or not name or name.startswith("."):
        return False
    if name == "zarr.json" or name.startswith("_storegate"):  # the formats' own files
        return False
    if any(ch in name for ch in ("/", "\\", "\x00")):
        return False
    try:
        return len(name.encode("utf-8")) <= 255
    except UnicodeEncodeError:
        return False


def random_names() -> st.SearchStrategy[Any]:
    any_chars = st.characters(codec=None, categories=None)  # surrogates and controls too
    return st.one_of(
        st.sampled_from(HOSTILE_NAMES),
        st.text(any_chars, max_size=12),
        st.text(st.characters(codec="utf-8"), min_size=1, max_size=12),
        st.builds(lambda c, k: c * k, st.sampled_from(["x", "é", "€", "🦄"]),
                  st.integers(60, 260)),
        st.builds(lambda a, b: a + b, st.sampled_from(["..", ".", "/", "\\", "a/"]),
                  st.text(max_size=4)),
        st.sampled_from(NON_STR),
        st.builds(np.str_, st.sampled_from(["np", "é", "a b"])),
    ).filter(lambda n: n not in BACKEND_COLLISIONS if isinstance(n, str) else True)


def test_check_name_agrees_with_the_rule_on_the_hostile_list() -> None:
    for name in HOSTILE_NAMES + NON_STR + NON_STR_IDS:
        if documented_valid(name):
            assert check_name(name) == name
        else:
            with pytest.raises(InvalidNameError) as info:
                check_name(name, "var")
            assert "var name" in str(info.value)


@pytest.mark.parametrize("name", ["\ud800", "ok\udc80", "x" * 200 + "\udfff"], ids=ascii)
def test_regression_lone_surrogates_are_invalid_names(name: str) -> None:
    """These used to escape check_name as a raw UnicodeEncodeError."""
    with pytest.raises(InvalidNameError, match="not valid Unicode"):
        check_name(name, "var")


@given(name=random_names())
@example(name="\ud800")  # regression: a lone surrogate raised UnicodeEncodeError
@example(name="a" * 254 + "\udfff")
def test_check_name_follows_rule(name: Any) -> None:
    if documented_valid(name):
        event("valid")
        assert check_name(name, "data_id") == name
    else:
        event("invalid")
        with pytest.raises(InvalidNameError):
            check_name(name, "data_id")


# ---------------------------------------------------------------------------- on the backends
@pytest.fixture(scope="module", params=PERSISTENT_BACKENDS)
def persistent_backend(request: pytest.FixtureRequest) -> str:
    require_backend(request.param)
    return str(request.param)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory,
            persistent_backend: str) -> Iterator[Path]:
    yield tmp_path_factory.mktemp(f"names-{persistent_backend}")


def _outside(backend: str, root: Path) -> list[str]:
    # the hdf5 plugin keeps its writer lock beside the file (store.h5.sg-lock)
    lock = store_path(backend, root).name + ".sg-lock"
    return [e for e in entries_outside_store(backend, root) if e != lock]


def roundtrip(backend: str, root: Path, data_id: Any, var_names: list[Any]) -> None:
    """Write every name it may, refuse the rest, reopen read-only and compare."""
    note(f"backend={backend} data_id={data_id!r} vars={var_names!r}")
    used_id = data_id if documented_valid(data_id) else "fallback"
    if not documented_valid(data_id) and data_id is not None:  # None: no data_id selected
        event("invalid data_id")
        with pytest.raises(InvalidNameError):
            open_gate(backend, root, data_id=data_id)
    sg: StoreGate | None = None
    try:
        sg = open_gate(backend, root)
        if not documented_valid(data_id):
            with pytest.raises(InvalidNameError):
                sg.set_data_id(data_id)
            assert sg.data_id is None
        sg.set_data_id(used_id)
        written: dict[str, np.ndarray] = {}
        for i, var in enumerate(var_names):
            x = np.arange(3, dtype="i4") + 10 * i
            if not documented_valid(var):
                event("invalid var")
                # a non-str var_names argument is a wrong type (InvalidArgumentError, also a
                # ValueError); a non-str inside a tuple of names is a bad name
                errors = (InvalidNameError, InvalidArgumentError)
                with pytest.raises(errors):
                    sg.add_data(var, x, "train")
                with pytest.raises(InvalidNameError):
                    sg.add_data(("ok", var), np.stack([x, x], axis=1), "train")
                continue
            if var in written:
                continue
            event("valid var")
            sg.add_data(var, x, "train")
            written[str(var)] = x
        sg.compile()
        sg.close()
        assert not _outside(backend, root), f"created outside the store: {_outside(backend, root)}"

        sg = open_gate(backend, root, mode="r")
        assert sg.get_data_ids() == [used_id]
        sg.set_data_id(used_id)
        names = sg.get_var_names("train")
        assert names == list(written), f"{names!r} != {list(written)!r}"
        assert all(type(n) is str for n in names)
        for var, x in written.items():
            assert_same_result(sg.get_data(var, "train"), x, repr(var))
        sg.close()
        assert not _outside(backend, root), f"created outside the store: {_outside(backend, root)}"
    finally:
        close_quietly(sg)


@given(data_id=random_names() | st.sampled_from(NON_STR_IDS),
       var_names=st.lists(random_names(), min_size=1, max_size=4))
@example(data_id=NFC, var_names=[NFC, NFD])  # two distinct names, on every file system here
@example(data_id="..", var_names=["../x", "/abs", "a\\b", ".."])
@example(data_id="\ud800", var_names=["ok\udc80"])  # regression: UnicodeEncodeError
@example(data_id="🦄" * 63, var_names=["é" * 127, "x" * 255])  # at the byte limit
def test_names_roundtrip_or_refused(persistent_backend: str, scratch: Path, data_id: Any,
                                    var_names: list[Any]) -> None:
    root = Path(tempfile.mkdtemp(dir=scratch))
    try:
        roundtrip(persistent_backend, root, data_id, var_names)
    finally:
        shutil.rmtree(root, ignore_errors=True)


# ---------------------------------------------------------------------------- reserved names
_COLLISION_XFAILS: dict[tuple[str, str, str], str] = {}  # reserved names: refused


def _collision_params() -> list[Any]:
    out = []
    for backend in PERSISTENT_BACKENDS:
        for kind in ("var", "data_id"):
            for name in sorted(BACKEND_COLLISIONS):
                reason = _COLLISION_XFAILS.get((backend, kind, name))
                marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
                out.append(pytest.param(backend, kind, name, marks=marks,
                                        id=f"{backend}-{kind}-{name}"))
    return out


@pytest.mark.parametrize(("backend", "kind", "name"), _collision_params())
def test_names_of_backend_files(tmp_path: Path, backend: str, kind: str, name: str) -> None:
    """Names of a backend's own metadata files are reserved: refused on every backend."""
    require_backend(backend)
    if kind == "var":
        fail_plainly_on_raw_errors(roundtrip, backend, tmp_path, "d", [name, "w"])
    else:
        fail_plainly_on_raw_errors(roundtrip, backend, tmp_path, name, ["v", "w"])
