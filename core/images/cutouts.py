"""Cutouts of FITS images: the same sky window cut from one or more images (astrocut's ``fits_cut``).

Follows astrocut 1.4.0 (``FITSCutout`` / ``fits_cut``): the same pixel limits (``round(c -/+ size/2)``,
x-first sizes), the same output layout (PRIMARY with ORIGIN, DATE, PROCVER, RA_OBJ, DEC_OBJ, then one
``CUTOUT`` ImageHDU per input extension with the original header, the cutout WCS merged in, O_EXT_NM,
ORIG_FLE, ORIG_EXT) and the same default file names. Departures, each on purpose:

- only the rows and columns a cutout needs are read (``ImageHDU.section`` through
  :class:`astropy.nddata.Cutout2D`), locally or from ``s3://`` through :func:`core.storage.range_file.open_fits`;
- integer images padded with NaN are promoted to float instead of failing inside numpy;
- bad input raises :mod:`core.errors` exceptions with ``field=`` set; an input that does not overlap
  the position is skipped with a :class:`DataWarning`, and :class:`~core.errors.NoDataError` is
  raised only when no input has data;
- files are written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import logging
import os
import re
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.nddata import Cutout2D, NoOverlapError
from astropy.wcs import WCS, NoConvergence
from astropy.wcs.utils import proj_plane_pixel_scales

from core.cutout_size import CutoutSize, Limits
from core.errors import CorruptFileError, CutoutError, DataWarning, InvalidInputError, NoDataError
from core.geometry import parse_coordinates
from core.quiet import quiet
from core.storage.atomic import atomic_output

log = logging.getLogger(__name__)

ORIGIN = "STScI/MAST"

_ROUNDING = {"round": np.round, "ceil": np.ceil, "floor": np.floor}
_ARCHAIC_MATRIX = re.compile(r"^(PC|CD)(\d{3})(\d{3})$")
_SIP_PREFIXES = ("A_", "B_", "AP_", "BP_")


def software_version() -> str:
    """The version written to PROCVER and image metadata (this package's, not astrocut's)."""
    import core

    return core.__version__


# --------------------------------------------------------------------------------------------------
# input parsing
# --------------------------------------------------------------------------------------------------


def size_pair(cutout_size: Any) -> list[Any]:
    """The two size elements as the caller wrote them, x first (astrocut names files after them);
    of more than two, the first two (:meth:`CutoutSize.parse` warns of those)."""
    if isinstance(cutout_size, CutoutSize):
        return cutout_size.as_astrocut()
    if isinstance(cutout_size, u.Quantity):
        values = np.atleast_1d(cutout_size)
        return [values[0], values[min(1, len(values) - 1)]]
    if np.isscalar(cutout_size):
        return [cutout_size, cutout_size]
    values = list(cutout_size)
    return values * 2 if len(values) == 1 else values[:2]


def parse_size(cutout_size: Any) -> list[Any]:
    """Validate ``cutout_size`` (:meth:`CutoutSize.parse`) and return its two elements as the
    caller wrote them, x first (astrocut names files after them). Angular sizes are converted per
    image, with the image's own pixel scale, exactly as astrocut does."""
    CutoutSize.parse(cutout_size)
    return size_pair(cutout_size)


def size_label(pair: Sequence[Any]) -> str:
    """The ``<s0>-x-<s1>`` part of astrocut's file names (units kept, spaces dropped)."""
    return f"{str(pair[0]).replace(' ', '')}-x-{str(pair[1]).replace(' ', '')}"


def parse_extension(extension: Any) -> None | str | list[int]:
    """``None`` (first image HDU with data), ``"all"``, or a list of HDU indices."""
    if extension is None:
        return None
    if isinstance(extension, str):
        if extension.lower() == "all":
            return "all"
        try:
            return [int(extension)]
        except ValueError:
            raise InvalidInputError(
                f"extension must be an integer, a list of integers or 'all', not {extension!r}", field="extension"
            ) from None
    values = [extension] if np.isscalar(extension) else list(extension)
    out = []
    for value in values:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 0:
            raise InvalidInputError(
                f"extension must be a non-negative integer, a list of them or 'all', not {value!r}",
                field="extension",
            )
        out.append(int(value))
    if not out:
        raise InvalidInputError("give at least one extension", field="extension")
    return out


