"""A wrapper whose test image is bigger than the OpenAPI example limit.

The tests copy this file into a temp dir and write ``test_data/big.png`` there (over 1 MB, so
no binary sits in git).  Once and session results report how many image bytes arrived, so a
test can tell full test data from the trimmed Swagger example.
"""
import os

from aiges.callback import callback
from aiges.core.types import *
from aiges.dto import Response, ResponseData, SessionCreateResponse
from aiges.sdk import WrapperBase, ImageBodyField, StringBodyField

_HERE = os.path.dirname(os.path.abspath(__file__))


class UserRequest(object):
    img = ImageBodyField(key="img", path=os.path.join(_HERE, "test_data", "big.png"), encoding="png")


class UserResponse(object):
    accept1 = StringBodyField(key="result")


def _result(n, status):
    r = Response()
    d = ResponseData()
    d.key = "result"
    d.setDataType(DataText)
    d.status = status
    d.setData(f"{n} bytes".encode())
    r.list = [d]
    return r


class Wrapper(WrapperBase):
    serviceId = "big"
    requestCls = UserRequest()
    responseCls = UserResponse()

    def wrapperInit(self, config):
        return 0

    def wrapperOnceExec(self, params, reqData, usrTag="", persId=0):
        data = reqData.get("img").data
        if not data:
            raise ValueError("no image data")  # what a real model does with an empty image
        return _result(len(data), Once)

    def wrapperCreate(self, params, sid, persId=0, userTag=""):
        self.tag = userTag
        return SessionCreateResponse(handle=sid)

    def wrapperWrite(self, handle, req, sid=""):
        for node in req.list:
            callback(_result(len(node.data), DataEnd if node.status == 2 else DataContinue), self.tag, sid)
        return 0


if __name__ == "__main__":
    Wrapper().run()
