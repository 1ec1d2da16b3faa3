"""Drive `python -m aiges.serve` exactly as upstream's Go loader (hashicorp/go-plugin) does.

env BASIC_PLUGIN=hello + PLUGIN_MIN/MAX_PORT → parse the handshake line → health "plugin" →
open `communicate` → wrapperInit / wrapperSchema / wrapperOnceExec → results by tag on the stream.
"""
from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aiges.wire.pb import aiges_inner_pb2 as pb
from aiges.wire.pb import aiges_inner_pb2_grpc as pb_grpc
from aiges.wire.pb import grpc_controller_pb2 as ctl_pb
from aiges.wire.pb import grpc_controller_pb2_grpc as ctl_grpc
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


# ---- the schema bytes upstream's loader compiles -------------------------------------------
# Upstream compiles `schemainput` with github.com/seeadoog/jsonschema, which rejects every keyword
# it does not know (`example is unknown validator, path=$.parameter.svcName.ctrl`) and then exits.
# This walker is a second opinion written apart from aiges/wire/schema.py: the JSON Schema
# draft-07 validation keywords (draft-handrews-json-schema-validation-01 §6) in the form upstream's
# parser also compiles them, plus the annotations `examples`, `title` and `description`, which it
# skips (and which upstream's /openapi.json shows in its Swagger UI).  Anything else fails,
# including draft-07 keywords that parser rejects or reads differently: exclusiveMinimum,
# exclusiveMaximum, maxProperties, contains, propertyNames, patternProperties, additionalItems,
# format (only its own format names), default (read as a switch branch), readOnly, writeOnly,
# definitions, $ref, $id, and the OpenAPI/Swagger `example`.

def _schema(v: object, where: str) -> list[str]:
    return strict_problems(v, where)


def _schemas(v: object, where: str) -> list[str]:
    if not isinstance(v, list) or not v:
        return [f"{where}: must be a non-empty array of schemas"]
    return [p for i, s in enumerate(v) for p in strict_problems(s, f"{where}[{i}]")]


def _schema_map(v: object, where: str) -> list[str]:
    if not isinstance(v, dict):
        return [f"{where}: must be an object of schemas"]
    return [p for name, s in v.items() for p in strict_problems(s, f"{where}.{name}")]


def _number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _count(v: object, where: str) -> list[str]:
    ok = isinstance(v, int) and not isinstance(v, bool) and v >= 0
    return [] if ok else [f"{where}: must be a non-negative integer, not {v!r}"]


def _check(pred: Any, what: str) -> Any:
    return lambda v, where: [] if pred(v) else [f"{where}: must be {what}, not {v!r}"]


def _pattern(v: object, where: str) -> list[str]:
    if not isinstance(v, str):
        return [f"{where}: must be a string, not {v!r}"]
    try:
        re.compile(v)
    except re.error as e:
        return [f"{where}: not a regular expression ({e})"]
    return []


def _dependencies(v: object, where: str) -> list[str]:
    if not isinstance(v, dict):
        return [f"{where}: must be an object"]
    out: list[str] = []
    for name, dep in v.items():
        if isinstance(dep, list):
            out += [] if all(isinstance(x, str) for x in dep) else [f"{where}.{name}: must list property names"]
        else:
            out += strict_problems(dep, f"{where}.{name}")
    return out


