"""``aiges check [DIR]``: run a wrapper the way the plugin will, with its declared test values.

The wrapper is imported and called through :class:`aiges.plugin.hosts.python.WrapperHost` (the plugin's
own code); the request is built from the declared test values with their full data (as
``Wrapper().run()`` uses them), parsed by the loader's envelope codec and checked by the loader's
validator; outputs are checked against the declared accepts.  So "check passes" means "serves the
test values".  Swagger's example (what "Try it out" sends) is validated too; a test file too big
to embed in it is a warning, not a failure.  Every failure comes with the fix.
"""
from __future__ import annotations

import base64
import functools
import json
import os
import queue
import re
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from aiges import config
from aiges.config import Settings
from aiges.sdk import TYPE_NAMES, WrapperBase, callback, output_problems
from aiges.wire.pb import aiges_inner_pb2 as pb

SESSION_WAIT = 10.0  # seconds to wait for a session's last result
CALL_TIMEOUT = 120.0  # a wrapper call that takes longer is reported as hanging
SERVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class Step:
    title: str
    ok: bool = True
    problems: list[tuple[str, str]] = field(default_factory=list)  # (what is wrong, how to fix it)
    warnings: list[tuple[str, str]] = field(default_factory=list)  # (worth knowing, what to do about it)

    def fail(self, problem: str, fix: str) -> Step:
        self.ok = False
        self.problems.append((problem, fix))
        return self

    def warn(self, problem: str, hint: str) -> Step:
        """Worth knowing, nothing broken: the step still passes."""
        self.warnings.append((problem, hint))
        return self


@dataclass
class Target:
    wrapper_dir: str
    module: str
    config: dict[str, str] | None  # the [wrapper] section of aiges.toml, None without a config file
    config_path: str | None
    settings: Settings | None = None  # the whole aiges.toml (a C engine's [aiges] keys)


class CheckError(Exception):
    """The wrapper cannot be found: nothing to check."""


def locate(directory: str) -> Target:
    """DIR may hold wrapper.py, or be a project whose aiges.toml names wrapperDir, or have wrapper/."""
    directory = os.path.abspath(directory)
    if os.path.isfile(directory) and directory.endswith(".py"):
        return Target(os.path.dirname(directory), os.path.basename(directory)[:-3], None, None)
    if not os.path.isdir(directory):
        raise CheckError(f"{directory} is not a directory")
    cfg_path = os.path.join(directory, "aiges.toml")
    if os.path.isfile(cfg_path):
        try:
            settings = config.load(cfg_path)
        except config.ConfigError as e:
            raise CheckError(f"{cfg_path}: {e}") from None
        wrapper_dir = settings.wrapper_dir or directory
        module = settings.wrapper_module
        if os.path.isfile(os.path.join(wrapper_dir, module + ".py")):
            return Target(wrapper_dir, module, dict(settings.wrapper_config), cfg_path, settings)
        if not settings.wrapper_dir and os.path.isfile(os.path.join(directory, "wrapper", module + ".py")):
            # the loader would not find it either: say how to fix the config rather than check another layout
            raise CheckError(f"{cfg_path} has no [aiges] wrapperDir, so `aiges -m 0` looks for {module}.py on "
                             f"PYTHONPATH and in the working directory, not in wrapper/; add "
                             f"wrapperDir = \"wrapper\" to its [aiges] section")
        if settings.wrapper_lib or os.path.isfile(os.path.join(wrapper_dir, "libwrapper.so")):
            raise CheckError(f"no {module}.py in {wrapper_dir} (from {cfg_path}): a C engine is checked with the "
                             f"test values a wrapper.py declares next to it (its fields and library = "
                             f"\"libwrapper.so\"; `aiges create --lang c` writes one)")
        raise CheckError(f"no {module}.py in {wrapper_dir} (from {cfg_path}); set [aiges] wrapperDir to its directory")
    for d in (directory, os.path.join(directory, "wrapper")):
        if os.path.isfile(os.path.join(d, "wrapper.py")):
            return Target(d, "wrapper", None, None)
    raise CheckError(f"no wrapper.py in {directory} or {directory}/wrapper, and no aiges.toml naming it")


