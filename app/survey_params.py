"""Request and response models of the Zcut and Hapcut routes (MAST's API v0.1, as astroquery 0.4.11 calls it).

What the client sends, and so what is accepted:

- ``Zcut.get_surveys``: a form POST of ``ra``, ``dec`` and ``radius`` (degrees as a plain number;
  a unit suffix d, m, s is also read).
- ``Zcut.download_cutouts``: a GET of ``ra``, ``dec``, ``y``, ``x``, ``units`` (``px`` or ``d``:
  the client converts angular sizes to degrees), optional ``survey``, ``format`` (fits, jpg, png)
  and the image options ``stretch``, ``minmax_percent``, ``minmax_value`` and ``invert`` as
  Python prints them (``minmax_percent=[0.5, 99.5]``, ``invert=True``), not URL-encoded.
- ``Zcut.get_cutouts``: a form POST of ``x``, ``y``, ``units``, ``ra``, ``dec`` and optional ``survey``.
- ``Hapcut.download_cutouts``: a GET of ``ra``, ``dec``, ``x``, ``y``, ``units``;
  ``Hapcut.get_cutouts``: the same as a JSON body (POST).

``cutout_format`` is read as a synonym of ``format`` (the client's argument name). Values are
checked here, so that a bad one answers 400 naming its field.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.params import Dec, Ra, SizeParams, parse_angle

__all__ = ["HapcutParams", "SurveyListParams", "SurveyListResponse", "ZcutNoDataResponse", "ZcutParams"]

ImageFormat = Annotated[
    # "" is read as the default (``_lower``), so the schema allows it too
    Literal["fits", "jpg", "jpeg", "png", ""] | None,
    Field(description="Output format: fits (default), jpg or png; case-insensitive; empty means fits."),
]
#: longest survey name accepted in a request (names are configured, not free text)
_MAX_SURVEY_CHARS = 100


def _numbers_pair(text: str | None, field: str) -> list[float] | None:
    """Two finite numbers from ``[a, b]``, ``(a, b)``, ``a,b`` or ``a b`` (what Python prints for a
    list); None for an empty value."""
    if text is None or not text.strip():
        return None
    parts = [p for p in re.split(r"[,\s]+", text.strip().strip("[]()")) if p]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"{field} must be two numbers such as [0.5, 99.5]") from None
    if len(values) != 2 or not all(math.isfinite(v) for v in values):
        raise ValueError(f"{field} must be two finite numbers such as [0.5, 99.5]")
    return values


def _survey_names(text: str | None) -> list[str]:
    """Survey names from ``a``, ``a,b`` or ``[a, b]``; ValueError for an over-long or unprintable one."""
    names: list[str] = []
    for part in re.split(r"[,\s]+", (text or "").strip().strip("[]()")):
        part = part.strip().strip("'\"")
        if not part:
            continue
        if len(part) > _MAX_SURVEY_CHARS or not part.isprintable():
            raise ValueError(f"a survey name of at most {_MAX_SURVEY_CHARS} printable characters")
        names.append(part)
    return names


class _Base(BaseModel):
    model_config = ConfigDict(extra="ignore")


class SurveyListParams(_Base):
    """`survey`: the surveys with an image at a position."""

    ra: Ra
    dec: Dec
    radius: str = Field("0", description="Search radius, degrees (a suffix d, m or s is also read).")

    model_config = ConfigDict(json_schema_extra={"examples": [{"ra": 217.42893801, "dec": -62.67949189}]})

    @field_validator("radius")
    @classmethod
    def _check_radius(cls, value: str) -> str:
        parse_angle(value)
        return value

    def radius_deg(self) -> float:
        return parse_angle(self.radius)


class HapcutParams(_Base, SizeParams):
    """`hapcut astrocut`: FITS cutouts of the HAP images at a position, one file per image, in a zip."""

    ra: Ra
    dec: Dec

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"ra": 217.42893801, "dec": -62.67949189, "x": 5, "y": 5, "units": "px"}]}
    )

    @field_validator("ra", "dec", "x", "y", mode="before")
    @classmethod
    def _no_booleans(cls, value: Any) -> Any:
        # a JSON body's true/false is not a number (pydantic's lax mode would read it as 1/0)
        if isinstance(value, bool):
            raise ValueError("must be a number, not a boolean")  # noqa: TRY004 - pydantic wants ValueError
        return value


class ZcutParams(HapcutParams):
    """`zcut astrocut`: cutouts of the deep-field survey images at a position, in a zip (FITS:
    one file per survey; JPEG/PNG: one image per survey image)."""

    survey: str | None = Field(
        None, description="Restrict to this survey, or to comma-separated surveys (default: every survey with an "
        "image there).",
    )
    format: ImageFormat = None
    cutout_format: ImageFormat = None
    stretch: Literal["asinh", "sinh", "sqrt", "log", "linear"] = Field(
        "asinh", description="Image stretch (jpg/png only)."
    )
    minmax_percent: str | None = Field(
        None, description="Interval as two percentiles, e.g. [0.5, 99.5] (jpg/png only; the default)."
    )
    minmax_value: str | None = Field(None, description="Interval as two values, e.g. [0, 1000] (jpg/png only).")
    invert: bool = Field(False, description="Invert the image (jpg/png only).")

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"ra": 217.42893801, "dec": -62.67949189, "x": 5, "y": 5, "units": "px",
                                         "format": "fits"}]}
    )

    @field_validator("format", "cutout_format", "stretch", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        if isinstance(value, str):
            return value.strip().lower().lstrip(".") or None
        return value

    @field_validator("invert", mode="before")
    @classmethod
    def _true_or_false(cls, value: Any) -> Any:
        # what astroquery sends (Python's True/False), in any case; not 0/1/yes/no, which a form's
        # boolean schema does not allow
        if isinstance(value, str):
            text = value.strip().lower()
            if text in ("true", "false"):
                return text == "true"
            if not text:
                return False
            raise ValueError("must be true or false")
        return value

    @field_validator("survey")
    @classmethod
    def _check_surveys(cls, value: str | None) -> str | None:
        _survey_names(value)
        return value

    def surveys(self) -> list[str]:
        """The surveys asked for (empty: all)."""
        return _survey_names(self.survey)

    @field_validator("minmax_percent", "minmax_value")
    @classmethod
    def _two_numbers(cls, value: str | None, info: Any) -> str | None:
        _numbers_pair(value, info.field_name)
        return value if value is not None and value.strip() else None

    def output_format(self) -> str:
        """fits, jpg or png (``format``, else ``cutout_format``, else fits)."""
        fmt = self.format or self.cutout_format or "fits"
        return "jpg" if fmt == "jpeg" else fmt

    def percent(self) -> list[float] | None:
        return _numbers_pair(self.minmax_percent, "minmax_percent")

    def values(self) -> list[float] | None:
        return _numbers_pair(self.minmax_value, "minmax_value")


class SurveyListResponse(BaseModel):
    """The `survey` answer: names only, in the server's registry order."""

    surveys: list[str] = Field(examples=[["goods_north", "candels_gn_30mas"]])


class ZcutNoDataResponse(BaseModel):
    """HTTP 200 answer of the cutout routes when there is no data (what astroquery expects)."""

    msg: str = Field(examples=["Missing HAP files for input target. Cutout not performed."])
    results: list[Any] = Field(default_factory=list)
