"""The supervisor: N worker processes, their heartbeats and restarts, signals, and the one ticker.

Owns: `Supervisor` (resolve the port once, start workers, watch them, restart with backoff, forward
SIGHUP, hold readiness through --shutdown-delay, stop them gracefully, serve --metrics-port) and `run`.
Ticks with the same `ledger.open_ticker` over the same `Slots` as one process. Imports our lower
layers, `worker` (for its spec) and `state`. Signal handlers only queue; the loop acts.
Must not: count hits itself or emit anything but the ticker's records and its own events.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable

from .config import (
    HEARTBEAT_INTERVAL,
    RESTART_BACKOFF,
    RESTART_LIMIT,
    RESTART_WINDOW,
    WORKER_READY_TIMEOUT,
    Config,
)
from .counter import READY, Slots
from .ledger import LastLogged, open_ticker
from .metrics import BOARD_NAME, RECORDS, Board, observing
from .probes import Probes, ProbeServer
from .records import Event, Record
from .server import listen_socket
from .ticker import Ticker
from .worker import spec_for

EXIT_OK, EXIT_RUNTIME, EXIT_STARTUP, EXIT_WORKER_BOOT = 0, 1, 3, 4
# Test-only: force the fallback (one socket bound by the supervisor, inherited by every worker).
# The supervisor closes each second this long after its boundary: by then every worker's loop has
# marked its own total for the new second (1 ms after the boundary plus its timer's lateness), so a
# hit is attributed by the worker's clock, not by when the supervisor woke (measured: 0.37 % of hits
# in the wrong second without the marks, 2 workers pipelined on 2 shared CPUs).
MARK_LAG = 0.02
NO_REUSEPORT_ENV = "HITCOUNT_TEST_NO_REUSEPORT"
STOP_POLL = 0.05


class Worker:
    """The supervisor's view of slot `index`: its current process and its history of deaths."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.generation = -1
        self.popen: subprocess.Popen[bytes] | None = None
        self.started = 0.0  # monotonic
        self.ready = False
        self.beats = -1
        self.beat_seen = 0.0  # monotonic time the heartbeat last changed
        self.restart_at = 0.0
        self.deaths: deque[float] = deque()


