"""StoreGateDataset: rows as tensors on every backend, ragged modes, indexing, DataLoader use.

The acceptance test (``test_acceptance_full_epoch_two_workers_yields_every_row_once``) runs
full epochs through DataLoaders with two worker processes, forked and spawned, on every
backend, with plain, chunk-aware and distributed sampling.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from storegate import StoreGate
from storegate.errors import (
    DataIdNotFoundError,
    IndexOutOfRangeError,
    InvalidArgumentError,
    InvalidIndexError,
    InvalidPhaseError,
    StoregateError,
    VarNotFoundError,
)
from storegate.torch import (
    RAGGED_MODES,
    ChunkShuffleSampler,
    ShardedSampler,
    StoreGateDataset,
    collate_batch,
)

BACKENDS = ["numpy", "zarr", "parquet", "hybrid"]
PHASES = ["train", "valid", "test", "all"]
SIZES = (160, 20, 20)
RANGES = {"train": (0, 160), "valid": (160, 180), "test": (180, 200), "all": (0, 200)}


# ---------------------------------------------------------------------------------- stores
def new_gate(backend: str, tmp_path: Path, data_id: str = "d") -> StoreGate:
    """An empty gate on ``backend``; the disk backends use small chunks / row groups so that
    reads cross many of them."""
    if backend == "numpy":
        return StoreGate("numpy", data_id=data_id)
    if backend == "parquet":
        pytest.importorskip("pyarrow")
        args: dict[str, Any] = {"output_dir": str(tmp_path / "s.parquet"),
                                "row_group_rows": 32, "file_rows": 64}
    else:
        args = {"output_dir": str(tmp_path / f"s.{backend}.zarr"), "chunk": 32}
    return StoreGate(backend, args, data_id=data_id)


def x_of(ids: np.ndarray) -> np.ndarray:
    """The (3, 2) float32 feature row of each id."""
    ids = np.asarray(ids)
    return (ids[:, None, None] * 10 + np.arange(6).reshape(1, 3, 2)).astype(np.float32)


def r_of(i: int) -> np.ndarray:
    """The ragged int32 row of id ``i``: ``i % 5`` entries of 2 values (some rows empty)."""
    return (i * 100 + np.arange((i % 5) * 2)).reshape(i % 5, 2).astype(np.int32)


def build(backend: str, tmp_path: Path, sizes: tuple[int, int, int] = SIZES,
          data_id: str = "d") -> StoreGate:
    """Vars ``id`` (int64 row number over 'all'), ``x`` ((3, 2) float32) and ``r`` (ragged
    (n_i, 2) int32), split by ``sizes`` without shuffling."""
    sg = new_gate(backend, tmp_path, data_id)
    ids = np.arange(sum(sizes))
    sg.add_data("id", ids, phase=sizes)
    sg.add_data("x", x_of(ids), phase=sizes)
    sg.add_data("r", [r_of(int(i)) for i in ids], phase=sizes)
    if backend == "hybrid":
        sg.to_memory("x", phase="all")  # 'x' is read from memory, 'id' and 'r' from storage
    sg.compile()
    return sg


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


def check_rows(ids: torch.Tensor, x: torch.Tensor, r: Any, ragged: str = "list") -> None:
    """``x`` and ``r`` of a batch are the rows of the ids in ``ids``."""
    got = ids.numpy()
    assert ids.dtype == torch.int64 and x.dtype == torch.float32
    np.testing.assert_array_equal(x.numpy(), x_of(got))
    for i, row in zip(got.tolist(), ragged_rows(r, ragged), strict=True):
        np.testing.assert_array_equal(row, r_of(i))


def ragged_rows(batch: Any, mode: str) -> list[np.ndarray]:
    """The rows of a ragged batch in any of the three modes, as numpy arrays."""
    if mode == "list":
        return [t.numpy() for t in batch]
    if mode == "packed":
        values, offsets = batch
        o = offsets.tolist()
        return [values[o[b]:o[b + 1]].numpy() for b in range(len(o) - 1)]
    padded, lengths = batch
    return [padded[b, :n].numpy() for b, n in enumerate(lengths.tolist())]


# ---------------------------------------------------------------------------------- reading
@pytest.mark.parametrize("phase", PHASES)
def test_rows_of_every_backend_and_phase_match_get_data(backend: str, phase: str,
                                                        tmp_path: Path) -> None:
    sg = build(backend, tmp_path)
    lo, hi = RANGES[phase]
    ds = StoreGateDataset(sg, phase, ["id", "x", "r"])
    assert len(ds) == hi - lo
    idx = np.arange(len(ds))
    ids, x, r = ds.__getitems__(idx)
    assert ids.tolist() == list(range(lo, hi))
    np.testing.assert_array_equal(ids.numpy(), sg.get_data("id", phase, idx))
    np.testing.assert_array_equal(x.numpy(), sg.get_data("x", phase, idx))
    expected = sg.get_data("r", phase, idx, ragged_as="list")
    assert isinstance(r, list) and len(r) == len(expected)
    for t, e in zip(r, expected, strict=True):
        assert isinstance(t, torch.Tensor) and t.dtype == torch.int32
        assert tuple(t.shape) == e.shape
        np.testing.assert_array_equal(t.numpy(), e)
    check_rows(ids, x, r)
    for i in (0, len(ds) // 2, len(ds) - 1):
        one_id, one_x, one_r = ds[i]
        assert one_id.shape == () and int(one_id) == lo + i
        np.testing.assert_array_equal(one_x.numpy(), x_of(np.array([lo + i]))[0])
        np.testing.assert_array_equal(one_r.numpy(), r_of(lo + i))


def test_single_var_gives_a_tensor_several_a_tuple_or_a_dict(backend: str,
                                                            tmp_path: Path) -> None:
    sg = build(backend, tmp_path)
    one = StoreGateDataset(sg, "valid", "x")
    batch = one.__getitems__([0, 1])
    assert isinstance(batch, torch.Tensor) and batch.shape == (2, 3, 2)
    assert isinstance(one[0], torch.Tensor) and one[0].shape == (3, 2)

    several = StoreGateDataset(sg, "valid", ("id", "x"))  # a tuple of names works like a list
    batch = several.__getitems__([0, 1])
    assert isinstance(batch, tuple) and [t.shape for t in batch] == [(2,), (2, 3, 2)]
    assert isinstance(several[1], tuple) and int(several[1][0]) == 161

    as_dict = StoreGateDataset(sg, "valid", ["x", "r", "id"], as_dict=True)
    batch = as_dict.__getitems__([2, 0])
    assert isinstance(batch, dict) and list(batch) == ["x", "r", "id"]
    assert batch["id"].tolist() == [162, 160]
    check_rows(batch["id"], batch["x"], batch["r"])
    row = as_dict[2]
    assert list(row) == ["x", "r", "id"] and int(row["id"]) == 162

    every = StoreGateDataset(sg, "test")  # var_names=None: every var, in store order
    assert every.var_names == ("id", "x", "r")
    assert [type(p) for p in every.__getitems__([0])] == [torch.Tensor, torch.Tensor, list]


def test_var_names_none_over_all_phases(tmp_path: Path) -> None:
    sg = build("numpy", tmp_path)
    ds = StoreGateDataset(sg, "all")
    assert ds.var_names == tuple(sg.get_var_names("all")) == ("id", "x", "r")
    assert len(ds) == 200 and ds.__getitems__([199, 0])[0].tolist() == [199, 0]


DTYPES = ["float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool"]


def values_of(dtype: np.dtype, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Random values of ``dtype`` that reach the extremes of integer types."""
    if dtype == np.bool_:
        return rng.random(shape) > 0.5
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    info = np.iinfo(dtype)
    out = rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)
    out.flat[0], out.flat[-1] = info.min, info.max
    return out


