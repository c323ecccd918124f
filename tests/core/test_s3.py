"""Tests of core.s3: the configuration from the environment (the same names as the service's settings)."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
from astropy.io import fits

from core.errors import InvalidInputError
from core.s3 import S3Config

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



# --------------------------------------------------------------------------------------- config


def test_config_from_env(monkeypatch, tmp_path):
    for name in (
        "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_PROFILE",
        "CUTOUT_S3_ANONYMOUS",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")
    cfg = S3Config.from_env()
    assert cfg.endpoint_url == "http://127.0.0.1:9" and cfg.anonymous is None
    assert cfg.is_anonymous()  # no credentials anywhere -> unsigned
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AK")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "SK")
    cfg = S3Config.from_env()
    assert cfg.access_key_id == "AK" and not cfg.is_anonymous()
    monkeypatch.setenv("CUTOUT_S3_ANONYMOUS", "true")
    assert S3Config.from_env().is_anonymous()
    monkeypatch.setenv("CUTOUT_S3_ANONYMOUS", "maybe")
    with pytest.raises(InvalidInputError):
        S3Config.from_env()
    assert hash(S3Config().key()) == hash(dataclasses.replace(S3Config()).key())


