"""What a probe of the service from outside found, each as a test (the engine's items are in
tests/core/test_hardening_engine.py). Each test names the probe's item; each failed on the service
before the fixes.

The session ``live_server`` has max_cutout_side=50, max_cutout_volume=4000 and an image root with
three FFIs (img0..img2.fits); servers needing other settings are started here.
"""

from __future__ import annotations

import io
import json
import socket
import time
import zipfile
from urllib.parse import urlsplit

import httpx
import pytest

from core.synthetic.ffis import DEMO_DEC, DEMO_RA

pytestmark = pytest.mark.timeout(90)

POS = {"ra": DEMO_RA, "dec": DEMO_DEC}


def api(server, path: str) -> str:
    return f"{server.url}/api/v0.1{path}"


def error(r: httpx.Response, status: int, field: str | None) -> dict:
    assert r.status_code == status, r.text[:500]
    body = r.json()
    assert body["error"]["field"] == field, body
    assert body["msg"] == body["error"]["message"]
    return body


# -- 1. angular sizes are held to the side limit on the image routes ------------------------------


@pytest.mark.parametrize("route", ["/fits_cut", "/img_cut", "/combine"])
def test_1_angular_sizes_cannot_bypass_the_side_limit(live_server, route):
    images = live_server.images[:2]
    r = httpx.get(api(live_server, route), params={**POS, "images": images, "x": 60, "units": "d"}, timeout=60)
    body = error(r, 413, "x")
    assert "max_cutout_side" in body["msg"] and "50" in body["msg"]
    # 0.5 arcmin = 30 arcsec: 2 pixels of 21": allowed
    ok = httpx.get(api(live_server, route), params={**POS, "images": images, "x": 0.5, "units": "m"}, timeout=60)
    assert ok.status_code == 200, ok.text[:300]


# -- 2. slow clients are closed; /health keeps answering ------------------------------------------


@pytest.fixture(scope="module")
def guarded_server(service_data, tmp_path_factory):
    """The service with a 1.5 s request-head deadline and at most 20 open connections."""
    from app.main import create_app
    from app.settings import Settings

    try:
        from tests.conftest import _free_port, start_uvicorn, stop_uvicorn
    except ImportError:  # pragma: no cover
        from conftest import _free_port, start_uvicorn, stop_uvicorn

    cubes, image_root, _ = service_data
    settings = Settings(cube_dirs=[str(cubes["spoc38"].parent)], image_roots=[str(image_root)],
                        work_dir=tmp_path_factory.mktemp("guarded"), port=_free_port(), header_timeout_s=1.5,
                        keep_alive_s=1.0, max_connections=20, cors_origins=["https://pages.example.org"])
    app = create_app(settings)
    server, thread = start_uvicorn(app, settings.host, settings.port)
    try:
        yield f"http://{settings.host}:{settings.port}"
    finally:
        stop_uvicorn(server, thread)


def _connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    sock.settimeout(10)
    return sock


def _closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(65536) == b"" or True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def test_2_idle_and_slowloris_connections_are_closed_and_health_answers(guarded_server):
    idle = _connect(guarded_server)  # connects and says nothing
    slow = [_connect(guarded_server) for _ in range(8)]
    t0 = time.monotonic()
    for s in slow:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # a header, never finished
    for _ in range(4):  # trickle a byte now and then: resets an idle timer, not the head deadline
        time.sleep(0.3)
        for s in slow:
            try:
                s.sendall(b"X")
            except OSError:
                pass
        assert httpx.get(guarded_server + "/health", timeout=5).status_code == 200
    for s in [idle, *slow]:
        s.settimeout(5)
        assert _closed(s)
        s.close()
    assert time.monotonic() - t0 < 6  # 1.5 s deadline, not minutes
    assert httpx.get(guarded_server + "/health", timeout=5).status_code == 200


