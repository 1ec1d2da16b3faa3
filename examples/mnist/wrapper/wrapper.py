#!/usr/bin/env python
# coding:utf-8
"""mnist: recognise one handwritten digit in an image (the demo `aiges -mnist` writes).

Same interface as upstream's aiges_demo mnist wrapper, without torch or a download:
  input   payload "img"   a picture of one digit (PNG/JPEG/BMP; dark on light or light on dark)
  param   "ctrl"          any string, echoed back (as upstream's demo)
  output  "result"        text: JSON {"result": 7, "msg": "result is: 7", "probability": 0.99, "ctrl": ...}

The model (wrapper/model.npz) is a small numpy MLP trained by ../train.py on synthetic digits.
"""
import io
import json
import os
import sys

import numpy as np
from PIL import Image

from aiges.core.types import DataText, Once
from aiges.dto import Response, ResponseData
from aiges.sdk import WrapperBase, ImageBodyField, StringBodyField, StringParamField
from aiges.utils.log import log

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import digits  # noqa: E402 - the preprocessing and model shared with train.py

MODEL = os.path.join(HERE, "model.npz")
ERR_NO_MODEL = 100
ERR_NO_IMAGE = 101
ERR_BAD_IMAGE = 102


class UserRequest(object):
    input1 = ImageBodyField(key="img", path=os.path.join(HERE, "test_data", "7.png"), encoding="png")
    ctrl = StringParamField(key="ctrl", value="helloworld", description="echoed back in the result")


class UserResponse(object):
    accept1 = StringBodyField(key="result")


class Wrapper(WrapperBase):
    serviceId = "mnist"
    version = "v1"
    requestCls = UserRequest()
    responseCls = UserResponse()

    def wrapperInit(self, config):
        if not os.path.exists(MODEL):
            log.error("%s not found: run `python train.py` in the project directory", MODEL)
            return ERR_NO_MODEL
        with np.load(MODEL) as f:
            self.params = {k: f[k] for k in f.files}
        log.info("mnist model loaded from %s", MODEL)
        return 0

    def wrapperOnceExec(self, params, reqData, usrTag="", persId=0):
        node = reqData.get("img")
        if node is None:
            return Response().response_err(ERR_NO_IMAGE)
        try:
            img = Image.open(io.BytesIO(node.data))
            img.load()
        except OSError as e:
            log.warning("cannot read the image: %s", e)
            return Response().response_err(ERR_BAD_IMAGE)
        prob = digits.predict(self.params, digits.preprocess(img))[0]
        digit = int(np.argmax(prob))
        result = {"result": digit, "msg": "result is: %d" % digit, "probability": round(float(prob[digit]), 4),
                  "ctrl": params.get("ctrl", "")}
        item = ResponseData()
        item.key = "result"
        item.setDataType(DataText)
        item.status = Once
        item.setData(json.dumps(result).encode("utf-8"))
        res = Response()
        res.list = [item]
        return res

    def wrapperError(self, ret):
        return {ERR_NO_MODEL: "model.npz is missing: run `python train.py` in the project directory",
                ERR_NO_IMAGE: "payload 'img' is missing",
                ERR_BAD_IMAGE: "payload 'img' is not an image PIL can read"}.get(ret, "")

    def wrapperFini(self):
        return 0


if __name__ == "__main__":
    Wrapper().run()
