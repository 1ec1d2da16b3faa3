"""Run the loader: start the plugin workers, serve HTTP, drain and stop on SIGTERM/SIGINT.

Order matters: workers start first because the inference routes come from the wrapper's schema
(aiohttp freezes the route table when the app starts), so the pool's lifetime is this
function's, not the app's cleanup context.  Signal handlers only set an event; this loop does the
work: stop accepting → finish in-flight requests and sessions (grace) → stop workers (their
wrapperFini runs) → exit 0.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time

from aiohttp import web

from aiges.config import Settings
from aiges.loader import grpc_api, logs, which_wrapper
from aiges.loader.app import create_app
from aiges.loader.auth import ApiKeys
from aiges.loader.guard import ConnectionGuard, raise_fd_limit
from aiges.loader.metrics import Metrics
from aiges.loader.state import DRAINING, LEAVING
from aiges.loader.stream import drain_sessions
from aiges.loader.workers import WorkerPool, WorkerStartError

logger = logging.getLogger("aiges.loader")


async def serve(settings: Settings) -> int:
    fd_limit = raise_fd_limit()  # every client connection is a descriptor
    metrics = Metrics()
    pool = WorkerPool(settings, on_restart=metrics.worker_restarts.inc,
                      on_batch=getattr(metrics, "observe_batch", None), on_health_miss=metrics.worker_health_misses.inc)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    api_keys = ApiKeys(settings)
    loop.add_signal_handler(signal.SIGHUP, api_keys.reload)  # a new keys file, without a restart
    chosen, shadowed = which_wrapper.explain(settings, os.getcwd())
    if settings.plugin_mode != "python" and (settings.wrapper_lib or settings.plugin_mode == "c"):
        # a C engine: the plugin logs which library it loaded and why (aiges.plugin.hosts.choose)
        chosen = f"C engine: {settings.wrapper_lib or 'libwrapper.so (wrapper directory, else LD_LIBRARY_PATH)'}"
    logger.info("%s; starting %d plugin worker(s)", chosen, settings.workers)
    for warning in shadowed + list(settings.warnings):
        logger.warning("%s", warning)
    starting = asyncio.ensure_future(pool.start())
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if not starting.done():  # SIGTERM / Ctrl-C while the wrapper is still loading: stop now
        logger.info("stopped while starting the plugin workers")
        starting.cancel()
        await asyncio.gather(starting, return_exceptions=True)
        await pool.close(grace=1.0)
        return 0
    stopped.cancel()
    try:
        starting.result()
    except WorkerStartError as e:
        logger.error("cannot start the wrapper: %s", e)
        return 1
    app = create_app(settings, pool, metrics, pool.schema, api_keys)
    # requests and sessions are drained before aiohttp's own shutdown (see the end of serve), so
    # it only has to wait for handlers that are answering already
    runner = web.AppRunner(app, access_log_class=logs.AccessLogger, handle_signals=False,
                           shutdown_timeout=min(settings.grace, 3.0), keepalive_timeout=settings.keepalive_timeout)
    await runner.setup()
    site = ConnectionGuard(settings, metrics, fd_limit).site(runner, settings.http_host, settings.http_port)
    try:
        await site.start()
    except OSError as e:
        logger.error("cannot listen on %s:%d: %s", settings.http_host, settings.http_port, e.strerror)
        await runner.cleanup()
        await pool.close(grace=2.0)
        return 1
    host, port = runner.addresses[0][:2]
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    grpc_server, grpc_text = None, ""
    # the URL to use on this machine; where it listens, when that is every interface, said too
    wide = [f"HTTP {host}:{port}"] if host in ("0.0.0.0", "::") else []
    if settings.grpc_port is not None:
        try:
            grpc_server, grpc_port = await grpc_api.start(app, settings.grpc_host, settings.grpc_port)
            ghost = "127.0.0.1" if settings.grpc_host in ("0.0.0.0", "::") else settings.grpc_host
            grpc_text = f", grpc {ghost}:{grpc_port}"
            if settings.grpc_host in ("0.0.0.0", "::"):
                wide.append(f"gRPC {settings.grpc_host}:{grpc_port}")
        except RuntimeError as e:
            logger.error("public gRPC API not started: cannot listen on %s:%d ([%s] host/port): %s",
                         settings.grpc_host, settings.grpc_port, settings.svc_name, e)
    listening = f"; listening on all interfaces: {', '.join(wide)}" if wide else ""
    sys.stdout.write(f"aiges: serving {settings.svc_name} on http://{shown}:{port}{grpc_text} "
                     f"(pid {os.getpid()}{listening})\n")
    sys.stdout.flush()
    logger.info("listening on %s:%d; routes: %s", host, port,
                ", ".join(sorted({r.resource.canonical for r in app.router.routes() if r.resource})))
    await stop.wait()
    if settings.drain_delay:  # the preStop sleep built in: balancers see /ready 503 and move away first
        app[LEAVING].set()
        logger.info("shutting down: /ready says 503, serving as usual for %gs ([aiges] drainDelay)",
                    settings.drain_delay)
        stop.clear()  # a second SIGTERM / Ctrl-C ends the delay at once
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), settings.drain_delay)
    logger.info("shutting down: draining sessions and requests (grace %.0fs)", settings.grace)
    # Stop accepting, then let open sessions finish while their connections are still read:
    # aiohttp's own shutdown (runner.cleanup) stops reading every connection at once, which would
    # cut a session off between two frames.  Then in-flight once requests drain in cleanup.
    app[DRAINING].set()  # new requests on open connections: 503 (12504); answers close their connection
    await site.stop()
    await asyncio.gather(drain_sessions(app, settings.grace), _drain_requests(pool, settings.grace))
    if pool.inflight:
        pool.abort_inflight(f"server shutting down: the request did not finish within the grace period of "
                            f"{settings.grace:g}s ([aiges] grace)")
    stops = [runner.cleanup()] + ([grpc_server.stop(1.0)] if grpc_server is not None else [])
    await asyncio.gather(*stops)
    # what the plugins still run after the grace is hung: a short stop (their wrapperFini runs at
    # once when they are idle), so the whole shutdown stays near one grace period
    await pool.close(grace=1.0)
    logs.flush()
    logger.info("stopped")
    return 0


async def _drain_requests(pool: WorkerPool, grace: float) -> None:
    end = time.monotonic() + grace
    while pool.inflight and time.monotonic() < end:
        await asyncio.sleep(0.05)


def run(settings: Settings) -> int:
    logs.setup(settings)
    runner = asyncio.run
    try:
        import uvloop
        runner = uvloop.run
    except ImportError:
        pass
    try:
        return runner(serve(settings))
    finally:
        # the loop's handlers are gone: a second SIGTERM/Ctrl-C while Python exits must not turn a
        # clean shutdown into a kill
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
