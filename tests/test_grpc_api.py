"""The public gRPC API (aiges.api.Aiges) with real processes, through aiges.client.GrpcClient."""
from __future__ import annotations

import json
import threading
from pathlib import Path

import grpc
import pytest

from aiges.client import ClientError, GrpcClient
from aiges.wire.pb import aiges_api_pb2 as api
from aiges.wire.pb import aiges_api_pb2_grpc as api_grpc
from tests.utils import ROOT, WRAPPERS, Loader, start_loader, wait_until


def test_once_and_errors(demo: Loader) -> None:
    assert demo.grpc, "the loader prints its gRPC address"
    with GrpcClient(demo.grpc, service="demo") as c:
        r = c.once({"text": "hello"}, params={"mode": "upper", "repeat": 2})
        assert r["result"] == "HELLO HELLO" and r.sid
        with pytest.raises(ClientError) as e:
            c.once({"text": "x"}, params={"repeat": 9})
        assert e.value.code == 10107 and "parameter.demo.repeat" in e.value.message and e.value.sid


def test_stream_session(demo: Loader) -> None:
    with GrpcClient(demo.grpc, service="demo") as c:
        results = list(c.stream([({"text": "ab"}, 0), ({"text": "cd"}, 1), ({"text": "ef"}, 2)],
                                params={"mode": "upper"}))
    assert [r.data for r in results] == [b"AB", b"CD", b"ABCDEF"]
    assert results[-1].status == 2


def test_stream_half_closed_before_its_last_frame_ends_at_once(demo: Loader) -> None:
    with GrpcClient(demo.grpc, service="demo") as c, pytest.raises(ClientError) as e:
        list(c.stream([({"text": "ab"}, 0)]))  # no status-2 frame, then the client half-closes
    assert e.value.code == 10009 and "before the last frame" in e.value.message


def test_stream_error_frame(tmp_path: Path) -> None:
    loader = start_loader(tmp_path, WRAPPERS / "stream_callback")
    try:
        with GrpcClient(loader.grpc, service="streamcb") as c, pytest.raises(ClientError) as e:
            list(c.stream([({"text": "a"}, 0)], params={"ctrl": "create_fail"}))
        assert e.value.code == 77 and "cannot create" in e.value.message
    finally:
        loader.stop()


def test_stream_cancelled_by_client_destroys_once(tmp_path: Path) -> None:
    """A client that cancels its Stream call mid-session: the session ends, wrapperDestroy runs once.
    (A client that only half-closes its request stream keeps getting results: test_stream_session.)"""
    log = tmp_path / "destroy.log"
    loader = start_loader(tmp_path, WRAPPERS / "stream_callback", env={"STREAM_DESTROY_LOG": str(log)})
    release = threading.Event()

    def frames():  # one frame, then the client holds its side open until the test lets go
        yield api.Envelope(json=json.dumps({"parameter": {"streamcb": {}}, "payload": {
            "text": {"text": "YQ==", "status": 0}}}))
        release.wait(10)

    try:
        with grpc.insecure_channel(loader.grpc) as ch:
            call = api_grpc.AigesStub(ch).Stream(frames(), timeout=10)
            replies = [json.loads(next(call).json) for _ in range(2)]  # the session's ack, then a result
            assert replies[0]["header"]["status"] == 0 and "result" in replies[1]["payload"]
            call.cancel()
        release.set()
        assert wait_until(lambda: log.exists() and len(log.read_text().split()) == 1, 5)
        threading.Event().wait(0.3)
        assert len(log.read_text().split()) == 1
    finally:
        release.set()
        loader.stop()


def test_api_key_on_grpc(tmp_path: Path) -> None:
    loader = start_loader(tmp_path, ROOT / "examples" / "demo", auth='apiKeys = ["k"]')
    try:
        with GrpcClient(loader.grpc, service="demo") as c, pytest.raises(ClientError) as e:
            c.once({"text": "x"})
        assert e.value.code == 12401
        with GrpcClient(loader.grpc, service="demo") as c, pytest.raises(ClientError) as e:
            list(c.stream([({"text": "q"}, 2)]))
        assert e.value.code == 12401
        with GrpcClient(loader.grpc, service="demo", api_key="k") as c:
            assert c.once({"text": "x"})["result"] == "X"
            assert [r.data for r in c.stream([({"text": "q"}, 2)])] == [b"Q"]
    finally:
        loader.stop()
