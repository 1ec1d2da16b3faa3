"""examples/fastml: every body kind reaches the wrapper typed as its user expects, and the three
log files hold what their names say (the tests read the files).

The wrapper answers what it received -- per input its kind, size, sha256, content type, file
name, and the text or the parsed JSON -- so each test compares that with what it sent.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.utils import ROOT, Loader, http, start_loader

KEY = "fastml-key"


@pytest.fixture(scope="module")
def fastml(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loader]:
    loader = start_loader(tmp_path_factory.mktemp("fastml"), ROOT / "examples" / "fastml",
                          auth=f'apiKeys = ["{KEY}"]')
    yield loader
    loader.stop()


def post(loader: Loader, path: str, body: bytes, ctype: str, **headers: str) -> tuple[int, Any]:
    status, _, answer = http("POST", loader.url + path, body, {"Content-Type": ctype, "x-api-key": KEY, **headers})
    return status, answer


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def multipart(parts: list[tuple[str, str | None, str | None, bytes]]) -> tuple[bytes, str]:
    """(name, filename, content type, data) parts as one multipart/form-data body."""
    boundary = uuid.uuid4().hex
    out = b""
    for name, filename, ctype, data in parts:
        head = f'Content-Disposition: form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        if ctype:
            head += f"\r\nContent-Type: {ctype}"
        out += f"--{boundary}\r\n{head}\r\n\r\n".encode() + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


SIDS: dict[str, list[str]] = {"ok": [], "error": []}  # what the log test looks for


def ok(status: int, answer: Any) -> dict[str, Any]:
    assert status == 200 and answer["result"] is True, answer
    SIDS["ok"].append(answer["metadata"]["sid"])
    data = answer["data"]
    assert isinstance(data, dict), "a JSON output is embedded in data as an object, not a string"
    assert data["sid"] == answer["metadata"]["sid"]
    return data


def test_text_plain_is_a_str(fastml: Loader) -> None:
    text = "héllo, 世界 — fastml\nsecond line"
    data = ok(*post(fastml, "/infer?lang=fr", text.encode(), "text/plain; charset=utf-8"))
    (got,) = data["inputs"]["text"]
    assert got["kind"] == "text" and got["text"] == text and got["sha256"] == sha(text.encode())
    assert got["content_type"] == "text/plain; charset=utf-8" and got["filename"] is None
    assert data["params"] == {"lang": "fr"} and set(data["inputs"]) == {"text"}


def test_json_arrives_exactly_as_sent(fastml: Loader) -> None:
    body = b'{"id": 123456789012345678901234567890, "price": 1.50, "tags": ["a", "\\u00e9"], "n": {"x": null}}'
    data = ok(*post(fastml, "/infer", body, "application/json"))
    (got,) = data["inputs"]["doc"]  # the JSON input (JsonBodyField), not the first input
    assert got["kind"] == "json" and got["sha256"] == sha(body), "the body is passed on unchanged"
    assert got["json"] == {"id": 123456789012345678901234567890, "price": 1.5, "tags": ["a", "é"], "n": {"x": None}}
    # the answer's JSON keeps the 30-digit integer too (not read back as a float)
    assert isinstance(got["json"]["id"], int)
    # an object keyed by inputs (+ "params") is split: strings go in as text
    data = ok(*post(fastml, "/infer", json.dumps({"text": "split", "params": {"lang": "de"}}).encode(),
                    "application/json"))
    assert data["inputs"]["text"][0]["text"] == "split" and data["params"] == {"lang": "de"}


def test_octet_stream_is_the_file_bytes(fastml: Loader) -> None:
    blob = os.urandom(70_000) + bytes(range(256))
    data = ok(*post(fastml, "/infer", blob, "application/octet-stream",
                    **{"Content-Disposition": 'attachment; filename="weights.bin"'}))
    (got,) = data["inputs"]["file"]  # the binary input, not the first (text) one
    assert got["kind"] == "bytes" and got["size"] == len(blob) and got["sha256"] == sha(blob)
    assert got["content_type"] == "application/octet-stream" and got["filename"] == "weights.bin"


def test_multipart_fields_and_files(fastml: Loader) -> None:
    png, csv = os.urandom(5000), b"a,b\n1,2\n"
    body, ctype = multipart([
        ("file", "photo.png", "image/png", png),
        ("file", "table.csv", "text/csv", csv),  # two files under one name: both arrive, in order
        ("text", None, None, "a field, not a file: ü".encode()),
        ("doc", None, "application/json", b'{"k": [1, 2]}'),
        ("lang", None, None, b"nl"),  # a field named like no input: a param
    ])
    data = ok(*post(fastml, "/infer?extra=q", body, ctype))
    files = data["inputs"]["file"]
    assert [(f["filename"], f["content_type"], f["size"], f["sha256"]) for f in files] == [
        ("photo.png", "image/png", len(png), sha(png)), ("table.csv", "text/csv", len(csv), sha(csv))]
    (text,) = data["inputs"]["text"]
    assert text["text"] == "a field, not a file: ü" and text["filename"] is None and text["content_type"] == "text/plain"
    assert data["inputs"]["doc"][0]["json"] == {"k": [1, 2]}
    assert data["params"] == {"lang": "nl", "extra": "q"}
    # a file named like no input is refused, naming it, rather than read into a param
    body, ctype = multipart([("upload", "x.bin", None, b"\x00\xff")])
    status, answer = post(fastml, "/infer", body, ctype)
    assert status == 400 and "'upload'" in answer["error"]["message"] and "file" in answer["error"]["message"]
    SIDS["error"].append(answer["metadata"]["sid"])


def test_health(fastml: Loader) -> None:
    status, _, body = fastml.get("/health")
    assert status == 200 and body == {"status": "UP"}


def test_errors_carry_the_sid(fastml: Loader) -> None:
    status, answer = post(fastml, "/infer?fail=1", b"x", "text/plain")
    assert status == 500 and answer["error"]["code"] == 10909 and "RuntimeError" in answer["error"]["message"]
    SIDS["error"].append(answer["metadata"]["sid"])
    status, answer = post(fastml, "/infer?reject=1", b"x", "text/plain")
    assert status == 400 and answer["error"]["code"] == 10107  # response_err(10107, message): a 400
    assert answer["error"]["message"] == "reject: the request asked to be refused"
    SIDS["error"].append(answer["metadata"]["sid"])
    status, _, answer = http("POST", fastml.url + "/infer", b"x", {"Content-Type": "text/plain"})  # no key
    assert status == 401
    SIDS["error"].append(answer["metadata"]["sid"])


def wait_for(path: Path, pattern: str, timeout: float = 10) -> str:
    """The file's text once ``pattern`` is in it (access logs are written in batches, 0.5 s)."""
    deadline = time.monotonic() + timeout
    while True:
        text = path.read_text(errors="replace") if path.exists() else ""
        if re.search(pattern, text) or time.monotonic() > deadline:
            return text
        time.sleep(0.1)


