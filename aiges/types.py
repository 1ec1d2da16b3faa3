"""Old import path ``aiges.types`` used by upstream's examples; same names as :mod:`aiges.core.types`."""
from aiges.core.types import *  # noqa: F401,F403
