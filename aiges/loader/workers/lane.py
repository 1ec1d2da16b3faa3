"""The loader's end of the lane to one plugin worker (see ``aiges.plugin.lane`` for the why).

One unix-socket connection per worker process, opened after ``wrapperInit``.  ``call()`` puts a
once request frame in the outgoing buffer and returns the matching answer; the buffer is written
once per event-loop turn (``call_soon``), so frames that arrive together leave together and a lone
one leaves at once.  Answers are matched by id.  Sessions ride the same connection
(``create`` / ``write`` / ``destroy``): a session's results arrive as RESULT frames carrying its
number and go straight into its :class:`~aiges.loader.workers.links.SessionLink` queue, frames of
many sessions coalesced like once requests.  Writes are not answered one by one; every few frames
(or megabytes) one asks for an ACKED, which is how a session learns its wrapper keeps up
(``SessionLink.unacked``: the back-pressure a gRPC stream's flow control used to give).  When the
connection breaks (the worker died), every request and every session waiting on it fails at once
with 503 -- no timeout, no guessing.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from aiges import errors
from aiges.wire import frames
from aiges.wire.frames import REQUEST_HEAD, RESPONSE_HEAD
from aiges.wire.pb import aiges_inner_pb2 as pb

logger = logging.getLogger("aiges.lane")


class SessionLink(Protocol):
    """What the lane needs of a session (:class:`aiges.loader.workers.links.SessionLink`)."""

    number: int
    handle: str
    results: asyncio.Queue[Any]

    def acked(self) -> None: ...

    def lost(self, err: errors.AigesError) -> None: ...


class LaneClient(asyncio.Protocol):
    def __init__(self, name: str, on_batch: Callable[[int], None] | None = None) -> None:
        self.name = name
        self.on_batch = on_batch
        self.loop = asyncio.get_running_loop()
        self.transport: Any = None  # uvloop's transports are not asyncio.Transport subclasses
        self.pending: dict[int, asyncio.Future[bytes]] = {}
        self.sessions: dict[int, SessionLink] = {}  # session number -> its link
        self._abandoned: set[int] = set()  # creates whose caller gave up: destroyed when they arrive
        self._next = 0
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._buf = bytearray()
        self.lost: BaseException | None = None
        self.last_answer = time.monotonic()  # when an answer last came: the worker makes progress
        self.expired = 0  # requests that reached their deadline since the last answer

    @classmethod
    async def connect(cls, path: str, name: str, on_batch: Callable[[int], None] | None = None) -> LaneClient:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_unix_connection(lambda: cls(name, on_batch), path)
        return proto

    # ---- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.last_answer = time.monotonic()
        self.expired = 0
        buf = self._buf
        buf += data
        head = RESPONSE_HEAD
        hsize = head.size
        end = len(buf)
        pos = 0
        pending = self.pending
        sessions = self.sessions
        while end - pos >= hsize:
            length, kind, rid, batch = head.unpack_from(buf, pos)
            stop = pos + hsize + length
            if stop > end:
                break
            if kind == frames.RESULT:
                link = sessions.get(rid)
                if link is not None:
                    link.results.put_nowait(bytes(buf[pos + hsize:stop]))
            elif kind == frames.ACKED:
                link = sessions.get(rid)
                if link is not None:
                    link.acked()
            else:
                fut = pending.pop(rid, None)
                if fut is not None and not fut.done():
                    fut.set_result(bytes(buf[pos + hsize:stop]))
                elif rid in self._abandoned:
                    self._arrived_abandoned(rid, bytes(buf[pos + hsize:stop]))
                if batch and self.on_batch is not None:
                    self.on_batch(batch)
            pos = stop
        if pos:
            del buf[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.fail(lambda: errors.WorkerUnavailable(
            f"plugin worker {self.name} went away while handling the request; it is being restarted",
            retry_after=1))
        sessions, self.sessions = self.sessions, {}
        for link in sessions.values():
            link.lost(errors.WorkerUnavailable(f"plugin worker {self.name} died during the session; it is being "
                                               "restarted", retry_after=1))

    # ---- use
    @property
    def connected(self) -> bool:
        return self.transport is not None and self.lost is None

    def fail(self, make_error: Callable[[], BaseException], closed: bool = True) -> None:
        """Every request waiting on this lane gets its own ``make_error()`` now (worker died,
        shutdown); ``closed`` = later calls are refused too."""
        if closed and self.lost is None:
            self.lost = make_error()
        pending, self.pending = self.pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(make_error())

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._out and self.transport is not None:
            out, self._out = self._out, []
            self.transport.write(b"".join(out) if len(out) > 1 else out[0])

    def _send(self, kind: int, rid: int, timeout: float | None, message: bytes) -> None:
        self._out.append(REQUEST_HEAD.pack(len(message), kind, rid, timeout or 0.0))
        self._out.append(message)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _refuse_if_lost(self) -> None:
        if self.lost is not None or self.transport is None:
            raise errors.WorkerUnavailable(f"plugin worker {self.name} is not ready", retry_after=1)

    async def _ask(self, kind: int, message: bytes, timeout: float | None, rid: int = 0) -> bytes:
        """One request frame and its ANSWER's bytes; DeadlineExceeded after ``timeout``."""
        self._refuse_if_lost()
        if not rid:
            self._next += 1
            rid = self._next
        fut: asyncio.Future[bytes] = self.loop.create_future()
        self.pending[rid] = fut
        self._send(kind, rid, timeout, message)
        timer: Any = None
        if timeout:
            timer = self.loop.call_later(timeout, self._expire, rid, timeout, kind == frames.CREATE)
        try:
            return await fut
        except asyncio.CancelledError:
            self.pending.pop(rid, None)
            raise
        finally:
            if timer is not None:
                timer.cancel()

    async def call(self, request: pb.Request, timeout: float | None) -> pb.Response:
        """One once request."""
        return pb.Response.FromString(await self._ask(frames.ONCE, request.SerializeToString(), timeout))

    def _expire(self, rid: int, timeout: float, abandon: bool) -> None:
        fut = self.pending.pop(rid, None)
        self.expired += 1
        if fut is not None and not fut.done():
            if abandon:  # a session the wrapper creates after this belongs to nobody: destroy it then
                self._abandoned.add(rid)
                self.sessions.pop(rid, None)
            fut.set_exception(errors.DeadlineExceeded(f"no result within the deadline of {timeout:g}s"))

    # ---- sessions
    async def create(self, link: SessionLink, request: pb.CreateRequest, timeout: float | None) -> pb.Handle:
        """``wrapperCreate``; from now on the session's results go to ``link``."""
        self._refuse_if_lost()
        self._next += 1
        number = self._next
        link.number = number
        self.sessions[number] = link
        try:
            h = pb.Handle.FromString(await self._ask(frames.CREATE, request.SerializeToString(), timeout, number))
        except BaseException:
            self.sessions.pop(number, None)
            raise
        if h.err_code or not h.handle:
            self.sessions.pop(number, None)
        return h

    def _arrived_abandoned(self, number: int, data: bytes) -> None:
        self._abandoned.discard(number)
        h = pb.Handle.FromString(data)
        if h.handle and not h.err_code and self.connected:
            logger.warning("wrapperCreate returned %s after its caller gave up; destroying it", h.handle)
            self._next += 1
            self._send(frames.DESTROY, self._next, None, pb.Handle(handle=h.handle).SerializeToString())

    def write(self, link: SessionLink, message: bytes, ack: bool) -> None:
        """A session's frame (a serialised ``WriteMessage``); no answer unless ``ack``."""
        self._refuse_if_lost()
        self._send(frames.WRITE_ACK if ack else frames.WRITE, link.number, None, message)

    async def destroy(self, link: SessionLink, timeout: float) -> pb.Ret:
        """``wrapperDestroy``; the session's results stop here."""
        self.sessions.pop(link.number, None)
        return pb.Ret.FromString(await self._ask(frames.DESTROY, pb.Handle(handle=link.handle).SerializeToString(),
                                                 timeout))
