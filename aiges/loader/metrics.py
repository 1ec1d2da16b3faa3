"""Prometheus metrics of the loader (own registry, so several apps in one process never clash).

Exposed on ``GET /metrics`` (text format 0.0.4); ``deploy/prometheus.yml`` scrapes it and
``deploy/grafana/aiges-dashboard.json`` charts it:

| metric | type | labels |
|---|---|---|
| ``aiges_requests_total`` | counter | ``route`` (once, stream, infer, grpc_once, health, ...), ``status`` (HTTP) |
| ``aiges_request_duration_seconds`` | histogram | ``route``, ``status`` |
| ``aiges_errors_total`` | counter | ``code`` (aiges error code) |
| ``aiges_inflight_requests`` / ``aiges_queue_depth`` | gauge | |
| ``aiges_batch_size`` | histogram (1 … 128) | requests per batch handed to a worker |
| ``aiges_workers`` / ``aiges_workers_ready`` | gauge | plugin workers configured / ready |
| ``aiges_worker_restarts_total`` | counter | |
| ``aiges_workers_unresponsive`` / ``aiges_worker_health_misses_total`` | gauge / counter | workers missing health checks now / checks missed |
| ``aiges_sessions_active`` / ``aiges_sessions_total`` | gauge / counter | ``outcome`` |
| ``aiges_stream_frames_total`` | counter | |
| ``aiges_connections_open`` / ``aiges_connections_closed_total`` | gauge / counter | ``reason`` (header_timeout, body_timeout, evicted, refused) |
| ``process_*`` | | the loader process (CPU, memory, open fds) |

Requests and their latency are the per-request hot path (8k req/s aimed at), so they are not
``prometheus_client`` metrics (two locked updates and a label lookup, ~1.2 µs) but plain
per-(route, status) bucket counts that the scrape turns into a counter and a histogram (one
dict lookup, one bisect, two additions: ~0.2 µs); batch sizes likewise.  That is safe because
every caller runs on the loader's event-loop thread, as does the scrape: do not call
``observe`` / ``observe_batch`` from other threads.
"""
from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, ProcessCollector, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)

# no ``*_created`` series beside every counter and histogram: twice the series, and Prometheus
# does not read them from the text format (process-wide, and this module is the loader's;
# prometheus_client >= 0.20)
if hasattr(prometheus_client, "disable_created_metrics"):
    prometheus_client.disable_created_metrics()


