"""Constants every part of the bench shares: where things are, the loopback host, the request text, the bounds."""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# the ceiling prototype lives in shared/ beside the project's checkout (as CI lays it out)
CEILING = Path(os.environ.get("AIGES_CEILING_DIR", str(ROOT.parent / "shared" / "bench" / "ceiling")))
PEER_DATA = ROOT / "scripts" / "bench_peers"  # the peers' runtimes and the synthetic CatBoost job
# the peer's venv and the synthetic model: a cache outside the checkout, reused across runs
CACHE = Path(os.environ.get("AIGES_BENCH_CACHE")
             or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "aiges" / "bench")
HOST = "127.0.0.1"
TEXT = b"hello aiges bench: a short text payload"
DEFAULT_ONCE_WRAPPER = ROOT / "tests" / "wrappers" / "echo"
VAD_WRAPPER = ROOT / "tests" / "wrappers" / "vad_stream"  # real-time and idle sessions: numpy energy/VAD per frame
EXAMPLE_CATBOOST = ROOT / "examples" / "catboost"
SYNTH_CATBOOST = PEER_DATA / "catboost"
MAX_REQUESTS = 5_000_000  # a count bound on every Python load loop, on top of its time bound
LOADGEN = "load generator"
OPEN_DRAIN = 10.0  # seconds an open-loop run waits for its last answers (also each request's timeout)


def outside_checkout(path: Path) -> Path:
    path = path.resolve()
    if path == ROOT or ROOT in path.parents:
        raise SystemExit(f"bench: the peer's cache {path} is inside the checkout; set AIGES_BENCH_CACHE elsewhere")
    return path
