"""Where a server's CPU goes per request: perf's split by binary (kernel, libpython, httptools,
uvloop, libc, nginx …) turned into µs per request, and py-spy's hottest Python functions.

Owns the profiling run: each chosen server is started pinned as in run.py, loaded by wrk for a
fixed time, and sampled from the load CPU. Output goes to the terminal and bench/results/profile-*.
Run `python bench/profile.py [--servers hitcount,null,nginx] [--workload keepalive] [--seconds 5]`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

if __package__ in (None, ""):  # `python bench/profile.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import loadgen, machine, procstat
from bench.servers import SPECS, Running
from bench.workloads import KEEPALIVE, NEWCONN, PIPELINED, PROFILES, Workload, measure, warm_up

WORKLOADS = {w.name: w for w in (KEEPALIVE, PIPELINED, NEWCONN)}
PERF_HZ = 999  # odd, so sampling does not beat against 1 kHz timers


def _dso_group(dso: str) -> str:
    """Group perf's binaries into the parts worth naming."""
    for key, name in (
        ("kernel", "kernel"),
        ("libpython", "python"),
        ("parser", "httptools"),
        ("loop.cpython", "uvloop"),
        ("libc", "libc"),
        ("nginx", "nginx"),
        ("node", "node"),
        ("_http_parser", "aiohttp parser"),
    ):
        if key in dso:
            return name
    return "other"


def perf_split(pids: set[int], seconds: float, cpus: str, data: Path) -> dict[str, float] | None:
    """perf record (software cpu-clock, so it works in VMs without PMU counters) on every process
    of the server's tree; returns the share of samples per binary group, or None without perf."""
    if not shutil.which("perf"):
        return None
    rec = [
        "taskset",
        "-c",
        cpus,
        "perf",
        "record",
        "-q",
        "-e",
        "cpu-clock",
        "-F",
        str(PERF_HZ),
        "-p",
        ",".join(map(str, sorted(pids))),
        "-o",
        str(data),
        "--",
        "sleep",
        f"{seconds:g}",
    ]
    subprocess.run(rec, capture_output=True, timeout=seconds + 30)
    rep = subprocess.run(
        ["perf", "report", "-i", str(data), "--no-children", "--sort", "dso", "-g", "none", "--stdio", "-q"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    shares: dict[str, float] = {}
    for line in rep.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].endswith("%"):
            group = _dso_group(parts[1])
            shares[group] = shares.get(group, 0.0) + float(parts[0][:-1]) / 100.0
    return dict(sorted(shares.items(), key=lambda kv: -kv[1]))


def pyspy_top(pid: int, seconds: float, cpus: str, raw: Path, top: int) -> list[tuple[str, float]]:
    """py-spy (non-blocking, so the server is not paused) for `seconds`; the `top` Python
    functions by self time, as (function, share of the process's Python samples)."""
    if not shutil.which("py-spy"):
        return []
    argv = [
        "taskset",
        "-c",
        cpus,
        "py-spy",
        "record",
        "-p",
        str(pid),
        "-d",
        f"{seconds:g}",
        "-r",
        "250",
        "--nonblocking",
        "-f",
        "raw",
        "-o",
        str(raw),
    ]
    subprocess.run(argv, capture_output=True, timeout=seconds + 30)
    if not raw.exists():
        return []
    leaf: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frame = stack.split(";")[-1]
        name = frame.split(" (")[0] + " (" + frame.split(" (")[-1].split(":")[0].rstrip(")") + ")"
        leaf[name] += int(count)
        total += int(count)
    return [(name, n / total) for name, n in leaf.most_common(top)] if total else []


def profile(spec_name: str, wl: Workload, seconds: int, out: Path, plan: tuple[str, str, str]) -> None:
    """A clean measured run (CPU µs per request), then perf, then py-spy, each under its own
    wrk run of the same workload; perf's shares times the clean figure give µs per request."""
    spec = next(s for s in SPECS if s.name == spec_name)
    hint = spec.missing()
    if hint:
        print(f"skip {spec_name}: {hint}")
        return
    server_cpu, load_cpu, every_cpu = plan
    prof = replace(PROFILES["quick"], measure_s=seconds, warmup_s=1)
    with Running(spec, out / spec_name, every_cpu if spec.all_cpus else server_cpu) as srv:
        warm_up(srv, prof, load_cpu)
        clean = measure(srv, wl, prof, load_cpu, out)
        url = f"http://127.0.0.1:{srv.port}/log"
        argv = loadgen.wrk_argv(url, seconds + 2, wl.connections, wl.depth, wl.close)
        with _background(argv, load_cpu):
            shares = perf_split(
                procstat.tree_pids(srv.pid), seconds, load_cpu, out / f"{spec_name}.perf.data"
            )
        top: list[tuple[str, float]] = []
        if spec.python:
            with _background(argv, load_cpu):
                top = pyspy_top(srv.pid, seconds, load_cpu, out / f"{spec_name}.pyspy.txt", 12)
    per_req = clean["cpu_us_per_req"] or 0.0
    print(
        f"\n{spec_name}, {wl.name}: {clean['rps']:,.0f} req/s, {per_req:.2f} µs CPU/request "
        f"(clean run); where it goes:"
    )
    for group, share in (shares or {}).items():
        print(f"    {group:<16}{share:>7.1%}  {share * per_req:>6.2f} µs/req")
    if top:
        print("  py-spy, Python self time (share of samples; 'Runner.run' = time in the C loop):")
        for name, share in top:
            print(f"    {share:>6.1%}  {name}")


@contextmanager
def _background(argv: list[str], cpus: str) -> Iterator[None]:
    """wrk running on the load CPU for the duration of the block; stopped by pid afterwards."""
    proc = subprocess.Popen(["taskset", "-c", cpus, *argv], stdout=subprocess.DEVNULL)
    try:
        time.sleep(0.5)  # past connection set-up
        yield
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--servers", default="hitcount,null,nginx")
    p.add_argument("--workload", choices=sorted(WORKLOADS), default="keepalive")
    p.add_argument("--seconds", type=int, default=4)
    a = p.parse_args(argv)
    machine.raise_nofile()
    plan = machine.cpu_plan()  # before the harness pins itself to the load CPU
    os.sched_setaffinity(0, {int(plan[1])})
    out = Path(__file__).resolve().parent / "results" / time.strftime("profile-%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    for name in a.servers.split(","):
        profile(name, WORKLOADS[a.workload], a.seconds, out, plan)
    print(f"\nraw profiles in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
