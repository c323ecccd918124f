"""TESScut API v0.1: ``sector``, ``astrocut``, ``ffi_wcs`` and ``moving_target/*``.

Mounted at both ``/tesscut/api/v0.1`` (where astroquery looks) and ``/api/v0.1`` (how MAST's docs
write paths). Every route answers GET (query string) and POST (form), as TESScut does. The work
is planned by :mod:`app.planning.tesscut` and :mod:`app.planning.moving`; these handlers parse,
plan on the worker pool and send.

"No data" answers HTTP 200 with ``{"msg": ..., "results": []}`` rather than 404: astroquery and
lightkurve check "is this a zip?" and otherwise read ``msg``; any other body or status makes them fail.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import JSONResponse

from app.dependencies import Services, get_services
from app.observability import record_cutout
from app.params import (
    ERROR_RESPONSES,
    AstrocutParams,
    FfiWcsParams,
    FfiWcsResponse,
    MovingTargetCutParams,
    MovingTargetSectorParams,
    NoDataResponse,
    SectorParams,
    SectorResponse,
)
from app.planning import moving, tesscut
from app.streaming import planned, send

__all__ = ["router"]

router = APIRouter(tags=["TESScut"], responses=ERROR_RESPONSES)

ServicesDep = Annotated[Services, Depends(get_services)]

_ZIP_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A zip of target pixel files (streamed), or JSON `{msg, results: []}` when "
        "there is no data.",
        "content": {
            "application/zip": {"schema": {"type": "string", "format": "binary"}},
            "application/json": {"schema": NoDataResponse.model_json_schema()},
        },
    }
}


async def _answer(request: Request, services: Services, answer: Any, ctx: Any) -> Any:
    if getattr(answer, "stats", None) is not None:
        record_cutout(request, answer.stats)
    hosted = ctx.catalog.sectors(getattr(answer, "product", "SPOC"))
    return await send(answer, pool=services.pool, budget=services.budget, hosted=hosted)


# ------------------------------------------------------------------------------------------
# sector
# ------------------------------------------------------------------------------------------


async def _sector(services: Services, p: SectorParams) -> Any:
    ctx = services.context()
    results = await services.pool.run(tesscut.plan_sector, ctx, p.ra, p.dec, p.radius_deg(), p.product)
    if not results:
        return {"results": [], "msg": "The position is on no hosted cube."}
    return {"results": results}


@router.get("/sector", response_model=SectorResponse, response_model_exclude_none=True)
async def sector_get(p: Annotated[SectorParams, Query()], services: ServicesDep) -> Any:
    """Hosted sectors/cameras/CCDs whose pixels (grown by `radius`) contain the position."""
    return await _sector(services, p)


@router.post("/sector", response_model=SectorResponse, response_model_exclude_none=True)
async def sector_post(p: Annotated[SectorParams, Form()], services: ServicesDep) -> Any:
    """As GET, with a form body (what astroquery sends)."""
    return await _sector(services, p)


# ------------------------------------------------------------------------------------------
# astrocut
# ------------------------------------------------------------------------------------------


async def _astrocut(request: Request, services: Services, p: AstrocutParams) -> Any:
    ctx = services.context()
    answer = await services.pool.run(planned, services.budget, tesscut.plan_astrocut, ctx, p.ra, p.dec,
                                     p.cutout_size(), p.product, p.sectors(), p.size_label(), p.time_window())
    return await _answer(request, services, answer, ctx)


@router.get("/astrocut", response_class=JSONResponse, responses=_ZIP_RESPONSES)
async def astrocut_get(request: Request, p: Annotated[AstrocutParams, Query()], services: ServicesDep) -> Any:
    """Target pixel files around a position, one per sector/camera/CCD, streamed as a zip."""
    return await _astrocut(request, services, p)


@router.post("/astrocut", response_class=JSONResponse, responses=_ZIP_RESPONSES)
async def astrocut_post(request: Request, p: Annotated[AstrocutParams, Form()], services: ServicesDep) -> Any:
    """As GET, with a form body (what astroquery's get_cutouts sends)."""
    return await _astrocut(request, services, p)


# ------------------------------------------------------------------------------------------
# ffi_wcs
# ------------------------------------------------------------------------------------------


async def _ffi_wcs(services: Services, p: FfiWcsParams) -> Any:
    return await services.pool.run(tesscut.plan_ffi_wcs, services.context(), p.sector, p.camera, p.ccd, p.product)


@router.get("/ffi_wcs", response_model=FfiWcsResponse)
async def ffi_wcs_get(p: Annotated[FfiWcsParams, Query()], services: ServicesDep) -> Any:
    """The reference WCS of a sector/camera/CCD (hosted cube, else tesswcs' fitted WCS, else 404)."""
    return await _ffi_wcs(services, p)


@router.post("/ffi_wcs", response_model=FfiWcsResponse)
async def ffi_wcs_post(p: Annotated[FfiWcsParams, Form()], services: ServicesDep) -> Any:
    """As GET, with a form body."""
    return await _ffi_wcs(services, p)


# ------------------------------------------------------------------------------------------
# moving targets
# ------------------------------------------------------------------------------------------


async def _mt_sector(services: Services, p: MovingTargetSectorParams) -> Any:
    results = await services.pool.run(moving.plan_moving_sector, services.context(), p.obj_id, p.obj_type,
                                      p.ephemeris_dict(), p.product)
    if not results:
        return {"results": [], "msg": "The path crosses no hosted cube."}
    return {"results": results}


@router.get("/moving_target/sector", response_model=SectorResponse, response_model_exclude_none=True)
async def mt_sector_get(p: Annotated[MovingTargetSectorParams, Query()], services: ServicesDep) -> Any:
    """Hosted sectors whose cubes a moving target crosses (`obj_id` needs a resolver; or give
    `ephemeris`)."""
    return await _mt_sector(services, p)


@router.post("/moving_target/sector", response_model=SectorResponse, response_model_exclude_none=True)
async def mt_sector_post(p: Annotated[MovingTargetSectorParams, Form()], services: ServicesDep) -> Any:
    """As GET, with a form body."""
    return await _mt_sector(services, p)


async def _mt_astrocut(request: Request, services: Services, p: MovingTargetCutParams) -> Any:
    ctx = services.context()
    # the footprint TPFs are cut in memory while planning: admitted first, at the in-memory bound
    ticket = await services.budget.admit(2 * ctx.inline_tpf_bytes)
    try:
        answer = await services.pool.run(planned, services.budget, moving.plan_moving_astrocut, ctx, p.obj_id,
                                         p.obj_type, p.ephemeris_dict(), p.cutout_size(), p.product, p.sectors(),
                                         p.size_label(), p.time_window())
    finally:
        ticket.release()
    return await _answer(request, services, answer, ctx)


@router.get("/moving_target/astrocut", response_class=JSONResponse, responses=_ZIP_RESPONSES)
async def mt_astrocut_get(request: Request, p: Annotated[MovingTargetCutParams, Query()],
                          services: ServicesDep) -> Any:
    """TPFs centred on a moving target's path, one per cube it crosses, in a zip."""
    return await _mt_astrocut(request, services, p)


@router.post("/moving_target/astrocut", response_class=JSONResponse, responses=_ZIP_RESPONSES)
async def mt_astrocut_post(request: Request, p: Annotated[MovingTargetCutParams, Form()],
                           services: ServicesDep) -> Any:
    """As GET, with a form body."""
    return await _mt_astrocut(request, services, p)
