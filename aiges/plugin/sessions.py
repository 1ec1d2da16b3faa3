"""The plugin's session runner: one wrapper session's calls in order, results pushed as produced.

Host-agnostic and transport-agnostic: it drives any host (:mod:`aiges.plugin.hosts`) for the lane
(:mod:`aiges.plugin.lane`, our loader) and for the gRPC service (:mod:`aiges.plugin.service`, what
an upstream Go loader calls).  Guarantees kept here, for every transport:
- a wrapper never sees two calls for one session at once (write and read, or destroy while a write
  still runs), even when a caller gave up: each live session has a queue of calls that run one at
  a time, in the order asked, on the plugin's wrapper threads;
- ``wrapperRead`` is polled from the first write until the final result or the destroy, for hosts
  whose wrapper answers by read instead of the callback;
- destroy happens exactly once per session, stops the polling first, and runs after the session's
  running call returns; a create whose caller gave up is destroyed when it arrives; ``destroy_all``
  (plugin stop) and ``destroy_many`` (a lane connection lost) destroy what is still live.

Why threads and not the event loop: a frame of a real-time session is one call into the wrapper;
the runner hands it to a wrapper thread (one executor hand-off per burst of calls of a session,
none when its queue is already being run) and the wrapper's results go straight to their route
(:meth:`SessionRunner.push`) from the thread that produced them -- no event-loop round trip per
frame or per result.  The gRPC adapters (``*_async``) await the same calls.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiges import errors
from aiges.plugin.hosts import Host
from aiges.wire.pb import aiges_inner_pb2 as pb

logger = logging.getLogger("aiges.plugin")

READ_POLL_MIN = 0.002  # wrapperRead back-off while a session has nothing to read (seconds) ...
READ_POLL_MAX = 0.05  # ... up to upstream's poll interval
READ_POLL_IDLE = 600.0  # a session with no write and no result for this long stops being polled, or
# longer when the loader says its sessions may live longer (AIGES_SESSION_TIMEOUT)

Done = Callable[[Any], None]
Route = Callable[[pb.Response], None]
_IDLE, _QUEUED, _SLEEPING = 0, 1, 2  # a session's wrapperRead polling


class _Session:
    """One live session: its queue of calls, run one at a time."""

    __slots__ = ("handle", "tag", "calls", "running", "destroying", "waiters", "poll_gen", "polling", "delay",
                 "quiet_since")

    def __init__(self, handle: str, tag: str) -> None:
        self.handle = handle
        self.tag = tag
        self.calls: collections.deque[tuple[Callable[..., Any], tuple[Any, ...], Done | None]] = collections.deque()
        self.running = False
        self.destroying = False
        self.waiters: list[Done] = []  # later destroy requests: answered with the first one's Ret
        self.poll_gen = 0  # wrapperRead polling: a timer of an older generation does nothing
        self.polling = _IDLE
        self.delay = 0.0
        self.quiet_since = 0.0


def _failed(fn: Callable[..., Any], e: BaseException) -> Any:
    """A host that raised (hosts should not): the call's own error answer, so no caller waits."""
    msg = f"plugin failed to run {getattr(fn, '__name__', 'the call')}: {e}"
    if getattr(fn, "__name__", "") == "read":
        return pb.Response(ret=errors.WRAPPER_READ, msg=msg)
    if getattr(fn, "__name__", "") == "create":
        return pb.Handle(err_code=errors.WRAPPER_CREATE, msg=msg)
    return pb.Ret(ret=errors.WRAPPER_EXEC, msg=msg)


