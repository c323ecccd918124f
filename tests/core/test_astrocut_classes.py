"""astrocut 1.4.0's class API in core (TessCubeCutout, FITSCutout, the footprint API): pixel parity
with astrocut on the same cubes and images, the same file and zip member names, complete outputs,
and core.errors types naming the parameter.

Intended differences from astrocut are listed in each module's docstring; the ones visible here
(WCS_MSEP/WCS_SIG, CREATOR/PROCVER, checksums, slices_original, skipped off-position cubes) are
checked as such rather than ignored.
"""

from __future__ import annotations

import io
import os
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS

from core.astrocut_api import tess_cube_cutout as tcc_mod
from core.astrocut_api.fits_cutout import FITSCutout
from core.astrocut_api.tess_cube_cutout import TessCubeCutout, cube_stem
from core.astrocut_api.tess_footprint_cutout import (
    TessFootprintCutout,
    cube_cut_from_footprint,
    footprint_radius_deg,
    get_tess_sectors,
)
from core.cubes.cache import open_cube
from core.errors import (
    CutoutError,
    InputWarning,
    InvalidInputError,
    NoDataError,
    NotFoundError,
    UnavailableError,
)
from core.images.cutouts import DataWarning
from core.synthetic.ffis import DEMO_DEC, DEMO_RA
from tests.catalogs import RecordingCatalog

astrocut = pytest.importorskip("astrocut")

CENTRE = f"{DEMO_RA} {DEMO_DEC}"
TPF_COLUMNS = ("FLUX", "FLUX_ERR", "QUALITY", "TIME")


