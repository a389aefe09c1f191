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
from dataclasses import asdict, dataclass, field
from typing import Any

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


@dataclass
class Windows:
    """Per wall second S, from the client's per-hit send and answer times (answered hits only):
    `same[S]` hits sent and answered within S — the server must have counted them in S;
    `possible[S]` hits whose send..answer interval touches S — the most it may have counted in S;
    `sent[S]` and `answered[S]` hits sent / answered in S, for the cumulative (direction) checks."""

    same: Counter[int] = field(default_factory=Counter)
    possible: Counter[int] = field(default_factory=Counter)
    sent: Counter[int] = field(default_factory=Counter)
    answered: Counter[int] = field(default_factory=Counter)

    def add(self, other: Windows) -> None:
        for mine, theirs in zip(self.as_tuple(), other.as_tuple(), strict=True):
            mine.update(theirs)

    def as_tuple(self) -> tuple[Counter[int], ...]:
        return (self.same, self.possible, self.sent, self.answered)

    def to_json(self) -> dict[str, dict[str, int]]:
        names = ("same", "possible", "sent", "answered")
        return {
            n: {str(k): v for k, v in sorted(c.items())} for n, c in zip(names, self.as_tuple(), strict=True)
        }

    @classmethod
    def from_json(cls, data: dict[str, dict[str, int]]) -> Windows:
        def c(name: str) -> Counter[int]:
            return Counter({int(k): v for k, v in data[name].items()})

        return cls(c("same"), c("possible"), c("sent"), c("answered"))


def second_windows(sends: Sequence[float], recvs: Sequence[float]) -> Windows:
    """Bucket each answered hit (receive time > 0) by wall second; see `Windows`."""
    w = Windows()
    for sent, got in zip(sends, recvs, strict=True):
        if got <= 0.0:
            continue
        first, last = int(sent), int(got)
        w.sent[first] += 1
        w.answered[last] += 1
        if first == last:
            w.same[first] += 1
            w.possible[first] += 1
        else:
            for second in range(first, last + 1):
                w.possible[second] += 1
    return w


@dataclass(frozen=True)
class Attribution:
    """How well the server's seconds match the seconds in which the client saw its hits.

    Every field is a lower bound: the client cannot see which hit the server put where, and a hit
    that straddled a boundary may legitimately fill the gap another one left."""

    same_second_hits: int  # hits sent and answered within one wall second
    missing: int  # same-second hits that were not counted in their second
    impossible: int  # hits counted in a second their send..answer interval does not touch
    early: int  # hit-boundaries: counted by the end of S though sent after S (a late switch)
    late: int  # hit-boundaries: answered by the end of S but counted after S
    fraction: float  # max(missing, impossible) / same_second_hits: held against the 0.1 % target
    seconds: list[tuple[int, int, int, int]]  # (S, same, possible, emitted) where S broke a bound

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def attribute(w: Windows, emitted: dict[int, int], keep: int = 20) -> Attribution:
    """Compare the client's windows with the server's per-second counts. Per second S the record
    must lie within [same[S], possible[S]]; cumulatively, by the end of S the server must have
    counted every hit answered by then and none sent later. `keep` caps the offending seconds
    listed for diagnosis."""
    missing = impossible = early = late = 0
    bad: list[tuple[int, int, int, int]] = []
    sent_so_far = answered_so_far = counted_so_far = 0
    for s in sorted(set(w.possible) | set(emitted)):
        n, lo, hi = emitted.get(s, 0), w.same.get(s, 0), w.possible.get(s, 0)
        missing += max(0, lo - n)
        impossible += max(0, n - hi)
        if (n < lo or n > hi) and len(bad) < keep:
            bad.append((s, lo, hi, n))
        sent_so_far += w.sent.get(s, 0)
        answered_so_far += w.answered.get(s, 0)
        counted_so_far += n
        early += max(0, counted_so_far - sent_so_far)
        late += max(0, answered_so_far - counted_so_far)
    total = sum(w.same.values())
    fraction = max(missing, impossible) / total if total else 0.0
    return Attribution(total, missing, impossible, early, late, fraction, bad)


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
