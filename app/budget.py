"""The server-wide budget of memory and temporary disk, with admission control.

Every cutout request says how much memory and temporary disk making its answer takes at most
(:mod:`app.planning` works it out from the windows before anything is read). :meth:`Budget.admit`
lets it in when that fits beside what is in use; otherwise it waits in a FIFO queue (at most
``queue_size`` waiting, else :class:`~core.errors.UnavailableError`, HTTP 503 with Retry-After), for at
most ``timeout_s`` (then also 503). A request larger than the whole budget can never fit: it is
refused at once with :class:`~core.errors.TooLargeError` (413) naming the limit. A :class:`Ticket`
gives its share back exactly once, from the event loop or any thread (a streamed answer's worker
thread, when it has really stopped), and the budget and its use are shown in /health and /metrics.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from dataclasses import dataclass

from core.errors import TooLargeError, UnavailableError

__all__ = ["Budget", "Ticket"]


@dataclass
class _Waiter:
    memory: int
    disk: int
    future: asyncio.Future


class Ticket:
    """A request's admitted share of the budget; :meth:`release` gives it back (idempotent, any thread)."""

    def __init__(self, budget: Budget, memory: int, disk: int) -> None:
        self.budget, self.memory, self.disk = budget, memory, disk
        self._released = False
        self._lock = threading.Lock()

    def release(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        self.budget._give_back(self.memory, self.disk)

    @property
    def released(self) -> bool:
        return self._released


class Budget:
    """Memory and temporary disk shared by all requests (see the module docstring).

    Parameters
    ----------
    memory_bytes, disk_bytes : the whole budget.
    queue_size : requests that may wait for room; one more is refused (503).
    timeout_s : how long a request may wait (then 503).
    """

    def __init__(self, memory_bytes: int, disk_bytes: int, queue_size: int = 64, timeout_s: float = 60.0) -> None:
        self.memory_bytes, self.disk_bytes = int(memory_bytes), int(disk_bytes)
        self.queue_size, self.timeout_s = int(queue_size), float(timeout_s)
        self.memory_in_use = 0
        self.disk_in_use = 0
        self.admitted = 0
        self.refused = 0
        self.too_large = 0
        self._waiting: deque[_Waiter] = deque()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None

    def _fits(self, memory: int, disk: int) -> bool:
        return self.memory_in_use + memory <= self.memory_bytes and self.disk_in_use + disk <= self.disk_bytes

    async def admit(self, memory: int, disk: int = 0, *, field: str = "x") -> Ticket:
        """Wait for room for ``memory`` and ``disk`` bytes and take it; a :class:`Ticket` to give it back.

        Raises
        ------
        TooLargeError
            The request needs more than the whole budget (``field`` names the size parameter).
        UnavailableError
            The queue is full, or room did not come within ``timeout_s``.
        """
        memory, disk = max(0, int(memory)), max(0, int(disk))
        self._loop = asyncio.get_running_loop()
        if memory > self.memory_bytes or disk > self.disk_bytes:
            self.too_large += 1
            which = (f"{memory / 1e6:.0f} MB of memory, over the server's budget of {self.memory_bytes / 1e6:.0f} MB "
                     "(memory_budget_bytes)") if memory > self.memory_bytes else (
                     f"{disk / 1e6:.0f} MB of temporary disk, over the server's budget of "
                     f"{self.disk_bytes / 1e6:.0f} MB (disk_budget_bytes)")
            raise TooLargeError(f"this request needs {which}; ask for a smaller cutout", field=field)
        with self._lock:
            if not self._waiting and self._fits(memory, disk):
                self._take(memory, disk)
                return Ticket(self, memory, disk)
            if len(self._waiting) >= self.queue_size:
                self.refused += 1
                raise UnavailableError(
                    f"the server's cutout budget is in use ({len(self._waiting)} requests waiting); retry shortly"
                )
            waiter = _Waiter(memory, disk, self._loop.create_future())
            self._waiting.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter.future), self.timeout_s)
        except TimeoutError:
            with self._lock:
                if waiter.future.done() and not waiter.future.cancelled():
                    return Ticket(self, memory, disk)  # admitted just as the wait ended
                self._drop(waiter)
            self.refused += 1
            raise UnavailableError(f"no room in the server's cutout budget within {self.timeout_s:g} s; retry shortly")
        except BaseException:
            with self._lock:
                admitted = waiter.future.done() and not waiter.future.cancelled()
                self._drop(waiter)
            if admitted:
                Ticket(self, memory, disk).release()  # the client left while being admitted
            raise
        return Ticket(self, memory, disk)

    def try_admit(self, memory: int, disk: int = 0) -> Ticket | None:
        """Take room for ``memory`` and ``disk`` bytes now if it is free and nobody is waiting
        (any thread); None otherwise, for the caller to :meth:`admit` (and wait) instead."""
        memory, disk = max(0, int(memory)), max(0, int(disk))
        with self._lock:
            if not self._waiting and self._fits(memory, disk):
                self._take(memory, disk)
                return Ticket(self, memory, disk)
        return None

    def _take(self, memory: int, disk: int) -> None:
        self.memory_in_use += memory
        self.disk_in_use += disk
        self.admitted += 1

    def _drop(self, waiter: _Waiter) -> None:
        try:
            self._waiting.remove(waiter)
        except ValueError:
            pass
        if not waiter.future.done():
            waiter.future.cancel()

    def _give_back(self, memory: int, disk: int) -> None:
        with self._lock:
            self.memory_in_use -= memory
            self.disk_in_use -= disk
            ready = []
            while self._waiting and self._fits(self._waiting[0].memory, self._waiting[0].disk):
                waiter = self._waiting.popleft()
                if waiter.future.cancelled():
                    continue
                self._take(waiter.memory, waiter.disk)
                ready.append(waiter)
        for waiter in ready:
            self._wake(waiter)

    def _wake(self, waiter: _Waiter) -> None:
        """Tell an admitted waiter (on its event loop; this may run on any thread)."""
        future = waiter.future

        def done() -> None:
            if not future.done():
                future.set_result(True)
            else:  # the waiter gave up meanwhile: its share goes back
                self._give_back(waiter.memory, waiter.disk)

        try:
            future.get_loop().call_soon_threadsafe(done)
        except RuntimeError:  # pragma: no cover - the loop has closed (shutdown)
            pass

    def stats(self) -> dict[str, int]:
        """The budget, what is in use and the counters (for /health and metrics)."""
        return {
            "memory_bytes": self.memory_bytes, "memory_in_use": self.memory_in_use,
            "disk_bytes": self.disk_bytes, "disk_in_use": self.disk_in_use,
            "waiting": len(self._waiting), "queue_size": self.queue_size,
            "admitted": self.admitted, "refused": self.refused, "too_large": self.too_large,
        }  # fmt: skip
