"""Health and metrics: `/livez`, `/readyz` and `/metrics` as pages the protocol answers off the hit
path, and a listener of their own for `--metrics-port`.

Owns: `Probes` (the three pages of one process) and `ProbeServer` (a HitProtocol listener whose Site
counts nothing and answers only the pages). Imports `config`, `counter`, `metrics`, `protocol`,
`responses`. Must not: make readiness depend on anything remote (a store, a report target): /readyz
is 503 only while the server shuts down; /livez is 200 whenever the loop answering it turns.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

from .config import Config
from .counter import Slots
from .metrics import CONTENT_TYPE, Board, render
from .protocol import HitProtocol, Site
from .records import Event
from .responses import build
from .site import Page

STOP_WAIT = 1.0  # seconds a probe request in flight gets to finish when the listener stops


TEXT = b"text/plain; charset=utf-8"


def _answer(status: int, date: bytes, head: bool, close: bool, body: bytes, ctype: bytes = TEXT) -> bytes:
    answer = build(status, date, not close, body, ctype=ctype)
    return answer[: len(answer) - len(body)] if head else answer  # HEAD: GET's head, no body


def loop_name() -> str:
    """The running loop's implementation, for hitcount_build_info."""
    return "uvloop" if type(asyncio.get_running_loop()).__module__.startswith("uvloop") else "asyncio"


class Probes:
    """The pages of one process. `ready()` says whether this server accepts traffic; `refresh()` (if
    given) brings this process's own gauges up to date before /metrics is rendered."""

    def __init__(
        self,
        board: Board,
        slots: Slots,
        workers: int,
        ready: Callable[[], bool],
        refresh: Callable[[], None] | None = None,
    ) -> None:
        self.board = board
        self.slots = slots
        self.workers = workers
        self.ready = ready
        self.refresh = refresh
        self.loop = "asyncio"

    def pages(self) -> dict[bytes, Page]:
        self.loop = loop_name()
        return {b"/livez": self.livez, b"/readyz": self.readyz, b"/metrics": self.metrics}

    def livez(self, date: bytes, head: bool, close: bool) -> bytes:
        # Answered from the event loop itself: if it answers, the loop turns.
        return _answer(200, date, head, close, b"ok\n")

    def readyz(self, date: bytes, head: bool, close: bool) -> bytes:
        if self.ready():
            return _answer(200, date, head, close, b"ready\n")
        return _answer(503, date, head, close, b"draining: shutting down\n")

    def metrics(self, date: bytes, head: bool, close: bool) -> bytes:
        from . import __version__  # at call time: the package has finished importing by then

        if self.refresh is not None:
            self.refresh()
        body = render(self.board, self.slots, __version__, self.loop, self.workers)
        return _answer(200, date, head, close, body, CONTENT_TYPE)


class ProbeServer:
    """`--metrics-port`: the pages on a listener of their own (any other target: 404, nothing counted)."""

    def __init__(self, config: Config, probes: Probes, log: Callable[[Event], None] | None = None) -> None:
        self.config = config
        self.probes = probes
        self._log = log
        self.site: Site | None = None
        self._server: asyncio.Server | None = None
        self._dates: asyncio.Task[None] | None = None
        self.port = 0

    async def start(self, port: int) -> int:
        """Listen on `port` (0: a free one) of --host; returns the bound port."""
        loop = asyncio.get_running_loop()
        site = self.site = Site(self.config, Slots.anonymous(1).counter(0), time.time(), self._log)
        site.path = b""  # never equal to a request target...
        site.path_q = b"\0"  # ...and none starts with NUL (llhttp refuses it): nothing is a hit here
        site.counted = frozenset()
        site.pages = self.probes.pages()
        site.start(loop)
        self._server = await loop.create_server(
            lambda: HitProtocol(site),
            self.config.metrics_host or self.config.host,
            port,
            backlog=self.config.backlog,
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        self._dates = loop.create_task(self._refresh_dates(site), name="hitcount-probe-dates")
        return self.port

    async def stop(self) -> None:
        if self._server is None or self.site is None:
            return
        self._server.close()
        self.site.drain()
        deadline = time.monotonic() + STOP_WAIT
        while self.site.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for conn in list(self.site.connections):
            conn.abort()
        self.site.close()
        if self._dates is not None:
            self._dates.cancel()
            await asyncio.gather(self._dates, return_exceptions=True)
        self._server = None

    @staticmethod
    async def _refresh_dates(site: Site) -> None:
        while True:
            now = time.time()
            site.responses.refresh(now)
            await asyncio.sleep(math.floor(now) + 1 - now + 0.0005)
