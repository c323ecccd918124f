"""The answers a planner returns: no data, one file, or a zip of members made later.

A :class:`ZipAnswer` holds no bytes yet: each :class:`ZipMember` says how big it will be and how to
make it (on a worker thread, while the response streams), and the answer says how much memory and
temporary disk making its biggest member takes, which is what the server-wide budget admits.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

__all__ = ["CutoutStats", "FileAnswer", "FileStreamAnswer", "NoData", "ZipAnswer", "ZipMember"]


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
    product: str = "SPOC"


@dataclass
class FileAnswer:
    """One whole, small file."""

    data: bytes
    media_type: str
    filename: str
    inline: bool = False
    stats: CutoutStats | None = None


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