TYPES = {"string", "integer", "number", "boolean", "object", "array"}  # one name: no "null", no lists
STRICT = {
    "type": _check(lambda v: isinstance(v, str) and v in TYPES, f"one of {sorted(TYPES)}"),
    "enum": _check(lambda v: isinstance(v, list) and v, "a non-empty array"),
    "const": lambda v, where: [],
    "multipleOf": _check(lambda v: _number(v) and v > 0, "a number > 0"),
    "maximum": _check(_number, "a number"),
    "minimum": _check(_number, "a number"),
    "maxLength": _count, "minLength": _count, "maxItems": _count, "minItems": _count, "minProperties": _count,
    "pattern": _pattern,
    "uniqueItems": _check(lambda v: isinstance(v, bool), "a boolean"),
    "required": _check(lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v) and len(set(v)) == len(v),
                       "an array of distinct strings"),
    "properties": _schema_map,
    "items": _schema,  # one schema (upstream's parser has no tuple form)
    "additionalProperties": lambda v, where: [] if isinstance(v, bool) else strict_problems(v, where),
    "anyOf": _schemas, "allOf": _schemas, "oneOf": _schemas,
    "not": _schema, "if": _schema, "then": _schema, "else": _schema,
    "dependencies": _dependencies,
    "examples": _check(lambda v: isinstance(v, list), "an array"),
    "title": _check(lambda v: isinstance(v, str), "a string"),
    "description": _check(lambda v: isinstance(v, str), "a string"),
}


def strict_problems(node: object, where: str = "$") -> list[str]:
    """Every keyword of a schema (and of its subschemas) that the strict set does not allow, or
    whose value has the wrong shape, as `path.keyword: why`; [] for a schema upstream compiles."""
    if not isinstance(node, dict):
        return [f"{where}: a schema must be an object, not {node!r}"]
    out: list[str] = []
    for key, value in node.items():
        check = STRICT.get(key)
        out += check(value, f"{where}.{key}") if check else [f"{where}.{key}: unknown keyword"]
    return out


def test_strict_walker_is_strict() -> None:
    """The walker itself: property names are free, keywords are not, values are checked."""
    ok = {"type": "object", "required": ["default"], "properties": {
        "default": {"type": "string", "examples": ["x"], "description": "a property named like a keyword"},
        "example": {"type": "integer", "enum": [1, 2], "minimum": 0, "maximum": 9}}}
    assert strict_problems(ok) == []
    bad = {"type": "object", "properties": {
        "a": {"type": "string", "example": "x"}, "b": {"type": "number", "exclusiveMinimum": 0},
        "c": {"type": "string", "default": "d"}, "d": {"type": ["string", "null"]}, "e": {"maxLength": "9"},
        "f": {"type": "array", "items": [{"type": "string"}]}, "g": {"type": "string", "format": "uri"}}}
    assert [p.split(":")[0] for p in strict_problems(bad)] == [
        "$.properties.a.example", "$.properties.b.exclusiveMinimum", "$.properties.c.default",
        "$.properties.d.type", "$.properties.e.maxLength", "$.properties.f.items", "$.properties.g.format"]


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON (Go's encoding/json rejects it)")


SCHEMA_WRAPPERS = [ROOT / "examples" / "demo"] + sorted(
    p for p in WRAPPERS.iterdir() if (p / "wrapper.py").exists() and p.name != "import_fail")  # no schema by design


@pytest.mark.parametrize("wrapper_dir", SCHEMA_WRAPPERS, ids=lambda p: p.name)
def test_wrapper_schema_bytes_pass_a_strict_draft07_parser(wrapper_dir: Path, tmp_path: Path) -> None:
    """Upstream's order: wrapperInit → wrapperSchema; the exact string our plugin sends is JSON
    (no NaN/Infinity), `meta` has the serviceId and route(s) upstream reads, and `schemainput` /
    `schemaoutput` use only the strict keywords above."""
    host = Host(wrapper_dir, tmp_path)
    try:
        host.stub.wrapperInit(pb.InitRequest(config={"common.lic": "10"}), timeout=30)
        data = host.stub.wrapperSchema(pb.SvcId(serviceId="svcName"), timeout=10).data
    finally:
        host.channel.close()
        host.proc.terminate()
        host.proc.wait(15)
    doc = json.loads(data, parse_constant=_reject_constant)
    meta = doc["meta"]
    routes = meta["route"] if isinstance(meta["route"], list) else [meta["route"]]
    assert isinstance(meta["serviceId"], str) and meta["serviceId"]
    assert routes and all(isinstance(r, str) and r.startswith("/") for r in routes)
    for part in ("schemainput", "schemaoutput"):
        assert strict_problems(doc[part], f"$.{part}") == []
