"""/openapi.json and /swagger on real loaders: a valid OpenAPI 3 document whose example works.

Lifecycle: the module's loaders (demo, the upstream image_stats wrapper, a wrapper with API keys)
start once; each test reads the document they serve and sends its example back to them.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate

from aiges.loader import envelope
from aiges.loader.openapi import build_openapi, example_request
from aiges.loader.validate import Validator
from tests.utils import ROOT, WRAPPERS, Loader, http, start_loader

ERROR_STATUSES = {"400", "401", "404", "413", "429", "500", "503", "504"}


def example_of(doc: dict[str, Any]) -> dict[str, Any]:
    media = doc["components"]["requestBodies"]["OnceRequest"]["content"]["application/json"]
    return media["examples"]["test_values"]["value"]


@pytest.fixture(scope="module")
def demo_doc(demo: Loader) -> dict[str, Any]:
    status, headers, doc = demo.get("/openapi.json")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    return doc


def test_document_is_valid_openapi_3(demo_doc: dict[str, Any], image_stats: Loader) -> None:
    validate(demo_doc)
    assert demo_doc["openapi"].startswith("3.0")
    _s, _h, other = image_stats.get("/openapi.json")
    validate(other)


def test_servers_are_relative_and_both_inference_paths_listed(demo_doc: dict[str, Any]) -> None:
    assert [s["url"] for s in demo_doc["servers"]] == ["/"]
    assert {"/v1/private/demo", "/v1/svcName"} <= set(demo_doc["paths"])
    ops = [demo_doc["paths"][p]["post"] for p in ("/v1/private/demo", "/v1/svcName")]
    assert len({op["operationId"] for op in ops}) == 2
    assert demo_doc["info"]["title"] == "Aiges Service doc for demo" and demo_doc["info"]["version"] == "v1"


def test_params_carry_types_enums_limits(demo_doc: dict[str, Any]) -> None:
    request = demo_doc["components"]["schemas"]["Request"]
    section = request["properties"]["parameter"]["properties"]["demo"]["properties"]
    assert section["mode"]["type"] == "string"
    assert section["mode"]["enum"] == ["upper", "lower", "reverse", "title"]
    assert section["repeat"]["type"] == "integer"
    assert (section["repeat"]["minimum"], section["repeat"]["maximum"]) == (1, 5)


def test_expect_objects_are_documented_and_optional(demo_doc: dict[str, Any]) -> None:
    demo = demo_doc["components"]["schemas"]["Request"]["properties"]["parameter"]["properties"]["demo"]
    expect = demo["properties"]["result"]
    assert expect["type"] == "object"
    assert set(expect["properties"]) == {"encoding", "compress", "format", "data_type"}
    assert expect["properties"]["data_type"]["example"] == "text"
    assert "result" not in demo.get("required", [])
    assert "optional" in expect["description"]


def test_payload_inputs_carry_data_field_encodings_status(demo_doc: dict[str, Any]) -> None:
    payload = demo_doc["components"]["schemas"]["Request"]["properties"]["payload"]["properties"]
    text = payload["text"]
    assert text["required"] == ["text"]
    assert text["properties"]["encoding"]["enum"] == ["utf8", "gb2312"]
    assert text["properties"]["status"]["enum"] == [0, 1, 2, 3]
    assert "base64" in text["properties"]["text"]["description"]


def test_response_and_error_envelopes(demo_doc: dict[str, Any]) -> None:
    op = demo_doc["paths"]["/v1/private/demo"]["post"]
    assert {"200"} | ERROR_STATUSES == set(op["responses"])
    responses = demo_doc["components"]["responses"]
    for status in ERROR_STATUSES:
        name = op["responses"][status]["$ref"].rsplit("/", 1)[1]
        example = responses[name]["content"]["application/json"]["example"]
        assert set(example["header"]) == {"code", "message", "sid"} and example["payload"] is None
    assert "Retry-After" in responses["Overloaded"]["headers"]
    error = demo_doc["components"]["schemas"]["Error"]
    assert error["properties"]["payload"]["nullable"] is True
    ok = responses["Ok"]["content"]["application/json"]["example"]
    assert ok["header"]["message"] == "success" and ok["payload"]["result"]["seq"] == "0"


def test_example_request_answers_200_on_every_inference_path(demo: Loader, demo_doc: dict[str, Any]) -> None:
    example = example_of(demo_doc)
    assert example["payload"]["text"]["text"] == base64.b64encode(b"hello aiges").decode()
    assert example["parameter"]["demo"]["result"]["data_type"] == "text"
    for path in ("/v1/private/demo", "/v1/svcName"):
        status, _h, body = demo.post(path, example)
        assert status == 200, body
        assert body["payload"]["result"]["text"] == "HELLO AIGES"


def test_upstream_wrapper_example_answers_200(image_stats: Loader) -> None:
    """An upstream wrapper, unchanged: its ImageBodyField test file becomes the example's base64."""
    _s, _h, doc = image_stats.get("/openapi.json")
    example = example_of(doc)
    png = (ROOT / "tests" / "wrappers" / "image_stats" / "test_data" / "test.png").read_bytes()
    assert base64.b64decode(example["payload"]["img"]["image"]) == png
    status, _h, body = image_stats.post("/v1/svcName", example)
    assert status == 200, body
    assert json.loads(body["payload"]["result"]["text"])["ctrl"] == "helloworld"


