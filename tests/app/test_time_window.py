"""time_min, time_max and frame_bin on the TESScut-compatible routes (/astrocut,
moving_target/astrocut) and /lightcurve, over a live uvicorn server: same answers without them,
the engine's cut with them, "no data" outside the sectors, 400s naming the field."""

from __future__ import annotations

import io
import json
import zipfile

import httpx
import numpy as np
import pytest
from astropy.io import fits

from core.cubes.cache import open_cube
from core.synthetic.ffis import DEMO_DEC, DEMO_RA
from core.tpf.cut import CutoutFactory, tpf_bytes

PREFIX = "/tesscut/api/v0.1"
POS = {"ra": DEMO_RA, "dec": DEMO_DEC}


def _members(response) -> dict[str, bytes]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.content)) as z:
        return {name: z.read(name) for name in z.namelist()}


@pytest.fixture(scope="module")
def times(service_data):
    cubes, _, _ = service_data
    return np.asarray(open_cube(str(cubes["spoc38"])).time, float)


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_without_a_window_or_with_one_holding_every_frame_nothing_changes(live_server, times, method):
    params = {**POS, "x": 6, "y": 5, "sector": "38"}
    full_window = {**params, "time_min": times[0] - 1, "time_max": times[-1] + 1, "frame_bin": 1}
    empty = {**params, "time_min": "", "time_max": "", "frame_bin": ""}  # an HTML form's unset fields
    with httpx.Client(base_url=live_server.url, timeout=60) as client:
        send = (lambda p: client.get(f"{PREFIX}/astrocut", params=p)) if method == "GET" else (
            lambda p: client.post(f"{PREFIX}/astrocut", data=p))
        plain = _members(send(params))
        assert _members(send(full_window)) == plain
        assert _members(send(empty)) == plain
    (name, data), = plain.items()
    assert name.endswith("_6x5_astrocut.fits")
    direct = CutoutFactory().cube_cut(str(live_server.cubes["spoc38"]), f"{DEMO_RA} {DEMO_DEC}", [6, 5],
                                      memory_only=True)
    assert data == tpf_bytes(direct)


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_window_and_binning_are_the_engines_cut(live_server, times, method):
    window = {"time_min": float(times[1]), "time_max": float(times[8]), "frame_bin": 3}
    params = {**POS, "x": 24, "y": 24, **window}  # 24x24x10 frames is over the volume limit; x 8 read is not
    with httpx.Client(base_url=live_server.url, timeout=60) as client:
        r = client.get(f"{PREFIX}/astrocut", params=params) if method == "GET" else client.post(
            f"{PREFIX}/astrocut", data=params)
        members = _members(r)
        assert client.get(f"{PREFIX}/astrocut", params={**POS, "x": 24, "y": 24, "sector": 38}).status_code == 413
    # sector 11's frames are years before the window: only sector 38 answers
    (name, data), = members.items()
    assert name.startswith("tess-s0038-2-2_") and name.endswith("_24x24_f1-7_bin3_astrocut.fits")
    direct = CutoutFactory().cube_cut(str(live_server.cubes["spoc38"]), f"{DEMO_RA} {DEMO_DEC}", 24,
                                      memory_only=True, **window)
    assert data == tpf_bytes(direct)
    with fits.open(io.BytesIO(data)) as hdul:
        assert hdul[1].data["FLUX"].shape == (2, 24, 24) and hdul[0].header["FRAMEBIN"] == 3


def test_window_outside_every_sector_is_no_data(live_server):
    with httpx.Client(base_url=live_server.url, timeout=60) as client:
        for params in ({**POS, "time_min": 100.0, "time_max": 101.0},
                       {**POS, "sector": 38, "time_min": 100.0, "time_max": 101.0}):
            r = client.get(f"{PREFIX}/astrocut", params=params)
            assert r.status_code == 200 and r.headers["content-type"] == "application/json"
            body = r.json()
            assert body["results"] == [] and "time window" in body["msg"]


@pytest.mark.parametrize("params,field", [
    ({"time_min": 2333.3, "time_max": 2333.2}, "time_max"),
    ({"time_min": "nan"}, "time_min"),
    ({"time_max": "inf"}, "time_max"),
    ({"time_min": "yesterday"}, "time_min"),
    ({"frame_bin": 0}, "frame_bin"),
    ({"frame_bin": 2.5}, "frame_bin"),
    ({"frame_bin": 11, "sector": 38}, "frame_bin"),  # above the cube's 10 frames
    ({"frame_bin": 3, "time_min": 2333.305, "sector": 38}, "frame_bin"),  # above the window's 2 frames
])
@pytest.mark.parametrize("route", ["astrocut", "lightcurve"])
def test_bad_values_are_400s_naming_the_field(live_server, params, field, route):
    with httpx.Client(base_url=live_server.url, timeout=60) as client:
        for r in (client.get(f"{PREFIX}/{route}", params={**POS, **params}),
                  client.post(f"{PREFIX}/{route}", data={**POS, **params})):
            assert r.status_code == 400, r.text
            assert r.json()["error"]["field"] == field


