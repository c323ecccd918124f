"""A minimal asyncio HTTP/1.1 client that can stream bodies, and a zip checker fed as bytes arrive.

Like ``bench_http_load``'s client (a load generator must cost the 2 cores little), with two
additions the archive and memory benches need:

- :class:`Conn.get` hands the body to a ``sink(chunk)`` as it arrives (Content-Length, chunked or
  until close) instead of keeping it, so a 3 GB zip costs the client one chunk of memory;
- :class:`ZipStreamCheck` reads a zip from such a stream without seeking: every member's local
  header, its data (stored, or deflated with a data descriptor as ``stream-zip`` writes a streamed
  TPF: inflated on the fly), its CRC-32 recomputed and compared with the one the zip records, and
  at the end the central directory checked against what was streamed. Its :meth:`~ZipStreamCheck.close`
  gives ``(name, crc32, size)`` per member: two answers with the same list have byte-identical
  members.
"""

from __future__ import annotations

import asyncio
import struct
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Conn", "Member", "Response", "ZipStreamCheck", "ZipStreamError", "get_zip"]

_READ = 1024 * 1024


@dataclass
class Response:
    """What :meth:`Conn.get` got: status, headers (lower-case names), the body (empty when a sink
    took it), body bytes received, and seconds to the head and to the last byte."""

    status: int
    headers: dict[str, str]
    body: bytes
    nbytes: int
    head_s: float
    total_s: float


