"""``python -m aiges``: the same CLI as ``aiges`` (:mod:`aiges.tools.cli`)."""
from aiges.tools.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
