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
from itertools import accumulate
from typing import Any

from aiges.wire.pb import aiges_inner_pb2 as pb

PARAM = struct.Struct("@PPIP")  # key, value, vlen, next
DATA = struct.Struct("@PPIiiPP")  # key, data, len, type, status, desc, next
MAX_ITEMS = 100_000  # a longer output list is taken for a cycle (a node pointing back)
MAX_LEN = 0xFFFFFFFF  # len and vlen are unsigned int


class ParamList(ctypes.Structure):
    # value is a char* like key; read as a plain pointer so exactly vlen bytes are copied
    _fields_ = [("key", c_char_p), ("value", c_void_p), ("vlen", c_uint), ("next", c_void_p)]


class DataList(ctypes.Structure):
    _fields_ = [("key", c_char_p), ("data", c_void_p), ("len", c_uint), ("type", c_int), ("status", c_int),
                ("desc", c_void_p), ("next", c_void_p)]


if ctypes.sizeof(ParamList) != PARAM.size or ctypes.sizeof(DataList) != DATA.size:  # pragma: no cover
    raise ImportError("aiges C host: struct layouts disagree between ctypes and struct on this platform")

# int (*wrapperCallback)(const void* usrTag, pDataList respData, int ret)
CALLBACK = CFUNCTYPE(c_int, c_void_p, c_void_p, c_int)
NO_CALLBACK = CALLBACK()  # a NULL wrapperCallback: wrapperCreate of a session read with wrapperRead

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


def build(params: Mapping[str, str] | None = None, items: Iterable[pb.RequestData] | None = None) -> Block:
    """A ParamList of ``params`` and/or a DataList of ``items`` (each item's desc a ParamList).

    Layout of the buffer: the DataList nodes, the ParamList nodes (params, then each item's
    desc), then every string and data block in that order, each followed by a NUL byte."""
    plist = [(k.encode(), v.encode()) for k, v in params.items()] if params is not None else None
    ilist = list(items) if items is not None else None
    descs = [[(k.encode(), v.encode()) for k, v in d.desc.items()] for d in ilist] if ilist else []
    n_data = max(1, len(ilist)) if ilist is not None else 0
    n_param = max(1, len(plist)) if plist is not None else 0
    n_desc = sum(max(1, len(x)) for x in descs)
    parts: list[bytes] = []
    for k, v in plist or ():
        parts += (k, v)
    for d, desc in zip(ilist or (), descs, strict=True):
        parts += (d.key.encode(), d.data)
        for k, v in desc:
            parts += (k, v)
    nodes = n_data * DATA.size + (n_param + n_desc) * PARAM.size
    buf = bytearray(nodes)
    buf += b"\0".join(parts)
    buf += b"\0"
    base = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    at = list(accumulate([len(x) + 1 for x in parts], initial=base + nodes))  # where each part starts
    pack_param, pack_data = PARAM.pack_into, DATA.pack_into
    i = 0  # index into parts / at
    node = n_data * DATA.size  # the next ParamList node
    p_addr = 0
    if plist is not None:
        p_addr = base + node
        for j, (_k, v) in enumerate(plist):
            pack_param(buf, node, at[i], at[i + 1], len(v), base + node + PARAM.size if j + 1 < len(plist) else 0)
            node += PARAM.size
            i += 2
        if not plist:
            node += PARAM.size  # one zeroed node: an empty list, as upstream passes it
    for j, (d, desc) in enumerate(zip(ilist or (), descs, strict=True)):
        key_at, data_at = at[i], at[i + 1]
        i += 2
        desc_addr = base + node
        for m, (_k, v) in enumerate(desc):
            pack_param(buf, node, at[i], at[i + 1], len(v), base + node + PARAM.size if m + 1 < len(desc) else 0)
            node += PARAM.size
            i += 2
        if not desc:
            node += PARAM.size
        nxt = base + (j + 1) * DATA.size if j + 1 < len(descs) else 0
        pack_data(buf, j * DATA.size, key_at, data_at, len(d.data), d.type, d.status, desc_addr, nxt)
    return Block(buf, p_addr, base if ilist is not None else 0)


class BadOutput(ValueError):
    """An output list the host cannot read safely (data NULL with len > 0, a cycle)."""


def _text(raw: bytes | None) -> str:
    return raw.decode("utf-8", "replace") if raw else ""


def _c_string(addr: int) -> str:
    return ctypes.string_at(addr).decode("utf-8", "replace") if addr else ""


def read_desc(addr: int) -> dict[str, str]:
    out: dict[str, str] = {}
    n = 0
    while addr:
        n += 1
        if n > MAX_ITEMS:
            raise BadOutput(f"a desc list longer than {MAX_ITEMS} nodes (a node pointing back?)")
        p = ParamList.from_address(addr)
        if p.key:  # (an empty list's head node has none)
            value = p.value
            out[_text(p.key)] = _text(ctypes.string_at(value, p.vlen) if value and p.vlen else
                                      ctypes.string_at(value) if value else b"")
        addr = p.next or 0
    return out


def read_list(addr: int, into: Any) -> None:
    """Copy a DataList the library owns into proto items (keys, data, desc; type and status),
    appended to ``into`` (a Response's ``list``).  A node with neither key nor data is an empty
    list's head node, as upstream builds them: skipped."""
    add = into.add
    n = 0
    while addr:
        n += 1
        if n > MAX_ITEMS:
            raise BadOutput(f"an output list longer than {MAX_ITEMS} items (a node pointing back?)")
        d = DataList.from_address(addr)
        key, data, length = d.key, d.data, d.len
        if length and not data:
            raise BadOutput(f"output item {_text(key)!r} has len {length} but data NULL")
        if key or length:
            item = add(key=_text(key), data=ctypes.string_at(data, length) if length else b"", len=length,
                       type=d.type, status=d.status)
            if d.desc:
                item.desc.update(read_desc(d.desc))
        addr = d.next or 0


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
        # the same library (dlopen counts references) through functions that keep the GIL: for
        # wrapperExecFree only, see there
        held = ctypes.PyDLL(path)
        self.fns: dict[str, Any] = {}
        for name, (restype, argtypes) in PROTOTYPES.items():
            try:
                fn = getattr(held if name == "wrapperExecFree" else self.cdll, name)
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
        # Called with the GIL held: it only frees what wrapperExec returned, and releasing the GIL
        # for a microsecond costs a thread hand-off per request under load (a quarter of a C echo
        # engine's throughput, measured).  Safe from deadlock: in the mode that uses it (asyncMode
        # = false) the library has no pointer into Python, so nothing it waits for needs the GIL.
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