def _input_list(input_files: Any) -> list[str]:
    if isinstance(input_files, (str, os.PathLike)):
        input_files = [input_files]
    try:
        files = [os.fspath(f) if isinstance(f, os.PathLike) else f for f in input_files]
    except TypeError:
        raise InvalidInputError("give a file name or a list of file names", field="input_files") from None
    if not files:
        raise InvalidInputError("give at least one input file", field="input_files")
    for f in files:
        if not isinstance(f, str) or not f:
            raise InvalidInputError(f"not a file name: {f!r}", field="input_files")
    return files


def check_rounding(limit_rounding_method: Any) -> str:
    """The rounding method name, lower-cased ("round", "ceil" or "floor"), else InvalidInputError."""
    if not isinstance(limit_rounding_method, str) or limit_rounding_method.lower() not in _ROUNDING:
        raise InvalidInputError(
            f"limit_rounding_method must be one of {sorted(_ROUNDING)}, not {limit_rounding_method!r}",
            field="limit_rounding_method",
        )
    return limit_rounding_method.lower()


def check_fill_value(fill_value: Any) -> float:
    """``fill_value`` if it is a number (not a bool), else InvalidInputError."""
    if isinstance(fill_value, (bool, np.bool_)) or not isinstance(fill_value, (int, float, np.integer, np.floating)):
        raise InvalidInputError("fill_value must be a number", field="fill_value")
    return fill_value


# --------------------------------------------------------------------------------------------------
# one image HDU
# --------------------------------------------------------------------------------------------------


@dataclass
class ImageCut:
    """One cutout of one image extension.

    ``data`` is (ny, nx); ``wcs`` the cutout's WCS; ``hdu`` the ``CUTOUT`` ImageHDU astrocut writes;
    ``empty`` is True when every pixel is 0 or NaN.
    """

    file: str
    ext: int
    data: np.ndarray
    wcs: WCS
    hdu: fits.ImageHDU
    empty: bool
    limits: tuple[int, int, int, int]  # x0, x1, y0, y1 in 0-based image pixels


@dataclass
class ImageCutouts:
    """All cutouts of one request: the position, the size pair and, per input file, its cutouts."""

    coordinates: SkyCoord
    size: list[Any]
    by_file: dict[str, list[ImageCut]] = field(default_factory=dict)

    def cutouts(self, include_empty: bool = True) -> Iterable[ImageCut]:
        for cuts in self.by_file.values():
            for cut in cuts:
                if include_empty or not cut.empty:
                    yield cut


def _modernize_wcs_keywords(header: fits.Header) -> None:
    """Rename archaic ``PC00i00j`` / ``CD00i00j`` cards to ``PCi_j`` / ``CDi_j`` in place (as astrocut)."""
    for key in list(header.keys()):
        match = _ARCHAIC_MATRIX.match(key)
        if not match:
            continue
        prefix, i, j = match.groups()
        new = f"{prefix}{int(i)}_{int(j)}"
        if new not in header:
            header[new] = (header[key], header.comments[key])
        del header[key]


