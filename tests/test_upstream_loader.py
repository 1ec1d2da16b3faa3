"""Our plugin driven by the REAL upstream Go loader (iflytek/aiges ``AIservice``).

The binary is found at ``AIGES_UPSTREAM_BIN``, else ``../shared/upstream/AIservice`` beside the
checkout (upstream a2f7a7aa, prebuilt; needs ``libnuma.so.1``, which ``scripts/install-test-deps``
installs), else ``~/.cache/aiges/upstream/AIservice`` (``scripts/build-upstream-loader``).  Without
one this module is skipped -- unless ``AIGES_REQUIRE_UPSTREAM=1`` (``.ci/run`` sets it): then the
missing binary is a failure, so a CI run cannot silently stop proving it.  Each loader's
lifecycle, as upstream's README runs it:

``AIservice -init`` in a temp dir (upstream's own aiges.toml) → that file edited only where a test
needs it (``pythonPluginCmd`` = this Python's ``-m aiges.serve``, HTTP and xsf listeners on loopback,
``[fc] max``, ``sessMode``/``realTimeRlt``) → ``AIGES_PLUGIN_MODE=python AIservice -m 0 -c aiges.toml
-s svcName`` with the wrapper's directory on PYTHONPATH → go-plugin starts ``bash -c
"<pythonPluginCmd>"``, reads our handshake, pings health "plugin", opens ``communicate`` →
wrapperInit → wrapperSchema (compiled by the strict seeadoog/jsonschema; a keyword it does not
know makes the loader exit) → HTTP (or WebSocket, sessMode=true) on the free port → requests →
SIGTERM by PID (then SIGKILL), and whatever of the process tree is left killed by PID.
"""
from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.client import HTTPConnection
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from tests.utils import ROOT, alive, child_pids, http, start_loader, wait_until

SHARED_BIN = ROOT.parent / "shared" / "upstream" / "AIservice"  # prebuilt, beside the checkout
CACHE_BIN = Path.home() / ".cache" / "aiges" / "upstream" / "AIservice"  # scripts/build-upstream-loader


def _find_binary() -> tuple[Path | None, str]:
    """The upstream loader to use, or None and where it was looked for."""
    if os.environ.get("AIGES_UPSTREAM_BIN"):
        candidates = [Path(os.environ["AIGES_UPSTREAM_BIN"])]
    else:
        candidates = [SHARED_BIN, CACHE_BIN]
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path, ""
    return None, " or ".join(str(p) for p in candidates)


_found, _searched = _find_binary()
MISSING = "" if _found else (
    f"no upstream loader binary at {_searched} (it ships as ../shared/upstream/AIservice; or build one with "
    "scripts/build-upstream-loader <iflytek/aiges checkout>, or point AIGES_UPSTREAM_BIN at one)")
REQUIRED = os.environ.get("AIGES_REQUIRE_UPSTREAM") == "1"
if MISSING and not REQUIRED:
    pytest.skip(MISSING, allow_module_level=True)
UPSTREAM_BIN = _found or Path(_searched)


@pytest.fixture(scope="module", autouse=True)
def _required_binary() -> None:
    """AIGES_REQUIRE_UPSTREAM=1 and no binary: every test here fails with the reason (the rest of
    the suite still runs; a collection error would stop it)."""
    if MISSING:
        pytest.fail(f"AIGES_REQUIRE_UPSTREAM=1: {MISSING}", pytrace=False)

HERE = Path(__file__).resolve().parent
IMAGE_STATS = HERE / "wrappers" / "image_stats"  # the copy of ../shared/compat/image_stats
FAULTY = HERE / "wrappers" / "faulty"
STREAM_CALLBACK = HERE / "wrappers" / "stream_callback"
PNG = (IMAGE_STATS / "test_data" / "test.png").read_bytes()
TEXT_EXPECT = {"encoding": "utf8", "compress": "raw", "format": "plain", "data_type": "text"}  # upstream needs it


