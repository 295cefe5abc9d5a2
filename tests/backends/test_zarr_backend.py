"""Zarr-specific behaviour: persistence across processes, multiml stores, URLs, modes, damage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import storegate
from storegate import StoreGate
from storegate.backends.zarr_backend import ZarrBackend

zarr = pytest.importorskip("zarr")


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_reopen_in_another_process_needs_no_compile(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    sg = StoreGate("zarr", {"output_dir": str(path)}, data_id="jets")
    x = np.arange(40, dtype="f4").reshape(20, 2)
    sg.add_data("zeta", x[:, 0], phase=(0.5, 0.25, 0.25))
    sg.add_data("alpha", x[:, 1], phase=(0.5, 0.25, 0.25))
    sg.add_data(("b2", "b1"), np.stack([x, x + 100], axis=1), phase=(0.5, 0.25, 0.25))
    sg.compile()
    sg.close()
    res = run_python(
        f"""
        import json, numpy as np
        from storegate import StoreGate
        sg = StoreGate("zarr", {{"output_dir": {str(path)!r}, "mode": "r"}}, data_id="jets")
        out = {{
            "meta": sg._load_meta("jets").as_dict(),
            "order": sg.get_var_names("train"),
            "valid": sg["valid"]["alpha"][:].tolist(),
            "bound": sg["test"][("b2", "b1")][0].tolist(),
            "len": [len(sg["train"]), len(sg["valid"]), len(sg["test"])],
        }}
        print(json.dumps(out))
        """
    )
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    # compile state comes from the store itself, before any read could compile implicitly
    assert out["meta"]["compiled"] is True
    assert out["meta"]["total_events"] == [10, 5, 5]
    assert out["order"] == ["zeta", "alpha", "b2", "b1"]
    assert out["valid"] == x[10:15, 1].tolist()
    assert out["bound"] == [x[15].tolist(), (x[15] + 100).tolist()]
    assert out["len"] == [10, 5, 5]


def test_buffered_appends_are_flushed_at_interpreter_exit(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    res = run_python(
        f"""
        import numpy as np
        from storegate import StoreGate
        sg = StoreGate("zarr", {{"output_dir": {str(path)!r}}}, data_id="d")
        for i in range(7):
            sg.add_data("x", np.full((3, 2), i, "f4"))
        # no compile(), no close(): the tail must still reach the disk
        """
    )
    assert res.returncode == 0, res.stderr
    sg = StoreGate("zarr", {"output_dir": str(path), "mode": "r"}, data_id="d")
    got = sg["train"]["x"][:]
    assert got.shape == (21, 2)
    assert (got[::3, 0] == np.arange(7)).all()


def test_appends_buffer_to_whole_chunks(tmp_path: Path) -> None:
    be = ZarrBackend(output_dir=str(tmp_path / "s.zarr"), chunk_bytes=64 * 16 * 4)
    be.create_data_id("d")
    rows = np.arange(1000 * 16, dtype="f4").reshape(1000, 16)
    for i in range(0, 1000, 10):
        be.append("d", "train", "x", rows[i : i + 10])
    arr = zarr.open_array(str(tmp_path / "s.zarr" / "d" / "train" / "x"), mode="r")
    assert arr.chunks == (64, 16)
    assert arr.shape[0] % 64 == 0  # only whole chunks were written so far
    assert be.info("d", "train", "x").length == 1000  # but the rows are all visible
    np.testing.assert_array_equal(be.read("d", "train", "x", np.arange(999, -1, -7)),
                                  rows[::-1][::7])
    be.flush()
    assert zarr.open_array(str(tmp_path / "s.zarr" / "d" / "train" / "x"), mode="r").shape == (
        1000, 16)


def test_chunks_sized_by_bytes_and_small_vars_stay_small(tmp_path: Path) -> None:
    sg = StoreGate("zarr", {"output_dir": str(tmp_path / "s.zarr")}, data_id="d")
    sg.add_data("big", np.zeros((100_000, 64), "f4"))
    sg.add_data("tiny", np.zeros(10, "i8"), phase="valid")
    sg.compile()
    big = zarr.open_array(str(tmp_path / "s.zarr/d/train/big"), mode="r")
    tiny = zarr.open_array(str(tmp_path / "s.zarr/d/valid/tiny"), mode="r")
    assert big.chunks[0] * 64 * 4 == 4 << 20  # 4 MiB chunks
    assert tiny.chunks[0] <= 16
    sg2 = StoreGate("zarr", {"output_dir": str(tmp_path / "c.zarr"), "chunk": 1000}, data_id="d")
    sg2.add_data("x", np.zeros((2600, 4, 5), "f4"))
    sg2.compile()
    assert zarr.open_array(str(tmp_path / "c.zarr/d/train/x"), mode="r").chunks == (1000, 4, 5)


@pytest.mark.parametrize("compressor", ["default", None, "lz4", "zstd", "blosc-zstd"])
def test_compressor_is_per_store(tmp_path: Path, compressor: object) -> None:
    data = np.tile(np.arange(100, dtype="f4"), (500, 1))
    a = StoreGate("zarr", {"output_dir": str(tmp_path / "a.zarr"), "compressor": compressor},
                  data_id="d")
    a.add_data("x", data)
    b = StoreGate("zarr", {"output_dir": str(tmp_path / "b.zarr")}, data_id="d")
    b.add_data("x", data)
    a.compile()
    b.compile()
    np.testing.assert_array_equal(a["train"]["x"][:], data)
    assert b.db.info("d", "train", "x").codec == "none"
    expected = {"default": "none", None: "none", "lz4": "blosc", "zstd": "zstd",
                "blosc-zstd": "blosc"}[compressor]  # type: ignore[index]
    assert a.db.info("d", "train", "x").codec == expected


def test_unknown_compressor_and_mode_are_refused(tmp_path: Path) -> None:
    with pytest.raises(storegate.StoregateError, match="unknown compressor 'brotli'"):
        StoreGate("zarr", {"output_dir": str(tmp_path / "a"), "compressor": "brotli"})
    with pytest.raises(storegate.StoregateError, match="unknown mode 'rw'"):
        StoreGate("zarr", {"output_dir": str(tmp_path / "a"), "mode": "rw"})
    assert not (tmp_path / "a").exists()


def write_multiml_store(path: Path) -> dict[str, np.ndarray]:
    """A store laid out exactly as multiml (zarr 2.17) wrote them: v2, blosc, no attributes."""
    import numcodecs

    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    data = {}
    d = root.create_group("mm")
    for phase, n in (("train", 6), ("valid", 2), ("test", 2)):
        g = d.create_group(phase)
        for var, k in (("var1", (3,)), ("var0", ())):
            arr = (np.arange(n * int(np.prod(k or (1,))), dtype="f4") + len(data) * 100)
            arr = arr.reshape((n, *k))
            z = g.create_array(var, shape=arr.shape, chunks=(4, *k), dtype="f4",
                               compressors=numcodecs.Blosc("lz4", 5, 1))
            z[:] = arr
            data[f"{phase}/{var}"] = arr
    return data


def test_opens_and_appends_to_multiml_zarr_v2_stores(tmp_path: Path) -> None:
    path = tmp_path / "mm.zarr"
    data = write_multiml_store(path)
    assert not (path / "mm" / "train" / "var0" / ".zattrs").exists() or json.loads(
        (path / "mm" / "train" / "var0" / ".zattrs").read_text()) == {}
    sg = StoreGate("zarr", {"output_dir": str(path)}, data_id="mm")
    assert sg.get_data_ids() == ["mm"]
    assert sg.get_var_names("train") == ["var0", "var1"]  # alphabetical, as multiml listed
    np.testing.assert_array_equal(sg["train"]["var1"][:], data["train/var1"])
    np.testing.assert_array_equal(sg["all"]["var0"][:], np.concatenate(
        [data["train/var0"], data["valid/var0"], data["test/var0"]]))
    sg.add_data("var1", np.ones((2, 3), "f4"), phase="test")
    sg.add_data("var0", np.full(2, 7, "f4"), phase="test")
    sg.add_data("new", np.arange(6), phase="train")
    sg.compile()
    sg.close()
    again = StoreGate("zarr", {"output_dir": str(path), "mode": "r"}, data_id="mm")
    assert again.get_metadata()["total_events"] == [6, 2, 4]
    assert again.get_var_names("train") == ["var0", "var1", "new"]
    np.testing.assert_array_equal(again["test"]["var0"][(2, 4)], [7, 7])
    # still a format-2 store that zarr 2 readers open
    assert (path / "mm" / "test" / "var1" / ".zarray").exists()
    meta = json.loads((path / "mm" / "train" / "new" / ".zarray").read_text())
    assert meta["zarr_format"] == 2


def test_fsspec_memory_url(tmp_path: Path) -> None:
    pytest.importorskip("fsspec")
    url = f"memory://storegate-test-{os.getpid()}/s.zarr"
    sg = StoreGate("zarr", {"output_dir": url}, data_id="d")
    sg.add_data(("a", "b"), np.arange(24).reshape(12, 2), phase=(0.5, 0.25, 0.25))
    sg.compile()
    sg.astype("a", "f8", phase="all")  # exercises rename through fsspec
    again = StoreGate("zarr", {"output_dir": url, "mode": "r"}, data_id="d")
    assert again.get_var_names("train") == ["a", "b"]
    np.testing.assert_array_equal(again["valid"]["a"][:], [12.0, 14.0, 16.0])
    assert again["valid"]["a"][:].dtype == np.float64


def test_modes(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    with pytest.raises(storegate.StoreNotFoundError, match=r"s\.zarr"):
        StoreGate("zarr", {"output_dir": str(path), "mode": "r"})
    assert not path.exists()
    sg = StoreGate("zarr", {"output_dir": str(path), "mode": "w-"}, data_id="a")
    sg.add_data("x", np.arange(3))
    sg.close()
    with pytest.raises(storegate.StoregateError, match="already exists"):
        StoreGate("zarr", {"output_dir": str(path), "mode": "w-"})
    ro = StoreGate("zarr", {"output_dir": str(path), "mode": "r"}, data_id="a")
    with pytest.raises(storegate.DataIdNotFoundError, match="read-only"):
        ro.set_data_id("b")
    assert ro.data_id == "a"
    wiped = StoreGate("zarr", {"output_dir": str(path), "mode": "w"}, data_id="c")
    assert wiped.get_data_ids() == ["c"]


def test_readonly_refuses_every_write_and_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    sg = StoreGate("zarr", {"output_dir": str(path)}, data_id="d")
    sg.add_data("x", np.arange(10.0), phase=(0.8, 0.1, 0.1))
    sg.close()
    before = sorted(str(p.relative_to(path)) + str(p.stat().st_size) for p in path.rglob("*"))
    ro = StoreGate("zarr", {"output_dir": str(path), "mode": "r"}, data_id="d")
    writes = [
        lambda: ro.add_data("x", np.arange(2.0)),
        lambda: ro.add_data("y", np.arange(8.0)),
        lambda: ro.update_data("x", np.zeros(8)),
        lambda: ro.create_empty("z", (4,)),
        lambda: ro.delete_data("x", "all"),
        lambda: ro.astype("x", "f4"),
        lambda: ro.shuffle(),
        lambda: ro.clear_data(),
        lambda: ro["train"]["x"].__setitem__(slice(0, 2), np.zeros(2)),
    ]
    for write in writes:
        with pytest.raises(storegate.ReadOnlyError, match="read-only") as err:
            write()
        assert isinstance(err.value, PermissionError)
    after = sorted(str(p.relative_to(path)) + str(p.stat().st_size) for p in path.rglob("*"))
    assert after == before
    np.testing.assert_array_equal(ro["all"]["x"][:], np.arange(10.0))


def test_foreign_and_damaged_stores_give_clear_errors(tmp_path: Path) -> None:
    file_path = tmp_path / "not-a-store.txt"
    file_path.write_text("hello")
    with pytest.raises(storegate.CorruptStoreError, match="is a file"):
        StoreGate("zarr", {"output_dir": str(file_path)})
    bad = tmp_path / "bad.zarr"
    bad.mkdir()
    (bad / "zarr.json").write_text("{ this is not json")
    with pytest.raises(storegate.CorruptStoreError, match=r"bad\.zarr"):
        StoreGate("zarr", {"output_dir": str(bad)})
    # a var whose array vanished behind storegate's back
    path = tmp_path / "s.zarr"
    sg = StoreGate("zarr", {"output_dir": str(path)}, data_id="d")
    sg.add_data(("x", "y"), np.zeros((4, 2)))
    sg.close()
    import shutil

    shutil.rmtree(path / "d" / "train" / "y")
    sg = StoreGate("zarr", {"output_dir": str(path)}, data_id="d")
    with pytest.raises(storegate.CorruptStoreError, match="'y'"):
        sg["train"]["y"][:]


def test_interrupted_rewrite_is_rolled_back_or_finished(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    sg = StoreGate("zarr", {"output_dir": str(path)}, data_id="d")
    sg.add_data(("x", "y"), np.arange(20).reshape(10, 2))
    sg.close()
    phase_dir = path / "d" / "train"
    # crash after moving the old copy aside, before the new one took its place
    os.replace(phase_dir / "x", phase_dir / ".sg-old-x")
    (phase_dir / ".sg-tmp-y").mkdir()  # an unfinished temporary
    sg = StoreGate("zarr", {"output_dir": str(path)}, data_id="d")
    np.testing.assert_array_equal(sg["train"]["x"][:], np.arange(0, 20, 2))
    assert not (phase_dir / ".sg-old-x").exists()
    assert not (phase_dir / ".sg-tmp-y").exists()
    sg.close()
    # crash after the new copy took its place, before the old one was removed
    import shutil

    shutil.copytree(phase_dir / "x", phase_dir / ".sg-old-x")
    sg = StoreGate("zarr", {"output_dir": str(path)}, data_id="d")
    assert sg.get_var_names() == ["x", "y"]
    # an open that only reads leaves the store alone (another process may be writing it);
    # the first write, holding the writer lock, finishes the swap
    assert (phase_dir / ".sg-old-x").exists()
    sg.compile()
    assert sg.get_var_names() == ["x", "y"]
    assert not (phase_dir / ".sg-old-x").exists()


def test_gathers_without_arena_match(tmp_path: Path) -> None:
    data = np.random.default_rng(1).standard_normal((5000, 8)).astype("f4")
    with_cache = StoreGate("zarr", {"output_dir": str(tmp_path / "a.zarr"), "chunk": 300},
                           data_id="d")
    no_cache = StoreGate("zarr", {"output_dir": str(tmp_path / "a.zarr"), "cache_bytes": 0,
                                  "chunk": 300}, data_id="d")
    with_cache.add_data("x", data)
    with_cache.compile()
    idx = np.random.default_rng(2).integers(0, 5000, 700)
    for sg in (with_cache, no_cache):
        np.testing.assert_array_equal(sg["train"]["x"][idx], data[idx])
        np.testing.assert_array_equal(sg["train"]["x"][100:4000:7], data[100:4000:7])
        np.testing.assert_array_equal(sg["train"]["x"][4999], data[4999])
        assert sg["train"]["x"][[]].shape == (0, 8)


def test_writes_reach_the_arena_and_the_disk(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    sg = StoreGate("zarr", {"output_dir": str(path), "chunk": 16}, data_id="d")
    data = np.arange(100, dtype="i4")
    sg.add_data("x", data)
    sg["train"]["x"][np.arange(100)]  # fill the arena
    sg.update_data("x", np.array([-1, -2, -3]), index=(5, 8))
    sg.update_data("x", np.array([7, 8, 9]), index=[90, 91, 92])
    expected = data.copy()
    expected[5:8] = [-1, -2, -3]
    expected[90:93] = [7, 8, 9]
    np.testing.assert_array_equal(sg["train"]["x"][:], expected)
    sg.close()
    reopened = StoreGate("zarr", {"output_dir": str(path), "mode": "r"}, data_id="d")
    np.testing.assert_array_equal(reopened["train"]["x"][:], expected)
    be = sg.db
    be.write("d", "train", "x", np.array([3, 3, 60]), np.array([10, 11, 12], "i4"))
    assert be.read("d", "train", "x", 3) == 11  # numpy semantics: the last write wins
    assert be.read("d", "train", "x", 60) == 12


def test_temporary_store_is_removed(tmp_path: Path) -> None:
    be = ZarrBackend()
    location = Path(be.location)
    be.create_data_id("d")
    be.append("d", "train", "x", np.arange(3))
    be.flush()
    assert location.exists()
    del be
    import gc

    gc.collect()
    assert not location.exists()


WRITER = """
import sys, numpy as np
from storegate import StoreGate
sg = StoreGate("zarr", {"output_dir": sys.argv[1], "chunk": 64}, data_id="d")
i = int(sys.argv[2])
print("ready", flush=True)
while True:
    # 100 rows: one whole 64-row chunk written at once, a partly filled one buffered
    sg.add_data(("x", "y"), np.full((100, 2, 8), i, "f4"))
    sg.compile()  # writes the tail chunk and commits the lengths
    i += 1
