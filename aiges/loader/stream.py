"""Streaming sessions over WebSocket (PROTOCOL.md §5).

Each text frame is an envelope.  The first frame creates the session (``wrapperCreate``, with the
frame's params and expect objects); every frame's payload is written in order (``wrapperWrite``,
with that frame's params too: upstream dropped them).  Results are pushed to the client the
moment the plugin produces them (``aiges.callback`` or ``wrapperRead``), with their type; after the
final result (status 2, or 3) the server closes normally.  ``wrapperDestroy`` runs exactly once
per session on every ending; timeouts and errors send an error frame before the close.

Data fields of result frames are base64 for every type, text included, as upstream's WebSocket
protocol and its Python client expect; ``seq`` counts from 1 per output key.
"""
from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any, Protocol

import orjson
from aiohttp import WSCloseCode, WSMsgType, web

from aiges import errors
from aiges.loader import envelope
from aiges.loader.state import METRICS, POOL, SERVICES, SESSIONS, SETTINGS, VALIDATOR, service_label
from aiges.loader.workers import SessionLink
from aiges.wire.pb import aiges_inner_pb2 as pb

logger = logging.getLogger("aiges.stream")
_ENDING: set[asyncio.Task[None]] = set()  # sessions' final close + destroy, kept alive until done
ENDING_BOUND = 0.6  # at shutdown: how long sessions ended by the drain get for their destroy (s)
CLOSE_TIMEOUT = 1.0  # how long a close waits for the client's close frame before dropping the connection (s)
SHUTDOWN_CLOSE_WAIT = 0.2  # ... at shutdown, so the loader's exit stays near one grace period


def _frame(sid: str, status: int, payload: dict[str, Any] | None = None) -> str:
    doc: dict[str, Any] = {"header": {"code": 0, "message": "success", "sid": sid, "status": status}}
    if payload is not None:
        doc["payload"] = payload
    return orjson.dumps(doc).decode()


def _error_frame(sid: str, err: errors.AigesError) -> str:
    # header status 0, as upstream sends its error frames (U§2.7 item 9); the close follows
    return orjson.dumps({"header": {"code": err.code, "message": err.message, "sid": sid, "status": 0}}).decode()


def _is_last(items: list[Any]) -> bool:
    """A frame whose every item has status 2 (last) or 3 (once) ends the client's input."""
    return bool(items) and all(d.status in (2, 3) for d in items)


READ_TIMEOUT_REASON = "time out"  # upstream's close reason after its read deadline
BAD_JSON_REASON = "parse request json error"  # ... and after a frame it cannot parse (10163)


def close_reason(err: errors.AigesError) -> str:
    """The close frame's reason after an error frame, as upstream's (a close reason holds 123 bytes)."""
    text = BAD_JSON_REASON if err.code == errors.WS_BAD_JSON else err.message
    return text.encode("utf-8")[:123].decode("utf-8", "ignore")


class InputClosed(Exception):
    """The client will send no more frames but still listens (a gRPC half-close)."""


class Channel(Protocol):
    """Where a session's frames come from and its answers go: a WebSocket, or a gRPC stream."""

    @property
    def closed(self) -> bool: ...

    async def send(self, text: str) -> None: ...

    async def receive(self, timeout: float) -> str | None:
        """The next text frame; None when the client has gone; asyncio.TimeoutError after timeout;
        InputClosed when the client sends no more but still listens."""
        ...

    async def close(self, reason: str = "", wait: float = 1.0) -> None:
        """End the session's stream; ``reason`` goes in a WebSocket close frame; the client's answer
        is waited for at most ``wait`` seconds.  Never raises."""
        ...


class SessionSocket(web.WebSocketResponse):
    """A WebSocket that answers a frame over the size limit (close 1009) or a text frame that is
    not UTF-8 (close 1007) with an error frame before aiohttp's close (aiohttp closes from inside
    ``receive``, before the session could say why)."""

    sid = ""

    async def close(self, *, code: int = WSCloseCode.OK, message: bytes = b"", drain: bool = True) -> bool:
        err: errors.AigesError | None = None
        if code == WSCloseCode.MESSAGE_TOO_BIG:
            err = errors.BodyTooLarge(f"frame larger than the limit of {self._max_msg_size / (1024 * 1024):.3g} MB "
                                      "([aiges] maxBodyMB); send smaller frames")
        elif code == WSCloseCode.INVALID_TEXT:
            err = errors.BadRequest("a text frame that is not valid UTF-8; send the JSON envelope as UTF-8 text",
                                    errors.WS_BAD_JSON)
        if err is not None and not self.closed:
            try:
                await self.send_str(_error_frame(self.sid, err))
            except (ConnectionError, RuntimeError):
                pass
            message = message or close_reason(err).encode("utf-8")
        return await super().close(code=code, message=message, drain=drain)


