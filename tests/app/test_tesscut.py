"""TESScut routes over a real uvicorn server: sector, astrocut, ffi_wcs (moving targets: test_moving_target_routes.py)."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS

from core.cubes.cache import open_cube
from core.synthetic.ffis import DEMO_DEC, DEMO_RA
from core.tpf.cut import build_tpf
from tests.api_calls import assert_error, call, members

PREFIXES = ["/tesscut/api/v0.1", "/api/v0.1"]
POS = {"ra": DEMO_RA, "dec": DEMO_DEC}


# ------------------------------------------------------------------------------------------
# sector
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("prefix", PREFIXES)
def test_sector_lists_hosted_cubes_as_strings(live_server, method, prefix):
    r = call(live_server, method, "/sector", {**POS, "radius": "0.0"}, prefix)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "results": [
            {"sectorName": "tess-s0011-2-2", "sector": "0011", "camera": "2", "ccd": "2"},
            {"sectorName": "tess-s0038-2-2", "sector": "0038", "camera": "2", "ccd": "2"},
        ]
    }


def test_sector_wraps_ra_in_the_documented_range(live_server):
    a = call(live_server, "GET", "/sector", {"ra": DEMO_RA - 360, "dec": DEMO_DEC}).json()
    b = call(live_server, "GET", "/sector", {"ra": DEMO_RA, "dec": DEMO_DEC}).json()
    assert a == b and a["results"]


def test_sector_tica_and_radius_units(live_server):
    r = call(live_server, "GET", "/sector", {**POS, "product": "tica"})
    assert [row["sectorName"] for row in r.json()["results"]] == ["tica-s0038-2-2"]
    # 64 px cube: a point 60 px (21 arcmin) north of the centre is outside, unless the radius reaches it
    off = SkyCoord(DEMO_RA, DEMO_DEC, unit="deg").directional_offset_by(0 * u.deg, 60 * 21 * u.arcsec)
    params = {"ra": off.ra.deg, "dec": off.dec.deg}
    assert call(live_server, "GET", "/sector", params).json()["results"] == []
    for radius in ("0.5d", "30m", "1800s", "90px", "0.5", "0.5D"):
        found = call(live_server, "GET", "/sector", {**params, "radius": radius}).json()["results"]
        assert len(found) == 2, radius


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize(
    "params, field",
    [
        ({"dec": DEMO_DEC}, "ra"),
        ({"ra": "abc", "dec": DEMO_DEC}, "ra"),
        ({"ra": DEMO_RA, "dec": 91}, "dec"),
        ({"ra": "nan", "dec": 0}, "ra"),
        ({**POS, "radius": "3q"}, "radius"),
        ({**POS, "radius": "-1"}, "radius"),
        ({**POS, "product": "HLSP"}, "product"),
    ],
)
def test_sector_bad_input_names_field(live_server, method, params, field):
    assert_error(call(live_server, method, "/sector", params), 400, field)


# ------------------------------------------------------------------------------------------
# astrocut
# ------------------------------------------------------------------------------------------


def expected_flux(path, size):
    hdul = build_tpf(open_cube(str(path)), SkyCoord(DEMO_RA, DEMO_DEC, unit="deg"), size)
    return np.asarray(hdul[1].data["FLUX"])


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_astrocut_zip_matches_engine(live_server, method):
    r = call(live_server, method, "/astrocut", {**POS, "x": 5, "y": 7, "units": "px"}, "/tesscut/api/v0.1")
    assert "accept-ranges" not in r.headers
    assert r.headers["content-disposition"] == 'attachment; filename="astrocut_217.428938_-62.679492_5x7.zip"'
    files = members(r)
    assert sorted(files) == [
        "tess-s0011-2-2_217.428938_-62.679492_5x7_astrocut.fits",
        "tess-s0038-2-2_217.428938_-62.679492_5x7_astrocut.fits",
    ]
    for name, key in (("s0011", "spoc11"), ("s0038", "spoc38")):
        data = next(v for k, v in files.items() if name in k)
        with fits.open(io.BytesIO(data)) as hdul:
            flux = np.asarray(hdul[1].data["FLUX"])
            assert flux.shape == (10, 7, 5)
            np.testing.assert_array_equal(flux, expected_flux(live_server.cubes[key], [5, 7]))


@pytest.mark.parametrize(
    "sector",
    [["38"], "38", "[38]", "[38, 99]", "38,99", ["38", "99"]],
)
def test_astrocut_sector_forms(live_server, sector):
    files = members(call(live_server, "GET", "/astrocut", {**POS, "x": 3, "y": 3, "sector": sector}))
    assert [k.split("_")[0] for k in files] == ["tess-s0038-2-2"]


def test_astrocut_unencoded_query_and_several_sectors(live_server):
    # astroquery's download_cutouts builds the query string by hand, without url-encoding
    url = f"{live_server.url}/tesscut/api/v0.1/astrocut?ra={DEMO_RA}&dec={DEMO_DEC}&y=3&x=3&units=px&sector=[11, 38]"
    files = members(httpx.get(url, timeout=60))
    assert sorted(k.split("_")[0] for k in files) == ["tess-s0011-2-2", "tess-s0038-2-2"]


def test_astrocut_angular_size_and_tica(live_server):
    files = members(call(live_server, "GET", "/astrocut", {**POS, "x": 0.02, "y": 0.02, "units": "d"}))
    for data in files.values():
        with fits.open(io.BytesIO(data)) as hdul:
            ny, nx = hdul[2].data.shape
            assert 3 <= nx <= 5 and 3 <= ny <= 5  # 72 arcsec at ~21 arcsec/px
    files = members(call(live_server, "POST", "/astrocut", {**POS, "x": 4, "y": 4, "product": "TICA"}))
    assert list(files) == ["tica-s0038-2-2_217.428938_-62.679492_4x4_astrocut.fits"]
    with fits.open(io.BytesIO(next(iter(files.values())))) as hdul:
        np.testing.assert_array_equal(hdul[1].data["FLUX"], expected_flux(live_server.cubes["tica38"], [4, 4]))


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize(
    "params",
    [
        {"ra": 10.0, "dec": 20.0, "x": 5, "y": 5},  # on no hosted cube
        {**POS, "x": 5, "y": 5, "sector": "12"},  # sector not hosted
        {"ra": 10.0, "dec": 20.0, "x": 5, "y": 5, "sector": "38"},  # hosted sector misses it
    ],
)
def test_astrocut_no_data_is_200_with_msg(live_server, method, params):
    r = call(live_server, method, "/astrocut", params)
    assert r.status_code == 200
    body = r.json()
    assert body["results"] == [] and "11, 38" in body["msg"]
    assert body["hosted_sectors"] == [11, 38]


@pytest.mark.parametrize(
    "params, status, field",
    [
        ({**POS, "x": 0, "y": 5}, 400, "x"),
        ({**POS, "x": 5, "y": -1}, 400, "y"),
        ({**POS, "x": "five"}, 400, "x"),
        ({**POS, "x": 60, "y": 5}, 413, "x"),  # max_cutout_side is 50 in the test server
        ({**POS, "x": 5, "y": 60}, 413, "y"),
        ({**POS, "x": 60.4, "y": 5}, 413, "x"),  # not whole: the units path, same answer
        ({**POS, "x": 0.4, "y": 5}, 400, "x"),  # rounds to 0 pixels
        ({**POS, "x": 30, "y": 30}, 413, "x"),  # 9000 pixel-frames > max_cutout_volume 4000
        ({**POS, "x": 5, "units": "furlong"}, 400, "units"),
        ({**POS, "x": 5, "sector": "abc"}, 400, "sector"),
        ({**POS, "x": 5, "product": "FOO"}, 400, "product"),
        ({"ra": DEMO_RA, "x": 5}, 400, "dec"),
    ],
)
def test_astrocut_bad_input(live_server, params, status, field):
    assert_error(call(live_server, "GET", "/astrocut", params), status, field)
    assert_error(call(live_server, "POST", "/astrocut", params), status, field)


@pytest.mark.parametrize("ra", [577.43, 1e308, -200, "nan", "inf"])
def test_astrocut_refuses_ra_out_of_range(live_server, ra):
    assert_error(call(live_server, "GET", "/astrocut", {"ra": ra, "dec": DEMO_DEC, "x": 5}), 400, "ra")


def test_astrocut_sector_in_other_digits_than_ascii_is_400(live_server):
    # "٣٨" is 38 in Arabic-Indic digits: int() would read it, the API takes ASCII digits only
    assert_error(call(live_server, "GET", "/astrocut", {**POS, "x": 5, "sector": "٣٨"}), 400, "sector")


# ------------------------------------------------------------------------------------------
# ffi_wcs
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_ffi_wcs_hosted_cube(live_server, method):
    r = call(live_server, method, "/ffi_wcs", {"sector": 38, "camera": 2, "ccd": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["source"] == "cube"
    wcs = WCS(body["wcs"], relax=True)
    cube = open_cube(str(live_server.cubes["spoc38"]))
    x, y = wcs.all_world2pix(DEMO_RA, DEMO_DEC, 0)
    cx, cy = cube.wcs.all_world2pix(DEMO_RA, DEMO_DEC, 0)
    assert abs(x - cx) < 1e-6 and abs(y - cy) < 1e-6
    assert wcs.sip is not None


def test_ffi_wcs_unhosted_from_tesswcs_and_404(live_server):
    r = call(live_server, "GET", "/ffi_wcs", {"sector": 12, "camera": 2, "ccd": 1})
    assert r.status_code == 200 and r.json()["source"] == "tesswcs"
    wcs = WCS(r.json()["wcs"], relax=True)
    x, y = wcs.all_world2pix(DEMO_RA, DEMO_DEC, 0)
    assert 0 <= x < 2136 and 0 <= y < 2078  # the demo target is on sector 12, camera 2, CCD 1
    assert_error(call(live_server, "GET", "/ffi_wcs", {"sector": 999, "camera": 1, "ccd": 1}), 404, "sector")
    assert_error(call(live_server, "GET", "/ffi_wcs", {"sector": 38, "camera": 5, "ccd": 1}), 400, "camera")
