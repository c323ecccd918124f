"""Cutouts of FITS images: ``fits_cut``, ``img_cut`` and ``combine`` (astrocut's functions over HTTP).

Inputs and their checks are described in :mod:`app.planning.images`. Each request is admitted
against the server's memory budget by the largest window it may cut before any file is read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import Response

from app.dependencies import Services, get_services
from app.observability import record_cutout
from app.params import ERROR_RESPONSES, CombineParams, FitsCutParams, ImgCutParams
from app.planning import images
from app.streaming import planned, send

__all__ = ["router"]

router = APIRouter(tags=["images"], responses=ERROR_RESPONSES)
ServicesDep = Annotated[Services, Depends(get_services)]
Uploads = Annotated[list[UploadFile] | None, File(description="FITS files to cut (multipart).")]

_FITS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "One FITS file, or a zip of FITS files (single_outfile=false with several inputs).",
        "content": {
            "application/fits": {"schema": {"type": "string", "format": "binary"}},
            "application/zip": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
_IMG_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The image itself for one output (usable in <img>), else a zip of images.",
        "content": {
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
            "application/zip": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


async def _run(request: Request, services: Services, p: Any, uploads: Sequence[UploadFile],
               plan: Callable[..., Any], *args: Any, **kwargs: Any) -> Response:
    ctx = services.context()
    inputs = images.ImageInputs.check(ctx, p.images, [images.Upload(u.filename, u.file) for u in uploads])
    size = p.cutout_size()
    ticket = await services.budget.admit(images.image_memory(ctx, size, inputs.count))
    try:
        answer = await services.pool.run(planned, services.budget, plan, ctx, inputs, p.ra, p.dec, size, *args,
                                         **kwargs)
    finally:
        ticket.release()
    if answer.stats is not None:
        record_cutout(request, answer.stats)
    return await send(answer, pool=services.pool, budget=services.budget)


@router.get("/fits_cut", response_class=Response, responses=_FITS_RESPONSES)
async def fits_cut_get(request: Request, p: Annotated[FitsCutParams, Query()], services: ServicesDep) -> Response:
    """FITS cutouts of images under the image roots (astrocut's fits_cut)."""
    return await _run(request, services, p, [], images.plan_fits_cut, p.extension_value(), p.single_outfile)


@router.post("/fits_cut", response_class=Response, responses=_FITS_RESPONSES)
async def fits_cut_post(request: Request, p: Annotated[FitsCutParams, Form()], services: ServicesDep,
                        files: Uploads = None) -> Response:
    """As GET, with a form body; images may also be uploaded as `files` (multipart)."""
    return await _run(request, services, p, files or [], images.plan_fits_cut, p.extension_value(), p.single_outfile)


def _img_options(p: ImgCutParams) -> dict[str, Any]:
    return {"stretch": p.stretch, "minmax_percent": p.percent(), "minmax_value": p.values(), "invert": p.invert,
            "img_format": p.img_format, "colorize": p.colorize}


@router.get("/img_cut", response_class=Response, responses=_IMG_RESPONSES)
async def img_cut_get(request: Request, p: Annotated[ImgCutParams, Query()], services: ServicesDep) -> Response:
    """PNG/JPEG cutouts (astrocut's img_cut); one output is the image itself, usable in `<img>`."""
    return await _run(request, services, p, [], images.plan_img_cut, **_img_options(p))


@router.post("/img_cut", response_class=Response, responses=_IMG_RESPONSES)
async def img_cut_post(request: Request, p: Annotated[ImgCutParams, Form()], services: ServicesDep,
                       files: Uploads = None) -> Response:
    """As GET, with a form body; images may also be uploaded as `files` (multipart)."""
    return await _run(request, services, p, files or [], images.plan_img_cut, **_img_options(p))


@router.get("/combine", response_class=Response, responses=_FITS_RESPONSES)
async def combine_get(request: Request, p: Annotated[CombineParams, Query()], services: ServicesDep) -> Response:
    """Cut the same window from each image and combine the cutouts (NaN-aware mean) into one FITS."""
    return await _run(request, services, p, [], images.plan_combine)


@router.post("/combine", response_class=Response, responses=_FITS_RESPONSES)
async def combine_post(request: Request, p: Annotated[CombineParams, Form()], services: ServicesDep,
                       files: Uploads = None) -> Response:
    """As GET; or upload cutout FITS files as `files` to combine them as they are."""
    return await _run(request, services, p, files or [], images.plan_combine)
