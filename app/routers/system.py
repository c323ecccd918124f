"""Service routes: ``/health`` and ``/version``."""

from __future__ import annotations

import os
import platform
from typing import Annotated, Any

from fastapi import APIRouter, Depends

from app.dependencies import Services, get_services

__all__ = ["router"]

router = APIRouter(tags=["system"])


@router.get("/health")
async def health(services: Annotated[Services, Depends(get_services)]) -> dict[str, Any]:
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
