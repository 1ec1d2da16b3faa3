"""Optional API keys: one check for HTTP headers and gRPC metadata.

The key goes in ``x-api-key: <key>`` or ``Authorization: Bearer <key>`` (HTTP header or gRPC
metadata alike); when both are sent, ``x-api-key`` is the one checked.  Errors name the header the
key came from, so a client sending the wrong one sees which was read.
"""
from __future__ import annotations

import hmac
from collections.abc import Callable

from aiges import errors

HOW = "send it in the x-api-key header (or Authorization: Bearer <key>)"


def given_key(header: Callable[[str], str]) -> tuple[str, str]:
    """(the key, the header it came from) out of ``header(name) -> value or ""``; ("", "") if none."""
    key = header("x-api-key")
    if key:
        return key, "x-api-key"
    authorization = header("authorization")
    if authorization[:7].lower() == "bearer ":
        return authorization[7:].strip(), "Authorization: Bearer"
    return "", ""


def verify(given: str, keys: tuple[str, ...], where: str = "x-api-key") -> None:
    """Raise Unauthorized unless ``given`` is one of ``keys`` (constant-time comparison)."""
    if not given:
        raise errors.Unauthorized(f"missing API key: {HOW}")
    if not any(hmac.compare_digest(given.encode(), k.encode()) for k in keys):
        raise errors.Unauthorized(f"wrong API key (read from the {where} header)")
