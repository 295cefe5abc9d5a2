"""Every script in examples/ runs (small sizes) and prints what it promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_quickstart_runs(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, str(EXAMPLES / "quickstart.py"), "--rows", "5000", "--dir",
         str(tmp_path)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "StoreGate data_id : jets, compiled : True" in out
    assert "train  zarr     tracks" in out
    assert "train rows: 4000, vars: ['tracks', 'towers', 'label']" in out
    assert "x (1024, 2, 16) float32, y (1024,) int64" in out
    assert "rows/s" in out
    assert (tmp_path / "jets.zarr" / "jets" / "train" / "tracks").is_dir()


def test_every_example_is_tested() -> None:
    tested = {"quickstart.py"}
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested
