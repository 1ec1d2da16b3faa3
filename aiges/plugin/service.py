"""The plugin's gRPC services: ``aiges.WrapperService``, and go-plugin's controller.

Wire behaviour (PROTOCOL.md §2):
- once results go to the ``communicate`` stream tagged with the request's tag (what upstream's Go
  loader waits for), or, when the caller sends metadata ``aiges-inline: 1`` (our loader), in the
  unary reply only.  Failures always carry ``ret`` (+ ``msg``) on the path the caller listens to;
- wrapper code runs in a thread pool, never on the event loop, so ``communicate`` holds no thread
  (upstream's stream pinned one thread forever and deadlocked on one CPU);
- session calls go through :class:`~aiges.plugin.sessions.SessionRunner` (ordering, read polling,
  destroy-once); this module only adapts them to the RPCs.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from grpc_health.v1 import health_pb2

from aiges import errors
from aiges.plugin.convert import response_items
from aiges.plugin.hosts import Host
from aiges.plugin.sessions import SessionRunner
from aiges.sdk import callback as callback_mod
from aiges.wire.pb import aiges_inner_pb2 as pb
from aiges.wire.pb import aiges_inner_pb2_grpc as pb_grpc
from aiges.wire.pb import grpc_controller_pb2 as ctl_pb
from aiges.wire.pb import grpc_controller_pb2_grpc as ctl_grpc

logger = logging.getLogger("aiges.plugin")

INLINE_KEY = "aiges-inline"
_CLOSE = object()
RESULT_BACKLOG = 10000  # undelivered results kept while no communicate stream is open


class WrapperServicer(pb_grpc.WrapperServiceServicer):
    def __init__(self, host: Host, executor: ThreadPoolExecutor, health_servicer: Any) -> None:
        self.host = host
        self.executor = executor
        self.health = health_servicer
        self.loop = asyncio.get_running_loop()
        self.results: asyncio.Queue[Any] = asyncio.Queue()
        self.inflight = 0
        self.idle = asyncio.Event()
        self.idle.set()
        self.streams = 0
        self._loop_thread = threading.get_ident()
        # sessions of our loader's lane route their results to it; the rest go to `communicate`
        self.sessions = SessionRunner(host, executor, self._push_threadsafe, self.loop)
        callback_mod.set_sink(self._callback_sink)

    # ---- helpers
    def _track(self, delta: int) -> None:
        """Count wrapper calls in flight; ``idle`` is set when none is (the drain at shutdown)."""
        self.inflight += delta
        if self.inflight == 0:
            self.idle.set()
        else:
            self.idle.clear()

    async def _run(self, fn: Any, *args: Any) -> Any:
        self._track(1)
        try:
            return await self.loop.run_in_executor(self.executor, fn, *args)
        finally:
            self._track(-1)
    def _push_threadsafe(self, resp: pb.Response) -> None:
        if threading.get_ident() == self._loop_thread:
            self._push(resp)
        else:
            self.loop.call_soon_threadsafe(self._push, resp)

    def _push(self, resp: pb.Response) -> None:
        # Nobody listening on `communicate` (a host that only uses inline calls) must not make
        # results pile up forever: keep the newest RESULT_BACKLOG.
        if self.streams == 0 and self.results.qsize() >= RESULT_BACKLOG:
            self.results.get_nowait()
            logger.warning("no communicate stream open: dropped the oldest undelivered result")
        self.results.put_nowait(resp)

    def _callback_sink(self, user_resp: Any, tag: str, sid: str) -> None:
        """aiges.callback.callback from any wrapper thread: results keep their type."""
        try:
            items = response_items(user_resp)
            code = int(getattr(user_resp, "error_code", 0) or 0)
            own = str(getattr(user_resp, "error_message", "") or "") if code else ""
            resp = pb.Response(tag=tag, ret=code, list=items, msg=(own or self.host.error_text(code)) if code else "")
        except Exception as e:  # noqa: BLE001
            resp = pb.Response(tag=tag, ret=errors.WRAPPER_EXEC, msg=f"callback got an invalid Response: {e}")
        self.sessions.push(resp)  # to the session's lane connection, or to `communicate`

    def close_streams(self) -> None:
        for _ in range(max(1, self.streams)):
            self.results.put_nowait(_CLOSE)

    # ---- RPCs
    async def wrapperInit(self, request: pb.InitRequest, context: Any) -> pb.Ret:
        ret = await self._run(self.host.init, dict(request.config))
        if ret.ret == 0:
            await self.health.set("wrapper", health_pb2.HealthCheckResponse.SERVING)
        return ret

    async def wrapperSchema(self, request: pb.SvcId, context: Any) -> pb.Schema:
        try:
            data = await self._run(self.host.schema)
        except Exception as e:  # noqa: BLE001
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"schema unavailable: {e}")
        return pb.Schema(data=data)

    async def wrapperOnceExec(self, request: pb.Request, context: Any) -> pb.Response:
        inline = False
        for key, value in context.invocation_metadata() or ():
            if key == INLINE_KEY:
                inline = value == "1"
        remaining = context.time_remaining()
        deadline = time.monotonic() + remaining if remaining is not None else None
        resp: pb.Response = await self._run(self.host.once, request, deadline)
        if inline:
            return resp
        # Upstream host: it ignores this reply and waits on `communicate` for the tag.
        self._push(resp)
        return pb.Response(ret=resp.ret, msg=resp.msg)

    async def wrapperCreate(self, request: pb.CreateRequest, context: Any) -> pb.Handle:
        return await self.sessions.create_async(request)

    async def wrapperWrite(self, request: pb.WriteMessage, context: Any) -> pb.Ret:
        return await self.sessions.write_async(request)

    async def wrapperWriteStream(self, request_iterator: Any, context: Any) -> AsyncIterator[pb.Ret]:
        """A session's frames in order.  Nothing is answered per frame: a failed frame's ``ret``
        goes to ``communicate`` under the session's tag, after the results of earlier frames."""
        failed = False
        async for msg in request_iterator:
            if failed:  # the session ends with that error: frames already on their way are dropped
                continue
            ret = await self.sessions.write_async(msg)
            if ret.ret:
                failed = True
                tag = self.sessions.tag_of(msg.handle) or msg.req.tag
                self.sessions.push(pb.Response(tag=tag, ret=ret.ret, msg=ret.msg))
        return
        yield  # an async generator that yields nothing

    async def wrapperRead(self, request: pb.Handle, context: Any) -> pb.Response:
        return await self.sessions.read_async(request.handle)

    async def wrapperDestroy(self, request: pb.Handle, context: Any) -> pb.Ret:
        return await self.sessions.destroy_async(request.handle)

    async def wrapperFini(self, request: pb.SvcId, context: Any) -> pb.Ret:
        return await self._run(self.host.fini)

    async def testStream(self, request_iterator: Any, context: Any) -> AsyncIterator[pb.Response]:
        async for req in request_iterator:
            data = req.data.encode("utf-8")
            yield pb.Response(list=[pb.ResponseData(key="echo", data=data, len=len(data), status=3)])

    async def communicate(self, request_iterator: Any, context: Any) -> AsyncIterator[pb.Response]:
        self.streams += 1
        try:
            while True:
                item = await self.results.get()
                if item is _CLOSE:
                    return
                yield item
        finally:
            self.streams -= 1


class ControllerServicer(ctl_grpc.GRPCControllerServicer):
    """go-plugin calls Shutdown when the host kills the plugin: stop gracefully, not by SIGKILL."""

    def __init__(self, on_shutdown: Any) -> None:
        self.on_shutdown = on_shutdown

    async def Shutdown(self, request: ctl_pb.Empty, context: Any) -> ctl_pb.Empty:
        self.loop_call = asyncio.get_running_loop().call_soon(self.on_shutdown)
        return ctl_pb.Empty()
