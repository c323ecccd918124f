"""What handlers get injected: the one :class:`Services` object kept on ``app.state``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from app.catalog import Catalog
from app.settings import Settings
from app.workers import WorkerPool
from core.errors import UnavailableError

__all__ = ["EphemerisResolver", "Services", "get_services", "no_resolver"]

#: ``resolver(obj_id, obj_type) -> {"time": [...], "ra": [...], "dec": [...]}`` (TJD or ISO times)
EphemerisResolver = Callable[[str, "str | None"], dict[str, list[Any]]]


def no_resolver(obj_id: str, obj_type: str | None) -> dict[str, list[Any]]:
    """The default resolver: this server makes no network calls to ephemeris services."""
    raise UnavailableError(
        f"cannot resolve {obj_id!r}: this server has no ephemeris resolver configured; "
        "pass the path explicitly as `ephemeris` (JSON with lists time, ra, dec)",
        field="obj_id",
    )


@dataclass
class Services:
    """Settings, catalog, worker pool and pluggable parts shared by every handler."""

    settings: Settings
    catalog: Catalog
    pool: WorkerPool
    s3: Any = None
    resolver: EphemerisResolver = no_resolver
    extra: dict[str, Any] = field(default_factory=dict)


async def get_services(request: Request) -> Services:
    """FastAPI dependency: the application's :class:`Services`.

    ``async`` on purpose: FastAPI runs a plain ``def`` dependency on its thread pool, a thread hop
    (and GIL hand-over) per request for a dictionary lookup.
    """
    return request.app.state.services
