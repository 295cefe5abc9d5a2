"""pytest set-up shared by the doctests (``storegate/``) and the tests (``tests/``).

The torch and PyG layers are optional extras: without torch (or torch_geometric) installed,
their modules, doctests and tests are not collected (``pip install torch torch_geometric`` — a
CPU wheel of torch is enough — to run them).
"""

from __future__ import annotations

import importlib.util


def installed(module: str) -> bool:
    """Whether ``module`` is a real installed package (not a namespace package such as the
    ``tests/torch`` folder once ``tests/`` is on ``sys.path``)."""
    spec = importlib.util.find_spec(module)
    return spec is not None and spec.origin is not None


collect_ignore_glob: list[str] = []
if not installed("torch"):
    collect_ignore_glob += ["storegate/torch/*", "tests/torch/*", "bench/loader.py"]
if not (installed("torch") and installed("torch_geometric")):
    collect_ignore_glob += ["storegate/pyg/*", "tests/pyg/*", "bench/pyg.py"]
