"""The reporter and its spool at unit depth: a scripted target, a real spool file, the real loop."""

from __future__ import annotations

import asyncio
from pathlib import Path

from hitcount.records import Event, Record
from hitcount.sinks.report import ReportSink
from hitcount.sinks.spool import Item, Spool
from hitcount.sinks.targets import Rejected, Unavailable, groups


class Scripted:
    """A target that fails while `down` is set and records every delivered item otherwise."""

    def __init__(self) -> None:
        self.down = False
        self.reject_ts: set[int] = set()
        self.got: list[Item] = []
        self.calls = 0

    async def send(self, items: list[Item]) -> None:
        self.calls += 1
        if self.down:
            raise Unavailable("scripted outage")
        if any(i[2] in self.reject_ts for i in items):
            raise Rejected("scripted refusal")
        self.got += items

    async def close(self) -> None:
        pass


def rec(ts: int, n: int) -> Record:
    return Record(ts=ts, count=n, server="s")


async def until(cond: object, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond() and loop.time() < end:  # type: ignore[operator]
        await asyncio.sleep(0.01)


def test_spool_round_trip_and_torn_line(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "s.jsonl")
    assert not sp.pending() and sp.head(10) == ([], 0)
    sp.append([("a", "r", 1, 5), ("a", "r", 2, 6)])
    with open(sp.path, "a") as f:
        f.write('["a","r",3')  # a crash in the middle of an append
    sp.append([("a", "r", 4, 7)])
    items, end = sp.head(10)
    assert items == [("a", "r", 1, 5), ("a", "r", 2, 6), ("a", "r", 4, 7)] and sp.skipped == 1
    first, mid = sp.head(1)
    sp.mark_sent(mid)
    assert Spool(sp.path).head(10)[0] == items[1:]  # the offset survives a new process
    sp.mark_sent(end)
    assert not sp.path.exists() and not sp.offset_path.exists()


def test_groups_keep_order_and_split_by_writer() -> None:
    items = [("a", "1", 1, 1), ("a", "1", 2, 2), ("a", "2", 2, 3), ("a", "1", 3, 4)]
    assert list(groups(items)) == [("a", "1", [[1, 1], [2, 2]]), ("a", "2", [[2, 3]]), ("a", "1", [[3, 4]])]


async def test_outage_spills_to_disk_and_delivers_in_order(tmp_path: Path) -> None:
    target, events = Scripted(), []
    sink = ReportSink(target, Spool(tmp_path / "s.jsonl"), events.append, run="r", memory_limit=5)
    sink.start()
    target.down = True
    for ts in range(100, 130):
        sink(rec(ts, ts - 99))
        await asyncio.sleep(0.01)
    await until(lambda: sink.spool.pending())
    assert sink.pending <= 30 and sink.spool.pending()
    target.down = False
    await until(lambda: len(target.got) == 30)
    assert [i[2] for i in target.got] == list(range(100, 130))  # oldest first, once each
    assert not sink.spool.pending()
    names = [e.event for e in events]
    assert {"report_failed", "report_spilled", "report_recovered"} <= set(names)
    await sink.aclose(1.0)


async def test_close_while_down_persists_and_next_start_sends(tmp_path: Path) -> None:
    target, events = Scripted(), []
    target.down = True
    sink = ReportSink(target, Spool(tmp_path / "s.jsonl"), events.append, run="boot1")
    sink.start()
    for ts in range(10):
        sink(rec(1000 + ts, 3))
    await sink.aclose(0.5)
    target2 = Scripted()
    sink2 = ReportSink(target2, Spool(tmp_path / "s.jsonl"), events.append, run="boot2")
    sink2.start()
    sink2(rec(1009, 4))  # the new run's first second is the old run's partial last second
    await until(lambda: len(target2.got) == 11)
    assert target2.got[:10] == [("s", "boot1", 1000 + ts, 3) for ts in range(10)]
    assert target2.got[10] == ("s", "boot2", 1009, 4)
    await sink2.aclose(1.0)


async def test_rejected_batch_is_logged_not_retried_forever(tmp_path: Path) -> None:
    target, events = Scripted(), []
    target.reject_ts = {5}
    sink = ReportSink(target, Spool(tmp_path / "s.jsonl"), events.append, run="r")
    sink(rec(5, 1))
    sink.start()
    await until(lambda: any(e.event == "report_rejected" for e in events))
    sink(rec(6, 2))
    await until(lambda: len(target.got) == 1)
    assert target.got == [("s", "r", 6, 2)]
    await sink.aclose(1.0)
    assert isinstance(events[0], Event)
