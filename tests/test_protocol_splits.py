"""The protocol on a fake transport (no sockets, no loop): the hardening table fed whole, byte by byte
and split at every point must give the same answers and the same count — the raw-byte head
accounting and the hand-over to the careful parser must not depend on where reads end. Also the
sweep's deadlines with an injected clock."""

from __future__ import annotations

import time
from typing import Any

import pytest

from hitcount.config import Config
from hitcount.counter import Slots
from hitcount.protocol import HitProtocol, Site

from .fakes import Transport
from .test_hardening import TABLE
from .wire import sniff

CONFIG = Config(
    methods=("GET", "PUT", "POST"),
    limit_max_url=256,
    limit_max_head=1024,
    limit_max_headers=10,
    limit_max_body=1000,
)


def run(reads: list[bytes], config: Config = CONFIG) -> tuple[list[int], int, bool]:
    slots = Slots.anonymous(1)
    site: Any = Site(config, slots.counter(0), time.time())
    proto = HitProtocol(site)
    t = Transport()
    proto.connection_made(t)
    for r in reads:
        if r:
            proto.data_received(r)
    statuses = [x.status for x in sniff(bytes(t.data)) if x.status >= 200]
    return statuses, slots.total(), t.eof or t.closed


@pytest.mark.parametrize("chunks,statuses,hits", [t[1:] for t in TABLE], ids=[t[0] for t in TABLE])
def test_table_whole_and_byte_by_byte(chunks: list[bytes], statuses: list[int], hits: int) -> None:
    assert run(chunks)[:2] == (statuses, hits)
    data = b"".join(chunks)
    assert run(list(data[i : i + 1] for i in range(len(data))))[:2] == (statuses, hits)
    assert run([data])[:2] == (statuses, hits)


@pytest.mark.parametrize("chunks,statuses,hits", [t[1:] for t in TABLE], ids=[t[0] for t in TABLE])
def test_table_split_everywhere(chunks: list[bytes], statuses: list[int], hits: int) -> None:
    data = b"".join(chunks)
    step = max(1, len(data) // 300)  # every split point for short inputs, ~300 for long ones
    for i in range(0, len(data) + 1, step):
        for j in (i, min(len(data), i + 7), min(len(data), i + 1000)):
            got = run([data[:i], data[i:j], data[j:]])[:2]
            assert got == (statuses, hits), f"split at {i}, {j}"


class Clock:
    """An injected loop: `time()` and `call_at` for the sweep."""

    def __init__(self) -> None:
        self.now = 100.0
        self.calls: list[tuple[float, Any]] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, fn: Any) -> Any:
        self.calls.append((when, fn))
        return self

    def call_later(self, delay: float, fn: Any) -> Any:
        return self.call_at(self.now + delay, fn)

    def cancel(self) -> None:
        pass

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        while self.calls and min(c[0] for c in self.calls) <= end:
            self.calls.sort(key=lambda c: c[0])
            when, fn = self.calls.pop(0)
            self.now = when
            fn()
        self.now = end


def test_deadlines_with_an_injected_clock() -> None:
    config = Config(timeout_header=10, timeout_keep_alive=5)
    site: Any = Site(config, Slots.anonymous(1).counter(0), time.time())
    clock = Clock()
    site.start(clock)
    idle, slow, busy = HitProtocol(site), HitProtocol(site), HitProtocol(site)
    ti, ts, tb = Transport(), Transport(), Transport()
    idle.connection_made(ti)
    slow.connection_made(ts)
    busy.connection_made(tb)
    get = b"GET /log HTTP/1.1\r\n\r\n"
    idle.data_received(get)
    slow.data_received(b"GET /log HTTP/1.1\r\nX: ")
    for _ in range(8):  # dribbling does not move a head's deadline; requests move a keep-alive one
        clock.advance(1)
        slow.data_received(b"x")
        busy.data_received(get)
    assert ti.eof and not ts.eof and not tb.eof  # idle for 8 s > 5 s: closed, no answer
    assert ti.data.count(b"HTTP/1.1") == 1
    clock.advance(3)  # 11 s since the head began
    assert ts.eof and b"408 Request Timeout" in ts.data
    assert not tb.eof
    clock.advance(7)  # the closed ones never went away (client reads nothing): aborted
    assert ti.aborted and ts.aborted
    assert site.connections == {idle, slow, busy}  # connection_lost never came in this fake
