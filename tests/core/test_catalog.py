"""core.catalog.snapshot and core.catalog.index: the spatial index finds what a loop over every cube finds,
the persistent index round-trips every CubeInfo exactly, is incremental, atomic, and can live on S3."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from core.catalog.configured import open_catalog
from core.catalog.index import CatalogIndex
from core.catalog.scan import list_cubes
from core.catalog.snapshot import Catalog, CubeRecord
from core.cubes import cache as cube_mod
from core.cubes.cache import open_cube
from core.cubes.info import read_cube_info
from core.storage.sources import open_source
from core.synthetic.ffis import DEMO_DEC, DEMO_RA
from core.tpf.cut import cut_bytes, locate


@pytest.fixture(scope="module")
def cube_dir(service_data, tmp_path_factory):
    """A copy of the service's cube folder (two SPOC sectors, TICA 38, one broken file)."""
    cubes, _root, _images = service_data
    out = tmp_path_factory.mktemp("catalog-cubes")
    shutil.copytree(cubes["spoc38"].parent, out / "cubes")
    return out / "cubes"


def test_spatial_prefilter_finds_what_a_loop_finds():
    """Over a grid of synthetic footprints (all declinations, RA wrap, the poles) and positions,
    the grid's candidates hold every cube whose circle holds the position."""
    rng = np.random.default_rng(5)
    records = []
    for i in range(400):
        ra, dec = float(rng.uniform(0, 360)), float(np.degrees(np.arcsin(rng.uniform(-1, 1))))
        if i < 10:
            dec = 89.5 - i * 0.1 if i % 2 else -89.5 + i * 0.1
        records.append(CubeRecord(uri=f"c{i}", identity=("x", i), product="SPOC", sector=1, camera=1, ccd=1,
                                  nframes=1, nx=10, ny=10, footprint=(), center=(ra, dec),
                                  reach_deg=float(rng.uniform(0.5, 12)), tstart=0.0, tstop=1.0))
    cat = Catalog(records)
    for _ in range(3000):
        ra, dec = float(rng.uniform(-1, 361)) % 360, float(np.degrees(np.arcsin(rng.uniform(-1, 1))))
        radius = float(rng.choice([0.0, 0.0, 0.5, 3.0]))
        expected = {r.uri for r in records if r.near(ra, dec, radius)}
        assert {r.uri for r in cat.candidates(ra, dec, radius)} == expected


def test_catalog_answers_as_each_cube_does(cube_dir):
    cat = open_catalog(cube_dirs=[str(cube_dir)])
    assert [r.sector_name for r in cat.entries()] == ["tess-s0011-2-2", "tess-s0038-2-2", "tica-s0038-2-2"]
    assert len(cat.skipped) == 1 and "s0099" in cat.skipped[0][0]
    rng = np.random.default_rng(1)
    for ra, dec in [(DEMO_RA, DEMO_DEC)] + [(DEMO_RA + dx, DEMO_DEC + dy) for dx, dy in rng.uniform(-0.4, 0.4, (40, 2))]:
        for product in ("SPOC", "TICA"):
            got = [r.uri for r in cat.containing(ra, dec, 0.0, product=product)]
            want = [r.uri for r in cat.entries(product) if open_cube(r.uri).contains_radec(ra, dec, 0.0)]
            assert got == want
    assert [r.sector for r in cat.containing(DEMO_RA, DEMO_DEC, sectors=[11])] == [11]


def test_index_round_trips_every_info_and_cuts_identically(cube_dir, tmp_path):
    index = CatalogIndex(tmp_path / "catalog.sqlite")
    report = index.update([str(cube_dir)])
    assert (report.cubes, report.read, report.reused, len(report.failed)) == (3, 3, 0, 1)
    cat = index.catalog()
    for record in cat.entries():
        with open_source(record.uri) as src:
            assert cat.info(record) == read_cube_info(src, record.uri)
    # a cut through the index's info (no header read) is the cut from the file itself
    cube_mod.clear_cache()
    record = cat.containing(DEMO_RA, DEMO_DEC)[0]
    via_index = cat.open(record)
    direct_bytes = bytes(cut_bytes(via_index, locate(via_index, f"{DEMO_RA} {DEMO_DEC}", 7)).data)
    cube_mod.clear_cache()
    direct = open_cube(record.uri)
    assert bytes(cut_bytes(direct, locate(direct, f"{DEMO_RA} {DEMO_DEC}", 7)).data) == direct_bytes


