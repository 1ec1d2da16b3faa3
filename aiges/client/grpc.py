"""``GrpcClient``: the loader's public gRPC API (``aiges.api.Aiges``)."""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import orjson

from aiges.client.codec import (
    ONCE,
    TRANSPORT_ERROR,
    ClientError,
    ExpectValue,
    InputValue,
    OnceResponse,
    Result,
    _code,
    _header,
    build_envelope,
    decode_outputs,
)


# ---------------------------------------------------------------- gRPC (public API, aiges.api.Aiges)
class GrpcClient:
    """Synchronous client of the loader's public gRPC API (``[<svcName>] host:port``).

    The same envelope as HTTP travels in ``aiges.api.Envelope``; errors raise :class:`ClientError`
    with the aiges code from the call's trailing metadata::

        with GrpcClient("127.0.0.1:5090", service="demo") as c:
            print(c.once({"text": "hi"})["result"])                  # 'HI'
            for r in c.stream([({"text": "a"}, 0), ({"text": "b"}, 2)]):
                print(r.status, r.text)
    """

    def __init__(self, target: str, service: str = "svcName", api_key: str | None = None,
                 timeout: float = 60.0) -> None:
        import grpc

        from aiges.wire.pb import aiges_api_pb2, aiges_api_pb2_grpc

        self._grpc = grpc
        self._pb = aiges_api_pb2
        self.service = service
        self.timeout = timeout
        self._channel = grpc.insecure_channel(target)
        self._stub = aiges_api_pb2_grpc.AigesStub(self._channel)
        self._metadata = (("x-api-key", api_key),) if api_key else ()

    def __enter__(self) -> GrpcClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _error(self, e: Any) -> ClientError:
        md = dict(e.trailing_metadata() or ())
        try:
            code = int(md.get("aiges-code", TRANSPORT_ERROR))
        except ValueError:
            code = TRANSPORT_ERROR
        return ClientError(code, f"{e.details()}" if code != TRANSPORT_ERROR else f"{e.code().name}: {e.details()}",
                           str(md.get("aiges-sid", "")))

    def once(self, inputs: Mapping[str, InputValue], params: Mapping[str, Any] | None = None,
             expect: Mapping[str, ExpectValue] | None = None, header: Mapping[str, Any] | None = None,
             deadline: float | None = None) -> OnceResponse:
        env = self._pb.Envelope(json=orjson.dumps(build_envelope(self.service, inputs, params, expect, ONCE,
                                                                 header)).decode())
        try:
            reply = self._stub.Once(env, timeout=deadline or self.timeout, metadata=self._metadata)
        except self._grpc.RpcError as e:
            raise self._error(e) from None
        hdr = _header(doc := orjson.loads(reply.json))
        outputs = decode_outputs(doc.get("payload"), text_raw=True)
        return OnceResponse(sid=str(hdr.get("sid", "")), status=int(hdr.get("status", ONCE)),
                            outputs={r.key: r for r in outputs})

    def stream(self, frames: Iterable[tuple[Mapping[str, InputValue], int]],
               params: Mapping[str, Any] | None = None) -> Iterator[Result]:
        """A session: ``frames`` yields ``(inputs, status)`` pairs (status 0 first, 1, 2 last);
        results are yielded as the server pushes them; an error frame raises ClientError."""
        def requests() -> Any:
            first = True
            for inputs, status in frames:
                doc = build_envelope(self.service, inputs, params if first else None, None, status)
                first = False
                yield self._pb.Envelope(json=orjson.dumps(doc).decode())

        try:
            for reply in self._stub.Stream(requests(), timeout=self.timeout, metadata=self._metadata):
                doc = orjson.loads(reply.json)
                hdr = _header(doc)
                code = _code(hdr)
                if code != 0:
                    raise ClientError(code, str(hdr.get("message", "")), str(hdr.get("sid", "")))
                if doc.get("payload"):
                    yield from decode_outputs(doc["payload"], text_raw=False)
        except self._grpc.RpcError as e:
            raise self._error(e) from None
