"""Owns the stderr pipe of a stdio MCP server: every line goes to the gateway's logs.

The SDK's ``stdio_client(errlog=...)`` needs a real file with a ``fileno()`` (mcp.md §4, §7.6).
We hand it the write end of an OS pipe and read the other end on a daemon thread, so a chatty
server can never block on a full pipe (upstream pipes stderr but never reads it).
"""

from __future__ import annotations

import os
import threading
from collections import deque
from typing import TextIO

import structlog

__all__ = ["StderrPump"]

_MAX_LINE = 4000
"""Longer lines are cut in the log: a server dumping a blob to stderr must not flood the logs."""


class StderrPump:
    """A pipe whose write end is a child's stderr and whose read end is logged line by line."""

    __slots__ = ("_read_fd", "_thread", "writer")

    def __init__(self, plugin: str, tail: deque[str] | None = None) -> None:
        read_fd, write_fd = os.pipe()
        self._read_fd = read_fd
        self.writer: TextIO = os.fdopen(write_fd, "w", encoding="utf-8", errors="replace")
        """Pass this as ``errlog``; the child inherits its fd."""
        log = structlog.get_logger(__name__).bind(plugin=plugin)
        self._thread = threading.Thread(
            target=_pump, args=(read_fd, log, tail), name=f"mcp-stderr-{plugin}", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Close our copy of the write end; the thread ends when the child's copy closes too."""
        try:
            self.writer.close()
        except OSError:
            pass


def _pump(read_fd: int, log: structlog.typing.FilteringBoundLogger, tail: deque[str] | None) -> None:
    with os.fdopen(read_fd, "r", encoding="utf-8", errors="replace") as stream:
        for line in stream:
            text = line.rstrip("\r\n")
            if text:
                log.info("mcp server stderr", line=text[:_MAX_LINE])
                if tail is not None:
                    # The last lines explain a failed start better than "Connection closed".
                    tail.append(text[:_MAX_LINE])
