"""Train a small MLP from a zarr store through a PyTorch DataLoader; the validation loss falls.

Run it with ``python examples/train_mlp.py [--rows N] [--epochs E] [--dir PATH] [--workers W]``
(needs ``pip install 'storegate[torch]'``).

A synthetic classification problem (32 float32 features, 2 classes given by a fixed random
non-linear rule) is written to a zarr store split 80/10/10 into train/valid/test. Training reads
the train phase through :class:`~storegate.torch.StoreGateDataset` (one batched read per batch)
in the chunk-aware order of :class:`~storegate.torch.ChunkShuffleSampler`; after each epoch the
valid phase is evaluated. The script exits non-zero if the validation loss did not fall.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from storegate import StoreGate
from storegate.torch import ChunkShuffleSampler, StoreGateDataset

FEATURES = 32
CHUNK_ROWS = 1024


def make_problem(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rows of standard normal features and labels from a fixed random 2-layer rule."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, FEATURES), dtype=np.float32)
    w1 = rng.standard_normal((FEATURES, 16)) / np.sqrt(FEATURES)
    w2 = rng.standard_normal(16)
    score = np.tanh(x @ w1) @ w2
    y = (score > np.median(score)).astype(np.int64)  # balanced classes
    return x, y


def evaluate(model: nn.Module, loader: torch.utils.data.DataLoader) -> tuple[float, float]:
    """Mean cross-entropy and accuracy over a loader."""
    model.eval()
    loss_sum, correct, rows = 0.0, 0, 0
    with torch.no_grad():
        for x, y in loader:
            logits = model(x)
            loss_sum += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
            rows += len(y)
    return loss_sum / rows, correct / rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000, help="number of rows")
    parser.add_argument("--epochs", type=int, default=5, help="training epochs")
    parser.add_argument("--dir", default=None, help="where to write the store")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    parser.add_argument("--batch-size", type=int, default=256, help="rows per training batch")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # small model: one thread per process is fastest on few cores
    torch.manual_seed(0)

    # 1. Write the problem to a zarr store, split 80/10/10.
    out = Path(args.dir or tempfile.mkdtemp(prefix="storegate-train-mlp-")) / "mlp.zarr"
    x, y = make_problem(args.rows)
    sg = StoreGate("zarr", {"output_dir": str(out), "mode": "w", "chunk": CHUNK_ROWS},
                   data_id="toy")
    sg.add_data("x", x, phase=(0.8, 0.1, 0.1))
    sg.add_data("y", y, phase=(0.8, 0.1, 0.1))
    sg.compile()
    sg.close()

    # 2. Reopen read-only, as a training job would, and build the datasets and loaders.
    sg = StoreGate.open(str(out), data_id="toy")
    train = StoreGateDataset(sg, "train", ("x", "y"))
    valid = StoreGateDataset(sg, "valid", ("x", "y"))
    test = StoreGateDataset(sg, "test", ("x", "y"))
    sampler = ChunkShuffleSampler(train, window=4, seed=0)  # chunk_rows from the store
    workers = max(args.workers, 0)
    train_loader = train.as_dataloader(batch_size=args.batch_size, sampler=sampler,
                                       num_workers=workers, persistent_workers=workers > 0)
    valid_loader = valid.as_dataloader(batch_size=1024)
    print(f"store {out}: train {len(train)}, valid {len(valid)}, test {len(test)} rows; "
          f"chunks of {sampler.chunk_rows} rows, {workers} workers")

    # 3. Train.
    model = nn.Sequential(nn.Linear(FEATURES, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                          nn.Linear(64, 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    first, _ = evaluate(model, valid_loader)
    print(f"before training: valid loss {first:.4f}")
    losses = [first]
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        sampler.set_epoch(epoch)  # a new chunk-aware order each epoch
        model.train()
        loss_sum, rows = 0.0, 0
        for xb, yb in train_loader:
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(xb), yb)
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(yb)
            rows += len(yb)
        valid_loss, _ = evaluate(model, valid_loader)
        losses.append(valid_loss)
        print(f"epoch {epoch}: train loss {loss_sum / rows:.4f}, valid loss {valid_loss:.4f}")
    seconds = time.perf_counter() - start
    test_loss, test_acc = evaluate(model, test.as_dataloader(batch_size=1024))
    print(f"test loss {test_loss:.4f}, test accuracy {test_acc:.3f} "
          f"({args.epochs} epochs in {seconds:.1f} s)")
    sg.close()

    last = losses[-1]
    if not last < first:
        print(f"validation loss did not fall: {first:.2f} -> {last:.2f}")
        return 1
    print(f"validation loss fell: {first:.2f} -> {last:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
