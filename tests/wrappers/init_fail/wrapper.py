"""wrapperInit raises: the loader must log one line naming this file and the exception, then exit 1."""
from aiges.sdk import WrapperBase, StringBodyField


class UserRequest(object):
    input1 = StringBodyField(key="text", value=b"x")


class UserResponse(object):
    accept1 = StringBodyField(key="result")


class Wrapper(WrapperBase):
    serviceId = "initfail"
    version = "v1"
    requestCls = UserRequest()
    responseCls = UserResponse()

    def wrapperInit(self, config):
        raise FileNotFoundError("model.bin not found in /nowhere")
