"""An opened TESS cube: its headers, its per-frame columns, its reference WCS and its pixels.

A :class:`Cube` is made from a :class:`core.cubes.info.CubeInfo` (read from the file's headers, or
taken from the catalog index without touching the file) and a byte source. It keeps only what a
target pixel file needs, each part read on first use:

- the per-frame columns (time, time correction, quality, cadence, FFI name: ~60 bytes a frame,
  ~0.2 MB for a 3,705-frame cube), read from the table once; the ~140-column table is not kept;
- the primary header and the reference row as astropy headers, and the reference WCS (one copy
  per thread: astropy's WCS is not thread-safe);
- :attr:`Cube.memo`, bounded caches of what cutting derives from the cube (header layouts per
  cutout shape, WCS fits per window, pixel positions per target), counted in :attr:`Cube.nbytes`.

Pixels are read with one contiguous range per cutout row, the floor for this layout.
:mod:`core.cubes.cache` keeps opened cubes in a cache bounded in bytes; :func:`open_cube` is its
entry point.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy import units as u
from astropy.coordinates import Angle, SkyCoord
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from core.cubes.info import CubeInfo, column_values
from core.errors import CorruptFileError
from core.fitsio.cards import padded
from core.product import Product
from core.quiet import quiet

__all__ = ["Cube", "CubeGeometry", "CubeMemo", "FrameColumns"]

#: per cube: at most this many (ra, dec) -> pixel results kept
_PIXELS_CACHED = 4096


@dataclass(frozen=True)
class FrameColumns:
    """The per-frame columns a TPF copies, as the TPF stores them (big-endian)."""

    time: np.ndarray  # >f8, (start + stop) / 2
    timecorr: np.ndarray | None  # >f4 (SPOC's BARYCORR; None for TICA)
    quality: np.ndarray  # >i4
    cadence: np.ndarray  # >i4
    ffi_file: np.ndarray  # S38
    start: np.ndarray | None = None  # >f8, the frame's TSTART (TICA STARTTJD), BTJD
    stop: np.ndarray | None = None  # >f8, the frame's TSTOP (TICA ENDTJD), BTJD

    @property
    def nbytes(self) -> int:
        arrays = (self.time, self.timecorr, self.quality, self.cadence, self.ffi_file, self.start, self.stop)
        return sum(a.nbytes for a in arrays if a is not None)


class CubeMemo:
    """Bounded caches of values derived from one cube, by kind (each kind its own LRU).

    A hit takes no lock (one dict read is atomic); insertions and evictions do. ``limit(kind,
    items=, nbytes=)`` sets a kind's bounds; :attr:`nbytes` is what all kinds hold, as declared
    by :meth:`put`.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kinds: dict[str, OrderedDict] = {}
        self._sizes: dict[str, dict[Any, int]] = {}
        self._limits: dict[str, tuple[int | None, int | None]] = {}
        self.nbytes = 0

    def limit(self, kind: str, *, items: int | None = None, nbytes: int | None = None) -> None:
        """Bound ``kind`` to ``items`` entries and ``nbytes`` declared bytes (oldest out first)."""
        self._limits[kind] = (items, nbytes)

    def get(self, kind: str, key: Any) -> Any:
        """The cached value, or None."""
        lru = self._kinds.get(kind)
        return None if lru is None else lru.get(key)

    def put(self, kind: str, key: Any, value: Any, nbytes: int = 0) -> Any:
        """Cache ``value`` (declared to hold ``nbytes``) and return it; evicts to the kind's bounds."""
        with self._lock:
            lru = self._kinds.setdefault(kind, OrderedDict())
            sizes = self._sizes.setdefault(kind, {})
            if key in lru:
                self.nbytes -= sizes.pop(key, 0)
            lru[key] = value
            lru.move_to_end(key)
            sizes[key] = int(nbytes)
            self.nbytes += int(nbytes)
            max_items, max_bytes = self._limits.get(kind, (None, None))
            total = sum(sizes.values()) if max_bytes is not None else 0
            while lru and (
                (max_items is not None and len(lru) > max_items) or (max_bytes is not None and total > max_bytes)
            ):
                old, _ = lru.popitem(last=False)
                freed = sizes.pop(old, 0)
                total -= freed
                self.nbytes -= freed
        return value

    def get_or_make(self, kind: str, key: Any, make: Callable[[], Any], size: Callable[[Any], int] | None = None) -> Any:
        """The cached value of ``key``, made (outside the lock) and cached on a miss."""
        hit = self.get(kind, key)
        if hit is not None:
            return hit
        value = make()
        return self.put(kind, key, value, size(value) if size is not None else 0)

    def values(self, kind: str) -> list[Any]:
        """The cached values of ``kind``, oldest first."""
        lru = self._kinds.get(kind)
        return [] if lru is None else list(lru.values())

    def clear(self, kind: str | None = None) -> None:
        with self._lock:
            kinds = [kind] if kind is not None else list(self._kinds)
            for k in kinds:
                self._kinds.pop(k, None)
                self.nbytes -= sum(self._sizes.pop(k, {}).values())


