"""The header/parameter/payload JSON envelope ⇄ plugin proto.  Pure functions, no I/O.

Decisions (PROTOCOL.md §4): base64 is decoded here, in the loader, because the plugin protocol
carries raw bytes (an upstream Go loader sends bytes too, so the plugin cannot expect base64);
numbers are stringified as a person writes them (upstream sent ``3`` as ``6755399441055744p-51``);
the expect object is optional; payload attributes reach the wrapper in ``RequestData.desc``.
"""
from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from aiges import errors
from aiges.wire.pb import aiges_inner_pb2 as pb

DATA_FIELDS = {"text": 0, "audio": 1, "image": 2, "video": 3, "other": 4}
TYPE_NAMES = {v: k for k, v in DATA_FIELDS.items()}
EXPECT_ATTRS = ("encoding", "format", "compress")
STATUSES = (0, 1, 2, 3)

# The typed keys of the header and of a payload item, as upstream's schema (``schemainput``) has
# them; other keys pass on as text.  One table for the parser and for /openapi.json
# (``aiges.loader.openapi``), so what the document calls valid is what the server takes.
# "integer" is a JSON number without a fraction or exponent (JSON Schema draft 4): 2, not 2.0 or "2".
HEADER_RULES: dict[str, dict[str, Any]] = {
    "appid": {"type": "string", "maxLength": 50},
    "uid": {"type": "string", "maxLength": 50},
    "did": {"type": "string"},
    "status": {"type": "integer", "enum": list(STATUSES)},
}
ITEM_RULES: dict[str, dict[str, Any]] = {
    "encoding": {"type": "string"},
    "compress": {"type": "string"},
    "format": {"type": "string"},
    "seq": {"type": "integer"},
}


@dataclass
class Expect:
    """What the client asked for one output (``parameter.<svc>.<key>`` object)."""

    type: int | None = None
    attrs: dict[str, str] = field(default_factory=dict)


@dataclass
class Parsed:
    header: dict[str, str]
    params: dict[str, str]
    items: list[pb.RequestData]
    expect: dict[str, Expect]
    raw_params: dict[str, Any]
    # scalars directly under ``parameter`` that this service's section overrode: still checked
    shadowed: dict[str, Any] = field(default_factory=dict)


class NumberLiteral(float):
    """A JSON number that keeps the text it was written with (``1e5``, ``3.14159265358979323846``):
    a float for validation, its own spelling for the wrapper (upstream mangled these)."""

    text: str

    def __new__(cls, text: str) -> NumberLiteral:
        obj = super().__new__(cls, text)
        obj.text = text
        return obj


def json_type(v: Any) -> str:
    """A Python value's JSON type name, for messages a client reads (never "dict" or "NoneType")."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, dict):
        return "object"
    if isinstance(v, (list, tuple)):
        return "array"
    return type(v).__name__


def scalar_text(v: Any) -> str:
    """A JSON scalar the way a person writes it: 3, 0.5, 1e5, true, text."""
    if isinstance(v, str):
        return v
    if isinstance(v, NumberLiteral):
        return v.text
    if v is True:
        return "true"
    if v is False:
        return "false"
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, int):
        return str(v)
    return dumps(v).decode()


# The one depth rule: a request body, WebSocket frame or /infer JSON body nests at most 255 levels
# (orjson's encoder limit, so whatever is passed on to a wrapper can be written back as JSON text).
MAX_DEPTH = 255


class TooDeep(ValueError):
    """A JSON value nested deeper than MAX_DEPTH levels (it cannot be passed on as JSON text)."""

    def __init__(self) -> None:
        super().__init__(f"JSON nested more than {MAX_DEPTH} levels deep")


def dumps(v: Any) -> bytes:
    """A parsed JSON value back to JSON text, numbers spelled as the client wrote them (orjson
    takes neither NumberLiteral, a float subclass, nor integers beyond 64 bits); raises TooDeep
    past MAX_DEPTH levels."""
    try:
        return orjson.dumps(v)
    except TypeError:  # a NumberLiteral inside, or orjson's recursion limit
        pass
    parts: list[str] = []
    _dump_into(v, parts, 0)
    return "".join(parts).encode("utf-8")


def _dump_into(v: Any, out: list[str], depth: int) -> None:
    if isinstance(v, (dict, list)):
        if depth >= MAX_DEPTH:
            raise TooDeep()
        if isinstance(v, dict):
            out.append("{")
            for i, (k, x) in enumerate(v.items()):
                out.append("," if i else "")
                out.append(orjson.dumps(str(k)).decode())
                out.append(":")
                _dump_into(x, out, depth + 1)
            out.append("}")
        else:
            out.append("[")
            for i, x in enumerate(v):
                out.append("," if i else "")
                _dump_into(x, out, depth + 1)
            out.append("]")
    elif isinstance(v, NumberLiteral):
        out.append(v.text)
    elif isinstance(v, int) and not isinstance(v, bool):  # Python's json reads any size, orjson writes 64 bits
        out.append(str(v))
    else:
        out.append(orjson.dumps(v).decode())


def loads(body: bytes | str) -> Any:
    """JSON → Python with orjson; raises ValueError.  orjson reads numbers as float64 (1e5 ->
    100000.0, 20+ digits rounded); only parameters and header values reach the wrapper as text,
    so only when they hold a float is the body re-read keeping their spelling (NumberLiteral)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        if "depth limit" in str(e):  # orjson >= 3.9 stops at 1,024 levels; older ones read any depth
            raise TooDeep() from None
        if "not valid UTF-8" in str(e):  # orjson says "surrogates not allowed: line 1 column 1" for any bad byte
            raise ValueError(utf8_problem(body) or str(e)) from None
        raise
    # fewer brackets than the limit cannot nest deeper (the common case: one C-speed count, no walk)
    opened = body.count(b"[") + body.count(b"{") if isinstance(body, bytes) else body.count("[") + body.count("{")
    if opened > MAX_DEPTH and depth(doc) > MAX_DEPTH:
        raise TooDeep()
    if isinstance(doc, dict) and (_has_float(doc.get("parameter")) or _has_float(doc.get("header"))):
        doc = json.loads(body, parse_float=NumberLiteral)  # within MAX_DEPTH: no RecursionError
    return doc


