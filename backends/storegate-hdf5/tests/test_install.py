"""Installing and uninstalling the plugin with pip, in a fresh virtual environment.

After ``pip install ./backends/storegate-hdf5`` the ``hdf5`` backend is found through its entry
point (and listed by ``storegate backends`` with its distribution and version); after
``pip uninstall storegate-hdf5`` it is gone and storegate still works.
"""

from __future__ import annotations

import os
import subprocess
import venv
from pathlib import Path

import pytest

PLUGIN = Path(__file__).resolve().parents[1]
ROOT = PLUGIN.parents[1]  # the storegate checkout


def run(exe: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=env,
                          timeout=600, check=check)


@pytest.mark.timeout(900)
def test_pip_install_and_uninstall_in_a_fresh_venv(tmp_path: Path) -> None:
    if not (ROOT / "pyproject.toml").is_file():
        pytest.skip("needs the storegate source tree beside the plugin")
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, system_site_packages=False).create(env_dir)
    py = env_dir / "bin" / "python"
    pip = [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, str(ROOT)], check=True, timeout=600, capture_output=True)
    subprocess.run([*pip, str(PLUGIN)], check=True, timeout=600, capture_output=True)
    script = env_dir / "bin" / "storegate"
    h5 = tmp_path / "store.h5"
    code = ("import numpy as np; from storegate import StoreGate; "
            f"sg = StoreGate(backend='hdf5', backend_args={{'path': {str(h5)!r}}}, "
            "data_id='d'); sg.add_data('x', np.arange(3)); sg.compile(); "
            "print(sg.get_data('x', 'train').tolist())")
    assert run(py, "-c", code).stdout.strip() == "[0, 1, 2]"
    listing = run(script, "backends").stdout
    row = next(line.split() for line in listing.splitlines() if line.startswith("hdf5 "))
    assert row[1:4] == ["storegate-hdf5", "0.1.0", "ok"], listing

    subprocess.run([str(py), "-m", "pip", "uninstall", "-y", "-q", "storegate-hdf5"],
                   check=True, timeout=300, capture_output=True)
    listing = run(script, "backends").stdout
    assert "hdf5" not in listing and "numpy" in listing
    gone = run(py, "-c", "from storegate import StoreGate; StoreGate(backend='hdf5')",
               check=False)
    assert gone.returncode != 0 and "BackendNotFoundError" in gone.stderr
    assert "did you mean" in gone.stderr or "installed" in gone.stderr
    still = run(py, "-c", "import numpy as np, storegate; sg = storegate.StoreGate('zarr', "
                f"{{'output_dir': {str(tmp_path / 's.zarr')!r}}}, data_id='d'); "
                "sg.add_data('x', np.arange(2)); print(sg.get_data('x', 'train').tolist())")
    assert still.stdout.strip() == "[0, 1]"
