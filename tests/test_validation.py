"""Requests are checked against the wrapper's declared fields before they reach it (real loader).

Lifecycle: one loader serves a wrapper (written into a temp dir) that declares every kind of
rule and echoes its params; each test posts one request and reads the 400/10107 message, which
must name the field path and the rule broken.  The wrapper counts its calls, so a test can prove
a rejected request never reached it.
"""
from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from aiges.loader.envelope import Expect
from aiges.loader.validate import Validator, integer_text
from aiges.wire.pb import aiges_inner_pb2 as pb
from tests.utils import Loader, start_loader

WRAPPER = '''
import json
from aiges.core.types import *
from aiges.dto import Response, ResponseData, SessionCreateResponse
from aiges.sdk import (WrapperBase, StringBodyField, ImageBodyField, StringParamField, NumberParamField,
                       IntegerParamField, BooleanParamField)

CALLS = {"n": 0}

class Req:
    text = StringBodyField(key="text", value=b"hi")
    img = ImageBodyField(key="img", encoding="png")
    lang = StringParamField(key="lang", enums=["en", "zh"], value="en")
    name = StringParamField(key="name", minLength=2, maxLength=5, value="bob", required=True)
    score = NumberParamField(key="score", minimum=0, maximum=1, value=0.5)
    top = IntegerParamField(key="top", minimum=1, maximum=10, value=3)
    ratio = NumberParamField(key="ratio", enums=[0.5, 2.5], value=0.5)
    flag = BooleanParamField(key="flag", default=False)

class Resp:
    accept1 = StringBodyField(key="result")

class Wrapper(WrapperBase):
    serviceId = "val"
    requestCls = Req()
    responseCls = Resp()

    def wrapperInit(self, config):
        return 0

    def wrapperOnceExec(self, params, reqData, usrTag="", persId=0):
        CALLS["n"] += 1
        r = Response()
        d = ResponseData()
        d.key = "result"
        d.setDataType(DataText)
        d.status = Once
        d.setData(json.dumps({"params": {k: v for k, v in params.items() if k != "sid"}, "calls": CALLS["n"],
                              "keys": [x.key for x in reqData.list]}).encode())
        r.list = [d]
        return r

    def wrapperCreate(self, params, sid, persId=0, userTag=""):
        s = SessionCreateResponse()
        s.handle = sid
        self.tag = userTag
        return s

    def wrapperWrite(self, handle, req, sid=""):
        from aiges.callback import callback
        for node in req.list:
            r = Response()
            d = ResponseData()
            d.key = "result"
            d.setDataType(DataText)
            d.status = DataEnd if node.status == 2 else DataContinue
            d.setData(node.data)
            r.list = [d]
            callback(r, self.tag, sid)
        return 0
'''


@pytest.fixture(scope="module")
def val(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loader]:
    d = tmp_path_factory.mktemp("val")
    (d / "wrapper").mkdir()
    (d / "wrapper" / "wrapper.py").write_text(WRAPPER)
    loader = start_loader(d, d / "wrapper")
    yield loader
    loader.stop()


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def body(params: dict[str, Any] | None = None, payload: dict[str, Any] | None = None) -> dict[str, Any]:
    p = {"name": "bob"} if params is None else params
    return {"header": {"appid": "t"}, "parameter": {"val": p},
            "payload": payload if payload is not None else {"text": {"text": b64("x"), "status": 3}}}


def rejected(loader: Loader, doc: dict[str, Any] | bytes) -> str:
    status, _h, resp = loader.post("/v1/private/val", doc)
    assert status == 400, resp
    assert resp["header"]["code"] == 10107 and resp["payload"] is None and resp["header"]["sid"]
    return str(resp["header"]["message"])


def accepted(loader: Loader, doc: dict[str, Any]) -> dict[str, Any]:
    status, _h, resp = loader.post("/v1/private/val", doc)
    assert status == 200, resp
    return json.loads(resp["payload"]["result"]["text"])


