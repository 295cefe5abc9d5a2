"""Every script in examples/ runs (small sizes) and prints what it promises."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name: str, *args: str, env: dict[str, str] | None = None,
                timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``examples/<name>`` with ``args`` in a fresh interpreter."""
    return subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True,
                          text=True, timeout=timeout, check=False, env=env)


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
    if importlib.util.find_spec("torch") is None:
        assert "torch is not installed: no DataLoader part" in out
        return
    # the DataLoader part: kinoml's class over its own store, then the batched fast path
    assert "MultiXTorchDataset: 200 items, indices {'train': 160, 'test': 20, 'val': 20}" in out
    kinoml = re.search(r"kinoml DataLoader \(num_workers=2, collate_fn=list\): 3 batches, 160 "
                       r"samples in [\d.]+ s; a sample: ligand \((\d+), 16\) float32, "
                       r"fingerprint \(64,\) int64, y \(\)", out)
    assert kinoml and 10 <= int(kinoml.group(1)) <= 60, out
    fast = re.search(r"StoreGateDataset \(num_workers=2\): 2 batches, 160 rows in [\d.]+ s = "
                     r"[\d,]+ rows/s; last batch: X_a0 padded \(32, (\d+), 16\) \+ lengths "
                     r"\(32,\), X_a1 \(32, 64\), y \(32,\) -> features \(32, 80\)", out)
    assert fast and 10 <= int(fast.group(1)) <= 60, out
    assert (tmp_path / "kinoml.zarr").is_dir()


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
    tested = {"quickstart.py", "kinoml_npz.py", "train_mlp.py", "pyg_neighbor_loader.py",
              "link_prediction.py", "multiml_migration.py", "custom_backend.py", "s3_store.py"}
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


def test_multiml_migration_example_runs(tmp_path: Path) -> None:
    res = run_example("multiml_migration.py", "--events", "2000", "--dir", str(tmp_path))
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    # 1. the multiml script, run unchanged
    assert "StoreGate data_id : higgs, compiled : True" in out
    assert "train  zarr     jet_pt    <f4       1400          (4,)" in out
    assert "get_data(('jet_pt', 'jet_eta'), 'train'): (1400, 2, 4)" in out
    assert "list of vars: [(3, 4), (3,)]" in out
    assert ("after update/astype/onehot/delete: vars ['jet_pt', 'jet_eta', 'label'], shapes "
            "[(4,), (2,)], jet_pt float64; metadata sizes {'train': 1400, 'valid': 400, "
            "'test': 200, 'all': 2000}") in out
    assert "len(sg['valid']) = 400, 'label' in sg['test']: True" in out
    # 2. multiml's own store: read as it is, converted by the API and by the CLI
    assert ("train vars ['MET', 'label', 'tau_pt'] (multiml listed them alphabetically), 1400 "
            "train rows, read-only True") in out
    assert ("convert(): data_id 'higgs', sizes {'train': 1400, 'valid': 400, 'test': 200}"
            in out)
    assert re.search(r"storegate convert: \S+multiml\.zarr -> \S+converted_cli\.zarr: data_id "
                     r"'higgs', rows train 1,400, valid 400, test 200", out), out
    for name in ("converted.zarr", "converted_cli.zarr"):
        assert (f"read back {name}: zarr format 3, compiled True, sizes {{'train': 1400, "
                "'valid': 400, 'test': 200, 'all': 2000}, same values as the source: True") in out
        assert (tmp_path / name / "zarr.json").is_file()
    assert (tmp_path / "multiml.zarr" / ".zgroup").is_file()
    # 3. the deliberate differences
    fixes = [line for line in out.splitlines() if line.startswith("fix: ")]
    assert len(fixes) == 4, fixes
    assert "phase=(0.7, 0.2, 0.1) accepted -> 7/2/1 rows" in fixes[0]
    assert "phase=[0.5, 0.2, 0.2] raises InvalidPhaseError" in fixes[1]
    assert "left the caller's array in order (True)" in fixes[2]
    assert "stores a copy (True)" in fixes[2]
    assert "keeps its 10 rows" in fixes[3]


