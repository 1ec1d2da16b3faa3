"""Pure conversions between the wrapper SDK's objects and the plugin proto messages."""
from __future__ import annotations

import os
import traceback
from collections.abc import Callable
from typing import Any

from aiges import errors
from aiges.wire.pb import aiges_inner_pb2 as pb


def _bytes(data: Any) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    if data is None:
        return b""
    raise TypeError(f"output data must be bytes or str, got {type(data).__name__}")


def _is_placeholder(item: Any) -> bool:
    check = getattr(item, "is_placeholder", None)
    return bool(check()) if callable(check) else False


def response_items(user_resp: Any) -> list[pb.ResponseData]:
    """The non-placeholder items of a wrapper ``Response`` as proto ``ResponseData`` (type kept)."""
    out = []
    for item in getattr(user_resp, "list", None) or []:
        if _is_placeholder(item):
            continue
        data = _bytes(getattr(item, "data", b""))
        desc = getattr(item, "desc", None) or {}
        out.append(pb.ResponseData(
            key=str(getattr(item, "key", "")), data=data, len=len(data),
            type=int(getattr(item, "type", 0) or 0), status=int(getattr(item, "status", 3)),
            desc={str(k): str(v) for k, v in dict(desc).items()}))
    return out


def to_response(user_resp: Any, tag: str, method: str, error_text: Callable[[int], str]) -> pb.Response:
    """Turn what a wrapper method returned into a proto ``Response``; failures get ``ret`` + ``msg``.

    ``error_text(code)`` asks the wrapper's ``wrapperError`` for the message of ``response_err(code)``
    unless the wrapper gave this response its own (``response_err(code, message)``).
    """
    if user_resp is None:
        return pb.Response(tag=tag, ret=errors.WRAPPER_EXEC,
                           msg=f"{method} returned None; return an aiges.dto.Response")
    if not hasattr(user_resp, "list"):
        return pb.Response(tag=tag, ret=errors.WRAPPER_EXEC,
                           msg=f"{method} returned {type(user_resp).__name__}; return an aiges.dto.Response")
    code = int(getattr(user_resp, "error_code", 0) or 0)
    if code:
        # response_err(code, message): the request's own message wins over wrapperError(code)
        own = str(getattr(user_resp, "error_message", "") or "")
        return pb.Response(tag=tag, ret=code, msg=own or error_text(code))
    try:
        items = response_items(user_resp)
    except (TypeError, ValueError) as e:
        return pb.Response(tag=tag, ret=errors.WRAPPER_EXEC, msg=f"{method} returned an invalid item: {e}")
    if not items:
        return pb.Response(tag=tag, ret=errors.WRAPPER_EXEC,
                           msg=f"{method} returned an empty Response.list; add a ResponseData or use response_err(code)")
    return pb.Response(tag=tag, ret=0, list=items)


def describe_exception(exc: BaseException) -> str:
    """``KeyError: 'x' (wrapper.py:42)``: with the innermost frame, file name only (enough to find
    the line, without showing the server's paths to clients)."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" ({os.path.basename(frames[-1].filename)}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


def exception_text(method: str, exc: BaseException) -> str:
    return f"{method} raised {describe_exception(exc)}"
