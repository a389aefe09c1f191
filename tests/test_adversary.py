"""Found by the adversarial pass, over real sockets to a real server: ways a well-behaved but slow
client lost answers to hits that were counted (emitted > acknowledged). Each test reads slowly while
the server closes: after `Connection: close` in the middle of a long pipeline, and on SIGTERM. The
server must deliver every answer it counted before it resets anything."""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

from .support import Proc, check_series, records

REQ = b"GET /log HTTP/1.1\r\nHost: a\r\n\r\n"
CLOSE = b"GET /log HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"


def pipeline(port: int, data: bytes, until: float = 60.0) -> dict[str, Any]:
    """Send `data` from one thread while this one reads slowly; count the answers (all 204s)."""
    out: dict[str, Any] = {"answers": 0, "end": "timeout", "statuses": set()}
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)

        def send() -> None:
            with contextlib.suppress(OSError):  # the server closed after its last answer
                s.sendall(data)

        sender = threading.Thread(target=send)
        sender.start()
        buf = b""
        end = time.monotonic() + until
        try:
            while time.monotonic() < end:
                time.sleep(0.004)  # a slow reader: ~4 MB/s
                got = s.recv(16384)
                if not got:
                    out["end"] = "eof"
                    break
                buf += got
                n = buf.count(b"\r\n\r\n")
                if n:
                    out["statuses"].update(x[:12] for x in buf.split(b"\r\n\r\n")[:n])
                    out["answers"] += n
                    buf = buf[buf.rfind(b"\r\n\r\n") + 4 :]
        except ConnectionResetError:
            out["end"] = "reset"
        sender.join(30)
    return out


def test_close_mid_pipeline_delivers_every_counted_answer_to_a_slow_reader(tmp_path: Path) -> None:
    proc = Proc(tmp_path).start()
    try:
        got = pipeline(proc.port, REQ * 30_000 + CLOSE + REQ * 150_000)
    finally:
        assert proc.stop(signal.SIGTERM) == 0
    recs = records(proc.log)
    check_series(recs)
    assert got["statuses"] == {b"HTTP/1.1 204"}
    assert (got["end"], got["answers"]) == ("eof", 30_001)
    assert sum(r["count"] for r in recs) == 30_001


def test_sigterm_during_a_pipeline_delivers_every_counted_answer(tmp_path: Path) -> None:
    proc = Proc(tmp_path).start()
    result: list[dict[str, Any]] = []
    client = threading.Thread(target=lambda: result.append(pipeline(proc.port, REQ * 400_000)))
    client.start()
    try:
        time.sleep(1.0)  # the slow reader is behind: many answers are queued when the server stops
        assert proc.stop(signal.SIGTERM) == 0
    finally:
        client.join(90)
    recs = records(proc.log)
    check_series(recs)
    got = result[0]
    assert got["end"] == "eof"
    assert 0 < got["answers"] < 400_000
    assert sum(r["count"] for r in recs) == got["answers"]
