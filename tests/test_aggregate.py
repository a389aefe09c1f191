"""The aggregator over real sockets, on SQLite and on a real redis-server: writes, reads, refusals."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .aggsupport import AggProc, RedisServer, call, count, put_batch
from .support import connect, read_responses


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def agg(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AggProc]:
    tmp = tmp_path_factory.mktemp(f"agg-{request.param}")
    redis = None
    if request.param == "redis":
        redis = RedisServer(tmp / "redis").start()
        store = redis.url
    else:
        store = f"sqlite:{tmp / 'counts.db'}"
    proc = AggProc(tmp, store, ["--retention", "1h"]).start()
    yield proc
    proc.kill()
    if redis is not None:
        redis.stop()


def _fresh_second(offset: int) -> int:
    """A distinct, recent second per test so the module-scoped aggregator's tests do not mix."""
    return int(time.time()) - 600 + offset


def test_same_batch_sent_three_times_counts_once(agg: AggProc) -> None:
    t = _fresh_second(0)
    batch = [[t, 5], [t + 1, 7], [t + 2, 0], [t + 3, 11]]
    for _ in range(3):
        assert put_batch(agg.port, "a:1", batch) == 204
    assert put_batch(agg.port, "b:1", [[t + 1, 100]]) == 204
    doc = count(agg.port, t, t + 4, by_server=True)
    assert doc["total"] == 123
    assert doc["series"] == [[t, 5], [t + 1, 107], [t + 2, 0], [t + 3, 11]]
    assert doc["servers"] == {"a:1": 23, "b:1": 100}


def test_repeat_replaces_never_adds(agg: AggProc) -> None:
    t = _fresh_second(10)
    for n in (4, 4, 9, 6):
        status, _ = call(agg.port, "PUT", f"/logBatch?timestamp={t}&server=c:1&count={n}")
        assert status == 204
    assert count(agg.port, t, t + 1)["total"] == 6


def test_runs_of_one_server_add_up(agg: AggProc) -> None:
    """Two boots of one collector reporting the same second (the partial last and first second)."""
    t = _fresh_second(20)
    assert put_batch(agg.port, "d:1", [[t, 3]], run="boot1") == 204
    assert put_batch(agg.port, "d:1", [[t, 4]], run="boot2") == 204
    assert put_batch(agg.port, "d:1", [[t, 3]], run="boot1") == 204  # a retry of boot1's backlog
    doc = count(agg.port, t, t + 1, by_server=True)
    assert doc["total"] == 7 and doc["servers"] == {"d:1": 7}


def test_by_server_across_whole_minutes_and_edges(agg: AggProc) -> None:
    t = _fresh_second(0) // 60 * 60 - 600  # a minute boundary, away from the other tests' seconds
    counts = [[t - 7 + i, i + 1] for i in range(150)]  # ragged start, two whole minutes, ragged end
    assert put_batch(agg.port, "e:1", counts) == 204
    assert put_batch(agg.port, "f:1", [[t + 30, 1000]]) == 204
    for since, until in [(t - 7, t + 143), (t - 3, t + 121), (t + 5, t + 50), (t, t + 120)]:
        want = sum(n for ts, n in counts if since <= ts < until)
        doc = count(agg.port, since, until, by_server=True)
        f = 1000 if since <= t + 30 < until else 0
        assert doc["total"] == want + f
        assert doc["servers"].get("e:1", 0) == want and doc["servers"].get("f:1", 0) == f


BAD = [
    ("PUT", "/logBatch?timestamp=1&server=a", None, "missing parameter: count"),
    ("PUT", "/logBatch?timestamp=x&server=a&count=1", None, "timestamp must be"),
    ("PUT", "/logBatch?timestamp=-5&server=a&count=1", None, "timestamp must be"),
    ("PUT", "/logBatch?timestamp={t}&server=a&count=1.5", None, "count must be"),
    ("PUT", "/logBatch?timestamp={t}&server=a&count=-1", None, "count must be"),
    ("PUT", "/logBatch?timestamp={t}&server=a&count=1&count=2", None, "given twice"),
    ("PUT", "/logBatch?timestamp={t}&server=a%20b&count=1", None, "server must be"),
    ("PUT", "/logBatch?timestamp={t}&server=&count=1", None, "server must be"),
    ("PUT", "/logBatch?timestamp={t}&server=a&count=1&colour=red", None, "unknown parameter"),
    ("PUT", "/logBatch?timestamp=99999999999&server=a&count=1", None, "timestamp must be"),
    ("PUT", "/logBatch", b"{not json", "not valid JSON"),
    ("PUT", "/logBatch", b"[1, 2]", "body must be"),
    ("PUT", "/logBatch", b'{"server": "a", "counts": []}', "non-empty list"),
    ("PUT", "/logBatch", b'{"server": "a", "counts": [[{t}]]}', "[timestamp, count]"),
    ("PUT", "/logBatch", b'{"server": "a", "counts": [[{t}, 1], ["{t}", 2]]}', "timestamp must be"),
    ("PUT", "/logBatch", b'{"server": "a", "counts": [[{t}, true]]}', "count must be"),
    ("PUT", "/logBatch", b'{"server": "a", "counts": [[{t}, 1], [{t}, 2]]}', "appears twice"),
    ("PUT", "/logBatch", b'{"counts": [[{t}, 1]]}', "server must be"),
    ("PUT", "/logBatch", b'{"server": "a", "run": "x y", "counts": [[{t}, 1]]}', "run must be"),
    ("PUT", "/logBatch?timestamp={t}&count=1", b'{"server": "a", "counts": [[{t}, 1]]}', "not both"),
    ("GET", "/count?since=abc", None, "since must be"),
    ("GET", "/count?since={t}&until=1", None, "until must not be before"),
    ("GET", "/count?since=0&until={t}", None, "longer than the retention"),
    ("GET", "/count?since={t}&by=colour", None, "by must be"),
]


