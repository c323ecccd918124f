"""Tests of core.synthetic.ffis: the synthetic FFIs must be what real TESS readers (astropy, astrocut) accept."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from core.errors import InvalidInputError, NoDataError
from core.synthetic.ffis import (
    DEMO_DEC,
    DEMO_RA,
    FULL_SHAPE,
    SyntheticSector,
    spoc_ffi_name,
    tica_ffi_name,
    write_sector,
)

SPOC_PRIMARY_KEYS = [
    "TELESCOP", "INSTRUME", "ORIGIN", "CREATOR", "PROCVER", "FILEVER", "TIMVERSN", "DATE", "TSTART",
    "TSTOP", "DATE-OBS", "DATE-END", "SECTOR", "CAMERA", "CCD", "PXTABLE", "RA_NOM", "DEC_NOM",
    "ROLL_NOM", "CRMITEN", "CRBLKSZ", "CRSPOC", "FFIINDEX",
]
SPOC_IMAGE_KEYS = [
    "TIMEREF", "TASSIGN", "TIMESYS", "BJDREFI", "BJDREFF", "TIMEUNIT", "TELAPSE", "LIVETIME", "TSTART",
    "TSTOP", "DATE-OBS", "DATE-END", "DEADC", "TIMEPIXR", "TIERRELA", "INT_TIME", "READTIME", "FRAMETIM",
    "NUM_FRM", "TIMEDEL", "BACKAPP", "DEADAPP", "VIGNAPP", "GAINA", "GAINB", "GAINC", "GAIND",
    "READNOIA", "READNOIB", "READNOIC", "READNOID", "NREADOUT", "FXDOFF", "MEANBLCA", "MEANBLCB",
    "MEANBLCC", "MEANBLCD", "RADESYS", "EQUINOX", "BARYCORR", "DQUALITY", "IMAGTYPE", "WCSAXES",
    "CTYPE1", "CTYPE2", "CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2", "CD1_1", "CD1_2", "CD2_1", "CD2_2",
    "A_ORDER", "B_ORDER", "AP_ORDER", "BP_ORDER", "A_2_0", "BP_0_1", "WCSAXESP", "WCSNAMEP", "CTYPE1P",
    "CTYPE2P", "CRPIX1P", "CRPIX2P", "CRVAL1P", "CRVAL2P", "CDELT1P", "CDELT2P", "CHECKSUM", "DATASUM",
]
TICA_KEYS = [
    "TICAVER", "CAMNUM", "CCDNUM", "SECTOR", "STARTTJD", "ENDTJD", "MIDTJD", "TJD_ZERO", "CADENCE",
    "EXPTIME", "INT_TIME", "QUAL_BIT", "CTYPE1", "A_ORDER", "BP_ORDER",
]


def _open_strict(path):
    """Open a file with every warning an error and verify it strictly."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hdul = fits.open(path)
        hdul.verify("exception")
        for hdu in hdul:
            hdu.data  # noqa: B018 - load the data under the same warning filter
    return hdul


def _strict_wcs(header) -> WCS:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return WCS(header)


def _image(path, product):
    with fits.open(path) as h:
        hdu = h[1] if product == "SPOC" else h[0]
        return np.asarray(hdu.data, dtype=float), hdu.header.copy()


def _aperture_flux(img, x, y, r=3):
    ix, iy = int(np.rint(x)), int(np.rint(y))
    box = img[iy - r:iy + r + 1, ix - r:ix + r + 1]
    return box.sum() - np.median(img) * box.size


# ------------------------------------------------------------------------------------------------


def test_spoc_files_named_sorted_and_shaped(spoc_sector: SyntheticSector):
    s = spoc_sector
    assert len(s.ffi_files) == 10 and s.product == "SPOC" and s.shape == (64, 64)
    pattern = re.compile(r"tess\d{13}-s0038-2-2-0209-s_ffic\.fits")
    assert all(pattern.fullmatch(f.name) for f in s.ffi_files)
    assert [f.name for f in s.ffi_files] == sorted(f.name for f in s.ffi_files)
    assert np.all(np.diff(s.tstart) > 0) and np.allclose(s.tstop - s.tstart, 600 / 86400)
    assert s.ffi_files[0].name == spoc_ffi_name(38, 2, 2, s.tstart[0])
    assert not list(s.ffi_files[0].parent.glob("*.tmp"))  # temporary names were renamed


