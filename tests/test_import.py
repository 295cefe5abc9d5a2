"""``import storegate`` stays light: heavy libraries load only when something needs them."""

from __future__ import annotations

import json
import subprocess
import sys

from sg_helpers import requires_zarr_backend

HEAVY = ("zarr", "numcodecs", "torch", "pyarrow", "awkward", "h5py", "torch_geometric", "fsspec",
         "dask", "s3fs")


def loaded_after(code: str) -> list[str]:
    """Run ``code`` in a fresh interpreter; return the heavy top-level modules it loaded."""
    script = (
        f"{code}\n"
        "import json, sys\n"
        f"heavy = {HEAVY!r}\n"
        "print(json.dumps(sorted({m.partition('.')[0] for m in sys.modules} & set(heavy))))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_storegate_loads_no_heavy_library():
    assert loaded_after("import storegate") == []


def test_numpy_store_and_registry_listing_stay_light():
    code = (
        "import numpy as np, storegate\n"
        "assert 'zarr' in storegate.list_backends()\n"
        "sg = storegate.StoreGate('numpy', data_id='d')\n"
        "sg.add_data(('a', 'b'), np.zeros((10, 2)), phase=(0.8, 0.1, 0.1))\n"
        "sg.shuffle(); sg.compile(); sg.show_info()\n"
        "assert sg['all'][('a', 'b')][[0, 9]].shape == (2, 2)\n"
    )
    assert loaded_after(code) == []


def test_submodules_stay_light():
    code = (
        "import storegate.gate, storegate.views, storegate.indexing, storegate.phases\n"
        "import storegate.errors, storegate.names, storegate.arrays, storegate.backends\n"
        "import storegate.backends.numpy_backend\n"
    )
    assert loaded_after(code) == []


@requires_zarr_backend
def test_zarr_loads_only_when_used(tmp_path):
    code = (
        "import storegate\n"
        f"sg = storegate.StoreGate('zarr', backend_args={{'output_dir': {str(tmp_path / 's')!r}}},"
        " data_id='d')\n"
    )
    assert "zarr" in loaded_after(code)


def test_storegate_dask_imports_dask_only_when_used():
    assert loaded_after("from storegate.dask import from_dask, to_dask") == []
    code = (
        "import numpy as np, storegate\n"
        "from storegate.dask import to_dask\n"
        "sg = storegate.StoreGate('numpy', data_id='d'); sg.add_data('x', np.zeros(3))\n"
        "to_dask(sg, 'x')\n"
    )
    assert "dask" in loaded_after(code)
