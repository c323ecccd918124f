"""All sectors at once: a request over many sectors opens its cubes and cuts its members
concurrently, and answers exactly the bytes the sectors' own cuts give.

Concurrency is shown without timing anything: requests to S3 pass a gate
(:class:`tests.latency_proxy.GatedProxy`) that holds them until a given number wait at once. A
client issuing its reads together opens the gate; one that waits for each answer holds one
request at a time, and ``max_held`` says so.
"""

from __future__ import annotations

import dataclasses
import io
import shutil
import zipfile

import httpx
import pytest
from astropy.io import fits

from core.catalog.scan import read_many
from core.catalog.snapshot import Catalog, CubeRecord, infos_getter
from core.cubes import cache as cube_cache
from core.storage import s3 as storage
from core.synthetic.ffis import DEMO_DEC, DEMO_RA
from core.tpf.cut import cut_bytes, locate

try:
    from tests.latency_proxy import GatedProxy
    from tests.s3rver import S3rverServer, S3rverUnavailable, ensure_installed
except ImportError:  # pragma: no cover - tests/ itself on sys.path
    from latency_proxy import GatedProxy
    from s3rver import S3rverServer, S3rverUnavailable, ensure_installed

POS = {"ra": DEMO_RA, "dec": DEMO_DEC}
#: sectors/cameras/CCDs whose real footprints hold (DEMO_RA, DEMO_DEC) (core.synthetic.archive)
REAL = [(11, 2, 2), (12, 2, 1), (38, 2, 2), (65, 2, 2)]
FRAMES = 40


def _members(r: httpx.Response) -> list[tuple[str, bytes]]:
    assert r.status_code == 200, r.text[:300]
    assert r.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        assert zf.testzip() is None
        return [(name, zf.read(name)) for name in zf.namelist()]


@pytest.fixture
def six_sectors(service_data, tmp_path):
    """Six copies of the synthetic sector-38 cube, labelled sectors 38-43 (one position, six cubes)."""
    cubes, _, _ = service_data
    d = tmp_path / "cubes"
    d.mkdir()
    for sector in range(38, 44):
        dst = d / f"tess-s{sector:04d}-2-2-cube.fits"
        shutil.copy(cubes["spoc38"], dst)
        fits.setval(dst, "SECTOR", value=sector, ext=0)
    return d


@pytest.mark.parametrize("streamed", [False, True], ids=["built-whole", "streamed"])
def test_all_sectors_answer_the_bytes_of_each_sector_cut_alone(make_server, six_sectors, monkeypatch, streamed):
    """Guards against: members cut concurrently coming out in another order, mixed up between
    cubes, or different from what one sector's cut (and the engine's) gives."""
    if streamed:  # every zip takes the streamed path (members made ahead of the writer)
        monkeypatch.setattr("app.streaming.INLINE_ZIP_BYTES", 0)
    server = make_server(cube_dirs=[str(six_sectors)], zip_concurrency=4)
    params = {**POS, "x": 20, "y": 14, "units": "px"}
    every = _members(httpx.get(f"{server.url}/api/v0.1/astrocut", params=params, timeout=60))
    assert [name.split("_")[0] for name, _ in every] == [f"tess-s{s:04d}-2-2" for s in range(38, 44)]
    for sector, (name, data) in zip(range(38, 44), every):
        (alone,) = _members(httpx.get(f"{server.url}/api/v0.1/astrocut", params={**params, "sector": sector},
                                      timeout=60))
        assert (name, data) == alone
        cube = cube_cache.open_cube(str(six_sectors / f"tess-s{sector:04d}-2-2-cube.fits"))
        geo = locate(cube, f"{DEMO_RA!r} {DEMO_DEC!r}", [20, 14])
        assert data == bytes(cut_bytes(cube, geo).data)
    health = httpx.get(server.url + "/health", timeout=10).json()
    assert health["budget"]["memory_in_use"] == 0


# ------------------------------------------------------------------------------------------------
# S3: reads issued together


@pytest.fixture(scope="module")
def s3_cubes(tmp_path_factory):
    """s3rver holding four sparse real-size cubes (40 frames) whose real footprints hold the position,
    and their infos as the index keeps them."""
    try:
        ensure_installed()
    except S3rverUnavailable as exc:
        pytest.skip(f"s3rver unavailable: {exc}")
    from core.synthetic.archive import cube_name, write_sparse_cube

    folder = tmp_path_factory.mktemp("sparse")
    paths = [write_sparse_cube(folder / cube_name(s, cam, ccd), sector=s, camera=cam, ccd=ccd, frames=FRAMES)
             for s, cam, ccd in REAL]
    server = S3rverServer(parent_dir=tmp_path_factory.mktemp("s3rver")).start()
    try:
        uris = [server.place_file(p, "tess", f"multi/{p.name}") for p in paths]
        infos, skipped = read_many(uris, server.config, threads=4)
        assert not skipped and len(infos) == len(REAL)
        yield server, sorted(infos, key=lambda i: i.sector)
    finally:
        server.stop()
        storage.clear_caches()
        cube_cache.clear_cache()


@pytest.fixture
def gate(s3_cubes):
    server, _ = s3_cubes
    proxy = GatedProxy("127.0.0.1", server.port, hold_s=5.0)
    proxy.start()
    try:
        yield proxy, server.with_config(endpoint_url=proxy.url, max_connections=64)
    finally:
        proxy.stop()


