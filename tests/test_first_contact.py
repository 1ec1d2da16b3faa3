"""Upstream clients answered as upstream answers them (issue 14), on a real loader + plugin.

What upstream's gin router does besides its routes (checked against the real binary in
tests/test_upstream_loader.py ``test_router_answers_as_ours``): a trailing slash is redirected (307
keeps method and body, 301 for GET), any method on ``/`` goes to the Swagger page (302); and what
HTTP requires of us: every 405 names the allowed methods.
"""
from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import signal
import subprocess
import sys
from http.client import HTTPConnection
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import grpc
import pytest
import requests

from aiges.client import ClientError, GrpcClient, StreamSession
from aiges.config import Settings
from aiges.loader import which_wrapper
from aiges.loader.workers.output import TRACEBACK, TracebackJoiner
from aiges.wire.pb import aiges_api_pb2 as api
from aiges.wire.pb import aiges_api_pb2_grpc as api_grpc
from tests.utils import ROOT, SERVING, Loader, http, once_body, start_loader, wait_until

TEXT = {"text": {"text": base64.b64encode(b"hello").decode(), "status": 3}}


def raw(loader: Loader, method: str, path: str, body: bytes | None = None,
        headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request, no redirect followed: the status, headers and body as the server sent them."""
    url = urlsplit(loader.url)
    conn = HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


@pytest.mark.parametrize("path, location", [
    ("/v1/svcName/", "/v1/svcName"),
    ("/v1/private/demo/", "/v1/private/demo"),  # the schema route too
    ("/v1/svcName/?trace=1&x=%2F", "/v1/svcName?trace=1&x=%2F"),  # the query string is kept
    ("/infer/", "/infer"),
])
def test_trailing_slash_post_is_redirected_with_307(demo: Loader, path: str, location: str) -> None:
    body = json.dumps(once_body("demo", TEXT)).encode()
    status, headers, data = raw(demo, "POST", path, body)
    assert (status, headers.get("Location"), data) == (307, location, b"")
    assert headers.get("Access-Control-Allow-Origin") == "*"


def test_a_client_that_follows_redirects_reaches_the_service(demo: Loader) -> None:
    """python-requests (as curl -L and browsers) repeats the POST with its body at the Location."""
    r = requests.post(demo.url + "/v1/svcName/", json=once_body("demo", TEXT, {"mode": "upper"}), timeout=10)
    assert [h.status_code for h in r.history] == [307]
    assert r.status_code == 200 and r.json()["payload"]["result"]["text"] == "HELLO", r.text


def test_trailing_slash_get_is_301_and_other_methods_stay_404(demo: Loader) -> None:
    """GET (the WebSocket side of an inference route) gets gin's 301; a method the slash-less path
    does not serve is not redirected, so it stays an honest 404 in the envelope."""
    status, headers, _ = raw(demo, "GET", "/v1/svcName/")
    assert (status, headers.get("Location")) == (301, "/v1/svcName")
    status, headers, _ = raw(demo, "GET", "/health/")
    assert (status, headers.get("Location")) == (301, "/health")
    for method, path in (("PUT", "/v1/svcName/"), ("POST", "/health/"), ("POST", "/no/such/")):
        status, headers, data = raw(demo, method, path, b"{}")
        assert status == 404 and "Location" not in headers, (method, path)
        assert json.loads(data)["header"]["code"] == 12404


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"])
def test_any_method_on_root_goes_to_swagger(demo: Loader, method: str) -> None:
    status, headers, _ = raw(demo, method, "/", b"x" if method in ("POST", "PUT", "PATCH") else None)
    assert (status, headers.get("Location")) == (302, "/swagger/index.html")


@pytest.mark.parametrize("method, path, allow", [
    ("POST", "/health", "GET, HEAD"),
    ("DELETE", "/metrics", "GET, HEAD"),
    ("GET", "/infer", "POST"),
    ("PUT", "/v1/svcName", "GET, POST"),
    ("GET", "/v1/svcName", "GET, POST"),  # refused by the handler itself: GET there needs a WebSocket upgrade
])
def test_every_405_names_the_allowed_methods(demo: Loader, method: str, path: str, allow: str) -> None:
    status, headers, data = raw(demo, method, path, b"{}" if method != "GET" else None)
    assert status == 405 and headers.get("Allow") == allow, (headers, data)
    assert json.loads(data)["header"]["code"] == 12405


def test_expect_data_type_against_declared_output_is_10106(demo: Loader) -> None:
    """An expect object asking for another type than the declared output: upstream's code 10106
    (its "invalid output"), answered before the wrapper runs, as a 400 naming the field."""
    status, _, resp = demo.post("/v1/svcName", once_body("demo", TEXT, expect={"result": {"data_type": "image"}}))
    assert status == 400 and resp["header"]["code"] == 10106, resp
    assert "parameter.demo.result.data_type" in resp["header"]["message"] and "text" in resp["header"]["message"]
    # with another broken rule in the same request, it is a validation failure (10107) naming both
    status, _, resp = demo.post("/v1/svcName", once_body("demo", TEXT, {"repeat": 9},
                                                         expect={"result": {"data_type": "image"}}))
    assert status == 400 and resp["header"]["code"] == 10107, resp
    assert "parameter.demo.repeat" in resp["header"]["message"] and "data_type" in resp["header"]["message"]


# ---------------------------------------------------------------- which wrapper.py, and why
FASTML = ROOT / "examples" / "fastml"
DEMO = ROOT / "examples" / "demo"


def run_loader(workdir: Path, config: str, args: list[str], pythonpath: list[Path]) -> tuple[str, str]:
    """`python -m aiges -m 0 -c aiges.toml ARGS` in ``workdir`` with PYTHONPATH = ``pythonpath`` +
    this checkout, until it serves; (its stderr, the serviceId its /openapi.json documents)."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "aiges.toml").write_text(config + '\n[wrapper]\nhttp_listen = "127.0.0.1:0"\n\n[log]\ndir = "logs"\n')
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([*map(str, pythonpath), str(ROOT)]))
    env.pop("AIGES_WRAPPER_DIR", None)
    out, err = workdir / "out", workdir / "err"
    with out.open("wb") as o, err.open("wb") as e:
        proc = subprocess.Popen([sys.executable, "-m", "aiges", "-m", "0", "-c", "aiges.toml", *args],
                                cwd=workdir, stdout=o, stderr=e, env=env)
    try:
        assert wait_until(lambda: SERVING.search(out.read_text()) or proc.poll() is not None, 60), err.read_text()
        m = SERVING.search(out.read_text())
        assert m, err.read_text()
        # on loopback only, the banner's URL is the whole truth: no "listening on all interfaces"
        assert re.fullmatch(r"aiges: serving svcName on http://127\.0\.0\.1:\d+ \(pid \d+\)\n", out.read_text())
        _, _, doc = http("GET", m.group(1) + "/openapi.json")
        return err.read_text(), doc["info"]["title"]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_wrapper_dir_from_the_file_wins_over_pythonpath_and_says_so(tmp_path: Path) -> None:
    """The fastml README's old command: PYTHONPATH names fastml, the file's wrapperDir the demo.
    The demo is served (the file wins), and the start log says which and why, and warns."""
    log, title = run_loader(tmp_path, f'[aiges]\nwrapperDir = "{DEMO}"\n', [], [FASTML])
    assert title == "Aiges Service doc for demo"
    assert f"wrapper: {DEMO}/wrapper.py (chosen by [aiges] wrapperDir in {tmp_path}/aiges.toml)" in log
    warning = [line for line in log.splitlines() if "WARNING" in line and str(FASTML) in line]
    assert warning and "--wrapper-dir" in warning[0] and "not served" in warning[0], log


