"""Streaming sessions over WebSocket with real processes (PROTOCOL.md §5)."""
from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.utils import WRAPPERS, Loader, start_loader, wait_until

PNG = (WRAPPERS / "image_stats" / "test_data" / "test.png").read_bytes()


def frame(svc: str | None, key: str, data: bytes, status: int, field: str = "text",
          params: dict[str, Any] | None = None) -> str:
    doc: dict[str, Any] = {"header": {"status": status},
                           "payload": {key: {field: base64.b64encode(data).decode(), "status": status}}}
    if svc is not None:
        doc["parameter"] = {svc: params or {}}
    return json.dumps(doc)


async def session(url: str, frames: list[str], delay: float = 0.0, close_after: int | None = None,
                  read_all: bool = True) -> list[dict[str, Any]]:
    """Send frames, collect every message until the server closes (or `close_after` frames sent)."""
    out: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(url.replace("http://", "ws://")) as ws:
            for i, f in enumerate(frames):
                await ws.send_str(f)
                if delay:
                    await asyncio.sleep(delay)
                if close_after is not None and i + 1 >= close_after:
                    await ws.close()
                    return out
            if read_all:
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        out.append(json.loads(msg.data))
                out.append({"closed": ws.close_code})
    return out


def results(msgs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in msgs if "payload" in m]


def logging_destroys(factory: pytest.TempPathFactory, wrapper: str, ws: str) -> Iterator[Loader]:
    """A module's loader whose wrapper appends each destroyed handle to extra["destroy_log"]."""
    d = factory.mktemp(wrapper)
    log = d / "destroy.log"
    loader = start_loader(d, WRAPPERS / wrapper, ws=ws, env={"STREAM_DESTROY_LOG": str(log)})
    loader.extra["destroy_log"] = log
    yield loader
    loader.stop()


@pytest.fixture(scope="module")
def streamcb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loader]:
    yield from logging_destroys(tmp_path_factory, "stream_callback", "readTimeout = 1\nsessionTimeout = 3")


def destroyed(loader: Loader) -> list[str]:
    p: Path = loader.extra["destroy_log"]
    return p.read_text().split() if p.exists() else []


def settled(loader: Loader) -> int:
    """How many sessions were destroyed, once earlier tests' sessions are (the server closes a
    session before destroying it, so the last test's destroy may still be on its way)."""
    n, prev = len(destroyed(loader)), -1
    while n != prev:
        time.sleep(0.2)
        n, prev = len(destroyed(loader)), n
    return n


def test_frames_in_order_results_pushed_typed_and_closed(streamcb: Loader) -> None:
    before = settled(streamcb)
    frames = [frame("streamcb", "text", b"first", 0), frame(None, "text", b"img:\x89PNGbytes", 1),
              frame(None, "text", b"third", 1), frame(None, "text", b"last", 2)]
    msgs = asyncio.run(session(streamcb.url + "/v1/svcName", frames))
    assert msgs[0]["header"] == {"code": 0, "message": "success", "sid": msgs[0]["header"]["sid"], "status": 0}
    res = results(msgs)
    texts = [json.loads(base64.b64decode(m["payload"]["result"]["text"])) for m in res]
    assert [t["frame"] for t in texts] == [1, 2, 3, 4]
    assert [t["text"] for t in texts][-1] == "last"
    assert [m["payload"]["result"]["seq"] for m in res] == ["1", "2", "3", "4"]
    assert base64.b64decode(res[1]["payload"]["thumb"]["image"]) == b"\x89PNGbytes"  # type kept: image
    assert res[-1]["header"]["status"] == 2
    assert msgs[-1] == {"closed": 1000}
    assert wait_until(lambda: len(destroyed(streamcb)) == before + 1, 3)


def test_later_frame_params_are_passed_on_and_sid_given(streamcb: Loader) -> None:
    frames = [frame("streamcb", "text", b"a", 0, params={"ctrl": "sync"}),
              json.dumps({"parameter": {"streamcb": {"ctrl": "sync", "late": 5, "big": 0.5}},
                          "payload": {"text": {"text": base64.b64encode(b"b").decode(), "status": 2}}}
                         ).replace('"big": 0.5', '"big": 1e5')]  # JSON as a person writes it
    msgs = asyncio.run(session(streamcb.url + "/v1/private/streamcb", frames))
    infos = [json.loads(base64.b64decode(m["payload"]["result"]["text"])) for m in results(msgs)]
    assert infos[1]["frame_params"]["late"] == "5" and infos[1]["frame_params"]["ctrl"] == "sync"
    assert infos[1]["frame_params"]["big"] == "1e5"  # numbers keep their spelling in frames too
    assert infos[0]["sid"] == msgs[0]["header"]["sid"]


