"""What a route's planner is, and the answers it returns: no data, one file, or a zip of members
made later.

A :class:`Planner` says what planning a request costs before anything is read (:class:`Cost`) and
how it is planned. A :class:`ZipAnswer` holds no bytes yet: each :class:`ZipMember` says how big it
will be and how to make it (on a worker thread, while the response streams), and the answer says
how much memory and temporary disk making its members takes, which is what the server-wide budget
admits before the first byte is made.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.product import Product

__all__ = [
    "NO_COST",
    "Cost",
    "CutoutStats",
    "FileAnswer",
    "FileStreamAnswer",
    "NoData",
    "Planner",
    "ZipAnswer",
    "ZipMember",
    "lookup_cost",
]


@dataclass(frozen=True)
class Cost:
    """What planning a request may hold at most: memory and temporary disk, in bytes, and the
    parameter a 413 names when that is more than the whole budget."""

    memory: int = 0
    disk: int = 0
    field: str = "x"


#: a planner that holds nothing worth admitting while it plans (it only looks things up)
NO_COST = Cost()


def lookup_cost(ctx: Any, params: Any, **extra: Any) -> Cost:
    """The cost of a planner that only looks things up in memory (the catalog, a WCS): nothing
    proportional to a user-chosen number is built, and no setting limits it."""
    return NO_COST


@dataclass(frozen=True)
class Planner:
    """A route's work.

    Attributes
    ----------
    plan : ``plan(ctx, params, **extra) -> answer``, run on the worker pool; the answer is one of
        this module's types, or JSON-able data for the route's response model.
    cost : ``cost(ctx, params, **extra) -> Cost``, run on the event loop before planning:
        constant time, from the typed parameters and the settings only. It checks the settings'
        limits first (a size beyond ``max_cutout_side``, too many inputs: a 4xx before anything
        is read or allocated) and says what planning holds; what sending the answer holds is
        said by the answer itself (:class:`ZipAnswer`, :class:`FileStreamAnswer`) and admitted
        before it is made. Every planner states its cost (:func:`lookup_cost` when planning only
        looks things up): a planner cannot be made without deciding what it costs.
    """

    plan: Callable[..., Any]
    cost: Callable[..., Cost]


@dataclass(frozen=True)
class CutoutStats:
    """What a request cut, for the access log and the metrics: the first cutout's shape, the frames
    of all cutouts, and how many."""

    nx: int
    ny: int
    frames: int = 1
    count: int = 1

    @property
    def pixel_frames(self) -> int:
        return self.nx * self.ny * self.frames


@dataclass(frozen=True)
class NoData:
    """A valid request with nothing to cut (TESScut's HTTP 200 ``{"msg", "results": []}``)."""

    message: str
    product: Product = Product.SPOC
    #: the hosted sectors, listed in the answer (TESScut routes); None leaves them out (Zcut, Hapcut)
    hosted: Sequence[int] | None = None
    #: 204: an answer without a body (SODA's "no overlap"); else TESScut's JSON with HTTP 200
    status: int = 200


@dataclass
class FileAnswer:
    """One whole, small file."""

    data: bytes
    media_type: str
    #: the name a download gets (``Content-Disposition``); None sends none (a JSON answer)
    filename: str | None
    inline: bool = False
    stats: CutoutStats | None = None
    headers: dict[str, str] = field(default_factory=dict)


#: ``build(cancel)`` -> the member's bytes, or an iterator of its pieces (a streamed TPF); ``cancel``
#: is set when the client has gone away, and a long build should stop at its next check
Builder = Callable[[threading.Event], "bytes | memoryview | Iterator[memoryview]"]


@dataclass
class ZipMember:
    """One member of a zip: its name, its size when known (0 if not), and how to make it."""

    name: str
    build: Builder
    nbytes: int = 0
    streamed: bool = False
    memory_bytes: int = 0
    disk_bytes: int = 0


@dataclass
class ZipAnswer:
    """A zip whose members are made one at a time while it is sent."""

    filename: str
    members: list[ZipMember]
    stats: CutoutStats | None = None
    extra: dict = field(default_factory=dict)

    @property
    def memory_bytes(self) -> int:
        """Memory the biggest member takes while it is made (members are made one at a time)."""
        return max((m.memory_bytes for m in self.members), default=0)

    @property
    def disk_bytes(self) -> int:
        """Temporary disk the biggest member takes while it is made."""
        return max((m.disk_bytes for m in self.members), default=0)

    @property
    def nbytes(self) -> int:
        """The members' total size (0 when a size is unknown)."""
        sizes = [m.nbytes for m in self.members]
        return 0 if not sizes or 0 in sizes else sum(sizes)


@dataclass
class FileStreamAnswer:
    """One file made later, as a zip member is (``member``: its size, the memory and disk making it
    takes, its maker), sent bare with ``media_type``: built whole when small, streamed otherwise."""

    member: ZipMember
    media_type: str
    stats: CutoutStats | None = None

    @property
    def filename(self) -> str:
        return self.member.name
