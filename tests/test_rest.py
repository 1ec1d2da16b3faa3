"""POST /infer: text, JSON, raw bytes and multipart forms without the envelope (fastml style)."""
from __future__ import annotations

import json
import uuid

from tests.utils import WRAPPERS, Loader, http

PNG = (WRAPPERS / "image_stats" / "test_data" / "test.png").read_bytes()


def multipart(fields: dict[str, tuple[str | None, bytes]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    out = b""
    for name, (filename, data) in fields.items():
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disp}\r\n\r\n".encode() + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def test_text_json_bytes(demo: Loader) -> None:
    status, _, body = http("POST", demo.url + "/infer?mode=reverse", b"abc", {"Content-Type": "text/plain"})
    assert status == 200 and body["result"] is True and body["data"] == "cba"
    assert body["metadata"]["content_type"] == "text/plain" and body["metadata"]["duration"] > 0
    status, _, body = http("POST", demo.url + "/infer", json.dumps({"text": "hi", "params": {"repeat": 2}}).encode(),
                           {"Content-Type": "application/json"})
    assert status == 200 and body["data"] == "HI HI"
    status, _, body = http("POST", demo.url + "/infer", b'{"any": [1, 2]}', {"Content-Type": "application/json"})
    assert status == 200 and body["data"] == '{"ANY": [1, 2]}'  # the JSON as sent, not re-encoded
    status, _, body = http("POST", demo.url + "/infer?mode=lower", b"RAW", {"Content-Type": "application/octet-stream"})
    assert status == 200 and body["data"] == "raw"


def test_multipart_image(image_stats: Loader) -> None:
    data, ctype = multipart({"img": ("test.png", PNG), "ctrl": (None, b"from-form")})
    status, _, body = http("POST", image_stats.url + "/infer", data, {"Content-Type": ctype})
    assert status == 200, body
    result = json.loads(body["data"])
    assert result["width"] == 28 and result["ctrl"] == "from-form"


def test_errors_keep_the_rest_shape(demo: Loader, image_stats: Loader) -> None:
    status, _, body = http("POST", demo.url + "/infer?repeat=99", b"x", {"Content-Type": "text/plain"})
    assert status == 400 and body["result"] is False and body["error"]["code"] == 10107
    assert "repeat" in body["error"]["message"] and body["metadata"]["sid"]
    status, _, body = http("POST", demo.url + "/infer", b"<x/>", {"Content-Type": "application/xml"})
    assert status == 415 and body["error"]["code"] == 12415 and "Content-Type" in body["error"]["message"]
    status, _, body = http("POST", image_stats.url + "/infer?ctrl=raise", PNG,
                           {"Content-Type": "application/octet-stream"})
    assert status == 500 and body["error"]["code"] == 10909 and "RuntimeError" in body["error"]["message"]
