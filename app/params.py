"""Request parameter models (one per endpoint), shared by GET (query) and POST (form).

The TESScut routes follow MAST's TESScut API v0.1: ``ra``/``dec`` in degrees, sizes as ``x``/``y``
with ``units``, ``sector`` given repeated (``sector=28&sector=68``), as a literal list
(``sector=[28, 68]``, what astroquery's GET sends) or comma-separated (``28,68``), and ``product``
case-insensitive. Values are checked here so that a bad one answers 400 naming its field.
"""

from __future__ import annotations

import json
import math
import re
from typing import Annotated, Any, Literal

from astropy import units as u
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "TESS_PIXEL_ARCSEC",
    "AstrocutParams",
    "CombineParams",
    "FfiWcsParams",
    "FitsCutParams",
    "ImgCutParams",
    "MovingTargetCutParams",
    "MovingTargetSectorParams",
    "SectorParams",
    "parse_angle",
    "size_unit",
]

#: TESS plate scale used for ``px`` radii, as MAST's TESScut documents it
TESS_PIXEL_ARCSEC = 21.0

#: TESScut's angular unit names (one letter or spelled out) and its pixel unit names
_ANGULAR: dict[str, Any] = {
    **dict.fromkeys(("d", "deg", "degree", "degrees"), u.deg),
    **dict.fromkeys(("m", "arcmin"), u.arcmin),
    **dict.fromkeys(("s", "arcsec"), u.arcsec),
}
_PIXEL_NAMES = ("px", "pix", "pixel", "pixels")
#: a radius: degrees by default; a pixel is TESS's 21 arcsec
_ANGLE_UNITS: dict[str, Any] = {
    "": u.deg, **_ANGULAR, **dict.fromkeys(_PIXEL_NAMES, TESS_PIXEL_ARCSEC * u.arcsec)
}
#: a cutout size: pixels stay pixels (converted with the cube's own WCS)
_SIZE_UNITS: dict[str, Any] = {**dict.fromkeys(_PIXEL_NAMES, u.pix), **_ANGULAR}
_NUMBER_UNIT = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([A-Za-z]*)\s*$")


def parse_angle(text: str | float) -> u.Quantity:
    """Read a TESScut radius: a number with an optional unit suffix (d default, m, s, px = 21").

    Raises ``ValueError`` (a 400 naming the field) for a bad number, a negative value or an
    unknown unit.
    """
    m = _NUMBER_UNIT.match(str(text))
    if not m:
        raise ValueError(f"cannot read {text!r} as an angle such as '0.1d', '3m', '30s' or '2px'")
    unit = _ANGLE_UNITS.get(m.group(2).lower())
    if unit is None:
        raise ValueError(f"unknown unit {m.group(2)!r}: use d, m, s or px")
    value = float(m.group(1))
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    if value < 0:
        raise ValueError("must not be negative")
    return (value * unit).to(u.deg)


def size_unit(text: str) -> Any:
    """The astropy unit of a TESScut ``units`` value (px, d/deg, m/arcmin, s/arcsec)."""
    unit = _SIZE_UNITS.get(text.strip().lower())
    if unit is None:
        raise ValueError(f"unknown unit {text!r}: use px, d (deg), m (arcmin) or s (arcsec)")
    return unit


def _split_values(values: Any) -> list[str]:
    """Flatten repeated / ``[a, b]`` / ``a,b`` forms into a list of strings."""
    if values is None:
        return []
    if isinstance(values, (str, int, float)):
        values = [values]
    out: list[str] = []
    for value in values:
        text = str(value).strip().strip("[]()")
        out.extend(part.strip().strip("'\"") for part in re.split(r"[,\s]+", text) if part.strip())
    return out


def _parse_sectors(values: Any) -> list[int]:
    sectors: list[int] = []
    for part in _split_values(values):
        try:
            number = int(part) if part.lstrip("+").isdigit() else float(part)
        except ValueError:
            raise ValueError(f"sector {part!r} is not a number") from None
        if not math.isfinite(number) or number != int(number) or number < 1:
            raise ValueError(f"sector {part!r} is not a positive whole number")
        if int(number) not in sectors:
            sectors.append(int(number))
    return sectors


def _floats(values: Any, *, count: int | None = None) -> list[float] | None:
    parts = _split_values(values)
    if not parts:
        return None
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"expected numbers, got {parts!r}") from None
    if count is not None and len(numbers) != count:
        raise ValueError(f"expected {count} numbers, got {len(numbers)}")
    return numbers


