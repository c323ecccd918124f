"""Every planner of app.planning called directly, without a server: a :class:`Context` over a catalog
of the session's synthetic cubes (SPOC sectors 38 and 11, TICA 38: 64x64 px, 10 frames, centred on
DEMO_RA/DEMO_DEC), the session's image root, and a survey index built here over copies of the
synthetic FFIs. Each planner gets typed parameters (the request models of app.params) and its
answer is checked: its type, member names and sizes, bytes against the engine's own cut where
that is cheap, "no data" messages and hosted lists, and errors naming the API's fields.

Each :class:`Planner`'s ``cost`` is called with a context whose catalog, resolver and survey index
fail the test when touched: a cost decides from the parameters and the settings alone, and refuses
parameters past the limits (TooLargeError naming the field) before anything is read.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from astropy.io import fits
from PIL import Image

from app.params.requests import (
    AstrocutParams,
    CombineParams,
    FfiWcsParams,
    FitsCutParams,
    FrameParams,
    ImgCutParams,
    LightCurveParams,
    MovingTargetCutParams,
    MovingTargetSectorParams,
    PreviewParams,
    SectorParams,
)
from app.params.surveys import HapcutParams, SurveyListParams, ZcutParams
from app.planning import images, lightcurve, moving, preview, soda, surveys, tesscut
from app.planning.answers import (
    NO_COST,
    Cost,
    CutoutStats,
    FileAnswer,
    FileStreamAnswer,
    NoData,
    Planner,
    ZipAnswer,
)
from app.planning.context import Context
from core.cubes.cache import open_cube
from core.cutout_size import CutoutSize, Limits
from core.errors import ForbiddenError, InvalidInputError, NoDataError, NotFoundError, TooLargeError
from core.images.index import ImageIndex, split_locations
from core.synthetic.ffis import DEMO_DEC, DEMO_RA

POS = {"ra": DEMO_RA, "dec": DEMO_DEC}
CENTRE = f"{DEMO_RA} {DEMO_DEC}"
FAR = {"ra": 10.0, "dec": 20.0}  # on no cube and no image
#: the limits of the session's live server (tests/conftest.py)
LIMITS = Limits(max_side=50, max_volume=20 * 20 * 10)
#: an HST-like HAP MVM name (its cutouts are named as drizzlepac names MAST's)
HAP_NAME = "hst_skycell-p1882x12y06_wfc3_uvis_f275w_coarse-all_drz.fits"


# ------------------------------------------------------------------------------------------
# contexts
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def survey_locations(service_data, tmp_path_factory) -> dict[str, list[str]]:
    """Two surveys: ``deep`` (two FFIs of sector 38) and ``hap`` (one FFI under a HAP MVM name)."""
    _cubes, image_root, names = service_data
    base = tmp_path_factory.mktemp("planning-surveys")
    locations = {}
    for survey, files in (("deep", {n: n for n in names[:2]}), ("hap", {names[0]: HAP_NAME})):
        folder = base / survey
        folder.mkdir()
        for source, target in files.items():
            shutil.copy(image_root / source, folder / target)
        locations[survey] = [str(folder)]
    return locations


def _context(service_data, work_dir: Path, survey_locations=None, **changes) -> Context:
    from core.catalog.configured import open_catalog

    cubes, image_root, _ = service_data
    index = ImageIndex.build(survey_locations) if survey_locations else None
    values = {
        "catalog": open_catalog(cube_dirs=[str(cubes["spoc38"].parent)]), "limits": LIMITS,
        "inline_tpf_bytes": 1 << 26, "band_bytes": 1 << 20, "work_dir": work_dir, "max_input_files": 16,
        "image_roots": [str(image_root)], "surveys": SimpleNamespace(current=index),
    }
    values.update(changes)
    return Context(**values)


@pytest.fixture(scope="module")
def ctx(service_data, survey_locations, tmp_path_factory) -> Context:
    return _context(service_data, tmp_path_factory.mktemp("planning-work"), survey_locations)


class _Untouchable:
    """Stands for the catalog, the resolver and the survey index of a cost's context: a cost
    decides from the parameters and the settings only, so any use of these fails the test."""

    def __getattr__(self, name: str):
        raise AssertionError(f"a cost used .{name} (it must read nothing)")

    def __call__(self, *args, **kwargs):
        raise AssertionError("a cost called the resolver (it must read nothing)")


@pytest.fixture
def bare(tmp_path) -> Context:
    """A context in which reading anything fails: catalog, resolver and surveys untouchable, a
    work directory that does not exist, no image root."""
    nothing = _Untouchable()
    return Context(catalog=nothing, limits=LIMITS, inline_tpf_bytes=1 << 26, band_bytes=1 << 20,
                   work_dir=tmp_path / "absent", resolver=nothing, surveys=nothing)


def _cancel() -> threading.Event:
    return threading.Event()


def _built(member) -> bytes:
    """A zip member's bytes, made as the streaming code makes them."""
    out = member.build(_cancel())
    if isinstance(out, (bytes, bytearray, memoryview)):
        return bytes(out)
    return b"".join(bytes(piece) for piece in out)


