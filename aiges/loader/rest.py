"""``POST /infer``: a plain REST route for people who do not want the envelope (fastml style).

Accepts ``text/plain``, ``application/json``, ``application/octet-stream`` and
``multipart/form-data``; query-string values (and non-input form fields) become params.  Where
the body goes:
- text / bytes: the wrapper's first declared input;
- JSON: an object whose keys are declared inputs (plus an optional ``"params"`` object) is split
  by key — strings go in as UTF-8 for text inputs and as base64 for binary ones; any other JSON
  goes to the first input as JSON text;
- multipart: each part named like an input feeds it (file or field); other fields are params.
Answer: ``{"result": true, "data": ..., "metadata": {"duration": ms, "content_type": ..., "sid": ...}}``
where ``data`` is the single output (text as a string, binary as base64) or an object of outputs.
Errors use the same shape with ``"result": false`` and ``"error": {"code", "message"}``.
"""
from __future__ import annotations

import base64
import binascii
import time
from typing import Any

import orjson
from aiohttp import BodyPartReader, web

from aiges import errors
from aiges._pb import aiges_inner_pb2 as pb
from aiges.loader.envelope import TYPE_NAMES
from aiges.loader.once import new_sid, request_deadline, wrapper_failure
from aiges.loader.state import POOL, SCHEMA, SETTINGS, VALIDATOR

JSON = "application/json"


def _inputs(schema: dict[str, Any]) -> list[tuple[str, int]]:
    return [(str(i["key"]), int(i.get("type", 0))) for i in (schema.get("fields") or {}).get("inputs") or []]


def _item(key: str, type_: int, data: bytes) -> pb.RequestData:
    return pb.RequestData(key=key, data=data, len=len(data), type=type_, status=3)


def _from_json(doc: Any, inputs: list[tuple[str, int]], params: dict[str, str]) -> list[pb.RequestData]:
    declared = dict(inputs)
    if isinstance(doc, dict) and doc and all(k in declared or k == "params" for k in doc):
        extra = doc.get("params") or {}
        if not isinstance(extra, dict):
            raise errors.BadRequest("'params' must be a JSON object of parameters", errors.INVALID_DATA)
        params.update({str(k): v if isinstance(v, str) else orjson.dumps(v).decode() for k, v in extra.items()})
        items = []
        for key, value in doc.items():
            if key == "params":
                continue
            type_ = declared[key]
            if isinstance(value, str) and type_ != 0:
                try:
                    data = base64.b64decode(value, validate=True)
                except (binascii.Error, ValueError):
                    raise errors.BadRequest(f"'{key}' is a {TYPE_NAMES.get(type_)} input: send it base64-encoded",
                                            errors.CONVERT_FAILED) from None
            elif isinstance(value, str):
                data = value.encode("utf-8")
            else:
                data = orjson.dumps(value)
            items.append(_item(key, type_, data))
        return items
    key, type_ = inputs[0]
    return [_item(key, type_, orjson.dumps(doc))]


async def _read_items(request: web.Request, inputs: list[tuple[str, int]],
                      params: dict[str, str]) -> list[pb.RequestData]:
    if not inputs:
        raise errors.BadRequest("this wrapper declares no inputs (requestCls)", errors.INVALID_DATA)
    ctype = request.content_type
    if ctype == "multipart/form-data":
        declared = dict(inputs)
        items = []
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise errors.BadRequest("nested multipart bodies are not supported", errors.INVALID_DATA)
            name = part.name or ""
            data = await part.read()
            if name in declared:
                items.append(_item(name, declared[name], bytes(data)))
            elif name:
                params[name] = bytes(data).decode("utf-8", "replace")
        if not items:
            raise errors.BadRequest(f"no form part named like an input; expected one of "
                                    f"{', '.join(k for k, _ in inputs)}", errors.INVALID_DATA)
        return items
    body = await request.read()
    if not body:
        raise errors.BadRequest("request body is empty", errors.INVALID_DATA)
    if ctype == JSON:
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as e:
            raise errors.BadRequest(f"request body is not valid JSON: {e}", errors.JSON_INVALID) from None
        return _from_json(doc, inputs, params)
    if ctype in ("text/plain", "application/octet-stream", "application/x-www-form-urlencoded", ""):
        key, type_ = inputs[0]
        return [_item(key, type_, body)]
    raise errors.BadRequest(f"unsupported Content-Type {ctype}; use text/plain, application/json, "
                            "application/octet-stream or multipart/form-data", errors.INVALID_DATA)


def _value(d: pb.ResponseData) -> Any:
    if d.type == 0:
        try:
            return d.data.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return base64.b64encode(d.data).decode("ascii")


def rest_error_body(err: errors.AigesError, sid: str, content_type: str, started: float) -> bytes:
    return orjson.dumps({"result": False, "data": None, "error": {"code": err.code, "message": err.message},
                         "metadata": {"duration": round((time.perf_counter() - started) * 1000, 3),
                                      "content_type": content_type, "sid": sid}})


async def handle_infer(request: web.Request) -> web.Response:
    started = request["started"] = time.perf_counter()
    app = request.app
    settings = app[SETTINGS]
    sid = request["sid"] = new_sid()
    deadline = request_deadline(request, settings.deadline)
    params: dict[str, str] = dict(request.query)
    items = await _read_items(request, _inputs(app[SCHEMA]), params)
    app[VALIDATOR].check(params, dict(params), items)
    params["sid"] = sid
    resp = await app[POOL].once(pb.Request(tag=sid, params=params, list=items), deadline)
    if resp.ret:
        raise wrapper_failure(resp, settings.wrapper_error_status)
    outputs = {d.key: _value(d) for d in resp.list}
    data = next(iter(outputs.values())) if len(outputs) == 1 else outputs
    return web.Response(body=orjson.dumps({
        "result": True, "data": data,
        "metadata": {"duration": round((time.perf_counter() - started) * 1000, 3),
                     "content_type": request.content_type, "sid": sid}}), content_type=JSON)
