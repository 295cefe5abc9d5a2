"""storegate.dask: lazy dask views (to_dask) and parallel, chunk-aligned writes (from_dask).

The cluster tests run a real ``dask.distributed.LocalCluster`` with two worker processes
(started once for the module, not set as dask's default scheduler: tests pass
``scheduler=client`` explicitly, the others use threads). Stores are real zarr/parquet/hdf5
directories under ``tmp_path`` and a bucket on the local S3 server.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

from storegate import (  # noqa: E402
    DtypeError,
    InvalidArgumentError,
    InvalidNameError,
    NoDataIdError,
    ReadOnlyError,
    ShapeMismatchError,
    StoreChangedError,
    StoreGate,
    UnsupportedOperationError,
    VarExistsError,
    VarNotFoundError,
)
from storegate.backends.base import TEMP_PREFIX  # noqa: E402
from storegate.backends.numpy_backend import NumpyBackend  # noqa: E402
from storegate.backends.zarr_backend import ZarrBackend  # noqa: E402
from storegate.dask import _client_tmp, from_dask, to_dask  # noqa: E402

THREADS = "threads"


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    """Two worker processes, one thread each; not dask's default scheduler."""
    cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                       memory_limit="2GiB", dashboard_address=None)
    cl = distributed.Client(cluster, set_as_default=False)
    try:
        yield cl
    finally:
        cl.close()
        cluster.close()


def zarr_gate(tmp_path: Path, name: str = "s.zarr", **args: Any) -> StoreGate:
    return StoreGate("zarr", {"output_dir": str(tmp_path / name), **args}, data_id="d")


def gate_for(backend: str, tmp_path: Path) -> StoreGate:
    if backend == "numpy":
        return StoreGate("numpy", data_id="d")
    if backend == "hdf5":
        return StoreGate("hdf5", {"path": str(tmp_path / "s.h5")}, data_id="d")
    return StoreGate(backend, {"output_dir": str(tmp_path / f"s.{backend}")}, data_id="d")


class CountingNumpy(NumpyBackend):
    """The numpy backend, counting reads (to see that building a dask array reads nothing)."""

    name = "numpy"

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def read(self, data_id: str, phase: str, var: str, index: Any) -> Any:
        self.reads += 1
        return super().read(data_id, phase, var, index)


class CountingZarr(ZarrBackend):
    reads = 0  # a class counter: threads share the backend object anyway

    def read(self, data_id: str, phase: str, var: str, index: Any) -> Any:
        type(self).reads += 1
        return super().read(data_id, phase, var, index)


def raw(sg: StoreGate, phase: str, var: str) -> np.ndarray:
    """A whole var, read from the backend (no compile: phases may be inconsistent)."""
    n = sg.db.info("d", phase, var).length
    return np.asarray(sg.db.read("d", phase, var, slice(0, n, 1)))


def no_temporaries(sg: StoreGate) -> bool:
    """No temporary var left: none under the client's names and, in a local zarr store, no
    ``.sg-tmp-*`` directory at all (parallel writes use unique names)."""
    db = sg.db
    phases = ("train", "valid", "test")
    if any(db.has_var("d", p, _client_tmp(v)) for p in phases for v in ("x", "y")):
        return False
    if isinstance(db, ZarrBackend) and "://" not in db.location:
        return not any(n.startswith(TEMP_PREFIX) for p in phases
                       for n in os.listdir(Path(db.location) / "d" / p))
    return True


