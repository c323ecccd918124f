"""Tests of core.building.factory: the cube must be astrocut 1.4.0's, built with bounded memory and safely."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits

from core.building.factory import CubeFactory, TicaCubeFactory
from core.errors import CorruptFileError, DataWarning, InvalidInputError, NotFoundError, UnavailableError
from core.synthetic.ffis import DEMO_DEC, DEMO_RA, write_sector

# Cards that legitimately differ between two builds: the build date and the timestamp astropy puts
# in the DATASUM comment when astrocut re-opens its cube in update mode.
# The table header carries the template FFI's comments, whose CHECKSUM/DATASUM comments hold the
# time that FFI was written: they differ when the template differs (first FFI of the input list).
VOLATILE = {"DATE", "DATASUM", "CHECKSUM"}


def _files(sector) -> list[str]:
    return [str(f) for f in sector.ffi_files]


def _astrocut_cube(files, out, sector=38):
    import astrocut

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return astrocut.CubeFactory().make_cube(files, str(out), sector=sector, verbose=False)


def _cards(header: fits.Header) -> list[tuple]:
    return [(c.keyword, c.value if c.keyword not in VOLATILE else None,
             c.comment if c.keyword not in VOLATILE else None) for c in header.cards]


def _regions(path) -> dict[str, bytes]:
    """The file's bytes split into primary header, image header, image data, table HDU."""
    raw = Path(path).read_bytes()
    with fits.open(path) as h:
        i1, i2 = h.fileinfo(1), h.fileinfo(2)
    return {"image_header": raw[i1["hdrLoc"]:i1["datLoc"]], "data": raw[i1["datLoc"]:i2["hdrLoc"]],
            "table_header": raw[i2["hdrLoc"]:i2["datLoc"]], "table_data": raw[i2["datLoc"]:]}


@pytest.fixture(scope="module")
def astrocut_cube(spoc_sector, tmp_path_factory):
    out = tmp_path_factory.mktemp("astrocut") / "astrocut-cube.fits"
    return _astrocut_cube(_files(spoc_sector)[::-1], out)


@pytest.fixture(scope="module")
def our_cube(spoc_sector, tmp_path_factory):
    out = tmp_path_factory.mktemp("ours") / "tess-s0038-2-2-cube.fits"
    return CubeFactory().make_cube(_files(spoc_sector)[::-1], out, sector=38, verbose=False)


# ---------------------------------------------------------------------------------------- format


def test_layout_equals_astrocut(our_cube, astrocut_cube):
    with fits.open(our_cube) as ours, fits.open(astrocut_cube) as theirs:
        assert len(ours) == len(theirs) == 3
        assert [type(h) for h in ours] == [type(h) for h in theirs]
        for i in range(3):
            assert _cards(ours[i].header) == _cards(theirs[i].header), f"HDU {i} header differs"
        assert ours[0].header["DATE"] == theirs[0].header["DATE"]
        assert ours[1].data.dtype == np.dtype(">f4")
        assert ours[1].data.shape == (64, 64, 10, 2)
        assert list(ours[1].header.keys()) == ["XTENSION", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "NAXIS3",
                                               "NAXIS4", "PCOUNT", "GCOUNT"]
        np.testing.assert_array_equal(ours[1].data, theirs[1].data)
        assert ours[2].columns.names == theirs[2].columns.names
        assert ours[2].columns.formats == theirs[2].columns.formats
        for name in theirs[2].columns.names:
            a, b = ours[2].data[name], theirs[2].data[name]
            if a.dtype.kind == "f":
                np.testing.assert_array_equal(a, b)
            else:
                assert list(a) == list(b), name
    # Byte for byte outside the volatile cards: image header, data and table HDU.
    assert _regions(our_cube) == _regions(astrocut_cube)


def test_content_is_the_ffis_in_time_order(our_cube, spoc_sector):
    with fits.open(our_cube) as cube:
        data = cube[1].data
        table = cube[2].data
        assert list(table["FFI_FILE"]) == [f.name for f in spoc_sector.ffi_files]
        assert np.all(np.diff(table["TSTART"]) > 0)
        for t, f in enumerate(spoc_sector.ffi_files):
            with fits.open(f) as ffi:
                np.testing.assert_array_equal(data[:, :, t, 0], ffi[1].data)
                np.testing.assert_array_equal(data[:, :, t, 1], ffi[2].data)
        h = cube[0].header
        assert h["ORIGIN"] == "STScI/MAST" and h["SECTOR"] == 38 and h["CAMERA"] == 2 and h["CCD"] == 2
        assert "CHECKSUM" not in h
        assert h["TSTOP"] == pytest.approx(spoc_sector.tstop[-1])
        assert h["TSTART"] == pytest.approx(spoc_sector.tstart[0])


