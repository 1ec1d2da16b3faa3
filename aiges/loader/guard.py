"""What one HTTP client can hold of the loader: bounded connections, requests that must arrive.

On its own aiohttp keeps an idle keep-alive connection for about an hour, waits without limit for
a request's headers and for its body, and accepts connections until the process runs out of file
descriptors -- after which nobody, ``/ready`` included, gets an answer (slowloris: one client with
1,100 half-sent requests locked everyone out).  The guard bounds each ([aiges] in aiges.toml):

- ``headerTimeout``: a request's line and headers must arrive within this many seconds of its
  first byte, else 408 (code 12408) and the connection closes;
- ``bodyTimeout``: while a request body is being received, at most this many seconds may pass
  without a byte (a slow upload that keeps moving is fine), else 408 and close;
- ``keepaliveTimeout``: an idle keep-alive connection is closed after this (aiohttp's own timer);
- ``maxConnections``: open connections at most.  At the cap a new connection makes room by
  closing the connection that has gone longest without a request in progress (idle keep-alive,
  or still sending its headers: the slowest client); when every connection has a request in
  progress the new one is answered 503 (code 10110) at once.  ``"auto"``: derived from the
  descriptor limit, which :func:`raise_fd_limit` lifts to the hard limit at start.

How: a small protocol per connection sits between the transport and aiohttp's own (it forwards
every event and notes when bytes arrive), the server's request handler is wrapped to note when a
request is in progress, and a sweep a few times a second applies the timeouts -- a sweep, not a
timer per request, so the hot path pays a dict lookup and a few attribute writes per request.
The same wrapper answers what aiohttp would answer outside the app's middleware (an ``Expect``
other than ``100-continue``: aiohttp's plain-text 417) with the error envelope.
"""
from __future__ import annotations

import asyncio
import http
import logging
import resource
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import cast

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from aiges import errors
from aiges.config import Settings
from aiges.loader.envelope import error_body
from aiges.loader.metrics import Metrics
from aiges.loader.rest import handle_infer, rest_error_body

logger = logging.getLogger("aiges.http")
Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
AUTO_MAX_CONNECTIONS = 10_000
REFUSED_LINGER = 0.5  # seconds a refused connection stays open so its answer is read, not reset
REFUSED_LINGERING_MAX = 64  # refused connections allowed to linger at once; beyond: closed at once
SUMMARY_EVERY = 10.0  # seconds between log lines about connections the guard closed


def raise_fd_limit() -> int:
    """Lift the soft descriptor limit to the hard one (every connection is a descriptor); → the limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 16)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as e:
            logger.warning("cannot raise the open-file limit from %d to %d: %s", soft, target, e)
    return soft if soft != resource.RLIM_INFINITY else 1 << 16


def connection_cap(configured: int, fd_limit: int) -> int:
    """``maxConnections``: as configured (0 = auto), below the descriptor limit with room to spare
    for the worker links, the logs and a burst of accepts (an accept that fails for want of a
    descriptor stalls the whole listener)."""
    reserve = max(128, fd_limit // 4)
    room = max(16, fd_limit - reserve)
    if not configured:
        return min(AUTO_MAX_CONNECTIONS, room)
    if configured > room:
        logger.warning("[aiges] maxConnections %d does not fit the open-file limit of %d; using %d (raise the "
                       "limit, e.g. ulimit -n or LimitNOFILE, to allow more)", configured, fd_limit, room)
        return room
    return configured


def raw_answer(err: errors.AigesError, sid: str, body: bytes | None = None) -> bytes:
    """A complete HTTP/1.1 error answer with the envelope, for connections no handler owns."""
    status = errors.http_status(err)
    body = body if body is not None else error_body(err.code, err.message, sid)
    head = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}", "Content-Type: application/json",
            f"Content-Length: {len(body)}", "Connection: close", "Access-Control-Allow-Origin: *"]
    if err.retry_after:
        head.append(f"Retry-After: {int(err.retry_after)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode("ascii") + body


class _Conn(asyncio.Protocol):
    """One admitted connection: forwards to aiohttp's protocol, notes arrivals and requests."""

    __slots__ = ("guard", "inner", "transport", "first_rx", "last_rx", "request", "began", "closing")

    def __init__(self, guard: ConnectionGuard, inner: RequestHandler) -> None:
        self.guard = guard
        self.inner = inner
        self.transport: asyncio.Transport | None = None
        self.first_rx = 0.0  # first byte of a request whose handler has not started yet (0: none)
        self.last_rx = 0.0  # last byte received
        self.request: web.BaseRequest | None = None  # the request in progress
        self.began = 0.0
        self.closing = False

    # ---- asyncio.Protocol, forwarded
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # (uvloop's are not asyncio.Transport instances)
        self.last_rx = self.guard.now
        self.guard.admitted(self)
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return  # answered and closing: what else arrives is not read
        now = self.guard.now  # the sweep's clock: a tick late at most, and no clock call per packet
        if self.request is None and not self.first_rx:
            self.first_rx = now
        self.last_rx = now
        self.inner.data_received(data)

    def eof_received(self) -> None:
        self.inner.eof_received()  # aiohttp's keeps the transport half-open (returns nothing)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.guard.lost(self)
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    # ---- the guard's view
    def begin(self, request: web.BaseRequest) -> None:
        self.request = request
        self.began = self.guard.now
        self.first_rx = 0.0
        self.guard.waiting.pop(self, None)

    def end(self) -> None:
        self.request = None
        self.first_rx = 0.0
        if not self.closing:
            self.guard.waiting[self] = None  # to the end: the most recently active

    def close(self, answer: bytes = b"") -> None:
        """Answer (when given) and close; aiohttp's protocol hears connection_lost as usual."""
        if self.closing:
            return
        self.closing = True
        self.guard.waiting.pop(self, None)
        transport = self.transport
        if transport is not None and not transport.is_closing():
            if answer:
                transport.write(answer)
            transport.close()


