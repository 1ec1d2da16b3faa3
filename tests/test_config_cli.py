"""Config parsing (pure) and the CLI (real processes)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from aiges import config
from tests.utils import ROOT, WRAPPERS

UPSTREAM = Path(__file__).parent / "fixtures" / "upstream_aiges.toml"


def run_cli(*args: str, cwd: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "aiges", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_upstream_default_file_loads_unchanged() -> None:
    s = config.load(str(UPSTREAM), "svcName", env={})
    assert (s.http_host, s.http_port) == ("0.0.0.0", 1888)
    assert "http_listen" not in s.wrapper_config
    assert s.wrapper_config["common.lic"] == "10" and s.wrapper_config["log.level"] == "info"
    assert s.plugin_cmd is None  # upstream's default command means "this Python"
    assert (s.ws_read_timeout, s.ws_session_timeout) == (15.0, 180.0)
    assert s.workers == 1 and s.deadline == 60.0


def test_wrong_values_name_section_key_and_type() -> None:
    with pytest.raises(config.ConfigError, match=r"\[aiges\] workers: expected a positive integer or \"auto\", got 'two'"):
        config.parse('[aiges]\nworkers = "two"\n')
    with pytest.raises(config.ConfigError, match=r"\[ws\] readTimeout: expected a positive number"):
        config.parse("[ws]\nreadTimeout = -1\n")
    with pytest.raises(config.ConfigError, match=r"\[wrapper\] http_listen: port must be a number"):
        config.parse('[wrapper]\nhttp_listen = "0.0.0.0:http"\n')
    with pytest.raises(config.ConfigError, match=r"\[auth\] apiKeys: expected a list of strings"):
        config.parse("[auth]\napiKeys = 5\n")
    with pytest.raises(config.ConfigError, match="not valid TOML"):
        config.parse("[aiges\n")
    with pytest.raises(config.ConfigError, match=r"\[aiges\] wrapperDir: directory .* does not exist"):
        config.parse('[aiges]\nwrapperDir = "/no/such/dir"\n')


def test_values_stringified_for_wrapper_init() -> None:
    s = config.parse('[wrapper]\na = 3\nb = 0.5\nc = true\nd = "x"\ne = 1e300\n', env={})
    assert dict(s.wrapper_config) == {"a": "3", "b": "0.5", "c": "true", "d": "x", "e": "1e+300"}


def test_env_overrides() -> None:
    s = config.parse("", env={"AIGES_HTTP_LISTEN": "127.0.0.1:0", "AIGES_API_KEYS": "k1,k2", "AIGES_WORKERS": "3"})
    assert (s.http_host, s.http_port, s.api_keys, s.workers) == ("127.0.0.1", 0, ("k1", "k2"), 3)


def test_cli_usage_version_init(tmp_path: Path) -> None:
    p = run_cli(cwd=tmp_path)
    assert p.returncode == 0 and "aiges -m 0" in p.stdout and "-init" in p.stdout
    for flag in ("-v", "--version"):
        p = run_cli(flag, cwd=tmp_path)
        assert p.returncode == 0 and p.stdout.startswith("aiges ")
    p = run_cli("-init", cwd=tmp_path)
    assert p.returncode == 0 and (tmp_path / "aiges.toml").exists()
    text = (tmp_path / "aiges.toml").read_text()
    (tmp_path / "aiges.toml").write_text(text + "\n# mine\n")
    assert run_cli("-init", cwd=tmp_path).returncode == 0
    assert (tmp_path / "aiges.toml").read_text().endswith("# mine\n")  # never overwritten
    s = config.load(str(tmp_path / "aiges.toml"), env={})
    assert s.http_port == 1888


def test_cli_rejects_other_modes(tmp_path: Path) -> None:
    p = run_cli("-m", "1", cwd=tmp_path)
    assert p.returncode == 2 and "only local mode -m 0 is supported" in p.stderr
    p = run_cli("-m=2", cwd=tmp_path)
    assert p.returncode == 2
    env_c = subprocess.run([sys.executable, "-m", "aiges", "-m", "0"], cwd=tmp_path, capture_output=True, text=True,
                           env=dict(os.environ, PYTHONPATH=str(ROOT), AIGES_PLUGIN_MODE="go"), timeout=30)
    assert env_c.returncode == 2 and "AIGES_PLUGIN_MODE='go': expected 'python'" in env_c.stderr


def test_cli_config_error_is_clear(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text('[aiges]\nworkers = 0\n')
    p = run_cli("-m=0", "-c=bad.toml", cwd=tmp_path)
    assert p.returncode == 2 and "[aiges] workers: expected a positive integer or \"auto\", got 0" in p.stderr


def test_upstream_file_serves_with_pythonpath(tmp_path: Path) -> None:
    """Upstream's documented run: PYTHONPATH=<wrapper dir> AIservice -m 0 -c aiges.toml -s svcName."""
    import re
    import time
    (tmp_path / "aiges.toml").write_text(UPSTREAM.read_text().replace("0.0.0.0:1888", "127.0.0.1:0"))
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{WRAPPERS / 'image_stats'}", AIGES_PLUGIN_MODE="python")
    out = tmp_path / "out"
    with out.open("wb") as out_f:
        proc = subprocess.Popen([sys.executable, "-m", "aiges", "-m", "0", "-c", "aiges.toml", "-s", "svcName"],
                                cwd=tmp_path, env=env, stdout=out_f, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        m = None
        while time.monotonic() < deadline and not m:
            m = re.search(r"http://127\.0\.0\.1:(\d+)", out.read_text())
            time.sleep(0.05)
        assert m, "loader did not start"
        from tests.utils import http
        status, _, body = http("GET", f"http://127.0.0.1:{m.group(1)}/ready")
        assert status == 200
        # upstream's [log] section says debug; the logs dir defaults to ./logs
        assert (tmp_path / "logs" / "app.log").exists()
    finally:
        proc.terminate()
        assert proc.wait(30) == 0
