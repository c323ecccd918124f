r"""Byte sources: random access to the bytes of a local file, an ``s3://`` object or a buffer.

The engine reads only the bytes a cutout needs. :func:`open_source` gives a :class:`ByteSource`
for a local path (``os.pread`` on one descriptor) or an ``s3://bucket/key`` URI (boto3 through
:mod:`core.storage.s3`: one HEAD for size and ETag, then ranged GET requests carrying ``If-Match``);
:class:`MemorySource` serves bytes already in memory. :meth:`ByteSource.read_ranges` merges near
ranges into fewer reads and runs the rest concurrently on one process-wide, bounded pool per
backend: all the ranges of an S3 cut are in flight at once, so a cut costs one round trip plus
the transfer, not one round trip per row. Every read is counted (:class:`ReadStats`,
:data:`GLOBAL_STATS`, :data:`GLOBAL_S3_STATS`).
"""

from __future__ import annotations

import abc
import os
import re
import stat as _stat
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Self

from core.errors import CorruptFileError, ForbiddenError, InvalidInputError, NotFoundError, UnavailableError
from core.storage.s3 import S3Config, client, head, is_s3_uri, parse_s3_uri, signed_gets, translate_error

__all__ = [
    "GLOBAL_S3_STATS",
    "GLOBAL_STATS",
    "ByteSource",
    "LocalSource",
    "MemorySource",
    "ReadStats",
    "S3Source",
    "open_source",
]

KiB = 1024
MiB = 1024 * 1024

#: default gap (bytes) under which two ranges are read as one, per backend
LOCAL_COALESCE_GAP = 0
S3_COALESCE_GAP = 64 * KiB
#: largest single read that coalescing may build, per backend
LOCAL_MAX_MERGED = 64 * MiB
S3_MAX_MERGED = 16 * MiB
#: threads of the shared pool that runs concurrent local reads (page-cache copies: a few suffice)
LOCAL_IO_THREADS = 8
#: seconds of this process's work per S3 GET (boto3 signing, HTTP, parsing; GIL-bound): 900 GETs of
#: a 12,000-frame cube's window took 2.33 s where 15 waves of 50 ms round trips explain 0.75 s
#: (``bench/bench_timewindow.py``, 2 cores)
S3_REQUEST_CPU_S = 0.0018
#: the same for a GET signed by botocore and sent on urllib3 (``core.storage.signed_get``): 360 GETs
#: of 12 cuts cost this process 1.0 ms each where boto3's took 2.0 (``bench/bench_multisector.py``)
S3_SIGNED_REQUEST_CPU_S = 0.001


class ReadStats:
    """Thread-safe counters of backend reads: ``gets`` (requests or preads) and ``bytes``."""

    __slots__ = ("_lock", "bytes", "gets")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.gets = 0
        self.bytes = 0

    def add(self, gets: int, nbytes: int) -> None:
        """Count ``gets`` reads that moved ``nbytes`` bytes."""
        with self._lock:
            self.gets += gets
            self.bytes += nbytes

    def snapshot(self) -> tuple[int, int]:
        """Return ``(gets, bytes)`` read consistently."""
        with self._lock:
            return self.gets, self.bytes

    def reset(self) -> None:
        """Set both counters to zero."""
        with self._lock:
            self.gets = 0
            self.bytes = 0

    def __repr__(self) -> str:
        gets, nbytes = self.snapshot()
        return f"ReadStats(gets={gets}, bytes={nbytes})"


#: process-wide counters, incremented by every source (the service exposes them as metrics)
GLOBAL_STATS = ReadStats()
#: process-wide counters of S3 only
GLOBAL_S3_STATS = ReadStats()



# --------------------------------------------------------------------------------------------
# shared I/O pools
# --------------------------------------------------------------------------------------------

