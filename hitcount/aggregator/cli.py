"""The `hitcount aggregate` command: flags (HITCOUNT_AGGREGATE_* defaults) → store + service → exit code.

Owns: the aggregator's argument parsing, signals, startup line and exit codes (the same codes and one-
line errors as the collector's CLI, whose helpers it reuses). Sits on top of `service`.
Must not: print a traceback for a user mistake or an unreachable store: one line on stderr instead.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import sys
from collections.abc import Sequence
from typing import Any

from ..cli import (
    EXIT_OK,
    EXIT_RUNTIME,
    EXIT_STARTUP,
    EXIT_USAGE,
    UsageError,
    _bind_reason,
    _Parser,
    _port,
    _positive,
    _version_line,
)
from ..config import DEFAULT_BACKLOG, DEFAULT_GRACEFUL_TIMEOUT, DEFAULT_HOST
from ..sinks import JsonLinesSink
from .service import Aggregator
from .store import Store, open_store

# The collector listens on 3000 (the Node prototype's port); its aggregator sits next door.
DEFAULT_PORT = 3001
# Three days, as the original design asked; a `GET /count` window may not be longer.
DEFAULT_RETENTION = "3d"
DEFAULT_STORE = "sqlite:hitcount.db"
UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(text: str) -> int:
    """`259200`, `90s`, `15m`, `72h`, `3d` → whole seconds (at least 1)."""
    m = re.fullmatch(r"\s*([0-9]+)\s*([smhd]?)\s*", text)
    if not m or int(m.group(1)) * UNITS[m.group(2)] < 1:
        raise ValueError(text)
    return int(m.group(1)) * UNITS[m.group(2)]


def _env(name: str, default: Any) -> Any:
    return os.environ.get("HITCOUNT_AGGREGATE_" + name, default)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="hitcount aggregate",
        description="Store per-second counts from many collectors and answer GET /count exactly.",
        epilog="Every flag can also be set as HITCOUNT_AGGREGATE_<FLAG>; the flag wins. "
        "Exit codes: 0 ok, 1 runtime error, 2 usage error, 3 startup failure (bind, store).",
    )
    a = p.add_argument
    a("--host", default=_env("HOST", DEFAULT_HOST), help="address to listen on (%(default)s)")
    a("--port", type=_port, default=_env("PORT", DEFAULT_PORT), help="TCP port; 0 picks one (%(default)s)")
    a(
        "--store",
        default=_env("STORE", DEFAULT_STORE),
        help="sqlite:PATH or redis://HOST:PORT/DB (%(default)s)",
    )
    a(
        "--retention",
        type=duration,
        default=_env("RETENTION", DEFAULT_RETENTION),
        help="how long seconds are kept: N, Ns, Nm, Nh or Nd (%(default)s)",
    )
    a("--error-log", default=_env("ERROR_LOG", "-"), help="JSON-lines error log; '-' is stderr (-)")
    a("--backlog", type=int, default=_env("BACKLOG", DEFAULT_BACKLOG), help="listen backlog (%(default)s)")
    a(
        "--timeout-graceful-shutdown",
        type=_positive,
        default=_env("TIMEOUT_GRACEFUL_SHUTDOWN", DEFAULT_GRACEFUL_TIMEOUT),
        help="seconds to answer open requests on SIGTERM (%(default)s)",
    )
    a("--version", action="version", version=_version_line())
    return p


def _say(message: str) -> None:
    print(f"hitcount aggregate: {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        store = open_store(args.store, args.retention)
    except (UsageError, ValueError) as exc:
        _say(f"error: {exc} (see --help)")
        return EXIT_USAGE
    try:
        errors = JsonLinesSink(args.error_log, dash=sys.stderr)
    except OSError as exc:
        _say(f"cannot open log file: {exc}")
        return EXIT_STARTUP
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    try:
        return int(runner(_serve(args, store, errors)))
    except KeyboardInterrupt:
        return EXIT_RUNTIME
    finally:
        errors.close()


async def _serve(args: argparse.Namespace, store: Store, errors: JsonLinesSink) -> int:
    agg = Aggregator(store, errors, args.host, args.port, args.backlog)
    try:
        await agg.start()
    except OSError as exc:
        _say(f"cannot listen on {args.host}:{args.port}: {_bind_reason(exc)}")
        return EXIT_STARTUP
    except Exception as exc:  # sqlite3 or redis-py: the store cannot be opened or reached
        _say(f"cannot open store {args.store}: {exc}")
        return EXIT_STARTUP
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, errors.reopen)
    _say(
        f"{_version_line()} listening on http://{args.host}:{agg.port} "
        f"(store {args.store}; retention {args.retention} s; pid {os.getpid()})"
    )
    await stop.wait()
    _say("stopping: answering open requests")
    await agg.stop(args.timeout_graceful_shutdown)
    return EXIT_OK
