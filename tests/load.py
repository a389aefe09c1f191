"""A test load client: many connections, pipelined or not, counting only the hits the server answered.

Runs on its own event loop (in a thread or the test's own), talking to a server in another process.
"""

from __future__ import annotations

import asyncio
import time

REQ = b"GET /log HTTP/1.1\r\nHost: t\r\n\r\n"
ANSWER = b"HTTP/1.1 204 "


async def connection(port: int, n: int, depth: int, stop_at: float = float("inf")) -> int:
    """Send up to `n` hits, `depth` per write, until done or `stop_at` (monotonic) or the server
    closes. Returns how many 204 answers arrived: the hits this client saw acknowledged."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return 0
    acked = 0
    try:
        while acked < n and time.monotonic() < stop_at:
            k = min(depth, n - acked)
            writer.write(REQ * k)
            for _ in range(k):
                head = await reader.readuntil(b"\r\n\r\n")
                if not head.startswith(ANSWER):
                    raise AssertionError(f"unexpected answer {head!r}")
                acked += 1
                if b"Connection: close" in head:
                    return acked
    except (asyncio.IncompleteReadError, ConnectionError):
        pass  # the server stopped; whatever was answered is counted above
    finally:
        writer.close()
    return acked


async def load(port: int, plan: list[tuple[int, int, int]], seconds: float = 600.0) -> int:
    """`plan` is a list of (connections, hits each, pipeline depth). Returns total acknowledged."""
    stop_at = time.monotonic() + seconds
    jobs = [connection(port, n, depth, stop_at) for conns, n, depth in plan for _ in range(conns)]
    return sum(await asyncio.gather(*jobs))
