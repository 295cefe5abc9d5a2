"""``storegate.checks.check_store`` and the backends' ``check``/``stored_bytes`` hooks, on real
zarr directories and parquet stores that are built healthy and then damaged on disk."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from storegate import StoreGate
from storegate.checks import CheckReport, Problem, check_store
from storegate.errors import DataIdNotFoundError
from storegate.phases import PHASES

zarr = pytest.importorskip("zarr")

PHASE = (0.8, 0.1, 0.1)
N = 1000  # rows per data_id


def _ragged_rows(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    return [rng.normal(size=(i % 7 + 1, 3)) for i in range(n)]


def build(backend: str, path: Path | None, **args: Any) -> StoreGate:
    """Two data_ids: 'jets' (dense x (N, 2) f4, labels i8, ragged hits (n_i, 3) f8) and
    'evts' (one var e), all split 80/10/10 and compiled. Data are random (no all-zero chunk,
    which zarr would not write)."""
    rng = np.random.default_rng(0)
    backend_args = dict(args)
    if path is not None:
        backend_args["output_dir"] = str(path)
    sg = StoreGate(backend, backend_args, data_id="jets")
    sg.add_data("x", rng.normal(size=(N, 2)).astype("f4") + 5, phase=PHASE)
    sg.add_data("label", rng.integers(1, 5, size=N), phase=PHASE)
    sg.add_data("hits", _ragged_rows(rng, N), phase=PHASE)
    sg.compile()
    sg.set_data_id("evts")
    sg.add_data("e", rng.normal(size=(200, 4, 2)) + 3, phase=PHASE)
    sg.compile()
    return sg


def where(report: CheckReport) -> list[tuple[str, str | None, str | None]]:
    return [(p.data_id, p.phase, p.var) for p in report.problems]


def only(report: CheckReport, data_id: str, phase: str | None, var: str | None) -> list[str]:
    """Messages of the problems at one place; fails if problems exist anywhere else."""
    assert {(p.data_id, p.phase, p.var) for p in report.problems} == {(data_id, phase, var)}, \
        [str(p) for p in report.problems]
    return [p.message for p in report.problems]


def zarr_store(tmp_path: Path, **args: Any) -> Path:
    path = tmp_path / "store.zarr"
    build("zarr", path, chunk=128, **args).close()
    return path


def reopen(path: Path) -> StoreGate:
    return StoreGate.open(str(path))  # read-only: the check sees the store as it is on disk


# ---------------------------------------------------------------------------------- healthy
@pytest.mark.parametrize("backend", ["numpy", "zarr", "parquet", "hybrid"])
def test_healthy_stores_are_ok_and_counted(tmp_path: Path, backend: str) -> None:
    path = None if backend == "numpy" else tmp_path / "store"
    sg = build(backend, path, **({"chunk": 128} if backend in ("zarr", "hybrid") else {}))
    gates = [sg] if path is None else [sg, reopen(path)]
    for gate in gates:
        report = check_store(gate, block_bytes=4096)  # many blocks per var
        assert report.ok, [str(p) for p in report.problems]
        assert report.data_ids == 2
        assert report.vars_checked == 3 * 3 + 3  # jets: 3 vars x 3 phases, evts: 1 x 3
        assert report.rows_checked == 3 * N + 200


def test_hybrid_with_vars_in_memory_is_ok(tmp_path: Path) -> None:
    sg = build("hybrid", tmp_path / "h.zarr")
    sg.set_data_id("jets")
    sg.to_memory("x", phase="all")
    sg.db.set_mode("numpy")
    sg.add_data("mem", np.arange(1, N + 1), phase=PHASE)
    sg.compile()
    report = check_store(sg, "jets")
    assert report.ok, [str(p) for p in report.problems]
    assert (report.data_ids, report.vars_checked, report.rows_checked) == (1, 12, 4 * N)
    assert sg.db.stored_bytes("jets", "train", "mem") is None  # only in memory
    assert sg.db.stored_bytes("jets", "train", "x")  # the storage copy


def test_selected_data_ids_and_progress(tmp_path: Path) -> None:
    sg = build("zarr", tmp_path / "s.zarr")
    bars: list[Any] = []

    class Bar:
        def __init__(self, **kw: Any) -> None:
            self.kw, self.done, self.closed = kw, 0, False
            bars.append(self)

        def update(self, n: int = 1) -> None:
            self.done += n

        def close(self) -> None:
            self.closed = True

    report = check_store(sg, ["evts"], progress=Bar, block_bytes=1024)
    assert report.ok and report.data_ids == 1 and report.rows_checked == 200
    (bar,) = bars
    assert bar.kw["desc"] == "check" and bar.closed
    assert bar.done == bar.kw["total"] == 200 * 8 * 8
    assert check_store(sg, "jets").data_ids == 1
    with pytest.raises(DataIdNotFoundError, match="nope"):
        check_store(sg, ["nope"])


def test_problem_text() -> None:
    p = Problem("jets", "train", "x", "chunk file c/3/0 is missing")
    assert str(p) == "jets/train/x: chunk file c/3/0 is missing"
    assert str(Problem("jets", "train", None, "m")) == "jets/train: m"
    assert not CheckReport([p], 1, 1, 0).ok


def test_never_prints(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = zarr_store(tmp_path)
    os.remove(path / "jets" / "train" / "x" / "c" / "1" / "0")
    assert not check_store(reopen(path)).ok
    assert capsys.readouterr() == ("", "")


# ---------------------------------------------------------------------------------- zarr
def test_zarr_missing_chunk_is_named(tmp_path: Path) -> None:
    path = zarr_store(tmp_path)
    os.remove(path / "jets" / "train" / "x" / "c" / "3" / "0")
    report = check_store(reopen(path))
    (message,) = only(report, "jets", "train", "x")
    assert message.startswith("chunk file c/3/0 is missing (rows 384..511 would read as the fill")
    assert str(report.problems[0]).startswith("jets/train/x: chunk file c/3/0 is missing")


def test_zarr_missing_chunks_of_a_ragged_var(tmp_path: Path) -> None:
    path = zarr_store(tmp_path)
    values = path / "jets" / "valid" / "hits" / "values" / "c"
    os.remove(values / "1" / "0")
    os.remove(values / "2" / "0")
    (message,) = only(check_store(reopen(path)), "jets", "valid", "hits")
    assert message.startswith("values chunk files c/1/0 .. c/2/0 (2 chunks) are missing "
                              "(values 128..383 (in rows ")


@pytest.mark.parametrize("compressor", ["default", "lz4"])
def test_zarr_truncated_chunk_found_by_size(tmp_path: Path, compressor: str) -> None:
    # uncompressed chunks would read as zeros past their end, and blosc reads a truncated
    # frame past its end: both are found from the file size, before anything is decoded
    path = zarr_store(tmp_path, compressor=compressor)
    chunk = path / "jets" / "train" / "x" / "c" / "2" / "0"
    size = chunk.stat().st_size
    os.truncate(chunk, size // 2)
    (message,) = only(check_store(reopen(path)), "jets", "train", "x")
    assert message.startswith(f"chunk file c/2/0 has {size // 2} bytes instead of {size}")
    assert "rows 256..383" in message


def test_zarr_truncated_compressed_chunk_is_a_read_error(tmp_path: Path) -> None:
    path = zarr_store(tmp_path, compressor="zstd")
    chunk = path / "jets" / "test" / "label" / "c" / "0"
    os.truncate(chunk, chunk.stat().st_size // 2)
    report = check_store(reopen(path), block_bytes=256)  # blocks smaller than a chunk
    (message,) = only(report, "jets", "test", "label")
    assert message.startswith("rows 0..99 cannot be read: ")  # the phase's 100 rows
    assert report.rows_checked == 3 * N + 200 - 100


def test_zarr_truncated_ragged_values_chunk(tmp_path: Path) -> None:
    path = zarr_store(tmp_path, compressor="zstd")
    chunk = path / "jets" / "train" / "hits" / "values" / "c" / "4" / "0"
    os.truncate(chunk, chunk.stat().st_size // 2)
    (message,) = only(check_store(reopen(path)), "jets", "train", "hits")
    assert message.startswith("rows ") and "cannot be read" in message


def test_zarr_ragged_offsets_past_the_values(tmp_path: Path) -> None:
    path = zarr_store(tmp_path)
    offsets = zarr.open_array(str(path / "jets" / "train" / "hits" / "offsets"), mode="r+")
    whole = offsets[:]
    whole[-1] = whole[-1] + 50
    offsets[:] = whole
    messages = only(check_store(reopen(path)), "jets", "train", "hits")
    assert any("the offsets end at" in m and "past the" in m and "row 799" in m
               for m in messages)


def test_zarr_ragged_offsets_decreasing(tmp_path: Path) -> None:
    path = zarr_store(tmp_path)
    offsets = zarr.open_array(str(path / "jets" / "test" / "hits" / "offsets"), mode="r+")
    whole = offsets[:]
    whole[10] = whole[9] - 1
    offsets[:] = whole
    messages = only(check_store(reopen(path)), "jets", "test", "hits")
    assert any(m.startswith("the offsets decrease at row 9") for m in messages)


def test_zarr_unreadable_array_metadata(tmp_path: Path) -> None:
    path = zarr_store(tmp_path)
    (path / "evts" / "valid" / "e" / "zarr.json").write_text("{not json")
    messages = only(check_store(reopen(path)), "evts", "valid", "e")
    assert any("metadata cannot be read" in m or "cannot be described" in m for m in messages)


def test_zarr_buffered_rows_are_not_missing_chunks(tmp_path: Path) -> None:
    sg = StoreGate("zarr", {"output_dir": str(tmp_path / "s.zarr"), "chunk": 64}, data_id="d")
    sg.add_data("x", np.arange(1, 101), phase="train")  # one chunk on disk, 36 rows buffered
    sg.add_data("r", [np.arange(1, i + 2) for i in range(10)], phase="valid")  # all buffered
    assert sg.db.check("d", "train", "x") == []
    assert sg.db.check("d", "valid", "r") == []
    report = check_store(sg)
    assert report.ok and report.rows_checked == 110


def test_zarr_multiml_v2_store(tmp_path: Path) -> None:
    numcodecs = pytest.importorskip("numcodecs")
    path = tmp_path / "mm.zarr"
    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    group = root.create_group("mm")
    for phase, n in (("train", 10), ("valid", 3), ("test", 3)):
        g = group.create_group(phase)
        a = g.create_array("a", shape=(n, 3), chunks=(4, 3), dtype="f4",
                           compressors=numcodecs.Blosc("lz4", 5, 1))
        a[:] = np.arange(1, 3 * n + 1, dtype="f4").reshape(n, 3)
        b = g.create_array("b", shape=(n,), chunks=(4,), dtype="f4", compressors=None)
        b[:] = np.arange(1, n + 1, dtype="f4")
    assert check_store(StoreGate.open(str(path))).ok
    os.remove(path / "mm" / "train" / "a" / "1.0")
    os.truncate(path / "mm" / "train" / "b" / "0", 3)
    report = check_store(StoreGate.open(str(path)))
    assert where(report) == [("mm", "train", "a"), ("mm", "train", "b")]
    assert report.problems[0].message.startswith("chunk file 1.0 is missing (rows 4..7")
    assert report.problems[1].message.startswith("chunk file 0 has 3 bytes instead of 16")


def test_zarr_fsspec_url(tmp_path: Path) -> None:
    fsspec = pytest.importorskip("fsspec")
    root = f"/storegate-check-{os.getpid()}/s.zarr"
    sg = StoreGate("zarr", {"output_dir": f"memory://{root}", "chunk": 4}, data_id="d")
    sg.add_data("a", np.arange(1, 25), phase=(0.5, 0.25, 0.25))
    sg.compile()
    sg.close()
    assert check_store(sg).ok
    assert sg.db.stored_bytes("d", "train", "a")
    fsspec.filesystem("memory").rm(f"{root}/d/train/a/c/1")
    again = StoreGate("zarr", {"output_dir": f"memory://{root}", "mode": "r"}, data_id="d")
    (message,) = only(check_store(again), "d", "train", "a")
    assert message.startswith("chunk file c/1 is missing (rows 4..7")


# ---------------------------------------------------------------------------------- parquet
def parquet_store(tmp_path: Path) -> Path:
    path = tmp_path / "store.parquet"
    build("parquet", path, file_rows=300).close()
    return path


def manifest_path(path: Path, data_id: str, phase: str) -> Path:
    from storegate.backends.parquet_backend import MANIFEST

    return path / data_id / phase / MANIFEST


def test_parquet_manifest_row_count_disagrees(tmp_path: Path) -> None:
    path = parquet_store(tmp_path)
    mpath = manifest_path(path, "evts", "train")
    manifest = json.loads(mpath.read_text())
    (name,) = manifest["vars"]["e"]["files"]
    manifest["files"][name]["rows"] -= 10  # consistently edited: the manifest still parses
    manifest["files"][name]["row_groups"][-1] -= 10
    mpath.write_text(json.dumps(manifest))
    report = check_store(reopen(path))
    assert set(where(report)) == {("evts", "train", "e"), ("evts", "train", None)}
    messages = [p.message for p in report.problems]
    assert any(f"the manifest records 150 rows for data file {name}" in m
               and "footer holds 160" in m for m in messages)
    assert any(m.startswith("stale compile metadata: it records 160 rows, but the vars hold "
                            "150") for m in messages)


def test_parquet_damaged_manifest_is_reported_not_raised(tmp_path: Path) -> None:
    path = parquet_store(tmp_path)
    mpath = manifest_path(path, "jets", "valid")
    manifest = json.loads(mpath.read_text())
    for entry in manifest["files"].values():
        entry["rows"] += 1  # no longer the sum of its row groups
    mpath.write_text(json.dumps(manifest))
    report = check_store(reopen(path))
    (message,) = only(report, "jets", "valid", None)
    assert message.startswith("the vars cannot be listed (CorruptStoreError")


def test_parquet_data_file_deleted(tmp_path: Path) -> None:
    path = parquet_store(tmp_path)
    manifest = json.loads(manifest_path(path, "jets", "train").read_text())
    name = manifest["vars"]["x"]["files"][1]  # rows 300..599 of x, label and hits
    os.remove(path / "jets" / "train" / name)
    report = check_store(reopen(path))
    assert where(report) == [("jets", "train", v) for v in ("x", "label", "hits")]
    for problem in report.problems:
        assert problem.message == (f"data file {name} listed in the manifest is missing "
                                   "(rows 300..599 cannot be read)")


def test_parquet_truncated_data_file(tmp_path: Path) -> None:
    path = parquet_store(tmp_path)
    name = json.loads(manifest_path(path, "evts", "test").read_text())["vars"]["e"]["files"][0]
    file = path / "evts" / "test" / name
    os.truncate(file, file.stat().st_size // 2)
    (message,) = only(check_store(reopen(path)), "evts", "test", "e")
    assert message.startswith(f"data file {name} has no readable Parquet footer (rows 0..19")


# ---------------------------------------------------------------------------------- phases, meta
@pytest.mark.parametrize("backend", ["numpy", "zarr", "parquet"])
def test_phase_length_mismatch(tmp_path: Path, backend: str) -> None:
    args = {} if backend == "numpy" else {"output_dir": str(tmp_path / "s")}
    sg = StoreGate(backend, args, data_id="d")
    sg.add_data("a", np.arange(1, 11), phase="train")
    sg.add_data("b", np.arange(1, 8), phase="train")  # no compile: it would refuse
    (message,) = only(check_store(sg), "d", "train", None)
    assert message.startswith("the vars have different lengths: a=10, b=7")


@pytest.mark.parametrize("backend", ["zarr", "parquet"])
def test_stale_compile_metadata(tmp_path: Path, backend: str) -> None:
    path = tmp_path / "s"
    build(backend, path).close()
    writable = StoreGate(backend, {"output_dir": str(path)})
    attrs = writable.db.get_attrs("jets")
    assert attrs["storegate"]["compiled"]
    attrs["storegate"]["total_events"] = [800, 150, 100]
    attrs["storegate"]["valid_phases"] = ["train", "valid"]
    writable.db.set_attrs("jets", attrs)
    writable.close()
    report = check_store(reopen(path))
    assert where(report) == [("jets", "valid", None), ("jets", None, None)]
    assert report.problems[0].message.startswith(
        "stale compile metadata: it records 150 rows, but the vars hold 100")
    assert "['train', 'valid'] as holding data, but ['train', 'valid', 'test']" in \
        report.problems[1].message


def test_never_compiled_or_invalidated_metadata_is_fine(tmp_path: Path) -> None:
    sg = StoreGate("zarr", {"output_dir": str(tmp_path / "s.zarr")}, data_id="d")
    sg.add_data("a", np.arange(1, 11), phase=PHASE)
    assert check_store(sg).ok  # never compiled
    sg.compile()
    sg.add_data("a", np.arange(1, 11), phase="train")  # invalidates the compile record
    assert not sg.db.get_attrs("d")["storegate"]["compiled"]
    assert check_store(sg).ok


def test_malformed_and_richer_compile_metadata(tmp_path: Path) -> None:
    sg = StoreGate(data_id="d")
    sg.add_data("a", np.arange(1, 11, dtype="i4"), phase=PHASE)
    sg.compile()
    attrs = sg.db.get_attrs("d")
    good = dict(attrs["storegate"])
    attrs["storegate"] = {**good, "total_events": "oops"}
    sg.db.set_attrs("d", attrs)
    (message,) = only(check_store(sg), "d", None, None)
    assert message.startswith("the compile metadata is malformed")
    # a record that also lists vars, shapes and dtypes is compared with them
    attrs["storegate"] = {**good, "vars": {"train": {"a": {"shape": [], "dtype": "<f8"}},
                                           "valid": ["a", "gone"]}}
    sg.db.set_attrs("d", attrs)
    report = check_store(sg)
    assert where(report) == [("d", "train", "a"), ("d", "valid", None)]
    assert "records dtype <f8, but the var is int32" in report.problems[0].message
    assert "lists the vars ['a', 'gone'], but the phase holds ['a']" in \
        report.problems[1].message


# ---------------------------------------------------------------------------------- sizes
@pytest.mark.parametrize("backend", ["zarr", "parquet", "hybrid"])
def test_stored_bytes(tmp_path: Path, backend: str) -> None:
    sg = build(backend, tmp_path / "s")
    sg.close()
    for data_id, var in (("jets", "x"), ("jets", "label"), ("jets", "hits"), ("evts", "e")):
        for phase in PHASES:
            size = sg.db.stored_bytes(data_id, phase, var)
            assert isinstance(size, int) and size > 0, (data_id, phase, var)
    # uncompressed: at least the data themselves
    assert sg.db.stored_bytes("jets", "train", "x") >= 800 * 2 * 4


def test_stored_bytes_of_memory_vars_is_none() -> None:
    sg = build("numpy", None)
    assert sg.db.stored_bytes("jets", "train", "x") is None
    assert sg.db.check("jets", "train", "x") == []


# ---------------------------------------------------------------------------------- reads
def test_zarr_all_zero_chunks_are_written_so_check_is_ok(tmp_path: Path) -> None:
    path = tmp_path / "zeros.zarr"
    sg = StoreGate("zarr", {"output_dir": str(path), "chunk": 64}, data_id="d")
    sg.add_data("z", np.zeros((300, 2), "f4"))  # every chunk holds only the fill value
    sg.compile()
    sg.close()
    assert check_store(reopen(path)).ok


def test_zarr_read_of_truncated_raw_chunk_raises(tmp_path: Path) -> None:
    from storegate import CorruptStoreError

    path = zarr_store(tmp_path)
    chunk = path / "jets" / "train" / "x" / "c" / "2" / "0"
    os.truncate(chunk, chunk.stat().st_size // 2)
    gate = reopen(path)
    gate.set_data_id("jets")
    with pytest.raises(CorruptStoreError, match="truncated"):
        gate.get_data("x", "train")  # never zeros in place of the lost rows


def test_parquet_read_with_manifest_past_the_file_raises(tmp_path: Path) -> None:
    from storegate import CorruptStoreError

    path = parquet_store(tmp_path)
    mpath = manifest_path(path, "evts", "train")
    manifest = json.loads(mpath.read_text())
    (name,) = manifest["vars"]["e"]["files"]
    manifest["files"][name]["rows"] += 10  # the manifest promises rows the file lacks
    manifest["files"][name]["row_groups"][-1] += 10
    mpath.write_text(json.dumps(manifest))
    gate = reopen(path)
    gate.set_data_id("evts")
    with pytest.raises(CorruptStoreError, match="manifest records"):
        gate.get_data("e", "train", -1)  # never uninitialised rows
