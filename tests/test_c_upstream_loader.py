"""A C engine behind upstream's real Go loader (``AIservice``, python mode, as its users run it):
upstream starts our plugin with ``AIGES_PLUGIN_MODE=python``; the project's ``wrapper.py`` only
declares fields and names ``libwrapper.so``, so the plugin serves the C library.  Upstream's
strict schema parser accepts the schema, its once route answers, and a WebSocket session gets one
result per frame.  Skipped without the binary (see tests/test_upstream_loader.py)."""
from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.c_engines.build import compiler
from tests.test_scaffold import aiges
from tests.test_upstream_loader import TEXT_EXPECT, UPSTREAM_BIN, start_upstream

pytestmark = pytest.mark.skipif(not UPSTREAM_BIN.is_file() or compiler() is None or shutil.which("make") is None,
                                reason="needs upstream's AIservice binary, a C compiler and make")


def project(tmp_path: Path) -> Path:
    proc = aiges(["create", "--lang", "c", "-n", "ctext", "-p", str(tmp_path)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    built = subprocess.run(["make"], cwd=tmp_path / "ctext", capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stderr
    return tmp_path / "ctext"


def body(text: bytes, status: int = 3) -> dict[str, Any]:
    return {"header": {"appid": "123456", "status": status},
            "parameter": {"ctext": {"mode": "lower", "result": TEXT_EXPECT}},
            "payload": {"text": {"encoding": "utf8", "status": status, "text": base64.b64encode(text).decode()}}}


def test_c_engine_once_under_upstreams_loader(tmp_path: Path) -> None:
    up = start_upstream(tmp_path / "run", project(tmp_path))
    try:
        status, doc, _ = up.post("/v1/private/ctext", body(b"Hello From Upstream"))
        assert status == 200, (doc, up.logs())
        assert doc["header"]["code"] == 0
        assert json.loads(doc["payload"]["result"]["text"]) == {"text": "hello from upstream", "chars": 19,
                                                                 "words": 3}
    finally:
        up.stop(grace=0.5)


def test_c_engine_session_under_upstreams_loader(tmp_path: Path) -> None:
    up = start_upstream(tmp_path / "run", project(tmp_path), session=True)

    async def run() -> list[dict[str, Any]]:
        msgs: list[dict[str, Any]] = []
        async with aiohttp.ClientSession() as s:
            url = up.url.replace("http://", "ws://") + "/v1/private/ctext"
            async with s.ws_connect(url, timeout=aiohttp.ClientWSTimeout(ws_close=2)) as ws:
                for status, text in ((0, b"one"), (1, b"two words"), (2, b"three more words")):
                    await ws.send_str(json.dumps(body(text, status)))
                until = time.monotonic() + 10
                while (left := until - time.monotonic()) > 0:
                    try:
                        msg = await ws.receive(timeout=left)
                    except asyncio.TimeoutError:
                        break
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        break
                    msgs.append(json.loads(msg.data))
                    if msgs[-1].get("payload") and msgs[-1]["header"]["status"] == 2:
                        break
        return msgs
    try:
        msgs = asyncio.run(run())
        assert all(m["header"]["code"] == 0 for m in msgs), (msgs, up.logs())
        words = [json.loads(base64.b64decode(m["payload"]["result"]["text"]))["words"] for m in msgs if m.get("payload")]
        assert words == [1, 2, 3], msgs
    finally:
        up.stop(grace=0.5)
