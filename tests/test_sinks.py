"""JSON-lines sinks: lines flushed as written, a slow disk never blocks the caller, reopen, retry."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from hitcount.records import Event, Record, to_line
from hitcount.sinks import JsonLinesSink, LineWriter


def test_records_are_one_json_object_per_line(tmp_path: Path) -> None:
    sink = JsonLinesSink(str(tmp_path / "c.log"))
    sink(Record(ts=10, count=3, server="s", late_ms=1.23456))
    sink(Record(ts=11, count=0, server="s", spread=2, partial=True))
    sink(Event(5.0, "warning", "missed_ticks", "late", {"missed": 1}))
    sink.close()
    lines = (tmp_path / "c.log").read_text().splitlines()
    assert [json.loads(x) for x in lines] == [
        {"ts": 10, "count": 3, "server": "s", "late_ms": 1.235},
        {"ts": 11, "count": 0, "server": "s", "late_ms": 0.0, "spread": 2, "partial": True},
        {"time": 5.0, "level": "warning", "event": "missed_ticks", "message": "late", "missed": 1},
    ]
    assert to_line(Record(1, 2, "x")).endswith("}\n")


def test_each_line_is_flushed_without_close(tmp_path: Path) -> None:
    w = LineWriter(str(tmp_path / "c.log"))
    w.write("one\n")
    deadline = time.monotonic() + 5
    while (tmp_path / "c.log").read_text() != "one\n" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert (tmp_path / "c.log").read_text() == "one\n"
    w.close()


class SlowFile:
    """A file whose writes block until released: a stalled disk."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.lines: list[str] = []

    def write(self, line: str) -> None:
        self.release.wait(10)
        self.lines.append(line)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_a_stalled_disk_does_not_block_the_caller(tmp_path: Path) -> None:
    w = LineWriter(str(tmp_path / "c.log"))
    slow = SlowFile()
    w._file = slow  # noqa: SLF001 - the writer thread now writes into a stalled "disk"
    t = time.monotonic()
    for i in range(1000):
        w.write(f"{i}\n")
    assert time.monotonic() - t < 1.0  # generous: the point is that nothing waited for the disk
    assert slow.lines == []
    slow.release.set()
    w.close()
    assert slow.lines == [f"{i}\n" for i in range(1000)]


def test_reopen_starts_a_new_file(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    w = LineWriter(str(path))
    w.write("a\n")
    time.sleep(0.1)
    path.rename(tmp_path / "c.log.1")
    w.reopen()
    w.write("b\n")
    w.close()
    assert (tmp_path / "c.log.1").read_text() == "a\n" and path.read_text() == "b\n"


def test_a_failed_write_is_retried_in_order(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "c.log"
    path.parent.mkdir()
    w = LineWriter(str(path))
    w.reopen()
    (tmp_path / "sub").rename(tmp_path / "gone")  # the directory disappears: reopening fails
    w.write("kept\n")
    time.sleep(0.2)
    (tmp_path / "sub").mkdir()  # the disk is back: the pending line is written, not dropped
    w.close()
    assert path.read_text() == "kept\n"
    assert w.errors >= 1
