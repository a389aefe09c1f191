"""What every aggregator store promises, the validated write (`Batch`), the read answer (`Window`).

Owns: the `Store` protocol, `Batch`, `Window`, the input limits, `open_store` (URL → store).
Imports nothing of ours outside the aggregator; the concrete stores are imported lazily so the SQLite
default never needs redis-py.
Must not: do I/O itself. Validation here is pure, so the HTTP layer and the collectors share it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

# A count is stored as a signed 64-bit integer in SQLite and applied as a difference in Redis (Lua
# numbers are doubles, exact up to 2**53): 2**53 hits in one second is far beyond any collector.
MAX_COUNT = 2**53
# One batch is one catch-up request: 86,400 items is a whole day of one collector's seconds.
MAX_ITEMS = 86_400
# A timestamp this far ahead of the aggregator's clock is a bug (ms instead of s), not clock skew.
MAX_FUTURE = 3_600
# A server id names a collector in keys and JSON; printable, no spaces, bounded.
SERVER_RE = re.compile(r"[!-~]{1,200}")
# A run id (the collector's boot nonce) separates one process's seconds from its predecessor's.
RUN_RE = re.compile(r"[A-Za-z0-9_.-]{0,64}")


class BadInput(ValueError):
    """A client's mistake in a write or a query: answered 400 with this message, nothing stored."""


@dataclass(frozen=True, slots=True)
class Batch:
    """Seconds of one writer: `server` (the collector) and `run` (its boot nonce, may be empty).

    `counts` holds (ts, count) with distinct ts, sorted. The key of a stored value is
    (ts, server, run); writing it again replaces it, so a retry changes nothing.
    """

    server: str
    run: str
    counts: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class Window:
    """The answer to a read over [since, until): the total, the seconds that have data, per server."""

    since: int
    until: int
    total: int
    series: list[tuple[int, int]]
    servers: dict[str, int] | None = None


class Store(Protocol):
    """A place for per-second counts. Writes are idempotent; `put` returns once they are durable."""

    retention: int

    async def open(self) -> None: ...

    async def put(self, batch: Batch, now: float) -> int:
        """Store `batch`; returns how many items were kept (older than the retention: dropped)."""
        ...

    async def window(self, since: int, until: int, by_server: bool) -> Window: ...

    async def close(self) -> None: ...


def check_batch(server: object, run: object, counts: object, now: float) -> Batch:
    """Validate a write from any source; raises BadInput naming the first problem."""
    if not isinstance(server, str) or not SERVER_RE.fullmatch(server):
        raise BadInput("server must be 1-200 printable characters without spaces")
    if not isinstance(run, str) or not RUN_RE.fullmatch(run):
        raise BadInput("run must be at most 64 characters of A-Z a-z 0-9 _ . -")
    if not isinstance(counts, list) or not counts:
        raise BadInput("counts must be a non-empty list of [timestamp, count]")
    if len(counts) > MAX_ITEMS:
        raise BadInput(f"at most {MAX_ITEMS} counts per batch")
    latest = int(now) + MAX_FUTURE
    seen: dict[int, int] = {}
    for item in counts:
        if not (isinstance(item, list | tuple) and len(item) == 2):
            raise BadInput("each count must be [timestamp, count]")
        ts, n = item
        if not _is_int(ts) or not 0 <= ts <= latest:
            raise BadInput(f"timestamp must be whole epoch seconds, not after now+{MAX_FUTURE}: {ts!r}")
        if not _is_int(n) or not 0 <= n < MAX_COUNT:
            raise BadInput(f"count must be a whole number from 0 to 2**53-1: {n!r}")
        if ts in seen and seen[ts] != n:
            raise BadInput(f"timestamp {ts} appears twice with different counts")
        seen[ts] = n
    return Batch(server, run, tuple(sorted(seen.items())))


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def keep_recent(batch: Batch, retention: int, now: float) -> Batch:
    """Drop seconds already past the retention: they would be deleted (or expire) at once."""
    oldest = int(now) - retention
    kept = tuple(item for item in batch.counts if item[0] >= oldest)
    return batch if len(kept) == len(batch.counts) else Batch(batch.server, batch.run, kept)


def open_store(url: str, retention: int) -> Store:
    """`sqlite:PATH` or `redis://HOST:PORT/DB` → an unopened store; raises ValueError otherwise."""
    if url.startswith("sqlite:"):
        path = url[len("sqlite:") :]
        if path.startswith("//"):
            path = path[2:]
        if not path:
            raise ValueError("sqlite store needs a path: sqlite:PATH")
        from .sqlite import SqliteStore

        return SqliteStore(path, retention)
    if url.startswith(("redis://", "rediss://", "unix://")):
        try:
            from .redis import RedisStore
        except ImportError:
            raise ValueError("the redis store needs redis-py: pip install 'hitcount[redis]'") from None
        return RedisStore(url, retention)
    raise ValueError(f"unknown store {url!r}: use sqlite:PATH or redis://HOST:PORT/DB")
