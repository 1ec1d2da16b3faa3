"""Plugin worker processes: spawn, handshake, init, balance, watch, restart, drain, kill.

One ``Worker`` is one ``python -m aiges.serve`` process reached over a unix socket.  The
``WorkerPool`` owns N of them: requests go to the ready worker with the fewest calls in flight,
a session stays on the worker that created it.  When a process dies, its in-flight calls are
cancelled at once (clients get 503, not a timeout), its sessions get an error, and it is restarted
with exponential backoff.  Signal handling is not done here: ``close()`` is called by the app.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aiges import errors
from aiges._pb import aiges_inner_pb2 as pb
from aiges._pb import aiges_inner_pb2_grpc as pb_grpc
from aiges.config import Settings
from aiges.loader.lane import LaneClient

logger = logging.getLogger("aiges.workers")
INLINE_MD = (("aiges-inline", "1"),)
DESTROY_TIMEOUT = 60.0
# "LEVEL logger: message", the plugin's stderr format under our loader (aiges.plugin.server.main)
_PLUGIN_LOG_LINE = re.compile(r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL) (\S+): (.*)$")
_LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARNING": logging.WARNING, "ERROR": logging.ERROR,
           "CRITICAL": logging.CRITICAL}
LIVENESS_MISSES = 3  # health checks a worker may miss in a row before it is killed and restarted
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 256 * 1024 * 1024),
                   ("grpc.max_send_message_length", 256 * 1024 * 1024)]


def _stopped(pid: int) -> bool:
    """The process is stopped (SIGSTOP, a debugger): /proc/PID/stat state T or t."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("T", "t")
    except (OSError, IndexError):
        return False


class WorkerStartError(Exception):
    """The plugin could not be started or initialised; the message says why, in one line."""


class SessionLink:
    """The loader side of one streaming session: results for its tag arrive on ``results``."""

    def __init__(self, worker: Worker, tag: str) -> None:
        self.worker = worker
        self.tag = tag
        self.handle = ""
        self.writer: Any = None  # the wrapperWriteStream call, opened by the first frame
        self.acks: asyncio.Task[None] | None = None  # reads the write stream's (failure-only) answers
        self.results: asyncio.Queue[pb.Response | errors.AigesError] = asyncio.Queue()


