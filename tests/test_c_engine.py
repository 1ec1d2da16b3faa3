"""C engines, once inference: a libwrapper.so written only against wrapper.h/type.h, compiled
with the system's C compiler at test time (tests/c_engines/demo.c), served by real loader and
plugin processes.  Each test names the shape of real C wrappers it reproduces."""
from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.c_engines.helpers import app_log, once, plugin_pid, rss_kb, start_c, stats, text_of
from tests.utils import Loader, once_body


@pytest.fixture(scope="module")
def sync_engine(c_build: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loader]:
    """asyncMode = false (upstream's default): wrapperExec + wrapperExecFree."""
    loader = start_c(tmp_path_factory.mktemp("c_sync"), c_build(), aiges="workerThreads = 4\nasyncMode = false")
    yield loader
    loader.stop()


@pytest.fixture(scope="module")
def async_engine(c_build: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loader]:
    """asyncMode = true (upstream's stock aiges.toml): wrapperExecAsync + the callback."""
    loader = start_c(tmp_path_factory.mktemp("c_async"), c_build(), aiges="workerThreads = 4\nasyncMode = true")
    yield loader
    loader.stop()


def test_once_malloced_results_params_in_desc_and_exec_free_per_request(sync_engine: Loader) -> None:
    before = stats(sync_engine)
    status, doc = once(sync_engine, {"ctrl": "echo", "mode": "x"}, b"hello C")
    assert status == 200, doc
    assert doc["header"]["code"] == 0 and doc["header"]["status"] == 3
    assert text_of(doc, "echo") == "hello C"
    echo = doc["payload"]["echo"]
    assert echo["mode"] == "x" and echo["ctrl"] == "echo" and echo["sid"] == doc["header"]["sid"]  # desc = params
    info = json.loads(text_of(doc, "info"))
    # the input used as a C string: the host puts a NUL after len (upstream's C.CBytes did not)
    assert info == {"strlen": 7, "len": 7, "params": 3}
    after = stats(sync_engine)
    assert after["execs"] - before["execs"] == after["execfrees"] - before["execfrees"] == 2  # + the stats call
    assert after["allocs"] == after["frees"]


def test_static_result_node_is_not_freed_twice(sync_engine: Loader) -> None:
    for _ in range(3):
        status, doc = once(sync_engine, {"ctrl": "static"})
        assert status == 200 and text_of(doc, "static") == "from a static node"


def test_non_zero_return_reaches_the_client_with_the_library_code_and_text(sync_engine: Loader) -> None:
    status, doc = once(sync_engine, {"ctrl": "error"})
    assert status == 500
    assert doc["header"]["code"] == 4242 and doc["header"]["message"] == "demo error 4242: asked for by ctrl=error"
    status, doc = once(sync_engine, {"ctrl": "unknown-ctrl"})  # wrapperError(22222) is NULL: the fallback text
    assert status == 500 and doc["header"] == {**doc["header"], "code": 22222,
                                               "message": "wrapper returned error code 22222"}


def test_zero_without_data_and_an_unreadable_item_are_10909(sync_engine: Loader) -> None:
    status, doc = once(sync_engine, {"ctrl": "nodata"})
    assert status == 500 and doc["header"]["code"] == 10909
    assert "wrapperExec returned 0 but no data" in doc["header"]["message"]
    status, doc = once(sync_engine, {"ctrl": "badlen"})
    assert status == 500 and doc["header"]["code"] == 10909
    assert "has len 5 but data NULL" in doc["header"]["message"]


def test_four_200ms_calls_run_at_once_without_the_gil(sync_engine: Loader) -> None:
    out: list[int] = []

    def call() -> None:
        out.append(once(sync_engine, {"ctrl": "sleep", "ms": "200"})[0])
    once(sync_engine)  # warm
    threads = [threading.Thread(target=call) for _ in range(4)]
    t = time.monotonic()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    took = time.monotonic() - t
    assert out == [200] * 4
    assert took < 0.45, f"4 x 200 ms took {took:.3f}s: the calls did not overlap"
    assert stats(sync_engine)["max_running"] >= 3


