"""Hit counters: monotonic 64-bit totals in shared memory, one slot per event loop, one writer per slot.

Owns: `Slots` (a header + slots layout in anonymous or file-backed shared memory: the emitted-state
checkpoints, the server id, and per slot its total, heartbeat, pid, generation and state) and `Counter`
(one loop's handle on its slot). Imports nothing of ours.
Must not: lock, allocate or read a clock per hit. A slot's total only ever grows; readers take differences.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator
from typing import NamedTuple

WORD = 8  # one unsigned 64-bit word: 2**64 hits is 584 years at a billion hits a second
MAGIC = int.from_bytes(b"HITCOUNT", "little")
VERSION = 1
HEADER_WORDS = 256  # 2 KiB of header, then the slots
# One slot per 64-byte cache line, so two workers never write the same line (no false sharing).
SLOT_WORDS = 8
# Checkpoints kept: enough to rebuild this many records lost between the state write and the log write.
RING = 64

# Header words.
H_MAGIC, H_VERSION, H_NSLOTS, H_SEQ, H_BEAT_MS, H_PID = range(6)
H_RING = 8  # RING entries of (ts, total, kind): words 8 .. 8 + 3 * RING
H_ID = H_RING + 3 * RING  # the server id: its length in bytes, then the bytes
ID_BYTES = (HEADER_WORDS - H_ID - 1) * WORD

# Slot words (relative to the slot's first word).
S_TOTAL, S_BEATS, S_BEAT_MS, S_PID, S_GEN, S_STATE, S_MARK_TS, S_MARK_TOTAL = range(8)
# Slot states, written by the worker that owns the slot.
EMPTY, STARTING, READY, STOPPING = range(4)

# Checkpoint kinds: a record was emitted for `ts`, or a run started with seconds <= `ts` closed.
KIND_RECORD = 1
KIND_START = 2


class Checkpoint(NamedTuple):
    """After emitting second `ts` (or starting), the counter total covered so far was `total`."""

    ts: int
    total: int
    kind: int


class StateFileError(Exception):
    """The state file exists but is not one of ours (wrong magic or version)."""


class Slots:
    """`n` monotonic totals plus the emitted state, in shared memory.

    An aligned 8-byte store is a single machine write on the platforms we run on, so a reader in
    another process sees either the old or the new word, never a torn one. With a file behind it, the
    memory outlives every process that wrote it: after a SIGKILL the kernel still holds the pages.
    """

    __slots__ = ("_buf", "view", "fd", "path")

    def __init__(self, buf: mmap.mmap, fd: int = -1, path: str = "") -> None:
        self._buf = buf
        self.view = memoryview(buf).cast("Q")
        self.fd = fd
        self.path = path

    @classmethod
    def anonymous(cls, n: int) -> Slots:
        """Slots in anonymous shared memory (inherited by forked children, gone with the process)."""
        slots = cls(mmap.mmap(-1, _size(max(n, 1))))
        slots._init(max(n, 1))
        return slots

    @classmethod
    def open(cls, path: str, n: int = 0) -> Slots:
        """Map the state file at `path`, creating it, or growing it to at least `n` slots.

        Slots are never removed: a file written by more workers keeps its extra slots (their totals
        still count), so totals stay monotonic across restarts with a different worker count.
        """
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size == 0:
                os.ftruncate(fd, _size(max(n, 1)))
                slots = cls(mmap.mmap(fd, 0), fd, path)
                slots._init(max(n, 1))
                return slots
            if size % WORD or size < _size(1):  # torn or foreign: not even a header and one slot
                raise StateFileError(f"{path} is not a hitcount state file ({size} bytes)")
            slots = cls(mmap.mmap(fd, 0), fd, path)
        except BaseException:
            os.close(fd)
            raise
        slots._check()
        if n > len(slots):
            slots.close()
            fd = os.open(path, os.O_RDWR)
            os.ftruncate(fd, _size(n))
            slots = cls(mmap.mmap(fd, 0), fd, path)
            slots.view[H_NSLOTS] = n
        return slots

    def _init(self, n: int) -> None:
        v = self.view
        v[H_VERSION] = VERSION
        v[H_NSLOTS] = n
        v[H_MAGIC] = MAGIC

    def _check(self) -> None:
        v = self.view
        if len(v) < HEADER_WORDS or v[H_MAGIC] != MAGIC:
            self.close()
            raise StateFileError(f"{self.path} is not a hitcount state file")
        if v[H_VERSION] != VERSION:
            version = v[H_VERSION]
            self.close()
            raise StateFileError(f"{self.path} has state format {version}, this hitcount reads {VERSION}")
        if not 1 <= v[H_NSLOTS] <= (len(v) - HEADER_WORDS) // SLOT_WORDS:
            nslots = v[H_NSLOTS]
            self.close()
            raise StateFileError(f"{self.path} is damaged: {nslots} slots do not fit in its size")

    def __len__(self) -> int:
        return int(self.view[H_NSLOTS])

    def base(self, index: int) -> int:
        """The first word of slot `index`."""
        return HEADER_WORDS + index * SLOT_WORDS

    def total(self) -> int:
        """The sum over all slots: every hit counted so far."""
        return sum(self.view[HEADER_WORDS::SLOT_WORDS])

    def mark(self, index: int, ts: int) -> None:
        """Slot `index`'s total as second `ts` begins, taken by its own loop just after the boundary.
        Written ts=0, total, ts, so a reader that sees the same ts before and after the total has a
        consistent pair."""
        b = self.base(index)
        self.view[b + S_MARK_TS] = 0
        self.view[b + S_MARK_TOTAL] = self.view[b + S_TOTAL]
        self.view[b + S_MARK_TS] = ts

    def total_at(self, ts: int) -> int:
        """Every hit counted before second `ts` began, as far as the slots can tell: each slot's mark
        for `ts` where its loop has written one, else its live total (a slot that never marks, e.g. an
        embedded server's, or a worker that is late or stuck). Lets another process close a second
        by the workers' own clocks, not by when it happened to wake."""
        view = self.view
        total = 0
        for i in range(len(self)):
            b = self.base(i)
            first = view[b + S_MARK_TS]
            value = view[b + S_MARK_TOTAL]
            total += value if first == ts and view[b + S_MARK_TS] == ts else view[b + S_TOTAL]
        return total

    def counter(self, index: int) -> Counter:
        """The writer handle of slot `index`; give it to exactly one event loop at a time."""
        if not 0 <= index < len(self):
            raise IndexError(f"slot {index} of {len(self)}")
        return Counter(self.view, self.base(index) + S_TOTAL)

    # --- per-slot facts, each written only by the slot's worker ------------------------------------

    def claim(self, index: int, pid: int, generation: int) -> None:
        b = self.base(index)
        self.view[b + S_STATE] = STARTING
        self.view[b + S_PID] = pid
        self.view[b + S_GEN] = generation

    def set_state(self, index: int, state: int) -> None:
        self.view[self.base(index) + S_STATE] = state

    def state(self, index: int) -> int:
        return int(self.view[self.base(index) + S_STATE])

    def beat(self, index: int, now: float) -> None:
        """A heartbeat: the wall time (for crash recovery) and a counter (for liveness)."""
        b = self.base(index)
        self.view[b + S_BEAT_MS] = int(now * 1000)
        self.view[b + S_BEATS] += 1

    def beats(self, index: int) -> int:
        return int(self.view[self.base(index) + S_BEATS])

    # --- the emitted state, written only by the ticking process ------------------------------------

    def beat_supervisor(self, now: float) -> None:
        self.view[H_BEAT_MS] = int(now * 1000)

    def last_beat(self) -> float:
        """The latest heartbeat of any process on this file (wall seconds; 0.0 if none)."""
        ms = max([self.view[H_BEAT_MS]] + [self.view[self.base(i) + S_BEAT_MS] for i in range(len(self))])
        return ms / 1000.0

    def checkpoint(self, ts: int, total: int, kind: int) -> None:
        """Persist one checkpoint. The entry is written first and published by one 8-byte store of
        the sequence number, so a crash in between leaves the previous state intact."""
        v = self.view
        seq = v[H_SEQ] + 1
        at = H_RING + 3 * (seq % RING)
        v[at] = ts
        v[at + 1] = total
        v[at + 2] = kind
        v[H_SEQ] = seq

    def checkpoints(self) -> list[Checkpoint]:
        """The retained checkpoints, oldest first (at most RING)."""
        v = self.view
        seq = int(v[H_SEQ])
        return [self._entry(s) for s in range(max(1, seq - RING + 1), seq + 1)]

    def last(self) -> Checkpoint | None:
        seq = int(self.view[H_SEQ])
        return self._entry(seq) if seq else None

    def _entry(self, seq: int) -> Checkpoint:
        at = H_RING + 3 * (seq % RING)
        v = self.view
        return Checkpoint(int(v[at]), int(v[at + 1]), int(v[at + 2]))

    @property
    def server_id(self) -> str:
        n = min(int(self.view[H_ID]), ID_BYTES)
        start = (H_ID + 1) * WORD
        return bytes(self._buf[start : start + n]).decode("utf-8", "replace")

    @server_id.setter
    def server_id(self, value: str) -> None:
        data = value.encode("utf-8")[:ID_BYTES]
        start = (H_ID + 1) * WORD
        self._buf[start : start + len(data)] = data
        self.view[H_ID] = len(data)

    def pids(self) -> Iterator[int]:
        for i in range(len(self)):
            yield int(self.view[self.base(i) + S_PID])

    def flush(self) -> None:
        """Ask the kernel to write the pages to disk (process death needs no flush; power loss does)."""
        if self.fd >= 0:
            self._buf.flush()

    def close(self) -> None:
        self.view.release()
        self._buf.close()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _size(n: int) -> int:
    return (HEADER_WORDS + n * SLOT_WORDS) * WORD


class Counter:
    """One event loop's slot. `add` is the whole write path: one in-place add on shared memory."""

    __slots__ = ("view", "index")

    def __init__(self, view: memoryview, index: int) -> None:
        self.view = view
        self.index = index

    def add(self, n: int) -> None:
        self.view[self.index] += n

    @property
    def value(self) -> int:
        return int(self.view[self.index])
