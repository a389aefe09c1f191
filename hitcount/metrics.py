"""Operational counters shared by every process of one server, and their Prometheus text form.

Owns: `Board` (rows of 64-bit counters in shared memory: row 0 for the ticking process, one row per
worker; each row has one writer) and `render` (the `/metrics` page: sums over rows). Imports only
`counter` (the hit totals) and `records` (events that are also counted).
Must not: be written per request on the hit path (hits are the counter slots); only per connection,
per refusal and per second.
"""

from __future__ import annotations

import mmap
import os
import sys
from collections.abc import Callable

from .counter import Slots
from .records import Event

WORD = 8
# Columns of a row. Gauges are summed over rows like counters (each process holds its own part).
CONNECTIONS = 0  # gauge: open client connections (published by the process's heartbeat, 10 times a second)
RECORDS = 1  # per-second records emitted (ticking row)
MISSED = 2  # seconds that were closed late and spread (missed ticks)
CLOCK_STEPS = 3  # backward wall-clock steps seen by the ticker
REPORT_PENDING = 4  # gauge: seconds waiting in memory for --report-to
REPORT_SPOOLED = 5  # gauge: bytes of seconds spooled to disk for --report-to, not yet accepted
REPORT_ERRORS = 6  # failed report attempts
WORKER_RESTARTS = 7
DRAINING = 8  # row 0 only: 1 once the server is shutting down (/readyz answers 503 everywhere)
# Refusals by reason (the `kind` of Site.refuse); a kind not listed here is counted as "other".
REFUSALS = (
    "bad_target",
    "body_on_get",
    "body_too_large",
    "head_too_large",
    "http_version",
    "malformed",
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
GAUGES = (CONNECTIONS, REPORT_PENDING, REPORT_SPOOLED, DRAINING)
# Events of the error log that are also counted: event name -> (column, field holding the amount).
COUNTED_EVENTS = {
    "missed_ticks": (MISSED, "missed"),
    "clock_stepped_back": (CLOCK_STEPS, ""),
    "worker_restarted": (WORKER_RESTARTS, ""),
}
BOARD_NAME = "board"  # the file beside the slots in the state directory
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


class Board:
    """`rows` rows of counters in shared memory (anonymous, or a file every process maps).

    Row 0 belongs to the ticking process (the single process, or the supervisor), row i+1 to worker
    i. Each row has one writer; readers sum columns over rows. An aligned 8-byte store is atomic on
    the platforms we run on, so a reader never sees a torn word.
    """

    __slots__ = ("_buf", "view", "rows")

    def __init__(self, buf: mmap.mmap) -> None:
        self._buf = buf
        self.view = memoryview(buf).cast("Q")
        self.rows = len(self.view) // ROW_WORDS

    @classmethod
    def anonymous(cls, rows: int) -> Board:
        return cls(mmap.mmap(-1, max(rows, 1) * ROW_WORDS * WORD))

    @classmethod
    def open(cls, path: str, rows: int = 0) -> Board:
        """Map (creating or growing to `rows` rows) the board file. Counters persist across runs, like
        the hit totals; the server resets the gauges at startup (`reset_gauges`)."""
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

    def get(self, row: int, column: int) -> int:
        return int(self.view[row * ROW_WORDS + column])

    def refuse(self, row: int, kind: str) -> None:
        self.add(row, REFUSAL_COLUMN.get(kind, REFUSAL_COLUMN["other"]))

    def observe(self, row: int, event: Event) -> None:
        """Count an error-log event that is also a metric (missed ticks, clock steps, restarts)."""
        counted = COUNTED_EVENTS.get(event.event)
        if counted is not None:
            column, field = counted
            self.add(row, column, int(event.fields.get(field, 1)) if field else 1)

    def reset_gauges(self, row: int | None = None) -> None:
        """Zero the gauges of `row` (a restarted worker), or of every row (a new run)."""
        for r in range(self.rows) if row is None else (row,):
            for column in GAUGES:
                self.set(r, column, 0)

    @property
    def draining(self) -> bool:
        """The server is shutting down: every process answers /readyz with 503."""
        return self.get(0, DRAINING) != 0

    def drain(self) -> None:
        self.set(0, DRAINING, 1)

    def sum(self, column: int) -> int:
        return sum(self.view[r * ROW_WORDS + column] for r in range(self.rows))

    def close(self) -> None:
        self.view.release()
        self._buf.close()


def observing(board: Board, row: int, log: Callable[[Event], None]) -> Callable[[Event], None]:
    """`log`, counting on `board` the events that are also metrics."""

    def observe(event: Event) -> None:
        board.observe(row, event)
        log(event)

    return observe


def render(board: Board, slots: Slots, version: str, loop: str, workers: int) -> bytes:
    """The Prometheus text exposition (format 0.0.4) of one server, summed over its processes."""
    py = sys.version.split()[0]
    s = board.sum
    lines = [
        _metric("hitcount_hits_total", "counter", "Hits counted (each answered 204).", slots.total()),
        _metric(
            "hitcount_missed_ticks_total", "counter", "Seconds closed late and spread evenly.", s(MISSED)
        ),
        _metric("hitcount_clock_steps_back_total", "counter", "Backward wall-clock steps.", s(CLOCK_STEPS)),
        _metric("hitcount_records_emitted_total", "counter", "Per-second records emitted.", s(RECORDS)),
        _metric("hitcount_connections_active", "gauge", "Open client connections.", s(CONNECTIONS)),
        "# HELP hitcount_rejected_requests_total Requests or connections refused, by reason.",
        "# TYPE hitcount_rejected_requests_total counter",
        *(f'hitcount_rejected_requests_total{{reason="{k}"}} {s(REFUSAL_COLUMN[k])}' for k in REFUSALS),
        _metric(
            "hitcount_report_pending_records",
            "gauge",
            "Seconds waiting in memory to be reported to --report-to.",
            s(REPORT_PENDING),
        ),
        _metric(
            "hitcount_report_spool_bytes",
            "gauge",
            "Bytes of seconds spooled to disk, not yet accepted by --report-to.",
            s(REPORT_SPOOLED),
        ),
        _metric("hitcount_report_errors_total", "counter", "Failed attempts to report.", s(REPORT_ERRORS)),
        _metric(
            "hitcount_worker_restarts_total", "counter", "Worker processes replaced.", s(WORKER_RESTARTS)
        ),
        _metric("hitcount_workers", "gauge", "Worker processes configured (1: single process).", workers),
        "# HELP hitcount_build_info Build and runtime information.",
        "# TYPE hitcount_build_info gauge",
        f'hitcount_build_info{{version="{version}",python="{py}",loop="{loop}"}} 1',
    ]
    return ("\n".join(lines) + "\n").encode()


def _metric(name: str, kind: str, text: str, value: int) -> str:
    return f"# HELP {name} {text}\n# TYPE {name} {kind}\n{name} {value}"
