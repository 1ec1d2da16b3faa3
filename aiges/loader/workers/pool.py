"""The pool of plugin workers: start them, restart the dead with backoff, pick one per request.

The ``WorkerPool`` owns N :class:`~aiges.loader.workers.process.Worker` s: requests go to the
ready worker with the fewest calls in flight, a session stays on the worker that created it.  When
a process dies, its in-flight calls are cancelled at once (clients get 503, not a timeout), its
sessions get an error, and it is restarted with exponential backoff.  Signal handling is not done
here: ``close()`` is called by the app.
"""
from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from typing import Any

from aiges import errors
from aiges.config import Settings
from aiges.loader.workers.links import SessionLink
from aiges.loader.workers.process import LIVENESS_MISSES, Worker
from aiges.wire.pb import aiges_inner_pb2 as pb

logger = logging.getLogger("aiges.workers")
DESTROY_TIMEOUT = 60.0


class WorkerPool:
    def __init__(self, settings: Settings, on_restart: Any = None,
                 on_batch: Callable[[int], None] | None = None,
                 on_health_miss: Callable[[], None] | None = None) -> None:
        self.settings = settings
        self.sock_dir = tempfile.mkdtemp(prefix="aiges-")
        self.workers = [Worker(i, settings, self.sock_dir, on_batch) for i in range(settings.workers)]
        for w in self.workers:
            w.on_health_miss = on_health_miss
        self.schema: dict[str, Any] = {}
        self.inflight = 0
        self.closing = False
        self.restarts = 0
        self._on_restart = on_restart
        self._watchers: list[asyncio.Task[Any]] = []
        self._rr = 0
        self.on_schema: Callable[[dict[str, Any]], None] | None = None  # the first schema, if it came late

    # ---- lifecycle
    async def start(self) -> None:
        """Start every worker; raises WorkerStartError when the wrapper cannot start and the
        config says to exit (the default), else keeps retrying in the background."""
        results = await asyncio.gather(*(self._start_one(w) for w in self.workers), return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures and self.settings.exit_on_init_failure:
            await self.close(grace=1.0)
            raise failures[0]
        for w, r in zip(self.workers, results, strict=True):
            if isinstance(r, BaseException):
                logger.error("%s; retrying in the background (/ready stays 503)", r)
            self._watchers.append(asyncio.create_task(self._supervise(w, failed_start=isinstance(r, BaseException))))
        if not self.schema:
            logger.warning("no worker is ready: serving 503 until one is")

    async def _start_one(self, w: Worker) -> None:
        try:
            await w.start()
        except BaseException:
            self._got_schema(w.schema)
            await self._reap(w)
            raise
        self._got_schema(w.schema)

    def _got_schema(self, schema: dict[str, Any]) -> None:
        if schema and not self.schema:
            self.schema = schema
            if self.on_schema is not None:
                self.on_schema(schema)

    async def _reap(self, w: Worker) -> None:
        w.state = "dead"
        if w.proc is not None and w.proc.returncode is None:
            try:
                w.proc.kill()
            except ProcessLookupError:
                pass
            await w.proc.wait()
        w.kill_leftovers()
        await w.close_channel()

    async def _supervise(self, w: Worker, failed_start: bool) -> None:
        """Watch one worker; when its process exits unexpectedly, fail its work and restart it."""
        failures = 1 if failed_start else 0
        while not self.closing:
            if w.state == "ready" and w.proc is not None:  # (not w.ready: a broken lane is waited out here)
                up_since = time.monotonic()
                watchdog = asyncio.create_task(w.watch_liveness()) if self.settings.liveness_interval else None
                try:
                    rc = await w.proc.wait()
                finally:
                    if watchdog is not None:
                        watchdog.cancel()
                if self.closing or w.state in ("stopping", "stopped"):
                    return
                w.state = "dead"
                w.kill_leftovers()
                reason = f"plugin worker {w.name} (pid {w.pid}) exited with code {rc}"
                logger.error("%s; failing %d in-flight call(s) and restarting", reason, len(w.inflight))
                w.fail_inflight(reason)
                await w.close_channel()
                failures = 0 if time.monotonic() - up_since > 30 else failures + 1
            delay = min(self.settings.restart_backoff_max, 0.1 * (2 ** max(0, failures - 1))) if failures else 0.0
            await asyncio.sleep(delay)
            if self.closing:
                return
            self.restarts += 1
            if self._on_restart is not None:
                self._on_restart()
            try:
                await self._start_one(w)
                logger.info("plugin worker %s restarted (restart #%d)", w.name, self.restarts)
            except Exception as e:  # noqa: BLE001 - any failure is logged and retried with backoff
                logger.error("restarting plugin worker %s failed: %s", w.name, e)
                failures += 1

    def abort_inflight(self, reason: str) -> None:
        """Shutdown after the grace period: calls still running are answered now (503, 12504)."""
        for w in self.workers:
            w.abort_reason = reason
            if w.lane is not None:
                w.lane.fail(lambda: errors.WorkerUnavailable(reason, errors.SHUTTING_DOWN), closed=False)
            for call in list(w.inflight):
                call.cancel()

    async def close(self, grace: float | None = None) -> None:
        self.closing = True
        for t in self._watchers:
            t.cancel()
        g = self.settings.grace if grace is None else grace
        await asyncio.gather(*(w.stop(g) for w in self.workers), return_exceptions=True)
        shutil.rmtree(self.sock_dir, ignore_errors=True)

    # ---- state
    @property
    def ready(self) -> bool:
        """Every worker is up and answering its health checks (/ready)."""
        return bool(self.workers) and all(w.serving for w in self.workers)

    @property
    def ready_count(self) -> int:
        return sum(1 for w in self.workers if w.serving)

    @property
    def unresponsive_count(self) -> int:
        """Workers up but missing their health checks (frozen?), not yet killed."""
        return sum(1 for w in self.workers if w.ready and w.unresponsive)

    def pick(self) -> Worker:
        """The serving worker with the least work (calls in flight + open sessions); ties rotate.
        A worker missing its health checks gets nothing new: the request goes elsewhere or gets 503
        at once, not a wait for its deadline on a frozen process."""
        best: Worker | None = None
        best_load = 0
        n = len(self.workers)
        self._rr = (self._rr + 1) % n
        for i in range(n):
            w = self.workers[(self._rr + i) % n]
            if not w.serving:
                continue
            load = w.load
            if best is None or load < best_load:
                best, best_load = w, load
        if best is None:
            frozen = [w.name for w in self.workers if w.ready and w.unresponsive]
            if frozen:
                raise errors.WorkerUnavailable(
                    f"plugin worker {', '.join(frozen)} is not answering its health checks (frozen?); it is "
                    f"restarted after {LIVENESS_MISSES} missed checks ([aiges] livenessInterval); retry shortly",
                    retry_after=1)
            raise errors.WorkerUnavailable("no plugin worker is ready (starting or restarting); retry shortly",
                                           retry_after=1)
        return best

    # ---- calls
    async def once(self, request: pb.Request, timeout: float) -> pb.Response:
        if self.inflight >= self.settings.max_inflight:
            raise errors.Overloaded(
                f"too many requests in flight ({self.inflight} >= [aiges] maxInflight {self.settings.max_inflight})",
                retry_after=1)
        worker = self.pick()
        self.inflight += 1
        try:
            return await worker.once(request, timeout)
        finally:
            self.inflight -= 1

    # ---- sessions (pinned to the worker that created them)
    async def open_session(self, params: dict[str, str], sid: str, timeout: float) -> SessionLink:
        if self.inflight >= self.settings.max_inflight:
            raise errors.Overloaded(f"too many requests in flight ([aiges] maxInflight {self.settings.max_inflight})",
                                    retry_after=1)
        worker = self.pick()
        link = SessionLink(worker, sid)
        worker.sessions[sid] = link
        try:
            h = await worker.create_session(link, params, sid, timeout)
        except BaseException:
            worker.sessions.pop(sid, None)
            raise
        if h.err_code or not h.handle:
            worker.sessions.pop(sid, None)
            raise errors.WrapperFailed(h.msg or f"wrapperCreate failed with code {h.err_code}",
                                       h.err_code or errors.WRAPPER_CREATE)
        link.handle = h.handle
        return link

    async def write(self, link: SessionLink, items: list[pb.RequestData], params: dict[str, str],
                    timeout: float) -> None:
        msg = pb.WriteMessage(req=pb.Request(tag=link.tag, params=params, list=items), handle=link.handle,
                              sid=link.tag)
        self.inflight += 1
        try:
            # the stream's deadline bounds the whole session; [ws] sessionTimeout ends it sooner.
            # A failed frame is reported on link.results (see Worker.write_frame).
            await link.worker.write_session(link, msg, timeout + self.settings.ws_session_timeout)
        finally:
            self.inflight -= 1

    async def destroy(self, link: SessionLink) -> None:
        """wrapperDestroy, best effort: the worker may already be gone (then nothing holds it)."""
        worker = link.worker
        worker.sessions.pop(link.tag, None)
        if not link.handle:
            return
        try:
            # the plugin finishes a destroy it was asked for even past this deadline (it waits for
            # the session's running write first), so this only bounds how long the handler waits
            ret = await worker.destroy_session(link, DESTROY_TIMEOUT)
            if ret is not None and ret.ret:
                logger.warning("wrapperDestroy(%s) returned %d: %s", link.handle, ret.ret, ret.msg)
        except errors.AigesError as e:
            logger.warning("wrapperDestroy(%s) failed: %s", link.handle, e)