_pools: dict[Any, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()
_pool_threads = threading.local()


def _io_pool(key: Any, threads: int) -> ThreadPoolExecutor:
    """The process-wide pool for ``key`` (one per S3 configuration, one for local files): reads of
    every request share it, so the number of requests in flight stays bounded."""
    pool = _pools.get(key)
    if pool is None:
        with _pools_lock:
            pool = _pools.get(key)
            if pool is None:
                pool = _pools[key] = ThreadPoolExecutor(
                    max_workers=max(1, threads), thread_name_prefix="io", initializer=_mark_pool_thread
                )
    return pool


def _mark_pool_thread() -> None:
    _pool_threads.inside = True


def _coalesce(
    ranges: Sequence[tuple[int, int]], gap: int, max_merged: int
) -> list[tuple[int, int, list[tuple[int, int, int]]]]:
    """Group ranges into merged reads.

    Returns a list of ``(start, length, members)`` where each member is
    ``(request_index, offset_in_merged_read, length)``. Overlapping ranges are allowed.
    """
    order = sorted((off, ln, i) for i, (off, ln) in enumerate(ranges) if ln > 0)
    groups: list[tuple[int, int, list[tuple[int, int, int]]]] = []
    cur_start = cur_end = -1
    members: list[tuple[int, int, int]] = []
    for off, ln, i in order:
        end = off + ln
        if members and off <= cur_end + gap and max(end, cur_end) - cur_start <= max_merged:
            cur_end = max(cur_end, end)
        else:
            if members:
                groups.append((cur_start, cur_end - cur_start, members))
            cur_start, cur_end, members = off, end, []
        members.append((i, off - cur_start, ln))
    if members:
        groups.append((cur_start, cur_end - cur_start, members))
    return groups


class ByteSource(abc.ABC):
    """Random access to the bytes of one file or object.

    Attributes
    ----------
    uri : str
        What was opened (an absolute local path or an ``s3://`` URI).
    size : int
        Size in bytes.
    identity : tuple
        Changes when the content may have changed: ``("file", realpath, size, mtime_ns, st_dev, st_ino)``
        (a file replaced under its name is new even with the same size and mtime) or
        ``("s3", bucket, key, etag)``. Use it as a cache key.
    stats : ReadStats
        Reads done through this source.
    """

    uri: str
    size: int
    identity: tuple
    stats: ReadStats
    #: defaults for :meth:`read_ranges`
    default_coalesce_gap: int = 0
    max_merged: int = LOCAL_MAX_MERGED
    default_threads: int = 1

    # -- subclass hooks ----------------------------------------------------------------------
    @abc.abstractmethod
    def _read(self, offset: int, length: int) -> bytes:
        """Read exactly ``length`` bytes at ``offset`` (already validated); count stats."""

    def _count(self, nbytes: int, gets: int = 1) -> None:
        self.stats.add(gets, nbytes)
        GLOBAL_STATS.add(gets, nbytes)

    # -- public API --------------------------------------------------------------------------
    def _check(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0:
            raise InvalidInputError(
                f"Byte range ({offset}, {length}) must have a non-negative offset and length.", field="range"
            )
        if offset + length > self.size:
            raise CorruptFileError(
                f"{self.uri}: bytes {offset}..{offset + length} requested but the file has only "
                f"{self.size} bytes (truncated file?)."
            )

    def read_range(self, offset: int, length: int) -> bytes:
        """Return ``length`` bytes starting at ``offset``.

        Raises
        ------
        CorruptFileError
            If the range runs past the end of the file.
        NotFoundError, ForbiddenError, UnavailableError
            From the backend.
        """
        self._check(offset, length)
        if length == 0:
            return b""
        return self._read(offset, length)

    def read_ranges(
        self,
        ranges: Sequence[tuple[int, int]],
        threads: int | None = None,
        coalesce_gap: int | None = None,
        max_merged: int | None = None,
    ) -> list[bytes]:
        """Return the bytes of each ``(offset, length)`` in request order.

        Ranges whose gap is at most ``coalesce_gap`` bytes (default: 0 for local files, 64 KiB
        for S3) are read as one, up to ``max_merged`` bytes per read (64 MiB local, 16 MiB S3).
        The merged reads run concurrently on the backend's shared pool, at most ``threads`` at a
        time (default: the backend's, :attr:`default_threads`: 1 for local files, every range at
        once for S3).
        """
        gap = self.default_coalesce_gap if coalesce_gap is None else max(0, int(coalesce_gap))
        cap = self.max_merged if max_merged is None else max(1, int(max_merged))
        for off, ln in ranges:
            self._check(off, ln)
        groups = _coalesce(ranges, gap, cap)
        out: list[bytes] = [b""] * len(ranges)

        def run(group: tuple[int, int, list[tuple[int, int, int]]]) -> None:
            start, length, members = group
            data = self._read(start, length)
            if len(members) == 1 and members[0][2] == length:
                out[members[0][0]] = data
                return
            view = memoryview(data)
            for i, rel, ln in members:
                out[i] = bytes(view[rel : rel + ln])

        width = self.default_threads if threads is None else max(1, int(threads))
        if width > 1 and len(groups) > 1 and not getattr(_pool_threads, "inside", False):
            self._run_concurrently(run, groups, width)
        else:
            for g in groups:
                run(g)
        return out

    def merged_count(self, count: int, length: int, gap: int) -> int:
        """How many reads ``count`` ranges of ``length`` bytes, each ``gap`` bytes after the
        previous one, become when :meth:`read_ranges` coalesces them with this source's defaults."""
        if count <= 0:
            return 0
        if gap > self.default_coalesce_gap:
            return count
        per_read = max(1, (self.max_merged + gap) // (length + gap))
        return -(-count // per_read)

    def read_cost(self, requests: int, nbytes: int) -> float:
        """Expected seconds to read ``nbytes`` in ``requests`` ranges through :meth:`read_ranges`
        (a model for choosing between read plans, not a promise): here a local file's, a
        microsecond a call plus copies at 4 GB/s."""
        return requests * 1e-6 + nbytes / 4e9

    def _pool(self) -> ThreadPoolExecutor:
        return _io_pool("local", LOCAL_IO_THREADS)

    def _run_concurrently(self, run: Any, groups: list, width: int) -> None:
        """``run(group)`` for every group on the shared pool, at most ``width`` at a time; the first
        error is raised once every started read has ended (no read outlives the call)."""
        pool = self._pool()
        pending = list(reversed(groups))
        running: set = set()
        error: BaseException | None = None
        from concurrent.futures import FIRST_COMPLETED, wait

        while pending or running:
            while pending and len(running) < width and error is None:
                running.add(pool.submit(run, pending.pop()))
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                exc = future.exception()
                if exc is not None and error is None:
                    error = exc
            if error is not None:
                pending.clear()
        if error is not None:
            raise error

    def read_into(self, offset: int, out: memoryview) -> None:
        """Fill ``out`` (a writable buffer) with the bytes starting at ``offset``."""
        out = memoryview(out).cast("B")
        self._check(offset, out.nbytes)
        if out.nbytes:
            out[:] = self._read(offset, out.nbytes)

    def close(self) -> None:
        """Release resources (idempotent)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r}, size={self.size})"


def _preadv_full(fd: int, out: memoryview, offset: int, got: int = 0) -> int:
    """``os.preadv`` into ``out`` at ``offset`` until it is full or the file ends, ``got`` bytes
    being in place already; returns the number of bytes in ``out``."""
    n = out.nbytes
    while got < n:
        k = os.preadv(fd, [out[got:]], offset + got)
        if k <= 0:
            break
        got += k
    return got


class LocalSource(ByteSource):
    """A local file read with ``os.pread`` on one descriptor (thread-safe: no shared offset)."""

    default_coalesce_gap = LOCAL_COALESCE_GAP
    max_merged = LOCAL_MAX_MERGED

    _fd: int | None = None

    def __init__(self, path: str | os.PathLike) -> None:
        self._lock = threading.Lock()
        path = os.fspath(path)
        if "\x00" in path:
            raise InvalidInputError("Path contains a NUL byte.", field="path")
        real = os.path.realpath(path)
        try:
            # O_NONBLOCK: opening a FIFO named like a data file returns at once (and is refused
            # below) instead of waiting for a writer; it changes nothing for a regular file
            fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise NotFoundError(f"File not found: {path}") from None
        except NotADirectoryError:
            raise NotFoundError(f"File not found: {path}") from None
        except PermissionError:
            raise ForbiddenError(f"Permission denied: {path}") from None
        except IsADirectoryError:
            raise NotFoundError(f"Not a file (a directory): {path}") from None
        except OSError as exc:
            raise UnavailableError(f"Cannot open {path}: {exc.strerror or exc}") from None
        st = os.fstat(fd)

        if not _stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise NotFoundError(f"Not a regular file: {path}")
        self._fd: int | None = fd
        self.uri = real
        self.path = real
        self.size = st.st_size
        self.identity = ("file", real, st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino)
        self.stats = ReadStats()

    def _fileno(self) -> int:
        fd = self._fd
        if fd is None:
            raise ValueError(f"I/O on a closed source: {self.uri}")
        return fd

    def _read(self, offset: int, length: int) -> bytes:
        fd = self._fileno()
        try:
            data = os.pread(fd, length, offset)
            if len(data) < length:  # rare short read: loop
                parts = [data]
                got = len(data)
                while got < length:
                    more = os.pread(fd, length - got, offset + got)
                    if not more:
                        break
                    parts.append(more)
                    got += len(more)
                data = b"".join(parts)
        except OSError as exc:
            raise UnavailableError(f"Cannot read {self.uri}: {exc.strerror or exc}") from None
        self._count(len(data))
        if len(data) != length:
            raise CorruptFileError(
                f"{self.uri}: file shrank while reading (got {len(data)} of {length} bytes)."
            )
        return data

    def read_into(self, offset: int, out: memoryview) -> None:
        """Fill ``out`` with ``os.preadv`` (no intermediate copy)."""
        out = memoryview(out).cast("B")
        self._check(offset, out.nbytes)
        fd = self._fileno()
        try:
            got = _preadv_full(fd, out, offset)
        except OSError as exc:
            raise UnavailableError(f"Cannot read {self.uri}: {exc.strerror or exc}") from None
        self._count(got)
        if got != out.nbytes:
            raise self._shrank(got, out.nbytes)

    def _shrank(self, got: int, n: int) -> CorruptFileError:
        return CorruptFileError(f"{self.uri}: file shrank while reading (got {got} of {n} bytes).")

    def read_rows_into(self, offset: int, stride: int, count: int, out: Any) -> None:
        """Fill ``out`` with ``count`` equal ranges, the first at ``offset``, each ``stride`` bytes
        after the previous (a cutout's rows): one ``os.preadv`` per range, no copies, the
        statistics counted once (a small cutout's row costs ~1.5 us)."""
        out = memoryview(out).cast("B")
        n = out.nbytes // max(1, count)
        if count < 1 or n * count != out.nbytes or stride < n:
            raise ValueError(f"{count} rows of stride {stride} do not fit a buffer of {out.nbytes} bytes")
        last = offset + (count - 1) * stride
        self._check(offset, n)  # offsets only grow: the first and the last bound them all
        self._check(last, n)
        fd = self._fileno()
        preadv = os.preadv
        pos = 0
        try:
            for off in range(offset, last + 1, stride):
                got = preadv(fd, [out[pos : pos + n]], off)
                if got != n:  # rare short read: finish the range, or fail
                    got = _preadv_full(fd, out[pos : pos + n], off, max(got, 0))
                    if got != n:
                        raise self._shrank(got, n)
                pos += n
        except OSError as exc:
            raise UnavailableError(f"Cannot read {self.uri}: {exc.strerror or exc}") from None
        self._count(out.nbytes, count)

    def close(self) -> None:
        with self._lock:
            fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __del__(self, _close=os.close) -> None:  # pragma: no cover - best effort
        # Bound default: at interpreter exit module globals may already be None. A failed
        # __init__ leaves no _fd attribute.
        fd = self.__dict__.get("_fd")
        if fd is not None:
            self._fd = None
            try:
                _close(fd)
            except OSError:
                pass




# -- S3 ---------------------------------------------------------------------------------------


class S3Source(ByteSource):
    """An S3 object read with ranged GETs through a shared boto3 client.

    One HEAD (cached ``HEAD_TTL`` s per URI) gives size and ETag; every GET carries
    ``If-Match: <etag>`` so that a replaced object is never mixed with cached headers. ``known``
    (size, ETag), e.g. from the catalog index, spares the HEAD: a GET then fails (412) if the
    object is no longer that one.
    """

    default_coalesce_gap = S3_COALESCE_GAP
    max_merged = S3_MAX_MERGED

    @property
    def default_threads(self) -> int:  # type: ignore[override]
        """Every range at once, up to the configuration's connection pool."""
        return max(1, int(self.config.max_connections))

    def read_cost(self, requests: int, nbytes: int) -> float:
        """Expected seconds to read ``nbytes`` in ``requests`` ranged GETs, all in flight at once up
        to ``max_connections``: a round trip (``latency_s``) per wave of requests, this process's
        own work per request (:data:`S3_SIGNED_REQUEST_CPU_S` with signed GETs, else
        :data:`S3_REQUEST_CPU_S`) and the transfer at ``bandwidth_mb_s`` (see
        :class:`~core.storage.s3.S3Config`)."""
        cfg = self.config
        waves = -(-max(0, requests) // max(1, int(cfg.max_connections)))
        per_request = S3_SIGNED_REQUEST_CPU_S if self._signed is not None else S3_REQUEST_CPU_S
        return (waves * float(cfg.latency_s) + requests * per_request
                + nbytes / (float(cfg.bandwidth_mb_s) * 1e6))

    def _pool(self) -> ThreadPoolExecutor:
        return _io_pool(("s3", self.config.key()), self.config.max_connections)

    def __init__(self, uri: str, s3: S3Config | None = None, *, known: tuple[int, str] | None = None) -> None:
        bucket, key = parse_s3_uri(uri)
        self.config = s3 if s3 is not None else S3Config.from_env()
        self.bucket = bucket
        self.key = key
        self.uri = f"s3://{bucket}/{key}"
        self._client = client(self.config)
        self._signed = signed_gets(self.config)  # None: every GET through boto3
        self.size, self.etag = (int(known[0]), str(known[1])) if known is not None else head(self.config, bucket, key)
        self.identity = ("s3", bucket, key, self.etag)
        self.stats = ReadStats()

    def _get(self, offset: int, length: int) -> bytes:
        kw: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": self.key,
            "Range": f"bytes={offset}-{offset + length - 1}",
        }
        if self.etag:
            kw["IfMatch"] = f'"{self.etag}"'
        fast = self._signed
        data = fast.get(self.bucket, self.key, offset, length, self.etag) if fast is not None else None
        if data is not None:
            GLOBAL_S3_STATS.add(1, len(data))
            self._count(len(data))
            return data
        # anything but the bytes asked for (or no signed GETs): boto3's request, with its retries
        attempts = max(1, int(self.config.max_attempts))
        for attempt in range(attempts):
            try:
                # botocore retries connection errors, timeouts, 5xx and throttling (bounded)
                resp = self._client.get_object(**kw)
            except Exception as exc:  # noqa: BLE001 - translated
                raise translate_error(exc, self.uri) from None
            body = resp["Body"]
            try:
                data = body.read()
            except Exception as exc:  # noqa: BLE001 - the connection failed while streaming the body
                err = translate_error(exc, self.uri)
                if not isinstance(err, UnavailableError) or attempt == attempts - 1:
                    raise err from None
                time.sleep(min(1.0, 0.05 * 2**attempt))  # botocore does not retry these: we do
                continue
            finally:
                body.close()
            GLOBAL_S3_STATS.add(1, len(data))
            self._count(len(data))
            if len(data) == length:
                return data
        raise UnavailableError(
            f"{self.uri}: short reads from the S3 endpoint ({len(data)} of {length} bytes)."
        )

    def _read(self, offset: int, length: int) -> bytes:
        return self._get(offset, length)



class MemorySource(ByteSource):
    """Bytes already in memory (a TPF just assembled), behind the same interface as a file.

    ``view(offset, n)`` gives a read-only view without copying, which :class:`core.storage.range_file.RangeFile`
    hands to astropy for big reads.
    """

    def __init__(self, data: bytes | bytearray | memoryview, *, uri: str = "<memory>") -> None:
        self._data = memoryview(data).cast("B")
        self.uri = uri
        self.size = self._data.nbytes
        self.identity = ("memory", id(data), self.size)
        self.stats = ReadStats()

    def _read(self, offset: int, length: int) -> bytes:
        return self._data[offset : offset + length].tobytes()

    def view(self, offset: int, length: int) -> memoryview:
        """A read-only view of ``length`` bytes at ``offset`` (clipped to the end), no copy."""
        return self._data[offset : offset + length].toreadonly()

    def read_into(self, offset: int, out: memoryview) -> None:
        out = memoryview(out).cast("B")
        self._check(offset, out.nbytes)
        out[:] = self._data[offset : offset + out.nbytes]


def open_source(uri: str | os.PathLike, *, s3: S3Config | None = None) -> ByteSource:
    """Open a local path or an ``s3://bucket/key`` URI for ranged reads.

    Parameters
    ----------
    uri : str or os.PathLike
        Local path (plain or ``os.PathLike``) or ``s3://bucket/key``.
    s3 : S3Config, optional
        S3 settings; default :meth:`S3Config.from_env`.

    Raises
    ------
    NotFoundError
        The file, bucket or key does not exist.
    ForbiddenError
        Access denied.
    UnavailableError
        The S3 endpoint cannot be reached (after bounded retries).
    InvalidInputError
        Another URI scheme (``http://``, ``file://``...).
    """
    if isinstance(uri, os.PathLike):
        return LocalSource(uri)
    if not isinstance(uri, str):
        raise InvalidInputError(f"Expected a path or s3:// URI, got {type(uri).__name__}.", field="uri")
    if is_s3_uri(uri):
        return S3Source(uri, s3)
    if re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*://", uri):
        raise InvalidInputError(f"Unsupported URI scheme in {uri!r}: use a local path or s3://.", field="uri")
    return LocalSource(uri)


