"""The page's images of a cutout: ``/preview/cube.png`` (its median frame) and
``/preview/frames.png`` (one frame, for the page's slider).

TESScut's API has no PNG route for cubes: these exist for the page at ``/`` and stay out of the
OpenAPI document. Both read the cube a band of rows (or one frame) at a time; planned by
:mod:`app.planning.preview` and :mod:`app.planning.lightcurve`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.params.requests import FrameParams, PreviewParams
from app.pipeline import get_and_post, serve
from app.planning.lightcurve import FRAME
from app.planning.preview import PREVIEW

__all__ = ["router"]

router = APIRouter(include_in_schema=False)


async def _frame(request: Request, p: FrameParams) -> Any:
    response = await serve(request, FRAME, p)
    # a frame of a cube does not change while the cube is hosted: let a slider's repeats hit the cache
    response.headers["Cache-Control"] = "private, max-age=300"
    return response


get_and_post(router, "/preview/cube.png", PreviewParams, PREVIEW, name="preview_cube", get_only=True,
             description="The median frame of the TPF `astrocut` would serve, as a PNG (for the preview page).",
             response_class=Response)
get_and_post(router, "/preview/frames.png", FrameParams, _frame, name="preview_frame", get_only=True,
             description="One frame of the cutout `astrocut` would cut, as a PNG scaled like the preview (one "
                         "interval for all frames of the cutout, so that changes between frames show).",
             response_class=Response)
