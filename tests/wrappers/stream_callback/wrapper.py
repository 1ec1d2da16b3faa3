#!/usr/bin/env python
# coding:utf-8
"""Upstream-style streaming wrapper (after image_stats' session methods): results via aiges.callback.

Per frame it pushes "result" (text JSON about the frame) and, for frames whose text starts with
"img:", also "thumb" (an image result: the bytes after the prefix), to check types survive.
ctrl param: "create_fail" → wrapperCreate error 77; "create_slow" → wrapperCreate takes 1.5 s;
"async" → results are pushed from a worker thread after a short delay.
Frames: "fail" → wrapperWrite returns 55; "raise" → wrapperWrite raises; "sleep:S" → wrapperWrite sleeps S seconds first;
"final-first" → one Response whose status-2 item comes before a status-1 item; "flood:N" → N results
pushed from a thread, one every millisecond (results keep coming while the client sends more).
Every wrapperDestroy appends its handle to $STREAM_DESTROY_LOG.
"""
import json
import os
import threading
import time

from aiges.core.types import *  # noqa: F401,F403

try:
    from aiges_embed import ResponseData, Response, DataListNode, DataListCls, SessionCreateResponse  # c++
except Exception:
    from aiges.dto import Response, ResponseData, DataListNode, DataListCls, SessionCreateResponse

from aiges.sdk import WrapperBase, StringBodyField, ImageBodyField, StringParamField
from aiges.utils.log import log


class UserRequest(object):
    input1 = StringBodyField(key="text", value=b"hello")
    ctrl = StringParamField(key="ctrl", value="sync")


class UserResponse(object):
    accept1 = StringBodyField(key="result")
    accept2 = ImageBodyField(key="thumb")


class Wrapper(WrapperBase):
    serviceId = "streamcb"
    version = "v1"
    requestCls = UserRequest()
    responseCls = UserResponse()

    def wrapperInit(self, config: {}) -> int:
        self._sessions = {}
        self._lock = threading.Lock()
        self._n = 0
        return 0

    def wrapperOnceExec(self, params, reqData, usrTag="", persId=0):
        res = Response()
        d = ResponseData()
        d.key = "result"
        d.setDataType(DataText)
        d.status = Once
        d.setData(reqData.get("text").data)
        res.list = [d]
        return res

    def wrapperError(cls, ret: int) -> str:
        return {77: "cannot create a session (ctrl=create_fail)", 55: "frame rejected (text=fail)"}.get(ret, "")

    def wrapperCreate(cls, params: {}, sid: str, persId: int = 0, userTag: str = "") -> SessionCreateResponse:
        s = SessionCreateResponse()
        if params.get("ctrl") == "create_slow":
            time.sleep(1.5)
        if params.get("ctrl") == "create_fail":
            s.error_code = 77
            return s
        with cls._lock:
            cls._n += 1
            s.handle = "cb-%d" % cls._n
        cls._sessions[s.handle] = {"tag": userTag, "sid": sid, "n": 0, "params": dict(params), "frames": []}
        log.info("wrapperCreate handle=%s tag=%s sid=%s", s.handle, userTag, sid)
        return s

    def _results(cls, sess, node, frame_params):
        sess["n"] += 1
        text = node.data.decode("utf-8", "replace")
        info = {"frame": sess["n"], "key": node.key, "status": node.status, "text": text,
                "ctrl": sess["params"].get("ctrl"), "frame_params": frame_params, "sid": sess["sid"]}
        items = []
        d = ResponseData()
        d.key = "result"
        d.setDataType(DataText)
        d.status = node.status if node.status in (1, 2) else 1
        d.setData(json.dumps(info).encode("utf-8"))
        if text.startswith("img:"):
            img = ResponseData()
            img.key = "thumb"
            img.setDataType(DataImage)
            img.status = 1
            img.setData(node.data[4:])
            items.append(img)
        items.append(d)
        res = Response()
        res.list = items
        return res

    def wrapperWrite(cls, handle: str, req: DataListCls, sid: str = "") -> int:
        from aiges.callback import callback
        sess = cls._sessions.get(handle)
        if sess is None:
            return 102
        for node in req.list:
            if node.data == b"fail":
                return 55
            if node.data == b"raise":
                raise RuntimeError("the model broke on this frame")
            if node.data.startswith(b"sleep:"):
                time.sleep(float(node.data[6:]))
            if node.data.startswith(b"flood:"):
                def flood(n=int(node.data[6:]), tag=sess["tag"]):
                    for i in range(n):
                        d = ResponseData()
                        d.key, d.status = "result", 1
                        d.setDataType(DataText)
                        d.setData(json.dumps({"flood": i}).encode())
                        res = Response()
                        res.list = [d]
                        callback(res, tag, sid)
                        time.sleep(0.001)
                threading.Thread(target=flood, daemon=True).start()
                continue
            if node.data == b"final-first":
                last, more = ResponseData(), ResponseData()
                last.key, last.status = "result", 2
                last.setDataType(DataText)
                last.setData(b"{}")
                more.key, more.status = "thumb", 1
                more.setDataType(DataImage)
                more.setData(b"img")
                res = Response()
                res.list = [last, more]
                callback(res, sess["tag"], sid)
                continue
            res = cls._results(sess, node, dict(getattr(req, "params", {}) or {}))
            if sess["params"].get("ctrl") == "async":
                def later(r=res, tag=sess["tag"]):
                    time.sleep(0.02)
                    callback(r, tag, sid)
                threading.Thread(target=later, daemon=True).start()
            else:
                callback(res, sess["tag"], sid)
        return 0

    def wrapperDestroy(cls, handle: str) -> int:
        cls._sessions.pop(handle, None)
        path = os.environ.get("STREAM_DESTROY_LOG")
        if path:
            with open(path, "a") as f:
                f.write(handle + "\n")
        return 0
