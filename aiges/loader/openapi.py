"""OpenAPI 3 document generated from the wrapper's schema, and Swagger UI served offline.

Swagger UI's files come from the ``swagger-ui-bundle`` package (no CDN: works with no network).
"""
from __future__ import annotations

import os
from typing import Any

import orjson
from aiohttp import web

from aiges import __version__
from aiges.loader.state import SCHEMA, SETTINGS

try:
    from swagger_ui_bundle import swagger_ui_path as SWAGGER_DIR
except ImportError:  # pragma: no cover - the package is an install requirement
    SWAGGER_DIR = ""

INDEX_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="UTF-8"><title>{title}</title>
<link rel="stylesheet" type="text/css" href="swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="swagger-ui-bundle.js"></script>
<script src="swagger-ui-standalone-preset.js"></script>
<script>
window.onload = function() {{
  window.ui = SwaggerUIBundle({{url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis], layout: "BaseLayout"}});
}};
</script></body></html>
"""


def build_openapi(schema: dict[str, Any], routes: list[str]) -> dict[str, Any]:
    meta = schema.get("meta") or {}
    svc = meta.get("serviceId", "svcName")
    request_schema = schema.get("schemainput") or {"type": "object"}
    response_schema = schema.get("schemaoutput") or {"type": "object"}
    error_schema = {"type": "object", "properties": {
        "header": {"type": "object", "properties": {"code": {"type": "integer"}, "message": {"type": "string"},
                                                     "sid": {"type": "string"}}},
        "payload": {"nullable": True}}}
    operation = {
        "operationId": "callAIAbility",
        "summary": f"once inference of {svc}",
        "requestBody": {"required": True, "content": {"application/json": {"schema": request_schema}}},
        "responses": {
            "200": {"description": "success", "content": {"application/json": {"schema": response_schema}}},
            "default": {"description": "error", "content": {"application/json": {"schema": error_schema}}},
        },
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": f"Aiges Service doc for {svc}", "version": str(meta.get("version") or __version__),
                 "license": {"name": "Apache 2.0"}},
        "paths": {r: {"post": dict(operation, operationId=f"callAIAbility{i or ''}")} for i, r in enumerate(routes)},
    }


async def openapi_json(request: web.Request) -> web.Response:
    from aiges.loader.app import inference_routes
    app = request.app
    doc = build_openapi(app[SCHEMA], inference_routes(app[SETTINGS], app[SCHEMA]))
    return web.Response(body=orjson.dumps(doc), content_type="application/json")


async def swagger(request: web.Request) -> web.StreamResponse:
    name = request.match_info.get("file") or "index.html"
    if name == "index.html":
        meta = request.app[SCHEMA].get("meta") or {}
        html = INDEX_HTML.format(title=f"aiges: {meta.get('serviceId', '')}")
        return web.Response(text=html, content_type="text/html")
    path = os.path.join(SWAGGER_DIR, os.path.basename(name))
    if not SWAGGER_DIR or not os.path.isfile(path):
        raise web.HTTPNotFound()
    return web.FileResponse(path)