@pytest.mark.parametrize("dtype", DTYPES)
def test_dtypes_and_multi_dim_rows_are_preserved(backend: str, dtype: str,
                                                 tmp_path: Path) -> None:
    dt = np.dtype(dtype)
    rng = np.random.default_rng(1)
    n = 90
    flat = values_of(dt, (n,), rng)
    cube = values_of(dt, (n, 2, 3, 4), rng)
    sg = new_gate(backend, tmp_path)
    sg.add_data("flat", flat, phase=(70, 10, 10))
    sg.add_data("cube", cube, phase=(70, 10, 10))
    sg.compile()
    expected_dtype = torch.from_numpy(np.zeros(0, dtype=dt)).dtype
    for phase, lo in (("train", 0), ("test", 80), ("all", 0)):
        ds = StoreGateDataset(sg, phase, ["flat", "cube"])
        idx = np.array([3, 0, 9, 3, 1])
        f, c = ds.__getitems__(idx)
        assert f.dtype == c.dtype == expected_dtype
        assert f.shape == (5,) and c.shape == (5, 2, 3, 4)
        np.testing.assert_array_equal(f.numpy(), flat[lo + idx])
        np.testing.assert_array_equal(c.numpy(), cube[lo + idx])
        one_f, one_c = ds[-1]
        assert one_f.dtype == one_c.dtype == expected_dtype
        assert one_f.shape == () and one_c.shape == (2, 3, 4)
        last = lo + len(ds) - 1
        assert one_f.item() == flat[last].item()
        np.testing.assert_array_equal(one_c.numpy(), cube[last])


