"""core.images.index: footprints from headers, position queries from memory, incremental rebuilds."""

from __future__ import annotations

import os

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from core.images.index import ImageIndex, file_stem, footprint
from core.storage import range_file

SCALE = 1.0 / 3600  # 1 arcsec per pixel


def _header(ra: float, dec: float, nx: int, ny: int, rotation_deg: float = 0.0) -> fits.Header:
    theta = np.radians(rotation_deg)
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = [(nx + 1) / 2, (ny + 1) / 2]
    w.wcs.cd = SCALE * np.array([[-np.cos(theta), np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    return w.to_header()


def _write(path, ra, dec, nx=100, ny=60, rotation_deg=0.0, extra_hdus=()):
    hdus = [fits.PrimaryHDU(), fits.ImageHDU(np.zeros((ny, nx), np.float32), _header(ra, dec, nx, ny, rotation_deg)),
            *extra_hdus]
    fits.HDUList(hdus).writeto(path)
    return str(path)


def _index(path, ra, dec, **kw) -> ImageIndex:
    _write(path, ra, dec, **kw)
    return ImageIndex.build({"s": [str(path.parent)]})


def test_footprint_of_a_tan_image():
    center, radius, polygon, scale = footprint(_header(150.0, 2.0, 100, 60), (60, 100))
    assert center == pytest.approx((150.0, 2.0), abs=1e-9)
    assert radius == pytest.approx(np.hypot(50, 30) * SCALE, rel=1e-4)
    assert len(polygon) == 8 and scale == pytest.approx(SCALE)
    assert footprint(fits.Header(), (10, 10)) is None  # no WCS


def test_containing_uses_the_polygon_not_just_the_circle(tmp_path):
    index = _index(tmp_path / "a.fits", 150.0, 2.0, rotation_deg=30.0)
    assert len(index) == 1 and index.surveys() == ["s"]
    assert index.containing(150.0, 2.0)
    # along the long side's axis but past the short side: inside the circle, outside the image
    off = 40 * SCALE
    theta = np.radians(30.0)
    ra, dec = 150.0 + off * np.sin(theta) / np.cos(np.radians(2.0)), 2.0 + off * np.cos(theta)
    assert not index.containing(ra, dec)
    assert index.containing(ra, dec, radius_deg=15 * SCALE)
    assert not index.containing(150.0, 2.0 + 0.1)
    assert index.containing(150.0, 2.0, surveys=["other"]) == []


def test_containing_across_ra_zero_and_near_the_pole(tmp_path):
    (tmp_path / "wrap").mkdir()
    (tmp_path / "pole").mkdir()
    wrap = _index(tmp_path / "wrap" / "w.fits", 0.005, 0.0)
    assert wrap.containing(359.995, 0.0) and wrap.containing(-0.005, 0.0)
    pole = _index(tmp_path / "pole" / "p.fits", 45.0, 89.995, nx=100, ny=100)  # 50" = 0.0139 deg each side
    assert pole.containing(225.0, 89.998)  # across the pole, 0.007 deg from the centre
    assert not pole.containing(45.0, 89.98)


def test_build_reads_headers_only_and_skips_what_it_cannot_use(tmp_path, monkeypatch):
    root = tmp_path / "root"
    root.mkdir()
    table = fits.BinTableHDU.from_columns([fits.Column("a", "J", array=np.arange(3))])
    good = _write(root / "good.fits", 10.0, 10.0, extra_hdus=[table, fits.ImageHDU(np.zeros((4, 4)))])
    (root / "junk.fits").write_bytes(b"junk")
    (root / "readme.txt").write_text("not listed")
    outside = _write(tmp_path / "outside.fits", 10.0, 10.0)
    os.symlink(outside, root / "link.fits")
    opened = []
    real = range_file.open_fits
    monkeypatch.setattr(range_file, "open_fits", lambda uri, **kw: opened.append(uri) or real(uri, **kw))

    index = ImageIndex.build({"s": [str(root)], "missing": [str(tmp_path / "nowhere")]})
    assert [(e.uri, e.ext) for e in index.entries] == [(os.path.realpath(good), 1)]  # not the table, not no-WCS
    assert {os.path.basename(u) for u, _ in index.skipped} == {"junk.fits", "link.fits"}
    assert index.surveys() == ["s", "missing"]
    assert sorted(opened) == sorted([os.path.realpath(good), os.path.realpath(root / "junk.fits")])

    opened.clear()
    again = ImageIndex.build({"s": [str(root)]}, previous=index)
    assert opened == [] and again.opened == 0  # unchanged files (the failed one too) are not re-read
    assert [(e.uri, e.ext) for e in again.entries] == [(e.uri, e.ext) for e in index.entries]
    (root / "junk.fits").write_bytes(b"junk, changed")
    ImageIndex.build({"s": [str(root)]}, previous=again)
    assert opened == [os.path.realpath(root / "junk.fits")]


def test_build_over_s3(s3_server, tmp_path):
    path = _write(tmp_path / "img.fits", 20.0, -5.0)
    uri = s3_server.upload(path, "surveys", "deep/img.fits")
    s3_server.put_bytes(b"not fits", "surveys", "deep/bad.fits")
    index = ImageIndex.build({"deep": ["s3://surveys/deep"]}, s3=s3_server.config)
    assert [e.uri for e in index.containing(20.0, -5.0)] == [uri]
    assert [u for u, _ in index.skipped] == ["s3://surveys/deep/bad.fits"]


def test_file_stem():
    assert file_stem("/a/b/x_drz.fits") == "x_drz"
    assert file_stem("s3://b/k/y.fits.gz") == "y"
    assert file_stem("z.fz") == "z"
