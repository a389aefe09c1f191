"""Workers and crashes, end to end: real supervisor, real worker processes, real sockets, real kills.

Every test counts the hits the client got a 204 for and compares them with the sum of the records.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from .load import Load
from .support import Proc, child_env, records

SERVER_ID = "t1"


def workers_of(pid: int) -> list[int]:
    """The child processes (workers) of the supervisor `pid`, from /proc."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()]


def events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_for(predicate: Any, timeout: float = 30.0, what: str = "") -> None:
    """Wait (bounded) for a condition; the bound is a hang guard, not a timed assertion."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def has_event(proc: Proc, name: str, n: int = 1) -> bool:
    return sum(e.get("event") == name for e in events(proc.error_log)) >= n


def start(tmp: Path, *extra: str, env: dict[str, str] | None = None, workers: int = 2) -> Proc:
    args = ["--workers", str(workers), "--server-id", SERVER_ID, "--state-dir", str(tmp / "state"), *extra]
    return Proc(tmp, args, env=env or {}).start()


def check_once(recs: list[dict[str, Any]]) -> None:
    """No (server, ts) appears twice, and seconds only go forward in the file."""
    keys = Counter((r["server"], r["ts"]) for r in recs)
    dup = [k for k, n in keys.items() if n > 1]
    assert not dup, f"emitted twice: {dup}"
    ts = [r["ts"] for r in recs]
    assert ts == sorted(ts), f"out of order: {ts}"


def emitted(proc: Proc) -> int:
    return sum(r["count"] for r in records(proc.log))


def test_sigkill_one_worker_mid_load(tmp_path: Path) -> None:
    proc = start(tmp_path)
    load = Load(proc.port).start()
    try:
        load.wait_acked(3000)
        load.pause()  # nothing in flight: every hit so far is acknowledged or was never sent
        victim = workers_of(proc.popen.pid)[0]  # type: ignore[union-attr]
        os.kill(victim, signal.SIGKILL)
        load.resume()
        wait_for(lambda: has_event(proc, "worker_restarted"), what="the replacement")
        before = load.acked
        load.wait_acked(before + 3000)  # the server keeps serving after the death
        assert len(workers_of(proc.popen.pid)) == 2  # type: ignore[union-attr]
    finally:
        load.stop()
    assert proc.stop() == 0
    # Requests sent on the dead worker's connections after the kill are in doubt for the client;
    # nobody read them, so none may be counted: equality is exact.
    assert not load.errors
    recs = records(proc.log)
    check_once(recs)
    assert emitted(proc) == load.acked
    died = [e for e in events(proc.error_log) if e["event"] == "worker_died"]
    assert len(died) == 1 and died[0]["pid"] == victim and "SIGKILL" in died[0]["message"]


def test_sigkill_worker_with_requests_in_flight(tmp_path: Path) -> None:
    """No quiet point: a request being handled at the kill may be counted without its answer
    arriving. Such hits are in doubt; never is an acknowledged hit lost or anything counted twice."""
    proc = start(tmp_path)
    load = Load(proc.port).start()
    try:
        load.wait_acked(3000)
        os.kill(workers_of(proc.popen.pid)[1], signal.SIGKILL)  # type: ignore[union-attr]
        wait_for(lambda: has_event(proc, "worker_restarted"), what="the replacement")
        load.wait_acked(load.acked + 2000)
    finally:
        load.stop()
    assert proc.stop() == 0
    assert not load.errors
    check_once(records(proc.log))
    assert load.acked <= emitted(proc) <= load.acked + load.in_doubt


@pytest.mark.parametrize("workers", [2, 1])
def test_sigkill_everything_then_restart_emits_the_rest_once(tmp_path: Path, workers: int) -> None:
    proc = start(tmp_path, workers=workers)
    load = Load(proc.port).start()
    try:
        load.wait_acked(5000)
        load.pause()
        pids = [proc.popen.pid, *workers_of(proc.popen.pid)]  # type: ignore[union-attr]
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
    finally:
        load.stop()
    proc.kill()
    assert load.in_doubt == 0 and not load.errors
    acked_first = load.acked
    wait_for(lambda: not any(Path(f"/proc/{p}").exists() for p in pids), what="the old processes")
    again = start(tmp_path, workers=workers)
    load2 = Load(again.port).start()
    try:
        load2.wait_acked(2000)
    finally:
        load2.stop()
    assert again.stop() == 0
    recs = records(again.log)
    check_once(recs)
    assert sum(r["count"] for r in recs) == acked_first + load2.acked
    assert any(r.get("recovered") for r in recs)
    assert has_event(again, "recovered")


def test_sigterm_mid_load_counts_every_acknowledged_hit(tmp_path: Path) -> None:
    proc = start(tmp_path)
    load = Load(proc.port).start()
    try:
        load.wait_acked(5000)
        assert proc.stop() == 0  # while the load is still running
    finally:
        load.stop()
    assert not load.errors
    recs = records(proc.log)
    check_once(recs)
    assert recs[-1].get("partial") is True
    assert emitted(proc) == load.acked


def test_stuck_worker_is_detected_killed_and_replaced(tmp_path: Path) -> None:
    proc = start(tmp_path, "--timeout-worker-healthcheck", "1", env={"HITCOUNT_TEST_STUCK": "0:1.0"})
    load = Load(proc.port, connections=8, depth=1).start()
    try:
        wait_for(lambda: has_event(proc, "worker_stuck"), what="stuck detection")
        wait_for(lambda: has_event(proc, "worker_restarted"), what="the replacement")
        load.wait_acked(load.acked + 500)
    finally:
        load.stop()
    assert proc.stop() == 0
    check_once(records(proc.log))
    # The stuck loop read nothing while blocked, so nothing it holds is counted-but-unanswered.
    assert emitted(proc) == load.acked
    died = [e for e in events(proc.error_log) if e["event"] == "worker_died"]
    assert died and died[0]["worker"] == 0 and "SIGKILL" in died[0]["message"]


@pytest.mark.parametrize("workers", [2, 1])
def test_crash_between_state_write_and_log_line_is_repaired_once(tmp_path: Path, workers: int) -> None:
    """The ledger's window: the record is checkpointed, then the process dies before the line is
    written. The restart writes that record once (rebuilt), and nothing twice."""
    proc = start(tmp_path, env={"HITCOUNT_TEST_CRASH_AT_RECORD": "3"}, workers=workers)
    load = Load(proc.port, connections=4, depth=1).start()
    try:
        wait_for(lambda: proc.popen.poll() is not None, what="the self-inflicted crash")  # type: ignore[union-attr]
        load.pause()
    finally:
        load.stop()
    assert proc.popen.returncode == -signal.SIGKILL  # type: ignore[union-attr]
    assert len(records(proc.log)) == 2  # the third was checkpointed but never written
    wait_for(lambda: _unlocked(tmp_path), what="orphaned workers to leave")
    again = start(tmp_path, workers=workers)
    assert again.stop() == 0
    recs = records(again.log)
    check_once(recs)
    assert sum(r["count"] for r in recs) == load.acked
    assert has_event(again, "records_rebuilt")


def _unlocked(tmp: Path) -> bool:
    import fcntl

    fd = os.open(tmp / "state" / "slots", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def test_second_server_on_same_state_dir_is_refused(tmp_path: Path) -> None:
    proc = start(tmp_path)
    try:
        other = Proc(tmp_path / "x", ["--state-dir", str(tmp_path / "state")])
        other.tmp.mkdir()
        try:
            other.start()
            raise AssertionError("second server started")
        except RuntimeError:
            pass
        assert other.popen is not None and other.popen.wait(10) == 3
        assert any("in use by another hitcount server" in line for line in other.stderr_lines)
    finally:
        assert proc.stop() == 0


def test_worker_that_keeps_dying_stops_the_server(tmp_path: Path) -> None:
    proc = start(tmp_path)
    sup = proc.popen.pid  # type: ignore[union-attr]
    for n in range(1, 6):
        wait_for(
            lambda n=n: len(workers_of(sup)) == 2 and has_event(proc, "worker_restarted", n - 1),
            what="two live workers",
        )
        os.kill(workers_of(sup)[0], signal.SIGKILL)
        if n == 5:
            break
        wait_for(lambda n=n: has_event(proc, "worker_died", n), what="the death to be seen")
    assert proc.stop(signal.SIGCONT) == 1
    assert any("died 5 times" in line for line in proc.stderr_lines)


def test_worker_never_ready_is_a_startup_failure(tmp_path: Path) -> None:
    proc = Proc(
        tmp_path,
        ["--workers", "2", "--state-dir", str(tmp_path / "state")],
        env={"HITCOUNT_TEST_WORKER_EXIT": "7"},
    )
    try:
        proc.start()
        raise AssertionError("started")
    except RuntimeError:
        pass
    assert proc.popen is not None and proc.popen.wait(10) == 4
    assert any("never" in line or "before it was ready" in line for line in proc.stderr_lines)


def test_sighup_reopens_the_log(tmp_path: Path) -> None:
    proc = start(tmp_path)
    wait_for(lambda: len(records(proc.log)) >= 1, what="a first record")
    proc.log.rename(tmp_path / "rotated.log")
    proc.send(signal.SIGHUP)
    wait_for(lambda: len(records(proc.log)) >= 1, what="a record in the new file")
    assert proc.stop() == 0
    check_once(records(tmp_path / "rotated.log") + records(proc.log))


def test_fallback_shared_socket_counts_exactly(tmp_path: Path) -> None:
    proc = start(tmp_path, env={"HITCOUNT_TEST_NO_REUSEPORT": "1"})
    load = Load(proc.port, connections=8).start()
    try:
        load.wait_acked(2000)
    finally:
        load.stop()
    assert proc.stop() == 0
    assert emitted(proc) == load.acked
    assert has_event(proc, "reuseport_unavailable")


def test_second_sigint_kills_workers_that_do_not_stop(tmp_path: Path) -> None:
    """A stuck worker ignores the graceful stop; a second SIGINT kills it, and what was counted is
    still written in the final record."""
    proc = start(tmp_path, "--timeout-worker-healthcheck", "60", env={"HITCOUNT_TEST_STUCK": "0:2.0"})
    load = Load(proc.port, connections=8, depth=1).start()
    try:
        load.wait_acked(2000)
    finally:
        load.stop()
    time.sleep(2.2)  # let worker 0 block its loop (it was told to 2 s after it became ready)
    proc.send(signal.SIGINT)
    wait_for(lambda: any("stopping" in line for line in _stderr_so_far(proc)), what="the stop")
    proc.send(signal.SIGINT)
    assert proc.stop(signal.SIGCONT) == 1
    recs = records(proc.log)
    check_once(recs)
    assert recs[-1].get("partial") is True
    assert emitted(proc) == load.acked


def _stderr_so_far(proc: Proc) -> list[str]:
    assert proc.popen is not None and proc.popen.stderr is not None
    os.set_blocking(proc.popen.stderr.fileno(), False)
    chunk = proc.popen.stderr.read()
    if chunk:
        proc.stderr_lines += chunk.decode().splitlines(keepends=True)
    return proc.stderr_lines


def test_second_multi_worker_server_on_the_same_port_is_refused(tmp_path: Path) -> None:
    """SO_REUSEPORT would let a second server's workers join the first's and split its traffic."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = Proc(tmp_path / "a", ["--workers", "2"]).start()
    try:
        r = subprocess.run(
            [sys.executable, "-m", "hitcount", "--workers", "2", "--port", str(first.port)],
            cwd=tmp_path / "b",
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 3, r.stderr
        (line,) = r.stderr.strip().splitlines()
        assert "address already in use" in line.lower()
    finally:
        assert first.stop() == 0
