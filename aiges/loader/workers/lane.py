"""The loader's end of the lane to one plugin worker (see ``aiges.plugin.lane`` for the why).

One unix-socket connection per worker process, opened after ``wrapperInit``.  ``call()`` puts a
request frame in the outgoing buffer and returns the matching answer; the buffer is written once
per event-loop turn (``call_soon``), so requests that arrive together leave together and a lone
request leaves at once.  Answers are matched by id.  When the connection breaks (the worker died),
every request waiting on it fails at once with 503 -- no timeout, no guessing.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from aiges import errors
from aiges.wire.frames import REQUEST_HEAD, RESPONSE_HEAD
from aiges.wire.pb import aiges_inner_pb2 as pb

logger = logging.getLogger("aiges.lane")


class LaneClient(asyncio.Protocol):
    def __init__(self, name: str, on_batch: Callable[[int], None] | None = None) -> None:
        self.name = name
        self.on_batch = on_batch
        self.loop = asyncio.get_running_loop()
        self.transport: Any = None  # uvloop's transports are not asyncio.Transport subclasses
        self.pending: dict[int, asyncio.Future[bytes]] = {}
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
        while end - pos >= hsize:
            length, rid, batch = head.unpack_from(buf, pos)
            stop = pos + hsize + length
            if stop > end:
                break
            fut = pending.pop(rid, None)
            if fut is not None and not fut.done():
                fut.set_result(bytes(buf[pos + hsize:stop]))
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

    async def call(self, request: pb.Request, timeout: float | None) -> pb.Response:
        if self.lost is not None or self.transport is None:
            raise errors.WorkerUnavailable(f"plugin worker {self.name} is not ready", retry_after=1)
        self._next += 1
        rid = self._next
        message = request.SerializeToString()
        fut: asyncio.Future[bytes] = self.loop.create_future()
        self.pending[rid] = fut
        self._out.append(REQUEST_HEAD.pack(len(message), rid, timeout or 0.0))
        self._out.append(message)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)
        timer: Any = None
        if timeout:
            timer = self.loop.call_later(timeout, self._expire, rid, timeout)
        try:
            data = await fut
        except asyncio.CancelledError:
            self.pending.pop(rid, None)
            raise
        finally:
            if timer is not None:
                timer.cancel()
        return pb.Response.FromString(data)

    def _expire(self, rid: int, timeout: float) -> None:
        fut = self.pending.pop(rid, None)
        self.expired += 1
        if fut is not None and not fut.done():
            fut.set_exception(errors.DeadlineExceeded(f"no result within the deadline of {timeout:g}s"))
