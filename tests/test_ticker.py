"""Second arithmetic and the ticker, with an injected clock: no real time passes in these tests."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hitcount.records import Event, Record
from hitcount.ticker import MAX_NAP, Seconds, Ticker, split

T0 = 1_700_000_000  # an arbitrary whole epoch second


def test_split_rule_earliest_seconds_take_the_remainder() -> None:
    assert split(10, 4) == [3, 3, 2, 2]
    assert split(3, 5) == [1, 1, 1, 0, 0]
    assert split(0, 3) == [0, 0, 0]
    assert split(7, 1) == [7]
    with pytest.raises(ValueError):
        split(1, 0)


@given(st.integers(0, 10**12), st.integers(1, 5000))
def test_split_is_exact_and_even(total: int, n: int) -> None:
    parts = split(total, n)
    assert len(parts) == n and sum(parts) == total
    assert max(parts) - min(parts) <= 1
    assert parts == sorted(parts, reverse=True)


def test_first_record_is_the_start_second_and_aligned() -> None:
    s = Seconds("a", T0 + 0.4, total=0)
    assert s.deadline() == T0 + 1
    recs, evs = s.close(T0 + 1.0005, 12)
    assert [(r.ts, r.count) for r in recs] == [(T0, 12)] and evs == []
    assert recs[0].late_ms == pytest.approx(0.5, abs=1e-3)
    assert s.deadline() == T0 + 2


def test_early_wake_emits_nothing() -> None:
    s = Seconds("a", T0 + 0.2, total=0)
    assert s.close(T0 + 0.999, 5) == ([], [])
    recs, _ = s.close(T0 + 1.001, 9)
    assert [(r.ts, r.count) for r in recs] == [(T0, 9)]


def test_stall_of_3_5_seconds_spreads_evenly_and_logs() -> None:
    s = Seconds("a", T0 + 0.1, total=0)
    s.close(T0 + 1.0, 100)  # second T0 = 100
    recs, evs = s.close(T0 + 4.5, 100 + 1001)  # woke 3.5 s late: seconds T0+1 .. T0+3 ended
    assert [r.ts for r in recs] == [T0 + 1, T0 + 2, T0 + 3]
    assert [r.count for r in recs] == [334, 334, 333] and sum(r.count for r in recs) == 1001
    assert all(r.spread == 3 for r in recs)
    (ev,) = evs
    assert ev.event == "missed_ticks" and ev.fields["missed"] == 2
    assert ev.fields["late_s"] == pytest.approx(2.5)
    assert ev.fields["hits"] == 1001


def test_clock_stepping_back_never_repeats_a_second() -> None:
    s = Seconds("a", T0 + 0.5, total=0)
    recs, _ = s.close(T0 + 2.01, 10)  # T0 and T0+1
    assert [r.ts for r in recs] == [T0, T0 + 1]
    recs, evs = s.close(T0 - 5.0, 15)  # the clock jumped 7 s back
    assert recs == [] and [e.event for e in evs] == ["clock_stepped_back"]
    assert evs[0].fields["next_ts"] == T0 + 2
    recs, evs = s.close(T0 + 1.5, 20)  # still before the end of T0+2: nothing, no new warning
    assert recs == [] and evs == []
    recs, _ = s.close(T0 + 3.0, 30)  # the hits since T0+1 all go to T0+2, the next unemitted second
    assert [(r.ts, r.count) for r in recs] == [(T0 + 2, 20)]


def test_clock_stepping_forward_is_missed_seconds() -> None:
    s = Seconds("a", T0 + 0.5, total=0)
    recs, evs = s.close(T0 + 11.2, 100)
    assert [r.ts for r in recs] == list(range(T0, T0 + 11))
    assert sum(r.count for r in recs) == 100 and evs[0].event == "missed_ticks"


def test_finish_emits_the_partial_second_once() -> None:
    s = Seconds("a", T0 + 0.5, total=0)
    s.close(T0 + 1.0, 4)
    recs, _ = s.finish(T0 + 1.3, 10)
    assert [(r.ts, r.count, r.partial) for r in recs] == [(T0 + 1, 6, True)]
    recs, _ = s.finish(T0 + 1.4, 10)  # a second finish may only go forward
    assert [(r.ts, r.count) for r in recs] == [(T0 + 2, 0)]


def test_finish_after_clock_went_back_uses_next_unemitted_second() -> None:
    s = Seconds("a", T0 + 0.5, total=0)
    s.close(T0 + 3.0, 3)
    recs, _ = s.finish(T0 - 100.0, 8)
    assert [(r.ts, r.count) for r in recs] == [(T0 + 3, 5)]


def test_resume_from_a_known_last_second() -> None:
    s = Seconds("a", T0 + 10.5, total=50, last_ts=T0 + 5)
    recs, evs = s.close(T0 + 11.0, 150)
    assert [r.ts for r in recs] == list(range(T0 + 6, T0 + 11))
    assert sum(r.count for r in recs) == 100 and evs[0].event == "missed_ticks"


class FakeTime:
    """A wall clock and a sleep that only advance when the ticker sleeps; can wake early or late."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.naps: list[float] = []
        self.skew: list[float] = []  # added to the next naps (negative: an early wake)

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.naps.append(delay)
        self.now += delay + (self.skew.pop(0) if self.skew else 0.0)
        await asyncio.sleep(0)