# ---------------------------------------------------------------------------------- ragged
@pytest.mark.parametrize("mode", RAGGED_MODES)
@pytest.mark.parametrize("phase", ["train", "test", "all"])
def test_ragged_modes_match_get_data(backend: str, mode: str, phase: str,
                                     tmp_path: Path) -> None:
    sg = build(backend, tmp_path)
    ds = StoreGateDataset(sg, phase, ["id", "r"], ragged=mode, pad_value=-7)
    n = len(ds)
    idx = [7, 0, 3, 3, 12, 5, n - 1, -2]  # unsorted, repeated, negative, some rows empty
    positions = [i % n for i in idx]
    expected = sg.get_data("r", phase, positions, ragged_as="list")
    ids, r = ds.__getitems__(idx)
    assert ids.tolist() == [RANGES[phase][0] + p for p in positions]
    if mode == "list":
        assert isinstance(r, list) and len(r) == len(idx)
        for t, e in zip(r, expected, strict=True):
            assert t.dtype == torch.int32 and tuple(t.shape) == e.shape
            np.testing.assert_array_equal(t.numpy(), e)
    elif mode == "padded":
        padded, lengths = r
        width = max(len(e) for e in expected)
        assert padded.shape == (len(idx), width, 2) and padded.dtype == torch.int32
        assert lengths.dtype == torch.int64
        assert lengths.tolist() == [len(e) for e in expected]
        for b, e in enumerate(expected):
            np.testing.assert_array_equal(padded[b, :len(e)].numpy(), e)
            assert (padded[b, len(e):] == -7).all()
    else:
        values, offsets = r
        assert offsets.dtype == torch.int64 and offsets.shape == (len(idx) + 1,)
        assert values.dtype == torch.int32
        assert values.shape == (sum(len(e) for e in expected), 2)
        assert offsets[0] == 0
        assert torch.diff(offsets).tolist() == [len(e) for e in expected]
        np.testing.assert_array_equal(values.numpy(), np.concatenate(expected))
    assert [a.tolist() for a in ragged_rows(r, mode)] == [e.tolist() for e in expected]
    for i, e in zip(idx, expected, strict=True):  # one row: always the (n_i, 2) tensor
        row = ds[i][1]
        assert isinstance(row, torch.Tensor) and tuple(row.shape) == e.shape
        np.testing.assert_array_equal(row.numpy(), e)


