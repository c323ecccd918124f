"""Streaming zips (one member built at a time) and single-file responses.

A zip is produced by :func:`stream_zip.stream_zip` from a lazy sequence of member *makers*. The
generator itself is advanced on the worker pool, one ``next()`` per call, so a member (a TPF) is
built on a worker thread only when the client has taken the bytes before it: the server holds one
member and one chunk per response, never the whole archive. Members are stored uncompressed (TPF
floats hardly compress; deflate would cost more CPU than it saves bytes), with ZIP64 records only
once the archive passes 4 GiB.
"""

from __future__ import annotations

import logging
import stat
import zlib
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from fastapi.responses import Response, StreamingResponse
from stream_zip import NO_COMPRESSION_32, NO_COMPRESSION_64, stream_zip

from app.workers import WorkerPool

__all__ = ["MemberMaker", "content_disposition", "file_response", "zip_bytes", "zip_chunks", "zip_response"]

log = logging.getLogger("app.streaming")

#: a callable run on a worker that returns (member name, member bytes or a memoryview of them), or
#: None to skip the member
MemberMaker = Callable[[], "tuple[str, bytes | memoryview] | None"]

CHUNK_SIZE = 1024 * 1024
_ZIP32_LIMIT = 0xFFFFFFFF - 64 * 1024


def _member_files(makers: Iterable[MemberMaker]) -> Iterator[tuple[Any, ...]]:
    modified = datetime.now(UTC).replace(tzinfo=None)
    offset = 0
    for make in makers:
        made = make()
        if made is None:  # the maker found no data for this member: leave it out
            continue
        name, data = made
        size = len(data)
        crc = zlib.crc32(data)
        big = offset + size + 1024 > _ZIP32_LIMIT
        method = (NO_COMPRESSION_64 if big else NO_COMPRESSION_32)(size, crc)
        offset += size + 128 + 2 * len(name.encode())
        yield name, modified, stat.S_IFREG | 0o644, method, (data,)
        del data


async def zip_chunks(
    pool: WorkerPool, makers: Iterable[MemberMaker], *, chunk_size: int = CHUNK_SIZE
) -> AsyncIterator[bytes]:
    """Yield the bytes of a zip whose members are made one at a time on ``pool``.

    Every ``next()`` of the zip generator runs on the pool (``admitted=True``: the request was let
    in before the response started), so building a member never blocks the event loop.
    """
    gen = stream_zip(_member_files(makers), chunk_size=chunk_size)
    try:
        while True:
            chunk = await pool.run(next, gen, None, admitted=True)
            if chunk is None:
                return
            yield chunk
    except Exception:
        log.exception("zip stream aborted")
        raise


def zip_bytes(makers: Iterable[MemberMaker]) -> bytes:
    """The whole zip (members as :func:`zip_chunks` writes them) in memory, built on this thread.

    For small archives (a few 5x5 TPFs): one worker call and one ``send`` instead of a thread hop
    per chunk, which under load costs more than the cutout itself.
    """
    return b"".join(stream_zip(_member_files(makers), chunk_size=CHUNK_SIZE))


def content_disposition(filename: str, *, inline: bool = False) -> str:
    """A ``Content-Disposition`` value (RFC 6266, with a UTF-8 fallback)."""
    kind = "inline" if inline else "attachment"
    ascii_name = filename.encode("ascii", "replace").decode().replace('"', "_")
    if ascii_name == filename:
        return f'{kind}; filename="{filename}"'
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"


def zip_response(pool: WorkerPool, makers: Iterable[MemberMaker], filename: str) -> StreamingResponse:
    """A streamed ``application/zip`` response (no ``Accept-Ranges``, see tesscut-clients.md)."""
    return StreamingResponse(
        zip_chunks(pool, makers),
        media_type="application/zip",
        headers={"Content-Disposition": content_disposition(filename)},
    )


def file_response(data: bytes, media_type: str, filename: str, *, inline: bool = False) -> Response:
    """A whole small file (one FITS, one PNG/JPEG) with its name."""
    return Response(
        content=data,
        media_type=media_type,
        headers={"Content-Disposition": content_disposition(filename, inline=inline)},
    )
