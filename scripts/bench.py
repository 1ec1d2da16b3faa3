"""Bounded loopback benchmark of the aiges loader, side by side with the ceiling and a peer engine.

What it does, in one run (everything on 127.0.0.1, every loop bounded in time and count, every
process it starts stopped by PID at the end, a hard time limit over the whole run):

* once mode, ``--job echo`` (default): a loader on a free port serving ``tests/wrappers/echo``,
  the two-process ceiling prototype of ``../shared/bench/ceiling`` (its ``t_pb2`` generated into
  a temp dir) and, with ``--peer mlserver``, MLServer 1.7.1 serving a custom echo runtime
  (``scripts/bench_peers/mlserver_echo.py``) over the V2 protocol.  A c=1 run of each, then
  ``--rounds`` rounds at c=32 interleaved (ours, ceiling, peer, ours, ceiling, peer, ...), and
  the medians and per-round ratios.  Closed-loop load comes from ``wrk`` when it is installed (a C
  load generator: it leaves the CPU to the servers on a 2-core box), else from an aiohttp client.
* ``--job catboost``: the CatBoost tabular job of ``examples/catboost`` (its ``wrapper.py`` and
  ``*.cbm`` model) when it is there, else a synthetic model of the same shape trained once with a
  fixed seed (``scripts/bench_peers/catboost``); the peer serves the same model file with its
  own CatBoost runtime (``mlserver-catboost``), one row per request as pandas-codec columns.
  No ceiling: it only echoes.
* ``--rate R[,R2...]``: open loop instead of the c=1/c=32 closed loop: requests are sent at fixed
  times whatever the answers, latency counted from each request's scheduled time (no coordinated
  omission), with the achieved rate, p50/p99/max, errors, and how late the client itself sent.
* stream mode: a loader serving ``tests/wrappers/echo_stream``; 32 concurrent
  :class:`aiges.client.StreamSession` s, each sending one frame and awaiting its result before the
  next (so every frame's latency is send → result), opening new sessions until the time is up.

The peer lives in its own venv outside the checkout (``~/.cache/aiges/bench/mlserver-venv``,
made with pip on first use, reused after); it is never a dependency of aiges.  Per run the bench
reports the CPU each process used per request (from /proc: loader + plugins for ours, the
MLServer process tree for the peer), which says at once which process is the limit.
``--profile DIR`` adds a py-spy run (loader and plugin) after the measurements.

    scripts/bench                                   # everything, ~10 s per measurement
    scripts/bench --mode once --quick               # a 3 s smoke run
    scripts/bench --mode once --peer mlserver --quick
    scripts/bench --job catboost --peer mlserver --rate 300 --quick
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import functools
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiges.client import ClientError, HttpClient, StreamSession  # noqa: E402

# the ceiling prototype lives in shared/ beside the project's checkout (as CI lays it out)
CEILING = Path(os.environ.get("AIGES_CEILING_DIR", str(ROOT.parent / "shared" / "bench" / "ceiling")))
PEERS = ROOT / "scripts" / "bench_peers"
# the peer's venv and the synthetic model: a cache outside the checkout, reused across runs
CACHE = Path(os.environ.get("AIGES_BENCH_CACHE")
             or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "aiges" / "bench")
HOST = "127.0.0.1"
SERVING = re.compile(r"serving \S+ on (http://127\.0\.0\.1:(\d+))")
TEXT = b"hello aiges bench: a short text payload"
CLK_TCK = os.sysconf("SC_CLK_TCK")
TARGETS = {"rps_c32": 2500.0, "p50_c1_ms": 2.0, "ratio": 0.55, "frames_per_s": 3000.0}
DEFAULT_ONCE_WRAPPER = ROOT / "tests" / "wrappers" / "echo"
EXAMPLE_CATBOOST = ROOT / "examples" / "catboost"
SYNTH_CATBOOST = PEERS / "catboost"
SYNTH_MODEL_VERSION = "v1"  # bump when train_synth.py changes, so the cached model is retrained
MLSERVER_VERSION = "1.7.1"
MLSERVER_REQS = {"echo": [f"mlserver=={MLSERVER_VERSION}"],
                 "catboost": [f"mlserver=={MLSERVER_VERSION}", f"mlserver-catboost=={MLSERVER_VERSION}"]}
MAX_REQUESTS = 5_000_000  # a count bound on every Python load loop, on top of its time bound
LOADGEN = "load generator"
OPEN_DRAIN = 10.0  # seconds an open-loop run waits for its last answers (also each request's timeout)


# ---------------------------------------------------------------- processes
def _start_time(pid: int) -> int | None:
    """The process's start time (clock ticks after boot), None when it is gone or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return None if fields[0] == "Z" else int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


