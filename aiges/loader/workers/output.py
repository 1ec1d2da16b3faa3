"""A plugin's stderr lines as log records: a Python traceback is ONE record, at ERROR.

A wrapper thread's uncaught exception (``threading.excepthook``), ``traceback.print_exc()`` or an
exception Python ignores (``__del__``) reach stderr as a dozen lines; logged one by one at INFO
they read as noise and no error count sees them.  :class:`TracebackJoiner` collects them from the
header (``Traceback (most recent call last):``, ``Exception in thread ...:``) through the frames
to the exception line, chained tracebacks included, and hands back the block; every other line
passes through unchanged.  The caller flushes an open block when no line came for a moment
(``JOIN_WAIT``), so a traceback at the very end of the output is not held back.
"""
from __future__ import annotations

import asyncio

TRACEBACK = "Traceback (most recent call last):"
HEADS = (TRACEBACK, "Exception in thread ", "Exception ignored in")
CHAINED = ("During handling of the above exception, another exception occurred:",
           "The above exception was the direct cause of the following exception:")
JOIN_WAIT = 0.2  # seconds without a line after which an open traceback is complete


class TracebackJoiner:
    """``feed(line)`` -> finished items, each ``(is_traceback, text)``; ``flush()`` ends an open block."""

    def __init__(self) -> None:
        self.block: list[str] = []
        self.state = "idle"  # idle | frames (inside a traceback) | ended (after its exception line)

    @property
    def open(self) -> bool:
        return bool(self.block)

    def feed(self, line: str) -> list[tuple[bool, str]]:
        if self.state == "idle":
            if line.startswith(HEADS) or line.lstrip(" +|").startswith("Exception Group Traceback"):
                self.block, self.state = [line], "frames"
                return []
            return [(False, line)]
        if self.state == "frames":
            self.block.append(line)
            if line and not line[0].isspace() and not line.startswith(HEADS) and line not in CHAINED:
                self.state = "ended"  # "ValueError: ...": the exception line
            return []
        # ended: a chained traceback may follow (a blank line, then one of CHAINED)
        if not line.strip():
            self.block.append(line)
            return []
        if line in CHAINED:
            self.block.append(line)
            self.state = "frames"
            return []
        return self.flush() + self.feed(line)

    def flush(self) -> list[tuple[bool, str]]:
        text = "\n".join(self.block).rstrip()
        self.block, self.state = [], "idle"
        return [(True, text)] if text else []


async def read_line(stream: asyncio.StreamReader, wait: float | None) -> bytes | None:
    """The next line (b"" at the end), or None when ``wait`` seconds passed without one (the
    buffered part of a line stays in the stream)."""
    if wait is None:
        return await stream.readline()
    try:
        return await asyncio.wait_for(stream.readline(), wait)
    except asyncio.TimeoutError:
        return None
