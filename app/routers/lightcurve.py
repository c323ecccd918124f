"""Light curves of a cutout: ``/api/v0.1/lightcurve`` (and under ``/tesscut``).

Mounted at ``/api/v0.1`` and ``/tesscut/api/v0.1``, as the ``images`` routes are, although TESScut
has no such route. ``lightcurve`` answers GET (query string) and POST (form: for long masks) with
a simple-aperture light curve of one hosted cube, as JSON (metadata, one array per column, every
hosted sector holding the target) or CSV (a header line, one line per cadence). Its values are
lightkurve's ``to_lightcurve(aperture_mask=...)`` on the TPF ``astrocut`` serves (see
:mod:`core.cubes.lightcurve`); planned by :mod:`app.planning.lightcurve`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from app.params.requests import LightCurveParams
from app.params.responses import ERROR_RESPONSES, LightCurveResponse
from app.pipeline import get_and_post
from app.planning.lightcurve import CSV_COLUMNS, LIGHTCURVE

__all__ = ["router"]

router = APIRouter(tags=["Light curves"], responses=ERROR_RESPONSES)

_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": f"The light curve: JSON, or CSV with a header line (`{','.join(CSV_COLUMNS)}`) when "
                       "`format=csv`.",
        "content": {"text/csv": {"schema": {"type": "string"}}},
    }
}

get_and_post(router, "/lightcurve", LightCurveParams, LIGHTCURVE, name="lightcurve",
             description="Simple-aperture light curve of a position on one hosted cube: per cadence the time (BTJD), "
                         "the aperture's summed flux, its error (quadrature) and the quality flags; lightkurve's "
                         "`TargetPixelFile.to_lightcurve(aperture_mask=...)` on the TPF `astrocut` serves, computed "
                         "from the cube's aperture pixels alone.",
             post_description="As GET, with a form body (for masks too long for a URL).",
             response_model=LightCurveResponse, responses=_RESPONSES)
