"""The embedded store: one SQLite file in WAL mode, written by one thread, read by another.

Owns: `SqliteStore`, its schema (counts per writer, totals per second and per server-minute kept up to
date by triggers) and the retention sweep. Imports `store` only (and the stdlib `sqlite3`).
Must not: touch SQLite on the event loop: every call runs on the store's writer or reader thread.
Durable means: the transaction is committed with `synchronous=FULL`, so the WAL is fsynced before
`put` returns, and an acknowledged write survives a crash of the process or of the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from .store import Batch, Window, keep_recent

T = TypeVar("T")

# The per-second and per-minute sums are maintained by triggers in the same transaction as the write:
# an insert adds the new value, a replacement adds (new - old), an identical repeat adds nothing. So a
# read never sums servers, and a retried write can never count twice.
SCHEMA = """
CREATE TABLE IF NOT EXISTS counts (
    ts INTEGER NOT NULL, server TEXT NOT NULL, run TEXT NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY (ts, server, run)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS totals (ts INTEGER PRIMARY KEY, count INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS minutes (
    minute INTEGER NOT NULL, server TEXT NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY (minute, server)
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS counts_added AFTER INSERT ON counts BEGIN
    INSERT INTO totals (ts, count) VALUES (NEW.ts, NEW.count)
        ON CONFLICT (ts) DO UPDATE SET count = count + excluded.count;
    INSERT INTO minutes (minute, server, count) VALUES (NEW.ts / 60, NEW.server, NEW.count)
        ON CONFLICT (minute, server) DO UPDATE SET count = count + excluded.count;
END;
CREATE TRIGGER IF NOT EXISTS counts_replaced AFTER UPDATE OF count ON counts
WHEN NEW.count != OLD.count BEGIN
    UPDATE totals SET count = count + NEW.count - OLD.count WHERE ts = NEW.ts;
    UPDATE minutes SET count = count + NEW.count - OLD.count
        WHERE minute = NEW.ts / 60 AND server = NEW.server;
END;
"""
UPSERT = (
    "INSERT INTO counts (ts, server, run, count) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (ts, server, run) DO UPDATE SET count = excluded.count"
)
# The sweep deletes at most this many seconds per transaction, so a first sweep after a long stop
# does not hold the writer (and every waiting PUT) for one huge delete.
SWEEP_STEP = 3_600
# How often the sweep runs, at most; retention is kept in whole minutes.
SWEEP_EVERY = 60.0


class SqliteStore:
    """Per-second counts in a SQLite file. Safe to restart: the file is the whole state."""

    def __init__(self, path: str, retention: int, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.retention = retention
        self._clock = clock
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="sqlite-reader")
        self._local = threading.local()
        self._sweeper: asyncio.Task[None] | None = None
        self._swept = 0  # the oldest second that may still be stored (0: not swept yet)

    async def open(self) -> None:
        await self._on(self._writer, self._create)
        await self.sweep()
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def put(self, batch: Batch, now: float) -> int:
        batch = keep_recent(batch, self.retention, now)
        if batch.counts:
            await self._on(self._writer, self._write, batch)
        return len(batch.counts)

    async def window(self, since: int, until: int, by_server: bool) -> Window:
        return await self._on(self._reader, self._read, since, until, by_server)

    async def sweep(self) -> int:
        """Delete the whole minutes that are older than the retention; returns rows deleted."""
        cutoff = (int(self._clock()) - self.retention) // 60 * 60
        return await self._on(self._writer, self._delete_before, cutoff)

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        for pool in (self._writer, self._reader):
            await asyncio.get_running_loop().run_in_executor(pool, self._disconnect)
            pool.shutdown(wait=True)

    # --- on the store's threads ------------------------------------------------------------------

    async def _on(self, pool: ThreadPoolExecutor, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            self._local.db = db
        return db

    def _disconnect(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    def _create(self) -> None:
        self._db().executescript(SCHEMA)

    def _write(self, batch: Batch) -> None:
        db = self._db()
        rows = [(ts, batch.server, batch.run, n) for ts, n in batch.counts]
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(UPSERT, rows)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _delete_before(self, cutoff: int) -> int:
        db = self._db()
        (oldest,) = db.execute("SELECT min(ts) FROM totals").fetchone()
        deleted = 0
        start = oldest if oldest is not None else cutoff
        while start < cutoff:
            step = min(start + SWEEP_STEP, cutoff)
            with db:
                db.execute("BEGIN IMMEDIATE")
                deleted += db.execute("DELETE FROM counts WHERE ts < ?", (step,)).rowcount
                db.execute("DELETE FROM totals WHERE ts < ?", (step,))
                db.execute("DELETE FROM minutes WHERE minute < ?", (step // 60,))
            start = step
        return deleted

    def _read(self, since: int, until: int, by_server: bool) -> Window:
        db = self._db()
        series = db.execute(
            "SELECT ts, count FROM totals WHERE ts >= ? AND ts < ? ORDER BY ts", (since, until)
        ).fetchall()
        total = sum(n for _, n in series)
        servers = self._per_server(db, since, until) if by_server else None
        return Window(since, until, total, series, servers)

    def _per_server(self, db: sqlite3.Connection, since: int, until: int) -> dict[str, int]:
        """Whole minutes from the minute sums, the ragged edges from the per-second rows."""
        first, last = -(-since // 60), until // 60  # the whole minutes inside [since, until)
        spans = [(since, until)] if first >= last else [(since, first * 60), (last * 60, until)]
        out: dict[str, int] = {}
        sql = "SELECT server, sum(count) FROM counts WHERE ts >= ? AND ts < ? GROUP BY server"
        for lo, hi in spans:
            for server, n in db.execute(sql, (lo, hi)):
                out[server] = out.get(server, 0) + n
        if first < last:
            sql = "SELECT server, sum(count) FROM minutes WHERE minute >= ? AND minute < ? GROUP BY server"
            for server, n in db.execute(sql, (first, last)):
                out[server] = out.get(server, 0) + n
        return {s: n for s, n in sorted(out.items()) if n}

    async def _sweep_forever(self) -> None:
        every = min(SWEEP_EVERY, max(1.0, self.retention / 4))
        while True:
            await asyncio.sleep(every)
            # A busy or full disk: the rows stay a little longer; the next sweep retries.
            with contextlib.suppress(sqlite3.Error):
                await self.sweep()