def _engine_tpf(cube_path, size) -> bytes:
    """The engine's own in-memory TPF of a cutout at the centre position."""
    from core.tpf.cut import CutoutFactory

    return bytes(CutoutFactory().cube_cut(str(cube_path), CENTRE, size, memory_only=True).raw)


def _ephemeris(cube_path, ra_offsets=(-3, 3)) -> dict:
    """A slow drift in RA (pixels given by ``ra_offsets``) across the cube's frames, 6 points."""
    t = np.asarray(open_cube(str(cube_path)).time, dtype=float)
    ra = DEMO_RA + np.linspace(*ra_offsets, 6) * 21 / 3600 / np.cos(np.radians(DEMO_DEC))
    return {"time": np.linspace(t.min(), t.max(), 6).tolist(), "ra": ra.tolist(), "dec": [DEMO_DEC] * 6}


def test_each_route_planner_plans_with_the_function_tested_here():
    pairs = [(tesscut.SECTOR, tesscut.plan_sector), (tesscut.ASTROCUT, tesscut.plan_astrocut),
             (tesscut.FFI_WCS, tesscut.plan_ffi_wcs), (moving.MOVING_SECTOR, moving.plan_moving_sector),
             (moving.MOVING_ASTROCUT, moving.plan_moving_astrocut), (images.FITS_CUT, images.plan_fits_cut),
             (images.IMG_CUT, images.plan_img_cut), (images.COMBINE, images.plan_combine),
             (preview.PREVIEW, preview.plan_preview), (lightcurve.LIGHTCURVE, lightcurve.plan_lightcurve),
             (lightcurve.FRAME, lightcurve.plan_frame), (surveys.SURVEY_NAMES, surveys.plan_survey_names),
             (surveys.ZCUT_FITS, surveys.plan_zcut_fits), (surveys.ZCUT_IMAGES, surveys.plan_zcut_images),
             (surveys.HAPCUT, surveys.plan_hapcut), (soda.SYNC, soda.plan_soda)]
    for planner, plan in pairs:
        assert isinstance(planner, Planner) and planner.plan is plan


# ------------------------------------------------------------------------------------------
# TESScut: sector, astrocut, ffi_wcs
# ------------------------------------------------------------------------------------------


def test_plan_sector_lists_the_hosted_cubes_holding_the_position(ctx):
    rows = tesscut.plan_sector(ctx, SectorParams(**POS))
    assert rows == {"results": [
        {"sectorName": "tess-s0011-2-2", "sector": "0011", "camera": "2", "ccd": "2"},
        {"sectorName": "tess-s0038-2-2", "sector": "0038", "camera": "2", "ccd": "2"},
    ]}
    assert tesscut.plan_sector(ctx, SectorParams(ra=DEMO_RA - 360, dec=DEMO_DEC)) == rows  # RA wrapped
    tica = tesscut.plan_sector(ctx, SectorParams(**POS, product="tica"))
    assert tica == {"results": [{"sectorName": "tica-s0038-2-2", "sector": "0038", "camera": "2", "ccd": "2"}]}
    assert tesscut.plan_sector(ctx, SectorParams(**FAR)) == {"results": [], "msg": "The position is on no hosted cube."}


def test_plan_astrocut_members_are_the_engines_tpfs(ctx, service_data):
    cubes, _, _ = service_data
    answer = tesscut.plan_astrocut(ctx, AstrocutParams(**POS, x=5, y=4))
    assert isinstance(answer, ZipAnswer)
    assert answer.filename == f"astrocut_{DEMO_RA:.6f}_{DEMO_DEC:.6f}_5x4.zip"
    names = [m.name for m in answer.members]
    assert names == [f"tess-s0011-2-2_{DEMO_RA:.6f}_{DEMO_DEC:.6f}_5x4_astrocut.fits",
                     f"tess-s0038-2-2_{DEMO_RA:.6f}_{DEMO_DEC:.6f}_5x4_astrocut.fits"]
    assert answer.stats == CutoutStats(5, 4, 20, 2)
    for member, cube in zip(answer.members, ("spoc11", "spoc38"), strict=True):
        data = _built(member)
        assert not member.streamed and member.nbytes == len(data) and member.memory_bytes > member.nbytes
        assert data == _engine_tpf(cubes[cube], [5, 4])
    assert answer.nbytes == sum(m.nbytes for m in answer.members)


