"""core.cubes.lightcurve (SAP from a cube) and core.cubes.preview.frame_flux, checked against lightkurve on the
TPF core.tpf.cut cuts for the same window, and for reading only the aperture's bytes in bounded memory."""

from __future__ import annotations

import io
import os
import tracemalloc
import warnings

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from core.cubes.cache import open_cube
from core.cubes.lightcurve import aperture_lightcurve, parse_mask, sap, square_mask
from core.cubes.preview import frame_flux
from core.cutout_size import CutoutSize, Limits
from core.errors import InvalidInputError, NoDataError, TooLargeError
from core.synthetic.ffis import DEMO_DEC, DEMO_RA
from core.tpf.cut import cut_bytes, locate

lk = pytest.importorskip("lightkurve")


def _tpf(cube, ra, dec, nx, ny, tmp_path, *, quality_bitmask="none"):
    """The TPF core.tpf.cut cuts (what /astrocut serves), read by lightkurve from a file."""
    geo = locate(cube, f"{ra!r} {dec!r}", CutoutSize(nx, ny))
    path = tmp_path / f"tpf_{nx}x{ny}_{ra:.5f}.fits"
    path.write_bytes(bytes(cut_bytes(cube, geo).data))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lk.read(str(path), quality_bitmask=quality_bitmask), geo


def _mask_in(tpf, lc):
    """``lc``'s aperture as a mask over ``tpf`` (placed by the TPF's 1-based column/row origin)."""
    full = np.zeros(tpf.shape[1:], dtype=bool)
    oy, ox = lc.window.y0 + 1 - tpf.row, lc.window.x0 + 1 - tpf.column
    full[oy : oy + lc.mask.shape[0], ox : ox + lc.mask.shape[1]] = lc.mask
    return full


def _assert_same(ref, lc):
    assert np.array_equal(ref.time.value, lc.time)
    assert np.array_equal(np.asarray(ref.flux.value, np.float32), lc.flux, equal_nan=True)
    assert np.array_equal(np.asarray(ref.flux_err.value, np.float32), lc.flux_err, equal_nan=True)
    assert np.array_equal(np.asarray(ref.quality), lc.quality)


MASKS = {
    "1": square_mask(1),
    "3": square_mask(3),
    "5": square_mask(5),
    "plus": parse_mask("010,111,010"),
    "ragged": parse_mask("0110,1111,1001"),  # even width, uneven rows: 8 pixels, not a square
}


@pytest.mark.parametrize("band_bytes", [1, 1 << 20], ids=["chunked", "one-read"])
@pytest.mark.parametrize("name", list(MASKS))
def test_sap_equals_lightkurve(spoc_cube, tmp_path, name, band_bytes):
    """Bit for bit lightkurve's SAP (flux, flux_err, time, quality) on a 9x7 TPF around the same
    position, with the aperture placed by its reported box; the same whatever the chunking."""
    cube = open_cube(spoc_cube)
    lc = aperture_lightcurve(cube, DEMO_RA, DEMO_DEC, MASKS[name], band_bytes=band_bytes)
    tpf, _ = _tpf(cube, DEMO_RA, DEMO_DEC, 9, 7, tmp_path)
    full = _mask_in(tpf, lc)
    assert full.sum() == MASKS[name].sum() == lc.pixels_on_cube
    _assert_same(tpf.to_lightcurve(aperture_mask=full), lc)
    assert np.isfinite(lc.flux).all() and (lc.flux > 0).all()
    assert lc.quality.any()  # the synthetic sector flags a frame or two


def test_square_aperture_is_the_cutout_of_that_size(spoc_cube, tmp_path):
    """``square_mask(k)`` sums exactly the TPF that a k x k cut makes (lightkurve's 'all')."""
    cube = open_cube(spoc_cube)
    lc = aperture_lightcurve(cube, DEMO_RA, DEMO_DEC, square_mask(4))
    tpf, geo = _tpf(cube, DEMO_RA, DEMO_DEC, 4, 4, tmp_path)
    assert lc.window == geo.window
    _assert_same(tpf.to_lightcurve(aperture_mask="all"), lc)


def test_lightkurve_default_quality_mask_keeps_our_unflagged_cadences(spoc_cube, tmp_path):
    """lightkurve's default bitmask drops flagged cadences: the rest are ours, unchanged."""
    from lightkurve.utils import TessQualityFlags

    cube = open_cube(spoc_cube)
    lc = aperture_lightcurve(cube, DEMO_RA, DEMO_DEC, square_mask(3))
    tpf, _ = _tpf(cube, DEMO_RA, DEMO_DEC, 3, 3, tmp_path, quality_bitmask="default")
    keep = (lc.quality & TessQualityFlags.DEFAULT_BITMASK) == 0
    assert 0 < keep.sum() < len(lc)
    ref = tpf.to_lightcurve(aperture_mask="all")
    assert np.array_equal(ref.flux.value, lc.flux[keep]) and np.array_equal(ref.time.value, lc.time[keep])


