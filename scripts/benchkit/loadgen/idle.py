"""Idle sessions: many open WebSocket sessions that each sent one frame and wait.

What a server holding many quiet clients pays: N sessions open (bounded concurrency, each waits
for the result of its first frame), then the loader's and the worker's RSS per open session (over
the same processes with no session open), then nothing is sent and ``[ws] sessionTimeout`` must
end them all: each gets its 10114 error frame and its close, and the wrapper's destroy count
(``tests/wrappers/vad_stream`` logs each destroy) and the loader's ``aiges_sessions_active`` say
every session was destroyed -- counted, not slept on: the wait ends when the counts are reached
(or at its bound, and then the counts say what is missing).
"""
from __future__ import annotations

import asyncio
import collections
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from ..common import HOST
from ..net import get
from ..procs import rss_mb
from ..systems import Server
from . import new_loop
from .realtime import frame_texts
from .wsclient import WsConn, connect

CONNECT_CONCURRENCY = 100
MAX_SESSIONS = 20000


@dataclass
class IdleRun:
    sessions: int
    opened: int
    open_seconds: float
    open_errors: int
    active_when_open: int  # the loader's aiges_sessions_active with every session open
    loader_rss_mb: tuple[float, float]  # (no session, all open)
    plugin_rss_mb: tuple[float, float]
    loader_kb_per_session: float
    plugin_kb_per_session: float
    session_timeout: float
    timeout_frames: int  # 10114 error frames received
    closed: int  # connections the server closed
    destroyed: int  # wrapperDestroy calls counted by the wrapper
    active_after: int
    end_seconds: float  # from the last session opened until every session was closed and destroyed
    error_kinds: dict[str, int] = field(default_factory=dict)


def metric(server: Server, name: str) -> float:
    try:
        text = get(server.url.rsplit("/v1/", 1)[0] + "/metrics", 5)[1].decode(errors="replace")
    except OSError:
        return float("nan")
    line = next((x for x in text.splitlines() if x.startswith(name + " ") or x.startswith(name + "{}")), "")
    return float(line.split()[-1]) if line else float("nan")


def count_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except OSError:
        return 0


class _Idle:
    def __init__(self, url: str, n: int) -> None:
        parsed = urllib.parse.urlsplit(url)
        self.host, self.port, self.path = parsed.hostname or HOST, parsed.port or 80, parsed.path
        self.n = n
        self.first = frame_texts(self.path.rstrip("/").rsplit("/", 1)[-1])[0][0]
        self.conns: list[WsConn] = []
        self.kinds: collections.Counter[str] = collections.Counter()
        self.timeout_frames = 0
        self.closed = 0
        self.waiting: dict[WsConn, asyncio.Future[None]] = {}

    def on_text(self, conn: WsConn, data: bytes, now: float) -> None:
        try:
            doc = orjson.loads(data)
            header = doc["header"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            self.kinds["unreadable frame"] += 1
            return
        code = header.get("code")
        if code == 10114:
            self.timeout_frames += 1
        elif code:
            self.kinds[f"code {code}"] += 1
        if "payload" in doc or code:
            fut = self.waiting.pop(conn, None)
            if fut is not None and not fut.done():
                fut.set_result(None)

    def on_close(self, conn: WsConn, code: int, reason: str) -> None:
        self.closed += 1
        fut = self.waiting.pop(conn, None)
        if fut is not None and not fut.done():
            fut.set_exception(ConnectionError(f"closed ({code})"))

    async def open_all(self, deadline: float) -> None:
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
        loop = asyncio.get_running_loop()

        async def one() -> None:
            async with gate:
                if time.monotonic() > deadline:
                    self.kinds["not opened within the bound"] += 1
                    return
                try:
                    conn = await connect(self.host, self.port, self.path, self.on_text, self.on_close)
                    self.waiting[conn] = fut = loop.create_future()
                    conn.send_text(self.first)
                    await asyncio.wait_for(fut, 30)  # the first frame's result: the session is open
                    self.conns.append(conn)
                except (OSError, asyncio.TimeoutError) as e:
                    self.kinds[f"open: {type(e).__name__}"] += 1
        await asyncio.gather(*(one() for _ in range(self.n)))


def run_idle(server: Server, n: int, session_timeout: float, destroy_log: Path) -> IdleRun:
    """Open ``n`` sessions, measure RSS per session, then wait (bounded) for sessionTimeout to end them all."""
    n = max(1, min(n, MAX_SESSIONS))
    loader, plugin = server.pids["loader"], server.pids["plugin"]
    rss0 = (rss_mb(loader), rss_mb(plugin))
    destroyed0 = count_lines(destroy_log)
    loop = new_loop()
    idle = _Idle(server.url.replace("http://", "ws://", 1), n)
    try:
        t0 = time.monotonic()
        # every session must be open before the first reaches its timeout, or the RSS says too little
        loop.run_until_complete(idle.open_all(t0 + session_timeout * 0.8))
        opened_at = time.monotonic()
        active = metric(server, "aiges_sessions_active")
        rss1 = (rss_mb(loader), rss_mb(plugin))
        opened = len(idle.conns)

        async def wait_end() -> None:
            bound = t0 + session_timeout + 60
            while time.monotonic() < bound:
                if idle.closed >= opened and count_lines(destroy_log) - destroyed0 >= opened:
                    return
                await asyncio.sleep(0.2)
        loop.run_until_complete(wait_end())
        ended_at = time.monotonic()
        for conn in idle.conns:
            if not conn.closed:
                conn.abort()
        loop.run_until_complete(asyncio.sleep(0.1))
    finally:
        loop.close()
    per = max(opened, 1)
    return IdleRun(n, opened, round(opened_at - t0, 1), sum(idle.kinds.values()), int(active) if active == active else -1,
                   (round(rss0[0], 1), round(rss1[0], 1)), (round(rss0[1], 1), round(rss1[1], 1)),
                   round(1024 * (rss1[0] - rss0[0]) / per, 2), round(1024 * (rss1[1] - rss0[1]) / per, 2),
                   session_timeout, idle.timeout_frames, idle.closed, count_lines(destroy_log) - destroyed0,
                   int(metric(server, "aiges_sessions_active")), round(ended_at - opened_at, 1), dict(idle.kinds))