class Conn:
    """One HTTP/1.1 keep-alive connection to ``host:port`` (asyncio streams), reopened as needed."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, target: str, sink: Callable[[bytes], object] | None = None) -> Response:
        """GET ``target``; the body goes to ``sink`` chunk by chunk when given, else into
        :attr:`Response.body`. A broken connection is closed (never reused) and the error raised."""
        try:
            return await self._get(target, sink)
        except BaseException:
            await self.close()
            raise

    async def _get(self, target: str, sink: Callable[[bytes], object] | None) -> Response:
        t0 = time.perf_counter()
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port, limit=2 * _READ)
        reader = self.reader
        assert reader is not None
        self.writer.write(f"GET {target} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n\r\n".encode())
        await self.writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        head_s = time.perf_counter() - t0
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
        parts: list[bytes] = []
        put = sink if sink is not None else parts.append
        nbytes = 0
        if "content-length" in headers:
            left = int(headers["content-length"])
            while left:
                data = await reader.read(min(left, _READ))
                if not data:
                    raise asyncio.IncompleteReadError(b"", left)
                left -= len(data)
                nbytes += len(data)
                put(data)
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")
                    break
                left = size
                while left:
                    data = await reader.read(min(left, _READ))
                    if not data:
                        raise asyncio.IncompleteReadError(b"", left)
                    left -= len(data)
                    nbytes += len(data)
                    put(data)
                await reader.readexactly(2)
        else:
            while data := await reader.read(_READ):
                nbytes += len(data)
                put(data)
            await self.close()
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return Response(status, headers, b"".join(parts), nbytes, head_s, time.perf_counter() - t0)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class ZipStreamError(ValueError):
    """The stream is not a complete, consistent zip."""


@dataclass(frozen=True)
class Member:
    """One zip member as streamed: its name, the CRC-32 of its bytes (recomputed), its size."""

    name: str
    crc32: int
    size: int


@dataclass
class _Local:
    name: str
    flags: int
    method: int
    crc: int
    csize: int
    usize: int
    zip64: bool
    inflater: object | None = None
    crc_now: int = 0
    size_now: int = 0
    left: int = 0
    extra: dict[int, bytes] = field(default_factory=dict)


def _extras(raw: bytes) -> dict[int, bytes]:
    out, i = {}, 0
    while i + 4 <= len(raw):
        tag, n = struct.unpack_from("<HH", raw, i)
        out[tag] = raw[i + 4: i + 4 + n]
        i += 4 + n
    return out


class ZipStreamCheck:
    """Check a zip fed in pieces (:meth:`feed`), keeping only what is needed to parse the next part.

    Handles what ``stream-zip`` writes: stored members with sizes in the local header (zip32 or
    zip64 extra field), and deflated members with a data descriptor (zip32 or zip64 sizes). Any
    CRC or size that disagrees with the bytes, or a member missing from the central directory,
    raises :class:`ZipStreamError`.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._state = "sig"
        self._cur: _Local | None = None
        self.members: list[Member] = []
        self._central = bytearray()
        self.nbytes = 0

    def feed(self, data: bytes) -> None:
        self.nbytes += len(data)
        if self._state == "central":
            self._central += data
            return
        if not self._buf and self._state in ("stored", "deflate"):
            self._data(data)  # the common case: member bytes, handled without copying them
        else:
            self._buf += data
        while self._step():
            pass

    def _data(self, data: bytes | bytearray) -> None:
        """Member bytes (all of ``data`` or its start); what follows the member goes to the buffer."""
        cur = self._cur
        assert cur is not None
        if self._state == "stored":
            take = min(len(data), cur.left)
            piece = memoryview(data)[:take]
            cur.crc_now = zlib.crc32(piece, cur.crc_now)
            cur.size_now += take
            cur.left -= take
            if take < len(data):
                self._buf += memoryview(data)[take:]
            if cur.left == 0:
                self._finish(cur.crc, cur.usize)
            return
        inflater = cur.inflater
        out = inflater.decompress(data)  # type: ignore[attr-defined]
        cur.crc_now = zlib.crc32(out, cur.crc_now)
        cur.size_now += len(out)
        if inflater.eof:  # type: ignore[attr-defined]
            self._buf += inflater.unused_data  # type: ignore[attr-defined]
            if cur.flags & 8:
                self._state = "descriptor"
            else:
                self._finish(cur.crc, cur.usize)

    # -- the parser: each step consumes one piece from the buffer, False when it needs more ------
    def _step(self) -> bool:
        buf = self._buf
        if self._state == "sig":
            if len(buf) < 4:
                return False
            sig = bytes(buf[:4])
            if sig == b"PK\x03\x04":
                self._state = "local"
                return True
            if sig in (b"PK\x01\x02", b"PK\x06\x06", b"PK\x05\x06"):
                self._state = "central"
                self._central += buf
                buf.clear()
                return False
            raise ZipStreamError(f"unexpected signature {sig!r} after {len(self.members)} members")
        if self._state == "local":
            if len(buf) < 30:
                return False
            (_sig, _ver, flags, method, _t, _d, crc, csize, usize, nlen, elen) = struct.unpack_from(
                "<IHHHHHIIIHH", buf, 0)
            if len(buf) < 30 + nlen + elen:
                return False
            name = bytes(buf[30: 30 + nlen]).decode("utf-8", "replace")
            extra = _extras(bytes(buf[30 + nlen: 30 + nlen + elen]))
            del buf[: 30 + nlen + elen]
            zip64 = 0x0001 in extra
            if zip64 and (usize == 0xFFFFFFFF or csize == 0xFFFFFFFF) and len(extra[0x0001]) >= 16:
                usize, csize = struct.unpack_from("<QQ", extra[0x0001], 0)
            cur = self._cur = _Local(name, flags, method, crc, csize, usize, zip64, extra=extra)
            if method == 8:
                cur.inflater = zlib.decompressobj(-15)
                self._state = "deflate"
            elif method == 0 and not flags & 8:
                cur.left = csize
                self._state = "stored"
            else:
                raise ZipStreamError(f"member {name!r}: method {method} with flags {flags:#x} is not handled")
            return True
        cur = self._cur
        assert cur is not None
        if self._state in ("stored", "deflate"):
            if not buf:
                return False
            data = bytes(buf)
            buf.clear()
            self._data(data)
            return True
        if self._state == "descriptor":
            n = 24 if cur.zip64 else 16  # signature, CRC, compressed and uncompressed sizes
            if len(buf) < n:
                return False
            if bytes(buf[:4]) != b"PK\x07\x08":
                raise ZipStreamError(f"member {cur.name!r}: no data descriptor signature")
            if cur.zip64:
                crc, _csize, usize = struct.unpack_from("<IQQ", buf, 4)
            else:
                crc, _csize, usize = struct.unpack_from("<III", buf, 4)
            del buf[:n]
            self._finish(crc, usize)
            return True
        return False

    def _finish(self, crc: int, usize: int) -> None:
        cur = self._cur
        assert cur is not None
        if cur.crc_now != crc or cur.size_now != usize:
            raise ZipStreamError(f"member {cur.name!r}: CRC {cur.crc_now:#010x} / {cur.size_now} bytes read, "
                                 f"the zip says {crc:#010x} / {usize}")
        self.members.append(Member(cur.name, cur.crc_now, cur.size_now))
        self._cur = None
        self._state = "sig"

    def close(self) -> list[Member]:
        """The members, once the stream has ended with a central directory that lists exactly them."""
        if self._state != "central":
            raise ZipStreamError(f"the zip ended inside a member or before its directory ({self._state!r}, "
                                 f"{self.nbytes} bytes)")
        central = bytes(self._central)
        listed: list[tuple[str, int, int]] = []
        i = 0
        while central[i: i + 4] == b"PK\x01\x02":
            (_s, _vm, _vn, _fl, _me, _t, _d, crc, _cs, usize, nlen, elen, clen) = struct.unpack_from(
                "<IHHHHHHIIIHHH", central, i)
            name = central[i + 46: i + 46 + nlen].decode("utf-8", "replace")
            extra = _extras(central[i + 46 + nlen: i + 46 + nlen + elen])
            if usize == 0xFFFFFFFF and 0x0001 in extra:
                usize = struct.unpack_from("<Q", extra[0x0001], 0)[0]
            listed.append((name, crc, usize))
            i += 46 + nlen + elen + clen
        if b"PK\x05\x06" not in central[i:]:
            raise ZipStreamError("no end-of-central-directory record")
        streamed = [(m.name, m.crc32, m.size) for m in self.members]
        if listed != streamed:
            raise ZipStreamError(f"central directory {listed[:3]!r}... differs from the members streamed "
                                 f"{streamed[:3]!r}...")
        return list(self.members)


async def get_zip(port: int, path: str) -> tuple[Response, list[Member] | None, str]:
    """GET ``path`` from 127.0.0.1:``port`` on a new connection, checking the zip as it streams:
    the response, its members (None when the status is not 200 or the zip is broken) and what
    went wrong ("" when nothing did)."""
    conn = Conn("127.0.0.1", port)
    check = ZipStreamCheck()
    try:
        resp = await conn.get(path, sink=check.feed)
    finally:
        await conn.close()
    if resp.status != 200:
        return resp, None, f"HTTP {resp.status}"
    try:
        return resp, check.close(), ""
    except ValueError as exc:
        return resp, None, str(exc)
