"""Collectors → aggregator → SQLite or Redis, end to end with real processes: exact totals, outages, restarts.

Every test compares GET /count with the hits the clients got 204s for, and with the collectors' own
combined.log (which is written whatever happens to the report target).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from .aggsupport import AggProc, Load, RedisServer, call, count, hits, wait_total
from .support import Proc, free_port, records


def collector(tmp: Path, name: str, target: str, *extra: str) -> Proc:
    d = tmp / name
    d.mkdir(exist_ok=True)
    return Proc(d, ["--report-to", target, "--server-id", name, "--state-dir", str(d / "state"), *extra])


def logged(procs: list[Proc]) -> int:
    return sum(r["count"] for p in procs for r in records(p.log))


def outage_seen(procs: list[Proc]) -> None:
    """Each collector's error log shows the target failing and then recovering (the test bit)."""
    for p in procs:
        names = [e["event"] for e in records(p.error_log)]
        assert "report_failed" in names and "report_recovered" in names, names


def test_three_collectors_exact_total_and_per_server(tmp_path: Path) -> None:
    agg = AggProc(tmp_path, f"sqlite:{tmp_path / 'counts.db'}").start()
    since = int(time.time()) - 1
    # c1 runs a supervisor and two workers: its records (the sum over workers) are reported the same way
    cols = [
        collector(tmp_path, f"c{i}", agg.url, *(["--workers", "2"] if i == 1 else [])).start()
        for i in range(3)
    ]
    try:
        for i, c in enumerate(cols):
            hits(c.port, 300 * (i + 1))
        time.sleep(1.2)  # let a second or two close while running, so not all arrives at shutdown
        for i, c in enumerate(cols):
            hits(c.port, 50 * (i + 1))
        for c in cols:
            assert c.stop() == 0
        until = int(time.time()) + 2
        doc = wait_total(agg.port, since, until, 2100)
        assert doc["total"] == 2100 == logged(cols)
        assert doc["servers"] == {"c0": 350, "c1": 700, "c2": 1050}
        assert sum(n for _, n in doc["series"]) == 2100
    finally:
        for c in cols:
            c.kill()
        agg.stop()


def test_aggregator_down_mid_load_loses_nothing(tmp_path: Path) -> None:
    agg = AggProc(tmp_path, f"sqlite:{tmp_path / 'counts.db'}").start()
    since = int(time.time()) - 1
    cols = [collector(tmp_path, f"c{i}", agg.url).start() for i in range(3)]
    loads = [Load(c.port) for c in cols]
    try:
        for ld in loads:
            ld.start()
        time.sleep(2)
        assert agg.stop() == 0
        time.sleep(5)  # collectors keep counting; their reporters retry with backoff
        agg.start()
        time.sleep(2)
        sent = sum(ld.finish() for ld in loads)
        for c in cols:
            assert c.stop() == 0
        doc = wait_total(agg.port, since, int(time.time()) + 2, sent)
        assert doc["total"] == sent == logged(cols)
        outage_seen(cols)
    finally:
        for c in cols:
            c.kill()
        agg.stop()


@pytest.mark.parametrize("route", ["aggregator", "direct"])
def test_redis_down_mid_load_loses_nothing(tmp_path: Path, route: str) -> None:
    redis = RedisServer(tmp_path / "redis").start()
    agg = AggProc(tmp_path, redis.url).start()
    since = int(time.time()) - 1
    target = agg.url if route == "aggregator" else redis.url
    cols = [collector(tmp_path, f"c{i}", target).start() for i in range(2)]
    loads = [Load(c.port) for c in cols]
    try:
        for ld in loads:
            ld.start()
        time.sleep(2)
        redis.stop()
        time.sleep(5)
        redis.start()
        time.sleep(2)
        sent = sum(ld.finish() for ld in loads)
        for c in cols:
            assert c.stop() == 0
        doc = wait_total(agg.port, since, int(time.time()) + 2, sent)
        assert doc["total"] == sent == logged(cols)
        assert set(doc["servers"]) == {"c0", "c1"}
        outage_seen(cols)
    finally:
        for c in cols:
            c.kill()
        agg.stop()
        redis.stop()


def test_collector_restarted_with_backlog_on_disk(tmp_path: Path) -> None:
    port = free_port()  # the aggregator's port; nothing listens there during the first run
    c = collector(tmp_path, "c0", f"http://127.0.0.1:{port}")
    since = int(time.time()) - 1
    c.start()
    hits(c.port, 400)
    time.sleep(1.5)
    hits(c.port, 100)
    assert c.stop() == 0
    spool = tmp_path / "c0" / "state" / "report-spool.jsonl"
    spooled = [json.loads(line) for line in spool.read_text().splitlines()]
    assert sum(item[3] for item in spooled) == 500  # every second went to disk at shutdown
    assert [item[2] for item in spooled] == sorted(item[2] for item in spooled)
    agg = AggProc(tmp_path, f"sqlite:{tmp_path / 'counts.db'}", port=port).start()
    try:
        c.start()  # same server id, same state dir: sends the backlog first, then its own seconds
        hits(c.port, 70)
        assert c.stop() == 0
        doc = wait_total(agg.port, since, int(time.time()) + 2, 570)
        assert doc["total"] == 570 == logged([c])
        assert doc["servers"] == {"c0": 570}
        assert not spool.exists()
    finally:
        c.kill()
        agg.stop()


def test_count_without_since_is_the_last_complete_second(tmp_path: Path) -> None:
    agg = AggProc(tmp_path, f"sqlite:{tmp_path / 'counts.db'}").start()
    try:
        doc = count(agg.port, 0, 0)
        assert doc == {"since": 0, "until": 0, "total": 0, "series": []}
        before = int(time.time())
        status, doc = call(agg.port, "GET", "/count")
        assert status == 200 and doc["until"] - doc["since"] == 1
        assert before - 1 <= doc["since"] <= int(time.time()) - 1
    finally:
        agg.stop()


def test_two_aggregators_share_one_redis(tmp_path: Path) -> None:
    """The aggregator keeps no state with Redis: write through one, read the same totals from another."""
    redis = RedisServer(tmp_path / "redis").start()
    a = AggProc(tmp_path, redis.url).start()
    b = AggProc(tmp_path, redis.url).start()
    since = int(time.time()) - 1
    cols = [collector(tmp_path, "c0", a.url).start(), collector(tmp_path, "c1", b.url).start()]
    try:
        hits(cols[0].port, 120)
        hits(cols[1].port, 80)
        for c in cols:
            assert c.stop() == 0
        until = int(time.time()) + 2
        doc_a = wait_total(a.port, since, until, 200)
        doc_b = count(b.port, since, until, by_server=True)
        assert doc_a == doc_b and doc_a["servers"] == {"c0": 120, "c1": 80}
    finally:
        for c in cols:
            c.kill()
        a.stop()
        b.stop()
        redis.stop()
