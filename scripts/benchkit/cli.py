"""Command line of scripts/bench: its options, the run's hard time limit, and the order of the measurements."""
from __future__ import annotations

import argparse
import functools
import json
import shutil
import signal
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import benchkit
from aiges.client import ClientError, HttpClient

from .common import CEILING, DEFAULT_ONCE_WRAPPER, OPEN_DRAIN, ROOT, TEXT, VAD_WRAPPER
from .jobs import Job, check_answers, prepare_catboost, resolve_job
from .loadgen import new_loop, with_batches
from .loadgen.closed import Run, load
from .loadgen.idle import run_idle
from .loadgen.openloop import OpenRun, run_open
from .loadgen.realtime import search
from .loadgen.stream import run_stream, stream_load
from .peers import PEERS, Peer
from .procs import Procs
from .profile import profile
from .report import (
    batching_note,
    fmt_idle,
    fmt_open,
    fmt_profile,
    fmt_realtime,
    fmt_run,
    fmt_stream,
    machine_state,
    summarize_closed,
    summarize_open,
    write_json,
)
from .systems import Server, start_ceiling, start_loader
from .targets import Check, closed_checks, fmt_checks, idle_checks, open_checks, realtime_checks, stream_checks


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="scripts/bench", description=(benchkit.__doc__ or "").split("\n\n")[0])
    ap.add_argument("--mode", choices=("once", "stream", "all"), default="all")
    ap.add_argument("--job", choices=("echo", "catboost"), default=None,
                    help="once-mode job: echo (default) or catboost (examples/catboost, else a synthetic model)")
    ap.add_argument("--peer", choices=tuple(PEERS), default=None,
                    help="also measure " + "; or ".join(peer.HELP for peer in PEERS.values()))
    ap.add_argument("--peer-set", action="append", default=[], metavar="KEY=JSON",
                    help="a settings.json override for the peer, e.g. --peer-set debug=false; model.KEY=JSON "
                         "goes to its model-settings.json, e.g. model.max_batch_size=64 (repeatable)")
    ap.add_argument("--rate", default=None, metavar="R[,R...]",
                    help="open loop at R req/s (up to 5 rates) instead of the c=1/c=32 closed loop")
    ap.add_argument("--open-conns", type=int, default=256, help="open loop: most connections per system (256)")
    ap.add_argument("--duration", type=float, default=None, help="seconds per measurement (default 10)")
    ap.add_argument("--quick", action="store_true",
                    help="defaults for a smoke run: 3 s per measurement, 2 rounds (3 with --peer), "
                         "20 frames per session")
    ap.add_argument("--rounds", "--pairs", dest="rounds", type=int, default=None,
                    help="interleaved rounds (ours, ceiling, peer) per load level (default 3)")
    ap.add_argument("--sessions", type=int, default=32, help="concurrent streaming sessions (default 32)")
    ap.add_argument("--realtime", type=int, default=None, metavar="N",
                    help="stream mode: also N real-time audio sessions (40 ms of 16 kHz PCM every 40 ms, "
                         "tests/wrappers/vad_stream), then a short search for the largest N with p99 <= 50 ms "
                         "and no error")
    ap.add_argument("--realtime-steps", type=int, default=4, metavar="K",
                    help="most runs of the real-time search (default 4; 1 = measure N only)")
    ap.add_argument("--realtime-seconds", type=float, default=20.0, metavar="S",
                    help="seconds of audio per real-time session (default 20)")
    ap.add_argument("--idle", type=int, default=None, metavar="N",
                    help="stream mode: also N idle sessions (one frame each, then waiting): RSS per open "
                         "session, then [ws] sessionTimeout must close and destroy them all")
    ap.add_argument("--idle-timeout", type=float, default=60.0, metavar="S",
                    help="[ws] sessionTimeout of the idle-sessions loader (default 60)")
    ap.add_argument("--frames", type=int, default=None, help="frames per streaming session (default 50)")
    ap.add_argument("--workers", type=int, default=None, help="[aiges] workers for our loader (default: config's)")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="a config override for our loader, VALUE a TOML literal, e.g. --set log.access=false "
                         "(repeatable)")
    ap.add_argument("--wrapper", type=Path, default=None,
                    help="once-mode wrapper dir (default tests/wrappers/echo); for the echo job it must take "
                         "payload 'text'; a dir with a *.cbm model (or a wrapper.py naming catboost) is the catboost job")
    ap.add_argument("--model", type=Path, default=None, help="catboost job: the model file (default: the *.cbm "
                    "beside the wrapper, else the synthetic one); the peer serves the same file")
    ap.add_argument("--stream-wrapper", type=Path, default=ROOT / "tests" / "wrappers" / "echo_stream")
    ap.add_argument("--no-wrk", action="store_true", help="use the Python (aiohttp) load generator even if wrk exists")
    ap.add_argument("--no-ceiling", action="store_true", help="skip the ceiling comparison")
    ap.add_argument("--profile", type=Path, default=None, metavar="DIR",
                    help="after measuring, py-spy loader and plugin during one more c=32 run; write to DIR")
    ap.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write the results as JSON")
    ap.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    return ap