def test_swagger_ui_is_served_offline(demo: Loader) -> None:
    status, headers, html = demo.get("/swagger/index.html")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    page = html.decode()
    assert "swagger-ui-bundle.js" in page and "../openapi.json" in page
    assert "http://" not in page and "https://" not in page  # no CDN, no online validator
    assert "validatorUrl: null" in page
    for asset, kind in (("swagger-ui-bundle.js", "javascript"), ("swagger-ui.css", "text/css")):
        status, headers, body = demo.get(f"/swagger/{asset}")
        assert status == 200 and kind in headers["Content-Type"] and len(body) > 1000
    status, _h, body = demo.get("/swagger/../../etc/passwd")
    assert status == 404


def test_root_redirects_to_swagger(demo: Loader) -> None:
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        opener.open(demo.url + "/")
        raise AssertionError("expected a redirect")
    except urllib.error.HTTPError as e:
        assert e.code == 302 and e.headers["Location"] == "/swagger/index.html"


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loader]:
    loader = start_loader(tmp_path_factory.mktemp("keyed"), ROOT / "examples" / "demo",
                          auth='apiKeys = ["s3cret"]')
    yield loader
    loader.stop()


def test_api_keys_are_declared_as_a_security_scheme(keyed: Loader) -> None:
    status, _h, doc = keyed.get("/openapi.json")
    assert status == 200
    validate(doc)
    assert doc["components"]["securitySchemes"]["ApiKey"] == {"type": "apiKey", "in": "header", "name": "x-api-key"}
    assert doc["paths"]["/v1/private/demo"]["post"]["security"] == [{"ApiKey": []}]
    status, _h, _b = http("POST", keyed.url + "/v1/private/demo", json.dumps(example_of(doc)).encode(),
                          {"Content-Type": "application/json", "x-api-key": "s3cret"})
    assert status == 200


# ---------------------------------------------------------------- the builder, on declared edge cases
EDGE = {
    "meta": {"serviceId": "edge", "version": "v2", "route": "/v2/private/edge"},
    "fields": {
        "params": [
            {"key": "k", "type": "integer", "required": True, "minimum": 10, "maximum": 20, "example": 99},
            {"key": "e", "type": "string", "required": False, "enum": ["a", "b"], "example": ""},
            {"key": "s", "type": "string", "required": True, "minLength": 3, "maxLength": 5},
            {"key": "b", "type": "boolean", "required": False, "default": True, "example": True},
        ],
        "inputs": [{"key": "img", "dataType": "image", "type": 2, "encoding": "png", "status": 3,
                    "encodings": ["jpg", "png"], "exampleNote": "test data of 900000 bytes is larger"}],
        "accepts": [{"key": "out", "dataType": "audio", "type": 1, "encoding": "raw"}],
    },
}


def test_example_is_repaired_to_follow_the_declared_rules() -> None:
    """Test values that break their own rules still give Swagger a request the validator accepts."""
    doc = example_request(EDGE, "edge")
    example = doc["parameter"]["edge"]
    assert example["k"] == 20 and example["e"] == "a" and example["s"] == "test" and example["b"] is True
    assert example["out"] == {"encoding": "raw", "compress": "raw", "format": "plain", "data_type": "audio"}
    parsed = envelope.parse(doc, ("edge",))
    # only the oversized input (left out of the example on purpose) is reported
    assert Validator(EDGE, "edge").problems(parsed.params, parsed.raw_params, parsed.items, expect=parsed.expect) == [
        "payload.img.image: is empty; a once request needs the input's data (base64 of the image)"]


