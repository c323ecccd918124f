"""Target pixel files (TPFs) cut from TESS FFI cubes: astrocut 1.4.0's ``cube_cut``, faster.

Follows astrocut 1.4.0 (``TessCubeCutout``) for the window, pixels, padding (NaN in the pixel
columns, 0 in the aperture), columns, units and header keys, and astrocut 0.11.1 for TICA cubes.
Departs from it where it is defective:

1. the per-column WCS keys (1CTYP5, 1CRPX5, ..., 1CRV5P/2CRV5P = 1-based FFI column/row of the
   cutout origin) are written for every pixel column (1.4.0 never writes them);
2. WCS_MSEP / WCS_SIG are the real residuals of the linear fit (1.4.0 always writes 0);
3. file names strip the ``-cube`` suffix properly (1.4.0 uses ``rstrip('-cube')``, which strips
   characters);
4. nothing is re-parsed between cuts (per-cube caches, see :mod:`core.cubes.cube`);
5. no CHECKSUM/DATASUM are written (astrocut writes them to files, not to memory HDULists) and the
   stale DATASUM card of the cube's primary header is not copied into the TPF;
6. CREATOR/PROCVER name this package, not astrocut;
7. a big TPF is written (or streamed, by the service) in bounded pieces (:mod:`core.tpf.stream`),
   not assembled whole in memory;
8. RA outside [-180, 360] degrees and non-finite positions are refused, not wrapped;
9. an addition: a time window and a frame binning (``time_min``, ``time_max``, ``frame_bin``;
   :mod:`core.cubes.frames`) cut some frames only, reading only those frames' bytes; without them
   the bytes are those of a cut of every frame.

Why it is fast: the FITS bytes are assembled directly (:mod:`core.tpf.layout`), and everything
that does not depend on the cut's position is prepared once per cube and cutout shape
(:mod:`core.tpf.headers`). A cut locates the position (astropy's own SIP inversion, run without its
per-call overhead), reads one ``preadv`` per cutout row and transposes the pixels straight into the
table rows. In-memory results are HDULists read lazily from those bytes.
"""

from __future__ import annotations

import math
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits

from core.cubes.cache import open_cube
from core.cubes.cube import Cube
from core.cubes.frames import FrameSelection, TimeWindow
from core.cutout_size import CutoutSize, Limits
from core.errors import InvalidInputError, NoDataError
from core.fitsio._astropy_io import header_modified, lazy_hdulist
from core.geometry import CutoutGeometry, centered_window, parse_coordinates
from core.product import Product
from core.quiet import quiet
from core.storage.atomic import atomic_output
from core.storage.range_file import RangeFile
from core.storage.sources import MemorySource
from core.tpf.headers import CREATOR
from core.tpf.layout import cached_fit, fill_constants, fill_pixels, fill_slots, layout, prototype
from core.tpf.wcs_fit import LinearFit

__all__ = [
    "CREATOR",
    "INLINE_TPF_BYTES",
    "CutoutFactory",
    "CutoutGeometry",
    "InMemoryTpf",
    "TpfHDUList",
    "astrocut_filename",
    "build_tpf",
    "cube_cut",
    "cut_bytes",
    "estimate_tpf_bytes",
    "locate",
    "tpf_bytes",
    "tpf_filename",
    "tpf_nbytes",
    "write_tpf",
]

#: TPFs up to this size are assembled whole in memory (the fast path); bigger ones are written or
#: streamed in bounded pieces through a pixel spool (:mod:`core.tpf.stream`)
INLINE_TPF_BYTES = 96 * 1024 * 1024


def _radec(coordinates: Any) -> tuple[float, float]:
    """ICRS (ra, dec) degrees of the request; a fast path for plain "ra dec" strings (the common
    case), with :func:`core.geometry.parse_coordinates` deciding everything else and all errors."""
    if isinstance(coordinates, str):
        parts = coordinates.replace(",", " ").split()
        if len(parts) == 2:
            try:
                ra, dec = float(parts[0]), float(parts[1])
            except ValueError:
                ra = dec = float("nan")
            if math.isfinite(ra) and -180.0 <= ra <= 360.0 and -90.0 <= dec <= 90.0:
                return ra % 360.0, dec
    coord = parse_coordinates(coordinates)
    return float(coord.ra.deg), float(coord.dec.deg)


