"""What has been emitted, kept beside the counters so emission resumes exactly after a crash.

Owns: `Ledger` (persist each record's checkpoint, then hand it to the sink), `resume` (after a crash:
rebuild records the log lost, emit hits counted but never emitted, and pick the next second) and
`open_ticker`, the one way every mode (embedded, 1 worker, N workers) builds its ticker.
Imports `counter`, `records`, `ticker`. Must not: read clocks (times are passed in) or do I/O beyond
the shared memory; reading the log back is a callable handed in by the caller.
"""

from __future__ import annotations

import math
import os
import signal
import time
from collections.abc import Callable

from .counter import KIND_RECORD, KIND_START, Checkpoint, Slots
from .records import Event, Record
from .ticker import Seconds, Ticker, split

RecordSink = Callable[[Record], None]
EventSink = Callable[[Event], None]
# server id → the last second of that server in the record log; -1: the log has none; None: unknown.
LastLogged = Callable[[str], "int | None"]

# Test-only: at the Nth record the ledger SIGKILLs its own process between the checkpoint and the
# sink, to exercise the one window where a record is in the state file but not yet in the log.
CRASH_ENV = "HITCOUNT_TEST_CRASH_AT_RECORD"
# When the log holds no record of ours at all, only records this close to the crash are re-sent: the
# writer thread writes a line within milliseconds of its checkpoint, and an older record missing from
# a fresh log file was most likely rotated away, not lost.
REPAIR_WINDOW = 5


class Ledger:
    """The record path: checkpoint `(ts, running total)` in the state file first, then the sink.

    Order chosen so nothing is ever emitted twice: a crash after the checkpoint but before the line
    reaches the log loses the line from the log, and `resume` rebuilds it from the checkpoints.
    """

    def __init__(self, slots: Slots, sink: RecordSink, total: int) -> None:
        self.slots = slots
        self._sink = sink
        self.total = total
        crash = os.environ.get(CRASH_ENV, "")
        self._crash_after = int(crash) if crash.isdigit() else -1

    def emit(self, record: Record) -> None:
        self.total += record.count
        self.slots.checkpoint(record.ts, self.total, KIND_RECORD)
        if self._crash_after > 0:
            self._crash_after -= 1
            if self._crash_after == 0:
                os.kill(os.getpid(), signal.SIGKILL)
        self._sink(record)

    def resend(self, record: Record) -> None:
        """A record already checkpointed whose line never reached the sink."""
        self._sink(record)


def rebuild(points: list[Checkpoint], after: int, server: str) -> list[Record]:
    """Records checkpointed for seconds later than `after` (the log's last), recreated from the
    differences of consecutive checkpoints. A record whose predecessor fell out of the ring cannot be
    rebuilt and is skipped (the caller logs that)."""
    out = []
    for prev, cur in zip(points, points[1:], strict=False):
        if cur.kind == KIND_RECORD and cur.ts > after:
            out.append(Record(cur.ts, cur.total - prev.total, server, recovered=True))
    return out


def resume(
    slots: Slots, server: str, now: float, ledger: Ledger, log: EventSink, last_logged: LastLogged | None
) -> Seconds:
    """Bring the ledger up to date with the counters and return the bookkeeping to tick on from."""
    last = slots.last()
    total = slots.total()
    if last is None:  # a fresh state file: seconds before the start belong to nobody
        start = math.floor(now) - 1
    else:
        old = slots.server_id or server
        ledger.total = last.total
        _repair_log(slots, old, now, ledger, log, last_logged)
        start = _catch_up(slots, last, old, total, now, ledger, log)
        start = max(start, math.floor(now) - 1)
    slots.server_id = server
    slots.checkpoint(start, total, KIND_START)
    ledger.total = total
    return Seconds(server, now, total, last_ts=start)


def _repair_log(
    slots: Slots, server: str, now: float, ledger: Ledger, log: EventSink, last_logged: LastLogged | None
) -> None:
    """Re-send records that are checkpointed but missing from the log (crash in the ledger's window)."""
    logged = last_logged(server) if last_logged is not None else None
    points = slots.checkpoints()
    if logged is None or not points or logged >= points[-1].ts:
        return
    if logged < 0:  # a log with no line of ours (new, or rotated): only the crash window is owed
        logged = math.floor(slots.last_beat()) - REPAIR_WINDOW
    lost = rebuild(points, logged, server)
    for record in lost:
        ledger.resend(record)
    missing = [p.ts for p in points if p.kind == KIND_RECORD and p.ts > logged]
    if lost or missing:
        log(
            Event(
                now,
                "warning" if len(lost) == len(missing) else "error",
                "records_rebuilt",
                f"{len(lost)} record(s) were in the state file but not in the log; written again",
                {"seconds": [r.ts for r in lost], "not_rebuilt": len(missing) - len(lost)},
            )
        )


def _catch_up(
    slots: Slots, last: Checkpoint, server: str, total: int, now: float, ledger: Ledger, log: EventSink
) -> int:
    """Emit hits counted after the last checkpoint (a crash), spread over the seconds up to the last
    heartbeat. Returns the last second now closed."""
    died = math.floor(min(slots.last_beat(), now))
    hits = total - last.total
    if died <= last.ts and hits == 0:
        return last.ts  # a clean stop: nothing owed
    end = max(died, last.ts + 1)
    n = end - last.ts
    first = last.ts + 1
    for i, count in enumerate(split(hits, n)):
        ledger.emit(Record(first + i, count, server, spread=n, recovered=True))
    log(
        Event(
            now,
            "warning",
            "recovered",
            f"previous run stopped without closing its seconds; {hits} hits spread over seconds "
            f"{first}..{end} (up to its last heartbeat)",
            {"hits": hits, "first": first, "last": end, "last_heartbeat": slots.last_beat()},
        )
    )
    return end


def open_ticker(
    slots: Slots,
    server: str,
    emit: RecordSink,
    log: EventSink,
    *,
    clock: Callable[[], float] = time.time,
    last_logged: LastLogged | None = None,
    lag: float = 0.0,
) -> Ticker:
    """The ticker over `slots`, resumed from the slots' emitted state. Seconds are closed with each
    slot's own boundary mark where there is one (`Slots.total_at`); `lag` is how long after each
    boundary to wait for the marks (a supervisor's ticker; 0 in the process that counts)."""
    ledger = Ledger(slots, emit, slots.total())
    seconds = resume(slots, server, clock(), ledger, log, last_logged)
    return Ticker(seconds, slots.total, ledger.emit, log, clock=clock, read_at=slots.total_at, lag=lag)
