"""Report: the machine's state, one line per run, the medians of interleaved rounds, the JSON results file."""
from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from .common import LOADGEN
from .loadgen.closed import Run
from .loadgen.idle import IdleRun
from .loadgen.openloop import OpenRun
from .loadgen.realtime import RealtimeRun
from .loadgen.stream import StreamRun
from .procs import all_cpu, cmdline


def machine_state(sample: float = 1.0) -> list[str]:
    """Load average and the processes busy right now (CPU measured over ``sample`` seconds)."""
    load1, load5, load15 = os.getloadavg()
    lines = [f"machine: {os.cpu_count()} CPUs, load average {load1:.2f} {load5:.2f} {load15:.2f}, "
             f"python {sys.version.split()[0]}"]
    if sample > 0:
        before = all_cpu()
        time.sleep(sample)
        after = all_cpu()
        busy = sorted(((after[p] - before.get(p, 0.0), p) for p in after if p != os.getpid()), reverse=True)
        busy = [(c, p) for c, p in busy if c / sample >= 0.02][:6]
        lines.append(f"processes using CPU (over {sample:g} s): " + ("none above 2%" if not busy else ""))
        lines += [f"  {100 * c / sample:5.1f}%  pid {p:<7d} {cmdline(p)[:120]}" for c, p in busy]
    return lines


def server_cpu(per_unit: dict[str, float]) -> float:
    """CPU ms per request of the system under test: all its processes, not the load generator."""
    return sum(v for k, v in per_unit.items() if k != LOADGEN)


def fmt_cpu(per_unit: dict[str, float], other: float, steal: float) -> str:
    cpu = ", ".join(f"{k} {v:.3f}" for k, v in per_unit.items())
    return (f"{server_cpu(per_unit):.3f} ({cpu}); other processes {other:.0f}% of a core"
            + (f", steal {steal:.0f}%" if steal >= 1 else ""))


def fmt_run(r: Run) -> str:
    return (f"  {r.server:8s} c={r.concurrency:<3d} {r.rps:9.0f} req/s  p50 {r.p50_ms:7.2f} ms  p99 {r.p99_ms:7.2f} ms"
            f"  errors {r.errors:<4d} n={r.requests:<7d}{fmt_batch(r.batch_mean)} CPU ms/req: "
            f"{fmt_cpu(r.cpu_ms_per_req, r.other_cpu_pct, r.steal_pct)}")


def fmt_batch(mean: float | None) -> str:
    return f"  batch {mean:.1f}" if mean is not None else ""


def fmt_open(r: OpenRun) -> str:
    kinds = (" (" + ", ".join(f"{k} {v}" for k, v in r.error_kinds.items()) + ")") if r.error_kinds else ""
    return (f"  {r.server:8s} {r.rate:6.0f}/s offered {r.achieved_rps:7.0f}/s answered  p50 {r.p50_ms:7.2f}"
            f"  p99 {r.p99_ms:7.2f}  max {r.max_ms:7.2f} ms  errors {r.errors}{kinds}  client late p50/p99/max "
            f"{r.late_p50_ms:.2f}/{r.late_p99_ms:.2f}/{r.late_max_ms:.2f} ms  n={r.ok}{fmt_batch(r.batch_mean)}  CPU ms/req: "
            f"{fmt_cpu(r.cpu_ms_per_req, r.other_cpu_pct, r.steal_pct)}")


def fmt_stream(r: StreamRun) -> list[str]:
    return ([f"  {r.frames_per_s:9.0f} frames/s  p50 {r.p50_ms:7.2f} ms  p99 {r.p99_ms:7.2f} ms  "
             f"sessions {r.sessions_done}  frames {r.frames}  errors {r.errors}  CPU ms/frame: "
             f"{fmt_cpu(r.cpu_ms_per_frame, r.other_cpu_pct, r.steal_pct)}"]
            + [f"    error: {sample}" for sample in r.error_samples])


def fmt_realtime(r: RealtimeRun) -> list[str]:
    kinds = (" (" + ", ".join(f"{k} {v}" for k, v in r.error_kinds.items()) + ")") if r.error_kinds else ""
    return [f"  N={r.sessions:<5d} {'held' if r.ok else 'MISSED'}  sessions completed {r.completed}/{r.sessions}  "
            f"frames {r.sent} sent {r.results} results  errors {r.errors}{kinds}  latency from the scheduled send "
            f"p50 {r.p50_ms:.2f} p99 {r.p99_ms:.2f} max {r.max_ms:.2f} ms  client late p50/p99/max "
            f"{r.late_p50_ms:.2f}/{r.late_p99_ms:.2f}/{r.late_max_ms:.2f} ms",
            f"           CPU ms/frame: {fmt_cpu(r.cpu_ms_per_frame, r.other_cpu_pct, r.steal_pct)}"]