def image_wcs(header: fits.Header) -> tuple[WCS, bool]:
    """The WCS of an image header, and whether SIP terms were dropped.

    As astrocut: SIP coefficients present while CTYPE lacks ``-SIP`` are taken as stale and ignored
    (the CTYPE is trusted).
    """
    has_sip_terms = "A_ORDER" in header or "B_ORDER" in header
    ctypes = [str(header.get(f"CTYPE{i}", "")) for i in (1, 2)]
    no_sip = has_sip_terms and not any(c.upper().endswith("-SIP") for c in ctypes)
    source = header
    if no_sip:
        source = header.copy()
        for key in list(source.keys()):
            if key.startswith(_SIP_PREFIXES):
                del source[key]
    with quiet():  # FITSFixedWarning and friends
        try:
            wcs = WCS(source, relax=True)
        except (ValueError, KeyError, TypeError, MemoryError) as exc:
            raise CorruptFileError(f"cannot read the image WCS: {exc}") from None
    if no_sip:
        wcs.sip = None
    return wcs, no_sip


def _pixel_extents(size: CutoutSize, wcs: WCS) -> tuple[float, float]:
    """The size in pixels of this image (its WCS's pixel scales, in its own angular unit)."""
    if not size.is_angular:
        return float(size.x), float(size.y)
    scales = proj_plane_pixel_scales(wcs.celestial)
    degrees = [u.Quantity(scales[axis], wcs.wcs.cunit[axis] or u.deg).to_value(u.deg) for axis in (0, 1)]
    return size.pixels((degrees[0], degrees[1]))


def cutout_limits(
    coord: SkyCoord, size: CutoutSize, wcs: WCS, rounding: str = "round"
) -> tuple[int, int, int, int] | None:
    """astrocut's pixel limits ``(x0, x1, y0, y1)`` (0-based, end exclusive), or None off the WCS.

    ``x0 = round(cx - sx/2)``, ``x1 = round(cx + sx/2)`` (numpy rounding, half to even, as astrocut),
    and a side that rounds to nothing becomes the one pixel holding the centre.
    """
    try:
        with quiet():
            center = coord.to_pixel(wcs)
    except (NoConvergence, ValueError):
        return None
    center = np.asarray(center, dtype=float)
    if not np.all(np.isfinite(center)):
        return None
    func = _ROUNDING[rounding]
    lims = []
    for axis, side in enumerate(_pixel_extents(size, wcs)):
        half = side / 2
        lo = int(func(center[axis] - half))
        hi = int(func(center[axis] + half))
        if lo == hi:
            lo = int(np.floor(center[axis]))
            hi = lo + 1
        lims += [lo, hi]
    return lims[0], lims[1], lims[2], lims[3]


def _shift_wcs(wcs: WCS, dx: int, dy: int) -> WCS:
    """A copy of ``wcs`` whose pixel origin is moved to (dx, dy), as Cutout2D does."""
    from astropy.wcs import Sip

    out = wcs.deepcopy()
    out.wcs.crpix -= (dx, dy)
    if wcs.sip is not None:
        out.sip = Sip(wcs.sip.a, wcs.sip.b, wcs.sip.ap, wcs.sip.bp, wcs.sip.crpix - (dx, dy))
    return out


def _window_source(hdu: Any) -> Any:
    """What to slice a window from: :func:`core.storage.range_file.image_section` (one ``pread``
    per window row of a local, unscaled image; ``hdu.section`` otherwise). Never a memory map: a
    file truncated while it is cut fails the request, not the process."""
    from core.storage.range_file import image_section

    return image_section(hdu)


def _extract(hdu: Any, wcs: WCS, lims: tuple[int, int, int, int], fill_value: float) -> tuple[np.ndarray, WCS]:
    """Read the window ``lims`` of an image HDU, padding outside the image with ``fill_value``.

    Only the overlapping rows and columns are read: from the memory map of a local file, else
    through ``hdu.section`` (S3 inputs read through :class:`core.storage.range_file.RangeFile`).
    """
    x0, x1, y0, y1 = lims
    nx, ny = x1 - x0, y1 - y0
    section = _window_source(hdu)
    position = (x0 + nx / 2.0, y0 + ny / 2.0)  # with floor rounding, Cutout2D starts exactly at (x0, y0)
    try:
        cut = Cutout2D(
            section, position, (ny, nx), wcs=wcs, mode="partial", fill_value=fill_value,
            copy=True, limit_rounding_method=np.floor,
        )
        return np.asarray(cut.data), cut.wcs
    except ValueError as exc:
        if "fill_value" not in str(exc):
            raise
    # integer image padded with a non-integer fill value: read the overlap, promote to float, pad
    shape_y, shape_x = hdu.shape[-2:]
    cx0, cx1, cy0, cy1 = max(x0, 0), min(x1, shape_x), max(y0, 0), min(y1, shape_y)
    inner = np.asarray(section[cy0:cy1, cx0:cx1], dtype=np.float64)
    out = np.full((ny, nx), fill_value, dtype=np.float64)
    out[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0] = inner
    return out, _shift_wcs(wcs, x0, y0)


