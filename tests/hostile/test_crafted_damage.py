"""Case 3: truncated and bit-flipped data files.

zarr chunk files (uncompressed, storegate's default, and blosc-lz4 / zstd) and Parquet data
files and manifests are damaged with plain byte operations; every read, ``check_store`` and
``storegate check`` runs in a child interpreter limited to 2 GiB. Truncation is always found
(reads raise a ``StoregateError`` naming the var; the check names it); a bit flip inside
uncompressed data is indistinguishable from data, so reads succeed and the check passes; any
other flip is a clean error or undetected, never a crash or a raw library exception.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_crafted_support import MAX_RSS_MB, assert_clean, assert_error, run_child

from storegate import StoreGate

ROWS = 10
DATA = np.arange(2 * ROWS, dtype="f8").reshape(ROWS, 2)
RAGGED = [np.arange(i, dtype="f4") for i in range(ROWS)]
ZARR_OPS = ["row:5", "rows:0,10", "gather:1,5,9", "all", "check", "cli"]


def small_store(backend: str, path: Path, **options: Any) -> Path:
    """A store with a regular var ``x`` and a ragged var ``r`` in train; returns the phase
    directory."""
    sg = StoreGate(backend, {"output_dir": str(path), **options}, data_id="d")
    sg.add_data("x", DATA, phase="train")
    sg.add_data("r", RAGGED, phase="train")
    sg.compile()
    sg.close()
    return path / "d" / "train"


def zarr_store(path: Path, compressor: str) -> Path:
    return small_store("zarr", path, chunk=4, compressor=compressor)


def damage(path: Path, how: str, seed: int = 0) -> None:
    data = bytearray(path.read_bytes())
    if how == "half":
        data = data[: len(data) // 2]
    elif how == "empty":
        data = bytearray()
    elif how == "one_byte_short":
        data = data[:-1]
    elif how == "flip_bits":
        rng = random.Random(seed)
        for _ in range(8):
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
    elif how == "flip_all":
        data = bytearray(b ^ 0xFF for b in data)
    else:  # pragma: no cover
        raise AssertionError(how)
    path.write_bytes(bytes(data))


ZARR_DAMAGE = ["half", "empty", "one_byte_short", "flip_bits", "flip_all"]


@pytest.mark.parametrize("compressor", ["default", "lz4", "zstd"])
def test_damaged_zarr_chunks(tmp_path: Path, compressor: str) -> None:
    jobs = []
    cases = []
    for how in ZARR_DAMAGE:
        for target in ("x/c/1/0", "r/values/c/3", "r/offsets/c/1"):
            phase_dir = zarr_store(tmp_path / f"{how}-{target.replace('/', '_')}", compressor)
            damage(phase_dir / target, how)
            var = target.split("/")[0]
            ops = ZARR_OPS if var == "x" else ["row:5", "rows:0,10", "gather:1,5,9",
                                               "check", "cli"]
            jobs.append({"backend": "zarr", "path": str(phase_dir.parent.parent), "var": var,
                         "ops": ops})
            cases.append((how, target, var))
    out = run_child(jobs)
    assert out["maxrss_mb"] < MAX_RSS_MB
    for (how, target, var), res in zip(cases, out["jobs"], strict=True):
        where = f"{compressor} {how} {target}"
        truncated = how in ("half", "empty", "one_byte_short")
        raw_flip = compressor == "default" and not truncated
        try:
            for op, r in res.items():
                assert_clean(r, var=None if op == "cli" else var)
            if var == "x" and truncated and res["row:5"]["ok"]:  # its bytes are still there
                assert res["row:5"]["value"] == DATA[5].tolist(), res["row:5"]
            if truncated:
                # always detected: by a read of the damaged chunk, and by the check
                assert_error(res["rows:0,10"], var=var)
            problems = res["check"]["value"]
            rc, text = res["cli"]["value"]
            if raw_flip and target != "r/offsets/c/1":
                # uncompressed values with flipped bits are still values: nothing to find
                assert problems == [] and rc == 0, problems
                assert res["rows:0,10"]["ok"]
            elif truncated or raw_flip:
                assert problems and problems[0].startswith(f"d/train/{var}: "), problems
                assert rc == 1 and f"d/train/{var}" in text
            else:  # compressed flips: found or not, but cleanly
                assert all(p.startswith("d/train") for p in problems), problems
                assert rc == (1 if problems else 0)
        except AssertionError as err:
            raise AssertionError(f"{where}: {err}") from None


def test_truncated_blosc_chunk_is_never_decoded(tmp_path: Path) -> None:
    """blosc decodes a truncated frame past its end (garbage or a crash); storegate checks
    each chunk file's size against its frame header before zarr reads it."""
    phase_dir = zarr_store(tmp_path / "s", "lz4")
    damage(phase_dir / "x/c/1/0", "half")
    out = run_child([{"backend": "zarr", "path": str(tmp_path / "s"), "var": "x",
                      "ops": ["row:0", "row:5", "gather:5", "rows:4,6"]}])
    res = out["jobs"][0]
    assert res["row:0"]["value"] == DATA[0].tolist()
    for op in ("row:5", "gather:5", "rows:4,6"):
        assert_error(res[op], "c/1/0", "d/train/x", "truncated",
                     kinds=("CorruptStoreError",))


