"""The Python host: ``WrapperHost`` imports the user's ``wrapper.py`` and calls its methods.  Sync code, run in threads.

Every method returns a proto message and never raises for a wrapper failure: exceptions and
error codes become ``ret`` + ``msg`` so no caller ever waits for a timeout.
"""
from __future__ import annotations

import importlib
import inspect
import json
import logging
import os
import sys
import time
import traceback
from typing import Any

from aiges import errors
from aiges.plugin.convert import describe_exception, exception_text, to_response
from aiges.sdk.dto import DataListCls
from aiges.wire.pb import aiges_inner_pb2 as pb
from aiges.wire.schema import strict_document

logger = logging.getLogger("aiges.plugin")


class WrapperHost:
    def __init__(self, module: str = "wrapper", directory: str | None = None) -> None:
        self.module_name = module
        self.directory = directory
        self.obj: Any = None
        self.module_file = ""
        self._create_kw: str | None = None
        self._has_read = False
        self._read_takes_sid = False
        self.has_batch = False  # the wrapper defines wrapperOnceExecBatch (dynamic batching)
        self._batch_only = False

    # ---- lifecycle
    def load(self) -> pb.Ret:
        """Import ``wrapper`` and instantiate ``Wrapper`` (upstream did both inside wrapperInit)."""
        if self.obj is not None:
            return pb.Ret(ret=0)
        if self.directory:
            path = os.path.abspath(self.directory)
            if path not in sys.path:
                sys.path.insert(0, path)
        if os.getcwd() not in sys.path:
            sys.path.append(os.getcwd())
        where = os.path.abspath(self.directory) if self.directory else f"PYTHONPATH and {os.getcwd()}"
        try:
            mod = importlib.import_module(self.module_name)
        except BaseException as e:  # noqa: BLE001 - any import failure is reported, never swallowed
            if isinstance(e, ModuleNotFoundError) and e.name == self.module_name:
                msg = f"no {self.module_name}.py found (searched {where})"
            else:
                msg = f"importing {self.module_name}.py (from {where}) raised {describe_exception(e)}"
            logger.error(msg)
            logger.debug("%s", traceback.format_exc())
            return pb.Ret(ret=errors.INIT_ERROR, msg=msg)
        self.module_file = getattr(mod, "__file__", "") or self.module_name
        cls = getattr(mod, "Wrapper", None)
        if cls is None:
            msg = f"{self.module_file} defines no class Wrapper"
            logger.error(msg)
            return pb.Ret(ret=errors.INIT_ERROR, msg=msg)
        try:
            self.obj = cls(legacy=False, is_aipaas=True, keep_schema_default_value=True)
        except TypeError:
            try:
                self.obj = cls()
            except BaseException as e:  # noqa: BLE001 - SystemExit, KeyboardInterrupt from wrapper code too
                return self._init_failure("Wrapper()", e)
        except BaseException as e:  # noqa: BLE001 - SystemExit, KeyboardInterrupt from wrapper code too
            return self._init_failure("Wrapper()", e)
        self._create_kw = _tag_keyword(self.obj.wrapperCreate)
        self._read_takes_sid = _positional_count(self.obj.wrapperRead) >= 2
        read = getattr(type(self.obj), "wrapperRead", None)
        from aiges.sdk import WrapperBase
        self._has_read = read is not None and read is not getattr(WrapperBase, "wrapperRead", None)
        self.has_batch = callable(getattr(self.obj, "wrapperOnceExecBatch", None))
        # a wrapper with only the batch entry point still answers single calls (an upstream host)
        self._batch_only = self.has_batch and \
            getattr(type(self.obj), "wrapperOnceExec", None) is getattr(WrapperBase, "wrapperOnceExec", None)
        return pb.Ret(ret=0)

    def _init_failure(self, what: str, e: BaseException) -> pb.Ret:
        msg = f"{self.module_file}: {exception_text(what, e)}"
        logger.error(msg)  # one line; the traceback at debug level ([log] level = "debug")
        logger.debug("%s", traceback.format_exc())
        return pb.Ret(ret=errors.INIT_ERROR, msg=msg)

    def init(self, config: dict[str, str]) -> pb.Ret:
        ret = self.load()
        if ret.ret:
            return ret
        try:
            code = self.obj.wrapperInit(config)
        except BaseException as e:  # noqa: BLE001 - SystemExit, KeyboardInterrupt from wrapper code too
            return self._init_failure("wrapperInit", e)
        if code not in (0, None):
            msg = f"{self.module_file}: wrapperInit returned {code}"
            detail = self.error_text(int(code)) if isinstance(code, int) else ""
            if detail and not detail.startswith("wrapper returned"):
                msg += f" ({detail})"
            logger.error(msg)
            return pb.Ret(ret=errors.USER_INIT_ERROR, msg=msg)
        return pb.Ret(ret=0)

    def fini(self) -> pb.Ret:
        if self.obj is None:
            return pb.Ret(ret=0)
        try:
            code = self.obj.wrapperFini()
        except BaseException as e:  # noqa: BLE001 - SystemExit, KeyboardInterrupt from wrapper code too
            logger.error("wrapperFini raised %s: %s", type(e).__name__, e)
            return pb.Ret(ret=errors.WRAPPER_EXEC, msg=exception_text("wrapperFini", e))
        return pb.Ret(ret=int(code or 0))

    def schema(self) -> str:
        ret = self.load()
        if ret.ret:
            raise RuntimeError(ret.msg)
        text = str(self.obj.schema())
        # a wrapper may build its own schema(): upstream's loader exits on any keyword its strict
        # parser does not know, so what goes over wrapperSchema is always the strict view
        try:
            doc = json.loads(text)
        except ValueError:
            return text  # the loader names the problem ("wrapper schema is not valid JSON")
        return json.dumps(strict_document(doc), ensure_ascii=False) if isinstance(doc, dict) else text

    def batch_limits(self) -> tuple[int, float]:
        """(max_batch_size, max_queue_delay_ms) as the wrapper class declares them; 0 = not given."""
        return int(getattr(self.obj, "max_batch_size", 0) or 0), float(getattr(self.obj, "max_queue_delay_ms", 0) or 0)

    # ---- calls
    def error_text(self, code: int) -> str:
        try:
            text = self.obj.wrapperError(code) if self.obj is not None else ""
        except BaseException as e:  # noqa: BLE001 - SystemExit, KeyboardInterrupt from wrapper code too
            text = f"(wrapperError raised {type(e).__name__}: {e})"
        return str(text) if text else f"wrapper returned error code {code}"

    def once(self, req: pb.Request, deadline: float | None) -> pb.Response:
        tag = req.tag
        if self.obj is None:
            return pb.Response(tag=tag, ret=errors.USER_EXEC_ERROR, msg="wrapper is not initialised")
        if self._batch_only:
            return self.once_batch([req], [deadline])[0]
        if deadline is not None and time.monotonic() > deadline:
            return _too_late(tag)
        try:
            resp = self.obj.wrapperOnceExec(dict(req.params), DataListCls(list(req.list)))
        except BaseException as e:  # noqa: BLE001 - SystemExit, KeyboardInterrupt from wrapper code too
            logger.error("wrapperOnceExec raised (tag %s)\n%s", tag, traceback.format_exc())
            return pb.Response(tag=tag, ret=errors.WRAPPER_EXEC, msg=exception_text("wrapperOnceExec", e))
        return to_response(resp, tag, "wrapperOnceExec", self.error_text)

    def once_batch(self, reqs: list[pb.Request], deadlines: list[float | None]) -> list[pb.Response]:
        """``wrapperOnceExecBatch(requests)`` with ``requests`` a list of ``(params, reqData)``;
        it returns one ``Response`` per request, in order.  An item that is ``response_err(N)``,
        an exception instance or otherwise invalid fails only its own request; the call raising or
        returning the wrong number of items fails them all, each with the reason."""
        if self.obj is None:
            return [pb.Response(tag=r.tag, ret=errors.USER_EXEC_ERROR, msg="wrapper is not initialised") for r in reqs]
        now = time.monotonic()
        out = {i: _too_late(r.tag) for i, (r, d) in enumerate(zip(reqs, deadlines, strict=True))
               if d is not None and now > d}
        live = [i for i in range(len(reqs)) if i not in out]
        if live:
            batch = [(dict(reqs[i].params), DataListCls(list(reqs[i].list))) for i in live]
            out.update(zip(live, self._call_batch(batch, [reqs[i].tag for i in live]), strict=True))
        return [out[i] for i in range(len(reqs))]

    def _call_batch(self, batch: list[tuple[dict[str, str], DataListCls]], tags: list[str]) -> list[pb.Response]:
        try:
            results = self.obj.wrapperOnceExecBatch(batch)
        except BaseException as e:  # noqa: BLE001 - SystemExit, KeyboardInterrupt from wrapper code too
            logger.error("wrapperOnceExecBatch raised (batch of %d)\n%s", len(batch), traceback.format_exc())
            msg = exception_text("wrapperOnceExecBatch", e)
            return [pb.Response(tag=t, ret=errors.WRAPPER_EXEC, msg=msg) for t in tags]
        try:
            results = list(results)
        except TypeError:
            results = None
        if results is None or len(results) != len(batch):
            got = "None" if results is None else f"{len(results)} items"
            msg = (f"wrapperOnceExecBatch returned {got} for a batch of {len(batch)}; "
                   "return a list with one Response per request, in order")
            logger.error(msg)
            return [pb.Response(tag=t, ret=errors.WRAPPER_EXEC, msg=msg) for t in tags]
        out = []
        for tag, res in zip(tags, results, strict=True):
            if isinstance(res, BaseException):
                out.append(pb.Response(tag=tag, ret=errors.WRAPPER_EXEC, msg=exception_text("wrapperOnceExecBatch", res)))
            else:
                out.append(to_response(res, tag, "wrapperOnceExecBatch", self.error_text))
        return out

    def create(self, req: pb.CreateRequest) -> pb.Handle:
        if self.obj is None:
            return pb.Handle(err_code=errors.USER_EXEC_ERROR, msg="wrapper is not initialised")
        kw = {self._create_kw: req.tag} if self._create_kw else {}
        try:
            s = self.obj.wrapperCreate(dict(req.params), sid=req.sid, **kw)
        except BaseException as e:  # noqa: BLE001 - SystemExit, KeyboardInterrupt from wrapper code too
            logger.error("wrapperCreate raised\n%s", traceback.format_exc())
            return pb.Handle(err_code=errors.WRAPPER_CREATE, msg=exception_text("wrapperCreate", e))
        code = int(getattr(s, "error_code", 0) or 0)
        handle = str(getattr(s, "handle", "") or "")
        if code:
            return pb.Handle(handle=handle, err_code=code, msg=self.error_text(code))
        if not handle:
            return pb.Handle(err_code=errors.WRAPPER_CREATE, msg="wrapperCreate returned no handle")
        return pb.Handle(handle=handle)

    def write(self, msg: pb.WriteMessage) -> pb.Ret:
        if self.obj is None:
            return pb.Ret(ret=errors.USER_EXEC_ERROR, msg="wrapper is not initialised")
        try:
            req = DataListCls(list(msg.req.list), dict(msg.req.params))
            code = self.obj.wrapperWrite(msg.handle, req, msg.sid)
        except BaseException as e:  # noqa: BLE001 - SystemExit, KeyboardInterrupt from wrapper code too
            logger.error("wrapperWrite raised\n%s", traceback.format_exc())
            return pb.Ret(ret=errors.WRAPPER_WRITE, msg=exception_text("wrapperWrite", e))
        code = int(code or 0)
        return pb.Ret(ret=code, msg=self.error_text(code) if code else "")

    @property
    def polls_read(self) -> bool:
        """True when the wrapper returns session results from wrapperRead instead of callback."""
        return self._has_read

    def read(self, handle: str, tag: str) -> pb.Response | None:
        """One wrapperRead poll: a Response to send, or None when nothing is ready."""
        try:
            resp = self.obj.wrapperRead(handle, tag) if self._read_takes_sid else self.obj.wrapperRead(handle)
        except BaseException as e:  # noqa: BLE001 - SystemExit, KeyboardInterrupt from wrapper code too
            logger.error("wrapperRead raised\n%s", traceback.format_exc())
            return pb.Response(tag=tag, ret=errors.WRAPPER_READ, msg=exception_text("wrapperRead", e))
        if resp is None:
            return None
        out = to_response(resp, tag, "wrapperRead", self.error_text)
        if out.ret == errors.WRAPPER_EXEC and not out.list and "empty" in out.msg:
            return None  # nothing ready yet
        if not out.ret and all(not d.data and d.status in (0, 1) for d in out.list):
            return None  # upstream examples answer "nothing yet" with an empty status-1 item
        return out

    def destroy(self, handle: str) -> pb.Ret:
        if self.obj is None:
            return pb.Ret(ret=0)
        try:
            code = self.obj.wrapperDestroy(handle)
        except BaseException as e:  # noqa: BLE001 - SystemExit, KeyboardInterrupt from wrapper code too
            logger.error("wrapperDestroy raised\n%s", traceback.format_exc())
            return pb.Ret(ret=errors.WRAPPER_EXEC, msg=exception_text("wrapperDestroy", e))
        code = int(code or 0) if isinstance(code, int) else 0
        return pb.Ret(ret=code, msg=self.error_text(code) if code else "")


def _too_late(tag: str) -> pb.Response:
    return pb.Response(tag=tag, ret=errors.DEADLINE, msg="deadline passed while queued; wrapper not called")


def _tag_keyword(fn: Any) -> str | None:
    """Which keyword the wrapper's wrapperCreate takes the tag by: upstream gRPC uses ``userTag``,
    upstream's base class and Cgo-style wrappers ``usrTag``.  Calling with the wrong one raised
    TypeError upstream."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return "userTag"
    if "userTag" in params:
        return "userTag"
    if "usrTag" in params:
        return "usrTag"
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return "userTag"
    return None


def _positional_count(fn: Any) -> int:
    """How many positional arguments a bound method takes (upstream examples vary: (handle) or
    (handle, sid) for wrapperRead)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 1
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        return 99
    return sum(1 for p in params if p.kind in kinds)
