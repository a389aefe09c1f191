"""The `hitcount` command: flags (with HITCOUNT_* environment defaults) → Config → run → exit code.

Owns: argument parsing, the startup line, exit codes. Sits on top of `process` (one process: its
signals and shutdown) and `supervisor` (workers).
Must not: print a traceback for a user mistake: a bad flag is one line on stderr and exit 2, a port
that cannot be bound is one line and exit 3.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from . import __version__
from . import config as c
from .config import (
    DEFAULT_BACKLOG,
    DEFAULT_GRACEFUL_TIMEOUT,
    DEFAULT_HOST,
    DEFAULT_PORT,
    DEFAULT_WORKER_HEALTHCHECK,
    MAX_WORKERS,
    Config,
)
from .console import Console
from .counter import StateFileError
from .metrics import BOARD_NAME, Board
from .process import Files, bind_reason, report_gauges, serve_one
from .records import LEVELS, Record
from .server import Server
from .sinks import JsonLinesSink
from .sinks.tail import last_logged
from .state import StateDir, StateLocked
from .supervisor import serve_workers

if TYPE_CHECKING:
    from .sinks.report import ReportSink

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_USAGE = 2
EXIT_STARTUP = 3
EXIT_WORKER_BOOT = 4  # a worker process never became ready (bind or import failure in the worker)
REPORT_SCHEMES = ("http://", "redis://", "rediss://", "unix://")
# What the aggregator accepts as a server id (aggregator/store.py SERVER_RE), checked here at startup
# so a bad id is a usage error, not every second refused later.
SERVER_ID = re.compile(r"[!-~]{1,200}")


class UsageError(Exception):
    """A mistake in the command line or environment: one line, exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse names the converter ("invalid _port value"); users should see "invalid port value".
        raise UsageError(
            re.sub(r"invalid _(\w+) value", lambda m: f"invalid {m[1].replace('_', ' ')} value", message)
        )


def _env(name: str, default: Any) -> Any:
    return os.environ.get("HITCOUNT_" + name, default)


def _port(text: str) -> int:
    port = int(text)
    if not 0 <= port <= 65535:
        raise ValueError(text)
    return port


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError(text)
    return value


def _workers(text: str) -> int:
    if text == "auto":
        return os.cpu_count() or 1
    n = int(text)
    if not 1 <= n <= MAX_WORKERS:
        raise ValueError(text)
    return n


def _default_workers() -> str:
    return str(_env("WORKERS", os.environ.get("WEB_CONCURRENCY", "1")))


