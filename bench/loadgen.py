"""The load generators as pinned child processes: wrk for throughput, the exact client for exact
counts and fixed-rate latency. Both report through one shape, `Load`.

Owns: building their command lines, running them under `taskset` on the load CPU with a hard time
limit, reading their JSON (wrk's comes from wrk_report.lua), and the generator's own CPU use (from
wait4), which tells whether the generator rather than the server was the bottleneck.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


@dataclass
class Load:
    """What one measured load run produced."""

    requests: int
    duration_s: float
    latency_us: dict[str, float]
    client_cpu_s: float
    errors: dict[str, Any] = field(default_factory=dict)
    exact: dict[str, Any] | None = None  # the exact client's full summary, when it was used

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0


class LoadError(RuntimeError):
    """A load generator failed to run or to report: a harness problem, not a slow server."""


def wrk_argv(
    url: str, seconds: float, connections: int, depth: int = 1, close: bool = False, timeout_s: float = 8.0
) -> list[str]:
    """wrk with one thread (the load side has one CPU); `depth` > 1 pipelines like TechEmpower;
    `close` asks for a new connection per request. The 8 s timeout is TechEmpower's."""
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", f"--timeout={timeout_s:g}s"]
    if close:
        argv += ["-H", "Connection: close"]
    if depth > 1:
        return argv + ["-s", str(HERE / "pipeline.lua"), url, "--", str(depth)]
    return argv + ["-s", str(HERE / "wrk_report.lua"), url]


def parse_wrk(stdout: str) -> dict[str, Any]:
    """The WRKJSON line wrk_report.lua printed. wrk returns 0 for percentiles it lost track of
    (it does with pipelining), so zeros become absent rather than being shown as 0 µs."""
    for line in stdout.splitlines():
        if line.startswith("WRKJSON "):
            data: dict[str, Any] = json.loads(line[len("WRKJSON ") :])
            data["latency_us"] = {k: v for k, v in data["latency_us"].items() if v > 0}
            return data
    raise LoadError("wrk printed no WRKJSON line:\n" + stdout[-500:])


def exact_argv(
    port: int,
    hits: int,
    connections: int,
    depth: int = 1,
    rate: float = 0.0,
    timeout_s: float = 60.0,
    out: Path | None = None,
) -> list[str]:
    """The exact client (bench/exact.py) as a child process."""
    argv = [
        sys.executable,
        "-m",
        "bench.exact",
        "--port",
        str(port),
        "--hits",
        str(hits),
        "--connections",
        str(connections),
        "--depth",
        str(depth),
        "--rate",
        f"{rate:g}",
        "--timeout",
        f"{timeout_s:g}",
    ]
    return argv + (["--out", str(out)] if out else [])


def _pinned(argv: list[str], cpus: str) -> list[str]:
    return ["taskset", "-c", cpus, *argv]


def run_child(argv: list[str], cpus: str, limit_s: float) -> tuple[int, str, str]:
    """Run `argv` on `cpus`; kill it (by pid) if it outlives `limit_s`. Returns the exit status,
    stdout and stderr. Its CPU use lands in RUSAGE_CHILDREN once it is reaped (`children_cpu`)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        _pinned(argv, cpus), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env
    )
    try:
        out, err = proc.communicate(timeout=limit_s)
    except subprocess.TimeoutExpired:
        proc.kill()  # by pid; Popen.kill signals only this child
        proc.communicate()
        raise LoadError(f"{argv[0]} still running after {limit_s:g} s: killed") from None
    except BaseException:  # Ctrl-C or a bug: leave no generator behind
        proc.kill()
        proc.wait()
        raise
    return proc.returncode, out, err


def children_cpu() -> float:
    """CPU seconds of every reaped child so far; the harness runs one load child at a time, so the
    difference around a run is that generator's own CPU."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_wrk(argv: list[str], cpus: str, seconds: float) -> Load:
    """One wrk run; a non-zero exit or a missing report is a LoadError."""
    before = children_cpu()
    code, out, err = run_child(argv, cpus, seconds + 30.0)
    cpu = children_cpu() - before
    if code != 0:
        raise LoadError(f"wrk exited {code}: {err.strip()[-300:]}")
    data = parse_wrk(out)
    return Load(
        data["requests"],
        data["duration_us"] / 1e6,
        data["latency_us"],
        cpu,
        {k: v for k, v in data["errors"].items() if v},
    )


def run_exact(argv: list[str], cpus: str, limit_s: float, out: Path) -> Load:
    """One exact-client run; its summary is kept whole in `Load.exact`. Unanswered hits or errors
    are reported in `errors`, not raised: they are findings about the server."""
    before = children_cpu()
    code, _, err = run_child(argv, cpus, limit_s + 15.0)
    cpu = children_cpu() - before
    try:
        data: dict[str, Any] = json.loads(out.read_text())
    except (OSError, ValueError) as exc:
        raise LoadError(f"exact client (exit {code}) left no summary: {err.strip()[-300:]}") from exc
    errors = {"messages": data["errors"], "unanswered": data["unanswered"]} if code else {}
    return Load(data["acked"], data["duration_s"], data["latency_us"], cpu, errors, data)


def wait_quiet(seconds: float) -> None:
    """A short pause between runs so TIME_WAIT sockets and the previous run's tail settle."""
    time.sleep(seconds)
