"""examples/c_engine (a streaming energy VAD in C), `aiges create --lang c`, and the ABI itself.

Lifecycle: the example is copied to a temp dir, built with its Makefile, checked with
`aiges check`, served with its own aiges.toml (`aiges -m 0`, as its README says) and asked for
the exact answers of its test data, once and streamed in odd-sized chunks.  The scaffold is
created, built with `make`, checked and served unchanged.  The layout probe compiles a C program
against our headers and compares every offset with the host's ctypes/struct view.
"""
from __future__ import annotations

import base64
import ctypes
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aiges.plugin.hosts.c import abi
from tests.c_engines.build import INCLUDE, compiler
from tests.c_engines.helpers import errors_of, session
from tests.test_scaffold import aiges, serving
from tests.utils import ROOT, http, once_body

EXAMPLE = ROOT / "examples" / "c_engine"
PCM = (EXAMPLE / "test_data" / "speech.pcm").read_bytes()
EXPECTED = json.loads((EXAMPLE / "test_data" / "expected.json").read_text())

pytestmark = pytest.mark.skipif(compiler() is None or shutil.which("make") is None,
                                reason="no C compiler or make (scripts/install-test-deps installs them)")


def make(project: Path) -> None:
    proc = subprocess.run(["make"], cwd=project, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (project / "libwrapper.so").is_file()


@pytest.fixture(scope="module")
def vad(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    project = tmp_path_factory.mktemp("vad") / "c_engine"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("libwrapper.so", "logs", "__pycache__"))
    make(project)
    with serving(project) as url:
        yield url


def post(url: str, body: Any) -> tuple[int, dict[str, Any]]:
    status, _, doc = http("POST", url, json.dumps(body).encode())
    return status, doc


def audio(data: bytes, status: int = 3, **attrs: Any) -> dict[str, Any]:
    return {"audio": {"encoding": "raw", "sample_rate": 16000, "channels": 1, "status": status,
                      "audio": base64.b64encode(data).decode(), **attrs}}


def test_example_once_gives_the_exact_segments(vad: str) -> None:
    status, doc = post(vad + "/v1/private/vad", once_body("vad", audio(PCM), {"threshold_db": -40}))
    assert status == 200, doc
    assert json.loads(doc["payload"]["segments"]["text"]) == EXPECTED


def test_example_params_change_the_answer_and_bad_input_is_refused(vad: str) -> None:
    status, doc = post(vad + "/v1/private/vad", once_body("vad", audio(PCM), {"hangover_ms": 400}))
    # 400 ms of quiet needed to end a segment: the gaps around the click at 1250 ms are shorter,
    # so the first two tones (and the click) make one segment
    assert status == 200
    assert json.loads(doc["payload"]["segments"]["text"]) == {
        "segments": [{"start_ms": 300, "end_ms": 2200}, {"start_ms": 2600, "end_ms": 3150}], "duration_ms": 3200}
    status, doc = post(vad + "/v1/private/vad", once_body("vad", audio(PCM), {"threshold_db": 5}))
    assert status == 400 and doc["header"]["code"] == 10107 and "threshold_db" in doc["header"]["message"]
    status, doc = post(vad + "/v1/private/vad", once_body("vad", audio(PCM, sample_rate=8000)))
    assert status == 500 and doc["header"]["code"] == 201 and "16 kHz" in doc["header"]["message"]


def test_example_streams_segments_as_they_close_from_its_thread(vad: str) -> None:
    chunk = 3333  # odd: samples and frames straddle chunks
    parts = [PCM[i:i + chunk] for i in range(0, len(PCM), chunk)]
    frames = []
    for i, p in enumerate(parts):
        st = 0 if i == 0 else 2 if i == len(parts) - 1 else 1
        doc: dict[str, Any] = {"header": {"status": st}, "payload": audio(p, st)}
        if i == 0:
            doc["parameter"] = {"vad": {}}
        frames.append(json.dumps(doc))
    msgs = session(vad + "/v1/private/vad", frames, delay=0.01)
    assert not errors_of(msgs), msgs
    # result frames carry data as base64, text included (upstream's WebSocket protocol)
    got = [(m["header"]["status"], json.loads(base64.b64decode(m["payload"]["segments"]["text"])))
           for m in msgs if m.get("payload")]
    assert got[:-1] == [(1, {"segment": seg}) for seg in EXPECTED["segments"]]
    assert got[-1] == (2, EXPECTED)
    # pushed as they closed: the first segment came before the last chunk was sent
    last_sent = max(m["t"] for m in msgs if "sent" in m)
    assert next(m["t"] for m in msgs if m.get("payload")) < last_sent


def test_example_openapi_from_the_declaration(vad: str) -> None:
    status, _, doc = http("GET", vad + "/openapi.json")
    assert status == 200
    text = json.dumps(doc)
    for name in ("/v1/private/vad", "threshold_db", "hangover_ms", "min_speech_ms", "segments"):
        assert name in text


def test_example_passes_check(tmp_path: Path) -> None:
    project = tmp_path / "c_engine"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("libwrapper.so", "logs", "__pycache__"))
    proc = aiges(["check"], project)
    assert proc.returncode == 1 and "build the library (`make`)" in proc.stdout  # not built yet: says how
    make(project)
    proc = aiges(["check"], project)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "10 passed, 0 failed" in proc.stdout and "wrapperExecAsync(test values)" in proc.stdout


