"""The wrapper SDK: ``WrapperBase`` and the field classes, upstream-compatible.

A wrapper declares its inputs, params and outputs as field objects on two holder classes and
points ``requestCls`` / ``responseCls`` at instances of them.  ``schema()`` turns the
declaration into the JSON the loader (ours or upstream's Go loader) reads: ``meta`` (routes, ids),
``schemainput`` / ``schemaoutput`` (JSON Schema, now including the ``parameter.<svc>.<acceptKey>``
expect objects upstream left out) and ``fields``, a flat description our loader uses for
validation, OpenAPI and examples.  No pydantic or jinja: upstream's v2 schema broke with every
pydantic release.
"""
from __future__ import annotations

import base64
import json
import logging
import os
import sys
import warnings
from typing import Any

from aiges.sdk.dto import DataListCls, DataListNode, Response, ResponseData, SessionCreateResponse
from aiges.sdk.stream import (  # noqa: F401 - re-exported as upstream's sdk did
    ProcessThreadPool,
    SessionManager,
    StreamHandleThread,
    ThreadPool,
    WorkerThread,
)
from aiges.sdk.types import AUDIO, IMAGE, OTHER, STRING, VIDEO, DataOnce
from aiges.wire.schema import strict_document

logger = logging.getLogger("aiges.sdk")

SUB = "ase"
CALL = "atmos"
CALL_TYPE = 0
HOSTS = ["api.xf-yun.com"]

type_map = {"text": STRING, "audio": AUDIO, "image": IMAGE, "video": VIDEO, "other": OTHER}
TYPE_NAMES = {STRING: "text", AUDIO: "audio", IMAGE: "image", VIDEO: "video", OTHER: "other"}
# Bigger test files are left out of the schema's examples.  The schema travels over gRPC (an
# upstream Go loader keeps grpc-go's 4 MB default) and is inlined, as base64, twice into the
# OpenAPI page, so a few inputs at the limit must stay well under 4 MB; 1 MB fits a typical test
# photo (the audit's 721 KB PNG was over the old 256 KB).
EXAMPLE_LIMIT = 1024 * 1024


class Field:
    def __init__(self, key: str, data_type: Any) -> None:
        self.key = key
        self.data_type = data_type
        self.description = ""

    def __str__(self) -> str:
        return f"<{self.__class__.__name__}:{self.key}>"

    @property
    def test_value(self) -> Any:
        return None


# ---------------------------------------------------------------- params
class ParamField(Field):
    required = False
    enums: list[Any] = []

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"key": self.key, "type": self.data_type, "required": bool(self.required)}
        if self.enums:
            d["enum"] = list(self.enums)
        if getattr(self, "description", ""):
            d["description"] = self.description
        tv = self.test_value
        if tv is not None and tv != "":
            d["example"] = tv
        return d

    def json_schema(self) -> dict[str, Any]:
        d = {k: v for k, v in self.describe().items() if k not in ("key", "required")}
        return d


class StringParamField(ParamField):
    def __init__(self, key: str, minLength: int = 0, maxLength: int = 1024, enums: list[Any] | None = None,
                 required: bool = False, value: str = "", description: str = "", title: str = "") -> None:
        super().__init__(key, "string")
        self.min_length = minLength
        self.max_length = maxLength
        self.enums = list(enums or [])
        self.required = required
        self.value = value
        self.description = description
        self.title = title

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        if not self.enums:
            d["minLength"] = self.min_length
            d["maxLength"] = self.max_length
        return d

    @property
    def test_value(self) -> Any:
        return self.value


class NumberParamField(ParamField):
    def __init__(self, key: str, minimum: float = 0, maximum: float = 100, enums: list[Any] | None = None,
                 required: bool = False, value: float = 0, description: str = "") -> None:
        super().__init__(key, "number")
        self.minimum = minimum
        self.maximum = maximum
        self.enums = list(enums or [])
        self.required = required
        self.value = value
        self.description = description

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        if not self.enums:
            d["minimum"] = self.minimum
            d["maximum"] = self.maximum
        return d

    @property
    def test_value(self) -> Any:
        return self.value


class IntegerParamField(NumberParamField):
    def __init__(self, key: str, minimum: int = 0, maximum: int = 100, enums: list[Any] | None = None,
                 required: bool = False, value: int = 0, description: str = "") -> None:
        super().__init__(key, minimum, maximum, enums, required, value, description)
        self.data_type = "integer"


