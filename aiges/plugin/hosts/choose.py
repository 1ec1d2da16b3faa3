"""Which host serves the engine: a ``wrapper.py`` (Python) or a ``libwrapper.so`` (C).

As upstream, ``AIGES_PLUGIN_MODE`` says it (``python`` or ``c``; upstream's default is ``c``,
ours is to look).  Unset, the choice follows what is there: ``[aiges] wrapperLib`` set → C; a
``wrapper.py`` → Python; else a ``libwrapper.so`` in the wrapper directory or on
``LD_LIBRARY_PATH`` → C.  A ``wrapper.py`` whose ``Wrapper`` names a ``library`` is the
declaration of a C engine (its fields give the schema) and means C in every mode.  Only files
are looked at here (the AST of wrapper.py, never an import): this runs before the handshake.
"""
from __future__ import annotations

import ast
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

from aiges.plugin.hosts import Host

logger = logging.getLogger("aiges.plugin")
MODES = ("", "python", "c")
C_LIB = "libwrapper.so"


@dataclass(frozen=True)
class Choice:
    lang: str  # "python" | "c"
    reason: str


def _flag(env: Mapping[str, str], key: str, default: bool) -> bool:
    value = env.get(key, "").strip().lower()
    if not value:
        return default
    return value in ("1", "true", "yes")


def find_module(directory: str | None, module: str, env: Mapping[str, str]) -> str | None:
    """Where the plugin would import ``module`` from: the wrapper directory, else PYTHONPATH and cwd."""
    dirs = [directory] if directory else [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p] + [os.getcwd()]
    for d in dirs:
        path = os.path.join(d, module + ".py")
        if os.path.isfile(path):
            return os.path.abspath(path)
    return None


def declared_library(path: str) -> str | None:
    """``library = "..."`` in wrapper.py's ``class Wrapper`` ("" when it is not a plain string)."""
    try:
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
    except (OSError, SyntaxError, ValueError, UnicodeDecodeError):
        return None  # the Python host reports it properly
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "Wrapper":
            for stmt in node.body:
                targets = stmt.targets if isinstance(stmt, ast.Assign) else \
                    [stmt.target] if isinstance(stmt, ast.AnnAssign) else []
                if any(isinstance(t, ast.Name) and t.id == "library" for t in targets):
                    value = getattr(stmt, "value", None)
                    return value.value if isinstance(value, ast.Constant) and isinstance(value.value, str) else ""
    return None


def _lib_on_path(env: Mapping[str, str]) -> str | None:
    for d in env.get("LD_LIBRARY_PATH", "").split(os.pathsep):
        if d and os.path.isfile(os.path.join(d, C_LIB)):
            return os.path.join(d, C_LIB)
    return None


def choose(env: Mapping[str, str]) -> Choice:
    mode = env.get("AIGES_PLUGIN_MODE", "").strip().lower()
    directory = env.get("AIGES_WRAPPER_DIR") or None
    module = env.get("AIGES_WRAPPER_MODULE") or "wrapper"
    found = find_module(directory, module, env)
    if found is not None:
        lib = declared_library(found)
        if lib is not None:
            return Choice("c", f"{found} declares the C engine (library = {lib!r})")
    if mode == "c":
        return Choice("c", "AIGES_PLUGIN_MODE=c")
    if mode == "python":
        return Choice("python", "AIGES_PLUGIN_MODE=python")
    if env.get("AIGES_WRAPPER_LIB"):
        return Choice("c", f"[aiges] wrapperLib = {env['AIGES_WRAPPER_LIB']}")
    if found is not None:
        return Choice("python", f"found {found}")
    local = os.path.join(os.path.abspath(directory or os.getcwd()), C_LIB)
    if os.path.isfile(local):
        return Choice("c", f"no {module}.py; found {local}")
    on_path = _lib_on_path(env)
    if on_path:
        return Choice("c", f"no {module}.py; found {on_path} on LD_LIBRARY_PATH")
    return Choice("python", f"neither {module}.py nor {C_LIB} found")


def plugin_host(env: Mapping[str, str]) -> Host:
    """The plugin's host for this environment (the plugin process only: see exits.install)."""
    choice = choose(env)
    directory = env.get("AIGES_WRAPPER_DIR") or None
    module = env.get("AIGES_WRAPPER_MODULE") or "wrapper"
    if choice.lang == "c":
        from aiges.plugin.hosts.c import CHost, exits
        logger.info("serving a C engine (%s)", choice.reason)
        exits.install()
        return CHost(env.get("AIGES_WRAPPER_LIB") or None, directory, module,
                     async_mode=_flag(env, "AIGES_ASYNC_MODE", False),
                     real_time=_flag(env, "AIGES_REAL_TIME_RLT", True),
                     thread_safe=_flag(env, "AIGES_WRAPPER_THREAD_SAFE", True),
                     session_timeout=float(env.get("AIGES_SESSION_TIMEOUT") or 180))
    from aiges.plugin.hosts.python import WrapperHost
    if not env.get("AIGES_PLUGIN_MODE"):
        logger.info("serving a Python wrapper (%s)", choice.reason)
    return WrapperHost(module, directory)
