"""core.sky_polygon.gnomonic: the one tangent-plane projection, for the catalogs' scalar tests and
the TPF WCS fit's arrays alike."""

from __future__ import annotations

import math

import numpy as np
from astropy.wcs import WCS

from core.sky_polygon import gnomonic

CENTRE = (217.4, -62.7)


def _tan(center: tuple[float, float]) -> WCS:
    """A TAN WCS whose pixel coordinates are the standard coordinates in degrees."""
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = list(center)
    w.wcs.crpix = [1.0, 1.0]
    w.wcs.cd = np.eye(2)
    w.wcs.set()
    return w


def test_it_is_the_fits_tan_projection():
    rng = np.random.default_rng(3)
    ra = CENTRE[0] + rng.uniform(-15, 15, 200)
    dec = CENTRE[1] + rng.uniform(-15, 15, 200)
    x, y = _tan(CENTRE).wcs_world2pix(ra, dec, 0)
    xi, eta = gnomonic(CENTRE, ra, dec)
    np.testing.assert_allclose(np.degrees(xi), x, rtol=0, atol=1e-9)
    np.testing.assert_allclose(np.degrees(eta), y, rtol=0, atol=1e-9)


def test_scalars_and_arrays_agree():
    ra = np.array([CENTRE[0], CENTRE[0] + 3.0, 359.9, 0.1, CENTRE[0] - 12.5])
    dec = np.array([CENTRE[1], CENTRE[1] + 1.0, -60.0, -61.0, CENTRE[1] - 8.0])
    xi, eta = gnomonic(CENTRE, ra, dec)
    for i in range(len(ra)):
        point = gnomonic(CENTRE, float(ra[i]), float(dec[i]))
        assert point is not None and isinstance(point[0], float)
        assert math.isclose(point[0], xi[i], rel_tol=1e-13, abs_tol=1e-15)
        assert math.isclose(point[1], eta[i], rel_tol=1e-13, abs_tol=1e-15)
    assert gnomonic(CENTRE, *CENTRE) == (0.0, 0.0)


def test_off_the_projection_is_none_for_scalars_and_nan_in_arrays():
    opposite = ((CENTRE[0] + 180.0) % 360.0, -CENTRE[1])
    assert gnomonic(CENTRE, *opposite) is None
    assert gnomonic(CENTRE, CENTRE[0], CENTRE[1] + 89.0) is not None  # 89 degrees away: still on it
    assert gnomonic(CENTRE, CENTRE[0], CENTRE[1] + 90.0) is None
    xi, eta = gnomonic(CENTRE, np.array([CENTRE[0], opposite[0]]), np.array([CENTRE[1], opposite[1]]))
    assert (xi[0], eta[0]) == (0.0, 0.0) and np.isnan(xi[1]) and np.isnan(eta[1])
