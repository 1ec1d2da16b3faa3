"""A hand-made corpus of what a spec-driven fuzzer misses, each with its expected answer.

Deep nesting, bodies over the limit, invalid UTF-8, NaN/Infinity, duplicate keys, huge integers,
wrong Content-Types, broken multipart, HTTP the parser rejects, and WebSocket garbage / binary /
oversize / non-UTF-8 frames on an open session.  Every case must get a clear status, an error
code and a message in the error envelope (``/infer``: its REST error shape) -- or, where the
request is fine, its answer -- and leave the loader and its plugin process alive and ready.
A loader of the demo with ``maxBodyMB = 1`` takes the corpus; one real 70 MB body goes to a
loader with the default limit (64 MB).
"""
from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.utils import ROOT, Loader, alive, start_loader

HI = base64.b64encode(b"hi").decode()
MB = 1024 * 1024


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loader]:
    """The demo with a 1 MB body limit, so over-limit bodies are quick to send."""
    loader = start_loader(tmp_path_factory.mktemp("nasty"), ROOT / "examples" / "demo", aiges="maxBodyMB = 1")
    loader.extra["plugins"] = sorted(loader.plugin_pids())
    yield loader
    loader.stop()


# One depth rule (aiges.loader.envelope.MAX_DEPTH): a body or frame nested more than 255 levels is
# refused whole, whatever orjson reads (before 3.9 any depth, since then 1,024 levels).
DEEP_BODY_CODE = 10000
DEEP_BODY_WORDS = "JSON nested more than 255 levels"
DEEP_FRAME_CODE = 10163


def named(field: str, words: str) -> str:
    return words  # refused before any field is read



def deep(n: int, leaf: str = "") -> str:
    return "[" * n + leaf + "]" * n


def envelope(payload_item: str = f'{{"text":"{HI}"}}', params: str = "{}", header: str = "{}") -> bytes:
    return f'{{"header":{header},"parameter":{{"demo":{params}}},"payload":{{"text":{payload_item}}}}}'.encode()


# ------------------------------------------------------------------ raw HTTP
@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Any

    @property
    def error(self) -> dict[str, Any]:
        """code/message/sid of an error answer, from the envelope or /infer's REST shape."""
        b = self.body
        if isinstance(b, dict) and isinstance(b.get("header"), dict):
            assert b.get("payload") is None, b
            return b["header"]
        if isinstance(b, dict) and isinstance(b.get("error"), dict):
            assert b.get("result") is False, b
            return dict(b["error"], sid=(b.get("metadata") or {}).get("sid"))
        raise AssertionError(f"not an error envelope: {str(b)[:300]}")


