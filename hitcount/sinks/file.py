"""JSON-lines files written from a background thread, one flushed line per item.

Owns: `LineWriter` (a file or stdout, written off the event loop, reopened on request) and
`JsonLinesSink` (records or events → lines). Imports `records` only.
Must not: block the caller. A slow or full disk delays the file, never request handling.
"""

from __future__ import annotations

import contextlib
import queue
import sys
import threading
import time
from typing import IO

from ..records import LEVELS, Event, Record, to_line

_REOPEN = object()
_STOP = object()
RETRY_PAUSE = 1.0  # seconds between attempts while the disk refuses a write


class LineWriter:
    """Appends lines to `path` (`-`: stdout, or the `dash` stream) from its own thread, each flushed.

    A failed write (disk full, file gone) is retried, in order, until it succeeds or the writer is
    closed; the first failure of a streak is reported on stderr.
    """

    def __init__(self, path: str, dash: IO[str] | None = None) -> None:
        self.path = path
        self._dash = dash or sys.stdout
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._file: IO[str] | None = None
        self._closing = False
        self.errors = 0
        self.dropped = 0  # lines given up at close because the file kept refusing them
        self._open()  # fail now, in the caller, if the path cannot be opened at all
        self._thread = threading.Thread(target=self._run, name=f"writer:{path}", daemon=True)
        self._thread.start()

    def write(self, line: str) -> None:
        self._queue.put(line)

    def reopen(self) -> None:
        """Close and reopen the file at the next write (for logrotate)."""
        self._queue.put(_REOPEN)

    def close(self) -> None:
        """Write everything queued, then close. Safe to call twice. A line the file still refuses
        once closing is given up (after one more attempt each), so a full disk cannot hang shutdown."""
        if self._thread.is_alive():
            self._closing = True  # seen by a retry loop that would otherwise never take _STOP
            self._queue.put(_STOP)
            self._thread.join()

    def _open(self) -> None:
        if self.path == "-":
            self._file = self._dash
        else:
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (kept open)

    def _release(self) -> None:
        if self._file is not None and self._file is not self._dash:
            with contextlib.suppress(OSError):  # close flushes: the disk that refused the write may
                self._file.close()  # refuse that too (the line is written again by the retry)
        self._file = None

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                self._closing = True
                self._drain()
                self._release()
                if self.dropped:
                    print(f"hitcount: {self.dropped} line(s) not written to {self.path}", file=sys.stderr)
                return
            if item is _REOPEN:
                self._release()
                continue
            self._put(str(item))

    def _drain(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, str):
                self._put(item)

    def _put(self, line: str) -> None:
        failing = False
        while True:
            try:
                if self._file is None:
                    self._open()
                assert self._file is not None
                self._file.write(line)
                self._file.flush()
                return
            except OSError as exc:
                self.errors += 1
                self._release()
                if not failing:
                    print(f"hitcount: cannot write {self.path}: {exc}; retrying", file=sys.stderr)
                    failing = True
                if self._closing:
                    self.dropped += 1
                    return
                time.sleep(RETRY_PAUSE)


class JsonLinesSink:
    """Records or events as JSON lines through a `LineWriter` (`-` is stdout, or `dash`).
    Events below `level` (--log-level) are dropped."""

    def __init__(self, path: str, dash: IO[str] | None = None, level: str = "debug") -> None:
        self.writer = LineWriter(path, dash)
        self._least = LEVELS[level]

    def __call__(self, item: Record | Event) -> None:
        if isinstance(item, Event) and LEVELS.get(item.level, 40) < self._least:
            return
        self.writer.write(to_line(item))

    def reopen(self) -> None:
        self.writer.reopen()

    def close(self) -> None:
        self.writer.close()
