"""How WebSocket sessions end, with real processes (issue 18 items 3-6, issue 14's close reasons).

Each test starts a loader on a free port (``tests/utils.start_loader``) serving
``tests/wrappers/stream_callback`` (it logs every wrapperDestroy to a file), drives sessions with
aiohttp's client, and reads what the client saw: frames, close code and reason, timing.
"""
from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.utils import WRAPPERS, Loader, child_pids, start_loader, wait_until


def frame(text: bytes, status: int, params: dict[str, Any] | None = None) -> str:
    doc: dict[str, Any] = {"header": {"status": status},
                           "payload": {"text": {"text": base64.b64encode(text).decode(), "status": status}}}
    if params is not None:
        doc["parameter"] = {"streamcb": params}
    return json.dumps(doc)


def loader_with_log(tmp_path: Path, aiges: str = "", ws: str = "") -> tuple[Loader, Path]:
    log = tmp_path / "destroy.log"
    return start_loader(tmp_path, WRAPPERS / "stream_callback", aiges=aiges, ws=ws,
                        env={"STREAM_DESTROY_LOG": str(log)}), log


def destroyed(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


async def read_to_close(ws: aiohttp.ClientWebSocketResponse, timeout: float = 20) -> tuple[list[Any], int | None, str, float]:
    """Every text frame until the server's close → (frames, close code, close reason, when it closed)."""
    out: list[Any] = []
    reason = ""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        msg = await ws.receive(timeout=max(0.01, end - time.monotonic()))
        if msg.type == aiohttp.WSMsgType.TEXT:
            out.append(json.loads(msg.data))
        elif msg.type == aiohttp.WSMsgType.BINARY:
            out.append(msg.data)
        else:
            if msg.type == aiohttp.WSMsgType.CLOSE:
                reason = str(msg.extra or "")
            break
    return out, ws.close_code, reason, time.monotonic()


def test_sigterm_with_open_sessions_errors_closes_destroys_and_exits_within_grace(tmp_path: Path) -> None:
    """SIGTERM with sessions that do not end: at the grace period each gets its 12504 error frame,
    its close right after it, its wrapperDestroy; the loader exits 0 within grace + 1 s -- even
    though these clients never answer the server's close frame."""
    grace = 2.0
    loader, log = loader_with_log(tmp_path, aiges=f"grace = {grace:g}", ws="readTimeout = 30")
    n = 4

    async def go() -> tuple[float, list[tuple[list[Any], int | None, str, float]], int, float]:
        async with aiohttp.ClientSession() as s:
            url = loader.url.replace("http", "ws") + "/v1/svcName"
            socks = [await s.ws_connect(url, autoclose=False) for _ in range(n)]
            for ws in socks:
                await ws.send_str(frame(b"a", 0, {}))
                await ws.receive_str()  # ack
                await ws.receive_str()  # result
            t0 = time.monotonic()
            loader.proc.send_signal(signal.SIGTERM)
            outs = list(await asyncio.gather(*(read_to_close(ws) for ws in socks)))
            rc = await asyncio.to_thread(loader.proc.wait, 15)  # the connections stay open meanwhile
            return t0, outs, rc, time.monotonic()

    try:
        t0, outs, rc, exited_at = asyncio.run(go())
        for frames, code, reason, closed_at in outs:
            assert frames and frames[-1]["header"]["code"] == 12504 and "grace" in frames[-1]["header"]["message"]
            assert code == 1000 and "shutting down" in reason
            assert grace - 0.3 < closed_at - t0 < grace + 0.8, closed_at - t0  # closed right after its error frame
        assert rc == 0 and exited_at - t0 < grace + 1.0, exited_at - t0
        assert len(destroyed(log)) == n, destroyed(log)
        assert "wrapperDestroy(" not in (loader.log_dir / "app.log").read_text()  # no "wrapperDestroy(...) failed"
    finally:
        loader.stop()


def test_header_only_last_frame_ends_the_session(tmp_path: Path) -> None:
    """``{"header":{"status":2},"payload":{}}`` after a first frame is the last frame: the wrapper gets
    an empty last item and the final result comes at once (readTimeout is 5 s here); as a first frame
    it is refused at once, naming what to send."""
    loader, log = loader_with_log(tmp_path, ws="readTimeout = 5")

    async def go(frames: list[str]) -> tuple[list[Any], int | None, str, float, float]:
        async with aiohttp.ClientSession() as s:
            async with s.ws_connect(loader.url.replace("http", "ws") + "/v1/svcName") as ws:
                t = time.monotonic()
                for f in frames:
                    await ws.send_str(f)
                got = await read_to_close(ws)
                return (*got, t)

    try:
        header_only = json.dumps({"header": {"status": 2}, "payload": {}})
        frames, code, _, closed_at, t = asyncio.run(go([frame(b"abc", 0, {}), header_only]))
        results = [f for f in frames if "payload" in f]
        assert [json.loads(base64.b64decode(r["payload"]["result"]["text"]))["text"] for r in results] == ["abc", ""]
        assert results[-1]["header"]["status"] == 2 and code == 1000
        assert closed_at - t < 2.0
        assert wait_until(lambda: len(destroyed(log)) == 1, 3)

        frames, code, reason, closed_at, t = asyncio.run(go([header_only]))
        assert frames[-1]["header"]["code"] == 10009 and "no input yet" in frames[-1]["header"]["message"]
        assert closed_at - t < 2.0 and code == 1000
    finally:
        loader.stop()


def test_nothing_follows_an_error_frame(tmp_path: Path) -> None:
    """Results keep coming (a wrapper thread pushes one every millisecond) when the client sends a
    binary frame, or a frame with status 4: after the session's error frame nothing else is sent."""
    loader, log = loader_with_log(tmp_path)

    async def one(bad: str | bytes) -> list[Any]:
        async with aiohttp.ClientSession() as s:
            async with s.ws_connect(loader.url.replace("http", "ws") + "/v1/svcName") as ws:
                await ws.send_str(frame(b"flood:400", 0, {}))
                await ws.receive_str()  # ack
                for _ in range(3):
                    await ws.receive_str()  # results are flowing
                if isinstance(bad, bytes):
                    await ws.send_bytes(bad)
                else:
                    await ws.send_str(bad)
                return (await read_to_close(ws))[0]

    async def many() -> list[list[Any]]:
        bad4 = frame(b"x", 1).replace('"status": 1}}', '"status": 4}}')
        return await asyncio.gather(*(one(b"\x00\x01" if i % 2 else bad4) for i in range(30)))

    try:
        for frames in asyncio.run(many()):
            errs = [i for i, f in enumerate(frames) if f["header"]["code"]]
            assert errs, frames[-3:]
            assert errs[0] == len(frames) - 1, f"frames after the error frame: {frames[errs[0]:][:3]}"
        assert wait_until(lambda: len(destroyed(log)) == 30, 5)
    finally:
        loader.stop()


def test_close_frames_carry_a_reason_as_upstreams(tmp_path: Path) -> None:
    """The close after an error frame says why: ``time out`` after the read timeout, ``parse request
    json error`` after a bad frame, the error's message otherwise; a normal end closes with 1000."""
    loader, _ = loader_with_log(tmp_path, ws="readTimeout = 1")

    async def go(frames: list[str]) -> tuple[list[Any], int | None, str, float]:
        async with aiohttp.ClientSession() as s:
            async with s.ws_connect(loader.url.replace("http", "ws") + "/v1/svcName") as ws:
                for f in frames:
                    await ws.send_str(f)
                return await read_to_close(ws)

    try:
        frames, code, reason, _ = asyncio.run(go([frame(b"a", 0, {})]))
        assert frames[-1]["header"]["code"] == 10114 and (code, reason) == (1000, "time out")
        frames, code, reason, _ = asyncio.run(go([frame(b"a", 0, {}), "{oops"]))
        assert frames[-1]["header"]["code"] == 10163 and (code, reason) == (1000, "parse request json error")
        frames, code, reason, _ = asyncio.run(go([frame(b"a", 0, {}), frame(b"fail", 1)]))
        assert frames[-1]["header"]["code"] == 55 and code == 1000
        assert reason == frames[-1]["header"]["message"] and "frame rejected" in reason
        frames, code, reason, _ = asyncio.run(go([frame(b"a", 0, {}), frame(b"b", 2)]))
        assert frames[-1]["header"]["status"] == 2 and (code, reason) == (1000, "")
    finally:
        loader.stop()


def rss_mb(pid: int) -> float:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_loader_memory_returns_after_worker_crashes_with_many_sessions(tmp_path: Path) -> None:
    """300 open sessions (clients offering permessage-deflate, as browsers and the ``websockets``
    library do), then kill -9 of the worker, four times: every session gets its 12503 error frame
    and close, and the loader's RSS comes back to what the same sessions cost when they end normally."""
    loader = start_loader(tmp_path, WRAPPERS / "stream_callback", ws="readTimeout = 60")
    n = 300

    async def cycle(crash: bool) -> tuple[float, list[int]]:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
            url = loader.url.replace("http", "ws") + "/v1/svcName"
            gate = asyncio.Semaphore(50)

            async def one() -> aiohttp.ClientWebSocketResponse:
                async with gate:
                    ws = await s.ws_connect(url, compress=15)
                    await ws.send_str(frame(b"a", 0, {}))
                    await ws.receive_str()  # ack
                    await ws.receive_str()  # result
                    return ws
            socks = await asyncio.gather(*(one() for _ in range(n)))
            rss_open = rss_mb(loader.pid)
            if crash:
                os.kill(child_pids(loader.pid)[0], signal.SIGKILL)
            else:
                await asyncio.gather(*(ws.send_str(frame(b"z", 2)) for ws in socks))
            outs = await asyncio.gather(*(read_to_close(ws) for ws in socks))
            codes = [f[-1]["header"]["code"] if f else -1 for f, *_ in outs]
            return rss_open, codes

    def settle() -> float:
        assert wait_until(lambda: loader.get("/ready")[0] == 200, 30)
        time.sleep(1.0)
        return rss_mb(loader.pid)

    try:
        _, codes = asyncio.run(cycle(crash=False))
        assert codes == [0] * n
        normal = settle()
        after = []
        for _ in range(4):
            _, codes = asyncio.run(cycle(crash=True))
            assert codes == [12503] * n
            after.append(settle())
        assert max(after) < normal + 15, (normal, after)
    finally:
        loader.stop()


def test_sigterm_as_the_only_session_ends_exits_0_at_once(tmp_path: Path) -> None:
    """SIGTERM just as the only open session ends (its client closes; or it got its final result):
    the drain has nothing left to wait for or to end, the session is destroyed, exit 0 at once."""
    loader, log = loader_with_log(tmp_path, aiges="grace = 5", ws="readTimeout = 30")

    async def go() -> float:
        async with aiohttp.ClientSession() as s:
            ws = await s.ws_connect(loader.url.replace("http", "ws") + "/v1/svcName")
            await ws.send_str(frame(b"a", 0, {}))
            await ws.receive_str()  # ack
            await ws.receive_str()  # result
            await ws.close()
            t0 = time.monotonic()
            loader.proc.send_signal(signal.SIGTERM)
            return t0

    try:
        t0 = asyncio.run(go())
        assert loader.proc.wait(15) == 0 and time.monotonic() - t0 < 3, loader.stderr()[-2000:]
        assert destroyed(log) == ["cb-1"]
    finally:
        loader.stop()