def _timed(fn: Callable[[], Any], timeout: float = CALL_TIMEOUT) -> tuple[Any, float]:
    """Run a wrapper call in a thread so a hanging wrapper is reported instead of hanging check."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - reported to the user, never swallowed
            box["error"] = e

    started = time.perf_counter()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    elapsed = time.perf_counter() - started
    if t.is_alive():
        raise TimeoutError(f"did not return within {timeout:.0f}s")
    if "error" in box:
        raise box["error"]
    return box.get("value"), elapsed


def _kb(n: int) -> str:
    return f"{n / 1024:.0f} KB"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def _preview(d: Any) -> str:
    kind = TYPE_NAMES.get(d.type, "other")
    if d.type == 0:
        text = bytes(d.data).decode("utf-8", "replace")
        return f"{d.key} ({kind}, {len(d.data)} bytes): {text[:80]}{'...' if len(text) > 80 else ''}"
    return f"{d.key} ({kind}, {len(d.data)} bytes)"


WRAPPER_METHODS = ("wrapperInit", "wrapperOnceExec", "wrapperCreate", "wrapperWrite", "wrapperRead",
                   "wrapperDestroy", "wrapperFini")


class RaisedIn:
    """Remembers the last exception a wrapper method raised, to name the user's own line.

    The plugin's message names the innermost frame, which is often a library's (``Image.py:3283``);
    the line to fix is the innermost one in the project's own files."""

    def __init__(self, project_dir: str) -> None:
        self.project_dir = os.path.abspath(project_dir)
        self.last: BaseException | None = None

    def watch(self, obj: Any) -> None:
        for name in WRAPPER_METHODS:
            fn = getattr(obj, name, None)
            if callable(fn):
                try:
                    setattr(obj, name, self._recording(fn))
                except AttributeError:  # __slots__ or a read-only attribute: messages lack the line
                    pass

    def _recording(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)  # keeps the signature the host inspects (userTag / usrTag, wrapperRead's args)
        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except BaseException as e:
                self.last = e
                raise
        return call

    def located(self, message: str) -> str:
        """``message`` with the user's own line of the last exception, then forget it:
        ``... raised KeyError: 'x' (in wrapper.py:42, analyse: img.load())``.  The plugin's short
        ``(wrapper.py:42)`` is dropped when it names that same line (a library's line stays)."""
        e, self.last = self.last, None
        if e is None:
            return message
        own = [f for f in traceback.extract_tb(e.__traceback__)
               if os.path.abspath(f.filename).startswith(self.project_dir + os.sep)
               and "site-packages" not in f.filename and os.path.abspath(f.filename) != os.path.abspath(__file__)]
        if not own:
            return message
        f = own[-1]
        code = f": {f.line.strip()}" if f.line else ""
        short = f" ({os.path.basename(f.filename)}:{f.lineno})"
        if message.endswith(short):
            message = message[:-len(short)]
        return f"{message} (in {os.path.relpath(f.filename, self.project_dir)}:{f.lineno}, {f.name}{code})"


