"""Ranged GETs of S3 objects without boto3's per-call work: signed by botocore, sent on urllib3.

A cut from S3 cubes is one ranged GET per cutout row (a 30 x 30 px cut over 12 sectors: 360 GETs).
boto3's ``get_object`` spends ~1.5 ms of CPU on each (parameter validation, a few dozen event
handlers, response parsing), which on a small machine is most of a many-sector request. The same
request, signed by the signer boto3 itself uses (:class:`botocore.auth.S3SigV4Auth`, over
:class:`botocore.awsrequest.AWSRequest`: the pattern opensearch-py's ``AWSV4SignerAuth`` uses) and
sent on a :class:`urllib3.PoolManager` (boto3's own HTTP library), costs ~0.5 ms
(``bench/bench_multisector.py`` prints the client's CPU a GET).

Only the answer asked for is taken from this path: ``206 Partial Content`` carrying exactly the
bytes requested. Anything else (an error status, a redirect to another region, a refused or broken
connection, a timeout, a body of another length) gives None, and the caller makes the same GET
through boto3, whose retries, redirects and error translation are unchanged: this path can make a
read faster, never make it fail where boto3 would not. After a redirect or a refusal the object's
GETs go through boto3 alone, so that a bucket this path cannot address costs one extra request,
not one per GET. The object's address is boto3's own
(``generate_presigned_url`` without its query: addressing style, region and key encoding as boto3
resolves them). The path is left out (boto3 alone) when ``S3Config.signed_gets`` is False, when a
proxy is configured for the endpoint (urllib3 would not go through it), or when no credentials
resolve for a signed configuration.
"""

from __future__ import annotations

import logging
import os
import threading
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import urllib3
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from urllib3.exceptions import SSLError

__all__ = ["SignedGets"]

log = logging.getLogger("core.storage")

_OBJECT_URLS_MAX = 4096
#: answers after which an object's GETs all go through boto3: a redirect or a refusal (the bucket
#: is in another region than the one signed for, or the signature is refused) would otherwise
#: cost every GET a second request; a 412 (the object changed) or a 5xx says nothing of that
_GIVE_UP = frozenset({200, 301, 302, 307, 308, 400, 401, 403, 404, 405, 501})


class SignedGets:
    """Ranged GETs for one S3 configuration (thread-safe; one per configuration, made by
    :func:`core.storage.s3.signed_gets`).

    Parameters
    ----------
    cfg : the :class:`~core.storage.s3.S3Config` (timeouts, pool size).
    credentials : botocore credentials to sign with, or None for unsigned requests.
    region : the region requests are signed for.
    presign : ``generate_presigned_url`` of the configuration's boto3 client (the object's address).
    """

    def __init__(self, cfg: Any, credentials: Any, region: str, presign: Callable[..., str]) -> None:
        self._presign = presign
        self._signer = S3SigV4Auth(credentials, "s3", region) if credentials is not None else None
        kwargs: dict[str, Any] = {}
        ca_bundle = os.environ.get("AWS_CA_BUNDLE")
        if not ca_bundle:
            try:  # the bundle botocore verifies against (certifi's, or the one botocore carries)
                from botocore.httpsession import get_cert_path

                ca_bundle = get_cert_path(True)
            except (ImportError, AttributeError):  # pragma: no cover - urllib3's default: the system's
                ca_bundle = None
        if isinstance(ca_bundle, str):
            kwargs["ca_certs"] = ca_bundle
        self._pool = urllib3.PoolManager(
            maxsize=max(1, int(cfg.max_connections)), retries=False,
            timeout=urllib3.Timeout(connect=float(cfg.connect_timeout_s), read=float(cfg.read_timeout_s)),
            **kwargs,
        )
        self._urls: dict[tuple[str, str], str | None] = {}
        self._lock = threading.Lock()
        #: requests sent on this path; GETs answered by it, and left to boto3 (for tests and logs)
        self.sent = 0
        self.answered = 0
        self.declined = 0

    def _tally(self, data: bytes | None) -> bytes | None:
        with self._lock:
            if data is None:
                self.declined += 1
            else:
                self.answered += 1
        return data

    def object_url(self, bucket: str, key: str) -> str | None:
        """The object's address as boto3 resolves it, or None when a proxy stands in the way."""
        found = self._urls.get((bucket, key), "")
        if found != "":
            return found
        presigned = self._presign("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=60)
        parts = urlsplit(presigned)
        url: str | None = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
        proxies = urllib.request.getproxies()
        if parts.scheme in proxies and not urllib.request.proxy_bypass(parts.hostname or ""):
            url = None  # boto3 goes through the proxy; urllib3's pool would not
        with self._lock:
            if len(self._urls) >= _OBJECT_URLS_MAX:
                self._urls.clear()
            self._urls[(bucket, key)] = url
        return url

    def get(self, bucket: str, key: str, offset: int, length: int, etag: str | None = None) -> bytes | None:
        """The ``length`` bytes at ``offset`` of the object (``If-Match: etag`` when given), or
        None for anything but exactly those bytes (the caller then asks boto3)."""
        url = self.object_url(bucket, key)
        if url is None or length <= 0:
            return self._tally(None)
        headers = {"Range": f"bytes={offset}-{offset + length - 1}"}
        if etag:
            headers["If-Match"] = f'"{etag}"'
        if self._signer is not None:
            request = AWSRequest(method="GET", url=url, headers=headers)
            self._signer.add_auth(request)
            headers = dict(request.headers.items())
        with self._lock:
            self.sent += 1
        try:
            resp = self._pool.request("GET", url, headers=headers, preload_content=False, decode_content=False,
                                      redirect=False)
        except Exception as exc:  # noqa: BLE001 - boto3 tries again and says what failed
            log.debug("signed GET of s3://%s/%s failed (%s): asking boto3", bucket, key, type(exc).__name__)
            if isinstance(exc, SSLError):  # a certificate boto3 may accept otherwise: boto3 from now on
                with self._lock:
                    self._urls[(bucket, key)] = None
            return self._tally(None)
        whole = False
        try:
            if resp.status != 206 or resp.headers.get("Content-Length") != str(length):
                if resp.status in _GIVE_UP:  # not this object's address, or not ours to read: boto3 from now on
                    with self._lock:
                        self._urls[(bucket, key)] = None
                return self._tally(None)
            data = resp.read()
            whole = len(data) == length
            return self._tally(data if whole else None)
        except Exception as exc:  # noqa: BLE001 - the connection broke while reading: boto3 tries again
            log.debug("signed GET of s3://%s/%s broke (%s): asking boto3", bucket, key, type(exc).__name__)
            return self._tally(None)
        finally:
            if whole:
                resp.release_conn()
            else:  # an answer not read to its end: its connection is not reused
                resp.close()