def tpf_nbytes(cube: Cube, nx: int, ny: int, frames: FrameSelection | None = None) -> int:
    """The exact size of an ``nx`` x ``ny`` TPF of ``cube`` holding ``frames`` (default every
    frame; its layout, cached per shape)."""
    return layout(cube, nx, ny, frames).nbytes


def estimate_tpf_bytes(nx: int, ny: int, nframes: int) -> int:
    """A TPF's size from its shape (within a few KB: the headers' length is not counted exactly)."""
    npix = nx * ny
    return nframes * (20 * npix + 80) + 4 * npix + 64 * 1024


def _window_pixels(cube: Cube, size: CutoutSize) -> tuple[float, float]:
    if not size.is_angular:
        return float(size.x), float(size.y)
    return size.pixels(cube.pixel_scales)


def locate(
    cube: Cube,
    coordinates: Any,
    cutout_size: Any,
    *,
    limits: Limits | None = None,
    max_side: int | None = None,
    max_volume: int | None = None,
    rounding: str = "round",
    frames: FrameSelection | None = None,
) -> CutoutGeometry:
    """Validate a request against ``cube`` and place its window (astrocut's rounding).

    ``cutout_size`` is a :class:`~core.cutout_size.CutoutSize` or anything
    :meth:`CutoutSize.parse` reads. ``limits`` (or the older ``max_side``/``max_volume``) are
    checked against the window itself, after rounding; ``rounding`` is astrocut's
    ``limit_rounding_method`` ("round", "ceil" or "floor"). With ``frames`` (a time window or a
    binning) the volume limit counts the frames read, the size limit the TPF's cadences.

    Raises
    ------
    InvalidInputError
        Bad coordinates or size.
    NoDataError
        The position is not on the cube's pixels.
    TooLargeError
        The window exceeds a limit.
    """
    ra, dec = _radec(coordinates)
    size = cutout_size if isinstance(cutout_size, CutoutSize) else CutoutSize.parse(cutout_size)
    sx, sy = _window_pixels(cube, size)
    if cube.is_icrs:
        x, y = cube.radec_to_pixel(ra, dec)
    else:  # pragma: no cover - TESS cubes are ICRS
        x, y = cube.world_to_pixel(SkyCoord(ra, dec, unit="deg"))
    if not (math.isfinite(x) and math.isfinite(y)) or not (
        -0.5 <= x < cube.nx - 0.5 and -0.5 <= y < cube.ny - 0.5
    ):
        raise NoDataError(
            f"position {ra:.6f} {dec:.6f} is not on the pixels of {os.path.basename(cube.uri)} "
            f"(sector {cube.sector}, camera {cube.camera}, CCD {cube.ccd})",
            field="coordinates",
        )
    win = centered_window(x, y, (sx, sy), rounding)
    if limits is None and (max_side is not None or max_volume is not None):
        limits = Limits(max_side=max_side, max_volume=max_volume)
    if limits is not None:
        read = cube.nframes if frames is None else frames.ncadences * frames.frame_bin
        rows = cube.nframes if frames is None else frames.ncadences
        limits.check(win.nx, win.ny, read, bytes_needed=estimate_tpf_bytes(win.nx, win.ny, rows))
    inside = win.clip(cube.nx, cube.ny)
    if inside.empty:  # a floor/ceil window may lie just beside a centre on the edge pixel
        raise NoDataError("the cutout window does not overlap the cube", field="coordinates")
    return CutoutGeometry(ra=ra, dec=dec, x=x, y=y, window=win, inside=inside)


