"""Engine faults: a disk that fills up while a cube is written, truncated and corrupt cubes.

Disk full is simulated by making ``os.pwrite`` (what CubeFactory writes with) or
``os.posix_fallocate`` raise ``OSError(ENOSPC)``; no tmpfs or root needed.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from core.building.factory import CubeFactory
from core.cubes.cache import clear_cache, open_cube
from core.errors import CorruptFileError, UnavailableError

pytestmark = pytest.mark.timeout(60)


def _disk_full_after(monkeypatch, calls: int) -> list[int]:
    """Let ``calls`` pwrite calls through, then fail every one with ENOSPC; returns the call log."""
    real = os.pwrite
    log: list[int] = []

    def pwrite(fd, data, offset):
        log.append(offset)
        if len(log) > calls:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", pwrite)
    return log


def _leftovers(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.mark.parametrize("good_writes", [0, 1, 2])  # headers, pixel band, table
def test_disk_full_while_writing_leaves_nothing_and_a_rerun_succeeds(spoc_sector, tmp_path, monkeypatch,
                                                                     good_writes):
    """Guards against: a half-written cube left under its final name (it would be indexed and
    served), a stray ``.partial`` file filling the disk further, a raw OSError instead of a clear
    error, and a factory left unusable after the failure."""
    files = [str(f) for f in spoc_sector.ffi_files]
    out = tmp_path / "tess-s0038-2-2-cube.fits"
    log = _disk_full_after(monkeypatch, good_writes)
    with pytest.raises(UnavailableError) as info:
        CubeFactory().make_cube(files, str(out), verbose=False)
    assert len(log) > good_writes  # the failure really came from a write
    assert "disk space" in info.value.message and info.value.field == "cube_file"
    assert isinstance(info.value.__cause__, OSError) and info.value.__cause__.errno == errno.ENOSPC
    assert _leftovers(tmp_path) == []  # neither the cube nor its temporary file
    monkeypatch.undo()
    CubeFactory().make_cube(files, str(out), verbose=False)
    assert _leftovers(tmp_path) == [out.name]
    clear_cache()
    cube = open_cube(str(out))
    assert (cube.nframes, cube.ny, cube.nx) == (10, 64, 64)


def test_disk_full_on_preallocation(spoc_sector, tmp_path, monkeypatch):
    """Guards against: the early space reservation failing into a traceback or a leftover file."""

    def fallocate(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", fallocate)
    out = tmp_path / "tess-s0038-2-2-cube.fits"
    with pytest.raises(UnavailableError, match="disk space"):
        CubeFactory().make_cube([str(f) for f in spoc_sector.ffi_files], str(out), verbose=False)
    assert _leftovers(tmp_path) == []


def test_failed_rebuild_keeps_the_previous_cube_intact(spoc_sector, tmp_path, monkeypatch):
    """Guards against: a rebuild that dies half-way destroying the good cube already served."""
    files = [str(f) for f in spoc_sector.ffi_files]
    out = tmp_path / "tess-s0038-2-2-cube.fits"
    CubeFactory().make_cube(files, str(out), verbose=False)
    before = out.read_bytes()
    _disk_full_after(monkeypatch, 2)
    with pytest.raises(UnavailableError):
        CubeFactory().make_cube(files, str(out), verbose=False)
    assert _leftovers(tmp_path) == [out.name]
    assert out.read_bytes() == before


def test_truncated_and_corrupt_cubes_raise_corrupt_file_error(spoc_cube, tmp_path):
    """Guards against: broken cube files surfacing as IndexError/ValueError/astropy tracebacks
    (a 500) instead of CorruptFileError (a 422 naming the file)."""
    data = Path(spoc_cube).read_bytes()
    cases = {
        "half.fits": data[: len(data) // 2],
        "headers-only.fits": data[: 2 * 2880],
        "tiny.fits": data[:100],
        "no-table.fits": data[: len(data) - 2880],
        "garbage-header.fits": data[:80] + os.urandom(1920) + data[2000:],
        "not-fits.fits": b"\x89PNG" + data[4:],
    }
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(CorruptFileError) as info:
            open_cube(str(path))
        assert name in info.value.message, info.value.message


def test_cube_truncated_after_opening_raises_corrupt_file_error(spoc_cube, tmp_path):
    """Guards against: a cube shrinking under a cached, opened Cube giving zeros or garbage
    pixels (a short read taken as data) instead of an error."""
    import shutil

    path = tmp_path / "tess-s0038-2-2-cube.fits"
    shutil.copy(spoc_cube, path)
    clear_cache()
    cube = open_cube(str(path))
    assert cube.read_block(0, 4, 0, 4).shape == (4, 4, 10, 2)
    os.truncate(path, cube.data_offset + 100)
    for threads in (1, 4):
        with pytest.raises(CorruptFileError, match="shrank|truncated"):
            cube.read_block(30, 40, 30, 40, threads=threads)