# ---------------------------------------------------------------------------- acceptance
def test_from_dask_200mb_on_a_two_process_cluster(client: Any, tmp_path: Path) -> None:
    """The acceptance test: 200 MiB of float64 generated on the workers, written by them into a
    zarr store, equal to the source block by block; to_dask(...).sum() equals numpy's."""
    n, k = 819_200, 32  # 26,214,400 float64 = 200 MiB
    # integer-valued floats: every sum is exact, whatever the order of additions
    src = da.random.default_rng(2024).integers(0, 1000, size=(n, k), chunks=(50_000, k))
    src = src.astype("f8")
    assert src.nbytes == 200 * 2**20
    sg = zarr_gate(tmp_path)
    from_dask(sg, "x", src, scheduler=client)
    sg.close()

    # the rows were written by the workers (each opened the var for region writes)
    opened = client.run(lambda: len(__import__(
        "storegate.backends.zarr_backend", fromlist=["_"])._ZarrRegionWriter._opened))
    assert sum(opened.values()) >= 1

    ro = StoreGate("zarr", {"output_dir": str(tmp_path / "s.zarr"), "mode": "r"}, data_id="d")
    info = ro.db.info("d", "train", "x")
    assert info.shape == (n, k) and info.dtype == np.float64
    assert ro.db.check("d", "train", "x") == []  # every chunk file present, none marked sparse
    total = 0.0
    starts = np.concatenate([[0], np.cumsum(src.chunks[0])])
    for i in range(src.numblocks[0]):  # one source block at a time in this process
        (expected,) = client.compute([src.blocks[i]], sync=True)
        got = ro.get_data("x", "train", (int(starts[i]), int(starts[i + 1])))
        np.testing.assert_array_equal(got, expected)
        total += float(np.sum(expected))
    lazy = to_dask(ro, "x")
    assert set(lazy.chunks[0][:-1]) == {info.chunks[0]}  # the store's chunk rows
    assert lazy.sum().compute(scheduler=client) == total
    assert float(lazy[:1000].sum().compute(scheduler=client)) == float(
        np.sum(ro.get_data("x", "train", (0, 1000))))
    ro.close()


def test_from_dask_to_s3_from_the_workers(client: Any, local_s3: Any, s3_url: str) -> None:
    url = s3_url + "/store.zarr"
    args = {"output_dir": url, "storage_options": local_s3.storage_options,
            "chunk_bytes": 64 << 10}
    sg = StoreGate("zarr", args, data_id="d")
    src = da.arange(120_000, dtype="i8", chunks=7_000).reshape(40_000, 3)
    from_dask(sg, "x", src, phase=(0.75, 0.25, 0.0), scheduler=client)
    from_dask(sg, "y", src[:, 0] * 2, phase=(0.75, 0.25, 0.0), scheduler=client)
    sg.compile()
    again = StoreGate("zarr", {**args, "mode": "r"}, data_id="d")
    np.testing.assert_array_equal(again.get_data("x", "all"), src.compute())
    np.testing.assert_array_equal(again.get_data("y", "valid"), np.arange(30_000, 40_000) * 6)
    lazy = to_dask(again, ("x", "x"), "all")
    assert lazy.shape == (40_000, 2, 3)
    assert int(lazy.sum().compute(scheduler=client)) == 2 * int(src.sum().compute())
    again.close()
    sg.close()  # while the S3 server runs (it stops at the end of the session)


def test_a_failing_task_on_the_cluster_leaves_the_store_unchanged(client: Any,
                                                                  tmp_path: Path) -> None:
    sg = zarr_gate(tmp_path, chunk=1_000)
    old = np.arange(5_000.0)
    sg.add_data("x", old)
    sg.compile()

    def boom(block: np.ndarray) -> np.ndarray:
        if block[0] >= 20_000:
            raise ZeroDivisionError("bad block")
        return block

    src = da.arange(30_000.0, chunks=5_000).map_blocks(boom)
    with pytest.raises(ZeroDivisionError) as err:
        from_dask(sg, "x", src, mode="overwrite", scheduler=client)
    assert "temporary copy was removed" in "\n".join(err.value.__notes__)
    np.testing.assert_array_equal(sg.get_data("x"), old)
    assert no_temporaries(sg)


# ---------------------------------------------------------------------------- to_dask
def test_to_dask_is_lazy_and_reads_whole_stored_chunks(tmp_path: Path) -> None:
    CountingZarr.reads = 0
    sg = StoreGate(CountingZarr, {"output_dir": str(tmp_path / "s.zarr"), "chunk": 64},
                   data_id="d")
    x = np.arange(1_000 * 3, dtype="f4").reshape(1_000, 3)
    sg.add_data("x", x)
    sg.compile()
    CountingZarr.reads = 0
    lazy = to_dask(sg, "x")
    assert CountingZarr.reads == 0
    assert lazy.chunks == ((64,) * 15 + (40,), (3,))
    assert lazy.dtype == np.float32
    np.testing.assert_array_equal(lazy.compute(scheduler=THREADS), x)
    assert CountingZarr.reads == 16  # one read per stored chunk
    assert lazy.blocks[3].compute(scheduler=THREADS).tolist() == x[192:256].tolist()
    # block_rows groups whole chunks
    assert to_dask(sg, "x", block_rows=100).chunks[0] == (128,) * 7 + (104,)


