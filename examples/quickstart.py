"""Quick start: build a zarr store from generated data, look inside, read random batches.

Run it with ``python examples/quickstart.py [--rows N] [--dir PATH]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from storegate import StoreGate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="number of events")
    parser.add_argument("--dir", default=None, help="where to write the store")
    args = parser.parse_args(argv)

    out = Path(args.dir or tempfile.mkdtemp(prefix="storegate-quickstart-")) / "jets.zarr"
    rng = np.random.default_rng(42)
    n = args.rows
    features = rng.standard_normal((n, 2, 16), dtype=np.float32)  # two bound vars, 16 values
    label = (features[:, 0, 0] > 0).astype(np.int64)

    # 1. Write: a tuple of names binds axis 1 of the data into separate vars.
    sg = StoreGate(backend="zarr", backend_args={"output_dir": str(out), "mode": "w"},
                   data_id="jets")
    sg.add_data(("tracks", "towers"), features, phase=(0.8, 0.1, 0.1))
    sg.add_data("label", label, phase=(0.8, 0.1, 0.1))
    sg.compile()
    sg.show_info()
    sg.close()

    # 2. Reopen (as a training job would): no compile needed, the metadata are in the store.
    sg = StoreGate(backend="zarr", backend_args={"output_dir": str(out), "mode": "r"},
                   data_id="jets")
    train = sg["train"]
    print(f"train rows: {len(train)}, vars: {sg.get_var_names('train')}")

    # 3. Random batches.
    batch = 1024
    first = rng.choice(len(train), batch, replace=False)
    t = time.perf_counter()
    x = train[("tracks", "towers")][first]
    t_first = time.perf_counter() - t
    times = []
    for _ in range(100):
        idx = rng.choice(len(train), batch, replace=False)
        t = time.perf_counter()
        x = train[("tracks", "towers")][idx]
        y = train["label"][idx]
        times.append(time.perf_counter() - t)
    assert x.shape == (batch, 2, 16) and y.shape == (batch,)
    ms = float(np.median(times)) * 1e3
    print(f"batch of {batch} random rows: x {x.shape} {x.dtype}, y {y.shape} {y.dtype}")
    print(f"first batch {t_first * 1e3:.1f} ms (fills the read cache), then median {ms:.3f} ms "
          f"per batch = {batch / ms * 1e3:,.0f} rows/s")
    print(f"store written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
