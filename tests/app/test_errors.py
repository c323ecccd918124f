"""Errors over real HTTP: the one JSON shape, the status of each kind of failure, the API's field
names (never the engine's), bounded echoes of the input, and no server path in any message.

The session ``live_server`` has max_cutout_side=50 and an image root with three FFIs (img0..img2.fits);
it has no ephemeris resolver.
"""

from __future__ import annotations

import httpx
import pytest

from core.synthetic.ffis import DEMO_DEC, DEMO_RA

pytestmark = pytest.mark.timeout(90)

POS = {"ra": DEMO_RA, "dec": DEMO_DEC}


def api(server, path: str) -> str:
    return f"{server.url}/api/v0.1{path}"


def error(r: httpx.Response, status: int, field: str | None) -> dict:
    """The error body, checked: its status, the field it names, ``msg`` repeating the message."""
    assert r.status_code == status, r.text[:500]
    body = r.json()
    assert body["error"]["field"] == field, body
    assert body["msg"] == body["error"]["message"]
    return body


def test_statuses_and_the_api_field_names(live_server):
    # a moving target by name, with no resolver configured: 422 (not a retryable 503)
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


def test_errors_show_the_users_names_not_server_paths(live_server, tmp_path):
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


def test_errors_echo_the_input_briefly(live_server):
    r = httpx.post(api(live_server, "/sector"), data={**POS, "radius": "9" * 100_000}, timeout=30)
    assert r.status_code == 400
    assert len(r.content) < 4000, len(r.content)