@dataclass
class InMemoryTpf:
    """A TPF made whole in memory (:func:`cut_bytes`): its FITS bytes, plus what was learned on the
    way (where the cut landed, the WCS fit, timings; for verbose output and callers)."""

    data: memoryview  # the FITS file (bytes-like, over a numpy buffer: no copy)
    geometry: CutoutGeometry
    fit: LinearFit
    timings: dict[str, float]


def cut_bytes(cube: Cube, geo: CutoutGeometry, threads: int | None = None,
              frames: FrameSelection | None = None) -> InMemoryTpf:
    """Assemble the TPF for a located cut as FITS bytes, whole in memory (the fast path).

    The file is one buffer: a copy of the cutout shape's cached prototype (small cutouts) or its
    cached header blocks and constant columns written afresh; then the per-cut header values are
    written into their fixed 20-byte fields and the pixels transposed in place from the cube.
    ``frames`` (a time window, a binning) keeps only those frames' cadences.
    """
    t0 = time.perf_counter()
    win = geo.window
    lay = layout(cube, win.nx, win.ny, frames)
    fit, values = cached_fit(cube, win, lay)
    t1 = time.perf_counter()
    proto = prototype(cube, lay)
    if proto is not None:
        buf = proto.copy()
    else:
        buf = np.empty(lay.nbytes, np.uint8)
        # the table rows' constants are written with the pixels (by two threads for big cuts)
        fill_constants(buf, lay, cube, pixels=False, rows=False)
    fill_slots(buf, lay, values, geo.ra, geo.dec)
    t2 = time.perf_counter()
    fill_pixels(buf, lay, cube, geo, threads, prefilled=proto is not None, rows_done=proto is not None)
    t3 = time.perf_counter()
    timings = {"layout_and_fit": t1 - t0, "headers": t2 - t1, "pixels": t3 - t2}
    return InMemoryTpf(data=memoryview(buf), geometry=geo, fit=fit, timings=timings)


class TpfHDUList(fits.HDUList):
    """A TPF's HDUList over its assembled bytes ``raw`` (kept as ``.raw`` for :func:`tpf_bytes`).

    Nothing is parsed when it is made: the first access to an HDU reads the headers, and astropy
    reads each HDU's data into its own writable array when it is first touched. It is astropy's own
    lazy loading, over a :class:`~core.storage.range_file.RangeFile` on ``raw`` (no copy of the file).

    ``close()`` releases nothing (the file is memory) and leaves every HDU readable, as
    astrocut's in-memory HDUList does; a ``with`` block may end before the HDUs are used.
    """

    raw: bytes | memoryview | None = None  # set by from_bytes; astropy's own instances lack it

    @classmethod
    def from_bytes(cls, raw: bytes | memoryview) -> TpfHDUList:
        """The HDUList of the FITS file ``raw``, read lazily (nothing parsed yet)."""
        fileobj = RangeFile(MemorySource(raw), cache_bytes=0)
        fileobj.name = None  # no file behind it: filename() is None, as for astrocut's in-memory TPF
        hdul = lazy_hdulist(fileobj, cls)
        hdul.raw = raw
        return hdul

    def close(self, output_verify: str = "exception", verbose: bool = False, closed: bool = True) -> None:
        """Nothing to release over ``raw``: the HDUs stay readable (see the class docstring)."""
        if self.raw is None:  # an HDUList astropy made through the class (``writeto`` does)
            super().close(output_verify=output_verify, verbose=verbose, closed=closed)

    def __reduce_ex__(self, protocol: Any) -> Any:
        """Pickled as its FITS bytes, edits included (astrocut's in-memory HDUList pickles too;
        a file object over a memoryview cannot): multiprocessing workers may return TPFs."""
        if self.raw is None:
            return super().__reduce_ex__(protocol)
        return (TpfHDUList.from_bytes, (tpf_bytes(self),))


def build_tpf(cube: Cube, coord: Any, size: Any, threads: int | None = None,
              frames: FrameSelection | None = None) -> fits.HDUList:
    """The TPF of a ``size`` cutout centred on ``coord`` as an HDUList, read lazily from its bytes;
    :func:`tpf_bytes` returns those bytes untouched when the HDUList was not modified."""
    geo = locate(cube, coord, size, frames=frames)
    return TpfHDUList.from_bytes(cut_bytes(cube, geo, threads, frames).data)


