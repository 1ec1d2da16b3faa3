"""Test wrapper whose behaviour is chosen by the "ctrl" param: ok, raise, none, empty, err, slow, crash, sysexit, print."""
import os
import sys
import time

from aiges.core.types import *  # noqa: F401,F403
from aiges.dto import Response, ResponseData
from aiges.sdk import WrapperBase, StringBodyField, StringParamField, NumberParamField

if os.path.exists(os.environ.get("FAULTY_IMPORT_FAIL_WHILE") or "/nonexistent"):
    raise ImportError("a dependency is not installed yet")  # the import fails while that file exists


class UserRequest(object):
    input1 = StringBodyField(key="text", value=b"x")
    ctrl = StringParamField(key="ctrl", value="ok")
    sleep = NumberParamField(key="sleep", minimum=0, maximum=100, value=0)


class UserResponse(object):
    accept1 = StringBodyField(key="result")


class Wrapper(WrapperBase):
    serviceId = "faulty"
    version = "v1"
    requestCls = UserRequest()
    responseCls = UserResponse()

    def wrapperInit(self, config):
        self.config_seen = dict(config)
        time.sleep(float(os.environ.get("FAULTY_INIT_SLEEP", "0")))  # a slow model load
        flag = os.environ.get("FAULTY_INIT_FAIL_WHILE")  # init fails while this file exists
        if flag and os.path.exists(flag):
            raise RuntimeError("model not there yet (%s exists)" % flag)
        return 0

    def wrapperOnceExec(self, params, reqData, usrTag="", persId=0):
        ctrl = params.get("ctrl", "ok")
        if ctrl == "raise":
            raise ValueError("boom from the wrapper")
        if ctrl == "none":
            return None
        if ctrl == "empty":
            r = Response()
            r.list = []
            return r
        if ctrl == "err":
            return Response().response_err(4242)
        if ctrl == "crash":
            os._exit(3)
        if ctrl == "sysexit":
            sys.exit(5)
        if ctrl == "print":
            for i in range(2000):
                print("chatty wrapper line %d" % i)
                sys.stderr.write("chatty stderr %d\n" % i)
        seconds = float(params.get("sleep", "0"))
        if seconds:
            time.sleep(seconds)
        res = Response()
        item = ResponseData()
        item.key = "result"
        item.setDataType(DataText)
        item.status = Once
        if ctrl == "params":
            import json
            item.setData(json.dumps({"params": dict(params), "config": self.config_seen,
                                     "desc": {d.key: dict(d.desc) for d in reqData.list}}))
        elif ctrl == "image":
            item.setDataType(DataImage)
            item.setData(b"\x89PNG fake")
        else:
            item.setData(reqData.get("text").data)
        res.list = [item]
        return res

    def wrapperError(self, ret):
        return "custom failure %d explained by wrapperError" % ret if ret == 4242 else ""

    def wrapperFini(self):
        marker = os.environ.get("FAULTY_FINI_MARKER")
        if marker:
            with open(marker, "w") as f:
                f.write("fini called")
        return 0