def send_raw(port: int, head: bytes, body: bytes | Iterator[bytes] = b"", timeout: float = 20) -> Answer:
    """Send a request exactly as given (the body from a thread, so a server answering early is
    heard even while the client is still sending), read one HTTP answer."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sent_error: list[BaseException] = []

    def sender() -> None:
        try:
            sock.sendall(head)
            for chunk in ([body] if isinstance(body, bytes) else body):
                sock.sendall(chunk)
        except OSError as e:  # the server answered and closed before reading it all: fine
            sent_error.append(e)

    th = threading.Thread(target=sender, daemon=True)
    th.start()
    try:
        resp = http.client.HTTPResponse(sock)
        resp.begin()
        raw = resp.read()
        headers = {k.lower(): v for k, v in resp.getheaders()}
    finally:
        th.join(timeout)
        sock.close()
    try:
        parsed: Any = json.loads(raw)
    except ValueError:
        parsed = raw
    return Answer(resp.status, headers, parsed)


def post(loader: Loader, path: str, body: bytes, content_type: str = "application/json",
         extra: str = "") -> Answer:
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n{extra}\r\n").encode()
    return send_raw(loader.port, head, body)


def multipart(parts: list[tuple[str, bytes]], boundary: str = "nastyboundary", close: bool = True) -> bytes:
    out = b"".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + data + b"\r\n"
                   for name, data in parts)
    return out + (f"--{boundary}--\r\n".encode() if close else b"")


# (name, path, content type, body, status, code, words of the message); code 0 = a success
CASES: list[tuple[str, str, str, bytes, int, int, str]] = [
    ("10k-deep array as the whole body", "/v1/svcName", "application/json", deep(10_000).encode(),
     400, DEEP_BODY_CODE, DEEP_BODY_WORDS),
    ("10k-deep value in a payload attribute", "/v1/svcName", "application/json",
     envelope(f'{{"text":"{HI}","extra":{deep(10_000)}}}'), 400, 10000, named("payload.text.extra: ", "JSON nested more than")),
    ("10k-deep value as a param", "/v1/svcName", "application/json", envelope(params=f'{{"x":{deep(10_000)}}}'),
     400, 10000, named("parameter.demo.x: ", "JSON nested more than")),
    ("10k-deep JSON data field", "/v1/svcName", "application/json",
     envelope('{"text":' + '{"a":' * 10_000 + "1" + "}" * 10_000 + "}"), 400, 10000, named("payload.text.text: ", "JSON nested")),
    ("1k-deep value beside a float param (the spelling-keeping re-read)", "/v1/svcName", "application/json",
     envelope(f'{{"text":"{HI}","extra":{deep(1_000)}}}', params='{"x":0.5}'), 400, 10000, "JSON nested more than 255"),
    ("10k-deep input of /infer", "/infer", "application/json", f'{{"text":{deep(10_000)}}}'.encode(),
     400, 10000, named("text: ", "JSON nested more than")),
    ("invalid UTF-8 in a string", "/v1/svcName", "application/json", b'{"payload":{"text":{"text":"\xff\xfe"}}}',
     400, 10000, "not valid JSON"),
    ("invalid UTF-8 in a key", "/v1/svcName", "application/json",
     b'{"payload":{"\xc3\x28":{"text":"aGk="}}}', 400, 10000, "not valid JSON"),
    ("invalid UTF-8 JSON to /infer", "/infer", "application/json", b'{"text":"\xff"}', 400, 10000, "not valid JSON"),
    ("NaN", "/v1/svcName", "application/json", envelope(params='{"repeat":NaN}'), 400, 10000, "not valid JSON"),
    ("Infinity", "/v1/svcName", "application/json", envelope(params='{"repeat":Infinity}'), 400, 10000, "not valid JSON"),
    ("-Infinity", "/v1/svcName", "application/json", envelope(params='{"repeat":-Infinity}'), 400, 10000,
     "not valid JSON"),
    ("1e400 (infinite as a double)", "/v1/svcName", "application/json", envelope(params='{"repeat":1e400}'),
     400, 10000, "infinity"),
    ("NaN to /infer", "/infer", "application/json", b'{"text":"hi","params":{"repeat":NaN}}', 400, 10000,
     "not valid JSON"),
    ("huge integer param (2**64), quoted exactly", "/v1/svcName", "application/json",
     envelope(params='{"repeat":18446744073709551616}'), 400, 10107, "<= 5, got '18446744073709551616'"),
    ("huge negative integer param", "/v1/svcName", "application/json",
     envelope(params='{"repeat":-99999999999999999999999999}'), 400, 10107, "got '-99999999999999999999999999'"),
    ("huge integer in an undeclared list param beside a float", "/v1/svcName", "application/json",
     envelope(params='{"ids":[18446744073709551616,1.5],"w":0.25}'), 200, 0, "HI"),
    ("huge integer in the header", "/v1/svcName", "application/json",
     envelope(header='{"appid":"a","res_id":123456789012345678901234567890}'), 200, 0, "HI"),
    ("a number as header.appid (a string, as upstream's schema says)", "/v1/svcName", "application/json",
     envelope(header='{"appid":123456789012345678901234567890}'), 400, 10107, "header.appid: must be a string"),
    ("duplicate keys: the last wins (as Go's encoding/json upstream)", "/v1/svcName", "application/json",
     envelope(params='{"mode":"upper","mode":"reverse"}'), 200, 0, "ih"),
    ("duplicate payload keys: the last wins", "/v1/svcName", "application/json",
     f'{{"payload":{{"text":{{"text":"{base64.b64encode(b"first").decode()}"}},"text":{{"text":"{HI}"}}}}}}'.encode(),
     200, 0, "HI"),
    ("empty body", "/v1/svcName", "application/json", b"", 400, 10000, "empty"),
    ("a JSON string, not an object", "/v1/svcName", "application/json", b'"payload"', 400, 10009,
     "must be a JSON object"),
    ("envelope sent as text/plain (Content-Type ignored, as upstream)", "/v1/svcName", "text/plain", envelope(),
     200, 0, "HI"),
    ("envelope sent as form-urlencoded", "/v1/svcName", "application/x-www-form-urlencoded", envelope(),
     200, 0, "HI"),
    ("/infer with an unsupported Content-Type", "/infer", "image/png", b"\x89PNG", 415, 12415,
     "unsupported Content-Type image/png"),
    ("/infer multipart without a boundary", "/infer", "multipart/form-data", multipart([("text", b"hi")]),
     400, 10009, "multipart body is broken"),
    ("/infer multipart with the wrong boundary", "/infer", "multipart/form-data; boundary=other",
     multipart([("text", b"hi")]), 400, 10009, "multipart body is broken"),
    ("/infer multipart cut off inside a part", "/infer", "multipart/form-data; boundary=nastyboundary",
     multipart([("text", b"hello world")], close=False)[:-12], 400, 10009, "multipart body is broken"),
    ("/infer multipart without its closing boundary", "/infer", "multipart/form-data; boundary=nastyboundary",
     multipart([("text", b"hello world")], close=False), 400, 10009, "multipart body is broken"),
    ("/infer multipart part over maxBodyMB", "/infer", "multipart/form-data; boundary=nastyboundary",
     multipart([("text", b"x" * (2 * MB))]), 413, 12413, "larger than the limit of 1 MB"),
    ("/infer invalid UTF-8 as text/plain (bytes pass through)", "/infer", "text/plain", b"h\xffi", 200, 0,
     "H\ufffdI"),
    ("70 MB body over maxBodyMB = 1", "/v1/svcName", "application/json", b"{" + b" " * (70 * MB) + b"}",
     413, 12413, "larger than the limit of 1 MB"),
]


def check(answer: Answer, status: int, code: int, words: str, name: str) -> None:
    assert answer.status == status, (name, answer.status, str(answer.body)[:400])
    if code == 0:
        text = json.dumps(answer.body, ensure_ascii=False)
        assert words in text, (name, text[:400])
        return
    err = answer.error
    assert err["code"] == code, (name, err)
    assert words in err["message"], (name, err["message"][:400])
    assert err.get("sid"), (name, err)


def still_serving(loader: Loader) -> None:
    assert loader.proc.poll() is None, "the loader died"
    plugins = loader.extra.get("plugins")
    if plugins is not None:
        assert sorted(loader.plugin_pids()) == plugins and all(alive(p) for p in plugins), "a plugin was replaced"
    answer = post(loader, "/v1/svcName", envelope())
    assert answer.status == 200 and answer.body["payload"]["result"]["text"] == "HI", answer


@pytest.mark.parametrize("name,path,ctype,body,status,code,words", CASES, ids=[c[0] for c in CASES])
def test_nasty_http(small: Loader, name: str, path: str, ctype: str, body: bytes, status: int, code: int,
                    words: str) -> None:
    t = time.monotonic()
    answer = post(small, path, body, ctype)
    assert time.monotonic() - t < 15
    check(answer, status, code, words, name)
    still_serving(small)


def test_chunked_body_over_the_limit(small: Loader) -> None:
    """No Content-Length to check up front: the limit still holds while the chunks arrive."""
    def chunks() -> Iterator[bytes]:
        piece = b"x" * 65536
        for _ in range(40):  # 2.5 MB
            yield b"%x\r\n%s\r\n" % (len(piece), piece)
        yield b"0\r\n\r\n"

    head = (b"POST /v1/svcName HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
    check(send_raw(small.port, head, chunks()), 413, 12413, "larger than the limit of 1 MB", "chunked")
    still_serving(small)


PARSER_CASES = [
    ("request line over 8 KB", b"GET /health?" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", "8190 bytes"),
    ("header over 8 KB", b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 10_000 + b"\r\n\r\n", "8190 bytes"),
    ("bytes that are not HTTP", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 TLS hello?\r\n\r\n", "not valid HTTP"),
    ("broken chunk size", b"POST /v1/svcName HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
     "chunk size"),
    ("negative Content-Length", b"POST /v1/svcName HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", "Content-Length"),
    ("two different Content-Lengths", b"POST /v1/svcName HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
     b"Content-Length: 3\r\n\r\n{}", "Content-Length"),
]


@pytest.mark.parametrize("name,raw,words", PARSER_CASES, ids=[c[0] for c in PARSER_CASES])
def test_http_the_parser_rejects(small: Loader, name: str, raw: bytes, words: str) -> None:
    """Rejected before any route runs (aiohttp's parser): still 400 with the envelope (then aiohttp closes)."""
    answer = send_raw(small.port, raw)
    assert answer.status == 400, (name, answer)
    err = answer.error
    assert err["code"] == 10009 and err["message"].startswith("the request is not valid HTTP"), (name, err)
    assert words in err["message"] and err["sid"], (name, err)
    still_serving(small)


def test_client_gone_mid_body(small: Loader) -> None:
    """Content-Length 10,000 and 100 bytes, then the client goes: nobody to answer; nothing hangs or leaks."""
    for _ in range(20):
        sock = socket.create_connection(("127.0.0.1", small.port), timeout=5)
        sock.sendall(b"POST /v1/svcName HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 10000\r\n\r\n" + b"{" * 100)
        sock.close()
    still_serving(small)
    assert small.get("/metrics")[0] == 200


def test_real_70mb_body_against_the_default_limit(demo: Loader) -> None:
    """One real 70 MB body against maxBodyMB = 64: 413/12413 quickly, the loader keeps serving."""
    body = b'{"payload":{"text":{"text":"' + b"A" * (70 * MB) + b'"}}}'
    t = time.monotonic()
    answer = post(demo, "/v1/svcName", body)
    took = time.monotonic() - t
    del body
    check(answer, 413, 12413, "larger than the limit of 64 MB", "70 MB")
    assert took < 15, took
    still_serving(demo)


# ------------------------------------------------------------------ WebSocket, on a raw socket
class RawWS:
    """A minimal RFC 6455 client: sends any frame (binary, non-UTF-8 text, oversize) as given."""

    def __init__(self, port: int, path: str = "/v1/svcName", timeout: float = 10) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            assert chunk, f"closed during the upgrade: {head!r}"
            head += chunk
        assert head.startswith(b"HTTP/1.1 101"), head
        self.buf = b""

    def send(self, payload: bytes, opcode: int = 0x1) -> None:
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            length = bytes([0x80 | n])
        elif n < 65536:
            length = bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            length = bytes([0x80 | 127]) + struct.pack("!Q", n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload)) if n < 65536 else \
            (int.from_bytes(payload, "big") ^ int.from_bytes((mask * (n // 4 + 1))[:n], "big")).to_bytes(n, "big")
        try:
            self.sock.sendall(bytes([0x80 | opcode]) + length + mask + masked)
        except OSError:  # the server closed while reading an oversize frame: its answer is already queued
            pass

    def _read(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv(self) -> tuple[int, bytes]:
        b0, b1 = self._read(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._read(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._read(8))[0]
        return b0 & 0x0F, self._read(n)

    def frames_until_close(self) -> tuple[list[dict[str, Any]], int | None]:
        texts, close_code = [], None
        try:
            while True:
                op, data = self.recv()
                if op == 0x1:
                    texts.append(json.loads(data))
                elif op == 0x8:
                    close_code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else 1005
                    break
        except (EOFError, ConnectionError):
            pass
        self.sock.close()
        return texts, close_code


FIRST = json.dumps({"header": {"appid": "t", "status": 0}, "parameter": {"demo": {"mode": "upper"}},
                    "payload": {"text": {"text": HI, "status": 0}}}).encode()

WS_CASES: list[tuple[str, int, bytes, int, str, int]] = [
    # name, opcode, frame, error code, words of the message, close code
    ("garbage text", 0x1, b"not json {{{", 10163, "parse request json error", 1000),
    ("a JSON array", 0x1, b"[1,2,3]", 10163, "must be a JSON object", 1000),
    ("NaN in a frame", 0x1, b'{"payload":{"text":{"text":"aGk=","status":1}},"parameter":{"demo":{"repeat":NaN}}}',
     10163, "parse request json error", 1000),
    ("10k-deep frame", 0x1, f'{{"payload":{{"text":{{"text":"aGk=","status":1,"d":{deep(10_000)}}}}}}}'.encode(),
     DEEP_FRAME_CODE, "JSON nested more than", 1000),
    ("1k-deep frame beside a float", 0x1,
     f'{{"parameter":{{"x":0.5}},"payload":{{"text":{{"text":"aGk=","status":1,"d":{deep(1_000)}}}}}}}'.encode(),
     10163, "JSON nested more than 255", 1000),
    ("binary frame", 0x2, b"\x00\x01\x02binary", 10163, "binary frame", 1000),
    ("text frame that is not UTF-8", 0x1, b'{"payload":"\xff\xfe"}', 10163, "not valid UTF-8", 1007),
    ("frame over maxBodyMB", 0x1, b'{"payload":{"text":{"text":"' + b"A" * (2 * MB) + b'"}}}', 12413,
     "larger than the limit of 1 MB", 1009),
]


@pytest.mark.parametrize("first", [False, True], ids=["first-frame", "on-a-session"])
@pytest.mark.parametrize("name,opcode,frame,code,words,close", WS_CASES, ids=[c[0] for c in WS_CASES])
def test_nasty_websocket(small: Loader, first: bool, name: str, opcode: int, frame: bytes, code: int, words: str,
                         close: int) -> None:
    ws = RawWS(small.port)
    if first:  # a session is open (wrapperCreate ran, the first frame written) when the bad frame comes
        ws.send(FIRST)
        op, data = ws.recv()
        assert op == 0x1 and json.loads(data)["header"]["code"] == 0
    ws.send(frame, opcode)
    texts, close_code = ws.frames_until_close()
    errors_ = [t["header"] for t in texts if t["header"].get("code")]
    assert len(errors_) == 1, (name, texts)
    err = errors_[0]
    assert err["code"] == code and words in err["message"] and err["sid"], (name, err)
    assert close_code == close, (name, close_code)
    still_serving(small)


def test_nasty_corpus_leaves_everything_alive(small: Loader) -> None:
    """After the whole corpus: the same plugin process, ready, no unhandled exception logged."""
    still_serving(small)
    assert small.get("/ready")[0] == 200
    log = (small.log_dir / "app.log").read_text(errors="replace")
    assert "unexpected error" not in log and "Task exception was never retrieved" not in log, \
        [ln for ln in log.splitlines() if "unexpected" in ln or "never retrieved" in ln][:5]
    assert "code=12500" not in log


def test_json_values_passed_on_keep_their_numbers() -> None:
    """What the envelope passes on as JSON text (list params, JSON data fields, payload attributes)
    keeps the client's numbers, on the spelling-keeping path too (NumberLiteral, > 64-bit ints)."""
    from aiges.loader import envelope

    doc = envelope.loads(b'{"parameter":{"demo":{"w":0.25,"ids":[1e5,18446744073709551616,-0.0]}}}')
    assert envelope.dumps(doc["parameter"]["demo"]["ids"]) == b"[1e5,18446744073709551616,-0.0]"
    parsed = envelope.parse(doc, ["demo"], require_payload=False)
    assert parsed.params["ids"] == "[1e5,18446744073709551616,-0.0]" and parsed.params["w"] == "0.25"
    n = envelope.MAX_DEPTH  # the one rule: a body nests at most n levels (header.x: 2 of them)
    for leaf in ("", "0.5"):  # orjson's own path, and ours for a NumberLiteral (the same limit)
        assert envelope.dumps(envelope.loads(f'{{"header":{{"x":{deep(n - 2, leaf)}, "f":0.1}}}}')["header"]["x"]) \
            == deep(n - 2, leaf).encode()
        with pytest.raises(envelope.TooDeep):
            envelope.loads(f'{{"header":{{"x":{deep(n - 1, leaf)}, "f":0.1}}}}')
        with pytest.raises(envelope.TooDeep):  # nor is a value deeper than that written
            envelope.dumps(json.loads(deep(n + 1, leaf), parse_float=envelope.NumberLiteral))