class Supervisor:
    def __init__(
        self,
        config: Config,
        slots: Slots,
        emit: Callable[[Record], None],
        log: Callable[[Event], None],
        say: Callable[..., None],
        reopen: Callable[[], None],
        last_logged: LastLogged | None = None,
        board: Board | None = None,
    ) -> None:
        self.config = config
        self.slots = slots
        self.board = board if board is not None else Board.anonymous(config.workers + 1)
        self._emit = emit
        self._log = observing(self.board, 0, log)
        self._say = say
        self._reopen = reopen
        self._last_logged = last_logged
        self.workers = [Worker(i) for i in range(config.workers)]
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self._fd = -1  # the inherited listening socket in fallback mode
        self._holder: socket.socket | None = None
        self.ticker: Ticker | None = None
        self.deaths: deque[float] = deque()
        self.probe_server: ProbeServer | None = None
        self._board_path = board_path(slots) if board is not None else ""

    # --- startup ---------------------------------------------------------------------------------

    def bind(self) -> int:
        """Resolve the port once. With SO_REUSEPORT the supervisor keeps a bound, never listening socket
        on the port so it stays ours while workers come and go; otherwise it listens and shares."""
        if sys.platform.startswith("linux") and not os.environ.get(NO_REUSEPORT_ENV):
            infos = socket.getaddrinfo(self.config.host, self.config.port, type=socket.SOCK_STREAM)
            family, kind, proto, _, addr = infos[0]
            if self.config.port:
                _refuse_if_listened(family, kind, proto, addr)
            holder = socket.socket(family, kind, proto)
            holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            try:
                holder.bind(addr)
            except OSError:
                holder.close()
                raise
        else:
            holder = listen_socket(self.config, reuse_port=False)
            self._fd = holder.fileno()
            os.set_inheritable(self._fd, True)
            self._log(
                _event(
                    "warning",
                    "reuseport_unavailable",
                    "the kernel does not balance SO_REUSEPORT sockets here: one socket is shared by "
                    "all workers, and the busiest worker may take most connections",
                )
            )
        self._holder = holder
        port = int(holder.getsockname()[1])
        self.config = self.config.with_port(port)
        return port

    async def boot(self, server_id: str) -> str | None:
        """Resume the ledger, start every worker and wait until all are ready. Returns an error or None."""
        self.ticker = open_ticker(
            self.slots, server_id, self._counted, self._log, last_logged=self._last_logged, lag=MARK_LAG
        )
        for w in self.workers:
            self._spawn(w)
        deadline = time.monotonic() + WORKER_READY_TIMEOUT
        while not all(w.ready for w in self.workers):
            for w in self.workers:
                assert w.popen is not None
                rc = w.popen.poll()
                if rc is not None:
                    return f"worker {w.index} exited before it was ready ({_how(rc)})"
                if self.slots.state(w.index) == READY:
                    self._mark_ready(w, time.monotonic())
            if time.monotonic() > deadline:
                return f"workers not ready after {WORKER_READY_TIMEOUT:g} s"
            await asyncio.sleep(STOP_POLL)
        return None

    def _counted(self, record: Record) -> None:
        self.board.add(0, RECORDS)
        self._emit(record)

    async def serve_probes(self) -> int | None:
        """With --metrics-port, serve /livez, /readyz and /metrics (summed over workers) from here."""
        if not self.config.probes or self.config.metrics_port is None:
            return None
        probes = Probes(self.board, self.slots, self.config.workers, self._ready)
        self.probe_server = ProbeServer(self.config, probes, self._log)
        return await self.probe_server.start(self.config.metrics_port)

    def _ready(self) -> bool:
        return not self.board.draining and any(w.ready and w.popen is not None for w in self.workers)

    def _spawn(self, w: Worker) -> None:
        w.generation += 1
        spec = spec_for(self.config, self.slots.path, w.index, w.generation, self._fd, self._board_path)
        w.popen = subprocess.Popen(
            [sys.executable, "-m", "hitcount.worker", spec],
            stdin=subprocess.DEVNULL,
            pass_fds=(self._fd,) if self._fd >= 0 else (),
        )
        w.started = time.monotonic()
        w.ready = False

    def _mark_ready(self, w: Worker, now: float) -> None:
        w.ready = True
        w.beats = self.slots.beats(w.index)
        w.beat_seen = now
        if w.generation > 0:
            assert w.popen is not None
            self._log(
                _event(
                    "warning",
                    "worker_restarted",
                    f"worker {w.index} replaced (generation {w.generation}, pid {w.popen.pid})",
                    worker=w.index,
                    pid=w.popen.pid,
                    generation=w.generation,
                )
            )

    # --- the running loop ----------------------------------------------------------------------

    async def run(self) -> int:
        """Tick, watch and dispatch queued signals until a stop; returns the exit code."""
        assert self.ticker is not None
        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(self.ticker.run()), loop.create_task(self._watch())]
        try:
            code = await self._dispatch()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        forced = await self._stop_workers()
        self.ticker.finish()  # killed workers' counted hits are in their slots: still emitted
        if self.probe_server is not None:
            await self.probe_server.stop()
        return EXIT_RUNTIME if forced else code

    async def _dispatch(self) -> int:
        while True:
            command = await self.queue.get()
            if command == "HUP":
                self._hup()
            elif command in ("TERM", "INT"):
                await self._delay()
                self._say("stopping: answering open requests and writing the last second", "info")
                return EXIT_OK
            elif command.startswith("fatal:"):
                self._say(command[len("fatal:") :])
                return EXIT_RUNTIME

    def _hup(self) -> None:
        """Reopen our logs and have every worker reopen its error log (they append to the same file)."""
        self._reopen()
        for w in self.workers:
            # Only ready workers: one still starting may not handle SIGHUP yet (it would die of it);
            # it opens the log afresh anyway.
            if w.ready and w.popen is not None and w.popen.poll() is None:
                w.popen.send_signal(signal.SIGHUP)

    async def _delay(self) -> None:
        """--shutdown-delay: /readyz answers 503 in every process at once (one word on the board the
        workers read), while the workers keep counting; a second SIGTERM/SIGINT ends the wait."""
        delay = self.config.shutdown_delay
        if delay <= 0:
            return
        self.board.drain()
        self._say(
            f"draining: /readyz answers 503; still counting for {delay:g} s "
            "(SIGTERM or SIGINT again to stop now)",
            "info",
        )
        deadline = time.monotonic() + delay
        while (left := deadline - time.monotonic()) > 0:
            try:
                command = await asyncio.wait_for(self.queue.get(), left)
            except asyncio.TimeoutError:
                return
            if command == "HUP":
                self._hup()
            elif command in ("TERM", "INT"):
                return
            elif command.startswith("fatal:"):
                self.queue.put_nowait(command)  # the stop goes on; the crash loop is reported below
                return

    async def _watch(self) -> None:
        while True:
            self.slots.beat_supervisor(time.time())
            now = time.monotonic()
            for w in self.workers:
                self._check(w, now)
            await asyncio.sleep(HEARTBEAT_INTERVAL)

    def _check(self, w: Worker, now: float) -> None:
        if w.popen is None:
            if now >= w.restart_at:
                self._spawn(w)
            return
        rc = w.popen.poll()
        if rc is not None:
            self._died(w, rc, now)
        elif not w.ready:
            if self.slots.state(w.index) == READY:
                self._mark_ready(w, now)
            elif now - w.started > WORKER_READY_TIMEOUT:
                self._kill(w, "worker_not_ready", f"not ready after {WORKER_READY_TIMEOUT:g} s")
        else:
            beats = self.slots.beats(w.index)
            if beats != w.beats:
                w.beats, w.beat_seen = beats, now
            elif now - w.beat_seen > self.config.timeout_worker_healthcheck:
                self._kill(w, "worker_stuck", f"no heartbeat for {now - w.beat_seen:.1f} s")

    def _kill(self, w: Worker, event: str, why: str) -> None:
        assert w.popen is not None
        self._log(
            _event("error", event, f"worker {w.index} (pid {w.popen.pid}) {why}: killing it", worker=w.index)
        )
        w.popen.kill()  # reaped, logged and replaced by the next _check

    def _died(self, w: Worker, rc: int, now: float) -> None:
        assert w.popen is not None
        pid = w.popen.pid
        w.popen = None
        for dq in (w.deaths, self.deaths):
            dq.append(now)
            while dq and now - dq[0] > RESTART_WINDOW:
                dq.popleft()
        delay = RESTART_BACKOFF[min(len(w.deaths), len(RESTART_BACKOFF)) - 1]
        w.restart_at = now + delay
        self._log(
            _event(
                "error",
                "worker_died",
                f"worker {w.index} (pid {pid}, generation {w.generation}) {_how(rc)}; "
                f"restarting in {delay:g} s",
                worker=w.index,
                pid=pid,
                generation=w.generation,
                exit=rc,
            )
        )
        if len(self.deaths) >= RESTART_LIMIT:
            self.queue.put_nowait(
                f"fatal:workers died {len(self.deaths)} times in {RESTART_WINDOW:g} s; stopping"
            )
            w.restart_at = float("inf")

    # --- stopping ------------------------------------------------------------------------------

    async def _stop_workers(self) -> bool:
        """SIGTERM every worker, wait for them (a second SIGINT, or the deadline, kills them).
        Returns True when they had to be killed."""
        live = [w.popen for w in self.workers if w.popen is not None]
        for p in live:
            p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.config.timeout_graceful_shutdown + 1.0
        forced = False
        while any(p.poll() is None for p in live):
            if time.monotonic() > deadline or self._interrupted_again():
                forced = True
                for p in live:
                    if p.poll() is None:
                        p.kill()
                for p in live:
                    p.wait()
                break
            await asyncio.sleep(STOP_POLL)
        for w in self.workers:
            w.popen = None
        return forced

    def _interrupted_again(self) -> bool:
        while not self.queue.empty():
            if self.queue.get_nowait() == "INT":
                self._say("second interrupt: killing workers", "warning")
                return True
        return False

    def close(self) -> None:
        for w in self.workers:
            if w.popen is not None and w.popen.poll() is None:
                w.popen.kill()
                w.popen.wait()
        if self._holder is not None:
            self._holder.close()