@pytest.mark.parametrize("mode", RAGGED_MODES)
def test_ragged_batches_of_empty_rows_and_empty_batches(backend: str, mode: str,
                                                        tmp_path: Path) -> None:
    sg = build(backend, tmp_path)
    ds = StoreGateDataset(sg, "train", "r", ragged=mode)
    empty_rows = ds.__getitems__([0, 5, 10])  # ids divisible by 5 have no entries
    nothing = ds.__getitems__([])
    if mode == "list":
        assert [tuple(t.shape) for t in empty_rows] == [(0, 2)] * 3
        assert nothing == []
    elif mode == "padded":
        assert empty_rows[0].shape == (3, 0, 2) and empty_rows[1].tolist() == [0, 0, 0]
        assert nothing[0].shape == (0, 0, 2) and nothing[1].shape == (0,)
    else:
        assert empty_rows[0].shape == (0, 2) and empty_rows[1].tolist() == [0, 0, 0, 0]
        assert nothing[0].shape == (0, 2) and nothing[1].tolist() == [0]


@pytest.mark.parametrize("row_shape", [(), (2, 3)])
@pytest.mark.parametrize("mode", RAGGED_MODES)
def test_ragged_rows_of_other_shapes(backend: str, mode: str, row_shape: tuple[int, ...],
                                     tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    rows = [rng.standard_normal((int(k), *row_shape)) for k in rng.integers(0, 6, 50)]
    sg = new_gate(backend, tmp_path)
    sg.add_data("q", rows, phase=(40, 5, 5))
    sg.compile()
    ds = StoreGateDataset(sg, "all", "q", ragged=mode, pad_value=np.nan)
    idx = [49, 2, 2, 40, 0]
    got = ragged_rows(ds.__getitems__(idx), mode)
    for g, i in zip(got, idx, strict=True):
        assert g.dtype == np.float64 and g.shape == rows[i].shape
        np.testing.assert_array_equal(g, rows[i])
    if mode == "padded":
        padded, lengths = ds.__getitems__(idx)
        assert padded.shape == (5, int(lengths.max()), *row_shape)
        for b, k in enumerate(lengths.tolist()):
            assert torch.isnan(padded[b, k:]).all()


# ---------------------------------------------------------------------------------- indexing
@pytest.mark.parametrize("index, row", [
    (3, 3), (-1, 19), (-20, 0), (np.int64(4), 4), (np.int32(-2), 18), (np.uint8(7), 7),
    (np.array(5), 5), (torch.tensor(6), 6), (torch.tensor(-3, dtype=torch.int32), 17),
    (torch.tensor(2, dtype=torch.uint8), 2),
])
def test_getitem_takes_ints(index: Any, row: int, tmp_path: Path) -> None:
    sg = build("numpy", tmp_path)
    ds = StoreGateDataset(sg, "test", ["id", "x"])
    got_id, got_x = ds[index]
    assert int(got_id) == 180 + row
    np.testing.assert_array_equal(got_x.numpy(), x_of(np.array([180 + row]))[0])


@pytest.mark.parametrize("index", [
    1.0, np.float64(1), "1", None, slice(0, 2), [1, 2], (1,), True, np.True_, np.array([1]),
    np.array(1.5), torch.tensor([1]), torch.tensor(1.0), torch.tensor(True), Ellipsis,
])
def test_getitem_rejects_what_is_not_one_int(index: Any, tmp_path: Path) -> None:
    ds = StoreGateDataset(build("numpy", tmp_path), "test", "id")
    with pytest.raises(InvalidIndexError) as err:
        ds[index]
    assert isinstance(err.value, IndexError) and isinstance(err.value, StoregateError)


@pytest.mark.parametrize("index", [20, -21, 10**12, np.int64(-(10**12)), torch.tensor(20)])
def test_getitem_out_of_range(backend: str, index: Any, tmp_path: Path) -> None:
    ds = StoreGateDataset(build(backend, tmp_path), "test", ["id", "r"])
    with pytest.raises(IndexOutOfRangeError) as err:
        ds[index]
    assert isinstance(err.value, IndexError) and isinstance(err.value, InvalidIndexError)


def test_iterating_a_dataset_stops_at_its_end(tmp_path: Path) -> None:
    ds = StoreGateDataset(build("numpy", tmp_path), "valid", "id")
    assert [int(t) for t in ds] == list(range(160, 180))  # IndexError ends the iteration


@pytest.mark.parametrize("index", [
    [5, 1, 1, 0, 19, 1],
    np.array([5, 1, 1, 0, 19, 1], dtype=np.int16),
    np.array([5, 1, 1, 0, 19, 1], dtype=np.uint32),
    torch.tensor([5, 1, 1, 0, 19, 1]),
    [5, 1, -19, 0, -1, 1],
    range(5, 0, -1),
])
def test_getitems_keeps_order_and_repeats(backend: str, index: Any, tmp_path: Path) -> None:
    sg = build(backend, tmp_path)
    ds = StoreGateDataset(sg, "valid", ["id", "x", "r"])
    expected = [160 + (int(i) % 20) for i in index]
    ids, x, r = ds.__getitems__(index)
    assert ids.tolist() == expected
    check_rows(ids, x, r)


@pytest.mark.parametrize("index", [
    [True, False] * 10, np.ones(20, dtype=bool), [[0, 1]], [0.5], ["a"], np.array(3), 3,
    torch.tensor([1.0]), [0, None],
])
def test_getitems_rejects_bad_indices(index: Any, tmp_path: Path) -> None:
    ds = StoreGateDataset(build("numpy", tmp_path), "valid", "id")
    with pytest.raises(InvalidIndexError) as err:
        ds.__getitems__(index)
    assert isinstance(err.value, IndexError)


@pytest.mark.parametrize("index", [[0, 20], [-21], [19, 10**9, 0], np.array([-(10**9)])])
def test_getitems_out_of_range(backend: str, index: Any, tmp_path: Path) -> None:
    ds = StoreGateDataset(build(backend, tmp_path), "valid", ["id", "r"])
    with pytest.raises(IndexOutOfRangeError):
        ds.__getitems__(index)


# ---------------------------------------------------------------------------------- arguments
def test_bad_arguments(tmp_path: Path) -> None:
    sg = build("numpy", tmp_path)
    with pytest.raises(InvalidArgumentError, match="StoreGate"):
        StoreGateDataset(sg.db, "train", "x")
    with pytest.raises(InvalidArgumentError, match="ragged"):
        StoreGateDataset(sg, "train", "r", ragged="nested")
    with pytest.raises(InvalidArgumentError, match="as_dict"):
        StoreGateDataset(sg, "train", "x", as_dict=True)
    with pytest.raises(InvalidArgumentError, match="no vars"):
        StoreGateDataset(sg, "train", [])
    with pytest.raises(VarNotFoundError, match="nope"):
        StoreGateDataset(sg, "train", ["x", "nope"])
    with pytest.raises(InvalidPhaseError):
        StoreGateDataset(sg, "training", "x")
    sg.set_data_id("empty")
    with pytest.raises(InvalidArgumentError, match="no vars"):
        StoreGateDataset(sg, "train")


def test_data_id_is_the_datasets_own(backend: str, tmp_path: Path) -> None:
    """Each dataset reads its data_id, whatever the gate's current data_id is later."""
    sg = build(backend, tmp_path, data_id="a")
    sg.set_data_id("b")
    sg.add_data("id", np.arange(1000, 1010), phase=(6, 2, 2))
    sg.compile()
    a_all = StoreGateDataset(sg, "all", "id", data_id="a")
    a_train = StoreGateDataset(sg, "train", None, data_id="a")
    assert a_train.var_names == ("id", "x", "r")  # data_id a's vars, not b's
    b_all = StoreGateDataset(sg, "all", "id")  # data_id=None: the gate's current one
    assert sg.data_id == "b"  # building the datasets did not switch the gate
    sg.set_data_id("a")
    assert len(a_all) == 200 and len(b_all) == 10
    assert a_all.__getitems__([0, 199]).tolist() == [0, 199]
    assert int(a_all[-1]) == 199 and int(a_train[0][0]) == 0
    assert b_all.__getitems__([0, 9]).tolist() == [1000, 1009]
    assert "data_id='a'" in repr(a_all) and "rows=200" in repr(a_all)


def test_missing_data_id_is_an_error_and_not_created(backend: str, tmp_path: Path) -> None:
    sg = build(backend, tmp_path)
    with pytest.raises(DataIdNotFoundError, match="nope"):
        StoreGateDataset(sg, "train", "id", data_id="nope")
    assert sg.get_data_ids() == ["d"] and sg.data_id == "d"


def test_chunk_rows(backend: str, tmp_path: Path) -> None:
    sg = build(backend, tmp_path)
    regular = StoreGateDataset(sg, "train", ["id", "x"]).chunk_rows
    ragged_only = StoreGateDataset(sg, "train", "r").chunk_rows
    if backend == "numpy":
        assert regular == 4096
    else:
        assert regular == 32  # the zarr chunks / parquet row groups of build()
    assert ragged_only >= 1
    assert isinstance(regular, int)


def test_collate_batch_passes_the_batch_through() -> None:
    batch = (torch.zeros(2), [torch.ones(1)])
    assert collate_batch(batch) is batch


# ---------------------------------------------------------------------------------- DataLoader
def test_dataloader_reads_each_batch_with_one_backend_read(
        backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sg = build(backend, tmp_path)
    ds = StoreGateDataset(sg, "train", ["id", "x", "r"])
    calls: list[list[int]] = []
    read_many = sg.db.read_many

    def counting(data_id: str, phase: str, names: Any, idx: Any) -> Any:
        calls.append(np.asarray(idx).tolist())
        return read_many(data_id, phase, names, idx)

    def no_single_rows(self: Any, index: Any) -> Any:
        raise AssertionError("the DataLoader must not read row by row")

    monkeypatch.setattr(sg.db, "read_many", counting)
    monkeypatch.setattr(StoreGateDataset, "__getitem__", no_single_rows)
    batches = list(ds.as_dataloader(batch_size=50))
    assert [len(b[0]) for b in batches] == [50, 50, 50, 10]
    assert calls == [list(range(s, min(s + 50, 160))) for s in range(0, 160, 50)]
    for b in batches:
        check_rows(*b)


def test_dataloader_batches_in_order_and_drop_last(tmp_path: Path) -> None:
    ds = StoreGateDataset(build("zarr", tmp_path), "all", ["id", "x", "r"])
    batches = [b[0].tolist() for b in ds.as_dataloader(batch_size=64)]
    assert batches == [list(range(s, min(s + 64, 200))) for s in range(0, 200, 64)]
    dropped = [b[0].tolist() for b in ds.as_dataloader(batch_size=64, drop_last=True)]
    assert dropped == batches[:3]
    loader = torch.utils.data.DataLoader(ds, batch_size=64, collate_fn=collate_batch)
    assert [b[0].tolist() for b in loader] == batches


def test_dataloader_without_batching_gives_single_rows(tmp_path: Path) -> None:
    ds = StoreGateDataset(build("numpy", tmp_path), "valid", ["id", "r"])
    rows = list(ds.as_dataloader(batch_size=None))
    assert len(rows) == 20
    assert [int(i) for i, _ in rows] == list(range(160, 180))
    for i, r in rows:
        assert r.shape == (int(i) % 5, 2)


def test_as_dataloader_keeps_a_given_collate_fn(tmp_path: Path) -> None:
    ds = StoreGateDataset(build("numpy", tmp_path), "valid", "id")
    loader = ds.as_dataloader(batch_size=4, collate_fn=lambda b: b.sum())
    assert [int(s) for s in loader] == [sum(range(s, s + 4)) for s in range(160, 180, 4)]
    assert ds.as_dataloader().collate_fn is collate_batch


def test_subset_and_random_split_keep_batched_reads(tmp_path: Path) -> None:
    ds = StoreGateDataset(build("zarr", tmp_path), "train", ["id", "x", "r"])
    first, second = torch.utils.data.random_split(
        ds, [100, 60], generator=torch.Generator().manual_seed(0))
    seen = []
    for part in (first, second):
        for ids, x, r in torch.utils.data.DataLoader(part, batch_size=32,
                                                     collate_fn=collate_batch):
            check_rows(ids, x, r)
            seen.extend(ids.tolist())
    assert sorted(seen) == list(range(160))


@pytest.mark.parametrize("mode", RAGGED_MODES)
def test_ragged_modes_and_dicts_through_worker_processes(backend: str, mode: str,
                                                         tmp_path: Path) -> None:
    sg = build(backend, tmp_path)
    ds = StoreGateDataset(sg, "all", ["id", "x", "r"], as_dict=True, ragged=mode)
    seen = []
    for batch in ds.as_dataloader(batch_size=24, shuffle=True, num_workers=2,
                                  multiprocessing_context="fork"):
        assert isinstance(batch, dict) and list(batch) == ["id", "x", "r"]
        check_rows(batch["id"], batch["x"], batch["r"], mode)
        seen.extend(batch["id"].tolist())
    assert sorted(seen) == list(range(200))


# ---------------------------------------------------------------------------------- acceptance
class SwappableSampler(torch.utils.data.Sampler[int]):
    """Delegates to ``inner``, which a test swaps between epochs: one DataLoader (and one set
    of persistent worker processes) then runs epochs of several samplers."""

    def __init__(self) -> None:
        self.inner: Any = None

    def __iter__(self) -> Any:
        return iter(self.inner)

    def __len__(self) -> int:
        return len(self.inner)


def run_epoch(loader: Any) -> list[int]:
    """Every id an epoch of ``loader`` yields, in order; checks each batch's rows."""
    ids: list[int] = []
    for batch_ids, x, r in loader:
        check_rows(batch_ids, x, r)
        ids.extend(batch_ids.tolist())
    return ids


def assert_each_once(ids: list[int], n: int) -> None:
    assert len(ids) == len(set(ids)) == n, "a row is missing or repeated"
    assert sorted(ids) == list(range(n))


@pytest.mark.parametrize("ctx", ["fork", "spawn"])
def test_acceptance_full_epoch_two_workers_yields_every_row_once(
        backend: str, ctx: str, tmp_path: Path) -> None:
    """A full epoch through a DataLoader with 2 workers, under fork and under spawn, on every
    backend, yields every row of the phase exactly once (shuffle off and on, chunk-aware
    shuffle); with the distributed sampler for 2 ranks the ranks' union is the phase."""
    sg = build(backend, tmp_path, sizes=(241, 30, 30))  # an odd phase: ranks need padding
    ds = StoreGateDataset(sg, "train", ["id", "x", "r"])
    n = len(ds)
    assert n == 241
    batch = 16

    # shuffle on: a fresh DataLoader, as a training script builds it
    loader = ds.as_dataloader(batch_size=batch, shuffle=True, num_workers=2,
                              multiprocessing_context=ctx)
    ids = run_epoch(loader)
    assert_each_once(ids, n)
    assert ids != list(range(n))

    # the other orders through one DataLoader with persistent workers (spawning workers is
    # the slow part), a sampler swapped in per epoch; first shuffle off (what shuffle=False
    # uses), then the chunk-aware and the distributed samplers
    swap = SwappableSampler()
    loader = ds.as_dataloader(batch_size=batch, sampler=swap, num_workers=2,
                              multiprocessing_context=ctx, persistent_workers=True)
    swap.inner = torch.utils.data.SequentialSampler(ds)
    assert run_epoch(loader) == list(range(n))
    assert type(ds.as_dataloader(shuffle=False).sampler) is type(swap.inner)

    chunked = ChunkShuffleSampler(ds, chunk_rows=32, window=2, seed=3)
    swap.inner = chunked
    orders = []
    for epoch in (0, 1):
        chunked.set_epoch(epoch)
        ids = run_epoch(loader)
        assert_each_once(ids, n)
        assert ids == chunked.order().tolist()  # the DataLoader keeps the sampler's order
        orders.append(ids)
    assert orders[0] != orders[1]

    for mode in ("random", "chunk"):
        for drop_last in (False, True):
            shards = []
            for rank in (0, 1):
                sampler = ShardedSampler(ds, num_replicas=2, rank=rank, seed=5,
                                         drop_last=drop_last, mode=mode, chunk_rows=32)
                sampler.set_epoch(1)
                swap.inner = sampler
                ids = run_epoch(loader)
                assert ids == sampler.order().tolist()
                shards.append(ids)
            assert len(shards[0]) == len(shards[1])
            union = shards[0] + shards[1]
            if drop_last:  # the tail of n % num_replicas rows is dropped, nothing repeats
                assert len(union) == len(set(union)) == n - n % 2
                assert set(union) <= set(range(n))
            else:  # every row, padded with one repeated row to even the shards
                assert set(union) == set(range(n))
                assert len(union) == n + 1
            # a divisible number of rows: the shards are disjoint and cover them
            shards = []
            for rank in (0, 1):
                sampler = ShardedSampler(n - 1, num_replicas=2, rank=rank, seed=5,
                                         drop_last=drop_last, mode=mode, chunk_rows=32)
                swap.inner = sampler
                shards.append(run_epoch(loader))
            assert len(shards[0]) == len(shards[1]) == (n - 1) // 2
            assert not set(shards[0]) & set(shards[1])
            assert sorted(shards[0] + shards[1]) == list(range(n - 1))


def test_persistent_workers_over_two_epochs_with_set_epoch(backend: str,
                                                           tmp_path: Path) -> None:
    ds = StoreGateDataset(build(backend, tmp_path), "all", ["id", "x", "r"])
    for sampler in (ChunkShuffleSampler(ds, chunk_rows=16, window=3, seed=1),
                    ShardedSampler(ds, num_replicas=1, rank=0, mode="random")):
        loader = ds.as_dataloader(batch_size=30, sampler=sampler, num_workers=2,
                                  persistent_workers=True, multiprocessing_context="fork")
        orders, iterators = [], []
        for epoch in (0, 1):
            sampler.set_epoch(epoch)
            it = iter(loader)
            iterators.append(it)
            ids: list[int] = []
            for batch_ids, x, r in it:
                check_rows(batch_ids, x, r)
                ids.extend(batch_ids.tolist())
            assert_each_once(ids, 200)
            orders.append(ids)
        assert iterators[0] is iterators[1]  # the same workers served both epochs
        assert orders[0] != orders[1]
        sampler.set_epoch(0)
        assert orders[0] == list(sampler)  # the order of an epoch is reproducible


def test_pin_memory_loader_runs(backend: str, tmp_path: Path) -> None:
    ds = StoreGateDataset(build(backend, tmp_path), "train", ["id", "x", "r"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loader = ds.as_dataloader(batch_size=32, shuffle=True, pin_memory=True,
                                  num_workers=2, multiprocessing_context="fork")
        ids = run_epoch(loader)
    assert_each_once(ids, 160)
    if not torch.accelerator.is_available():  # torch warns that pinning is a no-op
        assert any("pin_memory" in str(w.message) for w in caught)


@pytest.mark.skipif(not torch.accelerator.is_available(),
                    reason="pinned memory needs an accelerator; this torch is CPU-only "
                           "(pin_memory=True is then a no-op, see test_pin_memory_loader_runs)")
def test_pin_memory_pins_batches(tmp_path: Path) -> None:  # pragma: no cover - needs a GPU
    ds = StoreGateDataset(build("numpy", tmp_path), "train", ["id", "x", "r"],
                          ragged="packed")
    for ids, x, (values, offsets) in ds.as_dataloader(batch_size=32, pin_memory=True):
        assert ids.is_pinned() and x.is_pinned() and values.is_pinned()
        assert offsets.is_pinned()
