"""Bounded loopback benchmark of the aiges loader, measured against the two-process ceiling.

What it does, in one run (everything on 127.0.0.1, every loop bounded in time and count, every
process it starts stopped by PID at the end, a hard time limit over the whole run):

* once mode: starts a loader on a free port serving ``tests/wrappers/echo`` and the ceiling
  prototype of ``../shared/bench/ceiling`` (its ``t_pb2`` generated into a temp dir), then
  measures c=1 and c=32 load, the c=32 runs alternating ours / ceiling (A B A B ...) and quoting
  the median of the per-pair ratios.  Load comes from ``wrk`` when it is installed (a C load
  generator: it leaves the CPU to the servers on a 2-core box), else from an aiohttp client.
* stream mode: a loader serving ``tests/wrappers/echo_stream``; 32 concurrent
  :class:`aiges.client.StreamSession` s, each sending one frame and awaiting its result before the
  next (so every frame's latency is send → result), opening new sessions until the time is up.

Per run it also reports the CPU each process used per request (from /proc), which says at once
whether the loader, the plugin or the load generator is the limit.  ``--profile DIR`` adds a
py-spy run (loader and plugin) after the measurements and prints the hottest functions.

    scripts/bench                       # everything, ~10 s per measurement
    scripts/bench --mode once --quick   # a 3 s smoke run
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiges.client import ClientError, HttpClient, StreamSession  # noqa: E402

# the ceiling prototype lives in shared/ beside the project's checkout (as CI lays it out)
CEILING = Path(os.environ.get("AIGES_CEILING_DIR", str(ROOT.parent / "shared" / "bench" / "ceiling")))
HOST = "127.0.0.1"
SERVING = re.compile(r"serving \S+ on (http://127\.0\.0\.1:(\d+))")
TEXT = b"hello aiges bench: a short text payload"
CLK_TCK = os.sysconf("SC_CLK_TCK")
TARGETS = {"rps_c32": 2500.0, "p50_c1_ms": 2.0, "ratio": 0.55, "frames_per_s": 3000.0}
DEFAULT_ONCE_WRAPPER = ROOT / "tests" / "wrappers" / "echo"
MAX_REQUESTS = 5_000_000  # a count bound on every Python load loop, on top of its time bound


# ---------------------------------------------------------------- processes
class Procs:
    """Every process this run starts; all stopped by PID (TERM, then KILL) however the run ends."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, args: list[str], log: Path, **kw: Any) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            p = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **kw)
        self.procs.append(p)
        return p

    def stop(self, p: subprocess.Popen[bytes], grace: float = 10) -> None:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(grace)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)

    def stop_all(self) -> None:
        for p in reversed(self.procs):
            self.stop(p)


def children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(d.name))
            except (OSError, IndexError, ValueError):
                continue
    return out


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def post(url: str, body: bytes, timeout: float = 5) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@dataclass
class Server:
    """A server under load: its URL, the body one request sends, the PIDs whose CPU we account."""

    name: str
    url: str
    body: bytes
    pids: dict[str, int]
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)


def loader_config(wrapper_dir: Path, log_dir: Path, overrides: dict[str, dict[str, str]]) -> str:
    """The engine's defaults except where a benchmark must differ (free port, logs in the temp dir)
    and the ``--set SECTION.KEY=VALUE`` overrides (values are TOML literals)."""
    sections: dict[str, dict[str, str]] = {
        "svcName": {"host": json.dumps(HOST), "port": "5090"},
        "aiges": {"wrapperDir": json.dumps(str(wrapper_dir))},
        "wrapper": {"http_listen": json.dumps(f"{HOST}:0")},
        "log": {"dir": json.dumps(str(log_dir))},
    }
    for section, values in overrides.items():
        sections.setdefault(section, {}).update(values)
    return "".join(f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in values.items()) + "\n"
                   for name, values in sections.items())


