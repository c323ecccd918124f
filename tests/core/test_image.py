"""normalize_img and img_cut: pixel agreement with astrocut 1.4.0, names, modes, formats, metadata."""

from __future__ import annotations

import itertools
import json
import os
import warnings

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from PIL import Image

from core.errors import InvalidInputError
from core.images.cutouts import fits_cut
from core.images.render import img_cut, normalize_img

astrocut = pytest.importorskip("astrocut")

NY, NX = 50, 56


def _header() -> fits.Header:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval, w.wcs.crpix, w.wcs.cdelt = [150.0, 2.0], [28.4, 25.2], [-0.001, 0.001]
    return w.to_header()


@pytest.fixture
def rgb_files(tmp_path):
    rng = np.random.default_rng(7)
    paths = []
    for name in ("red", "green", "blue"):
        data = rng.gamma(2.0, 40.0, size=(NY, NX)).astype("f4")
        data[10:14, 20:25] += 2000  # a bright source
        path = tmp_path / f"{name}.fits"
        fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data, _header())]).writeto(path)
        paths.append(str(path))
    return paths


def _quiet(func, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return func(*args, **kwargs)


ARR = np.random.default_rng(3).gamma(2, 50, size=(40, 30))
ARR[3, 4] = np.nan
ARR[0, :5] = -5


@pytest.mark.parametrize(
    "stretch,minmax_percent,minmax_value,invert",
    list(itertools.product(["asinh", "sinh", "sqrt", "log", "linear"], [None, [0.5, 99.5], [5, 90]],
                           [None, [0, 100], [-10, 300]], [False, True])),
)
def test_normalize_img_matches_astrocut(stretch, minmax_percent, minmax_value, invert):
    ours = _quiet(normalize_img, ARR, stretch, minmax_percent, minmax_value, invert)
    theirs = _quiet(astrocut.normalize_img, ARR, stretch, minmax_percent, minmax_value, invert)
    assert ours.dtype == np.uint8 and theirs.dtype == np.uint8
    np.testing.assert_array_equal(ours, theirs)


def test_normalize_img_defaults_and_nan_colour():
    arr = np.array([[0.0, 1.0], [np.nan, 4.0]])
    out = normalize_img(arr, stretch="linear")  # min-max interval by default
    assert out.tolist() == [[0, 63], [0, 255]]  # NaN renders as 0 (black)
    inv = normalize_img(arr, stretch="linear", invert=True)
    assert inv.tolist() == [[255, 192], [255, 0]]  # inverted: NaN is white
    assert normalize_img(arr, stretch="LINEAR").tolist() == out.tolist()


@pytest.mark.parametrize(
    "kwargs,field",
    [({"stretch": "cubic"}, "stretch"), ({"minmax_percent": [1]}, "minmax_percent"),
     ({"minmax_percent": [-5, 200]}, "minmax_percent"), ({"minmax_value": "ab"}, "minmax_value")],
)
def test_normalize_img_bad_input(kwargs, field):
    with pytest.raises(InvalidInputError) as err:
        normalize_img(ARR, **kwargs)
    assert err.value.field == field
    with pytest.raises(InvalidInputError) as err:
        normalize_img(np.array([]))
    assert err.value.field == "img_arr"


@pytest.mark.parametrize("kwargs, field", [
    ({"img_arr": np.full((4, 4), np.nan)}, "img_arr"),
    ({"img_arr": np.ones((4, 4)), "stretch": ["asinh"]}, "stretch"),
    ({"img_arr": np.ones((4, 4)), "stretch": 3}, "stretch"),
    ({"img_arr": np.arange(16.0).reshape(4, 4), "minmax_percent": [99, 1]}, "minmax_percent"),
    ({"img_arr": np.arange(16.0).reshape(4, 4), "minmax_value": [10, 1]}, "minmax_value"),
    ({"img_arr": [["a", "b"]]}, "img_arr"),
])
def test_normalize_img_errors_name_the_parameter(kwargs, field):
    from core import normalize_img as public_normalize_img

    with pytest.raises(InvalidInputError) as info:
        public_normalize_img(**kwargs)
    assert info.value.field == field


def test_img_cut_verbose_prints_progress_and_timings(spoc_sector, tmp_path, capsys):
    from core import img_cut as public_img_cut
    from core.synthetic.ffis import DEMO_DEC, DEMO_RA

    public_img_cut([str(spoc_sector.ffi_files[0])], f"{DEMO_RA} {DEMO_DEC}", 5, output_dir=tmp_path, verbose=True)
    out = capsys.readouterr().out
    assert "xmin,xmax" in out and "Cutout image" in out and "Total time" in out


@pytest.mark.parametrize("img_format", ["png", "jpg"])
def test_img_cut_files_match_astrocut(rgb_files, tmp_path, img_format):
    kwargs = {"stretch": "sqrt", "minmax_percent": [1, 99], "img_format": img_format}
    ours = img_cut(rgb_files, "150.0 2.0", [20, 12], output_dir=tmp_path / "ours", **kwargs)
    theirs = _quiet(astrocut.img_cut, rgb_files, "150.0 2.0", [20, 12], output_dir=tmp_path / "theirs", **kwargs)
    assert [os.path.basename(p) for p in ours] == [os.path.basename(p) for p in theirs]
    assert os.path.basename(ours[0]) == f"red_150.0000000_2.0000000_20-x-12_astrocut_0.{img_format}"
    for a, b in zip(ours, theirs):
        with Image.open(a) as ia, Image.open(b) as ib:
            assert ia.mode == ib.mode == "L" and ia.size == ib.size == (20, 12)
            np.testing.assert_array_equal(np.asarray(ia), np.asarray(ib))


def test_img_cut_memory_equals_astrocut_default_interval(rgb_files):
    ours = img_cut(rgb_files[:1], "150.0 2.0", 15, memory_only=True)
    cutout = _quiet(astrocut.FITSCutout, rgb_files[:1], "150.0 2.0", 15)
    theirs = cutout.get_image_cutouts()  # astrocut's defaults: asinh, [0.5, 99.5]
    assert len(ours) == 1
    np.testing.assert_array_equal(np.asarray(ours[0]), np.asarray(theirs[0]))


def test_img_is_flipped_north_up(rgb_files):
    (img,) = img_cut(rgb_files[:1], "150.0 2.0", [20, 12], stretch="linear", minmax_value=[0, 5000],
                     memory_only=True)
    (cut,) = fits_cut(rgb_files[0], "150.0 2.0", [20, 12], memory_only=True)
    expected = normalize_img(cut[1].data, "linear", minmax_value=[0, 5000])[::-1]
    np.testing.assert_array_equal(np.asarray(img), expected)


def test_colorize_rgb(rgb_files, tmp_path):
    path = img_cut(rgb_files, "150.0 2.0", [20, 12], colorize=True, img_format="png", output_dir=tmp_path)
    assert os.path.basename(path) == "cutout_150.0000000_2.0000000_20-x-12_astrocut.png"
    theirs = _quiet(astrocut.img_cut, rgb_files, "150.0 2.0", [20, 12], colorize=True, img_format="png",
                    output_dir=tmp_path / "theirs")
    with Image.open(path) as ours_img, Image.open(theirs) as their_img:
        assert ours_img.mode == "RGB" and ours_img.size == (20, 12)
        np.testing.assert_array_equal(np.asarray(ours_img), np.asarray(their_img))
        singles = img_cut(rgb_files, "150.0 2.0", [20, 12], memory_only=True)
        for channel, single in enumerate(singles):  # R, G, B in input order
            np.testing.assert_array_equal(np.asarray(ours_img)[..., channel], np.asarray(single))
        assert ours_img.text["input_files"] == "red.fits, green.fits, blue.fits"


@pytest.mark.parametrize("n", [1, 2, 4])
def test_colorize_needs_exactly_three(rgb_files, tmp_path, n):
    files = (rgb_files * 2)[:n]
    if n == 4:  # four distinct inputs
        extra = tmp_path / "extra.fits"
        fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.ones((NY, NX), "f4"), _header())]).writeto(extra)
        files = rgb_files + [str(extra)]
    with pytest.raises(InvalidInputError) as err:
        img_cut(files, "150.0 2.0", 10, colorize=True, memory_only=True)
    assert err.value.field == "input_files"