def _parse_rates(text: str | None) -> list[float]:
    if not text:
        return []
    try:
        rates = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SystemExit(f"bench: --rate expects numbers (req/s), comma-separated, got {text!r}") from None
    if not rates or len(rates) > 5 or any(not 1 <= r <= 20000 for r in rates):
        raise SystemExit("bench: --rate takes 1 to 5 rates, each between 1 and 20000 req/s")
    return rates



@dataclass
class Plan:
    """The run, once the options are read: what is measured, how long, with what load."""

    args: argparse.Namespace
    secs: float
    rounds: int
    conns: int
    rates: list[float]
    tool: str
    overrides: dict[str, dict[str, str]]
    peer: Peer | None
    peer_settings: dict[str, Any]
    once: bool
    job: Job
    ceiling: bool
    prepared: Path | None  # what the peer prepared before the clock started (MLServer: its venv)


def plan(argv: list[str] | None) -> Plan:
    ap = parser()
    args = ap.parse_args(argv)
    # --quick changes the defaults only: explicit flags still win
    for name, normal, quick in (("duration", 10.0, 3.0), ("rounds", 3, 3 if args.peer else 2), ("frames", 50, 20)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else normal)
    args.sessions = max(1, min(args.sessions, 1000))
    args.realtime_steps = max(1, min(args.realtime_steps, 8))
    args.realtime_seconds = max(1.0, min(args.realtime_seconds, 120.0))
    args.idle_timeout = max(5.0, min(args.idle_timeout, 600.0))
    args.frames = max(1, min(args.frames, 100_000))
    secs = max(1.0, min(args.duration, 300.0))
    rounds = max(1, min(args.rounds, 10))
    conns = max(1, min(args.open_conns, 4096))
    rates = _parse_rates(args.rate)
    tool = "wrk" if shutil.which("wrk") and not args.no_wrk else "python-aiohttp"
    overrides: dict[str, dict[str, str]] = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or not section or not name:
            ap.error(f"--set expects SECTION.KEY=VALUE, got {item!r}")
        overrides.setdefault(section, {})[name] = value.strip()
    if args.workers:
        overrides.setdefault("aiges", {})["workers"] = str(args.workers)
    peer_settings: dict[str, Any] = {}
    for item in args.peer_set:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            ap.error(f"--peer-set expects KEY=JSON, got {item!r}")
        try:
            peer_settings[key.strip()] = json.loads(value)
        except ValueError:
            peer_settings[key.strip()] = value  # a bare string
    once = args.mode in ("once", "all")
    job = resolve_job(args.job, args.wrapper, args.model) if once else Job("echo", DEFAULT_ONCE_WRAPPER)
    for section, values in job.overrides.items():
        for k, v in values.items():
            overrides.setdefault(section, {}).setdefault(k, v)
    ceiling = once and job.name == "echo" and not args.no_ceiling and (CEILING / "t.proto").exists()
    peer = PEERS[args.peer] if args.peer else None
    # the peer's venv is made before the clock starts: a first install takes a minute or more
    prepared = peer.prepare(job.name) if once and peer else None
    return Plan(args, secs, rounds, conns, rates, tool, overrides, peer, peer_settings, once, job, ceiling,
                prepared)


