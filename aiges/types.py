"""Old upstream import path ``aiges.types`` (upstream's examples): the same module as
:mod:`aiges.sdk.types` (``aiges.core.types`` is another face of it)."""
import sys

import aiges.sdk.types as _home

sys.modules[__name__] = _home
