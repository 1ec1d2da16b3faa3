from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Ret(_message.Message):
    __slots__ = ("ret", "msg")
    RET_FIELD_NUMBER: _ClassVar[int]
    MSG_FIELD_NUMBER: _ClassVar[int]
    ret: int
    msg: str
    def __init__(self, ret: _Optional[int] = ..., msg: _Optional[str] = ...) -> None: ...

class SvcId(_message.Message):
    __slots__ = ("serviceId",)
    SERVICEID_FIELD_NUMBER: _ClassVar[int]
    serviceId: str
    def __init__(self, serviceId: _Optional[str] = ...) -> None: ...

class Schema(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: str
    def __init__(self, data: _Optional[str] = ...) -> None: ...

class RequestData(_message.Message):
    __slots__ = ("key", "len", "type", "status", "desc", "data")
    class DescEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    KEY_FIELD_NUMBER: _ClassVar[int]
    LEN_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DESC_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    key: str
    len: int
    type: int
    status: int
    desc: _containers.ScalarMap[str, str]
    data: bytes
    def __init__(self, key: _Optional[str] = ..., len: _Optional[int] = ..., type: _Optional[int] = ..., status: _Optional[int] = ..., desc: _Optional[_Mapping[str, str]] = ..., data: _Optional[bytes] = ...) -> None: ...

class ResponseData(_message.Message):
    __slots__ = ("key", "len", "type", "status", "desc", "data")
    class DescEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    KEY_FIELD_NUMBER: _ClassVar[int]
    LEN_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DESC_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    key: str
    len: int
    type: int
    status: int
    desc: _containers.ScalarMap[str, str]
    data: bytes
    def __init__(self, key: _Optional[str] = ..., len: _Optional[int] = ..., type: _Optional[int] = ..., status: _Optional[int] = ..., desc: _Optional[_Mapping[str, str]] = ..., data: _Optional[bytes] = ...) -> None: ...

class Response(_message.Message):
    __slots__ = ("tag", "ret", "list", "msg")
    TAG_FIELD_NUMBER: _ClassVar[int]
    RET_FIELD_NUMBER: _ClassVar[int]
    LIST_FIELD_NUMBER: _ClassVar[int]
    MSG_FIELD_NUMBER: _ClassVar[int]
    tag: str
    ret: int
    list: _containers.RepeatedCompositeFieldContainer[ResponseData]
    msg: str
    def __init__(self, tag: _Optional[str] = ..., ret: _Optional[int] = ..., list: _Optional[_Iterable[_Union[ResponseData, _Mapping]]] = ..., msg: _Optional[str] = ...) -> None: ...

class InitRequest(_message.Message):
    __slots__ = ("config",)
    class ConfigEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    config: _containers.ScalarMap[str, str]
    def __init__(self, config: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Request(_message.Message):
    __slots__ = ("tag", "params", "list")
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TAG_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    LIST_FIELD_NUMBER: _ClassVar[int]
    tag: str
    params: _containers.ScalarMap[str, str]
    list: _containers.RepeatedCompositeFieldContainer[RequestData]
    def __init__(self, tag: _Optional[str] = ..., params: _Optional[_Mapping[str, str]] = ..., list: _Optional[_Iterable[_Union[RequestData, _Mapping]]] = ...) -> None: ...

class StreamRequest(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: str
    def __init__(self, data: _Optional[str] = ...) -> None: ...

class CreateRequest(_message.Message):
    __slots__ = ("params", "sid", "tag")
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    SID_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    params: _containers.ScalarMap[str, str]
    sid: str
    tag: str
    def __init__(self, params: _Optional[_Mapping[str, str]] = ..., sid: _Optional[str] = ..., tag: _Optional[str] = ...) -> None: ...

class Handle(_message.Message):
    __slots__ = ("handle", "err_code", "msg")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    ERR_CODE_FIELD_NUMBER: _ClassVar[int]
    MSG_FIELD_NUMBER: _ClassVar[int]
    handle: str
    err_code: int
    msg: str
    def __init__(self, handle: _Optional[str] = ..., err_code: _Optional[int] = ..., msg: _Optional[str] = ...) -> None: ...

class WriteMessage(_message.Message):
    __slots__ = ("req", "handle", "sid")
    REQ_FIELD_NUMBER: _ClassVar[int]
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    SID_FIELD_NUMBER: _ClassVar[int]
    req: Request
    handle: str
    sid: str
    def __init__(self, req: _Optional[_Union[Request, _Mapping]] = ..., handle: _Optional[str] = ..., sid: _Optional[str] = ...) -> None: ...