def test_astrocut_cube_cut_reads_our_cube(our_cube, astrocut_cube):
    import astrocut

    coord = SkyCoord(DEMO_RA, DEMO_DEC, unit="deg")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mine = astrocut.CutoutFactory().cube_cut(our_cube, coord, 7, memory_only=True, verbose=False)
        ref = astrocut.CutoutFactory().cube_cut(astrocut_cube, coord, 7, memory_only=True, verbose=False)
    for col in ("FLUX", "FLUX_ERR", "TIME", "QUALITY"):
        np.testing.assert_array_equal(mine[1].data[col], ref[1].data[col])
    assert np.isfinite(mine[1].data["FLUX"]).all() and mine[1].data["FLUX"].shape == (10, 7, 7)


def test_sector_inferred_when_not_given(spoc_sector, tmp_path):
    out = CubeFactory().make_cube(_files(spoc_sector), tmp_path / "c.fits", verbose=False)
    assert fits.getheader(out)["SECTOR"] == 38


# ---------------------------------------------------------------------------------------- memory


def test_blocked_build_equals_single_pass(spoc_sector, tmp_path, our_cube):
    calls = []
    out = CubeFactory(max_memory=1e-6).make_cube(_files(spoc_sector), tmp_path / "blocked.fits", sector=38,
                                                 verbose=False, progress=lambda d, n: calls.append((d, n)))
    assert calls[0] == (0, 64) and calls[-1] == (64, 64)  # one row per block: 64 blocks
    assert [d for d, _ in calls] == list(range(65))
    mine, ref = _regions(out), _regions(our_cube)
    for key in ("image_header", "data", "table_data"):
        assert mine[key] == ref[key], key
    with fits.open(out) as a, fits.open(our_cube) as b:
        assert all(_cards(a[i].header) == _cards(b[i].header) for i in range(3))


# ---------------------------------------------------------------------------------------- safety


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".partial-" in p.name)


def test_corrupt_ffi_leaves_nothing_then_rerun_succeeds(spoc_sector, tmp_path):
    files = _files(spoc_sector)
    bad = tmp_path / "tess2021118999999-s0038-2-2-0209-s_ffic.fits"
    raw = Path(files[3]).read_bytes()
    bad.write_bytes(raw[: len(raw) - 9000])  # truncated inside the error image
    out = tmp_path / "cube.fits"
    with pytest.raises(CorruptFileError) as ei:
        CubeFactory().make_cube(files + [str(bad)], out, verbose=False)
    assert ei.value.field == "file_list" and bad.name in str(ei.value)
    assert not out.exists() and _leftovers(tmp_path) == []
    assert CubeFactory().make_cube(files, out, verbose=False) == str(out)
    assert fits.getheader(out, 1)["NAXIS2"] == 10


def test_disk_full_mid_build_cleans_up(spoc_sector, tmp_path, monkeypatch):
    real = os.pwrite
    count = {"n": 0}

    def failing(fd, data, offset):
        count["n"] += 1
        if count["n"] > 3:  # headers and a few blocks written, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data, offset)

    out = tmp_path / "cube.fits"
    monkeypatch.setattr(os, "pwrite", failing)
    with pytest.raises(UnavailableError, match="disk space") as ei:
        CubeFactory(max_memory=1e-6).make_cube(_files(spoc_sector), out, verbose=False)
    assert isinstance(ei.value.__cause__, OSError) and ei.value.field == "cube_file"
    assert count["n"] > 3
    assert not out.exists() and _leftovers(tmp_path) == []
    monkeypatch.setattr(os, "pwrite", real)
    CubeFactory().make_cube(_files(spoc_sector), out, verbose=False)
    assert fits.getheader(out, 1)["NAXIS2"] == 10


def test_stale_temp_of_dead_process_does_not_block(spoc_sector, tmp_path):
    out = tmp_path / "cube.fits"
    stale = tmp_path / "cube.fits.partial-999999999-deadbeef"
    stale.write_bytes(b"half a cube")
    CubeFactory().make_cube(_files(spoc_sector), out, verbose=False)
    assert out.exists() and not stale.exists()


