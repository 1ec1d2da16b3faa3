"""``aiges pack``: a project directory into a .tar.gz, paths kept, runtime output left out."""
from __future__ import annotations

import argparse
import os
import sys
import tarfile
from pathlib import Path

SKIP_DIRS = {"__pycache__", ".git", ".pytest_cache", ".mypy_cache", ".ruff_cache"}


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