def _methods(text: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(m.strip().upper() for m in text.split(",") if m.strip()))


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="hitcount",
        description="Count hits on GET /log and write one JSON record per wall-clock second. "
        "`hitcount aggregate --help`: the Aggregate & Report service for many collectors.",
        epilog="Every flag can also be set as HITCOUNT_<FLAG> (e.g. HITCOUNT_PORT=8080); "
        "the flag wins. Exit codes: 0 ok, 1 runtime error, 2 usage error, 3 startup failure, "
        "4 a worker never became ready.",
    )
    a = p.add_argument
    a("--host", default=_env("HOST", DEFAULT_HOST), help="address to listen on (%(default)s)")
    a(
        "--port",
        type=_port,
        default=_env("PORT", DEFAULT_PORT),
        help="TCP port; 0 picks a free one (%(default)s)",
    )
    a("--path", default=_env("PATH", "/log"), help="the path that counts hits (%(default)s)")
    a(
        "--methods",
        type=_methods,
        default=_env("METHODS", "GET"),
        help="comma-separated methods that count, e.g. GET,PUT,POST (GET)",
    )
    a(
        "--log-file",
        default=_env("LOG_FILE", "combined.log"),
        help="per-second records, JSON lines; '-' for stdout (%(default)s)",
    )
    a(
        "--error-log",
        default=_env("ERROR_LOG", "error.log"),
        help="warnings and errors, JSON lines; '-' for stderr (%(default)s)",
    )
    a(
        "--server-id",
        default=_env("SERVER_ID", ""),
        help="the 'server' field of each record (default: hostname:port)",
    )
    a(
        "--backlog",
        type=int,
        default=_env("BACKLOG", DEFAULT_BACKLOG),
        help="listen backlog (%(default)s)",
    )
    a(
        "--timeout-graceful-shutdown",
        type=_positive,
        default=_env("TIMEOUT_GRACEFUL_SHUTDOWN", DEFAULT_GRACEFUL_TIMEOUT),
        help="seconds to finish open requests on SIGTERM before closing them (%(default)s)",
    )
    a(
        "--workers",
        type=_workers,
        default=_default_workers(),
        help="worker processes, or 'auto' for one per CPU ($WEB_CONCURRENCY or 1)",
    )
    a(
        "--state-dir",
        default=_env("STATE_DIR", ""),
        help="counters, emitted state and the report spool, kept across crashes and restarts "
        "(default: .hitcount/ beside --log-file)",
    )
    a(
        "--report-to",
        default=_env("REPORT_TO", ""),
        help="also send each second to an aggregator (http://HOST:PORT) or Redis (redis://HOST:PORT/DB)",
    )
    a(
        "--timeout-worker-healthcheck",
        type=_positive,
        default=_env("TIMEOUT_WORKER_HEALTHCHECK", DEFAULT_WORKER_HEALTHCHECK),
        help="seconds without a heartbeat before a worker is killed and replaced (%(default)s)",
    )
    _add_limits(p)
    _add_operations(p)
    a("--version", action="version", version=_version_line())
    return p


def _add_limits(p: argparse.ArgumentParser) -> None:
    """Hardening flags (README: Hardening); uvicorn's names where uvicorn has the setting."""
    for flag, kind, default, text in (
        ("limit-max-url", int, c.DEFAULT_MAX_URL, "longest request target, bytes; longer: 414"),
        ("limit-max-head", int, c.DEFAULT_MAX_HEAD, "largest request head, bytes; larger: 431"),
        ("limit-max-headers", int, c.DEFAULT_MAX_HEADERS, "most header fields; more: 431"),
        ("limit-max-body", int, c.DEFAULT_MAX_BODY, "largest PUT/POST body, bytes; larger: 413"),
        ("limit-concurrency", int, c.DEFAULT_LIMIT_CONCURRENCY, "open connections; more: 503, 0=off"),
        ("timeout-header", _positive, c.DEFAULT_TIMEOUT_HEADER, "seconds to send a request head"),
        ("timeout-keep-alive", _positive, c.DEFAULT_TIMEOUT_KEEP_ALIVE, "idle keep-alive seconds"),
    ):
        env = flag.upper().replace("-", "_")
        p.add_argument(f"--{flag}", type=kind, default=_env(env, default), help=f"{text} (%(default)s)")


def _metrics_port(text: str) -> int | None | bool:
    """`off` → False (no probes); a port number; `same` or empty → None (the hit port)."""
    if text.lower() == "off":
        return False
    if text.lower() in ("", "same"):
        return None
    return _port(text)


