"""Start real loader processes on free loopback ports for tests (no mocks on the main path)."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WRAPPERS = Path(__file__).resolve().parent / "wrappers"
SERVING = re.compile(r"serving \S+ on (http://[\d.]+:(\d+))(?:, grpc ([\d.]+:\d+))?")

BASE_TOML = """\
[svcName]
host = "127.0.0.1"
port = 0

[aiges]
wrapperDir = "{wrapper_dir}"
{aiges}

[wrapper]
http_listen = "127.0.0.1:0"
{wrapper}

[ws]
{ws}

[auth]
{auth}

[log]
dir = "{log_dir}"
"""


@dataclass
class Loader:
    proc: subprocess.Popen[bytes]
    url: str
    port: int
    workdir: Path
    stdout_path: Path
    stderr_path: Path
    grpc: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def log_dir(self) -> Path:
        return self.workdir / "logs"

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def post(self, path: str, body: Any, headers: dict[str, str] | None = None,
             timeout: float = 30) -> tuple[int, dict[str, str], Any]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return http("POST", self.url + path, data, headers, timeout)

    def get(self, path: str, timeout: float = 10) -> tuple[int, dict[str, str], Any]:
        return http("GET", self.url + path, None, None, timeout)

    def plugin_pids(self) -> list[int]:
        return child_pids(self.pid)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 40) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def http(method: str, url: str, data: bytes | None = None, headers: dict[str, str] | None = None,
         timeout: float = 30) -> tuple[int, dict[str, str], Any]:
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None and "Content-Type" not in (headers or {}):
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, hdrs, raw = r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        status, hdrs, raw = e.code, dict(e.headers), e.read()
    try:
        body: Any = json.loads(raw) if raw else None
    except ValueError:
        body = raw
    return status, hdrs, body


def child_pids(pid: int) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                fields = (p / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(p.name))
    return out


def sigkill(pid: int) -> None:
    """SIGKILL ``pid`` if it still exists (a frozen worker the test stopped, in its cleanup)."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def write_config(workdir: Path, wrapper_dir: Path, aiges: str = "", wrapper: str = "", ws: str = "",
                 auth: str = "") -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "aiges.toml"
    path.write_text(BASE_TOML.format(wrapper_dir=str(wrapper_dir), aiges=aiges, wrapper=wrapper, ws=ws, auth=auth,
                                     log_dir=str(workdir / "logs")))
    return path


def start_loader(workdir: Path, wrapper_dir: Path, aiges: str = "", wrapper: str = "", ws: str = "",
                 auth: str = "", env: dict[str, str] | None = None, timeout: float = 60,
                 expect_fail: bool = False, prefix: tuple[str, ...] = ()) -> Loader:
    """Write aiges.toml into workdir, start `python -m aiges -m 0`, wait for its serving line.
    ``prefix``: a command the loader runs under (``("prlimit", "--nofile=1024:1024")``); it must exec."""
    cfg = write_config(workdir, wrapper_dir, aiges, wrapper, ws, auth)
    out, err = workdir / "loader.out", workdir / "loader.err"
    full_env = dict(os.environ, **(env or {}))
    full_env["PYTHONPATH"] = str(ROOT) + os.pathsep + full_env.get("PYTHONPATH", "")
    with out.open("wb") as out_f, err.open("wb") as err_f:  # the child keeps its own copies
        proc = subprocess.Popen([*prefix, sys.executable, "-m", "aiges", "-m", "0", "-c", str(cfg), "-s", "svcName"],
                                cwd=workdir, stdout=out_f, stderr=err_f, env=full_env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = SERVING.search(out.read_text(errors="replace"))
        if m:
            return Loader(proc, m.group(1), int(m.group(2)), workdir, out, err, m.group(3) or "")
        if proc.poll() is not None:
            if expect_fail:
                return Loader(proc, "", 0, workdir, out, err)
            raise RuntimeError(f"loader exited with {proc.returncode}:\n{err.read_text(errors='replace')}")
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"loader did not start within {timeout}s:\n{err.read_text(errors='replace')}")


def wait_until(pred: Any, timeout: float = 20, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return False


def once_body(svc: str, payload: dict[str, Any], params: dict[str, Any] | None = None,
              expect: dict[str, Any] | None = None) -> dict[str, Any]:
    section = dict(params or {})
    section.update(expect or {})
    return {"header": {"appid": "test", "status": 3}, "parameter": {svc: section}, "payload": payload}
