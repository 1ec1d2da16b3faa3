"""The client's transport-free part: value types, errors and the envelope codec."""
from __future__ import annotations

import base64
import binascii
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

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


