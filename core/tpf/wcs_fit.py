"""A fast linear TAN fit of a cutout's WCS (what astrocut does with ``fit_wcs_from_points``).

astrocut 1.4.0 samples up to ~100 cutout pixels, maps them through the FFI's TAN-SIP WCS and fits
a linear TAN WCS with ``fit_wcs_from_points(..., proj_point='center')`` (scipy least squares on
RA/Dec, several ms). With the reference point fixed (astrocut's choice: the great-circle midpoint
of (min RA, max Dec) and (max RA, min Dec) of the samples), a linear TAN WCS is an affine map from
pixels to the tangent plane, so we project the samples gnomonically about that point and solve one
6-parameter linear least-squares problem (a pseudo-inverse computed once per cutout shape) — the same model, fitted in the
tangent plane rather than in (RA, Dec) degrees; the two agree to ~1e-4 px on TESS cutouts.

Unlike astrocut (which overwrites the WCS before measuring), WCS_MSEP and WCS_SIG are the
real residuals between the TAN-SIP and the fitted WCS over the cutout's pixels (tangent-plane
distances, on a grid of at most ~2500 pixels for big cutouts); WCS_SIG keeps astrocut 0.11.1's
definition, sqrt(sum of squared separations) in degrees.

Everything that depends only on the cutout's shape (sample points, residual grid, the
least-squares solver) is computed once per shape.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from astropy.coordinates import ICRS
from astropy.wcs import WCS
from astropy.wcs.utils import celestial_frame_to_wcs

from core.sky_polygon import gnomonic

_TEMPLATE: WCS | None = None
_MAX_CHECK = 2_500  # pixels used for the residuals; larger cutouts are sampled on a grid (edges kept)


@dataclass
class LinearFit:
    """A fitted linear TAN WCS and its residuals against the full WCS (degrees).

    ``crpix`` is 1-based (FITS), ``cd`` the 2x2 CD matrix (deg/px), ``crval`` (RA, Dec) in degrees.
    """

    crpix: np.ndarray
    cd: np.ndarray
    crval: tuple[float, float]
    max_sep: float
    sigma: float
    width: int
    height: int

    @property
    def wcs(self) -> WCS:
        """The fit as an astropy WCS (built on demand: astrocut's form, ICRS RA---TAN/DEC--TAN)."""
        w = _new_wcs()
        w.wcs.cd = self.cd
        w.wcs.crpix = self.crpix
        w.wcs.crval = self.crval
        w.pixel_shape = (self.width, self.height)
        w.wcs.set()
        return w

    def pix2world(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(RA, Dec) in degrees of 0-based cutout pixels through the linear TAN WCS."""
        dx = np.asarray(x, float) - (self.crpix[0] - 1.0)
        dy = np.asarray(y, float) - (self.crpix[1] - 1.0)
        xi = self.cd[0, 0] * dx + self.cd[0, 1] * dy
        eta = self.cd[1, 0] * dx + self.cd[1, 1] * dy
        return inverse_gnomonic(xi, eta, *self.crval)


def sample_grid(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """astrocut 1.4.0's sample pixels: every ``step``-th column/row (<= ~100 points) plus the last.

    Returns 0-based pixel x and y arrays ordered like astrocut's ``product(xvals, yvals)``.
    """
    step = 1
    while (width / step) * (height / step) > 100:
        step += 1
    xs = list(range(0, width, step))
    if xs[-1] != width - 1:
        xs.append(width - 1)
    ys = list(range(0, height, step))
    if ys[-1] != height - 1:
        ys.append(height - 1)
    gx, gy = np.meshgrid(np.array(xs, float), np.array(ys, float), indexing="ij")
    return gx.ravel(), gy.ravel()


def _reference_point(ra: np.ndarray, dec: np.ndarray) -> tuple[float, float]:
    """Great-circle midpoint of (min RA, max Dec) and (max RA, min Dec), as astrocut's fit uses."""
    (r1, r2), (d1, d2) = np.radians([ra.min(), ra.max()]).tolist(), np.radians([dec.max(), dec.min()]).tolist()
    x = math.cos(d1) * math.cos(r1) + math.cos(d2) * math.cos(r2)
    y = math.cos(d1) * math.sin(r1) + math.cos(d2) * math.sin(r2)
    z = math.sin(d1) + math.sin(d2)
    norm = math.sqrt(x * x + y * y + z * z)
    return math.degrees(math.atan2(y, x)) % 360.0, math.degrees(math.asin(z / norm))


def inverse_gnomonic(
    xi: np.ndarray, eta: np.ndarray, ra0: float, dec0: float
) -> tuple[np.ndarray, np.ndarray]:
    """(RA, Dec) in degrees of standard coordinates (xi, eta) in degrees about (ra0, dec0)."""
    x, y = np.radians(xi), np.radians(eta)
    d0 = np.radians(dec0)
    rho = np.hypot(x, y)
    c = np.arctan(rho)
    sin_c, cos_c = np.sin(c), np.cos(c)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(rho > 0, y * sin_c / np.where(rho > 0, rho, 1.0), 0.0)
    dec = np.arcsin(cos_c * np.sin(d0) + ratio * np.cos(d0))
    ra = np.radians(ra0) + np.arctan2(x * sin_c, rho * np.cos(d0) * cos_c - y * np.sin(d0) * sin_c)
    return np.degrees(ra) % 360.0, np.degrees(dec)


def _new_wcs() -> WCS:
    global _TEMPLATE
    if _TEMPLATE is None:
        _TEMPLATE = celestial_frame_to_wcs(frame=ICRS(), projection="TAN")
    return copy.deepcopy(_TEMPLATE)


@dataclass(frozen=True)
class _Points:
    """The pixels one cutout shape's fit evaluates (relative to the cutout's pixel (0, 0)):
    ``nsample`` of astrocut's sample points, then ``nextra`` points fixing a degenerate axis, then
    the residual grid; and the least-squares solver of the sample design matrix."""

    x: np.ndarray
    y: np.ndarray
    nsample: int
    nfit: int  # nsample + nextra
    solver: np.ndarray  # (3, nfit): pinv of [x, y, 1] over the fitted points


@lru_cache(maxsize=256)
def _points(width: int, height: int) -> _Points:
    px, py = sample_grid(width, height)
    nsample = px.size
    if width == 1 or height == 1:
        # Degenerate along one axis: fix the missing direction with the full WCS's local scale.
        cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
        px = np.concatenate([px, [cx, cx + 1, cx]])
        py = np.concatenate([py, [cy, cy, cy + 1]])
    nfit = px.size
    solver = np.linalg.pinv(np.column_stack([px, py, np.ones_like(px)]))
    # Residuals over the cutout's pixels (sampled on a grid for very large cutouts, edges kept).
    step = max(1, int(np.ceil(np.sqrt(width * height / _MAX_CHECK))))
    gx = np.arange(0, width, step, dtype=float)
    gy = np.arange(0, height, step, dtype=float)
    if gx[-1] != width - 1:
        gx = np.append(gx, width - 1)
    if gy[-1] != height - 1:
        gy = np.append(gy, height - 1)
    ax, ay = np.meshgrid(gx, gy, indexing="ij")
    x, y = np.concatenate([px, ax.ravel()]), np.concatenate([py, ay.ravel()])
    for a in (x, y, solver):
        a.setflags(write=False)
    return _Points(x=x, y=y, nsample=nsample, nfit=nfit, solver=solver)


def fit_linear_wcs(full_wcs: WCS, width: int, height: int, x0: int = 0, y0: int = 0) -> LinearFit:
    """Fit a linear TAN WCS to a ``width`` x ``height`` cutout whose pixel (0, 0) is FFI pixel (x0, y0).

    ``full_wcs`` is the FFI's TAN-SIP WCS (0-based pixels of the FFI). The result's pixels are the
    cutout's. Follows astrocut's sample points and reference point; see the module docstring.
    One ``all_pix2world`` call maps the sample points and the residual grid together; the
    residuals are measured in the tangent plane (identical to great-circle separations to ~1e-5
    relative at cutout scales).
    """
    pts = _points(int(width), int(height))
    ra, dec = full_wcs.all_pix2world(pts.x + x0, pts.y + y0, 0)
    ra0, dec0 = _reference_point(ra[: pts.nsample], dec[: pts.nsample])
    xi, eta = (np.degrees(v) for v in gnomonic((ra0, dec0), ra, dec))  # standard coordinates, degrees
    n = pts.nfit
    coef = pts.solver @ np.column_stack([xi[:n], eta[:n]])  # (3, 2) least-squares solution
    cd = coef[:2].T  # [[dxi/dx, dxi/dy], [deta/dx, deta/dy]]
    offset = coef[2]
    (a, b), (c, d) = cd.tolist()
    det = a * d - b * c
    if det == 0.0 or not math.isfinite(det):
        raise np.linalg.LinAlgError("singular cutout WCS")
    ox, oy = offset.tolist()
    crpix0 = np.array([-(d * ox - b * oy) / det, -(a * oy - c * ox) / det])  # 0-based reference pixel

    gx, gy = pts.x[n:], pts.y[n:]
    sep = np.hypot(
        xi[n:] - (cd[0, 0] * gx + cd[0, 1] * gy + offset[0]), eta[n:] - (cd[1, 0] * gx + cd[1, 1] * gy + offset[1])
    )  # tangent-plane residuals, degrees
    return LinearFit(
        crpix=crpix0 + 1.0,
        cd=cd,
        crval=(ra0, dec0),
        max_sep=float(sep.max()),
        sigma=float(np.sqrt(np.sum(sep**2) * (width * height) / sep.size)),  # scaled to all pixels
        width=width,
        height=height,
    )
