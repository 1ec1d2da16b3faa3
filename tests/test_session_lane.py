"""Sessions on the lane (issue 16), with real processes: WebSocket and the public gRPC ``Stream`` API.

Each test starts a loader on a free port (``tests/utils.start_loader``) with the streaming test
wrappers; many sessions interleave on one worker, wrappers fail mid-stream, the worker or the loader
is killed with sessions open, and ``[aiges] lane = false`` keeps the gRPC session path working.
"""
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
import grpc
import pytest

from aiges.wire.pb import aiges_api_pb2 as api
from aiges.wire.pb import aiges_api_pb2_grpc as api_grpc
from tests.utils import WRAPPERS, Loader, alive, child_pids, start_loader, wait_until


def frame(text: bytes, status: int, first: bool = False) -> str:
    doc: dict[str, Any] = {"header": {"status": status},
                           "payload": {"text": {"text": base64.b64encode(text).decode(), "status": status}}}
    if first:
        doc["parameter"] = {"streamcb": {}}
    return json.dumps(doc)


def texts(msgs: list[dict[str, Any]]) -> list[str]:
    return [json.loads(base64.b64decode(m["payload"]["result"]["text"]))["text"] for m in msgs if m.get("payload")]


async def ws_session(url: str, frames: list[str], delay: float = 0.0) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(url.replace("http://", "ws://") + "/v1/svcName") as ws:
            for f in frames:
                await ws.send_str(f)
                if delay:
                    await asyncio.sleep(delay)
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    out.append(json.loads(msg.data))
    return out


async def grpc_session(target: str, frames: list[str], delay: float = 0.0) -> list[dict[str, Any]]:
    async def requests() -> Any:
        for f in frames:
            yield api.Envelope(json=f)
            if delay:
                await asyncio.sleep(delay)
    async with grpc.aio.insecure_channel(target) as ch:
        return [json.loads(r.json) async for r in api_grpc.AigesStub(ch).Stream(requests(), timeout=30)]


def session_frames(i: int, n: int) -> list[str]:
    return [frame(f"s{i}-f{j}".encode(), 0 if j == 0 else 2 if j == n - 1 else 1, first=j == 0) for j in range(n)]


@pytest.fixture(scope="module")
def streamcb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loader]:
    d = tmp_path_factory.mktemp("lane")
    loader = start_loader(d, WRAPPERS / "stream_callback", ws="readTimeout = 10",
                          env={"STREAM_DESTROY_LOG": str(d / "destroy.log")})
    loader.extra["destroy_log"] = d / "destroy.log"
    yield loader
    loader.stop()


def destroyed(loader: Loader) -> int:
    log: Path = loader.extra["destroy_log"]
    return len(log.read_text().split()) if log.exists() else 0


def test_200_interleaved_sessions_on_one_worker_never_cross(streamcb: Loader) -> None:
    """150 WebSocket and 50 gRPC Stream sessions at once on one worker, 12 frames each: every
    session gets exactly its own results, in order, and every one is destroyed once."""
    before = destroyed(streamcb)

    async def all_sessions() -> list[list[dict[str, Any]]]:
        ws = [ws_session(streamcb.url, session_frames(i, 12), 0.002) for i in range(150)]
        gr = [grpc_session(streamcb.grpc, session_frames(i, 12), 0.002) for i in range(150, 200)]
        return list(await asyncio.gather(*ws, *gr))

    outs = asyncio.run(all_sessions())
    for i, msgs in enumerate(outs):
        assert texts(msgs) == [f"s{i}-f{j}" for j in range(12)], (i, msgs[-2:])
        assert msgs[-1]["header"]["status"] == 2
    assert wait_until(lambda: destroyed(streamcb) == before + 200, 10)


@pytest.mark.parametrize("via", ["ws", "grpc"])
def test_a_wrapper_raising_mid_stream_ends_that_session_only(streamcb: Loader, via: str) -> None:
    before = destroyed(streamcb)
    frames = [frame(b"a", 0, first=True), frame(b"b", 1), frame(b"raise", 1), frame(b"never", 2)]
    run = ws_session(streamcb.url, frames) if via == "ws" else grpc_session(streamcb.grpc, frames)

    async def both() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        return await asyncio.gather(run, ws_session(streamcb.url, session_frames(7, 5)))
    bad, good = asyncio.run(both())
    assert texts(bad) == ["a", "b"]
    err = bad[-1]["header"]
    assert err["code"] == 10907 and "RuntimeError" in err["message"] and "model broke" in err["message"]
    assert texts(good) == [f"s7-f{j}" for j in range(5)]
    assert wait_until(lambda: destroyed(streamcb) == before + 2, 5)