def test_plan_astrocut_streams_big_tpfs_with_the_same_bytes(service_data, tmp_path):
    cubes, _, _ = service_data
    small = _context(service_data, tmp_path, inline_tpf_bytes=1, band_bytes=4096)
    answer = tesscut.plan_astrocut(small, AstrocutParams(**POS, x=6, y=6, sector=(38,)))
    (member,) = answer.members
    assert member.streamed and member.disk_bytes > 0
    data = _built(member)
    assert len(data) == member.nbytes and data == _engine_tpf(cubes["spoc38"], [6, 6])
    assert not [p for p in os.listdir(tmp_path) if p.startswith("tpf-spool-")]  # the spool is gone


def test_plan_astrocut_no_data_lists_the_hosted_sectors(ctx):
    off = tesscut.plan_astrocut(ctx, AstrocutParams(**FAR, x=5))
    assert isinstance(off, NoData) and off.hosted == [11, 38]
    assert off.message == "The position RA 10.000000 Dec 20.000000 is on no hosted SPOC cube."
    unhosted = tesscut.plan_astrocut(ctx, AstrocutParams(**POS, x=5, sector=(12, 13)))
    assert unhosted.message == "Sector 12, 13 is not hosted on this server for product SPOC."
    missed = tesscut.plan_astrocut(ctx, AstrocutParams(**FAR, x=5, sector=(38,)))
    assert missed.message.endswith("is on no hosted SPOC cube in sector 38.")
    tica = tesscut.plan_astrocut(ctx, AstrocutParams(**FAR, x=5, product="TICA"))
    assert tica.hosted == [38] and "TICA" in tica.message


@pytest.mark.parametrize("size, field", [({"x": 51}, "x"), ({"x": 5, "y": 51}, "y"), ({"x": 21, "y": 21}, "x"),
                                         ({"x": 0.5, "units": "d"}, "x")])
def test_plan_astrocut_refuses_windows_past_the_limits(ctx, size, field):
    with pytest.raises(TooLargeError) as info:
        tesscut.plan_astrocut(ctx, AstrocutParams(**POS, **size))
    assert info.value.field == field and "max_cutout_" in info.value.message


def test_plan_ffi_wcs_from_the_cube_then_tesswcs(ctx, service_data):
    from astropy.wcs import WCS

    cubes, _, _ = service_data
    hosted = tesscut.plan_ffi_wcs(ctx, FfiWcsParams(sector=38, camera=2, ccd=2))
    assert hosted["source"] == "cube"
    x, y = WCS(hosted["wcs"], relax=True).all_world2pix(DEMO_RA, DEMO_DEC, 0)
    cx, cy = open_cube(str(cubes["spoc38"])).wcs.all_world2pix(DEMO_RA, DEMO_DEC, 0)
    assert abs(x - cx) < 1e-6 and abs(y - cy) < 1e-6
    json.dumps(hosted, allow_nan=False)  # JSON as it is
    archived = tesscut.plan_ffi_wcs(ctx, FfiWcsParams(sector=12, camera=2, ccd=1))
    assert archived["source"] == "tesswcs"
    with pytest.raises(NotFoundError) as info:
        tesscut.plan_ffi_wcs(ctx, FfiWcsParams(sector=999, camera=1, ccd=1))
    assert info.value.field == "sector"


# ------------------------------------------------------------------------------------------
# moving targets
# ------------------------------------------------------------------------------------------


def test_plan_moving_sector_lists_the_cubes_a_path_crosses(ctx, service_data):
    cubes, _, _ = service_data
    eph = _ephemeris(cubes["spoc38"])
    rows = moving.plan_moving_sector(ctx, MovingTargetSectorParams(ephemeris=eph))
    assert rows == {"results": [{"sectorName": "tess-s0038-2-2", "sector": "0038", "camera": "2", "ccd": "2"}]}
    far = {**eph, "ra": [10.0 + i * 0.001 for i in range(6)]}
    assert moving.plan_moving_sector(ctx, MovingTargetSectorParams(ephemeris=far)) == {
        "results": [], "msg": "The path crosses no hosted cube."}


def test_plan_moving_astrocut_follows_the_path(ctx, service_data):
    cubes, _, _ = service_data
    eph = _ephemeris(cubes["spoc38"])
    answer = moving.plan_moving_astrocut(ctx, MovingTargetCutParams(ephemeris=eph, obj_id="é Šteins", x=5, y=5))
    # the zip's name takes the name in the safe alphabet, the member's the OBJECT card's ASCII form
    assert isinstance(answer, ZipAnswer) and answer.filename == "astrocut____teins_5x5.zip"
    (member,) = answer.members
    assert member.name.startswith("tess-s0038-2-2_e_Steins_") and member.name.endswith("_5-x-5_astrocut.fits")
    data = _built(member)
    assert member.nbytes == len(data) and answer.stats == CutoutStats(5, 5, 10, 1)
    with fits.open(io.BytesIO(data)) as hdul:
        assert hdul[0].header["OBJECT"] == "e Steins"  # accents dropped for the ASCII card
        table = hdul[1].data
        assert table["FLUX"].shape == (10, 5, 5)
        assert np.ptp(table["TGT_RA"]) > 0  # the window follows the target


