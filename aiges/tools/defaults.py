"""The engine's default ``aiges.toml`` (``aiges -init``, and what ``create``/``-mnist`` write), read
from the file shipped in this package so its keys never drift from the engine."""
from __future__ import annotations

import os
from importlib import resources


def default_config_text() -> str:
    return resources.files("aiges.tools").joinpath("default.toml").read_text(encoding="utf-8")


def write_default_config(path: str = "aiges.toml") -> bool:
    if os.path.exists(path):
        return False
    with open(path, "w", encoding="utf-8") as f:
        f.write(default_config_text())
    return True
