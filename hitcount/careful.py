"""The slow half of the HTTP protocol: a parser that sees every header, for requests that may carry a
body (anything but GET/HEAD) and for what follows them on the same read.

Owns: `Careful` (one message stream parsed with every callback, the exact head limits, Content-Length,
Transfer-Encoding codings, `Expect: 100-continue`, the body limit) and `status_of` (llhttp's error →
our status). With protocol.py the only module that imports httptools; `HitProtocol` hands a
connection's bytes here from the first request that is not GET/HEAD until a read ends between
requests, so the hot path (GET /log) never pays for per-header callbacks.
Must not: write to the transport or count by itself: answers go to the owner's `out`, hits to its
`hits`, and a refusal goes through the owner's `refuse` (which stops the connection).
"""

from __future__ import annotations

from typing import Any

from httptools import HttpParserError, HttpParserInvalidURLError, HttpParserUpgrade, HttpRequestParser

from .site import Site

IDLE, HEAD, BODY = 0, 1, 2
NO_BODY = (b"GET", b"HEAD")
# Head bytes besides method, target and fields: the space after the method, " HTTP/1.1\r\n", and the
# blank line that ends the head.
LINE_EXTRA = 14
# A chunked body's framing (sizes, extensions, CRLFs) is not body, so --limit-max-body alone does not
# bound it: an endless chunk extension or run of leading zeros would hold a connection for ever. The
# bytes read while inside one body are bounded instead by this many times the body limit plus
# FRAMING_SLACK (1-byte chunks cost 6 bytes on the wire each; nobody sends a large body that way).
WIRE_FACTOR = 8
FRAMING_SLACK = 64 * 1024


class Stop(Exception):
    """Raised from a callback to stop llhttp once the connection's fate is sealed (refused, closing)."""


def status_of(exc: HttpParserError) -> tuple[int, str]:
    """The status and log kind for an llhttp error: an unsupported version is 505, a transfer coding
    llhttp cannot frame is 501 (RFC 9112 §6.1), any other malformed input is 400."""
    text = str(exc)
    if "HTTP version" in text:
        return 505, "http_version"
    if text.startswith("Request has invalid `Transfer-Encoding`"):
        return 501, "transfer_coding"
    if isinstance(exc, HttpParserInvalidURLError):
        return 400, "bad_target"
    return 400, "malformed"