ACCESS = re.compile(r'^\S+ \S+ "(?P<method>[A-Z]+) (?P<path>\S+)" (?P<status>\d{3}) \d+ '
                    r'(?P<ms>\d+\.\d{2})ms sid=(?P<sid>\S+)')


def test_log_files_hold_what_their_names_say(fastml: Loader) -> None:
    """Runs after the tests above (file order): their requests are in the logs, each once."""
    assert SIDS["ok"] and SIDS["error"], "run the whole module"
    logs = fastml.log_dir
    access = wait_for(logs / "access.log", re.escape(SIDS["error"][-1]))
    lines = [ACCESS.match(line) for line in access.splitlines()]
    assert all(lines), [line for line, m in zip(access.splitlines(), lines, strict=True) if not m]
    by_sid: dict[str, list[re.Match[str]]] = {}
    for m in lines:
        assert m is not None
        by_sid.setdefault(m["sid"], []).append(m)
    for sid in SIDS["ok"] + SIDS["error"]:
        assert len(by_sid.get(sid, [])) == 1, f"sid {sid}: {len(by_sid.get(sid, []))} access lines"
        m = by_sid[sid][0]
        assert m["method"] == "POST" and m["path"].startswith("/infer")
    assert all(by_sid[s][0]["status"] == "200" for s in SIDS["ok"])
    assert sorted(by_sid[s][0]["status"] for s in SIDS["error"]) == ["400", "400", "401", "500"]
    # a measured duration, not uvloop's whole milliseconds
    assert any(not by_sid[s][0]["ms"].endswith(".00") for s in SIDS["ok"])
    assert [m["path"] for m in by_sid.get("-", [])].count("/health") >= 1

    errors_log = wait_for(logs / "error-access.log", re.escape(SIDS["error"][-1]))
    for sid in SIDS["error"]:
        (line,) = [x for x in errors_log.splitlines() if f"sid={sid}" in x]
        assert re.search(r"code=\d+ msg=\S", line), line
    for sid in SIDS["ok"]:
        assert sid not in errors_log
    assert "code=10909" in errors_log and "RuntimeError" in errors_log

    app = wait_for(logs / "app.log", re.escape(f"sid={SIDS['ok'][-1]} handled"))
    for sid in SIDS["ok"]:  # the wrapper's own logging.getLogger("fastml_example"), from the plugin process
        assert re.search(rf"fastml_example: sid={sid} handled", app), sid
    fail_sid = SIDS["error"][1]
    assert f"fastml_example: sid={fail_sid} asked to fail" in app
    assert re.search(rf"ERROR aiges\.http: sid={fail_sid} code=10909", app)  # the engine's error line, sid first
    assert "fastml example ready" in app  # wrapperInit's log line
