"""``POST /infer``: a plain REST route for people who do not want the envelope (fastml style).

Accepts ``text/plain``, ``application/json``, ``application/octet-stream`` and
``multipart/form-data``; query-string values (and non-input form fields) become params.  Where
the body goes:
- text (``text/plain``): the first declared text input (else the first input), bytes unchanged;
- bytes (``application/octet-stream``): the first declared binary input -- image, audio, video,
  other -- (else the first input), bytes unchanged; a ``Content-Disposition`` filename is kept;
- JSON: an object whose keys are declared inputs (plus an optional ``"params"`` object) is split
  by key — strings go in as UTF-8 for text inputs and as base64 for binary ones; any other JSON
  goes, exactly as sent (numbers keep their spelling and size), to the first text input declared
  ``format: json`` (``JsonBodyField``), else the first text input, else the first input;
- multipart: each part named like an input feeds it (file or field); other fields are params; a
  file part named like no input is refused (400) rather than turned into a garbled param.
Every input item carries ``desc["content_type"]`` (the request's, or the part's own) and, for
files, ``desc["filename"]``; the wrapper reads them as ``reqData.get(key).desc``.
Answer: ``{"result": true, "data": ..., "metadata": {"duration": ms, "content_type": ..., "sid": ...}}``
where ``data`` is the single output (text as a string, binary as base64, a text output declared
``format: json`` -- ``JsonBodyField`` -- as the JSON value itself) or an object of outputs.
Errors use the same shape with ``"result": false`` and ``"error": {"code", "message"}``.
"""
from __future__ import annotations

import base64
import binascii
import time
from typing import Any

import orjson
from aiohttp import BodyPartReader, web
from aiohttp.multipart import content_disposition_filename, parse_content_disposition

from aiges import errors
from aiges.loader import envelope
from aiges.loader.envelope import TYPE_NAMES, TooDeep, dumps, json_type
from aiges.loader.once import new_sid, request_deadline, wrapper_failure
from aiges.loader.state import POOL, SCHEMA, SETTINGS, VALIDATOR
from aiges.wire.pb import aiges_inner_pb2 as pb

JSON = "application/json"


def _inputs(schema: dict[str, Any]) -> list[tuple[str, int]]:
    return [(str(i["key"]), int(i.get("type", 0))) for i in (schema.get("fields") or {}).get("inputs") or []]


def _json_inputs(schema: dict[str, Any]) -> frozenset[str]:
    return frozenset(str(i["key"]) for i in (schema.get("fields") or {}).get("inputs") or []
                     if i.get("format") == "json" and int(i.get("type", 0)) == 0)


def _described(inputs: list[tuple[str, int]]) -> str:
    return ", ".join(f"{k} ({TYPE_NAMES.get(t, 'other')})" for k, t in inputs)


def _pick(inputs: list[tuple[str, int]], kind: str, json_inputs: frozenset[str] = frozenset()) -> tuple[str, int]:
    """The input a whole body feeds: text (and JSON) the first text input -- a JSON one first
    for JSON --, bytes the first binary input, else the first input (bytes make fine text; text
    is no image: without a text input a text body is refused, naming what the service takes)."""
    if kind == "json":
        for key, type_ in inputs:
            if key in json_inputs:
                return key, type_
    for key, type_ in inputs:
        if (type_ == 0) == (kind != "bytes"):
            return key, type_
    if kind == "bytes":
        return inputs[0]
    if kind == "json":
        raise errors.BadRequest(f"this service has no text input to take this JSON as it is; send an object of its "
                                f"inputs (and 'params'), e.g. {{\"{inputs[0][0]}\": \"<base64>\"}}; inputs: "
                                f"{_described(inputs)}", errors.INVALID_PARAM)
    raise errors.UnsupportedMediaType(
        f"a text body needs a text input and this service has none; its inputs are {_described(inputs)}: send "
        "application/octet-stream, multipart/form-data or a JSON object of inputs")


def _filename(disposition: str | None) -> str | None:
    """``Content-Disposition: attachment; filename="x.bin"`` (RFC 6266, ``filename*`` too)."""
    if not disposition:
        return None
    _, options = parse_content_disposition(disposition)
    return content_disposition_filename(options, "filename")


def _item(key: str, type_: int, data: bytes, desc: dict[str, str] | None = None) -> pb.RequestData:
    return pb.RequestData(key=key, data=data, len=len(data), type=type_, status=3, desc=desc)


def _json_text(path: str, v: Any) -> bytes:
    try:
        return dumps(v)
    except TooDeep as e:
        raise errors.BadRequest(f"{path}: {e}", errors.JSON_INVALID) from None


