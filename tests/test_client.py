"""aiges.client against real loaders: HTTP once and WebSocket sessions, successes and errors."""
from __future__ import annotations

import asyncio
import base64
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from aiges.client import (
    TRANSPORT_ERROR,
    ClientError,
    HttpClient,
    Input,
    Result,
    StreamSession,
    build_envelope,
    decode_outputs,
    service_from_url,
)
from tests.utils import WRAPPERS, Loader, start_loader


@pytest.fixture(scope="module")
def echo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loader]:
    loader = start_loader(tmp_path_factory.mktemp("echo"), WRAPPERS / "echo")
    yield loader
    loader.stop()


@pytest.fixture(scope="module")
def echo_stream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loader]:
    loader = start_loader(tmp_path_factory.mktemp("echo_stream"), WRAPPERS / "echo_stream", ws="readTimeout = 5")
    yield loader
    loader.stop()


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 20))


# ---------------------------------------------------------------- codec, no server
def test_envelope_from_plain_values() -> None:
    doc = build_envelope("demo", {"text": "héllo", "img": Input(b"\x89PNG", type="image", attrs={"encoding": "png"})},
                         params={"mode": "upper", "repeat": 2}, expect={"result": "text", "box": {"data_type": "other"}})
    assert doc["parameter"] == {"demo": {"mode": "upper", "repeat": 2, "result": {"data_type": "text"},
                                         "box": {"data_type": "other"}}}
    assert doc["payload"]["text"] == {"text": base64.b64encode("héllo".encode()).decode(), "status": 3}
    assert doc["payload"]["img"] == {"encoding": "png", "image": base64.b64encode(b"\x89PNG").decode(), "status": 3}
    assert doc["header"]["status"] == 3
    assert service_from_url("http://h:1/v1/private/demo") == "demo"
    assert service_from_url("ws://h:1/v1/svcName/") == "svcName"


def test_decode_outputs_text_raw_and_base64() -> None:
    payload = {"result": {"seq": "0", "status": "3", "text": "HELLO", "format": "plain"},
               "raw": {"seq": "0", "status": "3", "text": base64.b64encode(b"\xff\xfe").decode(), "encoding": "base64"},
               "img": {"seq": "0", "status": "3", "image": base64.b64encode(b"\x00\x01").decode()}}
    got = {r.key: r for r in decode_outputs(payload, text_raw=True)}
    assert got["result"] == Result("result", b"HELLO", "text", 3, "0", {"format": "plain"})
    assert got["result"].value == "HELLO"
    assert got["raw"].data == b"\xff\xfe" and got["raw"].value == b"\xff\xfe"  # not UTF-8: bytes, never mangled
    assert got["img"].value == b"\x00\x01" and got["img"].type == "image"
    frame = decode_outputs({"result": {"seq": "2", "status": "1", "text": base64.b64encode(b"hi").decode()}},
                           text_raw=False)
    assert frame[0].data == b"hi" and frame[0].seq == "2" and frame[0].status == 1


# ---------------------------------------------------------------- HTTP once
def test_once_success_on_both_routes(demo: Loader) -> None:
    for route in ("/v1/svcName", "/v1/private/demo"):
        with HttpClient(demo.url + route) as c:
            resp = c.once({"text": "hello aiges"}, params={"mode": "upper", "repeat": 2}, expect={"result": "text"})
            assert resp["result"] == "HELLO AIGES HELLO AIGES"
            assert resp.sid and resp.status == 3
            assert resp.outputs["result"].type == "text" and resp.outputs["result"].seq == "0"
            # the kept-alive connection serves the next request too
            assert c.once({"text": b"abc"}, params={"mode": "reverse"})["result"] == "cba"


def test_once_error_carries_code_message_sid_status(demo: Loader) -> None:
    with HttpClient(demo.url + "/v1/private/demo") as c:
        with pytest.raises(ClientError) as ei:
            c.once({"text": "x"}, params={"mode": "bogus"})
        assert ei.value.code == 10107 and ei.value.http_status == 400
        assert "parameter.demo.mode" in ei.value.message and ei.value.sid
        # the connection survives an error answer
        assert c.once({"text": "ok"})["result"] == "OK"


def test_once_wrapper_error(echo: Loader) -> None:
    with HttpClient(echo.url + "/v1/svcName") as c:
        assert c.once({"text": "same"})["result"] == "same"
        with pytest.raises(ClientError) as ei:
            c.once({"text": "!fail"})
        assert (ei.value.code, ei.value.http_status) == (401, 500)
        assert ei.value.message == "echo was asked to fail"


def test_transport_errors() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ClientError) as ei:
        HttpClient(f"http://127.0.0.1:{port}/v1/svcName", timeout=2).once({"text": "x"})
    assert ei.value.code == TRANSPORT_ERROR

    async def session() -> None:
        async with StreamSession(f"ws://127.0.0.1:{port}/v1/svcName", timeout=2):
            pass

    with pytest.raises(ClientError) as ei:
        run(session())
    assert ei.value.code == TRANSPORT_ERROR


# ---------------------------------------------------------------- WebSocket sessions
def test_stream_results_in_order(echo_stream: Loader) -> None:
    parts = [f"part-{i}" for i in range(12)]

    async def session() -> tuple[str, list[Result]]:
        async with StreamSession(echo_stream.url + "/v1/svcName") as s:
            for i, p in enumerate(parts):
                await s.send("text", p, status=0 if i == 0 else 2 if i == len(parts) - 1 else 1)
            results = [r async for r in s.results()]
            return s.sid, results

    sid, results = run(session())
    assert sid
    assert [r.text for r in results] == parts
    assert [r.seq for r in results] == [str(i) for i in range(1, len(parts) + 1)]
    assert [r.status for r in results] == [1] * (len(parts) - 1) + [2]
    assert all(r.key == "result" and r.type == "text" for r in results)


def test_stream_interleaved_send_and_receive(demo: Loader) -> None:
    """Results arrive while the session is open; session params reach every frame."""

    async def session() -> list[str]:
        got = []
        async with StreamSession(demo.url + "/v1/private/demo", params={"mode": "upper"}) as s:
            results = s.results()
            for i, word in enumerate(["one ", "two ", "three"]):
                await s.send("text", word, status=0 if i == 0 else 2 if word == "three" else 1)
                got.append((await results.__anext__()).text)
            async for r in results:  # nothing left after the final result
                got.append(r.text)
        return got

    assert run(session()) == ["ONE ", "TWO ", "ONE TWO THREE"]


def test_stream_wrapper_error_frame(echo_stream: Loader) -> None:
    async def session() -> list[str]:
        got = []
        async with StreamSession(echo_stream.url + "/v1/svcName") as s:
            await s.send("text", "fine", status=0)
            await s.send("text", "!fail", status=1)
            async for r in s.results():
                got.append(r.text)
        return got

    with pytest.raises(ClientError) as ei:
        run(session())
    assert ei.value.code == 402 and ei.value.message == "echo_stream was asked to fail" and ei.value.sid


def test_stream_validation_error_frame(demo: Loader) -> None:
    """A later frame's bad parameter ends the session with an error frame naming it."""

    async def session() -> None:
        async with StreamSession(demo.url + "/v1/svcName", params={"mode": "upper"}) as s:
            await s.send("text", "a", status=0)
            await s.send("text", "b", status=1, params={"mode": "bogus"})
            async for _ in s.results():
                pass

    with pytest.raises(ClientError) as ei:
        run(session())
    assert ei.value.code == 10107 and "mode" in ei.value.message