class BooleanParamField(ParamField):
    def __init__(self, key: str, title: str = "", default: bool = False, required: bool = False,
                 description: str = "") -> None:
        super().__init__(key, "boolean")
        self.title = title
        self.default = default
        self.required = required
        self.description = description

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["default"] = self.default
        return d

    @property
    def test_value(self) -> Any:
        return self.default


# ---------------------------------------------------------------- payloads
class PayloadField(Field):
    """An input (on requestCls) or output (on responseCls) data stream."""

    encodings: list[str] = []

    def __init__(self, key: str, data_type: int, encoding: str = "", format: str = "plain",  # noqa: A002
                 compress: str = "raw", status: int = DataOnce, need_base64: bool = False) -> None:
        super().__init__(key, data_type)
        self.encoding = encoding
        self.format = format
        self.compress = compress
        self.status = status
        self.need_base64 = need_base64

    @property
    def type_name(self) -> str:
        return TYPE_NAMES.get(self.data_type, "other")

    def raw_test_bytes(self) -> bytes:
        return b""

    @property
    def test_value(self) -> Any:
        data = self.raw_test_bytes()
        return base64.b64encode(data) if self.need_base64 else data

    def allowed_encodings(self) -> list[str]:
        """The class's known encodings plus the field's own (a wrapper may declare any encoding)."""
        known = list(self.encodings)
        if self.encoding and self.encoding not in known:
            known.append(self.encoding)
        return known

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"key": self.key, "dataType": self.type_name, "type": self.data_type,
                             "encoding": self.encoding, "format": self.format, "compress": self.compress,
                             "status": self.status}
        encodings = self.allowed_encodings()
        if encodings:
            d["encodings"] = encodings
        if self.description:
            d["description"] = self.description
        data = self.raw_test_bytes()
        if data and len(data) <= EXAMPLE_LIMIT:
            d["example"] = base64.b64encode(data).decode("ascii")
        elif data:
            # too big to inline into the schema (it travels over gRPC and into every Swagger page)
            d["exampleNote"] = f"test data of {len(data)} bytes is larger than the {EXAMPLE_LIMIT} bytes shown"
            d["exampleBytes"] = len(data)
        return d


class _FileField(PayloadField):
    def __init__(self, key: str, data_type: int, path: str = "", **kw: Any) -> None:
        super().__init__(key, data_type, **kw)
        self.path = path
        if path and not os.path.exists(path):
            warnings.warn(f"{type(self).__name__}({key!r}): test data file {path!r} does not exist", stacklevel=3)

    def raw_test_bytes(self) -> bytes:
        if self.path and os.path.isfile(self.path):
            with open(self.path, "rb") as f:
                return f.read()
        return b""


class StringBodyField(PayloadField):
    def __init__(self, key: str, value: bytes | str = b" ", need_base64: bool = False, encoding: str = "utf8",
                 format: str = "plain", compress: str = "raw", status: int = DataOnce) -> None:  # noqa: A002
        super().__init__(key, STRING, encoding, format, compress, status, need_base64)
        self.value = value.encode("utf-8") if isinstance(value, str) else bytes(value)

    encodings = ["utf8", "gb2312"]

    def raw_test_bytes(self) -> bytes:
        return self.value


class JsonBodyField(StringBodyField):
    def __init__(self, key: str, value: Any = "", need_base64: bool = False) -> None:
        if not isinstance(value, (str, bytes)):
            value = json.dumps(value, ensure_ascii=False)
        super().__init__(key, value, need_base64, format="json")


class ImageBodyField(_FileField):
    encodings = ["jpg", "jpeg", "png", "bmp"]

    def __init__(self, key: str, path: str = "", need_base64: bool = False, encoding: str = "jpg",
                 status: int = DataOnce) -> None:
        super().__init__(key, IMAGE, path, encoding=encoding, status=status, need_base64=need_base64)


class AudioBodyField(_FileField):
    encodings = ["raw", "lame", "speex", "opus", "speex-wb", "opus-wb"]

    def __init__(self, key: str, path: str = "", encoding: str = "raw", format: str = "plain",  # noqa: A002
                 compress: str = "raw", status: int = DataOnce) -> None:
        super().__init__(key, AUDIO, path, encoding=encoding, format=format, compress=compress, status=status)


class VideoBodyField(_FileField):
    """aiges addition: upstream had no video field although the protocol has the type."""

    encodings = ["h264", "h265", "mp4"]

    def __init__(self, key: str, path: str = "", encoding: str = "h264", status: int = DataOnce) -> None:
        super().__init__(key, VIDEO, path, encoding=encoding, status=status)