def _from_json(doc: Any, body: bytes, inputs: list[tuple[str, int]], params: dict[str, Any],
               json_inputs: frozenset[str] = frozenset()) -> list[pb.RequestData]:
    declared = dict(inputs)
    desc = {"content_type": JSON}
    if isinstance(doc, dict) and doc and all(k in declared or k == "params" for k in doc):
        extra = doc.get("params", {})
        if not isinstance(extra, dict):
            raise errors.BadRequest("'params' must be a JSON object of parameters", errors.INVALID_DATA)
        params.update({str(k): v for k, v in extra.items()})  # JSON values: checked by type, made text later
        items = []
        for key, value in doc.items():
            if key == "params":
                continue
            type_ = declared[key]
            if type_ != 0 and not isinstance(value, str):
                raise errors.BadRequest(f"'{key}' is a {TYPE_NAMES.get(type_)} input: send it as a base64 string, "
                                        f"got a JSON {json_type(value)}", errors.CONVERT_FAILED)
            if type_ != 0:
                try:
                    data = base64.b64decode(value, validate=True)
                except (binascii.Error, ValueError):
                    raise errors.BadRequest(f"'{key}' is a {TYPE_NAMES.get(type_)} input: send it base64-encoded",
                                            errors.CONVERT_FAILED) from None
            elif isinstance(value, str):
                data = value.encode("utf-8")
            else:
                data = _json_text(key, value)
            items.append(_item(key, type_, data, desc))
        return items
    key, type_ = _pick(inputs, "json", json_inputs)
    return [_item(key, type_, body, desc)]  # as sent: no re-encoding that could change a number


async def _read_items(request: web.Request, inputs: list[tuple[str, int]],
                      params: dict[str, Any], json_inputs: frozenset[str] = frozenset(),
                      accepted: frozenset[str] | None = None) -> list[pb.RequestData]:
    """The body's input items; the params it carries go into ``params`` (JSON values as sent).
    ``accepted``: the declared params, the only other form fields taken (None: any)."""
    if not inputs:
        raise errors.BadRequest("this wrapper declares no inputs (requestCls)", errors.INVALID_DATA)
    items = await _body_items(request, inputs, params, json_inputs, accepted)
    if not items:
        raise errors.BadRequest(f"the body has no input; this service's inputs are {_described(inputs)} (in a JSON "
                                f"body: {{\"{inputs[0][0]}\": ...}} beside \"params\")", errors.INVALID_PARAM)
    return items


async def _body_items(request: web.Request, inputs: list[tuple[str, int]], params: dict[str, Any],
                      json_inputs: frozenset[str], accepted: frozenset[str] | None) -> list[pb.RequestData]:
    ctype = request.content_type
    if ctype == "multipart/form-data":
        declared = dict(inputs)
        items = []
        try:
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                if not isinstance(part, BodyPartReader):
                    raise errors.BadRequest("nested multipart bodies are not supported", errors.INVALID_DATA)
                name = part.name or ""
                data = await part.read()  # aiohttp holds the parts to client_max_size (413)
                desc = {"content_type": part.headers.get("Content-Type", "text/plain" if part.filename is None
                                                         else "application/octet-stream")}
                if part.filename is not None:
                    desc["filename"] = part.filename
                if name in declared:
                    items.append(_item(name, declared[name], bytes(data), desc))
                elif part.filename is not None:
                    raise errors.BadRequest(f"form part '{name}' is a file ({part.filename!r}) but no input is "
                                            f"named '{name}'; this service's inputs are "
                                            f"{', '.join(k for k, _ in inputs)}", errors.INVALID_DATA)
                elif accepted is None or name in accepted:
                    value = bytes(data).decode("utf-8", "replace")
                    if params.get(name, value) != value:
                        raise errors.BadRequest(f"form field {name!r} is given twice with different values; send it "
                                                "once", errors.INVALID_PARAM)
                    params[name] = value
                else:  # a typo'd field would otherwise pass unnoticed (the document lists every field)
                    raise errors.BadRequest(
                        f"form field {name!r} is neither an input nor a parameter of this service; inputs: "
                        f"{', '.join(k for k, _ in inputs)}; parameters: {', '.join(sorted(accepted)) or 'none'}",
                        errors.INVALID_PARAM)
        except ValueError as e:  # aiohttp: no boundary, no starting boundary, a body cut off mid-part
            raise errors.BadRequest(f"the multipart body is broken: {e}; send complete parts, each closed by "
                                    f"the boundary of the Content-Type header", errors.INVALID_DATA) from None
        if not items:
            raise errors.BadRequest(f"no form part named like an input; expected one of "
                                    f"{', '.join(k for k, _ in inputs)}", errors.INVALID_DATA)
        return items
    body = await request.read()
    if not body:
        raise errors.BadRequest("request body is empty", errors.INVALID_DATA)
    if ctype == JSON:
        try:
            doc = envelope.loads(body)
        except ValueError as e:  # orjson.JSONDecodeError is one
            raise errors.BadRequest(f"request body is not valid JSON: {e}", errors.JSON_INVALID) from None
        return _from_json(doc, body, inputs, params, json_inputs)
    if ctype in ("text/plain", "application/octet-stream", "application/x-www-form-urlencoded", ""):
        key, type_ = _pick(inputs, "bytes" if ctype == "application/octet-stream" else "text")
        desc = {"content_type": request.headers.get("Content-Type", "application/octet-stream")}
        filename = _filename(request.headers.get("Content-Disposition"))
        if filename is not None:
            desc["filename"] = filename
        return [_item(key, type_, body, desc)]
    raise errors.UnsupportedMediaType(f"unsupported Content-Type {ctype}; use application/json, "
                                      "application/octet-stream, multipart/form-data or (for a text input) text/plain")