def _linearize_asinh_flux(data: np.ndarray, header: fits.Header) -> np.ndarray:
    """Pan-STARRS stack images: asinh magnitudes to linear flux with BSOFTEN/BOFFSET (as astrocut)."""
    x = data * 0.4 * np.log(10.0)
    return header["BOFFSET"] + header["BSOFTEN"] * (np.exp(x) - np.exp(-x))


def _cut_hdu(
    hdulist: fits.HDUList,
    ind: int,
    name: str,
    coord: SkyCoord,
    size: CutoutSize,
    *,
    fill_value: float,
    rounding: str,
    drop_after: str | None,
    limits: Limits | None = None,
) -> ImageCut | None:
    """Cut one image extension; None when the window does not overlap it."""
    img_hdu = hdulist[ind]
    header = fits.Header(img_hdu.header, copy=True)
    if drop_after is not None:
        try:
            header = fits.Header(header.cards[: header.index(drop_after)], copy=True)
        except (ValueError, KeyError):
            warnings.warn(
                f"drop_after keyword {drop_after!r} is not in the header of {name}[{ind}]; using it all",
                DataWarning,
            )
    _modernize_wcs_keywords(header)
    wcs, no_sip = image_wcs(header)
    if not wcs.has_celestial:
        raise CorruptFileError(f"{name}[{ind}] has no celestial WCS")
    lims = cutout_limits(coord, size, wcs, rounding)
    if lims is None:
        return None
    x0, x1, y0, y1 = lims
    if limits is not None:  # the window as cut, after rounding: angular sizes cannot slip past a limit
        limits.check(x1 - x0, y1 - y0, bytes_needed=(x1 - x0) * (y1 - y0) * 8)
    shape_y, shape_x = img_hdu.shape[-2:]
    if x1 <= 0 or x0 >= shape_x or y1 <= 0 or y0 >= shape_y:
        return None
    try:
        data, cut_wcs = _extract(img_hdu, wcs, lims, fill_value)
    except NoOverlapError:
        return None
    log.debug("%s[%d]: limits x %d:%d y %d:%d", name, ind, x0, x1, y0, y1)

    empty = bool((data == 0).all() or np.isnan(data).all())
    if not empty and "BSOFTEN" in header and "BOFFSET" in header:
        data = _linearize_asinh_flux(data, header)
        header["HISTORY"] = "Pixel values converted from asinh-scaled flux to linear flux using the BSOFTEN/BOFFSET keywords."

    header.update(cut_wcs.to_header(relax=not no_sip))
    header["O_EXT_NM"] = (header.get("EXTNAME"), "Original extension name.")
    header["EXTNAME"] = "CUTOUT"
    header["ORIG_FLE"] = (header.get("FILENAME"), "Original image filename.")
    header.remove("FILENAME", ignore_missing=True)
    if empty:
        header["EMPTY"] = (True, "Indicates no data in cutout image.")
    hdu = fits.ImageHDU(header=header, data=data)
    hdu.header["ORIG_EXT"] = (ind, "Extension in original file.")
    primary_filename = hdulist[0].header.get("FILENAME")
    if not hdu.header.get("ORIG_FLE") and primary_filename:
        hdu.header["ORIG_FLE"] = primary_filename
    return ImageCut(name, ind, data, cut_wcs, hdu, empty, lims)