def test_first_open_of_an_indexed_s3_cube_reads_its_table_beside_the_head(s3_cubes, gate):
    """Guards against: the first open of an indexed cube waiting for its HEAD before reading its
    table (two round trips where one does)."""
    _server, infos = s3_cubes
    proxy, cfg = gate
    info = infos[0]
    storage.clear_caches(clients=False)  # no HEAD cached: this is a first open
    proxy.arm(2)
    cube = cube_cache.CubeCache().open(info.uri, s3=cfg, info=info)
    frames = cube.frames  # already read: no request here
    assert proxy.max_held == 2 and proxy.requests == 2  # the HEAD and the table's GET, together
    assert len(frames.time) == FRAMES
    plain = cube_cache.CubeCache().open(info.uri, s3=cfg)  # read from the file itself, in turn
    assert (plain.frames.time.tobytes(), plain.frames.ffi_file.tobytes()) == (frames.time.tobytes(),
                                                                             frames.ffi_file.tobytes())


def test_a_replaced_object_is_read_afresh_not_from_the_indexed_table(s3_cubes, gate):
    """Guards against: the table read beside the HEAD being trusted for an object that is no longer
    the one indexed (its GET carries the indexed ETag, and the HEAD decides)."""
    _server, infos = s3_cubes
    _proxy, cfg = gate
    stale = dataclasses.replace(infos[1], identity=(*infos[1].identity[:3], "0" * 32), sector=99)
    storage.clear_caches(clients=False)
    cube = cube_cache.CubeCache().open(stale.uri, s3=cfg, info=stale)
    assert cube.info.identity == infos[1].identity and cube.sector == infos[1].sector  # the object's own
    assert len(cube.frames.time) == FRAMES


def test_the_cubes_of_a_request_are_opened_together(s3_cubes, gate):
    """Guards against: a many-sector request opening its cubes one after another."""
    _server, infos = s3_cubes
    proxy, cfg = gate
    catalog = Catalog([CubeRecord.from_info(i) for i in infos], load_info=infos_getter(infos), s3=cfg)
    storage.clear_caches(clients=False)
    cube_cache.clear_cache()
    proxy.arm(len(infos))
    cubes = catalog.open_many(catalog.entries())
    assert [c.sector for c in cubes] == [i.sector for i in infos]
    assert proxy.max_held >= len(infos)  # every HEAD (and table) in flight at once


def test_all_sectors_have_every_members_rows_in_flight_at_once(s3_cubes, gate, make_server):
    """Guards against: a many-sector zip cutting its members one after another (one round trip each)."""
    server_s3, infos = s3_cubes
    proxy, _cfg = gate
    prefix = infos[0].uri.rsplit("/", 1)[0]
    server = make_server(cube_dirs=[prefix], s3_endpoint_url=proxy.url, s3_access_key_id=server_s3.ACCESS_KEY,
                         s3_secret_access_key=server_s3.SECRET_KEY, s3_region="us-east-1", s3_anonymous=False,
                         zip_concurrency=8)
    url = f"{server.url}/api/v0.1/astrocut"
    params = {**POS, "x": 5, "y": 5, "units": "px"}
    first = _members(httpx.get(url, params=params, timeout=60))  # every cube opened
    assert len(first) == len(REAL)
    proxy.arm(5 * len(REAL))  # five rows a member, each row one ranged GET
    again = _members(httpx.get(url, params=params, timeout=60))
    assert again == first
    assert proxy.max_held == 5 * len(REAL)
    for sector, (name, data) in zip([s for s, _, _ in REAL], again):
        (alone,) = _members(httpx.get(url, params={**params, "sector": sector}, timeout=60))
        assert (name, data) == alone


def test_a_batch_target_cuts_its_cubes_together(s3_cubes, gate, tmp_path):
    """Guards against: ``cutout batch`` cutting one target's sectors one after another (its task
    waits a round trip per cube); the files are those of each cube's own cut."""
    from core.batch.cutouts import cut_target, cut_target_cubes

    _server, infos = s3_cubes
    proxy, cfg = gate
    s3 = dataclasses.asdict(cfg)
    calls = [(i.uri, DEMO_RA, DEMO_DEC, (5, 5), "px", "SPOC", str(tmp_path / "together"), s3) for i in infos]
    storage.clear_caches(clients=False)
    cube_cache.clear_cache()
    proxy.arm(len(infos))
    results = cut_target_cubes(calls, concurrency=8)
    assert proxy.max_held >= len(infos)  # every cube's first request in flight at once
    assert [r["status"] for r in results] == ["ok"] * len(infos)
    for call, result in zip(calls, results):
        alone = cut_target(*call[:6], str(tmp_path / "alone"), s3)
        assert alone["status"] == "ok"
        with open(result["path"], "rb") as a, open(alone["path"], "rb") as b:
            assert a.read() == b.read()


def test_reading_a_cubes_headers_from_s3_takes_few_gets(s3_cubes, gate):
    """Guards against: reading a cube's info (a scan, a cube the index does not know) costing a GET
    per header and per row, one after another (7 here): its first 64 KiB hold the primary and
    image headers, then the table header (with the first rows), then the rows it still needs,
    together (merged here: 40 rows are 44 kB)."""
    from core.cubes.info import read_cube_info
    from core.storage.sources import open_source

    _server, infos = s3_cubes
    proxy, cfg = gate
    storage.clear_caches(clients=False)
    with open_source(infos[2].uri, s3=cfg) as source:  # its HEAD
        before = proxy.requests
        info = read_cube_info(source)
    assert proxy.requests - before <= 3
    assert info == infos[2]
