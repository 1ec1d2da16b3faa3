#!/usr/bin/env python
# coding:utf-8
"""CPU-bound once wrapper for the worker-scaling benchmark: about 1 ms of pure Python per call
(holding the GIL, as a typical feature-engineering step does), then echoes its input."""
from aiges.core.types import *  # noqa: F401,F403
from aiges.dto import Response, ResponseData
from aiges.sdk import StringBodyField, WrapperBase

LOOPS = 15000  # about 1 ms of interpreter work on the 2-core development machine


def burn(n: int) -> int:
    acc = 0
    for i in range(n):
        acc = (acc * 31 + i) & 0xFFFFFFFF
    return acc


class UserRequest(object):
    input1 = StringBodyField(key="text", value=b"hello cpu")


class UserResponse(object):
    accept1 = StringBodyField(key="result")


class Wrapper(WrapperBase):
    serviceId = "cpu"
    version = "v1"
    requestCls = UserRequest()
    responseCls = UserResponse()

    def wrapperInit(self, config):
        return 0

    def wrapperOnceExec(self, params, reqData, usrTag="", persId=0):
        burn(LOOPS)
        item = ResponseData()
        item.key = "result"
        item.setDataType(DataText)
        item.status = Once
        item.setData(reqData.get("text").data)
        res = Response()
        res.list = [item]
        return res


if __name__ == "__main__":
    Wrapper().run()
