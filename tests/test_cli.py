"""The ``storegate`` command, run as the installed console script in subprocesses.

Exit codes: 0 ok, 1 problems found / failed operation, 2 usage errors. Errors are one line on
stderr naming the file and the problem, and a failed conversion leaves nothing at DST.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from storegate import StoreGate


def _script() -> str:
    here = Path(sys.executable).parent / "storegate"
    found = str(here) if here.exists() else shutil.which("storegate")
    assert found, "the storegate console script is not installed (pip install -e .)"
    return found


def run(*args: str | os.PathLike[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([_script(), *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


def one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("storegate "), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def leftovers(directory: Path) -> list[str]:
    return sorted(n for n in os.listdir(directory) if ".sg-tmp-" in n or ".sg-old-" in n
                  or n.startswith(".sg-convert-"))


@pytest.fixture
def npz(tmp_path: Path) -> Path:
    path = tmp_path / "jets.npz"
    rng = np.random.default_rng(0)
    np.savez(path, pt=rng.standard_normal(20).astype("f4"), label=np.arange(20) % 3)
    return path


@pytest.fixture
def kinoml_npz(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    members = {}
    for i in range(12):
        members[f"X_s{i}_a0_"] = rng.standard_normal((int(rng.integers(2, 7)), 4)).astype("f4")
        members[f"X_s{i}_a1_"] = rng.integers(0, 2, 8)
    path = tmp_path / "kinase.npz"
    np.savez(path, **members, y=rng.standard_normal(12).astype("f4"),
             idx_train=np.arange(8), idx_val=np.arange(8, 10), idx_test=np.arange(10, 12))
    return path


@pytest.fixture
def store(tmp_path: Path, npz: Path) -> Path:
    dst = tmp_path / "jets.zarr"
    proc = run("convert", npz, dst, "--phase", "0.5,0.25,0.25", "-q")
    assert proc.returncode == 0, proc.stderr
    return dst


# ------------------------------------------------------------------------------ help, usage
def test_help_lists_commands_and_examples() -> None:
    proc = run("--help")
    assert proc.returncode == 0
    for command in ("info", "ls", "head", "convert", "backends", "check"):
        assert command in proc.stdout
    assert "examples:" in proc.stdout and "storegate convert" in proc.stdout


@pytest.mark.parametrize("command", ["info", "ls", "head", "convert", "backends", "check"])
def test_each_command_has_help_with_an_example(command: str) -> None:
    proc = run(command, "--help")
    assert proc.returncode == 0
    assert "example:" in proc.stdout and f"storegate {command}" in proc.stdout


@pytest.mark.parametrize("args", [
    ["frobnicate"], [], ["ls"], ["convert", "only-src"], ["head", "x", "-n", "many"],
    ["convert", "a.npz", "b.zarr", "--shuffle", "abc"],
])
def test_usage_errors_exit_2(args: list[str], tmp_path: Path) -> None:
    proc = run(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "usage:" in proc.stderr or "error" in proc.stderr


def test_bad_phase_spec_is_a_usage_error(npz: Path, tmp_path: Path) -> None:
    proc = run("convert", npz, tmp_path / "x.zarr", "--phase", "0.8,abc,0.1")
    assert proc.returncode == 2
    one_line_error(proc, "--phase")
    assert not (tmp_path / "x.zarr").exists()


def test_version() -> None:
    proc = run("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("storegate ")


# ------------------------------------------------------------------------------ inspection
def test_ls_info_head(store: Path) -> None:
    proc = run("ls", store)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "jets"
    assert "train (10 rows): pt, label" in proc.stdout
    assert "valid (5 rows): pt, label" in proc.stdout

    proc = run("info", store)
    assert proc.returncode == 0, proc.stderr
    assert "StoreGate data_id : jets, compiled : True" in proc.stdout
    for column in ("codec", "on disk", "chunks"):
        assert column in proc.stdout
    assert "B" in proc.stdout.split("on disk")[1]  # sizes shown

    proc = run("head", store, "--data-id", "jets", "--phase", "valid", "--var", "label",
               "-n", "3")
    assert proc.returncode == 0, proc.stderr
    sg = StoreGate.open(str(store))
    labels = sg.get_data("label", "valid")[:3]
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("label (jets/valid, first 3 rows)")
    assert [line.split("] ")[1] for line in lines[1:]] == [str(v) for v in labels]


def test_head_ragged_rows(tmp_path: Path, kinoml_npz: Path) -> None:
    dst = tmp_path / "kin.zarr"
    assert run("convert", kinoml_npz, dst, "-q").returncode == 0
    proc = run("head", dst, "--var", "X_a0", "-n", "2")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("[0]") == 1 and "[1]" in proc.stdout


def test_inspection_of_missing_or_foreign_paths(tmp_path: Path) -> None:
    for command in ("ls", "info", "check"):
        proc = run(command, tmp_path / "nope.zarr")
        assert proc.returncode == 1
        one_line_error(proc, "nope.zarr")
    (tmp_path / "notastore").mkdir()
    proc = run("ls", tmp_path / "notastore")
    assert proc.returncode == 1
    one_line_error(proc, "notastore")


def test_backends_lists_builtins_with_distribution() -> None:
    proc = run("backends")
    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[0]: line.split() for line in proc.stdout.splitlines()[2:] if line}
    for name in ("numpy", "zarr", "hybrid", "parquet"):
        assert rows[name][1] == "storegate" and rows[name][3] == "ok"


# ------------------------------------------------------------------------------ convert
def test_convert_kinoml_npz_round_trip(tmp_path: Path, kinoml_npz: Path) -> None:
    dst = tmp_path / "kin.zarr"
    proc = run("convert", kinoml_npz, dst)
    assert proc.returncode == 0, proc.stderr
    assert "data_id 'kinase'" in proc.stdout and "train 8, valid 2, test 2" in proc.stdout
    back = tmp_path / "back.npz"
    proc = run("convert", dst, back, "-q")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    with np.load(kinoml_npz) as a, np.load(back) as b:
        assert sorted(a.files) == sorted(b.files)
        for key in a.files:
            assert a[key].dtype == b[key].dtype, key
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_convert_store_to_store_with_backend_and_shuffle(store: Path, tmp_path: Path) -> None:
    dst = tmp_path / "copy.parquet"
    proc = run("convert", store, dst, "--backend", "parquet", "--shuffle", "3", "-q")
    assert proc.returncode == 0, proc.stderr
    a, b = StoreGate.open(str(store)), StoreGate.open(str(dst))
    assert b.backend == "parquet"
    for ph in ("train", "valid", "test"):
        x, y = a.get_data(("pt", "label"), ph), b.get_data(("pt", "label"), ph)
        assert sorted(map(tuple, x.tolist())) == sorted(map(tuple, y.tolist()))
    assert run("check", dst, "-q").returncode == 0


def test_convert_dtype_and_data_id(npz: Path, tmp_path: Path) -> None:
    np.savez(tmp_path / "f64.npz", x=np.arange(4.0), n=np.arange(4))
    dst = tmp_path / "f32.zarr"
    proc = run("convert", tmp_path / "f64.npz", dst, "--dtype", "float32", "--data-id", "d",
               "-q")
    assert proc.returncode == 0, proc.stderr
    sg = StoreGate.open(str(dst), data_id="d")
    assert sg.get_data("x", "train").dtype == np.float32
    assert sg.get_data("n", "train").dtype == np.int64


def test_destination_exists_unless_overwrite(npz: Path, store: Path) -> None:
    before = sorted(os.listdir(store))
    proc = run("convert", npz, store, "-q")
    assert proc.returncode == 1
    one_line_error(proc, str(store), "exists")
    assert sorted(os.listdir(store)) == before
    proc = run("convert", npz, store, "--phase", "test", "--overwrite", "-q")
    assert proc.returncode == 0, proc.stderr
    assert StoreGate.open(str(store)).get_metadata()["sizes"]["test"] == 20
    assert leftovers(store.parent) == []


class Evil:
    """Unpickling this writes a marker file: it must never happen."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (open, (self.marker, "w"))