def fmt_idle(r: IdleRun) -> list[str]:
    kinds = (" (" + ", ".join(f"{k} {v}" for k, v in r.error_kinds.items()) + ")") if r.error_kinds else ""
    return [f"  opened {r.opened}/{r.sessions} sessions in {r.open_seconds:g} s, errors {r.open_errors}{kinds}; "
            f"aiges_sessions_active {r.active_when_open}",
            f"  RSS loader {r.loader_rss_mb[0]:.1f} -> {r.loader_rss_mb[1]:.1f} MiB ({r.loader_kb_per_session:.1f} KiB "
            f"per open session), worker {r.plugin_rss_mb[0]:.1f} -> {r.plugin_rss_mb[1]:.1f} MiB "
            f"({r.plugin_kb_per_session:.1f} KiB per open session)",
            f"  sessionTimeout {r.session_timeout:g} s: {r.timeout_frames} timeout frames (10114), {r.closed} closed, "
            f"{r.destroyed} wrapperDestroy, aiges_sessions_active {r.active_after}, all within {r.end_seconds:g} s "
            f"of the last open"]


def fmt_profile(prof: dict[str, list[str]]) -> list[str]:
    """py-spy's hot spots, by process."""
    return [line for name, lines in prof.items() for line in [f"  {name}:"] + [f"    {x}" for x in lines]]


def _med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def summarize_closed(runs: dict[str, list[Run]]) -> list[str]:
    ours = runs.get("ours", [])
    n = max((len(v) for v in runs.values()), default=0)
    lines = [f"summary at c=32, medians of {n} interleaved round(s); CPU = the system's own processes:",
             f"  {'system':8s} {'req/s':>7s} {'p50 ms':>8s} {'p99 ms':>8s} {'CPU ms/req':>10s}  ours/system per round"]
    for name, rs in runs.items():
        ratios = [a.rps / b.rps for a, b in zip(ours, rs, strict=False) if b.rps]
        ratio = ("-" if name == "ours" else
                 f"{_med(ratios):.2f} ({', '.join(f'{x:.2f}' for x in ratios)})" if ratios else "n/a")
        lines.append(f"  {name:8s} {_med([r.rps for r in rs]):7.0f} {_med([r.p50_ms for r in rs]):8.2f} "
                     f"{_med([r.p99_ms for r in rs]):8.2f} {_med([server_cpu(r.cpu_ms_per_req) for r in rs]):10.3f}"
                     f"  {ratio}")
    return lines


def summarize_open(rate: float, runs: dict[str, list[OpenRun]]) -> list[str]:
    n = max((len(v) for v in runs.values()), default=0)
    lines = [f"summary, open loop at {rate:g} req/s offered, medians of {n} interleaved round(s) "
             f"(max and errors over all rounds):",
             f"  {'system':8s} {'answered/s':>10s} {'p50 ms':>8s} {'p99 ms':>8s} {'max ms':>8s} {'errors':>6s} "
             f"{'late p99':>8s} {'CPU ms/req':>10s}"]
    for name, rs in runs.items():
        lines.append(f"  {name:8s} {_med([r.achieved_rps for r in rs]):10.0f} {_med([r.p50_ms for r in rs]):8.2f} "
                     f"{_med([r.p99_ms for r in rs]):8.2f} {max((r.max_ms for r in rs), default=0):8.2f} "
                     f"{sum(r.errors for r in rs):6d} {_med([r.late_p99_ms for r in rs]):8.2f} "
                     f"{_med([server_cpu(r.cpu_ms_per_req) for r in rs]):10.3f}")
    late = max((r.late_p99_ms for rs in runs.values() for r in rs), default=0.0)
    if late > 2.0:
        lines.append(f"  note: the client sent up to {late:.1f} ms late (p99 of its worst run; other load on the "
                     "machine counts too): these latencies include that delay")
    return lines


def batching_note(ours: list[Run] | list[OpenRun], peer_hint: str) -> list[str]:
    """Ours batches when the wrapper asks for it; say so, with the peer's hint when it was left without batching."""
    means = [r.batch_mean for r in ours if r.batch_mean is not None]
    if not means or max(means) < 1.5:
        return []
    line = f"  note: ours handed its worker batches of {_med(means):.1f} requests (median per run; the wrapper asks for it)"
    return [line + (f"; {peer_hint}" if peer_hint else "")]


def write_json(path: Path, results: dict[str, Any]) -> None:
    path.write_text(json.dumps(results, indent=2))
