"""Load generators: the closed loop (wrk or Python), the open loop at fixed rates, streaming sessions; what they share."""
from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from ..net import get
from ..systems import Server

if TYPE_CHECKING:
    from .closed import Run
    from .openloop import OpenRun


def percentile(sorted_values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of values already sorted; NaN for none."""
    if not sorted_values:
        return float("nan")
    i = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[i]


def new_loop() -> asyncio.AbstractEventLoop:
    """A fresh event loop for one run's client, uvloop's when it is installed."""
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:
        return asyncio.new_event_loop()


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
