"""Pure arithmetic over what a run recorded: percentiles, accuracy and per-second attribution.

Owns: turning per-hit send/receive times and the server's per-second records into the figures the
report shows. Imports only the standard library; no I/O, no clock, no processes, so every rule here
is tested with hand-made numbers (bench/test_bench_helpers.py).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

# The percentiles reported for every latency distribution (wrk's --latency prints the same 50/99).
PERCENTILES = (50.0, 90.0, 99.0, 99.9)


def percentile(ordered: Sequence[float], q: float) -> float:
    """The nearest-rank percentile of an already sorted sequence (the smallest value with at least
    q% of the values at or below it); 0 <= q <= 100. Raises ValueError on an empty sequence."""
    if not ordered:
        raise ValueError("percentile of no values")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile out of range: {q}")
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


def latency_summary(latencies_s: Iterable[float]) -> dict[str, float]:
    """p50/p90/p99/p99.9/max in microseconds, as the table and JSON show them; {} if no values."""
    ordered = sorted(latencies_s)
    if not ordered:
        return {}
    out = {f"p{q:g}": percentile(ordered, q) * 1e6 for q in PERCENTILES}
    out["max"] = ordered[-1] * 1e6
    return out


def second_windows(sends: Sequence[float], recvs: Sequence[float]) -> tuple[Counter[int], Counter[int]]:
    """Per wall second S: `same[S]`, the hits sent and answered within S, which the server must have
    counted in S; and `possible[S]`, the hits whose send..receive interval touches S, the most the
    server can honestly have counted in S. Hits never answered (receive time 0) are left out."""
    same: Counter[int] = Counter()
    possible: Counter[int] = Counter()
    for sent, got in zip(sends, recvs):
        if got <= 0.0:
            continue
        first, last = int(sent), int(got)
        if first == last:
            same[first] += 1
            possible[first] += 1
        else:
            for second in range(first, last + 1):
                possible[second] += 1
    return same, possible


@dataclass(frozen=True)
class Attribution:
    """How well the server's seconds match the seconds the client saw its hits answered in."""

    same_second_hits: int  # hits sent and answered within one wall second
    missing: int  # of those, at least this many were not counted in their second
    impossible: int  # hits counted in a second in which they were neither sent, served nor answered
    fraction: float  # missing / same_second_hits: the figure held against the 0.1 % target

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def attribute(same: Counter[int], possible: Counter[int], emitted: dict[int, int]) -> Attribution:
    """Compare the client's per-second windows with the server's per-second counts.

    A second S whose record is below `same[S]` lost at least that many same-second hits to another
    second (`missing`); a record above `possible[S]` holds hits that cannot belong there
    (`impossible`, e.g. a hit answered in S but counted in S+1). Both are lower bounds: a hit that
    straddled a boundary can fill the gap another one left."""
    missing = sum(max(0, n - emitted.get(s, 0)) for s, n in same.items())
    impossible = sum(max(0, n - possible.get(s, 0)) for s, n in emitted.items())
    total_same = sum(same.values())
    return Attribution(total_same, missing, impossible, missing / total_same if total_same else 0.0)


@dataclass(frozen=True)
class Emitted:
    """The per-second records read back from combined.log."""

    by_second: dict[int, int]  # ts -> count, summed over every line (and worker) with that ts
    lines: int
    bad_lines: int  # lines that were not JSON objects with an int `ts` and int `count`
    duplicate_seconds: int  # seconds that appeared on more than one line from the same server

    @property
    def total(self) -> int:
        return sum(self.by_second.values())


def read_records(lines: Iterable[str]) -> Emitted:
    """Parse JSON lines of `{"ts": int, "count": int, "server": str, ...}`; tolerate a torn last line
    by counting it as bad rather than failing, so the report can say so."""
    by_second: Counter[int] = Counter()
    seen: set[tuple[str, int]] = set()
    n = bad = dup = 0
    for line in lines:
        if not line.strip():
            continue
        n += 1
        try:
            rec = json.loads(line)
            ts, count = rec["ts"], rec["count"]
        except (ValueError, KeyError, TypeError):
            bad += 1
            continue
        if not isinstance(ts, int) or not isinstance(count, int) or isinstance(count, bool):
            bad += 1
            continue
        key = (str(rec.get("server", "")), ts)
        dup += key in seen
        seen.add(key)
        by_second[ts] += count
    return Emitted(dict(by_second), n, bad, dup)


def accuracy(emitted_total: int, acked: int) -> dict[str, float | int | bool]:
    """Emitted total against the hits the client got a 204 for; `exact` is the pass/fail."""
    return {
        "emitted": emitted_total,
        "acked": acked,
        "difference": emitted_total - acked,
        "exact": emitted_total == acked,
        "ratio": emitted_total / acked if acked else 0.0,
    }


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either figure is missing or the denominator is 0."""
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def median(values: Sequence[float]) -> float | None:
    """The median of the repeated measurements of one figure (None for none)."""
    ordered = sorted(v for v in values if v is not None)
    if not ordered:
        return None
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2.0
