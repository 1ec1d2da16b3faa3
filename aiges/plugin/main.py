"""``python -m aiges.serve``: start the plugin process and stop it gracefully.

The go-plugin handshake is the first stdout line, printed before the wrapper is imported; health
service ``"plugin"`` is SERVING as soon as we listen, ``"wrapper"`` once init succeeded.  Listens
where the host asks (a unix socket from our loader, a port range from upstream's), opens the lane
(:mod:`aiges.plugin.lane`) when our loader asks for one, and on SIGTERM, the controller's Shutdown
or the parent's death drains, runs ``wrapperFini`` and takes the wrapper's children with it.
"""
from __future__ import annotations

import asyncio
import faulthandler
import importlib
import logging
import os
import random
import signal
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from aiges.plugin import lifeline
from aiges.plugin.hosts.choose import MODES, plugin_host
from aiges.plugin.lane import Lane
from aiges.plugin.service import ControllerServicer, WrapperServicer
from aiges.plugin.sessions import READ_POLL_IDLE
from aiges.wire.pb import aiges_inner_pb2_grpc as pb_grpc
from aiges.wire.pb import grpc_controller_pb2_grpc as ctl_grpc

logger = logging.getLogger("aiges.plugin")

MAGIC_COOKIE_KEY = "BASIC_PLUGIN"
MAGIC_COOKIE_VALUE = "hello"


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


# Upstream wrappers import these inside wrapperWrite, in several wrapper threads at once; concurrent
# first imports race in CPython (a thread gets a half-initialised module: "cannot import name
# 'callback' from 'aiges.callback'"), so the plugin imports them once, before any wrapper call.
UPSTREAM_MODULES = ("aiges.sdk", "aiges.callback", "aiges.dto", "aiges.stream", "aiges.types", "aiges.core.types",
                    "aiges.utils.log")


async def serve(env: dict[str, str]) -> int:
    for name in UPSTREAM_MODULES:
        importlib.import_module(name)
    threads = int(env.get("AIGES_PLUGIN_THREADS") or (os.cpu_count() or 2) * 2)
    grace = float(env.get("AIGES_PLUGIN_GRACE") or 10)
    executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="wrapper")
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0),
                                      ("grpc.max_receive_message_length", 256 * 1024 * 1024),
                                      ("grpc.max_send_message_length", 256 * 1024 * 1024)])
    health_servicer = health.aio.HealthServicer()
    host = plugin_host(env)
    servicer = WrapperServicer(host, executor, health_servicer)
    servicer.sessions.poll_idle = max(READ_POLL_IDLE, float(env.get("AIGES_SESSION_TIMEOUT") or 0) + 60)
    stop = asyncio.Event()
    pb_grpc.add_WrapperServiceServicer_to_server(servicer, server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    ctl_grpc.add_GRPCControllerServicer_to_server(ControllerServicer(stop.set), server)

    network, address = bind(server, env)
    # our own loader's once requests (aiges.plugin.lane); an upstream host never asks for it
    lane_path = env.get("AIGES_PLUGIN_LANE")
    lane = None
    if lane_path:
        lane = Lane(lane_path, host, executor, threads, servicer.sessions, _opt_int(env.get("AIGES_MAX_BATCH_SIZE")),
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
    # every session still open is destroyed before the wrapper's fini (after its running call)
    sessions = servicer.sessions
    still_open = sessions.destroy_all()
    if still_open:
        logger.info("plugin stop: destroying %d open session(s)", still_open)
    until = max(until, time.monotonic() + 0.5)
    while sessions.busy and time.monotonic() < until:
        await asyncio.sleep(0.01)
    if sessions.live:
        logger.warning("plugin stop: %d session(s) not destroyed (a wrapper call still runs)", sessions.live)
    if lane is not None:
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
    except BaseException:  # noqa: BLE001 - still leave by os._exit below (see hosts/c/exits.py)
        logger.exception("plugin failed")
        rc = 1
    # A wrapper call still running after the grace period (a hung model) must not keep the
    # process alive: Python's exit would join the pool's threads and wait for it, forever for a
    # hung call -- upstream's orphaned plugins.  wrapperFini has run; leave now.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)
