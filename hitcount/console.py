"""The operator's lines on stderr: the startup line, stopping, startup and usage errors.

Owns: `Console` (one line per message, `--log-format text` as `hitcount: message` or `json` as a JSON
line with time, level and event; messages below `--log-level` are dropped). Imports `records`.
Must not: write the error log (events go to their sink) or be used on the hit path.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any

from .records import LEVELS, Event, to_line


class Console:
    """`say(message, level)`: one flushed line on stderr, if `level` is at least the configured one."""

    def __init__(self, level: str = "info", fmt: str = "text", stream: IO[str] | None = None) -> None:
        self.least = LEVELS[level]
        self.fmt = fmt
        self._stream = stream

    def say(self, message: str, level: str = "error", event: str = "message", **fields: Any) -> None:
        if LEVELS[level] < self.least:
            return
        stream = self._stream or sys.stderr
        if self.fmt == "json":
            stream.write(to_line(Event(time.time(), level, event, message, fields)))
        else:
            stream.write(f"hitcount: {message}\n")
        stream.flush()

    def __call__(self, message: str, level: str = "error") -> None:
        self.say(message, level)
