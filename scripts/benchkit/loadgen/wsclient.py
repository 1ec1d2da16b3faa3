"""A minimal WebSocket client for session load: the upgrade, text frames out, text and close frames in.

Why not aiohttp's client: hundreds of real-time sessions (thousands of frames a second) or ten
thousand idle ones from one Python process on a 2-core machine -- the client's own CPU and memory
must stay small beside the server's.  One ``asyncio.Protocol`` per connection, callbacks only, no
task per frame.  Frames out are masked with a zero key (RFC 6455 requires a mask, not a random one:
the bytes go out as they are, no XOR per frame); frames in are never fragmented by our server.
"""
from __future__ import annotations

import asyncio
import base64
import os
import struct
import time
from collections.abc import Callable
from typing import Any

ZERO_MASK = b"\x00\x00\x00\x00"
OP_TEXT, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x8, 0x9, 0xA


def frame(opcode: int, data: bytes) -> bytes:
    """One client frame (FIN set, masked with the zero key)."""
    n = len(data)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + ZERO_MASK + data


class WsConn(asyncio.Protocol):
    """One session's connection.  ``on_text(conn, data, now)`` gets each text frame with the time it
    was read; ``on_close(conn, code, reason)`` once, when the server closes or the connection is lost
    (code 1006 then)."""

    def __init__(self, host: str, port: int, path: str, on_text: Callable[[WsConn, bytes, float], None],
                 on_close: Callable[[WsConn, int, str], None]) -> None:
        self.request = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                        f"Connection: Upgrade\r\nSec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
                        "Sec-WebSocket-Version: 13\r\n\r\n").encode()
        self.on_text = on_text
        self.on_close = on_close
        self.transport: Any = None  # uvloop's transports are not asyncio.Transport subclasses
        self.buf = bytearray()
        self.upgraded: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed = False
        self.user: Any = None  # the load generator's per-session state

    # ---- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        buf = self.buf
        buf += data
        if not self.upgraded.done():
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buf[:12])
            del buf[:end + 4]
            if not status.startswith(b"HTTP/1.1 101"):
                self.upgraded.set_exception(ConnectionError(f"upgrade refused: {status.decode(errors='replace')}"))
                self.transport.close()
                return
            self.upgraded.set_result(None)
        pos, end = 0, len(buf)
        while end - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            n, at = b1 & 0x7F, pos + 2
            if n == 126:
                if end - at < 2:
                    break
                n, at = struct.unpack_from("!H", buf, at)[0], at + 2
            elif n == 127:
                if end - at < 8:
                    break
                n, at = struct.unpack_from("!Q", buf, at)[0], at + 8
            if end - at < n:
                break
            payload = bytes(buf[at:at + n])
            pos = at + n
            op = b0 & 0x0F
            if op == OP_TEXT:
                self.on_text(self, payload, now)
            elif op == OP_CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                self._closed(code, payload[2:].decode(errors="replace"))
                self.transport.write(frame(OP_CLOSE, payload[:2]))
                self.transport.close()
                break
            elif op == OP_PING:
                self.transport.write(frame(OP_PONG, payload))
        del buf[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.upgraded.done():
            self.upgraded.set_exception(ConnectionError(f"connection lost before the upgrade: {exc}"))
        self._closed(1006, str(exc or "connection lost"))

    # ---- use
    def _closed(self, code: int, reason: str) -> None:
        if not self.closed:
            self.closed = True
            self.on_close(self, code, reason)

    def send_text(self, data: bytes) -> None:
        if not self.closed and self.transport is not None:
            self.transport.write(frame(OP_TEXT, data))

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


async def connect(host: str, port: int, path: str, on_text: Callable[[WsConn, bytes, float], None],
                  on_close: Callable[[WsConn, int, str], None], timeout: float = 10.0) -> WsConn:
    """Open one connection and wait for its upgrade (raises ConnectionError / TimeoutError)."""
    loop = asyncio.get_running_loop()
    _, conn = await asyncio.wait_for(
        loop.create_connection(lambda: WsConn(host, port, path, on_text, on_close), host, port), timeout)
    await asyncio.wait_for(conn.upgraded, timeout)
    return conn
