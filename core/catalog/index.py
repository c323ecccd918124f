"""The persistent catalog index: what every hosted cube is, read once, kept in one SQLite file.

One row per cube holds its :class:`~core.cubes.info.CubeInfo` (location, identity, product, sector,
camera, CCD, shape, data and table offsets, per-frame column offsets, primary header and reference
row, footprint, time span). Start-up reads the routing columns of every row (a few hundred bytes
each, no header) and nothing else; a cube's headers are read from the index when it is first cut.

:meth:`CatalogIndex.update` is incremental: it lists the cube locations (a directory walk with one
``stat`` per file; an S3 listing, which gives each object's size and ETag for free), keeps the rows
whose identity is unchanged (size + mtime + inode locally, ETag on S3) and reads only new or
changed cubes (:func:`core.cubes.info.read_cube_info`: a few small reads each). The new index is
written to a temporary file and renamed over the old one (or uploaded as one S3 object, so
replicas can share it); a reader keeps the version it opened until it opens the next.

The index lives at a local path or at ``s3://bucket/key``; an S3 index is downloaded to a local
work directory (once per ETag) and read there.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.catalog.scan import list_cubes, read_many, under, within_locations
from core.catalog.snapshot import Catalog, CubeRecord
from core.cubes.info import CubeInfo
from core.errors import NotFoundError, UnavailableError
from core.storage.atomic import atomic_output
from core.storage.s3 import S3Config, is_s3_uri, parse_s3_uri

__all__ = ["CatalogIndex", "IndexDamagedError", "IndexReport"]

log = logging.getLogger("core.catalog.index")

#: bumped when the table layout changes: an index of another version is rebuilt
SCHEMA_VERSION = 2
_FIELDS = list(CubeInfo.__dataclass_fields__)
_ROUTING = ["uri", "identity", "product", "sector", "camera", "ccd", "nframes", "nx", "ny", "footprint",
            "center", "reach_deg", "footprint_tol_deg", "tstart", "tstop"]


@dataclass
class IndexReport:
    """What an update did: cubes indexed, reused, read (new or changed), removed, failed."""

    cubes: int = 0
    reused: int = 0
    read: int = 0
    removed: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    #: (location, why) of each location that could not be listed; the index keeps what it knew of it
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    gets: int = 0
    bytes_read: int = 0
    changed: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"cubes": self.cubes, "reused": self.reused, "read": self.read, "removed": self.removed,
                "failed": len(self.failed), "unreadable": len(self.unreadable),
                "seconds": round(self.seconds, 3), "gets": self.gets,
                "bytes_read": self.bytes_read, "changed": self.changed}


# --------------------------------------------------------------------------------------------------
# the SQLite file
# --------------------------------------------------------------------------------------------------

_COLUMN_TYPES = {
    "uri": "TEXT PRIMARY KEY", "identity": "TEXT", "product": "TEXT", "primary_header": "BLOB",
    "wcs_values": "BLOB", "columns": "TEXT", "footprint": "TEXT", "center": "TEXT", "reach_deg": "REAL",
    "footprint_tol_deg": "REAL", "tstart": "REAL", "tstop": "REAL",
}


def _write_sqlite(path: str, infos: Iterable[CubeInfo], meta: dict[str, Any]) -> None:
    con = sqlite3.connect(path)
    try:
        cols = ", ".join(f"{f} {_COLUMN_TYPES.get(f, 'INTEGER')}" for f in _FIELDS)
        con.execute(f"CREATE TABLE cubes ({cols})")
        con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        marks = ", ".join("?" for _ in _FIELDS)
        con.executemany(f"INSERT INTO cubes ({', '.join(_FIELDS)}) VALUES ({marks})",
                        ([info.to_record()[f] for f in _FIELDS] for info in infos))
        con.executemany("INSERT INTO meta VALUES (?, ?)",
                        [(k, json.dumps(v)) for k, v in {**meta, "schema": SCHEMA_VERSION}.items()])
        con.commit()
    finally:
        con.close()


def _record(v: dict[str, Any]) -> CubeRecord:
    """The routing record of one row of the ``cubes`` table."""
    return CubeRecord(
        uri=v["uri"], identity=tuple(json.loads(v["identity"])), product=v["product"].upper(),
        sector=v["sector"], camera=v["camera"], ccd=v["ccd"], nframes=v["nframes"], nx=v["nx"],
        ny=v["ny"], footprint=tuple(tuple(p) for p in json.loads(v["footprint"])),
        center=tuple(json.loads(v["center"])), reach_deg=v["reach_deg"],
        footprint_tol_deg=v["footprint_tol_deg"],
        tstart=v["tstart"] if v["tstart"] is not None else float("nan"),
        tstop=v["tstop"] if v["tstop"] is not None else float("nan"),
    )  # fmt: skip


class IndexDamagedError(UnavailableError):
    """The index file cannot be read (a damaged page, not a database at all): SQLite's own
    error, turned into the engine's. A writer rebuilds the index; a reader keeps what it had."""


