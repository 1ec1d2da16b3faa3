"""Real-time audio sessions: N WebSocket sessions, each sending 40 ms of 16 kHz PCM every 40 ms.

What a speech recogniser's clients do: every session sends 1,280 bytes of 16-bit mono PCM (base64
in the envelope) at fixed times -- status 0 first, 1 after, 2 last -- whatever the answers, for
``seconds`` of audio, and the server pushes a result per frame (``tests/wrappers/vad_stream``: an
energy/VAD computation with numpy).  Each result's latency is counted from its frame's *scheduled*
send time, so a stall of the client or the server shows in every frame behind it (no coordinated
omission); how late the client itself sent is reported beside it.  Session starts are spread over
one frame period, as independent clients' are.  :func:`search` finds the largest N that holds the
target p99 with no error, a few bounded steps.
"""
from __future__ import annotations

import asyncio
import base64
import collections
import math
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import orjson

from ..common import HOST
from ..net import get
from ..procs import CpuMeter
from ..systems import Server
from . import new_loop, percentile
from .wsclient import WsConn, connect

RATE = 16000
FRAME_MS = 40
FRAME_BYTES = RATE * FRAME_MS // 1000 * 2  # 1,280 bytes of 16-bit mono PCM
P99_TARGET_MS = 50.0
CONNECT_CONCURRENCY = 64
MAX_SESSIONS = 4000


@dataclass
class RealtimeRun:
    """One run at N concurrent real-time sessions."""

    sessions: int
    audio_seconds: float
    frames_per_session: int
    opened: int
    completed: int  # sessions that got their final result (status 2)
    sent: int
    results: int
    errors: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    late_p50_ms: float
    late_p99_ms: float
    late_max_ms: float
    cpu_ms_per_frame: dict[str, float] = field(default_factory=dict)
    other_cpu_pct: float = 0.0
    steal_pct: float = 0.0
    error_kinds: dict[str, int] = field(default_factory=dict)
    ok: bool = False


