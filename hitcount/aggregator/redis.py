"""The shared store: Redis (or a Redis Cluster's key design) through redis-py's asyncio client.

Owns: `RedisStore`, the key layout and the Lua write script. Imports `store` and redis-py.
Must not: use INCRBY-style writes from the client: redis-py retries a command after a connection error,
so every write is an absolute value per (second, writer) and the sums change only by (new - old),
inside one atomic script. A retry, or a whole batch sent three times, therefore counts once.

Keys, all of one minute M = ts // 60 sharing the hash tag {ns:M} so one script call stays in one slot:
  {ns:M}:s:<ts>  hash  writer ("server run") -> that writer's count for second ts
  {ns:M}:t       hash  ts -> the total of all writers for that second
  {ns:M}:v       hash  server -> that server's total over the minute
Every key of the minute gets EXPIREAT (M+1)*60 + retention (absolute, so setting it again is a no-op).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from .store import Batch, Window, keep_recent

# Tagging by minute rather than by second: all collectors write the current second at once, so either
# way one slot takes the current writes; a minute tag lets one script update the second's writer hash
# and the minute's sums atomically, and a 3-day read needs 4,320 HGETALLs instead of 259,200 GETs.
MINUTE = 60
# Commands per pipeline round trip on reads (Redis' pipelining guide suggests batches of ~10k).
PIPELINE_CHUNK = 5_000
# Retries of a failed connection inside one request: enough to ride out a blip, short enough that a
# dead Redis turns into a 503 (and a collector-side retry) within about a second.
RETRIES = 3

WRITE = """
local field, server, at = ARGV[1], ARGV[2], ARGV[3]
local moved = 0
for i = 3, #KEYS do
  local ts, new = ARGV[2 * i - 2], tonumber(ARGV[2 * i - 1])
  local prev = redis.call('HGET', KEYS[i], field)
  local old = tonumber(prev or '0')
  if new ~= old or not prev then
    redis.call('HSET', KEYS[i], field, ARGV[2 * i - 1])
    redis.call('HINCRBY', KEYS[1], ts, string.format('%d', new - old))
    moved = moved + (new - old)
  end
  redis.call('EXPIREAT', KEYS[i], at)
end
if moved ~= 0 then redis.call('HINCRBY', KEYS[2], server, string.format('%d', moved)) end
redis.call('EXPIREAT', KEYS[1], at)
redis.call('EXPIREAT', KEYS[2], at)
return 0
"""


def writer_field(server: str, run: str) -> str:
    """The hash field of one writer: the server id, and the run (boot nonce) when there is one."""
    return f"{server} {run}" if run else server


class RedisStore:
    """Per-second counts in Redis. The aggregator keeps no state, so several may share one Redis."""

    def __init__(self, url: str, retention: int, namespace: str = "hc") -> None:
        self.url = url
        self.retention = retention
        self.ns = namespace
        self.client: Any = aioredis.Redis.from_url(
            url,
            socket_timeout=5.0,
            socket_connect_timeout=2.0,
            retry=Retry(ExponentialWithJitterBackoff(cap=0.5, base=0.05), RETRIES),
        )
        self._write = self.client.register_script(WRITE)

    def key(self, minute: int, suffix: str) -> str:
        return f"{{{self.ns}:{minute}}}:{suffix}"

    async def open(self) -> None:
        await self.client.ping()

    async def put(self, batch: Batch, now: float) -> int:
        batch = keep_recent(batch, self.retention, now)
        if not batch.counts:
            return 0
        field = writer_field(batch.server, batch.run)
        async with self.client.pipeline(transaction=False) as pipe:
            for minute, items in _by_minute(batch.counts):
                keys = [self.key(minute, "t"), self.key(minute, "v")]
                keys += [self.key(minute, f"s:{ts}") for ts, _ in items]
                args: list[str | int] = [field, batch.server, (minute + 1) * MINUTE + self.retention]
                for ts, n in items:
                    args += [ts, n]
                await self._write(keys=keys, args=args, client=pipe)
            await pipe.execute()
        return len(batch.counts)

    async def window(self, since: int, until: int, by_server: bool) -> Window:
        series: list[tuple[int, int]] = []
        if until > since:
            minutes = range(since // MINUTE, (until - 1) // MINUTE + 1)
            for found in await self._hgetall([self.key(m, "t") for m in minutes]):
                series += [(int(ts), int(n)) for ts, n in found.items() if since <= int(ts) < until]
        series.sort()
        total = sum(n for _, n in series)
        servers = await self._per_server(since, until) if by_server else None
        return Window(since, until, total, series, servers)

    async def _per_server(self, since: int, until: int) -> dict[str, int]:
        """Whole minutes from the minute sums; the ragged edges from the per-second writer hashes."""
        first, last = -(-since // MINUTE), until // MINUTE
        if first >= last:
            edges = list(range(since, until))
        else:
            edges = [*range(since, first * MINUTE), *range(last * MINUTE, until)]
        out: dict[str, int] = {}
        keys = [self.key(ts // MINUTE, f"s:{ts}") for ts in edges]
        for found in await self._hgetall(keys):
            for field, n in found.items():
                server = field.decode().split(" ", 1)[0]
                out[server] = out.get(server, 0) + int(n)
        keys = [self.key(m, "v") for m in range(first, last)]
        for found in await self._hgetall(keys):
            for server_b, n in found.items():
                server = server_b.decode()
                out[server] = out.get(server, 0) + int(n)
        return {s: n for s, n in sorted(out.items()) if n}

    async def _hgetall(self, keys: list[str]) -> list[dict[bytes, bytes]]:
        out: list[dict[bytes, bytes]] = []
        for start in range(0, len(keys), PIPELINE_CHUNK):
            async with self.client.pipeline(transaction=False) as pipe:
                for key in keys[start : start + PIPELINE_CHUNK]:
                    pipe.hgetall(key)
                out += await pipe.execute()
        return out

    async def close(self) -> None:
        await self.client.aclose()


def _by_minute(counts: tuple[tuple[int, int], ...]) -> Iterator[tuple[int, list[tuple[int, int]]]]:
    """Sorted (ts, count) items grouped into runs of the same minute."""
    items: list[tuple[int, int]] = []
    minute = -1
    for ts, n in counts:
        if ts // MINUTE != minute and items:
            yield minute, items
            items = []
        minute = ts // MINUTE
        items.append((ts, n))
    if items:
        yield minute, items
