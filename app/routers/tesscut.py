"""TESScut API v0.1: ``sector``, ``astrocut``, ``ffi_wcs`` and ``moving_target/*``.

Mounted at both ``/tesscut/api/v0.1`` (where astroquery looks) and ``/api/v0.1`` (how MAST's docs
write paths). Every route answers GET (query string) and POST (form), as TESScut does; the work is
planned by :mod:`app.planning.tesscut` and :mod:`app.planning.moving` and run by
:func:`app.pipeline.serve`.

"No data" answers HTTP 200 with ``{"msg": ..., "results": []}`` rather than 404: astroquery and
lightkurve check "is this a zip?" and otherwise read ``msg``; any other body or status makes them fail.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.params.requests import (
    AstrocutParams,
    FfiWcsParams,
    MovingTargetCutParams,
    MovingTargetSectorParams,
    SectorParams,
)
from app.params.responses import ERROR_RESPONSES, FfiWcsResponse, SectorResponse, zip_or_no_data
from app.pipeline import get_and_post
from app.planning import moving, tesscut

__all__ = ["router"]

router = APIRouter(tags=["TESScut"], responses=ERROR_RESPONSES)

_ZIP = zip_or_no_data("A zip of target pixel files (streamed), or JSON `{msg, results: []}` when there is no data.")

get_and_post(router, "/sector", SectorParams, tesscut.SECTOR, name="sector",
             description="Hosted sectors/cameras/CCDs whose pixels (grown by `radius`) contain the position.",
             post_description="As GET, with a form body (what astroquery sends).",
             response_model=SectorResponse, response_model_exclude_none=True)
get_and_post(router, "/astrocut", AstrocutParams, tesscut.ASTROCUT, name="astrocut",
             description="Target pixel files around a position, one per sector/camera/CCD, streamed as a zip.",
             post_description="As GET, with a form body (what astroquery's get_cutouts sends).",
             response_class=JSONResponse, responses=_ZIP)
get_and_post(router, "/ffi_wcs", FfiWcsParams, tesscut.FFI_WCS, name="ffi_wcs",
             description="The reference WCS of a sector/camera/CCD (hosted cube, else tesswcs' fitted WCS, else 404).",
             response_model=FfiWcsResponse)
get_and_post(router, "/moving_target/sector", MovingTargetSectorParams, moving.MOVING_SECTOR, name="mt_sector",
             description="Hosted sectors whose cubes a moving target crosses (`obj_id` needs a resolver; or give "
                         "`ephemeris`).",
             response_model=SectorResponse, response_model_exclude_none=True)
get_and_post(router, "/moving_target/astrocut", MovingTargetCutParams, moving.MOVING_ASTROCUT, name="mt_astrocut",
             description="TPFs centred on a moving target's path, one per cube it crosses, in a zip.",
             response_class=JSONResponse, responses=_ZIP)