def pcm_frames(n: int = 25) -> list[bytes]:
    """One second of synthetic audio in 40 ms frames: low noise, then a voiced burst (a 180 Hz
    tone with harmonics), so the VAD has both to tell apart.  Fixed seed: every run sends the same."""
    rng = np.random.default_rng(16)
    t = np.arange(FRAME_BYTES // 2) / RATE
    out = []
    for i in range(n):
        noise = rng.normal(0, 80, t.size)
        voiced = sum(3000 / k * np.sin(2 * math.pi * 180 * k * (t + i * FRAME_MS / 1000)) for k in (1, 2, 3))
        pcm = noise + (voiced if i >= n // 2 else 0)
        out.append(np.clip(pcm, -32768, 32767).astype("<i2").tobytes())
    return out


def frame_texts(service: str) -> dict[int, list[bytes]]:
    """The envelopes, built once: status -> one text per PCM frame (the first carries the parameter section)."""
    texts: dict[int, list[bytes]] = {0: [], 1: [], 2: []}
    for pcm in pcm_frames():
        audio = base64.b64encode(pcm).decode()
        for status in (0, 1, 2):
            doc: dict[str, object] = {"header": {"appid": "bench", "status": status},
                                      "payload": {"audio": {"audio": audio, "encoding": "raw", "status": status}}}
            if status == 0:
                doc["parameter"] = {service: {}}
            texts[status].append(orjson.dumps(doc))
    return texts


class _Session:
    __slots__ = ("conn", "due", "got", "completed", "failed", "ended")

    def __init__(self, frames: int) -> None:
        self.conn: WsConn | None = None
        self.due = [0.0] * frames
        self.got = 0
        self.completed = False
        self.failed = ""
        self.ended = False


class _Load:
    def __init__(self, url: str, n: int, frames: int) -> None:
        parsed = urllib.parse.urlsplit(url)
        self.host, self.port, self.path = parsed.hostname or HOST, parsed.port or 80, parsed.path
        self.n, self.frames = n, frames
        self.texts = frame_texts(self.path.rstrip("/").rsplit("/", 1)[-1])
        self.sessions = [_Session(frames) for _ in range(n)]
        self.latencies: list[float] = []
        self.late: list[float] = []
        self.kinds: collections.Counter[str] = collections.Counter()
        self.sent = 0
        self.ended = 0
        self.all_ended = asyncio.get_running_loop().create_future()

    def on_text(self, conn: WsConn, data: bytes, now: float) -> None:
        s: _Session = conn.user
        try:
            doc = orjson.loads(data)
            header = doc["header"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            self._fail(s, "unreadable frame")
            return
        if header.get("code"):
            self._fail(s, f"code {header.get('code')}")
            return
        payload = doc.get("payload")
        if not payload:
            return  # the session's ack
        try:
            seq = int(payload["result"]["seq"])
        except (KeyError, TypeError, ValueError):
            self._fail(s, "result without seq")
            return
        if not 1 <= seq <= self.frames or s.due[seq - 1] == 0.0:
            self._fail(s, "result for a frame not sent")
            return
        self.latencies.append(now - s.due[seq - 1])
        s.got += 1
        if header.get("status") == 2:
            s.completed = True
            self._ended(s)

    def on_close(self, conn: WsConn, code: int, reason: str) -> None:
        s: _Session = conn.user
        if not s.completed and not s.failed:
            self._fail(s, f"closed before the final result ({code})")
        self._ended(s)

    def _fail(self, s: _Session, kind: str) -> None:
        if not s.failed and not s.completed:
            s.failed = kind
            self.kinds[kind] += 1
            if s.conn is not None:
                s.conn.abort()
            self._ended(s)

    def _ended(self, s: _Session) -> None:
        if not s.ended:
            s.ended = True
            self.ended += 1
            if self.ended == self.n and not self.all_ended.done():
                self.all_ended.set_result(None)

    async def open_all(self, timeout: float) -> None:
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def one(s: _Session) -> None:
            async with gate:
                try:
                    s.conn = await connect(self.host, self.port, self.path, self.on_text, self.on_close, timeout)
                    s.conn.user = s
                except (OSError, asyncio.TimeoutError) as e:
                    self._fail(s, f"connect: {type(e).__name__}")
        await asyncio.gather(*(one(s) for s in self.sessions))

    async def feed(self, s: _Session, start: float, period: float) -> None:
        conn = s.conn
        texts = self.texts
        variants = len(texts[1])
        last = self.frames - 1
        for k in range(self.frames):
            due = start + k * period
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if conn is None or conn.closed or s.failed:
                return
            s.due[k] = due
            self.late.append(time.monotonic() - due)
            conn.send_text(texts[0 if k == 0 else 2 if k == last else 1][k % variants])
            self.sent += 1


async def _run(url: str, n: int, frames: int, connect_timeout: float, drain: float) -> _Load:
    load = _Load(url, n, frames)
    await load.open_all(connect_timeout)
    period = FRAME_MS / 1000
    t0 = time.monotonic() + 0.2
    feeders = []
    for i, s in enumerate(load.sessions):
        if s.conn is not None and not s.failed:
            # starts spread over one frame period
            feeders.append(asyncio.ensure_future(load.feed(s, t0 + period * i / n, period)))
    await asyncio.gather(*feeders)
    try:
        await asyncio.wait_for(asyncio.shield(load.all_ended), drain)
    except asyncio.TimeoutError:
        for s in load.sessions:
            load._fail(s, "no final result in time")
    for s in load.sessions:
        if s.conn is not None and not s.conn.closed:
            s.conn.abort()
    return load


def run_realtime(server: Server, n: int, seconds: float) -> RealtimeRun:
    """N sessions of ``seconds`` of audio each, at real time; bounded by seconds + connect + drain time."""
    n = max(1, min(n, MAX_SESSIONS))
    frames = max(2, round(seconds * 1000 / FRAME_MS))
    connect_timeout = 10.0
    drain = 10.0
    ws_url = server.url.replace("http://", "ws://", 1)
    meter = CpuMeter(server.pids, "self")
    loop = new_loop()
    try:
        load = loop.run_until_complete(asyncio.wait_for(_run(ws_url, n, frames, connect_timeout, drain),
                                                        seconds + drain + 30 + n * 0.05))
    finally:
        loop.close()
    cpu, other, steal = meter.stop(len(load.latencies))
    lat = sorted(load.latencies)
    late = sorted(load.late)
    opened = sum(1 for s in load.sessions if s.conn is not None)
    completed = sum(1 for s in load.sessions if s.completed)
    errors = sum(load.kinds.values())
    p99 = 1000 * percentile(lat, 99)
    return RealtimeRun(n, frames * FRAME_MS / 1000, frames, opened, completed, load.sent, len(lat), errors,
                       1000 * percentile(lat, 50), p99, 1000 * (lat[-1] if lat else float("nan")),
                       1000 * percentile(late, 50), 1000 * percentile(late, 99), 1000 * (late[-1] if late else 0.0),
                       cpu, other, steal, dict(load.kinds),
                       ok=errors == 0 and completed == n and p99 <= P99_TARGET_MS)


def settle(server: Server, timeout: float = 15.0) -> None:
    """Wait until the loader reports no open session (the previous step's are closed and destroyed)."""
    base = server.url.rsplit("/v1/", 1)[0]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            text = get(base + "/metrics", 5)[1].decode(errors="replace")
        except OSError:
            return
        line = next((x for x in text.splitlines() if x.startswith("aiges_sessions_active")), "")
        if line and float(line.split()[-1]) == 0:
            return
        time.sleep(0.2)


def search(server: Server, start: int, steps: int, seconds: float,
           report: Callable[[RealtimeRun], None] | None = None) -> tuple[list[RealtimeRun], int]:
    """From ``start`` sessions: double while a step holds the target, then halve the gap between the
    best that held and the least that did not; at most ``steps`` runs.  → (runs, largest N that held, 0 if none)."""
    runs: list[RealtimeRun] = []
    best, worst = 0, 0  # largest N that held, least N that did not (0: none yet)
    n = max(1, start)
    for _ in range(max(1, steps)):
        settle(server)
        r = run_realtime(server, n, seconds)
        runs.append(r)
        if report is not None:
            report(r)
        if r.ok:
            best = max(best, n)
        else:
            worst = n if not worst else min(worst, n)
        nxt = (best + worst) // 2 if worst else n * 2
        if nxt <= best or (worst and nxt >= worst) or abs(nxt - n) < max(2, n // 20) or nxt > MAX_SESSIONS:
            break
        n = nxt
    return runs, best
