"""HTTP once inference end to end: real loader + real plugin worker per module."""
from __future__ import annotations

import base64
import json
import time
from pathlib import Path

from tests.utils import WRAPPERS, Loader, http, once_body, start_loader

PNG = (WRAPPERS / "image_stats" / "test_data" / "test.png").read_bytes()


def b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def test_demo_success_on_both_routes(demo: Loader) -> None:
    body = once_body("demo", {"text": {"text": b64("hello aiges"), "status": 3}}, {"mode": "upper", "repeat": 2})
    for route in ("/v1/svcName", "/v1/private/demo"):
        status, _, resp = demo.post(route, body)
        assert status == 200, resp
        assert resp["header"]["code"] == 0 and resp["header"]["message"] == "success"
        assert resp["header"]["sid"]
        assert resp["payload"]["result"]["text"] == "HELLO AIGES HELLO AIGES"
        assert resp["payload"]["result"]["status"] == "3" and resp["payload"]["result"]["seq"] == "0"


def test_compat_wrapper_unchanged(image_stats: Loader) -> None:
    """The upstream mnist-style wrapper, with upstream's exact request shape (expect object included)."""
    body = {"header": {"appid": "123456", "uid": "39769795890", "did": "SR082321940000200", "status": 3, "res_id": ""},
            "parameter": {"svcName": {"ctrl": "helloworld", "result": {"encoding": "utf8", "compress": "raw",
                                                                       "format": "plain", "data_type": "text"}}},
            "payload": {"img": {"encoding": "png", "status": 3, "image": b64(PNG)}}}
    status, _, resp = image_stats.post("/v1/svcName", body)
    assert status == 200, resp
    item = resp["payload"]["result"]
    assert item["encoding"] == "utf8" and item["compress"] == "raw" and item["format"] == "plain"
    result = json.loads(item["text"])
    assert (result["width"], result["height"], result["ctrl"]) == (28, 28, "helloworld")
    assert result["params"]["sid"] == resp["header"]["sid"]


def test_numbers_are_not_mangled(faulty: Loader) -> None:
    body = once_body("faulty", {"text": {"text": b64("x"), "status": 3, "seq": 7, "rate": 0.5, "flag": True}},
                     {"ctrl": "params", "sleep": 0, "n": 3, "f": 0.25, "b": False})
    body["parameter"]["scalar"] = 12
    body["parameter"]["other_service"] = {"ctrl": "must-not-merge", "zz": 1}
    status, _, resp = faulty.post("/v1/svcName", body)
    assert status == 200, resp
    seen = json.loads(resp["payload"]["result"]["text"])
    assert seen["params"]["n"] == "3" and seen["params"]["f"] == "0.25" and seen["params"]["b"] == "false"
    assert seen["params"]["scalar"] == "12" and "zz" not in seen["params"] and seen["params"]["ctrl"] == "params"
    assert seen["desc"]["text"] == {"seq": "7", "rate": "0.5", "flag": "true"}
    # [wrapper] config is stringified and http_listen is not leaked into wrapperInit
    assert seen["config"] == {"model.path": "/m", "threshold": "0.5", "n": "3"}


def test_expect_object_optional_and_types(faulty: Loader) -> None:
    status, _, resp = faulty.post("/v1/svcName", once_body("faulty", {"text": {"text": b64("x")}}, {"ctrl": "image"}))
    assert status == 200 and base64.b64decode(resp["payload"]["result"]["image"]) == b"\x89PNG fake"


def _err(loader: Loader, body: object, status: int, code: int, *words: str, headers: dict[str, str] | None = None,
         route: str = "/v1/svcName") -> dict:
    t = time.monotonic()
    got, hdrs, resp = loader.post(route, body if isinstance(body, (bytes, dict)) else body, headers=headers)
    assert time.monotonic() - t < 1.5, "an error must be answered at once"
    assert got == status, resp
    assert resp["header"]["code"] == code, resp
    assert resp["header"]["sid"] and resp["payload"] is None
    for w in words:
        assert w in resp["header"]["message"], resp
    return hdrs


