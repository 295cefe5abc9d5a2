"""Moving from multiml: its StoreGate scripts run unchanged, its zarr stores convert.

Part 1 is a script written for multiml's ``StoreGate`` (``set_data_id``, ``add_data`` with
phase tuples, ``compile``, ``show_info``, ``get_data``, ``sg['train']['x'][idx]``,
``update_data``, ``astype``, ``onehot``, ``delete_data``, ``get_metadata``, ...). The only line
that changed is the import::

    from multiml import StoreGate   ->   from storegate import StoreGate

Part 2 takes a store that multiml wrote (zarr format 2, ``<data_id>/<phase>/<var>`` groups,
blosc-lz4; this script writes one as multiml's ``ZarrDatabase`` did, or pass yours with
``--multiml-store``), reads it directly (read-only), and converts it into a storegate zarr
store (format 3) with the Python API and with the command line::

    storegate convert old_multiml.zarr new.zarr

Part 3 prints what storegate does differently on purpose (docs/compatibility.md lists all).

Run: ``python examples/multiml_migration.py [--events N] [--dir DIR] [--multiml-store PATH]``
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from storegate import InvalidPhaseError, StoreGate  # was: from multiml import StoreGate
from storegate.convert import convert


def multiml_script(output_dir: str, events: int) -> None:
    """A typical multiml data-preparation script, as it was written for multiml."""
    rng = np.random.default_rng(1)
    jets = rng.standard_normal((events, 3, 4)).astype("f4")   # (N, M=3, k=4): bound vars
    label = rng.integers(0, 2, events)

    storegate = StoreGate(backend="zarr", backend_args={"output_dir": output_dir, "mode": "w"},
                          data_id="higgs")
    storegate.set_data_id("higgs")
    phase = (0.7, 0.2, 0.1)  # multiml rejected this tuple (its float sum is 0.9999999999999999)
    storegate.add_data(var_names=("jet_pt", "jet_eta", "jet_phi"), data=jets, phase=phase)
    storegate.add_data(var_names="label", data=label, phase=phase)
    storegate.compile(show_info=True)

    pt_eta = storegate.get_data(var_names=("jet_pt", "jet_eta"), phase="train", index=-1)
    first = storegate["train"]["label"][0:5]
    batch = storegate["train"][["jet_pt", "label"]][np.array([3, 1, 4])]
    print(f"get_data(('jet_pt', 'jet_eta'), 'train'): {pt_eta.shape}; "
          f"sg['train']['label'][0:5]: {first.tolist()}; list of vars: "
          f"{[b.shape for b in batch]}")

    storegate.update_data("label", np.zeros(2, dtype=np.int64), phase="train", index=(0, 2))
    storegate["valid"]["jet_phi"][0:3] = np.zeros((3, 4), dtype="f4")
    storegate.astype("jet_pt", "f8", phase="all")
    storegate.onehot("label", num_classes=2, phase="all")
    storegate.delete_data("jet_phi", phase="all")
    storegate.compile()
    meta = storegate.get_metadata()
    print(f"after update/astype/onehot/delete: vars {storegate.get_var_names('train')}, shapes "
          f"{storegate.get_var_shapes(['jet_pt', 'label'], 'train')}, "
          f"jet_pt {storegate['test']['jet_pt'][0].dtype}; metadata sizes {meta['sizes']}")
    print(f"len(sg['valid']) = {len(storegate['valid'])}, 'label' in sg['test']: "
          f"{'label' in storegate['test']}, data_ids {storegate.get_data_ids()}")


def write_multiml_store(path: str, events: int) -> dict[str, dict[str, np.ndarray]]:
    """A store laid out as multiml's ZarrDatabase (zarr 2) wrote it: zarr format 2, groups
    ``<data_id>/<phase>``, one array per var, blosc-lz4, no attributes. Returns its data."""
    import numcodecs
    import zarr

    root = zarr.open_group(path, mode="w", zarr_format=2)
    rng = np.random.default_rng(2)
    sizes = {"train": events * 7 // 10, "valid": events * 2 // 10}
    sizes["test"] = events - sizes["train"] - sizes["valid"]
    data: dict[str, dict[str, np.ndarray]] = {}
    group = root.create_group("higgs")
    for phase, n in sizes.items():
        g = group.create_group(phase)
        data[phase] = {}
        for var, shape, dtype in (("tau_pt", (4,), "f4"), ("MET", (), "f4"),
                                  ("label", (), "i8")):
            arr = rng.standard_normal((n, *shape)).astype(dtype)
            z = g.create_array(var, shape=arr.shape, chunks=(1000, *shape), dtype=dtype,
                               compressors=numcodecs.Blosc("lz4", 5, 1), fill_value=0)
            z[:] = arr
            data[phase][var] = arr
    return data


def convert_multiml_store(work: Path, src: str, data: dict[str, dict[str, np.ndarray]] | None
                          ) -> None:
    """Read multiml's store as it is, then convert it with the API and with the CLI."""
    old = StoreGate.open(src)  # read-only; format 2 is recognised by its .zgroup
    old.set_data_id(old.get_data_ids()[0])
    print(f"multiml store {Path(src).name}: data_ids {old.get_data_ids()}, train vars "
          f"{old.get_var_names('train')} (multiml listed them alphabetically), "
          f"{len(old['train'])} train rows, read-only {old.db.readonly}")

    # store -> store: one result per data_id (overwrite: the script is rerunnable)
    res = convert(src, work / "converted.zarr", overwrite=True)
    assert isinstance(res, list)
    for r in res:
        print(f"convert(): data_id {r.data_id!r}, sizes {r.sizes}, "
              f"vars {[v.name for v in r.vars]}")
    cli = subprocess.run([sys.executable, "-m", "storegate", "convert", src,
                          str(work / "converted_cli.zarr"), "--overwrite"],
                         capture_output=True, text=True, check=True)
    print(f"storegate convert: {cli.stdout.strip()}")

    for name in ("converted.zarr", "converted_cli.zarr"):
        new = StoreGate.open(str(work / name), data_id=res[0].data_id)
        same = all(np.array_equal(new.get_data(var, phase), old.get_data(var, phase))
                   for phase in ("train", "valid", "test")
                   for var in old.get_var_names(phase))
        if data is not None:
            same = same and all(np.array_equal(new.get_data(var, phase), arr)
                                for phase, cols in data.items() for var, arr in cols.items())
        fmt = "3" if (work / name / "zarr.json").is_file() else "?"
        print(f"read back {name}: zarr format {fmt}, compiled {new.get_metadata()['compiled']}, "
              f"sizes {new.get_metadata()['sizes']}, same values as the source: {same}")
        new.close()


