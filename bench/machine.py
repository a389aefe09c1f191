"""The machine a run happens on: which CPU serves and which loads, the file-descriptor limit, and
the environment recorded beside every result (CPU, kernel, Python, versions, load average).

Owns: facts about the host and the process limits the harness raises for itself and its children.
Reads /proc and asks programs for their versions; starts nothing that keeps running.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import resource
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# 10,000 connections need 10,000 descriptors in the server and as many in wrk, plus some slack.
WANTED_NOFILE = 65536
PACKAGES = ("uvloop", "httptools", "uvicorn", "aiohttp", "matplotlib", "hitcount")


def cpu_plan() -> tuple[str, str, str]:
    """(server CPU, load CPU, every CPU) as taskset lists. With one CPU both sides share it."""
    cpus = sorted(os.sched_getaffinity(0))
    server, load = (cpus[0], cpus[1]) if len(cpus) > 1 else (cpus[0], cpus[0])
    return str(server), str(load), ",".join(map(str, cpus))


def raise_nofile() -> int:
    """Lift RLIMIT_NOFILE (inherited by every server and generator we start) as far as allowed:
    to WANTED_NOFILE when root may raise the hard limit, else to the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= WANTED_NOFILE:
        return soft
    new_hard = hard if hard == resource.RLIM_INFINITY else max(hard, WANTED_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (WANTED_NOFILE, new_hard))
        return WANTED_NOFILE
    except (ValueError, OSError):  # not root: the hard limit is as far as we may go
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard


def _first_line(argv: list[str]) -> str | None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else None


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def load_average() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def environment(plan: tuple[str, str, str]) -> dict[str, Any]:
    """Everything a reader needs to judge or repeat the numbers; `plan` is `cpu_plan()` as taken
    before the harness pinned itself to the load CPU."""
    server, load, every = plan
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "server_cpu": server,
        "load_cpu": load,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": {p: _version(p) for p in PACKAGES},
        "programs": {
            "nginx": _first_line(["nginx", "-v"]),
            "node": _first_line(["node", "--version"]),
            "wrk": _first_line(["wrk", "-v"]),
        },
        "git": _first_line(["git", "-C", str(ROOT), "describe", "--always", "--dirty"]),
        "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "load_average_before": load_average(),
        "all_cpus": every,
    }
