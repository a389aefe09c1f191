"""The ceiling for Python on uvloop: answers 204 to every request without parsing it.

Owns nothing but the fastest honest loop: count request terminators (so pipelined requests each
get an answer and a counted hit), write one canned answer per request in one write, and close when
the client asked for it. No HTTP parser, no Date header, no per-second records.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from typing import Any

import uvloop

ANSWER = b"HTTP/1.1 204 No Content\r\nServer: null\r\n\r\n"
CLOSE = b"HTTP/1.1 204 No Content\r\nServer: null\r\nConnection: close\r\n\r\n"
END = b"\r\n\r\n"


class Null(asyncio.Protocol):
    __slots__ = ("transport", "tail")
    hits = 0

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.tail = b""

    def data_received(self, data: bytes) -> None:
        # A terminator split across two reads is found in the previous read's last 3 bytes + this one.
        buf = self.tail + data if self.tail else data
        n = buf.count(END)
        self.tail = buf[-3:] if not buf.endswith(END) else b""
        if not n:
            return
        Null.hits += n
        if b"onnection: close" in buf:  # "new connection per request": honour it, as peers do
            self.transport.write(ANSWER * (n - 1) + CLOSE)
            self.transport.close()
        else:
            self.transport.write(ANSWER * n)


async def serve(host: str, port: int, backlog: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Null, host, port, backlog=backlog)
    async with server:
        await server.serve_forever()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--backlog", type=int, default=2048)
    a = p.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(a.host, a.port, a.backlog))


if __name__ == "__main__":
    main()
