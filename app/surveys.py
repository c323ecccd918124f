"""The service's survey registry: the ``surveys`` setting and its image index, kept current.

The registry (``surveys``: survey name -> local folders and/or ``s3://`` prefixes) is trusted
configuration. It is indexed once at start-up (:meth:`SurveyService.load`, in the application's
lifespan) and again every ``index_refresh_s`` seconds or when a cut finds an indexed file gone;
a refresh re-opens only new or changed files. Each refresh builds a new
:class:`core.images.index.ImageIndex` and swaps it in with one assignment, so a request uses the
snapshot it started with and no request ever opens files to find images.

The service is :attr:`app.dependencies.Services.surveys`.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from app.refresher import Refresher
from core.images.index import ImageIndex, split_locations

__all__ = ["HAP_SURVEY", "SurveyService"]

log = logging.getLogger("app.surveys")

#: the survey Hapcut serves (Zcut serves every other one)
HAP_SURVEY = "hap"


class SurveyService:
    """The current survey index, its locations and its refreshing (as :class:`app.catalog.CatalogService`).

    Parameters
    ----------
    settings : app.settings.Settings
        ``surveys`` and ``index_refresh_s`` are read.
    s3 : core.storage.s3.S3Config, optional
        For ``s3://`` locations.
    """

    def __init__(self, settings: Any, s3: Any = None) -> None:
        self.locations: dict[str, list[str]] = {name: list(locs) for name, locs in settings.surveys.items()}
        self.refresh_s = float(settings.index_refresh_s)
        self.s3 = s3
        self.current = ImageIndex(surveys=list(self.locations))
        self.refreshes = 0
        self._refresh_lock = threading.Lock()
        self._refresher = Refresher(self.refresh, self.refresh_s, name="survey-refresh", log=log)

    # -- keeping it current ------------------------------------------------------------------------
    def load(self) -> int:
        """Start-up: index every survey; the number of images indexed."""
        if not self.locations:
            log.info("no Zcut/Hapcut surveys are served: CUTOUT_SURVEYS ('{\"name\": [\"folder or s3://prefix\"]}'; "
                     "'hap' for Hapcut) enables them")
        self.refresh()
        return len(self.current)

    def refresh(self) -> ImageIndex:
        """Re-index (unchanged files are not re-opened), then swap the snapshot in."""
        with self._refresh_lock:
            index = ImageIndex.build(self.locations, s3=self.s3, previous=self.current)
            self.current = index  # the swap: one assignment
            self.refreshes += 1
            if self.locations:
                files = sum(bool(record.entries) for record in index.files.values())
                log.info("survey index: %d images in %d files (%d files opened, %d skipped)", len(index), files,
                         index.opened, len(index.skipped))
            return index

    def file_missing(self, uri: str) -> None:
        """A cut found an indexed file gone: refresh in the background."""
        log.warning("survey image %s vanished since it was indexed: refreshing the survey index", uri)
        self._refresher.wake()

    def start(self) -> None:
        """Refresh in a background thread every ``refresh_s`` seconds, or when a file went missing."""
        if self.locations:
            self._refresher.start()

    def stop(self) -> None:
        self._refresher.stop()

    # -- questions ---------------------------------------------------------------------------------
    def roots(self, survey: str) -> tuple[list[str], list[str]]:
        """(local folders, ``s3://`` prefixes) of one survey: what its images are confined to."""
        return split_locations(self.locations.get(survey, []))

    def summary(self) -> dict[str, Any]:
        out = self.current.summary()
        out["refreshes"] = self.refreshes
        return out
