#!/usr/bin/env python
# coding:utf-8
"""The bundled demo: a tiny text service (no network, no model download, no torch).

Once:   POST text in payload "text", params "mode" (upper/lower/reverse/title) and "repeat" (1..5);
        the answer "result" is the transformed text.
Stream: every frame's text is transformed and pushed back as it arrives (aiges.callback);
        the last frame (status 2) gets the final result, with the whole text.
Written exactly as an upstream AIGES wrapper is, so it runs on upstream too.
"""
import threading

from aiges.core.types import *  # noqa: F401,F403

try:
    from aiges_embed import ResponseData, Response, DataListNode, DataListCls, SessionCreateResponse  # c++
except Exception:
    from aiges.dto import Response, ResponseData, DataListNode, DataListCls, SessionCreateResponse

from aiges.sdk import WrapperBase, StringBodyField, StringParamField, IntegerParamField
from aiges.utils.log import log


class UserRequest(object):
    input1 = StringBodyField(key="text", value=b"hello aiges")
    mode = StringParamField(key="mode", enums=["upper", "lower", "reverse", "title"], value="upper",
                            description="how to transform the text")
    repeat = IntegerParamField(key="repeat", minimum=1, maximum=5, value=1, description="repeat the result")


class UserResponse(object):
    accept1 = StringBodyField(key="result")


def transform(text, mode, repeat):
    if mode == "lower":
        out = text.lower()
    elif mode == "reverse":
        out = text[::-1]
    elif mode == "title":
        out = text.title()
    else:
        out = text.upper()
    return " ".join([out] * repeat)


class Wrapper(WrapperBase):
    serviceId = "demo"
    version = "v1"
    requestCls = UserRequest()
    responseCls = UserResponse()

    def wrapperInit(self, config):
        log.info("demo wrapper init, config=%s", dict(config))
        self.sessions = {}
        self.lock = threading.Lock()
        self.counter = 0
        return 0

    def wrapperOnceExec(self, params, reqData, usrTag="", persId=0):
        node = reqData.get("text")
        if node is None:
            return Response().response_err(101)
        text = node.data.decode("utf-8", "replace")
        res = Response()
        item = ResponseData()
        item.key = "result"
        item.setDataType(DataText)
        item.status = Once
        item.setData(transform(text, params.get("mode", "upper"), int(params.get("repeat", "1"))).encode("utf-8"))
        res.list = [item]
        return res

    def wrapperError(self, ret):
        if ret == 101:
            return "payload 'text' is missing"
        return ""

    # ---- streaming session
    def wrapperCreate(self, params, sid, persId=0, userTag=""):
        with self.lock:
            self.counter += 1
            handle = "demo-%d" % self.counter
            self.sessions[handle] = {"tag": userTag, "params": dict(params), "parts": []}
        s = SessionCreateResponse()
        s.handle = handle
        return s

    def wrapperWrite(self, handle, req, sid=""):
        from aiges.callback import callback
        sess = self.sessions.get(handle)
        if sess is None:
            return 102
        mode = sess["params"].get("mode", "upper")
        for node in req.list:
            text = node.data.decode("utf-8", "replace")
            sess["parts"].append(text)
            item = ResponseData()
            item.key = "result"
            item.setDataType(DataText)
            if node.status == DataEnd:
                item.status = DataEnd
                item.setData(transform("".join(sess["parts"]), mode, 1).encode("utf-8"))
            else:
                item.status = DataContinue
                item.setData(transform(text, mode, 1).encode("utf-8"))
            res = Response()
            res.list = [item]
            callback(res, sess["tag"], sid)
        return 0

    def wrapperDestroy(self, handle):
        self.sessions.pop(handle, None)
        return 0

    def wrapperFini(self):
        log.info("demo wrapper fini")
        return 0


if __name__ == "__main__":
    Wrapper().run()