def budget(p: Plan) -> int:
    """Hard limit for the whole run: every measurement plus generous start/stop allowances."""
    systems = 1 + int(p.ceiling) + int(p.prepared is not None)
    runs = 0
    limit = 120 + 60 * (systems - 1)
    if p.once:
        if p.rates:
            limit += int(systems * (1 + 15) + len(p.rates) * p.rounds * systems * (p.secs + OPEN_DRAIN + 15))
        else:
            runs += systems * (2 + p.rounds)  # warm-up, c=1, c=32 rounds
        runs += 1 if p.args.profile else 0
    if p.args.mode != "once":
        runs += 2 if p.args.profile else 1
        if p.args.realtime:
            limit += int(p.args.realtime_steps * (p.args.realtime_seconds + 60 + 0.05 * 4000) + 60)
        if p.args.idle:
            limit += int(p.args.idle_timeout + 60 + 60)
    return int(limit + runs * (p.secs + 15))


def main(argv: list[str] | None = None) -> int:
    p = plan(argv)
    args, secs, rounds, job = p.args, p.secs, p.rounds, p.job
    limit = budget(p)

    def on_alarm(signum: int, frame: Any) -> None:
        raise SystemExit(f"bench: hard time limit of {limit}s reached; stopping")

    def on_term(signum: int, frame: Any) -> None:
        raise SystemExit(f"bench: stopped by signal {signum}; stopping the processes it started")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGTERM, on_term)
    signal.alarm(limit)

    if p.overrides:
        print("config overrides: " + ", ".join(f"{s}.{k}={v}" for s, kv in p.overrides.items() for k, v in kv.items()))
    load_desc = (f"open loop at {', '.join(f'{r:g}' for r in p.rates)} req/s (a Python asyncio HTTP/1.1 client, "
                 f"keep-alive, up to {p.conns} connections per system)" if p.rates else
                 f"closed loop, {p.tool}{' (wrk -t1, keep-alive)' if p.tool == 'wrk' else ' (in-process, keep-alive)'}")
    print(f"aiges bench: mode {args.mode}, job {job.name}, {secs:g} s per measurement, {rounds} round(s), "
          f"once-mode load: {load_desc}, time limit {limit}s")
    state = machine_state()
    for line in state:
        print(line)
    results: dict[str, Any] = {"tool": p.tool, "seconds": secs, "job": job.name, "rounds": rounds,
                               "rates": p.rates, "machine_before": state}
    procs = Procs()
    tmp = Path(tempfile.mkdtemp(prefix="aiges-bench-"))
    checks: list[Check] = []
    try:
        if p.once:
            checks += run_once(p, procs, tmp, results)
        if args.mode in ("stream", "all"):
            checks += run_stream_mode(p, procs, tmp, results)
    finally:
        signal.alarm(0)
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    for line in fmt_checks(checks):
        print(line)
    for line in machine_state(sample=0):
        print(line.replace("machine:", "machine after:"))
    results["checks"] = [{"target": n, "value": v, "ok": ok} for n, v, ok in checks]
    if args.json:
        write_json(args.json, results)
    return 1 if args.check and not all(ok for _, _, ok in checks) else 0


