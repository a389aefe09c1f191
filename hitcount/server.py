"""One event loop's worth of hitcount: listen, count, tick, stop gracefully.

Owns: `Server` (bind, serve, drain, final record), `listen_socket` and `serve()` for embedding. Wires
`protocol`, `counter`, `ledger`/`ticker`, `metrics`/`probes` and the sinks passed in. Imports only our
lower layers.
The same class is a worker (`ticking=False`: counts into its slot of shared Slots, the supervisor ticks).
Must not: install signal handlers, call sys.exit or configure logging; that is the CLI's job.
"""

from __future__ import annotations

import asyncio
import math
import socket
import time
from collections.abc import Awaitable, Callable

from .config import HEARTBEAT_INTERVAL, Config
from .counter import Slots
from .ledger import LastLogged, open_ticker
from .metrics import CONNECTIONS, RECORDS, Board, observing
from .probes import Probes, ProbeServer
from .protocol import HitProtocol, Site
from .records import Event, Record
from .ticker import Ticker

RecordSink = Callable[[Record], None]
EventSink = Callable[[Event], None]

DRAIN_POLL = 0.01  # seconds between looks at the open connections while draining


class Server:
    """Serves `config` on the running loop; emits one record per second to `emit`.

    `start()` binds (port 0 is resolved to the real port), `stop()` stops accepting, answers what was
    received, closes connections and emits the final partial second. Every hit acknowledged before
    `stop()` returns is in exactly one emitted record.

    `slots` (default: anonymous, one slot) and `index` say where hits are counted; pass file-backed
    Slots to make counts and the emitted state survive a crash. `sock` is an already bound socket.
    `board` holds the operational metrics (default: anonymous); this process writes its row: 0 when
    ticking, `index + 1` as a worker.

    Health and metrics (`/livez`, `/readyz`, `/metrics`) are answered on the hit port, or, with
    `config.metrics_port` set, on a listener of their own started by the ticking server (a worker
    leaves that to its supervisor).
    """

    def __init__(
        self,
        config: Config,
        emit: RecordSink,
        log: EventSink,
        *,
        clock: Callable[[], float] = time.time,
        slots: Slots | None = None,
        index: int = 0,
        ticking: bool = True,
        sock: socket.socket | None = None,
        last_logged: LastLogged | None = None,
        board: Board | None = None,
    ) -> None:
        self.config = config
        self.row = 0 if ticking else index + 1
        self.board = board if board is not None else Board.anonymous(self.row + 1)
        self._emit = emit
        self._log = observing(self.board, self.row, log)
        self._clock = clock
        self.slots = slots if slots is not None else Slots.anonymous(1)
        self.index = index
        self._ticking = ticking
        self._sock = sock
        self._last_logged = last_logged
        self.site: Site | None = None
        self.ticker: Ticker | None = None
        self._server: asyncio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.port = config.port
        self.server_id = ""
        self.probe_server: ProbeServer | None = None
        self.probes = Probes(self.board, self.slots, config.workers, self._ready, self._publish)

    @property
    def total(self) -> int:
        """Every hit counted since start."""
        return self.slots.total()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.site = Site(self.config, self.slots.counter(self.index), self._clock(), self._log)
        site = self.site
        board, row = self.board, self.row
        site.on_refuse = lambda kind: board.refuse(row, kind)
        if self.config.probes and self.config.metrics_port is None:
            site.pages = self.probes.pages()
        site.start(loop)  # the one deadline sweep of this loop (timeouts, refusal log lines)
        if self._sock is None:
            self._sock = listen_socket(self.config, reuse_port=False)
        self.port = self._sock.getsockname()[1]
        self.server_id = self.config.with_port(self.port).resolved_server_id()
        if self._ticking:  # resume before the first hit is read and before our first heartbeat
            self.ticker = open_ticker(
                self.slots,
                self.server_id,
                self._counted,
                self._log,
                clock=self._clock,
                last_logged=self._last_logged,
            )
        self._server = await loop.create_server(lambda: HitProtocol(site), sock=self._sock)
        if self.config.probes and self.config.metrics_port is not None and self._ticking:
            self.probe_server = ProbeServer(self.config, self.probes, self._log)
            try:
                await self.probe_server.start(self.config.metrics_port)
            except OSError as exc:
                await self.stop(0)  # not half started: the hit port closes again
                host = self.config.metrics_host or self.config.host
                raise MetricsBindError(exc.errno, exc.strerror, f"{host}:{self.config.metrics_port}") from exc
        self._tasks = [
            loop.create_task(self._refresh_dates(), name="hitcount-dates"),
            loop.create_task(self._beat(), name="hitcount-heartbeat"),
        ]
        if self.ticker is not None:
            self._tasks.append(loop.create_task(self.ticker.run(), name="hitcount-ticker"))

    @property
    def sockets(self) -> list[socket.socket]:
        return list(self._server.sockets) if self._server else []

    async def stop(self, timeout: float | None = None) -> None:
        """Graceful stop: no new connections, answer what was received, final partial record."""
        if self._server is None or self.site is None:
            return
        timeout = self.config.timeout_graceful_shutdown if timeout is None else timeout
        self._server.close()
        self.site.drain()
        deadline = time.monotonic() + timeout
        while self.site.connections and time.monotonic() < deadline:
            await asyncio.sleep(DRAIN_POLL)
        for conn in list(self.site.connections):
            # Requests never completed (not counted), or clients that did not read their answers
            # within the graceful timeout (those answers are lost: see docs/hardening.md).
            conn.abort()
        self.site.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.ticker is not None:
            self.ticker.finish()
        self._server = None
        self._publish()
        if self.probe_server is not None:
            await self.probe_server.stop()

    def unready(self) -> None:
        """/readyz answers 503 from now on (in every process of this server), while hits still count:
        the start of --shutdown-delay."""
        self.board.drain()

    def _ready(self) -> bool:
        return self._server is not None and not self.board.draining

    def _publish(self) -> None:
        """This process's own gauges onto its row of the board."""
        self.board.set(self.row, CONNECTIONS, len(self.site.connections) if self.site else 0)

    def _counted(self, record: Record) -> None:
        self.board.add(self.row, RECORDS)
        self._emit(record)

    async def _beat(self) -> None:
        """The heartbeat, written from this loop: proof that it turns, and the time of its last turn
        (crash recovery spreads unemitted hits up to it)."""
        while True:
            self.slots.beat(self.index, self._clock())
            self._publish()
            await asyncio.sleep(HEARTBEAT_INTERVAL)

    async def _refresh_dates(self) -> None:
        """At each second boundary, by this loop's own timer: the Date of the answers, and the mark of
        this slot's total as the second begins (`Slots.total_at`). A timer that fires early re-arms."""
        assert self.site is not None
        second = -1
        while True:
            now = self._clock()
            if math.floor(now) != second:
                second = math.floor(now)
                self.slots.mark(self.index, second)  # first: the hits of this read-loop turn are new
                self.site.refresh(now)
            await asyncio.sleep(second + 1 - now)


class MetricsBindError(OSError):
    """The --metrics-port listener could not be bound; `filename` says where."""


def listen_socket(config: Config, *, reuse_port: bool, port: int | None = None) -> socket.socket:
    """A listening TCP socket for `config` (on `port` if given). With `reuse_port`, several processes
    can each bind their own socket to one port and the kernel balances connections between them."""
    port = config.port if port is None else port
    infos = socket.getaddrinfo(config.host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(addr)
        sock.listen(config.backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


async def serve(
    config: Config,
    emit: RecordSink,
    log: EventSink,
    shutdown_trigger: Callable[[], Awaitable[object]],
    on_started: Callable[[Server], None] | None = None,
) -> Server:
    """Run a server on the current loop until `shutdown_trigger()` completes, then stop it."""
    server = Server(config, emit, log)
    await server.start()
    if on_started is not None:
        on_started(server)
    try:
        await shutdown_trigger()
    finally:
        await server.stop()
    return server
