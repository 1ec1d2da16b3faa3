"""Say where a C library called ``exit()``.

A segfault or ``abort()`` inside the library is reported by :mod:`faulthandler` (the plugin
enables it), whose trace names the Python frame that made the call -- ``wrapperExec`` and so on.
``exit()`` raises no signal: the process just ends with the library's code.  A C ``atexit``
handler runs inside that ``exit()``, in the thread that called it, while Python is still alive,
so it can print the same trace.

Only for the plugin process, which always ends with ``os._exit`` (C atexit handlers do not run
then): a process that ends through Python's own finalisation would run this handler after the
interpreter is gone.
"""
from __future__ import annotations

import ctypes
import faulthandler
import logging
import sys
from typing import Any

logger = logging.getLogger("aiges.plugin.c")

_installed: list[Any] = []


def _on_exit(status: int, arg: int | None) -> None:
    try:
        sys.stderr.write(f"Fatal: the C library called exit({status}) while the plugin was running; "
                         "Python threads at that moment (most recent call first):\n")
        sys.stderr.flush()
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        sys.stderr.flush()
    except BaseException:  # noqa: BLE001 - nothing may escape into C
        pass


def install() -> None:
    """Register the handler with glibc's ``on_exit`` (best effort: elsewhere, only the exit code)."""
    if _installed:
        return
    handler = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_void_p)(_on_exit)
    _installed.append(handler)  # alive for the process: the C runtime holds its address
    try:
        ctypes.CDLL(None).on_exit(handler, None)
    except (AttributeError, OSError) as e:
        logger.debug("no on_exit in this C library (%s): exit() inside an engine is reported by its code only", e)