def test_async_callback_results_from_threads(streamcb: Loader) -> None:
    frames = [frame("streamcb", "text", str(i).encode(), 0 if i == 0 else (2 if i == 4 else 1),
                    params={"ctrl": "async"}) for i in range(5)]
    msgs = asyncio.run(session(streamcb.url + "/v1/svcName", frames, delay=0.05))
    res = results(msgs)
    assert [json.loads(base64.b64decode(m["payload"]["result"]["text"]))["text"] for m in res] == list("01234")


def test_client_disconnect_destroys_once(streamcb: Loader) -> None:
    before = settled(streamcb)
    asyncio.run(session(streamcb.url + "/v1/svcName", [frame("streamcb", "text", b"a", 0)], delay=0.2,
                        close_after=1))
    assert wait_until(lambda: len(destroyed(streamcb)) == before + 1, 3)
    time.sleep(0.3)
    assert len(destroyed(streamcb)) == before + 1


def test_read_timeout_error_frame_then_close(streamcb: Loader) -> None:
    before = settled(streamcb)
    t = time.monotonic()
    msgs = asyncio.run(session(streamcb.url + "/v1/svcName", [frame("streamcb", "text", b"a", 0)]))
    assert 0.8 < time.monotonic() - t < 3
    err = msgs[-2]
    assert err["header"]["code"] == 10114 and "readTimeout" in err["header"]["message"] and err["header"]["sid"]
    assert wait_until(lambda: len(destroyed(streamcb)) == before + 1, 3)


def test_session_timeout(streamcb: Loader) -> None:
    before = settled(streamcb)
    frames = [frame("streamcb", "text", b"x", 0 if i == 0 else 1) for i in range(8)]
    msgs = asyncio.run(session(streamcb.url + "/v1/svcName", frames, delay=0.5))
    errs = [m for m in msgs if m.get("header", {}).get("code")]
    assert errs and errs[0]["header"]["code"] == 10114 and "sessionTimeout" in errs[0]["header"]["message"]
    assert wait_until(lambda: len(destroyed(streamcb)) == before + 1, 3)


def test_bad_json_frame_10163(streamcb: Loader) -> None:
    before = settled(streamcb)
    msgs = asyncio.run(session(streamcb.url + "/v1/svcName", [frame("streamcb", "text", b"a", 0), "{oops"]))
    err = [m for m in msgs if m.get("header", {}).get("code")][0]
    assert err["header"]["code"] == 10163 and "parse request json error" in err["header"]["message"]
    assert msgs[-1] == {"closed": 1000}
    assert wait_until(lambda: len(destroyed(streamcb)) == before + 1, 3)


def test_unknown_input_key(streamcb: Loader) -> None:
    msgs = asyncio.run(session(streamcb.url + "/v1/svcName", [frame("streamcb", "nope", b"a", 0)]))
    err = msgs[0]
    assert err["header"]["code"] == 10107 and "payload.nope" in err["header"]["message"]


def test_wrapper_errors_end_session_with_frame(streamcb: Loader) -> None:
    msgs = asyncio.run(session(streamcb.url + "/v1/svcName",
                               [frame("streamcb", "text", b"a", 0, params={"ctrl": "create_fail"})]))
    assert msgs[0]["header"]["code"] == 77 and "cannot create" in msgs[0]["header"]["message"]
    before = settled(streamcb)
    # frames are not acknowledged one by one: the failing frame's error must still come after the
    # results of the frames before it, none lost
    msgs = asyncio.run(session(streamcb.url + "/v1/svcName",
                               [frame("streamcb", "text", b"a", 0), frame(None, "text", b"b", 1),
                                frame(None, "text", b"c", 1), frame(None, "text", b"fail", 1)]))
    codes = [m["header"].get("code") for m in msgs if "header" in m]
    assert [json.loads(base64.b64decode(m["payload"]["result"]["text"]))["text"] for m in results(msgs)] == list("abc")
    err = msgs[-2]
    assert codes[-1] == 55 and "frame rejected" in err["header"]["message"] and "payload" not in err
    assert wait_until(lambda: len(destroyed(streamcb)) == before + 1, 3)


