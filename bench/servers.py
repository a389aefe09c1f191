"""The servers under test and the life of one server process: start pinned, wait until it answers,
read its CPU and memory, stop it by pid.

Owns: the catalogue (`SPECS`: how to start each server, which path to probe, how to install it when
missing) and `Running`. Starts processes only through `taskset`, probes only loopback, and stops
only the processes it started — the server's pid and, by pid, what is left of that pid's group.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench import procstat

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PEERS = HERE / "peers"
BACKLOG = 2048  # every server's listen backlog, uvicorn's and hitcount's default (ECOSYSTEM §1a)
READY_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 15.0  # above hitcount's 10 s graceful shutdown, so its last second gets written


@dataclass(frozen=True)
class Spec:
    """How to run one server. `argv(port, workdir)` builds its command; `missing()` returns an
    install hint when it cannot run here (None when it can)."""

    name: str
    what: str
    argv: Callable[[int, Path], list[str]]
    missing: Callable[[], str | None]
    probe_path: str = "/log"
    all_cpus: bool = False  # pinned to every CPU (hitcount with one worker per core)
    records: bool = False  # writes per-second records to workdir/combined.log (hitcount)
    python: bool = True  # a CPython process, so py-spy can profile it


def _modules(*names: str) -> bool:
    return all(importlib.util.find_spec(n) is not None for n in names)


def _hitcount_argv(workers: int | None) -> Callable[[int, Path], list[str]]:
    def argv(port: int, workdir: Path) -> list[str]:
        cmd = [
            sys.executable,
            "-m",
            "hitcount",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-file",
            str(workdir / "combined.log"),
            "--error-log",
            str(workdir / "error.log"),
            "--server-id",
            f"bench-{port}",
        ]
        return cmd + (["--workers", str(workers)] if workers else [])

    return argv


def hitcount_help() -> str:
    """`python -m hitcount --help`, to learn which flags this checkout accepts ('' if none)."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "hitcount", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout if done.returncode == 0 else ""


def _hitcount_missing() -> str | None:
    if not (ROOT / "hitcount" / "__main__.py").exists() or not _modules("uvloop", "httptools"):
        return "hitcount is not runnable here: pip install -e . (from the repository root)"
    return None


def _hitcount_all_missing() -> str | None:
    if _hitcount_missing():
        return _hitcount_missing()
    if (os.cpu_count() or 1) < 2:
        return "one CPU only: nothing to spread workers over"
    if "--workers" not in hitcount_help():
        return "this hitcount does not accept --workers yet: ran 1 worker only"
    return None


def _nginx_argv(port: int, workdir: Path) -> list[str]:
    conf = (PEERS / "nginx.conf").read_text()
    conf = conf.replace("@PORT@", str(port)).replace("@DIR@", str(workdir))
    (workdir / "nginx.conf").write_text(conf)
    return ["nginx", "-p", str(workdir), "-c", str(workdir / "nginx.conf"), "-e", str(workdir / "error.log")]


def _py_peer(script: str) -> Callable[[int, Path], list[str]]:
    def argv(port: int, workdir: Path) -> list[str]:
        return [sys.executable, str(PEERS / script), "--port", str(port), "--backlog", str(BACKLOG)]

    return argv


def _which(program: str, hint: str) -> Callable[[], str | None]:
    return lambda: None if shutil.which(program) else hint


def _need(hint: str, *modules: str) -> Callable[[], str | None]:
    return lambda: None if _modules(*modules) else hint


SPECS: tuple[Spec, ...] = (
    Spec(
        "hitcount",
        "hitcount, 1 worker",
        _hitcount_argv(None),
        _hitcount_missing,
        probe_path="/livez",
        records=True,
    ),
    Spec(
        "hitcount-all",
        f"hitcount, {os.cpu_count()} workers on all CPUs",
        _hitcount_argv(os.cpu_count()),
        _hitcount_all_missing,
        probe_path="/livez",
        all_cpus=True,
        records=True,
    ),
    Spec(
        "nginx",
        "nginx `return 204` (C reference)",
        _nginx_argv,
        _which("nginx", "apt-get install nginx-light"),
        python=False,
    ),
    Spec(
        "null",
        "null uvloop server, no parsing (Python ceiling)",
        _py_peer("null_uvloop.py"),
        _need("pip install uvloop", "uvloop"),
    ),
    Spec(
        "uvicorn",
        "uvicorn + minimal ASGI (uvloop, httptools)",
        _py_peer("uvicorn_app.py"),
        _need("pip install -e '.[bench]' (uvicorn, uvloop, httptools)", "uvicorn", "uvloop", "httptools"),
    ),
    Spec(
        "node",
        "Node http module (the prototype's runtime)",
        lambda port, _: ["node", str(PEERS / "node_http.js"), str(port), "127.0.0.1", str(BACKLOG)],
        _which("node", "apt-get install nodejs"),
        python=False,
    ),
    Spec(
        "aiohttp",
        "aiohttp web on uvloop",
        _py_peer("aiohttp_app.py"),
        _need("pip install -e '.[bench]' (aiohttp, uvloop)", "aiohttp", "uvloop"),
    ),
)


def free_port() -> int:
    """A port nobody listens on right now (the kernel's pick for port 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def probe(port: int, path: str, timeout_s: float = 1.0) -> bool:
    """True when a request on a fresh connection gets any HTTP answer. hitcount is probed on
    /livez, which it answers without counting a hit (404 is fine), so probes never skew accuracy."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
            return s.recv(16).startswith(b"HTTP/1.")
    except OSError:
        return False


class StartError(RuntimeError):
    """A server that is installed but did not start or answer: the run is broken."""


class Running:
    """One started server. Use as a context manager so it is stopped whatever happens."""

    def __init__(self, spec: Spec, workdir: Path, cpus: str) -> None:
        self.spec = spec
        self.workdir = workdir
        self.cpus = cpus
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.exit_code: int | None = None
        self.died = False  # it had exited by itself before we came to stop it

    def __enter__(self) -> Running:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = ["taskset", "-c", self.cpus, *self.spec.argv(self.port, self.workdir)]
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        env.pop("WEB_CONCURRENCY", None)  # hitcount's worker count comes from our flags alone
        with open(self.workdir / "stdout.txt", "wb") as out, open(self.workdir / "stderr.txt", "wb") as err:
            # A session of its own, so a stray Ctrl-C on the terminal does not reach it mid-run.
            self.proc = subprocess.Popen(
                argv, stdout=out, stderr=err, cwd=ROOT, env=env, start_new_session=True
            )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not probe(self.port, self.spec.probe_path, 0.5):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = (self.workdir / "stderr.txt").read_text(errors="replace")[-600:]
                raise StartError(
                    f"{self.spec.name} did not answer on port {self.port} "
                    f"(exit {self.exit_code}): {tail.strip()}"
                )
            time.sleep(0.05)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu_seconds(self) -> float:
        return procstat.tree_cpu_seconds(self.pid)

    def peak_rss_kib(self) -> int:
        return procstat.peak_rss_kib(self.pid)

    def stop(self) -> int | None:
        """SIGTERM the server's pid and wait; then SIGKILL, by pid, whatever of its process group
        is still there (nginx's worker, hitcount's workers). Returns the server's exit status."""
        if self.proc is None or self.exit_code is not None:
            return self.exit_code
        leader = self.proc.pid
        members = procstat.tree_pids(leader)
        self.died = self.proc.poll() is not None
        if not self.died:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid in members - {leader}:
            try:
                if os.getpgid(pid) == leader:
                    os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.exit_code = self.proc.returncode
        return self.exit_code