def test_missing_chunk_of_a_written_var_is_an_error(tmp_path: Path) -> None:
    """storegate writes every chunk: a chunk file removed behind its back is damage for reads
    too (zarr would return the fill value 0), but create_empty's unwritten rows read as 0."""
    phase_dir = zarr_store(tmp_path / "s", "default")
    (phase_dir / "x/c/1/0").unlink()
    (phase_dir / "r/values/c/2").unlink()
    sg = StoreGate("zarr", {"output_dir": str(tmp_path / "e")}, data_id="d")
    sg.create_empty("e", (10, 2), phase="train", dtype="f8")
    sg.update_data("e", np.ones((1, 2)), phase="train", index=0)
    sg.close()
    out = run_child([
        {"backend": "zarr", "path": str(tmp_path / "s"), "var": "x",
         "ops": ["row:0", "row:5", "gather:5,9", "rows:0,10"]},
        {"backend": "zarr", "path": str(tmp_path / "s"), "var": "r", "ops": ["rows:0,10"]},
        {"backend": "zarr", "path": str(tmp_path / "e"), "var": "e",
         "ops": ["row:0", "row:9", "check"]},
    ])
    x, r, e = out["jobs"]
    assert x["row:0"]["value"] == DATA[0].tolist()
    for op in ("row:5", "gather:5,9", "rows:0,10"):
        assert_error(x[op], "d/train/x", "missing", kinds=("CorruptStoreError",))
    assert_error(r["rows:0,10"], "d/train/r", "missing")
    assert e["row:0"]["value"] == [1.0, 1.0] and e["row:9"]["value"] == [0.0, 0.0]
    assert e["check"]["value"] == []


# ------------------------------------------------------------------------------- parquet
def parquet_store(path: Path, compression: str) -> Path:
    return small_store("parquet", path, compression=compression)


