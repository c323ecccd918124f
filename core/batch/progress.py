"""The progress display of a batch: a tqdm bar on a terminal, log lines otherwise.

Shared by :mod:`core.batch.cutouts` and :mod:`core.batch.cube_builds` (each passes its own logger).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from core.errors import InvalidInputError

__all__ = ["ProgressDisplay"]

logger = logging.getLogger("core.batch.progress")


class ProgressDisplay:
    """Progress of ``total`` tasks: a tqdm bar when stderr is a terminal, else log lines every
    ``log_every`` tasks and at the end.

    Parameters
    ----------
    total : int
        Number of tasks.
    label : str
        What is counted (bar description, start of each log line).
    progress : bool or callable, optional
        None or True: the bar or the log lines; False: neither; a callable: the bar or the log
        lines, and ``progress(done, total)`` after each task.
    log_every : int
        Tasks between two log lines.

    Raises
    ------
    InvalidInputError
        ``progress`` is none of those.
    """

    def __init__(self, total: int, *, label: str, progress: bool | Callable[[int, int], Any] | None = None,
                 log_every: int = 100, log: logging.Logger = logger) -> None:
        if progress is not None and not isinstance(progress, bool) and not callable(progress):
            raise InvalidInputError("progress must be True, False, None or a callable(done, total)",
                                    field="progress")
        show = progress is not False
        callback = progress if callable(progress) and not isinstance(progress, bool) else None
        self.total, self.label, self.callback, self.log = total, label, callback, log
        self.log_every = max(1, int(log_every))
        self.done = 0
        self.counts: dict[str, int] = {}
        self.started = time.monotonic()
        self.show = show
        self.bar = None
        if show and total and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=label, unit="task", file=sys.stderr, dynamic_ncols=True)

    def _summary(self) -> str:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))
        rate = self.done / max(time.monotonic() - self.started, 1e-9)
        return f"{self.label}: {self.done}/{self.total} done ({counts or 'none yet'}; {rate:.1f}/s)"

    def update(self, status: str) -> None:
        """Count one finished task of ``status``."""
        self.done += 1
        self.counts[status] = self.counts.get(status, 0) + 1
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(self.counts, refresh=False)
        elif self.show and (self.done % self.log_every == 0 and self.done < self.total):
            self.log.info("%s", self._summary())
        if self.callback is not None:
            self.callback(self.done, self.total)

    def close(self) -> None:
        """Close the bar; log the final line."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.show:
            self.log.info("%s", self._summary())
