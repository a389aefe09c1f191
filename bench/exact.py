"""The exact client: sends exactly N hits over raw sockets on uvloop and records, for each hit, the
wall time (time.time()) it was written and the wall time its 204 arrived.

Owns: closed-loop runs (C connections, D requests in flight on each, sent in batches as wrk's
pipeline script does) and fixed-rate runs (an open-loop schedule; latency is counted from the
intended send time, so a slow answer cannot hide the queue behind it — no coordinated omission).
Imports bench.analysis only; talks to loopback addresses only; every run ends by its deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import ipaddress
import json
import sys
from array import array
from collections import deque
from dataclasses import asdict, dataclass
from time import time
from typing import Any

from bench.analysis import latency_summary, second_windows

END = b"\r\n\r\n"  # every answer we expect is a bodiless 204, so a blank line ends each one
OK = b"204"


@dataclass(frozen=True)
class Plan:
    """One run: `hits` requests over `connections`, `depth` in flight each (closed loop), or at
    `rate` requests per second (open loop, rate > 0); abandoned after `timeout` seconds."""

    port: int
    hits: int
    connections: int = 50
    depth: int = 1
    rate: float = 0.0
    timeout: float = 60.0
    host: str = "127.0.0.1"
    path: str = "/log"


class Recorder:
    """The per-hit arrays and the run's progress, shared by every connection."""

    __slots__ = ("total", "next", "acked", "sent", "got", "done", "errors", "request")

    def __init__(self, plan: Plan, done: asyncio.Future[None]) -> None:
        self.total = plan.hits
        self.next = 0  # index of the next hit to send
        self.acked = 0
        self.sent = array("d", bytes(8 * plan.hits))
        self.got = array("d", bytes(8 * plan.hits))  # 0.0 = never answered
        self.done = done
        self.errors: list[str] = []
        self.request = f"GET {plan.path} HTTP/1.1\r\nHost: {plan.host}\r\n\r\n".encode()

    def fail(self, message: str) -> None:
        self.errors.append(message)
        if not self.done.done():
            self.done.set_result(None)


class HitConnection(asyncio.Protocol):
    """One keep-alive connection; answers come back in order, so a FIFO of hit indices suffices."""

    __slots__ = ("rec", "depth", "closed_loop", "transport", "inflight", "tail")

    def __init__(self, rec: Recorder, depth: int, closed_loop: bool) -> None:
        self.rec = rec
        self.depth = depth
        self.closed_loop = closed_loop
        self.transport: Any = None
        self.inflight: deque[int] = deque()
        self.tail = b""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def send_batch(self) -> None:
        rec = self.rec
        start = rec.next
        n = min(self.depth, rec.total - start)
        if n <= 0:
            return
        rec.next = start + n
        now = time()
        for i in range(start, start + n):
            rec.sent[i] = now
            self.inflight.append(i)
        self.transport.write(rec.request * n)

    def send_one(self, i: int) -> None:
        self.rec.sent[i] = time()
        self.inflight.append(i)
        self.transport.write(self.rec.request)

    def data_received(self, data: bytes) -> None:
        now = time()
        rec = self.rec
        buf = self.tail + data if self.tail else data
        pos = 0
        inflight, got = self.inflight, rec.got
        while (end := buf.find(END, pos)) >= 0:
            if buf[pos + 9 : pos + 12] != OK or not inflight:
                rec.fail(f"unexpected answer: {buf[pos : min(end, pos + 40)]!r}")
                self.transport.close()
                return
            got[inflight.popleft()] = now
            rec.acked += 1
            pos = end + 4
        self.tail = buf[pos:]
        if rec.acked == rec.total:
            if not rec.done.done():
                rec.done.set_result(None)
        elif self.closed_loop and not inflight:
            self.send_batch()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.inflight and not self.rec.done.done():
            self.rec.fail(f"connection lost with {len(self.inflight)} hits unanswered: {exc}")


