"""``create_app``: the loader's aiohttp application and its one route table.

The inference routes come from the wrapper's schema (``Wrapper.route``, else
``/{version}/private/{serviceId}``) plus upstream's README route ``/v1/<svcName>``; each serves
POST (once) and GET + WebSocket upgrade (streaming session) at the same time.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSMsgType, web
from aiohttp.http_exceptions import BadHttpMessage
from aiohttp.web_protocol import RequestPayloadError

from aiges import errors
from aiges.config import Settings
from aiges.loader import auth, envelope, protocol
from aiges.loader.auth import ApiKeys
from aiges.loader.metrics import Metrics
from aiges.loader.once import handle_once, new_sid
from aiges.loader.openapi import forget as forget_openapi
from aiges.loader.openapi import openapi_json, swagger
from aiges.loader.rest import handle_infer, rest_error_body
from aiges.loader.routes import inference_routes
from aiges.loader.routing import allowed_methods, slash_redirect
from aiges.loader.state import (
    API_KEYS,
    DRAINING,
    LEAVING,
    METRICS,
    POOL,
    SCHEMA,
    SERVICES,
    SESSIONS,
    SETTINGS,
    VALIDATOR,
)
from aiges.loader.stream import handle_stream
from aiges.loader.validate import Validator
from aiges.loader.workers import WorkerPool

logger = logging.getLogger("aiges.http")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PROTECTED = frozenset({"once", "stream", "infer"})  # routes that need an API key when keys are set
CORS_PREFLIGHT = {"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
                  "Access-Control-Allow-Headers": "Content-Type, x-api-key, Authorization, X-Aiges-Deadline",
                  "Access-Control-Max-Age": "600"}


def _check_api_key(request: web.Request, keys: tuple[str, ...]) -> None:
    given, where = auth.given_key(lambda name: request.headers.get(name, ""))
    auth.verify(given, keys, where)


def _http_error(exc: web.HTTPException, request: web.Request, settings: Settings) -> errors.AigesError:
    if exc.status == 404:
        return errors.NotFound(f"no route {request.path}; inference is at POST/WebSocket "
                               f"{', '.join(inference_routes(settings, request.app[SCHEMA]))}")
    if exc.status == 405:
        return errors.MethodNotAllowed(f"method {request.method} is not allowed on {request.path}")
    if exc.status == 413:
        return errors.BodyTooLarge(f"request body is larger than the limit of "
                                   f"{settings.max_body_size / (1024 * 1024):.3g} MB ([aiges] maxBodyMB)")
    return errors.AigesError(exc.reason or str(exc), errors.INTERNAL)


@web.middleware
async def envelope_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every error into upstream's error envelope with an honest HTTP status; count it."""
    app = request.app
    settings = app[SETTINGS]
    started = time.perf_counter()
    route = ROUTE_KINDS.get(request.match_info.handler, "other")
    err: errors.AigesError | None = None
    http_exc: web.HTTPException | None = None
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        return web.Response(status=204, headers=CORS_PREFLIGHT)  # a browser's CORS preflight
    draining = app[DRAINING].is_set()
    try:
        if draining and route in PROTECTED:  # a new request on a keep-alive connection during the drain
            raise errors.WorkerUnavailable("server shutting down: not taking new requests; retry (another "
                                           "instance)", errors.SHUTTING_DOWN, retry_after=1)
        keys = app[API_KEYS].keys
        if keys and route in PROTECTED:
            _check_api_key(request, keys)
        response = await handler(request)
    except errors.AigesError as e:
        err = e
    except web.HTTPException as e:
        if e.status < 400:
            raise
        moved = await slash_redirect(request) if e.status == 404 else None
        if moved is not None:
            response = moved
        else:
            http_exc, err = e, _http_error(e, request, settings)
    except (RequestPayloadError, BadHttpMessage) as e:  # a body that is not gzip, a broken multipart part
        err = errors.BadRequest(f"the request body could not be read: {e}; check Content-Encoding",
                                errors.INVALID_DATA)
    except (ConnectionResetError, OSError) as e:  # client went away mid-body
        err = errors.BadRequest(f"connection error while reading the request: {e}", errors.INVALID_DATA)
    except Exception as e:  # noqa: BLE001 - a bug of ours still answers in the envelope, with a sid
        logger.exception("unexpected error on %s %s", request.method, request.path)
        err = errors.InternalError(f"internal error ({type(e).__name__}); it is logged with this sid")
    if err is not None:
        sid = request.get("sid") or ""
        if not sid:  # every answer carries a sid, errors before any handler ran included
            sid = request["sid"] = new_sid()
        status = errors.http_status(err)
        request["aiges_code"] = err.code
        request["aiges_message"] = err.message
        if status >= 500:
            logger.error("sid=%s code=%s %s %s: %s", sid, err.code, request.method, request.path, err.message)
        else:
            logger.info("sid=%s code=%s %s %s: %s", sid, err.code, request.method, request.path, err.message)
        headers = {"Retry-After": str(int(err.retry_after or 1))} if status in (429, 503) else {}
        if status == 405:
            headers["Allow"] = allowed_methods(request, http_exc)
        body = (rest_error_body(err, sid, request.content_type, started) if route == "infer"
                else envelope.error_body(err.code, err.message, sid))
        response = web.Response(status=status, body=body, content_type="application/json", headers=headers)
    app[METRICS].observe(route, response.status, time.perf_counter() - started, err.code if err else 0)
    if not response.prepared:  # a WebSocket has sent its headers already
        response.headers.setdefault("Access-Control-Allow-Origin", "*")  # as upstream, on every answer
        if draining or app[DRAINING].is_set() or app[LEAVING].is_set():
            response.force_close()  # no more requests on this connection: the drain can end
    return response


