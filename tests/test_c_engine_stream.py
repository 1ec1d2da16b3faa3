"""C engines, streaming sessions over WebSocket: wrapperCreate / wrapperWrite / wrapperRead /
wrapperDestroy with results read at upstream's cadence (asyncMode = false) or pushed by the
library's callback from its own thread (asyncMode = true); failures and faults in each entry
point; wrapperDestroy exactly once per session and never overlapping a call of its session."""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.c_engines.helpers import app_log, errors_of, frame, once, restarted, results, session, start_c, stats
from tests.utils import Loader, wait_until

WS = "readTimeout = 5\nsessionTimeout = 10"
RUNTIME = "workerThreads = 4\nrestartBackoffMax = 0.5"


@pytest.fixture(scope="module")
def read_engine(c_build: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loader]:
    """asyncMode = false: results by wrapperRead, one read per write (realTimeRlt = true)."""
    loader = start_c(tmp_path_factory.mktemp("c_read"), c_build(), aiges=RUNTIME + "\nasyncMode = false", ws=WS)
    yield loader
    loader.stop()


@pytest.fixture(scope="module")
def callback_engine(c_build: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loader]:
    """asyncMode = true: wrapperCreate gets the callback; the library pushes from its own thread."""
    loader = start_c(tmp_path_factory.mktemp("c_cb"), c_build(), aiges=RUNTIME + "\nasyncMode = true", ws=WS)
    yield loader
    loader.stop()


def three(params: dict[str, Any] | None = None, texts: tuple[bytes, ...] = (b"ab", b"cd", b"ef")) -> list[str]:
    return [frame("text", t, 0 if i == 0 else 2 if i == len(texts) - 1 else 1, params if i == 0 else None)
            for i, t in enumerate(texts)]


def balanced(loader: Loader) -> dict[str, int]:
    """Counters once every session's destroy has run (the server closes a session before its destroy)."""
    s: dict[str, int] = {}

    def settled() -> bool:
        s.update(stats(loader))
        return s["creates"] == s["destroys"]
    assert wait_until(settled, 5, 0.1), s
    return s


def test_read_one_result_per_write_in_order_final_ends_the_session(read_engine: Loader) -> None:
    msgs = session(read_engine, three({"ctrl": "default"}), delay=0.05)
    assert results(msgs) == ["AB", "CD", "EF"]
    final = [m for m in msgs if m.get("payload")][-1]
    assert final["header"]["status"] == 2
    assert msgs[-1] == {"closed": 1000}
    s = balanced(read_engine)
    assert s["overlap"] == 0


def test_read_that_always_returns_data_does_not_flood(read_engine: Loader) -> None:
    """wrapper_catch's shape: one shared static list, every read "has data"; one result per write."""
    msgs = session(read_engine, three({"ctrl": "always"}), delay=0.1)
    assert results(msgs) == ["ALWAYS"] * 3
    assert [m["header"]["status"] for m in msgs if m.get("payload")] == [1, 1, 2]


def test_result_that_comes_after_the_last_write_is_read_every_50ms(read_engine: Loader) -> None:
    msgs = session(read_engine, three({"ctrl": "late"}))
    assert results(msgs) == ["EF"]
    last_sent = max(m["t"] for m in msgs if "sent" in m)
    got = next(m["t"] for m in msgs if m.get("payload"))
    assert 0.1 < got - last_sent < 1.0


def test_create_failures(read_engine: Loader) -> None:
    assert errors_of(session(read_engine, three({"ctrl": "fail"}))) == [(5151, "demo error 5151: create refused")]
    code, message = errors_of(session(read_engine, three({"ctrl": "null"})))[0]
    assert code == 10905 and "wrapperCreate returned NULL" in message


def test_write_and_read_failures_end_the_session_with_the_code_and_text(read_engine: Loader) -> None:
    before = balanced(read_engine)
    assert errors_of(session(read_engine, three({"ctrl": "writefail"}))) == [(7171, "demo error 7171: write failed")]
    assert errors_of(session(read_engine, three({"ctrl": "readfail"}))) == [(6161, "demo error 6161: read failed")]
    after = balanced(read_engine)
    assert after["destroys"] - before["destroys"] == 2  # destroyed on these endings too


def test_client_that_goes_away_gets_its_session_destroyed_once(read_engine: Loader) -> None:
    before = balanced(read_engine)
    session(read_engine, three({"ctrl": "default"}), delay=0.1, close_after=1)
    after = balanced(read_engine)
    assert after["destroys"] - before["destroys"] == 1
    time.sleep(0.3)
    assert stats(read_engine)["destroys"] == after["destroys"]


def test_concurrent_sessions_never_overlap_calls_on_one_handle(read_engine: Loader) -> None:
    got: dict[int, list[str]] = {}

    def run(i: int) -> None:
        texts = tuple(f"s{i}f{k}".encode() for k in range(6))
        got[i] = results(session(read_engine, three({"ctrl": "default"}, texts), delay=0.01))
    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == {i: [f"S{i}F{k}" for k in range(6)] for i in range(8)}
    assert balanced(read_engine)["overlap"] == 0


