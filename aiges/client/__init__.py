"""Python client for an aiges loader: HTTP once inference and WebSocket streaming sessions.

Callers hand over plain Python values; the client builds upstream's envelope
(``header`` / ``parameter.<service>`` / ``payload``), sends it, and hands back decoded results.
Every failure the server reports (HTTP error body or WebSocket error frame) is raised as
:class:`ClientError` carrying ``code``, ``message``, ``sid`` and, for HTTP, the status.

Once (synchronous, stdlib ``http.client`` with a kept-alive connection)::

    from aiges.client import HttpClient, ClientError

    with HttpClient("http://127.0.0.1:1888/v1/svcName") as c:
        resp = c.once({"text": "hello"}, params={"mode": "upper"})
        print(resp["result"])          # 'HELLO' (text outputs are str, other types bytes)
        print(resp.sid, resp.outputs["result"].status)

Streaming session (asyncio, aiohttp)::

    import asyncio
    from aiges.client import StreamSession

    async def main() -> None:
        async with StreamSession("ws://127.0.0.1:1888/v1/svcName", params={"mode": "upper"}) as s:
            await s.send("text", "hello ", status=0)
            await s.send("text", "world", status=2)
            async for r in s.results():
                print(r.seq, r.status, r.text)

    asyncio.run(main())

Layout: the envelope codec (:mod:`aiges.client.codec`) (:func:`build_envelope`, :func:`decode_outputs`) and the value types
(:class:`Input`, :class:`Result`, :class:`OnceResponse`, :class:`ClientError`) are transport-free;
each transport (:class:`HttpClient`, :class:`StreamSession`, :class:`GrpcClient` for the public gRPC
API) is a thin adapter over them, each in its own module (:mod:`.http`, :mod:`.ws`, :mod:`.grpc`).
"""
from aiges.client.codec import (
    TRANSPORT_ERROR,
    ClientError,
    Input,
    OnceResponse,
    Result,
    build_envelope,
    decode_outputs,
    service_from_url,
)
from aiges.client.grpc import GrpcClient
from aiges.client.http import HttpClient
from aiges.client.ws import StreamSession

__all__ = [
    "TRANSPORT_ERROR", "ClientError", "GrpcClient", "HttpClient", "Input", "OnceResponse", "Result", "StreamSession",
    "build_envelope", "decode_outputs", "service_from_url",
]
