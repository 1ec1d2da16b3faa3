"""OpenAPI 3 document generated from the wrapper's schema, and Swagger UI served offline.

The document describes *this* loader (string ``seq``/``status`` attributes, raw text outputs,
the optional expect objects, honest error statuses), built from the schema's ``fields`` section;
``schemainput``/``schemaoutput`` stay shaped for upstream's Go loader and are only a fallback for a
wrapper whose ``schema()`` has no ``fields``.  The request example is built from the fields' test
values and repaired with the loader's own validation rules, so Swagger's "Try it out" sends a
request the service accepts.  ``servers`` is relative: the page works on any host and port.

Swagger UI's files come from the ``swagger-ui-bundle`` package (no CDN, works with no network);
the index page is ours, so it loads our document and never calls the online spec validator.
"""
from __future__ import annotations

import base64
import json
import os
import weakref
from typing import Any

import orjson
from aiohttp import web

from aiges import __version__, errors
from aiges.loader.envelope import HEADER_RULES, ITEM_RULES, STATUSES
from aiges.loader.routes import inference_routes
from aiges.loader.state import API_KEYS, SCHEMA, SETTINGS
from aiges.loader.validate import ParamRule, param_problem, param_rules

try:
    from swagger_ui_bundle import swagger_ui_path as SWAGGER_DIR
except ImportError:  # pragma: no cover - the package is an install requirement
    SWAGGER_DIR = ""

DATA_FIELDS = ("text", "audio", "image", "video", "other")

