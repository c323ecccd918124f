"""Planning the light-curve view: a simple-aperture light curve and single frames of a cutout.

Both read a hosted cube directly (:mod:`core.cubes.lightcurve`, :func:`core.cubes.preview.frame_flux`), never a
whole TPF: memory stays about one band (``ctx.band_bytes``), and the windows are checked against
``ctx.limits`` as the ``astrocut`` route checks the same cutout. No HTTP here: the planners return
plain data (:class:`LightCurveResult`) or a :class:`~.answers.FileAnswer` (a frame's PNG).

A sector the server does not host is a 404 naming ``sector``; a position on no hosted cube (of that
sector) a 404 naming ``ra``, a time window on none of its frames a 404 naming ``time_min``: these
are not TESScut routes, so the "no data is HTTP 200" rule of :mod:`.tesscut` does not apply.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.params.requests import FrameParams, LightCurveParams
from app.planning.answers import Cost, CutoutStats, FileAnswer, Planner
from app.planning.context import Context, api_fields
from app.planning.preview import PREVIEW_PERCENT, preview_cost
from app.planning.tesscut import TESSCUT_FIELDS, sector_result
from core.catalog.snapshot import CubeRecord
from core.cubes.frames import FrameSelection, TimeWindow
from core.cubes.lightcurve import ApertureLightCurve
from core.cutout_size import CutoutSize
from core.errors import NoDataError, NotFoundError, TooLargeError
from core.product import Product

__all__ = ["CSV_COLUMNS", "FRAME", "LIGHTCURVE", "LightCurveResult", "pick_cube", "plan_frame", "plan_lightcurve"]

#: the CSV's header line, one column per per-cadence array
CSV_COLUMNS = ("time", "flux", "flux_err", "quality")
#: the time axis' unit as a TPF's TIME column has it
TIME_UNIT = "BTJD (BJD - 2457000, TDB)"
#: (interval limits of a window's frames) entries kept per cube
_FRAME_LIMITS_ITEMS = 64


def pick_cube(ctx: Context, ra: float, dec: float, sector: int | None, product: str,
              window: TimeWindow | None = None) -> CubeRecord:
    """The hosted cube of ``product`` holding ICRS (ra, dec) degrees: in ``sector`` if given, else
    the first (lowest sector) one whose time span the ``window`` (if given) reaches.

    Raises
    ------
    NotFoundError
        ``sector`` is not hosted for ``product`` (``field="sector"``).
    NoDataError
        No hosted cube (of that sector) holds the position (``field="ra"``), or none of those
        reaches the time window (``field="time_min"``).
    """
    catalog = ctx.catalog
    hosted = catalog.sectors(product)
    if sector is not None and sector not in hosted:
        listing = ", ".join(str(s) for s in hosted) or "none"
        raise NotFoundError(f"sector {sector} is not hosted here for {product}; hosted sectors: {listing}",
                            field="sector")
    records = catalog.containing(ra % 360.0, dec, product=product, sectors=[sector] if sector else None)
    if not records:
        where = f" in sector {sector}" if sector else ""
        raise NoDataError(f"RA {ra % 360.0:.6f} Dec {dec:.6f} is on no hosted {product} cube{where}", field="ra")
    if window is not None and not window.is_default:
        from app.planning.tesscut import in_window

        records = in_window(records, window)
        if not records:
            raise NoDataError("the time window reaches no hosted cube holding the position", field="time_min")
    return records[0]


@dataclass(frozen=True)
class LightCurveResult:
    """A light curve and where it came from: what :func:`plan_lightcurve` returns.

    Attributes
    ----------
    ra, dec : the requested position (ICRS degrees, RA in 0..360).
    product : the cube product.
    record : the hosted cube the light curve is from.
    lightcurve : the per-cadence arrays, the aperture's box and mask.
    sectors : every hosted sector/camera/CCD holding the position, as the TESScut ``sector``
        route lists them.
    flux_unit : the pixels' unit, as the TPF's FLUX column has it (SPOC e-/s, TICA e-).
    frames : the frame selection (time window, binning), None for every frame.
    """

    ra: float
    dec: float
    product: str
    record: CubeRecord
    lightcurve: ApertureLightCurve
    sectors: list[dict[str, str]] = field(default_factory=list)
    flux_unit: str = "e-/s"
    frames: FrameSelection | None = None

    @property
    def stats(self) -> CutoutStats:
        """What was read, for the access log and metrics."""
        win = self.lightcurve.window
        return CutoutStats(win.nx, win.ny, len(self.lightcurve), 1)

    def aperture(self) -> dict[str, Any]:
        """The aperture: ``column``/``row`` of its box's first pixel (1-based cube column/row,
        as a TPF's 1CRV5P/2CRV5P and lightkurve's ``tpf.column``/``tpf.row``), its size, and the
        mask as rows of 0/1 (the first row is the lowest cube row)."""
        lc = self.lightcurve
        return {
            "column": lc.window.x0 + 1, "row": lc.window.y0 + 1, "nx": lc.window.nx, "ny": lc.window.ny,
            "mask": ["".join("1" if v else "0" for v in row) for row in lc.mask],
            "pixels": int(lc.mask.sum()), "pixels_on_cube": lc.pixels_on_cube,
        }

    def to_dict(self) -> dict[str, Any]:
        """The JSON answer: metadata, then one array per column (NaN as null); with a frame
        selection also ``frame_bin`` and ``frames`` (the cube frames used, 0-based, end exclusive)."""
        lc = self.lightcurve
        answer = {
            "ra": self.ra, "dec": self.dec, "product": self.product, "sectorName": self.record.sector_name,
            "sector": self.record.sector, "camera": self.record.camera, "ccd": self.record.ccd,
            "aperture": self.aperture(), "time_unit": TIME_UNIT, "flux_unit": self.flux_unit,
            "cadences": len(lc), "flagged": int(np.count_nonzero(lc.quality)),
        }
        if self.frames is not None:
            answer.update(frame_bin=self.frames.frame_bin, frames=[self.frames.start, self.frames.used_stop])
        answer.update({
            "time": _nullable(lc.time), "flux": _nullable(lc.flux), "flux_err": _nullable(lc.flux_err),
            "quality": lc.quality.tolist(), "sectors": self.sectors,
        })
        return answer

    def to_json(self) -> bytes:
        """:meth:`to_dict` as compact JSON (floats exact: a float32 value is written as the double
        it converts to, so ``np.float32(value)`` gives it back bit for bit)."""
        return json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False).encode()

    def to_csv(self) -> bytes:
        """One header line (:data:`CSV_COLUMNS`), then one line per cadence (NaN as ``nan``)."""
        lc = self.lightcurve
        lines = [",".join(CSV_COLUMNS)]
        lines += [f"{t!r},{f!r},{e!r},{q}" for t, f, e, q in zip(lc.time.tolist(), lc.flux.tolist(),
                                                                   lc.flux_err.tolist(), lc.quality.tolist())]
        return ("\n".join(lines) + "\n").encode()

    def filename(self, extension: str) -> str:
        win = self.lightcurve.window
        which = "" if self.frames is None else f"_f{self.frames.start}-{self.frames.used_stop}_bin{self.frames.frame_bin}"
        return (f"lightcurve_{self.record.sector_name}_{self.ra:.6f}_{self.dec:.6f}_{win.nx}x{win.ny}{which}"
                f".{extension}")


def _nullable(values: np.ndarray) -> list[float | None]:
    return [v if math.isfinite(v) else None for v in values.tolist()]


def lightcurve_result(ctx: Context, ra: float, dec: float, sector: int | None, product: str, *,
                      aperture: int = 3, mask: str | None = None,
                      window: TimeWindow | None = None) -> LightCurveResult:
    """The simple-aperture light curve of a target on one hosted cube (``sector``, else the first).

    Parameters
    ----------
    ctx : Context
    ra, dec : float
        ICRS degrees.
    sector : int or None
        The sector (default: the first hosted one holding the position).
    product : str
        The cube product.
    aperture : int
        Side of the square of pixels summed, centred on the position as a cutout of that size is
        (``x=aperture`` on the ``astrocut`` route cuts exactly those pixels).
    mask : str, optional
        Instead of ``aperture``: rows of 0/1 separated by commas (the first row the lowest cube
        row), placed as a cutout of the mask's shape is.
    window : TimeWindow, optional
        Only the frames in this time window, binned as it says (an extension).

    Raises
    ------
    InvalidInputError
        A bad ``aperture`` or ``mask``.
    NotFoundError, NoDataError
        See :func:`pick_cube`.
    TooLargeError
        The aperture's box exceeds the limits the same cutout would (naming ``aperture``/``mask``).
    """
    from core.cubes.lightcurve import aperture_lightcurve, parse_mask, square_mask

    name = "mask" if mask is not None else "aperture"
    side = ctx.limits.max_side
    if mask is not None and side is not None and len(mask) > (side + 1) * side:
        # what the widest allowed mask takes, checked before reading it
        raise TooLargeError(f"a mask of {len(mask)} characters has more than {side} rows or columns "
                            "(max_cutout_side)", field="mask")
    with api_fields({**TESSCUT_FIELDS, "cutout_size": name, "cutout_size.y": name}):
        pixels = parse_mask(mask) if mask is not None else square_mask(aperture)
        record = pick_cube(ctx, ra, dec, sector, product, window)
        cube = ctx.catalog.open(record)
        frames = None if window is None or window.is_default else window.resolve(cube.time)
        lc = aperture_lightcurve(cube, ra, dec, pixels, limits=ctx.limits, band_bytes=ctx.band_bytes,
                                 frames=frames)
        sectors = [sector_result(r) for r in ctx.catalog.containing(ra % 360.0, dec, product=product)]
    unit = Product.parse(product).flux_unit  # the TPF's TUNIT
    return LightCurveResult(ra % 360.0, dec, product, record, lc, sectors, unit, frames)


def _frame_limits(cube: Any, window: Any, band_bytes: int, percent: Sequence[float]) -> tuple[float, float]:
    """The display interval shared by all frames of a window: the percentiles of its median frame
    (what the preview image shows), cached per cube and window so that a slider's frames cost
    one small read each."""
    from astropy.visualization import AsymmetricPercentileInterval

    from core.cubes.preview import median_frame

    def make() -> tuple[float, float]:
        median = median_frame(cube, window, band_bytes=band_bytes)
        finite = median[np.isfinite(median)]
        if not finite.size:
            return (math.nan, math.nan)
        lo, hi = AsymmetricPercentileInterval(*percent).get_limits(finite)
        return (float(lo), float(hi) if hi > lo else float(lo) + 1.0)

    cube.memo.limit("frame_limits", items=_FRAME_LIMITS_ITEMS)
    key = (window.x0, window.x1, window.y0, window.y1, tuple(percent))
    return cube.memo.get_or_make("frame_limits", key, make)


def plan_frame(ctx: Context, p: FrameParams) -> FileAnswer:
    """A PNG of frame ``frame`` (0-based cadence index) of the ``nx`` x ``ny`` cutout the
    ``astrocut`` route would cut, flipped north-up as the preview is, and scaled with one interval
    for every frame of the cutout (the median frame's percentiles, :data:`PREVIEW_PERCENT`), so
    that a slider or an animation shows real changes, not rescaling.

    Raises
    ------
    InvalidInputError
        ``frame`` is not a frame of the cube (``field="frame"``), or a bad stretch.
    NotFoundError, NoDataError
        See :func:`pick_cube`; also no frame of the cutout has a valid pixel (a frame without
        any, among frames with data, is drawn black).
    TooLargeError
        The cutout exceeds the ``astrocut`` route's limits.
    """
    from PIL import Image

    from core.cubes.preview import frame_flux
    from core.images.render import normalize_img
    from core.tpf.cut import locate

    ra, dec, nx, ny, sector, product, frame = p.ra, p.dec, p.x, p.ny, p.sector, p.product, p.frame
    stretch, invert = p.stretch, p.invert
    with api_fields(TESSCUT_FIELDS):
        record = pick_cube(ctx, ra, dec, sector, product)
        cube = ctx.catalog.open(record)
        geo = locate(cube, f"{ra % 360.0!r} {dec!r}", CutoutSize(nx, ny), limits=ctx.limits)
        flux = frame_flux(cube, geo.window, frame)
        lo, hi = _frame_limits(cube, geo.window, ctx.band_bytes, PREVIEW_PERCENT)
    if not math.isfinite(lo):
        raise NoDataError("the cutout has no valid pixels on this cube", field="ra")
    if np.isfinite(flux).any():
        pixels = normalize_img(flux, stretch=stretch, minmax_value=(lo, hi), invert=invert)
    else:  # a frame without data (a missing FFI) among frames with data: shown blank, not refused
        pixels = np.zeros(flux.shape, dtype=np.uint8)
    image = Image.fromarray(pixels).transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    name = f"frame_{ra % 360.0:.6f}_{dec:.6f}_{nx}x{ny}_s{record.sector:04d}_{frame:05d}.png"
    return FileAnswer(buf.getvalue(), "image/png", name, inline=True,
                      stats=CutoutStats(geo.window.nx, geo.window.ny, 1, 1))


#: the JSON answer's own size beyond the band being read: ~100 bytes a cadence for 20,000 cadences
_ANSWER_BYTES = 4 * 1024 * 1024


def lightcurve_cost(ctx: Context, p: LightCurveParams) -> Cost:
    """A light curve reads the aperture's pixels a chunk of frames at a time: one band and the
    answer. The aperture's box is held to the side limit before its mask is built."""
    name = "mask" if p.mask is not None else "aperture"
    nx, ny = p.aperture_shape
    ctx.limits.check(nx, ny, 1, field_x=name, field_y=name)
    return Cost(2 * ctx.band_bytes + _ANSWER_BYTES + nx * ny, field=name)


def plan_lightcurve(ctx: Context, p: LightCurveParams) -> FileAnswer:
    """The light curve as the route answers it: JSON, or CSV as a download."""
    result = lightcurve_result(ctx, p.ra, p.dec, p.sector, p.product, aperture=p.aperture, mask=p.mask,
                               window=p.time_window)
    if p.format == "csv":
        return FileAnswer(result.to_csv(), "text/csv; charset=utf-8", result.filename("csv"), stats=result.stats)
    return FileAnswer(result.to_json(), "application/json", None, stats=result.stats)


LIGHTCURVE = Planner(plan_lightcurve, lightcurve_cost)
FRAME = Planner(plan_frame, preview_cost)
