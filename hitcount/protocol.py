"""HTTP/1.1 on asyncio.Protocol: bytes → httptools (llhttp) → route → counter → one write per read.

Owns: `HitProtocol` (one connection: the fast GET/HEAD parser, its deadline, backpressure, lingering
close). Re-exports `Site`. Builds on `careful` (non-GET/HEAD requests) and `heads` (head limits on
the raw bytes, so the fast parser needs no per-header callback); with careful.py the only importer
of httptools. Must not: allocate, log, read a clock or call the kernel per request. Callbacks only
set state; `data_received` acts after `feed_data` returns, so answers owed before a bad request still
go out, in order.
"""

from __future__ import annotations

import asyncio
from typing import Any

from httptools import HttpParserError, HttpParserUpgrade, HttpRequestParser

from .careful import BODY, IDLE, Careful, Stop, status_of
from .config import LINGER_BYTES, REPLAY_ENTRIES, REPLAY_MAX_READ, WRITE_HIGH_WATER, WRITE_LOW_WATER
from .heads import CRLF2, HeadLimits, skip_blank_lines
from .owed import MIN_PROGRESS, unsent
from .responses import CONTINUE, build, error_response
from .site import Site

__all__ = ["HitProtocol", "Site"]

V11 = b" HTTP/1.1\r\n"


