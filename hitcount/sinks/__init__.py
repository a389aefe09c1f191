"""Where records and events go. Every sink takes items without blocking the event loop.

Owns: the sink implementations (`file` for JSON lines). Imports `records` only.
Must not: block the caller; slow I/O happens on a writer thread or task of the sink's own.
"""

from .file import JsonLinesSink, LineWriter

__all__ = ["JsonLinesSink", "LineWriter"]
