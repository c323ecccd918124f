"""Sky polygons in the tangent plane: the cheap containment tests the catalogs route with.

A polygon whose edges are great circles is a straight-edged polygon in the gnomonic projection
about any point inside it, so a position is tested against a footprint with plane geometry:
project it about the footprint's centre (:func:`gnomonic`), then :func:`in_polygon` and
:func:`distance_to_polygon` (in the plane's units, radians; at least the angular distance).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["distance_to_polygon", "gnomonic", "in_polygon", "plane_polygon", "side_of_polygon"]

#: cos of the angle from the centre at and below which a point is off the projection (90 degrees)
_OFF_PROJECTION = 1e-12


def gnomonic(center: tuple[float, float], ra: Any, dec: Any) -> Any:
    """Standard coordinates (xi, eta) in radians of (ra, dec) degrees in the tangent plane about
    ``center`` (degrees): the FITS TAN (gnomonic) projection.

    Scalars give a tuple of floats, or None at 90 degrees or more from the centre (off the
    projection); numpy arrays give a tuple of arrays, NaN where off the projection.
    """
    xp: Any = np if isinstance(ra, np.ndarray) or isinstance(dec, np.ndarray) else math
    a = xp.radians(ra - center[0])
    d = xp.radians(dec)
    d0 = xp.radians(center[1])
    cos_a, cos_d = xp.cos(a), xp.cos(d)
    cos_c = xp.sin(d0) * xp.sin(d) + xp.cos(d0) * cos_d * cos_a
    if xp is math and cos_c <= _OFF_PROJECTION:
        return None
    xi = cos_d * xp.sin(a) / cos_c
    eta = (xp.cos(d0) * xp.sin(d) - xp.sin(d0) * cos_d * cos_a) / cos_c
    if xp is np:
        off = cos_c <= _OFF_PROJECTION
        if off.any():
            xi, eta = np.where(off, np.nan, xi), np.where(off, np.nan, eta)
    return xi, eta


def plane_polygon(center: tuple[float, float], vertices: Sequence[tuple[float, float]]
                  ) -> tuple[tuple[float, float], ...] | None:
    """The (ra, dec) degree ``vertices`` in the tangent plane about ``center``; None when one is off it."""
    points = [gnomonic(center, ra, dec) for ra, dec in vertices]
    if any(p is None for p in points):
        return None
    return tuple(points)  # type: ignore[arg-type]


def in_polygon(point: tuple[float, float], polygon: Sequence[tuple[float, float]]) -> bool:
    """Even-odd ray casting (points exactly on an edge may go either way: use the distance)."""
    x, y = point
    inside = False
    n = len(polygon)
    for i in range(n):
        x1, y1 = polygon[i]
        x2, y2 = polygon[(i + 1) % n]
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            inside = not inside
    return inside


def distance_to_polygon(point: tuple[float, float], polygon: Sequence[tuple[float, float]]) -> float:
    """Shortest distance from ``point`` to the polygon's edges, in the plane's units."""
    px, py = point
    best = math.inf
    n = len(polygon)
    for i in range(n):
        x1, y1 = polygon[i]
        x2, y2 = polygon[(i + 1) % n]
        dx, dy = x2 - x1, y2 - y1
        length2 = dx * dx + dy * dy
        t = 0.0 if length2 == 0 else max(0.0, min(1.0, ((px - x1) * dx + (py - y1) * dy) / length2))
        best = min(best, math.hypot(px - (x1 + t * dx), py - (y1 + t * dy)))
    return best


def side_of_polygon(point: tuple[float, float], polygon: Sequence[tuple[float, float]]) -> float:
    """Signed distance of ``point`` from the polygon's boundary: positive inside, negative outside."""
    distance = distance_to_polygon(point, polygon)
    return distance if in_polygon(point, polygon) else -distance
