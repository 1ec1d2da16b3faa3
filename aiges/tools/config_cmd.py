"""``aiges config show|get|set``: read and edit ``aiges.toml`` line by line (comments survive),
refusing an edit whose result the engine would not load."""
from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from aiges.config import load_toml


def _split_key(dotted: str) -> tuple[str, str]:
    section, sep, key = dotted.partition(".")
    if not sep or not section or not key:
        raise ValueError(f"expected SECTION.KEY (e.g. aiges.workers), got {dotted!r}")
    return section, key


def _toml_value(text: str) -> str:
    """VALUE as TOML: a number, boolean, quoted string or list stays as typed; anything else is quoted."""
    try:
        load_toml(f"v = {text}")
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
        table = load_toml(text).get(section, {})
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
    print(f"[{section}] {key} = {load_toml(new)[section][key]!r} in {path}")
    return 0

