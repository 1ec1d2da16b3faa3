"""``aiges.cli``: the console script's entry point (``aiges=aiges.cli:main`` in installs made before
the tools moved); the command line lives in :mod:`aiges.tools.cli`."""
from aiges.tools.cli import main

__all__ = ["main"]
