"""Optional API keys: one check for HTTP (``x-api-key`` / ``Authorization: Bearer``) and gRPC metadata."""
from __future__ import annotations

import hmac

from aiges import errors


def verify(given: str, keys: tuple[str, ...]) -> None:
    """Raise Unauthorized unless ``given`` is one of ``keys`` (constant-time comparison)."""
    if not given:
        raise errors.Unauthorized("missing API key: send it in the x-api-key header")
    if not any(hmac.compare_digest(given.encode(), k.encode()) for k in keys):
        raise errors.Unauthorized("wrong API key (x-api-key header)")
