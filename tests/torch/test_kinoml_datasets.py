"""kinoml-compatible dataset classes (storegate.torch.kinoml).

Files are generated here exactly as kinoml writes them: ``np.savez`` of
``X_s{i}_a{j}_`` / ``X_s{i}_`` / ``X`` members plus ``y`` and ``idx_*`` (``RandomGrouper``
indices saved from Python lists), and ``ak.to_parquet(ak.zip([*X, y], depth_limit=1))`` with
every feature through ``ak.from_iter``. Tests named ``test_bug_*`` pin a kinoml bug that the
storegate classes fix (see the reference notes, "kinoml datasets contract").
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    SequentialSampler,
    Subset,
    SubsetRandomSampler,
)

from storegate import StoreGate
from storegate.convert.errors import DestinationExistsError
from storegate.errors import IndexOutOfRangeError, InvalidArgumentError, InvalidIndexError
from storegate.torch.kinoml import (
    AwkwardArrayDataset,
    MultiXTorchDataset,
    PrefeaturizedTorchDataset,
    TorchDataset,
    XyTorchDataset,
)

N = 12
IDX = {"train": list(range(8)), "test": [8, 9], "val": [10, 11]}


# ---------------------------------------------------------------------------------- kinoml files
def multi_items(n: int = N, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray],
                                                   np.ndarray]:
    """Per system: a ragged (n_i, 4) float32 array, a (8,) int64 fingerprint; y float32."""
    rng = np.random.default_rng(seed)
    a0 = [rng.standard_normal((int(k), 4)).astype("f4") for k in rng.integers(1, 7, n)]
    a1 = [rng.integers(0, 2, 8) for _ in range(n)]
    return a0, a1, (np.arange(n) * 0.5).astype("f4")


def write_multi_npz(path: Path, idx: bool = True) -> Path:
    a0, a1, y = multi_items()
    members = {f"X_s{i}_a0_": a for i, a in enumerate(a0)}
    members |= {f"X_s{i}_a1_": a for i, a in enumerate(a1)}
    extra = {f"idx_{k}": v for k, v in IDX.items()} if idx else {}
    np.savez(path, **members, y=y, **extra)
    return path


def write_single_npz(path: Path, idx: bool = False) -> Path:
    X = np.arange(N * 5, dtype="f8").reshape(N, 5)
    extra = {f"idx_{k}": v for k, v in IDX.items()} if idx else {}
    np.savez(path, X=X, y=np.arange(N, dtype="f4"), **extra)
    return path


def write_parquet(path: Path, features: list[list[np.ndarray]], y: np.ndarray) -> Path:
    import awkward as ak

    X = [ak.from_iter(items) for items in features]
    ak.to_parquet(ak.zip([*X, ak.from_numpy(np.asarray(y, "f4"))], depth_limit=1), str(path))
    return path


def parquet_items(n: int = N) -> tuple[list[list[np.ndarray]], np.ndarray]:
    a0, a1, y = multi_items(n)
    return [[a.astype("f8") for a in a0], [a.astype("f8") for a in a1]], y


@pytest.fixture()
def multi_npz(tmp_path: Path) -> Path:
    return write_multi_npz(tmp_path / "kinase.npz")


@pytest.fixture()
def single_npz(tmp_path: Path) -> Path:
    return write_single_npz(tmp_path / "single.npz")


@pytest.fixture()
def kinoml_parquet(tmp_path: Path) -> Path:
    features, y = parquet_items()
    return write_parquet(tmp_path / "kinase.parquet", features, y)


# ---------------------------------------------------------------------------------- indexes
def _as_rows(index: Any) -> Any:
    """The rows a kinoml index selects, by numpy's rules (the oracle)."""
    if isinstance(index, torch.Tensor):
        return index.item() if index.ndim == 0 else index.numpy()
    if isinstance(index, tuple):
        return list(index)
    if isinstance(index, list) and index and isinstance(index[0], bool):
        return np.array(index)
    return index


def expected(index: Any) -> Any:
    return np.arange(N)[_as_rows(index)]


MASK = np.arange(N) % 3 == 0
INDEXES = {
    "int": 3,
    "negative int": -1,
    "numpy int": np.int64(5),
    "numpy 0-d": np.array(2),
    "torch int": torch.tensor(7),
    "slice": slice(2, 6),
    "negative slice": slice(-3, None),
    "reversed stepped slice": slice(None, None, -2),
    "stepped slice": slice(1, 10, 3),
    "slice past the end": slice(8, 100),
    "empty slice": slice(4, 4),
    "list": [3, 0, 3],
    "list with negatives": [-1, 0, -12],
    "array": np.array([11, 2, 5]),
    "uint array": np.array([1, 4], dtype=np.uint8),
    "tensor": torch.tensor([6, 1]),
    "numpy mask": MASK,
    "torch mask": torch.from_numpy(MASK),
    "list mask": MASK.tolist(),
    "tuple": (1, 4),
}
ids = list(INDEXES)
params = list(INDEXES.values())


