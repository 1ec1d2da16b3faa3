"""``aiges create``, ``pack``, ``config`` and ``-mnist`` as a newcomer runs them: real processes.

Lifecycle: a project is created in a temp dir, checked, then served with ``aiges -m 0`` from its
own directory (its own aiges.toml, HTTP on a free loopback port) and called over HTTP and
WebSocket; the mnist demo is written and trained offline, then served and asked for digits.
"""
from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.utils import ROOT, SERVING, http

ENV = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def aiges(args: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aiges", *args], cwd=cwd, env=ENV, capture_output=True,
                          text=True, timeout=timeout)


@contextmanager
def serving(project: Path) -> Iterator[str]:
    """`cd project && aiges -m 0`, the way the README says, on a free loopback port."""
    out, err = project / "serve.out", project / "serve.err"
    env = dict(ENV, AIGES_HTTP_LISTEN="127.0.0.1:0")
    with out.open("wb") as o, err.open("wb") as e:
        proc = subprocess.Popen([sys.executable, "-m", "aiges", "-m", "0"], cwd=project, env=env, stdout=o, stderr=e)
    try:
        deadline = time.monotonic() + 60
        while not (m := SERVING.search(out.read_text(errors="replace"))):
            assert proc.poll() is None, err.read_text(errors="replace")
            assert time.monotonic() < deadline, "loader did not start: " + err.read_text(errors="replace")
            time.sleep(0.05)
        yield m.group(1)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(30) == 0
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise


def swagger_example(url: str) -> dict[str, Any]:
    status, _h, doc = http("GET", url + "/openapi.json")
    assert status == 200
    return doc["components"]["requestBodies"]["OnceRequest"]["content"]["application/json"]["examples"][
        "test_values"]["value"]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    parent = tmp_path_factory.mktemp("create")
    p = aiges(["create", "-n", "hello_svc", "-p", str(parent)], parent)
    assert p.returncode == 0, p.stderr
    return parent / "hello_svc"


def test_create_writes_a_complete_project(project: Path) -> None:
    names = sorted(str(p.relative_to(project)) for p in project.rglob("*") if p.is_file())
    assert names == [".dockerignore", "Dockerfile", "README.md", "aiges.toml", "requirements.txt",
                     "wrapper/test_data/test.png", "wrapper/wrapper.py"]
    wrapper = (project / "wrapper" / "wrapper.py").read_text()
    assert 'serviceId = "hello_svc"' in wrapper and "{{" not in wrapper
    assert re.search(r'^wrapperDir = "wrapper"', (project / "aiges.toml").read_text(), re.M)
    assert "# hello_svc" in (project / "README.md").read_text()
    assert "hello_svc" in (project / "Dockerfile").read_text()


def _dockerfile_run(project: Path) -> str:
    """The Dockerfile's RUN instruction as the shell script docker would run."""
    text = (project / "Dockerfile").read_text().replace("\\\n", "")
    return next(ln[4:] for ln in text.splitlines() if ln.startswith("RUN "))


def test_dockerfile_installs_this_engine_from_its_wheel_never_by_name(project: Path, tmp_path: Path) -> None:
    """"aiges" on PyPI is upstream's SDK: the image installs the wheel built by the README's command
    and stops with that command when the wheel is missing.  The RUN step is run by sh here, with a
    stand-in pip that records its arguments (no docker needed)."""
    dockerfile = (project / "Dockerfile").read_text()
    readme = (project / "README.md").read_text()
    command = f"pip wheel --no-deps -w . {ROOT}"
    assert command in dockerfile and command in readme and "{{" not in dockerfile
    assert not re.search(r"pip install[^\n]*\baiges\b(?!-\*)", dockerfile)
    assert "aiges" not in [ln.strip() for ln in (project / "requirements.txt").read_text().splitlines()]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "pip").write_text('#!/bin/sh\necho "pip $*" > pip.args\n')
    (bin_dir / "pip").chmod(0o755)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "requirements.txt").write_text("pillow\n")
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    script = _dockerfile_run(project)

    def build() -> subprocess.CompletedProcess[str]:
        return subprocess.run(["sh", "-c", script], cwd=ctx, env=env, capture_output=True, text=True, timeout=30)

    p = build()
    assert p.returncode == 1 and "no aiges-*.whl next to the Dockerfile" in p.stderr and command in p.stderr
    (ctx / "aiges-0.1.0-py3-none-any.whl").write_bytes(b"")
    p = build()
    assert p.returncode == 0, p.stderr
    assert (ctx / "pip.args").read_text().split() == [
        "pip", "install", "--no-cache-dir", "aiges-0.1.0-py3-none-any.whl", "-r", "requirements.txt"]
    (ctx / "aiges-0.0.9-py3-none-any.whl").write_bytes(b"")
    p = build()
    assert p.returncode == 1 and "several aiges wheels" in p.stderr


def test_created_project_passes_check(project: Path) -> None:
    p = aiges(["check"], project)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "FAIL" not in p.stdout and "PASS  session" in p.stdout


