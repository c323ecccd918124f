"""Which frames of a cube a cut uses: an optional time window and a frame binning.

A request says what it wants with a :class:`TimeWindow` (``time_min``/``time_max`` in BTJD, TDB,
inclusive, either open; ``frame_bin`` >= 1): checked on its own, before any cube is opened, so that
a bad value is refused naming its parameter. :meth:`TimeWindow.resolve` turns it into a
:class:`FrameSelection` on one cube, from the cube's per-frame mid-exposure times (the TPF's
``TIME``): the contiguous run of frames ``start:stop`` whose times fall in the window, cut into
cadences of ``frame_bin`` frames. Everything that reads frames (TPFs, streamed TPFs, light curves,
the batch) takes the same :class:`FrameSelection`.

A cube stores each pixel's frames contiguously, so a window is one byte range per pixel
(:meth:`core.cubes.cube.Cube.read_block_be` with ``frames=``).

Binning follows what lightkurve expects of a TPF with longer cadences (as the TESS Science Support
Center's ``tesscube`` bins): per cadence TIME and TIMECORR are the means of the bin's frames,
FLUX the NaN-aware mean of its frames, FLUX_ERR the frames' errors added in quadrature and divided
by the number of frames used (those with a finite flux), QUALITY the bitwise OR of the frames'
flags, CADENCENO and FFI_FILE the first frame's. A trailing partial bin (fewer than ``frame_bin``
frames left at the end of the window) is dropped, so that every cadence has the same exposure;
the TPF's ``FRAMEDRP`` header card says how many frames that left out.

Examples
--------
>>> import numpy as np
>>> times = np.arange(10.0) + 2000.0
>>> sel = TimeWindow(2002.0, 2008.5, frame_bin=3).resolve(times)
>>> (sel.start, sel.stop, sel.ncadences, sel.dropped)
(2, 9, 2, 1)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.errors import InvalidInputError, NoDataError

__all__ = ["FrameSelection", "TimeWindow", "bin_pixels", "cadence_columns", "read_cadences"]

#: pixels binned at once: bounds the float64 temporaries of :func:`bin_pixels` to a few MB
_BIN_PIXELS_PER_STEP = 256


def _finite_or_none(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidInputError(f"{name} must be a number (BTJD days), not {value!r}", field=name)
    try:
        number = float(value)
    except (TypeError, ValueError):
        shown = str(value)[:40]
        raise InvalidInputError(f"{name} must be a number (BTJD days), not {shown!r}", field=name) from None
    if not math.isfinite(number):
        raise InvalidInputError(f"{name} must be a finite number (BTJD days), not {value!r}", field=name)
    return number


@dataclass(frozen=True)
class TimeWindow:
    """What a request asks of the frames: a time window and a binning, validated.

    Parameters
    ----------
    time_min, time_max : float, optional
        The window's ends in BTJD (BJD - 2457000, TDB), inclusive; None leaves that end open.
        Compared with each frame's mid-exposure time (the TPF's ``TIME``).
    frame_bin : int
        Frames averaged into one cadence (1: no binning).

    Raises
    ------
    InvalidInputError
        A non-finite or non-numeric end (naming ``time_min`` or ``time_max``), ``time_min >
        time_max`` (naming ``time_max``), or ``frame_bin`` not a whole number >= 1 (naming
        ``frame_bin``).
    """

    time_min: float | None = None
    time_max: float | None = None
    frame_bin: int = 1

    def __post_init__(self) -> None:
        lo = _finite_or_none(self.time_min, "time_min")
        hi = _finite_or_none(self.time_max, "time_max")
        if lo is not None and hi is not None and lo > hi:
            raise InvalidInputError(f"time_max ({hi!r}) is before time_min ({lo!r})", field="time_max")
        b = self.frame_bin
        if isinstance(b, bool) or not isinstance(b, (int, np.integer)):
            if isinstance(b, float) and b.is_integer():
                b = int(b)
            else:
                raise InvalidInputError(f"frame_bin must be a whole number >= 1, not {b!r}", field="frame_bin")
        if b < 1:
            raise InvalidInputError(f"frame_bin must be a whole number >= 1, not {b!r}", field="frame_bin")
        object.__setattr__(self, "time_min", lo)
        object.__setattr__(self, "time_max", hi)
        object.__setattr__(self, "frame_bin", int(b))

    @property
    def is_default(self) -> bool:
        """No window and no binning: every frame, as cut without this object."""
        return self.time_min is None and self.time_max is None and self.frame_bin == 1

    def overlaps(self, tstart: float, tstop: float) -> bool:
        """Whether the window can hold a frame of a cube spanning ``tstart``..``tstop`` (BTJD)
        (a cheap test from a catalog record: the cube's frames decide in :meth:`resolve`)."""
        if not (math.isfinite(tstart) and math.isfinite(tstop)):
            return True
        return (self.time_min is None or self.time_min <= tstop) and (
            self.time_max is None or self.time_max >= tstart)

    def resolve(self, times: np.ndarray) -> FrameSelection:
        """The frames of a cube with per-frame mid-exposure ``times`` (BTJD) that this selects.

        The frames whose time lies in the window are taken with everything between the first and
        the last of them (a cube's frames are in time order; a frame without a time inside the
        run is kept, NaN as its pixels are).

        Raises
        ------
        NoDataError
            No frame's time lies in the window (naming ``time_min``).
        InvalidInputError
            ``frame_bin`` is larger than the number of frames in the window (naming ``frame_bin``).
        """
        times = np.asarray(times, dtype=float)
        n = int(times.size)
        if self.time_min is None and self.time_max is None:
            start, stop = 0, n
        else:
            inside = np.isfinite(times)
            if self.time_min is not None:
                inside &= times >= self.time_min
            if self.time_max is not None:
                inside &= times <= self.time_max
            found = np.flatnonzero(inside)
            if not found.size:
                finite = times[np.isfinite(times)]
                span = f"{finite.min():.5f} to {finite.max():.5f}" if finite.size else "none"
                raise NoDataError(
                    f"the time window [{_show(self.time_min)}, {_show(self.time_max)}] (BTJD) holds no frame "
                    f"of this cube (its frames' times run from {span})", field="time_min")
            start, stop = int(found[0]), int(found[-1]) + 1
        if self.frame_bin > stop - start:
            raise InvalidInputError(
                f"frame_bin ({self.frame_bin}) is larger than the {stop - start} frames in the window",
                field="frame_bin")
        return FrameSelection(start=start, stop=stop, frame_bin=self.frame_bin, nframes=n,
                              time_min=self.time_min, time_max=self.time_max)


def _show(value: float | None) -> str:
    return "open" if value is None else f"{value!r}"


@dataclass(frozen=True)
class FrameSelection:
    """The frames of one cube a cut uses: ``start:stop`` (the window), in cadences of
    ``frame_bin`` frames. Made by :meth:`TimeWindow.resolve` (or :meth:`all`).

    Attributes
    ----------
    start, stop : int
        The window's frames, 0-based, end exclusive.
    frame_bin : int
        Frames per cadence.
    nframes : int
        The cube's frame count.
    time_min, time_max : float or None
        The window asked for (BTJD), for the TPF's headers.
    """

    start: int
    stop: int
    frame_bin: int
    nframes: int
    time_min: float | None = None
    time_max: float | None = None

    @classmethod
    def all(cls, nframes: int) -> FrameSelection:
        """Every frame, unbinned."""
        return cls(0, int(nframes), 1, int(nframes))

    @property
    def is_full(self) -> bool:
        """Every frame of the cube, unbinned: the cut is the same as without a selection."""
        return self.start == 0 and self.stop == self.nframes and self.frame_bin == 1

    @property
    def count(self) -> int:
        """Frames in the window (all are read)."""
        return self.stop - self.start

    @property
    def ncadences(self) -> int:
        """Cadences (TPF rows): whole bins only (a trailing partial bin is dropped)."""
        return self.count // self.frame_bin

    @property
    def used_stop(self) -> int:
        """One past the last frame that goes into a cadence."""
        return self.start + self.ncadences * self.frame_bin

    @property
    def dropped(self) -> int:
        """Frames of the window left out as a trailing partial bin."""
        return self.stop - self.used_stop

    @property
    def key(self) -> tuple[int, int, int]:
        """What distinguishes selections of one cube (for caches)."""
        return (self.start, self.used_stop, self.frame_bin)

    def frame_range(self, c0: int, c1: int) -> tuple[int, int]:
        """The cube frames of cadences ``c0:c1``."""
        return self.start + c0 * self.frame_bin, self.start + c1 * self.frame_bin


def cadence_columns(frames: Any, sel: FrameSelection | None) -> Any:
    """The per-cadence columns a TPF copies (``time``, ``timecorr``, ``quality``, ``cadence``,
    ``ffi_file``, ``start``, ``stop``, big-endian as the TPF stores them) for the selection ``sel``
    of a cube whose per-frame columns are ``frames`` (:class:`core.cubes.cube.FrameColumns`):
    ``frames`` itself for every frame unbinned, else the window's slice, binned as the module
    docstring says (``start`` the bin's first frame's, ``stop`` its last frame's)."""
    if sel is None or sel.is_full:
        return frames
    from core.cubes.cube import FrameColumns

    a, b, k = sel.start, sel.used_stop, sel.frame_bin
    m = sel.ncadences

    def first(values: np.ndarray | None) -> np.ndarray | None:
        return None if values is None else np.ascontiguousarray(values[a:b:k])

    def last(values: np.ndarray | None) -> np.ndarray | None:
        return None if values is None else np.ascontiguousarray(values[a + k - 1 : b : k])

    def mean(values: np.ndarray | None, dtype: str) -> np.ndarray | None:
        if values is None:
            return None
        return np.asarray(values[a:b], dtype=np.float64).reshape(m, k).mean(axis=1).astype(dtype)

    quality = np.bitwise_or.reduce(np.asarray(frames.quality[a:b], dtype=np.int64).reshape(m, k), axis=1)
    return FrameColumns(time=mean(frames.time, ">f8"), timecorr=mean(frames.timecorr, ">f4"),
                        quality=quality.astype(">i4"), cadence=first(frames.cadence),
                        ffi_file=first(frames.ffi_file), start=first(frames.start), stop=last(frames.stop))


def bin_pixels(block: np.ndarray, frame_bin: int) -> np.ndarray:
    """Bin the frames of a pixel-major block ``(..., frames, planes)`` (big-endian float32, as a
    cube stores it) into cadences of ``frame_bin`` frames: ``(..., frames // frame_bin, planes)``,
    big-endian float32. Plane 0 (flux) is the NaN-aware mean; plane 1 (error), where present, the
    errors of the frames with a finite flux added in quadrature and divided by their number. A
    cadence without a finite flux is NaN in both. Computed in float64, a few hundred pixels at a
    time, so the temporaries stay small whatever the block."""
    if frame_bin == 1:
        return block
    *lead, n, planes = block.shape
    m = n // frame_bin
    flat = block.reshape(-1, n, planes)
    out = np.empty((flat.shape[0], m, planes), dtype=">f4")
    for p0 in range(0, flat.shape[0], _BIN_PIXELS_PER_STEP):
        part = flat[p0 : p0 + _BIN_PIXELS_PER_STEP, : m * frame_bin]
        flux = part[..., 0].astype(np.float64).reshape(-1, m, frame_bin)
        ok = np.isfinite(flux)
        used = ok.sum(axis=2)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[p0 : p0 + len(part), :, 0] = np.where(ok, flux, 0.0).sum(axis=2) / used
            if planes > 1:
                err = part[..., 1].astype(np.float64).reshape(-1, m, frame_bin)
                squares = np.where(ok & np.isfinite(err), err * err, 0.0).sum(axis=2)
                out[p0 : p0 + len(part), :, 1] = np.sqrt(squares) / used
    return out.reshape(*lead, m, planes)


def read_cadences(cube: Any, y0: int, y1: int, x0: int, x1: int, sel: FrameSelection | None,
                  threads: int | None = None) -> np.ndarray:
    """The pixels of rows ``y0:y1``, columns ``x0:x1`` of ``cube`` per cadence of ``sel``:
    ``(y, x, cadences, planes)`` big-endian float32. Reads only the frames that go into a cadence
    (:meth:`core.cubes.cube.Cube.read_block_be` with ``frames=``), then bins them
    (:func:`bin_pixels`); every frame (``sel`` None or full) is the plain block read."""
    if sel is None or sel.is_full:
        return cube.read_block_be(y0, y1, x0, x1, threads=threads)
    block = cube.read_block_be(y0, y1, x0, x1, threads=threads, frames=(sel.start, sel.used_stop))
    return bin_pixels(block, sel.frame_bin)
