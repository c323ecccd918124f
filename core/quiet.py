"""Silencing expected warnings without racing other threads.

``warnings.catch_warnings()`` saves the process-wide filter list on entry and puts it back on
exit. Before Python 3.14 (context-local filters) two threads inside such blocks at once can
restore each other's lists: one thread's "ignore" filter is then left installed for good, and the
service silently loses its warnings. Every block of ours goes through :func:`quiet`, which holds
one process-wide re-entrant lock for the block, so no two of them overlap.

Keep the blocks short (header parsing, a WCS, a coordinate transform, formatting headers) and
never wait inside one for another thread that may itself enter :func:`quiet`.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

_LOCK = threading.RLock()


@contextmanager
def quiet(*categories: type[Warning]) -> Iterator[None]:
    """Ignore warnings of ``categories`` (all warnings when none is given) inside the block.

    Thread-safe where ``warnings.catch_warnings`` alone is not (see the module docstring).
    """
    with _LOCK, warnings.catch_warnings():
        for category in categories or (Warning,):
            warnings.simplefilter("ignore", category)
        yield
