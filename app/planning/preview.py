"""Planning the preview page's image: the median frame of the cutout the ``astrocut`` route serves."""

from __future__ import annotations

import io

import numpy as np

from app.params.requests import PreviewParams
from app.planning.answers import Cost, CutoutStats, FileAnswer, Planner
from app.planning.context import Context, api_fields
from app.planning.tesscut import TESSCUT_FIELDS
from core.cutout_size import CutoutSize
from core.errors import NoDataError
from core.tpf.cut import locate

__all__ = ["PREVIEW", "PREVIEW_PERCENT", "plan_preview", "preview_cost"]

#: percentiles of the preview's interval (as img_cut's default)
PREVIEW_PERCENT = (0.5, 99.5)


def preview_cost(ctx: Context, p: PreviewParams) -> Cost:
    """A preview reads one band of rows at a time and makes one PNG: bounded by the band size and
    the window, checked against the side limit first."""
    ctx.limits.check(p.x, p.ny, 1, field_x="x", field_y="y")
    return Cost(2 * ctx.band_bytes + 16 * p.x * p.ny)


def plan_preview(ctx: Context, p: PreviewParams) -> FileAnswer:
    """A PNG of the per-pixel median frame of an ``nx`` x ``ny`` cutout around (ra, dec) on the
    first hosted cube of ``product`` (in ``sector`` if given), scaled as ``img_cut`` scales and
    flipped so north-up images show row 0 at the bottom. Memory stays one band of rows.

    Raises
    ------
    NoDataError
        No hosted cube holds the position, or the cutout has no valid pixel.
    TooLargeError
        The cutout exceeds the limits of the ``astrocut`` route (the same cutout; its time grows
        with pixels x frames, while its memory stays one band).
    """
    from PIL import Image

    from core.cubes.preview import median_frame
    from core.images.render import normalize_img

    ra, dec, nx, ny, sector, product = p.ra, p.dec, p.x, p.ny, p.sector, p.product
    with api_fields(TESSCUT_FIELDS):
        records = ctx.catalog.containing(ra % 360.0, dec, product=product, sectors=[sector] if sector else None)
        if not records:
            where = f" in sector {sector}" if sector else ""
            raise NoDataError(f"RA {ra:g} Dec {dec:g} is on no hosted {product} cube{where}", field="ra")
        record = records[0]
        cube = ctx.catalog.open(record)
        geo = locate(cube, f"{ra % 360.0!r} {dec!r}", CutoutSize(nx, ny), limits=ctx.limits)
        frame = median_frame(cube, geo.window, band_bytes=ctx.band_bytes)
    if not np.isfinite(frame).any():
        raise NoDataError("the cutout has no valid pixels on this cube", field="ra")
    pixels = normalize_img(frame, stretch=p.stretch, minmax_percent=PREVIEW_PERCENT, invert=p.invert)
    image = Image.fromarray(pixels).transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    name = f"preview_{ra % 360.0:.6f}_{dec:.6f}_{nx}x{ny}_s{record.sector:04d}.png"
    stats = CutoutStats(geo.window.nx, geo.window.ny, cube.nframes, 1)
    return FileAnswer(buf.getvalue(), "image/png", name, inline=True, stats=stats)


PREVIEW = Planner(plan_preview, preview_cost)