class HitProtocol(HeadLimits, asyncio.Protocol):
    """One client connection. Pipelined requests are answered in order, in one write per read."""

    __slots__ = (
        "_site",
        "_transport",
        "_parser",
        "_url",
        "_method",
        "out",
        "hits",
        "stopped",
        "_switch",
        "_careful",
        "_slow",
        "_exact",
        "_vpos",
        "_refused_first",
        "_drained",
        "_owed",
        "deadline",
        "_clean",
    )

    def __init__(self, site: Site) -> None:
        self._site = site
        self._transport: Any = None
        self._url = b""
        self._method = b""
        self.out: list[bytes] = []
        self.hits = 0
        self.stopped = False
        self._switch = False  # on_url met a method that needs the careful parser
        self._careful: Careful | None = None
        self._slow = False  # careful parser active, or a request head left open by the last read
        self._head = 0  # bytes of the open request head, as of the end of the last read
        self._lines = 0  # LFs in it
        self._carry = b""  # its last 3 bytes: the blank line that ends it may straddle two reads
        self._exact = False  # ask llhttp every request's version (else: the raw first line, below)
        self._drained = 0  # bytes dropped after our last answer (lingering close)
        self._owed = -1  # unsent answer bytes at the last sweep while lingering (-1: not looked yet)
        self._refused_first = False  # a read's first answer was a refusal, not a request's
        self._vpos = 0  # where " HTTP/1.1\r\n" must start in a plain read's first request
        self.deadline = site.head_deadline
        self._clean = True  # llhttp is at a request boundary, in fast mode, nothing carried over

    # --- asyncio callbacks -------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self._transport = transport
        site = self._site
        if site.limit_concurrency and len(site.connections) >= site.limit_concurrency:
            self.stopped = True
            site.refuse("over_limit_concurrency")
            transport.write(error_response(503, "too many connections", site.responses.date))
            transport.close()
            return
        self._parser = HttpRequestParser(self)
        transport.set_write_buffer_limits(WRITE_HIGH_WATER, WRITE_LOW_WATER)
        site.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._site.connections.discard(self)
        self.stopped = True

    def pause_writing(self) -> None:
        # The client is not reading its answers: stop reading its requests (bounded memory).
        self._transport.pause_reading()

    def resume_writing(self) -> None:
        if not self.stopped:
            self.deadline = self._site.keep_deadline  # it reads again: that is progress
            self._transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.stopped:
            self._drained += len(data)
            if self._drained > LINGER_BYTES and not unsent(self._transport):
                self._transport.abort()  # every answer has reached the client: an RST loses nothing
            return
        site = self._site
        if self._clean:
            # The replay memo: these exact bytes, from this same state (a request boundary), were
            # parsed by llhttp this second, ended at a boundary again and were answered without a
            # refusal or a close. llhttp and the code below are deterministic, so doing it again
            # gives the same answers and hits; skip straight to counting and writing them.
            known = site.replay.get(data)
            if known is not None:
                if known[1]:
                    site.view[site.index] += known[1]  # counted before the answers are written
                self.deadline = site.keep_deadline
                self._transport.write(known[0])
                return
        out = self.out
        if self._slow or len(data) > site.scan:
            self._exact = True
            self._feed_checked(data)
            self._exact = False
        else:
            self._feed(data)
            if out and data.find(V11) != self._vpos:
                self._check_first_version(data)  # not a plain HTTP/1.1 request line: look closer
        if self.stopped:
            self.deadline = site.keep_deadline  # time to flush the last answers, then abort
        elif self._url or self._slow:
            self._left_open(data, bool(out))  # rare: a read ended inside a request
        elif out:
            self.deadline = site.keep_deadline
        hits = self.hits
        if hits:
            # Counted before the answers are written: every acknowledged hit is in the slot.
            site.view[site.index] += hits
            self.hits = 0
        was_clean = self._clean
        self._clean = clean = not (self.stopped or self._url or self._slow) and data[-1] == 10
        if out:
            answers = out[0] if len(out) == 1 else b"".join(out)
            self._transport.write(answers)
            out.clear()
            if clean and was_clean and len(site.replay) < REPLAY_ENTRIES and len(data) <= REPLAY_MAX_READ:
                site.replay[data] = (answers, hits)
        if self.stopped:
            # Lingering close (as nginx does): send our FIN after the answers but keep reading (and
            # dropping) what the client still sends until it closes, or the sweep aborts it. Closing
            # with unread bytes would make the kernel send RST, and a client can lose answers already
            # in flight (counted hits) to it.
            self._transport.write_eof()

    def eof_received(self) -> bool | None:
        # A half-closed client may still read: answers already written stay queued, then we close.
        return None

    # --- llhttp callbacks: set state only ------------------------------------------------------

    def on_url(self, url: bytes) -> None:
        if self._url:  # the target straddles reads: llhttp hands it over in pieces
            self._url += url
            if len(self._url) > self._site.max_url:
                self._refuse_now(414, "url_too_long", "request target too long")
            return
        self._url = url
        method = self._method = self._parser.get_method()
        if method != b"GET" and method != b"HEAD":
            self._switch = True  # may carry a body: the careful parser takes over from this request
            raise Stop

    def on_body(self, body: bytes) -> None:
        self._refuse_now(400, "body_on_get", "GET and HEAD requests must not carry a body here")

    def on_message_complete(self) -> None:
        url = self._url
        self._url = b""
        site = self._site
        parser = self._parser
        if self.out or self._exact:
            version = parser.get_http_version()
            if version != "1.1" and version != "1.0":
                self._refuse_now(505, "http_version", f"HTTP/{version} is not served here")
        else:  # the first request of a plain read: data_received checks its request line
            self._vpos = len(self._method) + 1 + len(url)
        close = site.draining or not parser.should_keep_alive()
        r = site.responses
        if url == site.path or url.startswith(site.path_q):
            if self._method in site.counted:
                self.hits += 1
            self.out.append(r.hit[close])
        elif url in site.pages:  # /livez, /readyz, /metrics (probes.py): never on the hit path
            self.out.append(site.pages[url](r.date, self._method == b"HEAD", close))
            self._clean = False  # a page's answer changes with the state it reports: never replay it
        elif self._method == b"HEAD":
            self.out.append(r.not_found_head[close])
        else:
            self.out.append(r.not_found[close])
        if close:
            self.stopped = True
            raise Stop

    # --- internals -----------------------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        done = 0  # answers queued before `data` (out is empty when a read starts)
        while True:
            try:
                self._parser.feed_data(data)
                return
            except HttpParserUpgrade as exc:
                # RFC 9110 §7.8: a server may ignore Upgrade. The request was answered as plain
                # HTTP/1.1; whatever follows it is parsed as the next request.
                data = data[exc.args[0] :]
                self._parser = HttpRequestParser(self)
                done = len(self.out)
                if not data or self.stopped:
                    return
            except HttpParserError as exc:
                if self._switch:
                    self._to_careful(data, len(self.out) - done)
                elif not self.stopped:  # not our own Stop: the client sent bytes we cannot parse
                    status, kind = status_of(exc)
                    self.refuse(status, kind, str(exc) or "malformed request")
                return

    def _check_first_version(self, data: bytes) -> None:
        """llhttp also accepts HTTP/0.9 and HTTP/2.0 request lines; we answer only 1.0 and 1.1 (505).
        For the first request of a read that began between requests, the version is checked here on
        its raw request line (one `find` instead of llhttp's version string per request). If it is
        bad, nothing of this read is answered or counted but the 505."""
        if self._refused_first:
            return
        pos = skip_blank_lines(data, 0)
        line = data[pos : data.find(b"\r\n", pos)]
        if line.endswith(b" HTTP/1.1") or line.endswith(b" HTTP/1.0"):
            return
        self.out.clear()
        self.hits = 0
        version = line.rpartition(b" ")[2].decode("latin-1") or "0.9"
        self.refuse(505, "http_version", f"{version} is not served here")

    def _to_careful(self, data: bytes, done: int) -> None:
        """Re-parse, carefully, from the start of the request whose method needs every header.
        Every request before it (`done` of them in `data`) was a bodiless GET/HEAD, so each ended at
        its blank line (the first maybe begun in an earlier read: `carry` has its last bytes)."""
        method, url = self._method, self._url
        self._switch = False
        self._url = b""
        stream = self._carry + data if done and self._head else data
        pos = 0
        for i in range(done):
            if i or not self._head:
                pos = skip_blank_lines(stream, pos)
            pos = stream.find(CRLF2, pos) + 4
        pos = skip_blank_lines(stream, pos)
        if not stream.startswith(method + b" ", pos):
            # Its method began in the previous read ("PO" | "ST /log ..."): llhttp has told us the
            # method, and the target starts in this read, so the request line can be rebuilt.
            stream = method + b" " + stream[stream.find(url, pos) :]
            pos = 0
        self._careful = careful = Careful(self, self._site)
        self._slow = True
        self._head = self._lines = 0
        self._carry = b""
        careful.feed(stream[pos:])

    def _feed_checked(self, data: bytes) -> None:
        """Rare: careful mode, an open head carried over, or a read long enough to hold an oversized
        head (see HeadLimits)."""
        if self._careful is not None:
            self._careful.feed(data)
        else:
            self._scan_heads(data)

    def _left_open(self, data: bytes, done: bool) -> None:
        """Rare: the read ended inside a request, or in careful mode. Moves the deadline (a new head
        gets --timeout-header from its first byte; a body, from each read) and bounds the head."""
        site = self._site
        careful = self._careful
        if careful is None:
            if self._url:
                self._head_left_open(data, done, 0)
                return
            # the read ended between requests (or inside a method: a few bytes)
            self._slow = False
            self._head = self._lines = 0
            if done:
                self.deadline = site.keep_deadline
        elif careful.state == IDLE:  # between requests again: back to the fast parser
            self._careful = None
            self._parser = HttpRequestParser(self)
            self._slow = False
            self._head = self._lines = 0
            if done:
                self.deadline = site.keep_deadline
        elif careful.state == BODY:
            self._head = 0
            self.deadline = site.head_deadline
            if careful.continue_pending:  # RFC 9110 §10.1.1: the client may be waiting for this
                careful.continue_pending = False
                self.out.append(CONTINUE)
        else:
            self._head_left_open(data, done, careful.body_before)

    def _head_left_open(self, data: bytes, done: bool, body_before: int) -> None:
        self._slow = True
        if self._open_head(data, done, body_before):
            self.deadline = self._site.head_deadline  # a new head: --timeout-header from now

    def refuse(self, status: int, kind: str, detail: str) -> None:
        """A client's mistake: queue the canned answer (after those already owed), then close."""
        self._refused_first = not self.out
        self.out.append(error_response(status, detail, self._site.responses.date))
        self.stopped = True
        self._site.refuse(kind)

    def _refuse_now(self, status: int, kind: str, detail: str) -> None:
        self.refuse(status, kind, detail)
        raise Stop

    def expire(self) -> None:
        """Called by the sweep once the deadline has passed: a head not completed in time gets 408,
        an idle keep-alive connection is closed; one still open a period later is aborted."""
        transport = self._transport
        if self.stopped:
            owed = unsent(transport)
            if owed and (self._owed < 0 or self._owed - owed >= min(MIN_PROGRESS, self._owed)):
                # Still delivering answers to counted hits, and the client reads them: an abort now
                # would drop them (RST). Give it another period.
                self._owed = owed
                self.deadline = self._site.keep_deadline
                return
            transport.abort()
            return
        if self._head or self._url or self._careful is not None:
            transport.write(build(408, self._site.responses.date, keep=False))
            self._site.refuse("timeout")
        self.stopped = True
        self.deadline = self._site.keep_deadline
        transport.write_eof()

    def abort(self) -> None:
        self.stopped = True
        if self._transport is not None:
            self._transport.abort()

    def drain(self) -> None:
        """Shutdown: close now if idle or lingering and nothing is owed to the client; linger if
        answers are still on their way; a request in progress is answered with a close."""
        transport = self._transport
        if transport is None or not (self.stopped or not (self._url or self._head or self._careful)):
            return
        if not unsent(transport):
            self.stopped = True
            transport.close()  # nothing owed: even an RST (over unread input) loses nothing
            return
        # Answers to counted hits are still on their way: a close with unread input (pipelined
        # requests we will not answer) would RST them away. Linger instead: FIN after the answers,
        # drop what comes in; the client closes, or the sweep / the graceful timeout aborts.
        if not self.stopped:
            self.stopped = True
            self.deadline = self._site.keep_deadline
            transport.write_eof()
        transport.resume_reading()
