"""Python client for an aiges loader: HTTP once inference and WebSocket streaming sessions.

Callers hand over plain Python values; the client builds upstream's envelope
(``header`` / ``parameter.<service>`` / ``payload``), sends it, and hands back decoded results.
Every failure the server reports (HTTP error body or WebSocket error frame) is raised as
:class:`ClientError` carrying ``code``, ``message``, ``sid`` and, for HTTP, the status.

Once (synchronous, stdlib ``http.client`` with a kept-alive connection)::

    from aiges.client import HttpClient, ClientError

    with HttpClient("http://127.0.0.1:1888/v1/svcName") as c:
        resp = c.once({"text": "hello"}, params={"mode": "upper"})
        print(resp["result"])          # 'HELLO' (text outputs are str, other types bytes)
        print(resp.sid, resp.outputs["result"].status)

Streaming session (asyncio, aiohttp)::

    import asyncio
    from aiges.client import StreamSession

    async def main() -> None:
        async with StreamSession("ws://127.0.0.1:1888/v1/svcName", params={"mode": "upper"}) as s:
            await s.send("text", "hello ", status=0)
            await s.send("text", "world", status=2)
            async for r in s.results():
                print(r.seq, r.status, r.text)

    asyncio.run(main())

Layout: the envelope codec (:func:`build_envelope`, :func:`decode_outputs`) and the value types
(:class:`Input`, :class:`Result`, :class:`OnceResponse`, :class:`ClientError`) are transport-free;
each transport (:class:`HttpClient`, :class:`StreamSession`, :class:`GrpcClient` for the public gRPC
API) is a thin adapter over them.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import http.client
import types
import urllib.parse
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = [
    "TRANSPORT_ERROR", "ClientError", "GrpcClient", "HttpClient", "Input", "OnceResponse", "Result", "StreamSession",
    "build_envelope", "decode_outputs", "service_from_url",
]

#: ``ClientError.code`` for failures the server did not report itself: connection refused or
#: lost, a body that is not an envelope, a session that ended without its final result.
TRANSPORT_ERROR = -1

DATA_FIELDS = ("text", "audio", "image", "video", "other")
ONCE, FIRST, CONTINUE, LAST = 3, 0, 1, 2


# ---------------------------------------------------------------- value types
class ClientError(Exception):
    """An error answer: ``code`` is the envelope's ``header.code`` (or :data:`TRANSPORT_ERROR`)."""

    def __init__(self, code: int, message: str, sid: str = "", http_status: int | None = None) -> None:
        super().__init__(f"[{code}] {message}" + (f" (sid {sid})" if sid else ""))
        self.code = code
        self.message = message
        self.sid = sid
        self.http_status = http_status


@dataclass(frozen=True)
class Input:
    """One payload item when a plain ``str``/``bytes`` is not enough.

    ``type`` names the envelope's data field (text, audio, image, video, other), which must match
    what the wrapper declares; ``attrs`` are extra payload attributes (``encoding``, ``format`` ...)
    that reach the wrapper in ``RequestData.desc``.
    """

    data: bytes | str
    type: str = "text"
    attrs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.type not in DATA_FIELDS:
            raise ValueError(f"Input.type must be one of {', '.join(DATA_FIELDS)}; got {self.type!r}")


InputValue = str | bytes | Input
#: an expect object: a data type name (``"text"``) or the full object (``{"data_type": "image", ...}``)
ExpectValue = str | Mapping[str, Any]


@dataclass(frozen=True)
class Result:
    """One decoded output: ``data`` is always the raw bytes; :attr:`value` is str for text."""

    key: str
    data: bytes
    type: str
    status: int
    seq: str
    attrs: Mapping[str, str] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return self.data.decode("utf-8")

    @property
    def value(self) -> str | bytes:
        if self.type == "text":
            try:
                return self.data.decode("utf-8")
            except UnicodeDecodeError:
                return self.data  # a text output that is not UTF-8: the bytes, never mangled
        return self.data


@dataclass(frozen=True)
class OnceResponse:
    """The answer to one once request; ``resp[key]`` is that output's :attr:`Result.value`."""

    sid: str
    status: int
    outputs: dict[str, Result]

    def __getitem__(self, key: str) -> str | bytes:
        return self.outputs[key].value

    def __contains__(self, key: object) -> bool:
        return key in self.outputs


