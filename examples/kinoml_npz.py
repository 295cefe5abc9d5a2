"""From a kinoml NPZ export to a checked zarr store, and back out to NPZ and Parquet.

kinoml's ``DatasetProvider.to_dict_of_arrays`` + ``np.savez`` writes one member per item and
array (``X_s{i}_a{j}_``), the label ``y`` and the split ``idx_train``/``idx_val``/
``idx_test``. This script writes such a file (or takes yours with ``--npz``), imports it into a
zarr store, checks the store, reads a batch, and exports it again. With torch installed it
ends in PyTorch ``DataLoader``s (2 worker processes by default): kinoml's own
``MultiXTorchDataset`` (``storegate.torch.kinoml``: same class, same samples, read from a
store), and the batched fast path, ``StoreGateDataset``, which makes one read per batch and
returns ragged features padded.

The same from the shell::

    storegate convert kinase.npz kinase.zarr
    storegate check kinase.zarr
    storegate convert kinase.zarr kinase.parquet

Run: ``python examples/kinoml_npz.py [--items 2000] [--dir DIR] [--npz FILE] [--workers 2]``
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

from storegate import StoreGate
from storegate.checks import check_store
from storegate.convert import export_npz, export_parquet, import_npz


def write_kinoml_npz(path: str, items: int, seed: int = 0) -> None:
    """A file in kinoml's ``X_s{i}_a{j}_`` layout: a ragged (n_i, 16) feature per item, a
    fixed 64-bit fingerprint, a float32 label and an 80/10/10 random split."""
    rng = np.random.default_rng(seed)
    members: dict[str, np.ndarray] = {}
    for i in range(items):
        members[f"X_s{i}_a0_"] = rng.standard_normal((int(rng.integers(10, 61)), 16),
                                                     dtype=np.float32)
        members[f"X_s{i}_a1_"] = rng.integers(0, 2, 64)
    perm = rng.permutation(items)
    a, b = int(0.8 * items), int(0.9 * items)
    np.savez(path, **members, y=rng.standard_normal(items).astype(np.float32),
             idx_train=perm[:a], idx_test=perm[a:b], idx_val=perm[b:])


def to_dataloaders(npz: str, store: str, work: str, workers: int) -> None:
    """The same data through PyTorch: kinoml's dataset class, then the batched fast path."""
    import torch
    from torch.utils.data import DataLoader, Subset

    from storegate.torch import StoreGateDataset
    from storegate.torch.kinoml import MultiXTorchDataset

    # 1. kinoml's class (before: from kinoml.datasets.torch_datasets import ...). Its rows
    #    are the file's rows in file order, its splits kinoml's `indices`. The import is kept
    #    in kinoml.zarr, and a later call for the same file reuses it (overwrite=True because
    #    this script writes the file anew on every run).
    ds = MultiXTorchDataset.from_npz(npz, store=os.path.join(work, "kinoml.zarr"),
                                     overwrite=True)
    splits = {k: int(v.size) for k, v in ds.indices.items()}
    print(f"MultiXTorchDataset: {len(ds)} items, indices {splits}")
    train = Subset(ds, ds.indices["train"])
    loader = DataLoader(train, batch_size=64, shuffle=True, num_workers=workers,
                        collate_fn=list)  # ragged systems: a batch is a list of samples
    t = time.perf_counter()
    batches = list(loader)
    dt = time.perf_counter() - t
    (ligand, fingerprint), y = batches[0][0]
    print(f"kinoml DataLoader (num_workers={workers}, collate_fn=list): {len(batches)} batches, "
          f"{sum(map(len, batches))} samples in {dt:.2f} s; a sample: ligand "
          f"{tuple(ligand.shape)} {str(ligand.dtype)[6:]}, fingerprint "
          f"{tuple(fingerprint.shape)} {str(fingerprint.dtype)[6:]}, y {tuple(y.shape)}")

    # 2. The fast path: one batched store read per batch, already collated; the ragged
    #    ligand comes padded to the longest item of the batch, with the lengths.
    sg = StoreGate.open(store, data_id="kinase")  # read-only, as a training job opens it
    fast = StoreGateDataset(sg, "train", ("X_a0", "X_a1", "y"), ragged="padded")
    loader = fast.as_dataloader(batch_size=128, shuffle=True, num_workers=workers)
    t = time.perf_counter()
    rows = n = 0
    for (padded, lengths), fingerprints, y in loader:
        # a model's input: the mean over each ligand's rows (padding masked) + the fingerprint
        mask = torch.arange(padded.shape[1]) < lengths[:, None]
        pooled = (padded * mask[..., None]).sum(1) / lengths.clamp(min=1)[:, None]
        features = torch.cat([pooled, fingerprints.float()], dim=1)
        rows += len(y)
        n += 1
    dt = time.perf_counter() - t
    print(f"StoreGateDataset (num_workers={workers}): {n} batches, {rows} rows in {dt:.2f} s = "
          f"{rows / dt:,.0f} rows/s; last batch: X_a0 padded {tuple(padded.shape)} + lengths "
          f"{tuple(lengths.shape)}, X_a1 {tuple(fingerprints.shape)}, y {tuple(y.shape)} -> "
          f"features {tuple(features.shape)}")
    sg.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, default=2000)
    ap.add_argument("--dir", default=None)
    ap.add_argument("--npz", default=None, help="a kinoml NPZ file to import instead")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    args = ap.parse_args()
    work = args.dir or tempfile.mkdtemp(prefix="storegate-kinoml-")
    os.makedirs(work, exist_ok=True)
    src = args.npz or os.path.join(work, "kinase.npz")
    if args.npz is None:
        write_kinoml_npz(src, args.items)

    store = os.path.join(work, "kinase.zarr")
    sg = StoreGate("zarr", {"output_dir": store, "mode": "w"})  # rerunnable: replaced
    res = import_npz(src, sg, data_id="kinase")
    print(f"imported {res.rows} items into data_id {res.data_id!r}: {res.sizes}")
    for v in res.vars:
        kind = "ragged" if v.ragged else "regular"
        print(f"  {v.name:5s} {kind:7s} row shape {v.shape} {v.dtype}")

    report = check_store(sg)
    print(f"check: {'ok' if report.ok else report.problems} ({report.vars_checked} vars)")

    batch = np.random.default_rng(1).choice(res.sizes["train"], 128, replace=False)
    features = sg.get_data("X_a0", "train", batch, ragged_as="raw")
    fingerprints, y = sg.get_data("X_a1", "train", batch), sg.get_data("y", "train", batch)
    print(f"batch: X_a0 {len(features)} items ({features.values.shape[0]} rows of 16), "
          f"X_a1 {fingerprints.shape}, y {y.shape}")

    npz = export_npz(sg, os.path.join(work, "kinase_again.npz"), overwrite=True)
    pq = export_parquet(sg, os.path.join(work, "kinase.parquet"), overwrite=True)
    print(f"exported {npz.rows} items to {os.path.basename(npz.path)} and "
          f"{os.path.basename(pq.path)}")
    sg.close()

    try:
        import torch  # noqa: F401
    except ImportError:
        print("torch is not installed: no DataLoader part (pip install 'storegate[torch]')")
        return
    to_dataloaders(src, store, work, args.workers)


if __name__ == "__main__":
    main()