def test_32_concurrent_sessions_each_get_their_own_results(streamcb: Loader) -> None:
    async def one(i: int) -> list[str]:
        frames = [frame("streamcb", "text", f"s{i}-f{j}".encode(), 0 if j == 0 else (2 if j == 5 else 1))
                  for j in range(6)]
        msgs = await session(streamcb.url + "/v1/svcName", frames, delay=0.01)
        return [json.loads(base64.b64decode(m["payload"]["result"]["text"]))["text"] for m in results(msgs)]

    async def all_sessions() -> list[list[str]]:
        return await asyncio.gather(*(one(i) for i in range(32)))

    out = asyncio.run(all_sessions())
    for i, texts in enumerate(out):
        assert texts == [f"s{i}-f{j}" for j in range(6)]


def test_get_without_upgrade_is_405(streamcb: Loader) -> None:
    status, _, resp = streamcb.get("/v1/svcName")
    assert status == 405 and "WebSocket" in resp["header"]["message"]


def test_ping_echo(streamcb: Loader) -> None:
    async def go() -> list[str]:
        async with aiohttp.ClientSession() as s:
            async with s.ws_connect(streamcb.url.replace("http", "ws") + "/ping") as ws:
                await ws.send_str("ping")
                a = await ws.receive_str()
                await ws.send_str("hello")
                return [a, await ws.receive_str()]
    assert asyncio.run(go()) == ["pong", "hello"]


@pytest.mark.parametrize("name", ["stream_read", "stream_threads"])
def test_other_streaming_styles(tmp_path: Path, name: str) -> None:
    log = tmp_path / "destroy.log"
    loader = start_loader(tmp_path, WRAPPERS / name, env={"STREAM_DESTROY_LOG": str(log)})
    try:
        frames = [frame(None, "text", b"abc", 0), frame(None, "text", b"def", 1), frame(None, "text", b"ghi", 2)]
        msgs = asyncio.run(session(loader.url + "/v1/svcName", frames, delay=0.02))
        got = [base64.b64decode(m["payload"]["result"]["text"]) for m in results(msgs)]
        assert got == ([b"ABC", b"DEF", b"GHI"] if name == "stream_read" else [b"cba", b"fed", b"ihg"])
        assert msgs[-1] == {"closed": 1000}
        if name == "stream_read":
            assert wait_until(lambda: log.exists() and len(log.read_text().split()) == 1, 3)
    finally:
        loader.stop()


def test_compat_wrapper_session_methods_unchanged(image_stats: Loader) -> None:
    frames = [frame("svcName", "img", PNG, 0, field="image"), frame(None, "img", PNG, 1, field="image"),
              frame(None, "img", PNG, 2, field="image")]
    msgs = asyncio.run(session(image_stats.url + "/v1/svcName", frames))
    infos = [json.loads(base64.b64decode(m["payload"]["result"]["text"])) for m in results(msgs)]
    assert [i["frame"] for i in infos] == [1, 2, 3] and infos[0]["width"] == 28
    assert msgs[-1] == {"closed": 1000}


def test_worker_death_ends_session_with_error_others_go_on(tmp_path: Path) -> None:
    loader = start_loader(tmp_path, WRAPPERS / "stream_callback", aiges="workers = 2",
                          ws="readTimeout = 10")

    async def go() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        async with aiohttp.ClientSession() as s:
            a = await s.ws_connect(loader.url.replace("http", "ws") + "/v1/svcName")
            await a.send_str(frame("streamcb", "text", b"a", 0))
            await a.receive_str()  # ack
            await a.receive_str()  # result 1
            b = await s.ws_connect(loader.url.replace("http", "ws") + "/v1/svcName")
            await b.send_str(frame("streamcb", "text", b"b", 0))
            await b.receive_str()
            await b.receive_str()
            # the two sessions are on different workers (least-loaded balancing): kill a's worker
            pids = loader.plugin_pids()
            assert len(pids) == 2
            os.kill(pids[0], signal.SIGKILL)
            out_a: list[dict[str, Any]] = []
            out_b: list[dict[str, Any]] = []
            for ws, out in ((a, out_a), (b, out_b)):
                try:
                    await ws.send_str(frame(None, "text", b"z", 2))
                except ConnectionError:
                    pass
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        out.append(json.loads(msg.data))
            return out_a, out_b

    try:
        out_a, out_b = asyncio.run(go())
        outs = [out_a, out_b]
        failed = [o for o in outs if o and o[-1]["header"]["code"] == 12503]
        ok = [o for o in outs if o and o[-1]["header"]["code"] == 0 and o[-1]["header"]["status"] == 2]
        assert len(failed) == 1 and len(ok) == 1, outs
    finally:
        loader.stop()