class _Lazy:
    """Values made once on first use, under a re-entrant lock (one lazy value may need another)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._lazy: dict[str, Any] = {}

    def _once(self, name: str, make: Callable[[], Any]) -> Any:
        value = self._lazy.get(name)
        if value is None:
            with self._lock:
                value = self._lazy.get(name)
                if value is None:
                    value = self._lazy[name] = make()
        return value


class CubeGeometry(_Lazy):
    """A cube's reference WCS and what is computed from it: the pixel of a sky position, whether a
    position is on the science pixels. Made from a :class:`~core.cubes.info.CubeInfo` alone, so the
    catalog can route requests without opening any cube file.

    Thread-safe: each thread gets its own copy of the WCS (astropy's ``WCS`` is not safe to share
    between threads: concurrent transforms through one wcsprm can return wrong pixels); positions
    asked before are cached (bounded).
    """

    def __init__(self, info: CubeInfo) -> None:
        super().__init__()
        self.info = info
        self.memo = CubeMemo()
        self.memo.limit("pixel", items=_PIXELS_CACHED)
        self._wcs_local = threading.local()

    @property
    def nbytes(self) -> int:
        """Bytes held, roughly: the WCS (with SIP terms) and its per-thread copies, the header, the cache."""
        total = 1024 + len(self.info.wcs_values) + self.memo.nbytes
        if "wcs" in self._lazy:
            total += 64 * 1024 + 12 * len(self.info.wcs_values)
        return total

    @property
    def wcs_header(self) -> fits.Header:
        """The reference table row as a header."""
        return self._once("wcs_header", self.info.wcs_header)

    def _master_wcs(self) -> WCS:
        def make() -> WCS:
            with quiet(FITSFixedWarning):
                wcs = WCS(self.info.celestial_header(), relax=True)
            # the image size, as astrocut's table WCS has it (its FFI's NAXIS1/2): callers such as
            # path_to_footprints and center_on_path(img_wcs=) need it
            wcs.pixel_shape = (self.info.nx, self.info.ny)
            return wcs

        return self._once("wcs", make)

    @property
    def wcs(self) -> WCS:
        """This thread's copy of the reference WCS (astropy's ``WCS`` is not safe to share between
        threads: concurrent transforms through one wcsprm can return wrong pixels)."""
        local = self._wcs_local
        wcs = getattr(local, "wcs", None)
        if wcs is None:
            wcs = local.wcs = self._master_wcs().deepcopy()
        return wcs

    @property
    def is_icrs(self) -> bool:
        """Whether the reference WCS's frame is ICRS."""
        return self._once("icrs", lambda: (self._master_wcs().wcs.radesys or "ICRS").strip().upper() == "ICRS")

    def radec_to_pixel(self, ra: float, dec: float) -> tuple[float, float]:
        """0-based (x, y) of ICRS (ra, dec) degrees through the TAN-SIP WCS; NaN when it fails
        (off the projection, or the SIP inversion does not converge far off the CCD).

        Repeated targets are cached (:attr:`memo`, kind ``"pixel"``). A converged
        :func:`_world2pix` maps back to (ra, dec) through ``all_pix2world`` to within its
        tolerance (1e-4 px), so no round trip is needed.
        """
        key = (ra, dec)
        hit = self.memo.get("pixel", key)
        if hit is not None:
            return hit
        try:
            # no quiet() here: it would put every new position of every cut through one lock; the
            # converging path warns of nothing, and _world2pix silences its astropy fallback
            x, y = _world2pix(self.wcs, ra, dec)
        except Exception:  # noqa: BLE001 - NoConvergence, wcslib errors...: not on the CCD
            x = y = float("nan")
        if not (math.isfinite(x) and math.isfinite(y)):
            x = y = float("nan")
        return self.memo.put("pixel", key, (x, y), 96)

    def world_to_pixel(self, coord: SkyCoord) -> tuple[float, float]:
        """0-based (x, y) pixel of ``coord`` through the full TAN-SIP WCS (NaN if it fails)."""
        if self.is_icrs:
            c = coord.icrs
            return self.radec_to_pixel(float(c.ra.deg), float(c.dec.deg))
        try:
            x, y = coord.to_pixel(self.wcs)
        except Exception:  # noqa: BLE001 - as above
            return float("nan"), float("nan")
        return float(x), float(y)

    def contains(self, coord: SkyCoord, radius: Angle | u.Quantity = 0 * u.deg) -> bool:
        """Whether ``coord`` lies within the science pixels (grown by ``radius``).

        For full-size FFIs the science pixels are columns 44..2091, rows 0..2047; for other sizes
        (synthetic or trimmed cubes) the whole array.
        """
        c = coord.icrs
        return self.contains_radec(float(c.ra.deg), float(c.dec.deg), float(Angle(radius).deg))

    def contains_radec(self, ra: float, dec: float, radius_deg: float = 0.0) -> bool:
        """:meth:`contains` for ICRS degrees (no astropy objects: the service's per-request test)."""
        y0, y1, x0, x1 = self.info.science_box
        pad = float(radius_deg) / self.min_pixel_scale if radius_deg > 0 else 0.0
        if self.is_icrs:
            x, y = self.radec_to_pixel(ra, dec)
        else:  # pragma: no cover - TESS cubes are ICRS
            x, y = self.world_to_pixel(SkyCoord(ra, dec, unit="deg"))
        if not (math.isfinite(x) and math.isfinite(y)):
            return False
        return (x0 - 0.5 - pad <= x < x1 - 0.5 + pad) and (y0 - 0.5 - pad <= y < y1 - 0.5 + pad)

    @property
    def pixel_scales(self) -> tuple[float, float]:
        """The reference WCS's pixel sides along x and y, degrees (computed once)."""

        def make() -> tuple[float, float]:
            from astropy.wcs.utils import proj_plane_pixel_scales

            sx, sy = proj_plane_pixel_scales(self._master_wcs().celestial)[:2]
            return float(sx), float(sy)

        return self._once("scales", make)

    @property
    def min_pixel_scale(self) -> float:
        """The smaller pixel side of the reference WCS, degrees."""
        return min(self.pixel_scales)

    def footprint(self) -> SkyCoord:
        """Sky positions of the four corners of the science pixels."""
        ra, dec = zip(*self.info.footprint)
        return SkyCoord(list(ra), list(dec), unit="deg", frame="icrs")


