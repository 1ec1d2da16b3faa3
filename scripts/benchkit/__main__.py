"""Entry point of the bench: ``python scripts/benchkit`` (what ``scripts/bench`` runs) or ``python -m benchkit``."""
from __future__ import annotations

import sys
from pathlib import Path

if not __package__:
    # run as a path: import the package by its name from scripts/, not its modules one by one from here
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    sys.path.insert(0, str(here.parent))

from benchkit.cli import main  # noqa: E402

sys.exit(main())