def test_to_dask_on_numpy_counts_no_read_until_compute() -> None:
    sg = StoreGate(CountingNumpy, data_id="d")
    sg.add_data(("a", "b"), np.arange(40.0).reshape(20, 2), phase=(10, 6, 4))
    sg.compile()
    db = sg.db
    assert isinstance(db, CountingNumpy)
    lazy = to_dask(sg, ("a", "b"), "all", block_rows=4)
    ds = to_dask(sg, ["a", "b"], "all", as_xarray=True, block_rows=4)
    assert db.reads == 0
    assert lazy.chunks[0] == (4, 4, 2, 4, 2, 4)  # phase boundaries kept: 10 | 6 | 4
    values = lazy.compute(scheduler=THREADS)
    assert db.reads == 12  # 6 blocks x 2 vars
    np.testing.assert_array_equal(values, sg.get_data(("a", "b"), "all"))
    assert float(ds["b"].sum().compute(scheduler=THREADS)) == float(np.arange(1, 40, 2).sum())


@pytest.mark.parametrize("backend", ["numpy", "zarr", "hybrid", "parquet", "hdf5"])
def test_to_dask_matches_get_data_on_every_backend(backend: str, tmp_path: Path) -> None:
    sg = gate_for(backend, tmp_path)
    rng = np.random.default_rng(0)
    img = rng.normal(size=(50, 3, 4)).astype("f4")
    lab = rng.integers(0, 5, size=50)
    sg.add_data("img", img, phase=(0.6, 0.2, 0.2))
    sg.add_data(("u", "v"), rng.normal(size=(50, 2, 3)), phase=(0.6, 0.2, 0.2))
    sg.add_data("lab", lab, phase=(0.6, 0.2, 0.2))
    sg.compile()
    for phase in ("train", "valid", "test", "all"):
        got = to_dask(sg, ["img", ("u", "v"), "lab"], phase)
        want = sg.get_data(["img", ("u", "v"), "lab"], phase)
        for g, w in zip(got, want, strict=True):
            assert g.shape == w.shape and g.dtype == w.dtype
            np.testing.assert_array_equal(g.compute(scheduler=THREADS), w)
    ds = to_dask(sg, ["img", "lab"], "all", as_xarray=True)
    assert ds["img"].dims == ("row", "img_dim_1", "img_dim_2")
    assert ds.sizes["row"] == 50 and ds.attrs["phase"] == "all"
    assert ds.attrs["backend"] == backend
    np.testing.assert_array_equal(ds["img"].values, img)
    sg.close()


def test_to_dask_errors(tmp_path: Path) -> None:
    sg = StoreGate("numpy", data_id="d")
    sg.add_data("x", np.zeros((4, 2)), phase=(2, 2, 0))
    sg.add_data("r", [np.zeros(1), np.zeros(3), np.zeros(2), np.zeros(0)], phase=(2, 2, 0))
    sg.add_data("only_train", np.zeros(2))
    with pytest.raises(VarNotFoundError, match="'nope'"):
        to_dask(sg, "nope")
    with pytest.raises(UnsupportedOperationError, match="ragged"):
        to_dask(sg, "r")
    sg.delete_data("only_train")
    sg.add_data("t", np.zeros(2), phase="train")
    with pytest.raises(VarNotFoundError, match=r"'t'.*'valid'"):
        to_dask(sg, "t", "all")
    with pytest.raises(ShapeMismatchError, match="same row shape"):
        to_dask(sg, ("x", "t"))
    with pytest.raises(InvalidArgumentError):
        to_dask(sg, 3)
    with pytest.raises(InvalidArgumentError):
        to_dask(sg, ())
    with pytest.raises(InvalidArgumentError, match="block_rows"):
        to_dask(sg, "x", block_rows=0)
    with pytest.raises(InvalidArgumentError, match="StoreGate"):
        to_dask(np.zeros(3), "x")
    with pytest.raises(NoDataIdError):
        to_dask(StoreGate("numpy"), "x")
    with pytest.raises(KeyError):  # UnknownPhaseError
        to_dask(sg, "x", "training")


