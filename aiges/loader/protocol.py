"""Requests that are not readable HTTP still get the error envelope.

aiohttp answers what its HTTP parser rejects (a request line over 8 KB, a broken chunk size, an
invalid Content-Length, bytes that are not HTTP) from ``RequestHandler.handle_error``, before
any route or middleware runs, with a ``text/plain`` body.  ``install()`` wraps that method once
per process (only the loader calls it) so those answers keep aiohttp's status, logging and
connection close, and carry ``{"header":{"code","message","sid"},"payload":null}`` like every
other error.  aiohttp offers no hook for this; the wrapper keeps the original's signature and
falls back to the original's answer if it ever changes.
"""
from __future__ import annotations

import logging
import uuid
from typing import Any

from aiohttp import web, web_protocol

from aiges import errors
from aiges.loader.envelope import error_body

logger = logging.getLogger("aiges.http")
_INSTALLED = "_aiges_envelope"


def _envelope_answer(original: web.StreamResponse, message: str | None) -> web.StreamResponse:
    status = original.status
    sid = uuid.uuid4().hex  # the shape of every sid (aiges.loader.once.new_sid)
    if status < 500:
        code = errors.BODY_TOO_LARGE if status == 413 else errors.INVALID_DATA
        text = f"the request is not valid HTTP: {(message or original.reason or '').strip()}"
        logger.info("sid=%s code=%s (HTTP parser) %s", sid, code, text)
    else:
        code, text = errors.INTERNAL, "internal error while handling the request; it is logged with this sid"
        logger.error("sid=%s code=%s (HTTP protocol) %s", sid, code, text)
    resp = web.Response(status=status, body=error_body(code, text, sid), content_type="application/json",
                        headers={"Access-Control-Allow-Origin": "*"})
    resp.force_close()
    return resp


def install() -> None:
    """Make aiohttp's protocol-level error answers envelope-shaped (idempotent)."""
    handler_cls: Any = web_protocol.RequestHandler
    original = handler_cls.handle_error
    if getattr(original, _INSTALLED, False):
        return

    def handle_error(self: Any, request: Any, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        resp = original(self, request, status, exc, message)
        try:
            return _envelope_answer(resp, message)
        except Exception:  # noqa: BLE001 - never worse than aiohttp's own answer
            return resp

    setattr(handle_error, _INSTALLED, True)
    handler_cls.handle_error = handle_error