def start_loader(procs: Procs, tmp: Path, name: str, wrapper_dir: Path, overrides: dict[str, dict[str, str]],
                 timeout: float = 60) -> Server:
    work = tmp / name
    work.mkdir()
    cfg = work / "aiges.toml"
    cfg.write_text(loader_config(wrapper_dir, work / "logs", overrides))
    log = work / "loader.out"
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = procs.start([sys.executable, "-m", "aiges", "-m", "0", "-c", str(cfg), "-s", "svcName"], log, cwd=work,
                    env=env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = SERVING.search(log.read_text(errors="replace"))
        if m:
            break
        if p.poll() is not None:
            raise SystemExit(f"bench: loader for {wrapper_dir} exited with {p.returncode}:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)
    else:
        raise SystemExit(f"bench: loader for {wrapper_dir} did not start within {timeout:g}s")
    url = m.group(1) + "/v1/svcName"
    body = json.dumps({"header": {"status": 3}, "parameter": {"svcName": {}},
                       "payload": {"text": {"text": base64.b64encode(TEXT).decode(), "status": 3}}}).encode()
    pids = {"loader": p.pid}
    for i, c in enumerate(sorted(children(p.pid))):
        pids[f"plugin{i}" if i else "plugin"] = c
    return Server(name, url, body, pids, [p])


def start_ceiling(procs: Procs, tmp: Path, timeout: float = 30) -> Server:
    """The prototype of ../shared/bench (read-only): generate t_pb2 into tmp, start both halves."""
    gen = tmp / "ceiling"
    gen.mkdir()
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{CEILING}", f"--python_out={gen}",
                    f"--grpc_python_out={gen}", str(CEILING / "t.proto")], check=True, timeout=60)
    env = dict(os.environ, PYTHONPATH=str(gen) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    sock = f"unix:{gen}/ceiling.sock"
    port = free_port()
    plug = procs.start([sys.executable, str(CEILING / "plug.py"), sock], gen / "plug.out", env=env, cwd=gen)
    front = procs.start([sys.executable, str(CEILING / "loader.py"), str(port), sock], gen / "loader.out", env=env,
                        cwd=gen)
    url = f"http://{HOST}:{port}/v1/svc"
    body = json.dumps({"payload": {"text": {"text": base64.b64encode(TEXT).decode()}}}).encode()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p, log in ((plug, "plug.out"), (front, "loader.out")):
            if p.poll() is not None:
                raise SystemExit(f"bench: ceiling {log} exited:\n{(gen / log).read_text()[-3000:]}")
        try:
            status, raw = post(url, body, 2)
            if status == 200 and base64.b64encode(TEXT) in raw:
                return Server("ceiling", url, body, {"front": front.pid, "plug": plug.pid}, [front, plug])
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"bench: the ceiling did not answer within {timeout:g}s")


# ---------------------------------------------------------------- once load
@dataclass
class Run:
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


def _machine_busy() -> tuple[float, float]:
    """Seconds of CPU the whole machine spent busy, and stolen by the hypervisor (/proc/stat)."""
    try:
        ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (ticks + [0] * 8)[:8]
    return (user + nice + system + irq + softirq) / CLK_TCK, steal / CLK_TCK


class CpuMeter:
    """CPU used during one run: by each server process, by the load generator (``who``: ``children``
    for wrk, ``self`` for the in-process Python client), and by everything else on the machine,
    which is how a reader tells a clean run from a noisy one."""

    def __init__(self, server: Server, who: str) -> None:
        self.server = server
        self.who = resource.RUSAGE_CHILDREN if who == "children" else resource.RUSAGE_SELF
        self.procs = {k: cpu_seconds(pid) for k, pid in server.pids.items()}
        self.rusage = resource.getrusage(self.who)
        self.busy, self.steal = _machine_busy()
        self.t0 = time.perf_counter()

    def stop(self, units: int) -> tuple[dict[str, float], float, float]:
        """→ (CPU ms per unit by process, other processes' CPU in % of one core, steal %)."""
        elapsed = max(time.perf_counter() - self.t0, 1e-6)
        r = resource.getrusage(self.who)
        busy, steal = _machine_busy()
        used = {k: cpu_seconds(pid) - self.procs[k] for k, pid in self.server.pids.items()}
        used["load generator"] = (r.ru_utime - self.rusage.ru_utime) + (r.ru_stime - self.rusage.ru_stime)
        other = max(0.0, (busy - self.busy) - sum(used.values()))
        per_unit = {k: round(1000 * v / max(units, 1), 3) for k, v in used.items()}
        return per_unit, round(100 * other / elapsed, 1), round(100 * (steal - self.steal) / elapsed, 1)


def _ms(value: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value)
    if not m:
        raise ValueError(f"cannot read wrk latency {value!r}")
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[m.group(2)]


