"""The request model of every route, made of the parameter groups of :mod:`app.params.groups`.

The same model serves GET (query string) and POST (form, or JSON for Hapcut): see
:func:`app.pipeline.get_and_post`. The TESScut routes follow MAST's TESScut API v0.1 (``ra``/``dec``
in degrees, sizes as ``x``/``y`` with ``units``, ``sector`` repeated or listed, ``product``
case-insensitive); the image routes follow astrocut's functions; Zcut and Hapcut what astroquery
sends (see :mod:`app.params.surveys`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, ConfigDict, Field, WithJsonSchema

from app.params import values
from app.params.groups import (
    EXAMPLE_EPHEMERIS,
    ApertureGroup,
    Dec,
    EphemerisGroup,
    Flag,
    ImagesGroup,
    PositionGroup,
    ProductGroup,
    RadiusGroup,
    RenderGroup,
    SectorsGroup,
    SizeGroup,
    Stretch,
    TimeWindowGroup,
    _lower,
)

__all__ = [
    "AstrocutParams",
    "CombineParams",
    "FfiWcsParams",
    "FitsCutParams",
    "FrameParams",
    "ImgCutParams",
    "LightCurveParams",
    "MovingTargetCutParams",
    "MovingTargetSectorParams",
    "PreviewParams",
    "SectorParams",
]

_EXAMPLE = {"ra": 217.42893801, "dec": -62.67949189}


def _examples(**extra: Any) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": [{**_EXAMPLE, **extra}]})


# -- TESScut --------------------------------------------------------------------------------------


class SectorParams(PositionGroup, RadiusGroup, ProductGroup):
    """`sector`: which hosted sectors/cameras/CCDs see a position."""

    model_config = _examples(radius="5m")


class AstrocutParams(PositionGroup, SizeGroup, SectorsGroup, ProductGroup, TimeWindowGroup):
    """`astrocut`: target pixel files around a position, one per sector/camera/CCD, in a zip."""

    model_config = _examples(x=10, y=10, units="px", sector=["38"])


class FfiWcsParams(ProductGroup):
    """`ffi_wcs`: the reference WCS of one sector/camera/CCD."""

    sector: int = Field(ge=1, le=100_000, description="TESS sector.")
    camera: int = Field(ge=1, le=4, description="Camera, 1-4.")
    ccd: int = Field(ge=1, le=4, description="CCD, 1-4.")

    model_config = ConfigDict(json_schema_extra={"examples": [{"sector": 38, "camera": 2, "ccd": 2}]})


class MovingTargetSectorParams(EphemerisGroup, ProductGroup):
    """`moving_target/sector`: sectors whose cubes a moving target crosses."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"ephemeris": EXAMPLE_EPHEMERIS}]})


class MovingTargetCutParams(EphemerisGroup, SizeGroup, SectorsGroup, ProductGroup, TimeWindowGroup):
    """`moving_target/astrocut`: TPFs centred on a moving target's path."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"ephemeris": EXAMPLE_EPHEMERIS, "x": 5}]})


# -- images ---------------------------------------------------------------------------------------


class FitsCutParams(ImagesGroup, PositionGroup, SizeGroup):
    """`fits_cut`: FITS cutouts of images."""

    extension: Annotated[
        None | str | tuple[int, ...],
        BeforeValidator(values.parse_extension),
        WithJsonSchema({"type": "string", "description": "HDU index, comma-separated indices, or 'all'."}),
    ] = None
    single_outfile: Flag = Field(True, description="One FITS with a CUTOUT HDU per input, else a zip.")

    model_config = ConfigDict(json_schema_extra={"examples": [{"images": ["img1.fits"], "ra": 217.4289,
                                                               "dec": -62.6795, "x": 20}]})

    @property
    def extension_value(self) -> None | str | list[int]:
        """``extension`` as the engine takes it."""
        return list(self.extension) if isinstance(self.extension, tuple) else self.extension


class ImgCutParams(ImagesGroup, PositionGroup, SizeGroup, RenderGroup):
    """`img_cut`: PNG/JPEG cutouts of images (one image answers with the image itself)."""

    img_format: Annotated[Literal["png", "jpg", "jpeg"], BeforeValidator(_lower)] = "png"
    colorize: Flag = Field(False, description="Combine three images into one RGB image.")

    model_config = ConfigDict(json_schema_extra={"examples": [{"images": ["img1.fits"], "ra": 217.4289,
                                                               "dec": -62.6795, "x": 20}]})


class CombineParams(ImagesGroup, SizeGroup):
    """`combine`: cut the images (or take uploaded cutouts) and combine them into one FITS."""

    ra: float | None = Field(None, ge=-180, le=360, allow_inf_nan=False, description="RA, degrees (needed with "
                             "images).", examples=[217.42893801])
    dec: float | None = Field(None, ge=-90, le=90, allow_inf_nan=False, description="Dec, degrees.",
                              examples=[-62.67949189])

    model_config = ConfigDict(json_schema_extra={"examples": [{"images": ["img1.fits", "img2.fits"],
                                                               "ra": 217.4289, "dec": -62.6795, "x": 20}]})


# -- light curves and the page's previews ---------------------------------------------------------


class LightCurveParams(PositionGroup, ProductGroup, ApertureGroup, TimeWindowGroup):
    """`lightcurve`: the simple-aperture light curve of a position on one hosted cube."""

    sector: int | None = Field(None, ge=1, le=100_000, examples=[38],
                               description="TESS sector (default: the first hosted one with the position).")
    format: Literal["json", "csv"] = Field("json", description="`json` (arrays and metadata) or `csv` "
                                                               "(header line `time,flux,flux_err,quality`).")

    model_config = _examples(sector=38, aperture=3)


class PreviewParams(PositionGroup, ProductGroup):
    """The page's preview of a cutout: its median frame as a PNG."""

    x: int = Field(15, ge=1, le=100_000, description="Width, pixels.")
    y: int | None = Field(None, ge=1, le=100_000, description="Height, pixels (default: x).")
    sector: int | None = Field(None, ge=1, le=100_000, description="Sector (default: the first hosted one).")
    stretch: Annotated[Stretch, BeforeValidator(_lower)] = "asinh"
    invert: Flag = False

    @property
    def ny(self) -> int:
        return self.y if self.y is not None else self.x


class FrameParams(PreviewParams):
    """One frame of the page's cutout, as a PNG."""

    frame: int = Field(0, ge=0, le=10_000_000, description="Frame (cadence) index, 0-based.")


# a name the routers and the planners share for a plain declination
DecField = Dec
