"""The HTTP contract over real sockets, against the real server in a child process."""

from __future__ import annotations

import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from .support import Proc, check_series, connect, get, read_responses, records

REQ = b"GET /log HTTP/1.1\r\nHost: t\r\n\r\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    proc = Proc(tmp_path_factory.mktemp("http"), ["--methods", "GET,PUT,POST"]).start()
    yield proc
    proc.kill()


def test_keep_alive_many_requests_one_connection(server: Proc) -> None:
    with connect(server.port) as s:
        for _ in range(20):
            s.sendall(REQ)
            (r,), closed = read_responses(s, 1)
            assert r.status == 204 and r.headers["connection"] == "keep-alive"
        assert not closed
        assert "date" in r.headers and "content-length" not in r.headers


def test_100_pipelined_in_one_write_answered_in_order(server: Proc) -> None:
    reqs = b"".join(
        b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % (b"/log?i=%d" % i if i % 10 else b"/other/%d" % i)
        for i in range(100)
    )
    with connect(server.port) as s:
        s.sendall(reqs)
        resps, closed = read_responses(s, 100)
    assert [r.status for r in resps] == [404 if i % 10 == 0 else 204 for i in range(100)]
    assert not closed


@pytest.mark.parametrize("split", range(1, len(REQ) * 2))
def test_same_bytes_split_at_every_boundary(server: Proc, split: int) -> None:
    data = REQ * 2
    with connect(server.port) as s:
        s.sendall(data[:split])
        s.sendall(data[split:])
        resps, closed = read_responses(s, 2)
    assert [r.status for r in resps] == [204, 204] and not closed


def test_http10_closes_unless_keep_alive_asked(server: Proc) -> None:
    with connect(server.port) as s:
        s.sendall(b"GET /log HTTP/1.0\r\n\r\n")
        resps, closed = read_responses(s)
        assert [r.status for r in resps] == [204] and closed
        assert resps[0].headers["connection"] == "close"
    with connect(server.port) as s:
        s.sendall(b"GET /log HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" * 2)
        resps, closed = read_responses(s, 2)
        assert [r.status for r in resps] == [204, 204] and not closed
        assert resps[0].headers["connection"] == "keep-alive"


def test_connection_close_stops_after_that_request(server: Proc) -> None:
    with connect(server.port) as s:
        s.sendall(b"GET /log HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" + REQ)
        resps, closed = read_responses(s)
    assert [r.status for r in resps] == [204] and closed


def test_head_answers_like_get_without_body(server: Proc) -> None:
    r = get(server.port, "/log", "HEAD")
    assert r.status == 204 and r.body == b""
    r = get(server.port, "/elsewhere", "HEAD")
    assert r.status == 404 and r.body == b"" and int(r.headers["content-length"]) > 0


def test_404_405_400(server: Proc) -> None:
    assert get(server.port, "/nope").status == 404
    assert get(server.port, "/logs").status == 404
    r = get(server.port, "/log", "DELETE")
    assert r.status == 405 and r.headers["allow"] == "GET, PUT, POST, HEAD"
    with connect(server.port) as s:
        s.sendall(b"\x16\x03\x01 not http\r\n\r\n")
        resps, closed = read_responses(s)
    assert [r.status for r in resps] == [400] and closed


def test_good_requests_before_a_bad_one_are_answered_in_order(server: Proc) -> None:
    with connect(server.port) as s:
        s.sendall(REQ + REQ + b"G@T /log HTTP/1.1\r\n\r\n" + REQ)
        resps, closed = read_responses(s)
    assert [r.status for r in resps] == [204, 204, 400] and closed


def test_put_with_chunked_body_counts(server: Proc) -> None:
    body = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    with connect(server.port) as s:
        s.sendall(b"PUT /log HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" + body + REQ)
        resps, _ = read_responses(s, 2)
    assert [r.status for r in resps] == [204, 204]


def test_post_with_content_length_body_split(server: Proc) -> None:
    with connect(server.port) as s:
        s.sendall(b"POST /log?x=1 HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n01234")
        s.sendall(b"56789" + REQ)
        resps, _ = read_responses(s, 2)
    assert [r.status for r in resps] == [204, 204]


def _count(tmp: Path, args: list[str], payloads: list[bytes]) -> tuple[int, list[int]]:
    """Run a fresh server, send each payload on its own connection, stop it; (hits, statuses)."""
    proc = Proc(tmp, args).start()
    statuses: list[int] = []
    try:
        for p in payloads:
            with connect(proc.port) as s:
                s.sendall(p)
                s.shutdown(socket.SHUT_WR)
                resps, _ = read_responses(s)
                statuses += [r.status for r in resps]
    finally:
        assert proc.stop() == 0
    recs = records(proc.log)
    check_series(recs)
    return sum(r["count"] for r in recs), statuses


def test_only_complete_accepted_log_requests_count(tmp_path: Path) -> None:
    payloads = [
        REQ,  # 1
        b"HEAD /log HTTP/1.1\r\nHost: t\r\n\r\n",  # HEAD is not in --methods: answered, not counted
        b"PUT /log HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nab",  # body never completes
        b"POST /log HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",  # bad chunk
        b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n",
        REQ * 3 + b"BAD\x00\r\n\r\n",  # 3 then garbage
        b"GET /log?a=b HTTP/1.1\r\nHost: t\r\n\r\n",  # 1
    ]
    hits, statuses = _count(tmp_path, ["--methods", "GET,PUT,POST"], payloads)
    assert hits == 5
    assert statuses == [204, 204, 400, 404, 204, 204, 204, 400, 204]


def test_head_counts_when_listed(tmp_path: Path) -> None:
    hits, statuses = _count(
        tmp_path, ["--methods", "GET,HEAD"], [b"HEAD /log HTTP/1.1\r\nHost: t\r\n\r\n", REQ]
    )
    assert (hits, statuses) == (2, [204, 204])


def test_sigterm_flushes_final_second(tmp_path: Path) -> None:
    proc = Proc(tmp_path).start()
    with connect(proc.port) as s:
        s.sendall(REQ * 7)
        read_responses(s, 7)
        assert proc.stop(signal.SIGTERM) == 0
    recs = records(proc.log)
    assert sum(r["count"] for r in recs) == 7
    assert recs[-1].get("partial") is True
    check_series(recs)
