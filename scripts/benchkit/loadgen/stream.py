"""Streaming load: concurrent WebSocket sessions, each sending one frame and awaiting its result before the next."""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from aiges.client import ClientError, StreamSession

from ..common import MAX_REQUESTS, TEXT
from ..procs import CpuMeter
from ..systems import Server
from . import new_loop, percentile


@dataclass
class StreamRun:
    """One streaming measurement: frames per second and per-frame latency over many sessions."""

    sessions: int
    frames_per_session: int
    seconds: float
    frames: int
    sessions_done: int
    errors: int
    frames_per_s: float
    p50_ms: float
    p99_ms: float
    cpu_ms_per_frame: dict[str, float] = field(default_factory=dict)
    other_cpu_pct: float = 0.0
    steal_pct: float = 0.0
    error_samples: list[str] = field(default_factory=list)


async def stream_load(url: str, sessions: int, frames: int, seconds: float) -> tuple[list[float], int, int,
                                                                                      list[str], float]:
    """``sessions`` runners opening sessions of up to ``frames`` ping-pong frames until ``seconds`` pass
    → (latencies, sessions done, errors, the first error texts, elapsed)."""
    latencies: list[float] = []
    done = 0
    errors: list[str] = []
    deadline = time.perf_counter() + seconds
    payload = TEXT.decode()

    async def one_session() -> None:
        nonlocal done
        async with StreamSession(url, timeout=10) as s:
            results = s.results()
            for i in range(frames):
                # the last frame closes the session: at the planned count, or as soon as time is up
                last = i == frames - 1 or time.perf_counter() >= deadline
                t = time.perf_counter()
                await s.send("text", payload, status=2 if last else 0 if i == 0 else 1)
                r = await results.__anext__()
                latencies.append(time.perf_counter() - t)
                if r.data != TEXT:
                    raise ClientError(-1, f"frame {i}: got {r.data[:40]!r}", s.sid)
                if last:
                    break
            async for _ in results:  # after the final result the session has nothing more
                pass
        done += 1

    async def runner() -> None:
        while time.perf_counter() < deadline and len(errors) < 100 and len(latencies) < MAX_REQUESTS:
            try:
                await one_session()
            except (ClientError, StopAsyncIteration) as e:
                errors.append(repr(e))

    t0 = time.perf_counter()
    await asyncio.gather(*(runner() for _ in range(sessions)))
    return latencies, done, len(errors), errors[:5], time.perf_counter() - t0


def run_stream(server: Server, sessions: int, frames: int, seconds: float) -> StreamRun:
    ws_url = server.url.replace("http://", "ws://", 1)
    meter = CpuMeter(server.pids, "self")
    lat, done, errors, samples, elapsed = new_loop().run_until_complete(
        asyncio.wait_for(stream_load(ws_url, sessions, frames, seconds), seconds + 60))
    cpu, other, steal = meter.stop(len(lat))
    lat.sort()
    return StreamRun(sessions, frames, round(elapsed, 2), len(lat), done, errors, len(lat) / elapsed,
                     1000 * percentile(lat, 50), 1000 * percentile(lat, 99), cpu, other, steal, samples)