class Worker:
    def __init__(self, index: int, settings: Settings, sock_dir: str,
                 on_batch: Callable[[int], None] | None = None) -> None:
        self.index = index
        self.name = f"w{index}"
        self.settings = settings
        self.sock_dir = sock_dir
        self.generation = 0
        self.state = "new"  # new | starting | ready | dead | stopping | stopped
        self.proc: asyncio.subprocess.Process | None = None
        self.channel: grpc.aio.Channel | None = None
        self.stub: pb_grpc.WrapperServiceStub | None = None
        self.lane: LaneClient | None = None  # once requests (aiges.loader.lane); None = per-call gRPC
        self.on_batch = on_batch
        self.inflight: set[Any] = set()
        self._last_done = time.monotonic()  # when a gRPC call last completed
        self.sessions: dict[str, SessionLink] = {}
        self.schema: dict[str, Any] = {}
        self.pid = 0
        self._tasks: list[asyncio.Task[Any]] = []  # output drains
        self._comm_task: asyncio.Task[Any] | None = None
        self._stderr_tail: list[str] = []
        self.abort_reason = ""  # set at shutdown: why calls still running are cancelled

    @property
    def ready(self) -> bool:
        # a broken lane is the first sign of a dead worker, before its exit is reaped: from then on
        # it takes no new requests (its load reads 0, so least-loaded balancing would prefer it)
        return self.state == "ready" and (self.lane is None or self.lane.connected)

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

    def _command(self) -> list[str]:
        if self.settings.plugin_cmd:
            return ["bash", "-c", self.settings.plugin_cmd]
        return [sys.executable, "-m", "aiges.serve"]

    def _env(self, sock: str, lane: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "BASIC_PLUGIN": "hello",
            "PLUGIN_PROTOCOL_VERSIONS": "1",
            "AIGES_PLUGIN_MODE": self.settings.plugin_mode,
            "AIGES_PLUGIN_SOCKET": sock,
            "AIGES_PLUGIN_LANE": lane,
            "AIGES_PLUGIN_THREADS": str(self.settings.worker_threads),
            "AIGES_PLUGIN_GRACE": str(self.settings.grace),
            "AIGES_SESSION_TIMEOUT": str(self.settings.ws_session_timeout),
            "AIGES_WRAPPER_MODULE": self.settings.wrapper_module,
            "AIGES_LOG_DIR": os.path.abspath(self.settings.log_dir),
            "AIGES_PLUGIN_LOG_LEVEL": "DEBUG" if self.settings.log_level == "debug" else "INFO",
            "PYTHONUNBUFFERED": "1",
        })
        if self.settings.wrapper_dir:
            env["AIGES_WRAPPER_DIR"] = self.settings.wrapper_dir
        if self.settings.wrapper_lib:
            env["AIGES_WRAPPER_LIB"] = self.settings.wrapper_lib
        env["AIGES_ASYNC_MODE"] = "1" if self.settings.async_mode else "0"  # C engines only
        env["AIGES_REAL_TIME_RLT"] = "1" if self.settings.real_time_rlt else "0"
        env["AIGES_WRAPPER_THREAD_SAFE"] = "1" if self.settings.wrapper_thread_safe else "0"
        if self.settings.max_batch_size is not None:
            env["AIGES_MAX_BATCH_SIZE"] = str(self.settings.max_batch_size)
        if self.settings.max_queue_delay_ms is not None:
            env["AIGES_MAX_QUEUE_DELAY_MS"] = str(self.settings.max_queue_delay_ms)
        return env

    async def start(self) -> None:
        """spawn → handshake (with timeout) → connect → wrapperInit → wrapperSchema → ready."""
        self.generation += 1
        self.state = "starting"
        self._stderr_tail = []
        sock = os.path.join(self.sock_dir, f"{self.name}-{self.generation}.sock")
        lane = os.path.join(self.sock_dir, f"{self.name}-{self.generation}.lane") if self.settings.lane else ""
        timeout = self.settings.start_timeout
        self.proc = await asyncio.create_subprocess_exec(
            *self._command(), stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=self._env(sock, lane), start_new_session=True,
            # upstream ran the wrapper in its own directory: relative paths in wrapper.py
            # (test_data/..., model files) keep meaning what they meant there
            cwd=self.settings.wrapper_dir or None)
        self.pid = self.proc.pid
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._tasks = [asyncio.create_task(self._drain(self.proc.stderr, "stderr"))]
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        except asyncio.TimeoutError:
            raise WorkerStartError(f"plugin {self.name} printed no handshake within {timeout:.0f}s") from None
        text = line.decode("utf-8", "replace").strip()
        parts = text.split("|")
        if len(parts) != 5 or parts[0] != "1" or parts[4] != "grpc":
            await asyncio.sleep(0.2)  # let stderr explain what happened
            tail = " | ".join(self._stderr_tail[-3:])
            rc = self.proc.returncode
            got = f"exited with code {rc} before its handshake" if rc is not None and not text else \
                f"gave no valid handshake (got {text!r})"
            raise WorkerStartError(f"plugin {self.name} {got} {tail}".strip())
        self._tasks.append(asyncio.create_task(self._drain(self.proc.stdout, "stdout")))
        address = f"unix:{parts[3]}" if parts[2] == "unix" else parts[3]
        self.channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
        self.stub = pb_grpc.WrapperServiceStub(self.channel)
        init_timeout = self.settings.init_timeout  # model loading may take long; None = no limit
        try:
            ret = await self.stub.wrapperInit(pb.InitRequest(config=dict(self.settings.wrapper_config)),
                                              timeout=init_timeout)
        except grpc.aio.AioRpcError as e:
            raise WorkerStartError(self._init_rpc_failure("wrapperInit", e)) from None
        if ret.ret != 0:
            # the wrapper imported but its init failed: its schema still gives the loader its routes,
            # service name and validation, for when a restart succeeds ([aiges] exitOnInitFailure = false)
            try:
                await self._fetch_schema(10.0)
            except WorkerStartError:
                pass
            raise WorkerStartError(f"wrapper init failed (code {ret.ret}): {ret.msg}")
        await self._fetch_schema(init_timeout)
        if lane:
            await self._open_lane(lane)
        self._comm_task = asyncio.create_task(self._communicate())
        self.state = "ready"
        logger.info("plugin %s ready (pid %d)", self.name, self.pid)

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

    async def _fetch_schema(self, timeout: float | None) -> None:
        assert self.stub is not None
        try:
            schema = await self.stub.wrapperSchema(pb.SvcId(serviceId=self.settings.svc_name), timeout=timeout)
            self.schema = json.loads(schema.data) if schema.data else {}
        except grpc.aio.AioRpcError as e:
            raise WorkerStartError(self._init_rpc_failure("wrapperSchema", e)) from None
        except ValueError as e:
            raise WorkerStartError(f"wrapper schema is not valid JSON: {e}") from None

    def _init_rpc_failure(self, method: str, e: grpc.aio.AioRpcError) -> str:
        if e.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            return (f"plugin {self.name}: {method} did not return within {self.settings.init_timeout:g}s; "
                    "raise [aiges] initTimeout (0 = no limit) if the model needs longer to load")
        return f"plugin {self.name} {method} failed: {e.details()}"

    async def _drain(self, stream: asyncio.StreamReader, name: str) -> None:
        """Keep reading the plugin's output into the log so a chatty wrapper never blocks."""
        plog = logging.getLogger(f"aiges.plugin.{self.name}")
        while True:
            try:
                line = await stream.readline()
            except (ValueError, asyncio.LimitOverrunError):  # a line over the buffer limit
                line = await stream.read(65536)
            if not line:
                return
            text = line.decode("utf-8", "replace").rstrip()
            if name == "stderr":
                self._stderr_tail = (self._stderr_tail + [text])[-20:]
                m = _PLUGIN_LOG_LINE.match(text)
                if m:  # a logging record of the plugin or the wrapper: keep its level and logger name
                    logging.getLogger(f"{plog.name}.{m.group(2)}").log(_LEVELS[m.group(1)], "%s", m.group(3))
                    continue
            plog.info("%s: %s", name, text)

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

    async def watch_liveness(self) -> None:
        """A worker that stops answering its health check (frozen, deadlocked event loop) is killed,
        so the supervisor restarts it like a crashed one; otherwise it would hold every request
        it gets until the deadline while /ready said 200.  Busy wrapper threads do not count:
        the health service answers from the plugin's event loop."""
        interval = self.settings.liveness_interval or 5.0
        stub = health_pb2_grpc.HealthStub(self.channel)
        misses = 0
        while self.ready:
            await asyncio.sleep(interval)
            try:
                await stub.Check(health_pb2.HealthCheckRequest(service="plugin"), timeout=interval)
                misses = 0
                if self._stuck():
                    logger.error("plugin %s (pid %d) answers its health checks but no request for %.0fs while "
                                 "%d reached their deadline: every wrapper thread is hung; killing it to restart",
                                 self.name, self.pid, time.monotonic() - self.last_progress,
                                 self.lane.expired if self.lane is not None else 0)
                    if self.proc is not None and self.proc.returncode is None:
                        self.proc.kill()
                    return
            except grpc.aio.AioRpcError as e:
                if self.busy and not _stopped(self.pid) and \
                        time.monotonic() - self.last_progress < self.settings.deadline:
                    # a wrapper call holding the GIL (a long regex, unpickling a model) also delays
                    # the answer: a busy worker is not a dead one while it still answers something
                    # within a deadline.  Past that its clients have had their 504s and it is frozen
                    # (under steady load it is always "busy", so busy alone must not excuse it)
                    misses = 0
                    continue
                misses += 1
                logger.warning("plugin %s missed health check %d/%d (%s)", self.name, misses, LIVENESS_MISSES,
                               e.code().name)
            if misses >= LIVENESS_MISSES and self.proc is not None and self.proc.returncode is None:
                logger.error("plugin %s (pid %d) stopped answering its health checks; killing it to restart",
                             self.name, self.pid)
                self.proc.kill()
                return

    def _stuck(self) -> bool:
        """Hung wrapper calls hold every thread: the event loop still answers health checks, but
        requests only ever reach their deadline (504) and nothing has been answered for two
        deadlines.  Without a restart every later request would wait out its deadline forever."""
        lane = self.lane
        return lane is not None and lane.expired >= self.settings.worker_threads and \
            time.monotonic() - self.last_progress > 2 * self.settings.deadline

    def kill_leftovers(self) -> None:
        """After the plugin process is gone: SIGKILL what the wrapper started and left behind in
        the plugin's process group (it was started in a session of its own, so the group is
        only ever the plugin's and its children's).  A plugin that stops normally has already
        stopped them itself; this is for a plugin killed -9 or crashed."""
        if not self.pid:
            return
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def fail_inflight(self, reason: str) -> None:
        err = errors.WorkerUnavailable(reason)
        if self.lane is not None:
            self.lane.fail(lambda: errors.WorkerUnavailable(
                f"plugin worker {self.name} died while handling the request; it is being restarted", retry_after=1))
        for call in list(self.inflight):
            call.cancel()
        for link in list(self.sessions.values()):
            link.results.put_nowait(err)
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

    async def stop(self, grace: float) -> None:
        """Graceful (SIGTERM, the plugin drains and calls wrapperFini), then forced (SIGKILL)."""
        self.state = "stopping"
        proc = self.proc
        if proc is not None and proc.returncode is None:
            try:
                proc.send_signal(signal.SIGTERM)
                await asyncio.wait_for(proc.wait(), grace + 2)
            except asyncio.TimeoutError:
                logger.warning("plugin %s did not stop within %.0fs; killing it", self.name, grace + 2)
                proc.kill()
                await proc.wait()
            except ProcessLookupError:
                pass
        self.kill_leftovers()
        await self.close_channel()
        for t in self._tasks:
            if not t.done():
                try:
                    await asyncio.wait_for(t, 1.0)
                except (asyncio.TimeoutError, asyncio.CancelledError):
                    pass
        self.state = "stopped"


