"""MAST's Zcut and Hapcut API v0.1, where astroquery's ``Zcut`` and ``Hapcut`` look for them.

astroquery appends ``/zcut/api/v0.1/`` and ``/hapcut/api/v0.1/`` to its MAST base URL, so the
routes carry those prefixes themselves (the router is included without one):

- ``/zcut/api/v0.1/survey`` (GET, POST form): ``{"surveys": [...]}``, the surveys with an image
  at the position.
- ``/zcut/api/v0.1/astrocut`` (GET for ``download_cutouts``, POST form for ``get_cutouts``): a
  zip of FITS (one per survey) or of JPEG/PNG images (one per survey image).
- ``/hapcut/api/v0.1/astrocut`` (GET for ``download_cutouts``, POST JSON for ``get_cutouts``):
  a zip of FITS, one per image of the ``hap`` survey.

Images are found in the survey index (:mod:`app.surveys`) and cut as :mod:`app.planning.surveys`
plans. "No data" answers HTTP 200 with ``{"msg": ..., "results": []}``: astroquery checks "is
this a zip?" and otherwise warns with ``msg`` and returns an empty result. Bad parameters are
4xx errors naming the field (astroquery raises ``InvalidQueryError`` on a 400 to a POST, and
``requests.HTTPError`` otherwise).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Form, Query, Request
from fastapi.responses import JSONResponse, Response

from app.dependencies import Services, get_services
from app.observability import record_cutout
from app.params import ERROR_RESPONSES
from app.planning import images
from app.planning import surveys as plan
from app.planning.answers import NoData
from app.streaming import planned, send
from app.survey_params import (
    HapcutParams,
    SurveyListParams,
    SurveyListResponse,
    ZcutNoDataResponse,
    ZcutParams,
)
from app.surveys import HAP_SURVEY, SurveyService, get_surveys

__all__ = ["HAPCUT_PREFIX", "ZCUT_PREFIX", "router"]

#: where astroquery's Zcut and Hapcut look (``<MAST base URL>/zcut/api/v0.1/`` ...)
ZCUT_PREFIX = "/zcut/api/v0.1"
HAPCUT_PREFIX = "/hapcut/api/v0.1"

router = APIRouter(responses=ERROR_RESPONSES)

ServicesDep = Annotated[Services, Depends(get_services)]
SurveysDep = Annotated[SurveyService, Depends(get_surveys)]

_ZIP_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        # "model" puts the schema under #/components/schemas (model_json_schema() would inline
        # "$defs" references that Swagger UI and ReDoc cannot resolve)
        "model": ZcutNoDataResponse,
        "description": "A zip of cutouts, or JSON `{msg, results: []}` when there is no data.",
        "content": {
            "application/zip": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


def no_data(answer: NoData) -> JSONResponse:
    """The "no data" answer astroquery's Zcut and Hapcut expect: HTTP 200, ``msg``, empty ``results``."""
    return JSONResponse({"msg": answer.message, "results": []})


async def _cutouts(request: Request, services: Services, surveys: SurveyService, p: HapcutParams,
                   planner: Any, *, hap: bool, **options: Any) -> Response:
    """Find the images in the index, admit the request's memory, cut on the pool, send."""
    ctx = services.context()
    size = p.cutout_size()
    wanted = p.surveys() if isinstance(p, ZcutParams) else []
    selection = plan.select(surveys.current, p.ra, p.dec, size, surveys=wanted, roots=surveys.roots,
                            exclude=() if hap else (HAP_SURVEY,), only=HAP_SURVEY if hap else None,
                            on_missing=surveys.file_missing)
    if isinstance(selection, NoData):
        return no_data(selection)
    ticket = await services.budget.admit(images.image_memory(ctx, size, selection.count))
    try:
        answer = await services.pool.run(planned, services.budget, planner, ctx, selection, **options)
    finally:
        ticket.release()
    if isinstance(answer, NoData):
        return no_data(answer)
    if answer.stats is not None:
        record_cutout(request, answer.stats)
    return await send(answer, pool=services.pool, budget=services.budget)


