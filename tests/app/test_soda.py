"""IVOA SODA 1.0: app.planning.soda tested directly (parsing, IDs, regions, times, no overlap,
VOSI and DataLink documents read by pyvo), then pyvo's SodaQuery and DataLink against a live
uvicorn server, the answer compared with the engine's cut of the same window and cadences."""

from __future__ import annotations

import io
import math

import httpx
import numpy as np
import pytest
from astropy.io import fits
from astropy.time import Time

from app.planning.answers import FileStreamAnswer, NoData, ZipAnswer
from app.planning.soda import (
    MultiValuedParamNotSupported,
    btjd_to_mjd,
    find_cube,
    mjd_to_btjd,
    parse_soda,
    plan_soda,
)
from core.cubes.frames import TimeWindow
from core.errors import InvalidInputError, NotFoundError, TooLargeError
from core.geometry import CutoutGeometry, Window
from core.synthetic.ffis import DEMO_DEC, DEMO_RA
from core.tpf.cut import cut_bytes
from tests.polling import wait_until

pyvo = pytest.importorskip("pyvo")

ID = "tess-s0038-2-2"


@pytest.fixture(scope="module")
def ctx(service_data, tmp_path_factory):
    from app.planning.context import Context
    from core.catalog.configured import open_catalog
    from core.cutout_size import Limits

    cubes, _, _ = service_data
    return Context(catalog=open_catalog(cube_dirs=[str(cubes["spoc38"].parent)]),
                   limits=Limits(max_side=50, max_volume=20 * 20 * 10), inline_tpf_bytes=1 << 26,
                   band_bytes=1 << 20, work_dir=tmp_path_factory.mktemp("soda-work"))


@pytest.fixture(scope="module")
def cube(ctx):
    return ctx.catalog.open(find_cube(ctx, ID))


def _mjd(btjd: float) -> float:
    return float(Time(btjd + 2457000.0, format="jd", scale="tdb").utc.mjd)


def _tpf(answer) -> fits.HDUList:
    assert isinstance(answer, FileStreamAnswer)
    return fits.open(io.BytesIO(bytes(answer.member.build(None))))


# -- parsing ------------------------------------------------------------------------------------


def test_parameter_names_are_case_insensitive_and_empty_values_absent():
    req = parse_soda([("id", ID), ("Circle", "10 20 0.1"), ("time", "59000 +Inf"), ("pos", ""),
                      ("responseformat", "application/zip"), ("frame_bin", "3"), ("other", "x")])
    assert (req.id, req.region.kind, req.region.values, req.time) == (ID, "CIRCLE", (10.0, 20.0, 0.1),
                                                                      (59000.0, math.inf))
    assert (req.response_format, req.frame_bin) == ("zip", 3)


@pytest.mark.parametrize("pairs,field", [
    ([("ID", ID), ("ID", "tess-s0011-2-2")], "ID"),
    ([("ID", ID), ("CIRCLE", "1 2 3"), ("POS", "CIRCLE 1 2 3")], "CIRCLE"),
    ([("ID", ID), ("POLYGON", "1 2 3 4 5 6"), ("POLYGON", "1 2 3 4 5 7")], "POLYGON"),
    ([("ID", ID), ("TIME", "1 2"), ("TIME", "3 4")], "TIME"),
])
def test_several_values_are_multi_valued_param_not_supported(pairs, field):
    with pytest.raises(MultiValuedParamNotSupported) as err:
        parse_soda(pairs)
    assert err.value.field == field and err.value.dali_name == "MultiValuedParamNotSupported"


