"""Closed-loop load: c connections each sending its next request when the last is answered, from wrk or aiohttp."""
from __future__ import annotations

import asyncio
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..common import MAX_REQUESTS
from ..procs import CpuMeter
from ..systems import Server
from . import new_loop, percentile


@dataclass
class Run:
    """One closed-loop measurement of one system at one concurrency."""

    server: str
    tool: str
    concurrency: int
    seconds: float
    requests: int
    errors: int
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_ms_per_req: dict[str, float] = field(default_factory=dict)
    other_cpu_pct: float = 0.0
    steal_pct: float = 0.0
    batch_mean: float | None = None  # ours: requests per batch handed to a worker


def _ms(value: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value)
    if not m:
        raise ValueError(f"cannot read wrk latency {value!r}")
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[m.group(2)]


def run_wrk(server: Server, conc: int, seconds: float, tmp: Path) -> Run:
    """``wrk -t1 -c<conc>`` POSTing the server's body (a Lua script in ``tmp``); its CPU counts as the load generator's."""
    script = tmp / f"{server.name}.lua"
    script.write_text('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                      f"wrk.body = [==[{server.body.decode()}]==]\n")
    meter = CpuMeter(server.pids, "children")
    t0 = time.perf_counter()
    proc = subprocess.run(["wrk", "-t1", f"-c{conc}", f"-d{max(1, round(seconds))}s", "--latency", "--timeout", "5s",
                           "-s", str(script), server.url], capture_output=True, text=True, timeout=seconds + 30)
    elapsed = time.perf_counter() - t0
    out = proc.stdout
    if proc.returncode != 0 or "Requests/sec" not in out:
        raise SystemExit(f"bench: wrk failed ({proc.returncode}):\n{out}\n{proc.stderr}")
    total = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
    rate = re.search(r"Requests/sec:\s*([\d.]+)", out)
    if total is None or rate is None:
        raise SystemExit(f"bench: cannot read wrk's output:\n{out}")
    n, rps = int(total.group(1)), float(rate.group(1))
    lat = dict(re.findall(r"^\s+(50|99)(?:\.000)?%\s+(\S+)", out, re.M))
    errors = 0
    if m := re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out):
        errors += int(m.group(1))
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        errors += sum(int(x) for x in m.groups())
    cpu, other, steal = meter.stop(n)
    return Run(server.name, "wrk", conc, round(elapsed, 2), n, errors, rps, _ms(lat["50"]), _ms(lat["99"]),
               cpu, other, steal)


async def _aiohttp_load(server: Server, conc: int, seconds: float) -> tuple[list[float], int, float]:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    headers = {"Content-Type": "application/json"}
    deadline = time.perf_counter() + seconds

    async def worker(http: aiohttp.ClientSession) -> None:
        nonlocal errors
        while time.perf_counter() < deadline and len(latencies) + errors < MAX_REQUESTS:
            t = time.perf_counter()
            try:
                async with http.post(server.url, data=server.body, headers=headers) as resp:
                    await resp.read()
                    ok = resp.status == 200
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError):
                ok = False
            if ok:
                latencies.append(time.perf_counter() - t)
            else:
                errors += 1

    t0 = time.perf_counter()
    connector = aiohttp.TCPConnector(limit=conc)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=10)) as http:
        await asyncio.gather(*(worker(http) for _ in range(conc)))
    return latencies, errors, time.perf_counter() - t0


def run_python(server: Server, conc: int, seconds: float) -> Run:
    meter = CpuMeter(server.pids, "self")
    lat, errors, elapsed = new_loop().run_until_complete(_aiohttp_load(server, conc, seconds))
    n = len(lat) + errors
    cpu, other, steal = meter.stop(n)
    lat.sort()
    return Run(server.name, "python-aiohttp", conc, round(elapsed, 2), n, errors, len(lat) / elapsed,
               1000 * percentile(lat, 50), 1000 * percentile(lat, 99), cpu, other, steal)



def load(server: Server, conc: int, seconds: float, tool: str, tmp: Path) -> Run:
    """One closed-loop run with ``tool``: "wrk" or the in-process "python-aiohttp" client."""
    return run_wrk(server, conc, seconds, tmp) if tool == "wrk" else run_python(server, conc, seconds)