@pytest.mark.parametrize("index", params, ids=ids)
def test_xy_indexes(index: Any) -> None:
    X = np.arange(N * 3, dtype="f8").reshape(N, 3)
    y = np.arange(N, dtype="f4")
    ds = XyTorchDataset(X, y)
    rows = expected(index)
    Xb, yb = ds[index]
    assert torch.equal(Xb, torch.as_tensor(X[rows])) and Xb.dtype == torch.float64
    assert torch.equal(yb, torch.as_tensor(y[rows])) and yb.dtype == torch.float32
    assert yb.shape == np.shape(y[rows])          # 0-d for an int


@pytest.mark.parametrize("index", params, ids=ids)
def test_prefeaturized_indexes(index: Any) -> None:
    X = np.arange(N * 3, dtype="i8").reshape(N, 3)
    y = np.arange(N, dtype="f8")
    ds = PrefeaturizedTorchDataset(X, y)
    rows = expected(index)
    Xb, yb = ds[index]
    assert Xb.dtype == yb.dtype == torch.float32            # kinoml casts both
    assert torch.equal(Xb, torch.tensor(X[rows], dtype=torch.float32))
    assert torch.equal(yb, torch.tensor(y[rows], dtype=torch.float32))


@pytest.mark.parametrize("index", params, ids=ids)
def test_multix_indexes(multi_npz: Path, index: Any) -> None:
    a0, a1, y = multi_items()
    ds = MultiXTorchDataset.from_npz(multi_npz)
    rows = expected(index)
    X, yb = ds[index]
    assert torch.equal(yb, torch.as_tensor(y[rows]))
    if np.ndim(rows) == 0:
        assert yb.ndim == 0
        assert [t.dtype for t in X] == [torch.float32, torch.int64]
        assert torch.equal(X[0], torch.from_numpy(a0[rows]))
        assert torch.equal(X[1], torch.from_numpy(a1[rows]))
        return
    assert yb.shape == (len(rows),)
    assert len(X) == len(rows)
    for system, r in zip(X, rows, strict=True):
        assert torch.equal(system[0], torch.from_numpy(a0[r]))
        assert torch.equal(system[1], torch.from_numpy(a1[r]))


@pytest.mark.parametrize("index", params, ids=ids)
def test_multix_single_x_indexes(single_npz: Path, index: Any) -> None:
    X = np.arange(N * 5, dtype="f8").reshape(N, 5)
    ds = MultiXTorchDataset.from_npz(single_npz)
    assert ds.is_single_X()
    rows = expected(index)
    Xb, yb = ds[index]
    assert torch.equal(Xb, torch.from_numpy(X[rows]))
    assert yb.shape == np.shape(rows)


@pytest.mark.parametrize("index", params, ids=ids)
def test_awkward_indexes(kinoml_parquet: Path, index: Any) -> None:
    (f0, f1), y = parquet_items()
    ds = AwkwardArrayDataset.from_parquet(kinoml_parquet)
    rows = expected(index)
    (x0, x1), yb = ds[index]
    assert torch.equal(yb, torch.as_tensor(y[rows]))
    if np.ndim(rows) == 0:
        assert yb.ndim == 0
        assert torch.equal(x0, torch.from_numpy(f0[rows]))
        assert torch.equal(x1, torch.from_numpy(f1[rows]))
        return
    assert isinstance(x0, list) and len(x0) == len(rows)            # ragged field
    assert all(torch.equal(t, torch.from_numpy(f0[r])) for t, r in zip(x0, rows, strict=True))
    assert isinstance(x1, torch.Tensor) and x1.dtype == torch.float64  # regular field
    assert torch.equal(x1, torch.from_numpy(np.stack(f1)[rows]))


@pytest.mark.parametrize("index", params, ids=ids)
def test_torchdataset_indexes(index: Any) -> None:
    feat = CountingFeaturizer()
    ds = TorchDataset([System(i) for i in range(N)], np.arange(N, dtype="f8"), feat)
    rows = expected(index)
    Xb, yb = ds[index]
    if np.ndim(rows) and len(rows) == 0:
        assert Xb.numel() == 0
    else:
        want = np.repeat(np.asarray(rows, "f4")[..., None], 3, axis=-1)
        assert torch.equal(Xb, torch.from_numpy(want))
    assert torch.equal(yb, torch.as_tensor(np.arange(N, dtype="f4")[rows]))


