"""The command line: flags, environment defaults, exit codes, one-line errors, signals."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hitcount import __version__
from hitcount.cli import parse

from .support import Proc, child_env, connect, get, read_responses, records


def run(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hitcount", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=child_env(**(env or {})),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize(
    "args",
    [
        ["--port", "http"],
        ["--port", "70000"],
        ["--no-such-flag"],
        ["--methods", "GET,FROB"],
        ["--path", "log"],
        ["--timeout-graceful-shutdown", "-1"],
    ],
)
def test_bad_flag_is_one_line_and_exit_2(args: list[str], tmp_path: Path) -> None:
    r = run(*args, cwd=tmp_path)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hitcount: error:"), r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "combined.log").exists()


def test_bad_environment_value_is_a_usage_error(tmp_path: Path) -> None:
    r = run(env={"HITCOUNT_PORT": "abc"}, cwd=tmp_path)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1


def test_environment_sets_defaults_and_the_flag_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HITCOUNT_PORT", "4321")
    monkeypatch.setenv("HITCOUNT_METHODS", "get,put")
    monkeypatch.setenv("HITCOUNT_SERVER_ID", "env-id")
    c = parse([])
    assert (c.port, c.methods, c.server_id) == (4321, ("GET", "PUT"), "env-id")
    c = parse(["--port", "5555", "--methods", "POST"])
    assert (c.port, c.methods) == (5555, ("POST",))


def test_version_and_help() -> None:
    r = run("--version")
    assert r.returncode == 0 and r.stdout.startswith(f"hitcount {__version__} (")
    r = run("--help")
    assert r.returncode == 0
    for flag in (
        "--host",
        "--port",
        "--path",
        "--methods",
        "--log-file",
        "--error-log",
        "--server-id",
        "--backlog",
        "--version",
    ):
        assert flag in r.stdout


def test_console_script_is_installed_and_same_as_python_m() -> None:
    script = Path(sys.executable).parent / "hitcount"
    assert script.exists(), "pip install . must install the `hitcount` console script"
    r = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout == run("--version").stdout


def test_port_in_use_is_one_line_and_exit_3(tmp_path: Path) -> None:
    first = Proc(tmp_path).start()
    try:
        other = tmp_path / "other"
        other.mkdir()
        r = run("--port", str(first.port), "--log-file", str(other / "x.log"), cwd=other)
    finally:
        first.stop()
    assert r.returncode == 3
    (line,) = r.stderr.strip().splitlines()
    assert "address already in use" in line and "Traceback" not in r.stderr


def test_unwritable_log_is_exit_3(tmp_path: Path) -> None:
    r = run("--port", "0", "--log-file", str(tmp_path / "missing-dir" / "c.log"), cwd=tmp_path)
    assert r.returncode == 3 and "cannot open log file" in r.stderr and "Traceback" not in r.stderr


def test_default_files_in_working_directory_and_server_id(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "hitcount", "--port", "0"],
        cwd=tmp_path,
        env=child_env(),
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    port = int(line.split("listening on http://127.0.0.1:")[1].split("/")[0])
    assert get(port).status == 204
    time.sleep(1.2)
    proc.send_signal(signal.SIGINT)  # Ctrl-C is a graceful stop too
    assert proc.wait(20) == 0
    recs = records(tmp_path / "combined.log")
    assert sum(r["count"] for r in recs) == 1 and recs[0]["server"].endswith(f":{port}")
    assert (tmp_path / "error.log").exists()


def test_records_to_stdout_with_dash(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "hitcount", "--port", "0", "--log-file", "-"],
        cwd=tmp_path,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    port = int(proc.stderr.readline().split("127.0.0.1:")[1].split("/")[0])
    assert get(port).status == 204
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert sum(int(line.split('"count":')[1].split(",")[0]) for line in out.splitlines()) == 1


def test_sighup_reopens_log_files(tmp_path: Path) -> None:
    proc = Proc(tmp_path).start()
    try:
        assert get(proc.port).status == 204
        time.sleep(1.1)
        os.rename(proc.log, tmp_path / "combined.log.1")  # what logrotate does
        proc.send(signal.SIGHUP)
        time.sleep(1.2)
        with connect(proc.port) as s:
            s.sendall(b"GET /log HTTP/1.1\r\nHost: t\r\n\r\n" * 3)
            read_responses(s, 3)
    finally:
        assert proc.stop() == 0
    old, new = records(tmp_path / "combined.log.1"), records(proc.log)
    assert new, "no records in the reopened file"
    assert sum(r["count"] for r in old + new) == 4
    assert [r["ts"] for r in old + new] == sorted({r["ts"] for r in old + new})


def test_bad_value_message_names_the_setting_not_our_function() -> None:
    r = run("--metrics-port", "not_a_port")
    assert r.returncode == 2
    assert "invalid metrics port value: 'not_a_port'" in r.stderr and "_metrics_port" not in r.stderr


def test_busy_metrics_port_names_the_metrics_port(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        r = run("--port", "0", "--metrics-port", str(taken), cwd=tmp_path)
    assert r.returncode == 3
    (line,) = r.stderr.strip().splitlines()
    assert f"127.0.0.1:{taken} for metrics" in line and "address already in use" in line
