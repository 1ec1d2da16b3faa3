"""The C host: a ``libwrapper.so`` written to upstream's C ABI (``wrapper.h`` / ``type.h``)."""
from aiges.plugin.hosts.c.host import CHost

__all__ = ["CHost"]