def test_2_connections_beyond_the_cap_are_refused(guarded_server):
    held = [_connect(guarded_server) for _ in range(20)]
    try:
        extra = _connect(guarded_server)
        extra.settimeout(5)
        answer = extra.recv(4096)
        assert answer.startswith(b"HTTP/1.1 503") and b"retry-after" in answer.lower()
        extra.close()
    finally:
        for s in held:
            s.close()
    time.sleep(0.3)
    assert httpx.get(guarded_server + "/health", timeout=5).status_code == 200


def test_2_deployment_files_bound_slow_clients():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    conf = (root / "deploy" / "nginx.conf").read_text()
    for directive in ("client_header_timeout", "client_body_timeout", "keepalive_timeout"):
        assert directive in conf


# -- 3. 500s that are bad input -------------------------------------------------------------------


def test_3_long_digit_strings_and_deep_json_and_non_ascii_names_are_not_500s(live_server):
    r = httpx.get(api(live_server, "/fits_cut"), params={**POS, "images": live_server.images[0], "x": 5,
                                                         "extension": "1" * 4400}, timeout=30)
    error(r, 400, "extension")
    r = httpx.get(api(live_server, "/moving_target/sector"), params={"ephemeris": "[" * 3000 + "]" * 3000},
                  timeout=30)
    error(r, 400, "ephemeris")
    eph = _ephemeris(live_server)
    r = httpx.get(api(live_server, "/moving_target/astrocut"),
                  params={"obj_id": "é Šteins", "ephemeris": json.dumps(eph), "x": 5, "sector": 38}, timeout=60)
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip", r.text[:300]
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        from astropy.io import fits

        (name,) = zf.namelist()
        with fits.open(io.BytesIO(zf.read(name))) as hdul:
            assert hdul[0].header["OBJECT"] == "e Steins"  # accents dropped for the ASCII card


def _ephemeris(server) -> dict:
    from core.cubes.cache import open_cube

    t = open_cube(str(server.cubes["spoc38"])).time
    return {"time": [float(t[0]), float(t[-1])], "ra": [DEMO_RA, DEMO_RA + 0.001], "dec": [DEMO_DEC, DEMO_DEC]}


# -- 4. moving targets at the path's ends -----------------------------------------------------------


def test_4_a_two_point_path_on_the_cube_gets_a_tpf(live_server):
    eph = _ephemeris(live_server)
    sectors = httpx.get(api(live_server, "/moving_target/sector"), params={"ephemeris": json.dumps(eph)}, timeout=30)
    assert [row["sector"] for row in sectors.json()["results"]] == ["0038"]
    r = httpx.get(api(live_server, "/moving_target/astrocut"),
                  params={"ephemeris": json.dumps(eph), "x": 10, "sector": 38}, timeout=60)
    assert r.headers["content-type"] == "application/zip", r.text[:300]
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        from astropy.io import fits

        with fits.open(io.BytesIO(zf.read(zf.namelist()[0]))) as hdul:
            assert len(hdul[1].data) == 10 and hdul[1].data["FLUX"].shape[1:] == (10, 10)


def test_4_a_short_path_around_one_frame_gets_its_cadences(live_server):
    from core.cubes.cache import open_cube

    t = [float(v) for v in open_cube(str(live_server.cubes["spoc38"])).time]
    times = [t[2] - 0.001, t[2], t[2] + 0.002, t[3], t[3] + 0.001, t[4]]
    eph = {"time": times, "ra": [DEMO_RA] * 6, "dec": [DEMO_DEC] * 6}
    r = httpx.get(api(live_server, "/moving_target/astrocut"),
                  params={"ephemeris": json.dumps(eph), "x": 10, "sector": 38}, timeout=60)
    assert r.headers["content-type"] == "application/zip", r.text[:300]
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        from astropy.io import fits

        with fits.open(io.BytesIO(zf.read(zf.namelist()[0]))) as hdul:
            assert len(hdul[1].data) == 3  # frames 2, 3 and 4


