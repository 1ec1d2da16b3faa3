"""Which paths serve inference for a wrapper: pure, shared by the route table (:mod:`.app`) and the
OpenAPI document (:mod:`.openapi`), so the two never disagree."""
from __future__ import annotations

from typing import Any

from aiges.config import Settings


def inference_routes(settings: Settings, schema: dict[str, Any]) -> list[str]:
    meta = schema.get("meta") or {}
    route = meta.get("route")
    routes = [route] if isinstance(route, str) else list(route or [])
    if not routes and meta.get("serviceId"):
        routes = [f"/{meta.get('version', 'v1')}/private/{meta['serviceId']}"]
    routes.append(f"/v1/{settings.svc_name}")
    return [r if r.startswith("/") else "/" + r for r in dict.fromkeys(routes)]
