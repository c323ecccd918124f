"""Tests of core.storage.confine: user paths and URIs resolved inside the data roots, everything else refused."""

from __future__ import annotations

import os

import pytest

from core.errors import ForbiddenError, InvalidInputError
from core.storage.confine import confine

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