def _image_extensions(hdulist: fits.HDUList) -> list[int]:
    return [i for i, hdu in enumerate(hdulist) if hdu.is_image and hdu.size > 0]


def _select_extensions(name: str, available: list[int], extension: None | str | list[int]) -> list[int]:
    if not available:
        warnings.warn(f"No image extensions with data found in {name}, skipping...", DataWarning)
        return []
    if extension is None:
        return available[:1]
    if extension == "all":
        return available
    chosen = [i for i in available if i in extension]
    missing = [str(i) for i in extension if i not in chosen]
    if missing:
        warnings.warn(
            f"Not all requested extensions in {name} are image extensions with data; "
            f"extension(s) {','.join(missing)} will be skipped.",
            DataWarning,
        )
    return chosen


def cut_hdulist(
    hdulist: fits.HDUList,
    name: str,
    coord: SkyCoord,
    size: CutoutSize,
    *,
    extension: None | str | list[int] = None,
    fill_value: float = np.nan,
    rounding: str = "round",
    allow_empty: bool = False,
    drop_after: str | None = None,
    limits: Limits | None = None,
) -> list[ImageCut]:
    """Cut the chosen extensions of one open HDUList; [] when the file has nothing to give.

    As astrocut: a file whose chosen extensions are all off the window (or all empty, unless
    ``allow_empty``) gives nothing; otherwise every overlapping extension is kept, empty ones
    marked ``EMPTY = T``.
    """
    exts = _select_extensions(name, _image_extensions(hdulist), extension)
    cuts: list[ImageCut] = []
    n_bad = 0
    for ind in exts:
        try:
            cut = _cut_hdu(hdulist, ind, name, coord, size, fill_value=fill_value, rounding=rounding,
                           drop_after=drop_after, limits=limits)
        except OSError as exc:
            warnings.warn(f"Error {exc} reading {name}, extension {ind}; skipping it", DataWarning)
            n_bad += 1
            continue
        if cut is None:
            warnings.warn(f"Cutout footprint does not overlap with data in {name}, extension {ind}, skipping...",
                          DataWarning)
            n_bad += 1
            continue
        if cut.empty and not allow_empty:
            n_bad += 1
        cuts.append(cut)
    if exts and n_bad == len(exts):
        warnings.warn(f"Cutout of {name} contains no data, skipping...", DataWarning)
        return []
    return cuts


def _open_fits(uri: str, s3: Any = None) -> fits.HDUList:
    """Open a FITS file lazily (local path or ``s3://`` URI)."""
    from core.storage.range_file import open_fits

    return open_fits(uri, s3=s3)


