"""The `hitcount` command: flags (with HITCOUNT_* environment defaults) → Config → run → exit code.

Owns: argument parsing, signal handling, the startup line, exit codes. Sits on top of `server`.
Must not: print a traceback for a user mistake: a bad flag is one line on stderr and exit 2, a port
that cannot be bound is one line and exit 3.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from . import __version__
from . import config as c
from .config import DEFAULT_BACKLOG, DEFAULT_GRACEFUL_TIMEOUT, DEFAULT_HOST, DEFAULT_PORT, Config
from .server import Server
from .sinks import JsonLinesSink

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_USAGE = 2
EXIT_STARTUP = 3


class UsageError(Exception):
    """A mistake in the command line or environment: one line, exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


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


def _methods(text: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(m.strip().upper() for m in text.split(",") if m.strip()))


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="hitcount",
        description="Count hits on GET /log and write one JSON record per wall-clock second.",
        epilog="Every flag can also be set as HITCOUNT_<FLAG> (e.g. HITCOUNT_PORT=8080); "
        "the flag wins. Exit codes: 0 ok, 1 runtime error, 2 usage error, 3 startup failure.",
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
    _add_limits(p)
    a("--version", action="version", version=_version_line())
    return p


def _add_limits(p: argparse.ArgumentParser) -> None:
    """Hardening flags (docs/hardening.md); uvicorn's names where uvicorn has the setting."""
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
            limit_max_url=args.limit_max_url,
            limit_max_head=args.limit_max_head,
            limit_max_headers=args.limit_max_headers,
            limit_max_body=args.limit_max_body,
            limit_concurrency=args.limit_concurrency,
            timeout_header=args.timeout_header,
            timeout_keep_alive=args.timeout_keep_alive,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _say(message: str) -> None:
    print(f"hitcount: {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config = parse(argv)
    except UsageError as exc:
        _say(f"error: {exc} (see --help)")
        return EXIT_USAGE
    try:
        records = JsonLinesSink(config.log_file)
        errors = JsonLinesSink(config.error_log, dash=sys.stderr)
    except OSError as exc:
        _say(f"cannot open log file: {exc}")
        return EXIT_STARTUP
    try:
        return _run(config, records, errors)
    finally:
        records.close()
        errors.close()


def _run(config: Config, records: JsonLinesSink, errors: JsonLinesSink) -> int:
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # uvloop does not exist on Windows or PyPy; plain asyncio still works
        runner = asyncio.run
    try:
        return int(runner(_serve(config, records, errors)))
    except KeyboardInterrupt:
        return EXIT_RUNTIME


async def _serve(config: Config, records: JsonLinesSink, errors: JsonLinesSink) -> int:
    loop = asyncio.get_running_loop()
    server = Server(config, records, errors)
    try:
        await server.start()
    except OSError as exc:
        _say(f"cannot listen on {config.host}:{config.port}: {_bind_reason(exc)}")
        return EXIT_STARTUP
    stop = asyncio.Event()
    interrupts = 0

    def on_interrupt() -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts > 1:  # a second Ctrl-C: stop now, as uvicorn and gunicorn do
            _say("second interrupt: exiting at once")
            os._exit(EXIT_RUNTIME)
        stop.set()

    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, on_interrupt)

    def reopen() -> None:
        records.reopen()
        errors.reopen()

    for sig in (signal.SIGHUP, signal.SIGUSR1):
        loop.add_signal_handler(sig, reopen)
    _say(
        f"{_version_line()} listening on http://{config.host}:{server.port}{config.path} "
        f"(server id {server.server_id}; records to {config.log_file}; pid {os.getpid()})"
    )
    await stop.wait()
    _say("stopping: answering open requests and writing the last second")
    await server.stop()
    return EXIT_OK


def _bind_reason(exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return "address already in use (is another server running on this port?)"
    if exc.errno == errno.EACCES:
        return "permission denied (ports below 1024 need privileges)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return "address not available on this machine"
    return exc.strerror or str(exc)
