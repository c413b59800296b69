"""The C allocator under the gateway (glibc malloc): pin its mmap threshold, and report heap in use vs free.

glibc starts with a 128 KiB mmap threshold and raises it each time a large mmapped block is freed, so later
blocks of that size come from the heap instead, and the freed ones stay there: under steady churn the
gateway's RSS then creeps up while the memory in use stays flat. Pinning the threshold (``mallopt``, as
``MALLOC_MMAP_THRESHOLD_`` does) turns that off, so large blocks go back to the OS when freed. Elsewhere than
glibc both functions report that they cannot help (``False`` / ``None``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import platform

DEFAULT_MMAP_THRESHOLD = 128 * 1024
"""glibc's own starting value; pinned, it no longer moves."""

MAX_MMAP_THRESHOLD = 32 * 1024 * 1024
"""glibc's upper bound for the threshold on 64-bit systems."""

_M_MMAP_THRESHOLD = -3


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    if hasattr(libc, "mallinfo2"):
        libc.mallinfo2.restype = _MallInfo2
    return libc


def validate_mmap_threshold(value: int) -> None:
    """Raise ``ValueError`` unless ``value`` is 0 (glibc's moving threshold) or 1 .. 32 MiB."""
    if not 0 <= value <= MAX_MMAP_THRESHOLD:
        raise ValueError(f"malloc_mmap_threshold must be 0 (leave glibc's moving threshold) or 1..{MAX_MMAP_THRESHOLD}"
                         f" bytes, got {value}")


def pin_mmap_threshold(value: int) -> bool:
    """Fix glibc's mmap threshold at ``value`` bytes (0: leave it moving). True when it was pinned."""
    validate_mmap_threshold(value)
    libc = _glibc()
    if value == 0 or libc is None:
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, value))


def heap_stats() -> dict[str, int] | None:
    """glibc's ``mallinfo2``: bytes handed out (heap and mmapped blocks) and bytes kept free inside the heaps,
    which count in RSS though nothing uses them (None elsewhere than glibc 2.33+)."""
    libc = _glibc()
    if libc is None or not hasattr(libc, "mallinfo2"):
        return None
    info = libc.mallinfo2()
    return {"malloc_in_use_bytes": int(info.uordblks + info.hblkhd), "malloc_free_bytes": int(info.fordblks)}
