"""Data classes a wrapper receives and returns, upstream-compatible (``from aiges.sdk.dto import ...``).

Fixed upstream bugs, callers unchanged:
- ``ResponseData(data=..., length=...)`` keeps its data (upstream silently dropped both);
- ``ResponseData.data`` may also be assigned directly (``len`` follows);
- ``setDataType`` accepts OTHER (4) as the proto does;
- ``response_err(code, message)`` may carry the request's own message (upstream: the code only);
- ``Response()`` still starts with one placeholder item, as upstream (``res.list[0].key = ...``
  works), but a placeholder that was never filled in is dropped before it reaches a client.
"""
from __future__ import annotations

import json
import queue
from typing import Any

from aiges.sdk.types import DataOnce, DataOther, DataText, Once


def _as_bytes(data: Any) -> bytes:
    if data is None:
        return b""
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    if isinstance(data, str):
        return data.encode("utf-8")
    raise TypeError(f"response data must be bytes or str, got {type(data).__name__}")


class DataListNode:
    """One input item (upstream passes protobuf RequestData objects with the same attributes)."""

    def __init__(self) -> None:
        self.key = ""
        self.data: bytes = b""
        self.status = Once
        self.len = 0
        self.type = DataText
        self.desc: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"DataListNode(key={self.key!r}, type={self.type}, status={self.status}, len={self.len})"


class DataListCls:
    """The list of input items of one request or frame; ``get(key)`` returns the first match."""

    def __init__(self, list: Any = None, params: dict[str, str] | None = None) -> None:  # noqa: A002
        self.list = [] if list is None else list
        # aiges addition: in a session, the params sent with this frame (upstream dropped them)
        self.params: dict[str, str] = params or {}

    def get(self, key: str) -> Any:
        for item in self.list:
            if item.key == key:
                return item
        return None


class ResponseData:
    """One output item: key, data (bytes), type (0 text .. 4 other), status (0..3), desc attrs."""

    def __init__(self, key: str = "", data: Any = b"", length: int = 0, type: int = DataText,  # noqa: A002
                 status: int = Once) -> None:
        self.key = key
        self._data = _as_bytes(data)
        self._len = len(self._data) if self._data or not length else int(length)
        self.type = type
        self.status = status
        self.desc: dict[str, str] = {}
        self._touched = bool(key) or bool(self._data)

    @property
    def data(self) -> bytes:
        return self._data

    @data.setter
    def data(self, value: Any) -> None:
        self.setData(value)

    @property
    def len(self) -> int:
        return self._len

    @len.setter
    def len(self, value: int) -> None:
        # upstream examples assign len (read-only upstream, so they crashed); the data's real length
        # is what goes on the wire either way
        self._len = int(value)

    def setData(self, data: Any) -> None:
        self._data = _as_bytes(data)
        self._len = len(self._data)
        self._touched = True

    def setDataType(self, t: int) -> None:
        if t not in (0, 1, 2, 3, DataOther):
            raise ValueError(f"data type must be 0 text, 1 audio, 2 image, 3 video or 4 other; got {t!r}")
        self.type = t

    def is_placeholder(self) -> bool:
        """True for the empty item ``Response()`` pre-fills and nobody filled in."""
        return not self._touched and not self.key and not self._data

    def toJSON(self) -> str:
        return json.dumps({"key": self.key, "len": self._len, "type": self.type, "status": self.status})

    def __repr__(self) -> str:
        return f"ResponseData(key={self.key!r}, type={self.type}, status={self.status}, len={self._len})"


class Response:
    """What ``wrapperOnceExec`` / ``wrapperRead`` return and ``callback`` sends."""

    def __init__(self) -> None:
        self.list: list[ResponseData] = [ResponseData()]
        self.error_code = 0
        self.error_message = ""

    def response_err(self, code: int, message: str = "") -> Response:
        """Fail this request with ``code``.  ``message`` (aiges addition) is this request's own
        error text, e.g. which field of the input was wrong; without it the client gets
        ``wrapperError(code)``, as upstream.  A code of the engine's request-error family
        (``aiges.errors.CLIENT_ERROR_CODES``: 10000, 10001, 10009, 10107) answers HTTP 400,
        any other code ``[aiges] wrapperErrorStatus`` (500)."""
        self.error_code = code
        self.error_message = str(message) if message else ""
        return self

    def toJSON(self) -> str:
        return json.dumps({"error_code": self.error_code, "list": [json.loads(d.toJSON()) for d in self.list]})


class SessionCreateResponse:
    """What ``wrapperCreate`` returns: the session handle and an error code (0 = ok)."""

    def __init__(self, handle: str = "", error_code: int = 0) -> None:
        self.handle = handle
        self.error_code = error_code


# Local stream debugging (``Wrapper().run(stream=True)``), as upstream: results land in a queue.
result_Queue: queue.Queue[Any] | None = None


def init_rq() -> queue.Queue[Any]:
    global result_Queue
    result_Queue = queue.Queue()
    return result_Queue


def callback(r: Any, sid: str = "") -> None:
    """Upstream's local-test callback ``callback(resp, sid)``."""
    q = result_Queue if result_Queue is not None else init_rq()
    q.put(r)


__all__ = ["DataListNode", "DataListCls", "ResponseData", "Response", "SessionCreateResponse",
           "callback", "init_rq", "DataOnce"]
