"""core.cubes.cube: parsing cubes once, reading pixel blocks, and refusing what is not a cube."""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits

from core.cubes import cache as cube_cache
from core.cubes.cache import open_cube
from core.errors import CorruptFileError, NotFoundError
from core.synthetic.ffis import DEMO_DEC, DEMO_RA


@pytest.fixture(params=["ours", "astrocut"])
def any_cube(request, spoc_cube, astrocut_spoc_cube) -> str:
    return spoc_cube if request.param == "ours" else astrocut_spoc_cube


def test_attributes(any_cube, spoc_sector):
    cube = open_cube(any_cube)
    assert (cube.ny, cube.nx, cube.nframes, cube.nplanes) == (64, 64, 10, 2)
    assert (cube.sector, cube.camera, cube.ccd, cube.product) == (38, 2, 2, "SPOC")
    assert len(cube.table) == 10
    np.testing.assert_allclose(cube.time, (spoc_sector.tstart + spoc_sector.tstop) / 2)
    # The WCS row: the middle one (astrocut's rule) when every row has a SIP WCS.
    assert cube.wcs_row == 5
    assert cube.wcs.wcs.ctype[1] == "DEC--TAN-SIP"
    with fits.open(any_cube) as hdul:
        assert cube.data_offset == hdul[1]._data_offset
        assert cube.primary_header["SECTOR"] == hdul[0].header["SECTOR"]


def test_read_block_matches_astropy(any_cube):
    cube = open_cube(any_cube)
    block = cube.read_block(10, 17, 3, 12)
    assert block.dtype == np.float32 and block.dtype.isnative
    assert block.shape == (7, 9, 10, 2)
    with fits.open(any_cube, memmap=True) as hdul:
        expected = hdul[1].section[10:17, 3:12, :, :]
    np.testing.assert_array_equal(block, expected)


def test_read_block_reads_only_the_rows_needed(any_cube):
    cube = open_cube(any_cube)
    ranges = cube.ranges(5, 9, 20, 23)
    assert len(ranges) == 4
    assert all(n == 3 * 10 * 2 * 4 for _, n in ranges)
    assert ranges[1][0] - ranges[0][0] == 64 * 10 * 2 * 4
    before = cube.source.stats.snapshot()
    cube.read_block(5, 9, 20, 23)
    gets, nbytes = (a - b for a, b in zip(cube.source.stats.snapshot(), before))
    assert nbytes == 4 * 3 * 10 * 2 * 4
    assert gets == 4


def test_read_block_bounds(spoc_cube):
    cube = open_cube(spoc_cube)
    with pytest.raises(ValueError):
        cube.read_block(60, 70, 0, 5)


def test_cache_hit_skips_parsing(spoc_cube):
    cube_cache.clear_cache()
    parses = cube_cache.CACHE_STATS["parses"]
    first = open_cube(spoc_cube)
    assert cube_cache.CACHE_STATS["parses"] == parses + 1
    second = open_cube(spoc_cube)
    assert second is first
    assert cube_cache.CACHE_STATS["parses"] == parses + 1


def test_cache_notices_a_changed_file(spoc_cube, tmp_path):
    path = tmp_path / "tess-s0038-2-2-cube.fits"
    shutil.copy(spoc_cube, path)
    first = open_cube(path)
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    second = open_cube(path)
    assert second is not first


def test_cache_hit_by_path_is_one_stat(spoc_cube, tmp_path, monkeypatch):
    """A path seen before is served by one stat: no open, no realpath."""
    path = str(tmp_path / "tess-s0038-2-2-cube.fits")
    shutil.copy(spoc_cube, path)
    first = open_cube(path)
    opened = []
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda *a, **k: opened.append(a[0]) or real_open(*a, **k))
    assert open_cube(path) is first
    assert opened == []


def test_cache_notices_a_replaced_file_and_a_moved_symlink(spoc_cube, tmp_path):
    path = tmp_path / "tess-s0038-2-2-cube.fits"
    shutil.copy(spoc_cube, path)
    first = open_cube(path)
    # a copy renamed over it, with the same size and mtime: a new inode, so a new cube
    other = tmp_path / "other.fits"
    shutil.copy(spoc_cube, other)
    st = os.stat(path)
    os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(other, path)
    second = open_cube(path)
    assert second is not first and os.fstat(second.source._fd).st_ino == os.stat(path).st_ino
    # a symlink re-pointed to another cube file
    link = tmp_path / "link-cube.fits"
    a, b = tmp_path / "a-cube.fits", tmp_path / "b-cube.fits"
    shutil.copy(spoc_cube, a)
    shutil.copy(spoc_cube, b)
    link.symlink_to(a)
    via_a = open_cube(link)
    assert via_a.source.path == str(a.resolve())
    link.unlink()
    link.symlink_to(b)
    assert open_cube(link).source.path == str(b.resolve())


