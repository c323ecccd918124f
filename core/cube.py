"""Reading TESS FFI cubes (the astrocut/MAST layout) with a per-cube cache.

A cube is HDU0 a primary header, HDU1 float32 big-endian data of numpy shape
(rows, cols, frames, planes) (plane 0 flux, plane 1 error), HDU2 a binary table with one row
per FFI. :func:`open_cube` parses the headers and the table once per cube (keyed by the
source's identity) and keeps the result in a bounded LRU, so repeated cuts skip all parsing —
astrocut 1.4.0 re-opens the cube and re-parses the whole table on every cut (its defect 5).

Headers are read with a few range reads and ``fits.Header.fromstring``; the table HDU's bytes
are read once and parsed by astropy. Pixels are read with one contiguous range per cutout row,
which is the floor for this layout.
"""

from __future__ import annotations

import math
import os
import re
import threading
from collections import OrderedDict
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
from astropy import units as u
from astropy.coordinates import Angle, SkyCoord
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from core.errors import CorruptFileError, NotFoundError
from core.fits_cards import BLOCK, CARD
from core.fits_cards import padded as _padded
from core.fits_cards import read_header as _read_header
from core.quiet import quiet

if TYPE_CHECKING:  # pragma: no cover
    from core.s3 import S3Config

_CACHE_SIZE = 32

# Table columns a cube needs, per product (astrocut 1.4.0 for SPOC, 0.11.1 for TICA).
REQUIRED_COLUMNS = {
    "SPOC": ("TSTART", "TSTOP", "BARYCORR", "DQUALITY", "FFI_FILE"),
    "TICA": ("STARTTJD", "ENDTJD", "QUAL_BIT", "FFI_FILE"),
}

# Full-frame SPOC/TICA FFIs are 2136 x 2078; the science pixels are columns 44..2091, rows 0..2047.
_FULL_FFI = (2078, 2136)
_SCIENCE = (0, 2048, 44, 2092)  # y0, y1, x0, x1

_NAME_RE = re.compile(r"s(\d{4})-(\d)-(\d)")

#: Counters for tests and metrics: how many cubes were parsed and how many lookups hit the cache.
CACHE_STATS = {"parses": 0, "hits": 0}


def _open_source(uri: str, s3: Any = None) -> Any:
    from core.sources import open_source

    return open_source(uri, s3=s3)


