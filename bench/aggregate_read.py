"""Read scaling of the aggregator: GET /count over the whole retention with many reporting servers.

Owns: one measurement per store. Fills the store in-process through the store's own `put` (the same
idempotent write path the aggregator uses: SERVERS x SECONDS rows), starts a real `hitcount aggregate`
child on a free loopback port, then times GET /count (and &by=server) over the whole window from
outside, checking the answered total against the sum that was written. Prints one JSON line per store.
Usage: python -m bench.aggregate_read [--store sqlite|redis|both] [--servers 100] [--seconds 259200]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hitcount.aggregator.store import Batch, open_store  # noqa: E402

CHUNK = 3_600  # seconds per put: one catch-up request's worth


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def value(server: int, ts: int) -> int:
    return (server * 7 + ts) % 100


async def fill(url: str, servers: int, t0: int, seconds: int, retention: int) -> tuple[float, int]:
    store = open_store(url, retention)
    await store.open()
    started = time.perf_counter()
    total = 0
    for lo in range(t0, t0 + seconds, CHUNK):
        hi = min(lo + CHUNK, t0 + seconds)
        for s in range(servers):
            counts = tuple((ts, value(s, ts)) for ts in range(lo, hi))
            total += sum(n for _, n in counts)
            await store.put(Batch(f"server-{s:03d}:3000", "bench", counts), time.time())
    await store.close()
    return time.perf_counter() - started, total


def get(port: int, target: str) -> tuple[float, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    started = time.perf_counter()
    conn.request("GET", target)
    resp = conn.getresponse()
    body = resp.read()
    took = time.perf_counter() - started
    conn.close()
    assert resp.status == 200, body[:200]
    return took, json.loads(body)


def aggregator(url: str, retention: int, tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "hitcount", "aggregate", "--port", str(port), "--store", url]
    cmd += ["--retention", str(retention)]
    proc = subprocess.Popen(cmd, cwd=tmp, env=env, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    line = proc.stderr.readline().decode()
    assert "listening" in line, line
    return proc, port


def measure(kind: str, servers: int, seconds: int, tmp: Path, repeat: int) -> dict[str, Any]:
    retention = seconds
    t0 = int(time.time()) - seconds + 1800  # stays inside the retention while the fill runs
    redis = None
    if kind == "redis":
        rport = free_port()
        redis = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--port", str(rport), "--bind", "127.0.0.1"]
            + ["--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        time.sleep(0.5)
        url = f"redis://127.0.0.1:{rport}/0"
    else:
        url = f"sqlite:{tmp / 'bench.db'}"
    try:
        fill_s, want = asyncio.run(fill(url, servers, t0, seconds, retention))
        proc, port = aggregator(url, retention, tmp)
        try:
            target = f"/count?since={t0}&until={t0 + seconds}"
            runs, by_runs = [], []
            for _ in range(repeat):
                took, doc = get(port, target)
                assert doc["total"] == want and len(doc["series"]) == seconds
                runs.append(took)
                took, doc = get(port, target + "&by=server")
                assert doc["total"] == want and sum(doc["servers"].values()) == want
                by_runs.append(took)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    finally:
        if redis is not None:
            redis.send_signal(signal.SIGTERM)
            redis.wait(30)
    return {
        "store": kind,
        "servers": servers,
        "seconds": seconds,
        "rows": servers * seconds,
        "fill_s": round(fill_s, 1),
        "fill_rows_per_s": round(servers * seconds / fill_s),
        "get_count_s": {"min": round(min(runs), 3), "median": round(statistics.median(runs), 3)},
        "get_count_by_server_s": {
            "min": round(min(by_runs), 3),
            "median": round(statistics.median(by_runs), 3),
        },
        "total": want,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "kernel": platform.release(),
        },
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", choices=["sqlite", "redis", "both"], default="both")
    p.add_argument("--servers", type=int, default=100)
    p.add_argument("--seconds", type=int, default=3 * 86400)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    kinds = ["sqlite", "redis"] if args.store == "both" else [args.store]
    for kind in kinds:
        with tempfile.TemporaryDirectory(prefix="hc-bench-") as tmp:
            result = measure(kind, args.servers, args.seconds, Path(tmp), args.repeat)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