def test_aperture_partly_off_the_cube_counts_missing_pixels_as_nan(spoc_cube, tmp_path):
    """Near a corner the TPF is padded with NaN; lightkurve's nansum skips those pixels, and so do we."""
    cube = open_cube(spoc_cube)
    ra, dec = (float(v) for v in cube.wcs.all_pix2world(0.7, 1.2, 0))
    lc = aperture_lightcurve(cube, ra, dec, square_mask(5), band_bytes=64)
    assert lc.window.x0 < 0 and lc.window.y0 < 0 and 0 < lc.pixels_on_cube < 25
    tpf, _ = _tpf(cube, ra, dec, 5, 5, tmp_path)
    _assert_same(tpf.to_lightcurve(aperture_mask="all"), lc)


def test_a_mask_of_no_cube_pixel_gives_nan(spoc_cube):
    cube = open_cube(spoc_cube)
    win = locate(cube, f"{DEMO_RA} {DEMO_DEC}", CutoutSize(3, 3)).window
    from core.geometry import Window

    off = Window(-10, -7, win.y0, win.y1)  # three columns left of the cube
    lc = sap(cube, off, square_mask(3))
    assert lc.pixels_on_cube == 0 and np.isnan(lc.flux).all() and np.isnan(lc.flux_err).all()
    assert len(lc) == cube.nframes


def test_reads_only_the_aperture_pixels(spoc_cube):
    """One read per aperture row (pixels' frames are contiguous), exactly the mask's bytes."""
    cube = open_cube(spoc_cube)
    stats = cube.source.stats
    stats.reset()
    aperture_lightcurve(cube, DEMO_RA, DEMO_DEC, square_mask(3))
    gets, nbytes = stats.snapshot()
    assert (gets, nbytes) == (3, 9 * cube.nframes * 2 * 4)
    stats.reset()
    aperture_lightcurve(cube, DEMO_RA, DEMO_DEC, parse_mask("010,111,010"))
    assert stats.snapshot() == (3, 5 * cube.nframes * 2 * 4)


@pytest.fixture(scope="module")
def long_cube(spoc_cube, tmp_path_factory):
    """A 64x64 cube of 20,000 frames (a 200-s sector) whose data region is a sparse hole, except
    the rows 30..34, filled with known values: 655 MB on paper, a few on disk."""
    frames = 20_000
    with fits.open(spoc_cube) as hdul:
        primary = hdul[0].header.copy()
        table = Table(hdul[2].data)
        ny, nx = hdul[1].data.shape[:2]
    rows = table[np.arange(frames) % len(table)]
    step = float(table["TSTOP"][0] - table["TSTART"][0])
    rows["TSTART"] = table["TSTART"][0] + step * np.arange(frames)
    rows["TSTOP"] = rows["TSTART"] + step
    image = fits.Header([("XTENSION", "IMAGE"), ("BITPIX", -32), ("NAXIS", 4), ("NAXIS1", 2),
                         ("NAXIS2", frames), ("NAXIS3", nx), ("NAXIS4", ny), ("PCOUNT", 0), ("GCOUNT", 1)])
    nbytes = ny * nx * frames * 8
    out = tmp_path_factory.mktemp("long") / "tess-s0038-2-2-cube.fits"
    with open(out, "wb") as fh:
        fh.write(fits.PrimaryHDU(header=primary).header.tostring().encode())
        fh.write(image.tostring().encode())
        start = fh.tell()
        fh.truncate(start + nbytes + (-nbytes % 2880))
        rng = np.random.default_rng(5)
        band = rng.normal(100.0, 5.0, (5, nx, frames, 2)).astype(">f4")
        fh.seek(start + 30 * nx * frames * 8)
        fh.write(band.tobytes())
        fh.seek(0, os.SEEK_END)
        buf = io.BytesIO()
        fits.BinTableHDU(rows).writeto(buf)
        fh.write(buf.getvalue()[2880:])  # skip the dummy primary astropy writes first
    return str(out), band


