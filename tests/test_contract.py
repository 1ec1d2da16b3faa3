"""The document and the server agree, case by case (issue 18, items 8 and 9; the fuzz run in
test_fuzz.py checks the same at large).

/infer: a query value that breaks its rule is refused even when the body's params override it; a
body with no input is 400/10107 naming the inputs (it reached the wrapper: a 500); text/plain to a
service without a text input is 415 naming what it takes (it fed the image input).
The envelope: ``"payload": {}`` and an empty text/plain /infer body are invalid in the document as
they are on the server; ``header.appid: false``, an over-long appid and an over-long ``ctrl``
directly under ``parameter`` are refused as the document says; a WebSocket frame's payload
``status`` must be the integer 0-3 (2.5 was taken while 4 was refused).
"""
from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import aiohttp
import pytest

from tests.utils import WRAPPERS, Loader, http, once_body

HI = base64.b64encode(b"hi").decode()
PNG = base64.b64encode((WRAPPERS / "image_stats" / "test_data" / "test.png").read_bytes()).decode()


def rest_error(answer: tuple[int, dict[str, str], Any]) -> tuple[int, int, str]:
    status, _, body = answer
    return status, body["error"]["code"], body["error"]["message"]


def envelope_error(answer: tuple[int, dict[str, str], Any]) -> tuple[int, int, str]:
    status, _, body = answer
    return status, body["header"]["code"], body["header"]["message"]


# ------------------------------------------------------------------ item 8: /infer input handling
def test_a_broken_query_value_is_refused_even_when_the_body_overrides_it(demo: Loader) -> None:
    answer = http("POST", demo.url + "/infer?repeat=6", json.dumps({"text": "hi", "params": {"repeat": 1}}).encode())
    status, code, message = rest_error(answer)
    assert status == 400 and code == 10107 and "query.repeat: must be <= 5, got '6'" in message
    # both valid: the body's value counts
    status, _, body = http("POST", demo.url + "/infer?repeat=3", json.dumps({"text": "hi", "params": {"repeat": 2}}).encode())
    assert status == 200 and body["data"] == "HI HI"
    status, code, message = rest_error(http("POST", demo.url + "/infer?repeat=1&repeat=2", b"hi",
                                            {"Content-Type": "text/plain"}))
    assert status == 400 and code == 10107 and "query.repeat: given 2 times" in message


def test_a_json_body_without_an_input_is_400_naming_it(demo: Loader) -> None:
    status, code, message = rest_error(http("POST", demo.url + "/infer",
                                            json.dumps({"params": {"repeat": 2}}).encode()))
    assert status == 400 and code == 10107 and "no input" in message and "text (text)" in message


def test_text_to_a_service_without_a_text_input_is_415_naming_its_inputs(image_stats: Loader) -> None:
    status, code, message = rest_error(http("POST", image_stats.url + "/infer", b"hello",
                                            {"Content-Type": "text/plain"}))
    assert status == 415 and code == 12415 and "img (image)" in message and "octet-stream" in message
    doc = image_stats.get("/openapi.json")[2]
    assert "text/plain" not in doc["paths"]["/infer"]["post"]["requestBody"]["content"]
    # JSON that is not an object of its inputs has nowhere to go either
    status, code, message = rest_error(http("POST", image_stats.url + "/infer", b'["x"]'))
    assert status == 400 and code == 10107 and "no text input" in message
    # and a binary input in a JSON object is a base64 string
    status, code, message = rest_error(http("POST", image_stats.url + "/infer", b'{"img": 5}'))
    assert status == 400 and code == 10001 and "'img'" in message


def test_form_fields_are_inputs_or_declared_params(demo: Loader) -> None:
    boundary = "b0undary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\nhi\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"repaet\"\r\n\r\n2\r\n--{boundary}--\r\n").encode()
    status, code, message = rest_error(http("POST", demo.url + "/infer", body,
                                            {"Content-Type": f"multipart/form-data; boundary={boundary}"}))
    assert status == 400 and code == 10107 and "'repaet'" in message and "mode, repeat" in message


# ------------------------------------------------------------------ item 9: the document says what the server does
def test_an_empty_payload_is_invalid_in_the_document_and_refused(demo: Loader) -> None:
    doc = demo.get("/openapi.json")[2]
    payload = doc["components"]["schemas"]["Request"]["properties"]["payload"]
    assert payload["minProperties"] == 1 and payload["additionalProperties"] is False
    status, code, message = envelope_error(demo.post("/v1/svcName", {"payload": {}}))
    assert status == 400 and code == 10009 and "payload is empty" in message


def test_an_empty_text_body_is_invalid_in_the_document_and_refused(demo: Loader) -> None:
    doc = demo.get("/openapi.json")[2]
    assert doc["paths"]["/infer"]["post"]["requestBody"]["content"]["text/plain"]["schema"]["minLength"] == 1
    status, code, _ = rest_error(http("POST", demo.url + "/infer", b"", {"Content-Type": "text/plain"}))
    assert status == 400 and code == 10009


@pytest.mark.parametrize("header,words", [
    ({"appid": False}, "header.appid: must be a string, got a JSON boolean"),
    ({"appid": "a" * 51}, "header.appid: must be at most 50 characters long, got 51"),
    ({"appid": "a", "uid": 7}, "header.uid: must be a string, got a JSON number"),
    ({"appid": "a", "status": 2.5}, "header.status: must be an integer, got 2.5"),
])
def test_header_values_are_held_to_the_documented_types(demo: Loader, header: dict[str, Any], words: str) -> None:
    body = once_body("demo", {"text": {"text": HI}})
    body["header"] = header
    status, code, message = envelope_error(demo.post("/v1/svcName", body))
    assert status == 400 and code == 10107 and words in message, message
    schema = demo.get("/openapi.json")[2]["components"]["schemas"]["RequestHeader"]["properties"]
    assert schema["appid"] == {"type": "string", "maxLength": 50} and schema["status"]["enum"] == [0, 1, 2, 3]


def test_an_overlong_param_directly_under_parameter_is_refused_though_the_section_has_a_good_one(
        image_stats: Loader) -> None:
    body = {"header": {"appid": "t"}, "parameter": {"ctrl": "x" * 1025, "svcName": {"ctrl": "ok"}},
            "payload": {"img": {"image": PNG}}}
    status, code, message = envelope_error(image_stats.post("/v1/svcName", body))
    assert status == 400 and code == 10107 and "parameter.ctrl: must be at most 1024 characters long" in message


async def _first_frame_answer(url: str, status: Any) -> dict[str, Any]:
    frame = {"header": {"appid": "t", "status": 0}, "parameter": {"demo": {"mode": "upper"}},
             "payload": {"text": {"text": HI, "status": status}}}
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(url.replace("http://", "ws://") + "/v1/svcName") as ws:
            await ws.send_str(json.dumps(frame))
            msg = await ws.receive(timeout=10)
            answer: dict[str, Any] = json.loads(msg.data)
            return answer


@pytest.mark.parametrize("status", [2.5, 4, "2", True, None])
def test_a_websocket_frame_status_must_be_the_integer_0_to_3(demo: Loader, status: Any) -> None:
    answer = asyncio.run(_first_frame_answer(demo.url, status))
    assert answer["header"]["code"] == 10107, answer
    assert "payload.text.status: expected the integer 0 (first), 1 (continue), 2 (last) or 3 (once)" in \
        answer["header"]["message"]


def test_a_websocket_frame_with_status_2_is_taken(demo: Loader) -> None:
    answer = asyncio.run(_first_frame_answer(demo.url, 2))
    assert answer["header"]["code"] == 0, answer
