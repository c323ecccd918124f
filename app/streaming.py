"""Sending answers: one file, a zip built whole (small), or a zip streamed member by member.

A streamed zip is produced by :func:`stream_zip.stream_zip` from the answer's members, in order,
its first bytes sent as soon as its first member is made. The members are made ahead of the writer
on the worker pool's member threads (:mod:`app.readahead`): several at once (the pool's
``zip_concurrency``), each made ahead admitted against the server's budget, and at most the pool's
``zip_readahead_bytes`` of them made and not yet sent; the member the writer needs next is made
under the zip's own admitted share, so the server holds a bounded read-ahead (or one band of a
streamed TPF) and one chunk per response, never the archive. Members made whole are stored (TPF
floats hardly compress); a streamed TPF, whose CRC is known only at its end, is written with
deflate at level 0 and a data descriptor (stored blocks: no compression cost). Whatever ends the
response (the last byte, an error, the client going away), the makers are told to stop, the zip
generator is closed (removing any pixel spool) once no worker is inside it, the makers still
running are waited for, and only then is the request's budget given back.
"""

from __future__ import annotations

import logging
import stat
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Any

import anyio
import anyio.to_thread
from fastapi.responses import JSONResponse, Response, StreamingResponse
from stream_zip import NO_COMPRESSION_32, NO_COMPRESSION_64, ZIP_AUTO, stream_zip

from app.budget import Ticket
from app.planning.answers import FileAnswer, FileStreamAnswer, NoData, ZipAnswer, ZipMember
from app.planning.context import safe_name
from app.readahead import Made, MemberMaker
from app.workers import WorkerPool

__all__ = ["built_when_small", "content_disposition", "file_chunks", "file_response", "no_data", "planned",
           "send_file", "zip_bytes", "zip_chunks", "zip_response"]

log = logging.getLogger("app.streaming")

#: the piece a streamed answer is sent in: with its HTTP chunk framing, below the mmap threshold the
#: server fixes (``mmap_threshold_bytes``, 1 MiB by default), so that every piece comes from the heap
#: and is reused; at 1 MiB each piece (and its framed copy) was mapped afresh and its pages faulted in
#: and zeroed (a 12-sector zip of 282 MB from local cubes: ~730 ms at 1 MiB, ~400 ms at 512 KiB)
CHUNK_SIZE = 512 * 1024
_ZIP32_LIMIT = 0xFFFFFFFF - 64 * 1024
#: zips whose members add up to at most this are built whole in one worker call and sent in one
#: piece: a thread hop per chunk would cost more than the cutouts
INLINE_ZIP_BYTES = 8 * 1024 * 1024


def _member_files(maker: MemberMaker) -> Iterator[tuple[Any, ...]]:
    """The zip's members for :func:`stream_zip`, in order, as ``maker`` makes them."""
    modified = datetime.now(UTC).replace(tzinfo=None)
    offset = 0
    mode = stat.S_IFREG | 0o644
    for i, member in enumerate(maker.members):
        if maker.cancel.is_set():
            return
        made = maker.take(i)
        try:
            if made is None:  # the maker found no data for this member: leave it out
                continue
            if isinstance(made, Made):
                size = made.nbytes
                big = offset + size + 1024 > _ZIP32_LIMIT
                # stored, its size and CRC-32 worked out by stream_zip from the bytes held (one
                # pass over them: given a CRC, it would check it with a second)
                method = NO_COMPRESSION_64 if big else NO_COMPRESSION_32
                offset += size + 128 + 2 * len(member.name.encode())
                yield member.name, modified, mode, method, (made.data,)
            else:  # the pieces of a streamed TPF: CRC known at the end (data descriptor)
                offset += member.nbytes + member.nbytes // 16000 + 256
                yield member.name, modified, mode, ZIP_AUTO(member.nbytes, level=0), made
        finally:
            close = getattr(made, "close", None)  # a streamed TPF's generator removes its spool
            if close is not None:
                close()
            del made
            maker.sent(i)


