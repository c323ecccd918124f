"""The process-wide cache of opened cubes, bounded in bytes.

Opening a cube costs a few small reads (:func:`core.cubes.info.read_cube_info`), or none when the
catalog index supplies its :class:`~core.cubes.info.CubeInfo`; its per-frame columns are read on
its first cut. :class:`CubeCache` keeps opened cubes by file identity (local: real path, size,
mtime, device and inode; S3: ETag and connection settings) in an LRU bounded by the bytes they hold
(:attr:`core.cubes.cube.Cube.nbytes`; default 512 MB) and, to bound open file descriptors, by count. A
changed file is never served from stale state: a local path seen before costs one ``os.stat``,
which must match what that path opened last time; S3 objects are re-checked by HEAD (cached a few
seconds) and every GET carries ``If-Match``. Evicted cubes are not closed (a cut in another thread
may still use one); their descriptors close when the last user drops them.

The first open of an S3 cube the index knows costs one round trip: its table (the per-frame
columns a TPF copies, at the offset the index recorded) is read beside the HEAD that checks the
object is still the one indexed, instead of after it. :func:`open_many` opens the cubes a request
needs concurrently, on a small shared pool (each open mostly waits on storage).

astrocut 1.4.0 re-opens the cube and parses its whole table on every cut.
"""

from __future__ import annotations

import os
import resource
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from core.cubes.cube import Cube
from core.cubes.info import CubeInfo, read_cube_info
from core.errors import NotFoundError

__all__ = ["CACHE_STATS", "OPEN_THREADS", "CubeCache", "clear_cache", "configure", "default_cache", "open_cube",
           "open_many"]

T = TypeVar("T")

#: default bound of the bytes opened cubes hold
DEFAULT_MAX_BYTES = 512 * 1024 * 1024
#: counters for tests and metrics: cubes opened ("parses") and cache hits
CACHE_STATS = {"parses": 0, "hits": 0}
#: a hit re-checks the byte bound every this many calls (a miss always does)
_CHECK_EVERY = 256
#: cubes :func:`open_many` opens at once, all callers together (an open mostly waits on storage)
OPEN_THREADS = 16
#: tables read beside a first open's HEAD at once, all callers together
_TABLE_THREADS = 16


