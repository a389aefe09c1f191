"""The library API: `async with Collector(...) as c` serves hits on the running loop.

Owns: `Collector` (start/stop as an async context manager, records by callback or async iterator).
Imports `config`, `records`, `server`.
Must not: install signal handlers, call sys.exit or configure logging; a failing user callback is
reported through the `hitcount` logger and never stops the counting.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any

from .config import Config
from .records import Event, Record
from .server import Server

logger = logging.getLogger("hitcount")

_END = object()


class Collector:
    """A hit collector on the current event loop (uvloop if the program runs one, else asyncio).

    ```python
    async with hitcount.Collector(port=8080, on_record=print) as c:
        ...  # GET http://127.0.0.1:8080/log counts; c.total is the running total
    ```
    Leaving the block stops accepting, answers requests already received, emits the partial current
    second and returns. Keyword arguments are `Config` fields (host, port, path, methods, server_id,
    timeout_graceful_shutdown, ...); or pass a whole `config=`.
    """

    def __init__(
        self,
        *,
        config: Config | None = None,
        on_record: Callable[[Record], Any] | None = None,
        on_event: Callable[[Event], Any] | None = None,
        **settings: Any,
    ) -> None:
        base = config or Config()
        self.config = dataclasses.replace(base, **settings) if settings else base
        self._on_record = on_record
        self._on_event = on_event
        self._queues: list[asyncio.Queue[object]] = []
        self._server = Server(self.config, self._emit, self._log)
        self.records_emitted = 0

    @property
    def port(self) -> int:
        """The bound port (the real one when `port=0` was asked for)."""
        return self._server.port

    @property
    def server_id(self) -> str:
        return self._server.server_id

    @property
    def total(self) -> int:
        """Every hit counted since start, emitted or not yet."""
        return self._server.total

    async def start(self) -> Collector:
        await self._server.start()
        return self

    async def stop(self) -> None:
        """Graceful stop; emits the final partial second. Safe to call twice."""
        await self._server.stop()
        for q in self._queues:
            q.put_nowait(_END)

    async def __aenter__(self) -> Collector:
        return await self.start()

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def records(self) -> AsyncIterator[Record]:
        """Every record emitted from now on, in order, until the collector stops."""
        queue: asyncio.Queue[object] = asyncio.Queue()
        self._queues.append(queue)
        try:
            while (item := await queue.get()) is not _END:
                assert isinstance(item, Record)
                yield item
        finally:
            self._queues.remove(queue)

    def _emit(self, record: Record) -> None:
        self.records_emitted += 1
        for q in self._queues:
            q.put_nowait(record)
        if self._on_record is not None:
            try:
                self._on_record(record)
            except Exception:
                logger.exception("hitcount: on_record callback failed for second %d", record.ts)

    def _log(self, event: Event) -> None:
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:
                logger.exception("hitcount: on_event callback failed")
        else:
            logger.warning("%s", event.message)