class _Buckets:
    """Counts per bucket (the last one is +Inf) and the sum of the observed values."""

    __slots__ = ("counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def cumulative(self, les: list[str]) -> tuple[float, list[tuple[str, float]]]:
        total, buckets = 0, []
        for le, n in zip(les, list(self.counts), strict=True):
            total += n
            buckets.append((le, float(total)))
        return float(total), buckets


def _les(bounds: tuple[float, ...]) -> list[str]:
    return [floatToGoString(b) for b in bounds] + ["+Inf"]


class _HotCollector(Collector):
    """``aiges_requests_total`` and ``aiges_request_duration_seconds`` from the same per-(route,
    status) bucket counts, and ``aiges_batch_size``."""

    _LATENCY_LE = _les(LATENCY_BUCKETS)
    _BATCH_LE = _les(BATCH_BUCKETS)

    def __init__(self) -> None:
        self.series: dict[tuple[str, int], _Buckets] = {}
        self.batches = _Buckets(BATCH_BUCKETS)

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily("aiges_requests", "Requests answered, by route kind and HTTP status",
                                       labels=["route", "status"])
        latency = HistogramMetricFamily("aiges_request_duration_seconds",
                                        "Time from request to answer, by route kind and HTTP status",
                                        labels=["route", "status"])
        for (route, status), s in sorted(list(self.series.items())):
            labels = [route, str(status)]
            total, buckets = s.cumulative(self._LATENCY_LE)
            requests.add_metric(labels, total)
            latency.add_metric(labels, buckets, s.sum)
        yield requests
        yield latency
        batch = HistogramMetricFamily("aiges_batch_size", "Requests per batch handed to a plugin worker")
        batch.add_metric([], self.batches.cumulative(self._BATCH_LE)[1], self.batches.sum)
        yield batch


class Metrics:
    # the classic text format 0.0.4, which every Prometheus reads: what these bytes are
    # (prometheus_client >= 0.22 announces them as version=1.0.0, the revision for UTF-8 names,
    # which ours do not need)
    content_type = "text/plain; version=0.0.4; charset=utf-8"

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self._hot = _HotCollector()
        r.register(self._hot)
        self.errors = Counter("aiges_errors", "Error answers by aiges error code", ["code"], registry=r)
        self.inflight = Gauge("aiges_inflight_requests", "Requests being handled now", registry=r)
        self.queue_depth = Gauge("aiges_queue_depth",
                                 "Requests in flight beyond the workers' threads (waiting for a thread)", registry=r)
        self.sessions = Gauge("aiges_sessions_active", "Open streaming sessions", registry=r)
        self.sessions_total = Counter("aiges_sessions", "Streaming sessions ended, by outcome", ["outcome"],
                                      registry=r)
        self.frames = Counter("aiges_stream_frames", "Streaming frames received", registry=r)
        self.worker_restarts = Counter("aiges_worker_restarts", "Plugin worker restarts", registry=r)
        self.workers_ready = Gauge("aiges_workers_ready", "Plugin workers ready to serve", registry=r)
        self.workers = Gauge("aiges_workers", "Plugin workers configured", registry=r)
        self.workers_unresponsive = Gauge(
            "aiges_workers_unresponsive", "Plugin workers up but missing their health checks (frozen?): they take no "
            "new requests and are killed at the 3rd miss", registry=r)
        self.worker_health_misses = Counter("aiges_worker_health_misses", "Health checks plugin workers missed",
                                            registry=r)
        self.connections = Gauge("aiges_connections_open", "Open HTTP/WebSocket client connections", registry=r)
        self.connections_closed = Counter(
            "aiges_connections_closed", "Client connections the loader closed to stay available: a request too slow "
            "to arrive, or over [aiges] maxConnections", ["reason"], registry=r)
        ProcessCollector(registry=r)  # process_cpu_seconds_total, process_resident_memory_bytes, ...
        self._errors: dict[int, Any] = {}

    def bind_pool(self, inflight: Callable[[], float], capacity: Callable[[], float],
                  ready: Callable[[], float], total: Callable[[], float] | None = None,
                  unresponsive: Callable[[], float] | None = None) -> None:
        self.inflight.set_function(inflight)
        if unresponsive is not None:
            self.workers_unresponsive.set_function(unresponsive)
        self.queue_depth.set_function(lambda: max(0.0, inflight() - capacity()))
        self.workers_ready.set_function(ready)
        if total is not None:
            self.workers.set_function(total)

    def bind_connections(self, open_: Callable[[], float]) -> None:
        self.connections.set_function(open_)

    def observe(self, route: str, status: int, seconds: float, code: int = 0) -> None:
        """One answered request: its route kind, HTTP status, duration and aiges error code (0 = none)."""
        s = self._hot.series.get((route, status))
        if s is None:
            s = self._hot.series[(route, status)] = _Buckets(LATENCY_BUCKETS)
        s.counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1  # first bucket with seconds <= le
        s.sum += seconds
        if code:
            child = self._errors.get(code)
            if child is None:
                child = self._errors[code] = self.errors.labels(str(code))
            child.inc()

    def observe_batch(self, n: int) -> None:
        """One batch of ``n`` requests handed to a worker (dynamic batching)."""
        b = self._hot.batches
        b.counts[bisect_left(BATCH_BUCKETS, n)] += 1
        b.sum += n

    def render(self) -> bytes:
        return generate_latest(self.registry)