def _default_max_open() -> int:
    try:
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ValueError, OSError):  # pragma: no cover
        soft = 1024
    if soft == resource.RLIM_INFINITY:
        soft = 4096
    return max(16, min(2048, soft // 2))


def _local_alias(uri: str) -> tuple | None:
    """``(uri, size, mtime_ns, st_dev, st_ino)`` of a local path (symlinks followed), or None
    (an S3 URI, or anything the full open must judge)."""
    if "://" in uri:
        return None
    try:
        st = os.stat(uri)
    except (OSError, ValueError):
        return None
    return (uri, st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino)


class CubeCache:
    """Opened cubes, by identity, bounded in bytes (``max_bytes``) and in count (``max_open``)."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES, max_open: int | None = None) -> None:
        self.max_bytes = int(max_bytes)
        self.max_open = int(max_open) if max_open is not None else _default_max_open()
        self._cubes: OrderedDict[Any, Cube] = OrderedDict()
        self._aliases: OrderedDict[tuple, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._calls = 0
        self.evictions = 0

    # -- opening ---------------------------------------------------------------------------------
    def open(self, uri: str | os.PathLike, *, s3: Any = None, info: CubeInfo | None = None) -> Cube:
        """The cube at ``uri`` (a local path or ``s3://`` URI), from the cache or opened now.

        ``info``, from the catalog index, spares reading the headers when the file is still the
        one indexed (same identity); otherwise the file's own headers are read.

        Raises
        ------
        NotFoundError
            The file or object does not exist.
        CorruptFileError
            It is not a cube, lacks the needed table columns or is truncated.
        InvalidInputError
            ``uri`` is not a path or an ``s3://`` URI.
        """
        from core.errors import InvalidInputError

        if not isinstance(uri, (str, os.PathLike)):
            raise InvalidInputError(f"cube_file must be a path or s3:// URI, not {type(uri).__name__}",
                                    field="cube_file")
        uri = os.fspath(uri)
        alias = _local_alias(uri) if s3 is None else None
        if alias is not None:
            with self._lock:
                key = self._aliases.get(alias)
                cube = None if key is None else self._cubes.get(key)
                if cube is not None:
                    self._cubes.move_to_end(key)
                    self._aliases.move_to_end(alias)
                    CACHE_STATS["hits"] += 1
                    self._calls += 1
                    check = self._calls % _CHECK_EVERY == 0
            if cube is not None:
                if check:
                    self._evict()
                return cube
        table = self._read_table_ahead(uri, s3, info)
        source = self._source(uri, s3)
        config = getattr(source, "config", None)
        # S3: also key on the connection settings, so a cube opened through one endpoint/credentials
        # is never served through another's client (same bucket/key/ETag on two endpoints).
        key = tuple(source.identity) if config is None else (*source.identity, config.key())
        with self._lock:
            cube = self._cubes.get(key)
            if cube is not None:
                self._cubes.move_to_end(key)
                CACHE_STATS["hits"] += 1
        if cube is None:
            try:
                if info is None or tuple(info.identity) != tuple(source.identity):
                    info = read_cube_info(source, uri)
                elif info.uri != uri:
                    info = _with_uri(info, uri)
                cube = Cube(info, source)
                if table is not None and tuple(info.identity) == table[0]:
                    cube.use_table(table[1].result())
            except BaseException:
                source.close()
                raise
            with self._lock:
                existing = self._cubes.get(key)
                if existing is not None:  # another thread opened it meanwhile: keep one
                    cube, duplicate = existing, cube
                else:
                    duplicate = None
                    self._cubes[key] = cube
                    CACHE_STATS["parses"] += 1
                self._cubes.move_to_end(key)
            if duplicate is not None:
                duplicate.source.close()
            self._evict()
        else:
            source.close()  # the cached cube keeps its own source open
        if alias is not None and tuple(source.identity)[2:] == alias[1:]:
            # the file stat'ed is the one opened: the next call with this path may skip the open
            with self._lock:
                self._aliases[alias] = key
                while len(self._aliases) > 4 * self.max_open:
                    self._aliases.popitem(last=False)
        return cube

    def _read_table_ahead(self, uri: str, s3: Any, info: CubeInfo | None) -> tuple[tuple, Future] | None:
        """For an S3 cube the index knows and the cache does not hold: its table's rows, being read
        (``If-Match`` the indexed ETag) while the caller HEADs the object; None otherwise."""
        identity = tuple(info.identity) if info is not None else ()
        if s3 is None or len(identity) != 4 or identity[0] != "s3" or info.table_bytes <= 0:
            return None
        with self._lock:
            if (*identity, s3.key()) in self._cubes:
                return None  # opened already: the HEAD alone decides
        from core.storage.sources import S3Source

        try:
            probe = S3Source(uri, s3, known=(info.size, identity[3]))
        except Exception:  # noqa: BLE001 - the ordinary open says what is wrong
            return None

        def read() -> bytes:
            try:
                return probe.read_range(info.table_data_offset, info.table_bytes)
            finally:
                probe.close()

        return identity, _table_pool().submit(read)

    @staticmethod
    def _source(uri: str, s3: Any) -> Any:
        from core.storage.sources import open_source

        try:
            return open_source(uri, s3=s3)
        except NotFoundError as exc:
            raise NotFoundError(f"cube {os.path.basename(uri)} does not exist ({exc.message})",
                                field="cube_file") from None
        except FileNotFoundError:
            raise NotFoundError(f"cube {os.path.basename(uri)} does not exist", field="cube_file") from None

    # -- bounds ----------------------------------------------------------------------------------
    def _evict(self) -> None:
        """Drop the least recently used cubes until the bounds hold (the newest always stays)."""
        with self._lock:
            total = sum(c.nbytes for c in self._cubes.values())
            while len(self._cubes) > 1 and (total > self.max_bytes or len(self._cubes) > self.max_open):
                _key, cube = self._cubes.popitem(last=False)
                total -= cube.nbytes
                self.evictions += 1
            if len(self._aliases) > len(self._cubes) * 4:
                live = set(self._cubes)
                for alias in [a for a, k in self._aliases.items() if k not in live]:
                    del self._aliases[alias]

    def invalidate(self, uri: str) -> None:
        """Forget every cached cube opened from ``uri`` (it changed under us)."""
        uri = os.fspath(uri)
        with self._lock:
            for key in [k for k, c in self._cubes.items() if c.uri == uri or (
                    getattr(c.source, "path", None) == os.path.realpath(uri) if "://" not in uri else False)]:
                del self._cubes[key]
            for alias in [a for a in self._aliases if a[0] == uri]:
                del self._aliases[alias]

    def clear(self) -> None:
        """Forget every cached cube."""
        with self._lock:
            self._cubes.clear()
            self._aliases.clear()

    def stats(self) -> dict[str, int]:
        """Cubes held, bytes they hold, the bounds and counters (for /health and metrics)."""
        with self._lock:
            cubes = list(self._cubes.values())
        return {
            "cubes": len(cubes),
            "bytes": sum(c.nbytes for c in cubes),
            "max_bytes": self.max_bytes,
            "max_open": self.max_open,
            "opens": CACHE_STATS["parses"],
            "hits": CACHE_STATS["hits"],
            "evictions": self.evictions,
        }

    def __len__(self) -> int:
        return len(self._cubes)


def _with_uri(info: CubeInfo, uri: str) -> CubeInfo:
    import dataclasses

    return dataclasses.replace(info, uri=uri)


_default: CubeCache | None = None
_default_lock = threading.Lock()


def default_cache() -> CubeCache:
    """The process-wide cache :func:`open_cube` uses."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = CubeCache()
    return _default


def configure(max_bytes: int | None = None, max_open: int | None = None) -> CubeCache:
    """Set the process-wide cache's bounds (the service does, from its settings); returns it."""
    cache = default_cache()
    if max_bytes is not None:
        cache.max_bytes = int(max_bytes)
    if max_open is not None:
        cache.max_open = int(max_open)
    cache._evict()
    return cache


_pools: dict[str, ThreadPoolExecutor] = {}
_pool_threads = threading.local()


def _shared_pool(name: str, threads: int) -> ThreadPoolExecutor:
    pool = _pools.get(name)
    if pool is None:
        with _default_lock:
            pool = _pools.get(name)
            if pool is None:
                pool = _pools[name] = ThreadPoolExecutor(threads, thread_name_prefix=name,
                                                         initializer=_mark_pool_thread)
    return pool


def _mark_pool_thread() -> None:
    _pool_threads.inside = True


def _table_pool() -> ThreadPoolExecutor:
    return _shared_pool("cube-table", _TABLE_THREADS)


def open_many(openers: Sequence[Callable[[], T]]) -> list[T | BaseException]:
    """Call every ``opener`` (e.g. ``lambda: catalog.open(record)``) concurrently on a shared pool of
    :data:`OPEN_THREADS` threads; their results, or the exceptions they raised, in order. One
    opener, or a call from inside that pool, runs on this thread."""
    if len(openers) <= 1 or getattr(_pool_threads, "inside", False):
        return [_outcome(fn) for fn in openers]
    pool = _shared_pool("cube-open", OPEN_THREADS)
    futures = [pool.submit(_outcome, fn) for fn in openers]
    return [f.result() for f in futures]


def _outcome(fn: Callable[[], T]) -> T | BaseException:
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - handed to the caller, in order
        return exc


def open_cube(uri: Any, *, s3: Any = None, info: CubeInfo | None = None) -> Cube:
    """Open (or take from the process-wide cache) the cube at ``uri``."""
    return default_cache().open(uri, s3=s3, info=info)


def clear_cache() -> None:
    """Forget every cached cube (tests, or after replacing files in place)."""
    default_cache().clear()
