"""What every connection of one event loop shares: routes, answers, limits, the counter slot, the open
connections, and the one periodic sweep that enforces their deadlines and logs refusals.

Owns: `Site`. Imports `config`, `counter`, `records`, `responses`; never httptools (the protocol's).
Must not: run per request. The sweep runs once per SWEEP_INTERVAL per loop: it reads the clock once,
publishes the deadlines connections copy on each read, closes the connections past theirs, and writes
at most one error-log line per kind of refusal per period, with the count.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Protocol

from .config import SWEEP_INTERVAL, Config
from .counter import Counter
from .records import Event
from .responses import Responses, build

# A page answers a health/metrics route: (Date header value, HEAD?, close?) -> the whole answer.
Page = Callable[[bytes, bool, bool], bytes]


class Conn(Protocol):
    """What the sweep needs of a connection (HitProtocol)."""

    deadline: float

    def expire(self) -> None: ...

    def drain(self) -> None: ...


class Site:
    """One loop's shared state. `keep_deadline`/`head_deadline` are `now + timeout`, refreshed by the
    sweep, so a connection moves its own deadline forward with one store and no clock read."""

    __slots__ = (
        "path",
        "path_q",
        "counted",
        "responses",
        "view",
        "index",
        "connections",
        "draining",
        "replay",
        "max_url",
        "max_head",
        "max_lines",
        "max_body",
        "fast_max",
        "scan",
        "limit_concurrency",
        "timeout_header",
        "timeout_keep_alive",
        "keep_deadline",
        "head_deadline",
        "refused",
        "pages",
        "on_refuse",
        "_log",
        "_handle",
        "_loop",
    )

    def __init__(
        self, config: Config, counter: Counter, now: float, log: Callable[[Event], None] | None = None
    ) -> None:
        self.path = config.path.encode("ascii")
        self.path_q = self.path + b"?"
        self.counted = frozenset(m.encode("ascii") for m in config.methods)
        allow = tuple(dict.fromkeys((*config.methods, "HEAD")))
        self.responses = Responses(allow, now)
        self.view = counter.view  # the slot itself, so a read's hits cost one in-place add
        self.index = counter.index
        self.connections: set[Any] = set()
        self.draining = False
        self.max_url = config.limit_max_url
        self.max_head = config.limit_max_head
        # LFs in a head = header fields + 2 (request line, blank line); see HitProtocol._fits.
        self.max_lines = config.limit_max_headers + 2
        self.max_body = config.limit_max_body
        # A read no longer than this (and with few enough LFs) cannot hold an oversized head or URL.
        self.fast_max = min(config.limit_max_url, config.limit_max_head)
        # ... and one no longer than this cannot even hold too many header lines (each is >= 4 bytes),
        # so the hot path skips counting LFs for it.
        self.scan = min(self.fast_max, 4 * config.limit_max_headers)
        self.limit_concurrency = config.limit_concurrency
        self.timeout_header = config.timeout_header
        self.timeout_keep_alive = config.timeout_keep_alive
        self.keep_deadline = self.head_deadline = float("inf")
        self.refused: dict[str, int] = {}
        # Reads already parsed by llhttp, from a connection at a request boundary to the next one,
        # with no refusal and no close: the exact bytes -> (their answers joined, hits). See
        # HitProtocol.data_received. Bounded; emptied whenever the answers change (Date, draining).
        self.replay: dict[bytes, tuple[bytes, int]] = {}
        # Health/metrics routes (probes.py): exact target -> page(date, head, close) -> answer bytes.
        # Looked up only for targets that are not the hit path.
        self.pages: dict[bytes, Page] = {}
        self.on_refuse: Callable[[str], None] | None = None  # the metrics tally, per refusal
        self._log = log
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Begin the sweep chain on `loop` (the loop the connections run on)."""
        self._loop = loop
        self._deadlines(loop.time())
        self._handle = loop.call_later(SWEEP_INTERVAL, self.sweep)

    def close(self) -> None:
        """Stop sweeping; log what was refused since the last sweep."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._flush_refused()

    def _deadlines(self, now: float) -> None:
        self.keep_deadline = now + self.timeout_keep_alive
        self.head_deadline = now + self.timeout_header

    def sweep(self) -> None:
        """Close every connection past its deadline; log refusals; schedule the next sweep."""
        loop = self._loop
        assert loop is not None
        now = loop.time()
        self._deadlines(now)
        for conn in [c for c in self.connections if c.deadline < now]:
            conn.expire()
        self._flush_refused()
        self._handle = loop.call_at(now + SWEEP_INTERVAL, self.sweep)

    def refresh(self, now: float) -> None:
        """Rebuild the answers for a new Date; cached reads carried the old one."""
        self.responses.refresh(now)
        self.replay.clear()

    def refuse(self, kind: str) -> None:
        """Tally one refused request or connection (logged by the next sweep, not now)."""
        self.refused[kind] = self.refused.get(kind, 0) + 1
        if self.on_refuse is not None:
            self.on_refuse(kind)

    def _flush_refused(self) -> None:
        if not self.refused:
            return
        refused, self.refused = self.refused, {}
        if self._log is None or self._loop is None:
            return
        now = time.time()
        for kind, count in sorted(refused.items()):
            message = f"refused {count} request(s) or connection(s): {kind}"
            self._log(Event(now, "warning", "refused", message, {"kind": kind, "count": count}))

    def route(self, method: bytes, url: bytes) -> tuple[tuple[bytes, ...], bool]:
        """The answer pair (keep-alive, close) for a request, and whether it counts as a hit.
        The same rules as HitProtocol.on_message_complete, which inlines them for speed."""
        r = self.responses
        if url == self.path or url.startswith(self.path_q):
            if method in self.counted:
                return r.hit, True
            return (r.hit if method == b"HEAD" else r.not_allowed), False
        page = self.pages.get(url)
        if page is not None:
            if method == b"GET" or method == b"HEAD":
                head = method == b"HEAD"
                return (page(r.date, head, False), page(r.date, head, True)), False
            na = b"405 Method Not Allowed\n"
            allow = b"Allow: GET, HEAD\r\n"
            return (build(405, r.date, True, na, allow), build(405, r.date, False, na, allow)), False
        return (r.not_found_head if method == b"HEAD" else r.not_found), False

    def drain(self) -> None:
        """Shutdown: answer every request already received with `Connection: close`; close idle."""
        self.draining = True
        self.replay.clear()  # from now on every answer says Connection: close: nothing cached holds
        for conn in list(self.connections):
            conn.drain()