def member_maker(members: Sequence[ZipMember], pool: WorkerPool | None, budget: Any = None,
                 cancel: threading.Event | None = None) -> MemberMaker:
    """A :class:`MemberMaker` for ``members`` on ``pool``'s member threads, with its concurrency and
    read-ahead bound (without a pool, or for one member: made on the calling thread)."""
    cancel = cancel or threading.Event()
    if pool is None or len(members) <= 1:  # one member: made on this thread (a hop costs more than it saves)
        return MemberMaker(members, submit=_run_here, cancel=cancel)
    return MemberMaker(members, submit=pool.submit_member, cancel=cancel, budget=budget,
                       concurrency=pool.zip_concurrency, readahead_bytes=pool.zip_readahead_bytes)


def _run_here(fn: Any, *args: Any) -> Future:
    future: Future = Future()
    try:
        future.set_result(fn(*args))
    except BaseException as exc:  # noqa: BLE001 - handed to the writer, as a thread's would be
        future.set_exception(exc)
    return future


async def zip_chunks(pool: WorkerPool, members: Sequence[ZipMember], ticket: Ticket | None = None, *,
                     budget: Any = None, chunk_size: int = CHUNK_SIZE,
                     started: threading.Event | None = None) -> AsyncIterator[bytes]:
    """Yield the bytes of a zip of ``members``, written in order on ``pool`` while its members
    are made ahead (:mod:`app.readahead`: concurrently, bounded, each made ahead admitted against
    ``budget``); see the module docstring for what happens when the response ends. ``started`` is
    set once the generator runs (from then on it gives the ``ticket`` back itself)."""
    if started is not None:
        started.set()
    maker = member_maker(members, pool, budget)
    gen = stream_zip(_member_files(maker), chunk_size=chunk_size)
    inside = threading.Lock()  # held while a worker advances the generator

    def step() -> bytes | None:
        with inside:
            return next(gen, None)

    try:
        maker.fill()  # the first members are being made before the first step asks for them
        while True:
            chunk = await pool.run(step, admitted=True)
            if chunk is None:
                return
            yield chunk
    except Exception:
        log.exception("zip stream aborted")
        raise
    finally:
        maker.cancel.set()

        def finish() -> None:
            with inside:  # a worker still inside stops at its next check; then close
                try:
                    gen.close()
                except Exception:
                    log.debug("closing the zip stream failed", exc_info=True)
            maker.close()  # the makers still running end; every member's share goes back
            if ticket is not None:
                ticket.release()

        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(finish)


def zip_bytes(members: Sequence[ZipMember], pool: WorkerPool | None = None, budget: Any = None) -> bytes:
    """The whole zip (members as :func:`zip_chunks` writes them) in memory, written on this
    thread, its members made on ``pool``'s member threads (on this thread without a pool)."""
    maker = member_maker(members, pool, budget)
    try:
        return b"".join(stream_zip(_member_files(maker), chunk_size=CHUNK_SIZE))
    finally:
        maker.close()


def _small(answer: ZipAnswer) -> bool:
    total = answer.nbytes
    return bool(total) and total <= INLINE_ZIP_BYTES and not any(m.streamed for m in answer.members)


def built_when_small(answer: Any, budget: Any, pool: WorkerPool | None = None) -> Any:
    """On the worker thread that planned it: a small zip (at most ``INLINE_ZIP_BYTES``, no streamed
    member) is built at once when the budget has room now (its members made on ``pool``'s member
    threads), sparing the request a second trip through the pool; any other answer comes back as
    it was, for :func:`send`."""
    if not isinstance(answer, ZipAnswer) or not _small(answer):
        return answer
    ticket = budget.try_admit(answer.memory_bytes, answer.disk_bytes)
    if ticket is None:
        return answer
    try:
        data = zip_bytes(answer.members, pool, budget)
    finally:
        ticket.release()
    return FileAnswer(data, "application/zip", answer.filename, stats=answer.stats)


def planned(pool: WorkerPool | None, budget: Any, planner: Any, *args: Any, **kwargs: Any) -> Any:
    """``planner(*args, **kwargs)``, then :func:`built_when_small` (one job on the pool)."""
    return built_when_small(planner(*args, **kwargs), budget, pool)


