"""``aiges create`` and ``aiges -mnist``: write a project from a template shipped with the engine.

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
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

from aiges import __version__
from aiges.tools.defaults import default_config_text
from aiges.tools.pack import SKIP_DIRS

try:
    from importlib.resources.abc import Traversable
except ImportError:  # pragma: no cover - Python 3.10
    from importlib.abc import Traversable

# the source checkout (when running from one): aiges/tools/scaffold.py -> the repository root
CHECKOUT = Path(__file__).resolve().parent.parent.parent
NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
TEXT_SUFFIXES = {".py", ".md", ".txt", ".toml", ".c", ".h", ""}  # "" = Dockerfile, Makefile, .dockerignore

GENERATED = {"model.npz", "model.json"}  # the mnist demo's training output: made by train.py, never copied
MNIST_DIR = os.path.join("aiges_demo", "mnist")


# ---------------------------------------------------------------- template files
def _source(package: str, checkout_dir: str) -> Traversable:
    """An installed template package, or its directory in a source checkout (running from git)."""
    try:
        return resources.files(package)
    except ModuleNotFoundError:
        return CHECKOUT / checkout_dir


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
    root = CHECKOUT
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
    if getattr(args, "lang", "python") == "c":
        from aiges.tools.config_cmd import _set_line
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

