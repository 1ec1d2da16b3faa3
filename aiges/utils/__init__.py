"""Upstream's ``aiges.utils`` package, kept as an import path: ``aiges.utils.log`` is a face over
:mod:`aiges.sdk.log`."""