def free_port() -> int:
    """A free loopback port for upstream's HTTP listener (upstream cannot report a port it chose)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    return json.dumps(str(v))


def set_keys(text: str, values: dict[str, dict[str, object]]) -> str:
    """Upstream's ``-init`` file with ``key = value`` lines replaced, section by section; every key
    must already be there (a changed upstream file fails here, not in a confusing way later)."""
    pending = {(s, k) for s, kv in values.items() for k in kv}
    section, out = "", []
    for line in text.splitlines():
        head = re.match(r"\s*\[([^\]]+)\]", line)
        item = re.match(r'\s*"?([^"=\s]+)"?\s*=', line)
        if head:
            section = head.group(1).strip()
        elif item and (section, item.group(1)) in pending:
            key = item.group(1)
            line = f"{key} = {toml_value(values[section][key])}"
            pending.discard((section, key))
        out.append(line)
    assert not pending, f"upstream's -init aiges.toml has no {sorted(pending)}"
    return "\n".join(out) + "\n"


def descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        kids = child_pids(todo.pop())
        out += kids
        todo += kids
    return out


def leftovers(seen: dict[int, str]) -> list[int]:
    """The processes of `seen` still alive (the same PID running the same command line)."""
    return [p for p, cmd in seen.items() if alive(p) and cmdline(p) == cmd]


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@dataclass
class Upstream:
    proc: subprocess.Popen[bytes]
    url: str
    workdir: Path
    seen: dict[int, str] = field(default_factory=dict)  # every process of its tree met so far: cmdline

    @property
    def pid(self) -> int:
        return self.proc.pid

    def tree(self) -> list[int]:
        """The loader's descendants now (our plugin, what it started), remembered for stop()."""
        pids = descendants(self.pid) if self.proc.poll() is None else []
        self.seen.update((p, cmdline(p)) for p in pids)
        return pids

    def logs(self) -> str:
        return "".join((self.workdir / name).read_text(errors="replace")[-4000:] for name in ("loader.out", "loader.err"))

    def plugin_pids(self) -> list[int]:
        return [p for p in self.tree() if "aiges.serve" in cmdline(p)]

    def post(self, path: str, body: Any, timeout: float = 10) -> tuple[int, Any, float]:
        t0 = time.monotonic()
        status, _, doc = http("POST", self.url + path, json.dumps(body).encode(), None, timeout)
        return status, doc, time.monotonic() - t0

    def stop(self, grace: float = 5) -> None:
        """SIGTERM, SIGKILL after `grace` s (upstream's SIGTERM takes 3 s, and up to ``[fc] ttl``,
        10 s, after a WebSocket session, whose licence it leaks, U§6.8; our plugin follows its
        loader either way); any process of its tree still alive is then killed by its PID."""
        self.tree()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        wait_until(lambda: not leftovers(self.seen), 5)
        for p in leftovers(self.seen):
            os.kill(p, signal.SIGKILL)