@pytest.mark.parametrize("rule, want", [
    ({"key": "s", "type": "string", "required": True}, "test"),
    ({"key": "s", "type": "string", "required": True, "minLength": 6, "maxLength": 8}, "testaa"),
    ({"key": "s", "type": "string", "required": True, "maxLength": 2}, "te"),
    ({"key": "s", "type": "string", "required": True, "enum": ["x", "y"]}, "x"),
    ({"key": "s", "type": "string", "required": False}, ""),  # as run() sends an optional param's ""
])
def test_a_required_string_without_test_value_gets_a_valid_placeholder(rule: dict[str, Any], want: str) -> None:
    schema = {"fields": {"params": [rule], "inputs": [], "accepts": []}}
    assert example_request(schema, "svc")["parameter"]["svc"]["s"] == want


def test_required_params_and_oversized_examples_are_stated() -> None:
    doc = build_openapi(EDGE, ["/v2/private/edge", "/v1/svcName"])
    validate(doc)
    request = doc["components"]["schemas"]["Request"]
    assert request["properties"]["parameter"]["properties"]["edge"]["required"] == ["k", "s"]
    assert "parameter" in request["required"]
    assert "img" in doc["info"]["description"] and "too large" in doc["info"]["description"]
    out = doc["components"]["schemas"]["Response"]["properties"]["payload"]["properties"]["out"]
    assert "audio" in out["properties"] and out["properties"]["status"]["type"] == "string"


def test_schema_without_fields_falls_back_to_its_json_schema(tmp_path: Path) -> None:
    schema = {"meta": {"serviceId": "legacy"}, "schemainput": {"type": "object", "properties": {"x": {}}},
              "schemaoutput": {"type": "object"}}
    doc = build_openapi(schema, ["/v1/private/legacy"])
    validate(doc)
    assert doc["components"]["schemas"]["Request"] == schema["schemainput"]


def infer_example(doc: dict[str, Any]) -> dict[str, Any]:
    media = doc["paths"]["/infer"]["post"]["requestBody"]["content"]["application/json"]
    return media["examples"]["test_values"]["value"]


def test_plain_rest_route_is_documented_with_a_working_example(demo: Loader, demo_doc: dict[str, Any],
                                                               image_stats: Loader) -> None:
    op = demo_doc["paths"]["/infer"]["post"]
    # raw bytes go to the first input when there is no binary one (a text one takes them)
    assert {"application/json", "multipart/form-data", "text/plain", "application/octet-stream"} == \
        set(op["requestBody"]["content"])
    assert [p["name"] for p in op["parameters"]] == ["mode", "repeat"]
    example = infer_example(demo_doc)
    assert example == {"text": "hello aiges", "params": {"mode": "upper", "repeat": 1}}
    status, _h, body = demo.post("/infer", example)
    assert status == 200 and body["result"] is True and body["data"] == "HELLO AIGES", body
    _s, _h, doc = image_stats.get("/openapi.json")
    form = doc["paths"]["/infer"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["properties"]["img"]["format"] == "binary"  # Swagger shows a file picker
    status, _h, body = image_stats.post("/infer", infer_example(doc))
    assert status == 200 and json.loads(body["data"])["width"] == 28, body


def test_an_example_without_its_oversized_test_file_gets_a_400_naming_the_field(tmp_path: Path) -> None:
    """Lifecycle: a loader serves a wrapper whose test image is over the example limit; the
    example (image left out) is posted back: 400/10107 naming the field, the wrapper never runs;
    the same request with the image pasted in answers 200."""
    wrapper_dir = tmp_path / "w"
    (wrapper_dir / "test_data").mkdir(parents=True)
    shutil.copy(WRAPPERS / "big_input" / "wrapper.py", wrapper_dir / "wrapper.py")
    data = os.urandom(1200 * 1024)
    (wrapper_dir / "test_data" / "big.png").write_bytes(data)
    loader = start_loader(tmp_path / "run", wrapper_dir)
    try:
        _s, _h, doc = loader.get("/openapi.json")
        example = example_of(doc)
        assert example["payload"]["img"]["image"] == ""
        assert "`img` (test data of 1228800 bytes" in doc["info"]["description"]
        status, _h, body = loader.post("/v1/private/big", example)
        assert status == 400, body
        assert body["header"]["code"] == 10107
        assert body["header"]["message"] == ("payload.img.image: is empty; a once request needs the input's data "
                                             "(base64 of the image)")
        example["payload"]["img"]["image"] = base64.b64encode(data).decode()
        status, _h, body = loader.post("/v1/private/big", example)
        assert status == 200 and body["payload"]["result"]["text"] == "1228800 bytes", body
    finally:
        loader.stop()
