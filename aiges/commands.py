"""Subcommands of ``aiges`` / ``python -m aiges``: create, pack, check, config and the -mnist demo.

``create`` copies ``wrapper_template/`` (installed as ``aiges.wrapper_template``) with the project
name filled in, so the new project serves and passes ``aiges check`` with no edits; ``-mnist``
copies ``examples/mnist/`` (``aiges.mnist_demo``) and trains its model locally, offline.  Both
write ``aiges.toml`` from the engine's own default file, so its keys never drift from the engine.
"""
from __future__ import annotations

import argparse
import datetime
import os
import re
import shlex
import subprocess
import sys
import tarfile
from collections.abc import Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from aiges import __version__

try:
    from importlib.resources.abc import Traversable
except ImportError:  # pragma: no cover - Python 3.10
    from importlib.abc import Traversable

if sys.version_info >= (3, 11):
    import tomllib as _toml

    def _loads(text: str) -> dict[str, Any]:
        return _toml.loads(text)
else:  # pragma: no cover - Python 3.10
    import toml as _toml

    def _loads(text: str) -> dict[str, Any]:
        return _toml.loads(text)

NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
TEXT_SUFFIXES = {".py", ".md", ".txt", ".toml", ".c", ".h", ""}  # "" = Dockerfile, Makefile, .dockerignore
SKIP_DIRS = {"__pycache__", ".git", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
GENERATED = {"model.npz", "model.json"}  # the mnist demo's training output: made by train.py, never copied
MNIST_DIR = os.path.join("aiges_demo", "mnist")


# ---------------------------------------------------------------- template files
def _source(package: str, checkout_dir: str) -> Traversable:
    """An installed template package, or its directory in a source checkout (running from git)."""
    try:
        return resources.files(package)
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / checkout_dir


def _walk(node: Traversable, prefix: str = "") -> Iterator[tuple[str, Traversable]]:
    for child in sorted(node.iterdir(), key=lambda c: c.name):
        rel = f"{prefix}{child.name}"
        if child.is_dir():
            if child.name not in SKIP_DIRS:
                yield from _walk(child, rel + "/")
        elif not (prefix == "" and child.name == "__init__.py") and not child.name.endswith(".pyc") \
                and child.name not in GENERATED:
            yield rel, child


def _fill(text: str, values: dict[str, str]) -> str:
    for k, v in values.items():
        text = text.replace("{{" + k + "}}", v)
    return text


def _aiges_toml(wrapper_dir: str) -> str:
    """The engine's default aiges.toml with [aiges] wrapperDir pointing at the wrapper."""
    from aiges.cli import default_config_text
    text = default_config_text()
    line = f'wrapperDir = "{wrapper_dir}"     # aiges: directory of wrapper.py (relative to this file)'
    out, done = [], False
    for raw in text.splitlines():
        if not done and re.match(r"^\s*#?\s*wrapperDir\s*=", raw):
            out.append(line)
            done = True
        else:
            out.append(raw)
    if not done:  # a default file without the commented key: put it first in [aiges]
        out = [x if x.strip() != "[aiges]" else f"[aiges]\n{line}" for x in out]
    return "\n".join(out) + "\n"


def _copy_tree(src: Traversable, dest: Path, values: dict[str, str]) -> list[str]:
    written = []
    for rel, node in _walk(src):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        data = node.read_bytes()
        if Path(rel).suffix in TEXT_SUFFIXES:
            data = _fill(data.decode("utf-8"), values).encode("utf-8")
        target.write_bytes(data)
        written.append(rel)
    return written


def engine_source() -> str:
    """What ``pip wheel`` builds this engine from: its source checkout when we run from one (an
    editable install), else a placeholder to replace; never the name ``aiges``, which on PyPI is
    upstream's unrelated SDK."""
    root = Path(__file__).resolve().parent.parent
    if (root / "setup.py").is_file() and (root / "aiges" / "__init__.py").is_file():
        return str(root)
    return "/path/to/the/aiges/engine/source"


# ---------------------------------------------------------------- create
def create(args: argparse.Namespace) -> int:
    name = args.name
    if not NAME.match(name):
        sys.stderr.write(f"aiges create: invalid name {name!r}: use a letter, then letters, digits, '_' or '-' "
                         "(it becomes the serviceId, the route /v1/private/NAME and parameter.NAME)\n")
        return 2
    dest = Path(args.path) / name
    refused = _refuse_existing(dest, "aiges create", args.force, "Use --force to overwrite its template files "
                               "(other files are kept), or pick another -n/-p")
    if refused:
        return refused
    values = {"name": name, "version": __version__, "path": str(dest.resolve()),
              "date": datetime.date.today().isoformat(), "engine": shlex.quote(engine_source())}
    if args.lang == "c":
        written = _copy_tree(_source("aiges.c_template", "c_template"), dest, values)
        toml = _aiges_toml(".")
        commented = re.compile(r"^# (wrapperLib = )\S+( +#)", re.M)  # the default file's commented key
        toml = commented.sub(r'\1"libwrapper.so"\2', toml, 1) if commented.search(toml) else \
            _set_line(toml, "aiges", "wrapperLib", '"libwrapper.so"')
        toml = _set_line(toml, "aiges", "asyncMode", "false")
        next_steps = ("  make             # builds libwrapper.so from wrapper.c\n"
                      "  aiges check      # runs the engine with the test values of wrapper.py\n")
    else:
        written = _copy_tree(_source("aiges.wrapper_template", "wrapper_template"), dest, values)
        toml = _aiges_toml("wrapper")
        next_steps = "  aiges check      # runs the wrapper with its test values\n"
    (dest / "aiges.toml").write_text(toml, encoding="utf-8")
    written.append("aiges.toml")
    for rel in sorted(written):
        print(f"wrote {dest / rel}")
    print(f"\nproject {name!r} created in {dest}. Next:\n"
          f"  cd {dest}\n{next_steps}"
          f"  aiges -m 0       # serves on :1888; Swagger UI at http://127.0.0.1:1888/\n")
    return 0


# ---------------------------------------------------------------- pack
def pack(args: argparse.Namespace) -> int:
    root = Path(args.location).resolve()
    if not root.is_dir():
        sys.stderr.write(f"aiges pack: {root} is not a directory\n")
        return 1
    output = Path(args.output).resolve()
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        # runtime output stays out: caches, VCS data, logs directories (the loader's, or a wrapper's
        # own when it ran from its directory), and archives of earlier packs
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and d != "logs")
        for f in sorted(filenames):
            p = here / f
            if p == output or f.endswith((".pyc", ".sock")) or (here == root and f.endswith(".tar.gz")):
                continue
            files.append(p)
    rels = [p.relative_to(root).as_posix() for p in files]
    if not any(Path(r).name == "wrapper.py" for r in rels):
        sys.stderr.write(f"aiges pack: no wrapper.py under {root}; nothing packed\n")
        return 1
    top = {r.lower() for r in rels if "/" not in r}
    for wanted in ("requirements.txt", "readme.md"):
        if wanted not in top:
            sys.stderr.write(f"aiges pack: warning: no {wanted if wanted != 'readme.md' else 'README.md'} in {root}\n")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(output, "w:gz") as tar:
            for p, rel in zip(files, rels, strict=True):
                tar.add(p, arcname=rel, recursive=False)
    except OSError as e:
        sys.stderr.write(f"aiges pack: cannot write {output}: {e.strerror or e}\n")
        return 1
    print(f"packed {len(rels)} files from {root} into {output}")
    return 0


