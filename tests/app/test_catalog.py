"""The catalog's containment test: SkyCoords and plain ICRS degrees give the same cubes."""

from __future__ import annotations

import os

import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord

from app.catalog import Catalog, radec_deg
from core.synthetic import DEMO_DEC, DEMO_RA

CENTRE = SkyCoord(DEMO_RA, DEMO_DEC, unit="deg")
# 64 px of ~21": 0.25 deg away is off the pixels but within 0.3 deg of them
OFF = CENTRE.directional_offset_by(0 * u.deg, 0.25 * u.deg)
FAR = SkyCoord(DEMO_RA + 180, -DEMO_DEC, unit="deg")


@pytest.fixture(scope="module")
def catalog(spoc_cube):
    cat = Catalog([os.path.dirname(spoc_cube)])
    assert cat.reindex() == 1
    return cat


@pytest.mark.parametrize(
    ("coord", "radius", "inside"),
    [(CENTRE, 0.0, True), (OFF, 0.0, False), (OFF, 0.3, True), (FAR, 0.3, False)],
    ids=["centre", "off", "off-within-radius", "far"],
)
def test_containing_takes_skycoords_or_degrees(catalog, coord, radius, inside):
    ra, dec = float(coord.ra.deg), float(coord.dec.deg)
    by_coord = catalog.containing(coord, radius * u.deg)
    assert [e.sector for e in by_coord] == ([38] if inside else [])
    assert catalog.containing((ra, dec), radius) == by_coord
    assert catalog.containing((ra + 360.0, dec), radius * u.deg) == by_coord  # RA wraps
    assert catalog.containing((ra - 360.0, dec), radius) == by_coord
    (entry,) = catalog.entries("SPOC")
    assert entry.contains((ra, dec), radius) is inside
    assert entry.cube.contains(coord, radius * u.deg) is entry.cube.contains_radec(ra % 360.0, dec, radius) is inside


def test_radec_deg_converts_frames():
    galactic = CENTRE.galactic
    ra, dec = radec_deg(galactic)
    assert ra == pytest.approx(DEMO_RA, abs=1e-9) and dec == pytest.approx(DEMO_DEC, abs=1e-9)
    assert radec_deg((-10.0, 5)) == (350.0, 5.0)
