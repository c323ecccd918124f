"""astroquery's ``Zcut`` and ``Hapcut``, unchanged, against a live server configured with surveys.

The clients are pointed at the server only through their base URL (``ServiceAPI.SERVICE_URL``
and ``__init__()``, as tests/app/test_clients.py does for ``Tesscut``). The server hosts three
surveys of small synthetic images: ``deep_a`` (three TESS-like FFIs, TAN-SIP WCS), ``deep_b``
(two FFIs of another sector at the same position) and ``hap`` (HST-like SCI + WHT images with
TAN WCS, two at one position under HAP MVM names, one under another name, one elsewhere). Every
answer's pixels are compared with the engine's own ``fits_cut`` / ``img_cut`` on the same images.
"""

from __future__ import annotations

import io
import os
import shutil
import warnings
from pathlib import Path

import httpx
import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS
from PIL import Image

pytest.importorskip("astroquery")
pytestmark = pytest.mark.filterwarnings("ignore:Card is too long")

from core.images.cutouts import fits_cut
from core.images.render import img_cut
from core.synthetic.ffis import DEMO_DEC, DEMO_RA

COORD = SkyCoord(DEMO_RA, DEMO_DEC, unit="deg")
FAR = SkyCoord(10.0, 20.0, unit="deg")  # on no survey image
NEAR = SkyCoord(DEMO_RA, DEMO_DEC + 0.35, unit="deg")  # just off the FFIs' edge (64 px x 21")
HAP_RA, HAP_DEC = 351.347812, 28.497808
HAP_COORD = SkyCoord(HAP_RA, HAP_DEC, unit="deg")
HAP_SCALE_DEG = 0.04 / 3600  # 0.04 arcsec per pixel
HAP_AT_POSITION = [  # sorted, as the index lists them
    "hst_12345_01_wfc3_uvis_f606w_drz.fits",
    "hst_skycell-p1882x12y06_wfc3_ir_f160w_coarse-all_drz.fits",
    "hst_skycell-p1882x12y06_wfc3_uvis_f275w_all-ibp505mf_drz.fits",
]


