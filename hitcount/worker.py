"""One worker process: a non-ticking `Server` counting into its slot of the shared state file.

Owns: the worker's entry point (`python -m hitcount.worker SPEC`, started only by the supervisor), its
listening socket (its own SO_REUSEPORT socket, or the inherited one), readiness, and leaving when its
supervisor is gone. Imports `config`, `counter`, `server`, `state`.
Must not: emit records or write logs (the supervisor does both); it answers SIGTERM by draining.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import socket
import sys
import time
from typing import Any

from .config import HEARTBEAT_INTERVAL, Config
from .counter import READY, STOPPING, Slots
from .records import Event, Record, to_line
from .server import Server, listen_socket
from .state import hold_shared

EXIT_BIND = 3
# Test-only: "INDEX:SECONDS" makes the first generation of worker INDEX block its event loop after
# SECONDS, so tests can watch the supervisor detect a stuck worker. Never set it in production.
STUCK_ENV = "HITCOUNT_TEST_STUCK"
# Test-only: a worker exits with this status before it becomes ready (a boot failure).
EXIT_ENV = "HITCOUNT_TEST_WORKER_EXIT"


def spec_for(config: Config, slots_path: str, index: int, generation: int, fd: int) -> str:
    """The one command-line argument a worker is started with."""
    return json.dumps(
        {
            "config": dataclasses.asdict(config),
            "slots": slots_path,
            "index": index,
            "generation": generation,
            "fd": fd,
            "parent": os.getpid(),
        }
    )


def _config(d: dict[str, Any]) -> Config:
    d = dict(d)
    d["methods"] = tuple(d["methods"])
    return Config(**d)


def _event(item: Record | Event) -> None:
    sys.stderr.write(to_line(item))


def main(argv: list[str]) -> int:
    spec = json.loads(argv[1])
    if os.environ.get(EXIT_ENV, "").isdigit():
        return int(os.environ[EXIT_ENV])
    config = _config(spec["config"])
    index, generation = int(spec["index"]), int(spec["generation"])
    slots = Slots.open(spec["slots"])
    hold_shared(slots)
    slots.claim(index, os.getpid(), generation)
    try:
        if spec["fd"] >= 0:
            sock = socket.socket(fileno=spec["fd"])
            sock.setblocking(False)
        else:
            sock = listen_socket(config, reuse_port=True)
    except OSError as exc:
        where = f"{config.host}:{config.port}"
        print(f"hitcount: worker {index} cannot listen on {where}: {exc}", file=sys.stderr)
        return EXIT_BIND
    try:
        import uvloop

        return int(uvloop.run(_serve(config, slots, index, generation, sock, int(spec["parent"]))))
    except ImportError:
        return int(asyncio.run(_serve(config, slots, index, generation, sock, int(spec["parent"]))))


async def _serve(
    config: Config, slots: Slots, index: int, generation: int, sock: socket.socket, parent: int
) -> int:
    loop = asyncio.get_running_loop()
    server = Server(config, _event, _event, slots=slots, index=index, ticking=False, sock=sock)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the supervisor, which tells us
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    await server.start()
    slots.set_state(index, READY)
    _maybe_stuck(loop, index, generation)
    watch = loop.create_task(_watch_parent(parent, stop))
    await stop.wait()
    watch.cancel()
    slots.set_state(index, STOPPING)
    await server.stop()
    return 0


async def _watch_parent(parent: int, stop: asyncio.Event) -> None:
    """A worker whose supervisor died (SIGKILL) stops serving: its counts stay in the slot."""
    while os.getppid() == parent:
        await asyncio.sleep(HEARTBEAT_INTERVAL)
    stop.set()


def _maybe_stuck(loop: asyncio.AbstractEventLoop, index: int, generation: int) -> None:
    which, _, after = os.environ.get(STUCK_ENV, "").partition(":")
    if which.isdigit() and int(which) == index and generation == 0:
        loop.call_later(float(after or 0), time.sleep, 3600.0)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