# -- 5. statuses and fields ------------------------------------------------------------------------


def test_5_statuses_and_the_api_field_names(live_server):
    r = httpx.get(api(live_server, "/moving_target/sector"), params={"obj_id": "Ceres"}, timeout=30)
    body = error(r, 422, "obj_id")
    assert "ephemeris" in body["msg"] and "retry-after" not in r.headers
    r = httpx.get(api(live_server, "/fits_cut"), params={**POS, "images": "a" * 300 + ".fits", "x": 5}, timeout=30)
    error(r, 400, "images")
    r = httpx.get(api(live_server, "/fits_cut"), params={**POS, "images": "missing.fits", "x": 5}, timeout=30)
    error(r, 404, "images")
    # engine names (coordinates, cutout_size, input_files) never reach the client
    r = httpx.get(api(live_server, "/fits_cut"), params={"ra": 10.0, "dec": 20.0, "images": "img0.fits", "x": 5},
                  timeout=30)
    assert error(r, 404, "ra")
    r = httpx.get(api(live_server, "/astrocut"), params={**POS, "x": 5, "y": 51}, timeout=30)
    error(r, 413, "y")


# -- 6. no server paths in error bodies --------------------------------------------------------------


def test_6_errors_show_the_users_names_not_server_paths(live_server, tmp_path):
    root = str(live_server.image_root)
    for params in ({**POS, "images": "missing.fits", "x": 5}, {"ra": 10.0, "dec": 20.0, "images": "img0.fits", "x": 5}):
        r = httpx.get(api(live_server, "/fits_cut"), params=params, timeout=30)
        assert r.status_code >= 400
        assert root not in r.text and "/tmp" not in r.text, r.text
    bad = tmp_path / "bad.fits"
    bad.write_bytes(b"SIMPLE  =                    T" + b" " * 3000)
    r = httpx.post(api(live_server, "/fits_cut"), data={**POS, "x": 5}, files=[("files", ("mine.fits", bad.read_bytes()))],
                   timeout=30)
    assert r.status_code == 422 and "upload-" not in r.text and str(live_server.settings.work_dir) not in r.text
    assert "mine.fits" in r.json()["msg"]


# -- 7. RA is range-checked --------------------------------------------------------------------------


@pytest.mark.parametrize("ra", [577.43, 1e308, -200, "nan", "inf"])
def test_7_ra_out_of_range_is_refused(live_server, ra):
    r = httpx.get(api(live_server, "/astrocut"), params={"ra": ra, "dec": DEMO_DEC, "x": 5}, timeout=30)
    error(r, 400, "ra")


def test_7_ra_in_the_documented_range_wraps(live_server):
    a = httpx.get(api(live_server, "/sector"), params={"ra": DEMO_RA - 360, "dec": DEMO_DEC}, timeout=30).json()
    b = httpx.get(api(live_server, "/sector"), params={"ra": DEMO_RA, "dec": DEMO_DEC}, timeout=30).json()
    assert a == b and a["results"]


# -- 8. HEAD and CORS ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/health", "/version", "/", "/api/v0.1/sector?ra=217.42893801&dec=-62.67949189",
                                  "/api/v0.1/astrocut?ra=217.42893801&dec=-62.67949189&x=5&sector=38"])
def test_8_head_answers_every_get_route(live_server, path):
    get = httpx.get(live_server.url + path, timeout=30)
    head = httpx.head(live_server.url + path, timeout=30)
    assert head.status_code == get.status_code == 200
    assert head.content == b"" and head.headers["content-type"] == get.headers["content-type"]


def test_8_cors_is_off_by_default_and_on_when_configured(live_server, guarded_server):
    origin = {"Origin": "https://pages.example.org"}
    plain = httpx.get(live_server.url + "/health", headers=origin, timeout=10)
    assert "access-control-allow-origin" not in plain.headers
    allowed = httpx.get(guarded_server + "/health", headers=origin, timeout=10)
    assert allowed.headers["access-control-allow-origin"] == "https://pages.example.org"
    other = httpx.get(guarded_server + "/health", headers={"Origin": "https://evil.example"}, timeout=10)
    assert "access-control-allow-origin" not in other.headers


