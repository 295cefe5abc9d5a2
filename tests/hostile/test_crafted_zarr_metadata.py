"""Case 1: zarr metadata that lies (``zarr.json`` / multiml's ``.zarray``).

A store is written by storegate, then one array's metadata is rewritten to claim absurd or
contradictory things. Opening the store, ``len()``, ``compile()``, reading a few rows, a gather,
reading everything, ``check_store`` and ``storegate check`` run in a child interpreter limited
to 2 GiB of address space. Each must succeed with correct data or raise a ``StoregateError``
naming the var; none may allocate what the metadata claims (peak RSS stays small), crash, or
return rows that are not on disk (a missing chunk of a var whose every chunk storegate wrote is
damage, not zeros).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_crafted_support import MAX_RSS_MB, assert_clean, assert_error, run_child

from storegate import StoreGate

zarr = pytest.importorskip("zarr")

ROWS = 10
DATA = np.arange(2 * ROWS, dtype="f8").reshape(ROWS, 2)
OPS = ["open", "vars", "len", "compile", "info", "row:0", "rows:0,3", "gather:1,5",
       "row:9", "all", "check", "cli"]


def build(path: Path, compressor: str = "default") -> Path:
    """A zarr store with one var ``x`` (10 rows of 2 floats, chunks of 4 rows) in
    ``d/train``, written by storegate."""
    sg = StoreGate("zarr", {"output_dir": str(path), "chunk": 4, "compressor": compressor},
                   data_id="d")
    sg.add_data("x", DATA, phase="train")
    sg.compile()
    sg.close()
    return path / "d" / "train" / "x"


def rewrite(meta: Path, change: Any) -> None:
    if isinstance(change, str):  # the whole file
        meta.write_text(change)
        return
    doc = json.loads(meta.read_text())
    key, value = change
    if key == "chunks":
        doc["chunk_grid"]["configuration"]["chunk_shape"] = value
    else:
        doc[key] = value
    meta.write_text(json.dumps(doc))


def check_results(res: dict[str, Any], var: str = "x") -> None:
    """Every operation: a clean success with the right data, or an error naming the var."""
    for op, r in res.items():
        names = () if op in ("open", "vars", "cli") else (var,)
        assert_clean(r, *names)
        if not r["ok"]:
            continue
        if op == "row:0":
            assert r["value"] == DATA[0].tolist(), r
        elif op == "rows:0,3":
            assert r["value"] == DATA[:3].tolist(), r
        elif op == "gather:1,5":
            assert r["value"] == DATA[[1, 5]].tolist(), r
        elif op == "row:9":
            assert r["value"] == DATA[9].tolist(), r
    # the damage is found and named
    check = res["check"]
    assert check["ok"] and check["value"], f"check_store found nothing: {check}"
    assert all(p.startswith("d/train") for p in check["value"]), check["value"]
    assert any(p.startswith(f"d/train/{var}: ") for p in check["value"]), check["value"]
    rc, text = res["cli"]["value"]
    assert rc == 1 and f"d/train/{var}" in text, text


LIES = {
    # shape claims far more rows than any store holds
    "rows_1e18": ("shape", [10**18, 2]),
    # plausible-looking but still lying: 10**14 rows, 3 chunk files on disk
    "rows_1e14": ("shape", [10**14, 2]),
    # 1.6 GB claimed: its decoded arena cannot be allocated under the child's 2 GiB limit
    "rows_1e8": ("shape", [10**8, 2]),
    # more rows than the chunk files hold
    "rows_beyond_chunks": ("shape", [20, 2]),
    "chunk_1e12_rows": ("chunks", [10**12, 2]),
    "chunk_zero": ("chunks", [0, 2]),
    "chunk_wrong_ndim": ("chunks", [4]),
    "chunk_not_int": ("chunks", [4.5, 2]),
    "shape_negative": ("shape", [-5, 2]),
    "shape_float": ("shape", [10.5, 2]),
    "shape_string": ("shape", "10"),
    "shape_0d": ("shape", []),
    "dtype_string": ("data_type", "string"),
    "dtype_unknown": ("data_type", "float1024"),
    "dtype_raw_bits": ("data_type", "r16"),
    "codec_unknown": ("codecs", [{"name": "no-such-codec"}]),
    "codecs_empty": ("codecs", []),
    "node_is_group": ("node_type", "group"),
    "metadata_not_json": "{\"shape\": [10, 2",
    "metadata_empty": "",
}


def test_lying_zarr_json_is_a_clean_error(tmp_path: Path) -> None:
    """All lies of :data:`LIES`, uncompressed chunks (storegate's default), one child."""
    jobs = []
    for name, change in LIES.items():
        var_dir = build(tmp_path / name)
        rewrite(var_dir / "zarr.json", change)
        jobs.append({"backend": "zarr", "path": str(tmp_path / name), "var": "x", "ops": OPS})
    out = run_child(jobs)
    for name, res in zip(LIES, out["jobs"], strict=True):
        try:
            check_results(res)
        except AssertionError as err:
            raise AssertionError(f"lie {name!r}: {err}") from None
    assert out["maxrss_mb"] < MAX_RSS_MB


def test_absurd_claims_fail_fast_with_corrupt_store_error(tmp_path: Path) -> None:
    """The absurd claims are refused when the var is opened, as CorruptStoreError naming the
    var and the claim; rows that are claimed but have no chunk file are damage, not zeros."""
    names = ["rows_1e18", "chunk_zero", "rows_1e14", "rows_beyond_chunks"]
    jobs = []
    for name in names:
        var_dir = build(tmp_path / name)
        rewrite(var_dir / "zarr.json", LIES[name])
        ops = ["compile", "len", "row:0", "row:15", "gather:2,15", "check"]
        jobs.append({"backend": "zarr", "path": str(tmp_path / name), "var": "x", "ops": ops})
    out = run_child(jobs)
    huge, zero, plausible, beyond = out["jobs"]
    for r in (huge["compile"], huge["row:0"]):
        assert_error(r, "'x'", "10000000000000000", kinds=("CorruptStoreError",))
    assert_error(zero["row:0"], "'x'", "chunk shape (0, 2)", kinds=("CorruptStoreError",))
    for res in (plausible, beyond):
        assert res["row:0"]["value"] == DATA[0].tolist()
        for op in ("row:15", "gather:2,15"):
            assert_error(res[op], "d/train/x", "missing", kinds=("CorruptStoreError",))
        assert "missing" in res["check"]["value"][0]
    assert plausible["len"]["value"] == 10**14  # what the metadata says; reads are checked
    assert "24999999999997 chunks" in plausible["check"]["value"][0]


@pytest.mark.parametrize("compressor", ["lz4", "zstd"])
def test_lying_metadata_of_compressed_vars(tmp_path: Path, compressor: str) -> None:
    lies = {
        "chunk_1e8_rows": ("chunks", [10**8, 2]),
        "chunk_zero": ("chunks", [0, 2]),
        "rows_1e14": ("shape", [10**14, 2]),
        "rows_beyond_chunks": ("shape", [20, 2]),
        "codec_unknown": ("codecs", [{"name": "bytes", "configuration": {"endian": "little"}},
                                     {"name": "no-such-codec"}]),
    }
    jobs = []
    for name, change in lies.items():
        var_dir = build(tmp_path / name, compressor)
        rewrite(var_dir / "zarr.json", change)
        jobs.append({"backend": "zarr", "path": str(tmp_path / name), "var": "x",
                     "ops": [*OPS, "row:15", "gather:3,15"]})
    out = run_child(jobs)
    for name, res in zip(lies, out["jobs"], strict=True):
        try:
            check_results(res)
            if name in ("rows_1e14", "rows_beyond_chunks"):
                for op in ("row:15", "gather:3,15"):
                    assert_error(res[op], "d/train/x", "missing")
        except AssertionError as err:
            raise AssertionError(f"{compressor} lie {name!r}: {err}") from None
    assert out["maxrss_mb"] < MAX_RSS_MB


# ------------------------------------------------------------------ multiml (zarr format 2)
def build_v2(path: Path, compressor: Any) -> Path:
    """A multiml-style store: zarr format 2 groups data_id/phase, one array per var, no
    storegate attributes."""
    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    for phase in ("train", "valid", "test"):
        g = root.require_group("mm").require_group(phase)
        a = g.create_array("x", shape=(ROWS, 2), chunks=(4, 2), dtype="f8",
                           compressors=compressor)
        a[:] = DATA
    return path / "mm" / "train" / "x"


V2_LIES = {
    "rows_1e18": ("shape", [10**18, 2]),
    "chunk_zero": ("chunks", [0, 2]),
    "chunk_wrong_ndim": ("chunks", [4]),
    "shape_negative": ("shape", [-1, 2]),
    "dtype_object": ("dtype", "|O"),
    "dtype_unicode": ("dtype", "<U4"),
    "dtype_structured": ("dtype", [["a", "<f8"], ["b", "<f8"]]),
    "compressor_unknown": ("compressor", {"id": "no-such-codec"}),
    "filters_unknown": ("filters", [{"id": "no-such-filter"}]),
    "zarray_not_json": "[1, 2",
}


@pytest.mark.parametrize("compressed", [False, True], ids=["raw", "blosc"])
def test_lying_multiml_zarray_is_a_clean_error(tmp_path: Path, compressed: bool) -> None:
    numcodecs = pytest.importorskip("numcodecs")
    compressor = numcodecs.Blosc("lz4", 5, 1) if compressed else None
    jobs = []
    for name, change in V2_LIES.items():
        meta = build_v2(tmp_path / name, compressor) / ".zarray"
        if isinstance(change, str):
            meta.write_text(change)
        else:
            doc = json.loads(meta.read_text())
            doc[change[0]] = change[1]
            meta.write_text(json.dumps(doc))
        jobs.append({"backend": "zarr", "path": str(tmp_path / name), "data_id": "mm",
                     "var": "x", "ops": ["open", "len", "row:0", "rows:0,3", "gather:1,5",
                                         "all", "check", "cli"]})
    out = run_child(jobs)
    for name, res in zip(V2_LIES, out["jobs"], strict=True):
        for op, r in res.items():
            try:
                assert_clean(r, *(() if op in ("open", "cli") else ("x",)))
                if op == "row:0" and r["ok"]:
                    assert r["value"] == DATA[0].tolist()
            except AssertionError as err:
                raise AssertionError(f"{name} {op}: {err}") from None
        problems = res["check"]["value"]
        assert res["check"]["ok"] and any(p.startswith("mm/train/x") for p in problems), (
            name, problems)
        assert res["cli"]["value"][0] == 1, (name, res["cli"])
    assert out["maxrss_mb"] < MAX_RSS_MB
