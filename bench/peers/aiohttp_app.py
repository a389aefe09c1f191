"""aiohttp's web server on uvloop with one counting route: GET /log → 204, count += 1.

Owns the app and its settings for the benchmark: access log off, uvloop as the loop (what aiohttp
recommends for speed), aiohttp's own HTTP parser (its C parser when installed from a wheel).
"""

from __future__ import annotations

import argparse

import uvloop
from aiohttp import web

hits = 0


async def log(request: web.Request) -> web.Response:
    global hits
    hits += 1
    return web.Response(status=204)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--backlog", type=int, default=2048)
    a = p.parse_args()
    app = web.Application()
    app.router.add_get("/log", log)
    web.run_app(
        app,
        host=a.host,
        port=a.port,
        backlog=a.backlog,
        access_log=None,
        print=None,
        loop=uvloop.new_event_loop(),
    )


if __name__ == "__main__":
    main()