def test_wrapper_dir_flag_wins_and_is_named(tmp_path: Path) -> None:
    """--wrapper-dir (relative to the working directory) wins over the file: fastml is served."""
    (tmp_path / "ml").symlink_to(FASTML)
    log, title = run_loader(tmp_path, f'[aiges]\nwrapperDir = "{DEMO}"\n', ["--wrapper-dir", "ml"], [])
    assert title == "Aiges Service doc for fastml"
    assert f"wrapper: {tmp_path}/ml/wrapper.py (chosen by --wrapper-dir)" in log
    assert "WARNING" not in log or "holds a wrapper.py" not in log


def test_without_a_choice_pythonpath_serves_and_the_log_says_so(tmp_path: Path) -> None:
    log, title = run_loader(tmp_path, "[aiges]\n", [], [FASTML])
    assert title == "Aiges Service doc for fastml"
    assert f"wrapper: {FASTML}/wrapper.py (found in PYTHONPATH: no --wrapper-dir" in log, log


def test_the_explanation_for_each_source(tmp_path: Path) -> None:
    """The pure part: the working directory comes before PYTHONPATH (as `python -m` imports), and a
    PYTHONPATH entry that loses is named; nothing found is said too."""
    (tmp_path / "wrapper.py").write_text("")
    line, warnings = which_wrapper.explain(Settings(python_path=(str(FASTML),)), str(tmp_path))
    assert line.startswith(f"wrapper: {tmp_path}/wrapper.py (found in the working directory")
    assert len(warnings) == 1 and f"PYTHONPATH entry {FASTML} holds a wrapper.py too" in warnings[0]
    line, warnings = which_wrapper.explain(Settings(wrapper_dir=str(tmp_path), wrapper_dir_from="AIGES_WRAPPER_DIR",
                                                    wrapper_module="model"), str(tmp_path))
    assert line == f"wrapper: {tmp_path}/model.py (chosen by AIGES_WRAPPER_DIR); there is no model.py there"
    line, warnings = which_wrapper.explain(Settings(), str(tmp_path / "nowhere"))
    assert line.startswith("wrapper: no wrapper.py in the working directory") and not warnings


