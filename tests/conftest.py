"""Shared fixtures: real loaders (and their plugin workers) on free loopback ports."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.utils import ROOT, WRAPPERS, Loader, start_loader


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loader]:
    """The bundled demo wrapper, as the README serves it."""
    loader = start_loader(tmp_path_factory.mktemp("demo"), ROOT / "examples" / "demo")
    yield loader
    loader.stop()


@pytest.fixture(scope="module")
def image_stats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loader]:
    """shared/compat/image_stats/wrapper.py, an upstream wrapper, copied unchanged."""
    loader = start_loader(tmp_path_factory.mktemp("image_stats"), WRAPPERS / "image_stats")
    yield loader
    loader.stop()


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loader]:
    loader = start_loader(tmp_path_factory.mktemp("faulty"), WRAPPERS / "faulty",
                          aiges="deadline = 2\nmaxBodyMB = 1", wrapper='"model.path" = "/m"\nthreshold = 0.5\nn = 3')
    yield loader
    loader.stop()


@pytest.fixture(scope="session")
def c_build(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Compile a test engine of tests/c_engines with the system's C compiler (skip without one)."""
    from tests.c_engines.build import build, compiler
    if compiler() is None:
        pytest.skip("no C compiler (cc/gcc/clang); scripts/install-test-deps installs one")
    out = tmp_path_factory.mktemp("c_engines")

    def make(source: str = "demo.c", defines: tuple[str, ...] = (), cxx: bool = False, **kw: Path) -> Path:
        return build(out, source, defines, cxx, **kw)
    return make
