"""CHost: serves a ``libwrapper.so`` written to upstream's C ABI, with the Python host's interface.

The servicer, the lane and ``aiges check`` drive it exactly like the Python host: every method
returns a proto message and never raises for an engine failure.  What differs is inside:

- **Once**: ``[aiges] asyncMode = false`` (upstream's default) calls ``wrapperExec``, copies the
  answer and hands it back to ``wrapperExecFree`` (with the tag still alive: upstream freed it
  first); ``true`` calls ``wrapperExecAsync`` and waits for the first callback until the deadline.
- **Sessions**: results are pushed through ``aiges.callback`` like a Python wrapper's callback, so
  the session runner needs no C path (``polls_read`` is False).  With a callback (asyncMode)
  the library pushes from any thread; without one, this host reads with upstream's cadence: one
  ``wrapperRead`` per write (``[aiges] realTimeRlt``, default true; false = only after the last
  frame), then after the last frame every 50 ms until a final item or the session timeout.  A
  library whose read always returns data thus gives one result per write, not a flood.
- **Concurrency**: ctypes releases the GIL during every C call, so ``workerThreads`` calls run at
  once; ``[aiges] wrapperThreadSafe = false`` serialises them.  A session's calls never overlap
  (the servicer orders them; this host's own reads take the session's lock).
- **Schema**: a ``wrapper.py`` next to the library that only declares fields (and names the
  library) gives validation, ``/openapi.json`` and ``aiges check``; without one, ``{}``: the
  generic envelope, unvalidated.
"""
from __future__ import annotations

import ctypes
import functools
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

from aiges import errors
from aiges.plugin.hosts.c import abi
from aiges.plugin.hosts.c.tags import SLOT, TagArena
from aiges.plugin.hosts.choose import find_module
from aiges.plugin.hosts.python import WrapperHost
from aiges.sdk import callback as callback_mod
from aiges.wire.pb import aiges_inner_pb2 as pb

logger = logging.getLogger("aiges.plugin.c")
DEFAULT_LIB = "libwrapper.so"
TRAIL_INTERVAL = 0.05  # upstream's re-read period after the last frame
HINT_MARGIN = 0.1  # seconds: the plugin's no-callback answer leaves this much before the deadline
ASYNC_WAIT = 60.0  # a once request without deadline (an upstream host) waits this long for its callback
_KEEP: list[Any] = []  # callbacks handed to a library: alive for the process (libraries are never unloaded)
_FINAL = (2, 3)
F = TypeVar("F", bound=Callable[..., Any])
# what each entry point answers when the host itself fails (a bug, never a library result):
# the caller always gets an answer with a code and the reason, as from the Python host
_FAILED: dict[str, Callable[[tuple[Any, ...], str], Any]] = {
    "load": lambda a, m: pb.Ret(ret=errors.INIT_ERROR, msg=m),
    "init": lambda a, m: pb.Ret(ret=errors.INIT_ERROR, msg=m),
    "fini": lambda a, m: pb.Ret(ret=errors.WRAPPER_EXEC, msg=m),
    "once": lambda a, m: pb.Response(tag=a[0].tag, ret=errors.WRAPPER_EXEC, msg=m),
    "create": lambda a, m: pb.Handle(err_code=errors.WRAPPER_CREATE, msg=m),
    "write": lambda a, m: pb.Ret(ret=errors.WRAPPER_WRITE, msg=m),
    "read": lambda a, m: pb.Response(tag=a[1], ret=errors.WRAPPER_READ, msg=m),
    "destroy": lambda a, m: pb.Ret(ret=errors.WRAPPER_EXEC, msg=m),
}


def _answers(method: F) -> F:
    """Never raise out of an entry point: the caller gets ``ret`` + ``msg`` and the log the traceback."""
    fail = _FAILED[method.__name__]

    @functools.wraps(method)
    def run(self: CHost, *args: Any) -> Any:
        try:
            return method(self, *args)
        except Exception as e:  # noqa: BLE001
            logger.exception("C host: %s failed", method.__name__)
            return fail(args, f"the C host failed in {method.__name__}: {type(e).__name__}: {e}")
    return cast(F, run)


