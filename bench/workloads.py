"""What a run does to each server: the workloads, the three run profiles (smoke, quick, full), and
the measurement of one workload and of hitcount's accuracy.

Owns: workload and profile definitions (every duration, connection count and rate named here once)
and `measure` / `check_accuracy`, which wrap a load run with the server's CPU readings. Uses
servers.Running to hold servers and loadgen to drive them; prints nothing (run.py reports progress).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import analysis, loadgen, procstat
from bench.servers import Running


@dataclass(frozen=True)
class Workload:
    """One way of loading a server. `rate` > 0 makes it a fixed-rate exact-client run."""

    name: str
    what: str
    connections: int
    depth: int = 1
    close: bool = False
    rate: float = 0.0


KEEPALIVE = Workload("keepalive", "keep-alive, 1 request in flight per connection", 50)
PIPELINED = Workload("pipelined", "pipelined x16, as TechEmpower plaintext", 256, depth=16)
NEWCONN = Workload("newconn", "a new connection per request", 50, close=True)
C10K = Workload("c10k", "10,000 concurrent keep-alive connections", 10_000)


def fixed_rate(rate: int, connections: int = 50) -> Workload:
    return Workload(
        f"rate{rate // 1000}k", f"fixed {rate:,}/s, open loop (exact client)", connections, rate=float(rate)
    )


@dataclass(frozen=True)
class Profile:
    """How long and how often. wrk counts whole seconds, hence the integer durations."""

    name: str
    workloads: tuple[Workload, ...]
    measure_s: int  # each wrk measurement
    warmup_s: int  # keep-alive wrk load once after each server start, before any measurement
    settle_s: int  # a wrk run of the same workload before each measurement (0: none)
    rate_s: float  # each fixed-rate run
    repeat: int  # rounds; every server is restarted each round and figures are medians
    accuracy_hits: tuple[int, int]  # (keep-alive, pipelined x16) hits in hitcount's accuracy check


PROFILES = {
    # CI: every server answers and every code path of the harness runs; the numbers mean nothing.
    "smoke": Profile(
        "smoke",
        (KEEPALIVE, fixed_rate(2_000)),
        measure_s=1,
        warmup_s=0,
        settle_s=0,
        rate_s=0.5,
        repeat=1,
        accuracy_hits=(2_000, 3_200),
    ),
    # A look in under a minute: the headline workloads once, one second each.
    "quick": Profile(
        "quick",
        (KEEPALIVE, PIPELINED, NEWCONN, fixed_rate(5_000)),
        measure_s=1,
        warmup_s=1,
        settle_s=0,
        rate_s=1.0,
        repeat=1,
        accuracy_hits=(20_000, 40_000),
    ),
    # The recorded run (about 13 minutes with every peer installed).
    "full": Profile(
        "full",
        (KEEPALIVE, PIPELINED, NEWCONN, C10K, fixed_rate(5_000), fixed_rate(20_000)),
        measure_s=5,
        warmup_s=2,
        settle_s=1,
        rate_s=5.0,
        repeat=3,
        accuracy_hits=(200_000, 400_000),
    ),
}


class Meter:
    """CPU readings around one load run: the server tree's, and the whole machine's, so that what
    neither the server nor the generator used (other tenants, steal) shows as `other_cpu_pct`."""

    def __init__(self, server: Running) -> None:
        self.server = server
        self.cpu0 = server.cpu_seconds()
        self.busy0, self.steal0 = procstat.machine_busy_seconds()

    def figures(self, load: loadgen.Load, spins: bool = False) -> dict[str, Any]:
        cpu = self.server.cpu_seconds() - self.cpu0
        busy, steal = procstat.machine_busy_seconds()
        fig = _figures(load, cpu, spins)
        if load.duration_s:
            other = busy - self.busy0 - cpu - load.client_cpu_s
            fig["other_cpu_pct"] = max(0.0, 100.0 * other / load.duration_s)
            fig["steal_pct"] = 100.0 * (steal - self.steal0) / load.duration_s
        return fig


def _figures(load: loadgen.Load, cpu_s: float, spins: bool = False) -> dict[str, Any]:
    """The figures of one run. `spins`: the generator busy-waits by design (the exact client's
    fixed-rate pacer), so its CPU share says nothing and is left out; see send_lag_us instead."""
    per_req = cpu_s / load.requests * 1e6 if load.requests else None
    return {
        "requests": load.requests,
        "rps": load.rps,
        "cpu_us_per_req": per_req,
        "server_cpu_pct": 100.0 * cpu_s / load.duration_s if load.duration_s else None,
        "client_cpu_pct": None
        if spins or not load.duration_s
        else 100.0 * load.client_cpu_s / load.duration_s,
        "latency_us": load.latency_us,
        "errors": load.errors,
    }


def measure(server: Running, wl: Workload, prof: Profile, load_cpu: str, scratch: Path) -> dict[str, Any]:
    """Settle (wrk workloads), then read the server tree's CPU around one measured load run."""
    if wl.rate:
        hits = max(1, int(wl.rate * prof.rate_s))
        out = scratch / f"exact-{server.spec.name}-{wl.name}.json"
        argv = loadgen.exact_argv(
            server.port, hits, wl.connections, rate=wl.rate, timeout_s=prof.rate_s + 10.0, out=out
        )
        meter = Meter(server)
        load = loadgen.run_exact(argv, load_cpu, prof.rate_s + 10.0, out)
        figures = meter.figures(load, spins=True)
        assert load.exact is not None
        figures["send_lag_us"] = load.exact["send_lag_us"]
        return figures
    url = f"http://127.0.0.1:{server.port}/log"
    if prof.settle_s:
        warm = loadgen.wrk_argv(url, prof.settle_s, wl.connections, wl.depth, wl.close)
        loadgen.run_wrk(warm, load_cpu, prof.settle_s)
    argv = loadgen.wrk_argv(url, prof.measure_s, wl.connections, wl.depth, wl.close)
    meter = Meter(server)
    load = loadgen.run_wrk(argv, load_cpu, prof.measure_s)
    return meter.figures(load)


