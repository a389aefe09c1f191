"""The stores at unit depth: SQLite with an injected clock (sweep, restart), Redis keys and TTLs."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis

from hitcount.aggregator.redis import RedisStore
from hitcount.aggregator.sqlite import SqliteStore
from hitcount.aggregator.store import Batch, open_store

from .aggsupport import RedisServer

T0 = 1_800_000_000  # a minute boundary


async def test_sqlite_survives_restart_and_sweeps_whole_minutes(tmp_path: Path) -> None:
    now = [T0 + 30.0]
    store = SqliteStore(str(tmp_path / "c.db"), 120, clock=lambda: now[0])
    await store.open()
    await store.put(Batch("a", "", ((T0 - 60, 1), (T0, 2), (T0 + 29, 3))), now[0])
    await store.close()
    store = SqliteStore(str(tmp_path / "c.db"), 120, clock=lambda: now[0])
    await store.open()
    w = await store.window(T0 - 90, T0 + 30, True)
    assert (w.total, w.servers) == (6, {"a": 6})
    now[0] = T0 + 121.0  # T0 - 60 is past the retention; its minute is swept, T0's is kept
    assert await store.sweep() == 1
    w = await store.window(T0 - 60, T0 + 60, True)
    assert w.series == [(T0, 2), (T0 + 29, 3)] and w.servers == {"a": 5}
    await store.close()


async def test_redis_keys_share_a_minute_tag_and_expire_absolutely(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis").start()
    try:
        store = RedisStore(server.url, 3600)
        now = time.time()
        t = int(now) - 100
        await store.put(Batch("a", "r1", ((t, 4),)), now)
        await store.put(Batch("a", "r1", ((t, 4),)), now)
        r = redis.Redis(port=server.port)
        m = t // 60
        keys = sorted(k.decode() for k in r.keys("*"))
        assert keys == sorted([f"{{hc:{m}}}:t", f"{{hc:{m}}}:v", f"{{hc:{m}}}:s:{t}"])
        for k in keys:
            assert r.expiretime(k) == (m + 1) * 60 + 3600
        assert r.hgetall(f"{{hc:{m}}}:s:{t}") == {b"a r1": b"4"}
        assert r.hget(f"{{hc:{m}}}:t", str(t)) == b"4"
        await store.put(Batch("a", "", ((int(now) - 4000, 9),)), now)  # past the retention: dropped
        assert len(r.keys("*")) == 3
        await store.close()
        r.close()
    finally:
        server.stop()


def test_open_store_refuses_unknown_urls() -> None:
    with pytest.raises(ValueError, match="unknown store"):
        open_store("mysql://x", 10)
    with pytest.raises(ValueError, match="needs a path"):
        open_store("sqlite:", 10)