# ---------------------------------------------------------------- small system handlers
async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "UP"})


async def ready(request: web.Request) -> web.Response:
    pool = request.app[POOL]
    draining = request.app[DRAINING].is_set() or request.app[LEAVING].is_set()
    ok = pool.ready and not draining
    body = {"status": "DRAINING" if draining else "READY" if ok else "NOT_READY", "workers": len(pool.workers),
            "ready": pool.ready_count, "unresponsive": pool.unresponsive_count}
    return web.json_response(body, status=200 if ok else 503)


async def metrics(request: web.Request) -> web.Response:
    m = request.app[METRICS]
    return web.Response(body=m.render(), headers={"Content-Type": m.content_type})


async def root(request: web.Request) -> web.Response:
    raise web.HTTPFound("/swagger/index.html")


async def ping(request: web.Request) -> web.StreamResponse:
    """Upstream's WebSocket echo: 'ping' → 'pong', anything else echoed."""
    ws = web.WebSocketResponse(heartbeat=30)
    if not ws.can_prepare(request).ok:
        raise errors.BadRequest("/ping is a WebSocket endpoint: connect with a WebSocket client; "
                                "use GET /health for a plain HTTP check", errors.INVALID_DATA)
    await ws.prepare(request)
    async for msg in ws:
        if msg.type == WSMsgType.TEXT:
            await ws.send_str("pong" if msg.data == "ping" else msg.data)
        elif msg.type == WSMsgType.BINARY:
            await ws.send_bytes(msg.data)
    return ws


# route kind of each handler: the label for metrics and what PROTECTED refers to
ROUTE_KINDS: dict[Any, str] = {handle_once: "once", handle_stream: "stream", handle_infer: "infer",
                               health: "health", ready: "ready", metrics: "metrics", ping: "ping", root: "root", openapi_json: "openapi",
                               swagger: "swagger"}


def _service_id(schema: dict[str, Any], settings: Settings) -> str:
    return str((schema.get("meta") or {}).get("serviceId") or settings.svc_name)


def refresh_service(app: web.Application, schema: dict[str, Any]) -> None:
    """The wrapper's schema arrived after start (it could not even be imported then, and
    exitOnInitFailure = false): its parameter section, validation and OpenAPI apply from now on.
    The route table is fixed once serving, so a route of its own needs a restart."""
    settings = app[SETTINGS]
    service_id = _service_id(schema, settings)
    app[SCHEMA].clear()
    app[SCHEMA].update(schema)
    app[SERVICES][:] = list(dict.fromkeys([service_id, settings.svc_name]))
    app[VALIDATOR].reload(schema, service_id)
    forget_openapi(app)
    served = {r.canonical for r in app.router.resources()}
    missing = [r for r in inference_routes(settings, schema) if r not in served]
    logger.warning("the wrapper's schema arrived after start: serving %s; %s need%s a restart of the loader",
                   ", ".join(r for r in inference_routes(settings, schema) if r in served), ", ".join(missing) or
                   "no route", "s" if len(missing) == 1 else "")


def create_app(settings: Settings, pool: WorkerPool, metrics_: Metrics, schema: dict[str, Any],
               api_keys: ApiKeys | None = None) -> web.Application:
    protocol.install()  # what aiohttp's HTTP parser rejects gets the error envelope too
    app = web.Application(middlewares=[envelope_errors], client_max_size=settings.max_body_size)
    app[SETTINGS] = settings
    app[POOL] = pool
    app[METRICS] = metrics_
    app[SCHEMA] = schema
    service_id = _service_id(schema, settings)
    app[SERVICES] = list(dict.fromkeys([service_id, settings.svc_name]))
    app[VALIDATOR] = Validator(schema, service_id)
    app[SESSIONS] = set()
    app[DRAINING] = asyncio.Event()
    app[LEAVING] = asyncio.Event()
    app[API_KEYS] = api_keys or ApiKeys(settings)
    metrics_.bind_pool(lambda: float(pool.inflight), lambda: float(len(pool.workers) * settings.worker_threads),
                       lambda: float(pool.ready_count), lambda: float(len(pool.workers)),
                       lambda: float(pool.unresponsive_count))

    routes = [
        web.get("/health", health),
        web.get("/ready", ready),
        web.get("/metrics", metrics),
        web.get("/ping", ping),
        web.route("*", "/", root),  # any method, as upstream
        web.post("/infer", handle_infer),
        web.get("/openapi.json", openapi_json),
        web.get("/swagger", root),
        web.get("/swagger/", root),
        web.get("/swagger/{file}", swagger),
    ]
    for path in inference_routes(settings, schema):
        routes.append(web.post(path, handle_once))
        routes.append(web.get(path, handle_stream, allow_head=False))
    app.add_routes(routes)
    if not schema:
        pool.on_schema = lambda late: refresh_service(app, late)
    return app
