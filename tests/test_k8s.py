"""deploy/k8s: every manifest validated offline against the Kubernetes JSON schemas bundled with
``kubernetes-validate`` (strict: unknown fields fail; sockets blocked while validating), the
manifests agree with each other and with the ConfigMap's aiges.toml as ``aiges.config`` parses
it, and a real loader started from that aiges.toml answers the probes' paths with 200 and
drains inside the pod's termination budget."""
from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import toml
import yaml

from aiges import config as aiges_config
from tests.utils import ROOT, SERVING, WRAPPERS, http, once_body

kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate (test extra)")

K8S = ROOT / "deploy" / "k8s"
VERSIONS = ("1.29.0", kubernetes_validate.latest_version())  # an older release still in use, and the newest bundled
SHUTDOWN_MARGIN = 5  # seconds the loader needs after the grace: aiohttp cleanup, workers' wrapperFini


def manifests() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def by_kind() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for d in manifests():
        assert d["kind"] not in out, f"two {d['kind']} manifests: the checks below assume one of each"
        out[d["kind"]] = d
    return out


def container(deploy: dict[str, Any]) -> dict[str, Any]:
    [c] = deploy["spec"]["template"]["spec"]["containers"]
    return c


def container_env(c: dict[str, Any]) -> dict[str, str]:
    """The container's env as the loader sees it; values from Secrets get a stand-in."""
    env = {}
    for e in c.get("env", []):
        env[e["name"]] = e["value"] if "value" in e else f"from-{e['valueFrom']['secretKeyRef']['name']}"
    return env


def cli_args(c: dict[str, Any]) -> dict[str, str]:
    cmd = c["command"] + c.get("args", [])
    assert cmd[:3] == ["python", "-m", "aiges"] or cmd[0] == "aiges", cmd
    args = {cmd[i]: cmd[i + 1] for i in range(len(cmd) - 1) if cmd[i].startswith("-")}
    assert args.get("-m") == "0", cmd
    return args


