"""Upstream's streaming style: SessionManager + StreamHandleThread workers, results by callback_fn."""
from aiges.core.types import *  # noqa: F401,F403
from aiges.dto import Response, ResponseData, SessionCreateResponse, DataListCls
from aiges.sdk import WrapperBase, StringBodyField
from aiges.stream import StreamHandleThread
from aiges.callback import callback
from aiges.utils.log import log


class UserRequest(object):
    input1 = StringBodyField(key="text", value=b"abc")


class UserResponse(object):
    accept1 = StringBodyField(key="result")


class MyReqDataThread(StreamHandleThread):
    def __init__(self, session_thread, in_q, out_q):
        super().__init__(session_thread, in_q, out_q)

    def run(self):
        while True:
            req = self.in_q.get()
            self.infer(req)

    def infer(self, req: DataListCls):
        for node in req.list:
            r = Response()
            l = ResponseData()
            l.key = "result"
            l.status = node.status
            d = node.data[::-1]
            l.len = len(d)
            l.data = d
            r.list = [l]
            self.session_thread.callback_fn(r, self.session_thread.sid)


class Wrapper(WrapperBase):
    serviceId = "streamthreads"
    version = "v1"
    requestCls = UserRequest()
    responseCls = UserResponse()

    def wrapperInit(self, config: {}) -> int:
        self.session.init_wrapper_config(config)
        self.session.init_handle_pool("thread", 4, MyReqDataThread)
        return 0

    def wrapperOnceExec(self, params, reqData, usrTag="", persId=0):
        return None

    def wrapperCreate(self, params: {}, sid: str) -> SessionCreateResponse:
        s = SessionCreateResponse()
        handle = self.session.get_idle_handle()
        if not handle:
            s.error_code = 10110
            return s
        _session = self.session.get_session(handle=handle)
        _session.setup_sid(sid)
        _session.setup_params(params)
        _session.setup_callback_fn(callback)
        s.handle = handle
        return s

    def wrapperWrite(self, handle: str, req: DataListCls, sid: str) -> int:
        _session = self.session.get_session(handle=handle)
        if _session is None:
            return -1
        _session.in_q.put(req)
        return 0

    def wrapperDestroy(self, handle):
        self.session.push_back(handle)
        log.info("released %s", handle)
        return 0

    def wrapperError(self, ret):
        return "no idle session handle" if ret == 10110 else ""
