"""A background thread that calls a refresh function on a timer and whenever it is woken."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["Refresher"]


class Refresher:
    """Call ``refresh()`` every ``interval_s`` seconds (0: only when woken) in a daemon thread.

    A failing refresh is logged and the thread carries on; :meth:`wake` asks for a refresh now
    (e.g. a cut found an indexed file gone); :meth:`stop` ends the thread within one refresh.
    """

    def __init__(self, refresh: Callable[[], Any], interval_s: float, *, name: str, log: logging.Logger) -> None:
        self._refresh = refresh
        self.interval_s = float(interval_s)
        self.name = name
        self._log = log
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def wake(self) -> None:
        """Refresh as soon as the thread is free."""
        self._wake.set()

    def start(self) -> None:
        """Start the thread (once)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread, waiting at most 10 s for a refresh in progress."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            woken = self._wake.wait(self.interval_s if self.interval_s > 0 else None)
            self._wake.clear()
            if self._stop.is_set():
                return
            if not woken and self.interval_s <= 0:
                continue
            try:
                self._refresh()
            except Exception:  # noqa: BLE001 - the last snapshot stays; the next refresh retries
                self._log.exception("%s failed", self.name)