INDEX_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="UTF-8"><title>{title}</title>
<link rel="stylesheet" type="text/css" href="swagger-ui.css">
<link rel="icon" type="image/png" href="favicon-32x32.png" sizes="32x32">
<style>body {{ margin: 0; }}</style></head>
<body><div id="swagger-ui"></div>
<script src="swagger-ui-bundle.js"></script>
<script>
window.onload = function () {{
  // "../openapi.json": relative, so the page also works behind a path prefix
  window.ui = SwaggerUIBundle({{url: "../openapi.json", dom_id: "#swagger-ui", deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis], layout: "BaseLayout", validatorUrl: null,
    displayRequestDuration: true, defaultModelsExpandDepth: 0}});
}};
</script></body></html>
"""

# status → (description, component name, example code, example message)
ERRORS: dict[str, tuple[str, str, int, str]] = {
    "400": ("bad request: body not JSON (10000), bad base64 (10001), envelope shape (10009), "
            "a field breaks the schema (10107), an expect object's data_type contradicts the declared output "
            "(10106)", "BadRequest", errors.INVALID_PARAM, ""),
    "401": ("missing or wrong API key (only when API keys are configured)", "Unauthorized",
            errors.UNAUTHORIZED, "missing API key: send it in the x-api-key header (or Authorization: Bearer <key>)"),
    "404": ("unknown route", "NotFound", errors.NOT_FOUND, "no route /v1/nothing"),
    "413": ("request body larger than [aiges] maxBodyMB", "TooLarge", errors.BODY_TOO_LARGE,
            "request body is larger than the limit of 64 MB ([aiges] maxBodyMB)"),
    "429": ("overloaded: too many requests in flight; retry after Retry-After seconds", "Overloaded",
            errors.OVERLOADED, "too many requests in flight"),
    "500": ("the wrapper failed: response_err(N) (code N, message from wrapperError), raised or returned "
            "nothing (10909), or an output contradicts the expect object (10106)", "WrapperError",
            errors.WRAPPER_EXEC, "wrapperOnceExec raised RuntimeError: ..."),
    "503": ("no plugin worker available (starting, restarting or down)", "Unavailable",
            errors.WORKER_UNAVAILABLE, "no plugin worker is ready"),
    "504": ("deadline passed ([aiges] deadline or the X-Aiges-Deadline header)", "Timeout",
            errors.DEADLINE, "deadline of 60s passed"),
}


# ---------------------------------------------------------------- example values
def _typed(rule: ParamRule, value: Any) -> Any:
    """A param value as it looks best in JSON: numbers as numbers, booleans as booleans."""
    if rule.type in ("number", "integer") and not isinstance(value, bool):
        try:
            num = float(value)
        except (TypeError, ValueError):
            return value
        return int(num) if rule.type == "integer" or num.is_integer() else num
    if rule.type == "boolean" and isinstance(value, str):
        return value.lower() in ("true", "1")
    return value


def example_param(rule: ParamRule, declared: Any) -> Any:
    """The declared test value if it follows its own rules, else the nearest value that does."""
    if declared is not None and declared != "" and param_problem(rule, "", declared) is None:
        return _typed(rule, declared)
    if rule.enum:
        return _typed(rule, rule.enum[0])
    if rule.type in ("number", "integer"):
        low = rule.minimum if rule.minimum is not None else 0
        high = rule.maximum if rule.maximum is not None else low
        try:
            num = float(declared)
        except (TypeError, ValueError):
            num = low
        return _typed(rule, min(max(num, low), max(low, high)))
    if rule.type == "boolean":
        return bool(declared) if isinstance(declared, bool) else False
    text = "" if declared is None else str(declared)
    if not text and rule.required:
        text = "test"  # "" would be sent as the value of a required param: a placeholder is honest
    if rule.max_length is not None:
        text = text[:rule.max_length]
    if rule.min_length and len(text) < rule.min_length:
        text = text.ljust(rule.min_length, "a")
    return text


def example_request(schema: dict[str, Any], svc: str) -> dict[str, Any]:
    """A complete once request built from the fields' test values (base64 of test files/values)."""
    fields = schema.get("fields") or {}
    declared = {str(p["key"]): p.get("example") for p in fields.get("params") or []}
    section: dict[str, Any] = {r.key: example_param(r, declared.get(r.key)) for r in param_rules(schema)}
    for a in fields.get("accepts") or []:
        section[str(a["key"])] = {"encoding": a.get("encoding") or "utf8", "compress": a.get("compress") or "raw",
                                  "format": a.get("format") or "plain", "data_type": a.get("dataType", "text")}
    payload: dict[str, Any] = {}
    for i in fields.get("inputs") or []:
        item: dict[str, Any] = {}
        if i.get("encoding"):
            item["encoding"] = i["encoding"]
        item["status"] = 3
        item[i.get("dataType", "text")] = i.get("example", "")
        payload[str(i["key"])] = item
    return {"header": {"appid": "test", "uid": "swagger", "status": 3},
            "parameter": {svc: section}, "payload": payload}


