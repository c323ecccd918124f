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

``cutout_format`` is read as a synonym of ``format`` (the client's argument name).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, field_validator

from app.params import values
from app.params.groups import PositionGroup, RadiusGroup, RenderGroup, SizeGroup, _lower

__all__ = ["HapcutParams", "SurveyListParams", "SurveyListResponse", "ZcutNoDataResponse", "ZcutParams"]

ImageFormat = Annotated[
    Literal["fits", "jpg", "jpeg", "png"] | None,
    BeforeValidator(lambda v: _lower(v) or None),
    Field(description="Output format: fits (default), jpg or png; case-insensitive."),
]


class SurveyListParams(PositionGroup, RadiusGroup):
    """`survey`: the surveys with an image at a position."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"ra": 217.42893801, "dec": -62.67949189}]})


class HapcutParams(PositionGroup, SizeGroup):
    """`hapcut astrocut`: FITS cutouts of the HAP images at a position, one file per image, in a zip."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"ra": 217.42893801, "dec": -62.67949189, "x": 5, "y": 5, "units": "px"}]}
    )

    @field_validator("ra", "dec", mode="before")
    @classmethod
    def _position_not_boolean(cls, value: Any) -> Any:
        return values.not_boolean(value)


class ZcutParams(HapcutParams, RenderGroup):
    """`zcut astrocut`: cutouts of the deep-field survey images at a position, in a zip (FITS:
    one file per survey; JPEG/PNG: one image per survey image)."""

    survey: Annotated[
        tuple[str, ...],
        BeforeValidator(values.parse_survey_names),
        WithJsonSchema({"type": "string", "description": "Restrict to this survey, or to comma-separated surveys "
                                                         "(default: every survey with an image there)."}),
    ] = ()
    format: ImageFormat = None
    cutout_format: ImageFormat = None

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"ra": 217.42893801, "dec": -62.67949189, "x": 5, "y": 5, "units": "px",
                                         "format": "fits"}]}
    )

    @property
    def output_format(self) -> str:
        """fits, jpg or png (``format``, else ``cutout_format``, else fits)."""
        fmt = self.format or self.cutout_format or "fits"
        return "jpg" if fmt == "jpeg" else fmt


class SurveyListResponse(BaseModel):
    """The `survey` answer: names only, in the server's registry order."""

    surveys: list[str] = Field(examples=[["goods_north", "candels_gn_30mas"]])


class ZcutNoDataResponse(BaseModel):
    """HTTP 200 answer of the cutout routes when there is no data (what astroquery expects)."""

    msg: str = Field(examples=["Missing HAP files for input target. Cutout not performed."])
    results: list[Any] = Field(default_factory=list)