def test_spoc_headers_have_real_keywords(spoc_sector: SyntheticSector):
    for i, path in enumerate(spoc_sector.ffi_files):
        hdul = _open_strict(path)
        assert len(hdul) == 3 and hdul[0].data is None
        for key in SPOC_PRIMARY_KEYS:
            assert key in hdul[0].header, key
        assert hdul[0].header["TELESCOP"] == "TESS" and hdul[0].header["ORIGIN"] == "NASA/Ames"
        assert (hdul[0].header["SECTOR"], hdul[0].header["CAMERA"], hdul[0].header["CCD"]) == (38, 2, 2)
        for ext, kind in ((1, "cal"), (2, "uncert")):
            h = hdul[ext].header
            for key in SPOC_IMAGE_KEYS:
                assert key in h, (ext, key)
            assert h["EXTNAME"] == f"CAMERA.CCD 2.2 {kind}" and h["IMAGTYPE"] == kind
            assert h["CTYPE1"] == "RA---TAN-SIP" and h["CTYPE2"] == "DEC--TAN-SIP"
            assert h["TIMESYS"] == "TDB" and h["BJDREFI"] == 2457000
            assert h["TSTART"] == pytest.approx(spoc_sector.tstart[i])
            assert h["TSTOP"] == pytest.approx(spoc_sector.tstop[i])
            assert hdul[ext].data.dtype == np.dtype(">f4") and hdul[ext].data.shape == (64, 64)
        # CRVAL1P/2P give the cutout's 1-based origin on the CCD, as in real headers.
        y0, x0 = spoc_sector.origin
        assert (hdul[1].header["CRVAL1P"], hdul[1].header["CRVAL2P"]) == (x0 + 1, y0 + 1)
        hdul.close()


def test_spoc_dates_consistent_with_btjd(spoc_sector: SyntheticSector):
    from astropy.time import Time

    with fits.open(spoc_sector.ffi_files[3]) as h:
        hdr = h[1].header
    utc = Time(hdr["DATE-OBS"].rstrip("Z"), scale="utc")
    btjd = utc.tdb.jd - 2457000 + hdr["BARYCORR"]
    assert btjd == pytest.approx(hdr["TSTART"], abs=2e-5)  # ~1.7 s
    assert 0 < abs(hdr["BARYCORR"]) < 0.006  # at most ~8.3 light-minutes


def test_wcs_opens_without_warnings_everywhere(spoc_sector, spoc_sector_b, tica_sector):
    for s in (spoc_sector, spoc_sector_b):
        with fits.open(s.ffi_files[0]) as h:
            for ext in (1, 2):
                w = _strict_wcs(h[ext].header)
                assert w.has_celestial and w.sip is not None
    with fits.open(tica_sector.ffi_files[0]) as h:
        assert _strict_wcs(h[0].header).sip is not None


@pytest.mark.parametrize("which", ["spoc_sector", "spoc_sector_b", "tica_sector"])
def test_wcs_maps_each_star_to_its_peak(which, request):
    s: SyntheticSector = request.getfixturevalue(which)
    img, hdr = _image(s.ffi_files[0], s.product)
    w = _strict_wcs(hdr)
    assert len(s.stars) > 5
    for star in s.stars:
        px, py = w.all_world2pix([[star.ra, star.dec]], 0)[0]
        assert (px, py) == pytest.approx((star.x, star.y), abs=1e-3)
        ix, iy = int(np.rint(px)), int(np.rint(py))
        win = img[max(iy - 2, 0):iy + 3, max(ix - 2, 0):ix + 3]
        jy, jx = np.unravel_index(np.argmax(win), win.shape)
        peak_x, peak_y = max(ix - 2, 0) + jx, max(iy - 2, 0) + jy
        assert abs(peak_x - px) <= 0.5 and abs(peak_y - py) <= 0.5, star


