"""The in-process Server (as an embedder runs it) over real sockets, under asyncio and under uvloop."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvloop

from hitcount import Config, Event, Record, Server

REQ = b"GET /log HTTP/1.1\r\nHost: t\r\n\r\n"
LOOPS: dict[str, Callable[[Coroutine[Any, Any, Any]], Any]] = {"asyncio": asyncio.run, "uvloop": uvloop.run}


async def _hits(port: int, n: int, pipeline: int) -> int:
    """Send `n` hits on one connection, `pipeline` per write; returns the 204s received."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    got = 0
    sent = 0
    while sent < n:
        k = min(pipeline, n - sent)
        writer.write(REQ * k)
        sent += k
        for _ in range(k):
            line = await reader.readuntil(b"\r\n\r\n")
            assert line.startswith(b"HTTP/1.1 204 ")
            got += 1
    writer.close()
    await writer.wait_closed()
    return got


async def _scenario() -> tuple[int, list[Record], list[Event], int]:
    recs: list[Record] = []
    evs: list[Event] = []
    server = Server(Config(port=0, server_id="test"), recs.append, evs.append)
    await server.start()
    assert server.port != 0 and server.server_id == "test"
    acked = sum(await asyncio.gather(*(_hits(server.port, 300, p) for p in (1, 7, 16, 100))))
    await asyncio.sleep(1.2)  # at least one boundary passes while serving
    acked += await _hits(server.port, 50, 5)
    total = server.total
    await server.stop()
    return acked, recs, evs, total


@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_embedded_server_counts_exactly(loop: str) -> None:
    acked, recs, evs, total = LOOPS[loop](_scenario())
    assert acked == 1250 == total
    assert sum(r.count for r in recs) == acked
    ts = [r.ts for r in recs]
    assert ts == list(range(ts[0], ts[0] + len(ts))) and len(ts) >= 2
    assert recs[-1].partial and not any(r.partial for r in recs[:-1])
    assert all(r.server == "test" for r in recs)
    assert evs == []


async def _stop_with_open_connections() -> tuple[list[Record], bytes, bytes]:
    recs: list[Record] = []
    server = Server(Config(port=0), recs.append, lambda e: None)
    await server.start()
    idle_r, idle_w = await asyncio.open_connection("127.0.0.1", server.port)
    busy_r, busy_w = await asyncio.open_connection("127.0.0.1", server.port)
    idle_w.write(REQ)
    await idle_r.readuntil(b"\r\n\r\n")
    busy_w.write(b"GET /log HTTP/1.1\r\nHost: t\r\n")  # head not finished when the stop begins
    await asyncio.sleep(0.05)
    stopping = asyncio.create_task(server.stop(timeout=5))
    await asyncio.sleep(0.05)
    busy_w.write(b"\r\n")  # finishes while draining: answered, with Connection: close, and counted
    answer = await busy_r.read()
    rest = await idle_r.read()  # the idle keep-alive connection was closed
    await stopping
    for w in (idle_w, busy_w):
        w.close()
    return recs, answer, rest


def test_stop_answers_requests_in_progress_and_closes_idle() -> None:
    recs, answer, rest = uvloop.run(_stop_with_open_connections())
    assert answer.startswith(b"HTTP/1.1 204 ") and b"Connection: close" in answer
    assert rest == b""
    assert sum(r.count for r in recs) == 2


def test_bind_failure_raises_oserror() -> None:
    async def twice() -> None:
        first = Server(Config(port=0), lambda r: None, lambda e: None)
        await first.start()
        try:
            second = Server(Config(port=first.port), lambda r: None, lambda e: None)
            with pytest.raises(OSError):
                await second.start()
        finally:
            await first.stop()

    uvloop.run(twice())


def test_server_installs_no_signal_handlers() -> None:
    async def check() -> None:
        before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
        server = Server(Config(port=0), lambda r: None, lambda e: None)
        await server.start()
        assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
        await server.stop()

    uvloop.run(check())
