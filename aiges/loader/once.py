"""HTTP once inference: read, parse, validate, call one plugin worker, render.  Thin on purpose."""
from __future__ import annotations

import time
import uuid

from aiohttp import web

from aiges import errors
from aiges.loader import envelope
from aiges.loader.state import POOL, SERVICES, SETTINGS, VALIDATOR, service_label
from aiges.wire.pb import aiges_inner_pb2 as pb

JSON = "application/json"


def new_sid() -> str:
    """A request's or session's id: 32 hex digits, the one shape on HTTP, WebSocket and gRPC."""
    return uuid.uuid4().hex


def request_deadline(request: web.Request, default: float) -> float:
    """``X-Aiges-Deadline: <seconds>`` shortens or extends one request's deadline."""
    value = request.headers.get("X-Aiges-Deadline")
    if value is None:
        return default
    try:
        seconds = float(value)
    except ValueError:
        raise errors.BadRequest(f"header X-Aiges-Deadline: expected seconds as a number, got {value!r}",
                                errors.INVALID_PARAM) from None
    if not 0 < seconds <= 3600:
        raise errors.BadRequest(f"header X-Aiges-Deadline: must be in (0, 3600] seconds, got {value}",
                                errors.INVALID_PARAM)
    return seconds


def wrapper_failure(resp: pb.Response, status: int) -> errors.AigesError:
    """The error a client sees for a non-zero ``ret`` from the plugin."""
    if resp.ret == errors.DEADLINE:
        return errors.DeadlineExceeded(resp.msg or "deadline passed")
    if resp.ret in errors.CLIENT_ERROR_CODES:  # the wrapper says the request is wrong: 400
        return errors.WrapperRejected(resp.msg or f"the wrapper rejected the request (code {resp.ret})", resp.ret)
    err = errors.WrapperFailed(resp.msg or f"wrapper returned error code {resp.ret}", resp.ret)
    if status != 500:
        err.http_override = status
    return err


async def execute_once(app: web.Application, body: bytes, sid: str, deadline: float) -> bytes:
    """Envelope in, envelope out: the once path shared by HTTP and the public gRPC API."""
    settings = app[SETTINGS]
    doc = envelope.load_json(body)
    services: list[str] = app[SERVICES]
    parsed = envelope.parse(doc, services, settings.header_pass)
    app[VALIDATOR].check(parsed.params, parsed.raw_params, parsed.items, expect=parsed.expect, once=True,
                         shadowed=("parameter", parsed.shadowed))
    parsed.params["sid"] = sid
    resp = await app[POOL].once(pb.Request(tag=sid, params=parsed.params, list=parsed.items), deadline)
    if resp.ret:
        raise wrapper_failure(resp, settings.wrapper_error_status)
    return envelope.render_once(resp, parsed.expect, sid, service_label(app))


async def handle_once(request: web.Request) -> web.Response:
    request["started"] = time.perf_counter()  # the access log's duration (logs.AccessLogger)
    sid = request["sid"] = new_sid()
    deadline = request_deadline(request, request.app[SETTINGS].deadline)
    body = await execute_once(request.app, await request.read(), sid, deadline)
    return web.Response(body=body, content_type=JSON)
