"""Quick-look images of cube cutouts: the per-pixel median over all frames, in bounded memory,
and single frames.

The cube is pixel-major (each pixel's frames contiguous), so a median frame is computed a band of
rows at a time straight from the cube: memory stays one band (``band_bytes``) whatever the window
or the number of frames, where building the TPF first would hold all of it. One frame is one
4-byte read per pixel (the cube's source merges the reads where the pixels' frames lie close).
Pixels off the cube, or with no finite frame, are NaN.
"""

from __future__ import annotations

import numpy as np

from core.cubes.cube import Cube
from core.geometry import Window

__all__ = ["frame_flux", "median_frame"]


def median_frame(cube: Cube, window: Window, *, band_bytes: int = 32 * 1024 * 1024) -> np.ndarray:
    """The (ny, nx) float32 median over frames of the flux in ``window`` (0-based cube pixels,
    possibly off the cube: padded with NaN)."""
    out = np.full((window.ny, window.nx), np.nan, dtype=np.float32)
    inside = window.clip(cube.nx, cube.ny)
    if inside.empty:
        return out
    per_row = inside.nx * cube.nframes * cube.nplanes * 4
    rows = max(1, int(band_bytes // max(1, per_row)))
    x0, x1 = inside.x0 - window.x0, inside.x1 - window.x0
    for y in range(inside.y0, inside.y1, rows):
        yb = min(inside.y1, y + rows)
        flux = cube.read_block_be(y, yb, inside.x0, inside.x1)[..., 0].astype(np.float32)  # (rows, x, frames)
        valid = np.isfinite(flux).any(axis=-1)
        band = np.full(valid.shape, np.nan, dtype=np.float32)
        if valid.any():  # only pixels with data: nanmedian of all-NaN frames would warn
            band[valid] = np.nanmedian(flux[valid], axis=-1)
        out[y - window.y0 : yb - window.y0, x0:x1] = band
    return out


def frame_flux(cube: Cube, window: Window, index: int, *, threads: int | None = None) -> np.ndarray:
    """The (ny, nx) float32 flux of frame ``index`` (0-based, the TPF's cadence order) in
    ``window`` (0-based cube pixels, possibly off the cube: padded with NaN).

    Raises
    ------
    InvalidInputError
        ``index`` is not a frame of the cube (``field="frame"``).
    """
    from core.errors import InvalidInputError

    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < cube.nframes:
        raise InvalidInputError(f"frame must be 0..{cube.nframes - 1} (the cube has {cube.nframes} frames), "
                                f"not {index!r}", field="frame")
    out = np.full((window.ny, window.nx), np.nan, dtype=np.float32)
    inside = window.clip(cube.nx, cube.ny)
    if inside.empty:
        return out
    per_px = cube.nframes * cube.nplanes * 4
    ys, xs = np.mgrid[inside.y0 : inside.y1, inside.x0 : inside.x1]
    offsets = cube.data_offset + (ys.ravel() * cube.nx + xs.ravel()) * per_px + int(index) * cube.nplanes * 4
    raw = b"".join(cube.source.read_ranges([(int(o), 4) for o in offsets], threads=threads))
    values = np.frombuffer(raw, dtype=">f4").reshape(inside.ny, inside.nx)
    out[inside.y0 - window.y0 : inside.y1 - window.y0, inside.x0 - window.x0 : inside.x1 - window.x0] = values
    return out
