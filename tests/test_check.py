"""``aiges check`` and upstream's ``Wrapper().run()``, each run as a real process.

Lifecycle: every test writes (or points at) a wrapper directory and runs ``python -m aiges check``
or ``python wrapper.py`` on it, then reads the exit code and the pass/fail list.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.utils import ROOT, WRAPPERS

GOOD_HEAD = '''
import os
from aiges.core.types import *
from aiges.dto import Response, ResponseData, SessionCreateResponse
from aiges.sdk import WrapperBase, StringBodyField, IntegerParamField

class Req:
    text = StringBodyField(key="text", value=b"hi")
    n = IntegerParamField(key="n", minimum=1, maximum=5, value=2)

class Resp:
    accept1 = StringBodyField(key="result")

def item(key, data, status=Once, kind=DataText):
    d = ResponseData()
    d.key = key
    d.setDataType(kind)
    d.status = status
    d.setData(data)
    return d

class Wrapper(WrapperBase):
    serviceId = "chk"
    requestCls = Req()
    responseCls = Resp()

    def wrapperInit(self, config):
        return 0
'''


def run(args: list[str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def check(directory: Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return run(["-m", "aiges", "check", str(directory)], cwd or directory.parent)


def write(tmp_path: Path, body: str, head: str = GOOD_HEAD) -> Path:
    d = tmp_path / "w"
    d.mkdir(exist_ok=True)
    (d / "wrapper.py").write_text(head + body)
    return d


def test_demo_passes_with_once_and_session() -> None:
    p = check(ROOT / "examples" / "demo")
    assert p.returncode == 0, p.stdout + p.stderr
    lines = p.stdout.splitlines()
    assert all(not ln.strip().startswith("FAIL") for ln in lines)
    assert any("PASS  wrapperOnceExec" in ln and "HELLO AIGES" in ln for ln in lines)
    assert any("PASS  session" in ln and "2 result(s)" in ln for ln in lines)
    assert lines[-1].startswith("10 passed, 0 failed")


def test_upstream_wrapper_passes_unchanged(tmp_path: Path) -> None:
    p = check(WRAPPERS / "image_stats", cwd=tmp_path)  # its logs/ go to the temp dir, not the checkout
    assert p.returncode == 0, p.stdout + p.stderr
    assert "PASS  session" in p.stdout


def test_undeclared_output_key_and_wrong_type_are_failures_with_fixes(tmp_path: Path) -> None:
    d = write(tmp_path, '''
    def wrapperOnceExec(self, params, reqData, usrTag="", persId=0):
        r = Response()
        r.list = [item("res", b"x"), item("result", b"y", kind=DataImage)]
        return r
''')
    p = check(d)
    assert p.returncode == 1
    out = p.stdout
    assert "FAIL  wrapperOnceExec" in out
    assert "output key 'res' is not declared in responseCls (declared: result)" in out
    assert 'fix: declare it in the response class, e.g. `accept_res = StringBodyField(key="res")`' in out
    assert "output 'result': type image differs from the declared text" in out
    assert "fix: call item.setDataType(DataText)" in out
    assert out.splitlines()[-1].endswith("1 failed")


def test_broken_declarations_and_test_values(tmp_path: Path) -> None:
    head = GOOD_HEAD.replace('value=2)', 'value=9)').replace('serviceId = "chk"', 'serviceId = "no good"')
    head = head.replace('text = StringBodyField(key="text", value=b"hi")',
                        'text = StringBodyField(key="text", value=b"hi")\n'
                        '    from aiges.sdk import ImageBodyField\n'
                        '    img = ImageBodyField(key="img", path="test_data/nope.png")')
    d = write(tmp_path, '''
    def wrapperOnceExec(self, params, reqData, usrTag="", persId=0):
        r = Response()
        r.list = [item("result", params["n"].encode())]
        return r
''', head)
    p = check(d)
    assert p.returncode == 1
    out = p.stdout
    assert "serviceId 'no good' is not a usable service name" in out
    assert "param 'n' test value: must be <= 5, got '9'" in out
    assert "test data file 'test_data/nope.png' does not exist" in out
    assert "os.path.dirname(os.path.abspath(__file__))" in out  # the fix names the robust path form
    # the wrapper still ran: with the example repaired to the nearest valid value
    assert "PASS  wrapperOnceExec(test values) -> result (text, 1 bytes): 5" in out


def test_wrapper_errors_are_reported_with_wrapper_error_text(tmp_path: Path) -> None:
    d = write(tmp_path, '''
    def wrapperOnceExec(self, params, reqData, usrTag="", persId=0):
        return Response().response_err(42)

    def wrapperError(self, ret):
        return "model not warmed up" if ret == 42 else ""
''')
    p = check(d)
    assert p.returncode == 1
    assert "FAIL  wrapperOnceExec" in p.stdout and "error 42: model not warmed up" in p.stdout


def test_init_failure_stops_before_calls(tmp_path: Path) -> None:
    d = write(tmp_path, '''
    def wrapperInit(self, config):
        raise RuntimeError("weights missing")
''')
    p = check(d)
    assert p.returncode == 1
    assert "wrapperInit raised RuntimeError: weights missing" in p.stdout
    assert "wrapperOnceExec" not in p.stdout


def test_import_error_names_the_exception(tmp_path: Path) -> None:
    d = write(tmp_path, "\nimport not_a_module_anywhere\n")
    p = check(d)
    assert p.returncode == 1
    assert "FAIL  import wrapper.py" in p.stdout
    assert "ModuleNotFoundError" in p.stdout and "not_a_module_anywhere" in p.stdout


def test_session_without_a_final_result_fails(tmp_path: Path) -> None:
    d = write(tmp_path, '''
    def wrapperOnceExec(self, params, reqData, usrTag="", persId=0):
        r = Response()
        r.list = [item("result", b"ok")]
        return r

    def wrapperCreate(self, params, sid, persId=0, userTag=""):
        self.tag = userTag
        return SessionCreateResponse(handle="h1")

    def wrapperWrite(self, handle, req, sid=""):
        from aiges.callback import callback
        r = Response()
        r.list = [item("result", b"part", status=DataContinue)]
        callback(r, self.tag, sid)
        return 0
''')
    p = run(["-m", "aiges", "check", "--session-wait", "1", str(d)], tmp_path)
    assert p.returncode == 1
    assert "PASS  wrapperOnceExec" in p.stdout
    assert "but none with status 2 (DataEnd)" in p.stdout
    assert "fix: when a frame with status 2 arrives, send a result with item.status = DataEnd" in p.stdout


def test_project_directory_is_found_through_aiges_toml(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    (proj / "src").mkdir(parents=True)
    (proj / "src" / "wrapper.py").write_text((ROOT / "examples" / "demo" / "wrapper.py").read_text())
    (proj / "aiges.toml").write_text('[aiges]\nwrapperDir = "src"\n\n[wrapper]\nthreshold = 0.5\n')
    p = run(["-m", "aiges", "check"], proj)
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"wrapperInit(config from [wrapper] of {proj / 'aiges.toml'})" in p.stdout
    assert "threshold': '0.5'" in p.stderr  # the demo logs the config it was given


def test_nothing_to_check(tmp_path: Path) -> None:
    p = run(["-m", "aiges", "check", str(tmp_path)], tmp_path)
    assert p.returncode == 1
    assert "no wrapper.py in" in p.stdout


@pytest.mark.parametrize("wrapper_dir", [ROOT / "examples" / "demo", WRAPPERS / "image_stats"])
def test_wrapper_run_as_upstream(wrapper_dir: Path, tmp_path: Path) -> None:
    """`python wrapper.py` → Wrapper().run(): init, once with the test values, check_resp (in a
    copy, as its logs/ are written next to it)."""
    copy = shutil.copytree(wrapper_dir, tmp_path / wrapper_dir.name, ignore=shutil.ignore_patterns("logs"))
    p = run([str(copy / "wrapper.py")], copy)
    assert p.returncode == 0, p.stderr


def test_wrapper_run_rejects_an_invalid_response(tmp_path: Path) -> None:
    d = write(tmp_path, '''
    def wrapperOnceExec(self, params, reqData, usrTag="", persId=0):
        r = Response()
        r.list = [item("res", b"x")]
        return r

if __name__ == "__main__":
    Wrapper().run()
''')
    p = run([str(d / "wrapper.py")], d)
    assert p.returncode == 1
    assert "AssertionError" in p.stderr and "output key 'res' is not declared in responseCls" in p.stderr


def test_a_param_and_an_output_sharing_a_key_is_a_failure(tmp_path: Path) -> None:
    head = GOOD_HEAD.replace('n = IntegerParamField(key="n"', 'n = IntegerParamField(key="result"')
    d = write(tmp_path, '''
    def wrapperOnceExec(self, params, reqData, usrTag="", persId=0):
        r = Response()
        r.list = [item("result", b"x")]
        return r
''', head)
    p = check(d)
    assert p.returncode == 1
    assert "parameter.chk.result is declared twice (as param and as output)" in p.stdout


def test_a_project_without_wrapper_dir_gets_the_config_fix(tmp_path: Path) -> None:
    (tmp_path / "wrapper").mkdir()
    (tmp_path / "wrapper" / "wrapper.py").write_text((ROOT / "examples" / "demo" / "wrapper.py").read_text())
    (tmp_path / "aiges.toml").write_text("[aiges]\nworkers = 1\n")
    p = run(["-m", "aiges", "check"], tmp_path)
    assert p.returncode == 1
    assert 'add wrapperDir = "wrapper" to its [aiges] section' in p.stdout


BIG = 1200 * 1024  # over the 1 MB OpenAPI example limit


def big_input(tmp_path: Path) -> Path:
    d = tmp_path / "big"
    (d / "test_data").mkdir(parents=True)
    shutil.copy(WRAPPERS / "big_input" / "wrapper.py", d / "wrapper.py")
    (d / "test_data" / "big.png").write_bytes(os.urandom(BIG))
    return d


def test_test_files_over_the_example_limit_are_checked_in_full_and_warned_about(tmp_path: Path) -> None:
    """check calls the wrapper with the full test file, as run() does; that Swagger's example
    leaves the file out is a warning, not a failure (and not a misleading wrapper error)."""
    d = big_input(tmp_path)
    p = check(d)
    assert p.returncode == 0, p.stdout + p.stderr
    out = p.stdout
    assert f"PASS  wrapperOnceExec(test values) -> result (text, 13 bytes): {BIG} bytes" in out
    assert "PASS  session: wrapperCreate" in out and f"2 result(s), last: result (text, 13 bytes): {BIG} bytes" in out
    assert "WARN  Swagger's example request (Try it out) passes the loader's validation" in out
    assert ("warning: the Swagger example leaves out payload.img.image (1200 KB > the 1024 KB example limit): "
            "Try it out will need the base64 of a file pasted in") in out
    assert out.splitlines()[-1] == "10 passed, 0 failed, 1 warning(s): ready to serve with `aiges -m 0`"
    assert run([str(d / "wrapper.py")], d).returncode == 0  # Wrapper().run() agrees


def test_integer_test_values_reach_the_wrapper_as_the_loader_sends_them(tmp_path: Path) -> None:
    head = GOOD_HEAD.replace('value=2)', 'value=2.0)')
    d = write(tmp_path, '''
    def wrapperOnceExec(self, params, reqData, usrTag="", persId=0):
        r = Response()
        r.list = [item("result", str(int(params["n"])).encode())]
        return r
''', head)
    p = check(d)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "PASS  wrapperOnceExec(test values) -> result (text, 1 bytes): 2" in p.stdout


def test_a_raised_exception_names_the_line_in_the_wrapper(tmp_path: Path) -> None:
    """The exception comes from inside a library (json); the problem line names the wrapper's own
    innermost line, which the fix refers to."""
    d = write(tmp_path, '''
    def wrapperOnceExec(self, params, reqData, usrTag="", persId=0):
        return parse(reqData.get("text").data)


def parse(data):
    import json
    return json.loads(data + b"}")
''')
    p = check(d)
    assert p.returncode == 1
    source = (d / "wrapper.py").read_text().splitlines()
    lineno = source.index('    return json.loads(data + b"}")') + 1
    line = next(ln for ln in p.stdout.splitlines() if "error 10909" in ln)
    assert "wrapperOnceExec raised JSONDecodeError" in line
    assert line.endswith(f'(in wrapper.py:{lineno}, parse: return json.loads(data + b"}}"))'), line
    assert "fix: fix the wrapper so the declared test values succeed (the message above says where)" in p.stdout


def test_a_failure_in_the_wrapper_itself_names_its_line_once(tmp_path: Path) -> None:
    """The innermost frame is the wrapper's: its line is named once, with the code, not twice."""
    d = write(tmp_path, '''
    def wrapperOnceExec(self, params, reqData, usrTag="", persId=0):
        return {}["missing"]
''')
    p = check(d)
    assert p.returncode == 1
    lineno = (d / "wrapper.py").read_text().splitlines().index('        return {}["missing"]') + 1
    line = next(ln for ln in p.stdout.splitlines() if "error 10909" in ln)
    assert line.count(f"wrapper.py:{lineno}") == 1, line
    assert line.endswith(f"""raised KeyError: 'missing' (in wrapper.py:{lineno}, wrapperOnceExec: return {{}}["missing"])"""), line
