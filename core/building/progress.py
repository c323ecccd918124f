"""Progress of a cube build (a tqdm bar, printed lines or a callback) and its closing timings."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from core.building.layout import GB, Layout

__all__ = ["Progress", "print_timings"]


class Progress:
    """tqdm bar when stderr is a terminal, else printed lines; silent when not verbose."""

    def __init__(self, verbose: bool, total: int, callback: Callable[[int, int], Any] | None, label: str):
        self.verbose = verbose
        self.total = total
        self.callback = callback
        self.label = label
        self.t0 = time.monotonic()
        self.bar = None
        self._next_log = 0.0
        if verbose and sys.stderr is not None and sys.stderr.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, unit="block", desc=label, leave=False)
        if callback is not None:
            callback(0, total)

    def update(self, done: int) -> None:
        if self.bar is not None:
            self.bar.update(done - self.bar.n)
        elif self.verbose and (done / self.total >= self._next_log or done == self.total):
            elapsed = time.monotonic() - self.t0
            eta = elapsed / done * (self.total - done) if done else float("nan")
            print(f"{self.label}: block {done}/{self.total}, {elapsed:.1f} s elapsed, ETA {eta:.1f} s", flush=True)
            self._next_log = done / self.total + 0.1
        if self.callback is not None:
            self.callback(done, self.total)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def print_timings(layout: Layout, write_s: float, total_s: float) -> None:
    """The closing lines of a verbose build: where the write time went, and the total."""
    s = layout.stats
    print(f"Write time: {write_s:.2f} sec ({layout.total_bytes / GB:.2f} GB: read "
          f"{s['read']:.2f} s, transpose {s['transpose']:.2f} s, write {s['write']:.2f} s, {s['blocks']} "
          f"blocks of {s['rows']} rows)", flush=True)
    print(f"Total time elapsed: {total_s / 60:.2f} min", flush=True)
