#!/usr/bin/env python
# coding:utf-8
"""{{name}}: an aiges wrapper, created by `aiges create` on {{date}}.

What it does now (replace the body of `analyse` and `wrapperInit` with your model):
  input   payload "image"   an image (PNG/JPEG/BMP); its test value is test_data/test.png
  param   "colors"          how many dominant colours to report, 1..8 (test value 3)
  output  "result"          text: JSON {"width", "height", "mode", "brightness", "colors"}

Serve it:      aiges -m 0          (in the project directory; Swagger UI at http://127.0.0.1:1888/)
Check it:      aiges check         (init, once and a session with the test values declared below)
Debug it:      python wrapper.py   (upstream's Wrapper().run(): init + once, no server)

The loader validates every request against the fields below before calling you, so `params`
holds valid values (as strings) and `reqData` only declared inputs.
"""
import io
import json
import os
import threading

from aiges.core.types import DataContinue, DataEnd, DataText, Once
from aiges.dto import Response, ResponseData, SessionCreateResponse
from aiges.errors import INVALID_DATA, INVALID_PARAM  # "the request is wrong": answered 400 with your message
from aiges.sdk import WrapperBase, ImageBodyField, StringBodyField, IntegerParamField
from aiges.utils.log import log
from PIL import Image, ImageStat

HERE = os.path.dirname(os.path.abspath(__file__))
ERR_NO_SESSION = 100  # your own error codes: the client gets them (HTTP 500) with the text of wrapperError


class UserRequest(object):
    """Inputs (payload) and params: the schema, the Swagger page and request validation come from here."""
    image = ImageBodyField(key="image", path=os.path.join(HERE, "test_data", "test.png"), encoding="png")
    colors = IntegerParamField(key="colors", minimum=1, maximum=8, value=3,
                               description="how many dominant colours to report")


class UserResponse(object):
    """Outputs: every key the wrapper returns must be declared here, with its type."""
    accept1 = StringBodyField(key="result")


def analyse(data, colors):
    """The "model": size, brightness and dominant colours of an image."""
    img = Image.open(io.BytesIO(data))
    img.load()
    rgb = img.convert("RGB")
    small = rgb.resize((32, 32)).quantize(colors=colors)
    palette = small.getpalette() or []
    counts = sorted(small.getcolors() or [], reverse=True)
    dominant = ["#%02x%02x%02x" % tuple(palette[3 * i:3 * i + 3]) for _, i in counts[:colors]]
    return {"width": img.width, "height": img.height, "mode": img.mode,
            "brightness": round(ImageStat.Stat(rgb.convert("L")).mean[0], 2), "colors": dominant}


def text_result(key, obj, status):
    item = ResponseData()
    item.key = key
    item.setDataType(DataText)
    item.status = status
    item.setData(json.dumps(obj).encode("utf-8"))
    res = Response()
    res.list = [item]
    return res


class Wrapper(WrapperBase):
    serviceId = "{{name}}"
    version = "v1"
    requestCls = UserRequest()
    responseCls = UserResponse()

    def wrapperInit(self, config):
        # config: the [wrapper] section of aiges.toml, values as strings. Load your model here.
        log.info("{{name}} init, config=%s", dict(config))
        self.sessions = {}
        self.lock = threading.Lock()
        return 0

    def wrapperOnceExec(self, params, reqData, usrTag="", persId=0):
        node = reqData.get("image")
        if node is None:
            return Response().response_err(INVALID_DATA, "payload.image is missing: send the image there")
        try:
            result = analyse(node.data, int(params.get("colors", "3")))
        except OSError:  # PIL cannot read it: a bad input, so a 400 that says what is wrong
            return Response().response_err(INVALID_PARAM, "payload.image: not an image PIL can read; "
                                                          "send PNG, JPEG or BMP data, base64-encoded")
        return text_result("result", result, Once)

    # ---- dynamic batching (optional).  Uncomment to receive requests that arrive together as one
    # call (e.g. one model.predict over all rows).  `requests` is a list of (params, reqData);
    # return one Response per request, in the same order -- an item that is response_err(code)
    # fails only its own request.  max_batch_size (default 8) and max_queue_delay_ms (how long a
    # batch may wait for more requests, default 0) may also be set in aiges.toml's [aiges].
    # max_batch_size = 16
    # max_queue_delay_ms = 2
    #
    # def wrapperOnceExecBatch(self, requests):
    #     return [self.wrapperOnceExec(params, reqData) for params, reqData in requests]

    def wrapperError(self, ret):
        return {ERR_NO_SESSION: "no such session: it has ended, or was never created"}.get(ret, "")

    def wrapperFini(self):
        return 0

    # ---- streaming session (a WebSocket on the same route); delete these methods if you need none
    def wrapperCreate(self, params, sid, persId=0, userTag=""):
        s = SessionCreateResponse()
        s.handle = "{{name}}-" + sid
        with self.lock:
            self.sessions[s.handle] = {"tag": userTag, "colors": int(params.get("colors", "3")), "frames": 0}
        return s

    def wrapperWrite(self, handle, req, sid=""):
        from aiges.callback import callback  # pushes a result to the client as soon as it exists
        sess = self.sessions.get(handle)
        if sess is None:
            return ERR_NO_SESSION
        for node in req.list:
            last = node.status in (DataEnd, Once)
            if not node.data:  # a frame may carry no data, e.g. an empty last frame that only ends the session
                if last:
                    callback(text_result("result", {"frames": sess["frames"]}, DataEnd), sess["tag"], sid)
                continue
            sess["frames"] += 1
            try:
                result = analyse(node.data, sess["colors"])
            except OSError as e:
                result = {"error": str(e)}
            result["frame"] = sess["frames"]
            callback(text_result("result", result, DataEnd if last else DataContinue), sess["tag"], sid)
        return 0

    def wrapperDestroy(self, handle):
        with self.lock:
            self.sessions.pop(handle, None)
        return 0


if __name__ == "__main__":
    Wrapper().run()
