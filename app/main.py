"""The application: wires settings, catalog, worker pool, budget, error handlers and routers together.

``create_app(settings)`` builds the service; ``app``, FastAPI's usual module-level name, is the
service built from the environment's settings (``uvicorn app.main:app``, as does
``uvicorn --factory app.main:create_app``). ``app`` is made on first use, not at import: building
reads the environment, sets the process's allocator threshold and the cube cache's size, and starts
nothing a test or tool importing :func:`create_app` wants. Metrics and access logging
(:mod:`app.observability`), the browser page with offline docs (:mod:`app.routers.web`) and the middleware
(:mod:`app.middleware`) are installed here.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import FastAPI

from app import observability
from app.budget import Budget, SharedLedger
from app.catalog import CatalogService
from app.client_limit import ClientLimitMiddleware
from app.dependencies import EphemerisResolver, Services, no_resolver
from app.errors import PathScrubber, install_error_handlers
from app.heap import set_mmap_threshold
from app.jobs import JobService
from app.middleware import BodySizeLimitMiddleware, HeadMiddleware, RequestIdMiddleware
from app.pipeline import MAX_FORM_BODY_BYTES
from app.routers import images, jobs, lightcurve, preview, soda, system, tesscut, web, zcut
from app.settings import Settings
from app.surveys import SurveyService
from app.workers import WorkerPool
from core import __version__

__all__ = ["TESSCUT_PREFIXES", "build_services", "create_app"]  # and app (module __getattr__)

log = logging.getLogger("app")

#: where the TESScut router is mounted: astroquery's path, and the one MAST's docs write
TESSCUT_PREFIXES = ("/tesscut/api/v0.1", "/api/v0.1")

DESCRIPTION = """A self-hostable, TESScut API v0.1 compatible cutout service.

Clients of MAST's TESScut (astroquery's `Tesscut`, lightkurve's `search_tesscut().download()`, curl)
work by changing only their base URL. Cutout routes answer HTTP 200 with JSON
`{"msg": ..., "results": []}` when there is no data, as TESScut clients expect; every error has the
shape `{"error": {status, code, field, message, request_id}, "msg", "detail"}`.
"""


def create_app(
    settings: Settings | None = None,
    *,
    resolver: EphemerisResolver | None = None,
    install: Callable[[FastAPI], Any] | None = None,
    ledger: SharedLedger | None = None,
) -> FastAPI:
    """Build the service.

    Parameters
    ----------
    settings : Settings, optional
        Default: read from the environment.
    resolver : callable, optional
        Moving-target ephemeris resolver ``(obj_id, obj_type) -> {"time", "ra", "dec"}``; the
        default answers 400 asking for ``ephemeris`` (this server makes no outside calls).
    install : callable, optional
        An extra ``install(app)`` hook (middleware, routes), called once the app is built.
    ledger : SharedLedger, optional
        The budget ledger shared by the processes of one server (:class:`app.server.Supervisor`).
    """
    settings = settings or Settings()
    services = build_services(settings, resolver, ledger)
    # FastAPI's own /docs and /redoc load their assets from a CDN: app.routers.web serves them offline
    app = FastAPI(title="TESS cutout service", version=__version__, description=DESCRIPTION,
                  lifespan=_lifespan(services), docs_url=None, redoc_url=None)
    app.state.services = services
    app.state.scrub_paths = services.scrub_paths
    install_error_handlers(app)
    _include_routers(app)
    _add_middleware(app, settings, install)
    return app


def build_services(settings: Settings, resolver: EphemerisResolver | None = None,
                   ledger: SharedLedger | None = None) -> Services:
    """Everything the routes share, made from the settings (nothing started yet)."""
    from core.cubes.cache import configure

    logging.getLogger("app").setLevel(settings.log_level.upper())
    set_mmap_threshold(settings.mmap_threshold_bytes)
    s3 = settings.s3_config() if settings.uses_s3() else None
    configure(max_bytes=settings.cube_cache_bytes)
    scrub = PathScrubber([*settings.cube_dirs, *settings.image_roots, *settings.survey_locations(),
                          str(settings.work_dir)])
    catalog = CatalogService(settings, s3=s3)
    return Services(
        settings=settings,
        catalog=catalog,
        surveys=SurveyService(settings, s3=s3),
        pool=WorkerPool(settings.workers, settings.queue_size, settings.request_timeout_s,
                        member_threads=settings.member_threads, zip_concurrency=settings.zip_concurrency,
                        zip_readahead_bytes=settings.zip_readahead_bytes),
        budget=Budget(settings.memory_budget_bytes, settings.disk_budget_bytes, settings.budget_queue_size,
                      settings.request_timeout_s, ledger=ledger),
        jobs=JobService(settings, lambda: catalog.current, s3, scrub),
        s3=s3,
        resolver=resolver or no_resolver,
        scrub_paths=scrub,
    )


def _lifespan(services: Services) -> Callable[[FastAPI], Any]:
    """Start-up (settings logged, spools of dead processes removed, catalog and surveys loaded,
    background refreshes and the job runner started) and shut-down, in reverse."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from core.tpf.stream import remove_stale_spools

        settings = services.settings
        log.info("settings: %s", json.dumps(settings.masked(), default=str))
        settings.work_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_spools(settings.work_dir)
        await anyio.to_thread.run_sync(services.catalog.load)
        await anyio.to_thread.run_sync(services.surveys.load)
        services.catalog.start()
        services.surveys.start()
        services.jobs.start()
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(services.jobs.stop)
            services.surveys.stop()
            services.catalog.stop()

    return lifespan


def _include_routers(app: FastAPI) -> None:
    for prefix in TESSCUT_PREFIXES:
        app.include_router(tesscut.router, prefix=prefix)
        app.include_router(images.router, prefix=prefix)
        app.include_router(lightcurve.router, prefix=prefix)
        app.include_router(jobs.router, prefix=prefix)
    app.include_router(zcut.router)  # its routes carry astroquery's /zcut/api/v0.1 and /hapcut/api/v0.1
    app.include_router(soda.router)  # IVOA SODA 1.0 sync, VOSI and DataLink under /soda
    app.include_router(system.router)
    app.include_router(system.router, prefix=TESSCUT_PREFIXES[0], include_in_schema=False)
    app.include_router(preview.router)
    app.include_router(web.router)
    web.mount(app)


def _add_middleware(app: FastAPI, settings: Settings, install: Callable[[FastAPI], Any] | None) -> None:
    # Innermost first: HEAD is answered inside the access log (which then sees a complete answer)
    app.add_middleware(HeadMiddleware)
    if settings.max_requests_per_client:  # inside the access log: a refusal is logged and counted
        app.add_middleware(ClientLimitMiddleware, limit=settings.max_requests_per_client)
    observability.install(app)
    if install is not None:
        install(app)
    if settings.cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST", "HEAD"],
                           allow_headers=["*"], expose_headers=["Content-Disposition", "X-Request-ID"])
    # Outermost last: request ids wrap everything, so every answer (413 included) carries one.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_upload_bytes,
                       max_form_bytes=min(settings.max_upload_bytes, MAX_FORM_BODY_BYTES))
    app.add_middleware(RequestIdMiddleware)


def __getattr__(name: str) -> Any:
    """``app``: the service built from the environment (:class:`Settings`), made once, on first use."""
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    built = globals().get("_app")
    if built is None:
        built = globals()["_app"] = create_app()
    return built
