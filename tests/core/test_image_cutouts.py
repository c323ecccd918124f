"""fits_cut: agreement with astrocut 1.4.0, partial/off-image handling, lazy reads, errors."""

from __future__ import annotations

import io
import os
import warnings

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from core.cutout_size import CutoutSize
from core.errors import InputWarning, InvalidInputError, NoDataError, NotFoundError
from core.geometry import parse_coordinates
from core.images.cutouts import DataWarning, cut_hdulist, fits_cut

astrocut = pytest.importorskip("astrocut")

NY, NX = 60, 64


def make_header(crpix=(32.3, 30.7), sip=False, bad_sip=False, extname="SCI") -> fits.Header:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.0, 2.0]
    w.wcs.crpix = list(crpix)
    w.wcs.cdelt = [-0.001, 0.001]
    h = w.to_header()
    if sip:
        h["CTYPE1"], h["CTYPE2"] = "RA---TAN-SIP", "DEC--TAN-SIP"
    if sip or bad_sip:
        h["A_ORDER"], h["B_ORDER"] = 2, 2
        h["A_2_0"], h["B_0_2"] = 1e-5, 2e-5
    h["EXTNAME"] = extname
    h["FILENAME"] = "orig_image.fits"
    h["BUNIT"] = "e/s"
    return h


def write_image(path, n_ext=2, seed=0, **kw) -> str:
    rng = np.random.default_rng(seed)
    hdus = [fits.PrimaryHDU()]
    for i in range(n_ext):
        data = rng.normal(100, 10, size=(NY, NX)).astype("f4")
        hdus.append(fits.ImageHDU(data, make_header(extname=f"SCI{i}", **kw)))
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return str(path)


@pytest.fixture
def images(tmp_path):
    return [write_image(tmp_path / "img_a.fits", seed=1), write_image(tmp_path / "img_b.fits", seed=2)]