class Checker:
    def __init__(self, target: Target, session_wait: float = SESSION_WAIT) -> None:
        self.target = target
        self.session_wait = session_wait
        self.host = _host(target)
        self.steps: list[Step] = []
        self.cls: Any = None
        self.schema: dict[str, Any] = {}
        self.parsed: Any = None  # the test request as the loader parses it (envelope.Parsed)
        self.raised = RaisedIn(target.wrapper_dir)

    # ---- steps
    def run(self) -> list[Step]:
        if self.load() and self.declarations():
            self.test_request()
            self.swagger_example()
            if self.init():
                self.once()
                if self.has_session():
                    self.session()
                self.fini()
        return self.steps

    def add(self, title: str) -> Step:
        step = Step(title)
        self.steps.append(step)
        return step

    def load(self) -> bool:
        step = self.add(f"import {self.target.module}.py and create Wrapper()")
        sys.modules.pop(self.target.module, None)  # a second check in one process re-imports
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ret = self.host.load()
        if ret.ret and self.c_engine and ("C library" in ret.msg or "does not export" in ret.msg):
            step.fail(ret.msg, "build the library (`make`), or point [aiges] wrapperLib / the declaration's "
                               "library = \"...\" at it")
            return False
        if ret.ret:
            step.fail(ret.msg, f"run `python {os.path.join(self.target.wrapper_dir, self.target.module)}.py` "
                               f"to see the full traceback")
            return False
        self.cls = type(self.host.obj)
        self.raised.watch(self.host.obj)
        if not issubclass(self.cls, WrapperBase):
            step.fail("Wrapper does not subclass aiges.sdk.WrapperBase",
                      "declare it as `class Wrapper(WrapperBase):` (from aiges.sdk import WrapperBase)")
            return False
        data_step = self.add("test data files exist")
        for w in caught:
            if "does not exist" in str(w.message):
                data_step.fail(str(w.message), f"the path is relative to the working directory {os.getcwd()}; "
                                               "use os.path.join(os.path.dirname(os.path.abspath(__file__)), "
                                               "\"test_data\", NAME)")
        return True

    def declarations(self) -> bool:
        cls = self.cls
        step = self.add(f"declarations: serviceId {cls.serviceId!r}, version {cls.version!r}, "
                        f"routes {', '.join(cls.routes())}")
        if not cls.serviceId or not SERVICE_ID.match(str(cls.serviceId)):
            step.fail(f"serviceId {cls.serviceId!r} is not a usable service name",
                      "set serviceId to letters, digits, '_', '-' or '.' (it names the route and the "
                      "parameter section)")
        if not cls.version:
            step.fail("version is empty", "set version = \"v1\"")
        for r in cls.routes():
            if not str(r).startswith("/"):
                step.fail(f"route {r!r} does not start with '/'", f"set route = \"/{r}\"")
        f = cls.fields()
        if not f["inputs"]:
            step.fail("requestCls declares no inputs (payload fields)",
                      "add e.g. `input1 = StringBodyField(key=\"text\", value=b\"hello\")` to the request class "
                      "and set requestCls = UserRequest()")
        if not f["accepts"]:
            step.fail("responseCls declares no outputs",
                      "add e.g. `accept1 = StringBodyField(key=\"result\")` to the response class and set "
                      "responseCls = UserResponse()")
        seen: dict[tuple[str, str], str] = {}  # (where the key lives in a request, key) -> what uses it
        for kind, items in (("input", f["inputs"]), ("param", f["params"]), ("output", f["accepts"])):
            space = "payload" if kind == "input" else f"parameter.{cls.serviceId}"
            for x in items:
                if (space, x.key) in seen:
                    step.fail(f"{space}.{x.key} is declared twice (as {seen[(space, x.key)]} and as {kind})",
                              "give each input its own key, and each param and output its own key (params and "
                              "the outputs' expect objects share parameter.<svc>)")
                seen[(space, x.key)] = kind
        try:
            self.schema = json.loads(self.host.schema())
        except Exception as e:  # noqa: BLE001
            step.fail(f"schema() failed: {type(e).__name__}: {e}",
                      "do not override schema(); it is generated from the fields")
            return False  # nothing further can be built without a schema
        data = self.add("test values follow the declared rules")
        from aiges.loader.validate import param_problem, param_rules
        declared = {p.key: p for p in f["params"]}
        for r in param_rules(self.schema):
            value = declared[r.key].test_value if r.key in declared else None
            if value is None or value == "":
                if r.required:
                    data.fail(f"required param '{r.key}' has no test value",
                              f"give it one: value=... in the {type(declared[r.key]).__name__}")
                continue
            m = param_problem(r, f"param '{r.key}' test value", value)
            if m:
                data.fail(m, f"change value= of '{r.key}' or its declared limits/enums")
        for i in f["inputs"]:
            if not i.raw_test_bytes() and not getattr(i, "path", ""):  # a missing file is reported above
                data.fail(f"input '{i.key}' has no test data",
                          "give the field a test value: path=\"test_data/...\" for files, value=b\"...\" for text")
        return True  # the wrapper can still run: its answers are worth reporting too

    def test_request(self) -> None:
        """The request check sends: the declared test values with their full data, as ``run()``
        uses them, parsed and validated (and integer params normalised) as the loader does."""
        from aiges import errors
        from aiges.loader import envelope
        from aiges.loader.openapi import example_request
        svc = str(self.cls.serviceId)
        step = self.add("the declared test values (full data) pass the loader's validation")
        doc = example_request(self.schema, svc)  # params repaired to valid values, as a client sends them
        payload: dict[str, Any] = {}
        for i in self.cls.fields()["inputs"]:
            item = (doc.get("payload") or {}).get(i.key)
            data = i.raw_test_bytes()
            if item is not None and data:  # an input with no test data is left out (inputs are optional)
                item[i.type_name] = base64.b64encode(data).decode("ascii")
                payload[i.key] = item
        doc["payload"] = payload
        try:
            self.parsed = envelope.parse(doc, (svc,))
        except errors.AigesError as e:
            step.fail(e.message, "give every input test data (path= or value=)")
            return
        validator = self.validator()
        for m in validator.problems(self.parsed.params, self.parsed.raw_params, self.parsed.items,
                                    expect=self.parsed.expect):
            step.fail(m, "make the field's test value follow its declared rules")
        validator.normalise(self.parsed.params, self.parsed.raw_params)

    def swagger_example(self) -> None:
        """What Swagger's "Try it out" sends: a test file over the example limit is left out of
        it, which is a warning (the service is fine; the page needs a file pasted in)."""
        from aiges import errors
        from aiges.loader import envelope
        from aiges.loader.openapi import example_request
        from aiges.sdk import EXAMPLE_LIMIT
        svc = str(self.cls.serviceId)
        step = self.add("Swagger's example request (Try it out) passes the loader's validation")
        try:
            parsed = envelope.parse(example_request(self.schema, svc), (svc,))
        except errors.AigesError as e:
            step.fail(e.message, "give every input test data (path= or value=)")
            return
        left_out = {str(i["key"]): i for i in (self.schema.get("fields") or {}).get("inputs") or []
                    if i.get("exampleNote")}
        items = [d for d in parsed.items if d.key not in left_out]
        for m in self.validator().problems(parsed.params, parsed.raw_params, items, expect=parsed.expect):
            step.fail(m, "make the field's test value follow its declared rules")
        for key, i in left_out.items():
            size = int(i.get("exampleBytes") or 0)
            kind = i.get("dataType", "other")
            step.warn(f"the Swagger example leaves out payload.{key}.{kind} ({_kb(size)} > the "
                      f"{_kb(EXAMPLE_LIMIT)} example limit): Try it out will need the base64 of a file pasted in",
                      f"nothing to fix for serving (this check ran with the full file); for a complete example, "
                      f"use a test file of at most {_kb(EXAMPLE_LIMIT)}")

    def validator(self) -> Any:
        from aiges.loader.validate import Validator
        return Validator(self.schema, str(self.cls.serviceId))

    def init(self) -> bool:
        cfg = self.target.config if self.target.config is not None else {
            str(k): str(v) for k, v in dict(getattr(self.cls, "config", {}) or {}).items()}
        where = f"[wrapper] of {self.target.config_path}" if self.target.config_path else "Wrapper.config"
        step = self.add(f"wrapperInit(config from {where})")
        try:
            ret, took = _timed(lambda: self.host.init(cfg))
        except TimeoutError as e:
            step.fail(f"wrapperInit {e}", "load the model in wrapperInit without waiting on anything external")
            return False
        step.title += f" -> {ret.ret} ({_ms(took)})"
        if ret.ret:
            step.fail(self.raised.located(ret.msg), "return 0 from wrapperInit once the model is loaded; "
                                                    "wrapperError(code) explains a non-zero code")
        return not ret.ret

    def _params(self) -> dict[str, str]:
        params = dict(self.parsed.params) if self.parsed else {}
        params["sid"] = "aiges-check-0001"
        return params

    def _items(self, status: int | None = None) -> list[pb.RequestData]:
        items = list(self.parsed.items) if self.parsed else []
        if status is None:
            return items
        out = []
        for d in items:
            c = pb.RequestData()
            c.CopyFrom(d)
            c.status = status
            out.append(c)
        return out

    def once(self) -> None:
        name = "wrapperOnceExec"
        if self.c_engine:
            name = "wrapperExecAsync" if getattr(self.host, "async_mode", False) else "wrapperExec"
        step = self.add(f"{name}(test values)")
        req = pb.Request(tag="aiges-check-once", params=self._params(), list=self._items())
        try:
            resp, took = _timed(lambda: self.host.once(req, None))
        except TimeoutError as e:
            step.fail(f"wrapperOnceExec {e}", "make sure wrapperOnceExec returns a Response for the test values")
            return
        if resp.ret:
            step.fail(self.raised.located(f"error {resp.ret}: {resp.msg}"),
                      "fix the wrapper so the declared test values succeed (the message above says where)")
            return
        step.title += f" -> {'; '.join(_preview(d) for d in resp.list)} ({_ms(took)})"
        for problem, fix in output_problems(self.cls.fields()["accepts"], list(resp.list), (3, 2)):
            step.fail(problem, fix)

    @property
    def c_engine(self) -> bool:
        from aiges.plugin.hosts.c import CHost
        return isinstance(self.host, CHost)

    def has_session(self) -> bool:
        from aiges.plugin.hosts.c import CHost
        if isinstance(self.host, CHost):
            return self.host.has_sessions
        return getattr(self.cls, "wrapperCreate", None) is not WrapperBase.wrapperCreate

    def session(self) -> None:
        step = self.add("session: wrapperCreate, wrapperWrite x2 (status 0, then 2), results, wrapperDestroy")
        results: queue.Queue[Any] = queue.Queue()
        tag = "aiges-check-session"
        callback.set_sink(lambda resp, t, sid: results.put(resp))
        try:
            self._session(step, results, tag)
        finally:
            callback.set_sink(None)

    def _session(self, step: Step, results: queue.Queue[Any], tag: str) -> None:
        from aiges.plugin.convert import to_response
        sid = "aiges-check-0002"
        try:
            handle, _ = _timed(lambda: self.host.create(pb.CreateRequest(tag=tag, sid=sid, params=self._params())))
        except TimeoutError as e:
            step.fail(f"wrapperCreate {e}", "return a SessionCreateResponse with a handle right away")
            return
        if handle.err_code:
            step.fail(self.raised.located(f"wrapperCreate failed with {handle.err_code}: {handle.msg}"),
                      "return a SessionCreateResponse whose handle is a non-empty string and error_code 0")
            return
        for n, status in enumerate((0, 2)):
            req = pb.Request(tag=tag, params=self._params(), list=self._items(status))
            msg = pb.WriteMessage(handle=handle.handle, req=req, sid=sid)
            try:
                ret, _ = _timed(functools.partial(self.host.write, msg))
            except TimeoutError as e:
                step.fail(f"wrapperWrite {e}", "return from wrapperWrite and push results with callback()")
                return
            if ret.ret:
                step.fail(self.raised.located(f"wrapperWrite (frame {n + 1}, status {status}) returned {ret.ret}: "
                                              f"{ret.msg}"),
                          "return 0 from wrapperWrite")
                return
        got: list[pb.Response] = []
        deadline = time.monotonic() + self.session_wait
        while time.monotonic() < deadline and not any(d.status == 2 for r in got for d in r.list):
            if self.host.polls_read:
                r = self.host.read(handle.handle, tag)
                if r is None:
                    time.sleep(0.02)
                    continue
                got.append(r)
                continue
            try:
                user_resp = results.get(timeout=0.1)
            except queue.Empty:
                continue
            got.append(to_response(user_resp, tag, "callback", self.host.error_text))
        for r in got:
            if r.ret:
                step.fail(self.raised.located(f"a session result carries error {r.ret}: {r.msg}"),
                          "fix the error the message names")
            for problem, fix in output_problems(self.cls.fields()["accepts"], list(r.list), (0, 1, 2)):
                step.fail(problem, fix)
        if not got:
            step.fail(f"no session result within {self.session_wait:g}s",
                      "push results with aiges.callback.callback(res, userTag, sid) from wrapperWrite "
                      "(userTag as given to wrapperCreate), or return them from wrapperRead(handle)")
        elif not any(d.status == 2 for r in got for d in r.list):
            step.fail(f"{len(got)} result(s) but none with status 2 (DataEnd) within {self.session_wait:g}s",
                      "when a frame with status 2 arrives, send a result with item.status = DataEnd")
        ret = self.host.destroy(handle.handle)
        if ret.ret:
            step.fail(f"wrapperDestroy returned {ret.ret}: {ret.msg}", "return 0 from wrapperDestroy")
        if step.ok:
            step.title += f" -> {len(got)} result(s), last: {_preview(got[-1].list[-1])}"

    def fini(self) -> None:
        step = self.add("wrapperFini")
        ret = self.host.fini()
        if ret.ret:
            step.fail(f"wrapperFini returned {ret.ret}: {ret.msg}", "return 0 from wrapperFini")