class _Result:
    """What ``aiges.callback.callback`` takes (a wrapper ``Response``'s shape) for C results."""

    __slots__ = ("list", "error_code", "error_message")

    def __init__(self, items: list[pb.ResponseData], code: int = 0, message: str = "") -> None:
        self.list = items
        self.error_code = code
        self.error_message = message


class _Once:
    """One ``wrapperExecAsync`` request waiting for its first callback."""

    __slots__ = ("event", "response", "lock")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.response: pb.Response | None = None
        self.lock = threading.Lock()

    def deliver(self, host: CHost, resp_addr: int, ret: int) -> int:
        with self.lock:
            if self.response is not None:
                return -1
            self.response = host._response(resp_addr, ret, "callback")
        self.event.set()
        return 0


class _Session:
    __slots__ = ("tag", "key", "slot", "ptr", "lock", "push_lock", "finished", "closed", "last", "trailing")

    def __init__(self, tag: str, key: bytes, slot: int) -> None:
        self.tag = tag  # the caller's tag: results are routed by it
        self.key = key  # what the library got as usrTag (the tag, unless that was unusable)
        self.slot = slot
        self.ptr = 0  # the library's handle
        self.lock = threading.Lock()  # held during the library's calls for this session
        self.push_lock = threading.Lock()  # results in order, none after the final one (callbacks race)
        self.finished = False  # a final item or an error was pushed: later results are refused
        self.closed = False  # destroyed
        self.last: list[pb.ResponseData] | None = None
        self.trailing = False

    def deliver(self, host: CHost, resp_addr: int, ret: int) -> int:
        if self.finished or self.closed:
            return -1
        resp = host._response(resp_addr, ret, "callback")
        if resp.ret == errors.WRAPPER_EXEC and not ret and "no data" in resp.msg:
            return 0  # an empty list is "nothing yet" in a session, not an error that ends it
        resp.tag = self.tag
        host._push_read(self, resp, dedupe=False)
        return 0