def test_realtime_false_reads_only_after_the_last_frame(c_build: Any, tmp_path: Path) -> None:
    loader = start_c(tmp_path, c_build(), aiges="asyncMode = false\nrealTimeRlt = false", ws=WS)
    try:
        msgs = session(loader, three({"ctrl": "default"}), delay=0.2)
        assert results(msgs) == ["AB", "CD", "EF"]
        last_sent = max(m["t"] for m in msgs if "sent" in m)
        assert all(m["t"] >= last_sent for m in msgs if m.get("payload"))
    finally:
        loader.stop()


# ---------------------------------------------------------------- asyncMode = true: callbacks
def test_callback_results_pushed_from_the_library_thread(callback_engine: Loader) -> None:
    msgs = session(callback_engine, three({"ctrl": "default"}), delay=0.05)
    assert results(msgs) == ["AB", "CD", "EF"]
    assert msgs[-1] == {"closed": 1000}
    # pushed as made: the first result arrives before the last frame is sent
    last_sent = max(m["t"] for m in msgs if "sent" in m)
    assert next(m["t"] for m in msgs if m.get("payload")) < last_sent
    assert balanced(callback_engine)["overlap"] == 0


def test_callback_sessions_at_once(callback_engine: Loader) -> None:
    got: dict[int, list[str]] = {}

    def run(i: int) -> None:
        got[i] = results(session(callback_engine, three({"ctrl": "default"}, (b"x%d" % i, b"y", b"z")), delay=0.01))
    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == {i: [f"X{i}", "Y", "Z"] for i in range(8)}
    balanced(callback_engine)


# ---------------------------------------------------------------- faults in the session entry points
def _dies(loader: Loader, frames: list[str]) -> str:
    assert restarted(loader)
    mark = len(app_log(loader))
    msgs = session(loader, frames)
    assert errors_of(msgs) and errors_of(msgs)[0][0] == 12503, msgs
    assert restarted(loader)
    return app_log(loader)[mark:]


@pytest.mark.parametrize("how", ["crash", "abort", "exit"])
def test_fault_in_wrapper_create(read_engine: Loader, how: str) -> None:
    assert "in wrapperCreate" in _dies(read_engine, three({"ctrl": how}))


@pytest.mark.parametrize("how", ["crash", "abort", "exit"])
def test_fault_in_wrapper_write(read_engine: Loader, how: str) -> None:
    frames = [frame("text", b"ok", 0, {"ctrl": "default"}), frame("text", how.encode(), 2)]
    assert "in wrapperWrite" in _dies(read_engine, frames)


@pytest.mark.parametrize("how", ["crash", "abort", "exit"])
def test_fault_in_wrapper_read(read_engine: Loader, how: str) -> None:
    frames = [frame("text", f"read:{how}".encode(), 0, {"ctrl": "default"}), frame("text", b"x", 2)]
    assert "in wrapperRead" in _dies(read_engine, frames)


@pytest.mark.parametrize("how", ["crash", "abort", "exit"])
def test_fault_in_wrapper_destroy_after_the_results(read_engine: Loader, how: str) -> None:
    assert restarted(read_engine)
    mark = len(app_log(read_engine))
    msgs = session(read_engine, three({"ctrl": f"destroy:{how}"}))
    assert results(msgs) == ["AB", "CD", "EF"]  # the client had its answer; the destroy then failed
    assert wait_until(lambda: "in wrapperDestroy" in app_log(read_engine)[mark:], 5)
    assert restarted(read_engine)


def test_deadlock_in_each_session_entry_point_ends_only_that_session(c_build: Any, tmp_path: Path) -> None:
    """Hung create, write, read and destroy: each session ends by its timeout (or had its results
    when its destroy hangs); the worker's other threads keep serving."""
    loader = start_c(tmp_path, c_build(), aiges="asyncMode = false\nworkerThreads = 6\ndeadline = 2",
                     ws="readTimeout = 1\nsessionTimeout = 3")
    try:
        t = time.monotonic()
        code, _ = errors_of(session(loader, three({"ctrl": "hang"})))[0]  # create
        assert code in (10102, 10114) and time.monotonic() - t < 4
        msgs = session(loader, [frame("text", b"ok", 0, {"ctrl": "default"}), frame("text", b"hang", 1)])  # write
        assert results(msgs) == ["OK"] and errors_of(msgs)[0][0] == 10114
        msgs = session(loader, [frame("text", b"read:hang", 0, {"ctrl": "default"}), frame("text", b"x", 2)])  # read
        assert errors_of(msgs)[0][0] == 10114
        msgs = session(loader, three({"ctrl": "destroy:hang"}))  # destroy
        assert results(msgs) == ["AB", "CD", "EF"] and not errors_of(msgs)
        assert once(loader, {"ctrl": "echo"})[0] == 200  # the other threads still serve
        assert session(loader, three({"ctrl": "default"}))[-1] == {"closed": 1000}
    finally:
        loader.stop()
