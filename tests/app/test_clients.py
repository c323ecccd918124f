"""Real clients against the live server: astroquery's ``Tesscut`` and lightkurve, unchanged.

astroquery is pointed at the server only through its base URL (``ServiceAPI.SERVICE_URL`` and
``Tesscut.__init__()``, see /work/shared/notes/tesscut-clients.md); lightkurve makes a fresh
``TesscutClass()`` per call, so the same setting reaches it. lightkurve's ``search_tesscut`` asks
MAST's other services, so the test builds the ``SearchResult`` row ``search_tesscut`` would build
and lets ``SearchResult.download()`` do the rest (``get_sectors``, ``download_cutouts``,
``lightkurve.read``); only its name resolver (``lightkurve.search._resolve_object``, a MAST call)
is replaced by a local coordinate parser.
"""

from __future__ import annotations

import io
import json
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS

pytest.importorskip("astroquery")

from core.synthetic.ffis import DEMO_DEC, DEMO_RA

COORD = SkyCoord(DEMO_RA, DEMO_DEC, unit="deg")
FAR = SkyCoord(10.0, 20.0, unit="deg")  # on no hosted cube


@pytest.fixture(scope="module")
def tesscut(live_server):
    """astroquery's module-level ``Tesscut`` pointed at the live server (restored afterwards)."""
    from astroquery.mast import Tesscut
    from astroquery.mast.services import ServiceAPI

    saved = ServiceAPI.SERVICE_URL
    ServiceAPI.SERVICE_URL = live_server.url
    Tesscut.__init__()
    try:
        yield Tesscut
    finally:
        ServiceAPI.SERVICE_URL = saved
        Tesscut.__init__()


def _quiet(fn, *args, **kwargs):
    """Call ``fn`` with astroquery's deprecation warning about ``product`` silenced."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*product.*")
        return fn(*args, **kwargs)


def _check_tpf(hdul: fits.HDUList, synth, nx: int, ny: int) -> None:
    """FLUX shape, target at the centre, and times within the synthetic sector."""
    flux = np.asarray(hdul[1].data["FLUX"])
    assert flux.shape == (len(synth.tstart), ny, nx)
    median = np.nanmedian(flux, axis=0)
    iy, ix = np.unravel_index(np.nanargmax(median), median.shape)
    # The star is where the TPF's own WCS puts the target, within a pixel of the centre (astrocut's
    # rounding, which the engine follows: a target exactly on a pixel centre may sit one pixel off
    # the middle of an odd-sized cutout; astrocut 1.4.0 cuts the very same pixels).
    x, y = WCS(hdul[2].header).world_to_pixel(COORD)
    assert (iy, ix) == (int(np.rint(y)), int(np.rint(x)))
    assert abs(ix - (nx - 1) / 2) <= 1 and abs(iy - (ny - 1) / 2) <= 1
    assert int(hdul[0].header["SECTOR"]) == synth.sector
    time = np.asarray(hdul[1].data["TIME"])
    assert np.all(time >= synth.tstart[0] - 1e-6) and np.all(time <= synth.tstop[-1] + 1e-6)
    np.testing.assert_allclose(time, 0.5 * (synth.tstart + synth.tstop), atol=1e-5)
    assert hdul[0].header["TSTART"] == pytest.approx(synth.tstart[0], abs=1e-5)
    assert hdul[0].header["TSTOP"] == pytest.approx(synth.tstop[-1], abs=1e-5)


# ------------------------------------------------------------------------------------------
# astroquery
# ------------------------------------------------------------------------------------------


def test_get_sectors_lists_both_hosted_sectors(tesscut):
    table = tesscut.get_sectors(coordinates=COORD)
    assert sorted(table["sector"]) == [11, 38]
    assert set(table["sectorName"]) == {"tess-s0011-2-2", "tess-s0038-2-2"}
    assert set(table["camera"]) == {2} and set(table["ccd"]) == {2}


def test_get_sectors_nowhere_warns_and_returns_empty(tesscut):
    from astroquery.exceptions import NoResultsWarning

    with pytest.warns(NoResultsWarning):
        table = tesscut.get_sectors(coordinates=FAR)
    assert len(table) == 0


def test_download_cutouts_one_sector(tesscut, tmp_path, spoc_sector):
    manifest = tesscut.download_cutouts(coordinates=COORD, size=5, sector=38, path=str(tmp_path))
    assert len(manifest) == 1
    path = Path(manifest["Local Path"][0])
    assert path.parent == tmp_path and path.is_file()
    assert path.name.startswith("tess-s0038-2-2_217.428938_-62.679492_5x5_astrocut")
    assert not list(tmp_path.glob("*.zip"))  # the client unpacked and removed the zip
    with fits.open(path) as hdul:
        _check_tpf(hdul, spoc_sector, 5, 5)


def test_get_cutouts_two_sectors_rectangular(tesscut, spoc_sector, spoc_sector_b):
    cutouts = tesscut.get_cutouts(coordinates=COORD, size=[5, 7], sector=[38, 11])  # (ny, nx)
    by_sector = {int(h[0].header["SECTOR"]): h for h in cutouts}
    assert sorted(by_sector) == [11, 38]
    _check_tpf(by_sector[38], spoc_sector, nx=7, ny=5)
    _check_tpf(by_sector[11], spoc_sector_b, nx=7, ny=5)
    assert by_sector[11].filename.startswith("tess-s0011-2-2_217.428938_-62.679492_7x5_astrocut")


def test_product_spoc_is_accepted(tesscut, tmp_path, spoc_sector):
    manifest = _quiet(tesscut.download_cutouts, coordinates=COORD, size=5, sector=38, product="SPOC",
                      path=str(tmp_path))
    assert len(manifest) == 1
    cutouts = _quiet(tesscut.get_cutouts, coordinates=COORD, size=5, sector=38, product="spoc")
    assert len(cutouts) == 1
    _check_tpf(cutouts[0], spoc_sector, 5, 5)


def test_tica_through_the_clients_transport(tesscut, tica_sector):
    """astroquery 0.4.11 refuses product='TICA' itself; the server hosts TICA 38 and serves it
    through the client's own request path (what astroquery 0.4.10 sent)."""
    from astroquery.exceptions import InvalidQueryError

    with pytest.raises(InvalidQueryError):
        _quiet(tesscut.get_cutouts, coordinates=COORD, size=5, sector=38, product="TICA")
    params = {"ra": DEMO_RA, "dec": DEMO_DEC, "x": 5, "y": 5, "units": "px", "sector": 38, "product": "TICA"}
    response = tesscut._service_api_connection.service_request_async("astrocut", params)
    response.raise_for_status()
    with zipfile.ZipFile(io.BytesIO(response.content)) as zf:
        names = zf.namelist()
        assert len(names) == 1 and names[0].startswith("tica-s0038-2-2_")
        with fits.open(io.BytesIO(zf.read(names[0]))) as hdul:
            flux = np.asarray(hdul[1].data["FLUX"])
            assert flux.shape == (len(tica_sector.tstart), 5, 5)
            median = np.nanmedian(flux, axis=0)
            x, y = WCS(hdul[2].header).world_to_pixel(COORD)
            assert np.unravel_index(np.nanargmax(median), median.shape) == (int(np.rint(y)), int(np.rint(x)))