def test_example_headers_are_the_shipped_ones() -> None:
    for name in ("wrapper.h", "type.h"):
        assert (EXAMPLE / "include" / name).read_bytes() == (INCLUDE / name).read_bytes()


def test_example_under_an_upstream_host_in_python_mode(tmp_path: Path) -> None:
    """upstream's Go loader runs plugins with AIGES_PLUGIN_MODE=python: a wrapper.py that declares
    a library still gets the C host, its schema is JSON, once answers on `communicate`."""
    from aiges.wire.pb import aiges_inner_pb2 as pb
    from tests.test_upstream_host import Host
    project = tmp_path / "c_engine"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("libwrapper.so", "logs", "__pycache__"))
    make(project)
    host = Host(project, project)
    try:
        assert host.stub.wrapperInit(pb.InitRequest(config={}), timeout=30).ret == 0
        schema = json.loads(host.stub.wrapperSchema(pb.SvcId(serviceId="vad"), timeout=10).data)
        assert schema["meta"]["serviceId"] == "vad"
        req = pb.Request(tag="t-vad", params={"sid": "s"}, list=[
            pb.RequestData(key="audio", data=PCM, len=len(PCM), type=1, status=3)])
        host.stub.wrapperOnceExec(req, timeout=10)
        resp = host.result("t-vad")
        assert resp.ret == 0 and json.loads(resp.list[0].data) == EXPECTED
    finally:
        host.channel.close()
        host.proc.terminate()
        host.proc.wait(15)


UPSTREAM_HEADERS = Path(os.environ.get("AIGES_UPSTREAM_SRC") or "/nonexistent") / "cgo" / "header" / "widget"


@pytest.mark.skipif(not (UPSTREAM_HEADERS / "wrapper.h").is_file(),
                    reason="set AIGES_UPSTREAM_SRC to an iflytek/aiges checkout to build against its own headers")
def test_engines_built_against_upstreams_own_headers(c_build: Any, tmp_path: Path) -> None:
    """The ABI claim from the other side: the demo engine compiled with upstream's wrapper.h/type.h
    (not ours) serves once and a session."""
    from tests.c_engines.helpers import frame, once, results, start_c
    loader = start_c(tmp_path, c_build(include=UPSTREAM_HEADERS), aiges="asyncMode = false")
    try:
        status, doc = once(loader, {"ctrl": "echo"}, b"built with upstream's header")
        assert status == 200 and doc["payload"]["echo"]["text"] == "built with upstream's header"
        msgs = session(loader, [frame("text", b"ab", 0, {}), frame("text", b"cd", 2)])
        assert results(msgs) == ["AB", "CD"]
    finally:
        loader.stop()


