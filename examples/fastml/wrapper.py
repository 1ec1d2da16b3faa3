#!/usr/bin/env python
# coding:utf-8
"""A fastml-style service on ``POST /infer``: it answers what it received, typed.

Three inputs, one per kind of body (the loader routes a whole body by its Content-Type):
  ``text`` (text)          <- ``text/plain``                  read: node.data.decode("utf-8")
  ``doc``  (text, JSON)    <- ``application/json``            read: json.loads(node.data)
  ``file`` (other, bytes)  <- ``application/octet-stream``    read: node.data (bytes, unchanged)
and ``multipart/form-data``: a part named like an input feeds it (a file or a field), every
other field is a param (``params["lang"]``).  Each input's ``desc`` carries ``content_type``
and, for files, ``filename``.

The answer (``result``, JSON, so ``/infer`` embeds it in ``data`` as an object) describes every
input: its kind, size, sha256, content type, file name, and the text or the parsed JSON.
``?fail=1`` raises (a 500 whose sid is in error-access.log); ``?reject=1`` refuses the request
with ``response_err(10107, ...)`` (a 400).  The wrapper logs one line per request with the
standard ``logging`` module; it lands in the loader's logs/app.log.
"""
import hashlib
import json
import logging

from aiges import errors
from aiges.core.types import OTHER
from aiges.dto import Response, ResponseData
from aiges.sdk import JsonBodyField, PayloadField, StringBodyField, StringParamField, WrapperBase

log = logging.getLogger("fastml_example")


class UserRequest(object):
    text = StringBodyField(key="text", value="hello fastml")
    doc = JsonBodyField(key="doc", value={"a": 1, "b": [1, 2]})
    file = PayloadField(key="file", data_type=OTHER)
    lang = StringParamField(key="lang", value="en", maxLength=16, description="any short string")


class UserResponse(object):
    result = JsonBodyField(key="result")


KINDS = {"text": "text", "doc": "json", "file": "bytes"}


def describe(node):
    """One input as its user expects it: text as str, JSON parsed, bytes as bytes."""
    desc = dict(node.desc)  # a protobuf map in the plugin; a dict in Wrapper().run()
    data = bytes(node.data)
    out = {"kind": KINDS.get(node.key, "bytes"), "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
           "content_type": desc.get("content_type"), "filename": desc.get("filename")}
    if node.key == "text":
        out["text"] = data.decode("utf-8")
    elif node.key == "doc":
        out["json"] = json.loads(data)  # Python ints are unbounded: 30-digit numbers survive
    return out


class Wrapper(WrapperBase):
    serviceId = "fastml"
    version = "v1"
    requestCls = UserRequest()
    responseCls = UserResponse()

    def wrapperInit(self, config):
        log.info("fastml example ready")
        return 0

    def wrapperOnceExec(self, params, reqData, usrTag="", persId=0):
        sid = params.get("sid", "")
        if params.get("fail"):
            log.error("sid=%s asked to fail", sid)
            raise RuntimeError("failing as asked (?fail=1)")
        if params.get("reject"):
            return Response().response_err(errors.INVALID_PARAM, "reject: the request asked to be refused")
        inputs = {}
        for node in reqData.list:
            try:
                inputs.setdefault(node.key, []).append(describe(node))
            except ValueError as e:  # text not UTF-8, doc not JSON
                return Response().response_err(errors.INVALID_DATA, "%s: %s" % (node.key, e))
        log.info("sid=%s handled inputs=%s params=%s", sid, ",".join(sorted(inputs)),
                 ",".join(sorted(k for k in params if k != "sid")))
        item = ResponseData()
        item.key = "result"
        item.setDataType(0)
        item.status = 3
        item.setData(json.dumps({"inputs": inputs, "params": {k: v for k, v in params.items() if k != "sid"},
                                 "sid": sid}, ensure_ascii=False))
        res = Response()
        res.list = [item]
        return res


if __name__ == "__main__":
    Wrapper().run()