def example_response(schema: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for a in (schema.get("fields") or {}).get("accepts") or []:
        kind = a.get("dataType", "text")
        out[str(a["key"])] = {"encoding": a.get("encoding") or "utf8", "compress": a.get("compress") or "raw",
                              "format": a.get("format") or "plain", "seq": "0", "status": "3",
                              kind: "(the wrapper's result)" if kind == "text" else "(base64 of the result)"}
    return {"header": {"code": 0, "message": "success", "sid": "0d9115af-0c6b-4526-a539-05b3c8aa9cfa",
                       "status": 3}, "payload": out}


def example_bad_request(schema: dict[str, Any], svc: str) -> str:
    for r in param_rules(schema):
        if r.enum:
            return f"parameter.{svc}.{r.key}: must be one of {', '.join(repr(e) for e in r.enum)}, got 'x'"
        if r.type in ("number", "integer") and r.maximum is not None:
            return f"parameter.{svc}.{r.key}: must be <= {r.maximum:g}, got '{r.maximum * 2 + 1:g}'"
    return "payload.x: unknown input; this service declares " + ", ".join(
        "payload." + str(i["key"]) for i in (schema.get("fields") or {}).get("inputs") or [])


# ---------------------------------------------------------------- schemas
def _param_schema(p: dict[str, Any]) -> dict[str, Any]:
    s: dict[str, Any] = {"type": p.get("type", "string")}
    for k in ("enum", "minimum", "maximum", "minLength", "maxLength", "default", "description"):
        if k in p:
            s[k] = p[k]
    if s["type"] in ("number", "integer", "boolean"):
        s["description"] = (s.get("description", "") + " (a JSON value or its string form, e.g. \"3\")").strip()
    elif s["type"] == "string":
        s["description"] = (s.get("description", "") + " (a JSON number or boolean is taken as its text)").strip()
    return s


def _expect_schema(a: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object",
            "description": f"optional expect object for output '{a['key']}': the attributes to echo and its "
                           f"data_type ({a.get('dataType', 'text')}); when given, the output must have that type",
            "properties": {
                "encoding": {"type": "string", "example": a.get("encoding") or "utf8"},
                "compress": {"type": "string", "example": a.get("compress") or "raw"},
                "format": {"type": "string", "example": a.get("format") or "plain"},
                "data_type": {"type": "string", "enum": [a.get("dataType", "text")], "example": a.get("dataType", "text"),
                              "description": "the output's declared type (another one is refused)"}}}


NEVER: dict[str, Any] = {"not": {}}  # a key that must not be there


def _input_schema(i: dict[str, Any]) -> dict[str, Any]:
    """One payload item, as ``envelope.parse_payload_item`` and ``ITEM_RULES`` take it."""
    kind = i.get("dataType", "text")
    props: dict[str, Any] = {
        kind: {"description": f"base64 (standard, padded) of the {kind} data" + (", UTF-8 text included" if
                                                                                  kind == "text" else "") +
               ", or a JSON object or array, passed on as its JSON text", "anyOf": [
            {"type": "string", "format": "byte", "minLength": 1},
            {"type": "object", "description": "a JSON value, passed on as its JSON text"},
            {"type": "array", "description": "a JSON value, passed on as its JSON text"}]},
        "status": {"type": "integer", "enum": list(STATUSES), "default": 3,
                   "description": "3 = once (HTTP POST); on a WebSocket 0 first, 1 continue, 2 last frame"},
    }
    for key, rule in ITEM_RULES.items():
        props[key] = dict(rule)
    if i.get("encodings"):
        props["encoding"]["enum"] = list(i["encodings"])
        props["encoding"]["description"] = "compared without case, - and _ (jpeg = jpg, pcm = raw, mp3 = lame)"
    if i.get("encoding"):
        props["encoding"]["default"] = i["encoding"]
    props["compress"]["default"] = i.get("compress") or "raw"
    props["format"]["default"] = i.get("format") or "plain"
    props["seq"]["description"] = "frame number (optional)"
    for other in DATA_FIELDS:  # exactly one data field: the declared kind
        if other != kind:
            props[other] = NEVER
    desc = f"input '{i['key']}' ({kind}); other attributes reach the wrapper in RequestData.desc, as text"
    if i.get("description"):
        desc = f"{i['description']} — {desc}"
    return {"type": "object", "description": desc, "required": [kind], "properties": props}


def _output_schema(a: dict[str, Any]) -> dict[str, Any]:
    kind = a.get("dataType", "text")
    return {"type": "object", "description": f"output '{a['key']}' ({kind})", "properties": {
        kind: {"type": "string", "description": "the text, raw UTF-8" if kind == "text" else
               f"base64 of the {kind} data"},
        "encoding": {"type": "string"}, "compress": {"type": "string"}, "format": {"type": "string"},
        "seq": {"type": "string", "description": "frame number as a string, \"0\" for once"},
        "status": {"type": "string", "description": "\"3\" once, \"2\" a session's last result"}}}


def _components(schema: dict[str, Any], svc: str) -> dict[str, Any]:
    fields = schema.get("fields")
    if fields is None:  # a wrapper with its own schema(): use its JSON Schema as given
        return {"Request": schema.get("schemainput") or {"type": "object"},
                "Response": schema.get("schemaoutput") or {"type": "object"}, "Error": _error_schema()}
    params = fields.get("params") or []
    accepts = fields.get("accepts") or []
    section: dict[str, Any] = {p["key"]: _param_schema(p) for p in params}
    section.update({a["key"]: _expect_schema(a) for a in accepts})
    required = [p["key"] for p in params if p.get("required")]
    own: dict[str, Any] = {"type": "object", "properties": section, **({"required": required} if required else {})}
    if accepts:  # an object names an output (the expect object): only declared ones
        own["additionalProperties"] = {"not": {"type": "object"},
                                       "description": "other parameters, passed on as text"}
    parameter: dict[str, Any] = {"type": "object", "description": f"this service's section is '{svc}'; a "
                                                                  "declared parameter directly under 'parameter' "
                                                                  "counts too (the section's value wins)",
                                 "properties": {svc: own, **{p["key"]: _param_schema(p) for p in params}}}
    if required:
        parameter["required"] = [svc]
    inputs = fields.get("inputs") or []
    payload: dict[str, Any] = {"type": "object", "description": "one item per input stream (at least one)",
                               "properties": {i["key"]: _input_schema(i) for i in inputs}, "minProperties": 1}
    if inputs:
        payload["additionalProperties"] = False
    request: dict[str, Any] = {
        "type": "object", "required": ["payload"] + (["parameter"] if required else []),
        "properties": {
            "header": {"$ref": "#/components/schemas/RequestHeader"},
            "parameter": parameter,
            "payload": payload}}
    response = {"type": "object", "properties": {
        "header": {"type": "object", "properties": {
            "code": {"type": "integer", "example": 0}, "message": {"type": "string", "example": "success"},
            "sid": {"type": "string"}, "status": {"type": "integer", "example": 3}}},
        "payload": {"type": "object", "properties": {a["key"]: _output_schema(a)
                                                     for a in fields.get("accepts") or []}}}}
    header_props: dict[str, Any] = {k: dict(rule) for k, rule in HEADER_RULES.items()}
    header_props["status"]["description"] = "not acted on: POST is once, a WebSocket is a session"
    header = {"type": "object", "description": "request metadata; other keys are passed on as text",
              "properties": header_props}
    return {"RequestHeader": header, "Request": request, "Response": response, "Error": _error_schema()}


def _error_schema() -> dict[str, Any]:
    return {"type": "object", "required": ["header", "payload"], "properties": {
        "header": {"type": "object", "required": ["code", "message", "sid"], "properties": {
            "code": {"type": "integer", "description": "upstream AIGES error code"},
            "message": {"type": "string", "description": "what went wrong and which field"},
            "sid": {"type": "string", "description": "request id, also in the server's logs"}}},
        "payload": {"type": "object", "nullable": True, "description": "always null"}}}


def _description(schema: dict[str, Any], svc: str, routes: list[str]) -> str:
    fields = schema.get("fields") or {}
    missing = [f"`{i['key']}` ({i['exampleNote']})" for i in fields.get("inputs") or [] if i.get("exampleNote")]
    lines = [
        f"Inference API of the **{svc}** service, generated from its wrapper.py by aiges {__version__}.",
        "",
        "**Once**: `POST` the JSON envelope to " + " or ".join(f"`{r}`" for r in routes) + ".",
        "- `parameter." + svc + "` holds the parameters; an object there named after an output "
        "(the *expect object*, e.g. `{\"data_type\": \"text\"}`) is optional.",
        "- `payload.<input>.<text|image|audio|video|other>` holds the data as **base64** (text too).",
        "- In the answer, text outputs are raw UTF-8, other outputs base64; `seq`/`status` are strings.",
        "",
        "**Streaming**: open a WebSocket (`GET` with upgrade) on the same path and send one envelope per "
        "frame, payload `status` 0 (first), 1 (continue), 2 (last); results are pushed as they come, "
        "all data base64 (text too, as upstream's WebSocket).",
        "",
        "Errors keep upstream's body `{\"header\":{\"code\",\"message\",\"sid\"},\"payload\":null}` with an honest "
        "HTTP status. The example request is built from the wrapper's declared test values.",
    ]
    if missing:
        lines += ["", "Not in the example (too large): " + ", ".join(missing) + "."]
    return "\n".join(lines)


def _error_response(status: str, schema: dict[str, Any], svc: str) -> dict[str, Any]:
    description, _name, code, message = ERRORS[status]
    body = {"header": {"code": code, "message": message or example_bad_request(schema, svc),
                       "sid": "0d9115af-0c6b-4526-a539-05b3c8aa9cfa"}, "payload": None}
    resp: dict[str, Any] = {"description": description, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Error"}, "example": body}}}
    if status in ("429", "503"):
        resp["headers"] = {"Retry-After": {"description": "seconds to wait before retrying",
                                           "schema": {"type": "integer"}}}
    return resp


# ---------------------------------------------------------------- POST /infer (no envelope)
def _infer_value(i: dict[str, Any]) -> Any:
    """An input's test value as /infer's JSON body takes it: text as text, other data as base64."""
    example = i.get("example")
    if not example or i.get("dataType", "text") != "text":
        return example
    try:
        return base64.b64decode(example).decode("utf-8")
    except UnicodeDecodeError:
        return None


def _infer_operation(schema: dict[str, Any], svc: str) -> dict[str, Any]:
    fields = schema.get("fields") or {}
    inputs = fields.get("inputs") or []
    params = fields.get("params") or []
    # what rest._read_items takes (the document and the server say the same thing)
    json_props: dict[str, Any] = {}
    form_props: dict[str, Any] = {}
    for i in inputs:
        kind = i.get("dataType", "text")
        if kind == "text":
            json_props[i["key"]] = {"not": {"type": "string", "maxLength": 0}, "description": "text input: the text "
                                    "itself (a string), or any other JSON value, passed on as its JSON text"}
            form_props[i["key"]] = {"type": "string", "minLength": 1, "description": "text input"}
        else:
            json_props[i["key"]] = {"type": "string", "format": "byte", "minLength": 1,
                                    "description": f"{kind} input: base64 of the data"}
            form_props[i["key"]] = {"type": "string", "format": "binary", "minLength": 1,
                                    "description": f"{kind} input (a file)"}
    json_props["params"] = {"type": "object", "description": "parameters (or send them in the query string; "
                                                             "both are checked, these win)",
                            "properties": {p["key"]: _param_schema(p) for p in params}}
    for p in params:
        form_props[p["key"]] = _param_schema(p)
    example: dict[str, Any] = {}
    for i in inputs:
        value = _infer_value(i)
        if value is not None:
            example[i["key"]] = value
    rules = param_rules(schema)
    declared = {str(p["key"]): p.get("example") for p in params}
    if rules:
        example["params"] = {r.key: example_param(r, declared.get(r.key)) for r in rules}
    keys = [i["key"] for i in inputs]
    # at least one input
    some_input: dict[str, Any] = {"required": keys[:1]} if len(keys) == 1 else \
        {"anyOf": [{"required": [k]} for k in keys]}
    split: dict[str, Any] = {"type": "object", "properties": json_props, **some_input}
    has_text = any(i.get("dataType", "text") == "text" for i in inputs)
    if has_text:  # any other JSON goes, as sent, to the first JSON (else text) input
        json_schema: dict[str, Any] = {"anyOf": [split, {"description": "any other JSON value, passed on as sent"}]}
    else:
        json_schema = dict(split, additionalProperties=False)
    form: dict[str, Any] = {"type": "object", "properties": form_props, **some_input, "additionalProperties": False}
    content: dict[str, Any] = {
        "application/json": {"schema": json_schema,
                             "examples": {"test_values": {"summary": "the wrapper's declared test values",
                                                          "value": example}}},
        "multipart/form-data": {"schema": form},
        # raw bytes feed the first binary input, else the first input
        "application/octet-stream": {"schema": {"type": "string", "format": "binary", "minLength": 1}},
    }
    first = inputs[0] if inputs else {"key": "input", "dataType": "text"}
    if has_text:  # raw text feeds the first text input; without one it is refused (415)
        content["text/plain"] = {"schema": {"type": "string", "minLength": 1}}
    error_body = {"result": False, "data": None, "error": {"code": errors.INVALID_PARAM,
                                                           "message": example_bad_request(schema, svc)},
                  "metadata": {"duration": 0.4, "content_type": "application/json", "sid": "0d9115af-..."}}
    return {
        "tags": ["rest"],
        "summary": f"once inference of {svc} without the envelope",
        "description": f"The body feeds the inputs: text/plain the first text input, application/octet-stream "
                       f"the first binary input (else the first input, '{first['key']}'); a JSON object keyed by "
                       "inputs is split by input key (plus `params`), any other JSON goes as sent to the first "
                       "JSON (else text) input; multipart parts are named like inputs, other fields are "
                       "parameters. Query-string values are parameters. The answer is `data`: the single output "
                       "(text as text, JSON outputs as JSON, other data base64) or an object of outputs.",
        "operationId": "infer",
        "parameters": [{"name": p["key"], "in": "query", "required": False, "schema": _param_schema(p)}
                       for p in params],
        "requestBody": {"required": True, "content": content},
        "responses": {
            "200": {"description": "success", "content": {"application/json": {"schema": {
                "type": "object", "properties": {
                    "result": {"type": "boolean"}, "data": {"description": "the output, or an object of outputs"},
                    "metadata": {"type": "object", "properties": {
                        "duration": {"type": "number", "description": "milliseconds"},
                        "content_type": {"type": "string"}, "sid": {"type": "string"}}}}}}}},
            "default": {"description": "an error: the status as for the envelope routes", "content": {
                "application/json": {"schema": {"type": "object", "properties": {
                    "result": {"type": "boolean", "enum": [False]},
                    "error": {"type": "object", "properties": {"code": {"type": "integer"},
                                                               "message": {"type": "string"}}}}},
                    "example": error_body}}},
        },
    }


def build_openapi(schema: dict[str, Any], routes: list[str], api_keys: bool = False) -> dict[str, Any]:
    meta = schema.get("meta") or {}
    svc = str(meta.get("serviceId") or "svcName")
    responses: dict[str, Any] = {"Ok": {"description": "success", "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Response"}, "example": example_response(schema)}}}}
    for status, (_d, name, _c, _m) in ERRORS.items():
        responses[name] = _error_response(status, schema, svc)
    components: dict[str, Any] = {
        "schemas": _components(schema, svc),
        "requestBodies": {"OnceRequest": {"required": True, "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/Request"},
            "examples": {"test_values": {"summary": "the wrapper's declared test values",
                                         "value": example_request(schema, svc)}}}}}},
        "responses": responses,
    }
    if api_keys:
        components["securitySchemes"] = {"ApiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"}}
    deadline = {"name": "X-Aiges-Deadline", "in": "header", "required": False,
                "description": "seconds this request may take (overrides [aiges] deadline)",
                "schema": {"type": "number", "minimum": 0, "maximum": 3600, "exclusiveMinimum": True}}
    paths: dict[str, Any] = {}
    for n, route in enumerate(routes):
        op: dict[str, Any] = {
            "tags": [svc],
            "summary": f"once inference of {svc}" + ("" if n == 0 else " (upstream README route)"),
            "description": "Also a WebSocket streaming session when requested with `GET` + upgrade.",
            "operationId": "callAIAbility" if n == 0 else f"callAIAbility{n}",
            "parameters": [deadline],
            "requestBody": {"$ref": "#/components/requestBodies/OnceRequest"},
            "responses": {"200": {"$ref": "#/components/responses/Ok"},
                          **{s: {"$ref": f"#/components/responses/{e[1]}"} for s, e in ERRORS.items()}},
        }
        if api_keys:
            op["security"] = [{"ApiKey": []}]
        paths[route] = {"post": op}
    if (schema.get("fields") or {}).get("inputs"):
        paths["/infer"] = {"post": _infer_operation(schema, svc)}
        if api_keys:
            paths["/infer"]["post"]["security"] = [{"ApiKey": []}]
    system: dict[str, Any] = {"tags": ["system"], "responses": {"200": {"description": "ok", "content": {"application/json": {
        "schema": {"type": "object", "properties": {"status": {"type": "string"}}}}}}}}
    paths["/health"] = {"get": dict(system, summary="liveness", operationId="health")}
    paths["/ready"] = {"get": dict(system, summary="readiness: 200 while every worker answers, else 503",
                                   operationId="ready",
                                   responses=dict(system["responses"], **{"503": {"description": "not ready"}}))}
    paths["/metrics"] = {"get": {"tags": ["system"], "summary": "Prometheus metrics (text exposition format)",
                                 "operationId": "metrics", "responses": {"200": {"description": "the metrics", "content": {
                                     "text/plain": {"schema": {"type": "string"}}}}}}}
    paths["/ping"] = {"get": {"tags": ["system"], "operationId": "ping",
                              "summary": "WebSocket echo (upstream's): 'ping' is answered 'pong', anything else echoed",
                              "responses": {"101": {"description": "switching to the WebSocket"},
                                            "400": {"$ref": "#/components/responses/BadRequest"}}}}
    return {
        "openapi": "3.0.3",
        "info": {"title": f"Aiges Service doc for {svc}", "description": _description(schema, svc, routes),
                 "version": str(meta.get("version") or __version__),
                 "license": {"name": "Apache 2.0", "url": "https://www.apache.org/licenses/LICENSE-2.0.html"}},
        "servers": [{"url": "/", "description": "this server"}],
        "tags": [{"name": svc, "description": "inference with upstream's envelope"},
                 {"name": "rest", "description": "inference with a plain body"},
                 {"name": "system", "description": "health, readiness, metrics, WebSocket ping"}],
        "paths": paths,
        "components": components,
    }