class Procs:
    """Every process this run starts; all stopped by PID (TERM, then KILL) however the run ends.
    Their children (plugins, a peer's workers) are adopted too: one still there once its parent
    has stopped is stopped by PID, after checking it is the same process (its start time)."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.adopted: dict[int, tuple[int, int]] = {}  # pid -> (start time, parent pid)

    def start(self, args: list[str], log: Path, **kw: Any) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            p = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **kw)
        self.procs.append(p)
        return p

    def adopt(self, pid: int, parent: int) -> None:
        started = _start_time(pid)
        if started is not None:
            self.adopted[pid] = (started, parent)

    def stop(self, p: subprocess.Popen[bytes], grace: float = 10) -> None:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(grace)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        self._stop_adopted([pid for pid, (_, parent) in self.adopted.items() if parent == p.pid])

    def _stop_adopted(self, pids: list[int], grace: float = 3) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            alive = [pid for pid in pids if _start_time(pid) == self.adopted[pid][0]]
            for pid in alive:
                try:
                    os.kill(pid, sig)
                except OSError:
                    pass
            deadline = time.monotonic() + grace
            while alive and time.monotonic() < deadline:
                alive = [pid for pid in alive if _start_time(pid) == self.adopted[pid][0]]
                time.sleep(0.05)
            if not alive:
                break
        for pid in pids:
            self.adopted.pop(pid, None)

    def stop_all(self) -> None:
        for p in reversed(self.procs):
            self.stop(p)
        self._stop_adopted(list(self.adopted))


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(d.name))
            except (OSError, IndexError, ValueError):
                continue
    return out


def descendants(pid: int) -> list[int]:
    out: list[int] = []
    todo = [pid]
    while todo and len(out) < 1000:
        kids = children(todo.pop())
        out += kids
        todo += kids
    return sorted(out)


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def post(url: str, body: bytes, timeout: float = 5) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def get(url: str, timeout: float = 5) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


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


def start_loader(procs: Procs, tmp: Path, name: str, wrapper_dir: Path, overrides: dict[str, dict[str, str]],
                 timeout: float = 60) -> Server:
    work = tmp / name
    work.mkdir()
    cfg = work / "aiges.toml"
    cfg.write_text(loader_config(wrapper_dir, work / "logs", overrides))
    log = work / "loader.out"
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = procs.start([sys.executable, "-m", "aiges", "-m", "0", "-c", str(cfg), "-s", "svcName"], log, cwd=work,
                    env=env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = SERVING.search(log.read_text(errors="replace"))
        if m:
            break
        if p.poll() is not None:
            raise SystemExit(f"bench: loader for {wrapper_dir} exited with {p.returncode}:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)
    else:
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


# ---------------------------------------------------------------- the peer: MLServer
def _outside_checkout(path: Path) -> Path:
    path = path.resolve()
    if path == ROOT or ROOT in path.parents:
        raise SystemExit(f"bench: the peer's cache {path} is inside the checkout; set AIGES_BENCH_CACHE elsewhere")
    return path


def ensure_mlserver(job: str) -> Path:
    """MLServer (and its CatBoost runtime for that job) in a venv of its own under the cache, made
    with pip on first use and reused after; a marker lists what was installed completely."""
    venv = _outside_checkout(CACHE / "mlserver-venv")
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


def start_mlserver(procs: Procs, tmp: Path, venv: Path, job: Job, overrides: dict[str, Any],
                   timeout: float = 120) -> Server:
    """``mlserver start`` on a model repository in tmp: settings.json with ``parallel_workers: 0``
    (inference in the server process itself) on free loopback ports, one model folder."""
    root = tmp / "mlserver"
    name = job.name
    mdir = root / name
    mdir.mkdir(parents=True)
    http_port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    settings: dict[str, Any] = {"parallel_workers": 0, "host": HOST, "http_port": http_port,
                                "grpc_port": grpc_port, "metrics_port": metrics_port}
    settings.update({k: v for k, v in overrides.items() if not k.startswith("model.")})
    model_over = {k.split(".", 1)[1]: v for k, v in overrides.items() if k.startswith("model.")}
    (root / "settings.json").write_text(json.dumps(settings, indent=2))
    if job.name == "echo":
        shutil.copy(PEERS / "mlserver_echo.py", mdir / "mlserver_echo.py")
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
    base = f"http://{HOST}:{settings['http_port']}"
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
    workers = settings.get("parallel_workers")
    access = "access log on" if settings.get("debug", True) else "access log off"
    batch = int(model.get("max_batch_size") or 0)
    if batch > 1:
        access += f", adaptive batching up to {batch} in {model.get('max_batch_time', 0)} s"
    does = (f"MLServer {MLSERVER_VERSION} (uvicorn + FastAPI, parallel_workers {workers}, {access}), "
            f"V2 POST /v2/models/{name}/infer with {sent}, {runtime}, V2 JSON answer")
    return Server("mlserver", f"{base}/v2/models/{name}/infer", body, pids, [p], does)


# ---------------------------------------------------------------- jobs
@dataclass
class Job:
    """What is served: ``echo`` or ``catboost``, our wrapper, the model file and the row it gets."""

    name: str
    wrapper: Path
    note: str = ""
    model: Path | None = None
    overrides: dict[str, dict[str, str]] = field(default_factory=dict)
    record: dict[str, Any] | None = None
    features: list[str] = field(default_factory=list)
    categorical: set[int] = field(default_factory=set)


def _cbm(d: Path) -> Path | None:
    found = sorted(d.glob("*.cbm")) if d.is_dir() else []
    return found[0].resolve() if found else None


def synth_model() -> Path:
    """The synthetic CatBoost model, trained once into the cache (fixed seed), reused after."""
    out = _outside_checkout(CACHE / f"catboost-synth-{SYNTH_MODEL_VERSION}")
    model = out / "model.cbm"
    if not model.exists():
        print(f"training the synthetic CatBoost model into {out} (once) ...", flush=True)
        r = subprocess.run([sys.executable, str(SYNTH_CATBOOST / "train_synth.py"), str(out)],
                           capture_output=True, text=True, timeout=600)
        if r.returncode != 0 or not model.exists():
            raise SystemExit(f"bench: training the synthetic model failed:\n{(r.stdout + r.stderr)[-3000:]}")
    return model


def _is_catboost(d: Path) -> bool:
    try:
        return _cbm(d) is not None or "catboost" in (d / "wrapper.py").read_text(errors="replace").lower()
    except OSError:
        return False


def resolve_job(job: str | None, wrapper: Path | None, model: Path | None) -> Job:
    """``--job`` / ``--wrapper`` / ``--model`` → the job.  Without ``--job`` a wrapper directory
    holding a ``*.cbm`` model (or a wrapper.py that names catboost) is the catboost job.  The
    catboost job prefers examples/catboost (its wrapper; its model.cbm, which that wrapper trains
    on its first start) and falls back to the bench's synthetic one while that is not there."""
    if job is None:
        job = "catboost" if wrapper is not None and _is_catboost(wrapper) else "echo"
    if job == "echo":
        return Job("echo", (wrapper or DEFAULT_ONCE_WRAPPER).resolve())
    if wrapper is not None:
        return Job("catboost", wrapper.resolve(), f"wrapper {wrapper}", model.resolve() if model else None)
    if (EXAMPLE_CATBOOST / "wrapper.py").exists() and (EXAMPLE_CATBOOST / "train.py").exists():
        return Job("catboost", EXAMPLE_CATBOOST, "examples/catboost (its wrapper.py and model)",
                   model.resolve() if model else None)
    found = model.resolve() if model else synth_model()
    return Job("catboost", SYNTH_CATBOOST, f"the bench's synthetic CatBoost model {found} and wrapper "
               "scripts/bench_peers/catboost (examples/catboost is not there yet); the same shape: "
               "10 fields, numeric and categorical strings", found,
               {"wrapper": {"model_path": json.dumps(str(found))}})


def declared_request(ours: Server) -> dict[str, Any]:
    """The once request built from the wrapper's declared test values, as our OpenAPI shows it."""
    status, raw = get(ours.url.rsplit("/v1/", 1)[0] + "/openapi.json")
    try:
        doc = json.loads(raw)
        return dict(doc["components"]["requestBodies"]["OnceRequest"]["content"]["application/json"]
                    ["examples"]["test_values"]["value"])
    except (ValueError, KeyError, TypeError):
        raise SystemExit(f"bench: no declared example request in our /openapi.json ({status})") from None


def prepare_catboost(job: Job, ours: Server) -> None:
    """Our request is the wrapper's declared test request; its one JSON record is the row both
    engines get.  The model's feature order and categorical columns come from the model file."""
    from catboost import CatBoostClassifier

    job.model = job.model or _cbm(job.wrapper)  # examples/catboost trains its model.cbm on its first start
    if job.model is None or not job.model.exists():
        raise SystemExit(f"bench: no CatBoost model for the peer: none in {job.wrapper}; pass --model FILE")
    if str(job.model) not in job.note:
        job.note += f", model {job.model}"
    request = declared_request(ours)
    texts = [v.get("text") for v in (request.get("payload") or {}).values() if isinstance(v, dict)]
    record = None
    if len(texts) == 1 and isinstance(texts[0], str):
        try:
            record = json.loads(base64.b64decode(texts[0]))
        except ValueError:
            record = None
    if not isinstance(record, dict):
        raise SystemExit(f"bench: the catboost wrapper's declared request does not carry one JSON record: "
                         f"{json.dumps(request)[:400]}")
    cb = CatBoostClassifier()
    cb.load_model(str(job.model))
    job.features = list(cb.feature_names_)
    job.categorical = set(cb.get_cat_feature_indices())
    missing = [n for n in job.features if n not in record]
    if missing:
        raise SystemExit(f"bench: the declared record lacks the model's fields {missing}: {record}")
    job.record = record
    ours.body = json.dumps(request).encode()
    row = [record[n] for n in job.features]
    job.note += f"; reference p(positive) for the record, in-process: {float(cb.predict_proba([row])[0][1]):.6f}"


