"""``python -m aiges``: the same CLI as ``aiges``."""
from aiges.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
