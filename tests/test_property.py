"""Property tests: random and mutated request streams, in random chunkings, over real sockets to a real
Server (in-process, on uvloop in a thread, so its exact total and any exception escaping the
protocol are visible at once).

For every stream: every byte the server sends parses as HTTP/1.1 responses, nothing follows an answer
with `Connection: close`; nothing escapes the protocol; the count grew by exactly the 2xx answers
(every 2xx is a counted /log request here); a fresh connection afterwards is answered and counted.
For streams of well-formed requests, the answers are exactly the ones an oracle predicts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvloop
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hitcount.config import Config
from hitcount.server import Server

from .wire import sniff as replies

pytestmark = pytest.mark.timeout(600)

CONFIG = Config(
    port=0,
    methods=("GET", "HEAD", "PUT", "POST"),
    limit_max_url=256,
    limit_max_head=1024,
    limit_max_headers=12,
    limit_max_body=2000,
)
GET = b"GET /log HTTP/1.1\r\nHost: a\r\n\r\n"


class Live:
    """A Server on its own uvloop thread; `errors` collects whatever reached the loop's handler."""

    def __init__(self) -> None:
        self.errors: list[dict[str, Any]] = []
        self.loop = uvloop.new_event_loop()
        self.loop.set_exception_handler(lambda _loop, ctx: self.errors.append(ctx))
        self.server = Server(CONFIG, lambda rec: None, lambda ev: None)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)

    @property
    def total(self) -> int:
        return self.server.total

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(1.0), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    server = Live()
    yield server
    server.close()


# --- generating requests, with what a correct server answers ----------------------------------------

TOKENS = st.text("abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12).map(str.encode)
VALUES = st.text("abcdefghijklmnopqrstuvwxyz0123456789 ,;=/.", min_size=0, max_size=40).map(str.encode)


@st.composite
def requests(draw: st.DrawFn) -> tuple[bytes, int, bool]:
    """(bytes, final status, closes after) for one well-formed request within the limits."""
    method = draw(st.sampled_from([b"GET", b"GET", b"HEAD", b"PUT", b"POST", b"DELETE"]))
    target = draw(st.sampled_from([b"/log", b"/log?i=1&j=x", b"/nope", b"/log/sub", b"/logs"]))
    version = draw(st.sampled_from([b"1.1", b"1.1", b"1.0"]))
    fields = [b"Host: a"] + [
        n + b": " + v.strip() for n, v in draw(st.lists(st.tuples(TOKENS, VALUES), max_size=6))
    ]
    fields = [
        f for f in fields if not f.lower().startswith((b"content-", b"transfer-", b"connection", b"expect"))
    ]
    conn = draw(st.sampled_from([b"", b"close", b"keep-alive"]))
    if conn:
        fields.append(b"Connection: " + conn)
    body = b""
    expect = False
    if method in (b"PUT", b"POST"):
        body = draw(st.binary(max_size=60))
        if draw(st.booleans()):
            size = b"%x" % len(body)
            fields.append(b"Transfer-Encoding: chunked")
            body = (size + b"\r\n" + body + b"\r\n" if body else b"") + b"0\r\n\r\n"
        else:
            fields.append(b"Content-Length: %d" % len(body))
        expect = bool(body) and draw(st.booleans())
        if expect:
            fields.append(b"Expect: 100-continue")
    on_log = target == b"/log" or target.startswith(b"/log?")
    status = (405 if method == b"DELETE" else 204) if on_log else 404
    closes = conn == b"close" or (version == b"1.0" and conn != b"keep-alive")
    if expect and version == b"1.1" and status != 204:
        closes = True  # refused before the body: answered at once, then closed
    head = b"%s %s HTTP/%s\r\n" % (method, target, version) + b"".join(f + b"\r\n" for f in fields)
    return head + b"\r\n" + body, status, closes


def oracle(reqs: list[tuple[bytes, int, bool]]) -> list[int]:
    statuses = []
    for _, status, closes in reqs:
        statuses.append(status)
        if closes:
            break
    return statuses


@st.composite
def chunkings(draw: st.DrawFn, data: bytes) -> list[bytes]:
    cuts = sorted(set(draw(st.lists(st.integers(0, len(data)), max_size=6))))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False) if b > a]