def check_answers(job: Job, servers: list[Server]) -> list[str]:
    """One request to each system before measuring: the answer is right, and says what it is."""
    lines = []
    for s in servers:
        status, raw = post(s.url, s.body, 30)
        if status != 200:
            raise SystemExit(f"bench: {s.name} answers the benchmark request with HTTP {status}: {raw[:600]!r}")
        text = raw.decode(errors="replace")
        if job.name == "echo":
            if TEXT.decode() not in text and base64.b64encode(TEXT).decode() not in text:
                raise SystemExit(f"bench: {s.name} did not echo the text: {text[:400]}")
            lines.append(f"  {s.name:8s} answers {len(raw)} bytes, the text echoed")
        elif s.name == "mlserver":
            lines.append(f"  {s.name:8s} answers {_mlserver_label(raw)}")
        else:
            lines.append(f"  {s.name:8s} answers {_catboost_answer(raw)}")
    return lines


def _mlserver_label(raw: bytes) -> str:
    try:
        out = json.loads(raw)["outputs"][0]
        return f"output {out['name']!r} = {out['data']} (a class label; the stock runtime has no probabilities)"
    except (ValueError, KeyError, IndexError, TypeError):
        return raw.decode(errors="replace")[:300]


def _catboost_answer(raw: bytes) -> str:
    try:
        payload = json.loads(raw)["payload"]
        for item in payload.values():
            text = item.get("text")
            if isinstance(text, str) and "positive" in text:
                return f"{text} (label {int(json.loads(text)['body']['positive'] > 0.5)})"
    except (ValueError, KeyError, TypeError, AttributeError):
        pass
    return raw.decode(errors="replace")[:300]


# ---------------------------------------------------------------- once load
@dataclass
class Run:
    server: str
    tool: str
    concurrency: int
    seconds: float
    requests: int
    errors: int
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_ms_per_req: dict[str, float] = field(default_factory=dict)
    other_cpu_pct: float = 0.0
    steal_pct: float = 0.0
    batch_mean: float | None = None  # ours: requests per batch handed to a worker


def _machine_busy() -> tuple[float, float]:
    """Seconds of CPU the whole machine spent busy, and stolen by the hypervisor (/proc/stat)."""
    try:
        ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (ticks + [0] * 8)[:8]
    return (user + nice + system + irq + softirq) / CLK_TCK, steal / CLK_TCK


class CpuMeter:
    """CPU used during one run: by each server process, by the load generator (``who``: ``children``
    for wrk, ``self`` for the in-process Python client), and by everything else on the machine,
    which is how a reader tells a clean run from a noisy one."""

    def __init__(self, server: Server, who: str) -> None:
        self.server = server
        self.who = resource.RUSAGE_CHILDREN if who == "children" else resource.RUSAGE_SELF
        self.procs = {k: cpu_seconds(pid) for k, pid in server.pids.items()}
        self.rusage = resource.getrusage(self.who)
        self.busy, self.steal = _machine_busy()
        self.t0 = time.perf_counter()

    def stop(self, units: int) -> tuple[dict[str, float], float, float]:
        """→ (CPU ms per unit by process, other processes' CPU in % of one core, steal %)."""
        elapsed = max(time.perf_counter() - self.t0, 1e-6)
        r = resource.getrusage(self.who)
        busy, steal = _machine_busy()
        used = {k: cpu_seconds(pid) - self.procs[k] for k, pid in self.server.pids.items()}
        used[LOADGEN] = (r.ru_utime - self.rusage.ru_utime) + (r.ru_stime - self.rusage.ru_stime)
        other = max(0.0, (busy - self.busy) - sum(used.values()))
        per_unit = {k: round(1000 * v / max(units, 1), 3) for k, v in used.items()}
        return per_unit, round(100 * other / elapsed, 1), round(100 * (steal - self.steal) / elapsed, 1)


def _ms(value: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value)
    if not m:
        raise ValueError(f"cannot read wrk latency {value!r}")
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[m.group(2)]


def run_wrk(server: Server, conc: int, seconds: float, tmp: Path) -> Run:
    script = tmp / f"{server.name}.lua"
    script.write_text('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                      f"wrk.body = [==[{server.body.decode()}]==]\n")
    meter = CpuMeter(server, "children")
    t0 = time.perf_counter()
    proc = subprocess.run(["wrk", "-t1", f"-c{conc}", f"-d{max(1, round(seconds))}s", "--latency", "--timeout", "5s",
                           "-s", str(script), server.url], capture_output=True, text=True, timeout=seconds + 30)
    elapsed = time.perf_counter() - t0
    out = proc.stdout
    if proc.returncode != 0 or "Requests/sec" not in out:
        raise SystemExit(f"bench: wrk failed ({proc.returncode}):\n{out}\n{proc.stderr}")
    n = int(re.search(r"(\d+) requests in ([\d.]+)(\w+)", out).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s*([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat = dict(re.findall(r"^\s+(50|99)(?:\.000)?%\s+(\S+)", out, re.M))
    errors = 0
    if m := re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out):
        errors += int(m.group(1))
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        errors += sum(int(x) for x in m.groups())
    cpu, other, steal = meter.stop(n)
    return Run(server.name, "wrk", conc, round(elapsed, 2), n, errors, rps, _ms(lat["50"]), _ms(lat["99"]),
               cpu, other, steal)


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    i = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[i]


async def _aiohttp_load(server: Server, conc: int, seconds: float) -> tuple[list[float], int, float]:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    headers = {"Content-Type": "application/json"}
    deadline = time.perf_counter() + seconds

    async def worker(http: aiohttp.ClientSession) -> None:
        nonlocal errors
        while time.perf_counter() < deadline and len(latencies) + errors < MAX_REQUESTS:
            t = time.perf_counter()
            try:
                async with http.post(server.url, data=server.body, headers=headers) as resp:
                    await resp.read()
                    ok = resp.status == 200
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError):
                ok = False
            if ok:
                latencies.append(time.perf_counter() - t)
            else:
                errors += 1

    t0 = time.perf_counter()
    connector = aiohttp.TCPConnector(limit=conc)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=10)) as http:
        await asyncio.gather(*(worker(http) for _ in range(conc)))
    return latencies, errors, time.perf_counter() - t0


def run_python(server: Server, conc: int, seconds: float) -> Run:
    meter = CpuMeter(server, "self")
    lat, errors, elapsed = new_loop().run_until_complete(_aiohttp_load(server, conc, seconds))
    n = len(lat) + errors
    cpu, other, steal = meter.stop(n)
    lat.sort()
    return Run(server.name, "python-aiohttp", conc, round(elapsed, 2), n, errors, len(lat) / elapsed,
               1000 * percentile(lat, 50), 1000 * percentile(lat, 99), cpu, other, steal)


def new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:
        return asyncio.new_event_loop()


def load(server: Server, conc: int, seconds: float, tool: str, tmp: Path) -> Run:
    return run_wrk(server, conc, seconds, tmp) if tool == "wrk" else run_python(server, conc, seconds)


