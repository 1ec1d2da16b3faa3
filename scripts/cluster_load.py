"""Clients for scripts/cluster-test, run inside its client network namespace.

  load   open-loop load (a fixed rate, whatever the answers do) through one or more balancers until
         a stop file appears; every answer is checked (200, code 0, the demo's exact result) and
         the counts are written as JSON
  ws     one streaming session through a balancer, slow enough to outlive a drain; says which
         node served it and how it ended: finished (the final result, whole), error-frame
         (the server's shutdown error frame) or cut (anything else: a failure)
  metric the value of one /metrics sample on each node
  wait   until a URL answers 200 (or a timeout)
  haproxy-up  the servers haproxy's stats page shows UP

Standard library + aiohttp (the test extra) + aiges.client; nothing to install.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import csv
import io
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections import Counter

import aiohttp

SERVICE = "demo"


def body(text: str) -> bytes:
    return json.dumps({"header": {"appid": "cluster-test", "status": 3},
                       "parameter": {SERVICE: {"mode": "upper"}},
                       "payload": {"text": {"encoding": "utf8", "status": 3,
                                            "text": base64.b64encode(text.encode()).decode()}}}).encode()


async def one(session: aiohttp.ClientSession, url: str, key: str, i: int, counts: Counter[str],
              latencies: list[float]) -> None:
    text = f"request {i}"
    started = time.monotonic()
    try:
        async with session.post(url + "/v1/svcName", data=body(text),
                                headers={"Content-Type": "application/json", "x-api-key": key}) as r:
            raw = await r.read()
        doc = json.loads(raw) if raw else {}
        got = ((doc.get("payload") or {}).get("result") or {}).get("text")
        if r.status != 200:
            label = f"{r.status}/{(doc.get('header') or {}).get('code')}"
        elif got != text.upper():
            label = f"wrong answer {got!r}"
        else:
            label = "ok"
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as e:
        label = type(e).__name__
    latencies.append(time.monotonic() - started)
    counts[label] += 1


async def load(args: argparse.Namespace) -> int:
    """Send request i at t0 + i / rate (open loop), round-robin over the balancers."""
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    sessions = [aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=200))
                for _ in args.url]
    per_url: list[Counter[str]] = [Counter() for _ in args.url]
    latencies: list[float] = []
    tasks: set[asyncio.Task[None]] = set()
    started = time.monotonic()
    i = skipped = 0
    try:
        while time.monotonic() - started < args.max_seconds and not os.path.exists(args.stop_file):
            due = started + i / args.rate
            now = time.monotonic()
            if due > now:
                await asyncio.sleep(due - now)
            if len(tasks) >= args.max_outstanding:  # the system stopped answering: count, do not pile up
                skipped += 1
            else:
                k = i % len(args.url)
                t = asyncio.ensure_future(one(sessions[k], args.url[k], args.key, i, per_url[k], latencies))
                tasks.add(t)
                t.add_done_callback(tasks.discard)
            i += 1
        elapsed = time.monotonic() - started
        if tasks:
            await asyncio.wait(tasks, timeout=args.timeout + 5)
    finally:
        for s in sessions:
            await s.close()
    total: Counter[str] = sum(per_url, Counter())
    latencies.sort()
    report = {
        "sent": i - skipped, "skipped": skipped, "seconds": round(elapsed, 1), "rate": round(i / elapsed, 1),
        "ok": total["ok"], "failed": sum(v for k, v in total.items() if k != "ok") + skipped,
        "answers": dict(total), "by_balancer": {u: dict(c) for u, c in zip(args.url, per_url, strict=True)},
        "p50_ms": round(latencies[len(latencies) // 2] * 1000, 1) if latencies else None,
        "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 1) if latencies else None,
    }
    with open(args.out, "w") as f:
        json.dump(report, f)
    return 0


def metric(node_url: str, sample: str) -> float:
    """Sum of the /metrics lines whose name{labels} starts with ``sample``."""
    with urllib.request.urlopen(node_url + "/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(sample))


def sessions_active(node_url: str) -> float:
    try:
        return metric(node_url, "aiges_sessions_active")
    except (urllib.error.URLError, OSError):  # a node without a replica (drained, not joined)
        return 0.0


async def ws(args: argparse.Namespace) -> int:
    """A session of ``frames`` frames, one per ``interval`` s; the node it landed on is written
    to ``args.node_file`` as soon as it is open, so the caller can drain exactly that node."""
    from aiges.client import ClientError, StreamSession

    outcome, detail, node = "cut", "", ""
    parts = [f"part {n} " for n in range(args.frames)]
    try:
        async with StreamSession(args.url + "/v1/svcName", params={"mode": "upper"}, service=SERVICE,
                                 api_key=args.key, timeout=60) as s:
            await s.send("text", parts[0], status=0)
            for _ in range(50):  # find the node with the open session
                nodes = [n for n in args.node if sessions_active(n) > 0]
                if len(nodes) == 1:
                    node = nodes[0]
                    break
                await asyncio.sleep(0.1)
            with open(args.node_file, "w") as f:
                f.write(node)
            for n, part in enumerate(parts[1:], 1):
                await asyncio.sleep(args.interval)
                await s.send("text", part, status=2 if n == len(parts) - 1 else 1)
            final = None
            async for r in s.results():
                final = r
            whole = "".join(parts).upper()
            if final is not None and final.text == whole:
                outcome = "finished"
            else:
                detail = f"final result {final.text if final else None!r}, expected {whole!r}"
    except ClientError as e:
        outcome = "error-frame" if e.code == 12504 else "cut"
        detail = f"{e.code}: {e.message}"
    print(json.dumps({"outcome": outcome, "node": node, "detail": detail}))
    return 0 if outcome in ("finished", "error-frame") else 1


def wait(args: argparse.Namespace) -> int:
    end = time.monotonic() + args.timeout
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(args.url, timeout=2) as r:
                if r.status == 200:
                    return 0
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    return 1


def haproxy_up(args: argparse.Namespace) -> int:
    try:
        with urllib.request.urlopen(args.url + "/stats;csv", timeout=5) as r:
            rows = list(csv.DictReader(io.StringIO(r.read().decode().lstrip("# "))))
    except (urllib.error.URLError, OSError) as e:
        print(f"haproxy stats: {e}", file=sys.stderr)
        return 1
    up = sorted(row["svname"] for row in rows if row["pxname"] == args.backend and row["status"].startswith("UP")
                and row["svname"] not in ("FRONTEND", "BACKEND"))
    print(" ".join(up))
    return 0


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    lp = sub.add_parser("load")
    lp.add_argument("--url", action="append", required=True)
    lp.add_argument("--key", required=True)
    lp.add_argument("--rate", type=float, default=200)
    lp.add_argument("--stop-file", required=True)
    lp.add_argument("--max-seconds", type=float, default=180)
    lp.add_argument("--max-outstanding", type=int, default=2000)
    lp.add_argument("--timeout", type=float, default=15)
    lp.add_argument("--out", required=True)
    wp = sub.add_parser("ws")
    wp.add_argument("--url", required=True)
    wp.add_argument("--key", required=True)
    wp.add_argument("--node", action="append", required=True, help="base URL of each node's aiges")
    wp.add_argument("--node-file", required=True)
    wp.add_argument("--frames", type=int, default=20)
    wp.add_argument("--interval", type=float, default=0.5)
    mp = sub.add_parser("metric")
    mp.add_argument("--node", action="append", required=True)
    mp.add_argument("sample")
    tp = sub.add_parser("wait")
    tp.add_argument("url")
    tp.add_argument("--timeout", type=float, default=60)
    hp = sub.add_parser("haproxy-up")
    hp.add_argument("url")
    hp.add_argument("--backend", default="aiges")
    args = p.parse_args(argv)
    if args.cmd == "load":
        return asyncio.run(load(args))
    if args.cmd == "ws":
        return asyncio.run(ws(args))
    if args.cmd == "metric":
        for n in args.node:
            try:
                print(n, int(metric(n, args.sample)))
            except (urllib.error.URLError, OSError):
                print(n, "unreachable")
        return 0
    if args.cmd == "wait":
        return wait(args)
    return haproxy_up(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
