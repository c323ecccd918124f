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

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app.params.responses import ERROR_RESPONSES, zip_or_no_data
from app.params.surveys import (
    HapcutParams,
    SurveyListParams,
    SurveyListResponse,
    ZcutNoDataResponse,
    ZcutParams,
)
from app.pipeline import get_and_post, serve
from app.planning import surveys as plan
from app.planning.answers import NoData
from app.streaming import no_data
from app.surveys import HAP_SURVEY

__all__ = ["HAPCUT_PREFIX", "ZCUT_PREFIX", "router"]

#: where astroquery's Zcut and Hapcut look (``<MAST base URL>/zcut/api/v0.1/`` ...)
ZCUT_PREFIX = "/zcut/api/v0.1"
HAPCUT_PREFIX = "/hapcut/api/v0.1"

router = APIRouter(responses=ERROR_RESPONSES)

_ZIP = zip_or_no_data("A zip of cutouts, or JSON `{msg, results: []}` when there is no data.", ZcutNoDataResponse)


async def _cutouts(request: Request, p: HapcutParams, *, hap: bool) -> Any:
    """Find the images in the survey index (in memory, nothing opened), then cut them as
    :func:`app.pipeline.serve` runs every route, admitted by what the selected images take."""
    surveys = request.app.state.services.surveys
    selection = plan.select(surveys.current, p.ra, p.dec, p.size, surveys=() if hap else p.survey,
                            roots=surveys.roots, exclude=() if hap else (HAP_SURVEY,),
                            only=HAP_SURVEY if hap else None, on_missing=surveys.file_missing)
    if isinstance(selection, NoData):
        return no_data(selection)
    if hap:
        planner = plan.HAPCUT
    else:
        planner = plan.ZCUT_FITS if p.output_format == "fits" else plan.ZCUT_IMAGES
    return await serve(request, planner, selection, options=p)


async def _zcut(request: Request, p: ZcutParams) -> Any:
    return await _cutouts(request, p, hap=False)


async def _hapcut(request: Request, p: HapcutParams) -> Any:
    return await _cutouts(request, p, hap=True)


get_and_post(router, f"{ZCUT_PREFIX}/survey", SurveyListParams, plan.SURVEY_NAMES, name="zcut_survey", tags=["Zcut"],
             description="The hosted surveys with an image at the position (grown by `radius`); `{\"surveys\": []}` "
                         "if none.",
             post_description="As GET, with a form body (what astroquery's `Zcut.get_surveys` sends).",
             response_model=SurveyListResponse)
get_and_post(router, f"{ZCUT_PREFIX}/astrocut", ZcutParams, _zcut, name="zcut", tags=["Zcut"],
             description="Cutouts of the survey images at a position: a zip of FITS files (one per survey, a CUTOUT "
                         "HDU per image) or of JPEG/PNG images (one per image), as `Zcut.download_cutouts` asks.",
             post_description="As GET, with a form body (what `Zcut.get_cutouts` sends).",
             response_class=JSONResponse, responses=_ZIP)
get_and_post(router, f"{HAPCUT_PREFIX}/astrocut", HapcutParams, _hapcut, name="hapcut", tags=["Hapcut"], post="json",
             description="FITS cutouts of the HAP images (survey `hap`) at a position, one per image, in a zip (what "
                         "`Hapcut.download_cutouts` asks).",
             post_description="As GET, with a JSON body (what `Hapcut.get_cutouts` sends).",
             response_class=JSONResponse, responses=_ZIP)
