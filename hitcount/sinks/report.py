"""The collector's reporter: every emitted second goes to the aggregator (or Redis), in order, once.

Owns: `ReportSink`, a record sink that only enqueues, and its sender task: batches when behind,
retries with capped exponential backoff, keeps a bounded memory queue that spills to the `Spool`,
and persists what is unsent at shutdown for the next start to send, oldest first.
Imports `records`, `spool`, `targets`. Must not block the caller (the ticker, on the event loop):
`__call__` appends to a deque; disk and network work happens in the sender task and its threads.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections import deque
from collections.abc import Callable

from ..records import Event, Record
from .spool import Item, Spool
from .targets import Rejected, Target, Unavailable

# Seconds kept in memory before the queue spills to disk: ten minutes of an outage, about 60 KB.
MEMORY_LIMIT = 600
# Seconds per request when catching up: an hour of one collector is one ~60 KB request.
MAX_BATCH = 3_600
# Backoff between failed attempts: from 0.1 s doubling to 5 s, with jitter so that a hundred
# collectors do not all hit a recovering aggregator in the same instant.
BACKOFF_FIRST = 0.1
BACKOFF_CAP = 5.0


class ReportSink:
    """Call it with each Record. `start()` runs the sender on the loop; `aclose()` flushes or spools.

    `run` is this process's boot nonce: the aggregator keys a value by (ts, server, run), so a
    restarted collector never replaces the value its predecessor reported for the same second,
    while its own backlog, re-sent after a restart, keeps the run it was recorded under.
    """

    def __init__(
        self,
        target: Target,
        spool: Spool,
        log: Callable[[Event], None],
        *,
        run: str | None = None,
        memory_limit: int = MEMORY_LIMIT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.target = target
        self.spool = spool
        self.run = run if run is not None else secrets.token_hex(4)
        self._log = log
        self._memory: deque[Item] = deque()
        self._memory_limit = memory_limit
        self._clock = clock
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._on_disk = spool.pending()
        self.sent = 0  # seconds acknowledged by the target
        self.failures = 0  # failed attempts
        self._failing = False

    def __call__(self, record: Record) -> None:
        self._memory.append((record.server, self.run, record.ts, record.count))
        self._wake.set()

    @property
    def pending(self) -> int:
        """Seconds waiting in memory (those on disk are not counted here)."""
        return len(self._memory)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="hitcount-report")
        if self._on_disk:
            self._wake.set()

    async def aclose(self, timeout: float) -> None:
        """Stop the sender, try to deliver everything within `timeout`, spool whatever is left."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        deadline = time.monotonic() + timeout
        try:
            while self._has_work() and time.monotonic() < deadline:
                left = deadline - time.monotonic()
                if not await asyncio.wait_for(self._step(), left):
                    break  # the target is down: no point retrying inside a shutdown
        except (asyncio.TimeoutError, OSError):
            pass
        unsent = list(self._memory)
        try:
            await asyncio.to_thread(self.spool.append, unsent)
        except OSError as exc:
            self._event("error", "report_lost", f"{len(unsent)} unsent seconds not saved: {exc}")
        else:
            if unsent:
                self._event("warning", "report_spooled", f"{len(unsent)} unsent seconds saved for next start")
        self._memory.clear()
        await self.target.close()

    # --- the sender ------------------------------------------------------------------------------

    async def _run(self) -> None:
        delay = BACKOFF_FIRST
        while True:
            if not self._has_work():
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                delivered = await self._step()
            except OSError as exc:  # the spool's disk is full or gone: keep the seconds in memory
                self._event("error", "report_spool_failed", f"cannot use {self.spool.path}: {exc}")
                delivered = False
            if delivered:
                delay = BACKOFF_FIRST
            else:
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, BACKOFF_CAP)

    def _has_work(self) -> bool:
        return self._on_disk or bool(self._memory)

    async def _step(self) -> bool:
        """One attempt at the oldest batch; True when it was delivered (or refused for good)."""
        if len(self._memory) > self._memory_limit:
            await self._spill()
        if self._on_disk:
            items, end = await asyncio.to_thread(self.spool.head, MAX_BATCH)
        else:
            items, end = [self._memory[i] for i in range(min(MAX_BATCH, len(self._memory)))], -1
        if items and not await self._deliver(items):
            return False
        if end >= 0:
            await asyncio.to_thread(self.spool.mark_sent, end)
            self._on_disk = await asyncio.to_thread(self.spool.pending)
        else:
            for _ in items:
                self._memory.popleft()
        return True

    async def _deliver(self, items: list[Item]) -> bool:
        try:
            await self.target.send(items)
        except Unavailable as exc:
            self.failures += 1
            if not self._failing:
                self._failing = True
                self._event("warning", "report_failed", f"cannot report: {exc}; retrying with backoff")
            return False
        except Rejected as exc:
            self._event("error", "report_rejected", f"target refused {len(items)} seconds: {exc}")
            return True
        if self._failing:
            self._failing = False
            self._event("info", "report_recovered", f"reporting again after {self.failures} failed attempts")
        self.sent += len(items)
        return True

    async def _spill(self) -> None:
        """Move the whole memory queue to the end of the spool: everything on disk stays older."""
        items = list(self._memory)
        await asyncio.to_thread(self.spool.append, items)
        for _ in items:
            self._memory.popleft()
        self._on_disk = True
        self._event("warning", "report_spilled", f"{len(items)} unsent seconds moved to {self.spool.path}")

    def _event(self, level: str, name: str, message: str) -> None:
        self._log(Event(self._clock(), level, name, message, {"sink": "report"}))
