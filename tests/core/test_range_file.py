"""Tests of core.storage.range_file: RangeFile over sources, and open_fits locally and on a real moto S3 server."""

from __future__ import annotations

import io
import os
import random

import numpy as np
import pytest

from core.errors import CorruptFileError, NotFoundError
from core.storage.range_file import RangeFile, open_fits
from core.storage.sources import open_source
from tests.core.conftest import BUCKET


def test_rangefile_behaves_like_bytesio(blob):
    path, data = blob
    rf = RangeFile(open_source(path), block_size=4096, cache_bytes=64 * 1024, close_source=True)
    ref = io.BytesIO(data)
    rnd = random.Random(5)
    for _ in range(200):
        pos = rnd.randint(0, len(data) + 10)
        n = rnd.choice([0, 1, 100, 4096, 5000, 70_000, 200_000])
        assert rf.seek(pos) == ref.seek(pos)
        assert rf.read(n) == ref.read(n)
        assert rf.tell() == ref.tell()
    assert rf.seek(-10, io.SEEK_END) == len(data) - 10
    assert rf.read() == data[-10:]
    rf.close()
    assert rf.closed




# ----------------------------------------------------------------------------------- FITS / S3


def test_open_fits_s3_section_matches_local(cube_file, s3_server):
    path, data = cube_file
    uri = s3_server.upload(path, BUCKET, "tess/public/mast/cube.fits")
    size = os.path.getsize(path)

    local = open_fits(path)
    remote = open_fits(uri, s3=s3_server.config)
    try:
        assert remote[0].header["SECTOR"] == 38
        assert remote[1].header["NAXIS4"] == 128
        rf = remote.fileinfo(0)["file"]._file
        src = rf.source
        cut = remote[1].section[40:70, 50:80]
        assert np.array_equal(cut, local[1].section[40:70, 50:80])
        assert np.array_equal(cut, data[40:70, 50:80])
        gets, nbytes = src.stats.snapshot()
        assert nbytes < size / 2, (nbytes, size)
        assert gets < 30  # 30 row runs, fetched in a few block reads
        assert list(remote[2].data["TSTART"]) == list(np.arange(10.0))
    finally:
        local.close()
        remote.close()


def test_open_fits_errors(tmp_path, s3_server):
    bad = tmp_path / "bad.fits"
    bad.write_bytes(b"not a fits file at all" * 200)
    with pytest.raises(CorruptFileError):
        open_fits(bad)
    with pytest.raises(NotFoundError):
        open_fits(tmp_path / "none.fits")
    uri = s3_server.upload(bad, BUCKET, "tess/public/bad.fits")
    with pytest.raises(CorruptFileError):
        open_fits(uri, s3=s3_server.config)
    with pytest.raises(NotFoundError):
        open_fits(f"s3://{BUCKET}/tess/public/none.fits", s3=s3_server.config)