@pytest.mark.parametrize("params, message", [
    ({"name": "bob", "lang": "fr"}, "parameter.val.lang: must be one of 'en', 'zh', got 'fr'"),
    ({"name": "b"}, "parameter.val.name: must be at least 2 characters long, got 1"),
    ({"name": "bobbybob"}, "parameter.val.name: must be at most 5 characters long, got 8"),
    ({}, "parameter.val.name: required parameter is missing"),
    ({"name": "bob", "score": 1.5}, "parameter.val.score: must be <= 1, got '1.5'"),
    ({"name": "bob", "score": "-1"}, "parameter.val.score: must be >= 0, got '-1'"),
    ({"name": "bob", "score": "high"}, "parameter.val.score: must be a number, got 'high'"),
    ({"name": "bob", "top": 2.5}, "parameter.val.top: must be an integer, got '2.5'"),
    ({"name": "bob", "top": True}, "parameter.val.top: must be an integer, got 'true'"),
    ({"name": "bob", "top": [1]}, "parameter.val.top: must be an integer, got a JSON array"),
    ({"name": "bob", "flag": "maybe"}, "parameter.val.flag: must be a boolean (true or false), got 'maybe'"),
    ({"name": "bob", "top": None}, "parameter.val.top: must be an integer, got null"),
    ({"name": None}, "parameter.val.name: must be a string, got null"),
    ({"name": "bob", "top": "8.0000000000000001"}, "parameter.val.top: must be an integer, got '8.0000000000000001'"),
    ({"name": "bob", "ratio": "2.51"}, "parameter.val.ratio: must be one of 0.5, 2.5, got '2.51'"),
])
def test_param_rules(val: Loader, params: dict[str, Any], message: str) -> None:
    assert rejected(val, body(params)) == message


@pytest.mark.parametrize("payload, message", [
    ({"audio": {"audio": b64("x")}}, "payload.audio: unknown input; this service declares payload.img, payload.text"),
    ({"img": {"text": b64("x")}}, "payload.img: is declared as image, so its data goes in the 'image' field, not 'text'"),
    ({"img": {"image": b64("x"), "encoding": "gif"}}, "payload.img.encoding: must be one of jpg, jpeg, png, bmp, got 'gif'"),
    ({"text": {"text": b64("x"), "encoding": "latin1"}}, "payload.text.encoding: must be one of utf8, gb2312, got 'latin1'"),
    ({"text": {"text": b64("x"), "status": 7}}, "payload.text.status: expected the integer 0 (first), 1 (continue), 2 (last) or 3 (once); got 7"),
    ({"text": {"text": "", "status": 3}}, "payload.text.text: is empty; a once request needs the input's data "
                                          "(base64 of the text)"),
    ({"img": {"image": ""}}, "payload.img.image: is empty; a once request needs the input's data (base64 of the image)"),
])
def test_payload_rules(val: Loader, payload: dict[str, Any], message: str) -> None:
    assert rejected(val, body(payload=payload)) == message


def test_every_problem_is_reported_at_once_and_the_wrapper_is_not_called(val: Loader) -> None:
    before = accepted(val, body())["calls"]
    msg = rejected(val, body({"lang": "fr", "top": 11}, {"img": {"image": b64("x"), "encoding": "tiff"}}))
    assert msg.split("; ") == ["parameter.val.lang: must be one of 'en', 'zh', got 'fr'",
                               "parameter.val.name: required parameter is missing",
                               "parameter.val.top: must be <= 10, got '11'",
                               "payload.img.encoding: must be one of jpg, jpeg, png, bmp, got 'tiff'"]
    assert accepted(val, body())["calls"] == before + 1


def test_valid_values_in_every_spelling_reach_the_wrapper(val: Loader) -> None:
    """Numbers and booleans as JSON or as strings (upstream clients send strings); encodings in
    any case, with aliases and a level suffix; undeclared params pass through."""
    got = accepted(val, body({"name": "al", "lang": "zh", "score": "0.25", "top": 10, "flag": "true", "extra": 1},
                             {"img": {"image": b64("x"), "encoding": "JPEG"},
                              "text": {"text": b64("x"), "encoding": "UTF-8;1"}}))
    assert got["params"] == {"name": "al", "lang": "zh", "score": "0.25", "top": "10", "flag": "true", "extra": "1"}
    assert sorted(got["keys"]) == ["img", "text"]
    got = accepted(val, body({"name": "bob", "score": 1, "top": "1", "flag": False}))
    assert got["params"] == {"name": "bob", "score": "1", "top": "1", "flag": "false"}


def test_integer_params_reach_the_wrapper_as_canonical_decimal_text(val: Loader) -> None:
    """Wrappers call int(params[k]): every spelling of a whole number that passes arrives as "3";
    number params keep their spelling (float() reads it) and compare with enums as numbers."""
    for raw, want in [(b'3.0', "3"), (b'"3.0"', "3"), (b'"1e0"', "1"), (b'1e0', "1"), (b'8.000', "8"),
                      (b'" 7 "', "7"), (b'"+2"', "2"), (b'1E1', "10")]:
        doc = (b'{"parameter": {"val": {"name": "bob", "top": ' + raw + b', "ratio": "2.50"}}, '
               b'"payload": {"text": {"text": "eA==", "status": 3}}}')
        status, _h, resp = val.post("/v1/private/val", doc)
        assert status == 200, (raw, resp)
        params = json.loads(resp["payload"]["result"]["text"])["params"]
        assert params["top"] == want, raw
        assert params["ratio"] == "2.50"
    # exact, in both forms: float() would round this to 8, but it is not a whole number
    doc = (b'{"parameter": {"val": {"name": "bob", "top": 8.0000000000000001}}, '
           b'"payload": {"text": {"text": "eA==", "status": 3}}}')
    assert rejected(val, doc) == "parameter.val.top: must be an integer, got '8.0000000000000001'"


