#!/usr/bin/env python
# coding:utf-8
"""A wrapper with the batch entry point, for the batching tests.

Each answer says which batch it was in, so tests can see batches form: output "result" is JSON
``{"text": <input>, "batch": <size>, "batch_no": <n>, "pid": <pid>}``.  Inputs that misbehave:
``!fail`` answers ``response_err(401)`` for its own item, ``!raise`` puts an exception in its
item's place, ``!boom`` makes the whole call raise; param ``sleep`` (seconds) sleeps once per
batch.  No ``wrapperOnceExec``: single calls (an upstream host) go through the batch entry point.
"""
import itertools
import json
import os
import threading
import time

from aiges.core.types import *  # noqa: F401,F403
from aiges.dto import Response, ResponseData
from aiges.sdk import StringBodyField, StringParamField, WrapperBase

_batch_no = itertools.count(1)
_lock = threading.Lock()


class UserRequest(object):
    input1 = StringBodyField(key="text", value=b"hello batch")
    sleep = StringParamField(key="sleep", value="0")


class UserResponse(object):
    accept1 = StringBodyField(key="result")


class Wrapper(WrapperBase):
    serviceId = "batch"
    version = "v1"
    requestCls = UserRequest()
    responseCls = UserResponse()
    max_batch_size = 8
    max_queue_delay_ms = 20

    def wrapperInit(self, config):
        return 0

    def wrapperOnceExecBatch(self, requests):
        with _lock:
            n = next(_batch_no)
        texts = [reqData.get("text").data for _params, reqData in requests]
        if b"!boom" in texts:
            raise RuntimeError("the whole batch failed")
        pause = max(float(params.get("sleep") or 0) for params, _ in requests)
        if pause:
            time.sleep(pause)
        out = []
        for text in texts:
            if text == b"!fail":
                out.append(Response().response_err(401))
                continue
            if text == b"!raise":
                out.append(ValueError("this item is bad"))
                continue
            item = ResponseData()
            item.key = "result"
            item.setDataType(DataText)
            item.status = Once
            item.setData(json.dumps({"text": text.decode("utf-8"), "batch": len(requests), "batch_no": n,
                                     "pid": os.getpid()}).encode("utf-8"))
            res = Response()
            res.list = [item]
            out.append(res)
        return out

    def wrapperError(self, ret):
        return "this item was asked to fail" if ret == 401 else ""


if __name__ == "__main__":
    Wrapper().run()