def test_contains_and_footprint(spoc_cube):
    cube = open_cube(spoc_cube)
    assert cube.contains(SkyCoord(DEMO_RA, DEMO_DEC, unit="deg"))
    assert not cube.contains(SkyCoord(DEMO_RA + 180, -DEMO_DEC, unit="deg"))
    # 64 px of ~21"; a position ~0.25 deg away is off the pixels but within a 0.3 deg radius.
    off = SkyCoord(DEMO_RA, DEMO_DEC, unit="deg").directional_offset_by(0 * u.deg, 0.25 * u.deg)
    assert not cube.contains(off)
    assert cube.contains(off, radius=0.3 * u.deg)
    corners = cube.footprint()
    assert len(corners) == 4
    centre = SkyCoord(DEMO_RA, DEMO_DEC, unit="deg")
    assert np.all(corners.separation(centre) < 0.3 * u.deg)


def test_tica_cube(tica_cube, tica_sector):
    cube = open_cube(tica_cube)
    assert cube.product == "TICA"
    assert cube.nplanes == 1
    assert cube.timecorr is None
    np.testing.assert_allclose(cube.time, (tica_sector.tstart + tica_sector.tstop) / 2)
    expected_q = np.zeros(10, int)
    expected_q[tica_sector.quality_frames] = 1
    assert np.array_equal(cube.quality != 0, expected_q != 0)


# -- bad input ---------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(NotFoundError) as err:
        open_cube(tmp_path / "nope-cube.fits")
    assert err.value.field == "cube_file"


def test_an_ffi_is_not_a_cube(spoc_sector):
    with pytest.raises(CorruptFileError, match="not a TESS cube"):
        open_cube(spoc_sector.ffi_files[0])


def test_not_fits(tmp_path):
    path = tmp_path / "junk-cube.fits"
    path.write_bytes(b"hello" * 1000)
    with pytest.raises(CorruptFileError, match="not a FITS file"):
        open_cube(path)


def test_truncated_cube(spoc_cube, tmp_path):
    data = Path(spoc_cube).read_bytes()
    for keep in (len(data) // 2, len(data) - 2880):
        path = tmp_path / f"trunc{keep}-cube.fits"
        path.write_bytes(data[:keep])
        with pytest.raises(CorruptFileError, match="truncated"):
            open_cube(path)


def test_table_without_required_columns(spoc_cube, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with fits.open(spoc_cube) as hdul:
            cols = [c for c in hdul[2].columns if c.name != "DQUALITY"]
            table = fits.BinTableHDU.from_columns(cols)
            out = fits.HDUList([fits.PrimaryHDU(header=hdul[0].header), fits.ImageHDU(hdul[1].data), table])
            path = tmp_path / "nodq-cube.fits"
            out.writeto(path)
    with pytest.raises(CorruptFileError, match="DQUALITY"):
        open_cube(path)


def test_three_dimensional_image_is_not_a_cube(tmp_path):
    path = tmp_path / "cube3d-cube.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.zeros((4, 5, 6), np.float32))]).writeto(path)
    with pytest.raises(CorruptFileError, match="not a TESS cube"):
        open_cube(path)


def test_each_thread_gets_its_own_wcs(spoc_cube):
    """Guards against sharing one astropy WCS between worker threads (wcslib's wcsprm is not
    thread-safe: concurrent transforms returned wrong pixels under load in the service)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    cube = open_cube(spoc_cube)
    assert cube.wcs is cube.wcs  # one copy per thread, made once
    expected = cube.radec_to_pixel(DEMO_RA, DEMO_DEC)
    barrier = threading.Barrier(4)

    def work(_):
        barrier.wait()
        got = [cube.radec_to_pixel(DEMO_RA, DEMO_DEC) for _ in range(50)]
        return id(cube.wcs), got

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(work, range(4)))
    ids = {r[0] for r in results}
    assert len(ids) == 4 and id(cube.wcs) not in ids
    assert all(got == [expected] * 50 for _, got in results)


def test_pixel_lookup_leaves_the_warning_filters_alone(spoc_cube, monkeypatch):
    """On-CCD positions never swap the process-wide warning filters (``catch_warnings`` is not
    thread-safe: concurrent cuts could leave an "ignore" behind), and far-off positions give NaN
    without letting a warning out."""
    cube_cache.clear_cache()
    cube = open_cube(spoc_cube)
    xs, ys = np.meshgrid(np.linspace(0, 63, 9), np.linspace(0, 63, 9))
    ras, decs = cube.wcs.all_pix2world(xs.ravel(), ys.ravel(), 0)

    def refuse(*args, **kwargs):
        raise AssertionError("catch_warnings used on the on-CCD path")

    monkeypatch.setattr(warnings, "catch_warnings", refuse)
    for ra, dec, x, y in zip(ras, decs, xs.ravel(), ys.ravel()):
        px, py = cube.radec_to_pixel(float(ra), float(dec))
        assert abs(px - x) < 1e-3 and abs(py - y) < 1e-3
    monkeypatch.undo()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for ra, dec in [(DEMO_RA + 180, -DEMO_DEC), (DEMO_RA + 90, 0.0), (DEMO_RA, DEMO_DEC + 60)]:
            x, y = cube.radec_to_pixel(float(ra % 360), float(dec))
            assert np.isnan(x) and np.isnan(y) or not (0 <= x < 64 and 0 <= y < 64)
