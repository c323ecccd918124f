"""Service routes: ``/health``, ``/version`` and Prometheus ``/metrics``."""

from __future__ import annotations

import os
import platform
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from app.dependencies import ServicesDep
from app.observability import METRICS_PATH

__all__ = ["router"]

router = APIRouter(tags=["system"])


@router.get(METRICS_PATH, include_in_schema=False, summary="Prometheus metrics")
async def prometheus_metrics(request: Request) -> Response:
    """Every metric, in the Prometheus text format (:class:`app.observability.Metrics`)."""
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE_LATEST)


@router.get("/health")
async def health(services: ServicesDep) -> dict[str, Any]:
    """Liveness and a summary: the answering process, hosted cubes, worker pool load, the cutout
    budget, opened cubes."""
    from core.cubes.cache import default_cache

    return {"status": "ok", "process": os.getpid(), "catalog": services.catalog.summary(), "pool": services.pool.stats(),
            "budget": services.budget.stats(), "cube_cache": default_cache().stats()}


@router.get("/version")
async def version() -> dict[str, Any]:
    """Versions of the service and of the libraries that shape its output."""
    import astropy
    import numpy

    from core import __version__

    try:
        import astrocut

        astrocut_version = astrocut.__version__
    except ImportError:  # pragma: no cover - optional
        astrocut_version = None
    return {
        "service": __version__,
        "api": "tesscut v0.1",
        "python": platform.python_version(),
        "astropy": astropy.__version__,
        "numpy": numpy.__version__,
        "astrocut_reference": astrocut_version,
    }
