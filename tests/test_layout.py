"""The house: every import path an upstream wrapper uses still works, each folder of ``aiges/`` is one
role and says so, and no module imports itself back through another (no import circles).

Pure checks (no servers): they fail the moment a name upstream wrappers import moves away or a
refactoring closes an import loop.
"""
from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from tests.utils import ROOT

PKG = ROOT / "aiges"

# What upstream wrappers import (../shared/UPSTREAM.md §4, its compat wrapper, upstream's examples
# and templates), path by path.  Each name must resolve on the path as written.
UPSTREAM_NAMES: dict[str, list[str]] = {
    "aiges.sdk": ["WrapperBase", "StringParamField", "NumberParamField", "IntegerParamField",
                  "BooleanParamField", "StringBodyField", "ImageBodyField", "AudioBodyField", "JsonBodyField",
                  "Field", "ParamField", "PayloadField",
                  # re-exported from aiges.stream as upstream's sdk did
                  "SessionManager", "StreamHandleThread", "WorkerThread", "ThreadPool"],
    "aiges.dto": ["Response", "ResponseData", "DataListNode", "DataListCls", "SessionCreateResponse", "callback",
                  "init_rq"],
    "aiges.core.types": ["STRING", "AUDIO", "IMAGE", "VIDEO", "DataText", "DataAudio", "DataImage", "DataVideo",
                         "Types", "DataBegin", "DataContinue", "DataEnd", "DataOnce", "Status", "Once",
                         "THREAD_MODE", "PROCESS_MODE"],
    "aiges.types": ["STRING", "AUDIO", "IMAGE", "VIDEO", "DataText", "DataOnce", "Once", "Types", "Status"],
    "aiges.utils.log": ["log", "getFileLogger", "getLogger"],
    "aiges.stream": ["StreamHandleThread", "SessionManager", "WorkerThread", "ThreadPool"],
    "aiges.callback": ["callback"],
    "aiges.errors": ["OK", "INIT_ERROR"],
}


@pytest.mark.parametrize("module", sorted(UPSTREAM_NAMES))
def test_upstream_import_paths_keep_every_name(module: str) -> None:
    """``from <module> import <name>`` as an upstream wrapper writes it."""
    mod = importlib.import_module(module)
    missing = [n for n in UPSTREAM_NAMES[module] if not hasattr(mod, n)]
    assert not missing, f"{module} lost {missing}: upstream wrappers import them from there"


def test_faces_are_the_sdk_modules_themselves() -> None:
    """A face is its home (same module object): identity checks and module state are shared."""
    import aiges.callback
    import aiges.core.types
    import aiges.dto
    import aiges.sdk.callback
    import aiges.sdk.dto
    import aiges.sdk.log
    import aiges.sdk.stream
    import aiges.sdk.types
    import aiges.stream
    import aiges.types
    import aiges.utils.log
    assert aiges.dto is aiges.sdk.dto and aiges.stream is aiges.sdk.stream
    assert aiges.callback is aiges.sdk.callback and aiges.utils.log is aiges.sdk.log
    assert aiges.core.types is aiges.sdk.types and aiges.types is aiges.sdk.types
    from aiges.dto import Response
    from aiges.sdk.dto import Response as Home
    assert Response is Home


def test_star_import_of_types_as_upstream_wrappers_do() -> None:
    """``from aiges.core.types import *`` in a fresh interpreter (what every upstream wrapper does)."""
    code = ("from aiges.core.types import *\nfrom aiges.types import *\n"
            "assert (STRING, AUDIO, IMAGE, VIDEO, DataOnce, Once) == (0, 1, 2, 3, 3, 3)\n"
            "from aiges.sdk import *\nassert WrapperBase and StringBodyField and SessionManager\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_each_folder_is_one_role_and_says_so() -> None:
    """Every package under aiges/ opens with a docstring whose first line names its role."""
    undocumented = []
    for init in sorted(PKG.rglob("__init__.py")):
        if "wire/pb" in init.as_posix():
            continue  # generated
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        if not doc or len(doc.splitlines()[0]) < 20:
            undocumented.append(str(init.relative_to(ROOT)))
    assert not undocumented, f"packages without a role line: {undocumented}"
    roles = {p.name for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert {"sdk", "tools", "client", "wire", "loader", "plugin"} <= roles


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """aiges modules this module imports, at any depth of its code (a lazy import is still a tie)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_pkg else name.split(".")[:-1]
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_circles() -> None:
    files = {_module_name(p): p for p in PKG.rglob("*.py") if "wire/pb" not in p.as_posix()}
    known = set(files) | {"aiges.wire.pb"}
    graph = {}
    for name, path in files.items():
        deps = _imports(path, name, known)
        # a package's __init__ importing its own submodules (re-exports) is not a circle of roles
        graph[name] = {d for d in deps if d in files and not (path.name == "__init__.py" and d.startswith(name + "."))}
        # a submodule reaching its parent package only for another sibling is fine as the parent
        # only re-exports; resolve such ties to nothing (faces and re-export packages)
    assert not _cycles(graph), f"import circles: {_cycles(graph)}"
