"""Moving targets: footprints covering a path, and a target pixel file centred on a moving target.

Follows astrocut 1.4.0's ``path_to_footprints`` and ``center_on_path``: the path is an astropy Table
with ``time`` (Time) and ``position`` (SkyCoord); positions between path points come from an
interpolating parametric spline in time (``scipy.interpolate.splprep``/``splev``, ``s=0``); windows are
``rint(x - nx/2) .. + nx``; no resampling, so the target jitters by up to half a pixel. Sizes are
x-first (``[nx, ny]``), as astrocut behaves. Departures, fixing astrocut defects:

- ``path_to_footprints`` tests x against the image width and y against its height (astrocut swapped
  them), and raises NoDataError when the path misses the image;
- the RA of the path is unwrapped before interpolation, so a path crossing RA 0/360 works;
- a cadence is kept whenever the target's window (on the interpolated path, within the path's time
  span) overlaps a TPF at all, padded where it reaches past the edge (NaN, or 0 for integer
  columns); astrocut kept only windows wholly inside the TPF at the given path points, so a path
  ending at a TPF's edge, or a short path, got no data. Where TPFs overlap in time each cadence
  appears once (the least padded window; astrocut repeated it);
- the full-FFI APERTURE marks rows by y and columns by x (astrocut transposed it);
- fewer than four path points use a lower spline degree instead of failing;
- the output is written under a temporary name and renamed.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table, vstack
from astropy.time import Time
from astropy.wcs import WCS
from scipy.interpolate import splev, splprep

from core.errors import CorruptFileError, InvalidInputError, NoDataError, NotFoundError
from core.images.combine import combine_headers
from core.images.cutouts import write_atomic
from core.quiet import quiet

log = logging.getLogger(__name__)

TESS_BJD_OFFSET = 2457000.0
IMAGE_COLUMNS = ("RAW_CNTS", "FLUX", "FLUX_ERR", "FLUX_BKG", "FLUX_BKG_ERR")
_WCS_LIKE = ("WCA", "WCS", "CTY", "CRP", "CRV", "CUN", "CDL", "11PC", "12PC", "21PC", "22PC")


def _parse_size(size: Any) -> tuple[int, int]:
    """``int`` or ``[nx, ny]`` whole pixels >= 1."""
    values = [size, size] if np.isscalar(size) else list(size)
    if len(values) == 1:
        values *= 2
    try:
        nx, ny = (int(v) for v in values)
        if any(float(v) != int(v) for v in values):
            raise ValueError
    except (TypeError, ValueError):
        raise InvalidInputError(f"size must be an integer or [nx, ny] in whole pixels, not {size!r}",
                                field="size") from None
    if nx < 1 or ny < 1:
        raise InvalidInputError("size must be at least 1 pixel", field="size")
    return nx, ny


def window_bounds(x: np.ndarray, y: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Windows ``[[x0, x1], [y0, y1]]`` of ``size`` around each (x, y), as astrocut (rint); a
    position that is not finite (off the projection) gets a window at 0, for the caller to drop."""
    x = np.atleast_1d(np.asarray(x, dtype=float))
    y = np.atleast_1d(np.asarray(y, dtype=float))
    x0 = np.nan_to_num(np.rint(x - size[0] / 2), nan=0.0, posinf=0.0, neginf=0.0)
    y0 = np.nan_to_num(np.rint(y - size[1] / 2), nan=0.0, posinf=0.0, neginf=0.0)
    return np.stack((np.stack((x0, x0 + size[0]), axis=1), np.stack((y0, y0 + size[1]), axis=1)),
                    axis=1).astype(int)


def _area(b: np.ndarray) -> int:
    return int((b[0, 1] - b[0, 0]) * (b[1, 1] - b[1, 0]))


def _union(b1: np.ndarray, b2: np.ndarray) -> np.ndarray:
    return np.array([[min(b1[0, 0], b2[0, 0]), max(b1[0, 1], b2[0, 1])],
                     [min(b1[1, 0], b2[1, 0]), max(b1[1, 1], b2[1, 1])]], dtype=int)


