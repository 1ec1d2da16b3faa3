"""Open-loop load: requests due at fixed times whatever the answers, latency counted from each due time."""
from __future__ import annotations

import asyncio
import collections
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, cast

from ..common import HOST, MAX_REQUESTS, OPEN_DRAIN
from ..procs import CpuMeter
from ..systems import Server
from . import new_loop, percentile


@dataclass
class OpenRun:
    """One open-loop run: requests due at fixed times (``rate`` per second) whatever the answers;
    latency counted from each request's due time, so a stall shows in every request behind it."""

    server: str
    rate: float
    seconds: float
    scheduled: int
    sent: int
    ok: int
    errors: int
    achieved_rps: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    late_p50_ms: float
    late_p99_ms: float
    late_max_ms: float
    cpu_ms_per_req: dict[str, float] = field(default_factory=dict)
    other_cpu_pct: float = 0.0
    steal_pct: float = 0.0
    error_kinds: dict[str, int] = field(default_factory=dict)
    batch_mean: float | None = None


class _OpenConn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection of the open-loop client: writes the prepared request,
    reads one response (status line + Content-Length body), hands itself back to the pool."""

    def __init__(self, pool: _OpenPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.due: float | None = None  # the due time of the request in flight, None when idle
        self.need = -1
        self.status = 0
        self.close_after = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports only quack like one
        self.pool.on_ready(self)

    def send(self, due: float) -> None:
        assert self.transport is not None
        self.due, self.need = due, -1
        self.buf.clear()
        self.transport.write(self.pool.request)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.need < 0:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).lower()
            at = head.find(b"\ncontent-length:")
            try:
                self.status = int(head[9:12])
                eol = head.find(b"\r", at + 1)
                self.need = end + 4 + int(head[at + 16:eol if eol >= 0 else len(head)])
            except ValueError:
                self.need = -1
            if at < 0 or self.need < 0:
                self.pool.fail(self, "unreadable response (no Content-Length)")
                return
            self.close_after = b"\nconnection: close" in head
        if len(self.buf) >= self.need and self.due is not None:
            self.pool.done(self, self.due, self.status)

    def connection_lost(self, exc: Exception | None) -> None:
        self.pool.lost(self)


class _OpenPool:
    """The open-loop client: requests are submitted at their due times; each goes out on an idle
    connection at once, else waits for one (a new connection is opened up to ``max_conns``), so
    the wait for a connection is part of its latency.  Callbacks only: no task per request, which
    keeps the client's own CPU small on a 2-core machine."""

    def __init__(self, url: str, body: bytes, max_conns: int) -> None:
        parsed = urllib.parse.urlsplit(url)
        self.host, self.port = parsed.hostname or HOST, parsed.port or 80
        self.request = (f"POST {parsed.path or '/'} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
        self.max_conns = max_conns
        self.conns: set[_OpenConn] = set()
        self.idle: list[_OpenConn] = []
        self.connecting = 0
        self.queue: collections.deque[float] = collections.deque()
        self.latencies: list[float] = []
        self.late: list[float] = []
        self.kinds: collections.Counter[str] = collections.Counter()
        self.outstanding = 0
        self.last_answer = 0.0
        self.tasks: set[asyncio.Task[None]] = set()

    def submit(self, due: float, now: float) -> None:
        self.late.append(now - due)
        self.outstanding += 1
        if self.idle:
            self.idle.pop().send(due)
            return
        self.queue.append(due)
        self._grow()

    def _grow(self) -> None:
        if self.queue and len(self.conns) + self.connecting < self.max_conns:
            self.connecting += 1
            task = asyncio.get_running_loop().create_task(self._connect())
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _connect(self) -> None:
        try:
            await asyncio.get_running_loop().create_connection(lambda: _OpenConn(self), self.host, self.port)
        except OSError as e:
            self.connecting -= 1
            if self.queue and not self.conns:  # nothing else will ever take it
                self.queue.popleft()
                self._error(f"connect: {type(e).__name__}")

    def on_ready(self, c: _OpenConn) -> None:
        self.connecting -= 1
        self.conns.add(c)
        self._next(c)

    def _next(self, c: _OpenConn) -> None:
        if self.queue:
            c.send(self.queue.popleft())
        else:
            c.due = None
            self.idle.append(c)

    def _error(self, kind: str) -> None:
        self.outstanding -= 1
        self.kinds[kind] += 1

    def done(self, c: _OpenConn, due: float, status: int) -> None:
        self.last_answer = now = time.perf_counter()
        self.outstanding -= 1
        if status == 200:
            self.latencies.append(now - due)
        else:
            self.kinds[f"HTTP {status}"] += 1
        c.due = None
        if c.close_after and c.transport is not None:
            c.transport.close()
        else:
            self._next(c)

    def fail(self, c: _OpenConn, kind: str) -> None:
        if c.due is not None:
            c.due = None
            self._error(kind)
        if c.transport is not None:
            c.transport.abort()

    def lost(self, c: _OpenConn) -> None:
        self.conns.discard(c)
        if c in self.idle:
            self.idle.remove(c)
        if c.due is not None:
            c.due = None
            self._error("connection lost")
        self._grow()

    def expire(self, now: float) -> None:
        """Requests older than the drain time are errors (timeout); their connections are dropped."""
        for c in list(self.conns):
            if c.due is not None and now - c.due > OPEN_DRAIN:
                self.fail(c, "timeout")
        while self.queue and now - self.queue[0] > OPEN_DRAIN:
            self.queue.popleft()
            self._error("timeout (no connection)")

    def close(self) -> None:
        for c in list(self.conns):
            if c.transport is not None:
                c.transport.abort()
        for task in self.tasks:
            task.cancel()


async def _open_load(server: Server, rate: float, seconds: float, conns: int) -> dict[str, Any]:
    n = max(1, min(int(rate * seconds), MAX_REQUESTS))
    interval = 1.0 / rate
    pool = _OpenPool(server.url, server.body, conns)
    t0 = time.perf_counter() + 0.05
    give_up = t0 + seconds + 1.0  # a client this far behind stops sending; the rest counts as not sent
    next_sweep = t0 + 0.1
    i = 0
    try:
        while i < n:
            now = time.perf_counter()
            if now > give_up:
                break
            if now >= next_sweep:
                pool.expire(now)
                next_sweep = now + 0.1
            due = t0 + i * interval
            if due > now:
                await asyncio.sleep(min(due - now, 0.1))
                continue
            while i < n and t0 + i * interval <= now:  # everything due by now, each with its own due time
                pool.submit(t0 + i * interval, now)
                i += 1
        drain_until = time.perf_counter() + OPEN_DRAIN + 1
        while pool.outstanding > 0 and time.perf_counter() < drain_until:
            await asyncio.sleep(0.01)
            pool.expire(time.perf_counter())
        if pool.outstanding > 0:
            pool.kinds["unfinished"] += pool.outstanding
    finally:
        pool.close()
        await asyncio.sleep(0)
    if i < n:
        pool.kinds["not sent (client behind)"] += n - i
    return {"scheduled": n, "sent": i, "latencies": pool.latencies, "late": pool.late, "kinds": dict(pool.kinds),
            "elapsed": max(pool.last_answer - t0, 1e-6)}


def run_open(server: Server, rate: float, seconds: float, conns: int) -> OpenRun:
    meter = CpuMeter(server.pids, "self")
    res = new_loop().run_until_complete(
        asyncio.wait_for(_open_load(server, rate, seconds, conns), seconds + OPEN_DRAIN + 30))
    lat = sorted(res["latencies"])
    late = sorted(res["late"])
    errors = sum(res["kinds"].values())
    cpu, other, steal = meter.stop(len(lat) + errors)
    return OpenRun(server.name, rate, round(res["elapsed"], 2), res["scheduled"], res["sent"], len(lat), errors,
                   len(lat) / res["elapsed"], 1000 * percentile(lat, 50), 1000 * percentile(lat, 99),
                   1000 * (lat[-1] if lat else float("nan")), 1000 * percentile(late, 50),
                   1000 * percentile(late, 99), 1000 * (late[-1] if late else float("nan")),
                   cpu, other, steal, res["kinds"])
