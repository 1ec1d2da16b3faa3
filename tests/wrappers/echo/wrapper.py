#!/usr/bin/env python
# coding:utf-8
"""Echo: the trivial once wrapper `scripts/bench` and the client tests run against.

Payload "text" comes back unchanged as output "result" (text).  Written as an upstream AIGES
wrapper is, so the benchmark measures the engine, not the model.  One deliberate failure for the
client tests: the text ``!fail`` answers ``response_err(401)``, whose message is ``wrapperError``'s.
"""
from aiges.core.types import *  # noqa: F401,F403

try:
    from aiges_embed import ResponseData, Response  # c++
except Exception:
    from aiges.dto import Response, ResponseData

from aiges.sdk import WrapperBase, StringBodyField

FAIL = b"!fail"
FAIL_CODE = 401


class UserRequest(object):
    input1 = StringBodyField(key="text", value=b"hello echo")


class UserResponse(object):
    accept1 = StringBodyField(key="result")


class Wrapper(WrapperBase):
    serviceId = "echo"
    version = "v1"
    requestCls = UserRequest()
    responseCls = UserResponse()

    def wrapperInit(self, config):
        return 0

    def wrapperOnceExec(self, params, reqData, usrTag="", persId=0):
        node = reqData.get("text")
        if node is None or node.data == FAIL:
            return Response().response_err(FAIL_CODE)
        res = Response()
        item = ResponseData()
        item.key = "result"
        item.setDataType(DataText)
        item.status = Once
        item.setData(node.data)
        res.list = [item]
        return res

    def wrapperError(self, ret):
        if ret == FAIL_CODE:
            return "echo was asked to fail"
        return ""

    def wrapperFini(self):
        return 0


if __name__ == "__main__":
    Wrapper().run()