# ---------------------------------------------------------------- aiges create --lang c
def test_create_c_builds_checks_and_serves_unchanged(tmp_path: Path) -> None:
    proc = aiges(["create", "--lang", "c", "-n", "ctext", "-p", str(tmp_path)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    project = tmp_path / "ctext"
    assert {p.name for p in project.iterdir()} >= {"Makefile", "wrapper.c", "wrapper.py", "include", "test_data",
                                                  "aiges.toml", "Dockerfile", "README.md"}
    assert (project / "include" / "wrapper.h").read_bytes() == (INCLUDE / "wrapper.h").read_bytes()
    make(project)
    proc = aiges(["check"], project)
    assert proc.returncode == 0 and "10 passed, 0 failed" in proc.stdout, proc.stdout + proc.stderr
    with serving(project) as url:
        body = once_body("ctext", {"text": {"encoding": "utf8", "status": 3,
                                            "text": base64.b64encode(b"Hello C world").decode()}}, {"mode": "lower"})
        status, doc = post(url + "/v1/private/ctext", body)
        assert status == 200, doc
        assert json.loads(doc["payload"]["result"]["text"]) == {"text": "hello c world", "chars": 13, "words": 3}
        status, doc = post(url + "/v1/private/ctext", once_body("ctext", {"text": {"text": "aGk=", "status": 3}},
                                                               {"mode": "sideways"}))
        assert status == 400 and doc["header"]["code"] == 10107 and "mode" in doc["header"]["message"]
        frames = [json.dumps({"header": {"status": s}, "parameter": {"ctext": {}},
                              "payload": {"text": {"text": base64.b64encode(t).decode(), "status": s}}})
                  for s, t in ((0, b"one"), (1, b"two words"), (2, b"three more words"))]
        msgs = session(url + "/v1/private/ctext", frames)
        got = [json.loads(base64.b64decode(m["payload"]["result"]["text"]))["words"] for m in msgs if m.get("payload")]
        assert got == [1, 2, 3] and [m for m in msgs if m.get("payload")][-1]["header"]["status"] == 2


# ---------------------------------------------------------------- the ABI, proved by a compiled probe
PROBE = r"""
#include <stddef.h>
#include <stdio.h>
#include "wrapper.h"
int main(void) {
    printf("%zu %zu %zu %zu %zu %zu\n", sizeof(struct ParamList), offsetof(struct ParamList, key),
           offsetof(struct ParamList, value), offsetof(struct ParamList, vlen), offsetof(struct ParamList, next),
           sizeof(struct DataList));
    printf("%zu %zu %zu %zu %zu %zu %zu\n", offsetof(struct DataList, key), offsetof(struct DataList, data),
           offsetof(struct DataList, len), offsetof(struct DataList, type), offsetof(struct DataList, status),
           offsetof(struct DataList, desc), offsetof(struct DataList, next));
    printf("%zu %zu %zu %d %d %d %d\n", sizeof(CtrlType), sizeof(DataType), sizeof(DataStatus),
           DataPer, DataOnce, CTTraceLog, (int)sizeof(wrapperCallback));
    return 0;
}
"""


def test_struct_layout_matches_a_compiled_probe(tmp_path: Path) -> None:
    src = tmp_path / "probe.c"
    src.write_text(PROBE)
    exe = tmp_path / "probe"
    cc = compiler()
    assert cc is not None
    subprocess.run([cc, "-Wall", "-Werror", f"-I{INCLUDE}", "-o", str(exe), str(src)], check=True)
    lines = [list(map(int, line.split())) for line in subprocess.run([str(exe)], capture_output=True, text=True,
                                                                     check=True).stdout.splitlines()]
    p, d = abi.ParamList, abi.DataList
    assert lines[0] == [ctypes.sizeof(p), p.key.offset, p.value.offset, p.vlen.offset, p.next.offset,
                        ctypes.sizeof(d)]
    assert lines[1] == [d.key.offset, d.data.offset, d.len.offset, d.type.offset, d.status.offset, d.desc.offset,
                        d.next.offset]
    assert (abi.PARAM.size, abi.DATA.size) == (lines[0][0], lines[0][5])
    assert lines[2] == [4, 4, 4, 4, 3, 2, ctypes.sizeof(ctypes.c_void_p)]
    if ctypes.sizeof(ctypes.c_void_p) == 8:  # x86-64 / arm64 Linux: the numbers upstream's Go side assumes
        assert lines[0] == [32, 0, 8, 16, 24, 48] and lines[1] == [0, 8, 16, 20, 24, 32, 40]
