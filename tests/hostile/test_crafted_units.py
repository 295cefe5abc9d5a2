"""Focused tests of the read-side validation the other ``test_crafted_*`` files rely on."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from storegate.backends.chunkio import RawChunkFiles, descriptors
from storegate.errors import CorruptStoreError


def _chunks(tmp_path: Path, missing_ok: bool) -> RawChunkFiles:
    data = np.arange(24, dtype="f4").reshape(12, 2)
    for c in range(3):
        data[c * 4:(c + 1) * 4].tofile(tmp_path / str(c))
    descriptors.forget(str(tmp_path))
    os.remove(tmp_path / "1")
    return RawChunkFiles(lambda c: str(tmp_path / str(c)), rows=12, chunk_rows=4,
                         row_shape=(2,), dtype=np.dtype("f4"), name="var 'x'",
                         directory=str(tmp_path), missing_ok=missing_ok)


def test_missing_chunk_of_a_dense_var_is_an_error(tmp_path: Path) -> None:
    files = _chunks(tmp_path, missing_ok=False)
    out = np.empty((1, 2), "f4")
    files.read_rows(np.array([9]), out)  # other chunks read
    np.testing.assert_array_equal(out[0], [18, 19])
    with pytest.raises(CorruptStoreError, match=r"chunk file .*1.* of var 'x' is missing"):
        files.read_rows(np.array([5]), out)
    with pytest.raises(CorruptStoreError, match="missing"):
        files.read_range(0, 12, np.empty((12, 2), "f4"))


def test_missing_chunk_of_a_sparse_var_reads_as_zeros(tmp_path: Path) -> None:
    files = _chunks(tmp_path, missing_ok=True)
    out = np.empty((1, 2), "f4")
    files.read_rows(np.array([5]), out)
    np.testing.assert_array_equal(out[0], 0)


def test_chunk_file_that_is_a_directory_or_device_is_refused(tmp_path: Path) -> None:
    files = _chunks(tmp_path, missing_ok=True)
    os.mkdir(tmp_path / "1")
    with pytest.raises(CorruptStoreError, match="not a regular file"):
        files.read_rows(np.array([5]), np.empty((1, 2), "f4"))
    os.rmdir(tmp_path / "1")
    os.symlink("/dev/zero", tmp_path / "1")
    descriptors.forget(str(tmp_path))
    with pytest.raises(CorruptStoreError, match="not a regular file"):
        files.read_range(4, 8, np.empty((4, 2), "f4"))


# ---------------------------------------------------------------- parquet manifest parsing
def _manifest(**changes: Any) -> str:
    doc: dict[str, Any] = {
        "format": "storegate-parquet", "version": 1, "next_file": 1, "var_order": ["x"],
        "vars": {"x": {"dtype": "<f8", "shape": [2], "ragged": False, "files": ["p.parquet"]}},
        "files": {"p.parquet": {"rows": 10, "row_groups": [10], "columns": {"x": "x"},
                                "values": {}}},
    }
    for path, value in changes.items():
        node = doc
        keys = path.split("__")
        for k in keys[:-1]:
            node = node["p.parquet" if k == "p" else k]
        node[keys[-1]] = value
    return json.dumps(doc)


def test_manifest_parsing_accepts_a_sound_manifest() -> None:
    pytest.importorskip("pyarrow")
    from storegate.backends.parquet_backend import _Manifest

    man = _Manifest.from_json(_manifest(), "m.json")
    assert man.order == ["x"] and man.files["p.parquet"].rows == 10


@pytest.mark.parametrize("text", [
    _manifest(files__p__rows=10.5),
    _manifest(next_file=True),
    _manifest(version="1"),
    _manifest(vars__x__shape=[-1]),
    _manifest(vars__x__shape=[10**7, 10**7]),
    _manifest(vars__x__ragged="false"),
    _manifest().replace('"rows": 10,', '"rows": 1e400,'),
    _manifest().replace('"next_file": 1', '"next_file": ' + "9" * 5000),
    "[" * 50_000 + "]" * 50_000,
], ids=["float_rows", "bool_count", "string_version", "negative_dim", "huge_row",
        "string_flag", "infinite_rows", "5000_digits", "deep_nesting"])
def test_manifest_parsing_refuses_lies(text: str) -> None:
    pytest.importorskip("pyarrow")
    from storegate.backends.parquet_backend import _Manifest

    with pytest.raises(CorruptStoreError, match=r"m\.json"):
        _Manifest.from_json(text, "m.json")


def test_manifest_file_names_with_nul_are_refused() -> None:
    pytest.importorskip("pyarrow")
    from storegate.backends.parquet_backend import _Manifest

    text = _manifest().replace("p.parquet", "p\\u0000.parquet")
    with pytest.raises(CorruptStoreError, match="bad file name"):
        _Manifest.from_json(text, "m.json")


# ---------------------------------------------------------------- storegate check
def test_check_stops_reading_a_var_whose_every_read_fails() -> None:
    """A var claiming 10**12 rows whose storage check finds nothing (a backend or file system
    that cannot list its chunks) and whose every read fails: the check gives up on the var
    after a bounded number of failed reads instead of trying every chunk for days."""
    from storegate.backends.base import VarInfo
    from storegate.backends.numpy_backend import NumpyBackend
    from storegate.checks import check_store

    calls = {"reads": 0}

    class Liar(NumpyBackend):
        def info(self, data_id: str, phase: str, var: str) -> VarInfo:
            real = super().info(data_id, phase, var)
            return VarInfo(var, (10**12, *real.row_shape), real.dtype,
                           chunks=(4, *real.row_shape))

        def read(self, data_id: str, phase: str, var: str, index: Any) -> Any:
            calls["reads"] += 1
            raise CorruptStoreError(f"chunk of var {var!r} at {index} is missing")

    be = Liar()
    be.create_data_id("d")
    be.append("d", "train", "x", np.arange(10.0))
    report = check_store(be)
    assert calls["reads"] <= 1100
    messages = [p.message for p in report.problems if p.var == "x"]
    assert messages[-1].startswith("reading stopped after 1000 failed reads: rows ")
    assert messages[-1].endswith("..999999999999 were not checked")
    assert any("further ranges" in m for m in messages)
