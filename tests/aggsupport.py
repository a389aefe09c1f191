"""Test helpers for the aggregator: a real redis-server child, a real `hitcount aggregate` child, HTTP calls.

Owns: `RedisServer` (started on a free loopback port, stopped and restarted by PID, data kept in its
directory with an fsynced AOF so a restart loses nothing), `AggProc`, `put`/`count`, and `Load`
(a thread sending hits to a collector and counting the answered ones).
"""

from __future__ import annotations

import http.client
import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .support import LISTEN_RE, child_env, connect, free_port, read_responses, track

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"


@dataclass
class RedisServer:
    """A real redis-server on loopback, appendonly with fsync always (a restart keeps every write)."""

    dir: Path
    port: int = field(default_factory=free_port)
    popen: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.dir.mkdir(parents=True, exist_ok=True)
        cmd = [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes"]
        cmd += [
            "--appendfsync",
            "always",
            "--dir",
            str(self.dir),
            "--daemonize",
            "no",
            "--protected-mode",
            "no",
        ]
        self.popen = track(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with connect(self.port, timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(64).startswith(b"+PONG"):
                        return self
            except OSError:
                pass
            if self.popen.poll() is not None:
                raise RuntimeError("redis-server exited at start")
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


@dataclass
class AggProc:
    """A `python -m hitcount aggregate` child on a fixed port (so it can be restarted in place)."""

    tmp: Path
    store: str
    args: list[str] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    popen: subprocess.Popen[bytes] | None = None
    stderr_lines: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> AggProc:
        cmd = [sys.executable, "-m", "hitcount", "aggregate", "--port", str(self.port)]
        cmd += ["--store", self.store, "--error-log", str(self.tmp / "aggregate-error.log"), *self.args]
        self.popen = track(subprocess.Popen(
            cmd, cwd=self.tmp, env=child_env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        ))  # fmt: skip
        assert self.popen.stderr is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.popen.stderr.readline().decode()
            if not line:
                raise RuntimeError(f"aggregator exited early: {self.stderr_lines}")
            self.stderr_lines.append(line)
            if LISTEN_RE.search(line):
                threading.Thread(target=self._drain_stderr, args=(self.popen,), daemon=True).start()
                return self
        raise RuntimeError(f"aggregator did not start: {self.stderr_lines}")

    def _drain_stderr(self, popen: subprocess.Popen[bytes]) -> None:
        assert popen.stderr is not None
        for line in popen.stderr:
            self.stderr_lines.append(line.decode())

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.popen is not None
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        return self.popen.wait(20)

    def kill(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()


def call(port: int, method: str, target: str, body: bytes | None = None) -> tuple[int, Any]:
    """One request on a fresh connection: (status, parsed JSON body or None)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, target, body=body)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, json.loads(data) if data else None
    finally:
        conn.close()


def put_batch(port: int, server: str, counts: list[list[int]], run: str = "") -> int:
    body = json.dumps({"server": server, "run": run, "counts": counts}).encode()
    return call(port, "PUT", "/logBatch", body)[0]


def count(port: int, since: int, until: int, by_server: bool = False) -> dict[str, Any]:
    status, doc = call(
        port, "GET", f"/count?since={since}&until={until}" + ("&by=server" if by_server else "")
    )
    assert status == 200, doc
    assert isinstance(doc, dict)
    return doc


def wait_total(port: int, since: int, until: int, want: int, timeout: float = 40.0) -> dict[str, Any]:
    """Poll GET /count until the total is `want` (the collectors may still be catching up)."""
    deadline = time.monotonic() + timeout
    doc: dict[str, Any] = {}
    while time.monotonic() < deadline:
        doc = count(port, since, until, by_server=True)
        if doc["total"] == want:
            return doc
        time.sleep(0.2)
    return doc


class Load(threading.Thread):
    """Sends pipelined GET /log batches to a collector until stopped; `acked` counts the 204s."""

    def __init__(self, port: int, burst: int = 20, pause: float = 0.01) -> None:
        super().__init__(daemon=True)
        self.port, self.burst, self.pause = port, burst, pause
        self.acked = 0
        self.halt = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        req = b"GET /log HTTP/1.1\r\nHost: t\r\n\r\n" * self.burst
        try:
            with connect(self.port) as s:
                while not self.halt.is_set():
                    s.sendall(req)
                    resps, _ = read_responses(s, self.burst)
                    self.acked += sum(1 for r in resps if r.status == 204)
                    time.sleep(self.pause)
        except BaseException as exc:  # reported by the test through .error
            self.error = exc

    def finish(self) -> int:
        self.halt.set()
        self.join(20)
        assert self.error is None, self.error
        return self.acked


def hits(port: int, n: int) -> None:
    """Send exactly `n` counted hits on one connection and read every answer."""
    with connect(port) as s:
        while n:
            k = min(n, 100)
            s.sendall(b"GET /log HTTP/1.1\r\nHost: t\r\n\r\n" * k)
            resps, _ = read_responses(s, k)
            assert [r.status for r in resps] == [204] * k
            n -= k
