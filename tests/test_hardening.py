"""Limits, timeouts, the connection limit, Expect: 100-continue and the refusal log, against the real
server over real sockets. Every refusal is one canned answer with `Connection: close`, then EOF, and
is never counted; what came before it on the connection is answered and counted once."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .support import Proc, check_series, connect, records
from .wire import collect, exchange, parse

GET = b"GET /log HTTP/1.1\r\nHost: a\r\n\r\n"
LIMITS = ["--limit-max-url", "256", "--limit-max-head", "1024", "--limit-max-headers", "10"]
LIMITS += ["--limit-max-body", "1000", "--methods", "GET,PUT,POST"]


def hdrs(n: int, size: int = 4) -> bytes:
    return b"".join(b"X-%d: %s\r\n" % (i, b"v" * size) for i in range(n))


# (id, chunks, statuses, hits): each sent on a fresh connection as separate writes.
TABLE: list[tuple[str, list[bytes], list[int], int]] = [
    ("url at limit", [b"GET /log?" + b"a" * 251 + b" HTTP/1.1\r\n\r\n"], [204], 1),
    ("url over limit", [GET + b"GET /log?" + b"a" * 252 + b" HTTP/1.1\r\n\r\n"], [204, 414], 1),
    ("url over limit, split", [b"GET /log?" + b"a" * 200, b"a" * 100 + b" HTTP/1.1\r\n\r\n"], [414], 0),
    (
        "url over limit, big read",
        [GET * 40 + b"GET /" + b"a" * 600 + b" HTTP/1.1\r\n\r\n"],
        [204] * 40 + [414],
        40,
    ),
    ("headers at limit", [b"GET /log HTTP/1.1\r\n" + hdrs(10) + b"\r\n"], [204], 1),
    ("too many headers", [b"GET /log HTTP/1.1\r\n" + hdrs(11) + b"\r\n"], [431], 0),
    ("too many headers, split", [b"GET /log HTTP/1.1\r\n" + hdrs(6), hdrs(5) + b"\r\n"], [431], 0),
    (
        "too many headers after good",
        [GET * 20 + b"GET /log HTTP/1.1\r\n" + hdrs(11) + b"\r\n"],
        [204] * 20 + [431],
        20,
    ),
    ("head too large", [b"GET /log HTTP/1.1\r\n" + hdrs(3, 400) + b"\r\n"], [431], 0),
    ("head too large, dribbled", [b"GET /log HTTP/1.1\r\nX: "] + [b"v" * 100] * 11, [431], 0),
    (
        "head too large, straddle",
        [b"GET /log HTTP/1.1\r\n" + hdrs(2, 400), hdrs(1, 300) + b"\r", b"\n\r\n"],
        [431],
        0,
    ),
    (
        "head at limit, split",
        [b"GET /log HTTP/1.1\r\n" + hdrs(2, 400) + b"\r", b"\n\r\n" + GET],
        [204, 204],
        2,
    ),
    ("method split, long read", [b"GE", b"T /log HTTP/1.1\r\n" + hdrs(9, 20) + b"\r\n" + GET], [204, 204], 2),
    ("method split, url over limit", [b"GET ", b"/" + b"a" * 300 + b" HTTP/1.1\r\n\r\n"], [414], 0),
    ("method split, too many headers", [b"HE", b"AD /log HTTP/1.1\r\n" + hdrs(11) + b"\r\n"], [431], 0),
    (
        "body of newlines",
        [b"PUT /log HTTP/1.1\r\nContent-Length: 200\r\n\r\n" + b"\n" * 200 + GET],
        [204, 204],
        2,
    ),
    (
        "body of blank lines",
        [b"PUT /log HTTP/1.1\r\nContent-Length: 400\r\n\r\n" + b"\r\n" * 200 + GET],
        [204, 204],
        2,
    ),
    ("POST head too large, dribbled", [b"POST /log HTTP/1.1\r\nX: "] + [b"v" * 100] * 11, [431], 0),
    (
        "upgrade ignored",
        [b"GET /log HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n" + GET],
        [204, 204],
        2,
    ),
    (
        "POST head too large",
        [b"POST /log HTTP/1.1\r\nContent-Length: 1\r\n" + hdrs(3, 400) + b"\r\nx"],
        [431],
        0,
    ),
    (
        "POST too many headers",
        [b"POST /log HTTP/1.1\r\nContent-Length: 1\r\n" + hdrs(10) + b"\r\nx"],
        [431],
        0,
    ),
    (
        "body at limit",
        [b"PUT /log HTTP/1.1\r\nContent-Length: 1000\r\n\r\n" + b"x" * 1000 + GET],
        [204, 204],
        2,
    ),
    ("body over limit (length)", [b"PUT /log HTTP/1.1\r\nContent-Length: 1001\r\n\r\n"], [413], 0),
    (
        "body over limit (chunked)",
        [
            b"POST /log HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"3e9\r\n" + b"x" * 1001 + b"\r\n0\r\n\r\n",
        ],
        [413],
        0,
    ),
    ("GET with a body", [b"GET /log HTTP/1.1\r\nContent-Length: 2\r\n\r\nab"], [400], 0),
    ("gzip coding", [b"POST /log HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"], [501], 0),
    (
        "gzip then chunked",
        [b"POST /log HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"],
        [501],
        0,
    ),
    ("chunked not last", [b"POST /log HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"], [400], 0),
    ("HTTP/2.0 line", [GET + b"GET /log HTTP/2.0\r\nConnection: keep-alive\r\n\r\n"], [204, 505], 1),
    ("HTTP/2.0 first", [b"GET /log HTTP/2.0\r\nConnection: keep-alive\r\n\r\n" + GET], [505], 0),
    ("HTTP/0.9 line", [b"GET /log\r\nConnection: keep-alive\r\n\r\n"], [505], 0),
    ("HTTP/1.2", [b"GET /log HTTP/1.2\r\n\r\n"], [505], 0),
    (
        "POST HTTP/2.0",
        [b"POST /log HTTP/2.0\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n"],
        [505],
        0,
    ),
    (
        "CL and TE",
        [b"POST /log HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"],
        [400],
        0,
    ),
    ("two lengths", [b"POST /log HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"], [400], 0),
    ("length list", [b"POST /log HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\na"], [400], 0),
    ("length +1", [b"POST /log HTTP/1.1\r\nContent-Length: +1\r\n\r\na"], [400], 0),
    ("obs-fold", [b"GET /log HTTP/1.1\r\nX: a\r\n b\r\n\r\n"], [400], 0),
    ("bare LF", [b"GET /log HTTP/1.1\nHost: a\n\n"], [400], 0),
    ("bare CR", [b"GET /log HTTP/1.1\r\nHost: a\rX: b\r\n\r\n"], [400], 0),
    ("POST then GETs", [b"POST /log HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc" + GET * 3], [204] * 4, 4),
    ("method split", [GET + b"PO", b"ST /log HTTP/1.1\r\nContent-Length: 1\r\n\r\nx", GET], [204] * 3, 3),
    (
        "HEAD, DELETE, GET",
        [b"HEAD /log HTTP/1.1\r\n\r\nDELETE /log HTTP/1.1\r\n\r\n" + GET],
        [204, 405, 204],
        1,
    ),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    proc = Proc(tmp_path_factory.mktemp("hard"), LIMITS).start()
    yield proc
    proc.kill()


@pytest.mark.parametrize("chunks,statuses,hits", [t[1:] for t in TABLE], ids=[t[0] for t in TABLE])
def test_limits(server: Proc, chunks: list[bytes], statuses: list[int], hits: int) -> None:
    data, closed = exchange(server.port, chunks, [0.05] * len(chunks))
    head = frozenset([0]) if chunks[0].startswith(b"HEAD") else frozenset()
    replies = parse(data, head)
    assert [r.status for r in replies] == statuses, data[-300:]
    if statuses[-1] >= 400 and statuses[-1] != 405:
        assert closed and replies[-1].headers["connection"] == "close"
    else:
        assert not closed


def test_limits_count_exactly(tmp_path: Path) -> None:
    """The whole table on a fresh server: exactly the 2xx answers to counted methods are counted."""
    proc = Proc(tmp_path, LIMITS).start()
    try:
        for _, chunks, _, _ in TABLE:
            exchange(proc.port, chunks, [0.01] * len(chunks), quiet=0.1)
    finally:
        assert proc.stop() == 0
    recs = records(proc.log)
    check_series(recs)
    assert sum(r["count"] for r in recs) == sum(t[3] for t in TABLE)


def test_expect_100_continue(server: Proc) -> None:
    with connect(server.port) as s:
        s.sendall(b"PUT /log HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        assert s.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"  # before any body byte was sent
        s.sendall(b"hello")
        data, closed = collect(s, quiet=0.3)
    assert [r.status for r in parse(data)] == [204] and not closed


@pytest.mark.parametrize(
    "head,status",
    [
        (b"PUT /log HTTP/1.1\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n", 413),
        (b"PUT /elsewhere HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n", 404),
        (b"DELETE /log HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n", 405),
    ],
)
def test_expect_refused_at_once(server: Proc, head: bytes, status: int) -> None:
    """A request already refused gets its final answer without a 100, and the connection closes."""
    with connect(server.port) as s:
        s.sendall(head)
        data, closed = collect(s, quiet=2.0)
    replies = parse(data)
    assert [r.status for r in replies] == [status] and closed


def test_expect_ignored_for_http10(server: Proc) -> None:
    with connect(server.port) as s:
        s.sendall(b"PUT /log HTTP/1.0\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
        s.settimeout(0.5)
        with pytest.raises((TimeoutError, socket.timeout)):
            s.recv(100)  # RFC 9110 §15.2: no 1xx to an HTTP/1.0 client
        s.sendall(b"ok")
        data, _ = collect(s)
    assert [r.status for r in parse(data)] == [204]


def test_idle_keep_alive_and_header_timeouts(tmp_path: Path) -> None:
    proc = Proc(tmp_path, ["--timeout-keep-alive", "1", "--timeout-header", "2"]).start()
    try:
        with connect(proc.port) as idle, connect(proc.port) as slow, connect(proc.port) as fresh:
            idle.sendall(GET)
            slow.sendall(b"GET /log HTTP/1.1\r\nX-Slow: ")
            for _ in range(3):  # dribbling does not move a head's deadline
                time.sleep(0.5)
                slow.sendall(b"z")
            data, closed = collect(idle, quiet=15)
            assert [r.status for r in parse(data)] == [204] and closed
            data, closed = collect(slow, quiet=15)
            assert [r.status for r in parse(data)] == [408] and closed
            data, closed = collect(fresh, quiet=15)  # connected, never sent a byte
            assert data == b"" and closed
    finally:
        assert proc.stop() == 0
    assert sum(r["count"] for r in records(proc.log)) == 1


def test_limit_concurrency(tmp_path: Path) -> None:
    proc = Proc(tmp_path, ["--limit-concurrency", "3"]).start()
    try:
        held = [connect(proc.port) for _ in range(3)]
        for c in held:
            c.sendall(GET)
            assert parse(c.recv(4096))[0].status == 204
        with connect(proc.port) as extra:
            data, closed = collect(extra, quiet=5)
        assert [r.status for r in parse(data)] == [503] and closed
        for c in held:  # the established ones are untouched
            c.sendall(GET)
            assert parse(c.recv(4096))[0].status == 204
            c.close()
        time.sleep(0.3)
        data, _ = exchange(proc.port, [GET])  # room again once they are gone
        assert [r.status for r in parse(data)] == [204]
    finally:
        assert proc.stop() == 0
    assert sum(r["count"] for r in records(proc.log)) == 7


def test_refusals_are_logged_once_per_kind_per_second(tmp_path: Path) -> None:
    proc = Proc(tmp_path, LIMITS).start()
    t0 = time.monotonic()
    try:
        for _ in range(40):
            exchange(proc.port, [b"GET /log HTTP/2.0\r\n\r\n"], quiet=0.01)
            exchange(proc.port, [b"GET /log HTTP/1.1\r\n" + hdrs(11) + b"\r\n"], quiet=0.01)
    finally:
        assert proc.stop() == 0
    elapsed = time.monotonic() - t0
    events = [json.loads(line) for line in proc.error_log.read_text().splitlines()]
    refused = [e for e in events if e["event"] == "refused"]
    per_kind: dict[str, int] = {}
    for e in refused:
        per_kind[e["kind"]] = per_kind.get(e["kind"], 0) + e["count"]
    assert per_kind == {"http_version": 40, "too_many_headers": 40}  # every refusal, in the counts
    for kind in per_kind:  # one line per kind per sweep (about a second), plus the one at stop
        assert sum(e["kind"] == kind for e in refused) <= elapsed + 2
