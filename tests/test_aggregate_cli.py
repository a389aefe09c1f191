"""The aggregate subcommand and the collector's new flags: one-line errors and the right exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .support import child_env, free_port


def run(args: list[str], cwd: Path) -> tuple[int, str]:
    p = subprocess.run(
        [sys.executable, "-m", "hitcount", *args], cwd=cwd, env=child_env(), capture_output=True, timeout=30
    )
    return p.returncode, p.stderr.decode()


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (["aggregate", "--store", "mysql://x"], 2, "unknown store"),
        (["aggregate", "--retention", "3 weeks"], 2, "--retention"),
        (["aggregate", "--port", "70000"], 2, "--port"),
        (["aggregate", "--store", "redis://127.0.0.1:{free}/0"], 3, "cannot open store"),
        (["aggregate", "--store", "sqlite:/nonexistent/dir/x.db"], 3, "cannot open store"),
        (["--report-to", "ftp://x"], 2, "--report-to must be"),
        (["--report-to", "http://127.0.0.1:1", "--server-id", "my box"], 2, "--server-id must be"),
    ],
)
def test_mistakes_are_one_line_with_exit_code(tmp_path: Path, args: list[str], code: int, text: str) -> None:
    args = [a.replace("{free}", str(free_port())) for a in args]
    rc, err = run(args, tmp_path)
    assert rc == code and text in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_help_of_both_commands(tmp_path: Path) -> None:
    rc, _ = run(["aggregate", "--help"], tmp_path)
    assert rc == 0
    p = subprocess.run([sys.executable, "-m", "hitcount", "--help"], env=child_env(), capture_output=True)
    assert b"--report-to" in p.stdout and b"--state-dir" in p.stdout