@pytest.mark.parametrize(("method", "target", "body", "error"), BAD)
def test_malformed_requests_get_400_and_store_nothing(
    agg: AggProc, method: str, target: str, body: bytes | None, error: str
) -> None:
    t = _fresh_second(40)
    target = target.replace("{t}", str(t))
    body = body.replace(b"{t}", str(t).encode()) if body else body
    before = count(agg.port, t - 1, t + 1, by_server=True)
    status, doc = call(agg.port, method, target, body)
    assert status == 400 and error in doc["error"], doc
    assert count(agg.port, t - 1, t + 1, by_server=True) == before


def test_unknown_path_and_method(agg: AggProc) -> None:
    assert call(agg.port, "GET", "/nope")[0] == 404
    assert call(agg.port, "DELETE", "/count")[0] == 405
    assert call(agg.port, "GET", "/logBatch")[0] == 405
    assert call(agg.port, "GET", "/livez") == (200, {"status": "ok"})


def test_pipelined_requests_answered_in_order(agg: AggProc) -> None:
    t = _fresh_second(50)
    reqs = []
    for i in range(30):
        if i % 3 == 2:
            reqs.append(b"GET /count?since=%d&until=%d HTTP/1.1\r\nHost: t\r\n\r\n" % (t, t + 10))
        elif i % 7 == 6:
            reqs.append(b"PUT /logBatch?timestamp=oops HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n")
        else:
            body = json.dumps({"server": f"p{i}", "counts": [[t, i]]}).encode()
            reqs.append(
                b"PUT /logBatch HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
            )
    with connect(agg.port) as s:
        s.sendall(b"".join(reqs))
        resps, closed = read_responses(s, len(reqs))
    want = [200 if i % 3 == 2 else 400 if i % 7 == 6 else 204 for i in range(30)]
    assert [r.status for r in resps] == want and not closed
    stored = [i for i in range(30) if want[i] == 204]
    totals = [json.loads(r.body)["total"] for i, r in enumerate(resps) if want[i] == 200]
    # each GET sees exactly the PUTs before it: answers are computed in request order
    assert totals == [sum(j for j in stored if j < i) for i in range(30) if want[i] == 200]


def test_bad_bytes_get_400_and_close(agg: AggProc) -> None:
    with connect(agg.port) as s:
        s.sendall(b"GET /livez HTTP/1.1\r\nHost: t\r\n\r\nNOT HTTP\x00\r\n\r\n")
        resps, closed = read_responses(s)
    assert [r.status for r in resps] == [200, 400] and closed


def test_retention_drops_old_writes_and_caps_windows(tmp_path: Path) -> None:
    proc = AggProc(tmp_path, f"sqlite:{tmp_path / 'r.db'}", ["--retention", "2m"]).start()
    try:
        now = int(time.time())
        assert put_batch(proc.port, "a", [[now - 500, 9], [now - 30, 4]]) == 204
        assert count(proc.port, now - 110, now)["total"] == 4
        assert count(proc.port, now - 600, now - 480)["total"] == 0  # dropped: older than the retention
        assert call(proc.port, "GET", f"/count?since={now - 121}&until={now}")[0] == 400
    finally:
        assert proc.stop() == 0


def test_oversized_body_and_head_are_refused(agg: AggProc) -> None:
    with connect(agg.port) as s:
        s.sendall(b"PUT /logBatch HTTP/1.1\r\nHost: t\r\nContent-Length: 9000000\r\n\r\n")
        with contextlib.suppress(OSError):  # the server may close before reading it all
            s.sendall(b"[" * 9_000_000)
        resps, closed = read_responses(s)
    assert [r.status for r in resps] == [413] and closed
    with connect(agg.port) as s:
        s.sendall(b"GET /count HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n")
        resps, closed = read_responses(s)
    assert [r.status for r in resps] == [431] and closed