"""


@pytest.mark.parametrize("delay", [0.05, 0.3, 0.7])
def test_writer_killed_mid_append_leaves_previous_content(tmp_path: Path, delay: float) -> None:
    import signal
    import time

    path = tmp_path / "s.zarr"
    sg = StoreGate("zarr", {"output_dir": str(path), "chunk": 64}, data_id="d")
    sg.add_data(("x", "y"), np.full((100, 2, 8), -1, "f4"))
    sg.compile()
    sg.close()
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), "0"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    # Each var on its own holds a prefix of what was written (no zero-filled rows that were
    # never written, no torn rows). x and y may differ by the batch the kill interrupted: a
    # multi-var add_data is not one transaction yet (the reliability issue adds that).
    be = ZarrBackend(output_dir=str(path))
    for var in ("x", "y"):
        rows = be.read("d", "train", var, slice(0, be.info("d", "train", var).length, 1))
        assert rows.shape[1:] == (8,)
        values = rows[:, 0]
        assert (rows == values[:, None]).all()  # no torn rows
        # the content is -1 x 100 then 0, 0, ..., 1, 1, ...: a prefix of what was written,
        # with no zero-filled rows that were never written
        assert (values[:100] == -1).all()
        steps = values[100:]
        assert (np.diff(steps) >= 0).all() and (np.diff(steps) <= 1).all()
        if steps.size:
            assert steps[0] == 0
            counts = np.bincount(steps.astype(np.int64))
            assert (counts[:-1] == 100).all()  # whole batches, except possibly the last one


def _child_gather(be: ZarrBackend, queue: object) -> None:
    """In a forked child: gather through the arena inherited from the parent, with chunk
    reading disabled, so any refill would fail."""
    import storegate.backends.zarr_backend as zb

    def boom(*args: object) -> None:
        raise AssertionError("the child re-read chunks the parent had decoded")

    zb._filler = boom  # type: ignore[assignment]
    try:
        rows = be.read("d", "train", "x", np.array([5, 0, 99], dtype=np.int64))
        queue.put(rows.tolist())  # type: ignore[attr-defined]
    except BaseException as err:  # report instead of dying silently
        queue.put(repr(err))  # type: ignore[attr-defined]


def test_forked_child_reuses_the_parents_decoded_arena(tmp_path: Path) -> None:
    import multiprocessing

    be = ZarrBackend(output_dir=str(tmp_path / "s.zarr"), chunk=16)
    be.create_data_id("d")
    data = np.arange(200, dtype=np.float32).reshape(100, 2)
    be.append("d", "train", "x", data)
    be.read("d", "train", "x", np.arange(100, dtype=np.int64))  # fills the whole arena
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child_gather, args=(be, queue))
    proc.start()
    got = queue.get(timeout=60)
    proc.join(60)
    assert got == data[[5, 0, 99]].tolist(), got
    # the parent's arena and handles are untouched by the child
    assert be.read("d", "train", "x", np.array([1], dtype=np.int64)).tolist() == [[2.0, 3.0]]


def test_temporary_store_is_removed_only_by_the_process_that_made_it(tmp_path: Path) -> None:
    """The finalizer of a backend's temporary directory runs in forked children too (when
    their copy is collected); it must delete nothing there."""
    import multiprocessing

    from storegate.backends.lifecycle import remove_own_tmpdir

    path = tmp_path / "tmpstore"
    path.mkdir()
    ctx = multiprocessing.get_context("fork")
    proc = ctx.Process(target=remove_own_tmpdir, args=(str(path), os.getpid()))
    proc.start()
    proc.join(60)
    assert proc.exitcode == 0 and path.is_dir()  # the child is not the owner
    remove_own_tmpdir(str(path), os.getpid())
    assert not path.exists()