def cut_images(
    input_files: Any,
    coordinates: Any,
    cutout_size: Any,
    *,
    extension: Any = None,
    fill_value: float = np.nan,
    limit_rounding_method: str = "round",
    allow_empty: bool = False,
    drop_after: str | None = None,
    s3: Any = None,
    limits: Limits | None = None,
) -> ImageCutouts:
    """Cut the same window from every input; the engine behind :func:`fits_cut` and ``img_cut``.

    ``limits`` (default :meth:`Limits.engine_default`) are checked against each window as cut.
    Every extension asked for by number must be an image extension with data in at least one
    input (whether asked alone or in a list); an input lacking one of them is skipped for it with
    a :class:`DataWarning`, as astrocut does.

    Raises
    ------
    InvalidInputError
        Bad coordinates, size, extension, rounding method or fill value.
    TooLargeError
        A window exceeds ``limits``.
    NotFoundError, CorruptFileError, ForbiddenError, UnavailableError
        From opening the inputs.
    NoDataError
        When no input has data at the position.
    """
    files = list(dict.fromkeys(_input_list(input_files)))  # a repeated input counts once, as in astrocut
    coord = parse_coordinates(coordinates)
    size = CutoutSize.parse(cutout_size)
    label = size_pair(cutout_size)
    ext = parse_extension(extension)
    limits = Limits.engine_default() if limits is None else limits
    rounding = check_rounding(limit_rounding_method)
    fill_value = check_fill_value(fill_value)
    if drop_after is not None and not isinstance(drop_after, str):
        raise InvalidInputError("drop_after must be a header keyword", field="drop_after")

    result = ImageCutouts(coord, label)
    found: set[int] = set()
    for name in files:
        hdulist = _open_fits(name, s3=s3)
        try:
            if isinstance(ext, list):
                found |= set(ext) & set(_image_extensions(hdulist))
            cuts = cut_hdulist(hdulist, name, coord, size, extension=ext, fill_value=fill_value,
                               rounding=rounding, allow_empty=allow_empty, drop_after=drop_after,
                               limits=limits)
        except CutoutError:
            raise
        except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
            raise CorruptFileError(f"cannot cut {name}: {exc}", field="input_files") from None
        finally:
            hdulist.close()
        if cuts:
            result.by_file[name] = cuts
    missing = [e for e in ext if e not in found] if isinstance(ext, list) else []
    if missing:
        raise InvalidInputError(
            f"no input has an image extension with data numbered {', '.join(map(str, missing))}",
            field="extension",
        )
    if not result.by_file:
        raise NoDataError("Cutout contains no data! (Check image footprint.)", field="coordinates")
    return result


# --------------------------------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------------------------------


def primary_hdu(coord: SkyCoord | None) -> fits.PrimaryHDU:
    """astrocut's cutout primary HDU: ORIGIN, DATE, PROCVER and RA_OBJ/DEC_OBJ."""
    hdu = fits.PrimaryHDU()
    hdu.header.extend(
        [
            ("ORIGIN", ORIGIN, "institution responsible for creating this file"),
            ("DATE", str(date.today()), "file creation date"),
            ("PROCVER", software_version(), "software version"),
        ]
    )
    if coord is not None:
        hdu.header["RA_OBJ"] = (coord.ra.deg, "[deg] right ascension")
        hdu.header["DEC_OBJ"] = (coord.dec.deg, "[deg] declination")
    return hdu


def write_atomic(hdulist: fits.HDUList, path: str | os.PathLike, *, field: str = "output_dir") -> str:
    """Write ``hdulist`` (with checksums) to a temporary name beside ``path``, then rename it.

    The headers are formatted first, silently (a long ORIG_FLE value truncates its card's comment,
    harmless); astropy keeps the formatted cards, so the write itself warns of nothing and runs
    outside :func:`core.quiet.quiet`'s lock."""
    with quiet(fits.verify.VerifyWarning):
        for hdu in hdulist:
            hdu.header.tostring()
    with atomic_output(path, field=field) as tmp:
        hdulist.writeto(tmp, checksum=True, overwrite=True)
    return Path(path).as_posix()


def cutout_filename(stem: str, coord: SkyCoord, size: Sequence[Any], suffix: str = ".fits") -> str:
    """astrocut 1.4.0's name: ``<stem>_<ra:.7f>_<dec:.7f>_<s0>-x-<s1>_astrocut<suffix>``."""
    return f"{stem}_{coord.ra.deg:.7f}_{coord.dec.deg:.7f}_{size_label(size)}_astrocut{suffix}"


def input_stem(name: str) -> str:
    """The stem of an input path or ``s3://`` key (``Path(...).stem``, as astrocut)."""
    return Path(name.rstrip("/")).stem