@pytest.mark.parametrize("bad", [N, -N - 1, [0, N], np.array([-N - 1])])
def test_out_of_range(multi_npz: Path, bad: Any) -> None:
    ds = MultiXTorchDataset.from_npz(multi_npz)
    with pytest.raises(IndexOutOfRangeError) as err:
        ds[bad]
    assert isinstance(err.value, IndexError)


@pytest.mark.parametrize("bad", [True, np.bool_(False), 1.5, "0", MASK[:-1], [[0, 1]]])
def test_bad_indexes(bad: Any) -> None:
    ds = XyTorchDataset(np.zeros((N, 2)), np.zeros(N))
    with pytest.raises(InvalidIndexError):
        ds[bad]


# ---------------------------------------------------------------------------------- kinoml bugs
def test_bug_multix_numpy_and_torch_int(multi_npz: Path) -> None:
    """kinoml: UnboundLocalError for np.int64 / 0-d tensors."""
    ds = MultiXTorchDataset.from_npz(multi_npz)
    for i in (np.int64(4), np.int32(4), torch.tensor(4), np.array(4)):
        X, y = ds[i]
        assert len(X) == 2 and y.ndim == 0 and float(y) == 2.0


def test_bug_multix_negative_int(multi_npz: Path) -> None:
    """kinoml: ds[-1] gave an empty X list (defaultdict miss) with the right y."""
    a0, _, _ = multi_items()
    X, y = MultiXTorchDataset.from_npz(multi_npz)[-1]
    assert len(X) == 2 and torch.equal(X[0], torch.from_numpy(a0[-1])) and float(y) == 5.5


def test_bug_multix_negative_and_reversed_slices(multi_npz: Path) -> None:
    """kinoml: [-2:] gave 14 systems of 12; [::-1] gave nothing; stop > len crashed."""
    ds = MultiXTorchDataset.from_npz(multi_npz)
    X, y = ds[-2:]
    assert len(X) == 2 and y.tolist() == [5.0, 5.5]
    X, y = ds[::-1]
    assert len(X) == N and y.tolist() == (np.arange(N)[::-1] * 0.5).tolist()
    X, y = ds[10:50]
    assert len(X) == 2 and y.shape == (2,)


def test_bug_multix_bool_mask_same_rows(multi_npz: Path) -> None:
    """kinoml: a bool mask picked systems 0/1 for X but the masked rows for y (12 vs 2)."""
    ds = MultiXTorchDataset.from_npz(multi_npz)
    mask = np.zeros(N, bool)
    mask[[3, 7]] = True
    for m in (mask, mask.tolist(), torch.from_numpy(mask)):
        X, y = ds[m]
        assert len(X) == len(y) == 2
        assert y.tolist() == [1.5, 3.5]
        assert torch.equal(X[1][1], ds[7][0][1])


def test_bug_multix_int_gives_0d_y(multi_npz: Path) -> None:
    """kinoml: ds[i] gave y of shape (1,) in the multi-X path."""
    _, y = MultiXTorchDataset.from_npz(multi_npz)[0]
    assert y.shape == ()


def test_bug_multix_single_x_npz(single_npz: Path) -> None:
    """kinoml: every single-X file or dict raised ValueError (int(''))."""
    ds = MultiXTorchDataset.from_npz(single_npz)
    assert ds.is_single_X() and ds.shape_X == (N, 5) and ds.data_X is not None
    X, y = ds[1]
    assert X.tolist() == [5.0, 6.0, 7.0, 8.0, 9.0] and y.ndim == 0
    d = MultiXTorchDataset({"X": np.ones((3, 2)), "y": np.zeros(3)})
    assert d.is_single_X() and d[[0, 2]][0].shape == (2, 2)


def test_bug_multix_x_s_layout(tmp_path: Path) -> None:
    """X_s{i}_ (one array per system): a list of one tensor per system, as kinoml."""
    a0, _, y = multi_items()
    path = tmp_path / "xs.npz"
    np.savez(path, **{f"X_s{i}_": a for i, a in enumerate(a0)}, y=y)
    ds = MultiXTorchDataset.from_npz(path)
    assert not ds.is_single_X() and ds.shape_X == (N,)
    X, _ = ds[[2, 3]]
    assert [len(s) for s in X] == [1, 1] and torch.equal(X[1][0], torch.from_numpy(a0[3]))