def test_no_data_is_an_empty_result_with_a_warning(tesscut, tmp_path):
    from astroquery.exceptions import NoResultsWarning

    with pytest.warns(NoResultsWarning, match="Hosted SPOC sectors: 11, 38"):
        assert tesscut.get_cutouts(coordinates=FAR, size=5) == []
    with pytest.warns(NoResultsWarning, match="not hosted"):
        manifest = tesscut.download_cutouts(coordinates=COORD, size=5, sector=5, path=str(tmp_path))
    assert len(manifest) == 0


def test_moving_target_without_resolver_is_a_clear_http_error(tesscut, tmp_path):
    """The default server has no ephemeris resolver: a permanent 4xx (422, not a 503 that invites
    retries) whose message, surfaced by the client, says to give the path as ephemeris."""
    import requests

    with pytest.raises(requests.HTTPError) as info:
        tesscut.get_sectors(objectname="Ceres", moving_target=True, mt_type="small_body")
    assert info.value.response.status_code == 422 and "Retry-After" not in info.value.response.headers
    body = info.value.response.json()
    assert "resolver" in body["msg"] and "ephemeris" in body["msg"] and body["error"]["field"] == "obj_id"
    with pytest.raises(requests.HTTPError) as info:
        tesscut.get_cutouts(objectname="Ceres", moving_target=True, size=5, sector=38)
    assert info.value.response.status_code == 422
    with pytest.raises(requests.HTTPError) as info:
        tesscut.download_cutouts(objectname="Ceres", moving_target=True, size=5, sector=38, path=str(tmp_path))
    assert "422" in str(info.value)


def test_moving_target_with_explicit_ephemeris_through_the_client(tesscut, spoc_sector):
    """The client's moving-target service path, with the path given as ``ephemeris``."""
    times = np.linspace(spoc_sector.tstart[0], spoc_sector.tstop[-1], 6)
    drift = np.linspace(-3, 3, 6) * 21 / 3600 / np.cos(np.radians(DEMO_DEC))  # about 6 pixels in RA
    eph = {"time": times.tolist(), "ra": (DEMO_RA + drift).tolist(), "dec": [DEMO_DEC] * 6}
    response = tesscut._service_api_connection.service_request_async(
        "mt_astrocut", {"ephemeris": json.dumps(eph), "x": 5, "y": 5, "units": "px", "sector": 38})
    response.raise_for_status()
    assert response.headers["content-type"].startswith("application/zip"), response.text[:300]
    with zipfile.ZipFile(io.BytesIO(response.content)) as zf:
        names = zf.namelist()
        assert len(names) == 1 and names[0].startswith("tess-s0038-2-2_")


# ------------------------------------------------------------------------------------------
# lightkurve
# ------------------------------------------------------------------------------------------


