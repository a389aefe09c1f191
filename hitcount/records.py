"""The per-second record and the error-log event, and their one-line JSON forms.

Owns: `Record`, `Event`, `to_line`. Imports nothing of ours.
Must not: do I/O or read clocks; callers pass every time in.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Record:
    """The count of one wall-clock second (epoch seconds, UTC) for one server.

    `late_ms` is how long after the second's end the ticker read the counter; `spread` is the number of
    seconds one reading was divided over (1 normally; more after a stall, see `ticker.split`);
    `partial` marks the last record of a run, closed early at shutdown; `recovered` marks seconds
    rebuilt after a crash from the state directory.
    """

    ts: int
    count: int
    server: str
    late_ms: float = 0.0
    spread: int = 1
    partial: bool = False
    recovered: bool = False

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "ts": self.ts,
            "count": self.count,
            "server": self.server,
            "late_ms": round(self.late_ms, 3),
        }
        if self.spread != 1:
            d["spread"] = self.spread
        if self.partial:
            d["partial"] = True
        if self.recovered:
            d["recovered"] = True
        return d


@dataclass(frozen=True, slots=True)
class Event:
    """One line of the error log: a warning or error with its facts as fields."""

    time: float
    level: str
    event: str
    message: str
    fields: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "time": round(self.time, 6),
            "level": self.level,
            "event": self.event,
            "message": self.message,
            **self.fields,
        }


# Event levels by severity (--log-level names them; config.LOG_LEVELS lists the same names).
LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


def to_line(item: Record | Event) -> str:
    """The JSON-lines form: one object, no spaces, one trailing newline."""
    return json.dumps(item.as_dict(), separators=(",", ":")) + "\n"
