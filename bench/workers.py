"""1 worker vs N workers, the cost of the shared counter slot, and how late the ticker closes seconds.

Owns: `python -m bench.workers` — starts the real server (`--workers 1` and `--workers N`) on a free
loopback port, drives it with wrk (throughput, server CPU per request from /proc) and with the exact
client (emitted total == acknowledged hits), reads `late_ms` of the records written under load, and
times the slot add against a plain integer add in-process. Prints one JSON document.
Loopback only; every child is stopped by pid; every run has a deadline.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path
from typing import Any

from bench.analysis import percentile
from bench.loadgen import ROOT, exact_argv, run_exact, run_wrk, wrk_argv
from bench.procstat import tree_cpu_seconds

LISTEN_RE = re.compile(r"listening on http://[^:]+:(\d+)")


def start_server(tmp: Path, workers: int) -> tuple[subprocess.Popen[bytes], int]:
    argv = [
        sys.executable,
        "-m",
        "hitcount",
        "--port",
        "0",
        "--workers",
        str(workers),
        "--log-file",
        str(tmp / "combined.log"),
        "--error-log",
        str(tmp / "error.log"),
        "--state-dir",
        str(tmp / "state"),
        "--server-id",
        f"bench-{workers}",
    ]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env)
    assert proc.stderr is not None
    for _ in range(20):
        line = proc.stderr.readline().decode()
        m = LISTEN_RE.search(line)
        if m:
            return proc, int(m.group(1))
        if not line:
            break
    proc.kill()
    raise RuntimeError("server did not start")


def stop_server(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def late_summary(recs: list[dict[str, Any]]) -> dict[str, float]:
    late = sorted(r["late_ms"] for r in recs if not r.get("partial"))
    if not late:
        return {}
    return {"n": len(late), "p50": percentile(late, 50), "p99": percentile(late, 99), "max": late[-1]}


def one_config(workers: int, seconds: float, connections: int, hits: int) -> dict[str, Any]:
    """Throughput and CPU/request under wrk (plain and 16-deep pipelined), then an exact run."""
    out: dict[str, Any] = {"workers": workers}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        proc, port = start_server(tmp, workers)
        try:
            url = f"http://127.0.0.1:{port}/log"
            run_wrk(wrk_argv(url, 1, connections), "0-1", 1)  # warm-up
            for name, depth in (("plain", 1), ("pipelined16", 16)):
                n_before = len(records(tmp / "combined.log"))
                cpu0 = tree_cpu_seconds(proc.pid)
                load = run_wrk(wrk_argv(url, seconds, connections, depth), "0-1", seconds)
                cpu = tree_cpu_seconds(proc.pid) - cpu0
                recs = records(tmp / "combined.log")[n_before:]
                out[name] = {
                    "rps": round(load.rps),
                    "server_cpu_s": round(cpu, 2),
                    "server_cpu_us_per_request": round(cpu / load.requests * 1e6, 2),
                    "client_cpu_s": round(load.client_cpu_s, 2),
                    "late_ms": late_summary(recs),
                }
            time.sleep(2.5)  # no hits now: let the seconds holding wrk's last hits close
            before = sum(r["count"] for r in records(tmp / "combined.log"))
            exact = run_exact(
                exact_argv(port, hits, connections, 4, out=tmp / "exact.json"),
                "0-1",
                120.0,
                tmp / "exact.json",
            )
        finally:
            code = stop_server(proc)
        emitted = sum(r["count"] for r in records(tmp / "combined.log")) - before
        out["exact"] = {
            "hits": hits,
            "acked": exact.requests,
            "emitted": emitted,
            "equal": emitted == exact.requests,
            "rps": round(exact.rps),
            "exit": code,
        }
    return out


def slot_cost(n: int = 2_000_000) -> dict[str, float]:
    """ns per add: a plain integer attribute vs the shared slot (anonymous and file-backed mmap)."""
    from hitcount.counter import Slots

    class Plain:
        __slots__ = ("n",)

        def __init__(self) -> None:
            self.n = 0

    plain = Plain()
    anon = Slots.anonymous(2)
    with tempfile.TemporaryDirectory() as d:
        filed = Slots.open(os.path.join(d, "slots"), 2)
        i_a, i_f = anon.counter(1).index, filed.counter(1).index
        env = {"p": plain, "va": anon.view, "vf": filed.view, "ia": i_a, "if_": i_f}
        best = {}
        for name, stmt in (
            ("plain_int", "p.n += 3"),
            ("slot_anonymous", "va[ia] += 3"),
            ("slot_file", "vf[if_] += 3"),
        ):
            runs = timeit.repeat(stmt, globals=env, number=n, repeat=7)
            best[name] = round(min(runs) / n * 1e9, 2)
        filed.close()
    anon.close()
    return best


def environment() -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "cpu": _cpu_model(),
        "host": socket.gethostname(),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workers", type=int, default=2, help="the N compared with 1 (default 2)")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--hits", type=int, default=200_000)
    a = p.parse_args(argv)
    result: dict[str, Any] = {"environment": environment(), "slot_add_ns": slot_cost(), "runs": []}
    for w in (1, a.workers):
        result["runs"].append(one_config(w, a.seconds, a.connections, a.hits))
    one = result["runs"][0]["plain"]["server_cpu_us_per_request"]
    extra = result["slot_add_ns"]["slot_file"] - result["slot_add_ns"]["plain_int"]
    result["slot_overhead_pct_of_request_cpu"] = round(extra / 1000 / one * 100, 3)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
