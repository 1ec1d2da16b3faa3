"""Peer MLServer 1.7.1 (uvicorn + FastAPI, the V2 protocol) in a venv of its own under the cache, never an aiges dependency."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ..common import CACHE, HOST, PEER_DATA, TEXT, outside_checkout
from ..jobs import Job
from ..net import free_port, get
from ..procs import Procs, descendants
from ..systems import Server

NAME = "mlserver"
MLSERVER_VERSION = "1.7.1"
MLSERVER_REQS = {"echo": [f"mlserver=={MLSERVER_VERSION}"],
                 "catboost": [f"mlserver=={MLSERVER_VERSION}", f"mlserver-catboost=={MLSERVER_VERSION}"]}
HELP = f"MLServer {MLSERVER_VERSION} on the same job, interleaved (its own venv under {CACHE})"


def prepare(job: str) -> Path:
    """MLServer (and its CatBoost runtime for that job) in a venv of its own under the cache, made
    with pip on first use and reused after; a marker lists what was installed completely."""
    venv = outside_checkout(CACHE / "mlserver-venv")
    marker = venv / "aiges-bench-installed.txt"
    have = set(marker.read_text().split()) if marker.exists() else set()
    want = MLSERVER_REQS[job]
    python = venv / "bin" / "python"
    if set(want) <= have and (venv / "bin" / "mlserver").exists():
        return venv
    if not python.exists():
        venv.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    print(f"installing {' '.join(want)} into {venv} (once; later runs reuse it) ...", flush=True)
    t0 = time.monotonic()
    r = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *want],
                       capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        raise SystemExit(f"bench: pip could not install {' '.join(want)} into {venv}:\n"
                         f"{(r.stdout + r.stderr)[-3000:]}")
    marker.write_text("\n".join(sorted(have | set(want))) + "\n")
    print(f"  installed in {time.monotonic() - t0:.0f} s", flush=True)
    return venv


def v2_echo_body() -> bytes:
    return json.dumps({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES",
                                   "data": [TEXT.decode()]}]}).encode()


def v2_row_body(record: dict[str, Any], names: list[str], categorical: set[int]) -> bytes:
    """One tabular row as the V2 protocol carries it for MLServer's pandas codec: one input per
    column, in the model's feature order (CatBoost reads a DataFrame by position), numbers as FP64,
    categorical values as BYTES strings."""
    inputs = []
    for i, name in enumerate(names):
        if i in categorical:
            inputs.append({"name": name, "shape": [1], "datatype": "BYTES", "data": [str(record[name])],
                           "parameters": {"content_type": "str"}})
        else:
            inputs.append({"name": name, "shape": [1], "datatype": "FP64", "data": [float(record[name])]})
    return json.dumps({"parameters": {"content_type": "pd"}, "inputs": inputs}).encode()


def start(procs: Procs, tmp: Path, prepared: Path, job: Job, settings: dict[str, Any], timeout: float = 120) -> Server:
    """``mlserver start`` on a model repository in tmp: settings.json with ``parallel_workers: 0``
    (inference in the server process itself) on free loopback ports, one model folder; ``settings``
    (``--peer-set``) go to settings.json, ``model.KEY`` ones to model-settings.json."""
    venv = prepared
    root = tmp / "mlserver"
    name = job.name
    mdir = root / name
    mdir.mkdir(parents=True)
    http_port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    conf: dict[str, Any] = {"parallel_workers": 0, "host": HOST, "http_port": http_port,
                            "grpc_port": grpc_port, "metrics_port": metrics_port}
    conf.update({k: v for k, v in settings.items() if not k.startswith("model.")})
    model_over = {k.split(".", 1)[1]: v for k, v in settings.items() if k.startswith("model.")}
    (root / "settings.json").write_text(json.dumps(conf, indent=2))
    if job.name == "echo":
        shutil.copy(PEER_DATA / "mlserver_echo.py", mdir / "mlserver_echo.py")
        model: dict[str, Any] = {"name": name, "implementation": "mlserver_echo.EchoModel"}
        body = v2_echo_body()
        runtime = "custom echo runtime (mlserver_echo.EchoModel: StringCodec decode, encode back)"
        sent = "BYTES input 'text' (the same text)"
    else:
        assert job.model and job.record is not None
        model = {"name": name, "implementation": "mlserver_catboost.CatboostModel",
                 "parameters": {"uri": str(job.model)}}
        body = v2_row_body(job.record, job.features, job.categorical)
        runtime = "stock CatBoost runtime (mlserver_catboost.CatboostModel: model.predict -> class label)"
        sent = f"the same record as {len(job.features)} pandas-codec columns (FP64 numbers, BYTES categories)"
    model.update(model_over)
    (mdir / "model-settings.json").write_text(json.dumps(model, indent=2))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    log = root / "mlserver.out"
    p = procs.start([str(venv / "bin" / "mlserver"), "start", str(root)], log, cwd=root, env=env)
    base = f"http://{HOST}:{conf['http_port']}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if p.poll() is not None:
            raise SystemExit(f"bench: mlserver exited with {p.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            if get(f"{base}/v2/models/{name}/ready", 2)[0] == 200:
                break
        except OSError:
            pass
        time.sleep(0.2)
    else:
        raise SystemExit(f"bench: mlserver did not load {name} within {timeout:g}s:\n"
                         f"{log.read_text(errors='replace')[-3000:]}")
    pids = {"mlserver": p.pid}
    for i, c in enumerate(descendants(p.pid)):
        pids[f"child{i}"] = c
        procs.adopt(c, p.pid)
    workers = conf.get("parallel_workers")
    access = "access log on" if conf.get("debug", True) else "access log off"
    batch = int(model.get("max_batch_size") or 0)
    if batch > 1:
        access += f", adaptive batching up to {batch} in {model.get('max_batch_time', 0)} s"
    does = (f"MLServer {MLSERVER_VERSION} (uvicorn + FastAPI, parallel_workers {workers}, {access}), "
            f"V2 POST /v2/models/{name}/infer with {sent}, {runtime}, V2 JSON answer")
    return Server(NAME, f"{base}/v2/models/{name}/infer", body, pids, [p], does, answer_label)


def answer_label(raw: bytes) -> str:
    try:
        out = json.loads(raw)["outputs"][0]
        return f"output {out['name']!r} = {out['data']} (a class label; the stock runtime has no probabilities)"
    except (ValueError, KeyError, IndexError, TypeError):
        return raw.decode(errors="replace")[:300]


def batching_hint(settings: dict[str, Any]) -> str:
    if int(settings.get("model.max_batch_size") or 0) <= 1:
        return ("MLServer's adaptive batching is off by default (--peer-set model.max_batch_size=64 "
                "--peer-set model.max_batch_time=0.001 turns it on)")
    return ""
