"""API keys (401), overload (429 + Retry-After) and what stays open without a key."""
from __future__ import annotations

import base64
import threading
import time
from pathlib import Path

from tests.utils import WRAPPERS, once_body, start_loader


def body(sleep: float = 0) -> dict:
    return once_body("faulty", {"text": {"text": base64.b64encode(b"k").decode()}}, {"sleep": sleep})


def test_api_key_and_overload(tmp_path: Path) -> None:
    loader = start_loader(tmp_path, WRAPPERS / "faulty", aiges="maxInflight = 2\nworkerThreads = 2",
                          auth='apiKeys = ["s3cret", "other"]')
    try:
        status, _, resp = loader.post("/v1/svcName", body())
        assert status == 401 and resp["header"]["code"] == 12401 and "x-api-key" in resp["header"]["message"]
        status, _, resp = loader.post("/v1/svcName", body(), headers={"x-api-key": "nope",
                                                                       "Content-Type": "application/json"})
        assert status == 401 and "wrong API key" in resp["header"]["message"]
        ok = {"x-api-key": "s3cret", "Content-Type": "application/json"}
        assert loader.post("/v1/svcName", body(), headers=ok)[0] == 200
        assert loader.post("/v1/svcName", body(), headers={"Authorization": "Bearer other",
                                                           "Content-Type": "application/json"})[0] == 200
        # health, readiness and metrics stay open for probes and scrapers
        assert loader.get("/health")[0] == 200 and loader.get("/ready")[0] == 200 and loader.get("/metrics")[0] == 200

        results: list = []
        threads = [threading.Thread(target=lambda: results.append(loader.post("/v1/svcName", body(1.0), headers=ok)))
                   for _ in range(2)]
        for t in threads:
            t.start()
        time.sleep(0.3)
        t0 = time.monotonic()
        status, hdrs, resp = loader.post("/v1/svcName", body(), headers=ok)
        assert status == 429 and resp["header"]["code"] == 10110 and hdrs.get("Retry-After") == "1"
        assert time.monotonic() - t0 < 0.5
        for t in threads:
            t.join(10)
        assert [r[0] for r in results] == [200, 200]
        assert b'aiges_errors_total{code="10110"} 1.0' in loader.get("/metrics")[2]
    finally:
        loader.stop()