def _json_outputs(schema: dict[str, Any]) -> frozenset[str]:
    """Text outputs declared ``format: json`` (``JsonBodyField`` on responseCls)."""
    return frozenset(str(a["key"]) for a in (schema.get("fields") or {}).get("accepts") or []
                     if a.get("format") == "json" and int(a.get("type", 0)) == 0)


class RawJSON(bytes):
    """JSON text the wrapper wrote, embedded into the answer as it is (numbers keep their spelling
    and size: orjson would read a 30-digit integer as a float)."""


def _value(d: pb.ResponseData, json_keys: frozenset[str] = frozenset()) -> Any:
    if d.type == 0:
        if d.key in json_keys:
            try:
                orjson.loads(d.data)  # only checks that it is JSON
                return RawJSON(d.data.strip())
            except orjson.JSONDecodeError:
                pass  # not JSON after all: the text, as for any text output
        try:
            return d.data.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return base64.b64encode(d.data).decode("ascii")


def rest_error_body(err: errors.AigesError, sid: str, content_type: str, started: float) -> bytes:
    return orjson.dumps({"result": False, "data": None, "error": {"code": err.code, "message": err.message},
                         "metadata": {"duration": round((time.perf_counter() - started) * 1000, 3),
                                      "content_type": content_type, "sid": sid}})


def _query(request: web.Request) -> dict[str, str]:
    """The query string's params; one given twice with different values is refused (which one counts?)."""
    out: dict[str, str] = {}
    for key in request.query:
        values = request.query.getall(key)
        if len(set(values)) > 1:
            raise errors.BadRequest(f"query.{key}: given {len(values)} times with different values "
                                    f"({', '.join(repr(v) for v in values[:3])}); send it once", errors.INVALID_PARAM)
        out[key] = values[0]
    return out


async def handle_infer(request: web.Request) -> web.Response:
    started = request["started"] = time.perf_counter()
    app = request.app
    settings = app[SETTINGS]
    sid = request["sid"] = new_sid()
    deadline = request_deadline(request, settings.deadline)
    query = _query(request)
    given: dict[str, Any] = {}  # the body's params (JSON values as sent, form fields as text): they win
    schema = app[SCHEMA]
    fields = schema.get("fields")
    accepted = frozenset(str(p["key"]) for p in fields.get("params") or []) if fields else None
    items = await _read_items(request, _inputs(schema), given, _json_inputs(schema), accepted)
    raw: dict[str, Any] = {**query, **given}
    params = {k: v if isinstance(v, str) else _json_text(f"params.{k}", v).decode() for k, v in raw.items()}
    app[VALIDATOR].check(params, raw, items, once=True, where="params",
                         shadowed=("query", {k: v for k, v in query.items() if k in given and given[k] != v}))
    params["sid"] = sid
    resp = await app[POOL].once(pb.Request(tag=sid, params=params, list=items), deadline)
    if resp.ret:
        raise wrapper_failure(resp, settings.wrapper_error_status)
    json_keys = _json_outputs(app[SCHEMA])
    outputs = {d.key: _value(d, json_keys) for d in resp.list}
    data = next(iter(outputs.values())) if len(outputs) == 1 else outputs
    metadata = orjson.dumps({"duration": round((time.perf_counter() - started) * 1000, 3),
                             "content_type": request.content_type, "sid": sid})
    return web.Response(body=b'{"result":true,"data":' + _dump(data) + b',"metadata":' + metadata + b"}",
                        content_type=JSON)


def _dump(data: Any) -> bytes:
    if isinstance(data, RawJSON):
        return bytes(data)
    if isinstance(data, dict) and any(isinstance(v, RawJSON) for v in data.values()):
        return b"{" + b",".join(orjson.dumps(k) + b":" + _dump(v) for k, v in data.items()) + b"}"
    return orjson.dumps(data)