class Cube(_Lazy):
    """An opened TESS cube. Make it with :func:`open_cube` (cached), not directly.

    Attributes
    ----------
    uri, source, info : the location, its :mod:`core.storage.sources` byte source and its
        :class:`~core.cubes.info.CubeInfo`.
    ny, nx, nframes, nplanes : the data dimensions (rows, columns, frames, planes).
    data_offset : byte offset of HDU 1's data.
    sector, camera, ccd : ints; product : SPOC or TICA.
    wcs_row : the table row the reference WCS comes from (the middle one, searching forward for a
        TAN-SIP row and wrapping, as astrocut does).
    is_icrs : whether the reference WCS is ICRS (TESS cubes are).
    memo : :class:`CubeMemo`, bounded caches of derived values.
    """

    def __init__(self, info: CubeInfo, source: Any, geometry: CubeGeometry | None = None) -> None:
        super().__init__()
        self.info = info
        self.geometry = geometry if geometry is not None and geometry.info.identity == info.identity else (
            CubeGeometry(info))
        self.uri = info.uri
        self.source = source
        self.product = info.product
        self.sector, self.camera, self.ccd = info.sector, info.camera, info.ccd
        self.ny, self.nx, self.nframes, self.nplanes = info.ny, info.nx, info.nframes, info.nplanes
        self.data_offset = info.data_offset
        self.wcs_row = info.wcs_row
        self.memo = CubeMemo()

    # -- headers and per-frame columns ----------------------------------------------------------
    @property
    def primary_header(self) -> fits.Header:
        """HDU 0's header (parsed once, from the info's text)."""
        return self._once("primary", lambda: _parse_header(self.info.primary_header))

    @property
    def frames(self) -> FrameColumns:
        """The per-frame columns (read from the table on first use, then kept)."""
        return self._once("frames", self._read_frames)

    @property
    def time(self) -> np.ndarray:
        return self.frames.time

    @property
    def timecorr(self) -> np.ndarray | None:
        return self.frames.timecorr

    @property
    def quality(self) -> np.ndarray:
        return self.frames.quality

    @property
    def cadence(self) -> np.ndarray:
        return self.frames.cadence

    @property
    def ffi_file(self) -> np.ndarray:
        return self.frames.ffi_file

    def _read_frames(self) -> FrameColumns:
        info = self.info
        raw = self.source.read_range(info.table_data_offset, info.table_bytes)
        names = list(info.columns)
        try:
            values = column_values(raw, info.columns, names, info.table_row_bytes, info.nframes)
        except ValueError as exc:
            raise CorruptFileError(f"{self.uri}: unreadable per-frame column ({exc})", field="cube_file") from None
        if self.product == Product.SPOC:
            start, stop, qual = values["TSTART"], values["TSTOP"], values["DQUALITY"]
            timecorr = np.asarray(values["BARYCORR"], dtype=">f4")
            cadence = np.zeros(self.nframes, dtype=">i4")
        else:
            start, stop, qual = values["STARTTJD"], values["ENDTJD"], values["QUAL_BIT"]
            timecorr = None
            cadence = (np.asarray(values["CADENCE"], dtype=">i4") if "CADENCE" in values
                       else np.zeros(self.nframes, dtype=">i4"))
        start, stop = np.asarray(start, dtype=float), np.asarray(stop, dtype=float)
        time = ((start + stop) / 2).astype(">f8")
        quality = np.asarray(qual).astype(">i4")
        names_ = np.asarray(values["FFI_FILE"])
        ffi = np.char.encode(names_.astype(str), "ascii") if names_.dtype.kind == "U" else names_
        return FrameColumns(time, timecorr, quality, cadence, ffi.astype("S38"), start.astype(">f8"),
                            stop.astype(">f8"))

    @property
    def table(self) -> fits.FITS_rec:
        """The whole frame table, parsed by astropy on every access (for inspection: nothing keeps it)."""
        info = self.info
        start = info.data_offset + padded(info.ny * info.nx * info.nframes * info.nplanes * 4)
        raw = self.source.read_range(start, info.table_data_offset - start + info.table_bytes)
        with quiet():
            return fits.BinTableHDU.fromstring(raw + bytes(padded(len(raw)) - len(raw))).data

    @property
    def nbytes(self) -> int:
        """Bytes this cube holds in memory (per-frame columns, headers, caches), roughly."""
        total = 4096 + len(self.info.primary_header) + self.memo.nbytes
        frames = self._lazy.get("frames")
        if frames is not None:
            total += frames.nbytes
        if "primary" in self._lazy:  # an astropy Header holds ~12x its card text
            total += 12 * len(self.info.primary_header)
        return total + self.geometry.nbytes

    # -- WCS and geometry (see CubeGeometry) ------------------------------------------------------
    @property
    def wcs_header(self) -> fits.Header:
        """The reference table row as a header."""
        return self.geometry.wcs_header

    @property
    def wcs(self) -> WCS:
        """This thread's copy of the reference WCS."""
        return self.geometry.wcs

    @property
    def is_icrs(self) -> bool:
        return self.geometry.is_icrs

    @property
    def pixel_scales(self) -> tuple[float, float]:
        return self.geometry.pixel_scales

    @property
    def min_pixel_scale(self) -> float:
        return self.geometry.min_pixel_scale

    def radec_to_pixel(self, ra: float, dec: float) -> tuple[float, float]:
        """See :meth:`CubeGeometry.radec_to_pixel`."""
        return self.geometry.radec_to_pixel(ra, dec)

    def world_to_pixel(self, coord: SkyCoord) -> tuple[float, float]:
        return self.geometry.world_to_pixel(coord)

    def contains(self, coord: SkyCoord, radius: Angle | u.Quantity = 0 * u.deg) -> bool:
        return self.geometry.contains(coord, radius)

    def contains_radec(self, ra: float, dec: float, radius_deg: float = 0.0) -> bool:
        return self.geometry.contains_radec(ra, dec, radius_deg)

    def footprint(self) -> SkyCoord:
        return self.geometry.footprint()

    # -- pixels --------------------------------------------------------------------------------------
    def ranges(self, y0: int, y1: int, x0: int, x1: int) -> list[tuple[int, int]]:
        """The byte ranges (offset, length) holding rows y0:y1, columns x0:x1 (one per row)."""
        per_px = self.nframes * self.nplanes * 4
        n = (x1 - x0) * per_px
        base = self.data_offset + x0 * per_px
        row = self.nx * per_px
        return [(base + y * row, n) for y in range(y0, y1)]

    def read_block_be(self, y0: int, y1: int, x0: int, x1: int, threads: int | None = None,
                      frames: tuple[int, int] | None = None) -> np.ndarray:
        """Like :meth:`read_block` but big-endian as stored (no byte swap; cheapest).

        ``threads``: local rows read at once (default one: from the page cache a second thread
        rarely helps). A remote cube always has every row's range in flight at once, through its
        backend's shared, bounded pool: one round trip per cut, not one per row.

        ``frames``: only frames ``f0:f1`` (shape ``(y, x, f1 - f0, planes)``). Each pixel's frames
        are contiguous, so that is one range per pixel; see :meth:`_read_window`.
        """
        if not (0 <= y0 < y1 <= self.ny and 0 <= x0 < x1 <= self.nx):
            raise ValueError(f"block [{y0}:{y1}, {x0}:{x1}] is outside the {self.ny}x{self.nx} cube")
        if frames is not None and tuple(frames) != (0, self.nframes):
            return self._read_window(y0, y1, x0, x1, int(frames[0]), int(frames[1]), threads)
        out = np.empty((y1 - y0, x1 - x0, self.nframes, self.nplanes), dtype=">f4")
        if (threads is None or threads <= 1) and getattr(self.source, "path", None) is not None:
            # Local file: preadv straight into the output, one call per row (no copies).
            per_px = self.nframes * self.nplanes * 4
            row = self.nx * per_px
            self.source.read_rows_into(self.data_offset + y0 * row + x0 * per_px, row, y1 - y0, out)
            return out
        ranges = self.ranges(y0, y1, x0, x1)
        flat = memoryview(out).cast("B")
        n = ranges[0][1]
        local = getattr(self.source, "path", None) is not None
        parts = self.source.read_ranges(ranges, threads=threads if local else None)
        for i, part in enumerate(parts):
            if len(part) != n:
                raise CorruptFileError(f"{self.uri}: short read from the cube data", field="cube_file")
            flat[i * n : (i + 1) * n] = part
        return out

    def window_plan(self, y0: int, y1: int, x0: int, x1: int, f0: int, f1: int) -> str:
        """How :meth:`read_block_be` reads frames ``f0:f1`` of a block: ``"pixels"`` (one range per
        pixel) or ``"rows"`` (one range per cutout row, from the first pixel's frame ``f0`` to the
        last pixel's frame ``f1``: more bytes, fewer requests), whichever the source's cost model
        (:meth:`~core.storage.sources.ByteSource.read_cost`) says is cheaper. Local files always
        read the pixels' ranges (a ``preadv`` costs about a microsecond)."""
        if getattr(self.source, "path", None) is not None:
            return "pixels"
        per_px = self.nframes * self.nplanes * 4
        n = (f1 - f0) * self.nplanes * 4
        ny, nx = y1 - y0, x1 - x0
        gap = per_px - n
        merged = self.source.merged_count(nx, n, gap)  # the pixels of one row, after coalescing
        pixels = self.source.read_cost(ny * merged, ny * (nx * n + (nx - merged) * gap))
        rows = self.source.read_cost(ny, ny * ((nx - 1) * per_px + n))
        return "rows" if rows < pixels else "pixels"

    def _read_window(self, y0: int, y1: int, x0: int, x1: int, f0: int, f1: int,
                     threads: int | None) -> np.ndarray:
        """Frames ``f0:f1`` of rows ``y0:y1``, columns ``x0:x1``: ``preadv`` of each pixel's range
        straight into the output from a local file; otherwise the source's concurrent range reads
        of each pixel's range, or of each row's span (:meth:`window_plan`)."""
        if not 0 <= f0 < f1 <= self.nframes:
            raise ValueError(f"frames [{f0}:{f1}] are outside the cube's {self.nframes} frames")
        P = self.nplanes
        per_px = self.nframes * P * 4
        row = self.nx * per_px
        n = (f1 - f0) * P * 4
        nx = x1 - x0
        out = np.empty((y1 - y0, nx, f1 - f0, P), dtype=">f4")
        first = self.data_offset + x0 * per_px + f0 * P * 4
        if getattr(self.source, "path", None) is not None:
            for i, y in enumerate(range(y0, y1)):  # one preadv per pixel, no copies
                self.source.read_rows_into(first + y * row, per_px, nx, out[i])
            return out
        flat = memoryview(out).cast("B")
        if self.window_plan(y0, y1, x0, x1, f0, f1) == "rows":
            span = (nx - 1) * per_px + n
            parts = self.source.read_ranges([(first + y * row, span) for y in range(y0, y1)])
            for i, part in enumerate(parts):
                if len(part) != span:
                    raise CorruptFileError(f"{self.uri}: short read from the cube data", field="cube_file")
                view = memoryview(part)
                for j in range(nx):
                    k = i * nx + j
                    flat[k * n : (k + 1) * n] = view[j * per_px : j * per_px + n]
            return out
        ranges = [(first + y * row + j * per_px, n) for y in range(y0, y1) for j in range(nx)]
        for k, part in enumerate(self.source.read_ranges(ranges)):
            if len(part) != n:
                raise CorruptFileError(f"{self.uri}: short read from the cube data", field="cube_file")
            flat[k * n : (k + 1) * n] = part
        return out

    def read_block(self, y0: int, y1: int, x0: int, x1: int, threads: int | None = None) -> np.ndarray:
        """Pixels of rows y0:y1, columns x0:x1 as native float32 of shape (y, x, frames, planes).

        Reads one contiguous range per row ((x1-x0)*frames*planes*4 bytes).
        """
        return self.read_block_be(y0, y1, x0, x1, threads).astype(np.float32)

    def __repr__(self) -> str:
        return (
            f"<Cube {self.uri} {self.product} s{self.sector} {self.camera}-{self.ccd} "
            f"{self.ny}x{self.nx}x{self.nframes}x{self.nplanes}>"
        )