def deliberate_fixes() -> None:
    """What storegate does differently from multiml, on purpose (see docs/compatibility.md)."""
    sg = StoreGate(backend="numpy", data_id="fixes")
    sg.add_data("x", np.arange(10.0), phase=(0.7, 0.2, 0.1))
    sg.compile()
    sizes = sg.get_metadata()["sizes"]
    print(f"fix: phase=(0.7, 0.2, 0.1) accepted -> {sizes['train']}/{sizes['valid']}/"
          f"{sizes['test']} rows (multiml: ValueError 'Sum of fraction must be 1.0')")
    try:
        sg.add_data("y", np.arange(10.0), phase=[0.5, 0.2, 0.2])
        print("fix: phase=[0.5, 0.2, 0.2] accepted (unexpected)")
    except InvalidPhaseError:
        print("fix: phase=[0.5, 0.2, 0.2] raises InvalidPhaseError (multiml silently gave "
              "test the remaining 30 %)")

    data = np.arange(8.0)
    sg.set_data_id("copies")
    sg.add_data("z", data, phase="train", shuffle=3)
    data[0] = 99.0  # editing the caller's array afterwards does not reach the store either
    print(f"fix: add_data(shuffle=3) left the caller's array in order "
          f"({np.array_equal(data[1:], np.arange(1.0, 8.0))}) and the numpy backend stores a "
          f"copy ({99.0 not in sg['train']['z'][:]}); multiml permuted it in place and kept it")
    sg.set_data_id("only")
    sg.add_data("only", np.arange(10), phase=(0.7, 0.2, 0.1))
    sg.astype("only", "f4", phase="all")
    print(f"fix: astype(phase='all') on a data_id's only var keeps its "
          f"{len(sg.get_data('only', 'all'))} rows (multiml deleted them)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="rows per dataset")
    parser.add_argument("--dir", default=None, help="working directory")
    parser.add_argument("--multiml-store", default=None,
                        help="a zarr store written by multiml, to convert instead")
    args = parser.parse_args(argv)
    work = Path(args.dir or tempfile.mkdtemp(prefix="storegate-multiml-"))
    work.mkdir(parents=True, exist_ok=True)

    print("== 1. a multiml script, unchanged but for the import")
    multiml_script(str(work / "script.zarr"), args.events)

    print("== 2. a store written by multiml: read it, convert it")
    src, data = args.multiml_store, None
    if src is None:
        src = os.fspath(work / "multiml.zarr")
        data = write_multiml_store(src, args.events)
    convert_multiml_store(work, src, data)

    print("== 3. deliberate differences")
    deliberate_fixes()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
