"""Shared cutout geometry: reading sky positions, and pixel-window arithmetic.

Sizes are read by :mod:`core.cutout_size`. Positions follow one rule everywhere: RA and Dec in
degrees (ICRS), Dec within [-90, 90], RA within [-180, 360] and wrapped into [0, 360); anything else
(non-finite values, RA 577 or 1e308) is refused rather than silently wrapped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy.coordinates import SkyCoord

from core.errors import InvalidInputError

#: the RA values accepted (degrees, then wrapped into [0, 360))
RA_RANGE = (-180.0, 360.0)


def check_radec(ra: float, dec: float, *, field: str = "coordinates", field_dec: str | None = None) -> tuple[float, float]:
    """``(ra % 360, dec)`` for finite RA in [-180, 360] and Dec in [-90, 90], else InvalidInputError."""
    if not (np.isfinite(ra) and np.isfinite(dec)):
        raise InvalidInputError("RA and Dec must be finite numbers", field=field)
    if not RA_RANGE[0] <= ra <= RA_RANGE[1]:
        raise InvalidInputError(f"RA {ra:g} is outside [-180, 360] degrees", field=field)
    if not -90.0 <= dec <= 90.0:
        raise InvalidInputError(f"Dec {dec:g} is outside [-90, 90] degrees", field=field_dec or field)
    return float(ra) % 360.0, float(dec)


def parse_coordinates(coordinates: Any, *, field: str = "coordinates") -> SkyCoord:
    """Turn a SkyCoord, ``"ra dec"`` string (degrees) or (ra, dec) pair into an ICRS SkyCoord.

    Raises
    ------
    InvalidInputError
        When the value cannot be read as a sky position, or is outside the ranges of
        :func:`check_radec`.
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
        ra, dec = check_radec(ra, dec, field=field)
        coord = SkyCoord(ra, dec, unit="deg", frame="icrs")
    if not coord.isscalar:
        raise InvalidInputError("give a single sky position", field=field)
    coord = coord.icrs
    if not (np.isfinite(coord.ra.deg) and np.isfinite(coord.dec.deg)):
        raise InvalidInputError("RA and Dec must be finite numbers", field=field)
    return coord


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


#: how window limits may be rounded (astrocut's ``limit_rounding_method``)
ROUNDINGS = {"round": round, "ceil": math.ceil, "floor": math.floor}


def centered_window(x: float, y: float, size: tuple[float, float], rounding: str = "round") -> Window:
    """The window of ``size`` around 0-based pixel position (x, y), as astrocut 1.4.0 places it.

    astrocut (``Cutout._get_cutout_limits``, rounding 'round') takes, per axis,
    ``lo = round(c - n/2)``, ``hi = round(c + n/2)`` with numpy's round-half-to-even, and when the
    two coincide (n < 1) ``lo = floor(c)``, ``hi = lo + 1``. We do the same so that windows (and
    so pixels) match astrocut's exactly; in the rare case where ``c - n/2`` falls exactly on a
    half pixel the window is then one pixel narrower or wider than ``n``, as in astrocut.
    ``size`` is an ``(nx, ny)`` pair of (possibly fractional) pixels, e.g. from an angular size. ``rounding`` "ceil" or "floor" rounds the limits that way instead
    (astrocut's other ``limit_rounding_method`` values).
    """
    sx, sy = float(size[0]), float(size[1])
    if rounding != "round":
        func = ROUNDINGS[rounding]
        lims = []
        for c, n in ((x, sx), (y, sy)):
            lo, hi = int(func(c - n / 2)), int(func(c + n / 2))
            if lo == hi:
                lo = math.floor(c)
                hi = lo + 1
            lims += [lo, hi]
        return Window(lims[0], lims[1], lims[2], lims[3])
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


@dataclass
class CutoutGeometry:
    """Where a cut lands: the requested centre (ICRS degrees), its FFI pixel and the window."""

    ra: float
    dec: float
    x: float
    y: float
    window: Window  # 0-based FFI pixels, may extend beyond the cube
    inside: Window  # the part on the cube

    @property
    def coord(self) -> SkyCoord:
        return SkyCoord(self.ra, self.dec, unit="deg", frame="icrs")