def path_to_footprints(path: SkyCoord, size: Any, img_wcs: WCS, max_pixels: int = 10000) -> list[dict[str, Any]]:
    """Rectangles that together cover a path across an image, each at most ``max_pixels``.

    Consecutive path windows of ``size`` ([nx, ny]) are merged while the merged rectangle stays within
    ``max_pixels``; then a new rectangle starts (as astrocut).

    Returns
    -------
    list of dict
        ``{"coordinates": SkyCoord centre, "size": (ny, nx)}`` per rectangle, sizes plain ints: what
        astrocut returns, so ``Tesscut.download_cutouts(**footprint, sector=...)`` takes it as is.

    Raises
    ------
    InvalidInputError
        Bad size, a WCS without image dimensions, or a path that is not a SkyCoord.
    NoDataError
        No path point falls on the image.
    """
    nx_size, ny_size = _parse_size(size)
    if not isinstance(path, SkyCoord):
        raise InvalidInputError("path must be a SkyCoord of positions", field="path")
    if img_wcs is None or img_wcs.pixel_shape is None:
        raise InvalidInputError("img_wcs must carry the image size (NAXIS1/NAXIS2)", field="img_wcs")
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)) or max_pixels < 1:
        raise InvalidInputError("max_pixels must be a positive integer", field="max_pixels")
    width, height = img_wcs.pixel_shape
    x, y = img_wcs.world_to_pixel(np.atleast_1d(path))
    x, y = np.atleast_1d(x), np.atleast_1d(y)
    on = np.isfinite(x) & np.isfinite(y) & (x >= 0) & (x < width) & (y >= 0) & (y < height)
    if not on.any():
        raise NoDataError("the path does not cross the image", field="path")
    bounds = window_bounds(x[on], y[on], (nx_size, ny_size))

    merged = []
    current = bounds[0]
    for b in bounds[1:]:
        candidate = _union(current, b)
        if _area(candidate) > max_pixels:
            merged.append(current)
            current = b
        else:
            current = candidate
    merged.append(current)

    footprints = []
    for b in merged:
        nx = int(b[0, 1] - b[0, 0])
        ny = int(b[1, 1] - b[1, 0])
        centre = img_wcs.pixel_to_world(nx / 2 + b[0, 0], ny / 2 + b[1, 0])
        footprints.append({"coordinates": centre, "size": (ny, nx)})
    return footprints


def _check_path(path: Any) -> tuple[Time, SkyCoord]:
    try:
        times = path["time"]
        positions = path["position"]
    except (KeyError, TypeError, IndexError, ValueError):
        raise InvalidInputError("path must be a table with 'time' and 'position' columns", field="path") from None
    if not isinstance(times, Time):
        try:
            times = Time(times)
        except (ValueError, TypeError):
            raise InvalidInputError("path['time'] must hold astropy Times", field="path") from None
    if not isinstance(positions, SkyCoord):
        raise InvalidInputError("path['position'] must hold SkyCoords", field="path")
    if len(times) < 2:
        raise InvalidInputError("a path needs at least two points", field="path")
    return times, positions


def path_spline(times: Time, positions: SkyCoord) -> tuple[Any, float, float]:
    """Interpolating spline of (RA unwrapped, Dec) against JD; returns (tck, jd_min, jd_max)."""
    jd = np.asarray(times.jd, dtype=float)
    order = np.argsort(jd)
    jd = jd[order]
    if np.any(np.diff(jd) <= 0):
        raise InvalidInputError("path times must be distinct", field="path")
    icrs = positions.icrs
    ra = np.unwrap(np.asarray(icrs.ra.deg, dtype=float)[order], period=360.0)
    dec = np.asarray(icrs.dec.deg, dtype=float)[order]
    k = min(3, len(jd) - 1)
    tck, _ = splprep([ra, dec], u=jd, s=0, k=k)
    return tck, jd[0], jd[-1]


def path_coords(tck: Any, jd: np.ndarray) -> SkyCoord:
    """The path's positions at the Julian dates ``jd`` (from :func:`path_spline`'s ``tck``)."""
    ra, dec = splev(np.asarray(jd, dtype=float), tck)
    return SkyCoord(np.mod(ra, 360.0) * u.deg, dec * u.deg, frame="icrs")


def _window(img: np.ndarray, x0: int, x1: int, y0: int, y1: int, fill: Any) -> np.ndarray:
    ny, nx = img.shape[-2:]
    out = np.full((y1 - y0, x1 - x0), fill, dtype=img.dtype)
    cx0, cx1, cy0, cy1 = max(x0, 0), min(x1, nx), max(y0, 0), min(y1, ny)
    if cx1 > cx0 and cy1 > cy0:
        out[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0] = img[cy0:cy1, cx0:cx1]
    return out