def test_to_dask_notices_a_var_that_changed(tmp_path: Path) -> None:
    sg = zarr_gate(tmp_path, chunk=10)
    sg.add_data("x", np.arange(50.0))
    lazy = to_dask(sg, "x")
    sg.delete_data("x")
    sg.add_data("x", np.arange(25.0))
    with pytest.raises(StoreChangedError, match="to_dask"):
        lazy.compute(scheduler=THREADS)


# ---------------------------------------------------------------------------- from_dask
def test_from_dask_zarr_modes_and_phase_specs(tmp_path: Path) -> None:
    sg = zarr_gate(tmp_path, chunk=16)
    src = da.arange(300, dtype="i4", chunks=37).reshape(100, 3)
    from_dask(sg, "x", src, phase=(0.7, 0.2, 0.1), scheduler=THREADS)
    assert [sg.db.info("d", p, "x").length for p in ("train", "valid", "test")] == [70, 20, 10]
    np.testing.assert_array_equal(sg.get_data("x", "all"), src.compute())
    assert sg.db.info("d", "train", "x").chunks == (16, 3)
    # 'all' splits by the compiled sizes
    from_dask(sg, "y", src[:, 1].astype("f8"), phase="all", do_compile=True)
    assert sg.get_metadata()["total_events"] == [70, 20, 10]
    np.testing.assert_array_equal(sg.get_data("y", "test"), np.arange(271, 300, 3.0))
    # create refuses an existing var, overwrite replaces it (new dtype and row shape)
    with pytest.raises(VarExistsError, match="mode='overwrite'"):
        from_dask(sg, "x", src[:70], scheduler=THREADS)
    from_dask(sg, "x", da.ones((70, 2), dtype="u1", chunks=9), mode="overwrite")
    assert sg.get_data("x").dtype == np.uint8 and sg.get_data("x").shape == (70, 2)
    assert sg.get_var_names("train") == ["x", "y"]  # kept its place
    # append: onto a partly filled last chunk (70 = 4 x 16 + 6), cast to the var's dtype
    from_dask(sg, "x", da.full((45, 2), 7, dtype="u2", chunks=11), mode="append")
    got = raw(sg, "train", "x")
    assert got.dtype == np.uint8 and got.shape == (115, 2)
    assert (got[:70] == 1).all() and (got[70:] == 7).all()
    # append to a var that does not exist yet creates it
    from_dask(sg, "z", da.zeros(5, chunks=2), phase="test", mode="append")
    assert raw(sg, "test", "z").tolist() == [0.0] * 5
    assert no_temporaries(sg)
    # numpy input and an empty array
    from_dask(sg, "w", np.arange(10.0), phase="valid")
    assert raw(sg, "valid", "w").tolist() == list(np.arange(10.0))
    from_dask(sg, "e", da.zeros((0, 4), chunks=1), phase="valid")  # as add_data: no var
    assert not sg.db.has_var("d", "valid", "e")
    sg.close()
    ro = StoreGate("zarr", {"output_dir": str(tmp_path / "s.zarr"), "mode": "r"}, data_id="d")
    for p, v in (("train", "x"), ("valid", "x"), ("train", "y"), ("valid", "w")):
        assert ro.db.check("d", p, v) == []


def test_from_dask_aligns_blocks_to_stored_chunks(tmp_path: Path) -> None:
    """Each write task covers whole stored chunks, whatever the source's blocks are."""
    from storegate.dask import _aligned

    src = da.zeros((1_000, 4), chunks=(137, 2))
    out = _aligned(src, 64, None)
    assert out.chunks[1] == (4,)
    assert all(s % 64 == 0 for s in np.cumsum(out.chunks[0])[:-1])
    kept = da.zeros(1_000, chunks=256)  # already aligned: not rechunked
    assert _aligned(kept, 64, None) is kept
    assert _aligned(kept, 64, 100).chunks[0] == (128,) * 7 + (104,)
    sg = zarr_gate(tmp_path, chunk=64)
    from_dask(sg, "x", da.arange(4_000.0, chunks=137).reshape(1_000, 4), block_rows=100)
    np.testing.assert_array_equal(sg.get_data("x"), np.arange(4_000.0).reshape(1_000, 4))


