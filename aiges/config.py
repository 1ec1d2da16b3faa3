"""``aiges.toml`` (+ a few environment overrides) parsed once into frozen, typed settings.

Nothing else in aiges reads the TOML file or the environment.  Upstream's own default file loads
unchanged: sections that are xsf / platform plumbing (``[lbv2]``, ``[trace]``, ``[elog]`` ...) are
ignored, ``[wrapper] http_listen`` is taken as the HTTP address and *not* passed on to
``wrapperInit``.  A wrong value raises :class:`ConfigError` naming section, key and expected type.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib

    def load_toml(text: str) -> dict[str, Any]:
        return tomllib.loads(text)
else:  # pragma: no cover - Python 3.10
    import toml

    def load_toml(text: str) -> dict[str, Any]:
        return toml.loads(text)

UPSTREAM_PLUGIN_CMD = "/usr/bin/env python -m aiges.serve"
DEFAULT_HTTP_LISTEN = "0.0.0.0:1888"


class ConfigError(ValueError):
    """A configuration value is missing, malformed or of the wrong type."""


@dataclass(frozen=True)
class Settings:
    svc_name: str = "svcName"
    config_path: str = "aiges.toml"
    # HTTP / WebSocket listener ([wrapper] http_listen, as upstream)
    http_host: str = "0.0.0.0"
    http_port: int = 1888
    # the public gRPC API ([<svcName>] host/port, upstream's xsf listener); None = off
    grpc_host: str = "0.0.0.0"
    grpc_port: int | None = None
    # the wrapper
    wrapper_dir: str | None = None
    wrapper_dir_from: str = ""  # what chose wrapper_dir ("--wrapper-dir", ...); "" = none: cwd, then PYTHONPATH
    python_path: tuple[str, ...] = ()  # PYTHONPATH's entries, for the start log's "which wrapper.py" line
    wrapper_module: str = "wrapper"
    wrapper_config: Mapping[str, str] = field(default_factory=dict)
    plugin_cmd: str | None = None  # a custom [aiges] pythonPluginCmd; None = this Python
    # C engines (upstream's Cgo mode): AIGES_PLUGIN_MODE "python" | "c" | "" (choose by what is there)
    plugin_mode: str = ""
    wrapper_lib: str | None = None  # [aiges] wrapperLib: a path (relative to the toml) or a bare name
    async_mode: bool = False  # [aiges] asyncMode: wrapperExecAsync + callbacks (upstream's default false)
    real_time_rlt: bool = True  # [aiges] realTimeRlt: wrapperRead after every write, else after the last
    wrapper_thread_safe: bool = True  # [aiges] wrapperThreadSafe = false: one C call at a time
    # workers and limits
    workers: int = 1  # `auto` in the file = the machine's cores
    worker_threads: int = 4
    # dynamic batching for wrappers with wrapperOnceExecBatch; None = the Wrapper class's own value
    max_batch_size: int | None = None
    max_queue_delay_ms: float | None = None
    lane: bool = True  # once requests on the batched lane; false = one gRPC call each (for comparison)
    max_inflight: int = 512
    deadline: float = 60.0
    max_body_size: int = 64 * 1024 * 1024
    start_timeout: float = 60.0  # handshake (upstream's one-minute plugin start)
    init_timeout: float | None = 600.0  # wrapperInit + wrapperSchema (model loading); None = no limit
    restart_backoff_max: float = 10.0
    liveness_interval: float | None = 5.0  # seconds between health pings of each worker; None = off
    exit_on_init_failure: bool = True
    grace: float = 30.0
    # seconds after SIGTERM of serving as usual while /ready already says 503 (the preStop sleep
    # of orchestrators that have none: Swarm, systemd, a bare load balancer); then the drain
    drain_delay: float = 0.0
    wrapper_error_status: int = 500
    header_pass: tuple[str, ...] = ()
    # streaming
    ws_read_timeout: float = 15.0
    ws_session_timeout: float = 180.0
    # what one HTTP client may hold (aiges.loader.guard): seconds for a request's headers after its
    # first byte, seconds a request body may stall, seconds an idle keep-alive connection is kept,
    # open connections at most (0 = auto: from the descriptor limit)
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keepalive_timeout: float = 75.0
    max_connections: int = 0
    # security
    api_keys: tuple[str, ...] = ()
    # [auth] apiKeysFile / AIGES_API_KEYS_FILE (a Swarm/Docker secret): its keys as read at start,
    # added to api_keys; SIGHUP reads the file again (aiges.loader.auth.ApiKeys)
    api_keys_file: str | None = None
    file_api_keys: tuple[str, ...] = ()
    # logs
    log_dir: str = "logs"
    log_level: str = "info"
    access_log: bool = True
    # what the file holds that nothing reads (a typo, most likely): logged once at start
    warnings: tuple[str, ...] = ()

    @property
    def service_names(self) -> tuple[str, ...]:
        return (self.svc_name,)


# ---------------------------------------------------------------- typed getters
def _type_error(section: str, key: str, expected: str, value: Any) -> ConfigError:
    return ConfigError(f"[{section}] {key}: expected {expected}, got {value!r} ({type(value).__name__})")


def _get(table: Mapping[str, Any], section: str, key: str, default: Any, conv: Callable[[Any], Any],
         expected: str) -> Any:
    if key not in table:
        return default
    value = table[key]
    try:
        return conv(value)
    except (TypeError, ValueError):
        raise _type_error(section, key, expected, value) from None


def _int(v: Any) -> int:
    if isinstance(v, bool):
        raise TypeError
    if isinstance(v, str):
        return int(v.strip())
    if isinstance(v, float) and not v.is_integer():
        raise ValueError
    return int(v)


def _pos_int(v: Any) -> int:
    n = _int(v)
    if n < 1:
        raise ValueError
    return n


def _float(v: Any) -> float:
    if isinstance(v, bool):
        raise TypeError
    f = float(v.strip() if isinstance(v, str) else v)
    if f <= 0:
        raise ValueError
    return f


def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.lower() in ("true", "false", "1", "0", "yes", "no"):
        return v.lower() in ("true", "1", "yes")
    raise TypeError


def _str(v: Any) -> str:
    if not isinstance(v, str):
        raise TypeError
    return v


def _str_list(v: Any) -> tuple[str, ...]:
    if isinstance(v, str):
        return tuple(x.strip() for x in v.replace(";", ",").split(",") if x.strip())
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        return tuple(v)
    raise TypeError


def stringify(v: Any) -> str:
    """A TOML value as upstream passes it to wrapperInit: ints decimal, bools true/false, floats short."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v) if not v.is_integer() else str(int(v)) if abs(v) < 1e16 else repr(v)
    if isinstance(v, (list, dict)):
        import json
        return json.dumps(v, ensure_ascii=False)
    return str(v)


