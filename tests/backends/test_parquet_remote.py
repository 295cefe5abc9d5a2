"""The parquet backend on fsspec URLs, beyond the contract suite (which
``test_parquet_contract.py`` runs on ``memory://`` and ``s3://``): read-only sessions write
nothing, readers see what a writer flushed, credentials and endpoint from the environment,
concurrent range requests, foreign Parquet data on S3, and the errors of bad URLs.

Every S3 test talks HTTP to the local S3-protocol server (moto, ``local_s3`` in conftest).
"""

from __future__ import annotations

import asyncio
import pickle
from typing import Any

import numpy as np
import pytest

import storegate
from storegate import StoreGate
from storegate.ragged import RaggedArray
from storegate.testing import assert_identical

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
pytest.importorskip("fsspec")

from storegate.backends.parquet_backend import (  # noqa: E402
    MANIFEST,
    ROOT_MARKER,
    ParquetBackend,
)

SMALL = {"row_group_rows": 5, "file_rows": 20}  # many row groups and files


def objects(fs: Any, bucket: str) -> dict[str, tuple[Any, bytes]]:
    """Every object in the bucket: its ETag and its bytes."""
    fs.invalidate_cache()
    out = {}
    for path, info in fs.find(bucket, detail=True).items():
        out[path] = (info.get("ETag"), fs.cat_file(path))
    return out


