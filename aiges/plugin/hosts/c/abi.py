"""upstream's C engine ABI (``wrapper.h`` / ``type.h``) in ctypes: layouts, symbols, marshalling.

Every ctypes detail of the C host lives here, so the host itself reads as plain Python.

Layouts: ``struct ParamList`` {key, value, vlen, next} and ``struct DataList`` {key, data, len,
type, status, desc, next}, native alignment (32 and 48 bytes on x86-64; the enums are ints).
The ``ctypes.Structure`` classes document them and are what the layout test compares with a
compiled probe; the hot path packs the same bytes with :mod:`struct`, which is several times
cheaper than setting Structure fields one by one.

Inputs of one call go into one private, writable buffer (nodes first, then every key, value and
data block, each followed by a NUL byte): one allocation per call, and a library that treats
its input as a C string or writes into it (strtok on a param) touches only our copy.  An empty
list is one zeroed node, never NULL, as upstream passes it.

Outputs are copied at once (the library owns them) and never freed here: ``wrapperExec``'s go
back to ``wrapperExecFree``, ``wrapperRead``'s and a callback's stay the library's.
"""
from __future__ import annotations

import ctypes
import struct
import threading
from collections.abc import Iterable, Mapping
from ctypes import CFUNCTYPE, POINTER, c_char_p, c_int, c_uint, c_void_p
from typing import Any

from aiges._pb import aiges_inner_pb2 as pb

PARAM = struct.Struct("@PPIP")  # key, value, vlen, next
DATA = struct.Struct("@PPIiiPP")  # key, data, len, type, status, desc, next
MAX_ITEMS = 100_000  # a longer output list is taken for a cycle (a node pointing back)
MAX_LEN = 0xFFFFFFFF  # len and vlen are unsigned int


class ParamList(ctypes.Structure):
    _fields_ = [("key", c_char_p), ("value", c_char_p), ("vlen", c_uint), ("next", c_void_p)]


class DataList(ctypes.Structure):
    _fields_ = [("key", c_char_p), ("data", c_void_p), ("len", c_uint), ("type", c_int), ("status", c_int),
                ("desc", c_void_p), ("next", c_void_p)]


if ctypes.sizeof(ParamList) != PARAM.size or ctypes.sizeof(DataList) != DATA.size:  # pragma: no cover
    raise ImportError("aiges C host: struct layouts disagree between ctypes and struct on this platform")

# int (*wrapperCallback)(const void* usrTag, pDataList respData, int ret)
CALLBACK = CFUNCTYPE(c_int, c_void_p, c_void_p, c_int)
NO_CALLBACK = CALLBACK()  # a NULL wrapperCallback: wrapperCreate of a session read with wrapperRead
# int (*)(const void* usrTag, const char* meterKey, int count) / (const char* usrTag, key, value)
METER = CFUNCTYPE(c_int, c_void_p, c_char_p, c_int)
TRACE = CFUNCTYPE(c_int, c_char_p, c_char_p, c_char_p)
CT_METER_CUSTOM, CT_TRACE_LOG = 0, 2

_P = c_void_p
_PP = POINTER(c_void_p)
_UINTS = POINTER(c_uint)
# symbol -> (restype, argtypes), as wrapper.h declares them
PROTOTYPES: dict[str, tuple[Any, list[Any]]] = {
    "wrapperSetCtrl": (c_int, [c_int, _P]),
    "wrapperInit": (c_int, [_P]),
    "wrapperFini": (c_int, []),
    "wrapperError": (_P, [c_int]),
    "wrapperVersion": (_P, []),
    "wrapperLoadRes": (c_int, [_P, c_uint]),
    "wrapperUnloadRes": (c_int, [c_uint]),
    "wrapperCreate": (_P, [_P, _P, CALLBACK, _UINTS, c_int, POINTER(c_int)]),  # usrTag: our tag slot
    "wrapperWrite": (c_int, [_P, _P]),
    "wrapperRead": (c_int, [_P, _PP]),
    "wrapperDestroy": (c_int, [_P]),
    "wrapperExec": (c_int, [c_char_p, _P, _P, _PP, _UINTS, c_int]),
    "wrapperExecFree": (c_int, [c_char_p, _PP]),
    "wrapperExecAsync": (c_int, [_P, _P, _P, CALLBACK, c_int, _UINTS, c_int]),  # usrTag: our tag slot
    "wrapperDebugInfo": (_P, [_P]),
}
SYMBOLS = tuple(PROTOTYPES)