def _quiet(func, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return func(*args, **kwargs)


def _cards(header):
    return [tuple(c) for c in header.cards if c.keyword not in ("CHECKSUM", "DATASUM")]


def assert_same(ours, theirs):
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert len(a) == len(b)
        assert a[0].header["ORIGIN"] == b[0].header["ORIGIN"] == "STScI/MAST"
        assert a[0].header["RA_OBJ"] == pytest.approx(b[0].header["RA_OBJ"])
        assert a[0].header["DEC_OBJ"] == pytest.approx(b[0].header["DEC_OBJ"])
        for ha, hb in zip(a[1:], b[1:]):
            np.testing.assert_array_equal(ha.data, hb.data)
            # CHECKSUM's comment (and so its value) carries the write time, to the second
            assert _cards(ha.header) == _cards(hb.header)


CASES = [
    ("150.0 2.0", 5, {}),
    ("150.0 2.0", [10, 6], {}),
    ("150.0 2.0", [7, 4], {}),
    ("150.0 2.0", 1, {}),
    ("150.0 2.0", 3 * u.arcmin, {}),
    ("150.0 2.0", [2 * u.arcmin, 90 * u.arcsec], {}),
    ("150.0 2.0", [9 * u.pix, 4 * u.pix], {}),
    ("150.02 2.0", [30, 10], {}),  # partial overlap, padded
    ("149.97 1.975", 15, {}),  # partial at another corner
    ("150.0 2.0", 8, {"extension": "all"}),
    ("150.0 2.0", 8, {"extension": [2]}),
    ("150.0 2.0", 8, {"single_outfile": False}),
    ("150.0 2.0", 8, {"limit_rounding_method": "ceil"}),
    ("150.0 2.0", 8, {"limit_rounding_method": "floor", "fill_value": 0.0}),
]


@pytest.mark.parametrize("coords,size,kwargs", CASES)
def test_matches_astrocut_in_memory(images, coords, size, kwargs):
    ours = _quiet(fits_cut, images, coords, size, memory_only=True, **kwargs)
    theirs = _quiet(astrocut.fits_cut, images, coords, size, memory_only=True, **kwargs)
    assert_same(ours, theirs)


@pytest.mark.parametrize("kind", ["sip", "bad_sip"])
def test_matches_astrocut_with_sip_headers(tmp_path, kind):
    path = write_image(tmp_path / f"{kind}.fits", n_ext=1, **{kind: True})
    ours = _quiet(fits_cut, path, "150.0 2.0", [9, 12], memory_only=True)
    # astrocut detects stale SIP terms by catching astropy's INFO log message, so its answer depends
    # on the astropy logger's level, which other libraries (lightkurve, astroquery) change on import.
    # Ours does not depend on logging; give astrocut the level its documented behaviour needs.
    from astropy import log

    level = log.level
    log.setLevel("INFO")
    try:
        theirs = _quiet(astrocut.fits_cut, path, "150.0 2.0", [9, 12], memory_only=True)
    finally:
        log.setLevel(level)
    assert_same(ours, theirs)
    header = ours[0][1].header
    assert ("A_2_0" in header) and (header["CTYPE1"].endswith("-SIP") == (kind == "sip"))


def test_header_contents_and_x_first_size(images):
    (hdul,) = fits_cut(images[0], "150.0 2.0", [10, 6], memory_only=True)
    assert hdul[1].data.shape == (6, 10)  # [nx, ny]: 10 wide, 6 high
    h = hdul[1].header
    assert h["EXTNAME"] == "CUTOUT" and h["O_EXT_NM"] == "SCI0"
    assert h["ORIG_FLE"] == "orig_image.fits" and "FILENAME" not in h and h["ORIG_EXT"] == 1
    # the cutout WCS maps the centre pixel back to the requested position
    w = WCS(h)
    ra, dec = w.pixel_to_world_values(4.5, 2.5)
    assert abs(ra - 150.0) < 0.001 and abs(dec - 2.0) < 0.001


def test_file_names_match_astrocut(images, tmp_path):
    ours_dir, theirs_dir = tmp_path / "ours", tmp_path / "theirs"
    for kwargs in ({}, {"single_outfile": False}, {"cutout_prefix": "abc"}):
        size = [4 * u.arcsec, 5]
        ours = _quiet(fits_cut, images, "150.0 2.0", size, output_dir=ours_dir, **kwargs)
        theirs = _quiet(astrocut.fits_cut, images, "150.0 2.0", size, output_dir=theirs_dir, **kwargs)
        ours = [ours] if isinstance(ours, str) else ours
        theirs = [theirs] if isinstance(theirs, str) else theirs
        assert [os.path.basename(p) for p in ours] == [os.path.basename(p) for p in theirs]
        for a, b in zip(ours, theirs):
            with fits.open(a) as fa, fits.open(b) as fb:
                assert_same([fa], [fb])
                assert fa[1].verify_checksum() == 1
    assert os.path.basename(fits_cut(images[0], "150 2", 5, output_dir=ours_dir)) == (
        "cutout_150.0000000_2.0000000_5-x-5_astrocut.fits"
    )
    assert not [p for p in os.listdir(ours_dir) if p.endswith(".part")]


def test_partial_overlap_is_nan_padded(images):
    (hdul,) = fits_cut(images[0], "150.02 2.0", [30, 10], memory_only=True)
    data = hdul[1].data
    assert data.shape == (10, 30)
    nan_cols = np.where(np.isnan(data).all(axis=0))[0]
    assert len(nan_cols) > 0 and nan_cols.max() < 10  # the columns left of the image
    assert not np.isnan(data[:, nan_cols.max() + 1:]).any()


def test_size_of_three_elements_warns_and_uses_the_first_two(tmp_path, images):
    with pytest.warns(InputWarning, match="Too many dimensions in cutout size, only the first two will be used"):
        ours = fits_cut(images[:1], "150.0 2.0", [7, 4, 9], memory_only=True)
    expected = fits_cut(images[:1], "150.0 2.0", [7, 4], memory_only=True)
    np.testing.assert_array_equal(ours[0][1].data, expected[0][1].data)
    assert ours[0][1].data.shape == (4, 7)
    with pytest.warns(InputWarning):
        path = fits_cut(images[:1], "150.0 2.0", [7, 4, 9] * u.pix, output_dir=tmp_path)
    assert path.endswith("_7.0pix-x-4.0pix_astrocut.fits")


def test_one_image_off_is_skipped_all_off_is_nodata(tmp_path, images):
    far = tmp_path / "far.fits"
    write_image(far, n_ext=1, crpix=(500, 500))
    with pytest.warns(DataWarning):
        out = fits_cut([images[0], str(far)], "150.0 2.0", 5, memory_only=True, single_outfile=False)
    assert len(out) == 1
    with pytest.warns(DataWarning), pytest.raises(NoDataError) as err:
        fits_cut([str(far)], "150.0 2.0", 5, memory_only=True)
    assert err.value.field == "coordinates"


def test_empty_cutouts_dropped_unless_allowed(tmp_path):
    path = tmp_path / "zeros.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.zeros((NY, NX), "f4"), make_header())]).writeto(path)
    with pytest.warns(DataWarning), pytest.raises(NoDataError):
        fits_cut(str(path), "150.0 2.0", 5, memory_only=True)
    (hdul,) = fits_cut(str(path), "150.0 2.0", 5, memory_only=True, allow_empty=True)
    assert hdul[1].header["EMPTY"] is True


def test_integer_image_padding_promotes_to_float(tmp_path):
    path = tmp_path / "int.fits"
    data = np.arange(NY * NX, dtype="i2").reshape(NY, NX)
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data, make_header())]).writeto(path)
    (hdul,) = fits_cut(str(path), "150.02 2.0", [30, 10], memory_only=True)
    cut = hdul[1].data
    assert np.isnan(cut[:, 0]).all()
    valid = ~np.isnan(cut)
    assert valid.any() and np.array_equal(cut[valid], np.round(cut[valid]))
    (inside,) = fits_cut(str(path), "150.0 2.0", [4, 3], memory_only=True)
    (theirs,) = _quiet(astrocut.fits_cut, str(path), "150.0 2.0", [4, 3], memory_only=True)
    assert inside[1].data.dtype.kind in "iu"  # no padding: integers stay integers
    np.testing.assert_array_equal(inside[1].data, theirs[1].data)


