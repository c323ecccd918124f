"""Facts about the machine the engine runs on, for defaults that scale with it."""

from __future__ import annotations

import os

__all__ = ["physical_memory"]

#: what :func:`physical_memory` answers where the system cannot tell (not POSIX)
_UNKNOWN_MEMORY = 8 << 30


def physical_memory() -> int:
    """This machine's physical memory in bytes (8 GiB where the system cannot tell)."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return _UNKNOWN_MEMORY