# ---------------------------------------------------------------- check
def check(args: argparse.Namespace) -> int:
    from aiges.check import main as check_main
    return check_main(args.directory, session_wait=args.session_wait)


# ---------------------------------------------------------------- config
def _split_key(dotted: str) -> tuple[str, str]:
    section, sep, key = dotted.partition(".")
    if not sep or not section or not key:
        raise ValueError(f"expected SECTION.KEY (e.g. aiges.workers), got {dotted!r}")
    return section, key


def _toml_value(text: str) -> str:
    """VALUE as TOML: a number, boolean, quoted string or list stays as typed; anything else is quoted."""
    try:
        _loads(f"v = {text}")
        return text
    except Exception:  # noqa: BLE001 - not a TOML literal: it is a plain string
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _set_line(text: str, section: str, key: str, value: str) -> str:
    """Set one key by editing lines, so the file's comments and order survive."""
    lines = text.splitlines()
    header = re.compile(r"^\s*\[([^\]]+)\]")
    key_re = re.compile(r'^(\s*)("?)' + re.escape(key) + r'\2\s*=\s*(.*)$')
    start = next((i for i, ln in enumerate(lines) if (m := header.match(ln)) and m.group(1).strip() == section), None)
    quoted = f'"{key}"' if not re.match(r"^[A-Za-z0-9_-]+$", key) else key
    if start is None:
        return text.rstrip("\n") + f"\n\n[{section}]\n{quoted} = {value}\n"
    end = next((i for i in range(start + 1, len(lines)) if header.match(lines[i])), len(lines))
    for i in range(start + 1, end):
        m = key_re.match(lines[i])
        if m:
            comment = re.search(r"\s+#.*$", m.group(3))
            lines[i] = f"{m.group(1)}{quoted} = {value}" + (comment.group(0) if comment else "")
            return "\n".join(lines) + "\n"
    last = max(i for i in range(start, end) if lines[i].strip()) if end > start else start
    lines.insert(last + 1, f"{quoted} = {value}")
    return "\n".join(lines) + "\n"


