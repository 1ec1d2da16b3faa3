"""``HttpClient``: once inference over HTTP (stdlib ``http.client``, a kept-alive connection)."""
from __future__ import annotations

import http.client
import urllib.parse
from collections.abc import Mapping
from typing import Any

import orjson

from aiges.client.codec import (
    ONCE,
    TRANSPORT_ERROR,
    ClientError,
    ExpectValue,
    InputValue,
    OnceResponse,
    _code,
    build_envelope,
    decode_outputs,
    service_from_url,
)


# ---------------------------------------------------------------- HTTP once
class HttpClient:
    """Synchronous once client for ``POST <url>``; one kept-alive connection, not thread-safe
    (use one client per thread).

    ``url`` is the inference route, e.g. ``http://127.0.0.1:1888/v1/svcName`` or
    ``.../v1/private/demo``; ``service`` (default: the route's last segment) names the
    ``parameter.<service>`` section.  ``api_key`` is sent as ``x-api-key``.
    """

    def __init__(self, url: str, service: str | None = None, api_key: str | None = None,
                 timeout: float = 60.0) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"HttpClient needs an http(s)://host:port/route URL, got {url!r}")
        self.url = url
        self.service = service or service_from_url(url)
        self.timeout = timeout
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key:
            self._headers["x-api-key"] = api_key
        self._conn: http.client.HTTPConnection | None = None

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connect(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = cls(self._host, self._port, timeout=self.timeout)
        return self._conn

    def once(self, inputs: Mapping[str, InputValue], params: Mapping[str, Any] | None = None,
             expect: Mapping[str, ExpectValue] | None = None, header: Mapping[str, Any] | None = None,
             deadline: float | None = None) -> OnceResponse:
        """One inference.  ``deadline`` (seconds) sets this request's ``X-Aiges-Deadline``."""
        body = orjson.dumps(build_envelope(self.service, inputs, params, expect, ONCE, header))
        headers = dict(self._headers)
        if deadline is not None:
            headers["X-Aiges-Deadline"] = f"{deadline:g}"
        status, raw = self._post(body, headers)
        try:
            doc = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            doc = None
        if not isinstance(doc, dict) or not isinstance(doc.get("header"), dict):
            raise ClientError(TRANSPORT_ERROR, f"HTTP {status}: the answer is not an envelope: {raw[:200]!r}",
                              http_status=status)
        hdr = doc["header"]
        code, sid = _code(hdr), str(hdr.get("sid", ""))
        if status >= 400 or code != 0:
            raise ClientError(code if code else TRANSPORT_ERROR, str(hdr.get("message") or f"HTTP {status}"),
                              sid, status)
        outputs = decode_outputs(doc.get("payload"), text_raw=True)
        return OnceResponse(sid=sid, status=int(hdr.get("status", ONCE)), outputs={r.key: r for r in outputs})

    def _post(self, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        # A kept-alive connection the server has since closed fails on first use; retry that once
        # on a fresh connection (nothing reached the server), as urllib3 does.
        for attempt in (0, 1):
            reused = self._conn is not None
            conn = self._connect()
            try:
                conn.request("POST", self._path, body, headers)
                resp = conn.getresponse()
                raw = resp.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as e:
                self.close()
                if reused and attempt == 0:
                    continue
                raise ClientError(TRANSPORT_ERROR, f"POST {self.url}: connection lost ({e})") from None
            except (OSError, http.client.HTTPException) as e:
                self.close()
                raise ClientError(TRANSPORT_ERROR, f"POST {self.url}: {e}") from None
            if resp.will_close:
                self.close()
            return resp.status, raw
        raise AssertionError("unreachable")