MUTATIONS = st.lists(
    st.tuples(
        st.sampled_from(["flip", "insert", "delete", "dup", "junk"]),
        st.integers(0, 10_000),
        st.integers(1, 40),
        st.sampled_from([b"\r", b"\n", b"\x00", b" ", b":", b"\r\n", b"\r\n\r\n", b"0", b"\t", b"\xff"]),
    ),
    min_size=1,
    max_size=3,
)


def mutate(data: bytes, ops: list[tuple[str, int, int, bytes]]) -> bytes:
    for op, at, n, junk in ops:
        at %= len(data) + 1
        if op == "flip" and at < len(data):
            data = data[:at] + bytes([data[at] ^ (n % 255 + 1)]) + data[at + 1 :]
        elif op == "insert":
            data = data[:at] + junk + data[at:]
        elif op == "delete":
            data = data[:at] + data[at + n :]
        elif op == "dup":
            data = data[:at] + data[at : at + n] + data[at:]
        else:
            data = data[:at] + junk * n + data[at:]
    return data


# --- talking to the server ------------------------------------------------------------------------


def talk(port: int, chunks: list[bytes]) -> tuple[bytes, bool]:
    """Send the chunks as separate writes, half-close, read to EOF. (bytes, closed_by_server)."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for chunk in chunks:
            try:
                s.sendall(chunk)
            except OSError:
                break
            time.sleep(0.0005)
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_WR)
        buf = bytearray()
        while True:
            try:
                got = s.recv(65536)
            except ConnectionResetError:
                break
            if not got:
                break
            buf += got
        return bytes(buf), True


def check_stream(live: Live, chunks: list[bytes]) -> list[int]:
    before = live.total
    data, _ = talk(live.server.port, chunks)
    got = replies(data)
    finals = [r for r in got if r.status >= 200]
    for i, r in enumerate(finals):
        if r.headers.get("connection") == "close":
            assert i == len(finals) - 1, "answers after Connection: close"
        else:
            assert r.headers.get("connection") == "keep-alive"
    if finals and finals[-1].status >= 400 and finals[-1].status not in (404, 405):
        assert finals[-1].headers["connection"] == "close"
    assert not live.errors, live.errors
    twoxx = sum(200 <= r.status < 300 for r in finals)
    assert live.total - before == twoxx, f"counted {live.total - before}, answered 2xx {twoxx}"
    # Afterwards a fresh connection is served and counted.
    data, _ = talk(live.server.port, [GET.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")])
    assert [r.status for r in replies(data)] == [204]
    assert live.total - before == twoxx + 1
    return [r.status for r in finals]


SETTINGS = settings(
    max_examples=int(os.environ.get("HITCOUNT_PROPERTY_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@SETTINGS
@given(reqs=st.lists(requests(), min_size=1, max_size=6), data=st.data())
def test_well_formed_streams_get_exactly_the_oracle_answers(live: Live, reqs: Any, data: Any) -> None:
    stream = b"".join(r[0] for r in reqs)
    statuses = check_stream(live, data.draw(chunkings(stream)))
    assert statuses == oracle(reqs)


@SETTINGS
@given(reqs=st.lists(requests(), min_size=1, max_size=6), ops=MUTATIONS, data=st.data())
def test_mutated_streams_never_miscount(live: Live, reqs: Any, ops: Any, data: Any) -> None:
    stream = mutate(b"".join(r[0] for r in reqs), ops)
    check_stream(live, data.draw(chunkings(stream)))


@SETTINGS
@given(blob=st.binary(min_size=1, max_size=300), data=st.data())
def test_random_bytes_never_miscount(live: Live, blob: bytes, data: Any) -> None:
    check_stream(live, data.draw(chunkings(blob)))
