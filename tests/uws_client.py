"""Small UWS client helpers for the async-jobs tests: plain HTTP (httpx) and pyvo's UWS parser.

Waiting is polling with a generous deadline, using the service's blocking poll (``WAIT``), never
a sleep.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any

import httpx

try:
    from tests.polling import wait_until
except ImportError:  # pragma: no cover - tests/ itself on sys.path
    from polling import wait_until

__all__ = ["FINAL", "job_info", "manifest_rows", "parse", "pixel_positions", "post_job", "wait_for", "wait_phase"]

FINAL = {"COMPLETED", "ERROR", "ABORTED"}


def post_job(base: str, data: Any = None, files: Any = None, client: httpx.Client | None = None,
             expect: int = 303) -> httpx.Response:
    """POST a job creation form to the job list ``base``; check the status (303 by default)."""
    c = client or httpx
    response = c.post(base, data=data, files=files, timeout=60, follow_redirects=False)
    assert response.status_code == expect, response.text
    return response


def parse(document: bytes) -> Any:
    """A job document parsed by pyvo (``pyvo.io.uws.parse_job``)."""
    from pyvo.io.uws import parse_job

    return parse_job(io.BytesIO(document))


def wait_phase(job_url: str, phases: Iterable[str] = FINAL, deadline_s: float = 120.0,
               client: httpx.Client | None = None) -> Any:
    """Poll the job (blocking polls of up to 5 s) until its phase is one of ``phases``; return
    the parsed document."""
    c = client or httpx
    wanted = set(phases)
    seen: list[Any] = []

    def in_phase() -> Any:
        response = c.get(job_url, params={"WAIT": "5"}, timeout=30)
        assert response.status_code == 200, response.text
        seen[:] = [parse(response.content)]
        return seen[0] if seen[0].phase in wanted else None

    return wait_until(in_phase, timeout=deadline_s, interval=0,
                      message=lambda: f"job still {seen[0].phase if seen else '?'} after {deadline_s} s")


def wait_for(condition: Any, deadline_s: float = 60.0, what: str = "condition") -> Any:
    """Poll ``condition()`` (a callable doing a request) until it is truthy; return its value."""
    return wait_until(condition, timeout=deadline_s, interval=0, message=f"{what} not reached")


def manifest_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def pixel_positions(cube_path: str, pixels: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """Sky positions (ra, dec) of pixel positions (x, y, 0-based) of a cube."""
    from core.cubes.cache import open_cube

    wcs = open_cube(cube_path).wcs
    pixels = list(pixels)
    ra, dec = wcs.all_pix2world([p[0] for p in pixels], [p[1] for p in pixels], 0)
    return [(float(r), float(d)) for r, d in zip(ra, dec)]


def job_info(job: Any, name: str) -> int:
    """A progress counter of the job's jobInfo (as pyvo parsed it)."""
    return int(job.jobinfo[name].value)
