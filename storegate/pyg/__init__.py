"""PyTorch Geometric over a StoreGate (needs ``pip install 'storegate[pyg]'``).

* :class:`FeatureStore` / :class:`GraphStore` — PyG's remote-backend interface over any
  storegate backend (features and edge indices on disk, read in batches);
* :class:`NeighborLoader` / :class:`LinkNeighborLoader` — PyG's loaders driven by storegate's
  pure-PyTorch neighbour sampler, so they run without pyg-lib or torch-sparse;
* :func:`from_data` / :func:`to_data` — write a ``Data``/``HeteroData`` into a store (optionally
  renumbered for locality) and read it back.

The names load on first use; importing this package imports torch but not torch_geometric.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "FeatureStore": "stores",
    "GraphStore": "stores",
    "NeighborLoader": "loaders",
    "LinkNeighborLoader": "loaders",
    "StoreGateNeighborSampler": "sampler",
    "from_data": "convert",
    "to_data": "convert",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'storegate.pyg' has no attribute {name!r}")
    try:
        return getattr(importlib.import_module(f"{__name__}.{module}"), name)
    except ImportError as err:
        if "torch_geometric" in str(err) or "torch" in str(err).split("'")[1:2]:
            from ..errors import MissingDependencyError

            raise MissingDependencyError(
                f"storegate.pyg.{name} needs PyTorch Geometric ({err}); install it with "
                "`pip install 'storegate[pyg]'` (pyg-lib and torch-sparse are not needed)."
            ) from None
        raise