# long: the docstring documents astrocut 1.4.0's 13 parameters and this package's s3, drop_after and limits
def fits_cut(
    input_files: Any,
    coordinates: Any,
    cutout_size: Any,
    correct_wcs: bool = False,
    extension: Any = None,
    single_outfile: bool = True,
    cutout_prefix: str = "cutout",
    output_dir: str | os.PathLike = ".",
    memory_only: bool = False,
    fill_value: float = np.nan,
    limit_rounding_method: str = "round",
    verbose: bool = False,
    s3: Any = None,
    *,
    allow_empty: bool = False,
    drop_after: str | None = None,
    limits: Limits | None = None,
) -> str | list[str] | list[fits.HDUList]:
    """Cut the same sky window out of one or more FITS images (astrocut 1.4.0's ``fits_cut``).

    Parameters
    ----------
    input_files : str or list of str
        Local paths or ``s3://`` URIs.
    coordinates : str, SkyCoord or (ra, dec)
        Centre of the cutout, degrees.
    cutout_size : int, [nx, ny] or Quantity
        Pixels or an angle; a pair is x-first, as astrocut behaves.
    correct_wcs : bool
        Ignored, as in astrocut 1.4.0.
    extension : int, list of int, "all" or None
        HDUs to cut; default the first image HDU with data.
    single_outfile : bool
        One file with a CUTOUT HDU per input extension, or one file per input.
    cutout_prefix, output_dir : str
        Name prefix of the single output file, and where files go.
    memory_only : bool
        Return HDULists instead of writing files.
    fill_value : float
        Value of pixels outside the image (NaN).
    limit_rounding_method : {"round", "ceil", "floor"}
        How window limits are rounded.
    verbose : bool
        Print each cutout's limits, the files written and the time taken, as astrocut 0.x did.
    s3 : core.storage.s3.S3Config, optional
        Settings for ``s3://`` inputs.
    allow_empty : bool
        Keep files whose cutouts are all 0 or NaN (marked ``EMPTY = T``).
    drop_after : str, optional
        Drop header cards from this keyword on before reading the WCS (astrocut 0.x's option).
    limits : Limits, optional
        Limits on each window (default :meth:`Limits.engine_default`: no cutout bigger than this
        machine's memory; this package's addition).

    Returns
    -------
    str, list of str, or list of HDUList
        The path (single file), the paths (one per input with data), or the HDULists (memory_only).
    """
    start = time.monotonic()
    result = cut_images(
        input_files, coordinates, cutout_size, extension=extension, fill_value=fill_value,
        limit_rounding_method=limit_rounding_method, allow_empty=allow_empty, drop_after=drop_after, s3=s3,
        limits=limits,
    )
    coord = result.coordinates
    if verbose:
        report_cuts(result)
    if single_outfile:
        hdus = [cut.hdu for cut in result.cutouts()]
        lists = [fits.HDUList([primary_hdu(coord)] + hdus)]
        names = [cutout_filename(cutout_prefix, coord, result.size)]
    else:
        lists, names = [], []
        for name, cuts in result.by_file.items():
            lists.append(fits.HDUList([primary_hdu(coord)] + [cut.hdu for cut in cuts]))
            names.append(cutout_filename(input_stem(name), coord, result.size))
    if memory_only:
        if verbose:
            print(f"Total time: {time.monotonic() - start:.2f} sec", flush=True)
        return lists
    paths = [write_atomic(hdul, Path(output_dir, fname)) for hdul, fname in zip(lists, names)]
    if verbose:
        print(f"Cutout fits file(s): {paths}", flush=True)
        print(f"Total time: {time.monotonic() - start:.2f} sec", flush=True)
    return paths[0] if len(paths) == 1 else paths


def report_cuts(result: ImageCutouts) -> None:
    """Print each cutout's input, extension and pixel limits (``verbose=True``)."""
    for cut in result.cutouts():
        x0, x1, y0, y1 = cut.limits
        print(f"{os.path.basename(cut.file)}[{cut.ext}]: xmin,xmax: [{x0} {x1}], ymin,ymax: [{y0} {y1}], "
              f"shape {cut.data.shape}{' (empty)' if cut.empty else ''}", flush=True)


__all__ = ["DataWarning", "ImageCut", "ImageCutouts", "cut_hdulist", "cut_images", "fits_cut"]
