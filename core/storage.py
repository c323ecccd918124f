"""Bytes from local files and ``s3://`` objects, read by byte range.

The engine reads only the bytes a cutout needs. :func:`open_source` gives a :class:`ByteSource`
for a local path (``os.pread`` on one descriptor) or an ``s3://bucket/key`` URI (boto3, one HEAD for
size and ETag, then ``GET`` with a ``Range`` header). :meth:`ByteSource.read_ranges` merges near
ranges into fewer reads and can run them on threads. :class:`RangeFile` turns a source into a
seekable file object so that astropy can open a FITS file lazily from S3; :func:`open_fits` does
that for either kind of URI. :func:`confine` checks a user-given path or URI against the allowed
data roots before anything is opened.

Departs from astrocut 1.4.0, which reads S3 cubes through fsspec/s3fs: we use boto3 directly with
bounded timeouts and retries, and count every GET (``stats``, :data:`GLOBAL_STATS`).
"""

from __future__ import annotations

import abc
import dataclasses
import io
import os
import re
import stat as _stat
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self

from core.errors import (
    CorruptFileError,
    CutoutError,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    UnavailableError,
)

if TYPE_CHECKING:  # pragma: no cover
    from astropy.io.fits import HDUList

__all__ = [
    "GLOBAL_STATS",
    "ByteSource",
    "LocalSource",
    "RangeFile",
    "ReadStats",
    "S3Config",
    "S3Source",
    "atomic_output",
    "clear_caches",
    "confine",
    "is_s3_uri",
    "open_fits",
    "open_source",
    "parse_s3_uri",
]



