"""core.synthetic.archive: sparse real-size cubes, readable, cuttable, with distinct real footprints."""

from __future__ import annotations

import math
import os
import re

import numpy as np
import pytest
from astropy.io import fits

from core.cubes import cache as cube_mod
from core.cubes.cube import Cube
from core.synthetic.archive import (
    _rotated_wcs,
    archive_wcs,
    cube_name,
    write_archive,
    write_sparse_cube,
)
from core.tess_wcs import archived_tables, full_frame_wcs, pointings
from core.tpf.cut import CutoutFactory

MB = 1024 * 1024


def _disk(path: os.PathLike) -> int:
    return os.stat(path).st_blocks * 512


def _sep(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Angular separation in degrees."""
    (ra1, d1), (ra2, d2) = (np.radians(a), np.radians(b))
    c = math.sin(d1) * math.sin(d2) + math.cos(d1) * math.cos(d2) * math.cos(ra1 - ra2)
    return math.degrees(math.acos(max(-1.0, min(1.0, c))))


def _centre(cube: Cube) -> tuple[float, float]:
    ra, dec = cube.wcs.all_pix2world(1068.0, 1024.0, 0)
    return float(ra), float(dec)


@pytest.fixture(autouse=True)
def _fresh_cache():
    cube_mod.clear_cache()
    yield
    cube_mod.clear_cache()


def test_real_size_cube_is_sparse_readable_and_cuts(tmp_path):
    path = write_sparse_cube(tmp_path / "tess-s0038-2-2-cube.fits", sector=38, camera=2, ccd=2)
    assert path.stat().st_size > 130e9  # the real cube's size ...
    assert _disk(path) < 5 * MB  # ... for the cost of its headers and table
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind
    c = cube_mod.open_cube(path)
    assert (c.ny, c.nx, c.nframes, c.nplanes) == (2078, 2136, 3705, 2)
    assert (c.product, c.sector, c.camera, c.ccd) == ("SPOC", 38, 2, 2)
    assert len(c.table) == 3705 and 130 <= len(c.table.columns) <= 150
    # times inside the sector's dates, increasing, with the mid-sector gap
    p = pointings()[38]
    t0, t1 = np.asarray(c.table["TSTART"]), np.asarray(c.table["TSTOP"])
    assert p["start"] - 2457000 <= t0[0] and t1[-1] <= p["end"] - 2457000
    assert np.all(np.diff(t0) > 0) and np.all(t1 > t0)
    assert np.max(np.diff(t0)) > 0.5  # the downlink gap
    assert np.all(np.abs(np.asarray(c.table["BARYCORR"])) < 0.006)  # |barycorr| < 500 s
    assert 0 < np.count_nonzero(c.table["DQUALITY"]) < 100
    names = np.asarray(c.table["FFI_FILE"]).astype(str)
    assert all(re.fullmatch(r"tess\d{13}-s0038-2-2-0209-s_ffic\.fits", n) for n in names[:: 97])
    assert names[0] < names[-1]
    # the WCS of every row is the real one of (38, 2, 2)
    real = full_frame_wcs(38, 2, 2)
    for col, val in (("CRVAL1", real.wcs.crval[0]), ("CRVAL2", real.wcs.crval[1]),
                     ("CD1_1", real.wcs.cd[0, 0]), ("A_2_0", real.sip.a[2, 0])):
        assert np.all(np.asarray(c.table[col]) == val)
    xs, ys = np.array([44.0, 1068.0, 2091.0]), np.array([0.0, 1024.0, 2047.0])
    np.testing.assert_allclose(np.array(c.wcs.all_pix2world(xs, ys, 0)), np.array(real.all_pix2world(xs, ys, 0)),
                               atol=1e-9)
    # a cut inside the footprint: zeros from the hole, the table's times
    ra, dec = c.wcs.all_pix2world(700.0, 1500.0, 0)
    tpf = CutoutFactory().cube_cut(path, f"{float(ra)} {float(dec)}", 10, memory_only=True)
    pix = tpf[1].data
    assert pix["FLUX"].shape == (3705, 10, 10) and not np.any(pix["FLUX"])
    np.testing.assert_allclose(pix["TIME"], (t0 + t1) / 2)
    assert tpf[1].header["CAMERA"] == 2 and tpf[1].header["CCD"] == 2


def test_tica_cube(tmp_path):
    path = write_sparse_cube(tmp_path / cube_name(38, 2, 2, "TICA"), sector=38, camera=2, ccd=2, frames=200,
                             product="TICA")
    assert path.name == "tica-s0038-2-2-cube.fits"
    c = cube_mod.open_cube(path)
    assert (c.product, c.nplanes, c.nframes, c.camera, c.ccd) == ("TICA", 1, 200, 2, 2)
    assert str(c.table["FFI_FILE"][0]).startswith("hlsp_tica_tess_ffi_s0038-o1-")
    ra, dec = _centre(c)
    tpf = CutoutFactory().cube_cut(path, f"{ra} {dec}", 5, product="TICA", memory_only=True)
    assert tpf[1].data["FLUX"].shape == (200, 5, 5)


@pytest.mark.parametrize("product", ["SPOC", "TICA"])
def test_layout_is_cube_factorys(tmp_path, product):
    """Same HDUs, header keywords and table columns as CubeFactory builds from synthetic FFIs."""
    from core.building.factory import CubeFactory
    from core.synthetic.ffis import write_sector

    s = write_sector(tmp_path / "ffi", sector=38, camera=2, ccd=2, size=(8, 8), frames=2, product=product)
    ref = tmp_path / "ref.fits"
    CubeFactory(product=product).make_cube([str(f) for f in s.ffi_files], str(ref), verbose=False)
    ours = write_sparse_cube(tmp_path / "ours.fits", sector=38, camera=2, ccd=2, frames=2, product=product)
    with fits.open(ref) as a, fits.open(ours) as b:
        assert len(a) == len(b) == 3
        for i in range(3):
            assert list(a[i].header.keys()) == list(b[i].header.keys())
        # DATASUM's width follows the template's value (9 or 10 digits): the one allowed difference
        fa = [(c.name, c.format) for c in a[2].columns if c.name != "DATASUM"]
        fb = [(c.name, c.format) for c in b[2].columns if c.name != "DATASUM"]
        assert fa == fb
        for key in ("TELESCOP", "INSTRUME", "SECTOR", "ORIGIN", "EXTNAME", "CAMERA", "CCD"):
            assert a[0].header.get(key) == b[0].header.get(key)
        ra_, rb = a[2].data[0], b[2].data[0]
        for key in ("TELESCOP", "CTYPE2", "A_ORDER"):
            assert ra_[key] == rb[key]
        for key in ("CRVAL1", "CD1_1", "A_2_0"):  # CRPIX differs: the reference is an 8x8 window
            assert ra_[key] == pytest.approx(rb[key], rel=1e-12)


def test_archive_footprints_distinct_and_resumable(tmp_path):
    paths = write_archive(tmp_path, 20, frames=40)
    assert [p.name for p in paths[:2]] == ["tess-s0001-1-1-cube.fits", "tess-s0001-1-2-cube.fits"]
    assert paths[15].name == "tess-s0001-4-4-cube.fits" and paths[19].name == "tess-s0002-1-4-cube.fits"
    cubes = [cube_mod.open_cube(p) for p in paths[:16]]
    assert [(c.sector, c.camera, c.ccd) for c in cubes] == [(1, k // 4 + 1, k % 4 + 1) for k in range(16)]
    centres = [_centre(c) for c in cubes]
    for i in range(16):
        real = full_frame_wcs(1, cubes[i].camera, cubes[i].ccd).all_pix2world(1068.0, 1024.0, 0)
        assert _sep(centres[i], (float(real[0]), float(real[1]))) < 1e-9
        for j in range(i + 1, 16):
            assert _sep(centres[i], centres[j]) > 5.0  # CCD centres are ~12 deg apart
        # each cube holds its own centre and no other CCD's centre
        hits = [k for k, c in enumerate(cubes) if c.contains_radec(*centres[i])]
        assert hits == [i]
    # resumable: present files are kept, a damaged one is rewritten
    before = {p: p.stat().st_mtime_ns for p in paths}
    os.truncate(paths[3], 1000)
    again = write_archive(tmp_path, 20, frames=40)
    assert again == paths
    assert all(p.stat().st_mtime_ns == before[p] for p in paths if p != paths[3])
    assert cube_mod.open_cube(paths[3]).nframes == 40


def test_write_archive_real_size_is_small_on_disk(tmp_path):
    # (how long writing takes is what bench/bench_archive.py prints on its "archive:" line)
    paths = write_archive(tmp_path, 16, first_sector=40)  # one sector of 3,705-frame cubes
    assert len(paths) == 16
    assert all(p.stat().st_size > 130e9 for p in paths)
    assert sum(_disk(p) for p in paths) < 16 * 5 * MB


def test_unarchived_sectors_get_rotated_real_footprints():
    # the rotation reproduces an archived sector from another one (camera geometry is rigid)
    for camera, ccd in ((1, 1), (2, 3), (4, 4)):
        rot = _rotated_wcs(50, camera, ccd, ref_sector=108)
        real = full_frame_wcs(50, camera, ccd)
        xs, ys = np.array([44.0, 2091.0, 44.0, 2091.0, 1068.0]), np.array([0.0, 0.0, 2047.0, 2047.0, 1024.0])
        a, b = rot.all_pix2world(xs, ys, 0), real.all_pix2world(xs, ys, 0)
        assert max(_sep((a[0][k], a[1][k]), (b[0][k], b[1][k])) for k in range(5)) < 0.05  # < 9 px
    # a sector with a pointing but no archived solution: 16 distinct footprints near its pointing
    sector = 120
    assert sector in pointings() and str(sector) not in archived_tables()[0]
    centres = [tuple(float(v) for v in archive_wcs(sector, cam, ccd).all_pix2world(1068.0, 1024.0, 0))
               for cam in range(1, 5) for ccd in range(1, 5)]
    assert min(_sep(a, b) for i, a in enumerate(centres) for b in centres[i + 1:]) > 5.0
    p = pointings()[sector]
    assert all(_sep(c, (p["ra"], p["dec"])) < 60 for c in centres)
    # no pointing either: full_frame_wcs's fallback (does not fail)
    assert archive_wcs(9000, 1, 1).wcs.ctype[1] == "DEC--TAN-SIP"