def _hst_image(path: Path, ra: float, dec: float, *, seed: int, shape=(90, 110), rotation_deg=20.0) -> None:
    """An HST-like drizzled image: PRIMARY (no data), SCI and WHT with the same TAN WCS."""
    rng = np.random.default_rng(seed)
    ny, nx = shape
    theta = np.radians(rotation_deg)
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = [nx / 2 + 3.2, ny / 2 - 4.7]  # the position is not on a pixel centre
    w.wcs.cd = HAP_SCALE_DEG * np.array([[-np.cos(theta), np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    header = w.to_header()
    yy, xx = np.mgrid[0:ny, 0:nx]
    sci = rng.normal(0.0, 1.0, shape) + 50 * np.exp(-((xx - nx / 2) ** 2 + (yy - ny / 2) ** 2) / 8.0)
    primary = fits.PrimaryHDU(header=fits.Header([("TELESCOP", "HST"), ("INSTRUME", "WFC3"),
                                                  ("FILENAME", path.name)]))
    hdus = [primary, fits.ImageHDU(sci.astype(np.float32), header, name="SCI"),
            fits.ImageHDU(rng.uniform(1, 2, shape).astype(np.float32), header, name="WHT")]
    fits.HDUList(hdus).writeto(path)


class ZcutServer:
    """The live server (``url``, ``app``) and the files of each survey (``files[survey]``, sorted)."""

    def __init__(self, url, app, files, outside):
        self.url, self.app, self.files, self.outside = url, app, files, outside


@pytest.fixture(scope="module")
def zcut_server(spoc_sector, spoc_sector_b, tmp_path_factory):
    from app.main import create_app
    from app.settings import Settings

    try:
        from tests.conftest import _free_port, start_uvicorn, stop_uvicorn
    except ImportError:  # pragma: no cover - tests/ itself on sys.path
        from conftest import _free_port, start_uvicorn, stop_uvicorn

    base = tmp_path_factory.mktemp("surveys")
    roots = {name: base / name for name in ("deep_a", "deep_b", "hap")}
    for root in roots.values():
        root.mkdir()
    for ffi in spoc_sector.ffi_files[:3]:
        shutil.copy(ffi, roots["deep_a"] / Path(ffi).name)
    sub = roots["deep_b"] / "sector11"
    sub.mkdir()
    for ffi in spoc_sector_b.ffi_files[:2]:
        shutil.copy(ffi, sub / Path(ffi).name)
    for i, name in enumerate(HAP_AT_POSITION):
        _hst_image(roots["hap"] / name, HAP_RA, HAP_DEC, seed=i, rotation_deg=10.0 * i)
    _hst_image(roots["hap"] / "hst_skycell-p0081x14y15_acs_wfc_f814w_all_drc.fits", 84.92, -69.85, seed=9)
    # found but never indexed: not FITS, FITS without a WCS, and a symlink leading out of the root
    (roots["deep_a"] / "notes.fits").write_bytes(b"not a FITS file")
    fits.HDUList([fits.PrimaryHDU(np.zeros((4, 4), np.float32))]).writeto(roots["deep_a"] / "nowcs.fits")
    outside = base / "outside.fits"
    shutil.copy(spoc_sector.ffi_files[3], outside)
    os.symlink(outside, roots["deep_a"] / "zz_link.fits")

    files = {
        "deep_a": sorted(str(p.resolve()) for p in roots["deep_a"].glob("tess*.fits")),
        "deep_b": sorted(str(p.resolve()) for p in sub.glob("tess*.fits")),
        "hap": [str((roots["hap"] / n).resolve()) for n in HAP_AT_POSITION],
    }
    settings = Settings(
        surveys={name: [str(root)] for name, root in roots.items()}, cube_dirs=[], image_roots=[],
        work_dir=tmp_path_factory.mktemp("zcut-work"), port=_free_port(), max_cutout_side=50,
        workers=2, queue_size=8, request_timeout_s=60, log_level="warning",
    )
    app = create_app(settings)
    server, thread = start_uvicorn(app, settings.host, settings.port)
    try:
        yield ZcutServer(f"http://{settings.host}:{settings.port}", app, files, str(outside))
    finally:
        stop_uvicorn(server, thread)


@pytest.fixture(scope="module")
def clients(zcut_server):
    """astroquery's module-level ``Zcut`` and ``Hapcut`` pointed at the live server (restored afterwards)."""
    from astroquery.mast import Hapcut, Zcut
    from astroquery.mast.services import ServiceAPI

    saved = ServiceAPI.SERVICE_URL
    ServiceAPI.SERVICE_URL = zcut_server.url
    Zcut.__init__()
    Hapcut.__init__()
    try:
        yield Zcut, Hapcut
    finally:
        ServiceAPI.SERVICE_URL = saved
        Zcut.__init__()
        Hapcut.__init__()


@pytest.fixture(scope="module")
def zcut(clients):
    return clients[0]


@pytest.fixture(scope="module")
def hapcut(clients):
    return clients[1]


def _position(coord: SkyCoord) -> str:
    return f"{float(coord.ra.deg)!r} {float(coord.dec.deg)!r}"


def _assert_same_pixels(got: fits.HDUList, want: fits.HDUList) -> None:
    assert len(got) == len(want)
    assert got[0].header["ORIGIN"] == "STScI/MAST"
    for g, w in zip(got[1:], want[1:]):
        assert g.header["EXTNAME"] == "CUTOUT"
        assert g.header.get("ORIG_EXT") == w.header.get("ORIG_EXT")
        np.testing.assert_array_equal(g.data, w.data)
        assert WCS(g.header).wcs.crpix == pytest.approx(WCS(w.header).wcs.crpix)


# ------------------------------------------------------------------------------------------
# Zcut
# ------------------------------------------------------------------------------------------


def test_index_built_at_start_up(zcut_server):
    index = zcut_server.app.state.services.surveys.current
    assert index.surveys() == ["deep_a", "deep_b", "hap"]
    indexed = {e.uri for e in index.entries}
    elsewhere = str(Path(zcut_server.files["hap"][0]).parent / "hst_skycell-p0081x14y15_acs_wfc_f814w_all_drc.fits")
    assert indexed == {*zcut_server.files["deep_a"], *zcut_server.files["deep_b"], *zcut_server.files["hap"], elsewhere}
    assert {e.ext for e in index.entries if e.survey == "hap"} == {1, 2}  # SCI and WHT
    reasons = {Path(uri).name: reason for uri, reason in index.skipped}
    assert set(reasons) == {"notes.fits", "nowcs.fits", "zz_link.fits"}
    assert "outside" in reasons["zz_link.fits"]  # confined to its own survey's folder
    assert zcut_server.outside not in indexed


def test_get_surveys(zcut):
    from astroquery.exceptions import NoResultsWarning

    assert zcut.get_surveys(COORD) == ["deep_a", "deep_b"]  # hap is Hapcut's
    with pytest.warns(NoResultsWarning):
        assert zcut.get_surveys(FAR) == []
    with pytest.warns(NoResultsWarning):
        assert zcut.get_surveys(NEAR) == []
    assert zcut.get_surveys(NEAR, radius=0.3 * u.deg) == ["deep_a", "deep_b"]


def test_download_cutouts_fits_one_file_per_survey(zcut, zcut_server, tmp_path):
    manifest = zcut.download_cutouts(COORD, size=[5, 7], path=str(tmp_path))  # (ny, nx)
    paths = sorted(Path(p) for p in manifest["Local Path"])
    assert [p.name for p in paths] == [
        f"{s}_217.428938_-62.679492_7.0pix-x-5.0pix_astrocut.fits" for s in ("deep_a", "deep_b")
    ]
    assert not list(tmp_path.glob("*.zip"))  # the client unpacked and removed the zip
    for path, survey in zip(paths, ("deep_a", "deep_b")):
        want = fits_cut(zcut_server.files[survey], _position(COORD), [7, 5], memory_only=True)[0]
        with fits.open(path) as got:
            assert len(got) == 1 + len(zcut_server.files[survey])
            assert got[1].data.shape == (5, 7)
            _assert_same_pixels(got, want)


@pytest.mark.parametrize("fmt", ["jpg", "png"])
def test_download_cutouts_images(zcut, zcut_server, tmp_path, fmt):
    options = {"stretch": "sqrt", "minmax_percent": [1, 99], "invert": True}
    manifest = zcut.download_cutouts(COORD, size=[6, 8], survey="deep_a", cutout_format=fmt, path=str(tmp_path),
                                     **options)
    paths = sorted(Path(p) for p in manifest["Local Path"])
    stems = [Path(f).name.removesuffix(".fits") for f in zcut_server.files["deep_a"]]
    assert [p.name for p in paths] == [f"{s}_217.428938_-62.679492_8.0pix-x-6.0pix_astrocut.{fmt}" for s in stems]
    for path, source in zip(paths, zcut_server.files["deep_a"]):
        [want] = img_cut([source], _position(COORD), [8, 6], img_format=fmt, memory_only=True, **options)
        if fmt == "jpg":  # the same image through the same encoder
            buf = io.BytesIO()
            want.save(buf, format="JPEG")
            want = Image.open(buf)
        got = np.asarray(Image.open(path))
        assert got.shape == (6, 8)
        np.testing.assert_array_equal(got, np.asarray(want))


def test_get_cutouts(zcut, zcut_server):
    cutouts = zcut.get_cutouts(COORD, size=5)
    assert [h.filename for h in cutouts] == [
        f"{s}_217.428938_-62.679492_5.0pix-x-5.0pix_astrocut.fits" for s in ("deep_a", "deep_b")
    ]
    for got, survey in zip(cutouts, ("deep_a", "deep_b")):
        _assert_same_pixels(got, fits_cut(zcut_server.files[survey], _position(COORD), 5, memory_only=True)[0])
    [only] = zcut.get_cutouts(COORD, size=[4, 3], survey="deep_b")
    want = fits_cut(zcut_server.files["deep_b"], _position(COORD), [3, 4], memory_only=True)[0]
    _assert_same_pixels(only, want)
    assert only[1].data.shape == (4, 3)


def test_zcut_no_data(zcut, tmp_path):
    from astroquery.exceptions import NoResultsWarning

    with pytest.warns(NoResultsWarning, match="on no image"):
        assert zcut.get_cutouts(FAR, size=5) == []
    with pytest.warns(NoResultsWarning, match="not hosted"):
        assert zcut.get_cutouts(COORD, size=5, survey="candels_gn_30mas") == []
    with pytest.warns(NoResultsWarning, match="on no image"):
        assert len(zcut.download_cutouts(FAR, size=5, cutout_format="jpg", path=str(tmp_path))) == 0


# ------------------------------------------------------------------------------------------
# Hapcut
# ------------------------------------------------------------------------------------------


def test_hapcut_download_cutouts(hapcut, zcut_server, tmp_path):
    manifest = hapcut.download_cutouts(HAP_COORD, size=[6, 8], path=str(tmp_path))  # (ny, nx)
    names = [Path(p).name for p in manifest["Local Path"]]
    assert names == [
        "hst_12345_01_wfc3_uvis_f606w_drz_351.347812_28.497808_8.0pix-x-6.0pix_astrocut.fits",
        "hst_cutout_skycell-p1882x12y06-ra351d3478-decn28d4978_ir_f160w_coarse.fits",
        "hst_cutout_skycell-p1882x12y06-ra351d3478-decn28d4978_uvis_f275w-ibp505mf.fits",
    ]
    want = fits_cut(zcut_server.files["hap"], _position(HAP_COORD), [8, 6], extension="all", single_outfile=False,
                    memory_only=True)
    for path, expected in zip(manifest["Local Path"], want, strict=True):
        with fits.open(path) as got:
            assert [h.header["O_EXT_NM"] for h in got[1:]] == ["SCI", "WHT"]
            assert got[1].data.shape == (6, 8)
            _assert_same_pixels(got, expected)


def test_hapcut_get_cutouts(hapcut, zcut_server):
    cutouts = hapcut.get_cutouts(HAP_COORD)  # the client's default: 5 px
    assert len(cutouts) == 3 and all(h[1].data.shape == (5, 5) for h in cutouts)
    size = 1.03 * u.arcsec  # sent as degrees: 25.75 pixels of 0.04"
    cutouts = hapcut.get_cutouts(HAP_COORD, size=size)
    side = size.to_value(u.deg)
    want = fits_cut(zcut_server.files["hap"], _position(HAP_COORD), [side * u.deg, side * u.deg],
                    extension="all", single_outfile=False, memory_only=True)
    for got, expected in zip(cutouts, want, strict=True):
        assert got[1].data.shape == (26, 26)
        _assert_same_pixels(got, expected)


def test_hapcut_no_data(hapcut, tmp_path):
    from astroquery.exceptions import NoResultsWarning

    with pytest.warns(NoResultsWarning, match="Missing HAP files for input target"):
        assert hapcut.get_cutouts(FAR) == []
    with pytest.warns(NoResultsWarning, match="Missing HAP files for input target"):
        assert len(hapcut.download_cutouts(COORD, path=str(tmp_path))) == 0  # Zcut's position, no HAP image


def test_a_server_without_surveys_says_so(make_server, caplog):
    """Zcut and Hapcut on a server that hosts no survey: say that, not "no image at the position"."""
    import logging

    from astroquery.exceptions import NoResultsWarning
    from astroquery.mast import Hapcut, Zcut
    from astroquery.mast.services import ServiceAPI

    with caplog.at_level(logging.INFO, logger="app.surveys"):
        server = make_server(cube_dirs=[], image_roots=[])
    # the server's log names the setting that enables them
    assert any("CUTOUT_SURVEYS" in r.getMessage() for r in caplog.records if r.name == "app.surveys")
    params = {"ra": DEMO_RA, "dec": DEMO_DEC, "x": 5, "y": 5}
    for path, words in (("/zcut/api/v0.1/astrocut", "hosts no surveys"), ("/hapcut/api/v0.1/astrocut", "no HAP images")):
        r = httpx.get(server.url + path, params=params, timeout=30)
        assert r.status_code == 200 and words in r.json()["msg"] and "CUTOUT_SURVEYS" in r.json()["msg"]
    saved = ServiceAPI.SERVICE_URL
    ServiceAPI.SERVICE_URL = server.url
    try:
        zcut, hapcut = type(Zcut)(), type(Hapcut)()
        with pytest.warns(NoResultsWarning, match="This server hosts no surveys"):
            assert zcut.get_cutouts(COORD, size=5) == []
        with pytest.warns(NoResultsWarning, match="This server hosts no HAP images"):
            assert hapcut.get_cutouts(COORD) == []
    finally:
        ServiceAPI.SERVICE_URL = saved


# ------------------------------------------------------------------------------------------
# errors, and what a request costs the index
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "status", "field"),
    [
        ({"format": "gif"}, 400, "format"),
        ({"format": "jpg", "stretch": "cubic"}, 400, "stretch"),
        ({"format": "jpg", "minmax_percent": "[1]"}, 400, "minmax_percent"),
        ({"format": "jpg", "minmax_percent": "[99, 1]"}, 400, "minmax_percent"),
        ({"units": "furlong"}, 400, "units"),
        ({"ra": "abc"}, 400, "ra"),
        ({"dec": "91"}, 400, "dec"),
        ({"x": "51"}, 413, "x"),
        ({"x": "5", "y": "51", "format": "png"}, 413, "y"),
    ],
)
def test_bad_parameters_name_the_field(zcut_server, params, status, field):
    query = {"ra": DEMO_RA, "dec": DEMO_DEC, "x": 5, "y": 5, "units": "px", **params}
    r = httpx.get(f"{zcut_server.url}/zcut/api/v0.1/astrocut", params=query, timeout=30)
    assert r.status_code == status, r.text
    assert r.json()["error"]["field"] == field
    assert "/" not in r.json()["msg"].replace("[", "")  # no server path in the message


def test_bad_parameters_through_the_clients(zcut_server, zcut, hapcut, tmp_path):
    import requests
    from astroquery.exceptions import InvalidQueryError

    with pytest.raises(requests.HTTPError) as info:
        zcut.download_cutouts(COORD, size=5, cutout_format="gif", path=str(tmp_path))
    assert info.value.response.status_code == 400
    with pytest.raises(InvalidQueryError):  # astroquery turns a 400 to a POST into this
        zcut._service_api_connection.service_request_async(
            "astrocut", {"ra": DEMO_RA, "dec": DEMO_DEC, "x": 5, "units": "furlong"})
    with pytest.raises(requests.HTTPError) as info:
        hapcut.get_cutouts(HAP_COORD, size=51)
    assert info.value.response.status_code == 413
    r = httpx.post(f"{zcut_server.url}/hapcut/api/v0.1/astrocut", json={"ra": "abc", "dec": 0, "x": 5}, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["field"] == "ra"


def test_requests_open_only_the_images_they_cut(zcut_server, zcut, hapcut, monkeypatch, tmp_path):
    """The survey index is read at start-up: a request opens no file to find images, only the
    images it cuts; a refresh re-opens only changed files."""
    from core.storage import range_file

    opened: list[str] = []
    real_open = range_file.open_fits

    def counting(uri, *args, **kwargs):
        opened.append(str(uri))
        return real_open(uri, *args, **kwargs)

    monkeypatch.setattr(range_file, "open_fits", counting)
    service = zcut_server.app.state.services.surveys
    refreshes = service.refreshes
    assert zcut.get_surveys(COORD) == ["deep_a", "deep_b"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zcut.get_cutouts(FAR, size=5)
        hapcut.get_cutouts(FAR)
    assert opened == []
    zcut.get_cutouts(COORD, size=5)
    assert sorted(opened) == sorted(zcut_server.files["deep_a"] + zcut_server.files["deep_b"])
    opened.clear()
    hapcut.get_cutouts(HAP_COORD, size=5)
    assert sorted(opened) == sorted(zcut_server.files["hap"])
    assert service.refreshes == refreshes  # no request rebuilt the index

    opened.clear()
    service.refresh()
    assert opened == []  # nothing changed: nothing re-read (not even the files that failed)
    changed = zcut_server.files["deep_b"][0]
    os.utime(changed, ns=(os.stat(changed).st_atime_ns, os.stat(changed).st_mtime_ns + 1_000_000_000))
    service.refresh()
    assert opened == [changed]


def test_images_are_confined_to_their_own_survey(zcut_server):
    """A planner refuses an image outside its survey's locations, whatever the index says."""
    from app.planning import surveys as plan
    from core.cutout_size import CutoutSize
    from core.errors import ForbiddenError

    service = zcut_server.app.state.services.surveys
    ctx = zcut_server.app.state.services.context()
    sel = plan.select(service.current, DEMO_RA, DEMO_DEC, CutoutSize(5, 5), surveys=["deep_a"], roots=service.roots)
    stray = plan.SurveyImage("deep_a", zcut_server.files["deep_b"][0], (1,), "deep_a/x.fits")
    sel.images = [stray]
    with pytest.raises(ForbiddenError) as info:
        plan.plan_zcut_fits(ctx, sel)
    assert info.value.field == "survey" and "/" not in info.value.message.replace("deep_a/x.fits", "")


def test_mast_names():
    from app.planning.surveys import hap_cutout_name, size_label
    from core.cutout_size import CutoutSize

    assert size_label(CutoutSize(100, 100)) == "100.0pix-x-100.0pix"  # as in MAST's own zips
    assert size_label(CutoutSize.from_numbers(0.001, 0.002, "d")) == "0.001deg-x-0.002deg"
    # drizzlepac's documented examples
    assert hap_cutout_name("hst_skycell-p0081x14y15_wfc3_ir_f128n_coarse-all-ibp505mf_drz.fits", 84.9207,
                           -69.8516) == "hst_cutout_skycell-p0081x14y15-ra84d9207-decs69d8516_ir_f128n_coarse-ibp505mf.fits"
    assert hap_cutout_name("hst_skycell-p1253x05y09_acs_wfc_f658n_all_drc.fits", 84.9207,
                           -69.8516) == "hst_cutout_skycell-p1253x05y09-ra84d9207-decs69d8516_wfc_f658n.fits"
    assert hap_cutout_name("hlsp_candels_hst_acs_gn-tot-30mas_f606w_v1.0_drz.fits", 1.0, 2.0) is None