@pytest.mark.parametrize("pairs,field", [
    ([("CIRCLE", "1 2 3")], "ID"),
    ([("ID", ID), ("CIRCLE", "1 2")], "CIRCLE"),
    ([("ID", ID), ("CIRCLE", "1 2 nan")], "CIRCLE"),
    ([("ID", ID), ("CIRCLE", "1 95 1")], "CIRCLE"),
    ([("ID", ID), ("CIRCLE", "1 2 -1")], "CIRCLE"),
    ([("ID", ID), ("POLYGON", "1 2 3 4")], "POLYGON"),
    ([("ID", ID), ("POS", "BOX 1 2 3 4")], "POS"),
    ([("ID", ID), ("POS", "RANGE 10 5 1 2")], "POS"),
    ([("ID", ID), ("TIME", "59001 59000")], "TIME"),
    ([("ID", ID), ("TIME", "59000")], "TIME"),
    ([("ID", ID), ("RESPONSEFORMAT", "text/csv")], "RESPONSEFORMAT"),
    ([("ID", ID), ("FRAME_BIN", "0")], "FRAME_BIN"),
    ([("ID", ID), ("FRAME_BIN", "two")], "FRAME_BIN"),
])
def test_bad_values_are_usage_errors_naming_the_parameter(pairs, field):
    with pytest.raises(InvalidInputError) as err:
        parse_soda(pairs)
    assert err.value.field == field
    assert not isinstance(err.value, MultiValuedParamNotSupported)


def test_ids_are_sector_names_optionally_product_qualified(ctx):
    assert find_cube(ctx, ID).sector_name == ID
    assert find_cube(ctx, "SPOC:tess-s0038-2-2") == find_cube(ctx, ID)
    assert find_cube(ctx, "tica-s0038-2-2").product == "TICA"
    for bad in ("tess-s0039-2-2", "TICA:tess-s0038-2-2", "tess-s38-2-2", "s3://cubes/x.fits", ""):
        with pytest.raises(NotFoundError) as err:
            find_cube(ctx, bad)
        assert err.value.field == "ID"


def test_mjd_utc_maps_to_btjd_tdb():
    # MJD 59000.0 UTC = JD 2459000.5 UTC; TDB is 69.184 s (+ a periodic ms) ahead in 2020
    btjd = mjd_to_btjd(59000.0)
    assert btjd == pytest.approx(2000.5 + 69.184 / 86400, abs=2e-8)
    assert btjd_to_mjd(btjd) == pytest.approx(59000.0, abs=1e-9)
    assert mjd_to_btjd(-math.inf) == -math.inf


# -- planning -----------------------------------------------------------------------------------


def test_circle_gives_the_smallest_window_holding_it(ctx, cube):
    r = 0.02
    answer = plan_soda(ctx, parse_soda([("ID", ID), ("CIRCLE", f"{DEMO_RA} {DEMO_DEC} {r}")]))
    with _tpf(answer) as tpf:
        ny, nx = tpf[2].data.shape
        x0, y0 = tpf[1].header["1CRV5P"] - 1, tpf[1].header["2CRV5P"] - 1
        assert tpf[0].header["RA_OBJ"] == pytest.approx(DEMO_RA) and len(tpf[1].data) == cube.nframes
        assert "FRAMEBIN" not in tpf[0].header  # every frame: the plain TPF
        flux = tpf[1].data["FLUX"]
    # every point of the circle falls in the window, and each side touches the circle
    angles = np.linspace(0, 2 * np.pi, 720)
    dec = DEMO_DEC + r * np.sin(angles)
    ra = DEMO_RA + r * np.cos(angles) / np.cos(np.radians(dec))
    x, y = cube.wcs.all_world2pix(ra, dec, 0)
    px, py = np.floor(x + 0.5), np.floor(y + 0.5)
    assert (px.min(), px.max(), py.min(), py.max()) == (x0, x0 + nx - 1, y0, y0 + ny - 1)
    assert np.array_equal(flux, cube.read_block(y0, y0 + ny, x0, x0 + nx)[..., 0].transpose(2, 0, 1))


