"""The reporter's on-disk backlog: seconds not yet acknowledged by the aggregator, oldest first.

Owns: `Spool` (an append-only JSON-lines file plus a small file holding how far it has been sent).
Imports nothing of ours. Blocking file I/O: callers on the event loop run it in a thread.
Must not: lose an appended item before it is marked sent. Marking is a separate, later step, so a
crash between a send and its mark re-sends the item next time, which the idempotent writes allow.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

Item = tuple[str, str, int, int]  # server, run, ts, count


class Spool:
    """`<dir>/report-spool.jsonl`, one `[server, run, ts, count]` per line, and `.offset` beside it.

    The offset file holds the byte position up to which lines have been sent; it is replaced
    atomically (write + rename). Once everything is sent both files are removed.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.offset_path = self.path.with_name(self.path.name + ".offset")
        self.skipped = 0  # torn or unreadable lines passed over (a crash mid-append)

    def append(self, items: list[Item]) -> None:
        """Add items at the end and fsync them: after this returns they survive a crash."""
        if not items:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = "".join(json.dumps(list(i), separators=(",", ":")) + "\n" for i in items)
        with open(self.path, "a", encoding="utf-8") as f:
            if f.tell() > 0 and not self._ends_with_newline():
                f.write("\n")  # a torn last line from a crash stays a line of its own
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    def head(self, n: int) -> tuple[list[Item], int]:
        """Up to `n` unsent items from the front, and the offset just after them."""
        start = self._offset()
        items: list[Item] = []
        try:
            f = open(self.path, "rb")  # noqa: SIM115 (closed below)
        except FileNotFoundError:
            return [], start
        with f:
            f.seek(start)
            end = start
            while len(items) < n:
                line = f.readline()
                if not line.endswith(b"\n"):
                    break  # end of file, or a line still being (or never fully) written
                end += len(line)
                item = _parse(line)
                if item is None:
                    self.skipped += 1
                else:
                    items.append(item)
        return items, end

    def mark_sent(self, offset: int) -> None:
        """Everything before `offset` has been acknowledged; forget the files once all has been."""
        if offset >= self._size():
            for p in (self.path, self.offset_path):
                p.unlink(missing_ok=True)
            return
        tmp = self.offset_path.with_name(self.offset_path.name + ".tmp")
        tmp.write_text(str(offset))
        os.replace(tmp, self.offset_path)

    def pending(self) -> bool:
        return self._size() > self._offset()

    def backlog_bytes(self) -> int:
        """Bytes of unsent lines on disk (for the hitcount_report_spool_bytes gauge)."""
        return max(self._size() - self._offset(), 0)

    def _offset(self) -> int:
        try:
            return int(self.offset_path.read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def _size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"


def _parse(line: bytes) -> Item | None:
    try:
        server, run, ts, count = json.loads(line)
    except (ValueError, TypeError):
        return None
    if not (isinstance(server, str) and isinstance(run, str)):
        return None
    if not (isinstance(ts, int) and isinstance(count, int)):
        return None
    return server, run, ts, count