def _open(fle: Any) -> fits.HDUList:
    """A TPF given as a path, an HDUList, or a callable making one (made only when needed)."""
    if callable(fle) and not isinstance(fle, (str, os.PathLike)):
        fle = fle()
    if isinstance(fle, fits.HDUList):
        return fle
    from core.storage.range_file import open_fits

    try:  # read with pread, regular files only (never a memory map of a file others may change)
        return open_fits(os.fspath(fle))
    except (NotFoundError, CorruptFileError) as exc:
        exc.field = exc.field or "cutout_fles"
        raise


def _focus(tck: Any, times: Time, positions: SkyCoord, size: tuple[int, int], fles: Sequence[Any],
           headers: list[tuple[fits.Header, fits.Header]] | None = None) -> Table:
    """Per-cadence windows centred on the path, from every TPF the path crosses (astrocut's focus).

    One pass over the inputs, one at a time: each TPF's primary and table headers are appended to
    ``headers``, and only its cadences on the path are kept, so TPFs made on demand (callables)
    are held one at a time.
    """
    path_jd = np.asarray(times.jd, dtype=float)
    tables = []
    for fle in fles:
        with _open(fle) as hdul:
            if headers is not None:
                headers.append((hdul[0].header.copy(), hdul[1].header.copy()))
            try:
                table = Table(hdul[1].data)
                ap_header = hdul[2].header
                tpf_ny, tpf_nx = hdul[2].data.shape if hdul[2].data is not None else (
                    ap_header["NAXIS2"], ap_header["NAXIS1"])
            except (IndexError, KeyError, TypeError) as exc:
                raise CorruptFileError(f"{fle} is not a target pixel file: {exc}", field="cutout_fles") from None
            with quiet():
                tpf_wcs = WCS(ap_header)
        if "TIME" not in table.colnames or "FLUX" not in table.colnames:
            raise CorruptFileError(f"{fle} has no TIME/FLUX columns", field="cutout_fles")
        # the cadences within the path's time span whose target window (from the interpolated
        # path) overlaps this TPF at all: windows reaching past its edge are padded, so a target at
        # the path's ends, or on the TPF's edge, still gets its cadences (astrocut asked for the
        # window to lie strictly inside the TPF at given path points)
        time_jd = np.asarray(table["TIME"], dtype=float) + TESS_BJD_OFFSET
        keep = np.isfinite(time_jd) & (time_jd >= path_jd.min()) & (time_jd <= path_jd.max())
        if not keep.any():
            log.debug("path does not cross %s in time", fle)
            continue
        table = table[keep]
        time_jd = time_jd[keep]
        tgt = path_coords(tck, time_jd)
        x, y = tpf_wcs.world_to_pixel(tgt)
        bounds = window_bounds(x, y, size)
        overlap = ((bounds[:, 0, 1] > 0) & (bounds[:, 0, 0] < tpf_nx) & (bounds[:, 1, 1] > 0)
                   & (bounds[:, 1, 0] < tpf_ny) & np.isfinite(x) & np.isfinite(y))
        if not overlap.any():
            log.debug("path does not cross %s", fle)
            continue
        table, time_jd, tgt = table[overlap], time_jd[overlap], tgt[overlap]
        x, y, bounds = x[overlap], y[overlap], bounds[overlap]
        table["TGT_X"] = x - bounds[:, 0, 0]
        table["TGT_Y"] = y - bounds[:, 1, 0]
        table["TGT_RA"] = tgt.ra.deg
        table["TGT_DEC"] = tgt.dec.deg
        inside_px = np.clip(np.minimum(bounds[:, 0, 1], tpf_nx) - np.maximum(bounds[:, 0, 0], 0), 0, None) * \
            np.clip(np.minimum(bounds[:, 1, 1], tpf_ny) - np.maximum(bounds[:, 1, 0], 0), 0, None)
        table["_PADDED"] = size[0] * size[1] - inside_px
        for name in IMAGE_COLUMNS:
            if name not in table.colnames:
                continue
            col = np.asarray(table[name])
            fill = np.nan if np.issubdtype(col.dtype, np.floating) else (-1 if name == "RAW_CNTS" else 0)
            table[name] = np.stack([_window(col[i], b[0, 0], b[0, 1], b[1, 0], b[1, 1], fill)
                                    for i, b in enumerate(bounds)])
        tables.append(table)
    if not tables:
        raise NoDataError("the path does not cross any of the cutout files", field="path")
    out = vstack(tables)
    # one row per cadence: where TPFs overlap in time keep the least padded window (astrocut kept all)
    out.sort(["TIME", "_PADDED"])
    _, first = np.unique(np.asarray(out["TIME"]), return_index=True)
    out = out[np.sort(first)]
    out.remove_column("_PADDED")
    return out


