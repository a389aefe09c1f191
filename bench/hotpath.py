"""In-process cost of HitProtocol.data_received per request (no sockets, no kernel): a steadier view of
the Python hot path than wrk on a shared machine, for before/after comparisons of protocol changes.

Owns: a fake transport and a timing loop. Imports whichever `hitcount` is first on sys.path, so
`PYTHONPATH=/path/to/other/checkout python bench/hotpath.py` measures that checkout.
Reports the minimum over repeats (the least-disturbed run), in ns per request.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from hitcount.config import Config
from hitcount.counter import Slots
from hitcount.protocol import HitProtocol, Site

WRK = b"GET /log HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
BROWSER = (
    b"GET /log?page=%2Fhome&ref=news HTTP/1.1\r\nHost: hits.example.com\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0\r\n"
    b"Accept: image/avif,image/webp,*/*\r\nAccept-Language: en-US,en;q=0.5\r\n"
    b"Accept-Encoding: gzip, deflate, br\r\nReferer: https://news.example.com/a/b\r\n"
    b"Connection: keep-alive\r\nSec-Fetch-Dest: image\r\nSec-Fetch-Mode: no-cors\r\n\r\n"
)


class NullTransport:
    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        pass

    def set_write_buffer_limits(self, high: int, low: int) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def per_request_ns(request: bytes, depth: int, n: int, repeat: int, varied: bool = False) -> float:
    """ns per request fed through data_received. `varied`: every read differs (a unique query
    string per request), so the replay memo never hits: the cost of parsing every request."""
    site: Any = Site(Config(), Slots.anonymous(1).counter(0), time.time())
    proto = HitProtocol(site)
    proto.connection_made(NullTransport())
    if varied:
        reads = [
            b"".join(request.replace(b"/log", b"/log?id=%07d" % (i * depth + j), 1) for j in range(depth))
            for i in range(n)
        ]
    else:
        reads = [request * depth] * n
    feed = proto.data_received
    best = float("inf")
    for _ in range(repeat):
        t = time.process_time_ns()
        for data in reads:
            feed(data)
        best = min(best, (time.process_time_ns() - t) / (n * depth))
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100_000, help="reads per repeat")
    p.add_argument("--repeat", type=int, default=7)
    args = p.parse_args()
    asyncio.set_event_loop(asyncio.new_event_loop())  # Site.start is not called: no sweep needed
    cases = (("wrk", WRK, 1), ("browser", BROWSER, 1), ("wrk-pipelined-16", WRK, 16))
    for varied in (False, True):
        for name, req, depth in cases:
            ns = per_request_ns(req, depth, args.n // depth, args.repeat, varied)
            label = name + (" (varied)" if varied else "")
            print(f"{label:28} {ns:8.0f} ns/request")


if __name__ == "__main__":
    main()