def test_worker_killed_with_sessions_open_each_told_at_once(tmp_path: Path) -> None:
    """kill -9 of the worker with 40 WebSocket and 10 gRPC sessions open: each gets its 12503 error
    at once (well before the read timeout), none hangs; the restarted worker serves new sessions."""
    loader = start_loader(tmp_path, WRAPPERS / "stream_callback", ws="readTimeout = 30")

    async def open_ws(s: aiohttp.ClientSession, i: int) -> Any:
        ws = await s.ws_connect(loader.url.replace("http", "ws") + "/v1/svcName")
        await ws.send_str(frame(b"x", 0, first=True))
        await ws.receive_str()
        await ws.receive_str()
        return ws

    async def go() -> tuple[float, list[int], list[int]]:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s, \
                grpc.aio.insecure_channel(loader.grpc) as ch:
            socks = await asyncio.gather(*(open_ws(s, i) for i in range(40)))
            hold = asyncio.Event()

            async def requests() -> Any:
                yield api.Envelope(json=frame(b"x", 0, first=True))
                await hold.wait()
            calls = [api_grpc.AigesStub(ch).Stream(requests(), timeout=30) for _ in range(10)]
            for c in calls:
                await c.read()  # ack
                await c.read()  # result
            t0 = time.monotonic()
            os.kill(child_pids(loader.pid)[0], signal.SIGKILL)

            async def ws_end(ws: Any) -> int:
                msg = await ws.receive(timeout=10)
                return int(json.loads(msg.data)["header"]["code"]) if msg.type == aiohttp.WSMsgType.TEXT else -1

            async def grpc_end(c: Any) -> int:
                r = await c.read()
                return int(json.loads(r.json)["header"]["code"]) if r is not grpc.aio.EOF else -1
            ws_codes = await asyncio.gather(*(ws_end(ws) for ws in socks))
            grpc_codes = await asyncio.gather(*(grpc_end(c) for c in calls))
            elapsed = time.monotonic() - t0
            hold.set()
            return elapsed, list(ws_codes), list(grpc_codes)

    try:
        elapsed, ws_codes, grpc_codes = asyncio.run(go())
        assert ws_codes == [12503] * 40 and grpc_codes == [12503] * 10, (ws_codes, grpc_codes)
        assert elapsed < 3
        assert wait_until(lambda: loader.get("/ready")[0] == 200, 30)
        assert texts(asyncio.run(ws_session(loader.url, session_frames(1, 3)))) == ["s1-f0", "s1-f1", "s1-f2"]
    finally:
        loader.stop()


def test_loader_killed_with_sessions_open_the_plugin_destroys_them(tmp_path: Path) -> None:
    """SIGKILL of the loader with 3 sessions open: the plugin sees its lane close (and its parent
    die) and destroys the 3 sessions before it exits."""
    log = tmp_path / "destroy.log"
    loader = start_loader(tmp_path, WRAPPERS / "stream_callback", ws="readTimeout = 30",
                          env={"STREAM_DESTROY_LOG": str(log)})
    plugin = child_pids(loader.pid)[0]

    async def go() -> None:
        async with aiohttp.ClientSession() as s:
            for _ in range(3):
                ws = await s.ws_connect(loader.url.replace("http", "ws") + "/v1/svcName")
                await ws.send_str(frame(b"x", 0, first=True))
                await ws.receive_str()
                await ws.receive_str()
            loader.proc.kill()
            loader.proc.wait(10)

    try:
        asyncio.run(go())
        assert wait_until(lambda: not alive(plugin), 10)
        assert len(log.read_text().split()) == 3
    finally:
        loader.stop()


@pytest.mark.parametrize("style", ["stream_callback", "stream_read"])
def test_sessions_without_the_lane_still_work(tmp_path: Path, style: str) -> None:
    """``[aiges] lane = false``: sessions use the gRPC session path (create, a write stream,
    ``communicate``, destroy), callback- and read-style wrappers alike."""
    log = tmp_path / "destroy.log"
    loader = start_loader(tmp_path, WRAPPERS / style, aiges="lane = false", env={"STREAM_DESTROY_LOG": str(log)})
    try:
        frames = [frame(b"abc", 0, first=True), frame(b"def", 1), frame(b"ghi", 2)]
        msgs = asyncio.run(ws_session(loader.url, frames, 0.02))
        got = [base64.b64decode(m["payload"]["result"]["text"]) for m in msgs if m.get("payload")]
        if style == "stream_read":
            assert got == [b"ABC", b"DEF", b"GHI"]
        else:
            assert [json.loads(g)["text"] for g in got] == ["abc", "def", "ghi"]
        assert wait_until(lambda: log.exists() and len(log.read_text().split()) == 1, 5)
    finally:
        loader.stop()
