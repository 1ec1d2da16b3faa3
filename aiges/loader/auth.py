"""Optional API keys: one check for HTTP headers and gRPC metadata.

The key goes in ``x-api-key: <key>`` or ``Authorization: Bearer <key>`` (HTTP header or gRPC
metadata alike); when both are sent, ``x-api-key`` is the one checked.  Errors name the header the
key came from, so a client sending the wrong one sees which was read.
"""
from __future__ import annotations

import hmac
import logging
from collections.abc import Callable

from aiges import errors
from aiges.config import ConfigError, Settings, read_api_keys_file

logger = logging.getLogger("aiges.loader")

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


class ApiKeys:
    """The keys in force: ``[auth] apiKeys`` / ``AIGES_API_KEYS`` plus those of the keys file,
    which ``reload`` (SIGHUP) reads again.  Swapping one tuple is atomic for the event loop, so a
    request is checked against the old keys or the new ones, never against none."""

    def __init__(self, settings: Settings) -> None:
        self._fixed = settings.api_keys
        self.file = settings.api_keys_file
        self.keys = tuple(dict.fromkeys(settings.api_keys + settings.file_api_keys))

    def reload(self) -> None:
        if not self.file:
            logger.info("SIGHUP: no API keys file to reload ([auth] apiKeysFile / AIGES_API_KEYS_FILE)")
            return
        try:
            from_file = read_api_keys_file(self.file, "SIGHUP")
        except ConfigError as e:  # a half-written or removed file keeps the keys that work
            logger.error("%s; the %d key(s) in force are kept", e, len(self.keys))
            return
        self.keys = tuple(dict.fromkeys(self._fixed + from_file))
        logger.info("SIGHUP: %d API key(s) in force (%d from %s)", len(self.keys), len(from_file), self.file)
