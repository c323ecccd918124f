"""CutoutsCombiner: NaN-aware mean, custom combiners, header merging, agreement with astrocut."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from core.errors import InvalidInputError
from core.images.combine import CutoutsCombiner, build_default_combine_function
from core.images.cutouts import fits_cut

astrocut = pytest.importorskip("astrocut")


def _image(path, crpix, seed, shape=(40, 44)):
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval, w.wcs.crpix, w.wcs.cdelt = [150.0, 2.0], list(crpix), [-0.001, 0.001]
    h = w.to_header()
    h["EXTNAME"] = "SCI"
    h["FILENAME"] = path.name
    data = np.random.default_rng(seed).normal(50, 5, size=shape).astype("f4")
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data, h)]).writeto(path)
    return str(path)


@pytest.fixture
def cutouts(tmp_path):
    """Three in-memory cutouts of one window: two partly off their image (NaN columns differ)."""
    files = [_image(tmp_path / "a.fits", (22.1, 20.3), 1), _image(tmp_path / "b.fits", (8.2, 20.3), 2),
             _image(tmp_path / "c.fits", (38.0, 20.3), 3)]
    out = []
    for f in files:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out.extend(fits_cut(f, "150.0 2.0", [16, 10], memory_only=True))
    return out


def test_default_is_nan_aware_mean(cutouts):
    stack = np.stack([h[1].data for h in cutouts]).astype(float)
    assert np.isnan(stack).any() and not np.isnan(stack).all(axis=0).all()
    combined = CutoutsCombiner(cutouts).combine(memory_only=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = np.nanmean(stack, axis=0)
    np.testing.assert_allclose(combined[1].data, expected, rtol=1e-12, equal_nan=True)
    assert combined[0].header["RA_OBJ"] == pytest.approx(150.0)


def test_all_nan_pixel_stays_nan():
    a = np.array([[1.0, np.nan]])
    b = np.array([[3.0, np.nan]])
    func = build_default_combine_function([fits.ImageHDU(a), fits.ImageHDU(b)])
    out = func([a, b])
    assert out[0, 0] == 2.0 and np.isnan(out[0, 1])
    func0 = build_default_combine_function([fits.ImageHDU(a), fits.ImageHDU(np.array([[0.0, 5.0]]))], 0)
    assert func0([np.array([[1.0, 0.0]]), np.array([[0.0, 5.0]])]).tolist() == [[1.0, 5.0]]


def test_agrees_with_astrocut(cutouts, tmp_path):
    ours = CutoutsCombiner(cutouts).combine(memory_only=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = astrocut.CutoutsCombiner(cutouts).combine(memory_only=True)
    np.testing.assert_array_equal(ours[1].data, theirs[1].data)
    assert [tuple(c) for c in ours[1].header.cards] == [tuple(c) for c in theirs[1].header.cards]
    # varying cards are recorded per input
    assert ours[1].header["F01_K01"] in ("CRPIX1", "ORIG_FLE")


def test_files_and_output_file(cutouts, tmp_path):
    paths = []
    for i, hdul in enumerate(cutouts):
        p = tmp_path / f"cut{i}.fits"
        hdul.writeto(p)
        paths.append(str(p))
    combiner = CutoutsCombiner()
    combiner.load(paths)
    combiner.build_img_combiner(build_default_combine_function, [combiner.input_hdulists[0], np.nan])
    out = combiner.combine(tmp_path / "combined.fits")
    with fits.open(out) as hdul:
        mem = CutoutsCombiner(cutouts).combine(memory_only=True)
        np.testing.assert_array_equal(hdul[1].data, mem[1].data)


def test_custom_combiner(cutouts):
    def build_max(template):
        def combine(arrays):
            return np.nanmax(np.stack([np.asarray(a) for a in arrays]), axis=0)

        return combine

    combiner = CutoutsCombiner(cutouts)
    combiner.build_img_combiner(build_max, [None])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = combiner.combine(memory_only=True)
        expected = np.nanmax(np.stack([h[1].data for h in cutouts]), axis=0)
    np.testing.assert_array_equal(out[1].data, expected)
    direct = CutoutsCombiner(cutouts, img_combiner=lambda arrays: np.zeros_like(arrays[0]))
    assert (direct.combine(memory_only=True)[1].data == 0).all()


def test_mismatched_shapes_rejected(cutouts, tmp_path):
    other = fits_cut(_image(tmp_path / "d.fits", (22.1, 20.3), 4), "150.0 2.0", [12, 10], memory_only=True)
    with pytest.raises(InvalidInputError) as err:
        CutoutsCombiner(cutouts + other)
    assert err.value.field == "fle_list"
    with pytest.raises(InvalidInputError):
        CutoutsCombiner([42])
