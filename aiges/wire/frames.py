"""Frames of the loader<->plugin lane (``aiges.plugin.lane``, ``aiges.loader.workers.lane``): pure, shared.

Every frame is a fixed little-endian head and a serialised protobuf message of the plugin proto,
so nothing about the payloads is new; the head's ``kind`` says which message and what to do:

    loader -> plugin   u32 length, u8 kind, u64 id, f64 timeout seconds (0 = none)  + message
        ONCE       id: request        aiges.Request          answered by an ANSWER (aiges.Response)
        CREATE     id: request        aiges.CreateRequest    answered by an ANSWER (aiges.Handle); the
                   id is also the session's number: its results come back as RESULTs with this id
        WRITE      id: session        aiges.WriteMessage     not answered (a failed write is a RESULT with ret)
        WRITE_ACK  id: session        aiges.WriteMessage     the same, then an ACKED once the write returned
        DESTROY    id: request        aiges.Handle           answered by an ANSWER (aiges.Ret) once destroyed

    plugin -> loader   u32 length, u8 kind, u64 id, u16 batch size (0 = not a batch head) + message
        ANSWER     id: request        the answer to ONCE, CREATE or DESTROY
        RESULT     id: session        aiges.Response: a session's result (callback or wrapperRead) or error
        ACKED      id: session        (no message) that WRITE_ACK and every write before it have returned

``length`` counts the message bytes after the head.
"""
from __future__ import annotations

import struct

REQUEST_HEAD = struct.Struct("<IBQd")
RESPONSE_HEAD = struct.Struct("<IBQH")
MAX_BATCH_FIELD = 0xFFFF

ONCE, CREATE, WRITE, WRITE_ACK, DESTROY = 0, 1, 2, 3, 4  # loader -> plugin
ANSWER, RESULT, ACKED = 0, 1, 2  # plugin -> loader


def request_frame(kind: int, rid: int, timeout: float | None, message: bytes) -> bytes:
    return REQUEST_HEAD.pack(len(message), kind, rid, timeout or 0.0) + message


def response_frame(kind: int, rid: int, batch: int, message: bytes) -> bytes:
    return RESPONSE_HEAD.pack(len(message), kind, rid, min(batch, MAX_BATCH_FIELD)) + message
