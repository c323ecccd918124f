"""Light curves and frames of a cutout: ``/api/v0.1/lightcurve`` and ``/preview/frames.png``.

- ``router`` (mounted at ``/api/v0.1`` and ``/tesscut/api/v0.1``, as the ``images`` routes are,
  although TESScut has no such route): ``lightcurve`` answers GET (query string) and POST (form) with a simple-aperture light curve of
  one hosted cube, as JSON (metadata, one array per column, every hosted sector holding the
  target) or CSV (a header line, one line per cadence). Its values are lightkurve's
  ``to_lightcurve(aperture_mask=...)`` on the TPF ``astrocut`` serves (see :mod:`core.cubes.lightcurve`).
- ``preview_router`` (mounted at the root, out of the OpenAPI document as ``/preview/cube.png`` is):
  ``/preview/frames.png`` is one frame of the cutout as a PNG, for the page's slider.

The work is planned by :mod:`app.planning.lightcurve`; these handlers parse, admit the request
against the memory budget (one band of rows), plan on the worker pool and send.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.dependencies import Services, get_services
from app.observability import record_cutout
from app.params import ERROR_RESPONSES, Dec, Product, Ra, SectorResult, TimeWindowParams
from app.planning.lightcurve import CSV_COLUMNS, plan_frame, plan_lightcurve
from app.streaming import content_disposition, file_response
from core.errors import InvalidInputError

__all__ = ["LightCurveParams", "LightCurveResponse", "preview_router", "router"]

router = APIRouter(tags=["Light curves"], responses=ERROR_RESPONSES)
preview_router = APIRouter()

ServicesDep = Annotated[Services, Depends(get_services)]

#: the JSON answer's own size beyond the band being read: ~100 bytes a cadence for 20,000 cadences
_ANSWER_BYTES = 4 * 1024 * 1024
#: longest mask accepted (a 250 x 250 mask); bigger apertures than that are beyond any page's use
MAX_MASK_CHARS = 65_536


class LightCurveParams(TimeWindowParams):
    """`lightcurve`: the simple-aperture light curve of a position on one hosted cube."""

    ra: Ra
    dec: Dec
    sector: int | None = Field(None, ge=1, description="TESS sector (default: the first hosted one with the "
                                                      "position).", examples=[38])
    product: Product = "SPOC"
    aperture: int = Field(3, ge=1, description="Side, in pixels, of the square of pixels summed, centred on "
                                               "the position as a cutout of that size is (`astrocut` with "
                                               "`x=y=aperture` cuts exactly these pixels).")
    mask: str | None = Field(
        None, max_length=MAX_MASK_CHARS, pattern=r"^([01]+(,[01]+)*)?$",
        description="Instead of `aperture`: the pixels summed, as rows of 0/1 separated by commas "
        "(`010,111,010`), in array order (the first row is the lowest cube row, the bottom of a "
        "north-up image; as lightkurve's `aperture_mask`), placed as a cutout of the mask's shape is. "
        "Empty means none (as an HTML form sends an unset field).")
    format: Literal["json", "csv"] = Field("json", description="`json` (arrays and metadata) or `csv` "
                                                               "(header line `time,flux,flux_err,quality`).")

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={"examples": [{"ra": 217.42893801, "dec": -62.67949189, "sector": 38, "aperture": 3}]},
    )

    @field_validator("product", mode="before")
    @classmethod
    def _upper_product(cls, value: Any) -> Any:
        # case-insensitive, empty meaning SPOC, as on the TESScut routes
        return value.strip().upper() or "SPOC" if isinstance(value, str) else value

    @field_validator("mask", mode="after")
    @classmethod
    def _empty_mask(cls, value: str | None) -> str | None:
        # FastAPI gives a form's empty field its default: a query string's empty value means the same
        return value or None


class ApertureInfo(BaseModel):
    column: int = Field(description="1-based cube column of the aperture box's first pixel (as TPF 1CRV5P).")
    row: int = Field(description="1-based cube row of the aperture box's first pixel (as TPF 2CRV5P).")
    nx: int
    ny: int
    mask: list[str] = Field(description="Rows of 0/1, the first the lowest cube row.")
    pixels: int = Field(description="Pixels in the mask.")
    pixels_on_cube: int = Field(description="Of those, pixels on the cube (the others count as NaN).")


class LightCurveResponse(BaseModel):
    """A simple-aperture light curve: one value per cadence in each array (null where NaN)."""

    ra: float
    dec: float
    product: str
    sectorName: str
    sector: int
    camera: int
    ccd: int
    aperture: ApertureInfo
    time_unit: str
    flux_unit: str
    cadences: int
    flagged: int = Field(description="Cadences with a non-zero quality flag.")
    frame_bin: int | None = Field(None, description="Frames per cadence (only with a time window or a binning).")
    frames: list[int] | None = Field(None, description="The cube frames used, 0-based, end exclusive (only with "
                                                       "a time window or a binning).")
    time: list[float | None] = Field(description="Mid-exposure time, BTJD (the TPF's TIME).")
    flux: list[float | None] = Field(description="Summed flux of the aperture (float32 values).")
    flux_err: list[float | None] = Field(description="The pixels' errors added in quadrature.")
    quality: list[int] = Field(description="Quality flags (the TPF's QUALITY).")
    sectors: list[SectorResult] = Field(description="Every hosted sector/camera/CCD holding the position.")


_LIGHTCURVE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The light curve: JSON, or CSV with a header line "
                       f"(`{','.join(CSV_COLUMNS)}`) when `format=csv`.",
        "content": {"text/csv": {"schema": {"type": "string"}}},
    }
}


async def _lightcurve(request: Request, services: Services, p: LightCurveParams) -> Response:
    ctx = services.context()
    ticket = await services.budget.admit(2 * ctx.band_bytes + _ANSWER_BYTES)
    try:
        result = await services.pool.run(plan_lightcurve, ctx, p.ra, p.dec, p.sector, p.product,
                                         aperture=p.aperture, mask=p.mask, window=p.time_window())
        if p.format == "csv":
            body = await services.pool.run(result.to_csv)
        else:
            body = await services.pool.run(result.to_json)
    finally:
        ticket.release()
    record_cutout(request, result.stats)
    if p.format == "csv":
        return Response(body, media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": content_disposition(result.filename("csv"))})
    return Response(body, media_type="application/json")


@router.get("/lightcurve", response_model=LightCurveResponse, responses=_LIGHTCURVE_RESPONSES)
async def lightcurve_get(request: Request, p: Annotated[LightCurveParams, Query()],
                         services: ServicesDep) -> Any:
    """Simple-aperture light curve of a position on one hosted cube: per cadence the time (BTJD),
    the aperture's summed flux, its error (quadrature) and the quality flags; lightkurve's
    `TargetPixelFile.to_lightcurve(aperture_mask=...)` on the TPF `astrocut` serves, computed
    from the cube's aperture pixels alone."""
    return await _lightcurve(request, services, p)


