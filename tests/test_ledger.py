"""The state file and crash recovery at unit depth: Slots layout, checkpoints, resume, rebuild."""

from __future__ import annotations

from pathlib import Path

import pytest

from hitcount.counter import KIND_RECORD, KIND_START, RING, Slots, StateFileError
from hitcount.ledger import Ledger, open_ticker, rebuild, resume
from hitcount.records import Event, Record

T0 = 1_700_000_000


def collect() -> tuple[list[Record], list[Event], Ledger, Slots]:
    out: list[Record] = []
    ev: list[Event] = []
    slots = Slots.anonymous(2)
    return out, ev, Ledger(slots, out.append, 0), slots


def test_slots_file_survives_reopen_and_grows(tmp_path: Path) -> None:
    path = str(tmp_path / "slots")
    s = Slots.open(path, 2)
    s.counter(0).add(5)
    s.counter(1).add(7)
    s.checkpoint(T0, 12, KIND_RECORD)
    s.server_id = "host:1"
    s.close()
    s = Slots.open(path, 4)  # more workers this time: old totals stay
    assert len(s) == 4 and s.total() == 12
    assert s.last() == (T0, 12, KIND_RECORD) and s.server_id == "host:1"
    s.counter(3).add(1)
    s.close()
    s = Slots.open(path, 1)  # fewer: slots are never dropped
    assert len(s) == 4 and s.total() == 13
    s.close()


def test_not_a_state_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "slots"
    path.write_bytes(b"x" * 4096)
    with pytest.raises(StateFileError):
        Slots.open(str(path))


def test_checkpoint_ring_keeps_the_last_ring_entries() -> None:
    s = Slots.anonymous(1)
    for i in range(RING + 10):
        s.checkpoint(T0 + i, i, KIND_RECORD)
    points = s.checkpoints()
    assert len(points) == RING
    assert [p.ts for p in points] == list(range(T0 + 10, T0 + RING + 10))


def test_fresh_resume_starts_at_the_current_second() -> None:
    out, ev, ledger, slots = collect()
    seconds = resume(slots, "s", T0 + 0.5, ledger, ev.append, None)
    assert seconds.last_ts == T0 - 1 and out == [] and ev == []
    assert slots.last() == (T0 - 1, 0, KIND_START)


def test_clean_stop_then_resume_emits_nothing_old() -> None:
    out, ev, ledger, slots = collect()
    slots.counter(0).add(10)
    slots.checkpoint(T0 + 3, 10, KIND_RECORD)  # the final partial record covered everything
    slots.beat(0, T0 + 3.2)
    seconds = resume(slots, "s", T0 + 20.5, ledger, ev.append, None)
    assert out == [] and ev == []
    assert seconds.last_ts == T0 + 19  # downtime seconds belong to nobody


def test_crash_spreads_unemitted_hits_up_to_the_last_heartbeat() -> None:
    out, ev, ledger, slots = collect()
    slots.counter(0).add(100)
    slots.checkpoint(T0, 90, KIND_RECORD)
    slots.counter(1).add(10)  # 20 hits counted after the last emitted second
    slots.beat(1, T0 + 3.7)
    seconds = resume(slots, "s", T0 + 60.2, ledger, ev.append, None)
    assert [(r.ts, r.count, r.recovered, r.spread) for r in out] == [
        (T0 + 1, 7, True, 3),
        (T0 + 2, 7, True, 3),
        (T0 + 3, 6, True, 3),
    ]
    assert ev[0].event == "recovered" and ev[0].fields["hits"] == 20
    assert seconds.last_ts == T0 + 59 and seconds.last_total == 110
    assert slots.last() == (T0 + 59, 110, KIND_START)


def test_recovered_records_keep_the_old_server_id() -> None:
    out, ev, ledger, slots = collect()
    slots.server_id = "old:1"
    slots.checkpoint(T0, 0, KIND_RECORD)
    slots.counter(0).add(4)
    slots.beat(0, T0 + 1.5)
    resume(slots, "new:2", T0 + 9, ledger, ev.append, None)
    assert [r.server for r in out] == ["old:1"]
    assert slots.server_id == "new:2"


def test_rebuild_recreates_records_missing_from_the_log() -> None:
    s = Slots.anonymous(1)
    s.checkpoint(T0 - 1, 0, KIND_START)
    for i, total in enumerate([3, 8, 8, 20]):
        s.checkpoint(T0 + i, total, KIND_RECORD)
    lost = rebuild(s.checkpoints(), T0 + 1, "s")
    assert [(r.ts, r.count) for r in lost] == [(T0 + 2, 0), (T0 + 3, 12)]


def test_resume_repairs_the_log_then_catches_up() -> None:
    out, ev, ledger, slots = collect()
    slots.checkpoint(T0 - 1, 0, KIND_START)
    slots.counter(0).add(30)
    slots.checkpoint(T0, 10, KIND_RECORD)
    slots.checkpoint(T0 + 1, 25, KIND_RECORD)  # checkpointed, but the log stops at T0
    slots.beat(0, T0 + 2.1)
    resume(slots, "s", T0 + 9, ledger, ev.append, lambda server: T0)
    assert [(r.ts, r.count) for r in out] == [(T0 + 1, 15), (T0 + 2, 5)]
    assert [e.event for e in ev] == ["records_rebuilt", "recovered"]


def test_one_ticker_path_counts_exactly_over_slots() -> None:
    out: list[Record] = []
    now = [T0 + 0.25]
    slots = Slots.anonymous(2)
    ticker = open_ticker(slots, "s", out.append, lambda e: None, clock=lambda: now[0])
    slots.counter(0).add(3)
    slots.counter(1).add(4)
    now[0] = T0 + 1.01
    ticker.tick()
    slots.counter(1).add(5)
    now[0] = T0 + 1.5
    ticker.finish()
    assert [(r.ts, r.count, r.partial) for r in out] == [(T0, 7, False), (T0 + 1, 5, True)]
    assert slots.last() == (T0 + 1, 12, KIND_RECORD)