def test_binary_frame_gets_error_frame(streamcb: Loader) -> None:
    async def go() -> list[dict[str, Any]]:
        out = []
        async with aiohttp.ClientSession() as s:
            async with s.ws_connect(streamcb.url.replace("http", "ws") + "/v1/svcName") as ws:
                await ws.send_bytes(b"\x00\x01")
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        out.append(json.loads(msg.data))
        return out
    msgs = asyncio.run(go())
    assert msgs[0]["header"]["code"] == 10163 and "binary" in msgs[0]["header"]["message"]


@pytest.fixture(scope="module")
def streamread(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loader]:
    yield from logging_destroys(tmp_path_factory, "stream_read", "readTimeout = 1\nsessionTimeout = 5")


def test_read_results_are_pushed_without_waiting_for_the_next_frame(streamread: Loader) -> None:
    """A wrapperRead result that becomes ready after the write returned reaches the client at once,
    not when the client sends its next frame (upstream's realTimeRlt=false behaviour)."""
    async def go() -> tuple[float, list[dict[str, Any]]]:
        async with aiohttp.ClientSession() as s:
            async with s.ws_connect(streamread.url.replace("http", "ws") + "/v1/svcName") as ws:
                await ws.send_str(frame("streamread", "text", b"one", 0, params={"delay": "0.2"}))
                assert json.loads(await ws.receive_str())["header"]["status"] == 0  # ack
                t = time.monotonic()
                first = json.loads(await ws.receive_str(timeout=0.9))  # within readTimeout, no new frame
                waited = time.monotonic() - t
                await ws.send_str(frame(None, "text", b"two", 2))
                rest = [json.loads(m.data) async for m in ws if m.type == aiohttp.WSMsgType.TEXT]
                return waited, [first, *rest]
    waited, msgs = asyncio.run(go())
    assert waited < 0.8
    assert [base64.b64decode(m["payload"]["result"]["text"]) for m in msgs] == [b"ONE", b"TWO"]
    assert msgs[-1]["header"]["status"] == 2


def test_slow_final_result_after_the_last_frame_is_not_a_read_timeout(streamread: Loader) -> None:
    """After the client's last frame it owes nothing: the wrapper may take longer than readTimeout
    (1 s here) for its results; only sessionTimeout bounds it."""
    before = settled(streamread)
    frames = [frame("streamread", "text", b"a", 0, params={"delay": "0.6"}), frame(None, "text", b"b", 1),
              frame(None, "text", b"c", 2)]
    t = time.monotonic()
    msgs = asyncio.run(session(streamread.url + "/v1/svcName", frames))
    assert time.monotonic() - t > 1.5  # three frames at 0.6 s each: past readTimeout
    assert [m["header"]["code"] for m in msgs if "header" in m] == [0, 0, 0, 0]
    assert [base64.b64decode(m["payload"]["result"]["text"]) for m in results(msgs)] == [b"A", b"B", b"C"]
    assert msgs[-1] == {"closed": 1000}
    assert wait_until(lambda: len(destroyed(streamread)) == before + 1, 3)


