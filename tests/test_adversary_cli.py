"""Found by the adversarial pass: process-level inputs that gave a traceback, a fork storm or
unbounded memory instead of one clear line. Where the old behaviour was dangerous (a fork per
worker, reading /dev/full to the end) the test checks in-process or under a memory limit."""

from __future__ import annotations

import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hitcount.cli import UsageError, parse
from hitcount.config import Config
from hitcount.counter import Slots, StateFileError
from hitcount.sinks.file import LineWriter

from .support import ROOT, child_env

MEMORY_CAP = 1 << 30  # bytes of address space for a child that used to read a device to its end


def _capped() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


@pytest.mark.parametrize("path", ["/é", "/log?x", "/lo g", "/l\x01g", "/log#a"])
def test_a_path_a_request_cannot_carry_is_a_usage_error(path: str, tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "hitcount", "--port", "0", "--path", path]
    done = subprocess.run(cmd, cwd=tmp_path, env=child_env(), capture_output=True, timeout=30)
    lines = done.stderr.decode().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "path" in lines[0], lines


@pytest.mark.parametrize("value", ["100000", "1025"])
def test_absurd_worker_counts_are_refused_before_any_fork(value: str) -> None:
    with pytest.raises((SystemExit, UsageError)):
        parse(["--workers", value])
    with pytest.raises(ValueError):
        Config(workers=int(value))


def test_the_tail_of_a_device_is_unknown_and_read_boundedly() -> None:
    code = "from hitcount.sinks.tail import last_logged; print(last_logged('/dev/zero', 's'))"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, timeout=60, preexec_fn=_capped
    )
    assert (done.returncode, done.stdout) == (0, b"None\n"), done.stderr[-300:]


def test_log_writer_survives_a_full_disk() -> None:
    writer = LineWriter("/dev/full")
    writer.write("{}\n")
    deadline = time.monotonic() + 10
    while writer.errors < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert writer.errors >= 2  # failed, and retried
    assert writer._thread.is_alive()
    closing = threading.Thread(target=writer.close)  # it used to wait for ever for the disk
    closing.start()
    closing.join(10)
    assert not closing.is_alive()
    assert writer.dropped == 1


def test_the_default_state_dir_is_not_under_dev() -> None:
    assert Config(log_file="/dev/stdout").resolved_state_dir() == "./.hitcount"
    assert Config(log_file="/var/log/h/combined.log").resolved_state_dir() == "/var/log/h/.hitcount"


def test_records_to_dev_full_one_line_no_traceback(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "hitcount", "--port", "0", "--log-file", "/dev/full"]
    cmd += ["--error-log", str(tmp_path / "error.log"), "--state-dir", str(tmp_path / "state")]
    child = subprocess.Popen(cmd, cwd=tmp_path, env=child_env(), stderr=subprocess.PIPE, preexec_fn=_capped)
    try:
        assert child.stderr is not None
        assert b"listening on" in child.stderr.readline()
        time.sleep(2.5)  # at least one record, which cannot be written
        child.send_signal(signal.SIGTERM)
        assert child.wait(30) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    text = child.stderr.read().decode()
    assert "Traceback" not in text and "Exception" not in text, text
    assert "cannot write /dev/full" in text and "not written to /dev/full" in text


@pytest.mark.parametrize("damage", ["5 bytes", "not whole words", "slot count too large"])
def test_a_damaged_state_file_is_one_line_and_exit_3(damage: str, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    slots = Slots.open(str(state / "slots"), 2)
    slots.close()
    path = state / "slots"
    data = path.read_bytes()
    if damage == "5 bytes":
        data = data[:5]
    elif damage == "not whole words":
        data = data + b"\0\0\0"
    else:
        data = data[:16] + (10**9).to_bytes(8, "little") + data[24:]
    path.write_bytes(data)
    with pytest.raises(StateFileError):
        Slots.open(str(path))
    cmd = [sys.executable, "-m", "hitcount", "--port", "0", "--state-dir", str(state)]
    done = subprocess.run(cmd, cwd=tmp_path, env=child_env(), capture_output=True, timeout=30)
    lines = done.stderr.decode().splitlines()
    assert done.returncode == 3 and len(lines) == 1 and "state" in lines[0], lines