def test_time_keeps_the_frames_whose_exposure_overlaps(ctx, cube):
    start, stop = np.asarray(cube.frames.start, float), np.asarray(cube.frames.stop, float)
    # from inside frame 3's exposure to just inside frame 6's: frames 3..6
    t1, t2 = _mjd((start[3] + stop[3]) / 2 + 0.001), _mjd(start[6] + 0.0005)
    req = parse_soda([("ID", ID), ("CIRCLE", f"{DEMO_RA} {DEMO_DEC} 0.01"), ("TIME", f"{t1!r} {t2!r}"),
                      ("FRAME_BIN", "2")])
    with _tpf(plan_soda(ctx, req)) as tpf:
        h = tpf[0].header
        assert (h["FRAMEIDX"], h["FRAMEUSE"], h["FRAMEBIN"]) == (3, 4, 2)
        assert len(tpf[1].data) == 2
    with pytest.raises(InvalidInputError) as err:
        plan_soda(ctx, parse_soda([("ID", ID), ("CIRCLE", f"{DEMO_RA} {DEMO_DEC} 0.01"),
                                   ("TIME", f"{t1!r} {t2!r}"), ("FRAME_BIN", "5")]))
    assert err.value.field == "FRAME_BIN"


@pytest.mark.parametrize("extra", [
    [("CIRCLE", "10 20 0.5")],  # far from the cube
    [("POS", "RANGE 0 360 80 90")],  # a large region elsewhere (tested on a grid of the cube's pixels)
    [("CIRCLE", f"{DEMO_RA} {DEMO_DEC} 0.01"), ("TIME", "40000 40001")],  # before TESS
    [("CIRCLE", f"{DEMO_RA} {DEMO_DEC} 0.01"), ("BAND", "1e-7 2e-7")],  # ultraviolet
    [("CIRCLE", f"{DEMO_RA} {DEMO_DEC} 0.01"), ("POL", "Q")],
])
def test_no_overlap_is_no_data(ctx, extra):
    assert isinstance(plan_soda(ctx, parse_soda([("ID", ID), *extra])), NoData)


def test_range_polygon_and_formats(ctx, cube):
    d = 0.02
    box = f"{DEMO_RA - d} {DEMO_RA + d} {DEMO_DEC - d} {DEMO_DEC + d}"
    corners = f"{DEMO_RA - d} {DEMO_DEC - d} {DEMO_RA + d} {DEMO_DEC - d} {DEMO_RA + d} {DEMO_DEC + d} " \
              f"{DEMO_RA - d} {DEMO_DEC + d}"
    with _tpf(plan_soda(ctx, parse_soda([("ID", ID), ("POS", f"RANGE {box}"), ("BAND", "7e-7 8e-7"),
                                         ("POL", "I")]))) as by_range, \
            _tpf(plan_soda(ctx, parse_soda([("ID", ID), ("POLYGON", corners)]))) as by_polygon:
        # a RANGE's constant-Dec edges bulge beyond the polygon's great circles: never smaller
        assert by_range[2].data.size >= by_polygon[2].data.size > 0
    zipped = plan_soda(ctx, parse_soda([("ID", ID), ("CIRCLE", f"{DEMO_RA} {DEMO_DEC} 0.01"),
                                        ("RESPONSEFORMAT", "zip")]))
    assert isinstance(zipped, ZipAnswer) and zipped.filename.endswith(".zip") and len(zipped.members) == 1


def test_regions_beyond_the_limits_are_too_large(ctx):
    with pytest.raises(TooLargeError) as err:
        plan_soda(ctx, parse_soda([("ID", ID), ("CIRCLE", f"{DEMO_RA} {DEMO_DEC} 0.1")]))
    assert err.value.field == "CIRCLE"
    with pytest.raises(TooLargeError) as err:  # no region: the whole cube
        plan_soda(ctx, parse_soda([("ID", ID)]))
    assert err.value.field == "POS"
    # a whole-sky RANGE holds the whole cube, as the grid test finds
    with pytest.raises(TooLargeError):
        plan_soda(ctx, parse_soda([("ID", ID), ("POS", "RANGE -Inf +Inf -90 90")]))