class CountingReader(io.RawIOBase):
    """A file object that counts the bytes read through it."""

    def __init__(self, path):
        self._f = open(path, "rb")  # noqa: SIM115 - closed in close()
        self.nread = 0

    def readable(self):
        return True

    def seekable(self):
        return True

    def seek(self, offset, whence=0):
        return self._f.seek(offset, whence)

    def tell(self):
        return self._f.tell()

    def readinto(self, buf):
        n = self._f.readinto(buf)
        self.nread += n
        return n

    def close(self):
        self._f.close()
        super().close()


def test_reads_only_the_needed_rows_and_columns(tmp_path):
    side = 1500
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval, w.wcs.crpix, w.wcs.cdelt = [150, 2], [750, 750], [-0.001, 0.001]
    path = tmp_path / "big.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.ones((side, side), "f4"), w.to_header())]).writeto(path)
    reader = CountingReader(path)
    with fits.open(reader, lazy_load_hdus=True) as hdul:
        cuts = cut_hdulist(hdul, "big.fits", parse_coordinates("150 2"), CutoutSize.parse([200, 300]))
    assert cuts[0].data.shape == (300, 200)
    image_bytes = side * side * 4
    assert reader.nread < 300 * 200 * 4 + 20 * 2880  # the window's pixels plus headers
    assert reader.nread < image_bytes / 20


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"cutout_size": 0}, "cutout_size"),
        ({"cutout_size": []}, "cutout_size"),
        ({"cutout_size": 5 * u.kg}, "cutout_size"),
        ({"cutout_size": "big"}, "cutout_size"),
        ({"coordinates": "not a place"}, "coordinates"),
        ({"extension": "first"}, "extension"),
        ({"extension": [-1]}, "extension"),
        ({"limit_rounding_method": "up"}, "limit_rounding_method"),
        ({"fill_value": "x"}, "fill_value"),
        ({"input_files": []}, "input_files"),
    ],
)
def test_bad_input_names_the_field(images, kwargs, field):
    args = {"input_files": images, "coordinates": "150 2", "cutout_size": 5}
    args.update(kwargs)
    with pytest.raises(InvalidInputError) as err:
        fits_cut(args.pop("input_files"), args.pop("coordinates"), args.pop("cutout_size"), memory_only=True,
                 **args)
    assert err.value.field == field


