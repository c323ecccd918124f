"""Reaching S3 (AWS or any S3-compatible store): configuration, shared clients, errors, listings.

One :class:`S3Config` says how to reach the store. Its fields read the same environment names as
the service's settings (``CUTOUT_S3_<FIELD>``, e.g. ``CUTOUT_S3_CONNECT_TIMEOUT_S``), so the
engine and the service cannot disagree about a setting. One boto3 client per configuration is
shared by the whole process (boto3 clients are thread-safe), with bounded timeouts, retries and
connection pool; object HEADs (size, ETag) are cached for a few seconds. Every botocore or network
failure is translated into a :mod:`core.errors` type by :func:`translate_error`.

Departs from astrocut 1.4.0, which reads S3 through fsspec/s3fs: boto3 directly, so that every
request is bounded and counted.
"""

from __future__ import annotations

import dataclasses
import os
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from core.errors import (
    CorruptFileError,
    CutoutError,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    UnavailableError,
)

__all__ = [
    "HEAD_TTL",
    "ObjectInfo",
    "S3Config",
    "clear_caches",
    "client",
    "head",
    "is_s3_uri",
    "list_objects",
    "list_s3",
    "parse_s3_uri",
    "signed_gets",
    "signing_region",
    "translate_error",
]

#: how long the HEAD of an S3 object (size, ETag) is trusted, seconds
HEAD_TTL = 30.0
#: the environment names of the configuration: ``CUTOUT_S3_`` + the field name in capitals
ENV_PREFIX = "CUTOUT_S3_"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _env(name: str, *fallbacks: str) -> str | None:
    for key in (ENV_PREFIX + name.upper(), *fallbacks):
        value = os.environ.get(key)
        if value is not None and value.strip():
            return value.strip()
    return None


def _env_bool(name: str) -> bool | None:
    value = _env(name)
    if value is None:
        return None
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    key = ENV_PREFIX + name.upper()
    raise InvalidInputError(f"Environment variable {key} must be true or false, not {value!r}.", field=key)


def _env_flag(name: str, default: bool) -> bool:
    value = _env_bool(name)
    return default if value is None else value


def _env_number(name: str, kind: type, default: float) -> Any:
    value = _env(name)
    if value is None:
        return default
    try:
        return kind(value)
    except ValueError:
        key = ENV_PREFIX + name.upper()
        raise InvalidInputError(
            f"Environment variable {key} must be {'an integer' if kind is int else 'a number'}, not {value!r}.",
            field=key,
        ) from None


