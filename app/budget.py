"""The server-wide budget of memory and temporary disk, with admission control.

Every cutout request says how much memory and temporary disk making its answer takes at most
(:mod:`app.planning` works it out from the typed parameters before anything is read).
:meth:`Budget.admit` lets it in when that fits beside what is in use; otherwise it waits (at most
``queue_size`` waiting, else :class:`~core.errors.UnavailableError`, HTTP 503 with Retry-After),
for at most ``timeout_s`` (then also 503). A request larger than the whole budget can never fit:
it is refused at once with :class:`~core.errors.TooLargeError` (413) naming the limit.

Fairness. Admission is first-fit: a request that fits now is admitted now, whoever waits (a 5x5
cutout never queues behind a 200x200 one waiting for room), and whenever room comes back the
waiters are admitted in arrival order, each that fits. A waiter that leaves (its wait timed out,
its task was cancelled, its client disconnected: :meth:`admit` watches ``gone``) is removed at
once and the others are looked at again. The price is that a large request can wait for its
whole ``timeout_s`` while small ones keep coming; it then gets a 503 with Retry-After.

One budget per host. With several server processes (``cutout serve --workers N``) the processes
share one budget through a :class:`SharedLedger`: a small file mapped into every process, one
slot per process, changed under a file lock. The supervisor clears a dead process's slot before
starting its successor, so a crash cannot leak budget; a process waiting for room looks at the
ledger again every ``poll_s`` (another process's release does not wake it).

A :class:`Ticket` gives its share back exactly once, from the event loop or any thread (a streamed
answer's worker thread, when it has really stopped), and the budget and its use are shown in
/health and /metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import mmap
import os
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.errors import TooLargeError, UnavailableError

__all__ = ["Budget", "ClientGoneError", "RequestBudget", "SharedLedger", "Ticket"]


def _discard(gone: Awaitable[Any] | None) -> None:
    """Close a watcher coroutine that will not be awaited (no warning that it never ran)."""
    if asyncio.iscoroutine(gone):
        gone.close()


class ClientGoneError(UnavailableError):
    """The client disconnected while its request waited for room (nobody reads the answer)."""


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


class SharedLedger:
    """Memory and disk in use by every process of one server, in a file all of them map.

    The file holds one ``(memory, disk)`` pair of int64 per process slot. A process changes only
    its own slot and reads all of them, under an exclusive ``fcntl`` lock on the file (the kernel
    releases it if the holder dies) and this process's own lock (``fcntl`` locks are per process,
    not per thread). :meth:`create` makes the file (the supervisor); :meth:`attach` maps it in a
    server process; :meth:`clear` empties a slot whose process has died.
    """

    def __init__(self, path: str | os.PathLike, slot: int) -> None:
        self.path = os.fspath(path)
        self._fd = os.open(self.path, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
        size = os.fstat(self._fd).st_size
        if size < 16 or size % 16:
            os.close(self._fd)
            raise ValueError(f"{self.path} is not a budget ledger ({size} bytes)")
        self._map = mmap.mmap(self._fd, size)
        self._slots = np.ndarray((size // 16, 2), np.int64, self._map)
        if not 0 <= slot < len(self._slots):
            raise ValueError(f"slot {slot} is not in a ledger of {len(self._slots)} slots")
        self.slot = slot
        self._lock = threading.Lock()

    @classmethod
    def create(cls, path: str | os.PathLike, slots: int) -> str:
        """Write an empty ledger of ``slots`` process slots at ``path`` (replacing any); its path."""
        path = os.fspath(path)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.part"
        with open(tmp, "wb") as fh:
            fh.write(bytes(16 * max(1, int(slots))))
        os.replace(tmp, path)
        return path

    @classmethod
    def attach(cls, path: str | os.PathLike, slot: int) -> SharedLedger:
        """This process's view of the ledger at ``path``, owning ``slot`` (emptied now: a new
        process holds nothing)."""
        ledger = cls(path, slot)
        ledger.clear(slot)
        return ledger

    @contextlib.contextmanager
    def _locked(self) -> Any:
        with self._lock:
            fcntl.lockf(self._fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.lockf(self._fd, fcntl.LOCK_UN)

    def try_take(self, memory: int, disk: int, memory_total: int, disk_total: int) -> bool:
        """Add ``memory`` and ``disk`` to this process's slot if every process's use plus them fits
        the totals; whether it did."""
        with self._locked():
            used = self._slots.sum(axis=0)
            if int(used[0]) + memory > memory_total or int(used[1]) + disk > disk_total:
                return False
            self._slots[self.slot, 0] += memory
            self._slots[self.slot, 1] += disk
            return True

    def give(self, memory: int, disk: int) -> None:
        """Take ``memory`` and ``disk`` off this process's slot."""
        with self._locked():
            self._slots[self.slot, 0] -= memory
            self._slots[self.slot, 1] -= disk

    def clear(self, slot: int) -> None:
        """Empty ``slot`` (its process has died, or is starting)."""
        with self._locked():
            self._slots[slot] = 0

    def in_use(self) -> tuple[int, int]:
        """(memory, disk) in use by all processes."""
        with self._locked():
            used = self._slots.sum(axis=0)
            return int(used[0]), int(used[1])

    def close(self) -> None:
        del self._slots
        self._map.close()
        os.close(self._fd)


