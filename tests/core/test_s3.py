"""Tests of core.storage.s3: the configuration from the environment (the same names as the service's settings)."""

from __future__ import annotations

import dataclasses

import pytest

from core.errors import InvalidInputError
from core.storage.s3 import S3Config

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




def test_config_refuses_nonsense_bounds_naming_the_setting():
    from core.errors import InvalidInputError

    for name, value in (("max_attempts", 0), ("connect_timeout_s", -1.0), ("read_timeout_s", float("inf")),
                        ("max_connections", True)):
        with pytest.raises(InvalidInputError) as err:
            S3Config(**{name: value})
        assert err.value.field == name
