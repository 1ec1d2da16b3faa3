"""Prometheus metrics of the loader (own registry, so several apps in one process never clash)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("aiges_requests", "Requests answered, by route kind and HTTP status",
                                ["route", "status"], registry=r)
        self.errors = Counter("aiges_errors", "Error answers by aiges error code", ["code"], registry=r)
        self.latency = Histogram("aiges_request_duration_seconds", "Time from request to answer",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self.inflight = Gauge("aiges_inflight_requests", "Requests being handled now", registry=r)
        self.queue_depth = Gauge("aiges_queue_depth",
                                 "Requests in flight beyond the workers' threads (waiting for a thread)", registry=r)
        self.sessions = Gauge("aiges_sessions_active", "Open streaming sessions", registry=r)
        self.sessions_total = Counter("aiges_sessions", "Streaming sessions ended, by outcome", ["outcome"],
                                      registry=r)
        self.frames = Counter("aiges_stream_frames", "Streaming frames received", registry=r)
        self.worker_restarts = Counter("aiges_worker_restarts", "Plugin worker restarts", registry=r)
        self.workers_ready = Gauge("aiges_workers_ready", "Plugin workers ready to serve", registry=r)
        self._children: dict[tuple[str, int], Any] = {}
        self._latency_children: dict[str, Any] = {}

    def bind_pool(self, inflight: Callable[[], float], capacity: Callable[[], float],
                  ready: Callable[[], float]) -> None:
        self.inflight.set_function(inflight)
        self.queue_depth.set_function(lambda: max(0.0, inflight() - capacity()))
        self.workers_ready.set_function(ready)

    def observe(self, route: str, status: int, seconds: float, code: int = 0) -> None:
        key = (route, status)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.requests.labels(route, str(status))
        child.inc()
        lat = self._latency_children.get(route)
        if lat is None:
            lat = self._latency_children[route] = self.latency.labels(route)
        lat.observe(seconds)
        if code:
            self.errors.labels(str(code)).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
