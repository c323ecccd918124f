"""Waiting for a condition in tests: poll it until it holds, with a generous deadline.

Tests never sleep a fixed time to let something happen (a busy machine makes any fixed time too
short); they poll what they wait for and fail, saying what they waited for, only when the deadline
passes. The deadline is generous because it costs nothing when the condition comes true early.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["async_wait_until", "wait_until"]

T = TypeVar("T")

#: default deadline, seconds: far beyond what any condition here needs on an idle machine
DEFAULT_TIMEOUT_S = 30.0


def wait_until(predicate: Callable[[], T], *, timeout: float = DEFAULT_TIMEOUT_S, interval: float = 0.02,
               message: str | Callable[[], str] = "") -> T:
    """Call ``predicate()`` until it returns something true, and return that.

    Parameters
    ----------
    predicate : called with no arguments; exceptions propagate (catch them inside if expected).
    timeout : seconds before giving up.
    interval : seconds between calls.
    message : what was waited for (or a function making it, called only on failure).

    Raises
    ------
    AssertionError
        ``predicate()`` was still false after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"not true within {timeout:g} s: {text or predicate}")
        time.sleep(interval)


async def async_wait_until(predicate: Callable[[], T | Awaitable[T]], *, timeout: float = DEFAULT_TIMEOUT_S,
                           interval: float = 0.005, message: str = "") -> T:
    """:func:`wait_until` inside an event loop: other tasks run between the calls of ``predicate``
    (which may be a coroutine function)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout:g} s: {message or predicate}")
        await asyncio.sleep(interval)