def test_metadata_png_text_and_jpeg_exif(rgb_files, tmp_path):
    (png,) = img_cut(rgb_files[:1], "150.0 2.0", [20, 12], img_format="png", output_dir=tmp_path)
    (jpg,) = img_cut(rgb_files[:1], "150.0 2.0", [20, 12], img_format="jpg", output_dir=tmp_path)
    with Image.open(png) as im:
        assert im.text["input_file"] == "red.fits"
        assert im.text["cutout_size_x_pix"] == "20" and im.text["cutout_size_y_pix"] == "12"
        assert float(im.text["pixel_scale_arcsec_per_pix"]) == pytest.approx(3.6)
        assert float(im.text["center_ra_deg"]) == pytest.approx(150.0)
    with Image.open(jpg) as im:
        meta = json.loads(im.getexif()[270])
        assert meta["origin"] == "STScI/MAST" and meta["cutout_size_x_pix"] == 20


def test_unknown_format_and_stretch(rgb_files, tmp_path):
    with pytest.raises(InvalidInputError) as err:
        img_cut(rgb_files, "150 2", 5, img_format="xyz", output_dir=tmp_path)
    assert err.value.field == "img_format"
    with pytest.raises(InvalidInputError) as err:
        img_cut(rgb_files, "150 2", 5, stretch="cubic", output_dir=tmp_path)
    assert err.value.field == "stretch"


def test_nan_padding_renders_black(rgb_files):
    (img,) = img_cut(rgb_files[:1], "150.024 2.0", [20, 12], memory_only=True)  # partly off the left edge
    arr = np.asarray(img)
    assert (arr[:, 0] == 0).all()
    (inv,) = img_cut(rgb_files[:1], "150.024 2.0", [20, 12], invert=True, memory_only=True)
    assert (np.asarray(inv)[:, 0] == 255).all()


def test_drop_after(rgb_files, tmp_path):
    h = _header()
    h["STOPHERE"] = 1
    h["CTYPE3"] = "BOGUS"  # would confuse the WCS if read
    path = tmp_path / "drop.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.ones((NY, NX), "f4"), h)]).writeto(path)
    out = img_cut(str(path), "150 2", 6, drop_after="STOPHERE", memory_only=True)
    assert out[0].size == (6, 6)
