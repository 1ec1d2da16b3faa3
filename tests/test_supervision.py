"""Plugin supervision with real processes: crash → 503 at once → restart; loader death; drain; init failures."""
from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.utils import (
    ROOT,
    WRAPPERS,
    Loader,
    alive,
    child_pids,
    http,
    once_body,
    sigkill,
    start_loader,
    wait_until,
    write_config,
)


def body(ctrl: str = "ok", sleep: float = 0) -> dict:
    return once_body("faulty", {"text": {"text": base64.b64encode(b"hi").decode()}}, {"ctrl": ctrl, "sleep": sleep})


def test_plugin_killed_mid_request_then_restarted(tmp_path: Path) -> None:
    """A request in flight when the worker dies gets 503 at once; the worker comes back; the next
    request succeeds; the restart is counted in /metrics."""
    loader = start_loader(tmp_path, WRAPPERS / "faulty")
    try:
        [plugin] = loader.plugin_pids()
        result: dict = {}

        def slow() -> None:
            t = time.monotonic()
            result["r"] = loader.post("/v1/svcName", body(sleep=30))
            result["t"] = time.monotonic() - t

        th = threading.Thread(target=slow)
        th.start()
        time.sleep(0.5)
        os.kill(plugin, signal.SIGKILL)
        th.join(10)
        status, hdrs, resp = result["r"]
        assert status == 503 and resp["header"]["code"] == 12503, resp
        assert "Retry-After" in hdrs
        assert result["t"] < 2.0
        assert wait_until(lambda: loader.get("/ready")[0] == 200, 20)
        [new_plugin] = loader.plugin_pids()
        assert new_plugin != plugin
        status, _, resp = loader.post("/v1/svcName", body())
        assert status == 200 and resp["payload"]["result"]["text"] == "hi"
        assert b"aiges_worker_restarts_total 1.0" in loader.get("/metrics")[2]
        # a wrapper that kills its own process: same story
        status, _, resp = loader.post("/v1/svcName", body("crash"))
        assert status == 503 and resp["header"]["code"] == 12503
        assert wait_until(lambda: loader.get("/ready")[0] == 200, 20)
        assert loader.post("/v1/svcName", body())[0] == 200
    finally:
        assert loader.stop() == 0


def test_loader_sigkill_takes_plugin_down(tmp_path: Path) -> None:
    loader = start_loader(tmp_path, WRAPPERS / "faulty")
    [plugin] = loader.plugin_pids()
    os.kill(loader.pid, signal.SIGKILL)
    loader.proc.wait()
    assert wait_until(lambda: not alive(plugin), 2.0), "plugin outlived its loader by more than 2 s"


def test_loader_sigkill_during_a_running_call_takes_plugin_down(tmp_path: Path) -> None:
    """The plugin does not wait for a wrapper call that is still running (a hung model) when its
    parent is gone: it is down within 2 s plus its short orphan grace."""
    loader = start_loader(tmp_path, WRAPPERS / "faulty")
    [plugin] = loader.plugin_pids()
    def call() -> None:
        try:
            loader.post("/v1/svcName", body(sleep=30))
        except OSError:  # the loader is killed under it: expected
            pass

    th = threading.Thread(target=call, daemon=True)
    th.start()
    time.sleep(0.5)
    os.kill(loader.pid, signal.SIGKILL)
    loader.proc.wait()
    assert wait_until(lambda: not alive(plugin), 3.5), "plugin waited for its running call after its loader died"


def test_wrapper_calling_sys_exit_is_an_error_not_a_dead_worker(tmp_path: Path) -> None:
    loader = start_loader(tmp_path, WRAPPERS / "faulty")
    try:
        [plugin] = loader.plugin_pids()
        status, _, resp = loader.post("/v1/svcName", body("sysexit"))
        assert status == 500 and resp["header"]["code"] == 10909
        assert "SystemExit" in resp["header"]["message"] and "wrapper.py:" in resp["header"]["message"]
        assert loader.plugin_pids() == [plugin] and loader.post("/v1/svcName", body())[0] == 200
    finally:
        loader.stop()