def test_transit_star_at_center_and_dips(spoc_sector: SyntheticSector):
    s = spoc_sector
    t = s.transit_star
    assert t.transit and (t.ra, t.dec) == (DEMO_RA, DEMO_DEC)
    assert abs(t.x - 31.5) <= 1 and abs(t.y - 31.5) <= 1  # at the image centre
    assert 0.01 <= s.transit_depth <= 0.05
    inside = s.in_transit
    assert inside.any() and (~inside).any()
    mid = 0.5 * (s.tstart + s.tstop)
    assert s.tstart[0] < s.transit_t0 < s.tstop[-1]
    assert np.array_equal(inside, np.abs(mid - s.transit_t0) < s.transit_duration / 2)
    flux = np.array([_aperture_flux(_image(f, "SPOC")[0], t.x, t.y) for f in s.ffi_files])
    depth = 1 - flux[inside].mean() / flux[~inside].mean()
    assert depth == pytest.approx(s.transit_depth, rel=0.15)
    # Other stars do not dip.
    other = s.stars[1]
    oflux = np.array([_aperture_flux(_image(f, "SPOC")[0], other.x, other.y) for f in s.ffi_files])
    assert abs(1 - oflux[inside].mean() / oflux[~inside].mean()) < 0.003


def test_quality_frames_flagged(spoc_sector: SyntheticSector, tica_sector: SyntheticSector):
    for s, ext, key in ((spoc_sector, 1, "DQUALITY"), (tica_sector, 0, "QUAL_BIT")):
        assert 1 <= len(s.quality_frames) <= 2
        flags = [fits.getheader(f, ext)[key] for f in s.ffi_files]
        assert [i for i, q in enumerate(flags) if q] == s.quality_frames
        assert all(flags[i] in (32, 128) for i in s.quality_frames)


def test_explicit_quality_frames_and_cadence(tmp_path):
    s = write_sector(tmp_path, size=(16, 16), frames=4, quality_frames=[0, 3], n_stars=2,
                     cadence_minutes=2.0, sector=60)
    assert s.quality_frames == [0, 3]
    assert [fits.getval(f, "DQUALITY", ext=1) != 0 for f in s.ffi_files] == [True, False, False, True]
    assert np.allclose(s.tstop - s.tstart, 120 / 86400)
    assert fits.getval(s.ffi_files[0], "TIMEDEL", ext=1) == pytest.approx(120 / 86400)


def test_default_cadences(tmp_path):
    for sector, seconds in ((10, 1800), (38, 600), (60, 200)):
        s = write_sector(tmp_path / str(sector), sector=sector, size=(8, 8), frames=2, n_stars=1)
        assert np.allclose(s.tstop - s.tstart, seconds / 86400), sector


def test_uncertainty_finite_and_positive(spoc_sector: SyntheticSector):
    with fits.open(spoc_sector.ffi_files[0]) as h:
        err = h[2].data
        flux = h[1].data
    assert np.isfinite(err).all() and (err > 0).all()
    t = spoc_sector.transit_star
    assert err[int(np.rint(t.y)), int(np.rint(t.x))] > np.median(err)  # shot noise of the star
    assert np.isfinite(flux).all()


def test_deterministic_from_seed(tmp_path):
    kw = {"size": (32, 32), "frames": 3, "center": (DEMO_RA, DEMO_DEC)}
    a = write_sector(tmp_path / "a", seed=5, **kw)
    b = write_sector(tmp_path / "b", seed=5, **kw)
    c = write_sector(tmp_path / "c", seed=6, **kw)
    assert a.stars == b.stars and a.quality_frames == b.quality_frames
    assert [f.name for f in a.ffi_files] == [f.name for f in b.ffi_files]
    for fa, fb, fc in zip(a.ffi_files, b.ffi_files, c.ffi_files):
        da, ha = _image(fa, "SPOC")
        db, hb = _image(fb, "SPOC")
        dc, _ = _image(fc, "SPOC")
        assert np.array_equal(da, db) and not np.array_equal(da, dc)
        drop = {"CHECKSUM"}
        assert {k: v for k, v in ha.items() if k not in drop} == {k: v for k, v in hb.items() if k not in drop}
    assert a.stars != c.stars