def tpf_bytes(hdul: fits.HDUList) -> bytes:
    """Serialise a TPF HDUList to bytes (no checksums); the built bytes if it is unmodified."""
    import io

    raw = getattr(hdul, "raw", None)
    if raw is not None and not _modified(hdul):
        return bytes(raw)
    buf = io.BytesIO()
    with quiet(fits.verify.VerifyWarning):
        hdul.writeto(buf)
    return buf.getvalue()


def _modified(hdul: fits.HDUList) -> bool:
    """Whether a :class:`TpfHDUList` may differ from its ``raw`` bytes."""
    try:
        if len(hdul) != 3:  # also reads every (lazy) header
            return True
    except Exception:  # noqa: BLE001  # pragma: no cover - unreadable: serialise instead
        return True
    # A header edit marks the header modified; loaded data may have been edited in place.
    return any(header_modified(hdu) or "data" in hdu.__dict__ for hdu in hdul)


_STEM_RE = re.compile(r"-cube$")


def tpf_filename(cube_uri: str, ra: float, dec: float, nx: int, ny: int,
                 frames: FrameSelection | None = None) -> str:
    """The legacy TESScut file name: ``{stem}_{ra:.6f}_{dec:.6f}_{nx}x{ny}_astrocut.fits``.

    The stem is the cube's file name without ``.fits`` and without a trailing ``-cube`` suffix
    (astrocut's ``rstrip('-cube')`` strips characters instead). A TPF of some frames only (a time
    window, a binning) says which before the suffix, ``..._{nx}x{ny}_f{first}-{end}_bin{k}_astrocut.fits``
    (0-based cube frames ``first:end``, ``k`` frames a cadence), so that it is never taken for
    the whole sector's TPF of that name.
    """
    which = "" if frames is None or frames.is_full else f"_f{frames.start}-{frames.used_stop}_bin{frames.frame_bin}"
    return f"{_stem(cube_uri)}_{float(ra):.6f}_{float(dec):.6f}_{int(nx)}x{int(ny)}{which}_astrocut.fits"


def _stem(cube_uri: str) -> str:
    name = os.path.basename(str(cube_uri).rstrip("/"))
    stem = name[: -len(".fits")] if name.lower().endswith(".fits") else Path(name).stem
    return _STEM_RE.sub("", stem)


def astrocut_filename(cube_uri: str, ra: float, dec: float, cutout_size: Any) -> str:
    """astrocut 1.4.0's default file name: ``{stem}_{ra:.7f}_{dec:.7f}_{s0}-x-{s1}_astrocut.fits``,
    the size's two elements as the caller gave them (``5-x-3``, ``5.0pix-x-7.0pix``,
    ``3.0arcmin-x-5.0arcmin``); the stem as :func:`tpf_filename`'s."""
    from core.images.cutouts import size_label, size_pair

    return f"{_stem(cube_uri)}_{float(ra):.7f}_{float(dec):.7f}_{size_label(size_pair(cutout_size))}_astrocut.fits"


def write_tpf(cube: Cube, geo: CutoutGeometry, path: str | os.PathLike, *, threads: int | None = None,
              work_dir: str | os.PathLike | None = None, field: str = "output_path",
              frames: FrameSelection | None = None) -> tuple[str, Any]:
    """Write the TPF of a located cut (of ``frames`` only, if given) to ``path`` atomically, with
    bounded memory for big ones (:data:`INLINE_TPF_BYTES`); returns the path and the cut's WCS fit."""
    win = geo.window
    lay = layout(cube, win.nx, win.ny, frames)
    if lay.nbytes <= INLINE_TPF_BYTES:
        result = cut_bytes(cube, geo, threads, frames)
        with atomic_output(path, field=field) as tmp, open(tmp, "wb") as fh:
            fh.write(result.data)
        return os.fspath(path), result.fit
    from core.tpf.stream import TpfStream

    stream = TpfStream(cube, geo, work_dir=work_dir or os.path.dirname(os.path.abspath(os.fspath(path))),
                       threads=threads, frames=frames)
    with atomic_output(path, field=field) as tmp, open(tmp, "wb") as fh:
        fh.writelines(stream.chunks())
    return os.fspath(path), stream.fit


