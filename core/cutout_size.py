"""Cutout sizes and size limits, parsed once and passed into the engine.

:class:`CutoutSize` is the one parser of a requested cutout size, for every caller: the
astrocut-style functions (an int, ``[nx, ny]``, an angular or pixel Quantity, or a pair of them),
the command line (numbers and a unit name) and the service's request models (``x``, ``y`` and
``units``). A size stays as asked (pixels or degrees, x first) until a WCS turns it into pixels
with :meth:`CutoutSize.pixels`. :class:`Limits` is the one set of size limits; the engine checks it
against the window it really cuts (after astrocut's rounding), so an angular size cannot slip past
a pixel limit.

Follows astrocut: a two-element size is x-first in practice (``[200, 300]`` gives a cutout 200
pixels wide and 300 high), although astrocut's docstring says (ny, nx); fractional pixel sizes are
kept fractional (the window's edges are rounded, as astrocut rounds them).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from core.errors import InputWarning, InvalidInputError, TooLargeError
from core.host import physical_memory

__all__ = ["MAX_PIXELS", "PIXEL_UNITS", "UNIT_DEGREES", "CutoutSize", "Limits", "first_two"]

#: no cutout side, in pixels, is ever placed beyond this (any limit refuses it later; beyond it an
#: angular size divided by a tiny or zero pixel scale would reach infinity, which no window holds)
MAX_PIXELS = 1e9
#: unit names for pixels
PIXEL_UNITS = ("px", "pix", "pixel", "pixels")
#: angular unit names (TESScut's one-letter names, and spelled out) -> degrees per unit
UNIT_DEGREES: dict[str, float] = {
    **dict.fromkeys(("d", "deg", "degree", "degrees"), 1.0),
    **dict.fromkeys(("m", "arcmin"), 1.0 / 60.0),
    **dict.fromkeys(("s", "arcsec"), 1.0 / 3600.0),
}


def first_two(values: Any) -> Any:
    """The first two elements of a cutout size, warning as astrocut does when there are more
    (:class:`~core.errors.InputWarning`, "Too many dimensions in cutout size, only the first two
    will be used."); fewer are returned as they are."""
    if len(values) > 2:
        warnings.warn("Too many dimensions in cutout size, only the first two will be used.", InputWarning,
                      stacklevel=3)
        return values[:2]
    return values


def _number(value: Any, field: str) -> float:
    if isinstance(value, (bool, np.bool_, str, bytes)):
        raise InvalidInputError(f"cannot read {value!r} as a cutout size", field=field)
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise InvalidInputError(f"cannot read {value!r} as a cutout size", field=field) from None
    if not math.isfinite(number):
        raise InvalidInputError("a cutout size must be a finite number", field=field)
    if number <= 0:
        raise InvalidInputError(f"a cutout size must be positive, got {number:g}", field=field)
    return number


def _quantity(value: Any, field: str) -> tuple[float, str]:
    """(value, "pix" or "deg") of an astropy Quantity."""
    from astropy import units as u

    unit = value.unit
    if unit.physical_type == "angle":
        return _number(value.to_value(u.deg), field), "deg"
    if unit in (u.pix, u.dimensionless_unscaled):
        return _number(value.value, field), "pix"
    raise InvalidInputError(f"unit {unit} is neither angular nor pixels", field=field)


@dataclass(frozen=True)
class CutoutSize:
    """A requested cutout size, x (columns) then y (rows), each in pixels or in degrees.

    Build it with :meth:`parse` (astrocut-style values) or :meth:`from_numbers` (numbers and a
    unit name, as the command line and the service get them).
    """

    x: float
    y: float
    unit: Literal["pix", "deg"] = "pix"
    #: the unit of y when it differs from x's (astrocut allows ``[4 * u.arcsec, 5]``)
    y_unit: Literal["pix", "deg"] | None = None

    @property
    def units(self) -> tuple[str, str]:
        """The units of x and y."""
        return self.unit, self.y_unit or self.unit

    # -- parsing ----------------------------------------------------------------------------
    @classmethod
    def parse(cls, value: Any, *, field: str = "cutout_size") -> CutoutSize:
        """Read an astrocut ``cutout_size``: an int or float (pixels), ``[x, y]``, an angular or
        pixel Quantity (scalar or two elements), or a pair of Quantities.

        As astrocut: a size of more than two elements warns (:class:`~core.errors.InputWarning`)
        and its first two are used.

        Raises
        ------
        InvalidInputError
            Non-numeric, non-finite or non-positive values, units that are neither angular nor
            pixels, no elements, or a pair mixing pixels and angles.
        """
        if isinstance(value, CutoutSize):
            return value
        try:
            from astropy import units as u
        except ImportError:  # pragma: no cover - astropy is a dependency
            u = None
        if u is not None and isinstance(value, u.Quantity):
            flat = np.atleast_1d(value)
            if flat.ndim != 1 or flat.size == 0:
                raise InvalidInputError("a cutout size has one or two elements", field=field)
            flat = first_two(flat)
            parts = [_quantity(flat[0], field), _quantity(flat[-1], field)]
        elif np.isscalar(value) and not isinstance(value, (str, bytes)):
            number = _number(value, field)
            parts = [(number, "pix"), (number, "pix")]
        else:
            if isinstance(value, (str, bytes)):
                raise InvalidInputError(f"cannot read {value!r} as a cutout size", field=field)
            try:
                items = list(value)
            except TypeError:
                raise InvalidInputError(f"cannot read {value!r} as a cutout size", field=field) from None
            if len(items) == 1:
                items = items * 2
            if len(items) < 2:
                raise InvalidInputError("a cutout size has one or two elements", field=field)
            items = first_two(items)
            parts = [
                _quantity(v, field) if u is not None and isinstance(v, u.Quantity) else (_number(v, field), "pix")
                for v in items
            ]
        (x, ux), (y, uy) = parts
        return cls(x, y, ux, None if uy == ux else uy)  # type: ignore[arg-type]

    @classmethod
    def from_numbers(cls, x: Any, y: Any = None, units: str = "px", *, field: str = "x",
                     field_y: str = "y") -> CutoutSize:
        """A size from numbers and a unit name (px, d/deg, m/arcmin, s/arcsec), y defaulting to x.

        Pixel sizes must round to at least one pixel (the command line and the service ask for
        cutouts in whole pixels; astrocut's functions, through :meth:`parse`, keep fractions)."""
        name = str(units).strip().lower()
        if name not in PIXEL_UNITS and name not in UNIT_DEGREES:
            raise InvalidInputError(
                f"unknown unit {units!r}: use px, d (deg), m (arcmin) or s (arcsec)", field="units"
            )
        vx = _number(x, field)
        vy = vx if y is None else _number(y, field_y)
        if name in PIXEL_UNITS:
            for value, fld in ((vx, field), (vy, field_y)):
                if round(value) < 1:
                    raise InvalidInputError(f"a size of {value:g} pixels rounds to 0 pixels", field=fld)
            return cls(vx, vy, "pix")
        scale = UNIT_DEGREES[name]
        return cls(vx * scale, vy * scale, "deg")

    # -- use ---------------------------------------------------------------------------------
    @property
    def is_angular(self) -> bool:
        """Whether a side is an angle (converting it needs a WCS)."""
        return "deg" in self.units

    def whole_pixels(self) -> tuple[int, int] | None:
        """(x, y) as ints for whole-pixel sizes (the common case), else None."""
        if self.units == ("pix", "pix") and float(self.x).is_integer() and float(self.y).is_integer():
            return int(self.x), int(self.y)
        return None

    def pixels(self, scales_deg: tuple[float, float] | None = None) -> tuple[float, float]:
        """The size in (possibly fractional) pixels, x then y.

        ``scales_deg`` are the image's pixel scales along x and y in degrees
        (``proj_plane_pixel_scales``); needed for angular sizes only.
        """
        out = []
        for axis, (value, unit) in enumerate(zip((self.x, self.y), self.units)):
            if unit == "pix":
                pixels = float(value)
            elif scales_deg is None:
                raise InvalidInputError("an angular size needs an image WCS", field="cutout_size")
            else:
                scale = abs(float(scales_deg[axis]))
                pixels = float(value) / scale if scale > 0 else math.inf
            if not pixels <= MAX_PIXELS:  # also NaN: one test before any window is placed from it
                label = f"{value:g} degrees" if unit == "deg" else f"{value:g} pixels"
                raise TooLargeError(f"a cutout side of {label} is more than {MAX_PIXELS:.0e} pixels on this image",
                                    field="cutout_size" if axis == 0 else "cutout_size.y")
            out.append(pixels)
        return out[0], out[1]

    def pixels_for(self, wcs: Any) -> tuple[float, float]:
        """:meth:`pixels` with the scales of an astropy WCS (in degrees per pixel)."""
        if not self.is_angular:
            return float(self.x), float(self.y)
        from astropy.wcs.utils import proj_plane_pixel_scales

        sx, sy = proj_plane_pixel_scales(wcs.celestial)[:2]
        return self.pixels((float(sx), float(sy)))

    def as_astrocut(self) -> list[Any]:
        """The size as astrocut's functions take it: ``[x, y]`` numbers, or Quantities in degrees."""
        whole = self.whole_pixels()
        if whole is not None:
            return list(whole)
        from astropy import units as u

        return [v * u.deg if unit == "deg" else v for v, unit in zip((self.x, self.y), self.units)]

    def label(self) -> str:
        """``<x>x<y>``, a ``d`` after sides in degrees, for file names."""
        ux, uy = ("d" if unit == "deg" else "" for unit in self.units)
        return f"{self.x:g}{ux}x{self.y:g}{uy}"


@dataclass(frozen=True)
class Limits:
    """Limits on a cutout's window: a side in pixels, pixels x frames, and output bytes.

    ``None`` means no limit. The engine checks them against the window it cuts; the errors name
    ``field_x``/``field_y`` (the parameters that set the size) and the limit.
    """

    max_side: int | None = None
    max_volume: int | None = None
    max_bytes: int | None = None

    @classmethod
    def engine_default(cls) -> Limits:
        """What the engine allows when the caller sets nothing: an output no bigger than this
        machine's memory (a bigger one could only fail later with MemoryError)."""
        return cls(max_bytes=physical_memory())

    def check(self, nx: int, ny: int, nframes: int = 1, *, bytes_needed: int | None = None,
              field_x: str = "cutout_size", field_y: str | None = None) -> None:
        """Raise :class:`TooLargeError` when an ``nx`` x ``ny`` window of ``nframes`` frames (and
        ``bytes_needed`` bytes of output) exceeds a limit. A height over the side limit names
        ``field_y`` (default ``<field_x>.y``: the y element of the size)."""
        field_y = field_y or f"{field_x}.y"
        if self.max_side is not None:
            for side, name, fld in ((nx, "width", field_x), (ny, "height", field_y)):
                if side > self.max_side:
                    raise TooLargeError(
                        f"a cutout {name} of {side} pixels exceeds the limit of {self.max_side} pixels "
                        "per side (max_cutout_side)",
                        field=fld,
                    )
        if self.max_volume is not None and nx * ny * nframes > self.max_volume:
            raise TooLargeError(
                f"a {nx}x{ny} cutout of {nframes} frames is {nx * ny * nframes} pixel-frames, over the "
                f"limit of {self.max_volume} (max_cutout_volume)",
                field=field_x,
            )
        if self.max_bytes is not None and bytes_needed is not None and bytes_needed > self.max_bytes:
            raise TooLargeError(
                f"a {nx}x{ny} cutout would take {bytes_needed / 1e9:.3g} GB, over the limit of "
                f"{self.max_bytes / 1e9:.3g} GB",
                field=field_x,
            )
