"""Where the reporter sends seconds: an aggregator over HTTP, or Redis directly with the same scheme.

Owns: `HttpTarget` (a tiny keep-alive HTTP/1.1 client for PUT /logBatch), `RedisTarget`, `open_target`
and the two ways a send fails: `Unavailable` (retry later) and `Rejected` (the data itself is refused).
Imports `spool.Item`; the Redis target imports the aggregator's Redis store lazily (the `redis` extra).
Must not: block the event loop, or treat a refusal as success: a rejected batch is logged by the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any, Protocol
from urllib.parse import urlsplit

from .spool import Item

# Longest wait for one batch's answer before the connection is dropped and the batch retried.
REQUEST_TIMEOUT = 15.0
# The aggregator's default retention; a collector writing straight to Redis sets the same TTL.
REDIS_RETENTION = 3 * 86400
MAX_ANSWER_HEAD = 16 * 1024


class Unavailable(Exception):
    """The target could not take the batch now (down, timed out, 5xx): keep it and retry."""


class Rejected(Exception):
    """The target refused the batch as invalid (4xx): retrying the same bytes cannot succeed."""


class Target(Protocol):
    async def send(self, items: list[Item]) -> None: ...

    async def close(self) -> None: ...


def groups(items: list[Item]) -> Iterator[tuple[str, str, list[list[int]]]]:
    """Consecutive items of one (server, run) as one batch each, keeping the order."""
    key: tuple[str, str] | None = None
    counts: list[list[int]] = []
    for server, run, ts, n in items:
        if (server, run) != key and counts:
            assert key is not None
            yield key[0], key[1], counts
            counts = []
        key = (server, run)
        counts.append([ts, n])
    if counts and key is not None:
        yield key[0], key[1], counts


class HttpTarget:
    """PUT /logBatch on one keep-alive connection, reopened after any failure."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"report target must be http://HOST:PORT or redis://HOST:PORT/DB: {url!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.path = parts.path.rstrip("/") + "/logBatch"
        self._conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def send(self, items: list[Item]) -> None:
        for server, run, counts in groups(items):
            body = json.dumps({"server": server, "run": run, "counts": counts}, separators=(",", ":"))
            try:
                status, answer = await asyncio.wait_for(self._request(body.encode()), REQUEST_TIMEOUT)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
                await self.close()
                raise Unavailable(f"{type(exc).__name__}: {exc}".rstrip(": ")) from None
            if 400 <= status < 500 and status not in (408, 429):
                raise Rejected(f"{status}: {answer[:200]!r}")
            if status not in (200, 204):
                await self.close()
                raise Unavailable(f"HTTP {status}")

    async def _request(self, body: bytes) -> tuple[int, bytes]:
        if self._conn is None:
            self._conn = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._conn
        head = b"PUT %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n" % (
            self.path.encode(),
            self.host.encode(),
            self.port,
        )
        writer.write(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        if len(head) > MAX_ANSWER_HEAD:
            raise ValueError("answer head too large")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
        answer = await reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status, answer

    async def close(self) -> None:
        if self._conn is not None:
            writer = self._conn[1]
            self._conn = None
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


class RedisTarget:
    """Writes straight to Redis through the aggregator's store: the same keys, the same script."""

    def __init__(self, url: str, retention: int = REDIS_RETENTION) -> None:
        from ..aggregator.redis import RedisStore

        self.store = RedisStore(url, retention)

    async def send(self, items: list[Item]) -> None:
        from ..aggregator.store import BadInput, check_batch

        for server, run, counts in groups(items):
            now = time.time()
            try:
                batch = check_batch(server, run, counts, now)
            except BadInput as exc:
                raise Rejected(str(exc)) from None
            try:
                await self.store.put(batch, now)
            except Exception as exc:  # redis-py's ConnectionError, TimeoutError, BusyLoadingError...
                raise Unavailable(f"{type(exc).__name__}: {exc}") from None

    async def close(self) -> None:
        await self.store.close()


def open_target(url: str) -> Any:
    """`http://HOST:PORT` (an aggregator) or `redis://HOST:PORT/DB`; raises ValueError otherwise."""
    if url.startswith(("redis://", "rediss://", "unix://")):
        try:
            return RedisTarget(url)
        except ImportError:
            raise ValueError("--report-to redis:// needs redis-py: pip install 'hitcount[redis]'") from None
    return HttpTarget(url)
