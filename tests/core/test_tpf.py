"""core.tpf.cut: target pixel files from cubes, checked against astrocut 1.4.0 and lightkurve."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table
from astropy.time import Time
from astropy.wcs import WCS
from astropy.wcs.utils import fit_wcs_from_points

from core.cubes import cache as cube_cache
from core.cubes import cube as cube_mod
from core.cubes.cache import open_cube
from core.cutout_size import CutoutSize
from core.errors import (
    CorruptFileError,
    InputWarning,
    InvalidInputError,
    NoDataError,
    NotFoundError,
    TooLargeError,
)
from core.synthetic.ffis import DEMO_DEC, DEMO_RA
from core.tpf import cut as tpf_mod
from core.tpf import layout as tpf_layout
from core.tpf.cut import CutoutFactory, build_tpf, tpf_bytes, tpf_filename
from core.tpf.wcs_fit import fit_linear_wcs, sample_grid

CENTRE = f"{DEMO_RA} {DEMO_DEC}"

# Header values that differ from astrocut on purpose (see core.tpf.cut's docstring).
INTENDED = {"CREATOR", "PROCVER", "WCS_MSEP", "WCS_SIG", "DATASUM", "CHECKSUM"}
# Keys of the fitted WCS: compared through the WCS itself (test_wcs_agrees_with_astrocut).
FIT_KEYS = {"CRPIX1", "CRPIX2", "PC1_1", "PC1_2", "PC2_1", "PC2_2", "CRVAL1", "CRVAL2", "LATPOLE"}


def _astrocut(cube, coordinates, size):
    from astrocut import CutoutFactory as AstrocutFactory

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return AstrocutFactory().cube_cut(cube, coordinates, size, memory_only=True)


def _coord_at(cube_path, x, y):
    ra, dec = open_cube(cube_path).wcs.all_pix2world(x, y, 0)
    return f"{float(ra)} {float(dec)}"


@pytest.fixture(params=["ours", "astrocut"])
def any_cube(request, spoc_cube, astrocut_spoc_cube) -> str:
    return spoc_cube if request.param == "ours" else astrocut_spoc_cube


# (x, y, size): centred, rectangular (x first), near each corner (partly off the detector), even sizes.
CASES = [
    (31.81, 32.21, 5),
    (31.81, 32.21, [7, 4]),
    (20.4, 40.6, 30),
    (1.2, 2.6, 10),
    (62.3, 63.1, 9),
    (0.1, 60.9, [6, 13]),
    (50.5, 10.5, 6),
]


@pytest.mark.parametrize("x,y,size", CASES)
def test_pixels_equal_astrocut(any_cube, x, y, size):
    coord = _coord_at(any_cube, x, y)
    theirs = _astrocut(any_cube, coord, size)
    ours = CutoutFactory().cube_cut(any_cube, coord, size, memory_only=True)
    for col in (
        "FLUX",
        "FLUX_ERR",
        "QUALITY",
        "TIME",
        "TIMECORR",
        "CADENCENO",
        "RAW_CNTS",
        "FFI_FILE",
        "POS_CORR1",
        "POS_CORR2",
        "FLUX_BKG",
        "FLUX_BKG_ERR",
    ):
        a, b = theirs[1].data[col], ours[1].data[col]
        assert a.shape == b.shape, col
        if a.dtype.kind == "f":
            np.testing.assert_array_equal(a, b, err_msg=col)
        else:
            assert np.array_equal(a, b), col
    assert ours[2].data.dtype.kind == "i"
    np.testing.assert_array_equal(theirs[2].data, ours[2].data)
    for name in ("TFORM5", "TDIM5", "TUNIT5", "TNULL4", "NAXIS1", "NAXIS2"):
        assert theirs[1].header[name] == ours[1].header[name]


def test_partial_cutout_padding(spoc_cube):
    tpf = CutoutFactory().cube_cut(spoc_cube, _coord_at(spoc_cube, 1.2, 2.6), 10, memory_only=True)
    flux, aperture = tpf[1].data["FLUX"], tpf[2].data
    assert aperture.shape == (10, 10)
    # The window starts at x=-4, y=-2: 4 padded columns and 2 padded rows.
    assert aperture[:, :4].sum() == 0 and aperture[:2, :].sum() == 0
    assert np.all(aperture[2:, 4:] == 1)
    assert np.all(np.isnan(flux[:, :, :4])) and np.all(np.isnan(tpf[1].data["FLUX_ERR"][:, :2, :]))
    assert np.all(np.isfinite(flux[:, 2:, 4:]))
    assert tpf[1].header["1CRV5P"] == -3 and tpf[1].header["2CRV5P"] == -1


@pytest.mark.parametrize("size", [5, [7, 4], 20])
def test_headers_match_astrocut(spoc_cube, size):
    theirs = _astrocut(spoc_cube, CENTRE, size)
    ours = CutoutFactory().cube_cut(spoc_cube, CENTRE, size, memory_only=True)
    for i in range(3):
        a, b = theirs[i].header, ours[i].header
        missing = set(a) - set(b) - INTENDED
        assert not missing, (i, missing)
        for key in set(a) & set(b) - INTENDED - FIT_KEYS:
            assert a[key] == b[key], (i, key, a[key], b[key])
    # Intended differences, checked rather than ignored.
    assert ours[0].header["CREATOR"] != "astrocut"
    assert "CHECKSUM" not in ours[1].header and "DATASUM" not in ours[1].header
    assert ours[2].header["WCS_MSEP"] > 0 and ours[2].header["WCS_SIG"] > 0


def test_wcs_agrees_with_astrocut(spoc_cube):
    for x, y, size in CASES:
        coord = _coord_at(spoc_cube, x, y)
        theirs = WCS(_astrocut(spoc_cube, coord, size)[2].header)
        hdul = CutoutFactory().cube_cut(spoc_cube, coord, size, memory_only=True)
        ours = WCS(hdul[2].header)
        ny, nx = hdul[2].data.shape
        gx, gy = np.meshgrid(np.arange(nx), np.arange(ny))
        ra, dec = ours.all_pix2world(gx, gy, 0)
        xa, ya = theirs.all_world2pix(ra, dec, 0)
        assert np.max(np.hypot(xa - gx, ya - gy)) < 0.01


def test_linear_fit_matches_fit_wcs_from_points(spoc_cube):
    cube = open_cube(spoc_cube)
    for width, height, x0, y0 in [(5, 5, 30, 30), (30, 20, 5, 40), (64, 64, 0, 0)]:
        fit = fit_linear_wcs(cube.wcs, width, height, x0, y0)
        px, py = sample_grid(width, height)
        world = SkyCoord(*cube.wcs.all_pix2world(px + x0, py + y0, 0), unit="deg")
        ref = fit_wcs_from_points((px, py), world, proj_point="center")
        gx, gy = np.meshgrid(np.arange(width), np.arange(height))
        ra, dec = fit.wcs.wcs_pix2world(gx, gy, 0)
        rx, ry = ref.wcs_world2pix(ra, dec, 0)
        assert np.max(np.hypot(rx - gx, ry - gy)) < 1e-3
        # Our pure-numpy pixel -> sky agrees with astropy's for the fitted WCS.
        r2, d2 = fit.pix2world(gx, gy)
        np.testing.assert_allclose(r2, ra, atol=1e-9)
        np.testing.assert_allclose(d2, dec, atol=1e-9)
        # The residuals are real: the SIP WCS and the linear one differ, a little.
        assert 0 < fit.max_sep < 1 / 3600


def test_per_column_wcs_keys(spoc_cube):
    tpf = CutoutFactory().cube_cut(spoc_cube, CENTRE, [9, 7], memory_only=True)
    h = tpf[1].header
    cube = open_cube(spoc_cube)
    x, y = cube.world_to_pixel(SkyCoord(DEMO_RA, DEMO_DEC, unit="deg"))
    x0, y0 = int(np.round(x - 4.5)), int(np.round(y - 3.5))
    for n in range(4, 9):  # RAW_CNTS, FLUX, FLUX_ERR, FLUX_BKG, FLUX_BKG_ERR
        assert h[f"1CTYP{n}"] == "RA---TAN" and h[f"2CTYP{n}"] == "DEC--TAN"
        assert h[f"1CTY{n}P"] == "RAWX" and h[f"2CTY{n}P"] == "RAWY" and h[f"WCSN{n}P"] == "PHYSICAL"
        assert h[f"1CRV{n}P"] == x0 + 1 and h[f"2CRV{n}P"] == y0 + 1
        assert h[f"1CRPX{n}"] == tpf[2].header["CRPIX1"] and h[f"22PC{n}"] == tpf[2].header["PC2_2"]
    assert h["TTYPE5"] == "FLUX" and h["BJDREFI"] == 2457000 and h["TIMESYS"] == "TDB"
    # Cutout pixel (0, 0) through the column WCS lands on FFI pixel (1CRV5P-1, 2CRV5P-1).
    col_wcs = WCS(
        {
            "CTYPE1": h["1CTYP5"],
            "CTYPE2": h["2CTYP5"],
            "CRPIX1": h["1CRPX5"],
            "CRPIX2": h["2CRPX5"],
            "CRVAL1": h["1CRVL5"],
            "CRVAL2": h["2CRVL5"],
            "CDELT1": h["1CDLT5"],
            "CDELT2": h["2CDLT5"],
            "PC1_1": h["11PC5"],
            "PC1_2": h["12PC5"],
            "PC2_1": h["21PC5"],
            "PC2_2": h["22PC5"],
        }
    )
    ra, dec = col_wcs.all_pix2world(0, 0, 0)
    fx, fy = cube.wcs.all_world2pix(ra, dec, 0)
    assert abs(fx - (h["1CRV5P"] - 1)) < 0.01 and abs(fy - (h["2CRV5P"] - 1)) < 0.01


def test_lightkurve_reads_it_and_sees_the_transit(spoc_cube, spoc_sector, tmp_path):
    import lightkurve as lk

    path = CutoutFactory().cube_cut(spoc_cube, CENTRE, 11, output_path=tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tpf = lk.read(path, quality_bitmask="none")
    assert isinstance(tpf, lk.TessTargetPixelFile)
    assert tpf.flux.shape == (10, 11, 11)
    assert tpf.mission == "TESS" and tpf.sector == 38 and tpf.camera == 2 and tpf.ccd == 2
    np.testing.assert_allclose(tpf.time.value, (spoc_sector.tstart + spoc_sector.tstop) / 2)
    assert tpf.time.format == "btjd"
    expected_q = np.zeros(10, bool)
    expected_q[spoc_sector.quality_frames] = True
    assert np.array_equal(tpf.quality != 0, expected_q)
    pixels_header = fits.getheader(path, 1)
    assert (tpf.column, tpf.row) == (pixels_header["1CRV5P"], pixels_header["2CRV5P"])
    # The WCS puts the target where the cube's WCS does.
    px = tpf.wcs.world_to_pixel(SkyCoord(DEMO_RA, DEMO_DEC, unit="deg"))
    star = spoc_sector.transit_star
    assert abs(px[0] + tpf.column - 1 - star.x) < 0.05 and abs(px[1] + tpf.row - 1 - star.y) < 0.05
    # The transit: a 3x3 aperture on the star, in-transit frames dimmer by about the depth.
    mask = np.zeros((11, 11), bool)
    cx, cy = round(float(px[0])), round(float(px[1]))
    mask[cy - 1 : cy + 2, cx - 1 : cx + 2] = True
    lc = tpf.to_lightcurve(aperture_mask=mask)
    flux = lc.flux.value / np.median(lc.flux.value[~spoc_sector.in_transit])
    assert spoc_sector.in_transit.any()
    dip = 1 - np.median(flux[spoc_sector.in_transit])
    assert dip == pytest.approx(spoc_sector.transit_depth, rel=0.35)


def test_cutout_centred_on_transit_star(spoc_cube):
    tpf = CutoutFactory().cube_cut(spoc_cube, CENTRE, 11, memory_only=True)
    img = np.nanmedian(tpf[1].data["FLUX"], axis=0)
    iy, ix = np.unravel_index(np.nanargmax(img), img.shape)
    assert abs(iy - 5) <= 1 and abs(ix - 5) <= 1


def test_reads_only_the_needed_bytes(spoc_cube):
    cube = open_cube(spoc_cube)
    CutoutFactory().cube_cut(spoc_cube, CENTRE, 5, memory_only=True)  # parse + templates
    before = cube.source.stats.snapshot()
    CutoutFactory().cube_cut(spoc_cube, CENTRE, [6, 4], memory_only=True)
    gets, nbytes = (a - b for a, b in zip(cube.source.stats.snapshot(), before))
    assert nbytes == 4 * 6 * 10 * 8  # rows * cols * frames * 8 bytes (flux + error float32)
    assert gets == 4


def test_second_cut_hits_the_cache(spoc_cube):
    CutoutFactory().cube_cut(spoc_cube, CENTRE, 5, memory_only=True)
    parses = cube_cache.CACHE_STATS["parses"]
    hits = cube_cache.CACHE_STATS["hits"]
    CutoutFactory().cube_cut(spoc_cube, CENTRE, 8, memory_only=True)
    assert cube_cache.CACHE_STATS["parses"] == parses
    assert cube_cache.CACHE_STATS["hits"] == hits + 1


def test_angular_size_matches_astrocut(spoc_cube):
    size = 3 * u.arcmin
    theirs = _astrocut(spoc_cube, CENTRE, size)
    ours = CutoutFactory().cube_cut(spoc_cube, CENTRE, size, memory_only=True)
    assert ours[1].data["FLUX"].shape == theirs[1].data["FLUX"].shape
    np.testing.assert_array_equal(ours[1].data["FLUX"], theirs[1].data["FLUX"])


def test_tica_cut(tica_cube, tica_sector):
    tpf = CutoutFactory().cube_cut(tica_cube, CENTRE, 7, product="TICA", memory_only=True)
    h0, h1 = tpf[0].header, tpf[1].header
    assert h0["FFI_TYPE"] == "TICA" and h0["TSTART"] == pytest.approx(tica_sector.tstart[0])
    assert "TIMECORR" not in tpf[1].columns.names
    assert h1["TUNIT4"] == "e-" and h1["TTYPE4"] == "FLUX"
    np.testing.assert_allclose(tpf[1].data["TIME"], (tica_sector.tstart + tica_sector.tstop) / 2)
    assert np.all(tpf[1].data["FLUX_ERR"] == 0)
    assert np.array_equal(tpf[1].data["QUALITY"] != 0, np.isin(np.arange(10), tica_sector.quality_frames))
    cube = open_cube(tica_cube)
    with fits.open(tica_cube) as hdul:
        ix = h1["1CRV4P"] - 1
        iy = h1["2CRV4P"] - 1
        np.testing.assert_array_equal(tpf[1].data["FLUX"][:, 0, 0], hdul[1].data[iy, ix, :, 0])
    assert cube.product == "TICA"


def test_memory_result_round_trips(spoc_cube):
    hdul = CutoutFactory().cube_cut(spoc_cube, CENTRE, 5, memory_only=True)
    raw = tpf_bytes(hdul)
    assert raw == bytes(hdul.raw) and isinstance(raw, bytes)
    again = fits.HDUList.fromstring(raw)
    np.testing.assert_array_equal(again[1].data["FLUX"], hdul[1].data["FLUX"])
    hdul[0].header["OBJECT"] = "changed"
    assert b"changed" in tpf_bytes(hdul)
    hdul[1].data["FLUX"][0, 0, 0] = 12345.0  # writable, and written
    assert fits.HDUList.fromstring(tpf_bytes(hdul))[1].data["FLUX"][0, 0, 0] == 12345.0


@pytest.mark.parametrize("internals", [True, False], ids=["astropy-internals", "public-api"])
@pytest.mark.parametrize("view_reads", [1 << 30, 4000], ids=["bytes-reads", "view-reads"])
def test_memory_result_is_lazy_and_survives_close(spoc_cube, tmp_path, monkeypatch, view_reads, internals):
    """The in-memory HDUList parses nothing until used (the public-API fallback of
    core.fitsio._astropy_io parses the primary header only), reads like fits.open of the same bytes,
    and, like astrocut's, stays readable after close() or a with block. Data read through views
    of the bytes is still a writable copy: the bytes never change."""
    from core.fitsio import _astropy_io
    from core.storage.range_file import RangeFile

    monkeypatch.setattr(RangeFile, "view_bytes", view_reads)
    monkeypatch.setattr(_astropy_io, "USE_INTERNALS", internals)
    hdul = CutoutFactory().cube_cut(spoc_cube, CENTRE, [7, 4], memory_only=True)
    assert isinstance(hdul, tpf_mod.TpfHDUList)
    assert list.__len__(hdul) == (0 if internals else 1)  # nothing (or only the primary) parsed yet
    assert hdul.filename() is None  # as for astrocut's: no file behind it
    ref = fits.HDUList.fromstring(bytes(hdul.raw))
    with hdul:
        pass
    hdul.close()
    assert len(hdul) == 3
    for mine, theirs in zip(hdul, ref):
        assert type(mine) is type(theirs)
        assert mine.header == theirs.header
    np.testing.assert_array_equal(hdul[1].data["FLUX"], ref[1].data["FLUX"])
    np.testing.assert_array_equal(hdul[2].data, ref[2].data)
    before = bytes(hdul.raw)
    hdul[1].data["FLUX"][:] = -1.0
    hdul[2].data[:] = 7
    assert bytes(hdul.raw) == before
    out = io.BytesIO()
    CutoutFactory().cube_cut(spoc_cube, CENTRE, [7, 4], memory_only=True).writeto(out)
    assert out.getvalue() == bytes(hdul.raw)  # astropy's writeto of the unread list: same bytes
    hdul.writeto(tmp_path / "edited.fits")  # astropy builds its output list through the class
    with fits.open(tmp_path / "edited.fits") as back:
        assert np.all(back[1].data["FLUX"] == -1.0) and np.all(back[2].data == 7)


def test_tpf_bytes_with_and_without_astropy_internals(spoc_cube, monkeypatch):
    """tpf_bytes hands back the assembled bytes of an untouched TPF (astropy's header flag), and the
    public-API fallback (every header counted as edited: re-serialised) gives the same bytes; an
    edited header is serialised in both."""
    from core.fitsio import _astropy_io

    raw = bytes(CutoutFactory().cube_cut(spoc_cube, CENTRE, [7, 4], memory_only=True).raw)
    for internals in (True, False):
        monkeypatch.setattr(_astropy_io, "USE_INTERNALS", internals)
        hdul = tpf_mod.TpfHDUList.from_bytes(raw)
        assert tpf_bytes(hdul) == raw
        hdul[0].header["OBJECT"] = "edited"
        edited = tpf_bytes(hdul)
        assert edited != raw and fits.HDUList.fromstring(edited)[0].header["OBJECT"] == "edited"


def test_memory_result_pickles_with_its_edits(spoc_cube):
    """Like astrocut's in-memory HDUList, ours survives pickling (multiprocessing workers return
    TPFs), unread or edited."""
    import pickle

    hdul = CutoutFactory().cube_cut(spoc_cube, CENTRE, 5, memory_only=True)
    back = pickle.loads(pickle.dumps(hdul))
    assert bytes(back.raw) == bytes(hdul.raw)
    np.testing.assert_array_equal(back[1].data["FLUX"], hdul[1].data["FLUX"])
    hdul[0].header["OBJECT"] = "edited"
    hdul[1].data["FLUX"][0, 0, 0] = 4321.0
    back = pickle.loads(pickle.dumps(hdul))
    assert back[0].header["OBJECT"] == "edited" and back[1].data["FLUX"][0, 0, 0] == 4321.0


def test_build_tpf_for_the_service(spoc_cube):
    cube = open_cube(spoc_cube)
    hdul = build_tpf(cube, SkyCoord(DEMO_RA, DEMO_DEC, unit="deg"), CutoutSize(6, 4))
    assert hdul[1].data["FLUX"].shape == (10, 4, 6)
    assert fits.HDUList.fromstring(tpf_bytes(hdul))[2].data.shape == (4, 6)


def test_s3_cube_matches_local(s3_server, spoc_cube):
    uri = s3_server.upload(spoc_cube, "cubes", "tess-s0038-2-2-cube.fits")
    local = CutoutFactory().cube_cut(spoc_cube, CENTRE, 6, memory_only=True)
    remote = CutoutFactory().cube_cut(uri, CENTRE, 6, memory_only=True, threads=4, s3=s3_server.config)
    np.testing.assert_array_equal(local[1].data["FLUX"], remote[1].data["FLUX"])
    assert local[1].header["1CRV5P"] == remote[1].header["1CRV5P"]


# -- names and files ---------------------------------------------------------------------------


def test_tpf_filename():
    assert (
        tpf_filename("/data/tess-s0006-1-1-cube.fits", 81.9256089, -1.508808, 125, 37)
        == "tess-s0006-1-1_81.925609_-1.508808_125x37_astrocut.fits"
    )
    # astrocut's rstrip('-cube') would eat the trailing 'e', 'b', 'u', 'c' of the stem too.
    assert tpf_filename("s3://b/k/cube-bu-cube.fits", 1, 2, 3, 4).startswith("cube-bu_1.000000_")
    assert tpf_filename("tica-s0038-2-2.fits", 1, 2, 3, 4).startswith("tica-s0038-2-2_")


def test_file_output_is_renamed_into_place(spoc_cube, tmp_path, monkeypatch):
    calls = []
    real_replace = os.replace

    def spy(src, dst):
        calls.append((str(src), str(dst)))
        assert os.path.getsize(src) > 0
        return real_replace(src, dst)

    monkeypatch.setattr(tpf_mod.os, "replace", spy)
    out = tmp_path / "out"
    path = CutoutFactory().cube_cut(spoc_cube, CENTRE, [5, 3], output_path=out, verbose=True)
    assert os.path.basename(path) == f"tess-s0038-2-2_{DEMO_RA:.6f}_{DEMO_DEC:.6f}_5x3_astrocut.fits"
    assert len(calls) == 1 and os.path.dirname(calls[0][0]) == str(out) and calls[0][1] == path
    assert os.listdir(out) == [os.path.basename(path)]
    with fits.open(path) as hdul:
        assert hdul[1].data["FLUX"].shape == (10, 3, 5)
    named = CutoutFactory().cube_cut(spoc_cube, CENTRE, 5, target_pixel_file="mine.fits", output_path=out)
    assert named.endswith("/mine.fits") and os.path.exists(named)


def _astrocut_name(cube, size, out, **kwargs):
    import astrocut

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return os.path.basename(astrocut.cube_cut(cube, CENTRE, size, output_path=out, **kwargs))


@pytest.mark.parametrize("size", [[5, 3], 5, [5, 7] * u.pix, [3, 5] * u.arcmin, [1 * u.arcsec, 5 * u.arcsec], 4.0])
def test_module_cube_cut_and_legacy_filenames(spoc_cube, tmp_path, size):
    from core import cube_cut

    out = tmp_path / "ours"
    # this package's default: the TESScut name (astrocut's legacy_filenames=True)
    default = cube_cut(spoc_cube, CENTRE, size, output_path=out)
    assert os.path.basename(default) == _astrocut_name(spoc_cube, size, tmp_path / "a", legacy_filenames=True)
    assert default == CutoutFactory().cube_cut(spoc_cube, CENTRE, size, output_path=out)
    # legacy_filenames=False: astrocut 1.4.0's default name (7 decimals, the size as given)
    for new in (cube_cut(spoc_cube, CENTRE, size, output_path=out, legacy_filenames=False),
                CutoutFactory().cube_cut(spoc_cube, CENTRE, size, output_path=out, legacy_filenames=False)):
        assert os.path.basename(new) == _astrocut_name(spoc_cube, size, tmp_path / "a", legacy_filenames=False)
        with fits.open(new) as a, fits.open(default) as b:
            np.testing.assert_array_equal(a[1].data["FLUX"], b[1].data["FLUX"])
    hdul = cube_cut(spoc_cube, CENTRE, size, memory_only=True, legacy_filenames=False)
    assert isinstance(hdul, fits.HDUList) and hdul[1].data["FLUX"].shape[0] == 10


def test_module_cube_cut_names(spoc_cube, tmp_path):
    from core import cube_cut

    path = cube_cut(spoc_cube, CENTRE, [5, 3], output_path=tmp_path, legacy_filenames=False)
    assert os.path.basename(path) == f"tess-s0038-2-2_{DEMO_RA:.7f}_{DEMO_DEC:.7f}_5-x-3_astrocut.fits"
    path = cube_cut(spoc_cube, CENTRE, [5, 7] * u.pix, output_path=tmp_path, legacy_filenames=False)
    assert path.endswith("_5.0pix-x-7.0pix_astrocut.fits")
    path = cube_cut(spoc_cube, CENTRE, [5, 3], output_path=tmp_path)
    assert os.path.basename(path) == f"tess-s0038-2-2_{DEMO_RA:.6f}_{DEMO_DEC:.6f}_5x3_astrocut.fits"
    # astrocut 1.4.0's positional order: target_pixel_file fourth
    assert cube_cut(spoc_cube, CENTRE, 5, "mine.fits", tmp_path).endswith("/mine.fits")


@pytest.mark.parametrize("size, used", [([5, 3, 9], [5, 3]), ([5, 3, 9, 1] * u.pix, [5, 3] * u.pix),
                                        (np.array([4, 6, 2]), [4, 6])])
def test_sizes_of_three_or_more_elements_warn_and_use_the_first_two(spoc_cube, tmp_path, size, used):
    from core import cube_cut

    with pytest.warns(InputWarning, match="Too many dimensions in cutout size, only the first two will be used"):
        ours = CutoutFactory().cube_cut(spoc_cube, CENTRE, size, memory_only=True)
    expected = CutoutFactory().cube_cut(spoc_cube, CENTRE, used, memory_only=True)
    np.testing.assert_array_equal(ours[1].data["FLUX"], expected[1].data["FLUX"])
    with pytest.warns(InputWarning):
        path = cube_cut(spoc_cube, CENTRE, size, output_path=tmp_path, legacy_filenames=False)
    assert path == cube_cut(spoc_cube, CENTRE, used, output_path=tmp_path, legacy_filenames=False)


def test_cube_wcs_carries_the_image_size(spoc_cube, astrocut_spoc_cube):
    from astrocut import CutoutFactory as AstrocutFactory

    from core.moving_target import center_on_path, path_to_footprints

    factory = CutoutFactory()
    tpf = factory.cube_cut(spoc_cube, CENTRE, 15, memory_only=True)
    theirs = AstrocutFactory()
    _quiet_call(theirs.cube_cut, astrocut_spoc_cube, CENTRE, 5, memory_only=True)
    assert factory.cube_wcs.pixel_shape == theirs.cube_wcs.pixel_shape == (64, 64)
    assert open_cube(spoc_cube).wcs.pixel_shape == (64, 64)
    # what astrocut's moving-target helpers need of it
    path = SkyCoord([DEMO_RA, DEMO_RA + 0.01], [DEMO_DEC, DEMO_DEC], unit="deg")
    footprints = path_to_footprints(path, [5, 5], factory.cube_wcs)
    assert footprints and footprints[0]["size"][0] >= 5
    times = tpf[1].data["TIME"]
    track = Table({"time": Time(times[[0, -1]] + 2457000, format="jd"),
                   "position": SkyCoord([DEMO_RA] * 2, [DEMO_DEC] * 2, unit="deg")})
    moving = center_on_path(track, 5, [tpf], img_wcs=factory.cube_wcs, verbose=False, memory_only=True)
    assert moving[2].data.shape == (64, 64)  # the FFI-sized aperture img_wcs allows
    # a copy: editing it leaves the cube's cached WCS alone
    factory.cube_wcs.wcs.crval = [0, 0]
    assert open_cube(spoc_cube).wcs.wcs.crval[0] != 0


def _quiet_call(func, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return func(*args, **kwargs)


# -- bad input ---------------------------------------------------------------------------------


def test_position_off_the_ccd(spoc_cube):
    for coord in (f"{DEMO_RA} {DEMO_DEC + 1}", f"{(DEMO_RA + 180) % 360} {-DEMO_DEC}"):
        with pytest.raises(NoDataError) as err:
            CutoutFactory().cube_cut(spoc_cube, coord, 5, memory_only=True)
        assert err.value.field == "coordinates"


@pytest.mark.parametrize("size", [0, -3, [5, 0], "big", []])
def test_bad_sizes(spoc_cube, size):
    with pytest.raises(InvalidInputError) as err:
        CutoutFactory().cube_cut(spoc_cube, CENTRE, size, memory_only=True)
    assert err.value.field == "cutout_size"


def test_limits(spoc_cube):
    with pytest.raises(TooLargeError, match="per side"):
        CutoutFactory(max_side=20).cube_cut(spoc_cube, CENTRE, 21, memory_only=True)
    with pytest.raises(TooLargeError, match="pixel-frames"):
        CutoutFactory(max_volume=999).cube_cut(spoc_cube, CENTRE, 10, memory_only=True)
    assert CutoutFactory(max_side=20, max_volume=1000).cube_cut(spoc_cube, CENTRE, 10, memory_only=True)


def test_bad_coordinates_and_product(spoc_cube):
    with pytest.raises(InvalidInputError) as err:
        CutoutFactory().cube_cut(spoc_cube, "not a place", 5, memory_only=True)
    assert err.value.field == "coordinates"
    with pytest.raises(InvalidInputError) as err:
        CutoutFactory().cube_cut(spoc_cube, CENTRE, 5, product="KEPLER", memory_only=True)
    assert err.value.field == "product"


def test_bad_files(spoc_sector, spoc_cube, tmp_path):
    with pytest.raises(NotFoundError):
        CutoutFactory().cube_cut(tmp_path / "missing-cube.fits", CENTRE, 5, memory_only=True)
    with pytest.raises(CorruptFileError):
        CutoutFactory().cube_cut(spoc_sector.ffi_files[0], CENTRE, 5, memory_only=True)
    truncated = tmp_path / "short-cube.fits"
    truncated.write_bytes(Path(spoc_cube).read_bytes()[:20000])
    with pytest.raises(CorruptFileError):
        CutoutFactory().cube_cut(truncated, CENTRE, 5, memory_only=True)


def test_cube_cut_of_what_is_not_a_cube_names_cube_file(spoc_sector, tmp_path):
    with pytest.raises(InvalidInputError) as info:
        CutoutFactory().cube_cut(42, CENTRE, 5)
    assert info.value.field == "cube_file"
    plain = tmp_path / "plain.fits"
    fits.PrimaryHDU(np.zeros((10, 10), np.float32)).writeto(plain)
    for path in (plain, spoc_sector.ffi_files[0]):
        with pytest.raises(CorruptFileError) as info:
            CutoutFactory().cube_cut(str(path), CENTRE, 5, memory_only=True)
        assert "not a TESS cube" in info.value.message and "END" not in info.value.message
        assert info.value.field == "cube_file"


@pytest.mark.parametrize("coordinates", ["577.43 -62.6", "1e308 -62.6", "nan 10", "10 inf", "-200 10"])
def test_cube_cut_refuses_ra_out_of_range(spoc_cube, coordinates):
    with pytest.raises(InvalidInputError) as info:
        CutoutFactory().cube_cut(spoc_cube, coordinates, 5, memory_only=True)
    assert info.value.field == "coordinates"


def test_cube_cut_verbose_prints_progress_and_timings(spoc_cube, tmp_path, capsys):
    CutoutFactory().cube_cut(spoc_cube, CENTRE, 5, output_path=tmp_path, verbose=True)
    out = capsys.readouterr().out
    for needle in ("Using WCS from row", "xmin,xmax", "ymin,ymax", "Image cutout cube shape",
                   "Maximum distance between approximate and true location", "Error in approximate WCS",
                   "Write time", "Total time"):
        assert needle in out, (needle, out)


def test_astrocut_compatible_attributes(spoc_cube):
    factory = CutoutFactory()
    factory.cube_cut(spoc_cube, CENTRE, [7, 5], memory_only=True)
    (x0, x1), (y0, y1) = factory.cutout_lims
    assert (x1 - x0, y1 - y0) == (7, 5)
    assert factory.cutout_wcs.wcs.ctype[0] == "RA---TAN"
    assert factory.center_coord.separation(SkyCoord(DEMO_RA, DEMO_DEC, unit="deg")).arcsec < 1e-6
    assert factory.cube_wcs.has_distortion


# --------------------------------------------------------------------------------------------
# the fast path's caches and threads give the same bytes as the plain path
# --------------------------------------------------------------------------------------------

# (x, y, size): inside, and partly off each edge (NaN padding), on a 64x64 test cube
_PATH_CASES = [(31.81, 32.21, [9, 7]), (1.2, 2.6, 10), (62.3, 63.1, [12, 5]), (40.2, 20.7, 30)]


def _cut(cube, x, y, size) -> bytes:
    ra, dec = cube.wcs.all_pix2world(x, y, 0)
    geo = tpf_mod.locate(cube, f"{float(ra)} {float(dec)}", size)
    return bytes(tpf_mod.cut_bytes(cube, geo).data)


def _fresh(path):
    cube_cache.clear_cache()
    return open_cube(path)


@pytest.mark.parametrize("product", ["SPOC", "TICA"])
def test_prototype_threads_and_caches_give_identical_bytes(product, spoc_cube, tica_cube, monkeypatch):
    path = spoc_cube if product == "SPOC" else tica_cube
    # reference: no prototypes, no threads
    monkeypatch.setattr(tpf_layout, "PROTO_MAX_BYTES", 0)
    monkeypatch.setattr(tpf_layout, "_COPY_THREADS", 1)
    cube = _fresh(path)
    plain = [_cut(cube, *case) for case in _PATH_CASES]
    assert cube.memo.values("tpf-proto") == []
    # every cut from a prototype
    monkeypatch.setattr(tpf_layout, "PROTO_MAX_BYTES", 1 << 30)
    monkeypatch.setattr(tpf_layout, "_PROTO_BYTES_PER_CUBE", 1 << 30)
    cube = _fresh(path)
    assert [_cut(cube, *case) for case in _PATH_CASES] == plain
    assert len(cube.memo.values("tpf-proto")) == len(cube.memo.values("tpf-layout")) > 0
    # repeated cuts (layouts and fits from the caches) are unchanged, and prototypes stay intact
    assert [_cut(cube, *case) for case in _PATH_CASES] == plain
    # two threads, two halves (forced on these small cuts), with and without prototypes
    monkeypatch.setattr(tpf_layout, "_COPY_THREADS", 2)
    monkeypatch.setattr(tpf_layout, "_THREADED_COPY_BYTES", 1)
    assert [_cut(cube, *case) for case in _PATH_CASES] == plain
    monkeypatch.setattr(tpf_layout, "PROTO_MAX_BYTES", 0)
    cube = _fresh(path)
    assert [_cut(cube, *case) for case in _PATH_CASES] == plain
    # and the bytes are a valid TPF whose pixels are the cube's
    with fits.open(io.BytesIO(plain[0])) as hdul:
        assert hdul[1].header["NAXIS2"] == cube.nframes
        # 9x7 around (31.81, 32.21): columns round(27.31)..round(36.31), rows round(28.71)..round(35.71)
        block = cube.read_block(29, 36, 27, 36)
        np.testing.assert_array_equal(hdul[1].data["FLUX"], block[..., 0].transpose(2, 0, 1))
    cube_cache.clear_cache()


def test_caches_are_bounded(spoc_cube, monkeypatch):
    monkeypatch.setattr(tpf_layout, "_LAYOUTS_PER_CUBE", 3)
    monkeypatch.setattr(tpf_layout, "_FITS_PER_CUBE", 4)
    monkeypatch.setattr(tpf_layout, "_PROTO_BYTES_PER_CUBE", 600_000)
    cube = _fresh(spoc_cube)
    for size in range(3, 12):
        _cut(cube, 31.81, 32.21, size)
    layouts, fits_ = cube.memo.values("tpf-layout"), cube.memo.values("tpf-fit")
    assert [(lay.nx, lay.ny) for lay in layouts] == [(9, 9), (10, 10), (11, 11)]  # the most recent shapes
    assert len(fits_) == 4
    kept = sum(proto.nbytes for proto in cube.memo.values("tpf-proto"))
    assert 0 < kept <= 600_000
    cube_cache.clear_cache()


def test_world_to_pixel_is_astropys(spoc_cube):
    """The fast SIP inversion returns astropy's all_world2pix answer (the same iteration)."""
    cube = _fresh(spoc_cube)
    wcs = cube.wcs
    rng = np.random.default_rng(3)
    pts = np.vstack([rng.uniform(-20, 84, (300, 2)), np.round(rng.uniform(0, 63, (50, 2))) + 0.5])
    for x, y in pts:
        ra, dec = wcs.all_pix2world(x, y, 0)
        fx, fy = cube_mod._world2pix(wcs, float(ra), float(dec))
        ax, ay = wcs.all_world2pix(float(ra), float(dec), 0)
        assert abs(fx - float(ax)) < 1e-12 and abs(fy - float(ay)) < 1e-12
        assert abs(fx - x) < 1e-3 and abs(fy - y) < 1e-3
    # the far side of the sky is not on the CCD
    ra0, dec0 = wcs.wcs.crval
    assert np.isnan(cube.radec_to_pixel((ra0 + 180) % 360, -dec0)[0])
    cube_cache.clear_cache()


