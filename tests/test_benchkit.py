"""The benchmark package scripts/benchkit: its command line, peer registry, process handling and report."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.utils import ROOT

sys.path.insert(0, str(ROOT / "scripts"))

from benchkit import cli  # noqa: E402
from benchkit.loadgen.closed import Run  # noqa: E402
from benchkit.peers import PEERS  # noqa: E402
from benchkit.procs import Procs, children  # noqa: E402
from benchkit.report import summarize_closed  # noqa: E402
from benchkit.systems import wait_serving  # noqa: E402

OPTIONS = ["--mode", "--job", "--peer", "--peer-set", "--rate", "--open-conns", "--duration", "--quick", "--rounds",
           "--pairs", "--sessions", "--realtime", "--realtime-steps", "--realtime-seconds", "--idle", "--idle-timeout",
           "--frames", "--workers", "--set", "--wrapper", "--model", "--stream-wrapper", "--no-wrk", "--no-ceiling",
           "--profile", "--json", "--check"]


def test_help_lists_every_option() -> None:
    out = subprocess.run([str(ROOT / "scripts" / "bench"), "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: scripts/bench ")
    for option in OPTIONS:
        assert f"{option} " in out.stdout or f"{option}\n" in out.stdout, option
    assert "--peer {mlserver}" in out.stdout


def test_bad_options_name_the_option() -> None:
    with pytest.raises(SystemExit, match="--rate expects numbers"):
        cli.plan(["--rate", "fast"])
    with pytest.raises(SystemExit, match="--rate takes 1 to 5 rates"):
        cli.plan(["--rate", "0"])


def test_peers_are_found_by_module_name() -> None:
    peer = PEERS["mlserver"]
    assert peer.NAME == "mlserver" and "MLServer" in peer.HELP
    assert "adaptive batching is off" in peer.batching_hint({})
    assert peer.batching_hint({"model.max_batch_size": 64}) == ""


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_procs_stops_a_process_and_its_adopted_child(tmp_path: Path) -> None:
    code = ("import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
            "print('started', flush=True); time.sleep(60)")
    procs = Procs()
    kids: list[int] = []
    p = procs.start([sys.executable, "-c", code], tmp_path / "out.log")
    try:
        deadline = time.monotonic() + 20
        while not children(p.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        kids = children(p.pid)
        assert len(kids) == 1
        procs.adopt(kids[0], p.pid)
        assert procs.stop(p, grace=5) != 0  # SIGTERM
        deadline = time.monotonic() + 10
        while _alive(kids[0]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(kids[0])
    finally:
        procs.stop_all()
    for pid in kids:
        if _alive(pid):
            os.kill(pid, 9)


def test_wait_serving_reads_the_line_or_sees_the_exit(tmp_path: Path) -> None:
    procs = Procs()
    try:
        log = tmp_path / "serving.log"
        p = procs.start([sys.executable, "-c", "import time; print('serving svc on http://127.0.0.1:4321', "
                         "flush=True); time.sleep(30)"], log)
        m = wait_serving(p, log, 20)
        assert m is not None and m.group(1) == "http://127.0.0.1:4321" and m.group(2) == "4321"
        log2 = tmp_path / "exits.log"
        q = procs.start([sys.executable, "-c", "raise SystemExit(3)"], log2)
        t0 = time.monotonic()
        assert wait_serving(q, log2, 20) is None
        assert q.returncode == 3 and time.monotonic() - t0 < 10
    finally:
        procs.stop_all()


def test_closed_summary_gives_medians_and_per_round_ratios() -> None:
    def run(name: str, rps: float) -> Run:
        return Run(name, "python-aiohttp", 32, 3.0, int(rps * 3), 0, rps, 5.0, 9.0, {"loader": 0.1})

    lines = summarize_closed({"ours": [run("ours", 4000), run("ours", 6000)],
                              "ceiling": [run("ceiling", 2000), run("ceiling", 2000)]})
    assert lines[0].startswith("summary at c=32, medians of 2 interleaved round(s)")
    assert lines[2].split()[:2] == ["ours", "5000"]
    assert lines[3].split()[:2] == ["ceiling", "2000"] and lines[3].endswith("2.50 (2.00, 3.00)")


def test_realtime_and_idle_sessions_against_a_real_loader(tmp_path: Path) -> None:
    """The session loads on a real loader (tests/wrappers/vad_stream): 3 real-time sessions for 1 s
    of audio get every result, latency counted; then 20 idle sessions are opened, counted open, and
    a 3 s sessionTimeout closes and destroys every one of them (the counts, not a sleep)."""
    from benchkit.common import VAD_WRAPPER
    from benchkit.loadgen.idle import count_lines, run_idle
    from benchkit.loadgen.realtime import FRAME_BYTES, pcm_frames, run_realtime
    from benchkit.systems import start_loader

    assert FRAME_BYTES == 1280 and all(len(f) == FRAME_BYTES for f in pcm_frames())
    procs = Procs()
    log = tmp_path / "destroyed.log"
    try:
        st = start_loader(procs, tmp_path, "rt", VAD_WRAPPER, {"ws": {"sessionTimeout": "3", "readTimeout": "30"}},
                          env={"VAD_DESTROY_LOG": str(log)})
        r = run_realtime(st, 3, 1.0)
        assert (r.opened, r.completed, r.errors, r.sent, r.results) == (3, 3, 0, 75, 75), r
        assert 0 < r.p50_ms <= r.p99_ms <= r.max_ms and r.cpu_ms_per_frame["loader"] > 0
        deadline = time.monotonic() + 10
        while count_lines(log) < 3 and time.monotonic() < deadline:  # the real-time sessions' destroys
            time.sleep(0.05)
        assert count_lines(log) == 3
        idle = run_idle(st, 20, 3.0, log)
        assert (idle.opened, idle.open_errors, idle.active_when_open) == (20, 0, 20), idle
        assert (idle.timeout_frames, idle.closed, idle.destroyed, idle.active_after) == (20, 20, 20, 0), idle
        assert idle.end_seconds < 6
    finally:
        procs.stop_all()
