"""Drive `python -m aiges.serve` exactly as upstream's Go loader (hashicorp/go-plugin) does.

env BASIC_PLUGIN=hello + PLUGIN_MIN/MAX_PORT → parse the handshake line → health "plugin" →
open `communicate` → wrapperInit / wrapperSchema / wrapperOnceExec → results by tag on the stream.
"""
from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aiges._pb import aiges_inner_pb2 as pb
from aiges._pb import aiges_inner_pb2_grpc as pb_grpc
from aiges._pb import grpc_controller_pb2 as ctl_pb
from aiges._pb import grpc_controller_pb2_grpc as ctl_grpc
from tests.utils import ROOT, WRAPPERS, alive, wait_until

PNG = (WRAPPERS / "image_stats" / "test_data" / "test.png").read_bytes()


class Host:
    def __init__(self, wrapper_dir: Path, cwd: Path) -> None:
        env = dict(os.environ, BASIC_PLUGIN="hello", PLUGIN_MIN_PORT="10000", PLUGIN_MAX_PORT="25000",
                   PLUGIN_PROTOCOL_VERSIONS="1", AIGES_PLUGIN_MODE="python",
                   PYTHONPATH=f"{ROOT}{os.pathsep}{wrapper_dir}")
        env.pop("AIGES_PLUGIN_SOCKET", None)
        # upstream runs `bash -c "<pythonPluginCmd>"`
        self.proc = subprocess.Popen(["bash", "-c", f"{sys.executable} -m aiges.serve"], env=env, cwd=cwd,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert self.proc.stdout is not None
        self.handshake = self.proc.stdout.readline().decode().strip()
        core, app, net, addr, proto = self.handshake.split("|")
        assert (core, app, net, proto) == ("1", "1", "tcp", "grpc")
        self.port = int(addr.rsplit(":", 1)[1])
        self.channel = grpc.insecure_channel(addr)
        self.stub = pb_grpc.WrapperServiceStub(self.channel)
        self.results: queue.Queue[pb.Response] = queue.Queue()
        self.stream = self.stub.communicate(iter(()))
        threading.Thread(target=self._recv, daemon=True).start()

    def _recv(self) -> None:
        try:
            for resp in self.stream:
                self.results.put(resp)
        except grpc.RpcError:
            pass

    def result(self, tag: str, timeout: float = 5) -> pb.Response:
        while True:
            r = self.results.get(timeout=timeout)
            if r.tag == tag:
                return r


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    h = Host(WRAPPERS / "image_stats", tmp_path)
    yield h
    h.channel.close()
    if h.proc.poll() is None:
        h.proc.terminate()
        h.proc.wait(15)


def test_handshake_port_range_and_health(host: Host) -> None:
    assert 10000 <= host.port <= 25000
    health = health_pb2_grpc.HealthStub(host.channel)
    r = health.Check(health_pb2.HealthCheckRequest(service="plugin"), timeout=5)
    assert r.status == health_pb2.HealthCheckResponse.SERVING


def test_once_result_arrives_on_communicate_by_tag(host: Host) -> None:
    ret = host.stub.wrapperInit(pb.InitRequest(config={"common.lic": "10"}), timeout=10)
    assert ret.ret == 0
    schema = json.loads(host.stub.wrapperSchema(pb.SvcId(serviceId="svcName"), timeout=5).data)
    assert schema["meta"]["route"] == "/v1/svcName" and schema["meta"]["serviceId"] == "svcName"
    item = pb.RequestData(key="img", data=PNG, len=len(PNG), type=2, status=3)
    for i in range(3):
        tag = f"uuid-{i}"
        host.stub.wrapperOnceExec(pb.Request(tag=tag, params={"ctrl": "c", "sid": tag}, list=[item]), timeout=5)
        r = host.result(tag)
        assert r.ret == 0 and r.list[0].key == "result" and r.list[0].status == 3
        assert json.loads(r.list[0].data)["width"] == 28


def test_failures_arrive_as_ret_on_the_stream(host: Host) -> None:
    host.stub.wrapperInit(pb.InitRequest(), timeout=10)
    item = pb.RequestData(key="img", data=PNG, len=len(PNG), type=2, status=3)
    for ctrl, code, word in (("raise", 10909, "RuntimeError"), ("empty", 10909, "empty"), ("err", 100, "exception")):
        host.stub.wrapperOnceExec(pb.Request(tag=ctrl, params={"ctrl": ctrl}, list=[item]), timeout=5)
        r = host.result(ctrl, timeout=2)
        assert r.ret == code and word in r.msg


def test_session_on_the_plugin_link(host: Host) -> None:
    """Upstream's session flow: create (userTag) → write frames → results tagged on communicate → destroy."""
    host.stub.wrapperInit(pb.InitRequest(), timeout=10)
    h = host.stub.wrapperCreate(pb.CreateRequest(params={"sid": "s1"}, sid="s1", tag="s1"), timeout=5)
    assert h.err_code == 0 and h.handle.startswith("hd-test-")
    for status in (0, 1, 2):
        item = pb.RequestData(key="img", data=PNG, len=len(PNG), type=2, status=status)
        # upstream sends no params and an empty sid on writes
        ret = host.stub.wrapperWrite(pb.WriteMessage(req=pb.Request(tag="s1", list=[item]), handle=h.handle), timeout=5)
        assert ret.ret == 0
        r = host.result("s1")
        assert r.list[0].status == status and json.loads(r.list[0].data)["frame"] == status + 1
    assert host.stub.wrapperDestroy(pb.Handle(handle=h.handle), timeout=5).ret == 0


def test_controller_shutdown_and_sigterm_exit_zero(host: Host) -> None:
    host.stub.wrapperInit(pb.InitRequest(), timeout=10)
    ctl_grpc.GRPCControllerStub(host.channel).Shutdown(ctl_pb.Empty(), timeout=5)
    assert host.proc.wait(15) == 0


def test_magic_cookie_required(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "BASIC_PLUGIN"}
    p = subprocess.run([sys.executable, "-m", "aiges.serve"], env=env, capture_output=True, timeout=30, cwd=tmp_path)
    assert p.returncode == 1 and p.stdout == b"" and b"BASIC_PLUGIN" in p.stderr


def test_plugin_exits_when_parent_dies(tmp_path: Path) -> None:
    """A parent (bash here, standing in for the Go loader) killed with SIGKILL: the plugin follows."""
    env = dict(os.environ, BASIC_PLUGIN="hello", PYTHONPATH=f"{ROOT}{os.pathsep}{WRAPPERS / 'image_stats'}")
    parent = subprocess.Popen(["bash", "-c", f"{sys.executable} -m aiges.serve & wait"], env=env, cwd=tmp_path,
                              stdout=subprocess.PIPE)
    assert parent.stdout is not None
    assert parent.stdout.readline().startswith(b"1|1|tcp|127.0.0.1:")
    from tests.utils import child_pids
    [plugin] = child_pids(parent.pid)
    parent.kill()
    parent.wait()
    assert wait_until(lambda: not alive(plugin), 2.0)


def test_write_returning_after_destroy_never_reads_for_the_handles_next_session(tmp_path: Path) -> None:
    """Upstream's host does not wait for a write before destroying: when that write returns after
    the destroy, no wrapperRead poller may start for the handle, whose next session must get its
    own results under its own tag."""
    host = Host(WRAPPERS / "stream_read", tmp_path)
    try:
        host.stub.wrapperInit(pb.InitRequest(), timeout=10)
        a = host.stub.wrapperCreate(pb.CreateRequest(params={"reuse": "1"}, sid="A", tag="A"), timeout=5)
        slow = pb.RequestData(key="text", data=b"sleep:1", status=1)
        write = host.stub.wrapperWrite.future(pb.WriteMessage(req=pb.Request(tag="A", list=[slow]), handle=a.handle),
                                              timeout=10)
        time.sleep(0.3)
        assert host.stub.wrapperDestroy(pb.Handle(handle=a.handle), timeout=10).ret == 0
        assert write.result(10).ret == 0
        b = host.stub.wrapperCreate(pb.CreateRequest(params={"reuse": "1"}, sid="B", tag="B"), timeout=5)
        assert b.handle == a.handle  # the pooled handle again
        last = pb.RequestData(key="text", data=b"b1", status=2)
        assert host.stub.wrapperWrite(pb.WriteMessage(req=pb.Request(tag="B", list=[last]), handle=b.handle),
                                      timeout=5).ret == 0
        r = host.result("B")
        assert r.list[0].data == b"B1" and r.list[0].status == 2
        time.sleep(0.3)
        stray = [host.results.get_nowait() for _ in range(host.results.qsize())]
        assert not [x for x in stray if x.tag == "A"], stray
        host.stub.wrapperDestroy(pb.Handle(handle=b.handle), timeout=5)
    finally:
        host.channel.close()
        host.proc.terminate()
        host.proc.wait(15)
