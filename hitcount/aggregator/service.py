"""One aggregator on the running loop: open the store, listen, stop gracefully, close the store.

Owns: `Aggregator`. Wires `http.AggProtocol`, `app.App` and a `Store`. Imports only the aggregator.
Must not: install signal handlers, call sys.exit or configure logging (that is `aggregator.cli`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from ..records import Event
from .app import App
from .http import AggProtocol, Connections
from .store import Store

DRAIN_POLL = 0.01


class Aggregator:
    """Serves `store` on host:port. `stop()` answers every request already received, then closes."""

    def __init__(
        self, store: Store, log: Callable[[Event], None], host: str, port: int, backlog: int
    ) -> None:
        self.store = store
        self.app = App(store, log)
        self.site = Connections(self.app)
        self.host, self.port, self.backlog = host, port, backlog
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Open the store (raises on a bad path or an unreachable Redis), then bind."""
        await self.store.open()
        loop = asyncio.get_running_loop()
        site = self.site
        try:
            self._server = await loop.create_server(
                lambda: AggProtocol(site),
                host=self.host,
                port=self.port,
                backlog=self.backlog,
                reuse_address=True,
            )
        except OSError:
            await self.store.close()
            raise
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self, timeout: float) -> None:
        if self._server is None:
            return
        self._server.close()
        self.site.drain()
        deadline = time.monotonic() + timeout
        while any(c.busy for c in self.site.open) and time.monotonic() < deadline:
            await asyncio.sleep(DRAIN_POLL)
        for conn in list(self.site.open):
            conn.abort()
        self._server = None
        await self.store.close()
