"""Tests of core.confine: user paths and URIs resolved inside the data roots, everything else refused."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
from astropy.io import fits

from core.confine import confine
from core.errors import ForbiddenError, InvalidInputError

BUCKET = "stpubdata"


@pytest.fixture(scope="module")
def blob(tmp_path_factory):
    """A 1.5 MB file of random bytes, locally and on S3."""
    data = np.random.default_rng(1).integers(0, 256, 1_500_000, dtype=np.uint8).tobytes()
    path = tmp_path_factory.mktemp("blob") / "blob.bin"
    path.write_bytes(data)
    return path, data


@pytest.fixture(scope="module")
def blob_uri(blob, s3_server):
    return s3_server.upload(blob[0], BUCKET, "tess/public/blob.bin")


@pytest.fixture(scope="module")
def cube_file(tmp_path_factory):
    """A small cube in the astrocut layout: (rows, cols, frames, 2) float32 + a table."""
    rng = np.random.default_rng(2)
    data = rng.normal(size=(128, 128, 10, 2)).astype(">f4")
    primary = fits.PrimaryHDU()
    primary.header["SECTOR"] = 38
    table = fits.BinTableHDU.from_columns([fits.Column(name="TSTART", format="D", array=np.arange(10.0))])
    path = tmp_path_factory.mktemp("cube") / "cube.fits"
    fits.HDUList([primary, fits.ImageHDU(data), table]).writeto(path)
    return path, data


def _ranges(size: int, n: int, seed: int, maxlen: int = 50_000) -> list[tuple[int, int]]:
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        ln = rnd.randint(0, maxlen)
        out.append((rnd.randint(0, size - ln), ln))
    return out



# -------------------------------------------------------------------------------------- confine


@pytest.fixture()
def roots(tmp_path):
    root = tmp_path / "data"
    other = tmp_path / "data2"
    outside = tmp_path / "secret"
    for d in (root, other, outside, root / "s38"):
        d.mkdir()
    (root / "s38" / "cube.fits").write_bytes(b"x")
    (other / "only2.fits").write_bytes(b"x")
    (outside / "passwd").write_bytes(b"x")
    (root / "escape").symlink_to(outside)  # a symlink leading out of the root
    (root / "escape.fits").symlink_to(outside / "passwd")
    (root / "alias.fits").symlink_to(root / "s38" / "cube.fits")  # stays inside: fine
    return root, other, outside


def test_confine_accepts_legit_paths(roots):
    root, other, _ = roots
    r = [str(root), str(other)]
    cube = os.path.realpath(root / "s38" / "cube.fits")
    assert confine("s38/cube.fits", r) == cube
    assert confine(str(root / "s38" / "cube.fits"), r) == cube
    assert confine("s38/../s38/cube.fits", r) == cube  # '..' that stays inside is fine
    assert confine("alias.fits", r) == cube
    assert confine("only2.fits", r) == os.path.realpath(other / "only2.fits")  # found in the 2nd root
    assert confine("s38/new.fits", r) == os.path.realpath(root / "s38" / "new.fits")  # not opened/checked
    prefixes = ["s3://stpubdata/tess/public/", "s3://mybucket"]
    uri = "s3://stpubdata/tess/public/mast/tess-s0038-2-2-cube.fits"
    assert confine(uri, r, prefixes) == uri
    assert confine("s3://mybucket/any/key.fits", r, prefixes) == "s3://mybucket/any/key.fits"
    assert confine("s3://stpubdata/tess/x.fits", [], ["s3://stpubdata/tess"]) == "s3://stpubdata/tess/x.fits"


@pytest.mark.parametrize(
    "bad",
    [
        "../secret/passwd",
        "s38/../../secret/passwd",
        "escape/passwd",
        "escape.fits",
        "{outside}/passwd",
        "/etc/passwd",
        "file:///etc/passwd",
        "file:{outside}/passwd",
        "http://169.254.169.254/latest/meta-data",
        "https://example.org/cube.fits",
        "ftp://example.org/cube.fits",
        "s3://otherbucket/tess/public/x.fits",
        "s3://stpubdata/tess/publicity/x.fits",
        "s3://stpubdata/private/x.fits",
        "s3://stpubdata/tess/public/../../private/x.fits",
        "s38/cube.fits\x00.png",
        "s3://stpubdata/tess/public/x\x00.fits",
    ],
)
def test_confine_refuses_escapes(roots, bad):
    root, other, outside = roots
    bad = bad.replace("{outside}", str(outside))
    with pytest.raises(ForbiddenError) as ei:
        confine(bad, [str(root), str(other)], ["s3://stpubdata/tess/public"], field="cube")
    assert ei.value.field == "cube"


def test_confine_no_roots_and_empty(roots):
    root, _, _ = roots
    with pytest.raises(ForbiddenError):
        confine("s38/cube.fits", [], ["s3://stpubdata/tess/public"])
    with pytest.raises(ForbiddenError):
        confine("s3://stpubdata/tess/public/x.fits", [str(root)])  # no prefixes: no S3
    with pytest.raises(InvalidInputError):
        confine("  ", [str(root)])