def test_tica_files(tica_sector: SyntheticSector):
    s = tica_sector
    pattern = re.compile(r"hlsp_tica_tess_ffi_s0038-o[12]-\d{8}-cam2-ccd2_tess_v01_img\.fits")
    assert all(pattern.fullmatch(f.name) for f in s.ffi_files)
    assert [f.name for f in s.ffi_files] == sorted(f.name for f in s.ffi_files)
    for i, path in enumerate(s.ffi_files):
        hdul = _open_strict(path)
        assert len(hdul) == 1 and hdul[0].data.shape == (64, 64)
        h = hdul[0].header
        for key in TICA_KEYS:
            assert key in h, key
        assert (h["CAMNUM"], h["CCDNUM"], h["SECTOR"]) == (2, 2, 38)
        assert h["STARTTJD"] == pytest.approx(s.tstart[i]) and h["ENDTJD"] == pytest.approx(s.tstop[i])
        assert h["MIDTJD"] == pytest.approx((s.tstart[i] + s.tstop[i]) / 2)
        assert h["TJD_ZERO"] == 2457000.0
        assert path.name == tica_ffi_name(38, 2, 2, h["CADENCE"], orbit=int(path.name.split("-o")[1][0]))
        hdul.close()
    # Usable WCS: the transit star's sky position maps onto its pixel.
    w = _strict_wcs(fits.getheader(s.ffi_files[0], 0))
    x, y = w.all_world2pix([[DEMO_RA, DEMO_DEC]], 0)[0]
    assert (x, y) == pytest.approx((s.transit_star.x, s.transit_star.y), abs=1e-3)


def test_two_sectors_contain_the_target(spoc_sector, spoc_sector_b):
    assert spoc_sector_b.sector == 11 and spoc_sector.sector == 38
    for s in (spoc_sector, spoc_sector_b):
        w = WCS(fits.getheader(s.ffi_files[0], 1))
        x, y = w.all_world2pix([[DEMO_RA, DEMO_DEC]], 0)[0]
        assert 0 <= x < 64 and 0 <= y < 64
    assert spoc_sector.origin != spoc_sector_b.origin  # different pointing, different pixels


def test_astrocut_makes_cube_and_cuts_transit_star(spoc_sector: SyntheticSector, tmp_path):
    astrocut = pytest.importorskip("astrocut")
    s = spoc_sector
    cube = astrocut.CubeFactory().make_cube([str(f) for f in s.ffi_files],
                                            cube_file=str(tmp_path / "cube.fits"), verbose=False)
    with fits.open(cube) as c:
        assert c[1].data.shape == (64, 64, 10, 2)
        assert [bool(q) for q in c[2].data["DQUALITY"]] == [i in s.quality_frames for i in range(10)]
        assert list(c[2].data["FFI_FILE"]) == [f.name for f in s.ffi_files]
    tpf = astrocut.CutoutFactory().cube_cut(cube, f"{DEMO_RA} {DEMO_DEC}", 5, memory_only=True)
    pix = tpf[1].data
    assert pix["FLUX"].shape == (10, 5, 5)
    assert np.allclose(pix["TIME"], 0.5 * (s.tstart + s.tstop))
    assert [bool(q) for q in pix["QUALITY"]] == [i in s.quality_frames for i in range(10)]
    # The cutout's WCS puts the star on the pixel where its flux peaks, near the cutout's middle,
    # and its light curve shows the transit.
    w = WCS(tpf[2].header)
    x, y = w.all_world2pix([[DEMO_RA, DEMO_DEC]], 0)[0]
    assert 1 <= x <= 3 and 1 <= y <= 3
    frame = pix["FLUX"][0]
    assert np.unravel_index(np.argmax(frame), frame.shape) == (int(np.rint(y)), int(np.rint(x)))
    flux = pix["FLUX"].sum(axis=(1, 2))
    inside = s.in_transit
    assert flux[inside].max() < flux[~inside].min()


