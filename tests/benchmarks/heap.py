"""What a process's memory is made of, from glibc's and SQLite's own counters (the kiosk
benchmark's memory figures)."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
from typing import Any


class _MallInfo2(ctypes.Structure):
    """glibc's ``struct mallinfo2`` (glibc 2.33 and later: Bookworm has 2.36)."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


class Heap:
    """What the process's memory is made of: glibc's heap (in use, and free but kept),
    SQLite's own allocations and Python's. On a libc without ``mallinfo2`` (not glibc) the
    allocator's figures are None."""

    def __init__(self) -> None:
        self._libc: Any = None
        with contextlib.suppress(OSError):
            libc = ctypes.CDLL("libc.so.6")
            if hasattr(libc, "mallinfo2") and hasattr(libc, "malloc_trim"):
                libc.mallinfo2.restype = _MallInfo2
                self._libc = libc
        self._sqlite: Any = None
        name = ctypes.util.find_library("sqlite3")
        if name:
            with contextlib.suppress(OSError):
                self._sqlite = ctypes.CDLL(name)
                self._sqlite.sqlite3_memory_used.restype = ctypes.c_int64

    def in_use_mb(self) -> float | None:
        """Bytes the allocator has handed out and not had back (live data), in MB."""
        if self._libc is None:
            return None
        info = self._libc.mallinfo2()
        return float(info.uordblks + info.hblkhd) / 2**20

    def free_kept_mb(self) -> float | None:
        """Freed memory the allocator keeps in its heaps instead of returning it, in MB."""
        return None if self._libc is None else float(self._libc.mallinfo2().fordblks) / 2**20

    def sqlite_mb(self) -> float | None:
        """SQLite's own allocations (page caches, statements), if this is the library the
        sqlite3 module uses (a statically linked one would count nothing here)."""
        if self._sqlite is None:
            return None
        used = int(self._sqlite.sqlite3_memory_used())
        return used / 2**20 if used > 0 else None

    def trim(self) -> bool:
        """Have glibc return its free heap memory to the system (``malloc_trim(0)``)."""
        if self._libc is None:
            return False
        self._libc.malloc_trim(0)
        return True
