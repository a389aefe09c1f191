"""Test load clients: many keep-alive connections, counting only the hits the server answered.

Owns: `load()` (a bounded plan of connections x hits x pipeline depth, run to completion) and
`Load` (start, pause at a quiet point, resume, stop) for the crash tests. Every `204` whose answer
arrived is acknowledged; requests sent on a connection that died before its answer came are "in
doubt" (counted or not, the client cannot tell). A dead connection is reopened while running.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

REQ = b"GET /log HTTP/1.1\r\nHost: t\r\n\r\n"
END = b"\r\n\r\n"


class Load:
    def __init__(self, port: int, connections: int = 32, depth: int = 4) -> None:
        self.port = port
        self.connections = connections
        self.depth = depth
        self.acked = 0
        self.in_doubt = 0
        self.resets = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._running = True
        self._paused = False
        self._idle = 0
        self._tasks: list[Any] = []
        self.errors: list[BaseException] = []

    def start(self) -> Load:
        self._thread.start()
        for _ in range(self.connections):
            self._tasks.append(asyncio.run_coroutine_threadsafe(self._conn(), self._loop))
        return self

    def pause(self, timeout: float = 20.0) -> None:
        """Stop sending and wait until every connection has all its answers (nothing in flight)."""
        self._call(self._pause(timeout))

    def resume(self) -> None:
        self._call(self._resume())

    def wait_acked(self, n: int, timeout: float = 30.0) -> None:
        """Block until at least `n` hits are acknowledged in all (progress, not a timing assertion)."""
        self._call(self._wait_acked(n, timeout))

    def stop(self) -> None:
        self._running = False
        for t in self._tasks:
            try:
                t.result(30)
            except Exception as exc:  # a protocol surprise, reported by the test
                self.errors.append(exc)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _call(self, coro: Any) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    async def _pause(self, timeout: float) -> None:
        self._paused = True
        deadline = self._loop.time() + timeout
        while self._idle < self.connections:
            if self._loop.time() > deadline:
                raise TimeoutError("connections did not go quiet")
            await asyncio.sleep(0.005)

    async def _resume(self) -> None:
        self._paused = False

    async def _wait_acked(self, n: int, timeout: float) -> None:
        deadline = self._loop.time() + timeout
        while self.acked < n:
            if self._loop.time() > deadline:
                raise TimeoutError(f"only {self.acked} of {n} hits acknowledged")
            await asyncio.sleep(0.01)

    async def _quiet(self) -> None:
        """Paused: nothing of ours is in flight; wait here until resumed (or stopped)."""
        self._idle += 1
        while self._paused and self._running:
            await asyncio.sleep(0.005)
        self._idle -= 1

    async def _conn(self) -> None:
        while self._running:
            if self._paused:
                await self._quiet()
                continue
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            try:
                await self._serve(reader, writer)
            finally:
                writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while self._running:
            if self._paused:
                await self._quiet()
                continue
            owed = self.depth
            try:
                writer.write(REQ * owed)
                buf = b""
                while owed:
                    chunk = await reader.read(65536)
                    if not chunk:
                        raise ConnectionResetError("closed")
                    buf += chunk
                    n = buf.count(END)
                    if n:
                        assert buf.startswith(b"HTTP/1.1 204"), buf[:40]
                        self.acked += n
                        owed -= n
                        buf = buf[buf.rfind(END) + 4 :]
            except (ConnectionError, OSError):
                self.in_doubt += owed
                self.resets += 1
                return


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