def test_full_size_frame_layout(tmp_path):
    s = write_sector(tmp_path, frames=1, n_stars=30, seed=2)
    assert s.shape == FULL_SHAPE and s.origin == (0, 0)
    with fits.open(s.ffi_files[0]) as h:
        data = h[1].data
        assert data.shape == FULL_SHAPE
        w = _strict_wcs(h[1].header)
    # Virtual columns/rows hold no sky; every star lies in the 2048 x 2048 science area.
    assert np.abs(data[:, :44]).max() < 5 and np.abs(data[2048:, :]).max() < 5
    for star in s.stars:
        assert 44 <= star.x < 2092 and 0 <= star.y < 2048
        assert w.all_world2pix([[star.ra, star.dec]], 0)[0] == pytest.approx((star.x, star.y), abs=1e-3)
    assert s.quality_frames == []  # a single frame is never flagged by default


def test_center_off_ccd_and_unarchived_sector(tmp_path):
    with pytest.raises(NoDataError) as e:
        write_sector(tmp_path, size=(16, 16), center=(DEMO_RA + 180, -DEMO_DEC))
    assert e.value.field == "center"
    # A sector tesswcs has not archived still gets a plausible TAN-SIP WCS.
    s = write_sector(tmp_path / "future", sector=200, size=(16, 16), frames=2, center=(10.0, 20.0), n_stars=3)
    w = _strict_wcs(fits.getheader(s.ffi_files[0], 1))
    assert w.all_world2pix([[10.0, 20.0]], 0)[0] == pytest.approx((s.transit_star.x, s.transit_star.y), abs=1e-3)
    scale = np.sqrt(abs(np.linalg.det(w.wcs.cd))) * 3600
    assert scale == pytest.approx(21.0, rel=0.01)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"size": "half"}, "size"),
        ({"size": (0, 5)}, "size"),
        ({"product": "K2"}, "product"),
        ({"frames": 0}, "frames"),
        ({"camera": 5}, "camera"),
        ({"ccd": 0}, "ccd"),
        ({"sector": 0}, "sector"),
        ({"n_stars": 0}, "n_stars"),
        ({"center": ("a", 1)}, "center"),
        ({"center": (10, 95)}, "center"),
        ({"quality_frames": [10]}, "quality_frames"),
        ({"cadence_minutes": -1}, "cadence_minutes"),
    ],
)
def test_bad_input_raises_with_field(tmp_path, kwargs, field):
    args = {"size": (8, 8), "frames": 2}
    args.update(kwargs)
    with pytest.raises(InvalidInputError) as e:
        write_sector(tmp_path, **args)
    assert e.value.field == field


# Sky positions of four full-FFI pixels, computed once with tesswcs.WCS.from_sector(...).all_pix2world
# (importing tesswcs takes ~12 s, so the reference values are stored here).
_TESSWCS_PIX = np.array([[0, 0], [2135, 2077], [1000, 1500], [50, 2000]], dtype=float)
_TESSWCS_REF = {
    (38, 2, 2): [[195.829577487, -67.888568291], [233.830782902, -61.690057421],
                 [218.610177976, -63.423427365], [210.615171903, -58.498750421]],
    (11, 2, 2): [[189.222857911, -65.595246299], [225.197223782, -60.164197041],
                 [210.630001231, -61.48901513], [203.518257189, -56.403522496]],
    (1, 4, 3): [[127.600677159, -61.770535495], [90.512758053, -66.483476155],
                [109.380527697, -67.746324747], [120.622089417, -72.488544982]],
}


@pytest.mark.parametrize("key", sorted(_TESSWCS_REF))
def test_wcs_equals_tesswcs_from_sector(key):
    """The WCS assembled from tesswcs's data files is tesswcs.WCS.from_sector's, also after a CRPIX shift."""
    from core.synthetic.ffis import sector_wcs_header

    ref = np.array(_TESSWCS_REF[key])
    ours = _strict_wcs(sector_wcs_header(*key))
    assert np.allclose(ours.all_pix2world(_TESSWCS_PIX, 0), ref, atol=2e-9, rtol=0)
    shifted = _strict_wcs(sector_wcs_header(*key, origin=(100, 200)))
    assert np.allclose(shifted.all_pix2world(_TESSWCS_PIX - [200, 100], 0), ref, atol=2e-9, rtol=0)
