"""What handlers get: the one :class:`Services` object kept on ``app.state`` (``ServicesDep``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from app.budget import Budget
from app.catalog import CatalogService
from app.planning.context import Context
from app.settings import Settings
from app.surveys import SurveyService
from app.workers import WorkerPool
from core.cutout_size import Limits
from core.errors import NotSupportedError

__all__ = ["EphemerisResolver", "Services", "ServicesDep", "get_services", "no_resolver"]

#: ``resolver(obj_id, obj_type) -> {"time": [...], "ra": [...], "dec": [...]}`` (TJD or ISO times)
EphemerisResolver = Callable[[str, "str | None"], dict[str, list[Any]]]


def no_resolver(obj_id: str, obj_type: str | None) -> dict[str, list[Any]]:
    """The default resolver: this server makes no calls to ephemeris services. A permanent
    condition: 422 naming ``obj_id`` (not a 503 that invites retries; not a 400, whose message
    astroquery drops on its POST paths)."""
    raise NotSupportedError(
        f"this server cannot look up {obj_id!r}: it has no ephemeris resolver; give the target's path "
        'as `ephemeris` instead (JSON {"time": [...TJD or ISO...], "ra": [...deg...], "dec": [...deg...]})',
        field="obj_id",
    )


@dataclass
class Services:
    """Settings, catalog, survey index, worker pool, budget, async jobs and pluggable parts shared by
    every handler."""

    settings: Settings
    catalog: CatalogService
    surveys: SurveyService
    pool: WorkerPool
    budget: Budget
    jobs: Any = None  # app.jobs.JobService: async jobs (imported late: it pulls in Dask's plumbing)
    s3: Any = None
    resolver: EphemerisResolver = no_resolver
    scrub_paths: Any = None  # app.errors.PathScrubber: server paths -> the user's names in messages

    def context(self) -> Context:
        """A planning context over the current catalog snapshot."""
        s = self.settings
        roots = s.image_roots
        return Context(
            catalog=self.catalog.current,
            limits=Limits(max_side=s.max_cutout_side, max_volume=s.max_cutout_volume),
            inline_tpf_bytes=s.inline_tpf_bytes,
            band_bytes=s.stream_band_bytes,
            work_dir=s.work_dir,
            read_threads=s.read_threads,
            max_input_files=s.max_input_files,
            image_roots=[r for r in roots if not r.lower().startswith("s3://")],
            image_s3_prefixes=[r for r in roots if r.lower().startswith("s3://")],
            s3=self.s3,
            resolver=self.resolver,
            surveys=self.surveys,
        )


async def get_services(request: Request) -> Services:
    """FastAPI dependency: the application's :class:`Services`.

    ``async`` on purpose: FastAPI runs a plain ``def`` dependency on its thread pool, a thread hop
    (and GIL hand-over) per request for a dictionary lookup.
    """
    return request.app.state.services


#: what a handler declares to get the :class:`Services`
ServicesDep = Annotated[Services, Depends(get_services)]
