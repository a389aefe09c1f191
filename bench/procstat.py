"""CPU time and peak memory of a process tree, read from /proc.

Owns: parsing /proc/<pid>/stat and /proc/<pid>/status, finding a process's descendants, and summing
their CPU. The parsers take text, so tests need no live process; only `snapshot` and `peak_rss_kib`
read /proc. Linux only; imports only the standard library.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")  # utime/stime are in these (100 per second on Linux)


@dataclass(frozen=True)
class Stat:
    """The fields of /proc/<pid>/stat that CPU accounting needs, in clock ticks."""

    pid: int
    ppid: int
    utime: int
    stime: int
    cutime: int  # CPU of children that exited and were waited for
    cstime: int


def parse_stat(text: str) -> Stat:
    """Parse one /proc/<pid>/stat line. The command name (field 2) is in parentheses and may hold
    spaces or ')' itself, so split at the last ')' (proc(5))."""
    head, _, rest = text.rpartition(")")
    pid = int(head.split("(", 1)[0])
    f = rest.split()  # f[0] is field 3 (state); field n is f[n - 3]
    return Stat(pid, int(f[1]), int(f[11]), int(f[12]), int(f[13]), int(f[14]))


def parse_hwm_kib(status_text: str) -> int:
    """VmHWM (peak resident set size, KiB) from /proc/<pid>/status; 0 for kernel threads/zombies."""
    for line in status_text.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def parse_cpu_busy(proc_stat_text: str) -> tuple[int, int]:
    """(busy, steal) ticks of the machine from the aggregate `cpu` line of /proc/stat. Busy is
    user+nice+system+irq+softirq+steal: everything but idle and iowait (proc(5) field order)."""
    for line in proc_stat_text.splitlines():
        if line.startswith("cpu "):
            f = [int(x) for x in line.split()[1:9]]
            user, nice, system, _idle, _iowait, irq, softirq, steal = f
            return user + nice + system + irq + softirq + steal, steal
    raise ValueError("no aggregate cpu line in /proc/stat")


def machine_busy_seconds() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine since boot."""
    busy, steal = parse_cpu_busy(Path("/proc/stat").read_text())
    return busy / CLOCK_TICKS, steal / CLOCK_TICKS


def descendants(root: int, parent_of: Mapping[int, int]) -> set[int]:
    """`root` and every process whose parent chain reaches it."""
    children: dict[int, list[int]] = {}
    for pid, ppid in parent_of.items():
        children.setdefault(ppid, []).append(pid)
    tree, todo = {root}, [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in tree:
                tree.add(child)
                todo.append(child)
    return tree


def tree_ticks(root: int, stats: Iterable[Stat]) -> int:
    """CPU ticks (user + system) used so far by `root`'s tree: each live member's own time plus what
    its reaped children used. A worker that exits between two snapshots moves from the first sum
    into its parent's cutime in the second, so it is neither lost nor counted twice."""
    by_pid = {s.pid: s for s in stats}
    tree = descendants(root, {s.pid: s.ppid for s in by_pid.values()})
    return sum(s.utime + s.stime + s.cutime + s.cstime for p, s in by_pid.items() if p in tree)


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:  # the process exited while we looked
        return None


def all_stats(proc: Path = Path("/proc")) -> list[Stat]:
    """A /proc/<pid>/stat snapshot of every process that is still there."""
    out = []
    for entry in proc.iterdir():
        if entry.name.isdigit():
            text = _read(entry / "stat")
            if text:
                out.append(parse_stat(text))
    return out


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds used so far by `root` and its descendants."""
    return tree_ticks(root, all_stats()) / CLOCK_TICKS


def tree_pids(root: int) -> set[int]:
    """The pids of `root`'s tree right now."""
    return descendants(root, {s.pid: s.ppid for s in all_stats()})


def peak_rss_kib(root: int) -> int:
    """Sum of VmHWM over `root`'s live tree: each process's own peak, so for several processes an
    upper bound on their peak together (they need not peak at the same moment)."""
    total = 0
    for pid in tree_pids(root):
        text = _read(Path(f"/proc/{pid}/status"))
        total += parse_hwm_kib(text) if text else 0
    return total
