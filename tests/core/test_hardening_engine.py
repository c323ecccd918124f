"""What a probe of the engine found, against the seed's examples and astrocut 1.4.0, each as a test
(the service's items are in tests/app/test_hardening.py). Each failed on the engine before the fixes."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.errors import CorruptFileError, InvalidInputError, TooLargeError, UnavailableError
from core.synthetic.ffis import DEMO_DEC, DEMO_RA

ROOT = Path(__file__).resolve().parents[2]
CENTRE = f"{DEMO_RA} {DEMO_DEC}"


# -- 13. `from core import fits_cut` is the function, whatever was imported first ---------------------


@pytest.mark.parametrize("first", ["from core import img_cut, fits_cut",
                                   "from core import CutoutsCombiner; from core import fits_cut",
                                   "import core.images.render; from core import fits_cut",
                                   "from core import fits_cut"])
def test_13_fits_cut_is_always_the_function(first):
    code = f"{first}\nimport inspect\nassert inspect.isfunction(fits_cut), fits_cut\nprint('ok')"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         check=False)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


# -- 14. the seed's moving-target recipe -------------------------------------------------------------------


def test_14_footprints_are_what_download_cutouts_takes(spoc_cube):
    import inspect

    from astroquery.mast import Tesscut

    from core.cubes.cache import open_cube
    from core.moving_target import path_to_footprints

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


# -- 15. verbose=True prints ----------------------------------------------------------------------------------


def test_15_verbose_prints_progress_and_timings(spoc_sector, spoc_cube, tmp_path, capsys):
    from core import CubeFactory, CutoutFactory, center_on_path, fits_cut, img_cut

    CubeFactory().make_cube([str(f) for f in spoc_sector.ffi_files], tmp_path / "c.fits", verbose=True)
    out = capsys.readouterr().out
    assert "Completed file 0" in out and "Write time" in out and "Total time" in out
    CutoutFactory().cube_cut(spoc_cube, CENTRE, 5, output_path=tmp_path, verbose=True)
    out = capsys.readouterr().out
    for needle in ("Using WCS from row", "xmin,xmax", "ymin,ymax", "Image cutout cube shape",
                   "Maximum distance between approximate and true location", "Error in approximate WCS",
                   "Write time", "Total time"):
        assert needle in out, (needle, out)
    image = str(spoc_sector.ffi_files[0])
    fits_cut([image], CENTRE, 5, output_dir=tmp_path, verbose=True)
    out = capsys.readouterr().out
    assert "xmin,xmax" in out and "Cutout fits file" in out and "Total time" in out
    img_cut([image], CENTRE, 5, output_dir=tmp_path, verbose=True)
    out = capsys.readouterr().out
    assert "xmin,xmax" in out and "Cutout image" in out and "Total time" in out
    from astropy.table import Table
    from astropy.time import Time

    from core.cubes.cache import open_cube

    cube = open_cube(spoc_cube)
    path = Table({"time": Time(np.asarray(cube.time[[0, -1]], dtype=float) + 2457000, format="jd"),
                  "position": cube.wcs.pixel_to_world([30.0, 33.0], [30.0, 30.0])})
    tpf = CutoutFactory().cube_cut(spoc_cube, CENTRE, 12, output_path=tmp_path)
    center_on_path(path, 5, [tpf], output_path=tmp_path, verbose=True)
    out = capsys.readouterr().out
    assert "Centred" in out and "Target pixel file" in out and "Total time" in out


# -- 16. files come out as open() makes them (umask), not 0600 ------------------------------------------------


def test_16_output_files_honour_the_umask(spoc_sector, spoc_cube, tmp_path):
    from core import CubeFactory, CutoutFactory, fits_cut, img_cut

    old = os.umask(0o022)
    try:
        paths = [
            CutoutFactory().cube_cut(spoc_cube, CENTRE, 5, output_path=tmp_path),
            fits_cut([str(spoc_sector.ffi_files[0])], CENTRE, 5, output_dir=tmp_path),
            img_cut([str(spoc_sector.ffi_files[0])], CENTRE, 5, output_dir=tmp_path)[0],
            CubeFactory().make_cube([str(f) for f in spoc_sector.ffi_files[:2]], tmp_path / "c.fits", verbose=False),
        ]
        os.umask(0o027)
        paths.append(CutoutFactory().cube_cut(spoc_cube, CENTRE, 6, output_path=tmp_path / "g"))
    finally:
        os.umask(old)
    modes = [stat.S_IMODE(os.stat(p).st_mode) for p in paths]
    assert modes == [0o644] * 4 + [0o640]


# -- 17. the engine's own errors, naming the parameter -----------------------------------------------------------


@pytest.mark.parametrize("size", [20000, 1e5, 1e6])
def test_17_huge_cube_cuts_are_too_large_not_raw_errors(spoc_cube, size):
    from core import CutoutFactory

    with pytest.raises(TooLargeError) as info:
        CutoutFactory().cube_cut(spoc_cube, CENTRE, size, memory_only=True)
    assert info.value.field == "cutout_size"


def test_17_huge_image_cuts_are_too_large_not_memory_errors(spoc_sector):
    from core import fits_cut

    with pytest.raises(TooLargeError) as info:
        fits_cut([str(spoc_sector.ffi_files[0])], CENTRE, 1e6, memory_only=True)
    assert info.value.field == "cutout_size"


@pytest.mark.parametrize("kwargs, field", [
    ({"img_arr": np.full((4, 4), np.nan)}, "img_arr"),
    ({"img_arr": np.ones((4, 4)), "stretch": ["asinh"]}, "stretch"),
    ({"img_arr": np.ones((4, 4)), "stretch": 3}, "stretch"),
    ({"img_arr": np.arange(16.0).reshape(4, 4), "minmax_percent": [99, 1]}, "minmax_percent"),
    ({"img_arr": np.arange(16.0).reshape(4, 4), "minmax_value": [10, 1]}, "minmax_value"),
    ({"img_arr": [["a", "b"]]}, "img_arr"),
])
def test_17_normalize_img_errors_name_the_parameter(kwargs, field):
    from core import normalize_img

    with pytest.raises(InvalidInputError) as info:
        normalize_img(**kwargs)
    assert info.value.field == field


def test_17_unwritable_outputs_are_unavailable_naming_the_parameter(spoc_sector, spoc_cube, tmp_path):
    from core import CubeFactory, CutoutFactory, fits_cut, img_cut

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    image = str(spoc_sector.ffi_files[0])
    calls = [
        (lambda: CutoutFactory().cube_cut(spoc_cube, CENTRE, 5, output_path=blocker / "x"), "output_path"),
        (lambda: fits_cut([image], CENTRE, 5, output_dir=blocker / "x"), "output_dir"),
        (lambda: img_cut([image], CENTRE, 5, output_dir=blocker / "x"), "output_dir"),
        (lambda: CubeFactory().make_cube([image], blocker / "x" / "c.fits", verbose=False), "cube_file"),
    ]
    for call, field in calls:
        with pytest.raises(UnavailableError) as info:
            call()
        assert info.value.field == field


def test_17_not_a_cube_is_said_so(spoc_sector, tmp_path):
    from astropy.io import fits

    from core import CutoutFactory

    with pytest.raises(InvalidInputError) as info:
        CutoutFactory().cube_cut(42, CENTRE, 5)
    assert info.value.field == "cube_file"
    plain = tmp_path / "plain.fits"
    fits.PrimaryHDU(np.zeros((10, 10), np.float32)).writeto(plain)
    for path in (plain, spoc_sector.ffi_files[0]):
        with pytest.raises(CorruptFileError) as info:
            CutoutFactory().cube_cut(str(path), CENTRE, 5, memory_only=True)
        assert "not a TESS cube" in info.value.message and "END" not in info.value.message
        assert info.value.field == "cube_file"


@pytest.mark.parametrize("coordinates", ["577.43 -62.6", "1e308 -62.6", "nan 10", "10 inf", "-200 10"])
def test_7_engine_refuses_ra_out_of_range(spoc_cube, coordinates):
    from core import CutoutFactory

    with pytest.raises(InvalidInputError) as info:
        CutoutFactory().cube_cut(spoc_cube, coordinates, 5, memory_only=True)
    assert info.value.field == "coordinates"


# -- 18. update_cube (astrocut's API) -------------------------------------------------------------------------------


def test_18_update_cube_adds_frames_as_make_cube_update_does(spoc_sector, tmp_path):
    from astropy.io import fits

    from core import CubeFactory

    files = [str(f) for f in spoc_sector.ffi_files]
    a, b = tmp_path / "a.fits", tmp_path / "b.fits"
    CubeFactory().make_cube(files[:6], a, verbose=False)
    CubeFactory().make_cube(files[:6], b, verbose=False)
    assert CubeFactory().update_cube(files[6:], a, verbose=False) == str(a)
    CubeFactory().make_cube(files[6:], b, verbose=False, update=True)
    with fits.open(a) as ha, fits.open(b) as hb:
        assert ha[1].data.shape[2] == len(files)
        np.testing.assert_array_equal(ha[1].data, hb[1].data)
        np.testing.assert_array_equal(ha[2].data["FFI_FILE"], hb[2].data["FFI_FILE"])
