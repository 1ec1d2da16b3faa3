"""Error codes and the one error family of aiges.

Upstream's plugin codes (``OK``, ``INIT_ERROR`` ...) keep their names and values so wrappers that
import them keep working.  ``AigesError`` and its subclasses are what the loader raises; each
knows its upstream-style ``code``; ``STATUS`` is the one table that maps a class to its HTTP and
gRPC status.  Transports never catch error classes one by one: they call ``http_status`` /
``grpc_status`` on whatever ``AigesError`` reached them.
"""
from __future__ import annotations

import grpc

# ---- upstream plugin ret codes (aiges/errors.py upstream) ----
OK = 0
INIT_ERROR = 30001  # exception while importing / instantiating / initialising the wrapper
USER_INIT_ERROR = 30002  # the wrapper's wrapperInit returned non-zero
USER_EXEC_ERROR = 30003  # no wrapper object

# ---- engine codes (upstream frame/error.go and httproto/common/error.go) ----
JSON_INVALID = 10000  # body is not JSON
CONVERT_FAILED = 10001  # bad base64, unsupported payload value type
INVALID_DATA = 10009  # envelope shape wrong / no input data
HTTP_DOWNLOAD_FAILED = 10011
DEADLINE = 10102  # once exec timeout
OUTPUT_INVALID = 10106  # output key or type differs from the expect object
INVALID_PARAM = 10107  # schema validation: required / type / enum / range
OVERLOADED = 10110  # "service license not enough": concurrency / queue full
SESSION_TIMEOUT = 10114
WS_BAD_JSON = 10163  # WebSocket frame is not a valid request JSON
WRAPPER_EXEC = 10909  # wrapper raised or returned nothing
WRAPPER_CREATE = 10905
WRAPPER_WRITE = 10907
WRAPPER_READ = 10908

# ---- aiges's own codes (no upstream equivalent; kept out of upstream's ranges) ----
UNAUTHORIZED = 12401
NOT_FOUND = 12404
METHOD_NOT_ALLOWED = 12405
BODY_TOO_LARGE = 12413
WORKER_UNAVAILABLE = 12503  # plugin worker down, restarting or not ready
INTERNAL = 12500
SESSION_NOT_FOUND = 12410
SHUTTING_DOWN = 12504
REQUEST_TIMEOUT = 12408  # a request's headers or body did not arrive in time ([aiges] headerTimeout / bodyTimeout)
UNSUPPORTED_MEDIA_TYPE = 12415
EXPECTATION_FAILED = 12417


class AigesError(Exception):
    """Base of every error a client can see.  ``code`` is the envelope's header.code."""

    code: int = INTERNAL
    #: set per instance when configuration overrides the table (e.g. [aiges] wrapperErrorStatus)
    http_override: int | None = None

    def __init__(self, message: str, code: int | None = None, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.retry_after = retry_after

    def __str__(self) -> str:
        return self.message


class BadRequest(AigesError):
    """The request is malformed: bad JSON, bad base64, wrong envelope, failed validation."""

    code = INVALID_DATA


class Unauthorized(AigesError):
    code = UNAUTHORIZED


class NotFound(AigesError):
    code = NOT_FOUND


class MethodNotAllowed(AigesError):
    code = METHOD_NOT_ALLOWED


class BodyTooLarge(AigesError):
    code = BODY_TOO_LARGE


class Overloaded(AigesError):
    code = OVERLOADED


class WrapperFailed(AigesError):
    """The wrapper answered with an error: raised, returned nothing, or response_err(N)."""

    code = WRAPPER_EXEC


class WrapperRejected(BadRequest):
    """The wrapper refused the request as invalid: ``response_err(N)`` with N in
    ``CLIENT_ERROR_CODES``.  A 400, like the engine's own validation, whatever
    ``[aiges] wrapperErrorStatus`` says (that status is for the wrapper's own failures)."""

    code = INVALID_PARAM


class OutputInvalid(AigesError):
    code = OUTPUT_INVALID


class WorkerUnavailable(AigesError):
    code = WORKER_UNAVAILABLE


class DeadlineExceeded(AigesError):
    code = DEADLINE


class SessionTimeout(AigesError):
    code = SESSION_TIMEOUT


class InternalError(AigesError):
    code = INTERNAL


class RequestTimeout(AigesError):
    """The client was too slow: its request's headers or body did not arrive in time."""

    code = REQUEST_TIMEOUT


class TooManyConnections(Overloaded):
    """The listener is at [aiges] maxConnections and no connection could make room (503, not 429:
    it is the server that is full, not this client that sends too much)."""


class UnsupportedMediaType(AigesError):
    code = UNSUPPORTED_MEDIA_TYPE


class ExpectationFailed(AigesError):
    code = EXPECTATION_FAILED


# Codes that say "the request is wrong", the ones the engine answers with 400 itself.  A wrapper
# that checks what the declared fields cannot (the content of a JSON payload, say) returns one of
# them -- ``Response().response_err(errors.INVALID_PARAM, "age: expected a number")`` -- and the
# client gets 400 with that code and message (WrapperRejected) instead of a 500 blaming the wrapper.
CLIENT_ERROR_CODES = frozenset({JSON_INVALID, CONVERT_FAILED, INVALID_DATA, INVALID_PARAM})


# The one table: error class -> (HTTP status, gRPC status).  Subclasses inherit via the MRO.
STATUS: dict[type, tuple[int, grpc.StatusCode]] = {
    BadRequest: (400, grpc.StatusCode.INVALID_ARGUMENT),
    Unauthorized: (401, grpc.StatusCode.UNAUTHENTICATED),
    NotFound: (404, grpc.StatusCode.NOT_FOUND),
    MethodNotAllowed: (405, grpc.StatusCode.UNIMPLEMENTED),
    SessionTimeout: (408, grpc.StatusCode.DEADLINE_EXCEEDED),
    RequestTimeout: (408, grpc.StatusCode.DEADLINE_EXCEEDED),
    UnsupportedMediaType: (415, grpc.StatusCode.INVALID_ARGUMENT),
    ExpectationFailed: (417, grpc.StatusCode.FAILED_PRECONDITION),
    TooManyConnections: (503, grpc.StatusCode.UNAVAILABLE),
    BodyTooLarge: (413, grpc.StatusCode.RESOURCE_EXHAUSTED),
    Overloaded: (429, grpc.StatusCode.RESOURCE_EXHAUSTED),
    WrapperFailed: (500, grpc.StatusCode.INTERNAL),
    OutputInvalid: (500, grpc.StatusCode.INTERNAL),
    InternalError: (500, grpc.StatusCode.INTERNAL),
    WorkerUnavailable: (503, grpc.StatusCode.UNAVAILABLE),
    DeadlineExceeded: (504, grpc.StatusCode.DEADLINE_EXCEEDED),
    AigesError: (500, grpc.StatusCode.INTERNAL),
}


def _lookup(err: AigesError) -> tuple[int, grpc.StatusCode]:
    for cls in type(err).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return STATUS[AigesError]


def http_status(err: AigesError) -> int:
    return err.http_override or _lookup(err)[0]


def grpc_status(err: AigesError) -> grpc.StatusCode:
    return _lookup(err)[1]