# ------------------------------------------------------------------------------------------
# Zcut
# ------------------------------------------------------------------------------------------


async def _survey_list(services: Services, surveys: SurveyService, p: SurveyListParams) -> dict[str, list[str]]:
    names = await services.pool.run(plan.plan_survey_names, surveys.current, p.ra, p.dec, p.radius_deg(),
                                    (HAP_SURVEY,))
    return {"surveys": names}


@router.get(f"{ZCUT_PREFIX}/survey", tags=["Zcut"], response_model=SurveyListResponse)
async def survey_get(p: Annotated[SurveyListParams, Query()], services: ServicesDep, surveys: SurveysDep) -> Any:
    """The hosted surveys with an image at the position (grown by `radius`); `{"surveys": []}` if none."""
    return await _survey_list(services, surveys, p)


@router.post(f"{ZCUT_PREFIX}/survey", tags=["Zcut"], response_model=SurveyListResponse)
async def survey_post(p: Annotated[SurveyListParams, Form()], services: ServicesDep, surveys: SurveysDep) -> Any:
    """As GET, with a form body (what astroquery's `Zcut.get_surveys` sends)."""
    return await _survey_list(services, surveys, p)


async def _zcut(request: Request, services: Services, surveys: SurveyService, p: ZcutParams) -> Response:
    fmt = p.output_format()
    if fmt == "fits":
        return await _cutouts(request, services, surveys, p, plan.plan_zcut_fits, hap=False)
    return await _cutouts(request, services, surveys, p, plan.plan_zcut_images, hap=False, img_format=fmt,
                          stretch=p.stretch, minmax_percent=p.percent(), minmax_value=p.values(), invert=p.invert)


@router.get(f"{ZCUT_PREFIX}/astrocut", tags=["Zcut"], response_class=JSONResponse, responses=_ZIP_RESPONSES)
async def zcut_get(request: Request, p: Annotated[ZcutParams, Query()], services: ServicesDep,
                   surveys: SurveysDep) -> Response:
    """Cutouts of the survey images at a position: a zip of FITS files (one per survey, a CUTOUT
    HDU per image) or of JPEG/PNG images (one per image), as `Zcut.download_cutouts` asks."""
    return await _zcut(request, services, surveys, p)


@router.post(f"{ZCUT_PREFIX}/astrocut", tags=["Zcut"], response_class=JSONResponse, responses=_ZIP_RESPONSES)
async def zcut_post(request: Request, p: Annotated[ZcutParams, Form()], services: ServicesDep,
                    surveys: SurveysDep) -> Response:
    """As GET, with a form body (what `Zcut.get_cutouts` sends)."""
    return await _zcut(request, services, surveys, p)


# ------------------------------------------------------------------------------------------
# Hapcut
# ------------------------------------------------------------------------------------------


@router.get(f"{HAPCUT_PREFIX}/astrocut", tags=["Hapcut"], response_class=JSONResponse, responses=_ZIP_RESPONSES)
async def hapcut_get(request: Request, p: Annotated[HapcutParams, Query()], services: ServicesDep,
                     surveys: SurveysDep) -> Response:
    """FITS cutouts of the HAP images (survey `hap`) at a position, one per image, in a zip (what
    `Hapcut.download_cutouts` asks)."""
    return await _cutouts(request, services, surveys, p, plan.plan_hapcut, hap=True)


@router.post(f"{HAPCUT_PREFIX}/astrocut", tags=["Hapcut"], response_class=JSONResponse, responses=_ZIP_RESPONSES)
async def hapcut_post(request: Request, p: Annotated[HapcutParams, Body()], services: ServicesDep,
                      surveys: SurveysDep) -> Response:
    """As GET, with a JSON body (what `Hapcut.get_cutouts` sends)."""
    return await _cutouts(request, services, surveys, p, plan.plan_hapcut, hap=True)
