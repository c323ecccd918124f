"""Fixtures shared by the storage tests (core.storage.confine, core.storage.range_file, core.storage.s3, core.storage.sources)."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

#: the bucket the storage tests upload to
BUCKET = "stpubdata"


@pytest.fixture(scope="session")
def blob(tmp_path_factory):
    """A 1.5 MB file of random bytes: (path, bytes)."""
    data = np.random.default_rng(1).integers(0, 256, 1_500_000, dtype=np.uint8).tobytes()
    path = tmp_path_factory.mktemp("blob") / "blob.bin"
    path.write_bytes(data)
    return path, data


@pytest.fixture(scope="session")
def blob_uri(blob, s3_server):
    """The blob on the loopback S3 server."""
    return s3_server.upload(blob[0], BUCKET, "tess/public/blob.bin")


@pytest.fixture(scope="session")
def cube_file(tmp_path_factory):
    """A small cube in the astrocut layout, (rows, cols, frames, 2) float32 and a table: (path, data)."""
    rng = np.random.default_rng(2)
    data = rng.normal(size=(128, 128, 10, 2)).astype(">f4")
    primary = fits.PrimaryHDU()
    primary.header["SECTOR"] = 38
    table = fits.BinTableHDU.from_columns([fits.Column(name="TSTART", format="D", array=np.arange(10.0))])
    path = tmp_path_factory.mktemp("cube") / "cube.fits"
    fits.HDUList([primary, fits.ImageHDU(data), table]).writeto(path)
    return path, data
