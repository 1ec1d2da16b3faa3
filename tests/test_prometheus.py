"""Monitoring proven with a real Prometheus: Debian's ``prometheus`` runs ``deploy/prometheus.yml``
(scrape interval shortened to 1 s, the target pointed at a real loader on the echo wrapper,
its alert rules loaded), and its HTTP query API must return the series that the dashboard and the
alerts are built on: ``rate()`` by route and status, ``histogram_quantile()`` over the latency
buckets, errors by code, workers.  Every PromQL expression of
``deploy/grafana/aiges-dashboard.json`` is run against it too.  ``promtool`` checks the shipped
config and lints our real ``/metrics`` output.

Skipped (with the reason) only when the ``prometheus`` or ``promtool`` binary is missing
(``scripts/install-test-deps`` installs Debian's package)."""
from __future__ import annotations

import json
import math
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.utils import ROOT, WRAPPERS, Loader, http, once_body, start_loader, wait_until

DEPLOY = ROOT / "deploy"
PROMETHEUS = shutil.which("prometheus") or ("/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None)
PROMTOOL = shutil.which("promtool") or ("/usr/bin/promtool" if Path("/usr/bin/promtool").exists() else None)
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not found on PATH or in /usr/bin "
                                    "(scripts/install-test-deps installs Debian's prometheus package)")
needs_prometheus = pytest.mark.skipif(PROMETHEUS is None, reason="prometheus not found on PATH or in /usr/bin "
                                      "(scripts/install-test-deps installs Debian's prometheus package)")