def damage_parquet(file: Path, how: str) -> None:
    data = bytearray(file.read_bytes())
    n = len(data)
    footer = int.from_bytes(data[n - 8:n - 4], "little")
    if how in ("half", "empty", "one_byte_short"):
        damage(file, how)
        return
    if how == "page":  # bytes inside the first data page
        for i in range(40, min(n - footer - 8, 120)):
            data[i] ^= 0x5A
    elif how == "footer":
        for i in range(n - 8 - footer // 2, n - 8 - footer // 2 + 40):
            data[i] ^= 0xFF
    elif how == "footer_length":
        data[n - 8:n - 4] = (2**31 - 1).to_bytes(4, "little")
    elif how == "magic_tail":
        data[-4:] = b"XXXX"
    elif how == "magic_head":
        data[:4] = b"XXXX"
    else:  # pragma: no cover
        raise AssertionError(how)
    file.write_bytes(bytes(data))


PARQUET_DAMAGE = ["half", "empty", "one_byte_short", "page", "footer", "footer_length",
                  "magic_tail", "magic_head"]


@pytest.mark.parametrize("compression", ["none", "zstd", "snappy"])
def test_damaged_parquet_data_file(tmp_path: Path, compression: str) -> None:
    pytest.importorskip("pyarrow")
    jobs = []
    for how in PARQUET_DAMAGE:
        phase_dir = parquet_store(tmp_path / how, compression)
        (file,) = phase_dir.glob("*.parquet")
        damage_parquet(file, how)
        for var in ("x", "r"):
            jobs.append({"backend": "parquet", "path": str(tmp_path / how), "var": var,
                         "ops": ["row:5", "rows:0,10", "gather:1,5,9", "check", "cli"]})
    out = run_child(jobs)
    assert out["maxrss_mb"] < MAX_RSS_MB
    results = iter(out["jobs"])
    for how in PARQUET_DAMAGE:
        for var in ("x", "r"):
            res = next(results)
            try:
                for op, r in res.items():
                    assert_clean(r, *(() if op == "cli" else (f"'{var}'",)))
                problems = res["check"]["value"]
                rc, text = res["cli"]["value"]
                if how == "page":  # decoded garbage is indistinguishable from data, or found
                    assert rc == (1 if problems else 0)
                    continue
                for op in ("row:5", "rows:0,10", "gather:1,5,9"):
                    if how != "magic_head":  # pyarrow never reads the leading magic
                        assert_error(res[op], f"'{var}'", ".parquet")
                assert any(p.startswith(f"d/train/{var}: ") for p in problems), problems
                assert rc == 1 and f"d/train/{var}" in text
            except AssertionError as err:
                raise AssertionError(f"{compression} {how} {var}: {err}") from None


MANIFEST_DAMAGE: dict[str, Any] = {
    "not_json": "{\"format\": \"storegate-parquet\", \"vars\": {",
    "empty": "",
    "not_utf8": b"\xff\xfe\x00{",
    "deep_nesting": "[" * 100_000 + "]" * 100_000,
    "huge_integer": lambda doc: json.dumps(doc).replace('"next_file": 1', '"next_file": '
                                                        + "9" * 5000),
    "float_overflow": lambda doc: json.dumps(doc).replace('"rows": 10,', '"rows": 1e400,', 1),
    "rows_string": ("files", "rows", "ten"),
    "rows_float": ("files", "rows", 10.5),
    "rows_bool": ("files", "rows", True),
    "rows_1e18": ("files", "rows", 10**18),
    "rows_negative": ("files", "rows", -1),
    "row_groups_lie": ("files", "row_groups", [5, 5]),
    "files_not_dict": ("top", "files", [1, 2]),
    "vars_not_dict": ("top", "vars", "x"),
    "version_string": ("top", "version", "1"),
    "version_future": ("top", "version", 99),
    "shape_huge": ("var", "shape", [10**12]),
    "shape_negative": ("var", "shape", [-2]),
    "shape_wrong": ("var", "shape", [3]),
    "shape_scalar": ("var", "shape", []),
    "dtype_object": ("var", "dtype", "|O"),
    "dtype_other": ("var", "dtype", "<i4"),
    "dtype_nonsense": ("var", "dtype", "float1024"),
    "ragged_string": ("var", "ragged", "no"),
    "file_name_traversal": ("rename", "../../../../etc/passwd"),
    "file_name_nul": ("rename", "part-\x00.parquet"),
    "column_missing": ("files", "columns", {"x": "nope", "r": "r"}),
}


def damage_manifest(path: Path, how: Any) -> None:
    if isinstance(how, bytes):
        path.write_bytes(how)
        return
    if isinstance(how, str):
        path.write_text(how)
        return
    doc = json.loads(path.read_text())
    if callable(how):
        path.write_text(how(doc))
        return
    (name,) = doc["files"]
    if how[0] == "files":
        doc["files"][name][how[1]] = how[2]
    elif how[0] == "top":
        doc[how[1]] = how[2]
    elif how[0] == "var":
        doc["vars"]["x"][how[1]] = how[2]
    elif how[0] == "rename":
        doc["files"][how[1]] = doc["files"].pop(name)
        for v in doc["vars"].values():
            v["files"] = [how[1]]
    path.write_text(json.dumps(doc))


def test_damaged_parquet_manifest(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    jobs = []
    for name, how in MANIFEST_DAMAGE.items():
        phase_dir = parquet_store(tmp_path / name, "none")
        damage_manifest(phase_dir / "_storegate_manifest.json", how)
        jobs.append({"backend": "parquet", "path": str(tmp_path / name), "var": "x",
                     "ops": ["vars", "len", "compile", "row:0", "rows:0,10", "gather:1,5",
                             "all", "check", "cli"]})
    out = run_child(jobs)
    assert out["maxrss_mb"] < MAX_RSS_MB
    for name, res in zip(MANIFEST_DAMAGE, out["jobs"], strict=True):
        try:
            for op, r in res.items():
                # a damaged manifest is named by its path; a damaged var by its name
                assert_clean(r)
                if not r["ok"] and op != "len":
                    assert "_storegate_manifest.json" in r["msg"] or "'x'" in r["msg"], r
                if r["ok"] and op == "row:0":
                    assert r["value"] == DATA[0].tolist(), r
            problems = res["check"]["value"]
            rc, text = res["cli"]["value"]
            assert problems and all(p.startswith("d/train") for p in problems), problems
            assert rc == 1 and "d/train" in text
            assert not res["row:0"]["ok"] or not res["rows:0,10"]["ok"], (
                "a damaged manifest went unnoticed by reads")
        except AssertionError as err:
            raise AssertionError(f"manifest {name!r}: {err}") from None


def test_unreadable_manifest_never_empties_the_phase(tmp_path: Path) -> None:
    """A manifest that is a dangling link is damage, not an empty phase."""
    pytest.importorskip("pyarrow")
    phase_dir = parquet_store(tmp_path / "s", "none")
    manifest = phase_dir / "_storegate_manifest.json"
    manifest.unlink()
    manifest.symlink_to(tmp_path / "nowhere.json")
    out = run_child([{"backend": "parquet", "path": str(tmp_path / "s"), "var": "x",
                      "ops": ["vars", "row:0"]}])
    res = out["jobs"][0]
    for op in ("vars", "row:0"):
        assert_error(res[op], "_storegate_manifest.json", kinds=("CorruptStoreError",))