def run_once(p: Plan, procs: Procs, tmp: Path, results: dict[str, Any]) -> list[Check]:
    """Once mode: ours, the ceiling and the peer answer right, then interleaved rounds of each load level."""
    args, secs, rounds, job, tool = p.args, p.secs, p.rounds, p.job, p.tool
    checks: list[Check] = []
    ours = start_loader(procs, tmp, "once", job.wrapper, p.overrides)
    ours.name = "ours"
    workers = p.overrides.get("aiges", {}).get("workers", "1")
    if job.name == "catboost":
        prepare_catboost(job, ours)
        what = "one JSON record (base64 in the envelope) -> the wrapper's CatBoost predict -> its JSON answer"
    else:
        what = f"base64 text -> {job.wrapper.name} wrapper -> text echoed"
    lane = str(p.overrides.get("aiges", {}).get("lane", "true")).lower() not in ("false", "0")
    link = "on the lane (one unix socket per worker)" if lane else "over gRPC (one call per request)"
    ours.does = (f"aiges loader (aiohttp) + {workers} plugin process(es) {link}, POST /v1/svcName upstream "
                 f"envelope, {what}, JSON envelope answer; access log and metrics on (defaults)")
    if job.name == "echo" and job.wrapper == DEFAULT_ONCE_WRAPPER:
        with HttpClient(ours.url) as c:  # the answer is right before we count answers
            try:
                answer = c.once({"text": TEXT})
            except ClientError as e:
                raise SystemExit(f"bench: {job.wrapper} answers the benchmark request with an error: "
                                 f"{e}") from None
            if answer["result"] != TEXT.decode():
                raise SystemExit(f"bench: echo answered {answer['result']!r}, not the text it was sent")
    servers = [ours]
    if p.ceiling:
        servers.append(start_ceiling(procs, tmp))
    if p.peer is not None and p.prepared is not None:
        servers.append(p.peer.start(procs, tmp, p.prepared, job, p.peer_settings))
    peer_hint = p.peer.batching_hint(p.peer_settings) if p.peer is not None and p.prepared is not None else ""
    print(f"job {job.name}: {job.note or job.wrapper}")
    if job.name == "catboost" and not args.no_ceiling:
        print("  (no ceiling for this job: the ceiling prototype only echoes)")
    if job.name == "echo" and job.wrapper != DEFAULT_ONCE_WRAPPER and p.prepared is not None:
        print(f"  note: the peer runs the echo runtime, not {job.wrapper}")
    print("what each system does per request:")
    for s in servers:
        print(f"  {s.name:8s} {s.url} pids {s.pids}\n           {s.does}")
    for line in check_answers(job, servers):
        print(line)
    once_res: dict[str, Any] = {"systems": {s.name: {"url": s.url, "does": s.does} for s in servers},
                                "job_note": job.note}
    results["once"] = once_res
    for s in servers:  # warm-up: connection setup, first-call paths, allocator
        load(s, 32, 1, tool, tmp)
    if p.rates:
        errors = 0
        once_res["open"] = {}
        for rate in p.rates:
            print(f"open loop at {rate:g} req/s, {rounds} round(s) interleaved "
                  f"({', '.join(s.name for s in servers)}):")
            by: dict[str, list[OpenRun]] = {s.name: [] for s in servers}
            for _ in range(rounds):
                for s in servers:
                    r = with_batches(s, functools.partial(run_open, s, rate, secs, p.conns))
                    by[s.name].append(r)
                    print(fmt_open(r))
            for line in summarize_open(rate, by) + batching_note(by["ours"], peer_hint):
                print(line)
            once_res["open"][f"{rate:g}"] = {k: [asdict(r) for r in v] for k, v in by.items()}
            errors += sum(r.errors for r in by["ours"])
        checks += open_checks(errors)
    else:
        print("once mode, closed loop:")
        c1 = []
        for s in servers:
            c1.append(with_batches(s, functools.partial(load, s, 1, secs, tool, tmp)))
            print(fmt_run(c1[-1]))
        c32: dict[str, list[Run]] = {s.name: [] for s in servers}
        for _ in range(rounds):
            for s in servers:
                c32[s.name].append(with_batches(s, functools.partial(load, s, 32, secs, tool, tmp)))
                print(fmt_run(c32[s.name][-1]))
        for line in summarize_closed(c32) + batching_note(c32["ours"], peer_hint):
            print(line)
        a_runs = c32["ours"]
        once_res["c1"] = [asdict(r) for r in c1]
        for name, rs in c32.items():
            once_res[f"c32_{name}"] = [asdict(r) for r in rs]
            if name != "ours":
                key = "ratios" if name == "ceiling" else f"ratios_{name}"
                once_res[key] = [a.rps / b.rps for a, b in zip(a_runs, rs, strict=False) if b.rps]
        checks += closed_checks(job.name, c1, a_runs, once_res.get("ratios") or [])
    if args.profile:
        print(f"profiling loader and plugin at c=32 for {secs:g} s (py-spy --gil --nonblocking), "
              f"Python CPU per request:")
        results["profile_once"] = prof = profile(
            ours, secs, args.profile, lambda: load(ours, 32, secs, tool, tmp).requests, "once")
        for line in fmt_profile(prof):
            print(line)
    for s in reversed(servers):  # free the CPU for the stream run
        for proc in s.procs:
            procs.stop(proc)
    return checks


