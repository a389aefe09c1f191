"""Every answer hitcount sends, precomputed as bytes and rebuilt once a second for the Date header.

Owns: `Responses` (status lines, headers and bodies for each route and each connection fate) and
`error_response` (the canned answer to a client's mistake). Imports nothing of ours.
Must not: be built per request; the protocol only picks prebuilt bytes.
"""

from __future__ import annotations

from email.utils import formatdate

SERVER = b"hitcount"

REASONS = {
    100: "Continue",
    200: "OK",
    204: "No Content",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    417: "Expectation Failed",
    413: "Content Too Large",
    414: "URI Too Long",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}


def http_date(now: float) -> bytes:
    """An IMF-fixdate (RFC 9110 §5.6.7), as every 2xx-4xx answer of an origin with a clock needs."""
    return formatdate(now, usegmt=True).encode("ascii")


def build(
    status: int,
    date: bytes,
    keep: bool,
    body: bytes = b"",
    extra: bytes = b"",
    ctype: bytes = b"text/plain; charset=utf-8",
) -> bytes:
    """One complete answer. 204 carries no Content-Length (RFC 9110 §8.6); others always do."""
    head = b"HTTP/1.1 %d %s\r\nServer: %s\r\nDate: %s\r\n" % (
        status,
        REASONS[status].encode("ascii"),
        SERVER,
        date,
    )
    if status != 204:
        head += b"Content-Length: %d\r\n" % len(body)
        if body:
            head += b"Content-Type: %s\r\n" % ctype
    head += extra
    head += b"Connection: keep-alive\r\n\r\n" if keep else b"Connection: close\r\n\r\n"
    return head + body


def error_response(status: int, detail: str, date: bytes) -> bytes:
    """The answer to a request we refuse and then close on: status, a one-line reason, close."""
    return build(status, date, keep=False, body=f"{status} {REASONS[status]}: {detail}\n".encode())


# The interim answer to `Expect: 100-continue` (RFC 9110 §10.1.1, §15.2.1): a status line, no fields.
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class Responses:
    """The answers of one event loop as `(keep-alive, close)` pairs, indexed by `close` (False/True).

    Rebuilt by `refresh` once a second, which swaps whole attributes so a reader never sees a mix.
    """

    __slots__ = ("allow", "date", "hit", "not_found", "not_found_head", "not_allowed")

    def __init__(self, allow: tuple[str, ...], now: float) -> None:
        self.allow = b"Allow: %s\r\n" % ", ".join(allow).encode("ascii")
        self.refresh(now)

    def refresh(self, now: float) -> None:
        date = http_date(now)
        if date == getattr(self, "date", None):
            return
        self.date = date
        self.hit = (build(204, date, True), build(204, date, False))
        nf = b"404 Not Found\n"
        self.not_found = (build(404, date, True, nf), build(404, date, False, nf))
        self.not_found_head = tuple(r[: len(r) - len(nf)] for r in self.not_found)
        na = b"405 Method Not Allowed\n"
        self.not_allowed = (
            build(405, date, True, na, self.allow),
            build(405, date, False, na, self.allow),
        )
