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

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from core.cutout_size import PIXEL_UNITS, UNIT_DEGREES

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
    "SizeParams",
    "TimeWindowParams",
    "parse_angle",
    "size_unit",
]

#: TESS plate scale used for ``px`` radii, as MAST's TESScut documents it
TESS_PIXEL_ARCSEC = 21.0

#: a radius's unit names: TESScut's angular units (degrees by default) and TESS pixels of 21 arcsec
_RADIUS_DEGREES: dict[str, float] = {
    "": 1.0, **UNIT_DEGREES, **dict.fromkeys(PIXEL_UNITS, TESS_PIXEL_ARCSEC / 3600.0)
}
_NUMBER_UNIT = re.compile(r"^\s*([-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?)\s*([A-Za-z]*)\s*$")


def parse_angle(text: str | float) -> float:
    """Read a TESScut radius in degrees: a number with an optional unit suffix (d default, m, s,
    px = 21 arcsec).

    Raises ``ValueError`` (a 400 naming the field) for a bad number, a negative value or an
    unknown unit.
    """
    m = _NUMBER_UNIT.match(str(text))
    if not m:
        raise ValueError(f"cannot read {str(text)[:40]!r} as an angle such as '0.1d', '3m', '30s' or '2px'")
    scale = _RADIUS_DEGREES.get(m.group(2).lower())
    if scale is None:
        raise ValueError(f"unknown unit {m.group(2)[:20]!r}: use d, m, s or px")
    value = float(m.group(1))
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    if value < 0:
        raise ValueError("must not be negative")
    return value * scale


def size_unit(text: str) -> str:
    """A TESScut ``units`` value, lower-cased, if it is one (px, d/deg, m/arcmin, s/arcsec)."""
    name = text.strip().lower()
    if name not in PIXEL_UNITS and name not in UNIT_DEGREES:
        raise ValueError(f"unknown unit {text[:20]!r}: use px, d (deg), m (arcmin) or s (arcsec)")
    return name


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


#: a whole number written with ASCII digits (``str.isdigit`` and ``int`` also take Arabic-Indic and
#: other digits, and ``int`` fails on 4,300 digits or more)
_ASCII_INT = re.compile(r"^\+?0*([0-9]{1,6})$")


def _parse_sectors(values: Any) -> list[int]:
    sectors: list[int] = []
    for part in _split_values(values):
        m = _ASCII_INT.match(part)
        if not m:
            raise ValueError(f"sector {part[:20]!r} is not a positive whole number (ASCII digits)")
        number = int(m.group(1))
        if number < 1:
            raise ValueError(f"sector {part[:20]!r} is not a positive whole number")
        if number not in sectors:
            sectors.append(number)
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
    float,
    Field(ge=-180, le=360, allow_inf_nan=False, examples=[217.42893801],
          description="Right ascension, degrees (ICRS), in [-180, 360]; wrapped into [0, 360)."),
]
Dec = Annotated[
    float,
    Field(ge=-90, le=90, description="Declination, degrees (ICRS).", allow_inf_nan=False, examples=[-62.67949189]),
]
Product = Annotated[
    Literal["SPOC", "TICA", ""],  # "" is read as SPOC (see _upper_product): the schema says it is allowed
    Field(description="Cube product: SPOC (default) or TICA, case-insensitive; empty means SPOC "
                      "(as an HTML form sends an unset field)."),
]


