"""Test helpers: start the real server (subprocess or in-process) and talk HTTP/1.1 over real sockets.

Owns: `Proc` (a `python -m hitcount` child on a free loopback port), `read_responses` (a strict
little response reader), `records` (reading combined.log). Used by every end-to-end test.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LISTEN_RE = re.compile(r"listening on http://[^:]+:(\d+)")


# Every child process a test starts, so that one left running by a failing test is killed (by pid)
# when that test ends (tests/conftest.py) instead of outliving the run.
STARTED: list[subprocess.Popen[Any]] = []


def track(popen: subprocess.Popen[Any]) -> subprocess.Popen[Any]:
    STARTED.append(popen)
    return popen


def kill_leftovers() -> list[int]:
    """Kill every tracked child still running; returns their pids."""
    left = [p for p in STARTED if p.poll() is None]
    for p in left:
        p.kill()
        p.wait(10)
    STARTED.clear()
    return [p.pid for p in left]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a child hitcount: this checkout first on the path, no HITCOUNT_* leaks."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HITCOUNT_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


@dataclass
class Proc:
    """A `python -m hitcount` child process writing its logs under `tmp`."""

    tmp: Path
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    popen: subprocess.Popen[bytes] | None = None
    port: int = 0
    stderr_lines: list[str] = field(default_factory=list)

    @property
    def log(self) -> Path:
        return self.tmp / "combined.log"

    @property
    def error_log(self) -> Path:
        return self.tmp / "error.log"

    def start(self, timeout: float = 15.0) -> Proc:
        cmd = [
            sys.executable,
            "-m",
            "hitcount",
            "--port",
            "0",
            "--log-file",
            str(self.log),
            "--error-log",
            str(self.error_log),
            *self.args,
        ]
        self.popen = track(
            subprocess.Popen(
                cmd,
                cwd=self.tmp,
                env=child_env(**self.env),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        )
        deadline = time.monotonic() + timeout
        assert self.popen.stderr is not None
        while time.monotonic() < deadline:
            line = self.popen.stderr.readline().decode()
            if not line:
                raise RuntimeError(f"hitcount exited early: {self.stderr_lines}")
            self.stderr_lines.append(line)
            m = LISTEN_RE.search(line)
            if m:
                self.port = int(m.group(1))
                return self
        raise RuntimeError(f"hitcount did not start: {self.stderr_lines}")

    def send(self, sig: int) -> None:
        assert self.popen is not None
        self.popen.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Signal the child and wait; returns its exit code. Kills it (by pid) if it hangs."""
        assert self.popen is not None
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        try:
            rc = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            raise
        assert self.popen.stderr is not None
        self.stderr_lines += self.popen.stderr.read().decode().splitlines(keepends=True)
        return rc

    def kill(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()


def records(path: Path) -> list[dict[str, Any]]:
    """Every JSON line of a records file (a torn last line would fail the test, as it should)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def check_series(recs: list[dict[str, Any]]) -> None:
    """Every second from the first record to the last appears exactly once, in order."""
    ts = [r["ts"] for r in recs]
    assert ts == list(range(ts[0], ts[0] + len(ts))), f"gaps or duplicates in {ts}"


def connect(port: int, timeout: float = 10.0) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


def read_responses(
    sock: socket.socket, n: int | None = None, head_only: bool = False
) -> tuple[list[Response], bool]:
    """Read `n` responses (or until EOF when `n` is None). Returns (responses, closed_by_server).

    Strict: every response must be well-formed HTTP/1.1 with a Content-Length or a status that has
    no body. `head_only` reads answers to HEAD (no body despite Content-Length).
    """
    buf = b""
    out: list[Response] = []
    closed = False
    while n is None or len(out) < n:
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            chunk = sock.recv(65536)
            if not chunk:
                closed = True
                break
            buf += chunk
            continue
        head, rest = buf[:end].decode("latin-1"), buf[end + 4 :]
        lines = head.split("\r\n")
        m = re.fullmatch(r"HTTP/1\.[01] (\d{3}) [^\r\n]*", lines[0])
        assert m, f"bad status line {lines[0]!r}"
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        status = int(m.group(1))
        length = (
            0
            if status in (204, 304) or status < 200 or head_only
            else int(headers.get("content-length", "0"))
        )
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                raise AssertionError("connection closed inside a body")
            rest += chunk
        out.append(Response(status, headers, rest[:length]))
        buf = rest[length:]
    if n is not None and len(out) == n and not closed:
        closed = _closed_now(sock, buf)
    return out, closed


def _closed_now(sock: socket.socket, leftover: bytes) -> bool:
    """After the expected answers: did the server close (EOF soon), or keep the connection open?"""
    assert not leftover, f"unexpected bytes after the last response: {leftover!r}"
    sock.settimeout(0.3)
    try:
        extra = sock.recv(65536)
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    finally:
        sock.settimeout(10.0)
    assert not extra, f"unexpected bytes after the last response: {extra!r}"
    return True


def get(port: int, target: str = "/log", method: str = "GET", extra: str = "") -> Response:
    with connect(port) as s:
        s.sendall(f"{method} {target} HTTP/1.1\r\nHost: t\r\n{extra}\r\n".encode())
        (resp,), _ = read_responses(s, 1, head_only=method == "HEAD")
        return resp
