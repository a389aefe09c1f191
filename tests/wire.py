"""Client-side helpers for the hardening tests: collect everything a server sends on one connection
and split it into strictly parsed HTTP/1.1 responses (1xx and answers to HEAD included).

Owns: `collect` (read until EOF, reset, or a quiet period), `parse` (bytes → responses or a clear
AssertionError), `matches` (status patterns such as "2xx", "414|431|400"). Imports nothing of ours.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass

STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3}) [^\r\n]*")
TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class Outcome:
    replies: list[Reply]
    closed: bool  # the server ended the connection (FIN or RST)

    @property
    def statuses(self) -> list[int]:
        return [r.status for r in self.replies if r.status >= 200]


def collect(sock: socket.socket, quiet: float = 0.5, limit: float = 30.0) -> tuple[bytes, bool]:
    """Everything the server sends until it closes (True) or is quiet for `quiet` seconds (False)."""
    import time

    buf = bytearray()
    end = time.monotonic() + limit
    sock.settimeout(quiet)
    while time.monotonic() < end:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return bytes(buf), False
        except ConnectionResetError:
            return bytes(buf), True
        if not chunk:
            return bytes(buf), True
        buf += chunk
    raise AssertionError(f"server kept sending for {limit} s")


def parse(data: bytes, head_requests: frozenset[int] = frozenset()) -> list[Reply]:
    """Split `data` into responses; the final responses at indices in `head_requests` (counting
    final answers only) answer HEAD and carry no body. Anything malformed fails the test."""
    out: list[Reply] = []
    pos = 0
    finals = 0
    while pos < len(data):
        end = data.find(b"\r\n\r\n", pos)
        assert end >= 0, f"truncated or non-HTTP bytes at {pos}: {data[pos : pos + 80]!r}"
        lines = data[pos:end].split(b"\r\n")
        m = STATUS_LINE.fullmatch(lines[0])
        assert m, f"bad status line {lines[0]!r}"
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            assert sep and TOKEN.fullmatch(name), f"bad header line {line!r}"
            key = name.decode().lower()
            assert key not in headers, f"duplicate header {key}"
            headers[key] = value.strip().decode("latin-1")
        status = int(m.group(1))
        pos = end + 4
        length = 0
        if status >= 200:
            if status not in (204, 304) and finals not in head_requests:
                assert "content-length" in headers, f"{status} without Content-Length"
                length = int(headers["content-length"])
            finals += 1
            assert "transfer-encoding" not in headers
        assert pos + length <= len(data), "truncated body"
        out.append(Reply(status, headers, data[pos : pos + length]))
        pos += length
    return out


def exchange(
    port: int, chunks: list[bytes], delays: list[float] | None = None, quiet: float = 0.5
) -> tuple[bytes, bool]:
    """Send each chunk as one write (pausing `delays[i]` before chunk i+1), then collect."""
    import time

    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i, chunk in enumerate(chunks):
            if i and delays:
                time.sleep(delays[i - 1])
            try:
                s.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break  # the server refused and closed already; what it sent is still readable
        return collect(s, quiet)


def matches(pattern: str, status: int) -> bool:
    """`"2xx"`, `"404"`, `"414|431|400"`, `"2xx|405"`."""
    for alt in pattern.split("|"):
        if alt.endswith("xx") and str(status)[0] == alt[0]:
            return True
        if alt == str(status):
            return True
    return False


def sniff(data: bytes) -> list[Reply]:
    """Strictly parse what the server sent. A body is present unless the answer was to HEAD, which
    shows as the next status line where the body would start (our bodies begin with the status)."""
    out: list[Reply] = []
    pos = 0
    while pos < len(data):
        end = data.find(b"\r\n\r\n", pos)
        assert end >= 0, f"not HTTP at {pos}: {data[pos : pos + 60]!r}"
        lines = data[pos:end].split(b"\r\n")
        m = STATUS_LINE.fullmatch(lines[0])
        assert m, f"bad status line {lines[0]!r}"
        headers = dict(
            (k.strip().lower().decode(), v.strip().decode())
            for k, _, v in (ln.partition(b":") for ln in lines[1:])
        )
        status = int(m.group(1))
        pos = end + 4
        n = int(headers.get("content-length", "0")) if status >= 200 else 0
        if n and not data.startswith(b"%d " % status, pos):
            n = 0  # an answer to HEAD
        assert pos + n <= len(data), "truncated body"
        out.append(Reply(status, headers, data[pos : pos + n]))
        pos += n
    return out
