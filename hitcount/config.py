"""The frozen settings of one hitcount server, every default named once with its reason.

Owns: `Config` and the named defaults and limits. Imports nothing of ours.
Must not: read the environment or the command line (that is `cli.py`), or do any I/O.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from dataclasses import dataclass

# The original Node prototype listened on 3000; keeping it lets old clients point at us unchanged.
DEFAULT_PORT = 3000
# Loopback by default: a collector is exposed on purpose, never by accident (uvicorn does the same).
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PATH = "/log"
DEFAULT_METHODS = ("GET",)
# uvicorn and gunicorn both default to 2048 (ECOSYSTEM.md §1a).
DEFAULT_BACKLOG = 2048
# Below Kubernetes' 30 s termination grace period, so we finish before a SIGKILL (ECOSYSTEM.md §1c).
DEFAULT_GRACEFUL_TIMEOUT = 10.0
# A worker writes a heartbeat from its own event loop this often (seconds)...
HEARTBEAT_INTERVAL = 0.1
# ...and is declared stuck, killed and replaced when none came for this long (uvicorn's
# --timeout-worker-healthcheck default is 5 s too).
DEFAULT_WORKER_HEALTHCHECK = 5.0
# A worker that has not bound its socket this long after being started never became ready.
WORKER_READY_TIMEOUT = 10.0
# A worker that dies RESTART_LIMIT times within RESTART_WINDOW seconds stops the server: something is
# wrong that restarting will not fix (gunicorn and systemd use the same "N in T" shape).
RESTART_LIMIT = 5
RESTART_WINDOW = 60.0
# Restart delays after consecutive deaths of one slot: at once, then doubling up to the cap.
RESTART_BACKOFF = (0.0, 0.25, 0.5, 1.0, 2.0)
# Methods llhttp knows that may be listed in --methods. HEAD is answered always (as GET, no body).
# A typo (--workers 100000) must not fork the host to its knees; no machine we run on has 1024 cores.
MAX_WORKERS = 1024
KNOWN_METHODS = frozenset({"GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS"})

# Write-buffer marks for backpressure: a client that pipelines without reading stops being read once
# The replay memo (HitProtocol.data_received): how many distinct reads a loop remembers per second, and
# the longest. 64 covers a sidecar's or a load balancer's few request shapes, pipelined or not; 4 KiB
# covers 16 pipelined requests of ~250 bytes. Unique reads (e.g. ids in query strings) just miss.
REPLAY_ENTRIES = 64
REPLAY_MAX_READ = 4096

# 64 KiB of answers wait for it (asyncio's own default high-water mark), and is read again below 16 KiB.
WRITE_HIGH_WATER = 64 * 1024
WRITE_LOW_WATER = 16 * 1024

# --- Limits on what a client may send (README: Hardening). Each refusal is one canned answer + close.
# Request target: nginx refuses a request line longer than one large_client_header_buffers buffer (8 KiB)
# with 414; no browser or beacon library sends a /log URL anywhere near that.
DEFAULT_MAX_URL = 8 * 1024
# Whole request head (request line + header section), counted in bytes as it streams in: Node's
# --max-http-header-size and h11's max_incomplete_event_size are both 16 KiB.
DEFAULT_MAX_HEAD = 16 * 1024
# Header fields per request: Apache's LimitRequestFields default. A browser sends ~10-20.
DEFAULT_MAX_HEADERS = 100
# Request body (PUT/POST are only counted, never stored): nginx's client_max_body_size default, 1 MiB.
DEFAULT_MAX_BODY = 1024 * 1024
# A connection must complete each request head within this (slowloris): the issue asks for 10 s;
# nginx's client_header_timeout is 60 s, far too generous for a collector facing the internet.
DEFAULT_TIMEOUT_HEADER = 10.0
# Idle keep-alive connections close after this: uvicorn's --timeout-keep-alive default, 5 s.
DEFAULT_TIMEOUT_KEEP_ALIVE = 5.0
# Open connections per event loop before new ones get a 503; 0 = no limit (uvicorn's default too).
# The real cap is then RLIMIT_NOFILE; bench/idle_connections.py measures what 10,000 idle ones cost.
DEFAULT_LIMIT_CONCURRENCY = 0
# After our last answer on a connection we half-close and drain what the client still sends (so no RST
# destroys answers in flight), but only this much: a client streaming on past a refusal is cut off.
LINGER_BYTES = 64 * 1024
# Timeouts are enforced by one sweep per event loop at this period, so a deadline fires up to one
# period late; that buys one float store per read instead of a timer per connection or request.
SWEEP_INTERVAL = 1.0

# --- Operations (docs/operations.md).
# The health and metrics routes. Exact matches, answered only for GET/HEAD, never on the hit path;
# --path may not be one of them while they share its port.
PROBE_PATHS = ("/livez", "/readyz", "/metrics")
# Levels of --log-level, lowest first (the same names as records.LEVELS, which filters by them).
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")


@dataclass(frozen=True, slots=True)
class Config:
    """Everything one hitcount server needs to know; build it once, never mutate it."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    path: str = DEFAULT_PATH
    methods: tuple[str, ...] = DEFAULT_METHODS
    log_file: str = "combined.log"
    error_log: str = "error.log"
    server_id: str = ""
    backlog: int = DEFAULT_BACKLOG
    timeout_graceful_shutdown: float = DEFAULT_GRACEFUL_TIMEOUT
    workers: int = 1
    state_dir: str = ""
    timeout_worker_healthcheck: float = DEFAULT_WORKER_HEALTHCHECK
    # Where each emitted second is also reported: "" (nowhere), http://HOST:PORT or redis://HOST:PORT/DB.
    report_to: str = ""
    limit_max_url: int = DEFAULT_MAX_URL
    limit_max_head: int = DEFAULT_MAX_HEAD
    limit_max_headers: int = DEFAULT_MAX_HEADERS
    limit_max_body: int = DEFAULT_MAX_BODY
    limit_concurrency: int = DEFAULT_LIMIT_CONCURRENCY
    timeout_header: float = DEFAULT_TIMEOUT_HEADER
    timeout_keep_alive: float = DEFAULT_TIMEOUT_KEEP_ALIVE
    # Health and metrics: on the hit port (metrics_port None), on a port of their own, or off.
    probes: bool = True
    metrics_port: int | None = None
    metrics_host: str = ""  # the address of the metrics port ("": --host)
    # Keep serving (and counting) this long after SIGTERM, with /readyz answering 503 (0: stop at once).
    shutdown_delay: float = 0.0
    log_level: str = "info"
    log_format: str = "text"

    def __post_init__(self) -> None:
        if not self.path.startswith("/"):
            raise ValueError(f"path must start with '/': {self.path!r}")
        if not all("!" <= c <= "~" and c not in "?#" for c in self.path):
            # compared with the raw request target: visible ASCII only, and no query or fragment
            raise ValueError(f"path must be visible ASCII without '?' or '#': {self.path!r}")
        bad = [m for m in self.methods if m not in KNOWN_METHODS]
        if bad or not self.methods:
            raise ValueError(
                f"unknown method(s) {','.join(bad) or '(none)'}; choose from "
                + ",".join(sorted(KNOWN_METHODS))
            )
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port out of range: {self.port}")
        if not 1 <= self.workers <= MAX_WORKERS:
            raise ValueError(f"workers must be 1 to {MAX_WORKERS}: {self.workers}")
        self._check_limits()
        self._check_operations()

    def _check_limits(self) -> None:
        if not 64 <= self.limit_max_url <= self.limit_max_head:
            raise ValueError("limit-max-url must be at least 64 and at most limit-max-head")
        if self.limit_max_headers < 1 or self.limit_max_body < 0 or self.limit_concurrency < 0:
            raise ValueError("limit-max-headers must be >= 1, limit-max-body and limit-concurrency >= 0")
        if not (self.timeout_header > 0 and self.timeout_keep_alive > 0):
            raise ValueError("timeouts must be positive")

    def _check_operations(self) -> None:
        if self.probes and self.metrics_port is None and self.path in PROBE_PATHS:
            raise ValueError(
                f"path {self.path} is a health/metrics route; move those with --metrics-port or "
                "turn them off with --metrics-port off"
            )
        if self.metrics_port is not None:
            if not 0 <= self.metrics_port <= 65535:
                raise ValueError(f"metrics port out of range: {self.metrics_port}")
            if self.metrics_port == self.port != 0 and self.metrics_host in ("", self.host):
                raise ValueError("the metrics port must differ from --port (or be left unset)")
        if not self.shutdown_delay >= 0:
            raise ValueError("shutdown-delay must be 0 or more seconds")
        if self.log_level not in LOG_LEVELS:
            raise ValueError(f"log level must be one of {', '.join(LOG_LEVELS)}: {self.log_level!r}")
        if self.log_format not in LOG_FORMATS:
            raise ValueError(f"log format must be text or json: {self.log_format!r}")

    def with_port(self, port: int) -> Config:
        """The same settings bound to `port` (used once port 0 has been resolved)."""
        return dataclasses.replace(self, port=port)

    def resolved_state_dir(self) -> str:
        """`--state-dir`, or `.hitcount/` beside the record log (the working directory for stdout)."""
        if self.state_dir:
            return self.state_dir
        special = self.log_file == "-" or self.log_file.startswith("/dev/")  # not beside /dev/stdout
        base = "." if special else os.path.dirname(os.path.abspath(self.log_file))
        return os.path.join(base, ".hitcount")

    def resolved_server_id(self) -> str:
        """`--server-id`, or `hostname:port` as the issue asks."""
        return self.server_id or f"{socket.gethostname()}:{self.port}"
