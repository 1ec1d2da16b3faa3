"""The plugin's gRPC server: ``aiges.WrapperService`` + health + go-plugin's controller.

Wire behaviour (PROTOCOL.md §2):
- the first stdout line is the go-plugin handshake, printed before the wrapper is imported;
- health service ``"plugin"`` is SERVING as soon as we listen; ``"wrapper"`` once init succeeded;
- once results go to the ``communicate`` stream tagged with the request's tag (what upstream's Go
  loader waits for), or, when the caller sends metadata ``aiges-inline: 1`` (our loader), in the
  unary reply only.  Failures always carry ``ret`` (+ ``msg``) on the path the caller listens to;
- wrapper code runs in a thread pool, never on the event loop, so ``communicate`` holds no thread
  (upstream's stream pinned one thread forever and deadlocked on one CPU).
"""
from __future__ import annotations

import asyncio
import faulthandler
import logging
import os
import random
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from aiges import callback as callback_mod
from aiges import errors
from aiges._pb import aiges_inner_pb2 as pb
from aiges._pb import aiges_inner_pb2_grpc as pb_grpc
from aiges._pb import grpc_controller_pb2 as ctl_pb
from aiges._pb import grpc_controller_pb2_grpc as ctl_grpc
from aiges.plugin import lifeline
from aiges.plugin.convert import response_items
from aiges.plugin.hosts.base import Host
from aiges.plugin.hosts.choose import MODES, plugin_host
from aiges.plugin.lane import Lane

logger = logging.getLogger("aiges.plugin")

INLINE_KEY = "aiges-inline"
MAGIC_COOKIE_KEY = "BASIC_PLUGIN"
MAGIC_COOKIE_VALUE = "hello"
_CLOSE = object()
READ_POLL_MIN = 0.002  # wrapperRead back-off while a session has nothing to read (seconds) ...
READ_POLL_MAX = 0.05  # ... up to upstream's poll interval
READ_POLL_IDLE = 600.0  # a session with no write and no result for this long stops being polled, or
# longer when the loader says its sessions may live longer (AIGES_SESSION_TIMEOUT)
RESULT_BACKLOG = 10000  # undelivered results kept while no communicate stream is open


