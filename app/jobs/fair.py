"""Fair shares between clients: which queued job runs next, and which running job gets Dask slots.

Fairness here means round-robin between owners (client addresses), at two levels:

- admission: of the jobs waiting, the next to run is one of the owner with the fewest running
  jobs; among owners running equally many, the one served longest ago (never served first); then
  that owner's earliest queued job. A client with ten jobs waiting does not keep nine others out.
- dispatch: free Dask slots go to owners in turn, a few tasks (the quantum) at a time, and an
  owner's turn goes to its running jobs in turn. Each owner with work gets an equal share of the
  cluster, whatever the size of its jobs.

Both are plain logic, with no Dask or disk in them.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass

__all__ = ["Queued", "RoundRobin", "next_admission"]


@dataclass(frozen=True)
class Queued:
    """A job waiting to run: its id, owner and when it was queued (Unix seconds)."""

    job_id: str
    owner: str
    queued: float


def next_admission(waiting: Iterable[Queued], running: Counter, last_served: dict[str, int]) -> Queued | None:
    """The waiting job to run next (see the module docstring), or None when none waits.

    Parameters
    ----------
    waiting : iterable of Queued
    running : Counter
        Running jobs per owner.
    last_served : dict
        Owner -> a sequence number of its last admission (higher is more recent).
    """
    best = None
    best_key = None
    for job in waiting:
        key = (running.get(job.owner, 0), last_served.get(job.owner, -1), job.queued, job.job_id)
        if best_key is None or key < best_key:
            best, best_key = job, key
    return best


class RoundRobin:
    """Turns between keys in a fixed cycle: :meth:`next` gives the next key (after the last one
    given) for which ``ready(key)`` holds."""

    def __init__(self) -> None:
        self._order: deque[Hashable] = deque()

    def __len__(self) -> int:
        return len(self._order)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._order

    def add(self, key: Hashable) -> None:
        """Join the cycle (at its end: after every key already waiting for a turn)."""
        if key not in self._order:
            self._order.append(key)

    def remove(self, key: Hashable) -> None:
        """Leave the cycle."""
        try:
            self._order.remove(key)
        except ValueError:
            pass

    def keys(self) -> list[Hashable]:
        """The keys in the order of their next turns."""
        return list(self._order)

    def any(self, ready: Callable[[Hashable], bool]) -> bool:
        """Whether some key is ready (the turns do not move)."""
        return any(ready(key) for key in self._order)

    def next(self, ready: Callable[[Hashable], bool]) -> Hashable | None:
        """The next ready key, which then goes to the end of the cycle; None if none is ready."""
        for _ in range(len(self._order)):
            key = self._order[0]
            self._order.rotate(-1)
            if ready(key):
                return key
        return None
