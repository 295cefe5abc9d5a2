"""``python -m storegate`` runs the ``storegate`` command."""

from .cli import main

raise SystemExit(main())
