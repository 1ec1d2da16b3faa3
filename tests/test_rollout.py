"""What a zero-loss rollout behind a load balancer needs from the engine, on real loader processes.

``[aiges] drainDelay``: after SIGTERM the loader keeps serving as usual for that many seconds
while ``/ready`` already answers 503, so a balancer's health check takes the instance out before
anything is refused (Kubernetes' preStop sleep, for Swarm, systemd and bare balancers); then the
drain of ``[aiges] grace`` as before.

``[auth] apiKeysFile`` / ``AIGES_API_KEYS_FILE``: API keys from a file (a Swarm, Docker or Compose
secret; a Kubernetes Secret volume), one per line; SIGHUP reads it again while requests go on.
"""
from __future__ import annotations

import http.client
import json
import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from aiges import config
from aiges.client import ClientError, GrpcClient
from tests.utils import WRAPPERS, Loader, once_body, start_loader, wait_until

BODY = json.dumps(once_body("echo", {"text": {"encoding": "utf8", "status": 3, "text": "aGk="}})).encode()


def post(port: int, key: str | None = None, conn: http.client.HTTPConnection | None = None) -> tuple[int, str]:
    """One inference request (on ``conn`` when given, a keep-alive connection); (status, Connection header)."""
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Content-Type": "application/json"} | ({"x-api-key": key} if key else {})
    c.request("POST", "/v1/svcName", BODY, headers)
    resp = c.getresponse()
    resp.read()
    if conn is None:
        c.close()
    return resp.status, resp.getheader("Connection") or ""


def ready(port: int) -> tuple[int, str]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("GET", "/ready")
        resp = c.getresponse()
        return resp.status, json.loads(resp.read())["status"]
    finally:
        c.close()


class Load:
    """Client threads sending inference requests on keep-alive connections (reopened when the
    server closes one) until stopped or ``limit`` seconds; every answer or error counted."""

    def __init__(self, port: int, key: str | None = None, threads: int = 4, limit: float = 30) -> None:
        self.port, self.key, self.limit = port, key, limit
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(15)

    def _run(self) -> None:
        end = time.monotonic() + self.limit
        conn: http.client.HTTPConnection | None = None
        while not self._stop.is_set() and time.monotonic() < end:
            conn = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            try:
                status, connection = post(self.port, self.key, conn)
                label = str(status)
                if connection == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as e:
                label = type(e).__name__
                conn.close()
                conn = None
            with self._lock:
                self.counts[label] += 1


# ---------------------------------------------------------------- drainDelay
def test_drain_delay_serves_as_usual_while_ready_says_503_then_drains(tmp_path: Path) -> None:
    """SIGTERM with drainDelay = 3: at once /ready is 503 DRAINING, yet new connections are
    accepted and requests on open keep-alive connections answered 200 (with Connection: close, so
    clients reconnect through the balancer); a load running across the delay loses nothing; after
    the delay new connections are refused and the loader exits 0 within delay + grace."""
    delay, grace = 3.0, 5.0
    loader = start_loader(tmp_path, WRAPPERS / "echo", aiges=f"drainDelay = {delay}\ngrace = {grace}")
    try:
        assert ready(loader.port) == (200, "READY")
        kept = http.client.HTTPConnection("127.0.0.1", loader.port, timeout=10)
        assert post(loader.port, conn=kept)[0] == 200
        with Load(loader.port, limit=delay + grace + 5) as load:
            time.sleep(0.5)
            signalled = time.monotonic()
            loader.proc.send_signal(signal.SIGTERM)
            assert wait_until(lambda: ready(loader.port)[0] == 503, timeout=1), "/ready did not turn 503 at SIGTERM"
            assert ready(loader.port) == (503, "DRAINING")
            on_kept = post(loader.port, conn=kept)
            on_new = post(loader.port)
            assert time.monotonic() - signalled < delay, "the checks above took longer than the delay"
            time.sleep(delay - (time.monotonic() - signalled) - 0.3)
            during = dict(load.counts)
        rc = loader.proc.wait(delay + grace + 5)
        exited = time.monotonic() - signalled
        assert on_kept == (200, "close"), on_kept
        assert on_new[0] == 200, on_new
        assert set(during) == {"200"} and during["200"] > 20, f"load during the delay: {dict(during)}"
        # after the delay the drain refuses new connections: the load's last requests may see that
        assert set(load.counts) <= {"200", "ConnectionRefusedError", "503"}, dict(load.counts)
        assert rc == 0 and delay <= exited < delay + grace, (rc, exited)
        assert "serving as usual for 3s ([aiges] drainDelay)" in loader.stderr()
    finally:
        loader.stop(signal.SIGKILL)