def depth(v: Any) -> int:
    """Nesting levels of a parsed JSON value (a scalar is 0, ``[]`` is 1): level by level, no
    recursion (a 10k-object body takes ~3 ms)."""
    deepest, level = 0, [v] if isinstance(v, (dict, list)) else []
    while level:
        deepest += 1
        level = [y for x in level for y in (x.values() if isinstance(x, dict) else x) if isinstance(y, (dict, list))]
    return deepest


def utf8_problem(body: bytes | str) -> str:
    """Where ``body`` stops being UTF-8, as a JSON parser would say it ("" when it is UTF-8)."""
    if isinstance(body, str):
        return ""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as e:
        line = body.count(b"\n", 0, e.start) + 1
        column = len(body[body.rfind(b"\n", 0, e.start) + 1:e.start].decode("utf-8", "replace")) + 1
        return (f"invalid UTF-8 at line {line} column {column} (byte {e.start}, 0x{body[e.start:e.end].hex()}: "
                f"{e.reason}); JSON text must be UTF-8")
    return ""


def load_json(body: bytes) -> dict[str, Any]:
    if not body:
        raise errors.BadRequest("request body is empty; send the JSON envelope {\"header\":..,\"parameter\":..,"
                                "\"payload\":..}", errors.JSON_INVALID)
    try:
        doc = loads(body)
    except ValueError as e:
        raise errors.BadRequest(f"request body is not valid JSON: {e}", errors.JSON_INVALID) from None
    if not isinstance(doc, dict):
        raise errors.BadRequest(f"request body must be a JSON object with header/parameter/payload, "
                                f"got a JSON {json_type(doc)}", errors.INVALID_DATA)
    return doc


def _has_float(v: Any, depth: int = 0) -> bool:
    if isinstance(v, float):
        return True
    if isinstance(v, dict) and depth < 3:
        return any(_has_float(x, depth + 1) for x in v.values())
    return False


