"""Compile the test engines with the system's C compiler, at test time (cached per test session)."""
from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

from tests.utils import ROOT

HERE = Path(__file__).resolve().parent
INCLUDE = ROOT / "c_template" / "include"  # the headers `aiges create --lang c` ships


def compiler(cxx: bool = False) -> str | None:
    names = ("c++", "g++", "clang++") if cxx else ("cc", "gcc", "clang")
    return next((p for p in map(shutil.which, names) if p), None)


def build(out_dir: Path, source: str = "demo.c", defines: tuple[str, ...] = (), cxx: bool = False,
          name: str = "libwrapper.so", include: Path = INCLUDE) -> Path:
    """``cc -shared -fPIC`` a source of this directory into ``out_dir/<hash>/name``, against our
    headers (or another directory holding a wrapper.h and type.h: upstream's)."""
    src = HERE / source
    cc = compiler(cxx)
    if cc is None:
        raise RuntimeError("no C compiler (cc/gcc/clang); scripts/install-test-deps installs one")
    key = hashlib.sha256(src.read_bytes() + (include / "wrapper.h").read_bytes() + (include / "type.h").read_bytes()
                         + repr((defines, cxx)).encode()).hexdigest()[:16]
    target = out_dir / key / name
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        # upstream's header puts a visibility attribute on function-pointer typedefs (its cgo build
        # passes -Wno-attributes too); ours compiles warning-free
        strict = ["-Werror"] if include == INCLUDE else ["-Wno-attributes"]
        cmd = [cc, "-O1", "-g", "-Wall", "-Wextra", *strict, "-fPIC", "-shared", "-pthread", f"-I{include}",
               *(f"-D{d}" for d in defines), "-o", str(target), str(src)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    return target
