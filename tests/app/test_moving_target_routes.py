"""The moving-target routes over a real uvicorn server: ``moving_target/sector`` and
``moving_target/astrocut`` with an explicit ephemeris (the session ``live_server`` has no resolver):
the sectors a path crosses, TPFs that follow it (also at the path's ends and around one frame),
bad ephemerides refused naming the field, and the object's name in FITS cards and file names.
"""

from __future__ import annotations

import io
import json
import re
import zipfile

import numpy as np
import pytest
from astropy.io import fits

from core.cubes.cache import open_cube
from core.synthetic.ffis import DEMO_DEC, DEMO_RA
from tests.api_calls import assert_error, call, members

pytestmark = pytest.mark.timeout(90)


def _ephemeris(cube_path):
    """A slow drift of ~6 pixels in RA across the sector's 10 frames, 6 points."""
    cube = open_cube(str(cube_path))
    t = np.asarray(cube.time, dtype=float)
    times = np.linspace(t.min(), t.max(), 6)
    ra = DEMO_RA + np.linspace(-3, 3, 6) * 21 / 3600 / np.cos(np.radians(DEMO_DEC))
    dec = np.full(6, DEMO_DEC)
    return {"time": times.tolist(), "ra": ra.tolist(), "dec": dec.tolist()}


def _two_points(server) -> dict:
    """A two-point path from the first to the last frame of sector 38, on the target."""
    t = open_cube(str(server.cubes["spoc38"])).time
    return {"time": [float(t[0]), float(t[-1])], "ra": [DEMO_RA, DEMO_RA + 0.001], "dec": [DEMO_DEC, DEMO_DEC]}


# ------------------------------------------------------------------------------------------
# paths
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_moving_target_explicit_ephemeris(live_server, method):
    eph = json.dumps(_ephemeris(live_server.cubes["spoc38"]))
    r = call(live_server, method, "/moving_target/sector", {"ephemeris": eph})
    assert [row["sectorName"] for row in r.json()["results"]] == ["tess-s0038-2-2"]
    files = members(call(live_server, method, "/moving_target/astrocut", {"ephemeris": eph, "x": 5, "y": 5}))
    assert len(files) == 1
    name, data = next(iter(files.items()))
    assert name.startswith("tess-s0038-2-2_")
    with fits.open(io.BytesIO(data)) as hdul:
        table = hdul[1].data
        assert table["FLUX"].shape[1:] == (5, 5)
        assert "TGT_X" in table.columns.names
        assert np.ptp(table["TGT_RA"]) > 0  # the window follows the target


def test_moving_target_off_data_is_200(live_server):
    eph = _ephemeris(live_server.cubes["spoc38"])
    eph["ra"] = [10.0 + i * 0.001 for i in range(6)]
    r = call(live_server, "GET", "/moving_target/astrocut", {"ephemeris": json.dumps(eph), "x": 5})
    assert r.status_code == 200 and r.json()["results"] == [] and r.json()["msg"]


def test_a_two_point_path_on_the_cube_gets_a_tpf(live_server):
    eph = _two_points(live_server)
    sectors = call(live_server, "GET", "/moving_target/sector", {"ephemeris": json.dumps(eph)})
    assert [row["sector"] for row in sectors.json()["results"]] == ["0038"]
    r = call(live_server, "GET", "/moving_target/astrocut", {"ephemeris": json.dumps(eph), "x": 10, "sector": 38})
    assert r.headers["content-type"] == "application/zip", r.text[:300]
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf, fits.open(io.BytesIO(zf.read(zf.namelist()[0]))) as hdul:
        assert len(hdul[1].data) == 10 and hdul[1].data["FLUX"].shape[1:] == (10, 10)


def test_a_short_path_around_one_frame_gets_its_cadences(live_server):
    t = [float(v) for v in open_cube(str(live_server.cubes["spoc38"])).time]
    times = [t[2] - 0.001, t[2], t[2] + 0.002, t[3], t[3] + 0.001, t[4]]
    eph = {"time": times, "ra": [DEMO_RA] * 6, "dec": [DEMO_DEC] * 6}
    r = call(live_server, "GET", "/moving_target/astrocut", {"ephemeris": json.dumps(eph), "x": 10, "sector": 38})
    assert r.headers["content-type"] == "application/zip", r.text[:300]
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf, fits.open(io.BytesIO(zf.read(zf.namelist()[0]))) as hdul:
        assert len(hdul[1].data) == 3  # frames 2, 3 and 4


# ------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------


def test_moving_target_by_name_needs_resolver(live_server):
    r = call(live_server, "GET", "/moving_target/sector", {"obj_id": "Eleonora", "obj_type": "small_body"})
    body = assert_error(r, 422, "obj_id")  # permanent: no Retry-After inviting endless retries
    assert "ephemeris" in body["msg"] and "retry-after" not in r.headers
    assert_error(call(live_server, "POST", "/moving_target/astrocut", {"x": 5}), 400, None)
    assert_error(call(live_server, "GET", "/moving_target/sector", {"ephemeris": "{bad"}), 400, "ephemeris")


def test_a_deeply_nested_ephemeris_is_400_not_a_recursion_error(live_server):
    r = call(live_server, "GET", "/moving_target/sector", {"ephemeris": "[" * 3000 + "]" * 3000})
    assert_error(r, 400, "ephemeris")


def test_ephemeris_times_that_are_booleans_are_400(live_server):
    eph = {"time": [True, False], "ra": [DEMO_RA, DEMO_RA], "dec": [DEMO_DEC, DEMO_DEC]}
    r = call(live_server, "GET", "/moving_target/sector", {"ephemeris": json.dumps(eph)})
    assert_error(r, 400, "ephemeris")


# ------------------------------------------------------------------------------------------
# the object's name
# ------------------------------------------------------------------------------------------


def test_a_non_ascii_object_name_becomes_an_ascii_object_card(live_server):
    r = call(live_server, "GET", "/moving_target/astrocut",
             {"obj_id": "é Šteins", "ephemeris": json.dumps(_two_points(live_server)), "x": 5, "sector": 38})
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip", r.text[:300]
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        (name,) = zf.namelist()
        with fits.open(io.BytesIO(zf.read(name))) as hdul:
            assert hdul[0].header["OBJECT"] == "e Steins"  # accents dropped for the ASCII card


@pytest.mark.parametrize("obj_id", ["..\\..\\..\\evil", "x; filename=evil.exe", '"quoted"/../up'])
def test_object_names_reach_file_names_only_in_the_safe_alphabet(live_server, obj_id):
    r = call(live_server, "GET", "/moving_target/astrocut",
             {"obj_id": obj_id, "ephemeris": json.dumps(_two_points(live_server)), "x": 5, "sector": 38})
    assert r.status_code == 200, r.text[:300]
    disposition = r.headers["content-disposition"]
    assert re.fullmatch(r'attachment; filename="[A-Za-z0-9._-]+"', disposition), disposition
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        for name in zf.namelist():
            assert re.fullmatch(r"[A-Za-z0-9._-]+", name), name
