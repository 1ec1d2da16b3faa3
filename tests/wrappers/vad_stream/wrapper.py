#!/usr/bin/env python
# coding:utf-8
"""A little real per-frame work for the real-time session benchmark (``scripts/bench --realtime``).

Each frame is 16-bit mono PCM (40 ms at 16 kHz = 1,280 bytes from the bench): the wrapper computes
its energy (dB) and zero-crossing rate with numpy, keeps an adaptive noise floor per session, says
whether the frame is speech (a tiny energy VAD) and pushes one "result" per frame through
``aiges.callback`` -- status 2 for the last frame.  Upstream callback style, as a recogniser's
front end would be.  Every wrapperDestroy appends its handle to $VAD_DESTROY_LOG (when set), so the
idle-sessions measurement can count destroys.
"""
import json
import math
import os
import threading

import numpy as np

from aiges.core.types import *  # noqa: F401,F403

try:
    from aiges_embed import ResponseData, Response, SessionCreateResponse  # c++
except Exception:
    from aiges.dto import Response, ResponseData, SessionCreateResponse

from aiges.callback import callback
from aiges.sdk import WrapperBase, AudioBodyField, StringBodyField

SPEECH_MARGIN_DB = 9.0  # a frame this far above the noise floor is speech


class UserRequest(object):
    input1 = AudioBodyField(key="audio")


class UserResponse(object):
    accept1 = StringBodyField(key="result")


class Wrapper(WrapperBase):
    serviceId = "vad_stream"
    version = "v1"
    requestCls = UserRequest()
    responseCls = UserResponse()

    def wrapperInit(self, config):
        self.sessions = {}
        self.lock = threading.Lock()
        self.counter = 0
        self.destroy_log = os.environ.get("VAD_DESTROY_LOG")
        return 0

    def wrapperCreate(self, params, sid, persId=0, userTag=""):
        with self.lock:
            self.counter += 1
            handle = "vad-%d" % self.counter
        self.sessions[handle] = {"tag": userTag, "frames": 0, "floor": None, "speech": 0}
        s = SessionCreateResponse()
        s.handle = handle
        return s

    def wrapperWrite(self, handle, req, sid=""):
        sess = self.sessions.get(handle)
        if sess is None:
            return 102
        for node in req.list:
            pcm = np.frombuffer(node.data, dtype="<i2").astype(np.float32)
            sess["frames"] += 1
            if pcm.size:
                db = 10.0 * math.log10(float(np.mean(pcm * pcm)) + 1e-9)
                zcr = float(np.count_nonzero(np.diff(np.signbit(pcm)))) / pcm.size
            else:
                db, zcr = -90.0, 0.0
            floor = db if sess["floor"] is None else sess["floor"]
            speech = db > floor + SPEECH_MARGIN_DB
            # the floor follows quiet frames quickly and loud ones slowly
            sess["floor"] = floor + (0.3 if db < floor else 0.01) * (db - floor)
            sess["speech"] += int(speech)
            item = ResponseData()
            item.key = "result"
            item.setDataType(DataText)
            item.status = DataEnd if node.status == DataEnd else DataContinue
            item.setData(json.dumps({"frame": sess["frames"], "db": round(db, 2), "zcr": round(zcr, 4),
                                     "speech": speech, "speech_frames": sess["speech"]}).encode())
            res = Response()
            res.list = [item]
            callback(res, sess["tag"], sid)
        return 0

    def wrapperDestroy(self, handle):
        self.sessions.pop(handle, None)
        if self.destroy_log:
            with open(self.destroy_log, "a") as f:
                f.write(handle + "\n")
        return 0

    def wrapperOnceExec(self, params, reqData, usrTag="", persId=0):
        res = Response()
        res.list = [ResponseData(key="result", data=b"{}", type=DataText, status=Once)]
        return res

    def wrapperError(self, ret):
        return "unknown session handle" if ret == 102 else ""

    def wrapperFini(self):
        return 0