# -- VOSI and DataLink documents, read by pyvo -------------------------------------------------


def test_capabilities_and_availability_parse_with_pyvo():
    from pyvo.io import vosi

    from app.planning.soda import availability_xml, capabilities_xml

    caps = vosi.parse_capabilities(io.BytesIO(capabilities_xml("http://example.org/soda")))
    by_id = {c.standardid: c for c in caps}
    sync = by_id["ivo://ivoa.net/std/SODA#sync-1.0"]
    assert sync.interfaces[0].accessurls[0].content == "http://example.org/soda/sync"
    assert "ivo://ivoa.net/std/VOSI#availability" in by_id
    avail = vosi.parse_availability(io.BytesIO(availability_xml(True, "fine")))
    assert avail.available is True


# -- real clients over HTTP ---------------------------------------------------------------------


def test_pyvo_soda_query_returns_the_engines_cut(live_server, service_data):
    """pyvo's SodaQuery (CIRCLE, ID, TIME) against the live server: a TPF whose pixels equal the
    engine's cut of the same window and cadences."""
    from pyvo.dal.adhoc import SodaQuery

    from core.cubes.cache import open_cube

    cubes, _, _ = service_data
    cube = open_cube(str(cubes["spoc38"]))
    start, stop = np.asarray(cube.frames.start, float), np.asarray(cube.frames.stop, float)
    t1, t2 = _mjd((start[2] + stop[2]) / 2), _mjd((start[7] + stop[7]) / 2)
    query = SodaQuery(live_server.url + "/soda/sync", circle=(DEMO_RA, DEMO_DEC, 0.02), id=ID)
    query["TIME"] = f"{t1!r} {t2!r}"
    body = query.execute_stream().read()
    query.raise_if_error()
    with fits.open(io.BytesIO(body)) as tpf:
        x0, y0 = tpf[1].header["1CRV5P"] - 1, tpf[1].header["2CRV5P"] - 1
        ny, nx = tpf[2].data.shape
        flux, err, times = (np.array(tpf[1].data[c]) for c in ("FLUX", "FLUX_ERR", "TIME"))
    frames = TimeWindow(float(cube.time[2]), float(cube.time[7])).resolve(cube.time)
    win = Window(x0, x0 + nx, y0, y0 + ny)
    geo = CutoutGeometry(DEMO_RA, DEMO_DEC, x0 + nx / 2, y0 + ny / 2, win, win)
    with fits.open(io.BytesIO(bytes(cut_bytes(cube, geo, frames=frames).data))) as ours:
        assert np.array_equal(flux, ours[1].data["FLUX"]) and np.array_equal(err, ours[1].data["FLUX_ERR"])
        assert np.array_equal(times, ours[1].data["TIME"]) and len(times) == 6
    assert np.array_equal(flux, cube.read_block(y0, y0 + ny, x0, x0 + nx)[:, :, 2:8, 0].transpose(2, 0, 1))


