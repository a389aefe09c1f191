"""The library API as an embedding program uses it, on asyncio and on uvloop, over real sockets."""

from __future__ import annotations

import asyncio
import logging
import signal

import pytest
import uvloop

import hitcount
from hitcount import Collector, Record

from .test_server import LOOPS, _hits


async def _embedded() -> tuple[list[Record], list[Record], int, int]:
    seen: list[Record] = []
    streamed: list[Record] = []
    async with Collector(port=0, server_id="emb", on_record=seen.append) as c:
        assert c.port > 0 and c.server_id == "emb"

        async def consume() -> None:
            async for rec in c.records():
                streamed.append(rec)

        consumer = asyncio.create_task(consume())
        await asyncio.sleep(0)
        acked = await _hits(c.port, 500, 10)
        await asyncio.sleep(1.1)
        acked += await _hits(c.port, 20, 1)
        total = c.total
    await asyncio.wait_for(consumer, 5)  # the iterator ends when the collector stops
    return seen, streamed, acked, total


@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_collector_counts_and_delivers_records(loop: str) -> None:
    before = signal.getsignal(signal.SIGTERM)
    seen, streamed, acked, total = LOOPS[loop](_embedded())
    assert acked == total == 520
    assert sum(r.count for r in seen) == acked and seen == streamed
    assert seen[-1].partial and all(r.server == "emb" for r in seen)
    assert signal.getsignal(signal.SIGTERM) == before


def test_failing_callback_does_not_stop_counting(caplog: pytest.LogCaptureFixture) -> None:
    def boom(rec: Record) -> None:
        raise RuntimeError("callback bug")

    async def scenario() -> tuple[int, int]:
        c = Collector(port=0, on_record=boom)
        async with c:
            acked = await _hits(c.port, 10, 1)
            await asyncio.sleep(1.1)
            acked += await _hits(c.port, 10, 1)
        return acked, c.records_emitted

    with caplog.at_level(logging.ERROR, logger="hitcount"):
        acked, emitted = uvloop.run(scenario())
    assert acked == 20 and emitted >= 2
    assert "on_record callback failed" in caplog.text


def test_collector_accepts_a_config_and_overrides() -> None:
    c = Collector(config=hitcount.Config(path="/hit", methods=("POST",)), port=0)
    assert (c.config.path, c.config.methods, c.config.port) == ("/hit", ("POST",), 0)
    with pytest.raises(TypeError):
        Collector(no_such_setting=1)