def test_custom_backend_example_runs(tmp_path: Path) -> None:
    res = run_example("custom_backend.py", "--rows", "5000", "--dir", str(tmp_path))
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    assert ("registered backend 'npydir' -> custom_backend:NpyDirBackend (storegate-npydir "
            "0.1.0)") in out
    assert re.search(r"installed backends: .*\bnpydir\b.*\bnumpy\b", out), out
    assert "train  npydir   x         <f4       4000          (8,)" in out
    assert "train  npydir   label     <f8       4000          (2,)" in out
    assert ("reopened with backend 'npydir', read-only True: train rows 4000, batch x (1024, 8) "
            "label (1024, 2) float64") in out
    assert "files of jets/train: ['label.npy', 'order.json', 'x.npy']" in out
    summary = re.search(r"(\d+) passed, (\d+) skipped", out)
    assert summary and int(summary.group(1)) > 250, out  # the whole suite ran ...
    assert "failed" not in out
    assert "contract suite: passed" in out  # ... and passed (only the ragged part skips)
    assert (tmp_path / "jets.npydir" / "npydir.json").is_file()


def check_s3_output(out: str, rows: int) -> None:
    """What s3_store.py prints for a run with ``rows`` rows (on any endpoint)."""
    mb = rows * (4 * 32 + 8) / 1e6
    assert re.search(rf"writer: {rows:,} rows \({mb:.1f} MB\) to s3://\S+ in [\d.]+ s = "
                     r"[\d.]+ MB/s", out), out
    me = re.search(r"lease held by process (\d+) on \S+ \(this process: pid (\d+)\)", out)
    assert me and me.group(1) == me.group(2), out
    reader = re.search(r"reader: pid (\d+), read-only True, opened in \d+ ms \(imports "
                       r"included\), train rows "
                       rf"{rows * 8 // 10:,}", out)
    assert reader and reader.group(1) != me.group(1), out
    assert re.search(rf"reader: scan {rows * 8 // 10 * 128 / 1e6:.1f} MB in [\d.]+ s = [\d.]+ "
                     r"MB/s; random batch x \(1024, 32\), label \(1024,\): median [\d.]+ ms",
                     out), out
    assert ("second writer: StoreLockedError: zarr store 's3://" in out
            and "is being written by another backend in this process" in out), out
    assert "after close: lease held by nobody" in out
    assert "second writer: added 'weight'; train vars now ['x', 'label', 'weight']" in out
    killed = re.search(r"killed writer pid (\d+): lease left, held by process (\d+) on", out)
    assert killed and killed.group(1) == killed.group(2), out
    assert re.search(rf"storegate unlock: s3://\S+: removed the lease of process "
                     rf"{killed.group(1)} on", out), out
    assert out.rstrip().endswith("after unlock: lease held by nobody"), out


def test_s3_store_example_on_its_own_local_server() -> None:
    res = run_example("s3_store.py", "--rows", "20000")
    assert res.returncode == 0, res.stdout + res.stderr
    check_s3_output(res.stdout, rows=20000)
    assert re.search(r"local S3 server at http://127\.0\.0\.1:\d+", res.stdout)


def test_s3_store_example_with_an_endpoint_and_credentials_from_env(local_s3: Any) -> None:
    from storegate.testing.s3 import CREDENTIALS

    url = local_s3.bucket("example") + "/runs/jets.zarr"
    env = {**os.environ, **CREDENTIALS}
    env.pop("AWS_ENDPOINT_URL", None)  # the endpoint comes from --endpoint only
    res = run_example("s3_store.py", "--rows", "20000", "--url", url, "--endpoint",
                      local_s3.endpoint_url, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"using {url} (endpoint {local_s3.endpoint_url})" in res.stdout
    check_s3_output(res.stdout, rows=20000)
    fs = local_s3.filesystem()
    fs.invalidate_cache()
    root = url.split("://", 1)[1]
    assert fs.exists(f"{root}/zarr.json") and not fs.exists(f"{root}/.sg-lock")


def test_s3_store_example_without_moto_says_what_to_install(tmp_path: Path) -> None:
    (tmp_path / "moto.py").write_text("raise ImportError('no moto here (test stand-in)')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(tmp_path), *filter(None, [os.environ.get("PYTHONPATH")])])}
    res = run_example("s3_store.py", env=env, timeout=120)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "this example needs moto[server]: pip install 'storegate[test]'" in res.stderr
    assert res.stdout == ""
