"""The ONE bounded pool that runs every blocking engine call of the service.

``workers`` calls run at once on threads (``anyio.to_thread.run_sync`` under a
:class:`anyio.CapacityLimiter`); at most ``queue_size`` more may wait for a slot, beyond which the
pool refuses at once with :class:`~core.errors.UnavailableError` (HTTP 503 + ``Retry-After``).
Each call has a deadline (``request_timeout_s``): past it the caller gets
:class:`~core.errors.CutoutTimeoutError` (HTTP 504). A thread cannot be killed, so a timed-out call
keeps its slot until its thread really ends: the number of busy threads never exceeds ``workers``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import anyio.to_thread

from core.errors import CutoutTimeoutError, UnavailableError

__all__ = ["WorkerPool"]

T = TypeVar("T")


class WorkerPool:
    """A bounded thread pool with a bounded queue and a per-call deadline.

    Parameters
    ----------
    workers : int
        Calls that may run at once.
    queue_size : int
        Calls that may wait for a free worker; one more is refused with ``UnavailableError``.
    timeout_s : float
        Default deadline of a call (waiting included).
    """

    def __init__(self, workers: int, queue_size: int, timeout_s: float) -> None:
        self.workers = workers
        self.queue_size = queue_size
        self.timeout_s = timeout_s
        self._slots = anyio.CapacityLimiter(workers)
        self._threads = anyio.CapacityLimiter(workers)
        self.running = 0
        self.timeouts = 0
        self.refused = 0

    def stats(self) -> dict[str, int]:
        """Counters for /health and metrics."""
        return {
            "workers": self.workers,
            "queue_size": self.queue_size,
            "running": self.running,
            "waiting": self._slots.statistics().tasks_waiting,
            "timeouts": self.timeouts,
            "refused": self.refused,
        }

    def _refuse_when_full(self) -> None:
        """A new call is refused at once when every worker is busy and ``queue_size`` calls wait."""
        slots = self._slots
        if slots.available_tokens == 0 and slots.statistics().tasks_waiting >= self.queue_size:
            self.refused += 1
            raise UnavailableError(
                f"the server is busy ({self.workers} running, {self.queue_size} waiting); retry shortly"
            )

    async def run(
        self,
        fn: Callable[..., T],
        *args: Any,
        timeout_s: float | None = None,
        admitted: bool = False,
        **kwargs: Any,
    ) -> T:
        """Run ``fn(*args, **kwargs)`` on a worker thread and return its result.

        Parameters
        ----------
        admitted : bool
            True for the continuation of a request already let in (the next member of a zip
            being streamed): it waits for a slot without counting against ``queue_size``.

        Raises
        ------
        UnavailableError
            When ``queue_size`` calls are already waiting.
        CutoutTimeoutError
            When the call has not finished within ``timeout_s`` (default the pool's).
        """
        timeout = self.timeout_s if timeout_s is None else timeout_s
        deadline = anyio.current_time() + timeout
        slots = self._slots
        if not admitted:
            self._refuse_when_full()
        token = object()
        try:
            with anyio.fail_after(max(deadline - anyio.current_time(), 0)):
                await slots.acquire_on_behalf_of(token)
        except TimeoutError:
            self.timeouts += 1
            raise CutoutTimeoutError(f"no worker became free within {timeout:g} s") from None

        loop = asyncio.get_running_loop()
        state = {"started": False, "skipped": False, "released": False}
        lock = threading.Lock()

        def release() -> None:  # on the event loop
            if not state["released"]:
                state["released"] = True
                self.running -= 1
                slots.release_on_behalf_of(token)

        def job() -> T:
            with lock:
                if state["skipped"]:
                    raise CutoutTimeoutError("cancelled before it started")
                state["started"] = True
            try:
                return fn(*args, **kwargs)
            finally:
                try:
                    loop.call_soon_threadsafe(release)
                except RuntimeError:  # pragma: no cover - loop closed at shutdown
                    pass

        self.running += 1
        try:
            remaining = max(deadline - anyio.current_time(), 0)
            with anyio.fail_after(remaining):
                return await anyio.to_thread.run_sync(job, abandon_on_cancel=True, limiter=self._threads)
        except TimeoutError:
            self.timeouts += 1
            raise CutoutTimeoutError(f"the operation did not finish within {timeout:g} s") from None
        finally:
            # A thread abandoned (timeout, client gone) keeps its slot until it ends; a job that
            # never started gives its slot back now.
            with lock:
                if not state["started"]:
                    state["skipped"] = True
            if state["skipped"]:
                release()