def configure_table_header(new_header: fits.Header, table_headers: Sequence[fits.Header]) -> None:
    """Carry column descriptions and the constant cards of the input tables over (as astrocut)."""
    info = {}
    first = table_headers[0]
    for kwd in first:
        if not kwd.startswith("TTYPE"):
            continue
        num = kwd[5:]
        cards = [first.cards[att + num] for att in ("TTYPE", "TFORM", "TUNIT", "TDISP", "TDIM")
                 if att + num in first]
        info[first[kwd]] = (num, cards)
    for kwd in list(new_header.keys()):
        if not kwd.startswith("TTYPE"):
            continue
        num = kwd[5:]
        row = info.get(new_header[kwd])
        if row is None:
            new_header.comments[kwd] = "column name"
            new_header.comments["TFORM" + num] = "column format"
            continue
        old_num, cards = row
        for card in cards:
            key_new = card.keyword[: -len(old_num)] + num
            value, comment = card.value, card.comment
            if key_new in new_header:
                value = new_header[key_new] or value
                comment = new_header.comments[key_new] or comment
                new_header[key_new] = (value, comment)
            else:
                new_header.set(key_new, value, comment, after=kwd)
    shared = combine_headers(list(table_headers), constant_only=True)
    for kwd in shared:
        if kwd in new_header or kwd in ("COMMENT", "HISTORY", ""):
            continue
        if any(part in kwd for part in _WCS_LIKE):
            continue
        new_header.append(shared.cards[kwd])


def _check_files(cutout_fles: Any) -> list[Any]:
    """The TPFs as a non-empty list (one path or HDUList alone is a list of one)."""
    if isinstance(cutout_fles, (str, os.PathLike, fits.HDUList)):
        cutout_fles = [cutout_fles]
    cutout_fles = list(cutout_fles)
    if not cutout_fles:
        raise InvalidInputError("give at least one target pixel file", field="cutout_fles")
    return cutout_fles


def _moving_primary(primary_headers: list[fits.Header], target: str | None, tstart: float,
                    tstop: float) -> fits.PrimaryHDU:
    """The cards the input TPFs' primary headers share, with today's DATE, OBJECT and the time span."""
    primary = combine_headers(primary_headers, constant_only=True).copy()
    primary["DATE"] = Time.now().to_value("iso", subfmt="date")
    if target:
        primary["OBJECT"] = (target, "Moving target object name/identifier")
    primary["TSTART"] = tstart
    primary["TSTOP"] = tstop
    return fits.PrimaryHDU(header=primary)


