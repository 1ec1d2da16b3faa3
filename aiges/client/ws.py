"""``StreamSession``: a streaming session over WebSocket (asyncio, aiohttp)."""
from __future__ import annotations

import asyncio
import base64
import os
import types
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson

from aiges.client.codec import (
    CONTINUE,
    LAST,
    ONCE,
    TRANSPORT_ERROR,
    ClientError,
    ExpectValue,
    InputValue,
    Result,
    _code,
    _header,
    build_envelope,
    decode_outputs,
    service_from_url,
)


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
            error = await self._refusal(e.status, e.message)
            await self.close()
            raise error from None
        except (aiohttp.ClientError, OSError) as e:
            await self.close()
            raise ClientError(TRANSPORT_ERROR, f"cannot connect to {self.url}: {e}") from None

    async def _refusal(self, status: int, reason: str) -> ClientError:
        """The server's own error (code, message, sid) for a refused upgrade: aiohttp drops the
        answer's body, so the same upgrade request is sent once more as a plain request that reads
        it.  An answer that is not an error envelope gives the HTTP status alone."""
        import aiohttp

        headers = dict(self._headers, Upgrade="websocket", Connection="Upgrade", **{
            "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode()})
        url = "http" + self.url[2:]  # ws:// -> http://, wss:// -> https://
        try:
            async with self._http.get(url, headers=headers, allow_redirects=False,
                                      timeout=aiohttp.ClientTimeout(total=self.timeout)) as r:
                hdr = _header(orjson.loads(await r.read())) if r.status == status else None
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError, orjson.JSONDecodeError, ClientError):
            hdr = None
        if hdr is not None and _code(hdr) not in (0, TRANSPORT_ERROR):
            return ClientError(_code(hdr), str(hdr.get("message", "")), str(hdr.get("sid", "")), http_status=status)
        return ClientError(TRANSPORT_ERROR, f"WebSocket upgrade of {self.url} refused: HTTP {status} {reason}",
                           http_status=status)

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


