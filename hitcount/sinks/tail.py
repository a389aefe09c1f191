"""Reading the record log back: the last second a given server wrote, for crash recovery.

Owns: `last_logged`. Imports nothing of ours.
Must not: read more than the tail of the file (TAIL_BYTES), or fail: anything unreadable is "unknown".
"""

from __future__ import annotations

import json
import os
import stat

# 256 KiB holds ~3,000 records of ~80 bytes: far more than the ledger's checkpoint ring covers.
TAIL_BYTES = 256 * 1024


def last_logged(path: str, server: str) -> int | None:
    """The largest `ts` of `server` in the last TAIL_BYTES of `path`.

    -1 when the whole file was read and holds no record of `server`; None when it cannot be told
    (stdout, unreadable file, or the tail holds no record of `server` but the file is longer).
    """
    if path == "-":
        return None
    try:
        with open(path, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return None  # a device or pipe (/dev/stdout, /dev/full): no tail to read back
            size = f.seek(0, os.SEEK_END)
            start = max(0, size - TAIL_BYTES)
            f.seek(start)
            data = f.read(TAIL_BYTES)  # the file may grow meanwhile
    except FileNotFoundError:
        return -1
    except OSError:
        return None
    lines = data.split(b"\n")
    if start > 0:
        lines = lines[1:]  # the first line may be cut
    best = -1
    for line in lines:
        ts = _ts_of(line, server)
        if ts is not None and ts > best:
            best = ts
    if best < 0 and start > 0:
        return None
    return best


def _ts_of(line: bytes, server: str) -> int | None:
    if not line.strip():
        return None
    try:
        obj = json.loads(line)
    except ValueError:
        return None  # a torn last line from a crash is not a record
    if isinstance(obj, dict) and obj.get("server") == server and isinstance(obj.get("ts"), int):
        return int(obj["ts"])
    return None
