"""What the route table answers besides its own routes, as upstream's gin router does.

* A path that differs from a route only by a trailing slash is redirected to it (gin's
  ``RedirectTrailingSlash``): ``POST /v1/svcName/`` -> ``307 Location: /v1/svcName`` (a 307 keeps
  method and body, so python-requests, ``curl -L`` and clients generated from an ``openapi.json``
  whose server URL ends in ``/`` reach the service), ``GET`` -> ``301``; the query string is kept.
* A 405 names the methods the path does allow (``Allow``, required by RFC 9110 §15.5.6).
"""
from __future__ import annotations

from aiohttp import web
from yarl import URL


async def slash_redirect(request: web.Request) -> web.Response | None:
    """The redirect for a path that is unknown only because of its trailing slash, else None.

    As gin: only when the other form serves this very method (a ``PUT /v1/svcName/`` stays 404)."""
    path = request.rel_url.raw_path  # as sent: percent-encoding and query string are passed on unchanged
    if path == "/" or "//" in path:
        return None
    other = path[:-1] if path.endswith("/") else path + "/"
    match = await request.app.router.resolve(request.clone(rel_url=URL(other, encoded=True)))
    if match.http_exception is not None:
        return None
    query = request.rel_url.raw_query_string
    location = other + (f"?{query}" if query else "")
    return web.Response(status=301 if request.method == "GET" else 307, headers={"Location": location})


def allowed_methods(request: web.Request, exc: web.HTTPException | None = None) -> str:
    """The ``Allow`` header of a 405: the router's list, or the methods of the matched resource (a
    handler that refuses the request itself, e.g. a GET without a WebSocket upgrade)."""
    if isinstance(exc, web.HTTPMethodNotAllowed):
        methods = set(exc.allowed_methods)
    else:
        resource = request.match_info.route.resource
        methods = {r.method for r in resource} if resource is not None else set()
    methods.discard("*")
    return ", ".join(sorted(methods))