# Per-field examples, so that GET (query parameters, where the models' examples are lost) documents them too.
Ra = Annotated[
    float, Field(description="Right ascension, degrees (ICRS).", allow_inf_nan=False, examples=[217.42893801])
]
Dec = Annotated[
    float,
    Field(ge=-90, le=90, description="Declination, degrees (ICRS).", allow_inf_nan=False, examples=[-62.67949189]),
]
Product = Annotated[
    Literal["SPOC", "TICA"],
    Field(description="Cube product: SPOC (default) or TICA, case-insensitive."),
]


class _Base(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    @field_validator("product", mode="before", check_fields=False)
    @classmethod
    def _upper_product(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value


class _SizeMixin(BaseModel):
    x: float = Field(5, gt=0, allow_inf_nan=False, description="Cutout width, in `units`.")
    y: float | None = Field(
        None, gt=0, allow_inf_nan=False, description="Cutout height, in `units` (default: x)."
    )
    units: str = Field("px", description="Unit of x and y: px, d (deg), m (arcmin) or s (arcsec).")

    @field_validator("units")
    @classmethod
    def _check_units(cls, value: str) -> str:
        size_unit(value)
        return value.strip().lower()

    def size_quantities(self) -> tuple[u.Quantity, u.Quantity]:
        """(x, y) as astropy Quantities (pixels or angles)."""
        unit = size_unit(self.units)
        return self.x * unit, (self.y if self.y is not None else self.x) * unit

    def whole_pixels(self) -> tuple[int, int] | None:
        """(x, y) as ints when the request is in whole pixels (the common case: no units
        machinery needed), else None."""
        y = self.y if self.y is not None else self.x
        if size_unit(self.units) is not u.pix or not (float(self.x).is_integer() and float(y).is_integer()):
            return None
        return int(self.x), int(y)

    def size_label(self) -> str:
        """``<x>x<y>`` as the request gave them (for file names)."""
        y = self.y if self.y is not None else self.x
        return f"{self.x:g}x{y:g}"


class _SectorsMixin(BaseModel):
    sector: list[str] = Field(
        default_factory=list,
        description="Sectors to cut (default: all hosted sectors that contain the position); "
        "repeat the parameter, or give `28,68` or `[28, 68]`.",
        examples=[["38"]],
    )

    @field_validator("sector", mode="before")
    @classmethod
    def _check_sectors(cls, value: Any) -> Any:
        _parse_sectors(value)
        return [value] if isinstance(value, (str, int)) else value

    def sectors(self) -> list[int]:
        """The requested sectors as ints (empty: all)."""
        return _parse_sectors(self.sector)


class SectorParams(_Base):
    """`sector`: which hosted sectors/cameras/CCDs see a position."""

    ra: Ra
    dec: Dec
    radius: str = Field(
        "0", description="Search radius: number with unit suffix d (default), m, s or px (21 arcsec)."
    )
    product: Product = "SPOC"

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"ra": 217.42893801, "dec": -62.67949189, "radius": "5m"}]}
    )

    @field_validator("radius")
    @classmethod
    def _check_radius(cls, value: str) -> str:
        parse_angle(value)
        return value

    def radius_angle(self) -> u.Quantity:
        return parse_angle(self.radius)


class AstrocutParams(_Base, _SizeMixin, _SectorsMixin):
    """`astrocut`: target pixel files around a position, one per sector/camera/CCD, in a zip."""

    ra: Ra
    dec: Dec
    product: Product = "SPOC"

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"ra": 217.42893801, "dec": -62.67949189, "x": 10, "y": 10, "units": "px", "sector": ["38"]}]
        }
    )


class FfiWcsParams(_Base):
    """`ffi_wcs`: the reference WCS of one sector/camera/CCD."""

    sector: int = Field(ge=1, description="TESS sector.")
    camera: int = Field(ge=1, le=4, description="Camera, 1-4.")
    ccd: int = Field(ge=1, le=4, description="CCD, 1-4.")
    product: Product = "SPOC"

    model_config = ConfigDict(json_schema_extra={"examples": [{"sector": 38, "camera": 2, "ccd": 2}]})


