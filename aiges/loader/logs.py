"""Log files under ``logs/`` as fastml-engine users expect: ``app.log`` (the loader and the plugin
workers' drained stdout/stderr), ``access.log`` (every request) and ``error-access.log`` (requests
answered with an error).  Console output stays on stderr; stdout carries only the "serving" line.
"""
from __future__ import annotations

import logging
import os
import sys
from logging.handlers import RotatingFileHandler
from typing import Any

from aiohttp.abc import AbstractAccessLogger

from aiges.config import Settings

FMT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
ACCESS = logging.getLogger("aiges.access")
ERROR_ACCESS = logging.getLogger("aiges.error_access")


def _file(path: str, fmt: str) -> logging.Handler:
    h = RotatingFileHandler(path, maxBytes=50 * 1024 * 1024, backupCount=5, encoding="utf-8")
    h.setFormatter(logging.Formatter(fmt))
    return h


def setup(settings: Settings) -> None:
    os.makedirs(settings.log_dir, exist_ok=True)
    level = logging.DEBUG if settings.log_level == "debug" else logging.INFO
    root = logging.getLogger()
    root.setLevel(level)
    for h in list(root.handlers):
        root.removeHandler(h)
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter(FMT))
    root.addHandler(console)
    root.addHandler(_file(os.path.join(settings.log_dir, "app.log"), FMT))
    for logger, name in ((ACCESS, "access.log"), (ERROR_ACCESS, "error-access.log")):
        logger.propagate = False
        logger.setLevel(logging.INFO)
        for h in list(logger.handlers):
            logger.removeHandler(h)
        logger.addHandler(_file(os.path.join(settings.log_dir, name), "%(message)s"))
    logging.getLogger("aiohttp.access").disabled = True


class AccessLogger(AbstractAccessLogger):
    """One line per request in access.log; error answers also in error-access.log, with sid and code."""

    def log(self, request: Any, response: Any, time: float) -> None:
        status = response.status
        sid = request.get("sid", "-")
        line = (f'{request.remote} "{request.method} {request.path_qs}" {status} '
                f'{response.body_length} {time * 1000:.2f}ms sid={sid}')
        if status >= 400:
            code = request.get("aiges_code", "-")
            ERROR_ACCESS.info("%s code=%s msg=%s", line, code, request.get("aiges_message", ""))
        if self.enabled:
            ACCESS.info(line)

    @property
    def enabled(self) -> bool:
        return not ACCESS.disabled