def start_upstream(workdir: Path, wrapper_dir: Path, session: bool = False, env: dict[str, str] | None = None,
                   timeout: float = 60) -> Upstream:
    """Upstream's ``-init`` config, edited only where these tests need it, then ``AIservice -m 0``;
    ready once ``/openapi.json`` answers 200 (the HTTP server starts after wrapperInit and the schema)."""
    workdir.mkdir(parents=True, exist_ok=True)
    init = subprocess.run([str(UPSTREAM_BIN), "-init"], cwd=workdir, timeout=30, capture_output=True)
    if init.returncode != 0:  # e.g. "libnuma.so.1: cannot open shared object file": scripts/install-test-deps
        raise RuntimeError(f"{UPSTREAM_BIN} -init exited with {init.returncode}: "
                           f"{init.stderr.decode(errors='replace').strip()}")
    cfg = workdir / "aiges.toml"
    port = free_port()
    cfg.write_text(set_keys(cfg.read_text(), {
        "svcName": {"host": "127.0.0.1", "port": 0},  # the xsf gRPC listener (XsfCall); 0: any port
        "aiges": {"pythonPluginCmd": f"{shlex.quote(sys.executable)} -m aiges.serve",
                  "sessMode": session, "realTimeRlt": session},  # sessMode: the route is a WebSocket
        "wrapper": {"http_listen": f"127.0.0.1:{port}"},
        "fc": {"max": 64},  # licences = concurrent requests (the -init value 1 answers the 2nd with 10110)
    }))
    full_env = {k: v for k, v in os.environ.items()
                if k not in ("AIGES_PLUGIN_SOCKET", "BASIC_PLUGIN", "PLUGIN_MIN_PORT", "PLUGIN_MAX_PORT")}
    full_env.update(env or {}, AIGES_PLUGIN_MODE="python", PYTHONPATH=f"{ROOT}{os.pathsep}{wrapper_dir}")
    with (workdir / "loader.out").open("wb") as out, (workdir / "loader.err").open("wb") as err:
        proc = subprocess.Popen([str(UPSTREAM_BIN), "-m", "0", "-c", "aiges.toml", "-s", "svcName"], cwd=workdir,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=full_env)
    up = Upstream(proc, f"http://127.0.0.1:{port}", workdir)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        up.tree()
        if proc.poll() is not None:
            up.stop()
            raise RuntimeError(f"upstream loader exited with {proc.returncode}:\n{up.logs()}")
        try:
            if http("GET", up.url + "/openapi.json", timeout=2)[0] == 200:
                return up
        except OSError:  # not listening yet
            pass
        time.sleep(0.1)
    up.stop()
    raise RuntimeError(f"upstream loader not serving within {timeout}s:\n{up.logs()}")


@pytest.fixture(scope="module")
def image_stats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    up = start_upstream(tmp_path_factory.mktemp("up_image_stats"), IMAGE_STATS)
    yield up
    up.stop(grace=0.5)  # its graceful stop is not under test here; SIGKILL after 0.5 s saves ~3 s


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    up = start_upstream(tmp_path_factory.mktemp("up_faulty"), FAULTY)
    yield up
    up.stop(grace=0.5)  # its graceful stop is not under test here; SIGKILL after 0.5 s saves ~3 s


def image_body(ctrl: str) -> dict[str, Any]:
    return {"header": {"appid": "123456", "status": 3},
            "parameter": {"svcName": {"ctrl": ctrl, "result": TEXT_EXPECT}},
            "payload": {"img": {"encoding": "png", "status": 3, "image": base64.b64encode(PNG).decode()}}}