class Cube:
    """A parsed TESS cube: headers, table, reference WCS and pixel access.

    Do not build directly; use :func:`open_cube`, which caches instances.

    Attributes
    ----------
    uri, source : the location and its :mod:`core.sources` byte source.
    primary_header : astropy Header of HDU 0.
    table_header : astropy Header of HDU 2.
    table : FITS_rec of HDU 2 (one row per FFI).
    ny, nx, nframes, nplanes : the data dimensions (rows, columns, frames, planes).
    data_offset : byte offset of HDU 1's data.
    sector, camera, ccd : ints; product : "SPOC" or "TICA".
    wcs : the reference FFI's celestial TAN-SIP WCS (middle row, searching forward for a SIP
        row and wrapping, as astrocut does).
    wcs_row : the table row index the WCS came from; wcs_header : that row as a Header.
    time, timecorr, quality, cadence, ffi_file : per-frame numpy arrays precomputed for TPFs.
    """

    def __init__(self, uri: str, source: Any) -> None:
        self.uri = uri
        self.source = source
        self._lock = threading.Lock()
        self._templates: dict[Any, Any] = {}
        self._pixels: dict[tuple[float, float], tuple[float, float]] = {}  # (ra, dec) -> (x, y)
        self._parse()

    # -- parsing ---------------------------------------------------------------------------
    def _parse(self) -> None:
        uri, src = self.uri, self.source
        if src.size < BLOCK:
            raise CorruptFileError(
                f"{uri}: too small to be a FITS cube ({src.size} bytes)", field="cube_file"
            )
        head = src.read_range(0, min(CARD, src.size))
        if not head.startswith(b"SIMPLE  ="):
            raise CorruptFileError(f"{uri}: not a FITS file", field="cube_file")
        self.primary_header, plen = _read_header(src, 0, uri)
        h1, h1len = _read_header(src, plen, uri)
        if h1.get("XTENSION", "").strip() != "IMAGE" or h1.get("NAXIS") != 4 or h1.get("BITPIX") != -32:
            raise CorruptFileError(
                f"{uri}: not a TESS cube (HDU 1 must be a 4-D float32 image, got "
                f"XTENSION={h1.get('XTENSION')!r} NAXIS={h1.get('NAXIS')} BITPIX={h1.get('BITPIX')})",
                field="cube_file",
            )
        self.image_header = h1
        self.nplanes = int(h1["NAXIS1"])
        self.nframes = int(h1["NAXIS2"])
        self.nx = int(h1["NAXIS3"])
        self.ny = int(h1["NAXIS4"])
        if self.nplanes not in (1, 2) or min(self.nframes, self.nx, self.ny) < 1:
            raise CorruptFileError(
                f"{uri}: not a TESS cube (dims {self.nplanes}x{self.nframes}x{self.nx}x{self.ny})",
                field="cube_file",
            )
        if h1.get("BSCALE", 1) != 1 or h1.get("BZERO", 0) != 0:
            raise CorruptFileError(f"{uri}: scaled cube data is not supported", field="cube_file")
        self.data_offset = plen + h1len
        data_bytes = self.ny * self.nx * self.nframes * self.nplanes * 4
        t_off = self.data_offset + _padded(data_bytes)
        if src.size < t_off + BLOCK:
            raise CorruptFileError(
                f"{uri}: truncated cube ({src.size} bytes, the data alone end at {self.data_offset + data_bytes})",
                field="cube_file",
            )
        h2, h2len = _read_header(src, t_off, uri)
        if h2.get("XTENSION", "").strip() != "BINTABLE":
            raise CorruptFileError(f"{uri}: not a TESS cube (HDU 2 is not a binary table)", field="cube_file")
        tbytes = int(h2["NAXIS1"]) * int(h2["NAXIS2"]) + int(h2.get("PCOUNT", 0))
        if src.size < t_off + h2len + tbytes:
            raise CorruptFileError(f"{uri}: truncated cube (table incomplete)", field="cube_file")
        raw = src.read_range(
            t_off, h2len + _padded(tbytes) if src.size >= t_off + h2len + _padded(tbytes) else h2len + tbytes
        )
        with quiet():
            try:
                hdu = fits.BinTableHDU.fromstring(raw)
                table = hdu.data
            except Exception as exc:  # noqa: BLE001 - any astropy failure means a bad table
                raise CorruptFileError(f"{uri}: unreadable cube table ({exc})", field="cube_file") from None
        self.table_header = hdu.header
        self.table = table
        names = set(table.columns.names)
        if table is None or len(table) != self.nframes:
            raise CorruptFileError(
                f"{uri}: cube table has {0 if table is None else len(table)} rows for {self.nframes} frames",
                field="cube_file",
            )
        if all(c in names for c in REQUIRED_COLUMNS["SPOC"]):
            self.product = "SPOC"
        elif all(c in names for c in REQUIRED_COLUMNS["TICA"]):
            self.product = "TICA"
        else:
            missing = [c for c in REQUIRED_COLUMNS["SPOC"] if c not in names]
            raise CorruptFileError(f"{uri}: cube table lacks columns {missing}", field="cube_file")
        self._parse_ids()
        self._parse_columns()
        self._parse_wcs()
        CACHE_STATS["parses"] += 1

    def _parse_ids(self) -> None:
        ph = self.primary_header
        m = _NAME_RE.search(os.path.basename(str(self.uri)))
        sector = ph.get("SECTOR")
        camera = ph.get("CAMERA", ph.get("CAMNUM"))
        ccd = ph.get("CCD", ph.get("CCDNUM"))
        if m:
            sector = sector if sector is not None else int(m.group(1))
            camera = camera if camera is not None else int(m.group(2))
            ccd = ccd if ccd is not None else int(m.group(3))
        self.sector = int(sector) if sector is not None else 0
        self.camera = int(camera) if camera is not None else 0
        self.ccd = int(ccd) if ccd is not None else 0

    def _parse_columns(self) -> None:
        t = self.table
        if self.product == "SPOC":
            start, stop, qual = "TSTART", "TSTOP", "DQUALITY"
            self.timecorr = np.asarray(t["BARYCORR"], dtype=">f4")
            self.cadence = np.zeros(self.nframes, dtype=">i4")
        else:
            start, stop, qual = "STARTTJD", "ENDTJD", "QUAL_BIT"
            self.timecorr = None
            names = t.columns.names
            self.cadence = (
                np.asarray(t["CADENCE"], dtype=">i4") if "CADENCE" in names else np.zeros(self.nframes, ">i4")
            )
        self.time = ((np.asarray(t[start], dtype=float) + np.asarray(t[stop], dtype=float)) / 2).astype(">f8")
        self.quality = np.asarray(t[qual]).astype(">i4")
        self.ffi_file = np.char.encode(np.asarray(t["FFI_FILE"]).astype(str), "ascii").astype("S38")

    def _parse_wcs(self) -> None:
        t = self.table
        n = len(t)
        names = t.columns.names
        if "CTYPE2" not in names:
            raise CorruptFileError(f"{self.uri}: cube table has no WCS (CTYPE2) column", field="cube_file")
        ctype2 = np.char.strip(np.asarray(t["CTYPE2"]).astype(str))
        mid = n // 2
        row = next((i for i in list(range(mid, n)) + list(range(mid)) if ctype2[i] == "DEC--TAN-SIP"), None)
        if row is None:
            raise CorruptFileError(f"{self.uri}: no FFI row holds a TAN-SIP WCS", field="cube_file")
        header = fits.Header()
        rec = t[row]
        for name in names:
            value = rec[name]
            if isinstance(value, (bytes, np.bytes_)):
                value = value.decode("ascii", "replace")
            elif isinstance(value, np.generic):
                value = value.item()
            if isinstance(value, float) and np.isnan(value):
                continue
            header[name] = value
        with quiet(FITSFixedWarning):
            self._wcs = WCS(header, relax=True)
        self._wcs_local = threading.local()
        self.wcs_row = row
        self.wcs_header = header
        radesys = (self._wcs.wcs.radesys or "ICRS").strip().upper()
        self._icrs = radesys == "ICRS"

    @property
    def wcs(self) -> WCS:
        """This thread's copy of the reference WCS.

        astropy's ``WCS`` is not safe to share between threads (concurrent transforms through one
        wcsprm can return wrong pixels), and the service cuts one cached cube from many worker
        threads at once; each thread gets its own deep copy, made once.
        """
        local = self._wcs_local
        wcs = getattr(local, "wcs", None)
        if wcs is None:
            wcs = local.wcs = self._wcs.deepcopy()
        return wcs

    # -- geometry --------------------------------------------------------------------------
    def radec_to_pixel(self, ra: float, dec: float) -> tuple[float, float]:
        """0-based (x, y) of ICRS (ra, dec) degrees through the TAN-SIP WCS; NaN when it fails
        (off the projection, or the SIP inversion does not converge far off the CCD).

        A converged :func:`_world2pix` maps back to (ra, dec) through ``all_pix2world`` to within
        its tolerance (1e-4 px), so no round trip is needed."""
        key = (ra, dec)
        hit = self._pixels.get(key)  # repeated targets skip the WCS (a dict read is atomic)
        if hit is not None:
            return hit
        try:
            # no quiet() here: it would put every new position of every cut through one lock (it
            # must: warnings.catch_warnings alone is not thread-safe, see core.quiet); the
            # converging path warns of nothing, and _world2pix silences its astropy fallback
            x, y = _world2pix(self.wcs, ra, dec)
        except Exception:  # noqa: BLE001 - NoConvergence, wcslib errors...: not on the CCD
            x = y = float("nan")
        if not (math.isfinite(x) and math.isfinite(y)):
            x = y = float("nan")
        with self._lock:
            if len(self._pixels) >= _PIXELS_CACHED:
                self._pixels.clear()  # bounded; refilled by the targets still in demand
            self._pixels[key] = (x, y)
        return x, y

    def world_to_pixel(self, coord: SkyCoord) -> tuple[float, float]:
        """0-based (x, y) pixel of ``coord`` through the full TAN-SIP WCS (NaN if it fails)."""
        if self._icrs:
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
        if (self.ny, self.nx) == _FULL_FFI:
            y0, y1, x0, x1 = _SCIENCE
        else:
            y0, y1, x0, x1 = 0, self.ny, 0, self.nx
        pad = float(radius_deg) / self._min_pixel_scale if radius_deg > 0 else 0.0
        if self._icrs:
            x, y = self.radec_to_pixel(ra, dec)
        else:  # pragma: no cover - TESS cubes are ICRS
            x, y = self.world_to_pixel(SkyCoord(ra, dec, unit="deg"))
        if not (math.isfinite(x) and math.isfinite(y)):
            return False
        return (x0 - 0.5 - pad <= x < x1 - 0.5 + pad) and (y0 - 0.5 - pad <= y < y1 - 0.5 + pad)

    @cached_property
    def _min_pixel_scale(self) -> float:
        """The smaller pixel side of the reference WCS, degrees (computed once)."""
        from astropy.wcs.utils import proj_plane_pixel_scales

        return float(np.min(proj_plane_pixel_scales(self.wcs.celestial)))

    def footprint(self) -> SkyCoord:
        """Sky positions of the four corners of the science pixels (for the service's index)."""
        if (self.ny, self.nx) == _FULL_FFI:
            y0, y1, x0, x1 = _SCIENCE
        else:
            y0, y1, x0, x1 = 0, self.ny, 0, self.nx
        xs = np.array([x0, x1 - 1, x1 - 1, x0], dtype=float)
        ys = np.array([y0, y0, y1 - 1, y1 - 1], dtype=float)
        ra, dec = self.wcs.all_pix2world(xs, ys, 0)
        return SkyCoord(ra, dec, unit="deg", frame="icrs")

    # -- pixels ----------------------------------------------------------------------------
    def ranges(self, y0: int, y1: int, x0: int, x1: int) -> list[tuple[int, int]]:
        """The byte ranges (offset, length) holding rows y0:y1, columns x0:x1 (one per row)."""
        per_px = self.nframes * self.nplanes * 4
        n = (x1 - x0) * per_px
        base = self.data_offset + x0 * per_px
        row = self.nx * per_px
        return [(base + y * row, n) for y in range(y0, y1)]

    def read_block_be(self, y0: int, y1: int, x0: int, x1: int, threads: int = 1) -> np.ndarray:
        """Like :meth:`read_block` but big-endian as stored (no byte swap; cheapest)."""
        if not (0 <= y0 < y1 <= self.ny and 0 <= x0 < x1 <= self.nx):
            raise ValueError(f"block [{y0}:{y1}, {x0}:{x1}] is outside the {self.ny}x{self.nx} cube")
        out = np.empty((y1 - y0, x1 - x0, self.nframes, self.nplanes), dtype=">f4")
        if threads <= 1 and getattr(self.source, "path", None) is not None:
            # Local file: preadv straight into the output, one call per row (no copies).
            per_px = self.nframes * self.nplanes * 4
            row = self.nx * per_px
            self.source.read_rows_into(self.data_offset + y0 * row + x0 * per_px, row, y1 - y0, out)
            return out
        ranges = self.ranges(y0, y1, x0, x1)
        flat = memoryview(out).cast("B")
        n = ranges[0][1]
        parts = self.source.read_ranges(ranges, threads=threads)
        for i, part in enumerate(parts):
            if len(part) != n:
                raise CorruptFileError(f"{self.uri}: short read from the cube data", field="cube_file")
            flat[i * n : (i + 1) * n] = part
        return out

    def read_block(self, y0: int, y1: int, x0: int, x1: int, threads: int = 1) -> np.ndarray:
        """Pixels of rows y0:y1, columns x0:x1 as native float32 of shape (y, x, frames, planes).

        Reads one contiguous range per row ((x1-x0)*frames*planes*4 bytes).
        """
        return self.read_block_be(y0, y1, x0, x1, threads).astype(np.float32)

    def __repr__(self) -> str:
        return (
            f"<Cube {self.uri} {self.product} s{self.sector} {self.camera}-{self.ccd} "
            f"{self.ny}x{self.nx}x{self.nframes}x{self.nplanes}>"
        )


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


