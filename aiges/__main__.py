"""``python -m aiges``: the same CLI as ``aiges`` (:mod:`aiges.tools.cli`)."""
import sys

import aiges

if getattr(aiges, "__file__", None) is None:
    # `python -m` puts the working directory first on sys.path: standing in the folder that holds
    # a clone named aiges/, that folder (no __init__.py at its root) shadows an editable install
    where = next(iter(getattr(aiges, "__path__", [])), "aiges")
    sys.stderr.write(f"aiges: the folder {where} in the working directory hides the installed aiges package; "
                     f"run `python -m aiges` from another directory (e.g. `cd {where}`, the clone's root)\n")
    raise SystemExit(2)

from aiges.tools.cli import main  # noqa: E402 - only once the package is known to be the real one

if __name__ == "__main__":
    raise SystemExit(main())