def parse_listen(value: str, where: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep:
        raise ConfigError(f"{where}: expected \"HOST:PORT\", got {value!r}")
    try:
        p = int(port) if port else 0
    except ValueError:
        raise ConfigError(f"{where}: port must be a number, got {value!r}") from None
    if not 0 <= p <= 65535:
        raise ConfigError(f"{where}: port out of range in {value!r}")
    return (host.strip("[]") or "0.0.0.0"), p


def _section(doc: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = doc.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"[{name}] must be a table (section), got {type(value).__name__}")
    return value


# Keys read here, plus upstream's own (accepted and ignored locally): anything else in [aiges] or
# [ws] is reported, as a likely typo.  Other sections are upstream platform plumbing.
AIGES_KEYS = frozenset({
    "wrapperDir", "wrapperModule", "workers", "workerThreads", "maxInflight", "deadline", "maxBodyMB",
    "startTimeout", "initTimeout", "restartBackoffMax", "livenessInterval", "exitOnInitFailure", "grace", "drainDelay",
    "wrapperErrorStatus",
    "headerPass", "pythonPluginCmd", "max_batch_size", "max_queue_delay_ms", "lane", "wrapperLib", "wrapperThreadSafe",
    "headerTimeout", "bodyTimeout", "keepaliveTimeout", "maxConnections",
    # upstream's
    "gesMock", "sessMode", "numaNode", "realTimeRlt", "usrCfg", "sub", "asyncMode", "sessDelGt", "httpRetry",
    "gray", "wrapperTrace", "wrapperDelayDetectPeriod", "storageData", "asyncRelease", "libCodec", "elastic",
})
WS_KEYS = frozenset({"readTimeout", "sessionTimeout"})
LOG_LEVELS = ("debug", "info", "warn", "warning", "error")


def _unknown_keys(section: Mapping[str, Any], name: str, known: frozenset[str]) -> list[str]:
    return [f"[{name}] {key}: unknown key, ignored (known: see `aiges -init`)" for key in section
            if key not in known]


def _workers(v: Any) -> int:
    """``workers = "auto"``: one plugin process per core this process may run on."""
    if v == "auto":
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except (AttributeError, OSError):
            return os.cpu_count() or 1
    if isinstance(v, str) and v.isdigit():  # from the environment
        v = int(v)
    return _pos_int(v)


def _connections(v: Any) -> int:
    """``maxConnections = "auto"`` (0): derived from the descriptor limit at start."""
    return 0 if v == "auto" else _pos_int(v)


def _nonneg_float(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
        raise TypeError
    return float(v)


def read_api_keys_file(path: str, where: str) -> tuple[str, ...]:
    """One key per line; blank lines and ``#`` comments are skipped.  An unreadable or empty
    file is an error: it must neither lock every client out nor turn authentication off."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) else "not UTF-8 text"
        raise ConfigError(f"{where}: cannot read the API keys file {path}: {reason}") from None
    keys = tuple(dict.fromkeys(k for k in (line.strip() for line in lines) if k and not k.startswith("#")))
    if not keys:
        raise ConfigError(f"{where}: the API keys file {path} holds no key (one key per line)")
    return keys


# ---------------------------------------------------------------- the parse
def load(path: str, svc_name: str = "svcName", env: Mapping[str, str] | None = None,
         wrapper_dir: str | None = None) -> Settings:
    """``wrapper_dir``: the command line's ``--wrapper-dir``, which wins over the environment and the file."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
    return parse(text, path, svc_name, os.environ if env is None else env, wrapper_dir)


def _wrapper_dir(aiges: Mapping[str, Any], path: str, env: Mapping[str, str],
                 flag: str | None) -> tuple[str | None, str]:
    """The directory of wrapper.py and what chose it: ``--wrapper-dir``, else ``AIGES_WRAPPER_DIR``
    (both relative to the working directory), else ``[aiges] wrapperDir`` (relative to the file)."""
    in_file = _get(aiges, "aiges", "wrapperDir", None, _str, "a directory path string")
    config_dir = os.path.dirname(os.path.abspath(path))
    for value, source, base in ((flag, "--wrapper-dir", os.getcwd()),
                                (env.get("AIGES_WRAPPER_DIR"), "AIGES_WRAPPER_DIR", os.getcwd()),
                                (in_file, "[aiges] wrapperDir", config_dir)):
        if value:
            where = os.path.normpath(os.path.join(base, value))
            if not os.path.isdir(where):
                raise ConfigError(f"{source}: directory {where} does not exist")
            return where, source
    return None, ""


def parse(text: str, path: str = "aiges.toml", svc_name: str = "svcName",
          env: Mapping[str, str] | None = None, wrapper_dir_flag: str | None = None) -> Settings:
    env = env or {}
    try:
        doc = load_toml(text)
    except Exception as e:  # tomllib.TOMLDecodeError / toml.TomlDecodeError
        raise ConfigError(f"{path} is not valid TOML: {e}") from None
    aiges = _section(doc, "aiges")
    wrapper = _section(doc, "wrapper")
    ws = _section(doc, "ws")
    auth = _section(doc, "auth")
    log = _section(doc, "log")
    _section(doc, svc_name)

    listen = _get(wrapper, "wrapper", "http_listen", None, _str, "a string \"HOST:PORT\"")
    if listen is None:  # pre-2023 upstream files keep it in the service section
        listen = _get(_section(doc, svc_name), svc_name, "http_listen", DEFAULT_HTTP_LISTEN, _str,
                      "a string \"HOST:PORT\"")
    listen = env.get("AIGES_HTTP_LISTEN") or listen
    http_host, http_port = parse_listen(listen, "[wrapper] http_listen")

    service = _section(doc, svc_name)
    grpc_host = _get(service, svc_name, "host", "0.0.0.0", _str, "a host string")
    grpc_port = _get(service, svc_name, "port", None, _int, "a port number")
    if env.get("AIGES_GRPC_LISTEN"):
        grpc_host, grpc_port = parse_listen(env["AIGES_GRPC_LISTEN"], "AIGES_GRPC_LISTEN")
    if grpc_port is not None and not 0 <= grpc_port <= 65535:
        raise ConfigError(f"[{svc_name}] port: expected a port number 0..65535, got {grpc_port}")

    init_timeout = _get(aiges, "aiges", "initTimeout", 600.0, _nonneg_float, "a number of seconds (0 = no limit)")
    log_level = _get(log, "log", "level", "info", _str, "a level name string").lower()
    if log_level not in LOG_LEVELS:
        raise ConfigError(f"[log] level: expected one of {', '.join(LOG_LEVELS)}, got {log_level!r}")

    wrapper_dir, wrapper_dir_from = _wrapper_dir(aiges, path, env, wrapper_dir_flag)

    plugin_mode = env.get("AIGES_PLUGIN_MODE", "").strip().lower()
    if plugin_mode not in ("", "python", "c"):
        raise ConfigError(f"AIGES_PLUGIN_MODE={env['AIGES_PLUGIN_MODE']!r}: expected 'python' (a wrapper.py) or 'c' "
                          "(a libwrapper.so written to upstream's C interface), or unset to choose by what is there")
    wrapper_lib = env.get("AIGES_WRAPPER_LIB") or _get(aiges, "aiges", "wrapperLib", None, _str, "a file path string")
    if wrapper_lib:
        local = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(path)), wrapper_lib))
        if "/" in wrapper_lib and not os.path.isfile(local):
            raise ConfigError(f"[aiges] wrapperLib: file {local} does not exist (build the library, or fix the path; "
                              "it is relative to the config file)")
        # a bare name is looked up next to the toml, else left to the dynamic loader's search
        wrapper_lib = local if os.path.isfile(local) else wrapper_lib

    plugin_cmd = _get(aiges, "aiges", "pythonPluginCmd", None, _str, "a command string")
    if plugin_cmd and plugin_cmd.strip() == UPSTREAM_PLUGIN_CMD:
        plugin_cmd = None  # upstream's default means "python -m aiges.serve": use this interpreter

    log_dir = _get(log, "log", "dir", "logs", _str, "a directory path string")
    log_dir = env.get("AIGES_LOG_DIR") or log_dir

    api_keys = _get(auth, "auth", "apiKeys", (), _str_list, "a list of strings")
    if env.get("AIGES_API_KEYS"):
        api_keys = _str_list(env["AIGES_API_KEYS"])
    keys_file = _get(auth, "auth", "apiKeysFile", None, _str, "a file path string")
    where = "[auth] apiKeysFile"
    if env.get("AIGES_API_KEYS_FILE"):
        keys_file, where = env["AIGES_API_KEYS_FILE"], "AIGES_API_KEYS_FILE"
    elif keys_file:
        keys_file = os.path.join(os.path.dirname(os.path.abspath(path)), keys_file)
    file_keys = read_api_keys_file(keys_file, where) if keys_file else ()

    workers = _get(aiges, "aiges", "workers", 1, _workers, 'a positive integer or "auto"')
    if env.get("AIGES_WORKERS"):
        workers = _get(env, "env", "AIGES_WORKERS", 1, _workers, 'a positive integer or "auto"')

    status = _get(aiges, "aiges", "wrapperErrorStatus", 500, _int, "an HTTP status integer")
    if not 400 <= status <= 599:
        raise ConfigError(f"[aiges] wrapperErrorStatus: expected an HTTP error status 400..599, got {status}")

    return Settings(
        svc_name=svc_name,
        config_path=os.path.abspath(path),
        http_host=http_host,
        http_port=http_port,
        grpc_host=grpc_host,
        grpc_port=grpc_port,
        wrapper_dir=wrapper_dir,
        wrapper_dir_from=wrapper_dir_from,
        python_path=tuple(p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p),
        wrapper_module=_get(aiges, "aiges", "wrapperModule", "wrapper", _str, "a module name string"),
        wrapper_config={str(k): stringify(v) for k, v in wrapper.items() if k != "http_listen"},
        plugin_cmd=plugin_cmd,
        plugin_mode=plugin_mode,
        wrapper_lib=wrapper_lib or None,
        async_mode=_get(aiges, "aiges", "asyncMode", False, _bool, "true or false"),
        real_time_rlt=_get(aiges, "aiges", "realTimeRlt", True, _bool, "true or false"),
        wrapper_thread_safe=_get(aiges, "aiges", "wrapperThreadSafe", True, _bool, "true or false"),
        workers=workers,
        worker_threads=_get(aiges, "aiges", "workerThreads", 4, _pos_int, "a positive integer"),
        max_batch_size=_get(aiges, "aiges", "max_batch_size", None, _pos_int, "a positive integer"),
        max_queue_delay_ms=_get(aiges, "aiges", "max_queue_delay_ms", None, _nonneg_float,
                                "a number of milliseconds (0 = no waiting)"),
        lane=_get(aiges, "aiges", "lane", True, _bool, "true or false"),
        max_inflight=_get(aiges, "aiges", "maxInflight", 512, _pos_int, "a positive integer"),
        deadline=_get(aiges, "aiges", "deadline", 60.0, _float, "a positive number of seconds"),
        max_body_size=int(_get(aiges, "aiges", "maxBodyMB", 64, _float, "a positive number of MB") * 1024 * 1024),
        start_timeout=_get(aiges, "aiges", "startTimeout", 60.0, _float, "a positive number of seconds"),
        init_timeout=init_timeout or None,
        restart_backoff_max=_get(aiges, "aiges", "restartBackoffMax", 10.0, _float, "a positive number of seconds"),
        liveness_interval=_get(aiges, "aiges", "livenessInterval", 5.0, _nonneg_float,
                               "a number of seconds (0 = off)") or None,
        exit_on_init_failure=_get(aiges, "aiges", "exitOnInitFailure", True, _bool, "true or false"),
        grace=_get(aiges, "aiges", "grace", 30.0, _float, "a positive number of seconds"),
        drain_delay=_get(aiges, "aiges", "drainDelay", 0.0, _nonneg_float, "a number of seconds (0 = off)"),
        wrapper_error_status=status,
        header_pass=_get(aiges, "aiges", "headerPass", (), _str_list, "a string \"a;b\" or a list of strings"),
        ws_read_timeout=_get(ws, "ws", "readTimeout", 15.0, _float, "a positive number of seconds"),
        ws_session_timeout=_get(ws, "ws", "sessionTimeout", 180.0, _float, "a positive number of seconds"),
        header_timeout=_get(aiges, "aiges", "headerTimeout", 10.0, _float, "a positive number of seconds"),
        body_timeout=_get(aiges, "aiges", "bodyTimeout", 30.0, _float, "a positive number of seconds"),
        keepalive_timeout=_get(aiges, "aiges", "keepaliveTimeout", 75.0, _float, "a positive number of seconds"),
        max_connections=_get(aiges, "aiges", "maxConnections", 0, _connections, 'a positive integer or "auto"'),
        api_keys=api_keys,
        api_keys_file=os.path.abspath(keys_file) if keys_file else None,
        file_api_keys=file_keys,
        log_dir=log_dir,
        log_level=log_level,
        access_log=_get(log, "log", "access", True, _bool, "true or false"),
        warnings=tuple(_unknown_keys(aiges, "aiges", AIGES_KEYS) + _unknown_keys(ws, "ws", WS_KEYS)),
    )
