"""Systems under test: our loader started on a free port with a benchmark config, and the two-process ceiling."""
from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .common import CEILING, HOST, ROOT, TEXT
from .net import free_port, post
from .procs import Procs, children

SERVING = re.compile(r"serving \S+ on (http://127\.0\.0\.1:(\d+))")


@dataclass
class Server:
    """A server under load: its URL, the body one request sends, the PIDs whose CPU we account,
    and one line saying what it does per request (printed beside the figures)."""

    name: str
    url: str
    body: bytes
    pids: dict[str, int]
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    does: str = ""
    answer: Callable[[bytes], str] | None = None  # says what a job's answer is (the catboost job's check line)


def loader_config(wrapper_dir: Path, log_dir: Path, overrides: dict[str, dict[str, str]]) -> str:
    """The engine's defaults except where a benchmark must differ (free port, logs in the temp dir)
    and the ``--set SECTION.KEY=VALUE`` overrides (values are TOML literals)."""
    sections: dict[str, dict[str, str]] = {
        "svcName": {"host": json.dumps(HOST), "port": "5090"},
        "aiges": {"wrapperDir": json.dumps(str(wrapper_dir))},
        "wrapper": {"http_listen": json.dumps(f"{HOST}:0")},
        "log": {"dir": json.dumps(str(log_dir))},
    }
    for section, values in overrides.items():
        sections.setdefault(section, {}).update(values)
    return "".join(f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in values.items()) + "\n"
                   for name, values in sections.items())


def wait_serving(p: subprocess.Popen[bytes], log: Path, timeout: float, serving: re.Pattern[str] = SERVING,
                 poll: float = 0.05) -> re.Match[str] | None:
    """Wait for a loader's "serving NAME on URL" line in its stdout ``log``: the match, or None when
    the process exited first (``p.poll()`` says so) or ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = serving.search(log.read_text(errors="replace"))
        if m:
            return m
        if p.poll() is not None:
            return None
        time.sleep(poll)
    return None


def start_loader(procs: Procs, tmp: Path, name: str, wrapper_dir: Path, overrides: dict[str, dict[str, str]],
                 timeout: float = 60, env: dict[str, str] | None = None) -> Server:
    """``python -m aiges`` (the checkout's) for ``wrapper_dir`` in ``tmp/name``, with ``env`` added to
    its environment; its plugins are adopted."""
    work = tmp / name
    work.mkdir()
    cfg = work / "aiges.toml"
    cfg.write_text(loader_config(wrapper_dir, work / "logs", overrides))
    log = work / "loader.out"
    full = dict(os.environ, **(env or {}))
    full["PYTHONPATH"] = str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")
    p = procs.start([sys.executable, "-m", "aiges", "-m", "0", "-c", str(cfg), "-s", "svcName"], log, cwd=work,
                    env=full)
    m = wait_serving(p, log, timeout)
    if m is None:
        if p.poll() is not None:
            raise SystemExit(f"bench: loader for {wrapper_dir} exited with {p.returncode}:\n{log.read_text()[-3000:]}")
        raise SystemExit(f"bench: loader for {wrapper_dir} did not start within {timeout:g}s")
    url = m.group(1) + "/v1/svcName"
    body = json.dumps({"header": {"status": 3}, "parameter": {"svcName": {}},
                       "payload": {"text": {"text": base64.b64encode(TEXT).decode(), "status": 3}}}).encode()
    pids = {"loader": p.pid}
    for i, c in enumerate(sorted(children(p.pid))):
        pids[f"plugin{i}" if i else "plugin"] = c
        procs.adopt(c, p.pid)
    return Server(name, url, body, pids, [p])


def start_ceiling(procs: Procs, tmp: Path, timeout: float = 30) -> Server:
    """The prototype of ../shared/bench (read-only): generate t_pb2 into tmp, start both halves."""
    gen = tmp / "ceiling"
    gen.mkdir()
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{CEILING}", f"--python_out={gen}",
                    f"--grpc_python_out={gen}", str(CEILING / "t.proto")], check=True, timeout=60)
    env = dict(os.environ, PYTHONPATH=str(gen) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    sock = f"unix:{gen}/ceiling.sock"
    port = free_port()
    plug = procs.start([sys.executable, str(CEILING / "plug.py"), sock], gen / "plug.out", env=env, cwd=gen)
    front = procs.start([sys.executable, str(CEILING / "loader.py"), str(port), sock], gen / "loader.out", env=env,
                        cwd=gen)
    url = f"http://{HOST}:{port}/v1/svc"
    body = json.dumps({"payload": {"text": {"text": base64.b64encode(TEXT).decode()}}}).encode()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p, log in ((plug, "plug.out"), (front, "loader.out")):
            if p.poll() is not None:
                raise SystemExit(f"bench: ceiling {log} exited:\n{(gen / log).read_text()[-3000:]}")
        try:
            status, raw = post(url, body, 2)
            if status == 200 and base64.b64encode(TEXT) in raw:
                return Server("ceiling", url, body, {"front": front.pid, "plug": plug.pid}, [front, plug],
                              "aiohttp front + grpc.aio plugin on a unix socket, orjson envelope, base64 text "
                              "echoed; no SDK, validation, logs or metrics")
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"bench: the ceiling did not answer within {timeout:g}s")
