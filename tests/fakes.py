"""The one fake asyncio transport the protocol's unit tests drive HitProtocol with (no sockets)."""

from __future__ import annotations

import re


class Transport:
    """Records what the protocol writes and how it ends the connection (close, FIN, abort)."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.data = bytearray()
        self.closed = False
        self.eof = False
        self.aborted = False
        self.paused = False

    @property
    def done(self) -> bool:
        """The server ended the connection one way or another."""
        return self.closed or self.eof or self.aborted

    def write(self, data: bytes) -> None:
        assert not (self.eof or self.closed), "write after close"
        self.writes.append(data)
        self.data += data

    def write_eof(self) -> None:  # lingering close: our FIN after the answers
        self.eof = True

    def can_write_eof(self) -> bool:
        return True

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str) -> None:
        return None

    def set_write_buffer_limits(self, high: int, low: int) -> None:
        pass

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def statuses(self) -> list[int]:
        return [int(s) for s in re.findall(rb"HTTP/1\.1 (\d{3}) ", bytes(self.data))]