class _Reader:
    """A read-only connection to one version of the index file (thread-safe through a lock)."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self._con = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True, check_same_thread=False)
        except sqlite3.Error as exc:
            raise IndexDamagedError(f"the catalog index cannot be opened ({exc}); it is being rebuilt",
                                    field="index") from None
        self._lock = threading.Lock()

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        """Rows of ``sql``; any SQLite error (a damaged page) is :class:`IndexDamagedError`."""
        with self._lock:
            try:
                return self._con.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise IndexDamagedError(f"the catalog index is damaged ({exc}); it is being rebuilt",
                                        field="index") from None

    def meta(self) -> dict[str, Any]:
        try:
            return {k: json.loads(v) for k, v in self.query("SELECT key, value FROM meta")}
        except (IndexDamagedError, ValueError):
            return {}

    def identities(self) -> dict[str, tuple]:
        return {uri: tuple(json.loads(ident)) for uri, ident in self.query("SELECT uri, identity FROM cubes")}

    def records(self) -> list[CubeRecord]:
        out = []
        for row in self.query(f"SELECT {', '.join(_ROUTING)} FROM cubes"):
            try:
                out.append(_record(dict(zip(_ROUTING, row))))
            except (TypeError, ValueError, AttributeError, ArithmeticError) as exc:
                log.warning("catalog index %s: skipping a row that is not a cube record (%s)", self.path, exc)
        return out

    def info(self, uri: str) -> CubeInfo:
        rows = self.query(f"SELECT {', '.join(_FIELDS)} FROM cubes WHERE uri = ?", (uri,))
        if not rows:
            raise NotFoundError(f"cube {os.path.basename(uri)} is not in the catalog index", field="cube_file")
        return CubeInfo.from_record(dict(zip(_FIELDS, rows[0])))

    def infos(self) -> list[CubeInfo]:
        return [CubeInfo.from_record(dict(zip(_FIELDS, row)))
                for row in self.query(f"SELECT {', '.join(_FIELDS)} FROM cubes")]

    def close(self) -> None:
        with self._lock:
            self._con.close()


class CatalogIndex:
    """The catalog index at ``location`` (a local path or ``s3://bucket/key``).

    Parameters
    ----------
    location : path or str
    s3 : core.storage.s3.S3Config, optional
        How to reach S3 (an S3 index, ``s3://`` cube locations).
    work_dir : path, optional
        Where an S3 index is downloaded (default: the system's temporary directory).
    """

    def __init__(self, location: str | os.PathLike, *, s3: S3Config | None = None,
                 work_dir: str | os.PathLike | None = None) -> None:
        self.location = os.fspath(location)
        self.s3 = s3
        self.work_dir = os.fspath(work_dir) if work_dir else os.path.join(tempfile.gettempdir(), "cutout-index")
        self._reader: _Reader | None = None
        self._reader_identity: Any = None
        self._lock = threading.Lock()

    @property
    def remote(self) -> bool:
        return is_s3_uri(self.location)

    # -- the file's own identity -------------------------------------------------------------------
    def identity(self) -> Any:
        """What changes when the index is replaced (local: inode, size, mtime; S3: ETag), or None."""
        if self.remote:
            from core.storage.s3 import head

            bucket, key = parse_s3_uri(self.location)
            try:
                return ("s3", *head(self.s3 or S3Config.from_env(), bucket, key))
            except NotFoundError:
                return None
        try:
            st = os.stat(self.location)
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def exists(self) -> bool:
        return self.identity() is not None

    def _local_copy(self, identity: Any) -> str:
        """A local file holding the index's current version (downloaded once per ETag for S3)."""
        if not self.remote:
            return self.location
        from core.storage.s3 import client, translate_error

        etag = str(identity[-1])
        os.makedirs(self.work_dir, exist_ok=True)
        local = os.path.join(self.work_dir, f"index-{re.sub(r'[^A-Za-z0-9]', '', etag)[:40]}.sqlite")
        if not os.path.exists(local):
            bucket, key = parse_s3_uri(self.location)
            with atomic_output(local, field="index") as tmp:
                try:
                    client(self.s3 or S3Config.from_env()).download_file(bucket, key, tmp)
                except Exception as exc:  # noqa: BLE001 - translated
                    raise translate_error(exc, self.location) from None
        return local

    def reader(self) -> _Reader | None:
        """A reader of the current version (reopened when the index was replaced), or None."""
        identity = self.identity()
        if identity is None:
            return None
        with self._lock:
            if self._reader is None or identity != self._reader_identity:
                try:
                    reader = _Reader(self._local_copy(identity))
                except IndexDamagedError as exc:
                    log.warning("catalog index %s: %s", self.location, exc.message)
                    return None
                meta = reader.meta()
                if meta.get("schema") != SCHEMA_VERSION:
                    reader.close()
                    why = "has another schema version" if meta else "is damaged or not an index"
                    log.warning("catalog index %s %s: it will be rebuilt (or ignored by a reader)", self.location, why)
                    return None
                self._reader, self._reader_identity = reader, identity
            return self._reader

    # -- reading -----------------------------------------------------------------------------------
    def catalog(self, locations: Sequence[str] | None = None) -> Catalog:
        """A catalog snapshot of the current version (empty when there is no index yet).

        With ``locations`` (the configured cube folders and ``s3://`` prefixes), a row naming a
        cube anywhere else is ignored and logged: whoever can write a shared index must not be
        able to point the service at other files or buckets.

        Raises
        ------
        IndexDamagedError
            The index cannot be read (a damaged page).
        """
        reader = self.reader()
        if reader is None:
            return Catalog([], s3=self.s3)
        meta = reader.meta()
        skipped = [(u, reason) for u, reason, *_ in meta.get("failed", []) if isinstance(u, str)]
        records = reader.records()
        if locations is not None:
            inside = [r for r in records if within_locations(r.uri, locations)]
            if len(inside) < len(records):
                outside = [r.uri for r in records if not within_locations(r.uri, locations)]
                log.warning("catalog index %s: ignoring %d rows outside the configured cube locations (%s%s)",
                            self.location, len(outside), ", ".join(u[:200] for u in outside[:3]),
                            " ..." if len(outside) > 3 else "")
            records = inside
        return Catalog(records, load_info=reader.info, s3=self.s3, skipped=skipped)

    # -- building ----------------------------------------------------------------------------------
    def update(self, locations: Sequence[str], *, threads: int = 8, full: bool = False,
               progress: Callable[[int, int], Any] | None = None) -> IndexReport:
        """Bring the index up to date with ``locations`` (incremental unless ``full``); the new
        version replaces the old one atomically. Returns what was done. A damaged index (a page
        SQLite cannot read) is rebuilt from the locations, with a log line."""
        if not full:
            try:
                return self._update(locations, threads=threads, full=False, progress=progress)
            except IndexDamagedError as exc:
                log.warning("catalog index %s: %s: rebuilding it from the cube locations", self.location, exc.message)
            except (ValueError, TypeError, KeyError) as exc:  # rows SQLite reads but that are not ours
                log.warning("catalog index %s holds rows it cannot use (%s: %s): rebuilding it from the cube "
                            "locations", self.location, type(exc).__name__, exc)
        return self._update(locations, threads=threads, full=True, progress=progress)

    def _update(self, locations: Sequence[str], *, threads: int, full: bool,
                progress: Callable[[int, int], Any] | None) -> IndexReport:
        from core.storage.sources import GLOBAL_STATS

        t0 = time.monotonic()
        gets0, bytes0 = GLOBAL_STATS.snapshot()
        unreadable: list[tuple[str, str]] = []
        listed = list_cubes(locations, s3=self.s3, unreadable=unreadable)
        reader = None if full else self.reader()
        old = reader.identities() if reader is not None else {}
        for uri, ident in old.items():
            # a location that could not be listed (an S3 outage, an unmounted disk) keeps the cubes
            # the index knew there: not being able to look is not finding them gone
            if uri not in listed and any(under(uri, loc) for loc, _ in unreadable):
                listed[uri] = ident
        # files that were not cubes keep failing until they change: not read again
        old_failed = {u: (reason, tuple(ident)) for u, reason, ident in
                      (reader.meta().get("failed", []) if reader is not None else [])}
        still_failed = [(u, old_failed[u][0]) for u, ident in listed.items()
                        if u in old_failed and old_failed[u][1] == ident]
        keep = sorted(u for u, ident in listed.items() if old.get(u) == ident)
        todo = sorted(u for u, ident in listed.items()
                      if old.get(u) != ident and not (u in old_failed and old_failed[u][1] == ident))
        removed = [u for u in old if u not in listed]
        report = IndexReport(reused=len(keep), removed=len(removed), failed=list(still_failed),
                             unreadable=unreadable)
        if reader is not None and not todo and not removed and len(still_failed) == len(old_failed):
            report.cubes = len(keep)
            report.seconds = time.monotonic() - t0
            return report
        fresh, failed = read_many(todo, self.s3, threads, progress)
        failed = still_failed + failed
        kept = [reader.info(u) for u in keep] if reader is not None else []
        infos = kept + fresh
        meta = {"locations": list(locations), "built_at": time.time(),
                "failed": [[u, reason, list(listed[u])] for u, reason in failed]}
        self._publish(infos, meta)
        gets1, bytes1 = GLOBAL_STATS.snapshot()
        report.cubes, report.read, report.failed = len(infos), len(fresh), failed
        report.seconds = time.monotonic() - t0
        report.gets, report.bytes_read = gets1 - gets0, bytes1 - bytes0
        report.changed = True
        log.info("catalog index %s: %d cubes (%d read, %d reused, %d removed, %d failed) in %.2f s",
                 self.location, report.cubes, report.read, report.reused, report.removed, len(failed),
                 report.seconds)
        return report

    def _publish(self, infos: Sequence[CubeInfo], meta: dict[str, Any]) -> None:
        if not self.remote:
            with atomic_output(self.location, field="index") as tmp:
                os.unlink(tmp)  # sqlite3 creates the file itself
                _write_sqlite(tmp, infos, meta)
            return
        from core.storage.s3 import clear_caches, client, translate_error

        os.makedirs(self.work_dir, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix="index-", suffix=".sqlite", dir=self.work_dir)
        os.close(fd)
        os.unlink(tmp)
        try:
            _write_sqlite(tmp, infos, meta)
            bucket, key = parse_s3_uri(self.location)
            try:
                client(self.s3 or S3Config.from_env()).upload_file(tmp, bucket, key)  # one object: atomic
            except Exception as exc:  # noqa: BLE001 - translated
                raise translate_error(exc, self.location) from None
            clear_caches(clients=False)  # the index's cached HEAD is stale now
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
