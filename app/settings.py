"""One settings object for the service, read from the environment (prefix ``CUTOUT_``).

Lists (``CUTOUT_CUBE_DIRS``, ``CUTOUT_IMAGE_ROOTS``) are read either as JSON (``'["a", "b"]'``) or
comma-separated (``a,b``).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["Settings"]


def _default_workers() -> int:
    return max(2, 2 * (os.cpu_count() or 1))


class Settings(BaseSettings):
    """Service configuration.

    Limits: TESScut itself caps a cutout side at a few hundred pixels (its FFIs are 2048 px wide);
    ``max_cutout_side`` defaults to 1000 px, enough for any realistic TPF, and
    ``max_cutout_volume`` (pixels x frames) is the limit that really protects the server: a TPF
    takes ~23 bytes per pixel-frame and each zip member is built in memory. The default, 150
    million (about 3.5 GB per TPF), admits a 100x100 cutout of a 200-s-cadence sector (~11,900
    frames, 119 million) and refuses anything much larger; lower it (or ``workers``) on a small host.
    """

    model_config = SettingsConfigDict(env_prefix="CUTOUT_", extra="ignore", validate_default=True)

    cube_dirs: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Local folders and/or s3://bucket/prefix holding cube files."
    )
    image_roots: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Local folders and/or s3://bucket/prefix that fits_cut/img_cut/combine may read.",
    )
    work_dir: Path = Field(default_factory=lambda: Path(tempfile.gettempdir()) / "cutout-service")
    host: str = "127.0.0.1"
    port: int = 8000
    max_cutout_side: int = Field(1000, ge=1)
    max_cutout_volume: int = Field(150_000_000, ge=1, description="pixels x frames per TPF")
    max_input_files: int = Field(16, ge=1)
    max_upload_bytes: int = Field(100 * 1024 * 1024, ge=1)
    request_timeout_s: float = Field(120.0, gt=0)
    workers: int = Field(default_factory=_default_workers, ge=1)
    queue_size: int = Field(64, ge=0, description="requests allowed to wait for a worker")
    read_threads: int = Field(4, ge=1, description="threads reading one cutout's byte ranges")
    shutdown_grace_s: float = Field(
        10.0, ge=0, description="on SIGTERM, seconds in-flight requests get to finish before the server exits"
    )
    # The s3_* fields are the engine's core.s3.S3Config fields (same names after the prefix, same
    # environment variables CUTOUT_S3_*): the service and the engine read one setting one way.
    s3_endpoint_url: str | None = None
    s3_anonymous: bool | None = Field(
        None, description="true: unsigned requests; false: signed; unset: unsigned unless credentials exist"
    )
    s3_region: str | None = None
    s3_access_key_id: SecretStr | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_connect_timeout_s: float = Field(5.0, gt=0, description="seconds per S3 connection attempt")
    s3_read_timeout_s: float = Field(30.0, gt=0, description="seconds per S3 socket read")
    s3_max_attempts: int = Field(4, ge=1, description="attempts per S3 request (bounded retries, backoff)")
    s3_max_connections: int = Field(
        64, ge=1, description="S3 requests in flight at once, process-wide (a cut issues all its ranges at once)"
    )
    log_level: str = "info"

    @field_validator("cube_dirs", "image_roots", mode="before")
    @classmethod
    def _split_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if not text:
                return []
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        if isinstance(value, (str, Path)):
            return [str(value)]
        return [str(v) for v in value] if value is not None else []

    @field_validator("log_level")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()

    def s3_config(self) -> Any:
        """The engine's :class:`core.s3.S3Config`: each field from the ``s3_<field>`` setting."""
        import dataclasses

        from core.s3 import S3Config

        values = {}
        for f in dataclasses.fields(S3Config):
            value = getattr(self, f"s3_{f.name}")
            values[f.name] = value.get_secret_value() if isinstance(value, SecretStr) else value
        return S3Config(**values)

    def masked(self) -> dict[str, Any]:
        """The settings as a JSON-able dict with secrets shown as ``'**********'``."""
        return json.loads(self.model_dump_json())

