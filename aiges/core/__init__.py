"""Upstream-compatible ``aiges.core`` package (constants live in :mod:`aiges.core.types`)."""
