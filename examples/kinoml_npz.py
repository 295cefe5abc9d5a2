"""From a kinoml NPZ export to a checked zarr store, and back out to NPZ and Parquet.

kinoml's ``DatasetProvider.to_dict_of_arrays`` + ``np.savez`` writes one member per item and
array (``X_s{i}_a{j}_``), the label ``y`` and the split ``idx_train``/``idx_val``/
``idx_test``. This script writes such a file (or takes yours with ``--npz``), imports it into a
zarr store, checks the store, reads a batch, and exports it again.

The same from the shell::

    storegate convert kinase.npz kinase.zarr
    storegate check kinase.zarr
    storegate convert kinase.zarr kinase.parquet

Run: ``python examples/kinoml_npz.py [--items 2000] [--dir DIR] [--npz FILE]``
"""

from __future__ import annotations

import argparse
import os
import tempfile

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, default=2000)
    ap.add_argument("--dir", default=None)
    ap.add_argument("--npz", default=None, help="a kinoml NPZ file to import instead")
    args = ap.parse_args()
    work = args.dir or tempfile.mkdtemp(prefix="storegate-kinoml-")
    os.makedirs(work, exist_ok=True)
    src = args.npz or os.path.join(work, "kinase.npz")
    if args.npz is None:
        write_kinoml_npz(src, args.items)

    sg = StoreGate("zarr", {"output_dir": os.path.join(work, "kinase.zarr")})
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

    npz = export_npz(sg, os.path.join(work, "kinase_again.npz"))
    pq = export_parquet(sg, os.path.join(work, "kinase.parquet"))
    print(f"exported {npz.rows} items to {os.path.basename(npz.path)} and "
          f"{os.path.basename(pq.path)}")
    sg.close()


if __name__ == "__main__":
    main()