def _host(target: Target) -> Any:
    """The plugin's own host for this project: a C engine when its wrapper.py names a library
    (or the config says C), else the Python host."""
    from aiges.plugin.hosts.c import CHost
    from aiges.plugin.hosts.choose import declared_library
    from aiges.plugin.hosts.python import WrapperHost
    s = target.settings
    declared = declared_library(os.path.join(target.wrapper_dir, target.module + ".py"))
    c_config = s is not None and (s.plugin_mode == "c" or (bool(s.wrapper_lib) and s.plugin_mode != "python"))
    if declared is None and not c_config:
        return WrapperHost(target.module, target.wrapper_dir)
    if s is None:
        return CHost(None, target.wrapper_dir, target.module)
    return CHost(s.wrapper_lib, target.wrapper_dir, target.module, async_mode=s.async_mode,
                 real_time=s.real_time_rlt, thread_safe=s.wrapper_thread_safe)


def report(target: Target, steps: list[Step], out: TextIO) -> int:
    out.write(f"aiges check: {os.path.join(target.wrapper_dir, target.module)}.py\n")
    failed = warned = 0
    for s in steps:
        mark = "FAIL" if not s.ok else "WARN" if s.warnings else "PASS"
        out.write(f"  {mark}  {s.title}\n")
        for problem, fix in s.problems:
            out.write(f"        {problem}\n        fix: {fix}\n")
        for note, hint in s.warnings:
            out.write(f"        warning: {note}\n        hint: {hint}\n")
        failed += not s.ok
        warned += bool(s.warnings)
    passed = len(steps) - failed
    summary = f"{passed} passed, {failed} failed" + (f", {warned} warning(s)" if warned else "")
    out.write(summary + (": ready to serve with `aiges -m 0`\n" if not failed else "\n"))
    return 1 if failed else 0


def main(directory: str = ".", out: TextIO | None = None, session_wait: float = SESSION_WAIT) -> int:
    out = out or sys.stdout
    try:
        target = locate(directory)
    except CheckError as e:
        out.write(f"aiges check: {e}\n")
        return 1
    checker = Checker(target, session_wait)
    steps = checker.run()
    return report(target, steps, out)
