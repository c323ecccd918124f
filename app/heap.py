"""Give freed memory back to the system: a fixed ``mmap`` threshold for glibc's allocator.

glibc serves allocations above ``M_MMAP_THRESHOLD`` (128 KiB at first) with their own ``mmap``,
returned to the system on ``free``, but it raises that threshold to the size of every such block
freed (up to 32 MiB). After the first large cutouts, the per-request buffers (row reads, tiles,
stream pieces: 1-32 MiB) therefore come from the heaps of the allocator's arenas, which it rarely
trims, and the server's idle memory climbs with each peak of concurrent work. Setting the
threshold once, as the environment variable ``MALLOC_MMAP_THRESHOLD_`` would, stops the
climbing: blocks at or above it are always mapped on their own and unmapped when freed.

Fixing the threshold also fixes the trim threshold (the free memory at the top of a heap beyond
which glibc gives it back) at its start value, 128 KiB, where glibc's moving rule would have kept
it at twice the mmap threshold. Buffers just below the mmap threshold (a streamed answer's pieces)
would then be given back on every free and faulted in afresh on the next allocation, so the trim
threshold is fixed at twice the mmap threshold too, as glibc pairs them: each heap keeps at most
that much free memory at its top.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

__all__ = ["set_mmap_threshold"]

log = logging.getLogger("app.heap")

#: mallopt's parameter numbers for the trim and mmap thresholds (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def set_mmap_threshold(nbytes: int) -> bool:
    """Fix glibc's mmap threshold at ``nbytes``, and its trim threshold at twice that (0: leave
    the allocator alone).

    Returns whether it was set: False with ``nbytes`` 0, or where the C library is not glibc.
    """
    if nbytes <= 0:
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        log.info("no glibc mallopt here: the allocator's mmap threshold is left as it is")
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    if mallopt(_M_MMAP_THRESHOLD, int(nbytes)) != 1:
        return False
    return mallopt(_M_TRIM_THRESHOLD, 2 * int(nbytes)) == 1