@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary name beside ``path``; rename it to ``path`` when the block succeeds.

    On any exception the temporary file is removed, so a reader never sees a partial file under
    the final name. The parent directory is created if needed.
    """
    import tempfile

    final = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(final))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(final)}.", suffix=".part", dir=directory)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


KiB = 1024
MiB = 1024 * 1024

#: default gap (bytes) under which two ranges are read as one, per backend
LOCAL_COALESCE_GAP = 0
S3_COALESCE_GAP = 64 * KiB
#: largest single read that coalescing may build, per backend
LOCAL_MAX_MERGED = 64 * MiB
S3_MAX_MERGED = 16 * MiB
#: how long the HEAD of an S3 object (size, ETag) is trusted, seconds
HEAD_TTL = 30.0

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


# --------------------------------------------------------------------------------------------
# configuration and counters
# --------------------------------------------------------------------------------------------


def _env_bool(name: str) -> bool | None:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return None
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise InvalidInputError(f"Environment variable {name} must be true or false, not {value!r}.", field=name)


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        return float(value)
    except ValueError:
        raise InvalidInputError(
            f"Environment variable {name} must be a number, not {value!r}.", field=name
        ) from None


@dataclass
class S3Config:
    """How to reach S3 (AWS or any S3-compatible store).

    Parameters
    ----------
    endpoint_url : str, optional
        Custom endpoint (e.g. ``http://127.0.0.1:9000``); None means AWS.
    region : str, optional
        Region; None means ``AWS_REGION``/``AWS_DEFAULT_REGION`` or ``us-east-1`` (where the public
        TESS bucket ``stpubdata`` lives).
    anonymous : bool, optional
        True: unsigned requests (public buckets). False: signed. None: unsigned unless credentials
        are configured (keys here or in the environment, ``AWS_PROFILE``, or a shared credentials
        file).
    access_key_id, secret_access_key : str, optional
        Explicit credentials.
    connect_timeout, read_timeout : float
        Seconds for each connection attempt and each socket read.
    max_attempts : int
        Total attempts per request (botocore "standard" retry mode, exponential backoff).
    max_pool_connections : int
        HTTP connection pool size of the shared client.
    """

    endpoint_url: str | None = None
    region: str | None = None
    anonymous: bool | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    connect_timeout: float = 5
    read_timeout: float = 30
    max_attempts: int = 4
    max_pool_connections: int = 32

    @classmethod
    def from_env(cls) -> S3Config:
        """Build a config from the environment.

        Reads ``AWS_ENDPOINT_URL_S3`` (else ``AWS_ENDPOINT_URL``), ``AWS_REGION`` /
        ``AWS_DEFAULT_REGION``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, and
        ``CUTOUT_S3_ANONYMOUS`` (``true``/``false``; unset means anonymous unless credentials are
        configured), ``CUTOUT_S3_CONNECT_TIMEOUT``, ``CUTOUT_S3_READ_TIMEOUT``,
        ``CUTOUT_S3_MAX_ATTEMPTS``.
        """
        env = os.environ
        attempts = env.get("CUTOUT_S3_MAX_ATTEMPTS")
        try:
            max_attempts = int(attempts) if attempts else 4
        except ValueError:
            raise InvalidInputError(
                f"Environment variable CUTOUT_S3_MAX_ATTEMPTS must be an integer, not {attempts!r}.",
                field="CUTOUT_S3_MAX_ATTEMPTS",
            ) from None
        return cls(
            endpoint_url=env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None,
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
            anonymous=_env_bool("CUTOUT_S3_ANONYMOUS"),
            access_key_id=env.get("AWS_ACCESS_KEY_ID") or None,
            secret_access_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
            connect_timeout=_env_float("CUTOUT_S3_CONNECT_TIMEOUT", 5),
            read_timeout=_env_float("CUTOUT_S3_READ_TIMEOUT", 30),
            max_attempts=max_attempts,
        )

    def is_anonymous(self) -> bool:
        """Whether requests go unsigned (resolves ``anonymous=None``)."""
        if self.anonymous is not None:
            return self.anonymous
        if self.access_key_id:
            return False
        env = os.environ
        if env.get("AWS_ACCESS_KEY_ID") or env.get("AWS_PROFILE"):
            return False
        creds = env.get("AWS_SHARED_CREDENTIALS_FILE") or os.path.expanduser("~/.aws/credentials")
        return not os.path.isfile(creds)

    def key(self) -> tuple:
        """A hashable key identifying this configuration (for client caches)."""
        return dataclasses.astuple(self) + (self.is_anonymous(),)


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
# sources
# --------------------------------------------------------------------------------------------


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
        threads: int = 1,
        coalesce_gap: int | None = None,
        max_merged: int | None = None,
    ) -> list[bytes]:
        """Return the bytes of each ``(offset, length)`` in request order.

        Ranges whose gap is at most ``coalesce_gap`` bytes (default: 0 for local files, 64 KiB
        for S3) are read as one, up to ``max_merged`` bytes per read (64 MiB local, 16 MiB S3).
        With ``threads > 1`` the merged reads run concurrently.
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

        if threads > 1 and len(groups) > 1:
            pool = ThreadPoolExecutor(max_workers=min(threads, len(groups)))
            try:
                futures = [pool.submit(run, g) for g in groups]
                for f in futures:
                    f.result()  # re-raises the first error...
            finally:
                pool.shutdown(wait=True, cancel_futures=True)  # ...and drops the reads not yet started
        else:
            for g in groups:
                run(g)
        return out

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
            fd = os.open(real, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
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

_S3_RE = re.compile(r"^s3://([^/]+)/(.+)$", re.IGNORECASE | re.DOTALL)


def is_s3_uri(uri: object) -> bool:
    """Whether ``uri`` is a string starting with ``s3://``."""
    return isinstance(uri, str) and uri[:5].lower() == "s3://"


def parse_s3_uri(uri: str, *, field: str = "uri") -> tuple[str, str]:
    """Split ``s3://bucket/key`` into ``(bucket, key)``; raise InvalidInputError otherwise."""
    m = _S3_RE.match(uri)
    if not m or not m.group(2):
        raise InvalidInputError(f"Not an s3://bucket/key URI: {uri!r}", field=field)
    return m.group(1), m.group(2)


_clients: dict[tuple, Any] = {}
_clients_lock = threading.Lock()
_heads: dict[tuple, tuple[float, int, str]] = {}
_heads_lock = threading.Lock()


def _client(cfg: S3Config) -> Any:
    """The process-wide boto3 S3 client for ``cfg`` (created once; boto3 clients are thread-safe)."""
    key = cfg.key()
    client = _clients.get(key)
    if client is not None:
        return client
    with _clients_lock:
        client = _clients.get(key)
        if client is not None:
            return client
        import boto3
        import botocore
        from botocore.config import Config

        kwargs: dict[str, Any] = {
            "connect_timeout": cfg.connect_timeout,
            "read_timeout": cfg.read_timeout,
            # total_max_attempts counts the first try (botocore's max_attempts would count retries only)
            "retries": {"total_max_attempts": max(1, int(cfg.max_attempts)), "mode": "standard"},
            "max_pool_connections": cfg.max_pool_connections,
        }
        if cfg.endpoint_url:
            kwargs["s3"] = {"addressing_style": "path"}
        anonymous = cfg.is_anonymous()
        if anonymous:
            kwargs["signature_version"] = botocore.UNSIGNED
        session = boto3.session.Session()
        region = (
            cfg.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        )
        ckw: dict[str, Any] = {"region_name": region, "config": Config(**kwargs)}
        if cfg.endpoint_url:
            ckw["endpoint_url"] = cfg.endpoint_url
        if not anonymous and cfg.access_key_id:
            ckw["aws_access_key_id"] = cfg.access_key_id
            ckw["aws_secret_access_key"] = cfg.secret_access_key
        client = session.client("s3", **ckw)
        _clients[key] = client
        return client


def clear_caches(*, clients: bool = True) -> None:
    """Forget cached HEAD results and, unless ``clients=False``, the shared S3 clients."""
    if clients:
        with _clients_lock:
            _clients.clear()
    with _heads_lock:
        _heads.clear()


def _translate(exc: BaseException, uri: str) -> CutoutError:
    """Map a botocore/network exception to an engine error."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        HTTPClientError,
        NoCredentialsError,
        PartialCredentialsError,
        ResponseStreamingError,
    )
    from botocore.exceptions import (
        ConnectionError as BotoConnectionError,
    )

    if isinstance(exc, CutoutError):
        return exc
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {}) or {}
        code = str(err.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("404", "NoSuchKey", "NoSuchBucket", "NotFound") or status == 404:
            return NotFoundError(f"S3 object not found: {uri}")
        if code in ("403", "AccessDenied", "Forbidden", "AllAccessDisabled") or status in (401, 403):
            return ForbiddenError(f"Access to {uri} is denied ({code or status}).")
        if code in ("416", "InvalidRange") or status == 416:
            return CorruptFileError(f"{uri}: requested bytes lie past the end of the object.")
        if code in ("412", "PreconditionFailed") or status == 412:
            return UnavailableError(f"{uri} changed while being read; retry.")
        if (status is not None and status >= 500) or code in (
            "SlowDown",
            "ServiceUnavailable",
            "InternalError",
        ):
            return UnavailableError(f"S3 endpoint failed for {uri} ({code or status}).")
        return UnavailableError(f"S3 request for {uri} failed ({code or status}).")
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return ForbiddenError(f"No usable S3 credentials to read {uri}.")
    if isinstance(exc, (BotoConnectionError, HTTPClientError, ResponseStreamingError)):
        return UnavailableError(
            f"S3 endpoint unreachable or failed while reading {uri}: {type(exc).__name__}."
        )
    if isinstance(exc, BotoCoreError):
        return UnavailableError(f"S3 error while reading {uri}: {type(exc).__name__}: {exc}")
    if isinstance(exc, (OSError, TimeoutError)):
        return UnavailableError(f"Network error while reading {uri}: {type(exc).__name__}: {exc}")
    return UnavailableError(f"S3 error while reading {uri}: {type(exc).__name__}: {exc}")


def _head(client: Any, cfg: S3Config, bucket: str, key: str, uri: str) -> tuple[int, str]:
    """Size and ETag of an object, cached for :data:`HEAD_TTL` seconds per (config, URI)."""
    ck = (cfg.key(), bucket, key)
    now = time.monotonic()
    with _heads_lock:
        hit = _heads.get(ck)
    if hit is not None and hit[0] > now:
        return hit[1], hit[2]
    try:
        resp = client.head_object(Bucket=bucket, Key=key)
    except Exception as exc:  # noqa: BLE001 - translated
        raise _translate(exc, uri) from None
    size = int(resp["ContentLength"])
    etag = str(resp.get("ETag", "")).strip('"')
    with _heads_lock:
        if len(_heads) > 4096:
            _heads.clear()
        _heads[ck] = (now + HEAD_TTL, size, etag)
    return size, etag


def list_s3(prefix_uri: str, *, s3: S3Config | None = None) -> list[str]:
    """Every object URI under ``s3://bucket/prefix`` (the prefix taken as a folder), in key order.

    Raises the same engine errors as reads: ``NotFoundError`` for a missing bucket,
    ``ForbiddenError`` when listing is denied, ``UnavailableError`` when the endpoint fails.
    """
    m = re.match(r"^s3://([^/]+)/?(.*)$", prefix_uri, re.IGNORECASE | re.DOTALL)
    if not m:
        raise InvalidInputError(f"Not an s3://bucket/prefix URI: {prefix_uri!r}", field="uri")
    bucket, prefix = m.group(1), (m.group(2) or "").strip("/")
    prefix = f"{prefix}/" if prefix else ""
    client = _client(s3 or S3Config.from_env())
    found: list[str] = []
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            found.extend(f"s3://{bucket}/{item['Key']}" for item in page.get("Contents", []))
    except Exception as exc:  # noqa: BLE001 - translated
        raise _translate(exc, prefix_uri) from None
    return found


class S3Source(ByteSource):
    """An S3 object read with ranged GETs through a shared boto3 client.

    One HEAD (cached ``HEAD_TTL`` s per URI) gives size and ETag; every GET carries
    ``If-Match: <etag>`` so that a replaced object is never mixed with cached headers.
    """

    default_coalesce_gap = S3_COALESCE_GAP
    max_merged = S3_MAX_MERGED

    def __init__(self, uri: str, s3: S3Config | None = None) -> None:
        bucket, key = parse_s3_uri(uri)
        self.config = s3 if s3 is not None else S3Config.from_env()
        self.bucket = bucket
        self.key = key
        self.uri = f"s3://{bucket}/{key}"
        self._client = _client(self.config)
        self.size, self.etag = _head(self._client, self.config, bucket, key, self.uri)
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
        attempts = max(1, int(self.config.max_attempts))
        for attempt in range(attempts):
            try:
                # botocore retries connection errors, timeouts, 5xx and throttling (bounded)
                resp = self._client.get_object(**kw)
            except Exception as exc:  # noqa: BLE001 - translated
                raise _translate(exc, self.uri) from None
            body = resp["Body"]
            try:
                data = body.read()
            except Exception as exc:  # noqa: BLE001 - the connection failed while streaming the body
                err = _translate(exc, self.uri)
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


# --------------------------------------------------------------------------------------------
# file object for astropy
# --------------------------------------------------------------------------------------------


class RangeFile(io.RawIOBase):
    """Read-only, seekable file object over a :class:`ByteSource` with a small LRU block cache.

    Reads are served from ``block_size`` blocks (default 64 KiB, ``cache_bytes`` 4 MiB in all);
    missing blocks of one read are fetched with one :meth:`ByteSource.read_ranges` call (so a run
    of missing blocks is one GET). Reads larger than the cache bypass it and fetch exactly the
    bytes asked. Suits ``astropy.io.fits.open(RangeFile(src), lazy_load_hdus=True)`` followed
    by ``hdu.section[...]``.
    """

    mode = "rb"

    def __init__(
        self,
        source: ByteSource,
        *,
        block_size: int = 64 * KiB,
        cache_bytes: int = 4 * MiB,
        close_source: bool = False,
    ) -> None:
        super().__init__()
        self.source = source
        self.name = source.uri
        self._pos = 0
        self._bs = int(block_size)
        self._max_blocks = max(2, int(cache_bytes) // self._bs)
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self._close_source = close_source

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def tell(self) -> int:
        self._checkClosed()
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._checkClosed()
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self.source.size + offset
        else:
            raise ValueError(f"invalid whence ({whence})")
        if pos < 0:
            raise OSError(22, "negative seek position")
        self._pos = pos
        return pos

    def _blocks(self, b0: int, b1: int) -> list[bytes]:
        """Blocks ``b0..b1`` inclusive, from cache or fetched together."""
        bs, size = self._bs, self.source.size
        with self._lock:
            have = {b: self._cache.get(b) for b in range(b0, b1 + 1)}
            for b, v in have.items():
                if v is not None:
                    self._cache.move_to_end(b)
        missing = [b for b, v in have.items() if v is None]
        if missing:
            ranges = [(b * bs, min(bs, size - b * bs)) for b in missing]
            datas = self.source.read_ranges(ranges, coalesce_gap=0)
            with self._lock:
                for b, d in zip(missing, datas):
                    have[b] = d
                    self._cache[b] = d
                    self._cache.move_to_end(b)
                while len(self._cache) > self._max_blocks:
                    self._cache.popitem(last=False)
        return [have[b] for b in range(b0, b1 + 1)]  # type: ignore[misc]

    def readinto(self, buffer: Any) -> int:
        self._checkClosed()
        out = memoryview(buffer).cast("B")
        size = self.source.size
        start = self._pos
        n = min(out.nbytes, max(0, size - start))
        if n <= 0:
            return 0
        bs = self._bs
        b0, b1 = start // bs, (start + n - 1) // bs
        if b1 - b0 + 1 > self._max_blocks // 2:
            self.source.read_into(start, out[:n])
        else:
            pos = 0
            for b, blk in zip(range(b0, b1 + 1), self._blocks(b0, b1)):
                lo = max(start, b * bs) - b * bs
                hi = min(start + n, b * bs + len(blk)) - b * bs
                out[pos : pos + hi - lo] = blk[lo:hi]
                pos += hi - lo
        self._pos = start + n
        return n

    def read(self, size: int = -1) -> bytes:
        self._checkClosed()
        if size is None or size < 0:
            size = max(0, self.source.size - self._pos)
        buf = bytearray(min(size, max(0, self.source.size - self._pos)))
        n = self.readinto(buf)
        return bytes(buf[:n])

    def readall(self) -> bytes:
        return self.read(-1)

    def close(self) -> None:
        if not self.closed and self._close_source:
            self.source.close()
        with self._lock:
            self._cache.clear()
        super().close()


# --------------------------------------------------------------------------------------------
# FITS
# --------------------------------------------------------------------------------------------


def open_fits(uri: str | os.PathLike, *, s3: S3Config | None = None) -> HDUList:
    """Open a FITS file lazily from a local path or ``s3://`` URI.

    Local files use ``memmap=True, lazy_load_hdus=True``; S3 objects go through a
    :class:`RangeFile`, so only header blocks and the bytes of any ``.section`` slice are fetched.

    Raises
    ------
    NotFoundError, ForbiddenError, UnavailableError
        From :func:`open_source`.
    CorruptFileError
        The file is not a readable FITS file.
    """
    from astropy.io import fits

    src = open_source(uri, s3=s3)
    try:
        if isinstance(src, LocalSource):
            # check the FITS signature through the open descriptor, then let astropy memmap it
            head = src.read_range(0, min(src.size, 80))
            src.close()
            if not head.startswith(b"SIMPLE  ="):
                raise CorruptFileError(f"Not a FITS file: {src.uri}")
            hdul = fits.open(src.path, memmap=True, lazy_load_hdus=True, mode="readonly")
        else:
            head = src.read_range(0, min(src.size, 80))
            if not head.startswith(b"SIMPLE  ="):
                raise CorruptFileError(f"Not a FITS file: {src.uri}")
            hdul = fits.open(RangeFile(src, close_source=True), lazy_load_hdus=True, mode="readonly")
        # make sure the primary header parses now (lazy_load_hdus defers the rest)
        hdul[0]
        return hdul
    except CutoutError:
        src.close()
        raise
    except FileNotFoundError:
        src.close()
        raise NotFoundError(f"File not found: {uri}") from None
    except (OSError, ValueError, IndexError, TypeError) as exc:
        src.close()
        raise CorruptFileError(f"Cannot read FITS file {uri}: {exc}") from None


# --------------------------------------------------------------------------------------------
# confinement of user input
# --------------------------------------------------------------------------------------------

_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")


def _within(path: str, root: str) -> bool:
    try:
        return os.path.commonpath([path, root]) == root
    except ValueError:
        return False


def confine(
    user_input: str | os.PathLike,
    roots: Sequence[str | os.PathLike],
    s3_prefixes: Sequence[str] = (),
    *,
    field: str = "path",
) -> str:
    """Resolve a user-given path or URI inside the allowed data locations, opening nothing.

    Parameters
    ----------
    user_input : str
        A local path (absolute, or relative to a root) or an ``s3://bucket/key`` URI.
    roots : sequence of str
        Allowed local directories. A relative input resolves against the first root under which
        it exists (else against the first root); it is refused if it leads out of any root.
    s3_prefixes : sequence of str
        Allowed ``s3://bucket/prefix`` locations; a prefix matches whole path segments
        (``s3://b/tess`` allows ``s3://b/tess/x`` but not ``s3://b/tessx``).
    field : str
        Name of the input, reported in the error.

    Returns
    -------
    str
        The real absolute path (symlinks resolved), or the normalized ``s3://`` URI.

    Raises
    ------
    ForbiddenError
        NUL bytes, ``..`` or symlinks leading out of every root, absolute paths outside the roots,
        ``file://``, ``http(s)://`` or any scheme other than ``s3://``, S3 URIs outside the prefixes.
    InvalidInputError
        Empty or non-string input.
    """
    if isinstance(user_input, os.PathLike):
        user_input = os.fspath(user_input)
    if not isinstance(user_input, str):
        raise InvalidInputError(
            f"Expected a path or s3:// URI, got {type(user_input).__name__}.", field=field
        )
    text = user_input.strip()
    if not text:
        raise InvalidInputError("Empty path.", field=field)
    if "\x00" in text:
        raise ForbiddenError("Path contains a NUL byte.", field=field)

    m = _SCHEME_RE.match(text)
    if m and len(m.group(1)) > 1:  # one letter would be a Windows drive; we refuse those below anyway
        scheme = m.group(1).lower()
        if scheme != "s3" or not text[3:5] == "//":
            raise ForbiddenError(
                f"Scheme {scheme!r} is not allowed; use a data path or s3:// URI.", field=field
            )
        return _confine_s3(text, s3_prefixes, field)
    if m:
        raise ForbiddenError(f"Path {user_input!r} is not allowed.", field=field)

    real_roots = [os.path.realpath(os.fspath(r)) for r in roots]
    if not real_roots:
        raise ForbiddenError("Local paths are not allowed here.", field=field)
    if os.path.isabs(text):
        real = os.path.realpath(text)
        if any(_within(real, r) for r in real_roots):
            return real
        raise ForbiddenError(f"Path {user_input!r} is outside the allowed data directories.", field=field)
    first_inside: str | None = None
    for r in real_roots:
        real = os.path.realpath(os.path.join(r, text))
        if not _within(real, r):  # '..' or a symlink leads out: refuse outright
            raise ForbiddenError(
                f"Path {user_input!r} leads outside the allowed data directories.", field=field
            )
        if os.path.lexists(real):
            return real
        if first_inside is None:
            first_inside = real
    assert first_inside is not None
    return first_inside


def _confine_s3(text: str, prefixes: Sequence[str], field: str) -> str:
    try:
        bucket, key = parse_s3_uri("s3://" + text[5:], field=field)
    except InvalidInputError:
        raise ForbiddenError(f"Not an s3://bucket/key URI: {text!r}", field=field) from None
    segments = key.split("/")
    if any(s in ("..", ".") for s in segments) or "\\" in key:
        raise ForbiddenError(f"S3 key {key!r} contains '.' or '..' segments.", field=field)
    uri = f"s3://{bucket}/{key}"
    for p in prefixes:
        if not is_s3_uri(p):
            continue
        rest = p[5:]
        pb, _, pk = rest.partition("/")
        if pb != bucket:
            continue
        if not pk or pk.endswith("/") and key.startswith(pk) or key == pk or key.startswith(pk + "/"):
            return uri
    raise ForbiddenError(f"S3 location {uri} is outside the allowed prefixes.", field=field)
