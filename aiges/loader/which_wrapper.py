"""Which ``wrapper.py`` the plugin workers import, and why: one start log line, plus a warning for
each PYTHONPATH entry whose ``wrapper.py`` loses.

The choice is the config's (:func:`aiges.config._wrapper_dir`): ``--wrapper-dir``, else
``AIGES_WRAPPER_DIR``, else ``[aiges] wrapperDir``.  With none of them the plugin runs in the
loader's working directory and imports as ``python -m`` does: that directory first, then the
PYTHONPATH entries in order.  ``PYTHONPATH=examples/fastml aiges -m 0 -c aiges.toml`` with a file
that names another ``wrapperDir`` serves that other wrapper; the warning says so at start.
"""
from __future__ import annotations

import os

from aiges.config import Settings

NO_CHOICE = "no --wrapper-dir, AIGES_WRAPPER_DIR or [aiges] wrapperDir"


def holds(directory: str, module: str) -> bool:
    """``directory`` has the wrapper module (``wrapper.py``, or a package ``wrapper/``)."""
    rel = os.path.join(directory, *module.split("."))
    return os.path.isfile(rel + ".py") or os.path.isfile(os.path.join(rel, "__init__.py"))


def explain(settings: Settings, cwd: str) -> tuple[str, list[str]]:
    """(the start line, the warnings) for ``settings`` in working directory ``cwd``."""
    module = settings.wrapper_module
    name = os.path.join(*module.split(".")) + ".py"
    entries = list(dict.fromkeys(os.path.normpath(os.path.join(cwd, p)) for p in settings.python_path))
    if settings.wrapper_dir:
        chosen, winner = settings.wrapper_dir, settings.wrapper_dir_from
        why = f"chosen by {winner}" + (f" in {settings.config_path}" if winner == "[aiges] wrapperDir" else "")
        missing = "" if holds(chosen, module) else f"; there is no {name} there"
    else:
        searched = [(cwd, "the working directory")] + [(e, "PYTHONPATH") for e in entries]
        hit = next(((d, w) for d, w in searched if holds(d, module)), None)
        if hit is None:
            return (f"wrapper: no {name} in the working directory {cwd} or on PYTHONPATH "
                    f"({os.pathsep.join(entries) or 'unset'}), and {NO_CHOICE}: the plugin imports '{module}' "
                    "from the installed packages, if it can"), []
        chosen, winner = hit
        why, missing = f"found in {winner}: {NO_CHOICE}", ""
    line = f"wrapper: {os.path.join(chosen, name)} ({why}){missing}"
    warnings = [f"PYTHONPATH entry {e} holds a {name} too, but {winner} comes first, so it is not served; "
                f"to serve it: --wrapper-dir {e} (or AIGES_WRAPPER_DIR={e})"
                for e in entries if e != chosen and holds(e, module)]
    return line, warnings
