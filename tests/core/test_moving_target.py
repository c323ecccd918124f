"""Moving targets: footprints along a path, and a TPF centred on a star injected moving across frames.

TPFs come from astrocut 1.4.0's CubeFactory + CutoutFactory on small synthetic FFIs made here.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table
from astropy.time import Time
from astropy.wcs import WCS

from core.errors import InvalidInputError, NoDataError
from core.moving_target import center_on_path, path_to_footprints

astrocut = pytest.importorskip("astrocut")

SIDE = 48
FRAMES = 8
T0 = 2000.0  # TJD of the first frame start
DT = 0.02  # days per frame
SIZE = (5, 7)  # [nx, ny]


def ffi_wcs() -> WCS:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
    w.wcs.crval = [150.0, 2.0]
    w.wcs.crpix = [SIDE / 2, SIDE / 2]
    w.wcs.cd = [[-0.0058, 0.0], [0.0, 0.0058]]
    w.pixel_shape = (SIDE, SIDE)
    return w


def star_xy(frame: float) -> tuple[float, float]:
    """0-based pixel position of the moving star at (fractional) frame index (mid-frame = i + 0.5)."""
    return 14.3 + 2.1 * frame, 16.8 + 1.3 * frame


def _header(w: WCS, i: int, extname: str) -> fits.Header:
    h = w.to_header(relax=True)
    h["A_ORDER"], h["B_ORDER"] = 2, 2
    h["A_2_0"], h["B_0_2"] = 0.0, 0.0
    h["AP_ORDER"], h["BP_ORDER"] = 2, 2
    h.update({"EXTNAME": extname, "CAMERA": 1, "CCD": 1, "TSTART": T0 + i * DT, "TSTOP": T0 + (i + 1) * DT,
              "DATE-OBS": "2021-01-01T00:00:00", "DATE-END": "2021-01-01T00:30:00", "BARYCORR": 0.001,
              "DQUALITY": 0, "FFIINDEX": i})
    return h


@pytest.fixture(scope="module")
def tpfs(tmp_path_factory):
    """Two overlapping TPFs cut from a cube of synthetic FFIs with one moving star."""
    d = tmp_path_factory.mktemp("mt")
    w = ffi_wcs()
    yy, xx = np.mgrid[0:SIDE, 0:SIDE]
    files = []
    for i in range(FRAMES):
        x, y = star_xy(i + 0.5)
        flux = 10.0 + 1000.0 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 0.7**2))
        primary = fits.PrimaryHDU()
        primary.header.update({"TSTART": T0 + i * DT, "TSTOP": T0 + (i + 1) * DT, "CAMERA": 1, "CCD": 1,
                               "DATE-OBS": "2021-01-01T00:00:00", "DATE-END": "2021-01-01T00:30:00",
                               "FFIINDEX": i, "SECTOR": 30})
        hdul = fits.HDUList([primary, fits.ImageHDU(flux.astype("f4"), _header(w, i, "CAMERA.CCD 1.1 cal")),
                             fits.ImageHDU(np.ones((SIDE, SIDE), "f4"), _header(w, i, "CAMERA.CCD 1.1 uncert"))])
        path = d / f"ffi_{i:02d}.fits"
        hdul.writeto(path)
        files.append(str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cube = astrocut.CubeFactory().make_cube(files, str(d / "cube.fits"), verbose=False)
        centre1 = w.pixel_to_world(18, 20)
        centre2 = w.pixel_to_world(26, 25)
        tpf1 = astrocut.CutoutFactory().cube_cut(cube, centre1, 22, output_path=str(d))
        tpf2 = astrocut.CutoutFactory().cube_cut(cube, centre2, 22, output_path=str(d))
    return {"dir": d, "wcs": w, "tpfs": [tpf1, tpf2]}


def star_path(n=12) -> Table:
    """The star's sky path, sampled more sparsely than the frames and beyond them."""
    w = ffi_wcs()
    frames = np.linspace(-0.5, FRAMES + 0.5, n)
    xs, ys = star_xy(frames)
    jd = T0 + frames * DT + 2457000.0
    return Table({"time": Time(jd, format="jd"), "position": w.pixel_to_world(xs, ys)})


