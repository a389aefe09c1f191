"""Memory of idle keep-alive connections on one hitcount worker: start a server, open N connections that
each complete one GET /log and then sit idle, and read the server's RSS from /proc before and after.

Owns: the measurement only (prints one JSON line). Starts `python -m hitcount` from the checkout it
lives in, on a free loopback port, with long timeouts so nothing is closed during the measurement;
raises RLIMIT_NOFILE (for itself and the server it starts) to the hard limit. Linux only.
Usage: python bench/idle_connections.py [--connections 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GET = b"GET /log HTTP/1.1\r\nHost: bench\r\n\r\n"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def start_server(tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "hitcount", "--port", "0", "--log-file", str(tmp / "c.log")]
    cmd += ["--error-log", str(tmp / "e.log"), "--timeout-keep-alive", "3600", "--backlog", "4096"]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    assert proc.stderr is not None
    for _ in range(50):
        m = re.search(rb"listening on http://[^:]+:(\d+)", proc.stderr.readline())
        if m:
            return proc, int(m.group(1))
    proc.kill()
    raise RuntimeError("server did not start")


def open_idle(port: int, n: int) -> list[socket.socket]:
    """n connections, each after one answered GET /log (so each is a live keep-alive connection)."""
    socks = []
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(GET)
        socks.append(s)
        if i % 500 == 499 or i == n - 1:  # read answers in batches: fewer round trips
            for t in socks[-((i % 500) + 1) :]:
                if not t.recv(4096).startswith(b"HTTP/1.1 204"):
                    raise RuntimeError("unexpected answer")
    return socks


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--connections", type=int, default=10_000)
    args = p.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = args.connections + 256
    if hard < need:
        print(f"RLIMIT_NOFILE hard limit {hard} < {need}", file=sys.stderr)
        return 2
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, need), hard))  # the server inherits it
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"hitcount-idle-{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    proc, port = start_server(tmp)
    try:
        warm = open_idle(port, 1)  # one request through every code path before the baseline
        time.sleep(0.5)
        before = rss_kib(proc.pid)
        t0 = time.monotonic()
        socks = open_idle(port, args.connections)
        opened_s = time.monotonic() - t0
        time.sleep(2.0)  # let the sweep run over all of them at least once
        after = rss_kib(proc.pid)
        for s in socks + warm:
            s.close()
    finally:
        proc.terminate()
        proc.wait(30)
    print(
        json.dumps(
            {
                "connections": args.connections,
                "rss_before_mib": round(before / 1024, 1),
                "rss_after_mib": round(after / 1024, 1),
                "growth_mib": round((after - before) / 1024, 1),
                "per_connection_kib": round((after - before) / args.connections, 2),
                "open_seconds": round(opened_s, 2),
                "python": sys.version.split()[0],
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