def _ffi_aperture(img_wcs: WCS, table: Table, size: tuple[int, int]) -> fits.ImageHDU:
    """An APERTURE image of the full FFI marking every window the target passed through."""
    ny_img, nx_img = img_wcs.array_shape
    aperture = np.zeros((ny_img, nx_img), dtype=np.int32)
    with quiet():
        xs, ys = img_wcs.world_to_pixel(SkyCoord(table["TGT_RA"], table["TGT_DEC"], unit="deg"))
    for bx, by in zip(np.atleast_1d(xs), np.atleast_1d(ys)):
        if not (np.isfinite(bx) and np.isfinite(by)):
            continue
        x0, x1 = int(bx - size[0] / 2), int(bx + size[0] / 2)
        y0, y1 = int(by - size[1] / 2), int(by + size[1] / 2)
        aperture[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = 1
    ap = fits.ImageHDU(data=aperture)
    ap.header["EXTNAME"] = "APERTURE"
    ap.header.extend(img_wcs.to_header(relax=True).cards)
    ap.header["INHERIT"] = True
    return ap


def _centred_hdulist(table: Table, headers: list[tuple[fits.Header, fits.Header]], target: str | None,
                     img_wcs: WCS | None, size: tuple[int, int], span: tuple[float, float]) -> fits.HDUList:
    """The path-centred TPF: its primary header (``span``: TSTART and TSTOP), the PIXELS table
    (with the inputs' column descriptions) and, given the FFI's WCS, the full-FFI APERTURE."""
    hdus: list[Any] = [_moving_primary([h for h, _ in headers], target, *span)]
    table_hdu = fits.table_to_hdu(table)
    configure_table_header(table_hdu.header, [h for _, h in headers])
    hdus.append(table_hdu)
    if img_wcs is not None:
        hdus.append(_ffi_aperture(img_wcs, table, size))
    return fits.HDUList(hdus)


def center_on_path(
    path: Table,
    size: Any,
    cutout_fles: Sequence[str | os.PathLike],
    target: str | None = None,
    img_wcs: WCS | None = None,
    target_pixel_file: str | None = None,
    output_path: str | os.PathLike = ".",
    verbose: bool = True,
    *,
    memory_only: bool = False,
) -> str | fits.HDUList:
    """Build one TPF centred on a moving target from TPFs the path crosses (astrocut's ``center_on_path``).

    Parameters
    ----------
    path : Table
        ``time`` (Time) and ``position`` (SkyCoord) columns.
    size : int or [nx, ny]
        Window size in pixels, x first.
    cutout_fles : list of str, HDUList or callable
        Target pixel files (as from ``cube_cut``) that the path crosses: paths, in-memory HDULists,
        or callables making them (read one at a time; this package's addition).
    target : str, optional
        Name written to OBJECT and used in the default file name.
    img_wcs : WCS, optional
        WCS of the full FFI; when given, an APERTURE of the FFI's size marks the pixels used.
    target_pixel_file : str, optional
        Output name; default ``<target or path>_<tstart>-<tstop>_<nx>-x-<ny>_astrocut.fits``.
    output_path : str
        Directory of the output.
    verbose : bool
        Print what was built and the time taken, as astrocut 0.x did.
    memory_only : bool
        Return the HDUList instead of writing a file (this package's addition).

    Returns
    -------
    str or HDUList
        Path of the written file (or the HDUList). Its PIXELS table has the input columns, the image columns cut to the
        window, and TGT_X, TGT_Y (target position in the window, 0-based pixels), TGT_RA, TGT_DEC.

    Raises
    ------
    InvalidInputError
        Bad path, size or file list.
    NoDataError
        The path crosses none of the files.
    """
    start = time.monotonic()
    sz = _parse_size(size)
    times, positions = _check_path(path)
    cutout_fles = _check_files(cutout_fles)
    if img_wcs is not None and img_wcs.array_shape is None:
        raise InvalidInputError("img_wcs must carry the image size (NAXIS1/NAXIS2)", field="img_wcs")

    tck, _, _ = path_spline(times, positions)
    headers: list[tuple[fits.Header, fits.Header]] = []
    table = _focus(tck, times, positions, sz, cutout_fles, headers)
    tstart, tstop = float(np.min(table["TIME"])), float(np.max(table["TIME"]))
    result = _centred_hdulist(table, headers, target, img_wcs, sz, (tstart, tstop))
    if verbose:
        print(f"Centred {len(table)} cadences of {len(headers)} TPF(s) on the path: {sz[0]}x{sz[1]} px, "
              f"TIME {tstart}..{tstop}", flush=True)
    if memory_only:
        if verbose:
            print(f"Total time: {time.monotonic() - start:.2f} sec", flush=True)
        return result
    if not target_pixel_file:
        target_pixel_file = moving_filename(target, tstart, tstop, sz)
    target_pixel_file = str(target_pixel_file).replace("/", "-").replace(" ", "_")
    out = write_atomic(result, Path(output_path, target_pixel_file))
    if verbose:
        print(f"Target pixel file: {out}", flush=True)
        print(f"Total time: {time.monotonic() - start:.2f} sec", flush=True)
    return out


def moving_filename(target: str | None, tstart: float, tstop: float, size: tuple[int, int]) -> str:
    """astrocut's default name of a path-centred TPF: ``<target or path>_<tstart>-<tstop>_<nx>-x-<ny>_astrocut.fits``."""
    name = target if target else "path"
    return f"{name}_{tstart}-{tstop}_{size[0]}-x-{size[1]}_astrocut.fits".replace("/", "-").replace(" ", "_")


__all__ = ["center_on_path", "moving_filename", "path_to_footprints"]
