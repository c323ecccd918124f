"""Run moto's standalone S3 server as a subprocess on 127.0.0.1 (tests and benches).

A real HTTP server in its own process: requests go through boto3's whole network stack, and
stopping the process makes the endpoint vanish like a real outage.

    with MotoS3Server() as srv:
        srv.upload("cube.fits", "bucket", "tess/cube.fits")
        src = open_source("s3://bucket/tess/cube.fits", s3=srv.config)
"""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
from typing import Any, Self

from core.storage.s3 import S3Config

try:
    from tests.polling import wait_until
except ImportError:  # pragma: no cover - tests/ itself on sys.path
    from polling import wait_until


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MotoS3Server:
    """moto's standalone server (``python -m moto.server``) on a free loopback port.

    Attributes
    ----------
    endpoint_url : str
    config : S3Config
        Signed with dummy credentials, small timeouts, pointing at this server.
    client : boto3 S3 client for setup (creating buckets, uploading).
    """

    def __init__(self, port: int | None = None, *, startup_timeout: float = 30.0) -> None:
        self.port = port or free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen | None = None
        self.config = S3Config(
            endpoint_url=self.endpoint_url,
            region="us-east-1",
            anonymous=False,
            access_key_id="testing",
            secret_access_key="testing",
            connect_timeout_s=2,
            read_timeout_s=10,
            max_attempts=2,
        )
        self._client: Any = None
        self._buckets: set[str] = set()

    def start(self) -> MotoS3Server:
        env = dict(os.environ)
        env.update(
            AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1"
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            env=env,
        )
        def accepts() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto server exited with code {self.proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return True
            except OSError:
                return False

        try:
            wait_until(accepts, timeout=self.startup_timeout, interval=0.05, message="moto accepts connections")
        except AssertionError:
            self.stop()
            raise RuntimeError("moto server did not start in time") from None
        return self

    def stop(self) -> None:
        """Kill the server process (idempotent)."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.session.Session().client(
                "s3",
                endpoint_url=self.endpoint_url,
                region_name="us-east-1",
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
                config=Config(
                    s3={"addressing_style": "path"}, retries={"max_attempts": 2, "mode": "standard"}
                ),
            )
        return self._client

    def ensure_bucket(self, bucket: str) -> None:
        if bucket not in self._buckets:
            try:
                self.client.create_bucket(Bucket=bucket)
            except self.client.exceptions.BucketAlreadyOwnedByYou:
                pass
            self._buckets.add(bucket)

    def upload(self, path: str | os.PathLike, bucket: str, key: str) -> str:
        """Upload a local file; return its ``s3://bucket/key`` URI."""
        self.ensure_bucket(bucket)
        self.client.upload_file(os.fspath(path), bucket, key)
        return f"s3://{bucket}/{key}"

    def put_bytes(self, data: bytes, bucket: str, key: str) -> str:
        self.ensure_bucket(bucket)
        self.client.put_object(Bucket=bucket, Key=key, Body=data)
        return f"s3://{bucket}/{key}"

    def with_config(self, **changes: Any) -> S3Config:
        """A copy of :attr:`config` with some fields changed."""
        return dataclasses.replace(self.config, **changes)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
