"""Unit tests of the pure envelope codec (no servers)."""
from __future__ import annotations

import base64

import orjson
import pytest

from aiges import errors
from aiges.loader import envelope
from aiges.wire.pb import aiges_inner_pb2 as pb


def test_scalars_as_people_write_them() -> None:
    assert [envelope.scalar_text(v) for v in (3, 0.5, True, False, "x", None, 1e20, -7)] == \
        ["3", "0.5", "true", "false", "x", "", "1e+20", "-7"]


def test_parse_merges_own_sections_and_scalars_only() -> None:
    doc = {"header": {"appid": "1", "uid": "u"},
           "parameter": {"top": 1, "demo": {"a": 2, "result": {"data_type": "text", "encoding": "utf8"}},
                         "svcName": {"a": 9, "b": 1}, "foreign": {"c": 3}},
           "payload": {"in": {"text": base64.b64encode(b"hi").decode(), "status": 3, "seq": 4}}}
    p = envelope.parse(doc, ("demo", "svcName"), header_pass=("uid",))
    assert p.params == {"top": "1", "a": "2", "b": "1", "uid": "u"}  # demo wins over svcName; foreign ignored
    assert p.expect["result"].type == 0 and p.expect["result"].attrs == {"encoding": "utf8"}
    assert p.items[0].data == b"hi" and p.items[0].type == 0 and dict(p.items[0].desc) == {"seq": "4"}


def test_json_payload_value_is_reencoded() -> None:
    p = envelope.parse({"payload": {"j": {"other": {"a": [1, 2]}}}}, ("s",))
    assert orjson.loads(p.items[0].data) == {"a": [1, 2]} and p.items[0].type == 4


@pytest.mark.parametrize("payload,code,words", [
    ({"x": {"text": 5}}, errors.CONVERT_FAILED, "payload.x.text"),
    ({"x": {"text": "a", "image": "b"}}, errors.INVALID_DATA, "exactly one"),
    ({"x": {"text": "aGk=", "status": 7}}, errors.INVALID_PARAM, "payload.x.status"),
    ({"x": "notanobject"}, errors.INVALID_DATA, "payload.x"),
])
def test_payload_errors(payload: dict, code: int, words: str) -> None:
    with pytest.raises(errors.BadRequest) as e:
        envelope.parse({"payload": payload}, ("s",))
    assert e.value.code == code and words in e.value.message


def test_render_once_text_raw_binary_base64_and_mismatch() -> None:
    resp = pb.Response(list=[pb.ResponseData(key="t", data="héllo".encode(), type=0, status=3),
                             pb.ResponseData(key="i", data=b"\x00\x01", type=2, status=3),
                             pb.ResponseData(key="b", data=b"\xff\xfe", type=0, status=3)])
    out = orjson.loads(envelope.render_once(resp, {}, "sid1", "svc"))
    assert out["header"] == {"code": 0, "message": "success", "sid": "sid1", "status": 3}
    assert out["payload"]["t"]["text"] == "héllo" and out["payload"]["i"]["image"] == "AAE="
    assert out["payload"]["b"] == {"seq": "0", "status": "3", "text": "//4=", "encoding": "base64"}
    with pytest.raises(errors.OutputInvalid, match="'i' has type image but parameter.svc.i.data_type asks for text"):
        envelope.render_once(resp, {"t": envelope.Expect(0), "i": envelope.Expect(0), "b": envelope.Expect()}, "s",
                             "svc")


def test_error_table_is_one_mapping() -> None:
    assert errors.http_status(errors.Overloaded("x")) == 429
    assert errors.http_status(errors.WrapperFailed("x", 4242)) == 500
    e = errors.WrapperFailed("x", 1)
    e.http_override = 422
    assert errors.http_status(e) == 422
    assert errors.grpc_status(errors.DeadlineExceeded("x")).name == "DEADLINE_EXCEEDED"


def test_numbers_reach_the_wrapper_as_written() -> None:
    """orjson reads numbers as float64; parameters keep the literal text the client sent."""
    body = (b'{"parameter":{"demo":{"big":12345678901234567890123,"pi":3.14159265358979323846,'
            b'"e":1e5,"half":0.50,"n":3,"neg":-7}},"payload":{"t":{"text":"aGk=","status":3}}}')
    p = envelope.parse(envelope.load_json(body), ("demo",), header_pass=())
    assert {k: p.params[k] for k in ("big", "pi", "e", "half", "n", "neg")} == {
        "big": "12345678901234567890123", "pi": "3.14159265358979323846", "e": "1e5", "half": "0.50", "n": "3",
        "neg": "-7"}


def test_base64_with_line_breaks_is_accepted_as_upstream() -> None:
    wrapped = base64.encodebytes(b"x" * 100).decode()  # MIME style: a newline every 76 characters
    assert "\n" in wrapped
    p = envelope.parse({"payload": {"t": {"text": wrapped.replace("\n", "\r\n"), "status": 3}}}, ("demo",), ())
    assert p.items[0].data == b"x" * 100
    with pytest.raises(errors.BadRequest) as e:
        envelope.parse({"payload": {"t": {"text": "a b!", "status": 3}}}, ("demo",), ())
    assert e.value.code == errors.CONVERT_FAILED