def board_path(slots: Slots) -> str:
    """The board file beside the slots file (metrics.BOARD_NAME), as the CLI opens it."""
    return os.path.join(os.path.dirname(slots.path), BOARD_NAME) if slots.path else ""


def _how(rc: int) -> str:
    if rc < 0:
        try:
            return f"was killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"was killed by signal {-rc}"
    return f"exited with status {rc}"


def _event(level: str, name: str, message: str, **fields: object) -> Event:
    return Event(time.time(), level, name, message, dict(fields))


async def serve_workers(
    config: Config,
    slots: Slots,
    board: Board,
    emit: Callable[[Record], None],
    log: Callable[[Event], None],
    say: Callable[..., None],
    reopen: Callable[[], None],
    started: Callable[[int, str, int | None], None],
    last_logged: LastLogged | None,
) -> int:
    """The whole multi-worker server: bind, boot, serve until a stop, and the exit code."""
    sup = Supervisor(config, slots, emit, log, say, reopen, last_logged, board)
    try:
        try:
            port = sup.bind()
        except OSError as exc:
            say(f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}")
            return EXIT_STARTUP
        server_id = sup.config.resolved_server_id()
        error = await sup.boot(server_id)
        if error is not None:
            say(f"startup failed: {error}")
            await sup._stop_workers()
            assert sup.ticker is not None
            sup.ticker.finish()
            return EXIT_WORKER_BOOT
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
            name = "HUP" if sig == signal.SIGUSR1 else sig.name[3:]
            loop.add_signal_handler(sig, sup.queue.put_nowait, name)
        try:
            metrics_port = await sup.serve_probes()
        except OSError as exc:
            where = f"{config.metrics_host or config.host}:{config.metrics_port}"
            say(f"cannot listen on {where} for metrics: {exc.strerror or exc}")
            await sup._stop_workers()
            assert sup.ticker is not None
            sup.ticker.finish()
            return EXIT_STARTUP
        started(port, server_id, metrics_port)
        return await sup.run()
    finally:
        sup.close()


def _refuse_if_listened(family: int, kind: int, proto: int, addr: object) -> None:
    """Raise EADDRINUSE if something already listens on the port (another hitcount's workers, or any
    other server). Our own sockets use SO_REUSEPORT, which would let a second server's workers join
    the first one's silently and split its traffic; a plain SO_REUSEADDR bind is refused by Linux
    while a listening socket holds the address, and is not troubled by connections in TIME_WAIT."""
    probe = socket.socket(family, kind, proto)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(addr)  # type: ignore[arg-type]
    finally:
        probe.close()