def test_pyvo_builds_the_query_from_datalink(live_server):
    """pyvo reads the {links} document, takes the #cutout row's service descriptor and runs it."""
    from pyvo.dal.adhoc import DatalinkResults, SodaQuery

    links = DatalinkResults.from_result_url(f"{live_server.url}/soda/links?ID={ID}")
    row = next(links.bysemantics("#cutout", include_narrower=False))  # narrower terms need the network
    assert row.access_url == f"{live_server.url}/soda/sync"
    query = SodaQuery.from_resource(row, links.get_adhocservice_by_id(row.service_def),
                                    circle=(DEMO_RA, DEMO_DEC, 0.01))
    body = query.execute_stream().read()
    query.raise_if_error()
    with fits.open(io.BytesIO(body)) as tpf:
        assert tpf[0].header["SECTOR"] == 38 and tpf[1].data["FLUX"].shape[1:] == tpf[2].data.shape


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_http_answers(live_server, method):
    def call(params):
        with httpx.Client(base_url=live_server.url, timeout=60) as client:
            if method == "GET":
                return client.get("/soda/sync", params=params)
            return client.post("/soda/sync", data=params)

    ok = call({"id": ID, "circle": f"{DEMO_RA} {DEMO_DEC} 0.01"})
    assert ok.status_code == 200 and ok.headers["content-type"] == "application/fits"
    assert int(ok.headers["content-length"]) == len(ok.content) and ok.content.startswith(b"SIMPLE  =")
    assert ok.headers["content-disposition"].endswith('_astrocut.fits"')
    none = call({"ID": ID, "CIRCLE": "10 20 0.5"})
    assert none.status_code == 204 and none.content == b""
    for params, status, name in (({"ID": "tess-s0001-1-1", "CIRCLE": "1 2 3"}, 404, "UsageError"),
                                 ({"ID": ID, "CIRCLE": "1 2"}, 400, "UsageError"),
                                 ({"ID": [ID, ID]}, 400, "MultiValuedParamNotSupported"),
                                 ({"ID": ID, "CIRCLE": f"{DEMO_RA} {DEMO_DEC} 0.2"}, 413, "UsageError")):
        r = call(params)
        assert r.status_code == status and r.headers["content-type"].startswith("text/plain")
        assert r.text.startswith(f"{name}: ")
    zipped = call({"ID": ID, "CIRCLE": f"{DEMO_RA} {DEMO_DEC} 0.01", "RESPONSEFORMAT": "application/zip"})
    assert zipped.status_code == 200 and zipped.headers["content-type"] == "application/zip"


def test_vosi_over_http(live_server):
    with httpx.Client(base_url=live_server.url, timeout=60) as client:
        caps = client.get("/soda/capabilities")
        avail = client.get("/soda/availability")
        links_missing = client.get("/soda/links")
    assert caps.status_code == 200 and f"{live_server.url}/soda/sync</accessURL>" in caps.text
    assert avail.status_code == 200 and "<vosi:available>true</vosi:available>" in avail.text
    assert links_missing.status_code == 400 and links_missing.text.startswith("UsageError: ")


def test_a_big_cut_is_streamed_in_bounded_pieces(make_server, tmp_path):
    """A TPF past the in-memory size is streamed (the pixel spool route), with its length set and
    the same bytes as one built whole."""
    from core.building.factory import CubeFactory
    from core.synthetic.ffis import write_sector

    sector = write_sector(tmp_path / "ffis", sector=38, camera=2, ccd=2, frames=40, size=(64, 64),
                          center=(DEMO_RA, DEMO_DEC), seed=2)
    (tmp_path / "cubes").mkdir()
    CubeFactory().make_cube([str(f) for f in sector.ffi_files], str(tmp_path / "cubes" / f"{ID}-cube.fits"),
                            verbose=False)
    common = {"cube_dirs": [str(tmp_path / "cubes")], "max_cutout_side": 64, "max_cutout_volume": 10 ** 6}
    whole = make_server(**common)
    streamed = make_server(**common, inline_tpf_bytes=1 << 20, stream_band_bytes=1 << 20)
    params = {"ID": ID, "POS": "RANGE -Inf +Inf -90 90", "TIME": "-Inf +Inf"}  # the whole cube: 3.3 MB
    a = httpx.get(f"{whole.url}/soda/sync", params=params, timeout=60)
    b = httpx.get(f"{streamed.url}/soda/sync", params=params, timeout=60)
    assert a.status_code == b.status_code == 200
    assert len(a.content) > 3 << 20 and a.content == b.content
    assert int(b.headers["content-length"]) == len(b.content)
    with fits.open(io.BytesIO(b.content)) as tpf:
        assert tpf[1].data["FLUX"].shape == (40, 64, 64)
    # the spool is removed when the stream ends, just after its last bytes went out
    wait_until(lambda: not list(streamed.settings.work_dir.glob("tpf-spool-*")), message="the pixel spool removed")