# ---------------------------------------------------------------- a wrapper's traceback: one ERROR record
THREAD_RAISES = '''\
import threading
from aiges.sdk import WrapperBase, StringBodyField


class UserRequest(object):
    input1 = StringBodyField(key="text", value=b"x")


class UserResponse(object):
    accept1 = StringBodyField(key="result")


def fails():
    try:
        {}["model"]
    except KeyError as e:
        raise RuntimeError("background loader failed") from e


class Wrapper(WrapperBase):
    serviceId = "threads"
    version = "v1"
    requestCls = UserRequest()
    responseCls = UserResponse()

    def wrapperInit(self, config):
        t = threading.Thread(target=fails, name="model-loader")
        t.start()
        t.join()
        print("after the thread", flush=True)
        return 0
'''


def test_an_uncaught_wrapper_traceback_is_one_error_record(tmp_path: Path) -> None:
    """A wrapper thread dies with a chained exception: app.log holds it as ONE record at ERROR
    (header, frames, both exceptions), and the line printed after it stays an INFO line of its own."""
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "wrapper.py").write_text(THREAD_RAISES)
    loader = start_loader(tmp_path / "run", tmp_path / "w")
    try:
        app_log = loader.log_dir / "app.log"
        assert wait_until(lambda: "after the thread" in app_log.read_text() and
                          "background loader failed" in app_log.read_text(), 10)
    finally:
        loader.stop()
    text = app_log.read_text()
    records = re.split(r"\n(?=\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} )", text)
    tb = [r for r in records if "Exception in thread model-loader" in r]
    assert len(tb) == 1 and " ERROR aiges.plugin.w0: stderr: Exception in thread model-loader:" in tb[0], text
    for part in ("KeyError: 'model'", "The above exception was the direct cause", "RuntimeError: background loader failed"):
        assert part in tb[0], tb[0]
    assert not [r for r in records if " INFO " in r and ("Traceback" in r or 'File "' in r)], text
    assert [r for r in records if r.endswith("INFO aiges.plugin.w0: stdout: after the thread")], text