def run_wrk(server: Server, conc: int, seconds: float, tmp: Path) -> Run:
    script = tmp / f"{server.name}.lua"
    script.write_text('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                      f"wrk.body = [==[{server.body.decode()}]==]\n")
    meter = CpuMeter(server, "children")
    t0 = time.perf_counter()
    proc = subprocess.run(["wrk", "-t1", f"-c{conc}", f"-d{max(1, round(seconds))}s", "--latency", "--timeout", "5s",
                           "-s", str(script), server.url], capture_output=True, text=True, timeout=seconds + 30)
    elapsed = time.perf_counter() - t0
    out = proc.stdout
    if proc.returncode != 0 or "Requests/sec" not in out:
        raise SystemExit(f"bench: wrk failed ({proc.returncode}):\n{out}\n{proc.stderr}")
    n = int(re.search(r"(\d+) requests in ([\d.]+)(\w+)", out).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s*([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat = dict(re.findall(r"^\s+(50|99)(?:\.000)?%\s+(\S+)", out, re.M))
    errors = 0
    if m := re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out):
        errors += int(m.group(1))
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        errors += sum(int(x) for x in m.groups())
    cpu, other, steal = meter.stop(n)
    return Run(server.name, "wrk", conc, round(elapsed, 2), n, errors, rps, _ms(lat["50"]), _ms(lat["99"]),
               cpu, other, steal)


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    i = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[i]


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
    meter = CpuMeter(server, "self")
    lat, errors, elapsed = new_loop().run_until_complete(_aiohttp_load(server, conc, seconds))
    n = len(lat) + errors
    cpu, other, steal = meter.stop(n)
    lat.sort()
    return Run(server.name, "python-aiohttp", conc, round(elapsed, 2), n, errors, len(lat) / elapsed,
               1000 * percentile(lat, 50), 1000 * percentile(lat, 99), cpu, other, steal)


def new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:
        return asyncio.new_event_loop()


def load(server: Server, conc: int, seconds: float, tool: str, tmp: Path) -> Run:
    return run_wrk(server, conc, seconds, tmp) if tool == "wrk" else run_python(server, conc, seconds)


# ---------------------------------------------------------------- streaming load
@dataclass
class StreamRun:
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


async def _stream_load(url: str, sessions: int, frames: int, seconds: float) -> tuple[list[float], int, int,
                                                                                       list[str], float]:
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
    meter = CpuMeter(server, "self")
    lat, done, errors, samples, elapsed = new_loop().run_until_complete(
        asyncio.wait_for(_stream_load(ws_url, sessions, frames, seconds), seconds + 60))
    cpu, other, steal = meter.stop(len(lat))
    lat.sort()
    return StreamRun(sessions, frames, round(elapsed, 2), len(lat), done, errors, len(lat) / elapsed,
                     1000 * percentile(lat, 50), 1000 * percentile(lat, 99), cpu, other, steal, samples)


# ---------------------------------------------------------------- profile
PROFILE_RATE = 250  # py-spy samples per second


def profile(server: Server, seconds: float, out_dir: Path, run: Callable[[], int], label: str) -> dict[str, list[str]]:
    """py-spy on every server process during one more run of ``run`` (which returns how many requests
    or frames it completed).  ``--gil --nonblocking``: only the thread holding the GIL is sampled and
    the process is never paused, so shares are of Python CPU time and the run is barely disturbed."""
    pyspy = shutil.which("py-spy")
    if not pyspy:
        print("bench: --profile needs py-spy (pip install py-spy); skipped")
        return {}
    out_dir.mkdir(parents=True, exist_ok=True)
    spies = []
    for name, pid in server.pids.items():
        for fmt, ext in (("raw", "txt"), ("flamegraph", "svg")):
            path = out_dir / f"{label}-{name}.{ext}"
            spies.append((name, fmt, path, subprocess.Popen(
                [pyspy, "record", "--gil", "--nonblocking", "--rate", str(PROFILE_RATE), "--pid", str(pid),
                 "--duration", str(max(1, round(seconds))), "--format", fmt, "--output", str(path)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
    time.sleep(1)  # let py-spy attach before the load starts
    units = run()
    report: dict[str, list[str]] = {}
    for name, fmt, path, p in spies:
        try:
            p.wait(seconds + 30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
        if fmt == "raw" and path.exists():
            report[name] = hot_spots(path, units)
    print(f"  py-spy output (collapsed stacks .txt, flame graphs .svg) in {out_dir}")
    return report


def hot_spots(collapsed: Path, units: int, top: int = 14) -> list[str]:
    """Python CPU per request/frame by function, self and inclusive, from py-spy's collapsed stacks
    (an estimate: samples x sampling interval / units; the run is slightly longer than the profile)."""
    self_n: collections.Counter[str] = collections.Counter()
    incl_n: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_short(f.strip()) for f in stack.split(";") if f.strip()]
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += n
        self_n[frames[-1]] += n
        for f in set(frames):
            incl_n[f] += n
    if not total or not units:
        return []
    us = 1e6 / PROFILE_RATE / units
    lines = [f"total {total * us:6.1f} us/unit of Python CPU (GIL held)"]
    lines += [f"self  {n * us:6.1f} us  {f}" for f, n in self_n.most_common(top)]
    skip = ("<module>", "_run_module_as_main", "_run_code", "Runner.run", "run (", "main (")
    ours = [(f, n) for f, n in incl_n.most_common() if "aiges/" in f and not f.startswith(skip)][:top]
    lines += [f"incl  {n * us:6.1f} us  {f}" for f, n in ours]
    return lines


def _short(frame: str) -> str:
    # "func (path/to/file.py:123)" → "func (file.py-ish tail)" without the line number
    m = re.match(r"(.*) \((.*?)(?::\d+)?\)$", frame)
    if not m:
        return frame
    path = m.group(2)
    for marker in ("site-packages/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
    if "/aiges/" in path:
        path = "aiges/" + path.rsplit("/aiges/", 1)[1]
    return f"{m.group(1)} ({path})"


# ---------------------------------------------------------------- report
def _all_cpu() -> dict[int, float]:
    out = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            out[int(d.name)] = cpu_seconds(int(d.name))
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def machine_state(sample: float = 1.0) -> list[str]:
    """Load average and the processes busy right now (CPU measured over ``sample`` seconds)."""
    load1, load5, load15 = os.getloadavg()
    lines = [f"machine: {os.cpu_count()} CPUs, load average {load1:.2f} {load5:.2f} {load15:.2f}, "
             f"python {sys.version.split()[0]}"]
    if sample > 0:
        before = _all_cpu()
        time.sleep(sample)
        after = _all_cpu()
        busy = sorted(((after[p] - before.get(p, 0.0), p) for p in after if p != os.getpid()), reverse=True)
        busy = [(c, p) for c, p in busy if c / sample >= 0.02][:6]
        lines.append(f"processes using CPU (over {sample:g} s): " + ("none above 2%" if not busy else ""))
        lines += [f"  {100 * c / sample:5.1f}%  pid {p:<7d} {_cmdline(p)[:120]}" for c, p in busy]
    return lines


def fmt_cpu(per_unit: dict[str, float], other: float, steal: float) -> str:
    cpu = ", ".join(f"{k} {v:.3f}" for k, v in per_unit.items())
    return f"{cpu}; other processes {other:.0f}% of a core" + (f", steal {steal:.0f}%" if steal >= 1 else "")


def fmt_run(r: Run) -> str:
    return (f"  {r.server:8s} c={r.concurrency:<3d} {r.rps:9.0f} req/s  p50 {r.p50_ms:7.2f} ms  p99 {r.p99_ms:7.2f} ms"
            f"  errors {r.errors:<4d} n={r.requests:<7d} CPU ms/req: "
            f"{fmt_cpu(r.cpu_ms_per_req, r.other_cpu_pct, r.steal_pct)}")


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="scripts/bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--mode", choices=("once", "stream", "all"), default="all")
    ap.add_argument("--duration", type=float, default=None, help="seconds per measurement (default 10)")
    ap.add_argument("--quick", action="store_true",
                    help="defaults for a smoke run: 3 s per measurement, 2 A/B pairs, 20 frames per session")
    ap.add_argument("--pairs", type=int, default=None, help="A/B pairs (ours, ceiling) at c=32 (default 3)")
    ap.add_argument("--sessions", type=int, default=32, help="concurrent streaming sessions (default 32)")
    ap.add_argument("--frames", type=int, default=None, help="frames per streaming session (default 50)")
    ap.add_argument("--workers", type=int, default=None, help="[aiges] workers for our loader (default: config's)")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="a config override for our loader, VALUE a TOML literal, e.g. --set log.access=false "
                         "(repeatable)")
    ap.add_argument("--wrapper", type=Path, default=DEFAULT_ONCE_WRAPPER,
                    help="once-mode wrapper dir; it must take payload 'text' (default tests/wrappers/echo)")
    ap.add_argument("--stream-wrapper", type=Path, default=ROOT / "tests" / "wrappers" / "echo_stream")
    ap.add_argument("--no-wrk", action="store_true", help="use the Python (aiohttp) load generator even if wrk exists")
    ap.add_argument("--no-ceiling", action="store_true", help="skip the ceiling comparison")
    ap.add_argument("--profile", type=Path, default=None, metavar="DIR",
                    help="after measuring, py-spy loader and plugin during one more c=32 run; write to DIR")
    ap.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write the results as JSON")
    ap.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = ap.parse_args(argv)
    # --quick changes the defaults only: explicit flags still win
    for name, normal, quick in (("duration", 10.0, 3.0), ("pairs", 3, 2), ("frames", 50, 20)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else normal)
    args.sessions = max(1, min(args.sessions, 1000))
    args.frames = max(1, min(args.frames, 100_000))
    secs = max(1.0, min(args.duration, 300.0))
    pairs = max(1, min(args.pairs, 10))
    tool = "wrk" if shutil.which("wrk") and not args.no_wrk else "python-aiohttp"
    ceiling = not args.no_ceiling and (CEILING / "t.proto").exists()
    overrides: dict[str, dict[str, str]] = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or not section or not name:
            ap.error(f"--set expects SECTION.KEY=VALUE, got {item!r}")
        overrides.setdefault(section, {})[name] = value.strip()
    if args.workers:
        overrides.setdefault("aiges", {})["workers"] = str(args.workers)

    # hard limit for the whole run: every measurement plus generous start/stop allowances
    per_server = 2 if ceiling else 1
    runs = 0
    if args.mode != "stream":
        runs += per_server * (2 + pairs) + (1 if args.profile else 0)  # warm-up, c=1, c=32 pairs, profile
    if args.mode != "once":
        runs += 2 if args.profile else 1
    budget = int(runs * (secs + 15) + 120)

    def on_alarm(signum: int, frame: Any) -> None:
        raise SystemExit(f"bench: hard time limit of {budget}s reached; stopping")

    def on_term(signum: int, frame: Any) -> None:
        raise SystemExit(f"bench: stopped by signal {signum}; stopping the processes it started")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGTERM, on_term)
    signal.alarm(budget)

    if overrides:
        print("config overrides: " + ", ".join(f"{s}.{k}={v}" for s, kv in overrides.items() for k, v in kv.items()))
    print(f"aiges bench: mode {args.mode}, {secs:g} s per measurement, once-mode load generator: {tool}"
          f"{' (wrk -t1, keep-alive)' if tool == 'wrk' else ' (in-process, keep-alive)'}, time limit {budget}s")
    state = machine_state()
    for line in state:
        print(line)
    results: dict[str, Any] = {"tool": tool, "seconds": secs, "machine_before": state}
    procs = Procs()
    tmp = Path(tempfile.mkdtemp(prefix="aiges-bench-"))
    checks: list[tuple[str, str, bool]] = []
    try:
        if args.mode in ("once", "all"):
            ours = start_loader(procs, tmp, "once", args.wrapper.resolve(), overrides)
            with HttpClient(ours.url) as c:  # the answer is right before we count answers
                try:
                    answer = c.once({"text": TEXT})
                except ClientError as e:
                    raise SystemExit(f"bench: {args.wrapper} answers the benchmark request with an error: {e}") from None
                if args.wrapper.resolve() == DEFAULT_ONCE_WRAPPER and answer["result"] != TEXT.decode():
                    raise SystemExit(f"bench: echo answered {answer['result']!r}, not the text it was sent")
            ceil = start_ceiling(procs, tmp) if ceiling else None
            print(f"ours:    {ours.url} (pids {ours.pids}, wrapper {args.wrapper})")
            if ceil:
                print(f"ceiling: {ceil.url} (pids {ceil.pids}, {CEILING})")
            for s in (ours, ceil):  # warm-up: connection setup, first-call paths, allocator
                if s:
                    load(s, 32, 1, tool, tmp)
            print("once mode:")
            c1 = [load(ours, 1, secs, tool, tmp)]
            print(fmt_run(c1[0]))
            if ceil:
                c1.append(load(ceil, 1, secs, tool, tmp))
                print(fmt_run(c1[1]))
            a_runs: list[Run] = []
            b_runs: list[Run] = []
            for _ in range(pairs):
                a_runs.append(load(ours, 32, secs, tool, tmp))
                print(fmt_run(a_runs[-1]))
                if ceil:
                    b_runs.append(load(ceil, 32, secs, tool, tmp))
                    print(fmt_run(b_runs[-1]))
            rps32 = statistics.median(r.rps for r in a_runs)
            ratios = [a.rps / b.rps for a, b in zip(a_runs, b_runs, strict=False) if b.rps]
            results["once"] = {"c1": [asdict(r) for r in c1], "c32_ours": [asdict(r) for r in a_runs],
                               "c32_ceiling": [asdict(r) for r in b_runs], "ratios": ratios}
            print(f"  c=32 ours median {rps32:.0f} req/s"
                  + (f", ceiling median {statistics.median(r.rps for r in b_runs):.0f} req/s" if b_runs else ""))
            if ratios:
                print(f"  ours/ceiling per pair: {', '.join(f'{x:.2f}' for x in ratios)}; "
                      f"median {statistics.median(ratios):.2f}")
            errors = sum(r.errors for r in c1[:1] + a_runs)
            checks.append((f"c=32 echo >= {TARGETS['rps_c32']:.0f} req/s", f"{rps32:.0f} req/s",
                           rps32 >= TARGETS["rps_c32"]))
            checks.append((f"p50 at c=1 <= {TARGETS['p50_c1_ms']:g} ms", f"{c1[0].p50_ms:.2f} ms",
                           c1[0].p50_ms <= TARGETS["p50_c1_ms"]))
            if ratios:
                med = statistics.median(ratios)
                checks.append((f"ours/ceiling >= {TARGETS['ratio']:g}", f"{med:.2f} (median of {len(ratios)})",
                               med >= TARGETS["ratio"]))
            checks.append(("no errors in our once runs", str(errors), errors == 0))
            if args.profile:
                print(f"profiling loader and plugin at c=32 for {secs:g} s (py-spy --gil --nonblocking), "
                      f"Python CPU per request:")
                results["profile_once"] = prof = profile(
                    ours, secs, args.profile, lambda: load(ours, 32, secs, tool, tmp).requests, "once")
                for name, lines in prof.items():
                    print(f"  {name}:")
                    for line in lines:
                        print(f"    {line}")
            for s in (ceil, ours):  # free the CPU for the stream run
                for p in s.procs if s else []:
                    procs.stop(p)
        if args.mode in ("stream", "all"):
            st = start_loader(procs, tmp, "stream", args.stream_wrapper.resolve(), overrides)
            print(f"stream mode: {st.url} (pids {st.pids}, wrapper {args.stream_wrapper}), {args.sessions} sessions "
                  f"x up to {args.frames} frames, ping-pong per session, Python client (aiges.client.StreamSession)")
            new_loop().run_until_complete(_stream_load(st.url.replace("http", "ws", 1), 4, 5, 0.5))  # warm-up
            sr = run_stream(st, args.sessions, args.frames, secs)
            print(f"  {sr.frames_per_s:9.0f} frames/s  p50 {sr.p50_ms:7.2f} ms  p99 {sr.p99_ms:7.2f} ms  "
                  f"sessions {sr.sessions_done}  frames {sr.frames}  errors {sr.errors}  CPU ms/frame: "
                  f"{fmt_cpu(sr.cpu_ms_per_frame, sr.other_cpu_pct, sr.steal_pct)}")
            for sample in sr.error_samples:
                print(f"    error: {sample}")
            results["stream"] = asdict(sr)
            checks.append((f"stream >= {TARGETS['frames_per_s']:.0f} frames/s ({args.sessions} sessions)",
                           f"{sr.frames_per_s:.0f} frames/s", sr.frames_per_s >= TARGETS["frames_per_s"]))
            checks.append(("no errors in the stream run", str(sr.errors), sr.errors == 0))
            if args.profile:
                print(f"profiling loader and plugin during {args.sessions} sessions for {secs:g} s "
                      f"(py-spy --gil --nonblocking), Python CPU per frame:")
                results["profile_stream"] = prof = profile(
                    st, secs, args.profile, lambda: run_stream(st, args.sessions, args.frames, secs).frames, "stream")
                for name, lines in prof.items():
                    print(f"  {name}:")
                    for line in lines:
                        print(f"    {line}")
    finally:
        signal.alarm(0)
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    print("targets (2-core dev machine):")
    for name, value, ok in checks:
        print(f"  {verdict(ok)}  {name:42s} {value}")
    for line in machine_state(sample=0):
        print(line.replace("machine:", "machine after:"))
    results["checks"] = [{"target": n, "value": v, "ok": ok} for n, v, ok in checks]
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 1 if args.check and not all(ok for _, _, ok in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
