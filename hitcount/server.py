"""One event loop's worth of hitcount: listen, count, tick, stop gracefully.

Owns: `Server` (bind, serve, drain, final record) and `serve()` for embedding. Wires `protocol`,
`counter`, `ticker` and the sinks passed in. Imports only our lower layers.
Must not: install signal handlers, call sys.exit or configure logging; that is the CLI's job.
"""

from __future__ import annotations

import asyncio
import math
import socket
import time
from collections.abc import Awaitable, Callable

from .config import Config
from .counter import Slots
from .protocol import HitProtocol, Site
from .records import Event, Record
from .ticker import Seconds, Ticker

RecordSink = Callable[[Record], None]
EventSink = Callable[[Event], None]

DRAIN_POLL = 0.01  # seconds between looks at the open connections while draining


class Server:
    """Serves `config` on the running loop; emits one record per second to `emit`.

    `start()` binds (port 0 is resolved to the real port), `stop()` stops accepting, answers what was
    received, closes connections and emits the final partial second. Every hit acknowledged before
    `stop()` returns is in exactly one emitted record.
    """

    def __init__(
        self,
        config: Config,
        emit: RecordSink,
        log: EventSink,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._emit = emit
        self._log = log
        self._clock = clock
        self.slots = Slots.anonymous(1)
        self.site: Site | None = None
        self.ticker: Ticker | None = None
        self._server: asyncio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.port = config.port
        self.server_id = ""

    @property
    def total(self) -> int:
        """Every hit counted since start."""
        return self.slots.total()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.site = Site(self.config, self.slots.counter(0), self._clock(), self._log)
        site = self.site
        site.start(loop)  # the one deadline sweep of this loop (timeouts, refusal log lines)
        self._server = await loop.create_server(
            lambda: HitProtocol(site),
            host=self.config.host,
            port=self.config.port,
            backlog=self.config.backlog,
            reuse_address=True,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self.server_id = self.config.with_port(self.port).resolved_server_id()
        seconds = Seconds(self.server_id, self._clock(), self.slots.total())
        self.ticker = Ticker(seconds, self.slots.total, self._emit, self._log, clock=self._clock)
        self._tasks = [
            loop.create_task(self.ticker.run(), name="hitcount-ticker"),
            loop.create_task(self._refresh_dates(), name="hitcount-dates"),
        ]

    @property
    def sockets(self) -> list[socket.socket]:
        return list(self._server.sockets) if self._server else []

    async def stop(self, timeout: float | None = None) -> None:
        """Graceful stop: no new connections, answer what was received, final partial record."""
        if self._server is None or self.site is None or self.ticker is None:
            return
        timeout = self.config.timeout_graceful_shutdown if timeout is None else timeout
        self._server.close()
        self.site.drain()
        deadline = time.monotonic() + timeout
        while self.site.connections and time.monotonic() < deadline:
            await asyncio.sleep(DRAIN_POLL)
        for conn in list(self.site.connections):
            conn.abort()  # only requests never completed remain; none of them was counted
        self.site.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.ticker.finish()
        self._server = None

    async def _refresh_dates(self) -> None:
        assert self.site is not None
        while True:
            now = self._clock()
            self.site.responses.refresh(now)
            await asyncio.sleep(math.floor(now) + 1 - now + 0.0005)


async def serve(
    config: Config,
    emit: RecordSink,
    log: EventSink,
    shutdown_trigger: Callable[[], Awaitable[object]],
    on_started: Callable[[Server], None] | None = None,
) -> Server:
    """Run a server on the current loop until `shutdown_trigger()` completes, then stop it."""
    server = Server(config, emit, log)
    await server.start()
    if on_started is not None:
        on_started(server)
    try:
        await shutdown_trigger()
    finally:
        await server.stop()
    return server
