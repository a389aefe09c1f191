"""Operational counters shared by every process of one server, and their Prometheus text form.

Owns: `Board` (rows of 64-bit counters in shared memory: row 0 for the ticking process, one row per
worker; each row has one writer) and `render` (the `/metrics` page: sums over rows). Imports nothing
of ours but `counter` for the hit totals.
Must not: be written per request on the hit path (hits are the counter slots); only per connection,
per refusal and per second.
"""

from __future__ import annotations

import mmap
import os
import sys

from .counter import Slots

WORD = 8
# Columns of a row. Gauges are summed over rows like counters (each worker holds its own part).
CONNECTIONS = 0  # gauge: open client connections
NOT_FOUND = 1  # requests answered 404
NOT_ALLOWED = 2  # requests answered 405
RECORDS = 3  # per-second records emitted (ticking row)
MISSED = 4  # seconds that were closed late and spread (missed ticks)
CLOCK_STEPS = 5  # backward wall-clock steps seen by the ticker
REPORT_PENDING = 6  # gauge: seconds not yet accepted by --report-to
REPORT_ERRORS = 7  # failed report attempts
WORKER_RESTARTS = 8
DRAINING = 9  # gauge: 1 while this process is draining (shutting down)
# Refusals by reason; every kind the protocol refuses maps to one of these (unknown: "other").
REFUSALS = (
    "bad_request",
    "body_on_get",
    "body_too_large",
    "head_too_large",
    "http_version",
    "over_limit_concurrency",
    "timeout",
    "too_many_headers",
    "transfer_coding",
    "url_too_long",
    "other",
)
REFUSED0 = 16
COLUMNS = REFUSED0 + len(REFUSALS)
ROW_WORDS = 32  # room to grow; 256 bytes per row, so two writers never share a cache line
assert COLUMNS <= ROW_WORDS
REFUSAL_COLUMN = {kind: REFUSED0 + i for i, kind in enumerate(REFUSALS)}


class Board:
    """`rows` rows of counters in shared memory (anonymous, or a file every process maps)."""

    __slots__ = ("_buf", "view", "rows")

    def __init__(self, buf: mmap.mmap) -> None:
        self._buf = buf
        self.view = memoryview(buf).cast("Q")
        self.rows = len(self.view) // ROW_WORDS

    @classmethod
    def anonymous(cls, rows: int) -> Board:
        return cls(mmap.mmap(-1, max(rows, 1) * ROW_WORDS * WORD))

    @classmethod
    def open(cls, path: str, rows: int) -> Board:
        """Map (creating or growing) the board file; gauges start at zero in every run."""
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            size = max(rows, 1) * ROW_WORDS * WORD
            if os.fstat(fd).st_size < size:
                os.ftruncate(fd, size)
            return cls(mmap.mmap(fd, os.fstat(fd).st_size))
        finally:
            os.close(fd)

    def add(self, row: int, column: int, n: int = 1) -> None:
        self.view[row * ROW_WORDS + column] += n

    def set(self, row: int, column: int, value: int) -> None:
        self.view[row * ROW_WORDS + column] = max(value, 0)

    def refuse(self, row: int, kind: str) -> None:
        self.add(row, REFUSAL_COLUMN.get(kind, REFUSAL_COLUMN["other"]))

    def reset_gauges(self, row: int) -> None:
        """A process taking over `row` (a restarted worker) starts with no connections of its own."""
        for column in (CONNECTIONS, DRAINING, REPORT_PENDING):
            self.set(row, column, 0)

    def sum(self, column: int) -> int:
        return sum(self.view[r * ROW_WORDS + column] for r in range(self.rows))

    def close(self) -> None:
        self.view.release()
        self._buf.close()


def render(board: Board, slots: Slots, version: str, loop: str, workers: int) -> bytes:
    """The Prometheus text exposition (format 0.0.4) of one server, summed over its processes."""
    py = sys.version.split()[0]
    s = board.sum
    lines = [
        _metric("hitcount_hits_total", "counter", "Hits counted on the hit path.", slots.total()),
        "# HELP hitcount_http_requests_total Requests answered, by route and status (hits are 204).",
        "# TYPE hitcount_http_requests_total counter",
        f'hitcount_http_requests_total{{route="log",code="204"}} {slots.total()}',
        f'hitcount_http_requests_total{{route="log",code="405"}} {s(NOT_ALLOWED)}',
        f'hitcount_http_requests_total{{route="other",code="404"}} {s(NOT_FOUND)}',
        "# HELP hitcount_rejected_requests_total Requests or connections refused, by reason.",
        "# TYPE hitcount_rejected_requests_total counter",
        *(f'hitcount_rejected_requests_total{{reason="{k}"}} {s(REFUSAL_COLUMN[k])}' for k in REFUSALS),
        _metric("hitcount_connections_active", "gauge", "Open client connections.", s(CONNECTIONS)),
        _metric("hitcount_records_emitted_total", "counter", "Per-second records emitted.", s(RECORDS)),
        _metric(
            "hitcount_missed_ticks_total", "counter", "Seconds closed late and spread evenly.", s(MISSED)
        ),
        _metric("hitcount_clock_steps_back_total", "counter", "Backward wall-clock steps.", s(CLOCK_STEPS)),
        _metric(
            "hitcount_report_pending_records",
            "gauge",
            "Seconds not yet accepted by the --report-to target.",
            s(REPORT_PENDING),
        ),
        _metric("hitcount_report_errors_total", "counter", "Failed attempts to report.", s(REPORT_ERRORS)),
        _metric(
            "hitcount_worker_restarts_total", "counter", "Worker processes replaced.", s(WORKER_RESTARTS)
        ),
        _metric("hitcount_workers", "gauge", "Worker processes configured.", workers),
        "# HELP hitcount_build_info Build and runtime information.",
        "# TYPE hitcount_build_info gauge",
        f'hitcount_build_info{{version="{version}",python="{py}",loop="{loop}"}} 1',
    ]
    return ("\n".join(lines) + "\n").encode()


def _metric(name: str, kind: str, text: str, value: int) -> str:
    return f"# HELP {name} {text}\n# TYPE {name} {kind}\n{name} {value}"
