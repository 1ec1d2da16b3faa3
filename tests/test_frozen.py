"""A frozen worker (SIGSTOP) is noticed by readiness at once and killed at the 3rd missed check.

Before (issue 18, item 2): each health check slept ``livenessInterval`` and then waited up to
``livenessInterval`` for its answer, so the kill came at about six intervals (30 s at the default
5 s) instead of the README's "3 missed health checks", /ready said 200 all along and every
request sent to the frozen worker waited for its deadline.  Now: one check per interval, each
bounded by it; from the first miss the worker takes no new requests (503/12503 at once, naming
it) and /ready answers 503; the kill comes at the 3rd miss; /metrics counts it.
"""
from __future__ import annotations

import base64
import json
import os
import signal
import time
from pathlib import Path

from tests.test_faults import Load, show
from tests.utils import ROOT, WRAPPERS, alive, once_body, sigkill, start_loader, wait_until

HI = base64.b64encode(b"hi").decode()


def metric(text: bytes, name: str) -> float:
    for line in text.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} is not in /metrics")


def test_a_frozen_worker_is_unready_at_once_and_killed_at_the_third_missed_check(tmp_path: Path) -> None:
    """SIGSTOP the only worker (livenessInterval 1 s): within two intervals /ready is 503 with
    ``unresponsive: 1`` and a request gets 503/12503 at once (not a wait for its deadline); the
    worker is killed within four intervals of the freeze (3 missed checks, each bounded by the
    interval), restarted, and serves again; the misses are in /metrics."""
    interval = 1.0
    loader = start_loader(tmp_path, WRAPPERS / "faulty", aiges=f"livenessInterval = {interval:g}\ndeadline = 30")
    body = once_body("faulty", {"text": {"text": HI}})
    [plugin] = loader.plugin_pids()
    try:
        assert loader.post("/v1/svcName", body)[0] == 200
        frozen_at = time.monotonic()
        os.kill(plugin, signal.SIGSTOP)
        assert wait_until(lambda: loader.get("/ready")[0] == 503, 2 * interval + 0.5, 0.05), "/ready stayed 200"
        status, _, ready = loader.get("/ready")
        assert status == 503 and ready["unresponsive"] == 1 and ready["ready"] == 0, ready
        t = time.monotonic()
        status, headers, resp = loader.post("/v1/svcName", body, timeout=10)
        assert time.monotonic() - t < 0.5, "a request waited for the frozen worker"
        assert status == 503 and resp["header"]["code"] == 12503 and "health checks" in resp["header"]["message"]
        assert headers.get("Retry-After") == "1"
        assert metric(loader.get("/metrics")[2], "aiges_workers_unresponsive") == 1
        assert wait_until(lambda: not alive(plugin), 4 * interval + 1.0, 0.02), "frozen worker not killed"
        killed_after = time.monotonic() - frozen_at
        assert killed_after <= 4 * interval + 0.5, f"killed {killed_after:.2f}s after the freeze"
        assert wait_until(lambda: loader.get("/ready")[0] == 200, 20)
        assert loader.post("/v1/svcName", body)[0] == 200
        text = loader.get("/metrics")[2]
        assert metric(text, "aiges_workers_unresponsive") == 0
        assert metric(text, "aiges_worker_health_misses_total") >= 3
        assert metric(text, "aiges_worker_restarts_total") == 1
    finally:
        sigkill(plugin)
        loader.stop()


def test_sigstop_under_load_answers_stay_fast_and_ready_tells(tmp_path: Path) -> None:
    """16 connections of load on the demo, then SIGSTOP of its worker (livenessInterval 0.5 s,
    deadline 10 s): every request is answered 200 or 503/12503, none waits for its deadline (the
    ones in flight at the freeze until the kill, the rest at once), /ready says 503 during the
    freeze, the worker is killed and replaced, and serving resumes."""
    interval, deadline = 0.5, 10.0
    loader = start_loader(tmp_path, ROOT / "examples" / "demo",
                          aiges=f"livenessInterval = {interval:g}\ndeadline = {deadline:g}")
    [plugin] = loader.plugin_pids()
    request = json.dumps(once_body("demo", {"text": {"text": HI}}, {"mode": "upper"})).encode()
    try:
        readiness: list[tuple[float, int]] = []
        with Load(loader.port, lambda i: request, timeout=deadline + 5, limit=30) as load:
            time.sleep(1.0)
            frozen_at = time.monotonic()
            os.kill(plugin, signal.SIGSTOP)
            end = frozen_at + 4 * interval + 8
            while time.monotonic() < end and (loader.plugin_pids() in ([plugin], []) or
                                              loader.get("/ready")[0] != 200):
                readiness.append((time.monotonic() - frozen_at, loader.get("/ready")[0]))
                time.sleep(0.05)
            replaced = loader.plugin_pids() not in ([plugin], [])
            t_back = time.monotonic()
            resumed = wait_until(lambda: any(r.status == 200 and r.sent > t_back for r in list(load.results)), 5)
        first_503 = next((t for t, s in readiness if s == 503), None)
        text = show("SIGSTOP under load", load, f"/ready 503 {first_503 and round(first_503, 2)}s after the freeze; "
                                                f"replaced: {replaced}")
        assert replaced and resumed, text
        assert first_503 is not None and first_503 <= 2 * interval + 0.5, text
        assert set(load.counts()) <= {"200", "503/12503"}, text
        assert max(r.took for r in load.results) < 4 * interval + 1.5, text
    finally:
        sigkill(plugin)
        loader.stop()