@pytest.mark.parametrize("backend", ["numpy", "parquet", "hybrid", "hdf5"])
def test_from_dask_falls_back_to_ordered_client_writes(backend: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import storegate.dask as sgdask

    monkeypatch.setattr(sgdask, "WINDOW_BYTES", 1_000)  # many windows of blocks
    sg = gate_for(backend, tmp_path)
    src = da.arange(6_000, dtype="f4", chunks=333).reshape(2_000, 3)
    from_dask(sg, "x", src, phase=(0.5, 0.5, 0.0), block_rows=50, scheduler=THREADS)
    np.testing.assert_array_equal(sg.get_data("x", "all"), src.compute())
    from_dask(sg, "x", src[:1_000] * 2, mode="overwrite", block_rows=128)
    np.testing.assert_array_equal(sg.get_data("x"), src[:1_000].compute() * 2)
    from_dask(sg, "x", da.ones((10, 3), chunks=3), mode="append")
    assert sg.get_data("x").shape == (1_010, 3) and (sg.get_data("x")[-10:] == 1).all()
    with pytest.raises(VarExistsError):
        from_dask(sg, "x", src, scheduler=THREADS)

    def boom(block: np.ndarray) -> np.ndarray:
        if block[0, 0] >= 3_000:
            raise RuntimeError("bad block")
        return block

    before = sg.get_data("x")
    with pytest.raises(RuntimeError, match="bad block"):
        from_dask(sg, "x", src.map_blocks(boom), mode="append", scheduler=THREADS)
    np.testing.assert_array_equal(sg.get_data("x"), before)
    assert no_temporaries(sg)
    sg.close()


def test_from_dask_memory_url_zarr_is_written_by_the_client() -> None:
    sg = StoreGate("zarr", {"output_dir": "memory://dask-test/s.zarr", "chunk": 8},
                   data_id="d")
    sg.db.create("d", "valid", "probe", (4,), np.dtype("f8"))
    assert sg.db.region_writer("d", "valid", "probe") is None  # workers cannot see memory://
    from_dask(sg, "x", da.arange(100, chunks=30), scheduler=THREADS)
    assert sg.get_data("x").tolist() == list(range(100))


def test_from_dask_errors(tmp_path: Path) -> None:
    sg = zarr_gate(tmp_path, chunk=8)
    sg.add_data("x", np.zeros((10, 3), "f4"))
    sg.add_data("r", [np.zeros(1), np.zeros(2)], phase="valid")
    ok = da.zeros((4, 3), chunks=2)
    with pytest.raises(InvalidNameError):
        from_dask(sg, "a/b", ok)
    with pytest.raises(InvalidArgumentError, match="mode"):
        from_dask(sg, "y", ok, mode="replace")
    with pytest.raises(InvalidArgumentError, match=r"dask\.array"):
        from_dask(sg, "y", [[1, 2, 3]])
    with pytest.raises(ShapeMismatchError, match="0-d"):
        from_dask(sg, "y", np.array(3.0))
    unknown = da.zeros(10, chunks=5)
    unknown = unknown[unknown > 1]
    with pytest.raises(ShapeMismatchError, match="compute_chunk_sizes"):
        from_dask(sg, "y", unknown)
    with pytest.raises(DtypeError):
        from_dask(sg, "y", da.from_array(np.array(["a", "b"])))
    with pytest.raises(ShapeMismatchError, match=r"rows of shape \(3,\)"):
        from_dask(sg, "x", da.zeros((4, 2), chunks=2), mode="append")
    with pytest.raises(DtypeError, match="float32"):
        from_dask(sg, "x", da.zeros((4, 3), dtype="c8", chunks=2), mode="append")
    with pytest.raises(UnsupportedOperationError, match="ragged"):
        from_dask(sg, "r", da.zeros((2, 1), chunks=1), phase="valid", mode="append")
    with pytest.raises(InvalidArgumentError, match="block_rows"):
        from_dask(sg, "y", ok, block_rows=-1)
    with pytest.raises(KeyError):  # UnknownPhaseError
        from_dask(sg, "y", ok, phase="tain")
    # a block whose shape its chunks do not promise
    liar = da.zeros(12, chunks=4).map_blocks(lambda b: b[:2], dtype="f8")
    with pytest.raises(ShapeMismatchError, match="promise"):
        from_dask(sg, "y", liar, scheduler=THREADS)
    # values that do not fit the var's dtype when appending
    with pytest.raises(DtypeError):
        from_dask(sg, "x", da.full((4, 3), 1e300, chunks=2), mode="append", scheduler=THREADS)
    assert sg.get_var_names() == ["x"] and sg.get_data("x").shape == (10, 3)
    assert no_temporaries(sg)
    sg.close()
    ro = StoreGate("zarr", {"output_dir": str(tmp_path / "s.zarr"), "mode": "r"}, data_id="d")
    with pytest.raises(ReadOnlyError):
        from_dask(ro, "y", ok)


def test_region_writer_refuses_unaligned_writes(tmp_path: Path) -> None:
    be = ZarrBackend(output_dir=str(tmp_path / "s.zarr"), chunk=4)
    be.create_data_id("d")
    be.create("d", "train", "x", (10, 2), np.dtype("i8"))
    w = be.region_writer("d", "train", "x")
    assert w is not None and w.chunk_rows == 4
    for start, rows in ((2, np.zeros((2, 2))), (0, np.zeros((3, 2))), (8, np.zeros((3, 2))),
                        (0, np.zeros((4, 3)))):
        with pytest.raises(ShapeMismatchError, match="whole chunks"):
            w.write(start, rows)
    w.write(8, np.ones((2, 2), "i8"))  # the last, partial chunk
    assert be.read("d", "train", "x", slice(7, 10, 1))[:, 0].tolist() == [0, 1, 1]
    be.close()


def test_a_killed_client_leaves_only_an_invisible_temporary(tmp_path: Path) -> None:
    """kill -9 of the process running from_dask in the middle of the parallel writes: the
    var does not exist afterwards and the temporary is removed at the next writable open."""
    store = tmp_path / "s.zarr"
    script = textwrap.dedent(f"""
        import os, signal, numpy as np, dask.array as da
        from storegate import StoreGate
        from storegate.dask import from_dask
        sg = StoreGate("zarr", {{"output_dir": {str(store)!r}, "chunk": 100}}, data_id="d")
        sg.add_data("keep", np.arange(10.0), phase="valid"); sg.compile()
        def maybe_die(block):
            if block[0] >= 5_000:
                os.kill(os.getpid(), signal.SIGKILL)
            return block
        src = da.arange(10_000.0, chunks=500).map_blocks(maybe_die)
        from_dask(sg, "x", src, scheduler="sync")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    phase_dir = store / "d" / "train"
    assert list(phase_dir.glob(TEMP_PREFIX + "*"))  # the half-written temporary
    ro = StoreGate("zarr", {"output_dir": str(store), "mode": "r"}, data_id="d")
    assert ro.get_var_names("train") == [] and ro.get_var_names("valid") == ["keep"]
    ro.close()
    sg = StoreGate("zarr", {"output_dir": str(store)}, data_id="d")
    from_dask(sg, "x", da.arange(10_000.0, chunks=500), scheduler=THREADS)
    assert sg.get_var_names() == ["x"]
    np.testing.assert_array_equal(sg.get_data("x"), np.arange(10_000.0))
    sg.close()
    assert not list(phase_dir.glob(TEMP_PREFIX + "*"))


@pytest.mark.parametrize("backend", ["zarr", "parquet"])
def test_from_dask_takes_the_longest_var_names(backend: str, tmp_path: Path) -> None:
    sg = gate_for(backend, tmp_path)
    name = "v" * 255  # the longest name; its temporary must still fit a file name
    from_dask(sg, name, da.arange(10, chunks=4), scheduler=THREADS)
    assert sg.get_data(name).tolist() == list(range(10))
    sg.close()
