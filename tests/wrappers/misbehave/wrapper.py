"""Test wrapper that misbehaves on request, chosen by the "ctrl" param:

ok      answer the text (the load)
hang    a hung model call: sleep for an hour in the wrapper thread (the plugin's event loop,
        and so its health check, stays free)
freeze  a frozen worker: a catastrophic regex that holds the GIL forever, so nothing else in
        the process runs, health checks included
leak    keep MISBEHAVE_LEAK_MB (default 4) MB per call forever; once the process's RSS passes
        MISBEHAVE_OOM_MB (default 0 = never) it is killed with SIGKILL, as the kernel's OOM
        killer (or a cgroup memory limit) would do
"""
import os
import re
import signal
import time

from aiges.core.types import *  # noqa: F401,F403
from aiges.dto import Response, ResponseData
from aiges.sdk import WrapperBase, StringBodyField, StringParamField

LEAKED = []


def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)


class UserRequest(object):
    input1 = StringBodyField(key="text", value=b"x")
    ctrl = StringParamField(key="ctrl", value="ok")


class UserResponse(object):
    accept1 = StringBodyField(key="result")


class Wrapper(WrapperBase):
    serviceId = "misbehave"
    version = "v1"
    requestCls = UserRequest()
    responseCls = UserResponse()

    def wrapperInit(self, config):
        return 0

    def wrapperOnceExec(self, params, reqData, usrTag="", persId=0):
        ctrl = params.get("ctrl", "ok")
        if ctrl == "hang":
            time.sleep(3600)
        elif ctrl == "freeze":
            re.match(r"(a+)+$", "a" * 64 + "b")  # exponential backtracking in C, the GIL held throughout
        elif ctrl == "leak":
            chunk = bytearray(int(float(os.environ.get("MISBEHAVE_LEAK_MB", "4")) * 1024 * 1024))
            chunk[::4096] = b"x" * len(chunk[::4096])  # touch every page: resident, not just reserved
            LEAKED.append(chunk)
            limit = float(os.environ.get("MISBEHAVE_OOM_MB", "0"))
            if limit and rss_mb() > limit:
                os.kill(os.getpid(), signal.SIGKILL)
        res = Response()
        item = ResponseData()
        item.key = "result"
        item.setDataType(DataText)
        item.status = Once
        item.setData(reqData.get("text").data)
        res.list = [item]
        return res
