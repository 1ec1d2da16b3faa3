"""A streaming wrapper that returns results from wrapperRead (polled) instead of a callback."""
import os
import queue
import threading

from aiges.core.types import *  # noqa: F401,F403
from aiges.dto import Response, ResponseData, SessionCreateResponse
from aiges.sdk import WrapperBase, StringBodyField


class UserRequest(object):
    input1 = StringBodyField(key="text", value=b"abc")


class UserResponse(object):
    accept1 = StringBodyField(key="result")


class Wrapper(WrapperBase):
    serviceId = "streamread"
    version = "v1"
    requestCls = UserRequest()
    responseCls = UserResponse()

    def wrapperInit(self, config):
        self.queues = {}
        self.lock = threading.Lock()
        self.n = 0
        return 0

    def wrapperOnceExec(self, params, reqData, usrTag="", persId=0):
        return Response().response_err(1)

    def wrapperCreate(self, params, sid, persId=0, usrTag=""):
        with self.lock:
            self.n += 1
            handle = "rd-%d" % self.n
        self.queues[handle] = queue.Queue()
        return SessionCreateResponse(handle=handle)

    def wrapperWrite(self, handle, req, sid=""):
        q = self.queues[handle]

        def work(nodes=list(req.list)):
            for node in nodes:
                d = ResponseData(key="result", data=node.data.upper(), status=2 if node.status == 2 else 1)
                r = Response()
                r.list = [d]
                q.put(r)
        threading.Thread(target=work, daemon=True).start()
        return 0

    def wrapperRead(self, handle):
        try:
            return self.queues[handle].get_nowait()
        except (KeyError, queue.Empty):
            return None

    def wrapperDestroy(self, handle):
        self.queues.pop(handle, None)
        path = os.environ.get("STREAM_DESTROY_LOG")
        if path:
            with open(path, "a") as f:
                f.write(handle + "\n")
        return 0