class Careful:
    """Parses a connection's requests with every header visible. `state` tells the owner whether a
    read ended between requests (IDLE: hand back to the fast parser), inside a head, or in a body."""

    __slots__ = (
        "_owner",
        "_site",
        "parser",
        "state",
        "body",
        "body_before",
        "wire",
        "continue_pending",
        "_url",
        "_head",
        "_headers",
        "_length",
        "_codings",
        "_expect",
        "_method",
    )

    def __init__(self, owner: Any, site: Site) -> None:
        self._owner = owner  # HitProtocol: .out, .hits, .refuse(status, kind, detail), .stopped
        self._site = site
        self.parser = HttpRequestParser(self)
        self.state = IDLE
        self.body = 0  # body bytes of the current message
        # Content-Length body bytes of the last completed message: a head that starts after it in
        # the same read starts that many bytes after its blank line (chunked ones end at one).
        self.body_before = 0
        self.wire = 0  # bytes of the reads that ended inside the current body (an upper bound)
        self.continue_pending = False
        self._reset()

    def _reset(self) -> None:
        self._url = b""
        self._method = b""
        self._head = 0
        self._headers = 0
        self._length = 0
        self._codings: list[bytes] = []
        self._expect = False

    def feed(self, data: bytes) -> None:
        owner = self._owner
        while True:
            try:
                self.parser.feed_data(data)
                if self.state == BODY and not owner.stopped:
                    self._bound_wire(len(data))
                return
            except HttpParserUpgrade as exc:
                # RFC 9110 §7.8: Upgrade may be ignored; the request was answered as plain HTTP/1.1.
                data = data[exc.args[0] :]
                self.parser = HttpRequestParser(self)
                self.state = IDLE
                if not data or owner.stopped:
                    return
            except HttpParserError as exc:
                if not owner.stopped:
                    status, kind = status_of(exc)
                    owner.refuse(status, kind, str(exc) or "malformed request")
                return

    def _bound_wire(self, n: int) -> None:
        """The read ended inside a body: bound the body's bytes on the wire (see WIRE_FACTOR)."""
        self.wire += n
        if self.wire > self._site.max_body * WIRE_FACTOR + FRAMING_SLACK:
            self._owner.refuse(413, "body_too_large", "chunked body framing too large")

    def _refuse(self, status: int, kind: str, detail: str) -> None:
        self._owner.refuse(status, kind, detail)
        raise Stop

    # --- llhttp callbacks ----------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.state = HEAD
        self.body = 0
        self._reset()

    def on_url(self, url: bytes) -> None:
        if not self._url:  # the method counts towards the head as the fast parser measures it
            self._head = len(self.parser.get_method())
        self._url += url
        if len(self._url) > self._site.max_url:
            self._refuse(414, "url_too_long", f"request target longer than {self._site.max_url} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        site = self._site
        self._headers += 1
        self._head += len(name) + len(value) + 4  # "name: value\r\n", the separator counted as 2
        if self._headers > site.max_lines - 2:
            self._refuse(431, "too_many_headers", f"more than {site.max_lines - 2} header fields")
        if self._head + len(self._url) + LINE_EXTRA > site.max_head:
            self._refuse(431, "head_too_large", f"request head larger than {site.max_head} bytes")
        name = name.lower()
        if name == b"content-length":
            self._length = int(value)  # llhttp has already refused anything but one plain number
        elif name == b"transfer-encoding":
            self._codings += [c.strip().lower() for c in value.split(b",") if c.strip()]
        elif name == b"expect":
            self._expect = value.strip().lower() == b"100-continue"

    def on_headers_complete(self) -> None:
        self.state = BODY
        self.wire = 0
        parser = self.parser
        version = parser.get_http_version()
        if version != "1.1" and version != "1.0":
            self._refuse(505, "http_version", f"HTTP/{version} is not served here (1.0 and 1.1 are)")
        if any(c != b"chunked" for c in self._codings):
            self._refuse(501, "transfer_coding", "only the chunked transfer coding is implemented")
        self._method = parser.get_method()
        site = self._site
        if self._method in NO_BODY and self._length:
            self._refuse(400, "body_on_get", "GET and HEAD requests must not carry a body here")
        if self._length > site.max_body:
            self._refuse(413, "body_too_large", f"body larger than {site.max_body} bytes")
        if self._expect and version == "1.1" and (self._length or self._codings):
            answer, _ = site.route(self._method, self._url)
            if answer is not site.responses.hit:
                # Refused before the body was sent (RFC 9110 §10.1.1): answer now and close.
                self._owner.out.append(answer[True])
                self._owner.stopped = True
                raise Stop
            self.continue_pending = True

    def on_body(self, body: bytes) -> None:
        self.continue_pending = False  # the client did not wait for 100; it may be omitted
        if self._method in NO_BODY:
            self._refuse(400, "body_on_get", "GET and HEAD requests must not carry a body here")
        self.body += len(body)
        if self.body > self._site.max_body:
            self._refuse(413, "body_too_large", f"body larger than {self._site.max_body} bytes")

    def on_message_complete(self) -> None:
        self.state = IDLE
        self.body_before = 0 if self._codings else self.body
        self.continue_pending = False
        site = self._site
        owner = self._owner
        close = site.draining or not self.parser.should_keep_alive()
        answer, counts = site.route(self._method, self._url)
        if counts:
            owner.hits += 1
        owner.out.append(answer[close])
        if close:
            owner.stopped = True
            raise Stop