def test_starts_our_plugin_and_serves_openapi(image_stats: Upstream) -> None:
    """Start: upstream ran our `python -m aiges.serve` (bash -c pythonPluginCmd), accepted its
    handshake, init and schema -- the path of the reported `example is unknown validator` bug,
    `parameter.svcName.ctrl`, is in the request schema of upstream's /openapi.json."""
    assert len(image_stats.plugin_pids()) == 1
    status, _, doc = http("GET", image_stats.url + "/openapi.json")
    assert status == 200 and doc["openapi"] == "3.0.3"
    assert doc["info"]["title"] == "Aiges Service doc for svcName"
    assert doc["servers"][0]["url"] == "/v1/svcName"
    schema = doc["paths"]["/"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    ctrl = schema["properties"]["parameter"]["properties"]["svcName"]["properties"]["ctrl"]
    assert ctrl["type"] == "string" and ctrl["examples"] == ["helloworld"]


def status_and_location(url: str, method: str, path: str, body: bytes | None) -> tuple[int, str | None]:
    """One request, no redirect followed."""
    parts = urlsplit(url)
    conn = HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        r.read()
        return r.status, r.getheader("Location")
    finally:
        conn.close()


def test_router_answers_as_ours(image_stats: Upstream, tmp_path: Path) -> None:
    """The same requests to upstream's loader and to ours (same wrapper): a trailing slash is
    redirected (307 for POST, query kept), any method on / goes to the Swagger page (302)."""
    body = json.dumps(image_body("x")).encode()
    asked = [("POST", "/v1/svcName/", body), ("POST", "/v1/svcName/?a=1&b=%2F", body), ("POST", "/", body),
             ("PUT", "/", None), ("DELETE", "/", None), ("GET", "/", None), ("GET", "/openapi.json/", None)]
    ours = start_loader(tmp_path, IMAGE_STATS)
    try:
        got = {(m, p): (status_and_location(ours.url, m, p, b), status_and_location(image_stats.url, m, p, b))
               for m, p, b in asked}
    finally:
        ours.stop()
    assert all(mine == theirs for mine, theirs in got.values()), got
    assert got[("POST", "/v1/svcName/")][1] == (307, "/v1/svcName")


def test_once_success(image_stats: Upstream) -> None:
    """POST on the schema route → wrapperOnceExec → our Response on `communicate` under the tag →
    upstream's envelope (text raw)."""
    status, doc, _ = image_stats.post("/v1/svcName", image_body("hello"))
    assert status == 200, doc
    assert doc["header"]["code"] == 0 and doc["header"]["status"] == 3
    result = json.loads(doc["payload"]["result"]["text"])
    assert (result["width"], result["height"], result["ctrl"]) == (28, 28, "hello")
    assert result["params"]["sid"] == doc["header"]["sid"]


def test_48_concurrent_requests_each_get_their_own_answer(image_stats: Upstream) -> None:
    """48 requests at once: every answer carries its own ctrl and its own sid (tags never mix)."""
    answers: dict[int, tuple[int, Any]] = {}

    def one(i: int) -> None:
        status, doc, _ = image_stats.post("/v1/svcName", image_body(f"req-{i}"), timeout=30)
        answers[i] = (status, doc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(48)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(40)
    assert sorted(answers) == list(range(48))
    for i, (status, doc) in answers.items():
        assert status == 200, doc
        result = json.loads(doc["payload"]["result"]["text"])
        assert result["ctrl"] == f"req-{i}" and result["params"]["sid"] == doc["header"]["sid"]
    assert len({doc["header"]["sid"] for _, doc in answers.values()}) == 48


@pytest.mark.parametrize("ctrl, ret", [("raise", 10909), ("none", 10909), ("empty", 10909), ("err", 4242)])
def test_wrapper_failures_answered_within_2s(faulty: Upstream, ctrl: str, ret: int) -> None:
    """A wrapper that raises, returns None, an empty list or response_err(4242): our plugin puts
    a Response with `ret` on `communicate`, so upstream answers at once (its own 10910 "errr;code=<ret>")
    instead of waiting 120 s for a result that never comes."""
    body = {"header": {"appid": "1", "status": 3}, "parameter": {"faulty": {"ctrl": ctrl, "result": TEXT_EXPECT}},
            "payload": {"text": {"encoding": "utf8", "status": 3, "text": base64.b64encode(b"x").decode()}}}
    status, doc, took = faulty.post("/v1/private/faulty", body, timeout=5)
    assert took < 2.0, f"{ctrl}: answered after {took:.1f}s"
    assert status == 500 and doc["header"]["code"] == 10910, doc
    assert f"code={ret}" in doc["header"]["message"]


def test_faulty_still_serves_after_failures(faulty: Upstream) -> None:
    body = {"header": {"appid": "1", "status": 3}, "parameter": {"faulty": {"ctrl": "ok", "result": TEXT_EXPECT}},
            "payload": {"text": {"encoding": "utf8", "status": 3, "text": base64.b64encode(b"still here").decode()}}}
    status, doc, _ = faulty.post("/v1/private/faulty", body)
    assert status == 200 and doc["payload"]["result"]["text"] == "still here", doc


SPAWNING_WRAPPER = """\
import subprocess
from aiges.sdk import WrapperBase, StringBodyField


class UserRequest(object):
    input1 = StringBodyField(key="text", value=b"x")


class UserResponse(object):
    accept1 = StringBodyField(key="result")


class Wrapper(WrapperBase):
    serviceId = "spawner"
    version = "v1"
    requestCls = UserRequest()
    responseCls = UserResponse()

    def wrapperInit(self, config):
        self.helper = subprocess.Popen(["sleep", "300"])  # a model server, a pool worker ...
        return 0
"""


@pytest.mark.parametrize("spawns", [
    pytest.param(False, id="image_stats"),
    pytest.param(True, id="wrapper-with-a-child"),
])
def test_loader_sigkill_takes_our_plugin_and_its_children_down(tmp_path: Path, spawns: bool) -> None:
    """Start → the process tree under the loader (our plugin, and a child its wrapper started) →
    SIGKILL the loader by PID → every process of that tree is gone within 2 s (upstream's orphan bug)."""
    wrapper_dir = IMAGE_STATS
    if spawns:
        wrapper_dir = tmp_path / "spawner"
        wrapper_dir.mkdir()
        (wrapper_dir / "wrapper.py").write_text(SPAWNING_WRAPPER)
    up = start_upstream(tmp_path / "loader", wrapper_dir)
    try:
        tree = up.tree()
        assert up.plugin_pids(), tree
        assert len(tree) == (2 if spawns else 1), [(p, cmdline(p)) for p in tree]
        up.proc.kill()
        up.proc.wait(5)
        assert wait_until(lambda: not leftovers(up.seen), 2.0), [up.seen[p] for p in leftovers(up.seen)]
    finally:
        up.stop()


async def ws_session(url: str, frames: list[tuple[int, bytes]], timeout: float = 10) -> list[dict[str, Any]]:
    """Send every frame, then read until the final result (status 2; upstream leaves the close to
    the client) and 0.3 s more for strays; every read bounded."""
    msgs: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(url, timeout=aiohttp.ClientWSTimeout(ws_close=2)) as ws:
            for status, data in frames:
                await ws.send_str(json.dumps({
                    "header": {"appid": "123456", "status": status},
                    "parameter": {"streamcb": {"ctrl": "sync", "result": TEXT_EXPECT}},
                    "payload": {"text": {"encoding": "utf8", "status": status, "text": base64.b64encode(data).decode()}}}))
            until = time.monotonic() + timeout
            final = False
            while (left := until - time.monotonic()) > 0:
                try:
                    msg = await ws.receive(timeout=left)
                except asyncio.TimeoutError:
                    break
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                msgs.append(json.loads(msg.data))
                if not final and msgs[-1].get("payload") and msgs[-1]["header"]["status"] == 2:
                    final, until = True, time.monotonic() + 0.3
    return msgs


def test_websocket_session_one_result_per_frame(tmp_path: Path) -> None:
    """sessMode=true, realTimeRlt=true: the route is a WebSocket; 3 frames (status 0, 1, 2) →
    wrapperCreate, 3 wrapperWrite, our results tagged with the session on `communicate` → upstream's
    poller pushes one result per frame (data base64, seq from 1), the last with status 2 → after
    the final result upstream calls wrapperDestroy, once."""
    destroys = tmp_path / "destroy.log"
    up = start_upstream(tmp_path, STREAM_CALLBACK, session=True, env={"STREAM_DESTROY_LOG": str(destroys)})
    try:
        frames = [(0, b"one"), (1, b"two"), (2, b"three")]
        msgs = asyncio.run(ws_session(up.url.replace("http://", "ws://") + "/v1/private/streamcb", frames))
        assert all(m["header"]["code"] == 0 for m in msgs), msgs
        results = [m for m in msgs if m.get("payload")]
        infos = [json.loads(base64.b64decode(m["payload"]["result"]["text"])) for m in results]
        assert [(i["frame"], i["text"]) for i in infos] == [(1, "one"), (2, "two"), (3, "three")], msgs
        assert [m["header"]["status"] for m in results] == [1, 1, 2]
        assert [m["payload"]["result"]["seq"] for m in results] == [1, 2, 3]
        assert len({m["header"]["sid"] for m in msgs}) == 1
        assert len(msgs) - len(results) <= 1  # at most upstream's one empty "status 0" acknowledgement
        assert wait_until(destroys.exists, 5), "upstream never called wrapperDestroy"
        time.sleep(0.3)
        assert len(destroys.read_text().split()) == 1
    finally:
        up.stop(grace=0.5)