class WorkerPool:
    def __init__(self, settings: Settings, on_restart: Any = None,
                 on_batch: Callable[[int], None] | None = None) -> None:
        self.settings = settings
        self.sock_dir = tempfile.mkdtemp(prefix="aiges-")
        self.workers = [Worker(i, settings, self.sock_dir, on_batch) for i in range(settings.workers)]
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
        return bool(self.workers) and all(w.ready for w in self.workers)

    @property
    def ready_count(self) -> int:
        return sum(1 for w in self.workers if w.ready)

    def pick(self) -> Worker:
        """The ready worker with the least work (calls in flight + open sessions); ties rotate."""
        best: Worker | None = None
        best_load = 0
        n = len(self.workers)
        self._rr = (self._rr + 1) % n
        for i in range(n):
            w = self.workers[(self._rr + i) % n]
            if not w.ready:
                continue
            load = w.load
            if best is None or load < best_load:
                best, best_load = w, load
        if best is None:
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
            h: pb.Handle = await worker.call("wrapperCreate", pb.CreateRequest(params=params, sid=sid, tag=sid), timeout)
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
            await link.worker.write_frame(link, msg, timeout + self.settings.ws_session_timeout)
        finally:
            self.inflight -= 1

    async def destroy(self, link: SessionLink) -> None:
        """wrapperDestroy, best effort: the worker may already be gone (then nothing holds it)."""
        worker = link.worker
        worker.sessions.pop(link.tag, None)
        worker.close_writer(link)
        if not link.handle or not worker.ready:
            return
        try:
            # the plugin finishes a destroy it was asked for even past this deadline (it waits for
            # the session's running write first), so this only bounds how long the handler waits
            ret: pb.Ret = await worker.call("wrapperDestroy", pb.Handle(handle=link.handle), DESTROY_TIMEOUT)
            if ret.ret:
                logger.warning("wrapperDestroy(%s) returned %d: %s", link.handle, ret.ret, ret.msg)
        except errors.AigesError as e:
            logger.warning("wrapperDestroy(%s) failed: %s", link.handle, e)
