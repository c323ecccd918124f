"""Response models and the documented statuses, for the OpenAPI document (no logic here)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

__all__ = [
    "ERROR_RESPONSES",
    "ApertureInfo",
    "ErrorResponse",
    "FfiWcsResponse",
    "LightCurveResponse",
    "NoDataResponse",
    "SectorResponse",
    "SectorResult",
    "binary_responses",
    "zip_or_no_data",
]


class SectorResult(BaseModel):
    """One row of a TESScut ``sector`` answer: all strings, sector zero-padded."""

    sectorName: str = Field(examples=["tess-s0038-2-2"])
    sector: str = Field(examples=["0038"])
    camera: str = Field(examples=["2"])
    ccd: str = Field(examples=["2"])


class SectorResponse(BaseModel):
    results: list[SectorResult]
    msg: str | None = Field(None, description="Present when no hosted cube matches.")


class NoDataResponse(BaseModel):
    """HTTP 200 answer of the cutout routes when there is no data (what TESScut clients expect)."""

    msg: str = Field(examples=["The position RA 10.0 Dec 20.0 is on no hosted SPOC cube; hosted sectors: 11, 38."])
    results: list[SectorResult] = Field(default_factory=list)
    hosted_sectors: list[int] = Field(default_factory=list)


class FfiWcsResponse(BaseModel):
    wcs: dict[str, Any] = Field(description="FITS WCS keywords; load with astropy.wcs.WCS(d['wcs'], relax=True).")
    source: Literal["cube", "tesswcs"] = Field(description="Hosted cube's reference WCS, or tesswcs' fit.")


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


class ErrorInfo(BaseModel):
    status: int
    code: str
    field: str | None
    message: str
    request_id: str


class ErrorResponse(BaseModel):
    """The one error shape of every 4xx/5xx answer."""

    error: ErrorInfo
    msg: str
    detail: Any = None


#: ``responses=`` for routes: the error shape under the statuses the table can produce
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in {
        400: "Invalid input (the field is named)",
        403: "Path outside the data roots",
        404: "Not found",
        413: "Request too large",
        422: "Corrupt input file, or a request this server cannot serve (no ephemeris resolver)",
        429: "Too many requests in flight from this client (Retry-After)",
        503: "Busy or backend unavailable (Retry-After)",
        504: "Timed out",
    }.items()
}

_BINARY = {"schema": {"type": "string", "format": "binary"}}


def binary_responses(description: str, *media_types: str) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route answering a file of one of ``media_types``."""
    return {200: {"description": description, "content": dict.fromkeys(media_types, _BINARY)}}


def zip_or_no_data(description: str, no_data: type[BaseModel] = NoDataResponse) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route answering a zip, or JSON ``no_data`` when there is nothing to cut
    (the model goes to the document's components, so every reference resolves)."""
    return {200: {"description": description, "model": no_data, "content": {"application/zip": _BINARY}}}