def test_created_project_serves_once_and_sessions_with_no_edits(project: Path) -> None:
    with serving(project) as url:
        example = swagger_example(url)
        status, _h, body = http("POST", url + "/v1/private/hello_svc", json.dumps(example).encode())
        assert status == 200, body
        result = json.loads(body["payload"]["result"]["text"])
        assert (result["width"], result["height"]) == (96, 64) and len(result["colors"]) == 3
        # a payload that is no image: the client's mistake, a 400 with the wrapper's own message
        example["payload"]["image"]["image"] = base64.b64encode(b"not a png").decode()
        status, _h, body = http("POST", url + "/v1/private/hello_svc", json.dumps(example).encode())
        assert status == 400 and body["header"]["code"] == 10107, body
        assert body["header"]["message"].startswith("payload.image: not an image PIL can read"), body

        png = (project / "wrapper" / "test_data" / "test.png").read_bytes()

        async def session() -> list[dict[str, Any]]:
            msgs = []
            async with aiohttp.ClientSession() as s:
                async with s.ws_connect(url.replace("http://", "ws://") + "/v1/private/hello_svc") as ws:
                    for status in (0, 2):
                        await ws.send_str(json.dumps({"parameter": {"hello_svc": {"colors": 2}}, "payload": {
                            "image": {"image": base64.b64encode(png).decode(), "status": status}}}))
                    async for msg in ws:
                        if msg.type == aiohttp.WSMsgType.TEXT:
                            msgs.append(json.loads(msg.data))
            return msgs

        msgs = [m for m in asyncio.run(asyncio.wait_for(session(), 30)) if m.get("payload")]
        # session frames carry text as base64, as upstream's WebSocket did
        frames = [json.loads(base64.b64decode(m["payload"]["result"]["text"])) for m in msgs]
        assert [f["frame"] for f in frames] == [1, 2] and len(frames[0]["colors"]) == 2
        assert msgs[-1]["payload"]["result"]["status"] == "2"


