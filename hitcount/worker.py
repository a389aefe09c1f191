"""One worker process: a non-ticking `Server` counting into its slot of the shared state file.

Owns: the worker's entry point (`python -m hitcount.worker SPEC`, started only by the supervisor), its
listening socket (its own SO_REUSEPORT socket, or the inherited one), readiness, its error-log events
(appended to the supervisor's --error-log; reopened on SIGHUP/SIGUSR1), and leaving when its
supervisor is gone. Imports `config`, `counter`, `metrics`, `server`, `sinks`, `state`.
Must not: emit records (the supervisor ticks); it answers SIGTERM by draining.
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
from .metrics import Board
from .process import reopened
from .records import Event, Record
from .server import Server, listen_socket
from .sinks import JsonLinesSink
from .state import hold_shared

EXIT_BIND = 3
# Test-only: "INDEX:SECONDS" makes the first generation of worker INDEX block its event loop after
# SECONDS, so tests can watch the supervisor detect a stuck worker. Never set it in production.
STUCK_ENV = "HITCOUNT_TEST_STUCK"
# Test-only: a worker exits with this status before it becomes ready (a boot failure).
EXIT_ENV = "HITCOUNT_TEST_WORKER_EXIT"


def spec_for(config: Config, slots_path: str, index: int, generation: int, fd: int, board: str = "") -> str:
    """The one command-line argument a worker is started with (`board`: the metrics file, or "")."""
    return json.dumps(
        {
            "config": dataclasses.asdict(config),
            "slots": slots_path,
            "board": board,
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


class Events:
    """The worker's error-log events: JSON lines appended (O_APPEND) to the supervisor's --error-log.
    Each line is one write(2), so lines of several processes never interleave within a line."""

    def __init__(self, config: Config, index: int) -> None:
        self.sink = JsonLinesSink(config.error_log, dash=sys.stderr, level=config.log_level)
        self.index = index

    def __call__(self, item: Record | Event) -> None:
        if isinstance(item, Event):
            item = dataclasses.replace(item, fields={**item.fields, "worker": self.index})
        self.sink(item)

    def reopen(self) -> None:
        self.sink.reopen()
        self.sink(reopened(f"worker {self.index}", worker=self.index))


def main(argv: list[str]) -> int:
    spec = json.loads(argv[1])
    if os.environ.get(EXIT_ENV, "").isdigit():
        return int(os.environ[EXIT_ENV])
    config = _config(spec["config"])
    index, generation = int(spec["index"]), int(spec["generation"])
    slots = Slots.open(spec["slots"])
    board = Board.open(spec["board"]) if spec.get("board") else Board.anonymous(index + 2)
    board.reset_gauges(index + 1)  # this row's gauges were its predecessor's
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

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    events = Events(config, index)
    try:
        server = Server(
            config, events, events, slots=slots, index=index, ticking=False, sock=sock, board=board
        )
        return int(runner(_serve(server, events, generation, int(spec["parent"]))))
    finally:
        events.sink.close()


async def _serve(server: Server, events: Events, generation: int, parent: int) -> int:
    loop = asyncio.get_running_loop()
    slots, index = server.slots, server.index
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the supervisor, which tells us
    for sig in (signal.SIGHUP, signal.SIGUSR1):  # forwarded by the supervisor (logrotate)
        loop.add_signal_handler(sig, events.reopen)
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