def _pace(
    loop: asyncio.AbstractEventLoop, rec: Recorder, conns: list[HitConnection], t0: float, rate: float
) -> None:
    """Send every hit whose intended time has come, round-robin over the connections (pipelining
    behind a slow answer rather than waiting for it), then re-arm. It spins with call_soon when the
    next hit is near: the client owns its CPU, and a coarse timer would add its lag to latency."""
    if rec.done.done():
        return
    due = min(rec.total, int((time() - t0) * rate) + 1)
    n = len(conns)
    while rec.next < due:
        i = rec.next
        rec.next = i + 1
        conns[i % n].send_one(i)
    if rec.next < rec.total:
        wait = t0 + rec.next / rate - time()
        if wait > 0.002:
            loop.call_later(wait - 0.001, _pace, loop, rec, conns, t0, rate)
        else:
            loop.call_soon(_pace, loop, rec, conns, t0, rate)


async def run(plan: Plan) -> dict[str, Any]:
    """Carry out `plan` and summarise it (see `summarise`)."""
    if not ipaddress.ip_address(plan.host).is_loopback:
        raise ValueError(f"the exact client only talks to loopback, not {plan.host}")
    loop = asyncio.get_running_loop()
    rec = Recorder(plan, loop.create_future())
    closed_loop = plan.rate <= 0
    depth = plan.depth if closed_loop else 1
    conns: list[HitConnection] = []
    for _ in range(plan.connections):
        _, proto = await loop.create_connection(
            lambda: HitConnection(rec, depth, closed_loop), plan.host, plan.port
        )
        conns.append(proto)
    t0 = time()
    if closed_loop:
        for conn in conns:
            conn.send_batch()
    else:
        _pace(loop, rec, conns, t0, plan.rate)
    try:
        await asyncio.wait_for(asyncio.shield(rec.done), plan.timeout)
    except asyncio.TimeoutError:
        rec.errors.append(f"deadline of {plan.timeout:g} s passed")
    for conn in conns:
        if conn.transport is not None:
            conn.transport.close()
    await asyncio.sleep(0)
    return summarise(plan, rec, t0)


def summarise(plan: Plan, rec: Recorder, t0: float) -> dict[str, Any]:
    """Counts, throughput, latency (from the intended send time in fixed-rate runs), how late the
    client itself sent (fixed rate only), and the per-second windows used for attribution."""
    answered = [i for i in range(rec.next) if rec.got[i] > 0.0]
    if plan.rate > 0:
        latencies = [rec.got[i] - (t0 + i / plan.rate) for i in answered]
        lag = latency_summary(rec.sent[i] - (t0 + i / plan.rate) for i in range(rec.next))
    else:
        latencies = [rec.got[i] - rec.sent[i] for i in answered]
        lag = {}
    first = min((rec.sent[i] for i in range(rec.next)), default=t0)
    last = max((rec.got[i] for i in answered), default=first)
    windows = second_windows(rec.sent[: rec.next], rec.got[: rec.next])
    duration = last - first
    return {
        "plan": asdict(plan),
        "hits": plan.hits,
        "sent": rec.next,
        "acked": rec.acked,
        "unanswered": rec.next - rec.acked,
        "errors": rec.errors[:5],
        "duration_s": duration,
        "rps": rec.acked / duration if duration > 0 else 0.0,
        "latency_us": latency_summary(latencies),
        "send_lag_us": lag,
        "windows": windows.to_json(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Send exactly N hits and record every answer.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", default="/log")
    p.add_argument("--hits", type=int, required=True)
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--depth", type=int, default=1, help="requests in flight per connection")
    p.add_argument("--rate", type=float, default=0.0, help="hits per second (open loop); 0 = closed")
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--out", help="write the JSON summary here instead of stdout")
    a = p.parse_args(argv)
    plan = Plan(a.port, a.hits, a.connections, a.depth, a.rate, a.timeout, a.host, a.path)
    gc.disable()  # a collection pause would show up as the server's latency; runs are bounded
    try:
        import uvloop

        result = uvloop.run(run(plan))
    except ImportError:
        result = asyncio.run(run(plan))
    text = json.dumps(result)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    else:
        print(text)
    return 0 if not result["errors"] and result["unanswered"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