def test_plan_moving_astrocut_asks_the_resolver_for_a_name(service_data, tmp_path):
    cubes, _, _ = service_data
    asked = []

    def resolver(obj_id, obj_type):
        asked.append((obj_id, obj_type))
        return _ephemeris(cubes["spoc38"])

    with_resolver = _context(service_data, tmp_path, resolver=resolver)
    answer = moving.plan_moving_astrocut(with_resolver, MovingTargetCutParams(obj_id="Ceres", obj_type="smallbody", x=4))
    assert asked == [("Ceres", "smallbody")]
    assert [m.name.split("_")[0] for m in answer.members] == ["tess-s0038-2-2"]


def test_plan_moving_astrocut_no_data_and_bad_paths(ctx, service_data):
    cubes, _, _ = service_data
    eph = _ephemeris(cubes["spoc38"])
    off = moving.plan_moving_astrocut(ctx, MovingTargetCutParams(ephemeris={**eph, "ra": [10.0] * 6}, x=5))
    assert isinstance(off, NoData) and off.hosted == [11, 38] and off.message == "The path crosses no hosted cube."
    other = moving.plan_moving_astrocut(ctx, MovingTargetCutParams(ephemeris=eph, x=5, sector=(11,)))
    assert other.message == "The path crosses no hosted cube in the requested sectors."
    mixed = {**eph, "time": [eph["time"][0], "2021-05-01T00:00:00"] + eph["time"][2:]}
    with pytest.raises(InvalidInputError) as info:
        moving.plan_moving_astrocut(ctx, MovingTargetCutParams(ephemeris=mixed, x=5))
    assert info.value.field == "ephemeris" and "all numbers" in info.value.message


# ------------------------------------------------------------------------------------------
# images: fits_cut, img_cut, combine
# ------------------------------------------------------------------------------------------


def _image_paths(service_data, count: int) -> list[str]:
    _, image_root, names = service_data
    return [str(image_root / n) for n in names[:count]]


def test_plan_fits_cut_one_file_is_the_engines_cut(ctx, service_data):
    from core.images.cutouts import fits_cut

    _, _, names = service_data
    answer = images.plan_fits_cut(ctx, FitsCutParams(**POS, images=names[:2], x=8, y=6))
    assert isinstance(answer, FileAnswer) and answer.media_type == "application/fits"
    assert answer.filename == f"cutout_{DEMO_RA:.7f}_{DEMO_DEC:.7f}_8x6_astrocut.fits"
    assert answer.stats == CutoutStats(8, 6, 1, 2)
    expected = fits_cut(_image_paths(service_data, 2), CENTRE, [8, 6], memory_only=True)[0]
    with fits.open(io.BytesIO(answer.data)) as hdul:
        assert len(hdul) == 3
        for ours, theirs in zip(hdul[1:], expected[1:], strict=True):
            np.testing.assert_array_equal(ours.data, theirs.data)


def test_plan_fits_cut_per_input_and_an_upload(ctx, service_data):
    _, image_root, names = service_data
    with open(image_root / names[1], "rb") as fh:
        upload = SimpleNamespace(filename="mine.fits", file=fh)
        answer = images.plan_fits_cut(ctx, FitsCutParams(**POS, images=names[:1], x=5, single_outfile=False),
                                      files=[upload])
    assert isinstance(answer, ZipAnswer) and answer.filename.startswith("fits_cut_")
    label = f"{DEMO_RA:.7f}_{DEMO_DEC:.7f}_5x5"
    assert [m.name for m in answer.members] == [f"img0_{label}_astrocut.fits", f"mine_{label}_astrocut.fits"]
    for member in answer.members:
        with fits.open(io.BytesIO(_built(member))) as hdul:
            assert hdul[1].data.shape == (5, 5)
    assert not [p for p in os.listdir(ctx.work_dir) if p.startswith("upload-")]  # uploads removed


