"""The loader's public gRPC API (``aiges.api.Aiges``): the HTTP envelope over gRPC.

Thin adapters: ``Once`` runs the same path as ``POST /v1/<svc>`` (:func:`once.execute_once`),
``Stream`` runs the same :class:`stream.Session` as a WebSocket, through a gRPC channel.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
from aiohttp import web

from aiges import errors
from aiges.loader import auth
from aiges.loader.metrics import Metrics
from aiges.loader.once import execute_once, new_sid
from aiges.loader.state import API_KEYS, METRICS, SESSIONS, SETTINGS
from aiges.loader.stream import InputClosed, Session
from aiges.wire.pb import aiges_api_pb2 as api
from aiges.wire.pb import aiges_api_pb2_grpc as api_grpc

logger = logging.getLogger("aiges.grpc")
_END = None
_HALF_CLOSED = object()  # in the inbox: the client sends nothing more (but listens)


class GrpcChannel:
    """A session's frames from a gRPC request stream; answers go to ``out`` (None ends the reply)."""

    def __init__(self, requests: AsyncIterator[api.Envelope]) -> None:
        self.inbox: asyncio.Queue[Any] = asyncio.Queue()
        self.out: asyncio.Queue[str | None] = asyncio.Queue()
        self._closed = False
        # a reader task, so a receive timeout never cancels a read in the middle of the request stream
        self._reader = asyncio.create_task(self._read(requests))

    async def _read(self, requests: AsyncIterator[api.Envelope]) -> None:
        """Frames into ``inbox``.  The client closing its side of the stream (half-close) only means
        "no more frames": after its last frame the session goes on until its final result (before
        it, the session ends with an error at once).  A broken or cancelled call means the client
        is gone (``_END``)."""
        try:
            async for env in requests:
                self.inbox.put_nowait(env.json)
        except (grpc.aio.AioRpcError, asyncio.CancelledError):
            self.gone()
        else:
            self.inbox.put_nowait(_HALF_CLOSED)

    def gone(self) -> None:
        self.inbox.put_nowait(_END)

    @property
    def closed(self) -> bool:
        return self._closed

    async def send(self, text: str) -> None:
        self.out.put_nowait(text)

    async def receive(self, timeout: float) -> str | None:
        item = await asyncio.wait_for(self.inbox.get(), timeout)
        if item is _HALF_CLOSED:
            self.inbox.put_nowait(_HALF_CLOSED)  # asked again, the answer stays the same
            raise InputClosed
        text: str | None = item
        return text

    async def close(self, reason: str = "", wait: float = 1.0) -> None:
        if not self._closed:
            self._closed = True
            self.out.put_nowait(_END)
            self._reader.cancel()


class AigesApi(api_grpc.AigesServicer):
    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.settings = app[SETTINGS]
        self.metrics: Metrics = app[METRICS]
        self._sessions: set[asyncio.Task[None]] = set()

    def _authorise(self, context: Any) -> None:
        keys = self.app[API_KEYS].keys
        if keys:
            md = dict(context.invocation_metadata() or ())
            given, where = auth.given_key(lambda name: str(md.get(name, "")))
            auth.verify(given, keys, where)

    async def Once(self, request: api.Envelope, context: Any) -> api.Envelope:
        started = time.perf_counter()
        sid = new_sid()
        try:
            self._authorise(context)
            remaining = context.time_remaining()
            deadline = min(self.settings.deadline, remaining) if remaining is not None else self.settings.deadline
            body = await execute_once(self.app, request.json.encode("utf-8"), sid, deadline)
        except errors.AigesError as e:
            self.metrics.observe("grpc_once", errors.http_status(e), time.perf_counter() - started, e.code)
            logger.info("sid=%s code=%s grpc Once: %s", sid, e.code, e.message)
            await context.abort(errors.grpc_status(e), e.message,
                                trailing_metadata=(("aiges-code", str(e.code)), ("aiges-sid", sid)))
        self.metrics.observe("grpc_once", 200, time.perf_counter() - started)
        return api.Envelope(json=body.decode("utf-8"))

    async def Stream(self, request_iterator: Any, context: Any) -> AsyncIterator[api.Envelope]:
        try:
            self._authorise(context)
        except errors.AigesError as e:
            await context.abort(errors.grpc_status(e), e.message, trailing_metadata=(("aiges-code", str(e.code)),))
        channel = GrpcChannel(request_iterator)
        session = Session(self.app, channel, new_sid().replace("-", ""))
        self.metrics.sessions.inc()
        task = asyncio.create_task(session.run())
        self._sessions.add(task)
        self.app[SESSIONS].add(session)  # drained on shutdown like WebSocket sessions

        def ended(t: asyncio.Task[None]) -> None:
            self._sessions.discard(t)
            self.app[SESSIONS].discard(session)
            self.metrics.sessions.dec()
            self.metrics.sessions_total.labels(session.outcome).inc()
            channel.out.put_nowait(_END)

        task.add_done_callback(ended)
        # if the client cancels, this generator stops; the session notices the closed request
        # stream by itself and ends (wrapperDestroy included) without being cancelled midway
        try:
            while True:
                text = await channel.out.get()
                if text is None:
                    return
                yield api.Envelope(json=text)
        finally:
            if not task.done():  # the client cancelled the call: its session ends as a disconnect
                channel.gone()


async def start(app: web.Application, host: str, port: int) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0),
                                      ("grpc.max_receive_message_length", app[SETTINGS].max_body_size),
                                      ("grpc.max_send_message_length", 256 * 1024 * 1024)])
    api_grpc.add_AigesServicer_to_server(AigesApi(app), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    return server, bound
