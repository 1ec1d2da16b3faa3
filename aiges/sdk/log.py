"""Upstream-compatible logging helpers for wrappers: ``log``, ``getLogger``, ``getFileLogger``.

Differences from upstream, on purpose:
- nothing touches the file system at import (upstream created ``/log/app`` at import and failed
  for non-root users before the plugin handshake);
- ``getFileLogger`` writes to ``$AIGES_LOG_DIR`` (set by the loader to its ``logs/`` directory),
  else ``/log/app`` when writable, else ``./logs``;
- handlers are never added twice when a wrapper calls the helpers repeatedly.
"""
from __future__ import annotations

import logging
import os
import sys

DEFAULT_FMT = "%(asctime)s - %(name)s:%(funcName)s:%(lineno)s - %(levelname)s:  %(message)s"

log = logging.getLogger()


def _ensure_stderr_handler(fmt: str, level: int) -> None:
    for h in log.handlers:
        if getattr(h, "_aiges_stderr", False):
            h.setFormatter(logging.Formatter(fmt))
            h.setLevel(level)
            return
    handler = logging.StreamHandler(sys.stderr)
    handler._aiges_stderr = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter(fmt))
    handler.setLevel(level)
    log.addHandler(handler)


if not log.handlers:
    _ensure_stderr_handler(DEFAULT_FMT, logging.INFO)
    log.setLevel(logging.DEBUG)


def getLogger(fmt: str = DEFAULT_FMT, level: int = logging.INFO, name: str = "root") -> logging.Logger:
    """Reconfigure and return the root logger (``name`` is ignored, as upstream)."""
    _ensure_stderr_handler(fmt, level)
    return log


def _log_dir() -> str:
    env = os.environ.get("AIGES_LOG_DIR")
    if env:
        return env
    if os.path.isdir("/log/app") and os.access("/log/app", os.W_OK):
        return "/log/app"
    return os.path.join(os.getcwd(), "logs")


def getFileLogger(fmt: str = DEFAULT_FMT, level: int = logging.INFO, name: str = "wrapper") -> logging.Logger:
    """Add (once) a file handler writing ``<log dir>/<name>.log`` to the root logger and return it."""
    directory = _log_dir()
    os.makedirs(directory, exist_ok=True)
    path = os.path.abspath(os.path.join(directory, f"{name}.log"))
    for h in log.handlers:
        if isinstance(h, logging.FileHandler) and h.baseFilename == path:
            return log
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(fmt))
    handler.setLevel(level)
    log.addHandler(handler)
    return log
