"""The lane and dynamic batching, with real loaders and plugin workers under concurrent load.

``tests/wrappers/batch`` answers each request with the batch it was in, so what the batcher did
is observable from the wrapper's side: sizes, membership, and which items failed.
"""
from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.utils import WRAPPERS, Loader, http, once_body, start_loader, wait_until


def body(svc: str, text: str, **params: Any) -> dict[str, Any]:
    return once_body(svc, {"text": {"text": base64.b64encode(text.encode()).decode(), "status": 3}}, params)


async def _post_all(url: str, bodies: list[dict[str, Any]], timeout: float = 30) -> list[tuple[int, Any, float]]:
    """POST every body at once; (status, json, seconds) per body, in order."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout),
                                     connector=aiohttp.TCPConnector(limit=0)) as s:
        async def one(b: dict[str, Any]) -> tuple[int, Any, float]:
            t0 = time.monotonic()
            async with s.post(url, json=b) as r:
                return r.status, await r.json(content_type=None), time.monotonic() - t0
        return list(await asyncio.gather(*(one(b) for b in bodies)))


def post_all(loader: Loader, bodies: list[dict[str, Any]], timeout: float = 30) -> list[tuple[int, Any, float]]:
    return asyncio.run(_post_all(loader.url + "/v1/svcName", bodies, timeout))


def result(resp: Any) -> Any:
    text = resp["payload"]["result"]["text"]
    try:
        return json.loads(text)
    except ValueError:
        return text


def test_batched_answers_never_cross_and_batches_form(tmp_path: Path) -> None:
    """96 concurrent requests with distinct texts: each answer carries its own text; requests that
    arrived together were given to the wrapper together (some batch > 1), none above
    max_batch_size; and /metrics counts the batches."""
    loader = start_loader(tmp_path, WRAPPERS / "batch", aiges="workerThreads = 1")
    try:
        texts = [f"req-{i}-{'x' * (i % 7)}" for i in range(96)]
        out = post_all(loader, [body("batch", t) for t in texts])
        assert all(status == 200 for status, _, _ in out), [o for o in out if o[0] != 200][:3]
        got = [result(resp) for _, resp, _ in out]
        assert [g["text"] for g in got] == texts
        sizes = {g["batch_no"]: g["batch"] for g in got}
        members: dict[int, int] = {}
        for g in got:
            members[g["batch_no"]] = members.get(g["batch_no"], 0) + 1
        assert members == sizes, "a batch's size differs from the requests answered from it"
        assert max(sizes.values()) > 1 and max(sizes.values()) <= 8, sizes
        _, _, metrics = http("GET", loader.url + "/metrics")
        text = metrics.decode() if isinstance(metrics, bytes) else str(metrics)
        if "aiges_batch_size" in text:
            count = [line for line in text.splitlines() if line.startswith("aiges_batch_size_count")]
            assert count and float(count[0].split()[-1]) >= len(sizes), count
    finally:
        loader.stop()


def test_unbatched_answers_never_cross(tmp_path: Path) -> None:
    """The lane with a plain wrapperOnceExec wrapper (no batching), 2 workers, 200 concurrent
    requests of different lengths: every request gets its own answer."""
    loader = start_loader(tmp_path, WRAPPERS / "echo", aiges="workers = 2")
    try:
        texts = [f"echo-{i}-" + "y" * (i * 13 % 300) for i in range(200)]
        out = post_all(loader, [once_body("echo", {"text": {"text": base64.b64encode(t.encode()).decode()}})
                                for t in texts])
        assert [status for status, _, _ in out] == [200] * len(texts)
        assert [resp["payload"]["result"]["text"] for _, resp, _ in out] == texts
        # both workers took work (least-loaded balancing over the lane's pending counts)
        _, _, ready = http("GET", loader.url + "/ready")
        assert ready is not None
    finally:
        loader.stop()


def test_an_item_error_reaches_only_its_request(tmp_path: Path) -> None:
    """In one batch: an item answered with response_err(401), an item that is an exception, and
    good items; only the bad requests fail, each with its own code and message.  A call that raises
    fails its whole batch with 10909 naming the exception."""
    loader = start_loader(tmp_path, WRAPPERS / "batch", aiges="workerThreads = 1\nmax_queue_delay_ms = 100")
    try:
        texts = ["a", "!fail", "b", "!raise", "c", "d"]
        out = post_all(loader, [body("batch", t) for t in texts])
        by_text = dict(zip(texts, out, strict=True))
        for t in ("a", "b", "c", "d"):
            assert by_text[t][0] == 200, by_text[t]
            assert result(by_text[t][1])["text"] == t
        assert len({result(by_text[t][1])["batch_no"] for t in ("a", "b", "c", "d")}) == 1, "not one batch"
        status, resp, _ = by_text["!fail"]
        assert status == 500 and resp["header"]["code"] == 401
        assert resp["header"]["message"] == "this item was asked to fail"
        status, resp, _ = by_text["!raise"]
        assert status == 500 and resp["header"]["code"] == 10909
        assert "ValueError: this item is bad" in resp["header"]["message"]

        out = post_all(loader, [body("batch", t) for t in ("e", "!boom", "f")])
        assert [o[0] for o in out] == [500, 500, 500]
        assert all(o[1]["header"]["code"] == 10909 and "RuntimeError: the whole batch failed" in
                   o[1]["header"]["message"] for o in out)
        status, resp = post_all(loader, [body("batch", "after")])[0][:2]
        assert status == 200 and result(resp)["text"] == "after"
    finally:
        loader.stop()


def test_batch_size_and_queue_delay_are_honoured(tmp_path: Path) -> None:
    """[aiges] max_batch_size overrides the class's 8: no batch above 3, and batches of 3 form
    under load.  A lone request waits max_queue_delay_ms for company (here 300 ms) -- and with
    a delay of 0, nothing waits."""
    loader = start_loader(tmp_path, WRAPPERS / "batch",
                          aiges="workerThreads = 1\nmax_batch_size = 3\nmax_queue_delay_ms = 300")
    try:
        out = post_all(loader, [body("batch", f"t{i}", sleep="0.05") for i in range(30)])
        sizes = [result(resp)["batch"] for status, resp, _ in out if status == 200]
        assert len(sizes) == 30 and max(sizes) == 3, sizes
        _, resp, seconds = post_all(loader, [body("batch", "alone")])[0]
        assert result(resp)["batch"] == 1 and seconds >= 0.29, seconds
    finally:
        loader.stop()
    loader = start_loader(tmp_path / "nodelay", WRAPPERS / "batch", aiges="max_queue_delay_ms = 0")
    try:
        post_all(loader, [body("batch", "warm")])
        times = [post_all(loader, [body("batch", "alone")])[0][2] for _ in range(5)]
        assert min(times) < 0.1, times
    finally:
        loader.stop()


def test_worker_killed_with_a_batch_in_flight(tmp_path: Path) -> None:
    """kill -9 of the worker while it runs a batch: every request of that batch (and those queued
    behind it) is answered 503/12503 at once, not at its deadline; after the restart the next
    requests succeed."""
    loader = start_loader(tmp_path, WRAPPERS / "batch", aiges="workerThreads = 1")
    try:
        [plugin] = loader.plugin_pids()

        async def go() -> list[tuple[int, Any, float]]:
            task = asyncio.ensure_future(_post_all(loader.url + "/v1/svcName",
                                                   [body("batch", f"k{i}", sleep="5") for i in range(12)]))
            await asyncio.sleep(0.8)
            t_kill = time.monotonic()
            os.kill(plugin, signal.SIGKILL)
            out = await task
            return [(s, r, time.monotonic() - t_kill) for s, r, _ in out]

        out = asyncio.run(go())
        assert [s for s, _, _ in out] == [503] * 12, [(s, r) for s, r, _ in out][:3]
        assert all(r["header"]["code"] == 12503 for _, r, _ in out)
        assert max(t for _, _, t in out) < 1.0, "requests of the killed batch waited"
        assert wait_until(lambda: http("GET", loader.url + "/ready")[0] == 200, 15)
        out2 = post_all(loader, [body("batch", f"n{i}") for i in range(10)])
        assert [s for s, _, _ in out2] == [200] * 10
        assert [result(r)["text"] for _, r, _ in out2] == [f"n{i}" for i in range(10)]
    finally:
        loader.stop()


def test_sigterm_drains_queued_batches(tmp_path: Path) -> None:
    """SIGTERM to the loader with batches running and queued: every accepted request is answered
    200, then the loader exits 0 and no plugin is left."""
    loader = start_loader(tmp_path, WRAPPERS / "batch",
                          aiges="workerThreads = 1\nmax_batch_size = 2\ngrace = 20")
    plugins = loader.plugin_pids()

    async def go() -> list[tuple[int, Any, float]]:
        task = asyncio.ensure_future(_post_all(loader.url + "/v1/svcName",
                                               [body("batch", f"d{i}", sleep="0.3") for i in range(8)]))
        await asyncio.sleep(0.3)
        loader.proc.send_signal(signal.SIGTERM)
        return await task

    try:
        out = asyncio.run(go())
        assert [s for s, _, _ in out] == [200] * 8, [(s, r) for s, r, _ in out if s != 200][:3]
        assert [result(r)["text"] for _, r, _ in out] == [f"d{i}" for i in range(8)]
        assert loader.proc.wait(25) == 0
        assert wait_until(lambda: not any(Path(f"/proc/{p}").exists() for p in plugins), 5)
    finally:
        loader.stop()


def test_without_the_lane_once_requests_use_one_grpc_call_each(tmp_path: Path) -> None:
    """``[aiges] lane = false``: the inline gRPC path (``wrapperOnceExec`` with metadata
    ``aiges-inline: 1``) still serves plain and batch-only wrappers, concurrently, each request
    with its own answer."""
    loader = start_loader(tmp_path, WRAPPERS / "echo", aiges="lane = false")
    try:
        texts = [f"grpc-{i}" for i in range(40)]
        out = post_all(loader, [once_body("echo", {"text": {"text": base64.b64encode(t.encode()).decode()}})
                                for t in texts])
        assert [resp["payload"]["result"]["text"] for _, resp, _ in out] == texts
    finally:
        loader.stop()
    loader = start_loader(tmp_path / "batch", WRAPPERS / "batch", aiges="lane = false")
    try:
        out = post_all(loader, [body("batch", t) for t in ("x", "!fail")])
        assert out[0][0] == 200 and result(out[0][1])["batch"] == 1
        assert out[1][0] == 500 and out[1][1]["header"]["code"] == 401
    finally:
        loader.stop()
