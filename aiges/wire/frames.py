"""Frames of the loader<->plugin lane (``aiges.plugin.lane``, ``aiges.loader.workers.lane``): pure, shared.

Every frame is a fixed little-endian head and a serialised protobuf message of the plugin proto
(``aiges.Request`` one way, ``aiges.Response`` the other), so nothing about the payload is new:

    REQUEST   u32 length, u64 id, f64 timeout seconds (0 = none)       + Request bytes
    RESPONSE  u32 length, u64 id, u16 batch size (0 = not a batch head) + Response bytes

``length`` counts the message bytes after the head.
"""
from __future__ import annotations

import struct

REQUEST_HEAD = struct.Struct("<IQd")
RESPONSE_HEAD = struct.Struct("<IQH")
MAX_BATCH_FIELD = 0xFFFF


def request_frame(rid: int, timeout: float | None, message: bytes) -> bytes:
    return REQUEST_HEAD.pack(len(message), rid, timeout or 0.0) + message


def response_frame(rid: int, batch: int, message: bytes) -> bytes:
    return RESPONSE_HEAD.pack(len(message), rid, min(batch, MAX_BATCH_FIELD)) + message