def warm_up(server: Running, prof: Profile, load_cpu: str) -> None:
    """Load a freshly started server for a moment (allocators, caches, Node's JIT) before measuring."""
    if prof.warmup_s:
        url = f"http://127.0.0.1:{server.port}/log"
        argv = loadgen.wrk_argv(url, prof.warmup_s, KEEPALIVE.connections)
        loadgen.run_wrk(argv, load_cpu, prof.warmup_s)


def check_accuracy(server: Running, prof: Profile, load_cpu: str, scratch: Path) -> dict[str, Any]:
    """On a fresh hitcount: send exactly the planned hits with the exact client (keep-alive, then
    pipelined), stop the server with SIGTERM so it writes its last partial second, and compare
    its records with what the client saw: total against acknowledged hits, and per second."""
    acked = 0
    windows = analysis.Windows()
    runs = []
    for hits, depth in zip(prof.accuracy_hits, (1, 16), strict=True):
        out = scratch / f"accuracy-{server.spec.name}-d{depth}.json"
        argv = loadgen.exact_argv(server.port, hits, 50, depth=depth, timeout_s=120.0, out=out)
        load = loadgen.run_exact(argv, load_cpu, 120.0, out)
        assert load.exact is not None
        acked += load.requests
        windows.add(analysis.Windows.from_json(load.exact["windows"]))
        runs.append(
            {
                "hits": hits,
                "depth": depth,
                "acked": load.requests,
                "rps": load.rps,
                "unanswered": load.exact["unanswered"],
                "errors": load.exact["errors"],
            }
        )
    exit_code = server.stop()
    log = server.workdir / "combined.log"
    emitted = analysis.read_records(log.read_text().splitlines() if log.exists() else [])
    attribution = analysis.attribute(windows, emitted.by_second)
    return {
        "runs": runs,
        "server_exit": exit_code,
        "accuracy": analysis.accuracy(emitted.total, acked),
        "attribution": attribution.as_dict(),
        "records": {
            "lines": emitted.lines,
            "bad_lines": emitted.bad_lines,
            "duplicate_seconds": emitted.duplicate_seconds,
            "seconds": len(emitted.by_second),
        },
    }