def test_bug_indices_none_and_train_only() -> None:
    """kinoml: indices=None raised TypeError, {'train': ...} an AssertionError."""
    X, y = np.zeros((4, 2)), np.zeros(4)
    assert XyTorchDataset(X, y).indices["train"].tolist() == [0, 1, 2, 3]
    assert list(XyTorchDataset(X, y, indices={"train": [0, 1]}).indices) == ["train"]
    ds = XyTorchDataset(X, y, indices={"train": True, "valid": [True, False, True, False]})
    assert ds.indices["val"].tolist() == [0, 2] and ds.indices["train"].dtype == np.int64
    d = MultiXTorchDataset({"X_s0_a0_": np.ones(2), "X_s1_a0_": np.ones(3), "y": np.zeros(2)},
                           indices={"test": [1]})
    assert d.indices["test"].tolist() == [1]
    with pytest.raises(InvalidArgumentError, match="not a split"):
        XyTorchDataset(X, y, indices={"training": [0]})
    with pytest.raises(IndexOutOfRangeError):
        XyTorchDataset(X, y, indices={"train": [4]})


def test_bug_xy_from_npz_without_idx(single_npz: Path, tmp_path: Path) -> None:
    """kinoml: a plain X, y NPZ failed the indices assertion."""
    ds = XyTorchDataset.from_npz(single_npz)
    assert list(ds.indices) == ["train"] and len(ds) == N
    with_idx = XyTorchDataset.from_npz(write_single_npz(tmp_path / "idx.npz", idx=True))
    assert {k: v.tolist() for k, v in with_idx.indices.items()} == IDX
    X, y = with_idx[with_idx.indices["val"]]
    assert y.tolist() == [10.0, 11.0] and X.dtype == torch.float64


def test_bug_subset_and_subset_random_sampler(multi_npz: Path) -> None:
    """kinoml: Subset(ds, idx_val) and SubsetRandomSampler(np_idx) crashed (numpy ints)."""
    ds = MultiXTorchDataset.from_npz(multi_npz)
    sub = Subset(ds, ds.indices["val"])
    assert [float(sub[i][1]) for i in range(len(sub))] == [5.0, 5.5]
    loader = DataLoader(ds, batch_size=3, collate_fn=list,
                        sampler=SubsetRandomSampler(ds.indices["train"]))
    ys = sorted(float(s[1]) for batch in loader for s in batch)
    assert ys == [i * 0.5 for i in range(8)]
    sub_loader = DataLoader(sub, batch_size=2, collate_fn=list)
    assert [float(s[1]) for b in sub_loader for s in b] == [5.0, 5.5]
    xy = XyTorchDataset.from_npz(write_single_npz(Path(multi_npz).parent / "s.npz", idx=True))
    loader = DataLoader(Subset(xy, xy.indices["train"]), batch_size=5)
    assert torch.cat([b[1] for b in loader]).tolist() == list(range(8))


def test_bug_awkward_return_type_stable(tmp_path: Path) -> None:
    """kinoml: a ragged field became one tensor when the drawn items shared a shape."""
    items = [np.ones((1, 3)), np.ones((1, 3)), np.ones((2, 3)), np.ones((1, 3))]
    path = write_parquet(tmp_path / "a.parquet", [items], np.arange(4))
    ds = AwkwardArrayDataset.from_parquet(path)
    for index in (slice(0, 2), slice(1, 3), [0, 1], [3]):
        (x0,), _ = ds[index]
        assert isinstance(x0, list)
    regular = write_parquet(tmp_path / "r.parquet", [[np.ones((2, 3))] * 4], np.arange(4))
    for index in (slice(0, 2), [3], slice(0, 0)):
        (x0,), _ = AwkwardArrayDataset.from_parquet(regular)[index]
        assert isinstance(x0, torch.Tensor) and x0.shape[1:] == (2, 3)


def test_bug_awkward_torch_tensor_index(kinoml_parquet: Path) -> None:
    """kinoml: a torch tensor index failed ("Cannot interpret 'torch.int64' ...")."""
    ds = AwkwardArrayDataset.from_parquet(kinoml_parquet)
    (x0, _), y = ds[torch.tensor([0, 5])]
    assert len(x0) == 2 and y.tolist() == [0.0, 2.5]


def test_bug_lazy_npz_under_fork_workers(multi_npz: Path) -> None:
    """kinoml: a lazy NpzFile shared by forked workers gave BadZipFile: Bad CRC-32."""
    ds = MultiXTorchDataset.from_npz(multi_npz, lazy=True)
    loader = ds.as_dataloader(batch_size=2, num_workers=2, collate_fn=list,
                              multiprocessing_context="fork")
    ys = sorted(float(s[1]) for b in loader for s in b)
    assert ys == [i * 0.5 for i in range(N)]