M = TypeVar("M", "Run", "OpenRun")


def batch_counts(server: Server) -> tuple[float, float] | None:
    """Our loader's ``aiges_batch_size`` histogram (sum, count) from /metrics; None elsewhere."""
    if server.name != "ours":
        return None
    try:
        text = get(server.url.rsplit("/v1/", 1)[0] + "/metrics", 5)[1].decode(errors="replace")
    except OSError:
        return None
    found = dict(re.findall(r"^aiges_batch_size_(sum|count)(?:\{\})? (\S+)$", text, re.M))
    try:
        return float(found["sum"]), float(found["count"])
    except (KeyError, ValueError):
        return None


def with_batches(server: Server, measure: Callable[[], M]) -> M:
    """Run one measurement; for ours, note the mean batch size the loader handed to its workers."""
    before = batch_counts(server)
    run = measure()
    after = batch_counts(server) if before else None
    if before and after and after[1] > before[1]:
        run.batch_mean = round((after[0] - before[0]) / (after[1] - before[1]), 2)
    return run


def fmt_batch(mean: float | None) -> str:
    return f"  batch {mean:.1f}" if mean is not None else ""


# ---------------------------------------------------------------- streaming load
@dataclass
class StreamRun:
    sessions: int
    frames_per_session: int
    seconds: float
    frames: int
    sessions_done: int
    errors: int
    frames_per_s: float
    p50_ms: float
    p99_ms: float
    cpu_ms_per_frame: dict[str, float] = field(default_factory=dict)
    other_cpu_pct: float = 0.0
    steal_pct: float = 0.0
    error_samples: list[str] = field(default_factory=list)


async def _stream_load(url: str, sessions: int, frames: int, seconds: float) -> tuple[list[float], int, int,
                                                                                       list[str], float]:
    latencies: list[float] = []
    done = 0
    errors: list[str] = []
    deadline = time.perf_counter() + seconds
    payload = TEXT.decode()

    async def one_session() -> None:
        nonlocal done
        async with StreamSession(url, timeout=10) as s:
            results = s.results()
            for i in range(frames):
                # the last frame closes the session: at the planned count, or as soon as time is up
                last = i == frames - 1 or time.perf_counter() >= deadline
                t = time.perf_counter()
                await s.send("text", payload, status=2 if last else 0 if i == 0 else 1)
                r = await results.__anext__()
                latencies.append(time.perf_counter() - t)
                if r.data != TEXT:
                    raise ClientError(-1, f"frame {i}: got {r.data[:40]!r}", s.sid)
                if last:
                    break
            async for _ in results:  # after the final result the session has nothing more
                pass
        done += 1

    async def runner() -> None:
        while time.perf_counter() < deadline and len(errors) < 100 and len(latencies) < MAX_REQUESTS:
            try:
                await one_session()
            except (ClientError, StopAsyncIteration) as e:
                errors.append(repr(e))

    t0 = time.perf_counter()
    await asyncio.gather(*(runner() for _ in range(sessions)))
    return latencies, done, len(errors), errors[:5], time.perf_counter() - t0


def run_stream(server: Server, sessions: int, frames: int, seconds: float) -> StreamRun:
    ws_url = server.url.replace("http://", "ws://", 1)
    meter = CpuMeter(server, "self")
    lat, done, errors, samples, elapsed = new_loop().run_until_complete(
        asyncio.wait_for(_stream_load(ws_url, sessions, frames, seconds), seconds + 60))
    cpu, other, steal = meter.stop(len(lat))
    lat.sort()
    return StreamRun(sessions, frames, round(elapsed, 2), len(lat), done, errors, len(lat) / elapsed,
                     1000 * percentile(lat, 50), 1000 * percentile(lat, 99), cpu, other, steal, samples)


# ---------------------------------------------------------------- profile
PROFILE_RATE = 250  # py-spy samples per second