def _parse_header(text: str) -> fits.Header:
    with quiet():
        return fits.Header.fromstring(text)


def _world2pix(wcs: WCS, ra: float, dec: float, tolerance: float = 1e-4, maxiter: int = 20) -> tuple[float, float]:
    """0-based pixel of one (ra, dec) through a WCS with distortions (SIP).

    astropy's ``all_world2pix`` (non-adaptive fixed-point iteration ``p -= pix2foc(p) - q``, with
    ``q`` the linear WCS's pixel, until a step is under ``tolerance``) step for step on Python
    floats, so the result is the same to the last bit (windows on exact half pixels round as in
    astrocut) at ~1/4 of the cost for one position. Anything but plain convergence (divergence,
    ``maxiter``) is handed to ``all_world2pix`` itself, which raises ``NoConvergence``.
    """
    ((qx, qy),) = wcs.wcs_world2pix(np.array([[ra, dec]], dtype=float), 0).tolist()
    if not wcs.has_distortion:
        return qx, qy
    tol2 = tolerance**2
    ((fx, fy),) = wcs.pix2foc(np.array([[qx, qy]]), 0).tolist()
    dx, dy = fx - qx, fy - qy
    x, y = qx - dx, qy - dy
    dn = dprev = dx * dx + dy * dy
    k = 1
    while dn >= tol2 and k < maxiter:
        ((fx, fy),) = wcs.pix2foc(np.array([[x, y]]), 0).tolist()
        dx, dy = fx - qx, fy - qy
        dn = dx * dx + dy * dy
        if dn >= dprev or not math.isfinite(dn):
            break  # diverging: astropy's adaptive path decides
        dprev = dn
        x, y = x - dx, y - dy
        k += 1
    else:
        if math.isfinite(x) and math.isfinite(y) and dn < tol2:
            return x, y
    with quiet():  # far off the CCD: "All-NaN slice" RuntimeWarnings
        x, y = wcs.all_world2pix(ra, dec, 0)
    return float(x), float(y)
