"""Typed keys for what the app factory puts on the aiohttp application."""
from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from aiges.config import Settings
from aiges.loader.auth import ApiKeys
from aiges.loader.metrics import Metrics
from aiges.loader.validate import Validator
from aiges.loader.workers import WorkerPool

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", WorkerPool)
METRICS = web.AppKey("metrics", Metrics)
VALIDATOR = web.AppKey("validator", Validator)
# names whose parameter.<name> sections are ours
# (a list, updated in place when the wrapper's schema arrives after start: see app.refresh_service)
SERVICES: web.AppKey[list[str]] = web.AppKey("services", list)
SCHEMA: web.AppKey[dict[str, Any]] = web.AppKey("schema", dict)
# open streaming sessions (aiges.loader.stream.Session, WebSocket and gRPC), drained on shutdown
SESSIONS: web.AppKey[set[Any]] = web.AppKey("sessions", set)
# set when SIGTERM/Ctrl-C starts the drain: new inference requests get 503 (12504), every answer
# closes its connection, /ready says 503 (so keep-alive clients and load balancers move on)
DRAINING: web.AppKey[asyncio.Event] = web.AppKey("draining", asyncio.Event)


def service_label(app: web.Application) -> str:
    services = app[SERVICES]
    return str(services[0]) if services else app[SETTINGS].svc_name
# set at SIGTERM when [aiges] drainDelay > 0: /ready says 503 so balancers take the instance out,
# while requests are served as usual (answers close their connection); DRAINING follows the delay
LEAVING: web.AppKey[asyncio.Event] = web.AppKey("leaving", asyncio.Event)
# the API keys in force (SIGHUP reloads [auth] apiKeysFile)
API_KEYS = web.AppKey("api_keys", ApiKeys)