def test_bug_no_file_reopened_per_item(multi_npz: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """kinoml: close_filehandle=True re-opened (and re-parsed) the NPZ on every access, and
    crashed with lazy=False."""
    import builtins

    import storegate.convert.npzfile as npzfile

    real_open, real_os_open = builtins.open, os.open

    def boom(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the source file was opened again")

    def guard(opener: Any) -> Any:
        def opened(file: Any, *args: Any, **kwargs: Any) -> Any:
            if os.fspath(file) == os.fspath(multi_npz):
                boom()
            return opener(file, *args, **kwargs)
        return opened

    for lazy in (True, False):
        ds = MultiXTorchDataset.from_npz(multi_npz, lazy=lazy, close_filehandle=True)
        with monkeypatch.context() as m:
            m.setattr(np, "load", boom)
            m.setattr(npzfile.NpzReader, "__init__", boom)
            m.setattr(builtins, "open", guard(real_open))
            m.setattr(os, "open", guard(real_os_open))
            X, y = ds[[1, 2]]
            assert len(X) == 2 and y.tolist() == [0.5, 1.0]
    os.remove(multi_npz)
    assert ds[0][1].ndim == 0


def test_bug_cpu_tensors_even_with_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """kinoml: tensors were created on CUDA inside __getitem__, breaking workers."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    ds = PrefeaturizedTorchDataset(np.ones((3, 2)), np.ones(3))
    assert ds.device == "cpu"
    X, y = ds[0]
    assert X.device.type == y.device.type == "cpu"
    feat = CountingFeaturizer()
    td = TorchDataset([System(1)], [1.0], feat)
    assert td.device == "cpu" and td[0][0].device.type == "cpu"


def test_bug_torchdataset_memoizes_and_no_requires_grad() -> None:
    """kinoml: the featurizer ran on every access; X and y had requires_grad=True."""
    feat = CountingFeaturizer()
    ds = TorchDataset([System(i) for i in range(4)], np.arange(4.0), feat)
    for _ in range(3):
        X, y = ds[2]
    ds[[2, 3, 3]]
    ds[1:4]
    assert feat.calls == 3                                 # rows 1, 2, 3 once each
    assert not X.requires_grad and not y.requires_grad
    assert ds.estimate_input_size() == (3,) and feat.calls == 4


def test_bug_torchdataset_current_featurizer_api() -> None:
    """kinoml: TorchDataset broke against BaseFeaturizer.featurize(systems: list)."""
    feat = ListFeaturizer()
    systems = [System(i) for i in range(5)]
    ds = TorchDataset(systems, np.arange(5.0), feat)
    assert ds.batched
    X, _y = ds[[4, 0, 4]]
    assert X.shape == (3, 2) and X[:, 0].tolist() == [4.0, 0.0, 4.0]
    assert feat.batches == [2]                             # one call featurized rows 4 and 0
    ds.featurize_all()
    assert feat.batches == [2, 3] and len(ds.cache) == 5
    assert ds[1][0].tolist() == [1.0, 2.0]


def test_torchdataset_picklable_with_cache() -> None:
    feat = CountingFeaturizer()
    ds = TorchDataset([System(i) for i in range(3)], [0.0, 1.0, 2.0], feat).featurize_all()
    again = pickle.loads(pickle.dumps(ds))
    assert again[2][0].tolist() == [2.0, 2.0, 2.0] and again.featurizer.calls == 3
    with pytest.raises(ValueError, match="featurizer"):
        TorchDataset([System(0)], [0.0], None)


def test_torchdataset_plain_callable_and_shape_mismatch() -> None:
    ds = TorchDataset([1, 2, 3], [0.0, 1.0, 2.0], _ragged_features)
    assert not ds.batched and ds[1][0].shape == (2,)
    with pytest.raises(ValueError, match="different shapes"):
        ds[[0, 1]]
    batches = list(ds.as_dataloader(batch_size=2, collate_fn=list))    # per-item samples
    assert [[x.shape[0] for x, _ in b] for b in batches] == [[1, 2], [3]]


# ---------------------------------------------------------------------------------- helpers
class System:
    """Stands in for kinoml's System: featurizers fill ``featurizations``."""

    def __init__(self, value: int) -> None:
        self.value = value
        self.featurizations: dict[str, Any] = {}


class CountingFeaturizer:
    """kinoml's per-system API: ``featurizer(system).featurizations[featurizer.name]``."""

    name = "counting"

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, system: System) -> System:
        self.calls += 1
        system.featurizations[self.name] = np.full(3, system.value, dtype="i8")
        system.featurizations["last"] = system.featurizations[self.name]
        return system


class ListFeaturizer:
    """kinoml's current BaseFeaturizer: ``__call__`` forwards to ``featurize(systems)``."""

    name = "listy"

    def __init__(self) -> None:
        self.batches: list[int] = []

    def featurize(self, systems: list[System], keep: bool = True) -> list[System]:
        self.batches.append(len(systems))
        for s in systems:
            s.featurizations["last"] = np.array([s.value, s.value + 1.0])
            if keep:
                s.featurizations[self.name] = s.featurizations["last"]
        return systems

    def __call__(self, *args: Any, **kwargs: Any) -> list[System]:
        return self.featurize(*args, **kwargs)


def _ragged_features(system: int) -> np.ndarray:
    return np.ones(system)


# ---------------------------------------------------------------------------------- classes
def test_xy_contract() -> None:
    X = torch.arange(12.0).reshape(4, 3)
    ds = XyTorchDataset(X, torch.arange(4), indices={"train": [0, 1], "test": [2, 3]})
    assert len(ds) == 4 and ds.input_size() == 3 and ds.estimate_input_size() == (3,)
    assert torch.equal(ds.data_X, X) and ds.data_y.dtype == torch.int64
    assert isinstance(ds.as_dataloader(batch_size=2), DataLoader)
    x, y = next(iter(ds.as_dataloader(batch_size=3)))
    assert x.shape == (3, 3) and y.tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="same number"):
        XyTorchDataset(np.zeros((3, 2)), np.zeros(4))


