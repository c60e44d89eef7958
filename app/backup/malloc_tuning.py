"""glibc malloc settings for a process that streams an archive through megabyte buffers.

Backups and restores pass hundreds of megabytes through buffers of one to a few
megabytes each. By default glibc gives such a buffer its own mmap, or trims the
heap once it is freed, so each new buffer's pages are faulted in and zeroed
again: about 200,000 page faults and half a second of system time in a
million-row PostgreSQL restore. With these settings the freed pages stay in the
heap for the next buffer; a process keeps at most ``TRIM_THRESHOLD`` bytes of
freed memory it does not use.

Where the C library is not glibc, nothing changes.
"""
from __future__ import annotations

import ctypes
import sys

MMAP_THRESHOLD = 4 * 1024 * 1024  # buffers up to this size come from the heap
TRIM_THRESHOLD = 32 * 1024 * 1024
TOP_PAD = 8 * 1024 * 1024
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3  # glibc's <malloc.h>

_tuned = False


def _glibc(name: str, *argtypes):
    """The C library's function ``name``, or None where there is none (not Linux, or not glibc's)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None
    function.argtypes = list(argtypes)
    return function


def keep_freed_buffers() -> bool:
    """Apply the settings to this process (once); False where they do not apply."""
    global _tuned
    if _tuned:
        return True
    mallopt = _glibc("mallopt", ctypes.c_int, ctypes.c_int)
    if mallopt is None:
        return False
    # mallopt returns 1 on success; musl's is a stub that returns 0.
    _tuned = all(mallopt(option, value) == 1 for option, value in
                 ((_M_MMAP_THRESHOLD, MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD), (_M_TOP_PAD, TOP_PAD)))
    return _tuned


def environment() -> dict[str, str]:
    """The same settings for a child process's environment (glibc reads them when it starts)."""
    return {"MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD), "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD),
            "MALLOC_TOP_PAD_": str(TOP_PAD)}


def give_back_freed_memory() -> bool:
    """Return the heap's freed pages to the system now (``malloc_trim``); False where it does not apply.

    For when a process is done with its buffers but lives on while another
    process works: a restore that has read its archive, while the database builds
    the indexes.
    """
    malloc_trim = _glibc("malloc_trim", ctypes.c_size_t)
    if malloc_trim is None:
        return False
    malloc_trim(0)
    return True
