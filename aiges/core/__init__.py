"""Upstream's ``aiges.core`` package, kept as an import path: ``aiges.core.types`` is a face over
:mod:`aiges.sdk.types`."""