def config_cmd(args: argparse.Namespace) -> int:
    from aiges import config
    path = args.config
    if args.action == "show":
        try:
            settings = config.load(path, args.service)
        except config.ConfigError as e:
            sys.stderr.write(f"aiges config: {e}\n")
            return 1
        for k, v in vars(settings).items():
            print(f"{k} = {dict(v) if k == 'wrapper_config' else v!r}")
        return 0
    try:
        section, key = _split_key(args.key)
    except ValueError as e:
        sys.stderr.write(f"aiges config: {e}\n")
        return 2
    if not os.path.exists(path):
        sys.stderr.write(f"aiges config: {path} does not exist (aiges -init writes one)\n")
        return 1
    text = Path(path).read_text(encoding="utf-8")
    if args.action == "get":
        table = _loads(text).get(section, {})
        if not isinstance(table, dict) or key not in table:
            sys.stderr.write(f"aiges config: [{section}] {key} is not set in {path}\n")
            return 1
        print(table[key])
        return 0
    new = _set_line(text, section, key, _toml_value(args.value))
    try:
        config.parse(new, path, args.service)
    except config.ConfigError as e:
        sys.stderr.write(f"aiges config: not written, the result would be invalid: {e}\n")
        return 1
    Path(path).write_text(new, encoding="utf-8")
    print(f"[{section}] {key} = {_loads(new)[section][key]!r} in {path}")
    return 0


def _refuse_existing(dest: Path, cmd: str, force: bool, hint: str) -> int:
    """1 (and a message) when ``dest`` is a file or a non-empty directory and not ``force``; else
    create it and return 0."""
    if dest.exists() and not dest.is_dir():
        sys.stderr.write(f"{cmd}: {dest} exists and is not a directory\n")
        return 1
    if dest.is_dir() and any(dest.iterdir()) and not force:
        sys.stderr.write(f"{cmd}: {dest} already exists and is not empty; nothing written. {hint}\n")
        return 1
    dest.mkdir(parents=True, exist_ok=True)
    return 0


