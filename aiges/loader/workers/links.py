"""The loader's links to one plugin worker: the lane for once requests and sessions, gRPC for the rest.

``WorkerLinks`` is the part of a :class:`~aiges.loader.workers.process.Worker` that carries calls:
the lane (:mod:`aiges.loader.workers.lane`) for once requests and sessions (create, frames,
results, destroy), the gRPC channel (init, schema, health, and every call when there is no lane:
``[aiges] lane = false`` or a plugin without one -- then sessions use ``wrapperCreate``/``Destroy``,
a write stream per session and the ``communicate`` stream of results routed by tag), what is in
flight on them, and how a transport failure becomes an aiges error (a worker that died under a call
is 503, not a bare gRPC status).  The process itself (spawn, handshake, liveness, stop) is
:mod:`~aiges.loader.workers.process`; choosing a worker is :mod:`~aiges.loader.workers.pool`.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import grpc

from aiges import errors
from aiges.config import Settings
from aiges.loader.workers.lane import LaneClient
from aiges.wire.pb import aiges_inner_pb2 as pb
from aiges.wire.pb import aiges_inner_pb2_grpc as pb_grpc

logger = logging.getLogger("aiges.workers")
INLINE_MD = (("aiges-inline", "1"),)
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 256 * 1024 * 1024),
                   ("grpc.max_send_message_length", 256 * 1024 * 1024)]


ACK_EVERY = 16  # a lane write asks for an ACKED every this many frames ...
ACK_BYTES = 1 << 20  # ... or bytes
MAX_UNACKED = 64  # a session's next frame waits while more frames than this ...
MAX_UNACKED_BYTES = 4 << 20  # ... or bytes are written but not known to have returned


class SessionLink:
    """The loader side of one streaming session: its results arrive on ``results`` (a serialised
    ``aiges.Response`` from the lane, a ``pb.Response`` from gRPC, or the error that ends it)."""

    def __init__(self, worker: WorkerLinks, tag: str) -> None:
        self.worker = worker
        self.tag = tag
        self.handle = ""
        self.results: asyncio.Queue[bytes | pb.Response | errors.AigesError] = asyncio.Queue()
        # on the lane
        self.lane: LaneClient | None = None
        self.number = 0  # the session's number on its lane
        self.sent = self.sent_bytes = 0  # frames written, and their bytes
        self.taken = self.taken_bytes = 0  # ... of which the wrapper is known to have taken (acknowledged)
        self.marks: collections.deque[tuple[int, int]] = collections.deque()  # (sent, bytes) at each ack asked
        self.mark = (0, 0)
        self.waiter: asyncio.Future[None] | None = None
        self.error: errors.AigesError | None = None
        # on gRPC
        self.writer: Any = None  # the wrapperWriteStream call, opened by the first frame
        self.acks: asyncio.Task[None] | None = None  # reads the write stream's (failure-only) answers

    def acked(self) -> None:
        """An ACKED arrived: the frames up to its mark have returned."""
        if self.marks:
            self.taken, self.taken_bytes = self.marks.popleft()
        self._wake()

    def lost(self, err: errors.AigesError) -> None:
        self.error = err
        self.results.put_nowait(err)
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    @property
    def behind(self) -> bool:
        """Too much written that the wrapper has not taken yet: the next frame waits."""
        return self.sent - self.taken > MAX_UNACKED or self.sent_bytes - self.taken_bytes > MAX_UNACKED_BYTES


class WorkerLinks:
    """Calls to one plugin process; the process side (:class:`Worker`) sets name, state and proc."""

    name: str
    settings: Settings
    state: str
    proc: asyncio.subprocess.Process | None

    def __init__(self, on_batch: Callable[[int], None] | None = None) -> None:
        self.channel: grpc.aio.Channel | None = None
        self.stub: pb_grpc.WrapperServiceStub | None = None
        self.lane: LaneClient | None = None  # once requests (aiges.loader.workers.lane); None = per-call gRPC
        self.on_batch = on_batch
        self.inflight: set[Any] = set()
        self._last_done = time.monotonic()  # when a gRPC call last completed
        self.sessions: dict[str, SessionLink] = {}
        self._comm_task: asyncio.Task[Any] | None = None
        self.abort_reason = ""  # set at shutdown: why calls still running are cancelled

    @property
    def ready(self) -> bool:
        raise NotImplementedError

    @property
    def load(self) -> int:
        """Work on this worker now: gRPC calls and lane requests in flight, open sessions."""
        return len(self.inflight) + (len(self.lane.pending) if self.lane is not None else 0) + len(self.sessions)


    @property
    def busy(self) -> bool:
        return bool(self.inflight) or (self.lane is not None and bool(self.lane.pending))


    @property
    def last_progress(self) -> float:
        """When this worker last answered a request (lane or gRPC), monotonic seconds."""
        return max(self._last_done, self.lane.last_answer if self.lane is not None else 0.0)


    async def _open_lane(self, path: str) -> None:
        """Connect the lane; a plugin without one (a custom pythonPluginCmd running another
        plugin) is served with one gRPC call per request instead."""
        if not os.path.exists(path):
            logger.warning("plugin %s offers no lane at %s: once requests use one gRPC call each", self.name, path)
            return
        try:
            self.lane = await LaneClient.connect(path, self.name, self.on_batch)
        except OSError as e:
            logger.warning("plugin %s: cannot connect its lane (%s): once requests use one gRPC call each",
                           self.name, e)


    async def _communicate(self) -> None:
        """Session results (aiges.callback / wrapperRead) arrive here, routed by tag."""
        assert self.stub is not None
        call = self.stub.communicate(iter(()))
        try:
            async for resp in call:
                link = self.sessions.get(resp.tag)
                if link is not None:
                    link.results.put_nowait(resp)
                else:
                    logger.debug("result for unknown tag %r dropped", resp.tag)
        except grpc.aio.AioRpcError:
            return
        except asyncio.CancelledError:
            call.cancel()
            raise


    def fail_inflight(self, reason: str) -> None:
        err = errors.WorkerUnavailable(reason)
        if self.lane is not None:
            self.lane.fail(lambda: errors.WorkerUnavailable(
                f"plugin worker {self.name} died while handling the request; it is being restarted", retry_after=1))
        for call in list(self.inflight):
            call.cancel()
        for link in list(self.sessions.values()):
            link.lost(err)
        self.sessions.clear()


    async def once(self, request: pb.Request, timeout: float | None) -> pb.Response:
        """One once request: on the lane, or as an inline gRPC call when there is none."""
        lane = self.lane
        if lane is None:
            resp: pb.Response = await self.call("wrapperOnceExec", request, timeout, inline=True)
            return resp
        if not self.ready:
            raise errors.WorkerUnavailable(f"plugin worker {self.name} is not ready", retry_after=1)
        return await lane.call(request, timeout)


    async def call(self, method: str, request: Any, timeout: float | None, inline: bool = False) -> Any:
        """One unary RPC to this plugin; transport failures become AigesErrors."""
        stub = self.stub
        if stub is None or not self.ready:
            raise errors.WorkerUnavailable(f"plugin worker {self.name} is not ready", retry_after=1)
        rpc = getattr(stub, method)
        call = rpc(request, timeout=timeout, metadata=INLINE_MD if inline else None)
        self.inflight.add(call)
        try:
            return await call
        except asyncio.CancelledError:
            raise self._cancelled() from None
        except grpc.aio.AioRpcError as e:
            raise self._rpc_error(e, method, timeout) from None
        finally:
            self.inflight.discard(call)
            self._last_done = time.monotonic()


    def _cancelled(self) -> BaseException:
        """A call cancelled because this worker died becomes 503; any other cancel stays one."""
        if self.abort_reason:
            return errors.WorkerUnavailable(self.abort_reason, errors.SHUTTING_DOWN)
        if self.state in ("dead", "stopped"):
            return errors.WorkerUnavailable(
                f"plugin worker {self.name} died while handling the request; it is being restarted", retry_after=1)
        return asyncio.CancelledError()


    def _rpc_error(self, e: grpc.aio.AioRpcError, method: str, timeout: float | None) -> errors.AigesError:
        code = e.code()
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return errors.DeadlineExceeded(f"no result within the deadline of {timeout or 0:g}s")
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
            return errors.WorkerUnavailable(f"plugin worker {self.name} is unavailable ({e.details()})",
                                            retry_after=1)
        return errors.InternalError(f"plugin call {method} failed: {code.name}: {e.details()}")


    # ---- sessions: on the lane when there is one, else over gRPC
    async def create_session(self, link: SessionLink, params: dict[str, str], sid: str,
                             timeout: float) -> pb.Handle:
        request = pb.CreateRequest(params=params, sid=sid, tag=sid)
        lane = self.lane
        if lane is None:
            h: pb.Handle = await self.call("wrapperCreate", request, timeout)
            return h
        if not self.ready:
            raise errors.WorkerUnavailable(f"plugin worker {self.name} is not ready", retry_after=1)
        link.lane = lane
        return await lane.create(link, request, timeout)

    async def write_session(self, link: SessionLink, msg: pb.WriteMessage, timeout: float) -> None:
        """One frame of a session, in order.  On the lane it is not answered: a failed frame comes
        back on ``link.results`` (after the results of earlier frames) and ends the session there.
        Every ACK_EVERY frames (or ACK_BYTES) one asks for an acknowledgement, and a frame waits
        while the wrapper is more than MAX_UNACKED frames (or MAX_UNACKED_BYTES) behind: a wrapper
        that does not keep up slows its client instead of filling the plugin's memory."""
        lane = link.lane
        if lane is None:
            await self.write_frame(link, msg, timeout)
            return
        while link.behind and link.error is None and lane.connected:
            link.waiter = lane.loop.create_future()
            await link.waiter
        if link.error is not None:
            raise link.error
        data = msg.SerializeToString()
        link.sent += 1
        link.sent_bytes += len(data)
        ack = link.sent - link.mark[0] >= ACK_EVERY or link.sent_bytes - link.mark[1] >= ACK_BYTES
        if ack:
            link.mark = (link.sent, link.sent_bytes)
            link.marks.append(link.mark)
        lane.write(link, data, ack)

    async def destroy_session(self, link: SessionLink, timeout: float) -> pb.Ret | None:
        """``wrapperDestroy``; None when the worker that held the session is gone (nothing holds it)."""
        lane = link.lane
        if lane is None:
            self.close_writer(link)
            if not self.ready:
                return None
            ret: pb.Ret = await self.call("wrapperDestroy", pb.Handle(handle=link.handle), timeout)
            return ret
        if lane is not self.lane or not lane.connected:
            lane.sessions.pop(link.number, None)
            return None
        return await lane.destroy(link, timeout)

    async def write_frame(self, link: SessionLink, msg: pb.WriteMessage, timeout: float) -> None:
        """One frame on the session's write stream (opened on first use, lives as long as the session).

        Not answered per frame: a frame that fails comes back as a ``Response`` with ``ret`` on
        ``communicate`` under the session's tag, in order with the session's results, and ends the
        session there.  Waiting for an answer per frame cost a gRPC message and a round trip per
        frame (~20% of a frame's CPU).  Frames keep their order (one stream) and HTTP/2 flow
        control still pushes back; ``_watch_writes`` reports the stream itself failing.
        """
        if self.stub is None or not self.ready:
            raise errors.WorkerUnavailable(f"plugin worker {self.name} is not ready", retry_after=1)
        if link.writer is None:
            link.writer = self.stub.wrapperWriteStream(timeout=timeout)
            self.inflight.add(link.writer)
            link.acks = asyncio.create_task(self._watch_writes(link, link.writer, timeout))
        try:
            await link.writer.write(msg)
        except asyncio.CancelledError:
            raise self._cancelled() from None
        except grpc.aio.AioRpcError as e:
            raise await self._stream_error(e, timeout) from None


    async def _stream_error(self, e: grpc.aio.AioRpcError, timeout: float) -> errors.AigesError:
        """A broken stream is often the first sign of a dead worker, before its exit is reaped:
        wait a moment for the exit, so the session hears "worker died" (503), not a bare INTERNAL."""
        if e.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN) and self.proc is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self.proc.wait()), 0.5)
            except asyncio.TimeoutError:
                pass
            else:
                return errors.WorkerUnavailable(f"plugin worker {self.name} died during the session", retry_after=1)
        return self._rpc_error(e, "wrapperWriteStream", timeout)


    async def _watch_writes(self, link: SessionLink, writer: Any, timeout: float) -> None:
        try:
            async for _ in writer:  # the plugin answers nothing on this stream; it only ends
                pass
        except grpc.aio.AioRpcError as e:
            # CANCELLED: the session closed its stream, or fail_inflight already told it the worker died
            if e.code() != grpc.StatusCode.CANCELLED:
                link.results.put_nowait(await self._stream_error(e, timeout))


    def close_writer(self, link: SessionLink) -> None:
        if link.writer is not None:
            self.inflight.discard(link.writer)
            link.writer.cancel()
            link.writer = None
        if link.acks is not None:
            link.acks.cancel()
            link.acks = None


    async def close_channel(self) -> None:
        if self.lane is not None:
            self.lane.close()
            self.lane = None
        if self._comm_task is not None:
            self._comm_task.cancel()
            self._comm_task = None
        if self.channel is not None:
            await self.channel.close(grace=None)
            self.channel = None
            self.stub = None
