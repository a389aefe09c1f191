"""Request-head limits measured on the raw bytes, for the fast GET/HEAD parser that has no per-header
callback: a head's bytes and lines are counted as they stream in, and every head a read could hold
over the limits is measured before llhttp can complete (and so count) it.

Owns: `HeadLimits` (a mixin of HitProtocol: the state it reads is HitProtocol's slots), and the byte
helpers `skip_blank_lines` and `head_end`. Imports `site` and `careful` (to hand it a body that
looked like heads); never httptools itself.
Must not: run on the hot path: HitProtocol calls in only for reads longer than `Site.scan`, reads
after one that ended inside a head, and reads that end inside one.
"""

from __future__ import annotations

from .careful import Careful
from .site import Site

CRLF2 = b"\r\n\r\n"


class HeadLimits:
    """Head accounting for HitProtocol. `_head`/`_lines`: bytes and LFs of the head left open by
    the last read (0: none); `_carry`: its last 3 bytes (its blank line may straddle reads)."""

    __slots__ = ("_head", "_lines", "_carry")
    _head: int
    _lines: int
    _carry: bytes

    _site: Site  # the rest is HitProtocol's, read only here
    stopped: bool
    _careful: Careful | None

    def _feed(self, data: bytes) -> None:
        raise NotImplementedError

    def refuse(self, status: int, kind: str, detail: str) -> None:
        raise NotImplementedError

    def _scan_heads(self, data: bytes) -> None:
        """Feed `data`, refusing (414/431) at the first head over a limit, before parsing it."""
        site = self._site
        n = len(data)
        if not self._head and n <= site.fast_max and data.count(b"\n") <= site.max_lines:
            self._feed(data)  # no head in it can be too large or have too many lines
            return
        pos = 0
        if self._head:  # the rest of a GET/HEAD head begun in earlier reads
            end = head_end(self._carry, data)
            stop = n if end < 0 else end
            if not self._fits(self._head + stop, self._lines + data.count(b"\n", 0, stop)):
                return
            if end < 0:
                self._feed(data)
                return
            pos = end
        # Heads that start in this read, up to the first that is not GET/HEAD (the careful parser
        # measures those itself). The first is measured whatever it starts with: its method may
        # have begun in the last read ("GE" | "T /log ...").
        first = pos == 0
        while pos < n:
            pos = skip_blank_lines(data, pos)
            if not (first or data.startswith(b"GET ", pos) or data.startswith(b"HEAD ", pos)):
                break
            first = False
            end = data.find(CRLF2, pos)
            stop = n if end < 0 else end + 4
            if not self._measure(data, pos, stop):
                self._feed(data[:pos])
                if self._careful is not None and not self.stopped:
                    # A request before it was not GET/HEAD, so what looked like a head may be its
                    # body: the careful parser, which measures heads itself, takes the rest.
                    self._careful.feed(data[pos:])
                elif not self.stopped:
                    self._measure(data, pos, stop, refuse=True)
                return
            if end < 0:
                break
            pos = stop
        self._feed(data)

    def _measure(self, buf: bytes, pos: int, stop: int, refuse: bool = False) -> bool:
        """Is the head in buf[pos:stop] within the limits? With `refuse`, refuse it (414/431)."""
        site = self._site
        line = buf.find(b"\r\n", pos, stop)
        eol = stop if line < 0 else line
        first, last = buf.find(b" ", pos, eol), buf.rfind(b" ", pos, eol)
        # "GET /x HTTP/1.1", or "/x HTTP/1.1" when the method came in the previous read
        target = last - first - 1 if first < last else last - pos
        if target > site.max_url or (line < 0 and stop - pos > site.max_url + 16):
            if refuse:
                self.refuse(414, "url_too_long", "request target too long")
            return False
        if not refuse:
            return stop - pos <= site.max_head and buf.count(b"\n", pos, stop) <= site.max_lines
        return self._fits(stop - pos, buf.count(b"\n", pos, stop))

    def _fits(self, head: int, lines: int) -> bool:
        """True if a head of `head` bytes and `lines` LFs is within the limits; else refuse (431)."""
        site = self._site
        if self.stopped or (head <= site.max_head and lines <= site.max_lines):
            return not self.stopped
        if head > site.max_head:
            self.refuse(431, "head_too_large", f"request head larger than {site.max_head} bytes")
        else:
            self.refuse(431, "too_many_headers", f"more than {site.max_lines - 2} header fields")
        return False

    def _open_head(self, data: bytes, done: bool, body_before: int) -> bool:
        """The read ended inside a head: count it and bound it. True if the head began in this read.
        `body_before`: Content-Length body bytes of the request just before it (careful mode)."""
        new = not self._head or done
        if new:  # it began after the last blank line (and after any body before it)
            i = data.rfind(CRLF2)
            if i >= 0:
                end = i + 4
            elif done and self._head:  # the blank line ending the last head straddled two reads
                end = max(head_end(self._carry, data), 0)
            else:
                end = 0
            # not the CRLFs llhttp skips between requests: they are no part of the head
            start = skip_blank_lines(data, min(len(data), end + body_before))
            self._head = max(len(data) - start, 1)
            self._lines = data.count(b"\n", start)
        else:
            self._head += len(data)
            self._lines += data.count(b"\n")
        self._carry = data[-3:]
        self._fits(self._head, self._lines)
        return new


def skip_blank_lines(data: bytes, pos: int) -> int:
    """Past the CRLFs llhttp tolerates before a request line."""
    n = len(data)
    while pos < n and data[pos] in (13, 10):
        pos += 1
    return pos


def head_end(carry: bytes, data: bytes) -> int:
    """The offset in `data` just past the blank line that ends a head begun before `data` (whose
    last bytes are `carry`), or -1. The CRLFCRLF may straddle the two."""
    tail = carry[-3:]
    i = (tail + data[:3]).find(CRLF2)
    if i >= 0:
        return i + 4 - len(tail)
    i = data.find(CRLF2)
    return i + 4 if i >= 0 else -1