# -- 9. user strings in file names ------------------------------------------------------------------------


@pytest.mark.parametrize("obj_id", ["..\\..\\..\\evil", "x; filename=evil.exe", '"quoted"/../up'])
def test_9_user_strings_reach_file_names_only_in_the_safe_alphabet(live_server, obj_id):
    import re

    r = httpx.get(api(live_server, "/moving_target/astrocut"),
                  params={"obj_id": obj_id, "ephemeris": json.dumps(_ephemeris(live_server)), "x": 5, "sector": 38},
                  timeout=60)
    assert r.status_code == 200, r.text[:300]
    disposition = r.headers["content-disposition"]
    assert re.fullmatch(r'attachment; filename="[A-Za-z0-9._-]+"', disposition), disposition
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        for name in zf.namelist():
            assert re.fullmatch(r"[A-Za-z0-9._-]+", name), name


# -- 10. echoes are bounded ---------------------------------------------------------------------------------


def test_10_errors_echo_the_input_briefly(live_server):
    r = httpx.post(api(live_server, "/sector"), data={**POS, "radius": "9" * 100_000}, timeout=30)
    assert r.status_code == 400
    assert len(r.content) < 4000, len(r.content)


# -- 11. API cutouts reach the metrics -----------------------------------------------------------------------


def _metric(text: str, name: str, route: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and f'route="{route}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_11_api_cutouts_are_counted(live_server):
    route = "/api/v0.1/astrocut"
    before = httpx.get(live_server.url + "/metrics", timeout=10).text
    r = httpx.get(api(live_server, "/astrocut"), params={**POS, "x": 5, "y": 4}, timeout=30)  # two sectors
    assert r.status_code == 200
    after = httpx.get(live_server.url + "/metrics", timeout=10).text
    assert _metric(after, "cutout_cutouts_total", route) - _metric(before, "cutout_cutouts_total", route) == 2
    frames = _metric(after, "cutout_cutout_pixel_frames_total", route) - _metric(
        before, "cutout_cutout_pixel_frames_total", route)
    assert frames == 5 * 4 * 20  # two cubes of 10 frames
    r = httpx.get(api(live_server, "/fits_cut"), params={**POS, "images": "img0.fits", "x": 5}, timeout=30)
    assert r.status_code == 200
    assert _metric(httpx.get(live_server.url + "/metrics", timeout=10).text, "cutout_cutouts_total",
                   "/api/v0.1/fits_cut") >= 1


# -- 12. consistent acceptance ---------------------------------------------------------------------------------


def test_12_inconsistent_acceptance_is_refused_consistently(live_server):
    images = live_server.images
    r = httpx.get(api(live_server, "/img_cut"), params={**POS, "images": images + ["img0.fits"], "x": 5,
                                                        "colorize": "true"}, timeout=30)
    error(r, 400, "images")
    for extension in ("0", "0,1"):  # the primary HDU of an FFI holds no image: refused alone or in a list
        r = httpx.get(api(live_server, "/fits_cut"), params={**POS, "images": images[0], "x": 5, "extension": extension},
                      timeout=30)
        error(r, 400, "extension")
    r = httpx.get(api(live_server, "/astrocut"), params={**POS, "x": 5, "sector": "٣٨"}, timeout=30)
    error(r, 400, "sector")
    eph = {"time": [True, False], "ra": [DEMO_RA, DEMO_RA], "dec": [DEMO_DEC, DEMO_DEC]}
    r = httpx.get(api(live_server, "/moving_target/sector"), params={"ephemeris": json.dumps(eph)}, timeout=30)
    error(r, 400, "ephemeris")