def test_plan_fits_cut_errors_name_the_field_and_the_users_names(ctx):
    root = ctx.image_roots[0]
    with pytest.raises(ForbiddenError) as info:
        images.plan_fits_cut(ctx, FitsCutParams(**POS, images=["../../etc/passwd"], x=5))
    assert info.value.field == "images"
    with pytest.raises(NotFoundError) as info:
        images.plan_fits_cut(ctx, FitsCutParams(**POS, images=["missing.fits"], x=5))
    assert info.value.field == "images" and "missing.fits" in info.value.message and root not in info.value.message
    with pytest.raises(NoDataError) as info:
        images.plan_fits_cut(ctx, FitsCutParams(**FAR, images=["img0.fits"], x=5))
    assert info.value.field == "ra"
    with pytest.raises(TooLargeError) as info:
        images.plan_fits_cut(ctx, FitsCutParams(**POS, images=["img0.fits"], x=60, units="d"))
    assert info.value.field == "x"


def test_plan_img_cut_is_the_engines_image(ctx, service_data):
    from core.images.render import img_cut

    _, _, names = service_data
    one = images.plan_img_cut(ctx, ImgCutParams(**POS, images=names[:1], x=12, y=10, stretch="sqrt"))
    assert isinstance(one, FileAnswer) and one.media_type == "image/png" and one.inline
    expected = img_cut(_image_paths(service_data, 1), CENTRE, [12, 10], stretch="sqrt", memory_only=True)
    expected = expected[0] if isinstance(expected, list) else expected
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(one.data))), np.asarray(expected))
    several = images.plan_img_cut(ctx, ImgCutParams(**POS, images=names, x=8, img_format="jpg"))
    assert isinstance(several, ZipAnswer) and len(several.members) == 3
    assert all(m.name.endswith(".jpg") for m in several.members)
    assert Image.open(io.BytesIO(_built(several.members[0]))).format == "JPEG"
    colour = images.plan_img_cut(ctx, ImgCutParams(**POS, images=names, x=8, colorize=True))
    assert Image.open(io.BytesIO(colour.data)).mode == "RGB"
    with pytest.raises(InvalidInputError) as info:
        images.plan_img_cut(ctx, ImgCutParams(**POS, images=names[:2], x=8, colorize=True))
    assert info.value.field == "images"


def test_plan_combine_is_the_mean_of_the_engines_cutouts(ctx, service_data):
    from core.images.cutouts import fits_cut

    _, _, names = service_data
    answer = images.plan_combine(ctx, CombineParams(**POS, images=names[:2], x=6))
    assert isinstance(answer, FileAnswer) and answer.filename.startswith("combined_")
    cuts = fits_cut(_image_paths(service_data, 2), CENTRE, 6, single_outfile=False, memory_only=True)
    with fits.open(io.BytesIO(answer.data)) as hdul:
        np.testing.assert_allclose(hdul[1].data, np.nanmean([c[1].data for c in cuts], axis=0), rtol=1e-6)
    assert answer.stats == CutoutStats(6, 6, 1, 2)
    with pytest.raises(InvalidInputError) as info:
        images.plan_combine(ctx, CombineParams(images=names[:2], x=6))
    assert info.value.field == "ra"


# ------------------------------------------------------------------------------------------
# the page: preview, light curve, frames
# ------------------------------------------------------------------------------------------


def test_plan_preview_is_the_median_frame_rendered(ctx, service_data):
    from core.cubes.preview import median_frame
    from core.images.render import normalize_img
    from core.tpf.cut import locate

    cubes, _, _ = service_data
    answer = preview.plan_preview(ctx, PreviewParams(**POS, x=9, y=7, sector=11, stretch="linear"))
    assert isinstance(answer, FileAnswer) and answer.media_type == "image/png" and answer.inline
    assert answer.filename == f"preview_{DEMO_RA:.6f}_{DEMO_DEC:.6f}_9x7_s0011.png"
    assert answer.stats == CutoutStats(9, 7, 10, 1)
    cube = open_cube(str(cubes["spoc11"]))
    median = median_frame(cube, locate(cube, CENTRE, CutoutSize(9, 7)).window)
    expected = normalize_img(median, stretch="linear", minmax_percent=preview.PREVIEW_PERCENT)[::-1]
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(answer.data))), expected)
    with pytest.raises(NoDataError) as info:
        preview.plan_preview(ctx, PreviewParams(**FAR, x=9))
    assert info.value.field == "ra"


