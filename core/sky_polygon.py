"""Sky polygons in the tangent plane: the cheap containment tests the catalogs route with.

A polygon whose edges are great circles is a straight-edged polygon in the gnomonic projection
about any point inside it, so a position is tested against a footprint with plane geometry:
project it about the footprint's centre (:func:`gnomonic`), then :func:`in_polygon` and
:func:`distance_to_polygon` (in the plane's units, radians; at least the angular distance).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["distance_to_polygon", "gnomonic", "in_polygon", "plane_polygon", "side_of_polygon"]


def gnomonic(center: tuple[float, float], ra: float, dec: float) -> tuple[float, float] | None:
    """(xi, eta) radians of (ra, dec) degrees in the tangent plane about ``center`` (degrees);
    None at 90 degrees or more from the centre (off the projection)."""
    ra0, dec0 = math.radians(center[0]), math.radians(center[1])
    r, d = math.radians(ra), math.radians(dec)
    cos_c = math.sin(dec0) * math.sin(d) + math.cos(dec0) * math.cos(d) * math.cos(r - ra0)
    if cos_c <= 1e-12:
        return None
    xi = math.cos(d) * math.sin(r - ra0) / cos_c
    eta = (math.cos(dec0) * math.sin(d) - math.sin(dec0) * math.cos(d) * math.cos(r - ra0)) / cos_c
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
