"""Second arithmetic and the ticker that closes each wall-clock second exactly once.

Owns: `split` (the missed-tick rule), `Seconds` (pure bookkeeping: which second comes next, what the
counter read last) and `Ticker` (the coroutine that wakes at each boundary). Imports `records` only.
Must not: do I/O (records and events go to callbacks) or add up sleeps: every deadline is computed
from the wall clock and re-checked on waking, because timers fire early and clocks step.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable

from .records import Event, Record

# Longest single sleep. A timer runs on the monotonic clock, so after a wall-clock step we notice the
# new time within this long at most.
MAX_NAP = 1.0


def split(total: int, n: int) -> list[int]:
    """Divide `total` hits evenly over `n` seconds, oldest first; the sum is exactly `total`.

    Rule: every second gets `total // n`; the remainder `total % n` goes one hit each to the
    *earliest* seconds. So 10 hits over 4 seconds is [3, 3, 2, 2].
    """
    if n < 1:
        raise ValueError("n must be at least 1")
    base, rest = divmod(total, n)
    return [base + 1] * rest + [base] * (n - rest)


class Seconds:
    """Which seconds have been emitted and what the counter read at the last emission. No clock.

    `last_ts` is the last second emitted; the next record is always `last_ts + 1`, so no second is
    emitted twice and none is skipped. Times are epoch seconds (UTC) as floats.
    """

    __slots__ = ("server", "last_ts", "last_total", "last_now")

    def __init__(self, server: str, now: float, total: int, last_ts: int | None = None) -> None:
        self.server = server
        # Seconds before the start belong to nobody; the first record is the (partial) start second.
        self.last_ts = math.floor(now) - 1 if last_ts is None else last_ts
        self.last_total = total
        self.last_now = now

    def deadline(self) -> float:
        """The wall time at which the next second (`last_ts + 1`) ends and can be closed."""
        return float(self.last_ts + 2)

    def close(self, now: float, total: int) -> tuple[list[Record], list[Event]]:
        """Emit every second that has ended by `now`, given the counter's running `total`."""
        events: list[Event] = []
        if now < self.last_now:
            events.append(self._stepped_back(now))
        self.last_now = now
        end = math.floor(now) - 1  # the last second that has fully ended
        if end <= self.last_ts:
            return [], events  # an early wake, or a clock that went back: nothing has ended yet
        records = self._emit(end, total, now, partial=False)
        if len(records) > 1:
            events.append(self._missed(records, now))
        return records, events

    def finish(self, now: float, total: int) -> tuple[list[Record], list[Event]]:
        """Close what has ended, then the current second as a partial record (at shutdown)."""
        records, events = self.close(now, total)
        ts = max(math.floor(now), self.last_ts + 1)
        records += self._emit(ts, total, now, partial=True)
        return records, events

    def _emit(self, end: int, total: int, now: float, partial: bool) -> list[Record]:
        n = end - self.last_ts
        parts = split(total - self.last_total, n)
        first = self.last_ts + 1
        records = [
            Record(
                ts=first + i,
                count=c,
                server=self.server,
                late_ms=max(0.0, (now - (first + i + 1)) * 1000.0) if not partial else 0.0,
                spread=n,
                partial=partial,
            )
            for i, c in enumerate(parts)
        ]
        self.last_ts = end
        self.last_total = total
        return records

    def _missed(self, records: list[Record], now: float) -> Event:
        first, last = records[0].ts, records[-1].ts
        late = now - (first + 1)
        hits = sum(r.count for r in records)
        return Event(
            now,
            "warning",
            "missed_ticks",
            f"ticker woke {late:.3f} s late; {hits} hits spread evenly over seconds {first}..{last}",
            {
                "missed": len(records) - 1,
                "late_s": round(late, 6),
                "first": first,
                "last": last,
                "hits": hits,
            },
        )

    def _stepped_back(self, now: float) -> Event:
        step = self.last_now - now
        return Event(
            now,
            "warning",
            "clock_stepped_back",
            f"wall clock stepped back {step:.3f} s; hits from now on go to second {self.last_ts + 1}, "
            "the next one not yet emitted",
            {"step_s": round(step, 6), "next_ts": self.last_ts + 1},
        )


class Ticker:
    """Wakes at each wall-clock second boundary, reads the running total and emits what has ended.

    Clock, sleep and the counter are injected so tests drive time by hand. `emit` and `log` must not
    block (sinks hand lines to a writer thread).
    """

    def __init__(
        self,
        seconds: Seconds,
        read_total: Callable[[], int],
        emit: Callable[[Record], None],
        log: Callable[[Event], None],
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        read_at: Callable[[int], int] | None = None,
        lag: float = 0.0,
    ) -> None:
        self.seconds = seconds
        self._read_total = read_total
        # `read_at(S)`: the total as second S began (counter.Slots.total_at), for closing seconds;
        # `lag`: wake this long after each boundary, so the workers have written their marks for S.
        self._read_at = read_at or (lambda ts: read_total())
        self._lag = lag
        self._emit = emit
        self._log = log
        self._clock = clock
        self._sleep = sleep
        self.finished = False

    async def run(self) -> None:
        """Tick until cancelled. Deadlines come from the wall clock; an early wake re-arms."""
        while True:
            self.tick()  # on an early wake this emits nothing, but still notices a clock step
            delay = self.seconds.deadline() + self._lag - self._clock()
            if delay > 0:
                await self._sleep(min(delay, MAX_NAP))

    def tick(self) -> None:
        now = self._clock()
        # Never below what an earlier second already took (a slot that fell back to its live total).
        total = max(self._read_at(math.floor(now)), self.seconds.last_total)
        self._deliver(*self.seconds.close(now, total))

    def finish(self) -> None:
        """Emit the partial current second; call once, after the last hit has been counted."""
        if self.finished:
            return
        self.finished = True
        now = self._clock()
        self._deliver(*self.seconds.finish(now, self._read_total()))

    def _deliver(self, records: list[Record], events: list[Event]) -> None:
        for event in events:
            self._log(event)
        for record in records:
            self._emit(record)
