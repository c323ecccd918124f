"""Temporary names, stale-file removal and whole writes (core.storage.atomic): the one scheme that
atomic outputs, TPF pixel spools and cubes being built share; and through every engine function
that writes a file, outputs with the mode ``open()`` would give them (the umask, not a temporary
file's 0600) and an UnavailableError naming the parameter when an output cannot be written."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys

import numpy as np
import pytest

from core.errors import UnavailableError
from core.storage.atomic import atomic_output, pwrite_all, remove_stale_temporaries, temporary_file
from core.synthetic.ffis import DEMO_DEC, DEMO_RA

CENTRE = f"{DEMO_RA} {DEMO_DEC}"


def _dead_pid() -> int:
    """The id of a process that has finished (and been reaped)."""
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                           text=True, check=True)
    return int(child.stdout)


def test_a_temporary_name_carries_the_process_id_and_is_never_reused(tmp_path):
    first = temporary_file(tmp_path, "cube.fits.partial-")
    second = temporary_file(tmp_path, "cube.fits.partial-")
    pattern = rf"cube\.fits\.partial-{os.getpid()}-[0-9a-f]{{12}}"
    assert re.fullmatch(pattern, os.path.basename(first)) and re.fullmatch(pattern, os.path.basename(second))
    assert first != second and os.path.getsize(first) == 0
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(first).st_mode & 0o777 == 0o666 & ~umask
    assert os.stat(temporary_file(tmp_path, "tpf-spool-", ".bin", mode=0o600)).st_mode & 0o777 == 0o600


def test_an_atomic_output_is_written_under_such_a_name_and_removed_on_failure(tmp_path):
    target = tmp_path / "out" / "a.fits"
    with atomic_output(target) as tmp:
        assert re.fullmatch(rf"\.a\.fits\.{os.getpid()}-[0-9a-f]{{12}}\.part", os.path.basename(tmp))
        with open(tmp, "wb") as fh:
            fh.write(b"whole")
    assert target.read_bytes() == b"whole" and os.listdir(target.parent) == ["a.fits"]
    with pytest.raises(UnavailableError) as failed, atomic_output(tmp_path / "out" / "b.fits", field="where"):
        raise OSError(5, "I/O error")
    assert failed.value.field == "where" and os.listdir(target.parent) == ["a.fits"]


def test_stale_temporaries_are_those_of_dead_processes(tmp_path):
    dead = tmp_path / f"tpf-spool-{_dead_pid()}-abc.bin"
    mine = tmp_path / f"tpf-spool-{os.getpid()}-abc.bin"
    alive = tmp_path / f"tpf-spool-{os.getppid()}-abc.bin"
    unnamed = tmp_path / "tpf-spool-killed.bin"  # not a name temporary_file gives: kept
    other = tmp_path / f"other-{_dead_pid()}-abc.bin"
    for p in (dead, mine, alive, unnamed, other):
        p.write_bytes(b"x")
    assert remove_stale_temporaries(tmp_path, "tpf-spool-", ".bin") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in (mine, alive, unnamed, other))
    # any_owner: every file of that prefix and suffix, whoever made it
    assert remove_stale_temporaries(tmp_path, "tpf-spool-", ".bin", any_owner=True) == 3
    assert [p.name for p in tmp_path.iterdir()] == [other.name]


def test_pwrite_all_writes_everything_when_the_system_writes_less(tmp_path, monkeypatch):
    real = os.pwrite
    calls = []

    def short(fd, data, offset):  # a system call may write fewer bytes than asked
        calls.append(len(data))
        return real(fd, bytes(data)[:3], offset)

    monkeypatch.setattr(os, "pwrite", short)
    path = tmp_path / "f"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        pwrite_all(fd, b"0123456789", 0)
        pwrite_all(fd, np.arange(3, dtype=">i4"), 10)
        pwrite_all(fd, memoryview(b""), 22)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"0123456789" + np.arange(3, dtype=">i4").tobytes()
    assert len(calls) == 4 + 4 and calls[0] == 10


def test_output_files_honour_the_umask(spoc_sector, spoc_cube, tmp_path):
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


def test_unwritable_outputs_are_unavailable_naming_the_parameter(spoc_sector, spoc_cube, tmp_path):
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
