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

The parts, one role each (adding a peer engine is one new module in ``peers/``):

* ``cli``: the options, the run's hard time limit, the order of the measurements;
* ``systems``: our loader and the two-process ceiling, started on free ports; ``jobs``: what is served;
* ``peers``: the peer engines (``peers/mlserver.py``), found by module name;
* ``loadgen``: the closed loop (wrk or aiohttp), the open loop (``--rate``), streaming sessions;
* ``procs``: processes started and stopped by PID, their CPU and memory from /proc (``scripts/soak``
  and ``scripts/bench-workers`` use it too); ``net``: loopback HTTP helpers;
* ``report``: per-run lines, medians of the rounds, the JSON file; ``targets``: the figures checked;
  ``profile``: py-spy on request.
"""
from __future__ import annotations

import sys
from pathlib import Path

# the checkout's aiges (its client) before any installed copy, as the loaders the bench starts get it
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