def test_centred_tpf_keeps_target_at_centre(tpfs, tmp_path):
    out = center_on_path(star_path(), SIZE, tpfs["tpfs"], target="Comet X/1", output_path=tmp_path,
                         verbose=False)
    with fits.open(out) as hdul:
        table = hdul[1].data
        assert hdul[0].header["OBJECT"] == "Comet X/1"
        assert len(table) == FRAMES
        assert np.all(np.diff(table["TIME"]) > 0)
        for col in ("TGT_X", "TGT_Y", "TGT_RA", "TGT_DEC"):
            assert col in table.columns.names
        assert table["FLUX"].shape == (FRAMES, SIZE[1], SIZE[0])  # (ny, nx) = (7, 5)
        for row in table:
            # the target within one pixel of the window centre
            assert abs(row["TGT_X"] - SIZE[0] / 2) <= 0.5 + 1e-9
            assert abs(row["TGT_Y"] - SIZE[1] / 2) <= 0.5 + 1e-9
            # the injected star is the brightest pixel, where TGT_X/TGT_Y say
            iy, ix = np.unravel_index(np.nanargmax(row["FLUX"]), row["FLUX"].shape)
            assert abs(ix - row["TGT_X"]) <= 0.5 + 1e-6 and abs(iy - row["TGT_Y"]) <= 0.5 + 1e-6
            assert abs(ix - (SIZE[0] - 1) / 2) <= 1 and abs(iy - (SIZE[1] - 1) / 2) <= 1
        # TGT_RA/DEC is the star's true position at each cadence
        frames = (table["TIME"] - T0) / DT
        truth = ffi_wcs().pixel_to_world(*star_xy(frames))
        sep = SkyCoord(table["TGT_RA"], table["TGT_DEC"], unit="deg").separation(truth).arcsec
        assert sep.max() < 0.05 * 0.0058 * 3600
    name = out.rsplit("/", 1)[-1]
    assert name.startswith("Comet_X-1_") and name.endswith("_5-x-7_astrocut.fits")


