"""core.storage.atomic through every engine function that writes a file: outputs get the mode
``open()`` would give them (the umask, not a temporary file's 0600), and an output that cannot be
written is an UnavailableError naming the parameter that chose where."""

from __future__ import annotations

import os
import stat

import pytest

from core.errors import UnavailableError
from core.synthetic.ffis import DEMO_DEC, DEMO_RA

CENTRE = f"{DEMO_RA} {DEMO_DEC}"


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
