"""fits_cut, img_cut and combine over a real uvicorn server."""

from __future__ import annotations

import io
import zipfile

import httpx
import numpy as np
import pytest
from astropy.io import fits
from PIL import Image

from core.images.cutouts import fits_cut
from core.synthetic.ffis import DEMO_DEC, DEMO_RA

POS = {"ra": DEMO_RA, "dec": DEMO_DEC}


def call(server, method, path, params, files=None):
    url = f"{server.url}/api/v0.1{path}"
    if method == "GET":
        return httpx.get(url, params=params, timeout=60)
    return httpx.post(url, data=params, files=files, timeout=60)


def error_field(r, status):
    assert r.status_code == status, r.text
    return r.json()["error"]["field"]


def error(r, status, field):
    """The error body, checked: its status, the field it names, ``msg`` repeating the message."""
    assert error_field(r, status) == field, r.text
    body = r.json()
    assert body["msg"] == body["error"]["message"]
    return body


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_fits_cut_matches_engine(live_server, method):
    r = call(live_server, method, "/fits_cut", {**POS, "images": live_server.images[:2], "x": 8, "y": 6})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/fits"
    paths = [str(live_server.image_root / n) for n in live_server.images[:2]]
    expected = fits_cut(paths, f"{DEMO_RA} {DEMO_DEC}", [8, 6], memory_only=True)[0]
    with fits.open(io.BytesIO(r.content)) as hdul:
        assert len(hdul) == 3
        for got, want in zip(hdul[1:], expected[1:]):
            assert got.data.shape == (6, 8)
            np.testing.assert_array_equal(got.data, want.data)


def test_fits_cut_zip_per_input_and_upload(live_server):
    r = call(live_server, "GET", "/fits_cut", {**POS, "images": live_server.images[:2], "x": 5, "single_outfile": "false"})
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        assert len(zf.namelist()) == 2
    data = (live_server.image_root / live_server.images[0]).read_bytes()
    r = call(live_server, "POST", "/fits_cut", {**POS, "x": 5}, files=[("files", ("mine.fits", data))])
    assert r.status_code == 200, r.text
    with fits.open(io.BytesIO(r.content)) as hdul:
        assert hdul[1].data.shape == (5, 5)


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize(
    "image", ["../../etc/passwd", "/etc/passwd", "file:///etc/passwd", "http://example.com/a.fits", "s3://x/y.fits"]
)
def test_paths_outside_roots_are_403(live_server, method, image):
    assert error_field(call(live_server, method, "/fits_cut", {**POS, "images": image, "x": 5}), 403) == "images"


def test_image_input_errors(live_server):
    assert error_field(call(live_server, "GET", "/fits_cut", {**POS, "x": 5}), 400) == "images"
    error_field(call(live_server, "GET", "/fits_cut", {**POS, "images": "nope.fits", "x": 5}), 404)
    many = {**POS, "images": ["img0.fits"] * 17, "x": 5}
    assert error_field(call(live_server, "GET", "/fits_cut", many), 413) == "images"
    assert error_field(call(live_server, "GET", "/fits_cut", {**POS, "images": "img0.fits", "x": 51}), 413) == "x"
    r = call(live_server, "GET", "/fits_cut", {"ra": 10, "dec": 10, "images": "img0.fits", "x": 5})
    assert r.status_code == 404 and r.json()["error"]["code"] == "no_data"
    big = b"\0" * 2_100_000  # over max_upload_bytes (2 MB in the test server)
    r = call(live_server, "POST", "/fits_cut", {**POS, "x": 5}, files=[("files", ("big.fits", big))])
    assert error_field(r, 413) == "body"
    r = call(live_server, "POST", "/fits_cut", {**POS, "x": 5}, files=[("files", ("bad.fits", b"SIMPLE  = junk"))])
    assert r.status_code in (400, 422), r.text


def test_fits_cut_extension_of_thousands_of_digits_is_400(live_server):
    # int() refuses 4,300 digits or more with a ValueError of its own: still a 400 naming the field
    r = call(live_server, "GET", "/fits_cut", {**POS, "images": live_server.images[0], "x": 5, "extension": "1" * 4400})
    error(r, 400, "extension")


@pytest.mark.parametrize("extension", ["0", "0,1"])
def test_fits_cut_of_the_primary_hdu_of_an_ffi_is_400_alone_or_listed(live_server, extension):
    # the primary HDU of an FFI holds no image: refused alone or in a list, not skipped in one case
    r = call(live_server, "GET", "/fits_cut", {**POS, "images": live_server.images[0], "x": 5, "extension": extension})
    error(r, 400, "extension")


def test_img_cut_single_image_is_inline_png(live_server):
    r = call(live_server, "GET", "/img_cut", {**POS, "images": "img0.fits", "x": 12, "y": 10})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    assert r.headers["content-disposition"].startswith("inline")
    img = Image.open(io.BytesIO(r.content))
    assert img.size == (12, 10) and img.mode == "L"
    r = call(live_server, "POST", "/img_cut", {**POS, "images": "img0.fits", "x": 12, "img_format": "JPG", "invert": "true"})
    assert r.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(r.content)).format == "JPEG"


def test_img_cut_several_and_colorize(live_server):
    r = call(live_server, "GET", "/img_cut", {**POS, "images": live_server.images, "x": 8})
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        assert len(zf.namelist()) == 3
    r = call(live_server, "GET", "/img_cut", {**POS, "images": live_server.images, "x": 8, "colorize": "true"})
    assert Image.open(io.BytesIO(r.content)).mode == "RGB"
    params = {**POS, "images": "img0.fits", "x": 8}
    assert error_field(call(live_server, "GET", "/img_cut", {**params, "stretch": "cubic"}), 400) == "stretch"
    assert error_field(call(live_server, "GET", "/img_cut", {**params, "minmax_percent": "1"}), 400) == "minmax_percent"


def test_img_cut_colorize_needs_exactly_three_images(live_server):
    r = call(live_server, "GET", "/img_cut", {**POS, "images": live_server.images + ["img0.fits"], "x": 5,
                                              "colorize": "true"})
    error(r, 400, "images")


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_combine_images_is_mean_of_cutouts(live_server, method):
    r = call(live_server, method, "/combine", {**POS, "images": live_server.images[:2], "x": 6})
    assert r.status_code == 200, r.text
    paths = [str(live_server.image_root / n) for n in live_server.images[:2]]
    cuts = fits_cut(paths, f"{DEMO_RA} {DEMO_DEC}", 6, single_outfile=False, memory_only=True)
    with fits.open(io.BytesIO(r.content)) as hdul:
        np.testing.assert_allclose(hdul[1].data, np.nanmean([c[1].data for c in cuts], axis=0), rtol=1e-6)


def test_combine_uploaded_cutouts(live_server):
    paths = [str(live_server.image_root / n) for n in live_server.images[:2]]
    uploads = []
    for i, hdul in enumerate(fits_cut(paths, f"{DEMO_RA} {DEMO_DEC}", 6, single_outfile=False, memory_only=True)):
        buf = io.BytesIO()
        hdul.writeto(buf)
        uploads.append(("files", (f"c{i}.fits", buf.getvalue())))
    r = call(live_server, "POST", "/combine", {"x": 6}, files=uploads)
    assert r.status_code == 200, r.text
    with fits.open(io.BytesIO(r.content)) as hdul:
        assert hdul[1].data.shape == (6, 6)
    assert error_field(call(live_server, "GET", "/combine", {"images": "img0.fits", "x": 6}), 400) == "ra"