def fill(url: str, options: dict[str, Any]) -> dict[str, Any]:
    """A store with two data_ids, regular, multi-dimensional and ragged vars in several
    phases, and attributes; returns what was written."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((120, 3)).astype("f4")
    y = np.arange(120, dtype="i8")
    r = RaggedArray(np.arange(300, dtype="f8"), np.linspace(0, 300, 61).astype(np.int64))
    be = ParquetBackend(output_dir=url, storage_options=options, **SMALL)
    be.create_data_id("jets")
    be.append("jets", "train", "x", x)
    be.append("jets", "train", "y", y)
    be.append("jets", "valid", "r", r)
    be.set_attrs("jets", {"compiled": True})
    be.create_data_id("other")
    be.append("other", "test", "z", np.ones((7, 2, 2), "u1"))
    be.close()
    return {"x": x, "y": y, "r": r}


def read_everything(be: ParquetBackend) -> None:
    """Every read a user can make: listings, infos, attrs, whole vars, gathers, rows, checks."""
    for did in be.data_ids():
        be.get_attrs(did)
        for phase in ("train", "valid", "test"):
            for var in be.var_names(did, phase):
                n = be.info(did, phase, var).length
                be.read(did, phase, var, slice(0, n, 1))
                be.read(did, phase, var, np.array([n - 1, 0, n // 2]))
                be.read(did, phase, var, n - 1)
                be.read_many(did, phase, [var], slice(1, n, 2))
                assert be.check(did, phase, var) == []
                assert (be.stored_bytes(did, phase, var) or 0) > 0
                be.chunk_layout(did, phase, var)


# ---------------------------------------------------------------------------------- read-only
def test_readonly_session_leaves_every_object_unchanged(s3_url: str, local_s3: Any) -> None:
    url = f"{s3_url}/store.parquet"
    opts = local_s3.storage_options
    data = fill(url, opts)
    fs = local_s3.filesystem()
    bucket = s3_url[len("s3://"):]
    before = objects(fs, bucket)
    assert f"{bucket}/store.parquet/{ROOT_MARKER}" in before
    assert not any(".sg-lock" in p or ".sg-journal" in p for p in before)  # no local machinery

    be = ParquetBackend(output_dir=url, mode="r", storage_options=opts)
    read_everything(be)
    assert_identical(be.read("jets", "train", "x", np.array([119, 3, 3])), data["x"][[119, 3, 3]])
    assert be.read("jets", "valid", "r", np.array([59, 0])) == data["r"].take(np.array([59, 0]))
    for op in (lambda: be.append("jets", "train", "y", np.zeros(1, "i8")),
               lambda: be.set_attrs("jets", {}), lambda: be.delete("jets", "train", "y"),
               lambda: be.delete_data_id("other")):
        with pytest.raises(storegate.ReadOnlyError):
            op()
    with pytest.raises(storegate.DataIdNotFoundError, match="read-only"):
        be.create_data_id("new")
    clone = pickle.loads(pickle.dumps(be))  # a copy (for a worker) is read-only too
    assert clone.readonly
    assert_identical(clone.read("jets", "train", "y", slice(0, 120, 1)), data["y"])
    be.close()
    clone.close()
    # the facade's read-only open, and reads through views
    sg = StoreGate("parquet", {"output_dir": url, "mode": "r", "storage_options": opts},
                   data_id="jets")
    assert_identical(sg["train"]["y"][[5, 1]], np.array([5, 1]))
    sg.close()
    import gc

    gc.collect()  # finalizers (which flush writable backends) have run
    assert objects(fs, bucket) == before


def test_readonly_open_of_missing_store_creates_nothing(s3_url: str, local_s3: Any) -> None:
    fs = local_s3.filesystem()
    bucket = s3_url[len("s3://"):]
    with pytest.raises(storegate.StoreNotFoundError, match="mode='r'"):
        ParquetBackend(output_dir=f"{s3_url}/none", mode="r",
                       storage_options=local_s3.storage_options)
    with pytest.raises(storegate.StoreNotFoundError, match="mode='r\\+'"):
        ParquetBackend(output_dir=f"{s3_url}/none", mode="r+",
                       storage_options=local_s3.storage_options)
    assert objects(fs, bucket) == {}


# ---------------------------------------------------------------------------------- writers
def test_reader_sees_what_a_writer_flushed_when_it_reopens(s3_url: str, local_s3: Any) -> None:
    url = f"{s3_url}/store.parquet"
    opts = local_s3.storage_options
    writer = ParquetBackend(output_dir=url, storage_options=opts, **SMALL)
    writer.create_data_id("d")
    writer.append("d", "train", "x", np.arange(30.0))
    writer.flush()
    reader = ParquetBackend(output_dir=url, mode="r", storage_options=opts)
    assert_identical(reader.read("d", "train", "x", slice(0, 30, 1)), np.arange(30.0))

    writer.append("d", "train", "x", np.arange(30.0, 50.0))  # buffered: nobody sees it yet
    assert ParquetBackend(output_dir=url, mode="r", storage_options=opts).info(
        "d", "train", "x").length == 30
    writer.append("d", "train", "y", np.arange(50))
    writer.write("d", "train", "x", np.array([0]), np.array([-1.0]))
    writer.create_data_id("e")
    writer.flush()
    # the reader's own snapshot of the phase stays as it was read ...
    assert reader.info("d", "train", "x").length == 30
    # ... and a reopened reader sees everything the writer flushed
    again = ParquetBackend(output_dir=url, mode="r", storage_options=opts)
    assert again.data_ids() == ["d", "e"]
    want = np.arange(50.0)
    want[0] = -1.0
    assert_identical(again.read("d", "train", "x", slice(0, 50, 1)), want)
    assert_identical(again.read("d", "train", "y", np.array([49, 0])), np.array([49, 0]))
    writer.close()


def test_remote_writes_commit_data_before_manifest(s3_url: str, local_s3: Any) -> None:
    """Every committed manifest names only objects that exist, after appends, in-place writes
    (files replaced), renames, deletes and compaction; replaced files are deleted."""
    url = f"{s3_url}/store.parquet"
    be = ParquetBackend(output_dir=url, storage_options=local_s3.storage_options, **SMALL)
    be.create_data_id("d")
    be.append("d", "train", "x", np.arange(40))
    be.flush()
    be.append("d", "train", "y", np.arange(40.0))
    be.write("d", "train", "x", np.array([3, 33]), np.array([-3, -33]))
    be.rename("d", "train", "y", "z")
    be.flush()
    be.compact("d", "train")
    fs = local_s3.filesystem()
    fs.invalidate_cache()
    folder = f"{s3_url[5:]}/store.parquet/d/train"
    import json

    man = json.loads(fs.cat_file(f"{folder}/{MANIFEST}"))
    listed = set(man["files"])
    present = {p.rsplit("/", 1)[-1] for p in fs.find(folder)} - {MANIFEST}
    assert listed == present  # nothing missing, nothing left over
    x = np.arange(40)
    x[[3, 33]] = [-3, -33]
    assert_identical(be.read("d", "train", "x", slice(0, 40, 1)), x)
    assert be.var_names("d", "train") == ["x", "z"]
    be.delete_data_id("d")
    fs.invalidate_cache()
    assert fs.find(f"{s3_url[5:]}/store.parquet/d") == []
    assert be.data_ids() == []


def test_mode_w_wipes_a_remote_store(s3_url: str, local_s3: Any) -> None:
    url = f"{s3_url}/store.parquet"
    opts = local_s3.storage_options
    fill(url, opts)
    with pytest.raises(storegate.StoregateError, match="mode='w-'"):
        ParquetBackend(output_dir=url, mode="w-", storage_options=opts)
    be = ParquetBackend(output_dir=url, mode="w", storage_options=opts)
    assert be.data_ids() == []
    fs = local_s3.filesystem()
    fs.invalidate_cache()
    assert [p.rsplit("/", 1)[-1] for p in fs.find(s3_url[5:])] == [ROOT_MARKER]


# ---------------------------------------------------------------------------------- reads
def test_gather_fetches_byte_ranges_concurrently(s3_url: str, local_s3: Any) -> None:
    """A gather touching many row groups in several files has several range requests in
    flight at once (observed at the file system's request coroutine), and fetches only the
    ranges it needs: far fewer bytes than the files hold."""
    url = f"{s3_url}/store.parquet"
    opts = local_s3.storage_options
    x = np.random.default_rng(1).standard_normal((4000, 64)).astype("f4")  # 1 MB
    be = ParquetBackend(output_dir=url, storage_options=opts, row_group_rows=200,
                        file_rows=1000)
    be.create_data_id("d")
    be.append("d", "train", "x", x)
    be.close()
    reader = ParquetBackend(output_dir=url, mode="r", storage_options=opts, cache_bytes=0,
                            rowgroup_cache_bytes=0)
    fs = reader._state().remote.fs  # type: ignore[union-attr]
    original = fs._cat_file
    state = {"now": 0, "most": 0, "bytes": 0}

    async def counting(path: str, *args: Any, **kwargs: Any) -> Any:
        state["now"] += 1
        state["most"] = max(state["most"], state["now"])
        try:
            await asyncio.sleep(0.02)  # hold the slot so overlapping requests are visible
            data = await original(path, *args, **kwargs)
            state["bytes"] += len(data)
            return data
        finally:
            state["now"] -= 1

    fs._cat_file = counting
    try:
        idx = np.array([3990, 5, 1210, 2222, 999, 3001, 1600, 5])  # 4 files, 8 row groups
        assert_identical(reader.read("d", "train", "x", idx), x[idx])
        assert state["most"] >= 2, state
        assert state["bytes"] < x.nbytes // 2
    finally:
        fs._cat_file = original


def test_arena_gather_and_reopened_reader_on_s3(s3_url: str, local_s3: Any) -> None:
    """With the decoded arena (default), repeated random gathers equal numpy's; a ragged var
    and a var of several files too."""
    url = f"{s3_url}/store.parquet"
    opts = local_s3.storage_options
    data = fill(url, opts)
    be = ParquetBackend(output_dir=url, mode="r", storage_options=opts)
    rng = np.random.default_rng(2)
    for _ in range(3):
        idx = rng.integers(0, 120, 64)
        assert_identical(be.read("jets", "train", "x", idx), data["x"][idx])
        got_x, got_y = be.read_many("jets", "train", ["x", "y"], idx)
        assert_identical(got_x, data["x"][idx])
        assert_identical(got_y, data["y"][idx])
        ridx = rng.integers(0, 60, 16)
        assert be.read("jets", "valid", "r", ridx) == data["r"].take(ridx)


# ---------------------------------------------------------------------------------- settings
def test_credentials_and_endpoint_from_the_environment(s3_url: str, local_s3: Any) -> None:
    import s3fs

    from storegate.testing.s3 import s3_environment

    url = f"{s3_url}/env.parquet"
    s3fs.S3FileSystem.clear_instance_cache()  # clients made without the endpoint
    try:
        with s3_environment(local_s3.endpoint_url):
            be = ParquetBackend(output_dir=url)  # no storage_options at all
            be.create_data_id("d")
            be.append("d", "train", "x", np.arange(6))
            be.close()
            sg = StoreGate.open(url)  # finds the backend by the store's marker object
            assert sg.backend == "parquet" and sg.data_id == "d"
            assert_identical(sg["train"]["x"][[5, 0]], np.array([5, 0]))
            sg.close()
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
    # with explicit options the same store opens without the environment
    be = ParquetBackend(output_dir=url, mode="r", storage_options=local_s3.storage_options)
    assert_identical(be.read("d", "train", "x", slice(0, 6, 1)), np.arange(6))
    # and StoreGate.open takes them through backend_args
    sg = StoreGate.open(url, backend="parquet",
                        backend_args={"storage_options": local_s3.storage_options})
    assert sg.get_data_ids() == ["d"]


def test_guess_can_open_recognises_only_parquet_stores(s3_url: str, local_s3: Any) -> None:
    import s3fs

    from storegate.testing.s3 import s3_environment

    fill(f"{s3_url}/p.parquet", local_s3.storage_options)
    s3fs.S3FileSystem.clear_instance_cache()
    try:
        with s3_environment(local_s3.endpoint_url):
            assert ParquetBackend.guess_can_open(f"{s3_url}/p.parquet")
            assert not ParquetBackend.guess_can_open(f"{s3_url}/missing")
            assert not ParquetBackend.guess_can_open("nosuchprotocol://x/y")
    finally:
        s3fs.S3FileSystem.clear_instance_cache()


def test_bad_urls_give_clear_errors(s3_url: str, local_s3: Any) -> None:
    opts = local_s3.storage_options
    with pytest.raises(storegate.InvalidArgumentError, match="nosuchprotocol"):
        ParquetBackend(output_dir="nosuchprotocol://bucket/store")
    with pytest.raises(storegate.InvalidArgumentError, match="storage_options must be a dict"):
        ParquetBackend(output_dir=f"{s3_url}/s", storage_options="endpoint")  # type: ignore
    missing = "s3://storegate-no-such-bucket/store.parquet"
    with pytest.raises(storegate.StoreNotFoundError, match="no parquet store"):
        ParquetBackend(output_dir=missing, mode="r", storage_options=opts)
    with pytest.raises(storegate.StoreNotFoundError, match="does not exist"):
        ParquetBackend(output_dir=missing, storage_options=opts)
    # an endpoint nobody listens on: a StoregateError naming the URL, not a botocore error
    dead = {**opts, "endpoint_url": "http://127.0.0.1:9", "config_kwargs": {
        "retries": {"max_attempts": 1}, "connect_timeout": 1}}
    with pytest.raises(storegate.StoregateError, match="URL"):
        ParquetBackend(output_dir=f"{s3_url}/s", mode="r", storage_options=dead)


def test_missing_protocol_library_names_the_install() -> None:
    try:
        import gcsfs  # noqa: F401
    except ImportError:
        pass
    else:  # pragma: no cover - not installed here
        pytest.skip("gcsfs is installed")
    with pytest.raises(storegate.MissingDependencyError, match="gcsfs"):
        ParquetBackend(output_dir="gs://bucket/store.parquet")


# ---------------------------------------------------------------------------------- foreign
def test_foreign_parquet_on_s3_opens_read_only(s3_url: str, local_s3: Any) -> None:
    fs = local_s3.filesystem()
    base = f"{s3_url[5:]}/ds"
    for part, start in (("year=2023", 0), ("year=2024", 6)):
        table = pa.table({"pt": np.arange(start, start + 6, dtype="f4"),
                          "n": np.arange(start, start + 6, dtype="i8")})
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, row_group_size=4)
        fs.pipe_file(f"{base}/{part}/data.parquet", sink.getvalue().to_pybytes())
    fs.pipe_file(f"{base}/_SUCCESS", b"")
    opts = local_s3.storage_options
    with pytest.raises(storegate.StoregateError, match="mode='r'"):
        ParquetBackend(output_dir=f"{s3_url}/ds", storage_options=opts)
    be = ParquetBackend(output_dir=f"{s3_url}/ds", mode="r", storage_options=opts)
    assert be.data_ids() == ["ds"] and be.var_names("ds", "train") == ["pt", "n"]
    assert_identical(be.read("ds", "train", "n", slice(0, 12, 1)), np.arange(12))
    assert_identical(be.read("ds", "train", "pt", np.array([11, 0, 7])),
                     np.array([11, 0, 7], "f4"))
    one = ParquetBackend(output_dir=f"{s3_url}/ds/year=2024/data.parquet", mode="r",
                         storage_options=opts)
    assert one.data_ids() == ["data"]
    assert_identical(one.read("data", "train", "n", slice(0, 6, 1)), np.arange(6, 12))
    fs.pipe_file(f"{base}/notes.txt", b"hello")
    with pytest.raises(storegate.CorruptStoreError, match="not a Parquet file"):
        ParquetBackend(output_dir=f"{s3_url}/ds/notes.txt", mode="r", storage_options=opts)


# ---------------------------------------------------------------------------------- memory://
def test_large_fills_decode_in_threads_and_compact(tmp_path: Any) -> None:
    """A slice and a compaction of a var above the parallel-fill size (32 MiB) on memory://:
    worker threads decode prefetched row groups (while compaction holds the backend's lock)."""
    import fsspec

    url = f"memory://storegate-remote-{tmp_path.name}/store.parquet"
    x = np.random.default_rng(3).standard_normal((1_100_000, 8)).astype("f4")  # 35 MB
    be = ParquetBackend(output_dir=url, row_group_bytes=2 << 20, file_bytes=48 << 20,
                        cache_bytes=0)
    try:
        be.create_data_id("d")
        be.append("d", "train", "x", x)
        be.flush()
        be.append("d", "train", "y", np.arange(1_100_000, dtype="i4"))
        be.flush()  # y in files of its own: compaction rewrites both into shared files
        assert_identical(be.read("d", "train", "x", slice(0, 1_100_000, 1)), x)
        be.compact("d", "train")
        assert_identical(be.read("d", "train", "x", slice(5, 1_099_999, 3)), x[5:1_099_999:3])
        assert_identical(be.read("d", "train", "y", np.array([1_099_999, 0])),
                         np.array([1_099_999, 0], "i4"))
        assert be.check("d", "train", "x") == []
    finally:
        be.close()
        fs, root = fsspec.core.url_to_fs(url)
        fs.rm(root, recursive=True)


@pytest.mark.parametrize("where", ["local", "memory"])
def test_gathers_and_in_place_writes_in_threads_do_not_deadlock(where: str,
                                                                  tmp_path: Any) -> None:
    """One thread gathers (filling arenas: the budget holds one var, so they are refilled),
    another writes rows of the same var in place (updating its arena). A fill never waits for
    the lock a write holds while it waits for the fill (this deadlocked)."""
    import threading

    url = (str(tmp_path / "s") if where == "local"
           else f"memory://storegate-deadlock-{tmp_path.name}/s")
    x = np.random.default_rng(4).standard_normal((100_000, 16)).astype("f4")  # 6.4 MB
    be = ParquetBackend(output_dir=url, row_group_rows=1000, file_rows=10_000,
                        cache_bytes=8 << 20)
    be.create_data_id("d")
    be.append("d", "train", "x", x)
    be.append("d", "train", "z", x[::-1].copy())
    be.flush()
    errors: list[BaseException] = []
    rounds = 60

    def reader() -> None:  # rows of files 1..9, which the writer never replaces
        try:
            rng = np.random.default_rng(5)
            for i in range(rounds):
                idx = rng.integers(10_000, 100_000, 512)
                var = "x" if i % 2 else "z"
                got = be.read("d", "train", var, idx)
                assert got.shape == (512, 16)
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    def writer() -> None:  # rows of file 0
        try:
            rng = np.random.default_rng(6)
            for _ in range(rounds):
                be.write("d", "train", "x", rng.integers(0, 10_000, 4), np.zeros((4, 16), "f4"))
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=f, daemon=True) for f in (reader, writer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "reads and writes deadlocked"
    assert errors == []
    assert_identical(be.read("d", "train", "x", slice(10_000, 100_000, 1)), x[10_000:])
    be.close()
    if where == "memory":
        import fsspec

        fs, root = fsspec.core.url_to_fs(url)
        fs.rm(root, recursive=True)


def test_one_writer_per_remote_store_through_a_lease(s3_url: str, local_s3: Any) -> None:
    """The first write creates the lease object ``.sg-lock``; a second writer is refused
    naming the holder; close() deletes the lease and the next writer goes ahead."""
    url = f"{s3_url}/leased.parquet"
    opts = local_s3.storage_options
    fs = local_s3.filesystem()
    lease = url.split("://", 1)[1] + "/.sg-lock"
    ParquetBackend(output_dir=url, storage_options=opts).close()
    first = ParquetBackend(output_dir=url, storage_options=opts)
    fs.invalidate_cache()
    assert not fs.exists(lease)  # opening takes nothing
    first.create_data_id("d")
    first.append("d", "train", "x", np.arange(5.0))
    fs.invalidate_cache()
    assert fs.exists(lease)
    second = ParquetBackend(output_dir=url, storage_options=opts)
    assert second.data_ids() == ["d"]  # reading needs no lease
    with pytest.raises(storegate.StoreLockedError, match="storegate unlock"):
        second.append("d", "train", "y", np.arange(5.0))
    first.close()
    fs.invalidate_cache()
    assert not fs.exists(lease)
    second.append("d", "train", "y", np.arange(5.0))
    second.close()
    again = ParquetBackend(output_dir=url, mode="r", storage_options=opts)
    assert again.var_names("d", "train") == ["x", "y"]
