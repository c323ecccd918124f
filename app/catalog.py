"""The service's catalog: the current snapshot of hosted cubes, kept up to date from the index.

At start-up the catalog index (``index``, default ``<work_dir>/index/catalog.sqlite``) is read: routing
columns only, whatever the archive's size. A process that writes the index (the default for a
local index) first brings it up to date with ``cube_dirs``: a listing and one ``stat`` per file,
reading only new or changed cubes (the first start reads them all). Every ``index_refresh_s``
seconds, or when a cut finds a cube gone or replaced, it does so again in a background thread; a
process that only reads an index (an S3 index shared by replicas) reloads it when its ETag
changes. Each refresh builds a new :class:`core.catalog.snapshot.Catalog` and swaps it in with one
assignment: a request uses the snapshot it started with.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import Any

from app.refresher import Refresher
from core.catalog.index import CatalogIndex, IndexDamagedError, IndexReport
from core.catalog.snapshot import Catalog, CubeRecord
from core.errors import UnavailableError
from core.product import Product
from core.storage.s3 import is_s3_uri

__all__ = ["CatalogService", "IndexUnwritableError"]

log = logging.getLogger("app.catalog")


class IndexUnwritableError(UnavailableError):
    """The catalog index cannot be written where the settings put it: names the setting."""

    def __init__(self, location: str, why: str) -> None:
        super().__init__(f"cannot write the catalog index at {location} (setting CUTOUT_INDEX, default "
                         f"<CUTOUT_WORK_DIR>/index/catalog.sqlite): {why} Set CUTOUT_INDEX to a writable path, or "
                         "CUTOUT_INDEX_WRITER=false for a process that only reads a shared index.", field="index")


class CatalogService:
    """The current catalog snapshot, its index and its refreshing.

    Parameters
    ----------
    settings : app.settings.Settings
    s3 : core.storage.s3.S3Config, optional
    """

    def __init__(self, settings: Any, s3: Any = None) -> None:
        self.cube_dirs = list(settings.cube_dirs)
        self.refresh_s = float(settings.index_refresh_s)
        self.writes = bool(settings.writes_index)
        self.index = CatalogIndex(settings.index_location, s3=s3, work_dir=settings.work_dir / "index")
        self.s3 = s3
        self.current: Catalog = Catalog([], s3=s3)
        self.last_report: IndexReport | None = None
        self.refreshes = 0
        self.built_at: float | None = None  # when the index in use was written (epoch seconds)
        self.checked_at: float | None = None  # when it was last brought up to date or reloaded
        self._refresh_lock = threading.Lock()
        self._refresher = Refresher(self.refresh, self.refresh_s, name="catalog-refresh", log=log)

    # -- keeping it current ------------------------------------------------------------------------
    def load(self) -> int:
        """Start-up: bring the index up to date (a writer) or read it, and publish the snapshot."""
        self.refresh()
        return len(self.current)

    def refresh(self) -> IndexReport | None:
        """Update the index from ``cube_dirs`` (a writer) or reload a changed index, then swap.

        The index is trusted no more than the configuration: rows naming cubes outside
        ``cube_dirs`` are ignored. A damaged index is rebuilt by a writer; a reader keeps the
        snapshot it has (empty at start-up) and tries again at the next refresh."""
        with self._refresh_lock:
            report = None
            if self.writes and self.cube_dirs:
                try:
                    report = self.index.update(self.cube_dirs)
                except UnavailableError as exc:
                    if exc.field == "index":
                        raise IndexUnwritableError(self.index.location, exc.message) from None
                    raise
                self.last_report = report
            try:
                snapshot = self.index.catalog(self.cube_dirs)
            except IndexDamagedError as exc:
                log.error("catalog index %s: %s; keeping the %d cubes known so far", self.index.location,
                          exc.message, len(self.current))
                return report
            snapshot.on_stale = self._on_stale
            reader = self.index.reader()
            self.built_at = reader.meta().get("built_at") if reader is not None else None
            self.checked_at = time.time()
            self.current = snapshot  # the swap: one assignment
            self.refreshes += 1
            return report

    def _on_stale(self, record: CubeRecord) -> None:
        log.warning("cube %s changed or vanished since it was indexed: refreshing the catalog", record.uri)
        self._refresher.wake()

    def start(self) -> None:
        """Refresh in a background thread every ``refresh_s`` seconds, or when a cube went stale."""
        self._refresher.start()

    def stop(self) -> None:
        self._refresher.stop()

    # -- the snapshot's questions (for /health, metrics and older callers) -----------------------
    def sectors(self, product: str | None = None) -> list[int]:
        return self.current.sectors(product)

    def entries(self, product: str | None = None) -> list[CubeRecord]:
        return self.current.entries(product)

    def containing(self, ra: float, dec: float, radius_deg: float = 0.0, *, product: str = Product.SPOC,
                   sectors: Iterable[int] | None = None) -> list[CubeRecord]:
        return self.current.containing(ra, dec, radius_deg, product=product, sectors=sectors)

    @property
    def skipped(self) -> list[tuple[str, str]]:
        return self.current.skipped

    def __len__(self) -> int:
        return len(self.current)

    def summary(self) -> dict[str, Any]:
        """For ``/health``: the cubes, where the index is kept (local or S3) and its age, how many
        cube locations of each kind; never a server path (answers show none)."""
        out = self.current.summary()
        built = self.built_at
        out["index"] = {
            "storage": "s3" if self.index.remote else "local",
            "built_at": None if built is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(built)),
            "age_s": None if built is None else round(max(0.0, time.time() - built), 1),
            "checked_s_ago": None if self.checked_at is None else round(time.time() - self.checked_at, 1),
        }
        remote = sum(is_s3_uri(loc) for loc in self.cube_dirs)
        out["locations"] = {"local": len(self.cube_dirs) - remote, "s3": remote}
        out["refreshes"] = self.refreshes
        if self.last_report is not None:
            out["last_update"] = self.last_report.as_dict()
        return out
