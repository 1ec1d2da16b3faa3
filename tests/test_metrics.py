"""The loader's metrics object on its own: the exposition /metrics serves (parsed back with the
Prometheus client's own text parser), bucket semantics, and the batch-size histogram that the
worker pool's dynamic batching feeds through ``Metrics.observe_batch``."""
from __future__ import annotations

import prometheus_client
from prometheus_client.parser import text_string_to_metric_families

from aiges.loader.metrics import BATCH_BUCKETS, LATENCY_BUCKETS, Metrics


def samples(m: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(m.render().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def types(m: Metrics) -> dict[str, str]:
    return {f.name: f.type for f in text_string_to_metric_families(m.render().decode())}


def test_observe_batch_feeds_the_batch_size_histogram() -> None:
    m = Metrics()
    assert BATCH_BUCKETS == (1, 2, 4, 8, 16, 32, 64, 128)
    s = samples(m)
    assert s[("aiges_batch_size_count", ())] == 0  # exposed before the first batch
    for n in (1, 1, 3, 8, 9, 128, 500):
        m.observe_batch(n)
    s = samples(m)
    bucket = {le: s[("aiges_batch_size_bucket", (("le", le),))]
              for le in ("1.0", "2.0", "4.0", "8.0", "16.0", "32.0", "64.0", "128.0", "+Inf")}
    assert bucket == {"1.0": 2, "2.0": 2, "4.0": 3, "8.0": 4, "16.0": 5, "32.0": 5, "64.0": 5, "128.0": 6,
                      "+Inf": 7}
    assert s[("aiges_batch_size_count", ())] == 7 and s[("aiges_batch_size_sum", ())] == 650
    assert types(m)["aiges_batch_size"] == "histogram"


def test_requests_and_latency_by_route_and_status() -> None:
    m = Metrics()
    m.observe("once", 200, 0.001)  # exactly on a bound: counted in that bucket (le is inclusive)
    m.observe("once", 200, 0.003)
    m.observe("once", 200, 100.0)  # beyond the last bound: +Inf only
    m.observe("once", 500, 0.02, code=401)
    m.observe("grpc_once", 429, 0.0001, code=10110)
    m.observe("once", 500, 0.02, code=401)
    s = samples(m)
    ok = (("route", "once"), ("status", "200"))
    assert s[("aiges_requests_total", ok)] == 3
    assert s[("aiges_requests_total", (("route", "once"), ("status", "500")))] == 2
    assert s[("aiges_requests_total", (("route", "grpc_once"), ("status", "429")))] == 1
    le = {b: s[("aiges_request_duration_seconds_bucket", (("le", b),) + ok)]
          for b in ("0.001", "0.0025", "0.005", "60.0", "+Inf")}
    assert le == {"0.001": 1, "0.0025": 1, "0.005": 2, "60.0": 2, "+Inf": 3}
    assert s[("aiges_request_duration_seconds_count", ok)] == 3
    assert abs(s[("aiges_request_duration_seconds_sum", ok)] - 100.004) < 1e-9
    assert len([k for k in s if k[0] == "aiges_request_duration_seconds_bucket" and k[1][1:] == ok]) \
        == len(LATENCY_BUCKETS) + 1
    assert s[("aiges_errors_total", (("code", "401"),))] == 2
    assert s[("aiges_errors_total", (("code", "10110"),))] == 1
    t = types(m)
    assert t["aiges_requests"] == "counter" and t["aiges_request_duration_seconds"] == "histogram"
    if hasattr(prometheus_client, "disable_created_metrics"):  # prometheus_client >= 0.20
        assert not [k for k in s if k[0].endswith("_created")]  # no created-timestamp series doubling the count


def test_pool_gauges_and_the_rest_of_the_names() -> None:
    m = Metrics()
    state = {"inflight": 7.0, "ready": 1.0}
    m.bind_pool(lambda: state["inflight"], lambda: 4.0, lambda: state["ready"], lambda: 2.0)
    m.worker_restarts.inc()
    m.sessions.inc()
    m.sessions_total.labels("ok").inc()
    m.frames.inc(3)
    s = samples(m)
    assert s[("aiges_inflight_requests", ())] == 7 and s[("aiges_queue_depth", ())] == 3
    assert s[("aiges_workers", ())] == 2 and s[("aiges_workers_ready", ())] == 1
    state.update(inflight=2.0, ready=2.0)
    s = samples(m)
    assert s[("aiges_queue_depth", ())] == 0 and s[("aiges_workers_ready", ())] == 2
    assert s[("aiges_worker_restarts_total", ())] == 1
    assert s[("aiges_sessions_active", ())] == 1
    assert s[("aiges_sessions_total", (("outcome", "ok"),))] == 1
    assert s[("aiges_stream_frames_total", ())] == 3
    assert s[("process_cpu_seconds_total", ())] > 0
    assert m.content_type.startswith("text/plain; version=0.0.4")