def _delay(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise ValueError(text)
    return value


def _add_operations(p: argparse.ArgumentParser) -> None:
    """Health, metrics, shutdown and logging flags (docs/operations.md)."""
    a = p.add_argument
    a(
        "--metrics-port",
        type=_metrics_port,
        default=_env("METRICS_PORT", "same"),
        help="where /livez, /readyz and /metrics are served: 'same' (the hit port), a port of their "
        "own, or 'off' (%(default)s)",
    )
    a(
        "--metrics-host",
        default=_env("METRICS_HOST", ""),
        help="address of --metrics-port, e.g. 0.0.0.0 for kubelet probes while hits stay on "
        "127.0.0.1 (default: --host)",
    )
    a(
        "--shutdown-delay",
        type=_delay,
        default=_env("SHUTDOWN_DELAY", 0.0),
        help="on SIGTERM keep counting this many seconds with /readyz answering 503, then stop "
        "(for sidecars whose app gets the same signal) (%(default)s)",
    )
    a(
        "--log-level",
        choices=c.LOG_LEVELS,
        type=str.lower,
        default=_env("LOG_LEVEL", "info"),
        help="least severe event written to the error log and stderr (%(default)s)",
    )
    a(
        "--log-format",
        choices=c.LOG_FORMATS,
        type=str.lower,
        default=_env("LOG_FORMAT", "text"),
        help="stderr lines as text or JSON lines; the error log is always JSON lines (%(default)s)",
    )


def _version_line() -> str:
    impl = sys.implementation.name
    return f"hitcount {__version__} ({impl} {sys.version.split()[0]}, {_loop_name()})"


def _loop_name() -> str:
    try:
        import uvloop

        return f"uvloop {getattr(uvloop, '__version__', '?')}"
    except ImportError:
        return "asyncio"


def parse(argv: Sequence[str] | None) -> Config:
    """Flags and environment → Config; raises UsageError with a one-line message."""
    args = build_parser().parse_args(argv)
    if args.report_to and not args.report_to.startswith(REPORT_SCHEMES):
        raise UsageError(f"--report-to must be http://HOST:PORT or redis://HOST:PORT/DB: {args.report_to!r}")
    if args.report_to and args.server_id and not SERVER_ID.fullmatch(args.server_id):
        raise UsageError("--server-id must be 1-200 printable characters without spaces to be reported")
    try:
        return Config(
            host=args.host,
            port=args.port,
            path=args.path,
            methods=tuple(args.methods),
            log_file=args.log_file,
            error_log=args.error_log,
            server_id=args.server_id,
            backlog=args.backlog,
            timeout_graceful_shutdown=args.timeout_graceful_shutdown,
            workers=args.workers,
            state_dir=args.state_dir,
            timeout_worker_healthcheck=args.timeout_worker_healthcheck,
            report_to=args.report_to,
            limit_max_url=args.limit_max_url,
            limit_max_head=args.limit_max_head,
            limit_max_headers=args.limit_max_headers,
            limit_max_body=args.limit_max_body,
            limit_concurrency=args.limit_concurrency,
            timeout_header=args.timeout_header,
            timeout_keep_alive=args.timeout_keep_alive,
            probes=args.metrics_port is not False,
            metrics_port=None if args.metrics_port is False else args.metrics_port,
            metrics_host=args.metrics_host,
            shutdown_delay=args.shutdown_delay,
            log_level=args.log_level,
            log_format=args.log_format,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None


CONSOLE = Console()  # --log-level / --log-format set it in main()


def _say(message: str, level: str = "error") -> None:
    CONSOLE(message, level)


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["aggregate"]:  # `hitcount aggregate ...`: the Aggregate & Report service
        from .aggregator.cli import main as aggregate

        return aggregate(argv[1:])
    try:
        config = parse(argv)
    except UsageError as exc:
        _say(f"error: {exc} (see --help)")
        return EXIT_USAGE
    CONSOLE.least, CONSOLE.fmt = LEVELS[config.log_level], config.log_format
    try:
        records = JsonLinesSink(config.log_file)
        errors = JsonLinesSink(config.error_log, dash=sys.stderr, level=config.log_level)
    except OSError as exc:
        _say(f"cannot open log file: {exc}")
        return EXIT_STARTUP
    state = StateDir(config.resolved_state_dir())
    try:
        state.acquire()
        slots = state.open_slots(config.workers)
        board = Board.open(os.path.join(state.path, BOARD_NAME), config.workers + 1)
    except (StateLocked, StateFileError, OSError) as exc:
        _say(f"cannot use state directory: {exc}")
        records.close()
        errors.close()
        return EXIT_STARTUP
    board.reset_gauges()  # a new run: no connections yet, not draining (counters carry on)
    try:
        return _run(config, Files(records, errors, slots, board))
    finally:
        records.close()
        errors.close()
        slots.close()
        board.close()
        state.release()


def _run(config: Config, files: Files) -> int:
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # uvloop does not exist on Windows or PyPy; plain asyncio still works
        runner = asyncio.run
    serve = _serve_workers if config.workers > 1 else _serve
    try:
        return int(runner(_reporting(serve, config, files)))
    except KeyboardInterrupt:
        return EXIT_RUNTIME


Serve = Callable[[Config, Files, Callable[[Record], None]], Any]


async def _reporting(serve: Serve, config: Config, files: Files) -> int:
    """Run `serve` with every record also going to --report-to, if set; the backlog is persisted at exit."""
    try:
        reporter = _reporter(config, files.errors)
    except (OSError, ValueError) as exc:
        _say(f"cannot report to {config.report_to}: {exc}")
        return EXIT_STARTUP
    if reporter is None:
        return int(await serve(config, files, files.records))
    reporter.start()
    gauges = asyncio.get_running_loop().create_task(report_gauges(reporter, files.board))
    try:
        return int(await serve(config, files, _both(files.records, reporter)))
    finally:
        gauges.cancel()
        await reporter.aclose(config.timeout_graceful_shutdown)


async def _serve_workers(config: Config, files: Files, emit: Callable[[Record], None]) -> int:
    def started(port: int, server_id: str, metrics_port: int | None) -> None:
        _started(config, port, server_id, metrics_port, f"{config.workers} workers; ")

    return await serve_workers(
        config,
        files.slots,
        files.board,
        emit,
        files.errors,
        _say,
        files.reopen,
        started,
        _last_logged(config),
    )


def _last_logged(config: Config) -> Callable[[str], int | None]:
    return lambda server: last_logged(config.log_file, server)


def _started(config: Config, port: int, server_id: str, metrics_port: int | None, extra: str = "") -> None:
    if not config.probes:
        probes = "probes off"
    elif metrics_port is None:
        probes = "/livez /readyz /metrics on the same port"
    else:
        probes = f"/livez /readyz /metrics on http://{config.metrics_host or config.host}:{metrics_port}"
    CONSOLE.say(
        f"{_version_line()} listening on http://{config.host}:{port}{config.path} "
        f"(server id {server_id}; {extra}records to {config.log_file}; {probes}; pid {os.getpid()})",
        "info",
        "started",
        host=config.host,
        port=port,
        workers=config.workers,
        version=__version__,
        metrics_port=metrics_port if metrics_port is not None else port if config.probes else None,
        pid=os.getpid(),
    )


async def _serve(config: Config, files: Files, emit: Callable[[Record], None]) -> int:
    def started(server: Server) -> None:
        ps = server.probe_server
        _started(config, server.port, server.server_id, ps.port if ps else None)

    return await serve_one(config, files, emit, CONSOLE, started, _last_logged(config))


def _reporter(config: Config, errors: JsonLinesSink) -> ReportSink | None:
    """The report sink for --report-to, with its spool under the state directory (created here)."""
    if not config.report_to:
        return None
    from .sinks.report import ReportSink
    from .sinks.spool import Spool
    from .sinks.targets import open_target

    state = config.resolved_state_dir()
    os.makedirs(state, exist_ok=True)
    return ReportSink(open_target(config.report_to), Spool(os.path.join(state, "report-spool.jsonl")), errors)


def _both(first: Callable[[Record], None], second: Callable[[Record], None]) -> Callable[[Record], None]:
    def emit(record: Record) -> None:
        first(record)
        second(record)

    return emit


_bind_reason = bind_reason  # the aggregator's CLI words bind failures the same way