def _parse_threads(threads: Any) -> int:
    """astrocut's ``threads``: a count (at least 1), or ``"auto"`` (the CPU count + 4)."""
    try:
        return max(1, int(os.cpu_count() or 1) + 4 if threads == "auto" else int(threads))
    except (TypeError, ValueError):
        raise InvalidInputError(
            f"threads must be an integer or 'auto', got {threads!r}", field="threads"
        ) from None


def _output_name(cube: Cube, geo: CutoutGeometry, frames: FrameSelection | None, cutout_size: Any,
                 legacy_filenames: bool) -> str:
    """A cut's default file name: TESScut's (:func:`tpf_filename`) or astrocut 1.4.0's
    (:func:`astrocut_filename`); see :meth:`CutoutFactory.cube_cut`."""
    if legacy_filenames:
        win = geo.window
        return tpf_filename(cube.uri, geo.ra, geo.dec, win.nx, win.ny, frames)
    return astrocut_filename(cube.uri, geo.ra, geo.dec, cutout_size)


class CutoutFactory:
    """Cut target pixel files out of TESS cubes; a drop-in peer of astrocut's ``CutoutFactory``.

    Parameters
    ----------
    max_side : int, optional
        Largest allowed cutout side in pixels (``TooLargeError`` beyond).
    max_volume : int, optional
        Largest allowed cutout pixels x frames (``TooLargeError`` beyond).
    limits : Limits, optional
        All limits at once (instead of the two above); default
        :meth:`~core.cutout_size.Limits.engine_default` (no TPF bigger than this machine's memory).
    """

    def __init__(self, max_side: int | None = None, max_volume: int | None = None, *,
                 limits: Limits | None = None) -> None:
        if limits is None:
            limits = Limits(max_side=max_side, max_volume=max_volume,
                            max_bytes=Limits.engine_default().max_bytes)
        self.limits = limits
        self.max_side = limits.max_side
        self.max_volume = limits.max_volume
        self._cube: Cube | None = None
        self._cube_wcs: Any = None
        self._fit: LinearFit | None = None
        self._geo: CutoutGeometry | None = None

    @property
    def cube_wcs(self) -> Any:
        """The last cut cube's TAN-SIP WCS with its image size (``pixel_shape`` = (columns, rows)),
        as astrocut's attribute; a copy made on first use (the cube's cached WCS stays untouched)."""
        if self._cube_wcs is None and self._cube is not None:
            self._cube_wcs = self._cube.wcs.deepcopy()
        return self._cube_wcs

    @cube_wcs.setter
    def cube_wcs(self, value: Any) -> None:
        self._cube_wcs = value

    @property
    def center_coord(self) -> SkyCoord | None:
        """The last cut's centre (astrocut's attribute; a SkyCoord built on demand: ~1 ms)."""
        return None if self._geo is None else self._geo.coord

    @property
    def cutout_lims(self) -> np.ndarray | None:
        """The last cut's window ``[[x0, x1], [y0, y1]]`` in 0-based FFI pixels (astrocut's attribute)."""
        if self._geo is None:
            return None
        w = self._geo.window
        return np.array([[w.x0, w.x1], [w.y0, w.y1]])

    @property
    def cutout_wcs(self) -> Any:
        """The last cut's linear WCS (astrocut's attribute; built on demand)."""
        return None if self._fit is None else self._fit.wcs

    def cube_cut(
        self,
        cube_file: str | os.PathLike,
        coordinates: Any,
        cutout_size: Any,
        product: str = Product.SPOC,
        target_pixel_file: str | None = None,
        output_path: str | os.PathLike = ".",
        memory_only: bool = False,
        threads: int | str = 1,
        verbose: bool = False,
        s3: Any = None,
        legacy_filenames: bool = True,
        *,
        time_min: float | None = None,
        time_max: float | None = None,
        frame_bin: int = 1,
    ) -> str | fits.HDUList:
        """Cut a target pixel file of ``cutout_size`` around ``coordinates`` from ``cube_file``.

        Follows astrocut 1.4.0's ``CutoutFactory.cube_cut``: ``coordinates`` is a SkyCoord or an
        "ra dec" string in degrees; ``cutout_size`` an int, ``[nx, ny]`` (x first, as astrocut
        behaves) or an angular/pixel Quantity. ``product`` (SPOC or TICA, astrocut 0.11.1's
        fourth parameter) is validated, but the cube's own layout (its table columns) decides how
        it is read. Returns the written path, or the HDUList when ``memory_only``. Files are
        written to a temporary name and renamed, big ones in bounded pieces. ``verbose`` prints
        the steps and timings as astrocut 0.x did. ``threads`` reads a local cube's rows on that
        many threads; an S3 cube's rows are always all requested at once (astrocut reads them
        ``threads`` at a time).

        The file name (without ``target_pixel_file``): by default (``legacy_filenames=True``) the
        TESScut form, ``tess-s0038-2-2_217.428938_-62.679492_30x30_astrocut.fits``
        (:func:`tpf_filename`: 6 decimals, the window's width x height); with
        ``legacy_filenames=False`` astrocut 1.4.0's default form,
        ``tess-s0038-2-2_217.4289380_-62.6794919_30-x-30_astrocut.fits`` (7 decimals, the size as
        given, units included: ``5.0pix-x-7.0pix``). astrocut 1.4.0's default is ``False``; this
        package keeps the TESScut name, the one its service and lightkurve's cache use.

        Additions (keyword-only; not in astrocut or TESScut): ``time_min``/``time_max`` keep the
        frames whose mid-exposure time (BTJD, TDB) lies in that inclusive window, reading only
        their bytes; ``frame_bin`` averages that many frames into each cadence (a trailing partial
        bin is dropped; see :mod:`core.cubes.frames`). Left at their defaults, the TPF is byte
        for byte the one without them; so is a window holding every frame.

        Raises
        ------
        NotFoundError, CorruptFileError
            The cube is missing, not a cube, or truncated.
        InvalidInputError
            Bad cube path, coordinates, size, product, ``time_min``/``time_max`` (not finite,
            ``time_min > time_max``) or ``frame_bin`` (below 1, above the window's frames).
        NoDataError
            The position is not on the cube's pixels, or no frame lies in the time window.
        TooLargeError
            The cutout exceeds the factory's limits.
        UnavailableError
            The output cannot be written (``field="output_path"``).
        """
        t_start = time.perf_counter()
        Product.parse(product)  # validated; the cube's own table decides how it is read
        if not isinstance(cube_file, (str, os.PathLike)):
            raise InvalidInputError(
                f"cube_file must be a path or s3:// URI, not {type(cube_file).__name__}", field="cube_file"
            )
        threads = _parse_threads(threads)
        window = TimeWindow(time_min, time_max, frame_bin)
        cube = open_cube(cube_file, s3=s3)
        t_open = time.perf_counter()
        frames = None if window.is_default else window.resolve(cube.time)
        geo = locate(cube, coordinates, cutout_size, limits=self.limits, frames=frames)
        self._cube, self._cube_wcs = cube, None
        self._geo = geo
        if memory_only:
            return self._cut_in_memory(cube, geo, frames, threads, verbose, (t_start, t_open))
        name = target_pixel_file or _output_name(cube, geo, frames, cutout_size, legacy_filenames)
        return self._cut_to_file(cube, geo, frames, threads, Path(output_path) / name, verbose, (t_start, t_open))

    def _cut_in_memory(self, cube: Cube, geo: CutoutGeometry, frames: FrameSelection | None, threads: int,
                       verbose: bool, times: tuple[float, float]) -> TpfHDUList:
        """The TPF as an HDUList over its bytes, made whole in memory; ``times`` are the
        ``perf_counter`` readings at the start and once the cube was open (for ``verbose``)."""
        t_start, t_open = times
        win = geo.window
        if layout(cube, win.nx, win.ny, frames).nbytes > INLINE_TPF_BYTES and verbose:
            print(f"Building a {win.nx}x{win.ny} TPF of {cube.nframes} frames in memory", flush=True)
        result = cut_bytes(cube, geo, threads=threads, frames=frames)
        self._fit = result.fit
        if verbose:
            self._report(cube, geo, result.fit, t_open - t_start)
            print(f"Total time: {time.perf_counter() - t_start:.2f} sec", flush=True)
        return TpfHDUList.from_bytes(result.data)

    def _cut_to_file(self, cube: Cube, geo: CutoutGeometry, frames: FrameSelection | None, threads: int,
                     path: Path, verbose: bool, times: tuple[float, float]) -> str:
        """Write the TPF to ``path`` (:func:`write_tpf`) and return it; ``times`` as for
        :meth:`_cut_in_memory`."""
        t_start, t_open = times
        t_write = time.perf_counter()
        written, self._fit = write_tpf(cube, geo, path, threads=threads, frames=frames)
        if verbose:
            self._report(cube, geo, self._fit, t_open - t_start)
            print(f"Target pixel file: {written}", flush=True)
            print(f"Write time: {time.perf_counter() - t_write:.2f} sec", flush=True)
            print(f"Total time: {time.perf_counter() - t_start:.2f} sec", flush=True)
        return Path(written).as_posix()

    @staticmethod
    def _report(cube: Cube, geo: CutoutGeometry, fit: LinearFit, open_s: float) -> None:
        """The progress lines astrocut 0.x printed for a cut (the WCS row, the window, the shapes,
        the fit errors)."""
        w = geo.window
        shape = (cube.nframes, w.ny, w.nx)
        lines = [
            f"Using WCS from row {cube.wcs_row} out of {cube.nframes}",
            f"Cutout center coordinate: {geo.ra},{geo.dec}",
            f"xmin,xmax: [{w.x0} {w.x1}]",
            f"ymin,ymax: [{w.y0} {w.y1}]",
            f"Image cutout cube shape: {shape}",
            f"Uncertainty cutout cube shape: {shape}",
            f"Maximum distance between approximate and true location: {fit.max_sep}",
            f"Error in approximate WCS (sigma): {fit.sigma:.4f}",
            f"Cube opened in {open_s:.3f} sec",
        ]
        print("\n".join(lines), file=sys.stdout, flush=True)


def cube_cut(
    cube_file: str | os.PathLike,
    coordinates: Any,
    cutout_size: Any,
    target_pixel_file: str | None = None,
    output_path: str | os.PathLike = ".",
    memory_only: bool = False,
    threads: int | str = 1,
    verbose: bool = False,
    legacy_filenames: bool = True,
    *,
    product: str = Product.SPOC,
    s3: Any = None,
    time_min: float | None = None,
    time_max: float | None = None,
    frame_bin: int = 1,
) -> str | fits.HDUList:
    """astrocut 1.4.0's module-level ``cube_cut``: :meth:`CutoutFactory.cube_cut` with astrocut
    1.4.0's parameter order (``product``, ``s3`` and this engine's time window keyword-only). The
    default file name is the TESScut form (``legacy_filenames=True``; astrocut's default is
    ``False``), as :meth:`CutoutFactory.cube_cut` explains."""
    return CutoutFactory().cube_cut(
        cube_file, coordinates, cutout_size, product=product, target_pixel_file=target_pixel_file,
        output_path=output_path, memory_only=memory_only, threads=threads, verbose=verbose, s3=s3,
        legacy_filenames=legacy_filenames, time_min=time_min, time_max=time_max, frame_bin=frame_bin,
    )