def test_integer_text_is_exact() -> None:
    assert [integer_text(v) for v in (3, 3.0, "3.0", "1e0", "-0", "9007199254740993", 1e20)] == [
        "3", "3", "3", "1", "0", "9007199254740993", "100000000000000000000"]
    assert [integer_text(v) for v in ("2.5", "8.0000000000000001", True, "nan", "inf", "x", None)] == [None] * 7


def test_empty_data_ends_a_session_but_not_a_once_request(val: Loader) -> None:
    """The last frame of a session (status 2) is often empty: frames are exempt from the rule."""
    async def run() -> list[dict[str, Any]]:
        out = []
        async with aiohttp.ClientSession() as s:
            async with s.ws_connect(val.url.replace("http://", "ws://") + "/v1/private/val") as ws:
                await ws.send_str(json.dumps(body(payload={"text": {"text": b64("a"), "status": 0}})))
                await ws.send_str(json.dumps(body(payload={"text": {"text": "", "status": 2}})))
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        out.append(json.loads(msg.data))
        return out

    frames = asyncio.run(run())
    assert all(f["header"]["code"] == 0 for f in frames), frames
    assert frames[-1]["header"]["status"] == 2


def test_expect_objects_are_held_to_the_declared_outputs_and_params() -> None:
    """An object under parameter.<svc> is an expect object to the envelope; one naming a declared
    param, an undeclared output, or the wrong data_type is a 400 before the wrapper runs."""
    schema = {"fields": {"params": [{"key": "colors", "type": "integer"}],
                         "inputs": [{"key": "text", "type": 0}],
                         "accepts": [{"key": "result", "type": 0, "dataType": "text"},
                                     {"key": "mask", "type": 2, "dataType": "image"}]}}
    v = Validator(schema, "mysvc")
    item = pb.RequestData(key="text", type=0, status=3, data=b"x")
    assert v.problems({}, {}, [item], expect={"colors": Expect(), "nope": Expect(), "result": Expect(type=2),
                                              "mask": Expect(type=2)}) == [
        "parameter.mysvc.colors: must be an integer, got a JSON object",
        "parameter.mysvc.nope: an object here asks for output 'nope', which this service does not declare; "
        "its outputs are mask (image), result (text)",
        "parameter.mysvc.result.data_type: output 'result' is declared as text, got 'image'"]
    assert v.problems({}, {}, [item], expect={"result": Expect(), "mask": Expect(type=2)}) == []


def test_a_bad_websocket_frame_gets_an_error_frame(val: Loader) -> None:
    async def run() -> list[dict[str, Any]]:
        out = []
        async with aiohttp.ClientSession() as s:
            async with s.ws_connect(val.url.replace("http://", "ws://") + "/v1/private/val") as ws:
                await ws.send_str(json.dumps(body({"name": "bob", "top": 99},
                                                  {"text": {"text": b64("a"), "status": 0}})))
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        out.append(json.loads(msg.data))
        return out

    frames = asyncio.run(run())
    assert frames[-1]["header"]["code"] == 10107
    assert frames[-1]["header"]["message"] == "parameter.val.top: must be <= 10, got '99'"


def test_later_session_frames_need_not_repeat_required_params() -> None:
    """The first frame carries the session's params; later frames are checked only for what they carry."""
    schema = {"fields": {"params": [{"key": "name", "type": "string", "required": True, "maxLength": 3}],
                         "inputs": [{"key": "text", "type": 0, "encodings": ["utf8"]}]}}
    v = Validator(schema, "svc")
    item = pb.RequestData(key="text", type=0, status=1, desc={"encoding": "utf8"})
    assert v.problems({}, {}, [item]) == ["parameter.svc.name: required parameter is missing"]
    assert v.problems({}, {}, [item], later_frame=True) == []
    assert v.problems({"name": "long"}, {}, [item], later_frame=True) == [
        "parameter.svc.name: must be at most 3 characters long, got 4"]