def test_sigterm_drains_in_flight_requests_and_calls_fini(tmp_path: Path) -> None:
    marker = tmp_path / "fini.txt"
    loader = start_loader(tmp_path, WRAPPERS / "faulty", aiges="workerThreads = 8",
                          env={"FAULTY_FINI_MARKER": str(marker)})
    [plugin] = loader.plugin_pids()
    results: list = []

    def call() -> None:
        results.append(loader.post("/v1/svcName", body(sleep=1.0)))

    threads = [threading.Thread(target=call) for _ in range(6)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    loader.proc.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(15)
    assert [r[0] for r in results] == [200] * 6, results
    assert loader.proc.wait(15) == 0
    assert not alive(plugin)
    assert marker.read_text() == "fini called"


def test_init_failure_is_one_clear_line_and_exit_1(tmp_path: Path) -> None:
    loader = start_loader(tmp_path, WRAPPERS / "init_fail", expect_fail=True)
    assert loader.proc.wait(20) == 1
    err = loader.stderr()
    lines = [ln for ln in err.splitlines() if "cannot start the wrapper" in ln]
    assert len(lines) == 1, err
    assert "init_fail/wrapper.py" in lines[0] and "FileNotFoundError" in lines[0] and "model.bin" in lines[0]
    assert not child_pids(loader.pid)


def test_import_failure_names_file_and_exception(tmp_path: Path) -> None:
    loader = start_loader(tmp_path, WRAPPERS / "import_fail", expect_fail=True)
    assert loader.proc.wait(20) == 1
    line = next(ln for ln in loader.stderr().splitlines() if "cannot start the wrapper" in ln)
    assert "wrapper.py" in line and "ModuleNotFoundError" in line and "a_module_that_does_not_exist" in line


def test_keep_serving_503_when_configured(tmp_path: Path) -> None:
    loader = start_loader(tmp_path, WRAPPERS / "init_fail", aiges="exitOnInitFailure = false\nrestartBackoffMax = 0.5")
    try:
        status, _, resp = loader.get("/ready")
        assert status == 503 and resp["status"] == "NOT_READY"
        status, hdrs, resp = loader.post("/v1/svcName", body())
        assert status == 503 and resp["header"]["code"] == 12503 and "Retry-After" in hdrs
    finally:
        assert loader.stop() == 0


@pytest.mark.parametrize("fails", ["init", "import"])
def test_wrapper_ready_later_gets_its_params_validation_and_docs(tmp_path: Path, fails: str) -> None:
    """exitOnInitFailure = false and a wrapper failing at start, in wrapperInit (its schema is still
    read) or at import (no schema at all): once a restart succeeds, its parameter section,
    validation and OpenAPI apply; its own route too when the schema was known at start (else the
    route table, fixed once serving, needs a restart, which is logged)."""
    flag = tmp_path / "not-yet"
    flag.write_text("")
    env_key = "FAULTY_INIT_FAIL_WHILE" if fails == "init" else "FAULTY_IMPORT_FAIL_WHILE"
    loader = start_loader(tmp_path, WRAPPERS / "faulty", aiges="exitOnInitFailure = false\nrestartBackoffMax = 0.3",
                          env={env_key: str(flag)})
    try:
        assert loader.get("/ready")[0] == 503
        flag.unlink()
        assert wait_until(lambda: loader.get("/ready")[0] == 200, 20)
        route = "/v1/private/faulty" if fails == "init" else "/v1/svcName"
        status, _, resp = loader.post(route, body("params"))
        assert status == 200, resp
        assert json.loads(resp["payload"]["result"]["text"])["params"]["ctrl"] == "params"
        status, _, resp = loader.post("/v1/svcName", body(sleep=1000))
        assert status == 400 and "parameter.faulty.sleep" in resp["header"]["message"]
        paths = loader.get("/openapi.json")[2]["paths"]
        assert "/v1/svcName" in paths and ("/v1/private/faulty" in paths) == (fails == "init")
        if fails == "import":
            assert "restart" in (loader.log_dir / "app.log").read_text()
    finally:
        assert loader.stop() == 0


def test_init_timeout_names_the_setting(tmp_path: Path) -> None:
    loader = start_loader(tmp_path, WRAPPERS / "faulty", aiges="initTimeout = 1",
                          env={"FAULTY_INIT_SLEEP": "3"}, expect_fail=True)
    assert loader.proc.wait(20) == 1
    line = next(ln for ln in loader.stderr().splitlines() if "cannot start the wrapper" in ln)
    assert "initTimeout" in line and "wrapperInit" in line


def test_sigterm_while_the_wrapper_is_loading_stops_at_once(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, WRAPPERS / "faulty")
    env = dict(os.environ, FAULTY_INIT_SLEEP="30", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "aiges", "-m", "0", "-c", str(cfg)], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_until(lambda: bool(child_pids(proc.pid)), 10)
        [plugin] = child_pids(proc.pid)
        time.sleep(1.0)  # the plugin is in wrapperInit's 30 s sleep
        t = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert time.monotonic() - t < 5
        assert wait_until(lambda: not alive(plugin), 3)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_chatty_wrapper_never_blocks(tmp_path: Path) -> None:
    """2,000 stdout + stderr lines per request: the loader drains them into app.log."""
    loader = start_loader(tmp_path, WRAPPERS / "faulty")
    try:
        for _ in range(3):
            status, _, _ = loader.post("/v1/svcName", body("print"), timeout=20)
            assert status == 200
        assert wait_until(lambda: "chatty wrapper line 1999" in (loader.log_dir / "app.log").read_text(), 5)
    finally:
        loader.stop()


@pytest.mark.parametrize("workers", [2])
def test_several_workers_share_load(tmp_path: Path, workers: int) -> None:
    loader = start_loader(tmp_path, WRAPPERS / "faulty", aiges=f"workers = {workers}\nworkerThreads = 1")
    try:
        assert len(loader.plugin_pids()) == workers
        results: list = []
        threads = [threading.Thread(target=lambda: results.append(loader.post("/v1/svcName", body(sleep=0.5))))
                   for _ in range(4)]
        t = time.monotonic()
        for th in threads:
            th.start()
        for th in threads:
            th.join(10)
        # 4 calls of 0.5 s on 2 single-thread workers: ~1 s, not 2 s
        assert time.monotonic() - t < 1.8
        assert all(r[0] == 200 for r in results)
    finally:
        loader.stop()


def test_frozen_worker_is_detected_and_restarted(tmp_path: Path) -> None:
    """A worker that stops answering (SIGSTOP here; a deadlocked loop in life) is killed after 3
    missed health checks and restarted; requests work again."""
    loader = start_loader(tmp_path, WRAPPERS / "faulty", aiges="livenessInterval = 0.3")
    try:
        [plugin] = loader.plugin_pids()
        os.kill(plugin, signal.SIGSTOP)
        assert wait_until(lambda: loader.plugin_pids() not in ([plugin], []), 10), "frozen worker not replaced"
        assert wait_until(lambda: loader.get("/ready")[0] == 200, 20)
        assert loader.post("/v1/svcName", body())[0] == 200
    finally:
        sigkill(plugin)
        loader.stop()


def _helper_pid(loader: Loader) -> int:
    status, _, resp = loader.post("/v1/svcName", once_body("spawner", {"text": {"text": "cGlkPw=="}}))
    assert status == 200, resp
    return int(resp["payload"]["result"]["text"])


def test_no_wrapper_child_outlives_its_plugin(tmp_path: Path) -> None:
    """A wrapper that starts a helper process: when its worker is killed -9 the loader ends the
    helper with it (and the restarted worker starts a new one); when the loader is killed -9 the
    orphaned plugin ends its helper on the way out; a normal stop ends it too."""
    loader = start_loader(tmp_path, WRAPPERS / "spawner")
    try:
        helper = _helper_pid(loader)
        [plugin] = loader.plugin_pids()
        os.kill(plugin, signal.SIGKILL)
        assert wait_until(lambda: not alive(helper), 3.0), "the helper outlived its killed worker"
        assert wait_until(lambda: http("GET", loader.url + "/ready")[0] == 200, 15)
        helper = _helper_pid(loader)
        [plugin] = loader.plugin_pids()
        os.kill(loader.pid, signal.SIGKILL)
        loader.proc.wait()
        assert wait_until(lambda: not alive(plugin) and not alive(helper), 3.0), \
            "the plugin or its wrapper's helper outlived the killed loader"
    finally:
        loader.stop()
    loader = start_loader(tmp_path / "again", WRAPPERS / "spawner")
    helper = _helper_pid(loader)
    assert loader.stop() == 0
    assert wait_until(lambda: not alive(helper), 3.0), "the helper outlived a normal stop"
