"""``python -m bench``: every benchmark, one table, ``bench/RESULTS.md`` and a plot."""

from bench.run import main

raise SystemExit(main())
