"""Slowloris: hundreds of connections dribbling a request head byte by byte do not hold up a normal
client, whose every hit is answered and counted while they are still dribbling; then the header
timeout closes them (408) without counting anything for them."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from .support import Proc, check_series, connect, read_responses, records
from .wire import collect, parse

SLOW = 300
GET = b"GET /log HTTP/1.1\r\nHost: a\r\n\r\n"


def _dribble(socks: list[socket.socket], stop: threading.Event, sent: list[int]) -> None:
    for s in socks:
        s.sendall(b"GET /log HTTP/1.1\r\nHost: a\r\nX-Slow: ")
    while not stop.is_set():
        for s in socks:
            try:
                s.sendall(b"z")
                sent[0] += 1
            except OSError:
                pass
        stop.wait(0.1)


def test_dribbling_connections_do_not_hold_up_a_normal_client(tmp_path: Path) -> None:
    proc = Proc(tmp_path, ["--timeout-header", "4"]).start()
    socks = [connect(proc.port) for _ in range(SLOW)]
    stop = threading.Event()
    sent = [0]
    dribbler = threading.Thread(target=_dribble, args=(socks, stop, sent), daemon=True)
    dribbler.start()
    worst = 0.0
    try:
        time.sleep(0.5)
        with connect(proc.port) as s:
            for _ in range(200):
                t0 = time.monotonic()
                s.sendall(GET)
                (r,), closed = read_responses(s, 1)
                worst = max(worst, time.monotonic() - t0)
                assert r.status == 204 and not closed
        dribbled_during = sent[0]
        stop.set()
        dribbler.join(10)
        # The dribblers were served nothing; the header timeout now answers each with 408 and closes.
        outcomes = [collect(c, quiet=15) for c in socks]
    finally:
        stop.set()
        for c in socks:
            c.close()
        assert proc.stop() == 0
    assert dribbled_during > SLOW  # they really were dribbling while the client was served
    assert all(closed for _, closed in outcomes)
    assert all([r.status for r in parse(data)] == [408] for data, _ in outcomes)
    recs = records(proc.log)
    check_series(recs)
    assert sum(r["count"] for r in recs) == 200
    print(f"{SLOW} dribbling connections; worst normal-client round trip {worst * 1000:.1f} ms")