class ReadPoller:
    """Polls one session's ``wrapperRead`` from its first write until its final result or its
    destroy, pushing each result the moment it is read (upstream, with realTimeRlt=false, only
    looked when the client sent the next frame).  A write wakes it at once; while nothing comes,
    it backs off from READ_POLL_MIN to READ_POLL_MAX.  Reads never overlap the session's other
    calls (``_run_session``), and destroy stops the poller first, so a poller never outlives its
    session nor reads for the next session that reuses the handle."""

    def __init__(self, servicer: WrapperServicer, handle: str, tag: str) -> None:
        self.servicer = servicer
        self.handle = handle
        self.tag = tag
        self._wake = asyncio.Event()
        self.task = servicer._spawn(self._poll())

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self.task.cancel()

    async def _poll(self) -> None:
        sv = self.servicer
        delay = 0.0
        quiet_since = time.monotonic()
        try:
            while True:
                self._wake.clear()
                resp = await sv._run_session(self.handle, sv.host.read, self.handle, self.tag)
                if resp is not None:
                    sv._push(resp)
                    if resp.ret or any(d.status in (2, 3) for d in resp.list):
                        return
                    delay, quiet_since = 0.0, time.monotonic()
                    continue
                if time.monotonic() - quiet_since > sv.poll_idle:
                    logger.warning("session %s: no write and no result for %.0fs; stopped polling wrapperRead",
                                   self.handle, sv.poll_idle)
                    return
                delay = min(READ_POLL_MAX, max(READ_POLL_MIN, delay * 2))
                try:
                    await asyncio.wait_for(self._wake.wait(), delay)
                    delay, quiet_since = 0.0, time.monotonic()
                except asyncio.TimeoutError:
                    pass
        finally:
            if sv._readers.get(self.handle) is self:
                sv._readers.pop(self.handle, None)


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
        self.session_tags: dict[str, str] = {}
        self.streams = 0
        # per session handle: the wrapper call running for it in a thread (the thread goes on even
        # when its caller gave up), the gate that starts the next call only after it, the poller
        self._busy: dict[str, Future[Any]] = {}
        self._gates: dict[str, asyncio.Lock] = {}
        self._readers: dict[str, ReadPoller] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self.poll_idle = READ_POLL_IDLE
        callback_mod.set_sink(self._callback_sink)

    # ---- helpers
    async def _run(self, fn: Any, *args: Any) -> Any:
        self.inflight += 1
        self.idle.clear()
        try:
            return await self.loop.run_in_executor(self.executor, fn, *args)
        finally:
            self.inflight -= 1
            if self.inflight == 0:
                self.idle.set()

    async def _run_session(self, handle: str, fn: Any, *args: Any) -> Any:
        """Run a wrapper method of one session after the previous one for that session has really
        returned, even if its caller was cancelled: a wrapper never sees two calls for one handle at
        once (write and read, or destroy while a write still runs)."""
        gate = self._gates.setdefault(handle, asyncio.Lock())
        async with gate:
            previous = self._busy.get(handle)
            if previous is not None and not previous.done():
                await asyncio.wait({asyncio.wrap_future(previous)})
            self.inflight += 1
            self.idle.clear()
            cf = self.executor.submit(fn, *args)
            self._busy[handle] = cf
        try:
            return await asyncio.wrap_future(cf)
        finally:
            self.inflight -= 1
            if self.inflight == 0:
                self.idle.set()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

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
        self.loop.call_soon_threadsafe(self._push, resp)

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
        creating = self._spawn(self._run(self.host.create, request))
        try:
            h: pb.Handle = await asyncio.shield(creating)
        except asyncio.CancelledError:
            # the caller gave up (deadline): a session the wrapper creates after that belongs to
            # nobody, so destroy it when it arrives instead of leaking it
            creating.add_done_callback(self._destroy_abandoned)
            raise
        if not h.err_code:
            self.session_tags[h.handle] = request.tag
        return h

    def _destroy_abandoned(self, creating: asyncio.Task[pb.Handle]) -> None:
        if creating.cancelled() or creating.exception() is not None:
            return
        h = creating.result()
        if h.handle and not h.err_code:
            logger.warning("wrapperCreate returned %s after its caller gave up; destroying it", h.handle)
            self._spawn(self._destroy(h.handle))

    async def wrapperWrite(self, request: pb.WriteMessage, context: Any) -> pb.Ret:
        handle = request.handle
        ret: pb.Ret = await self._run_session(handle, self.host.write, request)
        # a poller only for a live session: a write that returns after its session's destroy (an
        # upstream host does not wait) must not start one that would read for the handle's next owner
        if ret.ret == 0 and self.host.polls_read and handle in self.session_tags:
            poller = self._readers.get(handle)
            if poller is None:
                poller = self._readers[handle] = ReadPoller(self, handle, self.session_tags[handle])
            poller.wake()
        return ret

    async def wrapperWriteStream(self, request_iterator: Any, context: Any) -> AsyncIterator[pb.Ret]:
        """A session's frames in order.  Nothing is answered per frame: a failed frame's ``ret``
        goes to ``communicate`` under the session's tag, after the results of earlier frames."""
        failed = False
        async for msg in request_iterator:
            if failed:  # the session ends with that error: frames already on their way are dropped
                continue
            ret = await self.wrapperWrite(msg, context)
            if ret.ret:
                failed = True
                tag = self.session_tags.get(msg.handle, msg.req.tag)
                self._push(pb.Response(tag=tag, ret=ret.ret, msg=ret.msg))
        return
        yield  # an async generator that yields nothing

    async def wrapperRead(self, request: pb.Handle, context: Any) -> pb.Response:
        tag = self.session_tags.get(request.handle, "")
        resp = await self._run_session(request.handle, self.host.read, request.handle, tag)
        return resp if resp is not None else pb.Response(tag=tag)

    async def wrapperDestroy(self, request: pb.Handle, context: Any) -> pb.Ret:
        # shielded: once asked, the destroy happens even if the caller's deadline passes while a
        # slow wrapperWrite of the session is still running (the handle must never leak)
        ret: pb.Ret = await asyncio.shield(self._spawn(self._destroy(request.handle)))
        return ret

    async def _destroy(self, handle: str) -> pb.Ret:
        self.session_tags.pop(handle, None)
        poller = self._readers.pop(handle, None)
        if poller is not None:
            poller.stop()
        try:
            ret: pb.Ret = await self._run_session(handle, self.host.destroy, handle)
        finally:
            busy = self._busy.get(handle)
            if busy is None or busy.done():
                self._busy.pop(handle, None)
                self._gates.pop(handle, None)
        return ret

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


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def bind(server: grpc.aio.Server, env: dict[str, str]) -> tuple[str, str]:
    """Listen where the host asked; returns (network, address) for the handshake line."""
    sock = env.get("AIGES_PLUGIN_SOCKET")
    if sock:
        if os.path.exists(sock):
            os.unlink(sock)
        server.add_insecure_port(f"unix:{sock}")
        return "unix", sock
    lo, hi = env.get("PLUGIN_MIN_PORT"), env.get("PLUGIN_MAX_PORT")
    if lo and hi:
        if not (lo.isdigit() and hi.isdigit() and 0 < int(lo) <= int(hi) <= 65535):
            raise SystemExit(f"aiges.serve: PLUGIN_MIN_PORT..PLUGIN_MAX_PORT = {lo!r}..{hi!r} is not a port range")
        ports = list(range(int(lo), int(hi) + 1))
        random.shuffle(ports)
        for port in ports[:200]:
            if not _port_free(port):
                continue
            try:
                server.add_insecure_port(f"127.0.0.1:{port}")
                return "tcp", f"127.0.0.1:{port}"
            except RuntimeError:
                continue
        raise SystemExit(f"aiges.serve: no free port in PLUGIN_MIN_PORT..PLUGIN_MAX_PORT = {lo}..{hi}")
    port = server.add_insecure_port("127.0.0.1:0")
    return "tcp", f"127.0.0.1:{port}"


