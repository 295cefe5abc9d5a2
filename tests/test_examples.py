"""Every script in examples/ runs (small sizes) and prints what it promises."""

from __future__ import annotations

import re
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


def test_kinoml_npz_example_runs(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, str(EXAMPLES / "kinoml_npz.py"), "--items", "200", "--dir",
         str(tmp_path)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "imported 200 items into data_id 'kinase': {'train': 160, 'valid': 20, 'test': 20}" \
        in out
    assert "X_a0  ragged  row shape (None, 16) float32" in out
    assert "X_a1  regular row shape (64,) int64" in out
    assert "check: ok (9 vars)" in out
    assert "batch: X_a0 128 items" in out and "X_a1 (128, 64), y (128,)" in out
    assert (tmp_path / "kinase_again.npz").is_file()
    assert (tmp_path / "kinase.parquet").is_file()


def test_train_mlp_example_runs(tmp_path: Path) -> None:
    from sg_helpers import require

    require("torch")
    res = subprocess.run(
        [sys.executable, str(EXAMPLES / "train_mlp.py"), "--rows", "4000", "--epochs", "3",
         "--workers", "2", "--dir", str(tmp_path)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    assert "train 3200, valid 400, test 400 rows; chunks of 1024 rows, 2 workers" in out
    losses = []
    for epoch in (1, 2, 3):
        line = next(ln for ln in out.splitlines() if ln.startswith(f"epoch {epoch}: "))
        match = re.fullmatch(rf"epoch {epoch}: train loss (\d+\.\d{{4}}), valid loss "
                             r"(\d+\.\d{4})", line)
        assert match, line
        losses.append(float(match.group(2)))
    before = re.search(r"before training: valid loss (\d+\.\d{4})", out)
    assert before, out
    fell = re.search(r"validation loss fell: (\d+\.\d\d) -> (\d+\.\d\d)", out)
    assert fell, out
    assert float(fell.group(2)) < float(fell.group(1))
    assert losses[-1] < float(before.group(1))
    assert "test accuracy" in out
    assert (tmp_path / "mlp.zarr" / "toy" / "train" / "x").is_dir()


def test_pyg_neighbor_loader_example_runs(tmp_path: Path) -> None:
    from sg_helpers import require

    require("torch")
    require("torch_geometric")
    res = subprocess.run(
        [sys.executable, str(EXAMPLES / "pyg_neighbor_loader.py"), "--nodes", "6000",
         "--batch-size", "256", "--dir", str(tmp_path)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    assert "graph: 6,000 nodes, 60,000 edges" in out
    assert "one epoch: 24 batches of 256" in out
    line = next(x for x in out.splitlines() if x.startswith("loss fell: "))
    first, last = (float(v) for v in line.split()[2:5:2])
    assert last < first
    assert (tmp_path / "graph.zarr").is_dir()


def test_every_example_is_tested() -> None:
    tested = {"quickstart.py", "kinoml_npz.py", "train_mlp.py", "pyg_neighbor_loader.py"}
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested


def test_link_prediction_example_runs(tmp_path: Path) -> None:
    from sg_helpers import require

    require("torch")
    require("torch_geometric")
    res = subprocess.run(
        [sys.executable, str(EXAMPLES / "link_prediction.py"), "--epochs", "3", "--dir",
         str(tmp_path)],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    assert "partitioned into 8 partitions of <= 512 entities, 64 buckets" in out
    assert "buffer holds 2 of 8 partitions" in out
    losses = [float(m) for m in re.findall(r"epoch \d: loss (\d+\.\d{4}), 128 steps, 28 buffer "
                                           r"states", out)]
    assert len(losses) == 3 and losses[-1] < losses[0], out
    swaps = re.search(r"swaps: (\d+) partition reads, (\d+) write-backs", out)
    assert swaps and int(swaps.group(1)) > 0 and int(swaps.group(2)) > 0, out
    metrics = re.search(r"MRR (\d\.\d{3}), Hits@10 (\d\.\d{3}) over 2783 triples", out)
    assert metrics, out
    # random guessing gives MRR ~0.002 and Hits@10 ~0.002 over 4,096 entities
    assert float(metrics.group(1)) > 0.05 and float(metrics.group(2)) > 0.2, out
    assert (tmp_path / "kg.zarr" / "nodes" / "train" / "entity").is_dir()
