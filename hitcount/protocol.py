"""HTTP/1.1 on asyncio.Protocol: bytes → httptools (llhttp) → route → counter → one write per read.

Owns: `Site` (one loop's routes, answers, counter slot and open connections) and `HitProtocol`.
The only module that imports httptools. Imports `counter`, `responses`.
Must not: allocate, log, read a clock or call the kernel per request. Parser callbacks only set state
(httptools turns anything they raise into a generic parser error); `data_received` acts after
`feed_data` returns, so answers owed for requests completed before a bad one still go out, in order.
"""

from __future__ import annotations

import asyncio
from typing import Any

from httptools import HttpParserError, HttpParserUpgrade, HttpRequestParser

from .config import WRITE_HIGH_WATER, WRITE_LOW_WATER, Config
from .counter import Counter
from .responses import Responses, error_response


class _Stop(Exception):
    """Raised from a callback to stop llhttp after a request that ends the connection."""


class Site:
    """What every connection of one event loop shares: routes, answers, the counter, the open set."""

    __slots__ = (
        "path",
        "path_q",
        "counted",
        "responses",
        "view",
        "index",
        "connections",
        "draining",
    )

    def __init__(self, config: Config, counter: Counter, now: float) -> None:
        self.path = config.path.encode("ascii")
        self.path_q = self.path + b"?"
        self.counted = frozenset(m.encode("ascii") for m in config.methods)
        allow = tuple(dict.fromkeys((*config.methods, "HEAD")))
        self.responses = Responses(allow, now)
        self.view = counter.view  # the slot itself, so a read's hits cost one in-place add
        self.index = counter.index
        self.connections: set[HitProtocol] = set()
        self.draining = False

    def drain(self) -> None:
        """Shutdown: answer every request already received with `Connection: close`; close idle."""
        self.draining = True
        for conn in list(self.connections):
            conn.drain()


class HitProtocol(asyncio.Protocol):
    """One client connection. Pipelined requests are answered in order, in one write per read."""

    __slots__ = ("_site", "_transport", "_parser", "_url", "_out", "_hits", "_stop")

    def __init__(self, site: Site) -> None:
        self._site = site
        self._transport: Any = None
        self._url = b""
        self._out: list[bytes] = []
        self._hits = 0
        self._stop = False

    # --- asyncio callbacks -------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self._transport = transport
        self._parser = HttpRequestParser(self)
        transport.set_write_buffer_limits(WRITE_HIGH_WATER, WRITE_LOW_WATER)
        self._site.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._site.connections.discard(self)
        self._stop = True

    def pause_writing(self) -> None:
        # The client is not reading its answers: stop reading its requests (bounded memory).
        self._transport.pause_reading()

    def resume_writing(self) -> None:
        if not self._stop:
            self._transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self._stop:
            return
        self._feed(data)
        site = self._site
        if self._hits:
            # Counted before the answers are written: every acknowledged hit is in the slot.
            site.view[site.index] += self._hits
            self._hits = 0
        out = self._out
        if out:
            self._transport.write(out[0] if len(out) == 1 else b"".join(out))
            out.clear()
        if self._stop:
            self._transport.close()

    def eof_received(self) -> bool | None:
        # A half-closed client may still read: answers already written stay queued, then we close.
        return None

    # --- llhttp callbacks: set state only ------------------------------------------------------

    def on_url(self, url: bytes) -> None:
        self._url += url  # llhttp hands the target over in pieces when it straddles two reads

    def on_message_complete(self) -> None:
        url = self._url
        self._url = b""
        site = self._site
        parser = self._parser
        close = site.draining or not parser.should_keep_alive()
        r = site.responses
        if url == site.path or url.startswith(site.path_q):
            method = parser.get_method()
            if method in site.counted:
                self._hits += 1
                self._out.append(r.hit[close])
            elif method == b"HEAD":
                self._out.append(r.hit[close])
            else:
                self._out.append(r.not_allowed[close])
        elif parser.get_method() == b"HEAD":
            self._out.append(r.not_found_head[close])
        else:
            self._out.append(r.not_found[close])
        if close:
            self._stop = True
            raise _Stop

    # --- internals -----------------------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        while True:
            try:
                self._parser.feed_data(data)
                return
            except HttpParserUpgrade as exc:
                # RFC 9110 §7.8: a server may ignore Upgrade. The request was answered as plain
                # HTTP/1.1; whatever follows it is parsed as the next request.
                data = data[exc.args[0] :]
                self._parser = HttpRequestParser(self)
                if not data or self._stop:
                    return
            except HttpParserError as exc:
                if not self._stop:  # not our own _Stop: the client sent bytes we cannot parse
                    self._refuse(400, str(exc) or "malformed request")
                return

    def _refuse(self, status: int, detail: str) -> None:
        self._out.append(error_response(status, detail, self._site.responses.date))
        self._stop = True

    def abort(self) -> None:
        self._stop = True
        if self._transport is not None:
            self._transport.abort()

    def drain(self) -> None:
        """Close now if idle; otherwise the request in progress is answered with a close."""
        if not self._url and not self._stop and self._transport is not None:
            self._stop = True
            self._transport.close()