def test_error_table_bad_requests(faulty: Loader) -> None:
    _err(faulty, b"{not json", 400, 10000, "not valid JSON")
    _err(faulty, once_body("faulty", {"text": {"text": "!!notbase64"}}), 400, 10001, "payload.text.text", "base64")
    _err(faulty, {"header": {}, "parameter": [], "payload": {}}, 400, 10009, "'parameter'")
    _err(faulty, once_body("faulty", {}), 400, 10009, "payload is empty")
    _err(faulty, once_body("faulty", {"text": {"status": 3}}), 400, 10009, "payload.text", "no data field")
    _err(faulty, once_body("faulty", {"text": {"text": b64("x")}}, {"sleep": "many"}), 400, 10107,
         "parameter.faulty.sleep", "number")
    _err(faulty, once_body("faulty", {"text": {"text": b64("x")}}, expect={"result": {"encoding": 5}}), 400, 10107,
         "parameter.faulty.result.encoding")


def test_required_param_missing(demo: Loader) -> None:
    # the demo declares no required param; image_stats neither — use the validator through repeat's range
    _err(demo, once_body("demo", {"text": {"text": b64("x")}}, {"repeat": 9}), 400, 10107, "parameter.demo.repeat",
         "<= 5")
    _err(demo, once_body("demo", {"text": {"text": b64("x")}}, {"mode": "shout"}), 400, 10107, "parameter.demo.mode",
         "one of")
    _err(demo, once_body("demo", {"nope": {"text": b64("x")}}), 400, 10107, "payload.nope", "unknown input")


def test_error_table_routes_and_size(faulty: Loader) -> None:
    status, hdrs, resp = faulty.get("/no/such/route")
    assert status == 404 and resp["header"]["code"] == 12404 and resp["header"]["sid"]
    assert hdrs.get("Access-Control-Allow-Origin") == "*"  # as upstream, on every answer
    status, _, resp = faulty.post("/health", {})
    assert status == 405 and resp["header"]["code"] == 12405 and resp["header"]["sid"]
    status, _, resp = faulty.post("/v1/svcName", b"not gzip", {"Content-Encoding": "gzip",
                                                             "Content-Type": "application/json"})
    assert status == 400 and resp["header"]["code"] == 10009 and "Content-Encoding" in resp["header"]["message"]
    status, hdrs, _ = http("OPTIONS", faulty.url + "/v1/svcName", None,
                           {"Origin": "http://127.0.0.1:9", "Access-Control-Request-Method": "POST"})
    assert status == 204 and "POST" in hdrs["Access-Control-Allow-Methods"]
    big = once_body("faulty", {"text": {"text": b64(b"x" * (1024 * 1024 + 10))}})
    _err(faulty, big, 413, 12413, "maxBodyMB")


def test_wrapper_failures_answered_at_once(faulty: Loader, image_stats: Loader) -> None:
    png = {"img": {"image": b64(PNG), "status": 3}}
    _err(image_stats, once_body("svcName", png, {"ctrl": "raise"}), 500, 10909, "RuntimeError",
         "wrapper raised on purpose")
    _err(image_stats, once_body("svcName", png, {"ctrl": "empty"}), 500, 10909, "empty")
    _err(image_stats, once_body("svcName", png, {"ctrl": "err"}), 500, 100, "wrapper exec exception here...")
    _err(image_stats, once_body("svcName", {"other": {"image": b64(PNG)}}, {"ctrl": "x"}), 400, 10107, "payload.other")
    _err(faulty, once_body("faulty", {"text": {"text": b64("x")}}, {"ctrl": "none"}), 500, 10909, "None")
    _err(faulty, once_body("faulty", {"text": {"text": b64("x")}}, {"ctrl": "err"}), 500, 4242,
         "custom failure 4242 explained by wrapperError")


def test_output_mismatch_names_key_and_types(faulty: Loader) -> None:
    """The request asks for what the wrapper declares; the wrapper returns something else: 10106
    (a request contradicting the declared outputs gets the same code, as a 400 before the wrapper runs)."""
    _err(faulty, once_body("faulty", {"text": {"text": b64("x")}}, {"ctrl": "image"},
                           expect={"result": {"data_type": "text"}}), 500, 10106, "'result'", "text", "image")
    _err(faulty, once_body("faulty", {"text": {"text": b64("x")}}, expect={"result": {"data_type": "audio"}}),
         400, 10106, "parameter.faulty.result.data_type", "text")