def test_memory_stays_about_one_band(long_cube):
    """A 10x5 aperture over 20,000 frames is 8 MB of pixels; read in chunks of ~1 MB, the peak of
    Python allocations stays near the chunk and the per-cadence outputs, and the sums are right."""
    path, band = long_cube
    cube = open_cube(path)
    from core.geometry import Window

    win = Window(20, 30, 30, 35)
    _ = cube.time  # the per-frame columns are the cube's, read once: not the light curve's cost
    tracemalloc.start()
    try:
        lc = sap(cube, win, np.ones((5, 10), bool), band_bytes=1 << 20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    outputs = cube.nframes * (8 + 4 + 4 + 4)
    assert peak < outputs + 3 * (1 << 20), peak
    pixels = band[:, 20:30, :, :]  # (rows, cols, frames, planes), the mask's row-major order
    flux = np.ascontiguousarray(pixels[..., 0].reshape(50, -1).astype(np.float32))  # (pixels, frames)
    err = np.ascontiguousarray(pixels[..., 1].reshape(50, -1).astype(np.float32))
    assert np.array_equal(lc.flux, np.nansum(flux.T, axis=1))
    assert np.array_equal(lc.flux_err, np.nansum(err.T ** 2, axis=1) ** 0.5)
    # the hole reads as zeros: an all-zero aperture is no data (NaN), as lightkurve decides
    assert np.isnan(sap(cube, Window(0, 3, 0, 3), square_mask(3)).flux).all()


def test_limits_and_position_errors(spoc_cube):
    cube = open_cube(spoc_cube)
    with pytest.raises(TooLargeError) as exc:
        aperture_lightcurve(cube, DEMO_RA, DEMO_DEC, square_mask(12), limits=Limits(max_side=10))
    assert exc.value.field == "cutout_size"
    with pytest.raises(TooLargeError):
        aperture_lightcurve(cube, DEMO_RA, DEMO_DEC, square_mask(4), limits=Limits(max_volume=15 * cube.nframes))
    with pytest.raises(NoDataError) as exc:
        aperture_lightcurve(cube, 10.0, 20.0, square_mask(3))
    assert exc.value.field == "coordinates"


@pytest.mark.parametrize("text", ["", "012", "11,1", "1 1;11", "000,000", "a", "1,,1"])
def test_parse_mask_refuses(text):
    with pytest.raises(InvalidInputError) as exc:
        parse_mask(text)
    assert exc.value.field == "mask"


def test_parse_mask_reads_rows_in_array_order():
    mask = parse_mask("100,011")
    assert mask.shape == (2, 3) and mask[0].tolist() == [True, False, False] and mask[1].tolist() == [False, True, True]


@pytest.mark.parametrize("side", [0, -1, 2.5, True, "3"])
def test_square_mask_refuses(side):
    with pytest.raises(InvalidInputError) as exc:
        square_mask(side)
    assert exc.value.field == "aperture"


def test_frame_flux_is_the_tpf_frame(spoc_cube, tmp_path):
    """Each frame equals the TPF's FLUX of that cadence, NaN padding included."""
    cube = open_cube(spoc_cube)
    ra, dec = (float(v) for v in cube.wcs.all_pix2world(61.8, 33.0, 0))
    geo = locate(cube, f"{ra!r} {dec!r}", CutoutSize(7, 5))
    assert geo.window.x1 > cube.nx  # partly off the cube
    with fits.open(io.BytesIO(bytes(cut_bytes(cube, geo).data))) as hdul:
        flux = np.asarray(hdul[1].data["FLUX"], dtype=np.float32)
    for i in (0, 4, cube.nframes - 1):
        assert np.array_equal(frame_flux(cube, geo.window, i), flux[i], equal_nan=True)
    with pytest.raises(InvalidInputError) as exc:
        frame_flux(cube, geo.window, cube.nframes)
    assert exc.value.field == "frame"


def test_tica_equals_lightkurve_with_zero_errors(tica_cube, tmp_path):
    """TICA cubes carry no error plane: the TPF's FLUX_ERR is 0, and so is the SAP error."""
    cube = open_cube(tica_cube)
    lc = aperture_lightcurve(cube, DEMO_RA, DEMO_DEC, parse_mask("010,111,010"), band_bytes=100)
    tpf, _ = _tpf(cube, DEMO_RA, DEMO_DEC, 9, 7, tmp_path)
    _assert_same(tpf.to_lightcurve(aperture_mask=_mask_in(tpf, lc)), lc)
    assert (lc.flux_err == 0).all() and np.isfinite(lc.flux).all()


@pytest.mark.parametrize("band_bytes", [1, 1 << 20], ids=["chunked", "one-read"])
def test_range_reads_of_a_remote_source_give_the_same_sums(spoc_cube, band_bytes):
    """Sources without a local file (S3) are read through their concurrent, coalescing range
    reads instead of preadv: the same bytes, so the same light curve, off-cube pixels included."""
    from core.cubes.cube import Cube
    from core.storage.sources import MemorySource

    local = open_cube(spoc_cube)
    with open(spoc_cube, "rb") as fh:
        remote = Cube(local.info, MemorySource(fh.read()))
    ra, dec = (float(v) for v in local.wcs.all_pix2world(1.2, 40.3, 0))
    mask = parse_mask("01110,11011,01110")
    a = aperture_lightcurve(local, ra, dec, mask, band_bytes=band_bytes)
    b = aperture_lightcurve(remote, ra, dec, mask, band_bytes=band_bytes)
    assert 0 < a.pixels_on_cube < mask.sum()
    for name in ("flux", "flux_err", "time", "quality"):
        assert np.array_equal(getattr(a, name), getattr(b, name), equal_nan=True), name
