"""The plugin's session runner: one wrapper session's calls in order, results pushed as produced.

Host-agnostic and transport-agnostic: it drives any host (:mod:`aiges.plugin.hosts`) and is used
by the gRPC service (:mod:`aiges.plugin.service`, what an upstream Go loader and our loader call).
Guarantees kept here, for every transport:
- a wrapper never sees two calls for one session at once (write and read, or destroy while a write
  still runs), even when a caller gave up and its thread goes on (``run``);
- ``wrapperRead`` is polled from the first write until the final result or the destroy
  (``ReadPoller``), for hosts whose wrapper answers by read instead of the callback;
- destroy happens exactly once per handle, stops the poller first, and runs after the session's
  running call returns; a create whose caller gave up is destroyed when it arrives.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from aiges.plugin.hosts import Host
from aiges.wire.pb import aiges_inner_pb2 as pb

logger = logging.getLogger("aiges.plugin")

READ_POLL_MIN = 0.002  # wrapperRead back-off while a session has nothing to read (seconds) ...
READ_POLL_MAX = 0.05  # ... up to upstream's poll interval
READ_POLL_IDLE = 600.0  # a session with no write and no result for this long stops being polled, or
# longer when the loader says its sessions may live longer (AIGES_SESSION_TIMEOUT)


class ReadPoller:
    """Polls one session's ``wrapperRead`` from its first write until its final result or its
    destroy, pushing each result the moment it is read (upstream, with realTimeRlt=false, only
    looked when the client sent the next frame).  A write wakes it at once; while nothing comes,
    it backs off from READ_POLL_MIN to READ_POLL_MAX.  Reads never overlap the session's other
    calls (``SessionRunner.run``), and destroy stops the poller first, so a poller never outlives its
    session nor reads for the next session that reuses the handle."""

    def __init__(self, sessions: SessionRunner, handle: str, tag: str) -> None:
        self.sessions = sessions
        self.handle = handle
        self.tag = tag
        self._wake = asyncio.Event()
        self.task = sessions.spawn(self._poll())

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self.task.cancel()

    async def _poll(self) -> None:
        sv = self.sessions
        delay = 0.0
        quiet_since = time.monotonic()
        try:
            while True:
                self._wake.clear()
                resp = await sv.run(self.handle, sv.host.read, self.handle, self.tag)
                if resp is not None:
                    sv.push(resp)
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


class SessionRunner:
    """Sessions of one plugin process: per-handle ordering, read polling, destroy-once.

    ``push`` delivers a result (a ``pb.Response`` tagged with the session's tag) to whoever listens
    for session results; ``spawn`` keeps a background task alive; ``track`` counts a wrapper call
    in flight (for the plugin's drain at shutdown)."""

    def __init__(self, host: Host, executor: ThreadPoolExecutor, push: Callable[[pb.Response], None],
                 spawn: Callable[[Any], asyncio.Task[Any]], track: Callable[[int], None]) -> None:
        self.host = host
        self.executor = executor
        self.push = push
        self.spawn = spawn
        self._track = track
        self.tags: dict[str, str] = {}  # live session handle -> its tag
        # per session handle: the wrapper call running for it in a thread (the thread goes on even
        # when its caller gave up), the gate that starts the next call only after it, the poller
        self._busy: dict[str, Future[Any]] = {}
        self._gates: dict[str, asyncio.Lock] = {}
        self._readers: dict[str, ReadPoller] = {}
        self.poll_idle = READ_POLL_IDLE

    async def run(self, handle: str, fn: Any, *args: Any) -> Any:
        """Run a wrapper method of one session after the previous one for that session has really
        returned, even if its caller was cancelled: a wrapper never sees two calls for one handle at
        once (write and read, or destroy while a write still runs)."""
        gate = self._gates.setdefault(handle, asyncio.Lock())
        async with gate:
            previous = self._busy.get(handle)
            if previous is not None and not previous.done():
                await asyncio.wait({asyncio.wrap_future(previous)})
            self._track(1)
            cf = self.executor.submit(fn, *args)
            self._busy[handle] = cf
        try:
            return await asyncio.wrap_future(cf)
        finally:
            self._track(-1)

    async def create(self, request: pb.CreateRequest, run: Callable[..., Any]) -> pb.Handle:
        """``wrapperCreate``; ``run`` is the caller's way of running a host call in a thread."""
        creating = self.spawn(run(self.host.create, request))
        try:
            h: pb.Handle = await asyncio.shield(creating)
        except asyncio.CancelledError:
            # the caller gave up (deadline): a session the wrapper creates after that belongs to
            # nobody, so destroy it when it arrives instead of leaking it
            creating.add_done_callback(self._destroy_abandoned)
            raise
        if not h.err_code:
            self.tags[h.handle] = request.tag
        return h

    def _destroy_abandoned(self, creating: asyncio.Task[pb.Handle]) -> None:
        if creating.cancelled() or creating.exception() is not None:
            return
        h = creating.result()
        if h.handle and not h.err_code:
            logger.warning("wrapperCreate returned %s after its caller gave up; destroying it", h.handle)
            self.spawn(self.destroy(h.handle))

    async def write(self, request: pb.WriteMessage) -> pb.Ret:
        handle = request.handle
        ret: pb.Ret = await self.run(handle, self.host.write, request)
        # a poller only for a live session: a write that returns after its session's destroy (an
        # upstream host does not wait) must not start one that would read for the handle's next owner
        if ret.ret == 0 and self.host.polls_read and handle in self.tags:
            poller = self._readers.get(handle)
            if poller is None:
                poller = self._readers[handle] = ReadPoller(self, handle, self.tags[handle])
            poller.wake()
        return ret

    async def read(self, handle: str) -> pb.Response:
        tag = self.tags.get(handle, "")
        resp = await self.run(handle, self.host.read, handle, tag)
        return resp if resp is not None else pb.Response(tag=tag)

    async def destroy(self, handle: str) -> pb.Ret:
        self.tags.pop(handle, None)
        poller = self._readers.pop(handle, None)
        if poller is not None:
            poller.stop()
        try:
            ret: pb.Ret = await self.run(handle, self.host.destroy, handle)
        finally:
            busy = self._busy.get(handle)
            if busy is None or busy.done():
                self._busy.pop(handle, None)
                self._gates.pop(handle, None)
        return ret