@router.post("/lightcurve", response_model=LightCurveResponse, responses=_LIGHTCURVE_RESPONSES)
async def lightcurve_post(request: Request, p: Annotated[LightCurveParams, Form()],
                          services: ServicesDep) -> Any:
    """As GET, with a form body (for masks too long for a URL)."""
    return await _lightcurve(request, services, p)


@preview_router.get("/preview/frames.png", include_in_schema=False, response_class=Response)
async def frame_png(
    request: Request,
    services: ServicesDep,
    ra: Annotated[float, Query(description="Right ascension, degrees.", ge=-180, le=360, allow_inf_nan=False)],
    dec: Annotated[float, Query(ge=-90, le=90, description="Declination, degrees.", allow_inf_nan=False)],
    frame: Annotated[int, Query(ge=0, description="Frame (cadence) index, 0-based.")] = 0,
    x: Annotated[int, Query(ge=1, description="Width, pixels.")] = 15,
    y: Annotated[int | None, Query(ge=1, description="Height, pixels (default: x).")] = None,
    sector: Annotated[int | None, Query(ge=1, description="Sector (default: the first hosted one).")] = None,
    product: Annotated[str, Query(description="SPOC or TICA (case-insensitive).")] = "SPOC",
    stretch: Annotated[Literal["asinh", "sinh", "sqrt", "log", "linear"], Query()] = "asinh",
    invert: bool = False,
) -> Response:
    """One frame of the cutout `astrocut` would cut, as a PNG scaled like the preview (one
    interval for all frames of the cutout, so that changes between frames show)."""
    prod = product.strip().upper() or "SPOC"
    if prod not in ("SPOC", "TICA"):
        raise InvalidInputError(f"product must be SPOC or TICA, not {product[:20]!r}", field="product")
    ctx = services.context()
    ny = y if y is not None else x
    # the median frame behind the interval is read a band at a time (once per cutout: cached)
    ticket = await services.budget.admit(2 * ctx.band_bytes + 16 * x * ny)
    try:
        answer = await services.pool.run(plan_frame, ctx, ra, dec, x, ny, sector, prod, frame,
                                         stretch, invert)
    finally:
        ticket.release()
    record_cutout(request, answer.stats)
    response = file_response(answer.data, answer.media_type, answer.filename, inline=True)
    # a frame of a cube does not change while the cube is hosted: let a slider's repeats hit the cache
    response.headers["Cache-Control"] = "private, max-age=300"
    return response
