"""Hit counters: an array of monotonic 64-bit totals, one slot per event loop, one writer per slot.

Owns: `Slots` (the array, in anonymous or file-backed shared memory) and `Counter` (one loop's handle
on its slot). Imports nothing of ours.
Must not: lock, allocate or read a clock per hit. A slot only ever grows; readers take differences.
"""

from __future__ import annotations

import mmap

SLOT_BYTES = 8  # one unsigned 64-bit total: 2**64 hits is 584 years at a billion hits a second


class Slots:
    """`n` monotonic totals in shared memory, read by the ticker, each written by one loop only.

    An aligned 8-byte store is a single machine write on the platforms we run on, so a reader in
    another thread or process sees either the old or the new total, never a torn one.
    """

    __slots__ = ("_buf", "view")

    def __init__(self, buf: mmap.mmap) -> None:
        self._buf = buf
        self.view = memoryview(buf).cast("Q")

    @classmethod
    def anonymous(cls, n: int) -> Slots:
        """Slots in anonymous shared memory (inherited by forked children, gone with the process)."""
        return cls(mmap.mmap(-1, max(n, 1) * SLOT_BYTES))

    def __len__(self) -> int:
        return len(self.view)

    def total(self) -> int:
        """The sum over all slots: every hit counted so far."""
        return sum(self.view)

    def counter(self, index: int) -> Counter:
        """The writer handle of slot `index`; give it to exactly one event loop."""
        return Counter(self.view, index)

    def close(self) -> None:
        self.view.release()
        self._buf.close()


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
