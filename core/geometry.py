"""Shared cutout geometry: parsing positions and sizes, and pixel-window arithmetic.

Follows astrocut's conventions: a two-element ``cutout_size`` is x-first in practice
(``[200, 300]`` gives a cutout 200 pixels wide and 300 high), although astrocut's docstring says
(ny, nx); we follow the behaviour because users' scripts depend on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales

from core.errors import InvalidInputError, TooLargeError


def parse_coordinates(coordinates: Any, *, field: str = "coordinates") -> SkyCoord:
    """Turn a SkyCoord, ``"ra dec"`` string (degrees) or (ra, dec) pair into an ICRS SkyCoord.

    Raises
    ------
    InvalidInputError
        When the value cannot be read as a sky position, or Dec is outside [-90, 90].
    """
    if isinstance(coordinates, SkyCoord):
        coord = coordinates
    else:
        try:
            if isinstance(coordinates, str):
                parts = coordinates.replace(",", " ").split()
                if len(parts) != 2:
                    raise ValueError("expected two numbers")
                ra, dec = (float(p) for p in parts)
            else:
                ra, dec = (float(v) for v in coordinates)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(
                f"cannot read {coordinates!r} as a sky position: give 'RA Dec' in degrees ({exc})",
                field=field,
            ) from None
        if not (np.isfinite(ra) and np.isfinite(dec)):
            raise InvalidInputError("RA and Dec must be finite numbers", field=field)
        if not -90.0 <= dec <= 90.0:
            raise InvalidInputError(f"Dec {dec} is outside [-90, 90] degrees", field=field)
        coord = SkyCoord(ra % 360.0, dec, unit="deg", frame="icrs")
    if not coord.isscalar:
        raise InvalidInputError("give a single sky position", field=field)
    return coord.icrs


def _as_quantity_pair(cutout_size: Any) -> list[Any]:
    if isinstance(cutout_size, u.Quantity):
        values = np.atleast_1d(cutout_size)
        return [values[0], values[-1]] if values.size in (1, 2) else list(values)
    if np.isscalar(cutout_size):
        return [cutout_size, cutout_size]
    values = list(cutout_size)
    if len(values) == 1:
        values = values * 2
    return values


@dataclass(frozen=True)
class PixelSize:
    """A cutout size in whole pixels: ``nx`` columns by ``ny`` rows."""

    nx: int
    ny: int


def parse_cutout_size(
    cutout_size: Any,
    wcs: WCS | None = None,
    *,
    max_side: int | None = None,
    field: str = "cutout_size",
) -> PixelSize:
    """Turn an int, ``[nx, ny]`` pair or angular Quantity into a whole-pixel size.

    Angular sizes are converted with the pixel scale of ``wcs`` and rounded up (as astrocut does), so
    a cutout is never smaller than asked. Pixel sizes must be whole numbers >= 1.

    Raises
    ------
    InvalidInputError
        For sizes < 1, non-numeric values, or angular sizes without a WCS.
    TooLargeError
        When a side exceeds ``max_side``.
    """
    try:
        values = _as_quantity_pair(cutout_size)
    except TypeError:
        raise InvalidInputError(f"cannot read {cutout_size!r} as a cutout size", field=field) from None
    if len(values) != 2:
        raise InvalidInputError("a cutout size has one or two elements", field=field)
    pixels: list[int] = []
    scales = None
    for axis, value in enumerate(values):
        if isinstance(value, u.Quantity):
            if value.unit.physical_type == "angle":
                if wcs is None:
                    raise InvalidInputError("an angular size needs an image WCS", field=field)
                if scales is None:
                    scales = proj_plane_pixel_scales(wcs.celestial) * u.deg
                npix = float((value / scales[axis]).decompose().value)
                number = int(np.ceil(npix - 1e-9)) if np.isfinite(npix) else -1
            elif value.unit in (u.pix, u.dimensionless_unscaled):
                number = _whole(value.value, field)
            else:
                raise InvalidInputError(f"unit {value.unit} is neither angular nor pixels", field=field)
        else:
            number = _whole(value, field)
        if number < 1:
            raise InvalidInputError(f"cutout size must be at least 1 pixel, got {value}", field=field)
        check_side(number, max_side, field)
        pixels.append(number)
    return PixelSize(nx=pixels[0], ny=pixels[1])


def check_side(number: int, max_side: int | None, field: str = "cutout_size") -> None:
    """Raise ``TooLargeError`` (naming ``field``) when a side of ``number`` pixels exceeds ``max_side``."""
    if max_side is not None and number > max_side:
        raise TooLargeError(f"cutout side of {number} pixels exceeds the limit of {max_side}", field=field)


def _whole(value: Any, field: str) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"cannot read {value!r} as a number of pixels", field=field) from None
    if not np.isfinite(number):
        raise InvalidInputError("cutout size must be finite", field=field)
    if number != int(number):
        # astrocut rounds fractional pixel sizes; we do the same, to the nearest whole pixel.
        number = round(number)
    return int(number)


@dataclass(frozen=True)
class Window:
    """A pixel window ``[x0, x1) x [y0, y1)`` in 0-based array indices, possibly off the image."""

    x0: int
    x1: int
    y0: int
    y1: int

    @property
    def nx(self) -> int:
        return self.x1 - self.x0

    @property
    def ny(self) -> int:
        return self.y1 - self.y0

    def clip(self, nx: int, ny: int) -> Window:
        """The part of this window inside an ``nx`` x ``ny`` image (may be empty; itself when
        it is all inside)."""
        if self.x0 >= 0 and self.y0 >= 0 and self.x1 <= nx and self.y1 <= ny:
            return self
        return Window(max(self.x0, 0), min(self.x1, nx), max(self.y0, 0), min(self.y1, ny))

    @property
    def empty(self) -> bool:
        return self.x1 <= self.x0 or self.y1 <= self.y0


def centered_window(x: float, y: float, size: PixelSize | tuple[float, float]) -> Window:
    """The window of ``size`` around 0-based pixel position (x, y), as astrocut 1.4.0 places it.

    astrocut (``Cutout._get_cutout_limits``, rounding 'round') takes, per axis,
    ``lo = round(c - n/2)``, ``hi = round(c + n/2)`` with numpy's round-half-to-even, and when the
    two coincide (n < 1) ``lo = floor(c)``, ``hi = lo + 1``. We do the same so that windows (and
    so pixels) match astrocut's exactly; in the rare case where ``c - n/2`` falls exactly on a
    half pixel the window is then one pixel narrower or wider than ``n``, as in astrocut.
    ``size`` is a :class:`PixelSize` or an ``(nx, ny)`` pair of (possibly fractional) pixels, e.g.
    from an angular size.
    """
    if isinstance(size, PixelSize):
        sx, sy = float(size.nx), float(size.ny)
    else:
        sx, sy = float(size[0]), float(size[1])
    # Python's round() of a float is round-half-to-even, as numpy's (and ~20x cheaper here)
    x0, x1 = round(x - sx / 2.0), round(x + sx / 2.0)
    if x0 == x1:
        x0 = math.floor(x)
        x1 = x0 + 1
    y0, y1 = round(y - sy / 2.0), round(y + sy / 2.0)
    if y0 == y1:
        y0 = math.floor(y)
        y1 = y0 + 1
    return Window(x0, x1, y0, y1)
