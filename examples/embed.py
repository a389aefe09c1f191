"""Embedding hitcount in an asyncio program: serve /log for a few seconds, print each record.

Run: python examples/embed.py [seconds]   (tests/test_examples.py runs it)
"""

from __future__ import annotations

import asyncio
import sys

import hitcount


async def send_hits(port: int, n: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /log HTTP/1.1\r\nHost: localhost\r\n\r\n" * n)
    for _ in range(n):
        await reader.readuntil(b"\r\n\r\n")
    writer.close()


async def main(seconds: float) -> None:
    async with hitcount.Collector(port=0, server_id="embedded") as c:
        print(f"serving on http://127.0.0.1:{c.port}/log", flush=True)

        async def show() -> None:
            async for record in c.records():
                print(record.as_dict(), flush=True)

        printer = asyncio.create_task(show())
        for _ in range(int(seconds)):
            await send_hits(c.port, 100)
            await asyncio.sleep(1)
    await printer  # ends once the collector has stopped and emitted its last, partial second
    print(f"total {c.total}")


if __name__ == "__main__":
    asyncio.run(main(float(sys.argv[1]) if len(sys.argv) > 1 else 3.0))
