"""HTTP/1.1 for the aggregator: requests with bodies, answered by async handlers, in request order.

Owns: `Request`, `AggProtocol` (one connection) and `Connections` (the open set, for a graceful stop).
Imports httptools (as protocol.py does) and `responses` for the answer bytes.
Must not: raise from parser callbacks (they only set state, as in protocol.py), keep unbounded state
per connection (bodies and the pipeline of unanswered requests are capped), or reorder answers.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from httptools import HttpParserError, HttpParserUpgrade, HttpRequestParser

from ..config import WRITE_HIGH_WATER, WRITE_LOW_WATER
from ..responses import build, http_date

# A catch-up batch of a day of seconds is about 2 MB of JSON; 8 MiB leaves room and still bounds memory.
MAX_BODY = 8 * 1024 * 1024
# The request line and headers together; the aggregator's clients send a few hundred bytes.
MAX_HEAD = 64 * 1024
# Pipelined requests in flight per connection before we stop reading from it.
MAX_PIPELINE = 32
JSON = b"application/json"
# After a refusal, how long we keep draining a client that is still sending (nginx lingers 5 s).
LINGER = 2.0


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    target: str
    body: bytes


Answer = tuple[int, bytes, bytes]  # status, JSON body, extra header lines
Handler = Callable[[Request], Awaitable[Answer]]


def answer_json(status: int, obj: object, extra: bytes = b"") -> Answer:
    return status, json.dumps(obj, separators=(",", ":")).encode() + b"\n", extra


class _Dates:
    """The Date header, rebuilt at most once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._date = b""

    def now(self) -> bytes:
        now = time.time()
        if int(now) != self._second:
            self._second, self._date = int(now), http_date(now)
        return self._date


class Connections:
    """What every connection of one aggregator shares: the handler, the Date, the open set."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.dates = _Dates()
        self.open: set[AggProtocol] = set()
        self.draining = False

    def drain(self) -> None:
        self.draining = True
        for conn in list(self.open):
            conn.close_if_idle()


class AggProtocol(asyncio.Protocol):
    """One client connection: parse, hand each complete request to the handler, answer in order."""

    def __init__(self, site: Connections) -> None:
        self._site = site
        self._transport: Any = None
        self._parser = HttpRequestParser(self)
        self._url = b""
        self._body: list[bytes] = []
        self._size = 0
        self._head = 0
        self._refusal: tuple[int, str] | None = None
        self._pending: deque[tuple[asyncio.Future[Answer], bool]] = deque()
        self._last: asyncio.Future[Answer] | None = None
        self._stop = False  # no more requests from this connection
        self._paused = False

    # --- asyncio callbacks -----------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self._transport = transport
        transport.set_write_buffer_limits(WRITE_HIGH_WATER, WRITE_LOW_WATER)
        self._site.open.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._site.open.discard(self)
        self._stop = True
        for fut, _ in self._pending:
            fut.cancel()
        self._pending.clear()

    def data_received(self, data: bytes) -> None:
        if self._stop:
            return
        try:
            self._parser.feed_data(data)
        except HttpParserUpgrade:
            self._refuse(400, "protocol upgrade is not supported")
        except HttpParserError as exc:
            if self._refusal is None:
                self._refuse(400, str(exc) or "malformed request")
        if self._refusal is not None and not self._stop:
            self._refuse(*self._refusal)
        if len(self._pending) >= MAX_PIPELINE and not self._paused:
            self._paused = True
            self._transport.pause_reading()

    # --- llhttp callbacks: set state only ------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url, self._body, self._size, self._head = b"", [], 0, 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._grow_head(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._grow_head(len(name) + len(value) + 4)

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > MAX_BODY:
            self._refusal = (413, f"body larger than {MAX_BODY} bytes")
            raise ValueError  # stops llhttp; data_received sends the refusal
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._stop or self._refusal is not None:
            return
        close = self._site.draining or not self._parser.should_keep_alive()
        method = self._parser.get_method().decode("ascii", "replace")
        request = Request(method, self._url.decode("latin-1"), b"".join(self._body))
        self._url, self._body = b"", []
        fut = asyncio.ensure_future(self._after(self._last, request))
        self._last = fut
        self._queue(fut, close)
        if close:
            self._stop = True

    # --- internals -----------------------------------------------------------------------------

    async def _after(self, previous: asyncio.Future[Answer] | None, request: Request) -> Answer:
        """Handle `request` once the one before it on this connection is done: pipelined requests
        take effect in order, so a GET sees every PUT sent before it."""
        if previous is not None and not previous.done():
            await asyncio.wait([previous])
        return await self._site.handler(request)

    def _grow_head(self, n: int) -> None:
        self._head += n
        if self._head > MAX_HEAD:
            self._refusal = (431, f"request head larger than {MAX_HEAD} bytes")
            raise ValueError

    def _refuse(self, status: int, detail: str) -> None:
        fut: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        fut.set_result(answer_json(status, {"error": detail}))
        self._queue(fut, True)
        self._stop = True

    def _queue(self, fut: asyncio.Future[Answer], close: bool) -> None:
        self._pending.append((fut, close))
        fut.add_done_callback(self._flush)

    def _flush(self, _: object = None) -> None:
        """Write every answer that is ready at the head of the queue; later ones wait their turn."""
        out: list[bytes] = []
        closing = False
        while self._pending and self._pending[0][0].done() and not closing:
            fut, closing = self._pending.popleft()
            if fut.cancelled():
                return
            exc = fut.exception()
            status, body, extra = answer_json(500, {"error": "internal error"}) if exc else fut.result()
            out.append(build(status, self._site.dates.now(), not closing, body, extra, JSON))
        if out and self._transport is not None and not self._transport.is_closing():
            self._transport.write(b"".join(out))
        if closing:
            self._linger()
        elif self._paused and len(self._pending) < MAX_PIPELINE // 2:
            self._paused = False
            self._transport.resume_reading()
        elif self._site.draining and not self._pending:
            self.close_if_idle()

    def _linger(self) -> None:
        """Close our side, but keep reading (and dropping) what the client still sends for a moment:
        closing with unread bytes makes the kernel send RST, which can destroy the answer in flight."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if transport.can_write_eof():
            transport.write_eof()
            asyncio.get_running_loop().call_later(LINGER, transport.close)
        else:
            transport.close()

    @property
    def busy(self) -> bool:
        return bool(self._pending) or bool(self._url)

    def close_if_idle(self) -> None:
        if not self.busy and self._transport is not None:
            self._stop = True
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()