def content_disposition(filename: str, *, inline: bool = False) -> str:
    """A ``Content-Disposition`` value for one of our file names (in the safe alphabet already:
    sanitised again here, so no quote, semicolon or separator can reach the header)."""
    kind = "inline" if inline else "attachment"
    return f'{kind}; filename="{safe_name(filename, limit=200)}"'


class HeldResponse(Response):
    """A whole answer held in memory, sent a piece (:data:`CHUNK_SIZE`) at a time, and the budget
    share that covers it, given back once the answer has been sent or the client has gone.

    One body message would be copied whole by the HTTP layer and again into the connection's
    buffer when the client reads slower than the server writes; pieces are copied one at a time,
    and the server's flow control holds back the next until the client takes them (a slow reader
    holds the answer at most ``send_timeout_s`` per piece: then the connection is closed)."""

    def __init__(self, *args: Any, ticket: Ticket | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ticket = ticket

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            body = memoryview(self.body)
            for start in range(0, len(body), CHUNK_SIZE):
                await send({"type": "http.response.body", "body": body[start:start + CHUNK_SIZE], "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            if self.background is not None:
                await self.background()
        finally:
            if self._ticket is not None:
                self._ticket.release()
            self.body = b""


def file_response(data: bytes | memoryview, media_type: str, filename: str | None, *, inline: bool = False,
                  headers: dict[str, str] | None = None, ticket: Ticket | None = None) -> Response:
    """A whole file (one FITS, one PNG/JPEG, a small zip, a JSON or CSV body) with its name; with a
    ``ticket``, the budget share covering it is held until it has been sent. Files over
    :data:`CHUNK_SIZE` are sent a piece at a time (:class:`HeldResponse`)."""
    hdrs = dict(headers or {})
    if filename is not None:
        hdrs["Content-Disposition"] = content_disposition(filename, inline=inline)
    if ticket is not None or memoryview(data).nbytes > CHUNK_SIZE:
        return HeldResponse(content=data, media_type=media_type, headers=hdrs, ticket=ticket)
    return Response(content=data, media_type=media_type, headers=hdrs)


class ZipStreamResponse(StreamingResponse):
    """A streamed ``application/zip`` response (no ``Accept-Ranges``: a client could mistake an
    existing same-second zip for a partial download and resume it with Range).

    Starlette leaves a body iterator suspended when sending fails (the client went away): this
    response closes it, so the zip's cleanup runs, and gives the budget back itself when the body
    never started.
    """

    def __init__(self, pool: WorkerPool, members: Sequence[ZipMember], filename: str,
                 ticket: Ticket | None = None, budget: Any = None) -> None:
        self._ticket = ticket
        self._started = threading.Event()
        super().__init__(zip_chunks(pool, members, ticket, budget=budget, started=self._started),
                         media_type="application/zip", headers={"Content-Disposition": content_disposition(filename)})

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self.body_iterator.aclose()  # type: ignore[union-attr]
            if not self._started.is_set() and self._ticket is not None:
                self._ticket.release()


def zip_response(pool: WorkerPool, members: Sequence[ZipMember], filename: str,
                 ticket: Ticket | None = None, budget: Any = None) -> StreamingResponse:
    """A streamed zip of ``members`` (see :class:`ZipStreamResponse`); members made ahead are
    admitted against ``budget``."""
    return ZipStreamResponse(pool, members, filename, ticket, budget)


async def file_chunks(pool: WorkerPool, member: ZipMember, ticket: Ticket | None = None, *,
                      started: threading.Event | None = None) -> AsyncIterator[bytes]:
    """Yield the bytes of one streamed file (a :class:`ZipMember` whose maker gives pieces), each
    piece made on ``pool``; whatever ends the response, the maker is told to stop, its generator
    closed (removing any pixel spool) and the ``ticket`` given back, as :func:`zip_chunks` does."""
    if started is not None:
        started.set()
    cancel = threading.Event()
    inside = threading.Lock()
    pieces: list[Any] = []

    def step() -> bytes | None:
        with inside:
            if not pieces:
                pieces.append(iter(member.build(cancel)))
            piece = next(pieces[0], None)
            return None if piece is None else bytes(piece)

    try:
        while True:
            chunk = await pool.run(step, admitted=True)
            if chunk is None:
                return
            if chunk:  # the stream's first pass yields empty pieces (checkpoints), not data
                yield chunk
    finally:
        cancel.set()

        def finish() -> None:
            with inside:
                close = getattr(pieces[0], "close", None) if pieces else None
                if close is not None:
                    try:
                        close()
                    except Exception:
                        log.debug("closing the file stream failed", exc_info=True)
            if ticket is not None:
                ticket.release()

        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(finish)


class FileStreamResponse(ZipStreamResponse):
    """A streamed file of known size (``Content-Length`` set, so a cut-short body is seen as
    incomplete), closed and its budget given back as :class:`ZipStreamResponse` does."""

    def __init__(self, pool: WorkerPool, member: ZipMember, media_type: str, ticket: Ticket | None = None) -> None:
        self._ticket = ticket
        self._started = threading.Event()
        headers = {"Content-Disposition": content_disposition(member.name)}
        if member.nbytes:
            headers["Content-Length"] = str(member.nbytes)
        StreamingResponse.__init__(self, file_chunks(pool, member, ticket, started=self._started),
                                   media_type=media_type, headers=headers)


async def send_file(answer: FileStreamAnswer, *, pool: WorkerPool, budget: Any) -> Response:
    """The response for a :class:`FileStreamAnswer`: admitted against the budget (the memory and
    disk making it takes), then built whole on ``pool`` when it is made in memory, else streamed."""
    member = answer.member
    ticket = await budget.admit(member.memory_bytes, member.disk_bytes)
    try:
        if not member.streamed:
            # the member's own buffer (a TPF's memoryview), sent without another copy of it
            data = await pool.run(member.build, threading.Event())
            return file_response(data, answer.media_type, member.name, ticket=ticket)
        return FileStreamResponse(pool, member, answer.media_type, ticket)
    except BaseException:
        ticket.release()
        raise


def no_data(answer: NoData) -> JSONResponse:
    """The "no data" answer TESScut, Zcut and Hapcut clients expect: HTTP 200, ``msg``, empty
    ``results`` (and on the TESScut routes the hosted sectors)."""
    if answer.status == 204:
        return Response(status_code=204)
    if answer.hosted is None:
        return JSONResponse({"msg": answer.message, "results": []})
    listing = ", ".join(str(s) for s in answer.hosted) or "none"
    return JSONResponse({"msg": f"{answer.message} Hosted {answer.product} sectors: {listing}.", "results": [],
                         "hosted_sectors": list(answer.hosted)})


async def send(answer: Any, *, pool: WorkerPool, budget: Any, held: Ticket | None = None) -> Any:
    """The response for a planner's answer. A zip is admitted against the budget first (what making
    its members takes), then built whole when small or streamed. A file already in memory keeps
    ``held`` (the planning share that made it) until it has been sent; so does a small zip its own
    share. Anything else (JSON-able data) is returned as it is, for the route's response model."""
    if isinstance(answer, FileAnswer):
        return file_response(answer.data, answer.media_type, answer.filename, inline=answer.inline,
                             headers=answer.headers, ticket=held)
    if held is not None:
        held.release()
    if isinstance(answer, NoData):
        return no_data(answer)
    if isinstance(answer, FileStreamAnswer):
        return await send_file(answer, pool=pool, budget=budget)
    if not isinstance(answer, ZipAnswer):
        return answer
    ticket = await budget.admit(answer.memory_bytes + (answer.nbytes if _small(answer) else 0), answer.disk_bytes)
    try:
        if _small(answer):
            data = await pool.run(zip_bytes, answer.members, pool, budget)
            return file_response(data, "application/zip", answer.filename, ticket=ticket)
        return zip_response(pool, answer.members, answer.filename, ticket, budget)
    except BaseException:
        ticket.release()
        raise