def test_pixel_positions_are_cached_and_bounded(spoc_cube, monkeypatch):
    monkeypatch.setattr(cube_mod, "_PIXELS_CACHED", 3)
    cube = _fresh(spoc_cube)
    wcs = cube.wcs
    positions = [tuple(float(v) for v in wcs.all_pix2world(10.0 + i, 20.0 + i, 0)) for i in range(7)]
    first = [cube.radec_to_pixel(ra, dec) for ra, dec in positions]
    assert len(cube.geometry.memo.values("pixel")) <= 3
    # cached or not, the answer is the same (and is the pixel the position came from)
    assert [cube.radec_to_pixel(ra, dec) for ra, dec in positions] == first
    for i, (x, y) in enumerate(first):
        assert abs(x - (10 + i)) < 1e-3 and abs(y - (20 + i)) < 1e-3
    # off the sky's projection: NaN, first computed, then from the cache
    far = ((wcs.wcs.crval[0] + 180) % 360, -wcs.wcs.crval[1])
    assert all(np.isnan(v) for _ in range(2) for v in cube.radec_to_pixel(*far))
    cube_cache.clear_cache()


def test_concurrent_cuts_share_the_caches_safely(spoc_cube, monkeypatch):
    """Many threads cutting one cube (shapes and windows evicted under them, big-cut threads on)
    get exactly the bytes a lone thread gets."""
    from concurrent.futures import ThreadPoolExecutor

    cube = _fresh(spoc_cube)
    rng = np.random.default_rng(7)
    jobs = [(float(x), float(y), [int(a), int(b)]) for x, y, a, b in zip(
        rng.uniform(0, 63, 120), rng.uniform(0, 63, 120), rng.integers(1, 20, 120), rng.integers(1, 20, 120)
    )]  # fmt: skip
    expected = [_cut(cube, *job) for job in jobs]
    monkeypatch.setattr(tpf_layout, "_LAYOUTS_PER_CUBE", 4)
    monkeypatch.setattr(tpf_layout, "_FITS_PER_CUBE", 8)
    monkeypatch.setattr(tpf_layout, "_PROTO_BYTES_PER_CUBE", 200_000)
    monkeypatch.setattr(tpf_layout, "_THREADED_COPY_BYTES", 20_000)
    monkeypatch.setattr(tpf_layout, "_COPY_THREADS", 2)
    monkeypatch.setattr(cube_mod, "_PIXELS_CACHED", 16)
    cube = _fresh(spoc_cube)
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda job: _cut(cube, *job), jobs * 3))
    assert got == expected * 3
    cube_cache.clear_cache()
