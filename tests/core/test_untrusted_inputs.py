"""The engine holds what it reads to the configuration, not the other way round: files in a data
folder are untrusted (only regular files are opened, a walk never leaves its root nor loops, one
nonsensical file is skipped), the catalog index is trusted no more than the configured cube
locations (rows elsewhere ignored, a damaged index rebuilt or ignored, an unwritable one named by
its setting), sizes that no image could hold are refused as such, and a batch's target table and
manifest are read and written as untrusted text.

Each test here failed before these rules were built in (a hang, a crash, a raw OverflowError, a
row served from outside the configuration); hangs are caught with a thread and a generous join.
"""

from __future__ import annotations

import csv
import os
import shutil
import sqlite3
import threading
import warnings

import astropy.units as u
import pytest

from core.catalog.index import CatalogIndex
from core.catalog.scan import list_cubes
from core.errors import CutoutError, InvalidInputError, NotFoundError, TooLargeError
from core.synthetic.ffis import DEMO_DEC, DEMO_RA

COORD = f"{DEMO_RA} {DEMO_DEC}"
#: seconds a call that used to hang for ever gets before the test fails (generous: busy CI)
HANG_S = 60


def _finishes(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` on a daemon thread; its result, or a failure if it does not end."""
    box: dict = {}

    def run():
        try:
            box["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(HANG_S)
    assert not thread.is_alive(), f"{getattr(fn, '__name__', fn)} did not finish within {HANG_S} s"
    if "error" in box:
        raise box["error"]
    return box["value"]


@pytest.fixture
def cube_folder(spoc_cube, tmp_path):
    """A cube folder holding one good cube (SPOC sector 38)."""
    folder = tmp_path / "cubes"
    folder.mkdir()
    shutil.copy(spoc_cube, folder / "tess-s0038-2-2-cube.fits")
    return folder


def _set_card(path, keyword: str, value: str) -> None:
    """Overwrite the value of ``keyword`` in the header of HDU 1 of a FITS file, in place."""
    from pathlib import Path

    data = bytearray(Path(path).read_bytes())
    end = next(i for i in range(0, len(data), 80) if data[i:i + 8] == b"END     ")
    start = (end // 2880 + 1) * 2880  # HDU 1's header follows the primary header's last block
    for card in range(start, len(data), 80):
        if data[card:card + 8] == keyword.ljust(8).encode():
            data[card + 10:card + 30] = value.rjust(20).encode()
            Path(path).write_bytes(bytes(data))
            return
    raise AssertionError(f"no {keyword} in HDU 1")


# -- one nonsensical file ------------------------------------------------------------------------


def test_a_cube_whose_header_overflows_is_skipped_not_fatal(cube_folder, tmp_path, caplog):
    bad = cube_folder / "tess-s0039-2-2-cube.fits"
    shutil.copy(cube_folder / "tess-s0038-2-2-cube.fits", bad)
    _set_card(bad, "NAXIS1", "1.0E400")
    index = CatalogIndex(tmp_path / "index.sqlite")
    report = index.update([str(cube_folder)])
    assert report.cubes == 1 and [os.path.basename(u) for u, _ in report.failed] == [bad.name]
    assert [r.sector for r in index.catalog().entries()] == [38]  # the index was written
    assert any(bad.name in rec.getMessage() for rec in caplog.records)  # and the file named in the log


# -- the walk ------------------------------------------------------------------------------------


def test_a_link_to_its_own_folder_indexes_each_cube_once(cube_folder):
    (cube_folder / "again").symlink_to(".")
    assert len(list_cubes([str(cube_folder)])) == 1


def test_two_links_looping_back_end_the_walk(cube_folder):
    (cube_folder / "a").symlink_to(".")
    (cube_folder / "b").symlink_to(".")
    assert len(_finishes(list_cubes, [str(cube_folder)])) == 1


def test_a_link_out_of_the_cube_folder_is_not_followed(cube_folder, spoc_cube, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(spoc_cube, elsewhere / "tess-s0011-2-2-cube.fits")
    (cube_folder / "out").symlink_to(elsewhere)
    (cube_folder / "tess-s0012-2-2-cube.fits").symlink_to(elsewhere / "tess-s0011-2-2-cube.fits")
    found = list_cubes([str(cube_folder)])
    assert [os.path.basename(p) for p in found] == ["tess-s0038-2-2-cube.fits"]


def test_a_fifo_named_like_a_cube_does_not_block_the_index(cube_folder, tmp_path):
    os.mkfifo(cube_folder / "tess-s0040-2-2-cube.fits")
    index = CatalogIndex(tmp_path / "index.sqlite")
    report = _finishes(index.update, [str(cube_folder)])
    assert report.cubes == 1


def test_a_fifo_is_never_opened_as_data(tmp_path):
    from core.storage.range_file import open_fits
    from core.storage.sources import open_source

    fifo = tmp_path / "image.fits"
    os.mkfifo(fifo)
    for opener in (open_source, open_fits):
        with pytest.raises(NotFoundError, match="regular file"):
            _finishes(opener, str(fifo))


def test_a_fifo_in_a_survey_folder_does_not_block_the_image_index(service_data, tmp_path):
    from core.images.index import ImageIndex

    _cubes, image_root, images = service_data
    folder = tmp_path / "survey"
    folder.mkdir()
    shutil.copy(image_root / images[0], folder / "a.fits")
    os.mkfifo(folder / "b.fits")
    (folder / "loop").symlink_to(".")
    index = _finishes(ImageIndex.build, {"s": [str(folder)]}, threads=1)
    assert {os.path.basename(e.uri) for e in index.entries} == {"a.fits"}
    assert "b.fits" in {os.path.basename(u) for u, _ in index.skipped}


# -- the index -----------------------------------------------------------------------------------


def _damage_cubes_table(path) -> None:
    """Overwrite one page of the ``cubes`` table's data with garbage (the file stays a database)."""
    con = sqlite3.connect(path)
    page = con.execute("PRAGMA page_size").fetchone()[0]
    root = con.execute("SELECT rootpage FROM sqlite_master WHERE name = 'cubes'").fetchone()[0]
    con.close()
    with open(path, "r+b") as fh:
        fh.seek((root - 1) * page)
        fh.write(b"\xa5" * page)


def _settings(tmp_path, **values):
    from app.settings import Settings

    return Settings(work_dir=tmp_path / "work", **values)


def test_a_damaged_index_is_rebuilt_by_a_writer_and_ignored_by_a_reader(cube_folder, tmp_path, caplog):
    from app.catalog import CatalogService

    location = tmp_path / "index.sqlite"
    CatalogIndex(location).update([str(cube_folder)])
    _damage_cubes_table(location)
    reader = CatalogService(_settings(tmp_path, cube_dirs=[str(cube_folder)], index=str(location), index_writer=False))
    assert reader.load() == 0  # start-up does not fail; nothing trustworthy to serve yet
    reader.refresh()  # nor does a refresh
    writer = CatalogService(_settings(tmp_path, cube_dirs=[str(cube_folder)], index=str(location)))
    assert writer.load() == 1  # rebuilt from the cube folder
    assert [r.sector for r in writer.current.entries()] == [38]
    assert reader.load() == 1  # and the reader reads the rebuilt index
    assert any("damaged" in rec.getMessage() for rec in caplog.records)


def test_index_rows_outside_the_cube_folders_are_ignored(cube_folder, spoc_cube, tmp_path):
    from app.catalog import CatalogService

    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(spoc_cube, other / "tess-s0011-2-2-cube.fits")
    location = tmp_path / "shared.sqlite"
    CatalogIndex(location).update([str(cube_folder), str(other)])  # whoever wrote it listed both
    reader = CatalogService(_settings(tmp_path, cube_dirs=[str(cube_folder)], index=str(location), index_writer=False))
    reader.load()
    assert [r.sector for r in reader.current.entries()] == [38]


def test_an_unwritable_index_location_names_the_setting(cube_folder, tmp_path):
    from app.catalog import CatalogService

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    for location in (blocker / "catalog.sqlite", blocker / "index" / "catalog.sqlite"):
        service = CatalogService(_settings(tmp_path, cube_dirs=[str(cube_folder)], index=str(location)))
        with pytest.raises(CutoutError) as info:
            service.load()
        assert "CUTOUT_INDEX" in info.value.message and "File exists" not in info.value.message
        assert f"{blocker} is not a folder" in info.value.message


# -- sizes no image holds ------------------------------------------------------------------------


def test_a_size_of_1e308_degrees_is_refused_by_every_entry_point(spoc_cube, service_data, tmp_path):
    from core.astrocut_api.fits_cutout import FITSCutout
    from core.astrocut_api.tess_cube_cutout import TessCubeCutout
    from core.images.cutouts import fits_cut
    from core.images.render import img_cut
    from core.tpf.cut import cube_cut

    _cubes, image_root, images = service_data
    image = str(image_root / images[0])
    huge = 1e308 * u.deg
    calls = {
        "cube_cut": lambda: cube_cut(spoc_cube, COORD, huge, output_path=tmp_path),
        "fits_cut": lambda: fits_cut(image, COORD, huge, output_dir=tmp_path),
        "img_cut": lambda: img_cut(image, COORD, huge, output_dir=tmp_path),
        "TessCubeCutout": lambda: TessCubeCutout(spoc_cube, COORD, huge),
        "FITSCutout": lambda: FITSCutout(image, COORD, huge),
    }
    for name, call in calls.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pytest.raises((TooLargeError, InvalidInputError)) as info:
                call()
        assert info.value.field and info.value.field.startswith("cutout_size"), name


def test_get_tess_sectors_says_what_is_wrong_with_a_huge_radius():
    from core.astrocut_api.tess_footprint_cutout import get_tess_sectors
    from core.catalog.snapshot import Catalog

    with pytest.raises(InvalidInputError) as info:
        get_tess_sectors(COORD, 1e308, catalog=Catalog([]))
    assert "negative" not in info.value.message and "wider" in info.value.message


# -- the batch's target table and manifest -------------------------------------------------------

FORMULAS = ["=cmd|' /C calc'!A0", "+SUM(1,2)", "@HYPERLINK(\"http://x\")", "-2+3", "'quoted"]


def test_a_batch_manifest_never_holds_a_formula_and_reads_back(tmp_path):
    from core.batch.cutouts import _previous_outputs, plan_batch
    from core.batch.manifest import write_manifest
    from core.catalog.snapshot import Catalog

    table = tmp_path / "targets.csv"
    with open(table, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["ra", "dec", "name"])
        for name in FORMULAS:
            writer.writerow([DEMO_RA, DEMO_DEC, name])
    plan = plan_batch(str(table), size=5, out_dir=tmp_path / "out", catalog=Catalog([]))
    path = write_manifest(tmp_path / "manifest.csv", plan.rows)
    with open(path, newline="") as fh:
        names = [row["name"] for row in csv.DictReader(fh)]
    assert names == ["'" + n for n in FORMULAS]
    assert _previous_outputs(path) == {}  # read back without error (no row finished)


def test_a_batch_refuses_non_ascii_digits_and_keeps_going_past_a_huge_cell(tmp_path):
    from core.batch.targets import read_targets

    table = tmp_path / "targets.csv"
    table.write_text("ra,dec,name\n"
                     "\u0662\u0661\u0667.4,-62.6,arabic\n"  # Arabic-Indic 217.4
                     f"{DEMO_RA},{DEMO_DEC},{'x' * 200_000}\n"
                     f"{DEMO_RA},{DEMO_DEC},fine\n", encoding="utf-8")
    targets = read_targets(str(table))
    assert len(targets) == 3
    assert targets[0].error and "ASCII" in targets[0].error and targets[0].ra is None
    assert targets[1].error and targets[1].ra is None  # the over-long row alone is bad
    assert targets[2].error == "" and targets[2].name == "fine"
