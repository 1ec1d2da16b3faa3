"""One plugin worker process: spawn, handshake, init, output drain, liveness, stop.

A ``Worker`` is one ``python -m aiges.serve`` process reached over a unix socket; its calls ride
the links it inherits (:mod:`aiges.loader.workers.links`).  Restarts and balancing are the pool's
(:mod:`aiges.loader.workers.pool`).
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aiges.config import Settings
from aiges.loader.workers.links import CHANNEL_OPTIONS, WorkerLinks
from aiges.loader.workers.output import JOIN_WAIT, TracebackJoiner, read_line
from aiges.wire.pb import aiges_inner_pb2 as pb
from aiges.wire.pb import aiges_inner_pb2_grpc as pb_grpc

logger = logging.getLogger("aiges.workers")
# "LEVEL logger: message", the plugin's stderr format under our loader (aiges.plugin.server.main)
_PLUGIN_LOG_LINE = re.compile(r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL) (\S+): (.*)$")
_LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARNING": logging.WARNING, "ERROR": logging.ERROR,
           "CRITICAL": logging.CRITICAL}
LIVENESS_MISSES = 3  # health checks a worker may miss in a row before it is killed and restarted


def _stopped(pid: int) -> bool:
    """The process is stopped (SIGSTOP, a debugger): /proc/PID/stat state T or t."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("T", "t")
    except (OSError, IndexError):
        return False


class WorkerStartError(Exception):
    """The plugin could not be started or initialised; the message says why, in one line."""


class Worker(WorkerLinks):
    def __init__(self, index: int, settings: Settings, sock_dir: str,
                 on_batch: Callable[[int], None] | None = None) -> None:
        super().__init__(on_batch)
        self.index = index
        self.name = f"w{index}"
        self.settings = settings
        self.sock_dir = sock_dir
        self.generation = 0
        self.state = "new"  # new | starting | ready | dead | stopping | stopped
        self.proc: asyncio.subprocess.Process | None = None
        self.schema: dict[str, Any] = {}
        self.pid = 0
        self._tasks: list[asyncio.Task[Any]] = []  # output drains
        # missed its last health check: takes no new requests while another worker can (watch_liveness)
        self.unresponsive = False
        self.on_health_miss: Callable[[], None] | None = None
        self._stderr_tail: list[str] = []

    @property
    def ready(self) -> bool:
        # a broken lane is the first sign of a dead worker, before its exit is reaped: from then on
        # it takes no new requests (its load reads 0, so least-loaded balancing would prefer it)
        return self.state == "ready" and (self.lane is None or self.lane.connected)

    @property
    def serving(self) -> bool:
        """Ready and answering its health checks: new requests may go here."""
        return self.ready and not self.unresponsive


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
        self.unresponsive = False
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
        tracebacks = TracebackJoiner()  # a traceback on stderr is logged as one ERROR record
        while True:
            try:
                line = await read_line(stream, JOIN_WAIT if tracebacks.open else None)
            except (ValueError, asyncio.LimitOverrunError):  # a line over the buffer limit
                line = await stream.read(65536)
            if not line:  # a pause (None) or the end (b""): an open traceback is complete
                for _, block in tracebacks.flush():
                    plog.error("%s: %s", name, block)
                if line is None:
                    continue
                return
            text = line.decode("utf-8", "replace").rstrip()
            if name != "stderr":
                plog.info("%s: %s", name, text)
                continue
            self._stderr_tail = (self._stderr_tail + [text])[-20:]
            for is_traceback, item in tracebacks.feed(text):
                m = None if is_traceback else _PLUGIN_LOG_LINE.match(item)
                if m:  # a logging record of the plugin or the wrapper: keep its level and logger name
                    logging.getLogger(f"{plog.name}.{m.group(2)}").log(_LEVELS[m.group(1)], "%s", m.group(3))
                else:
                    plog.log(logging.ERROR if is_traceback else logging.INFO, "%s: %s", name, item)


    async def watch_liveness(self) -> None:
        """A worker that stops answering its health check (frozen, SIGSTOPped, a deadlocked event
        loop) is killed, so the supervisor restarts it like a crashed one; otherwise it would hold
        every request it gets until the deadline.  One check every ``livenessInterval`` seconds
        (start to start), each answered within the interval or missed; from the first miss the
        worker is *unresponsive*: it takes no new requests (they go to another worker, or get 503 at
        once) and /ready says 503, as for a dead worker; at the 3rd miss in a row it is killed.  So a freeze is acted on
        within 3-4 intervals (15-20 s at the default 5 s), and /ready tells within 1-2.

        Busy wrapper threads do not count (the health service answers from the plugin's event
        loop); a wrapper call holding the GIL (a long regex, unpickling a model) delays the answer
        too: while the worker still answers requests within a deadline its misses do not add up
        to a kill -- past that its clients have had their 504s and it is frozen."""
        interval = self.settings.liveness_interval or 5.0
        stub = health_pb2_grpc.HealthStub(self.channel)
        loop = asyncio.get_running_loop()
        misses = 0
        next_check = loop.time() + interval
        while self.state == "ready":
            await asyncio.sleep(max(0.0, next_check - loop.time()))
            next_check = loop.time() + interval
            try:
                await stub.Check(health_pb2.HealthCheckRequest(service="plugin"), timeout=interval)
            except grpc.aio.AioRpcError as e:
                if self.state != "ready":
                    return
                self.unresponsive = True
                if self.on_health_miss is not None:
                    self.on_health_miss()
                if self.busy and not _stopped(self.pid) and \
                        time.monotonic() - self.last_progress < self.settings.deadline:
                    misses = 0  # busy and still answering requests: not (yet) frozen
                    logger.warning("plugin %s missed a health check while busy (%s); it still answers requests",
                                   self.name, e.code().name)
                    continue
                misses += 1
                logger.warning("plugin %s missed health check %d/%d (%s): taking no new requests", self.name, misses,
                               LIVENESS_MISSES, e.code().name)
                if misses >= LIVENESS_MISSES and self.proc is not None and self.proc.returncode is None:
                    logger.error("plugin %s (pid %d) stopped answering its health checks; killing it to restart",
                                 self.name, self.pid)
                    self.proc.kill()
                    return
                continue
            if self.unresponsive:
                logger.warning("plugin %s answers its health checks again", self.name)
            self.unresponsive = False
            misses = 0
            if self._stuck():
                logger.error("plugin %s (pid %d) answers its health checks but no request for %.0fs while "
                             "%d reached their deadline: every wrapper thread is hung; killing it to restart",
                             self.name, self.pid, time.monotonic() - self.last_progress,
                             self.lane.expired if self.lane is not None else 0)
                if self.proc is not None and self.proc.returncode is None:
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
