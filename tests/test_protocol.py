"""HitProtocol on a fake transport: parsing, routing and counting without sockets or a loop."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hitcount.config import Config
from hitcount.counter import Slots
from hitcount.protocol import HitProtocol, Site

from .fakes import Transport

GET = b"GET /log HTTP/1.1\r\nHost: t\r\n\r\n"
STREAM = (
    GET
    + b"GET /log?ref=abc&x=%20 HTTP/1.1\r\nHost: t\r\nUser-Agent: x\r\n\r\n"
    + b"GET /other HTTP/1.1\r\nHost: t\r\n\r\n"
    + b"PUT /log HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"
    + b"POST /log HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    + b"HEAD /log HTTP/1.1\r\nHost: t\r\n\r\n"
    + b"DELETE /log HTTP/1.1\r\nHost: t\r\n\r\n"
)
STREAM_STATUSES = [204, 204, 404, 204, 204, 204, 405]
STREAM_HITS = 4  # GET, GET, PUT, POST; HEAD is answered, not counted


def make(methods: tuple[str, ...] = ("GET", "PUT", "POST")) -> tuple[HitProtocol, Transport, Slots]:
    slots = Slots.anonymous(1)
    site = Site(Config(methods=methods), slots.counter(0), 1_700_000_000.0)
    proto = HitProtocol(site)
    tr = Transport()
    proto.connection_made(tr)
    return proto, tr, slots


def feed(proto: HitProtocol, *chunks: bytes) -> None:
    for c in chunks:
        proto.data_received(c)


def test_whole_stream_in_one_read_is_one_write() -> None:
    proto, tr, slots = make()
    feed(proto, STREAM)
    assert len(tr.writes) == 1
    assert tr.statuses() == STREAM_STATUSES and slots.total() == STREAM_HITS and not tr.done


@pytest.mark.parametrize("cut", range(1, len(STREAM)))
def test_stream_split_at_every_byte(cut: int) -> None:
    proto, tr, slots = make()
    feed(proto, STREAM[:cut], STREAM[cut:])
    assert tr.statuses() == STREAM_STATUSES and slots.total() == STREAM_HITS


def test_stream_byte_by_byte() -> None:
    proto, tr, slots = make()
    feed(proto, *(STREAM[i : i + 1] for i in range(len(STREAM))))
    assert tr.statuses() == STREAM_STATUSES and slots.total() == STREAM_HITS


def test_url_in_pieces_is_joined() -> None:
    proto, tr, slots = make()
    feed(proto, b"GET /l", b"o", b"g?ref=x HTTP/1.1\r\nHo", b"st: a\r\n\r\n")
    assert tr.statuses() == [204] and slots.total() == 1


def test_answers_owed_go_out_before_the_error_in_order() -> None:
    proto, tr, slots = make()
    feed(proto, GET + b"GET /nope HTTP/1.1\r\n\r\n" + GET + b"GET /log HTTP/1.1\r\nBad Header\r\n\r\n" + GET)
    assert tr.statuses() == [204, 404, 204, 400] and slots.total() == 2
    assert len(tr.writes) == 1 and tr.done
    assert b"Connection: close" in tr.writes[0].split(b"HTTP/1.1 400")[1]


def test_bad_body_after_headers_is_not_counted() -> None:
    proto, tr, slots = make()
    feed(proto, b"PUT /log HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n")
    assert tr.statuses() == [400] and slots.total() == 0 and tr.done


def test_connection_close_stops_parsing_the_rest() -> None:
    proto, tr, slots = make()
    feed(proto, b"GET /log HTTP/1.1\r\nConnection: close\r\n\r\n" + GET * 3)
    assert tr.statuses() == [204] and slots.total() == 1 and tr.done
    feed(proto, GET)  # anything arriving after the close is ignored
    assert slots.total() == 1


def test_upgrade_is_ignored_and_the_connection_goes_on() -> None:
    proto, tr, slots = make()
    feed(proto, b"GET /log HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n" + GET)
    assert tr.statuses() == [204, 204] and slots.total() == 2 and not tr.done


def test_count_is_in_the_slot_before_the_answer_is_written() -> None:
    proto, tr, slots = make()
    seen: list[int] = []
    tr.write = lambda data: seen.append(slots.total())  # type: ignore[method-assign]
    feed(proto, GET * 5)
    assert seen == [5]


def test_drain_closes_idle_and_answers_in_progress_with_close() -> None:
    proto, tr, slots = make()
    idle, idle_tr, _ = make()
    proto._site.connections.add(idle)  # noqa: SLF001 - two connections on one site
    idle._site = proto._site  # noqa: SLF001
    feed(proto, b"GET /log HTTP/1.1\r\nHo")
    proto._site.drain()  # noqa: SLF001
    assert idle_tr.done and not tr.done
    feed(proto, b"st: t\r\n\r\n")
    assert tr.statuses() == [204] and tr.done and b"Connection: close" in tr.writes[0]
    assert slots.total() == 1


def test_backpressure_pauses_and_resumes_reading() -> None:
    proto, tr, _ = make()
    proto.pause_writing()
    assert tr.paused
    proto.resume_writing()
    assert not tr.paused


def test_default_methods_put_is_405_with_allow() -> None:
    proto, tr, slots = make(("GET",))
    feed(proto, b"PUT /log HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
    out: Any = tr.writes[0]
    assert tr.statuses() == [405] and b"Allow: GET, HEAD\r\n" in out and slots.total() == 0


def test_replay_memo_repeats_a_read_exactly() -> None:
    proto, tr, slots = make()
    for _ in range(5):
        feed(proto, GET * 3)
    assert proto._site.replay  # noqa: SLF001 - learnt after the first read
    assert tr.statuses() == [204] * 15 and slots.total() == 15
    assert len(set(tr.writes)) == 1  # the replayed answers are byte for byte the parsed ones


def test_replay_memo_is_not_used_inside_a_request() -> None:
    proto, tr, slots = make(("GET",))
    feed(proto, GET, GET)  # learns GET
    assert GET in proto._site.replay  # noqa: SLF001
    # The same bytes as a PUT's body: must be read as body (one 405, no hit), not replayed as a GET.
    feed(proto, b"PUT /log HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(GET), GET)
    feed(proto, GET)
    assert tr.statuses() == [204, 204, 405, 204] and slots.total() == 3


def test_replay_memo_not_used_after_a_partial_method() -> None:
    proto, tr, slots = make()
    feed(proto, GET)
    feed(proto, GET)  # replayed
    feed(proto, b"GE", b"T /log HTTP/1.1\r\nHost: t\r\n\r\n", GET)
    assert tr.statuses() == [204] * 4 and slots.total() == 4


def test_replay_memo_cleared_when_draining_and_each_second() -> None:
    proto, tr, slots = make()
    feed(proto, GET, GET)
    site = proto._site  # noqa: SLF001
    site.refresh(1_700_000_001.0)
    assert not site.replay
    feed(proto, GET)
    assert site.replay
    feed(proto, GET[:10])  # a request in progress when the drain starts
    site.drain()
    assert not site.replay
    feed(proto, GET[10:])  # answered with Connection: close, not from the memo
    assert tr.writes[-1].endswith(b"Connection: close\r\n\r\n") and slots.total() == 4


class _NoMemo(dict):  # type: ignore[type-arg]
    """A replay memo that never learns (reports itself full)."""

    def __len__(self) -> int:
        return 1 << 30


POOL = [
    GET,
    GET * 3,
    b"HEAD /log HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /nope HTTP/1.1\r\n\r\n",
    b"GE",
    b"T /log HTTP/1.1\r\n",
    b"Host: t\r\n\r\n",
    b"\r\n",
    b"PUT /log HTTP/1.1\r\nContent-Length: 30\r\n\r\n",
    b"POST /log HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"3\r\nabc\r\n0\r\n\r\n",
    b"GET /log HTTP/1.0\r\n\r\n",
    b"GET /log HTTP/1.1\r\nConnection: close\r\n\r\n",
    b"GET /log HTTP/2.0\r\n\r\n",
    b"XX\r\n\r\n",
]


@given(st.lists(st.sampled_from(POOL), min_size=1, max_size=40))
@settings(max_examples=400, deadline=None)
def test_replay_memo_changes_nothing(reads: list[bytes]) -> None:
    """Differential: the same reads through a protocol with the memo and one without it."""
    results = []
    for memo in (True, False):
        proto, tr, slots = make()
        if not memo:
            proto._site.replay = _NoMemo()  # noqa: SLF001
        feed(proto, *reads)
        results.append((b"".join(tr.writes), slots.total(), tr.done))
    assert results[0] == results[1]


def test_pages_are_never_replayed() -> None:
    proto, tr, slots = make()
    served = []

    def page(date: bytes, head: bool, close: bool) -> bytes:
        served.append(1)
        return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%d" % (len(str(len(served))), len(served))

    proto._site.pages[b"/state"] = page  # noqa: SLF001
    req = b"GET /state HTTP/1.1\r\nHost: t\r\n\r\n"
    feed(proto, req, req, req + GET, req + GET)
    assert len(served) == 4 and tr.writes[1].endswith(b"\r\n\r\n2")
    assert slots.total() == 2