class SessionRunner:
    """Sessions of one plugin process: per-session ordering, read polling, destroy-once, routing.

    ``push`` delivers a result (a ``pb.Response`` tagged with its session's tag) to the route its
    session was created with (``routes``: a lane connection), else to ``fallback`` (the gRPC
    ``communicate`` stream); it is safe from any thread.  Every ``done`` callback runs on a wrapper
    thread, right after its call."""

    def __init__(self, host: Host, executor: ThreadPoolExecutor, fallback: Route,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.host = host
        self.executor = executor
        self.fallback = fallback
        self.loop = loop or asyncio.get_running_loop()  # timers of the read polling
        self.routes: dict[str, Route] = {}  # session tag -> where its results go
        self._live: dict[str, _Session] = {}  # handle -> session
        self._lock = threading.Lock()
        self._busy = 0  # calls queued or running (the plugin's drain at shutdown)
        self._creating = 0
        self.poll_idle = READ_POLL_IDLE

    # ---- state
    @property
    def busy(self) -> int:
        """Wrapper calls of sessions queued or running, creates included."""
        return self._busy + self._creating

    @property
    def live(self) -> int:
        return len(self._live)

    def tag_of(self, handle: str) -> str:
        s = self._live.get(handle)
        return s.tag if s is not None else ""

    def push(self, resp: pb.Response) -> None:
        (self.routes.get(resp.tag) or self.fallback)(resp)

    # ---- the queue of one session
    def _submit(self, handle: str, fn: Callable[..., Any], args: tuple[Any, ...], done: Done | None) -> None:
        with self._lock:
            s = self._live.get(handle)
            self._busy += 1
            if s is None:  # not a live session (unknown, or destroyed): the call runs on its own
                self.executor.submit(self._run_alone, fn, args, done)
                return
            s.calls.append((fn, args, done))
            if s.running:
                return
            s.running = True
        self.executor.submit(self._drain, s)

    @staticmethod
    def _call(fn: Callable[..., Any], args: tuple[Any, ...], done: Done | None) -> None:
        """One wrapper call; its result, or the failure it raised, goes to ``done``."""
        try:
            result = fn(*args)
        except BaseException as e:  # noqa: BLE001 - every call gets its answer
            result = _failed(fn, e)
        if done is not None:
            done(result)

    def _run_alone(self, fn: Callable[..., Any], args: tuple[Any, ...], done: Done | None) -> None:
        try:
            self._call(fn, args, done)
        finally:
            with self._lock:
                self._busy -= 1

    def _drain(self, s: _Session) -> None:
        """Run a session's calls one after another until its queue is empty (one wrapper thread)."""
        while True:
            with self._lock:
                if not s.calls:
                    s.running = False
                    return
                fn, args, done = s.calls.popleft()
            try:
                self._call(fn, args, done)
            except BaseException:  # noqa: BLE001 - a failing callback must not stop the session's queue
                logger.exception("session %s: a call's answer could not be delivered", s.handle)
            finally:
                with self._lock:
                    self._busy -= 1

    # ---- calls
    def create(self, req: pb.CreateRequest, route: Route | None, done: Callable[[pb.Handle], None]) -> None:
        """``wrapperCreate`` on a wrapper thread; the session's results go to ``route`` (None: the
        fallback), from the create on (a wrapper may push during its create)."""
        if route is not None:
            self.routes[req.tag] = route
        with self._lock:
            self._creating += 1
        self.executor.submit(self._create, req, route, done)

    def _create(self, req: pb.CreateRequest, route: Route | None, done: Callable[[pb.Handle], None]) -> None:
        try:
            try:
                h: pb.Handle = self.host.create(req)
            except BaseException as e:  # noqa: BLE001 - every call gets its answer
                h = _failed(self.host.create, e)
            if not h.err_code and h.handle:
                with self._lock:
                    self._live[h.handle] = _Session(h.handle, req.tag)
            elif route is not None and self.routes.get(req.tag) is route:
                del self.routes[req.tag]
            done(h)
        finally:
            with self._lock:
                self._creating -= 1

    def write(self, msg: pb.WriteMessage, done: Callable[[pb.Ret], None] | None = None) -> None:
        """``wrapperWrite``, after the session's earlier calls; its read polling (if the wrapper
        answers by read) is woken when it returns."""
        handle = msg.handle

        def written(ret: pb.Ret) -> None:
            if ret.ret == 0 and self.host.polls_read:
                self._wake_reader(handle)
            if done is not None:
                done(ret)
        self._submit(handle, self.host.write, (msg,), written)

    def read(self, handle: str, done: Callable[[pb.Response], None]) -> None:
        """One ``wrapperRead`` (a host asking itself): an empty Response when nothing is ready."""
        tag = self.tag_of(handle)

        def got(resp: pb.Response | None) -> None:
            done(resp if resp is not None else pb.Response(tag=tag))
        self._submit(handle, self.host.read, (handle, tag), got)

    def destroy(self, handle: str, done: Callable[[pb.Ret], None] | None = None) -> None:
        """``wrapperDestroy``, exactly once, after the session's running and queued calls."""
        with self._lock:
            s = self._live.get(handle)
            if s is not None and s.destroying:
                if done is not None:
                    s.waiters.append(done)
                return
            if s is not None:
                s.destroying = True  # its polling stops: no read after the destroy

        def destroyed(ret: pb.Ret) -> None:
            with self._lock:
                waiters = s.waiters if s is not None else []
                if s is not None and self._live.get(handle) is s:
                    del self._live[handle]
            if s is not None and self.routes.get(s.tag) is not None:
                self.routes.pop(s.tag, None)
            for w in ([done] if done is not None else []) + waiters:
                w(ret)
        self._submit(handle, self.host.destroy, (handle,), destroyed)

    def destroy_many(self, handles: list[str]) -> None:
        """Destroy these sessions if still live (their loader went away)."""
        for handle in handles:
            s = self._live.get(handle)
            if s is not None and not s.destroying:
                logger.info("session %s: its loader went away; destroying it", handle)
                self.destroy(handle)

    def destroy_all(self) -> int:
        """Destroy every live session (the plugin is stopping); → how many were still live."""
        handles = [h for h, s in list(self._live.items()) if not s.destroying]
        for handle in handles:
            self.destroy(handle)
        return len(handles)

    # ---- wrapperRead polling: per session IDLE -> QUEUED (a read in its queue) -> SLEEPING (a timer)
    def _wake_reader(self, handle: str) -> None:
        """A write returned: read now, and keep polling with back-off until the final result."""
        with self._lock:
            s = self._live.get(handle)
            if s is None or s.destroying:
                return  # a write that returned after its session's destroy starts no polling
            s.delay, s.quiet_since = 0.0, time.monotonic()
            if s.polling == _QUEUED:
                return  # the read already queued runs after this write
            s.poll_gen += 1  # a sleeping poll's timer does nothing now
            s.polling = _QUEUED
        self._submit(handle, self.host.read, (handle, s.tag), lambda resp: self._polled(s, resp))

    def _polled(self, s: _Session, resp: pb.Response | None) -> None:
        if resp is not None:
            self.push(resp)
        with self._lock:
            if s.destroying:
                s.polling = _IDLE
                return
            if resp is not None:
                if resp.ret or any(d.status in (2, 3) for d in resp.list):
                    s.polling = _IDLE  # the final result: nothing more to read (a new write polls again)
                    return
                s.delay, s.quiet_since = 0.0, time.monotonic()
            elif time.monotonic() - s.quiet_since > self.poll_idle:
                s.polling = _IDLE
                logger.warning("session %s: no write and no result for %.0fs; stopped polling wrapperRead",
                               s.handle, self.poll_idle)
                return
            else:
                s.delay = min(READ_POLL_MAX, max(READ_POLL_MIN, s.delay * 2))
                s.polling = _SLEEPING
                self.loop.call_soon_threadsafe(self.loop.call_later, s.delay, self._timer, s, s.poll_gen)
                return
        self._submit(s.handle, self.host.read, (s.handle, s.tag), lambda r: self._polled(s, r))

    def _timer(self, s: _Session, gen: int) -> None:
        with self._lock:
            if gen != s.poll_gen or s.destroying or s.polling != _SLEEPING:
                return
            s.polling = _QUEUED
        self._submit(s.handle, self.host.read, (s.handle, s.tag), lambda r: self._polled(s, r))

    # ---- asyncio faces (the gRPC service)
    def _future(self) -> tuple[asyncio.Future[Any], Done]:
        loop = self.loop
        fut: asyncio.Future[Any] = loop.create_future()

        def resolve(value: Any) -> None:
            if not fut.done():
                fut.set_result(value)

        def done(value: Any) -> None:
            loop.call_soon_threadsafe(resolve, value)
        return fut, done

    async def create_async(self, req: pb.CreateRequest) -> pb.Handle:
        fut, done = self._future()
        self.create(req, None, done)
        try:
            h: pb.Handle = await asyncio.shield(fut)
        except asyncio.CancelledError:
            # the caller gave up (deadline): a session the wrapper creates after that belongs to
            # nobody, so destroy it when it arrives instead of leaking it
            fut.add_done_callback(self._destroy_abandoned)
            raise
        return h

    def _destroy_abandoned(self, fut: asyncio.Future[pb.Handle]) -> None:
        h = fut.result()
        if h.handle and not h.err_code:
            logger.warning("wrapperCreate returned %s after its caller gave up; destroying it", h.handle)
            self.destroy(h.handle)

    async def write_async(self, msg: pb.WriteMessage) -> pb.Ret:
        fut, done = self._future()
        self.write(msg, done)
        ret: pb.Ret = await fut
        return ret

    async def read_async(self, handle: str) -> pb.Response:
        fut, done = self._future()
        self.read(handle, done)
        resp: pb.Response = await fut
        return resp

    async def destroy_async(self, handle: str) -> pb.Ret:
        # shielded: once asked, the destroy happens even if the caller's deadline passes while a
        # slow wrapperWrite of the session is still running (the handle must never leak)
        fut, done = self._future()
        self.destroy(handle, done)
        ret: pb.Ret = await asyncio.shield(fut)
        return ret