# ---------------------------------------------------------------- the wrapper base
def _holder_items(holder: Any) -> list[tuple[str, Any]]:
    if holder is None:
        return []
    cls = holder if isinstance(holder, type) else type(holder)
    items: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        items.update(vars(klass))
    if not isinstance(holder, type):
        items.update(getattr(holder, "__dict__", {}))
    return list(items.items())


class WrapperBase:
    serviceId = ""
    version = "v1"
    requestCls: Any = None
    responseCls: Any = None
    route: Any = None
    call = CALL
    sub = SUB
    call_type: Any = "0"
    hosts = "api.xf-yun.com"
    config: dict[str, Any] = {}

    def __init__(self, legacy: bool = True, is_aipaas: bool = True, keep_schema_default_value: bool = True,
                 *args: Any, **kwargs: Any) -> None:
        # Upstream printed the Python path here, to stdout; that corrupts a plugin handshake, so log it.
        logger.debug("aiges wrapper %s, python %s", type(self).__name__, sys.version.split()[0])
        self.legacy = legacy
        self.session = SessionManager()
        self.inputs_test_values: dict[str, Any] = {}
        self.params_test_values: dict[str, Any] = {}
        self.respData: list[Any] = []

    # ---- declared fields
    @classmethod
    def fields(cls) -> dict[str, list[Any]]:
        inputs = [v for _, v in _holder_items(cls.requestCls) if isinstance(v, PayloadField)]
        params = [v for _, v in _holder_items(cls.requestCls) if isinstance(v, ParamField)]
        accepts = [v for k, v in _holder_items(cls.responseCls)
                   if isinstance(v, PayloadField) or (k.startswith("accept") and isinstance(v, Field))]
        return {"inputs": inputs, "params": params, "accepts": accepts}

    @classmethod
    def routes(cls) -> list[str]:
        r = cls.route
        if not r:
            return [f"/{cls.version}/private/{cls.serviceId}"]
        return [r] if isinstance(r, str) else [str(x) for x in r]

    # ---- the methods a wrapper overrides
    def wrapperInit(self, config: dict[str, Any]) -> int:
        raise NotImplementedError("wrapperInit must be implemented by the wrapper")

    def wrapperFini(self) -> int:
        return 0

    def wrapperOnceExec(self, params: dict[str, Any], reqData: DataListCls, usrTag: str = "",
                        persId: int = 0) -> Response:
        raise NotImplementedError("wrapperOnceExec must be implemented by the wrapper")

    def wrapperOnceExecAsync(self, params: dict[str, Any], reqData: DataListCls, sid: str, persId: int = 0) -> int:
        raise NotImplementedError("wrapperOnceExecAsync is a Cgo-mode method; not supported")

    def wrapperCreate(self, params: dict[str, Any], sid: str, persId: int = 0, usrTag: str = "",
                      userTag: str = "", **kwargs: Any) -> SessionCreateResponse:
        raise NotImplementedError("this wrapper has no streaming session support (wrapperCreate)")

    def wrapperWrite(self, handle: str, req: DataListCls, sid: str = "") -> int:
        raise NotImplementedError("this wrapper has no streaming session support (wrapperWrite)")

    def wrapperRead(self, handle: str) -> Response | None:
        return None

    def wrapperDestroy(self, handle: str) -> int:
        return 0

    def wrapperError(self, ret: int) -> str:
        if ret == 100:
            return "This is a  error return"
        return ""

    def wrapperLoadRes(self, reqData: DataListCls, resId: int) -> int:
        return 0

    def wrapperUnloadRes(self, resId: int) -> int:
        return 0

    def wrapperTestFunc(self, data: Any, respData: Any) -> int:
        return 0

    # ---- schema
    def schema(self) -> str:
        """What the wrapperSchema RPC sends: upstream's Go loader compiles ``schemainput`` with a
        strict parser, so both JSON Schemas hold only the keywords it knows (``example`` becomes
        ``examples``); the rich per-field description stays in ``fields``."""
        return json.dumps(strict_document(self.schema_dict()), ensure_ascii=False)

    def schema_v2(self) -> str:
        return self.schema()

    def schema_legacy(self) -> str:
        return self.schema()

    def schema_dict(self) -> dict[str, Any]:
        cls = type(self)
        svc = cls.serviceId
        f = cls.fields()
        inputs = [x.describe() for x in f["inputs"]]
        params = [x.describe() for x in f["params"]]
        accepts = [x.describe() for x in f["accepts"]]
        for a in accepts:
            a.pop("example", None)
        routes = cls.routes()
        param_props: dict[str, Any] = {p["key"]: f["params"][i].json_schema() for i, p in enumerate(params)}
        for a in accepts:
            param_props[a["key"]] = _expect_schema(a)
        input_props = {i["key"]: _payload_schema(i, is_input=True) for i in inputs}
        output_props = {a["key"]: _payload_schema(a, is_input=False) for a in accepts}
        return {
            "meta": {
                "serviceId": svc, "version": cls.version, "route": routes[0] if len(routes) == 1 else routes,
                "sub": cls.sub, "call": cls.call, "call_type": str(cls.call_type), "webgate_type": "0",
                "hosts": cls.hosts, "service": [svc], "routeKey": [],
                svc: {"input": {i["key"]: {"dataType": i["dataType"]} for i in inputs},
                      "accept": {a["key"]: {"dataType": a["dataType"]} for a in accepts}},
            },
            "schemainput": {"type": "object", "properties": {
                "header": {"type": "object", "properties": {
                    "appid": {"type": "string", "maxLength": 50}, "uid": {"type": "string", "maxLength": 50},
                    "status": {"type": "integer", "enum": [0, 1, 2, 3]}}},
                "parameter": {"type": "object", "properties": {svc: {
                    "type": "object", "properties": param_props,
                    "required": [p["key"] for p in params if p["required"]]}}},
                "payload": {"type": "object", "properties": input_props},
            }},
            "schemaoutput": {"type": "object", "properties": {
                "header": {"type": "object", "properties": {
                    "code": {"type": "integer"}, "message": {"type": "string"}, "sid": {"type": "string"},
                    "status": {"type": "integer"}}},
                "payload": {"type": "object", "properties": output_props}}},
            "fields": {"params": params, "inputs": inputs, "accepts": accepts},
        }

    # ---- local debugging, as upstream's run()
    def run(self, stream: bool = False) -> Any:
        return self.run_stream() if stream else self.run_once()

    def _test_request(self) -> tuple[dict[str, str], DataListCls]:
        f = type(self).fields()
        params = {p.key: _stringify(p.test_value) for p in f["params"] if p.test_value is not None}
        self.params_test_values = dict(params)
        nodes = []
        for inp in f["inputs"]:
            node = DataListNode()
            node.key = inp.key
            node.data = inp.raw_test_bytes()
            node.len = len(node.data)
            node.type = inp.data_type
            node.status = inp.status
            self.inputs_test_values[inp.key] = node.data
            nodes.append(node)
        return params, DataListCls(nodes)

    def run_once(self) -> Response:
        ret = self.wrapperInit(dict(self.config))
        if ret != 0:
            raise AssertionError(f"wrapperInit returned {ret}")
        params, req = self._test_request()
        resp = self.wrapperOnceExec(params, req)
        problems = self.check_resp(resp)
        if problems:
            raise AssertionError("wrapperOnceExec response is invalid:\n  - " + "\n  - ".join(problems))
        for item in resp.list:
            logger.info("result %s (type %s, status %s, %d bytes)", item.key, item.type, item.status, item.len)
        return resp

    def run_stream(self) -> list[Any]:
        from aiges.sdk import dto
        q = dto.init_rq()
        ret = self.wrapperInit(dict(self.config))
        if ret != 0:
            raise AssertionError(f"wrapperInit returned {ret}")
        params, req = self._test_request()
        for node in req.list:
            node.status = 2
        s = self.wrapperCreate(params, sid="test-111111", userTag="test-111111")
        self.wrapperWrite(s.handle, req, "test-111111")
        results = []
        while True:
            r = q.get(timeout=30)
            results.append(r)
            if any(getattr(x, "status", 3) in (2, 3) for x in r.list):
                break
        self.wrapperDestroy(s.handle)
        return results

    def check_resp(self, resp: Any) -> list[str]:
        """The rules upstream's check_resp enforced, as a list of problems (empty = valid)."""
        return [problem for problem, _fix in self.resp_problems(resp)]

    def resp_problems(self, resp: Any, method: str = "wrapperOnceExec",
                      statuses: tuple[int, ...] = (2, 3)) -> list[tuple[str, str]]:
        """``check_resp``'s rules as (problem, how to fix it) pairs; ``aiges check`` prints both."""
        if not isinstance(resp, Response):
            return [(f"{method} returned {type(resp).__name__}, not aiges.dto.Response",
                     "build `res = Response()`, set `res.list = [ResponseData(...)]` and return res")]
        if resp.error_code != 0:
            return []
        items = [x for x in resp.list if not (isinstance(x, ResponseData) and x.is_placeholder())]
        if not items:
            return [("Response.list is empty",
                     "append a ResponseData to res.list, or return res.response_err(code) for a failure")]
        return output_problems(type(self).fields()["accepts"], items, statuses)