def test_failed_update_keeps_old_cube(spoc_sector, tmp_path, monkeypatch):
    files = _files(spoc_sector)
    out = tmp_path / "cube.fits"
    CubeFactory().make_cube(files[:5], out, verbose=False)
    before = out.read_bytes()
    monkeypatch.setattr(os, "pwrite", lambda *a: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")))
    with pytest.raises(UnavailableError):
        CubeFactory().make_cube(files[5:], out, update=True, verbose=False)
    assert out.read_bytes() == before and _leftovers(tmp_path) == []


# ---------------------------------------------------------------------------------------- update


@pytest.mark.parametrize("first, second", [(slice(0, 6), slice(4, 10)), (slice(3, 10), slice(0, 5))])
def test_update_merges_in_time_order(spoc_sector, tmp_path, our_cube, first, second):
    files = _files(spoc_sector)
    out = tmp_path / "cube.fits"
    CubeFactory().make_cube(files[first], out, sector=38, verbose=False)
    with pytest.warns(DataWarning, match="Removed duplicate file"), pytest.raises(InvalidInputError, match="No new"):
        CubeFactory().make_cube(files[first], out, update=True, verbose=False)
    with pytest.warns(DataWarning, match="Removed duplicate file"):  # the overlap
        CubeFactory(max_memory=2e-6).make_cube(files[second][::-1], out, sector=38, update=True, verbose=False)
    with fits.open(out) as new, fits.open(our_cube) as full:
        np.testing.assert_array_equal(new[1].data, full[1].data)
        assert new[2].columns.names == full[2].columns.names
        assert new[2].columns.formats == full[2].columns.formats
        for name in full[2].columns.names:
            assert list(new[2].data[name]) == list(full[2].data[name]) or np.array_equal(
                new[2].data[name], full[2].data[name], equal_nan=True), name
        history = [str(v) for v in new[0].header["HISTORY"]]
        assert any("Updated on" in h for h in history)
        assert new[0].header["TSTOP"] == full[0].header["TSTOP"]
        assert new[0].header["TSTART"] == full[0].header["TSTART"] if first.start == 0 else True


def test_update_cube_adds_frames_as_make_cube_update_does(spoc_sector, tmp_path):
    """astrocut's ``update_cube`` gives the cube ``make_cube(..., update=True)`` gives."""
    files = _files(spoc_sector)
    a, b = tmp_path / "a.fits", tmp_path / "b.fits"
    CubeFactory().make_cube(files[:6], a, verbose=False)
    CubeFactory().make_cube(files[:6], b, verbose=False)
    assert CubeFactory().update_cube(files[6:], a, verbose=False) == str(a)
    CubeFactory().make_cube(files[6:], b, verbose=False, update=True)
    with fits.open(a) as ha, fits.open(b) as hb:
        assert ha[1].data.shape[2] == len(files)
        np.testing.assert_array_equal(ha[1].data, hb[1].data)
        np.testing.assert_array_equal(ha[2].data["FFI_FILE"], hb[2].data["FFI_FILE"])


def test_update_rejects_other_ccd_and_missing_cube(spoc_sector, tmp_path):
    out = tmp_path / "cube.fits"
    with pytest.raises(NotFoundError):
        CubeFactory().make_cube(_files(spoc_sector), out, update=True, verbose=False)
    CubeFactory().make_cube(_files(spoc_sector)[:3], out, verbose=False)
    other = write_sector(tmp_path / "cam1", sector=38, camera=1, ccd=2, frames=2, size=(64, 64), seed=3)
    with pytest.raises(InvalidInputError):
        CubeFactory().make_cube(_files(other), out, update=True, verbose=False)


def test_update_with_files_already_in_the_cube_warns_then_refuses(spoc_sector, tmp_path):
    files = _files(spoc_sector)
    out = tmp_path / "cube.fits"
    CubeFactory().make_cube(files[:3], out, verbose=False)
    with pytest.warns(DataWarning) as record, pytest.raises(InvalidInputError, match="No new images") as err:
        CubeFactory().update_cube(files[:2], out, verbose=False)
    assert err.value.field == "file_list"
    # astrocut's warning, one per duplicate, before the error
    assert sorted(str(w.message) for w in record) == sorted(
        f"Removed duplicate file: {os.path.basename(f)}" for f in files[:2])
    with pytest.warns(DataWarning, match=f"Removed duplicate file: {os.path.basename(files[2])}"):
        CubeFactory().update_cube(files[2:5], out, verbose=False)  # the new ones are added
    assert fits.getheader(out, 1)["NAXIS2"] == 5


def test_update_of_a_missing_cube_is_an_invalid_input_as_in_astrocut(spoc_sector, tmp_path):
    missing = tmp_path / "missing-cube.fits"
    for factory in (CubeFactory(), TicaCubeFactory()):
        # astrocut raises InvalidInputError here; the engine's error is also a NotFoundError
        with pytest.raises(InvalidInputError) as err:
            factory.update_cube(_files(spoc_sector), missing, verbose=False)
        assert isinstance(err.value, NotFoundError) and err.value.field == "cube_file"
    assert not missing.exists()


# ---------------------------------------------------------------------------------------- TICA


def test_tica_cube(tica_sector, tmp_path):
    files = _files(tica_sector)
    out = TicaCubeFactory().make_cube(files[::-1], tmp_path / "tica.fits", verbose=False)
    assert CubeFactory(product="tica").product == "TICA"
    with fits.open(out) as cube:
        h = cube[0].header
        assert h["NAXIS"] == 0 and h["ORIGIN"] == "STScI/MAST" and h["SECTOR"] == 38
        assert h["CAMNUM"] == h["CAMERA"] == 2 and h["CCDNUM"] == h["CCD"] == 2
        assert h["ENDTJD"] == pytest.approx(tica_sector.tstop[-1])
        assert h["STARTTJD"] == pytest.approx(tica_sector.tstart[0])
        assert cube[1].data.shape == (64, 64, 10, 1)  # one plane, as astrocut 0.11.1's TICA cubes
        table = cube[2].data
        assert list(table["FFI_FILE"]) == [f.name for f in tica_sector.ffi_files]
        assert np.all(np.diff(table["STARTTJD"]) > 0)
        assert cube[2].columns["CTYPE2"].format == "12A" and cube[2].columns["QUAL_BIT"].format == "J"
        for t, f in enumerate(tica_sector.ffi_files):
            np.testing.assert_array_equal(cube[1].data[:, :, t, 0], fits.getdata(f, 0))


def test_tica_file_given_to_spoc_factory(tica_sector, tmp_path):
    with pytest.raises(CorruptFileError, match="SPOC"):
        CubeFactory().make_cube(_files(tica_sector), tmp_path / "c.fits", verbose=False)


# ---------------------------------------------------------------------------------------- bad input


def test_bad_inputs(spoc_sector, spoc_sector_b, tmp_path):
    files = _files(spoc_sector)
    f = CubeFactory()
    with pytest.raises(InvalidInputError) as ei:
        f.make_cube([], tmp_path / "c.fits", verbose=False)
    assert ei.value.field == "file_list"
    with pytest.raises(NotFoundError):
        f.make_cube(files + [str(tmp_path / "nope.fits")], tmp_path / "c.fits", verbose=False)
    with pytest.raises(InvalidInputError, match="more than one sector"):
        f.make_cube(files + _files(spoc_sector_b), tmp_path / "c.fits", verbose=False)
    with pytest.raises(InvalidInputError) as ei:
        f.make_cube(files, tmp_path / "c.fits", sector=11, verbose=False)
    assert ei.value.field == "sector"
    other_ccd = write_sector(tmp_path / "ccd3", sector=38, camera=2, ccd=3, frames=1, size=(64, 64), seed=2)
    with pytest.raises(InvalidInputError, match="camera/CCD"):
        f.make_cube(files + _files(other_ccd), tmp_path / "c.fits", verbose=False)
    small = write_sector(tmp_path / "small", sector=38, frames=1, size=(32, 64), center=(DEMO_RA, DEMO_DEC),
                         seed=5)
    with pytest.raises(InvalidInputError, match="one shape"):
        f.make_cube(files + _files(small), tmp_path / "c.fits", verbose=False)
    text = tmp_path / "notes-s0038-.fits"
    text.write_text("not a FITS file at all\n" * 200)
    with pytest.raises(CorruptFileError):
        f.make_cube(files + [str(text)], tmp_path / "c.fits", verbose=False)
    with pytest.raises(InvalidInputError) as ei:
        CubeFactory(product="K2")
    assert ei.value.field == "product"
    for bad in (0, -1, "lots", float("nan")):
        with pytest.raises(InvalidInputError) as ei:
            f.make_cube(files, tmp_path / "c.fits", max_memory=bad, verbose=False)
        assert ei.value.field == "max_memory"
    assert not (tmp_path / "c.fits").exists() and _leftovers(tmp_path) == []


# ---------------------------------------------------------------------------------------- output


def test_quiet_and_verbose(spoc_sector, tmp_path, capsys, caplog):
    with caplog.at_level(logging.DEBUG, logger="core.building.factory"):
        CubeFactory().make_cube(_files(spoc_sector), tmp_path / "q.fits", verbose=False)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    assert [r for r in caplog.records if r.name == "core.building.factory"] == []
    # verbose prints (astrocut's lines: a logger nobody configured would show nothing)
    CubeFactory().make_cube(_files(spoc_sector), tmp_path / "v.fits", verbose=True)
    out = capsys.readouterr().out
    assert "Completed file 0 in" in out and f"Completed file {len(_files(spoc_sector)) - 1} in" in out
    assert "block 1/1" in out and "Write time:" in out and "Total time elapsed:" in out


def test_output_directory_created_and_path_returned(spoc_sector, tmp_path):
    out = tmp_path / "a" / "b" / "cube.fits"
    assert CubeFactory().make_cube(_files(spoc_sector)[:2], out, verbose=False) == str(out)
    shutil.rmtree(tmp_path / "a")
