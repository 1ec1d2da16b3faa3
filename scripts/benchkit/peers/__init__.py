"""Peer engines measured beside ours on the same job: one module per peer in this folder, found by its name.

A peer module (``peers/NAME.py``; ``--peer NAME`` picks it) defines:

* ``NAME``: the ``--peer`` value; ``HELP``: what ``--peer`` measures, for ``--help``;
* ``prepare(job) -> Path``: whatever must exist before the clock starts (MLServer: its venv,
  installed on first use outside the checkout), given the job's name;
* ``start(procs, tmp, prepared, job, settings) -> Server``: the peer serving the job on free
  loopback ports, its processes started through ``procs`` (stopped by PID at the end), its
  ``does`` line saying what it does per request and ``answer`` what its answer is;
  ``settings`` are the ``--peer-set KEY=JSON`` values;
* ``batching_hint(settings) -> str``: what to add to our batching note when the peer was left
  without batching ("" when it batches).
"""
from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import Any, Protocol, cast

from ..jobs import Job
from ..procs import Procs
from ..systems import Server


class Peer(Protocol):
    NAME: str
    HELP: str

    def prepare(self, job: str) -> Path: ...

    def start(self, procs: Procs, tmp: Path, prepared: Path, job: Job, settings: dict[str, Any]) -> Server: ...

    def batching_hint(self, settings: dict[str, Any]) -> str: ...


def _discover() -> dict[str, Peer]:
    found: dict[str, Peer] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            module = cast(Peer, importlib.import_module(f"{__name__}.{info.name}"))
            found[module.NAME] = module
    return found


PEERS: dict[str, Peer] = _discover()