def _b64(value: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        if "\n" not in value and "\r" not in value:
            raise
    # MIME-style base64 wrapped at 76 columns: upstream (Go's decoder) ignores the line breaks
    return base64.b64decode(value.replace("\r", "").replace("\n", ""), validate=True)


def _text(path: str, v: Any) -> str:
    """scalar_text of a request value, a 400 naming the value when it is nested too deeply."""
    try:
        return scalar_text(v)
    except TooDeep as e:
        raise errors.BadRequest(f"{path}: {e}", errors.JSON_INVALID) from None


def _json_text(path: str, v: Any) -> str:
    try:
        return dumps(v).decode("utf-8")
    except TooDeep as e:
        raise errors.BadRequest(f"{path}: {e}", errors.JSON_INVALID) from None


def _shown(path: str, v: Any) -> str:
    """A value as an error message quotes it: 'text', 2.5, true, null, a JSON object."""
    if isinstance(v, (dict, list)):
        return f"a JSON {json_type(v)}"
    if v is None:
        return "null"
    return repr(v) if isinstance(v, str) else _text(path, v)


def rule_problem(path: str, rule: dict[str, Any], v: Any) -> str | None:
    """Why ``v`` breaks one of the rules above, or None."""
    if rule["type"] == "string":
        if not isinstance(v, str):
            return f"{path}: must be a string, got a JSON {json_type(v)}"
        if "maxLength" in rule and len(v) > rule["maxLength"]:
            return f"{path}: must be at most {rule['maxLength']} characters long, got {len(v)}"
        return None
    # orjson reads an integer beyond 64 bits as a float: that one is an integer still; 2.0 is not
    big = isinstance(v, float) and not isinstance(v, NumberLiteral) and v.is_integer() and abs(v) >= 2.0 ** 63
    if isinstance(v, bool) or not (isinstance(v, int) or big):
        return f"{path}: must be an integer, got {_shown(path, v)}"
    if "enum" in rule and v not in rule["enum"]:
        return f"{path}: must be one of {', '.join(str(e) for e in rule['enum'])}, got {v}"
    return None


def _check_header(header: dict[str, Any]) -> None:
    problems = [m for k, rule in HEADER_RULES.items() if k in header
                and (m := rule_problem(f"header.{k}", rule, header[k])) is not None]
    if problems:
        raise errors.BadRequest("; ".join(problems), errors.INVALID_PARAM)


def _section(doc: dict[str, Any], name: str) -> dict[str, Any]:
    value = doc.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise errors.BadRequest(f"'{name}' must be a JSON object, got a JSON {json_type(value)}", errors.INVALID_DATA)
    return value


def _expect(path: str, obj: dict[str, Any]) -> Expect:
    exp = Expect()
    for k, v in obj.items():
        if k == "data_type":
            if not isinstance(v, str) or v not in DATA_FIELDS:
                raise errors.BadRequest(f"{path}.data_type: expected one of text, image, audio, video, other; "
                                        f"got {v!r}", errors.INVALID_PARAM)
            exp.type = DATA_FIELDS[v]
        elif k in EXPECT_ATTRS:
            if not isinstance(v, str):
                raise errors.BadRequest(f"{path}.{k}: expected a string, got {_text(path + '.' + k, v)!r} "
                                        f"(a JSON {json_type(v)})", errors.INVALID_PARAM)
            exp.attrs[k] = v
    return exp


def parse_payload_item(path: str, key: str, obj: Any) -> pb.RequestData:
    if not isinstance(obj, dict):
        raise errors.BadRequest(f"{path}: expected an object like {{\"text\": \"<base64>\", \"status\": 3}}, "
                                f"got a JSON {json_type(obj)}", errors.INVALID_DATA)
    data_field = None
    for name in DATA_FIELDS:
        if name in obj:
            if data_field is not None:
                raise errors.BadRequest(f"{path}: has both '{data_field}' and '{name}'; send exactly one data field",
                                        errors.INVALID_DATA)
            data_field = name
    if data_field is None:
        raise errors.BadRequest(f"{path}: no data field; add one of text, image, audio, video, other "
                                f"holding base64 data", errors.INVALID_DATA)
    value = obj[data_field]
    if isinstance(value, str):
        try:
            data = _b64(value)
        except (binascii.Error, ValueError) as e:
            raise errors.BadRequest(f"{path}.{data_field}: invalid base64 ({e}); encode the data with standard "
                                    f"base64 (with padding)", errors.CONVERT_FAILED) from None
    elif isinstance(value, (dict, list)):
        data = _json_text(f"{path}.{data_field}", value).encode("utf-8")
    else:
        raise errors.BadRequest(f"{path}.{data_field}: expected a base64 string (or a JSON object/array), "
                                f"got a JSON {json_type(value)}", errors.CONVERT_FAILED)
    status = obj.get("status", 3)
    if isinstance(status, bool) or not isinstance(status, int) or status not in STATUSES:
        raise errors.BadRequest(f"{path}.status: expected the integer 0 (first), 1 (continue), 2 (last) or 3 (once); "
                                f"got {_shown(path, status)}", errors.INVALID_PARAM)
    problems = [m for k, rule in ITEM_RULES.items() if k in obj
                and (m := rule_problem(f"{path}.{k}", rule, obj[k])) is not None]
    if problems:
        raise errors.BadRequest("; ".join(problems), errors.INVALID_PARAM)
    desc = {k: _text(f"{path}.{k}", v) for k, v in obj.items() if k != data_field and k != "status"}
    return pb.RequestData(key=key, data=data, len=len(data), type=DATA_FIELDS[data_field], status=status,
                          desc=desc)


def parse(doc: dict[str, Any], services: Sequence[str], header_pass: tuple[str, ...] = (),
          require_payload: bool = True) -> Parsed:
    """Envelope dict → params, proto items and expect objects.

    ``services`` are this service's names (serviceId and -s name): ``parameter.<name>`` sections
    merge into params, as do scalar values directly under ``parameter``; the first name wins on
    conflicts.  Other services' sections are ignored (upstream merged them all).
    """
    header_in = _section(doc, "header")
    parameter = _section(doc, "parameter")
    payload = _section(doc, "payload")
    _check_header(header_in)
    header = {str(k): _text(f"header.{k}", v) for k, v in header_in.items()}

    params: dict[str, str] = {}
    raw: dict[str, Any] = {}
    expect: dict[str, Expect] = {}
    for k, v in parameter.items():
        if not isinstance(v, (dict, list)):
            params[k] = scalar_text(v)
            raw[k] = v
    top = dict(raw)
    for svc in reversed(list(dict.fromkeys(services))):
        section = parameter.get(svc)
        if section is None:
            continue
        if not isinstance(section, dict):
            raise errors.BadRequest(f"parameter.{svc}: expected an object of parameters, got "
                                    f"a JSON {json_type(section)}", errors.INVALID_DATA)
        for k, v in section.items():
            if isinstance(v, dict):
                expect[k] = _expect(f"parameter.{svc}.{k}", v)
            elif isinstance(v, list):
                params[k] = _text(f"parameter.{svc}.{k}", v)
                raw[k] = v
            else:
                params[k] = scalar_text(v)
                raw[k] = v
    for h in header_pass:
        if h in header and h not in params:
            params[h] = header[h]
    shadowed = {k: v for k, v in top.items() if raw.get(k, v) != v}

    items = [parse_payload_item(f"payload.{k}", k, v) for k, v in payload.items()]
    if require_payload and not items:
        raise errors.BadRequest("payload is empty: a request needs at least one input, e.g. "
                                "\"payload\": {\"<input>\": {\"text\": \"<base64>\", \"status\": 3}}",
                                errors.INVALID_DATA)
    return Parsed(header=header, params=params, items=items, expect=expect, raw_params=raw, shadowed=shadowed)


def output_item(d: pb.ResponseData, exp: Expect | None, seq: str, text_raw: bool,
                json_raw: bool = False) -> dict[str, Any]:
    """One output as the envelope shows it: expect attrs, desc, seq/status strings, the data.

    ``json_raw`` (WebSocket frames, as upstream): when the expect object says ``format: json`` and
    the data is valid JSON, the JSON is embedded as it is instead of base64."""
    item: dict[str, Any] = {}
    if exp is not None:
        item.update(exp.attrs)
    if d.desc:
        item.update(d.desc)
    item.setdefault("seq", seq)
    item["status"] = str(d.status)
    name = TYPE_NAMES.get(d.type, "other")
    if json_raw and exp is not None and exp.attrs.get("format") == "json":
        try:
            item[name] = orjson.loads(d.data)
            return item
        except orjson.JSONDecodeError:
            pass
    if d.type == 0 and text_raw:
        try:
            item["text"] = d.data.decode("utf-8")
        except UnicodeDecodeError:
            item["text"] = base64.b64encode(d.data).decode("ascii")
            item["encoding"] = "base64"  # not UTF-8: sent as base64 and labelled so, never mangled
    else:
        item[name] = base64.b64encode(d.data).decode("ascii")
    return item


def check_output(d: pb.ResponseData, expect: dict[str, Expect], svc: str) -> Expect | None:
    """Raise OutputInvalid when an output contradicts the client's expect objects."""
    if not expect:
        return None
    exp = expect.get(d.key)
    if exp is None:
        raise errors.OutputInvalid(
            f"wrapper output '{d.key}' was not requested: the request's expect objects name "
            f"{', '.join(sorted(expect))} (if '{d.key}' is not in the wrapper's responseCls, the wrapper "
            f"should not return it; else add parameter.{svc}.{d.key} or drop the expect objects)")
    if exp.type is not None and exp.type != d.type:
        raise errors.OutputInvalid(
            f"wrapper output '{d.key}' has type {TYPE_NAMES.get(d.type, d.type)} but "
            f"parameter.{svc}.{d.key}.data_type asks for {TYPE_NAMES[exp.type]}")
    return exp


def render_once(resp: pb.Response, expect: dict[str, Expect], sid: str, svc: str) -> bytes:
    out: dict[str, Any] = {}
    status = 3
    for d in resp.list:
        exp = check_output(d, expect, svc)
        out[d.key] = output_item(d, exp, "0", text_raw=True)
        status = d.status
    return orjson.dumps({"header": {"code": 0, "message": "success", "sid": sid, "status": status},
                         "payload": out})


def error_body(code: int, message: str, sid: str) -> bytes:
    return orjson.dumps({"header": {"code": code, "message": message, "sid": sid}, "payload": None})
