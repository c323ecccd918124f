"""Timing helper shared by the benchmarks."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_ms(
    fn: Callable[[], object], runs: int, *, warm: bool = False, min_seconds: float = 0.0, max_runs: int = 5000
) -> float:
    """Median wall time of ``fn`` in ms over ``runs`` calls, or more until ``min_seconds`` of calls
    have run (at most ``max_runs``): sub-millisecond figures need thousands of samples to be
    stable on a shared VM. One untimed call first if ``warm``."""
    if warm:
        fn()
    times = []
    spent = 0.0
    while len(times) < runs or (spent < min_seconds and len(times) < max_runs):
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        times.append(dt)
        spent += dt
    return statistics.median(times) * 1e3


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``, nearest rank; NaN when empty."""
    if not values:
        return float("nan")
    data = sorted(values)
    return data[min(len(data) - 1, round(q / 100 * (len(data) - 1)))]
