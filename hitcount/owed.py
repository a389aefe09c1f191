"""How many bytes a connection still owes its peer: the transport's buffer plus what the kernel holds
that the peer has not acknowledged. A close with unread input (or an abort) makes the kernel send RST
and drop its send queue, so answers to hits already counted would be lost: closing is harmless only
once this is 0. (Data the peer's kernel has acknowledged stays readable there after an RST.)

Owns: `unsent`, `MIN_PROGRESS`. Imports nothing of ours. Must not: run per request (an ioctl): it
is asked only when a connection is about to be closed or aborted.
"""

from __future__ import annotations

import fcntl
import struct
import termios
from typing import Any

# A closing connection still owed answers is waited for, one sweep period at a time, only while its
# client reads at least this much per period (or the rest): a slow-read attacker cannot hold it for ever.
MIN_PROGRESS = 16 * 1024

_OUTQ = getattr(termios, "TIOCOUTQ", None)  # Linux: SIOCOUTQ, unsent + unacknowledged bytes


def unsent(transport: Any) -> int:
    """Bytes written to `transport` that the peer has not acknowledged yet (0 if unknown/closed)."""
    owed = int(transport.get_write_buffer_size())
    sock = transport.get_extra_info("socket")
    if _OUTQ is None or sock is None:
        return owed
    try:
        got = fcntl.ioctl(sock.fileno(), _OUTQ, b"\0\0\0\0")
    except (OSError, ValueError):  # closed meanwhile: nothing more will be sent
        return owed
    return owed + int(struct.unpack("i", got)[0])