# ---------------------------------------------------------------- handlers
# the document depends only on the app's schema and settings; forget() when the schema arrives late
_cache: weakref.WeakKeyDictionary[web.Application, bytes] = weakref.WeakKeyDictionary()


def forget(app: web.Application) -> None:
    _cache.pop(app, None)


async def openapi_json(request: web.Request) -> web.Response:
    app = request.app
    body = _cache.get(app)
    if body is None:
        settings = app[SETTINGS]
        served = {r.canonical for r in app.router.resources()}  # a late schema's route may not be
        routes = [r for r in inference_routes(settings, app[SCHEMA]) if r in served]
        doc = build_openapi(app[SCHEMA], routes, bool(app[API_KEYS].keys))
        try:
            body = orjson.dumps(doc)
        except TypeError:  # an integer beyond 64 bits in a field's limits: the stdlib writes it
            body = json.dumps(doc, ensure_ascii=False).encode("utf-8")
        _cache[app] = body
    return web.Response(body=body, content_type="application/json")


async def swagger(request: web.Request) -> web.StreamResponse:
    name = request.match_info.get("file") or "index.html"
    if name == "index.html":
        meta = request.app[SCHEMA].get("meta") or {}
        html = INDEX_HTML.format(title=f"aiges: {meta.get('serviceId', '')}")
        return web.Response(text=html, content_type="text/html")
    path = os.path.join(SWAGGER_DIR, os.path.basename(name))
    if not SWAGGER_DIR or not os.path.isfile(path):
        raise web.HTTPNotFound()
    return web.FileResponse(path, headers={"Cache-Control": "public, max-age=86400"})