class Budget:
    """Memory and temporary disk shared by all requests (see the module docstring).

    Parameters
    ----------
    memory_bytes, disk_bytes : the whole budget (of the host, with a ``ledger``).
    queue_size : requests that may wait for room; one more is refused (503).
    timeout_s : how long a request may wait (then 503).
    ledger : the :class:`SharedLedger` of a server of several processes (None: this process only).
    poll_s : with a ledger, how often a waiter looks at it again.
    """

    def __init__(self, memory_bytes: int, disk_bytes: int, queue_size: int = 64, timeout_s: float = 60.0, *,
                 ledger: SharedLedger | None = None, poll_s: float = 0.05) -> None:
        self.memory_bytes, self.disk_bytes = int(memory_bytes), int(disk_bytes)
        self.queue_size, self.timeout_s = int(queue_size), float(timeout_s)
        self.ledger, self.poll_s = ledger, float(poll_s)
        self.memory_in_use = 0
        self.disk_in_use = 0
        self.admitted = 0
        self.refused = 0
        self.too_large = 0
        self.gone = 0
        self._waiting: list[_Waiter] = []
        self._lock = threading.Lock()

    # -- room ------------------------------------------------------------------------------------
    def _try_take(self, memory: int, disk: int) -> bool:
        """Take room if it is free (under ``self._lock``)."""
        if self.ledger is not None:
            if not self.ledger.try_take(memory, disk, self.memory_bytes, self.disk_bytes):
                return False
        elif self.memory_in_use + memory > self.memory_bytes or self.disk_in_use + disk > self.disk_bytes:
            return False
        self.memory_in_use += memory
        self.disk_in_use += disk
        self.admitted += 1
        return True

    def _pump(self) -> list[_Waiter]:
        """Admit, in arrival order, every waiter that fits now (under ``self._lock``); the ones to wake."""
        ready = []
        for waiter in list(self._waiting):
            if waiter.future.done():  # gave up meanwhile
                self._waiting.remove(waiter)
            elif self._try_take(waiter.memory, waiter.disk):
                self._waiting.remove(waiter)
                ready.append(waiter)
        return ready

    def _too_large(self, memory: int, disk: int, field: str) -> TooLargeError:
        self.too_large += 1
        which = (f"{memory / 1e6:.0f} MB of memory, over the server's budget of {self.memory_bytes / 1e6:.0f} MB "
                 "(memory_budget_bytes)") if memory > self.memory_bytes else (
                 f"{disk / 1e6:.0f} MB of temporary disk, over the server's budget of "
                 f"{self.disk_bytes / 1e6:.0f} MB (disk_budget_bytes)")
        return TooLargeError(f"this request needs {which}; ask for a smaller cutout", field=field)

    # -- admission -------------------------------------------------------------------------------
    async def admit(self, memory: int, disk: int = 0, *, field: str = "x",
                    gone: Awaitable[Any] | None = None) -> Ticket:
        """Wait for room for ``memory`` and ``disk`` bytes and take it; a :class:`Ticket` to give it back.

        ``gone``, when given, is awaited beside the wait: when it completes first (the client
        disconnected), the request leaves the queue at once.

        Raises
        ------
        TooLargeError
            The request needs more than the whole budget (``field`` names the size parameter).
        UnavailableError
            The queue is full, or room did not come within ``timeout_s``
            (:class:`ClientGoneError`: the client left).
        """
        memory, disk = max(0, int(memory)), max(0, int(disk))
        loop = asyncio.get_running_loop()
        try:
            with self._lock:
                waiter = self._enter(memory, disk, field, loop)
        except BaseException:
            _discard(gone)
            raise
        if waiter is None:  # admitted at once: nothing to watch
            _discard(gone)
            return Ticket(self, memory, disk)
        watcher = asyncio.ensure_future(gone) if gone is not None else None
        try:
            await self._wait(waiter, watcher, loop.time() + self.timeout_s)
        except BaseException:
            with self._lock:
                admitted = waiter.future.done() and not waiter.future.cancelled()
                self._drop(waiter)
            if admitted:
                Ticket(self, memory, disk).release()  # admitted just as it left: give the share back
            raise
        finally:
            if watcher is not None:
                watcher.cancel()
        return Ticket(self, memory, disk)

    def _enter(self, memory: int, disk: int, field: str, loop: asyncio.AbstractEventLoop) -> _Waiter | None:
        """Take room now (None), or queue a waiter (under ``self._lock``); refuse what can never
        fit or finds the queue full."""
        if memory > self.memory_bytes or disk > self.disk_bytes:
            raise self._too_large(memory, disk, field)
        if self._try_take(memory, disk):
            return None
        if len(self._waiting) >= self.queue_size:
            self.refused += 1
            raise UnavailableError(
                f"the server's cutout budget is in use ({len(self._waiting)} requests waiting); retry shortly")
        waiter = _Waiter(memory, disk, loop.create_future())
        self._waiting.append(waiter)
        return waiter

    async def _wait(self, waiter: _Waiter, watcher: asyncio.Future | None, deadline: float) -> None:
        """Until ``waiter`` is admitted; raises when the deadline passes or the client leaves."""
        loop = asyncio.get_running_loop()
        while not waiter.future.done():
            remaining = deadline - loop.time()
            if remaining <= 0:
                self.refused += 1
                raise UnavailableError(f"no room in the server's cutout budget within {self.timeout_s:g} s; "
                                       "retry shortly")
            step = min(remaining, self.poll_s) if self.ledger is not None else remaining
            pending = {waiter.future} if watcher is None else {waiter.future, watcher}
            await asyncio.wait(pending, timeout=step, return_when=asyncio.FIRST_COMPLETED)
            if waiter.future.done():
                break
            if watcher is not None and watcher.done():
                self.gone += 1
                raise ClientGoneError("the client disconnected while its request waited for room")
            if self.ledger is not None:  # another process may have given room back
                with self._lock:
                    ready = self._pump()
                for other in ready:
                    self._wake(other)

    def try_admit(self, memory: int, disk: int = 0) -> Ticket | None:
        """Take room for ``memory`` and ``disk`` bytes now if it is free (any thread); None
        otherwise, for the caller to :meth:`admit` (and wait) instead."""
        memory, disk = max(0, int(memory)), max(0, int(disk))
        with self._lock:
            if self._try_take(memory, disk):
                return Ticket(self, memory, disk)
        return None

    def _drop(self, waiter: _Waiter) -> None:
        """Remove a waiter that leaves (under ``self._lock``), then let in whoever fits now."""
        with contextlib.suppress(ValueError):
            self._waiting.remove(waiter)
        if not waiter.future.done():
            waiter.future.cancel()
        for other in self._pump():
            self._wake(other)

    def _give_back(self, memory: int, disk: int) -> None:
        with self._lock:
            self.memory_in_use -= memory
            self.disk_in_use -= disk
            if self.ledger is not None:
                self.ledger.give(memory, disk)
            ready = self._pump()
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

    # -- views -----------------------------------------------------------------------------------
    def for_request(self, gone: Callable[[], Awaitable[Any]]) -> RequestBudget:
        """The budget as one request uses it: its waits end when ``gone()`` completes."""
        return RequestBudget(self, gone)

    def stats(self) -> dict[str, int]:
        """The budget, what is in use and the counters (for /health and metrics). With a shared
        ledger ``memory_in_use``/``disk_in_use`` are the host's, ``process_*`` this process's."""
        memory, disk = self.ledger.in_use() if self.ledger is not None else (self.memory_in_use, self.disk_in_use)
        out = {
            "memory_bytes": self.memory_bytes, "memory_in_use": memory,
            "disk_bytes": self.disk_bytes, "disk_in_use": disk,
            "waiting": len(self._waiting), "queue_size": self.queue_size,
            "admitted": self.admitted, "refused": self.refused, "too_large": self.too_large,
            "client_gone": self.gone,
        }  # fmt: skip
        if self.ledger is not None:
            out.update(shared=1, process_memory_in_use=self.memory_in_use, process_disk_in_use=self.disk_in_use)
        return out


class RequestBudget:
    """A :class:`Budget` as one request sees it (:meth:`Budget.for_request`): :meth:`admit` ends
    the wait as soon as the request's client disconnects (its queue slot is given back at once)."""

    def __init__(self, budget: Budget, gone: Callable[[], Awaitable[Any]]) -> None:
        self.budget, self._gone = budget, gone

    async def admit(self, memory: int, disk: int = 0, *, field: str = "x") -> Ticket:
        return await self.budget.admit(memory, disk, field=field, gone=self._gone())

    def try_admit(self, memory: int, disk: int = 0) -> Ticket | None:
        return self.budget.try_admit(memory, disk)

    def stats(self) -> dict[str, int]:
        return self.budget.stats()
