"""Simple-aperture photometry (SAP) straight from a cube: a light curve without building a TPF.

The cube is pixel-major (each pixel's frames, flux and error interleaved, are contiguous), so the
time series of an aperture's pixels are a few contiguous runs, one per row of the aperture: only
those bytes are read, a chunk of frames at a time, so memory stays about ``band_bytes`` whatever
the aperture or the number of frames.

The sums are lightkurve 2.6.0's (``TargetPixelFile.to_lightcurve(aperture_mask=...)``, method
``sap``) on the TPF that :func:`core.tpf.cut.cut_bytes` would make for the same window, bit for bit:
per cadence ``nansum`` of the float32 fluxes of the mask's pixels, pixels off the cube being NaN
as in the TPF's padding, over an array laid out as lightkurve's ``flux[:, mask]`` is (pixel-major),
so that numpy adds the pixels in the same order; ``sqrt(nansum(err**2))`` for the error; NaN
where every aperture pixel is NaN; the cadence's quality flags unchanged. One departure:
lightkurve also gives NaN where *every pixel of the TPF* is exactly zero; here that is decided on
the aperture's pixels (the rest of the window is not read).

A frame selection (:mod:`core.cubes.frames`: a time window, a binning) reads only the window's
frames of each aperture pixel, and bins each pixel's frames exactly as the binned TPF's FLUX and
FLUX_ERR are binned before the same sums: the light curve is lightkurve's SAP of the binned TPF.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

import numpy as np

from core.cubes.cube import Cube
from core.cubes.frames import FrameSelection, bin_pixels, cadence_columns
from core.cutout_size import CutoutSize, Limits
from core.errors import InvalidInputError
from core.geometry import Window
from core.product import Product

__all__ = ["MASK_PATTERN", "ApertureLightCurve", "aperture_lightcurve", "parse_mask", "sap", "square_mask"]

#: a mask as text: rows of 0/1 separated by commas (the first row is the aperture's lowest cube row)
MASK_PATTERN = re.compile(r"^[01]+(,[01]+)*$")
#: bytes a chunk costs per aperture pixel and frame at its peak: the pixels read (flux and error,
#: 8), the float32 errors (4), their squares (4) and nansum's copy of those (4), with the flags
_CHUNK_BYTES_PER_PIXEL_FRAME = 24


@dataclass(frozen=True)
class ApertureLightCurve:
    """A simple-aperture light curve of one cube, one value per cadence (frame).

    Attributes
    ----------
    time : float64 array
        Mid-exposure time in BTJD (BJD - 2457000), the TPF's ``TIME``: (TSTART + TSTOP) / 2.
    flux : float32 array
        Summed flux of the aperture's pixels (e-/s for SPOC cubes); NaN when none is finite.
    flux_err : float32 array
        The pixels' errors added in quadrature; NaN when none is finite; 0 for TICA cubes, which
        carry no errors (their TPFs' FLUX_ERR is 0, as astrocut 0.11.1 wrote it).
    quality : int32 array
        The cadence's quality flags (the TPF's ``QUALITY``: SPOC DQUALITY, TICA QUAL_BIT).
    window : Window
        The aperture's box in 0-based cube pixels (may extend beyond the cube).
    mask : bool array of shape (window.ny, window.nx)
        The aperture within ``window``; row 0 is the box's lowest cube row.
    pixels_on_cube : int
        How many of the mask's pixels lie on the cube (the others count as NaN).
    """

    time: np.ndarray
    flux: np.ndarray
    flux_err: np.ndarray
    quality: np.ndarray
    window: Window
    mask: np.ndarray
    pixels_on_cube: int

    def __len__(self) -> int:
        return int(self.time.size)


def square_mask(side: int) -> np.ndarray:
    """An all-true ``side`` x ``side`` mask (the central square around a position)."""
    if isinstance(side, bool) or not isinstance(side, (int, np.integer)) or side < 1:
        raise InvalidInputError(f"an aperture side must be a positive whole number of pixels, not {side!r}",
                                field="aperture")
    return np.ones((int(side), int(side)), dtype=bool)


def parse_mask(text: str, *, field: str = "mask") -> np.ndarray:
    """Read a mask written as rows of ``0``/``1`` separated by commas, e.g. ``010,111,010``.

    Rows are in array order, as lightkurve's ``aperture_mask`` and a TPF's ``FLUX[:, row, col]``:
    the first row is the lowest cube row (the bottom of a north-up image).

    Raises
    ------
    InvalidInputError
        Other characters, rows of unequal length, or no pixel set (``field`` names the parameter).
    """
    value = str(text).strip().replace(" ", "")
    if not MASK_PATTERN.match(value):
        raise InvalidInputError(
            f"{field} must be rows of 0 and 1 separated by commas (e.g. 010,111,010), not {value[:40]!r}",
            field=field)
    rows = value.split(",")
    if len({len(r) for r in rows}) != 1:
        raise InvalidInputError(f"every row of {field} must have the same length", field=field)
    # one numpy comparison over the characters (a 1000 x 1000 mask is a million of them)
    flat = np.frombuffer(value.replace(",", "").encode("ascii"), dtype=np.uint8)
    mask = (flat == ord("1")).reshape(len(rows), len(rows[0]))
    if not mask.any():
        raise InvalidInputError(f"{field} selects no pixel", field=field)
    return mask


def _pixels(cube: Cube, window: Window, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The mask's pixels in row-major order as (cube row, cube column, on-cube flag) arrays."""
    ys, xs = np.nonzero(mask)
    fy, fx = ys + window.y0, xs + window.x0
    on = (fy >= 0) & (fy < cube.ny) & (fx >= 0) & (fx < cube.nx)
    return fy, fx, on


