"""A moving target's target pixel file, made in bounded pieces straight from the cube.

:func:`core.moving_target.center_on_path` (astrocut's) builds footprint TPFs along the path, holds
the path's cadences of all of them and the result in memory: a 100 x 100 window on a 3,705-frame
cube is a ~740 MB file, held several times over. Here the same file is planned first and then
produced in order, holding about one band:

1. :func:`plan_moving_tpf` (cheap: arrays of one value per cadence) evaluates the path (astrocut's
   interpolating spline) at every cadence of the cube's frames in the path's time span, places
   the ``nx`` x ``ny`` window on each (astrocut's ``rint(x - nx/2)``), keeps the cadences whose
   window touches the cube, and cuts them into groups whose windows' bounding box, over the
   group's cadences, is at most about ``band_bytes`` of pixels. It makes the file's headers from a
   1 x 1 TPF of the cube (the same cards as the TPFs the path crosses) and so knows the file's
   exact size and the memory making it takes before any pixel is read.
2. :meth:`MovingTpfStream.chunks` reads each group's box for its cadences only (one range per
   pixel: :func:`core.cubes.frames.read_cadences`, binned as the time window says), copies each
   cadence's window into its table row, and yields the rows a few MB at a time.

The file is what ``center_on_path`` makes of the TPFs the path crosses: the TPF's columns with
the pixel columns cut to the window, then ``TGT_X``/``TGT_Y`` (the target in the window, 0-based
pixels), ``TGT_RA``/``TGT_DEC``; the headers combined as it combines them. It differs where
astrocut's footprints did: the window's pixels come from the cube itself, not from a footprint TPF
(a window reaching past a footprint but not past the cube has data there, not padding), and
pixels off the cube are NaN in every float column (-1 in RAW_CNTS). Nothing is written to disk.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.cubes.cube import Cube
from core.cubes.frames import FrameSelection, read_cadences
from core.product import Product
from core.tpf.stream import DEFAULT_BAND_BYTES, StreamCancelled

__all__ = ["MovingPlan", "MovingTpfStream", "plan_moving_tpf"]

TESS_BJD_OFFSET = 2457000.0
_BLOCK = 2880
#: rows are yielded in pieces of about this many bytes (each piece is copied by the zip writer)
_PIECE_BYTES = 4 * 1024 * 1024
#: per-cadence columns filled from the cube's frames (the others are constants or pixels)
_TARGET_COLUMNS = ("TGT_X", "TGT_Y", "TGT_RA", "TGT_DEC")


@dataclass
class MovingPlan:
    """What :class:`MovingTpfStream` makes, decided before any pixel is read.

    Attributes
    ----------
    cube, frames : the cube and its frame selection (None: every frame).
    nx, ny : the window.
    cadences : the cadences kept (indices into the selection's cadences), increasing.
    bounds : per kept cadence ``[[x0, x1], [y0, y1]]``, the window in cube pixels (end exclusive).
    tgt : per kept cadence (x, y, ra, dec) of the target (cube pixels 0-based, degrees).
    groups : ``(i0, i1, x0, x1, y0, y1)``: kept cadences ``i0:i1`` read as one box of the cube.
    head : the primary and table headers, as bytes.
    dtype : a table row.
    nbytes : the file's size.
    memory_bytes : what making it holds at most (a group's read and its binning, a band of rows).
    tstart, tstop : the first and last cadence's TIME (BTJD).
    """

    cube: Cube
    frames: FrameSelection | None
    nx: int
    ny: int
    cadences: np.ndarray
    bounds: np.ndarray
    tgt: np.ndarray
    groups: list[tuple[int, int, int, int, int, int]]
    head: bytes
    dtype: np.dtype
    nbytes: int
    memory_bytes: int
    tstart: float
    tstop: float
    band_bytes: int = DEFAULT_BAND_BYTES
    image_columns: tuple[str, ...] = field(default=())

    @property
    def rows(self) -> int:
        return len(self.cadences)


def _padded(n: int) -> int:
    return -(-n // _BLOCK) * _BLOCK


def _read_frames(frames: FrameSelection | None) -> int:
    return 1 if frames is None else frames.frame_bin


def _windows(cube: Cube, path: Any, size: tuple[int, int], frames: FrameSelection | None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(kept cadences, windows, target x/y/ra/dec) of the cadences in the path's time span whose
    window touches the cube; None when there is none."""
    from astropy.coordinates import SkyCoord

    from core.moving_target import path_coords, path_spline, window_bounds
    from core.quiet import quiet
    from core.tpf.layout import cadences as cadence_columns

    times, positions = path["time"], path["position"]
    tck, _, _ = path_spline(times, positions)
    path_jd = np.asarray(times.jd, dtype=float)
    time_jd = np.asarray(cadence_columns(cube, frames).time, dtype=float) + TESS_BJD_OFFSET
    keep = np.nonzero(np.isfinite(time_jd) & (time_jd >= path_jd.min()) & (time_jd <= path_jd.max()))[0]
    if not len(keep):
        return None
    target = path_coords(tck, time_jd[keep])
    with quiet():
        x, y = cube.wcs.world_to_pixel(SkyCoord(target.ra, target.dec))
    x, y = np.atleast_1d(np.asarray(x, float)), np.atleast_1d(np.asarray(y, float))
    bounds = window_bounds(x, y, size)
    on = (np.isfinite(x) & np.isfinite(y) & (bounds[:, 0, 1] > 0) & (bounds[:, 0, 0] < cube.nx)
          & (bounds[:, 1, 1] > 0) & (bounds[:, 1, 0] < cube.ny))
    if not on.any():
        return None
    tgt = np.stack([x - bounds[:, 0, 0], y - bounds[:, 1, 0], target.ra.deg, target.dec.deg], axis=1)
    return keep[on], bounds[on], tgt[on]


def _groups(cube: Cube, cadences: np.ndarray, bounds: np.ndarray, frames: FrameSelection | None,
            band_bytes: int) -> tuple[list[tuple[int, int, int, int, int, int]], int]:
    """Consecutive kept cadences whose windows' box (on the cube), read over their cadences, is
    at most about ``band_bytes``; and the most bytes one group's read holds."""
    per_px = cube.nplanes * 4 * (_read_frames(frames) + 1)  # the frames read, and the binned result
    groups: list[tuple[int, int, int, int, int, int]] = []
    largest = 0
    clip = np.stack([np.clip(bounds[:, 0, 0], 0, cube.nx), np.clip(bounds[:, 0, 1], 0, cube.nx),
                     np.clip(bounds[:, 1, 0], 0, cube.ny), np.clip(bounds[:, 1, 1], 0, cube.ny)], axis=1)
    i, n = 0, len(cadences)
    while i < n:
        x0, x1, y0, y1 = (int(v) for v in clip[i])
        j = i + 1
        while j < n:
            nx0, nx1 = min(x0, int(clip[j, 0])), max(x1, int(clip[j, 1]))
            ny0, ny1 = min(y0, int(clip[j, 2])), max(y1, int(clip[j, 3]))
            span = int(cadences[j] - cadences[i]) + 1
            if (nx1 - nx0) * (ny1 - ny0) * span * per_px > band_bytes:
                break
            x0, x1, y0, y1 = nx0, nx1, ny0, ny1
            j += 1
        span = int(cadences[j - 1] - cadences[i]) + 1
        largest = max(largest, (x1 - x0) * (y1 - y0) * span * per_px)
        groups.append((i, j, x0, x1, y0, y1))
        i = j
    return groups, largest


def _headers(cube: Cube, frames: FrameSelection | None, nx: int, ny: int, rows: int, tstart: float, tstop: float,
             target: str | None) -> tuple[bytes, np.dtype, tuple[str, ...]]:
    """The primary and table headers of the file (and its row dtype, its pixel columns), from a
    1 x 1 TPF of the cube: the cards ``center_on_path`` keeps of the TPFs it combines."""
    from astropy.io import fits
    from astropy.table import Table
    from astropy.time import Time

    from core.cutout_size import CutoutSize
    from core.moving_target import configure_table_header
    from core.quiet import quiet
    from core.tpf.cut import TpfHDUList, cut_bytes, locate

    centre = cube.wcs.pixel_to_world((cube.nx - 1) / 2, (cube.ny - 1) / 2)
    geo = locate(cube, f"{float(centre.ra.deg)!r} {float(centre.dec.deg)!r}", CutoutSize(1, 1), frames=frames)
    tiny = TpfHDUList.from_bytes(cut_bytes(cube, geo, frames=frames).data)
    primary = tiny[0].header.copy()
    for key in ("RA_OBJ", "DEC_OBJ"):  # a footprint's centre, not the target's: they vary along a path
        primary.remove(key, ignore_missing=True)
    primary["DATE"] = Time.now().to_value("iso", subfmt="date")
    if target:
        primary["OBJECT"] = (target, "Moving target object name/identifier")
    primary["TSTART"] = tstart
    primary["TSTOP"] = tstop
    one = Table(tiny[1].data[:1])
    image_columns = tuple(name for name in one.colnames if np.asarray(one[name]).ndim == 3)
    for name in image_columns:
        one[name] = np.zeros((1, ny, nx), dtype=np.asarray(one[name]).dtype)
    for name in _TARGET_COLUMNS:
        one[name] = np.zeros(1, dtype=np.float64)
    with quiet(fits.verify.VerifyWarning):
        table = fits.table_to_hdu(one)
        configure_table_header(table.header, [tiny[1].header])
        for key in ("RA_OBJ", "DEC_OBJ"):
            table.header.remove(key, ignore_missing=True)
        table.header["NAXIS2"] = rows
        head = fits.PrimaryHDU(header=primary).header.tostring().encode("ascii")
        head += table.header.tostring().encode("ascii")
    dtype = table.data.dtype.newbyteorder(">")  # the layout as written: big-endian
    if dtype.itemsize != table.header["NAXIS1"]:  # pragma: no cover - astropy's layout changed
        raise RuntimeError("the table's row layout is not its NAXIS1")
    return head, np.dtype(dtype), image_columns


def plan_moving_tpf(cube: Cube, path: Any, size: tuple[int, int], *, frames: FrameSelection | None = None,
                    target: str | None = None, band_bytes: int = DEFAULT_BAND_BYTES) -> MovingPlan | None:
    """Plan the TPF centred on ``path`` (an astropy Table: ``time`` Time, ``position`` SkyCoord)
    with an ``(nx, ny)`` window on ``cube`` (the module docstring); None when the path's window
    touches none of its cadences."""
    nx, ny = (int(v) for v in size)
    found = _windows(cube, path, (nx, ny), frames)
    if found is None:
        return None
    cadences, bounds, tgt = found
    from core.tpf.layout import cadences as cadence_columns

    time = np.asarray(cadence_columns(cube, frames).time, dtype=float)[cadences]
    tstart, tstop = float(np.nanmin(time)), float(np.nanmax(time))
    head, dtype, image_columns = _headers(cube, frames, nx, ny, len(cadences), tstart, tstop, target)
    band = max(1 << 20, int(band_bytes))
    groups, largest = _groups(cube, cadences, bounds, frames, band)
    nbytes = len(head) + _padded(len(cadences) * dtype.itemsize)
    batch = max(dtype.itemsize, min(_PIECE_BYTES, len(cadences) * dtype.itemsize))
    # a group's read, a piece of rows, and the zip's copies of that piece while it is written
    memory = largest + 3 * batch + 3 * len(cadences) * 64 + len(head) + (1 << 20)
    return MovingPlan(cube, frames, nx, ny, cadences, bounds, tgt, groups, head, dtype, nbytes, memory, tstart,
                      tstop, band, image_columns)


class MovingTpfStream:
    """The bytes of a :class:`MovingPlan`'s file, in order, in pieces of about ``band_bytes``.

    ``cancel`` (an event), once set, stops the stream at its next group with
    :class:`~core.tpf.stream.StreamCancelled`.
    """

    def __init__(self, plan: MovingPlan, *, threads: int | None = None, cancel: Any = None) -> None:
        self.plan, self.threads, self.cancel = plan, threads, cancel

    def chunks(self) -> Iterator[memoryview]:
        plan = self.plan
        yield memoryview(plan.head)
        per_batch = max(1, min(plan.band_bytes, _PIECE_BYTES) // plan.dtype.itemsize)
        for i0, i1, x0, x1, y0, y1 in plan.groups:
            if self.cancel is not None and self.cancel.is_set():
                raise StreamCancelled("the moving-target stream was cancelled")
            block = self._read(i0, i1, x0, x1, y0, y1)
            for b0 in range(i0, i1, per_batch):
                b1 = min(i1, b0 + per_batch)
                yield memoryview(self._rows(b0, b1, block, i0, x0, y0).view(np.uint8))
            del block
        tail = _padded(plan.rows * plan.dtype.itemsize) - plan.rows * plan.dtype.itemsize
        if tail:
            yield memoryview(bytes(tail))

    def _read(self, i0: int, i1: int, x0: int, x1: int, y0: int, y1: int) -> np.ndarray:
        """The group's box, ``(y, x, cadences, planes)``, for its span of cadences."""
        plan = self.plan
        c0, c1 = int(plan.cadences[i0]), int(plan.cadences[i1 - 1]) + 1
        sel = plan.frames or FrameSelection.all(plan.cube.nframes)
        a, b = sel.frame_range(c0, c1)
        sub = FrameSelection(a, b, sel.frame_bin, sel.nframes)
        return read_cadences(plan.cube, y0, y1, x0, x1, sub, self.threads)

    def _rows(self, b0: int, b1: int, block: np.ndarray, i0: int, gx0: int, gy0: int) -> np.ndarray:
        """Table rows of kept cadences ``b0:b1`` (of a group starting at ``i0`` whose box, read
        into ``block``, starts at cube pixel (gx0, gy0))."""
        from core.tpf.layout import cadences as cadence_columns

        plan, cube = self.plan, self.plan.cube
        rec = np.zeros(b1 - b0, plan.dtype)
        index = plan.cadences[b0:b1]
        cols = cadence_columns(cube, plan.frames)
        names = plan.dtype.names
        for name, values in (("TIME", cols.time), ("TIMECORR", cols.timecorr), ("CADENCENO", cols.cadence),
                             ("QUALITY", cols.quality), ("FFI_FILE", cols.ffi_file)):
            if name in names and values is not None:
                rec[name] = np.asarray(values)[index]
        for k, name in enumerate(_TARGET_COLUMNS):
            rec[name] = plan.tgt[b0:b1, k]
        for name in plan.image_columns:
            rec[name] = -1 if rec.dtype[name].base.kind == "i" else 0
        with_err = cube.product == Product.SPOC and cube.nplanes > 1
        first = int(plan.cadences[i0])
        for r, i in enumerate(range(b0, b1)):
            (wx0, wx1), (wy0, wy1) = plan.bounds[i]
            cx0, cx1, cy0, cy1 = max(wx0, 0), min(wx1, cube.nx), max(wy0, 0), min(wy1, cube.ny)
            full = (cx0, cx1, cy0, cy1) == (wx0, wx1, wy0, wy1)
            if not full:  # pixels off the cube: NaN in every float column (astrocut's fill value)
                for name in plan.image_columns:
                    if rec.dtype[name].base.kind == "f":
                        rec[name][r] = math.nan
                for name in ("FLUX_BKG", "FLUX_BKG_ERR"):
                    if name in plan.image_columns:
                        rec[name][r, cy0 - wy0 : cy1 - wy0, cx0 - wx0 : cx1 - wx0] = 0
            t = int(plan.cadences[i]) - first
            part = block[cy0 - gy0 : cy1 - gy0, cx0 - gx0 : cx1 - gx0, t]  # (h, w, planes)
            rec["FLUX"][r, cy0 - wy0 : cy1 - wy0, cx0 - wx0 : cx1 - wx0] = part[..., 0]
            if "FLUX_ERR" in names:
                if with_err:
                    rec["FLUX_ERR"][r, cy0 - wy0 : cy1 - wy0, cx0 - wx0 : cx1 - wx0] = part[..., 1]
                else:  # TICA cubes carry no errors: astrocut writes zeros
                    rec["FLUX_ERR"][r] = 0
        return rec