def test_ten_thousand_once_requests_leak_nothing(sync_engine: Loader) -> None:
    """The library's own alloc/free counters balance and the worker's RSS stays flat."""
    body = json.dumps(once_body("svcName", {"text": {"encoding": "utf8", "status": 3, "text": "aGVsbG8gbGVhaw=="}},
                                {"ctrl": "echo"})).encode()

    async def load(n: int) -> int:
        ok = 0
        async with aiohttp.ClientSession(headers={"Content-Type": "application/json"}) as s:
            async def worker(k: int) -> None:
                nonlocal ok
                for _ in range(k):
                    async with s.post(sync_engine.url + "/v1/svcName", data=body) as r:
                        await r.read()
                        ok += r.status == 200
            await asyncio.gather(*(worker(n // 16) for _ in range(16)))
        return ok

    pid = plugin_pid(sync_engine)
    assert asyncio.run(load(2000)) == 2000  # warm: the pools, the arenas, the caches
    rss_before = rss_kb(pid)
    before = stats(sync_engine)
    assert asyncio.run(load(10000)) == 10000
    after = stats(sync_engine)
    rss_after = rss_kb(pid)
    print(f"10,000 once requests: worker RSS {rss_before} -> {rss_after} kB; library allocs {after['allocs']}, "
          f"frees {after['frees']}")
    assert after["allocs"] - before["allocs"] >= 10000 * 12  # the work was done ...
    assert after["allocs"] == after["frees"]  # ... and every result list came back to wrapperExecFree
    assert after["execs"] - before["execs"] == after["execfrees"] - before["execfrees"] == 10001
    assert rss_after - rss_before < 3 * 1024, f"worker RSS grew {rss_before} -> {rss_after} kB over 10,000 requests"
    assert plugin_pid(sync_engine) == pid


# ---------------------------------------------------------------- asyncMode = true
def test_async_callback_from_a_library_thread_that_reads_its_input_late(async_engine: Loader) -> None:
    """The demo's thread reads the request's input 50 ms after wrapperExecAsync returned (upstream
    had freed it by then): the host keeps inputs alive until the answer."""
    status, doc = once(async_engine, {"ctrl": "thread", "ms": "50"}, b"late reader")
    assert status == 200 and text_of(doc, "echo") == "late reader"


def test_async_callback_inline_before_exec_async_returns(async_engine: Loader) -> None:
    status, doc = once(async_engine, {"ctrl": "inline"}, b"inline")
    assert status == 200 and text_of(doc, "echo") == "inline"


def test_async_failures_callback_ret_and_return_code(async_engine: Loader) -> None:
    status, doc = once(async_engine, {"ctrl": "fail"})
    assert status == 500 and doc["header"]["code"] == 4242 and "demo error 4242" in doc["header"]["message"]
    status, doc = once(async_engine, {"ctrl": "error"})
    assert status == 500 and doc["header"]["code"] == 4242


def test_async_second_callback_is_refused(async_engine: Loader) -> None:
    status, doc = once(async_engine, {"ctrl": "twice"}, b"first wins")
    assert status == 200 and text_of(doc, "echo") == "first wins"
    assert stats(async_engine)["second_ret"] == -1


def test_async_callback_with_an_unknown_tag_is_refused(async_engine: Loader) -> None:
    status, doc = once(async_engine, {"ctrl": "badtag"}, b"real")
    assert status == 200 and text_of(doc, "echo") == "real"
    assert stats(async_engine)["second_ret"] == -1
    assert "callback for tag 'no-such-tag', which is unknown or has ended: refused (-1)" in app_log(async_engine)


def test_not_thread_safe_switch_runs_one_call_at_a_time(c_build: Any, tmp_path: Path) -> None:
    loader = start_c(tmp_path, c_build(), aiges="workerThreads = 4\nasyncMode = false\nwrapperThreadSafe = false")
    try:
        out: list[int] = []
        threads = [threading.Thread(target=lambda: out.append(once(loader, {"ctrl": "sleep", "ms": "150"})[0]))
                   for _ in range(4)]
        t = time.monotonic()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert out == [200] * 4 and time.monotonic() - t >= 0.55
        assert stats(loader)["max_running"] == 1
        assert "calls serialised ([aiges] wrapperThreadSafe = false)" in app_log(loader)
    finally:
        loader.stop()


def test_async_library_that_never_calls_back_gets_504_with_the_hint(async_engine: Loader) -> None:
    t = time.monotonic()
    status, doc = once(async_engine, {"ctrl": "silent"}, headers={"X-Aiges-Deadline": "1"})
    assert status == 504 and doc["header"]["code"] == 10102
    assert time.monotonic() - t < 2.5
    assert "asyncMode = false" in doc["header"]["message"]
    # the thread that waited is free again: 4 more silent ones and a normal one still fit
    status, _ = once(async_engine, {"ctrl": "inline"})
    assert status == 200


def test_async_concurrent_requests_each_get_their_own_answer(async_engine: Loader) -> None:
    got: dict[int, tuple[int, str]] = {}

    def call(i: int) -> None:
        status, doc = once(async_engine, {"ctrl": "thread", "ms": str(5 + i % 7)}, f"req {i}".encode())
        got[i] = (status, text_of(doc, "echo") if status == 200 else "")
    threads = [threading.Thread(target=call, args=(i,)) for i in range(24)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert got == {i: (200, f"req {i}") for i in range(24)}


def test_selection_logged_with_its_reason(sync_engine: Loader) -> None:
    log = app_log(sync_engine)
    assert "serving a C engine (no wrapper.py; found" in log
    assert "once by wrapperExec, sessions by wrapperRead" in log


def test_engine_dir_is_the_only_thing_needed(sync_engine: Loader) -> None:
    """No wrapper.py, no schema: /v1/<svcName> and /openapi.json are still served."""
    status, _, doc = sync_engine.get("/openapi.json")
    assert status == 200 and "/v1/svcName" in doc["paths"]
    engine = Path(sync_engine.workdir / "engine")
    assert sorted(p.name for p in engine.iterdir()) == ["libwrapper.so"]