class Block:
    """The input lists of one call, in one buffer that lives as long as this object."""

    __slots__ = ("buf", "params", "data")

    def __init__(self, buf: Any, params: int, data: int) -> None:
        self.buf = buf  # keeps the memory alive
        self.params = params  # address of the first ParamList node (0 = none built)
        self.data = data  # address of the first DataList node (0 = none built)


def _utf8(s: str) -> bytes:
    return s.encode("utf-8", "surrogateescape")


def build(params: Mapping[str, str] | None = None, items: Iterable[pb.RequestData] | None = None) -> Block:
    """A ParamList of ``params`` and/or a DataList of ``items`` (each item's desc a ParamList)."""
    plist = [(_utf8(k), _utf8(v)) for k, v in params.items()] if params is not None else None
    dlist: list[tuple[bytes, bytes, int, int, list[tuple[bytes, bytes]]]] | None = None
    if items is not None:
        dlist = [(_utf8(d.key), d.data, d.type, d.status, [(_utf8(k), _utf8(v)) for k, v in d.desc.items()])
                 for d in items]
    n_param = max(1, len(plist)) if plist is not None else 0
    n_data = max(1, len(dlist)) if dlist is not None else 0
    n_desc = sum(max(1, len(x[4])) for x in dlist) if dlist else 0
    blob = 0
    for k, v in plist or ():
        blob += len(k) + len(v) + 2
    for k, data, _t, _s, desc in dlist or ():
        blob += len(k) + len(data) + 2
        for dk, dv in desc:
            blob += len(dk) + len(dv) + 2
    nodes = n_data * DATA.size + (n_param + n_desc) * PARAM.size
    buf = bytearray(nodes + blob + 1)
    base = ctypes.addressof((ctypes.c_char * len(buf)).from_buffer(buf))
    data_at = 0
    param_at = n_data * DATA.size
    text_at = nodes

    def text(value: bytes) -> int:
        nonlocal text_at
        start = text_at
        buf[start:start + len(value)] = value
        text_at = start + len(value) + 1  # the NUL is the buffer's own zero
        return base + start

    def param_nodes(pairs: list[tuple[bytes, bytes]]) -> int:
        """Pack a ParamList at param_at; returns its address (one zeroed node when empty)."""
        nonlocal param_at
        first = param_at
        if not pairs:
            param_at += PARAM.size
            return base + first
        for i, (k, v) in enumerate(pairs):
            here = param_at
            param_at += PARAM.size
            nxt = base + param_at if i + 1 < len(pairs) else 0
            PARAM.pack_into(buf, here, text(k), text(v), len(v), nxt)
        return base + first

    p_addr = param_nodes(plist) if plist is not None else 0
    if dlist is not None:
        for i, (k, data, typ, status, desc) in enumerate(dlist):
            here = data_at
            data_at += DATA.size
            nxt = base + data_at if i + 1 < len(dlist) else 0
            desc_addr = param_nodes(desc)
            DATA.pack_into(buf, here, text(k), text(data), len(data), typ, status, desc_addr, nxt)
    return Block(buf, p_addr, base if dlist is not None else 0)


class BadOutput(ValueError):
    """An output list the host cannot read safely (data NULL with len > 0, a cycle)."""


def _c_string(addr: int) -> str:
    return ctypes.string_at(addr).decode("utf-8", "replace") if addr else ""


def read_desc(addr: int) -> dict[str, str]:
    out: dict[str, str] = {}
    n = 0
    while addr:
        n += 1
        if n > MAX_ITEMS:
            raise BadOutput(f"a desc list longer than {MAX_ITEMS} nodes (a node pointing back?)")
        key, value, vlen, addr = PARAM.unpack(ctypes.string_at(addr, PARAM.size))
        if not key:
            continue  # an empty list's head node
        if value and vlen:
            out[_c_string(key)] = ctypes.string_at(value, vlen).decode("utf-8", "replace")
        else:
            out[_c_string(key)] = _c_string(value)
    return out