def test_index_is_incremental_and_follows_changes(cube_dir, tmp_path):
    cubes = tmp_path / "cubes"
    shutil.copytree(cube_dir, cubes)
    index = CatalogIndex(tmp_path / "catalog.sqlite")
    index.update([str(cubes)])
    again = index.update([str(cubes)])
    assert (again.read, again.reused, again.changed) == (0, 3, False)
    before = index.catalog()
    # a new sector appears, one is replaced in place (new identity), one vanishes
    spoc38 = cubes / "tess-s0038-2-2-cube.fits"
    shutil.copy(spoc38, cubes / "tess-s0039-2-2-cube.fits")
    replaced = cubes / "sub" / "tess-s0011-2-2-cube.fits"
    tmp = replaced.with_suffix(".tmp")
    shutil.copy(replaced, tmp)
    os.replace(tmp, replaced)
    os.unlink(cubes / "s0038-2-2-cube.fits")
    report = index.update([str(cubes)])
    assert (report.read, report.reused, report.removed) == (2, 1, 1)
    after = index.catalog()
    assert sorted(r.sector_name for r in after.entries()) == ["tess-s0011-2-2", "tess-s0038-2-2", "tess-s0038-2-2"]
    assert len(before) == 3  # the old snapshot is untouched by the swap
    record = after.record(str(replaced))
    assert record.identity == list_cubes([str(cubes)])[str(replaced)]
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".part")]


def test_a_replaced_cube_is_never_cut_from_stale_state(cube_dir, tmp_path):
    """The catalog's info says one file; the path now holds another cube: the cut reads the new one."""
    cubes = tmp_path / "cubes"
    shutil.copytree(cube_dir, cubes)
    index = CatalogIndex(tmp_path / "catalog.sqlite")
    index.update([str(cubes)])
    cat = index.catalog()
    record = cat.record(str(cubes / "tess-s0038-2-2-cube.fits"))
    cube_mod.clear_cache()
    first = cat.open(record)
    shutil.copy(cubes / "sub" / "tess-s0011-2-2-cube.fits", cubes / "x.tmp")
    os.replace(cubes / "x.tmp", cubes / "tess-s0038-2-2-cube.fits")
    second = cat.open(record)
    assert second is not first and second.sector == 11  # read from the file, not the stale index row


def test_index_on_s3_is_shared_by_readers(cube_dir, s3_server, tmp_path):
    uris = [s3_server.upload(p, "cubes", f"tess/{p.name}") for p in sorted(cube_dir.glob("*-cube.fits"))]
    writer = CatalogIndex("s3://cubes/index/catalog.sqlite", s3=s3_server.config, work_dir=tmp_path / "w")
    report = writer.update(["s3://cubes/tess"])
    assert report.cubes == 2 and len(report.failed) == 1  # the broken s0099 file
    assert report.bytes_read < 0.5 * sum(os.path.getsize(p) for p in cube_dir.glob("*-cube.fits") if "0099" not in
                                         p.name)
    reader = CatalogIndex("s3://cubes/index/catalog.sqlite", s3=s3_server.config, work_dir=tmp_path / "r")
    cat = reader.catalog()
    assert sorted(r.uri for r in cat.entries()) == sorted(u for u in uris if "0099" not in u)
    rec = cat.containing(DEMO_RA, DEMO_DEC, product="SPOC")[0]
    cube = cat.open(rec)
    assert cube.nframes == 10 and cube.info == cat.info(rec)


def test_a_location_that_cannot_be_read_is_reported_and_keeps_its_cubes(cube_dir, s3_server, tmp_path):
    import socket

    s3_server.upload(cube_dir / "tess-s0038-2-2-cube.fits", "cubes", "unreachable/tess-s0038-2-2-cube.fits")
    index = CatalogIndex(tmp_path / "catalog.sqlite", s3=s3_server.config)
    first = index.update([str(cube_dir), "s3://cubes/unreachable", str(tmp_path / "no-such-folder")])
    assert first.unreadable == [(str(tmp_path / "no-such-folder"), "no such folder")]
    assert first.cubes == 4 and first.as_dict()["unreadable"] == 1
    with socket.socket() as sock:  # a loopback port nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    down = CatalogIndex(tmp_path / "catalog.sqlite",
                        s3=s3_server.with_config(endpoint_url=closed, max_attempts=1, connect_timeout_s=1))
    report = down.update([str(cube_dir), "s3://cubes/unreachable"])
    assert [loc for loc, _ in report.unreadable] == ["s3://cubes/unreachable"]
    # the S3 cube is still indexed: an outage is not a deletion
    assert report.removed == 0 and "s3://cubes/unreachable/tess-s0038-2-2-cube.fits" in {
        r.uri for r in down.catalog().entries()}