def test_create_refuses_to_overwrite_without_force(project: Path) -> None:
    wrapper = project / "wrapper" / "wrapper.py"
    wrapper.write_text(wrapper.read_text() + "\n# my edit\n")
    (project / "notes.txt").write_text("mine")
    p = aiges(["create", "-n", "hello_svc", "-p", str(project.parent)], project.parent)
    assert p.returncode == 1
    assert "already exists" in p.stderr and "--force" in p.stderr
    assert "# my edit" in wrapper.read_text()
    p = aiges(["create", "-n", "hello_svc", "-p", str(project.parent), "--force"], project.parent)
    assert p.returncode == 0, p.stderr
    assert "# my edit" not in wrapper.read_text() and (project / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("name", ["1abc", "has space", "a/b", ""])
def test_create_rejects_unusable_names(tmp_path: Path, name: str) -> None:
    p = aiges(["create", "-n", name, "-p", str(tmp_path)], tmp_path)
    assert p.returncode == 2 and "invalid name" in p.stderr
    assert list(tmp_path.iterdir()) == []


def test_pack_keeps_structure_and_honours_output(project: Path, tmp_path: Path) -> None:
    (project / "logs").mkdir(exist_ok=True)
    (project / "logs" / "app.log").write_text("runtime")
    (project / "wrapper" / "__pycache__").mkdir(exist_ok=True)
    (project / "wrapper" / "__pycache__" / "wrapper.cpython-311.pyc").write_bytes(b"x")
    out = tmp_path / "dist" / "svc.tar.gz"
    p = aiges(["pack", "-l", str(project), "-o", str(out)], tmp_path)
    assert p.returncode == 0, p.stderr
    with tarfile.open(out) as tar:
        names = sorted(tar.getnames())
        assert tar.extractfile("wrapper/wrapper.py").read() == (project / "wrapper" / "wrapper.py").read_bytes()
    assert "wrapper/wrapper.py" in names and "wrapper/test_data/test.png" in names and "aiges.toml" in names
    assert not any(n.startswith("logs") or "__pycache__" in n for n in names)
    assert not (tmp_path / "pywrapper.tar.gz").exists()


def test_pack_leaves_out_earlier_packs_and_nested_logs(project: Path) -> None:
    """Packing twice from the project directory: the second archive holds neither the first nor
    itself, nor logs/ or __pycache__/ at any depth; a .tar.gz test file below the root is kept."""
    (project / "wrapper" / "logs").mkdir(exist_ok=True)
    (project / "wrapper" / "logs" / "wrapper.log").write_text("runtime")
    (project / "wrapper" / "sub" / "__pycache__").mkdir(parents=True, exist_ok=True)
    (project / "wrapper" / "sub" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"x")
    (project / "wrapper" / "test_data" / "sample.tar.gz").write_bytes(b"data")
    assert aiges(["pack", "-o", "old.tar.gz"], project).returncode == 0
    p = aiges(["pack"], project)
    assert p.returncode == 0, p.stderr
    with tarfile.open(project / "pywrapper.tar.gz") as tar:
        names = tar.getnames()
    assert "wrapper/wrapper.py" in names and "wrapper/test_data/sample.tar.gz" in names
    assert not [n for n in names if n.endswith(("old.tar.gz", "pywrapper.tar.gz")) or "logs" in n
                or "__pycache__" in n]
    for f in ("old.tar.gz", "pywrapper.tar.gz", "wrapper/test_data/sample.tar.gz"):
        (project / f).unlink()


def test_pack_defaults_to_pywrapper_in_cwd_and_needs_a_wrapper(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "model.py").write_text("x = 1\n")
    p = aiges(["pack", "-l", "src"], tmp_path)
    assert p.returncode == 1 and "no wrapper.py" in p.stderr
    (tmp_path / "src" / "wrapper.py").write_text("pass\n")
    p = aiges(["pack", "-l", "src"], tmp_path)
    assert p.returncode == 0
    assert "no requirements.txt" in p.stderr and "no README.md" in p.stderr
    with tarfile.open(tmp_path / "pywrapper.tar.gz") as tar:
        assert sorted(tar.getnames()) == ["model.py", "wrapper.py"]


def test_config_get_set_keeps_comments(project: Path) -> None:
    cfg = project / "aiges.toml"
    assert aiges(["config", "get", "aiges.workers"], project).stdout.strip() == "1"
    assert aiges(["config", "set", "aiges.workers", "2"], project).returncode == 0
    assert aiges(["config", "set", "wrapper.model.path", "/models/a b"], project).returncode == 0
    text = cfg.read_text()
    assert re.search(r"^workers = 2\s+# aiges: plugin worker processes", text, re.M)
    assert '"model.path" = "/models/a b"' in text
    bad = aiges(["config", "set", "aiges.workers", "zero"], project)
    assert bad.returncode == 1 and "[aiges] workers" in bad.stderr
    assert aiges(["config", "get", "aiges.workers"], project).stdout.strip() == "2"
    show = aiges(["config", "show"], project)
    assert "workers = 2" in show.stdout and "'model.path': '/models/a b'" in show.stdout


def test_mnist_demo_is_written_offline_trained_and_serves(tmp_path: Path) -> None:
    p = aiges(["-mnist"], tmp_path, timeout=180)
    assert p.returncode == 0, p.stdout + p.stderr
    m = re.search(r"held-out accuracy: ([\d.]+) on (\d+)", p.stdout)
    assert m and float(m.group(1)) >= 0.95 and int(m.group(2)) >= 1000, p.stdout
    demo = tmp_path / "aiges_demo" / "mnist"
    report = json.loads((demo / "wrapper" / "model.json").read_text())
    assert report["heldout_accuracy"] == float(m.group(1))
    assert (demo / "train.py").exists() and (demo / "wrapper" / "model.npz").exists()
    with serving(demo) as url:
        for digit in (7, 3):
            png = (demo / "wrapper" / "test_data" / f"{digit}.png").read_bytes()
            body = {"header": {"appid": "123456", "status": 3},
                    "parameter": {"mnist": {"ctrl": "helloworld", "result": {
                        "encoding": "utf8", "compress": "raw", "format": "plain", "data_type": "text"}}},
                    "payload": {"img": {"encoding": "png", "status": 3, "image": base64.b64encode(png).decode()}}}
            status, _h, resp = http("POST", url + "/v1/private/mnist", json.dumps(body).encode())
            assert status == 200, resp
            result = json.loads(resp["payload"]["result"]["text"])
            assert result["result"] == digit and result["msg"] == f"result is: {digit}"


def test_mnist_refuses_to_overwrite_an_existing_demo_unless_forced(tmp_path: Path) -> None:
    """A second `aiges -mnist` keeps the user's edits (and model); `--force` (or Go-style -force)
    rewrites the demo files, keeps other files, and retrains."""
    demo = tmp_path / "aiges_demo" / "mnist"
    (demo / "wrapper").mkdir(parents=True)
    (demo / "wrapper" / "wrapper.py").write_text("# my edits\n")
    (demo / "notes.txt").write_text("mine")
    p = aiges(["-mnist"], tmp_path)
    assert p.returncode == 1
    assert "aiges_demo/mnist already exists and is not empty; nothing written" in p.stderr
    assert "aiges -mnist --force" in p.stderr and "training" not in p.stdout
    assert (demo / "wrapper" / "wrapper.py").read_text() == "# my edits\n"
    assert not (demo / "wrapper" / "model.npz").exists()
    p = aiges(["-mnist", "--force"], tmp_path, timeout=180)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "class Wrapper" in (demo / "wrapper" / "wrapper.py").read_text()
    assert (demo / "notes.txt").read_text() == "mine" and (demo / "wrapper" / "model.npz").exists()
    assert aiges(["-force", "-mnist"], tmp_path, timeout=180).returncode == 0
