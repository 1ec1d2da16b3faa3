"""``aiges.callback.callback``: how an upstream streaming wrapper pushes results.

Signature as upstream gRPC mode: ``callback(user_resp, handle_tag, sid="")``.  Inside the plugin the
result goes out on the ``communicate`` stream tagged with ``handle_tag`` (the session's tag), with
each item's ``type`` kept (upstream dropped it, so stream results could only be text).  Outside a
plugin (``Wrapper().run(stream=True)``) it lands in :data:`aiges.dto.result_Queue`.
The Cgo-mode form ``callback(resp, usrTag)`` works too.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiges.sdk import dto

Sink = Callable[[Any, str, str], None]
_sink: Sink | None = None


def set_sink(sink: Sink | None) -> None:
    """Called by the plugin server; wrappers never call this."""
    global _sink
    _sink = sink


def callback(user_resp: Any, handle_tag: str = "", sid: str = "") -> int:
    sink = _sink
    if sink is None:
        dto.callback(user_resp, sid or handle_tag)
        return 0
    sink(user_resp, handle_tag, sid)
    return 0