_CENTRE = (DEMO_RA, DEMO_DEC)


def _offset(ra: float, dec: float, north_deg: float) -> tuple[float, float]:
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    c = SkyCoord(ra, dec, unit="deg").directional_offset_by(0 * u.deg, north_deg * u.deg)
    return float(c.ra.deg), float(c.dec.deg)


@pytest.mark.parametrize(
    ("where", "radius", "inside"),
    [(_CENTRE, 0.0, True), (_offset(*_CENTRE, 0.25), 0.0, False), (_offset(*_CENTRE, 0.25), 0.3, True),
     ((DEMO_RA + 180, -DEMO_DEC), 0.3, False)],
    ids=["centre", "off", "off-within-radius", "far"],
)
def test_containing_with_a_radius_and_wrapped_ra(spoc_cube, where, radius, inside):
    """64 px of ~21": 0.25 deg away is off the pixels but within 0.3 deg of them."""
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    cat = open_catalog(cube_dirs=[os.path.dirname(spoc_cube)])
    ra, dec = where
    found = cat.containing(ra, dec, radius)
    assert [r.sector for r in found] == ([38] if inside else [])
    assert cat.containing(ra + 360.0, dec, radius) == found  # RA wraps
    assert cat.containing(ra - 360.0, dec, radius) == found
    (record,) = cat.entries("SPOC")
    cube = cat.open(record)
    coord = SkyCoord(ra, dec, unit="deg")
    assert cube.contains(coord, radius * u.deg) is cube.contains_radec(ra % 360.0, dec, radius) is inside


@pytest.fixture(scope="module")
def archive_catalog(tmp_path_factory):
    """32 sparse full-size cubes (sectors 1 and 2, every camera and CCD) with real TESS WCSs."""
    from core.synthetic.archive import write_archive

    paths = write_archive(tmp_path_factory.mktemp("archive"), 32, frames=4)
    return Catalog.from_files(paths)


def test_footprint_decisions_agree_with_the_wcs(archive_catalog):
    """Where the footprint alone decides (no WCS built), it says what the cube's WCS says: positions
    a few pixels either side of every edge and corner, across the detector and off it, radii from 0
    to 1 degree; and it decides nearly all random positions near a cube."""
    from core.cubes.cube import CubeGeometry

    rng = np.random.default_rng(11)
    sure = unsure = 0
    for record in archive_catalog.entries():
        geo = CubeGeometry(archive_catalog.info(record))
        wcs = geo._master_wcs()
        y0, y1, x0, x1 = geo.info.science_box
        # pixels near the outline (within 12 px of an edge, inside and out) and anywhere on or off the CCD
        edge_x = np.concatenate([rng.uniform(x0 - 12, x0 + 12, 40), rng.uniform(x1 - 13, x1 + 11, 40),
                                 rng.uniform(x0 - 50, x1 + 50, 80)])
        edge_y = np.concatenate([rng.uniform(y0 - 50, y1 + 50, 80),
                                 rng.choice([y0, y1 - 1], 80) + rng.uniform(-12, 12, 80)])
        far_x, far_y = rng.uniform(-600, 2700, 60), rng.uniform(-600, 2700, 60)
        ra, dec = wcs.all_pix2world(np.concatenate([edge_x, far_x]), np.concatenate([edge_y, far_y]), 0)
        for r, d in zip(ra, dec):
            for radius in (0.0, 0.0, 0.002, 0.05, 0.5, 1.0):
                decided = record.holds(float(r) % 360.0, float(d), radius)
                if decided is None:
                    unsure += 1
                    continue
                sure += 1
                assert decided is geo.contains_radec(float(r) % 360.0, float(d), radius), (record.uri, r, d, radius)
    assert sure > 5000 and unsure > 1000  # both kinds of answer were exercised

    # random positions within the circles around the footprints: nearly all decided by the footprint
    decided = 0
    trials = 0
    for record in archive_catalog.entries():
        for _ in range(50):
            r, d = _offset(*record.center, rng.uniform(0, record.reach_deg))
            trials += 1
            decided += record.holds(r, d) is not None
    assert decided >= 0.95 * trials


def test_catalog_routes_without_a_wcs_away_from_the_edges(archive_catalog, monkeypatch):
    """A position well inside one cube is answered from the footprints: no geometry is built."""
    built = []
    real = archive_catalog.geometry
    monkeypatch.setattr(archive_catalog, "geometry", lambda rec: built.append(rec) or real(rec))
    record = archive_catalog.entries()[5]
    found = archive_catalog.containing(*record.center)
    assert record in found and built == []
