"""The application: wires settings, catalog, worker pool, error handlers and routers together.

``create_app(settings)`` is all there is; ``app`` is an instance built from the environment (for
``uvicorn app.main:app``). Metrics and access logging (:mod:`app.observability`) and the browser
page with offline docs (:mod:`app.web`) are installed by their own ``install(app)``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import FastAPI

from app import observability, web
from app.catalog import Catalog
from app.dependencies import EphemerisResolver, Services, no_resolver
from app.errors import BodySizeLimitMiddleware, RequestIdMiddleware, install_error_handlers
from app.routers import images, system, tesscut
from app.settings import Settings
from app.workers import WorkerPool
from core import __version__

__all__ = ["TESSCUT_PREFIXES", "create_app"]

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
) -> FastAPI:
    """Build the service.

    Parameters
    ----------
    settings : Settings, optional
        Default: read from the environment.
    resolver : callable, optional
        Moving-target ephemeris resolver ``(obj_id, obj_type) -> {"time", "ra", "dec"}``; the
        default answers 503 (this server makes no outside calls).
    install : callable, optional
        An extra ``install(app)`` hook (middleware, routes), called once the app is built.
    """
    settings = settings or Settings()
    logging.getLogger("app").setLevel(settings.log_level.upper())
    s3 = settings.s3_config() if (settings.s3_endpoint_url or any(
        d.lower().startswith("s3://") for d in [*settings.cube_dirs, *settings.image_roots]
    ) or settings.s3_access_key_id or settings.s3_anonymous) else None
    services = Services(
        settings=settings,
        catalog=Catalog(settings.cube_dirs, s3=s3),
        pool=WorkerPool(settings.workers, settings.queue_size, settings.request_timeout_s),
        s3=s3,
        resolver=resolver or no_resolver,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        log.info("settings: %s", json.dumps(settings.masked(), default=str))
        settings.work_dir.mkdir(parents=True, exist_ok=True)
        await anyio.to_thread.run_sync(services.catalog.reindex)
        yield

    app = FastAPI(
        title="TESS cutout service",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.services = services
    install_error_handlers(app)

    for prefix in TESSCUT_PREFIXES:
        app.include_router(tesscut.router, prefix=prefix)
        app.include_router(images.router, prefix=prefix)
    app.include_router(system.router)
    app.include_router(system.router, prefix=TESSCUT_PREFIXES[0], include_in_schema=False)

    # Access log + /metrics, then the browser page at / and the offline /docs and /redoc.
    observability.install(app)
    web.install(app)
    if install is not None:
        install(app)

    # Outermost last: request ids wrap everything, so every answer (413 included) carries one.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_upload_bytes)
    app.add_middleware(RequestIdMiddleware)
    return app


def __getattr__(name: str) -> Any:
    # ``app.main:app`` for uvicorn, built lazily so importing this module reads no environment.
    if name == "app":
        value = create_app()
        globals()["app"] = value
        return value
    raise AttributeError(name)