def test_a_second_sigterm_ends_the_drain_delay(tmp_path: Path) -> None:
    """drainDelay = 60 and a second SIGTERM (an impatient operator, Ctrl-C twice): the drain starts
    at once and the loader exits 0 in seconds, not a minute."""
    loader = start_loader(tmp_path, WRAPPERS / "echo", aiges="drainDelay = 60\ngrace = 5")
    try:
        loader.proc.send_signal(signal.SIGTERM)
        assert wait_until(lambda: ready(loader.port)[0] == 503, timeout=2)
        assert post(loader.port)[0] == 200  # still serving inside the delay
        second = time.monotonic()
        loader.proc.send_signal(signal.SIGTERM)
        assert loader.proc.wait(10) == 0
        assert time.monotonic() - second < 5
    finally:
        loader.stop(signal.SIGKILL)


def test_drain_delay_is_parsed_and_checked() -> None:
    assert config.parse("").drain_delay == 0.0
    assert config.parse("[aiges]\ndrainDelay = 10\n").drain_delay == 10.0
    assert config.parse("[aiges]\ndrainDelay = 0\n").drain_delay == 0.0
    with pytest.raises(config.ConfigError, match=r"\[aiges\] drainDelay: expected a number of seconds"):
        config.parse("[aiges]\ndrainDelay = -1\n")
    assert not config.parse("[aiges]\ndrainDelay = 1\n").warnings  # a known key, not reported as a typo


# ---------------------------------------------------------------- API keys from a file
def test_api_keys_file_is_parsed(tmp_path: Path) -> None:
    """One key per line; blanks, surrounding spaces and # comments skipped; a relative
    apiKeysFile is relative to aiges.toml; AIGES_API_KEYS_FILE wins over it; the keys of
    apiKeys / AIGES_API_KEYS stay valid beside the file's."""
    keys = tmp_path / "keys"
    keys.write_text("# rotated 2026-12\n\n  k1  \nk2\nk1\n")
    other = tmp_path / "other"
    other.write_text("k3\n")
    toml_path = str(tmp_path / "aiges.toml")
    s = config.parse('[auth]\napiKeysFile = "keys"\napiKeys = ["inline"]\n', toml_path)
    assert (s.api_keys, s.file_api_keys, s.api_keys_file) == (("inline",), ("k1", "k2"), str(keys))
    s = config.parse('[auth]\napiKeysFile = "keys"\n', toml_path, env={"AIGES_API_KEYS_FILE": str(other)})
    assert (s.file_api_keys, s.api_keys_file) == (("k3",), str(other))


@pytest.mark.parametrize("content, error", [
    (None, "cannot read the API keys file"),
    ("# only a comment\n\n", "holds no key"),
    (b"\xff\xfe", "not UTF-8 text"),
])
def test_a_bad_api_keys_file_is_a_clear_error_at_start(tmp_path: Path, content: str | bytes | None,
                                                       error: str) -> None:
    """A missing, empty or binary keys file stops the start with a message naming the setting
    and the file: never a service that silently runs without the keys it was given."""
    keys = tmp_path / "keys"
    if isinstance(content, str):
        keys.write_text(content)
    elif content is not None:
        keys.write_bytes(content)
    with pytest.raises(config.ConfigError, match=f"AIGES_API_KEYS_FILE: .*{error}"):
        config.parse("", env={"AIGES_API_KEYS_FILE": str(keys)})
    loader = start_loader(tmp_path / "run", WRAPPERS / "echo", auth=f'apiKeysFile = "{keys}"', expect_fail=True)
    try:
        assert loader.proc.wait(30) != 0
        assert "[auth] apiKeysFile: " in loader.stderr() and error in loader.stderr(), loader.stderr()
    finally:
        loader.stop(signal.SIGKILL)


