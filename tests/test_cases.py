"""The real-world cases of ../shared/cases/cases.json (inputs from bug reports against comparable
servers), each against a fresh real server over real sockets; hits are read from its own records."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from .support import ROOT, Proc, check_series, connect, records
from .wire import collect, exchange, matches, parse

# The team's shared/ folder sits beside the checkout (on developers' machines and in CI).
CASES_FILE = Path(os.environ.get("HITCOUNT_CASES", ROOT.parent / "shared" / "cases" / "cases.json"))
CASES: list[dict[str, Any]] = json.loads(CASES_FILE.read_text()) if CASES_FILE.exists() else []
PROBE = b"GET /log HTTP/1.1\r\nHost: a\r\n\r\n"


def _bytes(chunk: str | dict[str, Any]) -> bytes:
    if isinstance(chunk, str):
        return chunk.encode("latin-1")
    return str(chunk["repeat"]).encode("latin-1") * int(chunk["times"])


def _hits(proc: Proc) -> int:
    assert proc.stop() == 0
    recs = records(proc.log)
    check_series(recs)
    return sum(r["count"] for r in recs)


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _check(expect: dict[str, Any], statuses: list[int], closed: bool, hits: int) -> str | None:
    """None if the outcome meets `expect` (one alternative of any_of), else why not."""
    if "statuses" in expect:
        want = expect["statuses"]
        if len(want) != len(statuses) or not all(map(matches, want, statuses)):
            return f"statuses {statuses} != {want}"
    if "n_responses" in expect and len(statuses) != expect["n_responses"]:
        return f"{len(statuses)} responses, want {expect['n_responses']}"
    if "all_status" in expect and not all(matches(expect["all_status"], s) for s in statuses):
        return f"not all {expect['all_status']}: {sorted(set(statuses))}"
    if "hits" in expect:
        want_hits = expect["hits"] if isinstance(expect["hits"], list) else [expect["hits"]]
        if hits not in want_hits:
            return f"hits {hits} not in {want_hits}"
    if "closed" in expect and closed != expect["closed"]:
        return f"closed={closed}, want {expect['closed']}"
    return None


def _judge(expect: dict[str, Any], statuses: list[int], closed: bool, hits: int) -> None:
    base = {k: v for k, v in expect.items() if k != "any_of"}
    problems = [_check(base, statuses, closed, hits)]
    if "any_of" in expect:
        alts = [_check(alt, statuses, closed, hits) for alt in expect["any_of"]]
        problems.append(None if None in alts else "; ".join(a for a in alts if a))
    bad = [p for p in problems if p]
    assert not bad, f"{bad} (statuses={statuses}, closed={closed}, hits={hits})"


def run_wire(case: dict[str, Any], tmp: Path) -> None:
    proc = Proc(tmp).start()
    try:
        chunks = [_bytes(c) for c in case["chunks"]]
        data, closed = exchange(proc.port, chunks, case.get("delays"))
        replies = parse(data, frozenset(case.get("head_responses", [])))
    finally:
        hits = _hits(proc)
    _judge(case["expect"], [r.status for r in replies if r.status >= 200], closed, hits)


def run_noread(case: dict[str, Any], tmp: Path) -> None:
    """Pipeline n requests without reading; meanwhile a probe is served; then read everything."""
    n, expect = int(case["n"]), case["expect"]
    proc = Proc(tmp).start()
    assert proc.popen is not None
    try:
        rss0 = _rss_kib(proc.popen.pid)
        s = connect(proc.port)
        payload = case["request"].encode("latin-1") * n
        sender = threading.Thread(target=_send_quietly, args=(s, payload), daemon=True)
        sender.start()
        time.sleep(float(case["hold"]))
        with connect(proc.port) as p:
            p.sendall(case["probe"].encode("latin-1"))
            probe_data, _ = collect(p, quiet=1.0, limit=10)
        rss_growth_mb = (_rss_kib(proc.popen.pid) - rss0) / 1024
        data, closed = _read_all(s, n)
        sender.join(30)
        s.close()
    finally:
        hits = _hits(proc)
    probe = parse(probe_data)
    assert probe and matches(expect["probe_status"], probe[0].status), probe_data[:200]
    statuses = [r.status for r in parse(data)]
    assert all(matches(expect["all_status"], st) for st in statuses), sorted(set(statuses))
    assert rss_growth_mb <= expect["rss_growth_mb_max"], f"RSS grew {rss_growth_mb:.1f} MB"
    assert hits == len(statuses) + 1, f"hits {hits} != 2xx received {len(statuses)} + probe"
    assert len(statuses) == n or closed, f"{len(statuses)} of {n} answered and still open"


def _send_quietly(s: socket.socket, payload: bytes) -> None:
    # The server may close after answering some; what it answered is what it counted.
    with contextlib.suppress(OSError):
        s.sendall(payload)


def _read_all(s: socket.socket, n: int) -> tuple[bytes, bool]:
    """Read until n bodiless answers arrived (204s: each ends at its blank line), or EOF/reset."""
    buf = bytearray()
    got = 0
    s.settimeout(30)
    while got < n:
        try:
            chunk = s.recv(1 << 20)
        except ConnectionResetError:
            return bytes(buf), True
        if not chunk:
            return bytes(buf), True
        got += (bytes(buf[-3:]) + chunk).count(b"\r\n\r\n")
        buf += chunk
    return bytes(buf), False


def run_slow_many(case: dict[str, Any], tmp: Path) -> None:
    """n connections hold an incomplete head; a fresh client is answered while they are all open."""
    expect = case["expect"]
    proc = Proc(tmp).start()
    slow: list[socket.socket] = []
    try:
        for _ in range(int(case["n"])):
            c = connect(proc.port)
            c.sendall(case["partial"].encode("latin-1"))
            slow.append(c)
        time.sleep(float(case["hold"]))
        t0 = time.monotonic()
        with connect(proc.port) as p:
            p.sendall(case["probe"].encode("latin-1"))
            first = p.recv(65536)
            elapsed = time.monotonic() - t0
            rest, _ = collect(p, quiet=0.3, limit=10)
            data = first + rest
        still_open = sum(_open(c) for c in slow)
    finally:
        for c in slow:
            c.close()
        hits = _hits(proc)
    replies = parse(data)
    assert replies and matches(expect["probe_status"], replies[0].status)
    # The probe did not wait for the slow ones: they were all still open when it was answered.
    assert still_open == len(slow), f"only {still_open} of {len(slow)} slow connections open"
    assert hits == 1
    print(f"probe answered in {elapsed * 1000:.1f} ms (case bound {expect.get('probe_within')} s)")


def _open(c: socket.socket) -> bool:
    c.settimeout(0.01)
    try:
        return c.recv(1) != b""
    except TimeoutError:
        return True
    except OSError:
        return False


def run_stream(case: dict[str, Any], tmp: Path) -> None:
    """Send prefix then filler up to `limit` bytes; the server must answer/close before the end."""
    expect = case["expect"]
    proc = Proc(tmp).start()
    sent = 0
    try:
        with connect(proc.port) as s:
            s.sendall(case["prefix"].encode("latin-1"))
            block = case["filler"].encode("latin-1") * 65536
            stopped = False
            while sent < int(case["limit"]):
                try:
                    s.sendall(block)
                except (BrokenPipeError, ConnectionResetError):
                    stopped = True
                    break
                sent += len(block)
            data, closed = collect(s, quiet=2.0)
    finally:
        hits = _hits(proc)
    replies = parse(data)
    assert stopped == expect["stopped_early"], f"sent all {sent} bytes"
    _judge(expect, [r.status for r in replies], closed, hits)


RUNNERS = {"wire": run_wire, "noread": run_noread, "slow_many": run_slow_many, "stream": run_stream}


@pytest.mark.skipif(not CASES, reason=f"no cases file at {CASES_FILE}")
@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_case(case: dict[str, Any], tmp_path: Path) -> None:
    RUNNERS[case["kind"]](case, tmp_path)