def test_traceback_joiner_keeps_other_lines() -> None:
    j = TracebackJoiner()
    assert j.feed("plain line") == [(False, "plain line")]
    lines = [TRACEBACK, '  File "w.py", line 1, in f', "    x()", "ValueError: bad", "",
             "During handling of the above exception, another exception occurred:", "", TRACEBACK,
             '  File "w.py", line 3, in g', "KeyError: 'k'"]
    for line in lines:
        assert j.feed(line) == []
    assert j.feed("INFO w: next") == [(True, "\n".join(lines)), (False, "INFO w: next")]
    assert j.feed(TRACEBACK) == [] and j.open and j.flush() == [(True, TRACEBACK)] and not j.open


# ---------------------------------------------------------------- API keys: both headers, the one read is named
def test_api_key_errors_name_the_header_that_was_read(tmp_path: Path) -> None:
    """x-api-key and Authorization: Bearer both work (HTTP and gRPC); a wrong key's 401 names the
    header it was read from; a missing key's 401 names both ways."""
    loader = start_loader(tmp_path, DEMO, auth='apiKeys = ["k1"]')
    body = once_body("demo", TEXT)
    try:
        status, _, resp = loader.post("/v1/svcName", body)
        assert status == 401 and "x-api-key" in resp["header"]["message"] and "Bearer" in resp["header"]["message"]
        for headers, named in (({"x-api-key": "bad"}, "x-api-key"), ({"Authorization": "Bearer bad"},
                                                                      "Authorization: Bearer")):
            status, _, resp = loader.post("/v1/svcName", body, {"Content-Type": "application/json", **headers})
            assert status == 401 and resp["header"]["code"] == 12401
            assert resp["header"]["message"] == f"wrong API key (read from the {named} header)"
        for headers in ({"x-api-key": "k1"}, {"Authorization": "bearer k1"}):
            assert loader.post("/v1/svcName", body, {"Content-Type": "application/json", **headers})[0] == 200
        envelope = api.Envelope(json=json.dumps(body))
        with grpc.insecure_channel(loader.grpc) as channel:
            stub = api_grpc.AigesStub(channel)
            assert stub.Once(envelope, timeout=10, metadata=(("authorization", "Bearer k1"),)).json
            with pytest.raises(grpc.RpcError) as e:
                stub.Once(envelope, timeout=10, metadata=(("authorization", "Bearer bad"),))
            assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "Authorization: Bearer" in (e.value.details() or "")
    finally:
        loader.stop()


# ---------------------------------------------------------------- messages that tell the truth
@pytest.mark.parametrize("path, body, where", [
    ("/v1/svcName", b'{"payload":{"text":{"text":"\xff\xfe"}}}', "line 1 column 29 (byte 28, 0xff: invalid start byte)"),
    ("/v1/svcName", b'{"header":{},\n "payload":{"t\xc3\xa9\xc3":{}}}', "line 2 column 16 (byte 30, 0xc3: invalid continuation"),
    ("/infer", b'{"text":"ok \xed\xa0\x80"}', "line 1 column 13 (byte 12, 0xed: invalid continuation byte)"),
])
def test_invalid_utf8_names_the_real_problem_and_position(demo: Loader, path: str, body: bytes, where: str) -> None:
    """Not orjson's "surrogates not allowed: line 1 column 1": the byte, its line and column."""
    status, _, resp = demo.post(path, body)
    assert status == 400, resp
    err = resp["error"] if path == "/infer" else resp["header"]
    assert err["code"] == 10000 and f"invalid UTF-8 at {where}" in err["message"], err
    assert "surrogates" not in err["message"]


def test_one_depth_rule_for_every_json_body(demo: Loader) -> None:
    """255 levels, counted from the top of the body, wherever the deep part is (passed on to the
    wrapper or not), and past orjson's own 1,024 too: 400/10000 with the same message."""
    def nested(n: int) -> bytes:
        return b"[" * n + b"]" * n

    ok = once_body("demo", TEXT)
    ok["header"]["x"] = "DEEP"
    for levels, status in ((253, 200), (254, 400), (5000, 400)):  # + 2 levels of the envelope: 255 / 256
        body = json.dumps(ok).encode().replace(b'"DEEP"', nested(levels))
        got, _, resp = demo.post("/v1/svcName", body)
        assert got == status, (levels, resp)
        if status == 400:
            assert resp["header"]["code"] == 10000 and "JSON nested more than 255 levels" in resp["header"]["message"]