class CHost:
    has_batch = False  # the C ABI has no batch entry point

    def __init__(self, library: str | None = None, directory: str | None = None, module: str = "wrapper",
                 async_mode: bool = False, real_time: bool = True, thread_safe: bool = True,
                 session_timeout: float = 180.0) -> None:
        self.library = library  # as configured; resolved in load()
        self.directory = directory
        self.module = module
        self.async_mode = async_mode
        self.real_time = real_time
        self.thread_safe = thread_safe
        self.session_timeout = session_timeout
        self.lib: abi.Library | None = None
        self.path = ""
        self._decl: WrapperHost | None = None  # the wrapper.py that declares the fields, if any
        self._sessions_ok = False
        self._sessions: dict[str, _Session] = {}
        self._targets: dict[bytes, _Once | _Session] = {}  # usrTag -> who waits for its callbacks
        self._tags = TagArena()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._cb = abi.CALLBACK(self._on_callback)
        _KEEP.append(self._cb)

    # ---- the interface of the Python host
    @property
    def obj(self) -> Any:
        if self._decl is not None and self._decl.obj is not None:
            return self._decl.obj
        return self.lib

    @property
    def has_sessions(self) -> bool:
        """The library exports what streaming sessions need in the configured mode."""
        return self._sessions_ok

    @property
    def polls_read(self) -> bool:
        return False  # results are pushed: by the library's callback, or by this host's reads

    @_answers
    def load(self) -> pb.Ret:
        if self.lib is not None:
            return pb.Ret(ret=0)
        declared = ""
        base = os.path.abspath(self.directory or os.getcwd())
        # the declaration is looked for where the plugin would import it from (the wrapper
        # directory, else PYTHONPATH and the working directory: upstream's Go loader sets PYTHONPATH)
        found = find_module(self.directory, self.module, os.environ)
        if found is not None:
            self._decl = WrapperHost(self.module, self.directory or os.path.dirname(found))
            ret = self._decl.load()
            if ret.ret:
                return ret
            self._warn_logic()
            declared = str(getattr(type(self._decl.obj), "library", "") or "")
            base = os.path.dirname(os.path.abspath(self._decl.module_file))
        path = self._resolve(declared, base)
        try:
            lib = abi.Library(path, serial=not self.thread_safe)
        except OSError as e:
            msg = f"cannot load the C library {path}: {e}"
            if "/" not in path:
                msg += (" (searched LD_LIBRARY_PATH and the system's library paths; name the file with "
                        "[aiges] wrapperLib, or add its directory to LD_LIBRARY_PATH)")
            logger.error(msg)
            return pb.Ret(ret=errors.INIT_ERROR, msg=msg)
        need = ["wrapperInit"] + (["wrapperExecAsync"] if self.async_mode else ["wrapperExec", "wrapperExecFree"])
        missing = lib.missing(need)
        if missing:
            msg = self._missing_message(lib, missing)
            logger.error(msg)
            return pb.Ret(ret=errors.INIT_ERROR, msg=msg)
        self.lib, self.path = lib, path
        session = ["wrapperCreate", "wrapperWrite", "wrapperDestroy"] + ([] if self.async_mode else ["wrapperRead"])
        lacking = lib.missing(session)
        self._sessions_ok = not lacking
        version = lib.wrapperVersion() if lib.has("wrapperVersion") else ""
        logger.info("C engine %s loaded%s: once by %s, sessions %s%s", path,
                    f" (wrapperVersion {version!r})" if version else "",
                    "wrapperExecAsync + callback" if self.async_mode else "wrapperExec",
                    "not available (no " + ", ".join(lacking) + ")" if lacking else
                    "by callback" if self.async_mode else "by wrapperRead",
                    "" if self.thread_safe else "; calls serialised ([aiges] wrapperThreadSafe = false)")
        return pb.Ret(ret=0)

    def _resolve(self, declared: str, decl_dir: str) -> str:
        """``[aiges] wrapperLib`` (AIGES_WRAPPER_LIB, already absolute or a bare name), else the
        declaration's ``library`` (relative to wrapper.py), else libwrapper.so in the wrapper
        directory, else the bare name for the dynamic loader's search (LD_LIBRARY_PATH), as upstream."""
        if self.library:
            return self.library
        if declared:
            candidate = os.path.join(decl_dir, declared)
            return candidate if "/" in declared or os.path.exists(candidate) else declared
        local = os.path.join(os.path.abspath(self.directory or os.getcwd()), DEFAULT_LIB)
        return local if os.path.exists(local) else DEFAULT_LIB

    def _missing_message(self, lib: abi.Library, missing: list[str]) -> str:
        mode = f"[aiges] asyncMode = {'true' if self.async_mode else 'false'}"
        msg = f"{lib.path} does not export {', '.join(missing)} (needed with {mode})"
        if self.async_mode and "wrapperExecAsync" in missing and lib.has("wrapperExec"):
            msg += "; it has wrapperExec: set [aiges] asyncMode = false"
        elif not self.async_mode and "wrapperExec" in missing and lib.has("wrapperExecAsync"):
            msg += "; it has wrapperExecAsync: set [aiges] asyncMode = true"
        return msg + ('. A C++ library must give them C linkage: include wrapper.h (extern "C") in the file '
                      "that defines them; `nm -D` lists what it exports")

    def _warn_logic(self) -> None:
        """A wrapper.py next to a C library only declares; say so when it also has logic."""
        from aiges.sdk import WrapperBase
        cls = type(self._decl.obj) if self._decl is not None else None
        own = [m for m in ("wrapperOnceExec", "wrapperCreate", "wrapperWrite", "wrapperRead")
               if cls is not None and getattr(cls, m, None) is not getattr(WrapperBase, m, None)]
        if own:
            logger.warning("C engine mode: %s.py defines %s; only its fields are used (the C library answers)",
                           self.module, ", ".join(own))

    @_answers
    def init(self, config: dict[str, str]) -> pb.Ret:
        ret = self.load()
        if ret.ret:
            return ret
        lib = self.lib
        assert lib is not None
        # wrapperSetCtrl is not called, as upstream never did: a library sees the host it was
        # written for (and no Python callback can run on its threads outside asyncMode)
        block = abi.build(params=config)
        code = lib.wrapperInit(block.params)
        if code:
            msg = f"{self.path}: wrapperInit returned {code} ({self.error_text(code)})"
            logger.error(msg)
            return pb.Ret(ret=errors.USER_INIT_ERROR, msg=msg)
        return pb.Ret(ret=0)

    @_answers
    def fini(self) -> pb.Ret:
        lib = self.lib
        if lib is None:
            return pb.Ret(ret=0)
        for handle in list(self._sessions):
            logger.warning("session %s still open at shutdown: destroying it before wrapperFini", handle)
            self.destroy(handle)
        if not lib.has("wrapperFini"):
            return pb.Ret(ret=0)
        code = lib.wrapperFini()
        return pb.Ret(ret=code, msg=self.error_text(code) if code else "")

    def schema(self) -> str:
        ret = self.load()
        if ret.ret:
            raise RuntimeError(ret.msg)
        if self._decl is not None:
            return self._decl.schema()
        return '{"meta": {}}'  # no declared fields: /v1/<svcName> with the generic envelope, not validated

    def error_text(self, code: int) -> str:
        lib = self.lib
        text = lib.wrapperError(code) if lib is not None and lib.has("wrapperError") else ""
        return text or f"wrapper returned error code {code}"

    # ---- once
    @_answers
    def once(self, req: pb.Request, deadline: float | None) -> pb.Response:
        lib = self.lib
        tag = req.tag
        if lib is None:
            return pb.Response(tag=tag, ret=errors.USER_EXEC_ERROR, msg="wrapper is not initialised")
        if deadline is not None and time.monotonic() > deadline:
            return pb.Response(tag=tag, ret=errors.DEADLINE, msg="deadline passed while queued; wrapper not called")
        block = abi.build(req.params, req.list)
        if self.async_mode:
            return self._once_async(lib, req, block, deadline)
        usr = tag.encode("utf-8", "surrogateescape")
        out = ctypes.c_void_p()
        code = lib.wrapperExec(usr, block.params, block.data, out)
        if code:
            # as upstream: no wrapperExecFree after a failure (the library keeps what it made)
            return pb.Response(tag=tag, ret=code, msg=self.error_text(code))
        addr = out.value or 0
        resp = self._response(addr, 0, "wrapperExec", tag)
        if addr:
            freed = lib.wrapperExecFree(usr, out)
            if freed:
                logger.warning("wrapperExecFree returned %d (tag %s)", freed, tag)
        return resp

    def _once_async(self, lib: abi.Library, req: pb.Request, block: abi.Block, deadline: float | None) -> pb.Response:
        tag = req.tag
        waiter = _Once()
        key, slot = self._register(tag, waiter)  # before the call: a callback may come inline
        try:
            code = lib.wrapperExecAsync(slot, block.params, block.data, self._cb)
            if code:
                return pb.Response(tag=tag, ret=code, msg=self.error_text(code))
            # answer a little before the loader's own timer fires, so the client reads the hint
            # below rather than the loader's bare "no result within the deadline"
            wait = ASYNC_WAIT if deadline is None else max(0.0, deadline - time.monotonic() - HINT_MARGIN)
            if not waiter.event.wait(wait):
                return pb.Response(tag=tag, ret=errors.DEADLINE, msg=(
                    f"wrapperExecAsync returned 0 but did not call back within {wait:.3g}s; set [aiges] "
                    f"asyncMode = false if the library answers from wrapperExec"))
            resp = waiter.response
            assert resp is not None
            resp.tag = tag
            return resp
        finally:
            with self._lock:
                self._targets.pop(key, None)
            with waiter.lock:  # a callback from now on is refused (-1) instead of answering
                unanswered = waiter.response is None
                if unanswered:
                    waiter.response = pb.Response()
            # unanswered, the library may still be computing: its inputs stay valid for the grace too
            self._tags.retire(slot, block if unanswered else None)

    def once_batch(self, reqs: list[pb.Request], deadlines: list[float | None]) -> list[pb.Response]:
        return [self.once(r, d) for r, d in zip(reqs, deadlines, strict=True)]

    def batch_limits(self) -> tuple[int, float]:
        return 0, 0.0  # never asked: has_batch is False

    def _response(self, addr: int, ret: int, what: str, tag: str = "") -> pb.Response:
        """Copy a result list the library owns (or report ``ret``) into a Response."""
        if ret:
            return pb.Response(tag=tag, ret=ret, msg=self.error_text(ret))
        resp = pb.Response(tag=tag)
        try:
            abi.read_list(addr, resp.list)
        except abi.BadOutput as e:
            return pb.Response(tag=tag, ret=errors.WRAPPER_EXEC, msg=f"{what} returned an invalid list: {e}")
        if not resp.list:
            return pb.Response(tag=tag, ret=errors.WRAPPER_EXEC, msg=f"{what} returned 0 but no data "
                               f"({'respData NULL' if not addr else 'only empty items'})")
        return resp

    # ---- callbacks (any library thread; ctypes takes the GIL for us)
    def _register(self, tag: str, target: _Once | _Session) -> tuple[bytes, int]:
        key = tag.encode("utf-8", "surrogateescape")
        with self._lock:
            if not key or len(key) >= SLOT or key in self._targets:
                key = f"aiges-{next(self._ids)}".encode()
            self._targets[key] = target
        return key, self._tags.take(key)

    def _on_callback(self, tag_addr: int | None, resp_addr: int | None, ret: int) -> int:
        try:
            if not tag_addr:
                logger.warning("callback with usrTag NULL: refused (-1)")
                return -1
            key = ctypes.string_at(tag_addr)
            target = self._targets.get(key)
            if target is None:
                logger.info("callback for tag %r, which is unknown or has ended: refused (-1)", key.decode("utf-8",
                                                                                                        "replace"))
                return -1
            code = target.deliver(self, resp_addr or 0, ret)
            if code:
                logger.info("callback for tag %r after its final result: refused (-1)", key.decode("utf-8", "replace"))
            return code
        except BaseException:  # noqa: BLE001 - an exception must not cross into C
            logger.exception("callback failed")
            return -1

    # ---- sessions
    @_answers
    def create(self, req: pb.CreateRequest) -> pb.Handle:
        lib = self.lib
        if lib is None:
            return pb.Handle(err_code=errors.USER_EXEC_ERROR, msg="wrapper is not initialised")
        if not self._sessions_ok:
            need = ["wrapperCreate", "wrapperWrite", "wrapperDestroy"] + ([] if self.async_mode else ["wrapperRead"])
            return pb.Handle(err_code=errors.WRAPPER_CREATE, msg=(
                f"streaming sessions are not implemented by {os.path.basename(self.path)} "
                f"(it does not export {', '.join(lib.missing(need))})"))
        sess = _Session(req.tag, b"", 0)
        sess.key, sess.slot = self._register(req.tag, sess)
        block = abi.build(params=req.params)
        err = ctypes.c_int(0)
        ptr = lib.wrapperCreate(sess.slot, block.params, self._cb if self.async_mode else abi.NO_CALLBACK, err)
        if err.value or not ptr:
            self._unregister(sess)
            code = err.value or errors.WRAPPER_CREATE
            msg = self.error_text(err.value) if err.value else "wrapperCreate returned NULL (errNum 0)"
            return pb.Handle(err_code=code, msg=msg)
        sess.ptr = ptr
        handle = f"c{next(self._ids)}"
        self._sessions[handle] = sess
        return pb.Handle(handle=handle)

    def _unregister(self, sess: _Session) -> None:
        with self._lock:
            if self._targets.get(sess.key) is sess:
                del self._targets[sess.key]
        self._tags.retire(sess.slot)

    @_answers
    def write(self, msg: pb.WriteMessage) -> pb.Ret:
        lib = self.lib
        sess = self._sessions.get(msg.handle)
        if lib is None or sess is None:
            return pb.Ret(ret=errors.WRAPPER_WRITE, msg=f"no open session {msg.handle!r}")
        items = msg.req.list
        block = abi.build(items=items)
        with sess.lock:
            code = lib.wrapperWrite(sess.ptr, block.data)
        if code:
            return pb.Ret(ret=code, msg=self.error_text(code))
        last = bool(items) and all(d.status in _FINAL for d in items)
        if not self.async_mode and (self.real_time or last):
            self._read_once(sess, dedupe=False)
            if last and not sess.finished and not sess.trailing:
                sess.trailing = True
                threading.Thread(target=self._trail, args=(sess,), name=f"c-read-{msg.handle}", daemon=True).start()
        return pb.Ret(ret=0)

    def _read(self, sess: _Session) -> pb.Response | None:
        """One wrapperRead under the session's lock: None when nothing is ready."""
        lib = self.lib
        assert lib is not None
        out = ctypes.c_void_p()
        with sess.lock:
            if sess.closed:
                return None
            code = lib.wrapperRead(sess.ptr, out)
            if code:
                return pb.Response(tag=sess.tag, ret=code, msg=self.error_text(code))
            resp = pb.Response(tag=sess.tag)
            try:
                abi.read_list(out.value or 0, resp.list)
            except abi.BadOutput as e:
                return pb.Response(tag=sess.tag, ret=errors.WRAPPER_READ, msg=f"wrapperRead returned an invalid list: {e}")
        items = [d for d in resp.list if d.data or d.status in _FINAL]  # an empty middle item: nothing yet
        if len(items) == len(resp.list):
            return resp if items else None
        return pb.Response(tag=sess.tag, list=items) if items else None

    def _read_once(self, sess: _Session, dedupe: bool) -> None:
        resp = self._read(sess)
        if resp is not None:
            self._push_read(sess, resp, dedupe)

    def _push_read(self, sess: _Session, resp: pb.Response, dedupe: bool) -> None:
        with sess.push_lock:
            if sess.finished:
                return
            if resp.ret:
                sess.finished = True
            else:
                items = list(resp.list)
                if dedupe and items == sess.last:
                    return  # the same answer again while waiting for the final one
                sess.last = items
                if any(d.status in _FINAL for d in items):
                    sess.finished = True
            callback_mod.callback(_Result(list(resp.list), resp.ret, resp.msg), sess.tag)

    def _trail(self, sess: _Session) -> None:
        """After the last frame: re-read every 50 ms until a final item, the destroy or the timeout."""
        until = time.monotonic() + self.session_timeout
        while not sess.finished and not sess.closed and time.monotonic() < until:
            time.sleep(TRAIL_INTERVAL)
            self._read_once(sess, dedupe=True)

    @_answers
    def read(self, handle: str, tag: str) -> pb.Response | None:
        """One poll (an upstream host's wrapperRead RPC); our loader never calls it for C engines."""
        sess = self._sessions.get(handle)
        if sess is None or self.lib is None or self.async_mode:
            return None
        return self._read(sess)

    @_answers
    def destroy(self, handle: str) -> pb.Ret:
        lib = self.lib
        sess = self._sessions.pop(handle, None)
        if lib is None or sess is None:
            return pb.Ret(ret=0)
        sess.closed = True
        with sess.lock:
            code = lib.wrapperDestroy(sess.ptr)
        self._unregister(sess)
        return pb.Ret(ret=code, msg=self.error_text(code) if code else "")

