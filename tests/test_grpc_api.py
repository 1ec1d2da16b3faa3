"""The public gRPC API (aiges.api.Aiges) with real processes, through aiges.client.GrpcClient."""
from __future__ import annotations

from pathlib import Path

import pytest

from aiges.client import ClientError, GrpcClient
from tests.utils import ROOT, WRAPPERS, Loader, start_loader


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


def test_stream_error_frame(tmp_path: Path) -> None:
    loader = start_loader(tmp_path, WRAPPERS / "stream_callback")
    try:
        with GrpcClient(loader.grpc, service="streamcb") as c, pytest.raises(ClientError) as e:
            list(c.stream([({"text": "a"}, 0)], params={"ctrl": "create_fail"}))
        assert e.value.code == 77 and "cannot create" in e.value.message
    finally:
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