class WebSocketChannel:
    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws

    @property
    def closed(self) -> bool:
        return self.ws.closed

    async def send(self, text: str) -> None:
        await self.ws.send_str(text)

    async def receive(self, timeout: float) -> str | None:
        msg = await self.ws.receive(timeout=timeout)
        if msg.type == WSMsgType.TEXT:
            return str(msg.data)
        if msg.type == WSMsgType.BINARY:
            raise errors.BadRequest("frames must be JSON text frames, got a binary frame", errors.WS_BAD_JSON)
        return None  # CLOSE / CLOSING / CLOSED / ERROR: the client went away

    async def close(self, reason: str = "", wait: float = 1.0) -> None:
        try:
            await asyncio.wait_for(self.ws.close(message=reason.encode("utf-8")), wait)
        except (asyncio.TimeoutError, ConnectionError):
            pass  # the client did not answer the close in time: its connection is dropped


class Session:
    def __init__(self, app: web.Application, channel: Channel, sid: str) -> None:
        self.app = app
        self.settings = self.app[SETTINGS]
        self.pool = self.app[POOL]
        self.channel = channel
        self.sid = sid
        self.link: SessionLink | None = None
        self.expect: dict[str, envelope.Expect] = {}
        self.seq: dict[str, int] = {}
        self.done = asyncio.Event()
        self.ended = asyncio.Event()  # closed and destroyed: nothing of the session is left
        self.outcome = "ok"
        self.started = time.monotonic()
        self.input_done = False  # the client sent its last frame: now only the final result is awaited
        # the error that ends the session, set before its error frame is sent: from then on nothing
        # else goes out (a result racing the error frame must not follow it)
        self.error: errors.AigesError | None = None
        self.reason = ""  # the close frame's reason
        self.close_wait = CLOSE_TIMEOUT  # how long the close waits for the client's close frame
        self.inputs: dict[str, tuple[int, dict[str, str]]] = {}  # input key -> (type, desc), for a header-only last frame

    # ---- results → client
    async def pump(self) -> None:
        assert self.link is not None
        svc = service_label(self.app)
        while True:
            got = await self.link.results.get()
            if isinstance(got, errors.AigesError):
                await self.fail(got)
                return
            item = pb.Response.FromString(got) if isinstance(got, bytes) else got
            if item.ret:
                await self.fail(errors.WrapperFailed(item.msg or f"wrapper returned error code {item.ret}", item.ret))
                return
            payload: dict[str, Any] = {}
            try:
                for d in item.list:
                    exp = envelope.check_output(d, self.expect, svc)
                    n = self.seq[d.key] = self.seq.get(d.key, 0) + 1
                    payload[d.key] = envelope.output_item(d, exp, str(n), text_raw=False, json_raw=True)
            except errors.AigesError as e:
                await self.fail(e)
                return
            if not payload:
                continue
            if self.error is not None:
                return  # the session is ending with an error frame: nothing after it
            # final when any item is (upstream: "an item has status 2/3"), wherever it stands
            statuses = {d.status for d in item.list}
            status = 3 if 3 in statuses else 2 if 2 in statuses else item.list[-1].status
            await self.send(_frame(self.sid, status, payload))
            if status in (2, 3):
                self.done.set()
                return

    async def send(self, text: str) -> None:
        if not self.channel.closed:
            try:
                await self.channel.send(text)
            except ConnectionError:
                pass

    async def fail(self, err: errors.AigesError, reason: str | None = None) -> None:
        """End the session with ``err``: its error frame, then (``run``) the close with ``reason``
        (default :func:`close_reason`), then the destroy."""
        if self.done.is_set() or self.error is not None:
            return
        self.error = err
        self.reason = close_reason(err) if reason is None else reason
        self.outcome = "error" if not isinstance(err, errors.SessionTimeout) else "timeout"
        logger.info("session %s ends with code %d: %s", self.sid, err.code, err.message)
        await self.send(_error_frame(self.sid, err))
        self.done.set()

    # ---- client → wrapper
    async def handle_frame(self, data: str) -> None:
        try:
            doc = envelope.loads(data)
            if not isinstance(doc, dict):
                raise ValueError(f"a frame must be a JSON object, got a JSON {envelope.json_type(doc)}")
        except ValueError as e:
            raise errors.BadRequest(f"parse request json error: {e}", errors.WS_BAD_JSON) from None
        services: list[str] = self.app[SERVICES]
        parsed = envelope.parse(doc, services, self.settings.header_pass, require_payload=False)
        self.app[VALIDATOR].check(parsed.params, parsed.raw_params, parsed.items, later_frame=self.link is not None,
                                  expect=parsed.expect)
        self.app[METRICS].frames.inc()
        if not parsed.items and parsed.header.get("status") == "2" and not self.input_done:
            parsed.items = self._end_of_input()
        for d in parsed.items:
            if d.key not in self.inputs:
                self.inputs[d.key] = (d.type, dict(d.desc))
        if self.link is None:
            self.expect = parsed.expect
            parsed.params["sid"] = self.sid
            self.link = await self.pool.open_session(parsed.params, self.sid, self.settings.deadline)
            self.pump_task = asyncio.create_task(self.pump())
            await self.send(_frame(self.sid, 0))
        if parsed.items and self.link.lane is not None and not self.link.behind:
            # on the lane a frame is written at once unless the wrapper is behind: no timer needed
            await self.pool.write(self.link, parsed.items, parsed.params, self.settings.deadline)
            if _is_last(parsed.items):
                self.input_done = True
        elif parsed.items:
            # a frame the wrapper does not take (a hung wrapperWrite: the lane's acknowledgements or
            # HTTP/2 flow control hold it) must not hold the session past its timeout
            # (a timer, not wait_for: wait_for makes a task per frame, ~4% of a frame's CPU)
            task = asyncio.current_task()
            assert task is not None
            expired = False

            def expire() -> None:
                nonlocal expired
                expired = True
                task.cancel()
            left = self.started + self.settings.ws_session_timeout - time.monotonic()
            timer = asyncio.get_running_loop().call_later(max(left, 0.001), expire)
            try:
                await self.pool.write(self.link, parsed.items, parsed.params, self.settings.deadline)
            except asyncio.CancelledError:
                if not expired:
                    raise
                if hasattr(task, "uncancel"):  # Python 3.11+: this cancel is handled here
                    task.uncancel()
                raise errors.SessionTimeout(
                    f"session timeout: the wrapper did not take a frame within [ws] sessionTimeout = "
                    f"{self.settings.ws_session_timeout:g}s") from None
            finally:
                timer.cancel()
            if _is_last(parsed.items):
                self.input_done = True

    def _end_of_input(self) -> list[pb.RequestData]:
        """A header-only last frame (header status 2, empty payload) ends the input: the wrapper gets
        an empty last item (status 2) for each input the session has sent, so it can give its final
        result -- or its error at once, if it needs data.  A session with no input yet is refused."""
        if not self.inputs:
            raise errors.BadRequest("the last frame (header status 2) carries no payload and the session has no "
                                    "input yet: send the data in payload.<input> with status 2",
                                    errors.INVALID_DATA)
        return [pb.RequestData(key=key, data=b"", len=0, type=kind, status=2, desc=desc)
                for key, (kind, desc) in self.inputs.items()]

    async def read_loop(self) -> None:
        read_timeout = self.settings.ws_read_timeout
        session_end = self.started + self.settings.ws_session_timeout
        while not self.done.is_set():
            left = session_end - time.monotonic()
            if left <= 0:
                await self.fail(errors.SessionTimeout(
                    f"session timeout: the session exceeded [ws] sessionTimeout = {self.settings.ws_session_timeout:g}s"))
                return
            try:
                # after the last frame the client owes nothing more: the wrapper may take its time
                # (bounded by sessionTimeout) and readTimeout no longer applies
                text = await self.channel.receive(left if self.input_done else min(read_timeout, left))
            except asyncio.TimeoutError:
                if self.input_done or time.monotonic() >= session_end:
                    continue
                await self.fail(errors.SessionTimeout(
                    f"read timeout: no frame for {read_timeout:g}s ([ws] readTimeout)"), READ_TIMEOUT_REASON)
                return
            except InputClosed:  # a gRPC client half-closed its request stream
                if not self.input_done:
                    await self.fail(errors.BadRequest(
                        "the client closed its request stream before the last frame (payload status 2)",
                        errors.INVALID_DATA))
                    return
                try:
                    await asyncio.wait_for(self.done.wait(), max(left, 0.001))
                except asyncio.TimeoutError:
                    continue  # the loop's top reports the session timeout
                return
            except errors.AigesError as e:  # e.g. a binary frame
                await self.fail(e)
                return
            if text is None:  # the client went away: the session is over (a drain waits no longer for it)
                if not self.done.is_set():
                    self.outcome = "client_closed"
                    self.done.set()
                return
            try:
                await self.handle_frame(text)
            except errors.AigesError as e:
                await self.fail(e)
                return
            except Exception as e:  # noqa: BLE001 - a bug of ours still ends the session with an error frame
                logger.exception("session %s: unexpected error handling a frame", self.sid)
                await self.fail(errors.InternalError(f"internal error ({type(e).__name__}); it is logged with "
                                                     f"this sid"))
                return

    async def run(self) -> None:
        reader = asyncio.create_task(self.read_loop())
        done_wait = asyncio.create_task(self.done.wait())
        try:
            await asyncio.wait({reader, done_wait}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (reader, done_wait, getattr(self, "pump_task", None)):
                if t is not None and not t.done():
                    t.cancel()
            # shielded: aiohttp cancels the handler once the client's connection is gone, and the
            # destroy must happen all the same
            ending = asyncio.ensure_future(self._end())
            _ENDING.add(ending)
            ending.add_done_callback(_ENDING.discard)
            await asyncio.shield(ending)

    async def _end(self) -> None:
        # the close and the destroy at once: the client is not kept waiting for the destroy, and the
        # destroy not for a client slow to answer the close
        closing = None if self.channel.closed else \
            asyncio.ensure_future(self.channel.close(self.reason, self.close_wait))
        try:
            if self.link is not None:
                await self.pool.destroy(self.link)  # exactly once, on every ending
        finally:
            self.ended.set()
        if closing is not None:
            await closing


async def handle_stream(request: web.Request) -> web.StreamResponse:
    app = request.app
    # no permessage-deflate (as upstream's gorilla default): a zlib state per connection costs ~150 KB
    # of native memory that malloc does not give back after a worker crash's burst of closes (loader
    # RSS grew by ~40 KB per session and crash), and CPU per frame for JSON frames of a few hundred bytes
    ws = SessionSocket(max_msg_size=app[SETTINGS].max_body_size, heartbeat=None, timeout=CLOSE_TIMEOUT,
                       compress=False)
    if not ws.can_prepare(request).ok:
        raise errors.MethodNotAllowed(f"GET {request.path} is the streaming endpoint and needs a WebSocket "
                                      f"upgrade; use POST {request.path} for once inference")
    sid = ws.sid = request["sid"] = uuid.uuid4().hex
    await ws.prepare(request)
    metrics = app[METRICS]
    session = Session(app, WebSocketChannel(ws), sid)
    app[SESSIONS].add(session)
    metrics.sessions.inc()
    try:
        await session.run()
    finally:
        app[SESSIONS].discard(session)
        metrics.sessions.dec()
        metrics.sessions_total.labels(session.outcome).inc()
    return ws


async def drain_sessions(app: web.Application, grace: float) -> None:
    """On shutdown: let open sessions finish within ``grace``, then end the rest with an error frame
    (code 12504) so no client is cut off without a word, each closed right after it; returns when
    every session is destroyed (the workers stop after this), or ENDING_BOUND later."""
    sessions: set[Session] = app[SESSIONS]
    if not sessions:
        return
    logger.info("shutdown: waiting up to %.0fs for %d open session(s)", grace, len(sessions))
    waits = [asyncio.ensure_future(s.done.wait()) for s in list(sessions)]
    _, pending = await asyncio.wait(waits, timeout=grace)
    for w in pending:
        w.cancel()
    open_sessions = list(sessions)
    for s in open_sessions:
        s.close_wait = SHUTDOWN_CLOSE_WAIT
    await asyncio.gather(*(s.fail(errors.WorkerUnavailable(
        f"server shutting down: the session did not end within the grace period of {grace:g}s",
        errors.SHUTTING_DOWN)) for s in open_sessions if not s.done.is_set()))
    endings = [asyncio.ensure_future(s.ended.wait()) for s in open_sessions]
    if not endings:
        return
    _, pending = await asyncio.wait(endings, timeout=ENDING_BOUND)
    for w in pending:
        w.cancel()
    if pending:
        logger.warning("shutdown: %d session(s) not destroyed within %.1fs of their error frame", len(pending),
                       ENDING_BOUND)
