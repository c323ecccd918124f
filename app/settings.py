"""One settings object for the service, read from the environment (prefix ``CUTOUT_``).

Lists (``CUTOUT_CUBE_DIRS``, ``CUTOUT_IMAGE_ROOTS``, ``CUTOUT_CORS_ORIGINS``) are read either as JSON
(``'["a", "b"]'``) or comma-separated (``a,b``); ``CUTOUT_SURVEYS`` is JSON
(``'{"goods_north": ["/data/goods"], "hap": ["s3://bucket/hap"]}'``). ``s3`` is the engine's own
:class:`core.storage.s3.S3Config`, read from ``CUTOUT_S3_<FIELD>`` (one definition, in the engine).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from core.host import physical_memory
from core.storage.locations import read_list
from core.storage.s3 import S3Config

__all__ = ["Settings"]

MiB = 1024 * 1024
GiB = 1024 * MiB
#: survey names: they appear in file names and JSON answers
_SURVEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$")


def _default_workers() -> int:
    return max(2, 2 * (os.cpu_count() or 1))


def _default_memory_budget() -> int:
    """A quarter of this host's memory, at least 512 MB: what cutouts in flight may hold at once."""
    return max(512 * MiB, physical_memory() // 4)


def _default_work_dir() -> Path:
    return Path(tempfile.gettempdir()) / "cutout-service"


def _default_disk_budget() -> int:
    """Half the free space where temporary files go (at least 1 GB)."""
    where = Path(tempfile.gettempdir())
    try:
        free = shutil.disk_usage(where).free
    except OSError:  # pragma: no cover
        free = 8 * GiB
    return max(GiB, free // 2)


class Settings(BaseSettings):
    """Service configuration.

    Limits. A TPF is written and streamed in bounded pieces (``stream_band_bytes``), so its size
    costs temporary disk (8 bytes per pixel-frame: the pixel spool) and time, not memory.
    ``max_cutout_volume`` (pixels x frames per TPF) protects those: the default, 500 million,
    admits a 200x200 cutout of a 200-s-cadence sector (~11,900 frames: 476 million; a ~10 GB TPF)
    and refuses anything larger. ``max_cutout_side`` (1000 px) is more than any TESScut client
    asks for. What a request holds in memory and on disk at once is admitted against one
    server-wide budget (``memory_budget_bytes``, ``disk_budget_bytes``): beyond it requests wait
    (at most ``budget_queue_size`` of them, else 503), and one request larger than the whole
    budget is refused with 413.
    """

    model_config = SettingsConfigDict(env_prefix="CUTOUT_", extra="ignore", validate_default=True)

    cube_dirs: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Local folders and/or s3://bucket/prefix holding cube files."
    )
    image_roots: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Local folders and/or s3://bucket/prefix that fits_cut/img_cut/combine may read.",
    )
    surveys: Annotated[dict[str, list[str]], NoDecode] = Field(
        default_factory=dict,
        description="Zcut/Hapcut surveys, as JSON: {name: [local folders and/or s3://bucket/prefix]}; the survey "
        "named 'hap' is served by Hapcut, the others by Zcut. Indexed at start and every index_refresh_s.",
    )
    work_dir: Path = Field(default_factory=_default_work_dir)
    host: str = "127.0.0.1"
    port: int = 8000
    # -- catalog ---------------------------------------------------------------------------------
    index: str | None = Field(
        None, description="The catalog index: a local path or s3://bucket/key (default: <work_dir>/index/catalog.sqlite)."
    )
    index_refresh_s: float = Field(
        300.0, ge=0, description="Seconds between re-scans of cube_dirs and of the surveys' locations (new files "
        "appear); 0: only at start."
    )
    index_writer: bool | None = Field(
        None, description="Whether this process updates the index (default: yes for a local index, no for S3)."
    )
    cube_cache_bytes: int = Field(512 * MiB, ge=16 * MiB, description="Bytes the opened cubes may hold.")
    # -- limits and budget -----------------------------------------------------------------------
    max_cutout_side: int = Field(1000, ge=1)
    max_cutout_volume: int = Field(500_000_000, ge=1, description="pixels x frames per TPF")
    max_input_files: int = Field(16, ge=1)
    max_upload_bytes: int = Field(100 * MiB, ge=1)
    memory_budget_bytes: int = Field(default_factory=_default_memory_budget, ge=16 * MiB,
                                     description="Memory all cutouts in flight may hold at once.")
    disk_budget_bytes: int = Field(default_factory=_default_disk_budget, ge=0,
                                   description="Temporary disk (pixel spools) all cutouts in flight may hold.")
    budget_queue_size: int = Field(64, ge=0, description="requests allowed to wait for budget")
    max_requests_per_client: int = Field(
        0, ge=0, description="requests one client address may have in flight at once, answers included (0: no "
        "limit); one more is answered 429 with Retry-After. Behind a proxy, set forwarded_allow_ips so that the "
        "client's own address is counted."
    )
    mmap_threshold_bytes: int = Field(
        1 * MiB, ge=0, le=32 * MiB,
        description="Allocations this big or bigger are mapped on their own and returned to the system when "
                    "freed (glibc's mmap threshold, fixed; 0: the allocator's own moving threshold).",
    )
    inline_tpf_bytes: int = Field(96 * MiB, ge=1 * MiB, description="TPFs up to this size are built in memory.")
    stream_band_bytes: int = Field(32 * MiB, ge=1 * MiB, description="Piece size of a streamed TPF.")
    request_timeout_s: float = Field(120.0, gt=0)
    workers: int = Field(default_factory=_default_workers, ge=1, description="threads running engine calls")
    queue_size: int = Field(64, ge=0, description="requests allowed to wait for a worker thread")
    read_threads: int = Field(4, ge=1, description="threads reading one local cutout's rows")
    zip_concurrency: int = Field(
        12, ge=1, description="members of one zip (one per sector) cut at once, ahead of the writer; each made "
        "ahead is admitted against memory_budget_bytes"
    )
    zip_readahead_bytes: int = Field(
        256 * MiB, ge=0, description="memory one zip's members made ahead and not yet sent may hold (at least one "
        "member): what a slow client can keep waiting"
    )
    member_threads: int = Field(
        default_factory=lambda: 4 * _default_workers(), ge=1,
        description="threads cutting zip members, all requests together (they mostly wait on storage)"
    )
    # -- the HTTP server -------------------------------------------------------------------------
    processes: int = Field(1, ge=1, description="server processes sharing the port (cutout serve --workers)")
    header_timeout_s: float = Field(
        10.0, gt=0, description="a connection must deliver a complete request head within this (slow clients)"
    )
    body_timeout_s: float = Field(
        20.0, gt=0, description="a request body must arrive within this after its head, extended by one second "
        "for every body_min_rate bytes received (Apache's mod_reqtimeout body=20,MinRate=500); then the "
        "connection is closed (slow uploads)"
    )
    body_min_rate: int = Field(500, ge=1, description="bytes per second that extend the body deadline by one second")
    send_timeout_s: float = Field(
        60.0, gt=0, description="a client must take each piece of an answer (the server's buffer of up to 64 KiB "
        "beyond what the network holds) within this; else the connection is closed and what the request holds "
        "(worker, memory, temporary disk, budget) is released (slow readers)"
    )
    keep_alive_s: float = Field(5.0, gt=0, description="idle keep-alive connections are closed after this")
    max_connections: int = Field(1024, ge=1, description="open connections per process; more are refused")
    shutdown_grace_s: float = Field(
        10.0, ge=0, description="on SIGTERM, seconds in-flight requests get to finish before the server exits"
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Origins allowed by CORS (e.g. a page embedding previews); empty: none."
    )
    forwarded_allow_ips: str | None = Field(
        None, description="Proxies (e.g. the load balancer) whose X-Forwarded-For is trusted."
    )
    # -- async jobs (UWS, run on Dask) -------------------------------------------------------------------
    dask_scheduler: str | None = Field(
        None, description="A running Dask scheduler's address (tcp://host:8786) for jobs; unset: a LocalCluster "
        "of jobs_dask_workers processes is started in this service when the first job runs."
    )
    jobs_dask_workers: int = Field(
        default_factory=lambda: max(1, (os.cpu_count() or 2) // 2), ge=1,
        description="LocalCluster worker processes (one thread each) for jobs.",
    )
    jobs_dask_memory_limit: str = Field("2GiB", description="Memory per LocalCluster worker (Dask's size).")
    jobs_tasks_in_flight: int = Field(
        64, ge=1, description="Cutout tasks handed to Dask at once, all jobs together (free slots are shared "
        "round-robin between clients, so a newcomer waits behind at most this many tasks)."
    )
    jobs_quantum: int = Field(8, ge=1, description="Tasks one job gets per turn of the round-robin.")
    jobs_max_running: int = Field(4, ge=1, description="Jobs executing at once; the others wait QUEUED.")
    jobs_max_targets: int = Field(10_000, ge=1, description="Targets (CSV rows or POS values) per job.")
    jobs_max_active_per_client: int = Field(
        10, ge=1, description="Jobs not yet finished (PENDING, QUEUED, EXECUTING) per client address."
    )
    jobs_max_active: int = Field(100, ge=1, description="Jobs not yet finished, all clients together.")
    jobs_max_stored_per_client: int = Field(
        200, ge=1, description="Jobs kept (finished ones included, until their destruction) per client address."
    )
    jobs_max_stored: int = Field(
        10_000, ge=1, description="Jobs kept, all clients together (the runner scans them every second)."
    )
    jobs_max_result_bytes: int = Field(20 * GiB, ge=1, description="Result bytes (TPFs) per job.")
    jobs_retention_s: float = Field(
        7 * 86400.0, gt=0, description="A job and its results are destroyed this long after creation (the "
        "default and the latest destruction time a client may ask for)."
    )
    jobs_max_execution_s: int = Field(
        86400, ge=1, description="Longest executionDuration (seconds) a job may run; the default one."
    )
    jobs_max_wait_s: float = Field(60.0, ge=0, description="Longest blocking poll (WAIT=) of a job document.")
    jobs_checkpoint_s: float = Field(
        2.0, gt=0, description="A running job's progress and manifest are saved at least this often."
    )
    jobs_reap_s: float = Field(60.0, gt=0, description="Seconds between passes removing expired jobs.")
    # -- S3: the engine's own configuration, read from CUTOUT_S3_<FIELD> (core.storage.s3.S3Config) ------------
    s3: S3Config = Field(
        default_factory=S3Config.from_env,
        description="How to reach S3: each field of core.storage.s3.S3Config from CUTOUT_S3_<FIELD> (endpoint_url, "
                    "anonymous, region, access_key_id, secret_access_key, connect_timeout_s, read_timeout_s, "
                    "max_attempts, max_connections, latency_s, bandwidth_mb_s, signed_gets); in code, s3=S3Config(...) or the "
                    "flat s3_<field>=... keywords.",
    )
    log_level: str = "info"

    @model_validator(mode="before")
    @classmethod
    def _flat_s3_keywords(cls, data: Any) -> Any:
        # Settings(s3_endpoint_url=..., s3_max_attempts=...): the S3 fields by their environment names
        if not isinstance(data, dict) or not any(str(k).startswith("s3_") for k in data):
            return data
        data = dict(data)
        base = data.pop("s3", None) or S3Config.from_env()
        changes = {k[3:]: data.pop(k) for k in [k for k in data if str(k).startswith("s3_")]}
        changes = {k: v.get_secret_value() if isinstance(v, SecretStr) else v for k, v in changes.items()}
        try:
            data["s3"] = dataclasses.replace(base, **changes)
        except TypeError as exc:
            raise ValueError(f"unknown S3 setting: {exc}") from None
        return data

    @field_validator("cube_dirs", "image_roots", "cors_origins", mode="before")
    @classmethod
    def _split_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return read_list(value)
        if isinstance(value, Path):
            return [str(value)]
        return [str(v) for v in value] if value is not None else []

    @field_validator("surveys", mode="before")
    @classmethod
    def _read_surveys(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = json.loads(value) if value.strip() else {}
        if not isinstance(value, dict):
            raise ValueError('surveys must be a JSON object {"name": ["folder or s3://prefix", ...]}')  # noqa: TRY004
        out: dict[str, list[str]] = {}
        for name, locations in value.items():
            if not isinstance(name, str) or not _SURVEY_NAME.match(name):
                raise ValueError(f"survey name {str(name)[:40]!r}: 1-100 letters, digits and ._+-")
            if isinstance(locations, (str, Path)):
                locations = [locations]
            out[name] = [str(loc) for loc in locations]
        return out

    @field_validator("log_level")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()

    @property
    def index_location(self) -> str:
        """Where the catalog index is: ``index``, else ``<work_dir>/index/catalog.sqlite``."""
        return self.index or str(self.work_dir / "index" / "catalog.sqlite")

    @property
    def writes_index(self) -> bool:
        """Whether this process updates the index (``index_writer``; default: local indexes only)."""
        if self.index_writer is not None:
            return self.index_writer
        return not self.index_location.lower().startswith("s3://")

    def survey_locations(self) -> list[str]:
        """Every location of every survey."""
        return [loc for locations in self.surveys.values() for loc in locations]

    def uses_s3(self) -> bool:
        """Whether any cube, image or index location, or an S3 setting, asks for S3."""
        locations = [*self.cube_dirs, *self.image_roots, self.index or "", *self.survey_locations()]
        s3 = self.s3
        return bool(
            s3.endpoint_url or s3.access_key_id or s3.anonymous is not None
            or any(loc.lower().startswith("s3://") for loc in locations)
        )

    def s3_config(self) -> S3Config:
        """The engine's :class:`core.storage.s3.S3Config` (the ``s3`` setting)."""
        return self.s3

    def masked(self) -> dict[str, Any]:
        """The settings as a JSON-able dict with secrets shown as ``'**********'``."""
        out = json.loads(self.model_dump_json())
        for key in ("access_key_id", "secret_access_key"):
            if out["s3"].get(key):
                out["s3"][key] = "**********"
        return out
