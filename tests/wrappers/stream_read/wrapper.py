"""A streaming wrapper that returns results from wrapperRead (polled) instead of a callback.

One worker thread per session works through its frames in order, ``delay`` seconds each (param
``delay``, default 0), so results become readable some time after the write returned.
"""
import os
import queue
import threading
import time

from aiges.core.types import *  # noqa: F401,F403
from aiges.dto import Response, ResponseData, SessionCreateResponse
from aiges.sdk import WrapperBase, StringBodyField, StringParamField


class UserRequest(object):
    input1 = StringBodyField(key="text", value=b"abc")
    delay = StringParamField(key="delay", value="0")


class UserResponse(object):
    accept1 = StringBodyField(key="result")


class Wrapper(WrapperBase):
    serviceId = "streamread"
    version = "v1"
    requestCls = UserRequest()
    responseCls = UserResponse()

    def wrapperInit(self, config):
        self.queues = {}
        self.todo = {}
        self.lock = threading.Lock()
        self.n = 0
        return 0

    def wrapperOnceExec(self, params, reqData, usrTag="", persId=0):
        return Response().response_err(1)

    def wrapperCreate(self, params, sid, persId=0, usrTag=""):
        with self.lock:
            self.n += 1
            # param reuse: one pooled handle, as SessionManager-style wrappers hand out again
            handle = "rd-pooled" if params.get("reuse") else "rd-%d" % self.n
        out, todo = queue.Queue(), queue.Queue()
        delay = float(params.get("delay", "0") or 0)
        self.queues[handle] = out

        def work():
            while True:
                node = todo.get()
                if node is None:
                    return
                time.sleep(delay)
                d = ResponseData(key="result", data=node.data.upper(), status=2 if node.status == 2 else 1)
                r = Response()
                r.list = [d]
                out.put(r)
        threading.Thread(target=work, daemon=True).start()
        self.todo[handle] = todo
        return SessionCreateResponse(handle=handle)

    def wrapperWrite(self, handle, req, sid=""):
        for node in req.list:
            if node.data.startswith(b"sleep:"):  # a slow write
                time.sleep(float(node.data[6:]))
            self.todo[handle].put(node)
        return 0

    def wrapperRead(self, handle):
        try:
            return self.queues[handle].get_nowait()
        except (KeyError, queue.Empty):
            return None

    def wrapperDestroy(self, handle):
        self.queues.pop(handle, None)
        todo = self.todo.pop(handle, None)
        if todo is not None:
            todo.put(None)
        path = os.environ.get("STREAM_DESTROY_LOG")
        if path:
            with open(path, "a") as f:
                f.write(handle + "\n")
        return 0