def test_matches_astrocut_center_on_path(tpfs, tmp_path):
    ours = center_on_path(star_path(), SIZE, tpfs["tpfs"][:1], output_path=tmp_path / "o", verbose=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (tmp_path / "t").mkdir()
        theirs = astrocut.center_on_path(star_path(), SIZE, tpfs["tpfs"][:1], output_path=str(tmp_path / "t"),
                                         verbose=False)
    # astrocut keeps only cadences whose window lies wholly inside the TPF; ours also keeps those
    # reaching past its edge (padded): the same name but for the later end time, every cadence of
    # astrocut's among ours, and on those the same values
    a_name, b_name = ours.rsplit("/", 1)[-1], theirs.rsplit("/", 1)[-1]
    assert a_name.split("-")[0] == b_name.split("-")[0] and a_name.split("_")[-2:] == b_name.split("_")[-2:]
    with fits.open(ours) as a, fits.open(theirs) as b:
        assert a[1].columns.names == b[1].columns.names
        common = np.isin(a[1].data["TIME"], b[1].data["TIME"])
        assert common.sum() == len(b[1].data) and len(a[1].data) >= len(b[1].data)
        for col in ("TIME", "FLUX", "FLUX_ERR", "TGT_X", "TGT_Y", "TGT_RA", "TGT_DEC"):
            np.testing.assert_allclose(a[1].data[col][common], b[1].data[col], rtol=1e-9, atol=1e-9)


def test_aperture_marks_path_on_full_ffi(tpfs, tmp_path):
    w = tpfs["wcs"]
    out = center_on_path(star_path(), SIZE, tpfs["tpfs"], img_wcs=w, output_path=tmp_path, verbose=False)
    with fits.open(out) as hdul:
        ap = hdul["APERTURE"].data
        assert ap.shape == (SIDE, SIDE)
        for row in hdul[1].data:
            x, y = w.world_to_pixel(SkyCoord(row["TGT_RA"], row["TGT_DEC"], unit="deg"))
            assert ap[round(float(y)), round(float(x))] == 1  # rows are y, columns x
        assert 0 < ap.sum() < SIDE * SIDE / 4


def test_path_to_footprints_cover_the_path():
    w = ffi_wcs()
    frames = np.linspace(0, FRAMES, 30)
    path = w.pixel_to_world(*star_xy(frames))
    fps = path_to_footprints(path, [6, 4], w, max_pixels=120)
    assert len(fps) > 1
    covered = np.zeros(len(frames), bool)
    for fp in fps:
        ny, nx = fp["size"]
        assert ny * nx <= 120
        cx, cy = w.world_to_pixel(fp["coordinates"])
        x0, y0 = cx - nx / 2, cy - ny / 2
        xs, ys = star_xy(frames)
        covered |= (xs >= x0 - 1e-6) & (xs <= x0 + nx + 1e-6) & (ys >= y0 - 1e-6) & (ys <= y0 + ny + 1e-6)
        # what astrocut returns, so Tesscut.download_cutouts(**footprint, sector=...) takes it as is
        assert set(fp) == {"coordinates", "size"} and all(type(v) is int for v in fp["size"])
    assert covered.all()
    single = path_to_footprints(path, [6, 4], w, max_pixels=10**6)
    assert len(single) == 1


def test_footprints_are_what_download_cutouts_takes(spoc_cube):
    """Each footprint is keyword arguments astroquery's ``Tesscut.download_cutouts`` takes (a
    footprint is passed to it as is), with whole-pixel sizes."""
    import inspect

    from astroquery.mast import Tesscut

    from core.cubes.cache import open_cube

    cube = open_cube(spoc_cube)
    wcs = cube.wcs.deepcopy()
    wcs.pixel_shape = (cube.nx, cube.ny)
    path = wcs.pixel_to_world([20.0, 30.0, 40.0], [30.0, 31.0, 32.0])
    footprints = path_to_footprints(path, [5, 5], wcs)
    accepted = inspect.signature(Tesscut.download_cutouts).parameters
    for fp in footprints:
        assert set(fp) == {"coordinates", "size"} and set(fp) <= set(accepted)
        assert all(type(v) is int for v in fp["size"])
        inspect.signature(Tesscut.download_cutouts).bind(**fp, sector=38)  # raises TypeError if not


def test_center_on_path_verbose_prints_progress_and_timings(spoc_cube, tmp_path, capsys):
    from core import CutoutFactory
    from core.cubes.cache import open_cube
    from core.synthetic.ffis import DEMO_DEC, DEMO_RA

    cube = open_cube(spoc_cube)
    path = Table({"time": Time(np.asarray(cube.time[[0, -1]], dtype=float) + 2457000, format="jd"),
                  "position": cube.wcs.pixel_to_world([30.0, 33.0], [30.0, 30.0])})
    tpf = CutoutFactory().cube_cut(spoc_cube, f"{DEMO_RA} {DEMO_DEC}", 12, output_path=tmp_path)
    capsys.readouterr()
    center_on_path(path, 5, [tpf], output_path=tmp_path, verbose=True)
    out = capsys.readouterr().out
    assert "Centred" in out and "Target pixel file" in out and "Total time" in out


def test_bad_inputs(tpfs, tmp_path):
    w = ffi_wcs()
    far = SkyCoord([10, 11], [-40, -41], unit="deg")
    with pytest.raises(NoDataError):
        path_to_footprints(far, 5, w)
    with pytest.raises(InvalidInputError) as err:
        path_to_footprints(far, 0, w)
    assert err.value.field == "size"
    with pytest.raises(InvalidInputError) as err:
        center_on_path(Table({"a": [1, 2]}), 5, tpfs["tpfs"], output_path=tmp_path, verbose=False)
    assert err.value.field == "path"
    far_path = Table({"time": Time(T0 + 2457000 + np.arange(4) * DT, format="jd"),
                      "position": SkyCoord([10, 10.1, 10.2, 10.3], [-40] * 4, unit="deg")})
    with pytest.raises(NoDataError):
        center_on_path(far_path, 5, tpfs["tpfs"], output_path=tmp_path, verbose=False)