def _quiet(func, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return func(*args, **kwargs)


def _coord_at(cube_path, x, y) -> str:
    ra, dec = open_cube(cube_path).wcs.all_pix2world(x, y, 0)
    return f"{float(ra)} {float(dec)}"


@pytest.fixture(scope="module")
def cubes(service_data, astrocut_spoc_cube):
    """Two SPOC cubes holding CENTRE: sector 38 (built by astrocut) and sector 11 (ours)."""
    return [astrocut_spoc_cube, str(service_data[0]["spoc11"])]


@pytest.fixture(scope="module")
def off_cube(tmp_path_factory) -> str:
    """A sector-38 cube 1.5 deg away from CENTRE (its pixels do not hold it)."""
    from core.building.factory import CubeFactory
    from core.synthetic.ffis import write_sector

    sector = write_sector(tmp_path_factory.mktemp("off"), sector=38, camera=2, ccd=2, frames=3, size=(32, 32),
                          center=(DEMO_RA + 1.5, DEMO_DEC + 0.5), seed=2)
    out = tmp_path_factory.mktemp("off_cube") / "tess-s0038-2-2-cube.fits"
    CubeFactory().make_cube([str(f) for f in sector.ffi_files], str(out), verbose=False)
    return str(out)


def assert_tpfs_equal(ours: fits.HDUList, theirs: fits.HDUList) -> None:
    for col in TPF_COLUMNS:
        a, b = theirs[1].data[col], ours[1].data[col]
        assert a.shape == b.shape, col
        np.testing.assert_array_equal(a, b, err_msg=col)
    assert ours[2].data.dtype.kind == "i"
    np.testing.assert_array_equal(theirs[2].data, ours[2].data)  # APERTURE


def assert_instances_equal(ours, theirs) -> None:
    for name in ("data", "uncertainty", "aperture", "cutout_lims"):
        np.testing.assert_array_equal(getattr(theirs, name), getattr(ours, name), err_msg=name)
        assert getattr(ours, name).dtype == getattr(theirs, name).dtype, name
    assert ours.shape == theirs.shape


# --------------------------------------------------------------------------------------------------
# TessCubeCutout
# --------------------------------------------------------------------------------------------------

# (x, y, size) on sector 38's pixels: centred, rectangular (x first), partly off two corners, angular
CASES = [
    (31.81, 32.21, 5),
    (31.81, 32.21, [7, 4]),
    (1.2, 2.6, 10),
    (62.3, 63.1, [6, 13]),
    (20.4, 40.6, 2 * u.arcmin),
]


@pytest.mark.parametrize("x,y,size", CASES)
def test_tess_cube_cutout_pixels_equal_astrocut(cubes, x, y, size):
    coord = _coord_at(cubes[0], x, y)
    theirs = _quiet(astrocut.TessCubeCutout, cubes, coord, size)
    ours = _quiet(TessCubeCutout, cubes, coord, size)
    # intended difference: a cube whose pixels do not hold the centre is skipped (astrocut pads)
    holding = [f for f in cubes if open_cube(f).contains(SkyCoord(coord, unit="deg"))]
    assert list(ours.tpf_cutouts_by_file) == list(ours.cutouts_by_file) == holding
    assert list(theirs.tpf_cutouts_by_file) == cubes
    assert len(ours.tpf_cutouts) == len(ours.cutouts) == len(holding) > 0
    for file in holding:
        assert_tpfs_equal(ours.tpf_cutouts_by_file[file], theirs.tpf_cutouts_by_file[file])
        assert_instances_equal(ours.cutouts_by_file[file], theirs.cutouts_by_file[file])
        assert ours.cutouts_by_file[file].cube_filename == file


@pytest.mark.parametrize(
    "fill_value,rounding", [(0, "round"), (-1.5, "round"), (np.nan, "ceil"), (7.0, "floor"), (np.nan, "floor")]
)
def test_fill_value_and_rounding_match_astrocut(cubes, fill_value, rounding):
    for x, y in ((1.2, 62.6), (31.5, 32.5)):  # partly off the cube, and on a half pixel
        coord = _coord_at(cubes[0], x, y)
        kwargs = {"fill_value": fill_value, "limit_rounding_method": rounding}
        theirs = _quiet(astrocut.TessCubeCutout, cubes[:1], coord, [9, 8], **kwargs)
        ours = TessCubeCutout(cubes[:1], coord, [9, 8], **kwargs)
        np.testing.assert_array_equal(ours.cutouts[0].cutout_lims, theirs.cutouts[0].cutout_lims)
        assert_tpfs_equal(ours.tpf_cutouts[0], theirs.tpf_cutouts[0])
        assert_instances_equal(ours.cutouts[0], theirs.cutouts[0])


def test_wcs_attributes_agree_with_astrocut(cubes):
    coord = _coord_at(cubes[0], 20.4, 40.6)
    theirs = _quiet(astrocut.TessCubeCutout, cubes[:1], coord, [12, 9]).cutouts[0]
    ours = TessCubeCutout(cubes[:1], coord, [12, 9]).cutouts[0]
    gx, gy = np.meshgrid(np.arange(12), np.arange(9))
    ra, dec = ours.wcs.all_pix2world(gx, gy, 0)
    xa, ya = theirs.wcs.all_world2pix(ra, dec, 0)
    assert np.max(np.hypot(xa - gx, ya - gy)) < 0.01
    assert ours.wcs.pixel_shape == theirs.wcs.pixel_shape == (12, 9)
    # the cube's TAN-SIP WCS: the same mapping, and a copy (editing it leaves the cached cube alone)
    np.testing.assert_allclose(ours.cube_wcs.all_pix2world(gx, gy, 0), theirs.cube_wcs.all_pix2world(gx, gy, 0))
    ours.cube_wcs.wcs.crval = [0, 0]
    assert open_cube(cubes[0]).wcs.wcs.crval[0] != 0
    # intended difference: real fit residuals (astrocut writes 0), with astrocut's comments
    assert set(ours.wcs_fit) == set(theirs.wcs_fit) == {"WCS_MSEP", "WCS_SIG"}
    for key in ours.wcs_fit:
        assert ours.wcs_fit[key][0] > 0 and theirs.wcs_fit[key][0] == 0
        assert ours.wcs_fit[key][1] == theirs.wcs_fit[key][1]


def test_instance_arrays_are_copies_and_tpfs_lazy(cubes):
    ours = TessCubeCutout(cubes[:1], CENTRE, 5)
    tpf = ours.tpf_cutouts[0]
    assert "data" not in tpf[1].__dict__  # nothing parsed until asked for
    inst = ours.cutouts[0]
    inst.data[...] = -1
    assert np.all(tpf[1].data["FLUX"] != -1)


def test_off_position_cube_is_skipped_with_a_warning(cubes, off_cube):
    with pytest.warns(DataWarning, match="does not overlap"):
        ours = TessCubeCutout([off_cube, cubes[0]], CENTRE, 5)
    assert list(ours.cutouts_by_file) == [cubes[0]]
    # intended difference: astrocut does not skip this cube (its WCS inversion lands far off the
    # pixels) and fails inside numpy instead
    with pytest.raises(IndexError):
        _quiet(astrocut.TessCubeCutout, [off_cube, cubes[0]], CENTRE, 5)
    with pytest.warns(DataWarning), pytest.raises(NoDataError) as err:
        TessCubeCutout(off_cube, CENTRE, 5)
    assert err.value.field == "coordinates"


def test_write_as_tpf_names_and_contents_match_astrocut(cubes, tmp_path):
    coord = _coord_at(cubes[0], 31.81, 32.21)
    theirs = _quiet(astrocut.TessCubeCutout, cubes, coord, [7, 4])
    ours = TessCubeCutout(cubes, coord, [7, 4])
    for legacy in (False, True):
        paths_a = theirs.write_as_tpf(tmp_path / f"a{legacy}", legacy_filenames=legacy)
        paths_b = ours.write_as_tpf(tmp_path / f"b{legacy}", legacy_filenames=legacy)
        assert [os.path.basename(p) for p in paths_b] == [os.path.basename(p) for p in paths_a]
        assert all(p == (tmp_path / f"b{legacy}" / os.path.basename(p)).as_posix() for p in paths_b)
        for path_a, path_b in zip(paths_a, paths_b):
            with fits.open(path_a) as a, fits.open(path_b) as b:
                assert_tpfs_equal(b, a)
        assert sorted(os.listdir(tmp_path / f"b{legacy}")) == sorted(os.path.basename(p) for p in paths_b)
    assert os.path.basename(paths_b[0]).startswith("tess-s0038-2-2_")
    # output_file names the file of a single input only, as in astrocut
    single = TessCubeCutout(cubes[:1], coord, 5)
    assert single.write_as_tpf(tmp_path / "c", output_file="mine.fits") == [(tmp_path / "c/mine.fits").as_posix()]
    names = [os.path.basename(p) for p in ours.write_as_tpf(tmp_path / "d", output_file="mine.fits")]
    assert "mine.fits" not in names and len(names) == 2


def test_written_tpf_keeps_the_fill_value(cubes, tmp_path):
    coord = _coord_at(cubes[0], 1.2, 62.6)
    ours = TessCubeCutout(cubes[:1], coord, 9, fill_value=-3.0)
    (path,) = ours.write_as_tpf(tmp_path)
    with fits.open(path) as hdul:
        flux, aperture = hdul[1].data["FLUX"], hdul[2].data
        assert (aperture == 0).any() and np.all(flux[:, aperture == 0] == -3.0)
        assert np.all(np.isfinite(flux[:, aperture == 1]))


def test_cube_stem_strips_the_suffix_not_characters():
    assert cube_stem("s3://b/x/tess-s0038-2-2-cube.fits") == "tess-s0038-2-2"
    assert cube_stem(Path("/d/cube-ube-cube.fits")) == "cube-ube"  # astrocut: "" (rstrip('-cube'))


def _zip_members(path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        assert all(info.compress_type == zipfile.ZIP_DEFLATED for info in zf.infolist())
        return {name: zf.read(name) for name in zf.namelist()}


@pytest.mark.parametrize("legacy", [False, True])
def test_write_as_zip_matches_astrocut(cubes, tmp_path, legacy):
    coord = _coord_at(cubes[0], 20.4, 40.6)
    theirs = _quiet(astrocut.TessCubeCutout, cubes, coord, [6, 5])
    ours = TessCubeCutout(cubes, coord, [6, 5])
    path_a = theirs.write_as_zip(tmp_path / "a", legacy_filenames=legacy)
    path_b = ours.write_as_zip(tmp_path / "b", legacy_filenames=legacy)
    sky = SkyCoord(coord, unit="deg")
    assert os.path.basename(path_b) == os.path.basename(path_a) == f"astrocut_{sky.ra.deg:.7f}_{sky.dec.deg:.7f}_6-x-5.zip"
    assert path_b == (tmp_path / "b" / os.path.basename(path_a)).as_posix()
    members_a, members_b = _zip_members(path_a), _zip_members(path_b)
    assert list(members_b) == list(members_a)
    for (name, data), tpf in zip(members_b.items(), ours.tpf_cutouts):
        with fits.open(io.BytesIO(data)) as member, fits.open(io.BytesIO(members_a[name])) as theirs_member:
            assert_tpfs_equal(member, theirs_member)
            assert_tpfs_equal(member, tpf)
    assert os.listdir(tmp_path / "b") == [os.path.basename(path_b)]  # no temporary file left


def test_zip_file_names_follow_astrocut(cubes, tmp_path):
    ours = TessCubeCutout(cubes[:1], CENTRE, 5)
    theirs = _quiet(astrocut.TessCubeCutout, cubes[:1], CENTRE, 5)
    for name in ("bundle", "bundle.tar", "x.ZIP", str(tmp_path / "abs" / "bundle.zip")):
        (tmp_path / "abs").mkdir(exist_ok=True)
        got = ours.write_as_zip(tmp_path / "o", filename=name)
        want = theirs.write_as_zip(tmp_path / "o", filename=name)
        assert got == want
        assert zipfile.ZipFile(got).namelist() == [f"tess-s0038-2-2_{DEMO_RA:.7f}_{DEMO_DEC:.7f}_5-x-5_astrocut.fits"]


def test_write_as_zip_is_atomic(cubes, tmp_path, monkeypatch):
    ours = TessCubeCutout(cubes, CENTRE, 5)
    path = Path(ours.write_as_zip(tmp_path))
    before = path.read_bytes()
    served = []

    def failing(tpf):
        served.append(tpf)
        if len(served) == 2:
            raise OSError("disk full")
        return real(tpf)

    real = tcc_mod.tpf_bytes
    monkeypatch.setattr(tcc_mod, "tpf_bytes", failing)
    with pytest.raises(UnavailableError, match="disk full"):  # an output failure, named as such
        ours.write_as_zip(tmp_path)
    assert path.read_bytes() == before  # the old archive is untouched
    assert os.listdir(tmp_path) == [path.name]  # and no temporary file is left
    assert len(served) == 2  # members are made one at a time, as they are written


def test_tess_cube_cutout_errors_name_the_parameter(cubes, tmp_path):
    cases = [
        ({"cutout_size": 0}, InvalidInputError, "cutout_size"),
        ({"cutout_size": [5, -1]}, InvalidInputError, "cutout_size"),
        ({"cutout_size": 3 * u.kg}, InvalidInputError, "cutout_size"),
        ({"limit_rounding_method": "nearest"}, InvalidInputError, "limit_rounding_method"),
        ({"fill_value": "zero"}, InvalidInputError, "fill_value"),
        ({"coordinates": []}, InvalidInputError, "coordinates"),
        ({"coordinates": "not a place"}, InvalidInputError, "coordinates"),
        ({"threads": "many"}, InvalidInputError, "threads"),
        ({"product": "XYZ"}, InvalidInputError, "product"),
        ({"input_files": []}, InvalidInputError, "input_files"),
        ({"input_files": [str(tmp_path / "missing-cube.fits")]}, NotFoundError, "input_files"),
        ({"coordinates": "10.0 10.0"}, NoDataError, "coordinates"),
    ]
    for changes, error, field in cases:
        kwargs = {"input_files": cubes, "coordinates": CENTRE, "cutout_size": 5, **changes}
        with pytest.raises(error) as err, warnings.catch_warnings():
            warnings.simplefilter("ignore", DataWarning)
            TessCubeCutout(**kwargs)
        assert isinstance(err.value, CutoutError) and err.value.field == field, changes


def test_sizes_of_three_elements_warn_and_use_the_first_two(cubes, images, catalog, tmp_path):
    match = "Too many dimensions in cutout size, only the first two will be used"
    with pytest.warns(InputWarning, match=match):
        ours = TessCubeCutout(cubes[:1], CENTRE, [9, 7, 3])
    two = TessCubeCutout(cubes[:1], CENTRE, [9, 7])
    np.testing.assert_array_equal(ours.cutouts[0].data, two.cutouts[0].data)
    assert ours.write_as_tpf(tmp_path / "a") == two.write_as_tpf(tmp_path / "a")
    with pytest.warns(InputWarning, match=match):
        ours = FITSCutout(images[:1], CENTRE, [9, 7, 3] * u.pix)
    (cut,) = next(iter(ours.cutouts_by_file.values()))
    assert cut.data.shape == (7, 9)
    assert ours.write_as_fits(tmp_path / "b")[0].endswith("_9.0pix-x-7.0pix_astrocut.fits")
    with pytest.warns(InputWarning, match=match):
        assert len(get_tess_sectors(CENTRE, [5, 5, 100], catalog=catalog)) == 2


def test_cube_wcs_has_the_image_size(cubes):
    theirs = _quiet(astrocut.TessCubeCutout, cubes[:1], CENTRE, 5).cutouts[0]
    ours = TessCubeCutout(cubes[:1], CENTRE, 5).cutouts[0]
    assert ours.cube_wcs.pixel_shape == theirs.cube_wcs.pixel_shape == (64, 64)


def test_coordinates_as_astrocut_reads_them(cubes):
    coord = SkyCoord(DEMO_RA, DEMO_DEC, unit="deg")
    ref = TessCubeCutout(cubes[:1], CENTRE, 5).cutouts[0].cutout_lims
    far = SkyCoord(10, 10, unit="deg")
    for given in (coord, [CENTRE, "10 10"], (coord, far), SkyCoord([DEMO_RA, 10], [DEMO_DEC, 10], unit="deg")):
        np.testing.assert_array_equal(TessCubeCutout(cubes[:1], given, 5).cutouts[0].cutout_lims, ref)


def test_parse_table_wcs_matches_astrocut(cubes):
    with fits.open(cubes[0]) as hdul:
        table = hdul[2].data
        theirs, their_header = _quiet(astrocut.TessCubeCutout.parse_table_wcs, table, return_header=True)
        ours, our_header = TessCubeCutout.parse_table_wcs(table, return_header=True)
        assert set(our_header) == set(their_header)
        gx, gy = np.meshgrid(np.arange(0, 64, 7), np.arange(0, 64, 9))
        np.testing.assert_allclose(ours.all_pix2world(gx, gy, 0), theirs.all_pix2world(gx, gy, 0))
        with pytest.raises(CutoutError) as err:
            TessCubeCutout.parse_table_wcs(table, wcs_axes_value="NOPE")
        assert err.value.field == "table_data"


def test_tica_cube_through_product(service_data):
    tica = str(service_data[0]["tica38"])
    from core.tpf.cut import CutoutFactory

    ours = TessCubeCutout(tica, CENTRE, 5, product="TICA")
    ref = CutoutFactory().cube_cut(tica, CENTRE, 5, product="TICA", memory_only=True)
    np.testing.assert_array_equal(ours.cutouts[0].data, ref[1].data["FLUX"])
    assert ours.tpf_cutouts[0][0].header["FFI_TYPE"] == "TICA"


# --------------------------------------------------------------------------------------------------
# FITSCutout
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def images(service_data) -> list[str]:
    """Three SPOC FFIs (64x64, flux and error extensions, TAN-SIP WCS) centred on CENTRE."""
    _, root, names = service_data
    return [str(root / name) for name in names]


def _cards(header):
    return [tuple(c) for c in header.cards if c.keyword not in ("CHECKSUM", "DATASUM", "PROCVER")]


def assert_fits_equal(ours: list[fits.HDUList], theirs: list[fits.HDUList]) -> None:
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert len(a) == len(b)
        assert _cards(a[0].header) == _cards(b[0].header)  # PROCVER: this package's (intended)
        for ha, hb in zip(a[1:], b[1:]):
            np.testing.assert_array_equal(ha.data, hb.data)
            assert _cards(ha.header) == _cards(hb.header)


# (where, size, kwargs): "corner" is partly off the images (padded)
FITS_CASES = [
    ("centre", 5, {}),
    ("centre", [7, 4], {}),
    ("centre", 3 * u.arcmin, {}),
    ("centre", 8, {"extension": "all"}),
    ("centre", 8, {"extension": [2]}),
    ("centre", 8, {"single_outfile": False}),
    ("corner", 5, {}),
    ("corner", [30, 12], {}),
    ("corner", 3 * u.arcmin, {"extension": "all"}),
    ("corner", 8, {"limit_rounding_method": "ceil"}),
    ("corner", 9, {"limit_rounding_method": "floor", "fill_value": 0.0}),
    ("corner", 8, {"single_outfile": False, "fill_value": -1}),
]


@pytest.mark.parametrize("where,size,kwargs", FITS_CASES)
def test_fits_cutout_matches_astrocut(images, where, size, kwargs):
    coord = CENTRE if where == "centre" else _coord_at_image(images[0], 2.2, 60.7)
    theirs = _quiet(astrocut.FITSCutout, images, coord, size, **kwargs)
    ours = FITSCutout(images, coord, size, **kwargs)
    assert_fits_equal(ours.fits_cutouts, theirs.fits_cutouts)
    assert list(ours.cutouts_by_file) == list(theirs.cutouts_by_file)
    assert list(ours.hdu_cutouts_by_file) == list(theirs.hdu_cutouts_by_file)
    for file, cuts in theirs.cutouts_by_file.items():
        assert len(ours.cutouts_by_file[file]) == len(cuts)
        for a, b in zip(ours.cutouts_by_file[file], cuts):
            np.testing.assert_array_equal(a.data, b.data)
            assert a.shape == b.shape and a.shape_input == b.shape_input
            assert (a.xmin_original, a.xmax_original, a.ymin_original, a.ymax_original) == (
                b.xmin_original, b.xmax_original, b.ymin_original, b.ymax_original)
            # intended difference: exclusive ends (astrocut's slices are one row and column longer)
            assert [(s.start, s.stop + 1) for s in a.slices_original] == [
                (s.start, s.stop) for s in b.slices_original]
            gx, gy = np.meshgrid(np.arange(a.shape[1]), np.arange(a.shape[0]))
            np.testing.assert_allclose(a.wcs.all_pix2world(gx, gy, 0), b.wcs.all_pix2world(gx, gy, 0), rtol=1e-12)


def _coord_at_image(path, x, y) -> str:
    with fits.open(path) as hdul:
        ra, dec = WCS(hdul[1].header).all_pix2world(x, y, 0)
    return f"{float(ra)} {float(dec)}"


@pytest.mark.parametrize("single_outfile", [True, False])
def test_fits_cutout_file_and_zip_names_match_astrocut(images, tmp_path, single_outfile):
    theirs = _quiet(astrocut.FITSCutout, images, CENTRE, [7, 4], single_outfile=single_outfile)
    ours = FITSCutout(images, CENTRE, [7, 4], single_outfile=single_outfile)
    paths_a = _quiet(theirs.write_as_fits, tmp_path / "a", cutout_prefix="pre")
    paths_b = ours.write_as_fits(tmp_path / "b", cutout_prefix="pre")
    assert [os.path.basename(p) for p in paths_b] == [os.path.basename(p) for p in paths_a]
    assert len(paths_b) == (1 if single_outfile else len(images))
    for pa, pb in zip(paths_a, paths_b):
        with fits.open(pb, checksum=True) as b, fits.open(pa) as a:
            assert_fits_equal([b], [a])
    zip_a, zip_b = theirs.write_as_zip(tmp_path / "za"), ours.write_as_zip(tmp_path / "zb")
    assert os.path.basename(zip_b) == os.path.basename(zip_a)
    members_a, members_b = _zip_members(zip_a), _zip_members(zip_b)
    assert list(members_b) == list(members_a)
    for name, data in members_b.items():
        with fits.open(io.BytesIO(data), checksum=True) as b, fits.open(io.BytesIO(members_a[name])) as a:
            assert_fits_equal([b], [a])
    assert os.listdir(tmp_path / "zb") == [os.path.basename(zip_b)]


def test_fits_cutout_empty_and_off_images(images, tmp_path):
    empty = tmp_path / "zeros.fits"
    with fits.open(images[0]) as hdul:
        fits.HDUList([hdul[0].copy(), fits.ImageHDU(np.zeros((64, 64), "f4"), hdul[1].header)]).writeto(empty)
    for allow_empty in (False, True):
        kwargs = {"allow_empty": allow_empty}
        theirs = _quiet(astrocut.FITSCutout, [str(empty), images[0]], CENTRE, 5, **kwargs)
        ours = _quiet(FITSCutout, [str(empty), images[0]], CENTRE, 5, **kwargs)
        assert list(ours.cutouts_by_file) == list(theirs.cutouts_by_file)
        assert_fits_equal(ours.fits_cutouts, theirs.fits_cutouts)
        assert_fits_equal(_quiet(ours.cutout), _quiet(theirs.cutout))  # cutout() cuts again
    with pytest.warns(DataWarning), pytest.raises(NoDataError) as err:
        FITSCutout(images, "10.0 10.0", 5)
    assert err.value.field == "coordinates"


def test_fits_cutout_errors_name_the_parameter(images):
    cases = [
        ({"cutout_size": 0}, "cutout_size"),
        ({"limit_rounding_method": "up"}, "limit_rounding_method"),
        ({"fill_value": None}, "fill_value"),
        ({"extension": "first"}, "extension"),
        ({"coordinates": ()}, "coordinates"),
        ({"input_files": []}, "input_files"),
    ]
    for changes, field in cases:
        kwargs = {"input_files": images, "coordinates": CENTRE, "cutout_size": 5, **changes}
        with pytest.raises(InvalidInputError) as err:
            FITSCutout(**kwargs)
        assert err.value.field == field, changes
    with pytest.warns(UserWarning, match="fsspec_kwargs"):
        FITSCutout(images, CENTRE, 5, fsspec_kwargs={"anon": True})


@pytest.mark.parametrize("kwargs", [{}, {"stretch": "linear", "minmax_value": [0, 500], "invert": True},
                                    {"colorize": True}, {"flip_orientation": False, "stretch": "sqrt"}])
def test_image_cutouts_match_astrocut(images, kwargs):
    theirs = _quiet(astrocut.FITSCutout, images, CENTRE, [9, 6]).get_image_cutouts(**kwargs)
    ours = FITSCutout(images, CENTRE, [9, 6]).get_image_cutouts(**kwargs)
    assert len(ours) == len(theirs) == (1 if kwargs.get("colorize") else len(images))
    for a, b in zip(ours, theirs):
        assert a.mode == b.mode and a.size == b.size
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert set(a.info) == set(b.info)
        for key in set(a.info) - {"version"}:  # version: this package's (intended)
            want = b.info[key]
            assert a.info[key] == (want if isinstance(want, str) else pytest.approx(want, rel=1e-12)), key


def test_write_as_img_names_match_astrocut(images, tmp_path):
    theirs = _quiet(astrocut.FITSCutout, images, CENTRE, 5)
    ours = FITSCutout(images, CENTRE, 5)
    for kwargs in ({"output_format": "png"}, {"output_format": ".jpg", "colorize": True, "cutout_prefix": "rgb"}):
        got = ours.write_as_img(output_dir=tmp_path / "b", **kwargs)
        want = _quiet(theirs.write_as_img, output_dir=tmp_path / "a", **kwargs)
        got, want = ([got], [want]) if isinstance(want, str) else (got, want)
        assert [os.path.basename(p) for p in got] == [os.path.basename(p) for p in want]
    assert len(ours.image_cutouts) == 1  # the last rendering (colorized), as astrocut keeps it
    with pytest.raises(InvalidInputError) as err:
        ours.write_as_img(output_format="xyz")
    assert err.value.field == "output_format"
    with pytest.raises(InvalidInputError) as err:
        FITSCutout(images[:2], CENTRE, 5).get_image_cutouts(colorize=True)
    assert err.value.field == "input_files"


# --------------------------------------------------------------------------------------------------
# the footprint API over a catalog
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def catalog(service_data, off_cube) -> RecordingCatalog:
    cubes = service_data[0]
    folder = cubes["spoc38"].parent
    return RecordingCatalog.from_files([cubes["spoc38"], cubes["spoc11"], cubes["tica38"], off_cube,
                             folder / "tess-s0099-1-1-cube.fits"])


def test_get_tess_sectors(catalog):
    table = get_tess_sectors(CENTRE, 5, catalog=catalog)
    assert table.colnames == ["sectorName", "sector", "camera", "ccd"]
    assert [table[c].dtype.str[1:] for c in table.colnames] == ["S20", "i4", "i4", "i4"]
    assert [tuple(row) for row in table] == [("tess-s0011-2-2", 11, 2, 2), ("tess-s0038-2-2", 38, 2, 2)]
    assert catalog.calls[-1][2] == pytest.approx(5 / 2 * 21 / 3600)
    assert len(get_tess_sectors(CENTRE, 0, catalog=catalog)) == 2  # 0: the position itself
    tica = get_tess_sectors(SkyCoord(DEMO_RA, DEMO_DEC, unit="deg"), 1 * u.arcmin, catalog=catalog, product="TICA")
    assert list(tica["sectorName"]) == ["tica-s0038-2-2"]  # the name the service's /sector gives
    assert catalog.calls[-1][2] == pytest.approx(0.5 / 60)
    empty = get_tess_sectors("10.0 10.0", 5, catalog=catalog)
    assert len(empty) == 0 and empty.colnames == table.colnames
    assert [empty[c].dtype.str[1:] for c in empty.colnames] == ["S20", "i4", "i4", "i4"]


def test_footprint_cutout_matches_astrocut_on_the_same_cubes(catalog, service_data, tmp_path):
    cubes = [str(service_data[0]["spoc11"]), str(service_data[0]["spoc38"])]  # sector order
    coord = _coord_at(cubes[1], 20.4, 40.6)
    theirs = _quiet(astrocut.TessCubeCutout, cubes, coord, [8, 6], threads=8)
    ours = TessFootprintCutout(coord, [8, 6], catalog=catalog)
    assert list(ours.tpf_cutouts_by_file) == cubes
    assert ours.cutouts_by_file is ours.tess_cube_cutout.cutouts_by_file
    for a, b, ia, ib in zip(ours.tpf_cutouts, theirs.tpf_cutouts, ours.cutouts, theirs.cutouts):
        assert_tpfs_equal(a, b)
        assert_instances_equal(ia, ib)
    for legacy in (False, True):
        names_a = [os.path.basename(p) for p in theirs.write_as_tpf(tmp_path / f"a{legacy}", legacy_filenames=legacy)]
        names_b = [os.path.basename(p) for p in ours.write_as_tpf(tmp_path / f"b{legacy}", legacy_filenames=legacy)]
        assert names_b == names_a
        zip_a = theirs.write_as_zip(tmp_path / f"za{legacy}", legacy_filenames=legacy)
        zip_b = ours.write_as_zip(tmp_path / f"zb{legacy}", legacy_filenames=legacy)
        assert os.path.basename(zip_b) == os.path.basename(zip_a)
        assert list(_zip_members(zip_b)) == list(_zip_members(zip_a)) == names_a


def test_footprint_sequence_product_and_no_match(catalog, service_data):
    ours = TessFootprintCutout(CENTRE, 5, sequence=38, catalog=catalog)
    assert list(ours.tpf_cutouts_by_file) == [str(service_data[0]["spoc38"])]
    assert catalog.calls[-1][4] == [38]
    tica = TessFootprintCutout(CENTRE, 5, catalog=catalog, product="TICA")
    assert tica.tpf_cutouts[0][0].header["FFI_TYPE"] == "TICA"
    for kwargs in ({"sequence": [5, 6]}, {"coordinates": "10.0 10.0"}):
        with pytest.raises(NoDataError) as err:
            TessFootprintCutout(**{"coordinates": CENTRE, "cutout_size": 5, "catalog": catalog, **kwargs})
        assert err.value.field == "coordinates"


def test_footprint_overlap_without_the_centre_is_skipped(catalog, service_data):
    # just beyond sector 38's last column: its 30 px box overlaps the pixels, its centre does not
    s38, s11 = (str(service_data[0][k]) for k in ("spoc38", "spoc11"))
    ra, dec = (float(v) for v in open_cube(s38).wcs.all_pix2world(66.0, 32.0, 0))
    coord = f"{ra} {dec}"
    assert "tess-s0038-2-2" in list(get_tess_sectors(coord, 30, catalog=catalog)["sectorName"])
    assert "tess-s0038-2-2" not in list(get_tess_sectors(coord, 0, catalog=catalog)["sectorName"])
    if open_cube(s11).contains_radec(ra, dec):
        with pytest.warns(DataWarning) as record:
            made = TessFootprintCutout(coord, 30, catalog=catalog)
        assert list(made.tpf_cutouts_by_file) == [s11]
    else:
        with pytest.warns(DataWarning) as record, pytest.raises(NoDataError):
            TessFootprintCutout(coord, 30, catalog=catalog)
    assert any(s38 in str(w.message) for w in record)


def test_s3_cubes(s3_server, cubes, tmp_path):
    # its own key: test_tpf uploads another cube under "tess-s0038-2-2-cube.fits" (the cached ETag)
    uri = s3_server.upload(cubes[0], "cubes", "classes/tess-s0038-2-2-cube.fits")
    local = TessCubeCutout(cubes[0], CENTRE, 6)
    remote = TessCubeCutout([uri], CENTRE, 6, threads=4, s3=s3_server.config)
    assert list(remote.tpf_cutouts_by_file) == [uri]
    assert_tpfs_equal(remote.tpf_cutouts[0], local.tpf_cutouts[0])
    assert_instances_equal(remote.cutouts[0], local.cutouts[0])
    names = [os.path.basename(p) for p in remote.write_as_tpf(tmp_path)]
    assert names == [os.path.basename(p) for p in local.write_as_tpf(tmp_path / "local")]


def test_cube_cut_from_footprint(catalog, tmp_path):
    hduls = cube_cut_from_footprint(CENTRE, 5, memory_only=True, catalog=catalog)
    assert len(hduls) == 2 and all(isinstance(h, fits.HDUList) for h in hduls)
    paths = cube_cut_from_footprint(CENTRE, 5, sequence=[11, 38], output_dir=tmp_path, catalog=catalog,
                                    legacy_filenames=True)
    assert [os.path.basename(p) for p in paths] == [
        f"tess-s00{s}-2-2_{DEMO_RA:.6f}_{DEMO_DEC:.6f}_5x5_astrocut.fits" for s in (11, 38)]
    for path, hdul in zip(paths, hduls):
        with fits.open(path) as written:
            assert_tpfs_equal(written, hdul)


def test_default_catalog(service_data, monkeypatch):
    import core.catalog.configured

    monkeypatch.delenv("CUTOUT_CUBE_DIRS", raising=False)
    monkeypatch.delenv("CUTOUT_INDEX", raising=False)
    monkeypatch.setattr(core.catalog.configured, "_default", None)
    for call in (lambda: get_tess_sectors(CENTRE, 5), lambda: TessFootprintCutout(CENTRE, 5)):
        with pytest.raises(UnavailableError) as err:  # nothing configured: no hosted cubes
            call()
        assert err.value.field == "catalog"
    monkeypatch.setenv("CUTOUT_CUBE_DIRS", str(service_data[0]["spoc38"].parent))
    assert [row["sector"] for row in get_tess_sectors(CENTRE, 5)] == [11, 38]


def test_footprint_errors_name_the_parameter(catalog):
    cases = [
        ({"sequence": "38"}, "sequence"),
        ({"sequence": [38, 0]}, "sequence"),
        ({"sequence": []}, "sequence"),
        ({"product": "FFI"}, "product"),
        ({"catalog": object()}, "catalog"),
        ({"cutout_size": 0}, "cutout_size"),
        ({"coordinates": "x y"}, "coordinates"),
    ]
    for changes, field in cases:
        kwargs = {"coordinates": CENTRE, "cutout_size": 5, "catalog": catalog, **changes}
        with pytest.raises(InvalidInputError) as err:
            TessFootprintCutout(**kwargs)
        assert err.value.field == field, changes
    for size in (-1, [], 5 * u.kg, "big"):
        with pytest.raises(InvalidInputError) as err:
            get_tess_sectors(CENTRE, size, catalog=catalog)
        assert err.value.field == "cutout_size"
    assert footprint_radius_deg([4, 10 * u.pix]) == pytest.approx(10 / 2 * 21 / 3600)