# ---------------------------------------------------------------- envelope codec (no I/O)
def service_from_url(url: str) -> str:
    """``parameter.<service>`` defaults to the route's last segment: both ``/v1/<svcName>`` and
    ``/v1/private/<serviceId>`` end with a name the loader accepts for this service."""
    path = urllib.parse.urlsplit(url).path.rstrip("/")
    return path.rsplit("/", 1)[-1] or "svcName"


def _item(value: InputValue, status: int) -> dict[str, Any]:
    inp = value if isinstance(value, Input) else Input(value)
    data = inp.data.encode("utf-8") if isinstance(inp.data, str) else bytes(inp.data)
    item: dict[str, Any] = dict(inp.attrs)
    item[inp.type] = base64.b64encode(data).decode("ascii")
    item["status"] = status
    return item


def build_envelope(service: str, inputs: Mapping[str, InputValue], params: Mapping[str, Any] | None = None,
                   expect: Mapping[str, ExpectValue] | None = None, status: int = ONCE,
                   header: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Plain values → the request envelope (a dict ready for JSON).

    ``inputs``: payload key → ``str`` (sent as UTF-8 text), ``bytes`` (sent in the ``text`` field)
    or :class:`Input` for other data types and attributes.  ``params`` go under
    ``parameter.<service>`` as given (JSON numbers and booleans stay typed).  ``status`` is every
    item's payload status: 3 for once, 0/1/2 for session frames.
    """
    section: dict[str, Any] = dict(params or {})
    for key, exp in (expect or {}).items():
        section[key] = {"data_type": exp} if isinstance(exp, str) else dict(exp)
    hdr: dict[str, Any] = {"status": status}
    hdr.update(header or {})
    return {"header": hdr, "parameter": {service: section},
            "payload": {k: _item(v, status) for k, v in inputs.items()}}


def _b64(value: str, where: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ClientError(TRANSPORT_ERROR, f"{where}: invalid base64 from the server ({e})") from None


def decode_outputs(payload: Mapping[str, Any] | None, text_raw: bool) -> list[Result]:
    """The response envelope's ``payload`` → results.  ``text_raw``: text data is plain (HTTP once)
    rather than base64 (WebSocket frames encode every type, as upstream)."""
    out: list[Result] = []
    for key, item in (payload or {}).items():
        if not isinstance(item, dict):
            raise ClientError(TRANSPORT_ERROR, f"payload.{key}: expected an object, got {type(item).__name__}")
        kind = next((name for name in DATA_FIELDS if name in item), None)
        if kind is None:
            raise ClientError(TRANSPORT_ERROR, f"payload.{key}: no data field in the server's answer")
        raw = item[kind]
        attrs = {k: str(v) for k, v in item.items() if k not in (kind, "seq", "status")}
        if not isinstance(raw, str):  # format=json in a WebSocket frame: the JSON itself, embedded
            data = orjson.dumps(raw)
        elif kind == "text" and text_raw and attrs.get("encoding") != "base64":
            data = str(raw).encode("utf-8")
        else:
            # the loader labels a non-UTF-8 text output with encoding=base64 instead of mangling it
            data = _b64(str(raw), f"payload.{key}.{kind}")
        try:
            status = int(item.get("status", ONCE))
        except (TypeError, ValueError):
            status = ONCE
        out.append(Result(key=key, data=data, type=kind, status=status, seq=str(item.get("seq", "")), attrs=attrs))
    return out


def _header(doc: Any) -> dict[str, Any]:
    if not isinstance(doc, dict) or not isinstance(doc.get("header"), dict):
        raise ClientError(TRANSPORT_ERROR, f"the server's answer is not an envelope: {str(doc)[:200]!r}")
    header: dict[str, Any] = doc["header"]
    return header


def _code(header: Mapping[str, Any]) -> int:
    try:
        return int(header.get("code", 0))
    except (TypeError, ValueError):
        return TRANSPORT_ERROR


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


# ---------------------------------------------------------------- WebSocket sessions
class StreamSession:
    """One streaming session over a WebSocket (asyncio, aiohttp).

    ``url``: the inference route (``ws://`` or ``http://``; the latter is switched to ``ws://``).
    ``params`` and ``expect`` go with the first frame (the one that creates the session);
    :meth:`send` may add parameters to later frames.  :meth:`results` yields each pushed output
    as a :class:`Result` (data decoded to bytes) and ends after the final result (status 2);
    an error frame raises :class:`ClientError`.  ``timeout``: seconds to wait for any one server
    frame before giving up.
    """

    def __init__(self, url: str, params: Mapping[str, Any] | None = None, service: str | None = None,
                 expect: Mapping[str, ExpectValue] | None = None, api_key: str | None = None,
                 timeout: float = 60.0, header: Mapping[str, Any] | None = None) -> None:
        parts = urllib.parse.urlsplit(url)
        scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
        if scheme not in ("ws", "wss"):
            raise ValueError(f"StreamSession needs a ws(s):// or http(s):// URL, got {url!r}")
        self.url = urllib.parse.urlunsplit((scheme,) + tuple(parts[1:]))
        self.service = service or service_from_url(url)
        self.params = dict(params or {})
        self.expect = dict(expect or {})
        self.header = dict(header or {})
        self.timeout = timeout
        self.sid = ""
        self._headers = {"x-api-key": api_key} if api_key else {}
        self._http: Any = None  # aiohttp.ClientSession (imported lazily: sync users need no aiohttp)
        self._ws: Any = None
        self._frames_sent = 0
        self._finished = False

    async def __aenter__(self) -> StreamSession:
        await self.connect()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: types.TracebackType | None) -> None:
        await self.close()

    async def connect(self) -> None:
        import aiohttp

        self._http = aiohttp.ClientSession()
        try:
            self._ws = await self._http.ws_connect(self.url, headers=self._headers, autoping=True,
                                                   max_msg_size=0)
        except aiohttp.WSServerHandshakeError as e:
            await self.close()
            raise ClientError(TRANSPORT_ERROR, f"WebSocket upgrade of {self.url} refused: HTTP {e.status} "
                                               f"{e.message}", http_status=e.status) from None
        except (aiohttp.ClientError, OSError) as e:
            await self.close()
            raise ClientError(TRANSPORT_ERROR, f"cannot connect to {self.url}: {e}") from None

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
            self._ws = None
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def send(self, key: str, data: InputValue, status: int = CONTINUE,
                   params: Mapping[str, Any] | None = None) -> None:
        """Send one frame with one input: status 0 first, 1 continue, 2 last.  ``params`` are
        added to this frame's ``parameter.<service>`` (the first frame carries the session's)."""
        await self.send_many({key: data}, status, params)

    async def send_many(self, inputs: Mapping[str, InputValue], status: int = CONTINUE,
                        params: Mapping[str, Any] | None = None) -> None:
        """Send one frame carrying several inputs at the same status."""
        if self._ws is None:
            raise ClientError(TRANSPORT_ERROR, "the session is not connected (use `async with StreamSession(...)`)")
        first = self._frames_sent == 0
        frame_params = dict(self.params) if first else {}
        frame_params.update(params or {})
        doc = build_envelope(self.service, inputs, frame_params, self.expect if first else None, status,
                             self.header if first else None)
        try:
            await self._ws.send_str(orjson.dumps(doc).decode())
        except (ConnectionError, RuntimeError) as e:
            raise ClientError(TRANSPORT_ERROR, f"session {self.sid or '?'}: cannot send: {e}", self.sid) from None
        self._frames_sent += 1

    async def results(self) -> AsyncIterator[Result]:
        """Yield results as the server pushes them; stops after the final one (status 2 or 3)."""
        import aiohttp

        if self._ws is None:
            raise ClientError(TRANSPORT_ERROR, "the session is not connected (use `async with StreamSession(...)`)")
        while not self._finished:
            try:
                msg = await self._ws.receive(timeout=self.timeout)
            except asyncio.TimeoutError:  # TimeoutError itself from Python 3.11 on
                raise ClientError(TRANSPORT_ERROR, f"no frame from the server for {self.timeout:g}s",
                                  self.sid) from None
            if msg.type == aiohttp.WSMsgType.TEXT:
                for r in self._frame(msg.data):
                    yield r
            elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                raise ClientError(TRANSPORT_ERROR, "the server closed the session before its final result "
                                                   f"(close code {self._ws.close_code})", self.sid)
            elif msg.type == aiohttp.WSMsgType.ERROR:
                raise ClientError(TRANSPORT_ERROR, f"WebSocket error: {self._ws.exception()}", self.sid)
            # BINARY: not part of the protocol; ignored rather than guessed at

    def _frame(self, text: str) -> list[Result]:
        try:
            doc = orjson.loads(text)
        except orjson.JSONDecodeError:
            raise ClientError(TRANSPORT_ERROR, f"server frame is not JSON: {text[:200]!r}", self.sid) from None
        hdr = _header(doc)
        self.sid = str(hdr.get("sid") or self.sid)
        code = _code(hdr)
        if code != 0:
            self._finished = True
            raise ClientError(code, str(hdr.get("message", "")), self.sid)
        payload = doc.get("payload")
        if not payload:  # the ack of the first frame: it carries the sid, no results
            return []
        out = decode_outputs(payload, text_raw=False)
        try:
            if int(hdr.get("status", CONTINUE)) in (LAST, ONCE):
                self._finished = True
        except (TypeError, ValueError):
            pass
        return out


# ---------------------------------------------------------------- gRPC (public API, aiges.api.Aiges)
class GrpcClient:
    """Synchronous client of the loader's public gRPC API (``[<svcName>] host:port``).

    The same envelope as HTTP travels in ``aiges.api.Envelope``; errors raise :class:`ClientError`
    with the aiges code from the call's trailing metadata::

        with GrpcClient("127.0.0.1:5090", service="demo") as c:
            print(c.once({"text": "hi"})["result"])                  # 'HI'
            for r in c.stream([({"text": "a"}, 0), ({"text": "b"}, 2)]):
                print(r.status, r.text)
    """

    def __init__(self, target: str, service: str = "svcName", api_key: str | None = None,
                 timeout: float = 60.0) -> None:
        import grpc

        from aiges._pb import aiges_api_pb2, aiges_api_pb2_grpc

        self._grpc = grpc
        self._pb = aiges_api_pb2
        self.service = service
        self.timeout = timeout
        self._channel = grpc.insecure_channel(target)
        self._stub = aiges_api_pb2_grpc.AigesStub(self._channel)
        self._metadata = (("x-api-key", api_key),) if api_key else ()

    def __enter__(self) -> GrpcClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _error(self, e: Any) -> ClientError:
        md = dict(e.trailing_metadata() or ())
        try:
            code = int(md.get("aiges-code", TRANSPORT_ERROR))
        except ValueError:
            code = TRANSPORT_ERROR
        return ClientError(code, f"{e.details()}" if code != TRANSPORT_ERROR else f"{e.code().name}: {e.details()}",
                           str(md.get("aiges-sid", "")))

    def once(self, inputs: Mapping[str, InputValue], params: Mapping[str, Any] | None = None,
             expect: Mapping[str, ExpectValue] | None = None, header: Mapping[str, Any] | None = None,
             deadline: float | None = None) -> OnceResponse:
        env = self._pb.Envelope(json=orjson.dumps(build_envelope(self.service, inputs, params, expect, ONCE,
                                                                 header)).decode())
        try:
            reply = self._stub.Once(env, timeout=deadline or self.timeout, metadata=self._metadata)
        except self._grpc.RpcError as e:
            raise self._error(e) from None
        hdr = _header(doc := orjson.loads(reply.json))
        outputs = decode_outputs(doc.get("payload"), text_raw=True)
        return OnceResponse(sid=str(hdr.get("sid", "")), status=int(hdr.get("status", ONCE)),
                            outputs={r.key: r for r in outputs})

    def stream(self, frames: Iterable[tuple[Mapping[str, InputValue], int]],
               params: Mapping[str, Any] | None = None) -> Iterator[Result]:
        """A session: ``frames`` yields ``(inputs, status)`` pairs (status 0 first, 1, 2 last);
        results are yielded as the server pushes them; an error frame raises ClientError."""
        def requests() -> Any:
            first = True
            for inputs, status in frames:
                doc = build_envelope(self.service, inputs, params if first else None, None, status)
                first = False
                yield self._pb.Envelope(json=orjson.dumps(doc).decode())

        try:
            for reply in self._stub.Stream(requests(), timeout=self.timeout, metadata=self._metadata):
                doc = orjson.loads(reply.json)
                hdr = _header(doc)
                code = _code(hdr)
                if code != 0:
                    raise ClientError(code, str(hdr.get("message", "")), str(hdr.get("sid", "")))
                if doc.get("payload"):
                    yield from decode_outputs(doc["payload"], text_raw=False)
        except self._grpc.RpcError as e:
            raise self._error(e) from None