def test_plan_lightcurve_json_and_csv_are_the_engines_light_curve(ctx, service_data):
    from core.cubes.lightcurve import aperture_lightcurve, square_mask

    cubes, _, _ = service_data
    answer = lightcurve.plan_lightcurve(ctx, LightCurveParams(**POS, sector=38, aperture=3))
    assert isinstance(answer, FileAnswer) and answer.media_type == "application/json" and answer.filename is None
    body = json.loads(answer.data)
    assert (body["sector"], body["cadences"], body["aperture"]["nx"], body["product"]) == (38, 10, 3, "SPOC")
    expected = aperture_lightcurve(open_cube(str(cubes["spoc38"])), DEMO_RA, DEMO_DEC, square_mask(3))
    np.testing.assert_array_equal(np.asarray(body["flux"], dtype=np.float32), expected.flux)
    assert answer.stats == CutoutStats(3, 3, 10, 1)
    csv = lightcurve.plan_lightcurve(ctx, LightCurveParams(**POS, sector=38, mask="010,111,010", format="csv"))
    assert csv.media_type.startswith("text/csv") and csv.filename.endswith("_3x3.csv")
    lines = csv.data.decode().splitlines()
    assert lines[0] == "time,flux,flux_err,quality" and len(lines) == 11
    with pytest.raises(NotFoundError) as info:
        lightcurve.plan_lightcurve(ctx, LightCurveParams(**POS, sector=12))
    assert info.value.field == "sector" and "11, 38" in info.value.message


def test_plan_frame_is_one_cadence_of_the_cutout(ctx):
    first = lightcurve.plan_frame(ctx, FrameParams(**POS, x=9, y=7, sector=38, frame=0))
    last = lightcurve.plan_frame(ctx, FrameParams(**POS, x=9, y=7, sector=38, frame=9))
    for answer, frame in ((first, 0), (last, 9)):
        assert isinstance(answer, FileAnswer) and answer.media_type == "image/png"
        assert answer.filename.endswith(f"_9x7_s0038_{frame:05d}.png") and answer.stats == CutoutStats(9, 7, 1, 1)
        assert Image.open(io.BytesIO(answer.data)).size == (9, 7)
    assert first.data != last.data  # the frames differ (a transit, noise), scaled alike
    with pytest.raises(InvalidInputError) as info:
        lightcurve.plan_frame(ctx, FrameParams(**POS, x=9, sector=38, frame=10))
    assert info.value.field == "frame"


# ------------------------------------------------------------------------------------------
# SODA sync (tests/app/test_soda.py checks its parameters and regions in detail)
# ------------------------------------------------------------------------------------------


def test_plan_soda_is_a_tpf_of_the_cubes_pixels_in_the_region(ctx, service_data):
    cubes, _, _ = service_data
    req = soda.parse_soda([("ID", "tess-s0038-2-2"), ("CIRCLE", f"{DEMO_RA} {DEMO_DEC} 0.003")])
    answer = soda.plan_soda(ctx, req)
    assert isinstance(answer, FileStreamAnswer) and answer.media_type == "application/fits"
    data = _built(answer.member)
    nx, ny = answer.stats.nx, answer.stats.ny
    assert len(data) == answer.member.nbytes and answer.stats.frames == 10 and nx * ny > 1
    with fits.open(io.BytesIO(data)) as hdul, fits.open(cubes["spoc38"]) as cube:
        flux = hdul[1].data["FLUX"]
        x0, y0 = hdul[1].header["1CRV5P"] - 1, hdul[1].header["2CRV5P"] - 1  # the window's first pixel
        expected = cube[1].data[y0:y0 + ny, x0:x0 + nx, :, 0].transpose(2, 0, 1)  # (frames, rows, columns)
        assert flux.shape == (10, ny, nx)
        np.testing.assert_array_equal(flux, expected)
    off = soda.plan_soda(ctx, soda.parse_soda([("ID", "tess-s0038-2-2"), ("CIRCLE", "10 20 0.01")]))
    assert isinstance(off, NoData) and off.status == 204
    with pytest.raises(NotFoundError):
        soda.plan_soda(ctx, soda.parse_soda([("ID", "tess-s0099-1-1")]))


# ------------------------------------------------------------------------------------------
# Zcut and Hapcut
# ------------------------------------------------------------------------------------------


def _select(ctx, survey_locations, params, *, hap: bool = False):
    """The selection the Zcut/Hapcut routes make (app.routers.zcut), from the context's index."""
    return surveys.select(ctx.surveys.current, params.ra, params.dec, params.size,
                          surveys=() if hap else params.survey,
                          roots=lambda name: split_locations(survey_locations.get(name, [])),
                          exclude=() if hap else ("hap",), only="hap" if hap else None)


def test_plan_survey_names_leaves_out_hapcuts_survey(ctx):
    assert surveys.plan_survey_names(ctx, SurveyListParams(**POS)) == {"surveys": ["deep"]}
    assert surveys.plan_survey_names(ctx, SurveyListParams(**FAR)) == {"surveys": []}