class _MovingTargetMixin(BaseModel):
    obj_id: str | None = Field(None, description="Object name or designation, sent to the ephemeris resolver.")
    obj_type: str | None = Field(None, description="Passed verbatim to the resolver (majorbody, smallbody...).")
    ephemeris: str | None = Field(
        None,
        description='An explicit path as JSON: {"time": [...TJD or ISO...], "ra": [...deg...], "dec": [...deg...]}.',
    )

    @field_validator("obj_id")
    @classmethod
    def _check_obj_id(cls, value: str | None) -> str | None:
        # It names the output file: bound its length (a 300-char name was an OSError, a 500) and
        # refuse control characters (a NUL was a ValueError from open()).
        if value is not None and (len(value) > 100 or not value.isprintable()):
            raise ValueError("an object name of at most 100 printable characters")
        return value

    @model_validator(mode="after")
    def _need_target(self) -> Any:
        if not self.obj_id and not self.ephemeris:
            raise ValueError("give obj_id (needs an ephemeris resolver) or an explicit ephemeris")
        return self

    @field_validator("ephemeris")
    @classmethod
    def _check_ephemeris(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        try:
            data = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON ({exc.msg})") from None
        if not isinstance(data, dict) or not all(k in data for k in ("time", "ra", "dec")):
            raise ValueError("must be an object with lists 'time', 'ra' and 'dec'")
        lengths = {len(data[k]) if isinstance(data[k], list) else -1 for k in ("time", "ra", "dec")}
        if -1 in lengths or len(lengths) != 1 or lengths == {0} or lengths == {1}:
            raise ValueError("'time', 'ra' and 'dec' must be lists of the same length (at least 2)")
        return value

    def ephemeris_dict(self) -> dict[str, list[Any]] | None:
        return json.loads(self.ephemeris) if self.ephemeris else None


class MovingTargetSectorParams(_Base, _MovingTargetMixin):
    """`moving_target/sector`: sectors whose cubes a moving target crosses."""

    product: Product = "SPOC"


class MovingTargetCutParams(_Base, _SizeMixin, _MovingTargetMixin, _SectorsMixin):
    """`moving_target/astrocut`: TPFs centred on a moving target's path."""

    product: Product = "SPOC"


class _ImagesMixin(BaseModel):
    images: list[str] = Field(
        default_factory=list,
        description="Input images: paths relative to an image root, or s3:// URIs (repeat the parameter).",
        examples=[["img1.fits"]],
    )
    ra: Ra
    dec: Dec


class FitsCutParams(_Base, _SizeMixin, _ImagesMixin):
    """`fits_cut`: FITS cutouts of images."""

    extension: str | None = Field(None, description="HDU index, comma-separated indices, or 'all'.")
    single_outfile: bool = Field(True, description="One FITS with a CUTOUT HDU per input, else a zip.")

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"images": ["img1.fits"], "ra": 217.4289, "dec": -62.6795, "x": 20}]}
    )

    @field_validator("extension")
    @classmethod
    def _check_extension(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if value.strip().lower() == "all":
            return "all"
        for part in _split_values(value):
            if not part.isdigit():
                raise ValueError("an HDU index, comma-separated indices, or 'all'")
        return value

    def extension_value(self) -> None | str | list[int]:
        if self.extension is None or self.extension == "all":
            return self.extension
        return [int(p) for p in _split_values(self.extension)]


class ImgCutParams(_Base, _SizeMixin, _ImagesMixin):
    """`img_cut`: PNG/JPEG cutouts of images (one image answers with the image itself)."""

    stretch: Literal["asinh", "sinh", "sqrt", "log", "linear"] = "asinh"
    minmax_percent: str | None = Field(None, description="Two percentiles, e.g. `0.5,99.5`.")
    minmax_value: str | None = Field(None, description="Two values, e.g. `0,1000`.")
    invert: bool = False
    img_format: Literal["png", "jpg", "jpeg"] = "png"
    colorize: bool = Field(False, description="Combine three images into one RGB image.")

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"images": ["img1.fits"], "ra": 217.4289, "dec": -62.6795, "x": 20}]}
    )

    @field_validator("stretch", "img_format", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower().lstrip(".") if isinstance(value, str) else value

    @field_validator("minmax_percent", "minmax_value")
    @classmethod
    def _two_numbers(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        _floats(value, count=2)
        return value

    def percent(self) -> list[float] | None:
        return _floats(self.minmax_percent, count=2)

    def values(self) -> list[float] | None:
        return _floats(self.minmax_value, count=2)


class CombineParams(_Base, _SizeMixin):
    """`combine`: cut the images (or take uploaded cutouts) and combine them into one FITS."""

    images: list[str] = Field(
        default_factory=list, description="Input images (as for fits_cut).", examples=[["img1.fits", "img2.fits"]]
    )
    ra: float | None = Field(
        None, allow_inf_nan=False, description="RA, degrees (needed with images).", examples=[217.42893801]
    )
    dec: float | None = Field(
        None, ge=-90, le=90, allow_inf_nan=False, description="Dec, degrees.", examples=[-62.67949189]
    )


# ------------------------------------------------------------------------------------------
# response models (for the OpenAPI document)
# ------------------------------------------------------------------------------------------


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
        422: "Corrupt input file",
        503: "Busy or backend unavailable (Retry-After)",
        504: "Timed out",
    }.items()
}