def test_moving_target_takes_a_window(live_server, spoc_sector):
    t0, t1 = float(spoc_sector.tstart[0]), float(spoc_sector.tstop[-1])
    ephemeris = json.dumps({"time": [t0, t1], "ra": [DEMO_RA - 0.005, DEMO_RA + 0.005], "dec": [DEMO_DEC, DEMO_DEC]})
    params = {"ephemeris": ephemeris, "x": 5, "y": 5, "sector": 38}
    with httpx.Client(base_url=live_server.url, timeout=60) as client:
        plain = _members(client.post(f"{PREFIX}/moving_target/astrocut", data=params))
        binned = _members(client.post(f"{PREFIX}/moving_target/astrocut", data={**params, "frame_bin": 2}))
        outside = client.post(f"{PREFIX}/moving_target/astrocut", data={**params, "time_max": 100.0})
    (plain_tpf,), (binned_tpf,) = plain.values(), binned.values()
    with fits.open(io.BytesIO(plain_tpf)) as a, fits.open(io.BytesIO(binned_tpf)) as b:
        assert len(a[1].data) == 10 and len(b[1].data) == 5
        assert np.allclose(b[1].data["TIME"], a[1].data["TIME"].reshape(5, 2).mean(axis=1))
        assert np.allclose(b[1].data["TGT_RA"], a[1].data["TGT_RA"].reshape(5, 2).mean(axis=1), atol=1e-6)
    assert outside.status_code == 200 and outside.json()["results"] == []


def test_lightcurve_window_and_binning(live_server, times):
    base = {**POS, "sector": 38, "aperture": 3}
    with httpx.Client(base_url=live_server.url, timeout=60) as client:
        plain = client.get(f"{PREFIX}/lightcurve", params=base).json()
        binned = client.get(f"{PREFIX}/lightcurve", params={**base, "time_min": float(times[2]), "frame_bin": 2})
        csv = client.get(f"{PREFIX}/lightcurve", params={**base, "frame_bin": 5, "format": "csv"})
        outside = client.get(f"{PREFIX}/lightcurve", params={**base, "time_min": 100.0, "time_max": 101.0})
    assert "frame_bin" not in plain and plain["cadences"] == 10
    body = binned.json()
    assert (body["cadences"], body["frame_bin"], body["frames"]) == (4, 2, [2, 10])
    expected = np.asarray(plain["flux"][2:10], float).reshape(4, 2).mean(axis=1)
    assert np.allclose(body["flux"], expected, rtol=1e-6)
    assert csv.text.count("\n") == 3 and "_f0-10_bin5.csv" in csv.headers["content-disposition"]
    assert outside.status_code == 404 and outside.json()["error"]["field"] == "time_min"


@pytest.mark.browser
def test_the_page_offers_the_window_and_the_binning(live_server, times):
    """In Chromium: a window and a binning typed in the form reach the light curve (fewer points),
    its frame slider (each cadence shows its first cube frame) and the download links."""
    from tests.app.test_lightcurve_view import CHROMIUM, CHROMIUM_ARGS

    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent (apt-get install chromium): the browser test needs it")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            problems: list[str] = []
            page.on("pageerror", lambda exc: problems.append(str(exc)))
            page.goto(live_server.url + "/", wait_until="networkidle")
            page.wait_for_function("document.querySelectorAll('#sector option[value=\"38\"]').length === 1")
            page.select_option("#sector", "38")
            page.wait_for_function("() => document.querySelectorAll('#lc-plot circle.pt').length === 10")
            page.fill("#time-min", repr(float(times[2])))
            page.fill("#frame-bin", "2")
            page.wait_for_function("() => document.querySelectorAll('#lc-plot circle.pt').length === 4")
            assert "4 cadences" in page.inner_text("#lc-caption")
            href = page.get_attribute("#download-zip", "href")
            assert "frame_bin=2" in href and "time_min=" in href and "sector=38" in href
            assert "frame_bin=2" in page.get_attribute("#lc-json", "href")
            assert "frame_bin=2" in page.inner_text("#curl-cmd")
            page.focus("#frame-slider")
            page.keyboard.press("ArrowRight")
            # cadence 1 of the window starting at frame 2, two frames a cadence: cube frame 4
            page.wait_for_function("() => { const i = document.getElementById('frame');"
                                   " return i.complete && i.src.includes('frame=4'); }")
            assert not problems, problems
        finally:
            browser.close()
    with httpx.Client(base_url=live_server.url, timeout=60) as client:
        assert len(_members(client.get(href))) == 1
