"""C engines that fail: crash, abort, exit and deadlock inside the library's entry points, a
library that cannot be loaded or lacks symbols, a failing wrapperInit.  A fault kills one plugin
worker (never the service): the request gets 503/12503 at once, the worker restarts, the log
shows where (faulthandler's trace naming the wrapper* call, or the exit code and the trace)."""
from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.c_engines.helpers import app_log, engine_dir, once, plugin_pid, restarted, start_c, stats
from tests.utils import Loader, start_loader, wait_until

RUNTIME = "workerThreads = 4\nrestartBackoffMax = 0.5\nlivenessInterval = 1"


@pytest.fixture(scope="module")
def sync_engine(c_build: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loader]:
    loader = start_c(tmp_path_factory.mktemp("c_faults"), c_build(), aiges=RUNTIME + "\nasyncMode = false")
    yield loader
    loader.stop()


@pytest.fixture(scope="module")
def async_engine(c_build: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loader]:
    loader = start_c(tmp_path_factory.mktemp("c_faults_async"), c_build(), aiges=RUNTIME + "\nasyncMode = true")
    yield loader
    loader.stop()


def _fault(loader: Loader, ctrl: str) -> str:
    """Send one request that faults; 503/12503 at once, worker back; returns what the log gained."""
    assert restarted(loader)
    pid = plugin_pid(loader)
    mark = len(app_log(loader))
    t = time.monotonic()
    status, doc = once(loader, {"ctrl": ctrl}, headers={"X-Aiges-Deadline": "10"})
    assert (status, doc["header"]["code"]) == (503, 12503), doc
    assert time.monotonic() - t < 2.5, "the request of a dead worker must fail at once"
    assert restarted(loader)
    assert plugin_pid(loader) != pid
    assert wait_until(lambda: "restarted (restart #" in app_log(loader)[mark:], 5)
    return app_log(loader)[mark:]


@pytest.mark.parametrize("ctrl, expect", [
    ("crash", "Fatal Python error: Segmentation fault"),
    ("abort", "Fatal Python error: Aborted"),
    ("exit", "the C library called exit(3)"),
])
def test_fault_in_wrapper_exec(sync_engine: Loader, ctrl: str, expect: str) -> None:
    log = _fault(sync_engine, ctrl)
    assert expect in log
    assert "in wrapperExec" in log  # the trace names the entry point being called
    assert "exited with code" in log


def test_crash_in_a_library_thread(sync_engine: Loader) -> None:
    log = _fault(sync_engine, "thread_crash")
    assert "Fatal Python error: Segmentation fault" in log


@pytest.mark.parametrize("ctrl, expect", [("crash", "Segmentation fault"), ("abort", "Aborted"),
                                          ("exit", "called exit(3)")])
def test_fault_in_wrapper_exec_async(async_engine: Loader, ctrl: str, expect: str) -> None:
    log = _fault(async_engine, ctrl)
    assert expect in log and "in wrapperExecAsync" in log


def test_deadlock_in_wrapper_exec_async_504(async_engine: Loader) -> None:
    assert restarted(async_engine)
    status, doc = once(async_engine, {"ctrl": "hang"}, headers={"X-Aiges-Deadline": "1"})
    assert (status, doc["header"]["code"]) == (504, 10102)
    assert once(async_engine, {"ctrl": "inline"})[0] == 200


def test_crash_in_the_callback_thread(async_engine: Loader) -> None:
    log = _fault(async_engine, "thread_crash")
    assert "Segmentation fault" in log


def test_deadlock_in_wrapper_exec_504_while_others_are_served(sync_engine: Loader) -> None:
    assert restarted(sync_engine)
    t = time.monotonic()
    status, doc = once(sync_engine, {"ctrl": "hang"}, headers={"X-Aiges-Deadline": "1"})
    assert (status, doc["header"]["code"]) == (504, 10102)
    assert 0.9 < time.monotonic() - t < 2.5
    status, doc = once(sync_engine, {"ctrl": "echo"})  # three threads left
    assert status == 200


def test_every_thread_deadlocked_gets_the_worker_replaced(c_build: Any, tmp_path: Path) -> None:
    loader = start_c(tmp_path, c_build(), aiges="workerThreads = 2\ndeadline = 1\nlivenessInterval = 0.5\n"
                                                "restartBackoffMax = 0.5\nasyncMode = false")
    try:
        pid = plugin_pid(loader)
        for _ in range(2):
            assert once(loader, {"ctrl": "hang"})[0] == 504
        assert wait_until(lambda: loader.plugin_pids() not in ([], [pid]), 10)
        assert restarted(loader)
    finally:
        loader.stop()


# ---------------------------------------------------------------- start-up failures
def _start_fails(tmp_path: Path, lib: Path | None = None, **kw: Any) -> str:
    if lib is None:
        loader = start_loader(tmp_path, kw.pop("wrapper_dir"), expect_fail=True, **kw)
    else:
        loader = start_c(tmp_path, lib, expect_fail=True, **kw)
    loader.proc.wait(30)
    assert loader.proc.returncode == 1, loader.stderr()
    return loader.stderr()


@pytest.mark.parametrize("how, expect", [
    ("crash", "Segmentation fault"), ("abort", "Aborted"), ("exit", "called exit(3)"), ("hang", "initTimeout")])
def test_fault_in_wrapper_init_fails_the_start_with_a_reason(c_build: Any, tmp_path: Path, how: str,
                                                              expect: str) -> None:
    err = _start_fails(tmp_path, c_build(), wrapper=f'init = "{how}"', aiges="initTimeout = 2")
    assert "cannot start the wrapper" in err and expect in err


