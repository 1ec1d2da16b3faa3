"""What the plugin's servicer, its lane and ``aiges check`` need from a host.

Two hosts implement it: the Python host (a ``wrapper.py``) and the C host (a ``libwrapper.so``
written to upstream's C ABI).  Every method returns a proto message and never raises for an
engine failure: failures are ``ret`` + ``msg``.
"""
from __future__ import annotations

from typing import Any, Protocol

from aiges._pb import aiges_inner_pb2 as pb


class Host(Protocol):
    has_batch: bool

    @property
    def obj(self) -> Any:
        """The loaded engine (None before load); for a wrapper.py its ``Wrapper`` instance."""
        ...

    @property
    def polls_read(self) -> bool:
        """True when session results must be fetched by polling ``read``."""
        ...

    def load(self) -> pb.Ret: ...

    def init(self, config: dict[str, str]) -> pb.Ret: ...

    def fini(self) -> pb.Ret: ...

    def schema(self) -> str: ...

    def error_text(self, code: int) -> str: ...

    def once(self, req: pb.Request, deadline: float | None) -> pb.Response: ...

    def once_batch(self, reqs: list[pb.Request], deadlines: list[float | None]) -> list[pb.Response]: ...

    def create(self, req: pb.CreateRequest) -> pb.Handle: ...

    def write(self, msg: pb.WriteMessage) -> pb.Ret: ...

    def read(self, handle: str, tag: str) -> pb.Response | None: ...

    def destroy(self, handle: str) -> pb.Ret: ...
