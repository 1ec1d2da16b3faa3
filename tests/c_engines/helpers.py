"""Requests and checks shared by the C engine tests (tests/test_c_engine*.py)."""
from __future__ import annotations

import asyncio
import base64
import json
import shutil
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.utils import Loader, once_body, start_loader, wait_until


def engine_dir(lib: Path, dest: Path) -> Path:
    """A wrapper directory holding only ``libwrapper.so`` (a copy of ``lib``)."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(lib, dest / "libwrapper.so")
    return dest


def start_c(workdir: Path, lib: Path, aiges: str = "", wrapper: str = "", ws: str = "",
            env: dict[str, str] | None = None, expect_fail: bool = False, timeout: float = 60) -> Loader:
    """A loader serving ``lib`` (auto mode: the wrapper directory has no wrapper.py)."""
    return start_loader(workdir, engine_dir(lib, workdir / "engine"), aiges=aiges, wrapper=wrapper, ws=ws, env=env,
                        expect_fail=expect_fail, timeout=timeout)


def once(loader: Loader, params: dict[str, Any] | None = None, text: bytes = b"hello",
         headers: dict[str, str] | None = None, timeout: float = 30) -> tuple[int, dict[str, Any]]:
    body = once_body("svcName", {"text": {"encoding": "utf8", "status": 3,
                                          "text": base64.b64encode(text).decode()}}, params)
    status, _, doc = loader.post("/v1/svcName", body, headers, timeout)
    return status, doc


def text_of(doc: dict[str, Any], key: str) -> str:
    return str(doc["payload"][key]["text"])


def stats(loader: Loader) -> dict[str, int]:
    status, doc = once(loader, {"ctrl": "stats"})
    assert status == 200, doc
    return json.loads(text_of(doc, "stats"))


def restarted(loader: Loader, timeout: float = 20) -> bool:
    """The worker is back: an echo request answers 200 again."""
    return wait_until(lambda: once(loader, {"ctrl": "echo"}, timeout=5)[0] == 200, timeout, 0.2)


def app_log(loader: Loader) -> str:
    p = loader.log_dir / "app.log"
    return p.read_text(errors="replace") if p.exists() else ""


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def frame(key: str, data: bytes, status: int, params: dict[str, Any] | None = None) -> str:
    doc: dict[str, Any] = {"header": {"status": status},
                           "payload": {key: {"text": base64.b64encode(data).decode(), "status": status}}}
    if params is not None:
        doc["parameter"] = {"svcName": params}
    return json.dumps(doc)


async def _session(url: str, frames: list[str], delay: float, timeout: float,
                   close_after: int | None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    started = time.monotonic()

    async def receive(ws: Any) -> None:
        while True:
            msg = await ws.receive(timeout=timeout)
            if msg.type != aiohttp.WSMsgType.TEXT:
                return
            doc = json.loads(msg.data)
            doc["t"] = time.monotonic() - started  # when it arrived (not part of the frame)
            out.append(doc)

    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(url.replace("http://", "ws://")) as ws:
            reader = asyncio.ensure_future(receive(ws))
            for i, f in enumerate(frames):
                if ws.closed:
                    break  # the server ended the session (an error frame is on its way)
                try:
                    await ws.send_str(f)
                except ConnectionError:
                    break
                out.append({"sent": i, "t": time.monotonic() - started})
                if delay:
                    await asyncio.sleep(delay)
                if close_after is not None and i + 1 >= close_after:
                    await ws.close()
                    break
            await reader
            out.append({"closed": ws.close_code})
    return out


def session(target: Loader | str, frames: list[str], delay: float = 0.0, timeout: float = 15,
            close_after: int | None = None) -> list[dict[str, Any]]:
    """Send the frames over a WebSocket (a loader's /v1/svcName, or a URL) while reading every
    message until the server closes: the messages (with their arrival time "t"),
    {"sent": i, "t": ...} per frame, then {"closed": code}."""
    url = target if isinstance(target, str) else target.url + "/v1/svcName"
    return asyncio.run(_session(url, frames, delay, timeout, close_after))


def results(msgs: list[dict[str, Any]]) -> list[str]:
    """The decoded "echo" texts of a session's result frames, in order."""
    return [base64.b64decode(m["payload"]["echo"]["text"]).decode() for m in msgs if m.get("payload")]


def errors_of(msgs: list[dict[str, Any]]) -> list[tuple[int, str]]:
    return [(m["header"]["code"], m["header"]["message"]) for m in msgs if m.get("header", {}).get("code")]


def plugin_pid(loader: Loader) -> int:
    pids = loader.plugin_pids()
    assert len(pids) == 1, pids
    return pids[0]