def run_stream_mode(p: Plan, procs: Procs, tmp: Path, results: dict[str, Any]) -> list[Check]:
    """Stream mode: our loader with the streaming echo wrapper, many ping-pong sessions at once."""
    args, secs = p.args, p.secs
    st: Server = start_loader(procs, tmp, "stream", args.stream_wrapper.resolve(), p.overrides)
    print(f"stream mode: {st.url} (pids {st.pids}, wrapper {args.stream_wrapper}), {args.sessions} sessions "
          f"x up to {args.frames} frames, ping-pong per session, Python client (aiges.client.StreamSession)"
          + ("; ours only (the peer has no WebSocket sessions to compare)" if args.peer else ""))
    new_loop().run_until_complete(stream_load(st.url.replace("http", "ws", 1), 4, 5, 0.5))  # warm-up
    sr = run_stream(st, args.sessions, args.frames, secs)
    for line in fmt_stream(sr):
        print(line)
    results["stream"] = asdict(sr)
    checks = stream_checks(args.sessions, sr)
    if args.profile:
        print(f"profiling loader and plugin during {args.sessions} sessions for {secs:g} s "
              f"(py-spy --gil --nonblocking), Python CPU per frame:")
        results["profile_stream"] = prof = profile(
            st, secs, args.profile, lambda: run_stream(st, args.sessions, args.frames, secs).frames, "stream")
        for line in fmt_profile(prof):
            print(line)
    for proc in st.procs:  # free the CPU for what follows
        procs.stop(proc)
    if args.realtime:
        checks += run_realtime_mode(p, procs, tmp, results)
    if args.idle:
        checks += run_idle_mode(p, procs, tmp, results)
    return checks


def run_realtime_mode(p: Plan, procs: Procs, tmp: Path, results: dict[str, Any]) -> list[Check]:
    """Real-time audio sessions against the VAD wrapper, then the largest N that holds p99 <= 50 ms."""
    args = p.args
    st = start_loader(procs, tmp, "realtime", VAD_WRAPPER, p.overrides)
    print(f"real-time sessions: {st.url} (pids {st.pids}, wrapper {VAD_WRAPPER.relative_to(ROOT)}), "
          f"{args.realtime_seconds:g} s of 16 kHz PCM per session, 40 ms frames every 40 ms, latency from each "
          f"frame's scheduled send time; search from N={args.realtime}, at most {args.realtime_steps} step(s)")
    runs, best = search(st, args.realtime, args.realtime_steps, args.realtime_seconds,
                        lambda r: print("\n".join(fmt_realtime(r))))
    print(f"  largest N holding p99 <= 50 ms with no error: {best if best else 'none of the N tried'}")
    results["realtime"] = {"runs": [asdict(r) for r in runs], "largest_ok": best}
    for proc in st.procs:
        procs.stop(proc)
    return realtime_checks(best)


def run_idle_mode(p: Plan, procs: Procs, tmp: Path, results: dict[str, Any]) -> list[Check]:
    """Idle sessions: RSS per open session, then sessionTimeout closes and destroys every one."""
    args = p.args
    log = tmp / "idle-destroyed.log"
    overrides = {k: dict(v) for k, v in p.overrides.items()}
    overrides.setdefault("ws", {}).update({"sessionTimeout": f"{args.idle_timeout:g}",
                                           "readTimeout": f"{args.idle_timeout + 120:g}"})
    st = start_loader(procs, tmp, "idle", VAD_WRAPPER, overrides, env={"VAD_DESTROY_LOG": str(log)})
    print(f"idle sessions: {st.url} (pids {st.pids}), {args.idle} sessions each sending one frame then waiting; "
          f"[ws] sessionTimeout = {args.idle_timeout:g} s ends them")
    r = run_idle(st, args.idle, args.idle_timeout, log)
    for line in fmt_idle(r):
        print(line)
    results["idle"] = asdict(r)
    for proc in st.procs:
        procs.stop(proc)
    return idle_checks(r)