class _Base(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    @field_validator("product", mode="before", check_fields=False)
    @classmethod
    def _upper_product(cls, value: Any) -> Any:
        # An empty value is the default, in a query string as in a form (FastAPI gives forms' empty
        # fields their default: one rule for both methods).
        if isinstance(value, str):
            return value.strip().upper() or "SPOC"
        return value


class SizeParams(BaseModel):
    """``x``, ``y`` and ``units``: a cutout size as TESScut takes it, read as one
    :class:`core.cutout_size.CutoutSize` (:meth:`cutout_size`)."""

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

    def cutout_size(self) -> Any:
        """The size as the engine takes it (:class:`core.cutout_size.CutoutSize`)."""
        from core.cutout_size import CutoutSize

        return CutoutSize.from_numbers(self.x, self.y, self.units)

    def size_label(self) -> str:
        """``<x>x<y>`` as the request gave them (for file names)."""
        y = self.y if self.y is not None else self.x
        return f"{self.x:g}x{y:g}"


# "" (an unset form field) is read as the default, so the schema says it is allowed (as `product`'s does)
_EMPTY_OR_NUMBER = WithJsonSchema({"anyOf": [{"type": "number"}, {"type": "string", "enum": [""]}, {"type": "null"}]})
_EMPTY_OR_COUNT = WithJsonSchema({"anyOf": [{"type": "integer", "minimum": 1}, {"type": "string", "enum": [""]}]})


class TimeWindowParams(BaseModel):
    """``time_min``, ``time_max`` and ``frame_bin``: which frames a cut keeps, read as one
    :class:`core.cubes.frames.TimeWindow` (:meth:`time_window`). An extension over TESScut and
    astrocut: left out, the answer is the one without them, byte for byte.

    Empty values (an HTML form's unset fields) are the defaults. A bad value is a 400 naming its
    field; ``time_max`` before ``time_min`` names ``time_max``. A window on no frame of a cube,
    and ``frame_bin`` above the window's frames, are decided per cube by the engine.
    """

    time_min: Annotated[float | None, _EMPTY_OR_NUMBER] = Field(
        None, allow_inf_nan=False, examples=[2333.25],
        description="Extension: keep frames whose mid-exposure time (BTJD = BJD - 2457000, TDB) is at least this; "
        "empty means none.")
    time_max: Annotated[float | None, _EMPTY_OR_NUMBER] = Field(
        None, allow_inf_nan=False, examples=[2334.25],
        description="Extension: keep frames whose mid-exposure time (BTJD, TDB) is at most this (inclusive); "
        "empty means none.")
    frame_bin: Annotated[int, _EMPTY_OR_COUNT] = Field(
        1, ge=1, examples=[3],
        description="Extension: average this many frames into each cadence (FLUX mean, FLUX_ERR in quadrature "
        "over the frames used, QUALITY OR); a trailing partial bin is dropped. Empty means 1.")

    @field_validator("time_min", "time_max", "frame_bin", mode="before")
    @classmethod
    def _empty_is_default(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str) and not value.strip():
            return 1 if info.field_name == "frame_bin" else None
        return value

    @field_validator("time_max")
    @classmethod
    def _after_min(cls, value: float | None, info: ValidationInfo) -> float | None:
        low = info.data.get("time_min")
        if value is not None and low is not None and value < low:
            raise ValueError(f"time_max ({value!r}) is before time_min ({low!r})")
        return value

    def time_window(self) -> Any:
        """The window as the engine takes it (:class:`core.cubes.frames.TimeWindow`)."""
        from core.cubes.frames import TimeWindow

        return TimeWindow(self.time_min, self.time_max, self.frame_bin)


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

    def radius_deg(self) -> float:
        """The search radius in degrees."""
        return parse_angle(self.radius)


class AstrocutParams(_Base, SizeParams, _SectorsMixin, TimeWindowParams):
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


#: longest ``ephemeris`` accepted (about 40,000 path points)
MAX_EPHEMERIS_CHARS = 2_000_000


def _nesting(text: str) -> int:
    """Deepest bracket nesting of a JSON text (strings skipped), without parsing it."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


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
        # Bounded and printable; it reaches file names only through the safe alphabet, and the
        # OBJECT card with its accents dropped (app.planning.moving.object_card).
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
        if len(value) > MAX_EPHEMERIS_CHARS:
            raise ValueError(f"at most {MAX_EPHEMERIS_CHARS} characters")
        if _nesting(value) > 2:  # json.loads recurses per bracket: '[' * 3000 would be a RecursionError
            raise ValueError('must be a flat object {"time": [...], "ra": [...], "dec": [...]}')
        try:
            data = json.loads(value)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise ValueError(f"not valid JSON ({getattr(exc, 'msg', 'too deeply nested')})") from None
        if not isinstance(data, dict) or not all(k in data for k in ("time", "ra", "dec")):
            raise ValueError("must be an object with lists 'time', 'ra' and 'dec'")
        lengths = {len(data[k]) if isinstance(data[k], list) else -1 for k in ("time", "ra", "dec")}
        if -1 in lengths or len(lengths) != 1 or lengths == {0} or lengths == {1}:
            raise ValueError("'time', 'ra' and 'dec' must be lists of the same length (at least 2)")
        for key in ("time", "ra", "dec"):
            for v in data[key]:
                if isinstance(v, bool) or not isinstance(v, (int, float, str)):
                    raise ValueError(f"'{key}' holds {type(v).__name__} values: give numbers (or ISO times)")  # noqa: TRY004
                if key != "time" and isinstance(v, str):
                    raise ValueError(f"'{key}' must hold numbers (degrees)")
        return value

    def ephemeris_dict(self) -> dict[str, list[Any]] | None:
        return json.loads(self.ephemeris) if self.ephemeris else None


class MovingTargetSectorParams(_Base, _MovingTargetMixin):
    """`moving_target/sector`: sectors whose cubes a moving target crosses."""

    product: Product = "SPOC"


class MovingTargetCutParams(_Base, SizeParams, _MovingTargetMixin, _SectorsMixin, TimeWindowParams):
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


class FitsCutParams(_Base, SizeParams, _ImagesMixin):
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
        parts = _split_values(value)
        if not parts or len(parts) > 100:
            raise ValueError("an HDU index, comma-separated indices (at most 100), or 'all'")
        for part in parts:
            if not _ASCII_INT.match(part) and part.strip("+0") != "":
                raise ValueError("an HDU index, comma-separated indices, or 'all' (ASCII digits)")
        return value

    def extension_value(self) -> None | str | list[int]:
        if self.extension is None or self.extension == "all":
            return self.extension
        return [int(p) for p in _split_values(self.extension)]  # ASCII digits, at most 6 (validated)


class ImgCutParams(_Base, SizeParams, _ImagesMixin):
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


class CombineParams(_Base, SizeParams):
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
        422: "Corrupt input file, or a request this server cannot serve (no ephemeris resolver)",
        503: "Busy or backend unavailable (Retry-After)",
        504: "Timed out",
    }.items()
}
