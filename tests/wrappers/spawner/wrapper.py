#!/usr/bin/env python
# coding:utf-8
"""A wrapper that starts a helper process in wrapperInit (a model server, a pool worker ...) and
answers with its pid, for the tests that no process outlives its plugin."""
import subprocess

from aiges.core.types import *  # noqa: F401,F403
from aiges.dto import Response, ResponseData
from aiges.sdk import StringBodyField, WrapperBase


class UserRequest(object):
    input1 = StringBodyField(key="text", value=b"pid?")


class UserResponse(object):
    accept1 = StringBodyField(key="result")


class Wrapper(WrapperBase):
    serviceId = "spawner"
    requestCls = UserRequest()
    responseCls = UserResponse()

    def wrapperInit(self, config):
        self.helper = subprocess.Popen(["sleep", "300"])
        return 0

    def wrapperOnceExec(self, params, reqData, usrTag="", persId=0):
        item = ResponseData()
        item.key = "result"
        item.setDataType(DataText)
        item.status = Once
        item.setData(str(self.helper.pid).encode())
        res = Response()
        res.list = [item]
        return res