def configmap_toml(kinds: dict[str, dict[str, Any]]) -> str:
    c = container(kinds["Deployment"])
    cfg_path = cli_args(c)["-c"]
    [mount] = [m for m in c["volumeMounts"] if cfg_path.startswith(m["mountPath"].rstrip("/") + "/")]
    [volume] = [v for v in kinds["Deployment"]["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]]
    assert volume["configMap"]["name"] == kinds["ConfigMap"]["metadata"]["name"]
    key = mount.get("subPath") or cfg_path[len(mount["mountPath"].rstrip("/")) + 1:]
    assert key in kinds["ConfigMap"]["data"], (key, list(kinds["ConfigMap"]["data"]))
    return str(kinds["ConfigMap"]["data"][key])


def settings(kinds: dict[str, dict[str, Any]], keys_file: Path,
             wrapper_dir: Path = WRAPPERS / "echo") -> aiges_config.Settings:
    """aiges.toml from the ConfigMap, parsed as the pod's loader would: its -s, its env (plus a
    wrapper directory that exists here, the image's working directory standing in, and a keys
    file standing in for the mounted Secret)."""
    c = container(kinds["Deployment"])
    env = dict(container_env(c), AIGES_WRAPPER_DIR=str(wrapper_dir))
    if "AIGES_API_KEYS_FILE" in env:
        keys_file.write_text("k8s-test-key\n")
        env["AIGES_API_KEYS_FILE"] = str(keys_file)
    return aiges_config.parse(configmap_toml(kinds), "/etc/aiges/aiges.toml", cli_args(c)["-s"], env)


def named_port(c: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    [p] = [p for p in c["ports"] if p["name"] == port]
    return int(p["containerPort"])


# ---------------------------------------------------------------- schemas, offline
@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"network access while validating: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_validates_offline(version: str, no_network: None) -> None:
    docs = manifests()
    assert {(d["apiVersion"], d["kind"]) for d in docs} == {
        ("apps/v1", "Deployment"), ("v1", "Service"), ("autoscaling/v2", "HorizontalPodAutoscaler"),
        ("policy/v1", "PodDisruptionBudget"), ("v1", "ConfigMap")}
    for d in docs:
        # raises ValidationError, or SchemaNotFoundError for a kind/apiVersion it has no schema of
        kubernetes_validate.validate(d, version, strict=True)


def test_the_validator_rejects_broken_manifests(no_network: None) -> None:
    """The offline validation is real: a wrong type, an unknown field (strict) and a missing
    required field each fail against the bundled schemas."""
    deploy = by_kind()["Deployment"]
    wrong_type = copy.deepcopy(deploy)
    container(wrong_type)["readinessProbe"]["periodSeconds"] = "five"
    unknown = copy.deepcopy(deploy)
    container(unknown)["readinesProbe"] = container(unknown).pop("readinessProbe")  # a typo
    missing = copy.deepcopy(by_kind()["HorizontalPodAutoscaler"])
    del missing["spec"]["scaleTargetRef"]
    for bad in (wrong_type, unknown, missing):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(bad, VERSIONS[-1], strict=True)
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        kubernetes_validate.validate(dict(deploy, apiVersion="apps/v9"), VERSIONS[-1], strict=True)


# ---------------------------------------------------------------- the manifests agree
def test_manifests_fit_the_loader_and_each_other(tmp_path: Path) -> None:
    kinds = by_kind()
    deploy, svc, hpa, pdb = (kinds[k] for k in ("Deployment", "Service", "HorizontalPodAutoscaler",
                                                "PodDisruptionBudget"))
    pod = deploy["spec"]["template"]
    c = container(deploy)
    s = settings(kinds, tmp_path / "api-keys")
    args = cli_args(c)
    assert args["-s"] in toml.loads(configmap_toml(kinds)), "the -s service has no section in aiges.toml"

    # ports: the ConfigMap's addresses (with the pod's env applied) are the container's and the Service's
    assert s.http_host == "0.0.0.0" and s.grpc_host == "0.0.0.0"  # reachable from the kubelet and the Service
    assert named_port(c, "http") == s.http_port == 1888
    assert s.grpc_port is not None and named_port(c, "grpc") == s.grpc_port
    assert container_env(c).get("AIGES_HTTP_LISTEN", "") == ""  # the image's ENV cannot move the port away
    by_name = {p["name"]: p for p in svc["spec"]["ports"]}
    assert set(by_name) == {"http", "grpc"}
    assert named_port(c, by_name["http"]["targetPort"]) == s.http_port
    assert named_port(c, by_name["grpc"]["targetPort"]) == s.grpc_port
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(s.http_port)
    assert pod["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"

    # probes: the loader's paths on its HTTP port
    probes = {k: c[k]["httpGet"] for k in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert probes["readinessProbe"]["path"] == "/ready"
    assert probes["livenessProbe"]["path"] == "/health" and probes["startupProbe"]["path"] == "/health"
    assert all(named_port(c, p["port"]) == s.http_port for p in probes.values())
    # numeric: podman kube play (the smoke test, scripts/k8s-podman-test) does not resolve port names
    assert all(isinstance(p["port"], int) for p in probes.values())
    # the HTTP port opens only after every worker's wrapperInit: the startup probe waits that long
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= s.start_timeout + (s.init_timeout or 0)

    # shutdown: preStop keeps serving while the pod leaves the endpoints, then SIGTERM drains in grace
    pre_stop = c["lifecycle"]["preStop"]
    sleep = int(pre_stop["exec"]["command"][-1]) if "exec" in pre_stop else int(pre_stop["sleep"]["seconds"])
    assert sleep >= 5
    tgps = pod["spec"]["terminationGracePeriodSeconds"]
    assert tgps > s.grace
    assert tgps >= sleep + s.grace + SHUTDOWN_MARGIN, (tgps, sleep, s.grace)

    # selectors: Service, PDB and HPA all reach this Deployment's pods
    labels = pod["metadata"]["labels"]
    assert deploy["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert svc["spec"]["selector"].items() <= labels.items()
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == ("apps/v1", "Deployment",
                                                                       deploy["metadata"]["name"])
    assert "replicas" not in deploy["spec"], "the HPA owns the replica count"
    assert hpa["spec"]["minReplicas"] >= 2 and hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
    # a PDB that still lets a node drain, and the HPA's minimum keeps a pod serving meanwhile
    assert pdb["spec"].get("maxUnavailable", 0) >= 1 or pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]
    [metric] = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu" and metric["resource"]["target"]["type"] == "Utilization"
    assert "cpu" in c["resources"]["requests"], "CPU utilization needs a CPU request"
    assert deploy["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0

    # the image and the secret the API keys come from
    assert c["image"].startswith("aiges-catboost:")
    # the API keys: the Secret mounted as a file (AIGES_API_KEYS_FILE), not an env value
    [keys] = [e for e in c["env"] if e["name"] == "AIGES_API_KEYS_FILE"]
    assert not [e for e in c["env"] if e["name"] == "AIGES_API_KEYS"]
    [mount] = [m for m in c["volumeMounts"] if keys["value"].startswith(m["mountPath"].rstrip("/") + "/")]
    [volume] = [v for v in pod["spec"]["volumes"] if v["name"] == mount["name"]]
    assert mount.get("readOnly") is True
    assert volume["secret"]["secretName"] == deploy["metadata"]["name"]
    item = keys["value"][len(mount["mountPath"].rstrip("/")) + 1:]
    assert [i["path"] for i in volume["secret"]["items"]] == [item]
    assert s.file_api_keys == ("k8s-test-key",)
    assert "apiKeys" not in toml.loads(configmap_toml(kinds)).get("auth", {}), "keys belong in the Secret"


# ---------------------------------------------------------------- a real loader from the ConfigMap
def local_config(kinds: dict[str, dict[str, Any]], workdir: Path) -> tuple[Path, Path]:
    """The ConfigMap's aiges.toml with only the addresses moved to free loopback ports and the log
    directory made local; every other key as deployed.  The echo wrapper stands in for the
    image's: copied into a working directory as the image's WORKDIR (where the loader finds
    wrapper.py when aiges.toml names no wrapperDir), or where an explicit wrapperDir points."""
    doc = toml.loads(configmap_toml(kinds))
    svc = cli_args(container(kinds["Deployment"]))["-s"]
    doc[svc].update(host="127.0.0.1", port=0)
    doc["wrapper"]["http_listen"] = "127.0.0.1:0"
    doc.setdefault("log", {})["dir"] = str(workdir / "logs")
    app = workdir / "app"
    shutil.copytree(WRAPPERS / "echo", app, ignore=shutil.ignore_patterns("__pycache__"))
    if "wrapperDir" in doc["aiges"]:
        doc["aiges"]["wrapperDir"] = str(app)
    path = workdir / "aiges.toml"
    path.write_text(toml.dumps(doc))
    return path, app


@pytest.fixture
def pod_loader(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str, str, dict[str, Any]]]:
    kinds = by_kind()
    c = container(kinds["Deployment"])
    cfg, app = local_config(kinds, tmp_path)
    env = dict(os.environ, **container_env(c))
    (tmp_path / "api-keys").write_text("# what the Secret would hold\nk8s-test-key\n")
    env["AIGES_API_KEYS_FILE"] = str(tmp_path / "api-keys")  # where the Secret volume would be
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    out, err = tmp_path / "loader.out", tmp_path / "loader.err"
    with out.open("wb") as out_f, err.open("wb") as err_f:
        proc = subprocess.Popen([sys.executable, "-m", "aiges", "-m", "0", "-c", str(cfg), "-s", cli_args(c)["-s"]],
                                cwd=app, stdout=out_f, stderr=err_f, env=env)
    try:
        deadline = time.monotonic() + 60
        m = None
        while time.monotonic() < deadline and proc.poll() is None:
            m = SERVING.search(out.read_text(errors="replace"))
            if m:
                break
            time.sleep(0.05)
        if not m:
            pytest.fail(f"the loader did not start from the ConfigMap's aiges.toml:\n{err.read_text(errors='replace')}")
        yield proc, m.group(1), m.group(3) or "", kinds
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_probe_paths_answer_on_a_loader_started_from_the_configmap(
        pod_loader: tuple[subprocess.Popen[bytes], str, str, dict[str, Any]], tmp_path: Path) -> None:
    proc, url, grpc, kinds = pod_loader
    c = container(kinds["Deployment"])
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        path = c[probe]["httpGet"]["path"]
        budget = c[probe]["periodSeconds"] * c[probe]["failureThreshold"]
        deadline = time.monotonic() + min(budget, 60)
        status = 0
        while time.monotonic() < deadline:
            status = http("GET", url + path, timeout=c[probe]["timeoutSeconds"])[0]
            if status == 200:
                break
            time.sleep(0.2)
        assert status == 200, f"{probe} GET {path}: {status}"
    # the ConfigMap's workers are all ready; the public gRPC port of the Service listens
    status, _, body = http("GET", url + "/ready")
    assert body["workers"] == settings(kinds, tmp_path / "keys").workers == body["ready"]
    host, port = grpc.rsplit(":", 1)
    socket.create_connection((host, int(port)), timeout=5).close()
    # the API keys of the Secret reach the loader: inference needs one, the probes do not
    data = json.dumps(once_body("echo", {"text": {"encoding": "utf8", "status": 3, "text": "aGk="}})).encode()
    assert http("POST", url + "/v1/svcName", data)[0] == 401
    assert http("POST", url + "/v1/svcName", data, {"x-api-key": "k8s-test-key"})[0] == 200
    metrics = http("GET", url + "/metrics")[2]
    assert b"aiges_workers_ready 2.0" in metrics and b"aiges_workers 2.0" in metrics

    # SIGTERM (after preStop) drains and exits 0 well inside the rest of terminationGracePeriodSeconds
    pre_stop = c["lifecycle"]["preStop"]
    sleep = int(pre_stop["exec"]["command"][-1]) if "exec" in pre_stop else int(pre_stop["sleep"]["seconds"])
    budget = kinds["Deployment"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] - sleep
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(budget) == 0
    assert time.monotonic() - started < budget