def output_problems(accepts_list: list[Any], items: list[Any], statuses: tuple[int, ...] = (2, 3),
                    ) -> list[tuple[str, str]]:
    """Check output items (``ResponseData`` or the plugin's proto items: both have key, data, type,
    status) against the declared accepts; (problem, fix) pairs."""
    accepts = {a.key: a for a in accepts_list}
    declared = ", ".join(sorted(accepts)) or "nothing"
    wanted = " or ".join(str(s) for s in statuses)
    problems: list[tuple[str, str]] = []
    seen: set[str] = set()
    for x in items:
        if not isinstance(x.data, (bytes, memoryview)):
            problems.append((f"output '{x.key}': data is {type(x.data).__name__}, not bytes",
                             "use item.setData(value.encode('utf-8')) or pass bytes"))
        if x.key in seen:
            problems.append((f"output key '{x.key}' appears twice in one Response",
                             "give every ResponseData of one Response its own key"))
        seen.add(x.key)
        if x.status not in statuses:
            problems.append((f"output '{x.key}': status is {x.status}, expected {wanted}",
                             "set item.status = Once (3) for a once result; in a session DataContinue (1) "
                             "for partial results and DataEnd (2) for the last one"))
        if accepts and x.key not in accepts:
            problems.append((f"output key '{x.key}' is not declared in responseCls (declared: {declared})",
                             f"declare it in the response class, e.g. `accept_{x.key} = "
                             f"{_field_class(x.type)}(key=\"{x.key}\")`, or return one of: {declared}"))
        elif accepts and accepts[x.key].data_type != x.type:
            want = TYPE_NAMES.get(accepts[x.key].data_type, "other")
            problems.append((f"output '{x.key}': type {TYPE_NAMES.get(x.type, x.type)} differs from the "
                             f"declared {want}",
                             f"call item.setDataType({_type_constant(accepts[x.key].data_type)}) or declare "
                             f"'{x.key}' as {_field_class(x.type)} in responseCls"))
    if not accepts:
        problems.append(("responseCls declares no outputs",
                         "add e.g. `accept1 = StringBodyField(key=\"result\")` to the response class"))
    return problems


