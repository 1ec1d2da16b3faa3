"""``python -m aiges.serve``: the plugin process (see :mod:`aiges.plugin.main`)."""
from aiges.plugin.main import main

if __name__ == "__main__":
    raise SystemExit(main())