class _Refused(asyncio.Protocol):
    """A connection over the cap with no room to make: the 503 envelope at once, then closed."""

    def __init__(self, guard: ConnectionGuard) -> None:
        self.guard = guard
        self.lingering = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        g = self.guard
        g.note("refused")
        err = errors.TooManyConnections(
            f"the server is at its limit of {g.cap} open connections ([aiges] maxConnections), each with a "
            "request in progress; retry shortly", retry_after=1)
        transport.write(g.refusal(err))
        # stay open a moment, reading nothing, so the request the client sends meanwhile does not
        # reset the connection before it has read the answer; bounded, so a flood cannot pile up
        if g.lingering < REFUSED_LINGERING_MAX and transport.can_write_eof():
            g.lingering += 1
            self.lingering = True
            transport.write_eof()
            g.loop.call_later(REFUSED_LINGER, transport.close)
        else:
            transport.close()

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool:
        return False  # the client is done: close

    def connection_lost(self, exc: BaseException | None) -> None:
        if self.lingering:
            self.guard.lingering -= 1
            self.lingering = False


class ConnectionGuard:
    def __init__(self, settings: Settings, metrics: Metrics, fd_limit: int) -> None:
        self.settings = settings
        self.metrics = metrics
        self.cap = connection_cap(settings.max_connections, fd_limit)
        self.loop = asyncio.get_running_loop()
        self.clock = self.loop.time
        self.now = self.clock()  # updated by the sweep: what connections stamp their arrivals with
        self.conns: dict[RequestHandler, _Conn] = {}  # by aiohttp's protocol (request.protocol)
        self.waiting: dict[_Conn, None] = {}  # no request in progress, longest first: who makes room
        self.lingering = 0
        self.listening = False
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed: Counter[str] = Counter()  # since the last summary line
        self._summary_at = time.monotonic()
        self.tick = max(0.05, min(1.0, settings.header_timeout / 4, settings.body_timeout / 4))
        metrics.bind_connections(lambda: float(len(self.conns)))
        logger.info("client connections: at most %d open (open-file limit %d); headers within %gs, a body may "
                    "stall %gs, idle keep-alive %gs", self.cap, fd_limit, settings.header_timeout,
                    settings.body_timeout, settings.keepalive_timeout)

    # ---- wiring
    def site(self, runner: web.AppRunner, host: str, port: int, backlog: int = 2048) -> web.TCPSite:
        return GuardedSite(runner, host, port, self, backlog)

    def factory(self, server: web.Server) -> Callable[[], asyncio.Protocol]:
        # every request of every connection passes here: the wrapper notes it in progress
        server.request_handler = self.wrap(server.request_handler)

        def protocol() -> asyncio.Protocol:
            if len(self.conns) >= self.cap and not self._make_room():
                return _Refused(self)
            return _Conn(self, server())
        return protocol

    def wrap(self, handler: Handler) -> Handler:
        conns = self.conns

        async def guarded(request: web.BaseRequest) -> web.StreamResponse:
            conn = conns.get(request.protocol)
            if conn is not None:
                conn.begin(request)
            try:
                expect = request.headers.get("Expect")
                if expect is not None and expect.lower() != "100-continue":
                    # aiohttp would answer its plain-text 417 before any middleware runs
                    return self._answer(request, errors.ExpectationFailed(
                        f"header Expect: {expect[:100]!r} is not supported; send 'Expect: 100-continue' or no "
                        "Expect header"))
                return await handler(request)
            except web.HTTPException as e:  # raised outside the app's middleware (aiohttp's own checks)
                if e.status < 400:
                    raise
                return self._answer(request, errors.AigesError(f"{e.status} {e.reason}", errors.INTERNAL
                                                               if e.status >= 500 else errors.INVALID_DATA))
            finally:
                if conn is not None:
                    conn.end()
        return guarded

    def start(self) -> None:
        self.listening = True
        if self._sweeper is None:
            self._sweeper = self.loop.call_later(self.tick, self._sweep)

    def stop(self) -> None:
        """The listener is closed: the sweep goes on while connections are left (a drain), then ends."""
        self.listening = False

    # ---- connections
    def admitted(self, conn: _Conn) -> None:
        self.conns[conn.inner] = conn
        self.waiting[conn] = None

    def lost(self, conn: _Conn) -> None:
        self.conns.pop(conn.inner, None)
        self.waiting.pop(conn, None)
        conn.closing = True

    def _make_room(self) -> bool:
        """Close the connection that has gone longest without a request in progress; False: none."""
        conn = next(iter(self.waiting), None)
        if conn is None:
            return False
        if conn.first_rx:
            err = errors.TooManyConnections(
                f"the server is at its limit of {self.cap} open connections ([aiges] maxConnections) and this "
                "connection had not finished sending its request; retry", retry_after=1)
            conn.close(raw_answer(err, str(uuid.uuid4())))
        else:
            conn.close()  # idle keep-alive: closing it is what HTTP allows at any time
        self.note("evicted")
        return True

    def note(self, reason: str) -> None:
        self._closed[reason] += 1
        self.metrics.connections_closed.labels(reason).inc()

    def refusal(self, err: errors.AigesError) -> bytes:
        return raw_answer(err, str(uuid.uuid4()))

    # ---- the sweep: timeouts
    def _sweep(self) -> None:
        if not self.listening and not self.conns:
            self._sweeper = None
            return
        self._sweeper = self.loop.call_later(self.tick, self._sweep)
        now = self.now = self.clock()
        s = self.settings
        heads = now - s.header_timeout - self.tick  # stamps are up to a tick early
        for conn in [c for c in self.waiting if c.first_rx and c.first_rx < heads]:
            err = errors.RequestTimeout(f"the request's headers did not arrive within {s.header_timeout:g}s of its "
                                        "first byte ([aiges] headerTimeout)")
            conn.close(raw_answer(err, str(uuid.uuid4())))
            self.note("header_timeout")
        bodies = now - s.body_timeout - self.tick
        for conn in list(self.conns.values()):
            request = conn.request
            if request is None or conn.closing or max(conn.last_rx, conn.began) >= bodies or request.content.is_eof():
                continue
            self._body_timeout(conn, request)
        if self._closed and time.monotonic() - self._summary_at >= SUMMARY_EVERY:
            self._summary_at = time.monotonic()
            logger.info("closed slow or surplus client connections: %s (open: %d of at most %d)",
                        ", ".join(f"{n} {reason}" for reason, n in self._closed.most_common()), len(self.conns),
                        self.cap)
            self._closed.clear()

    def _body_timeout(self, conn: _Conn, request: web.BaseRequest) -> None:
        """The body stalled: the client gets the 408 now; the handler waiting for the body gets the
        same error (so it is logged and counted as one), and its own answer finds the connection closed."""
        s = self.settings
        err = errors.RequestTimeout(f"the request body stalled: no data for {s.body_timeout:g}s ([aiges] bodyTimeout); "
                                    "a slow upload is fine as long as it keeps sending")
        sid = request.get("sid") or str(uuid.uuid4())
        request["sid"] = sid
        body = None
        if isinstance(request, web.Request) and request.match_info.handler is handle_infer:
            body = rest_error_body(err, sid, request.content_type, request.get("started", time.perf_counter()))
        conn.close(raw_answer(err, sid, body))
        request.content.set_exception(err)
        self.note("body_timeout")

    def _answer(self, request: web.BaseRequest, err: errors.AigesError) -> web.Response:
        """An error answered before the app's middleware could (the envelope, counted and logged as it would)."""
        sid = str(uuid.uuid4())
        request["sid"] = sid
        status = errors.http_status(err)
        logger.info("sid=%s code=%s %s %s: %s", sid, err.code, request.method, request.path, err.message)
        self.metrics.observe("other", status, 0.0, err.code)
        body = (rest_error_body(err, sid, request.content_type, time.perf_counter()) if request.path == "/infer"
                else error_body(err.code, err.message, sid))
        response = web.Response(status=status, body=body, content_type="application/json",
                                headers={"Access-Control-Allow-Origin": "*"})
        response.force_close()  # the body the client meant to send after its Expect is not read
        return response


class GuardedSite(web.TCPSite):
    """aiohttp's TCP site, with the guard between each connection and aiohttp's protocol."""

    __slots__ = ("_guard",)

    def __init__(self, runner: web.AppRunner, host: str, port: int, guard: ConnectionGuard, backlog: int) -> None:
        super().__init__(runner, host, port, backlog=backlog)
        self._guard = guard

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            self._guard.factory(server), self._host, self._port, backlog=self._backlog)
        self._bound_port = self._server.sockets[0].getsockname()[1] if self._server.sockets else self._port
        self._guard.start()

    async def stop(self) -> None:
        self._guard.stop()
        await super().stop()
