"""The wrapper SDK, one home for everything a ``wrapper.py`` imports (upstream-compatible).

``aiges.sdk`` itself is upstream's module of the same name: ``WrapperBase`` and the field classes
(:mod:`aiges.sdk.fields`), with the stream helpers re-exported as upstream's did.  Beside it live
the rest of the SDK: :mod:`aiges.sdk.dto` (request/response data), :mod:`aiges.sdk.types`
(constants), :mod:`aiges.sdk.stream` (session helpers), :mod:`aiges.sdk.callback` (pushing session
results) and :mod:`aiges.sdk.log` (logging).  Upstream's paths ``aiges.dto``, ``aiges.core.types``,
``aiges.types``, ``aiges.stream``, ``aiges.callback`` and ``aiges.utils.log`` are thin faces over
these modules.  Nothing here imports the loader or the plugin.
"""
from aiges.sdk.fields import *  # noqa: F401,F403 - upstream's `aiges.sdk` namespace, name for name
from aiges.sdk.fields import TYPE_NAMES, WrapperBase, output_problems  # noqa: F401 - used by aiges.tools
