"""Change without restart: a new sector appears once re-indexed (the refresh period, or the CLI on a
shared index), a cube replaced in place is never cut from stale state, and a vanished cube answers a
clean JSON error until the catalog catches up."""

from __future__ import annotations

import io
import os
import shutil
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from astropy.io import fits

from core.synthetic.ffis import DEMO_DEC, DEMO_RA
from tests.conftest import _free_port, start_uvicorn, stop_uvicorn
from tests.polling import wait_until

pytestmark = pytest.mark.timeout(120)

POS = {"ra": DEMO_RA, "dec": DEMO_DEC}


@contextmanager
def _serving(**settings_fields) -> Iterator[tuple[str, object]]:
    """The service under a real uvicorn server on a free port: (base URL, app)."""
    from app.main import create_app
    from app.settings import Settings

    settings = Settings(port=_free_port(), index_refresh_s=0.3, **settings_fields)
    app = create_app(settings)
    server, thread = start_uvicorn(app, settings.host, settings.port)
    try:
        yield f"http://{settings.host}:{settings.port}", app
    finally:
        stop_uvicorn(server, thread)


def _copy_cubes(service_data, folder, *names) -> None:
    cubes, _root, _images = service_data
    folder.mkdir(exist_ok=True)
    for name in names:
        shutil.copy(cubes[name], folder / cubes[name].name)


@pytest.fixture()
def refreshing(service_data, tmp_path):
    """A server over a copy of the SPOC cubes (sectors 11 and 38) re-indexing every 0.3 s."""
    folder = tmp_path / "cubes"
    _copy_cubes(service_data, folder, "spoc38", "spoc11")
    with _serving(cube_dirs=[str(folder)], work_dir=tmp_path / "work") as (url, app):
        yield url, folder, app


def _sectors(url: str) -> list[str]:
    return [row["sector"] for row in httpx.get(f"{url}/api/v0.1/sector", params=POS, timeout=30).json()["results"]]


def _eventually(check, timeout: float = 30.0):
    return wait_until(check, timeout=timeout, interval=0.1, message="the catalog did not catch up")


def _sector_cube(out, sector: int):
    from core.building.factory import CubeFactory
    from core.synthetic.ffis import write_sector

    synth = write_sector(out / f"ffi{sector}", sector=sector, camera=2, ccd=2, frames=4, size=(64, 64),
                         center=(DEMO_RA, DEMO_DEC), seed=sector)
    path = out / f"tess-s{sector:04d}-2-2-cube.fits"
    CubeFactory().make_cube([str(f) for f in synth.ffi_files], str(path), verbose=False)
    return path


def test_new_replaced_and_vanished_cubes_without_restart(refreshing, tmp_path):
    url, folder, _app = refreshing
    assert _sectors(url) == ["0011", "0038"]
    # a new sector appears: built elsewhere, then moved in (as an archive sync would)
    new = _sector_cube(tmp_path, 65)
    os.replace(new, folder / new.name)
    _eventually(lambda: _sectors(url) == ["0011", "0038", "0065"])
    # a cube replaced in place: sector 38's path now holds sector 65's cube (4 frames, not 10);
    # a cut of "sector 38" (the catalog may not know yet) never comes from 38's cached state
    warm = httpx.get(f"{url}/api/v0.1/astrocut", params={**POS, "x": 5, "sector": 38}, timeout=30)
    assert warm.status_code == 200
    tmp = folder / "x.tmp"
    shutil.copy(folder / "tess-s0065-2-2-cube.fits", tmp)
    os.replace(tmp, folder / "tess-s0038-2-2-cube.fits")
    r = httpx.get(f"{url}/api/v0.1/astrocut", params={**POS, "x": 5, "sector": 38}, timeout=30)
    if r.headers["content-type"] == "application/zip":  # before the refresh: the file's own content
        with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
            (name,) = zf.namelist()
            with fits.open(io.BytesIO(zf.read(name))) as hdul:
                assert hdul[0].header["SECTOR"] == 65 and len(hdul[1].data) == 4
    _eventually(lambda: _sectors(url) == ["0011", "0065", "0065"])  # two files now hold sector 65
    # a vanished cube: a clean JSON error (never a 500), then the catalog forgets it
    os.unlink(folder / "tess-s0011-2-2-cube.fits")
    r = httpx.get(f"{url}/api/v0.1/astrocut", params={**POS, "x": 5, "sector": 11}, timeout=30)
    assert r.status_code in (200, 503), r.text[:300]
    assert r.headers["content-type"].startswith("application/json")
    if r.status_code == 503:
        assert r.json()["error"]["code"] == "unavailable" and "Retry-After" in r.headers
    _eventually(lambda: httpx.get(f"{url}/api/v0.1/astrocut", params={**POS, "x": 5, "sector": 11},
                                  timeout=30).json().get("results") == [])


def test_the_cli_updates_a_shared_index_that_a_reader_follows(service_data, tmp_path):
    """`cutout index` writes the index; a reader (index_writer off) reloads it without restarting."""
    from app.cli import main as cli

    folder = tmp_path / "cubes"
    _copy_cubes(service_data, folder, "spoc38")
    index = tmp_path / "shared" / "catalog.sqlite"
    assert cli(["index", str(folder), "--index", str(index)]) == 0
    with _serving(cube_dirs=[str(folder)], index=str(index), index_writer=False, work_dir=tmp_path / "w") as (url, app):
        assert _sectors(url) == ["0038"]
        _copy_cubes(service_data, folder, "spoc11")
        # two refreshes later (the first may have begun before the copy) ...
        catalog = app.state.services.catalog
        seen = catalog.refreshes
        _eventually(lambda: catalog.refreshes >= seen + 2)
        assert _sectors(url) == ["0038"]  # ... a reader still has not scanned the folders itself
        assert cli(["index", str(folder), "--index", str(index)]) == 0
        _eventually(lambda: _sectors(url) == ["0011", "0038"])
