"""Optional API keys: one check for HTTP (``x-api-key`` / ``Authorization: Bearer``) and gRPC metadata."""
from __future__ import annotations

import hmac
import logging

from aiges import errors
from aiges.config import ConfigError, Settings, read_api_keys_file

logger = logging.getLogger("aiges.loader")


def verify(given: str, keys: tuple[str, ...]) -> None:
    """Raise Unauthorized unless ``given`` is one of ``keys`` (constant-time comparison)."""
    if not given:
        raise errors.Unauthorized("missing API key: send it in the x-api-key header")
    if not any(hmac.compare_digest(given.encode(), k.encode()) for k in keys):
        raise errors.Unauthorized("wrong API key (x-api-key header)")


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
