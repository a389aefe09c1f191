"""metrics.Board and render: rows, one writer each, summed; events that are also counted."""

from __future__ import annotations

from pathlib import Path

from hitcount.counter import Slots
from hitcount.metrics import CONNECTIONS, DRAINING, MISSED, RECORDS, Board, observing, render
from hitcount.records import Event


def _lines(board: Board, slots: Slots) -> dict[str, str]:
    text = render(board, slots, "9.9", "uvloop", 3).decode()
    assert text.endswith("\n")
    return dict(line.rsplit(" ", 1) for line in text.splitlines() if not line.startswith("#"))


def test_render_sums_rows_and_reads_hits_from_the_slots() -> None:
    board, slots = Board.anonymous(3), Slots.anonymous(2)
    slots.counter(0).add(5)
    slots.counter(1).add(7)
    board.set(1, CONNECTIONS, 4)
    board.set(2, CONNECTIONS, 6)
    board.refuse(1, "timeout")
    board.refuse(2, "timeout")
    board.refuse(2, "a kind nobody listed")
    board.add(0, RECORDS, 3)
    m = _lines(board, slots)
    assert m["hitcount_hits_total"] == "12"
    assert m["hitcount_connections_active"] == "10"
    assert m['hitcount_rejected_requests_total{reason="timeout"}'] == "2"
    assert m['hitcount_rejected_requests_total{reason="other"}'] == "1"
    assert m["hitcount_records_emitted_total"] == "3" and m["hitcount_workers"] == "3"
    assert m['hitcount_build_info{version="9.9",python="' + m_py(m) + '",loop="uvloop"}'] == "1"


def m_py(m: dict[str, str]) -> str:
    (key,) = [k for k in m if k.startswith("hitcount_build_info")]
    return key.split('python="')[1].split('"')[0]


def test_counted_events_and_draining() -> None:
    board = Board.anonymous(2)
    seen: list[Event] = []
    log = observing(board, 0, seen.append)
    log(Event(0.0, "warning", "missed_ticks", "late", {"missed": 3}))
    log(Event(0.0, "warning", "clock_stepped_back", "back"))
    log(Event(0.0, "warning", "refused", "not a counted event", {"count": 9}))
    assert len(seen) == 3 and board.sum(MISSED) == 3
    assert not board.draining
    board.drain()
    assert board.draining and board.get(0, DRAINING) == 1


def test_board_file_keeps_counters_and_resets_gauges(tmp_path: Path) -> None:
    path = str(tmp_path / "board")
    board = Board.open(path, 2)
    board.add(1, MISSED, 2)
    board.set(1, CONNECTIONS, 5)
    board.drain()
    board.close()
    again = Board.open(path, 3)  # grown for one more worker
    assert again.rows == 3 and again.get(1, MISSED) == 2 and again.get(1, CONNECTIONS) == 5
    again.reset_gauges()
    assert again.get(1, CONNECTIONS) == 0 and not again.draining and again.get(1, MISSED) == 2