def test_plan_zcut_fits_is_one_file_per_survey_of_the_engines_cutouts(ctx, survey_locations):
    from core.images.cutouts import fits_cut

    params = ZcutParams(**POS, x=5, y=4)
    selection = _select(ctx, survey_locations, params)
    assert isinstance(selection, surveys.Selection) and selection.count == 2
    assert sorted(selection.shown.values()) == ["deep/img0.fits", "deep/img1.fits"]
    answer = surveys.plan_zcut_fits(ctx, selection, params)
    assert isinstance(answer, ZipAnswer)
    assert answer.filename == f"zcut_{DEMO_RA:.6f}_{DEMO_DEC:.6f}_5x4.zip"
    (member,) = answer.members
    assert member.name == f"deep_{DEMO_RA:.6f}_{DEMO_DEC:.6f}_5.0pix-x-4.0pix_astrocut.fits"
    paths = sorted(image.uri for image in selection.images)
    expected = fits_cut(paths, CENTRE, [5, 4], extension=[1], memory_only=True)[0]
    with fits.open(io.BytesIO(_built(member))) as hdul:
        assert [h.name for h in hdul] == ["PRIMARY", "CUTOUT", "CUTOUT"]
        for ours, theirs in zip(hdul[1:], expected[1:], strict=True):
            np.testing.assert_array_equal(ours.data, theirs.data)
    assert answer.stats == CutoutStats(5, 4, 1, 2)


def test_plan_zcut_images_is_one_image_per_survey_image(ctx, survey_locations):
    from core.images.render import img_cut

    params = ZcutParams(**POS, x=6, format="png", stretch="linear")
    selection = _select(ctx, survey_locations, params)
    answer = surveys.plan_zcut_images(ctx, selection, params)
    label = f"{DEMO_RA:.6f}_{DEMO_DEC:.6f}_6.0pix-x-6.0pix"
    assert [m.name for m in answer.members] == [f"img0_{label}_astrocut.png", f"img1_{label}_astrocut.png"]
    first = next(image.uri for image in selection.images if image.uri.endswith("img0.fits"))
    expected = img_cut([first], CENTRE, 6, stretch="linear", extension=[1], memory_only=True)
    expected = expected[0] if isinstance(expected, list) else expected
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(_built(answer.members[0])))), np.asarray(expected))


def test_plan_hapcut_cuts_every_image_hdu_under_drizzlepacs_name(ctx, survey_locations):
    params = HapcutParams(**POS, x=5, y=5)
    selection = _select(ctx, survey_locations, params, hap=True)
    assert [image.exts for image in selection.images] == [(1, 2)]
    answer = surveys.plan_hapcut(ctx, selection, params)
    (member,) = answer.members
    assert member.name == "hst_cutout_skycell-p1882x12y06-ra217d4289-decs62d6794_uvis_f275w_coarse.fits"
    with fits.open(io.BytesIO(_built(member))) as hdul:
        assert [h.name for h in hdul] == ["PRIMARY", "CUTOUT", "CUTOUT"]
        assert hdul[1].data.shape == hdul[2].data.shape == (5, 5)
    assert answer.stats == CutoutStats(5, 5, 1, 2)


def test_survey_selection_no_data_messages(ctx, survey_locations):
    unknown = _select(ctx, survey_locations, ZcutParams(**POS, x=5, survey="nope"))
    assert unknown == NoData("Survey nope is not hosted on this server; hosted surveys: deep.")
    assert unknown.hosted is None  # Zcut's answers list no sectors
    far = _select(ctx, survey_locations, ZcutParams(**FAR, x=5))
    assert far.message == "The position RA 10.000000 Dec 20.000000 is on no image of the hosted surveys."
    assert _select(ctx, survey_locations, HapcutParams(**FAR, x=5), hap=True) == NoData(surveys.HAP_NO_DATA)


# ------------------------------------------------------------------------------------------
# costs: from the parameters and the settings only, refusing past-limit parameters first
# ------------------------------------------------------------------------------------------


def _selection(size: CutoutSize) -> surveys.Selection:
    return surveys.Selection(DEMO_RA, DEMO_DEC, size, [], {})


EPHEMERIS = {"time": [2300.0, 2301.0], "ra": [DEMO_RA, DEMO_RA], "dec": [DEMO_DEC, DEMO_DEC]}

PAST_LIMITS = [
    (tesscut.ASTROCUT, lambda: AstrocutParams(**POS, x=51), "x"),
    (tesscut.ASTROCUT, lambda: AstrocutParams(**POS, x=5, y=51), "y"),
    (moving.MOVING_ASTROCUT, lambda: MovingTargetCutParams(ephemeris=EPHEMERIS, x=51), "x"),
    (images.FITS_CUT, lambda: FitsCutParams(**POS, images=["img0.fits"], x=51), "x"),
    (images.FITS_CUT, lambda: FitsCutParams(**POS, images=["img0.fits"] * 17, x=5), "images"),
    (images.IMG_CUT, lambda: ImgCutParams(**POS, images=["img0.fits"], x=5, y=51), "y"),
    (images.COMBINE, lambda: CombineParams(**POS, images=["img0.fits"], x=51), "x"),
    (preview.PREVIEW, lambda: PreviewParams(**POS, x=51), "x"),
    (preview.PREVIEW, lambda: PreviewParams(**POS, x=5, y=51), "y"),
    (lightcurve.FRAME, lambda: FrameParams(**POS, x=51, frame=3), "x"),
    (lightcurve.LIGHTCURVE, lambda: LightCurveParams(**POS, aperture=51), "aperture"),
    (lightcurve.LIGHTCURVE, lambda: LightCurveParams(**POS, mask="1" * 51), "mask"),
    (surveys.ZCUT_FITS, lambda: _selection(CutoutSize(51, 5)), "x"),
    (surveys.ZCUT_IMAGES, lambda: _selection(CutoutSize(5, 51)), "y"),
    (surveys.HAPCUT, lambda: _selection(CutoutSize(51, 51)), "x"),
]


