"""The fields of the C echo engine: the same as tests/wrappers/echo, so both are validated alike."""
from aiges.sdk import StringBodyField, WrapperBase


class UserRequest:
    input1 = StringBodyField(key="text", value=b"hello echo")


class UserResponse:
    accept1 = StringBodyField(key="result")


class Wrapper(WrapperBase):
    serviceId = "echo"
    version = "v1"
    requestCls = UserRequest()
    responseCls = UserResponse()
    library = "libwrapper.so"