async def serve(env: dict[str, str]) -> int:
    threads = int(env.get("AIGES_PLUGIN_THREADS") or (os.cpu_count() or 2) * 2)
    grace = float(env.get("AIGES_PLUGIN_GRACE") or 10)
    executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="wrapper")
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0),
                                      ("grpc.max_receive_message_length", 256 * 1024 * 1024),
                                      ("grpc.max_send_message_length", 256 * 1024 * 1024)])
    health_servicer = health.aio.HealthServicer()
    host = plugin_host(env)
    servicer = WrapperServicer(host, executor, health_servicer)
    servicer.poll_idle = max(READ_POLL_IDLE, float(env.get("AIGES_SESSION_TIMEOUT") or 0) + 60)
    stop = asyncio.Event()
    pb_grpc.add_WrapperServiceServicer_to_server(servicer, server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    ctl_grpc.add_GRPCControllerServicer_to_server(ControllerServicer(stop.set), server)

    network, address = bind(server, env)
    # our own loader's once requests (aiges.plugin.lane); an upstream host never asks for it
    lane_path = env.get("AIGES_PLUGIN_LANE")
    lane = None
    if lane_path:
        lane = Lane(lane_path, host, executor, threads, _opt_int(env.get("AIGES_MAX_BATCH_SIZE")),
                    _opt_float(env.get("AIGES_MAX_QUEUE_DELAY_MS")))
    await server.start()
    await health_servicer.set("plugin", health_pb2.HealthCheckResponse.SERVING)
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    await health_servicer.set("wrapper", health_pb2.HealthCheckResponse.NOT_SERVING)
    # The handshake: the first and only line we write to stdout before user code may print.
    sys.stdout.write(f"1|1|{network}|{address}|grpc\n")
    sys.stdout.flush()

    loop = asyncio.get_running_loop()
    orphaned = False
    parent = os.getppid()

    def on_orphaned() -> None:
        nonlocal orphaned
        orphaned = True
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    watcher = asyncio.create_task(lifeline.watch_parent(on_orphaned))

    await stop.wait()
    # the parent-death signal arrives as a plain SIGTERM: tell it apart by our new parent
    orphaned = orphaned or os.getppid() != parent
    grace_now = min(grace, 1.0) if orphaned else grace
    logger.info("plugin stopping (grace %.1fs)", grace_now)
    stopping = asyncio.create_task(server.stop(grace_now))
    until = time.monotonic() + grace_now
    try:
        await asyncio.wait_for(servicer.idle.wait(), grace_now)
    except asyncio.TimeoutError:
        logger.warning("plugin stop: %d call(s) still running after %.1fs", servicer.inflight, grace_now)
    if lane is not None:
        # requests already on the lane (a batch being formed or run) are answered before we go --
        # unless nobody is left to answer: the loader closed the lane or died (the parent-death
        # signal can come before getppid() shows the new parent, so look again while waiting)
        while lane.pending and lane.connected and time.monotonic() < until:
            if os.getppid() != parent:
                until = min(until, time.monotonic() + 1.0)
            await asyncio.sleep(0.02)
        if lane.pending:
            logger.warning("plugin stop: %d lane request(s) unanswered after %.1fs", lane.pending, grace_now)
        lane.close()
    servicer.close_streams()
    await stopping
    watcher.cancel()
    fini = loop.run_in_executor(executor, host.fini)
    try:
        await asyncio.wait_for(fini, 5.0)
    except asyncio.TimeoutError:
        logger.warning("wrapperFini did not return within 5s")
    executor.shutdown(wait=False, cancel_futures=True)
    # what the wrapper started goes with us (sooner when orphaned: nobody waits for us then)
    lifeline.stop_children(0.5 if orphaned or os.getppid() != parent else 1.0)
    if network == "unix" and os.path.exists(address):
        os.unlink(address)
    return 0


def _opt_int(v: str | None) -> int | None:
    return int(v) if v else None


def _opt_float(v: str | None) -> float | None:
    return float(v) if v else None


def main() -> int:
    env = dict(os.environ)
    if env.get(MAGIC_COOKIE_KEY) != MAGIC_COOKIE_VALUE:
        sys.stderr.write("This is an aiges plugin: it is started by a loader (`aiges -m 0`), not by hand.\n"
                         f"(set {MAGIC_COOKIE_KEY}={MAGIC_COOKIE_VALUE} to run it under your own host)\n")
        return 1
    mode = env.get("AIGES_PLUGIN_MODE", "")
    if mode.strip().lower() not in MODES:
        sys.stderr.write(f"AIGES_PLUGIN_MODE={mode!r} is not supported: 'python' (a wrapper.py) or 'c' "
                         "(a libwrapper.so), or unset to choose by what is there\n")
        return 1
    # a crash in native code (a C engine, a wrapper's extension module) leaves a trace in the log
    # that names the Python frame making the call (for a C engine: the wrapper* symbol)
    faulthandler.enable(file=sys.stderr, all_threads=True)
    # under our loader (it sets AIGES_PLUGIN_SOCKET) each stderr line is re-logged with its level
    # and a timestamp of the loader's; under another host the line stands on its own
    fmt = "%(levelname)s %(name)s: %(message)s" if env.get("AIGES_PLUGIN_SOCKET") else \
        "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=os.environ.get("AIGES_PLUGIN_LOG_LEVEL", "INFO").upper(), stream=sys.stderr,
                        format=fmt)
    lifeline.set_parent_death_signal()
    lifeline.lead_process_group()
    run: Any = asyncio.run
    try:
        import uvloop
        run = uvloop.run
    except ImportError:
        pass
    try:
        rc = run(serve(env))
    except BaseException:  # noqa: BLE001 - still leave by os._exit below (see exits.py for C engines)
        logger.exception("plugin failed")
        rc = 1
    # A wrapper call still running after the grace period (a hung model) must not keep the
    # process alive: Python's exit would join the pool's threads and wait for it, forever for a
    # hung call -- upstream's orphaned plugins.  wrapperFini has run; leave now.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)
