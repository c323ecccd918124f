"""Making a zip's members ahead of its writer: several at once, bounded, each admitted.

A zip is written in member order (:mod:`app.streaming`), but its members are independent cuts: a
request over 12 sectors of S3 cubes would otherwise wait 12 round trips, one member after another.
A :class:`MemberMaker` makes the members on the worker pool's member threads
(:meth:`app.workers.WorkerPool.submit_member`) while the writer sends the earlier ones:

- at most ``concurrency`` members are being made at once (every row range of those cuts is then
  in flight on the storage backend's shared pool);
- the member the writer needs next is made under the zip's own admitted share (what it takes to
  make its biggest member: :attr:`app.planning.answers.ZipAnswer.memory_bytes`), exactly as when
  members were made one at a time, so a zip always makes progress;
- every member made ahead takes its own share of the server's budget first
  (:meth:`app.budget.Budget.try_admit`: room now, and nobody waiting, or it is not made ahead),
  held until the writer has sent it; and the members made ahead and not yet sent hold at most
  ``readahead_bytes`` (at least one member), so a slow client holds a bounded read-ahead;
- a streamed member (a big TPF written in bounded pieces) is never made ahead: the writer makes it
  when it gets there, its pieces produced as they are sent;
- :meth:`MemberMaker.close` (the response ended: last byte, error, client gone) tells the makers
  to stop, drops the members not started, waits for the running ones to end and gives every share
  back.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, wait
from dataclasses import dataclass
from typing import Any

from app.planning.answers import ZipMember

__all__ = ["Made", "MemberMaker"]

log = logging.getLogger("app.streaming")


@dataclass(frozen=True)
class Made:
    """An in-memory member, made: its bytes."""

    data: Any

    @property
    def nbytes(self) -> int:
        return memoryview(self.data).nbytes


def make_member(member: ZipMember, cancel: threading.Event) -> Made | None:
    """Make an in-memory member (on a maker thread): its bytes, or None for no data."""
    if cancel.is_set():
        return None
    data = member.build(cancel)
    if data is None:
        return None
    return Made(data)


@dataclass
class _Slot:
    future: Future
    #: the member's own share of the budget (made ahead), or None (under the zip's share)
    ticket: Any = None
    own_share: bool = False
    memory: int = 0


class MemberMaker:
    """The members of one zip, made ahead of the writer (see the module docstring).

    Parameters
    ----------
    members : the zip's members, in order.
    submit : ``submit(fn, *args) -> concurrent.futures.Future``, runs a maker on a thread.
    cancel : set when the response ends; makers stop at their next check.
    budget : the server's :class:`~app.budget.Budget` (None: made ahead without admission).
    concurrency : members being made at once.
    readahead_bytes : memory the members made ahead and not yet sent may hold (at least one).
    """

    def __init__(self, members: Sequence[ZipMember], *, submit: Callable[..., Future], cancel: threading.Event,
                 budget: Any = None, concurrency: int = 1, readahead_bytes: int = 0) -> None:
        self.members = list(members)
        self._submit = submit
        self.cancel = cancel
        self.budget = budget
        self.concurrency = max(1, int(concurrency))
        self.readahead_bytes = max(0, int(readahead_bytes))
        self._lock = threading.Lock()
        self._slots: dict[int, _Slot] = {}
        self._next = 0  # the first member the writer has not sent
        self._held = 0  # memory of the members made ahead, not yet sent
        self._zip_share_busy = False
        self._closed = False
        self.made_ahead = 0  # members made under their own share (for tests and logs)

    # -- starting makers ---------------------------------------------------------------------------
    def fill(self) -> None:
        """Start the makers that may start now (lowest members first)."""
        started: list[tuple[int, _Slot]] = []
        with self._lock:
            if self._closed or self.cancel.is_set():
                return
            running = sum(1 for s in self._slots.values() if not s.future.done())
            for i in range(self._next, len(self.members)):
                if running >= self.concurrency:
                    break
                member = self.members[i]
                if i in self._slots or member.streamed:
                    continue  # a streamed member is made by the writer, in order
                slot = self._claim(i, member)
                if slot is None:
                    break  # no room: the rest wait for the writer (or for room)
                started.append((i, slot))
                running += 1
        for i, slot in started:
            slot.future.add_done_callback(self._finished)

    def _claim(self, i: int, member: ZipMember) -> _Slot | None:
        """Under the lock: a slot for member ``i`` (its maker submitted), or None when it must wait."""
        if i == self._next and not self._zip_share_busy:
            self._zip_share_busy = True
            slot = _Slot(self._submit(make_member, member, self.cancel), own_share=False)
        else:
            memory = int(member.memory_bytes)
            if self._held and self._held + memory > self.readahead_bytes:
                return None
            ticket = None
            if self.budget is not None:
                ticket = self.budget.try_admit(memory, member.disk_bytes)
                if ticket is None:
                    return None
            self._held += memory
            self.made_ahead += 1
            slot = _Slot(self._submit(make_member, member, self.cancel), ticket, True, memory)
        self._slots[i] = slot
        return slot

    def _finished(self, future: Future) -> None:
        if not self._closed:
            self.fill()  # a maker ended: another may start

    # -- the writer's side (one thread, members in order) -------------------------------------------
    def take(self, i: int) -> Made | Any | None:
        """Member ``i``'s result, waiting for its maker: :class:`Made`, the piece iterator of a
        streamed member (made now, on this thread), or None (no data, or stopped). Raises what its
        maker raised. The writer takes the members in order, each after :meth:`sent` of the last."""
        member = self.members[i]
        if member.streamed:
            with self._lock:
                self._zip_share_busy = True  # sent under the zip's own share
            self.fill()  # the in-memory members after it may be made meanwhile
            return member.build(self.cancel)
        self.fill()  # every earlier member is sent: the zip's own share is free for this one
        with self._lock:
            slot = self._slots.get(i)
        if slot is None:  # stopped (closed, or the client went away)
            return None
        return slot.future.result()

    def sent(self, i: int) -> None:
        """The writer is done with member ``i``: its share goes back, later members may start."""
        with self._lock:
            self._next = i + 1
            slot = self._slots.pop(i, None)
            if slot is None or not slot.own_share:
                self._zip_share_busy = False
            else:
                self._held -= slot.memory
        if slot is not None and slot.ticket is not None:
            slot.ticket.release()
        self.fill()

    # -- the end ---------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop: drop the members not started, wait for the running makers, give every share back
        (idempotent; any thread)."""
        with self._lock:
            self._closed = True
            self.cancel.set()
            slots = list(self._slots.values())
        for slot in slots:
            slot.future.cancel()  # not started yet: never runs
        wait([s.future for s in slots])
        with self._lock:
            slots = list(self._slots.values())
            self._slots.clear()
            self._held = 0
            self._zip_share_busy = False
        for slot in slots:
            if slot.ticket is not None:
                slot.ticket.release()