#: per cube: at most this many (ra, dec) -> pixel results kept
_PIXELS_CACHED = 4096

_cache: OrderedDict[Any, Cube] = OrderedDict()
#: local path as given + what one stat of it says -> the key of the cube it opened last: a hit
#: costs one ``os.stat`` instead of realpath's lstats, an open, an fstat and a close (~25 us)
_aliases: OrderedDict[tuple, Any] = OrderedDict()
_cache_lock = threading.Lock()


def open_cube(uri: str | os.PathLike, *, s3: S3Config | None = None) -> Cube:
    """Open (or fetch from the cache) the cube at ``uri`` (a local path or ``s3://`` URI).

    The cache is a bounded LRU (32 cubes) keyed by the source's identity (local: real path, size,
    mtime and inode; S3: ETag), so a changed file is re-parsed. A local path seen before costs
    one ``os.stat``: what it says must match what the path opened last time (so permissions are
    checked when a file is first opened, not on every hit).

    Raises
    ------
    NotFoundError
        When the file or object does not exist.
    CorruptFileError
        When it is not a cube, lacks the needed table columns or is truncated.
    """
    uri = os.fspath(uri)
    alias = _local_alias(uri) if s3 is None else None
    if alias is not None:
        with _cache_lock:
            key = _aliases.get(alias)
            cube = None if key is None else _cache.get(key)
            if cube is not None:
                _cache.move_to_end(key)
                _aliases.move_to_end(alias)
                CACHE_STATS["hits"] += 1
                return cube
    try:
        source = _open_source(uri, s3)
    except NotFoundError as exc:
        raise NotFoundError(f"cube {uri} does not exist ({exc.message})", field="cube_file") from None
    except FileNotFoundError:
        raise NotFoundError(f"cube {uri} does not exist", field="cube_file") from None
    # S3: also key on the connection settings, so a cube opened through one endpoint/credentials is
    # never served through another's client (same bucket/key/ETag on two endpoints).
    config = getattr(source, "config", None)
    key = source.identity if config is None else (*source.identity, config.key())
    with _cache_lock:
        cube = _cache.get(key)
        if cube is not None:
            _cache.move_to_end(key)
            CACHE_STATS["hits"] += 1
    if cube is None:
        try:
            cube = Cube(uri, source)
        except BaseException:
            source.close()
            raise
        with _cache_lock:
            _cache[key] = cube
            _cache.move_to_end(key)
            while len(_cache) > _CACHE_SIZE:
                # Not closed here: a cut in another thread may still use it; the GC closes it.
                _cache.popitem(last=False)
    else:
        source.close()  # the cached cube keeps its own source open
    if alias is not None and source.identity[2:] == alias[1:]:
        # the file stat'ed is the one opened: the next call with this path may skip the open
        with _cache_lock:
            _aliases[alias] = key
            while len(_aliases) > 4 * _CACHE_SIZE:
                _aliases.popitem(last=False)
    return cube


def _local_alias(uri: str) -> tuple | None:
    """``(uri, size, mtime_ns, st_dev, st_ino)`` of a local path (symlinks followed), or None
    (an S3 URI, or anything the full open must judge)."""
    if "://" in uri:
        return None
    try:
        st = os.stat(uri)
    except (OSError, ValueError):
        return None
    return (uri, st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino)


def clear_cache() -> None:
    """Forget every cached cube (tests, or after replacing files in place)."""
    with _cache_lock:
        _cache.clear()
        _aliases.clear()