def profile(server: Server, seconds: float, out_dir: Path, run: Callable[[], int], label: str) -> dict[str, list[str]]:
    """py-spy on every server process during one more run of ``run`` (which returns how many requests
    or frames it completed).  ``--gil --nonblocking``: only the thread holding the GIL is sampled and
    the process is never paused, so shares are of Python CPU time and the run is barely disturbed."""
    pyspy = shutil.which("py-spy")
    if not pyspy:
        print("bench: --profile needs py-spy (pip install py-spy); skipped")
        return {}
    out_dir.mkdir(parents=True, exist_ok=True)
    spies = []
    for name, pid in server.pids.items():
        for fmt, ext in (("raw", "txt"), ("flamegraph", "svg")):
            path = out_dir / f"{label}-{name}.{ext}"
            spies.append((name, fmt, path, subprocess.Popen(
                [pyspy, "record", "--gil", "--nonblocking", "--rate", str(PROFILE_RATE), "--pid", str(pid),
                 "--duration", str(max(1, round(seconds))), "--format", fmt, "--output", str(path)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
    time.sleep(1)  # let py-spy attach before the load starts
    units = run()
    report: dict[str, list[str]] = {}
    for name, fmt, path, p in spies:
        try:
            p.wait(seconds + 30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
        if fmt == "raw" and path.exists():
            report[name] = hot_spots(path, units)
    print(f"  py-spy output (collapsed stacks .txt, flame graphs .svg) in {out_dir}")
    return report


def hot_spots(collapsed: Path, units: int, top: int = 14) -> list[str]:
    """Python CPU per request/frame by function, self and inclusive, from py-spy's collapsed stacks
    (an estimate: samples x sampling interval / units; the run is slightly longer than the profile)."""
    self_n: collections.Counter[str] = collections.Counter()
    incl_n: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_short(f.strip()) for f in stack.split(";") if f.strip()]
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += n
        self_n[frames[-1]] += n
        for f in set(frames):
            incl_n[f] += n
    if not total or not units:
        return []
    us = 1e6 / PROFILE_RATE / units
    lines = [f"total {total * us:6.1f} us/unit of Python CPU (GIL held)"]
    lines += [f"self  {n * us:6.1f} us  {f}" for f, n in self_n.most_common(top)]
    skip = ("<module>", "_run_module_as_main", "_run_code", "Runner.run", "run (", "main (")
    ours = [(f, n) for f, n in incl_n.most_common() if "aiges/" in f and not f.startswith(skip)][:top]
    lines += [f"incl  {n * us:6.1f} us  {f}" for f, n in ours]
    return lines


def _short(frame: str) -> str:
    # "func (path/to/file.py:123)" → "func (file.py-ish tail)" without the line number
    m = re.match(r"(.*) \((.*?)(?::\d+)?\)$", frame)
    if not m:
        return frame
    path = m.group(2)
    for marker in ("site-packages/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
    if "/aiges/" in path:
        path = "aiges/" + path.rsplit("/aiges/", 1)[1]
    return f"{m.group(1)} ({path})"


# ---------------------------------------------------------------- report
def _all_cpu() -> dict[int, float]:
    out = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            out[int(d.name)] = cpu_seconds(int(d.name))
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def machine_state(sample: float = 1.0) -> list[str]:
    """Load average and the processes busy right now (CPU measured over ``sample`` seconds)."""
    load1, load5, load15 = os.getloadavg()
    lines = [f"machine: {os.cpu_count()} CPUs, load average {load1:.2f} {load5:.2f} {load15:.2f}, "
             f"python {sys.version.split()[0]}"]
    if sample > 0:
        before = _all_cpu()
        time.sleep(sample)
        after = _all_cpu()
        busy = sorted(((after[p] - before.get(p, 0.0), p) for p in after if p != os.getpid()), reverse=True)
        busy = [(c, p) for c, p in busy if c / sample >= 0.02][:6]
        lines.append(f"processes using CPU (over {sample:g} s): " + ("none above 2%" if not busy else ""))
        lines += [f"  {100 * c / sample:5.1f}%  pid {p:<7d} {_cmdline(p)[:120]}" for c, p in busy]
    return lines


def server_cpu(per_unit: dict[str, float]) -> float:
    """CPU ms per request of the system under test: all its processes, not the load generator."""
    return sum(v for k, v in per_unit.items() if k != LOADGEN)


def fmt_cpu(per_unit: dict[str, float], other: float, steal: float) -> str:
    cpu = ", ".join(f"{k} {v:.3f}" for k, v in per_unit.items())
    return (f"{server_cpu(per_unit):.3f} ({cpu}); other processes {other:.0f}% of a core"
            + (f", steal {steal:.0f}%" if steal >= 1 else ""))


def fmt_run(r: Run) -> str:
    return (f"  {r.server:8s} c={r.concurrency:<3d} {r.rps:9.0f} req/s  p50 {r.p50_ms:7.2f} ms  p99 {r.p99_ms:7.2f} ms"
            f"  errors {r.errors:<4d} n={r.requests:<7d}{fmt_batch(r.batch_mean)} CPU ms/req: "
            f"{fmt_cpu(r.cpu_ms_per_req, r.other_cpu_pct, r.steal_pct)}")


# ---------------------------------------------------------------- open loop
@dataclass
class OpenRun:
    """One open-loop run: requests due at fixed times (``rate`` per second) whatever the answers;
    latency counted from each request's due time, so a stall shows in every request behind it."""

    server: str
    rate: float
    seconds: float
    scheduled: int
    sent: int
    ok: int
    errors: int
    achieved_rps: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    late_p50_ms: float
    late_p99_ms: float
    late_max_ms: float
    cpu_ms_per_req: dict[str, float] = field(default_factory=dict)
    other_cpu_pct: float = 0.0
    steal_pct: float = 0.0
    error_kinds: dict[str, int] = field(default_factory=dict)
    batch_mean: float | None = None


class _OpenConn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection of the open-loop client: writes the prepared request,
    reads one response (status line + Content-Length body), hands itself back to the pool."""

    def __init__(self, pool: _OpenPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.due: float | None = None  # the due time of the request in flight, None when idle
        self.need = -1
        self.status = 0
        self.close_after = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports only quack like one
        self.pool.on_ready(self)

    def send(self, due: float) -> None:
        assert self.transport is not None
        self.due, self.need = due, -1
        self.buf.clear()
        self.transport.write(self.pool.request)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.need < 0:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).lower()
            at = head.find(b"\ncontent-length:")
            try:
                self.status = int(head[9:12])
                eol = head.find(b"\r", at + 1)
                self.need = end + 4 + int(head[at + 16:eol if eol >= 0 else len(head)])
            except ValueError:
                self.need = -1
            if at < 0 or self.need < 0:
                self.pool.fail(self, "unreadable response (no Content-Length)")
                return
            self.close_after = b"\nconnection: close" in head
        if len(self.buf) >= self.need and self.due is not None:
            self.pool.done(self, self.due, self.status)

    def connection_lost(self, exc: Exception | None) -> None:
        self.pool.lost(self)


class _OpenPool:
    """The open-loop client: requests are submitted at their due times; each goes out on an idle
    connection at once, else waits for one (a new connection is opened up to ``max_conns``), so
    the wait for a connection is part of its latency.  Callbacks only: no task per request, which
    keeps the client's own CPU small on a 2-core machine."""

    def __init__(self, url: str, body: bytes, max_conns: int) -> None:
        parsed = urllib.parse.urlsplit(url)
        self.host, self.port = parsed.hostname or HOST, parsed.port or 80
        self.request = (f"POST {parsed.path or '/'} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
        self.max_conns = max_conns
        self.conns: set[_OpenConn] = set()
        self.idle: list[_OpenConn] = []
        self.connecting = 0
        self.queue: collections.deque[float] = collections.deque()
        self.latencies: list[float] = []
        self.late: list[float] = []
        self.kinds: collections.Counter[str] = collections.Counter()
        self.outstanding = 0
        self.last_answer = 0.0
        self.tasks: set[asyncio.Task[None]] = set()

    def submit(self, due: float, now: float) -> None:
        self.late.append(now - due)
        self.outstanding += 1
        if self.idle:
            self.idle.pop().send(due)
            return
        self.queue.append(due)
        self._grow()

    def _grow(self) -> None:
        if self.queue and len(self.conns) + self.connecting < self.max_conns:
            self.connecting += 1
            task = asyncio.get_running_loop().create_task(self._connect())
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _connect(self) -> None:
        try:
            await asyncio.get_running_loop().create_connection(lambda: _OpenConn(self), self.host, self.port)
        except OSError as e:
            self.connecting -= 1
            if self.queue and not self.conns:  # nothing else will ever take it
                self.queue.popleft()
                self._error(f"connect: {type(e).__name__}")

    def on_ready(self, c: _OpenConn) -> None:
        self.connecting -= 1
        self.conns.add(c)
        self._next(c)

    def _next(self, c: _OpenConn) -> None:
        if self.queue:
            c.send(self.queue.popleft())
        else:
            c.due = None
            self.idle.append(c)

    def _error(self, kind: str) -> None:
        self.outstanding -= 1
        self.kinds[kind] += 1

    def done(self, c: _OpenConn, due: float, status: int) -> None:
        self.last_answer = now = time.perf_counter()
        self.outstanding -= 1
        if status == 200:
            self.latencies.append(now - due)
        else:
            self.kinds[f"HTTP {status}"] += 1
        c.due = None
        if c.close_after and c.transport is not None:
            c.transport.close()
        else:
            self._next(c)

    def fail(self, c: _OpenConn, kind: str) -> None:
        if c.due is not None:
            c.due = None
            self._error(kind)
        if c.transport is not None:
            c.transport.abort()

    def lost(self, c: _OpenConn) -> None:
        self.conns.discard(c)
        if c in self.idle:
            self.idle.remove(c)
        if c.due is not None:
            c.due = None
            self._error("connection lost")
        self._grow()

    def expire(self, now: float) -> None:
        """Requests older than the drain time are errors (timeout); their connections are dropped."""
        for c in list(self.conns):
            if c.due is not None and now - c.due > OPEN_DRAIN:
                self.fail(c, "timeout")
        while self.queue and now - self.queue[0] > OPEN_DRAIN:
            self.queue.popleft()
            self._error("timeout (no connection)")

    def close(self) -> None:
        for c in list(self.conns):
            if c.transport is not None:
                c.transport.abort()
        for task in self.tasks:
            task.cancel()


async def _open_load(server: Server, rate: float, seconds: float, conns: int) -> dict[str, Any]:
    n = max(1, min(int(rate * seconds), MAX_REQUESTS))
    interval = 1.0 / rate
    pool = _OpenPool(server.url, server.body, conns)
    t0 = time.perf_counter() + 0.05
    give_up = t0 + seconds + 1.0  # a client this far behind stops sending; the rest counts as not sent
    next_sweep = t0 + 0.1
    i = 0
    try:
        while i < n:
            now = time.perf_counter()
            if now > give_up:
                break
            if now >= next_sweep:
                pool.expire(now)
                next_sweep = now + 0.1
            due = t0 + i * interval
            if due > now:
                await asyncio.sleep(min(due - now, 0.1))
                continue
            while i < n and t0 + i * interval <= now:  # everything due by now, each with its own due time
                pool.submit(t0 + i * interval, now)
                i += 1
        drain_until = time.perf_counter() + OPEN_DRAIN + 1
        while pool.outstanding > 0 and time.perf_counter() < drain_until:
            await asyncio.sleep(0.01)
            pool.expire(time.perf_counter())
        if pool.outstanding > 0:
            pool.kinds["unfinished"] += pool.outstanding
    finally:
        pool.close()
        await asyncio.sleep(0)
    if i < n:
        pool.kinds["not sent (client behind)"] += n - i
    return {"scheduled": n, "sent": i, "latencies": pool.latencies, "late": pool.late, "kinds": dict(pool.kinds),
            "elapsed": max(pool.last_answer - t0, 1e-6)}


def run_open(server: Server, rate: float, seconds: float, conns: int) -> OpenRun:
    meter = CpuMeter(server, "self")
    res = new_loop().run_until_complete(
        asyncio.wait_for(_open_load(server, rate, seconds, conns), seconds + OPEN_DRAIN + 30))
    lat = sorted(res["latencies"])
    late = sorted(res["late"])
    errors = sum(res["kinds"].values())
    cpu, other, steal = meter.stop(len(lat) + errors)
    return OpenRun(server.name, rate, round(res["elapsed"], 2), res["scheduled"], res["sent"], len(lat), errors,
                   len(lat) / res["elapsed"], 1000 * percentile(lat, 50), 1000 * percentile(lat, 99),
                   1000 * (lat[-1] if lat else float("nan")), 1000 * percentile(late, 50),
                   1000 * percentile(late, 99), 1000 * (late[-1] if late else float("nan")),
                   cpu, other, steal, res["kinds"])


def fmt_open(r: OpenRun) -> str:
    kinds = (" (" + ", ".join(f"{k} {v}" for k, v in r.error_kinds.items()) + ")") if r.error_kinds else ""
    return (f"  {r.server:8s} {r.rate:6.0f}/s offered {r.achieved_rps:7.0f}/s answered  p50 {r.p50_ms:7.2f}"
            f"  p99 {r.p99_ms:7.2f}  max {r.max_ms:7.2f} ms  errors {r.errors}{kinds}  client late p50/p99/max "
            f"{r.late_p50_ms:.2f}/{r.late_p99_ms:.2f}/{r.late_max_ms:.2f} ms  n={r.ok}{fmt_batch(r.batch_mean)}  CPU ms/req: "
            f"{fmt_cpu(r.cpu_ms_per_req, r.other_cpu_pct, r.steal_pct)}")


# ---------------------------------------------------------------- summaries
def _med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def summarize_closed(runs: dict[str, list[Run]]) -> list[str]:
    ours = runs.get("ours", [])
    n = max((len(v) for v in runs.values()), default=0)
    lines = [f"summary at c=32, medians of {n} interleaved round(s); CPU = the system's own processes:",
             f"  {'system':8s} {'req/s':>7s} {'p50 ms':>8s} {'p99 ms':>8s} {'CPU ms/req':>10s}  ours/system per round"]
    for name, rs in runs.items():
        ratios = [a.rps / b.rps for a, b in zip(ours, rs, strict=False) if b.rps]
        ratio = ("-" if name == "ours" else
                 f"{_med(ratios):.2f} ({', '.join(f'{x:.2f}' for x in ratios)})" if ratios else "n/a")
        lines.append(f"  {name:8s} {_med([r.rps for r in rs]):7.0f} {_med([r.p50_ms for r in rs]):8.2f} "
                     f"{_med([r.p99_ms for r in rs]):8.2f} {_med([server_cpu(r.cpu_ms_per_req) for r in rs]):10.3f}"
                     f"  {ratio}")
    return lines


def summarize_open(rate: float, runs: dict[str, list[OpenRun]]) -> list[str]:
    n = max((len(v) for v in runs.values()), default=0)
    lines = [f"summary, open loop at {rate:g} req/s offered, medians of {n} interleaved round(s) "
             f"(max and errors over all rounds):",
             f"  {'system':8s} {'answered/s':>10s} {'p50 ms':>8s} {'p99 ms':>8s} {'max ms':>8s} {'errors':>6s} "
             f"{'late p99':>8s} {'CPU ms/req':>10s}"]
    for name, rs in runs.items():
        lines.append(f"  {name:8s} {_med([r.achieved_rps for r in rs]):10.0f} {_med([r.p50_ms for r in rs]):8.2f} "
                     f"{_med([r.p99_ms for r in rs]):8.2f} {max((r.max_ms for r in rs), default=0):8.2f} "
                     f"{sum(r.errors for r in rs):6d} {_med([r.late_p99_ms for r in rs]):8.2f} "
                     f"{_med([server_cpu(r.cpu_ms_per_req) for r in rs]):10.3f}")
    late = max((r.late_p99_ms for rs in runs.values() for r in rs), default=0.0)
    if late > 2.0:
        lines.append(f"  note: the client sent up to {late:.1f} ms late (p99 of its worst run; other load on the "
                     "machine counts too): these latencies include that delay")
    return lines


def batching_note(ours: list[Run] | list[OpenRun], peer_settings: dict[str, Any], peer: Path | None) -> list[str]:
    """Ours batches when the wrapper asks for it; say so when the peer was left without batching."""
    means = [r.batch_mean for r in ours if r.batch_mean is not None]
    if not means or max(means) < 1.5:
        return []
    line = f"  note: ours handed its worker batches of {_med(means):.1f} requests (median per run; the wrapper asks for it)"
    if peer is not None and int(peer_settings.get("model.max_batch_size") or 0) <= 1:
        line += ("; MLServer's adaptive batching is off by default (--peer-set model.max_batch_size=64 "
                 "--peer-set model.max_batch_time=0.001 turns it on)")
    return [line]


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _parse_rates(text: str | None) -> list[float]:
    if not text:
        return []
    try:
        rates = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SystemExit(f"bench: --rate expects numbers (req/s), comma-separated, got {text!r}") from None
    if not rates or len(rates) > 5 or any(not 1 <= r <= 20000 for r in rates):
        raise SystemExit("bench: --rate takes 1 to 5 rates, each between 1 and 20000 req/s")
    return rates


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="scripts/bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--mode", choices=("once", "stream", "all"), default="all")
    ap.add_argument("--job", choices=("echo", "catboost"), default=None,
                    help="once-mode job: echo (default) or catboost (examples/catboost, else a synthetic model)")
    ap.add_argument("--peer", choices=("mlserver",), default=None,
                    help=f"also measure MLServer {MLSERVER_VERSION} on the same job, interleaved (its own venv "
                         f"under {CACHE})")
    ap.add_argument("--peer-set", action="append", default=[], metavar="KEY=JSON",
                    help="a settings.json override for the peer, e.g. --peer-set debug=false; model.KEY=JSON "
                         "goes to its model-settings.json, e.g. model.max_batch_size=64 (repeatable)")
    ap.add_argument("--rate", default=None, metavar="R[,R...]",
                    help="open loop at R req/s (up to 5 rates) instead of the c=1/c=32 closed loop")
    ap.add_argument("--open-conns", type=int, default=256, help="open loop: most connections per system (256)")
    ap.add_argument("--duration", type=float, default=None, help="seconds per measurement (default 10)")
    ap.add_argument("--quick", action="store_true",
                    help="defaults for a smoke run: 3 s per measurement, 2 rounds (3 with --peer), "
                         "20 frames per session")
    ap.add_argument("--rounds", "--pairs", dest="rounds", type=int, default=None,
                    help="interleaved rounds (ours, ceiling, peer) per load level (default 3)")
    ap.add_argument("--sessions", type=int, default=32, help="concurrent streaming sessions (default 32)")
    ap.add_argument("--frames", type=int, default=None, help="frames per streaming session (default 50)")
    ap.add_argument("--workers", type=int, default=None, help="[aiges] workers for our loader (default: config's)")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="a config override for our loader, VALUE a TOML literal, e.g. --set log.access=false "
                         "(repeatable)")
    ap.add_argument("--wrapper", type=Path, default=None,
                    help="once-mode wrapper dir (default tests/wrappers/echo); for the echo job it must take "
                         "payload 'text'; a dir with a *.cbm model (or a wrapper.py naming catboost) is the catboost job")
    ap.add_argument("--model", type=Path, default=None, help="catboost job: the model file (default: the *.cbm "
                    "beside the wrapper, else the synthetic one); the peer serves the same file")
    ap.add_argument("--stream-wrapper", type=Path, default=ROOT / "tests" / "wrappers" / "echo_stream")
    ap.add_argument("--no-wrk", action="store_true", help="use the Python (aiohttp) load generator even if wrk exists")
    ap.add_argument("--no-ceiling", action="store_true", help="skip the ceiling comparison")
    ap.add_argument("--profile", type=Path, default=None, metavar="DIR",
                    help="after measuring, py-spy loader and plugin during one more c=32 run; write to DIR")
    ap.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write the results as JSON")
    ap.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = ap.parse_args(argv)
    # --quick changes the defaults only: explicit flags still win
    for name, normal, quick in (("duration", 10.0, 3.0), ("rounds", 3, 3 if args.peer else 2), ("frames", 50, 20)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else normal)
    args.sessions = max(1, min(args.sessions, 1000))
    args.frames = max(1, min(args.frames, 100_000))
    secs = max(1.0, min(args.duration, 300.0))
    rounds = max(1, min(args.rounds, 10))
    conns = max(1, min(args.open_conns, 4096))
    rates = _parse_rates(args.rate)
    tool = "wrk" if shutil.which("wrk") and not args.no_wrk else "python-aiohttp"
    overrides: dict[str, dict[str, str]] = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or not section or not name:
            ap.error(f"--set expects SECTION.KEY=VALUE, got {item!r}")
        overrides.setdefault(section, {})[name] = value.strip()
    if args.workers:
        overrides.setdefault("aiges", {})["workers"] = str(args.workers)
    peer_settings: dict[str, Any] = {}
    for item in args.peer_set:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            ap.error(f"--peer-set expects KEY=JSON, got {item!r}")
        try:
            peer_settings[key.strip()] = json.loads(value)
        except ValueError:
            peer_settings[key.strip()] = value  # a bare string
    once = args.mode in ("once", "all")
    job = resolve_job(args.job, args.wrapper, args.model) if once else Job("echo", DEFAULT_ONCE_WRAPPER)
    for section, values in job.overrides.items():
        for k, v in values.items():
            overrides.setdefault(section, {}).setdefault(k, v)
    ceiling = once and job.name == "echo" and not args.no_ceiling and (CEILING / "t.proto").exists()
    # the peer's venv is made before the clock starts: a first install takes a minute or more
    venv = ensure_mlserver(job.name) if once and args.peer else None

    # hard limit for the whole run: every measurement plus generous start/stop allowances
    systems = 1 + int(ceiling) + int(venv is not None)
    runs = 0
    budget = 120 + 60 * (systems - 1)
    if once:
        if rates:
            budget += int(systems * (1 + 15) + len(rates) * rounds * systems * (secs + OPEN_DRAIN + 15))
        else:
            runs += systems * (2 + rounds)  # warm-up, c=1, c=32 rounds
        runs += 1 if args.profile else 0
    if args.mode != "once":
        runs += 2 if args.profile else 1
    budget = int(budget + runs * (secs + 15))

    def on_alarm(signum: int, frame: Any) -> None:
        raise SystemExit(f"bench: hard time limit of {budget}s reached; stopping")

    def on_term(signum: int, frame: Any) -> None:
        raise SystemExit(f"bench: stopped by signal {signum}; stopping the processes it started")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGTERM, on_term)
    signal.alarm(budget)

    if overrides:
        print("config overrides: " + ", ".join(f"{s}.{k}={v}" for s, kv in overrides.items() for k, v in kv.items()))
    load_desc = (f"open loop at {', '.join(f'{r:g}' for r in rates)} req/s (a Python asyncio HTTP/1.1 client, "
                 f"keep-alive, up to {conns} connections per system)" if rates else
                 f"closed loop, {tool}{' (wrk -t1, keep-alive)' if tool == 'wrk' else ' (in-process, keep-alive)'}")
    print(f"aiges bench: mode {args.mode}, job {job.name}, {secs:g} s per measurement, {rounds} round(s), "
          f"once-mode load: {load_desc}, time limit {budget}s")
    state = machine_state()
    for line in state:
        print(line)
    results: dict[str, Any] = {"tool": tool, "seconds": secs, "job": job.name, "rounds": rounds,
                               "rates": rates, "machine_before": state}
    procs = Procs()
    tmp = Path(tempfile.mkdtemp(prefix="aiges-bench-"))
    checks: list[tuple[str, str, bool]] = []
    try:
        if once:
            ours = start_loader(procs, tmp, "once", job.wrapper, overrides)
            ours.name = "ours"
            workers = overrides.get("aiges", {}).get("workers", "1")
            if job.name == "catboost":
                prepare_catboost(job, ours)
                what = "one JSON record (base64 in the envelope) -> the wrapper's CatBoost predict -> its JSON answer"
            else:
                what = f"base64 text -> {job.wrapper.name} wrapper -> text echoed"
            ours.does = (f"aiges loader (aiohttp) + {workers} plugin process(es) over gRPC, POST /v1/svcName upstream "
                         f"envelope, {what}, JSON envelope answer; access log and metrics on (defaults)")
            if job.name == "echo" and job.wrapper == DEFAULT_ONCE_WRAPPER:
                with HttpClient(ours.url) as c:  # the answer is right before we count answers
                    try:
                        answer = c.once({"text": TEXT})
                    except ClientError as e:
                        raise SystemExit(f"bench: {job.wrapper} answers the benchmark request with an error: "
                                         f"{e}") from None
                    if answer["result"] != TEXT.decode():
                        raise SystemExit(f"bench: echo answered {answer['result']!r}, not the text it was sent")
            servers = [ours]
            if ceiling:
                servers.append(start_ceiling(procs, tmp))
            if venv is not None:
                servers.append(start_mlserver(procs, tmp, venv, job, peer_settings))
            print(f"job {job.name}: {job.note or job.wrapper}")
            if job.name == "catboost" and not args.no_ceiling:
                print("  (no ceiling for this job: the ceiling prototype only echoes)")
            if job.name == "echo" and job.wrapper != DEFAULT_ONCE_WRAPPER and venv is not None:
                print(f"  note: the peer runs the echo runtime, not {job.wrapper}")
            print("what each system does per request:")
            for s in servers:
                print(f"  {s.name:8s} {s.url} pids {s.pids}\n           {s.does}")
            for line in check_answers(job, servers):
                print(line)
            once_res: dict[str, Any] = {"systems": {s.name: {"url": s.url, "does": s.does} for s in servers},
                                        "job_note": job.note}
            results["once"] = once_res
            for s in servers:  # warm-up: connection setup, first-call paths, allocator
                load(s, 32, 1, tool, tmp)
            if rates:
                errors = 0
                once_res["open"] = {}
                for rate in rates:
                    print(f"open loop at {rate:g} req/s, {rounds} round(s) interleaved "
                          f"({', '.join(s.name for s in servers)}):")
                    by: dict[str, list[OpenRun]] = {s.name: [] for s in servers}
                    for _ in range(rounds):
                        for s in servers:
                            r = with_batches(s, functools.partial(run_open, s, rate, secs, conns))
                            by[s.name].append(r)
                            print(fmt_open(r))
                    for line in summarize_open(rate, by) + batching_note(by["ours"], peer_settings, venv):
                        print(line)
                    once_res["open"][f"{rate:g}"] = {k: [asdict(r) for r in v] for k, v in by.items()}
                    errors += sum(r.errors for r in by["ours"])
                checks.append(("no errors in our open-loop runs", str(errors), errors == 0))
            else:
                print("once mode, closed loop:")
                c1 = []
                for s in servers:
                    c1.append(with_batches(s, functools.partial(load, s, 1, secs, tool, tmp)))
                    print(fmt_run(c1[-1]))
                c32: dict[str, list[Run]] = {s.name: [] for s in servers}
                for _ in range(rounds):
                    for s in servers:
                        c32[s.name].append(with_batches(s, functools.partial(load, s, 32, secs, tool, tmp)))
                        print(fmt_run(c32[s.name][-1]))
                for line in summarize_closed(c32) + batching_note(c32["ours"], peer_settings, venv):
                    print(line)
                a_runs = c32["ours"]
                rps32 = statistics.median(r.rps for r in a_runs)
                once_res["c1"] = [asdict(r) for r in c1]
                for name, rs in c32.items():
                    once_res[f"c32_{name}"] = [asdict(r) for r in rs]
                    if name != "ours":
                        key = "ratios" if name == "ceiling" else f"ratios_{name}"
                        once_res[key] = [a.rps / b.rps for a, b in zip(a_runs, rs, strict=False) if b.rps]
                errors = sum(r.errors for r in c1[:1] + a_runs)
                if job.name == "echo":
                    checks.append((f"c=32 echo >= {TARGETS['rps_c32']:.0f} req/s", f"{rps32:.0f} req/s",
                                   rps32 >= TARGETS["rps_c32"]))
                    checks.append((f"p50 at c=1 <= {TARGETS['p50_c1_ms']:g} ms", f"{c1[0].p50_ms:.2f} ms",
                                   c1[0].p50_ms <= TARGETS["p50_c1_ms"]))
                    ratios = once_res.get("ratios") or []
                    if ratios:
                        med = statistics.median(ratios)
                        checks.append((f"ours/ceiling >= {TARGETS['ratio']:g}", f"{med:.2f} (median of {len(ratios)})",
                                       med >= TARGETS["ratio"]))
                checks.append(("no errors in our once runs", str(errors), errors == 0))
            if args.profile:
                print(f"profiling loader and plugin at c=32 for {secs:g} s (py-spy --gil --nonblocking), "
                      f"Python CPU per request:")
                results["profile_once"] = prof = profile(
                    ours, secs, args.profile, lambda: load(ours, 32, secs, tool, tmp).requests, "once")
                for name, lines in prof.items():
                    print(f"  {name}:")
                    for line in lines:
                        print(f"    {line}")
            for s in reversed(servers):  # free the CPU for the stream run
                for p in s.procs:
                    procs.stop(p)
        if args.mode in ("stream", "all"):
            st = start_loader(procs, tmp, "stream", args.stream_wrapper.resolve(), overrides)
            print(f"stream mode: {st.url} (pids {st.pids}, wrapper {args.stream_wrapper}), {args.sessions} sessions "
                  f"x up to {args.frames} frames, ping-pong per session, Python client (aiges.client.StreamSession)"
                  + ("; ours only (the peer has no WebSocket sessions to compare)" if args.peer else ""))
            new_loop().run_until_complete(_stream_load(st.url.replace("http", "ws", 1), 4, 5, 0.5))  # warm-up
            sr = run_stream(st, args.sessions, args.frames, secs)
            print(f"  {sr.frames_per_s:9.0f} frames/s  p50 {sr.p50_ms:7.2f} ms  p99 {sr.p99_ms:7.2f} ms  "
                  f"sessions {sr.sessions_done}  frames {sr.frames}  errors {sr.errors}  CPU ms/frame: "
                  f"{fmt_cpu(sr.cpu_ms_per_frame, sr.other_cpu_pct, sr.steal_pct)}")
            for sample in sr.error_samples:
                print(f"    error: {sample}")
            results["stream"] = asdict(sr)
            checks.append((f"stream >= {TARGETS['frames_per_s']:.0f} frames/s ({args.sessions} sessions)",
                           f"{sr.frames_per_s:.0f} frames/s", sr.frames_per_s >= TARGETS["frames_per_s"]))
            checks.append(("no errors in the stream run", str(sr.errors), sr.errors == 0))
            if args.profile:
                print(f"profiling loader and plugin during {args.sessions} sessions for {secs:g} s "
                      f"(py-spy --gil --nonblocking), Python CPU per frame:")
                results["profile_stream"] = prof = profile(
                    st, secs, args.profile, lambda: run_stream(st, args.sessions, args.frames, secs).frames, "stream")
                for name, lines in prof.items():
                    print(f"  {name}:")
                    for line in lines:
                        print(f"    {line}")
    finally:
        signal.alarm(0)
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    print("targets (2-core dev machine):")
    for name, value, ok in checks:
        print(f"  {verdict(ok)}  {name:42s} {value}")
    for line in machine_state(sample=0):
        print(line.replace("machine:", "machine after:"))
    results["checks"] = [{"target": n, "value": v, "ok": ok} for n, v, ok in checks]
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 1 if args.check and not all(ok for _, _, ok in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
