#!/usr/bin/env python
# coding:utf-8
"""Echo stream: the trivial streaming wrapper `scripts/bench` and the client tests run against.

Every frame's "text" is pushed straight back as one "result" through ``aiges.callback``, with the
frame's status (the last frame, status 2, gets the final result).  Upstream style, nothing else,
so frames/s measures the engine.  One deliberate failure for the client tests: a frame whose text
is ``!fail`` makes ``wrapperWrite`` return 402, whose message is ``wrapperError``'s.
"""
import threading

from aiges.core.types import *  # noqa: F401,F403

try:
    from aiges_embed import ResponseData, Response, SessionCreateResponse  # c++
except Exception:
    from aiges.dto import Response, ResponseData, SessionCreateResponse

from aiges.callback import callback
from aiges.sdk import WrapperBase, StringBodyField

FAIL = b"!fail"
FAIL_CODE = 402


class UserRequest(object):
    input1 = StringBodyField(key="text", value=b"hello stream")


class UserResponse(object):
    accept1 = StringBodyField(key="result")


class Wrapper(WrapperBase):
    serviceId = "echo_stream"
    version = "v1"
    requestCls = UserRequest()
    responseCls = UserResponse()

    def wrapperInit(self, config):
        self.tags = {}
        self.lock = threading.Lock()
        self.counter = 0
        return 0

    def wrapperOnceExec(self, params, reqData, usrTag="", persId=0):
        node = reqData.get("text")
        res = Response()
        res.list = [ResponseData(key="result", data=node.data if node is not None else b"", type=DataText,
                                 status=Once)]
        return res

    def wrapperCreate(self, params, sid, persId=0, userTag=""):
        with self.lock:
            self.counter += 1
            handle = "echo-%d" % self.counter
            self.tags[handle] = userTag
        s = SessionCreateResponse()
        s.handle = handle
        return s

    def wrapperWrite(self, handle, req, sid=""):
        tag = self.tags.get(handle)
        if tag is None:
            return 102
        for node in req.list:
            if node.data == FAIL:
                return FAIL_CODE
            item = ResponseData()
            item.key = "result"
            item.setDataType(DataText)
            item.status = DataEnd if node.status == DataEnd else DataContinue
            item.setData(node.data)
            res = Response()
            res.list = [item]
            callback(res, tag, sid)
        return 0

    def wrapperDestroy(self, handle):
        self.tags.pop(handle, None)
        return 0

    def wrapperError(self, ret):
        if ret == FAIL_CODE:
            return "echo_stream was asked to fail"
        if ret == 102:
            return "unknown session handle"
        return ""

    def wrapperFini(self):
        return 0


if __name__ == "__main__":
    Wrapper().run()
