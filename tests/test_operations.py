"""Operations, end to end on real processes: /livez, /readyz, /metrics (also summed over workers and on
--metrics-port), --shutdown-delay, --log-level/--log-format, worker events in the error log and SIGHUP."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hitcount.cli import UsageError, parse

from .support import Proc, check_series, child_env, connect, free_port, get, read_responses, records

BODY_ON_GET = b"GET /log HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"
METRICS_RE = re.compile(r"/metrics on http://[^:]+:(\d+)")
WAIT = 20.0  # seconds to wait for something asynchronous to become true (never a pass/fail timing)


def metrics(port: int) -> dict[str, float]:
    r = get(port, "/metrics")
    assert r.status == 200
    assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    out = {}
    for line in r.body.decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def hits(port: int, n: int, conns: int = 1) -> int:
    """`n` hits spread over `conns` fresh connections; returns how many got a 204."""
    acked = 0
    for i in range(conns):
        k = n // conns + (1 if i < n % conns else 0)
        with connect(port) as s:
            s.sendall(b"GET /log HTTP/1.1\r\nHost: t\r\n\r\n" * k)
            answers, _ = read_responses(s, k)
            acked += sum(a.status == 204 for a in answers)
    return acked


def refuse(port: int, n: int) -> None:
    for _ in range(n):
        with connect(port) as s:
            s.sendall(BODY_ON_GET)
            (answer,), _ = read_responses(s, 1)
            assert answer.status == 400


def until(check, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + WAIT
    while not check():
        assert time.monotonic() < deadline, f"not seen within {WAIT} s: {what}"
        time.sleep(0.05)


def events(path: Path, name: str) -> list[dict[str, object]]:
    return [e for e in records(path) if e.get("event") == name]


def test_probes_and_metrics_on_the_hit_port(tmp_path: Path) -> None:
    p = Proc(tmp_path).start()
    try:
        live, ready = get(p.port, "/livez"), get(p.port, "/readyz")
        assert (live.status, live.body, ready.status, ready.body) == (200, b"ok\n", 200, b"ready\n")
        head = get(p.port, "/livez", method="HEAD")
        assert head.status == 200 and head.body == b"" and head.headers["content-length"] == "3"
        with connect(p.port) as s:  # pipelined: probe answers keep their place among hits
            s.sendall(
                b"GET /log HTTP/1.1\r\nHost: t\r\n\r\nGET /livez HTTP/1.1\r\nHost: t\r\n\r\n"
                b"GET /metrics?x HTTP/1.1\r\nHost: t\r\n\r\nGET /log HTTP/1.1\r\nHost: t\r\n\r\n"
            )
            answers, _ = read_responses(s, 4)
            assert [a.status for a in answers] == [204, 200, 404, 204]
        acked = 2 + hits(p.port, 50, 5)
        refuse(p.port, 3)
        idle = [connect(p.port) for _ in range(2)]
        for s in idle:  # answered: so the server has accepted them
            s.sendall(b"GET /log HTTP/1.1\r\nHost: t\r\n\r\n")
            acked += len(read_responses(s, 1)[0])
        m = metrics(p.port)
        for s in idle:
            s.close()
        assert m["hitcount_hits_total"] == acked == 54
        assert m['hitcount_rejected_requests_total{reason="body_on_get"}'] == 3
        assert m["hitcount_connections_active"] >= 3 and m["hitcount_workers"] == 1  # 2 idle + scrape
        assert m["hitcount_missed_ticks_total"] == 0
        assert any(k.startswith("hitcount_build_info{version=") for k in m)
        assert get(p.port, "/metrics", method="POST", extra="Content-Length: 0\r\n").status == 405
    finally:
        assert p.stop() == 0
    assert sum(r["count"] for r in records(p.log)) == acked  # probes are never counted


def test_metrics_are_the_sum_over_workers(tmp_path: Path) -> None:
    p = Proc(tmp_path, ["--workers", "2"]).start()
    try:
        acked = hits(p.port, 400, 40)  # 40 connections: the kernel spreads them over both workers
        refuse(p.port, 6)
        # Each scrape lands on whichever worker accepts it; every one must show the whole server.
        for _ in range(8):
            m = metrics(p.port)
            assert m["hitcount_hits_total"] == acked == 400
            assert m['hitcount_rejected_requests_total{reason="body_on_get"}'] == 6
            assert m["hitcount_workers"] == 2
    finally:
        assert p.stop() == 0
    assert sum(r["count"] for r in records(p.log)) == acked


@pytest.mark.parametrize("workers", ["1", "2"])
def test_metrics_port_of_their_own(tmp_path: Path, workers: str) -> None:
    p = Proc(tmp_path, ["--workers", workers, "--metrics-port", "0"]).start()
    try:
        (mport,) = [int(m.group(1)) for line in p.stderr_lines if (m := METRICS_RE.search(line))]
        assert mport != p.port
        assert get(p.port, "/livez").status == 404  # moved off the hit port
        acked = hits(p.port, 30, 3)
        assert get(mport, "/livez").status == 200 and get(mport, "/readyz").status == 200
        assert get(mport, "/log").status == 404  # nothing is counted on the metrics port
        assert metrics(mport)["hitcount_hits_total"] == acked
    finally:
        assert p.stop() == 0
    assert sum(r["count"] for r in records(p.log)) == acked


def test_metrics_host(tmp_path: Path) -> None:
    # Hits on 127.0.0.1, probes on 127.0.0.2 (as a sidecar: hits on loopback, probes for the kubelet).
    p = Proc(tmp_path, ["--metrics-port", "0", "--metrics-host", "127.0.0.2"]).start()
    try:
        (mport,) = [int(m.group(1)) for line in p.stderr_lines if (m := METRICS_RE.search(line))]
        assert "http://127.0.0.2:" in "".join(p.stderr_lines)
        with socket.create_connection(("127.0.0.2", mport), timeout=10) as s:
            s.sendall(b"GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n")
            (answer,), _ = read_responses(s, 1)
            assert answer.status == 200
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", mport), timeout=10)
    finally:
        assert p.stop() == 0


def test_probes_off(tmp_path: Path) -> None:
    p = Proc(tmp_path, ["--metrics-port", "off", "--path", "/metrics"]).start()
    try:
        assert get(p.port, "/livez").status == 404
        assert get(p.port, "/metrics").status == 204  # the hit path itself
    finally:
        assert p.stop() == 0
    assert sum(r["count"] for r in records(p.log)) == 1


def test_a_path_that_collides_with_a_probe_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="health/metrics route"):
        parse(["--path", "/readyz"])
    assert parse(["--path", "/readyz", "--metrics-port", "9100"]).metrics_port == 9100
    assert not parse(["--metrics-port", "off"]).probes
    with pytest.raises(UsageError):
        parse(["--port", "9000", "--metrics-port", "9000"])
    with pytest.raises(UsageError):
        parse(["--shutdown-delay", "-1"])
    run = subprocess.run(
        [sys.executable, "-m", "hitcount", "--path", "/livez", "--port", "0"],
        cwd=tmp_path,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and "Traceback" not in run.stderr


DELAY_CASES = [["--workers", "1"], ["--workers", "2"], ["--workers", "2", "--metrics-port", "0"]]


@pytest.mark.parametrize("args", DELAY_CASES)
def test_shutdown_delay_keeps_counting_while_not_ready(tmp_path: Path, args: list[str]) -> None:
    # A delay far longer than the test: the second SIGTERM ends it, so nothing depends on timing.
    p = Proc(tmp_path, [*args, "--shutdown-delay", "600"]).start()
    found = [int(m.group(1)) for line in p.stderr_lines if (m := METRICS_RE.search(line))]
    probe = found[0] if found else p.port
    try:
        acked = hits(p.port, 100, 4)
        keep = connect(p.port)  # a keep-alive connection that lives through the delay
        keep.sendall(b"GET /log HTTP/1.1\r\nHost: t\r\n\r\n")
        acked += sum(a.status == 204 for a in read_responses(keep, 1)[0])
        p.send(signal.SIGTERM)
        until(lambda: get(probe, "/readyz").status == 503, "/readyz 503 after SIGTERM")
        assert get(probe, "/livez").status == 200
        during = hits(p.port, 100, 10)
        keep.sendall(b"GET /log HTTP/1.1\r\nHost: t\r\n\r\n")
        (answer,), _ = read_responses(keep, 1)
        during += answer.status == 204
        assert during == 101  # answered 204 during the delay
        assert metrics(probe)["hitcount_hits_total"] == acked + during
        assert p.popen is not None and p.popen.poll() is None  # still serving
        keep.close()
    finally:
        code = p.stop(signal.SIGTERM)  # the second SIGTERM: end the delay, stop gracefully
    assert code == 0
    recs = records(p.log)
    check_series(recs)
    assert sum(r["count"] for r in recs) == acked + during
    assert any("draining" in line for line in p.stderr_lines)


def test_short_shutdown_delay_ends_by_itself(tmp_path: Path) -> None:
    p = Proc(tmp_path, ["--shutdown-delay", "0.5"]).start()
    acked = hits(p.port, 50, 2)
    p.send(signal.SIGTERM)
    assert p.popen is not None and p.popen.wait(WAIT) == 0
    assert sum(r["count"] for r in records(p.log)) == acked


def test_workers_write_their_events_to_the_error_log_and_reopen_on_hup(tmp_path: Path) -> None:
    p = Proc(tmp_path, ["--workers", "2"]).start()
    sup = p.popen
    assert sup is not None
    try:
        refuse(p.port, 10)
        # Each worker logs its refusals at its next sweep (once a second), into the shared error log.
        until(lambda: sum(e["count"] for e in events(p.error_log, "refused")) == 10, "10 refusals logged")
        assert all("worker" in e for e in events(p.error_log, "refused"))
        os.rename(p.error_log, tmp_path / "error.log.1")
        os.rename(p.log, tmp_path / "combined.log.1")
        p.send(signal.SIGHUP)
        until(lambda: len(events(p.error_log, "logs_reopened")) == 3, "supervisor and 2 workers reopened")
        pids = {e["pid"] for e in events(p.error_log, "logs_reopened")}
        assert len(pids) == 3 and sup.pid in pids
        refuse(p.port, 4)
        until(lambda: sum(e["count"] for e in events(p.error_log, "refused")) == 4, "4 refusals logged")
        acked = hits(p.port, 20, 4)
    finally:
        assert p.stop() == 0
    old = sum(e["count"] for e in events(tmp_path / "error.log.1", "refused"))
    assert old == 10
    assert not any('"refused"' in line for line in p.stderr_lines)  # not on stderr any more
    counted = sum(r["count"] for r in records(tmp_path / "combined.log.1") + records(p.log))
    assert counted == acked


def _start_quiet(tmp_path: Path, args: list[str]) -> tuple[subprocess.Popen[str], int]:
    """A server whose startup line may be filtered out: a fixed port, then wait until it answers."""
    port = free_port()
    cmd = [sys.executable, "-m", "hitcount", "--port", str(port), *args]
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=child_env(), stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )

    def up() -> bool:
        assert proc.poll() is None, "hitcount exited"
        try:
            connect(port, 1).close()
            return True
        except OSError:
            return False

    until(up, "the server listens")
    return proc, port


@pytest.mark.parametrize("level", ["info", "error"])
def test_log_level_filters_error_log_and_stderr(tmp_path: Path, level: str) -> None:
    proc, port = _start_quiet(tmp_path, ["--log-level", level])
    refuse(port, 2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(WAIT) == 0
    stderr = proc.stderr.read() if proc.stderr else ""
    refused = events(tmp_path / "error.log", "refused")
    if level == "info":
        assert sum(e["count"] for e in refused) == 2 and "listening on" in stderr
    else:
        assert refused == [] and stderr == ""


def test_log_format_json(tmp_path: Path) -> None:
    p = Proc(tmp_path, ["--log-format", "json"]).start()
    assert p.stop() == 0
    lines = [json.loads(line) for line in p.stderr_lines]
    started = lines[0]
    assert started["event"] == "started" and started["level"] == "info"
    assert started["port"] == p.port and started["workers"] == 1 and started["version"]
    assert any("stopping" in line["message"] for line in lines[1:])
