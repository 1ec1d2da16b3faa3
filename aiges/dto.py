"""Upstream import path ``aiges.dto``: the code lives in :mod:`aiges.sdk.dto` (the SDK's one home).

This module *is* that one (the same module object, via ``sys.modules``), so every name, every
object's identity and any module state a wrapper touches are shared; tests/test_import_paths.py
fails if a name upstream wrappers import goes missing.
"""
import sys

import aiges.sdk.dto as _home

sys.modules[__name__] = _home
