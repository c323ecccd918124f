"""core.cutout_size: the engine's default limits (``Limits.engine_default``) hold wherever the engine
takes a size: sizes no machine could cut are a TooLargeError naming ``cutout_size``, not a
MemoryError or a raw numpy error."""

from __future__ import annotations

import pytest

from core.errors import TooLargeError
from core.synthetic.ffis import DEMO_DEC, DEMO_RA

CENTRE = f"{DEMO_RA} {DEMO_DEC}"


@pytest.mark.parametrize("size", [20000, 1e5, 1e6])
def test_huge_cube_cuts_are_too_large_not_raw_errors(spoc_cube, size):
    from core import CutoutFactory

    with pytest.raises(TooLargeError) as info:
        CutoutFactory().cube_cut(spoc_cube, CENTRE, size, memory_only=True)
    assert info.value.field == "cutout_size"


def test_huge_image_cuts_are_too_large_not_memory_errors(spoc_sector):
    from core import fits_cut

    with pytest.raises(TooLargeError) as info:
        fits_cut([str(spoc_sector.ffi_files[0])], CENTRE, 1e6, memory_only=True)
    assert info.value.field == "cutout_size"
