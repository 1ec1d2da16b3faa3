"""``python -m aiges.serve``: the plugin process (see :mod:`aiges.plugin.server`)."""
from aiges.plugin.server import main

if __name__ == "__main__":
    raise SystemExit(main())
