"""Write Parquet files exactly as kinoml does (imported by the converter tests).

kinoml's featurization notebooks run ``DatasetProvider.to_awkward()`` (one ``ak.from_iter`` per
feature position, ``y`` as ``ak.from_numpy(float32)``), then
``ak.to_parquet(ak.zip([*X, y], depth_limit=1), path)``: one tuple record per system, fields
``"0".."n"``, the label last, every feature ``var * var * float64``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def write_kinoml_parquet(
    path: str | Path,
    features: Sequence[Sequence[Any]],
    y: np.ndarray,
    row_group_size: int | None = None,
) -> Path:
    """Write ``features`` (one list of per-item arrays per feature field) and ``y`` as kinoml.

    ``row_group_size`` (rows) is passed to ``ak.to_parquet``; kinoml used the default, which
    puts a whole dataset in one row group.
    """
    import awkward as ak

    X = [ak.from_iter(list(items)) for items in features]
    arr = ak.zip([*X, ak.from_numpy(np.asarray(y, dtype="float32"))], depth_limit=1)
    kwargs: dict[str, Any] = {}
    if row_group_size is not None:
        kwargs["row_group_size"] = row_group_size
    ak.to_parquet(arr, str(path), **kwargs)
    return Path(path)


def write_named_parquet(path: str | Path, columns: Mapping[str, Any]) -> Path:
    """A record array with named fields (``ak.zip`` of a dict), as ``ak.to_parquet`` writes it:
    one top-level column per field."""
    import awkward as ak

    def as_ak(v: Any) -> Any:
        if isinstance(v, ak.Array):
            return v
        return ak.from_iter(list(v)) if isinstance(v, list) else ak.from_numpy(v)

    arr = ak.zip({k: as_ak(v) for k, v in columns.items()}, depth_limit=1)
    ak.to_parquet(arr, str(path))
    return Path(path)


def kinoml_items(n: int, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """``n`` systems: a ragged ``(10..60, 16)`` float64 feature, a dense ``(8,)`` int64
    fingerprint and a float32 label."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(10, 61, n)
    ragged = [rng.standard_normal((int(k), 16)) for k in lengths]
    dense = [rng.integers(0, 2, 8) for _ in range(n)]
    y = rng.standard_normal(n).astype("float32")
    return ragged, dense, y