@dataclass
class S3Config:
    """How to reach S3.

    Each field ``name`` is read from the environment variable ``CUTOUT_S3_<NAME>`` by
    :meth:`from_env` (the service's ``Settings`` field ``s3_<name>`` is the same setting).

    Parameters
    ----------
    endpoint_url : str, optional
        Custom endpoint (e.g. ``http://127.0.0.1:9000``); None means AWS (or ``AWS_ENDPOINT_URL_S3``
        / ``AWS_ENDPOINT_URL`` from the environment).
    region : str, optional
        Region; None means ``AWS_REGION``/``AWS_DEFAULT_REGION`` or ``us-east-1`` (where the public
        TESS bucket ``stpubdata`` lives).
    anonymous : bool, optional
        True: unsigned requests (public buckets). False: signed. None: unsigned unless credentials
        are configured (keys here or in the environment, ``AWS_PROFILE``, or a shared credentials
        file).
    access_key_id, secret_access_key : str, optional
        Explicit credentials (else boto3's usual chain).
    connect_timeout_s, read_timeout_s : float
        Seconds for each connection attempt and each socket read.
    max_attempts : int
        Total attempts per request (botocore "standard" retry mode, exponential backoff).
    max_connections : int
        Connections of the shared client's pool, and requests in flight at once for the whole
        process (a cut issues all its byte ranges at once, up to this many).
    latency_s, bandwidth_mb_s : float
        The store's expected time to the first byte of a ranged GET and its throughput (MB/s,
        all connections together): the cost model that chooses between reading a time window's
        per-pixel ranges and whole cutout rows (:meth:`core.storage.sources.S3Source.read_cost`).
    signed_gets : bool
        Ranged GETs signed by botocore's signer and sent on urllib3 directly, a third of boto3's
        CPU a GET (:mod:`core.storage.signed_get`; anything but the bytes asked for is asked again
        through boto3). False: every GET through boto3's ``get_object``.
    """

    endpoint_url: str | None = None
    region: str | None = None
    anonymous: bool | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 30.0
    max_attempts: int = 4
    max_connections: int = 64
    latency_s: float = 0.05
    bandwidth_mb_s: float = 200.0
    signed_gets: bool = True

    def __post_init__(self) -> None:
        for name in ("connect_timeout_s", "read_timeout_s", "latency_s", "bandwidth_mb_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
                raise InvalidInputError(f"S3 setting {name} must be a positive number, got {value!r}", field=name)
        for name in ("max_attempts", "max_connections"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInputError(f"S3 setting {name} must be a whole number >= 1, got {value!r}", field=name)

    @classmethod
    def from_env(cls) -> S3Config:
        """A configuration from ``CUTOUT_S3_*`` (and the usual ``AWS_*`` fallbacks)."""
        defaults = cls()
        return cls(
            endpoint_url=_env("endpoint_url", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
            region=_env("region", "AWS_REGION", "AWS_DEFAULT_REGION"),
            anonymous=_env_bool("anonymous"),
            access_key_id=_env("access_key_id", "AWS_ACCESS_KEY_ID"),
            secret_access_key=_env("secret_access_key", "AWS_SECRET_ACCESS_KEY"),
            connect_timeout_s=_env_number("connect_timeout_s", float, defaults.connect_timeout_s),
            read_timeout_s=_env_number("read_timeout_s", float, defaults.read_timeout_s),
            max_attempts=_env_number("max_attempts", int, defaults.max_attempts),
            max_connections=_env_number("max_connections", int, defaults.max_connections),
            latency_s=_env_number("latency_s", float, defaults.latency_s),
            bandwidth_mb_s=_env_number("bandwidth_mb_s", float, defaults.bandwidth_mb_s),
            signed_gets=_env_flag("signed_gets", defaults.signed_gets),
        )

    def is_anonymous(self) -> bool:
        """Whether requests go unsigned (resolves ``anonymous=None``)."""
        if self.anonymous is not None:
            return self.anonymous
        if self.access_key_id:
            return False
        env = os.environ
        if env.get("AWS_ACCESS_KEY_ID") or env.get("AWS_PROFILE"):
            return False
        creds = env.get("AWS_SHARED_CREDENTIALS_FILE") or os.path.expanduser("~/.aws/credentials")
        return not os.path.isfile(creds)

    def key(self) -> tuple:
        """A hashable key identifying this configuration (for client caches)."""
        return dataclasses.astuple(self) + (self.is_anonymous(),)


# --------------------------------------------------------------------------------------------
# URIs
# --------------------------------------------------------------------------------------------

_S3_RE = re.compile(r"^s3://([^/]+)/(.+)$", re.IGNORECASE | re.DOTALL)


def is_s3_uri(uri: object) -> bool:
    """Whether ``uri`` is a string starting with ``s3://``."""
    return isinstance(uri, str) and uri[:5].lower() == "s3://"


def parse_s3_uri(uri: str, *, field: str = "uri") -> tuple[str, str]:
    """Split ``s3://bucket/key`` into ``(bucket, key)``; raise InvalidInputError otherwise."""
    m = _S3_RE.match(uri)
    if not m or not m.group(2):
        raise InvalidInputError(f"Not an s3://bucket/key URI: {uri!r}", field=field)
    return m.group(1), m.group(2)


# --------------------------------------------------------------------------------------------
# shared clients and HEADs
# --------------------------------------------------------------------------------------------

_clients: dict[tuple, Any] = {}
_clients_lock = threading.Lock()
_heads: dict[tuple, tuple[float, int, str]] = {}
_heads_lock = threading.Lock()


def client(cfg: S3Config) -> Any:
    """The process-wide boto3 S3 client for ``cfg`` (created once)."""
    key = cfg.key()
    found = _clients.get(key)
    if found is not None:
        return found
    with _clients_lock:
        found = _clients.get(key)
        if found is not None:
            return found
        import boto3
        import botocore
        from botocore.config import Config

        kwargs: dict[str, Any] = {
            "connect_timeout": cfg.connect_timeout_s,
            "read_timeout": cfg.read_timeout_s,
            # total_max_attempts counts the first try (botocore's max_attempts would count retries only)
            "retries": {"total_max_attempts": max(1, int(cfg.max_attempts)), "mode": "standard"},
            "max_pool_connections": max(1, int(cfg.max_connections)),
        }
        if cfg.endpoint_url:
            kwargs["s3"] = {"addressing_style": "path"}
        anonymous = cfg.is_anonymous()
        if anonymous:
            kwargs["signature_version"] = botocore.UNSIGNED
        session = boto3.session.Session()
        ckw: dict[str, Any] = {"region_name": signing_region(cfg), "config": Config(**kwargs)}
        if cfg.endpoint_url:
            ckw["endpoint_url"] = cfg.endpoint_url
        if not anonymous and cfg.access_key_id:
            ckw["aws_access_key_id"] = cfg.access_key_id
            ckw["aws_secret_access_key"] = cfg.secret_access_key
        made = session.client("s3", **ckw)
        _clients[key] = made
        return made


def signing_region(cfg: S3Config) -> str:
    """The region requests are made for: ``cfg.region``, else ``AWS_REGION`` /
    ``AWS_DEFAULT_REGION``, else ``us-east-1``."""
    return cfg.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


_signed: dict[tuple, Any] = {}


def signed_gets(cfg: S3Config) -> Any:
    """The process-wide :class:`core.storage.signed_get.SignedGets` for ``cfg``, or None when
    ranged GETs go through boto3 alone (``cfg.signed_gets`` False, or a signed configuration
    without credentials: boto3 then says so)."""
    key = cfg.key()
    try:
        return _signed[key]
    except KeyError:
        pass
    with _clients_lock:
        if key in _signed:
            return _signed[key]
    made = None
    if cfg.signed_gets:
        from core.storage.signed_get import SignedGets

        credentials = None
        if not cfg.is_anonymous():
            if cfg.access_key_id:
                from botocore.credentials import Credentials

                credentials = Credentials(cfg.access_key_id, cfg.secret_access_key or "")
            else:  # boto3's chain; refreshable credentials are re-read for every request
                import boto3

                credentials = boto3.session.Session().get_credentials()
        if cfg.is_anonymous() or credentials is not None:
            made = SignedGets(cfg, credentials, signing_region(cfg), client(cfg).generate_presigned_url)
    with _clients_lock:
        return _signed.setdefault(key, made)


def clear_caches(*, clients: bool = True) -> None:
    """Forget cached HEAD results and, unless ``clients=False``, the shared S3 clients."""
    if clients:
        with _clients_lock:
            _clients.clear()
            _signed.clear()
    with _heads_lock:
        _heads.clear()


def translate_error(exc: BaseException, uri: str) -> CutoutError:
    """Map a botocore/network exception to an engine error about ``uri``."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        HTTPClientError,
        NoCredentialsError,
        PartialCredentialsError,
        ResponseStreamingError,
    )
    from botocore.exceptions import (
        ConnectionError as BotoConnectionError,
    )

    if isinstance(exc, CutoutError):
        return exc
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {}) or {}
        code = str(err.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("404", "NoSuchKey", "NoSuchBucket", "NotFound") or status == 404:
            return NotFoundError(f"S3 object not found: {uri}")
        if code in ("403", "AccessDenied", "Forbidden", "AllAccessDisabled") or status in (401, 403):
            return ForbiddenError(f"Access to {uri} is denied ({code or status}).")
        if code in ("416", "InvalidRange") or status == 416:
            return CorruptFileError(f"{uri}: requested bytes lie past the end of the object.")
        if code in ("412", "PreconditionFailed") or status == 412:
            return UnavailableError(f"{uri} changed while being read; retry.")
        if (status is not None and status >= 500) or code in ("SlowDown", "ServiceUnavailable", "InternalError"):
            return UnavailableError(f"S3 endpoint failed for {uri} ({code or status}).")
        return UnavailableError(f"S3 request for {uri} failed ({code or status}).")
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return ForbiddenError(f"No usable S3 credentials to read {uri}.")
    if isinstance(exc, (BotoConnectionError, HTTPClientError, ResponseStreamingError)):
        return UnavailableError(f"S3 endpoint unreachable or failed while reading {uri}: {type(exc).__name__}.")
    if isinstance(exc, BotoCoreError):
        return UnavailableError(f"S3 error while reading {uri}: {type(exc).__name__}: {exc}")
    if isinstance(exc, (OSError, TimeoutError)):
        return UnavailableError(f"Network error while reading {uri}: {type(exc).__name__}: {exc}")
    return UnavailableError(f"S3 error while reading {uri}: {type(exc).__name__}: {exc}")


def head(cfg: S3Config, bucket: str, key: str) -> tuple[int, str]:
    """Size and ETag of an object, cached for :data:`HEAD_TTL` seconds per (config, object)."""
    ck = (cfg.key(), bucket, key)
    now = time.monotonic()
    with _heads_lock:
        hit = _heads.get(ck)
    if hit is not None and hit[0] > now:
        return hit[1], hit[2]
    uri = f"s3://{bucket}/{key}"
    try:
        resp = client(cfg).head_object(Bucket=bucket, Key=key)
    except Exception as exc:  # noqa: BLE001 - translated
        raise translate_error(exc, uri) from None
    size = int(resp["ContentLength"])
    etag = str(resp.get("ETag", "")).strip('"')
    remember_head(cfg, bucket, key, size, etag)
    return size, etag


def remember_head(cfg: S3Config, bucket: str, key: str, size: int, etag: str) -> None:
    """Record an object's size and ETag learned elsewhere (a listing) as a fresh HEAD."""
    with _heads_lock:
        if len(_heads) > 4096:
            _heads.clear()
        _heads[(cfg.key(), bucket, key)] = (time.monotonic() + HEAD_TTL, int(size), str(etag).strip('"'))


# --------------------------------------------------------------------------------------------
# listings
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectInfo:
    """One listed object: its URI, size in bytes and ETag (without quotes)."""

    uri: str
    size: int
    etag: str


def list_objects(prefix_uri: str, *, s3: S3Config | None = None) -> list[ObjectInfo]:
    """Every object under ``s3://bucket/prefix`` (the prefix taken as a folder), in key order,
    with its size and ETag (what a listing gives for free: no HEAD per object).

    Raises the same engine errors as reads: ``NotFoundError`` for a missing bucket,
    ``ForbiddenError`` when listing is denied, ``UnavailableError`` when the endpoint fails.
    """
    m = re.match(r"^s3://([^/]+)/?(.*)$", prefix_uri, re.IGNORECASE | re.DOTALL)
    if not m:
        raise InvalidInputError(f"Not an s3://bucket/prefix URI: {prefix_uri!r}", field="uri")
    bucket, prefix = m.group(1), (m.group(2) or "").strip("/")
    prefix = f"{prefix}/" if prefix else ""
    cfg = s3 or S3Config.from_env()
    found: list[ObjectInfo] = []
    try:
        pages = client(cfg).get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for page in pages:
            for item in page.get("Contents", []):
                etag = str(item.get("ETag", "")).strip('"')
                found.append(ObjectInfo(f"s3://{bucket}/{item['Key']}", int(item.get("Size", 0)), etag))
    except Exception as exc:  # noqa: BLE001 - translated
        raise translate_error(exc, prefix_uri) from None
    return found


def list_s3(prefix_uri: str, *, s3: S3Config | None = None) -> list[str]:
    """The URIs of :func:`list_objects`."""
    return [info.uri for info in list_objects(prefix_uri, s3=s3)]