def read_list(addr: int) -> list[pb.ResponseData]:
    """Copy a DataList the library owns into proto items (keys, data, desc; type and status)."""
    out = []
    n = 0
    while addr:
        n += 1
        if n > MAX_ITEMS:
            raise BadOutput(f"an output list longer than {MAX_ITEMS} items (a node pointing back?)")
        key, data, length, typ, status, desc, nxt = DATA.unpack(ctypes.string_at(addr, DATA.size))
        if length and not data:
            raise BadOutput(f"output item {_c_string(key)!r} has len {length} but data NULL")
        payload = ctypes.string_at(data, length) if length else b""
        out.append(pb.ResponseData(key=_c_string(key), data=payload, len=length, type=typ, status=status,
                                   desc=read_desc(desc)))
        addr = nxt
    return out


class SymbolError(Exception):
    """The library lacks symbols the configured mode needs."""


class Library:
    """A loaded ``libwrapper.so``: one method per entry point, named after its symbol.

    The names matter beyond reading: a crash inside the library makes ``faulthandler`` print the
    Python frame that made the call, so the plugin's log says ``in wrapperExec``.  ctypes releases
    the GIL for every call; ``serial`` (a library that is not thread-safe) runs one at a time.
    """

    def __init__(self, path: str, serial: bool = False) -> None:
        self.path = path
        self.cdll = ctypes.CDLL(path)  # dlopen(RTLD_NOW | RTLD_LOCAL), as upstream; OSError = dlerror
        self.fns: dict[str, Any] = {}
        for name, (restype, argtypes) in PROTOTYPES.items():
            try:
                fn = getattr(self.cdll, name)
            except AttributeError:
                continue
            fn.restype = restype
            fn.argtypes = argtypes
            self.fns[name] = fn
        self._lock: Any = threading.Lock() if serial else None  # [aiges] wrapperThreadSafe = false

    def has(self, name: str) -> bool:
        return name in self.fns

    def missing(self, names: Iterable[str]) -> list[str]:
        return [n for n in names if n not in self.fns]

    def _call(self, name: str, *args: Any) -> Any:
        lock = self._lock
        if lock is None:
            return self.fns[name](*args)
        with lock:
            return self.fns[name](*args)

    # ---- the entry points (named as the symbols; see the class docstring)
    def wrapperSetCtrl(self, kind: int, fn: Any) -> int:
        return int(self._call("wrapperSetCtrl", kind, ctypes.cast(fn, c_void_p)))

    def wrapperInit(self, cfg: int) -> int:
        return int(self._call("wrapperInit", cfg))

    def wrapperFini(self) -> int:
        return int(self._call("wrapperFini"))

    def wrapperError(self, code: int) -> str:
        # not serialised: a pure lookup, and it may be asked from a callback while a call runs
        return _c_string(self.fns["wrapperError"](code) or 0)

    def wrapperVersion(self) -> str:
        return _c_string(self._call("wrapperVersion") or 0)

    def wrapperExec(self, tag: bytes, params: int, data: int, out: c_void_p) -> int:
        return int(self._call("wrapperExec", tag, params, data, ctypes.byref(out), None, 0))

    def wrapperExecFree(self, tag: bytes, out: c_void_p) -> int:
        return int(self._call("wrapperExecFree", tag, ctypes.byref(out)))

    def wrapperExecAsync(self, tag: int, params: int, data: int, cb: Any) -> int:
        # upstream always passes timeout 0; the host enforces the deadline itself
        return int(self._call("wrapperExecAsync", tag, params, data, cb, 0, None, 0))

    def wrapperCreate(self, tag: int, params: int, cb: Any, err: c_int) -> int:
        handle = self._call("wrapperCreate", tag, params, cb, None, 0, ctypes.byref(err))
        return int(handle or 0)

    def wrapperWrite(self, handle: int, data: int) -> int:
        return int(self._call("wrapperWrite", handle, data))

    def wrapperRead(self, handle: int, out: c_void_p) -> int:
        return int(self._call("wrapperRead", handle, ctypes.byref(out)))

    def wrapperDestroy(self, handle: int) -> int:
        return int(self._call("wrapperDestroy", handle))