def test_init_failure_code_and_text(c_build: Any, tmp_path: Path) -> None:
    err = _start_fails(tmp_path, c_build(), wrapper="fail = 7")
    assert "wrapperInit returned 7 (demo error 7: init refused by fail=7)" in err


def test_missing_exec_symbol_is_named_with_the_extern_c_hint(c_build: Any, tmp_path: Path) -> None:
    err = _start_fails(tmp_path, c_build(defines=("NO_EXEC",)), aiges="asyncMode = false")
    assert "does not export wrapperExec, wrapperExecFree (needed with [aiges] asyncMode = false)" in err
    assert "it has wrapperExecAsync: set [aiges] asyncMode = true" in err
    assert 'extern "C"' in err
    assert "Traceback" not in err


def test_cplusplus_without_extern_c(c_build: Any, tmp_path: Path) -> None:
    err = _start_fails(tmp_path, c_build("mangled.cpp", cxx=True))
    assert "does not export wrapperInit, wrapperExec, wrapperExecFree" in err and 'extern "C"' in err


def test_a_file_that_is_not_a_library(tmp_path: Path) -> None:
    d = tmp_path / "engine"
    d.mkdir()
    (d / "libwrapper.so").write_text("#!/bin/sh\necho not a library\n" + "#" * 1024)
    err = _start_fails(tmp_path / "run", wrapper_dir=d, env={"AIGES_PLUGIN_MODE": "c"})
    assert "cannot load the C library" in err and "invalid ELF header" in err
    assert "Traceback" not in err


def test_library_not_found_on_ld_library_path(tmp_path: Path) -> None:
    d = tmp_path / "empty"
    d.mkdir()
    err = _start_fails(tmp_path / "run", wrapper_dir=d, env={"AIGES_PLUGIN_MODE": "c", "LD_LIBRARY_PATH": str(d)})
    assert "cannot load the C library libwrapper.so" in err and "No such file" in err
    assert "LD_LIBRARY_PATH" in err


def test_wrapper_lib_path_that_does_not_exist_is_a_config_error(tmp_path: Path) -> None:
    d = tmp_path / "empty"
    d.mkdir()
    loader = start_loader(tmp_path / "run", d, aiges='wrapperLib = "build/libwrapper.so"', expect_fail=True)
    loader.proc.wait(30)
    assert loader.proc.returncode == 2
    assert "[aiges] wrapperLib: file" in loader.stderr() and "build/libwrapper.so does not exist" in loader.stderr()


def test_ld_library_path_as_upstream(c_build: Any, tmp_path: Path) -> None:
    """AIGES_PLUGIN_MODE=c and libwrapper.so found by the dynamic loader, as upstream's images do."""
    libdir = engine_dir(c_build(), tmp_path / "lib")
    empty = tmp_path / "cwd"
    empty.mkdir()
    loader = start_loader(tmp_path / "run", empty, aiges="asyncMode = false",
                          env={"AIGES_PLUGIN_MODE": "c", "LD_LIBRARY_PATH": str(libdir)})
    try:
        status, doc = once(loader, {"ctrl": "echo"}, b"via LD_LIBRARY_PATH")
        assert status == 200 and doc["payload"]["echo"]["text"] == "via LD_LIBRARY_PATH"
        assert "serving a C engine (AIGES_PLUGIN_MODE=c)" in app_log(loader)
    finally:
        loader.stop()


def test_wrapper_lib_key_relative_to_the_toml(c_build: Any, tmp_path: Path) -> None:
    engine_dir(c_build(), tmp_path / "run" / "build")
    empty = tmp_path / "src"
    empty.mkdir()
    loader = start_loader(tmp_path / "run", empty, aiges='wrapperLib = "build/libwrapper.so"\nasyncMode = false')
    try:
        assert once(loader, {"ctrl": "echo"})[0] == 200
        assert f"[aiges] wrapperLib = {tmp_path / 'run' / 'build' / 'libwrapper.so'}" in app_log(loader)
    finally:
        loader.stop()


def test_noisy_constructor_does_not_break_the_handshake(c_build: Any, tmp_path: Path) -> None:
    loader = start_c(tmp_path, c_build(defines=("NOISY",)), aiges="asyncMode = false")
    try:
        assert once(loader, {"ctrl": "echo"})[0] == 200
        log = app_log(loader)
        assert "hello from a constructor on stdout" in log and "and on stderr" in log
    finally:
        loader.stop()


def test_library_without_sessions_serves_once_and_says_sessions_are_not_implemented(c_build: Any,
                                                                                     tmp_path: Path) -> None:
    from tests.c_engines.helpers import errors_of, frame, session
    loader = start_c(tmp_path, c_build(defines=("NO_SESSIONS", "NO_ERROR")), aiges="asyncMode = false")
    try:
        assert once(loader, {"ctrl": "echo"})[0] == 200
        status, doc = once(loader, {"ctrl": "error"})
        assert doc["header"]["code"] == 4242 and doc["header"]["message"] == "wrapper returned error code 4242"
        msgs = session(loader, [frame("text", b"a", 0, {})])
        code, message = errors_of(msgs)[0]
        assert code == 10905 and "streaming sessions are not implemented" in message and "wrapperCreate" in message
        assert "sessions not available (no wrapperCreate, wrapperWrite, wrapperDestroy, wrapperRead)" in app_log(loader)
        assert stats(loader)["inits"] == 1
    finally:
        loader.stop()