WINDOW = "20s"  # rate windows in the queries: >= 2 samples at the 1 s scrape interval, slack for a busy machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Prometheus:
    def __init__(self, proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
        self.proc, self.url, self.log = proc, url, log

    def query(self, expr: str) -> list[dict[str, Any]]:
        url = self.url + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        status, _, body = http("GET", url, timeout=10)
        assert status == 200 and body["status"] == "success", (expr, status, body)
        assert body["data"]["resultType"] == "vector", body
        return list(body["data"]["result"])

    def values(self, expr: str) -> dict[tuple[tuple[str, str], ...], float]:
        """Instant vector → {sorted labels without the name, job and instance: value}."""
        out = {}
        for r in self.query(expr):
            labels = tuple(sorted((k, v) for k, v in r["metric"].items() if k not in ("__name__", "job", "instance")))
            out[labels] = float(r["value"][1])
        return out


@pytest.fixture(scope="module")
def loader(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loader]:
    lo = start_loader(tmp_path_factory.mktemp("prom-loader"), WRAPPERS / "echo")
    yield lo
    lo.stop()


@pytest.fixture(scope="module")
def prometheus(loader: Loader, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    if PROMETHEUS is None:
        pytest.skip("prometheus not found on PATH or in /usr/bin "
                    "(scripts/install-test-deps installs Debian's prometheus package)")
    tmp = tmp_path_factory.mktemp("prometheus")
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["rule_files"] = [str(DEPLOY / f) for f in config.get("rule_files", [])]
    [job] = [j for j in config["scrape_configs"] if j["job_name"] == "aiges"]
    job["static_configs"] = [{"targets": [f"127.0.0.1:{loader.port}"]}]
    cfg = tmp / "prometheus.yml"
    cfg.write_text(yaml.safe_dump(config))
    log = tmp / "prometheus.log"
    started = None
    for _attempt in range(3):  # the free port may be taken between probing and binding
        started = _start_prometheus(PROMETHEUS, cfg, tmp / "data", log)
        if started is not None:
            break
    if started is None:
        pytest.fail(f"prometheus did not become ready:\n{log.read_text(errors='replace')[-3000:]}")
    proc, url = started
    try:
        yield Prometheus(proc, url, log)
    finally:
        _stop(proc)


def _start_prometheus(binary: str, cfg: Path, data: Path, log: Path) -> tuple[subprocess.Popen[bytes], str] | None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with log.open("ab") as log_f:
        proc = subprocess.Popen([binary, f"--config.file={cfg}", f"--storage.tsdb.path={data}",
                                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                                stdout=log_f, stderr=subprocess.STDOUT, cwd=cfg.parent)
    wait_until(lambda: proc.poll() is not None or _answers(url + "/-/ready"), timeout=30, interval=0.2)
    if proc.poll() is None and _answers(url + "/-/ready"):
        return proc, url
    _stop(proc)
    return None


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()  # by PID: only the Prometheus this test started
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _traffic(loader: Loader) -> None:
    """Successes, wrapper errors (echo's "!fail" → 500, code 401) and a 404, spread over ~3 scrapes."""
    ok = once_body("echo", {"text": {"encoding": "utf8", "status": 3, "text": "aGVsbG8="}})
    fail = once_body("echo", {"text": {"encoding": "utf8", "status": 3, "text": "IWZhaWw="}})  # "!fail"
    end = time.monotonic() + 3
    while time.monotonic() < end:
        for _ in range(5):
            assert loader.post("/v1/svcName", ok)[0] == 200
        status, _, body = loader.post("/v1/svcName", fail)
        assert status == 500 and body["header"]["code"] == 401, body
        assert loader.get("/no/such/route")[0] == 404
        time.sleep(0.1)


def _eventually(pred: Any, what: str, prom: Prometheus, timeout: float = 30) -> None:
    last: list[Any] = []

    def check() -> bool:
        try:
            return bool(pred())
        except AssertionError as e:
            last[:] = [e]
            return False

    if not wait_until(check, timeout=timeout, interval=0.5):
        raise AssertionError(f"{what} not seen within {timeout}s: {last[0] if last else ''}\n"
                             f"prometheus log: {prom.log.read_text(errors='replace')[-2000:]}")


@needs_prometheus
def test_prometheus_scrapes_rates_and_quantiles(loader: Loader, prometheus: Prometheus) -> None:
    prom = prometheus
    _eventually(lambda: prom.values('up{job="aiges"}') == {(): 1.0}, "the loader scraped (up == 1)", prom)
    _traffic(loader)

    def rates_seen() -> bool:
        rates = prom.values(f'sum by (route, status) (rate(aiges_requests_total{{job="aiges"}}[{WINDOW}]))')
        assert rates.get((("route", "once"), ("status", "200")), 0) > 0, rates
        assert rates.get((("route", "once"), ("status", "500")), 0) > 0, rates
        assert rates.get((("route", "other"), ("status", "404")), 0) > 0, rates
        assert rates.get((("route", "metrics"), ("status", "200")), 0) > 0, rates  # the scrapes themselves
        # five successes for each failure
        ratio = rates[(("route", "once"), ("status", "200"))] / rates[(("route", "once"), ("status", "500"))]
        assert 2 < ratio < 10, rates
        return True

    _eventually(rates_seen, "rate(aiges_requests_total) by route and status", prom)
    errors = prom.values(f'sum by (code) (rate(aiges_errors_total{{job="aiges"}}[{WINDOW}]))')
    assert errors.get((("code", "401"),), 0) > 0 and errors.get((("code", "12404"),), 0) > 0, errors

    for q in (0.5, 0.99):
        by_route = prom.values(f'histogram_quantile({q}, sum by (le, route) '
                               f'(rate(aiges_request_duration_seconds_bucket{{job="aiges", route="once"}}[{WINDOW}])))')
        assert list(by_route) == [(("route", "once"),)], by_route
        seconds = by_route[(("route", "once"),)]
        assert math.isfinite(seconds) and 0 < seconds < 5, by_route  # echo answers in milliseconds
        by_status = prom.values(f'histogram_quantile({q}, sum by (le, route, status) '
                                f'(rate(aiges_request_duration_seconds_bucket{{job="aiges", route="once"}}[{WINDOW}])))')
        assert set(by_status) == {(("route", "once"), ("status", "200")), (("route", "once"), ("status", "500"))}
        assert all(math.isfinite(v) and v > 0 for v in by_status.values()), by_status
    p50 = prom.values(f'histogram_quantile(0.5, sum by (le) (rate(aiges_request_duration_seconds_bucket'
                      f'{{job="aiges", route="once"}}[{WINDOW}])))')[()]
    p99 = prom.values(f'histogram_quantile(0.99, sum by (le) (rate(aiges_request_duration_seconds_bucket'
                      f'{{job="aiges", route="once"}}[{WINDOW}])))')[()]
    assert p50 <= p99
    # the request counter and the histogram's count are the same numbers
    total = prom.values('sum(aiges_requests_total{job="aiges", route="once"})')[()]
    count = prom.values('sum(aiges_request_duration_seconds_count{job="aiges", route="once"})')[()]
    assert total == count > 0

    assert prom.values('aiges_workers_ready{job="aiges"}') == {(): 1.0}
    assert prom.values('aiges_workers{job="aiges"}') == {(): 1.0}
    for gauge in ("aiges_inflight_requests", "aiges_queue_depth", "aiges_sessions_active"):
        # a scrape may have landed while the last request was in flight: the next one sees 0
        _eventually(lambda g=gauge: prom.values(f'{g}{{job="aiges"}}') == {(): 0.0}, f"{gauge} back to 0", prom)
    assert prom.values('aiges_worker_restarts_total{job="aiges"}') == {(): 0.0}
    assert prom.values('aiges_batch_size_count{job="aiges"}').get((), -1) >= 0  # exposed, fed by batching
    assert prom.values('rate(process_cpu_seconds_total{job="aiges"}[20s])')[()] >= 0


def _dashboard_exprs() -> list[tuple[str, str]]:
    dash = json.loads((DEPLOY / "grafana" / "aiges-dashboard.json").read_text())
    return [(p["title"], t["expr"]) for p in dash["panels"] for t in p.get("targets", [])]


def test_dashboard_has_the_panels() -> None:
    dash = json.loads((DEPLOY / "grafana" / "aiges-dashboard.json").read_text())
    titles = {p["title"] for p in dash["panels"]}
    assert {"Request rate", "Error rate by HTTP status", "Errors by aiges code", "Latency p50 / p99",
            "In-flight and queue depth", "Workers"} <= titles
    exprs = "\n".join(e for _, e in _dashboard_exprs())
    assert "histogram_quantile(0.5," in exprs and "histogram_quantile(0.99," in exprs
    assert {v["name"] for v in dash["templating"]["list"]} == {"datasource", "job", "instance", "route"}
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])
    for p in dash["panels"]:
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert {"x", "y", "w", "h"} <= set(p["gridPos"]), p["title"]


@needs_prometheus
def test_dashboard_queries_run_in_prometheus(loader: Loader, prometheus: Prometheus) -> None:
    """Each panel's PromQL, with Grafana's variables as "All" would fill them, is valid and (for the
    panels the echo traffic feeds) returns series."""
    prom = prometheus
    _eventually(lambda: prom.values('up{job="aiges"}') == {(): 1.0}, "the loader scraped (up == 1)", prom)
    _traffic(loader)
    fed = {"Request rate", "Error rate by HTTP status", "Errors by aiges code", "5xx ratio", "Latency p50 / p99",
           "In-flight and queue depth", "Workers", "Streaming sessions", "Loader process"}

    def substitute(expr: str) -> str:
        return (expr.replace("$__rate_interval", WINDOW).replace('"$job"', '"aiges"')
                .replace('"$instance"', '".*"').replace('"$route"', '"once|stream|infer|grpc_once|other"'))

    def all_answer() -> bool:
        for title, expr in _dashboard_exprs():
            assert "$" not in substitute(expr), expr
            result = prom.query(substitute(expr))  # asserts the query is valid
            if title in fed and "restarts" not in expr and "sessions_total" not in expr:
                assert result, f"{title}: {substitute(expr)} returned nothing"
                finite = [float(r["value"][1]) for r in result if math.isfinite(float(r["value"][1]))]
                assert finite, f"{title}: {substitute(expr)} returned only NaN: {result}"
        return True

    _eventually(all_answer, "every dashboard query answering", prom)


@needs_prometheus
def test_alert_rules_evaluate(loader: Loader, prometheus: Prometheus) -> None:
    def healthy() -> bool:
        status, _, body = http("GET", prometheus.url + "/api/v1/rules", timeout=10)
        assert status == 200 and body["status"] == "success", body
        rules = [r for g in body["data"]["groups"] for r in g["rules"]]
        assert len(rules) >= 6, rules
        bad = [(r["name"], r["health"], r.get("lastError")) for r in rules if r["health"] != "ok"]
        assert not bad, bad
        return True

    _eventually(healthy, "every alert rule evaluated with health ok", prometheus)
    # the loader is up and all its workers are ready: those two alerts stay silent
    status, _, body = http("GET", prometheus.url + "/api/v1/alerts", timeout=10)
    names = {a["labels"]["alertname"] for a in body["data"]["alerts"]}
    assert not names & {"AigesDown", "AigesWorkersNotReady"}, body


@needs_promtool
def test_promtool_checks_the_shipped_config() -> None:
    p = subprocess.run([str(PROMTOOL), "check", "config", str(DEPLOY / "prometheus.yml")], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "SUCCESS" in p.stdout and "rules found" in p.stdout, p.stdout
    p = subprocess.run([str(PROMTOOL), "check", "rules", str(DEPLOY / "aiges-alerts.yml")], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr


@needs_promtool
def test_promtool_lints_our_metrics(loader: Loader) -> None:
    _traffic_once = once_body("echo", {"text": {"encoding": "utf8", "status": 3, "text": "IWZhaWw="}})
    loader.post("/v1/svcName", _traffic_once)  # an error series too
    status, headers, body = loader.get("/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = body if isinstance(body, bytes) else str(body).encode()
    for name in (b"aiges_requests_total{", b"aiges_request_duration_seconds_bucket{", b"aiges_errors_total{",
                 b"aiges_inflight_requests ", b"aiges_queue_depth ", b"aiges_batch_size_bucket{",
                 b"aiges_workers ", b"aiges_workers_ready ", b"aiges_worker_restarts_total ",
                 b"aiges_sessions_active "):
        assert name in text, name
    p = subprocess.run([str(PROMTOOL), "check", "metrics"], input=text, capture_output=True, timeout=60)
    assert p.returncode == 0 and not p.stdout.strip() and not p.stderr.strip(), p.stdout + p.stderr
