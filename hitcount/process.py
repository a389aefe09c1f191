"""The process edge of a single-process server: its open files, its signals, its shutdown sequence.

Owns: `Files` (the record log, the error log, the slots and the metrics board of one run),
`serve_one` (one `Server` with SIGTERM/SIGINT/SIGHUP/SIGUSR1 handling and `--shutdown-delay`) and
`report_gauges` (the --report-to backlog onto the board). Imports `config`, `console`, `metrics`,
`server`, the sinks. Only the CLI calls it: it installs signal handlers, which embedding never does.
Must not: act inside a signal handler beyond setting state.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .config import Config
from .console import Console
from .counter import Slots
from .ledger import LastLogged
from .metrics import REPORT_ERRORS, REPORT_PENDING, REPORT_SPOOLED, Board
from .records import Event, Record
from .server import MetricsBindError, Server
from .sinks import JsonLinesSink

if TYPE_CHECKING:
    from .sinks.report import ReportSink

EXIT_OK, EXIT_RUNTIME, EXIT_STARTUP = 0, 1, 3
REPORT_GAUGE_PERIOD = 1.0  # seconds between updates of the report backlog gauges


@dataclass
class Files:
    """What one run of the server has open."""

    records: JsonLinesSink
    errors: JsonLinesSink
    slots: Slots
    board: Board

    def reopen(self, who: str = "server") -> None:
        """SIGHUP/SIGUSR1 (logrotate): reopen both logs; the first line of the new error log says so."""
        self.records.reopen()
        self.errors.reopen()
        self.errors(reopened(who))


def reopened(who: str, **fields: object) -> Event:
    message = f"{who} reopened its log files"
    return Event(time.time(), "info", "logs_reopened", message, {"pid": os.getpid(), **fields})


class Stops:
    """SIGTERM/SIGINT: the first asks for a stop; during --shutdown-delay the next ends the delay; a
    SIGINT once stopping exits at once (as uvicorn and gunicorn do)."""

    def __init__(self, console: Console) -> None:
        self.asked = asyncio.Event()
        self.stopping = False
        self._console = console

    def __call__(self, name: str) -> None:
        if self.stopping and name == "INT":
            self._console("second interrupt: exiting at once")
            os._exit(EXIT_RUNTIME)
        self.asked.set()

    async def delay(self, seconds: float) -> None:
        """Wait `seconds`, or until the next SIGTERM/SIGINT."""
        self.asked.clear()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.asked.wait(), seconds)


async def serve_one(
    config: Config,
    files: Files,
    emit: Callable[[Record], None],
    console: Console,
    started: Callable[[Server], None],
    last_logged: LastLogged,
) -> int:
    """Serve in this process until SIGTERM/SIGINT; returns the exit code."""
    loop = asyncio.get_running_loop()
    server = Server(config, emit, files.errors, slots=files.slots, last_logged=last_logged, board=files.board)
    try:
        await server.start()
    except MetricsBindError as exc:
        console(f"cannot listen on {exc.filename} for metrics: {bind_reason(exc)}")
        return EXIT_STARTUP
    except OSError as exc:
        console(f"cannot listen on {config.host}:{config.port}: {bind_reason(exc)}")
        return EXIT_STARTUP
    stops = Stops(console)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stops, sig.name[3:])
    for sig in (signal.SIGHUP, signal.SIGUSR1):
        loop.add_signal_handler(sig, files.reopen)
    started(server)
    await stops.asked.wait()
    if config.shutdown_delay > 0:
        server.unready()
        console(
            f"draining: /readyz answers 503; still counting for {config.shutdown_delay:g} s "
            "(SIGTERM or SIGINT again to stop now)",
            "info",
        )
        await stops.delay(config.shutdown_delay)
    stops.stopping = True
    console("stopping: answering open requests and writing the last second", "info")
    await server.stop()
    return EXIT_OK


async def report_gauges(reporter: ReportSink, board: Board) -> None:
    """Publish the reporter's backlog on the ticking row until cancelled."""
    while True:
        board.set(0, REPORT_PENDING, reporter.pending)
        board.set(0, REPORT_ERRORS, reporter.failures)
        board.set(0, REPORT_SPOOLED, await asyncio.to_thread(reporter.spool.backlog_bytes))
        await asyncio.sleep(REPORT_GAUGE_PERIOD)


def bind_reason(exc: OSError) -> str:
    import errno

    if exc.errno == errno.EADDRINUSE:
        return "address already in use (is another server running on this port?)"
    if exc.errno == errno.EACCES:
        return "permission denied (ports below 1024 need privileges)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return "address not available on this machine"
    return exc.strerror or str(exc)
