"""A quick load run for CI: many concurrent cutouts, every answer a valid zip, memory bounded.

No timing assertions (figures go to ``bench/bench_http_load.py``). The server is a real uvicorn
subprocess (``bench/_server.py``) with the default worker/queue settings over the session's small
synthetic cubes, so its RSS can be read from ``/proc/<pid>/status``.
"""

from __future__ import annotations

import asyncio
import io
import random
import sys
import zipfile
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

from _server import ServerProcess

REQUESTS = 200
CONCURRENCY = 16
#: RSS growth allowed over the run: generous (the server holds no per-request state; a leak of one
#: ~100 kB zip per request would be ~20 MiB)
RSS_GROWTH_LIMIT_MB = 64

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


@pytest.fixture(scope="module")
def server(service_data, tmp_path_factory):
    cubes, _image_root, _images = service_data
    env = {
        "CUTOUT_CUBE_DIRS": str(cubes["spoc38"].parent),
        "CUTOUT_WORK_DIR": str(tmp_path_factory.mktemp("load-work")),
        "CUTOUT_LOG_LEVEL": "warning",
    }
    with ServerProcess("ours", env) as proc:
        yield proc


def _positions(n: int) -> list[tuple[float, float]]:
    """Seeded positions within ~20 px (21"/px) of the centre of the 64x64 test cubes."""
    from core.synthetic.ffis import DEMO_DEC, DEMO_RA

    rng = random.Random(7)
    step = 21 / 3600
    return [(DEMO_RA + rng.uniform(-20, 20) * step / 0.46, DEMO_DEC + rng.uniform(-20, 20) * step)
            for _ in range(n)]


async def _fire(url: str, coords: list[tuple[float, float]], concurrency: int) -> list[tuple[int, str, bytes]]:
    queue = list(reversed(coords))
    out: list[tuple[int, str, bytes]] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:

        async def worker() -> None:
            while queue:
                ra, dec = queue.pop()
                try:
                    r = await client.get("/tesscut/api/v0.1/astrocut",
                                         params={"ra": ra, "dec": dec, "x": 5, "y": 5, "units": "px"})
                except httpx.HTTPError as exc:
                    out.append((0, type(exc).__name__, b""))
                    continue
                out.append((r.status_code, r.headers.get("content-type", ""), r.content))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return out


def _zip_problem(content: bytes) -> str | None:
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as zf:
            names = sorted(zf.namelist())
            if [n.split("_")[0] for n in names] != ["tess-s0011-2-2", "tess-s0038-2-2"]:
                return f"members {names}"
            for name in names:
                data = zf.read(name)  # checks the CRC
                if not data.startswith(b"SIMPLE  =") or len(data) % 2880 or not name.endswith("_5x5_astrocut.fits"):
                    return f"{name} is not a 5x5 TPF"
    except zipfile.BadZipFile as exc:
        return f"bad zip: {exc}"
    return None


def test_concurrent_cutouts_all_valid_and_rss_bounded(server):
    warm = _positions(CONCURRENCY)
    assert all(status == 200 for status, _, _ in asyncio.run(_fire(server.url, warm, CONCURRENCY)))
    rss_before = server.rss_kb() / 1024
    results = asyncio.run(_fire(server.url, _positions(REQUESTS), CONCURRENCY))
    rss_after = server.rss_kb() / 1024

    assert len(results) == REQUESTS
    errors = [(status, kind) for status, kind, _ in results if status != 200 or kind != "application/zip"]
    assert errors == []
    problems = [p for p in (_zip_problem(content) for _, _, content in results) if p]
    assert problems == []
    assert rss_after - rss_before < RSS_GROWTH_LIMIT_MB, (rss_before, rss_after)
    # the server is still healthy and idle afterwards
    health = httpx.get(server.url + "/health", timeout=10).json()
    assert health["status"] == "ok" and health["pool"]["running"] == 0