def test_prefeaturized_contract() -> None:
    systems = tuple(np.full((2, 3), i, dtype="i8") for i in range(5))  # featurized_systems()
    ds = PrefeaturizedTorchDataset(systems, np.arange(5, dtype="f4"))
    assert ds.estimate_input_size() == (2, 3) and ds.observation_model(7) == 7
    X, y = ds[1:3]
    assert X.shape == (2, 2, 3) and X.dtype == torch.float32 and y.tolist() == [1.0, 2.0]
    x, y = next(iter(ds.as_dataloader(batch_size=4)))
    assert x.shape == (4, 2, 3) and y.dtype == torch.float32
    ragged = PrefeaturizedTorchDataset([np.ones(i + 1) for i in range(4)], np.zeros(4))
    for index in ([0, 1], [2, 3], slice(0, 1)):
        assert isinstance(ragged[index][0], list)
    assert ragged[3][0].shape == (4,) and ragged.estimate_input_size() == (1,)
    with pytest.raises(ValueError, match="match in size"):
        PrefeaturizedTorchDataset(np.ones((3, 2)), np.ones(2))


def test_multix_dict_and_npzfile(multi_npz: Path) -> None:
    with np.load(multi_npz) as npz:
        from_file = MultiXTorchDataset(npz)
    a0, _, _ = multi_items()
    assert {k: v.tolist() for k, v in from_file.indices.items()} == IDX
    assert from_file.shape_X == (N, 2) and from_file.shape_y == (N,)
    assert torch.equal(from_file[4][0][0], torch.from_numpy(a0[4]))
    assert from_file.estimate_input_size() == ((a0[0].shape), (8,))
    assert from_file.data_X is None and from_file.data_y.dtype == torch.float32


def test_multix_batchsampler_and_default_collate(multi_npz: Path) -> None:
    ds = MultiXTorchDataset.from_npz(multi_npz, lazy=False)
    sampler = BatchSampler(SequentialSampler(ds), batch_size=5, drop_last=False)
    batches = list(DataLoader(ds, batch_size=None, sampler=sampler))
    assert [len(X) for X, _ in batches] == [5, 5, 2]
    assert batches[2][1].tolist() == [5.0, 5.5]
    single = MultiXTorchDataset.from_npz(write_single_npz(Path(multi_npz).parent / "s.npz"))
    x, y = next(iter(single.as_dataloader(batch_size=4)))
    assert x.shape == (4, 5) and y.shape == (4,)


def test_multix_transposed_onehot(tmp_path: Path) -> None:
    """Unpadded one-hot (21, L) members vary in their last axis; they come back as stored."""
    rng = np.random.default_rng(1)
    onehot = [rng.random((21, int(k))) for k in rng.integers(3, 9, 6)]
    path = tmp_path / "onehot.npz"
    np.savez(path, **{f"X_s{i}_a0_": a for i, a in enumerate(onehot)}, y=np.zeros(6, "f4"))
    ds = MultiXTorchDataset.from_npz(path)
    X, _ = ds[[5, 0]]
    assert torch.equal(X[0][0], torch.from_numpy(onehot[5]))
    assert torch.equal(ds[-1][0][0], torch.from_numpy(onehot[5]))
    d = MultiXTorchDataset({f"X_s{i}_a0_": a for i, a in enumerate(onehot)} | {"y": np.zeros(6)})
    assert torch.equal(d[2][0][0], torch.from_numpy(onehot[2]))