def _field_class(data_type: int) -> str:
    return {STRING: "StringBodyField", IMAGE: "ImageBodyField", AUDIO: "AudioBodyField",
            VIDEO: "VideoBodyField"}.get(data_type, "StringBodyField")


def _type_constant(data_type: int) -> str:
    return {STRING: "DataText", AUDIO: "DataAudio", IMAGE: "DataImage", VIDEO: "DataVideo",
            OTHER: "DataOther"}.get(data_type, str(data_type))


def _stringify(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return str(v)


def _expect_schema(a: dict[str, Any]) -> dict[str, Any]:
    """``parameter.<svc>.<acceptKey>``: how the client wants one output (optional; upstream required it)."""
    return {"type": "object", "description": f"expected output '{a['key']}' (optional): its attributes and "
                                             f"data_type; when given, the output must have this type",
            "properties": {
                "encoding": {"type": "string", "example": a.get("encoding") or "utf8"},
                "compress": {"type": "string", "example": a.get("compress") or "raw"},
                "format": {"type": "string", "example": a.get("format") or "plain"},
                "data_type": {"type": "string", "enum": ["text", "image", "audio", "video", "other"],
                              "example": a["dataType"]}}}


def _payload_schema(f: dict[str, Any], is_input: bool) -> dict[str, Any]:
    """One payload item as JSON Schema, typed as upstream's legacy schema (its Go loader casts
    WebSocket attributes by these types); ``aiges.loader.openapi`` describes our own loader's
    string attributes separately."""
    data_desc = "base64 of the data" if is_input or f["dataType"] != "text" else "the text, raw UTF-8"
    props: dict[str, Any] = {
        "encoding": {"type": "string", **({"enum": f["encodings"]} if f.get("encodings") else {})},
        "status": {"type": "integer", "enum": [0, 1, 2, 3]},
        "seq": {"type": "integer"},
        f["dataType"]: {"type": "string", "description": data_desc},
    }
    if f["dataType"] == "text":
        props["compress"] = {"type": "string"}
        props["format"] = {"type": "string"}
    return {"type": "object", "properties": props, **({"required": [f["dataType"]]} if is_input else {})}