def test_every_sid_has_one_shape(demo: Loader) -> None:
    """HTTP once (answer and error), /infer, a WebSocket session, the gRPC API and an answer of the
    HTTP parser: every sid is 32 hex digits."""
    shape = re.compile(r"^[0-9a-f]{32}$")
    sids = {"once": demo.post("/v1/svcName", once_body("demo", TEXT))[2]["header"]["sid"],
            "once error": demo.post("/v1/svcName", b"{")[2]["header"]["sid"],
            "infer": demo.post("/infer", b"hello", {"Content-Type": "text/plain"})[2]["metadata"]["sid"]}

    async def session() -> str:
        async with aiohttp.ClientSession() as s, s.ws_connect(demo.url + "/v1/svcName") as ws:
            await ws.send_json(once_body("demo", {"text": dict(TEXT["text"], status=2)}) | {"header": {"status": 2}})
            return str((await ws.receive_json(timeout=10))["header"]["sid"])

    sids["websocket"] = asyncio.run(session())
    with GrpcClient(demo.grpc, service="demo") as c:
        sids["grpc"] = c.once({"text": "hi"}).sid
    status, _, data = raw(demo, "POST", "/v1/svcName", b"x", {"Content-Length": "nope"})
    assert status == 400
    sids["HTTP parser"] = json.loads(data)["header"]["sid"]
    assert all(shape.match(s) for s in sids.values()), sids


def test_stream_session_keeps_the_servers_refusal(demo: Loader) -> None:
    """A WebSocket to an unknown route: the client raises the server's 12404 with its message (the
    routes that exist) and sid, not a bare "HTTP 404"."""
    async def connect() -> None:
        async with StreamSession(demo.url + "/v1/nope", service="demo", timeout=10):
            pass

    with pytest.raises(ClientError) as e:
        asyncio.run(connect())
    assert (e.value.code, e.value.http_status) == (12404, 404), e.value
    assert "no route /v1/nope" in e.value.message and "/v1/svcName" in e.value.message and e.value.sid


# ---------------------------------------------------------------- python -m aiges next to a clone named aiges
EDITABLE_FINDER = """
import importlib.machinery, runpy, sys
ROOT = sys.argv[1]
class Editable:  # what `pip install -e` adds: a finder AFTER the path finder, mapping aiges to the checkout
    def find_spec(self, name, path=None, target=None):
        if name == "aiges" or name.startswith("aiges."):
            return importlib.machinery.PathFinder.find_spec(name, [ROOT + ("/aiges" if "." in name else "")])
        return None
sys.meta_path.insert(sys.meta_path.index(importlib.machinery.PathFinder) + 1, Editable())
sys.argv = ["aiges", "-v"]
runpy.run_module("aiges", run_name="__main__", alter_sys=True)
"""


def test_python_m_aiges_beside_a_clone_says_what_happened(tmp_path: Path) -> None:
    """In the folder that holds a clone called aiges/ (no __init__.py at its root), `python -m aiges`
    of an editable install imports that folder as a namespace package: one line says so, exit 2."""
    (tmp_path / "aiges").mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    p = subprocess.run([sys.executable, "-c", EDITABLE_FINDER, str(ROOT)], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and p.stdout == "", (p.stdout, p.stderr)
    assert p.stderr.count("\n") == 1 and f"the folder {tmp_path / 'aiges'} in the working directory hides" in p.stderr
    # from anywhere else the same finder serves the package
    p = subprocess.run([sys.executable, "-c", EDITABLE_FINDER, str(ROOT)], cwd=tmp_path / "aiges", env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout.startswith("aiges "), (p.stdout, p.stderr)