# ---------------------------------------------------------------- -mnist
def mnist(args: argparse.Namespace) -> int:
    dest = Path(args.path)
    # as create: a second -mnist must not silently undo edits and retrain over the user's model
    refused = _refuse_existing(dest, "aiges -mnist", args.force, "Use `aiges -mnist --force` to overwrite its "
                               "demo files and retrain (other files are kept)")
    if refused:
        return refused
    values = {"name": "mnist", "version": __version__, "path": str(dest.resolve()),
              "date": datetime.date.today().isoformat()}
    written = _copy_tree(_source("aiges.mnist_demo", os.path.join("examples", "mnist")), dest, values)
    (dest / "aiges.toml").write_text(_aiges_toml("wrapper"), encoding="utf-8")
    for rel in sorted(written + ["aiges.toml"]):
        print(f"wrote {dest / rel}")
    print("training the digit model (python train.py) ...", flush=True)
    proc = subprocess.run([sys.executable, "train.py"], cwd=dest)
    if proc.returncode != 0:
        sys.stderr.write(f"aiges -mnist: train.py failed with exit code {proc.returncode}\n")
        return 1
    print(f"\nthe mnist demo is ready in {dest}. Next:\n  cd {dest}\n  aiges check\n  aiges -m 0\n")
    return 0


# ---------------------------------------------------------------- dispatch
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aiges", description=f"aiges {__version__} project commands")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("create", help="scaffold a wrapper project that serves and passes check as is")
    c.add_argument("-n", "--name", default="wrapperDemo", help="project and service name (default wrapperDemo)")
    c.add_argument("-p", "--path", default=".", help="parent directory (default .)")
    c.add_argument("--force", action="store_true", help="overwrite the template files of an existing project")
    c.add_argument("--lang", choices=("python", "c"), default="python",
                   help="python: a wrapper.py; c: a C engine (libwrapper.so to upstream's C interface, built with make)")
    c.set_defaults(run=create)
    k = sub.add_parser("pack", help="pack a project into a .tar.gz, directory structure kept")
    k.add_argument("-l", "--location", default=".", help="project directory (default .)")
    k.add_argument("-o", "--output", default="pywrapper.tar.gz", help="archive to write (default ./pywrapper.tar.gz)")
    k.set_defaults(run=pack)
    h = sub.add_parser("check", help="run the wrapper with its declared test values; pass/fail with fixes")
    h.add_argument("directory", nargs="?", default=".", help="project or wrapper directory (default .)")
    h.add_argument("--session-wait", type=float, default=10.0, metavar="SECONDS",
                   help="how long to wait for a session's last result (default 10)")
    h.set_defaults(run=check)
    g = sub.add_parser("config", help="show, get or set aiges.toml values")
    g.add_argument("action", choices=("show", "get", "set"))
    g.add_argument("key", nargs="?", default="", help="SECTION.KEY, e.g. aiges.workers")
    g.add_argument("value", nargs="?", default=None, help="the value to set (TOML literal or plain text)")
    g.add_argument("-c", "--config", default="aiges.toml", help="config file (default aiges.toml)")
    g.add_argument("-s", "--service", default="svcName", help="service section name (default svcName)")
    g.set_defaults(run=config_cmd)
    m = sub.add_parser("mnist", help="write and train the digit-recognition demo (offline)")
    m.add_argument("-p", "--path", default=MNIST_DIR, help=f"where (default ./{MNIST_DIR})")
    m.add_argument("--force", action="store_true", help="overwrite the demo files of an existing demo and retrain")
    m.set_defaults(run=mnist)
    return p


def main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    if args.command == "config":
        if args.action in ("get", "set") and not args.key:
            sys.stderr.write(f"aiges config {args.action}: SECTION.KEY is required\n")
            return 2
        if args.action == "set" and args.value is None:
            sys.stderr.write("aiges config set: VALUE is required (aiges config set SECTION.KEY VALUE)\n")
            return 2
    return int(args.run(args))