@pytest.mark.parametrize("planner, params, field", PAST_LIMITS,
                         ids=[f"{p.plan.__name__}-{f}" for p, _, f in PAST_LIMITS])
def test_costs_refuse_past_limit_parameters_before_reading_anything(bare, planner, params, field):
    with pytest.raises(TooLargeError) as info:
        planner.cost(bare, params())
    assert info.value.field == field


WITHIN_LIMITS = [
    (tesscut.SECTOR, lambda: SectorParams(**POS)),
    (tesscut.FFI_WCS, lambda: FfiWcsParams(sector=38, camera=2, ccd=2)),
    (moving.MOVING_SECTOR, lambda: MovingTargetSectorParams(ephemeris=EPHEMERIS)),
    (surveys.SURVEY_NAMES, lambda: SurveyListParams(**POS)),
    (soda.SYNC, lambda: soda.parse_soda([("ID", "tess-s0038-2-2"), ("CIRCLE", f"{DEMO_RA} {DEMO_DEC} 0.01")])),
    (tesscut.ASTROCUT, lambda: AstrocutParams(**POS, x=50, y=8)),
    (tesscut.ASTROCUT, lambda: AstrocutParams(**POS, x=0.01, units="d")),  # angular: checked once converted
    (moving.MOVING_ASTROCUT, lambda: MovingTargetCutParams(ephemeris=EPHEMERIS, x=50, y=8)),
    (images.FITS_CUT, lambda: FitsCutParams(**POS, images=["img0.fits"] * 16, x=50, y=50)),
    (images.IMG_CUT, lambda: ImgCutParams(**POS, images=["img0.fits"], x=5)),
    (images.COMBINE, lambda: CombineParams(images=["img0.fits"], x=5)),
    (preview.PREVIEW, lambda: PreviewParams(**POS, x=50, y=50)),
    (lightcurve.FRAME, lambda: FrameParams(**POS, x=9, frame=3)),
    (lightcurve.LIGHTCURVE, lambda: LightCurveParams(**POS, aperture=50)),
    (surveys.ZCUT_FITS, lambda: _selection(CutoutSize(50, 50))),
    (surveys.HAPCUT, lambda: _selection(CutoutSize(0.001, 0.001, "deg"))),
]


@pytest.mark.parametrize("planner, params", WITHIN_LIMITS,
                         ids=[f"{p.plan.__name__}-{i}" for i, (p, _) in enumerate(WITHIN_LIMITS)])
def test_costs_within_the_limits_are_worked_out_without_reading_anything(bare, planner, params):
    cost = planner.cost(bare, params())
    assert isinstance(cost, Cost) and cost.memory >= 0 and cost.disk >= 0
    if planner in (tesscut.SECTOR, tesscut.FFI_WCS, surveys.SURVEY_NAMES, soda.SYNC):
        assert cost == NO_COST  # look-ups hold nothing worth admitting; SODA's TPF is admitted as it is made
    if planner in (preview.PREVIEW, lightcurve.LIGHTCURVE, images.FITS_CUT, moving.MOVING_ASTROCUT,
                   moving.MOVING_SECTOR, tesscut.ASTROCUT):
        assert cost.memory > 0  # what planning holds is admitted first


def test_image_cost_refuses_a_request_without_images_before_reading_anything(bare):
    with pytest.raises(InvalidInputError) as info:
        images.FITS_CUT.cost(bare, FitsCutParams(**POS, x=5))
    assert info.value.field == "images"


def test_a_zip_answers_size_is_known_only_when_every_members_is(ctx):
    answer = tesscut.plan_astrocut(ctx, AstrocutParams(**POS, x=5, sector=(38,)))
    assert answer.nbytes == answer.members[0].nbytes > 0
    assert answer.memory_bytes == answer.members[0].memory_bytes
    answer.members[0].nbytes = 0  # a member of unknown size: the total is unknown too
    assert answer.nbytes == 0
