"""core.storage.signed_get: ranged GETs signed by botocore and sent on urllib3, boto3 behind them.

Against the real loopback S3 server (moto's standalone server): the signed path answers the ranges
a cut reads, byte for byte as boto3 does; whatever it does not answer exactly (a refused
connection, a 404, a precondition that fails) is asked again through boto3, so errors are the ones
boto3's path gives.
"""

from __future__ import annotations

import dataclasses

import pytest

from core.errors import CorruptFileError, UnavailableError
from core.storage import s3 as storage
from core.storage.s3 import S3Config
from core.storage.sources import S3Source, open_source
from tests.core.conftest import BUCKET

try:
    from tests.s3server import free_port
except ImportError:  # pragma: no cover
    from s3server import free_port

RANGES = [(i * 37_000 + 11, 9_000 + i) for i in range(30)]  # like a cutout's rows


@pytest.fixture
def fresh():
    storage.clear_caches()
    yield
    storage.clear_caches()


def test_a_cuts_ranges_are_answered_by_the_signed_path_byte_for_byte(blob, blob_uri, s3_server, fresh):
    data = blob[1]
    src = open_source(blob_uri, s3=s3_server.config)
    assert isinstance(src, S3Source)
    fast = storage.signed_gets(s3_server.config)
    assert fast is not None
    assert src.read_ranges(RANGES, coalesce_gap=0) == [data[o : o + n] for o, n in RANGES]
    assert fast.answered == len(RANGES) and fast.declined == 0
    assert src.stats.snapshot()[0] == len(RANGES)  # counted as GETs, as boto3's are


def test_the_same_bytes_through_boto3_alone(blob, blob_uri, s3_server, fresh, monkeypatch):
    cfg = dataclasses.replace(s3_server.config, signed_gets=False)
    assert storage.signed_gets(cfg) is None
    src = open_source(blob_uri, s3=cfg)
    assert src.read_ranges(RANGES, coalesce_gap=0) == [blob[1][o : o + n] for o, n in RANGES]
    monkeypatch.setenv("CUTOUT_S3_SIGNED_GETS", "false")
    assert S3Config.from_env().signed_gets is False
    monkeypatch.setenv("CUTOUT_S3_SIGNED_GETS", "true")
    assert S3Config.from_env().signed_gets is True


@pytest.mark.parametrize("where", ["closed port", "another key"])
def test_anything_but_the_bytes_asked_for_is_asked_again_through_boto3(blob, blob_uri, s3_server, fresh,
                                                                       monkeypatch, where):
    src = open_source(blob_uri, s3=s3_server.config)
    fast = storage.signed_gets(s3_server.config)
    wrong = (f"http://127.0.0.1:{free_port()}/{BUCKET}/x" if where == "closed port"
             else f"{s3_server.endpoint_url}/{BUCKET}/tess/public/no-such-object")
    monkeypatch.setattr(fast, "object_url", lambda bucket, key: wrong)
    assert src.read_range(1000, 500) == blob[1][1000:1500]  # boto3 answered
    assert fast.declined == 1 and fast.answered == 0


def test_an_object_the_signed_path_cannot_address_goes_to_boto3_after_one_refusal(blob, blob_uri, s3_server,
                                                                                  fresh):
    src = open_source(blob_uri, s3=s3_server.config)
    fast = storage.signed_gets(s3_server.config)
    fast._urls[(BUCKET, "tess/public/blob.bin")] = f"{s3_server.endpoint_url}/{BUCKET}/tess/public/elsewhere"
    assert src.read_range(5, 10) == blob[1][5:15]
    assert fast.sent == 1 and fast.answered == 0  # a 404: boto3 answered
    assert fast.object_url(BUCKET, "tess/public/blob.bin") is None
    assert src.read_ranges(RANGES, coalesce_gap=0) == [blob[1][o : o + n] for o, n in RANGES]
    assert fast.sent == 1  # boto3 alone for this object from then on


def test_a_replaced_object_is_refused_as_boto3_refuses_it(s3_server, fresh):
    uri = s3_server.put_bytes(b"a" * 5000, BUCKET, "tess/public/replaced.bin")
    src = open_source(uri, s3=s3_server.config)
    s3_server.put_bytes(b"b" * 6000, BUCKET, "tess/public/replaced.bin")
    fast = storage.signed_gets(s3_server.config)
    with pytest.raises((UnavailableError, CorruptFileError)):  # If-Match: 412, through both paths
        src.read_range(0, 100)
    assert fast.declined == 1 and fast.answered == 0


def test_a_proxy_for_the_endpoint_leaves_the_gets_to_boto3(s3_server, fresh, monkeypatch):
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    fast = storage.signed_gets(s3_server.config)
    assert fast.object_url(BUCKET, "tess/public/blob.bin") is None
    assert fast.get(BUCKET, "tess/public/blob.bin", 0, 10) is None and fast.declined == 1


def test_unsigned_configurations_send_unsigned_gets(s3_server, fresh):
    s3_server.put_bytes(bytes(range(256)) * 4, BUCKET, "tess/public/open.bin")
    cfg = s3_server.with_config(anonymous=True, access_key_id=None, secret_access_key=None)
    fast = storage.signed_gets(cfg)
    assert fast is not None
    assert fast.get(BUCKET, "tess/public/open.bin", 10, 20) is None  # private: 403, left to boto3
    s3_server.put_bytes(bytes(range(256)) * 4, BUCKET, "tess/public/public.bin")
    s3_server.client.put_object_acl(Bucket=BUCKET, Key="tess/public/public.bin", ACL="public-read")
    assert fast.get(BUCKET, "tess/public/public.bin", 10, 20) == bytes(range(10, 30)) and fast.answered == 1


def test_keys_that_need_encoding_are_addressed_as_boto3_addresses_them(s3_server, fresh):
    data = bytes(range(256)) * 40
    key = "tess/public/sector 38/cube+1 ü~(a).fits"
    uri = s3_server.put_bytes(data, BUCKET, key)
    src = open_source(uri, s3=s3_server.config)
    fast = storage.signed_gets(s3_server.config)
    assert src.read_range(100, 3000) == data[100:3100]
    assert fast.answered == 1 and fast.declined == 0