def test_reused_handles_never_get_an_old_sessions_results(tmp_path: Path) -> None:
    """Sessions that end while their wrapperRead results are still coming: destroy stops their
    poller, so a later session never receives (or loses) anything because of them."""
    loader = start_loader(tmp_path, WRAPPERS / "stream_read", ws="readTimeout = 5")

    async def abandoned() -> None:
        async with aiohttp.ClientSession() as s:
            async with s.ws_connect(loader.url.replace("http", "ws") + "/v1/svcName") as ws:
                await ws.send_str(frame("streamread", "text", b"old", 0, params={"delay": "0.3"}))
                await ws.send_str(frame(None, "text", b"old", 2))
                await ws.receive_str()  # ack, then leave with results still to come

    try:
        for i in range(4):
            asyncio.run(abandoned())
            frames = [frame("streamread", "text", f"n{i}a".encode(), 0), frame(None, "text", f"n{i}b".encode(), 2)]
            msgs = asyncio.run(session(loader.url + "/v1/svcName", frames))
            got = [base64.b64decode(m["payload"]["result"]["text"]) for m in results(msgs)]
            assert got == [f"N{i}A".encode(), f"N{i}B".encode()], msgs
    finally:
        loader.stop()


def test_destroy_waits_for_a_slow_write_and_is_never_lost(streamcb: Loader) -> None:
    """readTimeout (1 s) ends a session whose wrapperWrite sleeps 2.5 s: the client gets its error
    frame and close at once; wrapperDestroy runs once, after the write has returned."""
    before = settled(streamcb)
    t = time.monotonic()
    msgs = asyncio.run(session(streamcb.url + "/v1/svcName", [frame("streamcb", "text", b"a", 0),
                                                               frame(None, "text", b"sleep:2.5", 1)]))
    assert time.monotonic() - t < 2.2  # the close did not wait for the write
    assert msgs[-2]["header"]["code"] == 10114 and msgs[-1] == {"closed": 1000}
    assert len(destroyed(streamcb)) == before  # not while the write runs
    assert wait_until(lambda: len(destroyed(streamcb)) == before + 1, 5)
    time.sleep(0.3)
    assert len(destroyed(streamcb)) == before + 1


def test_final_result_recognised_whatever_its_place_in_the_response(streamcb: Loader) -> None:
    frames = [frame("streamcb", "text", b"a", 0), frame(None, "text", b"final-first", 1)]
    msgs = asyncio.run(session(streamcb.url + "/v1/svcName", frames))
    last = results(msgs)[-1]
    assert last["header"]["status"] == 2 and set(last["payload"]) == {"result", "thumb"}
    assert msgs[-1] == {"closed": 1000}


def test_frame_over_the_size_limit_gets_an_error_frame(tmp_path: Path) -> None:
    loader = start_loader(tmp_path, WRAPPERS / "stream_callback", aiges="maxBodyMB = 1")

    async def go() -> tuple[list[dict[str, Any]], int | None]:
        out = []
        async with aiohttp.ClientSession() as s:
            async with s.ws_connect(loader.url.replace("http", "ws") + "/v1/svcName") as ws:
                await ws.send_str(frame("streamcb", "text", b"x" * (2 * 1024 * 1024), 0))
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        out.append(json.loads(msg.data))
                return out, ws.close_code
    try:
        msgs, code = asyncio.run(go())
        assert code == 1009
        assert msgs and msgs[-1]["header"]["code"] == 12413 and "maxBodyMB" in msgs[-1]["header"]["message"]
        assert msgs[-1]["header"]["sid"]
    finally:
        loader.stop()


def test_create_finishing_after_the_deadline_is_destroyed(tmp_path: Path) -> None:
    """wrapperCreate takes 1.5 s, the deadline is 1 s: the client gets 10102, and the session the
    wrapper creates afterwards is destroyed instead of leaking."""
    log = tmp_path / "destroy.log"
    loader = start_loader(tmp_path, WRAPPERS / "stream_callback", aiges="deadline = 1",
                          env={"STREAM_DESTROY_LOG": str(log)})
    try:
        msgs = asyncio.run(session(loader.url + "/v1/svcName",
                                   [frame("streamcb", "text", b"a", 0, params={"ctrl": "create_slow"})]))
        assert msgs[0]["header"]["code"] == 10102
        assert wait_until(lambda: log.exists() and len(log.read_text().split()) == 1, 5)
    finally:
        loader.stop()


