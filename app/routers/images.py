"""Cutouts of FITS images: ``fits_cut``, ``img_cut`` and ``combine`` (astrocut's functions over HTTP).

Inputs and their checks are described in :mod:`app.planning.images`. Each request is admitted
against the server's memory budget by the largest window it may cut before any file is read
(:func:`app.pipeline.serve`). POSTs may also upload the images (multipart ``files``).
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from app.params.requests import CombineParams, FitsCutParams, ImgCutParams
from app.params.responses import ERROR_RESPONSES, binary_responses
from app.pipeline import get_and_post
from app.planning import images

__all__ = ["router"]

router = APIRouter(tags=["images"], responses=ERROR_RESPONSES)

_FITS = binary_responses("One FITS file, or a zip of FITS files (single_outfile=false with several inputs).",
                         "application/fits", "application/zip")
_IMG = binary_responses("The image itself for one output (usable in <img>), else a zip of images.",
                        "image/png", "image/jpeg", "application/zip")
_UPLOADS = "As GET, with a form body; images may also be uploaded as `files` (multipart)."

get_and_post(router, "/fits_cut", FitsCutParams, images.FITS_CUT, name="fits_cut", uploads=True,
             description="FITS cutouts of images under the image roots (astrocut's fits_cut).",
             post_description=_UPLOADS, response_class=Response, responses=_FITS)
get_and_post(router, "/img_cut", ImgCutParams, images.IMG_CUT, name="img_cut", uploads=True,
             description="PNG/JPEG cutouts (astrocut's img_cut); one output is the image itself, usable in `<img>`.",
             post_description=_UPLOADS, response_class=Response, responses=_IMG)
get_and_post(router, "/combine", CombineParams, images.COMBINE, name="combine", uploads=True,
             description="Cut the same window from each image and combine the cutouts (NaN-aware mean) into one FITS.",
             post_description="As GET; or upload cutout FITS files as `files` to combine them as they are.",
             response_class=Response, responses=_FITS)