async def _run_ticker(ft: FakeTime, totals: list[int], seconds: int) -> tuple[list[Record], list[Event]]:
    recs: list[Record] = []
    evs: list[Event] = []
    ticker = Ticker(
        Seconds("a", ft.now, 0),
        lambda: totals[0],
        recs.append,
        evs.append,
        clock=ft.clock,
        sleep=ft.sleep,
    )
    task = asyncio.create_task(ticker.run())
    while not recs or recs[-1].ts < T0 + seconds - 1:
        totals[0] += 1
        await asyncio.sleep(0)
    task.cancel()
    return recs, evs


async def test_ticker_sleeps_to_wall_clock_deadlines_and_rearms_after_an_early_wake() -> None:
    ft = FakeTime(T0 + 0.25)
    ft.skew = [-0.3, 0.0, 0.0]  # the first timer fires 0.3 s early
    recs, evs = await _run_ticker(ft, [0], 3)
    assert [r.ts for r in recs] == [T0, T0 + 1, T0 + 2]
    assert ft.naps[0] == pytest.approx(0.75)
    assert ft.naps[1] == pytest.approx(0.3)  # re-armed for the rest, from the clock, not a sum
    assert all(n <= MAX_NAP for n in ft.naps) and evs == []


async def test_ticker_after_a_stall_spreads_and_logs() -> None:
    ft = FakeTime(T0 + 0.5)
    ft.skew = [3.5]
    recs, evs = await _run_ticker(ft, [0], 5)
    assert [r.ts for r in recs][:4] == [T0, T0 + 1, T0 + 2, T0 + 3]
    assert recs[0].spread == 4 and [e.event for e in evs] == ["missed_ticks"]


def test_slots_mark_closes_a_second_by_the_writers_own_boundary() -> None:
    from hitcount.counter import Slots

    slots = Slots.anonymous(2)
    a, b = slots.counter(0), slots.counter(1)
    a.add(10)
    b.add(5)
    slots.mark(0, T0 + 1)  # worker 0 marked second T0+1 as it began; worker 1 has not (yet)
    a.add(7)  # hits after worker 0's boundary belong to T0+1
    b.add(1)
    assert slots.total_at(T0 + 1) == 10 + 6  # worker 0 by its mark, worker 1 live
    assert slots.total_at(T0 + 2) == 17 + 6  # no mark for that second: live totals
    assert slots.total() == 23


async def test_ticker_closes_with_marks_and_never_goes_back() -> None:
    ft = FakeTime(T0 + 0.5)
    readings = {T0 + 1: 40, T0 + 2: 30}  # a fallback reading may exceed the next mark-based one
    recs: list[Record] = []
    ticker = Ticker(
        Seconds("a", ft.now, 0),
        lambda: 100,
        recs.append,
        lambda e: None,
        clock=ft.clock,
        sleep=ft.sleep,
        read_at=lambda ts: readings.get(ts, 0),
        lag=0.02,
    )
    task = asyncio.create_task(ticker.run())
    while len(recs) < 2:
        await asyncio.sleep(0)
    task.cancel()
    ticker.finish()  # the last, partial second takes the live total
    # T0 closed by the reading at T0+1 (40); T0+1 by the lower one at T0+2 (30): held at 40, not -10
    assert [(r.ts, r.count) for r in recs[:2]] == [(T0, 40), (T0 + 1, 0)]
    assert sum(r.count for r in recs) == 100 and min(r.count for r in recs) >= 0
    assert recs[-1].partial and [r.ts for r in recs] == list(range(T0, T0 + len(recs)))
    assert ft.naps[0] == pytest.approx(0.52)  # woke `lag` after the boundary
