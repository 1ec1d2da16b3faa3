"""Targets: the figures a run is checked against (2-core dev machine), each a PASS or FAIL line at the end."""
from __future__ import annotations

import statistics

from .common import LOADGEN
from .loadgen.closed import Run
from .loadgen.idle import IdleRun
from .loadgen.stream import StreamRun

TARGETS = {"rps_c32": 2500.0, "p50_c1_ms": 2.0, "ratio": 0.55, "frames_per_s": 7500.0, "cpu_ms_per_frame": 0.20,
           "realtime_sessions": 200}
Check = tuple[str, str, bool]  # (target, measured value, met)


def closed_checks(job: str, c1: list[Run], ours_c32: list[Run], ratios: list[float]) -> list[Check]:
    """Once mode, closed loop: the echo job's speed targets, and no errors in our runs (c1[0] is ours)."""
    checks: list[Check] = []
    rps32 = statistics.median(r.rps for r in ours_c32)
    errors = sum(r.errors for r in c1[:1] + ours_c32)
    if job == "echo":
        checks.append((f"c=32 echo >= {TARGETS['rps_c32']:.0f} req/s", f"{rps32:.0f} req/s",
                       rps32 >= TARGETS["rps_c32"]))
        checks.append((f"p50 at c=1 <= {TARGETS['p50_c1_ms']:g} ms", f"{c1[0].p50_ms:.2f} ms",
                       c1[0].p50_ms <= TARGETS["p50_c1_ms"]))
        if ratios:
            med = statistics.median(ratios)
            checks.append((f"ours/ceiling >= {TARGETS['ratio']:g}", f"{med:.2f} (median of {len(ratios)})",
                           med >= TARGETS["ratio"]))
    checks.append(("no errors in our once runs", str(errors), errors == 0))
    return checks


def open_checks(errors: int) -> list[Check]:
    return [("no errors in our open-loop runs", str(errors), errors == 0)]


def stream_checks(sessions: int, sr: StreamRun) -> list[Check]:
    cpu = sum(v for k, v in sr.cpu_ms_per_frame.items() if k != LOADGEN)
    return [(f"stream >= {TARGETS['frames_per_s']:.0f} frames/s ({sessions} sessions)",
             f"{sr.frames_per_s:.0f} frames/s", sr.frames_per_s >= TARGETS["frames_per_s"]),
            (f"stream <= {TARGETS['cpu_ms_per_frame']:g} CPU-ms per frame (loader + plugins)", f"{cpu:.3f}",
             cpu <= TARGETS["cpu_ms_per_frame"]),
            ("no errors in the stream run", str(sr.errors), sr.errors == 0)]


def realtime_checks(best: int) -> list[Check]:
    return [(f"real-time sessions at p99 <= 50 ms >= {TARGETS['realtime_sessions']}", str(best),
             best >= TARGETS["realtime_sessions"])]


def idle_checks(r: IdleRun) -> list[Check]:
    ended = min(r.timeout_frames, r.closed, r.destroyed)
    return [(f"{r.sessions} idle sessions open, no error", f"{r.opened} open, {r.open_errors} errors",
             r.opened == r.sessions and r.open_errors == 0),
            ("sessionTimeout ends and destroys every one", f"{ended} of {r.opened}",
             ended == r.opened and r.active_after == 0)]


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def fmt_checks(checks: list[Check]) -> list[str]:
    return ["targets (2-core dev machine):"] + [f"  {verdict(ok)}  {name:42s} {value}" for name, value, ok in checks]