def _runs(fy: np.ndarray, fx: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Runs of adjacent pixels in one row, from row-major (row, column) arrays: (first index,
    last index + 1, row, first column). A run's time series are one contiguous range of the cube."""
    breaks = (np.flatnonzero((np.diff(fy) != 0) | (np.diff(fx) != 1)) + 1).tolist()
    starts, ends = [0, *breaks], [*breaks, int(fy.size)]
    return [(a, b, int(fy[a]), int(fx[a])) for a, b in zip(starts, ends, strict=True)]


def _read_chunk(cube: Cube, runs: list[tuple[int, int, int, int]], t0: int, t1: int, out: np.ndarray,
                threads: int | None) -> None:
    """Fill ``out`` (on-cube pixels, t1 - t0 frames, planes; big-endian float32) with frames t0:t1
    of the runs' pixels: straight into ``out`` with ``preadv`` from a local file (one read per run
    when the chunk has every frame, else one per pixel), else through the source's concurrent,
    coalescing range reads (S3)."""
    per_px = cube.nframes * cube.nplanes * 4
    n = (t1 - t0) * cube.nplanes * 4
    flat = memoryview(out).cast("B")
    offsets = [cube.data_offset + (y * cube.nx + x) * per_px + t0 * cube.nplanes * 4 for _, _, y, x in runs]
    if getattr(cube.source, "path", None) is not None:
        for (a, b, _, _), offset in zip(runs, offsets, strict=True):
            run = flat[a * n : b * n]
            if n == per_px:  # every frame: the run's pixels are one range
                cube.source.read_rows_into(offset, run.nbytes, 1, run)
            else:
                cube.source.read_rows_into(offset, per_px, b - a, run)
        return
    ranges = [(offset + i * per_px, n) for (a, b, _, _), offset in zip(runs, offsets, strict=True)
              for i in range(b - a)]
    for i, part in enumerate(cube.source.read_ranges(ranges, threads=threads)):
        flat[i * n : (i + 1) * n] = part


def _chunks(nframes: int, per_chunk: int) -> list[tuple[int, int]]:
    """Frame ranges of about ``per_chunk`` frames covering ``nframes``, none of one frame unless
    ``nframes`` is 1: a one-frame (1, pixels) array is contiguous along the pixels, and numpy
    then sums it pairwise rather than in order, which would depart from lightkurve's sums."""
    per_chunk = max(2, int(per_chunk))
    # at most nframes // 2 chunks, so that even chunks (sizes differ by one at most) hold 2 or more
    count = max(1, min(-(-nframes // per_chunk), nframes // 2))
    bounds = [i * nframes // count for i in range(count + 1)]
    return [(a, b) for a, b in itertools.pairwise(bounds) if b > a]


def _sum(f: np.ndarray) -> np.ndarray:
    """lightkurve's SAP flux of (frames, pixels) fluxes: nansum, NaN when no pixel is finite
    or (here on the aperture, see the module docstring) every pixel is zero."""
    s = np.nansum(f, axis=1)
    s[~np.isfinite(f).any(axis=1)] = np.nan
    s[(f == 0).all(axis=1)] = np.nan
    return s


def _quadrature(e: np.ndarray) -> np.ndarray:
    """lightkurve's SAP error of (frames, pixels) errors: sqrt(nansum(e**2)), NaN when none is finite."""
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.nansum(e ** 2, axis=1) ** 0.5
    err[~np.isfinite(e).any(axis=1)] = np.nan
    return err


def sap(cube: Cube, window: Window, mask: np.ndarray, *, band_bytes: int = 32 * 1024 * 1024,
        threads: int | None = None, frames: FrameSelection | None = None) -> ApertureLightCurve:
    """Simple-aperture photometry of ``mask`` placed on ``window`` (see the module docstring).

    Parameters
    ----------
    cube : Cube
        The opened cube.
    window : Window
        The aperture's box, 0-based cube pixels; parts off the cube count as NaN pixels.
    mask : array of bool, shape (window.ny, window.nx)
        Which pixels of the box are summed (row 0 is the box's lowest cube row).
    band_bytes : int
        About how much memory a chunk of frames may take (at least one frame is read at a time).
    threads : int, optional
        Reads in flight at once (default: the cube source's).
    frames : FrameSelection, optional
        Only these frames, binned as it says (default: every frame).

    Returns
    -------
    ApertureLightCurve
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != (window.ny, window.nx):
        raise InvalidInputError(f"the mask is {mask.shape[1]}x{mask.shape[0]} pixels but its window "
                                f"{window.nx}x{window.ny}", field="mask")
    nplanes = cube.nplanes
    sel = frames if frames is not None else FrameSelection.all(cube.nframes)
    cols = cadence_columns(cube.frames, sel)
    ncad, k = sel.ncadences, sel.frame_bin
    time = np.asarray(cols.time, dtype=np.float64)
    quality = np.asarray(cols.quality, dtype=np.int32)
    flux = np.full(ncad, np.nan, dtype=np.float32)
    # the TPF's FLUX_ERR is the error plane, or zeros for TICA cubes (astrocut 0.11.1), which have none
    with_err = cube.product == Product.SPOC and nplanes > 1
    flux_err = np.full(ncad, np.nan if with_err else 0.0, dtype=np.float32)
    fy, fx, on = _pixels(cube, window, mask)
    npix, n_on = int(fy.size), int(on.sum())
    if n_on and ncad:
        runs = _runs(fy[on], fx[on])
        columns = np.flatnonzero(on)
        for t0, t1 in _chunks(ncad, band_bytes // max(1, npix * k * _CHUNK_BYTES_PER_PIXEL_FRAME)):
            f0, f1 = sel.frame_range(t0, t1)
            block = np.empty((n_on, f1 - f0, nplanes), dtype=">f4")
            _read_chunk(cube, runs, f0, f1, block, threads)
            block = bin_pixels(block, k)  # (pixels, cadences t0:t1, planes)
            # pixel-major (pixels, frames), read as its (frames, pixels) transpose: the memory
            # layout of lightkurve's flux[:, mask], so numpy adds the pixels in the same order
            f = np.full((npix, t1 - t0), np.nan, dtype=np.float32)
            f[columns] = block[:, :, 0]
            flux[t0:t1] = _sum(f.T)
            del f
            if with_err:
                e = np.full((npix, t1 - t0), np.nan, dtype=np.float32)
                e[columns] = block[:, :, 1]
                flux_err[t0:t1] = _quadrature(e.T)
                del e
            del block
    return ApertureLightCurve(time=time, flux=flux, flux_err=flux_err, quality=quality, window=window,
                              mask=mask, pixels_on_cube=n_on)


def aperture_lightcurve(cube: Cube, ra: float, dec: float, mask: np.ndarray, *, limits: Limits | None = None,
                        band_bytes: int = 32 * 1024 * 1024, threads: int | None = None,
                        frames: FrameSelection | None = None) -> ApertureLightCurve:
    """SAP of ``mask`` centred on ICRS (ra, dec) degrees: the mask covers the window that
    :func:`core.tpf.cut.locate` places for a cutout of the mask's shape (astrocut's rounding), so
    ``square_mask(k)`` is the TPF that ``x=k`` would cut, and a mask of a TPF's shape is that TPF.
    ``frames`` (a time window, a binning) as the same TPF would hold them.

    Raises
    ------
    NoDataError
        The position is not on the cube's pixels (``field="coordinates"``).
    TooLargeError
        The mask's box exceeds ``limits`` (``field="cutout_size"``), as that cutout would.
    """
    from core.tpf.cut import locate

    mask = np.asarray(mask, dtype=bool)
    ny, nx = mask.shape
    geo = locate(cube, f"{ra % 360.0!r} {dec!r}", CutoutSize(nx, ny), limits=limits, frames=frames)
    return sap(cube, geo.window, mask, band_bytes=band_bytes, threads=threads, frames=frames)
