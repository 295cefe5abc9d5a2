"""pytest set-up shared by the doctests (``storegate/``) and the tests (``tests/``).

The torch layer is an optional extra: without torch installed, its modules, doctests and tests
are not collected (``pip install torch`` — a CPU wheel is enough — to run them).
"""

from __future__ import annotations

import importlib.util

collect_ignore_glob: list[str] = []
if importlib.util.find_spec("torch") is None:
    collect_ignore_glob += ["storegate/torch/*", "tests/torch/*", "bench/loader.py"]
