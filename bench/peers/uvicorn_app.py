"""uvicorn (uvloop + httptools) with the smallest ASGI app that counts: GET /log → 204, count += 1.

Owns the app and uvicorn's settings for the benchmark: access log off (hitcount keeps none either),
lifespan off, everything else at uvicorn's defaults. No per-second records: uvicorn is measured for
its request cost, not its accuracy.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn

hits = 0
START = {"type": "http.response.start", "status": 204, "headers": []}
BODY = {"type": "http.response.body", "body": b""}
NOT_FOUND = {"type": "http.response.start", "status": 404, "headers": [(b"content-length", b"0")]}


async def app(
    scope: dict[str, Any],
    receive: Callable[[], Awaitable[Any]],
    send: Callable[[dict[str, Any]], Awaitable[None]],
) -> None:
    global hits
    if scope["path"] == "/log":
        hits += 1
        await send(START)
    else:
        await send(NOT_FOUND)
    await send(BODY)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--backlog", type=int, default=2048)
    a = p.parse_args()
    uvicorn.run(
        app,
        host=a.host,
        port=a.port,
        backlog=a.backlog,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
