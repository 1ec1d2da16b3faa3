"""Upstream clients answered as upstream answers them (issue 14), on a real loader + plugin.

What upstream's gin router does besides its routes (checked against the real binary in
tests/test_upstream_loader.py ``test_router_answers_as_ours``): a trailing slash is redirected (307
keeps method and body, 301 for GET), any method on ``/`` goes to the Swagger page (302); and what
HTTP requires of us: every 405 names the allowed methods.
"""
from __future__ import annotations

import base64
import http.client
import json
from urllib.parse import urlsplit

import pytest
import requests

from tests.utils import Loader, once_body

TEXT = {"text": {"text": base64.b64encode(b"hello").decode(), "status": 3}}


def raw(loader: Loader, method: str, path: str, body: bytes | None = None,
        headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request, no redirect followed: the status, headers and body as the server sent them."""
    url = urlsplit(loader.url)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


@pytest.mark.parametrize("path, location", [
    ("/v1/svcName/", "/v1/svcName"),
    ("/v1/private/demo/", "/v1/private/demo"),  # the schema route too
    ("/v1/svcName/?trace=1&x=%2F", "/v1/svcName?trace=1&x=%2F"),  # the query string is kept
    ("/infer/", "/infer"),
])
def test_trailing_slash_post_is_redirected_with_307(demo: Loader, path: str, location: str) -> None:
    body = json.dumps(once_body("demo", TEXT)).encode()
    status, headers, data = raw(demo, "POST", path, body)
    assert (status, headers.get("Location"), data) == (307, location, b"")
    assert headers.get("Access-Control-Allow-Origin") == "*"


def test_a_client_that_follows_redirects_reaches_the_service(demo: Loader) -> None:
    """python-requests (as curl -L and browsers) repeats the POST with its body at the Location."""
    r = requests.post(demo.url + "/v1/svcName/", json=once_body("demo", TEXT, {"mode": "upper"}), timeout=10)
    assert [h.status_code for h in r.history] == [307]
    assert r.status_code == 200 and r.json()["payload"]["result"]["text"] == "HELLO", r.text


def test_trailing_slash_get_is_301_and_other_methods_stay_404(demo: Loader) -> None:
    """GET (the WebSocket side of an inference route) gets gin's 301; a method the slash-less path
    does not serve is not redirected, so it stays an honest 404 in the envelope."""
    status, headers, _ = raw(demo, "GET", "/v1/svcName/")
    assert (status, headers.get("Location")) == (301, "/v1/svcName")
    status, headers, _ = raw(demo, "GET", "/health/")
    assert (status, headers.get("Location")) == (301, "/health")
    for method, path in (("PUT", "/v1/svcName/"), ("POST", "/health/"), ("POST", "/no/such/")):
        status, headers, data = raw(demo, method, path, b"{}")
        assert status == 404 and "Location" not in headers, (method, path)
        assert json.loads(data)["header"]["code"] == 12404


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"])
def test_any_method_on_root_goes_to_swagger(demo: Loader, method: str) -> None:
    status, headers, _ = raw(demo, method, "/", b"x" if method in ("POST", "PUT", "PATCH") else None)
    assert (status, headers.get("Location")) == (302, "/swagger/index.html")


@pytest.mark.parametrize("method, path, allow", [
    ("POST", "/health", "GET, HEAD"),
    ("DELETE", "/metrics", "GET, HEAD"),
    ("GET", "/infer", "POST"),
    ("PUT", "/v1/svcName", "GET, POST"),
    ("GET", "/v1/svcName", "GET, POST"),  # refused by the handler itself: GET there needs a WebSocket upgrade
])
def test_every_405_names_the_allowed_methods(demo: Loader, method: str, path: str, allow: str) -> None:
    status, headers, data = raw(demo, method, path, b"{}" if method != "GET" else None)
    assert status == 405 and headers.get("Allow") == allow, (headers, data)
    assert json.loads(data)["header"]["code"] == 12405


def test_expect_data_type_against_declared_output_is_10106(demo: Loader) -> None:
    """An expect object asking for another type than the declared output: upstream's code 10106
    (its "invalid output"), answered before the wrapper runs, as a 400 naming the field."""
    status, _, resp = demo.post("/v1/svcName", once_body("demo", TEXT, expect={"result": {"data_type": "image"}}))
    assert status == 400 and resp["header"]["code"] == 10106, resp
    assert "parameter.demo.result.data_type" in resp["header"]["message"] and "text" in resp["header"]["message"]
    # with another broken rule in the same request, it is a validation failure (10107) naming both
    status, _, resp = demo.post("/v1/svcName", once_body("demo", TEXT, {"repeat": 9},
                                                         expect={"result": {"data_type": "image"}}))
    assert status == 400 and resp["header"]["code"] == 10107, resp
    assert "parameter.demo.repeat" in resp["header"]["message"] and "data_type" in resp["header"]["message"]