def test_deadline_504(faulty: Loader) -> None:
    t = time.monotonic()
    status, _, resp = faulty.post("/v1/svcName", once_body("faulty", {"text": {"text": b64("x")}}, {"sleep": 5}))
    assert status == 504 and resp["header"]["code"] == 10102
    assert time.monotonic() - t < 4
    status, _, resp = faulty.post("/v1/svcName", once_body("faulty", {"text": {"text": b64("x")}}, {"sleep": 0.5}),
                                  headers={"X-Aiges-Deadline": "0.2", "Content-Type": "application/json"})
    assert status == 504 and resp["header"]["code"] == 10102


def test_health_ready_root_metrics(demo: Loader) -> None:
    assert demo.get("/health")[2] == {"status": "UP"}
    status, _, body = demo.get("/ready")
    assert status == 200 and body["status"] == "READY"
    status, _, text = demo.get("/metrics")
    assert status == 200 and b"aiges_requests_total" in text and b"aiges_workers_ready 1.0" in text
    import urllib.request
    with urllib.request.urlopen(demo.url + "/") as r:  # follows the redirect
        assert r.url.endswith("/swagger/index.html")


def test_logs_written(demo: Loader) -> None:
    demo.post("/v1/svcName", b"{bad")
    logs = demo.log_dir
    assert (logs / "app.log").exists()
    from tests.utils import wait_until
    assert wait_until(lambda: "code=10000" in (logs / "error-access.log").read_text(), 3)
    assert "sid=" in (logs / "error-access.log").read_text()
    assert wait_until(lambda: (logs / "access.log").exists(), 3)
    assert "plugin w0 ready" in (logs / "app.log").read_text()


RELATIVE_WRAPPER = '''
from aiges.dto import Response, ResponseData
from aiges.sdk import WrapperBase, StringBodyField
from aiges.core.types import DataText, Once


class UserRequest(object):
    input1 = StringBodyField(key="text", value=b"x")


class UserResponse(object):
    accept1 = StringBodyField(key="result")


class Wrapper(WrapperBase):
    serviceId = "rel"
    requestCls = UserRequest()
    responseCls = UserResponse()

    def wrapperInit(self, config):
        self.model = open("model/labels.txt").read().strip()  # relative, as upstream wrappers do
        return 0

    def wrapperOnceExec(self, params, reqData, usrTag="", persId=0):
        r = Response()
        r.list = [ResponseData(key="result", data=self.model.encode(), type=DataText, status=Once)]
        return r
'''


def test_relative_paths_resolve_in_the_wrapper_directory(tmp_path: Path) -> None:
    """Upstream ran the wrapper in its own directory; a wrapper opening "model/labels.txt" keeps
    working when the loader runs elsewhere with [aiges] wrapperDir pointing at it."""
    wd = tmp_path / "project" / "wrapper"
    (wd / "model").mkdir(parents=True)
    (wd / "model" / "labels.txt").write_text("cat,dog\n")
    (wd / "wrapper.py").write_text(RELATIVE_WRAPPER)
    loader = start_loader(tmp_path / "run", wd)
    try:
        status, _, resp = loader.post("/v1/svcName", once_body("rel", {"text": {"text": b64("q"), "status": 3}}))
        assert status == 200, resp
        assert resp["payload"]["result"]["text"] == "cat,dog"
    finally:
        loader.stop()


def test_expect_objects_and_object_params_are_validated(demo: Loader) -> None:
    """Checked before the wrapper runs (400), not blamed on the wrapper afterwards (500); a data_type
    contradicting the declared output keeps upstream's code for it, 10106."""
    text = {"text": {"text": b64("x"), "status": 3}}
    _err(demo, once_body("demo", text, {"repeat": {"x": 1}}), 400, 10107, "parameter.demo.repeat", "object")
    _err(demo, once_body("demo", text, expect={"nope": {"encoding": "utf8"}}), 400, 10107, "parameter.demo.nope",
         "result")
    _err(demo, once_body("demo", text, expect={"result": {"data_type": "image"}}), 400, 10106,
         "parameter.demo.result", "text")
    status, _, resp = demo.post("/v1/svcName", once_body("demo", text, expect={"result": {"encoding": "utf8"}}))
    assert status == 200, resp
