"""The state directory: one server at a time (a lock), and the slots file its counters live in.

Owns: `StateDir` (create the directory, take the server lock, wait out workers of a dead run, open the
slots file) and `StateLocked`. Imports `counter`. Only `server`'s callers, `worker` and `supervisor`
use it.
Must not: block for long: a held server lock fails at once; leftover workers get WORKER_WAIT seconds.
"""

from __future__ import annotations

import fcntl
import os
import time

from .counter import Slots

LOCK_NAME = "lock"
SLOTS_NAME = "slots"
# Workers of a run whose supervisor was SIGKILLed notice within one heartbeat (0.1 s) and stop after
# draining; a new server waits this long for them to let go of the slots file.
WORKER_WAIT = 15.0
POLL = 0.05


class StateLocked(Exception):
    """Another server holds the state directory, or workers of a dead run still write to it."""


class StateDir:
    """`path/lock` is held (exclusive flock) by the running server for its whole life; `path/slots`
    is held shared by every worker, so a new server can tell when the last worker of an old run is gone.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.slots_path = os.path.join(path, SLOTS_NAME)
        self._lock_fd = -1

    def acquire(self) -> None:
        """Take the server lock, then wait for workers of a previous run to let go of the slots."""
        os.makedirs(self.path, exist_ok=True)
        fd = os.open(os.path.join(self.path, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            raise StateLocked(
                f"state directory {self.path} is in use by another hitcount server{holder}"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd
        try:
            self._wait_for_old_workers()
        except BaseException:
            self.release()
            raise

    def _wait_for_old_workers(self) -> None:
        fd = os.open(self.slots_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = time.monotonic() + WORKER_WAIT
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise StateLocked(
                            f"workers of a previous run still hold {self.slots_path}; stop them first"
                        ) from None
                    time.sleep(POLL)
        finally:
            os.close(fd)  # closing the descriptor drops the flock

    def open_slots(self, n: int) -> Slots:
        return Slots.open(self.slots_path, n)

    def release(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1


def hold_shared(slots: Slots) -> None:
    """A worker's claim on the slots file (released when the worker exits, however it exits)."""
    fcntl.flock(slots.fd, fcntl.LOCK_SH)


def _read(fd: int) -> str:
    try:
        pid = os.pread(fd, 32, 0).decode().strip()
    except OSError:
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""