@pytest.fixture
def lightkurve_offline(tesscut, monkeypatch, tmp_path):
    """lightkurve with its name resolver answered locally (it asks MAST to resolve 'ra, dec')."""
    lk = pytest.importorskip("lightkurve")
    import lightkurve.search

    def resolve(target):
        if isinstance(target, SkyCoord):
            return target
        ra, dec = (float(v) for v in str(target).replace(",", " ").split())
        return SkyCoord(ra, dec, unit="deg")

    monkeypatch.setattr(lightkurve.search, "_resolve_object", resolve)
    monkeypatch.setattr(lk.config, "get_cache_dir", lambda: str(tmp_path))
    return lk


def _tesscut_search_result(lk, sector: int, t_min_mjd: float):
    """The one-row ``SearchResult`` that ``lightkurve.search_tesscut(target, sector)`` builds."""
    from astropy.table import Table

    target = f"{DEMO_RA}, {DEMO_DEC}"
    row = {
        "description": f"TESS FFI Cutout (sector {sector})", "mission": f"TESS Sector {sector:02d}",
        "target_name": target, "targetid": target, "t_min": t_min_mjd, "exptime": 200.0,
        "productFilename": "TESScut", "provenance_name": "TESScut", "author": "TESScut",
        "distance": 0.0, "sequence_number": sector, "project": "TESS", "obs_collection": "TESS",
    }
    return lk.SearchResult(Table([row]))


def test_lightkurve_searchresult_download(lightkurve_offline, spoc_sector, tmp_path):
    lk = lightkurve_offline
    result = _tesscut_search_result(lk, 38, 59300.0)
    tpf = result.download(cutout_size=7, download_dir=str(tmp_path), quality_bitmask="none")
    assert isinstance(tpf, lk.TessTargetPixelFile)
    assert tpf.sector == 38 and tpf.camera == 2 and tpf.ccd == 2
    assert tpf.flux.shape == (len(spoc_sector.tstart), 7, 7)
    cached = list((tmp_path / "tesscut").glob("tess-s0038-2-2_217.428938_-62.679492_7x7_astrocut.fits"))
    assert len(cached) == 1  # where lightkurve's cache looks for it
    # a second download is served from lightkurve's cache (its glob pattern matches our name)
    again = result.download(cutout_size=7, download_dir=str(tmp_path), quality_bitmask="none")
    assert again.path == tpf.path

    # The WCS puts the target on the star, within a pixel of the centre (see _check_tpf).
    x, y = tpf.wcs.world_to_pixel(COORD)
    median = np.nanmedian(np.asarray(tpf.flux.value), axis=0)
    assert np.unravel_index(np.nanargmax(median), median.shape) == (int(np.rint(y)), int(np.rint(x)))
    assert abs(float(x) - 3) <= 1 and abs(float(y) - 3) <= 1

    # The light curve shows the injected transit at the right time, with about the right depth.
    aperture = np.zeros((7, 7), dtype=bool)
    aperture[2:5, 2:5] = True
    lc = tpf.to_lightcurve(aperture_mask=aperture)
    flux = np.asarray(lc.flux.value, dtype=float)
    mid = 0.5 * (spoc_sector.tstart + spoc_sector.tstop)
    np.testing.assert_allclose(lc.time.value, mid, atol=1e-5)
    inside = spoc_sector.in_transit
    assert inside.any() and (~inside).any()
    depth = 1 - flux[inside].mean() / flux[~inside].mean()
    assert depth == pytest.approx(spoc_sector.transit_depth, rel=0.35)
    assert flux[inside].max() < flux[~inside].min()


def test_lightkurve_default_quality_mask(lightkurve_offline, spoc_sector, tmp_path):
    lk = lightkurve_offline
    tpf = _tesscut_search_result(lk, 38, 59300.0).download(cutout_size=5, download_dir=str(tmp_path))
    flags = np.zeros(len(spoc_sector.tstart), dtype=int)
    with fits.open(tpf.path) as hdul:
        flags = np.asarray(hdul[1].data["QUALITY"])
    keep = lk.utils.TessQualityFlags.create_quality_mask(flags, bitmask="default")
    assert flags[spoc_sector.quality_frames].all()  # the flagged frames reach the TPF
    assert len(tpf.time) == int(keep.sum())


def test_lightkurve_reads_astroquery_downloads(tesscut, spoc_sector_b, tmp_path):
    lk = pytest.importorskip("lightkurve")
    manifest = tesscut.download_cutouts(coordinates=COORD, size=[5, 7], sector=11, path=str(tmp_path))
    tpf = lk.read(manifest["Local Path"][0], quality_bitmask="none")
    assert isinstance(tpf, lk.TessTargetPixelFile)
    assert tpf.sector == 11 and tpf.shape == (len(spoc_sector_b.tstart), 5, 7)
    assert tpf.ra == pytest.approx(DEMO_RA) and tpf.dec == pytest.approx(DEMO_DEC)
    x, y = tpf.wcs.world_to_pixel(COORD)
    assert abs(float(x) - 3) <= 1 and abs(float(y) - 2) <= 1
    median = np.nanmedian(np.asarray(tpf.flux.value), axis=0)
    assert np.unravel_index(np.nanargmax(median), median.shape) == (int(np.rint(y)), int(np.rint(x)))