def test_awkward_contract(kinoml_parquet: Path) -> None:
    import awkward as ak

    (f0, _f1), y = parquet_items()
    ds = AwkwardArrayDataset.from_parquet(kinoml_parquet)
    assert ds.estimate_input_size() == (f0[0].shape, (8,))
    assert ds.data.fields == ["0", "1", "2"] and len(ds.data) == N
    small = AwkwardArrayDataset.from_parquet(kinoml_parquet, dtype="float32", data_id="f4",
                                             indices={"train": range(6), "test": [6]})
    assert small[0][0][0].dtype == torch.float32 and list(small.indices) == ["train", "test"]
    mem = AwkwardArrayDataset(ak.from_parquet(str(kinoml_parquet)))
    assert mem.fields == ["0", "1", "2"]
    (x0, x1), _yb = mem[[3, 1]]
    assert torch.equal(x0[0], torch.from_numpy(f0[3])) and x1.shape == (2, 8)
    loader = mem.as_dataloader(batch_size=5, collate_fn=list)
    assert [float(s[1]) for b in loader for s in b] == y.tolist()


def test_awkward_transposed_field(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    onehot = [rng.random((21, int(k))) for k in rng.integers(3, 9, 5)]
    path = write_parquet(tmp_path / "oh.parquet", [onehot], np.arange(5))
    ds = AwkwardArrayDataset.from_parquet(path)
    (x0,), _ = ds[[4, 1]]
    assert torch.equal(x0[0], torch.from_numpy(onehot[4]))
    assert ds.estimate_input_size() == ((21, onehot[0].shape[1]),)


# ---------------------------------------------------------------------------------- stores
def test_store_reuse(multi_npz: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import storegate.convert as convert

    store = tmp_path / "kinoml.zarr"
    first = MultiXTorchDataset.from_npz(multi_npz, store=store)
    assert first.data_id == "kinase" and first.storegate.backend == "zarr"
    with monkeypatch.context() as m:
        m.setattr(convert, "import_npz", _no_import)
        again = MultiXTorchDataset.from_npz(multi_npz, store=store)
        xy_again = MultiXTorchDataset.from_npz(multi_npz, store=str(store), lazy=False)
    for ds in (again, xy_again):
        assert {k: v.tolist() for k, v in ds.indices.items()} == IDX
        assert torch.equal(ds[3][0][0], first[3][0][0])
    opened = MultiXTorchDataset.from_storegate(StoreGate.open(str(store)))
    assert opened.indices["val"].tolist() == [10, 11] and len(opened[5][0]) == 2
    os.remove(multi_npz)                                   # the store is enough now
    assert len(MultiXTorchDataset.from_npz(multi_npz, store=store)) == N


def test_store_stale_and_overwrite(tmp_path: Path) -> None:
    path = write_single_npz(tmp_path / "d.npz")
    store = tmp_path / "s.zarr"
    XyTorchDataset.from_npz(path, store=store)
    np.savez(path, X=np.zeros((3, 5)), y=np.ones(3, "f4"))         # the file changed
    os.utime(path, ns=(1, 1))
    with pytest.raises(DestinationExistsError, match="overwrite=True"):
        XyTorchDataset.from_npz(path, store=store)
    ds = XyTorchDataset.from_npz(path, store=store, overwrite=True)
    assert len(ds) == 3 and ds[0][1].item() == 1.0
    with pytest.raises(DestinationExistsError, match="other options"):
        XyTorchDataset.from_npz(path, store=store, dtype="float32")
    other = XyTorchDataset.from_npz(path, store=store, data_id="copy")
    assert set(StoreGate.open(str(store)).get_data_ids()) == {"d", "copy"} and len(other) == 3


def test_parquet_store_reuse(kinoml_parquet: Path, tmp_path: Path,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    import storegate.convert as convert

    store = tmp_path / "p.zarr"
    AwkwardArrayDataset.from_parquet(kinoml_parquet, store=store, indices={"train": [0, 1]})
    with monkeypatch.context() as m:
        m.setattr(convert, "import_kinoml_parquet", _no_import)
        ds = AwkwardArrayDataset.from_parquet(kinoml_parquet, store=store)
    assert ds.indices["train"].tolist() == [0, 1] and len(ds) == N


def test_from_storegate_phase_all() -> None:
    sg = StoreGate("numpy", data_id="jets")
    sg.add_data("X", np.arange(20.0).reshape(10, 2), phase=(6, 2, 2))
    sg.add_data("y", np.arange(10.0), phase=(6, 2, 2))
    ds = XyTorchDataset.from_storegate(sg, phase="all")
    assert len(ds) == 10 and ds.indices["val"].tolist() == [6, 7]
    assert ds[ds.indices["test"]][1].tolist() == [8.0, 9.0]
    sg.set_data_id("other")                           # the dataset keeps its own data_id
    assert ds[-1][1].item() == 9.0
    assert len(XyTorchDataset.from_storegate(sg, "jets", phase="valid")) == 2


def _no_import(*args: Any, **kwargs: Any) -> None:
    raise AssertionError("the store should have been reused")


# ---------------------------------------------------------------------------------- workers
def _all_y(loader: DataLoader) -> list[float]:
    out: list[float] = []
    for batch in loader:
        if isinstance(batch, list) and batch and isinstance(batch[0], tuple):
            out += [float(s[1]) for s in batch]
        else:
            out += batch[1].tolist()
    return sorted(out)


def test_fork_workers_every_class(multi_npz: Path, single_npz: Path,
                                  kinoml_parquet: Path, tmp_path: Path) -> None:
    y = np.arange(N, dtype="f4")
    datasets: list[tuple[Any, Any]] = [
        (XyTorchDataset(np.ones((N, 2)), y), None),
        (XyTorchDataset.from_npz(single_npz, store=tmp_path / "x.zarr"), None),
        (PrefeaturizedTorchDataset(np.ones((N, 2)), y), None),
        (TorchDataset([System(i) for i in range(N)], y, CountingFeaturizer()), None),
        (MultiXTorchDataset.from_npz(multi_npz), list),
        (MultiXTorchDataset.from_npz(single_npz, lazy=False), None),
        (AwkwardArrayDataset.from_parquet(kinoml_parquet), list),
    ]
    for ds, collate in datasets:
        kwargs = {"collate_fn": collate} if collate else {}
        loader = DataLoader(ds, batch_size=5, shuffle=True, num_workers=2,
                            multiprocessing_context="fork", **kwargs)
        got = _all_y(loader)
        want = sorted(float(v) for v in ds[:][1])
        assert got == want and len(got) == N, type(ds).__name__


def test_spawn_workers(multi_npz: Path, tmp_path: Path) -> None:
    ds = MultiXTorchDataset.from_npz(multi_npz, store=tmp_path / "spawn.zarr")
    loader = DataLoader(ds, batch_size=6, num_workers=2, collate_fn=list,
                        multiprocessing_context="spawn")
    assert _all_y(loader) == [i * 0.5 for i in range(N)]


def test_import_is_light() -> None:
    code = ("import sys, storegate.torch.kinoml; "
            "print(sorted(m for m in ('awkward', 'pyarrow', 'zarr') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.strip() == "[]"


def test_temporary_store_survives_forked_children(multi_npz: Path) -> None:
    """from_npz(lazy=True) keeps rows in a temporary zarr directory: a forked child that drops
    its copy of the dataset must not delete the parent's directory."""
    import gc

    ds = MultiXTorchDataset.from_npz(multi_npz, lazy=True)
    location = ds.storegate.db.location
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            ds[0]
            del ds
            gc.collect()
        except BaseException:
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert os.path.isdir(location) and ds[[3, 4]][1].tolist() == [1.5, 2.0]
    del ds
    gc.collect()
    assert not os.path.exists(os.path.dirname(location))   # removed with the dataset


def test_xy_from_npz_refuses_per_system_files(multi_npz: Path, tmp_path: Path) -> None:
    store = tmp_path / "s.zarr"
    with pytest.raises(ValueError, match="MultiXTorchDataset"):
        XyTorchDataset.from_npz(multi_npz, store=store)
    assert not store.exists() or "kinase" not in StoreGate.open(str(store)).get_data_ids()


def test_from_storegate_after_plain_import_npz(tmp_path: Path) -> None:
    """A store made with storegate.convert.import_npz(transpose=...) reads back as kinoml."""
    from storegate.convert import import_npz

    onehot = [np.ones((3, k)) * k for k in (2, 4, 3)]
    path = tmp_path / "oh.npz"
    np.savez(path, **{f"X_s{i}_a0_": a for i, a in enumerate(onehot)}, y=np.zeros(3, "f4"))
    sg = StoreGate("numpy")
    import_npz(path, sg, data_id="oh", transpose=["X_a0"])
    ds = MultiXTorchDataset.from_storegate(sg)
    assert torch.equal(ds[1][0][0], torch.from_numpy(onehot[1]))