def _pickled_npz(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "UNPICKLED"
    arr = np.empty(1, dtype=object)
    arr[0] = Evil(str(marker))
    path = tmp_path / "evil.npz"
    np.savez(path, a=arr)
    return path, marker


def _truncated_npz(tmp_path: Path) -> Path:
    src = tmp_path / "full.npz"
    np.savez(src, x=np.arange(1000.0))
    data = src.read_bytes()
    path = tmp_path / "truncated.npz"
    path.write_bytes(data[: len(data) // 2])
    return path


def _string_parquet(tmp_path: Path) -> Path:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "strings.parquet"
    pq.write_table(pa.table({"x": [1.0, 2.0], "name": ["a", "b"]}), path)
    return path


def _external_link_h5(tmp_path: Path) -> Path:
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = np.arange(3)
    path = tmp_path / "linked.h5"
    with h5py.File(path, "w") as f:
        f["y"] = np.arange(3)
        f["x"] = h5py.ExternalLink("other.h5", "x")
    return path


@pytest.mark.parametrize("make, needle", [
    (_truncated_npz, "truncated"),
    (_string_parquet, "name"),
    (_external_link_h5, "link"),
])
def test_bad_sources_fail_with_one_line_and_leave_nothing(tmp_path: Path, make, needle) -> None:
    if make is _string_parquet:
        pytest.importorskip("storegate.convert.parquet")
    if make is _external_link_h5:
        pytest.importorskip("storegate.convert.hdf5")
    src = make(tmp_path)
    dst = tmp_path / "out.zarr"
    proc = run("convert", src, dst, "-q")
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    line = one_line_error(proc, src.name)
    assert needle in line.lower(), line
    assert not dst.exists()
    assert leftovers(tmp_path) == []


def test_pickled_npz_is_refused_and_never_unpickled(tmp_path: Path) -> None:
    src, marker = _pickled_npz(tmp_path)
    proc = run("convert", src, tmp_path / "out.zarr", "-q")
    assert proc.returncode == 1
    one_line_error(proc, "evil.npz", "pickle")
    assert not marker.exists()
    assert not (tmp_path / "out.zarr").exists() and leftovers(tmp_path) == []


def test_missing_source(tmp_path: Path) -> None:
    proc = run("convert", tmp_path / "absent.npz", tmp_path / "out.zarr")
    assert proc.returncode == 1
    one_line_error(proc, "absent.npz")
    assert not (tmp_path / "out.zarr").exists()


@pytest.mark.parametrize("suffix", [".npz", ".parquet", ".h5"])
def test_export_round_trip_through_files(store: Path, tmp_path: Path, suffix: str) -> None:
    module = {".npz": "npz", ".parquet": "parquet", ".h5": "hdf5"}[suffix]
    pytest.importorskip(f"storegate.convert.{module}")
    out = tmp_path / f"exported{suffix}"
    proc = run("convert", store, out, "-q")
    assert proc.returncode == 0, proc.stderr
    again = tmp_path / "again.zarr"
    proc = run("convert", out, again, "-q", "--data-id", "jets")
    assert proc.returncode == 0, proc.stderr
    a, b = StoreGate.open(str(store)), StoreGate.open(str(again))
    for ph in ("train", "valid", "test"):
        for v in ("pt", "label"):
            x, y = a.get_data(v, ph), b.get_data(v, ph)
            assert x.dtype == y.dtype
            np.testing.assert_array_equal(x, y)


# ------------------------------------------------------------------------------ check
def test_check_passes_on_healthy_store(store: Path) -> None:
    proc = run("check", store)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ok" in proc.stdout


def test_check_reports_deleted_chunk(store: Path) -> None:
    chunk_dir = store / "jets" / "train" / "pt" / "c"
    chunks = sorted(p for p in chunk_dir.rglob("*") if p.is_file())
    assert chunks, list(store.rglob("*"))
    chunks[0].unlink()
    proc = run("check", store, "-q")
    assert proc.returncode == 1
    assert "train" in proc.stdout and "pt" in proc.stdout


def test_backends_reports_a_broken_plugin(tmp_path: Path) -> None:
    """A plugin whose module cannot be imported is listed as FAILED with the reason; exit 1."""
    dist = tmp_path / "storegate_broken-0.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: storegate-broken\n"
                                   "Version: 0.3\n")
    (dist / "entry_points.txt").write_text(
        "[storegate.backends]\nbroken = storegate_broken_missing_module:Backend\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}"
           f"{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run([_script(), "backends"], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    row = next(line for line in proc.stdout.splitlines() if line.startswith("broken "))
    assert "storegate-broken" in row and "0.3" in row and "FAILED" in row
    assert "storegate_broken_missing_module" in proc.stdout.split(row)[1]
    assert "numpy" in proc.stdout  # the working backends are still listed


@pytest.mark.parametrize("args, needle", [
    (["head", "{store}", "--var", "nope"], "'nope'"),
    (["head", "{store}", "--phase", "bogus"], "bogus"),
    (["head", "{store}", "-n", "-3"], "-n -3"),
    (["info", "{store}", "--data-id", "nope"], "'nope'"),
    (["convert", "{npz}", "{tmp}/x.zarr", "--phase", "bogus"], "bogus"),
    (["convert", "{npz}", "{tmp}/x.zarr", "--dtype", "int8"], "int8"),
    (["convert", "{npz}", "{tmp}/x.zarr", "--layout", "weird"], "weird"),
    (["convert", "{store}", "{tmp}/x.npz", "--shuffle", "1"], "shuffle"),
])
def test_bad_option_values_exit_2(args: list[str], needle: str, store: Path, npz: Path,
                                  tmp_path: Path) -> None:
    argv = [a.format(store=store, npz=npz, tmp=tmp_path) for a in args]
    proc = run(*argv, "-q") if argv[0] == "convert" else run(*argv)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    one_line_error(proc, needle)
    assert not (tmp_path / "x.zarr").exists() and not (tmp_path / "x.npz").exists()
    assert leftovers(tmp_path) == []
