"""Found by the adversarial pass: inputs whose answers depended on where the reads ended. Each case is
fed whole, split where the fault was found, and split everywhere, on a fake transport; the answers
and the count must be the same every time (and right)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from hitcount.config import Config
from hitcount.counter import Slots
from hitcount.protocol import HitProtocol, Site

from .fakes import Transport
from .test_hardening import hdrs
from .test_protocol_splits import Clock, run

GET = b"GET /log HTTP/1.1\r\nHost: a\r\n\r\n"
# 10 fields (the limit of test_protocol_splits.CONFIG), preceded by blank lines llhttp skips
AT_LIMIT = b"GET /log HTTP/1.1\r\n" + hdrs(10) + b"\r\n"
# A body that looks like a GET head with far more than 10 lines
FAKE_HEAD = b"GET / HTTP/1.1\r\n" + b"x\n" * 40 + b"\r\n\r\n"
POST = b"POST /log HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(FAKE_HEAD) + FAKE_HEAD
# A POST head of 1025 bytes (the limit is 1024): over by one, however it is read
BIG_POST = b"POST /log HTTP/1.1\r\nContent-Length: 0\r\nX: " + b"v" * (1025 - 46) + b"\r\n\r\n"
assert len(BIG_POST) == 1025

CASES = [
    # blank lines before a head left open by a read were counted as its lines (431 for a valid hit)
    ("blank lines before an open head", [b"\r", b"\n\r\n" + AT_LIMIT[:-40], AT_LIMIT[-40:]], [204], 1),
    ("bare LFs before an open head", [b"\n\n\n" + AT_LIMIT[:-40], AT_LIMIT[-40:]], [204], 1),
    # the blank line ending the last head straddled reads: its LFs were counted into the next head
    ("straddling blank line", [GET[:-3], GET[-3:] + AT_LIMIT[:-40], AT_LIMIT[-40:]], [204, 204], 2),
    # a long read measured a POST's body as if it were heads: 431 instead of two hits
    ("body that looks like a head", [POST + GET], [204, 204], 2),
    ("body that looks like a head, after a hit", [GET + POST + GET], [204, 204, 204], 3),
    # the careful parser left the method and the final blank line out of a head's size
    ("careful head over by one", [GET + BIG_POST[:100], BIG_POST[100:]], [204, 431], 1),
]


@pytest.mark.parametrize("chunks,statuses,hits", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_answers_do_not_depend_on_reads(chunks: list[bytes], statuses: list[int], hits: int) -> None:
    data = b"".join(chunks)
    assert run(chunks)[:2] == (statuses, hits)
    assert run([data])[:2] == (statuses, hits)
    for i in range(len(data) + 1):
        assert run([data[:i], data[i:]])[:2] == (statuses, hits), f"split at {i}"


CHUNKED = b"PUT /log HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize("start,filler", [(b"1;", b"a"), (b"1;x=", b"b"), (b"", b"0")])
def test_endless_chunk_framing_is_refused(start: bytes, filler: bytes) -> None:
    """An endless chunk extension (or run of leading zeros) carries no body bytes, so the body limit
    never fired and each read moved the deadline: the connection was held for ever."""
    reads = [GET + CHUNKED + start] + [filler * 65536] * 40  # 2.5 MiB of framing; the limit is 1000
    assert run(reads) == ([204, 413], 1, True)


def test_a_body_at_the_limit_in_one_byte_chunks_is_accepted() -> None:
    body = b"".join(b"1\r\n%c\r\n" % (65 + i % 26) for i in range(1000)) + b"0\r\n\r\n"
    reads = [CHUNKED] + [body[i : i + 100] for i in range(0, len(body), 100)] + [GET]
    assert run(reads)[:2] == ([204, 204], 2)


class Owing(Transport):
    """A transport whose unsent bytes the test sets (the real one adds the kernel's SIOCOUTQ)."""

    owed = 0

    def get_write_buffer_size(self) -> int:
        return self.owed


def test_closing_waits_for_a_reading_client_but_not_for_ever() -> None:
    """Aborting a closed connection with answers unsent RSTs them away (counted hits the client never
    sees), so the sweep waits while the client reads, but a client that reads slower than
    MIN_PROGRESS a period is aborted: a slow reader cannot hold the connection for ever."""
    site: Any = Site(Config(timeout_keep_alive=5), Slots.anonymous(1).counter(0), time.time())
    clock = Clock()
    site.start(clock)
    proto, t = HitProtocol(site), Owing()
    proto.connection_made(t)
    proto.data_received(GET.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
    assert t.eof and not t.aborted
    t.owed = 1_000_000
    clock.advance(7)
    assert not t.aborted  # first look at what is owed: wait a period
    for _ in range(5):  # reading 100 KB a period: waited for
        t.owed -= 100_000
        clock.advance(6)
        assert not t.aborted
    t.owed -= 1000  # stalled: 1 KB in a period
    clock.advance(6)
    assert t.aborted


def test_closing_aborts_at_once_when_nothing_is_owed() -> None:
    site: Any = Site(Config(timeout_keep_alive=5), Slots.anonymous(1).counter(0), time.time())
    clock = Clock()
    site.start(clock)
    proto, t = HitProtocol(site), Owing()
    proto.connection_made(t)
    proto.data_received(GET.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
    clock.advance(7)
    assert t.aborted