def test_fits_cut_verbose_prints_progress_and_timings(spoc_sector, tmp_path, capsys):
    from core import fits_cut as public_fits_cut
    from core.synthetic.ffis import DEMO_DEC, DEMO_RA

    public_fits_cut([str(spoc_sector.ffi_files[0])], f"{DEMO_RA} {DEMO_DEC}", 5, output_dir=tmp_path, verbose=True)
    out = capsys.readouterr().out
    assert "xmin,xmax" in out and "Cutout fits file" in out and "Total time" in out


def test_missing_file(tmp_path):
    with pytest.raises(NotFoundError):
        fits_cut(str(tmp_path / "nope.fits"), "150 2", 5, memory_only=True)


def test_drop_after_truncates_header(tmp_path):
    h = make_header()
    h["MARKER"] = 1
    h["JUNK"] = "after marker"
    path = tmp_path / "drop.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.ones((NY, NX), "f4"), h)]).writeto(path)
    (hdul,) = fits_cut(str(path), "150 2", 5, memory_only=True, drop_after="MARKER")
    assert "JUNK" not in hdul[1].header and "MARKER" not in hdul[1].header
    with pytest.warns(DataWarning):
        fits_cut(str(path), "150 2", 5, memory_only=True, drop_after="NOTTHERE")


def test_an_extension_no_input_has_is_a_bad_extension_not_no_data(images):
    """Guards against answering 'no data at the position' when the position is fine but the asked
    extension does not exist in any input (the service then names the wrong field)."""
    with pytest.raises(InvalidInputError) as err:
        _quiet(fits_cut, images, "150.0 2.0", 5, extension=[99999999999999999999], memory_only=True)
    assert err.value.field == "extension"
    with pytest.raises(NoDataError) as err:  # the extension exists; the position is off the image
        _quiet(fits_cut, images, "10.0 -30.0", 5, extension=[1], memory_only=True)
    assert err.value.field == "coordinates"


def test_write_atomic_truncates_long_comments_silently_outside_the_warnings_lock(tmp_path, monkeypatch):
    """A 60-character ORIG_FLE value truncates its card's comment (astropy warns); write_atomic
    formats the headers under core.quiet, and the disk write itself runs without quiet's lock
    (held, it would serialise every concurrent cutout write) and warns of nothing."""
    import threading

    from core import quiet as quiet_mod
    from core.images import cutouts as fits_cut_mod

    hdu = fits.ImageHDU(np.ones((3, 3), "f4"))
    hdu.header["ORIG_FLE"] = ("x" * 60, "Original image filename")
    hdul = fits.HDUList([fits.PrimaryHDU(), hdu])
    free = []

    def probe() -> None:  # another thread: can it take quiet's lock while we write?
        got = quiet_mod._LOCK.acquire(timeout=5)
        free.append(got)
        if got:
            quiet_mod._LOCK.release()

    def writeto(self, *args, **kwargs):
        t = threading.Thread(target=probe)
        t.start()
        t.join()
        return real_writeto(self, *args, **kwargs)

    real_writeto = fits.HDUList.writeto
    monkeypatch.setattr(fits.HDUList, "writeto", writeto)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = fits_cut_mod.write_atomic(hdul, tmp_path / "long.fits")
    assert free == [True]
    with fits.open(out) as back:
        assert back[1].header["ORIG_FLE"] == "x" * 60
        assert back[1].header["CHECKSUM"]