def replace_file(path: Path, text: str) -> None:
    """As secret stores update a file: write aside, then rename over (readers see old or new, whole)."""
    tmp = path.with_suffix(".new")
    tmp.write_text(text)
    os.replace(tmp, path)


def test_sighup_reloads_the_keys_file_without_dropping_requests(tmp_path: Path) -> None:
    """Keys "old" and "keep" from AIGES_API_KEYS_FILE; a load with "keep" runs throughout; the
    file becomes "new" + "keep" and the loader gets SIGHUP: "old" is 401, "new" 200, every request
    of the load is 200, the same process serves (no restart); gRPC checks the same keys."""
    keys = tmp_path / "api-keys"
    keys.write_text("old\nkeep\n")
    loader = start_loader(tmp_path, WRAPPERS / "echo", env={"AIGES_API_KEYS_FILE": str(keys)})
    try:
        assert post(loader.port)[0] == 401
        assert post(loader.port, "old")[0] == 200 and post(loader.port, "new")[0] == 401
        plugins = loader.plugin_pids()
        with Load(loader.port, "keep", limit=30) as load:
            time.sleep(0.5)
            replace_file(keys, "# rotated\nnew\nkeep\n")
            loader.proc.send_signal(signal.SIGHUP)
            assert wait_until(lambda: post(loader.port, "old")[0] == 401, timeout=5), "old key still accepted"
            time.sleep(0.5)
        assert post(loader.port, "new")[0] == 200
        assert set(load.counts) == {"200"} and load.counts["200"] > 50, dict(load.counts)
        assert loader.proc.poll() is None and loader.plugin_pids() == plugins
        assert "SIGHUP: 2 API key(s) in force (2 from" in loader.stderr()
        grpc_keys(loader)
    finally:
        loader.stop(signal.SIGKILL)


def grpc_keys(loader: Loader) -> None:
    """The public gRPC API checks the keys in force too (after the reload: "new", not "old")."""
    assert loader.grpc, "the loader prints its gRPC address"
    with GrpcClient(loader.grpc, service="echo", api_key="new") as c:
        assert c.once({"text": "hi"})["result"] == "hi"
    with GrpcClient(loader.grpc, service="echo", api_key="old") as c, pytest.raises(ClientError) as e:
        c.once({"text": "hi"})
    assert e.value.code == 12401, e.value


def test_a_bad_keys_file_on_sighup_keeps_the_keys_in_force(tmp_path: Path) -> None:
    """The file removed, or emptied, then SIGHUP: an error is logged, the keys that worked keep
    working (neither every client locked out nor authentication turned off)."""
    keys = tmp_path / "api-keys"
    keys.write_text("k1\n")
    loader = start_loader(tmp_path, WRAPPERS / "echo", auth=f'apiKeysFile = "{keys}"')
    try:
        for change in (lambda: replace_file(keys, "\n# nothing\n"), keys.unlink):
            change()
            loader.proc.send_signal(signal.SIGHUP)
            time.sleep(0.3)
            assert post(loader.port, "k1")[0] == 200 and post(loader.port)[0] == 401
        err = loader.stderr()
        assert "holds no key (one key per line); the 1 key(s) in force are kept" in err, err
        assert "cannot read the API keys file" in err, err
        assert loader.proc.poll() is None
    finally:
        loader.stop(signal.SIGKILL)