def test_json_format_results_are_embedded_as_json(streamcb: Loader) -> None:
    """As upstream's WebSocket protocol: an expect object with format=json gets valid JSON results
    embedded as they are, not base64."""
    first = json.loads(frame("streamcb", "text", b"a", 0))
    first["parameter"]["streamcb"]["result"] = {"encoding": "utf8", "format": "json"}
    msgs = asyncio.run(session(streamcb.url + "/v1/svcName", [json.dumps(first), frame(None, "text", b"b", 2)]))
    res = results(msgs)
    assert [m["payload"]["result"]["text"]["text"] for m in res] == ["a", "b"]


def test_sigterm_lets_open_sessions_finish(tmp_path: Path) -> None:
    """SIGTERM while a session is open: it finishes within the grace period (result, close 1000),
    the loader then exits 0; a session that outlives the grace gets error frame 12504."""
    loader = start_loader(tmp_path, WRAPPERS / "stream_callback", aiges="grace = 2", ws="readTimeout = 10")

    async def go() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        async with aiohttp.ClientSession() as s:
            url = loader.url.replace("http", "ws") + "/v1/svcName"
            fin, stuck = await s.ws_connect(url), await s.ws_connect(url)
            for ws in (fin, stuck):
                await ws.send_str(frame("streamcb", "text", b"a", 0))
                await ws.receive_str()  # ack
                await ws.receive_str()  # result
            loader.proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.3)
            await fin.send_str(frame(None, "text", b"z", 2))
            outs = []
            for ws in (fin, stuck):
                outs.append([json.loads(m.data) async for m in ws if m.type == aiohttp.WSMsgType.TEXT])
            return outs[0], outs[1]

    try:
        fin, stuck = asyncio.run(go())
        assert fin[-1]["header"]["code"] == 0 and fin[-1]["header"]["status"] == 2
        assert stuck[-1]["header"]["code"] == 12504 and "grace" in stuck[-1]["header"]["message"]
        assert loader.proc.wait(15) == 0
    finally:
        loader.stop()


def test_a_frame_the_wrapper_does_not_take_is_bounded_by_the_session_timeout(streamcb: Loader) -> None:
    """wrapperWrite hangs (10 s) while the client keeps sending large frames: once the plugin stops
    taking them (flow control), the session still ends at [ws] sessionTimeout (3 s) with 10114."""
    async def go() -> tuple[float, list[dict[str, Any]]]:
        out: list[dict[str, Any]] = []
        t = time.monotonic()
        async with aiohttp.ClientSession() as s:
            async with s.ws_connect(streamcb.url.replace("http", "ws") + "/v1/svcName") as ws:
                await ws.send_str(frame("streamcb", "text", b"a", 0))
                await ws.send_str(frame(None, "text", b"sleep:10", 1))

                async def flood() -> None:
                    try:
                        for _ in range(40):
                            await ws.send_str(frame(None, "text", b"x" * 300_000, 1))
                            await asyncio.sleep(0.05)
                    except (ConnectionError, RuntimeError):
                        pass
                sender = asyncio.create_task(flood())
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        out.append(json.loads(msg.data))
                sender.cancel()
        return time.monotonic() - t, out
    elapsed, msgs = asyncio.run(go())
    assert msgs[-1]["header"]["code"] == 10114 and "sessionTimeout" in msgs[-1]["header"]["message"]
    assert elapsed < 6


def test_sigterm_answers_a_once_request_that_outlives_the_grace(tmp_path: Path) -> None:
    """A once request still running when the grace period ends gets a 503 envelope (12504), not a
    dropped connection; the loader exits 0 soon after."""
    loader = start_loader(tmp_path, WRAPPERS / "faulty", aiges="grace = 1")
    got: dict[str, Any] = {}

    def call() -> None:
        got["r"] = loader.post("/v1/svcName", {"parameter": {"faulty": {"sleep": 10}},
                                               "payload": {"text": {"text": "aGk=", "status": 3}}})
    import threading
    th = threading.Thread(target=call)
    th.start()
    time.sleep(0.5)
    t = time.monotonic()
    loader.proc.send_signal(signal.SIGTERM)
    th.join(15)
    try:
        status, _, resp = got["r"]
        assert status == 503 and resp["header"]["code"] == 12504 and "grace" in resp["header"]["message"]
        assert loader.proc.wait(15) == 0
        assert time.monotonic() - t < 7
    finally:
        loader.stop()
